//! Deletion hooks: when an Application whose objects go with it is deleted, its PreDelete hooks
//! (Helm's `pre-delete`) run before the objects are deleted and its PostDelete hooks (Argo CD's
//! `PostDelete`, Helm's `post-delete`) after them; the finalizer stays until they ended, and
//! their objects are deleted then. `status.progress` records them as it records a sync's hooks.
//!
//! The hooks are those of the revision the source resolves to now, rendered as a sync renders
//! it. A source that cannot be fetched or rendered any more never holds the deletion up: the
//! objects are deleted without hooks, and a warning says so. A failed deletion hook is reported
//! (log and Event) and the deletion goes on, so an Application can always be deleted.

use std::sync::Arc;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};

use super::{
    context::Context,
    events,
    hooks::{HookError, PhaseOutcome, Runner},
    sync,
};
use crate::{
    api::{Application, HookPhase, InventoryEntry, SyncProgress, VerificationPhase},
    apply::{AppRef, Applier, ApplyError},
    controller::clusters::ClusterLink,
    plan::hooks::Hook,
};

/// The deletion hooks of an Application being deleted, and where they stand.
pub struct DeletionHooks {
    hooks: Arc<Vec<Hook>>,
    applier: Applier,
    /// The cluster the Application deployed to.
    cluster: Arc<ClusterLink>,
    pub progress: SyncProgress,
    /// The progress as loaded: only a change is written.
    loaded: SyncProgress,
}

/// Whether the deletion goes on in this pass.
pub enum Gate {
    Open,
    /// A hook runs: the finalizer stays, ferry looks again soon.
    Wait(String),
}

/// The deletion hooks of `app`, or none when its revision has none or cannot be rendered.
pub async fn load(ctx: &Context, app: &Application, app_ref: &AppRef) -> Option<DeletionHooks> {
    let memory = ctx.memory(app_ref);
    let mut mem = memory.lock().await;
    let (applier, cluster, hooks, revision) = match sync::hooks_of(ctx, app, app_ref, &mut mem).await {
        Ok(built) => built,
        Err(error) => {
            tracing::warn!(app = %app_ref, %error, "deleting without deletion hooks: the source could not be rendered");
            return None;
        }
    };
    let deletion =
        |h: &Hook| h.runs_in(HookPhase::PreDelete, false) || h.runs_in(HookPhase::PostDelete, false);
    if !hooks.iter().any(deletion) {
        return None;
    }
    let previous = mem.deletion.clone().or_else(|| app.status.as_ref().and_then(|s| s.progress.clone()));
    let progress = match previous {
        Some(p) if matches!(p.phase, HookPhase::PreDelete | HookPhase::PostDelete) => p,
        // The runs of the last sync stay recorded: their objects go with the others.
        other => SyncProgress {
            revision: revision.to_string(),
            first_sync: false,
            phase: HookPhase::PreDelete,
            wave: None,
            result: VerificationPhase::Running,
            hooks: other.map(|p| p.hooks).unwrap_or_default(),
            started_at: Some(Time(Timestamp::now())),
            message: None,
            generation: app.metadata.generation,
            requested_at: None,
        },
    };
    Some(DeletionHooks { hooks, applier, cluster, loaded: progress.clone(), progress })
}

impl DeletionHooks {
    /// Runs (or follows) the hooks of `phase`; a failure is reported and does not hold the
    /// deletion up.
    pub async fn run(
        &mut self,
        ctx: &Context,
        app: &Application,
        phase: HookPhase,
    ) -> Result<Gate, HookError> {
        let app_ref = AppRef { namespace: app.namespace().unwrap_or_default(), name: app.name_any() };
        let runner = Runner { cluster: &self.cluster, applier: &self.applier, app: &app_ref };
        let outcome = runner.run(&self.hooks, phase, None, &mut self.progress).await?;
        let gate = match outcome {
            PhaseOutcome::Running(message) => Gate::Wait(message),
            PhaseOutcome::Succeeded => Gate::Open,
            PhaseOutcome::Failed { hook, message } => {
                let note = format!("{phase} hook {hook} failed: {message}; the deletion goes on");
                tracing::warn!(app = %app_ref, %note, "deletion hook failed");
                events::publish(ctx, app, EventType::Warning, events::HOOK_FAILED, &note).await;
                Gate::Open
            }
        };
        self.progress.message = match &gate {
            Gate::Wait(message) => Some(message.clone()),
            Gate::Open => None,
        };
        Ok(gate)
    }

    /// The hook objects to delete with the Application's objects: every recorded run not
    /// deleted yet, except PostDelete runs (they run after).
    pub fn objects_before_post_delete(&self) -> Vec<InventoryEntry> {
        let runs = self.progress.hooks.iter().filter(|r| !r.deleted && r.phase != HookPhase::PostDelete);
        runs.map(|r| r.object.clone()).collect()
    }

    /// Deletes the PostDelete runs' objects once they ended: nothing of the Application stays.
    pub async fn clear(&self, app_ref: &AppRef) -> Result<(), HookError> {
        let runner = Runner { cluster: &self.cluster, applier: &self.applier, app: app_ref };
        let runs = self.progress.hooks.iter().filter(|r| !r.deleted && r.phase == HookPhase::PostDelete);
        runner.delete_ours(&runs.map(|r| r.object.clone()).collect::<Vec<_>>()).await
    }

    /// Writes `status.progress` of the Application being deleted, so its hook runs are known
    /// on the next pass.
    pub async fn record(&self, ctx: &Context, app: &Application) -> Result<(), HookError> {
        if self.progress == self.loaded {
            return Ok(());
        }
        let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
        let api: Api<Application> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({"status": {"progress": self.progress}});
        let written = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        written.map_err(|e| {
            let object = format!("Application {namespace}/{name}");
            HookError::Apply(ApplyError::Transient {
                object,
                message: format!("writing status.progress: {e}"),
            })
        })?;
        ctx.memory(&AppRef { namespace, name }).lock().await.deletion = Some(self.progress.clone());
        Ok(())
    }
}
