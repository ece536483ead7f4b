//! The ferry API: custom resource types and their generated CRDs.

mod application;
mod application_set;
mod cluster;
pub mod conditions;
mod git_write;
mod hooks;
mod image_policy;
mod notifier;
pub mod schema;
mod tenant_policy;

pub use application::*;
pub use application_set::*;
pub use cluster::*;
pub use git_write::*;
pub use hooks::*;
pub use image_policy::*;
pub use notifier::*;
pub use tenant_policy::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD ferry serves, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Application::crd(),
        ApplicationSet::crd(),
        TenantPolicy::crd(),
        Cluster::crd(),
        Notifier::crd(),
        ImagePolicy::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream, exactly as checked in under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_yaml_round_trips_to_the_same_crds() {
        let yaml = crds_yaml().unwrap();
        assert!(yaml.starts_with("---\n"));
        let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&yaml).unwrap();
        assert_eq!(docs, crds());
    }

    #[test]
    fn application_crd_names_and_columns() {
        let crd = Application::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("applications.ferry.dev"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["fapp".to_string()]));
        let version = &crd.spec.versions[0];
        let columns: Vec<&str> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Sync", "Health", "Revision", "Ready", "Age", "Message"]);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn every_cel_rule_has_a_message() {
        let json = serde_json::to_value(Application::crd()).unwrap();
        let mut rules = Vec::new();
        collect_rules(&json, &mut rules);
        assert!(rules.len() >= 8, "expected the CEL rules in the schema, found {rules:?}");
        for rule in rules {
            let message = rule.get("message").and_then(|m| m.as_str()).unwrap_or_default();
            assert!(!message.is_empty(), "CEL rule without a message: {rule}");
        }
    }

    #[test]
    fn tenant_policy_crd_is_namespaced_and_every_rule_has_a_message() {
        let crd = TenantPolicy::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("tenantpolicies.ferry.dev"));
        // Namespaced, so that a Role in ferry's namespace reads it in either RBAC mode.
        assert_eq!(crd.spec.scope, "Namespaced");
        let json = serde_json::to_value(&crd).unwrap();
        let mut rules = Vec::new();
        collect_rules(&json, &mut rules);
        assert!(rules.len() >= 4, "globs and the default ServiceAccount are checked: {rules:?}");
        assert!(
            rules.iter().all(|r| r.get("message").and_then(|m| m.as_str()).is_some_and(|m| !m.is_empty()))
        );
    }

    fn collect_rules<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    out.extend(rules);
                }
                map.values().for_each(|v| collect_rules(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_rules(v, out)),
            _ => {}
        }
    }

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "a"},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}}
        }))
        .unwrap();
        assert_eq!(app.spec.interval, "3m");
        assert_eq!(
            app.spec.sync_policy,
            SyncPolicy { automated: true, prune: false, self_heal: true, allow_empty: false, rollback: None }
        );
        assert!(!app.spec.suspend);
        assert_eq!(app.spec.source.git_ref.as_ref().and_then(|r| r.branch.as_deref()), Some("main"));
    }
}
