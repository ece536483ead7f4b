//! Hooks: rendered objects annotated as Argo CD, Helm or ferry hooks (typically Jobs: a database
//! migration before the revision, smoke tests after it). They are not part of the synced state
//! (no inventory, no prune, no drift): ferry creates them once per revision in their phase —
//! PreSync before anything is applied, Sync with the objects of their wave, PostSync once the
//! revision is Healthy, SyncFail when one of those failed — records every object it created in
//! `status.progress`, and deletes them as their delete policy says, or with the Application.
//!
//! A failed PreSync or Sync hook stops the sync with nothing further applied (reason
//! `HookFailed`). A failed PostSync hook is a failed deployment (reason `VerificationFailed`) that
//! never becomes the `verifiedRevision` promotion follows.
//!
//! Steady state stays free: once the hooks of a revision have ended, no pass touches them.
//!
//! [`split`] is what the build stage calls, [`run::Runner`] what the sync pass runs hooks with;
//! their failures are [`HookError`]s, which carry the condition reason, metric category and
//! retry advice of each (the sync pass's error wraps them in one variant).

mod run;

use kube::api::DynamicObject;
use serde_json::Value;

pub use self::run::{PhaseOutcome, Runner};
use super::prunable::PruneError;
pub use crate::plan::hooks::Hook;
use crate::{
    api::{HookPhase, HookRun, conditions as c},
    apply::{AppRef, ApplyError, describe, label_object},
    health::{self, ObjectHealth},
    plan::hooks::{AnnotationError, Role, role},
};

/// Annotation on a hook object: the revision it was created for.
pub const HOOK_REVISION_ANNOTATION: &str = "ferry.dev/hook-revision";

/// Why the hooks of a pass could not be split from the render, run or cleared away. The
/// condition reason, metric category and retry advice of each are those the sync pass gave the
/// same failure before hooks had an error of their own.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook or sync-wave annotation ferry cannot read.
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error("the hook {hook} has neither a name nor a generateName")]
    Unnamed { hook: String },
    /// An object of a hook's name that this Application did not create.
    #[error(
        "{hook} exists and is not a hook this Application created; ferry neither trusts, replaces nor deletes it, so {revision} waits until it is removed"
    )]
    Conflict { hook: String, revision: String },
    /// A PreSync or Sync hook failed: nothing further of the revision is applied.
    #[error("{phase} hook {hook} failed: {message}")]
    Failed { phase: HookPhase, hook: String, message: String },
    /// Reading, creating or deleting a hook object.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Checking or deleting an earlier revision's hooks, as a prune does.
    #[error(transparent)]
    CleanUp(#[from] PruneError),
}

impl HookError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            HookError::Annotation(_) | HookError::Unnamed { .. } => c::VALIDATION_FAILED,
            HookError::Conflict { .. } => c::OWNERSHIP_CONFLICT,
            HookError::Failed { .. } => c::HOOK_FAILED,
            HookError::Apply(_) => c::APPLY_FAILED,
            HookError::CleanUp(e) => e.reason(),
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            HookError::Annotation(_) | HookError::Unnamed { .. } => "validation",
            HookError::Conflict { .. } => "conflict",
            HookError::Failed { .. } => "hook",
            HookError::Apply(_) => "apply",
            HookError::CleanUp(e) => e.category(),
        }
    }

    /// Whether retrying without any change may help. A failed hook is not retried: a new
    /// revision, a spec change or `ferry sync` runs the hooks again, as a new sync does in
    /// Argo CD.
    pub fn is_transient(&self) -> bool {
        match self {
            HookError::Apply(e) => e.is_transient(),
            HookError::CleanUp(e) => e.is_transient(),
            HookError::Annotation(_)
            | HookError::Unnamed { .. }
            | HookError::Conflict { .. }
            | HookError::Failed { .. } => false,
        }
    }
}

/// Splits a render into the objects to sync and the hooks; objects to skip (Argo's `Skip`,
/// Helm's test and rollback hooks) are dropped. An annotation ferry cannot read is an error
/// naming the object, since silently syncing or dropping it would both surprise.
pub fn split(rendered: &[DynamicObject], app: &AppRef) -> Result<(Vec<DynamicObject>, Vec<Hook>), HookError> {
    let mut objects = Vec::with_capacity(rendered.len());
    let mut hooks = Vec::new();
    for obj in rendered {
        match role(obj)? {
            Role::Synced { .. } => objects.push(obj.clone()),
            Role::Skip => {}
            Role::Hook(spec) => {
                let named = |s: &Option<String>| s.as_deref().is_some_and(|n| !n.is_empty());
                if !named(&obj.metadata.name) && !named(&obj.metadata.generate_name) {
                    return Err(HookError::Unnamed { hook: describe(obj) });
                }
                let mut object = obj.clone();
                label_object(&mut object, app);
                hooks.push(Hook { key: describe(obj), object, spec });
            }
        }
    }
    // The order hooks of a wave run in, as Argo CD sorts them: by kind, then name.
    hooks.sort_by(|a, b| a.spec.wave.cmp(&b.spec.wave).then_with(|| a.key.cmp(&b.key)));
    Ok((objects, hooks))
}

/// `Job ns/migrate-x7k2p`: a run's object as shown.
pub fn shown(run: &HookRun) -> String {
    let o = &run.object;
    match &o.namespace {
        Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
        None => format!("{} {}", o.kind, o.name),
    }
}

/// How a hook object ended, read from its live state.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Running,
    Succeeded,
    Failed(String),
}

/// A Job by its conditions (`Complete`/`SuccessCriteriaMet`, `Failed`/`FailureTarget`), a Pod by
/// its phase; any other kind by its health (Healthy succeeded, Degraded failed).
pub fn outcome(kind: &str, live: &Value) -> Outcome {
    match kind {
        "Job" => job_outcome(live),
        "Pod" => match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Outcome::Succeeded,
            Some("Failed") => {
                let message = live.pointer("/status/message").and_then(Value::as_str);
                Outcome::Failed(message.unwrap_or("the Pod failed").to_string())
            }
            _ => Outcome::Running,
        },
        _ => match health::assess(live, &health::HealthChecks::default()) {
            ObjectHealth { status: crate::api::HealthStatusCode::Healthy, .. } => Outcome::Succeeded,
            ObjectHealth { status: crate::api::HealthStatusCode::Degraded, message } => {
                Outcome::Failed(message.unwrap_or_else(|| "degraded".into()))
            }
            _ => Outcome::Running,
        },
    }
}

fn job_outcome(live: &Value) -> Outcome {
    let conditions = live.pointer("/status/conditions").and_then(Value::as_array);
    let condition = |types: &[&str]| {
        conditions.into_iter().flatten().find(|c| {
            c.get("status").and_then(Value::as_str) == Some("True")
                && c.get("type").and_then(Value::as_str).is_some_and(|t| types.contains(&t))
        })
    };
    if let Some(failed) = condition(&["Failed", "FailureTarget"]) {
        let why = ["reason", "message"]
            .iter()
            .filter_map(|k| failed.get(*k).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(": ");
        Outcome::Failed(if why.is_empty() { "the Job failed".into() } else { why })
    } else if condition(&["Complete", "SuccessCriteriaMet"]).is_some() {
        Outcome::Succeeded
    } else {
        Outcome::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ARGO_HOOK_ANNOTATION, HOOK_ANNOTATION, SYNC_WAVE_ANNOTATION};
    use serde_json::json;

    fn job(conditions: Value) -> Value {
        json!({"status": {"conditions": conditions}})
    }

    #[test]
    fn a_job_is_read_from_its_conditions() {
        assert_eq!(outcome("Job", &json!({})), Outcome::Running);
        assert_eq!(outcome("Job", &job(json!([{"type": "Complete", "status": "True"}]))), Outcome::Succeeded);
        assert_eq!(outcome("Job", &job(json!([{"type": "Complete", "status": "False"}]))), Outcome::Running);
        assert_eq!(
            outcome(
                "Job",
                &job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit"}]))
            ),
            Outcome::Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into())
        );
        assert_eq!(
            outcome("Pod", &json!({"status": {"phase": "Failed"}})),
            Outcome::Failed("the Pod failed".into())
        );
    }

    #[test]
    fn other_kinds_end_by_their_health() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(outcome("ConfigMap", &cm), Outcome::Succeeded);
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "generation": 2}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1}});
        assert_eq!(outcome("Deployment", &deploy), Outcome::Running);
    }

    #[test]
    fn each_failure_has_its_reason_category_and_retry_advice() {
        let apply = |transient: bool| {
            let (object, message) = ("Job ns/smoke".to_string(), "boom".to_string());
            HookError::Apply(match transient {
                true => ApplyError::Transient { object, message },
                false => ApplyError::Refused { object, code: 422, reason: "Invalid".into(), message },
            })
        };
        let discovery = PruneError::Discovery(ApplyError::Discovery("timeout".into()));
        let failed = HookError::Failed {
            phase: HookPhase::PreSync,
            hook: "Job ns/migrate-x2".into(),
            message: "DeadlineExceeded: Job was active longer than specified deadline".into(),
        };
        let cases = [
            (
                HookError::Unnamed { hook: "Job ns/".into() },
                "the hook Job ns/ has neither a name nor a generateName",
                (c::VALIDATION_FAILED, "validation", false),
            ),
            (
                HookError::Conflict { hook: "Job ns/smoke".into(), revision: "main@sha1:abc".into() },
                "Job ns/smoke exists and is not a hook this Application created; ferry neither trusts, replaces nor deletes it, so main@sha1:abc waits until it is removed",
                (c::OWNERSHIP_CONFLICT, "conflict", false),
            ),
            (
                failed,
                "PreSync hook Job ns/migrate-x2 failed: DeadlineExceeded: Job was active longer than specified deadline",
                (c::HOOK_FAILED, "hook", false),
            ),
            (apply(true), "Job ns/smoke: boom", (c::APPLY_FAILED, "apply", true)),
            (
                apply(false),
                "Job ns/smoke: refused by the API server: boom",
                (c::APPLY_FAILED, "apply", false),
            ),
            (
                HookError::CleanUp(discovery),
                "API discovery failed: timeout",
                (c::APPLY_FAILED, "discovery", true),
            ),
        ];
        for (err, words, (reason, category, transient)) in cases {
            assert_eq!(err.to_string(), words);
            assert_eq!(
                (err.reason(), err.category(), err.is_transient()),
                (reason, category, transient),
                "{err}"
            );
        }
    }

    #[test]
    fn hooks_are_split_from_the_synced_objects_in_wave_order() {
        let obj = |name: &str, annotations: Value| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "namespace": "ns", "annotations": annotations}}))
            .unwrap()
        };
        let app = AppRef { namespace: "ns".into(), name: "shop".into() };
        let rendered = [
            obj("a", json!({})),
            obj("smoke", json!({HOOK_ANNOTATION: "PostSync"})),
            obj("migrate", json!({ARGO_HOOK_ANNOTATION: "PreSync", SYNC_WAVE_ANNOTATION: "-1"})),
            obj("skipped", json!({ARGO_HOOK_ANNOTATION: "Skip"})),
        ];
        let (objects, hooks) = split(&rendered, &app).unwrap();
        assert_eq!(objects.len(), 1);
        let keys: Vec<&str> = hooks.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["Job ns/migrate", "Job ns/smoke"]);
        assert!(hooks[0].object.metadata.labels.as_ref().unwrap().values().any(|v| v == "shop"));
        let err = split(&[obj("x", json!({HOOK_ANNOTATION: "PreDeploy"}))], &app).unwrap_err().to_string();
        assert!(err.contains("PreDeploy") && err.contains("Job ns/x"), "{err}");
    }
}
