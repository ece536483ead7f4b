//! The controller's side of a rollout: reads the live primary and new-version (`<name>-canary`)
//! Deployments, asks the state machine (`rollout::canary` or `rollout::blue_green`) what to do,
//! rewrites Git's objects into what the rollout wants applied (the primary, an HTTPRoute's
//! weights, blue-green Services' selectors), and converges the new-version objects after the
//! apply.
//!
//! One sync pass, one decision: the primary goes through the normal plan/validate/apply (so a
//! rollout never fights the sync), the canary is applied by field manager `ferry-rollout`, and
//! the decision's status lands in `status.rollout` with the rest of the status.

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource},
};
use serde_json::Value;

use super::{
    context::Context,
    memory::{AppMemory, ObjKey},
    watches::Seen,
};
use crate::{
    api::{
        AnalysisMetric, Application, BlueGreenStrategy, GatewayApiRouting, InventoryEntry,
        ROLLOUT_REQUEST_ANNOTATION, Strategy, conditions,
    },
    apply::{AppRef, Applier, ApplyError, Ownership, ownership_of},
    rollout::{
        analysis::render_query,
        blue_green, canary,
        prometheus::Prometheus,
        types::{Canary, Decision, Measure, MeasureError, Observed, Primary, Taken},
        workload::{self, Availability, CANARY, ROLLOUT_FIELD_MANAGER},
    },
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
    /// The objects to apply instead of Git's (by index among the desired objects): the primary
    /// as the rollout holds it, and the route or Services pointed where the rollout says.
    pub fn rewrites(&self) -> Vec<(usize, Value)> {
        let o = &self.objects;
        let mut primary = o.git.clone();
        match (self.decision.primary, &o.live_primary) {
            (Primary::Hold { replicas }, Some(live)) => {
                workload::hold(&mut primary, live, (!o.autoscaled).then_some(replicas))
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
            now: k8s_openapi::jiff::Timestamp::now(),
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
    applier: &Applier,
    find: &Find<'_>,
    autoscaled: bool,
    revision: &str,
) -> Result<Pass, RolloutError> {
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
    let cluster = Cluster {
        ctx,
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
    let objects = Objects {
        workload_index,
        git: git_value,
        template_hash,
        resource: resource.clone(),
        live_primary,
        canary: Derived::of(canary, &cluster.app),
        routing: Routing::of(strategy, &rendered, &cluster, workload_name).await?,
        autoscaled,
    };

    let measure = PrometheusMeasure::for_workload(ctx, revision, namespace.as_deref(), &name);
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

/// Creates, scales or removes the canary Deployment as decided. Idempotent: the same decision
/// applied twice writes the same object.
pub(super) async fn converge_canary(applier: &Applier, pass: &Pass) -> Result<(), RolloutError> {
    let o = &pass.objects;
    match pass.decision.canary {
        Canary::Present { replicas } => {
            if let Some(Routing::Gateway { service, .. }) = &o.routing {
                let service = workload::canary_service(service);
                let obj: DynamicObject = serde_json::from_value(service).expect("a Service deserializes");
                applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await?;
            }
            let canary = workload::canary_deployment(&o.git, replicas, &o.template_hash, &o.apart());
            let obj: DynamicObject = serde_json::from_value(canary).expect("a Deployment deserializes");
            applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await?;
        }
        // Only this Application's canary objects are deleted, and only the ones read.
        Canary::Absent => {
            let namespace = o.namespace();
            if o.canary.ours.is_some() {
                let name = o.canary_name();
                let shown = format!("Deployment {}/{name}", namespace.unwrap_or_default());
                let (resource, caps) = &o.resource;
                applier.delete(&shown, resource, caps, namespace, &name, o.canary.uid()).await?;
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
    Ok(())
}

/// Where a pass reads live objects: the watches and the memory of earlier passes first, the API
/// server when they cannot tell. Everything it reads is in the workload's namespace.
struct Cluster<'a> {
    ctx: &'a Context,
    mem: &'a AppMemory,
    applier: &'a Applier,
    /// The Application the rollout is of: whose derived objects are its own.
    app: AppRef,
    namespace: Option<&'a str>,
    /// The revision being rolled out, for the messages.
    revision: &'a str,
}

impl Cluster<'_> {
    /// A Deployment as it is now: from memory when the watch shows ferry already saw this
    /// resourceVersion, from the watch when it says there is none, else read.
    async fn live(
        &self,
        (resource, caps): &(ApiResource, ApiCapabilities),
        name: &str,
        key: Option<&ObjKey>,
    ) -> Result<Option<Value>, RolloutError> {
        match self.ctx.watches.seen(resource, self.namespace, name) {
            Seen::Absent => return Ok(None),
            Seen::Present { resource_version, .. } => {
                let known = key.and_then(|k| self.mem.known.get(k));
                if let Some(k) = known.filter(|k| k.resource_version == resource_version)
                    && let Some(live) = &k.live
                {
                    return Ok(Some(live.as_ref().clone()));
                }
            }
            Seen::Unknown => {}
        }
        self.get(&(resource.clone(), caps.clone()), name, "Deployment").await
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
        if self.ctx.watches.seen(&kind.0, self.namespace, name) == Seen::Absent {
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
    /// Measurements of one workload's rollout: its queries' `{{revision}}` (the commit),
    /// `{{namespace}}`, `{{workload}}` and `{{variant}}`.
    fn for_workload(ctx: &'a Context, revision: &str, namespace: Option<&str>, workload: &str) -> Self {
        let commit = revision.rsplit_once("sha1:").map(|(_, c)| c).unwrap_or(revision);
        PrometheusMeasure {
            prometheus: ctx.prometheus.as_ref().map_err(|why| MeasureError::NoClient(why.clone())),
            default_address: ctx.options.prometheus_url.as_deref(),
            allowed: &ctx.options.allowed_prometheus_urls,
            vars: BTreeMap::from([
                ("revision", commit.to_string()),
                ("namespace", namespace.unwrap_or_default().to_string()),
                ("workload", workload.to_string()),
                ("variant", CANARY.to_string()),
            ]),
        }
    }

    /// An address a metric names must be one ferry may query: otherwise any Application author
    /// could make ferry send GET requests to any URL it can reach (and read a JSON answer's
    /// error back in the status).
    fn permitted(&self, address: &str) -> Result<(), MeasureError> {
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if self.allowed.is_empty()
            || self.default_address.is_some_and(|d| same(d, address))
            || self.allowed.iter().any(|a| same(a, address))
        {
            return Ok(());
        }
        Err(MeasureError::NotAllowed { address: address.to_string(), allowed: self.allowed.to_vec() })
    }
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
    use super::*;

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
}
