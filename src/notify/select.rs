//! Which Notifiers hear an Application: its own namespace (or, for a Notifier in ferry's own
//! namespace, the namespaces it names), its names or globs, its label selector, its events and
//! least severity. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{
    api::{NotificationEvent, Notifier, Severity},
    tenancy::glob_matches,
};

/// Why a Notifier is refused (its Ready condition's reason and message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "spec.applications.namespaces names other namespaces; only a Notifier in ferry's own namespace may hear Applications of other namespaces"
    )]
    CrossNamespaceNotPermitted,
}

impl Refused {
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::CrossNamespaceNotPermitted => "CrossNamespaceNotPermitted",
        }
    }
}

/// Whether `notifier` may be used at all: a Notifier outside `home` (ferry's own namespace,
/// `None` when ferry has none) may name no namespace but its own.
pub fn admitted(notifier: &Notifier, home: Option<&str>) -> Result<(), Refused> {
    let own = notifier.metadata.namespace.as_deref().unwrap_or_default();
    let namespaces = &notifier.spec.applications.namespaces;
    if namespaces.is_empty() || home == Some(own) || namespaces.iter().all(|n| n == own) {
        Ok(())
    } else {
        Err(Refused::CrossNamespaceNotPermitted)
    }
}

/// The Application a notice is about, as selection sees it.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Whether `notifier` hears `subject` (ignoring events and severity).
pub fn selects(notifier: &Notifier, home: Option<&str>, subject: &Subject) -> bool {
    if admitted(notifier, home).is_err() {
        return false;
    }
    let own = notifier.metadata.namespace.as_deref().unwrap_or_default();
    let apps = &notifier.spec.applications;
    let namespace_ok = if apps.namespaces.is_empty() {
        subject.namespace == own
    } else {
        apps.namespaces.iter().any(|g| glob_matches(g, subject.namespace))
    };
    let name_ok = apps.names.is_empty() || apps.names.iter().any(|g| glob_matches(g, subject.name));
    let labels_ok = apps.selector.as_ref().is_none_or(|s| label_selector_matches(s, subject.labels));
    namespace_ok && name_ok && labels_ok
}

/// Whether `notifier` hears `event` at `severity`.
pub fn hears(notifier: &Notifier, event: NotificationEvent, severity: Severity) -> bool {
    let events = &notifier.spec.events;
    (events.is_empty() || events.contains(&event)) && severity >= notifier.spec.severity
}

/// Kubernetes' meaning of a LabelSelector: every `matchLabels` pair and every expression hold;
/// an unknown operator selects nothing (the API server refuses one anyway).
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    pairs
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let listed = value.is_some_and(|v| e.values.iter().flatten().any(|x| x == v));
            match e.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;
    use crate::api::{ApplicationSelector, NotifierProvider, NotifierSpec};

    pub fn notifier(namespace: &str, applications: ApplicationSelector) -> Notifier {
        let spec: NotifierSpec = serde_json::from_value(serde_json::json!({"provider": "generic"})).unwrap();
        let mut n =
            Notifier::new("n", NotifierSpec { applications, provider: NotifierProvider::Generic, ..spec });
        n.metadata.namespace = Some(namespace.into());
        n
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn subject<'a>(ns: &'a str, name: &'a str, labels: &'a BTreeMap<String, String>) -> Subject<'a> {
        Subject { namespace: ns, name, labels }
    }

    #[test]
    fn a_notifier_hears_its_own_namespace_only_by_default() {
        let n = notifier("team-a", ApplicationSelector::default());
        let none = labels(&[]);
        assert!(selects(&n, Some("ferry"), &subject("team-a", "web", &none)));
        assert!(!selects(&n, Some("ferry"), &subject("team-b", "web", &none)));
    }

    #[test]
    fn names_are_globs_and_labels_a_selector() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("tier", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["dev".into()]),
            }]),
        };
        let apps = ApplicationSelector {
            names: vec!["web-*".into()],
            selector: Some(selector),
            ..Default::default()
        };
        let n = notifier("team-a", apps);
        let prod = labels(&[("tier", "web"), ("env", "prod")]);
        let dev = labels(&[("tier", "web"), ("env", "dev")]);
        assert!(selects(&n, None, &subject("team-a", "web-1", &prod)));
        assert!(!selects(&n, None, &subject("team-a", "api", &prod)));
        assert!(!selects(&n, None, &subject("team-a", "web-1", &dev)));
        assert!(!selects(&n, None, &subject("team-a", "web-1", &labels(&[]))));
    }

    #[test]
    fn only_a_notifier_in_ferrys_namespace_may_name_other_namespaces() {
        let apps = ApplicationSelector { namespaces: vec!["team-*".into()], ..Default::default() };
        let none = labels(&[]);
        let platform = notifier("ferry", apps.clone());
        assert_eq!(admitted(&platform, Some("ferry")), Ok(()));
        assert!(selects(&platform, Some("ferry"), &subject("team-b", "web", &none)));
        assert!(!selects(&platform, Some("ferry"), &subject("other", "web", &none)));
        let tenant = notifier("team-a", apps);
        assert_eq!(admitted(&tenant, Some("ferry")), Err(Refused::CrossNamespaceNotPermitted));
        assert!(!selects(&tenant, Some("ferry"), &subject("team-a", "web", &none)));
        assert!(!selects(&tenant, Some("ferry"), &subject("team-b", "web", &none)));
        // Without a namespace of its own, ferry lets no Notifier reach across.
        assert!(admitted(&notifier("ferry", tenant.spec.applications.clone()), None).is_err());
        // Naming only its own namespace is no reach at all.
        let own = notifier(
            "team-a",
            ApplicationSelector { namespaces: vec!["team-a".into()], ..Default::default() },
        );
        assert_eq!(admitted(&own, None), Ok(()));
    }

    #[test]
    fn events_and_least_severity_filter() {
        let mut n = notifier("a", ApplicationSelector::default());
        assert!(hears(&n, NotificationEvent::Synced, Severity::Info));
        n.spec.severity = Severity::Error;
        assert!(!hears(&n, NotificationEvent::Synced, Severity::Info));
        assert!(hears(&n, NotificationEvent::Failed, Severity::Error));
        n.spec.severity = Severity::Info;
        n.spec.events = vec![NotificationEvent::RolloutAborted];
        assert!(!hears(&n, NotificationEvent::Failed, Severity::Error));
        assert!(hears(&n, NotificationEvent::RolloutAborted, Severity::Error));
    }
}
