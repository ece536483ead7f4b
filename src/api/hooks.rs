//! Hooks and sync waves as users write them: the annotations ferry reads (its own, Argo CD's
//! and Helm's), and the status that records a revision's hooks.
//!
//! The names are the anchors' own, so a repository written for Argo CD or a Helm chart with
//! hooks deploys under ferry as it did there. Parsing them is [`crate::plan::hooks`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{InventoryEntry, VerificationPhase};

/// ferry's own hook annotation; the values are Argo CD's.
pub const HOOK_ANNOTATION: &str = "ferry.dev/hook";
/// Argo CD's hook annotation: `PreSync`, `Sync`, `PostSync`, `SyncFail`, `PostDelete`, `Skip`.
pub const ARGO_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "ferry.dev/hook-delete-policy";
pub const ARGO_HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Argo CD's sync wave: an integer, negative allowed, 0 by default.
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
pub const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
pub const HELM_HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// The annotations that make a rendered object a hook rather than part of the synced state.
pub const HOOK_ANNOTATIONS: [&str; 3] = [HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION];

/// Whether `obj` is a hook (or an object to skip) rather than an object to sync: `ferry diff`
/// and the sync pass both leave hooks out of the synced state, and only hooks may be named by
/// `generateName`.
pub fn is_hook(obj: &kube::api::DynamicObject) -> bool {
    obj.metadata.annotations.as_ref().is_some_and(|a| HOOK_ANNOTATIONS.iter().any(|k| a.contains_key(*k)))
}

/// When a hook runs. Helm's hooks map onto these: `pre-install`/`pre-upgrade` are PreSync,
/// `post-install`/`post-upgrade` PostSync, `pre-delete` PreDelete, `post-delete` PostDelete.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPhase {
    /// Before anything of the revision is applied; must succeed for the sync to go on.
    PreSync,
    /// With the objects of its sync wave.
    Sync,
    /// Once everything is applied and Healthy: the revision's verification.
    PostSync,
    /// When a PreSync, Sync or PostSync hook failed.
    SyncFail,
    /// When the Application is deleted, before its objects are.
    PreDelete,
    /// When the Application is deleted, after its objects are.
    PostDelete,
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// `status.progress`: the sync of one revision with hooks or sync waves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    pub revision: String,
    /// The revision is the Application's first sync: Helm's install hooks run for it, its
    /// upgrade hooks do not (and the other way round for every later revision).
    #[serde(default)]
    pub first_sync: bool,
    /// The phase the sync is in, or ended in.
    pub phase: HookPhase,
    /// The sync wave being applied or waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<i32>,
    /// Running while the sync goes on, then how it ended.
    pub result: VerificationPhase,
    /// Every hook object ferry created for the revision, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Application's generation when this sync began: a revision whose PreSync or Sync hook
    /// failed is synced again (hooks and all) after a spec change ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// ... or a new `ferry.dev/reconcile-at` request (`ferry sync`), as a new sync in Argo CD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// One hook object ferry created. Only objects recorded here (by uid) count as a hook's run:
/// labels and annotations anyone who may create Jobs can forge, the status only ferry writes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    pub phase: HookPhase,
    #[serde(default)]
    pub wave: i32,
    /// The hook as the revision declares it: `Job ns/migrate` or, for a `generateName`, `Job ns/migrate-`.
    pub hook: String,
    /// The object created, with the name the API server gave it.
    pub object: InventoryEntry,
    pub uid: String,
    pub result: VerificationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// ferry deleted it, as its delete policy asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}
