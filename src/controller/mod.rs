//! The controller: kube-runtime's `Controller` over Applications, with the sync pipeline of
//! [`sync`] as its reconcile. `ferry run` wires it up in [`crate::startup`].
//!
//! - [`reconcile`]: finalizer, status writing, events, requeue and error policy.
//! - [`sync`]: fetch -> render -> plan -> validate -> apply -> prune -> health.
//! - `watches`: metadata-only watches of managed objects (drift, health, free steady state).
//! - `memory`: what is remembered per Application between reconciles.
//! - [`status`]: kstatus conditions and history as pure functions.

mod claims;
mod context;
mod delivery;
mod events;
pub mod hooks;
pub mod leader;
mod memory;
mod preflight;
mod promotion;
pub mod reconcile;
mod rollout;
pub mod shard;
pub mod status;
pub mod sync;
mod watches;

pub use context::{Context, SyncOptions, collect_garbage, default_cache_dir};
pub use leader::{Elector, LeaderConfig, Leadership, Role, default_identity};
pub use preflight::{PreflightError, preflight};
pub use promotion::Followers;
pub use shard::Shard;
pub use watches::Watches;
