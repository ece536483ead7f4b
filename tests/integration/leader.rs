//! Several ferry processes against the real control plane (issue 10): leader election on a
//! Lease (one reconciles, a standby takes over an in-flight rollout after the leader is killed,
//! a leader whose Lease is taken stops), and sharding (each Application handled by exactly one
//! shard). Who did the work is read from each process's own metrics and from the Lease.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, T, configmap, deployment, ferry_cli, get_json, http_get,
    metric, release_applications, wait_until,
};

/// Short timings so a takeover is quick (the test never asserts how quick), with a renew deadline
/// far above what one renewal takes even on a loaded machine, so no leader gives up by accident.
const ELECTION: [&str; 4] = [
    "--leader-elect",
    "--leader-election-lease-duration=8s",
    "--leader-election-renew-deadline=6s",
    "--leader-election-retry-period=1s",
];

/// A ferry process with a name (its identity) for one namespace's Applications.
fn start(cluster: &Cluster, ns: &str, identity: &str, extra: &[&str]) -> Ferry {
    let mut args: Vec<String> = ELECTION.iter().map(|a| a.to_string()).collect();
    args.push(format!("--namespace={ns}"));
    args.push(format!("--leader-election-identity={identity}"));
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ferry::start_as(&cluster.kubeconfig, &format!("{ns}-{identity}"), &args)
}

/// A sample of one of a process's metrics (0 when absent).
fn lease_holder(cluster: &Cluster, ns: &str, name: &str) -> Option<String> {
    get_json(cluster, &["-n", ns, "get", "lease", name])
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn readyz(ferry: &Ferry) -> (u16, String) {
    let r = http_get(&ferry.http_address(), "/readyz");
    (r.status, r.body)
}

/// An Application in `ns` on `path` of main in `git`, every minute, with prune.
fn application(git: &GitServer, ns: &str, name: &str, path: &str) -> AppBuilder {
    AppBuilder::new(name).namespace(ns).repo(&git.url()).branch("main").path(path).interval("1m").prune(true)
}

fn rollout(app: &Value) -> &Value {
    &app["status"]["rollout"]
}

#[test]
fn one_of_two_replicas_reconciles_and_the_standby_finishes_the_rollout_when_the_leader_is_killed() {
    let cluster = Cluster::shared().clone();
    cluster.install_crds();
    let ns = cluster.namespace("leader");
    let git = GitServer::start();
    let shop = |tag: &str| deployment("shop", None, &format!("registry.example/shop:{tag}"), 4);
    let v1 = git.commit_files("main", &[("app/shop.yaml", shop("1.0").as_str())], "shop 1.0");

    let mut a = start(&cluster, &ns.name, "ferry-a", &[]);
    let mut b = start(&cluster, &ns.name, "ferry-b", &[]);
    let app = application(&git, &ns.name, "shop", "app")
        .canary("shop", json!([{"setWeight": 50}, {"pause": {}}]))
        .create(&cluster);
    app.wait_synced(&v1, T);

    // Exactly one leads: it holds the Lease, says so, and is the only one that reconciled.
    let leader_name = wait_until("a leader in the Lease", T, || {
        lease_holder(&cluster, &ns.name, "ferry").ok_or_else(|| "no holder".to_string())
    });
    let (leader, standby) = if leader_name == "ferry-a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let standby_name = if leader_name == "ferry-a" { "ferry-b" } else { "ferry-a" };
    assert_eq!(metric(leader, "ferry_leader"), 1.0);
    assert_eq!(metric(standby, "ferry_leader"), 0.0);
    assert!(metric(leader, "ferry_reconcile_total{result=\"success\"}") >= 1.0);
    assert_eq!(metric(standby, "ferry_reconcile_total{result=\"success\"}"), 0.0, "the standby reconciled");
    assert_eq!(metric(standby, "ferry_reconcile_total{result=\"error\"}"), 0.0, "the standby reconciled");
    // Both are ready (a standby serves metrics and webhooks); /readyz says which is which.
    let wait_readyz = |ferry: &Ferry, want: &str| {
        wait_until(&format!("/readyz to answer {want:?}"), T, || match readyz(ferry) {
            (200, body) if body == want => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        })
    };
    wait_readyz(leader, "ok: leader\n");
    wait_readyz(standby, &format!("ok: standby, the leader is {leader_name}\n"));
    // Every Event about the Application comes from the leader.
    let events = get_json(&cluster, &["-n", &ns.name, "get", "events.events.k8s.io"]).unwrap();
    let instances: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["kind"] == "Application")
        .filter_map(|e| e["reportingInstance"].as_str())
        .collect();
    assert!(!instances.is_empty() && instances.iter().all(|i| *i == leader_name), "{instances:?}");
    // Application state is exported once, by the leader.
    let info = format!("ferry_app_info{{namespace=\"{}\",name=\"shop\"", ns.name);
    assert!(http_get(&leader.http_address(), "/metrics").body.contains(&info));
    assert!(!http_get(&standby.http_address(), "/metrics").body.contains(&info));

    // A rollout in flight: the canary waits at 50% for a person.
    let v2 = git.commit_files("main", &[("app/shop.yaml", shop("2.0").as_str())], "shop 2.0");
    app.ferry_sync();
    app.wait("the rollout to pause at 50%", T, |a| {
        let r = rollout(a);
        if r["phase"] == "Paused" && r["canaryWeight"] == 50 { Ok(()) } else { Err(format!("rollout: {r}")) }
    });

    // SIGKILL: no lease release. The standby takes the Lease once it has expired.
    leader.kill();
    wait_until("the standby to take the Lease", T, || match lease_holder(&cluster, &ns.name, "ferry") {
        Some(h) if h == standby_name => Ok(()),
        other => Err(format!("holder {other:?}")),
    });
    wait_readyz(standby, "ok: leader\n");
    ferry_cli(&cluster, &["promote", "shop", "-n", &ns.name]);
    app.wait("the rollout to complete", T, |a| {
        if rollout(a)["phase"] == "Completed" { Ok(()) } else { Err(format!("rollout: {}", rollout(a))) }
    });
    app.wait_synced(&v2, T);
    wait_until("the canary to be gone", T, || {
        match get_json(&cluster, &["-n", &ns.name, "get", "deployment", "shop-canary"]) {
            None => Ok(()),
            Some(_) => Err("shop-canary remains".to_string()),
        }
    });
    assert!(metric(standby, "ferry_reconcile_total{result=\"success\"}") >= 1.0);

    // A leader whose Lease someone else takes stops at once and exits.
    let stolen = json!({"spec": {
        "holderIdentity": "intruder",
        "leaseDurationSeconds": 3600,
        "renewTime": "2030-01-01T00:00:00.000000Z",
    }});
    cluster.kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "lease",
        "ferry",
        "--type=merge",
        "-p",
        &stolen.to_string(),
    ]);
    let mark = 0;
    standby.wait_for_log("ferry to notice the lost lease", mark, T, |l| {
        l.contains("lost the leader-election lease")
    });
    wait_until("the former leader to exit", T, || {
        if standby.is_running() { Err("still running".to_string()) } else { Ok(()) }
    });
    drop(a);
    drop(b);
    release_applications(&cluster, &ns.name);
}

#[test]
fn with_two_shards_each_application_is_reconciled_by_exactly_one() {
    let cluster = Cluster::shared().clone();
    cluster.install_crds();
    let ns = cluster.namespace("shards");
    let git = GitServer::start();
    let names: Vec<String> = (0..6).map(|i| format!("app-{i}")).collect();
    let files: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}/cm.yaml"), configmap(&format!("{n}-settings"), None, &[("app", n)])))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let sha = git.commit_files("main", &refs, "six apps");

    // Each shard elects its own leader, on its own Lease.
    let shards: Vec<Ferry> = (0..2)
        .map(|i| {
            start(
                &cluster,
                &ns.name,
                &format!("shard-{i}"),
                &["--shard-count=2", &format!("--shard-index={i}")],
            )
        })
        .collect();
    let apps: Vec<FerryApp> =
        names.iter().map(|n| application(&git, &ns.name, n, n).create(&cluster)).collect();
    for app in &apps {
        app.wait_synced(&sha, T);
    }
    for i in 0..2 {
        assert_eq!(
            lease_holder(&cluster, &ns.name, &format!("ferry-shard-{i}")).as_deref(),
            Some(format!("shard-{i}").as_str())
        );
    }
    let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let body = http_get(&shard.http_address(), "/metrics").body;
        for n in &names {
            let synced =
                format!("ferry_sync_total{{namespace=\"{}\",name=\"{n}\",result=\"succeeded\"}}", ns.name);
            if body.lines().any(|l| l.starts_with(&synced)) {
                owners.entry(n.clone()).or_default().push(i);
            }
        }
    }
    for n in &names {
        let expected = ferry::controller::shard::shard_of(&ns.name, n, 2) as usize;
        assert_eq!(owners.get(n), Some(&vec![expected]), "{n} synced by shards {:?}", owners.get(n));
    }
    let per_shard: Vec<usize> = (0..2).map(|i| owners.values().filter(|o| o.contains(&i)).count()).collect();
    assert_eq!(per_shard.iter().sum::<usize>(), names.len(), "{owners:?}");
    drop(shards);
    release_applications(&cluster, &ns.name);
}
