//! Start-up checks: is the API server reachable, and does it serve the Application CRD?
//!
//! Each failure is one sentence saying what is wrong and what to do, because this is the first
//! thing a person installing ferry sees. The other start-up failures (flags, API discovery, the
//! Git cache, the HTTP port) and how leading can end are `crate::startup`'s own errors.

use std::time::Duration;

use kube::{Api, Client, CustomResourceExt, api::ListParams};

use crate::api::Application;

/// What the checks learned about the cluster.
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    pub url: String,
    pub kubernetes_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("cannot install the SIGTERM/SIGINT handlers ({source}); ferry needs them to shut down cleanly")]
    Signals { source: std::io::Error },

    #[error(
        "no Kubernetes configuration found ({cause}); set KUBECONFIG to your cluster's kubeconfig or run ferry inside a cluster"
    )]
    NoConfig { cause: String },

    #[error(
        "cannot load the kubeconfig named by KUBECONFIG ({path}): {cause}; point KUBECONFIG at a readable kubeconfig file, or unset it"
    )]
    BadKubeconfig { path: String, cause: String },

    #[error(
        "cannot reach the Kubernetes API server at {url} ({cause}); check that the cluster is running and that KUBECONFIG points at it"
    )]
    Unreachable { url: String, cause: String },

    #[error(
        "the Kubernetes API server at {url} did not answer within {}s; check that the cluster is healthy and that KUBECONFIG points at it",
        timeout.as_secs()
    )]
    Timeout { url: String, timeout: Duration },

    #[error(
        "the Kubernetes API server at {url} refused ferry's credentials ({code} {reason}); check the user in KUBECONFIG and its RBAC permissions on {crd}"
    )]
    Unauthorized { url: String, code: u16, reason: String, crd: String },

    #[error(
        "the Application CRD ({crd}) is not installed on the cluster at {url}; install it with `ferry crd | kubectl apply --server-side -f -`"
    )]
    CrdMissing { url: String, crd: String },

    #[error(
        "the Kubernetes API server at {url} answered unexpectedly while listing {crd} ({cause}); check the API server's health and logs"
    )]
    Unexpected { url: String, crd: String, cause: String },
}

impl PreflightError {
    /// Loading a client configuration failed; `kubeconfig_env` is the value of `KUBECONFIG`, if set,
    /// because a wrong path there is the usual cause and the person should see which path.
    pub fn no_config(err: &(dyn std::error::Error + 'static), kubeconfig_env: Option<String>) -> Self {
        match kubeconfig_env.filter(|p| !p.is_empty()) {
            Some(path) => PreflightError::BadKubeconfig { path, cause: root_cause(err) },
            None => PreflightError::NoConfig { cause: root_cause(err) },
        }
    }
}

/// Checks that the API server answers and serves Applications (in `namespace`, or in all
/// namespaces). Makes two read requests.
pub async fn preflight(
    client: &Client,
    cluster_url: &str,
    timeout: Duration,
    namespace: Option<&str>,
) -> Result<ClusterInfo, PreflightError> {
    let url = cluster_url.trim_end_matches('/').to_string();
    let crd = Application::crd_name().to_string();

    let version = tokio::time::timeout(timeout, client.apiserver_version())
        .await
        .map_err(|_| PreflightError::Timeout { url: url.clone(), timeout })?
        .map_err(|err| classify(err, &url, &crd))?;

    // Listing one Application proves both that the CRD is served and that we may read it: in
    // the one namespace ferry reconciles, if any (it may lack cluster-wide permissions).
    let apps: Api<Application> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    tokio::time::timeout(timeout, apps.list_metadata(&ListParams::default().limit(1)))
        .await
        .map_err(|_| PreflightError::Timeout { url: url.clone(), timeout })?
        .map_err(|err| match &err {
            kube::Error::Api(status) if status.code == 404 => {
                PreflightError::CrdMissing { url: url.clone(), crd: crd.clone() }
            }
            _ => classify(err, &url, &crd),
        })?;

    Ok(ClusterInfo { url, kubernetes_version: version.git_version })
}

fn classify(err: kube::Error, url: &str, crd: &str) -> PreflightError {
    match &err {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
            PreflightError::Unauthorized {
                url: url.to_string(),
                code: status.code,
                reason: status.reason.clone(),
                crd: crd.to_string(),
            }
        }
        kube::Error::Api(status) => PreflightError::Unexpected {
            url: url.to_string(),
            crd: crd.to_string(),
            cause: format!("{} {}: {}", status.code, status.reason, status.message),
        },
        _ => PreflightError::Unreachable { url: url.to_string(), cause: root_cause(&err) },
    }
}

/// The innermost error message: "connection refused" says more than "ServiceError: client error".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_one_line_that_says_what_to_do() {
        let url = "https://127.0.0.1:6443".to_string();
        let crd = "applications.ferry.dev".to_string();
        let errors = [
            PreflightError::NoConfig { cause: "no such file".into() },
            PreflightError::Signals { source: std::io::Error::other("EINVAL") },
            PreflightError::BadKubeconfig { path: "/nope".into(), cause: "no such file".into() },
            PreflightError::Unreachable { url: url.clone(), cause: "connection refused".into() },
            PreflightError::Timeout { url: url.clone(), timeout: Duration::from_secs(10) },
            PreflightError::Unauthorized {
                url: url.clone(),
                code: 403,
                reason: "Forbidden".into(),
                crd: crd.clone(),
            },
            PreflightError::CrdMissing { url: url.clone(), crd: crd.clone() },
            PreflightError::Unexpected { url, crd, cause: "500 InternalError: boom".into() },
        ];
        for err in errors {
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            let advice = ["set ", "check ", "install ", "point "];
            assert!(advice.iter().any(|a| msg.contains(a)), "no advice in: {msg}");
        }
    }

    #[test]
    fn root_cause_is_the_innermost_error() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = kube::Error::Service(Box::new(inner));
        assert_eq!(root_cause(&outer), "connection refused");
    }
}
