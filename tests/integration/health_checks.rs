//! Custom health as CEL (`spec.healthChecks`, `ferry run --health-checks`) against the real
//! cluster: a custom resource whose status an expression judges Healthy, then Degraded; a
//! LoadBalancer Service and an Ingress, which never get an address here (kwok runs no
//! load-balancer controller), Progressing by ferry's rule and Healthy with a check; a cluster-wide
//! check and an Application's own one over it; an invalid expression refused before anything is
//! applied, and a bad `--health-checks` file refused at start. The cluster-wide file is the one
//! the chart's `healthChecks` value mounts.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn gadget(group: &str, name: &str) -> String {
    format!("apiVersion: {group}/v1\nkind: Gadget\n{}spec:\n  size: 1\n", meta(name, None))
}

/// A Service of type LoadBalancer: Progressing by ferry's rule until it has an address.
fn lb_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\n{}spec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
        meta(name, None)
    )
}

/// An Ingress to `service`: Progressing by ferry's rule until it has an address.
fn ingress(name: &str, service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n{}spec:\n  defaultBackend:\n    service: {{name: {service}, port: {{number: 80}}}}\n",
        meta(name, None)
    )
}

/// The README's checks for a cluster without a load-balancer controller: a Service or an
/// Ingress is Healthy once it exists.
fn no_lb_checks() -> Value {
    json!([
        {"apiVersion": "v1", "kind": "Service", "current": "true"},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "current": "true"},
    ])
}

/// Waits until the Application is Synced at commit `sha` with health `status`; returns it.
fn wait_health(app: &FerryApp, status: &str, sha: &str) -> Value {
    app.wait(&format!("Synced, health {status} at {}", &sha[..7]), T, |a| {
        let s = &a["status"];
        if !s["sync"]["revision"].as_str().unwrap_or_default().contains(sha)
            || s["sync"]["status"] != "Synced"
        {
            return Err("not Synced at the revision yet".into());
        }
        if s["health"]["status"] != status {
            return Err(format!("health is {}", s["health"]["status"]));
        }
        Ok(a.clone())
    })
}

/// The file the chart mounts for `healthChecks: <checks>` (the ConfigMap's data), after checking
/// that its Deployment mounts it where its `--health-checks` flag points.
fn chart_health_checks_file(checks: &Value) -> String {
    let chart = repo_root().join("charts/ferry");
    let set = format!("healthChecks={checks}");
    let out = Command::new(helm_bin())
        .args(["template", "ferry", chart.to_str().expect("a UTF-8 path"), "--namespace", "ferry-system"])
        .args(["--set-json", &set])
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("ferry-tests-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("ferry-tests-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("ferry-tests-helm/data"))
        .stdin(Stdio::null())
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("YAML");
    let of_kind = |kind: &str| {
        docs.iter().find(|d| {
            d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("ferry"))
        })
    };
    let deployment = of_kind("Deployment").expect("the chart renders a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(
        container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a == "--health-checks=/etc/ferry/health-checks/health-checks.yaml"),
        "no --health-checks flag: {}",
        container["args"]
    );
    let mount =
        container["volumeMounts"].as_array().into_iter().flatten().find(|m| m["name"] == "health-checks");
    assert_eq!(mount.map(|m| m["mountPath"].clone()), Some(json!("/etc/ferry/health-checks")), "{container}");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "ferry-health-checks")
        .expect("the chart renders the health checks ConfigMap");
    let volume = pod["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == "health-checks");
    assert_eq!(volume.map(|v| v["configMap"]["name"].clone()), Some(json!("ferry-health-checks")), "{pod}");
    cm["data"]["health-checks.yaml"].as_str().expect("the ConfigMap holds health-checks.yaml").to_string()
}

fn health_message(app: &Value) -> String {
    app["status"]["health"]["message"].as_str().unwrap_or_default().to_string()
}

fn set_gadget_phase(s: &Scenario, group: &str, phase: &str) {
    let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
    let resource = format!("gadgets.{group}");
    s.kubectl_ok(&[
        "-n",
        s.ns(),
        "patch",
        &resource,
        "g1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn a_cel_check_decides_a_custom_resources_health() {
    let s = Scenario::new("hc-cel");
    let group = format!("{}.ferry-test.dev", s.ns());
    s.delete_later(&["customresourcedefinition", &format!("gadgets.{group}")]);
    s.cluster.apply(&gadget_crd(&group));
    s.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", &format!("crd/gadgets.{group}")]);
    let sha = s.commit(&[("gadget.yaml", gadget(&group, "g1"))], "a gadget");
    let checks = json!([{
        "apiVersion": format!("{group}/v1"),
        "kind": "Gadget",
        "current": "status.phase == 'Ready'",
        "failed": "status.phase == 'Failed'",
    }]);
    let app = s.create_app(s.default_app("gadgets").health_checks(checks));

    // No status yet: the expressions cannot be evaluated, so the Gadget is Progressing (ferry's
    // own rule would call an object without conditions Healthy).
    let waiting = wait_health(&app, "Progressing", &sha);
    let message = health_message(&waiting);
    assert!(message.contains("Gadget") && message.contains("spec.healthChecks[0]"), "{message}");

    set_gadget_phase(&s, &group, "Ready");
    app.wait_synced(&sha, T);

    set_gadget_phase(&s, &group, "Failed");
    let degraded = wait_health(&app, "Degraded", &sha);
    let message = health_message(&degraded);
    assert!(
        message.contains(&format!("Gadget {}/g1", s.ns()))
            && message.contains("spec.healthChecks[0].failed is true: status.phase == 'Failed'"),
        "the message names the object and the check: {message}"
    );

    // And back: the check follows the status both ways.
    set_gadget_phase(&s, &group, "Ready");
    app.wait_synced(&sha, T);
}

#[test]
fn a_load_balancer_without_an_address_is_healthy_only_with_a_check() {
    let s = Scenario::new("hc-lb");
    s.commit(&[("lb.yaml", docs(&[lb_service("web"), ingress("web", "web")]))], "lb and ingress");
    let sha =
        s.commit_in("other", &[("lb.yaml", docs(&[lb_service("api"), ingress("api", "api")]))], "again");
    let waits = s.create_app(s.default_app("waits"));
    let counts = s.create_app(s.default_app("counts").path("other").health_checks(no_lb_checks()));

    counts.wait_synced(&sha, T);
    let progressing = wait_health(&waits, "Progressing", &sha);
    assert!(
        health_message(&progressing).contains("waiting for a load balancer address"),
        "{}",
        health_message(&progressing)
    );
    // Neither Service has an address: the cluster has no load-balancer controller.
    for name in ["web", "api"] {
        let svc = s.get("service", Some(s.ns()), name).expect("the Service exists");
        assert!(svc["status"]["loadBalancer"]["ingress"].is_null(), "{name} got an address: {svc}");
    }
}

#[test]
fn cluster_wide_checks_apply_and_an_applications_own_check_wins() {
    // The file as the chart's `healthChecks` value mounts it.
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    let checks = json!([{"apiVersion": "v1", "kind": "Service", "current": "true"}]);
    std::fs::write(file.path(), chart_health_checks_file(&checks)).expect("write it");
    let path = file.path().to_str().expect("a UTF-8 path").to_string();
    let s = Scenario::with_ferry_args("hc-cluster", &["--health-checks", &path]);
    s.commit(&[("lb.yaml", lb_service("web"))], "a load balancer");
    let sha = s.commit_in("other", &[("lb.yaml", lb_service("api"))], "another");
    let by_cluster = s.create_app(s.default_app("by-cluster"));
    let own_check =
        json!([{"apiVersion": "v1", "kind": "Service", "current": "has(status.loadBalancer.ingress)"}]);
    let own = s.create_app(s.default_app("own").path("other").health_checks(own_check));

    by_cluster.wait_synced(&sha, T);
    let waiting = wait_health(&own, "Progressing", &sha);
    let message = health_message(&waiting);
    assert!(
        message.contains("spec.healthChecks[0].current is not true yet: has(status.loadBalancer.ingress)"),
        "the Application's check decides, not the cluster-wide one: {message}"
    );
}

#[test]
fn an_invalid_expression_is_refused_before_anything_is_applied() {
    let s = Scenario::new("hc-invalid");
    let sha = s.commit(&[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "config");
    let checks = json!([{"apiVersion": "v1", "kind": "ConfigMap", "current": "data.color =="}]);
    let app = s.create_app(s.default_app("bad").health_checks(checks));
    let refused = app.wait_refused("ValidationFailed", &sha, T);
    let message = condition(&refused, "Ready").map(|c| c["message"].to_string()).unwrap_or_default();
    assert!(
        message.contains("spec.healthChecks[0].current") && message.contains("is not a valid CEL expression"),
        "{message}"
    );
    assert_eq!(s.cm_value("settings", "color"), None, "nothing of the revision was applied");
}

#[test]
fn a_bad_health_checks_file_stops_ferry_at_start() {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), "- apiVersion: v1\n  kind: Service\n  current: \"spec.type ==\"\n")
        .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--health-checks"])
        .arg(file.path())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("run ferry");
    assert!(!out.status.success(), "ferry started with an invalid check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[0].current") && stderr.contains("is not a valid CEL expression"),
        "the error names the entry: {stderr}"
    );
}
