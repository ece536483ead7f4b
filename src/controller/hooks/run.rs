//! Running the hooks of a phase: each hook's object created once per revision, read until it
//! ends, deleted as its policy says. Only objects recorded in `status.progress` (by uid) count as
//! a run: labels and annotations anyone who may create Jobs can forge, the status only ferry
//! writes.

use std::collections::HashMap;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};

use super::{HOOK_REVISION_ANNOTATION, Hook, HookError, Outcome, outcome, shown};
use crate::{
    api::{HookPhase, HookRun, InventoryEntry, SyncProgress, VerificationPhase},
    apply::{AppRef, Applier, Ownership, describe, inventory_entry, ownership_of},
    controller::{clusters::ClusterLink, prunable::prunable},
};

/// How long reading a failed Job's pods may take: its words are a courtesy, never a wait.
const POD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a pod's words goes into the status and the Event.
const POD_WORDS_MAX: usize = 300;

/// `pod migrate-x7k2p-abcde: container run exited 1 (Error): <its termination message>`.
fn pod_message(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let words = status.message.clone().or_else(|| {
        status.container_statuses.iter().flatten().find_map(|c| {
            let ended = c.state.as_ref()?.terminated.as_ref().filter(|t| t.exit_code != 0)?;
            let reason = ended.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            let message = ended.message.as_deref().map(|m| format!(": {}", m.trim())).unwrap_or_default();
            Some(format!("container {} exited {}{reason}{message}", c.name, ended.exit_code))
        })
    })?;
    let words: String = words.chars().take(POD_WORDS_MAX).collect();
    Some(format!("pod {}: {words}", pod.name_any()))
}

/// An outcome as a run records it.
fn recorded(outcome: &Outcome) -> (VerificationPhase, Option<String>) {
    match outcome {
        Outcome::Running => (VerificationPhase::Running, None),
        Outcome::Succeeded => (VerificationPhase::Succeeded, None),
        Outcome::Failed(why) => (VerificationPhase::Failed, Some(why.clone())),
    }
}

/// How the hooks of a phase (or of one wave of it) stand after a pass.
#[derive(Clone, Debug, PartialEq)]
pub enum PhaseOutcome {
    Succeeded,
    /// Some still run: which, as shown.
    Running(String),
    /// The first that failed (its object as created), and why.
    Failed {
        hook: String,
        message: String,
    },
}

/// Runs the hooks of one Application: as it acts (`applier`), labelled as its own (`app`).
pub struct Runner<'a> {
    /// The cluster the Application deploys to.
    pub cluster: &'a ClusterLink,
    pub applier: &'a Applier,
    pub app: &'a AppRef,
}

impl Runner<'_> {
    /// Runs or reads the hooks of `phase` that are for this sync (only those of `wave` when
    /// given), wave by wave: a wave starts once every hook of the one before succeeded. Every
    /// object created is recorded in `progress`.
    pub async fn run(
        &self,
        hooks: &[Hook],
        phase: HookPhase,
        wave: Option<i32>,
        progress: &mut SyncProgress,
    ) -> Result<PhaseOutcome, HookError> {
        let first_sync = progress.first_sync;
        let ours =
            hooks.iter().filter(|h| h.runs_in(phase, first_sync) && wave.is_none_or(|w| h.spec.wave == w));
        let mut occurrences: HashMap<&str, usize> = HashMap::new();
        let mut running: Vec<String> = Vec::new();
        let mut current = None;
        for hook in ours {
            if current != Some(hook.spec.wave) && !running.is_empty() {
                break;
            }
            current = Some(hook.spec.wave);
            let nth = occurrences.entry(hook.key.as_str()).or_default();
            let (outcome, shown) = self.run_one(hook, phase, *nth, progress).await?;
            *nth += 1;
            match outcome {
                Outcome::Succeeded => {}
                Outcome::Running => running.push(shown),
                Outcome::Failed(message) => return Ok(PhaseOutcome::Failed { hook: shown, message }),
            }
        }
        if running.is_empty() {
            return Ok(PhaseOutcome::Succeeded);
        }
        Ok(PhaseOutcome::Running(format!("{phase} hooks running: {}", running.join(", "))))
    }

    /// One hook: its recorded run read, or its object created.
    async fn run_one(
        &self,
        hook: &Hook,
        phase: HookPhase,
        nth: usize,
        progress: &mut SyncProgress,
    ) -> Result<(Outcome, String), HookError> {
        let recorded =
            progress.hooks.iter().enumerate().filter(|(_, r)| r.phase == phase && r.hook == hook.key);
        if let Some((i, _)) = recorded.clone().nth(nth) {
            let run = &mut progress.hooks[i];
            let shown = shown(run);
            return Ok((self.follow(hook, run).await?, shown));
        }
        let revision = progress.revision.clone();
        match self.create(hook, phase, &revision).await? {
            Some(run) => {
                let shown = shown(&run);
                let running = run.result == VerificationPhase::Running;
                progress.hooks.push(run);
                if running {
                    // Just created: read again on the next pass, not now.
                    return Ok((Outcome::Running, shown));
                }
                let last = progress.hooks.len() - 1;
                let outcome = self.follow(hook, &mut progress.hooks[last]).await?;
                Ok((outcome, shown))
            }
            None => Ok((Outcome::Running, hook.key.clone())),
        }
    }

    /// Where a recorded run stands, read live while it runs; once it ended, its object is
    /// deleted when the policy says so.
    async fn follow(&self, hook: &Hook, run: &mut HookRun) -> Result<Outcome, HookError> {
        if run.result == VerificationPhase::Running {
            let outcome = self.read(hook, run).await?;
            if outcome == Outcome::Running {
                return Ok(outcome);
            }
            (run.result, run.message) = recorded(&outcome);
            tracing::info!(app = %self.app, hook = %shown(run), result = ?run.result, "hook ended");
        }
        let policy = hook.spec.delete;
        let delete = match run.result {
            VerificationPhase::Succeeded => policy.on_success,
            VerificationPhase::Failed => policy.on_failure,
            VerificationPhase::Running => false,
        };
        if delete && !run.deleted {
            self.delete(hook, run).await?;
            run.deleted = true;
        }
        Ok(match run.result {
            VerificationPhase::Succeeded => Outcome::Succeeded,
            VerificationPhase::Failed => Outcome::Failed(run.message.clone().unwrap_or_default()),
            VerificationPhase::Running => Outcome::Running,
        })
    }

    /// The live outcome of a run: an object gone or replaced before it ended failed.
    async fn read(&self, hook: &Hook, run: &HookRun) -> Result<Outcome, HookError> {
        let (resource, caps) = self.applier.resolve(&hook.object)?;
        let (ns, name) = (run.object.namespace.as_deref(), run.object.name.as_str());
        let live = self.applier.get(&shown(run), &resource, &caps, ns, name).await?;
        Ok(match live {
            None => Outcome::Failed("deleted before it ended".into()),
            Some(l) if l.metadata.uid.as_deref() != Some(run.uid.as_str()) => {
                Outcome::Failed("replaced by another object before it ended".into())
            }
            Some(l) => match outcome(&run.object.kind, &serde_json::to_value(&l).unwrap_or_default()) {
                Outcome::Failed(why) if run.object.kind == "Job" => match self.pod_words(run).await {
                    Some(pod) => Outcome::Failed(format!("{why}; {pod}")),
                    None => Outcome::Failed(why),
                },
                other => other,
            },
        })
    }

    /// What a failed Job's pod says (its status message, or a container's termination), read
    /// as the Application acts; best effort, bounded.
    async fn pod_words(&self, run: &HookRun) -> Option<String> {
        let ns = run.object.namespace.as_deref()?;
        let pods: Api<Pod> = Api::namespaced(self.applier.client().clone(), ns);
        let selector = format!("batch.kubernetes.io/job-name={}", run.object.name);
        let params = ListParams::default().labels(&selector).limit(8);
        let pods = tokio::time::timeout(POD_READ_TIMEOUT, pods.list(&params)).await.ok()?.ok()?;
        pods.items.iter().find_map(pod_message)
    }

    /// Creates the hook's object for `revision`; `None` while an earlier run of a named hook is
    /// cleared away first (a Job's template cannot be changed in place). An object of its name
    /// that is not labelled as this Application's is a conflict: ferry neither trusts, replaces
    /// nor deletes it.
    async fn create(
        &self,
        hook: &Hook,
        phase: HookPhase,
        revision: &str,
    ) -> Result<Option<HookRun>, HookError> {
        let applier = self.applier;
        if let Some(name) = hook.object.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            let (resource, caps) = applier.resolve(&hook.object)?;
            let ns = hook.object.metadata.namespace.as_deref();
            if let Some(live) = applier.get(&hook.key, &resource, &caps, ns, name).await? {
                if ownership_of(live.metadata.labels.as_ref(), self.app) != Ownership::Ours {
                    return Err(HookError::Conflict { hook: hook.key.clone(), revision: revision.into() });
                }
                if live.metadata.deletion_timestamp.is_none() {
                    let uid = live.metadata.uid.as_deref();
                    applier.delete(&hook.key, &resource, &caps, ns, name, uid).await?;
                }
                return Ok(None);
            }
        }
        let mut obj = hook.object.clone();
        let annotations = obj.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(HOOK_REVISION_ANNOTATION.into(), revision.into());
        // A create, not an apply: one of that name made meanwhile is judged on the next pass.
        let Some(created) = applier.create(&obj).await? else { return Ok(None) };
        let (Some(object), Some(uid)) = (inventory_entry(&created), created.metadata.uid.clone()) else {
            return Err(HookError::Unnamed { hook: hook.key.clone() });
        };
        tracing::info!(app = %self.app, hook = %describe(&created), %phase, %revision, "created hook");
        // A kind judged by its health (a ConfigMap) may have ended already.
        let (result, message) =
            recorded(&outcome(&object.kind, &serde_json::to_value(&created).unwrap_or_default()));
        let (wave, hook) = (hook.spec.wave, hook.key.clone());
        Ok(Some(HookRun { phase, wave, hook, object, uid, result, message, deleted: false }))
    }

    /// Deletes a run's object, and only it (its uid is the precondition).
    async fn delete(&self, hook: &Hook, run: &HookRun) -> Result<(), HookError> {
        let (resource, caps) = self.applier.resolve(&hook.object)?;
        let (ns, name) = (run.object.namespace.as_deref(), run.object.name.as_str());
        // Gone already, or replaced by an object that is not this run: the delete is a no-op.
        Ok(self.applier.delete(&shown(run), &resource, &caps, ns, name, Some(&run.uid)).await?)
    }

    /// At the start of a revision: deletes the objects of the previous revision's runs that are
    /// still there and still ours, except those of a hook the new revision keeps without
    /// `BeforeHookCreation` (as Argo CD, such a run stays until deleted by hand).
    pub async fn clear_previous(&self, previous: &[HookRun], hooks: &[Hook]) -> Result<(), HookError> {
        let replaced = |run: &HookRun| {
            let next = hooks.iter().find(|h| h.key == run.hook);
            next.is_none_or(|h| h.spec.delete.before_creation)
        };
        let entries: Vec<InventoryEntry> =
            previous.iter().filter(|r| !r.deleted && replaced(r)).map(|r| r.object.clone()).collect();
        self.delete_ours(&entries).await
    }

    /// Deletes the objects of `entries` that are still there and still ours.
    pub async fn delete_ours(&self, entries: &[InventoryEntry]) -> Result<(), HookError> {
        for hook in prunable(self.cluster, self.applier, self.app, entries).await? {
            hook.delete(self.applier).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_pods_words_are_its_message_or_a_containers_termination_bounded() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "migrate-x-1"}, "status": status}))
                .unwrap()
        };
        let evicted = pod(serde_json::json!({"message": "The node was low on resource: memory."}));
        assert_eq!(pod_message(&evicted).unwrap(), "pod migrate-x-1: The node was low on resource: memory.");
        let exited = pod(
            serde_json::json!({"containerStatuses": [{"name": "run", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "relation \"users\" exists\n"}}}]}),
        );
        assert_eq!(
            pod_message(&exited).unwrap(),
            "pod migrate-x-1: container run exited 3 (Error): relation \"users\" exists"
        );
        let long = pod(serde_json::json!({"message": "x".repeat(10_000)}));
        assert!(pod_message(&long).unwrap().len() < POD_WORDS_MAX + 40);
        assert_eq!(pod_message(&pod(serde_json::json!({}))), None);
    }
}
