//! A remote cluster's kubeconfig as a tenant hands it to ferry in a Secret, checked before
//! anything of it is used: ferry's process holds files a tenant must never make it read and can
//! run programs a tenant must never make it run.
//!
//! Accepted: one context, its cluster (an `https://` server, an inline CA, `tls-server-name`) and
//! its user (a bearer token, basic auth, or an inline client certificate and key).
//!
//! Refused, each naming the entry and the field:
//! - exec plugins and auth providers: they run programs or read ferry's own cloud credentials;
//! - every field naming a file on ferry's disk (`tokenFile`, `client-certificate`, `client-key`,
//!   `certificate-authority`): a kubeconfig pointing at ferry's own ServiceAccount token would
//!   make ferry present it to a server the tenant runs;
//! - impersonation set in the kubeconfig (ferry impersonates the Application's ServiceAccount
//!   itself), a proxy, and fields kube does not model (client-go may give them a meaning);
//! - a server that is not `https://`, or `insecure-skip-tls-verify` (a token sent in clear or to
//!   anyone who answers).
//!
//! Pure: the result is the kubeconfig reduced to the chosen context, for
//! `kube::Config::from_custom_kubeconfig`.

use kube::config::{AuthInfo, Cluster, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

/// The largest kubeconfig read (a Secret holds at most 1 MiB anyway).
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;

/// Why a kubeconfig is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KubeconfigError {
    #[error("the kubeconfig is {size} bytes; at most {MAX_KUBECONFIG_BYTES} are read")]
    TooLarge { size: usize },
    #[error("the kubeconfig is not valid YAML: {0}")]
    Yaml(String),
    #[error("the kubeconfig names no context to use (set current-context or name one)")]
    NoContext,
    #[error("the kubeconfig has no context {0:?}")]
    MissingContext(String),
    #[error("context {context:?} names {what} {name:?}, which the kubeconfig does not define")]
    Dangling { context: String, what: &'static str, name: String },
    #[error("{entry}: {field} is not accepted: {why}")]
    Refused { entry: String, field: &'static str, why: &'static str },
    #[error("cluster {cluster:?} has no server")]
    NoServer { cluster: String },
    #[error("cluster {cluster:?}: the server must be an https:// URL, not {server:?}")]
    NotHttps { cluster: String, server: String },
    #[error(
        "user {user:?} has no credentials (token, username and password, or client certificate and key data)"
    )]
    NoCredentials { user: String },
}

const FILE: &str = "ferry reads no file a kubeconfig names; put the data inline (the *-data fields, token)";
const PROGRAM: &str = "ferry runs no program and uses no credentials of its own for a remote cluster";
const IMPERSONATION: &str = "ferry impersonates the Application's ServiceAccount itself";
const UNKNOWN: &str = "a field ferry does not know is refused rather than ignored";

/// The kubeconfig `yaml`, checked, reduced to `context` (or its current context).
pub fn check(yaml: &str, context: Option<&str>) -> Result<Kubeconfig, KubeconfigError> {
    if yaml.len() > MAX_KUBECONFIG_BYTES {
        return Err(KubeconfigError::TooLarge { size: yaml.len() });
    }
    let config = Kubeconfig::from_yaml(yaml).map_err(|e| KubeconfigError::Yaml(e.to_string()))?;
    let name = context.map(str::to_string).or_else(|| config.current_context.clone());
    let name = name.filter(|n| !n.is_empty()).ok_or(KubeconfigError::NoContext)?;
    let named = config.contexts.iter().find(|c| c.name == name);
    let named = named.cloned().ok_or_else(|| KubeconfigError::MissingContext(name.clone()))?;
    let ctx = named.context.clone().ok_or_else(|| KubeconfigError::MissingContext(name.clone()))?;
    let dangling = |what, n: &str| KubeconfigError::Dangling { context: name.clone(), what, name: n.into() };
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| dangling("cluster", &ctx.cluster))?;
    let user_name = ctx.user.clone().unwrap_or_default();
    let user =
        config.auth_infos.iter().find(|u| u.name == user_name).ok_or_else(|| dangling("user", &user_name))?;
    check_cluster(cluster)?;
    check_user(user)?;
    Ok(Kubeconfig {
        clusters: vec![cluster.clone()],
        auth_infos: vec![user.clone()],
        contexts: vec![NamedContext { name: name.clone(), ..named }],
        current_context: Some(name),
        ..Kubeconfig::default()
    })
}

fn check_cluster(named: &NamedCluster) -> Result<(), KubeconfigError> {
    let entry = format!("cluster {:?}", named.name);
    let refuse = |field, why| Err(KubeconfigError::Refused { entry: entry.clone(), field, why });
    let Some(cluster) = &named.cluster else {
        return Err(KubeconfigError::NoServer { cluster: named.name.clone() });
    };
    let Cluster { server, insecure_skip_tls_verify, certificate_authority, proxy_url, other, .. } = cluster;
    if certificate_authority.is_some() {
        return refuse("certificate-authority", FILE);
    }
    if proxy_url.is_some() {
        return refuse("proxy-url", "ferry connects to the server directly");
    }
    if insecure_skip_tls_verify == &Some(true) {
        return refuse(
            "insecure-skip-tls-verify",
            "ferry verifies the server; give certificate-authority-data",
        );
    }
    if !other.is_empty() {
        return refuse("an unknown field", UNKNOWN);
    }
    let server = server.clone().filter(|s| !s.is_empty());
    let server = server.ok_or_else(|| KubeconfigError::NoServer { cluster: named.name.clone() })?;
    if !server.starts_with("https://") {
        return Err(KubeconfigError::NotHttps { cluster: named.name.clone(), server });
    }
    Ok(())
}

fn check_user(named: &NamedAuthInfo) -> Result<(), KubeconfigError> {
    let entry = format!("user {:?}", named.name);
    let refuse = |field, why| Err(KubeconfigError::Refused { entry: entry.clone(), field, why });
    let no_credentials = || KubeconfigError::NoCredentials { user: named.name.clone() };
    let user: &AuthInfo = named.auth_info.as_ref().ok_or_else(no_credentials)?;
    let files = [
        ("tokenFile", user.token_file.is_some()),
        ("client-certificate", user.client_certificate.is_some()),
        ("client-key", user.client_key.is_some()),
    ];
    if let Some((field, _)) = files.iter().find(|(_, set)| *set) {
        return refuse(field, FILE);
    }
    if user.exec.is_some() {
        return refuse("exec", PROGRAM);
    }
    if user.auth_provider.is_some() {
        return refuse("auth-provider", PROGRAM);
    }
    let impersonates = user.impersonate.is_some()
        || user.impersonate_uid.is_some()
        || user.impersonate_groups.is_some()
        || user.impersonate_user_extra.is_some();
    if impersonates {
        return refuse("as", IMPERSONATION);
    }
    if !user.other.is_empty() {
        return refuse("an unknown field", UNKNOWN);
    }
    let token = user.token.is_some();
    let basic = user.username.is_some() && user.password.is_some();
    let certificate = user.client_certificate_data.is_some() && user.client_key_data.is_some();
    if token || basic || certificate { Ok(()) } else { Err(no_credentials()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: remote\ncontexts:\n- name: remote\n  context: {{cluster: prod, user: ferry}}\nclusters:\n- name: prod\n  cluster:\n{cluster}users:\n- name: ferry\n  user:\n{user}"
        )
    }

    const CLUSTER: &str = "    server: https://prod.example.com:6443\n    certificate-authority-data: Y2E=\n";
    const TOKEN: &str = "    token: abc\n";

    #[test]
    fn a_token_and_an_inline_ca_are_accepted_and_reduced_to_the_context() {
        let mut yaml = kubeconfig(CLUSTER, TOKEN);
        yaml.push_str("- name: other\n  user: {token: x}\n");
        let checked = check(&yaml, None).unwrap();
        assert_eq!(checked.auth_infos.len(), 1, "only the context's user is kept");
        assert_eq!(checked.current_context.as_deref(), Some("remote"));
        let cert = "    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n";
        assert!(check(&kubeconfig(CLUSTER, cert), None).is_ok());
    }

    #[test]
    fn files_programs_impersonation_and_unknown_fields_are_refused_by_name() {
        let cases = [
            ("    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n", "tokenFile"),
            (
                "    client-certificate: /etc/ferry/tls.crt\n    client-key: /etc/ferry/tls.key\n",
                "client-certificate",
            ),
            ("    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}\n", "exec"),
            ("    auth-provider: {name: gcp}\n", "auth-provider"),
            ("    token: abc\n    as: system:admin\n", "as"),
            ("    token: abc\n    some-new-field: x\n", "an unknown field"),
        ];
        for (user, field) in cases {
            match check(&kubeconfig(CLUSTER, user), None) {
                Err(KubeconfigError::Refused { field: f, entry, .. }) => {
                    assert_eq!((f, entry.as_str()), (field, "user \"ferry\""), "{user}")
                }
                other => panic!("{user}: {other:?}"),
            }
        }
        let file_ca = "    server: https://prod.example.com\n    certificate-authority: /etc/ssl/ca.pem\n";
        let err = check(&kubeconfig(file_ca, TOKEN), None).unwrap_err();
        assert!(err.to_string().contains("certificate-authority is not accepted"), "{err}");
        let insecure = "    server: https://prod.example.com\n    insecure-skip-tls-verify: true\n";
        assert!(check(&kubeconfig(insecure, TOKEN), None).unwrap_err().to_string().contains("insecure"));
    }

    #[test]
    fn a_server_in_clear_a_missing_context_or_credentials_are_refused() {
        let http = "    server: http://prod.example.com\n";
        assert!(matches!(check(&kubeconfig(http, TOKEN), None), Err(KubeconfigError::NotHttps { .. })));
        assert_eq!(
            check(&kubeconfig(CLUSTER, TOKEN), Some("staging")).unwrap_err(),
            KubeconfigError::MissingContext("staging".into())
        );
        let nothing = "    username: admin\n";
        assert!(matches!(
            check(&kubeconfig(CLUSTER, nothing), None),
            Err(KubeconfigError::NoCredentials { .. })
        ));
        let dangling = kubeconfig(CLUSTER, TOKEN).replace("user: ferry}", "user: nobody}");
        assert!(matches!(check(&dangling, None), Err(KubeconfigError::Dangling { what: "user", .. })));
        assert!(matches!(check("{", None), Err(KubeconfigError::Yaml(_))));
        assert!(matches!(
            check(&" ".repeat(MAX_KUBECONFIG_BYTES + 1), None),
            Err(KubeconfigError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_checked_kubeconfig_makes_a_client_config_without_touching_the_disk() {
        let checked = check(&kubeconfig(CLUSTER, TOKEN), None).unwrap();
        let config = kube::Config::from_custom_kubeconfig(checked, &Default::default()).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://prod.example.com:6443/");
    }
}
