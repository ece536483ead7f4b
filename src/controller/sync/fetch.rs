//! Access and fetch: who the Application acts as and what the lockdown lets it read and write,
//! then the revision to sync, resolved (one shared `ls-remote`) and fetched only when new.

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::pass::Pass;
use crate::{
    api::{
        Application, ApplicationReference, GitRef, LocalObjectReference, RECONCILE_AT_ANNOTATION, Source,
        destination_cluster,
    },
    apply::AppRef,
    controller::{
        clusters::{self, ClusterError, ClusterId, ClusterLink},
        context::Context,
        error::{AccessError, FetchError, SyncError},
        memory::{AppMemory, SourceMemo},
    },
    duration,
    source::{Credentials, Revision, Snapshot, SourceSpec},
    tenancy::Tenancy,
};

/// What the lockdown allows this pass: the tenancy's rules, a client acting as the
/// Application's ServiceAccount here (for its Secrets), the cluster it deploys to and a client
/// acting as that ServiceAccount there.
pub struct Access {
    pub tenancy: Tenancy,
    /// In the cluster ferry runs in: reads the Application's Secrets.
    pub client: kube::Client,
    pub cluster: Arc<ClusterLink>,
    /// In the destination cluster: reads, dry runs and writes the Application's objects.
    pub target: kube::Client,
}

/// The lockdown, before any fetch: who the Application acts as, what it may read, where to,
/// and the cluster it deploys to (connected, admitted, answering).
pub async fn access(ctx: &Context, app: &Application, app_ref: &AppRef) -> Result<Access, AccessError> {
    let tenancy = ctx.tenancy(&app_ref.namespace);
    let sa = tenancy.service_account(app)?;
    let source = &app.spec.source;
    let urls = [source.repo_url.as_deref(), source.chart.as_ref().map(|c| c.repo_url.as_str())];
    for url in urls.into_iter().flatten().chain(source.oci.as_ref().map(|o| o.url.as_str())) {
        tenancy.check_source(url)?;
    }
    let destination = app.spec.destination.as_ref().and_then(|d| d.namespace.as_deref());
    tenancy.check_destination(destination.unwrap_or(&app_ref.namespace))?;
    let (client, cluster, target) = clients(ctx, app, app_ref, &tenancy, sa.as_deref()).await?;
    Ok(Access { tenancy, client, cluster, target })
}

/// The clients `app` acts through as `service_account`: here (its Secrets), and in the cluster
/// it deploys to, with that cluster's link. Deletion uses them too.
pub async fn clients(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    tenancy: &Tenancy,
    service_account: Option<&str>,
) -> Result<(kube::Client, Arc<ClusterLink>, kube::Client), AccessError> {
    let as_sa = |link: &ClusterLink| {
        link.client_for(&app_ref.namespace, service_account).map_err(|e| AccessError::Client(Box::new(e)))
    };
    let client = as_sa(&ctx.local)?;
    let cluster = destination(ctx, app, app_ref, (tenancy, &client), service_account).await?;
    let target = if Arc::ptr_eq(&cluster, &ctx.local) { client.clone() } else { as_sa(&cluster)? };
    Ok((client, cluster, target))
}

/// The cluster `spec.destination.cluster` names (the local one when it names none), once the
/// tenancy allows it, the ServiceAccount may read its credentials and its circuit is closed.
async fn destination(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    (tenancy, local): (&Tenancy, &kube::Client),
    service_account: Option<&str>,
) -> Result<Arc<ClusterLink>, ClusterError> {
    let Some(name) = destination_cluster(app) else { return Ok(ctx.local.clone()) };
    let linked = ctx.clusters.link(&ctx.client, &app_ref.namespace, name).await?;
    let timeout = ctx.options.api_timeout;
    clusters::admit(&linked, tenancy, local, service_account, timeout).await?;
    let link = linked.link;
    if let Some(error) = link.breaker.as_ref().filter(|b| b.is_open()).and_then(|b| b.last_error()) {
        return Err(ClusterError::Unreachable {
            cluster: format!("{}/{name}", app_ref.namespace),
            message: error,
        });
    }
    Ok(link)
}

/// `error`, or `ClusterUnreachable` when the pass failed because its remote cluster stopped
/// answering (the circuit may not be open yet): what went wrong is the cluster, not the pass.
pub fn unreachable_or(cluster: &ClusterLink, error: SyncError) -> SyncError {
    let Some(last) = cluster.breaker.as_ref().and_then(|b| b.last_error()) else { return error };
    let ClusterId::Remote { namespace, name } = &cluster.id else { return error };
    let message = format!("{last} (the pass stopped at: {error})");
    SyncError::Access(AccessError::Cluster(ClusterError::Unreachable {
        cluster: format!("{namespace}/{name}"),
        message,
    }))
}

/// The snapshot to sync: the one resolved earlier in this interval, or a fresh resolve (one
/// `ls-remote`) and, only when the commit is new, a fetch.
pub async fn fetch(pass: Pass<'_>, access: &Access, mem: &mut AppMemory) -> Result<Snapshot, FetchError> {
    let Pass { ctx, app, app_ref, .. } = pass;
    let _timer = ctx.metrics.time(crate::metrics::Stage::Fetch);
    let reconcile_at = app.annotations().get(RECONCILE_AT_ANNOTATION).cloned();
    let interval = duration::parse(&app.spec.interval).unwrap_or(Duration::from_secs(180));
    let mut source = app.spec.source.clone();
    let promoted = match source.from_application() {
        Some(upstream) => Some(promoted_commit(ctx, access, app_ref, upstream)?),
        None => None,
    };
    if let Some(commit) = &promoted {
        source.git_ref = Some(GitRef { commit: Some(commit.clone()), ..Default::default() });
    }
    if let Some(memo) = mem.source.as_ref().filter(|_| !mem.refresh_source) {
        let fresh = memo.generation == app.metadata.generation
            && memo.reconcile_at == reconcile_at
            && promoted.as_ref().is_none_or(|c| *c == memo.snapshot.revision.commit)
            && memo.resolved_at.elapsed() < interval;
        if fresh && memo.snapshot.root.is_dir() {
            return Ok(memo.snapshot.clone());
        }
    }
    let max_age = listing_max_age(ctx, mem, &reconcile_at, interval);
    let snapshot = match (&source.chart, &source.oci) {
        (Some(chart), _) => {
            let git = match source.git() {
                Some(_) => Some(git(pass, access, &source, max_age).await?),
                None => None,
            };
            super::artifacts::chart(pass, &access.client, chart, git, max_age).await?
        }
        (None, Some(oci)) => super::artifacts::oci(pass, &access.client, oci).await?,
        (None, None) => git(pass, access, &source, max_age).await?,
    };
    ctx.syncs_from(app_ref, &snapshot);
    let resolved_at = Instant::now();
    let memo = SourceMemo {
        generation: app.metadata.generation,
        reconcile_at,
        resolved_at,
        snapshot: snapshot.clone(),
    };
    mem.source = Some(memo);
    mem.refresh_source = false;
    Ok(snapshot)
}

/// The Git revision `source` names, fetched when new.
async fn git(
    pass: Pass<'_>,
    access: &Access,
    source: &Source,
    max_age: Duration,
) -> Result<Snapshot, FetchError> {
    let Pass { ctx, app_ref, .. } = pass;
    let credentials =
        credentials(ctx, &access.client, &app_ref.namespace, source.secret_ref.as_ref()).await?;
    let spec = SourceSpec::from_source(source, credentials).ok_or(FetchError::NoSource)?;
    let started = Instant::now();
    let snapshot = ctx.git.fetch_within(&spec, max_age).await;
    ctx.metrics.git_fetch(snapshot.is_ok(), started.elapsed());
    snapshot.map_err(|e| FetchError::Source(Box::new(e)))
}

/// The Git credentials `secret_ref` names, read as `client` with the API timeout (see
/// [`crate::source::credentials::from_secret_ref`]). `ferry diff` reads them through the same.
pub async fn credentials(
    ctx: &Context,
    client: &kube::Client,
    namespace: &str,
    secret_ref: Option<&LocalObjectReference>,
) -> Result<Option<Credentials>, FetchError> {
    crate::source::credentials::from_secret_ref(client, ctx.options.api_timeout, namespace, secret_ref)
        .await
        .map_err(FetchError::from)
}

/// The commit an Application with `ref.fromApplication` deploys: the one the Application it
/// follows last verified (Synced, Healthy, hooks passed).
fn promoted_commit(
    ctx: &Context,
    access: &Access,
    app_ref: &AppRef,
    upstream: &ApplicationReference,
) -> Result<String, FetchError> {
    let namespace = upstream.namespace.clone().unwrap_or_else(|| app_ref.namespace.clone());
    access
        .tenancy
        .check_follow(&namespace, &upstream.name, &ctx.options.promotion_namespaces)
        .map_err(FetchError::Refused)?;
    if upstream.name == app_ref.name && namespace == app_ref.namespace {
        return Err(FetchError::FollowsItself);
    }
    let key = ObjectRef::new(&upstream.name).within(&namespace);
    let Some(followed) = ctx.apps.get(&key) else {
        return Err(FetchError::FollowedMissing(key));
    };
    let verified = followed.status.as_ref().and_then(|s| s.verified_revision.as_deref());
    match verified.map(Revision::from_str) {
        Some(Ok(revision)) => Ok(revision.commit),
        _ => Err(FetchError::FollowedUnverified(key)),
    }
}

/// How old a shared ls-remote of the repository may be for this fetch. A requested sync (a new
/// `ferry.dev/reconcile-at`: a webhook, `ferry sync`) lists afresh, since it exists because
/// Git just changed; otherwise half the interval at most, so that a new commit is seen within
/// 1.5 intervals whatever the other Applications on the repository do.
pub(super) fn listing_max_age(
    ctx: &Context,
    mem: &AppMemory,
    reconcile_at: &Option<String>,
    interval: Duration,
) -> Duration {
    let requested = mem.source.as_ref().is_some_and(|m| &m.reconcile_at != reconcile_at);
    if requested || mem.refresh_source { Duration::ZERO } else { ctx.options.git_ref_cache.min(interval / 2) }
}
