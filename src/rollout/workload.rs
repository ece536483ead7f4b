//! The objects of a rollout as plain JSON: the primary (the Deployment in Git), the
//! `<name>-canary` Deployment ferry derives from it, and the Services and HTTPRoute a rollout
//! points at the new version (the `<service>-canary` Service, route weights, selectors). Pure
//! functions over `serde_json::Value`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::apply::MANIFEST_HASH;

/// Label on the objects ferry derives for a rollout (`canary`).
pub const VARIANT_LABEL: &str = "ferry.dev/variant";
/// The canary variant's label value, also `{{variant}}` in analysis queries.
pub const CANARY: &str = "canary";
/// Annotation on the primary: the hash of the pod template it runs, as rendered from Git. A
/// rollout starts when Git's template hashes differently.
pub const TEMPLATE_HASH: &str = "ferry.dev/template-hash";
/// Field manager of what the rollout engine writes (the canary Deployment).
pub const ROLLOUT_FIELD_MANAGER: &str = "ferry-rollout";

/// `<workload>-canary`.
pub fn canary_name(workload: &str) -> String {
    format!("{workload}-{CANARY}")
}

/// Hash of a Deployment's `spec.template` (24 hex digits); `None` without a template.
pub fn template_hash(deployment: &Value) -> Option<String> {
    let template = deployment.pointer("/spec/template")?;
    let bytes = serde_json::to_vec(template).expect("JSON values serialize");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Some(digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect())
}

/// The template hash a live Deployment carries.
pub fn stamped_hash(deployment: &Value) -> Option<&str> {
    deployment.pointer("/metadata/annotations")?.get(TEMPLATE_HASH)?.as_str()
}

/// `spec.replicas`, 1 when unset (the API server's default).
pub fn replicas(deployment: &Value) -> i32 {
    deployment.pointer("/spec/replicas").and_then(Value::as_i64).map(|r| r as i32).unwrap_or(1)
}

/// Canary replicas for a traffic weight under replica-ratio routing: `ceil(total * weight / 100)`,
/// so any weight above 0 runs at least one canary pod.
pub fn canary_replicas(total: i32, weight: i32) -> i32 {
    let (total, weight) = (total.max(0) as i64, weight.clamp(0, 100) as i64);
    ((total * weight + 99) / 100) as i32
}

/// What a live Deployment's status says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    pub exists: bool,
    /// `spec.replicas`.
    pub replicas: i32,
    pub updated: i32,
    pub available: i32,
    /// All pods, old and new.
    pub total: i32,
    /// The controller has seen the latest spec.
    pub observed: bool,
    /// `spec.paused`.
    pub paused: bool,
    /// Being deleted (a deletion timestamp, finalizers pending).
    pub deleting: bool,
}

impl Availability {
    pub fn of(live: Option<&Value>) -> Availability {
        let Some(live) = live else { return Availability::default() };
        let int = |p: &str| live.pointer(p).and_then(Value::as_i64).unwrap_or(0) as i32;
        let generation = live.pointer("/metadata/generation").and_then(Value::as_i64);
        let observed = live.pointer("/status/observedGeneration").and_then(Value::as_i64);
        Availability {
            exists: true,
            replicas: replicas(live),
            updated: int("/status/updatedReplicas"),
            available: int("/status/availableReplicas"),
            total: int("/status/replicas"),
            observed: generation.is_some() && observed >= generation,
            paused: live.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false),
            deleting: live.pointer("/metadata/deletionTimestamp").is_some(),
        }
    }

    /// A Deployment rolled out at `replicas`, every pod available, as the tests build one.
    #[cfg(test)]
    pub fn settled(replicas: i32) -> Availability {
        Availability {
            exists: true,
            replicas,
            updated: replicas,
            available: replicas,
            total: replicas,
            observed: true,
            ..Default::default()
        }
    }

    /// Paused, seen so by its controller, at 0 replicas and no pod left: a primary ready to
    /// hand over.
    pub fn drained(&self) -> bool {
        self.paused && self.observed && self.replicas == 0 && self.total == 0
    }

    /// Rolled out at exactly `want` replicas: every pod updated and available, none left over.
    pub fn settled_at(&self, want: i32) -> bool {
        self.exists
            && self.observed
            && self.replicas == want
            && self.updated >= want
            && self.available >= want
            && self.total <= want
    }
}

/// How the canary's pods are told from the primary's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pods<'a> {
    /// Not at all: the canary runs Git's pod template and selector as they are (replica-ratio
    /// routing, where the primary's Service is to send the canary's pods their share). Its
    /// ReplicaSet is then one the primary's Deployment controller recognises as running the
    /// primary's new template, so promotion hands it over instead of rolling the primary.
    AsGit,
    /// By the variant label on the pods and in the selector, and by `-canary` appended to the
    /// values of these label keys (the routed Services' selector keys), so that Services as in
    /// Git never select them. A live canary created so (its selector is immutable) stays so.
    Apart(&'a [String]),
}

impl Pods<'_> {
    /// Whether a live canary Deployment's pods carry the variant label (its selector has it).
    pub fn labelled(live: &Value) -> bool {
        live.pointer("/spec/selector/matchLabels").and_then(|m| m.get(VARIANT_LABEL)).is_some()
    }
}

/// The canary Deployment for `desired` (the primary as rendered and labelled): same pod
/// template, `<name>-canary`, the variant label on its own metadata; its pods as [`Pods`] says.
pub fn canary_deployment(desired: &Value, replicas: i32, template_hash: &str, pods: Pods<'_>) -> Value {
    let name = desired.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let namespace = desired.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null);
    let mut labels = string_map(desired.pointer("/metadata/labels"));
    labels.insert(VARIANT_LABEL.into(), CANARY.into());
    let mut annotations = string_map(desired.pointer("/metadata/annotations"));
    annotations.remove(MANIFEST_HASH);
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert(TEMPLATE_HASH.into(), template_hash.into());

    let mut spec = desired.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["replicas"] = json!(replicas);
    // The primary's own pause (a hand-over in flight) is not the canary's.
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("paused");
    }
    if let Pods::Apart(apart) = pods {
        label_apart(&mut spec, apart);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// The variant label on the pods and in the selector of a Deployment spec, and `-canary` on the
/// values of the `apart` keys.
fn label_apart(spec: &mut Value, apart: &[String]) {
    let selector = spec.get_mut("selector").and_then(Value::as_object_mut);
    if let Some(selector) = selector {
        let match_labels = selector.entry("matchLabels").or_insert_with(|| json!({}));
        match_labels[VARIANT_LABEL] = json!(CANARY);
    } else {
        spec["selector"] = json!({"matchLabels": {VARIANT_LABEL: CANARY}});
    }
    if spec.pointer("/template/metadata/labels").is_none() {
        spec["template"]["metadata"]["labels"] = json!({});
    }
    spec["template"]["metadata"]["labels"][VARIANT_LABEL] = json!(CANARY);
    for key in apart {
        for pointer in ["/selector/matchLabels", "/template/metadata/labels"] {
            if let Some(value) = spec.pointer_mut(pointer).and_then(|l| l.get_mut(key.as_str())) {
                *value = json!(format!("{}-{CANARY}", value.as_str().unwrap_or_default()));
            }
        }
    }
}

/// The keys of a Service's selector.
pub fn selector_keys(service: &Value) -> Vec<String> {
    service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// `<service>-canary`: the stable Service (as rendered and labelled) selecting the canary's pods,
/// whose selector values [`canary_deployment`] suffixed for these keys.
pub fn canary_service(stable: &Value) -> Value {
    let name = stable.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut labels = string_map(stable.pointer("/metadata/labels"));
    labels.insert(VARIANT_LABEL.into(), CANARY.into());
    let mut selector = string_map(stable.pointer("/spec/selector"));
    for value in selector.values_mut() {
        *value = format!("{value}-{CANARY}");
    }
    selector.insert(VARIANT_LABEL.into(), CANARY.into());
    let mut spec = json!({"selector": selector});
    for field in ["ports", "type", "sessionAffinity", "ipFamilyPolicy", "ipFamilies"] {
        if let Some(v) = stable.pointer(&format!("/spec/{field}")) {
            spec[field] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": canary_name(name),
            "namespace": stable.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
            "labels": labels,
        },
        "spec": spec,
    })
}

/// Points a Service (as rendered) at the new version's pods: its selector values suffixed as
/// [`canary_deployment`] suffixes them, and the variant label.
pub fn select_canary(service: &mut Value) {
    let Some(selector) = service.pointer_mut("/spec/selector").and_then(Value::as_object_mut) else { return };
    for value in selector.values_mut() {
        *value = json!(format!("{}-{CANARY}", value.as_str().unwrap_or_default()));
    }
    selector.insert(VARIANT_LABEL.into(), json!(CANARY));
}

/// The HTTPRoute with traffic split: every backendRef to the stable Service gets weight
/// `100 - weight`, followed by the same ref to `<service>-canary` with `weight`.
pub fn split_route(route: &mut Value, stable_service: &str, weight: i32) {
    let canary = canary_name(stable_service);
    let Some(rules) = route.pointer_mut("/spec/rules").and_then(Value::as_array_mut) else { return };
    for rule in rules {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else { continue };
        let mut split = Vec::with_capacity(refs.len() + 1);
        for r in refs.drain(..) {
            let is_service = r.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service"
                && r.get("group").and_then(Value::as_str).unwrap_or("").is_empty();
            if is_service && r.get("name").and_then(Value::as_str) == Some(stable_service) {
                let mut stable = r.clone();
                stable["weight"] = json!(100 - weight);
                let mut to_canary = r;
                to_canary["name"] = json!(canary);
                to_canary["weight"] = json!(weight);
                split.push(stable);
                split.push(to_canary);
            } else if r.get("name").and_then(Value::as_str) != Some(canary.as_str()) {
                split.push(r);
            }
        }
        *refs = split;
    }
}

/// Stamps Git's template hash on the primary as applied.
pub fn stamp(desired: &mut Value, template_hash: &str) {
    annotation_map(desired).insert(TEMPLATE_HASH.into(), json!(template_hash));
}

/// Pauses the primary as applied (`spec.paused`): its Deployment controller then neither creates
/// a ReplicaSet for a new template nor rolls one, while the canary's ReplicaSet is handed over.
pub fn pause(desired: &mut Value) {
    desired["spec"]["paused"] = json!(true);
}

/// The primary as applied while a rollout holds it: Git's Deployment, but the pod template and
/// its hash of the live primary (the stable version), and the replicas the rollout gives it
/// (`None`: Git's, when an autoscaler owns the count).
pub fn hold(desired: &mut Value, live: &Value, replicas: Option<i32>) {
    if let Some(template) = live.pointer("/spec/template") {
        desired["spec"]["template"] = template.clone();
    }
    if let Some(hash) = stamped_hash(live) {
        let hash = hash.to_string();
        annotation_map(desired).insert(TEMPLATE_HASH.into(), json!(hash));
    }
    if let Some(replicas) = replicas {
        desired["spec"]["replicas"] = json!(replicas);
    }
}

/// Whether `object` is a HorizontalPodAutoscaler scaling Deployment `workload`.
pub fn autoscales(object: &Value, workload: &str) -> bool {
    let target = &object["spec"]["scaleTargetRef"];
    object["kind"] == "HorizontalPodAutoscaler"
        && target["kind"] == "Deployment"
        && target["name"] == workload
}

fn annotation_map(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.pointer("/metadata/annotations").is_some_and(Value::is_object) {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"].as_object_mut().expect("set above")
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": "team", "labels": {"app": "shop", "ferry.dev/app-name": "shop"},
                         "annotations": {MANIFEST_HASH: "abc"}},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop"}},
                                  "spec": {"containers": [{"name": "web", "image": "shop:2"}]}}}
        })
    }

    #[test]
    fn canary_replicas_round_up_so_any_weight_runs_a_pod() {
        assert_eq!(canary_replicas(5, 20), 1);
        assert_eq!(canary_replicas(5, 50), 3);
        assert_eq!(canary_replicas(5, 100), 5);
        assert_eq!(canary_replicas(5, 0), 0);
        assert_eq!(canary_replicas(10, 1), 1);
        assert_eq!(canary_replicas(1, 20), 1);
    }

    #[test]
    fn a_replica_ratio_canary_runs_gits_pod_template_as_it_is() {
        let mut paused = shop();
        pause(&mut paused);
        let canary = canary_deployment(&paused, 1, "h1", Pods::AsGit);
        assert_eq!(canary["metadata"]["name"], "shop-canary");
        assert_eq!(canary["metadata"]["namespace"], "team");
        assert_eq!(canary["spec"]["replicas"], 1);
        assert_eq!(canary["metadata"]["labels"][VARIANT_LABEL], CANARY);
        assert_eq!(canary["metadata"]["labels"]["ferry.dev/app-name"], "shop");
        assert_eq!(canary["metadata"]["annotations"], json!({TEMPLATE_HASH: "h1"}));
        // Git's selector and pod template, untouched: the Service selects the canary's pods, and
        // the primary's Deployment controller takes the canary's ReplicaSet as its own at
        // promotion.
        assert_eq!(canary["spec"]["selector"], shop()["spec"]["selector"]);
        assert_eq!(canary["spec"]["template"], shop()["spec"]["template"]);
        assert!(canary["spec"].get("paused").is_none(), "the primary's pause is not the canary's");
        assert!(!Pods::labelled(&canary));
    }

    #[test]
    fn a_labelled_canary_has_its_own_selector_and_keeps_the_labels_the_service_selects() {
        let canary = canary_deployment(&shop(), 1, "h1", Pods::Apart(&[]));
        assert_eq!(canary["spec"]["selector"]["matchLabels"], json!({"app": "shop", VARIANT_LABEL: CANARY}));
        assert_eq!(
            canary["spec"]["template"]["metadata"]["labels"],
            json!({"app": "shop", VARIANT_LABEL: CANARY})
        );
        assert!(Pods::labelled(&canary));
    }

    #[test]
    fn under_gateway_routing_the_stable_service_does_not_select_the_canary() {
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "shop", "namespace": "team", "labels": {"ferry.dev/app-name": "shop"}},
            "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let keys = selector_keys(&service);
        let canary = canary_deployment(&shop(), 2, "h1", Pods::Apart(&keys));
        let pods = &canary["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pods, &json!({"app": "shop-canary", VARIANT_LABEL: CANARY}));
        assert_eq!(canary["spec"]["selector"]["matchLabels"], *pods);
        let svc = canary_service(&service);
        assert_eq!(svc["metadata"]["name"], "shop-canary");
        assert_eq!(svc["spec"]["selector"], *pods, "the canary Service selects exactly the canary's pods");
        assert_eq!(svc["spec"]["ports"], service["spec"]["ports"]);

        let mut route = json!({"spec": {"rules": [
            {"backendRefs": [{"name": "shop", "port": 80}]},
            {"backendRefs": [{"name": "other", "port": 80}]}
        ]}});
        split_route(&mut route, "shop", 20);
        assert_eq!(
            route["spec"]["rules"][0]["backendRefs"],
            json!([
                {"name": "shop", "port": 80, "weight": 80}, {"name": "shop-canary", "port": 80, "weight": 20}
            ])
        );
        assert_eq!(route["spec"]["rules"][1]["backendRefs"], json!([{"name": "other", "port": 80}]));
    }

    #[test]
    fn the_template_hash_follows_the_pod_template_only() {
        let a = shop();
        let mut replicas = shop();
        replicas["spec"]["replicas"] = json!(2);
        let mut image = shop();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop:3");
        assert_eq!(template_hash(&a), template_hash(&replicas));
        assert_ne!(template_hash(&a), template_hash(&image));
    }

    #[test]
    fn holding_keeps_the_live_template_and_its_hash() {
        let mut desired = shop();
        let mut live = shop();
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop:1");
        live["metadata"]["annotations"] = json!({TEMPLATE_HASH: "old"});
        hold(&mut desired, &live, Some(4));
        assert_eq!(desired["spec"]["template"]["spec"]["containers"][0]["image"], "shop:1");
        assert_eq!(desired["spec"]["replicas"], 4);
        assert_eq!(stamped_hash(&desired), Some("old"));
        let mut scaled = shop();
        hold(&mut scaled, &live, None);
        assert_eq!(scaled["spec"]["replicas"], 5, "an autoscaler's count is left as Git has it");
        let hpa = json!({"kind": "HorizontalPodAutoscaler", "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "shop"}}});
        assert!(autoscales(&hpa, "shop") && !autoscales(&hpa, "web"));
        let mut fresh = shop();
        stamp(&mut fresh, "new");
        assert_eq!(stamped_hash(&fresh), Some("new"));
    }

    #[test]
    fn availability_needs_the_latest_generation_and_no_leftover_pods() {
        let live = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
                          "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        let a = Availability::of(Some(&live));
        assert!(a.settled_at(2));
        assert!(!a.settled_at(3));
        let stale = json!({"metadata": {"generation": 4}, "spec": {"replicas": 2},
                           "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(!Availability::of(Some(&stale)).settled_at(2));
        assert!(!Availability::of(None).exists);
        let a = Availability::of(Some(&live));
        assert!(!a.paused && !a.deleting);
        let held = json!({"metadata": {"generation": 1, "deletionTimestamp": "2026-12-07T00:00:00Z"},
                          "spec": {"paused": true}, "status": {"observedGeneration": 1}});
        let a = Availability::of(Some(&held));
        assert!(a.paused && a.deleting && a.observed);
        assert!(!a.drained(), "one replica by default");
        assert!(Availability { replicas: 0, ..a }.drained());
    }
}
