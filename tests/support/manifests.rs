//! Manifests the tests commit to Git, as YAML text: ConfigMaps, Deployments and the few other
//! kinds several test files need.

use std::collections::BTreeMap;

/// `metadata:` with a name and, when given, a namespace (none: the Application's destination).
pub fn meta(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("metadata:\n  name: {name}\n  namespace: {ns}\n"),
        None => format!("metadata:\n  name: {name}\n"),
    }
}

fn flow_map(pairs: &[(&str, &str)]) -> String {
    let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
    serde_json::to_string(&map).expect("a map of strings serializes")
}

pub fn configmap(name: &str, namespace: Option<&str>, data: &[(&str, &str)]) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\n{}data: {}\n", meta(name, namespace), flow_map(data))
}

pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\n{}", meta(name, None))
}

pub fn service(name: &str, namespace: Option<&str>) -> String {
    format!(
        "apiVersion: v1\nkind: Service\n{}spec:\n  selector: {{app: {name}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
        meta(name, namespace)
    )
}

pub fn deployment(name: &str, namespace: Option<&str>, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\n{}spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n        ports:\n        - containerPort: 8080\n",
        meta(name, namespace)
    )
}

/// Several YAML documents in one file.
pub fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

/// A PostSync Job. A failing one can never be scheduled (no node has the label) and its
/// deadline fails it; a passing one runs on a kwok node, whose pods of Jobs complete.
pub fn smoke_job(passes: bool) -> String {
    let pod_spec = if passes {
        "      restartPolicy: Never\n".to_string()
    } else {
        "      restartPolicy: Never\n      nodeSelector: {ferry.dev/no-such-node: \"true\"}\n".to_string()
    };
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke\n  annotations: {{ferry.dev/hook: PostSync}}\nspec:\n  backoffLimit: 0\n  activeDeadlineSeconds: {}\n  template:\n    spec:\n{pod_spec}      containers:\n      - name: smoke\n        image: registry.example/smoke:{}\n",
        if passes { 600 } else { 3 },
        if passes { "pass" } else { "fail" },
    )
}

/// A namespaced CRD `Gadget` in `group` whose spec and status are free, with a status
/// subresource (as controllers of custom kinds write it), installed by a test as another tool would.
pub fn gadget_crd(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  names: {{kind: Gadget, listKind: GadgetList, plural: gadgets, singular: gadget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
          status: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#
    )
}
