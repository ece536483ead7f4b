//! PostSync hooks: rendered objects annotated `ferry.dev/hook: PostSync` (typically a Job
//! running smoke tests). They are not part of the synced state (no inventory, no prune, no
//! drift): ferry creates them once a revision is synced and Healthy, replaces them on the next
//! revision, and records how they ended in `status.verification`. A revision whose hooks
//! failed is a failed deployment (reason `VerificationFailed`) and never becomes the
//! `verifiedRevision` that promotion follows.
//!
//! Steady state stays free: once the hooks of a revision have ended, no pass touches them.
//!
//! [`split`] and [`converge`] are what the sync pass calls; their failures are [`HookError`]s,
//! which carry the condition reason, metric category and retry advice of each (the sync pass's
//! error wraps them in one variant).

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::api::DynamicObject;
use serde_json::Value;

use super::{
    context::Context,
    prunable::{PruneError, prunable},
};
use crate::{
    api::{
        HOOK_ANNOTATION, InventoryEntry, POST_SYNC, VerificationPhase, VerificationStatus, conditions as c,
    },
    apply::{AppRef, Applier, ApplyError, Ownership, describe, inventory_entry, label_object, ownership_of},
};

/// Annotation on a hook object: the revision it was created for.
pub const HOOK_REVISION_ANNOTATION: &str = "ferry.dev/hook-revision";

/// Why the PostSync hooks of a pass could not be split from the render, run or cleared away.
/// The condition reason, metric category and retry advice of each are those the sync pass gave
/// the same failure before hooks had an error of their own.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook annotation other than PostSync: syncing or dropping the object would both surprise.
    #[error("{object} has {}: {value:?}; the only hook ferry runs is {}", HOOK_ANNOTATION, POST_SYNC)]
    Unsupported { object: String, value: String },
    #[error("the PostSync hook {hook} has no name")]
    Unnamed { hook: String },
    /// An object of a hook's name that this Application did not create.
    #[error(
        "{hook} exists and is not a PostSync hook this Application created; ferry neither trusts, replaces nor deletes it, so {revision} stays unverified until it is removed"
    )]
    Conflict { hook: String, revision: String },
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
            HookError::Unsupported { .. } | HookError::Unnamed { .. } => c::VALIDATION_FAILED,
            HookError::Conflict { .. } => c::OWNERSHIP_CONFLICT,
            HookError::Apply(_) => c::APPLY_FAILED,
            HookError::CleanUp(e) => e.reason(),
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            HookError::Unsupported { .. } | HookError::Unnamed { .. } => "validation",
            HookError::Conflict { .. } => "conflict",
            HookError::Apply(_) => "apply",
            HookError::CleanUp(e) => e.category(),
        }
    }

    /// Whether retrying without any change may help.
    pub fn is_transient(&self) -> bool {
        match self {
            HookError::Apply(e) => e.is_transient(),
            HookError::CleanUp(e) => e.is_transient(),
            HookError::Unsupported { .. } | HookError::Unnamed { .. } | HookError::Conflict { .. } => false,
        }
    }
}

/// Splits a render into the objects to sync and the PostSync hooks. Any other hook value is an
/// error naming the object, since silently syncing or dropping it would both surprise.
pub fn split(
    rendered: &[DynamicObject],
    app: &AppRef,
) -> Result<(Vec<DynamicObject>, Vec<DynamicObject>), HookError> {
    let mut objects = Vec::with_capacity(rendered.len());
    let mut hooks = Vec::new();
    for obj in rendered {
        match obj.metadata.annotations.as_ref().and_then(|a| a.get(HOOK_ANNOTATION)) {
            None => objects.push(obj.clone()),
            Some(v) if v == POST_SYNC => {
                let mut hook = obj.clone();
                label_object(&mut hook, app);
                hooks.push(hook);
            }
            Some(other) => {
                return Err(HookError::Unsupported { object: describe(obj), value: other.clone() });
            }
        }
    }
    Ok((objects, hooks))
}

/// How a hook object ended, read from its live state.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Running,
    Succeeded,
    Failed(String),
}

/// A Job by its conditions (`Complete`/`SuccessCriteriaMet`, `Failed`/`FailureTarget`), a Pod by
/// its phase; any other kind has done its work once it exists.
pub fn outcome(kind: &str, live: &Value) -> Outcome {
    let conditions = live.pointer("/status/conditions").and_then(Value::as_array);
    let condition = |types: &[&str]| {
        conditions.into_iter().flatten().find(|c| {
            c.get("status").and_then(Value::as_str) == Some("True")
                && c.get("type").and_then(Value::as_str).is_some_and(|t| types.contains(&t))
        })
    };
    match kind {
        "Job" => {
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
        "Pod" => match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Outcome::Succeeded,
            Some("Failed") => Outcome::Failed("the Pod failed".into()),
            _ => Outcome::Running,
        },
        _ => Outcome::Succeeded,
    }
}

/// The phase of all hooks together: the first failure, else running while any runs.
pub fn combine(outcomes: &[(String, Outcome)]) -> (VerificationPhase, Option<String>) {
    if let Some((name, Outcome::Failed(why))) = outcomes.iter().find(|(_, o)| matches!(o, Outcome::Failed(_)))
    {
        return (VerificationPhase::Failed, Some(format!("PostSync hook {name} failed: {why}")));
    }
    let running: Vec<&str> =
        outcomes.iter().filter(|(_, o)| *o == Outcome::Running).map(|(n, _)| n.as_str()).collect();
    if running.is_empty() {
        let names: Vec<&str> = outcomes.iter().map(|(n, _)| n.as_str()).collect();
        (VerificationPhase::Succeeded, Some(format!("PostSync hooks succeeded: {}", names.join(", "))))
    } else {
        (VerificationPhase::Running, Some(format!("running PostSync hooks: {}", running.join(", "))))
    }
}

/// What a pass knows of its revision's verification.
pub struct Verify<'a> {
    /// The PostSync hooks of the render, as [`split`] returned them.
    pub hooks: &'a [DynamicObject],
    pub revision: &'a str,
    /// The verification in the status before this pass.
    pub previous: Option<&'a VerificationStatus>,
    /// The synced objects are Healthy: hooks start only then.
    pub healthy: bool,
}

/// The verification of `verify.revision` after this pass, its hooks run as `app` through
/// `applier`. Returns the previous status unchanged while there is nothing to do.
pub async fn converge(
    ctx: &Context,
    applier: &Applier,
    app: &AppRef,
    verify: Verify<'_>,
) -> Result<Option<VerificationStatus>, HookError> {
    let runner = Runner { ctx, applier, app };
    let Verify { hooks, revision, previous, healthy } = verify;
    let current = previous.filter(|v| v.revision == revision);
    if hooks.is_empty() {
        // The revision has no hooks: those of an earlier one go.
        if let Some(prev) = previous {
            runner.delete_ours(&prev.hooks).await?;
        }
        return Ok(None);
    }
    match current {
        Some(v) if v.phase != VerificationPhase::Running => return Ok(Some(v.clone())),
        None if !healthy => return Ok(previous.cloned()),
        _ => {}
    }
    if current.is_none()
        && let Some(prev) = previous
    {
        runner.delete_ours(&prev.hooks).await?;
    }
    runner.run(hooks, revision, current).await.map(Some)
}

/// One PostSync hook of the render, with the names it goes by.
struct Hook<'a> {
    object: &'a DynamicObject,
    /// As shown in messages.
    name: String,
    entry: InventoryEntry,
}

/// Runs the hooks of one Application: as it acts (`applier`), labelled as its own (`app`).
struct Runner<'a> {
    ctx: &'a Context,
    applier: &'a Applier,
    app: &'a AppRef,
}

impl Runner<'_> {
    /// Runs or reads every hook of `revision`; `current`: the verification of `revision` so far.
    async fn run(
        &self,
        hooks: &[DynamicObject],
        revision: &str,
        current: Option<&VerificationStatus>,
    ) -> Result<VerificationStatus, HookError> {
        // Only runs ferry created for this revision count. Their uids are in the status, which
        // only ferry writes: labels and annotations anyone who may create Jobs can forge.
        let recorded: &[String] = current.map(|v| v.hook_uids.as_slice()).unwrap_or_default();
        let mut uids = Vec::with_capacity(hooks.len());
        let mut outcomes = Vec::with_capacity(hooks.len());
        let mut entries = Vec::with_capacity(hooks.len());
        for object in hooks {
            let name = describe(object);
            let Some(entry) = inventory_entry(object) else { return Err(HookError::Unnamed { hook: name }) };
            let hook = Hook { object, name, entry };
            let (outcome, uid) = self.run_hook(&hook, revision, recorded).await?;
            uids.extend(uid);
            outcomes.push((hook.name, outcome));
            entries.push(hook.entry);
        }
        let (phase, message) = combine(&outcomes);
        let now = Time(Timestamp::now());
        let started_at = current.and_then(|v| v.started_at.clone()).or_else(|| Some(now.clone()));
        let finished_at = (phase != VerificationPhase::Running).then(|| now.clone());
        Ok(VerificationStatus {
            revision: revision.to_string(),
            phase,
            hooks: entries,
            hook_uids: uids,
            started_at,
            finished_at,
            message,
        })
    }

    /// Where one hook of `revision` stands, and the uid of the run ferry created for it: read
    /// when it is one of the `recorded` runs, else cleared away when labelled as this
    /// Application's (an earlier revision's, one of a pass that ended before its status was
    /// written, or a forgery) and created anew on a later pass once gone. An object of its name
    /// that is not labelled as this Application's is a conflict: ferry neither trusts, replaces
    /// nor deletes it.
    async fn run_hook(
        &self,
        hook: &Hook<'_>,
        revision: &str,
        recorded: &[String],
    ) -> Result<(Outcome, Option<String>), HookError> {
        let (applier, name, entry) = (self.applier, hook.name.as_str(), &hook.entry);
        let (resource, caps) = applier.resolve(hook.object)?;
        let ns = entry.namespace.as_deref();
        let Some(live) = applier.get(name, &resource, &caps, ns, &entry.name).await? else {
            let mut obj = hook.object.clone();
            obj.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(HOOK_REVISION_ANNOTATION.into(), revision.into());
            // A create, not an apply: one of that name made meanwhile is judged on the next pass.
            let created = applier.create(&obj).await?;
            tracing::info!(hook = %name, %revision, "created PostSync hook");
            return Ok((Outcome::Running, created.and_then(|c| c.metadata.uid)));
        };
        let uid = live.metadata.uid.clone();
        if uid.as_ref().is_some_and(|u| recorded.contains(u)) {
            return Ok((outcome(&entry.kind, &serde_json::to_value(&live).unwrap_or_default()), uid));
        }
        if ownership_of(live.metadata.labels.as_ref(), self.app) != Ownership::Ours {
            return Err(HookError::Conflict { hook: name.to_string(), revision: revision.to_string() });
        }
        // A Job's template cannot be changed in place: the run goes first.
        if live.metadata.deletion_timestamp.is_none() {
            applier.delete(name, &resource, &caps, ns, &entry.name, uid.as_deref()).await?;
        }
        Ok((Outcome::Running, None))
    }

    /// Deletes the hook objects of an earlier revision that are still there and still ours.
    async fn delete_ours(&self, hooks: &[InventoryEntry]) -> Result<(), HookError> {
        for hook in prunable(self.ctx, self.applier, self.app, hooks).await? {
            hook.delete(self.applier).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(outcome("ConfigMap", &json!({})), Outcome::Succeeded);
    }

    #[test]
    fn one_failure_fails_the_verification_and_running_hooks_are_named() {
        let run = |o: Outcome| ("Job ns/smoke".to_string(), o);
        let other = ("Job ns/load".to_string(), Outcome::Running);
        let (phase, message) = combine(&[run(Outcome::Succeeded), other.clone()]);
        assert_eq!(phase, VerificationPhase::Running);
        assert_eq!(message.unwrap(), "running PostSync hooks: Job ns/load");
        let (phase, message) = combine(&[other, run(Outcome::Failed("boom".into()))]);
        assert_eq!(phase, VerificationPhase::Failed);
        assert_eq!(message.unwrap(), "PostSync hook Job ns/smoke failed: boom");
        assert_eq!(combine(&[run(Outcome::Succeeded)]).0, VerificationPhase::Succeeded);
    }

    /// Each failure keeps the words, condition reason, metric category and retry advice the sync
    /// pass's error gave it before hooks had their own.
    #[test]
    fn each_failure_reads_and_counts_as_it_did_as_a_sync_error() {
        let apply = |transient: bool| {
            let (object, message) = ("Job ns/smoke".to_string(), "boom".to_string());
            HookError::Apply(match transient {
                true => ApplyError::Transient { object, message },
                false => ApplyError::Refused { object, code: 422, reason: "Invalid".into(), message },
            })
        };
        // What `prunable` fails with.
        let discovery = PruneError::Discovery(ApplyError::Discovery("timeout".into()));
        let cases = [
            (
                HookError::Unsupported { object: "Job ns/x".into(), value: "PreSync".into() },
                "Job ns/x has ferry.dev/hook: \"PreSync\"; the only hook ferry runs is PostSync",
                (c::VALIDATION_FAILED, "validation", false),
            ),
            (
                HookError::Unnamed { hook: "Job ns/".into() },
                "the PostSync hook Job ns/ has no name",
                (c::VALIDATION_FAILED, "validation", false),
            ),
            (
                HookError::Conflict { hook: "Job ns/smoke".into(), revision: "main@sha1:abc".into() },
                "Job ns/smoke exists and is not a PostSync hook this Application created; ferry neither trusts, replaces nor deletes it, so main@sha1:abc stays unverified until it is removed",
                (c::OWNERSHIP_CONFLICT, "conflict", false),
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
    fn hooks_are_split_from_the_synced_objects_and_unknown_hooks_are_refused() {
        let obj = |name: &str, hook: Option<&str>| -> DynamicObject {
            let mut v = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "ns"}});
            if let Some(h) = hook {
                v["metadata"]["annotations"] = json!({HOOK_ANNOTATION: h});
            }
            serde_json::from_value(v).unwrap()
        };
        let app = AppRef { namespace: "ns".into(), name: "shop".into() };
        let (objects, hooks) = split(&[obj("a", None), obj("smoke", Some("PostSync"))], &app).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(hooks.len(), 1);
        assert!(hooks[0].metadata.labels.as_ref().unwrap().values().any(|v| v == "shop"));
        let err = split(&[obj("x", Some("PreSync"))], &app).unwrap_err().to_string();
        assert!(err.contains("PreSync") && err.contains("PostSync"), "{err}");
    }
}
