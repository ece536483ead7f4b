//! Remote clusters: what ferry accepts as the credentials of a cluster it does not run in
//! ([`kubeconfig`]), how it connects to one from a `Cluster` object ([`connect`]), and the
//! circuit breaker on every client of a remote cluster ([`breaker`]). The controller keeps one
//! connection per cluster in use (`controller::clusters`).

pub mod breaker;
pub mod connect;
pub mod kubeconfig;
