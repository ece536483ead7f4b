//! Git credentials from a Kubernetes Secret, and the redaction that keeps them out of messages.
//!
//! Recognised keys: `username` + `password` (HTTP basic auth, or SSH password), `bearerToken`
//! (HTTP `Authorization: Bearer`), `identity` (SSH private key; `ssh-privatekey` as in a
//! `kubernetes.io/ssh-auth` Secret is accepted too) and `known_hosts` (trusted SSH host keys).
//! Other keys are ignored, since Secrets often carry more than Git credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::SourceError;
use super::known_hosts::KnownHosts;
use crate::{api::LocalObjectReference, kube_util::api_words};

/// Reading the Secret a `secretRef` names failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretReadError {
    #[error("Secret {name} could not be read in time")]
    Timeout { name: String },
    #[error("Secret {name}: {}", api_words(.source))]
    Api { name: String, source: kube::Error },
    #[error("Secret {namespace}/{name} (secretRef) does not exist")]
    Missing { namespace: String, name: String },
    /// The Secret holds no usable credentials.
    #[error(transparent)]
    Invalid(SourceError),
}

/// The Git credentials of the Secret `secret_ref` names in `namespace` (`secretRef` of an
/// Application or of an ApplicationSet's generator), read as `client`: the Application's
/// ServiceAccount when it names one. Read as ferry, any Secret of the namespace with a
/// `username` and `password` could be sent to a Git server the author of an Application
/// controls, by an author who may not read that Secret (a confused deputy).
pub async fn from_secret_ref(
    client: &kube::Client,
    timeout: Duration,
    namespace: &str,
    secret_ref: Option<&LocalObjectReference>,
) -> Result<Option<Credentials>, SecretReadError> {
    let Some(r) = secret_ref else { return Ok(None) };
    let secret = read_secret(client, timeout, namespace, r).await?;
    Credentials::from_secret(&secret).map(Some).map_err(SecretReadError::Invalid)
}

/// The Secret `r` names in `namespace`, read as `client` (see [`from_secret_ref`] for why
/// that is the Application's ServiceAccount), with the API timeout.
pub async fn read_secret(
    client: &kube::Client,
    timeout: Duration,
    namespace: &str,
    r: &LocalObjectReference,
) -> Result<Secret, SecretReadError> {
    let name = || r.name.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    tokio::time::timeout(timeout, secrets.get_opt(&r.name))
        .await
        .map_err(|_| SecretReadError::Timeout { name: name() })?
        .map_err(|source| SecretReadError::Api { name: name(), source })?
        .ok_or_else(|| SecretReadError::Missing { namespace: namespace.to_string(), name: name() })
}

/// Credentials for one repository. `Debug` never shows a secret value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
    /// SSH private key, OpenSSH or PEM format, unencrypted.
    pub identity: Option<String>,
    /// known_hosts lines (OpenSSH format) trusted for SSH host keys.
    pub known_hosts: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("bearer_token", &set(&self.bearer_token))
            .field("identity", &set(&self.identity))
            .field("known_hosts", &self.known_hosts.as_ref().map(|k| format!("{} lines", k.lines().count())))
            .finish()
    }
}

impl Credentials {
    /// Reads credentials from a Secret (`data`, with `stringData` taking precedence as the API
    /// server would apply it).
    pub fn from_secret(secret: &Secret) -> Result<Credentials, SourceError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut data: BTreeMap<String, ByteString> = secret.data.clone().unwrap_or_default();
        for (k, v) in secret.string_data.iter().flatten() {
            data.insert(k.clone(), ByteString(v.clone().into_bytes()));
        }
        Credentials::from_data(&name, &data)
    }

    /// Reads credentials from a Secret's decoded `data`. `secret_name` only labels errors.
    pub fn from_data(
        secret_name: &str,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<Credentials, SourceError> {
        let invalid =
            |message: String| SourceError::InvalidSecret { secret: secret_name.to_string(), message };
        let text = |key: &str| -> Result<Option<String>, SourceError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => match String::from_utf8(bytes.0.clone()) {
                    Ok(s) if s.is_empty() => Ok(None),
                    Ok(s) => Ok(Some(s)),
                    // Never echo the bytes: they may be the secret itself.
                    Err(_) => Err(invalid(format!("key {key:?} is not valid UTF-8"))),
                },
            }
        };
        // `echo token | base64` leaves a newline that no server accepts; trim it where a value
        // can never legitimately end in whitespace. Passwords stay verbatim.
        let trimmed = |v: Option<String>| v.map(|s| s.trim_end_matches(['\r', '\n']).to_string());

        let username = trimmed(text("username")?);
        let password = text("password")?;
        let bearer_token = trimmed(text("bearerToken")?);
        let identity = match text("identity")? {
            Some(id) => Some(id),
            None => text("ssh-privatekey")?,
        };
        let known_hosts = text("known_hosts")?;

        if username.is_none()
            && password.is_none()
            && bearer_token.is_none()
            && identity.is_none()
            && known_hosts.is_none()
        {
            return Err(invalid(
                "it has none of the keys username, password, bearerToken, identity, known_hosts".to_string(),
            ));
        }
        if password.is_some() && username.is_none() {
            return Err(invalid("password is set but username is not".to_string()));
        }
        if bearer_token.is_some() && password.is_some() {
            return Err(invalid("set either username+password or bearerToken, not both".to_string()));
        }
        if let Some(token) = &bearer_token
            && token.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(invalid("bearerToken contains spaces or control characters".to_string()));
        }
        if let Some(id) = &identity
            && !id.contains("PRIVATE KEY-----")
        {
            return Err(invalid("identity is not a PEM or OpenSSH private key".to_string()));
        }
        if let Some(kh) = &known_hosts {
            KnownHosts::parse(kh).map_err(|e| invalid(format!("known_hosts: {e}")))?;
        }
        Ok(Credentials { username, password, bearer_token, identity, known_hosts })
    }
}

/// Replaces every secret value it knows with `***`. Applied to every message that comes from
/// libgit2 or a server, because those are the texts we do not control.
#[derive(Default, Clone)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub(crate) fn new(credentials: Option<&Credentials>, url_password: Option<&str>) -> Redactor {
        let mut secrets = Vec::new();
        let mut add = |s: &str| {
            // Very short values would blank out ordinary words; they cannot be echoed
            // recognisably anyway.
            if s.len() >= 4 {
                secrets.push(s.to_string());
                let encoded = percent_encode(s);
                if encoded != s {
                    secrets.push(encoded);
                }
            }
        };
        if let Some(c) = credentials {
            for s in [&c.password, &c.bearer_token].into_iter().flatten() {
                add(s);
            }
            if let Some(id) = &c.identity {
                add(id.trim());
                // A message could quote a single line of the key body.
                for line in id.lines().map(str::trim).filter(|l| l.len() >= 16 && !l.starts_with("-----")) {
                    add(line);
                }
            }
        }
        if let Some(p) = url_password {
            add(p);
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn basic_auth_secret() {
        let c = Credentials::from_data("git", &data(&[("username", "alice\n"), ("password", "pa ss\n")]))
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        // Passwords are taken verbatim, even trailing whitespace.
        assert_eq!(c.password.as_deref(), Some("pa ss\n"));
        assert_eq!(c.bearer_token, None);
    }

    #[test]
    fn bearer_and_ssh_secrets() {
        let c = Credentials::from_data("git", &data(&[("bearerToken", "tok-123\n")])).unwrap();
        assert_eq!(c.bearer_token.as_deref(), Some("tok-123"));
        let kh =
            "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
        let c = Credentials::from_data("git", &data(&[("identity", KEY), ("known_hosts", kh)])).unwrap();
        assert_eq!(c.identity.as_deref(), Some(KEY));
        assert_eq!(c.known_hosts.as_deref(), Some(kh));
        // kubernetes.io/ssh-auth Secrets name the key `ssh-privatekey`.
        let c = Credentials::from_data("git", &data(&[("ssh-privatekey", KEY)])).unwrap();
        assert_eq!(c.identity.as_deref(), Some(KEY));
    }

    #[test]
    fn from_secret_merges_string_data() {
        let secret = Secret {
            metadata: ObjectMeta { name: Some("creds".into()), ..Default::default() },
            data: Some(data(&[("username", "old"), ("password", "pw1234")])),
            string_data: Some([("username".to_string(), "new".to_string())].into()),
            ..Default::default()
        };
        let c = Credentials::from_secret(&secret).unwrap();
        assert_eq!(c.username.as_deref(), Some("new"));
        assert_eq!(c.password.as_deref(), Some("pw1234"));
    }

    #[test]
    fn invalid_secrets_are_refused_without_echoing_values() {
        let cases: Vec<BTreeMap<String, ByteString>> = vec![
            data(&[("unrelated", "x")]),
            data(&[("password", "hunter2-secret")]),
            data(&[("username", "u"), ("password", "hunter2-secret"), ("bearerToken", "hunter2-token")]),
            data(&[("identity", "hunter2-secret not a key")]),
            data(&[("bearerToken", "hunter2 secret")]),
            data(&[("known_hosts", "host ssh-ed25519 !!!notbase64hunter2")]),
            [
                ("password".to_string(), ByteString(vec![0xff, 0xfe])),
                ("username".into(), ByteString(b"u".to_vec())),
            ]
            .into(),
        ];
        for d in cases {
            let err = Credentials::from_data("creds", &d).expect_err("must be refused");
            assert_eq!(err.category(), "invalid_secret");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("creds"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn debug_redacts_every_secret() {
        let c = Credentials {
            username: Some("alice".into()),
            password: Some("hunter2-password".into()),
            bearer_token: Some("hunter2-token".into()),
            identity: Some(KEY.into()),
            known_hosts: Some("h ssh-ed25519 AAAA\n".into()),
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("b3BlbnNzaC1rZXkt"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn redactor_replaces_plain_encoded_and_key_lines() {
        let c = Credentials {
            username: Some("alice".into()),
            password: Some("p@ss word".into()),
            bearer_token: None,
            identity: Some(KEY.into()),
            known_hosts: None,
        };
        let r = Redactor::new(Some(&c), Some("urlpass"));
        let out = r.redact("a p@ss word b p%40ss%20word c urlpass d b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW");
        assert_eq!(out, "a *** b *** c *** d ***");
        assert_eq!(Redactor::default().redact("nothing"), "nothing");
    }
}
