//! Progressive delivery (issue 8, in progress): canary and blue-green rollouts of one Deployment,
//! gated by Prometheus analysis.
//!
//! - [`analysis`]: conditions over a query's result, the verdict on one measurement and on a
//!   run of them, query templates, reading Prometheus's answer. Pure functions.

pub mod analysis;
