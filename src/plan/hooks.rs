//! What a rendered object's annotations make of it: an object synced in a sync wave, a hook
//! (when it runs, its wave, what deletes it), or something to skip.
//!
//! ferry reads its own `ferry.dev/hook`, Argo CD's `argocd.argoproj.io/hook` (the same values)
//! and Helm's `helm.sh/hook`; Argo's annotation wins over Helm's, as in Argo CD. Unlike Argo CD,
//! which runs Helm's install and upgrade hooks on every sync (argo-cd#7536), a Helm hook here
//! knows whether it is for the Application's first sync (install) or a later one (upgrade).
//! Pure functions: every rule is unit-tested.

use std::collections::BTreeMap;

use kube::api::DynamicObject;

use crate::api::{
    ARGO_HOOK_ANNOTATION, ARGO_HOOK_DELETE_POLICY_ANNOTATION, HELM_HOOK_ANNOTATION,
    HELM_HOOK_DELETE_POLICY_ANNOTATION, HELM_HOOK_WEIGHT_ANNOTATION, HOOK_ANNOTATION,
    HOOK_DELETE_POLICY_ANNOTATION, HookPhase, SYNC_WAVE_ANNOTATION,
};

/// Which syncs a hook runs for: Helm's `pre-install` only on the first, `pre-upgrade` only on
/// later ones, everything else on every revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    FirstSync,
    LaterSyncs,
}

impl When {
    fn merge(self, other: When) -> When {
        if self == other { self } else { When::Always }
    }

    pub fn matches(self, first_sync: bool) -> bool {
        match self {
            When::Always => true,
            When::FirstSync => first_sync,
            When::LaterSyncs => !first_sync,
        }
    }
}

/// What deletes a hook's object (Argo CD's `hook-delete-policy`, Helm's likewise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletePolicy {
    /// The previous run's object goes before a new run is created (the default).
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

/// A hook: the phases it runs in, its wave within them, and its delete policy.
#[derive(Clone, Debug, PartialEq)]
pub struct HookSpec {
    pub phases: Vec<(HookPhase, When)>,
    pub wave: i32,
    pub delete: DeletePolicy,
}

impl HookSpec {
    /// Whether it runs in `phase` of a sync (the first, or a later one).
    pub fn runs_in(&self, phase: HookPhase, first_sync: bool) -> bool {
        self.phases.iter().any(|(p, when)| *p == phase && when.matches(first_sync))
    }
}

/// A hook of the render: the object as ferry creates it (labelled as the Application's), and
/// when it runs.
#[derive(Clone, Debug)]
pub struct Hook {
    pub object: DynamicObject,
    pub spec: HookSpec,
    /// As the revision declares it: `Job ns/migrate`, or `Job ns/migrate-` for a generateName.
    pub key: String,
}

impl Hook {
    /// Whether it runs in `phase` of this sync.
    pub fn runs_in(&self, phase: HookPhase, first_sync: bool) -> bool {
        self.spec.runs_in(phase, first_sync)
    }
}

/// What an object is to the sync.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Synced with the objects of its wave.
    Synced {
        wave: i32,
    },
    Hook(HookSpec),
    /// Neither synced nor run: Argo's `Skip`, Helm's test and rollback hooks.
    Skip,
}

/// An annotation ferry cannot read: the object is named, nothing of the revision is applied.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{object}: annotation {annotation}: {value:?} is not {expected}")]
pub struct AnnotationError {
    pub object: String,
    pub annotation: &'static str,
    pub value: String,
    pub expected: &'static str,
}

const ARGO_PHASES: &str = "one of PreSync, Sync, PostSync, SyncFail, PostDelete, Skip";
const ARGO_POLICIES: &str = "one of HookSucceeded, HookFailed, BeforeHookCreation";
const HELM_HOOKS: &str = "a Helm hook (pre-install, post-install, pre-upgrade, post-upgrade, pre-delete, post-delete, pre-rollback, post-rollback, test)";
const HELM_POLICIES: &str = "one of before-hook-creation, hook-succeeded, hook-failed";
const INTEGER: &str = "an integer";

/// The object's role, from its annotations.
pub fn role(obj: &DynamicObject) -> Result<Role, AnnotationError> {
    let empty = BTreeMap::new();
    let annotations = obj.metadata.annotations.as_ref().unwrap_or(&empty);
    let read = Reader { object: obj, annotations };
    let wave = read.integer(SYNC_WAVE_ANNOTATION)?;
    let argo = annotations.get(HOOK_ANNOTATION).map(|v| (HOOK_ANNOTATION, v));
    let argo = argo.or_else(|| annotations.get(ARGO_HOOK_ANNOTATION).map(|v| (ARGO_HOOK_ANNOTATION, v)));
    if let Some((name, value)) = argo {
        return read.argo_hook(name, value, wave.unwrap_or(0));
    }
    if let Some(value) = annotations.get(HELM_HOOK_ANNOTATION) {
        // Argo CD takes a Helm hook's weight as its wave; so does ferry.
        let wave = match wave {
            Some(w) => w,
            None => read.integer(HELM_HOOK_WEIGHT_ANNOTATION)?.unwrap_or(0),
        };
        return read.helm_hook(value, wave);
    }
    Ok(Role::Synced { wave: wave.unwrap_or(0) })
}

/// The sync wave of an object to sync; 0 when it has none or cannot be read (the build
/// refuses the latter through [`role`] before anything is applied).
pub fn wave_of(obj: &DynamicObject) -> i32 {
    match role(obj) {
        Ok(Role::Synced { wave }) => wave,
        Ok(Role::Hook(spec)) => spec.wave,
        _ => 0,
    }
}

/// Whether an object has no hook or sync-wave annotation at all: the common case, which needs
/// no reading.
pub fn is_plain(obj: &DynamicObject) -> bool {
    let Some(annotations) = &obj.metadata.annotations else { return true };
    !crate::api::HOOK_ANNOTATIONS.iter().chain([&SYNC_WAVE_ANNOTATION]).any(|k| annotations.contains_key(*k))
}

struct Reader<'a> {
    object: &'a DynamicObject,
    annotations: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    fn error(&self, annotation: &'static str, value: &str, expected: &'static str) -> AnnotationError {
        let object = crate::render::describe(self.object);
        AnnotationError { object, annotation, value: value.to_string(), expected }
    }

    fn integer(&self, annotation: &'static str) -> Result<Option<i32>, AnnotationError> {
        let Some(value) = self.annotations.get(annotation) else { return Ok(None) };
        value.trim().parse().map(Some).map_err(|_| self.error(annotation, value, INTEGER))
    }

    fn argo_hook(&self, annotation: &'static str, value: &str, wave: i32) -> Result<Role, AnnotationError> {
        let mut phases = Vec::new();
        for word in words(value) {
            let phase = match word {
                "PreSync" => HookPhase::PreSync,
                "Sync" => HookPhase::Sync,
                "PostSync" => HookPhase::PostSync,
                "SyncFail" => HookPhase::SyncFail,
                "PostDelete" => HookPhase::PostDelete,
                "Skip" => return Ok(Role::Skip),
                _ => return Err(self.error(annotation, value, ARGO_PHASES)),
            };
            phases.push((phase, When::Always));
        }
        if phases.is_empty() {
            return Err(self.error(annotation, value, ARGO_PHASES));
        }
        let delete = self.argo_policy()?;
        Ok(Role::Hook(HookSpec { phases, wave, delete }))
    }

    fn argo_policy(&self) -> Result<DeletePolicy, AnnotationError> {
        let found = [HOOK_DELETE_POLICY_ANNOTATION, ARGO_HOOK_DELETE_POLICY_ANNOTATION]
            .into_iter()
            .find_map(|k| self.annotations.get(k).map(|v| (k, v)));
        let Some((annotation, value)) = found else { return Ok(DeletePolicy::default_policy()) };
        let mut policy = DeletePolicy::default();
        for word in words(value) {
            match word {
                "HookSucceeded" => policy.on_success = true,
                "HookFailed" => policy.on_failure = true,
                "BeforeHookCreation" => policy.before_creation = true,
                _ => return Err(self.error(annotation, value, ARGO_POLICIES)),
            }
        }
        Ok(policy)
    }

    fn helm_hook(&self, value: &str, wave: i32) -> Result<Role, AnnotationError> {
        let mut phases: Vec<(HookPhase, When)> = Vec::new();
        for word in words(value) {
            let (phase, when) = match word {
                "pre-install" => (HookPhase::PreSync, When::FirstSync),
                "pre-upgrade" => (HookPhase::PreSync, When::LaterSyncs),
                "post-install" => (HookPhase::PostSync, When::FirstSync),
                "post-upgrade" => (HookPhase::PostSync, When::LaterSyncs),
                "pre-delete" => (HookPhase::PreDelete, When::Always),
                "post-delete" => (HookPhase::PostDelete, When::Always),
                // ferry never rolls a release back through Helm, and runs no tests.
                "pre-rollback" | "post-rollback" | "test" | "test-success" | "test-failure"
                | "crd-install" => {
                    continue;
                }
                _ => return Err(self.error(HELM_HOOK_ANNOTATION, value, HELM_HOOKS)),
            };
            match phases.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, w)) => *w = w.merge(when),
                None => phases.push((phase, when)),
            }
        }
        if phases.is_empty() {
            return Ok(Role::Skip);
        }
        let delete = self.helm_policy()?;
        Ok(Role::Hook(HookSpec { phases, wave, delete }))
    }

    fn helm_policy(&self) -> Result<DeletePolicy, AnnotationError> {
        let Some(value) = self.annotations.get(HELM_HOOK_DELETE_POLICY_ANNOTATION) else {
            return Ok(DeletePolicy::default_policy());
        };
        let mut policy = DeletePolicy::default();
        for word in words(value) {
            match word {
                "hook-succeeded" => policy.on_success = true,
                "hook-failed" => policy.on_failure = true,
                "before-hook-creation" => policy.before_creation = true,
                _ => return Err(self.error(HELM_HOOK_DELETE_POLICY_ANNOTATION, value, HELM_POLICIES)),
            }
        }
        Ok(policy)
    }
}

impl DeletePolicy {
    /// Argo CD's and Helm's default: the previous run goes when the next is created.
    fn default_policy() -> DeletePolicy {
        DeletePolicy { before_creation: true, ..DeletePolicy::default() }
    }
}

fn words(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "migrate-", "namespace": "shop", "annotations": annotations}}))
        .unwrap()
    }

    fn hook(annotations: serde_json::Value) -> HookSpec {
        match role(&obj(annotations)).unwrap() {
            Role::Hook(spec) => spec,
            other => panic!("not a hook: {other:?}"),
        }
    }

    #[test]
    fn objects_sync_in_their_wave() {
        assert_eq!(role(&obj(json!({}))).unwrap(), Role::Synced { wave: 0 });
        assert_eq!(role(&obj(json!({SYNC_WAVE_ANNOTATION: "-2"}))).unwrap(), Role::Synced { wave: -2 });
        let err = role(&obj(json!({SYNC_WAVE_ANNOTATION: "first"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Job shop/migrate-: annotation argocd.argoproj.io/sync-wave: \"first\" is not an integer"
        );
    }

    #[test]
    fn argo_hooks_take_their_phases_wave_and_delete_policy() {
        let spec = hook(json!({ARGO_HOOK_ANNOTATION: "PreSync", SYNC_WAVE_ANNOTATION: "-1",
            ARGO_HOOK_DELETE_POLICY_ANNOTATION: "HookSucceeded"}));
        assert_eq!(spec.phases, [(HookPhase::PreSync, When::Always)]);
        assert_eq!(spec.wave, -1);
        assert_eq!(spec.delete, DeletePolicy { on_success: true, ..DeletePolicy::default() });
        // BeforeHookCreation is the default, as in Argo CD.
        let spec = hook(json!({HOOK_ANNOTATION: "PostSync, SyncFail"}));
        assert_eq!(spec.phases.len(), 2);
        assert!(spec.delete.before_creation && !spec.delete.on_success);
        assert_eq!(role(&obj(json!({ARGO_HOOK_ANNOTATION: "Skip"}))).unwrap(), Role::Skip);
        let err = role(&obj(json!({ARGO_HOOK_ANNOTATION: "PreDeploy"}))).unwrap_err().to_string();
        assert!(err.contains("PreDeploy") && err.contains("one of PreSync"), "{err}");
        let err =
            role(&obj(json!({ARGO_HOOK_ANNOTATION: "Sync", ARGO_HOOK_DELETE_POLICY_ANNOTATION: "Always"})))
                .unwrap_err();
        assert_eq!(err.annotation, ARGO_HOOK_DELETE_POLICY_ANNOTATION);
    }

    #[test]
    fn helm_hooks_know_install_from_upgrade() {
        let spec = hook(json!({HELM_HOOK_ANNOTATION: "pre-install", HELM_HOOK_WEIGHT_ANNOTATION: "5"}));
        assert!(spec.runs_in(HookPhase::PreSync, true));
        assert!(!spec.runs_in(HookPhase::PreSync, false));
        assert_eq!(spec.wave, 5);
        let spec = hook(json!({HELM_HOOK_ANNOTATION: "pre-upgrade"}));
        assert!(!spec.runs_in(HookPhase::PreSync, true) && spec.runs_in(HookPhase::PreSync, false));
        let spec = hook(json!({HELM_HOOK_ANNOTATION: "pre-install,pre-upgrade",
            HELM_HOOK_DELETE_POLICY_ANNOTATION: "hook-succeeded,before-hook-creation"}));
        assert!(spec.runs_in(HookPhase::PreSync, true) && spec.runs_in(HookPhase::PreSync, false));
        assert!(spec.delete.on_success && spec.delete.before_creation && !spec.delete.on_failure);
        let spec = hook(json!({HELM_HOOK_ANNOTATION: "post-install"}));
        assert!(spec.runs_in(HookPhase::PostSync, true) && !spec.runs_in(HookPhase::PostSync, false));
        assert_eq!(role(&obj(json!({HELM_HOOK_ANNOTATION: "test"}))).unwrap(), Role::Skip);
        assert!(role(&obj(json!({HELM_HOOK_ANNOTATION: "pre-deploy"}))).is_err());
        assert!(
            role(&obj(json!({HELM_HOOK_ANNOTATION: "pre-install", HELM_HOOK_WEIGHT_ANNOTATION: "x"})))
                .is_err()
        );
    }

    #[test]
    fn argo_annotations_win_over_helms() {
        let spec = hook(json!({ARGO_HOOK_ANNOTATION: "Sync", HELM_HOOK_ANNOTATION: "pre-install"}));
        assert_eq!(spec.phases, [(HookPhase::Sync, When::Always)]);
    }
}
