//! The sync of a revision with hooks or sync waves, in Argo CD's phases: PreSync hooks, then the
//! waves in ascending order (each wave's objects and Sync hooks, Healthy before the next wave
//! starts), then prune and, once everything is Healthy, the PostSync hooks ([`super::verify`]);
//! SyncFail hooks when a hook failed. `status.progress` records where it stands, so a pass picks
//! up where the last one stopped and hooks run once per revision, not on every drift correction.
//!
//! A revision without hooks and with one wave (nearly all) has no progress and costs nothing
//! here: its objects are applied as one batch, as they always were.

use std::collections::BTreeSet;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use serde_json::Value;

use super::{build::Built, desired::Desired, pass::Pass, write};
use crate::{
    api::{
        Application, HealthStatusCode, HookPhase, RECONCILE_AT_ANNOTATION, SyncProgress, VerificationPhase,
    },
    controller::{
        error::SyncError,
        hooks::{HookError, PhaseOutcome, Runner, shown},
        memory::AppMemory,
    },
    health::{self, HealthChecks, ObjectHealth, ObjectName},
    plan::ApplyMode,
};

/// Whether the sync goes on past a phase or a wave in this pass.
#[derive(Debug, PartialEq)]
pub enum Gate {
    Open,
    /// Not yet: what it waits for.
    Wait(String),
}

/// What the waves stage applied, and whether it stopped at a wave that is not Healthy yet.
pub struct WavesApplied {
    pub applied: Vec<usize>,
    pub waiting: Option<String>,
}

fn runner<'a>(pass: Pass<'a>, built: &'a Built) -> Runner<'a> {
    Runner { cluster: pass.cluster, applier: &built.applier, app: pass.app_ref }
}

/// The revision's progress: kept when it is this revision's, else started anew (after clearing
/// the previous revision's hook objects as their policies say), or none when the revision has
/// neither hooks nor more than one wave.
pub async fn begin(
    pass: Pass<'_>,
    built: &Built,
    progress: &mut Option<SyncProgress>,
) -> Result<(), HookError> {
    let revision = built.revision.to_string();
    if progress.as_ref().is_some_and(|p| p.revision == revision && !is_retried(pass.app, p)) {
        return Ok(());
    }
    let run = runner(pass, built);
    match progress.take() {
        Some(previous) => run.clear_previous(&previous.hooks, &built.split.hooks).await?,
        // PostSync hooks recorded before `status.progress` existed.
        None => {
            let verification = pass.app.status.as_ref().and_then(|s| s.verification.as_ref());
            if let Some(v) = verification.filter(|v| v.revision != revision) {
                run.delete_ours(&v.hooks).await?;
            }
        }
    }
    if built.split.hooks.is_empty() && waves(built).len() <= 1 {
        return Ok(());
    }
    *progress = Some(SyncProgress {
        revision,
        first_sync: is_first_sync(pass.app),
        phase: HookPhase::PreSync,
        wave: None,
        result: VerificationPhase::Running,
        hooks: Vec::new(),
        started_at: Some(Time(Timestamp::now())),
        message: None,
        generation: pass.app.metadata.generation,
        requested_at: requested_at(pass.app),
    });
    Ok(())
}

/// A sync whose PreSync or Sync hook failed is tried again after a spec change or a new
/// `ferry sync` request; on its own it is not.
fn is_retried(app: &Application, p: &SyncProgress) -> bool {
    let failed = p.result == VerificationPhase::Failed && p.phase != HookPhase::PostSync;
    failed && (p.generation != app.metadata.generation || p.requested_at != requested_at(app))
}

fn requested_at(app: &Application) -> Option<String> {
    app.metadata.annotations.as_ref().and_then(|a| a.get(RECONCILE_AT_ANNOTATION)).cloned()
}

/// Whether the Application has never synced a revision: Helm's install hooks run, not its
/// upgrade hooks.
fn is_first_sync(app: &Application) -> bool {
    app.status.as_ref().is_none_or(|s| s.last_applied_revision.is_none() && s.inventory.is_empty())
}

/// The PreSync hooks: they must all succeed before anything of the revision is applied. A
/// revision whose PreSync or Sync hook failed stays failed (its SyncFail hooks followed) until a
/// new revision, a spec change or `ferry sync` ([`begin`] starts it anew then).
pub async fn pre_sync(
    pass: Pass<'_>,
    built: &Built,
    progress: &mut Option<SyncProgress>,
) -> Result<Gate, HookError> {
    let Some(p) = progress.as_mut() else { return Ok(Gate::Open) };
    if p.result == VerificationPhase::Failed && p.phase != HookPhase::PostSync {
        return Err(failed_again(pass, built, p).await);
    }
    if p.phase != HookPhase::PreSync {
        return Ok(Gate::Open);
    }
    match runner(pass, built).run(&built.split.hooks, HookPhase::PreSync, None, p).await? {
        PhaseOutcome::Succeeded => {
            p.phase = HookPhase::Sync;
            p.message = None;
            Ok(Gate::Open)
        }
        PhaseOutcome::Running(message) => Ok(wait(p, message)),
        PhaseOutcome::Failed { hook, message } => Err(fail(pass, built, p, hook, message).await),
    }
}

/// Applies the changed objects wave by wave (ferry's kind order inside each), running each
/// wave's Sync hooks after its objects; stops at a wave that is not Healthy yet when a later
/// one has something to do.
pub async fn apply_waves(
    pass: Pass<'_>,
    (built, checks): (&mut Built, &HealthChecks),
    mem: &mut AppMemory,
    changes: &write::Changes,
    progress: &mut Option<SyncProgress>,
) -> Result<WavesApplied, SyncError> {
    let waves = waves(built);
    if waves.len() <= 1 && progress.is_none() {
        let applied = write::apply(pass, built, mem, changes, None).await?;
        return Ok(WavesApplied { applied, waiting: None });
    }
    let mut applied = Vec::new();
    for (k, &wave) in waves.iter().enumerate() {
        applied.extend(write::apply(pass, built, mem, changes, Some(wave)).await?);
        if let Some(p) = progress.as_mut().filter(|p| p.result == VerificationPhase::Running) {
            p.wave = Some(wave);
        }
        if let Gate::Wait(message) = sync_hooks(pass, built, wave, progress).await? {
            return Ok(WavesApplied { applied, waiting: Some(message) });
        }
        let later = &waves[k + 1..];
        if later.is_empty() || !has_work(built, changes, later, progress.as_ref()) {
            continue;
        }
        let health = health_of(mem, checks, built.desired.iter().filter(|d| d.wave == wave));
        if health.status != HealthStatusCode::Healthy {
            let why = health.message.unwrap_or_else(|| format!("{:?}", health.status));
            let message = format!("sync wave {wave} is not Healthy yet: {why}");
            if let Some(p) = progress.as_mut() {
                p.message = Some(message.clone());
            }
            return Ok(WavesApplied { applied, waiting: Some(message) });
        }
    }
    Ok(WavesApplied { applied, waiting: None })
}

/// The Sync hooks of one wave.
async fn sync_hooks(
    pass: Pass<'_>,
    built: &Built,
    wave: i32,
    progress: &mut Option<SyncProgress>,
) -> Result<Gate, HookError> {
    let Some(p) = progress.as_mut().filter(|p| p.phase == HookPhase::Sync) else { return Ok(Gate::Open) };
    match runner(pass, built).run(&built.split.hooks, HookPhase::Sync, Some(wave), p).await? {
        PhaseOutcome::Succeeded => Ok(Gate::Open),
        PhaseOutcome::Running(message) => Ok(wait(p, message)),
        PhaseOutcome::Failed { hook, message } => Err(fail(pass, built, p, hook, message).await),
    }
}

/// Whether a wave of `later` has an object to apply or a Sync hook still to run.
fn has_work(built: &Built, changes: &write::Changes, later: &[i32], progress: Option<&SyncProgress>) -> bool {
    let changed = changes.changed.iter().any(|&i| later.contains(&built.desired[i].wave));
    let hooks_left = progress
        .is_some_and(|p| p.phase == HookPhase::Sync && p.result == VerificationPhase::Running)
        && built.split.hooks.iter().any(|h| {
            later.contains(&h.spec.wave) && h.runs_in(HookPhase::Sync, progress.is_some_and(|p| p.first_sync))
        });
    changed || hooks_left
}

/// The waves of the revision's objects and of its Sync hooks, ascending.
pub fn waves(built: &Built) -> Vec<i32> {
    let objects = built.desired.iter().map(|d| d.wave);
    let hooks = built.split.hooks.iter().filter(|h| h.spec.phases.iter().any(|(p, _)| *p == HookPhase::Sync));
    let all: BTreeSet<i32> = objects.chain(hooks.map(|h| h.spec.wave)).collect();
    all.into_iter().collect()
}

fn wait(p: &mut SyncProgress, message: String) -> Gate {
    p.message = Some(message.clone());
    Gate::Wait(message)
}

/// Records a failed hook, starts the SyncFail hooks, and returns the failure.
pub async fn fail(
    pass: Pass<'_>,
    built: &Built,
    p: &mut SyncProgress,
    hook: String,
    message: String,
) -> HookError {
    let error = HookError::Failed { phase: p.phase, hook, message };
    tracing::warn!(app = %pass.app_ref, %error, "hook failed");
    p.result = VerificationPhase::Failed;
    p.message = Some(error.to_string());
    sync_fail(pass, built, p).await;
    error
}

/// The failure recorded for this revision, its SyncFail hooks followed meanwhile.
async fn failed_again(pass: Pass<'_>, built: &Built, p: &mut SyncProgress) -> HookError {
    sync_fail(pass, built, p).await;
    let failed = p.hooks.iter().find(|r| r.phase == p.phase && r.result == VerificationPhase::Failed);
    HookError::Failed {
        phase: p.phase,
        hook: failed.map(shown).unwrap_or_else(|| "?".into()),
        message: failed.and_then(|r| r.message.clone()).unwrap_or_default(),
    }
}

/// Runs (or follows) the SyncFail hooks; their own failure is logged, the first one reported.
pub async fn sync_fail(pass: Pass<'_>, built: &Built, p: &mut SyncProgress) {
    match runner(pass, built).run(&built.split.hooks, HookPhase::SyncFail, None, p).await {
        Ok(PhaseOutcome::Failed { hook, message }) => {
            tracing::warn!(app = %pass.app_ref, %hook, %message, "SyncFail hook failed");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(app = %pass.app_ref, %error, "running the SyncFail hooks"),
    }
}

/// Whether a hook of the progress still runs: the pass looks again soon.
pub fn hooks_running(progress: Option<&SyncProgress>) -> bool {
    progress.is_some_and(|p| p.hooks.iter().any(|r| r.result == VerificationPhase::Running))
}

/// The health of some objects, from the live objects ferry has seen. Kinds whose live object
/// is not kept (ConfigMaps, Secrets, RBAC) are healthy when they exist.
pub fn health_of<'a>(
    mem: &AppMemory,
    checks: &HealthChecks,
    desired: impl Iterator<Item = &'a Desired>,
) -> ObjectHealth {
    let blank = Value::Object(Default::default());
    // An object its options keep ferry from writing (Flux `ssa: Ignore`, `reconcile: disabled`)
    // counts only when it exists: ferry does not create it.
    let counted = desired.filter(|d| d.options.apply != ApplyMode::Skip || mem.known.contains_key(&d.key));
    health::aggregate(
        checks,
        counted.map(|d| {
            let name = ObjectName::from(&d.entry);
            let live = mem.known.get(&d.key).map(|k| k.live.as_deref().unwrap_or(&blank));
            (name, live)
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(phase: HookPhase, result: VerificationPhase) -> SyncProgress {
        SyncProgress {
            revision: "main@sha1:abc".into(),
            first_sync: false,
            phase,
            wave: None,
            result,
            hooks: vec![],
            started_at: None,
            message: None,
            generation: Some(1),
            requested_at: Some("t1".into()),
        }
    }

    fn app(generation: i64, requested_at: &str) -> Application {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "team", "generation": generation,
                         "annotations": {RECONCILE_AT_ANNOTATION: requested_at}},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_hook_is_tried_again_only_after_a_spec_change_or_a_sync_request() {
        let failed = progress(HookPhase::PreSync, VerificationPhase::Failed);
        assert!(!is_retried(&app(1, "t1"), &failed), "not on its own");
        assert!(is_retried(&app(2, "t1"), &failed), "a spec change");
        assert!(is_retried(&app(1, "t2"), &failed), "ferry sync");
        // A failed verification is a failed deployment, not a sync to retry; a running sync goes on.
        assert!(!is_retried(&app(2, "t2"), &progress(HookPhase::PostSync, VerificationPhase::Failed)));
        assert!(!is_retried(&app(2, "t2"), &progress(HookPhase::PreSync, VerificationPhase::Running)));
    }
}
