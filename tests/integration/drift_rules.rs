//! `spec.ignoreDifferences` (issue 22, part 6) against the real control plane: fields another
//! manager owns (`managedFieldsManagers`, an HPA's replicas) or named by JSON pointers are
//! neither drift nor overwritten after creation, and cost no writes.
//!
//! Writes are counted with ferry's own `ferry_objects_applied_total` (each test runs its own
//! ferry), over at least three reconciles at a 2s interval (ferry's reconcile counter moved);
//! nothing here measures time.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Scenario, T, configmap, deployment, meta, metric, summary, wait_reconciles};

/// Objects ferry changed (not created) since it started.
fn updates(s: &Scenario) -> f64 {
    metric(&s.ferry, "ferry_objects_applied_total{result=\"updated\"}")
}

/// Scales Deployment `web` as another controller would, with server-side apply as field manager
/// `hpa-test` (kwok has no metrics, so a real HPA would not scale).
fn scale_as_other_manager(s: &Scenario, replicas: u32) {
    let body = format!(
        "apiVersion: apps/v1\nkind: Deployment\n{}spec:\n  replicas: {replicas}\n",
        meta("web", Some(s.ns()))
    );
    let args = ["apply", "--server-side", "--field-manager=hpa-test", "--force-conflicts", "-f", "-"];
    let run = s.cluster.kubectl_stdin(&args, &body);
    assert!(run.success, "{}", run.stderr);
}

fn replicas(s: &Scenario) -> Value {
    s.get("deployment", Some(s.ns()), "web").expect("deployment web")["spec"]["replicas"].clone()
}

fn image(s: &Scenario) -> Value {
    s.get("deployment", Some(s.ns()), "web").expect("deployment web")["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .clone()
}

/// `ferry diff NAME -n NS --revision main`: (exit code, stdout and stderr).
fn ferry_diff(s: &Scenario, name: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["diff", name, "-n", s.ns(), "--revision", "main"])
        .env("KUBECONFIG", &s.cluster.kubeconfig)
        .env("FERRY_KUSTOMIZE", crate::support::kustomize_bin())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry diff");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn fields_another_manager_owns_are_left_to_it_without_a_write() {
    let s = Scenario::new("drift-manager");
    let sha1 = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:1.0", 2))], "web");
    let rules = json!([{"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["hpa-test"]}]);
    let app = s.create_app(s.default_app("hpa").interval("2s").ignore_differences(rules));
    app.wait_synced(&sha1, T);
    assert_eq!(replicas(&s), 2, "created as Git has it");

    scale_as_other_manager(&s, 5);
    let before = updates(&s);
    wait_reconciles(&s.ferry, 3.0);
    assert_eq!(replicas(&s), 5, "ferry reset the other manager's replicas");
    assert_eq!(updates(&s), before, "ferry wrote the Deployment though only ignored fields differ");
    let status = app.json();
    assert_eq!(status["status"]["sync"]["status"], "Synced", "{}", summary(&status));
    let (code, out) = ferry_diff(&s, "hpa");
    assert_eq!(code, 0, "ferry diff shows a change: {out}");

    // Git changes the image: applied, and the replicas stay the other manager's.
    let sha2 = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:2.0", 2))], "web 2.0");
    app.annotate_reconcile_at();
    app.wait_synced(&sha2, T);
    assert_eq!(image(&s), "registry.example/web:2.0");
    assert_eq!(replicas(&s), 5, "the apply of a Git change reset the ignored replicas");
    scale_as_other_manager(&s, 6);
    let before = updates(&s);
    wait_reconciles(&s.ferry, 3.0);
    assert_eq!((replicas(&s), updates(&s)), (json!(6), before), "a drift fight after the Git change");
}

#[test]
fn json_pointers_are_neither_drift_nor_reset_by_a_later_apply() {
    let s = Scenario::new("drift-pointer");
    let settings = |size: &str| configmap("settings", None, &[("color", "blue"), ("size", size)]);
    let sha1 = s.commit(&[("settings.yaml", settings("1"))], "settings");
    let rules = json!([{"kind": "ConfigMap", "name": "settings", "jsonPointers": ["/data/color"]}]);
    let app = s.create_app(s.default_app("pointer").interval("2s").ignore_differences(rules));
    app.wait_synced(&sha1, T);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("blue"), "created as Git has it");

    s.edit_settings_color("red");
    let before = updates(&s);
    wait_reconciles(&s.ferry, 3.0);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("red"), "an ignored field was reverted");
    assert_eq!(updates(&s), before, "ferry wrote the ConfigMap though only an ignored field differs");
    let status = app.json();
    assert_eq!(status["status"]["sync"]["status"], "Synced", "{}", summary(&status));

    let sha2 = s.commit(&[("settings.yaml", settings("2"))], "size 2");
    app.annotate_reconcile_at();
    app.wait_synced(&sha2, T);
    assert_eq!(s.cm_value("settings", "size").as_deref(), Some("2"));
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("red"), "the apply of a Git change reset it");
}

#[test]
fn an_adopted_object_keeps_the_fields_its_other_manager_owns() {
    let s = Scenario::new("drift-adopt");
    // Before ferry, another tool applied the Deployment and scaled it (as when moving from Argo
    // CD, whose objects carry no ferry labels).
    let theirs = deployment("web", Some(s.ns()), "registry.example/web:1.0", 5);
    let run =
        s.cluster.kubectl_stdin(&["apply", "--server-side", "--field-manager=hpa-test", "-f", "-"], &theirs);
    assert!(run.success, "{}", run.stderr);
    let sha = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:1.0", 2))], "web");
    let rules = json!([{"group": "apps", "kind": "Deployment", "name": "web", "managedFieldsManagers": ["hpa-test"]}]);
    let app = s.create_app(s.default_app("adopt").interval("1h").ignore_differences(rules));
    app.wait_synced(&sha, T);
    let web = s.get("deployment", Some(s.ns()), "web").expect("deployment web");
    assert_eq!(web["metadata"]["labels"]["ferry.dev/app-name"], "adopt", "not adopted");
    assert_eq!(web["spec"]["replicas"], 5, "the adoption reset the other manager's replicas");
}
