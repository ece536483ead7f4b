//! Installing ferry (issue 10): the Helm chart and the manifests rendered from it, applied to the
//! real control plane; and ferry run out of cluster as the chart's ServiceAccount (a token from
//! the TokenRequest API, as a Pod would have), with exactly the arguments the chart gives it, so
//! the RBAC the chart grants is shown to be enough for a full sync, prune and canary, and the
//! namespaced mode is shown to reach nothing beyond its namespaces.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, Run, Scenario, T, TestNamespace, condition, configmap,
    deployment, ferry_cli, get_json, helm_bin, metric, release_applications, repo_root, wait_until,
};

fn chart() -> PathBuf {
    repo_root().join("charts/ferry")
}

fn helm(args: &[&str]) -> Run {
    Command::new(helm_bin())
        .args(args)
        // A private Helm home: nothing from the developer's repositories or plugins.
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("ferry-tests-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("ferry-tests-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("ferry-tests-helm/data"))
        .stdin(Stdio::null())
        .output()
        .expect("run helm")
        .into()
}

/// `helm template <release> charts/ferry -n <namespace> <args>`; panics when it fails.
fn template(release: &str, namespace: &str, args: &[&str]) -> String {
    let chart = chart();
    let mut all = vec!["template", release, chart.to_str().unwrap(), "--namespace", namespace];
    all.extend(args);
    let run = helm(&all);
    assert!(run.success, "helm {} failed: {}", all.join(" "), run.stderr);
    run.stdout
}

/// The documents of a YAML stream, as JSON.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("helm template prints YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every file of `dir`, name and content, sorted by name.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("read a generated file"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn helm_lint_passes_and_the_charts_crds_and_the_install_manifests_are_up_to_date() {
    let run = helm(&["lint", "--strict", chart().to_str().unwrap()]);
    assert!(run.success, "helm lint failed:\n{}{}", run.stdout, run.stderr);

    // Both generated from their sources into temporary directories by the same script `make
    // chart` runs, and compared file by file: a CRD added to `ferry crd` needs `make chart`.
    let tmp = tempfile::tempdir().expect("temp dir");
    let (crds, examples) = (tmp.path().join("crds"), tmp.path().join("examples"));
    let run: Run = Command::new("bash")
        .arg(repo_root().join("scripts/chart.sh"))
        .args(["crds"])
        .env("FERRY", env!("CARGO_BIN_EXE_ferry"))
        .env("CRDS_DIR", &crds)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/chart.sh crds")
        .into();
    assert!(run.success, "scripts/chart.sh crds failed: {}", run.stderr);
    let want = files(&crds);
    assert!(!want.is_empty(), "ferry crd printed no CRD");
    let joined: String = want.iter().map(|(_, text)| text.as_str()).collect();
    let docs = documents(&joined);
    let mut names: Vec<&str> = docs.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
    names.sort();
    let mut from_ferry: Vec<String> = documents(&ferry::api::crds_yaml().unwrap())
        .iter()
        .map(|d| d["metadata"]["name"].to_string())
        .collect();
    from_ferry.sort();
    assert_eq!(
        names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>(),
        from_ferry,
        "one chart CRD file per CRD of `ferry crd`"
    );
    assert!(
        files(&chart().join("crds")) == want,
        "charts/ferry/crds/ is out of date with `ferry crd`; run `make chart` and commit the result"
    );

    let run: Run = Command::new("bash")
        .arg(repo_root().join("scripts/chart.sh"))
        .args(["examples"])
        .env("HELM", helm_bin())
        .env("EXAMPLES_DIR", &examples)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/chart.sh examples")
        .into();
    assert!(run.success, "scripts/chart.sh examples failed: {}", run.stderr);
    assert!(
        files(&repo_root().join("examples/install")) == files(&examples),
        "examples/install/ is out of date with charts/ferry; run `make chart` and commit the result"
    );
}

#[test]
fn bad_values_are_refused_by_the_values_schema() {
    let chart = chart();
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=two"], "/replicaCount"),
        (&["--set", "replicaCount=0"], "/replicaCount"),
        (&["--set", "rbac.scope=everywhere"], "/rbac/scope"),
        (&["--set", "rbac.scope=namespaced"], "/rbac/namespaces"),
        (&["--set", "leaderElection.leaseDuration=soon"], "/leaderElection/leaseDuration"),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (&["--set", "extraArgs={run}"], "/extraArgs/0"),
        (&["--set", "webhooks.secretName=Not_A_Name"], "/webhooks/secretName"),
        (&["--set", "replicas=3"], "replicas"),
        // The chart never lets ferry read file:// repositories (its own disk).
        (&["--set", "extraArgs={--allow-file-urls}"], "/extraArgs/0"),
        (&["--set", "extraEnv[0].name=FERRY_ALLOW_FILE_URLS"], "/extraEnv/0/name"),
        (&["--set", "tenancy.defaultServiceAccount=Not_A_Name"], "/tenancy/defaultServiceAccount"),
        (&["--set", "tenancy.lockdown=true"], "lockdown"),
        (&["--set", "render.maxBytes=32MB"], "/render/maxBytes"),
        (&["--set", "render.maxObjects=0"], "/render/maxObjects"),
        (&["--set", "healthChecks[0].apiVersion=v1"], "/healthChecks/0"),
    ];
    for (args, field) in cases {
        let mut all = vec!["template", "ferry", chart.to_str().unwrap(), "--namespace", "ferry-system"];
        all.extend(*args);
        let run = helm(&all);
        assert!(!run.success, "helm accepted {args:?}:\n{}", run.stdout);
        assert!(
            run.stderr.contains("values don't meet the specifications of the schema")
                && run.stderr.contains(field),
            "{args:?}: the schema error should name {field}: {}",
            run.stderr
        );
    }
    // And good values are accepted, including the optional parts.
    template(
        "ferry",
        "ferry-system",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "rbac.scope=namespaced",
            "--set",
            "rbac.namespaces={team-a}",
            "--set",
            "webhooks.secretName=ferry-webhooks",
            "--set",
            "extraArgs={--shard-count=2,--shard-index=1}",
        ],
    );
}

/// A release of the chart rendered into its own namespace; its cluster-scoped objects are
/// deleted when dropped.
struct Release {
    cluster: Cluster,
    name: String,
    ns: TestNamespace,
    docs: Vec<Value>,
}

impl Release {
    /// Renders the chart as release `<namespace name>` into a new namespace and applies it
    /// (CRDs included) with a server-side dry run first, then for real.
    fn install(prefix: &str, values: &[&str]) -> Release {
        let cluster = Cluster::shared().clone();
        let ns = cluster.namespace(prefix);
        let name = ns.name.clone();
        let mut args = vec!["--include-crds"];
        args.extend(values);
        let yaml = template(&name, &ns.name, &args);
        let release = Release { cluster, name, docs: documents(&yaml), ns };
        for dry_run in [true, false] {
            let mut apply = vec!["apply", "--server-side", "--force-conflicts", "--field-manager=helm-test"];
            if dry_run {
                apply.push("--dry-run=server");
            }
            apply.extend(["-f", "-"]);
            let run = release.cluster.kubectl_stdin(&apply, &yaml);
            assert!(run.success, "kubectl {} failed: {}\n{}", apply.join(" "), run.stderr, run.stdout);
            // Everything but the CRDs (which the shared cluster has already) is new.
            let created = run.stdout.lines().filter(|l| l.contains("serverside-applied")).count();
            assert_eq!(created, release.docs.len(), "{}", run.stdout);
        }
        release
    }

    fn doc(&self, kind: &str, name_suffix: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| {
                d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(name_suffix))
            })
            .unwrap_or_else(|| panic!("no {kind} *{name_suffix} in the rendered chart"))
    }

    fn service_account(&self) -> String {
        self.doc("ServiceAccount", "").pointer("/metadata/name").and_then(Value::as_str).unwrap().to_string()
    }

    /// A kubeconfig for the API server with a token of the chart's ServiceAccount from the
    /// TokenRequest API: what ferry's Pod would run with.
    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let sa = self.service_account();
        let token = self.cluster.kubectl_ok(&["-n", &self.ns.name, "create", "token", &sa, "--duration=1h"]);
        let admin = std::fs::read_to_string(&self.cluster.kubeconfig).expect("read the admin kubeconfig");
        let admin: Value = serde_saphyr::from_str(&admin).expect("the kubeconfig is YAML");
        let cluster = &admin["clusters"][0]["cluster"];
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": cluster}],
            "users": [{"name": sa, "user": {"token": token.trim()}}],
            "contexts": [{"name": "ferry", "context": {"cluster": "testenv", "user": sa}}],
            "current-context": "ferry",
        });
        let path = dir.join("kubeconfig");
        std::fs::write(&path, config.to_string()).expect("write the ServiceAccount's kubeconfig");
        path
    }

    /// The arguments the chart gives `ferry run`, less those the test fixture sets itself (a
    /// free port and a private cache directory).
    fn ferry_args(&self) -> Vec<String> {
        let args = self.doc("Deployment", "")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("the ferry container has args")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert_eq!(args[0], "run");
        args.into_iter()
            .skip(1)
            .filter(|a| !a.starts_with("--http-address") && !a.starts_with("--cache-dir"))
            .collect()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        for d in &self.docs {
            let kind = d["kind"].as_str().unwrap_or_default();
            if d["metadata"]["namespace"].is_null() && kind != "CustomResourceDefinition" {
                let name = d["metadata"]["name"].as_str().unwrap_or_default();
                let _ = self.cluster.kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
            }
        }
        release_applications(&self.cluster, &self.ns.name);
    }
}

#[test]
fn the_rendered_chart_applies_to_the_cluster_with_a_server_dry_run_and_then_for_real() {
    let release = Release::install("ferry-install", &[]);
    let ns = &release.ns.name;
    let deploy =
        get_json(&release.cluster, &["-n", ns, "get", "deployment", &release.name]).expect("Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(mounts.contains(&"/var/cache/ferry"), "{mounts:?}");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let dashboard =
        get_json(&release.cluster, &["-n", ns, "get", "configmap", &format!("{}-dashboard", release.name)])
            .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["ferry.json"].as_str().unwrap()).unwrap();
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    // The plain manifests for `kubectl apply` are accepted by the API server too (a server dry
    // run, moved into this test's namespace so nothing outside it is touched).
    let example = std::fs::read_to_string(repo_root().join("examples/install/ferry.yaml")).unwrap();
    let example = example.replace(": ferry-system\n", &format!(": {ns}\n"));
    let run =
        release.cluster.kubectl_stdin(&["apply", "--server-side", "--dry-run=server", "-f", "-"], &example);
    assert!(run.success, "examples/install/ferry.yaml refused: {}", run.stderr);
    assert!(
        run.stdout.contains("deployment.apps/ferry serverside-applied (server dry run)"),
        "{}",
        run.stdout
    );
    // kwok runs the Pods (without containers), so the Deployment becomes available like a real one.
    wait_until("the chart's Deployment to be available", T, || {
        let d = get_json(&release.cluster, &["-n", ns, "get", "deployment", &release.name]).unwrap();
        if d["status"]["availableReplicas"] == 2 { Ok(()) } else { Err(format!("{}", d["status"])) }
    });
}

/// What `helm install` passes as an API server that serves MutatingAdmissionPolicy (1.36+) would:
/// `helm template` alone knows no cluster and leaves the policy out.
/// ferry's finalizer, as the chart's policy adds it.
const FINALIZER: &str = "ferry.dev/cleanup";

const ADMISSION_POLICY_API: &str = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";

#[test]
fn the_charts_finalizer_policy_admits_applications_with_the_finalizer_so_ferry_never_patches_one() {
    let s = Scenario::new("finalizer-policy");
    // The chart's policy and binding, for a ferry reconciling this namespace only: named after
    // the release namespace, and bound to it alone (it is cluster-scoped; other tests run beside).
    let watch = format!("watchNamespace={}", s.ns());
    let yaml = template(
        "ferry",
        s.ns(),
        &[
            "--api-versions",
            ADMISSION_POLICY_API,
            "--set",
            &watch,
            "--show-only",
            "templates/cleanup-finalizer-policy.yaml",
        ],
    );
    let docs = documents(&yaml);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]);
    assert_eq!(
        docs[1]["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        s.ns()
    );
    for doc in &docs {
        let (kind, name) =
            (doc["kind"].as_str().unwrap().to_lowercase(), doc["metadata"]["name"].as_str().unwrap());
        s.delete_later(&[&kind, name]);
    }
    s.cluster.apply(&yaml);
    // Without the chart's values the policy is not rendered by `helm template`, nor when disabled.
    let off = template(
        "ferry",
        s.ns(),
        &["--api-versions", ADMISSION_POLICY_API, "--set", "cleanupFinalizerPolicy.enabled=false"],
    );
    assert!(!off.contains("MutatingAdmissionPolicy"), "the policy was rendered while disabled");
    assert!(!template("ferry", s.ns(), &[]).contains("MutatingAdmissionPolicy"));

    let sha = s.commit(&[("settings.yaml", configmap("settings", None, &[("color", "blue")]))], "settings");
    let app = s.default_app("shop");
    // The API server reads new policies through an informer: a server-side dry run of the create
    // shows when the policy acts.
    wait_until("the policy to give a new Application ferry's finalizer", T, || {
        let args = ["create", "--dry-run=server", "-o", "jsonpath={.metadata.finalizers}", "-f", "-"];
        let run = s.cluster.kubectl_stdin(&args, &app.to_yaml());
        if run.stdout.contains(FINALIZER) { Ok(()) } else { Err(format!("{}{}", run.stdout, run.stderr)) }
    });
    let app = s.create_app(app);
    let live = app.wait_synced(&sha, T);
    // ferry wrote the status of the Application, and nothing else of it: no update of its
    // metadata (the finalizer patch it sends when the finalizer is missing).
    let updates: Vec<&Value> = live["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|e| e["operation"] == "Update")
        .collect();
    assert!(updates.is_empty(), "the Application was updated besides its status: {updates:?}");

    // The finalizer works as ferry's own: deleting the Application prunes what it synced first.
    s.kubectl_ok(&["-n", s.ns(), "delete", "applications.ferry.dev", &app.name, "--wait=false"]);
    wait_until("the Application to be gone", T, || {
        app.get().map_or(Ok(()), |a| Err(a["metadata"].to_string()))
    });
    assert!(s.get("configmap", Some(s.ns()), "settings").is_none(), "settings outlived its Application");
}

/// A namespace for Applications' objects, a Git server, and Applications created in `apps_ns`.
struct Repo {
    git: GitServer,
    cluster: Cluster,
}

impl Repo {
    fn new() -> Repo {
        let git = GitServer::start();
        git.commit_files("main", &[("README.md", "deploy repo\n")], "readme");
        Repo { git, cluster: Cluster::shared().clone() }
    }

    fn commit(&self, files: &[(&str, String)], message: &str) -> String {
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        self.git.commit_files("main", &refs, message)
    }

    /// An Application in `ns` syncing `path` of main into `destination`, every minute, with prune.
    fn application(&self, ns: &str, name: &str, path: &str, destination: &str) -> AppBuilder {
        AppBuilder::new(name)
            .namespace(ns)
            .repo(&self.git.url())
            .branch("main")
            .path(path)
            .interval("1m")
            .prune(true)
            .destination(destination)
    }
}

fn rollout_phase(app: &Value) -> String {
    app["status"]["rollout"]["phase"].as_str().unwrap_or_default().to_string()
}

fn image_of(cluster: &Cluster, ns: &str, name: &str) -> Option<String> {
    get_json(cluster, &["-n", ns, "get", "deployment", name]).map(|d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string()
    })
}

#[test]
fn ferry_as_the_charts_service_account_syncs_prunes_and_runs_a_canary() {
    // Cluster-wide mode (the default) with its ClusterRoles, and the single-team opt-out
    // (requireServiceAccount=false: Applications without a ServiceAccount act as ferry, with
    // rbac.deployerRules); ferry is limited to the Applications of one namespace only so that
    // it leaves other tests' Applications alone.
    let release = Release::install("ferry-rbac", &["--set", "requireServiceAccount=false"]);
    let cluster = release.cluster.clone();
    let apps = cluster.namespace("ferry-rbac-apps");
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = release.kubeconfig(tmp.path());
    let mut args = release.ferry_args();
    args.push(format!("--namespace={}", apps.name));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ferry = Ferry::start_as(&kubeconfig, &apps.name, &args);

    let repo = Repo::new();
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: shop\nspec:\n  parentRefs:\n  - name: web\n  rules:\n  - backendRefs:\n    - name: shop\n      port: 80\n";
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector: {app: shop}\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    let shop = |tag: &str| deployment("shop", None, &format!("registry.example/shop:{tag}"), 4);
    let v1 = repo.commit(
        &[
            ("app/deployment.yaml", shop("1.0")),
            ("app/service.yaml", service.to_string()),
            ("app/route.yaml", route.to_string()),
            ("app/settings.yaml", configmap("settings", None, &[("color", "blue")])),
            ("app/extra.yaml", configmap("extra", None, &[("k", "v")])),
        ],
        "shop 1.0",
    );
    let app = repo
        .application(&apps.name, "shop", "app", &apps.name)
        .canary("shop", json!([{"setWeight": 25}, {"pause": {}}]))
        .canary_field("trafficRouting", json!({"gatewayAPI": {"httpRoute": "shop"}}))
        .create(&repo.cluster);
    // A full sync: every object created by ferry, acting as the chart's ServiceAccount.
    app.wait_synced(&v1, T);
    for (kind, name) in
        [("deployment", "shop"), ("service", "shop"), ("httproute", "shop"), ("configmap", "extra")]
    {
        let obj = get_json(&cluster, &["-n", &apps.name, "get", kind, name])
            .unwrap_or_else(|| panic!("{kind} {name}"));
        assert_eq!(obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ferry");
    }

    // An Application that names a ServiceAccount is applied as that ServiceAccount: ferry may
    // impersonate it (and only ServiceAccounts, not groups).
    cluster.kubectl_ok(&["-n", &apps.name, "create", "serviceaccount", "deployer"]);
    cluster.kubectl_ok(&[
        "-n",
        &apps.name,
        "create",
        "rolebinding",
        "deployer-edit",
        "--clusterrole=edit",
        &format!("--serviceaccount={}:deployer", apps.name),
    ]);
    let v_sa =
        repo.commit(&[("as-sa/cm.yaml", configmap("applied-as-sa", None, &[("by", "deployer")]))], "as-sa");
    let as_sa = repo
        .application(&apps.name, "as-sa", "as-sa", &apps.name)
        .service_account("deployer")
        .create(&repo.cluster);
    // A fresh ls-remote: the one shop's sync made may be shared for up to 30 s and predate v_sa.
    as_sa.ferry_sync();
    as_sa.wait_synced(&v_sa, T);
    let cm = get_json(&cluster, &["-n", &apps.name, "get", "configmap", "applied-as-sa"]).expect("ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["ferry.dev/app-name"], "as-sa");

    // Prune: extra.yaml leaves Git, the ConfigMap leaves the cluster.
    let v2 = repo.git.remove_files("main", &["app/extra.yaml"], "drop extra");
    app.ferry_sync();
    app.wait_synced(&v2, T);
    wait_until("ConfigMap extra to be pruned", T, || {
        match get_json(&cluster, &["-n", &apps.name, "get", "configmap", "extra"]) {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    });

    // A canary: the canary Deployment and Service created, the HTTPRoute's weights edited, then
    // promoted and cleaned up.
    let v3 = repo.commit(&[("app/deployment.yaml", shop("2.0"))], "shop 2.0");
    app.ferry_sync();
    app.wait("rollout paused at 25%", T, |a| {
        if rollout_phase(a) == "Paused" && a["status"]["rollout"]["canaryWeight"] == 25 {
            Ok(())
        } else {
            Err(format!("rollout: {}", a["status"]["rollout"]))
        }
    });
    assert_eq!(image_of(&cluster, &apps.name, "shop-canary").as_deref(), Some("registry.example/shop:2.0"));
    assert!(get_json(&cluster, &["-n", &apps.name, "get", "service", "shop-canary"]).is_some());
    let route = get_json(&cluster, &["-n", &apps.name, "get", "httproute", "shop"]).unwrap();
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][1]["weight"], 25, "{}", route["spec"]);
    ferry_cli(&cluster, &["promote", "shop", "-n", &apps.name]);
    app.wait("rollout completed", T, |a| {
        if rollout_phase(a) == "Completed" {
            Ok(())
        } else {
            Err(format!("rollout: {}", a["status"]["rollout"]))
        }
    });
    app.wait_synced(&v3, T);
    wait_until("the canary objects to be gone", T, || {
        let d = get_json(&cluster, &["-n", &apps.name, "get", "deployment", "shop-canary"]);
        let s = get_json(&cluster, &["-n", &apps.name, "get", "service", "shop-canary"]);
        if d.is_none() && s.is_none() { Ok(()) } else { Err("canary objects remain".to_string()) }
    });
    assert_eq!(image_of(&cluster, &apps.name, "shop").as_deref(), Some("registry.example/shop:2.0"));
    // Not wider than needed: what ferry's ServiceAccount may not do, as the API server sees it.
    let sa = format!("--as=system:serviceaccount:{}:{}", release.ns.name, release.service_account());
    for (verb, resource) in [
        ("*", "*"),
        ("create", "clusterrolebindings"),
        ("create", "rolebindings"),
        ("create", "secrets"),
        ("delete", "nodes"),
        ("create", "pods"),
        ("impersonate", "groups"),
        ("impersonate", "users"),
        ("create", "customresourcedefinitions"),
    ] {
        let run = cluster.kubectl(&["auth", "can-i", verb, resource, "-A", &sa]);
        assert_eq!(run.stdout.trim(), "no", "ferry's ServiceAccount may {verb} {resource}");
    }
    // And ferry held its Lease, in the release namespace, with the chart's Role.
    let lease =
        get_json(&cluster, &["-n", &release.ns.name, "get", "lease", &release.name]).expect("the Lease");
    assert!(lease["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()), "{lease}");
    assert!(
        !ferry.logs().contains("forbidden"),
        "ferry was refused something it needs:\n{}",
        ferry.logs().lines().filter(|l| l.contains("forbidden")).collect::<Vec<_>>().join("\n")
    );
    drop(ferry);
    release_applications(&cluster, &apps.name);
}

#[test]
fn the_namespaced_mode_cannot_touch_a_namespace_it_was_not_given() {
    let cluster = Cluster::shared().clone();
    cluster.install_crds();
    let allowed = cluster.namespace("ferry-ns-allowed");
    let other = cluster.namespace("ferry-ns-other");
    let allowed_list = format!("rbac.namespaces={{{}}}", allowed.name);
    // Applications without a ServiceAccount act as ferry here (the single-team opt-out), so
    // the limit shown is the chart's namespaced RBAC.
    let release = Release::install(
        "ferry-ns",
        &["--set", "rbac.scope=namespaced", "--set", &allowed_list, "--set", "requireServiceAccount=false"],
    );
    let cluster_wide: Vec<&Value> = release
        .docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "ClusterRoleBinding")))
        .collect();
    assert!(cluster_wide.is_empty(), "the namespaced mode grants nothing cluster-wide: {cluster_wide:?}");
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = release.kubeconfig(tmp.path());
    let args = release.ferry_args();
    assert!(args.contains(&format!("--namespace={}", release.ns.name)), "{args:?}");
    assert!(args.contains(&format!("--managed-namespaces={}", allowed.name)), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ferry = Ferry::start_as(&kubeconfig, &release.ns.name, &args);

    let repo = Repo::new();
    let sha = repo.commit(
        &[
            ("ok/settings.yaml", configmap("settings", None, &[("color", "blue")])),
            ("ok/web.yaml", deployment("web", None, "registry.example/web:1.0", 1)),
            ("elsewhere/settings.yaml", configmap("settings", None, &[("color", "red")])),
        ],
        "two apps",
    );
    // Applications live in the release namespace (the only one ferry reads them from).
    let ok = repo.application(&release.ns.name, "ok", "ok", &allowed.name).create(&repo.cluster);
    let elsewhere =
        repo.application(&release.ns.name, "elsewhere", "elsewhere", &other.name).create(&repo.cluster);
    ok.wait_synced(&sha, T);
    assert!(get_json(&cluster, &["-n", &allowed.name, "get", "configmap", "settings"]).is_some());

    let refused = elsewhere.wait("refused by RBAC", T, |a| {
        let ready = condition(a, "Ready").ok_or("no Ready condition")?;
        let message = ready["message"].as_str().unwrap_or_default();
        if ready["status"] == "False" && message.contains("forbidden") {
            Ok(message.to_string())
        } else {
            Err(format!("Ready: {ready}"))
        }
    });
    assert!(refused.contains(&other.name), "the refusal names the namespace: {refused}");
    assert!(
        get_json(&cluster, &["-n", &other.name, "get", "configmap", "settings"]).is_none(),
        "ferry created an object in a namespace it was not given"
    );
    let objects = cluster.kubectl_ok(&[
        "-n",
        &other.name,
        "get",
        "all,configmaps",
        "-l",
        "app.kubernetes.io/managed-by=ferry",
        "-o",
        "name",
    ]);
    assert!(objects.trim().is_empty(), "objects in {}: {objects}", other.name);
}

/// The chart's default install (requireServiceAccount, TenantPolicies of the release namespace,
/// no cross-namespace references, no file:// URLs), ferry running as the chart's ServiceAccount
/// for the Applications of `team-a`, and two tenants' namespaces with test-unique names:
/// `team-a`, where a tenant may create Applications and nothing else and whose `deployer`
/// ServiceAccount may edit `team-a` only, and `team-b`, whose objects must stay untouched.
struct Tenants {
    // Declared first: ferry stops before the namespaces and the release go.
    ferry: Ferry,
    team_a: TestNamespace,
    team_b: TestNamespace,
    repo_a: Repo,
    release: Release,
    _tmp: tempfile::TempDir,
}

impl Tenants {
    fn install(prefix: &str) -> Tenants {
        let release = Release::install(prefix, &[]);
        let cluster = release.cluster.clone();
        let team_a = cluster.namespace(&format!("{prefix}-team-a"));
        let team_b = cluster.namespace(&format!("{prefix}-team-b"));
        let a = team_a.name.as_str();
        let tenant = format!("--serviceaccount={a}:tenant");
        let deployer = format!("--serviceaccount={a}:deployer");
        let setup: [&[&str]; 5] = [
            &["create", "serviceaccount", "tenant"],
            &[
                "create",
                "role",
                "application-author",
                "--verb=get,list,watch,create,update,patch,delete",
                "--resource=applications.ferry.dev,applicationsets.ferry.dev",
            ],
            &["create", "rolebinding", "application-author", "--role=application-author", &tenant],
            &["create", "serviceaccount", "deployer"],
            &["create", "rolebinding", "deployer-edit", "--clusterrole=edit", &deployer],
        ];
        for args in setup {
            cluster.kubectl_ok(&[&["-n", a][..], args].concat());
        }
        let tmp = tempfile::tempdir().unwrap();
        let kubeconfig = release.kubeconfig(tmp.path());
        let mut args = release.ferry_args();
        args.push(format!("--namespace={a}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ferry = Ferry::start_as(&kubeconfig, a, &args);
        Tenants { ferry, team_a, team_b, repo_a: Repo::new(), release, _tmp: tmp }
    }

    fn cluster(&self) -> &Cluster {
        &self.release.cluster
    }

    /// A TenantPolicy in the release namespace (ferry's), written by the platform team.
    fn policy(&self, name: &str, spec: Value) {
        let policy = json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "TenantPolicy",
            "metadata": {"name": name, "namespace": self.release.ns.name},
            "spec": spec,
        });
        self.cluster().apply(&policy.to_string());
    }

    /// team-a's policy: its own repository, its own namespace, no cluster-scoped kinds.
    fn team_a_policy(&self) {
        self.policy(
            "team-a",
            json!({"applicationNamespaces": [self.team_a.name], "sourceRepos": [self.repo_a.git.url()]}),
        );
    }

    /// An Application in team-a syncing `path` of main, every hour (only its creation reconciles
    /// it during the test), with prune.
    fn application(&self, name: &str, repo_url: &str, path: &str) -> AppBuilder {
        AppBuilder::new(name)
            .namespace(&self.team_a.name)
            .repo(repo_url)
            .branch("main")
            .path(path)
            .interval("1h")
            .prune(true)
    }

    /// Creates the Application as the tenant (`kubectl --as` its ServiceAccount).
    fn create_as_tenant(&self, app: &AppBuilder) -> FerryApp {
        let name = app.name();
        let as_tenant = format!("--as=system:serviceaccount:{}:tenant", self.team_a.name);
        let apply = ["apply", "--server-side", "--field-manager=tenant", &as_tenant, "-f", "-"];
        let run = self.cluster().kubectl_stdin(&apply, &app.to_string());
        assert!(run.success, "the tenant could not create Application {name}: {}", run.stderr);
        FerryApp::new(self.cluster(), &self.team_a.name, name)
    }
}

impl Drop for Tenants {
    fn drop(&mut self) {
        release_applications(&self.release.cluster, &self.team_a.name);
    }
}

/// Waits until the Application is Ready=False and Stalled=True with `reason`, and a Warning
/// Event with that reason mentions every one of `words`; returns the Ready message.
fn wait_stalled(app: &FerryApp, reason: &str, words: &[&str]) -> String {
    let message = app.wait(&format!("Stalled with reason {reason}"), T, |a| {
        let ready = condition(a, "Ready").ok_or("no Ready condition")?;
        let stalled = condition(a, "Stalled").ok_or("no Stalled condition")?;
        if ready["status"] == "False" && stalled["status"] == "True" && stalled["reason"] == reason {
            Ok(ready["message"].as_str().unwrap_or_default().to_string())
        } else {
            Err(format!("Ready: {ready}"))
        }
    });
    for word in words {
        assert!(message.contains(word), "the refusal should mention {word}: {message}");
    }
    app.wait_event("Warning", reason, words, T);
    message
}

/// `kind/name` -> resourceVersion of every ConfigMap in `ns` and of the Namespace itself.
fn resource_versions(cluster: &Cluster, ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let namespace = get_json(cluster, &["get", "namespace", ns]).expect("the namespace");
    out.push((format!("namespace/{ns}"), namespace["metadata"]["resourceVersion"].to_string()));
    let list = get_json(cluster, &["-n", ns, "get", "configmaps"]).expect("the ConfigMaps");
    for cm in list["items"].as_array().into_iter().flatten() {
        let name = cm["metadata"]["name"].as_str().unwrap_or_default();
        out.push((format!("configmap/{name}"), cm["metadata"]["resourceVersion"].to_string()));
    }
    out
}

/// Git resolutions ferry made (each an ls-remote, and a fetch for a new commit).
fn git_resolutions(ferry: &Ferry) -> f64 {
    ["success", "failure"]
        .iter()
        .map(|r| metric(ferry, &format!("ferry_git_fetch_total{{result=\"{r}\"}}")))
        .sum()
}

fn namespace_manifest(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// Issue 19, defect 3: an Application without a ServiceAccount acted as ferry, so committing
/// another team's Namespace adopted it (and removing it from Git deleted it with everything in
/// it). Under the chart's default install that Application is refused before anything is read,
/// and with team-a's own ServiceAccount the Namespace is refused by team-a's TenantPolicy.
/// (On the old chart the first Application adopts team-b's Namespace: its labels and
/// resourceVersion change and the wait for the refusal times out.)
#[test]
fn defect_3_no_application_can_adopt_or_delete_another_teams_namespace() {
    let t = Tenants::install("ferry-d3");
    let (cluster, b) = (t.cluster(), t.team_b.name.as_str());
    cluster.kubectl_ok(&["-n", b, "create", "configmap", "data", "--from-literal=owner=team-b"]);
    let before = resource_versions(cluster, b);
    t.repo_a.commit(&[("take-b/namespace.yaml", namespace_manifest(b))], "team-b's namespace");

    let no_sa = t.create_as_tenant(&t.application("no-sa", &t.repo_a.git.url(), "take-b"));
    wait_stalled(&no_sa, "ServiceAccountRequired", &["spec.serviceAccountName is required"]);
    assert!(no_sa.json()["status"]["lastAttemptedRevision"].is_null(), "refused before the fetch");
    assert_eq!(resource_versions(cluster, b), before, "team-b's namespace was touched");

    t.team_a_policy();
    let with_sa = t.create_as_tenant(
        &t.application("with-sa", &t.repo_a.git.url(), "take-b").service_account("deployer"),
    );
    wait_stalled(&with_sa, "ClusterScopedNotPermitted", &[&format!("Namespace {b}")]);
    let namespace = get_json(cluster, &["get", "namespace", b]).expect("team-b's namespace");
    assert!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(),
        "team-b's namespace was labelled: {}",
        namespace["metadata"]
    );
    assert_eq!(resource_versions(cluster, b), before, "team-b's namespace was touched");

    // A default ServiceAccount in the policy applies to the Application that names none, and
    // the policy change alone wakes it (its interval is an hour): now it acts as deployer and
    // meets the same refusal.
    t.policy(
        "team-a",
        json!({
            "applicationNamespaces": [t.team_a.name],
            "sourceRepos": [t.repo_a.git.url()],
            "defaultServiceAccount": "deployer",
        }),
    );
    wait_stalled(&no_sa, "ClusterScopedNotPermitted", &[&format!("Namespace {b}")]);
    assert_eq!(resource_versions(cluster, b), before, "team-b's namespace was touched");
}

/// Issue 19, "what it must show": the chart's default install with a tenant who may only create
/// Applications in team-a. Writing to team-b, writing a cluster-scoped object, reading team-b's
/// repository and reading a file:// URL are each refused with a Stalled condition naming the
/// rule and a Warning Event, and nothing is written or read; what team-a may do still syncs.
#[test]
fn the_charts_default_install_keeps_a_tenant_to_its_namespace_repositories_and_kinds() {
    let t = Tenants::install("ferry-lock");
    let (cluster, a, b) = (t.cluster(), t.team_a.name.as_str(), t.team_b.name.as_str());
    // team-b's objects, and its private repository with credentials team-a does not have.
    cluster.kubectl_ok(&["-n", b, "create", "configmap", "settings", "--from-literal=owner=team-b"]);
    let before = resource_versions(cluster, b);
    let repo_b = GitServer::start_with_auth("team-b", "secret-of-team-b");
    let b_settings = configmap("settings", None, &[("owner", "team-b")]);
    repo_b.commit_files("main", &[("app/settings.yaml", b_settings.as_str())], "team-b");
    t.team_a_policy();
    let role = format!("{a}-everything");
    let sha = t.repo_a.commit(
        &[
            ("ok/settings.yaml", configmap("settings", None, &[("owner", "team-a")])),
            ("to-b/settings.yaml", configmap("settings", Some(b), &[("owner", "team-a")])),
            (
                "cluster/role.yaml",
                format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n- apiGroups: ['*']\n  resources: ['*']\n  verbs: ['*']\n"
                ),
            ),
        ],
        "team-a",
    );
    let url_a = t.repo_a.git.url();
    let as_deployer = |name: &str, url: &str, path: &str| {
        t.create_as_tenant(&t.application(name, url, path).service_account("deployer"))
    };

    // What team-a may do: its repository, its namespace, as its ServiceAccount.
    as_deployer("ok", &url_a, "ok").wait_synced(&sha, T);
    assert_eq!(
        get_json(cluster, &["-n", a, "get", "configmap", "settings"]).unwrap()["data"]["owner"],
        "team-a"
    );

    // (a) A manifest that names team-b's namespace.
    let to_b = as_deployer("to-b", &url_a, "to-b");
    wait_stalled(
        &to_b,
        "DestinationNotPermitted",
        &[&format!("ConfigMap {b}/settings"), "nothing was applied"],
    );
    // (b) A cluster-scoped object.
    let wide = as_deployer("cluster-role", &url_a, "cluster");
    wait_stalled(&wide, "ClusterScopedNotPermitted", &[&format!("ClusterRole {role}")]);
    assert!(get_json(cluster, &["get", "clusterrole", &role]).is_none(), "the ClusterRole was created");

    // (c) team-b's repository and (d) a file:// URL (team-b's repository on ferry's disk): refused
    // before any Git traffic, so the cache never holds them.
    let resolved = git_resolutions(&t.ferry);
    let cached = cache_entries(t.ferry.cache_dir());
    let b_repo = as_deployer("b-repo", &repo_b.url(), "app");
    wait_stalled(&b_repo, "SourceNotPermitted", &[&repo_b.url(), "nothing was fetched"]);
    let file_url = format!("file://{}", repo_b.bare_repo_path().display());
    let file = as_deployer("file", &file_url, "app");
    wait_stalled(&file, "SourceNotPermitted", &["--allow-file-urls"]);
    for app in [&b_repo, &file] {
        assert!(app.json()["status"]["lastAttemptedRevision"].is_null(), "{} resolved a revision", app.name);
    }
    assert_eq!(git_resolutions(&t.ferry), resolved, "ferry made Git requests for a refused source");
    assert_eq!(cache_entries(t.ferry.cache_dir()), cached, "the Git cache changed");

    // Nothing of team-b's changed, and ferry itself cannot write what tenants apply.
    assert_eq!(resource_versions(cluster, b), before, "team-b's objects were touched");
    let ferry_sa =
        format!("--as=system:serviceaccount:{}:{}", t.release.ns.name, t.release.service_account());
    for (verb, resource) in [
        ("create", "namespaces"),
        ("delete", "namespaces"),
        ("delete", "configmaps"),
        ("create", "deployments"),
    ] {
        let run = cluster.kubectl(&["auth", "can-i", verb, resource, "-A", &ferry_sa]);
        assert_eq!(
            run.stdout.trim(),
            "no",
            "with a ServiceAccount required, ferry itself may {verb} {resource}"
        );
    }
}

/// Every path under the Git cache directory, to show that nothing was added.
fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(&path, out);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Issue 19, defect 14: the chart's RBAC gave ferry no `create` or `delete` on Applications, so
/// an ApplicationSet could generate none. Under the chart's default install a tenant's set
/// creates one Application per element, each syncs as team-a's ServiceAccount, and removing an
/// element deletes its Application. (On the old chart the set's status says "forbidden" and the
/// wait for the Applications times out.)
#[test]
fn defect_14_an_application_set_creates_and_prunes_applications_under_the_charts_rbac() {
    let t = Tenants::install("ferry-d14");
    t.team_a_policy();
    let sha = t.repo_a.commit(
        &[
            ("envs/one/settings.yaml", configmap("one", None, &[("env", "one")])),
            ("envs/two/settings.yaml", configmap("two", None, &[("env", "two")])),
        ],
        "two environments",
    );
    let set = |elements: Value| {
        json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "envs", "namespace": t.team_a.name},
            "spec": {
                "generators": [{"list": {"elements": elements}}],
                "template": {
                    "metadata": {"name": "env-{{env}}"},
                    "spec": {
                        "source": {"repoURL": t.repo_a.git.url(), "ref": {"branch": "main"}, "path": "envs/{{env}}"},
                        "serviceAccountName": "deployer",
                        "syncPolicy": {"prune": true},
                    },
                },
            },
        })
        .to_string()
    };
    let as_tenant = format!("--as=system:serviceaccount:{}:tenant", t.team_a.name);
    let apply = ["apply", "--server-side", "--field-manager=tenant", &as_tenant, "-f", "-"];
    let run = t.cluster().kubectl_stdin(&apply, &set(json!([{"env": "one"}, {"env": "two"}])));
    assert!(run.success, "{}", run.stderr);
    let one = FerryApp::new(t.cluster(), &t.team_a.name, "env-one");
    let two = FerryApp::new(t.cluster(), &t.team_a.name, "env-two");
    one.wait_synced(&sha, T);
    two.wait_synced(&sha, T);
    assert!(get_json(t.cluster(), &["-n", &t.team_a.name, "get", "configmap", "two"]).is_some());

    let run = t.cluster().kubectl_stdin(&apply, &set(json!([{"env": "one"}])));
    assert!(run.success, "{}", run.stderr);
    wait_until("Application env-two to be deleted with its ConfigMap", T, || {
        let app = two.get();
        let cm = get_json(t.cluster(), &["-n", &t.team_a.name, "get", "configmap", "two"]);
        if app.is_none() && cm.is_none() { Ok(()) } else { Err(format!("Application: {}", app.is_some())) }
    });
    assert!(one.get().is_some(), "env-one must stay");
    assert!(
        !t.ferry.logs().contains("forbidden"),
        "ferry was refused something it needs:\n{}",
        t.ferry.logs().lines().filter(|l| l.contains("forbidden")).collect::<Vec<_>>().join("\n")
    );
}

/// The Dockerfile cannot be built here (no container engine); what it builds can be, and is:
/// `make image-check` runs the same release build and library check, and kustomize and helm come
/// from the same tests/testenv/build.sh the tests use. This checks that the Dockerfile still says
/// so, and that its final image stays minimal.
#[test]
fn the_dockerfile_builds_with_the_tests_tools_and_ends_minimal_and_non_root() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 3, "ferry, tools and the final image");
    let last = stages[2];
    assert!(last.starts_with("gcr.io/distroless/cc-debian12:nonroot"), "{last}");
    assert!(!last.lines().any(|l| l.starts_with("RUN ")), "the final image runs no shell command");
    assert!(last.contains("USER 65532:65532"));
    for label in ["title", "description", "version", "revision", "licenses"] {
        assert!(last.contains(&format!("org.opencontainers.image.{label}=")), "OCI label {label}");
    }
    assert!(last.contains("COPY --from=tools /out/bin/kustomize /out/bin/helm /usr/local/bin/"));
    assert!(stages[1].contains("tests/testenv/build.sh kustomize helm"), "{}", stages[1]);
    assert!(stages[0].contains("LIBZ_SYS_STATIC=1") && stages[0].contains("scripts/image-check.sh binary"));
    // The toolchains it names are no newer than the ones this machine builds with (so what
    // `make image-check` builds here, the image can build), and new enough for the project.
    let arg = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("ARG {name} missing"))
            .to_string()
    };
    let minor = |version: &str| -> (u32, u32) {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    let local = |cmd: &str, arg: &str, prefix: &str| -> (u32, u32) {
        let out = Command::new(cmd).arg(arg).output().unwrap_or_else(|e| panic!("{cmd} {arg}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix).filter(|v| v.starts_with(|c: char| c.is_ascii_digit())))
            .unwrap_or_default()
            .to_string();
        minor(&version)
    };
    let rust = minor(&arg("RUST_VERSION"));
    assert!(
        rust <= local("rustc", "--version", ""),
        "RUST_VERSION {rust:?} is newer than this machine's rustc"
    );
    assert!(rust >= (1, 89), "RUST_VERSION {rust:?} is older than Cargo.toml's rust-version");
    let go = minor(&arg("GO_VERSION"));
    assert!(go <= local("go", "version", "go"), "GO_VERSION {go:?} is newer than this machine's go");
    assert!(go >= (1, 26), "GO_VERSION {go:?}: tests/testenv/build.sh needs Go 1.26");
}
