//! ferry's Prometheus metrics: one prometheus-client registry, served as OpenMetrics text.
//!
//! - Application state (`ferry_app_*`) is not kept here: it is computed at scrape time from the
//!   controller's watch cache, so it is always what the API server holds and a deleted
//!   Application's series vanish with it.
//! - Work counters and histograms are updated by the controller as it goes. Histograms carry no
//!   per-Application label, so their cardinality does not grow with the fleet.
//! - Per-Application counters (syncs, drift corrections, deployments) are removed when the
//!   Application is deleted ([`Metrics::forget`]).
//! - API requests are counted by a tower layer on every client ferry builds ([`Metrics::client`]).

use std::{
    sync::{Arc, OnceLock},
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use kube::{Client, Config, ResourceExt, client::ClientBuilder, runtime::reflector::Store};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets_range},
    },
    registry::Registry,
};

use crate::{
    api::{Application, HealthStatusCode, RolloutPhase, SyncStatusCode},
    apply::AppRef,
    source::RepoUrl,
};

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The stages of a reconcile, for `ferry_reconcile_duration_seconds{stage}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Fetch,
    Render,
    Plan,
    Apply,
    Prune,
    Health,
    /// The whole reconcile.
    Total,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Render => "render",
            Stage::Plan => "plan",
            Stage::Apply => "apply",
            Stage::Prune => "prune",
            Stage::Health => "health",
            Stage::Total => "total",
        }
    }
}

/// How a deployment (a new revision reaching the cluster) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentResult {
    Succeeded,
    Failed,
    RolledBack,
}

impl DeploymentResult {
    const ALL: [DeploymentResult; 3] =
        [DeploymentResult::Succeeded, DeploymentResult::Failed, DeploymentResult::RolledBack];

    fn as_str(self) -> &'static str {
        match self {
            DeploymentResult::Succeeded => "succeeded",
            DeploymentResult::Failed => "failed",
            DeploymentResult::RolledBack => "rolled_back",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    verb: &'static str,
    result: &'static str,
    /// `in-cluster`, or the name of the remote `Cluster` the request went to.
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: String,
    result: String,
}

/// A Notifier's provider (`slack`, `gitea`, ...; `any` for a notice dropped before any Notifier
/// was chosen) and what became of the message: never its address or token.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    provider: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppResultLabels {
    namespace: String,
    name: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutResultLabels {
    strategy: &'static str,
    result: &'static str,
}

fn app_labels(app: &AppRef) -> AppLabels {
    AppLabels { namespace: app.namespace.clone(), name: app.name.clone() }
}

fn app_result(app: &AppRef, result: &'static str) -> AppResultLabels {
    AppResultLabels { namespace: app.namespace.clone(), name: app.name.clone(), result }
}

/// The service kube's `ClientBuilder::try_from(Config)` starts from (kube-client's
/// `GenericService`, which it does not export).
pub type KubeService = tower::util::BoxService<
    http::Request<kube::client::Body>,
    http::Response<Box<kube::client::DynBody>>,
    tower::BoxError,
>;

/// Every metric ferry exports.
pub struct Metrics {
    registry: Registry,
    apps: Arc<AppState>,
    reconciles: Family<ResultLabel, Counter>,
    stage_duration: Family<StageLabel, Histogram>,
    syncs: Family<AppResultLabels, Counter>,
    drift_corrections: Family<AppLabels, Counter>,
    objects_applied: Family<ResultLabel, Counter>,
    objects_pruned: Counter,
    git_fetches: Family<ResultLabel, Counter>,
    git_fetch_duration: Histogram,
    git_cache_bytes: Gauge,
    git_cache_evictions: Counter,
    errors: Family<CategoryLabel, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
    deployments: Family<AppResultLabels, Counter>,
    lead_time: Histogram,
    last_deployment: Family<AppLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while a remote cluster in use answers, 0 while it does not.
    cluster_reachable: Family<ClusterLabels, Gauge>,
    time_to_restore: Histogram,
    rollout_duration: Family<RolloutResultLabels, Histogram>,
    analysis_measurements: Family<ResultLabel, Counter>,
    /// Reverts written to Git for failed revisions (`rollback.gitRevert`), by outcome.
    git_reverts: Family<ResultLabel, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    leader: Gauge,
    /// ImagePolicy scans and the updates they wrote (see [`crate::images`]).
    image_scans: Family<ResultLabel, Counter>,
    image_updates: Family<ResultLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferry");
        let apps = Arc::new(AppState::default());
        registry.register_collector(Box::new(apps.clone()));

        let stage_duration = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds(0.005, 300.0, 16))
        });
        let git_fetch_duration = Histogram::new(seconds(0.005, 300.0, 16));
        // Lead time runs from minutes to weeks; restore from seconds to days.
        let lead_time = Histogram::new(seconds(10.0, 30.0 * 86400.0, 16));
        let time_to_restore = Histogram::new(seconds(1.0, 7.0 * 86400.0, 16));

        let rollout_duration = Family::<RolloutResultLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds(1.0, 7.0 * 86400.0, 16))
        });
        let m = Metrics {
            registry,
            apps,
            reconciles: Family::default(),
            stage_duration,
            syncs: Family::default(),
            drift_corrections: Family::default(),
            objects_applied: Family::default(),
            objects_pruned: Counter::default(),
            git_fetches: Family::default(),
            git_fetch_duration,
            git_cache_bytes: Gauge::default(),
            git_cache_evictions: Counter::default(),
            errors: Family::default(),
            api_requests: Family::default(),
            webhooks: Family::default(),
            deployments: Family::default(),
            lead_time,
            last_deployment: Family::default(),
            cluster_reachable: Family::default(),
            time_to_restore,
            rollout_duration,
            analysis_measurements: Family::default(),
            git_reverts: Family::default(),
            notifications: Family::default(),
            leader: Gauge::default(),
            image_scans: Family::default(),
            image_updates: Family::default(),
        };
        // Zero series for every outcome from the start, so rates and increases (the dashboard)
        // exist before the first revert, image update or notification.
        for result in ["pushed", "pull_request", "conflict", "failed"] {
            let _ = m.git_reverts.get_or_create(&ResultLabel { result });
        }
        for result in ["committed", "pull_request", "conflict", "failed"] {
            let _ = m.image_updates.get_or_create(&ResultLabel { result });
        }
        for result in ["success", "failed", "no_matching_tag"] {
            let _ = m.image_scans.get_or_create(&ResultLabel { result });
        }
        for provider in crate::api::NotifierProvider::ALL {
            for result in ["sent", "failed", "dropped", "suppressed"] {
                let labels = NotificationLabels { provider: provider.as_str().into(), result };
                let _ = m.notifications.get_or_create(&labels);
            }
        }
        m.register()
    }

    /// Registers every metric, in the order scrapes show them.
    fn register(mut self) -> Metrics {
        self.register_sync_work();
        self.register_git();
        self.register_requests();
        self.register_delivery();
        self.register_rollouts();
        self.register_images();
        self
    }

    /// Image update automation.
    fn register_images(&mut self) {
        let r = &mut self.registry;
        r.register(
            "image_scans",
            "ImagePolicy registry scans, by result (success, no_matching_tag, failed)",
            self.image_scans.clone(),
        );
        r.register(
            "image_updates",
            "Image updates written to Git, by result (committed, pull_request, conflict, failed)",
            self.image_updates.clone(),
        );
    }

    /// Reconciles, their stages, and what syncs did to objects.
    fn register_sync_work(&mut self) {
        let r = &mut self.registry;
        r.register("reconcile", "Reconciles of Applications by result", self.reconciles.clone());
        r.register(
            "reconcile_duration_seconds",
            "Time spent in each stage of a reconcile (stage=total: the whole reconcile)",
            self.stage_duration.clone(),
        );
        r.register(
            "sync",
            "Syncs that changed the cluster (succeeded) or ended in an error (failed)",
            self.syncs.clone(),
        );
        r.register(
            "drift_corrections",
            "Objects reverted to Git after a change in the cluster",
            self.drift_corrections.clone(),
        );
        r.register("objects_applied", "Objects applied, by result", self.objects_applied.clone());
        r.register(
            "objects_pruned",
            "Objects deleted because Git no longer has them",
            self.objects_pruned.clone(),
        );
    }

    /// The Git sources and their cache.
    fn register_git(&mut self) {
        let r = &mut self.registry;
        r.register(
            "git_fetch",
            "Git source resolutions (ref check and, for a new commit, fetch)",
            self.git_fetches.clone(),
        );
        r.register(
            "git_fetch_duration_seconds",
            "Time to resolve and fetch a Git source",
            self.git_fetch_duration.clone(),
        );
        r.register(
            "git_cache_bytes",
            "Bytes of file content in the Git cache after its last collection",
            self.git_cache_bytes.clone(),
        );
        r.register(
            "git_cache_evictions",
            "Snapshots and repositories deleted from the Git cache (unused, or over --cache-max-size)",
            self.git_cache_evictions.clone(),
        );
    }

    /// Errors, and the requests ferry makes and receives.
    fn register_requests(&mut self) {
        let r = &mut self.registry;
        r.register("errors", "Errors by category", self.errors.clone());
        r.register(
            "api_requests",
            "Requests ferry made to Kubernetes API servers, by cluster",
            self.api_requests.clone(),
        );
        r.register(
            "cluster_reachable",
            "Whether a remote cluster Applications deploy to answers (1) or not (0)",
            self.cluster_reachable.clone(),
        );
        r.register(
            "webhook_requests",
            "Webhook requests received, by provider and result",
            self.webhooks.clone(),
        );
    }

    /// The delivery (DORA) figures.
    fn register_delivery(&mut self) {
        let r = &mut self.registry;
        r.register(
            "deployments",
            "New revisions deployed, by how they ended (succeeded: Healthy; failed; rolled_back)",
            self.deployments.clone(),
        );
        r.register(
            "lead_time_seconds",
            "From the commit time of a deployed revision to Healthy",
            self.lead_time.clone(),
        );
        r.register(
            "last_deployment_timestamp_seconds",
            "When the last successful deployment became Healthy (unix time)",
            self.last_deployment.clone(),
        );
        r.register(
            "time_to_restore_seconds",
            "From an Application turning Degraded to Healthy again",
            self.time_to_restore.clone(),
        );
    }

    /// Progressive rollouts, and whether this process leads.
    fn register_rollouts(&mut self) {
        let r = &mut self.registry;
        r.register(
            "rollout_duration_seconds",
            "How long progressive rollouts ran, by strategy and result (Succeeded, Aborted, Superseded)",
            self.rollout_duration.clone(),
        );
        r.register(
            "analysis_measurements",
            "Rollout analysis measurements, by verdict (Successful, Failed, Inconclusive, Error)",
            self.analysis_measurements.clone(),
        );
        r.register(
            "git_reverts",
            "Reverts of failed revisions written to Git, by result (pushed, pull_request, conflict, failed)",
            self.git_reverts.clone(),
        );
        r.register(
            "notifications",
            "Notifications, by Notifier provider and result (sent; failed: given up after retries; dropped: intake or outbox full, Notifier gone; suppressed: held back by rateLimit)",
            self.notifications.clone(),
        );
        r.register(
            "leader",
            "1 while this process reconciles (holds its Lease, or runs without leader election); 0 on a standby",
            self.leader.clone(),
        );
    }

    /// Applications the state gauges are computed from: the controller's watch cache.
    pub fn watch_apps(&self, store: Store<Application>) {
        let _ = self.apps.store.set(store);
    }

    /// Only the Applications `exported` accepts get state gauges: with leader election and
    /// sharding, those of this process's shard while it leads, so that across replicas each
    /// Application is counted once.
    pub fn export_apps_if(&self, exported: impl Fn(&Application) -> bool + Send + Sync + 'static) {
        let _ = self.apps.exported.set(Box::new(exported));
    }

    /// Whether this process leads (`ferry_leader`).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector error would be a bug worth seeing.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Whether each remote cluster in use answers (`(namespace, name)`, reachable); the
    /// clusters no longer in use lose their series.
    pub fn clusters_reachable<'a>(&self, clusters: impl Iterator<Item = (&'a (String, String), bool)>) {
        self.cluster_reachable.clear();
        for ((namespace, cluster), up) in clusters {
            let labels = ClusterLabels { namespace: namespace.clone(), cluster: cluster.clone() };
            self.cluster_reachable.get_or_create(&labels).set(i64::from(up));
        }
    }

    /// A client for `config` whose requests are counted in `ferry_api_requests_total`.
    pub fn client(self: &Arc<Self>, config: Config) -> Result<Client, kube::Error> {
        let layer = CountRequests { metrics: self.clone(), cluster: Arc::from("in-cluster") };
        Ok(ClientBuilder::try_from(identified(config))?.with_layer(&layer).build())
    }

    /// A client for a remote cluster: its requests counted with `cluster`, and passed through
    /// `layer` (the cluster's circuit breaker) below the count, so that refused requests are
    /// counted too (result `error`).
    pub fn client_with<L>(
        self: &Arc<Self>,
        config: Config,
        layer: &L,
        cluster: &str,
    ) -> Result<Client, kube::Error>
    where
        L: tower::Layer<KubeService>,
        L::Service: tower::Service<
                http::Request<kube::client::Body>,
                Response = http::Response<Box<kube::client::DynBody>>,
                Error = tower::BoxError,
            > + Send
            + 'static,
        <L::Service as tower::Service<http::Request<kube::client::Body>>>::Future: Send + 'static,
    {
        let count = CountRequests { metrics: self.clone(), cluster: Arc::from(cluster) };
        Ok(ClientBuilder::try_from(identified(config))?.with_layer(layer).with_layer(&count).build())
    }

    /// A rollout ended.
    pub fn rollout_finished(&self, strategy: &'static str, result: &'static str, took: Duration) {
        self.rollout_duration
            .get_or_create(&RolloutResultLabels { strategy, result })
            .observe(took.as_secs_f64());
    }

    /// `result`: success, no_matching_tag or failed.
    pub fn image_scanned(&self, result: &'static str) {
        self.image_scans.get_or_create(&ResultLabel { result }).inc();
    }

    /// `result`: committed, pull_request, conflict or failed.
    pub fn image_updated(&self, result: &'static str) {
        self.image_updates.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn analysis_measured(&self, result: &'static str) {
        self.analysis_measurements.get_or_create(&ResultLabel { result }).inc();
    }

    /// A revert of a failed revision ended: `pushed`, `pull_request`, `conflict` or `failed`.
    pub fn git_revert(&self, result: &'static str) {
        self.git_reverts.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn reconciled(&self, success: bool) {
        let result = if success { "success" } else { "error" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stage_duration.get_or_create(&StageLabel { stage: stage.as_str() }).observe(took.as_secs_f64());
    }

    /// Times `stage` until the returned guard is dropped.
    pub fn time(&self, stage: Stage) -> StageTimer<'_> {
        StageTimer { metrics: self, stage, started: Instant::now() }
    }

    /// Creates the per-Application series at zero, so rates and ratios have something to work
    /// with before the first deployment.
    pub fn track(&self, app: &AppRef) {
        for r in DeploymentResult::ALL {
            let _ = self.deployments.get_or_create(&app_result(app, r.as_str()));
        }
        for r in ["succeeded", "failed"] {
            let _ = self.syncs.get_or_create(&app_result(app, r));
        }
        let _ = self.drift_corrections.get_or_create(&app_labels(app));
    }

    pub fn synced(&self, app: &AppRef, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        self.syncs.get_or_create(&app_result(app, result)).inc();
    }

    pub fn drift_corrected(&self, app: &AppRef, objects: usize) {
        self.drift_corrections.get_or_create(&app_labels(app)).inc_by(objects as u64);
    }

    /// `result`: created, updated or failed.
    pub fn objects_applied(&self, result: &'static str, objects: usize) {
        if objects > 0 {
            self.objects_applied.get_or_create(&ResultLabel { result }).inc_by(objects as u64);
        }
    }

    pub fn objects_pruned(&self, objects: usize) {
        self.objects_pruned.inc_by(objects as u64);
    }

    pub fn git_fetch(&self, success: bool, took: Duration) {
        let result = if success { "success" } else { "failure" };
        self.git_fetches.get_or_create(&ResultLabel { result }).inc();
        self.git_fetch_duration.observe(took.as_secs_f64());
    }

    /// What a collection of the Git cache left and deleted.
    pub fn git_cache_collected(&self, bytes: u64, deleted: u64) {
        self.git_cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.git_cache_evictions.inc_by(deleted);
    }

    /// `category`: a short, fixed word (see the README's metrics table), never a message.
    pub fn error(&self, category: &'static str) {
        self.errors.get_or_create(&CategoryLabel { category }).inc();
    }

    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels { provider: provider.into(), result: result.into() })
            .inc();
    }

    /// `result`: sent, failed, dropped or suppressed.
    pub fn notification(&self, provider: &str, result: &'static str) {
        self.notifications.get_or_create(&NotificationLabels { provider: provider.into(), result }).inc();
    }

    pub fn deployment(&self, app: &AppRef, result: DeploymentResult) {
        self.deployments.get_or_create(&app_result(app, result.as_str())).inc();
    }

    /// A deployment became Healthy at `at` (unix seconds), `lead_time` after its commit.
    pub fn deployed(&self, app: &AppRef, at: f64, lead_time: Option<Duration>) {
        self.deployment(app, DeploymentResult::Succeeded);
        self.last_deployment.get_or_create(&app_labels(app)).set(at);
        if let Some(lead) = lead_time {
            self.lead_time.observe(lead.as_secs_f64());
        }
    }

    pub fn restored(&self, after: Duration) {
        self.time_to_restore.observe(after.as_secs_f64());
    }

    /// Removes every per-Application series of a deleted Application.
    pub fn forget(&self, app: &AppRef) {
        for r in DeploymentResult::ALL {
            self.deployments.remove(&app_result(app, r.as_str()));
        }
        for r in ["succeeded", "failed"] {
            self.syncs.remove(&app_result(app, r));
        }
        self.drift_corrections.remove(&app_labels(app));
        self.last_deployment.remove(&app_labels(app));
    }
}

/// Records a stage's duration when dropped, so early returns are timed too.
pub struct StageTimer<'a> {
    metrics: &'a Metrics,
    stage: Stage,
    started: Instant,
}

impl Drop for StageTimer<'_> {
    fn drop(&mut self) {
        self.metrics.stage(self.stage, self.started.elapsed());
    }
}

/// `length` buckets spread exponentially from `min` to `max` seconds.
fn seconds(min: f64, max: f64, length: u16) -> impl Iterator<Item = f64> {
    exponential_buckets_range(min, max, length)
}

// ---------------------------------------------------------------------------------------------
// Application state, computed at scrape time

#[derive(Default)]
struct AppState {
    store: OnceLock<Store<Application>>,
    exported: OnceLock<AppFilter>,
}

type AppFilter = Box<dyn Fn(&Application) -> bool + Send + Sync>;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

const SYNC_CODES: [(SyncStatusCode, &str); 3] = [
    (SyncStatusCode::Synced, "Synced"),
    (SyncStatusCode::OutOfSync, "OutOfSync"),
    (SyncStatusCode::Unknown, "Unknown"),
];

const HEALTH_CODES: [(HealthStatusCode, &str); 6] = [
    (HealthStatusCode::Healthy, "Healthy"),
    (HealthStatusCode::Progressing, "Progressing"),
    (HealthStatusCode::Degraded, "Degraded"),
    (HealthStatusCode::Suspended, "Suspended"),
    (HealthStatusCode::Missing, "Missing"),
    (HealthStatusCode::Unknown, "Unknown"),
];

/// The label values of one Application's state series.
#[derive(Clone, Debug, PartialEq)]
pub struct AppSnapshot {
    pub namespace: String,
    pub name: String,
    pub repo: String,
    pub path: String,
    pub revision: String,
    pub sync: SyncStatusCode,
    pub health: HealthStatusCode,
    pub suspended: bool,
    /// (type, status) of each condition.
    pub conditions: Vec<(String, String)>,
    /// When the newest history entry finished (unix seconds).
    pub last_sync: Option<f64>,
    /// (strategy, phase, canary weight) of the rollout, when the Application has a strategy.
    pub rollout: Option<(&'static str, &'static str, Option<i32>)>,
    /// The ApplicationSet that generated it.
    pub application_set: Option<String>,
    /// The Cluster it deploys to (`in-cluster` for the cluster ferry runs in).
    pub cluster: String,
}

impl AppSnapshot {
    pub fn of(app: &Application) -> AppSnapshot {
        // Borrowed, not cloned: a status holds the whole inventory, and this runs per scrape.
        let status = app.status.as_ref();
        let sync = status.and_then(|s| s.sync.as_ref());
        // The repo label never carries credentials embedded in the URL.
        let url = app.spec.source.shown_url();
        let repo = RepoUrl::parse(url)
            .map(|u| u.redacted().to_string())
            .unwrap_or_else(|_| crate::source::repo_url::redact_unparsed(url));
        AppSnapshot {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            repo,
            path: app.spec.source.path.clone().unwrap_or_default(),
            revision: sync.and_then(|s| s.short_revision.clone()).unwrap_or_default(),
            sync: sync.map(|s| s.status).unwrap_or_default(),
            health: status.and_then(|s| s.health.as_ref()).map(|h| h.status).unwrap_or_default(),
            suspended: app.spec.suspend,
            conditions: status
                .map(|s| s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone())).collect())
                .unwrap_or_default(),
            last_sync: status
                .and_then(|s| s.history.first())
                .and_then(|h| h.finished_at.as_ref())
                .map(|t| t.0.as_millisecond() as f64 / 1000.0),
            rollout: app.spec.strategy.as_ref().map(|strategy| {
                let rollout = status.and_then(|s| s.rollout.as_ref());
                let kind = if strategy.canary.is_some() { "canary" } else { "blueGreen" };
                let phase = rollout.map(|r| r.phase).unwrap_or_default();
                (kind, rollout_phase_word(phase), rollout.and_then(|r| r.canary_weight))
            }),
            application_set: app.labels().get(crate::api::APPLICATION_SET_LABEL).cloned(),
            cluster: crate::api::destination_cluster(app).unwrap_or("in-cluster").to_string(),
        }
    }
}

impl Collector for AppState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.store.get() else { return Ok(()) };
        let exported = self.exported.get();
        let mut apps: Vec<AppSnapshot> = store
            .state()
            .iter()
            .filter(|a| exported.is_none_or(|f| f(a)))
            .map(|a| AppSnapshot::of(a))
            .collect();
        apps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        encode_app_state(&apps, &mut encoder)
    }
}

type Labels = Vec<(&'static str, String)>;

fn encode_gauges<V: EncodeGaugeValue + Default>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(V::default());
    let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The state series of every Application, then those of the ApplicationSets (in this order, as
/// scrapes have always shown them).
fn encode_app_state(apps: &[AppSnapshot], encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    encode_app_status(apps, encoder)?;
    encode_rollouts(apps, encoder)?;
    encode_gauges(
        encoder,
        "app_last_sync_timestamp_seconds",
        "When an Application's newest sync (applied or failed) finished (unix time)",
        apps.iter().filter_map(|a| Some((base(a), a.last_sync?))),
    )?;
    encode_application_sets(apps, encoder)
}

/// The labels every series of an Application has.
fn base(a: &AppSnapshot) -> Labels {
    vec![("namespace", a.namespace.clone()), ("name", a.name.clone())]
}

/// What an Application is and how it stands: info, sync and health (one-hot), conditions.
fn encode_app_status(apps: &[AppSnapshot], encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    encode_gauges(
        encoder,
        "app_info",
        "An Application: its source, revision, and sync and health status (always 1)",
        apps.iter().map(|a| {
            let mut l = base(a);
            l.push(("repo", a.repo.clone()));
            l.push(("path", a.path.clone()));
            l.push(("revision", a.revision.clone()));
            l.push(("sync_status", sync_word(a.sync).into()));
            l.push(("health_status", health_word(a.health).into()));
            l.push(("suspended", a.suspended.to_string()));
            l.push(("cluster", a.cluster.clone()));
            (l, 1i64)
        }),
    )?;
    encode_gauges(
        encoder,
        "app_sync_status",
        "An Application's sync status, one-hot",
        apps.iter().flat_map(|a| {
            SYNC_CODES.iter().map(move |(code, word)| {
                let mut l = base(a);
                l.push(("status", (*word).into()));
                (l, i64::from(a.sync == *code))
            })
        }),
    )?;
    encode_gauges(
        encoder,
        "app_health_status",
        "An Application's health status, one-hot",
        apps.iter().flat_map(|a| {
            HEALTH_CODES.iter().map(move |(code, word)| {
                let mut l = base(a);
                l.push(("status", (*word).into()));
                (l, i64::from(a.health == *code))
            })
        }),
    )?;
    encode_gauges(
        encoder,
        "app_condition",
        "An Application's status conditions (always 1; the status label holds True, False or Unknown)",
        apps.iter().flat_map(|a| {
            a.conditions.iter().map(move |(t, s)| {
                let mut l = base(a);
                l.push(("type", t.clone()));
                l.push(("status", s.clone()));
                (l, 1i64)
            })
        }),
    )
}

/// The rollouts of Applications with a strategy: strategy and phase, canary weight.
fn encode_rollouts(apps: &[AppSnapshot], encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    encode_gauges(
        encoder,
        "rollout_info",
        "The rollout of an Application with a strategy: strategy and phase (always 1)",
        apps.iter().filter_map(|a| {
            let (strategy, phase, _) = a.rollout?;
            let mut l = base(a);
            l.push(("strategy", strategy.into()));
            l.push(("phase", phase.into()));
            Some((l, 1i64))
        }),
    )?;
    encode_gauges(
        encoder,
        "rollout_canary_weight",
        "Percentage of traffic the canary of an Application's rollout gets (0 when none runs)",
        apps.iter().filter_map(|a| {
            let (_, _, weight) = a.rollout?;
            Some((base(a), i64::from(weight.unwrap_or(0))))
        }),
    )
}

/// The Applications each ApplicationSet generated, and how many of them are ready.
fn encode_application_sets(
    apps: &[AppSnapshot],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    // Counted from the Applications themselves: a set's count is what exists, whatever its
    // status says.
    let mut per_set: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
    for a in apps {
        if let Some(set) = &a.application_set {
            let entry = per_set.entry((a.namespace.clone(), set.clone())).or_default();
            entry.0 += 1;
            entry.1 += i64::from(a.sync == SyncStatusCode::Synced && a.health == HealthStatusCode::Healthy);
        }
    }
    encode_gauges(
        encoder,
        "applicationset_applications",
        "Applications an ApplicationSet generated",
        per_set
            .iter()
            .map(|((ns, name), (all, _))| (vec![("namespace", ns.clone()), ("name", name.clone())], *all)),
    )?;
    encode_gauges(
        encoder,
        "applicationset_applications_ready",
        "Applications an ApplicationSet generated that are Synced and Healthy",
        per_set.iter().map(|((ns, name), (_, ready))| {
            (vec![("namespace", ns.clone()), ("name", name.clone())], *ready)
        }),
    )
}

fn rollout_phase_word(phase: RolloutPhase) -> &'static str {
    match phase {
        RolloutPhase::Idle => "Idle",
        RolloutPhase::Progressing => "Progressing",
        RolloutPhase::Paused => "Paused",
        RolloutPhase::Analyzing => "Analyzing",
        RolloutPhase::Promoting => "Promoting",
        RolloutPhase::Completed => "Completed",
        RolloutPhase::Aborted => "Aborted",
    }
}

fn sync_word(code: SyncStatusCode) -> &'static str {
    SYNC_CODES.iter().find(|(c, _)| *c == code).map(|(_, w)| *w).unwrap_or("Unknown")
}

fn health_word(code: HealthStatusCode) -> &'static str {
    HEALTH_CODES.iter().find(|(c, _)| *c == code).map(|(_, w)| *w).unwrap_or("Unknown")
}

// ---------------------------------------------------------------------------------------------
// API requests, counted by a tower layer

#[derive(Clone)]
struct CountRequests {
    metrics: Arc<Metrics>,
    cluster: Arc<str>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, metrics: self.metrics.clone(), cluster: self.cluster.clone() }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
    cluster: Arc<str>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verb = verb(req.method(), req.uri());
        let metrics = self.metrics.clone();
        let cluster = self.cluster.clone();
        self.inner
            .call(req)
            .map(move |answer| {
                let result = match &answer {
                    Ok(res) => status_class(res.status().as_u16()),
                    Err(_) => "error",
                };
                metrics
                    .api_requests
                    .get_or_create(&ApiLabels { verb, result, cluster: cluster.to_string() })
                    .inc();
                answer
            })
            .boxed()
    }
}

/// `config` with ferry's User-Agent (kube's client sends none): the API server names the field
/// manager of a write without one after it (the finalizer patch shows as `ferry`, not
/// `unknown`, in an Application's managedFields), and audit logs name ferry.
fn identified(mut config: Config) -> Config {
    let user_agent = http::header::USER_AGENT;
    if !config.headers.iter().any(|(name, _)| *name == user_agent) {
        let value = http::HeaderValue::from_static(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        config.headers.push((user_agent, value));
    }
    config
}

/// The Kubernetes verb of a request, as the API server's audit log names it.
fn verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    let query = uri.query().unwrap_or("");
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET => {
            // A collection: /api/v1/namespaces/x/configmaps (even segment count after the
            // group/version prefix) is a list; a named object is a get. Discovery paths are gets.
            if is_collection(uri.path()) { "list" } else { "get" }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether a GET path names a collection of a resource (list) rather than one object.
fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Strip /api/v1 or /apis/group/version.
    let rest = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => return false,
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    rest.len() == 1
}

fn status_class(code: u16) -> &'static str {
    match code {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_name_ferry_as_their_user_agent_unless_the_config_names_one() {
        let config = || Config::new("https://127.0.0.1:6443".parse().unwrap());
        let agents = |c: &Config| -> Vec<String> {
            let agent = http::header::USER_AGENT;
            c.headers
                .iter()
                .filter(|(n, _)| *n == agent)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(agents(&identified(config())), [concat!("ferry/", env!("CARGO_PKG_VERSION"))]);
        let mut own = config();
        own.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static("mine")));
        assert_eq!(agents(&identified(own)), ["mine"]);
    }

    #[test]
    fn verbs_follow_the_api_servers_naming() {
        let get = http::Method::GET;
        let v = |m: &http::Method, u: &str| verb(m, &u.parse().unwrap());
        assert_eq!(v(&get, "/api/v1/namespaces/a/configmaps"), "list");
        assert_eq!(v(&get, "/api/v1/namespaces/a/configmaps/b"), "get");
        assert_eq!(v(&get, "/api/v1/namespaces"), "list");
        assert_eq!(v(&get, "/api/v1/namespaces/a"), "get");
        assert_eq!(v(&get, "/apis/apps/v1/deployments?labelSelector=x"), "list");
        assert_eq!(v(&get, "/apis/apps/v1/namespaces/a/deployments?watch=true&x=1"), "watch");
        assert_eq!(v(&get, "/apis/apps/v1"), "get");
        assert_eq!(
            v(&http::Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/a/applications/b/status"),
            "patch"
        );
        assert_eq!(v(&http::Method::DELETE, "/api/v1/namespaces/a/configmaps/b"), "delete");
    }

    fn app(status: serde_json::Value) -> Application {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "team"},
            "spec": {"source": {"repoURL": "https://bob:hunter2@git.example.com/deploy.git",
                                "ref": {"branch": "main"}, "path": "apps/shop"}},
            "status": status,
        }))
        .unwrap()
    }

    fn scrape(apps: &[AppSnapshot]) -> String {
        #[derive(Debug)]
        struct Fixed(Vec<AppSnapshot>);
        impl Collector for Fixed {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                encode_app_state(&self.0, &mut encoder)
            }
        }
        let mut registry = Registry::with_prefix("ferry");
        registry.register_collector(Box::new(Fixed(apps.to_vec())));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn state_gauges_are_one_hot_and_never_show_credentials() {
        let a = app(serde_json::json!({
            "sync": {"status": "Synced", "revision": format!("main@sha1:{}", "a".repeat(40)), "shortRevision": "main@aaaaaaa"},
            "health": {"status": "Degraded", "message": "Deployment team/web: 0/2 ready"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "HealthCheckFailed", "message": "x",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }));
        let text = scrape(&[AppSnapshot::of(&a)]);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains(r#"ferry_app_info{namespace="team",name="shop",repo="https://git.example.com/deploy.git",path="apps/shop",revision="main@aaaaaaa",sync_status="Synced",health_status="Degraded",suspended="false",cluster="in-cluster"} 1"#), "{text}");
        assert!(
            text.contains(r#"ferry_app_sync_status{namespace="team",name="shop",status="Synced"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_app_sync_status{namespace="team",name="shop",status="OutOfSync"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_app_health_status{namespace="team",name="shop",status="Degraded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_app_health_status{namespace="team",name="shop",status="Healthy"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ferry_app_condition{namespace="team",name="shop",type="Ready",status="False"} 1"#
            ),
            "{text}"
        );
        let ones =
            text.lines().filter(|l| l.starts_with("ferry_app_health_status") && l.ends_with(" 1")).count();
        assert_eq!(ones, 1, "{text}");
    }

    #[test]
    fn per_app_series_go_when_the_application_is_forgotten() {
        let m = Metrics::new();
        let app = AppRef { namespace: "team".into(), name: "shop".into() };
        m.track(&app);
        m.synced(&app, true);
        m.deployed(&app, 1_700_000_000.0, Some(Duration::from_secs(90)));
        let text = m.encode();
        assert!(
            text.contains(r#"ferry_deployments_total{namespace="team",name="shop",result="succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_deployments_total{namespace="team",name="shop",result="rolled_back"} 0"#),
            "{text}"
        );
        assert!(text.contains("ferry_lead_time_seconds_count 1"), "{text}");
        m.forget(&app);
        let text = m.encode();
        assert!(!text.contains(r#"name="shop""#), "{text}");
    }
}
