//! Extra control planes standing in for remote clusters, prepared with
//! `scripts/remote-cluster-kubeconfig.sh` as a user prepares theirs: the kubeconfig it prints
//! reads everything, its impersonate mode writes only as ServiceAccounts the remote cluster's
//! admin has bound, and an extra cluster's API server can go away and come back.
//!
//! Clusters: `east` (impersonate mode), `west` (admin mode) and `outage`, whose API server a test
//! stops, so no other test may use it.

use std::{net::TcpStream, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Discovery, api::ListParams};

use crate::support::{
    Cluster, RemoteRbac, T, kubeconfig_secret_name, register_cluster, remote_access, run_script,
    service_account_user, wait_until,
};

/// A ConfigMap named `name` in `namespace`, as YAML for `kubectl apply -f -`.
fn config_map(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {{a: b}}\n"
    )
}

/// `kubectl apply --server-side` of `yaml` as `cluster`'s user, impersonating `user` if given.
fn apply_as(cluster: &Cluster, user: Option<&str>, yaml: &str) -> crate::support::Run {
    let mut args = vec!["apply", "--server-side", "--field-manager=ferry-tests", "-f", "-"];
    if let Some(user) = user {
        args.extend(["--as", user]);
    }
    cluster.kubectl_stdin(&args, yaml)
}

#[test]
fn the_printed_kubeconfig_reads_the_remote_cluster_as_ferry() {
    let east = Cluster::extra("east");
    let access = remote_access(east, RemoteRbac::Impersonate);
    assert!(access.kubeconfig.contains(&format!("server: {}\n", east.server())), "{}", access.kubeconfig);
    let ferry = &access.as_ferry;
    let whoami = ferry.kubectl_ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(whoami, service_account_user("ferry-system", "ferry"));
    let namespaces = ferry.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    assert!(namespaces.lines().any(|l| l == "namespace/ferry-system"), "{namespaces}");
    // Watching anything anywhere, writing nothing as itself, and no way to the kubelet's exec.
    for (verb, resource) in [("watch", "deployments.apps"), ("list", "secrets"), ("watch", "nodes")] {
        let can = ferry.kubectl(&["auth", "can-i", verb, resource, "--all-namespaces"]);
        assert_eq!(can.stdout.trim(), "yes", "{verb} {resource}: {}", can.stderr);
    }
    for refused in [&["create", "configmaps", "-n", "default"][..], &["get", "nodes", "--subresource=proxy"]]
    {
        let can = ferry.kubectl(&[&["auth", "can-i"][..], refused].concat());
        assert_eq!(can.stdout.trim(), "no", "{refused:?}: {}", can.stderr);
    }
}

/// What ferry does with the kubeconfig, through kube-rs as ferry does: check it, then discovery
/// and a metadata-only list by ferry's label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_lists_metadata_and_runs_discovery_with_the_printed_kubeconfig() {
    let access = remote_access(Cluster::extra("east"), RemoteRbac::Impersonate);
    let checked = ferry::cluster::kubeconfig::check(&access.kubeconfig, None).expect("ferry accepts it");
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(checked, &options).await.expect("load the kubeconfig");
    let client = kube::Client::try_from(config).expect("build a client");
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=ferry");
    Api::<Namespace>::all(client.clone()).list_metadata(&managed).await.expect("list metadata by label");
    let discovery = Discovery::new(client).run().await.expect("discovery");
    assert!(discovery.groups().any(|g| g.name() == "apps"), "apps/v1 is discovered");
}

#[test]
fn ferry_impersonates_a_service_account_whose_writes_need_a_role_binding() {
    let east = Cluster::extra("east");
    let ferry = remote_access(east, RemoteRbac::Impersonate).as_ferry;
    let ns = east.namespace("impersonate");
    let deployer = service_account_user("team-a", "deployer");
    let whoami =
        ferry.kubectl_ok(&["--as", &deployer, "auth", "whoami", "-o", "jsonpath={.status.userInfo}"]);
    assert!(whoami.contains(&deployer) && whoami.contains("system:serviceaccounts:team-a"), "{whoami}");

    let cm = config_map(&ns.name, "deployed");
    let refused = apply_as(&ferry, Some(&deployer), &cm);
    let forbidden = format!("User \"{deployer}\" cannot patch resource \"configmaps\"");
    assert!(!refused.success && refused.stderr.contains(&forbidden), "{}", refused.stderr);
    let refused = apply_as(&ferry, None, &cm);
    assert!(!refused.success && refused.stderr.contains("cannot patch resource"), "{}", refused.stderr);

    // Only ServiceAccounts, and without extra groups: no way to anyone else's rights.
    let user = ferry.kubectl(&["--as", "jane", "get", "configmaps", "-n", &ns.name]);
    assert!(user.stderr.contains("cannot impersonate resource \"users\""), "{}", user.stderr);
    let group = ferry.kubectl(&["--as", &deployer, "--as-group", "system:masters", "get", "ns"]);
    assert!(group.stderr.contains("cannot impersonate resource \"groups\""), "{}", group.stderr);

    // What the script's hint tells the remote cluster's admin to run.
    let binding = ["-n", &ns.name, "create", "rolebinding", "deployer", "--clusterrole=edit"];
    east.kubectl_ok(&[&binding[..], &["--serviceaccount=team-a:deployer"]].concat());
    wait_until("the deployer's apply to be allowed by its RoleBinding", T, || {
        let run = apply_as(&ferry, Some(&deployer), &cm);
        if run.success { Ok(()) } else { Err(run.stderr) }
    });
    east.kubectl_ok(&["-n", &ns.name, "get", "configmap", "deployed"]);
}

#[test]
fn admin_mode_lets_ferry_write_as_itself_and_only_one_mode_is_bound() {
    let west = Cluster::extra("west");
    let ferry = remote_access(west, RemoteRbac::Admin).as_ferry;
    let ns = west.namespace("admin");
    let run = apply_as(&ferry, None, &config_map(&ns.name, "written"));
    assert!(run.success, "{}", run.stderr);
    let other = west.kubectl(&["get", "clusterrolebinding", "ferry-impersonate"]);
    assert!(other.stderr.contains("NotFound"), "{}{}", other.stdout, other.stderr);
}

#[test]
fn the_script_refuses_a_server_ferry_would_refuse() {
    let west = Cluster::extra("west");
    let run = run_script(west, &["--admin", "--server", "http://127.0.0.1:1"]);
    assert!(!run.success && run.stderr.contains("must be an https:// URL"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_cluster_and_its_kubeconfig_secret_are_created_in_the_local_cluster() {
    let access = remote_access(Cluster::extra("east"), RemoteRbac::Impersonate);
    let local = Cluster::shared();
    local.install_crds();
    let ns = local.namespace("clusters");
    register_cluster(local, &ns.name, "east", &[("env", "test"), ("region", "east")], &access.kubeconfig);
    let cluster = local.kubectl_ok(&["-n", &ns.name, "get", "fcluster", "east", "-o", "json"]);
    let cluster: serde_json::Value = serde_json::from_str(&cluster).unwrap();
    assert_eq!(cluster["metadata"]["labels"], serde_json::json!({"env": "test", "region": "east"}));
    let secret = kubeconfig_secret_name("east");
    assert_eq!(cluster["spec"]["kubeConfig"]["secretRef"], serde_json::json!({"name": secret}));
    let value = r#"go-template={{index .data "value" | base64decode}}"#;
    assert_eq!(local.kubectl_ok(&["-n", &ns.name, "get", "secret", &secret, "-o", value]), access.kubeconfig);
}

#[test]
fn a_stopped_api_server_is_unreachable_until_started_again_on_the_same_port() {
    let outage = Cluster::extra("outage");
    let _only_us = crate::support::exclusively(outage);
    let server = outage.server();
    let ns = outage.namespace("outage");
    outage.apply(&config_map(&ns.name, "kept"));
    let address = server.trim_start_matches("https://").to_string();

    outage.stop_apiserver();
    let refused = TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(5));
    assert_eq!(refused.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::ConnectionRefused));
    let run = outage.kubectl(&["get", "namespaces", "--request-timeout=5s"]);
    assert!(!run.success && run.stderr.contains("was refused"), "{}", run.stderr);

    outage.start_apiserver();
    assert_eq!(outage.server(), server);
    outage.kubectl_ok(&["-n", &ns.name, "get", "configmap", "kept"]);

    // A run that ended with the API server stopped: the next `up` starts it again and keeps
    // the cluster, rather than building a new one.
    outage.stop_apiserver();
    outage.testenv("up");
    assert_eq!(outage.server(), server);
    outage.kubectl_ok(&["-n", &ns.name, "get", "configmap", "kept"]);
}
