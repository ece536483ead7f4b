//! The inventory (what the last successful sync applied) and what a sync may delete.

use kube::api::DynamicObject;

use super::ownership::PRUNE;
use crate::{api::InventoryEntry, plan::phase_of};

/// An empty render with a non-empty inventory would delete everything the Application manages.
/// That is almost always a mistake (a wrong path, a bad merge), so it needs `allowEmpty: true`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the revision renders no objects but {inventory} were applied before; refusing to prune them all (set spec.syncPolicy.allowEmpty: true to allow it)"
)]
pub struct PruneRefused {
    pub inventory: usize,
}

/// The inventory entry of a rendered object. `None` when it lacks apiVersion or kind, which the
/// renderer already refuses.
pub fn inventory_entry(obj: &DynamicObject) -> Option<InventoryEntry> {
    let types = obj.types.as_ref()?;
    let (group, version) = match types.api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), types.api_version.clone()),
    };
    Some(InventoryEntry {
        group,
        version,
        kind: types.kind.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone()?,
    })
}

/// Entries of the previous inventory that the new render no longer contains, in the order to
/// delete them: the reverse of the apply order, so workloads go before the Services,
/// ConfigMaps and Namespaces they use, and CRDs last. Objects are matched by group, kind,
/// namespace and name (a version bump is the same object). `prune_disabled` says whether the
/// live object carries `ferry.dev/prune: disabled`; those are kept.
pub fn prune_candidates(
    previous: &[InventoryEntry],
    rendered: &[InventoryEntry],
    allow_empty: bool,
    prune_disabled: impl Fn(&InventoryEntry) -> bool,
) -> Result<Vec<InventoryEntry>, PruneRefused> {
    if rendered.is_empty() && !previous.is_empty() && !allow_empty {
        return Err(PruneRefused { inventory: previous.len() });
    }
    let key = |e: &InventoryEntry| (e.group.clone(), e.kind.clone(), e.namespace.clone(), e.name.clone());
    let kept: std::collections::HashSet<_> = rendered.iter().map(key).collect();
    let mut gone: Vec<InventoryEntry> =
        previous.iter().filter(|e| !kept.contains(&key(e)) && !prune_disabled(e)).cloned().collect();
    gone.sort_by(|a, b| {
        let phase = |e: &InventoryEntry| phase_of(&e.group, &e.kind, e.namespace.is_some());
        phase(b).cmp(&phase(a)).then_with(|| key(a).cmp(&key(b)))
    });
    Ok(gone)
}

/// Whether labels opt an object out of pruning.
pub fn is_prune_disabled(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(PRUNE)).is_some_and(|v| v == "disabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(group: &str, kind: &str, ns: Option<&str>, name: &str) -> InventoryEntry {
        InventoryEntry {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn removed_objects_are_pruned_in_reverse_apply_order() {
        let previous = vec![
            e("", "Namespace", None, "shop"),
            e("", "ConfigMap", Some("shop"), "cfg"),
            e("apps", "Deployment", Some("shop"), "web"),
            e("", "Service", Some("shop"), "web"),
            e("apiextensions.k8s.io", "CustomResourceDefinition", None, "widgets.example.com"),
            e("", "ConfigMap", Some("shop"), "kept"),
        ];
        let rendered = vec![e("", "ConfigMap", Some("shop"), "kept")];
        let gone = prune_candidates(&previous, &rendered, false, |_| false).unwrap();
        let kinds: Vec<&str> = gone.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["Deployment", "Service", "ConfigMap", "Namespace", "CustomResourceDefinition"]);
    }

    #[test]
    fn a_new_version_of_the_same_object_is_not_pruned_and_opt_outs_are_kept() {
        let mut v2 = e("autoscaling", "HorizontalPodAutoscaler", Some("shop"), "web");
        v2.version = "v2".into();
        let previous = vec![
            e("autoscaling", "HorizontalPodAutoscaler", Some("shop"), "web"),
            e("", "Secret", Some("shop"), "s"),
        ];
        let gone = prune_candidates(&previous, &[v2], false, |e| e.kind == "Secret").unwrap();
        assert!(gone.is_empty(), "{gone:?}");
    }

    #[test]
    fn an_empty_render_is_refused_unless_allowed() {
        let previous = vec![e("", "ConfigMap", Some("shop"), "cfg")];
        let err = prune_candidates(&previous, &[], false, |_| false).unwrap_err();
        assert_eq!(err, PruneRefused { inventory: 1 });
        assert!(err.to_string().contains("allowEmpty"));
        assert_eq!(prune_candidates(&previous, &[], true, |_| false).unwrap(), previous);
        assert!(prune_candidates(&[], &[], false, |_| false).unwrap().is_empty());
    }

    #[test]
    fn inventory_entries_split_group_and_version() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}
        }))
        .unwrap();
        assert_eq!(inventory_entry(&obj), Some(e("apps", "Deployment", Some("shop"), "web")));
        let core: DynamicObject = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        )
        .unwrap();
        assert_eq!(inventory_entry(&core), Some(e("", "Namespace", None, "shop")));
        let labels = [(PRUNE.to_string(), "disabled".to_string())].into();
        assert!(is_prune_disabled(Some(&labels)));
        assert!(!is_prune_disabled(None));
    }
}
