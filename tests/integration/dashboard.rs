//! The Grafana dashboard ferry ships (`charts/ferry/dashboards/ferry.json`), checked the way
//! Grafana would use it: every query of every panel (rows collapsed or not) and every variable
//! query is read from the JSON, its variables substituted, and evaluated by a real Prometheus.
//! A panel added to the JSON is covered without touching this file.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    FerryApp, Prometheus, Scenario, T, configmap, deployment, has_series, http_request, repo_root, wait_until,
};

const DASHBOARD: &str = "charts/ferry/dashboards/ferry.json";
/// The datasource every panel, target and variable must name: the dashboard's own variable.
const DATASOURCE: &str = "${datasource}";
/// Grafana's global variables the dashboard may use, as the tests substitute them. Prometheus
/// scrapes every second here, so 30 s windows hold plenty of samples.
const GLOBALS: &[(&str, &str)] = &[
    ("__rate_interval", "30s"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "10m"),
    ("__range_s", "600"),
    ("__range_ms", "600000"),
];

fn dashboard() -> Value {
    let path = repo_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, depth first, including the panels inside (collapsed) rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"].as_array().map(|l| l.iter().collect()).unwrap_or_default()
}

/// One PromQL expression of the dashboard and where it comes from.
#[derive(Debug)]
struct Query {
    /// e.g. `panel "Sync status" target A` or `variable namespace`.
    source: String,
    expr: String,
    /// For a `label_values(selector, label)` variable: the label whose values it lists.
    label: Option<String>,
}

/// Every query Grafana would send: each target's `expr` and each query variable's query
/// (`label_values(selector, label)` becomes the selector, whose series must carry the label).
fn queries(dash: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in all_panels(dash) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                source: format!(
                    "panel {} target {}",
                    panel["title"],
                    target["refId"].as_str().unwrap_or("?")
                ),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
                label: None,
            });
        }
    }
    for var in variables(dash).into_iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap_or("?");
        // Grafana accepts the query as a string or as {"query": "..."}.
        let text = var["query"].as_str().or_else(|| var["query"]["query"].as_str()).unwrap_or_default();
        let source = format!("variable {name}");
        match label_values(text) {
            Some((selector, label)) => {
                out.push(Query { source, expr: selector.to_string(), label: Some(label.to_string()) })
            }
            None => out.push(Query { source, expr: text.to_string(), label: None }),
        }
    }
    out
}

/// `label_values(selector, label)` -> (selector, label).
fn label_values(text: &str) -> Option<(&str, &str)> {
    let args = text.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = args.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// Replaces `$name` and `${name}` by their values; `Err` names a variable without one.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            (&braced[..end], end + 2)
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `$namespace`, `$cluster` (All, as Grafana's `.*`), `$app` and Grafana's globals.
fn variable_values<'a>(namespace: &'a str, app: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![("namespace", namespace), ("cluster", ".*"), ("app", app)];
    vars.extend_from_slice(GLOBALS);
    vars
}

/// What evaluating every query of the dashboard gave.
struct Evaluation {
    /// One line per query that failed: an error or, when series were wanted, none.
    failures: Vec<String>,
    /// Whether some failure is an error (a bad variable, a query Prometheus refuses): waiting
    /// will not fix those.
    errors: bool,
    /// One line per query: what it returned.
    report: Vec<String>,
}

/// Evaluates every query of the dashboard.
fn evaluate_all(
    prometheus: &Prometheus,
    dash: &Value,
    vars: &[(&str, &str)],
    want_series: bool,
) -> Evaluation {
    let mut failures = Vec::new();
    let mut errors = false;
    let mut report = Vec::new();
    for q in queries(dash) {
        let expr = match substitute(&q.expr, vars) {
            Ok(expr) => expr,
            Err(e) => {
                failures.push(format!("{}: {e}", q.source));
                errors = true;
                continue;
            }
        };
        let data = match prometheus.query(&expr) {
            Ok(data) => data,
            Err(e) => {
                failures.push(format!("{}: `{expr}` failed: {e}", q.source));
                errors = true;
                continue;
            }
        };
        let result = &data["result"];
        report.push(format!("{}: `{expr}` -> {}", q.source, brief(result)));
        if !want_series {
            continue;
        }
        if !has_series(&data) {
            failures.push(format!("{}: `{expr}` returned no series", q.source));
        } else if let Some(label) = &q.label {
            let values: BTreeSet<&str> = result
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["metric"][label.as_str()].as_str())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() {
                failures.push(format!("{}: `{expr}` has no series with a `{label}` label", q.source));
            }
        }
    }
    Evaluation { failures, errors, report }
}

/// A short rendering of a query result for the log: each series' labels and value.
fn brief(result: &Value) -> String {
    let Some(series) = result.as_array() else { return result.to_string() };
    let shown: Vec<String> = series
        .iter()
        .take(8)
        .map(|s| {
            let labels: Vec<String> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "job" | "instance"))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            format!("{{{}}} {}", labels.join(","), s["value"][1].as_str().unwrap_or("?"))
        })
        .collect();
    let more = series.len().saturating_sub(shown.len());
    let more = if more > 0 { format!(" (+{more} more)") } else { String::new() };
    format!("{} series: {}{more}", series.len(), shown.join("; "))
}

// ---------------------------------------------------------------------------------------------
// The JSON alone.

#[test]
fn the_dashboard_names_its_datasource_by_variable_and_every_panel_has_a_query() {
    let dash = dashboard();
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).unwrap();
    assert!(dash.get("__inputs").is_none(), "the dashboard must not need import inputs");
    assert!(!text.contains("${DS_"), "the dashboard must not use import-time datasource placeholders");

    // Every datasource reference, anywhere in the JSON, is the variable.
    fn datasources<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "datasource" {
                        out.push((path.clone(), child));
                    }
                    datasources(child, format!("{path}.{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    datasources(child, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut refs = Vec::new();
    datasources(&dash, String::new(), &mut refs);
    assert!(!refs.is_empty());
    let hard_coded: Vec<String> = refs
        .iter()
        .filter(|(_, ds)| ds["type"] != "prometheus" || ds["uid"] != DATASOURCE)
        .map(|(path, ds)| format!("{path}: {ds}"))
        .collect();
    assert!(hard_coded.is_empty(), "datasources not named by ${{datasource}}:\n{}", hard_coded.join("\n"));

    // The variables: a Prometheus datasource picker, then namespace, cluster and app from
    // ferry_app_info.
    let vars = variables(&dash);
    let var =
        |name: &str| *vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no variable {name}"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("namespace")["type"], "query");
    assert_eq!(var("namespace")["query"], "label_values(ferry_app_info, namespace)");
    assert_eq!(var("app")["type"], "query");
    assert_eq!(var("cluster")["query"], "label_values(ferry_app_info{namespace=~\"$namespace\"}, cluster)");
    assert_eq!(
        var("app")["query"],
        "label_values(ferry_app_info{namespace=~\"$namespace\",cluster=~\"$cluster\"}, name)"
    );

    // Every panel is a row or has a query; ids are unique; refIds are unique within a panel.
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in all_panels(&dash) {
        let title = &panel["title"];
        if !ids.insert(panel["id"].as_u64().unwrap_or(0)) {
            problems.push(format!("panel {title}: id {} is not unique", panel["id"]));
        }
        if panel["gridPos"]["w"].as_u64().is_none() || panel["gridPos"]["h"].as_u64().is_none() {
            problems.push(format!("panel {title}: no gridPos"));
        }
        if panel["type"] == "row" {
            if panel["collapsed"] == false && panel["panels"].as_array().is_some_and(|p| !p.is_empty()) {
                problems.push(format!("row {title}: an expanded row keeps its panels at the top level"));
            }
            continue;
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("panel {title}: target {} has no expr", t["refId"]));
            }
            if !refs.insert(t["refId"].as_str().unwrap_or_default().to_string()) {
                problems.push(format!("panel {title}: refId {} repeats", t["refId"]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Every query uses only known variables, and windows come from Grafana ($__rate_interval,
    // $__range), never a hard-coded duration.
    let vars = variable_values("ns", "app");
    let mut problems = Vec::new();
    for q in queries(&dash) {
        if let Err(e) = substitute(&q.expr, &vars) {
            problems.push(format!("{}: {e}", q.source));
        }
        let fixed_window =
            q.expr.match_indices('[').any(|(i, _)| q.expr[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
        if fixed_window {
            problems.push(format!("{}: hard-coded range window in `{}`", q.source, q.expr));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn grafana_variables_are_substituted_by_name() {
    let vars = variable_values("team-a", "web");
    assert_eq!(
        substitute("x{namespace=~\"$namespace\", name=~\"${app}\"}[$__range] * 1 / $__range_s", &vars)
            .unwrap(),
        "x{namespace=~\"team-a\", name=~\"web\"}[10m] * 1 / 600"
    );
    assert!(substitute("rate(x[$nope])", &vars).unwrap_err().contains("$nope"));
    assert_eq!(label_values("label_values(up{a=\"b,c\"}, job)"), Some(("up{a=\"b,c\"}", "job")));
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus without ferry: the harness works and every query is valid PromQL.

#[test]
fn every_dashboard_query_is_valid_promql_for_a_real_prometheus() {
    let prometheus = Prometheus::start_scraping_itself();
    assert_eq!(prometheus.wait_targets_up(Duration::from_secs(60)), 1);
    let up = prometheus.wait_for_series("up{job=\"prometheus\"} == 1", Duration::from_secs(60));
    assert_eq!(up.as_array().map(Vec::len), Some(1), "{up}");
    let err = prometheus.query("sum by (le (x)").expect_err("a parse error");
    assert!(err.contains("bad_data"), "{err}");

    // Without ferry most queries return nothing; none may be an error.
    let run = evaluate_all(&prometheus, &dashboard(), &variable_values("ns", "app"), false);
    assert!(run.failures.is_empty(), "dashboard queries Prometheus refuses:\n{}", run.failures.join("\n"));
    assert_eq!(run.report.len(), queries(&dashboard()).len());
}

// ---------------------------------------------------------------------------------------------
// A real ferry, scraped by a real Prometheus: every query returns series.

/// `deployment(...)` whose Pods never schedule: no kwok node has this label.
fn unschedulable(deployment: String) -> String {
    let pinned = deployment.replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector: {ferry.dev/test-pool: nowhere}\n      containers:",
    );
    assert_ne!(pinned, deployment, "the Deployment template changed shape");
    pinned
}

/// Waits until the Application's health is `status` at a revision of commit `sha`.
fn wait_health(app: &FerryApp, status: &str, sha: &str) -> Value {
    app.wait(&format!("health {status} at {}", &sha[..7]), T, |a| {
        let s = &a["status"];
        if !s["sync"]["revision"].as_str().unwrap_or_default().contains(sha) {
            return Err("not at the revision yet".into());
        }
        if s["health"]["status"] != status {
            return Err(format!("health is {}", s["health"]["status"]));
        }
        Ok(a.clone())
    })
}

#[test]
fn every_dashboard_query_returns_series_for_a_real_ferry() {
    // Pods that never schedule are Progressing; after 5 s ferry calls them Degraded.
    let s = Scenario::with_ferry_args("dash", &["--health-timeout-seconds", "5"]);
    let ns = s.ns().to_string();
    let prometheus = Prometheus::start(&[s.ferry.http_address()]);
    prometheus.wait_targets_up(T);

    let web = |name: &str| deployment(name, None, "registry.example/web:1.0", 1);
    let bad = web("broken-web").replace("replicas: 1", "replicas: three");
    s.commit_in("healthy", &[("config.yaml", configmap("healthy", None, &[("v", "1")]))], "healthy");
    s.commit_in("drift", &[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "drift");
    s.commit_in("restored", &[("web.yaml", unschedulable(web("restored-web")))], "restored, unschedulable");
    s.commit_in("stuck", &[("web.yaml", unschedulable(web("stuck-web")))], "stuck, unschedulable");
    let sha1 = s.commit_in("broken", &[("web.yaml", bad)], "broken: replicas is not a number");

    let app = |name: &'static str| s.create_app(s.default_app(name).path(name));
    let (healthy, drift, restored, stuck, broken) =
        (app("healthy"), app("drift"), app("restored"), app("stuck"), app("broken"));
    healthy.wait_synced(&sha1, T);
    drift.wait_synced(&sha1, T);
    wait_health(&restored, "Degraded", &sha1);
    wait_health(&stuck, "Degraded", &sha1);
    broken.wait_refused("ValidationFailed", &sha1, T);

    // Drift: a kubectl edit that ferry reverts (selfHeal is on).
    s.edit_settings_color("red");
    wait_until("ferry to put color back to blue", T, || match s.cm_value("settings", "color").as_deref() {
        Some("blue") => Ok(()),
        other => Err(format!("color is {other:?}")),
    });
    drift.wait_event("Normal", "DriftCorrected", &[&sha1[..7]], T);

    // A canary rollout with one analysis measurement (of Prometheus itself): the rollout panels.
    // Before the restore below, whose commit must stay the newest.
    let canary_v1 = s.commit_in("canary", &[("web.yaml", web("canary-web"))], "canary 1.0");
    let analysis = serde_json::json!({"metrics": [{"name": "always-fine",
        "prometheus": {"address": prometheus.url(), "query": "vector(0)"}, "successCondition": "result == 0"}]});
    let canary = s.create_app(
        s.application("canary")
            .path("canary")
            .interval("1m")
            .canary("canary-web", serde_json::json!([{"setWeight": 50}, {"analysis": analysis}])),
    );
    canary.wait_synced(&canary_v1, T);
    let v2 = deployment("canary-web", None, "registry.example/web:2.0", 1);
    let canary_v2 = s.commit_in("canary", &[("web.yaml", v2)], "canary 2.0");
    canary.ferry_sync();
    canary.wait_synced(&canary_v2, T);
    canary.wait("the rollout to complete", T, |a| {
        let r = &a["status"]["rollout"];
        if r["phase"] == "Completed" { Ok(()) } else { Err(format!("rollout {r}")) }
    });

    // Restore: the fix in Git turns `restored` Healthy (time to restore); `stuck` stays Degraded.
    let sha2 = s.commit_in("restored", &[("web.yaml", web("restored-web"))], "restored: schedulable");
    for a in [&healthy, &drift, &restored, &stuck, &broken] {
        a.ferry_sync();
    }
    restored.wait_synced(&sha2, T);
    healthy.wait_synced(&sha2, T);
    drift.wait_synced(&sha2, T);
    wait_health(&stuck, "Degraded", &sha2);
    broken.wait_refused("ValidationFailed", &sha2, T);

    // A webhook request without a configured secret is refused and counted.
    let refused =
        http_request(&s.ferry.http_address(), "POST", "/hooks/generic", &[], br#"{"repoURL": "x"}"#);
    assert_eq!(refused.status, 404, "{refused:?}");

    // Prometheus has scraped ferry after every event above.
    let app_series = |name: &str, rest: &str| format!("{{namespace=\"{ns}\", name=\"{name}\"{rest}}}");
    for query in [
        format!("ferry_app_health_status{} == 1", app_series("stuck", ", status=\"Degraded\"")),
        format!(
            "ferry_app_info{}",
            app_series("restored", &format!(", health_status=\"Healthy\", revision=~\".*{}.*\"", &sha2[..7]))
        ),
        format!("ferry_app_sync_status{} == 1", app_series("broken", ", status=\"OutOfSync\"")),
        format!("ferry_drift_corrections_total{} > 0", app_series("drift", "")),
        "ferry_time_to_restore_seconds_count > 0".to_string(),
        "ferry_lead_time_seconds_count > 0".to_string(),
        "ferry_errors_total > 0".to_string(),
        "ferry_webhook_requests_total > 0".to_string(),
        "ferry_rollout_duration_seconds_count > 0".to_string(),
        "ferry_analysis_measurements_total > 0".to_string(),
    ] {
        prometheus.wait_for_series(&query, T);
    }

    let dash = dashboard();
    let vars = variable_values(&ns, "drift");
    // Scrapes and rate windows settle within seconds; a query that stays empty fails the test.
    let started = Instant::now();
    let report = wait_until("every dashboard query to return series", Duration::from_secs(60), || {
        let run = evaluate_all(&prometheus, &dash, &vars, true);
        assert!(!run.errors, "dashboard queries failed:\n{}", run.failures.join("\n"));
        if run.failures.is_empty() { Ok(run.report) } else { Err(format!("\n{}", run.failures.join("\n"))) }
    });
    eprintln!(
        "{} dashboard queries returned series ({:?}):\n{}",
        report.len(),
        started.elapsed(),
        report.join("\n")
    );
}
