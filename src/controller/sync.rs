//! One sync of one Application: fetch -> render -> plan -> validate -> apply -> prune -> health.
//!
//! Each stage has its own error variant. The order is the safety argument: nothing is written
//! before the fetch, the render, the ownership check and the server-side dry run of every
//! changed object have all succeeded, and prune runs only after every apply succeeded.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, ResourceExt,
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource, Scope},
};
use serde_json::Value;

use super::{
    context::Context,
    error::SyncError,
    hooks,
    memory::{AppMemory, Known, ObjKey, Prepared, PreparedObjects, SourceMemo, SplitRender, keeps_live},
    prunable::{Prunable, prunable},
    rollout,
    watches::Seen,
};
use crate::{
    api::{
        Application, GitRef, HealthStatusCode, InventoryEntry, RECONCILE_AT_ANNOTATION, VerificationPhase,
        VerificationStatus,
    },
    apply::{
        AppRef, Applier, ApplyError, MANIFEST_HASH, Ownership, all_previously_set, created_namespace,
        describe, inventory_entry, is_namespace, label_object, manifest_hash, ownership_of, prune_candidates,
        requested_namespace,
    },
    duration,
    health::{self, ObjectHealth, ObjectName},
    kube_util::api_words,
    metrics::Stage,
    plan::{Difference, Phase, first_difference, phase_of},
    render::RenderRequest,
    rollout::{types::Decision, workload as rollout_workload},
    source::{Credentials, Revision, Snapshot, SourceSpec},
    tenancy::Target,
};

/// How many objects a message lists before saying "and N more".
const LISTED: usize = 3;

/// Where the Application stands after a successful pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Live matches Git.
    Synced,
    /// Changes are pending and `automated: false`: reported, not applied.
    OutOfSync { message: String },
    /// Someone changed managed objects and `selfHeal: false`: reported, not reverted.
    Drifted { message: String },
}

/// The result of a successful pass.
#[derive(Debug)]
pub struct Synced {
    pub state: SyncState,
    pub health: ObjectHealth,
    pub inventory: Vec<InventoryEntry>,
    /// Objects applied (created or changed) in this pass.
    pub applied: Vec<String>,
    /// Of those, objects that had drifted.
    pub corrected: Vec<String>,
    pub pruned: Vec<String>,
    pub objects: usize,
    /// What the rollout decided this pass (Applications with a strategy).
    pub rollout: Option<Decision>,
    /// The PostSync hooks after this pass.
    pub verification: Option<VerificationStatus>,
}

/// A pass: the revision it worked on (when it got that far) and how it ended.
pub struct Attempt {
    pub revision: Option<Revision>,
    pub result: Result<Synced, SyncError>,
}

/// One rendered object on its way to the cluster.
struct Desired {
    prepared: Arc<Prepared>,
    /// `None` while its kind is served only once a CRD of this revision is installed.
    resource: Option<(ApiResource, ApiCapabilities)>,
}

impl std::ops::Deref for Desired {
    type Target = Prepared;

    fn deref(&self) -> &Prepared {
        &self.prepared
    }
}

impl Desired {
    /// The object as the tenancy checks see it: cluster-scoped when discovery says so, whatever
    /// namespace the manifest carries.
    fn target(&self) -> Target<'_> {
        let cluster_scoped = self.resource.as_ref().is_some_and(|(_, caps)| caps.scope == Scope::Cluster);
        let e = &self.entry;
        let namespace = if cluster_scoped { None } else { e.namespace.as_deref() };
        Target { group: &e.group, kind: &e.kind, name: &e.name, namespace }
    }

    /// The same object with other content (the primary as a rollout applies it), hashed anew.
    fn with_object(&self, value: Value) -> Prepared {
        let mut obj: DynamicObject = serde_json::from_value(value).expect("a rewritten object deserializes");
        let hash = manifest_hash(&mut obj);
        let p = &self.prepared;
        Prepared {
            obj,
            key: p.key.clone(),
            entry: p.entry.clone(),
            hash,
            name: p.name.clone(),
            phase: p.phase,
        }
    }

    /// The same cluster-scoped object without the namespace it was rendered with.
    fn without_namespace(&self) -> Prepared {
        let mut value = serde_json::to_value(&self.obj).expect("objects serialize");
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
        let mut p = self.with_object(value);
        p.entry.namespace = None;
        p.key.namespace = None;
        p.name = describe(&p.obj);
        p.phase = phase_of(&p.entry.group, &p.entry.kind, false);
        p
    }
}

/// A PostSync hook as the tenancy checks see it (the render gave it its namespace).
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

/// The prepared objects of `rendered`, from memory when it is the render prepared last time.
fn prepare(
    mem: &mut AppMemory,
    rendered: &Arc<Vec<DynamicObject>>,
    app_ref: &AppRef,
) -> Arc<Vec<Arc<Prepared>>> {
    if let Some((source, prepared)) = &mem.prepared
        && Arc::ptr_eq(source, rendered)
    {
        return prepared.clone();
    }
    let prepared: PreparedObjects = Arc::new(
        rendered
            .iter()
            .filter_map(|o| {
                let mut obj = o.clone();
                label_object(&mut obj, app_ref);
                let hash = manifest_hash(&mut obj);
                let entry = inventory_entry(&obj)?;
                let phase = phase_of(&entry.group, &entry.kind, entry.namespace.is_some());
                let (key, name) = (ObjKey::from(&entry), describe(&obj));
                Some(Arc::new(Prepared { obj, key, entry, hash, name, phase }))
            })
            .collect(),
    );
    mem.prepared = Some((rendered.clone(), prepared.clone()));
    prepared
}

/// What the plan decided for one object.
#[derive(Clone, Debug, PartialEq)]
enum Plan {
    InSync,
    Create,
    /// Git changed it (or ferry adopts it).
    Update,
    /// It changed in the cluster.
    Drift(String),
    /// It was deleted in the cluster (drift too): like Create, its namespace may be missing.
    Recreate,
}

/// Runs one pass for `app`.
pub async fn sync(ctx: &Context, app: &Application, app_ref: &AppRef, mem: &mut AppMemory) -> Attempt {
    let mut revision = None;
    let result = run(ctx, app, app_ref, mem, &mut revision).await;
    Attempt { revision, result }
}

async fn run(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    mem: &mut AppMemory,
    revision_out: &mut Option<Revision>,
) -> Result<Synced, SyncError> {
    let reconcile_started = Instant::now();
    let timeout = ctx.options.api_timeout;
    // The lockdown, before any fetch: who the Application acts as, what it may read, where to.
    let tenancy = ctx.tenancy(&app_ref.namespace);
    let sa = tenancy.service_account(app)?;
    tenancy.check_source(&app.spec.source.repo_url)?;
    tenancy.check_destination(
        app.spec.destination.as_ref().and_then(|d| d.namespace.as_deref()).unwrap_or(&app_ref.namespace),
    )?;
    let client =
        ctx.client_for(&app_ref.namespace, sa.as_deref()).map_err(|e| SyncError::Access(e.to_string()))?;

    // Fetch.
    let timer = ctx.metrics.time(Stage::Fetch);
    let snapshot = fetch(ctx, app, app_ref, &client, mem).await?;
    drop(timer);
    *revision_out = Some(snapshot.revision.clone());
    let revision = snapshot.revision.to_string();
    tracing::Span::current().record("revision", tracing::field::display(snapshot.revision.short()));

    // Render.
    let mut discovery = ctx.discovery().await;
    let scopes = ctx.scopes().await;
    let req = RenderRequest::for_application(app, &snapshot.root);
    let timer = ctx.metrics.time(Stage::Render);
    let rendered = ctx
        .renders
        .get_or_render(&snapshot.revision.commit, &req, &ctx.options.render, scopes.as_ref())
        .await
        .map_err(|source| SyncError::Render { revision: revision.clone(), source })?;
    drop(timer);
    let previous = app.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default();
    let (rendered, hooks, created) =
        split_render(ctx, app, app_ref, &client, mem, &rendered, &previous).await?;

    // Desired objects: labelled, hashed, kinds resolved. Timed as part of the plan, with the
    // server-side dry runs that validate it.
    let plan_timer = ctx.metrics.time(Stage::Plan);
    let crd_kinds = crd_kinds(&rendered);
    let mut desired: Vec<Desired> = prepare(mem, &rendered, app_ref)
        .iter()
        .map(|prepared| Desired { prepared: prepared.clone(), resource: None })
        .collect();
    let mut applier = Applier::with_discovery(client.clone(), discovery.clone(), timeout);
    if resolve_kinds(&mut desired, &applier, &crd_kinds).is_err() {
        // Maybe a CRD was installed since the last discovery.
        discovery = ctx
            .refresh_discovery(reconcile_started)
            .await
            .map_err(|e| SyncError::Discovery(e.to_string()))?;
        applier = Applier::with_discovery(client.clone(), discovery.clone(), timeout);
        resolve_kinds(&mut desired, &applier, &crd_kinds).map_err(SyncError::Validation)?;
    }
    let previous = in_scope(previous, applier.discovery());
    tenancy.check_objects(desired.iter().map(Desired::target).chain(hooks.iter().filter_map(hook_target)))?;

    // A strategy decides how Git's Deployment (and its route or Services) are applied this pass.
    let rollout = match rollout::workload_of(app) {
        None => None,
        Some(workload) => {
            let find = |group: &str, kind: &str, name: &str| {
                let i = desired
                    .iter()
                    .position(|d| d.entry.group == group && d.entry.kind == kind && d.entry.name == name)?;
                let d = &desired[i];
                Some((i, &d.obj, d.resource.as_ref()?))
            };
            let autoscaled = desired.iter().any(|d| {
                d.entry.kind == "HorizontalPodAutoscaler"
                    && rollout_workload::autoscales(
                        &serde_json::to_value(&d.obj).unwrap_or_default(),
                        workload,
                    )
            });
            let pass = rollout::decide(ctx, app, mem, &applier, &find, autoscaled, &revision).await?;
            for (i, obj) in pass.rewrites() {
                desired[i].prepared = Arc::new(desired[i].with_object(obj));
            }
            Some(pass)
        }
    };

    // Plan: what differs, what another Application owns.
    let previous_keys: HashSet<ObjKey> = previous.iter().map(ObjKey::from).collect();
    let plans = plan(ctx, app_ref, mem, &applier, &desired, &previous_keys).await?;
    let conflicts: Vec<(AppRef, String)> = plans
        .iter()
        .zip(&desired)
        .filter_map(|(p, d)| p.owner.clone().map(|o| (o, d.name.clone())))
        .collect();
    report_claims(ctx, app_ref, &conflicts).await;
    if !conflicts.is_empty() {
        let listed =
            list(conflicts.iter().map(|(owner, obj)| format!("{obj} belongs to Application {owner}")));
        return Err(SyncError::Conflict(format!(
            "{listed}; ferry does not take over objects of another Application, so nothing of {revision} was applied"
        )));
    }

    // Prune candidates (checked before anything is written, so an empty render writes nothing).
    let entries: Vec<InventoryEntry> = sorted_inventory(&desired);
    let policy = &app.spec.sync_policy;
    refuse_emptied(&previous, &entries, created.as_deref(), policy.allow_empty)?;
    let candidates =
        prune_candidates(&previous, &entries, true, |_| false).map_err(SyncError::PruneRefused)?;
    let to_prune =
        if policy.prune { prunable(ctx, &applier, app_ref, &candidates).await? } else { Vec::new() };

    let changed: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].plan != Plan::InSync).collect();
    let drifted: Vec<String> = plans
        .iter()
        .zip(&desired)
        .filter_map(|(p, d)| match &p.plan {
            Plan::Drift(diff) => Some(format!("{} ({diff})", d.name)),
            Plan::Recreate => Some(format!("{} (deleted in the cluster)", d.name)),
            _ => None,
        })
        .collect();
    let pending = changed.len() + to_prune.len();
    let objects = desired.len();
    tracing::debug!(
        app = %app_ref,
        %revision,
        objects,
        changed = changed.len(),
        drifted = drifted.len(),
        prune = to_prune.len(),
        "planned"
    );

    // Pending changes that are only reported: the live objects and the inventory stay as they are.
    let mut report_only = |state| Synced {
        state,
        health: assess(mem, &desired, ctx.options.health_timeout, &revision),
        inventory: previous.clone(),
        applied: vec![],
        corrected: vec![],
        pruned: vec![],
        objects,
        rollout: None,
        verification: app.status.as_ref().and_then(|s| s.verification.clone()),
    };
    if pending > 0 && !policy.automated {
        let names =
            changed.iter().map(|i| desired[*i].name.clone()).chain(to_prune.iter().map(|p| p.name.clone()));
        let message = format!(
            "{} to sync at {revision} (automated sync is off): {}",
            count(pending, "object"),
            list(names)
        );
        return Ok(report_only(SyncState::OutOfSync { message }));
    }
    let only_drift = to_prune.is_empty() && drifted.len() == changed.len();
    if pending > 0 && only_drift && !policy.self_heal {
        let message = format!("changed in the cluster (selfHeal is off): {}", list(drifted.iter().cloned()));
        return Ok(report_only(SyncState::Drifted { message }));
    }

    // Serialising the previous manifests costs something for large Applications: only when needed.
    let previous_manifests =
        if changed.iter().any(|&i| plans[i].ours) { previous_manifests(mem) } else { HashMap::new() };
    // What ferry applied before, per object: the fields whose conflicts it may force.
    let bases: HashMap<usize, Value> = changed
        .iter()
        .filter(|&&i| plans[i].ours)
        .filter_map(|&i| {
            let d = &desired[i];
            let base = if plans[i].live_hash.as_ref() == Some(&d.hash) {
                serde_json::to_value(&d.obj).ok()
            } else {
                previous_manifests.get(&d.key).cloned()
            };
            Some((i, base?))
        })
        .collect();
    let force_ok = |i: usize| -> Option<Value> { bases.get(&i).cloned() };

    // Validate: a server-side dry run of every changed object whose kind and namespace exist.
    let new_namespaces: HashSet<String> = changed
        .iter()
        .filter(|i| desired[**i].entry.group.is_empty() && desired[**i].entry.kind == "Namespace")
        .filter(|&&i| matches!(plans[i].plan, Plan::Create | Plan::Recreate))
        .map(|i| desired[*i].entry.name.clone())
        .collect();
    let deferred = |d: &Desired| {
        d.resource.is_none() || d.entry.namespace.as_ref().is_some_and(|ns| new_namespaces.contains(ns))
    };
    let now: Vec<usize> = changed.iter().copied().filter(|i| !deferred(&desired[*i])).collect();
    validate(&applier, &desired, &now, &force_ok, ctx.options.apply_parallelism).await?;
    drop(plan_timer);

    // Apply, phase by phase.
    let apply_timer = ctx.metrics.time(Stage::Apply);
    let mut applied = Vec::new();
    let mut crds_established = reconcile_started;
    for phase in Phase::ALL {
        let batch: Vec<usize> = changed.iter().copied().filter(|i| desired[*i].phase == phase).collect();
        if batch.is_empty() {
            continue;
        }
        let late: Vec<usize> = batch.iter().copied().filter(|i| deferred(&desired[*i])).collect();
        if !late.is_empty() {
            if late.iter().any(|i| desired[*i].resource.is_none()) {
                discovery = ctx
                    .refresh_discovery(crds_established)
                    .await
                    .map_err(|e| SyncError::Discovery(e.to_string()))?;
                applier = Applier::with_discovery(client.clone(), discovery.clone(), timeout);
                resolve_kinds(&mut desired, &applier, &HashSet::new()).map_err(SyncError::Validation)?;
            }
            validate(&applier, &desired, &late, &force_ok, ctx.options.apply_parallelism).await?;
        }
        let results: Vec<(usize, Result<DynamicObject, ApplyError>)> = stream::iter(batch.iter().copied())
            .map(|i| {
                let applier = &applier;
                let prev = force_ok(i);
                let d = &desired[i];
                async move { (i, apply_one(applier, d, prev.as_ref(), false).await) }
            })
            .buffer_unordered(ctx.options.apply_parallelism)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (i, result) in results {
            match result {
                Ok(live) => {
                    remember(mem, &desired[i], &live);
                    applied.push(i);
                }
                Err(e) => failures.push(e),
            }
        }
        ctx.metrics.objects_applied("failed", failures.len());
        if let Some(first) = failures.first() {
            let transient = failures.iter().all(ApplyError::is_transient);
            let message = format!(
                "applying {revision} stopped in phase {phase:?}: {}",
                list(failures.iter().map(ToString::to_string))
            );
            tracing::warn!(app = %app_ref, error = %first, "apply failed");
            return Err(SyncError::Apply { message, transient });
        }
        if phase == Phase::Crds {
            wait_established(ctx, &desired, &batch).await?;
            crds_established = Instant::now();
        }
    }

    drop(apply_timer);
    let created = applied.iter().filter(|&&i| matches!(plans[i].plan, Plan::Create | Plan::Recreate)).count();
    ctx.metrics.objects_applied("created", created);
    ctx.metrics.objects_applied("updated", applied.len() - created);

    // Prune, in reverse apply order.
    let prune_timer = ctx.metrics.time(Stage::Prune);
    let mut pruned = Vec::new();
    for p in &to_prune {
        if is_released(p, &entries) {
            release_namespace(ctx, app, &applier, p).await?;
        } else {
            p.delete(&applier).await?;
            ctx.metrics.objects_pruned(1);
            pruned.push(p.name.clone());
        }
        mem.known.remove(&ObjKey::from(&p.entry));
    }
    drop(prune_timer);
    if let Some(pass) = &rollout {
        rollout::converge_canary(&applier, pass).await?;
    }

    if !applied.is_empty() || !pruned.is_empty() {
        tracing::info!(app = %app_ref, %revision, applied = applied.len(), pruned = pruned.len(), "synced");
    }
    mem.last_applied = Some(rendered.clone());
    let corrected = applied
        .iter()
        .filter(|&&i| matches!(plans[i].plan, Plan::Drift(_) | Plan::Recreate))
        .map(|i| desired[*i].name.clone())
        .collect();
    let timer = ctx.metrics.time(Stage::Health);
    let mut health = assess(mem, &desired, ctx.options.health_timeout, &revision);
    drop(timer);
    let rollout = rollout.map(|pass| pass.decision);
    if let Some((code, message)) = rollout.as_ref().and_then(|d| d.health.clone()) {
        health = ObjectHealth::new(code, message);
    }

    // PostSync hooks, once the revision is Healthy; until they succeed it is not.
    let previous_verification = app.status.as_ref().and_then(|s| s.verification.as_ref());
    let healthy = health.status == HealthStatusCode::Healthy;
    let verification = hooks::converge(
        ctx,
        &applier,
        app_ref,
        hooks::Verify { hooks: &hooks, revision: &revision, previous: previous_verification, healthy },
    )
    .await?;
    if let Some(v) = verification.as_ref().filter(|v| v.revision == revision) {
        let message = v.message.clone().unwrap_or_default();
        match v.phase {
            VerificationPhase::Running => health = ObjectHealth::new(HealthStatusCode::Progressing, message),
            VerificationPhase::Failed => health = ObjectHealth::new(HealthStatusCode::Degraded, message),
            VerificationPhase::Succeeded => {}
        }
    }
    Ok(Synced {
        state: SyncState::Synced,
        health,
        inventory: entries,
        applied: applied.iter().map(|i| desired[*i].name.clone()).collect(),
        corrected,
        pruned,
        objects,
        rollout,
        verification,
    })
}

/// The objects to sync, the PostSync hooks, and the name of the Namespace ferry added to them.
type Split = (Arc<Vec<DynamicObject>>, Arc<Vec<DynamicObject>>, Option<String>);

/// The render split into objects to sync and PostSync hooks, with the destination namespace
/// added when ferry is to create it; remembered per render and `createNamespace` setting, so an
/// unchanged revision costs nothing here and a spec change takes effect at once.
async fn split_render(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    client: &kube::Client,
    mem: &mut AppMemory,
    rendered: &Arc<Vec<DynamicObject>>,
    previous: &[InventoryEntry],
) -> Result<Split, SyncError> {
    let requested = requested_namespace(app, app_ref);
    if let Some(m) = &mem.split
        && Arc::ptr_eq(&m.source, rendered)
        && m.requested_namespace == requested
    {
        return Ok((m.objects.clone(), m.hooks.clone(), m.created_namespace.clone()));
    }
    let namespace = match &requested {
        Some(name) => created_namespace(client, ctx.options.api_timeout, app_ref, name, rendered, previous)
            .await
            .map_err(|e| SyncError::Apply { message: e.to_string(), transient: true })?,
        None => None,
    };
    let created = namespace.as_ref().and_then(|n| n.metadata.name.clone());
    let (objects, hooks) = if namespace.is_none() && !rendered.iter().any(crate::api::is_hook) {
        (rendered.clone(), Arc::new(Vec::new()))
    } else {
        let (mut objects, hooks) = hooks::split(rendered, app_ref)?;
        objects.splice(0..0, namespace);
        (Arc::new(objects), Arc::new(hooks))
    };
    mem.split = Some(SplitRender {
        source: rendered.clone(),
        objects: objects.clone(),
        hooks: hooks.clone(),
        requested_namespace: requested,
        created_namespace: created.clone(),
    });
    Ok((objects, hooks, created))
}

/// The empty-render guard judges what Git rendered: the Namespace ferry adds for
/// `createNamespace` is not Git's, and counting it would let a revision that renders nothing
/// prune everything else.
// The pipeline's one error type, as every stage returns it.
#[allow(clippy::result_large_err)]
fn refuse_emptied(
    previous: &[InventoryEntry],
    entries: &[InventoryEntry],
    created: Option<&str>,
    allow_empty: bool,
) -> Result<(), SyncError> {
    let from_git = |e: &&InventoryEntry| created.is_none_or(|n| !is_namespace(e, n));
    let before: Vec<InventoryEntry> = previous.iter().filter(from_git).cloned().collect();
    let rendered: Vec<InventoryEntry> = entries.iter().filter(from_git).cloned().collect();
    prune_candidates(&before, &rendered, allow_empty, |_| false).map(drop).map_err(SyncError::PruneRefused)
}

/// Whether a prune candidate is a Namespace to release rather than delete: one ferry created for
/// `createNamespace` (like Argo CD and Helm, ferry never deletes a namespace it created only as
/// a destination: others may keep things in it), or one that objects of this revision still
/// live in (deleting it would delete them).
fn is_released(p: &Prunable, entries: &[InventoryEntry]) -> bool {
    is_namespace(&p.entry, &p.entry.name)
        && (p.is_created_namespace() || entries.iter().any(|e| e.namespace.as_deref() == Some(&p.entry.name)))
}

/// Gives a Namespace up: applying the bare Namespace as ferry removes every label and annotation
/// ferry set on it (its ownership among them) and nothing else. It stays, with all it holds.
async fn release_namespace(
    ctx: &Context,
    app: &Application,
    applier: &Applier,
    p: &Prunable,
) -> Result<(), SyncError> {
    let bare =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": p.entry.name}});
    let obj: DynamicObject = serde_json::from_value(bare).expect("a Namespace deserializes");
    applier.apply(&obj, false).await.map_err(SyncError::from_apply)?;
    tracing::info!(namespace = %p.entry.name, "released a namespace instead of pruning it");
    let note = format!(
        "Namespace {} is no longer part of this Application; ferry removed its labels and left it, with everything in it, in place (delete it yourself if it is no longer needed)",
        p.entry.name
    );
    let normal = kube::runtime::events::EventType::Normal;
    super::events::publish(ctx, app, normal, super::events::NAMESPACE_RELEASED, &note).await;
    Ok(())
}

/// The inventory with the namespace of cluster-scoped kinds dropped: one recorded while
/// discovery did not know such a kind names the object with a namespace, and must still match
/// the same object rendered without (else it would be pruned while wanted).
fn in_scope(mut entries: Vec<InventoryEntry>, discovery: &kube::Discovery) -> Vec<InventoryEntry> {
    for e in entries.iter_mut().filter(|e| e.namespace.is_some()) {
        let gvk = kube::api::GroupVersionKind::gvk(&e.group, &e.version, &e.kind);
        if discovery.resolve_gvk(&gvk).is_some_and(|(_, caps)| caps.scope == kube::discovery::Scope::Cluster)
        {
            e.namespace = None;
        }
    }
    entries
}

/// The snapshot to sync: the one resolved earlier in this interval, or a fresh resolve (one
/// `ls-remote`) and, only when the commit is new, a fetch.
async fn fetch(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    client: &kube::Client,
    mem: &mut AppMemory,
) -> Result<Snapshot, SyncError> {
    let reconcile_at = app.annotations().get(RECONCILE_AT_ANNOTATION).cloned();
    let interval = duration::parse(&app.spec.interval).unwrap_or(Duration::from_secs(180));
    let mut source = app.spec.source.clone();
    let promoted = match &source.git_ref.from_application {
        Some(upstream) => Some(promoted_commit(ctx, app_ref, upstream)?),
        None => None,
    };
    if let Some(commit) = &promoted {
        source.git_ref = GitRef { commit: Some(commit.clone()), ..Default::default() };
    }
    if let Some(memo) = &mem.source {
        let fresh = memo.generation == app.metadata.generation
            && memo.reconcile_at == reconcile_at
            && promoted.as_ref().is_none_or(|c| *c == memo.snapshot.revision.commit)
            && memo.resolved_at.elapsed() < interval;
        if fresh && memo.snapshot.root.is_dir() {
            return Ok(memo.snapshot.clone());
        }
    }
    let credentials =
        credentials(ctx, client, &app_ref.namespace, app.spec.source.secret_ref.as_ref()).await?;
    let spec = SourceSpec::from_source(&source, credentials);
    let started = Instant::now();
    let snapshot = ctx.git.fetch_within(&spec, listing_max_age(ctx, mem, &reconcile_at, interval)).await;
    ctx.metrics.git_fetch(snapshot.is_ok(), started.elapsed());
    let snapshot = snapshot.map_err(SyncError::Fetch)?;
    ctx.syncs_from(app_ref, &snapshot.root);
    mem.source = Some(SourceMemo {
        generation: app.metadata.generation,
        reconcile_at,
        resolved_at: Instant::now(),
        snapshot: snapshot.clone(),
    });
    Ok(snapshot)
}

/// The Git credentials `secret_ref` names, read as `client` with the API timeout (see
/// [`crate::source::credentials::from_secret_ref`]).
pub async fn credentials(
    ctx: &Context,
    client: &kube::Client,
    namespace: &str,
    secret_ref: Option<&crate::api::LocalObjectReference>,
) -> Result<Option<Credentials>, SyncError> {
    crate::source::credentials::from_secret_ref(client, ctx.options.api_timeout, namespace, secret_ref)
        .await
        .map_err(SyncError::from)
}

/// The commit an Application with `ref.fromApplication` deploys: the one the Application it
/// follows last verified (Synced, Healthy, hooks passed).
// The pipeline's one error type, as every stage returns it.
#[allow(clippy::result_large_err)]
fn promoted_commit(
    ctx: &Context,
    app_ref: &AppRef,
    upstream: &crate::api::ApplicationReference,
) -> Result<String, SyncError> {
    let namespace = upstream.namespace.clone().unwrap_or_else(|| app_ref.namespace.clone());
    ctx.tenancy(&app_ref.namespace).check_follow(
        &namespace,
        &upstream.name,
        &ctx.options.promotion_namespaces,
    )?;
    let name = format!("{namespace}/{}", upstream.name);
    if upstream.name == app_ref.name && namespace == app_ref.namespace {
        return Err(SyncError::Validation(
            "spec.source.ref.fromApplication names this Application itself".into(),
        ));
    }
    let key = kube::runtime::reflector::ObjectRef::new(&upstream.name).within(&namespace);
    let Some(followed) = ctx.apps.get(&key) else {
        return Err(SyncError::Waiting(format!(
            "waiting for Application {name} (spec.source.ref.fromApplication), which does not exist"
        )));
    };
    let verified = followed.status.as_ref().and_then(|s| s.verified_revision.as_deref());
    match verified.and_then(|r| r.rsplit_once("sha1:")).map(|(_, sha)| sha) {
        Some(sha) if sha.len() == 40 => Ok(sha.to_string()),
        _ => Err(SyncError::Waiting(format!(
            "waiting for Application {name} to verify a revision (Synced, Healthy and its PostSync hooks passed)"
        ))),
    }
}

/// How old a shared ls-remote of the repository may be for this fetch. A requested sync (a new
/// `ferry.dev/reconcile-at`: a webhook, `ferry sync`) lists afresh, since it exists because
/// Git just changed; otherwise half the interval at most, so that a new commit is seen within
/// 1.5 intervals whatever the other Applications on the repository do.
fn listing_max_age(
    ctx: &Context,
    mem: &AppMemory,
    reconcile_at: &Option<String>,
    interval: Duration,
) -> Duration {
    let requested = mem.source.as_ref().is_some_and(|m| &m.reconcile_at != reconcile_at);
    if requested { Duration::ZERO } else { ctx.options.git_ref_cache.min(interval / 2) }
}

/// (group, kind) of every CustomResourceDefinition in the render.
fn crd_kinds(objects: &[DynamicObject]) -> HashSet<(String, String)> {
    objects
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "CustomResourceDefinition"))
        .filter_map(|o| {
            let group = o.data.pointer("/spec/group")?.as_str()?;
            let kind = o.data.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_string(), kind.to_string()))
        })
        .collect()
}

/// Resolves every object's kind through discovery. Kinds a CRD of this revision defines may stay
/// unresolved until it is installed; any other unknown kind is an error naming the objects.
fn resolve_kinds(
    desired: &mut [Desired],
    applier: &Applier,
    crd_kinds: &HashSet<(String, String)>,
) -> Result<(), String> {
    let mut unknown = Vec::new();
    for d in desired.iter_mut() {
        match applier.resolve(&d.obj) {
            Ok(r) => {
                if r.1.scope == kube::discovery::Scope::Cluster && d.entry.namespace.is_some() {
                    // Rendered while discovery did not know the kind, so defaulted to namespaced.
                    // The API server ignores the namespace; the inventory must too, or the next
                    // render (which knows) would name another object and prune this one.
                    d.prepared = Arc::new(d.without_namespace());
                }
                d.resource = Some(r)
            }
            Err(_) if crd_kinds.contains(&(d.entry.group.clone(), d.entry.kind.clone())) => d.resource = None,
            Err(e) => unknown.push(e.to_string()),
        }
    }
    if unknown.is_empty() { Ok(()) } else { Err(list(unknown.into_iter())) }
}

struct ObjectPlan {
    plan: Plan,
    /// The Application that owns the object, when it is another one.
    owner: Option<AppRef>,
    /// The object carries this Application's labels.
    ours: bool,
    /// The manifest hash on the live object.
    live_hash: Option<String>,
}

/// Decides, for every resolved object, whether it needs a write. The watch answers for objects
/// whose resourceVersion ferry already checked; the others are read once.
async fn plan(
    ctx: &Context,
    app_ref: &AppRef,
    mem: &mut AppMemory,
    applier: &Applier,
    desired: &[Desired],
    previous: &HashSet<ObjKey>,
) -> Result<Vec<ObjectPlan>, SyncError> {
    let mut out: Vec<Option<ObjectPlan>> = desired.iter().map(|_| None).collect();
    let mut to_read = Vec::new();
    let mut owners = HashMap::new();
    let mut started: HashSet<ApiResource> = HashSet::new();
    for (i, d) in desired.iter().enumerate() {
        let Some((resource, caps)) = &d.resource else {
            out[i] = Some(ObjectPlan { plan: Plan::Create, owner: None, ours: false, live_hash: None });
            continue;
        };
        if started.insert(resource.clone()) {
            let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
            ctx.watches.ensure(resource, namespaced, ctx.options.api_timeout).await;
        }
        match ctx.watches.seen(resource, d.entry.namespace.as_deref(), &d.entry.name) {
            Seen::Present { resource_version, labels } => {
                let ownership = ownership_of(Some(&labels), app_ref);
                if let Ownership::Other(owner) = ownership {
                    if owner_exists(ctx, &mut owners, &owner).await? {
                        let plan = ObjectPlan {
                            plan: Plan::InSync,
                            owner: Some(owner),
                            ours: false,
                            live_hash: None,
                        };
                        out[i] = Some(plan);
                    } else {
                        to_read.push(i);
                    }
                    continue;
                }
                let unchanged = mem
                    .known
                    .get(&d.key)
                    .is_some_and(|k| k.resource_version == resource_version && k.hash == d.hash);
                if unchanged && ownership == Ownership::Ours {
                    let plan = ObjectPlan {
                        plan: Plan::InSync,
                        owner: None,
                        ours: true,
                        live_hash: Some(d.hash.clone()),
                    };
                    out[i] = Some(plan);
                } else {
                    to_read.push(i);
                }
            }
            // ferry applied it, but the watch has not caught up yet (or someone deleted it).
            Seen::Absent if mem.known.contains_key(&d.key) => to_read.push(i),
            // Not labelled by any Application: it does not exist, or ferry adopts it with the apply.
            Seen::Absent => out[i] = Some(missing(d, previous)),
            Seen::Unknown => to_read.push(i),
        }
    }

    let reads: Vec<(usize, Result<Option<DynamicObject>, ApplyError>)> = stream::iter(to_read)
        .map(|i| async move {
            let d = &desired[i];
            let (resource, caps) = d.resource.as_ref().expect("resolved above");
            (i, applier.get(&d.name, resource, caps, d.entry.namespace.as_deref(), &d.entry.name).await)
        })
        .buffer_unordered(ctx.options.apply_parallelism)
        .collect()
        .await;
    let mut refused = Vec::new();
    let mut settle = Vec::new();
    for (i, read) in reads {
        let d = &desired[i];
        let live = match read {
            Ok(live) => live,
            Err(e) if e.is_transient() => return Err(SyncError::from_apply(e)),
            Err(e) => {
                refused.push(e.to_string());
                continue;
            }
        };
        let Some(live) = live else {
            mem.known.remove(&d.key);
            out[i] = Some(missing(d, previous));
            continue;
        };
        let ownership = ownership_of(live.metadata.labels.as_ref(), app_ref);
        let live_hash = live.annotations().get(MANIFEST_HASH).cloned();
        let ours = ownership == Ownership::Ours;
        // An object of an Application that is gone (deleted with the Orphan policy) is free to adopt.
        if let Ownership::Other(owner) = ownership
            && owner_exists(ctx, &mut owners, &owner).await?
        {
            out[i] = Some(ObjectPlan { plan: Plan::InSync, owner: Some(owner), ours, live_hash });
            continue;
        }
        let want = serde_json::to_value(&d.obj).expect("objects serialize");
        let have = serde_json::to_value(&live).expect("objects serialize");
        let plan = match first_difference(&want, &have) {
            None => {
                remember(mem, d, &live);
                Plan::InSync
            }
            Some(diff) if live_hash.as_deref() == Some(d.hash.as_str()) => {
                settle.push((i, live));
                Plan::Drift(shown(d, &diff))
            }
            Some(_) => Plan::Update,
        };
        out[i] = Some(ObjectPlan { plan, owner: None, ours, live_hash });
    }
    if !refused.is_empty() {
        return Err(SyncError::Validation(list(refused.into_iter())));
    }

    // A local difference may be a false alarm (`0.5` against `500m`, a field the API server
    // fills in inside a list element): the dry run says what an apply would really change.
    for (i, live) in settle {
        let d = &desired[i];
        let Ok(result) = applier.dry_run(&d.obj, true).await else { continue };
        if same_content(&result, &live) {
            remember(mem, d, &live);
            if let Some(p) = out[i].as_mut() {
                p.plan = Plan::InSync;
            }
        }
    }
    Ok(out.into_iter().map(|p| p.expect("every object is planned")).collect())
}

/// The plan for an object that does not exist: deleted in the cluster (drift) when the last
/// successful sync applied it, new otherwise.
fn missing(d: &Desired, previous: &HashSet<ObjKey>) -> ObjectPlan {
    let plan = if previous.contains(&d.key) { Plan::Recreate } else { Plan::Create };
    ObjectPlan { plan, owner: None, ours: false, live_hash: None }
}

/// Whether the Application named by an object's labels still exists (answers cached per pass).
async fn owner_exists(
    ctx: &Context,
    cache: &mut HashMap<AppRef, bool>,
    owner: &AppRef,
) -> Result<bool, SyncError> {
    if let Some(known) = cache.get(owner) {
        return Ok(*known);
    }
    let apps: Api<Application> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let transient = |message: String| SyncError::Apply { message, transient: true };
    let found = tokio::time::timeout(ctx.options.api_timeout, apps.get_opt(&owner.name))
        .await
        .map_err(|_| transient(format!("reading Application {owner} timed out")))?
        .map_err(|e| transient(format!("reading Application {owner}: {}", api_words(&e))))?;
    cache.insert(owner.clone(), found.is_some());
    Ok(found.is_some())
}

/// A difference as shown in messages; Secret values never are.
fn shown(d: &Desired, diff: &Difference) -> String {
    if d.entry.group.is_empty() && d.entry.kind == "Secret" { diff.path.clone() } else { diff.to_string() }
}

/// Whether a dry-run result and the live object hold the same content, ignoring what the API
/// server changes on every write anyway.
fn same_content(a: &DynamicObject, b: &DynamicObject) -> bool {
    let strip = |o: &DynamicObject| {
        let mut v = serde_json::to_value(o).expect("objects serialize");
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"] {
                meta.remove(k);
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Records that `live` matches `d`.
fn remember(mem: &mut AppMemory, d: &Desired, live: &DynamicObject) {
    let keep = keeps_live(&d.entry.group, &d.entry.kind);
    mem.known.insert(
        d.key.clone(),
        Known {
            resource_version: live.metadata.resource_version.clone().unwrap_or_default(),
            hash: d.hash.clone(),
            live: keep.then(|| Arc::new(serde_json::to_value(live).expect("objects serialize"))),
        },
    );
}

/// The manifests of the last revision applied, by object.
fn previous_manifests(mem: &AppMemory) -> HashMap<ObjKey, Value> {
    let Some(objs) = &mem.last_applied else { return HashMap::new() };
    objs.iter()
        .filter_map(|o| Some((ObjKey::from(&inventory_entry(o)?), serde_json::to_value(o).ok()?)))
        .collect()
}

/// Server-side apply (or its dry run) forcing conflicts only on fields ferry set before.
async fn apply_one(
    applier: &Applier,
    d: &Desired,
    previous: Option<&Value>,
    dry_run: bool,
) -> Result<DynamicObject, ApplyError> {
    let attempt =
        if dry_run { applier.dry_run(&d.obj, false).await } else { applier.apply(&d.obj, false).await };
    match attempt {
        Err(ApplyError::Conflict { conflicts, .. })
            if previous.is_some_and(|p| all_previously_set(&conflicts, p)) =>
        {
            if dry_run {
                applier.dry_run(&d.obj, true).await
            } else {
                applier.apply(&d.obj, true).await
            }
        }
        Err(ApplyError::Conflict { object, message, .. }) => Err(ApplyError::Refused {
            object,
            code: 409,
            reason: "Conflict".into(),
            message: format!(
                "{message} (ferry forces only fields it applied before; remove the field from Git or from the other manager)"
            ),
        }),
        other => other,
    }
}

/// Dry-runs `which` objects; any refusal fails the whole sync before anything is written.
async fn validate(
    applier: &Applier,
    desired: &[Desired],
    which: &[usize],
    force_ok: &(dyn Fn(usize) -> Option<Value> + Sync),
    parallelism: usize,
) -> Result<(), SyncError> {
    let results: Vec<Result<DynamicObject, ApplyError>> = stream::iter(which.iter().copied())
        .map(|i| {
            let prev = force_ok(i);
            async move { apply_one(applier, &desired[i], prev.as_ref(), true).await }
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let errors: Vec<ApplyError> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        return Ok(());
    }
    if errors.iter().all(ApplyError::is_transient) {
        return Err(SyncError::from_apply(errors.into_iter().next().expect("not empty")));
    }
    let refused = errors.iter().filter(|e| !e.is_transient()).map(ToString::to_string);
    Err(SyncError::Validation(format!("{}; nothing was applied", list(refused))))
}

/// Waits until the CRDs applied in `batch` are Established, so their kinds can be served.
async fn wait_established(ctx: &Context, desired: &[Desired], batch: &[usize]) -> Result<(), SyncError> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in batch {
        let name = &desired[*i].entry.name;
        loop {
            let crd = tokio::time::timeout(ctx.options.api_timeout, crds.get_opt(name)).await;
            let established = matches!(&crd, Ok(Ok(Some(c))) if c.status.as_ref().and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True")));
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(SyncError::Apply {
                    message: format!("CustomResourceDefinition {name} was not Established within 60s"),
                    transient: true,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Registers the objects this Application claims from others and tells each owner once.
async fn report_claims(ctx: &Context, app_ref: &AppRef, conflicts: &[(AppRef, String)]) {
    for (owner, object) in ctx.claims.set(app_ref, conflicts) {
        super::events::on_other(
            ctx,
            &owner,
            kube::runtime::events::EventType::Warning,
            super::events::OWNERSHIP_CONFLICT,
            &format!("Application {app_ref} also claims {object}, which this Application owns; it was left unchanged"),
        )
        .await;
    }
}

/// The Application's health from the live objects ferry has seen, with the progress deadline.
fn assess(mem: &mut AppMemory, desired: &[Desired], deadline: Duration, revision: &str) -> ObjectHealth {
    // Kinds whose live object is not kept (ConfigMaps, Secrets, RBAC) are healthy when they exist.
    let blank = Value::Object(Default::default());
    let mut health = health::aggregate(desired.iter().map(|d| {
        let name = ObjectName::from(&d.entry);
        let live = mem.known.get(&d.key).map(|k| k.live.as_deref().unwrap_or(&blank));
        (name, live)
    }));
    if health.status == HealthStatusCode::Progressing {
        let since = match &mem.progressing_since {
            Some((rev, since)) if rev == revision => *since,
            _ => {
                mem.progressing_since = Some((revision.to_string(), Instant::now()));
                Instant::now()
            }
        };
        if since.elapsed() > deadline {
            let message = format!(
                "still progressing after {}s: {}",
                deadline.as_secs(),
                health.message.clone().unwrap_or_default()
            );
            health = ObjectHealth::new(HealthStatusCode::Degraded, message);
        }
    } else {
        mem.progressing_since = None;
    }
    health
}

fn sorted_inventory(desired: &[Desired]) -> Vec<InventoryEntry> {
    let set: BTreeSet<InventoryEntry> = desired.iter().map(|d| d.entry.clone()).collect();
    set.into_iter().collect()
}

/// `a; b; c and 4 more`.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let shown = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join("; ");
    match items.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
    }
}

pub(crate) fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_bounded() {
        let items = (1..=5).map(|i| format!("o{i}"));
        assert_eq!(list(items), "o1; o2; o3; and 2 more");
        assert_eq!(list(["a".to_string()].into_iter()), "a");
        assert_eq!(count(1, "object"), "1 object");
        assert_eq!(count(2, "object"), "2 objects");
    }

    #[test]
    fn crds_in_the_render_name_the_kinds_they_serve() {
        let crd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}}
        }))
        .unwrap();
        assert_eq!(crd_kinds(&[crd]), HashSet::from([("example.com".to_string(), "Widget".to_string())]));
    }
}
