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
    error::SyncError,
    memory::{AppMemory, ObjKey},
    watches::Seen,
};
use crate::{
    api::{AnalysisMetric, Application, InventoryEntry, ROLLOUT_REQUEST_ANNOTATION},
    apply::{AppRef, Applier, ApplyError, Ownership, ownership_of},
    rollout::{
        analysis::render_query,
        blue_green, canary,
        prometheus::Prometheus,
        types::{Canary, Decision, Measure, Observed, Primary, Taken},
        workload::{self, Availability, CANARY, ROLLOUT_FIELD_MANAGER},
    },
};

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
    workload_index: usize,
    /// Git's Deployment as prepared (labelled), from which the canary is derived.
    git: Value,
    live_primary: Option<Value>,
    /// The live `<workload>-canary` Deployment.
    canary: Derived,
    template_hash: String,
    resource: (ApiResource, ApiCapabilities),
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
        let mut primary = self.git.clone();
        match (self.decision.primary, &self.live_primary) {
            (Primary::Hold { replicas }, Some(live)) => {
                workload::hold(&mut primary, live, (!self.autoscaled).then_some(replicas))
            }
            _ => workload::stamp(&mut primary, &self.template_hash),
        }
        let mut out = vec![(self.workload_index, primary)];
        match &self.routing {
            Some(Routing::Gateway { route_index, route, service, .. }) => {
                if let Some(weight) = self.decision.route_weight {
                    let name = service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                    let mut route = route.clone();
                    workload::split_route(&mut route, name, weight);
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
}

/// Decides this pass: reads the live primary and new-version Deployments and runs the
/// Application's strategy. `find` looks up the rendered objects the strategy names.
pub(super) async fn decide(
    ctx: &Context,
    app: &Application,
    mem: &AppMemory,
    applier: &Applier,
    find: &Find<'_>,
    autoscaled: bool,
    revision: &str,
) -> Result<Pass, SyncError> {
    let strategy = app.spec.strategy.as_ref().expect("decide runs for Applications with a strategy");
    let workload_name = workload_of(app).expect("a strategy names a workload");
    let invalid = |what: String| format!("{what}, which {revision} does not render");
    let (workload_index, git, resource) = find("apps", "Deployment", workload_name).ok_or_else(|| {
        SyncError::Validation(invalid(format!("spec.strategy names Deployment {workload_name}")))
    })?;
    let git_value = serde_json::to_value(git).expect("objects serialize");
    let namespace = git.namespace();
    let name = git.name_any();
    let template_hash = workload::template_hash(&git_value).ok_or_else(|| {
        SyncError::Validation(format!("Deployment {name} (spec.strategy workload) has no spec.template"))
    })?;
    let key = ObjKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let live_primary = live(ctx, mem, applier, resource, namespace.as_deref(), &name, Some(&key)).await?;
    let app_ref = AppRef { namespace: app.namespace().unwrap_or_default(), name: app.name_any() };
    let canary_name = workload::canary_name(&name);
    let canary = live(ctx, mem, applier, resource, namespace.as_deref(), &canary_name, None).await?;
    let canary = Derived::of(canary, &app_ref);

    let service = |name: &str, field: &str| {
        find("", "Service", name)
            .map(|(i, obj, res)| (i, serde_json::to_value(obj).expect("objects serialize"), res.clone()))
            .ok_or_else(|| invalid(format!("spec.strategy.{field} names Service {name}")))
    };
    let routing = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => match c.traffic_routing.as_ref().and_then(|t| t.gateway_api.as_ref()) {
            None => None,
            Some(g) => {
                let (route_index, route, _) = find("gateway.networking.k8s.io", "HTTPRoute", &g.http_route)
                    .ok_or_else(|| {
                        invalid(format!(
                            "spec.strategy.canary.trafficRouting.gatewayAPI names HTTPRoute {}",
                            g.http_route
                        ))
                    })
                    .map_err(SyncError::Validation)?;
                let stable = g.stable_service.as_deref().unwrap_or(workload_name);
                let (_, service, service_resource) =
                    service(stable, "canary.trafficRouting.gatewayAPI.stableService")
                        .map_err(SyncError::Validation)?;
                let canary_service = labelled(
                    ctx,
                    applier,
                    &service_resource,
                    namespace.as_deref(),
                    &workload::canary_name(stable),
                )
                .await?;
                Some(Routing::Gateway {
                    route_index,
                    route: serde_json::to_value(route).expect("objects serialize"),
                    service,
                    service_resource,
                    canary_service: Box::new(Derived::of(canary_service, &app_ref)),
                })
            }
        },
        (None, Some(b)) => {
            let (i, active, _) =
                service(&b.active_service, "blueGreen.activeService").map_err(SyncError::Validation)?;
            let preview = match &b.preview_service {
                Some(p) => {
                    let (j, preview, _) =
                        service(p, "blueGreen.previewService").map_err(SyncError::Validation)?;
                    Some((j, preview))
                }
                None => None,
            };
            Some(Routing::Services { active: (i, active), preview })
        }
        (None, None) => None,
    };

    let status = app.status.as_ref();
    let observed = Observed {
        revision,
        template_hash: &template_hash,
        replicas: match (&live_primary, autoscaled) {
            (Some(live), true) => workload::replicas(live),
            _ => workload::replicas(&git_value),
        },
        primary_hash: live_primary.as_ref().and_then(workload::stamped_hash),
        primary: Availability::of(live_primary.as_ref()),
        canary: Availability::of(canary.ours.as_ref()),
        canary_hash: canary.ours.as_ref().and_then(workload::stamped_hash),
        last_applied_revision: status.and_then(|s| s.last_applied_revision.as_deref()),
        request: app.annotations().get(ROLLOUT_REQUEST_ANNOTATION).map(String::as_str),
        now: k8s_openapi::jiff::Timestamp::now(),
    };
    let commit = revision.rsplit_once("sha1:").map(|(_, c)| c).unwrap_or(revision);
    let measure = PrometheusMeasure {
        prometheus: &ctx.prometheus,
        default_address: ctx.options.prometheus_url.as_deref(),
        allowed: &ctx.options.allowed_prometheus_urls,
        vars: BTreeMap::from([
            ("revision", commit.to_string()),
            ("namespace", namespace.clone().unwrap_or_default()),
            ("workload", name.clone()),
            ("variant", CANARY.to_string()),
        ]),
    };
    let prev = status.and_then(|s| s.rollout.as_ref());
    let decision = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => canary::advance(c, &name, prev, &observed, &measure).await,
        (None, Some(b)) => blue_green::advance(b, &name, prev, &observed, &measure).await,
        (None, None) => unreachable!("workload_of found a strategy"),
    };
    if let Canary::Present { .. } = decision.canary {
        // Nothing is written yet: a canary name taken by someone else stops the rollout here.
        let ns = namespace.as_deref();
        writable(applier, resource, ns, &canary_name, &canary, &app_ref, revision).await?;
        if let Some(Routing::Gateway { service, service_resource, canary_service, .. }) = &routing {
            let stable = service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let name = workload::canary_name(stable);
            writable(applier, service_resource, ns, &name, canary_service, &app_ref, revision).await?;
        }
    }
    Ok(Pass {
        decision,
        workload_index,
        git: git_value,
        live_primary,
        canary,
        template_hash,
        resource: resource.clone(),
        routing,
        autoscaled,
    })
}

/// Creates, scales or removes the canary Deployment as decided. Idempotent: the same decision
/// applied twice writes the same object.
pub(super) async fn converge_canary(applier: &Applier, pass: &Pass) -> Result<(), SyncError> {
    let (resource, caps) = &pass.resource;
    let from_apply =
        |e: ApplyError| SyncError::ApplyFailed { transient: e.is_transient(), message: e.to_string() };
    let namespace = pass.git.pointer("/metadata/namespace").and_then(Value::as_str);
    match pass.decision.canary {
        Canary::Present { replicas } => {
            let apart = pass.apart();
            if let Some(Routing::Gateway { service, .. }) = &pass.routing {
                let service = workload::canary_service(service);
                let obj: DynamicObject = serde_json::from_value(service).expect("a Service deserializes");
                applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await.map_err(from_apply)?;
            }
            let canary = workload::canary_deployment(&pass.git, replicas, &pass.template_hash, &apart);
            let obj: DynamicObject = serde_json::from_value(canary).expect("a Deployment deserializes");
            applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await.map_err(from_apply)?;
        }
        // Only this Application's canary objects are deleted, and only the ones read.
        Canary::Absent => {
            if pass.canary.ours.is_some() {
                let name = workload::canary_name(
                    pass.git.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
                );
                let shown = format!("Deployment {}/{name}", namespace.unwrap_or_default());
                let uid = pass.canary.uid();
                applier.delete(&shown, resource, caps, namespace, &name, uid).await.map_err(from_apply)?;
            }
            if let Some(Routing::Gateway { service, service_resource, canary_service, .. }) = &pass.routing
                && canary_service.ours.is_some()
            {
                let name = workload::canary_name(
                    service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
                );
                let shown = format!("Service {}/{name}", namespace.unwrap_or_default());
                let (resource, caps) = service_resource;
                let uid = canary_service.uid();
                applier.delete(&shown, resource, caps, namespace, &name, uid).await.map_err(from_apply)?;
            }
        }
    }
    Ok(())
}

/// A Deployment as it is now: from memory when the watch shows ferry already saw this
/// resourceVersion, from the watch when it says there is none, else read.
async fn live(
    ctx: &Context,
    mem: &AppMemory,
    applier: &Applier,
    (resource, caps): &(ApiResource, ApiCapabilities),
    namespace: Option<&str>,
    name: &str,
    key: Option<&ObjKey>,
) -> Result<Option<Value>, SyncError> {
    match ctx.watches.seen(resource, namespace, name) {
        Seen::Absent => return Ok(None),
        Seen::Present { resource_version, .. } => {
            let known = key.and_then(|k| mem.known.get(k));
            if let Some(k) = known.filter(|k| k.resource_version == resource_version)
                && let Some(live) = &k.live
            {
                return Ok(Some(live.as_ref().clone()));
            }
        }
        Seen::Unknown => {}
    }
    get(applier, &(resource.clone(), caps.clone()), namespace, name, "Deployment").await
}

/// The live object, read.
async fn get(
    applier: &Applier,
    (resource, caps): &(ApiResource, ApiCapabilities),
    namespace: Option<&str>,
    name: &str,
    kind: &str,
) -> Result<Option<Value>, SyncError> {
    let shown = format!("{kind} {}/{name}", namespace.unwrap_or_default());
    let got = applier
        .get(&shown, resource, caps, namespace, name)
        .await
        .map_err(|e| SyncError::ApplyFailed { transient: e.is_transient(), message: e.to_string() })?;
    Ok(got.map(|o| serde_json::to_value(o).expect("objects serialize")))
}

/// The live object when the watch knows one with ferry's labels (or cannot tell yet); `None`
/// when it knows none, though one without ferry's labels may exist (see [`writable`]).
async fn labelled(
    ctx: &Context,
    applier: &Applier,
    kind: &(ApiResource, ApiCapabilities),
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, SyncError> {
    if ctx.watches.seen(&kind.0, namespace, name) == Seen::Absent {
        return Ok(None);
    }
    get(applier, kind, namespace, name, &kind.0.kind).await
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

/// Whether the rollout may create or update `<kind> namespace/name`: it is this Application's or
/// does not exist. The watch sees only objects with ferry's labels, so when it knew of none the
/// API server is asked. Someone else's object of that name is a conflict that stops the rollout.
async fn writable(
    applier: &Applier,
    kind: &(ApiResource, ApiCapabilities),
    namespace: Option<&str>,
    name: &str,
    live: &Derived,
    app: &AppRef,
    revision: &str,
) -> Result<(), SyncError> {
    let foreign = match (&live.ours, &live.foreign) {
        (Some(_), _) => None,
        (None, Some(foreign)) => Some(foreign.clone()),
        (None, None) => {
            let live = get(applier, kind, namespace, name, &kind.0.kind).await?;
            live.filter(|v| owner(v, app) != Ownership::Ours)
        }
    };
    let Some(foreign) = foreign else { return Ok(()) };
    let whose = match owner(&foreign, app) {
        Ownership::Other(other) => format!("it belongs to Application {other}"),
        _ => "it was not created by ferry".to_string(),
    };
    Err(SyncError::Conflict(format!(
        "{} {}/{name} exists and is not this Application's canary ({whose}); ferry neither takes it over nor deletes it, so the rollout of {revision} stopped: rename or remove that object",
        kind.0.kind,
        namespace.unwrap_or_default()
    )))
}

/// Measurements from Prometheus.
struct PrometheusMeasure<'a> {
    prometheus: &'a Result<Prometheus, String>,
    default_address: Option<&'a str>,
    /// `--allowed-prometheus-urls`: the only addresses a metric may name (empty: any).
    allowed: &'a [String],
    vars: BTreeMap<&'static str, String>,
}

impl PrometheusMeasure<'_> {
    /// An address a metric names must be one ferry may query: otherwise any Application author
    /// could make ferry send GET requests to any URL it can reach (and read a JSON answer's
    /// error back in the status).
    fn permitted(&self, address: &str) -> Result<(), String> {
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if self.allowed.is_empty()
            || self.default_address.is_some_and(|d| same(d, address))
            || self.allowed.iter().any(|a| same(a, address))
        {
            return Ok(());
        }
        Err(format!(
            "prometheus.address {address:?} is not one ferry may query (--allowed-prometheus-urls: {})",
            self.allowed.join(", ")
        ))
    }
}

impl Measure for PrometheusMeasure<'_> {
    fn measure(&self, metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send {
        let address = metric.prometheus.address.as_deref().or(self.default_address).map(str::to_string);
        let query = render_query(&metric.prometheus.query, &self.vars).map_err(|e| e.to_string());
        let prometheus = self.prometheus.clone();
        let permitted = address.as_deref().map_or(Ok(()), |a| self.permitted(a));
        async move {
            let address = address.ok_or_else(|| {
                "no Prometheus to ask: set prometheus.address on the metric or run ferry with --prometheus-url"
                    .to_string()
            })?;
            permitted?;
            prometheus?.query(&address, &query?).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure<'a>(default: Option<&'a str>, allowed: &'a [String]) -> PrometheusMeasure<'a> {
        static NONE: std::sync::OnceLock<Result<Prometheus, String>> = std::sync::OnceLock::new();
        let prometheus = NONE.get_or_init(|| Err("no client in unit tests".to_string()));
        PrometheusMeasure { prometheus, default_address: default, allowed, vars: BTreeMap::new() }
    }

    #[test]
    fn analyses_query_only_the_prometheus_ferry_is_told_of() {
        let allowed = vec!["http://prometheus.monitoring:9090".to_string()];
        let m = measure(Some("http://prom.ops:9090/"), &allowed);
        assert!(m.permitted("http://prometheus.monitoring:9090/").is_ok());
        assert!(m.permitted("http://prom.ops:9090").is_ok());
        let err = m.permitted("http://169.254.169.254/latest").unwrap_err();
        assert!(err.contains("169.254.169.254") && err.contains("--allowed-prometheus-urls"), "{err}");
        // Without the flag, as before: any address (single-team installs).
        assert!(measure(None, &[]).permitted("http://anything:1").is_ok());
    }
}
