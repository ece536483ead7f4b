//! What every reconcile shares: clients, caches, discovery, watches and per-Application memory.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    Client, Config,
    discovery::Discovery,
    runtime::{events::Reporter, reflector::Store},
};
use tokio::sync::RwLock;

use super::{claims::Claims, memory::AppMemory, watches::Watches};
use crate::{
    api::Application,
    apply::{AppRef, ApplyError},
    metrics::Metrics,
    render::{DiscoveredScopes, RenderCache, RenderOptions},
    rollout::prometheus::Prometheus,
    source::GitCache,
};

/// Settings of `ferry run` that reconciles need.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Timeout of each API call.
    pub api_timeout: Duration,
    /// Applications without `spec.serviceAccountName` are refused.
    pub require_service_account: bool,
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
    /// Namespaces whose Applications others may follow with `ref.fromApplication`, besides
    /// their own (`--promotion-namespaces`; `*` for any).
    pub promotion_namespaces: Vec<String>,
}

/// Shared state of the controller.
pub struct Context {
    /// ferry's own identity: watches, status, events, Secrets, discovery.
    pub client: Client,
    /// The configuration `client` was built from, for impersonating clients.
    config: Config,
    pub options: SyncOptions,
    pub git: GitCache,
    pub renders: RenderCache,
    /// Who Events say they come from.
    pub reporter: Reporter,
    pub watches: Watches,
    pub claims: Claims,
    pub metrics: Arc<Metrics>,
    /// Every Application ferry reconciles, as the controller's watch sees them.
    pub apps: Store<Application>,
    /// The client of rollout analyses; why there is none when the TLS roots could not be loaded.
    pub prometheus: Result<Prometheus, String>,
    discovery: RwLock<Discovered>,
    impersonating: Mutex<HashMap<String, Client>>,
    memory: Mutex<HashMap<AppRef, Arc<tokio::sync::Mutex<AppMemory>>>>,
}

impl Context {
    // Every shared piece is built once in `run` and handed over here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        config: Config,
        options: SyncOptions,
        git: GitCache,
        watches: Watches,
        discovery: Discovery,
        metrics: Arc<Metrics>,
        apps: Store<Application>,
    ) -> Context {
        let prometheus = Prometheus::new(options.api_timeout)
            .map_err(|e| format!("no HTTP client for Prometheus (loading the system's TLS roots: {e})"));
        let render_cache_bytes = options.render_cache_bytes;
        Context {
            client,
            config,
            prometheus,
            options,
            git,
            renders: RenderCache::default().with_max_bytes(render_cache_bytes),
            reporter: Reporter { controller: "ferry".into(), instance: std::env::var("HOSTNAME").ok() },
            watches,
            claims: Claims::default(),
            metrics,
            apps,
            discovery: RwLock::new(Discovered::new(discovery, Instant::now())),
            impersonating: Mutex::new(HashMap::new()),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The client an Application's reads and writes go through: ferry's own, or one that
    /// impersonates `system:serviceaccount:<namespace>:<service_account>`.
    pub fn client_for(&self, namespace: &str, service_account: Option<&str>) -> Result<Client, String> {
        let Some(sa) = service_account else { return Ok(self.client.clone()) };
        let user = format!("system:serviceaccount:{namespace}:{sa}");
        let mut clients = self.impersonating.lock().expect("client cache lock");
        if let Some(client) = clients.get(&user) {
            return Ok(client.clone());
        }
        let mut config = self.config.clone();
        // No Impersonate-Group: for a ServiceAccount user the API server adds its groups
        // (system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated) itself, so
        // ferry needs `impersonate` on serviceaccounts only, never on groups (which, being
        // cluster-scoped and unnamed in advance, would need a rule wide enough to escalate).
        config.auth_info.impersonate = Some(user.clone());
        let client =
            self.metrics.client(config).map_err(|e| format!("cannot build a client for {user}: {e}"))?;
        clients.insert(user, client.clone());
        Ok(client)
    }

    /// The latest discovery.
    pub async fn discovery(&self) -> Arc<Discovery> {
        self.discovery.read().await.discovery.clone()
    }

    /// The scope of every served kind, from the latest discovery, for rendering.
    pub async fn scopes(&self) -> Arc<DiscoveredScopes> {
        self.discovery.read().await.scopes.clone()
    }

    /// Re-runs discovery unless someone did so after `not_before` (many reconciles asking at
    /// once share one run). Pass the moment from which the answer must be fresh: after CRDs
    /// became Established, that moment.
    pub async fn refresh_discovery(&self, not_before: Instant) -> Result<Arc<Discovery>, ApplyError> {
        let mut guard = self.discovery.write().await;
        if guard.taken > not_before {
            return Ok(guard.discovery.clone());
        }
        let taken = Instant::now();
        let discovery =
            tokio::time::timeout(self.options.api_timeout * 3, Discovery::new(self.client.clone()).run())
                .await
                .map_err(|_| ApplyError::Discovery("no answer in time".into()))?
                .map_err(|e| ApplyError::Discovery(e.to_string()))?;
        *guard = Discovered::new(discovery, taken);
        Ok(guard.discovery.clone())
    }

    /// What ferry remembers of one Application between reconciles.
    pub fn memory(&self, app: &AppRef) -> Arc<tokio::sync::Mutex<AppMemory>> {
        self.memory.lock().expect("memory lock").entry(app.clone()).or_default().clone()
    }

    /// Forgets an Application (deleted).
    pub fn forget(&self, app: &AppRef) {
        self.memory.lock().expect("memory lock").remove(app);
    }
}

/// A discovery and what is derived from it once, rather than on every reconcile.
struct Discovered {
    discovery: Arc<Discovery>,
    scopes: Arc<DiscoveredScopes>,
    taken: Instant,
}

impl Discovered {
    fn new(discovery: Discovery, taken: Instant) -> Discovered {
        let scopes = Arc::new(DiscoveredScopes::from_discovery(&discovery));
        Discovered { discovery: Arc::new(discovery), scopes, taken }
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
