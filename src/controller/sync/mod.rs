//! One sync pass of one Application, as a pipeline of stages that take and return plain values:
//!
//! ```text
//! access -> dependencies -> fetch -> build -> rewrite -> plan -> (report only?) -> validate -> apply -> prune -> health -> verify
//!   Access   ()              Snapshot  Built   strategy::Pass Planned               ()       applied   pruned   ObjectHealth  Synced
//! ```
//!
//! - [`fetch`]: who the Application acts as (the tenancy's lockdown) and the revision, fetched
//!   only when new. Between the two, `spec.dependsOn` ([`super::dependencies::gate`]): nothing
//!   is fetched while a dependency is not Ready.
//! - [`build`]: render, split off the hooks, add the created Namespace, prepare and resolve the
//!   objects ([`desired`]); the tenancy checks every object.
//! - [`rewrite`]: a canary or blue-green strategy rewrites the objects it drives
//!   ([`super::strategy`] decides how).
//! - [`observe`] and [`decide`]: what each object needs (the decisions are pure functions in
//!   [`decide`]), ownership conflicts, what to prune ([`prune`]).
//! - [`write`]: the server-side dry run of every change, then apply phase by phase.
//! - [`prune`], then [`verify`]: health (by `spec.healthChecks`, the cluster-wide checks, then
//!   ferry's rules; the checks are compiled before the build, so a bad expression stops the pass
//!   before anything is written), the rollout's verdict, PostSync hooks.
//!
//! Each stage has its own error enum in [`super::error`], wrapped by one variant of
//! [`SyncError`]. The order is the safety argument: nothing is written before the fetch, the
//! render, the ownership check and the server-side dry run of every changed object have all
//! succeeded, and prune runs only after every apply succeeded. `ferry diff` builds through the
//! same [`build::split`], [`desired`] and prune selection, so it shows what a sync would do.

mod artifacts;
pub mod build;
mod decide;
pub mod desired;
mod fetch;
mod observe;
mod pass;
mod phases;
pub mod prune;
mod rewrite;
mod verify;
mod write;

use std::time::Instant;

use self::{build::Built, fetch::Access, observe::Planned, pass::Pass, phases::Gate};
pub use self::{decide::SyncState, fetch::clients, phases::hooks_running};
use super::{context::Context, dependencies, error::SyncError, memory::AppMemory, strategy};
use crate::{
    api::{Application, InventoryEntry, SyncProgress, VerificationStatus},
    apply::AppRef,
    health::{HealthChecks, ObjectHealth},
    rollout::types::Decision,
    source::{Revision, Snapshot},
};

/// The result of a successful pass.
#[derive(Debug)]
pub struct Synced {
    pub state: SyncState,
    pub health: ObjectHealth,
    pub inventory: Vec<InventoryEntry>,
    /// Objects applied (created or changed) in this pass.
    pub applied: Vec<String>,
    /// Of those, objects that had drifted.
    pub corrected: Vec<String>,
    pub pruned: Vec<String>,
    pub objects: usize,
    /// What the rollout decided this pass (Applications with a strategy).
    pub rollout: Option<Decision>,
    /// The PostSync hooks after this pass.
    pub verification: Option<VerificationStatus>,
}

/// A pass: the revision it worked on (when it got that far), how it ended, and where the sync
/// of a revision with hooks or waves stands after it (failed passes included).
pub struct Attempt {
    pub revision: Option<Revision>,
    pub result: Result<Synced, SyncError>,
    pub progress: Option<SyncProgress>,
}

/// Runs one pass for `app`.
pub async fn sync(ctx: &Context, app: &Application, app_ref: &AppRef, mem: &mut AppMemory) -> Attempt {
    let started = Instant::now();
    let mut progress = app.status.as_ref().and_then(|s| s.progress.clone());
    let access = match fetch::access(ctx, app, app_ref).await {
        Ok(access) => access,
        Err(e) => return Attempt { revision: None, result: Err(e.into()), progress },
    };
    let pass = Pass { ctx, app, app_ref, cluster: &access.cluster, started };
    let snapshot = match source(pass, &access, mem).await {
        Ok(snapshot) => snapshot,
        Err(e) => return Attempt { revision: None, result: Err(e), progress },
    };
    let revision = snapshot.revision.clone();
    tracing::Span::current().record("revision", tracing::field::display(revision.short()));
    let result = converge(pass, mem, &access, &snapshot, &mut progress).await;
    let result = result.map_err(|e| fetch::unreachable_or(&access.cluster, e));
    Attempt { revision: Some(revision), result, progress }
}

/// The hooks of the revision the Application's source resolves to now, rendered and built as
/// a pass would (its deletion hooks run from them), with the applier acting as it. Its
/// dependencies are not waited for: the Application is going.
pub async fn hooks_of(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    mem: &mut AppMemory,
) -> Result<DeletionSource, SyncError> {
    let access = fetch::access(ctx, app, app_ref).await?;
    let pass = Pass { ctx, app, app_ref, cluster: &access.cluster, started: Instant::now() };
    let snapshot = fetch::fetch(pass, &access, mem).await?;
    let built = build::build(pass, &access, &snapshot, mem).await?;
    Ok((built.applier, access.cluster.clone(), built.split.hooks, built.revision))
}

/// What an Application's deletion hooks run with: its applier and cluster, the hooks and the
/// revision they are of.
pub type DeletionSource = (
    crate::apply::Applier,
    std::sync::Arc<super::clusters::ClusterLink>,
    std::sync::Arc<Vec<crate::plan::hooks::Hook>>,
    Revision,
);

/// The dependencies, then fetch: nothing is read from Git before the lockdown allows it (the
/// access stage) and every dependency is Ready.
async fn source(pass: Pass<'_>, access: &Access, mem: &mut AppMemory) -> Result<Snapshot, SyncError> {
    let promotion_namespaces = &pass.ctx.options.promotion_namespaces;
    dependencies::gate(pass.app, &access.tenancy, promotion_namespaces, &pass.ctx.apps)?;
    Ok(fetch::fetch(pass, access, mem).await?)
}

/// From the revision's files to the cluster, one call per stage. `progress`: where the sync of
/// a revision with hooks or waves stands, kept up to date even when the pass fails.
async fn converge(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    access: &Access,
    snapshot: &Snapshot,
    progress: &mut Option<SyncProgress>,
) -> Result<Synced, SyncError> {
    let revision = &snapshot.revision;
    let checks = verify::checks(pass)?;
    let mut built = build::build(pass, access, snapshot, mem).await?;
    let plan_timer = pass.ctx.metrics.time(crate::metrics::Stage::Plan);
    let rollout = rewrite::by_strategy(pass, mem, &mut built).await?;
    let planned = observe::plan(pass, mem, &built).await?;
    if let Some(state) = planned.pending.report_only(&pass.app.spec.sync_policy, revision) {
        return Ok(report_only(pass, mem, &built, &checks, state));
    }
    write::validate(pass, &built, &planned.changes).await?;
    drop(plan_timer);
    phases::begin(pass, &built, progress).await?;
    if let Gate::Wait(message) = phases::pre_sync(pass, &built, progress).await? {
        return Ok(in_progress(pass, mem, (&built, &checks), &planned, &[], message));
    }
    let waves = phases::apply_waves(pass, (&mut built, &checks), mem, &planned.changes, progress).await?;
    count_applied(pass, &planned, &waves.applied);
    if let Some(message) = waves.waiting {
        return Ok(in_progress(pass, mem, (&built, &checks), &planned, &waves.applied, message));
    }
    let applied = waves.applied;
    let pruned = prune::prune(pass, &built.applier, mem, &planned.prune).await?;
    if let Some(rollout) = &rollout {
        strategy::converge_canary(&built.applier, rollout).await?;
    }
    if !applied.is_empty() || !pruned.is_empty() {
        let (applied, pruned) = (applied.len(), pruned.len());
        tracing::info!(app = %pass.app_ref, %revision, applied, pruned, "synced");
    }
    mem.last_applied = Some(built.split.objects.clone());
    let decision = rollout.map(|r| r.decision);
    let health = verify::health(pass, mem, &built, &checks, decision.as_ref());
    let (health, verification) = verify::verify(pass, &built, health, progress).await?;
    let (corrected, applied) =
        (names(&built, &planned, &applied, true), names(&built, &planned, &applied, false));
    Ok(Synced {
        state: SyncState::Synced,
        health,
        inventory: planned.prune.inventory,
        corrected,
        applied,
        pruned,
        objects: built.desired.len(),
        rollout: decision,
        verification,
    })
}

/// The names of the objects applied (only those that corrected drift when `corrected`).
fn names(built: &Built, planned: &Planned, applied: &[usize], corrected: bool) -> Vec<String> {
    let which = applied.iter().filter(|&&i| !corrected || planned.plans[i].change.corrects());
    which.map(|&i| built.desired[i].name.clone()).collect()
}

/// A pass that stopped before the end of the sync: a hook runs or a wave is not Healthy yet.
/// The inventory keeps the last one and adds this revision's objects, so whatever was applied
/// already is pruned or deleted with the Application like the rest.
fn in_progress(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    (built, checks): (&Built, &HealthChecks),
    planned: &Planned,
    applied: &[usize],
    message: String,
) -> Synced {
    let deadline = pass.ctx.options.health_timeout;
    let mut inventory = built.previous.clone();
    inventory.extend(planned.prune.inventory.iter().filter(|e| !built.previous.contains(e)).cloned());
    Synced {
        state: SyncState::InProgress { message },
        health: verify::assess(mem, &built.desired, checks, deadline, &built.revision),
        inventory,
        applied: names(built, planned, applied, false),
        corrected: names(built, planned, applied, true),
        pruned: vec![],
        objects: built.desired.len(),
        rollout: None,
        verification: pass.app.status.as_ref().and_then(|s| s.verification.clone()),
    }
}

/// Pending changes the policy only reports: the live objects and the inventory stay as they are.
fn report_only(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    built: &Built,
    checks: &HealthChecks,
    state: SyncState,
) -> Synced {
    let deadline = pass.ctx.options.health_timeout;
    Synced {
        state,
        health: verify::assess(mem, &built.desired, checks, deadline, &built.revision),
        inventory: built.previous.clone(),
        applied: vec![],
        corrected: vec![],
        pruned: vec![],
        objects: built.desired.len(),
        rollout: None,
        verification: pass.app.status.as_ref().and_then(|s| s.verification.clone()),
    }
}

fn count_applied(pass: Pass<'_>, planned: &Planned, applied: &[usize]) {
    let created = applied.iter().filter(|&&i| planned.plans[i].change.creates()).count();
    pass.ctx.metrics.objects_applied("created", created);
    pass.ctx.metrics.objects_applied("updated", applied.len() - created);
}

/// `1 object`, `2 objects` (for messages elsewhere in the controller).
pub(crate) use super::error::count;
