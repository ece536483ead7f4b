//! Build: from the fetched files to the objects to sync. Render (cached per commit), split off
//! the hooks and add the Namespace `createNamespace` asks for, prepare every object
//! (labels, hash), resolve its kind, and let the tenancy check every object and hook.
//! `ferry diff` builds through [`split`] and [`super::desired`] too.

use std::{collections::HashMap, sync::Arc};

use kube::api::DynamicObject;

use super::{
    desired::{self, Desired},
    fetch::Access,
    pass::Pass,
};
use crate::{
    api::{Application, InventoryEntry},
    apply::{AppRef, Applier, created_namespace, requested_namespace},
    controller::{
        context::Context,
        error::{BuildError, KindsError},
        hooks::{self, Hook},
        memory::{AppMemory, SplitRender},
    },
    render::{AgeKeys, FetchedDependency, RenderRequest},
    source::{Revision, Snapshot},
    tenancy::Target,
};

/// The render split: what to sync, the hooks, and the Namespace ferry adds.
#[derive(Clone, Debug)]
pub struct Split {
    pub objects: Arc<Vec<DynamicObject>>,
    pub hooks: Arc<Vec<Hook>>,
    /// The name of the Namespace ferry added for `createNamespace`, if it did.
    pub created_namespace: Option<String>,
}

/// What the build stage hands on.
pub struct Built {
    /// The revision built.
    pub revision: Revision,
    pub split: Split,
    pub desired: Vec<Desired>,
    /// An applier acting as the Application, with the discovery that resolved the kinds.
    pub applier: Applier,
    /// The inventory of the last successful sync, with the namespace of cluster-scoped kinds
    /// dropped.
    pub previous: Vec<InventoryEntry>,
    /// Live objects this pass has read already (the rollout's primary), by index among the
    /// desired objects: the plan uses one instead of reading it again while the watch still
    /// shows its resourceVersion.
    pub read: HashMap<usize, DynamicObject>,
}

/// Renders, splits, prepares and resolves the revision's objects; the tenancy checks them all.
pub async fn build(
    pass: Pass<'_>,
    access: &Access,
    snapshot: &Snapshot,
    mem: &mut AppMemory,
) -> Result<Built, BuildError> {
    let Pass { ctx, app, app_ref, .. } = pass;
    let keys = decryption_keys(ctx, access, app).await?;
    let dependencies = dependencies_remembered(pass, access, snapshot, mem).await?;
    let rendered = render(pass, snapshot, keys.as_ref(), &dependencies).await?;
    let split = split_remembered(pass, &access.target, mem, &rendered).await?;
    // Desired objects: labelled, hashed, kinds resolved. Timed as part of the plan, with the
    // server-side dry runs that validate it.
    let mut desired = desired::prepare_remembered(mem, &split.objects, app_ref);
    desired::check_options(&desired)?;
    let applier = resolve(pass, &access.target, &mut desired, &split.objects).await?;
    let previous = desired::in_scope(previous_inventory(app), applier.discovery());
    let hooks = split.hooks.iter().filter_map(|h| hook_target(&h.object));
    access.tenancy.check_objects(desired.iter().map(Desired::target).chain(hooks))?;
    Ok(Built { revision: snapshot.revision.clone(), split, desired, applier, previous, read: HashMap::new() })
}

/// The chart's dependencies from repositories (see [`super::artifacts::chart_dependencies`]),
/// fetched once per resolve of the source, so an unchanged Application costs no registry or
/// repository request per reconcile.
async fn dependencies_remembered(
    pass: Pass<'_>,
    access: &Access,
    snapshot: &Snapshot,
    mem: &mut AppMemory,
) -> Result<Vec<FetchedDependency>, BuildError> {
    let resolved_at = mem.source.as_ref().map(|s| s.resolved_at);
    if let (Some(at), Some((memo_at, fetched))) = (resolved_at, &mem.dependencies)
        && at == *memo_at
        && fetched.iter().all(|d| d.dir.is_dir())
    {
        return Ok(fetched.clone());
    }
    let wanted = super::artifacts::wanted_dependencies(pass.app, snapshot);
    // A dependency's repository is a source like any other: the tenancy's rules apply.
    for dependency in &wanted {
        access.tenancy.check_source(&dependency.repository)?;
    }
    let fetched = super::artifacts::chart_dependencies(pass, &access.client, snapshot, wanted).await?;
    pass.ctx.uses_too(pass.app_ref, fetched.iter().map(|d| d.dir.clone()));
    mem.dependencies = resolved_at.map(|at| (at, fetched.clone()));
    Ok(fetched)
}

/// spec.decryption's age keys, read as the Application's ServiceAccount (a tenant decrypts
/// only with keys it may read).
async fn decryption_keys(
    ctx: &Context,
    access: &Access,
    app: &Application,
) -> Result<Option<AgeKeys>, BuildError> {
    let Some(decryption) = &app.spec.decryption else { return Ok(None) };
    let namespace = app.metadata.namespace.as_deref().unwrap_or_default();
    let secret = crate::source::credentials::read_secret(
        &access.client,
        ctx.options.api_timeout,
        namespace,
        &decryption.secret_ref,
    )
    .await
    .map_err(|e| BuildError::DecryptionSecret(Box::new(e)))?;
    AgeKeys::from_secret_data(&secret.data.unwrap_or_default()).map(Some).map_err(BuildError::DecryptionKeys)
}

async fn render(
    pass: Pass<'_>,
    snapshot: &Snapshot,
    keys: Option<&AgeKeys>,
    dependencies: &[FetchedDependency],
) -> Result<Arc<Vec<DynamicObject>>, BuildError> {
    let Pass { ctx, app, cluster, .. } = pass;
    // Helm's .Capabilities and the kinds' scopes are those of the cluster deployed to.
    let scopes = cluster.scopes().await;
    let capabilities = cluster.capabilities().await;
    let req = RenderRequest {
        capabilities: Some(&capabilities),
        chart: snapshot.chart.as_deref(),
        decryption: keys,
        dependencies,
        ..RenderRequest::for_application(app, &snapshot.root)
    };
    let _timer = ctx.metrics.time(crate::metrics::Stage::Render);
    ctx.renders
        .get_or_render(&snapshot.revision.commit, &req, &ctx.options.render, scopes.as_ref())
        .await
        .map_err(|source| BuildError::Render { revision: snapshot.revision.clone(), source })
}

/// Resolves the kinds with the discovery ferry has, and once more with a fresh one when a kind
/// is unknown (maybe a CRD was installed since). Returns the applier for that discovery.
async fn resolve(
    pass: Pass<'_>,
    client: &kube::Client,
    desired: &mut [Desired],
    objects: &[DynamicObject],
) -> Result<Applier, KindsError> {
    let Pass { ctx, cluster, started, .. } = pass;
    let timeout = ctx.options.api_timeout;
    let crd_kinds = desired::crd_kinds(objects);
    let applier = Applier::with_discovery(client.clone(), cluster.discovery().await, timeout);
    if desired::resolve_kinds(desired, &applier, &crd_kinds).is_ok() {
        return Ok(applier);
    }
    let discovery = cluster.refresh_discovery(started).await.map_err(KindsError::Discovery)?;
    let applier = Applier::with_discovery(client.clone(), discovery, timeout);
    desired::resolve_kinds(desired, &applier, &crd_kinds)?;
    Ok(applier)
}

/// [`split`], remembered per render and `createNamespace` setting, so an unchanged revision
/// costs nothing here and a spec change takes effect at once.
async fn split_remembered(
    pass: Pass<'_>,
    client: &kube::Client,
    mem: &mut AppMemory,
    rendered: &Arc<Vec<DynamicObject>>,
) -> Result<Split, BuildError> {
    let Pass { ctx, app, app_ref, .. } = pass;
    let requested = requested_namespace(app, app_ref);
    if let Some(m) = &mem.split
        && Arc::ptr_eq(&m.source, rendered)
        && m.requested_namespace == requested
    {
        return Ok(Split {
            objects: m.objects.clone(),
            hooks: m.hooks.clone(),
            created_namespace: m.created_namespace.clone(),
        });
    }
    let reader = NamespaceReader { client, timeout: ctx.options.api_timeout };
    let split = split(reader, app, app_ref, rendered).await?;
    mem.split = Some(SplitRender {
        source: rendered.clone(),
        objects: split.objects.clone(),
        hooks: split.hooks.clone(),
        requested_namespace: requested,
        created_namespace: split.created_namespace.clone(),
    });
    Ok(split)
}

/// How [`split`] reads the destination Namespace: a client (the Application's) and the API timeout.
#[derive(Clone, Copy)]
pub struct NamespaceReader<'a> {
    pub client: &'a kube::Client,
    pub timeout: std::time::Duration,
}

/// The inventory of the last successful sync, as the status has it.
pub fn previous_inventory(app: &Application) -> Vec<InventoryEntry> {
    app.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default()
}

/// The render split into objects to sync and hooks, with the destination namespace
/// added first when ferry is to create it (a read of that Namespace decides).
pub async fn split(
    reader: NamespaceReader<'_>,
    app: &Application,
    app_ref: &AppRef,
    rendered: &Arc<Vec<DynamicObject>>,
) -> Result<Split, BuildError> {
    let previous = previous_inventory(app);
    let namespace = match requested_namespace(app, app_ref) {
        Some(name) => created_namespace(reader.client, reader.timeout, app_ref, &name, rendered, &previous)
            .await
            .map_err(BuildError::Namespace)?,
        None => None,
    };
    let created_namespace = namespace.as_ref().and_then(|n| n.metadata.name.clone());
    if namespace.is_none() && rendered.iter().all(crate::plan::hooks::is_plain) {
        return Ok(Split { objects: rendered.clone(), hooks: Arc::new(Vec::new()), created_namespace });
    }
    let (mut objects, hooks) = hooks::split(rendered, app_ref).map_err(BuildError::Hook)?;
    objects.splice(0..0, namespace);
    Ok(Split { objects: Arc::new(objects), hooks: Arc::new(hooks), created_namespace })
}

/// A hook as the tenancy checks see it (the render gave it its namespace).
fn hook_target(hook: &DynamicObject) -> Option<Target<'_>> {
    let types = hook.types.as_ref()?;
    let group = types.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    Some(Target {
        group,
        kind: &types.kind,
        name: hook.metadata.name.as_deref()?,
        namespace: hook.metadata.namespace.as_deref(),
    })
}
