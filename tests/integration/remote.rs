//! Remote clusters (issue 23) end to end: Applications in the shared cluster deploy to extra
//! control planes (`Cluster::extra`, each its own etcd, API server, controller-manager,
//! scheduler and kwok node), reached through a `Cluster` object and the kubeconfig that
//! `scripts/remote-cluster-kubeconfig.sh` printed (`east` and `outage` in `--impersonate` mode,
//! where ferry's identity may only list, watch and impersonate; `west` in `--admin` mode).
//! Every Application here acts as a ServiceAccount, so every write is that ServiceAccount's,
//! which the remote cluster's RBAC must allow.
//!
//! The remote clusters are shared by the tests of this process; the one a test stops
//! (`outage`) is used by that test alone, under [`exclusively`].

use std::time::Instant;

use serde_json::{Value, json};

use crate::{
    rollout::{ERROR_QUERY, Exporter, analysis_step},
    support::{
        Cluster, Prometheus, Scenario, T, configmap, deployment, exclusively, ferry_diff, get_json, mode_of,
        register_cluster, remote_access, smoke_job, wait_until,
    },
};

/// The ServiceAccount the tests' Applications act as, here and (impersonated) there.
const DEPLOYER: &str = "deployer";

/// Prepares `remote` for the Applications of `s` acting as `service_account`: the Cluster
/// `name` and its kubeconfig Secret here, a ServiceAccount here that may read that Secret (an
/// Application uses only credentials it may read), and there the namespace and, when `grant`,
/// the `admin` ClusterRole for that ServiceAccount's user in it.
fn connect(s: &Scenario, remote: &Cluster, name: &str, service_account: &str, grant: bool) {
    let access = remote_access(remote, mode_of(remote));
    register_cluster(&s.cluster, s.ns(), name, &[("env", "test"), ("name", name)], &access.kubeconfig);
    let ns = s.ns();
    s.cluster.apply(
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, "namespace": ns}})
            .to_string(),
    );
    let role = format!("read-{name}-kubeconfig");
    s.cluster.apply(
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [format!("{name}-kubeconfig")]}],
        })
        .to_string(),
    );
    s.cluster.apply(&role_binding(
        ns,
        &role,
        "Role",
        &format!("system:serviceaccount:{ns}:{service_account}"),
    ));
    let _ = remote.kubectl(&["create", "namespace", ns]);
    if grant {
        grant_admin(remote, ns, service_account);
    }
}

/// There: the `admin` ClusterRole in the test namespace for the user ferry impersonates.
fn grant_admin(remote: &Cluster, ns: &str, service_account: &str) {
    remote.apply(&role_binding(
        ns,
        "admin",
        "ClusterRole",
        &format!("system:serviceaccount:{ns}:{service_account}"),
    ));
}

fn role_binding(ns: &str, role: &str, kind: &str, user: &str) -> String {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("{role}-for-test"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })
    .to_string()
}

/// A key of ConfigMap `name` in the test namespace of `cluster` (`None`: no such ConfigMap).
fn cm_value(cluster: &Cluster, ns: &str, name: &str, key: &str) -> Option<String> {
    get_json(cluster, &["-n", ns, "get", "configmap", name])
        .map(|cm| cm["data"][key].as_str().unwrap_or_default().to_string())
}

/// Waits until the Cluster `name` of `ns` says `ready` (`True`/`False`) in its status.
fn wait_cluster(local: &Cluster, ns: &str, name: &str, ready: &str) -> Value {
    wait_until(&format!("Cluster {name} Ready={ready}"), T, || {
        let cluster = get_json(local, &["-n", ns, "get", "clusters.ferry.dev", name]).ok_or("no Cluster")?;
        let status = cluster["status"]["conditions"][0]["status"].as_str().unwrap_or_default();
        if status == ready { Ok(cluster) } else { Err(format!("status: {}", cluster["status"])) }
    })
}

/// (status, reason, message) of the Ready condition.
fn ready(app: &Value) -> (String, String, String) {
    let c = crate::support::condition(app, "Ready").cloned().unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

#[test]
fn an_application_syncs_heals_prunes_diffs_and_deletes_in_a_remote_cluster() {
    let east = Cluster::extra("east");
    let s = Scenario::new("remote-sync");
    let ns = s.ns().to_string();
    connect(&s, east, "east", DEPLOYER, true);
    let v1 = s.commit(
        &[
            ("alpha.yaml", configmap("alpha", None, &[("k", "1")])),
            ("beta.yaml", configmap("beta", None, &[("k", "1")])),
        ],
        "v1",
    );
    // Hourly: only the watch of the remote cluster can bring a drift back early.
    let app = s.create_app(s.default_app("web").interval("1h").service_account(DEPLOYER).cluster("east"));
    app.wait_synced(&v1, T);
    assert_eq!(cm_value(east, &ns, "alpha", "k").as_deref(), Some("1"), "alpha is in the remote cluster");
    assert_eq!(s.cm_value("alpha", "k"), None, "and not in the local one");
    let managed = get_json(east, &["-n", &ns, "get", "configmap", "alpha"]).unwrap();
    let managers: Vec<&str> = managed["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"ferry"), "server-side applied as ferry: {managers:?}");

    // The Cluster's status: reachable, its version, one Application.
    let cluster = wait_cluster(&s.cluster, &ns, "east", "True");
    assert!(
        cluster["status"]["kubernetesVersion"].as_str().unwrap_or_default().starts_with("v1."),
        "{cluster}"
    );
    wait_until("the Cluster to count one Application", T, || {
        let c = get_json(&s.cluster, &["-n", &ns, "get", "clusters.ferry.dev", "east"]).ok_or("gone")?;
        if c["status"]["applications"] == 1 { Ok(()) } else { Err(format!("{}", c["status"])) }
    });

    // Drift in the remote cluster: a deleted object comes back, woken by that cluster's watch.
    east.kubectl_ok(&["-n", &ns, "delete", "configmap", "alpha"]);
    let deleted = Instant::now();
    wait_until("alpha back in the remote cluster", T, || {
        cm_value(east, &ns, "alpha", "k").ok_or_else(|| "not yet".to_string())
    });
    eprintln!("drift healed in the remote cluster {:?} after the delete", deleted.elapsed());

    // ferry diff reads the remote cluster: a change there, nothing here.
    s.git.commit_files("pr", &[("app/beta.yaml", &configmap("beta", None, &[("k", "2")]))], "beta 2");
    let (code, out, err) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "pr"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("0 to create, 1 to change, 0 to prune, 1 unchanged"), "{out}");
    assert!(out.contains(&format!("ConfigMap {ns}/beta")), "{out}");

    // Prune in the remote cluster.
    let v2 = s.remove(&["alpha.yaml"], "drop alpha");
    app.ferry_sync();
    app.wait_synced(&v2, T);
    wait_until("alpha pruned in the remote cluster", T, || match cm_value(east, &ns, "alpha", "k") {
        None => Ok(()),
        Some(v) => Err(format!("still there: {v}")),
    });
    assert_eq!(cm_value(east, &ns, "beta", "k").as_deref(), Some("1"));

    // Deleting the Application deletes its objects there.
    s.kubectl_ok(&["-n", &ns, "delete", "applications.ferry.dev", "web", "--wait=true", "--timeout=120s"]);
    assert_eq!(cm_value(east, &ns, "beta", "k"), None, "deleted with the Application");
}

#[test]
fn the_remote_cluster_refuses_what_its_rbac_does_not_grant_the_impersonated_service_account() {
    let east = Cluster::extra("east");
    let s = Scenario::new("remote-rbac");
    let ns = s.ns().to_string();
    connect(&s, east, "east", DEPLOYER, false);
    let v1 = s.commit(&[("settings.yaml", configmap("settings", None, &[("color", "blue")]))], "v1");
    let app = s.create_app(s.default_app("web").service_account(DEPLOYER).cluster("east"));
    let user = format!("system:serviceaccount:{ns}:{DEPLOYER}");
    let refused = app.wait("refused by the remote cluster's RBAC", T, |a| {
        let (status, _, message) = ready(a);
        if status == "False" && message.contains("forbidden") && message.contains(&user) {
            Ok(message)
        } else {
            Err(format!("Ready {status}: {message}"))
        }
    });
    assert_eq!(cm_value(east, &ns, "settings", "color"), None, "nothing written: {refused}");
    // ferry's own identity there could read; it never wrote in the Application's place.
    grant_admin(east, &ns, DEPLOYER);
    app.ferry_sync();
    app.wait_synced(&v1, T);
    assert_eq!(cm_value(east, &ns, "settings", "color").as_deref(), Some("blue"));

    // An Application whose ServiceAccount may not read the kubeconfig Secret does not use it.
    s.cluster.apply(
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "intruder", "namespace": ns}}).to_string(),
    );
    let other =
        s.create_app(s.default_app("intruder").path("other").service_account("intruder").cluster("east"));
    let message = other.wait("InvalidKubeconfig for a ServiceAccount that cannot read the Secret", T, |a| {
        let (status, reason, message) = ready(a);
        if status == "False" && reason == "InvalidKubeconfig" {
            Ok(message)
        } else {
            Err(format!("{reason}: {message}"))
        }
    });
    assert!(message.contains("cannot read the kubeconfig Secret"), "{message}");
}

/// A Deployment of one replica whose pod only a node labelled `gate=open` takes: it cannot be
/// Healthy, so the wave after it waits, until the test opens the gate.
fn gated_deployment(name: &str, gate: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      nodeSelector: {{{gate}: open}}\n      containers:\n      - name: app\n        image: registry.example/{name}:1\n"
    )
}

/// ConfigMap `name` with `n`, in sync wave 1.
fn wave_one_configmap(name: &str, n: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations: {{argocd.argoproj.io/sync-wave: \"1\"}}\ndata: {{\"n\": \"{n}\"}}\n"
    )
}

#[test]
fn a_remote_cluster_stopped_mid_sync_is_unknown_prunes_nothing_slows_no_one_and_converges_when_back() {
    let outage = Cluster::extra("outage");
    let _only_us = exclusively(outage);
    let s = Scenario::new("remote-outage");
    let ns = s.ns().to_string();
    connect(&s, outage, "outage", DEPLOYER, true);
    s.commit(
        &[
            ("one.yaml", configmap("one", None, &[("n", "1")])),
            ("two.yaml", configmap("two", None, &[("n", "1")])),
        ],
        "v1",
    );
    // Both Applications follow main: the remote one syncs the head (v1 plus the local files).
    let head = s.commit_in("other", &[("local.yaml", configmap("local", None, &[("n", "1")]))], "local v1");
    let remote = s.create_app(s.default_app("remote").service_account(DEPLOYER).cluster("outage"));
    let local = s.create_app(s.default_app("local").path("other"));
    remote.wait_synced(&head, T);

    // v2 adds, in wave 0, a Deployment that cannot be Healthy yet, changes `one` in wave 1 and
    // drops `two`: the sync applies wave 0 and waits, wave 1 and the prune still ahead.
    let gate = format!("ferry.dev/gate-{ns}");
    s.commit(
        &[("one.yaml", wave_one_configmap("one", "2")), ("gated.yaml", gated_deployment("gated", &gate))],
        "v2",
    );
    let v2 = s.remove(&["two.yaml"], "drop two");
    remote.ferry_sync();
    let syncing = |a: &Value| {
        let p = &a["status"]["progress"];
        let at = p["revision"].as_str().is_some_and(|r| r.ends_with(&v2));
        let (_, reason, message) = ready(a);
        if at && reason == "Syncing" { Ok(()) } else { Err(format!("{reason}: {message}; progress: {p}")) }
    };
    remote.wait("v2 syncing, wave 0 not Healthy", T, syncing);
    assert!(get_json(outage, &["-n", &ns, "get", "deployment", "gated"]).is_some(), "wave 0 applied");
    assert_eq!(cm_value(outage, &ns, "one", "n").as_deref(), Some("1"), "wave 1 not yet");

    // The remote API server stops mid-sync.
    outage.stop_apiserver();
    let unknown = remote.wait("Unknown with ClusterUnreachable", T, |a| {
        let (status, reason, message) = ready(a);
        if status == "Unknown" && reason == "ClusterUnreachable" {
            Ok(a.clone())
        } else {
            Err(format!("{status}/{reason}: {message}"))
        }
    });
    assert_eq!(unknown["status"]["sync"]["status"], "Unknown", "{}", unknown["status"]);
    assert_eq!(unknown["status"]["health"]["status"], "Unknown", "{}", unknown["status"]);
    wait_cluster(&s.cluster, &ns, "outage", "False");

    // The local Application syncs as usual meanwhile.
    let local_v2 =
        s.commit_in("other", &[("local.yaml", configmap("local", None, &[("n", "2")]))], "local v2");
    let asked = Instant::now();
    local.ferry_sync();
    local.wait_synced(&local_v2, T);
    eprintln!("a local sync took {:?} while the remote cluster was down", asked.elapsed());
    assert_eq!(s.cm_value("local", "n").as_deref(), Some("2"));

    // Back: nothing was pruned while it was down; the sync resumes by itself and, once wave 1
    // can be Healthy, finishes, and only then prunes `two`.
    outage.start_apiserver();
    assert_eq!(
        cm_value(outage, &ns, "two", "n").as_deref(),
        Some("1"),
        "nothing was pruned while it was down"
    );
    remote.wait("v2 syncing again once the cluster answers", T, syncing);
    assert_eq!(cm_value(outage, &ns, "two", "n").as_deref(), Some("1"), "no prune before the last wave");
    outage.kubectl_ok(&["label", "node", "kwok-node-0", &format!("{gate}=open"), "--overwrite"]);
    remote.wait_synced(&v2, T);
    assert_eq!(cm_value(outage, &ns, "one", "n").as_deref(), Some("2"), "wave 1 applied");
    assert_eq!(cm_value(outage, &ns, "two", "n"), None, "pruned once the sync finished");
    wait_cluster(&s.cluster, &ns, "outage", "True");
}

/// Waits until an Application following another (its revision is the bare commit) is Synced
/// and Ready at `sha`.
fn wait_follower(app: &crate::support::FerryApp, sha: &str) {
    app.wait(&format!("Synced and Ready at {}", &sha[..7]), T, |a| {
        let at = a["status"]["sync"]["revision"].as_str().is_some_and(|r| r.ends_with(sha));
        let (status, reason, message) = ready(a);
        if at && a["status"]["sync"]["status"] == "Synced" && status == "True" {
            Ok(())
        } else {
            Err(format!("{} {status}/{reason}: {message}", a["status"]["sync"]))
        }
    });
}

#[test]
fn staging_cluster_verified_by_its_postsync_job_promotes_to_the_production_cluster() {
    let (east, west) = (Cluster::extra("east"), Cluster::extra("west"));
    let s = Scenario::new("remote-promote");
    let ns = s.ns().to_string();
    connect(&s, east, "staging", DEPLOYER, true);
    connect(&s, west, "production", DEPLOYER, true);
    let web = |tag: &str, passes: bool| {
        vec![
            ("web.yaml", deployment("web", None, &format!("registry.example/web:{tag}"), 1)),
            ("smoke.yaml", smoke_job(passes)),
        ]
    };
    let v1 = s.commit(&web("1.0", true), "web 1.0");
    let staging = s.create_app(s.default_app("staging").service_account(DEPLOYER).cluster("staging"));
    let production = s.create_app(
        s.default_app("production").service_account(DEPLOYER).cluster("production").promoted_from("staging"),
    );
    staging.wait_synced(&v1, T);
    wait_follower(&production, &v1);
    let image = |c: &Cluster| {
        get_json(c, &["-n", &ns, "get", "deployment", "web"]).map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string()
        })
    };
    assert_eq!(image(west).as_deref(), Some("registry.example/web:1.0"));

    // 2.0 fails its smoke test in staging: production keeps 1.0.
    let v2 = s.commit(&web("2.0", false), "web 2.0, smoke fails");
    staging.ferry_sync();
    staging.wait("VerificationFailed at 2.0", T, |a| {
        let (status, reason, _) = ready(a);
        let at = a["status"]["sync"]["revision"].as_str().is_some_and(|r| r.ends_with(&v2));
        if status == "False" && reason == "VerificationFailed" && at {
            Ok(())
        } else {
            Err(format!("{status}/{reason}"))
        }
    });
    production.ferry_sync();
    crate::support::wait_reconciles(&s.ferry, 2.0);
    assert_eq!(
        image(west).as_deref(),
        Some("registry.example/web:1.0"),
        "production still runs the verified 1.0"
    );

    // 2.1 passes in staging and reaches production.
    let v3 = s.commit(&web("2.1", true), "web 2.1");
    staging.ferry_sync();
    staging.wait_synced(&v3, T);
    wait_follower(&production, &v3);
    assert_eq!(image(west).as_deref(), Some("registry.example/web:2.1"));
    assert_eq!(image(east).as_deref(), Some("registry.example/web:2.1"));
}

#[test]
fn a_canary_with_analysis_rolls_out_in_a_remote_cluster() {
    let west = Cluster::extra("west");
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(std::slice::from_ref(&exporter.addr));
    let s = Scenario::with_ferry_args("remote-canary", &["--prometheus-url", &prometheus.url()]);
    let ns = s.ns().to_string();
    connect(&s, west, "west", DEPLOYER, true);
    let shop =
        |tag: &str| vec![("shop.yaml", deployment("shop", None, &format!("registry.example/shop:{tag}"), 5))];
    let v1 = s.commit(&shop("1.0"), "shop 1.0");
    let steps =
        json!([{"setWeight": 20}, {"pause": {}}, analysis_step("result < 0.05", 2), {"setWeight": 60}]);
    let app =
        s.create_app(s.default_app("shop").service_account(DEPLOYER).cluster("west").canary("shop", steps));
    app.wait_synced(&v1, T);
    let replicas = |name: &str| {
        get_json(west, &["-n", &ns, "get", "deployment", name]).map(|d| {
            let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (
                d["spec"]["replicas"].as_i64().unwrap_or(-1),
                image,
                d["status"]["availableReplicas"].as_i64().unwrap_or(0),
            )
        })
    };

    let v2 = s.commit(&shop("2.0"), "shop 2.0");
    app.ferry_sync();
    app.wait("paused at 20%", T, |a| {
        let r = &a["status"]["rollout"];
        if r["phase"] == "Paused" && r["canaryWeight"] == 20 { Ok(()) } else { Err(format!("{r}")) }
    });
    wait_until("a 1-replica canary beside 4 stable in the remote cluster", T, || {
        match (replicas("shop"), replicas("shop-canary")) {
            (Some((4, p, 4)), Some((1, c, 1))) if p.ends_with(":1.0") && c.ends_with(":2.0") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        get_json(&s.cluster, &["-n", &ns, "get", "deployment", "shop-canary"]).is_none(),
        "no canary here"
    );

    // The analysis measures Prometheus as for a local canary, then the rollout completes there.
    exporter.set(Some(0.01));
    wait_until("Prometheus to see the canary's error ratio", T, || {
        let data = prometheus.query(&ERROR_QUERY.replace("{{variant}}", "canary"))?;
        if data["result"][0]["value"][1] == "0.01" { Ok(()) } else { Err(format!("{data}")) }
    });
    crate::support::ferry_cli(&s.cluster, &["promote", "shop", "-n", &ns]);
    let done = app.wait("completed", T, |a| {
        let r = &a["status"]["rollout"];
        if r["phase"] == "Completed" { Ok(a.clone()) } else { Err(format!("{r}")) }
    });
    assert_eq!(done["status"]["rollout"]["analysis"]["phase"], "Successful", "{}", done["status"]["rollout"]);
    app.wait_synced(&v2, T);
    wait_until("the primary at 2.0 and no canary in the remote cluster", T, || {
        match (replicas("shop"), replicas("shop-canary")) {
            (Some((5, p, 5)), None) if p.ends_with(":2.0") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// A tenant governed by a TenantPolicy cannot point a Cluster at an API server the policy does
/// not list (its own kubeconfig, any credentials): refused before anything is fetched, nothing
/// written there; listing the server lets it through.
#[test]
fn a_tenant_policy_limits_the_cluster_servers_its_applications_reach() {
    let east = Cluster::extra("east");
    let mut s = Scenario::new("remote-policy");
    let ns = s.ns().to_string();
    s.ferry.stop();
    s.ferry = crate::support::Ferry::start_with(&s.cluster, &ns, &["--policy-namespace", &ns]);
    connect(&s, east, "east", DEPLOYER, true);
    let policy = |servers: Vec<String>| {
        json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "TenantPolicy",
            "metadata": {"name": "team", "namespace": ns},
            "spec": {"applicationNamespaces": [ns], "sourceRepos": [s.git.url()], "clusterServers": servers},
        })
        .to_string()
    };
    s.cluster.apply(&policy(vec![]));
    let v1 = s.commit(&[("settings.yaml", configmap("settings", None, &[("color", "red")]))], "v1");
    let app = s.create_app(s.default_app("web").service_account(DEPLOYER).cluster("east"));
    let refused = app.wait_not_ready("ClusterNotPermitted", T);
    let (_, _, message) = ready(&refused);
    assert!(
        message.contains(&east.server()) && message.contains("only the cluster ferry runs in"),
        "{message}"
    );
    assert_eq!(cm_value(east, &ns, "settings", "color"), None, "nothing written there");
    s.cluster.apply(&policy(vec![east.server()]));
    app.wait_synced(&v1, T);
    assert_eq!(cm_value(east, &ns, "settings", "color").as_deref(), Some("red"));
}

/// The first reconciles of a cluster's Applications come together; they share one link (one
/// connection, one set of watches) rather than each making its own.
#[test]
fn applications_created_together_share_one_link_to_their_cluster() {
    let east = Cluster::extra("east");
    let s = Scenario::new("remote-link");
    let ns = s.ns().to_string();
    connect(&s, east, "east", DEPLOYER, true);
    let files: Vec<(String, String)> = (0..6)
        .map(|i| (format!("app-{i}/cm.yaml"), configmap(&format!("cm-{i}"), None, &[("i", "1")])))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let head = s.git.commit_files("main", &refs, "six apps");
    let apps: Vec<Value> = (0..6)
        .map(|i| {
            s.default_app(&format!("app-{i}"))
                .path(&format!("app-{i}"))
                .service_account(DEPLOYER)
                .cluster("east")
                .build()
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": apps});
    s.cluster.apply(&list.to_string());
    for i in 0..6 {
        s.app(&format!("app-{i}")).wait_synced(&head, T);
    }
    let connected = s.ferry.logs().lines().filter(|l| l.contains("connected to a remote cluster")).count();
    assert_eq!(connected, 1, "one link for six Applications:\n{}", s.ferry.logs());
    assert_eq!(cm_value(east, &ns, "cm-5", "i").as_deref(), Some("1"));
}
