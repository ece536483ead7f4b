//! What a prune or a hook clean-up may delete: the objects of a list that still exist and carry
//! this Application's labels. Shared by the sync pass, the PostSync hooks and `ferry diff`.

use std::time::Instant;

use kube::{
    Discovery,
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource},
};

use super::context::Context;
use crate::{
    api::{InventoryEntry, conditions as c},
    apply::{
        AppRef, Applier, ApplyError, CREATED_NAMESPACE, Ownership, PruneRefused, is_namespace,
        is_prune_disabled, ownership_of,
    },
    health::ObjectName,
};

/// Choosing what to prune (before anything is written) and pruning it (after every apply).
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The revision renders nothing while the inventory is not empty (`allowEmpty` is off).
    #[error(transparent)]
    Refused(#[from] PruneRefused),
    /// A kind installed since the last discovery could not be looked up.
    #[error("{0}")]
    Discovery(#[source] ApplyError),
    /// Reading, deleting or releasing an object.
    #[error("{0}")]
    Object(#[source] ApplyError),
}

impl PruneError {
    pub fn reason(&self) -> &'static str {
        match self {
            PruneError::Refused(_) => c::PRUNE_REFUSED,
            PruneError::Discovery(_) | PruneError::Object(_) => c::APPLY_FAILED,
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            PruneError::Refused(_) => "prune",
            PruneError::Discovery(_) => "discovery",
            PruneError::Object(_) => "apply",
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            PruneError::Refused(_) => false,
            PruneError::Discovery(_) => true,
            PruneError::Object(e) => e.is_transient(),
        }
    }
}

/// An object a prune or clean-up may delete: it exists and was checked as this Application's.
pub struct Prunable {
    pub entry: InventoryEntry,
    /// As shown in messages.
    pub name: String,
    resource: ApiResource,
    caps: ApiCapabilities,
    /// The live object as checked.
    live: DynamicObject,
}

impl Prunable {
    /// Deletes the object checked, and only it: its uid is the delete's precondition, so an
    /// object that replaced it under the same name since is never deleted.
    pub async fn delete(&self, applier: &Applier) -> Result<(), PruneError> {
        let (ns, uid) = (self.entry.namespace.as_deref(), self.live.metadata.uid.as_deref());
        applier
            .delete(&self.name, &self.resource, &self.caps, ns, &self.entry.name, uid)
            .await
            .map_err(PruneError::Object)
    }

    /// The live object as checked.
    pub fn live(&self) -> &DynamicObject {
        &self.live
    }

    /// A Namespace that ferry created for `createNamespace`.
    pub fn is_created_namespace(&self) -> bool {
        is_namespace(&self.entry, &self.entry.name)
            && self.live.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CREATED_NAMESPACE))
    }
}

/// Of the prune candidates, those that still exist, carry this Application's labels and are
/// not opted out with `ferry.dev/prune: disabled`. A kind installed after ferry's last discovery
/// must not make its objects unprunable: discovery is run again then.
pub(super) async fn prunable(
    ctx: &Context,
    applier: &Applier,
    app_ref: &AppRef,
    candidates: &[InventoryEntry],
) -> Result<Vec<Prunable>, PruneError> {
    let mut discovery = applier.discovery().clone();
    if candidates.iter().any(|e| discovery.resolve_gvk(&gvk(e)).is_none()) {
        discovery = ctx.refresh_discovery(Instant::now()).await.map_err(PruneError::Discovery)?;
    }
    select(applier, &discovery, app_ref, candidates).await
}

/// [`prunable`] with the discovery given: one read per candidate.
pub async fn select(
    applier: &Applier,
    discovery: &Discovery,
    app_ref: &AppRef,
    candidates: &[InventoryEntry],
) -> Result<Vec<Prunable>, PruneError> {
    let mut out = Vec::new();
    for entry in candidates {
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk(entry)) else {
            tracing::warn!(app = %app_ref, kind = %entry.kind, name = %entry.name, "kind no longer served; not pruned");
            continue;
        };
        let name = ObjectName::from(entry).to_string();
        let live = applier
            .get(&name, &resource, &caps, entry.namespace.as_deref(), &entry.name)
            .await
            .map_err(PruneError::Object)?;
        let Some(live) = live else { continue };
        let labels = live.metadata.labels.as_ref();
        if ownership_of(labels, app_ref) == Ownership::Ours && !is_prune_disabled(labels) {
            out.push(Prunable { entry: entry.clone(), name, resource, caps, live });
        }
    }
    Ok(out)
}

fn gvk(e: &InventoryEntry) -> kube::api::GroupVersionKind {
    kube::api::GroupVersionKind::gvk(&e.group, &e.version, &e.kind)
}
