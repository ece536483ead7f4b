//! What every reconcile shares: clients, caches, discovery, watches and per-Application memory.
//! Start-up builds it once ([`Context::new`]) from a [`Connection`] to the cluster, the
//! [`SyncOptions`] and the [`Caches`].

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Client, Config, ResourceExt,
    discovery::Discovery,
    runtime::{events::Reporter, reflector::Store},
};

use super::{
    claims::Claims,
    clusters::{ClusterId, ClusterLink, Clusters, LinkParts},
    memory::AppMemory,
    watches::Watches,
};
use crate::{
    api::{Application, TenantPolicy},
    apply::AppRef,
    artifact::{fetch::Artifacts, helm_repo::HelmRepoOptions, oci::OciFetcherOptions},
    forge::ForgeClient,
    health::{ExprCache, HealthChecks},
    locks::locked,
    metrics::Metrics,
    notify::Notifications,
    render::{RenderCache, RenderOptions},
    rollout::prometheus::Prometheus,
    source::{GitCache, Snapshot},
    tenancy::{Lockdown, Tenancy},
};

/// Settings of `ferry run` that reconciles need.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Timeout of each API call.
    pub api_timeout: Duration,
    /// The flags of the tenancy lockdown (`--require-service-account`, `--allow-file-urls`, ...).
    pub lockdown: Lockdown,
    /// Progressing longer than this is Degraded.
    pub health_timeout: Duration,
    /// Longest an ls-remote is shared between Applications on the same repository (capped
    /// per Application at half its interval).
    pub git_ref_cache: Duration,
    /// Objects applied at once within a phase.
    pub apply_parallelism: usize,
    pub render: RenderOptions,
    /// Bytes of finished renders kept for reuse (`--render-cache-bytes`).
    pub render_cache_bytes: u64,
    /// Prometheus for analyses that name no address (`--prometheus-url`).
    pub prometheus_url: Option<String>,
    /// Addresses analyses may name besides `prometheus_url` (`--allowed-prometheus-urls`;
    /// empty: any).
    pub allowed_prometheus_urls: Vec<String>,
    /// Limits of Helm repository requests (`--max-chart-index-bytes`, ...).
    pub charts: HelmRepoOptions,
    /// Limits of OCI registry requests.
    pub oci: OciFetcherOptions,
    /// Namespaces whose Applications others may follow with `ref.fromApplication` or depend on
    /// with `dependsOn`, besides their own (`--promotion-namespaces`; `*` for any).
    pub promotion_namespaces: Vec<String>,
    /// The cluster-wide custom health checks (`--health-checks`), compiled at start-up.
    pub health_checks: HealthChecks,
}

/// Shared state of the controller.
pub struct Context {
    /// ferry's own identity in the cluster it runs in: status, events, Secrets.
    pub client: Client,
    /// The cluster ferry runs in: its clients, discovery and watches of managed objects.
    pub local: Arc<ClusterLink>,
    /// The remote clusters Applications deploy to.
    pub clusters: Clusters,
    pub options: SyncOptions,
    pub git: GitCache,
    /// Helm repositories, OCI registries and the store of what they gave, unpacked once per
    /// digest (`<cache>/artifacts`), shared by every Application.
    pub artifacts: Artifacts,
    pub renders: RenderCache,
    /// Who Events say they come from.
    pub reporter: Reporter,
    pub claims: Claims,
    pub metrics: Arc<Metrics>,
    /// Every Application ferry reconciles, as the controller's watch sees them.
    pub apps: Store<Application>,
    /// The TenantPolicies of `--policy-namespace`; `None` when ferry reads none.
    pub policies: Option<Store<TenantPolicy>>,
    /// The client of rollout analyses; why there is none when the TLS roots could not be loaded.
    pub prometheus: Result<Prometheus, String>,
    /// The client of forge APIs (pull requests of reverts); why there is none when the TLS
    /// roots could not be loaded.
    pub forge: Result<ForgeClient, String>,
    /// The CEL expressions of `spec.healthChecks`, compiled once per distinct expression.
    pub health_exprs: ExprCache,
    /// Where Events and status changes become notifications (disabled until start-up starts
    /// them: no Notifier CRD, or a context without a runtime).
    pub notifications: Notifications,
    memory: Mutex<HashMap<AppRef, Arc<tokio::sync::Mutex<AppMemory>>>>,
    /// The snapshot each Application syncs from now (its tree, and its chart when it has
    /// one), which the caches' collections keep.
    snapshots: Mutex<HashMap<AppRef, Vec<PathBuf>>>,
}

/// The connection to the cluster a [`Context`] starts from: ferry's own client, the
/// configuration it was built from, the first API discovery, and the metrics that count the
/// client's requests.
pub struct Connection {
    pub client: Client,
    pub config: Config,
    pub discovery: Discovery,
    /// The API server's version (`v1.36.3`), for helm's `.Capabilities.KubeVersion`.
    pub kubernetes_version: String,
    pub metrics: Arc<Metrics>,
}

/// The caches a [`Context`] starts with.
pub struct Caches {
    pub git: GitCache,
    /// The watches of managed objects.
    pub watches: Watches,
    /// The Application cache (the controller's watch).
    pub apps: Store<Application>,
    /// The remote clusters' registry (with the Cluster cache, when the CRD is installed).
    pub clusters: Clusters,
}

impl Context {
    /// The context, from what `ferry run` built at start-up.
    pub fn new(connection: Connection, options: SyncOptions, caches: Caches) -> Context {
        let Connection { client, config, discovery, kubernetes_version, metrics } = connection;
        let Caches { git, watches, apps, clusters } = caches;
        let prometheus = Prometheus::new(options.api_timeout)
            .map_err(|e| format!("no HTTP client for Prometheus (loading the system's TLS roots: {e})"));
        let forge = ForgeClient::new(options.api_timeout)
            .map_err(|e| format!("no HTTP client for forges (loading the system's TLS roots: {e})"));
        let render_cache_bytes = options.render_cache_bytes;
        let artifacts = Artifacts::new(git.root().join("artifacts"), options.charts, options.oci);
        let api_timeout = options.api_timeout;
        let local = LinkParts {
            id: ClusterId::Local,
            client: client.clone(),
            config,
            breaker: None,
            watches,
            discovery,
            kubernetes_version,
            fingerprint: 0,
        };
        Context {
            client,
            local: Arc::new(ClusterLink::new(local, metrics.clone(), api_timeout)),
            clusters,
            prometheus,
            forge,
            health_exprs: ExprCache::default(),
            options,
            git,
            artifacts,
            renders: RenderCache::default().with_max_bytes(render_cache_bytes),
            reporter: Reporter { controller: "ferry".into(), instance: std::env::var("HOSTNAME").ok() },
            claims: Claims::default(),
            metrics,
            apps,
            policies: None,
            notifications: Notifications::disabled(),
            memory: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    /// The lockdown for the Applications of `namespace`: the flags and the policies governing it.
    pub fn tenancy(&self, namespace: &str) -> Tenancy {
        let policies = self.policies.as_ref().map(Store::state).unwrap_or_default();
        Tenancy::new(namespace, policies, &self.options.lockdown)
    }

    /// What ferry remembers of one Application between reconciles.
    pub fn memory(&self, app: &AppRef) -> Arc<tokio::sync::Mutex<AppMemory>> {
        locked(&self.memory).entry(app.clone()).or_default().clone()
    }

    /// Forgets an Application (deleted).
    pub fn forget(&self, app: &AppRef) {
        locked(&self.memory).remove(app);
        locked(&self.snapshots).remove(app);
        self.notifications.forget(&app.namespace, &app.name);
    }

    /// Records the snapshot `app` syncs from, so the cache keeps it.
    pub fn syncs_from(&self, app: &AppRef, snapshot: &Snapshot) {
        let paths: Vec<PathBuf> =
            std::iter::once(snapshot.root.clone()).chain(snapshot.chart.clone()).collect();
        let mut snapshots = locked(&self.snapshots);
        if snapshots.get(app).is_none_or(|s| *s != paths) {
            snapshots.insert(app.clone(), paths);
        }
    }

    /// Records more directories `app` renders from (its chart's dependencies), kept by the
    /// collection until its source is resolved again.
    pub fn uses_too(&self, app: &AppRef, dirs: impl IntoIterator<Item = PathBuf>) {
        let mut snapshots = locked(&self.snapshots);
        let used = snapshots.entry(app.clone()).or_default();
        for dir in dirs {
            if !used.contains(&dir) {
                used.push(dir);
            }
        }
    }

    fn snapshots_in_use(&self) -> HashSet<PathBuf> {
        locked(&self.snapshots).values().flatten().cloned().collect()
    }

    /// Drops what is kept per Application for Applications that are gone (the watch no longer
    /// has them): their memory, and impersonating clients no Application names any more.
    fn trim(&self) {
        let apps = self.apps.state();
        let live: HashSet<AppRef> = apps
            .iter()
            .map(|a| AppRef { namespace: a.namespace().unwrap_or_default(), name: a.name_any() })
            .collect();
        // The ServiceAccount each Application acts as: its own, or the default the tenancy gives.
        let users: HashSet<String> = apps
            .iter()
            .filter_map(|a| {
                let ns = a.namespace().unwrap_or_default();
                let sa = self.tenancy(&ns).service_account(a).ok().flatten()?;
                Some(format!("system:serviceaccount:{ns}:{sa}"))
            })
            .collect();
        locked(&self.memory).retain(|app, _| live.contains(app));
        locked(&self.snapshots).retain(|app, _| live.contains(app));
        self.local.keep_users(&users);
        let clusters: HashSet<(String, String)> = apps
            .iter()
            .filter_map(|a| Some((a.namespace()?, crate::api::destination_cluster(a)?.to_string())))
            .collect();
        self.clusters.keep(&clusters);
        for (_, link) in self.clusters.links() {
            link.keep_users(&users);
        }
    }
}

/// The maps behind these locks hold plain values that no panic leaves half-written, so a
/// poisoned lock is used as it is: one panicking task must not make every reconcile panic.
/// Every `interval`: drops the state of Applications that are gone, then collects the Git cache
/// (on the blocking pool), keeping every Application's current snapshot.
pub async fn collect_garbage(ctx: Arc<Context>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        ctx.trim();
        let in_use = Arc::new(ctx.snapshots_in_use());
        let (git, used) = (ctx.git.clone(), in_use.clone());
        match tokio::task::spawn_blocking(move || git.collect_garbage(&used)).await {
            Ok(collected) => ctx.metrics.git_cache_collected(collected.bytes, collected.deleted),
            Err(e) => tracing::warn!(error = %e, "the Git cache collection failed"),
        }
        let (store, used) = (ctx.artifacts.store.clone(), in_use.clone());
        match tokio::task::spawn_blocking(move || store.collect_garbage(&used)).await {
            Ok(deleted) if deleted > 0 => tracing::info!(deleted, "unused charts and OCI artifacts removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the artifact store's collection failed"),
        }
    }
}

/// How notifications read a Notifier's Secret: as its ServiceAccount (or the default an
/// Application of its namespace would act as), through the local cluster's impersonating
/// clients, under the tenancy's rules.
pub struct NotifierIdentity {
    pub local: Arc<ClusterLink>,
    pub policies: Option<Store<TenantPolicy>>,
    pub lockdown: Lockdown,
}

impl crate::notify::Impersonation for NotifierIdentity {
    fn client_for(
        &self,
        namespace: &str,
        named: Option<&str>,
    ) -> Result<Client, crate::notify::ImpersonationError> {
        let policies = self.policies.as_ref().map(Store::state).unwrap_or_default();
        let sa = Tenancy::new(namespace, policies, &self.lockdown).acting_as(named)?;
        self.local
            .client_for(namespace, sa.as_deref())
            .map_err(|e| crate::notify::ImpersonationError::Client(Box::new(e)))
    }
}

/// Where the Git cache lives by default: `~/.cache/ferry/run`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ferry/run")
}
