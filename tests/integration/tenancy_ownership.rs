//! Issue 19, the ownership defects (medium 7–11 and the delete precondition), each written as the
//! attack: the created namespace must not defeat the empty-render guard nor be pruned with what
//! others keep in it, a rollout and PostSync verification touch and trust only objects of their
//! own Application, stale discovery never makes ferry prune a still-wanted cluster-scoped
//! object, and a delete never hits an object that replaced the one ferry checked.
//!
//! As in `sync`, each test runs its own ferry for its own namespace against the real control
//! plane; what must NOT happen is shown after a later observable event (a refusal, a counted
//! reconcile), never after a sleep.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, FerryApp, Scenario, T, condition, configmap, deployment, get_json, main_revision,
    metric, smoke_job, summary, wait_until,
};

/// An Application of the scenario's repository, checking Git every hour, with prune.
fn application(s: &Scenario, name: &str) -> AppBuilder {
    s.application(name).interval("1h").prune(true)
}

/// An Application syncing `path` into `destination`, which ferry creates when `create_namespace`.
fn create_app(s: &Scenario, name: &str, path: &str, destination: &str, create_namespace: bool) -> FerryApp {
    s.create_app(application(s, name).path(path).destination(destination).create_namespace(create_namespace))
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or_default().to_string()
}

fn get(s: &Scenario, args: &[&str]) -> Option<Value> {
    get_json(&s.cluster, args)
}

/// Waits until a pass at commit `sha` has ended, refused or synced; returns the Application.
fn wait_attempt(app: &FerryApp, sha: &str) -> Value {
    app.wait(&format!("a finished pass at {}", &sha[..7]), T, |a| {
        let ready = condition(a, "Ready").ok_or("no Ready condition")?;
        let attempted = a["status"]["lastAttemptedRevision"].as_str().unwrap_or_default().contains(sha);
        let synced = a["status"]["sync"]["revision"] == main_revision(sha).as_str();
        let current = a["status"]["observedGeneration"] == a["metadata"]["generation"];
        let ended = (ready["status"] == "False" && attempted) || (ready["status"] == "True" && synced);
        if ended && current { Ok(a.clone()) } else { Err("no finished pass yet".into()) }
    })
}

/// Waits until ferry has counted `n` more successful reconciles than `before`.
fn wait_reconciles(s: &Scenario, before: f64, n: f64) {
    let series = "ferry_reconcile_total{result=\"success\"}";
    wait_until(&format!("{n} more reconciles"), T, || {
        let now = metric(&s.ferry, series);
        if now >= before + n { Ok(()) } else { Err(format!("{now} reconciles, from {before}")) }
    });
}

fn reconciles(s: &Scenario) -> f64 {
    metric(&s.ferry, "ferry_reconcile_total{result=\"success\"}")
}

fn has_namespace_entry(app: &Value, name: &str) -> bool {
    app["status"]["inventory"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["kind"] == "Namespace" && e["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// 7. createNamespace and the empty-render guard.

#[test]
fn an_empty_render_is_refused_even_when_ferry_adds_the_created_namespace() {
    let s = Scenario::with_ferry_args("own-empty", &[]);
    let dest = format!("{}-dest", s.ns());
    s.delete_later(&["namespace", &dest]);
    let sha1 = s.commit_in(
        "app",
        &[("a.yaml", configmap("a", None, &[("k", "a")])), ("b.yaml", configmap("b", None, &[("k", "b")]))],
        "two configmaps",
    );
    let app = create_app(&s, "empty", "app", &dest, true);
    app.wait_synced(&sha1, T);
    let uids = || -> Vec<Option<String>> {
        ["a", "b"].iter().map(|n| get(&s, &["-n", &dest, "get", "configmap", n]).map(|o| uid(&o))).collect()
    };
    let before = uids();
    assert!(before.iter().all(Option::is_some), "{before:?}");

    // app/ now holds only README.md: Git renders nothing; only ferry's own Namespace is left.
    let sha2 = s.git.remove_files("main", &["app/a.yaml", "app/b.yaml"], "remove every manifest");
    app.annotate_reconcile_at();
    let status = wait_attempt(&app, &sha2);
    let ready = condition(&status, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["reason"], "PruneRefused", "{}", summary(&status));
    assert_eq!(uids(), before, "an empty render deleted objects");
    assert!(get(&s, &["get", "namespace", &dest]).is_some());
}

// ---------------------------------------------------------------------------------------------
// 8. Turning createNamespace off.

#[test]
fn turning_create_namespace_off_releases_the_namespace_at_once_and_never_prunes_it() {
    let s = Scenario::with_ferry_args("own-release", &[]);
    let dest = format!("{}-dest", s.ns());
    s.delete_later(&["namespace", &dest]);
    let sha1 = s.commit_in("app", &[("settings.yaml", configmap("settings", None, &[("v", "1")]))], "v1");
    let app = create_app(&s, "release", "app", &dest, true);
    let synced = app.wait_synced(&sha1, T);
    assert!(has_namespace_entry(&synced, &dest), "{}", summary(&synced));
    let ns = get(&s, &["get", "namespace", &dest]).expect("the created namespace");
    assert_eq!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ferry", "{ns}");
    let ns_uid = uid(&ns);
    // Someone keeps something of their own in it.
    s.kubectl_ok(&["-n", &dest, "create", "configmap", "hand-made", "--from-literal=k=v"]);

    // The spec change takes effect at once, at the same revision.
    app.patch(&json!({"spec": {"destination": {"createNamespace": false}}}));
    let after = app.wait_synced(&sha1, T);
    assert!(!has_namespace_entry(&after, &dest), "createNamespace: false ignored: {}", summary(&after));
    let ns = get(&s, &["get", "namespace", &dest]).expect("the released namespace");
    assert_eq!(uid(&ns), ns_uid);
    assert!(ns["metadata"]["deletionTimestamp"].is_null(), "{ns}");
    let labels = ns["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    assert!(!labels.keys().any(|k| k.starts_with("ferry.dev/")), "still labelled as ferry's: {labels:?}");
    app.wait_event("Normal", "NamespaceReleased", &[&dest], T);

    // The next commit prunes nothing of it.
    let sha2 = s.commit_in("app", &[("settings.yaml", configmap("settings", None, &[("v", "2")]))], "v2");
    app.ferry_sync();
    app.wait_synced(&sha2, T);
    let ns = get(&s, &["get", "namespace", &dest]).expect("the namespace after the next commit");
    assert_eq!(uid(&ns), ns_uid);
    assert!(ns["metadata"]["deletionTimestamp"].is_null(), "{ns}");
    assert!(get(&s, &["-n", &dest, "get", "configmap", "hand-made"]).is_some());
    let settings = get(&s, &["-n", &dest, "get", "configmap", "settings"]).expect("settings");
    assert_eq!(settings["data"]["v"], "2");
}

// ---------------------------------------------------------------------------------------------
// 9. Canary objects of another owner.

fn canary_app(s: &Scenario) -> FerryApp {
    s.create_app(application(s, "shop").canary("shop", json!([{"setWeight": 20}, {"pause": {}}])))
}

/// A Deployment named `shop-canary` that is not this Application's: `labels` says whose it is.
fn foreign_canary(s: &Scenario, labels: Value) -> Value {
    let mut d: Value =
        serde_saphyr::from_str(&deployment("shop-canary", Some(s.ns()), "registry.example/other:1", 1))
            .expect("a Deployment");
    d["metadata"]["labels"] = labels;
    s.cluster.apply(&d.to_string());
    get(s, &["-n", s.ns(), "get", "deployment", "shop-canary"]).expect("the foreign Deployment")
}

fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string()
}

fn commit_shop(s: &Scenario, tag: &str) -> String {
    let manifest = deployment("shop", None, &format!("registry.example/shop:{tag}"), 5);
    s.commit_in("app", &[("deployment.yaml", manifest)], tag)
}

/// A scenario with the canary Application synced at a first revision (no rollout yet).
fn canary_scenario(prefix: &str) -> (Scenario, FerryApp) {
    let s = Scenario::with_ferry_args(prefix, &[]);
    let v1 = commit_shop(&s, "1.0");
    let app = canary_app(&s);
    app.wait_synced(&v1, T);
    (s, app)
}

#[test]
fn a_rollout_never_deletes_another_applications_object_of_the_canarys_name() {
    let (s, app) = canary_scenario("own-canary-del");
    let ns = s.ns().to_string();
    // Another Application's `shop-canary`: the steady state (no rollout) must not delete it.
    let other = json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app-name": "other",
        "ferry.dev/app-namespace": ns});
    let theirs = foreign_canary(&s, other);
    let before = reconciles(&s);
    app.ferry_sync();
    wait_reconciles(&s, before, 1.0);
    app.ferry_sync();
    wait_reconciles(&s, before, 2.0);
    let still = get(&s, &["-n", &ns, "get", "deployment", "shop-canary"]);
    assert_eq!(still.as_ref().map(uid), Some(uid(&theirs)), "another Application's shop-canary was deleted");
}

#[test]
fn a_rollout_never_takes_over_an_unrelated_object_of_the_canarys_name() {
    let (s, app) = canary_scenario("own-canary-take");
    let ns = s.ns().to_string();
    // An unrelated `shop-canary` (no labels), with the very selector ferry's canary would have
    // (so a forced apply over it would succeed): a rollout stops with a conflict, writes nothing.
    let mut d: Value =
        serde_saphyr::from_str(&deployment("shop-canary", Some(&ns), "registry.example/other:1", 1))
            .expect("a Deployment");
    d["metadata"]["labels"] = json!({"team": "other"});
    let selector = json!({"app": "shop"});
    d["spec"]["selector"]["matchLabels"] = selector.clone();
    d["spec"]["template"]["metadata"]["labels"] = selector;
    s.cluster.apply(&d.to_string());
    let theirs = get(&s, &["-n", &ns, "get", "deployment", "shop-canary"]).expect("the unrelated Deployment");
    let v2 = commit_shop(&s, "2.0");
    app.ferry_sync();
    let a = app.wait("a rollout of v2 started or refused", T, |a| {
        let ready = condition(a, "Ready").cloned().unwrap_or_default();
        let refused = ready["status"] == "False"
            && a["status"]["lastAttemptedRevision"].as_str().unwrap_or_default().contains(&v2);
        let rolled = a["status"]["rollout"]["revision"] == main_revision(&v2).as_str();
        if refused || rolled { Ok(a.clone()) } else { Err("not yet".into()) }
    });
    let ready = condition(&a, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["reason"], "OwnershipConflict", "{}", summary(&a));
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("shop-canary"), "{message}");
    let now = get(&s, &["-n", &ns, "get", "deployment", "shop-canary"]).expect("the unrelated Deployment");
    assert_eq!(uid(&now), uid(&theirs));
    // Its spec was not written (the Deployment controller writes its status, so the
    // resourceVersion may move), and ferry is none of its field managers.
    assert_eq!(now["metadata"]["generation"], theirs["metadata"]["generation"], "it was written");
    let managers: Vec<&str> = now["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["manager"].as_str())
        .collect();
    // ("ferry-tests" is this test's own kubectl.)
    assert!(!managers.contains(&"ferry"), "ferry wrote it: {managers:?}");
    assert_eq!(image(&now), "registry.example/other:1");
    let primary = get(&s, &["-n", &ns, "get", "deployment", "shop"]).expect("the primary");
    assert_eq!(image(&primary), "registry.example/shop:1.0");
    assert_eq!(primary["spec"]["replicas"], 5);
}

// ---------------------------------------------------------------------------------------------
// 10. PostSync verification trusts only hooks ferry created.

/// A staging Application whose Git hook fails, with a passing Job `smoke` created beforehand by
/// someone who may create Jobs, annotated for the revision (and labelled as `labels` says).
/// Returns the scenario, the Application, the revision and the forged Job.
fn forged_hook(prefix: &str, labels: impl Fn(&str) -> Value) -> (Scenario, FerryApp, String, Value) {
    let s = Scenario::with_ferry_args(prefix, &[]);
    let ns = s.ns().to_string();
    let sha = s.git.commit_files(
        "main",
        &[
            ("staging/settings.yaml", &configmap("staging-settings", None, &[("v", "1")])),
            ("staging/smoke.yaml", &smoke_job(false)),
        ],
        "v1 with a failing smoke test",
    );
    let revision = main_revision(&sha);
    let mut job: Value = serde_saphyr::from_str(&smoke_job(true)).expect("a Job");
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["annotations"] = json!({"ferry.dev/hook-revision": revision});
    job["metadata"]["labels"] = labels(&ns);
    s.cluster.apply(&job.to_string());
    let job = wait_until("the forged Job completes", T, || {
        let j = get(&s, &["-n", &ns, "get", "job", "smoke"]).ok_or("no Job")?;
        let done = j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Complete" && c["status"] == "True");
        if done { Ok(j) } else { Err(format!("{}", j["status"])) }
    });
    let app = s.create_app(application(&s, "staging").path("staging"));
    (s, app, revision, job)
}

#[test]
fn a_job_someone_else_created_never_verifies_a_revision() {
    let (s, app, revision, forged) = forged_hook("own-hook", |_| json!({"team": "intruder"}));
    let a = app.wait("verification decided or refused", T, |a| {
        let ready = condition(a, "Ready").cloned().unwrap_or_default();
        let phase = &a["status"]["verification"]["phase"];
        if ready["reason"] == "OwnershipConflict" || phase == "Succeeded" || phase == "Failed" {
            Ok(a.clone())
        } else {
            Err("not yet".into())
        }
    });
    assert!(a["status"]["verifiedRevision"].is_null(), "a forged Job verified {revision}: {}", summary(&a));
    assert_ne!(a["status"]["verification"]["phase"], "Succeeded", "{}", summary(&a));
    let ready = condition(&a, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["reason"], "OwnershipConflict", "{}", summary(&a));
    assert!(ready["message"].as_str().unwrap_or_default().contains("smoke"), "{ready}");
    let job = get(&s, &["-n", s.ns(), "get", "job", "smoke"]).expect("the forged Job is left alone");
    assert_eq!(uid(&job), uid(&forged));
}

#[test]
fn a_job_forging_ferrys_labels_is_replaced_by_ferrys_own_run() {
    let labels = |ns: &str| {
        json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app-name": "staging",
            "ferry.dev/app-namespace": ns})
    };
    let (s, app, revision, forged) = forged_hook("own-hook-label", labels);
    let a = app.wait("verification decided", T, |a| {
        let v = &a["status"]["verification"];
        let decided =
            v["revision"] == revision.as_str() && (v["phase"] == "Succeeded" || v["phase"] == "Failed");
        if decided { Ok(a.clone()) } else { Err("not yet".into()) }
    });
    assert_eq!(a["status"]["verification"]["phase"], "Failed", "{}", summary(&a));
    assert!(a["status"]["verifiedRevision"].is_null(), "{}", summary(&a));
    let job = get(&s, &["-n", s.ns(), "get", "job", "smoke"]).expect("ferry's own hook run");
    assert_ne!(uid(&job), uid(&forged), "the forged Job counted");
}

// ---------------------------------------------------------------------------------------------
// 11. A cluster-scoped kind discovery did not know yet.

fn gadget_crd(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  names: {{kind: Gadget, listKind: GadgetList, plural: gadgets, singular: gadget}}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
"#
    )
}

#[test]
fn a_cluster_scoped_object_of_a_kind_new_to_discovery_is_never_pruned_while_wanted() {
    let s = Scenario::with_ferry_args("own-scope", &[]);
    let group = format!("{}.example.com", s.ns());
    // Installed after ferry's discovery (as another Application would): ferry does not know the kind.
    s.delete_later(&["crd", &format!("gadgets.{group}")]);
    s.cluster.apply(&gadget_crd(&group));
    s.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", &format!("crd/gadgets.{group}")]);
    let gadget = format!("{}-g", s.ns());
    s.delete_later(&[&format!("gadgets.{group}"), &gadget]);
    let manifest =
        format!("apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: {gadget}\nspec:\n  size: 1\n");
    let sha = s.commit_in("app", &[("gadget.yaml", manifest)], "a cluster-scoped gadget");
    let app = create_app(&s, "scope", "app", s.ns(), false);
    app.wait_synced(&sha, T);
    let live = |s: &Scenario| get(s, &["get", &format!("gadgets.{group}"), &gadget]);
    let first = live(&s).expect("the gadget");

    // Two more passes, with discovery now knowing the kind: the gadget is still the same object,
    // and nothing was ever pruned (the passes right after the first sync included).
    let before = reconciles(&s);
    app.ferry_sync();
    wait_reconciles(&s, before, 1.0);
    app.ferry_sync();
    wait_reconciles(&s, before, 2.0);
    let a = app.wait_synced(&sha, T);
    assert_eq!(metric(&s.ferry, "ferry_objects_pruned_total"), 0.0, "the wanted gadget was pruned");
    assert!(!app.events().iter().any(|e| e.reason == "Pruned"), "{:?}", app.events());
    assert_eq!(live(&s).as_ref().map(uid), Some(uid(&first)), "the wanted gadget was pruned");
    let entry = a["status"]["inventory"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "Gadget")
        .cloned()
        .unwrap_or_default();
    assert!(entry["namespace"].is_null(), "a cluster-scoped object recorded with a namespace: {entry}");
}
// ---------------------------------------------------------------------------------------------
// Deletes carry the uid of the object ferry checked.

#[tokio::test]
async fn a_delete_never_hits_an_object_that_replaced_the_one_checked() {
    use ferry::apply::Applier;
    let cluster = Cluster::shared();
    let ns = cluster.namespace("own-uid");
    let applier = Applier::new(cluster.client().await, Duration::from_secs(30)).await.expect("discovery");
    cluster.kubectl_ok(&["-n", &ns.name, "create", "configmap", "cfg", "--from-literal=k=v1"]);
    let cm: kube::api::DynamicObject = serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {}}}\n",
        ns.name
    ))
    .expect("a ConfigMap");
    let (resource, caps) = applier.resolve(&cm).expect("ConfigMaps are served");
    let checked =
        applier.get("ConfigMap cfg", &resource, &caps, Some(&ns.name), "cfg").await.unwrap().unwrap();
    let checked_uid = checked.metadata.uid.clone().expect("a uid");

    // Replaced by someone else between the check and the delete.
    cluster.kubectl_ok(&["-n", &ns.name, "delete", "configmap", "cfg"]);
    cluster.kubectl_ok(&["-n", &ns.name, "create", "configmap", "cfg", "--from-literal=k=v2"]);
    applier
        .delete("ConfigMap cfg", &resource, &caps, Some(&ns.name), "cfg", Some(&checked_uid))
        .await
        .expect("a delete whose precondition fails is not an error");
    let now =
        get_json(cluster, &["-n", &ns.name, "get", "configmap", "cfg"]).expect("the replacement survives");
    assert_eq!(now["data"]["k"], "v2");

    // The object checked is deleted.
    let live = applier.get("ConfigMap cfg", &resource, &caps, Some(&ns.name), "cfg").await.unwrap().unwrap();
    let live_uid = live.metadata.uid.clone().expect("a uid");
    applier.delete("ConfigMap cfg", &resource, &caps, Some(&ns.name), "cfg", Some(&live_uid)).await.unwrap();
    wait_until("the checked ConfigMap deleted", T, || {
        match get_json(cluster, &["-n", &ns.name, "get", "configmap", "cfg"]) {
            None => Ok(()),
            Some(o) => Err(format!("still there: {}", o["metadata"]["uid"])),
        }
    });
}
