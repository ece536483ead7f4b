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
//! - [`prune`], then [`verify`]: health, the rollout's verdict, PostSync hooks.
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
pub mod prune;
mod rewrite;
mod verify;
mod write;

use std::time::Instant;

pub use self::decide::SyncState;
use self::{build::Built, fetch::Access, observe::Planned, pass::Pass};
use super::{context::Context, dependencies, error::SyncError, memory::AppMemory, strategy};
use crate::{
    api::{Application, InventoryEntry, VerificationStatus},
    apply::AppRef,
    health::ObjectHealth,
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

/// A pass: the revision it worked on (when it got that far) and how it ended.
pub struct Attempt {
    pub revision: Option<Revision>,
    pub result: Result<Synced, SyncError>,
}

/// Runs one pass for `app`.
pub async fn sync(ctx: &Context, app: &Application, app_ref: &AppRef, mem: &mut AppMemory) -> Attempt {
    let pass = Pass { ctx, app, app_ref, started: Instant::now() };
    let (access, snapshot) = match source(pass, mem).await {
        Ok(source) => source,
        Err(e) => return Attempt { revision: None, result: Err(e) },
    };
    let revision = snapshot.revision.clone();
    tracing::Span::current().record("revision", tracing::field::display(revision.short()));
    let result = converge(pass, mem, &access, &snapshot).await;
    Attempt { revision: Some(revision), result }
}

/// Access, the dependencies, then fetch: nothing is read from Git before the lockdown allows
/// it and every dependency is Ready.
async fn source(pass: Pass<'_>, mem: &mut AppMemory) -> Result<(Access, Snapshot), SyncError> {
    let access = fetch::access(pass)?;
    let promotion_namespaces = &pass.ctx.options.promotion_namespaces;
    dependencies::gate(pass.app, &access.tenancy, promotion_namespaces, &pass.ctx.apps)?;
    let snapshot = fetch::fetch(pass, &access, mem).await?;
    Ok((access, snapshot))
}

/// From the revision's files to the cluster, one call per stage.
async fn converge(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    access: &Access,
    snapshot: &Snapshot,
) -> Result<Synced, SyncError> {
    let revision = &snapshot.revision;
    let mut built = build::build(pass, access, snapshot, mem).await?;
    let plan_timer = pass.ctx.metrics.time(crate::metrics::Stage::Plan);
    let rollout = rewrite::by_strategy(pass, mem, &mut built).await?;
    let planned = observe::plan(pass, mem, &built).await?;
    if let Some(state) = planned.pending.report_only(&pass.app.spec.sync_policy, revision) {
        return Ok(report_only(pass, mem, &built, state));
    }
    write::validate(pass, &built, &planned.changes).await?;
    drop(plan_timer);
    let applied = write::apply(pass, &mut built, mem, &planned.changes).await?;
    count_applied(pass, &planned, &applied);
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
    let health = verify::health(pass, mem, &built, decision.as_ref());
    let (health, verification) = verify::verify(pass, &built, health).await?;
    let names =
        |which: &mut dyn Iterator<Item = &usize>| which.map(|&i| built.desired[i].name.clone()).collect();
    Ok(Synced {
        state: SyncState::Synced,
        health,
        inventory: planned.prune.inventory,
        corrected: names(&mut applied.iter().filter(|&&i| planned.plans[i].change.corrects())),
        applied: names(&mut applied.iter()),
        pruned,
        objects: built.desired.len(),
        rollout: decision,
        verification,
    })
}

/// Pending changes the policy only reports: the live objects and the inventory stay as they are.
fn report_only(pass: Pass<'_>, mem: &mut AppMemory, built: &Built, state: SyncState) -> Synced {
    Synced {
        state,
        health: verify::assess(mem, &built.desired, pass.ctx.options.health_timeout, &built.revision),
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
