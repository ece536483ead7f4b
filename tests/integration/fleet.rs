//! Fleet rollouts (issue 23): an ApplicationSet whose clusters generator makes one Application
//! per `Cluster`, and whose strategy rolls each new commit out over them step by step, against
//! the real control plane and a real Git server. The PostSync smoke Jobs run for real (the Job
//! controller of kube-controller-manager, kwok completing their pods).
//!
//! Order is shown by state, never by timing: while the first step waits for a promote (or a
//! later one has failed), the Applications of the later steps still pin the old commit, or do
//! not exist yet.
//!
//! The main test's three Clusters are three real control planes: `staging-1` is the extra
//! cluster `west`, `prod-a` the extra cluster `east` (each reached with the kubeconfig
//! `scripts/remote-cluster-kubeconfig.sh` printed), and `prod-b` the shared control plane
//! itself, reached like the others through a Cluster object and its own kubeconfig (inline CA,
//! client certificate and key). The Applications act as a ServiceAccount, impersonated in each
//! cluster, whose RoleBinding there allows the namespace it deploys to
//! (`<test namespace>-<cluster>`). The other tests here use the shared control plane for every
//! Cluster.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
};

use serde_json::{Value, json};

use crate::support::{
    Cluster, Prometheus, Scenario, T, condition, configmap, ferry_cli, get_json, mode_of, remote_access,
    smoke_job, wait_until,
};

/// The ServiceAccount the main test's Applications act as, in every cluster.
const DEPLOYER: &str = "deployer";

/// The control plane behind each Cluster of the main test (see the module doc).
fn target(s: &Scenario, cluster: &str) -> Cluster {
    match cluster {
        "staging-1" => Cluster::extra("west").clone(),
        "prod-a" => Cluster::extra("east").clone(),
        _ => s.cluster.clone(),
    }
}

/// The kubeconfig ferry reaches `cluster` with.
fn kubeconfig_of(s: &Scenario, cluster: &str) -> String {
    match cluster {
        "staging-1" | "prod-a" => {
            let remote = target(s, cluster);
            remote_access(&remote, mode_of(&remote)).kubeconfig
        }
        _ => std::fs::read_to_string(&s.cluster.kubeconfig).expect("the control plane's kubeconfig"),
    }
}

/// For each Cluster: its destination namespace in its control plane, with the `admin` role
/// there for the deployer's user; here, the deployer, allowed to read the kubeconfig Secrets.
fn prepare_deployer(s: &Scenario) {
    let user = format!("system:serviceaccount:{}:{DEPLOYER}", s.ns());
    for (cluster, _) in CLUSTERS {
        let (remote, ns) = (target(s, cluster), format!("{}-{cluster}", s.ns()));
        let _ = remote.kubectl(&["create", "namespace", &ns]);
        remote.apply(&binding(&ns, "ClusterRole", "admin", &user));
        s.delete_later(&["namespace", &ns]);
    }
    let secrets: Vec<String> = CLUSTERS.iter().map(|(c, _)| format!("{c}-kubeconfig")).collect();
    s.cluster.apply(
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEPLOYER, "namespace": s.ns()}})
            .to_string(),
    );
    s.cluster.apply(
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "read-kubeconfigs", "namespace": s.ns()},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": secrets}],
        })
        .to_string(),
    );
    s.cluster.apply(&binding(s.ns(), "Role", "read-kubeconfigs", &user));
}

fn binding(ns: &str, kind: &str, role: &str, user: &str) -> String {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("{role}-for-deployer"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })
    .to_string()
}

const SET: &str = "fleet";
/// (name, env label), in the order the steps take them: staging, then half of prod (by name:
/// prod-a), then the rest (prod-b).
const CLUSTERS: [(&str, &str); 3] = [("staging-1", "staging"), ("prod-a", "prod"), ("prod-b", "prod")];

/// A `Cluster` of the test namespace named `name`, reached with `kubeconfig` (stored in the
/// Secret `<name>-kubeconfig` beside it), with `labels`.
pub fn create_cluster(s: &Scenario, name: &str, kubeconfig: &str, labels: &[(&str, &str)]) {
    let labels: serde_json::Map<String, Value> =
        labels.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-kubeconfig"), "namespace": s.ns()},
        "stringData": {"value": kubeconfig},
    });
    let cluster = json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": s.ns(), "labels": labels},
        "spec": {"kubeConfig": {"secretRef": {"name": format!("{name}-kubeconfig")}}},
    });
    s.cluster.apply(&secret.to_string());
    s.cluster.apply(&cluster.to_string());
}

/// Commits `version` of every cluster's directory (`fleet/<cluster>/`): a ConfigMap `settings`
/// and a PostSync smoke Job, which fails on `broken` (its smoke test cannot run there).
fn commit_version(s: &Scenario, version: &str, broken: Option<&str>) -> String {
    let files: Vec<(String, String)> = CLUSTERS
        .iter()
        .flat_map(|(cluster, _)| {
            [
                (
                    format!("fleet/{cluster}/settings.yaml"),
                    configmap("settings", None, &[("version", version)]),
                ),
                (format!("fleet/{cluster}/smoke.yaml"), smoke_job(broken != Some(cluster))),
            ]
        })
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    s.git.commit_files("main", &refs, version)
}

/// Staging (then a pause), half of prod, and the rest.
fn paused_after_staging() -> Value {
    json!([
        {"selector": {"matchLabels": {"env": "staging"}}, "pause": true},
        {"selector": {"matchLabels": {"env": "prod"}}, "maxClusters": "50%"}
    ])
}

/// The ApplicationSet: one Application per Cluster, rolled out in `steps`.
fn fleet_set(s: &Scenario, steps: Value) -> Value {
    json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": SET, "namespace": s.ns()},
        "spec": {
            "generators": [{"clusters": {"selector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}}],
            "template": {
                "metadata": {"name": "web-{{nameNormalized}}", "labels": {"env": "{{metadata.labels.env}}"}},
                "spec": {
                    "source": {"repoURL": s.git.url(), "ref": {"branch": "main"}, "path": "fleet/{{name}}"},
                    "destination": {"cluster": "{{name}}", "namespace": format!("{}-{{{{name}}}}", s.ns()), "createNamespace": true},
                    "syncPolicy": {"prune": true},
                    "interval": "10s"
                }
            },
            "strategy": {"steps": steps, "progressDeadline": "5m"}
        }
    })
}

fn get_set(s: &Scenario) -> Value {
    get_json(&s.cluster, &["-n", s.ns(), "get", "applicationsets.ferry.dev", SET])
        .expect("the ApplicationSet")
}

/// Waits until the set's `status.rollout` is at `commit` in `phase` at `step`; returns the set.
fn wait_rollout(s: &Scenario, commit: &str, phase: &str, step: u64) -> Value {
    wait_until(&format!("the fleet rollout of {} {phase} at step {step}", &commit[..7]), T, || {
        let set = get_set(s);
        let r = &set["status"]["rollout"];
        if r["revision"] == commit && r["phase"] == phase && r["step"] == step {
            Ok(set)
        } else {
            Err(format!("rollout: {r}; Ready: {}", condition(&set, "Ready").unwrap_or(&Value::Null)))
        }
    })
}

fn app_name(cluster: &str) -> String {
    format!("web-{cluster}")
}

/// The commit an Application pins, `None` when it does not exist.
fn pinned(s: &Scenario, cluster: &str) -> Option<String> {
    let app = s.app(&app_name(cluster)).get()?;
    Some(app["spec"]["source"]["ref"]["commit"].as_str().unwrap_or("<not pinned>").to_string())
}

/// Waits until the Application of `cluster` is Synced, Healthy and verified at `commit`.
fn wait_verified(s: &Scenario, cluster: &str, commit: &str) -> Value {
    let revision = format!("sha1:{commit}");
    s.app(&app_name(cluster)).wait(&format!("verified at {}", &commit[..7]), T, |a| {
        let st = &a["status"];
        let done = st["sync"]["revision"] == revision.as_str()
            && st["sync"]["status"] == "Synced"
            && st["health"]["status"] == "Healthy"
            && st["verifiedRevision"] == revision.as_str();
        done.then(|| a.clone()).ok_or_else(|| "not yet".to_string())
    })
}

/// `version` of the ConfigMap `settings` the Application of `cluster` deployed, read in the
/// control plane behind that Cluster.
fn deployed_version(s: &Scenario, cluster: &str) -> Option<String> {
    let ns = format!("{}-{cluster}", s.ns());
    get_json(&target(s, cluster), &["-n", &ns, "get", "configmap", "settings"])
        .map(|cm| cm["data"]["version"].as_str().unwrap_or("").to_string())
}

/// Events on the ApplicationSet: (type, reason, message).
fn set_events(s: &Scenario) -> Vec<(String, String, String)> {
    let selector = format!("involvedObject.name={SET},involvedObject.kind=ApplicationSet");
    let events = get_json(&s.cluster, &["-n", s.ns(), "get", "events", "--field-selector", &selector]);
    let items = events.map(|e| e["items"].as_array().cloned().unwrap_or_default()).unwrap_or_default();
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    items.iter().map(|e| (text(e, "type"), text(e, "reason"), text(e, "message"))).collect()
}

fn wait_set_event(s: &Scenario, type_: &str, reason: &str, words: &[&str]) -> String {
    wait_until(&format!("a {type_} Event {reason} on the set mentioning {words:?}"), T, || {
        let events = set_events(s);
        events
            .iter()
            .find(|(t, r, m)| t == type_ && r == reason && words.iter().all(|w| m.contains(w)))
            .map(|(_, _, m)| m.clone())
            .ok_or_else(|| format!("{events:?}"))
    })
}

fn promote(s: &Scenario) {
    let said = ferry_cli(&s.cluster, &["promote", "--set", SET, "-n", s.ns()]);
    assert!(said.contains("promote of the fleet rollout"), "{said}");
}

/// (status, reason, message) of the set's Ready condition.
fn ready(set: &Value) -> (String, String, String) {
    let c = condition(set, "Ready").cloned().unwrap_or(Value::Null);
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (text("status"), text("reason"), text("message"))
}

#[test]
fn a_commit_reaches_the_clusters_step_by_step_stops_at_a_failed_cluster_and_a_fix_completes() {
    let s = Scenario::new("fleet");
    for (name, env) in CLUSTERS {
        create_cluster(&s, name, &kubeconfig_of(&s, name), &[("env", env)]);
    }
    prepare_deployer(&s);
    let v1 = commit_version(&s, "v1", None);
    let mut set = fleet_set(&s, paused_after_staging());
    set["spec"]["template"]["spec"]["serviceAccountName"] = json!(DEPLOYER);
    set["spec"]["template"]["spec"]["destination"]["createNamespace"] = json!(false);
    s.cluster.apply(&set.to_string());

    // v1 reaches staging first; the set pauses after it, and prod has no Application yet.
    let set = wait_rollout(&s, &v1, "Paused", 0);
    assert_eq!(set["status"]["rollout"]["clusters"], json!([["staging-1"], ["prod-a"], ["prod-b"]]));
    let (status, reason, message) = ready(&set);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "RolloutPaused"), "{message}");
    assert!(message.contains("run ferry promote --set fleet to go on"), "{message}");
    wait_verified(&s, "staging-1", &v1);
    assert_eq!(pinned(&s, "staging-1").as_deref(), Some(v1.as_str()));
    assert_eq!((pinned(&s, "prod-a"), pinned(&s, "prod-b")), (None, None), "created before their step");
    assert_eq!(deployed_version(&s, "staging-1").as_deref(), Some("v1"));
    let listed = s.cluster.kubectl_ok(&["-n", s.ns(), "get", "applicationsets.ferry.dev", SET]);
    assert!(listed.contains("ROLLOUT") && listed.contains("Paused"), "{listed}");

    promote(&s);
    let set = wait_rollout(&s, &v1, "Completed", 3);
    assert_eq!(ready(&set).0, "True", "{:?}", ready(&set));
    for (cluster, _) in CLUSTERS {
        wait_verified(&s, cluster, &v1);
        assert_eq!(deployed_version(&s, cluster).as_deref(), Some("v1"), "{cluster}");
    }
    wait_set_event(&s, "Normal", "FleetRolloutCompleted", &[&v1[..7], "3 clusters"]);

    // v2 breaks prod-a's smoke test. It reaches staging, pauses, and prod still runs v1.
    let v2 = commit_version(&s, "v2", Some("prod-a"));
    wait_rollout(&s, &v2, "Paused", 0);
    wait_verified(&s, "staging-1", &v2);
    assert_eq!((pinned(&s, "prod-a"), pinned(&s, "prod-b")), (Some(v1.clone()), Some(v1.clone())));

    // Promoted, it reaches prod-a, whose PostSync Job fails: the rollout stops there.
    promote(&s);
    let set = wait_rollout(&s, &v2, "Failed", 1);
    let rollout = &set["status"]["rollout"];
    assert_eq!(rollout["failedCluster"], "prod-a", "{rollout}");
    let message = rollout["message"].as_str().unwrap_or_default();
    assert!(message.contains("web-prod-a") && message.contains("VerificationFailed"), "{message}");
    assert_eq!(ready(&set).1, "FleetRolloutFailed", "{:?}", ready(&set));
    let said = wait_set_event(&s, "Warning", "FleetRolloutFailed", &[&v2[..7], "prod-a"]);
    assert!(said.contains("later steps keep their commit"), "{said}");
    assert_eq!(pinned(&s, "prod-a").as_deref(), Some(v2.as_str()));
    assert_eq!(pinned(&s, "prod-b").as_deref(), Some(v1.as_str()), "the later step keeps v1");
    assert_eq!(deployed_version(&s, "prod-b").as_deref(), Some("v1"));
    let prod_b = s.app(&app_name("prod-b")).json();
    assert_eq!(prod_b["status"]["sync"]["revision"], format!("sha1:{v1}"), "{}", prod_b["status"]);

    // v3 fixes it: the rollout starts over from staging and completes; prod-b skipped v2.
    let v3 = commit_version(&s, "v3", None);
    wait_rollout(&s, &v3, "Paused", 0);
    assert_eq!(pinned(&s, "prod-b").as_deref(), Some(v1.as_str()));
    promote(&s);
    wait_rollout(&s, &v3, "Completed", 3);
    for (cluster, _) in CLUSTERS {
        wait_verified(&s, cluster, &v3);
        assert_eq!(deployed_version(&s, cluster).as_deref(), Some("v3"), "{cluster}");
    }
    let history = s.app(&app_name("prod-b")).json()["status"]["history"].to_string();
    assert!(!history.contains(&v2), "prod-b ran v2: {history}");
}

#[test]
fn a_strategy_whose_source_depends_on_parameters_is_refused_and_nothing_is_created() {
    let s = Scenario::new("fleet-bad");
    let kubeconfig = std::fs::read_to_string(&s.cluster.kubeconfig).expect("the control plane's kubeconfig");
    create_cluster(&s, "staging-1", &kubeconfig, &[("env", "staging"), ("branch", "main")]);
    let mut set = fleet_set(&s, paused_after_staging());
    set["spec"]["template"]["spec"]["source"]["ref"] = json!({"branch": "{{metadata.labels.branch}}"});
    s.cluster.apply(&set.to_string());
    let set = wait_until("the strategy refused", T, || {
        let set = get_set(&s);
        if ready(&set).1 == "InvalidStrategy" { Ok(set) } else { Err(format!("{:?}", ready(&set))) }
    });
    let (_, _, message) = ready(&set);
    assert!(message.contains("source.ref must not depend on generator parameters"), "{message}");
    assert!(s.app("web-staging-1").get().is_none(), "nothing is created while the commit is unknown");
}

/// An HTTP server of one gauge, `fleet_errors{cluster=...}`, with fixed values per cluster.
fn start_exporter(errors: &[(&str, u32)]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
    let addr = listener.local_addr().expect("exporter address").to_string();
    let mut body = String::from("# TYPE fleet_errors gauge\n");
    for (cluster, n) in errors {
        body.push_str(&format!("fleet_errors{{cluster=\"{cluster}\"}} {n}\n"));
    }
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // Read the request head; the answer does not depend on it.
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn each_steps_analysis_measures_its_own_clusters_and_a_failed_one_stops_the_rollout() {
    // prod-b errs: the analysis of the prod step (both prod clusters) fails, staging's passes.
    let exporter = start_exporter(&[("staging-1", 0), ("prod-a", 0), ("prod-b", 9)]);
    let prometheus = Prometheus::start(std::slice::from_ref(&exporter));
    let s = Scenario::with_ferry_args("fleet-analysis", &["--prometheus-url", &prometheus.url()]);
    wait_until("Prometheus to scrape the exporter", T, || {
        let data = prometheus.query("sum(fleet_errors)")?;
        let seen = data["result"][0]["value"][1].as_str() == Some("9");
        if seen { Ok(()) } else { Err(format!("Prometheus answers {data}")) }
    });
    let kubeconfig = std::fs::read_to_string(&s.cluster.kubeconfig).expect("the control plane's kubeconfig");
    for (name, env) in CLUSTERS {
        create_cluster(&s, name, &kubeconfig, &[("env", env)]);
        s.delete_later(&["namespace", &format!("{}-{name}", s.ns())]);
    }
    let v1 = commit_version(&s, "v1", None);
    let analysis = json!({"metrics": [{
        "name": "errors",
        "prometheus": {"query": "sum(fleet_errors{cluster=~\"{{clusters}}\"})"},
        "successCondition": "result < 1",
        "failureCondition": "result > 5"
    }]});
    let steps = json!([
        {"selector": {"matchLabels": {"env": "staging"}}, "analysis": analysis},
        {"selector": {"matchLabels": {"env": "prod"}}, "analysis": analysis}
    ]);
    s.cluster.apply(&fleet_set(&s, steps).to_string());

    let set = wait_rollout(&s, &v1, "Failed", 1);
    let rollout = &set["status"]["rollout"];
    assert_eq!(rollout["clusters"], json!([["staging-1"], ["prod-a", "prod-b"]]), "{rollout}");
    assert!(rollout["failedCluster"].is_null(), "an analysis names no single cluster: {rollout}");
    let message = rollout["message"].as_str().unwrap_or_default();
    assert!(message.contains("analysis Failed (errors: 1 failed, last 9)"), "{message}");
    let run = &rollout["analysis"];
    assert_eq!((run["step"].as_u64(), run["phase"].as_str()), (Some(1), Some("Failed")), "{run}");
    // Staging's analysis measured staging-1 alone (0 errors) and let the rollout go on.
    wait_verified(&s, "staging-1", &v1);
    wait_set_event(&s, "Normal", "FleetRolloutStep", &["step 2/2 (prod-a, prod-b)", &v1[..7]]);
    wait_set_event(&s, "Warning", "FleetRolloutFailed", &["analysis Failed"]);
    assert_eq!(ready(&set).1, "FleetRolloutFailed", "{:?}", ready(&set));
}
