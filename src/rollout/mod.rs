//! Progressive delivery: canary rollouts of one Deployment, gated by Prometheus analysis.
//!
//! The Deployment in Git stays a plain Deployment (the primary). While a rollout runs, ferry
//! applies the primary with its stable pod template and derives `<name>-canary` from Git's new
//! one; promotion applies Git's template to the primary and removes the canary, so the cluster
//! ends exactly as Git says. All state lives in `status.rollout`.
//!
//! - [`analysis`]: conditions over a query's result, the verdict on one measurement and on a
//!   run of them, query templates, reading Prometheus's answer. Pure functions.
//! - [`canary`]: the canary state machine. Pure, apart from the measurements it asks for.
//! - [`workload`]: the primary and canary Deployments as JSON. Pure.
//! - [`prometheus`]: the instant-query client.
//!
//! The controller's side (reading the live Deployments, applying the decision) is
//! `controller::rollout`.

pub mod analysis;
pub mod blue_green;
pub mod canary;
mod lifecycle;
pub mod prometheus;
pub mod workload;
