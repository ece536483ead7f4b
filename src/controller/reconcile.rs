//! The reconcile function: a finalizer around "sync, then report".
//!
//! Reporting is where steady state stays free: the status is written only when it differs from
//! what the API server holds, and Events are published for things that happened (an apply, a
//! prune, a correction) or for a failure that is new, never for a pass that changed nothing.
//!
//! After a pass: [`next_status`] (a pure function: `record_synced` or `record_failed`, then the
//! conditions), `write_status`, `count_work` (metrics, delivery figures), `announce` (Events),
//! and the requeue.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{self, Event as Finalized, finalizer},
    },
};

use super::{
    context::Context,
    deletion, delivery,
    error::{PruneError, SyncError},
    events,
    memory::AppMemory,
    prunable, revert,
    status::{self, Phase},
    sync::{self, Attempt, SyncState, count},
};
use crate::{
    api::{
        Application, ApplicationStatus, HealthStatus, HealthStatusCode, HistoryEntry, HookPhase,
        InventoryEntry, RevertPhase, SyncResult, SyncStatus, SyncStatusCode, VerificationPhase,
        VerificationStatus, conditions as c,
    },
    apply::{AppRef, Applier, FIELD_MANAGER, prune_candidates},
    duration,
    metrics::{DeploymentResult, Stage},
};
use tracing::Instrument;

/// How often running PostSync hooks are looked at.
const HOOK_POLL: Duration = Duration::from_secs(2);

/// How soon an Application waiting for `spec.dependsOn` looks again by itself. A safety net
/// only: the Application watch wakes it as soon as a dependency's readiness changes (an event
/// can be missed while the watch re-lists).
const DEPENDENCY_RETRY: Duration = Duration::from_secs(120);

/// Finalizer that lets ferry delete (or orphan) what an Application synced before it goes.
pub const FINALIZER: &str = "ferry.dev/cleanup";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Application has no namespace")]
    NoNamespace,
    #[error("writing the status of {app}: {source}")]
    Status { app: String, source: StatusWriteError },
    #[error("cleaning up {app}: {source}")]
    Cleanup { app: String, source: SyncError },
    /// Not a failure: a deletion hook runs, and the finalizer stays until it ended.
    #[error("deleting {app}: {message}")]
    DeletionHooksRunning { app: String, message: String },
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<Error>>),
}

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("the API server did not answer in time")]
    Timeout,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl Error {
    /// A deletion hook runs: the finalizer stays, nothing failed.
    pub fn is_waiting_for_hooks(&self) -> bool {
        matches!(self, Error::Finalizer(e)
            if matches!(e.as_ref(), finalizer::Error::CleanupFailed(Error::DeletionHooksRunning { .. })))
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.category()
                }
                _ => "finalizer",
            },
            Error::Status { .. } => "status",
            Error::Cleanup { .. } => "cleanup",
            Error::DeletionHooksRunning { .. } => "hook",
            Error::NoNamespace => "validation",
        }
    }
}

/// Reconciles one Application. The finalizer runs `apply` normally and `cleanup` on deletion.
/// Every log line of a reconcile carries the Application, and the revision from the moment the
/// fetch resolved it (recorded once: text logs would repeat a field recorded twice).
pub async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time(Stage::Total);
    let ns = app.namespace().ok_or(Error::NoNamespace)?;
    let span = tracing::info_span!(
        "reconcile",
        app = %format_args!("{ns}/{}", app.name_any()),
        revision = tracing::field::Empty,
    );
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, app, |event| async {
        match event {
            Finalized::Apply(app) => apply(&app, &ctx).await,
            Finalized::Cleanup(app) => cleanup(&app, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(e) = &result
        && !e.is_waiting_for_hooks()
    {
        ctx.metrics.reconciled(false);
        ctx.metrics.error(e.category());
    }
    result
}

/// Errors that escaped reconcile (status writes, finalizer patches, cleanup): retry with a
/// jittered backoff. Sync failures never get here: reconcile reports them in the status and
/// chooses its own requeue, backing off transient ones and waiting on the others.
pub fn error_policy(app: Arc<Application>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_waiting_for_hooks() {
        return Action::requeue(HOOK_POLL);
    }
    tracing::warn!(app = %app.name_any(), namespace = app.namespace().unwrap_or_default(), %error, "reconcile failed; retrying");
    Action::requeue(jitter(Duration::from_secs(10), &app.name_any()))
}

async fn apply(app: &Application, ctx: &Context) -> Result<Action, Error> {
    let app_ref = app_ref(app);
    let memory = ctx.memory(&app_ref);
    let mut mem = memory.lock().await;
    // ferry is the only writer of the status. Right after a write the watch cache may still
    // hold the status before it; computing the next one from that would drop what the last
    // pass recorded (a history entry), so the status ferry last wrote wins.
    let current;
    let app = match &mem.written_status {
        Some((uid, written))
            if app.metadata.uid.as_ref() == Some(uid) && app.status.as_ref() != Some(written) =>
        {
            current = Application { status: Some(written.clone()), ..app.clone() };
            &current
        }
        _ => app,
    };
    let interval = duration::parse(&app.spec.interval).unwrap_or(Duration::from_secs(180));

    if app.spec.suspend {
        let mut next = app.status.clone().unwrap_or_default();
        next.observed_generation = app.metadata.generation;
        next.conditions =
            status::conditions_for(&next.conditions, &Phase::Suspended, app.metadata.generation, &now());
        write_status(ctx, app, &mut mem, next).await?;
        ctx.metrics.reconciled(true);
        return Ok(Action::await_change());
    }
    if !mem.tracked {
        ctx.metrics.track(&app_ref);
        let applied = app.status.as_ref().and_then(|s| s.last_applied_revision.as_deref());
        mem.delivery.seed(applied.and_then(delivery::commit_of));
        mem.tracked = true;
    }

    let started = now();
    let attempt = sync::sync(ctx, app, &app_ref, &mut mem).await;
    let mut next = next_status(app, &attempt, &started, &now());
    let reverted = revert_failed_revision(ctx, app, &app_ref, &mut next, &mut mem).await;
    let phase_ready = next.conditions.iter().any(|c| c.type_ == c::READY && c.status == "True");
    // A rollout that waits for a person (paused, aborted) is not polled: its Events and the
    // rollout-request annotation bring the next reconcile.
    let waits_for_person = |s: &sync::Synced| {
        s.rollout.as_ref().is_some_and(|d| {
            d.aborted || d.health.as_ref().is_some_and(|h| h.0 == HealthStatusCode::Suspended)
        })
    };
    let progressing = matches!(&attempt.result,
        Ok(s) if s.state == SyncState::Synced && !phase_ready && !waits_for_person(s));
    write_status(ctx, app, &mut mem, next).await?;
    ctx.metrics.reconciled(attempt.result.is_ok());
    count_work(ctx, app, &attempt, &mut mem).await;
    announce(ctx, app, &attempt, &mut mem).await;

    Ok(match &attempt.result {
        // Git just moved: deploy the revert at once.
        _ if reverted => Action::requeue(Duration::from_secs(1)),
        Ok(s) => {
            mem.failures = 0;
            Action::requeue(after_success(s, &attempt, interval, progressing))
        }
        // The SyncFail hooks of a failed hook are followed until they end.
        Err(_) if sync::hooks_running(attempt.progress.as_ref()) => Action::requeue(HOOK_POLL),
        Err(e) if e.is_transient() => {
            mem.failures = mem.failures.saturating_add(1);
            Action::requeue(backoff(mem.failures, &app_ref.name).min(interval))
        }
        Err(e) if e.awaits_change() => Action::await_change(),
        Err(SyncError::Dependencies(e)) if e.is_waiting() => dependency_retry(&app_ref, interval),
        // A new commit or a spec change can fix it: look again at the next interval.
        Err(_) => Action::requeue(interval),
    })
}

/// A revert in Git of the revision that just failed, when `rollback.gitRevert` asks for one
/// (see [`revert`]). True when Git moved (a revert was pushed to the tracked branch).
async fn revert_failed_revision(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    next: &mut ApplicationStatus,
    mem: &mut AppMemory,
) -> bool {
    let Some(due) = revert::due(app, next, &Timestamp::now()) else { return false };
    revert::run(ctx, app, app_ref, due, next).await;
    let pushed = next.revert.as_ref().is_some_and(|r| r.phase == RevertPhase::Pushed && r.commit.is_some());
    mem.refresh_source |= pushed;
    pushed
}

/// When to look again after a pass that got through: at the interval, sooner while the
/// revision progresses, a rollout step is due or the sync goes on over several passes.
fn after_success(s: &sync::Synced, attempt: &Attempt, interval: Duration, progressing: bool) -> Duration {
    // Watches of the objects bring health changes at once; this is the fallback.
    let mut next = if progressing { interval.min(Duration::from_secs(15)) } else { interval };
    // A rollout knows when its next step is due (a pause ends, a measurement).
    // Zero: a stage that must follow at once, as nothing a watch shows changes for it (the
    // hand-over's, after deleting ReplicaSets); any other due time waits at least 200 ms.
    if let Some(due) = s.rollout.as_ref().and_then(|d| d.requeue) {
        next = next.min(if due.is_zero() { due } else { due.max(Duration::from_millis(200)) });
    }
    // Hooks are not watched: their Jobs are looked at every few seconds while they run; a
    // wave's health is watched, this is the fallback.
    if matches!(s.state, SyncState::InProgress { .. }) || sync::hooks_running(attempt.progress.as_ref()) {
        next = next.min(HOOK_POLL);
    }
    next
}

/// The hook objects ferry created and has not deleted: they go with the Application.
fn hook_objects(app: &Application) -> Vec<InventoryEntry> {
    let status = app.status.as_ref();
    let runs = status.and_then(|s| s.progress.as_ref()).map(|p| p.hooks.as_slice()).unwrap_or_default();
    let mut objects: Vec<InventoryEntry> =
        runs.iter().filter(|r| !r.deleted).map(|r| r.object.clone()).collect();
    // PostSync hooks recorded before `status.progress` existed.
    for entry in status.and_then(|s| s.verification.as_ref()).map(|v| v.hooks.as_slice()).unwrap_or_default()
    {
        if !objects.contains(entry) {
            objects.push(entry.clone());
        }
    }
    objects
}

/// Deletes what the Application synced (deletion policy Delete) or leaves it (Orphan).
async fn cleanup(app: &Application, ctx: &Context) -> Result<Action, Error> {
    let app_ref = app_ref(app);
    let inventory = app.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default();
    // Deleted as the ServiceAccount the objects were synced as; never as ferry when the lockdown
    // requires one (the objects are then left in place).
    let acting_as = ctx.tenancy(&app_ref.namespace).service_account(app);
    if let Err(refusal) = &acting_as {
        tracing::warn!(app = %app_ref, %refusal, "not deleting the objects of a deleted Application");
    }
    if let (Ok(sa), true) =
        (&acting_as, app.spec.deletes_on_removal() && !app.spec.suspend && !inventory.is_empty())
    {
        delete_with_hooks(app, ctx, &app_ref, sa.as_deref(), &inventory).await?;
    } else {
        tracing::info!(app = %app_ref, objects = inventory.len(), "Application deleted; its objects are left in place");
    }
    ctx.claims.set(&app_ref, &[]);
    ctx.forget(&app_ref);
    ctx.metrics.forget(&app_ref);
    ctx.metrics.reconciled(true);
    Ok(Action::await_change())
}

/// The PreDelete hooks, then the objects, then the PostDelete hooks (see [`deletion`]).
async fn delete_with_hooks(
    app: &Application,
    ctx: &Context,
    app_ref: &AppRef,
    service_account: Option<&str>,
    inventory: &[InventoryEntry],
) -> Result<(), Error> {
    let fail = |source: SyncError| Error::Cleanup { app: app_ref.to_string(), source };
    let mut hooks = deletion::load(ctx, app, app_ref).await;
    for phase in [HookPhase::PreDelete, HookPhase::PostDelete] {
        if let Some(d) = hooks.as_mut().filter(|d| d.progress.phase <= phase) {
            d.progress.phase = phase;
            if phase == HookPhase::PostDelete {
                let before = d.objects_before_post_delete();
                delete_objects(ctx, app, app_ref, service_account, inventory, before).await?;
            }
            if let deletion::Gate::Wait(message) = d.run(ctx, app, phase).await.map_err(|e| fail(e.into()))? {
                d.record(ctx, app).await.map_err(|e| fail(e.into()))?;
                return Err(Error::DeletionHooksRunning { app: app_ref.to_string(), message });
            }
        }
    }
    match &hooks {
        Some(d) => d.clear(app_ref).await.map_err(|e| fail(e.into())),
        None => delete_objects(ctx, app, app_ref, service_account, inventory, hook_objects(app)).await,
    }
}

/// Deletes the synced objects, the rollout's and the hook objects `hooks`, as `service_account`.
async fn delete_objects(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    service_account: Option<&str>,
    inventory: &[InventoryEntry],
    hooks: Vec<InventoryEntry>,
) -> Result<(), Error> {
    let fail = |source| Error::Cleanup { app: app_ref.to_string(), source };
    let tenancy = ctx.tenancy(&app_ref.namespace);
    let (_, cluster, client) =
        sync::clients(ctx, app, app_ref, &tenancy, service_account).await.map_err(|e| fail(e.into()))?;
    let discovery = cluster.discovery().await;
    let applier = Applier::with_discovery(client, discovery.clone(), ctx.options.api_timeout);
    let mut order =
        prune_candidates(inventory, &[], true, |_| false).map_err(|e| fail(PruneError::Refused(e).into()))?;
    // A rollout's canary objects and the hooks are in no inventory; they go first.
    order.splice(0..0, super::strategy::derived_objects(app, inventory));
    order.splice(0..0, hooks);
    let victims = prunable::removable(&cluster, &applier, app_ref, &order, prunable::Removal::Delete)
        .await
        .map_err(|e| fail(e.into()))?;
    for victim in &victims {
        victim.delete(&applier).await.map_err(|e| fail(e.into()))?;
    }
    tracing::info!(app = %app_ref, deleted = victims.len(), "deleted the objects of a deleted Application");
    Ok(())
}

/// The work and delivery metrics of a pass.
async fn count_work(ctx: &Context, app: &Application, attempt: &Attempt, mem: &mut AppMemory) {
    if let Ok(s) = &attempt.result
        && let Some(d) = &s.rollout
    {
        for verdict in &d.measured {
            ctx.metrics.analysis_measured(verdict.as_str());
        }
        if let Some((result, took)) = d.finished {
            let blue_green = app.spec.strategy.as_ref().is_some_and(|s| s.blue_green.is_some());
            ctx.metrics.rollout_finished(if blue_green { "blueGreen" } else { "canary" }, result, took);
        }
    }
    let Some(pass) = delivery_pass(ctx, app, attempt, mem).await else { return };
    let app_ref = app_ref(app);
    let now = std::time::SystemTime::now();
    for figure in mem.delivery.observe(pass, now) {
        match figure {
            delivery::Figure::Succeeded { lead_time } => {
                let at = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
                ctx.metrics.deployed(&app_ref, at, lead_time);
                tracing::info!(lead_time_seconds = lead_time.map(|d| d.as_secs()), "deployment healthy");
            }
            delivery::Figure::Failed => {
                ctx.metrics.deployment(&app_ref, DeploymentResult::Failed);
                tracing::info!("deployment failed");
            }
            delivery::Figure::Restored(after) => ctx.metrics.restored(after),
        }
    }
}

/// Counts the pass's syncs, corrections and errors, and what the delivery figures make of it:
/// `None` for a pass they do not look at (not synced yet, waiting, a transient failure).
async fn delivery_pass<'a>(
    ctx: &Context,
    app: &Application,
    attempt: &'a Attempt,
    mem: &mut AppMemory,
) -> Option<delivery::Pass<'a>> {
    let (metrics, app_ref) = (&ctx.metrics, &app_ref(app));
    let commit = attempt.revision.as_ref().map(|r| r.commit.as_str());
    match (&attempt.result, commit) {
        (Ok(s), Some(commit)) => {
            let changed = !s.applied.is_empty() || !s.pruned.is_empty();
            if changed {
                metrics.synced(app_ref, true);
            }
            if !s.corrected.is_empty() {
                metrics.drift_corrected(app_ref, s.corrected.len());
            }
            if s.state != SyncState::Synced {
                return None;
            }
            let committed_at = match (commit.strip_prefix("sha256:"), app.spec.source.git()) {
                _ if !mem.delivery.starts(commit, changed) => None,
                // A chart: its creation time in the repository's index (the chart digest comes
                // first when values come from Git too).
                (Some(digest), _) => ctx.artifacts.charts.created_at(digest.get(..64).unwrap_or(digest)),
                (None, Some((url, _))) => ctx.git.commit_time(url, commit).await,
                (None, None) => None,
            };
            Some(delivery::Pass::Synced { commit, changed, health: s.health.status, committed_at })
        }
        (Err(e), _) if e.is_waiting() => None,
        (Err(e), commit) => {
            metrics.synced(app_ref, false);
            metrics.error(e.category());
            match commit {
                Some(commit) if !e.is_transient() => Some(delivery::Pass::Failed { commit }),
                _ => None,
            }
        }
        (Ok(_), None) => None,
    }
}

/// The status after `attempt`, from the previous one.
pub fn next_status(app: &Application, attempt: &Attempt, started: &Time, now: &Time) -> ApplicationStatus {
    let prev = app.status.clone().unwrap_or_default();
    let mut next = prev.clone();
    next.observed_generation = app.metadata.generation;
    let pass = Pass {
        revision: attempt.revision.as_ref().map(ToString::to_string),
        short: attempt.revision.as_ref().map(|r| r.short()),
        started,
        now,
    };
    if pass.revision.is_some() {
        next.last_attempted_revision = pass.revision.clone();
    }
    next.progress = attempt.progress.clone();
    let phase = match &attempt.result {
        Ok(s) => record_synced(&mut next, &prev, s, &pass),
        Err(e) => record_failed(&mut next, &prev, e, &pass),
    };
    // Healthy (and, with hooks, verified): what Applications that follow this one deploy.
    if matches!(phase, Phase::Ready { .. }) && pass.revision.is_some() {
        next.verified_revision = pass.revision;
    }
    next.conditions = status::conditions_for(&prev.conditions, &phase, app.metadata.generation, now);
    next
}

/// A pass as the status records it: the revision it worked on (when the fetch resolved one)
/// and when it ran.
struct Pass<'a> {
    revision: Option<String>,
    short: Option<String>,
    started: &'a Time,
    now: &'a Time,
}

impl Pass<'_> {
    /// The history entry of this pass.
    fn history(&self, result: SyncResult, message: String) -> HistoryEntry {
        HistoryEntry {
            revision: self.revision.clone().unwrap_or_else(|| "unknown".into()),
            started_at: self.started.clone(),
            finished_at: Some(self.now.clone()),
            result,
            message: Some(message),
            verification: None,
        }
    }

    fn sync_status(&self, status: SyncStatusCode) -> SyncStatus {
        SyncStatus { status, revision: self.revision.clone(), short_revision: self.short.clone() }
    }
}

/// Records in `next` a pass that got through the sync (synced, drifted or out of sync); returns
/// its phase.
fn record_synced(
    next: &mut ApplicationStatus,
    prev: &ApplicationStatus,
    s: &sync::Synced,
    pass: &Pass,
) -> Phase {
    let synced = s.state == SyncState::Synced;
    let code = if synced { SyncStatusCode::Synced } else { SyncStatusCode::OutOfSync };
    next.sync = Some(pass.sync_status(code));
    next.health = Some(HealthStatus { status: s.health.status, message: s.health.message.clone() });
    if matches!(s.state, SyncState::InProgress { .. }) {
        next.inventory = s.inventory.clone();
    }
    if synced {
        next.inventory = s.inventory.clone();
        next.last_applied_revision = pass.revision.clone();
    }
    if !s.applied.is_empty() || !s.pruned.is_empty() {
        let message = format!("applied {}, pruned {}", s.applied.len(), s.pruned.len());
        next.history = status::record_history(&prev.history, pass.history(SyncResult::Succeeded, message));
    }
    record_rollout(next, s, pass);
    if synced {
        next.verification = s.verification.clone();
    }
    let verification = s.verification.as_ref().filter(|v| Some(&v.revision) == pass.revision.as_ref());
    if let (Some(v), Some(latest)) = (verification, next.history.first_mut())
        && Some(&latest.revision) == pass.revision.as_ref()
        && latest.result == SyncResult::Succeeded
    {
        latest.verification = Some(v.phase);
    }
    synced_phase(s, verification, pass.short.as_deref().unwrap_or_default())
}

/// The rollout's status, and a history entry when it was aborted.
fn record_rollout(next: &mut ApplicationStatus, s: &sync::Synced, pass: &Pass) {
    let rollout = s.rollout.as_ref();
    if let Some(st) = rollout.and_then(|d| d.status.clone()) {
        next.rollout = Some(st);
    }
    if let Some(d) = rollout.filter(|d| matches!(d.finished, Some(("Aborted", _)))) {
        let message = d.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
        next.history = status::record_history(&next.history, pass.history(SyncResult::RolledBack, message));
    }
}

/// The phase of a pass that got through the sync: out of sync or drifted, a failed verification,
/// a rollout aborted or paused, else by health. `verification`: that of this pass's revision.
fn synced_phase(s: &sync::Synced, verification: Option<&VerificationStatus>, short: &str) -> Phase {
    let health_or = |default: &str| s.health.message.clone().unwrap_or_else(|| default.into());
    match &s.state {
        SyncState::OutOfSync { message } => {
            Phase::Stalled { reason: c::OUT_OF_SYNC, message: message.clone() }
        }
        SyncState::Drifted { message } => {
            Phase::Stalled { reason: c::DRIFT_DETECTED, message: message.clone() }
        }
        SyncState::InProgress { message } => {
            Phase::Reconciling { reason: c::SYNCING, message: format!("{short}: {message}") }
        }
        SyncState::Synced if verification.is_some_and(|v| v.phase == VerificationPhase::Failed) => {
            Phase::Stalled { reason: c::VERIFICATION_FAILED, message: health_or("PostSync hook failed") }
        }
        SyncState::Synced if s.rollout.as_ref().is_some_and(|d| d.aborted) => {
            Phase::Stalled { reason: c::ROLLOUT_ABORTED, message: health_or("rollout aborted") }
        }
        SyncState::Synced
            if s.health.status == HealthStatusCode::Suspended
                && s.rollout.as_ref().is_some_and(|d| d.health.is_some()) =>
        {
            Phase::Reconciling { reason: c::ROLLOUT_PAUSED, message: health_or("rollout paused") }
        }
        SyncState::Synced => match s.health.status {
            HealthStatusCode::Healthy | HealthStatusCode::Suspended => Phase::Ready {
                reason: c::RECONCILIATION_SUCCEEDED,
                message: format!("{short}: {} synced and healthy", count(s.objects, "object")),
            },
            HealthStatusCode::Degraded => {
                Phase::Stalled { reason: c::HEALTH_CHECK_FAILED, message: health_or("degraded") }
            }
            _ => Phase::Reconciling {
                reason: c::PROGRESSING,
                message: format!("{short} applied; waiting for {}", health_or("health")),
            },
        },
    }
}

/// Records in `next` a pass that failed (once per revision and message in the history); returns
/// its phase: reconciling when a retry may help, else stalled.
fn record_failed(
    next: &mut ApplicationStatus,
    prev: &ApplicationStatus,
    e: &SyncError,
    pass: &Pass,
) -> Phase {
    if e.is_waiting() {
        return Phase::Reconciling { reason: e.reason(), message: e.to_string() };
    }
    if e.is_blocked() {
        return Phase::Stalled { reason: e.reason(), message: e.to_string() };
    }
    if e.is_unreachable() {
        // Nothing is known of the live objects: neither in sync nor out of it, neither healthy
        // nor degraded. No history entry: nothing was attempted.
        next.sync = Some(SyncStatus {
            status: SyncStatusCode::Unknown,
            ..next.sync.clone().unwrap_or_else(|| pass.sync_status(SyncStatusCode::Unknown))
        });
        next.health = Some(HealthStatus { status: HealthStatusCode::Unknown, message: Some(e.to_string()) });
        return Phase::Unknown { reason: e.reason(), message: e.to_string() };
    }
    if !e.before_the_revision() {
        next.sync = Some(pass.sync_status(SyncStatusCode::OutOfSync));
    }
    let message = e.to_string();
    // Compared as recorded: a pass that failed before it knew its revision (a fetch during a Git
    // outage) is recorded as "unknown", and its retries must not push the real history out.
    let entry = pass.history(SyncResult::Failed, message.clone());
    let repeated = prev.history.first().is_some_and(|h| {
        h.result == SyncResult::Failed && h.revision == entry.revision && h.message == entry.message
    });
    if !repeated {
        next.history = status::record_history(&prev.history, entry);
    }
    if e.is_transient() {
        Phase::Reconciling { reason: e.reason(), message }
    } else {
        Phase::Stalled { reason: e.reason(), message }
    }
}

/// Server-side apply of `status` to the status subresource of the `K` `namespace/name`, as
/// ferry's field manager (which owns every status field it writes), under the API timeout. The
/// one status write of Applications, ApplicationSets and ImagePolicies.
pub async fn apply_status<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), StatusWriteError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    tokio::time::timeout(ctx.options.api_timeout, api.patch_status(name, &params, &Patch::Apply(&body)))
        .await
        .map_err(|_| StatusWriteError::Timeout)??;
    Ok(())
}

/// Server-side apply of the status subresource, only when it changed.
async fn write_status(
    ctx: &Context,
    app: &Application,
    mem: &mut AppMemory,
    next: ApplicationStatus,
) -> Result<(), Error> {
    if app.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
    apply_status::<Application>(ctx, &namespace, &name, &next)
        .await
        .map_err(|source| Error::Status { app: format!("{namespace}/{name}"), source })?;
    // Health turning Degraded and the commit status of the revision: derived from what was
    // just written, handed over without waiting.
    ctx.notifications.status_written(app, app.status.as_ref(), &next);
    if let Some(uid) = app.metadata.uid.clone() {
        mem.written_status = Some((uid, next));
    }
    Ok(())
}

/// Events for what the pass did. Failures and drift are announced once until they change.
async fn announce(ctx: &Context, app: &Application, attempt: &Attempt, mem: &mut AppMemory) {
    let revision = attempt.revision.as_ref().map(|r| r.short()).unwrap_or_else(|| "unknown revision".into());
    match &attempt.result {
        Ok(s) => {
            mem.last_failure_event = None;
            let fresh: Vec<&String> = s.applied.iter().filter(|a| !s.corrected.contains(a)).collect();
            if !fresh.is_empty() {
                let note =
                    format!("applied {} at {revision}: {}", count(fresh.len(), "object"), names(&fresh));
                events::publish(ctx, app, EventType::Normal, events::SYNCED, &note).await;
            }
            if !s.corrected.is_empty() {
                let corrected: Vec<&String> = s.corrected.iter().collect();
                let note =
                    format!("reverted changes made in the cluster to {} ({revision})", names(&corrected));
                events::publish(ctx, app, EventType::Normal, events::DRIFT_CORRECTED, &note).await;
            }
            if !s.pruned.is_empty() {
                let pruned: Vec<&String> = s.pruned.iter().collect();
                let note = format!(
                    "pruned {} no longer in {revision}: {}",
                    count(pruned.len(), "object"),
                    names(&pruned)
                );
                events::publish(ctx, app, EventType::Normal, events::PRUNED, &note).await;
            }
            let before = app.status.as_ref().and_then(|st| st.verification.as_ref());
            if let Some(v) = &s.verification
                && v.phase != VerificationPhase::Running
                && before.is_none_or(|b| b.revision != v.revision || b.phase != v.phase)
            {
                let (type_, reason) = match v.phase {
                    VerificationPhase::Failed => (EventType::Warning, events::VERIFICATION_FAILED),
                    _ => (EventType::Normal, events::VERIFICATION_SUCCEEDED),
                };
                let note = format!("{revision}: {}", v.message.as_deref().unwrap_or_default());
                events::publish(ctx, app, type_, reason, &note).await;
            }
            for note in s.rollout.iter().flat_map(|d| d.notes.iter()) {
                let type_ = if note.warning { EventType::Warning } else { EventType::Normal };
                events::publish(ctx, app, type_, note.reason, &note.message).await;
                tracing::info!(reason = note.reason, "{}", note.message);
            }
            match &s.state {
                SyncState::Drifted { message } if mem.last_drift_event.as_ref() != Some(message) => {
                    events::publish(ctx, app, EventType::Warning, events::DRIFT_DETECTED, message).await;
                    mem.last_drift_event = Some(message.clone());
                }
                SyncState::Drifted { .. } => {}
                _ => mem.last_drift_event = None,
            }
        }
        Err(e) if e.is_waiting() => {
            let note = e.to_string();
            if mem.last_failure_event.as_ref() != Some(&note) {
                // WaitingForPromotion or DependencyNotReady, as the condition says.
                events::publish(ctx, app, EventType::Normal, e.reason(), &note).await;
                mem.last_failure_event = Some(note);
            }
        }
        Err(e) => {
            let note = format!("{revision}: {e}");
            if mem.last_failure_event.as_ref() != Some(&note) {
                tracing::warn!(app = %app_ref(app), reason = e.reason(), error = %e, "sync failed");
                // A refusal's or a failed hook's Event carries the condition's reason.
                let reason = if e.is_refusal() || e.reason() == c::HOOK_FAILED {
                    e.reason()
                } else {
                    events::SYNC_FAILED
                };
                events::publish(ctx, app, EventType::Warning, reason, &note).await;
                mem.last_failure_event = Some(note);
            }
        }
    }
}

fn app_ref(app: &Application) -> AppRef {
    AppRef { namespace: app.namespace().unwrap_or_default(), name: app.name_any() }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn names(items: &[&String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(|s| s.as_str()).collect();
    match items.len().saturating_sub(5) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The safety-net look of an Application waiting for its dependencies, never later than its
/// interval.
fn dependency_retry(app: &AppRef, interval: Duration) -> Action {
    Action::requeue(jitter(DEPENDENCY_RETRY, &app.name).min(interval))
}

/// 5s, 10s, 20s ... capped at 5 minutes, with jitter so retries of many Applications spread.
fn backoff(failures: u32, seed: &str) -> Duration {
    let base = Duration::from_secs(5).saturating_mul(1u32 << failures.saturating_sub(1).min(6));
    jitter(base.min(Duration::from_secs(300)), seed)
}

/// `d` scaled by a factor in [0.8, 1.2), different per Application and per call.
fn jitter(d: Duration, seed: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        .hash(&mut h);
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.8 + 0.4 * frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{ApplicationSpec, InventoryEntry},
        apply::ApplyError,
        controller::error::ValidateError,
        health::ObjectHealth,
        source::{Revision, RevisionRef},
    };

    fn app() -> Application {
        let spec: ApplicationSpec = serde_json::from_value(serde_json::json!({
            "source": {"repoURL": "https://git.example.com/deploy.git", "ref": {"branch": "main"}}
        }))
        .unwrap();
        let mut app = Application::new("shop", spec);
        app.metadata.namespace = Some("team".into());
        app.metadata.generation = Some(2);
        app
    }

    fn revision() -> Option<Revision> {
        Some(Revision { reference: RevisionRef::Branch("main".into()), commit: "a".repeat(40) })
    }

    fn synced(applied: usize) -> Attempt {
        let entry = InventoryEntry {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("team".into()),
            name: "cfg".into(),
        };
        Attempt {
            revision: revision(),
            progress: None,
            result: Ok(sync::Synced {
                state: SyncState::Synced,
                health: ObjectHealth::healthy(),
                inventory: vec![entry],
                applied: (0..applied).map(|i| format!("ConfigMap team/c{i}")).collect(),
                corrected: vec![],
                pruned: vec![],
                objects: 1,
                rollout: None,
                verification: None,
            }),
        }
    }

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn an_unchanged_pass_leaves_the_status_exactly_as_it_was() {
        let mut app = app();
        let first =
            next_status(&app, &synced(1), &time("2026-01-01T00:00:00Z"), &time("2026-01-01T00:00:01Z"));
        assert_eq!(first.sync.as_ref().unwrap().status, SyncStatusCode::Synced);
        assert_eq!(first.history.len(), 1);
        assert_eq!(
            first.last_applied_revision.as_deref(),
            Some(format!("main@sha1:{}", "a".repeat(40)).as_str())
        );
        let ready = first.conditions.iter().find(|c| c.type_ == c::READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", c::RECONCILIATION_SUCCEEDED));
        app.status = Some(first.clone());
        // Later passes that apply nothing must produce the same status: no write.
        let again =
            next_status(&app, &synced(0), &time("2026-01-01T01:00:00Z"), &time("2026-01-01T01:00:01Z"));
        assert_eq!(again, first);
    }

    #[test]
    fn only_a_revision_whose_hooks_passed_becomes_the_verified_revision() {
        use crate::{
            api::{VerificationStatus, conditions as c},
            health::ObjectHealth,
        };
        let rev = format!("main@sha1:{}", "a".repeat(40));
        let with_hooks = |phase: VerificationPhase, health: ObjectHealth| {
            let mut attempt = synced(1);
            if let Ok(s) = &mut attempt.result {
                s.health = health;
                s.verification = Some(VerificationStatus {
                    revision: rev.clone(),
                    phase,
                    hooks: vec![],
                    hook_uids: vec![],
                    started_at: None,
                    finished_at: None,
                    message: Some("PostSync hook Job team/smoke failed: BackoffLimitExceeded".into()),
                });
            }
            attempt
        };
        let (t0, t1) = (time("2026-01-01T00:00:00Z"), time("2026-01-01T00:00:01Z"));
        let running = with_hooks(
            VerificationPhase::Running,
            ObjectHealth::new(HealthStatusCode::Progressing, "running PostSync hooks: Job team/smoke"),
        );
        let next = next_status(&app(), &running, &t0, &t1);
        assert_eq!(next.verified_revision, None);
        assert_eq!(next.history[0].verification, Some(VerificationPhase::Running));

        let failed = with_hooks(
            VerificationPhase::Failed,
            ObjectHealth::new(HealthStatusCode::Degraded, "PostSync hook Job team/smoke failed"),
        );
        let next = next_status(&app(), &failed, &t0, &t1);
        let ready = next.conditions.iter().find(|c| c.type_ == c::READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", c::VERIFICATION_FAILED));
        assert_eq!(next.verified_revision, None);
        assert_eq!(next.history[0].verification, Some(VerificationPhase::Failed));

        let passed = with_hooks(VerificationPhase::Succeeded, ObjectHealth::healthy());
        let next = next_status(&app(), &passed, &t0, &t1);
        assert_eq!(next.verified_revision.as_deref(), Some(rev.as_str()));
    }

    #[test]
    fn a_repeated_failure_is_recorded_once_and_a_transient_one_is_reconciling() {
        let mut app = app();
        let failed = || Attempt {
            revision: revision(),
            progress: None,
            result: Err(ValidateError::Refused(vec![ApplyError::Refused {
                object: "ConfigMap team/bad".into(),
                code: 422,
                reason: "Invalid".into(),
                message: "refused".into(),
            }])
            .into()),
        };
        let t = time("2026-01-01T00:00:00Z");
        let first = next_status(&app, &failed(), &t, &t);
        let stalled = first.conditions.iter().find(|c| c.type_ == c::STALLED).unwrap();
        assert_eq!(stalled.reason, c::VALIDATION_FAILED);
        assert!(stalled.message.contains("ConfigMap team/bad"));
        assert_eq!(first.sync.as_ref().unwrap().status, SyncStatusCode::OutOfSync);
        app.status = Some(first.clone());
        let later = time("2026-01-01T00:05:00Z");
        assert_eq!(next_status(&app, &failed(), &later, &later), first, "same failure, same status");

        let transient = Attempt {
            revision: revision(),
            progress: None,
            result: Err(ValidateError::Unavailable(ApplyError::Transient {
                object: "ConfigMap team/bad".into(),
                message: "503 ServiceUnavailable".into(),
            })
            .into()),
        };
        let next = next_status(&app, &transient, &later, &later);
        assert!(next.conditions.iter().any(|c| c.type_ == c::RECONCILING && c.status == "True"));
        assert!(!next.conditions.iter().any(|c| c.type_ == c::STALLED));
    }

    #[test]
    fn a_failure_before_the_revision_is_known_is_recorded_once() {
        let mut app = app();
        let failed = || Attempt {
            revision: None,
            progress: None,
            result: Err(crate::controller::error::FetchError::FollowsItself.into()),
        };
        let t = time("2026-01-01T00:00:00Z");
        let first = next_status(&app, &failed(), &t, &t);
        assert_eq!(first.history.len(), 1);
        app.status = Some(first.clone());
        let later = time("2026-01-01T00:05:00Z");
        let again = next_status(&app, &failed(), &later, &later);
        assert_eq!(again.history, first.history, "a retry of the same failure pushed the history along");
    }

    #[test]
    fn waiting_for_a_dependency_keeps_the_sync_state_and_a_cycle_adds_no_history() {
        use crate::controller::dependencies::DependencyError;
        use kube::runtime::reflector::ObjectRef;
        let mut app = app();
        let t = time("2026-01-01T00:00:00Z");
        let synced = next_status(&app, &synced(1), &t, &t);
        app.status = Some(synced.clone());
        let condition = |s: &ApplicationStatus, type_: &str| {
            s.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
        };
        let later = time("2026-01-01T00:05:00Z");
        let waiting = Attempt {
            revision: None,
            progress: None,
            result: Err(DependencyError::Missing(ObjectRef::new("db").within("team")).into()),
        };
        let next = next_status(&app, &waiting, &later, &later);
        assert_eq!(condition(&next, c::READY), Some(("False".into(), c::DEPENDENCY_NOT_READY.into())));
        assert_eq!(condition(&next, c::RECONCILING), Some(("True".into(), c::DEPENDENCY_NOT_READY.into())));
        assert!(next.conditions.iter().any(|c| c.message.contains("Application team/db")), "{next:?}");
        assert_eq!(condition(&next, c::STALLED), None);
        assert_eq!(
            (&next.sync, &next.history, &next.inventory),
            (&synced.sync, &synced.history, &synced.inventory)
        );
        assert_eq!(next.last_applied_revision, synced.last_applied_revision);

        let cycle = || Attempt {
            revision: None,
            progress: None,
            result: Err(DependencyError::Cycle(vec![
                ObjectRef::new("shop").within("team"),
                ObjectRef::new("db").within("team"),
                ObjectRef::new("shop").within("team"),
            ])
            .into()),
        };
        let next = next_status(&app, &cycle(), &later, &later);
        assert_eq!(condition(&next, c::STALLED), Some(("True".into(), c::DEPENDENCY_CYCLE.into())));
        assert_eq!((&next.sync, &next.history), (&synced.sync, &synced.history));
        app.status = Some(next.clone());
        let much_later = time("2026-01-01T01:00:00Z");
        assert_eq!(next_status(&app, &cycle(), &much_later, &much_later), next, "no write while it lasts");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let first = backoff(1, "a");
        assert!(first >= Duration::from_secs(4) && first < Duration::from_secs(6), "{first:?}");
        let third = backoff(3, "a");
        assert!(third >= Duration::from_secs(16) && third < Duration::from_secs(24), "{third:?}");
        let late = backoff(30, "a");
        assert!(late <= Duration::from_secs(360), "{late:?}");
    }
}
