//! The webhook Secret, watched: its keys are kept in memory so a webhook request costs no API
//! call. Values are never logged or echoed; only key names are.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tracing::{info, warn};

use super::webhook::{FALLBACK_KEY, Provider};

/// The keys ferry reads from the Secret.
const KEYS: [&str; 4] = ["github", "gitlab", "generic", FALLBACK_KEY];

#[derive(Debug)]
enum State {
    /// The first list has not answered yet.
    Loading,
    /// The watch fails before the first list (e.g. RBAC), and why.
    Unreadable(String),
    Missing,
    Present(BTreeMap<String, Vec<u8>>),
}

/// `--webhook-secret` that does not name a Secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--webhook-secret {spec:?} is not [NAMESPACE/]NAME of a Secret (lowercase letters, digits, '-' and '.')"
)]
pub struct BadSecretName {
    spec: String,
}

/// Why the webhook Secret gives no key (yet). It names the Secret (`namespace/name`), never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoKey {
    #[error("the webhook Secret {secret} is not loaded yet")]
    NotLoaded { secret: String },
    /// As `/readyz` says it before the first list answered.
    #[error("waiting for the webhook Secret {secret}")]
    Waiting { secret: String },
    /// The watch fails before the first list (e.g. RBAC); `why` is the watch's error.
    #[error("cannot read the webhook Secret {secret}: {why}")]
    Unreadable { secret: String, why: String },
    #[error("the webhook Secret {secret} does not exist")]
    Missing { secret: String },
    #[error("the webhook Secret {secret} has neither a key {provider} nor {}", FALLBACK_KEY)]
    NoneFor { secret: String, provider: &'static str },
}

/// `[NAMESPACE/]NAME` of the webhook Secret and its latest keys. Clones share the state.
#[derive(Clone)]
pub struct WebhookSecret {
    namespace: String,
    name: String,
    state: Arc<RwLock<State>>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret({}/{})", self.namespace, self.name)
    }
}

impl WebhookSecret {
    /// Parses `[NAMESPACE/]NAME`; the namespace defaults to `default_namespace`.
    pub fn parse(spec: &str, default_namespace: &str) -> Result<WebhookSecret, BadSecretName> {
        let (namespace, name) = match spec.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (default_namespace, spec),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid(namespace) || !valid(name) {
            return Err(BadSecretName { spec: spec.to_string() });
        }
        Ok(WebhookSecret {
            namespace: namespace.to_string(),
            name: name.to_string(),
            state: Arc::new(RwLock::new(State::Loading)),
        })
    }

    /// `namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The key that authenticates `provider`'s webhooks: its own key, else `token`. The error
    /// says why there is none (for the log; it names the Secret but no value).
    pub fn key(&self, provider: Provider) -> Result<Vec<u8>, NoKey> {
        let secret = self.describe();
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Loading => Err(NoKey::NotLoaded { secret }),
            State::Unreadable(why) => Err(NoKey::Unreadable { secret, why: why.clone() }),
            State::Missing => Err(NoKey::Missing { secret }),
            State::Present(keys) => keys
                .get(provider.as_str())
                .or_else(|| keys.get(FALLBACK_KEY))
                .cloned()
                .ok_or(NoKey::NoneFor { secret, provider: provider.as_str() }),
        }
    }

    /// `Ok` once the first list has answered (the Secret exists or not), else why not yet: part
    /// of `/readyz`.
    pub fn loaded(&self) -> Result<(), NoKey> {
        let secret = self.describe();
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Loading => Err(NoKey::Waiting { secret }),
            State::Unreadable(why) => Err(NoKey::Unreadable { secret, why: why.clone() }),
            State::Missing | State::Present(_) => Ok(()),
        }
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Watches the one Secret (by a field selector on its name) until the returned future is
    /// dropped; run it in a task.
    pub async fn watch(self, client: Client) {
        let api: Api<Secret> = Api::namespaced(client, &self.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let events = watcher(api, config).default_backoff();
        futures::pin_mut!(events);
        let mut listed: Option<Secret> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listed = None,
                Ok(watcher::Event::InitApply(secret)) => listed = Some(secret),
                Ok(watcher::Event::InitDone) => match listed.take() {
                    Some(secret) => self.load(&secret),
                    None => {
                        warn!(secret = %self.describe(), "the webhook Secret does not exist; webhooks are refused until it does");
                        self.set(State::Missing);
                    }
                },
                Ok(watcher::Event::Apply(secret)) => self.load(&secret),
                Ok(watcher::Event::Delete(_)) => {
                    warn!(secret = %self.describe(), "the webhook Secret was deleted; webhooks are refused until it is back");
                    self.set(State::Missing);
                }
                Err(e) => {
                    warn!(secret = %self.describe(), error = %e, "cannot watch the webhook Secret");
                    let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                    // Keys already loaded stay valid while the API server is away.
                    if matches!(*state, State::Loading | State::Unreadable(_)) {
                        *state = State::Unreadable(e.to_string());
                    }
                }
            }
        }
    }

    fn load(&self, secret: &Secret) {
        let keys = keys_of(secret);
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        if names.is_empty() {
            warn!(secret = %self.describe(), "the webhook Secret has none of the keys github, gitlab, generic, token");
        } else {
            info!(secret = %self.describe(), keys = %names.join(","), "webhook Secret loaded");
        }
        self.set(State::Present(keys));
    }
}

/// The webhook keys of a Secret, without the trailing newline a `--from-file` Secret often has.
fn keys_of(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let data = secret.data.iter().flatten();
    data.filter(|(k, _)| KEYS.contains(&k.as_str()))
        .map(|(k, v)| {
            let mut value = v.0.clone();
            while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                value.pop();
            }
            (k.clone(), value)
        })
        // An empty key would accept an empty token or a signature made with an empty key:
        // treated as absent, so such a Secret refuses every webhook.
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn parse_names_the_namespace_or_defaults_it() {
        let s = WebhookSecret::parse("hooks", "ferry").unwrap();
        assert_eq!(s.describe(), "ferry/hooks");
        let s = WebhookSecret::parse("ops/hooks", "ferry").unwrap();
        assert_eq!(s.describe(), "ops/hooks");
        for bad in ["", "/x", "x/", "a/b/c", "Hooks", "a b"] {
            assert!(WebhookSecret::parse(bad, "ferry").is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_fall_back_to_token_and_explain_absence_without_values() {
        let s = WebhookSecret::parse("hooks", "ns").unwrap();
        assert!(s.key(Provider::GitHub).unwrap_err().to_string().contains("not loaded yet"));
        assert!(s.loaded().is_err());
        s.set(State::Missing);
        assert_eq!(s.loaded(), Ok(()));
        assert!(s.key(Provider::GitHub).unwrap_err().to_string().contains("ns/hooks does not exist"));
        let secret = Secret {
            data: Some(BTreeMap::from([
                ("github".to_string(), ByteString(b"gh-value\n".to_vec())),
                ("token".to_string(), ByteString(b"shared-value".to_vec())),
                ("other".to_string(), ByteString(b"ignored".to_vec())),
            ])),
            ..Default::default()
        };
        s.load(&secret);
        assert_eq!(s.key(Provider::GitHub).unwrap(), b"gh-value");
        assert_eq!(s.key(Provider::GitLab).unwrap(), b"shared-value");
        s.load(&Secret::default());
        let err = s.key(Provider::Generic).unwrap_err().to_string();
        assert!(err.contains("neither a key generic nor token"), "{err}");
        assert!(!format!("{s:?}").contains("value"));
        // An empty key is no key: it would accept an empty token.
        let empty = Secret {
            data: Some(BTreeMap::from([("gitlab".to_string(), ByteString(b"\n".to_vec()))])),
            ..Default::default()
        };
        s.load(&empty);
        assert!(s.key(Provider::GitLab).is_err());
    }
}
