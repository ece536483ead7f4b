//! Notifications: what ferry does to Applications, told to people where they work (a webhook,
//! Slack, Teams) and to the forge as the commit status of each revision (GitHub, GitLab,
//! Gitea), as `Notifier` resources ask.
//!
//! The controller hands notices over without waiting ([`Notifications::offer`],
//! [`Notifications::status_written`]): a bounded intake, `try_send`; a full intake drops the
//! notice and counts it (`ferry_notifications_total{result="dropped"}`), never blocking a
//! reconcile. One dispatcher task then, for each notice:
//!
//! - [`select`]: which Notifiers hear it (their namespace, names, labels, events, severity;
//!   reaching other namespaces only from ferry's own), from a reflector of Notifiers;
//! - [`limit`]: identical notices within a Notifier's `rateLimit` are sent once, and a summary
//!   with the count when the window ends (a timer, not the next notice);
//! - [`commit`]: a commit status only when a context's (commit, state) changes;
//! - [`outbox`]: per-Notifier queues in order, persisted under the cache directory and replayed
//!   at start (a message in flight at a crash is sent at most once more);
//! - `dispatch`: one delivery task per Notifier with a non-empty queue: the address and token
//!   from its Secret (read as its ServiceAccount, cached a minute), [`payload`] for the
//!   provider, retries with back-off ([`http`]) for ten minutes; and the Notifiers' status.
//!
//! Addresses and tokens never reach logs, Events, status, metrics or error messages.

pub mod commit;
mod dispatch;
mod forge_status;
pub mod http;
pub mod limit;
pub mod outbox;
pub mod payload;
pub mod select;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    api::{Application, ApplicationStatus, HealthStatusCode, NotificationEvent, Severity},
    locks::locked,
    metrics::Metrics,
};

/// Notices waiting for the dispatcher; more are dropped (and counted).
pub const INTAKE: usize = 1024;

/// A Notifier, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NotifierKey {
    pub namespace: String,
    pub name: String,
}

/// Something that happened to an Application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub namespace: String,
    pub name: String,
    /// The Application's labels, for selection only (not kept in the outbox).
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    pub event: NotificationEvent,
    pub severity: Severity,
    pub revision: Option<String>,
    pub message: String,
    /// RFC 3339, when ferry saw it.
    pub timestamp: String,
}

/// How the dispatcher reads a Notifier's Secret as the Notifier's ServiceAccount: the
/// controller's impersonating clients and tenancy defaults, lent without this module depending
/// on the controller.
pub trait Impersonation: Send + Sync + 'static {
    /// A client acting as the ServiceAccount `named` in `namespace` (or the default one an
    /// Application there would act as).
    fn client_for(&self, namespace: &str, named: Option<&str>) -> Result<kube::Client, ImpersonationError>;
}

/// Why no client could act as a Notifier's ServiceAccount.
#[derive(Debug, thiserror::Error)]
pub enum ImpersonationError {
    #[error(transparent)]
    Refused(#[from] crate::tenancy::Refusal),
    #[error("no client for the ServiceAccount: {0}")]
    Client(Box<dyn std::error::Error + Send + Sync>),
}

/// What [`Notifications::start`] needs.
pub struct Options {
    /// ferry's own client: watches Notifiers, writes their status.
    pub client: kube::Client,
    /// Where the outbox file lives (`<cache>/notifications/outbox.json`).
    pub cache_dir: PathBuf,
    /// ferry's own namespace (`--policy-namespace`): only Notifiers there may hear other
    /// namespaces.
    pub home_namespace: Option<String>,
    /// Watch Notifiers of this namespace only (`--namespace`).
    pub watch_namespace: Option<String>,
    /// Deadline of each API call and each delivery.
    pub timeout: Duration,
    /// How often each Notifier's status gets this replica's counts (at most).
    pub status_interval: Duration,
    pub metrics: Arc<Metrics>,
    pub impersonation: Arc<dyn Impersonation>,
}

/// What the controller hands to the dispatcher.
#[derive(Debug)]
enum Input {
    Notice(Notice),
    Commit {
        namespace: String,
        name: String,
        labels: BTreeMap<String, String>,
        repo_url: String,
        verdict: commit::Verdict,
    },
}

/// The controller's handle on notifications: cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Notifications {
    intake: Option<mpsc::Sender<Input>>,
    metrics: Option<Arc<Metrics>>,
    /// The revision each Application's status last named, for notices about it.
    revisions: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl Notifications {
    /// No notifications (the Notifier CRD is not installed, or a test context).
    pub fn disabled() -> Notifications {
        Notifications::default()
    }

    /// Starts the dispatcher, the Notifier cache and the delivery tasks (after replaying the
    /// outbox). Call within a tokio runtime.
    pub fn start(options: Options) -> Notifications {
        let (tx, rx) = mpsc::channel(INTAKE);
        let metrics = options.metrics.clone();
        dispatch::spawn(options, rx);
        Notifications { intake: Some(tx), metrics: Some(metrics), revisions: Default::default() }
    }

    /// Hands `notice` to the dispatcher, or drops and counts it when the intake is full.
    pub fn offer(&self, notice: Notice) {
        self.send(Input::Notice(notice));
    }

    /// A notice about an Application known by name only (an ImagePolicy's update target).
    pub fn offer_for(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        event: NotificationEvent,
        revision: Option<&str>,
        message: &str,
    ) {
        self.offer(Notice {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels: labels.clone(),
            event,
            severity: event.severity(),
            revision: revision.map(str::to_string),
            message: message.to_string(),
            timestamp: now(),
        });
    }

    /// A notice about `app`, of the revision its status last named.
    pub fn offer_about(
        &self,
        app: &Application,
        event: NotificationEvent,
        severity: Severity,
        message: &str,
    ) {
        let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
        let revision =
            locked(&self.revisions).get(&(namespace.clone(), name.clone())).cloned().or_else(|| {
                let status = app.status.as_ref()?;
                status.last_attempted_revision.clone().or_else(|| status.last_applied_revision.clone())
            });
        self.offer(Notice {
            namespace,
            name,
            labels: app.labels().clone(),
            event,
            severity,
            revision,
            message: message.to_string(),
            timestamp: now(),
        });
    }

    /// The status of `app` went from `prev` to `next`: health turning Degraded is a notice,
    /// and a new (commit, state) goes to the commit status Notifiers.
    pub fn status_written(
        &self,
        app: &Application,
        prev: Option<&ApplicationStatus>,
        next: &ApplicationStatus,
    ) {
        if self.intake.is_none() {
            return;
        }
        let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
        if let Some(revision) = next.last_attempted_revision.clone() {
            locked(&self.revisions).insert((namespace.clone(), name.clone()), revision);
        }
        if let Some(message) = degraded(prev, next) {
            self.offer_about(app, NotificationEvent::Degraded, Severity::Error, &message);
        }
        let repo_url = app.spec.source.repo_url.clone();
        if let (Some(verdict), Some(repo_url)) = (commit::transition(prev, next), repo_url) {
            let labels = app.labels().clone();
            self.send(Input::Commit { namespace, name, labels, repo_url, verdict });
        }
    }

    /// Forgets a deleted Application.
    pub fn forget(&self, namespace: &str, name: &str) {
        locked(&self.revisions).remove(&(namespace.to_string(), name.to_string()));
    }

    fn send(&self, input: Input) {
        let Some(intake) = &self.intake else { return };
        if intake.try_send(input).is_err()
            && let Some(metrics) = &self.metrics
        {
            // Which Notifiers would have heard it is not known before the dispatcher looks.
            metrics.notification("any", "dropped");
        }
    }
}

/// The health message when health turned Degraded between `prev` and `next`.
pub fn degraded(prev: Option<&ApplicationStatus>, next: &ApplicationStatus) -> Option<String> {
    let code = |s: Option<&ApplicationStatus>| s.and_then(|s| s.health.as_ref()).map(|h| h.status);
    let health = next.health.as_ref().filter(|h| h.status == HealthStatusCode::Degraded)?;
    (code(prev) != Some(HealthStatusCode::Degraded))
        .then(|| health.message.clone().unwrap_or_else(|| "health is Degraded".into()))
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HealthStatus;

    fn health(status: HealthStatusCode) -> ApplicationStatus {
        ApplicationStatus {
            health: Some(HealthStatus { status, message: Some("pods crash".into()) }),
            ..Default::default()
        }
    }

    #[test]
    fn degraded_is_told_when_health_turns_degraded_only() {
        let (healthy, bad) = (health(HealthStatusCode::Healthy), health(HealthStatusCode::Degraded));
        assert_eq!(degraded(Some(&healthy), &bad).as_deref(), Some("pods crash"));
        assert_eq!(degraded(None, &bad).as_deref(), Some("pods crash"));
        assert_eq!(degraded(Some(&bad), &bad), None);
        assert_eq!(degraded(Some(&bad), &healthy), None);
    }

    #[test]
    fn a_full_intake_drops_and_counts_without_blocking() {
        let (tx, _rx) = mpsc::channel(1);
        let metrics = Arc::new(Metrics::new());
        let n =
            Notifications { intake: Some(tx), metrics: Some(metrics.clone()), revisions: Default::default() };
        for _ in 0..3 {
            n.offer_for("a", "b", &BTreeMap::new(), NotificationEvent::Synced, None, "m");
        }
        let text = metrics.encode();
        assert!(text.contains(r#"ferry_notifications_total{provider="any",result="dropped"} 2"#), "{text}");
    }
}
