//! The strategy's rewrite: for an Application with a canary or blue-green strategy, the rollout
//! decides this pass and the objects it names (the Deployment, its route or Services) are applied
//! as the rollout holds them rather than as Git has them.

use std::sync::Arc;

use super::{build::Built, pass::Pass};
use crate::{
    controller::{
        error::{BuildError, SyncError},
        memory::AppMemory,
        strategy,
    },
    rollout::workload,
};

/// The rollout's decision for this pass, with the desired objects rewritten accordingly; `None`
/// for an Application without a strategy.
pub(super) async fn by_strategy(
    pass: Pass<'_>,
    mem: &AppMemory,
    built: &mut Built,
) -> Result<Option<strategy::Pass>, SyncError> {
    let Some(workload_name) = strategy::workload_of(pass.app) else { return Ok(None) };
    let desired = &built.desired;
    let find = |group: &str, kind: &str, name: &str| {
        let i = desired
            .iter()
            .position(|d| d.entry.group == group && d.entry.kind == kind && d.entry.name == name)?;
        let d = &desired[i];
        Some((i, &d.obj, d.resource.as_ref()?))
    };
    let autoscaled = desired.iter().any(|d| {
        d.entry.kind == "HorizontalPodAutoscaler"
            && workload::autoscales(&serde_json::to_value(&d.obj).unwrap_or_default(), workload_name)
    });
    let decided = strategy::decide(
        pass.ctx,
        pass.app,
        mem,
        (&built.applier, pass.cluster),
        &find,
        autoscaled,
        &built.revision,
    )
    .await?;
    // The plan compares the primary with the live one just read rather than reading it again.
    if let Some((i, live)) = decided.live_primary()
        && let Ok(live) = serde_json::from_value(live.clone())
    {
        built.read.insert(i, live);
    }
    for (i, obj) in decided.rewrites() {
        let d = &mut built.desired[i];
        let rewritten = d.with_object(obj).ok_or_else(|| BuildError::Rewrite { object: d.name.clone() })?;
        d.prepared = Arc::new(rewritten);
    }
    Ok(Some(decided))
}
