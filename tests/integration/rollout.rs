//! Canary rollouts (issue 8) end to end: ferry as a process, the real control plane with kwok
//! pods (so Deployments really become available), a real Git server, and a real Prometheus
//! scraping a test exporter whose canary error ratio each test sets.
//!
//! Every step is observed as a person would: `status.rollout`, the Deployments' replicas and
//! images, Events, and the `ferry promote|abort|retry|status` commands.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};

use crate::support::{FerryApp, Prometheus, Scenario, T, deployment, get_json, main_revision, wait_until};

const REPLICAS: u32 = 5;

/// An HTTP server with one gauge, `test_canary_error_ratio{variant="canary"}`, whose value the
/// test sets; `None` serves no sample at all (Prometheus then has no data).
pub(crate) struct Exporter {
    pub(crate) addr: String,
    value: Arc<Mutex<Option<f64>>>,
}

impl Exporter {
    pub(crate) fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
        let addr = listener.local_addr().expect("exporter address").to_string();
        let value: Arc<Mutex<Option<f64>>> = Arc::new(Mutex::new(None));
        let shared = value.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // Read the request head; the answer does not depend on it.
                let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut body = String::from("# TYPE test_canary_error_ratio gauge\n");
                if let Some(v) = *shared.lock().unwrap() {
                    body.push_str(&format!("test_canary_error_ratio{{variant=\"canary\"}} {v}\n"));
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { addr, value }
    }

    pub(crate) fn set(&self, value: Option<f64>) {
        *self.value.lock().unwrap() = value;
    }
}

/// A scenario with Prometheus scraping the exporter and ferry pointed at it.
struct Canary {
    s: Scenario,
    exporter: Exporter,
    prometheus: Prometheus,
}

pub(crate) const ERROR_QUERY: &str = r#"max(test_canary_error_ratio{variant="{{variant}}"})"#;

impl Canary {
    fn new(prefix: &str) -> Canary {
        let exporter = Exporter::start();
        let prometheus = Prometheus::start(std::slice::from_ref(&exporter.addr));
        let url = prometheus.url();
        let s = Scenario::with_ferry_args(prefix, &["--prometheus-url", &url]);
        Canary { s, exporter, prometheus }
    }

    /// Sets the canary's error ratio and waits until Prometheus answers with it (or with no data).
    fn set_error_ratio(&self, value: Option<f64>) {
        self.exporter.set(value);
        let query = ERROR_QUERY.replace("{{variant}}", "canary");
        wait_until(&format!("Prometheus to see error ratio {value:?}"), T, || {
            let data = self.prometheus.query(&query)?;
            let seen = data["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if seen == value { Ok(()) } else { Err(format!("Prometheus answers {data}")) }
        });
    }

    fn ns(&self) -> &str {
        self.s.ns()
    }

    /// Commits the shop Deployment (5 replicas) at `tag` and its Service.
    fn commit_shop(&self, tag: &str) -> String {
        let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector: {app: shop}\n  ports:\n  - port: 80\n    targetPort: 8080\n";
        self.s.commit_in(
            "app",
            &[
                (
                    "deployment.yaml",
                    deployment("shop", None, &format!("registry.example/shop:{tag}"), REPLICAS),
                ),
                ("service.yaml", service.to_string()),
            ],
            &format!("shop {tag}"),
        )
    }

    /// An Application syncing `app/` with a canary strategy of these steps.
    fn create_app(&self, steps: Value) -> FerryApp {
        self.s.create_app(self.s.application("shop").interval("1m").prune(true).canary("shop", steps))
    }

    /// `name/uid` of the running (not terminating) shop pods of image tag `tag`.
    fn pods_of(&self, tag: &str) -> Vec<String> {
        let pods = get_json(&self.s.cluster, &["-n", self.ns(), "get", "pods", "-l", "app=shop"]).unwrap();
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let running = items.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null());
        let of_tag = running.filter(|p| pod_image(p).ends_with(&format!(":{tag}")));
        let id = |p: &Value| format!("{}/{}", p["metadata"]["name"], p["metadata"]["uid"]);
        of_tag.map(id).collect()
    }

    /// Names of the ReplicaSets `deployment` controls.
    fn replica_sets_of(&self, deployment: &Value) -> Vec<String> {
        let sets = get_json(&self.s.cluster, &["-n", self.ns(), "get", "replicasets"]).unwrap();
        let uid = &deployment["metadata"]["uid"];
        let items = sets["items"].as_array().cloned().unwrap_or_default();
        let owned = items.iter().filter(|rs| {
            let owners = rs["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
            owners.iter().any(|o| o["controller"] == true && &o["uid"] == uid)
        });
        owned.map(|rs| rs["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect()
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        get_json(&self.s.cluster, &["-n", self.ns(), "get", "deployment", name])
    }

    /// `ferry <verb> shop -n NS`; returns stdout.
    fn ferry(&self, verb: &str, extra: &[&str]) -> String {
        let mut args = vec![verb, "shop", "-n", self.ns()];
        args.extend_from_slice(extra);
        crate::support::ferry_cli(&self.s.cluster, &args)
    }

    /// Waits until `status.rollout` satisfies `check`; returns the Application.
    fn wait_rollout(&self, app: &FerryApp, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        app.wait(what, T, |a| {
            let r = &a["status"]["rollout"];
            if check(r) { Ok(a.clone()) } else { Err(format!("rollout: {r}")) }
        })
    }

    /// Waits until the primary and canary run these replicas and images (the canary `None`:
    /// gone), each fully available.
    fn wait_split(&self, primary: (i64, &str), canary: Option<(i64, &str)>) {
        let what = format!("primary {primary:?} and canary {canary:?}");
        wait_until(&what, T, || {
            let show = |d: &Option<Value>| {
                d.as_ref().map(|d| {
                    (
                        d["spec"]["replicas"].as_i64().unwrap_or(-1),
                        image(d),
                        d["status"]["availableReplicas"].as_i64().unwrap_or(0),
                        d["status"]["replicas"].as_i64().unwrap_or(0),
                    )
                })
            };
            let (p, c) = (show(&self.deployment("shop")), show(&self.deployment("shop-canary")));
            let fits = |got: &Option<(i64, String, i64, i64)>, want: Option<(i64, &str)>| match (got, want) {
                (None, None) => true,
                (Some((r, i, avail, total)), Some((wr, wi))) => {
                    *r == wr && i.ends_with(&format!(":{wi}")) && *avail == wr && *total == wr
                }
                _ => false,
            };
            if fits(&p, Some(primary)) && fits(&c, canary) {
                Ok(())
            } else {
                Err(format!("primary {p:?}, canary {c:?} (replicas, image, available, total)"))
            }
        });
    }
}

fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string()
}

fn pod_image(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

fn phase(r: &Value) -> &str {
    r["phase"].as_str().unwrap_or_default()
}

pub(crate) fn analysis_step(condition: &str, count: u32) -> Value {
    json!({"analysis": {"metrics": [{
        "name": "error-ratio",
        "prometheus": {"query": ERROR_QUERY},
        "interval": "2s",
        "count": count,
        "successCondition": condition,
    }]}})
}

#[test]
fn a_canary_by_replica_ratio_goes_20_pause_analysis_50_and_is_promoted() {
    let c = Canary::new("canary-ratio");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([
        {"setWeight": 20}, {"pause": {}}, analysis_step("result < 0.05", 2), {"setWeight": 50}, {"pause": {}}
    ]));
    app.wait_synced(&v1, T);
    // The first sync is no rollout: the primary is created as in Git.
    c.wait_split((5, "1.0"), None);
    assert!(app.json()["status"]["rollout"].is_null(), "{}", app.json()["status"]);

    let v2 = c.commit_shop("2.0");
    app.ferry_sync();
    // 20%: one canary pod of the new version beside four stable ones, then the empty pause.
    let a = c.wait_rollout(&app, "paused at step 2", |r| phase(r) == "Paused" && r["step"] == 1);
    let r = &a["status"]["rollout"];
    assert_eq!(r["canaryWeight"], 20, "{r}");
    assert_eq!(r["revision"], main_revision(&v2), "{r}");
    assert_eq!(r["stableRevision"], main_revision(&v1), "{r}");
    assert_eq!(a["status"]["health"]["status"], "Suspended", "{}", a["status"]);
    c.wait_split((4, "1.0"), Some((1, "2.0")));
    let canary = c.deployment("shop-canary").unwrap();
    assert_eq!(canary["metadata"]["labels"]["ferry.dev/variant"], "canary");
    // The canary's pods run Git's template and selector as they are: the Service sends them
    // their share, and promotion hands their ReplicaSet to the primary.
    let primary = c.deployment("shop").unwrap();
    assert_eq!(canary["spec"]["selector"], primary["spec"]["selector"]);
    assert_eq!(canary["spec"]["template"]["metadata"], primary["spec"]["template"]["metadata"]);
    let managers: Vec<String> = canary["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(managers.contains(&"ferry-rollout".to_string()), "{managers:?}");
    let status = c.ferry("status", &[]);
    assert!(status.contains("Paused") && status.contains("20%"), "{status}");

    // Healthy canary: promote past the pause; two good measurements; 50%.
    c.set_error_ratio(Some(0.01));
    c.ferry("promote", &[]);
    let a = c.wait_rollout(&app, "paused at step 5", |r| phase(r) == "Paused" && r["step"] == 4);
    let r = &a["status"]["rollout"];
    assert_eq!(r["canaryWeight"], 50, "{r}");
    let analysis = &r["analysis"];
    assert_eq!(analysis["phase"], "Successful", "{analysis}");
    assert_eq!(analysis["metrics"][0]["successful"], 2, "{analysis}");
    assert_eq!(analysis["measurements"][0]["value"], "0.01", "{analysis}");
    c.wait_split((2, "1.0"), Some((3, "2.0")));
    let status = c.ferry("status", &[]);
    assert!(status.contains("error-ratio") && status.contains("Successful"), "{status}");

    // Promote: the canary comes up to full size, its ReplicaSet is handed to the primary (the
    // same Deployment, never deleted), and the canary Deployment goes; no canary pod is replaced.
    let canary_pods = c.pods_of("2.0");
    assert_eq!(canary_pods.len(), 3, "{canary_pods:?}");
    c.ferry("promote", &[]);
    let a = c.wait_rollout(&app, "completed", |r| phase(r) == "Completed");
    assert_eq!(a["status"]["rollout"]["stableRevision"], main_revision(&v2));
    c.wait_split((5, "2.0"), None);
    let promoted = c.deployment("shop").unwrap();
    assert_eq!(promoted["metadata"]["uid"], primary["metadata"]["uid"], "the primary was never deleted");
    assert!(promoted["spec"].get("paused").is_none(), "{}", promoted["spec"]);
    let after = c.pods_of("2.0");
    for pod in &canary_pods {
        assert!(after.contains(pod), "canary pod {pod} was replaced at promotion: {after:?}");
    }
    assert!(c.pods_of("1.0").is_empty());
    app.wait_synced(&v2, T);
    app.wait_event("Normal", "RolloutPromoted", &["shop"], T);
    app.wait_event("Normal", "RolloutStarted", &[&v2[..7]], T);

    // Metrics: the rollout's phase and duration, and the measurements.
    let metrics = crate::support::http_get(&c.s.ferry.http_address(), "/metrics").body;
    let ns = c.ns();
    assert!(
        metrics.contains(&format!(
            "ferry_rollout_info{{namespace=\"{ns}\",name=\"shop\",strategy=\"canary\",phase=\"Completed\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_rollout_duration_seconds_count{strategy=\"canary\",result=\"Succeeded\"} 1")
    );
    assert!(metrics.contains("ferry_analysis_measurements_total{result=\"Successful\"} 2"), "{metrics}");
}

#[test]
fn a_canary_run_alone_at_100_is_handed_to_the_primary_with_its_pods() {
    let c = Canary::new("canary-handover");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([{"setWeight": 40}, {"setWeight": 100}, {"pause": {}}]));
    app.wait_synced(&v1, T);
    c.wait_split((5, "1.0"), None);
    let primary = c.deployment("shop").unwrap();

    let _v2 = c.commit_shop("2.0");
    app.ferry_sync();
    // At 100% the canary runs alone; the primary waits drained, paused, its ReplicaSets gone.
    c.wait_rollout(&app, "paused at step 3", |r| phase(r) == "Paused" && r["step"] == 2);
    c.wait_split((0, "1.0"), Some((5, "2.0")));
    let held = c.deployment("shop").unwrap();
    assert_eq!(held["spec"]["paused"], true, "{}", held["spec"]);
    wait_until("the primary's ReplicaSets released", T, || {
        let sets = c.replica_sets_of(&primary);
        if sets.is_empty() { Ok(()) } else { Err(format!("the primary still owns {sets:?}")) }
    });
    let canary_pods = c.pods_of("2.0");
    assert_eq!(canary_pods.len(), 5, "{canary_pods:?}");

    c.ferry("promote", &[]);
    c.wait_rollout(&app, "completed", |r| phase(r) == "Completed");
    c.wait_split((5, "2.0"), None);
    let promoted = c.deployment("shop").unwrap();
    assert_eq!(promoted["metadata"]["uid"], primary["metadata"]["uid"], "the primary was never deleted");
    assert!(promoted["spec"].get("paused").is_none(), "{}", promoted["spec"]);
    // Its one ReplicaSet is the canary's, adopted with its pods: none replaced, none added.
    let sets = c.replica_sets_of(&primary);
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(sets[0].starts_with("shop-canary-"), "{sets:?}");
    assert_eq!(c.pods_of("2.0"), canary_pods);
    assert!(c.pods_of("1.0").is_empty());
}

#[test]
fn failing_analysis_aborts_and_the_revision_waits_for_a_new_commit_or_retry() {
    let c = Canary::new("canary-abort");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([{"setWeight": 20}, analysis_step("result < 0.05", 1)]));
    app.wait_synced(&v1, T);
    c.set_error_ratio(Some(0.5));

    let v2 = c.commit_shop("2.0");
    app.ferry_sync();
    let a = app.wait_not_ready("RolloutAborted", T);
    let r = &a["status"]["rollout"];
    assert_eq!(phase(r), "Aborted", "{r}");
    assert_eq!(r["abortedRevision"], main_revision(&v2), "{r}");
    assert_eq!(r["analysis"]["measurements"][0]["verdict"], "Failed", "{r}");
    assert_eq!(a["status"]["health"]["status"], "Degraded", "{}", a["status"]);
    assert_eq!(a["status"]["history"][0]["result"], "RolledBack", "{}", a["status"]);
    // Everything back on the stable version; the canary is gone.
    c.wait_split((5, "1.0"), None);
    app.wait_event("Warning", "RolloutAborted", &[&v2[..7]], T);

    // More reconciles of the same revision do not try it again.
    let reconciles = || crate::support::metric(&c.s.ferry, "ferry_reconcile_total{result=\"success\"}");
    let before = reconciles();
    app.ferry_sync();
    wait_until("two more reconciles", T, || {
        if reconciles() >= before + 2.0 { Ok(()) } else { Err(format!("{} reconciles", reconciles())) }
    });
    app.ferry_sync();
    wait_until("one more reconcile", T, || {
        if reconciles() >= before + 3.0 { Ok(()) } else { Err(format!("{} reconciles", reconciles())) }
    });
    assert!(c.deployment("shop-canary").is_none(), "the aborted revision was rolled out again");
    assert_eq!(phase(&app.json()["status"]["rollout"]), "Aborted");
    assert_eq!(image(&c.deployment("shop").unwrap()), "registry.example/shop:1.0");

    // A new commit starts a fresh rollout; with a healthy canary it goes all the way.
    c.set_error_ratio(Some(0.01));
    let v3 = c.commit_shop("3.0");
    app.ferry_sync();
    app.wait_synced(&v3, T);
    c.wait_split((5, "3.0"), None);
    assert_eq!(phase(&app.json()["status"]["rollout"]), "Completed");

    // Fails again at 4.0; `ferry retry` rolls the same revision out once the canary is healthy.
    c.set_error_ratio(Some(0.5));
    let v4 = c.commit_shop("4.0");
    app.ferry_sync();
    let a = app.wait_not_ready("RolloutAborted", T);
    assert_eq!(a["status"]["rollout"]["abortedRevision"], main_revision(&v4));
    c.wait_split((5, "3.0"), None);
    c.set_error_ratio(Some(0.01));
    c.ferry("retry", &[]);
    app.wait_synced(&v4, T);
    c.wait_split((5, "4.0"), None);
    let r = app.json()["status"]["rollout"].clone();
    assert_eq!((phase(&r), r["abortedRevision"].is_null()), ("Completed", true), "{r}");
}

#[test]
fn no_data_is_inconclusive_and_waits_for_a_person_as_an_empty_pause_does() {
    let c = Canary::new("canary-nodata");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([
        {"setWeight": 20}, analysis_step("result < 0.05", 1), {"pause": {}}, {"setWeight": 40}
    ]));
    app.wait_synced(&v1, T);
    c.set_error_ratio(None);

    let _v2 = c.commit_shop("2.0");
    app.ferry_sync();
    let a = c.wait_rollout(&app, "paused on an inconclusive analysis", |r| {
        phase(r) == "Paused" && r["analysis"]["phase"] == "Inconclusive"
    });
    let r = &a["status"]["rollout"];
    assert_eq!(r["step"], 1, "{r}");
    assert_eq!(r["analysis"]["measurements"][0]["message"], "no data", "{r}");
    assert_eq!(a["status"]["health"]["status"], "Suspended");
    c.wait_split((4, "1.0"), Some((1, "2.0")));
    app.wait_event("Warning", "RolloutPaused", &["inconclusive"], T);

    // Promote: past the analysis, to the empty pause, which waits as well.
    c.ferry("promote", &[]);
    let a = c.wait_rollout(&app, "paused at the empty pause", |r| phase(r) == "Paused" && r["step"] == 2);
    assert_eq!(a["status"]["rollout"]["canaryWeight"], 20);
    c.wait_split((4, "1.0"), Some((1, "2.0")));

    // Abort: everything back on the stable version at once.
    c.ferry("abort", &[]);
    let a = app.wait_not_ready("RolloutAborted", T);
    assert!(a["status"]["rollout"]["message"].as_str().unwrap_or_default().contains("ferry abort"));
    c.wait_split((5, "1.0"), None);

    // Deleting the Application mid-rollout (prune on: deletion policy Delete) takes the canary too.
    c.ferry("retry", &[]);
    c.wait_rollout(&app, "paused on the analysis again", |r| phase(r) == "Paused" && r["step"] == 1);
    assert!(c.deployment("shop-canary").is_some());
    c.s.kubectl_ok(&["-n", c.ns(), "delete", "applications.ferry.dev", "shop", "--wait=false"]);
    wait_until("the Deployments to be deleted with the Application", T, || {
        match (c.deployment("shop"), c.deployment("shop-canary")) {
            (None, None) => Ok(()),
            (p, k) => Err(format!("primary {}, canary {}", p.is_some(), k.is_some())),
        }
    });
}

#[test]
fn a_killed_ferry_resumes_the_rollout_at_the_same_step() {
    let mut c = Canary::new("canary-kill");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([
        {"setWeight": 20}, {"pause": {}}, {"setWeight": 60},
        {"analysis": {"metrics": [{"name": "error-ratio", "prometheus": {"query": ERROR_QUERY},
            "interval": "3s", "count": 6, "successCondition": "result < 0.05"}]}},
        {"pause": {}}
    ]));
    app.wait_synced(&v1, T);
    c.set_error_ratio(Some(0.01));
    let v2 = c.commit_shop("2.0");
    app.ferry_sync();
    c.wait_rollout(&app, "paused at step 2", |r| phase(r) == "Paused" && r["step"] == 1);
    c.wait_split((4, "1.0"), Some((1, "2.0")));
    let uid = c.deployment("shop-canary").unwrap()["metadata"]["uid"].clone();

    // Killed at a weight step: the restarted ferry keeps the step, the weight and the canary.
    c.s.ferry.kill();
    c.s.ferry.restart();
    app.ferry_sync();
    let a = c.wait_rollout(&app, "still paused at step 2 after the restart", |r| phase(r) == "Paused");
    assert_eq!(
        (a["status"]["rollout"]["step"].clone(), a["status"]["rollout"]["canaryWeight"].clone()),
        (json!(1), json!(20))
    );
    assert_eq!(c.deployment("shop-canary").unwrap()["metadata"]["uid"], uid, "the canary was recreated");
    let canaries =
        get_json(&c.s.cluster, &["-n", c.ns(), "get", "deployments", "-l", "ferry.dev/variant=canary"])
            .unwrap();
    assert_eq!(canaries["items"].as_array().unwrap().len(), 1);

    // Killed during the analysis: the measurements taken so far count, the weight stays.
    c.ferry("promote", &[]);
    let a = c.wait_rollout(&app, "two measurements into the analysis", |r| {
        phase(r) == "Analyzing" && r["analysis"]["metrics"][0]["successful"].as_i64().unwrap_or(0) >= 2
    });
    let taken = a["status"]["rollout"]["analysis"]["metrics"][0]["successful"].as_i64().unwrap();
    c.s.ferry.kill();
    c.s.ferry.restart();
    let a = c.wait_rollout(&app, "the analysis to go on after the restart", |r| {
        r["analysis"]["metrics"][0]["successful"].as_i64().unwrap_or(0) > taken || phase(r) != "Analyzing"
    });
    let r = &a["status"]["rollout"];
    assert_eq!(r["step"], 3, "the restart moved the step: {r}");
    assert_eq!(r["canaryWeight"], 60, "{r}");
    c.wait_split((2, "1.0"), Some((3, "2.0")));
    assert_eq!(c.deployment("shop-canary").unwrap()["metadata"]["uid"], uid, "the canary was recreated");
    let a = c.wait_rollout(&app, "paused after the analysis", |r| phase(r) == "Paused" && r["step"] == 4);
    assert_eq!(a["status"]["rollout"]["analysis"]["metrics"][0]["successful"], 6);

    c.ferry("promote", &["--full"]);
    app.wait_synced(&v2, T);
    c.wait_split((5, "2.0"), None);
}

/// (name, weight) of the first rule's backendRefs.
fn backends(route: &Value) -> Vec<(String, i64)> {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or_default().to_string(), r["weight"].as_i64().unwrap_or(1)))
        .collect()
}

#[test]
fn a_canary_by_gateway_api_sets_the_httproute_weights_at_each_step() {
    let c = Canary::new("canary-gateway");
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: shop\nspec:\n  parentRefs:\n  - name: web\n  rules:\n  - backendRefs:\n    - name: shop\n      port: 80\n";
    c.s.commit_in("app", &[("route.yaml", route.to_string())], "route");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]));
    app.patch(&json!({"spec": {"strategy": {"canary": {
        "trafficRouting": {"gatewayAPI": {"httpRoute": "shop"}},
        "abortScaleDownDelay": "20s",
    }}}}));
    app.wait_synced(&v1, T);
    let get_route =
        || get_json(&c.s.cluster, &["-n", c.ns(), "get", "httproute", "shop"]).expect("HTTPRoute shop");
    let wait_backends = |want: &[(&str, i64)]| {
        let want: Vec<(String, i64)> = want.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        wait_until(&format!("HTTPRoute backends {want:?}"), T, || {
            let got = backends(&get_route());
            if got == want { Ok(()) } else { Err(format!("{got:?}")) }
        });
    };
    wait_backends(&[("shop", 1)]);

    let v2 = c.commit_shop("2.0");
    app.ferry_sync();
    c.wait_rollout(&app, "paused at 20%", |r| phase(r) == "Paused" && r["step"] == 1);
    wait_backends(&[("shop", 80), ("shop-canary", 20)]);
    // The primary keeps every replica: the route, not the replica count, splits traffic.
    c.wait_split((5, "1.0"), Some((1, "2.0")));
    let canary_svc = get_json(&c.s.cluster, &["-n", c.ns(), "get", "service", "shop-canary"])
        .expect("Service shop-canary");
    let stable_svc = get_json(&c.s.cluster, &["-n", c.ns(), "get", "service", "shop"]).unwrap();
    let pods = c.deployment("shop-canary").unwrap()["spec"]["template"]["metadata"]["labels"].clone();
    assert_eq!(canary_svc["spec"]["selector"], pods, "the canary Service selects the canary's pods");
    let selects = |svc: &Value| {
        svc["spec"]["selector"].as_object().unwrap().iter().all(|(k, v)| pods.get(k) == Some(v))
    };
    assert!(!selects(&stable_svc), "the stable Service must not select canary pods: {}", stable_svc["spec"]);

    c.ferry("promote", &[]);
    c.wait_rollout(&app, "paused at 50%", |r| phase(r) == "Paused" && r["step"] == 3);
    wait_backends(&[("shop", 50), ("shop-canary", 50)]);
    c.wait_split((5, "1.0"), Some((3, "2.0")));

    // Abort: the route goes back to stable at once; the canary runs on for the delay, then goes.
    c.ferry("abort", &[]);
    app.wait_not_ready("RolloutAborted", T);
    wait_backends(&[("shop", 1)]);
    assert!(c.deployment("shop-canary").is_some(), "the canary was removed before abortScaleDownDelay");
    wait_until("the canary Deployment and Service to be removed after the delay", T, || {
        let svc = get_json(&c.s.cluster, &["-n", c.ns(), "get", "service", "shop-canary"]);
        match (c.deployment("shop-canary"), svc) {
            (None, None) => Ok(()),
            (d, s) => Err(format!("deployment {}, service {}", d.is_some(), s.is_some())),
        }
    });
    c.wait_split((5, "1.0"), None);

    // Retry, then promote past every step: the route ends as in Git, the primary on 2.0.
    c.ferry("retry", &[]);
    c.wait_rollout(&app, "paused at 20% again", |r| phase(r) == "Paused" && r["step"] == 1);
    wait_backends(&[("shop", 80), ("shop-canary", 20)]);
    c.ferry("promote", &["--full"]);
    app.wait_synced(&v2, T);
    wait_backends(&[("shop", 1)]);
    c.wait_split((5, "2.0"), None);
    assert!(get_json(&c.s.cluster, &["-n", c.ns(), "get", "service", "shop-canary"]).is_none());
}

#[test]
fn blue_green_previews_switches_at_once_and_switches_back_when_post_promotion_analysis_fails() {
    let c = Canary::new("bluegreen");
    let preview = "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop-preview\nspec:\n  selector: {app: shop}\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    c.s.commit_in("app", &[("preview.yaml", preview.to_string())], "preview service");
    let v1 = c.commit_shop("1.0");
    let app = c.create_app(json!([{"setWeight": 100}]));
    app.patch(&json!({"spec": {"strategy": {"canary": null, "blueGreen": {
        "workload": {"name": "shop"},
        "activeService": "shop",
        "previewService": "shop-preview",
        "scaleDownDelay": "10s",
        "postPromotionAnalysis": {"metrics": [{"name": "error-ratio", "prometheus": {"query": ERROR_QUERY},
            "interval": "2s", "count": 2, "successCondition": "result < 0.05"}]},
    }}}}));
    app.wait_synced(&v1, T);
    c.set_error_ratio(Some(0.01));
    let selector = |name: &str| {
        get_json(&c.s.cluster, &["-n", c.ns(), "get", "service", name]).expect("the Service")["spec"]["selector"].clone()
    };
    let wait_selector = |name: &str, want: Value| {
        wait_until(&format!("Service {name} to select {want}"), T, || {
            let got = selector(name);
            if got == want { Ok(()) } else { Err(got.to_string()) }
        });
    };
    let stable = json!({"app": "shop"});
    let new_pods = json!({"app": "shop-canary", "ferry.dev/variant": "canary"});

    // Preview first: the new version at full size behind the preview Service only.
    let v2 = c.commit_shop("2.0");
    app.ferry_sync();
    let a = c.wait_rollout(&app, "waiting for the switch", |r| phase(r) == "Paused" && r["step"] == 2);
    assert_eq!(a["status"]["rollout"]["strategy"], "blueGreen");
    c.wait_split((5, "1.0"), Some((5, "2.0")));
    wait_selector("shop-preview", new_pods.clone());
    assert_eq!(selector("shop"), stable, "the active Service switched before promote");
    let pods = c.deployment("shop-canary").unwrap()["spec"]["template"]["metadata"]["labels"].clone();
    assert_eq!(pods, new_pods);

    // Promote: the active Service switches in one update; the old version stays at full size
    // for scaleDownDelay, then the primary takes the new version and the Services return to Git.
    c.ferry("promote", &[]);
    wait_selector("shop", new_pods.clone());
    let a = c.wait_rollout(&app, "the scale-down delay", |r| r["step"] == 4);
    assert_eq!(a["status"]["rollout"]["analysis"]["phase"], "Successful");
    assert_eq!(
        image(&c.deployment("shop").unwrap()),
        "registry.example/shop:1.0",
        "scaled down before the delay"
    );
    assert_eq!(c.deployment("shop").unwrap()["spec"]["replicas"], 5);
    app.wait_synced(&v2, T);
    c.wait_split((5, "2.0"), None);
    wait_selector("shop", stable.clone());
    wait_selector("shop-preview", stable.clone());
    assert_eq!(phase(&app.json()["status"]["rollout"]), "Completed");

    // A failing post-promotion analysis switches the active Service back at once.
    c.set_error_ratio(Some(0.5));
    let v3 = c.commit_shop("3.0");
    app.ferry_sync();
    c.wait_rollout(&app, "waiting for the switch", |r| phase(r) == "Paused" && r["step"] == 2);
    c.ferry("promote", &[]);
    let a = app.wait_not_ready("RolloutAborted", T);
    let r = &a["status"]["rollout"];
    assert_eq!(r["abortedRevision"], main_revision(&v3), "{r}");
    assert!(r["message"].as_str().unwrap_or_default().contains("post-promotion analysis failed"), "{r}");
    wait_selector("shop", stable.clone());
    wait_selector("shop-preview", stable);
    c.wait_split((5, "2.0"), None);
}
