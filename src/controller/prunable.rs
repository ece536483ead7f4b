//! What a prune or a hook clean-up may delete: the objects of a list that still exist and carry
//! this Application's labels, and whose options do not keep them (`ferry.dev/prune: disabled`;
//! Argo CD's `Prune=false` from a prune, `Delete=false` from the deletion of the Application;
//! Flux's `prune: disabled` and `reconcile: disabled` from both). Shared by the sync pass, the
//! PostSync hooks, the clean-up of a deleted Application and `ferry diff`.

use std::time::Instant;

use kube::{
    Discovery,
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource},
};

use super::clusters::ClusterLink;
use crate::{
    api::{InventoryEntry, conditions as c},
    apply::{
        AppRef, Applier, ApplyError, CREATED_NAMESPACE, Ownership, PruneRefused, is_namespace,
        is_prune_disabled, ownership_of,
    },
    health::ObjectName,
    plan::sync_options,
};

/// Why objects are removed: their options keep them from one and not the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// They left Git.
    Prune,
    /// Their Application is deleted.
    Delete,
}

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

    /// It carries Argo CD's `compare-options: IgnoreExtraneous`: out of Git, it does not make
    /// the Application OutOfSync.
    pub fn ignores_extraneous(&self) -> bool {
        let meta = &self.live.metadata;
        sync_options::parse(meta.labels.as_ref(), meta.annotations.as_ref()).options.ignore_extraneous
    }

    /// A Namespace that ferry created for `createNamespace`.
    pub fn is_created_namespace(&self) -> bool {
        is_namespace(&self.entry, &self.entry.name)
            && self.live.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CREATED_NAMESPACE))
    }
}

/// Of the prune candidates, those that still exist, carry this Application's labels and are
/// not opted out of a prune. A kind installed after ferry's last discovery must not make its
/// objects unprunable: discovery is run again then.
pub(super) async fn prunable(
    cluster: &ClusterLink,
    applier: &Applier,
    app_ref: &AppRef,
    candidates: &[InventoryEntry],
) -> Result<Vec<Prunable>, PruneError> {
    removable(cluster, applier, app_ref, candidates, Removal::Prune).await
}

/// [`prunable`], for a prune or for the deletion of the Application.
pub(super) async fn removable(
    cluster: &ClusterLink,
    applier: &Applier,
    app_ref: &AppRef,
    candidates: &[InventoryEntry],
    removal: Removal,
) -> Result<Vec<Prunable>, PruneError> {
    let mut discovery = applier.discovery().clone();
    if candidates.iter().any(|e| discovery.resolve_gvk(&gvk(e)).is_none()) {
        discovery = cluster.refresh_discovery(Instant::now()).await.map_err(PruneError::Discovery)?;
    }
    select(applier, &discovery, app_ref, candidates, removal).await
}

/// [`removable`] with the discovery given: one read per candidate.
pub async fn select(
    applier: &Applier,
    discovery: &Discovery,
    app_ref: &AppRef,
    candidates: &[InventoryEntry],
    removal: Removal,
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
        if ownership_of(live.metadata.labels.as_ref(), app_ref) == Ownership::Ours && !kept(&live, removal) {
            out.push(Prunable { entry: entry.clone(), name, resource, caps, live });
        }
    }
    Ok(out)
}

/// Whether the live object's labels or annotations keep it from this removal. A live object's
/// options are read leniently: what is recognised counts.
fn kept(live: &DynamicObject, removal: Removal) -> bool {
    let (labels, annotations) = (live.metadata.labels.as_ref(), live.metadata.annotations.as_ref());
    let options = sync_options::parse(labels, annotations).options;
    is_prune_disabled(labels)
        || match removal {
            Removal::Prune => !options.prune,
            Removal::Delete => !options.delete,
        }
}

fn gvk(e: &InventoryEntry) -> kube::api::GroupVersionKind {
    kube::api::GroupVersionKind::gvk(&e.group, &e.version, &e.kind)
}
