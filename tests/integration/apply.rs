//! Server-side apply and dry runs against the real API server.

use std::time::Duration;

use ferry::apply::{AppRef, Applier, ApplyError, label_object};
use kube::api::DynamicObject;

use crate::support::Cluster;

fn object(yaml: &str) -> DynamicObject {
    serde_saphyr::from_str(yaml).expect("test manifest")
}

async fn applier(cluster: &Cluster) -> Applier {
    Applier::new(cluster.client().await, Duration::from_secs(30)).await.expect("discovery")
}

#[tokio::test]
async fn apply_uses_the_ferry_field_manager_and_a_second_apply_changes_nothing() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("apply-ssa");
    let applier = applier(cluster).await;
    let mut cm = object(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {}}}\ndata: {{k: v}}\n",
        ns.name
    ));
    label_object(&mut cm, &AppRef { namespace: ns.name.clone(), name: "shop".into() });

    let first = applier.apply(&cm, false).await.expect("apply");
    let managers: Vec<(String, String)> = first
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.operation.clone().unwrap_or_default()))
        .collect();
    assert!(managers.contains(&("ferry".into(), "Apply".into())), "{managers:?}");
    assert_eq!(first.metadata.labels.as_ref().unwrap()["ferry.dev/app-name"], "shop");

    let second = applier.apply(&cm, false).await.expect("apply again");
    assert_eq!(
        first.metadata.resource_version, second.metadata.resource_version,
        "an unchanged apply must not write"
    );
}

#[tokio::test]
async fn dry_run_persists_nothing_and_reports_refusals_in_the_api_servers_words() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("apply-dry");
    let applier = applier(cluster).await;

    let good = object(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: dry, namespace: {}}}\n",
        ns.name
    ));
    applier.dry_run(&good, false).await.expect("a valid object passes the dry run");
    let get = cluster.kubectl(&["-n", &ns.name, "get", "configmap", "dry"]);
    assert!(
        !get.success && get.stderr.contains("NotFound"),
        "the dry run created the object: {}",
        get.stdout
    );

    let bad = object(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {}}}\nspec:\n  replicas: three\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: 'web:1'}}]}}\n",
        ns.name
    ));
    let err = applier.dry_run(&bad, false).await.unwrap_err();
    assert!(matches!(err, ApplyError::Refused { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("Deployment {}/web: refused by the API server: ", ns.name)), "{msg}");
    assert!(msg.contains("replicas"), "the API server's message names the field: {msg}");

    let unknown = object(&format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w, namespace: {}}}\n",
        ns.name
    ));
    let err = applier.dry_run(&unknown, false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Widget {}/w: the API server does not serve example.com/v1 Widget", ns.name)
    );
    assert!(!err.is_transient());

    let nowhere =
        object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: no-such-namespace-here}\n");
    let err = applier.dry_run(&nowhere, false).await.unwrap_err();
    assert!(matches!(err, ApplyError::Refused { code: 404, .. }), "{err}");
    assert!(err.to_string().contains("no-such-namespace-here"), "{err}");
}

#[tokio::test]
async fn fields_of_another_manager_are_taken_only_when_forced() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("apply-conflict");
    let yaml = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: {}}}\ndata: {{k: {v}}}\n",
            ns.name
        )
    };
    let other = cluster.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=someone-else", "-f", "-"],
        &yaml("theirs"),
    );
    assert!(other.success, "{}", other.stderr);

    let applier = applier(cluster).await;
    let err = applier.apply(&object(&yaml("ours")), false).await.unwrap_err();
    let ApplyError::Conflict { conflicts, .. } = &err else { panic!("expected a conflict, got {err}") };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!((conflicts[0].manager.as_str(), conflicts[0].field.as_str()), ("someone-else", ".data.k"));
    assert!(err.to_string().contains("someone-else"), "the conflict names the other manager: {err}");

    let live = applier.apply(&object(&yaml("ours")), true).await.expect("forced apply");
    assert_eq!(live.data["data"]["k"], "ours");
}
