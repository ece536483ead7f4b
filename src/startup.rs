//! Start-up wiring of `ferry run`: the one place that depends on both controllers (Applications
//! in [`crate::controller`], ApplicationSets in [`crate::appset`]).
//!
//! [`run`] reads as its steps. `Replica::start` checks the flags, connects to the cluster and
//! checks it (`connect`, [`preflight`], API discovery), opens the Git cache and the HTTP port,
//! joins the leader election (`Election`), builds the shared [`Context`] and starts what runs on
//! every replica: the Application and TenantPolicy caches, the Git cache's collection, the HTTP
//! server. `Replica::run` waits to lead, then runs both controllers (`Controllers`) until a
//! signal or until the Lease is lost, and stops everything (`Replica::finish`).
//!
//! Failures: [`PreflightError`] for the cluster's checks, [`StartupError`] for the rest of
//! start-up, and [`RunError`]'s own variants for how leading can end (the election ended
//! first, the Lease was lost).

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use kube::{
    Api, Client, Config, ResourceExt,
    discovery::Discovery,
    runtime::{
        Controller, WatchStreamExt, controller,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tokio::{
    net::TcpListener,
    signal::unix::{Signal, SignalKind, signal},
    sync::{
        mpsc::{UnboundedReceiver, UnboundedSender},
        oneshot,
    },
    task::JoinHandle,
};
use tracing::info;

use crate::{
    api::{
        APPLICATION_SET_LABEL, Application, ApplicationSet, Cluster, HealthCheckExpr, ImagePolicy,
        RECONCILE_AT_ANNOTATION, ROLLOUT_REQUEST_ANNOTATION, TenantPolicy,
    },
    appset,
    artifact::{helm_repo::HelmRepoOptions, oci::OciFetcherOptions},
    controller::{
        Caches, Clusters, Connection, Context, Dependants, Elector, Followers, LeaderConfig,
        LeaderConfigError, Leadership, NotifierIdentity, PreflightError, Role, Shard, SyncOptions, Watches,
        cluster_status,
        clusters::{self, ClusterId},
        collect_garbage, preflight, reconcile,
    },
    health::{ExprCache, HealthChecks, InvalidHealthCheck},
    images,
    metrics::Metrics,
    notify::{self, Notifications},
    render::RenderOptions,
    server::{BadSecretName, Readiness, Server, ServerState, WebhookSecret, Webhooks},
    source::{GitCache, GitCacheOptions, Retention, SourceError},
    tenancy::Lockdown,
};
/// How often a Notifier's status gets this replica's counts, at most.
const NOTIFIER_STATUS_INTERVAL: Duration = Duration::from_secs(60);
/// How long a shutdown waits for reconciles in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a shutdown waits for HTTP requests in progress (after the reconciles).
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options of `ferry run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long each API call may take.
    pub api_timeout: Duration,
    /// Only reconcile Applications in this namespace.
    pub namespace: Option<String>,
    /// Only watch managed objects in these namespaces (RBAC limited to Roles there).
    pub managed_namespaces: Option<Vec<String>>,
    /// The Git cache directory.
    pub cache_dir: PathBuf,
    /// What the Git cache keeps (`--cache-unused-after`, `--cache-max-size`).
    pub cache_retention: Retention,
    /// How often the Git cache is collected.
    pub cache_gc_interval: Duration,
    /// Applications reconciled at once.
    pub concurrency: u16,
    /// The tenancy flags: service accounts, file:// URLs, cross-namespace references.
    pub lockdown: Lockdown,
    /// Where ferry reads TenantPolicies from (`--policy-namespace`); `None`: it reads none.
    pub policy_namespace: Option<String>,
    pub health_timeout: Duration,
    /// The YAML file of cluster-wide custom health checks (`--health-checks`).
    pub health_checks: Option<PathBuf>,
    /// How long Applications on one repository share an ls-remote (`--git-ref-cache-seconds`).
    pub git_ref_cache: Duration,
    pub kustomize: PathBuf,
    pub helm: PathBuf,
    /// Where the HTTP server (metrics, health, webhooks) listens, e.g. `0.0.0.0:8080`.
    pub http_address: String,
    /// `[NAMESPACE/]NAME` of the Secret with the webhook keys; `None` turns webhooks off.
    pub webhook_secret: Option<String>,
    /// Prometheus for rollout analyses that name no address.
    pub prometheus_url: Option<String>,
    /// The only Prometheus addresses analyses may name besides `prometheus_url` (empty: any).
    pub allowed_prometheus_urls: Vec<String>,
    /// This process's name in Leases and Events.
    pub identity: String,
    /// Leader election; `None`: this process always reconciles.
    pub leader: Option<LeaderConfig>,
    /// Which Applications this process reconciles.
    pub shard: Shard,
    /// Namespaces other than their own whose Applications may be followed (`*`: any).
    pub promotion_namespaces: Vec<String>,
    /// Bounds of one render and of the render cache.
    pub render_limits: RenderLimits,
}

/// How large a render may be, and how much of them is kept (`--max-render-bytes`,
/// `--max-render-objects`, `--render-cache-bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderLimits {
    pub max_bytes: u64,
    pub max_objects: usize,
    pub cache_bytes: u64,
    /// Largest Helm repository index (`--max-chart-index-bytes`).
    pub max_index_bytes: u64,
}

/// Why `ferry run` ended with an error: it could not start, or it stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The signal handlers, the kubeconfig or the cluster's checks.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The election stopped before this process led.
    #[error("the leader election ended before this process led")]
    ElectionEnded,
    /// Another replica may lead now: this one stopped reconciling at once.
    #[error("lost the leader-election lease; stopped reconciling (a restart joins as a standby)")]
    LeaseLost,
}

/// What ferry needs besides the cluster's checks: flags that work together, API discovery, its
/// Git cache directory and its HTTP port.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    LeaderElection(#[from] LeaderConfigError),
    #[error(transparent)]
    WebhookSecret(#[from] BadSecretName),
    #[error("API discovery at {url} did not finish in time")]
    DiscoveryTimeout { url: String },
    #[error("API discovery at {url} failed: {source}")]
    Discovery { url: String, source: kube::Error },
    #[error("cannot use {} as the Git cache ({source}); pass a writable directory with --cache-dir", dir.display())]
    GitCache { dir: PathBuf, source: Box<SourceError> },
    #[error("cannot listen on {address} ({source}); choose another address with --http-address")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot read the address of the HTTP listener on {address}: {source}")]
    ListenerAddress { address: String, source: std::io::Error },
    #[error("cannot read --health-checks {}: {source}", path.display())]
    HealthChecksFile { path: PathBuf, source: std::io::Error },
    #[error("--health-checks {}: {message}; it holds a YAML list of checks, each {{apiVersion, kind, current, inProgress, failed}}", path.display())]
    HealthChecksYaml { path: PathBuf, message: String },
    #[error(transparent)]
    HealthChecks(#[from] InvalidHealthCheck),
}

/// Runs the controller until SIGINT or SIGTERM, or until it loses its leader-election Lease
/// (then it stops reconciling at once and returns an error, so the process exits and restarts
/// as a standby).
pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let mut shutdown = Shutdown::install().map_err(|source| PreflightError::Signals { source })?;
    let Some((replica, triggers)) = Replica::start(opts, &mut shutdown).await? else {
        info!("shutting down before start-up finished");
        return Ok(());
    };
    replica.run(triggers, &mut shutdown).await
}

/// A started ferry: what runs on every replica, leader or standby (the caches, the HTTP server,
/// the election, the Git cache's collection), and what it needs to lead.
struct Replica {
    opts: RunOptions,
    ctx: Arc<Context>,
    readiness: Readiness,
    server: Server,
    election: Election,
    /// The Application cache's watch.
    app_cache: JoinHandle<()>,
    /// The TenantPolicy and Cluster caches' watches (when their CRDs are installed), and the
    /// remote clusters' upkeep.
    caches: Vec<JoinHandle<()>>,
    /// The Git cache's collection.
    collector: JoinHandle<()>,
    /// Whether the cluster serves ApplicationSets (their CRD is optional).
    sets_served: bool,
    /// Whether the cluster serves ImagePolicies (their CRD is optional).
    images_served: bool,
}

impl Replica {
    /// Start-up, in order: the flags are checked; ferry connects to the cluster and checks it;
    /// opens the Git cache and the HTTP port; joins the election; builds the shared [`Context`];
    /// starts the caches and the HTTP server. `None`: a signal came before the cluster answered.
    async fn start(
        opts: RunOptions,
        shutdown: &mut Shutdown,
    ) -> Result<Option<(Replica, Triggers)>, RunError> {
        let webhook_secret = check_options(&opts)?;
        let health_checks = load_health_checks(opts.health_checks.as_deref())?;
        let Some(connected) = connect(&opts, shutdown).await? else { return Ok(None) };
        let git = open_git_cache(&opts)?;
        let (listener, http_address) = listen(&opts.http_address).await?;
        let election = Election::start(&connected.connection.client, &opts);
        let triggers = Triggers::new();
        let sync = sync_options(&opts, health_checks);
        let (ctx, apps_writer, mut caches) =
            shared_context(&opts, sync, connected.connection, git, &triggers);
        caches.push(tokio::spawn(cluster_status::maintain(ctx.clone(), election.leadership.clone())));
        let collector = tokio::spawn(collect_garbage(ctx.clone(), opts.cache_gc_interval));
        export_app_metrics(&ctx, &election.leadership, opts.shard);
        let readiness = Readiness::new("waiting for the Application cache to sync");
        let elected = opts.leader.is_some();
        tokio::spawn(report_role(
            election.leadership.clone(),
            readiness.clone(),
            ctx.metrics.clone(),
            elected,
        ));
        tokio::spawn(become_ready(readiness.clone(), triggers.apps_synced.clone(), webhook_secret.clone()));
        let webhooks = webhook_secret.map(|secret| start_webhooks(secret, &ctx));
        let webhooks_on = webhooks.as_ref().map(|w| w.secret.describe());
        let state = ServerState { metrics: ctx.metrics.clone(), readiness: readiness.clone(), webhooks };
        let server = Server::spawn(listener, state);
        let app_cache = tokio::spawn(watch_apps(&opts, &ctx, apps_writer, &triggers));
        info!(
            api_server = %connected.url,
            kubernetes_version = %connected.kubernetes_version,
            namespace = opts.namespace.as_deref().unwrap_or("all namespaces"),
            managed_namespaces = opts.managed_namespaces.as_ref().map(|n| n.join(",")).as_deref().unwrap_or("all"),
            http_address = %http_address,
            webhook_secret = webhooks_on.as_deref().unwrap_or("none (webhooks off)"),
            identity = %opts.identity,
            leader_election = election.lease().unwrap_or("off"),
            shard = %format_args!("{}/{}", opts.shard.index, opts.shard.count),
            "ferry is ready: connected to the API server and the Application CRD is installed"
        );
        let (sets_served, images_served) = (connected.sets_served, connected.images_served);
        let replica = Replica {
            opts,
            ctx,
            readiness,
            server,
            election,
            app_cache,
            caches,
            collector,
            sets_served,
            images_served,
        };
        Ok(Some((replica, triggers)))
    }

    /// Waits to lead (a standby serves metrics, /readyz and webhooks meanwhile), then runs both
    /// controllers until a signal or until the Lease is lost; then stops everything.
    async fn run(self, triggers: Triggers, shutdown: &mut Shutdown) -> Result<(), RunError> {
        match self.wait_to_lead(shutdown).await {
            Ok(true) => {}
            Ok(false) => {
                self.finish().await;
                return Ok(());
            }
            Err(e) => {
                self.finish().await;
                return Err(e);
            }
        }
        if self.opts.leader.is_some() {
            info!(identity = %self.opts.identity, "leading: reconciling Applications");
        }
        let triggered = triggers.open(&self.ctx.apps, self.opts.shard);
        let served = Served { sets: self.sets_served, images: self.images_served };
        let mut controllers = Controllers::start(&self.ctx, &self.opts, triggered, served);
        let lost = controllers.run(&self.election.leadership, &self.readiness, shutdown).await;
        self.collector.abort();
        if lost {
            // Another replica may lead from now on: no write of ours may follow.
            controllers.abandon();
            tracing::error!(
                "lost the leader-election lease: stopped reconciling; exiting so a restart joins as a standby"
            );
            self.finish().await;
            return Err(RunError::LeaseLost);
        }
        self.finish().await;
        Ok(())
    }

    /// `Ok(true)` once this process leads and knows every TenantPolicy (an empty policy cache
    /// would allow everything); `Ok(false)` when a signal came first.
    async fn wait_to_lead(&self, shutdown: &mut Shutdown) -> Result<bool, RunError> {
        let leading = tokio::select! {
            leading = self.election.leadership.acquired() => leading,
            _ = shutdown.wait() => {
                info!("shutting down (standby)");
                return Ok(false);
            }
        };
        if !leading {
            return Err(RunError::ElectionEnded);
        }
        if let Some(policies) = self.ctx.policies.clone() {
            tokio::select! {
                _ = policies.wait_until_ready() => {},
                _ = shutdown.wait() => {
                    info!("shutting down before the TenantPolicies were read");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Stops what runs on every replica: /readyz says so, the Lease is released (a standby takes
    /// over at once instead of after the lease duration), the caches stop, and the HTTP server
    /// finishes the requests in progress.
    async fn finish(self) {
        self.readiness.shut_down();
        self.election.stop().await;
        self.app_cache.abort();
        for task in self.caches {
            task.abort();
        }
        self.server.shutdown(HTTP_SHUTDOWN_GRACE).await;
        info!("shut down");
    }
}

/// The flags `clap` cannot check alone: the leader-election timings and the webhook Secret's
/// name (returned, parsed).
fn check_options(opts: &RunOptions) -> Result<Option<WebhookSecret>, StartupError> {
    if let Some(leader) = &opts.leader {
        leader.validate()?;
    }
    let default_namespace = opts.namespace.as_deref().unwrap_or("default");
    let secret = opts.webhook_secret.as_deref().map(|spec| WebhookSecret::parse(spec, default_namespace));
    Ok(secret.transpose()?)
}

/// The cluster as start-up found it.
struct Connected {
    /// The API server's address, as the checks saw it (for the start-up log).
    url: String,
    kubernetes_version: String,
    /// Whether the cluster serves ApplicationSets (their CRD is optional).
    sets_served: bool,
    /// Whether the cluster serves ImagePolicies (their CRD is optional).
    images_served: bool,
    connection: Connection,
}

/// Connects to the cluster of KUBECONFIG (or the in-cluster one), checks that it serves
/// Applications and runs API discovery. `None`: a signal came first.
async fn connect(opts: &RunOptions, shutdown: &mut Shutdown) -> Result<Option<Connected>, RunError> {
    let kubeconfig_env = || std::env::var("KUBECONFIG").ok();
    let config = Config::infer().await.map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let url = config.cluster_url.to_string();
    let metrics = Arc::new(Metrics::new());
    let client =
        metrics.client(config.clone()).map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let checked = async {
        let cluster = preflight(&client, &url, opts.api_timeout, opts.namespace.as_deref()).await?;
        let discovery = discover(&client, &url, opts.api_timeout).await?;
        Ok::<_, RunError>((cluster, discovery))
    };
    let (cluster, discovery) = tokio::select! {
        checked = checked => checked?,
        _ = shutdown.wait() => return Ok(None),
    };
    Ok(Some(Connected {
        url: cluster.url,
        kubernetes_version: cluster.kubernetes_version.clone(),
        sets_served: serves(&discovery, "ApplicationSet"),
        images_served: serves(&discovery, "ImagePolicy"),
        connection: Connection {
            config,
            client,
            metrics,
            discovery,
            kubernetes_version: cluster.kubernetes_version,
        },
    }))
}

/// The first API discovery (later ones are the context's).
async fn discover(client: &Client, url: &str, api_timeout: Duration) -> Result<Discovery, StartupError> {
    tokio::time::timeout(api_timeout * 3, Discovery::new(client.clone()).run())
        .await
        .map_err(|_| StartupError::DiscoveryTimeout { url: url.to_string() })?
        .map_err(|source| StartupError::Discovery { url: url.to_string(), source })
}

/// Whether the cluster serves this kind of ferry.dev/v1alpha1.
fn serves(discovery: &Discovery, kind: &str) -> bool {
    discovery.resolve_gvk(&kube::api::GroupVersionKind::gvk("ferry.dev", "v1alpha1", kind)).is_some()
}

fn open_git_cache(opts: &RunOptions) -> Result<GitCache, StartupError> {
    let cache_options = GitCacheOptions { retention: opts.cache_retention.clone(), ..Default::default() };
    GitCache::new(&opts.cache_dir, cache_options)
        .map_err(|e| StartupError::GitCache { dir: opts.cache_dir.clone(), source: Box::new(e) })
}

/// The HTTP server's listener, and the address it listens on (`--http-address` may ask for port 0).
async fn listen(address: &str) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartupError::Listen { address: address.to_string(), source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartupError::ListenerAddress { address: address.to_string(), source })?;
    Ok((listener, bound))
}

/// The leader election, from start-up until shutdown; without `--leader-elect`, a process that
/// always leads.
struct Election {
    leadership: Leadership,
    /// Ends the campaign (the elector then releases the Lease).
    stop: oneshot::Sender<()>,
    /// The elector's task and its Lease's `namespace/name`.
    elector: Option<(JoinHandle<()>, String)>,
}

impl Election {
    fn start(client: &Client, opts: &RunOptions) -> Election {
        let (stop, stopped) = oneshot::channel::<()>();
        let Some(config) = opts.leader.clone() else {
            return Election { leadership: Leadership::always(), stop, elector: None };
        };
        let lease = format!("{}/{}", config.namespace, config.lease_name);
        let (elector, leadership) = Elector::new(client.clone(), config, opts.api_timeout);
        let task = tokio::spawn(elector.run(async move {
            let _ = stopped.await;
        }));
        Election { leadership, stop, elector: Some((task, lease)) }
    }

    /// The Lease's `namespace/name`, when there is an election.
    fn lease(&self) -> Option<&str> {
        self.elector.as_ref().map(|(_, lease)| lease.as_str())
    }

    /// Ends the campaign and waits (briefly) for the Lease to be released.
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Some((task, _)) = self.elector {
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, task).await;
        }
    }
}

/// How Application changes become reconciles: the channel the controller reads, which forwards
/// nothing until this process leads, and whether the Application cache has synced.
struct Triggers {
    send: UnboundedSender<ObjectRef<Application>>,
    receive: UnboundedReceiver<ObjectRef<Application>>,
    /// On once this process leads.
    forwarding: Arc<AtomicBool>,
    /// Set when the reflector has swapped the first full list into the store. (Not
    /// `Store::wait_until_ready`: its one-shot keeps a single waker, and the controller waits on it.)
    apps_synced: Arc<AtomicBool>,
}

impl Triggers {
    fn new() -> Triggers {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        let forwarding = Arc::new(AtomicBool::new(false));
        Triggers { send, receive, forwarding, apps_synced: Arc::new(AtomicBool::new(false)) }
    }

    /// Starts forwarding: every Application of this shard once the cache is synced, then each
    /// change as it comes. Returns what the controller reads.
    fn open(
        self,
        apps: &Store<Application>,
        shard: Shard,
    ) -> impl Stream<Item = ObjectRef<Application>> + use<> {
        self.forwarding.store(true, Ordering::SeqCst);
        let (all, send, synced) = (apps.clone(), self.send.clone(), self.apps_synced.clone());
        let apps = apps.clone();
        tokio::spawn(async move {
            while !synced.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for app in all.state() {
                let _ = send.send(ObjectRef::from_obj(app.as_ref()));
            }
        });
        futures::stream::unfold(self.receive, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
            .filter(move |r| {
                // By the Application when the cache has it (its destination cluster decides with
                // --shard-by cluster), else by its name.
                let owned = match apps.get(r) {
                    Some(app) => shard.owns_app(&app),
                    None => shard.owns(r.namespace.as_deref().unwrap_or_default(), &r.name),
                };
                std::future::ready(owned)
            })
    }
}

/// The [`Context`] every reconcile shares (with the TenantPolicy cache, when ferry reads
/// TenantPolicies, and that cache's task), and the writer of the Application cache it reads.
fn shared_context(
    opts: &RunOptions,
    sync: SyncOptions,
    connection: Connection,
    git: GitCache,
    triggers: &Triggers,
) -> (Arc<Context>, Writer<Application>, Vec<JoinHandle<()>>) {
    let client = connection.client.clone();
    let namespaces = (opts.namespace.clone(), opts.managed_namespaces.clone());
    let watches = Watches::new(client.clone(), triggers.send.clone(), namespaces.0, namespaces.1);
    let policies_served = serves(&connection.discovery, "TenantPolicy");
    let clusters_served = serves(&connection.discovery, "Cluster");
    let notifiers_served = serves(&connection.discovery, "Notifier");
    let (reader, writer) = reflector::store();
    let (cluster_store, cluster_cache) = match clusters_served {
        true => {
            let (store, task) = watch_clusters(&client, opts.namespace.as_deref(), &reader, triggers);
            (Some(store), Some(task))
        }
        false => {
            tracing::warn!(
                "the Cluster CRD (clusters.ferry.dev) is not installed; Applications deploy to this cluster only"
            );
            (None, None)
        }
    };
    let clusters =
        Clusters::new(cluster_store, triggers.send.clone(), connection.metrics.clone(), opts.api_timeout);
    let caches = Caches { git, watches, apps: reader.clone(), clusters };
    let mut ctx = Context::new(connection, sync, caches);
    ctx.reporter.instance = Some(opts.identity.clone());
    let policy_cache = match (&opts.policy_namespace, policies_served) {
        (Some(ns), true) => {
            let (store, task) = watch_policies(&client, ns, &reader, triggers);
            ctx.policies = Some(store);
            Some(task)
        }
        (Some(ns), false) => {
            tracing::warn!(policy_namespace = %ns, "the TenantPolicy CRD (tenantpolicies.ferry.dev) is not installed; no TenantPolicy applies (the flags still do)");
            None
        }
        (None, _) => None,
    };
    ctx.notifications = start_notifications(opts, &ctx, notifiers_served);
    (Arc::new(ctx), writer, policy_cache.into_iter().chain(cluster_cache).collect())
}

/// Notifications, when the Notifier CRD is installed: the Notifier cache, the dispatcher, and
/// the outbox under the cache directory. ferry's own namespace (where Notifiers may hear other
/// namespaces) is `--policy-namespace`.
fn start_notifications(opts: &RunOptions, ctx: &Context, served: bool) -> Notifications {
    if !served {
        tracing::warn!("the Notifier CRD (notifiers.ferry.dev) is not installed; no notifications are sent");
        return Notifications::disabled();
    }
    let identity = NotifierIdentity {
        local: ctx.local.clone(),
        policies: ctx.policies.clone(),
        lockdown: ctx.options.lockdown.clone(),
    };
    Notifications::start(notify::Options {
        client: ctx.client.clone(),
        cache_dir: opts.cache_dir.clone(),
        home_namespace: opts.policy_namespace.clone(),
        watch_namespace: opts.namespace.clone(),
        timeout: opts.api_timeout,
        status_interval: NOTIFIER_STATUS_INTERVAL,
        metrics: ctx.metrics.clone(),
        impersonation: Arc::new(identity),
    })
}

/// The Cluster cache. A change to a Cluster (its kubeconfig reference, its labels) wakes the
/// Applications that deploy to it, so they link again at once.
fn watch_clusters(
    client: &Client,
    namespace: Option<&str>,
    apps: &Store<Application>,
    triggers: &Triggers,
) -> (Store<Cluster>, JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let api: Api<Cluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (apps, trigger, forwarding) = (apps.clone(), triggers.send.clone(), triggers.forwarding.clone());
    let changes =
        watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(move |event| {
            match event {
                Ok(watcher::Event::Apply(cluster) | watcher::Event::Delete(cluster))
                    if forwarding.load(Ordering::SeqCst) =>
                {
                    let id = ClusterId::Remote {
                        namespace: cluster.namespace().unwrap_or_default(),
                        name: cluster.name_any(),
                    };
                    for app in apps.state().iter().filter(|a| clusters::deploys_to(a, &id)) {
                        let _ = trigger.send(ObjectRef::from_obj(app.as_ref()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching Clusters failed; retrying"),
                _ => {}
            }
            async {}
        });
    (reader, tokio::spawn(changes))
}

/// The cluster-wide custom health checks of `--health-checks`, compiled (none without the flag).
/// A file that cannot be read or holds an invalid check stops start-up: ferry would otherwise
/// judge health by rules the platform team did not mean.
fn load_health_checks(path: Option<&std::path::Path>) -> Result<HealthChecks, StartupError> {
    let Some(path) = path else { return Ok(HealthChecks::default()) };
    let file = |source| StartupError::HealthChecksFile { path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(file)?;
    let yaml = |e: serde_saphyr::Error| StartupError::HealthChecksYaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let entries: Option<Vec<HealthCheckExpr>> = serde_saphyr::from_str(&text).map_err(yaml)?;
    let field = format!("--health-checks {}", path.display());
    let checks = HealthChecks::compile(&entries.unwrap_or_default(), &field, &ExprCache::default())?;
    info!(path = %path.display(), checks = checks.len(), "loaded the cluster-wide health checks");
    Ok(checks)
}

/// What reconciles need of the flags.
fn sync_options(opts: &RunOptions, health_checks: HealthChecks) -> SyncOptions {
    SyncOptions {
        api_timeout: opts.api_timeout,
        lockdown: opts.lockdown.clone(),
        health_timeout: opts.health_timeout,
        git_ref_cache: opts.git_ref_cache,
        apply_parallelism: 8,
        render: RenderOptions {
            kustomize_bin: opts.kustomize.clone(),
            helm_bin: opts.helm.clone(),
            max_bytes: opts.render_limits.max_bytes,
            max_objects: opts.render_limits.max_objects,
            ..Default::default()
        },
        render_cache_bytes: opts.render_limits.cache_bytes,
        charts: HelmRepoOptions { max_index_bytes: opts.render_limits.max_index_bytes, ..Default::default() },
        oci: OciFetcherOptions::default(),
        prometheus_url: opts.prometheus_url.clone(),
        allowed_prometheus_urls: opts.allowed_prometheus_urls.clone(),
        promotion_namespaces: opts.promotion_namespaces.clone(),
        health_checks,
    }
}

/// The per-Application metrics, exported while this process leads and for its shard only.
fn export_app_metrics(ctx: &Context, leadership: &Leadership, shard: Shard) {
    ctx.metrics.watch_apps(ctx.apps.clone());
    let leadership = leadership.clone();
    ctx.metrics.export_apps_if(move |app| leadership.is_leader() && shard.owns_app(app));
}

/// The webhook receiver, with the watch of its Secret started.
fn start_webhooks(secret: WebhookSecret, ctx: &Context) -> Arc<Webhooks> {
    tokio::spawn(secret.clone().watch(ctx.client.clone()));
    Arc::new(Webhooks {
        secret,
        apps: ctx.apps.clone(),
        client: ctx.client.clone(),
        api_timeout: ctx.options.api_timeout,
    })
}

/// The Application cache. It runs on every replica (webhooks and /readyz need it); only a
/// leader turns its changes into reconciles. Our own status writes change neither of what the
/// predicate looks at, so they do not wake the controller.
fn watch_apps(
    opts: &RunOptions,
    ctx: &Context,
    writer: Writer<Application>,
    triggers: &Triggers,
) -> impl Future<Output = ()> + use<> {
    let apps: Api<Application> = match &opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (forwarding, trigger, synced) =
        (triggers.forwarding.clone(), triggers.send.clone(), triggers.apps_synced.clone());
    let (wake, wake_on) = (triggers.send.clone(), triggers.forwarding.clone());
    let (mut followers, mut dependants) = (Followers::default(), Dependants::default());
    let wake_all = move |woken: Vec<ObjectRef<Application>>| {
        for app in woken.into_iter().filter(|_| wake_on.load(Ordering::SeqCst)) {
            let _ = wake.send(app);
        }
    };
    watcher(apps, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => synced.store(true, Ordering::SeqCst),
            // A newly verified revision wakes the Applications that follow this one, a change
            // of readiness those that depend on it (after the store holds it, so that they
            // read it).
            Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) => {
                wake_all(followers.on_event(app));
                wake_all(dependants.on_event(app));
            }
            Ok(watcher::Event::Delete(app)) => {
                followers.forget(app);
                wake_all(dependants.on_delete(app));
            }
            _ => {}
        })
        .applied_objects()
        .predicate_filter(spec_or_request, Default::default())
        .for_each(move |app| {
            if let Ok(app) = app
                && forwarding.load(Ordering::SeqCst)
            {
                let _ = trigger.send(ObjectRef::from_obj(&app));
            }
            async {}
        })
}

/// Both controllers, while this process leads.
struct Controllers {
    /// The Application controller. Boxed, not pinned on the stack: losing the lease must be able
    /// to drop it.
    apps: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The ApplicationSet controller's task, when this process runs it.
    sets: Option<JoinHandle<()>>,
    /// The ImagePolicy controller's task, when this process runs it.
    images: Option<JoinHandle<()>>,
    stop_apps: Option<oneshot::Sender<()>>,
    stop_sets: Option<oneshot::Sender<()>>,
    stop_images: Option<oneshot::Sender<()>>,
}

/// Which optional CRDs the cluster serves.
#[derive(Clone, Copy, Debug)]
struct Served {
    sets: bool,
    images: bool,
}

impl Controllers {
    fn start(
        ctx: &Arc<Context>,
        opts: &RunOptions,
        triggered: impl Stream<Item = ObjectRef<Application>> + Send + 'static,
        served: Served,
    ) -> Controllers {
        let (stop_apps, apps_stopped) = oneshot::channel::<()>();
        let apps = Controller::for_stream(
            futures::stream::pending::<Result<Application, watcher::Error>>(),
            ctx.apps.clone(),
        )
        .reconcile_on(triggered)
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(async move {
            let _ = apps_stopped.await;
        })
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        });
        let (stop_sets, sets_stopped) = oneshot::channel::<()>();
        let sets = set_controller(ctx, opts, served.sets, sets_stopped);
        let (stop_images, images_stopped) = oneshot::channel::<()>();
        let images = image_controller(ctx, opts, served.images, images_stopped);
        Controllers {
            apps: Box::pin(apps),
            sets,
            images,
            stop_apps: Some(stop_apps),
            stop_sets: Some(stop_sets),
            stop_images: Some(stop_images),
        }
    }

    /// Runs until a signal (then the reconciles in progress finish) or until the Lease is lost.
    /// Returns whether it was lost.
    async fn run(&mut self, leadership: &Leadership, readiness: &Readiness, shutdown: &mut Shutdown) -> bool {
        tokio::select! {
            _ = &mut self.apps => false,
            _ = leadership.lost() => true,
            _ = shutdown.wait() => {
                info!("shutting down: finishing the reconciles in progress");
                readiness.shut_down();
                self.drain().await;
                false
            }
        }
    }

    /// Stops both gracefully: the reconciles in progress finish, for [`SHUTDOWN_GRACE`] at most.
    async fn drain(&mut self) {
        for stop in
            [self.stop_apps.take(), self.stop_sets.take(), self.stop_images.take()].into_iter().flatten()
        {
            let _ = stop.send(());
        }
        // A reconcile stuck on an unreachable Git server or API server must not keep ferry
        // from stopping; an interrupted sync is safe to redo (server-side apply).
        let (sets, images) = (&mut self.sets, &mut self.images);
        let both = futures::future::join(&mut self.apps, async {
            for task in [sets, images].into_iter().flatten() {
                let _ = task.await;
            }
        });
        if tokio::time::timeout(SHUTDOWN_GRACE, both).await.is_err() {
            tracing::warn!("reconciles still running after {}s; stopping anyway", SHUTDOWN_GRACE.as_secs());
        }
    }

    /// Stops both at once. Dropping the Application controller cancels every reconcile in
    /// progress at its next await, before its next request; a sync cut short is redone by the
    /// new leader (server-side apply).
    fn abandon(self) {
        let Controllers { apps, sets, images, .. } = self;
        drop(apps);
        for task in [sets, images].into_iter().flatten() {
            task.abort();
        }
    }
}

/// The ApplicationSet controller: one writer, the leader of shard 0 (each shard then reconciles
/// the generated Applications it owns). `None` on the other shards and without the CRD.
fn set_controller(
    ctx: &Arc<Context>,
    opts: &RunOptions,
    served: bool,
    stopped: oneshot::Receiver<()>,
) -> Option<JoinHandle<()>> {
    if !served {
        tracing::warn!(
            "the ApplicationSet CRD (applicationsets.ferry.dev) is not installed; ApplicationSets are off"
        );
        return None;
    }
    if opts.shard.index != 0 {
        return None;
    }
    let client = &ctx.client;
    let (sets, generated): (Api<ApplicationSet>, Api<Application>) = match &opts.namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // A generated Application's status changes the set's status (it lists them).
    let owned = watcher::Config::default().labels(APPLICATION_SET_LABEL);
    let controller = Controller::new(sets, watcher::Config::default())
        .owns(generated, owned)
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(appset::reconcile, appset::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ApplicationSet reconcile ended with an error");
            }
        });
    Some(tokio::spawn(controller))
}

/// The ImagePolicy controller: one writer, the leader of shard 0 (a policy pushes to Git; two
/// writers would race). `None` on the other shards and without the CRD.
fn image_controller(
    ctx: &Arc<Context>,
    opts: &RunOptions,
    served: bool,
    stopped: oneshot::Receiver<()>,
) -> Option<JoinHandle<()>> {
    if !served || opts.shard.index != 0 {
        return None;
    }
    let policies: Api<ImagePolicy> = match &opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // Only spec changes (a new generation) and the requeue at each interval reconcile a
    // policy: its own status writes must not cause a scan.
    let (reader, writer) = reflector::store();
    let changes = watcher(policies, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let controller = Controller::for_stream(changes, reader)
        .with_config(controller::Config::default().concurrency(4))
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(images::reconcile, images::error_policy, Arc::new(images::ImagesContext::new(ctx.clone())))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ImagePolicy reconcile ended with an error");
            }
        });
    Some(tokio::spawn(controller))
}

/// A cache of the TenantPolicies of `namespace`. A policy that changes wakes every Application
/// (policies change rarely, and which Applications one governed before is not known any more).
fn watch_policies(
    client: &Client,
    namespace: &str,
    apps: &Store<Application>,
    triggers: &Triggers,
) -> (Store<TenantPolicy>, JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let api: Api<TenantPolicy> = Api::namespaced(client.clone(), namespace);
    let (apps, trigger, forwarding) = (apps.clone(), triggers.send.clone(), triggers.forwarding.clone());
    info!(policy_namespace = %namespace, "enforcing the TenantPolicies of this namespace");
    let changes =
        watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(move |event| {
            match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))
                    if forwarding.load(Ordering::SeqCst) =>
                {
                    for app in apps.state() {
                        let _ = trigger.send(ObjectRef::from_obj(app.as_ref()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching TenantPolicies failed; retrying"),
                _ => {}
            }
            async {}
        });
    (reader, tokio::spawn(changes))
}

/// Keeps /readyz's role and `ferry_leader` in step with the election.
async fn report_role(leadership: Leadership, readiness: Readiness, metrics: Arc<Metrics>, elected: bool) {
    let mut rx = leadership.subscribe();
    loop {
        let role = rx.borrow_and_update().clone();
        metrics.set_leader(role == Role::Leader);
        match role {
            Role::Leader if elected => readiness.set_role("leader"),
            Role::Leader => readiness.set_role(""),
            Role::Standby { holder } => readiness.set_role(&format!(
                "standby, the leader is {}",
                holder.as_deref().unwrap_or("not known yet")
            )),
            Role::Lost => readiness.set_role("lost the lease, stopping"),
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Marks ferry ready once the Application cache is synced and the webhook Secret (if any) has
/// been read: from then on a webhook finds every Application it concerns.
async fn become_ready(readiness: Readiness, apps_synced: Arc<AtomicBool>, secret: Option<WebhookSecret>) {
    const POLL: Duration = Duration::from_millis(100);
    while !apps_synced.load(Ordering::SeqCst) {
        tokio::time::sleep(POLL).await;
    }
    if let Some(secret) = secret {
        while let Err(why) = secret.loaded() {
            readiness.set_not_ready(&why.to_string());
            tokio::time::sleep(POLL).await;
        }
    }
    readiness.set_ready();
}

/// What makes an Application worth a reconcile: its spec (generation), a manual request (a sync,
/// or a rollout's promote, abort or retry), the start of its deletion, its finalizers.
fn spec_or_request(app: &Application) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    app.metadata.generation.hash(&mut h);
    app.annotations().get(RECONCILE_AT_ANNOTATION).hash(&mut h);
    app.annotations().get(ROLLOUT_REQUEST_ANNOTATION).hash(&mut h);
    app.metadata.deletion_timestamp.is_some().hash(&mut h);
    app.finalizers().hash(&mut h);
    Some(h.finish())
}

/// SIGTERM and SIGINT, listened for from the moment this is created: a signal that arrives
/// while start-up is still running must end ferry cleanly, not kill it with the default action.
struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    fn install() -> std::io::Result<Shutdown> {
        Ok(Shutdown { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(annotations: &[(&str, &str)]) -> Application {
        let spec = serde_json::from_value(serde_json::json!({
            "source": {"repoURL": "https://git.example.com/deploy.git", "ref": {"branch": "main"}}
        }))
        .unwrap();
        let mut app = Application::new("shop", spec);
        app.metadata.generation = Some(3);
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        app.metadata.annotations = Some(annotations);
        app
    }

    /// The words of each failure are those `ferry run` printed before they were typed.
    #[test]
    fn start_up_and_run_time_failures_read_as_before() {
        let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let cases: [(RunError, &str); 5] = [
            (
                RunError::LeaseLost,
                "lost the leader-election lease; stopped reconciling (a restart joins as a standby)",
            ),
            (RunError::ElectionEnded, "the leader election ended before this process led"),
            (
                StartupError::DiscoveryTimeout { url: "https://k8s:6443/".into() }.into(),
                "API discovery at https://k8s:6443/ did not finish in time",
            ),
            (
                StartupError::Listen { address: "0.0.0.0:8080".into(), source: io() }.into(),
                "cannot listen on 0.0.0.0:8080 (address in use); choose another address with --http-address",
            ),
            (
                StartupError::ListenerAddress { address: "0.0.0.0:8080".into(), source: io() }.into(),
                "cannot read the address of the HTTP listener on 0.0.0.0:8080: address in use",
            ),
        ];
        for (err, words) in cases {
            assert_eq!(err.to_string(), words);
        }
        let bad = WebhookSecret::parse("Hooks", "ferry").unwrap_err();
        assert_eq!(
            RunError::from(StartupError::from(bad)).to_string(),
            r#"--webhook-secret "Hooks" is not [NAMESPACE/]NAME of a Secret (lowercase letters, digits, '-' and '.')"#
        );
    }

    #[test]
    fn a_sync_or_rollout_request_wakes_the_application_and_a_status_write_does_not() {
        let plain = spec_or_request(&app(&[]));
        let mut with_status = app(&[]);
        with_status.status = Some(Default::default());
        assert_eq!(spec_or_request(&with_status), plain);
        assert_ne!(spec_or_request(&app(&[(RECONCILE_AT_ANNOTATION, "t1")])), plain);
        let promote = spec_or_request(&app(&[(ROLLOUT_REQUEST_ANNOTATION, "promote@t1")]));
        assert_ne!(promote, plain);
        assert_ne!(spec_or_request(&app(&[(ROLLOUT_REQUEST_ANNOTATION, "promote@t2")])), promote);
        assert_eq!(spec_or_request(&app(&[("unrelated", "x")])), plain);
    }
}
