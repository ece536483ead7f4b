//! Prune: what the last sync applied and this revision no longer has. Chosen while planning,
//! before anything is written (so an empty render writes nothing); deleted after every apply
//! succeeded, in reverse apply order.

use kube::{api::DynamicObject, runtime::events::EventType};

use super::{build::Built, pass::Pass};
use crate::{
    api::InventoryEntry,
    apply::{Applier, is_namespace, prune_candidates},
    controller::{
        error::PruneError,
        events,
        memory::{AppMemory, ObjKey},
        prunable::{Prunable, prunable},
    },
};

/// What to prune, chosen against the inventory this revision makes.
pub struct Chosen {
    /// The inventory this revision makes.
    pub inventory: Vec<InventoryEntry>,
    /// In the last inventory, not in this one, still this Application's. Empty when `prune` is
    /// off.
    pub to_prune: Vec<Prunable>,
}

/// Chooses what to prune: refuses a revision that renders nothing (unless `allowEmpty`), then
/// checks each candidate live.
pub async fn choose(
    pass: Pass<'_>,
    built: &Built,
    inventory: Vec<InventoryEntry>,
) -> Result<Chosen, PruneError> {
    let policy = &pass.app.spec.sync_policy;
    let created = built.split.created_namespace.as_deref();
    refuse_emptied(&built.previous, &inventory, created, policy.allow_empty)?;
    let mut to_prune = if policy.prune {
        let candidates = candidates(&built.previous, &inventory);
        prunable(pass.cluster, &built.applier, pass.app_ref, &candidates).await?
    } else {
        Vec::new()
    };
    let mut inventory = inventory;
    if !policy.automated {
        // IgnoreExtraneous objects do not make the Application OutOfSync, so without automated
        // sync nothing would ever prune them: they stay in the inventory until a sync does.
        let (kept, rest): (Vec<Prunable>, Vec<Prunable>) =
            to_prune.into_iter().partition(Prunable::ignores_extraneous);
        inventory.extend(kept.into_iter().map(|p| p.entry));
        inventory.sort();
        inventory.dedup();
        to_prune = rest;
    }
    Ok(Chosen { inventory, to_prune })
}

/// What the last inventory has and this one does not, in reverse apply order.
pub fn candidates(previous: &[InventoryEntry], inventory: &[InventoryEntry]) -> Vec<InventoryEntry> {
    prune_candidates(previous, inventory, true, |_| false).unwrap_or_default()
}

/// The empty-render guard judges what Git rendered: the Namespace ferry adds for
/// `createNamespace` is not Git's, and counting it would let a revision that renders nothing
/// prune everything else.
fn refuse_emptied(
    previous: &[InventoryEntry],
    inventory: &[InventoryEntry],
    created: Option<&str>,
    allow_empty: bool,
) -> Result<(), PruneError> {
    let from_git = |e: &&InventoryEntry| created.is_none_or(|n| !is_namespace(e, n));
    let before: Vec<InventoryEntry> = previous.iter().filter(from_git).cloned().collect();
    let rendered: Vec<InventoryEntry> = inventory.iter().filter(from_git).cloned().collect();
    prune_candidates(&before, &rendered, allow_empty, |_| false).map(drop).map_err(PruneError::Refused)
}

/// Deletes (or releases) the objects chosen; returns the names of those deleted.
pub async fn prune(
    pass: Pass<'_>,
    applier: &Applier,
    mem: &mut AppMemory,
    chosen: &Chosen,
) -> Result<Vec<String>, PruneError> {
    let _timer = pass.ctx.metrics.time(crate::metrics::Stage::Prune);
    let mut pruned = Vec::new();
    for p in in_reverse_waves(&chosen.to_prune) {
        if is_released(p, &chosen.inventory) {
            release_namespace(pass, applier, p).await?;
        } else {
            p.delete(applier).await?;
            pass.ctx.metrics.objects_pruned(1);
            pruned.push(p.name.clone());
        }
        mem.known.remove(&ObjKey::from(&p.entry));
    }
    Ok(pruned)
}

/// The objects to prune, the highest sync wave first (as applied, by the annotation on the live
/// object); within a wave, in reverse apply order as chosen.
fn in_reverse_waves(to_prune: &[Prunable]) -> Vec<&Prunable> {
    let waves: Vec<i32> = to_prune.iter().map(|p| crate::plan::hooks::wave_of(p.live())).collect();
    reverse_wave_order(&waves).into_iter().map(|i| &to_prune[i]).collect()
}

/// Indexes of `waves`, highest wave first, keeping the order within a wave.
fn reverse_wave_order(waves: &[i32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..waves.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(waves[i]));
    order
}

/// Whether a prune candidate is a Namespace to release rather than delete: one ferry created for
/// `createNamespace` (like Argo CD and Helm, ferry never deletes a namespace it created only as
/// a destination: others may keep things in it), or one that objects of this revision still
/// live in (deleting it would delete them).
fn is_released(p: &Prunable, inventory: &[InventoryEntry]) -> bool {
    is_namespace(&p.entry, &p.entry.name)
        && (p.is_created_namespace()
            || inventory.iter().any(|e| e.namespace.as_deref() == Some(&p.entry.name)))
}

/// Gives a Namespace up: applying the bare Namespace as ferry removes every label and annotation
/// ferry set on it (its ownership among them) and nothing else. It stays, with all it holds.
async fn release_namespace(pass: Pass<'_>, applier: &Applier, p: &Prunable) -> Result<(), PruneError> {
    let bare =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": p.entry.name}});
    let obj: DynamicObject = serde_json::from_value(bare).expect("a Namespace deserializes");
    applier.apply(&obj, false).await.map_err(PruneError::Object)?;
    tracing::info!(namespace = %p.entry.name, "released a namespace instead of pruning it");
    let note = format!(
        "Namespace {} is no longer part of this Application; ferry removed its labels and left it, with everything in it, in place (delete it yourself if it is no longer needed)",
        p.entry.name
    );
    events::publish(pass.ctx, pass.app, EventType::Normal, events::NAMESPACE_RELEASED, &note).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, namespace: Option<&str>, name: &str) -> InventoryEntry {
        InventoryEntry {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn a_render_of_nothing_but_the_created_namespace_is_an_empty_render() {
        let previous = [e("Namespace", None, "team"), e("ConfigMap", Some("team"), "c")];
        let only_namespace = [e("Namespace", None, "team")];
        assert!(matches!(
            refuse_emptied(&previous, &only_namespace, Some("team"), false),
            Err(PruneError::Refused(_))
        ));
        assert!(
            refuse_emptied(&previous, &only_namespace, Some("team"), true).is_ok(),
            "allowEmpty allows it"
        );
        // A Namespace Git renders itself counts.
        assert!(refuse_emptied(&previous, &only_namespace, None, false).is_ok());
    }

    #[test]
    fn prune_goes_from_the_last_wave_to_the_first() {
        assert_eq!(reverse_wave_order(&[0, 2, -1, 2, 0]), [1, 3, 0, 4, 2]);
        assert_eq!(reverse_wave_order(&[]), Vec::<usize>::new());
    }

    #[test]
    fn candidates_are_what_the_new_inventory_dropped() {
        let previous = [e("ConfigMap", Some("t"), "a"), e("ConfigMap", Some("t"), "b")];
        let now = [e("ConfigMap", Some("t"), "a")];
        assert_eq!(candidates(&previous, &now), vec![e("ConfigMap", Some("t"), "b")]);
        assert_eq!(candidates(&previous, &[]), previous.to_vec(), "allowEmpty was judged before");
    }
}
