//! Validate and apply: a server-side dry run of every changed object before anything is written,
//! then server-side apply phase by phase (CRDs first, and Established before their custom
//! resources; Namespaces before what lives in them). Conflicts are forced only on fields ferry
//! applied before.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, api::DynamicObject};
use serde_json::Value;

use super::{
    build::Built,
    decide::ObjectPlan,
    desired::{self, Desired, remember},
    pass::Pass,
};
use crate::controller::clusters::ClusterId;
use crate::{
    apply::{Applier, ApplyError, all_previously_set, inventory_entry},
    controller::{
        error::{ApplyStageError, KindsError, ValidateError},
        memory::{AppMemory, ObjKey},
    },
    metrics::Stage,
    plan::{ApplyMode, ApplyPhase},
};

/// What to apply instead of the prepared object, by index: the live values of the fields
/// `spec.ignoreDifferences` leaves alone.
pub type Bodies = HashMap<usize, DynamicObject>;

/// The changed objects (indexes into the desired objects) and what each may force.
pub struct Changes {
    pub changed: Vec<usize>,
    /// What ferry applied before, per changed object it owns: the fields whose conflicts it may
    /// force.
    bases: HashMap<usize, Value>,
    /// Namespaces this pass creates: objects in them are dry-run once their phase comes.
    new_namespaces: HashSet<String>,
    /// What to apply instead of the prepared object (the live values of ignored fields).
    bodies: Bodies,
    /// Objects whose every conflict is forced (Flux's `ssa: Override`).
    overrides: HashSet<usize>,
}

/// Which conflicts an apply may force.
#[derive(Clone, Copy)]
enum Force<'a> {
    /// Only those on fields of this manifest, the one ferry applied before.
    Previously(Option<&'a Value>),
    /// All of them.
    Always,
}

impl Changes {
    pub fn new(mem: &AppMemory, desired: &[Desired], plans: &[ObjectPlan]) -> Changes {
        let changed: Vec<usize> =
            (0..plans.len()).filter(|&i| plans[i].change != super::decide::Change::InSync).collect();
        // Serialising the previous manifests costs something for large Applications: only when needed.
        let previous =
            if changed.iter().any(|&i| plans[i].ours) { previous_manifests(mem) } else { HashMap::new() };
        let bases = changed
            .iter()
            .filter(|&&i| plans[i].ours)
            .filter_map(|&i| {
                let d = &desired[i];
                let base = if plans[i].live_hash.as_ref() == Some(&d.hash) {
                    serde_json::to_value(&d.obj).ok()
                } else {
                    previous.get(&d.key).cloned()
                };
                Some((i, base?))
            })
            .collect();
        let new_namespaces = changed
            .iter()
            .filter(|&&i| desired[i].entry.group.is_empty() && desired[i].entry.kind == "Namespace")
            .filter(|&&i| plans[i].change.creates())
            .map(|&i| desired[i].entry.name.clone())
            .collect();
        let overrides =
            changed.iter().copied().filter(|&i| desired[i].options.apply == ApplyMode::Override).collect();
        Changes { changed, bases, new_namespaces, bodies: Bodies::new(), overrides }
    }

    /// With the bodies to apply instead of the prepared objects.
    pub fn with_bodies(self, bodies: Bodies) -> Changes {
        Changes { bodies, ..self }
    }

    fn force(&self, i: usize) -> Force<'_> {
        if self.overrides.contains(&i) { Force::Always } else { Force::Previously(self.bases.get(&i)) }
    }

    /// What to apply for the changed object `i`.
    fn object<'a>(&'a self, i: usize, d: &'a Desired) -> &'a DynamicObject {
        self.bodies.get(&i).unwrap_or(&d.obj)
    }

    /// The changed objects that can only be dry-run once their phase comes.
    fn deferred(&self, desired: &[Desired]) -> HashSet<usize> {
        self.changed.iter().copied().filter(|&i| desired[i].is_deferred(&self.new_namespaces)).collect()
    }
}

/// The manifests of the last revision applied, by object.
fn previous_manifests(mem: &AppMemory) -> HashMap<ObjKey, Value> {
    let Some(objs) = &mem.last_applied else { return HashMap::new() };
    objs.iter()
        .filter_map(|o| Some((ObjKey::from(&inventory_entry(o)?), serde_json::to_value(o).ok()?)))
        .collect()
}

/// Whether the pass writes one object and runs no hook. That apply is all or nothing, so a dry
/// run before it would protect nothing: the apply is its own validation ([`apply`] reports its
/// refusal as the dry run's would be, ValidationFailed), and the request the dry run costs is
/// saved. In a fleet of one-object Applications that is one API request in five, and the API
/// server's merge work of one server-side apply.
pub fn writes_alone(built: &Built, changes: &Changes) -> bool {
    changes.changed.len() == 1 && built.split.hooks.is_empty()
}

/// Dry-runs every changed object whose kind and namespace exist; the rest are dry-run once
/// their phase comes. Nothing, when the pass [`writes_alone`].
pub async fn validate(pass: Pass<'_>, built: &Built, changes: &Changes) -> Result<(), ValidateError> {
    if writes_alone(built, changes) {
        return Ok(());
    }
    let deferred = changes.deferred(&built.desired);
    let now: Vec<usize> = changes.changed.iter().copied().filter(|i| !deferred.contains(i)).collect();
    dry_run(built, &now, changes, pass.ctx.options.apply_parallelism).await
}

/// Applies every changed object (of one sync wave when `wave` is given), phase by phase;
/// returns the indexes applied.
pub async fn apply(
    pass: Pass<'_>,
    built: &mut Built,
    mem: &mut AppMemory,
    changes: &Changes,
    wave: Option<i32>,
) -> Result<Vec<usize>, ApplyStageError> {
    let _timer = pass.ctx.metrics.time(Stage::Apply);
    let mut applied = Vec::new();
    // A CRD of an earlier wave was Established before this call: discovery must be newer.
    let mut crds_established = if wave.is_some() { Instant::now() } else { pass.started };
    for phase in ApplyPhase::ALL {
        let in_batch = |i: usize| {
            let d = &built.desired[i];
            d.phase == phase && wave.is_none_or(|w| d.wave == w)
        };
        let batch: Vec<usize> = changes.changed.iter().copied().filter(|&i| in_batch(i)).collect();
        if batch.is_empty() {
            continue;
        }
        validate_late(pass, built, changes, &batch, crds_established).await?;
        let (ok, failures) = apply_batch(pass, built, changes, &batch).await;
        for (i, live) in ok {
            let d = &built.desired[i];
            if let (Some((resource, _)), Some(rv)) = (&d.resource, live.metadata.resource_version.as_deref())
            {
                pass.cluster.watches.expect_own_write(
                    resource,
                    d.entry.namespace.as_deref(),
                    &d.entry.name,
                    rv,
                );
            }
            remember(mem, d, &live);
            applied.push(i);
        }
        pass.ctx.metrics.objects_applied("failed", failures.len());
        if let Some(first) = failures.first() {
            tracing::warn!(app = %pass.app_ref, error = %first, "apply failed");
            if writes_alone(built, changes) {
                // Nothing was dry-run first: this refusal is the validation's.
                return Err(ValidateError::of(failures).into());
            }
            return Err(ApplyStageError::Failed { revision: built.revision.clone(), phase, failures });
        }
        if phase == ApplyPhase::Crds {
            wait_established(pass, &built.applier, &built.desired, &batch).await?;
            crds_established = Instant::now();
        }
    }
    Ok(applied)
}

/// The dry run of a phase's objects that could not be validated before: their kind is served
/// only now that this revision's CRDs are Established, or their namespace exists only now.
async fn validate_late(
    pass: Pass<'_>,
    built: &mut Built,
    changes: &Changes,
    batch: &[usize],
    crds_established: Instant,
) -> Result<(), ApplyStageError> {
    let deferred = changes.deferred(&built.desired);
    let late: Vec<usize> = batch.iter().copied().filter(|i| deferred.contains(i)).collect();
    if late.is_empty() {
        return Ok(());
    }
    if late.iter().any(|&i| built.desired[i].resource.is_none()) {
        let discovery =
            pass.cluster.refresh_discovery(crds_established).await.map_err(KindsError::Discovery)?;
        built.applier = built.applier.with_new_discovery(discovery);
        desired::resolve_kinds(&mut built.desired, &built.applier, &HashSet::new())?;
    }
    let parallelism = pass.ctx.options.apply_parallelism;
    Ok(dry_run(built, &late, changes, parallelism).await?)
}

/// Applies one phase's objects in parallel: the live objects applied, and the failures.
async fn apply_batch(
    pass: Pass<'_>,
    built: &Built,
    changes: &Changes,
    batch: &[usize],
) -> (Vec<(usize, DynamicObject)>, Vec<ApplyError>) {
    let results: Vec<(usize, Result<DynamicObject, ApplyError>)> = stream::iter(batch.iter().copied())
        .map(|i| {
            let (applier, d) = (&built.applier, &built.desired[i]);
            async move { (i, apply_one(applier, changes.object(i, d), changes.force(i), false).await) }
        })
        .buffer_unordered(pass.ctx.options.apply_parallelism)
        .collect()
        .await;
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (i, result) in results {
        match result {
            Ok(live) => ok.push((i, live)),
            Err(e) => failures.push(e),
        }
    }
    (ok, failures)
}

/// Server-side apply (or its dry run) forcing conflicts only on fields ferry set before, or all
/// of them when the object's options say so.
async fn apply_one(
    applier: &Applier,
    obj: &DynamicObject,
    force: Force<'_>,
    dry_run: bool,
) -> Result<DynamicObject, ApplyError> {
    let attempt = |force| async move {
        if dry_run { applier.dry_run(obj, force).await } else { applier.apply(obj, force).await }
    };
    let previous = match force {
        Force::Always => return attempt(true).await,
        Force::Previously(previous) => previous,
    };
    match attempt(false).await {
        Err(ApplyError::Conflict { conflicts, .. })
            if previous.is_some_and(|p| all_previously_set(&conflicts, p)) =>
        {
            attempt(true).await
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
async fn dry_run(
    built: &Built,
    which: &[usize],
    changes: &Changes,
    parallelism: usize,
) -> Result<(), ValidateError> {
    let results: Vec<Result<DynamicObject, ApplyError>> = stream::iter(which.iter().copied())
        .map(|i| apply_one(&built.applier, changes.object(i, &built.desired[i]), changes.force(i), true))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let errors: Vec<ApplyError> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(ValidateError::of(errors))
}

/// Waits until the CRDs applied in `batch` are Established, so their kinds can be served.
async fn wait_established(
    pass: Pass<'_>,
    applier: &Applier,
    desired: &[Desired],
    batch: &[usize],
) -> Result<(), ApplyStageError> {
    // In a remote cluster, read as the Application, which just created them: ferry's own
    // identity there may only list and watch.
    let reader = match pass.cluster.id {
        ClusterId::Local => pass.cluster.client.clone(),
        ClusterId::Remote { .. } => applier.client().clone(),
    };
    let crds: Api<CustomResourceDefinition> = Api::all(reader);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in batch {
        let name = &desired[*i].entry.name;
        loop {
            let crd = tokio::time::timeout(pass.ctx.options.api_timeout, crds.get_opt(name)).await;
            let established = matches!(&crd, Ok(Ok(Some(c))) if c.status.as_ref().and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True")));
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(ApplyStageError::NotEstablished { name: name.clone() });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}
