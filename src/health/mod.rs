//! Health of live objects, per kind, and of an Application as the worst of its objects.
//!
//! Pure functions over the live object's JSON: the controller feeds them what its watches saw, so
//! every rule is unit-testable. The rules follow what `kubectl rollout status` and Argo CD decide,
//! because that is what people coming to ferry already trust.

mod custom;
mod rules;

use std::cmp::Ordering;

use serde_json::Value;

pub use self::custom::{ExprCache, HealthChecks, InvalidHealthCheck, MAX_NESTING};
#[cfg(test)]
pub(crate) use self::custom::{INTERPRETER_PANICKED, PARSER_PANICKED};
use crate::api::HealthStatusCode;

/// The health of one live object: by the custom check for its group and kind when `checks` has
/// one (see [`custom`]), otherwise by ferry's built-in rules.
pub fn assess(obj: &Value, checks: &HealthChecks) -> ObjectHealth {
    if let Some(h) = rules::being_deleted(obj) {
        return h;
    }
    let (group, kind) = rules::group_kind(obj);
    match checks.find(group, kind) {
        Some(check) => check.evaluate(obj),
        None => rules::assess(obj),
    }
}

/// The health of one object, with a reason a person can act on when it is not Healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHealth {
    pub status: HealthStatusCode,
    pub message: Option<String>,
}

impl ObjectHealth {
    pub fn healthy() -> Self {
        ObjectHealth { status: HealthStatusCode::Healthy, message: None }
    }

    pub fn new(status: HealthStatusCode, message: impl Into<String>) -> Self {
        ObjectHealth { status, message: Some(message.into()) }
    }
}

/// How bad a status is, for "the worst of its objects". Argo CD's order, which its users know:
/// Healthy < Suspended < Progressing < Missing < Degraded < Unknown.
pub fn severity(status: HealthStatusCode) -> u8 {
    match status {
        HealthStatusCode::Healthy => 0,
        HealthStatusCode::Suspended => 1,
        HealthStatusCode::Progressing => 2,
        HealthStatusCode::Missing => 3,
        HealthStatusCode::Degraded => 4,
        HealthStatusCode::Unknown => 5,
    }
}

/// One object's identity for messages: `Deployment shop/web`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl From<&crate::api::InventoryEntry> for ObjectName {
    fn from(e: &crate::api::InventoryEntry) -> Self {
        ObjectName { kind: e.kind.clone(), namespace: e.namespace.clone(), name: e.name.clone() }
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The Application's health: the worst object's status, and a message naming that object
/// (and how many others share the status). An Application with no objects is Healthy.
/// `live` is `None` for an object that should exist but does not (Missing).
pub fn aggregate<'a>(
    checks: &HealthChecks,
    objects: impl IntoIterator<Item = (ObjectName, Option<&'a Value>)>,
) -> ObjectHealth {
    let mut worst: Option<(ObjectName, ObjectHealth)> = None;
    let mut same = 0usize;
    for (name, live) in objects {
        let health = match live {
            Some(obj) => assess(obj, checks),
            None => ObjectHealth::new(HealthStatusCode::Missing, "does not exist"),
        };
        let ord = worst
            .as_ref()
            .map(|(_, w)| severity(health.status).cmp(&severity(w.status)))
            .unwrap_or(Ordering::Greater);
        match ord {
            Ordering::Greater => {
                worst = Some((name, health));
                same = 0;
            }
            Ordering::Equal => same += 1,
            Ordering::Less => {}
        }
    }
    match worst {
        None => ObjectHealth::healthy(),
        Some((_, h)) if h.status == HealthStatusCode::Healthy => ObjectHealth::healthy(),
        Some((name, h)) => {
            let mut msg = match h.message {
                Some(m) => format!("{name}: {m}"),
                None => name.to_string(),
            };
            if same > 0 {
                msg.push_str(&format!(" (and {same} more)"));
            }
            ObjectHealth { status: h.status, message: Some(msg) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name(kind: &str, n: &str) -> ObjectName {
        ObjectName { kind: kind.into(), namespace: Some("shop".into()), name: n.into() }
    }

    #[test]
    fn no_objects_is_healthy() {
        assert_eq!(aggregate(&HealthChecks::default(), Vec::new()), ObjectHealth::healthy());
    }

    #[test]
    fn worst_object_names_itself_and_counts_the_rest() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let failed_job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        let agg = aggregate(
            &HealthChecks::default(),
            vec![
                (name("ConfigMap", "c"), Some(&cm)),
                (name("Deployment", "web"), None),
                (name("Job", "j"), Some(&failed_job)),
                (name("Job", "k"), Some(&failed_job)),
            ],
        );
        assert_eq!(agg.status, HealthStatusCode::Degraded);
        assert_eq!(agg.message.as_deref(), Some("Job shop/j: job failed: BackoffLimitExceeded (and 1 more)"));
    }

    #[test]
    fn missing_outranks_progressing() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        let agg = aggregate(
            &HealthChecks::default(),
            vec![(name("Pod", "p"), Some(&pod)), (name("Service", "s"), None)],
        );
        assert_eq!(agg.status, HealthStatusCode::Missing);
        assert_eq!(agg.message.as_deref(), Some("Service shop/s: does not exist"));
    }

    #[test]
    fn severity_is_a_total_order() {
        use HealthStatusCode::*;
        let all = [Healthy, Suspended, Progressing, Missing, Degraded, Unknown];
        for w in all.windows(2) {
            assert!(severity(w[0]) < severity(w[1]));
        }
    }
}
