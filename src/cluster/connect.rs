//! From a `Cluster` object to a client configuration: read its kubeconfig Secret, check the
//! kubeconfig ([`super::kubeconfig::check`]), and bound every request in time. Shared by the
//! controller and `ferry diff` (which reads the Secret as the person running it).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Config, config::KubeConfigOptions};

use super::kubeconfig::{self, KubeconfigError};
use crate::{
    api::{Cluster, KUBECONFIG_KEYS, LocalObjectReference},
    source::credentials::{SecretReadError, read_secret},
};

/// Longest wait for a TCP and TLS connection to a remote API server: an unreachable cluster is
/// known within this, not after the operating system's connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Cluster's kubeconfig, checked, and what ferry shows of it.
#[derive(Clone)]
pub struct CheckedKubeconfig {
    pub kubeconfig: kube::config::Kubeconfig,
    /// The API server's URL (`https://…`), for the tenancy's `clusterServers` and messages.
    pub server: String,
    /// A hash of the checked kubeconfig: a new one (a rotated token) makes a new connection.
    pub fingerprint: u64,
}

impl std::fmt::Debug for CheckedKubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kubeconfig holds credentials: only the server is shown.
        f.debug_struct("CheckedKubeconfig").field("server", &self.server).finish_non_exhaustive()
    }
}

/// Why a Cluster's kubeconfig cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig Secret: {0}")]
    Secret(#[source] Box<SecretReadError>),
    #[error("kubeconfig Secret {secret}: no key {key:?}")]
    MissingKey { secret: String, key: String },
    #[error("kubeconfig Secret {secret}: key {key:?} is not UTF-8")]
    NotText { secret: String, key: String },
    #[error("kubeconfig Secret {secret}: {source}")]
    Invalid { secret: String, source: KubeconfigError },
    #[error("kubeconfig Secret {secret}: {source}")]
    Config { secret: String, source: Box<kube::config::KubeconfigError> },
}

/// Reads and checks the kubeconfig of `cluster`, as `client` (whose rights decide whether the
/// Secret may be read).
pub async fn kubeconfig_of(
    client: &kube::Client,
    timeout: Duration,
    cluster: &Cluster,
) -> Result<CheckedKubeconfig, ConnectError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let reference = &cluster.spec.kube_config.secret_ref;
    let secret_ref = LocalObjectReference { name: reference.name.clone() };
    let secret = read_secret(client, timeout, namespace, &secret_ref)
        .await
        .map_err(|e| ConnectError::Secret(Box::new(e)))?;
    let yaml = kubeconfig_text(&secret, &reference.name, reference.key.as_deref())?;
    let context = cluster.spec.kube_config.context.as_deref();
    check(&yaml, context).map_err(|source| ConnectError::Invalid { secret: reference.name.clone(), source })
}

/// The text of the kubeconfig key: `key`, or the first of [`KUBECONFIG_KEYS`] present.
fn kubeconfig_text(secret: &Secret, name: &str, key: Option<&str>) -> Result<String, ConnectError> {
    let data = secret.data.clone().unwrap_or_default();
    let wanted: Vec<&str> = key.map_or_else(|| KUBECONFIG_KEYS.to_vec(), |k| vec![k]);
    let Some((key, bytes)) = wanted.iter().find_map(|k| data.get(*k).map(|b| (*k, b))) else {
        return Err(ConnectError::MissingKey { secret: name.to_string(), key: wanted.join(" or ") });
    };
    String::from_utf8(bytes.0.clone())
        .map_err(|_| ConnectError::NotText { secret: name.to_string(), key: key.to_string() })
}

/// [`kubeconfig::check`], with the server and fingerprint ferry keeps.
pub fn check(yaml: &str, context: Option<&str>) -> Result<CheckedKubeconfig, KubeconfigError> {
    let kubeconfig = kubeconfig::check(yaml, context)?;
    let server = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default();
    // The checked form, serialized, identifies the credentials (and never leaves the process:
    // std's SipHash with its fixed keys is stable within one).
    let text = serde_json::to_string(&kubeconfig).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&text, &mut hasher);
    Ok(CheckedKubeconfig { kubeconfig, server, fingerprint: std::hash::Hasher::finish(&hasher) })
}

/// The client configuration of a checked kubeconfig, with bounded connect and read times.
pub async fn config_of(
    checked: &CheckedKubeconfig,
    secret: &str,
    read_timeout: Duration,
) -> Result<Config, ConnectError> {
    let mut config =
        Config::from_custom_kubeconfig(checked.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .map_err(|e| ConnectError::Config { secret: secret.to_string(), source: Box::new(e) })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    // Watches hold a request open for minutes: the read timeout stays above kube's default
    // watch timeout; other requests are bounded by the API timeout of their caller.
    config.read_timeout = Some(read_timeout.max(Duration::from_secs(300)));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: prod
contexts: [{name: prod, context: {cluster: prod, user: ferry}}]
clusters: [{name: prod, cluster: {server: "https://10.0.0.1:6443", certificate-authority-data: Zm9v}}]
users: [{name: ferry, user: {token: TOKEN}}]
"#;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_key_is_value_then_value_yaml_or_the_one_named() {
        assert_eq!(kubeconfig_text(&secret(&[("value.yaml", "b"), ("value", "a")]), "s", None).unwrap(), "a");
        assert_eq!(kubeconfig_text(&secret(&[("value.yaml", "b")]), "s", None).unwrap(), "b");
        assert_eq!(kubeconfig_text(&secret(&[("kc", "c")]), "s", Some("kc")).unwrap(), "c");
        let err = kubeconfig_text(&secret(&[("kc", "c")]), "s", None).unwrap_err();
        assert_eq!(err.to_string(), "kubeconfig Secret s: no key \"value or value.yaml\"");
    }

    #[test]
    fn the_server_and_a_fingerprint_that_follows_the_credentials() {
        let checked = check(KUBECONFIG, None).unwrap();
        assert_eq!(checked.server, "https://10.0.0.1:6443");
        let rotated = check(&KUBECONFIG.replace("TOKEN", "OTHER"), None).unwrap();
        assert_ne!(checked.fingerprint, rotated.fingerprint);
        assert_eq!(checked.fingerprint, check(KUBECONFIG, None).unwrap().fingerprint);
        assert!(!format!("{checked:?}").contains("TOKEN"), "Debug shows no credentials");
    }
}
