//! Progressive delivery: canary rollouts of one Deployment, gated by Prometheus analysis.
//!
//! The Deployment in Git stays a plain Deployment (the primary). While a rollout runs, ferry
//! applies the primary with its stable pod template and derives `<name>-canary` from Git's new
//! one; promotion applies Git's template to the primary and removes the canary, so the cluster
//! ends exactly as Git says. All state lives in `status.rollout`.
//!
//! - [`types`]: what every strategy shares: the observation of one pass, a person's request,
//!   the decision, the Event reasons. Pure.
//! - [`analysis`]: conditions over a query's result, the verdict on one measurement and on a
//!   run of them, query templates, reading Prometheus's answer. Pure functions.
//! - `lifecycle`: the phases every strategy shares (a request, finishing a promotion, standing
//!   down, holding back an aborted revision, starting). Pure.
//! - [`canary`]: the canary state machine, and the analysis runs blue-green uses too. Pure,
//!   apart from the measurements it asks for.
//! - [`blue_green`]: the blue-green state machine (preview and active Services). Same model.
//! - [`workload`]: the primary and canary Deployments as JSON. Pure.
//! - [`prometheus`]: the instant-query client.
//!
//! Dependencies point one way: `types` <- `lifecycle` <- `canary` <- `blue_green`.
//!
//! The controller's side (reading the live Deployments, applying the decision) is
//! `controller::rollout`.

pub mod analysis;
pub mod blue_green;
pub mod canary;
mod lifecycle;
pub mod prometheus;
pub mod types;
pub mod workload;
