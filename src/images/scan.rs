//! The registry side: the image repository `spec.image` names, its credentials from
//! `spec.secretRef`, and a bounded tag listing (with the chosen tag's digest when pinned),
//! through the OCI client ferry already uses for artifacts
//! ([`crate::artifact::oci::OciFetcher`]: TLS, deadlines, errors without credentials).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::artifact::{
    access::{AccessError, ArtifactAccess},
    oci::{
        OciError, OciFetcher, OciRepository, OciUrlError, OciUrlProblem, RegistryAccess, RegistryAuth,
        reference::is_valid_tag,
    },
};

/// Tags read at most from one repository: a repository with more is cut (the newest tags of
/// a CI that pushes one per commit may then be missed; `filterTags` does not help, the listing
/// is the registry's). 10,000 tags is ten pages and well under a megabyte.
pub const MAX_TAGS: usize = 10_000;

/// Docker Hub's registry, for images named without one (`nginx`, `team/web`).
const DOCKER_HUB: &str = "docker.io";

/// Why a scan failed (the Ready condition's `ScanFailed`).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("spec.image: {0}")]
    Image(#[from] OciUrlError),
    #[error("spec.secretRef: {0}")]
    Secret(#[from] crate::source::credentials::SecretReadError),
    #[error("spec.secretRef: {0}")]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Registry(#[from] OciError),
}

/// A registry Secret that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(".dockerconfigjson is not a Docker config: {0}")]
    DockerConfig(String),
    #[error(".dockerconfigjson has no credentials for {0}")]
    NoEntry(String),
}

/// `spec.image` as a repository: `host[:port]/path`; a name without a host (no `.` or `:` in
/// its first part, and not `localhost`) is on Docker Hub, in `library/` when it has one part.
pub fn repository(image: &str) -> Result<OciRepository, OciUrlError> {
    if image.is_empty() || image.ends_with('/') {
        return Err(OciUrlError { url: image.to_string(), problem: OciUrlProblem::EmptyPath });
    }
    let first = image.split('/').next().unwrap_or_default();
    let has_host = image.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let url = match (has_host, image.contains('/')) {
        (true, _) => format!("oci://{image}"),
        (false, true) => format!("oci://{DOCKER_HUB}/{image}"),
        (false, false) => format!("oci://{DOCKER_HUB}/library/{image}"),
    };
    OciRepository::parse(&url)
}

/// How to reach `registry` with the Secret's data (or anonymously): `.dockerconfigjson` (its
/// entry for the registry), else `username` and `password`; `ca.crt` as for artifacts.
pub fn registry_access(
    data: Option<&BTreeMap<String, ByteString>>,
    registry: &str,
    insecure: bool,
) -> Result<RegistryAccess, CredentialsError> {
    let Some(data) = data else {
        return Ok(RegistryAccess { auth: RegistryAuth::Anonymous, ca_pem: None, plain_http: insecure });
    };
    let plain = ArtifactAccess::from_secret_data(data)?;
    let ca_pem = plain.ca_pem().map(<[u8]>::to_vec);
    let auth = match data.get(".dockerconfigjson") {
        Some(config) => docker_config_auth(&config.0, registry)?,
        None => match (plain.username(), plain.password()) {
            (Some(u), Some(p)) => RegistryAuth::Basic { username: u.to_string(), password: p.to_string() },
            _ => RegistryAuth::Anonymous,
        },
    };
    Ok(RegistryAccess { auth, ca_pem, plain_http: insecure })
}

/// The credentials a Docker config (`{"auths": {"host": {"auth": base64("user:pass")}}}`, or
/// `username` and `password` in the entry) holds for `registry`. Keys may carry a scheme and
/// a path (`https://index.docker.io/v1/`); Docker Hub answers to several names.
pub fn docker_config_auth(config: &[u8], registry: &str) -> Result<RegistryAuth, CredentialsError> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    // serde_json's message names a position, never the Secret's content.
    let config: Config =
        serde_json::from_slice(config).map_err(|e| CredentialsError::DockerConfig(e.to_string()))?;
    let wanted = canonical_host(registry);
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| canonical_host(key) == wanted)
        .map(|(_, e)| e)
        .ok_or_else(|| CredentialsError::NoEntry(registry.to_string()))?;
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic { username: username.clone(), password: password.clone() });
    }
    let bad = || CredentialsError::DockerConfig(format!("the entry for {registry} has no usable auth"));
    let auth = entry.auth.as_deref().ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(RegistryAuth::Basic { username: username.to_string(), password: password.to_string() })
}

/// `https://Host:5000/v1/` -> `host:5000`; Docker Hub's names -> `docker.io`.
fn canonical_host(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The repository's tags (at most [`MAX_TAGS`]), without any the OCI spec would not accept
/// as a tag (a registry's listing is input like any other).
pub async fn list_tags(
    oci: &OciFetcher,
    repo: &OciRepository,
    access: &RegistryAccess,
) -> Result<Vec<String>, OciError> {
    let mut tags = oci.list_tags_at_most(repo, access, MAX_TAGS).await?;
    tags.retain(|t| is_valid_tag(t));
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_without_a_host_are_on_docker_hub() {
        let r = |i: &str| repository(i).map(|r| (r.registry().to_string(), r.repository().to_string()));
        assert_eq!(r("nginx").unwrap(), ("docker.io".into(), "library/nginx".into()));
        assert_eq!(r("team/web").unwrap(), ("docker.io".into(), "team/web".into()));
        assert_eq!(r("localhost/web").unwrap(), ("localhost".into(), "web".into()));
        assert_eq!(r("127.0.0.1:5000/a/web").unwrap(), ("127.0.0.1:5000".into(), "a/web".into()));
        assert_eq!(r("ghcr.io/org/web").unwrap(), ("ghcr.io".into(), "org/web".into()));
        for bad in ["", "Upper/Case.io/x", "reg.io/web:1.0", "reg.io/", "a b"] {
            assert!(repository(bad).is_err(), "{bad:?}");
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn docker_configs_find_the_registry_entry() {
        // "user:pa:ss" in base64: a password may hold a colon.
        let config = r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                        "Reg.example.com:5000": {"username": "u2", "password": "p2"}}}"#;
        let basic = |u: &str, p: &str| RegistryAuth::Basic { username: u.into(), password: p.into() };
        assert_eq!(docker_config_auth(config.as_bytes(), "docker.io").unwrap(), basic("user", "pa:ss"));
        assert_eq!(docker_config_auth(config.as_bytes(), "reg.example.com:5000").unwrap(), basic("u2", "p2"));
        assert!(matches!(
            docker_config_auth(config.as_bytes(), "other.io"),
            Err(CredentialsError::NoEntry(_))
        ));
        for bad in
            ["", "[]", r#"{"auths": {"docker.io": {"auth": "!!"}}}"#, r#"{"auths": {"docker.io": {}}}"#]
        {
            let err = docker_config_auth(bad.as_bytes(), "docker.io").expect_err(bad);
            assert!(!err.to_string().contains("!!"), "{err}");
        }
    }

    #[test]
    fn secrets_give_basic_credentials_a_ca_and_plain_http() {
        let plain = registry_access(Some(&data(&[("username", "u"), ("password", "p")])), "r", true).unwrap();
        assert_eq!(plain.auth, RegistryAuth::Basic { username: "u".into(), password: "p".into() });
        assert!(plain.plain_http);
        let config = r#"{"auths": {"r": {"username": "d", "password": "q"}}}"#;
        let with_ca = data(&[(".dockerconfigjson", config), ("ca.crt", "PEM")]);
        let docker = registry_access(Some(&with_ca), "r", false).unwrap();
        assert_eq!(docker.auth, RegistryAuth::Basic { username: "d".into(), password: "q".into() });
        assert_eq!(docker.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(registry_access(None, "r", false).unwrap().auth, RegistryAuth::Anonymous);
        assert!(registry_access(Some(&data(&[("username", "u")])), "r", false).is_err());
    }
}
