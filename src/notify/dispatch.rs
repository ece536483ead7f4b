//! The running side: the Notifier cache, the dispatcher (selection, rate limits, commit status
//! changes into the outbox), one delivery task per Notifier with messages, the outbox writer
//! and the Notifiers' status.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::PostParams,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use tokio::sync::{Notify, mpsc};

use super::{
    Input, Notice, NotifierKey, Options,
    http::{GIVE_UP_AFTER, Http, SendError, backoff},
    limit::{Admit, Counted, RateLimiter},
    outbox::{Body, Message, Outbox, write_atomically},
    payload, select,
};
use crate::{
    api::{Notifier, NotifierProvider, NotifierStatus},
    duration,
    locks::locked,
    metrics::Metrics,
};

/// How long a Secret read is reused.
const SECRET_TTL: Duration = Duration::from_secs(60);

/// What the tasks share.
pub(super) struct Shared {
    pub store: Store<Notifier>,
    pub outbox: Mutex<Outbox>,
    path: PathBuf,
    changed: Notify,
    /// Set once the Notifier cache holds its first list.
    ready: tokio::sync::watch::Sender<bool>,
    http: Option<Http>,
    forge: Option<crate::forge::ForgeClient>,
    secrets: Mutex<HashMap<SecretKey, (Instant, Target)>>,
    tallies: Mutex<HashMap<NotifierKey, Tally>>,
    pub home: Option<String>,
    client: kube::Client,
    timeout: Duration,
    metrics: Arc<Metrics>,
    impersonation: Arc<dyn super::Impersonation>,
}

/// A Secret read as a ServiceAccount: namespace, Secret name, ServiceAccount named.
type SecretKey = (String, String, Option<String>);

/// Where and with what a Notifier sends: never logged.
#[derive(Clone)]
pub(super) struct Target {
    pub address: Option<String>,
    pub token: Option<String>,
}

/// This replica's counts for a Notifier since its status was last written, and the last
/// delivery problem.
#[derive(Default, Clone)]
struct Tally {
    sent: i64,
    failed: i64,
    last_sent: Option<Time>,
    problem: Option<(&'static str, String)>,
}

/// Why one delivery attempt failed. The text never holds the address or token.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeliverError {
    #[error("the Notifier is gone")]
    Gone,
    #[error("the Notifier is suspended")]
    Suspended,
    #[error(transparent)]
    Refused(#[from] select::Refused),
    #[error("Secret {0} not found")]
    SecretNotFound(String),
    #[error("reading Secret {name}: {message}")]
    Secret { name: String, message: String },
    #[error("no address: set spec.address or the Secret's key address")]
    NoAddress,
    #[error("no HTTP client (the system's TLS roots could not be loaded)")]
    NoClient,
    #[error("a commit status needs the forge API token: the Secret's key token")]
    NoToken,
    #[error("the provider sends no commit status")]
    NotACommitStatusProvider,
    #[error("delivery failed: {0}")]
    Send(#[from] SendError),
    #[error("commit status: {0}")]
    Forge(String),
    #[error("commit status: {0}")]
    ForgePermanent(String),
}

impl DeliverError {
    /// Worth another try: the receiver or the API may answer later, a Secret may be created.
    fn is_transient(&self) -> bool {
        match self {
            DeliverError::Send(e) => e.is_transient(),
            DeliverError::SecretNotFound(_) | DeliverError::Secret { .. } | DeliverError::Forge(_) => true,
            _ => false,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            DeliverError::SecretNotFound(_) => "SecretNotFound",
            DeliverError::Refused(r) => r.reason(),
            _ => "DeliveryFailing",
        }
    }
}

pub(super) fn spawn(options: Options, intake: mpsc::Receiver<Input>) {
    let (store, writer) = reflector::store();
    let api: Api<Notifier> = match &options.watch_namespace {
        Some(ns) => Api::namespaced(options.client.clone(), ns),
        None => Api::all(options.client.clone()),
    };
    let watch =
        watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(|event| {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching Notifiers failed; retrying");
            }
            async {}
        });
    tokio::spawn(watch);
    let path = options.cache_dir.join("notifications").join("outbox.json");
    let outbox = Outbox::load(&path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "starting with an empty notification queue");
        Outbox::default()
    });
    let http = Http::new(options.timeout)
        .map_err(|e| tracing::warn!(error = %e, "no HTTP client for notifications (TLS roots)"))
        .ok();
    let shared = Arc::new(Shared {
        store,
        outbox: Mutex::new(outbox),
        path,
        changed: Notify::new(),
        ready: tokio::sync::watch::Sender::new(false),
        http,
        forge: crate::forge::ForgeClient::new(options.timeout).ok(),
        secrets: Mutex::default(),
        tallies: Mutex::default(),
        home: options.home_namespace,
        client: options.client,
        timeout: options.timeout,
        metrics: options.metrics,
        impersonation: options.impersonation,
    });
    let pending: Vec<NotifierKey> = locked(&shared.outbox).queues.keys().cloned().collect();
    for key in pending {
        shared.clone().wake(key);
    }
    tokio::spawn(persist(shared.clone()));
    tokio::spawn(write_statuses(shared.clone(), options.status_interval));
    tokio::spawn(dispatch(shared, intake));
}

/// The dispatcher: notices and commit verdicts in, messages into the outbox; every second the
/// rate limit windows that ended give their summaries.
async fn dispatch(shared: Arc<Shared>, mut intake: mpsc::Receiver<Input>) {
    let _ = shared.store.wait_until_ready().await;
    // kube's readiness wakes one waiter; the other tasks wait on this.
    shared.ready.send_replace(true);
    let mut limiter = RateLimiter::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            input = intake.recv() => match input {
                Some(Input::Notice(notice)) => shared.route(&mut limiter, &notice),
                Some(Input::Commit { namespace, name, labels, repo_url, verdict }) => {
                    let subject = select::Subject { namespace: &namespace, name: &name, labels: &labels };
                    shared.route_commit(&subject, &repo_url, &verdict);
                }
                None => return,
            },
            _ = tick.tick() => {
                for summary in limiter.expired(Instant::now()) {
                    shared.enqueue_counted(summary);
                }
            }
        }
    }
}

impl Shared {
    /// The event Notifiers that hear `notice`, through their rate limits, into the outbox.
    fn route(self: &Arc<Self>, limiter: &mut RateLimiter, notice: &Notice) {
        let subject =
            select::Subject { namespace: &notice.namespace, name: &notice.name, labels: &notice.labels };
        for notifier in self.store.state() {
            let provider = notifier.spec.provider;
            if provider.is_commit_status()
                || notifier.spec.suspend
                || !select::selects(&notifier, self.home.as_deref(), &subject)
                || !select::hears(&notifier, notice.event, notice.severity)
            {
                continue;
            }
            let key = key_of(&notifier);
            let window = duration::parse(&notifier.spec.rate_limit).unwrap_or(Duration::from_secs(300));
            let (admit, early) = limiter.admit(&key, notice, window, Instant::now());
            if let Some(summary) = early {
                self.enqueue_counted(summary);
            }
            match admit {
                Admit::Send => {
                    self.enqueue_counted(Counted { notifier: key, notice: notice.clone(), count: 1 })
                }
                Admit::Held => self.metrics.notification(provider.as_str(), "suppressed"),
            }
        }
    }

    /// The commit status Notifiers that hear the Application, when their context's state changed.
    fn route_commit(
        self: &Arc<Self>,
        subject: &select::Subject,
        repo_url: &str,
        verdict: &super::commit::Verdict,
    ) {
        for notifier in self.store.state() {
            if !notifier.spec.provider.is_commit_status()
                || notifier.spec.suspend
                || !select::selects(&notifier, self.home.as_deref(), subject)
            {
                continue;
            }
            let key = key_of(&notifier);
            let context = notifier
                .spec
                .commit_status_context
                .clone()
                .unwrap_or_else(|| format!("ferry/{}/{}", subject.namespace, subject.name));
            if !locked(&self.outbox).commit_changed(&key, &context, verdict) {
                continue;
            }
            let body = Body::Commit { repo_url: repo_url.to_string(), context, verdict: verdict.clone() };
            self.enqueue(key, Message { provider: notifier.spec.provider, body });
        }
    }

    fn enqueue_counted(self: &Arc<Self>, counted: Counted) {
        let Some(notifier) = self.notifier(&counted.notifier) else { return };
        let body = Body::Event { notice: counted.notice, count: counted.count };
        self.enqueue(counted.notifier, Message { provider: notifier.spec.provider, body });
    }

    fn enqueue(self: &Arc<Self>, key: NotifierKey, message: Message) {
        let provider = message.provider.as_str();
        let dropped = locked(&self.outbox).push(&key, message);
        for _ in 0..dropped {
            self.metrics.notification(provider, "dropped");
        }
        self.changed.notify_one();
        self.clone().wake(key);
    }

    /// Starts the delivery task of `key` unless one runs.
    fn wake(self: Arc<Self>, key: NotifierKey) {
        if locked(&self.outbox).working.insert(key.clone()) {
            tokio::spawn(self.deliver_queue(key));
        }
    }

    /// Until the Notifier cache holds its first list.
    async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    fn notifier(&self, key: &NotifierKey) -> Option<Arc<Notifier>> {
        self.store.get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Delivers `key`'s queue in order until it is empty.
    async fn deliver_queue(self: Arc<Self>, key: NotifierKey) {
        self.wait_ready().await;
        loop {
            let front = {
                let mut outbox = locked(&self.outbox);
                let front = outbox.queues.get(&key).and_then(|q| q.front().cloned());
                if front.is_none() {
                    outbox.queues.remove(&key);
                    outbox.working.remove(&key);
                }
                front
            };
            let Some(message) = front else { return };
            let result = self.deliver_with_retries(&key, &message).await;
            locked(&self.outbox).queues.get_mut(&key).and_then(|q| q.pop_front());
            self.changed.notify_one();
            self.record(&key, message.provider, result);
        }
    }

    /// Tries `message` until it is delivered, fails for good, or ten minutes have passed.
    async fn deliver_with_retries(&self, key: &NotifierKey, message: &Message) -> Result<(), DeliverError> {
        let started = Instant::now();
        let mut failures = 0;
        loop {
            match self.deliver(key, message).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && started.elapsed() < GIVE_UP_AFTER => {
                    failures += 1;
                    if failures == 1 {
                        tracing::info!(notifier = %format_args!("{}/{}", key.namespace, key.name), error = %e, "notification not delivered; retrying");
                    }
                    self.problem(key, Some((e.reason(), e.to_string())));
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt.
    async fn deliver(&self, key: &NotifierKey, message: &Message) -> Result<(), DeliverError> {
        let notifier = self.notifier(key).ok_or(DeliverError::Gone)?;
        if notifier.spec.suspend {
            return Err(DeliverError::Suspended);
        }
        select::admitted(&notifier, self.home.as_deref())?;
        let target = self.target(&notifier).await?;
        match &message.body {
            Body::Event { notice, count } => {
                let address = target.address.as_deref().ok_or(DeliverError::NoAddress)?;
                let http = self.http.as_ref().ok_or(DeliverError::NoClient)?;
                let Some(payload) = payload::build(message.provider, notice, *count, target.token.as_deref())
                else {
                    return Ok(());
                };
                Ok(http.post(address, &payload).await?)
            }
            Body::Commit { repo_url, context, verdict } => super::forge_status::send(
                self.forge.as_ref(),
                message.provider,
                &target,
                repo_url,
                context,
                verdict,
            )
            .await
            .map_err(|e| redact(e, &target)),
        }
    }

    /// The address and token of `notifier`: its Secret's (read as its ServiceAccount, reused
    /// for a minute), else its `spec.address`.
    async fn target(&self, notifier: &Notifier) -> Result<Target, DeliverError> {
        let spec_address = notifier.spec.address.clone();
        let Some(secret_ref) = &notifier.spec.secret_ref else {
            return Ok(Target { address: spec_address, token: None });
        };
        let namespace = notifier.namespace().unwrap_or_default();
        let sa = notifier.spec.service_account_name.clone();
        let cache_key = (namespace.clone(), secret_ref.name.clone(), sa.clone());
        if let Some((at, target)) = locked(&self.secrets).get(&cache_key)
            && at.elapsed() < SECRET_TTL
        {
            return Ok(target.clone());
        }
        let secret_err = |message: String| DeliverError::Secret { name: secret_ref.name.clone(), message };
        let client = self
            .impersonation
            .client_for(&namespace, sa.as_deref())
            .map_err(|e| secret_err(e.to_string()))?;
        let api: Api<Secret> = Api::namespaced(client, &namespace);
        let read = tokio::time::timeout(self.timeout, api.get_opt(&secret_ref.name))
            .await
            .map_err(|_| secret_err("timed out".into()))?
            .map_err(|e| secret_err(e.to_string()))?
            .ok_or_else(|| DeliverError::SecretNotFound(secret_ref.name.clone()))?;
        let value = |k: &str| {
            read.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .map(|v| v.trim().to_string())
        };
        let target = Target { address: value("address").or(spec_address), token: value("token") };
        locked(&self.secrets).insert(cache_key, (Instant::now(), target.clone()));
        Ok(target)
    }

    /// Counts the end of one message.
    fn record(&self, key: &NotifierKey, provider: NotifierProvider, result: Result<(), DeliverError>) {
        let mut tallies = locked(&self.tallies);
        let tally = tallies.entry(key.clone()).or_default();
        match result {
            Ok(()) => {
                self.metrics.notification(provider.as_str(), "sent");
                tally.sent += 1;
                tally.last_sent = Some(Time(Timestamp::now()));
                tally.problem = None;
            }
            Err(e @ (DeliverError::Gone | DeliverError::Suspended)) => {
                tracing::debug!(notifier = %format_args!("{}/{}", key.namespace, key.name), reason = %e, "notification dropped");
                self.metrics.notification(provider.as_str(), "dropped");
            }
            Err(e) => {
                tracing::warn!(notifier = %format_args!("{}/{}", key.namespace, key.name), error = %e, "notification given up on");
                self.metrics.notification(provider.as_str(), "failed");
                tally.failed += 1;
                tally.problem = Some((e.reason(), e.to_string()));
            }
        }
    }

    fn problem(&self, key: &NotifierKey, problem: Option<(&'static str, String)>) {
        locked(&self.tallies).entry(key.clone()).or_default().problem = problem;
    }
}

/// `error`'s text with the address and token cut out, in case a forge client echoed them.
fn redact(error: DeliverError, target: &Target) -> DeliverError {
    let clean = |text: String| {
        [&target.address, &target.token]
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 4)
            .fold(text, |t, s| t.replace(s.as_str(), "[redacted]"))
    };
    match error {
        DeliverError::Forge(m) => DeliverError::Forge(clean(m)),
        DeliverError::ForgePermanent(m) => DeliverError::ForgePermanent(clean(m)),
        other => other,
    }
}

fn key_of(notifier: &Notifier) -> NotifierKey {
    NotifierKey { namespace: notifier.namespace().unwrap_or_default(), name: notifier.name_any() }
}

/// Writes the outbox whenever it changed (bursts coalesce into one write).
async fn persist(shared: Arc<Shared>) {
    loop {
        shared.changed.notified().await;
        let json = locked(&shared.outbox).to_json();
        let path = shared.path.clone();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &json)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the notification queue was not saved"),
            Err(e) => tracing::warn!(error = %e, "the notification queue was not saved"),
        }
    }
}

/// Every `interval`: each Notifier's status gets this replica's counts and its Ready condition,
/// by an update conditional on the resourceVersion (a conflict waits for the next round).
async fn write_statuses(shared: Arc<Shared>, interval: Duration) {
    shared.wait_ready().await;
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for notifier in shared.store.state() {
            let key = key_of(&notifier);
            let tally = locked(&shared.tallies).get(&key).cloned().unwrap_or_default();
            let Some(status) = next_status(&notifier, &tally, shared.home.as_deref()) else { continue };
            let mut updated = (*notifier).clone();
            updated.status = Some(status);
            let api: Api<Notifier> = Api::namespaced(shared.client.clone(), &key.namespace);
            let params = PostParams::default();
            let write = api.replace_status(&key.name, &params, &updated);
            match tokio::time::timeout(shared.timeout, write).await {
                Ok(Ok(_)) => {
                    let mut tallies = locked(&shared.tallies);
                    if let Some(t) = tallies.get_mut(&key) {
                        t.sent -= tally.sent;
                        t.failed -= tally.failed;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(notifier = %format_args!("{}/{}", key.namespace, key.name), error = %e, "Notifier status not written; next round")
                }
                Err(_) => tracing::debug!("writing a Notifier status timed out; next round"),
            }
        }
    }
}

/// The status `notifier` should have with `tally` added; `None` when it already has it.
fn next_status(notifier: &Notifier, tally: &Tally, home: Option<&str>) -> Option<NotifierStatus> {
    let current = notifier.status.clone().unwrap_or_default();
    let (status, reason, message) = match (select::admitted(notifier, home), &tally.problem) {
        (Err(refused), _) => ("False", refused.reason(), refused.to_string()),
        (Ok(()), Some((reason, message))) => ("False", *reason, message.clone()),
        (Ok(()), None) => ("True", "Ready", "ready to send".to_string()),
    };
    let before = current.conditions.iter().find(|c| c.type_ == "Ready");
    let same = before.is_some_and(|c| c.status == status && c.reason == reason && c.message == message);
    let generation = notifier.metadata.generation;
    if same && tally.sent == 0 && tally.failed == 0 && current.observed_generation == generation {
        return None;
    }
    let condition = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: match before {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(Timestamp::now()),
        },
    };
    let mut conditions: Vec<Condition> =
        current.conditions.into_iter().filter(|c| c.type_ != "Ready").collect();
    conditions.push(condition);
    Some(NotifierStatus {
        observed_generation: generation,
        conditions,
        sent: current.sent + tally.sent,
        failed: current.failed + tally.failed,
        last_sent: tally.last_sent.clone().or(current.last_sent),
    })
}
