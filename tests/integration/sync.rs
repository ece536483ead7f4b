//! The sync engine end to end (issue 5): `ferry run` as a process, a real Git server and the real
//! control plane. Each test runs its own ferry for its own namespace, so tests never fight over
//! Applications; cluster-scoped names (Namespaces, CRD groups) derive from the test namespace.
//!
//! Everything is observed the way a person would: the Application's status and Events, and the
//! objects in the cluster. Waits have generous deadlines; nothing here measures time.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{
    Cluster, FerryApp, Scenario, T, assert_managed_by, condition, configmap, deployment, docs, get_json,
    main_revision, meta, namespace, repo_root, service, summary, wait_until,
};

// ---------------------------------------------------------------------------------------------
// Fixture: a bare cluster of its own (`Scenario` is in `tests/support/scenario.rs`).

/// A separate bare cluster (etcd + kube-apiserver) for the tests that need the API server to
/// themselves; one at a time, stopped when dropped.
struct Bare {
    cluster: Cluster,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Bare {
    fn up(name: &str) -> Bare {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let state = repo_root().join(format!("target/testenv-bare-{name}"));
        let cluster = Cluster::bare(&state);
        // As a person would install it on a fresh cluster: `ferry crd | kubectl apply --server-side -f -`.
        let crd =
            std::process::Command::new(env!("CARGO_BIN_EXE_ferry")).arg("crd").output().expect("ferry crd");
        assert!(crd.status.success(), "ferry crd failed: {}", String::from_utf8_lossy(&crd.stderr));
        let run = cluster
            .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &String::from_utf8_lossy(&crd.stdout));
        assert!(run.success, "applying `ferry crd` failed: {}", run.stderr);
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/applications.ferry.dev",
        ]);
        Bare { cluster, _one_at_a_time: guard }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        self.cluster.down();
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests.

/// A namespaced CRD `Widget` in `group`, with a defaulted field (`spec.color`).
fn widget_crd(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}}
  scope: Namespaced
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
              color: {{type: string, default: blue}}
"#
    )
}

fn widget(group: &str, namespace: &str, name: &str, size: u32) -> String {
    format!("apiVersion: {group}/v1\nkind: Widget\n{}spec:\n  size: {size}\n", meta(name, Some(namespace)))
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().expect("uid").to_string()
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"].as_str().expect("resourceVersion").to_string()
}

fn ready_message(app: &Value) -> String {
    condition(app, "Ready").map(|c| c["message"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

fn assert_condition(app: &Value, type_: &str, status: &str) {
    let cond = condition(app, type_);
    assert!(
        cond.is_some_and(|c| c["status"] == status),
        "expected {type_}={status}; status: {}",
        summary(app)
    );
}

fn assert_not_true(app: &Value, type_: &str) {
    assert!(
        condition(app, type_).is_none_or(|c| c["status"] != "True"),
        "{type_} must not be True; status: {}",
        summary(app)
    );
}

/// `status.inventory` as (group, version, kind, namespace, name) tuples; duplicates are an error.
fn inventory(app: &Value) -> BTreeSet<(String, String, String, String, String)> {
    let entries = app["status"]["inventory"].as_array().cloned().unwrap_or_default();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let set: BTreeSet<_> = entries
        .iter()
        .map(|e| (s(&e["group"]), s(&e["version"]), s(&e["kind"]), s(&e["namespace"]), s(&e["name"])))
        .collect();
    assert_eq!(set.len(), entries.len(), "status.inventory has duplicates: {entries:?}");
    set
}

fn entry(
    group: &str,
    version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> (String, String, String, String, String) {
    (group.into(), version.into(), kind.into(), namespace.into(), name.into())
}

fn revision_field(app: &Value, field: &str) -> String {
    app["status"][field].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// First sync, new revision, steady state.

#[test]
fn first_sync_applies_every_kind_and_reports_synced_and_healthy() {
    let s = Scenario::new("sync-first");
    let ns = s.ns().to_string();
    let extra_ns = format!("{ns}-x");
    let group = format!("{ns}.ferry-test.dev");
    s.delete_later(&["namespace", &extra_ns]);
    s.delete_later(&["customresourcedefinition", &format!("widgets.{group}")]);
    let sha = s.commit(
        &[
            ("namespace.yaml", namespace(&extra_ns)),
            ("crd.yaml", widget_crd(&group)),
            // In the Namespace and of the CRD that the same revision creates.
            ("widget.yaml", widget(&group, &extra_ns, "w1", 3)),
            // No namespace: goes to the destination, by default the Application's namespace.
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("service.yaml", service("web", None)),
            ("deployment.yaml", deployment("web", None, "registry.example/web:1.0", 2)),
        ],
        "an app of every kind",
    );
    let app = s.create_app(s.default_app("first"));
    let status = app.wait_synced(&sha, T);

    let revision = main_revision(&sha);
    assert_eq!(status["status"]["sync"]["revision"], revision.as_str());
    assert!(revision_field(&status, "lastAppliedRevision").contains(&sha), "{}", summary(&status));
    assert!(revision_field(&status, "lastAttemptedRevision").contains(&sha), "{}", summary(&status));
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready["observedGeneration"], status["metadata"]["generation"], "Ready: {ready}");
    assert_not_true(&status, "Reconciling");
    assert_not_true(&status, "Stalled");
    assert!(
        status["metadata"]["finalizers"].as_array().into_iter().flatten().any(|f| f == "ferry.dev/cleanup"),
        "finalizer missing: {}",
        status["metadata"]
    );
    let expected: BTreeSet<_> = [
        entry("", "v1", "Namespace", "", &extra_ns),
        entry("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "", &format!("widgets.{group}")),
        entry(&group, "v1", "Widget", &extra_ns, "w1"),
        entry("", "v1", "ConfigMap", &ns, "settings"),
        entry("", "v1", "Service", &ns, "web"),
        entry("apps", "v1", "Deployment", &ns, "web"),
    ]
    .into_iter()
    .collect();
    assert_eq!(inventory(&status), expected);
    // A valid revision is never reported as failed on its way (the CRD is applied and
    // Established before the Widget is validated and applied).
    let failed: Vec<&Value> = status["status"]["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["result"] != "Succeeded")
        .collect();
    assert!(failed.is_empty(), "a valid first sync recorded failed attempts: {failed:?}");
    let failures: Vec<_> = app.events().into_iter().filter(|e| e.type_ == "Warning").collect();
    assert!(failures.is_empty(), "a valid first sync emitted Warning events: {failures:?}");
    let last = &status["status"]["history"][0];
    assert_eq!(last["result"], "Succeeded", "history: {}", status["status"]["history"]);
    assert!(
        last["revision"].as_str().unwrap_or_default().contains(&sha),
        "history: {}",
        status["status"]["history"]
    );

    // The objects are there, labelled and applied by field manager ferry.
    let objects = [
        s.get("namespace", None, &extra_ns),
        s.get("customresourcedefinition", None, &format!("widgets.{group}")),
        s.get(&format!("widgets.{group}"), Some(&extra_ns), "w1"),
        s.get("configmap", Some(&ns), "settings"),
        s.get("service", Some(&ns), "web"),
        s.get("deployment", Some(&ns), "web"),
    ];
    for obj in &objects {
        let obj = obj.as_ref().unwrap_or_else(|| panic!("an object of the app is missing: {objects:?}"));
        assert_managed_by(obj, &ns, "first");
    }
    let crd = objects[1].as_ref().unwrap();
    assert!(
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True"),
        "Healthy, yet the CRD is not Established: {}",
        crd["status"]
    );
    let widget = objects[2].as_ref().unwrap();
    assert_eq!(widget["spec"]["size"], 3);
    assert_eq!(objects[3].as_ref().unwrap()["data"]["color"], "blue");
    // Healthy means the rollout is complete: ferry must not say so before the Deployment does.
    let deploy = objects[5].as_ref().unwrap();
    assert_eq!(
        deploy["status"]["observedGeneration"], deploy["metadata"]["generation"],
        "{}",
        deploy["status"]
    );
    assert_eq!(deploy["status"]["availableReplicas"], 2, "{}", deploy["status"]);
    assert_eq!(deploy["status"]["updatedReplicas"], 2, "{}", deploy["status"]);

    app.wait_event("Normal", "Synced", &[&sha[..7]], T);

    // SIGTERM: graceful, exit code 0.
    let mut s = s;
    let exit = s.ferry.stop().expect("ferry was running");
    assert!(exit.success(), "ferry exited with {exit} after SIGTERM");
}

#[test]
fn a_new_image_tag_is_applied_and_the_deployment_rolls() {
    let s = Scenario::new("sync-image");
    let ns = s.ns().to_string();
    let sha1 =
        s.commit(&[("deployment.yaml", deployment("web", None, "registry.example/web:1.0", 1))], "web 1.0");
    let app = s.create_app(s.default_app("web"));
    app.wait_synced(&sha1, T);
    let before = s.get("deployment", Some(&ns), "web").expect("deployment web");
    let generation_before = before["metadata"]["generation"].as_i64().unwrap();

    let sha2 =
        s.commit(&[("deployment.yaml", deployment("web", None, "registry.example/web:1.1", 1))], "web 1.1");
    app.ferry_sync();
    let status = app.wait_synced(&sha2, T);

    let deploy = s.get("deployment", Some(&ns), "web").expect("deployment web");
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/web:1.1");
    assert!(deploy["metadata"]["generation"].as_i64().unwrap() > generation_before, "{}", deploy["metadata"]);
    // Healthy only once the rollout is complete.
    assert_eq!(
        deploy["status"]["observedGeneration"], deploy["metadata"]["generation"],
        "{}",
        deploy["status"]
    );
    assert_eq!(deploy["status"]["updatedReplicas"], 1, "{}", deploy["status"]);
    assert_eq!(deploy["status"]["availableReplicas"], 1, "{}", deploy["status"]);
    assert_eq!(
        deploy["metadata"]["uid"], before["metadata"]["uid"],
        "the Deployment was replaced, not updated"
    );

    // A new ReplicaSet runs the new image; the old one is scaled down.
    wait_until("the new ReplicaSet to be ready and the old one scaled to zero", T, || {
        let rs = get_json(&s.cluster, &["-n", &ns, "get", "replicasets", "-l", "app=web"]).unwrap();
        let sets = rs["items"].as_array().cloned().unwrap_or_default();
        let image = |r: &Value| {
            r["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string()
        };
        let new = sets.iter().find(|r| image(r) == "registry.example/web:1.1");
        let old = sets.iter().find(|r| image(r) == "registry.example/web:1.0");
        match (new, old) {
            (Some(n), Some(o)) if n["status"]["readyReplicas"] == 1 && o["spec"]["replicas"] == 0 => Ok(()),
            _ => Err(format!(
                "replicasets: {:?}",
                sets.iter()
                    .map(|r| (image(r), r["spec"]["replicas"].clone(), r["status"]["readyReplicas"].clone()))
                    .collect::<Vec<_>>()
            )),
        }
    });

    let history = status["status"]["history"].as_array().cloned().unwrap_or_default();
    assert!(history.len() >= 2, "history: {history:?}");
    assert!(history[0]["revision"].as_str().unwrap_or_default().contains(&sha2), "history: {history:?}");
    assert_eq!(history[0]["result"], "Succeeded");
    assert!(history[1]["revision"].as_str().unwrap_or_default().contains(&sha1), "history: {history:?}");
    // With everything the API server defaulted on a Deployment, the plan still sees no change.
    let generation = deploy["metadata"]["generation"].clone();
    let (_, planned) = refresh_and_wait_planned(&s, &app);
    assert!(planned.contains("changed=0"), "a refresh of the synced revision planned changes: {planned}");
    assert_eq!(s.get("deployment", Some(&ns), "web").unwrap()["metadata"]["generation"], generation);

    // The Synced Event names the new revision.
    app.wait_event("Normal", "Synced", &[&sha2[..7]], T);
}

/// Write requests per (resource, subresource), from `apiserver_request_total`, dry runs excluded.
fn writes_by_resource(cluster: &Cluster) -> BTreeMap<(String, String), u64> {
    let metrics = cluster.kubectl_ok(&["get", "--raw", "/metrics"]);
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let key = RefCell::new(None);
        let n = crate::support::sum_requests(line, |labels| {
            let write = crate::support::is_write_to(labels, &[]);
            if write {
                *key.borrow_mut() = Some((
                    labels.get("resource").unwrap_or(&"").to_string(),
                    labels.get("subresource").unwrap_or(&"").to_string(),
                ));
            }
            write
        });
        if let Some(key) = key.into_inner() {
            *out.entry(key).or_insert(0) += n;
        }
    }
    out
}

/// Sets `ferry.dev/reconcile-at` and waits until ferry has planned a reconcile of `app` after
/// that (its debug line `planned app=<ns>/<name> ... changed=N`); returns the line.
fn refresh_and_wait_planned(s: &Scenario, app: &FerryApp) -> (String, String) {
    let mark = s.ferry.log_len();
    let rv = app.annotate_reconcile_at();
    let needle = format!("app={}/{}", app.namespace, app.name);
    let line = s.ferry.wait_for_log(&format!("ferry to plan a reconcile of {needle}"), mark, T, |l| {
        l.contains(" planned") && l.contains(&needle)
    });
    (rv, line)
}

#[test]
fn a_second_reconcile_of_an_unchanged_revision_writes_nothing() {
    // A bare API server of its own: on the shared cluster other tests (and other people's runs)
    // write all the time, and apiserver_request_total has no per-client label.
    let bare = Bare::up("steady");
    let s = Scenario::on(bare.cluster.clone(), "sync-steady");
    let ns = s.ns().to_string();
    let extra_ns = format!("{ns}-x");
    let group = format!("{ns}.ferry-test.dev");
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\n{}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n{}rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n{}roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}\nsubjects:\n- {{kind: ServiceAccount, name: reader, namespace: {ns}}}\n",
        meta("reader", None),
        meta("reader", None),
        meta("reader", None),
    );
    // Fields the API server defaults or normalises: Service ports and clusterIP, quantities
    // (0.5 -> 500m, 1024Mi -> 1Gi), a CRD schema default.
    let limits = format!(
        "apiVersion: v1\nkind: LimitRange\n{}spec:\n  limits:\n  - type: Container\n    default: {{cpu: \"0.5\", memory: 1024Mi}}\n    defaultRequest: {{cpu: 250m, memory: 256Mi}}\n",
        meta("limits", None)
    );
    let secret =
        format!("apiVersion: v1\nkind: Secret\n{}data: {{password: c2VjcmV0}}\n", meta("creds", None));
    let sha = s.commit(
        &[
            ("namespace.yaml", namespace(&extra_ns)),
            ("crd.yaml", widget_crd(&group)),
            ("widget.yaml", widget(&group, &extra_ns, "w1", 1)),
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("secret.yaml", secret),
            ("rbac.yaml", rbac),
            ("service.yaml", service("web", None)),
            ("limits.yaml", limits),
        ],
        "objects with defaulted fields",
    );
    let app = s.create_app(s.default_app("steady"));
    app.wait_synced(&sha, T);

    let objects: Vec<(String, Option<String>, String)> = vec![
        ("namespace".into(), None, extra_ns.clone()),
        ("customresourcedefinition".into(), None, format!("widgets.{group}")),
        (format!("widgets.{group}"), Some(extra_ns.clone()), "w1".into()),
        ("configmap".into(), Some(ns.clone()), "settings".into()),
        ("secret".into(), Some(ns.clone()), "creds".into()),
        ("serviceaccount".into(), Some(ns.clone()), "reader".into()),
        ("role".into(), Some(ns.clone()), "reader".into()),
        ("rolebinding".into(), Some(ns.clone()), "reader".into()),
        ("service".into(), Some(ns.clone()), "web".into()),
        ("limitrange".into(), Some(ns.clone()), "limits".into()),
    ];
    let versions = || -> Vec<String> {
        objects
            .iter()
            .map(|(kind, ns, name)| {
                rv(&s.get(kind, ns.as_deref(), name).unwrap_or_else(|| panic!("{kind} {name} missing")))
            })
            .collect()
    };
    let rvs_before = versions();

    // Manual refreshes: ferry re-checks Git and reconciles at once. Each annotation is one write
    // to `applications`; nothing else may follow. The second refresh is a fence: ferry
    // reconciles one Application at a time, so once it plans after the second annotation, the
    // reconcile of the first has finished (status write and events included).
    let (_, warm_up) = refresh_and_wait_planned(&s, &app);
    eprintln!("warm-up reconcile: {warm_up}");
    let writes_before = writes_by_resource(&s.cluster);
    let (_, planned) = refresh_and_wait_planned(&s, &app);
    assert!(planned.contains("changed=0") && planned.contains("prune=0"), "ferry planned writes: {planned}");
    let (app_rv, _) = refresh_and_wait_planned(&s, &app);
    let writes_after = writes_by_resource(&s.cluster);
    let mut new_writes: Vec<(String, String, u64)> = writes_after
        .iter()
        .filter_map(|((res, sub), n)| {
            let d = n - writes_before.get(&(res.clone(), sub.clone())).copied().unwrap_or(0);
            (d > 0).then(|| (res.clone(), sub.clone(), d))
        })
        .collect();
    // The API server renews its own identity Lease every few seconds; the annotation is ours.
    new_writes.retain(|(res, sub, _)| res != "leases" && !(res == "applications" && sub.is_empty()));
    assert!(
        new_writes.is_empty(),
        "a reconcile of an unchanged revision wrote (resource, subresource, count): {new_writes:?}"
    );
    assert_eq!(rv(&app.json()), app_rv, "the Application (status) was written: {}", summary(&app.json()));
    assert_eq!(versions(), rvs_before, "a managed object changed");
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// Prune and its safety nets.

#[test]
fn removing_a_file_prunes_its_object() {
    let s = Scenario::new("sync-prune");
    let ns = s.ns().to_string();
    let sha1 = s.commit(
        &[
            ("a.yaml", configmap("a", None, &[("k", "a")])),
            ("b.yaml", configmap("b", None, &[("k", "b")])),
            ("c.yaml", configmap("c", None, &[("k", "c")])),
        ],
        "three configmaps",
    );
    let app = s.create_app(s.default_app("prune"));
    app.wait_synced(&sha1, T);
    // `ferry.dev/prune: disabled` on the live object keeps it when it leaves Git.
    s.kubectl_ok(&["-n", &ns, "label", "configmap", "c", "ferry.dev/prune=disabled"]);
    let c_uid = uid(&s.get("configmap", Some(&ns), "c").unwrap());

    let sha2 = s.remove(&["b.yaml", "c.yaml"], "remove b and c");
    app.annotate_reconcile_at();
    let status = app.wait_synced(&sha2, T);

    assert!(s.get("configmap", Some(&ns), "b").is_none(), "b was not pruned; status: {}", summary(&status));
    let c = s.get("configmap", Some(&ns), "c").expect("c (prune: disabled) must be kept");
    assert_eq!(uid(&c), c_uid);
    assert_eq!(s.cm_value("a", "k").as_deref(), Some("a"));
    assert_eq!(inventory(&status), [entry("", "v1", "ConfigMap", &ns, "a")].into_iter().collect());
    app.wait_event("Normal", "Pruned", &[&sha2[..7]], T);
}

#[test]
fn an_empty_render_is_refused_and_deletes_nothing_unless_allowed() {
    let s = Scenario::new("sync-empty");
    let ns = s.ns().to_string();
    let sha1 = s.commit(
        &[("a.yaml", configmap("a", None, &[("k", "a")])), ("b.yaml", configmap("b", None, &[("k", "b")]))],
        "two configmaps",
    );
    let app = s.create_app(s.default_app("empty"));
    app.wait_synced(&sha1, T);
    let uids = |names: &[&str]| -> Vec<Option<String>> {
        names.iter().map(|n| s.get("configmap", Some(&ns), n).map(|o| uid(&o))).collect()
    };
    let before = uids(&["a", "b"]);

    // app/ now holds only README.md: the render is empty.
    let sha2 = s.remove(&["a.yaml", "b.yaml"], "remove every manifest");
    app.annotate_reconcile_at();
    let status = app.wait_refused("PruneRefused", &sha2, T);
    assert_condition(&status, "Stalled", "True");
    assert_eq!(uids(&["a", "b"]), before, "an empty render deleted objects");
    assert_eq!(inventory(&status).len(), 2, "the inventory must survive a refused prune");
    assert!(revision_field(&status, "lastAppliedRevision").contains(&sha1), "{}", summary(&status));

    // allowEmpty: the person says an empty revision is meant; now it prunes everything.
    app.patch(&json!({"spec": {"syncPolicy": {"allowEmpty": true}}}));
    let status = app.wait(&format!("Synced at {} with allowEmpty", &sha2[..7]), T, |app| {
        let ready = condition(app, "Ready").ok_or("no Ready condition")?;
        let synced = app["status"]["sync"]["status"] == "Synced"
            && app["status"]["sync"]["revision"] == main_revision(&sha2).as_str()
            && ready["status"] == "True"
            && app["status"]["observedGeneration"] == app["metadata"]["generation"];
        if synced { Ok(app.clone()) } else { Err("not synced yet".into()) }
    });
    assert_eq!(uids(&["a", "b"]), vec![None, None], "allowEmpty did not prune; status: {}", summary(&status));
    assert!(inventory(&status).is_empty(), "{}", summary(&status));
}

#[test]
fn a_bad_object_applies_nothing_of_its_revision_and_is_named() {
    let s = Scenario::new("sync-invalid");
    let ns = s.ns().to_string();
    let sha1 = s.commit(&[("good.yaml", configmap("good", None, &[("v", "1")]))], "good v1");
    let app = s.create_app(s.default_app("invalid"));
    app.wait_synced(&sha1, T);
    let good_rv = rv(&s.get("configmap", Some(&ns), "good").unwrap());

    // One revision: a change to `good`, a new ConfigMap, and a Deployment the schema refuses.
    let bad_deployment =
        deployment("web", None, "registry.example/web:1.0", 1).replace("replicas: 1", "replicas: three");
    let sha2 = s.commit(
        &[
            ("good.yaml", configmap("good", None, &[("v", "2")])),
            ("fresh.yaml", configmap("fresh", None, &[("v", "2")])),
            ("deployment.yaml", bad_deployment),
        ],
        "good v2, fresh, and a bad Deployment",
    );
    app.ferry_sync();
    let status = app.wait_refused("ValidationFailed", &sha2, T);
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(message.contains(&format!("Deployment {ns}/web")), "the message must name the object: {message}");
    assert!(message.contains("replicas"), "the message must carry the API server's words: {message}");
    assert_eq!(s.cm_value("good", "v").as_deref(), Some("1"), "good was changed by a refused revision");
    assert_eq!(rv(&s.get("configmap", Some(&ns), "good").unwrap()), good_rv, "good was written");
    assert!(s.get("configmap", Some(&ns), "fresh").is_none(), "fresh was created by a refused revision");
    assert!(s.get("deployment", Some(&ns), "web").is_none());
    assert!(revision_field(&status, "lastAppliedRevision").contains(&sha1), "{}", summary(&status));
    assert_eq!(inventory(&status), [entry("", "v1", "ConfigMap", &ns, "good")].into_iter().collect());
    app.wait_event("Warning", "SyncFailed", &[&sha2[..7]], T);

    // A kind the API server does not serve is just as bad.
    s.git.remove_files("main", &["app/deployment.yaml"], "drop the Deployment");
    let sha3 = s.commit(
        &[("gadget.yaml", format!("apiVersion: example.invalid/v1\nkind: Gadget\n{}", meta("g", None)))],
        "a Gadget nobody serves",
    );
    app.ferry_sync();
    let status = app.wait(&format!("ValidationFailed for {}", &sha3[..7]), T, |app| {
        let ready = condition(app, "Ready").ok_or("no Ready condition")?;
        if ready["reason"] == "ValidationFailed"
            && revision_field(app, "lastAttemptedRevision").contains(&sha3)
        {
            Ok(app.clone())
        } else {
            Err("not refused yet".into())
        }
    });
    let message = ready_message(&status);
    assert!(message.contains(&format!("Gadget {ns}/g")), "the message must name the object: {message}");
    assert_eq!(s.cm_value("good", "v").as_deref(), Some("1"));
    assert!(s.get("configmap", Some(&ns), "fresh").is_none());

    // Fixed in Git: the next revision goes through whole.
    let sha4 = s.remove(&["gadget.yaml"], "drop the Gadget");
    app.ferry_sync();
    app.wait_synced(&sha4, T);
    assert_eq!(s.cm_value("good", "v").as_deref(), Some("2"));
    assert_eq!(s.cm_value("fresh", "v").as_deref(), Some("2"));
}

/// A revision that writes one object is not dry-run first (its apply is all or nothing, and a
/// fleet of one-object Applications would pay one request in five for it): when the API server
/// refuses that apply, the Application still says ValidationFailed, Stalled, nothing applied,
/// exactly as a refused dry run would, and keeps the last good revision.
#[test]
fn a_refused_lone_object_is_a_validation_failure_and_nothing_is_applied() {
    let s = Scenario::new("sync-lone");
    let ns = s.ns().to_string();
    let sha1 = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:1.0", 1))], "web 1.0");
    let app = s.create_app(s.default_app("lone"));
    app.wait_synced(&sha1, T);
    let web_rv = rv(&s.get("deployment", Some(&ns), "web").unwrap());

    let bad =
        deployment("web", None, "registry.example/web:2.0", 1).replace("replicas: 1", "replicas: three");
    let sha2 = s.commit(&[("web.yaml", bad)], "web 2.0 with a replica count the schema refuses");
    app.ferry_sync();
    let status = app.wait_refused("ValidationFailed", &sha2, T);
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(message.contains(&format!("Deployment {ns}/web")), "the message must name the object: {message}");
    assert!(message.contains("nothing was applied"), "{message}");
    assert_eq!(rv(&s.get("deployment", Some(&ns), "web").unwrap()), web_rv, "web was written");
    assert!(revision_field(&status, "lastAppliedRevision").contains(&sha1), "{}", summary(&status));
}

// ---------------------------------------------------------------------------------------------
// Drift. Intervals are long (1h): only ferry's watches can notice within the deadlines here.

#[test]
fn drift_by_edit_and_by_delete_is_reverted_with_self_heal() {
    let s = Scenario::new("sync-heal");
    let ns = s.ns().to_string();
    let sha = s.commit(
        &[
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("service.yaml", service("web", None)),
        ],
        "settings and a service",
    );
    let app = s.create_app(s.default_app("heal").interval("1h"));
    app.wait_synced(&sha, T);

    // kubectl patch (as kubectl edit would) of a field ferry manages.
    s.edit_settings_color("red");
    wait_until("ferry to put color back to blue", T, || match s.cm_value("settings", "color").as_deref() {
        Some("blue") => Ok(()),
        other => Err(format!("color is {other:?}")),
    });
    app.wait_event("Normal", "DriftCorrected", &[&sha[..7]], T);

    // kubectl delete: recreated.
    let old_uid = uid(&s.get("service", Some(&ns), "web").unwrap());
    s.kubectl_ok(&["-n", &ns, "delete", "service", "web"]);
    let svc = wait_until("ferry to recreate service web", T, || match s.get("service", Some(&ns), "web") {
        Some(svc) if uid(&svc) != old_uid => Ok(svc),
        Some(_) => Err("the old service is still there".into()),
        None => Err("no service web".into()),
    });
    assert_managed_by(&svc, &ns, "heal");
    app.wait_synced(&sha, T);
}

#[test]
fn a_deleted_namespace_is_recreated_with_its_objects_under_self_heal() {
    let s = Scenario::new("sync-nsheal");
    let ns = s.ns().to_string();
    let dest = format!("{ns}-dest");
    s.delete_later(&["namespace", &dest]);
    let sha = s.commit(
        &[
            ("namespace.yaml", namespace(&dest)),
            ("config.yaml", configmap("settings", Some(&dest), &[("color", "blue")])),
        ],
        "a namespace and a configmap in it",
    );
    let app = s.create_app(s.default_app("nsheal").interval("1h"));
    app.wait_synced(&sha, T);
    let old_uid = uid(&s.get("namespace", None, &dest).unwrap());

    // Deleting the namespace takes its ConfigMap with it; while it terminates, nothing can be
    // created in it, and ferry must retry rather than give up until the next interval.
    s.kubectl_ok(&["delete", "namespace", &dest, "--wait=true", "--timeout=120s"]);
    let cm = wait_until("ferry to recreate the namespace and its configmap", T, || {
        let ns_now = s.get("namespace", None, &dest).ok_or("no namespace yet")?;
        if uid(&ns_now) == old_uid {
            return Err("the old namespace is still there".to_string());
        }
        s.get("configmap", Some(&dest), "settings").ok_or_else(|| "no configmap yet".to_string())
    });
    assert_eq!(cm["data"]["color"], "blue");
    assert_managed_by(&cm, &ns, "nsheal");
    app.wait_synced(&sha, T);
}

#[test]
fn drift_by_edit_is_only_reported_without_self_heal() {
    let s = Scenario::new("sync-drift-edit");
    let ns = s.ns().to_string();
    let sha = s.commit(&[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "settings");
    let app = s.create_app(s.default_app("watch").interval("1h").self_heal(false));
    app.wait_synced(&sha, T);

    s.edit_settings_color("red");
    let status = app.wait_not_ready("DriftDetected", T);
    assert_eq!(status["status"]["sync"]["status"], "OutOfSync", "{}", summary(&status));
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(
        message.contains(&format!("ConfigMap {ns}/settings")),
        "the message must name the object: {message}"
    );
    // ferry has looked at the drift (it reported it) and must have left it alone.
    assert_eq!(
        s.cm_value("settings", "color").as_deref(),
        Some("red"),
        "ferry reverted drift without selfHeal"
    );
    app.wait_event("Warning", "DriftDetected", &["settings"], T);
}

#[test]
fn drift_by_delete_is_only_reported_without_self_heal() {
    let s = Scenario::new("sync-drift-delete");
    let ns = s.ns().to_string();
    let sha = s.commit(
        &[
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("service.yaml", service("web", None)),
        ],
        "settings and a service",
    );
    let app = s.create_app(s.default_app("watch").interval("1h").self_heal(false));
    app.wait_synced(&sha, T);

    s.kubectl_ok(&["-n", &ns, "delete", "service", "web"]);
    // Either outcome ends the wait, so that recreating the Service fails with that finding
    // rather than with a timeout.
    let status = app.wait("Ready=False with reason DriftDetected, or service web recreated", T, |app| {
        if s.get("service", Some(&ns), "web").is_some() {
            return Ok(Err(app.clone()));
        }
        let ready = condition(app, "Ready").ok_or("no Ready condition")?;
        if ready["status"] == "False" && ready["reason"] == "DriftDetected" {
            Ok(Ok(app.clone()))
        } else {
            Err(format!("Ready is {}/{}", ready["status"], ready["reason"]))
        }
    });
    let status = status.unwrap_or_else(|app| {
        panic!("ferry recreated the deleted service web although selfHeal is off; status: {}", summary(&app))
    });
    assert_eq!(status["status"]["sync"]["status"], "OutOfSync", "{}", summary(&status));
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(message.contains(&format!("Service {ns}/web")), "the message must name the object: {message}");
    assert!(
        s.get("service", Some(&ns), "web").is_none(),
        "ferry recreated a deleted object without selfHeal"
    );
    app.wait_event("Warning", "DriftDetected", &["web"], T);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("blue"));
}

#[test]
fn without_automated_sync_changes_are_only_reported() {
    let s = Scenario::new("sync-manual");
    let sha = s.commit(&[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "settings");
    let app = s.create_app(s.default_app("manual").automated(false));
    let status = app.wait_not_ready("OutOfSync", T);
    assert_eq!(status["status"]["sync"]["status"], "OutOfSync", "{}", summary(&status));
    assert!(
        status["status"]["sync"]["revision"].as_str().unwrap_or_default().contains(&sha),
        "{}",
        summary(&status)
    );
    assert!(s.cm_value("settings", "color").is_none(), "ferry applied without automated sync");

    app.patch(&json!({"spec": {"syncPolicy": {"automated": true}}}));
    app.wait_synced(&sha, T);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("blue"));
}

// ---------------------------------------------------------------------------------------------
// Ownership and multi-tenancy.

#[test]
fn two_applications_claiming_one_object_conflict_and_leave_it_alone() {
    let s = Scenario::new("sync-conflict");
    let ns = s.ns().to_string();
    let sha1 =
        s.commit(&[("shared.yaml", configmap("shared", None, &[("from", "owner")]))], "owner's configmap");
    let owner = s.create_app(s.default_app("owner"));
    owner.wait_synced(&sha1, T);
    let shared_before = s.get("configmap", Some(&ns), "shared").unwrap();

    s.commit_in(
        "other",
        &[
            ("shared.yaml", configmap("shared", None, &[("from", "claimer")])),
            ("mine.yaml", configmap("claimer-only", None, &[("from", "claimer")])),
        ],
        "claimer's configmaps",
    );
    let claimer = s.create_app(s.default_app("claimer").path("other"));
    let status = claimer.wait_not_ready("OwnershipConflict", T);
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(
        message.contains(&format!("ConfigMap {ns}/shared")),
        "the message must name the object: {message}"
    );
    assert!(message.contains(&format!("{ns}/owner")), "the message must name the owner: {message}");
    let shared = s.get("configmap", Some(&ns), "shared").expect("shared was deleted");
    assert_eq!(rv(&shared), rv(&shared_before), "the claimer modified shared: {shared}");
    assert_eq!(shared["metadata"]["labels"]["ferry.dev/app-name"], "owner");
    assert!(
        s.get("configmap", Some(&ns), "claimer-only").is_none(),
        "a conflicting revision was partly applied"
    );
    owner.wait_event("Warning", "OwnershipConflict", &["claimer"], T);
    assert_condition(&owner.json(), "Ready", "True");

    // Deleting the claimer (prune on) must not take the owner's object with it.
    s.kubectl_ok(&["-n", &ns, "delete", "applications.ferry.dev", "claimer", "--wait=false"]);
    wait_until("Application claimer to be gone", T, || match claimer.get() {
        None => Ok(()),
        Some(app) => Err(format!("still there: {}", summary(&app))),
    });
    let shared = s.get("configmap", Some(&ns), "shared").expect("deleting the claimer deleted shared");
    assert_eq!(rv(&shared), rv(&shared_before), "deleting the claimer modified shared");
}

#[test]
fn impersonation_refuses_objects_outside_the_service_accounts_rbac() {
    let s = Scenario::new("sync-tenant");
    let ns = s.ns().to_string();
    let other = format!("{ns}-other");
    s.kubectl_ok(&["create", "namespace", &other]);
    s.delete_later(&["namespace", &other]);
    // The ServiceAccount may do anything with ConfigMaps in the test namespace, nothing else.
    s.cluster.apply(&format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: deployer, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: configmaps, namespace: {ns}}}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: deployer-configmaps, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmaps}}
subjects:
- {{kind: ServiceAccount, name: deployer, namespace: {ns}}}
"#
    ));
    let sha1 = s.commit(&[("allowed.yaml", configmap("allowed", None, &[("v", "1")]))], "allowed v1");
    let app = s.create_app(s.default_app("tenant").service_account("deployer"));
    app.wait_synced(&sha1, T);

    let sha2 = s.commit(
        &[
            ("allowed.yaml", configmap("allowed", None, &[("v", "2")])),
            ("outside.yaml", configmap("outside", Some(&other), &[("v", "2")])),
        ],
        "allowed v2 and a configmap in a namespace the ServiceAccount may not write",
    );
    app.ferry_sync();
    let status = app.wait_refused("ValidationFailed", &sha2, T);
    assert_condition(&status, "Stalled", "True");
    let message = ready_message(&status);
    assert!(
        message.contains(&format!("ConfigMap {other}/outside")),
        "the message must name the object: {message}"
    );
    assert!(
        message.to_ascii_lowercase().contains("forbidden"),
        "the message must carry the API server's words: {message}"
    );
    assert!(
        s.get("configmap", Some(&other), "outside").is_none(),
        "ferry wrote outside the ServiceAccount's RBAC"
    );
    assert_eq!(s.cm_value("allowed", "v").as_deref(), Some("1"), "part of a refused revision was applied");
}

// ---------------------------------------------------------------------------------------------
// Suspend and deletion.

#[test]
fn a_suspended_application_writes_nothing_until_resumed() {
    let s = Scenario::new("sync-suspend");
    let sha1 = s.commit(&[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "blue");
    let app = s.create_app(s.default_app("paused").interval("1h"));
    app.wait_synced(&sha1, T);

    app.patch(&json!({"spec": {"suspend": true}}));
    app.wait_not_ready("Suspended", T);

    // While suspended: drift, a new commit, and a manual refresh.
    s.edit_settings_color("red");
    let sha2 = s.commit(
        &[
            ("config.yaml", configmap("settings", None, &[("color", "green")])),
            ("new.yaml", configmap("new-one", None, &[("k", "v")])),
        ],
        "green and a new configmap",
    );
    app.annotate_reconcile_at();
    // A spec change while suspended: once ferry reports its generation, it has reconciled after
    // everything above, and must not have written any of it.
    app.patch(&json!({"spec": {"interval": "2h"}}));
    let status = app.wait_not_ready("Suspended", T);
    assert_eq!(
        s.cm_value("settings", "color").as_deref(),
        Some("red"),
        "a suspended Application corrected drift"
    );
    assert!(s.cm_value("new-one", "k").is_none(), "a suspended Application applied a new revision");
    assert!(!revision_field(&status, "lastAppliedRevision").contains(&sha2), "{}", summary(&status));

    app.patch(&json!({"spec": {"suspend": false}}));
    app.wait_synced(&sha2, T);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("green"));
    assert_eq!(s.cm_value("new-one", "k").as_deref(), Some("v"));
}

fn delete_app_and_wait(s: &Scenario, app: &FerryApp) {
    s.kubectl_ok(&["-n", s.ns(), "delete", "applications.ferry.dev", &app.name, "--wait=false"]);
    wait_until(&format!("Application {} to be gone", app.name), T, || match app.get() {
        None => Ok(()),
        Some(a) => Err(format!("still there: finalizers {} {}", a["metadata"]["finalizers"], summary(&a))),
    });
}

#[test]
fn deleting_an_application_with_prune_deletes_its_objects() {
    let s = Scenario::new("sync-delete");
    let ns = s.ns().to_string();
    let gone_ns = format!("{ns}-gone");
    s.delete_later(&["namespace", &gone_ns]);
    let sha = s.commit(
        &[
            ("namespace.yaml", namespace(&gone_ns)),
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("elsewhere.yaml", configmap("elsewhere", Some(&gone_ns), &[("k", "v")])),
            ("deployment.yaml", deployment("web", None, "registry.example/web:1.0", 1)),
        ],
        "objects to delete",
    );
    let app = s.create_app(s.default_app("doomed"));
    app.wait_synced(&sha, T);

    delete_app_and_wait(&s, &app);
    // The finalizer deletes first and lets the Application go after.
    assert!(s.get("configmap", Some(&ns), "settings").is_none(), "settings outlived its Application");
    let deleting = |o: Option<Value>| o.is_none_or(|o| !o["metadata"]["deletionTimestamp"].is_null());
    assert!(deleting(s.get("deployment", Some(&ns), "web")), "deployment web was not deleted");
    assert!(deleting(s.get("namespace", None, &gone_ns)), "namespace {gone_ns} was not deleted");
    wait_until("deployment web to be gone", T, || {
        s.get("deployment", Some(&ns), "web").map_or(Ok(()), |_| Err("still there".to_string()))
    });
}

#[test]
fn deleting_an_application_without_prune_keeps_its_objects() {
    let s = Scenario::new("sync-orphan");
    let ns = s.ns().to_string();
    let sha = s.commit(
        &[
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("deployment.yaml", deployment("web", None, "registry.example/web:1.0", 1)),
        ],
        "objects to keep",
    );
    let app = s.create_app(s.default_app("orphaning").prune(false));
    // prune on, but spec.deletionPolicy: Orphan keeps the objects when the Application goes.
    let sha2 = s.commit_in("other", &[("kept.yaml", configmap("kept", None, &[("k", "v")]))], "kept");
    let overriding = s.create_app(s.default_app("overriding").path("other").deletion_policy("Orphan"));
    app.wait_synced(&sha, T);
    overriding.wait_synced(&sha2, T);
    let cm_uid = uid(&s.get("configmap", Some(&ns), "settings").unwrap());
    let deploy_uid = uid(&s.get("deployment", Some(&ns), "web").unwrap());
    let kept_uid = uid(&s.get("configmap", Some(&ns), "kept").unwrap());

    delete_app_and_wait(&s, &app);
    delete_app_and_wait(&s, &overriding);
    let cm = s.get("configmap", Some(&ns), "settings").expect("settings was deleted without prune");
    assert_eq!(uid(&cm), cm_uid);
    assert!(cm["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(cm["data"]["color"], "blue");
    let deploy = s.get("deployment", Some(&ns), "web").expect("web was deleted without prune");
    assert_eq!(uid(&deploy), deploy_uid);
    assert!(deploy["metadata"]["deletionTimestamp"].is_null(), "web is being deleted");
    let kept =
        s.get("configmap", Some(&ns), "kept").expect("kept was deleted despite deletionPolicy: Orphan");
    assert_eq!(uid(&kept), kept_uid);
}

// ---------------------------------------------------------------------------------------------
// Crashes and outages.

#[test]
fn ferry_killed_in_the_middle_of_a_sync_converges_after_a_restart() {
    const N: usize = 600;
    let mut s = Scenario::new("sync-kill");
    let ns = s.ns().to_string();
    let manifests = |rev: &str| -> String {
        docs(
            &(0..N)
                .map(|i| configmap(&format!("cm-{i:03}"), None, &[("index", &i.to_string()), ("rev", rev)]))
                .collect::<Vec<_>>(),
        )
    };
    let sha1 = s.commit(&[("many.yaml", manifests("1"))], "600 configmaps, rev 1");
    let app = s.create_app(s.default_app("bulk"));
    let selector = format!("ferry.dev/app-name=bulk,ferry.dev/app-namespace={ns}");
    let cluster = s.cluster.clone();
    let count = || -> usize {
        cluster
            .kubectl_ok(&["get", "configmaps", "--all-namespaces", "-l", &selector, "-o", "name"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    // SIGKILL as soon as the first object lands, seen through a watch: polling with kubectl is
    // slower than ferry applying all of them.
    let mut watch = cluster
        .kubectl_command()
        .args(["get", "configmaps", "--all-namespaces", "-l", &selector, "--watch", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl get --watch");
    let mut first = String::new();
    let stdout = watch.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    if let Ok(line) = rx.recv_timeout(T) {
        first = line;
    }
    s.ferry.kill();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(!first.is_empty(), "no ConfigMap of the app appeared within {T:?}");
    let at_kill = count();
    eprintln!("ferry was killed with {at_kill} of {N} ConfigMaps applied (revision {})", &sha1[..7]);
    let killed_status = app.json();
    assert!(
        !killed_status["status"]["lastAppliedRevision"].as_str().unwrap_or_default().contains(&sha1),
        "ferry finished the first sync before it was killed; the test did not interrupt anything: {}",
        summary(&killed_status)
    );

    // The final content is pushed while ferry is down; it restarts with the same cache dir.
    let sha2 = s.commit(&[("many.yaml", manifests("2"))], "600 configmaps, rev 2");
    s.ferry.restart();
    let status = app.wait_synced(&sha2, Duration::from_secs(300));

    let list = get_json(&s.cluster, &["get", "configmaps", "--all-namespaces", "-l", &selector]).unwrap();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), N, "expected exactly {N} ConfigMaps of the app");
    let names: BTreeSet<String> =
        items.iter().map(|c| c["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let expected: BTreeSet<String> = (0..N).map(|i| format!("cm-{i:03}")).collect();
    assert_eq!(names, expected);
    let stale: Vec<&str> = items
        .iter()
        .filter(|c| c["data"]["rev"] != "2" || c["metadata"]["namespace"] != ns.as_str())
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(stale.is_empty(), "ConfigMaps without the final content: {stale:?}");
    let inv = inventory(&status);
    let want: BTreeSet<_> = expected.iter().map(|n| entry("", "v1", "ConfigMap", &ns, n)).collect();
    assert_eq!(inv, want, "the inventory is incomplete or has extras");
}

#[test]
fn ferry_recovers_when_the_api_server_restarts() {
    let bare = Bare::up("restart");
    let mut s = Scenario::on(bare.cluster.clone(), "sync-apirestart");
    let ns = s.ns().to_string();
    let sha1 = s.commit(&[("a.yaml", configmap("a", None, &[("v", "1")]))], "a v1");
    let app = s.create_app(s.default_app("survivor").interval("1h"));
    app.wait_synced(&sha1, T);

    s.cluster.restart_apiserver();
    assert!(s.ferry.is_running(), "ferry exited when the API server restarted:\n{}", s.ferry.logs());

    // The Application watch recovered: a manual refresh picks up a new commit.
    let sha2 = s.commit(
        &[("a.yaml", configmap("a", None, &[("v", "2")])), ("b.yaml", configmap("b", None, &[("v", "2")]))],
        "a v2, b",
    );
    app.ferry_sync();
    app.wait_synced(&sha2, T);
    assert_eq!(s.cm_value("a", "v").as_deref(), Some("2"));
    assert_eq!(s.cm_value("b", "v").as_deref(), Some("2"));

    // The object watches recovered too: a deletion is noticed and healed.
    let old = uid(&s.get("configmap", Some(&ns), "b").unwrap());
    s.kubectl_ok(&["-n", &ns, "delete", "configmap", "b"]);
    wait_until("ferry to recreate configmap b", T, || match s.get("configmap", Some(&ns), "b") {
        Some(cm) if uid(&cm) != old => Ok(()),
        Some(_) => Err("the old b is still there".to_string()),
        None => Err("no configmap b".to_string()),
    });

    let exit = s.ferry.stop().expect("ferry was running");
    assert!(exit.success(), "ferry exited with {exit} after SIGTERM");
    drop(s);
    drop(bare);
}
