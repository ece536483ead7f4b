//! Shared fixtures for ferry's integration tests: the real local control plane (started by
//! `tests/testenv/testenv.sh`), a namespace per test, Git servers (HTTP and SSH), Prometheus, a
//! Helm chart repository, an OCI registry, a Gitea forge and SOPS with age; the sync tests' [`Scenario`], the
//! Application builder ([`AppBuilder`]) and the manifests the tests commit; extra control planes
//! ([`Cluster::extra`]) prepared as remote clusters ([`remote_access`], [`register_cluster`]).

#![allow(dead_code)]

mod api_metrics;
mod app;
mod chart_repo;
mod cluster;
mod ferry;
mod git_server;
mod gitea;
mod http;
mod manifests;
mod prometheus;
mod registry;
mod remote;
mod scenario;
mod soak_checker;
mod soak_model;
mod soak_watch;
mod sops;
mod ssh_server;
mod tools;
mod wait;

pub use self::ferry::*;
pub use api_metrics::*;
pub use app::*;
pub use chart_repo::*;
pub use cluster::*;
pub use git_server::*;
pub use gitea::*;
pub use http::*;
pub use manifests::*;
pub use prometheus::*;
pub use registry::*;
pub use remote::*;
pub use scenario::*;
pub use soak_checker::*;
pub use soak_model::*;
pub use soak_watch::*;
pub use sops::*;
pub use ssh_server::*;
pub use tools::*;
pub use wait::*;
