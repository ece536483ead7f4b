//! ferry's own metrics (issue 6), read from a running `ferry run`'s `/metrics` the way Prometheus
//! would, and its logs in JSON. The Prometheus server and the dashboard are in `dashboard.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, T, TestNamespace, http_get, release_applications,
    wait_until,
};

/// `GET /metrics` from ferry's HTTP server.
fn scrape(ferry: &Ferry) -> String {
    let answer = http_get(&ferry.http_address(), "/metrics");
    assert_eq!(answer.status, 200, "/metrics answered {answer:?}");
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    answer.body
}

/// The value of the sample whose name and labels start as `series` does (e.g.
/// `ferry_app_sync_status{namespace="a",name="b",status="Synced"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// A namespace, a repo with one ConfigMap under `app/`, and a ferry for it.
struct Fleet {
    ferry: Ferry,
    git: GitServer,
    cluster: Cluster,
    ns: TestNamespace,
}

impl Fleet {
    fn new(prefix: &str, ferry_args: &[&str]) -> Fleet {
        let cluster = Cluster::shared().clone();
        cluster.install_crds();
        let ns = cluster.namespace(prefix);
        let git = GitServer::start();
        let ferry = Ferry::start_with(&cluster, &ns.name, ferry_args);
        Fleet { ferry, git, cluster, ns }
    }

    fn configmap(&self, name: &str, value: &str) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {}\ndata:\n  color: {value}\n",
            self.ns.name
        )
    }

    fn create_app(&self, name: &str) -> FerryApp {
        AppBuilder::new(name)
            .namespace(&self.ns.name)
            .repo(&self.git.url())
            .branch("main")
            .path("app")
            .interval("1h")
            .create(&self.cluster)
    }

    fn series(&self, metric: &str, name: &str, rest: &str) -> String {
        let ns = &self.ns.name;
        if rest.is_empty() {
            format!(r#"{metric}{{namespace="{ns}",name="{name}"}}"#)
        } else {
            format!(r#"{metric}{{namespace="{ns}",name="{name}",{rest}}}"#)
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.ferry.stop();
        release_applications(&self.cluster, &self.ns.name);
    }
}

#[test]
fn state_gauges_are_one_hot_and_a_deleted_applications_series_disappear() {
    let f = Fleet::new("metrics-state", &[]);
    let sha = f.git.commit_files("main", &[("app/cm.yaml", &f.configmap("settings", "blue"))], "one map");
    let app = f.create_app("web");
    app.wait_synced(&sha, T);

    let short = format!("main@{}", &sha[..7]);
    let text = wait_until("the scrape to show web Synced and Healthy", T, || {
        let text = scrape(&f.ferry);
        let synced = f.series("ferry_app_sync_status", "web", r#"status="Synced""#);
        let healthy = f.series("ferry_app_health_status", "web", r#"status="Healthy""#);
        match (sample(&text, &synced), sample(&text, &healthy)) {
            (Some(1.0), Some(1.0)) => Ok(text),
            other => Err(format!("Synced/Healthy samples: {other:?}")),
        }
    });
    for (status, want) in [("Synced", 1.0), ("OutOfSync", 0.0), ("Unknown", 0.0)] {
        let s = f.series("ferry_app_sync_status", "web", &format!(r#"status="{status}""#));
        assert_eq!(sample(&text, &s), Some(want), "{s} in\n{text}");
    }
    for (status, want) in
        [("Healthy", 1.0), ("Progressing", 0.0), ("Degraded", 0.0), ("Suspended", 0.0), ("Missing", 0.0)]
    {
        let s = f.series("ferry_app_health_status", "web", &format!(r#"status="{status}""#));
        assert_eq!(sample(&text, &s), Some(want), "{s} in\n{text}");
    }
    let info = format!(
        r#"ferry_app_info{{namespace="{}",name="web",repo="{}",path="app",revision="{short}",sync_status="Synced",health_status="Healthy",suspended="false",cluster="in-cluster"}}"#,
        f.ns.name,
        f.git.url()
    );
    assert_eq!(sample(&text, &info), Some(1.0), "{info} in\n{text}");
    let ready = f.series("ferry_app_condition", "web", r#"type="Ready",status="True""#);
    assert_eq!(sample(&text, &ready), Some(1.0), "{ready} in\n{text}");
    let synced = f.series("ferry_sync_total", "web", r#"result="succeeded""#);
    assert_eq!(sample(&text, &synced), Some(1.0), "one sync applied the map: {synced} in\n{text}");
    assert!(sample(&text, r#"ferry_reconcile_total{result="success"}"#).is_some_and(|v| v >= 1.0), "{text}");
    assert!(sample(&text, r#"ferry_git_fetch_total{result="success"}"#).is_some_and(|v| v >= 1.0), "{text}");
    assert!(
        sample(&text, r#"ferry_api_requests_total{verb="patch",result="2xx",cluster="in-cluster"}"#)
            .is_some_and(|v| v >= 1.0),
        "status and apply patches are counted: {text}"
    );
    assert!(
        text.contains(r#"ferry_reconcile_duration_seconds_bucket{le="0.005",stage="fetch"}"#)
            || text.contains(r#"ferry_reconcile_duration_seconds_bucket{stage="fetch",le="0.005"}"#),
        "{text}"
    );

    f.cluster.kubectl_ok(&["-n", &f.ns.name, "delete", "applications.ferry.dev", "web", "--wait=true"]);
    let needle = r#"name="web""#;
    wait_until("every series of the deleted Application to disappear", T, || {
        let text = scrape(&f.ferry);
        let left: Vec<&str> = text.lines().filter(|l| l.contains(needle) && l.contains(&f.ns.name)).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("still exported:\n{}", left.join("\n"))) }
    });
}

#[test]
fn lead_time_runs_from_the_commits_own_time_and_drift_corrections_are_counted() {
    let f = Fleet::new("metrics-lead", &[]);
    let two_hours_ago =
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64 - 7200;
    let sha = f.git.commit_files_at(
        "main",
        &[("app/cm.yaml", &f.configmap("settings", "blue"))],
        "made two hours ago, pushed now",
        two_hours_ago,
    );
    let app = f.create_app("shop");
    app.wait_synced(&sha, T);

    let text = wait_until("the deployment to be counted", T, || {
        let text = scrape(&f.ferry);
        let ok = f.series("ferry_deployments_total", "shop", r#"result="succeeded""#);
        if sample(&text, &ok) == Some(1.0) { Ok(text) } else { Err(format!("{ok} not 1")) }
    });
    let count = sample(&text, "ferry_lead_time_seconds_count").expect("lead time count");
    let sum = sample(&text, "ferry_lead_time_seconds_sum").expect("lead time sum");
    assert_eq!(count, 1.0, "one deployment in this ferry: {text}");
    // From the commit's committer time, not from the push or from when ferry saw it.
    assert!((7200.0..7200.0 + 600.0).contains(&sum), "lead time {sum}s, expected about 7200s");
    let failed = f.series("ferry_deployments_total", "shop", r#"result="failed""#);
    assert_eq!(sample(&text, &failed), Some(0.0), "{text}");
    let last = f.series("ferry_last_deployment_timestamp_seconds", "shop", "");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(
        sample(&text, &last).is_some_and(|t| (now - 600.0..=now + 1.0).contains(&t)),
        "{last} in\n{text}"
    );

    // Drift: a person edits the map; ferry reverts it and counts one correction, no deployment.
    let patch = r#"{"data":{"color":"red"}}"#;
    f.cluster.kubectl_ok(&["-n", &f.ns.name, "patch", "configmap", "settings", "--type=merge", "-p", patch]);
    let corrections = f.series("ferry_drift_corrections_total", "shop", "");
    let text = wait_until("the drift correction to be counted", T, || {
        let text = scrape(&f.ferry);
        if sample(&text, &corrections) == Some(1.0) { Ok(text) } else { Err(format!("{corrections} not 1")) }
    });
    let ok = f.series("ferry_deployments_total", "shop", r#"result="succeeded""#);
    assert_eq!(sample(&text, &ok), Some(1.0), "a drift correction is not a deployment: {text}");
    assert_eq!(sample(&text, "ferry_lead_time_seconds_count"), Some(1.0), "{text}");
}

#[test]
fn json_logs_carry_the_application_and_revision_on_every_reconcile_line() {
    let f = Fleet::new("metrics-logs", &["--log-format", "json"]);
    let sha = f.git.commit_files("main", &[("app/cm.yaml", &f.configmap("settings", "blue"))], "one map");
    let mark = f.ferry.log_len();
    let app = f.create_app("logs");
    app.wait_synced(&sha, T);

    let short = format!("main@{}", &sha[..7]);
    let app_name = format!("{}/logs", f.ns.name);
    // Logged before the status write, but read by another thread: wait for it.
    f.ferry.wait_for_log("the `synced` line", mark, T, |l| l.contains(r#""message":"synced""#));
    let lines: Vec<Value> = f
        .ferry
        .lines_since(mark)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let in_reconcile: Vec<&Value> = lines.iter().filter(|l| l["span"]["name"] == "reconcile").collect();
    let synced = in_reconcile
        .iter()
        .find(|l| l["message"] == "synced")
        .unwrap_or_else(|| panic!("no `synced` line inside a reconcile span:\n{lines:#?}"));
    assert_eq!(synced["span"]["app"], app_name.as_str(), "{synced}");
    assert_eq!(synced["span"]["revision"], short.as_str(), "{synced}");
    for line in &in_reconcile {
        assert_eq!(line["span"]["app"], app_name.as_str(), "{line}");
        // The controller logs only after the fetch resolved the revision (the Git cache's own
        // lines may come before).
        if line["target"].as_str().is_some_and(|t| t.starts_with("ferry::controller")) {
            assert!(line["span"]["revision"].is_string(), "{line}");
        }
    }
}
