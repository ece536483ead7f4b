//! The local control plane is a real one: versioned binaries, a scheduler, controllers and kwok
//! standing in for the kubelet.

use std::time::Duration;

use crate::support::{Cluster, T, wait_until};

#[test]
fn binaries_report_their_pinned_version() {
    let cluster = Cluster::shared();
    let pinned = std::fs::read_to_string(crate::support::repo_root().join("tests/testenv/versions.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION=").map(str::to_string))
        .expect("KUBERNETES_VERSION in versions.env");
    let version = cluster.kubectl_ok(&["version", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(json["serverVersion"]["gitVersion"], pinned.as_str(), "{version}");
    assert_eq!(json["clientVersion"]["gitVersion"], pinned.as_str(), "{version}");
}

#[test]
fn deployment_becomes_available_on_a_kwok_node() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("cluster");
    cluster.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0.0
"#,
        ns = ns.name
    ));
    // The Deployment controller (kube-controller-manager) makes a ReplicaSet and Pods, the
    // scheduler binds them, kwok marks them Running and Ready, and the Deployment turns Available.
    wait_until("deployment web to be Available with 2 ready replicas", T, || {
        let out = cluster.kubectl_ok(&[
            "-n",
            &ns.name,
            "get",
            "deployment",
            "web",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.readyReplicas}"#,
        ]);
        if out.trim() == "True 2" { Ok(()) } else { Err(out) }
    });
    let pods = cluster.kubectl_ok(&[
        "-n",
        &ns.name,
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{"\n"}{end}"#,
    ]);
    let lines: Vec<&str> = pods.lines().collect();
    assert_eq!(lines.len(), 2, "{pods}");
    for line in lines {
        assert_eq!(line, "kwok-node-0 Running", "{pods}");
    }
}

#[test]
fn write_requests_are_counted_from_the_api_servers_metrics() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("metrics");
    let before = cluster.write_requests(&["configmaps"]);
    // A server-side dry run is not a write; a create is, and so is an apply.
    let cm =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: counted, namespace: {}}}\n", ns.name);
    let dry = cluster.kubectl_stdin(&["apply", "--server-side", "--dry-run=server", "-f", "-"], &cm);
    assert!(dry.success, "{}", dry.stderr);
    // Other clients write ConfigMaps too (kube-root-ca.crt in each new namespace), so wait for
    // our writes rather than expect an exact total.
    cluster.apply(&cm);
    cluster.apply(&cm.replace("counted", "counted-2"));
    wait_until("two more ConfigMap writes", Duration::from_secs(30), || {
        let now = cluster.write_requests(&["configmaps"]);
        if now >= before + 2 { Ok(()) } else { Err(format!("{before} -> {now}")) }
    });
}

#[test]
fn request_metrics_parse_labels_and_skip_dry_runs() {
    let text = r#"# HELP apiserver_request_total x
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="",resource="configmaps",scope="namespace",subresource="",verb="PATCH",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="deployments",scope="namespace",subresource="",verb="APPLY",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="GET",version="v1"} 11
"#;
    assert_eq!(crate::support::sum_requests(text, |l| crate::support::is_write_to(l, &["configmaps"])), 3);
    assert_eq!(crate::support::sum_requests(text, |l| crate::support::is_write_to(l, &[])), 10);
}
