//! Health and verification: the Application's health from the live objects ferry has seen (with
//! the progress deadline), what the rollout says of it, and the PostSync hooks, run once the
//! revision is applied and Healthy. Until they succeed it is not.

use std::time::{Duration, Instant};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{build::Built, desired::Desired, pass::Pass, phases};
use crate::{
    api::{HealthStatusCode, HookPhase, HookRun, SyncProgress, VerificationPhase, VerificationStatus},
    controller::{
        error::SyncError,
        hooks::{self, PhaseOutcome},
        memory::AppMemory,
    },
    health::{HealthChecks, InvalidHealthCheck, ObjectHealth},
    metrics::Stage,
    rollout::types::Decision,
    source::Revision,
};

/// The checks of the Application's `spec.healthChecks` over the cluster-wide ones, compiled (or
/// as compiled before): an expression that does not compile fails the pass as ValidationFailed,
/// before anything is applied.
pub fn checks(pass: Pass<'_>) -> Result<HealthChecks, InvalidHealthCheck> {
    let ctx = pass.ctx;
    let own = HealthChecks::compile(&pass.app.spec.health_checks, "spec.healthChecks", &ctx.health_exprs)?;
    Ok(own.over(&ctx.options.health_checks))
}

/// The health of the revision's objects, overridden by the rollout's verdict when it has one.
pub fn health(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    built: &Built,
    checks: &HealthChecks,
    rollout: Option<&Decision>,
) -> ObjectHealth {
    let timer = pass.ctx.metrics.time(Stage::Health);
    let health = assess(mem, &built.desired, checks, pass.ctx.options.health_timeout, &built.revision);
    drop(timer);
    match rollout.and_then(|d| d.health.clone()) {
        Some((code, message)) => ObjectHealth::new(code, message),
        None => health,
    }
}

/// Runs the PostSync hooks once the revision is applied and `health` is Healthy, and folds how
/// they stand into it. Their outcome is also the revision's verification, which promotion
/// follows.
pub async fn verify(
    pass: Pass<'_>,
    built: &Built,
    health: ObjectHealth,
    progress: &mut Option<SyncProgress>,
) -> Result<(ObjectHealth, Option<VerificationStatus>), SyncError> {
    let previous = pass.app.status.as_ref().and_then(|s| s.verification.as_ref());
    let Some(p) = progress.as_mut() else { return Ok((health, None)) };
    if p.result == VerificationPhase::Running {
        post_sync(pass, built, &health, p).await?;
    }
    // Healthy: the PostSync hooks were started (or followed) in this pass.
    let started = health.status == HealthStatusCode::Healthy;
    let verification = verification(p, previous, &built.split.hooks, started);
    let health = match verification.as_ref().filter(|v| v.revision == p.revision) {
        Some(v) => {
            let message = v.message.clone().unwrap_or_default();
            match v.phase {
                VerificationPhase::Running => ObjectHealth::new(HealthStatusCode::Progressing, message),
                VerificationPhase::Failed => ObjectHealth::new(HealthStatusCode::Degraded, message),
                VerificationPhase::Succeeded => health,
            }
        }
        None => health,
    };
    Ok((health, verification))
}

/// Everything is applied: the PostSync phase, whose hooks start once the revision is Healthy.
async fn post_sync(
    pass: Pass<'_>,
    built: &Built,
    health: &ObjectHealth,
    p: &mut SyncProgress,
) -> Result<(), SyncError> {
    if p.phase != HookPhase::PostSync {
        (p.phase, p.wave, p.message) = (HookPhase::PostSync, None, None);
    }
    let started = p.hooks.iter().any(|r| r.phase == HookPhase::PostSync);
    if health.status != HealthStatusCode::Healthy && !started {
        return Ok(());
    }
    let runner = hooks::Runner { cluster: pass.cluster, applier: &built.applier, app: pass.app_ref };
    match runner.run(&built.split.hooks, HookPhase::PostSync, None, p).await? {
        PhaseOutcome::Succeeded => (p.result, p.message) = (VerificationPhase::Succeeded, None),
        PhaseOutcome::Running(message) => p.message = Some(message),
        PhaseOutcome::Failed { hook, message } => {
            // A failed deployment rather than a failed sync: reported through the verification.
            phases::fail(pass, built, p, hook, message).await;
        }
    }
    Ok(())
}

/// The revision's verification, from its PostSync runs: `None` when it has no PostSync hooks,
/// the previous one until they start, and the previous one unchanged once they ended (so the
/// status is not rewritten). `started`: the hooks were started or followed in this pass (a
/// hook whose earlier object is being cleared away has no run yet, and is running all the same).
fn verification(
    p: &SyncProgress,
    previous: Option<&VerificationStatus>,
    hook_defs: &[hooks::Hook],
    started: bool,
) -> Option<VerificationStatus> {
    if !hook_defs.iter().any(|h| h.runs_in(HookPhase::PostSync, p.first_sync)) {
        return None;
    }
    let runs: Vec<&HookRun> = p.hooks.iter().filter(|r| r.phase == HookPhase::PostSync).collect();
    let current = previous.filter(|v| v.revision == p.revision);
    if runs.is_empty() && !(started && p.phase == HookPhase::PostSync) {
        return previous.cloned();
    }
    if let Some(v) = current.filter(|v| v.phase != VerificationPhase::Running) {
        return Some(v.clone());
    }
    let phase = match p.phase {
        HookPhase::PostSync => p.result,
        _ => VerificationPhase::Running,
    };
    let now = Time(Timestamp::now());
    let message = match phase {
        VerificationPhase::Succeeded => {
            let names: Vec<String> = runs.iter().map(|r| hooks::shown(r)).collect();
            Some(format!("PostSync hooks succeeded: {}", names.join(", ")))
        }
        _ => p.message.clone(),
    };
    Some(VerificationStatus {
        revision: p.revision.clone(),
        phase,
        hooks: runs.iter().map(|r| r.object.clone()).collect(),
        hook_uids: runs.iter().map(|r| r.uid.clone()).collect(),
        started_at: current.and_then(|v| v.started_at.clone()).or_else(|| Some(now.clone())),
        finished_at: (phase != VerificationPhase::Running).then_some(now),
        message,
    })
}

/// The Application's health from the live objects ferry has seen (by `checks` for the kinds they
/// cover), with the progress deadline.
pub fn assess(
    mem: &mut AppMemory,
    desired: &[Desired],
    checks: &HealthChecks,
    deadline: Duration,
    revision: &Revision,
) -> ObjectHealth {
    let mut health = phases::health_of(mem, checks, desired.iter());
    if health.status != HealthStatusCode::Progressing {
        mem.progressing_since = None;
        return health;
    }
    let since = match &mem.progressing_since {
        Some((rev, since)) if rev == revision => *since,
        _ => {
            mem.progressing_since = Some((revision.clone(), Instant::now()));
            Instant::now()
        }
    };
    if since.elapsed() > deadline {
        let message = format!(
            "still progressing after {}s: {}",
            deadline.as_secs(),
            health.message.clone().unwrap_or_default()
        );
        health = ObjectHealth::new(HealthStatusCode::Degraded, message);
    }
    health
}
