//! Start-up wiring of `ferry run`: the one place that depends on both controllers (Applications
//! in [`crate::controller`], ApplicationSets in [`crate::appset`]). It connects, checks the
//! cluster, builds the shared [`Context`], starts the caches, the HTTP server and the leader
//! election, runs both controllers while this process leads, and shuts them down.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Config, ResourceExt,
    discovery::Discovery,
    runtime::{Controller, WatchStreamExt, controller, reflector, reflector::ObjectRef, watcher},
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::info;

use crate::{
    api::{
        APPLICATION_SET_LABEL, Application, ApplicationSet, RECONCILE_AT_ANNOTATION,
        ROLLOUT_REQUEST_ANNOTATION, TenantPolicy,
    },
    appset,
    controller::{
        Context, Elector, Followers, LeaderConfig, Leadership, PreflightError, Role, Shard, SyncOptions,
        Watches, collect_garbage, preflight, reconcile,
    },
    metrics::Metrics,
    render::RenderOptions,
    server::{Readiness, Server, ServerState, WebhookSecret, Webhooks},
    source::{GitCache, GitCacheOptions, Retention},
    tenancy::Lockdown,
};
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
}

/// Runs the controller until SIGINT or SIGTERM, or until it loses its leader-election Lease
/// (then it stops reconciling at once and returns an error, so the process exits and restarts
/// as a standby).
pub async fn run(opts: RunOptions) -> Result<(), PreflightError> {
    let mut shutdown = Shutdown::install().map_err(|e| PreflightError::Signals { cause: e.to_string() })?;
    if let Some(leader) = &opts.leader {
        leader.validate().map_err(PreflightError::Startup)?;
    }
    let webhook_secret = opts
        .webhook_secret
        .as_deref()
        .map(|spec| WebhookSecret::parse(spec, opts.namespace.as_deref().unwrap_or("default")))
        .transpose()
        .map_err(PreflightError::Startup)?;
    let kubeconfig_env = || std::env::var("KUBECONFIG").ok();
    let config = Config::infer().await.map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let url = config.cluster_url.to_string();
    let metrics = Arc::new(Metrics::new());
    let client =
        metrics.client(config.clone()).map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let started = async {
        let cluster = preflight(&client, &url, opts.api_timeout, opts.namespace.as_deref()).await?;
        let discovery = tokio::time::timeout(opts.api_timeout * 3, Discovery::new(client.clone()).run())
            .await
            .map_err(|_| PreflightError::Startup(format!("API discovery at {url} did not finish in time")))?
            .map_err(|e| PreflightError::Startup(format!("API discovery at {url} failed: {e}")))?;
        Ok::<_, PreflightError>((cluster, discovery))
    };
    let (cluster, discovery) = tokio::select! {
        checked = started => checked?,
        _ = shutdown.wait() => {
            info!("shutting down before start-up finished");
            return Ok(());
        }
    };
    let cache_options = GitCacheOptions { retention: opts.cache_retention.clone(), ..Default::default() };
    let git = GitCache::new(&opts.cache_dir, cache_options).map_err(|e| {
        PreflightError::Startup(format!(
            "cannot use {} as the Git cache ({e}); pass a writable directory with --cache-dir",
            opts.cache_dir.display()
        ))
    })?;

    let listener = tokio::net::TcpListener::bind(&opts.http_address).await.map_err(|e| {
        PreflightError::Startup(format!(
            "cannot listen on {} ({e}); choose another address with --http-address",
            opts.http_address
        ))
    })?;
    let http_address = listener.local_addr().map_err(|e| {
        PreflightError::Startup(format!(
            "cannot read the address of the HTTP listener on {}: {e}",
            opts.http_address
        ))
    })?;

    // The election runs from now until shutdown; `stop_electing` ends it (releasing the Lease).
    let (stop_electing, electing_stopped) = tokio::sync::oneshot::channel::<()>();
    let (leadership, elector) = match opts.leader.clone() {
        Some(config) => {
            let lease = format!("{}/{}", config.namespace, config.lease_name);
            let (elector, leadership) = Elector::new(client.clone(), config, opts.api_timeout);
            let task = tokio::spawn(elector.run(async move {
                let _ = electing_stopped.await;
            }));
            (leadership, Some((task, lease)))
        }
        None => (Leadership::always(), None),
    };

    let (trigger, triggered) = tokio::sync::mpsc::unbounded_channel();
    let watches = Watches::new(
        client.clone(),
        trigger.clone(),
        opts.namespace.clone(),
        opts.managed_namespaces.clone(),
    );
    let options = SyncOptions {
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
        prometheus_url: opts.prometheus_url.clone(),
        allowed_prometheus_urls: opts.allowed_prometheus_urls.clone(),
        promotion_namespaces: opts.promotion_namespaces.clone(),
    };
    let sets_served = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("ferry.dev", "v1alpha1", "ApplicationSet"))
        .is_some();
    let policies_served = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("ferry.dev", "v1alpha1", "TenantPolicy"))
        .is_some();
    let (reader, writer) = reflector::store();
    let mut ctx = Context::new(
        client.clone(),
        config,
        options,
        git,
        watches,
        discovery,
        metrics.clone(),
        reader.clone(),
    );
    ctx.reporter.instance = Some(opts.identity.clone());
    let forwarding = Arc::new(AtomicBool::new(false));
    let policy_cache = match (&opts.policy_namespace, policies_served) {
        (Some(ns), true) => {
            let (store, task) = watch_policies(&client, ns, &reader, &trigger, &forwarding);
            ctx.policies = Some(store);
            Some(task)
        }
        (Some(ns), false) => {
            tracing::warn!(policy_namespace = %ns, "the TenantPolicy CRD (tenantpolicies.ferry.dev) is not installed; no TenantPolicy applies (the flags still do)");
            None
        }
        (None, _) => None,
    };
    let ctx = Arc::new(ctx);
    let collector = tokio::spawn(collect_garbage(ctx.clone(), opts.cache_gc_interval));

    let apps: Api<Application> = match &opts.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    metrics.watch_apps(reader.clone());
    let shard = opts.shard;
    {
        let leadership = leadership.clone();
        metrics.export_apps_if(move |app| {
            leadership.is_leader() && shard.owns(&app.namespace().unwrap_or_default(), &app.name_any())
        });
    }
    let readiness = Readiness::new("waiting for the Application cache to sync");
    tokio::spawn(report_role(leadership.clone(), readiness.clone(), metrics.clone(), opts.leader.is_some()));
    // Set when the reflector has swapped the first full list into the store. (Not
    // `Store::wait_until_ready`: its one-shot keeps a single waker, and the controller waits on it.)
    let apps_synced = Arc::new(AtomicBool::new(false));
    tokio::spawn(become_ready(readiness.clone(), apps_synced.clone(), webhook_secret.clone()));
    let webhooks = webhook_secret.map(|secret| {
        tokio::spawn(secret.clone().watch(client.clone()));
        Arc::new(Webhooks {
            secret,
            apps: reader.clone(),
            client: client.clone(),
            api_timeout: opts.api_timeout,
        })
    });
    let webhooks_on = webhooks.as_ref().map(|w| w.secret.describe());
    let server = Server::spawn(
        listener,
        ServerState { metrics: metrics.clone(), readiness: readiness.clone(), webhooks },
    );
    // The Application cache runs on every replica (webhooks and /readyz need it); only a leader
    // turns its changes into reconciles. Our own status writes change neither of what the
    // predicate looks at, so they do not wake the controller.
    let app_changes = {
        let (forwarding, trigger, synced) = (forwarding.clone(), trigger.clone(), apps_synced.clone());
        let (wake, wake_on, store) = (trigger.clone(), forwarding.clone(), reader.clone());
        let mut followers = Followers::default();
        watcher(apps, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .inspect(move |event| match event {
                Ok(watcher::Event::InitDone) => synced.store(true, Ordering::SeqCst),
                // A newly verified revision wakes the Applications that follow this one (after
                // the store holds it, so that they read it).
                Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) => {
                    for follower in followers.on_event(app, &store) {
                        if wake_on.load(Ordering::SeqCst) {
                            let _ = wake.send(follower);
                        }
                    }
                }
                Ok(watcher::Event::Delete(app)) => followers.forget(app),
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
    };
    let app_cache = tokio::spawn(app_changes);

    info!(
        api_server = %cluster.url,
        kubernetes_version = %cluster.kubernetes_version,
        namespace = opts.namespace.as_deref().unwrap_or("all namespaces"),
        managed_namespaces = opts.managed_namespaces.as_ref().map(|n| n.join(",")).as_deref().unwrap_or("all"),
        http_address = %http_address,
        webhook_secret = webhooks_on.as_deref().unwrap_or("none (webhooks off)"),
        identity = %opts.identity,
        leader_election = elector.as_ref().map(|(_, lease)| lease.as_str()).unwrap_or("off"),
        shard = %format_args!("{}/{}", shard.index, shard.count),
        "ferry is ready: connected to the API server and the Application CRD is installed"
    );

    let finish = |readiness: Readiness,
                  server: Server,
                  elector: Option<(tokio::task::JoinHandle<()>, String)>| async move {
        readiness.shut_down();
        // Releasing the Lease lets a standby take over at once instead of after the lease duration.
        let _ = stop_electing.send(());
        if let Some((task, _)) = elector {
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, task).await;
        }
        app_cache.abort();
        if let Some(task) = policy_cache {
            task.abort();
        }
        server.shutdown(HTTP_SHUTDOWN_GRACE).await;
        info!("shut down");
    };

    // A standby waits here, serving metrics, /readyz and webhooks.
    let leading = tokio::select! {
        leading = leadership.acquired() => leading,
        _ = shutdown.wait() => {
            info!("shutting down (standby)");
            finish(readiness, server, elector).await;
            return Ok(());
        }
    };
    if !leading {
        finish(readiness, server, elector).await;
        return Err(PreflightError::Startup("the leader election ended before this process led".into()));
    }
    // No reconcile before every TenantPolicy is known: an empty cache would allow everything.
    if let Some(policies) = ctx.policies.clone() {
        tokio::select! {
            _ = policies.wait_until_ready() => {},
            _ = shutdown.wait() => {
                info!("shutting down before the TenantPolicies were read");
                finish(readiness, server, elector).await;
                return Ok(());
            }
        }
    }
    if opts.leader.is_some() {
        info!(identity = %opts.identity, "leading: reconciling Applications");
    }
    // Every Application of this shard once the cache is synced, then each change as it comes.
    forwarding.store(true, Ordering::SeqCst);
    {
        let (reader, trigger, synced) = (reader.clone(), trigger.clone(), apps_synced.clone());
        tokio::spawn(async move {
            while !synced.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for app in reader.state() {
                let _ = trigger.send(ObjectRef::from_obj(app.as_ref()));
            }
        });
    }
    drop(trigger);
    let triggered =
        futures::stream::unfold(triggered, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).filter(
            move |r| std::future::ready(shard.owns(r.namespace.as_deref().unwrap_or_default(), &r.name)),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let set_ctx = ctx.clone();
    let controller =
        Controller::for_stream(futures::stream::pending::<Result<Application, watcher::Error>>(), reader)
            .reconcile_on(triggered)
            .with_config(controller::Config::default().concurrency(opts.concurrency))
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile ended with an error");
                }
            });
    // Boxed, not pinned on the stack: losing the lease must be able to drop it.
    let mut controller = Box::pin(controller);
    // ApplicationSets: one writer, the leader of shard 0 (each shard then reconciles the
    // generated Applications it owns).
    let (stop_sets, sets_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut sets = if !sets_served {
        tracing::warn!(
            "the ApplicationSet CRD (applicationsets.ferry.dev) is not installed; ApplicationSets are off"
        );
        None
    } else if shard.index != 0 {
        None
    } else {
        let (sets, generated): (Api<ApplicationSet>, Api<Application>) = match &opts.namespace {
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        // A generated Application's status changes the set's status (it lists them).
        let owned = watcher::Config::default().labels(APPLICATION_SET_LABEL);
        let controller = Controller::new(sets, watcher::Config::default())
            .owns(generated, owned)
            .graceful_shutdown_on(async move {
                let _ = sets_stopped.await;
            })
            .run(appset::reconcile, appset::error_policy, set_ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "ApplicationSet reconcile ended with an error");
                }
            });
        Some(tokio::spawn(controller))
    };
    let lost = tokio::select! {
        _ = &mut controller => false,
        _ = leadership.lost() => true,
        _ = shutdown.wait() => {
            info!("shutting down: finishing the reconciles in progress");
            readiness.shut_down();
            let _ = stop.send(());
            let _ = stop_sets.send(());
            // A reconcile stuck on an unreachable Git server or API server must not keep ferry
            // from stopping; an interrupted sync is safe to redo (server-side apply).
            let both = futures::future::join(&mut controller, async {
                if let Some(sets) = &mut sets {
                    let _ = sets.await;
                }
            });
            if tokio::time::timeout(SHUTDOWN_GRACE, both).await.is_err() {
                tracing::warn!(
                    "reconciles still running after {}s; stopping anyway",
                    SHUTDOWN_GRACE.as_secs()
                );
            }
            false
        }
    };
    collector.abort();
    if lost {
        // Another replica may lead from now on: no write of ours may follow. Dropping the
        // controller cancels every reconcile in progress at its next await, before its next
        // request; a sync cut short is redone by the new leader (server-side apply).
        drop(controller);
        if let Some(sets) = &sets {
            sets.abort();
        }
        tracing::error!(
            "lost the leader-election lease: stopped reconciling; exiting so a restart joins as a standby"
        );
        finish(readiness, server, elector).await;
        return Err(PreflightError::Startup(
            "lost the leader-election lease; stopped reconciling (a restart joins as a standby)".into(),
        ));
    }
    finish(readiness, server, elector).await;
    Ok(())
}

/// A cache of the TenantPolicies of `namespace`. A policy that changes wakes every Application
/// (policies change rarely, and which Applications one governed before is not known any more).
fn watch_policies(
    client: &kube::Client,
    namespace: &str,
    apps: &reflector::Store<Application>,
    trigger: &tokio::sync::mpsc::UnboundedSender<ObjectRef<Application>>,
    forwarding: &Arc<AtomicBool>,
) -> (reflector::Store<TenantPolicy>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let api: Api<TenantPolicy> = Api::namespaced(client.clone(), namespace);
    let (apps, trigger, forwarding) = (apps.clone(), trigger.clone(), forwarding.clone());
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
            readiness.set_not_ready(&why);
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
