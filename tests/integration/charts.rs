//! The charts and files people already have (issue 21): Helm charts that read the cluster's
//! version and APIs, charts from Helm repositories and OCI registries, OCI artifacts of plain
//! manifests, chart dependencies, SOPS-encrypted secrets, and directories ferry cannot render.
//! Everything runs against the real control plane, real Git servers, the real helm, a real
//! registry and the real sops.

use serde_json::{Value, json};

use crate::support::{
    BasicAuth, ChartRepo, ChartRepoOptions, OciRegistry, Scenario, SopsFormat, T, TestChart, age_keygen,
    condition, http_get, metric, sops_encrypt_with, summary, wait_until,
};

/// `ferry diff --file` of `app` at `--revision revision`.
fn ferry_diff_file(s: &Scenario, app: &crate::support::AppBuilder, revision: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("application.json");
    std::fs::write(&file, app.to_string()).expect("write the Application");
    crate::support::ferry_diff(s, &["--file", &file.to_string_lossy(), "--revision", revision])
}

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
    let (_, stdout, stderr) = ferry_diff_file(&s, &s.application("caps").path("caps"), "main");
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

// ---------------------------------------------------------------------------------------------
// Charts from Helm repositories.

fn sha256_hex(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).expect("read the chart archive");
    ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The chart `podinfo` at `version`, whose ConfigMap says its version, published to `repo`;
/// returns the archive's path.
fn publish(repo: &ChartRepo, version: &str) -> std::path::PathBuf {
    let (_tmp, dir) = TestChart::new("podinfo", version).write_temp();
    repo.publish(&dir)
}

fn chart_app(s: &Scenario, name: &str, repo_url: &str, version: Option<&str>) -> crate::support::AppBuilder {
    let mut chart = json!({"repoURL": repo_url, "name": "podinfo"});
    if let Some(v) = version {
        chart["version"] = json!(v);
    }
    s.default_app(name).without_git().chart(chart)
}

#[test]
fn a_chart_from_a_helm_repository_by_version_and_range_and_new_versions_deploy() {
    let s = Scenario::new("chart-http");
    let repo = ChartRepo::start();
    publish(&repo, "1.0.0");
    let v110 = publish(&repo, "1.1.0");

    let app = s.create_app(chart_app(&s, "podinfo", &repo.url(), Some("1.0.0")));
    let status = app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    assert_eq!(s.cm_value("podinfo-podinfo", "version").as_deref(), Some("1.0.0"), "{}", summary(&status));

    // A range: the highest match, pinned by the archive's digest.
    app.patch(&json!({"spec": {"source": {"chart": {"version": ">=1.0.0 <2.0.0"}}}}));
    let status = app.wait_synced_prefix("podinfo@1.1.0@sha256:", T);
    assert_eq!(status["status"]["sync"]["revision"], format!("podinfo@1.1.0@sha256:{}", sha256_hex(&v110)));
    assert_eq!(s.cm_value("podinfo-podinfo", "version").as_deref(), Some("1.1.0"));

    // A new version in the index is a new deployment, counted with its lead time.
    let deployed_before = metric(&s.ferry, "ferry_lead_time_seconds_count");
    publish(&repo, "1.2.0");
    publish(&repo, "2.0.0");
    app.ferry_sync();
    app.wait_synced_prefix("podinfo@1.2.0@sha256:", T);
    assert_eq!(s.cm_value("podinfo-podinfo", "version").as_deref(), Some("1.2.0"));
    wait_until("the chart deployment to be counted with a lead time", T, || {
        let now = metric(&s.ferry, "ferry_lead_time_seconds_count");
        if now > deployed_before { Ok(()) } else { Err(format!("lead time count still {now}")) }
    });
    let history =
        s.kubectl_ok(&["-n", s.ns(), "get", "application", "podinfo", "-o", "jsonpath={.status.history}"]);
    assert!(history.contains("podinfo@1.2.0@sha256:"), "history: {history}");
    let events = app.events();
    assert!(events.iter().any(|e| e.message.contains("at podinfo@1.2.0@")), "events: {events:?}");
}

#[test]
fn one_index_download_serves_every_application_on_the_repository() {
    let s = Scenario::new("chart-shared");
    let repo = ChartRepo::start();
    publish(&repo, "1.0.0");
    let apps: Vec<_> = (0..4)
        .map(|i| {
            let name = format!("podinfo-{i}");
            s.create_app(
                chart_app(&s, &name, &repo.url(), None)
                    .destination(&format!("{}-{i}", s.ns()))
                    .create_namespace(true),
            )
        })
        .collect();
    for app in &apps {
        app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    }
    for i in 0..4 {
        s.delete_later(&["namespace", &format!("{}-{i}", s.ns())]);
    }
    let full: Vec<_> =
        repo.request_log().into_iter().filter(|r| r.path == "/index.yaml" && r.status == 200).collect();
    assert_eq!(full.len(), 1, "index.yaml downloaded whole more than once: {full:?}");
    let charts = repo.request_log().into_iter().filter(|r| r.path.ends_with(".tgz")).count();
    assert_eq!(charts, 1, "the chart archive was downloaded more than once");
    // A requested sync revalidates the index with a conditional request, answered 304.
    repo.reset_requests();
    apps[0].ferry_sync();
    wait_until("a conditional index request", T, || {
        let log = repo.request_log();
        match log.iter().find(|r| r.path == "/index.yaml") {
            Some(r) if r.status == 304 && r.if_none_match.is_some() => Ok(()),
            Some(r) => Err(format!("index requested unconditionally: {r:?}")),
            None => Err("no index request yet".into()),
        }
    });
}

#[test]
fn a_chart_through_https_with_a_ca_and_basic_auth() {
    let s = Scenario::new("chart-https");
    let repo = ChartRepo::start_with(ChartRepoOptions {
        basic_auth: Some(BasicAuth { username: "reader".into(), password: "s3cret-chart".into() }),
        tls: true,
    });
    publish(&repo, "1.0.0");
    let ca = std::fs::read_to_string(repo.ca_file().expect("a CA")).expect("read the CA");
    // First without the CA: the certificate is not trusted, and nothing is applied.
    s.kubectl_ok(&[
        "-n",
        s.ns(),
        "create",
        "secret",
        "generic",
        "chart-creds",
        "--from-literal=username=reader",
        "--from-literal=password=s3cret-chart",
    ]);
    let app = s.create_app(
        chart_app(&s, "podinfo", &repo.url(), Some("1.0.0"))
            .chart(json!({"repoURL": repo.url(), "name": "podinfo", "version": "1.0.0", "secretRef": {"name": "chart-creds"}})),
    );
    let status = app.wait_not_ready("FetchFailed", T);
    assert!(ready_message(&status).contains("certificate"), "{}", summary(&status));
    assert!(!serde_json::to_string(&status).unwrap().contains("s3cret-chart"));

    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "chart-creds", "namespace": s.ns()},
        "stringData": {"username": "reader", "password": "s3cret-chart", "ca.crt": ca},
    });
    let applied = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string());
    assert!(applied.success, "{}", applied.stderr);
    app.ferry_sync();
    app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    assert_eq!(s.cm_value("podinfo-podinfo", "version").as_deref(), Some("1.0.0"));
    assert!(repo.request_log().iter().filter(|r| r.path == "/index.yaml").all(|r| r.authorization));
    assert!(!s.ferry.logs().contains("s3cret-chart"), "the password reached ferry's log");
}

#[test]
fn a_chart_from_a_repository_with_values_files_from_git() {
    let s = Scenario::new("chart-values");
    let repo = ChartRepo::start();
    publish(&repo, "1.0.0");
    let sha = s.git.commit_files("main", &[("envs/prod/values.yaml", "greeting: from-git\n")], "prod values");
    let app = s.create_app(
        s.default_app("podinfo")
            .path("envs/prod")
            .chart(json!({"repoURL": repo.url(), "name": "podinfo", "version": "1.0.0"}))
            .helm(json!({"valuesFiles": ["values.yaml"]})),
    );
    let status = app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    let revision = status["status"]["sync"]["revision"].as_str().unwrap_or_default().to_string();
    assert!(revision.ends_with(&format!("+sha1:{sha}")), "{revision}");
    assert_eq!(s.cm_value("podinfo-podinfo", "greeting").as_deref(), Some("from-git"));

    // New values in Git are a new revision of the same chart.
    let sha2 = s.git.commit_files("main", &[("envs/prod/values.yaml", "greeting: changed\n")], "new values");
    app.ferry_sync();
    let status = app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    wait_until("the new values", T, || match s.cm_value("podinfo-podinfo", "greeting").as_deref() {
        Some("changed") => Ok(()),
        other => Err(format!("greeting {other:?}; {}", summary(&status))),
    });
    let revision = app.json()["status"]["sync"]["revision"].as_str().unwrap_or_default().to_string();
    assert!(revision.ends_with(&format!("+sha1:{sha2}")), "{revision}");
}

/// Each failure is a clear condition, and nothing is applied or pruned: the ConfigMap of the
/// last good chart stays.
#[test]
fn repository_failures_are_clear_and_prune_nothing() {
    let s = Scenario::with_ferry_args("chart-faults", &["--max-chart-index-bytes", "4Ki"]);
    let repo = ChartRepo::start();
    publish(&repo, "1.0.0");
    let app = s.create_app(chart_app(&s, "podinfo", &repo.url(), None));
    app.wait_synced_prefix("podinfo@1.0.0@sha256:", T);
    let kept = || s.cm_value("podinfo-podinfo", "version");

    // A bad digest: the archive of 1.1.0 is replaced after indexing.
    let v110 = publish(&repo, "1.1.0");
    let (_tmp, other) = TestChart::new("podinfo", "1.1.0").template("kind: Nope\n").write_temp();
    // Packaged over the indexed archive, and the index left as it was.
    assert_eq!(repo.package(&other), v110);
    app.ferry_sync();
    let status = app.wait_not_ready("FetchFailed", T);
    assert!(ready_message(&status).contains("does not match the index"), "{}", summary(&status));
    assert_eq!(kept().as_deref(), Some("1.0.0"));

    // Unreachable.
    repo.set_down(true);
    app.patch(&json!({"spec": {"source": {"chart": {"version": "1.0.0"}}}}));
    app.ferry_sync();
    let status = app.wait("unreachable", T, |a| {
        let m = ready_message(a);
        if m.contains("unreachable") || m.contains("did not answer") { Ok(a.clone()) } else { Err(m) }
    });
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "FetchFailed");
    assert_eq!(kept().as_deref(), Some("1.0.0"));
    repo.set_down(false);

    // An index over --max-chart-index-bytes.
    for i in 0..40 {
        publish(&repo, &format!("0.0.{i}"));
    }
    app.ferry_sync();
    let status = app.wait("the oversized index", T, |a| {
        let m = ready_message(a);
        if m.contains("larger than ferry's limit") { Ok(a.clone()) } else { Err(m) }
    });
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "FetchFailed");
    assert_eq!(kept().as_deref(), Some("1.0.0"));
}

// ---------------------------------------------------------------------------------------------
// OCI registries: charts pushed with the real helm, manifests pushed with the real oras.

/// A Secret with registry credentials (and the CA, when the registry has one).
fn registry_secret(s: &Scenario, name: &str, registry: &OciRegistry) {
    let auth = registry.auth().expect("a registry with auth");
    let mut data = json!({"username": auth.username, "password": auth.password});
    if let Some(ca) = registry.ca_file() {
        data["ca.crt"] = json!(std::fs::read_to_string(ca).expect("read the CA"));
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": s.ns()},
        "stringData": data,
    });
    let applied = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string());
    assert!(applied.success, "{}", applied.stderr);
}

#[test]
fn a_chart_from_an_oci_registry_with_auth() {
    let s = Scenario::new("chart-oci");
    let registry = OciRegistry::start_with_auth("pusher", "oci-s3cret");
    let (_a, v1) = TestChart::new("podinfo", "1.0.0").write_temp();
    let (_b, v2) = TestChart::new("podinfo", "1.1.0").write_temp();
    let repo = ChartRepo::start(); // only for `helm package`
    registry.helm_push(&repo.package(&v1), &registry.oci_url("charts"));
    let digest2 = registry.helm_push(&repo.package(&v2), &registry.oci_url("charts"));

    // Without credentials the registry refuses, and nothing is applied.
    let chart = json!({"repoURL": registry.oci_url("charts"), "name": "podinfo", "version": ">=1.0.0", "insecure": true});
    let app = s.create_app(s.default_app("podinfo").without_git().chart(chart.clone()));
    let status = app.wait_not_ready("FetchFailed", T);
    assert!(ready_message(&status).contains("credentials"), "{}", summary(&status));
    assert!(s.cm_value("podinfo-podinfo", "version").is_none());

    registry_secret(&s, "registry-creds", &registry);
    let mut with_secret = chart;
    with_secret["secretRef"] = json!({"name": "registry-creds"});
    app.patch(&json!({"spec": {"source": {"chart": with_secret}}}));
    let status = app.wait_synced_prefix("podinfo@1.1.0@sha256:", T);
    assert_eq!(status["status"]["sync"]["revision"], format!("podinfo@1.1.0@{digest2}"));
    assert_eq!(s.cm_value("podinfo-podinfo", "version").as_deref(), Some("1.1.0"));
    assert!(!s.ferry.logs().contains("oci-s3cret"), "the password reached ferry's log");
}

#[test]
fn an_oci_artifact_of_manifests_by_tag_then_by_digest() {
    let s = Scenario::new("oci-artifact");
    let registry = OciRegistry::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |color: &str| {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {color}\n"
        );
        std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
        std::fs::write(dir.path().join("deploy/settings.yaml"), cm).unwrap();
    };
    write("blue");
    let blue = registry.oras_push_manifests(dir.path(), "team/manifests:v1");
    write("green");
    let green = registry.oras_push_manifests(dir.path(), "team/manifests:v2");

    let oci = json!({"url": registry.oci_url("team/manifests"), "tag": "v1", "insecure": true});
    let app = s.create_app(s.default_app("manifests").without_git().path("deploy").oci(oci));
    let status = app.wait_synced_prefix("v1@sha256:", T);
    assert_eq!(status["status"]["sync"]["revision"], format!("v1@{blue}"));
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("blue"));

    // Pinned by digest: the tag moving does not move the Application.
    let by_digest =
        json!({"url": registry.oci_url("team/manifests"), "tag": null, "digest": green, "insecure": true});
    app.patch(&json!({"spec": {"source": {"oci": by_digest}}}));
    let status = app.wait_synced_prefix(&green, T);
    assert_eq!(status["status"]["sync"]["revision"], green.as_str());
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("green"));
    write("red");
    registry.oras_push_manifests(dir.path(), "team/manifests:v2");
    app.ferry_sync();
    app.wait_synced_prefix(&green, T);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("green"));

    // A digest that does not exist: FetchFailed, and the last good objects stay.
    let missing = format!("sha256:{}", "0".repeat(64));
    let bad = json!({"url": registry.oci_url("team/manifests"), "digest": missing, "insecure": true});
    app.patch(&json!({"spec": {"source": {"oci": bad}}}));
    let status = app.wait_not_ready("FetchFailed", T);
    assert!(ready_message(&status).contains("not found"), "{}", summary(&status));
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("green"));
}

// ---------------------------------------------------------------------------------------------
// SOPS.

#[test]
fn sops_encrypted_secrets_are_decrypted_and_the_plaintext_goes_nowhere_else() {
    let s = Scenario::new("sops");
    let (recipient, key) = age_keygen();
    let (_other, wrong_key) = age_keygen();
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: pl41ntext-db-pw\n";
    let config =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: endpoints\ndata:\n  token: pl41ntext-cm-token\n";
    let regex = ["--encrypted-regex", "^(data|stringData)$"];
    let files = [
        ("app/secret.yaml", sops_encrypt_with(secret, &recipient, SopsFormat::Yaml, &regex)),
        ("app/config.yaml", sops_encrypt_with(config, &recipient, SopsFormat::Yaml, &regex)),
    ];
    let sha =
        s.git.commit_files("main", &files.iter().map(|(p, t)| (*p, t.as_str())).collect::<Vec<_>>(), "sops");
    let key_secret = |k: &str| {
        let manifest = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sops-age", "namespace": s.ns()},
            "stringData": {"identity.agekey": k},
        });
        let applied = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
        assert!(applied.success, "{}", applied.stderr);
    };

    // The wrong key first: DecryptionFailed naming the file, nothing applied.
    key_secret(&wrong_key);
    let decryption = json!({"provider": "sops", "secretRef": {"name": "sops-age"}});
    let app = s.create_app(s.default_app("sops").decryption(decryption));
    let status = app.wait_not_ready("DecryptionFailed", T);
    let message = ready_message(&status);
    assert!(message.contains("app/config.yaml") || message.contains("app/secret.yaml"), "{message}");
    assert!(s.cm_value("endpoints", "token").is_none());

    key_secret(&key);
    app.ferry_sync();
    app.wait_synced(&sha, T);
    assert_eq!(s.cm_value("endpoints", "token").as_deref(), Some("pl41ntext-cm-token"));
    let db = s.get("secret", Some(s.ns()), "db").expect("the Secret");
    let password = db["data"]["password"].as_str().unwrap_or_default();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(password).unwrap_or_default();
    assert_eq!(decoded, b"pl41ntext-db-pw");

    // The plaintext is nowhere else: not in status or Events, the log, metrics, the cache, or
    // `ferry diff`.
    let app_json = serde_json::to_string(&app.json()).unwrap();
    let events = format!("{:?}", app.events());
    let metrics = http_get(&s.ferry.http_address(), "/metrics").body;
    let cached = grep_dir(s.ferry.cache_dir(), &["pl41ntext-db-pw", "pl41ntext-cm-token"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("application.json");
    let changed =
        s.default_app("sops").decryption(json!({"provider": "sops", "secretRef": {"name": "sops-age"}}));
    std::fs::write(&file, changed.to_string()).expect("write the Application");
    // A pull request changes the encrypted token: the diff says it changed, never to what.
    let changed_config = config.replace("pl41ntext-cm-token", "pl41ntext-new-token");
    let pr = sops_encrypt_with(&changed_config, &recipient, SopsFormat::Yaml, &regex);
    s.git.commit_files(
        "pr",
        &[("app/secret.yaml", files[0].1.as_str()), ("app/config.yaml", pr.as_str())],
        "pr",
    );
    let (_, out, err) = ferry_diff_file(&s, &changed, "pr");
    let diff = format!("{out}{err}");
    assert!(diff.contains("ConfigMap/endpoints") && diff.contains("<redacted (changed)>"), "{diff}");
    assert!(!diff.contains("pl41ntext-new-token"), "the new plaintext reached the diff: {diff}");
    for (what, text) in [
        ("status", &app_json),
        ("events", &events),
        ("log", &s.ferry.logs()),
        ("metrics", &metrics),
        ("diff", &diff),
    ] {
        for plain in ["pl41ntext-db-pw", "pl41ntext-cm-token"] {
            assert!(!text.contains(plain), "{plain} reached the {what}");
        }
    }
    assert!(cached.is_empty(), "plaintext in the cache directory: {cached:?}");
}

/// Files under `dir` that contain any of `needles`.
fn grep_dir(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes);
                if needles.iter().any(|n| text.contains(n)) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Chart dependencies.

/// A chart of its own name whose ConfigMap says which chart it is.
fn dependency_chart(name: &str, version: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let template = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  chart: {{{{ .Chart.Name }}}}\n  version: {{{{ .Chart.Version | quote }}}}\n"
    );
    TestChart::new(name, version).template(&template).write_temp()
}

#[test]
fn an_umbrella_chart_in_git_gets_its_dependencies_from_both_kinds_of_repository() {
    let s = Scenario::new("chart-deps");
    let repo = ChartRepo::start();
    let registry = OciRegistry::start();
    let (_a, web) = dependency_chart("web", "1.0.0");
    repo.publish(&web);
    let (_b, web2) = dependency_chart("web", "1.1.0");
    repo.publish(&web2);
    let (_c, db) = dependency_chart("db", "2.0.0");
    registry.helm_push(&repo.package(&db), &registry.oci_url("charts"));
    let chart = format!(
        "apiVersion: v2\nname: umbrella\nversion: 0.1.0\ndependencies:\n- name: web\n  version: \">=1.0.0 <2.0.0\"\n  repository: {}\n- name: db\n  version: 2.0.0\n  repository: {}\n",
        repo.url(),
        registry.oci_url("charts")
    );
    // Chart.lock pins web at 1.0.0 although 1.1.0 matches the range.
    let lock = format!(
        "dependencies:\n- name: web\n  repository: {}\n  version: 1.0.0\n- name: db\n  repository: {}\n  version: 2.0.0\ndigest: sha256:0000\ngenerated: \"2026-01-01T00:00:00Z\"\n",
        repo.url(),
        registry.oci_url("charts")
    );
    let own = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: umbrella\ndata:\n  a: b\n";
    let sha = s.git.commit_files(
        "main",
        &[
            ("umbrella/Chart.yaml", chart.as_str()),
            ("umbrella/Chart.lock", lock.as_str()),
            ("umbrella/templates/cm.yaml", own),
        ],
        "umbrella",
    );
    let app = s.create_app(
        s.default_app("umbrella").path("umbrella").helm(json!({"dependencies": {"insecure": true}})),
    );
    app.wait_synced(&sha, T);
    assert_eq!(s.cm_value("umbrella", "a").as_deref(), Some("b"));
    assert_eq!(s.cm_value("web", "version").as_deref(), Some("1.0.0"), "Chart.lock's version");
    assert_eq!(s.cm_value("db", "chart").as_deref(), Some("db"));

    // A dependency that cannot be fetched: RenderFailed naming it; nothing applied or pruned.
    let missing = chart.replace("version: 2.0.0", "version: 9.9.9");
    let lock = lock.replace("version: 2.0.0", "version: 9.9.9");
    s.git.commit_files(
        "main",
        &[("umbrella/Chart.yaml", missing.as_str()), ("umbrella/Chart.lock", lock.as_str())],
        "db 9.9.9",
    );
    app.ferry_sync();
    let status = app.wait_not_ready("RenderFailed", T);
    let message = ready_message(&status);
    assert!(message.contains("chart dependency db"), "{}", summary(&status));
    assert_eq!(s.cm_value("db", "chart").as_deref(), Some("db"), "the old dependency's objects were pruned");
}

/// A dependency's repository is a source like any other: a TenantPolicy that allows only the
/// Application's Git repository refuses a chart that would pull a dependency from elsewhere,
/// before anything is downloaded from it.
#[test]
fn a_tenant_policy_governs_the_repositories_of_chart_dependencies() {
    let mut s = Scenario::new("chart-deps-policy");
    let ns = s.ns().to_string();
    // This ferry reads the TenantPolicies of the test namespace.
    s.ferry.stop();
    s.ferry = crate::support::Ferry::start_with(&s.cluster, &ns, &["--policy-namespace", &ns]);
    let repo = ChartRepo::start();
    let (_a, web) = dependency_chart("web", "1.0.0");
    repo.publish(&web);
    let policy = json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": "git-only", "namespace": ns},
        "spec": {"applicationNamespaces": [ns], "sourceRepos": [s.git.url()]},
    });
    let applied = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &policy.to_string());
    assert!(applied.success, "{}", applied.stderr);
    let chart = format!(
        "apiVersion: v2\nname: umbrella\nversion: 0.1.0\ndependencies:\n- name: web\n  version: 1.0.0\n  repository: {}\n",
        repo.url()
    );
    s.git.commit_files("main", &[("umbrella/Chart.yaml", chart.as_str())], "umbrella");
    let app = s.create_app(s.default_app("umbrella").path("umbrella"));
    let status = app.wait_not_ready("SourceNotPermitted", T);
    assert!(ready_message(&status).contains(&repo.url()), "{}", summary(&status));
    assert_eq!(repo.requests("/index.yaml"), 0, "the repository was contacted");
}
