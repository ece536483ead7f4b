//! The controller's side of a canary rollout: reads the live primary and canary, asks the state
//! machine (`rollout::canary`) what to do, rewrites Git's Deployment into the primary as the
//! rollout wants it applied, and converges the canary Deployment after the apply.
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
    sync::SyncError,
    watches::Seen,
};
use crate::{
    api::{AnalysisMetric, Application, CanaryStrategy, ROLLOUT_REQUEST_ANNOTATION},
    apply::{Applier, ApplyError},
    rollout::{
        analysis::render_query,
        canary::{self, Canary, Decision, Measure, Observed, Primary, Taken},
        prometheus::Prometheus,
        workload::{self, Availability, CANARY, ROLLOUT_FIELD_MANAGER},
    },
};

/// The canary strategy of an Application, if it has one.
pub(super) fn canary_of(app: &Application) -> Option<&CanaryStrategy> {
    app.spec.strategy.as_ref()?.canary.as_ref()
}

/// A rendered object and its kind.
pub(super) type Target<'a> = (&'a DynamicObject, &'a (ApiResource, ApiCapabilities));

/// Gateway API routing: the HTTPRoute (its index among the desired objects) and the stable
/// Service, as rendered.
pub(super) struct Gateway<'a> {
    pub route_index: usize,
    pub route: &'a DynamicObject,
    pub service: Target<'a>,
}

/// A pass's decision and what is needed to carry it out.
pub(super) struct Pass {
    pub decision: Decision,
    /// Git's Deployment as prepared (labelled), from which the canary is derived.
    git: Value,
    live_primary: Option<Value>,
    canary_exists: bool,
    template_hash: String,
    resource: (ApiResource, ApiCapabilities),
    routing: Option<Routing>,
}

/// What Gateway API routing needs after the decision.
struct Routing {
    route_index: usize,
    route: Value,
    service: Value,
    service_resource: (ApiResource, ApiCapabilities),
    canary_service_exists: bool,
}

impl Pass {
    /// The primary as it is applied this pass.
    pub fn primary(&self) -> Value {
        let mut obj = self.git.clone();
        match (self.decision.primary, &self.live_primary) {
            (Primary::Hold { replicas }, Some(live)) => workload::hold(&mut obj, live, replicas),
            _ => workload::stamp(&mut obj, &self.template_hash),
        }
        obj
    }

    /// The HTTPRoute to apply instead of Git's (its index among the desired objects), while
    /// the rollout splits traffic.
    pub fn route(&self) -> Option<(usize, Value)> {
        let routing = self.routing.as_ref()?;
        let weight = self.decision.route_weight?;
        let service = routing.service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let mut route = routing.route.clone();
        workload::split_route(&mut route, service, weight);
        Some((routing.route_index, route))
    }
}

/// Decides this pass for `git` (the workload Deployment as rendered and labelled).
pub(super) async fn decide(
    ctx: &Context,
    app: &Application,
    mem: &AppMemory,
    applier: &Applier,
    (git, resource): Target<'_>,
    gateway: Option<Gateway<'_>>,
    revision: &str,
) -> Result<Pass, SyncError> {
    let spec = canary_of(app).expect("decide runs for Applications with a canary strategy");
    let git_value = serde_json::to_value(git).expect("objects serialize");
    let namespace = git.namespace();
    let name = git.name_any();
    let template_hash = workload::template_hash(&git_value).ok_or_else(|| {
        SyncError::Validation(format!(
            "Deployment {name} (spec.strategy.canary.workload) has no spec.template"
        ))
    })?;
    let key = ObjKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let live_primary = live(ctx, mem, applier, resource, namespace.as_deref(), &name, Some(&key)).await?;
    let canary_name = workload::canary_name(&name);
    let live_canary = live(ctx, mem, applier, resource, namespace.as_deref(), &canary_name, None).await?;

    let status = app.status.as_ref();
    let observed = Observed {
        revision,
        template_hash: &template_hash,
        replicas: workload::replicas(&git_value),
        primary_hash: live_primary.as_ref().and_then(workload::stamped_hash),
        primary: Availability::of(live_primary.as_ref()),
        canary: Availability::of(live_canary.as_ref()),
        canary_hash: live_canary.as_ref().and_then(workload::stamped_hash),
        last_applied_revision: status.and_then(|s| s.last_applied_revision.as_deref()),
        request: app.annotations().get(ROLLOUT_REQUEST_ANNOTATION).map(String::as_str),
        now: k8s_openapi::jiff::Timestamp::now(),
    };
    let commit = revision.rsplit_once("sha1:").map(|(_, c)| c).unwrap_or(revision);
    let measure = PrometheusMeasure {
        prometheus: &ctx.prometheus,
        default_address: ctx.options.prometheus_url.as_deref(),
        vars: BTreeMap::from([
            ("revision", commit.to_string()),
            ("namespace", namespace.clone().unwrap_or_default()),
            ("workload", name.clone()),
            ("variant", CANARY.to_string()),
        ]),
    };
    let prev = status.and_then(|s| s.rollout.as_ref());
    let decision = canary::advance(spec, &name, prev, &observed, &measure).await;
    let routing = gateway.map(|g| {
        let service = serde_json::to_value(g.service.0).expect("objects serialize");
        let name = workload::canary_name(&g.service.0.name_any());
        let seen = ctx.watches.seen(&g.service.1.0, namespace.as_deref(), &name);
        Routing {
            route_index: g.route_index,
            route: serde_json::to_value(g.route).expect("objects serialize"),
            service,
            service_resource: g.service.1.clone(),
            canary_service_exists: seen != Seen::Absent,
        }
    });
    Ok(Pass {
        decision,
        git: git_value,
        live_primary,
        canary_exists: live_canary.is_some(),
        template_hash,
        resource: resource.clone(),
        routing,
    })
}

/// Creates, scales or removes the canary Deployment as decided. Idempotent: the same decision
/// applied twice writes the same object.
pub(super) async fn converge_canary(applier: &Applier, pass: &Pass) -> Result<(), SyncError> {
    let (resource, caps) = &pass.resource;
    let from_apply = |e: ApplyError| SyncError::Apply { transient: e.is_transient(), message: e.to_string() };
    let namespace = pass.git.pointer("/metadata/namespace").and_then(Value::as_str);
    let routing = pass.routing.as_ref();
    match pass.decision.canary {
        Canary::Present { replicas } => {
            let apart = routing.map(|r| workload::selector_keys(&r.service)).unwrap_or_default();
            if let Some(r) = routing {
                let service = workload::canary_service(&r.service);
                let obj: DynamicObject = serde_json::from_value(service).expect("a Service deserializes");
                applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await.map_err(from_apply)?;
            }
            let canary = workload::canary_deployment(&pass.git, replicas, &pass.template_hash, &apart);
            let obj: DynamicObject = serde_json::from_value(canary).expect("a Deployment deserializes");
            applier.apply_as(ROLLOUT_FIELD_MANAGER, &obj, true).await.map_err(from_apply)?;
        }
        Canary::Absent => {
            if pass.canary_exists {
                let name = workload::canary_name(
                    pass.git.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
                );
                let shown = format!("Deployment {}/{name}", namespace.unwrap_or_default());
                applier.delete(&shown, resource, caps, namespace, &name).await.map_err(from_apply)?;
            }
            if let Some(r) = routing.filter(|r| r.canary_service_exists) {
                let name = workload::canary_name(
                    r.service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
                );
                let shown = format!("Service {}/{name}", namespace.unwrap_or_default());
                let (resource, caps) = &r.service_resource;
                applier.delete(&shown, resource, caps, namespace, &name).await.map_err(from_apply)?;
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
    let shown = format!("Deployment {}/{name}", namespace.unwrap_or_default());
    let got = applier
        .get(&shown, resource, caps, namespace, name)
        .await
        .map_err(|e| SyncError::Apply { transient: e.is_transient(), message: e.to_string() })?;
    Ok(got.map(|o| serde_json::to_value(o).expect("objects serialize")))
}

/// Measurements from Prometheus.
struct PrometheusMeasure<'a> {
    prometheus: &'a Result<Prometheus, String>,
    default_address: Option<&'a str>,
    vars: BTreeMap<&'static str, String>,
}

impl Measure for PrometheusMeasure<'_> {
    fn measure(&self, metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send {
        let address = metric.prometheus.address.as_deref().or(self.default_address).map(str::to_string);
        let query = render_query(&metric.prometheus.query, &self.vars).map_err(|e| e.to_string());
        let prometheus = self.prometheus.clone();
        async move {
            let address = address.ok_or_else(|| {
                "no Prometheus to ask: set prometheus.address on the metric or run ferry with --prometheus-url"
                    .to_string()
            })?;
            prometheus?.query(&address, &query?).await
        }
    }
}
