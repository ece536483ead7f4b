//! The controller: kube-runtime's `Controller` over Applications, with the sync pipeline of
//! [`sync`] as its reconcile. `ferry run` wires it up in [`crate::startup`].
//!
//! From the top down (each module uses only those below it; `scripts/check-cycles.py` checks):
//!
//! - [`reconcile`]: finalizer, status writing, events, requeue and error policy.
//! - [`sync`]: one pass as stages: access and fetch -> build -> strategy -> plan -> validate ->
//!   apply -> prune -> health and verify (its module doc lists them).
//! - [`hooks`]: PostSync hooks: split from the render, run once synced and Healthy, cleaned up;
//!   their failures are a [`hooks::HookError`].
//! - `strategy`: the controller's side of `spec.strategy`, a rollout (live Deployments in,
//!   rewritten objects out); the state machines are [`crate::rollout`]'s.
//! - [`prunable`]: what a prune, a hook clean-up or `ferry diff` may delete (exists, is this
//!   Application's).
//! - `events`: Kubernetes Events on Applications (best effort).
//! - `context`: what every reconcile shares: clients, caches, memory, and the clusters.
//! - [`clusters`]: where Applications deploy: one link (clients, discovery, watches, circuit
//!   breaker) per cluster in use, the local one and each remote `Cluster`.
//! - `cluster_status`: the Clusters' status (reachable, version, Applications), by the leader.
//! - `memory`: what is remembered per Application between reconciles.
//! - `watches`: metadata-only watches of managed objects (drift, health, free steady state).
//! - `claims`: objects two Applications claim, and telling the owner once.
//! - `delivery`: the delivery (DORA) figures, a small state machine over plain data.
//! - [`error`]: [`error::SyncError`], one variant per stage wrapping that stage's error enum.
//! - [`status`]: kstatus conditions and history as pure functions.
//! - [`revert`]: `rollback.gitRevert`: a revert commit (or pull request) in Git for a revision
//!   whose rollout aborted or whose verification failed.
//! - `promotion`: `ref.fromApplication` followers, woken when what they follow verifies.
//! - `dependencies`: `spec.dependsOn`: the gate before a pass fetches, cycles, and waking the
//!   dependants of an Application whose readiness changed.
//! - `referrers`: who names whom (`dependsOn`, `fromApplication`), indexed from the watch's
//!   events, so a wake-up is a lookup rather than a scan of every Application.
//!
//! Start-up pieces [`crate::startup`] uses: `preflight` (is the API server there, is the CRD
//! installed), [`leader`] (Lease-based leader election), [`shard`] (which Applications this
//! replica owns), and `context`'s `Connection` and `Caches` (what the `Context` is built from).

mod claims;
pub mod cluster_status;
pub mod clusters;
mod context;
mod deletion;
mod delivery;
mod dependencies;
pub mod error;
pub mod events;
pub mod hooks;
pub mod leader;
mod memory;
mod preflight;
mod promotion;
pub mod prunable;
pub mod reconcile;
mod referrers;
pub mod revert;
pub mod shard;
pub mod status;
mod strategy;
pub mod sync;
mod watches;

pub use clusters::{ClientError, Clusters};
pub use context::{
    Caches, Connection, Context, NotifierIdentity, SyncOptions, collect_garbage, default_cache_dir,
};
pub use dependencies::Dependants;
pub use leader::{Elector, LeaderConfig, LeaderConfigError, Leadership, Role, default_identity};
pub use preflight::{PreflightError, preflight};
pub use promotion::Followers;
pub use shard::{Shard, ShardBy, ShardError};
pub use watches::Watches;
