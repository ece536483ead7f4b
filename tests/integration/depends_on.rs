//! `spec.dependsOn` end to end (issue 22): an Application waits, Reconciling with reason
//! `DependencyNotReady` and nothing applied, until the Applications it depends on are Ready at
//! their latest revision; it is woken by the Application watch the moment they are (not by its
//! own interval); cycles are reported on every Application in them; another namespace is read
//! only as `--promotion-namespaces` allows.
//!
//! A dependency in another namespace needs a ferry that watches every namespace. On the shared
//! cluster that ferry keeps to this test's Applications by sharding: among 2^20 shards it owns
//! one, and the test names its Applications so that they hash to it (the chance that another
//! test's Application lands there too is about one in a million per Application).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, Scenario, T, condition, configmap, get_json,
    release_applications, summary, wait_until,
};

/// Well under the 2-minute requeue of a waiting Application and its 1h interval: an Application
/// Ready within this after its dependency was fixed was woken by the watch.
const WOKEN: Duration = Duration::from_secs(60);

const SHARDS: u32 = 1 << 20;

/// (status, reason, message) of the condition `type_`.
fn cond(app: &Value, type_: &str) -> (String, String, String) {
    let c = condition(app, type_).unwrap_or(&Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// Waits until `app` has condition `type_` True with `reason` and a message containing every one
/// of `words`, for its current generation; returns the message.
fn wait_condition(app: &FerryApp, type_: &str, reason: &str, words: &[&str]) -> String {
    app.wait(&format!("{type_}=True {reason} mentioning {words:?}"), T, |a| {
        let (status, why, message) = cond(a, type_);
        let current = a["status"]["observedGeneration"] == a["metadata"]["generation"];
        if status == "True" && why == reason && current && words.iter().all(|w| message.contains(w)) {
            Ok(message)
        } else {
            Err(format!("{type_} is {status}/{why}: {message}"))
        }
    })
}

/// The first `prefix-N` whose `namespace/prefix-N` hashes to `shard`.
fn name_in_shard(namespace: &str, prefix: &str, shard: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| ferry::controller::shard::shard_of(namespace, n, SHARDS) == shard)
        .expect("some name hashes to every shard")
}

/// An Application on `path` of main in `git`, checked every hour: only a wake-up brings an
/// early reconcile.
fn hourly(git: &GitServer, namespace: &str, name: &str, path: &str) -> AppBuilder {
    AppBuilder::new(name).namespace(namespace).repo(&git.url()).branch("main").path(path).interval("1h")
}

#[test]
fn a_dependant_waits_for_its_dependency_in_another_namespace_and_syncs_the_moment_it_is_ready() {
    let cluster = Cluster::shared().clone();
    cluster.install_crds();
    let (ns_a, ns_b, ns_c) =
        (cluster.namespace("dep-a"), cluster.namespace("dep-b"), cluster.namespace("dep-c"));
    let (a_ns, b_ns) = (ns_a.name.as_str(), ns_b.name.as_str());
    // Shard 0 also runs the ApplicationSet controller: never ours.
    let (shard, web) = (1..)
        .map(|i| format!("web-{i}"))
        .map(|n| (ferry::controller::shard::shard_of(a_ns, &n, SHARDS), n))
        .find(|(s, _)| *s != 0)
        .expect("a name off shard 0");
    let db = name_in_shard(b_ns, "db", shard);
    let api = name_in_shard(a_ns, "api", shard);
    let (x, y) = (name_in_shard(a_ns, "x", shard), name_in_shard(b_ns, "y", shard));

    let git = GitServer::start();
    let sha = git.commit_files(
        "main",
        &[
            ("web/settings.yaml", &configmap("web-settings", None, &[("tier", "web")])),
            ("db/settings.yaml", &configmap("db-settings", None, &[("tier", "db")])),
        ],
        "web and db",
    );
    let args = [
        format!("--shard-count={SHARDS}"),
        format!("--shard-index={shard}"),
        format!("--promotion-namespaces={b_ns},{a_ns}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ferry = Ferry::start_all_namespaces(&cluster, a_ns, &args);

    // db is broken (its path is not in the repository): web waits for it and applies nothing.
    let db_app = hourly(&git, b_ns, &db, "not-there").create(&cluster);
    let dependency = json!([{"name": db, "namespace": b_ns}]);
    let web_app = hourly(&git, a_ns, &web, "web").depends_on(dependency).create(&cluster);
    db_app.wait_not_ready("RenderFailed", T);
    let db_ref = format!("{b_ns}/{db}");
    let waiting = wait_condition(&web_app, "Reconciling", "DependencyNotReady", &[&db_ref, "is not Ready"]);
    assert!(waiting.contains("RenderFailed"), "says why {db_ref} is not Ready: {waiting}");
    let w = web_app.json();
    assert_eq!(cond(&w, "Ready").0, "False", "{}", summary(&w));
    assert!(
        w["status"]["sync"].is_null() && w["status"]["lastAttemptedRevision"].is_null(),
        "{}",
        summary(&w)
    );
    assert!(get_json(&cluster, &["-n", a_ns, "get", "configmap", "web-settings"]).is_none());
    web_app.wait_event("Normal", "DependencyNotReady", &[&db_ref], T);

    // Fixed: db syncs, and web follows at once, long before its interval or its requeue.
    let fixed = Instant::now();
    db_app.patch(&json!({"spec": {"source": {"path": "db"}}}));
    db_app.wait_synced(&sha, T);
    web_app.wait_synced(&sha, WOKEN.saturating_sub(fixed.elapsed()).max(Duration::from_secs(1)));
    assert!(get_json(&cluster, &["-n", a_ns, "get", "configmap", "web-settings"]).is_some());

    // Another namespace the flags do not open is refused, naming the field and the flag.
    let c_ref = format!("{}/db", ns_c.name);
    let refused = hourly(&git, a_ns, &api, "web").depends_on(json!([{"name": "db", "namespace": ns_c.name}]));
    let api_app = refused.create(&cluster);
    let message = wait_condition(&api_app, "Stalled", "CrossNamespaceRefNotPermitted", &[&c_ref]);
    assert!(message.starts_with(&format!("spec.dependsOn names Application {c_ref} in another namespace")));
    assert!(message.contains(&format!("--promotion-namespaces={}", ns_c.name)), "{message}");

    // A cycle across the two namespaces is reported on both.
    let x_app = hourly(&git, a_ns, &x, "web").depends_on(json!([{"name": y, "namespace": b_ns}]));
    let x_app = x_app.create(&cluster);
    let y_app = hourly(&git, b_ns, &y, "db").depends_on(json!([{"name": x, "namespace": a_ns}]));
    let y_app = y_app.create(&cluster);
    let (x_ref, y_ref) = (format!("{a_ns}/{x}"), format!("{b_ns}/{y}"));
    let cycle = |from: &str, to: &str| format!("spec.dependsOn forms a cycle: {from} -> {to} -> {from}");
    wait_condition(&x_app, "Stalled", "DependencyCycle", &[&cycle(&x_ref, &y_ref)]);
    wait_condition(&y_app, "Stalled", "DependencyCycle", &[&cycle(&y_ref, &x_ref)]);

    // Deleting a dependency is not blocked; its dependant keeps what it synced and waits.
    cluster.kubectl_ok(&["-n", b_ns, "delete", "applications.ferry.dev", &db, "--wait=false"]);
    wait_until(&format!("Application {db_ref} deleted"), T, || match db_app.get() {
        None => Ok(()),
        Some(a) => Err(summary(&a)),
    });
    wait_condition(&web_app, "Reconciling", "DependencyNotReady", &[&db_ref, "does not exist"]);
    let w = web_app.json();
    assert_eq!(w["status"]["sync"]["status"], "Synced", "the sync state stays: {}", summary(&w));
    assert!(get_json(&cluster, &["-n", a_ns, "get", "configmap", "web-settings"]).is_some());

    drop(ferry);
    for ns in [&ns_a, &ns_b, &ns_c] {
        release_applications(&cluster, &ns.name);
    }
}

#[test]
fn a_cycle_is_reported_on_every_application_in_it_until_a_spec_breaks_it() {
    let s = Scenario::new("depcycle");
    let ns = s.ns().to_string();
    s.commit(&[("settings.yaml", configmap("settings", None, &[("color", "red")]))], "a's settings");
    let sha = s.commit_in("other", &[("other.yaml", configmap("other", None, &[("color", "blue")]))], "b's");
    let a = s.create_app(s.default_app("a").interval("1h").depends_on(json!([{"name": "b"}])));
    let b = s.default_app("b").path("other").interval("1h").depends_on(json!([{"name": "a"}]));
    let b = s.create_app(b);

    wait_condition(
        &a,
        "Stalled",
        "DependencyCycle",
        &[&format!("spec.dependsOn forms a cycle: {ns}/a -> {ns}/b -> {ns}/a")],
    );
    wait_condition(
        &b,
        "Stalled",
        "DependencyCycle",
        &[&format!("spec.dependsOn forms a cycle: {ns}/b -> {ns}/a -> {ns}/b")],
    );
    for app in [&a, &b] {
        let json = app.json();
        assert!(json["status"]["history"].is_null(), "a cycle syncs nothing: {}", summary(&json));
    }
    assert!(s.cm_value("settings", "color").is_none() && s.cm_value("other", "color").is_none());

    // b no longer depends on a: b syncs, and a, woken by b's readiness, follows.
    s.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "applications.ferry.dev",
        "b",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/dependsOn"}]"#,
    ]);
    b.wait_synced(&sha, T);
    a.wait_synced(&sha, WOKEN);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("red"));
}
