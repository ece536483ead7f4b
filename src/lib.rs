//! ferry: a GitOps reconciliation agent for Kubernetes.
//!
//! The crate is laid out by pipeline stage (see the README's architecture section); the binary in
//! `main.rs` is a thin CLI over these modules.

pub mod api;
pub mod apply;
pub mod appset;
pub mod artifact;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod diff;
pub mod duration;
pub mod forge;
pub mod gitwrite;
pub mod health;
pub mod images;
pub mod import;
pub mod kube_util;
mod locks;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod server;
pub mod source;
pub mod startup;
pub mod telemetry;
pub mod tenancy;

#[cfg(test)]
mod hostile_input;

/// ferry's version, as printed by `ferry version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
