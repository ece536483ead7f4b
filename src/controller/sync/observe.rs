//! Plan, the cluster side: what the watches say of every desired object, a read of those they
//! cannot answer for, and a dry run where a difference may be a false alarm; then ownership
//! conflicts and what to prune. The decisions are [`super::decide`]'s; this module gathers what
//! they need and hands on a [`Planned`].

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, stream};
use kube::{Api, api::DynamicObject, discovery::Scope};
use serde_json::Value;

use super::{
    build::Built,
    decide::{self, FromWatch, ObjectPlan, Pending, Wanted, Watched},
    desired::{self, Desired, remember},
    pass::Pass,
    prune,
    write::{Bodies, Changes},
};
use crate::{
    api::Application,
    apply::{AppRef, Applier, ApplyError, Ownership, ownership_of},
    controller::{
        context::Context,
        error::PlanError,
        events,
        memory::{AppMemory, ObjKey},
        watches::Seen,
    },
    plan::{ApplyMode, ignore, sync_options},
};

/// What the plan stage hands on: every object's plan, what changes, what to prune.
pub struct Planned {
    pub plans: Vec<ObjectPlan>,
    /// The changed objects and what each may force.
    pub changes: Changes,
    /// The same, by name, for the sync policy to judge.
    pub pending: Pending,
    /// What to prune, and the inventory this revision makes.
    pub prune: prune::Chosen,
}

/// Plans the pass: every object's plan, no object of another Application, what to prune.
pub async fn plan(pass: Pass<'_>, mem: &mut AppMemory, built: &Built) -> Result<Planned, PlanError> {
    let revision = &built.revision;
    let (plans, bodies) = observe(pass, mem, built).await?;
    let conflicts: Vec<(AppRef, String)> = plans
        .iter()
        .zip(&built.desired)
        .filter_map(|(p, d)| p.owner.clone().map(|o| (o, d.name.clone())))
        .collect();
    report_claims(pass, &conflicts).await;
    if !conflicts.is_empty() {
        return Err(PlanError::Conflict { conflicts, revision: revision.clone() });
    }
    let prune = prune::choose(pass, built, desired::inventory(&built.desired)).await?;
    let names = built.desired.iter().map(|d| d.name.as_str()).zip(&plans);
    // IgnoreExtraneous: out of Git, it does not make the Application OutOfSync (Argo CD).
    let reported = prune.to_prune.iter().filter(|p| !p.ignores_extraneous()).map(|p| p.name.clone());
    let pending = Pending::of(names, reported.collect());
    let changes = Changes::new(mem, &built.desired, &plans).with_bodies(bodies);
    tracing::debug!(
        app = %pass.app_ref,
        %revision,
        objects = built.desired.len(),
        changed = pending.changed.len(),
        drifted = pending.drifted.len(),
        prune = prune.to_prune.len(),
        "planned"
    );
    Ok(Planned { plans, changes, pending, prune })
}

/// Registers the objects this Application claims from others and tells each owner once.
async fn report_claims(pass: Pass<'_>, conflicts: &[(AppRef, String)]) {
    let app_ref = pass.app_ref;
    for (owner, object) in pass.ctx.claims.set(app_ref, conflicts) {
        let note = format!(
            "Application {app_ref} also claims {object}, which this Application owns; it was left unchanged"
        );
        let warning = kube::runtime::events::EventType::Warning;
        events::on_other(pass.ctx, &owner, warning, events::OWNERSHIP_CONFLICT, &note).await;
    }
}

/// The plan of every desired object, in the same order, and the bodies to apply. The watch
/// answers for objects whose resourceVersion ferry already checked; the others are read once.
async fn observe(
    pass: Pass<'_>,
    mem: &mut AppMemory,
    built: &Built,
) -> Result<(Vec<ObjectPlan>, Bodies), PlanError> {
    let Pass { ctx, app_ref, .. } = pass;
    let (applier, desired) = (&built.applier, &built.desired);
    let previous: &HashSet<ObjKey> = &built.previous.iter().map(ObjKey::from).collect();
    let mut owners = Owners::new(ctx);
    let watched = watch(pass, desired).await;
    owners.look_up(watched.iter().filter_map(other_owner)).await?;
    let mut out: Vec<Option<ObjectPlan>> = Vec::with_capacity(desired.len());
    let mut to_read = Vec::new();
    for (i, (d, w)) in desired.iter().zip(&watched).enumerate() {
        let ignores = !ignore_rules(pass, d).is_empty();
        match decide::from_watch(w, wanted(mem, d, previous, ignores), |o| owners.exists(o)) {
            FromWatch::Planned(p) => out.push(Some(p)),
            FromWatch::Read => {
                out.push(None);
                to_read.push(i);
            }
        }
    }
    // Read already this pass, and still at the resourceVersion the watch shows: not again.
    let (known, to_read): (Vec<usize>, Vec<usize>) = to_read.into_iter().partition(|i| {
        let read = built.read.get(i).and_then(|o| o.metadata.resource_version.as_deref());
        matches!(&watched[*i], Watched::Present { resource_version, .. } if Some(resource_version.as_str()) == read)
    });
    let mut read = read(ctx, applier, desired, to_read).await?;
    read.extend(known.into_iter().map(|i| (i, built.read.get(&i).cloned())));
    let live_owners = read
        .iter()
        .filter_map(|(_, live)| live.as_ref())
        .map(|l| ownership_of(l.metadata.labels.as_ref(), app_ref));
    owners
        .look_up(live_owners.filter_map(|o| if let Ownership::Other(o) = o { Some(o) } else { None }))
        .await?;
    let mut settle = Vec::new();
    let mut bodies = Bodies::new();
    for (i, live) in read {
        let d = &desired[i];
        let Some(live) = live else {
            mem.known.remove(&d.key);
            out[i] = Some(decide::missing(previous.contains(&d.key), d.options.apply));
            continue;
        };
        let ignores = !ignore_rules(pass, d).is_empty();
        let (decided, body) = judge(pass, wanted(mem, d, previous, ignores), d, &live, &owners);
        if decided.matches {
            remember(mem, d, &live);
        }
        if decided.settle {
            settle.push((i, live));
        }
        if let Some(body) = body.filter(|_| decided.plan.change != decide::Change::InSync) {
            bodies.insert(i, body);
        }
        out[i] = Some(decided.plan);
    }
    settle_false_alarms(mem, built, &mut out, settle, &bodies).await;
    Ok((out.into_iter().map(|p| p.expect("every object is planned")).collect(), bodies))
}

/// Compares `d` with its live object, without the fields `spec.ignoreDifferences` leaves
/// alone; when there are such fields, also the body to apply: `d` with their live values.
fn judge(
    pass: Pass<'_>,
    wanted: Wanted<'_>,
    d: &Desired,
    live: &DynamicObject,
    owners: &Owners<'_>,
) -> (decide::FromLive, Option<DynamicObject>) {
    let mut want = serde_json::to_value(&d.obj).expect("objects serialize");
    let mut have = serde_json::to_value(live).expect("objects serialize");
    let rules = ignore_rules(pass, d);
    let ignored = if rules.is_empty() { Vec::new() } else { ignore::ignored_paths(&rules, &have) };
    let mut body = None;
    if !ignored.is_empty() {
        let mut kept = want.clone();
        ignore::keep_live(&mut kept, &have, &ignored);
        body = serde_json::from_value(kept).ok();
        ignore::strip(&mut want, &ignored);
        ignore::strip(&mut have, &ignored);
    }
    // Flux's `reconcile: disabled` set on the live object (`kubectl annotate`) pauses it too.
    let (labels, annotations) = (live.metadata.labels.as_ref(), live.metadata.annotations.as_ref());
    let paused = sync_options::parse(labels, annotations).options.apply == ApplyMode::Skip;
    let wanted = if paused { Wanted { mode: ApplyMode::Skip, ..wanted } } else { wanted };
    let ownership = ownership_of(labels, pass.app_ref);
    let live_view = decide::Live { value: &have, ownership: &ownership };
    (decide::from_live(&want, live_view, wanted, |o| owners.exists(o)), body)
}

/// What ferry remembers of `d`, for the decisions.
fn wanted<'a>(mem: &'a AppMemory, d: &'a Desired, previous: &HashSet<ObjKey>, ignores: bool) -> Wanted<'a> {
    Wanted {
        hash: &d.hash,
        known: mem.known.get(&d.key),
        previously_applied: previous.contains(&d.key),
        // Secret values never show in messages.
        secret: d.entry.group.is_empty() && d.entry.kind == "Secret",
        mode: d.options.apply,
        ignores,
    }
}

/// The entries of `spec.ignoreDifferences` that apply to `d`.
fn ignore_rules<'a>(pass: Pass<'a>, d: &Desired) -> Vec<&'a crate::api::IgnoreDifference> {
    let e = &d.entry;
    ignore::matching(&pass.app.spec.ignore_differences, &e.group, &e.kind, e.namespace.as_deref(), &e.name)
}

fn other_owner(w: &Watched) -> Option<AppRef> {
    match w {
        Watched::Present { ownership: Ownership::Other(owner), .. } => Some(owner.clone()),
        _ => None,
    }
}

/// What the metadata watches say of each object; a watch starts with the first object of its kind.
async fn watch(pass: Pass<'_>, desired: &[Desired]) -> Vec<Watched> {
    let Pass { ctx, app_ref, cluster, .. } = pass;
    let mut started = HashSet::new();
    let mut out = Vec::with_capacity(desired.len());
    for d in desired {
        let Some((resource, caps)) = &d.resource else {
            out.push(Watched::Unresolved);
            continue;
        };
        if started.insert(resource.clone()) {
            cluster.watches.ensure(resource, caps.scope == Scope::Namespaced, ctx.options.api_timeout).await;
        }
        out.push(match cluster.watches.seen(resource, d.entry.namespace.as_deref(), &d.entry.name) {
            Seen::Present { resource_version, labels } => {
                Watched::Present { resource_version, ownership: ownership_of(Some(&labels), app_ref) }
            }
            Seen::Absent => Watched::Absent,
            Seen::Unknown => Watched::Unknown,
        });
    }
    out
}

/// Reads `which` objects. A read that may succeed on retry fails the pass; ones the API server
/// refuses are reported together.
async fn read(
    ctx: &Context,
    applier: &Applier,
    desired: &[Desired],
    which: Vec<usize>,
) -> Result<Vec<(usize, Option<DynamicObject>)>, PlanError> {
    let reads: Vec<(usize, Result<Option<DynamicObject>, ApplyError>)> = stream::iter(which)
        .map(|i| async move {
            let d = &desired[i];
            let (resource, caps) = d.resource.as_ref().expect("only objects of served kinds are read");
            (i, applier.get(&d.name, resource, caps, d.entry.namespace.as_deref(), &d.entry.name).await)
        })
        .buffer_unordered(ctx.options.apply_parallelism)
        .collect()
        .await;
    let mut out = Vec::with_capacity(reads.len());
    let mut refused = Vec::new();
    for (i, read) in reads {
        match read {
            Ok(live) => out.push((i, live)),
            Err(e) if e.is_transient() => return Err(PlanError::Read(e)),
            Err(e) => refused.push(e),
        }
    }
    if refused.is_empty() { Ok(out) } else { Err(PlanError::Unreadable(refused)) }
}

/// A local difference may be a false alarm (`0.5` against `500m`, a field the API server fills
/// in inside a list element): the dry run says what an apply would really change.
async fn settle_false_alarms(
    mem: &mut AppMemory,
    built: &Built,
    plans: &mut [Option<ObjectPlan>],
    settle: Vec<(usize, DynamicObject)>,
    bodies: &Bodies,
) {
    for (i, live) in settle {
        let d = &built.desired[i];
        let body = bodies.get(&i).unwrap_or(&d.obj);
        let Ok(result) = built.applier.dry_run(body, true).await else { continue };
        if same_content(&result, &live) {
            remember(mem, d, &live);
            if let Some(p) = plans[i].as_mut() {
                p.change = decide::Change::InSync;
            }
        }
    }
}

/// Whether the Applications named by objects' labels still exist, each read once per pass.
struct Owners<'a> {
    ctx: &'a Context,
    known: HashMap<AppRef, bool>,
}

impl<'a> Owners<'a> {
    fn new(ctx: &'a Context) -> Owners<'a> {
        Owners { ctx, known: HashMap::new() }
    }

    async fn look_up(&mut self, owners: impl Iterator<Item = AppRef>) -> Result<(), PlanError> {
        for owner in owners {
            if self.known.contains_key(&owner) {
                continue;
            }
            let apps: Api<Application> = Api::namespaced(self.ctx.client.clone(), &owner.namespace);
            let found =
                match tokio::time::timeout(self.ctx.options.api_timeout, apps.get_opt(&owner.name)).await {
                    Err(_) => return Err(PlanError::OwnerTimeout { owner }),
                    Ok(Err(source)) => return Err(PlanError::Owner { owner, source: Box::new(source) }),
                    Ok(Ok(found)) => found.is_some(),
                };
            self.known.insert(owner, found);
        }
        Ok(())
    }

    fn exists(&self, owner: &AppRef) -> bool {
        self.known.get(owner).copied().unwrap_or(true)
    }
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
