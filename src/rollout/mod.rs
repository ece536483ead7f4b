//! Progressive delivery: canary and blue-green rollouts of one Deployment, gated by Prometheus
//! analysis.
//!
//! The Deployment in Git stays a plain Deployment (the primary). While a rollout runs, ferry
//! applies the primary with its stable pod template and derives `<name>-canary` from Git's new
//! one; promotion applies Git's template to the primary and removes the canary, so the cluster
//! ends exactly as Git says. All state lives in `status.rollout`.
//!
//! - [`analysis`]: conditions over a query's result, the verdict on one measurement and on a
//!   run of them, query templates, reading Prometheus's answer. Pure functions.
//! - [`prometheus`]: the instant-query client, and why a query got no number (`QueryError`).
//! - [`workload`]: the primary and canary Deployments, and the Services and HTTPRoute a rollout
//!   points, as JSON. Pure.
//! - [`types`]: what every strategy shares: the observation of one pass, a person's request,
//!   the decision, why a measurement could not be taken, the Event reasons. Pure.
//! - `analysis_run`: an analysis run as `status.rollout` keeps it: which metrics are due,
//!   taking and recording their measurements, what the run concludes. The ApplicationSet's
//!   fleet rollouts (`appset::fleet`) run their steps' analyses through it too.
//! - `lifecycle`: the phases every strategy shares (a request, finishing a promotion, standing
//!   down, holding back an aborted revision, starting, aborting) and the bookkeeping of one pass
//!   through the steps (`Rollout`, `Wait`). Pure, apart from the measurements it asks for.
//! - [`canary`]: the canary state machine (traffic by replica ratio or Gateway API weights, a
//!   background analysis). Pure, apart from the measurements it asks for.
//! - `handover`: a replica-ratio canary's promotion by handing its ReplicaSet to the paused
//!   primary, stage by stage from what a pass sees. Pure.
//! - [`blue_green`]: the blue-green state machine (preview and active Services). Same model.
//!
//! Dependencies point one way: `analysis`, `prometheus`, `workload` <- `types` <-
//! `analysis_run` <- `lifecycle` <- `canary`, `blue_green`; `types` <- `handover` <- `canary`;
//! the two strategies do not use each other.
//!
//! The controller's side (reading the live Deployments, applying the decision) is
//! `controller::strategy`.

pub mod analysis;
pub(crate) mod analysis_run;
pub mod blue_green;
pub mod canary;
mod handover;
mod lifecycle;
pub mod prometheus;
pub mod types;
pub mod workload;
