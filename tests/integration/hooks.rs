//! Hooks and sync waves (issue 22) against the real control plane: Argo CD hooks with
//! `generateName` and delete policies, a failing PreSync hook and its SyncFail hook, sync waves
//! each Healthy before the next, and Helm's install and upgrade hooks.
//!
//! Order is shown without timing anything: a Job or Deployment that must stay unfinished is
//! scheduled only on a node label this test owns (`Gate`), so what ferry must not do yet is
//! checked while it provably cannot be done, and the gate is opened afterwards.

use serde_json::{Value, json};

use crate::support::{
    Scenario, T, condition, configmap, deployment, docs, ferry_cli, ferry_diff, get_json, metric, wait_until,
};

const NODE: &str = "kwok-node-0";

/// A node label only this test's pods select: closed until opened, removed when dropped.
struct Gate<'a> {
    s: &'a Scenario,
    key: String,
}

impl<'a> Gate<'a> {
    fn new(s: &'a Scenario) -> Gate<'a> {
        Gate::named(s, "gate")
    }

    fn named(s: &'a Scenario, name: &str) -> Gate<'a> {
        Gate { s, key: format!("ferry.dev/{name}-{}", s.ns()) }
    }

    /// `nodeSelector` lines for a pod template (indented for it).
    fn selector(&self) -> String {
        format!("      nodeSelector: {{{}: open}}\n", self.key)
    }

    fn open(&self) {
        self.s.kubectl_ok(&["label", "node", NODE, &format!("{}=open", self.key), "--overwrite"]);
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let _ = self.s.cluster.kubectl(&["label", "node", NODE, &format!("{}-", self.key)]);
    }
}

/// A Job: `name` is `name: x` or `generateName: x-`; `pod` extra pod-spec lines; `deadline`
/// its activeDeadlineSeconds (a Job no node takes fails when it passes).
fn job(name: &str, annotations: &[(&str, &str)], pod: &str, deadline: u32) -> String {
    let annotations: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  {name}\n  annotations: {}\nspec:\n  backoffLimit: 0\n  activeDeadlineSeconds: {deadline}\n  template:\n    spec:\n      restartPolicy: Never\n{pod}      containers:\n      - name: run\n        image: registry.example/tools:1\n",
        Value::Object(annotations)
    )
}

/// A pod-spec line no node matches: the Job fails at its deadline.
const NO_NODE: &str = "      nodeSelector: {ferry.dev/no-such-node: \"true\"}\n";

/// `value` with `annotations` added under `metadata:` of a one-document manifest.
fn annotated(manifest: &str, annotations: &[(&str, &str)]) -> String {
    let lines: Vec<String> = annotations.iter().map(|(k, v)| format!("    {k}: \"{v}\"\n")).collect();
    manifest.replacen("metadata:\n", &format!("metadata:\n  annotations:\n{}", lines.concat()), 1)
}

fn reason(app: &Value) -> (String, String) {
    let ready = condition(app, "Ready").unwrap_or(&Value::Null);
    (ready["reason"].as_str().unwrap_or("").into(), ready["message"].as_str().unwrap_or("").into())
}

fn names_of(s: &Scenario, kind: &str) -> Vec<String> {
    let list = get_json(&s.cluster, &["-n", s.ns(), "get", kind]).unwrap_or(Value::Null);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string)).collect()
}

fn created(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_pre_sync_migration_with_generate_name_runs_once_per_revision_before_anything_is_applied() {
    let s = Scenario::new("presync");
    let ns = s.ns().to_string();
    let gate = Gate::new(&s);
    let migrate =
        job("generateName: migrate-", &[("argocd.argoproj.io/hook", "PreSync")], &gate.selector(), 600);
    let v1 = s.commit(
        &[
            ("web.yaml", deployment("web", None, "registry.example/web:1", 1)),
            ("migrate.yaml", migrate.clone()),
        ],
        "v1 with a migration",
    );
    let app = s.create_app(s.default_app("shop").interval("1h"));

    // The migration runs (it cannot finish: no node takes it yet) and nothing else is applied.
    let waiting = app.wait("the PreSync hook running", T, |a| {
        let (why, message) = reason(a);
        (why == "Syncing" && message.contains(&format!("PreSync hooks running: Job {ns}/migrate-")))
            .then(|| a.clone())
            .ok_or_else(|| format!("{why}: {message}"))
    });
    let run = &waiting["status"]["progress"]["hooks"][0];
    assert_eq!(run["phase"], "PreSync", "{run}");
    assert_eq!(run["hook"], format!("Job {ns}/migrate-"), "{run}");
    let first_job = run["object"]["name"].as_str().expect("the Job's generated name").to_string();
    assert!(first_job.starts_with("migrate-") && first_job.len() > "migrate-".len(), "{first_job}");
    assert!(s.get("deployment", Some(&ns), "web").is_none(), "applied before the PreSync hook ended");
    let inventory = waiting["status"]["inventory"].to_string();
    assert!(!inventory.contains("migrate"), "a hook is never in the inventory: {inventory}");
    let said = ferry_cli(&s.cluster, &["status", "shop", "-n", &ns]);
    assert!(said.contains("Sync phase    PreSync Running") && said.contains(&first_job), "{said}");

    // Once it completes, the revision is applied: after the Job completed.
    gate.open();
    app.wait_synced(&v1, T);
    let job_done = s.get("job", Some(&ns), &first_job).expect("the PreSync Job stays (BeforeHookCreation)");
    let completed = job_done["status"]["completionTime"].as_str().expect("completed").to_string();
    let web = s.get("deployment", Some(&ns), "web").expect("the Deployment");
    assert!(
        created(&web) >= completed,
        "Deployment created {} before the Job completed {completed}",
        created(&web)
    );

    // Drift is corrected without running the hook again.
    s.kubectl_ok(&["-n", &ns, "scale", "deployment", "web", "--replicas=3"]);
    wait_until("the drift corrected", T, || {
        let web = s.get("deployment", Some(&ns), "web").ok_or("gone")?;
        (web["spec"]["replicas"] == 1)
            .then_some(())
            .ok_or_else(|| format!("replicas {}", web["spec"]["replicas"]))
    });
    app.wait_synced(&v1, T);
    assert_eq!(
        names_of(&s, "jobs"),
        std::slice::from_ref(&first_job),
        "the hook ran again on a drift correction"
    );

    // A new revision runs it again, and the previous run's object goes first (BeforeHookCreation).
    let v2 = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:2", 1))], "v2");
    app.ferry_sync();
    let synced = app.wait_synced(&v2, T);
    let second_job = synced["status"]["progress"]["hooks"][0]["object"]["name"].as_str().unwrap().to_string();
    assert_ne!(second_job, first_job);
    wait_until("only the new run's Job left", T, || {
        let jobs = names_of(&s, "jobs");
        (jobs == [second_job.clone()]).then_some(()).ok_or_else(|| format!("{jobs:?}"))
    });

    // The hook's objects go with the Application.
    s.kubectl_ok(&["-n", &ns, "delete", "application", "shop", "--wait=false"]);
    wait_until("the hook Job deleted with the Application", T, || {
        let jobs = names_of(&s, "jobs");
        jobs.is_empty().then_some(()).ok_or_else(|| format!("{jobs:?}"))
    });
}

#[test]
fn a_failed_pre_sync_hook_applies_nothing_of_its_revision_and_runs_the_sync_fail_hooks() {
    let s = Scenario::new("hookfail");
    let ns = s.ns().to_string();
    let v1 = s.commit(&[("web.yaml", deployment("web", None, "registry.example/web:1", 1))], "v1");
    let app = s.create_app(s.default_app("shop").interval("1h"));
    app.wait_synced(&v1, T);

    let failing = job("generateName: migrate-", &[("argocd.argoproj.io/hook", "PreSync")], NO_NODE, 3);
    let notify = annotated(
        &configmap("sync-failed", None, &[("why", "migration")]),
        &[("argocd.argoproj.io/hook", "SyncFail")],
    );
    let v2 = s.commit(
        &[
            ("web.yaml", deployment("web", None, "registry.example/web:2", 1)),
            ("migrate.yaml", failing),
            ("notify.yaml", notify),
        ],
        "v2 with a failing migration",
    );
    app.ferry_sync();
    let failed = app.wait_not_ready("HookFailed", T);
    let (_, message) = reason(&failed);
    assert!(message.contains(&format!("PreSync hook Job {ns}/migrate-")), "{message}");
    assert!(message.contains("DeadlineExceeded"), "the Job's own words: {message}");
    let progress = &failed["status"]["progress"];
    assert_eq!(progress["revision"].as_str().map(|r| r.contains(&v2)), Some(true), "{progress}");
    assert_eq!((progress["phase"].as_str(), progress["result"].as_str()), (Some("PreSync"), Some("Failed")));
    app.wait_event("Warning", "HookFailed", &["migrate-"], T);

    // Nothing of v2 was applied; the SyncFail hook ran.
    let web = s.get("deployment", Some(&ns), "web").unwrap();
    assert_eq!(web["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/web:1");
    wait_until("the SyncFail hook created", T, || {
        s.cm_value("sync-failed", "why").filter(|v| v == "migration").ok_or_else(|| "not yet".to_string())
    });
    let runs = app.json()["status"]["progress"]["hooks"].clone();
    assert!(runs.as_array().unwrap().iter().any(|r| r["phase"] == "SyncFail"), "{runs}");

    // Reconciling again (every 3 s) does not retry the failed revision on its own ...
    let pre_sync_run = |a: &Value| -> String {
        let runs = a["status"]["progress"]["hooks"].as_array().cloned().unwrap_or_default();
        let run = runs.iter().find(|r| r["phase"] == "PreSync").cloned().unwrap_or(Value::Null);
        run["object"]["name"].as_str().unwrap_or_default().to_string()
    };
    let failed_run = pre_sync_run(&app.json());
    app.patch(&json!({"spec": {"interval": "3s"}}));
    let again = app.wait_not_ready("HookFailed", T);
    let retried_by_spec_change = pre_sync_run(&again);
    assert_ne!(retried_by_spec_change, failed_run, "a spec change syncs the revision again, hooks and all");
    let failed_passes = || metric(&s.ferry, "ferry_reconcile_total{result=\"error\"}");
    let before = failed_passes();
    wait_until("3 more failed passes", T, || {
        let now = failed_passes();
        (now >= before + 3.0).then_some(()).ok_or(format!("{now}, from {before}"))
    });
    let later = app.wait_not_ready("HookFailed", T);
    assert_eq!(pre_sync_run(&later), retried_by_spec_change, "retried on its own");
    // ... and `ferry sync` does, as a new sync does in Argo CD.
    app.ferry_sync();
    app.wait("the PreSync hook run again", T, |a| {
        let run = pre_sync_run(a);
        (run != retried_by_spec_change && !run.is_empty()).then_some(()).ok_or(run)
    });
    assert_eq!(
        s.get("deployment", Some(&ns), "web").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/web:1"
    );
}

#[test]
fn a_post_sync_hook_with_hook_succeeded_is_deleted_once_it_succeeded() {
    let s = Scenario::new("postsync");
    let ns = s.ns().to_string();
    let smoke = job(
        "name: smoke",
        &[
            ("argocd.argoproj.io/hook", "PostSync"),
            ("argocd.argoproj.io/hook-delete-policy", "HookSucceeded"),
        ],
        "",
        600,
    );
    let v1 = s.commit(
        &[("settings.yaml", configmap("settings", None, &[("a", "1")])), ("smoke.yaml", smoke)],
        "v1",
    );
    let app = s.create_app(s.default_app("shop").interval("1h"));
    let synced = app.wait_synced(&v1, T);
    assert_eq!(synced["status"]["verification"]["phase"], "Succeeded", "{}", synced["status"]);
    let run = &synced["status"]["progress"]["hooks"][0];
    assert_eq!(
        (run["phase"].as_str(), run["result"].as_str()),
        (Some("PostSync"), Some("Succeeded")),
        "{run}"
    );
    assert_eq!(run["deleted"], true, "{run}");
    wait_until("the succeeded hook deleted", T, || {
        s.get("job", Some(&ns), "smoke")
            .map_or(Ok(()), |j| Err(format!("still there: {}", j["metadata"]["uid"])))
    });
}

#[test]
fn sync_waves_apply_in_order_each_after_the_one_before_is_healthy() {
    let s = Scenario::new("waves");
    let ns = s.ns().to_string();
    let gate = Gate::new(&s);
    let wave = |w: &'static str| [("argocd.argoproj.io/sync-wave", w)];
    // The Deployment of wave 0 can become available only once the gate opens.
    let web = deployment("web", None, "registry.example/web:1", 1)
        .replace("    spec:\n      containers:", &format!("    spec:\n{}      containers:", gate.selector()));
    let v1 = s.commit(
        &[(
            "all.yaml",
            docs(&[
                annotated(&configmap("second", None, &[("w", "1")]), &wave("1")),
                annotated(&web, &wave("0")),
                annotated(&configmap("third", None, &[("w", "2")]), &wave("2")),
                annotated(&configmap("first", None, &[("w", "-1")]), &wave("-1")),
                // A Sync hook of wave 1: created with its wave's objects, not before.
                annotated(
                    &configmap("sync-hook", None, &[("w", "1")]),
                    &[("argocd.argoproj.io/hook", "Sync"), ("argocd.argoproj.io/sync-wave", "1")],
                ),
            ]),
        )],
        "four waves",
    );
    let app = s.create_app(s.default_app("shop").interval("1h"));
    let waiting = app.wait("waiting for wave 0", T, |a| {
        let (why, message) = reason(a);
        (why == "Syncing" && message.contains("sync wave 0 is not Healthy yet"))
            .then(|| a.clone())
            .ok_or_else(|| format!("{why}: {message}"))
    });
    assert_eq!(waiting["status"]["progress"]["wave"], 0, "{}", waiting["status"]["progress"]);
    assert!(
        s.get("configmap", Some(&ns), "first").is_some() && s.get("deployment", Some(&ns), "web").is_some()
    );
    assert!(s.get("configmap", Some(&ns), "second").is_none(), "wave 1 applied before wave 0 was Healthy");
    assert!(s.get("configmap", Some(&ns), "third").is_none());
    assert!(
        s.get("configmap", Some(&ns), "sync-hook").is_none(),
        "a Sync hook of wave 1 ran before wave 0 was Healthy"
    );
    let said = ferry_cli(&s.cluster, &["status", "shop", "-n", &ns]);
    assert!(said.contains("Sync phase    Sync Running, wave 0"), "{said}");

    gate.open();
    app.wait_synced(&v1, T);
    let get = |kind: &str, name: &str| s.get(kind, Some(&ns), name).unwrap();
    let (first, web, second, third) = (
        get("configmap", "first"),
        get("deployment", "web"),
        get("configmap", "second"),
        get("configmap", "third"),
    );
    let available = web["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available" && c["status"] == "True"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .expect("web Available")
        .to_string();
    assert!(created(&first) <= created(&web), "wave -1 before wave 0");
    assert!(
        available <= created(&second),
        "wave 1 created {} before wave 0 was available at {available}",
        created(&second)
    );
    assert!(created(&second) <= created(&third), "wave 1 before wave 2");
    let hook = get("configmap", "sync-hook");
    assert!(available <= created(&hook), "the Sync hook of wave 1 ran before wave 0 was available");
    let synced = app.json();
    let run = &synced["status"]["progress"]["hooks"][0];
    assert_eq!((run["phase"].as_str(), run["wave"].as_i64()), (Some("Sync"), Some(1)), "{run}");
    assert!(
        !synced["status"]["inventory"].to_string().contains("sync-hook"),
        "a hook is never in the inventory"
    );
}

/// A chart whose ConfigMap hooks record which of Helm's hooks ran.
fn chart(version: &str) -> Vec<(&'static str, String)> {
    let hook = |name: &str, which: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    helm.sh/hook: {which}\n    helm.sh/hook-delete-policy: hook-failed\ndata:\n  version: {{{{ .Values.version | quote }}}}\n"
        )
    };
    vec![
        ("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 0.1.0\n".to_string()),
        ("values.yaml", format!("version: \"{version}\"\n")),
        (
            "templates/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: {{ .Values.version | quote }}\n".into(),
        ),
        ("templates/hooks.yaml", docs(&[hook("installed", "pre-install"), hook("upgraded", "pre-upgrade")])),
    ]
}

#[test]
fn helm_pre_install_runs_on_the_first_sync_only_and_pre_upgrade_only_on_later_ones() {
    let s = Scenario::new("helmhooks");
    let v1 = s.commit(&chart("1"), "chart v1");
    let app = s.create_app(s.default_app("shop").interval("1h"));
    let synced = app.wait_synced(&v1, T);
    assert_eq!(synced["status"]["progress"]["firstSync"], true);
    assert_eq!(s.cm_value("installed", "version").as_deref(), Some("1"), "pre-install ran");
    assert!(s.cm_value("upgraded", "version").is_none(), "pre-upgrade ran on the install");
    let installed_uid = s.get("configmap", Some(s.ns()), "installed").unwrap()["metadata"]["uid"].clone();

    let v2 = s.commit(&chart("2"), "chart v2");
    // `ferry diff` names the hooks a sync of v2 would run: the upgrade hook, not the install one.
    let (code, out, err) = ferry_diff(&s, &["shop", "-n", s.ns(), "--revision", "main"]);
    assert_eq!(code, 1, "{out}{err}");
    let upgraded = format!("PreSync wave 0: ConfigMap {}/upgraded", s.ns());
    assert!(out.contains("=== hooks") && out.contains(&upgraded), "{out}");
    assert!(!out.contains(&format!("ConfigMap {}/installed", s.ns())), "{out}");
    app.ferry_sync();
    let synced = app.wait_synced(&v2, T);
    let progress = &synced["status"]["progress"];
    assert_eq!(progress["firstSync"], false, "{progress}");
    let hooks: Vec<&str> =
        progress["hooks"].as_array().unwrap().iter().filter_map(|r| r["hook"].as_str()).collect();
    assert_eq!(hooks, [format!("ConfigMap {}/upgraded", s.ns())], "only the upgrade hook ran for v2");
    assert_eq!(s.cm_value("upgraded", "version").as_deref(), Some("2"));
    let installed = s.get("configmap", Some(s.ns()), "installed").unwrap();
    assert_eq!(installed["metadata"]["uid"], installed_uid, "pre-install ran again on an upgrade");
    assert_eq!(s.cm_value("settings", "version").as_deref(), Some("2"));
}

#[test]
fn deletion_hooks_run_before_and_after_the_objects_go_and_hold_the_finalizer_meanwhile() {
    let s = Scenario::new("delhooks");
    let ns = s.ns().to_string();
    let (pre, post) = (Gate::named(&s, "pre"), Gate::named(&s, "post"));
    let v1 = s.commit(
        &[
            ("settings.yaml", configmap("settings", None, &[("a", "1")])),
            (
                "pre.yaml",
                job("generateName: before-", &[("helm.sh/hook", "pre-delete")], &pre.selector(), 600),
            ),
            (
                "post.yaml",
                job(
                    "generateName: after-",
                    &[("argocd.argoproj.io/hook", "PostDelete")],
                    &post.selector(),
                    600,
                ),
            ),
        ],
        "v1 with deletion hooks",
    );
    let app = s.create_app(s.default_app("shop").interval("1h"));
    app.wait_synced(&v1, T);
    assert!(names_of(&s, "jobs").is_empty(), "a deletion hook ran on a sync: {:?}", names_of(&s, "jobs"));

    s.kubectl_ok(&["-n", &ns, "delete", "application", "shop", "--wait=false"]);
    // The PreDelete hook runs (it cannot finish yet) and the objects are all still there.
    app.wait("the PreDelete hook running", T, |a| {
        let p = &a["status"]["progress"];
        let running = p["phase"] == "PreDelete" && p["hooks"].to_string().contains("before-");
        running.then_some(()).ok_or_else(|| format!("{p}"))
    });
    assert_eq!(s.cm_value("settings", "a").as_deref(), Some("1"), "deleted before the PreDelete hook ended");

    // Then the objects go, and the PostDelete hook runs while the Application waits for it.
    pre.open();
    wait_until("the objects deleted and the PostDelete hook running", T, || {
        let a = app.get().ok_or("the Application went before its PostDelete hook ended")?;
        let jobs = names_of(&s, "jobs");
        let post_running =
            a["status"]["progress"]["phase"] == "PostDelete" && jobs.iter().any(|j| j.starts_with("after-"));
        (post_running && s.cm_value("settings", "a").is_none())
            .then_some(())
            .ok_or_else(|| format!("jobs {jobs:?}, progress {}", a["status"]["progress"]))
    });

    // Once it ended, the Application and every hook object are gone.
    post.open();
    wait_until("the Application and its hook objects gone", T, || {
        let jobs = names_of(&s, "jobs");
        (app.get().is_none() && jobs.is_empty()).then_some(()).ok_or_else(|| format!("jobs {jobs:?}"))
    });
}
