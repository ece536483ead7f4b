//! Health and verification: the Application's health from the live objects ferry has seen (with
//! the progress deadline), what the rollout says of it, and the PostSync hooks, run once the
//! revision is Healthy. Until they succeed it is not.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{build::Built, desired::Desired, pass::Pass};
use crate::{
    api::{HealthStatusCode, VerificationPhase, VerificationStatus},
    controller::{error::SyncError, hooks, memory::AppMemory},
    health::{self, ObjectHealth, ObjectName},
    metrics::Stage,
    plan::ApplyMode,
    rollout::types::Decision,
    source::Revision,
};

/// The health of the revision's objects, overridden by the rollout's verdict when it has one.
pub fn health(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    built: &Built,
    rollout: Option<&Decision>,
) -> ObjectHealth {
    let timer = pass.ctx.metrics.time(Stage::Health);
    let health = assess(mem, &built.desired, pass.ctx.options.health_timeout, &built.revision);
    drop(timer);
    match rollout.and_then(|d| d.health.clone()) {
        Some((code, message)) => ObjectHealth::new(code, message),
        None => health,
    }
}

/// Runs the PostSync hooks once `health` is Healthy and folds how they stand into it.
pub async fn verify(
    pass: Pass<'_>,
    built: &Built,
    health: ObjectHealth,
) -> Result<(ObjectHealth, Option<VerificationStatus>), SyncError> {
    let previous = pass.app.status.as_ref().and_then(|s| s.verification.as_ref());
    let healthy = health.status == HealthStatusCode::Healthy;
    let revision = built.revision.to_string();
    let hooks = &built.split.hooks;
    let verify = hooks::Verify { hooks, revision: &revision, previous, healthy };
    let verification = hooks::converge(pass.ctx, &built.applier, pass.app_ref, verify).await?;
    let health = match verification.as_ref().filter(|v| v.revision == revision) {
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

/// The Application's health from the live objects ferry has seen, with the progress deadline.
pub fn assess(
    mem: &mut AppMemory,
    desired: &[Desired],
    deadline: Duration,
    revision: &Revision,
) -> ObjectHealth {
    // Kinds whose live object is not kept (ConfigMaps, Secrets, RBAC) are healthy when they exist.
    let blank = Value::Object(Default::default());
    // An object its options keep ferry from writing (Flux `ssa: Ignore`, `reconcile: disabled`)
    // counts only when it exists: ferry does not create it.
    let counted =
        desired.iter().filter(|d| d.options.apply != ApplyMode::Skip || mem.known.contains_key(&d.key));
    let mut health = health::aggregate(counted.map(|d| {
        let name = ObjectName::from(&d.entry);
        let live = mem.known.get(&d.key).map(|k| k.live.as_deref().unwrap_or(&blank));
        (name, live)
    }));
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
