//! ferry's integration tests. They run against the real control plane built and started by
//! `tests/testenv/testenv.sh` (brought up on first use) and real Git servers; one test binary
//! keeps linking cheap.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod apply;
mod artifact_servers;
mod charts;
mod cli;
mod cluster;
mod dashboard;
mod depends_on;
mod diff;
mod drift_rules;
mod extra_clusters;
mod fleet;
mod forge;
mod git_fixture;
mod git_write;
mod hardening;
mod health_checks;
mod hooks;
mod images;
mod import;
mod install;
mod leader;
mod metrics;
mod notifications;
mod previews;
mod remote;
mod render;
mod revert;
mod rollout;
mod soak;
mod source;
mod sync;
mod sync_options;
mod tenancy;
mod tenancy_cache;
mod tenancy_ownership;
mod webhooks;
