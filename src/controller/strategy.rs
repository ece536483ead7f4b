//! The controller's side of a rollout: reads the live primary and new-version (`<name>-canary`)
//! Deployments, asks the state machine (`rollout::canary` or `rollout::blue_green`) what to do,
//! rewrites Git's objects into what the rollout wants applied (the primary, an HTTPRoute's
//! weights, blue-green Services' selectors), and converges the new-version objects after the
//! apply.
//!
//! One sync pass, one decision: the primary goes through the normal plan/validate/apply (so a
//! rollout never fights the sync), the canary is applied by field manager `ferry-rollout`, and
//! the decision's status lands in `status.rollout` with the rest of the status.

use std::{collections::BTreeMap, time::Duration};

use kube::{
    ResourceExt,
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource},
};
use serde_json::Value;

use super::{
    clusters::ClusterLink,
    context::Context,
    memory::{AppMemory, ObjKey},
    watches::{FullView, Seen, Watches},
};
use crate::{
    api::{
        AnalysisMetric, Application, BlueGreenStrategy, GatewayApiRouting, InventoryEntry,
        ROLLOUT_REQUEST_ANNOTATION, Strategy, conditions,
    },
    apply::{AppRef, Applier, ApplyError, MANIFEST_HASH, Ownership, manifest_hash, ownership_of},
    rollout::{
        analysis::render_query,
        blue_green, canary,
        prometheus::Prometheus,
        types::{Canary, Decision, Measure, MeasureError, Observed, OwnedSets, Primary, Taken},
        workload::{self, Availability, CANARY, Pods, ROLLOUT_FIELD_MANAGER},
    },
    source::Revision,
};

/// Why a rollout could not be decided or carried out this pass. Its text is the Ready
/// condition's message; [`reason`](RolloutError::reason), [`category`](RolloutError::category)
/// and [`is_transient`](RolloutError::is_transient) say how the sync reports and retries it.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// `spec.strategy` (at `field`) names an object the revision does not render.
    #[error("{field} names {kind} {name}, which {revision} does not render")]
    NotRendered { field: &'static str, kind: &'static str, name: String, revision: String },
    /// The workload Deployment has no pod template to roll out.
    #[error("Deployment {name} (spec.strategy workload) has no spec.template")]
    NoTemplate { name: String },
    /// Reading, applying or deleting a Deployment or Service failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// An object of a name the rollout derives (`<name>-canary`) is someone else's. Boxed: it
    /// is the largest failure, and every `Result` of a rollout carries the enum's size.
    #[error(transparent)]
    Conflict(Box<CanaryConflict>),
}

impl RolloutError {
    /// The Ready condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RolloutError::NotRendered { .. } | RolloutError::NoTemplate { .. } => {
                conditions::VALIDATION_FAILED
            }
            RolloutError::Apply(_) => conditions::APPLY_FAILED,
            RolloutError::Conflict(_) => conditions::OWNERSHIP_CONFLICT,
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            RolloutError::NotRendered { .. } | RolloutError::NoTemplate { .. } => "validation",
            RolloutError::Apply(_) => "apply",
            RolloutError::Conflict(_) => "conflict",
        }
    }

    /// Whether retrying without any change may help: only an API call that did not complete.
    /// What the revision lacks, or an object someone else holds, waits for a change.
    pub fn is_transient(&self) -> bool {
        match self {
            RolloutError::Apply(e) => e.is_transient(),
            RolloutError::NotRendered { .. }
            | RolloutError::NoTemplate { .. }
            | RolloutError::Conflict(_) => false,
        }
    }
}

/// An object of a name the rollout derives (`<name>-canary`) that is not this Application's:
/// ferry neither takes it over nor deletes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{kind} {namespace}/{name} exists and is not this Application's canary ({}); ferry neither takes it over nor deletes it, so the rollout of {revision} stopped: rename or remove that object",
    whose(.owner)
)]
pub struct CanaryConflict {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The Application it belongs to; `None` when ferry did not create it.
    pub owner: Option<AppRef>,
    pub revision: String,
}

/// Whose a conflicting object is, in [`CanaryConflict`]'s words.
fn whose(owner: &Option<AppRef>) -> String {
    match owner {
        Some(other) => format!("it belongs to Application {other}"),
        None => "it was not created by ferry".to_string(),
    }
}

/// The Deployment an Application's strategy drives, if it has one.
pub(super) fn workload_of(app: &Application) -> Option<&str> {
    let strategy = app.spec.strategy.as_ref()?;
    match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => Some(&c.workload.name),
        (None, Some(b)) => Some(&b.workload.name),
        (None, None) => None,
    }
}

/// The objects a rollout may have created beside the inventory (the `<workload>-canary`
/// Deployment, and the `<service>-canary` Service of Gateway API routing), for deleting them with
/// the Application. They are deleted only if they carry the Application's labels.
pub(super) fn derived_objects(app: &Application, inventory: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let Some(workload) = workload_of(app) else { return vec![] };
    let Some(deployment) =
        inventory.iter().find(|e| e.group == "apps" && e.kind == "Deployment" && e.name == workload)
    else {
        return vec![];
    };
    let mut out = vec![InventoryEntry { name: workload::canary_name(workload), ..deployment.clone() }];
    let gateway = app
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref()?.traffic_routing.as_ref()?.gateway_api.as_ref());
    if let Some(g) = gateway {
        let service = g.stable_service.as_deref().unwrap_or(workload);
        out.push(InventoryEntry {
            group: String::new(),
            version: "v1".into(),
            kind: "Service".into(),
            namespace: deployment.namespace.clone(),
            name: workload::canary_name(service),
        });
    }
    out
}

/// A rendered object: its index among the desired objects, the object, its kind.
pub(super) type Found<'a> = (usize, &'a DynamicObject, &'a (ApiResource, ApiCapabilities));

/// Looks a rendered object up by group, kind and name.
pub(super) type Find<'a> = dyn Fn(&str, &str, &str) -> Option<Found<'a>> + Sync + 'a;

/// A pass's decision and what is needed to carry it out.
pub(super) struct Pass {
    pub decision: Decision,
    objects: Objects,
}

/// What a pass reads and rewrites: Git's workload, the live primary and canary, and the objects
/// that route traffic to the new version.
struct Objects {
    /// The workload's index among the desired objects.
    workload_index: usize,
    /// Git's Deployment as prepared (labelled), from which the canary is derived.
    git: Value,
    template_hash: String,
    resource: (ApiResource, ApiCapabilities),
    live_primary: Option<Value>,
    /// The ReplicaSets the primary owns, counted only while it is paused on the stable template
    /// (a hand-over in flight); `None` otherwise or when they could not be listed.
    primary_sets: Option<Vec<OwnedSet>>,
    /// The live `<workload>-canary` Deployment.
    canary: Derived,
    routing: Option<Routing>,
    /// A HorizontalPodAutoscaler in the revision scales the workload: ferry never sets the
    /// primary's replicas, and the canary is sized from the primary's current count.
    autoscaled: bool,
}

/// How traffic reaches the new version, beyond the Deployments.
enum Routing {
    /// Canary by HTTPRoute weights through `<service>-canary`.
    Gateway {
        route_index: usize,
        route: Value,
        service: Value,
        service_resource: (ApiResource, ApiCapabilities),
        /// The live `<service>-canary` Service.
        canary_service: Box<Derived>,
    },
    /// Blue-green: the active (and preview) Services select the new version's pods when told.
    Services { active: (usize, Value), preview: Option<(usize, Value)> },
}

impl Pass {
    /// The live primary as this pass read it, with its index among the desired objects.
    pub fn live_primary(&self) -> Option<(usize, &Value)> {
        let o = &self.objects;
        o.live_primary.as_ref().map(|live| (o.workload_index, live))
    }

    /// The objects to apply instead of Git's (by index among the desired objects): the primary
    /// as the rollout holds it, and the route or Services pointed where the rollout says.
    pub fn rewrites(&self) -> Vec<(usize, Value)> {
        let o = &self.objects;
        let mut primary = o.git.clone();
        match (self.decision.primary, &o.live_primary) {
            (Primary::Hold { replicas }, Some(live)) => {
                workload::hold(&mut primary, live, (!o.autoscaled).then_some(replicas))
            }
            (Primary::Paused { git: false }, Some(live)) => {
                workload::hold(&mut primary, live, Some(0));
                workload::pause(&mut primary);
            }
            (Primary::Paused { .. }, _) => {
                workload::stamp(&mut primary, &o.template_hash);
                workload::pause(&mut primary);
            }
            _ => workload::stamp(&mut primary, &o.template_hash),
        }
        let mut out = vec![(o.workload_index, primary)];
        match &o.routing {
            Some(Routing::Gateway { route_index, route, service, .. }) => {
                if let Some(weight) = self.decision.route_weight {
                    let mut route = route.clone();
                    workload::split_route(&mut route, name_of(service), weight);
                    out.push((*route_index, route));
                }
            }
            Some(Routing::Services { active, preview }) => {
                let pointed = [
                    (Some(active), self.decision.active_to_new),
                    (preview.as_ref(), self.decision.preview_to_new),
                ];
                for (service, to_new) in pointed {
                    if let (Some((index, service)), true) = (service, to_new) {
                        let mut service = service.clone();
                        workload::select_canary(&mut service);
                        out.push((*index, service));
                    }
                }
            }
            None => {}
        }
        out
    }
}

impl Objects {
    /// What the state machine sees of them this pass. Only this Application's canary is
    /// observed: another's of the same name is neither counted nor scaled.
    fn observe<'a>(&'a self, app: &'a Application, revision: &'a str) -> Observed<'a> {
        let canary = self.canary.ours.as_ref();
        Observed {
            revision,
            template_hash: &self.template_hash,
            replicas: match (&self.live_primary, self.autoscaled) {
                (Some(live), true) => workload::replicas(live),
                _ => workload::replicas(&self.git),
            },
            primary_hash: self.live_primary.as_ref().and_then(workload::stamped_hash),
            primary: Availability::of(self.live_primary.as_ref()),
            canary: Availability::of(canary),
            canary_hash: canary.and_then(workload::stamped_hash),
            last_applied_revision: app.status.as_ref().and_then(|s| s.last_applied_revision.as_deref()),
            request: app.annotations().get(ROLLOUT_REQUEST_ANNOTATION).map(String::as_str),
            handover: self.pods(&[]) == Pods::AsGit && !self.autoscaled,
            primary_sets: self.primary_sets.as_ref().map(|sets| {
                let empty = sets.iter().filter(|s| s.empty).count();
                OwnedSets { empty, busy: sets.len() - empty }
            }),
            now: k8s_openapi::jiff::Timestamp::now(),
        }
    }

    /// How the canary's pods are told from the primary's: not at all under replica-ratio
    /// routing (so promotion can hand them over), unless the live canary was created with the
    /// variant label in its (immutable) selector; apart on `apart`'s keys otherwise.
    fn pods<'k>(&self, apart: &'k [String]) -> Pods<'k> {
        match (&self.routing, &self.canary.ours) {
            (None, Some(live)) if Pods::labelled(live) => Pods::Apart(&[]),
            (None, _) => Pods::AsGit,
            _ => Pods::Apart(apart),
        }
    }

    /// Label keys whose values the new version's pods carry suffixed, so that Services as in
    /// Git (selecting the primary) never select them.
    fn apart(&self) -> Vec<String> {
        let mut keys = match &self.routing {
            Some(Routing::Gateway { service, .. }) => workload::selector_keys(service),
            Some(Routing::Services { active, preview }) => {
                let mut keys = workload::selector_keys(&active.1);
                keys.extend(preview.iter().flat_map(|p| workload::selector_keys(&p.1)));
                keys
            }
            None => vec![],
        };
        keys.sort();
        keys.dedup();
        keys
    }

    fn namespace(&self) -> Option<&str> {
        self.git.pointer("/metadata/namespace").and_then(Value::as_str)
    }

    /// `<workload>-canary`.
    fn canary_name(&self) -> String {
        workload::canary_name(name_of(&self.git))
    }
}

/// An object's `metadata.name` ("" without one).
fn name_of(object: &Value) -> &str {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// Decides this pass: reads the live primary and new-version Deployments and runs the
/// Application's strategy. `find` looks up the rendered objects the strategy names.
///
/// Errors come in the order a person fixes them: what the revision lacks, then what the cluster
/// could not answer, then a canary name someone else holds (checked only when a canary is due).
pub(super) async fn decide(
    ctx: &Context,
    app: &Application,
    mem: &AppMemory,
    (applier, link): (&Applier, &ClusterLink),
    find: &Find<'_>,
    autoscaled: bool,
    revision: &Revision,
) -> Result<Pass, RolloutError> {
    let commit = &revision.commit;
    // The state machine compares revisions as the status writes them.
    let revision = &revision.to_string();
    let strategy = app.spec.strategy.as_ref().expect("decide runs for Applications with a strategy");
    let workload_name = workload_of(app).expect("a strategy names a workload");
    let rendered = Rendered { find, revision };
    let (workload_index, git, resource) =
        rendered.get(("apps", "Deployment"), workload_name, "spec.strategy")?;
    let git_value = serde_json::to_value(git).expect("objects serialize");
    let namespace = git.namespace();
    let name = git.name_any();
    let template_hash =
        workload::template_hash(&git_value).ok_or_else(|| RolloutError::NoTemplate { name: name.clone() })?;
    let full = match namespace.as_deref() {
        Some(ns) => link.watches.full(&resource.0, ns, ctx.options.api_timeout).await,
        None => None,
    };
    let cluster = Cluster {
        watches: &link.watches,
        full,
        mem,
        applier,
        app: AppRef { namespace: app.namespace().unwrap_or_default(), name: app.name_any() },
        namespace: namespace.as_deref(),
        revision,
    };
    let key = ObjKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let live_primary = cluster.live(resource, &name, Some(&key)).await?;
    let canary = cluster.live(resource, &workload::canary_name(&name), None).await?;
    let primary_sets = cluster.primary_sets(live_primary.as_ref(), &template_hash).await?;
    let objects = Objects {
        workload_index,
        git: git_value,
        template_hash,
        resource: resource.clone(),
        live_primary,
        primary_sets,
        canary: Derived::of(canary, &cluster.app),
        routing: Routing::of(strategy, &rendered, &cluster, workload_name).await?,
        autoscaled,
    };

    let measure = PrometheusMeasure::for_workload(ctx, commit, namespace.as_deref(), &name);
    let observed = objects.observe(app, revision);
    let prev = app.status.as_ref().and_then(|s| s.rollout.as_ref());
    let decision = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => canary::advance(c, &name, prev, &observed, &measure).await,
        (None, Some(b)) => blue_green::advance(b, &name, prev, &observed, &measure).await,
        (None, None) => unreachable!("workload_of found a strategy"),
    };
    if let Canary::Present { .. } = decision.canary {
        // Nothing is written yet: a canary name taken by someone else stops the rollout here.
        cluster.claim(&objects).await?;
    }
    Ok(Pass { decision, objects })
}

/// The rendered objects `spec.strategy` names. One the revision does not render is a
/// validation failure naming the field, so the author sees which name to fix.
struct Rendered<'f, 'r> {
    find: &'r Find<'f>,
    revision: &'r str,
}

impl<'f> Rendered<'f, '_> {
    fn get(
        &self,
        (group, kind): (&str, &'static str),
        name: &str,
        field: &'static str,
    ) -> Result<Found<'f>, RolloutError> {
        (self.find)(group, kind, name).ok_or_else(|| RolloutError::NotRendered {
            field,
            kind,
            name: name.to_string(),
            revision: self.revision.to_string(),
        })
    }

    /// A Service: its index, the Service as JSON and its kind.
    fn service(
        &self,
        name: &str,
        field: &'static str,
    ) -> Result<(usize, Value, (ApiResource, ApiCapabilities)), RolloutError> {
        let (index, obj, resource) = self.get(("", "Service"), name, field)?;
        Ok((index, serde_json::to_value(obj).expect("objects serialize"), resource.clone()))
    }
}

impl Routing {
    /// The routing `strategy` asks for, with the objects it names (all rendered by the revision).
    async fn of(
        strategy: &Strategy,
        rendered: &Rendered<'_, '_>,
        cluster: &Cluster<'_>,
        workload: &str,
    ) -> Result<Option<Routing>, RolloutError> {
        match (&strategy.canary, &strategy.blue_green) {
            (Some(c), _) => match c.traffic_routing.as_ref().and_then(|t| t.gateway_api.as_ref()) {
                None => Ok(None),
                Some(g) => Routing::gateway(g, rendered, cluster, workload).await.map(Some),
            },
            (None, Some(b)) => Routing::services(b, rendered).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// Gateway API: the HTTPRoute, the stable Service (the workload's name unless named) and
    /// the live `<service>-canary` Service.
    async fn gateway(
        g: &GatewayApiRouting,
        rendered: &Rendered<'_, '_>,
        cluster: &Cluster<'_>,
        workload: &str,
    ) -> Result<Routing, RolloutError> {
        const FIELD: &str = "spec.strategy.canary.trafficRouting.gatewayAPI";
        let (route_index, route, _) =
            rendered.get(("gateway.networking.k8s.io", "HTTPRoute"), &g.http_route, FIELD)?;
        let stable = g.stable_service.as_deref().unwrap_or(workload);
        let (_, service, service_resource) =
            rendered.service(stable, "spec.strategy.canary.trafficRouting.gatewayAPI.stableService")?;
        let canary_service = cluster.labelled(&service_resource, &workload::canary_name(stable)).await?;
        Ok(Routing::Gateway {
            route_index,
            route: serde_json::to_value(route).expect("objects serialize"),
            service,
            service_resource,
            canary_service: Box::new(Derived::of(canary_service, &cluster.app)),
        })
    }

    /// Blue-green: the active Service and the preview Service, if any.
    fn services(b: &BlueGreenStrategy, rendered: &Rendered<'_, '_>) -> Result<Routing, RolloutError> {
        let (i, active, _) = rendered.service(&b.active_service, "spec.strategy.blueGreen.activeService")?;
        let preview = match &b.preview_service {
            Some(p) => {
                let (j, preview, _) = rendered.service(p, "spec.strategy.blueGreen.previewService")?;
                Some((j, preview))
            }
            None => None,
        };
        Ok(Routing::Services { active: (i, active), preview })
    }
}

/// Creates, scales or removes the canary Deployment as decided, and releases the paused
/// primary's ReplicaSets when the hand-over asks. Idempotent: the same decision applied twice
/// writes the same object. A canary being deleted is left to the garbage collector: deleting it
/// again with another propagation could take the ReplicaSet it is orphaning with it.
pub(super) async fn converge_canary(applier: &Applier, pass: &Pass) -> Result<(), RolloutError> {
    let o = &pass.objects;
    let live = o.canary.ours.as_ref().filter(|c| !Availability::of(Some(c)).deleting);
    let namespace = o.namespace();
    let (resource, caps) = &o.resource;
    let shown = || format!("Deployment {}/{}", namespace.unwrap_or_default(), o.canary_name());
    match pass.decision.canary {
        Canary::Present { replicas } => {
            if let Some(Routing::Gateway { service, .. }) = &o.routing {
                let service = workload::canary_service(service);
                let obj: DynamicObject = serde_json::from_value(service).expect("a Service deserializes");
                applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await?;
            }
            if o.canary.ours.is_none() || live.is_some() {
                let apart = o.apart();
                let canary = workload::canary_deployment(&o.git, replicas, &o.template_hash, o.pods(&apart));
                let mut obj: DynamicObject =
                    serde_json::from_value(canary).expect("a Deployment deserializes");
                // Applied only when it changes (or was scaled by hand): a rollout's passes come
                // with every status change of its Deployments.
                let hash = manifest_hash(&mut obj);
                let same = live.is_some_and(|l| {
                    l.pointer("/metadata/annotations").and_then(|a| a.get(MANIFEST_HASH))
                        == Some(&Value::from(hash))
                        && workload::replicas(l) == replicas
                });
                if !same {
                    applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await?;
                }
            }
        }
        Canary::Orphaned => {
            if live.is_some() {
                let name = o.canary_name();
                applier
                    .delete_orphaning(&shown(), (resource, caps), namespace, &name, o.canary.uid())
                    .await?;
                tracing::info!(object = %shown(), "canary deleted, its ReplicaSet left for the primary to adopt");
            }
        }
        // Only this Application's canary objects are deleted, and only the ones read.
        Canary::Absent => {
            if live.is_some() {
                let name = o.canary_name();
                applier.delete(&shown(), resource, caps, namespace, &name, o.canary.uid()).await?;
            }
            if let Some(Routing::Gateway { service, service_resource, canary_service, .. }) = &o.routing
                && canary_service.ours.is_some()
            {
                let name = workload::canary_name(name_of(service));
                let shown = format!("Service {}/{name}", namespace.unwrap_or_default());
                let (resource, caps) = service_resource;
                applier.delete(&shown, resource, caps, namespace, &name, canary_service.uid()).await?;
            }
        }
    }
    if pass.decision.release_primary_sets {
        release_primary_sets(applier, o).await?;
    }
    Ok(())
}

/// A ReplicaSet the primary's Deployment controller owns.
struct OwnedSet {
    name: String,
    uid: String,
    /// Scaled to 0, and no pod left.
    empty: bool,
}

/// The ReplicaSet kind.
fn replica_sets() -> (ApiResource, ApiCapabilities) {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let caps = ApiCapabilities {
        scope: kube::discovery::Scope::Namespaced,
        subresources: vec![],
        operations: vec![],
    };
    (ApiResource::erase::<ReplicaSet>(&()), caps)
}

/// Deletes the primary's empty ReplicaSets (each by its uid), for the hand-over: the paused
/// primary then owns none to scale up when it takes Git's template.
async fn release_primary_sets(applier: &Applier, o: &Objects) -> Result<(), RolloutError> {
    let (resource, caps) = replica_sets();
    let namespace = o.namespace();
    for set in o.primary_sets.iter().flatten().filter(|s| s.empty) {
        let shown = format!("ReplicaSet {}/{}", namespace.unwrap_or_default(), set.name);
        applier.delete(&shown, &resource, &caps, namespace, &set.name, Some(&set.uid)).await?;
    }
    Ok(())
}

/// A ReplicaSet scaled to 0 with no pod left, and not being deleted already: one that is (a
/// finalizer holds it) counts as busy, so the hand-over waits rather than deleting it again and
/// again.
fn is_empty_set(rs: &Value) -> bool {
    let pods = rs.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0);
    workload::replicas(rs) == 0 && pods == 0 && rs.pointer("/metadata/deletionTimestamp").is_none()
}

/// `key=value,...` of a Deployment's `spec.selector.matchLabels` (empty: none).
fn match_labels(deployment: &Value) -> String {
    let labels = deployment.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
    let pairs = labels.into_iter().flatten().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)));
    pairs.collect::<Vec<_>>().join(",")
}

/// Whether `object`'s controller (owner reference) has this uid.
fn controlled_by(object: &Value, uid: &str) -> bool {
    let owners = object.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    owners.into_iter().flatten().any(|r| r["controller"] == true && r["uid"] == uid)
}

/// How long a pass waits for the watch of whole Deployments to catch up with the metadata
/// watch that woke it before it reads the Deployment instead.
const CATCH_UP: Duration = Duration::from_millis(50);

/// Where a pass reads live objects: the watches and the memory of earlier passes first, the API
/// server when they cannot tell. Everything it reads is in the workload's namespace.
struct Cluster<'a> {
    /// The watches of the cluster the Application deploys to.
    watches: &'a Watches,
    /// The watch of whole Deployments in the workload's namespace, when synced.
    full: Option<FullView>,
    mem: &'a AppMemory,
    applier: &'a Applier,
    /// The Application the rollout is of: whose derived objects are its own.
    app: AppRef,
    namespace: Option<&'a str>,
    /// The revision being rolled out, for the messages.
    revision: &'a str,
}

impl Cluster<'_> {
    /// A Deployment as it is now: from memory or from the watch of whole Deployments when they
    /// have the resourceVersion the metadata watch shows (which wakes the passes, so a pass never
    /// decides on an older state than the one that woke it), none when the watch knows none,
    /// else read.
    async fn live(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        name: &str,
        key: Option<&ObjKey>,
    ) -> Result<Option<Value>, RolloutError> {
        match self.watches.seen(resource, self.namespace, name) {
            Seen::Absent => return Ok(None),
            Seen::Present { resource_version, .. } => {
                let known = key.and_then(|k| self.mem.known.get(k));
                if let Some(k) = known.filter(|k| k.resource_version == resource_version)
                    && let Some(live) = &k.live
                {
                    return Ok(Some(live.as_ref().clone()));
                }
                if let Some(whole) = self.whole(resource, name).await {
                    return Ok(Some(whole));
                }
            }
            Seen::Unknown => {}
        }
        self.get(&(resource.clone(), caps.clone()), name, "Deployment").await
    }

    /// The Deployment from the watch of whole ones, once it has the resourceVersion the
    /// metadata watch shows; only this Application's (that watch reads as ferry, so anything
    /// else is read as the Application acts). Both watches get the same event within
    /// milliseconds, so a pass woken by one waits a little for the other rather than reading.
    async fn whole(&self, resource: &ApiResource, name: &str) -> Option<Value> {
        let full = self.full.as_ref()?;
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let Seen::Present { resource_version, .. } = self.watches.seen(resource, self.namespace, name)
            else {
                return None;
            };
            let whole =
                full.get(name).filter(|w| w.metadata.resource_version.as_ref() == Some(&resource_version));
            if let Some(whole) = whole {
                let whole = serde_json::to_value(whole.as_ref()).expect("objects serialize");
                return (owner(&whole, &self.app) == Ownership::Ours).then_some(whole);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The ReplicaSets a primary drained on the stable template owns (a hand-over in flight);
    /// `None` for any other primary, and when the API server refuses the list (the hand-over
    /// then gives way to rolling the primary).
    async fn primary_sets(
        &self,
        primary: Option<&Value>,
        template_hash: &str,
    ) -> Result<Option<Vec<OwnedSet>>, RolloutError> {
        let Some(primary) = primary else { return Ok(None) };
        let drained = Availability::of(Some(primary)).drained();
        let held = drained && workload::stamped_hash(primary) != Some(template_hash);
        let uid = primary.pointer("/metadata/uid").and_then(Value::as_str);
        let (true, Some(uid)) = (held, uid) else { return Ok(None) };
        let (resource, caps) = replica_sets();
        let shown =
            format!("ReplicaSets of Deployment {}/{}", self.namespace.unwrap_or_default(), name_of(primary));
        let listed =
            self.applier.list(&shown, (&resource, &caps), self.namespace, &match_labels(primary)).await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(ApplyError::Refused { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let owned = listed.into_iter().map(|rs| serde_json::to_value(rs).expect("objects serialize"));
        let owned = owned.filter(|rs| controlled_by(rs, uid)).map(|rs| OwnedSet {
            name: name_of(&rs).to_string(),
            uid: rs.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string(),
            empty: is_empty_set(&rs),
        });
        Ok(Some(owned.collect()))
    }

    /// The live object, read.
    async fn get(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        name: &str,
        kind: &str,
    ) -> Result<Option<Value>, RolloutError> {
        let shown = format!("{kind} {}/{name}", self.namespace.unwrap_or_default());
        let got = self.applier.get(&shown, resource, caps, self.namespace, name).await?;
        Ok(got.map(|o| serde_json::to_value(o).expect("objects serialize")))
    }

    /// The live object when the watch knows one with ferry's labels (or cannot tell yet); `None`
    /// when it knows none, though one without ferry's labels may exist (see [`Cluster::writable`]).
    async fn labelled(
        &self,
        kind: &(ApiResource, ApiCapabilities),
        name: &str,
    ) -> Result<Option<Value>, RolloutError> {
        if self.watches.seen(&kind.0, self.namespace, name) == Seen::Absent {
            return Ok(None);
        }
        self.get(kind, name, &kind.0.kind).await
    }

    /// Whether the rollout may create or update every object it derives this pass: the canary
    /// Deployment and, under Gateway API routing, the canary Service.
    async fn claim(&self, objects: &Objects) -> Result<(), RolloutError> {
        self.writable(&objects.resource, &objects.canary_name(), &objects.canary).await?;
        if let Some(Routing::Gateway { service, service_resource, canary_service, .. }) = &objects.routing {
            let name = workload::canary_name(name_of(service));
            self.writable(service_resource, &name, canary_service).await?;
        }
        Ok(())
    }

    /// Whether the rollout may create or update `<kind> namespace/name`: it is this Application's
    /// or does not exist. The watch sees only objects with ferry's labels, so when it knew of
    /// none the API server is asked. Someone else's object of that name is a conflict that stops
    /// the rollout.
    async fn writable(
        &self,
        kind: &(ApiResource, ApiCapabilities),
        name: &str,
        live: &Derived,
    ) -> Result<(), RolloutError> {
        let foreign = match (&live.ours, &live.foreign) {
            (Some(_), _) => None,
            (None, Some(foreign)) => Some(foreign.clone()),
            (None, None) => {
                let live = self.get(kind, name, &kind.0.kind).await?;
                live.filter(|v| owner(v, &self.app) != Ownership::Ours)
            }
        };
        let Some(foreign) = foreign else { return Ok(()) };
        Err(RolloutError::Conflict(Box::new(CanaryConflict {
            kind: kind.0.kind.clone(),
            namespace: self.namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
            owner: match owner(&foreign, &self.app) {
                Ownership::Other(other) => Some(other),
                _ => None,
            },
            revision: self.revision.to_string(),
        })))
    }
}

/// A live object of a name the rollout derives (`<name>-canary`), by whose it is.
#[derive(Default)]
pub(super) struct Derived {
    /// This Application's: the rollout's to scale or delete.
    ours: Option<Value>,
    /// Another Application's, or no Application's: never observed, written or deleted.
    foreign: Option<Value>,
}

impl Derived {
    fn of(live: Option<Value>, app: &AppRef) -> Derived {
        match live {
            Some(v) if owner(&v, app) == Ownership::Ours => Derived { ours: Some(v), foreign: None },
            Some(v) => Derived { ours: None, foreign: Some(v) },
            None => Derived::default(),
        }
    }

    /// The uid of this Application's object: the precondition of its delete.
    fn uid(&self) -> Option<&str> {
        self.ours.as_ref()?.pointer("/metadata/uid")?.as_str()
    }
}

/// Who owns a live object, by ferry's labels.
fn owner(live: &Value, app: &AppRef) -> Ownership {
    let labels: Option<BTreeMap<String, String>> =
        live.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok());
    ownership_of(labels.as_ref(), app)
}

/// Measurements from Prometheus.
struct PrometheusMeasure<'a> {
    /// ferry's client, or why it has none.
    prometheus: Result<&'a Prometheus, MeasureError>,
    default_address: Option<&'a str>,
    /// `--allowed-prometheus-urls`: the only addresses a metric may name (empty: any).
    allowed: &'a [String],
    vars: BTreeMap<&'static str, String>,
}

impl<'a> PrometheusMeasure<'a> {
    /// Measurements of one workload's rollout, with ferry's Prometheus settings.
    fn for_workload(ctx: &'a Context, commit: &str, namespace: Option<&str>, workload: &str) -> Self {
        PrometheusMeasure {
            prometheus: ctx.prometheus.as_ref().map_err(|why| MeasureError::NoClient(why.clone())),
            default_address: ctx.options.prometheus_url.as_deref(),
            allowed: &ctx.options.allowed_prometheus_urls,
            vars: query_vars(commit, namespace, workload),
        }
    }

    /// An address a metric names must be one ferry may query: otherwise any Application author
    /// could make ferry send GET requests to any URL it can reach (and read a JSON answer's
    /// error back in the status).
    fn permitted(&self, address: &str) -> Result<(), MeasureError> {
        crate::rollout::types::permitted_address(address, self.default_address, self.allowed)
    }
}

/// What a query's `{{revision}}` (the commit alone), `{{namespace}}`, `{{workload}}` and
/// `{{variant}}` stand for.
fn query_vars(commit: &str, namespace: Option<&str>, workload: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("revision", commit.to_string()),
        ("namespace", namespace.unwrap_or_default().to_string()),
        ("workload", workload.to_string()),
        ("variant", CANARY.to_string()),
    ])
}

impl Measure for PrometheusMeasure<'_> {
    fn measure(&self, metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send {
        let address = metric.prometheus.address.as_deref().or(self.default_address).map(str::to_string);
        let query = render_query(&metric.prometheus.query, &self.vars).map_err(MeasureError::from);
        let prometheus = self.prometheus.clone().cloned();
        let permitted = address.as_deref().map_or(Ok(()), |a| self.permitted(a));
        async move {
            let address = address.ok_or(MeasureError::NoAddress)?;
            permitted?;
            Ok(prometheus?.query(&address, &query?).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
    use kube::discovery::Scope;
    use serde_json::json;

    use super::*;
    use crate::{
        apply::{APP_NAME, APP_NAMESPACE, FIELD_MANAGER, MANAGED_BY},
        controller::error::SyncError,
        rollout::{prometheus::QueryError, workload::TEMPLATE_HASH},
    };

    // Builders: the workload `shop` in namespace `team`, its Services and route, as rendered.

    fn kind<K: kube::Resource<DynamicType = ()>>() -> (ApiResource, ApiCapabilities) {
        let caps = ApiCapabilities { scope: Scope::Namespaced, subresources: vec![], operations: vec![] };
        (ApiResource::erase::<K>(&()), caps)
    }

    /// A Deployment running `image` at `replicas`, stamped with `hash` when it is a live one.
    fn deployment(replicas: i32, image: &str, hash: Option<&str>) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": "team"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop"}},
                                  "spec": {"containers": [{"name": "shop", "image": image}]}}}
        });
        if let Some(hash) = hash {
            d["metadata"]["annotations"] = json!({TEMPLATE_HASH: hash});
        }
        d
    }

    fn service(name: &str, selector: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "team"},
               "spec": {"selector": selector, "ports": [{"port": 80}]}})
    }

    fn route(to: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "shop", "namespace": "team"},
               "spec": {"rules": [{"backendRefs": [{"name": to, "port": 80}]}]}})
    }

    /// ferry's labels for Application `team/<app>`.
    fn labelled(mut object: Value, app: &str) -> Value {
        object["metadata"]["labels"] =
            json!({MANAGED_BY: FIELD_MANAGER, APP_NAMESPACE: "team", APP_NAME: app});
        object["metadata"]["uid"] = json!(format!("uid-of-{app}"));
        object
    }

    fn this_app() -> AppRef {
        AppRef { namespace: "team".into(), name: "shop".into() }
    }

    fn gateway() -> Routing {
        Routing::Gateway {
            route_index: 2,
            route: route("shop"),
            service: service("shop", json!({"app": "shop"})),
            service_resource: kind::<Service>(),
            canary_service: Box::default(),
        }
    }

    fn services(preview: bool) -> Routing {
        Routing::Services {
            active: (1, service("shop", json!({"app": "shop", "tier": "web"}))),
            preview: preview
                .then(|| (3, service("shop-preview", json!({"app": "shop", "track": "preview"})))),
        }
    }

    /// Git's `shop` at 5 replicas (image v2, template hash `new`), the live primary at v1.
    fn objects(routing: Option<Routing>) -> Objects {
        Objects {
            workload_index: 0,
            git: deployment(5, "shop:v2", None),
            template_hash: "new".into(),
            resource: kind::<Deployment>(),
            live_primary: Some(deployment(4, "shop:v1", Some("old"))),
            primary_sets: None,
            canary: Derived::default(),
            routing,
            autoscaled: false,
        }
    }

    fn pass(objects: Objects, primary: Primary, change: impl FnOnce(&mut Decision)) -> Pass {
        let mut decision = Decision::new(primary, Canary::Present { replicas: 1 }, None);
        change(&mut decision);
        Pass { decision, objects }
    }

    fn image(d: &Value) -> &str {
        d.pointer("/spec/template/spec/containers/0/image").and_then(Value::as_str).unwrap()
    }

    fn stamped(d: &Value) -> Option<&str> {
        workload::stamped_hash(d)
    }

    fn app(strategy: Value) -> Application {
        serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "team"},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}},
                     "strategy": strategy}
        }))
        .unwrap()
    }

    #[test]
    fn the_primary_as_in_git_is_stamped_with_gits_template_hash() {
        let p = pass(objects(None), Primary::AsGit, |_| {});
        let rewrites = p.rewrites();
        assert_eq!(rewrites.len(), 1, "without routing only the primary is rewritten");
        let (index, primary) = &rewrites[0];
        assert_eq!(*index, 0);
        assert_eq!((image(primary), stamped(primary)), ("shop:v2", Some("new")));
        assert_eq!(workload::replicas(primary), 5);
    }

    #[test]
    fn a_held_primary_keeps_the_live_template_at_the_rollouts_replicas() {
        let p = pass(objects(None), Primary::Hold { replicas: 2 }, |_| {});
        let (_, primary) = &p.rewrites()[0];
        assert_eq!((image(primary), stamped(primary)), ("shop:v1", Some("old")));
        assert_eq!(workload::replicas(primary), 2);

        // An autoscaler owns the count: Git's replicas are applied (the autoscaler's field
        // manager keeps the live one), never the rollout's.
        let mut autoscaled = objects(None);
        autoscaled.autoscaled = true;
        let (_, primary) = &pass(autoscaled, Primary::Hold { replicas: 2 }, |_| {}).rewrites()[0];
        assert_eq!((image(primary), workload::replicas(primary)), ("shop:v1", 5));

        // Nothing live to hold (the first sync): Git's, stamped.
        let mut first = objects(None);
        first.live_primary = None;
        let (_, primary) = &pass(first, Primary::Hold { replicas: 2 }, |_| {}).rewrites()[0];
        assert_eq!((image(primary), stamped(primary)), ("shop:v2", Some("new")));
    }

    #[test]
    fn the_hand_over_pauses_the_primary_drained_on_the_stable_template_then_on_gits() {
        let (_, primary) = &pass(objects(None), Primary::Paused { git: false }, |_| {}).rewrites()[0];
        assert_eq!(
            (image(primary), stamped(primary), workload::replicas(primary)),
            ("shop:v1", Some("old"), 0)
        );
        assert_eq!(primary["spec"]["paused"], true);
        let (_, primary) = &pass(objects(None), Primary::Paused { git: true }, |_| {}).rewrites()[0];
        assert_eq!(
            (image(primary), stamped(primary), workload::replicas(primary)),
            ("shop:v2", Some("new"), 5)
        );
        assert_eq!(primary["spec"]["paused"], true);
        let (_, primary) = &pass(objects(None), Primary::AsGit, |_| {}).rewrites()[0];
        assert!(primary["spec"].get("paused").is_none(), "as Git has it: unpaused");
    }

    #[test]
    fn only_a_replica_ratio_canary_runs_gits_pods_and_may_be_handed_over() {
        let app = app(json!({"canary": {"workload": {"name": "shop"}, "steps": []}}));
        let o = objects(None);
        assert_eq!(o.pods(&[]), Pods::AsGit);
        assert!(o.observe(&app, "main@sha1:abc").handover);
        // A live canary created with the variant label in its (immutable) selector keeps it.
        let mut old = o;
        let mut live = labelled(deployment(1, "shop:v2", Some("new")), "shop");
        live["spec"]["selector"]["matchLabels"]["ferry.dev/variant"] = json!("canary");
        old.canary = Derived::of(Some(live), &this_app());
        assert_eq!(old.pods(&[]), Pods::Apart(&[]));
        assert!(!old.observe(&app, "main@sha1:abc").handover);
        let keys = vec!["app".to_string()];
        let gateway = objects(Some(gateway()));
        assert_eq!(gateway.pods(&keys), Pods::Apart(&keys));
        assert!(!gateway.observe(&app, "main@sha1:abc").handover);
        let mut autoscaled = objects(None);
        autoscaled.autoscaled = true;
        assert!(!autoscaled.observe(&app, "main@sha1:abc").handover);
    }

    #[test]
    fn the_primarys_sets_are_found_by_its_selector_and_controller_uid() {
        let d = deployment(5, "shop:v1", None);
        assert_eq!(match_labels(&d), "app=shop");
        assert_eq!(match_labels(&json!({"spec": {"selector": {"matchExpressions": []}}})), "");
        let rs = json!({"metadata": {"ownerReferences": [
            {"uid": "a", "controller": false}, {"uid": "p", "controller": true}]}});
        assert!(controlled_by(&rs, "p"));
        assert!(!controlled_by(&rs, "a"), "an owner that is not the controller");
        assert!(!controlled_by(&json!({"metadata": {}}), "p"));
        let empty = json!({"metadata": {}, "spec": {"replicas": 0}, "status": {"replicas": 0}});
        assert!(is_empty_set(&empty));
        let mut draining = empty.clone();
        draining["status"]["replicas"] = json!(1);
        assert!(!is_empty_set(&draining), "a pod left");
        let mut held = empty.clone();
        held["metadata"]["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        assert!(!is_empty_set(&held), "being deleted: not deleted again");
    }

    #[test]
    fn gateway_routing_rewrites_the_route_only_when_the_decision_weighs_it() {
        let p = pass(objects(Some(gateway())), Primary::Hold { replicas: 5 }, |d| d.route_weight = Some(30));
        let rewrites = p.rewrites();
        assert_eq!(rewrites.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 2]);
        let refs = rewrites[1].1.pointer("/spec/rules/0/backendRefs").unwrap();
        assert_eq!(
            refs,
            &json!([{"name": "shop", "port": 80, "weight": 70}, {"name": "shop-canary", "port": 80, "weight": 30}])
        );

        let as_in_git = pass(objects(Some(gateway())), Primary::AsGit, |_| {});
        assert_eq!(as_in_git.rewrites().len(), 1, "no weight: the route as in Git");
    }

    #[test]
    fn blue_green_points_only_the_services_the_decision_names() {
        let pointed = |preview: bool, active_to_new: bool, preview_to_new: bool| {
            let p = pass(objects(Some(services(preview))), Primary::Hold { replicas: 5 }, |d| {
                (d.active_to_new, d.preview_to_new) = (active_to_new, preview_to_new);
            });
            p.rewrites()
                .into_iter()
                .skip(1)
                .map(|(i, s)| (i, s["spec"]["selector"].clone()))
                .collect::<Vec<_>>()
        };
        let active = (1, json!({"app": "shop-canary", "tier": "web-canary", "ferry.dev/variant": "canary"}));
        let preview =
            (3, json!({"app": "shop-canary", "track": "preview-canary", "ferry.dev/variant": "canary"}));
        assert_eq!(pointed(true, false, true), vec![preview.clone()]);
        assert_eq!(pointed(true, true, true), vec![active.clone(), preview]);
        assert_eq!(pointed(true, false, false), vec![]);
        // No preview Service: only the active one can be pointed.
        assert_eq!(pointed(false, true, true), vec![active]);
    }

    #[test]
    fn the_new_versions_pods_are_kept_apart_on_every_key_a_routed_service_selects() {
        assert_eq!(objects(Some(services(true))).apart(), vec!["app", "tier", "track"]);
        assert_eq!(objects(Some(gateway())).apart(), vec!["app"]);
        assert!(objects(None).apart().is_empty(), "replica ratio: the canary's pods share the Service");
    }

    #[test]
    fn the_state_machine_observes_only_this_applications_canary() {
        let mut app = app(json!({"canary": {"workload": {"name": "shop"}, "steps": []}}));
        app.annotations_mut().insert(ROLLOUT_REQUEST_ANNOTATION.into(), "promote@1".into());
        let mut o = objects(None);
        o.autoscaled = true;
        o.canary = Derived::of(Some(labelled(deployment(1, "shop:v2", Some("new")), "other")), &this_app());
        let seen = o.observe(&app, "main@sha1:abc");
        assert_eq!(seen.replicas, 4, "autoscaled: the live primary's count");
        assert_eq!((seen.primary_hash, seen.primary.replicas), (Some("old"), 4));
        assert_eq!((seen.canary.exists, seen.canary_hash), (false, None), "another Application's canary");
        assert_eq!(seen.request, Some("promote@1"));

        o.autoscaled = false;
        o.canary = Derived::of(Some(labelled(deployment(1, "shop:v2", Some("new")), "shop")), &this_app());
        let seen = o.observe(&app, "main@sha1:abc");
        assert_eq!(seen.replicas, 5, "Git's count");
        assert_eq!((seen.canary.exists, seen.canary_hash), (true, Some("new")));
    }

    #[test]
    fn derived_objects_are_known_by_whose_labels_they_carry() {
        let ours = Derived::of(Some(labelled(deployment(1, "x", None), "shop")), &this_app());
        assert!(ours.ours.is_some() && ours.foreign.is_none());
        assert_eq!(ours.uid(), Some("uid-of-shop"));
        let theirs = Derived::of(Some(labelled(deployment(1, "x", None), "other")), &this_app());
        assert!(theirs.ours.is_none() && theirs.foreign.is_some());
        assert_eq!(theirs.uid(), None, "never deleted: no precondition to give");
        let unlabelled = Derived::of(Some(deployment(1, "x", None)), &this_app());
        assert!(unlabelled.ours.is_none() && unlabelled.foreign.is_some());
        let none = Derived::of(None, &this_app());
        assert!(none.ours.is_none() && none.foreign.is_none());
    }

    #[test]
    fn the_objects_a_rollout_derives_are_deleted_with_the_application() {
        let entry = |group: &str, version: &str, kind: &str, name: &str| InventoryEntry {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            namespace: Some("team".into()),
            name: name.into(),
        };
        let inventory = vec![entry("", "v1", "Service", "shop"), entry("apps", "v1", "Deployment", "shop")];
        let canary = app(json!({"canary": {"workload": {"name": "shop"}, "steps": []}}));
        assert_eq!(
            derived_objects(&canary, &inventory),
            vec![entry("apps", "v1", "Deployment", "shop-canary")]
        );

        let gateway = app(json!({"canary": {"workload": {"name": "shop"}, "steps": [],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "shop", "stableService": "web"}}}}));
        assert_eq!(
            derived_objects(&gateway, &inventory),
            vec![entry("apps", "v1", "Deployment", "shop-canary"), entry("", "v1", "Service", "web-canary")]
        );

        let blue_green = app(json!({"blueGreen": {"workload": {"name": "shop"}, "activeService": "shop"}}));
        assert_eq!(
            derived_objects(&blue_green, &inventory),
            vec![entry("apps", "v1", "Deployment", "shop-canary")]
        );

        // The workload never applied: nothing was derived from it.
        assert!(derived_objects(&canary, &inventory[..1]).is_empty());
        let mut plain = canary.clone();
        plain.spec.strategy = None;
        assert!(derived_objects(&plain, &inventory).is_empty());
    }

    /// Each failure with today's text, reason, category and retry, and the same through
    /// SyncError, which the sync reports.
    #[test]
    fn rollout_failures_keep_their_text_reason_category_and_retry() {
        let revision = "main@sha1:abc".to_string();
        let transient =
            ApplyError::Transient { object: "Deployment team/shop".into(), message: "timed out".into() };
        let refused = ApplyError::Refused {
            object: "Deployment team/shop-canary".into(),
            code: 422,
            reason: "Invalid".into(),
            message: "bad".into(),
        };
        let conflict = |owner: Option<AppRef>| {
            RolloutError::Conflict(Box::new(CanaryConflict {
                kind: "Deployment".into(),
                namespace: "team".into(),
                name: "shop-canary".into(),
                owner,
                revision: revision.clone(),
            }))
        };
        let cases = [
            (
                RolloutError::NotRendered {
                    field: "spec.strategy.blueGreen.activeService",
                    kind: "Service",
                    name: "web".into(),
                    revision: revision.clone(),
                },
                "spec.strategy.blueGreen.activeService names Service web, which main@sha1:abc does not render",
                ("ValidationFailed", "validation", false),
            ),
            (
                RolloutError::NoTemplate { name: "shop".into() },
                "Deployment shop (spec.strategy workload) has no spec.template",
                ("ValidationFailed", "validation", false),
            ),
            (
                RolloutError::from(transient),
                "Deployment team/shop: timed out",
                ("ApplyFailed", "apply", true),
            ),
            (
                RolloutError::from(refused),
                "Deployment team/shop-canary: refused by the API server: bad",
                ("ApplyFailed", "apply", false),
            ),
            (
                conflict(Some(AppRef { namespace: "team".into(), name: "other".into() })),
                "Deployment team/shop-canary exists and is not this Application's canary (it belongs to Application team/other); ferry neither takes it over nor deletes it, so the rollout of main@sha1:abc stopped: rename or remove that object",
                ("OwnershipConflict", "conflict", false),
            ),
            (
                conflict(None),
                "Deployment team/shop-canary exists and is not this Application's canary (it was not created by ferry); ferry neither takes it over nor deletes it, so the rollout of main@sha1:abc stopped: rename or remove that object",
                ("OwnershipConflict", "conflict", false),
            ),
        ];
        for (err, text, (reason, category, transient)) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(
                (err.reason(), err.category(), err.is_transient()),
                (reason, category, transient),
                "{text}"
            );
            let sync = SyncError::from(err);
            assert_eq!(sync.to_string(), text);
            assert_eq!(
                (sync.reason(), sync.category(), sync.is_transient()),
                (reason, category, transient),
                "{text}"
            );
        }
    }

    fn measure<'a>(default: Option<&'a str>, allowed: &'a [String]) -> PrometheusMeasure<'a> {
        let prometheus = Err(MeasureError::NoClient("no client in unit tests".to_string()));
        PrometheusMeasure { prometheus, default_address: default, allowed, vars: BTreeMap::new() }
    }

    #[test]
    fn analyses_query_only_the_prometheus_ferry_is_told_of() {
        let allowed = vec!["http://prometheus.monitoring:9090".to_string()];
        let m = measure(Some("http://prom.ops:9090/"), &allowed);
        assert!(m.permitted("http://prometheus.monitoring:9090/").is_ok());
        assert!(m.permitted("http://prom.ops:9090").is_ok());
        let err = m.permitted("http://169.254.169.254/latest").unwrap_err().to_string();
        assert!(err.contains("169.254.169.254") && err.contains("--allowed-prometheus-urls"), "{err}");
        // Without the flag, as before: any address (single-team installs).
        assert!(measure(None, &[]).permitted("http://anything:1").is_ok());
    }

    /// Why `m` could not take a measurement of `metric`.
    async fn taken(m: &PrometheusMeasure<'_>, metric: AnalysisMetric) -> String {
        m.measure(&metric).await.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn a_measurement_that_cannot_be_taken_says_why_in_the_order_a_person_fixes_it() {
        let metric = |address: Option<&str>, query: &str| -> AnalysisMetric {
            serde_json::from_value(
                json!({"name": "errors", "prometheus": {"address": address, "query": query}}),
            )
            .unwrap()
        };
        let allowed = vec!["http://prometheus:9090".to_string()];
        let nowhere = measure(None, &allowed);
        assert_eq!(
            taken(&nowhere, metric(None, "{{nope}}")).await,
            "no Prometheus to ask: set prometheus.address on the metric or run ferry with --prometheus-url"
        );
        assert_eq!(
            taken(&nowhere, metric(Some("http://elsewhere"), "{{nope}}")).await,
            "prometheus.address \"http://elsewhere\" is not one ferry may query (--allowed-prometheus-urls: http://prometheus:9090)"
        );
        let default = measure(Some("http://prometheus:9090"), &allowed);
        assert_eq!(taken(&default, metric(None, "up")).await, "no client in unit tests");
        // The texts of the later failures are their sources' own.
        let unclosed = MeasureError::from(crate::rollout::analysis::TemplateError::Unclosed);
        assert_eq!(unclosed.to_string(), "query has a `{{` without its `}}`");
        let timeout =
            QueryError::Timeout { base: "http://p".into(), timeout: std::time::Duration::from_secs(3) };
        assert_eq!(MeasureError::from(timeout).to_string(), "http://p did not answer within 3s");
    }

    #[test]
    fn queries_name_the_commit_alone() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let revision: Revision = format!("main@sha1:{sha}").parse().unwrap();
        let vars = query_vars(&revision.commit, Some("team"), "shop");
        assert_eq!(
            vars.into_iter().collect::<Vec<_>>(),
            vec![
                ("namespace", "team".to_string()),
                ("revision", sha.to_string()),
                ("variant", "canary".to_string()),
                ("workload", "shop".to_string()),
            ]
        );
        assert_eq!(query_vars("", None, "shop")["namespace"], "", "no namespace: empty");
    }
}
