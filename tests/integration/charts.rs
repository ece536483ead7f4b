//! The charts and files people already have (issue 21): Helm charts that read the cluster's
//! version and APIs, charts from Helm repositories and OCI registries, OCI artifacts of plain
//! manifests, chart dependencies, SOPS-encrypted secrets, and directories ferry cannot render.
//! Everything runs against the real control plane, real Git servers, the real helm, a real
//! registry and the real sops.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{Scenario, T, condition, summary};

fn ready_message(app: &Value) -> String {
    condition(app, "Ready").map(|c| c["message"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

/// A chart with `kubeVersion: >=1.23.0-0` that branches on `.Capabilities.APIVersions.Has`.
/// Before ferry gave helm the cluster's capabilities, `helm template` assumed Kubernetes
/// v1.20.0 and refused the chart ("chart requires kubeVersion: >=1.23.0-0 which is
/// incompatible with Kubernetes v1.20.0").
const CAPABILITIES_CHART: &str = "apiVersion: v2\nname: caps\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n";
const CAPABILITIES_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: caps
data:
  kube: "{{ .Capabilities.KubeVersion.Version }}"
  httproute: "{{ .Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1/HTTPRoute" }}"
  gateway-group: "{{ .Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1" }}"
  made-up: "{{ .Capabilities.APIVersions.Has "made-up.example.com/v1" }}"
"#;

fn commit_capabilities_chart(s: &Scenario) -> String {
    s.git.commit_files(
        "main",
        &[("caps/Chart.yaml", CAPABILITIES_CHART), ("caps/templates/cm.yaml", CAPABILITIES_TEMPLATE)],
        "a chart that reads the cluster's capabilities",
    )
}

#[test]
fn a_chart_sees_the_clusters_version_and_served_apis() {
    let s = Scenario::new("chart-caps");
    let sha = commit_capabilities_chart(&s);
    let app = s.create_app(s.application("caps").path("caps"));
    app.wait_synced(&sha, T);
    let version = s.kubectl_ok(&["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).expect("kubectl version -o json");
    let server = version["serverVersion"]["gitVersion"].as_str().expect("server version").to_string();
    assert_eq!(s.cm_value("caps", "kube").as_deref(), Some(server.as_str()));
    // The Gateway API CRDs are installed by the test environment: served, so the chart sees them.
    assert_eq!(s.cm_value("caps", "httproute").as_deref(), Some("true"));
    assert_eq!(s.cm_value("caps", "gateway-group").as_deref(), Some("true"));
    assert_eq!(s.cm_value("caps", "made-up").as_deref(), Some("false"));
}

#[test]
fn ferry_diff_renders_a_chart_with_the_clusters_capabilities() {
    let s = Scenario::new("chart-caps-diff");
    commit_capabilities_chart(&s);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("application.json");
    std::fs::write(&file, s.application("caps").path("caps").to_string()).expect("write the Application");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["diff", "--file", &file.to_string_lossy(), "--revision", "main"])
        .env("KUBECONFIG", &s.cluster.kubeconfig)
        .env("FERRY_HELM", crate::support::helm_bin())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry diff");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("kubeVersion"), "helm refused the chart's kubeVersion: {stderr}");
    let added =
        |key: &str| stdout.lines().any(|l| l.starts_with('+') && l.contains(key) && l.contains("\"true\""));
    assert!(added("httproute") && !added("made-up"), "stdout: {stdout}\nstderr: {stderr}");
}

/// A directory of `.jsonnet` files rendered nothing and synced as "Synced, 0 objects"; it is
/// now RenderFailed naming what it found, and nothing is applied or pruned.
#[test]
fn a_directory_of_files_ferry_cannot_render_is_render_failed() {
    let s = Scenario::new("nothing-rendered");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  a: b\n";
    let sha = s.git.commit_files("main", &[("app/kept.yaml", cm)], "one ConfigMap");
    let app = s.create_app(s.default_app("jsonnet").prune(true).allow_empty(true));
    app.wait_synced(&sha, T);
    s.git.remove_files("main", &["app/kept.yaml"], "move to jsonnet");
    s.git.commit_files(
        "main",
        &[("app/main.jsonnet", "{ kind: 'ConfigMap' }\n"), ("app/lib.libsonnet", "{}\n")],
        "jsonnet",
    );
    let status = app.wait_not_ready("RenderFailed", T);
    let message = ready_message(&status);
    assert!(
        message.contains("1 .jsonnet file (jsonnet is not supported)")
            && message.contains("1 .libsonnet file (jsonnet is not supported)"),
        "{}",
        summary(&status)
    );
    assert_eq!(s.cm_value("kept", "a").as_deref(), Some("b"), "the old ConfigMap was pruned");
}
