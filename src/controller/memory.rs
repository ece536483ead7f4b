//! What ferry remembers about an Application between reconciles, so that a reconcile of an
//! unchanged, undrifted Application costs no API requests and no Git fetch.
//!
//! Nothing here is needed for correctness: after a restart the memory is empty and the first
//! reconcile reads the live objects once.

use std::{collections::HashMap, sync::Arc, time::Instant};

use kube::api::DynamicObject;
use serde_json::Value;

use super::delivery::Delivery;
pub use crate::apply::{ObjKey, Prepared};
use crate::{
    api::ApplicationStatus,
    source::{Revision, Snapshot},
};

/// The live state ferry last saw for an object it manages, and that it matched the manifest.
#[derive(Clone, Debug)]
pub struct Known {
    pub resource_version: String,
    /// Hash of the manifest it matched.
    pub hash: String,
    /// The live object, kept only for kinds whose health depends on it (not ConfigMaps or
    /// Secrets: memory stays small and Secret data never stays in memory).
    pub live: Option<Arc<Value>>,
}

/// The revision last resolved from Git and when.
#[derive(Clone, Debug)]
pub struct SourceMemo {
    /// The spec generation and reconcile-at annotation it was resolved for.
    pub generation: Option<i64>,
    pub reconcile_at: Option<String>,
    pub resolved_at: Instant,
    pub snapshot: Snapshot,
}

/// A render split into the objects to sync (with the destination namespace ferry creates, if
/// any) and the hooks, remembered with the render it came from.
#[derive(Clone, Debug)]
pub struct SplitRender {
    pub source: Arc<Vec<DynamicObject>>,
    pub objects: Arc<Vec<DynamicObject>>,
    pub hooks: Arc<Vec<crate::plan::hooks::Hook>>,
    /// The namespace `createNamespace` asked for when it was split.
    pub requested_namespace: Option<String>,
    /// The Namespace ferry added to the objects, if any.
    pub created_namespace: Option<String>,
}

/// A render's objects as ferry applies them (labelled and hashed): prepared once per render and
/// remembered, because every reconcile of an unchanged revision needs the same.
pub type PreparedObjects = Arc<Vec<Arc<Prepared>>>;

#[derive(Default)]
pub struct AppMemory {
    pub source: Option<SourceMemo>,
    /// Resolve the ref afresh at the next pass, ignoring shared listings: ferry itself just
    /// pushed to the branch (a revert).
    pub refresh_source: bool,
    /// The deletion hooks' progress ferry last wrote while the Application is being deleted:
    /// the watch cache may not have it yet, and a run it does not know would be created twice.
    pub deletion: Option<crate::api::SyncProgress>,
    /// The chart dependencies fetched for the source resolved at that moment (the
    /// `resolved_at` of [`SourceMemo`]): refetched only when the source is resolved again.
    pub dependencies: Option<(Instant, Vec<crate::render::FetchedDependency>)>,
    pub split: Option<SplitRender>,
    pub known: HashMap<ObjKey, Known>,
    /// The last render and its objects as ferry applies them (labelled and hashed).
    pub prepared: Option<(Arc<Vec<DynamicObject>>, PreparedObjects)>,
    /// The manifests of the last revision applied, for deciding which conflicts to force.
    pub last_applied: Option<Arc<Vec<DynamicObject>>>,
    /// Since when the Application has been Progressing, and at which revision.
    pub progressing_since: Option<(Revision, Instant)>,
    /// The last failure reported by an Event, so a retried failure does not repeat it.
    pub last_failure_event: Option<String>,
    /// The last drift reported, for the same reason.
    pub last_drift_event: Option<String>,
    /// Consecutive transient failures, for backoff.
    pub failures: u32,
    /// The per-Application metric series exist and delivery is seeded from the status.
    pub tracked: bool,
    pub delivery: Delivery,
    /// The status ferry last wrote (with the Application's uid), newer than the watch cache's
    /// until the cache catches up.
    pub written_status: Option<(String, ApplicationStatus)>,
}

/// Whether ferry keeps the live object in memory for health.
pub fn keeps_live(group: &str, kind: &str) -> bool {
    !matches!(
        (group, kind),
        ("", "ConfigMap" | "Secret" | "ServiceAccount")
            | ("rbac.authorization.k8s.io", "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
    )
}
