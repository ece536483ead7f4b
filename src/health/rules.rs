//! Per-kind health rules.

use serde_json::Value;

use super::ObjectHealth;
use crate::api::HealthStatusCode::{self, Degraded, Progressing, Suspended};

/// Container waiting reasons that will not fix themselves: a person has to act.
const STUCK_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The object's API group (empty for the core group) and kind.
pub fn group_kind(obj: &Value) -> (&str, &str) {
    let group = obj["apiVersion"].as_str().unwrap_or_default().rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    (group, obj["kind"].as_str().unwrap_or_default())
}

/// Whatever the rest says, an object being deleted is on its way out.
pub fn being_deleted(obj: &Value) -> Option<ObjectHealth> {
    obj["metadata"]["deletionTimestamp"].is_string().then(|| ObjectHealth::new(Progressing, "being deleted"))
}

/// The health of one live object.
pub fn assess(obj: &Value) -> ObjectHealth {
    if let Some(h) = being_deleted(obj) {
        return h;
    }
    match group_kind(obj) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("", "Pod") => pod(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "Service") => service(obj),
        ("networking.k8s.io", "Ingress") => ingress(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        _ => generic(obj),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == status)
}

fn condition_message(obj: &Value, type_: &str) -> String {
    let c = condition(obj, type_);
    let msg = c.and_then(|c| c["message"].as_str()).filter(|m| !m.is_empty());
    let reason = c.and_then(|c| c["reason"].as_str()).filter(|m| !m.is_empty());
    msg.or(reason).unwrap_or("no message").to_string()
}

/// The controller has not yet seen the latest spec: whatever its status says is about an older one.
pub(super) fn not_observed(obj: &Value) -> Option<ObjectHealth> {
    let generation = obj["metadata"]["generation"].as_i64()?;
    let observed = obj["status"]["observedGeneration"].as_i64().unwrap_or(0);
    (observed < generation)
        .then(|| ObjectHealth::new(Progressing, "waiting for the controller to observe the latest spec"))
}

fn deployment(obj: &Value) -> ObjectHealth {
    if obj["spec"]["paused"].as_bool() == Some(true) {
        return ObjectHealth::new(Suspended, "rollout is paused");
    }
    if let Some(h) = not_observed(obj) {
        return h;
    }
    if let Some(c) = condition(obj, "Progressing")
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return ObjectHealth::new(
            Degraded,
            format!("rollout exceeded its progress deadline: {}", condition_message(obj, "Progressing")),
        );
    }
    let status = &obj["status"];
    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = int(&status["updatedReplicas"]);
    let total = int(&status["replicas"]);
    let available = int(&status["availableReplicas"]);
    if updated < want {
        return ObjectHealth::new(Progressing, format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return ObjectHealth::new(
            Progressing,
            format!("{} old replicas pending termination", total - updated),
        );
    }
    if available < updated {
        return ObjectHealth::new(
            Progressing,
            format!("{available} of {updated} updated replicas available"),
        );
    }
    ObjectHealth::healthy()
}

fn stateful_set(obj: &Value) -> ObjectHealth {
    if let Some(h) = not_observed(obj) {
        return h;
    }
    let status = &obj["status"];
    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let ready = int(&status["readyReplicas"]);
    if ready < want {
        return ObjectHealth::new(Progressing, format!("{ready} of {want} replicas ready"));
    }
    if obj["spec"]["updateStrategy"]["type"] == "OnDelete" {
        return ObjectHealth::healthy();
    }
    let partition = obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
    let updated = int(&status["updatedReplicas"]);
    if partition > 0 {
        let expected = (want - partition).max(0);
        if updated < expected {
            return ObjectHealth::new(
                Progressing,
                format!("{updated} of {expected} replicas updated (partition {partition})"),
            );
        }
        return ObjectHealth::healthy();
    }
    let (current, update) = (&status["currentRevision"], &status["updateRevision"]);
    if update.is_string() && current != update {
        return ObjectHealth::new(Progressing, format!("{updated} of {want} replicas updated"));
    }
    ObjectHealth::healthy()
}

fn daemon_set(obj: &Value) -> ObjectHealth {
    if let Some(h) = not_observed(obj) {
        return h;
    }
    let status = &obj["status"];
    let desired = int(&status["desiredNumberScheduled"]);
    if obj["spec"]["updateStrategy"]["type"] != "OnDelete" {
        let updated = int(&status["updatedNumberScheduled"]);
        if updated < desired {
            return ObjectHealth::new(Progressing, format!("{updated} of {desired} pods updated"));
        }
    }
    let available = int(&status["numberAvailable"]);
    if available < desired {
        return ObjectHealth::new(Progressing, format!("{available} of {desired} pods available"));
    }
    ObjectHealth::healthy()
}

fn replica_set(obj: &Value) -> ObjectHealth {
    if let Some(h) = not_observed(obj) {
        return h;
    }
    if condition_is(obj, "ReplicaFailure", "True") {
        return ObjectHealth::new(Degraded, condition_message(obj, "ReplicaFailure"));
    }
    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let available = int(&obj["status"]["availableReplicas"]);
    if available < want {
        return ObjectHealth::new(Progressing, format!("{available} of {want} replicas available"));
    }
    ObjectHealth::healthy()
}

fn job(obj: &Value) -> ObjectHealth {
    if condition_is(obj, "Failed", "True") {
        return ObjectHealth::new(Degraded, format!("job failed: {}", condition_message(obj, "Failed")));
    }
    if condition_is(obj, "Complete", "True") {
        return ObjectHealth::healthy();
    }
    if obj["spec"]["suspend"].as_bool() == Some(true) {
        return ObjectHealth::new(Suspended, "job is suspended");
    }
    ObjectHealth::new(Progressing, "job is running")
}

fn cron_job(obj: &Value) -> ObjectHealth {
    if obj["spec"]["suspend"].as_bool() == Some(true) {
        return ObjectHealth::new(Suspended, "cron job is suspended");
    }
    ObjectHealth::healthy()
}

fn pod(obj: &Value) -> ObjectHealth {
    let status = &obj["status"];
    let statuses =
        ["initContainerStatuses", "containerStatuses"].iter().filter_map(|k| status[*k].as_array()).flatten();
    for cs in statuses {
        let waiting = &cs["state"]["waiting"];
        if let Some(reason) = waiting["reason"].as_str()
            && STUCK_WAITING_REASONS.contains(&reason)
        {
            let name = cs["name"].as_str().unwrap_or("?");
            let detail = waiting["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
            return ObjectHealth::new(Degraded, format!("container {name} is {reason}{detail}"));
        }
    }
    match status["phase"].as_str() {
        Some("Succeeded") => ObjectHealth::healthy(),
        Some("Failed") => {
            let why = status["message"].as_str().or(status["reason"].as_str()).unwrap_or("pod failed");
            ObjectHealth::new(Degraded, why.to_string())
        }
        Some("Running") if condition_is(obj, "Ready", "True") => ObjectHealth::healthy(),
        Some("Running") => ObjectHealth::new(Progressing, "running but not ready"),
        Some(phase) => ObjectHealth::new(Progressing, format!("pod is {phase}")),
        None => ObjectHealth::new(Progressing, "pod has no status yet"),
    }
}

fn pvc(obj: &Value) -> ObjectHealth {
    match obj["status"]["phase"].as_str() {
        Some("Bound") => ObjectHealth::healthy(),
        Some("Lost") => ObjectHealth::new(Degraded, "claim lost its volume"),
        _ => ObjectHealth::new(Progressing, "waiting for the claim to be bound"),
    }
}

fn has_lb_ingress(obj: &Value) -> bool {
    obj["status"]["loadBalancer"]["ingress"].as_array().is_some_and(|a| !a.is_empty())
}

fn service(obj: &Value) -> ObjectHealth {
    if obj["spec"]["type"] == "LoadBalancer" && !has_lb_ingress(obj) {
        return ObjectHealth::new(Progressing, "waiting for a load balancer address");
    }
    ObjectHealth::healthy()
}

fn ingress(obj: &Value) -> ObjectHealth {
    if !has_lb_ingress(obj) {
        return ObjectHealth::new(Progressing, "waiting for a load balancer address");
    }
    ObjectHealth::healthy()
}

fn crd(obj: &Value) -> ObjectHealth {
    if condition_is(obj, "NamesAccepted", "False") {
        return ObjectHealth::new(
            Degraded,
            format!("names not accepted: {}", condition_message(obj, "NamesAccepted")),
        );
    }
    if condition_is(obj, "Established", "True") {
        return ObjectHealth::healthy();
    }
    ObjectHealth::new(Progressing, "waiting to be established")
}

/// Anything else: kstatus conventions when the object has them, otherwise existing is healthy.
fn generic(obj: &Value) -> ObjectHealth {
    if let Some(h) = not_observed(obj).filter(|_| obj["status"]["observedGeneration"].is_i64()) {
        return h;
    }
    if condition_is(obj, "Stalled", "True") {
        return ObjectHealth::new(Degraded, condition_message(obj, "Stalled"));
    }
    match condition(obj, "Ready").and_then(|c| c["status"].as_str()) {
        Some("True") => ObjectHealth::healthy(),
        Some("False") => {
            ObjectHealth::new(Progressing, format!("not ready: {}", condition_message(obj, "Ready")))
        }
        Some(_) => ObjectHealth::new(HealthStatusCode::Progressing, "readiness unknown"),
        None if condition_is(obj, "Reconciling", "True") => {
            ObjectHealth::new(Progressing, condition_message(obj, "Reconciling"))
        }
        None => ObjectHealth::healthy(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HealthStatusCode::Healthy;
    use serde_json::json;

    fn status_of(obj: Value) -> (HealthStatusCode, String) {
        let h = assess(&obj);
        (h.status, h.message.unwrap_or_default())
    }

    fn deploy(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2}, "spec": spec, "status": status})
    }

    #[test]
    fn deployment_follows_rollout_status() {
        let done =
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(status_of(deploy(json!({"replicas": 3}), done.clone())).0, Healthy);
        assert_eq!(
            status_of(deploy(json!({"replicas": 3}), json!({"observedGeneration": 1}))),
            (Progressing, "waiting for the controller to observe the latest spec".into())
        );
        assert_eq!(
            status_of(deploy(
                json!({"replicas": 3}),
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1})
            )),
            (Progressing, "1 of 3 replicas updated".into())
        );
        assert_eq!(
            status_of(deploy(
                json!({"replicas": 3}),
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3})
            )),
            (Progressing, "1 old replicas pending termination".into())
        );
        assert_eq!(
            status_of(deploy(
                json!({"replicas": 3}),
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2})
            )),
            (Progressing, "2 of 3 updated replicas available".into())
        );
        let stuck = json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-1\" has timed out progressing."}]});
        assert_eq!(status_of(deploy(json!({"replicas": 3}), stuck)).0, Degraded);
        assert_eq!(status_of(deploy(json!({"replicas": 3, "paused": true}), done)).0, Suspended);
        // replicas defaults to 1 when unset.
        let one =
            json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert_eq!(status_of(deploy(json!({}), one)).0, Healthy);
        // Scaled to zero is healthy.
        assert_eq!(status_of(deploy(json!({"replicas": 0}), json!({"observedGeneration": 2}))).0, Healthy);
    }

    #[test]
    fn statefulset_and_daemonset() {
        let sts = |spec: Value, status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
                   "spec": spec, "status": status})
        };
        assert_eq!(
            status_of(sts(json!({"replicas": 2}), json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "a", "updatedReplicas": 2}))).0,
            Healthy
        );
        assert_eq!(
            status_of(sts(
                json!({"replicas": 2}),
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b", "updatedReplicas": 1})
            )),
            (Progressing, "1 of 2 replicas updated".into())
        );
        assert_eq!(
            status_of(sts(json!({"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}}),
                json!({"observedGeneration": 1, "readyReplicas": 3, "currentRevision": "a", "updateRevision": "b", "updatedReplicas": 1}))).0,
            Healthy
        );
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(status_of(ds), (Progressing, "2 of 3 pods available".into()));
    }

    #[test]
    fn jobs_pods_and_claims() {
        let job = |status: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": status});
        assert_eq!(
            status_of(job(json!({"conditions": [{"type": "Complete", "status": "True"}]}))).0,
            Healthy
        );
        assert_eq!(status_of(job(json!({"active": 1}))).0, Progressing);
        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        assert_eq!(
            status_of(pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})))
                .0,
            Healthy
        );
        assert_eq!(
            status_of(pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}))),
            (Degraded, "container app is ImagePullBackOff: not found".into())
        );
        assert_eq!(
            status_of(pod(json!({"phase": "Running"}))),
            (Progressing, "running but not ready".into())
        );
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "status": {"phase": "Pending"}});
        assert_eq!(status_of(pvc).0, Progressing);
    }

    #[test]
    fn services_ingresses_crds_and_generic_objects() {
        let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(status_of(lb).0, Progressing);
        let cluster_ip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}});
        assert_eq!(status_of(cluster_ip).0, Healthy);
        let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        assert_eq!(status_of(ing).0, Healthy);
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]}});
        assert_eq!(status_of(crd).0, Healthy);
        let ready_false = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting", "message": "db not up"}]}});
        assert_eq!(status_of(ready_false), (Progressing, "not ready: db not up".into()));
        let stalled = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Stalled", "status": "True", "message": "bad config"}]}});
        assert_eq!(status_of(stalled), (Degraded, "bad config".into()));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "generation": 5}});
        assert_eq!(status_of(cm).0, Healthy, "objects without status are healthy when they exist");
        let deleting = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(status_of(deleting).0, Progressing);
    }
}
