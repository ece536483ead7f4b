//! `ferry import` (issue 22) as a person runs it: the built binary on every fixture of
//! tests/fixtures/import/ (one per upstream shape), every object it prints accepted by the API
//! server with ferry's CRDs (a server-side dry run in a test namespace), exit codes 0/1/2, and
//! `--from-cluster` over Flux objects in the cluster.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use ferry::appset::generate::{Params, generate};

use crate::support::{Cluster, T, TestNamespace, pinned_version, repo_root, wait_until};

/// `ferry import ARGS` with `stdin`: (exit code, stdout, stderr).
fn ferry_import(cluster: &Cluster, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("import")
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry import");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait for ferry import");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/import").join(name)
}

/// The objects of `ferry import`'s output (comment-only documents are skipped).
fn objects(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("not YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Creates `object` in `ns` as a server-side dry run: the API server checks it against ferry's
/// CRD (schema and CEL rules) and returns it as it would store it.
fn dry_run_create(cluster: &Cluster, ns: &TestNamespace, mut object: Value) -> Value {
    object["metadata"]["namespace"] = Value::String(ns.name.clone());
    let text = serde_json::to_string(&object).unwrap();
    let run = cluster.kubectl_stdin(&["create", "--dry-run=server", "-o", "json", "-f", "-"], &text);
    assert!(run.success, "the API server refused what ferry import printed: {}\n{text}", run.stderr);
    serde_json::from_str(&run.stdout).expect("kubectl -o json")
}

/// Every printed object, accepted by the API server, by name.
fn accepted(cluster: &Cluster, ns: &TestNamespace, stdout: &str) -> Vec<Value> {
    let printed = objects(stdout);
    assert!(!printed.is_empty(), "nothing printed:\n{stdout}");
    printed.into_iter().map(|o| dry_run_create(cluster, ns, o)).collect()
}

/// The Applications an ApplicationSet's template makes of `params` (ferry's own generation),
/// each accepted by the API server: the template is free-form in the CRD, so this is what checks
/// its spec.
fn generated_accepted(cluster: &Cluster, ns: &TestNamespace, set: &Value, params: &[Params]) -> Vec<Value> {
    let set: ferry::api::ApplicationSet = serde_json::from_value(set.clone()).expect("an ApplicationSet");
    params
        .iter()
        .map(|p| {
            let g = generate(&set.spec.template, p).unwrap_or_else(|e| panic!("{e}"));
            let app = serde_json::json!({
                "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
                "metadata": {"name": g.name, "labels": g.labels}, "spec": g.spec,
            });
            dry_run_create(cluster, ns, app)
        })
        .collect()
}

fn named<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {objects:?}"))
}

#[test]
fn every_fixture_imports_to_objects_the_api_server_accepts() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("import");
    // (fixture, exit code): 0 when every field mapped, 1 when some are comments.
    let cases = [
        ("argo-git-kustomize.yaml", 1),
        ("argo-helm-chart.yaml", 1),
        ("argo-multi-source.yaml", 1),
        ("argo-appset-list.yaml", 1),
        ("argo-appset-pull-request.yaml", 1),
        ("flux-git-kustomization.yaml", 1),
        ("flux-helm-release.yaml", 1),
        ("flux-oci.yaml", 0),
    ];
    let mut all = Vec::new();
    for (name, code) in cases {
        let path = fixture(name);
        let (got, stdout, stderr) = ferry_import(cluster, &[path.to_str().unwrap()], "");
        assert_eq!(got, code, "{name}: exit code; stderr: {stderr}\n{stdout}");
        assert!(stderr.is_empty(), "{name}: {stderr}");
        all.extend(accepted(cluster, &ns, &stdout));
    }

    let guestbook = all
        .iter()
        .find(|o| o["kind"] == "Application" && o["metadata"]["name"] == "guestbook")
        .expect("the Argo CD guestbook Application");
    assert_eq!(guestbook["spec"]["source"]["kustomize"]["namePrefix"], "prod-");
    assert_eq!(guestbook["spec"]["source"]["ref"]["branch"], "main");
    assert_eq!(guestbook["spec"]["destination"]["createNamespace"], true);
    assert_eq!(guestbook["spec"]["deletionPolicy"], "Delete");
    assert_eq!(guestbook["spec"]["ignoreDifferences"][0]["jsonPointers"][0], "/spec/replicas");

    let previews =
        all.iter().find(|o| o["metadata"]["name"] == "previews").expect("the pull request ApplicationSet");
    let generator = &previews["spec"]["generators"][0]["pullRequests"];
    assert_eq!(generator["repoURL"], "https://github.com/myorg/myrepository.git");
    assert_eq!(previews["spec"]["template"]["metadata"]["name"], "myapp-{{branchSlug}}-{{number}}");
    assert_eq!(previews["spec"]["template"]["spec"]["source"]["ref"]["name"], "{{ref}}");
    let pull_request: Params = [
        ("number", "7"),
        ("branch", "pull/7/head"),
        ("branchSlug", "pull-7-head"),
        ("ref", "refs/pull/7/head"),
        ("sha", "0123456789abcdef0123456789abcdef01234567"),
        ("shortSha", "0123456"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let preview = &generated_accepted(cluster, &ns, previews, &[pull_request])[0];
    assert_eq!(preview["spec"]["source"]["ref"]["name"], "refs/pull/7/head");
    assert_eq!(preview["spec"]["destination"]["namespace"], "preview-7");
    let set = all
        .iter()
        .find(|o| o["kind"] == "ApplicationSet" && o["metadata"]["name"] == "guestbook")
        .expect("the list ApplicationSet");
    assert_eq!(set["spec"]["generators"][0]["list"]["elements"][1]["cluster"], "engineering-prod");
    assert_eq!(set["spec"]["template"]["metadata"]["name"], "{{cluster}}-guestbook");
    let elements: Vec<Params> =
        serde_json::from_value(set["spec"]["generators"][0]["list"]["elements"].clone()).unwrap();
    let envs = generated_accepted(cluster, &ns, set, &elements);
    assert_eq!(envs[1]["metadata"]["name"], "engineering-prod-guestbook");
    assert_eq!(envs[1]["spec"]["destination"]["namespace"], "guestbook-engineering-prod");

    let prometheus = named(&all, "prometheus");
    assert_eq!(prometheus["spec"]["source"]["chart"]["name"], "prometheus");
    assert_eq!(prometheus["spec"]["source"]["path"], "charts/prometheus");
    assert_eq!(prometheus["spec"]["source"]["helm"]["valuesFiles"][1], "values-prod.yaml");

    let nginx = named(&all, "nginx");
    assert_eq!(nginx["spec"]["source"]["chart"]["repoURL"], "oci://registry-1.docker.io/bitnamicharts");

    let infra = named(&all, "infrastructure");
    assert_eq!(infra["spec"]["syncPolicy"]["prune"], false);
    let manifests = named(&all, "podinfo-manifests");
    assert_eq!(manifests["spec"]["source"]["oci"]["semver"], ">=6.0.0");
    let flux_apps: Vec<&Value> = all.iter().filter(|o| o["metadata"]["name"] == "podinfo").collect();
    assert!(
        flux_apps.iter().any(|a| a["spec"]["dependsOn"][0]["name"] == "infrastructure"
            && a["spec"]["healthChecks"][0]["kind"] == "Certificate"
            && a["spec"]["decryption"]["secretRef"]["name"] == "sops-age"),
        "the Kustomization's dependsOn, healthCheckExprs and decryption: {flux_apps:?}"
    );
    assert!(
        flux_apps.iter().any(|a| a["spec"]["source"]["chart"]["version"] == "6.5.*"
            && a["spec"]["syncPolicy"]["selfHeal"] == true
            && a["spec"]["ignoreDifferences"][0]["group"] == "apps"),
        "the HelmRelease's chart, drift detection and its ignore rule: {flux_apps:?}"
    );
}

#[test]
fn fields_that_do_not_map_are_comments_and_errors_exit_2_with_nothing_printed() {
    let cluster = Cluster::shared();
    let text = std::fs::read_to_string(fixture("argo-git-kustomize.yaml")).unwrap();
    let (code, stdout, _) = ferry_import(cluster, &["-"], &text);
    assert_eq!(code, 1);
    for comment in [
        "# ferry import: spec.syncPolicy.retry does not map: ferry retries failed syncs with backoff on its own",
        "# ferry import: spec.project does not map:",
        "# ferry import: spec.source.targetRevision does not map: HEAD is the repository's default branch",
        "# ferry import: spec.ignoreDifferences[1].jqPathExpressions does not map:",
    ] {
        assert!(stdout.contains(comment), "missing `{comment}` in:\n{stdout}");
    }
    let (code, stdout, _) = ferry_import(cluster, &["--default-branch", "trunk", "-"], &text);
    assert_eq!(code, 1);
    assert!(stdout.contains("branch: trunk") && !stdout.contains("HEAD is"), "{stdout}");

    // A Kustomization without its GitRepository.
    let kustomization = text_of_kind(
        &std::fs::read_to_string(fixture("flux-git-kustomization.yaml")).unwrap(),
        "Kustomization",
    );
    let (code, stdout, stderr) = ferry_import(cluster, &["-"], &kustomization);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: Kustomization flux-system/podinfo: spec.sourceRef names GitRepository flux-system/podinfo, which is not in the input"),
        "{stderr}"
    );

    for (input, expected) in [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            "ConfigMap c (v1) is not something ferry import reads",
        ),
        ("kind: [", "stdin (document 1"),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec: {source: {repoURL: [x]}}\n",
            "Argo CD Application a: spec.source.repoURL: expected a string",
        ),
    ] {
        let (code, stdout, stderr) = ferry_import(cluster, &["-"], input);
        assert_eq!((code, stdout.as_str()), (2, ""), "{input}: {stderr}");
        assert!(stderr.contains(expected), "expected `{expected}` in: {stderr}");
    }
}

/// The documents of `text` of one kind.
fn text_of_kind(text: &str, kind: &str) -> String {
    text.split("\n---\n")
        .filter(|d| d.contains(&format!("\nkind: {kind}\n")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Flux's real CRDs where tests/testenv/build.sh built the Flux controllers (the benchmarks
/// do), else none: the caller installs a stand-in.
fn flux_crds(component: &str, version_var: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("FERRY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ferry")))?;
    let dir =
        cache.join("testenv").join(format!("flux-{component}-{}", pinned_version(version_var))).join("crds");
    dir.is_dir().then_some(dir)
}

/// A CRD of the upstream group, kind and version that keeps any fields: where the real one is
/// not at hand (helm-controller's is never built here).
fn stand_in_crd(group: &str, version: &str, kind: &str, plural: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}, singular: {}}}\n\
         \x20 versions:\n  - name: {version}\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n",
        kind.to_lowercase()
    )
}

/// Where a set of CRDs comes from (a directory of real ones, or none), their group, version
/// and (kind, plural)s.
type CrdSet<'a> = (Option<PathBuf>, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Flux's CRDs for `--from-cluster`: the real source-controller and kustomize-controller ones
/// when built here, else stand-ins; helm-controller's is never built here, so HelmRelease is
/// always a stand-in. Returns the kinds that are stand-ins.
fn install_flux_crds(cluster: &Cluster) -> Vec<&'static str> {
    const SOURCE: &[(&str, &str)] =
        &[("GitRepository", "gitrepositories"), ("HelmRepository", "helmrepositories")];
    let sets: [CrdSet; 3] = [
        (
            flux_crds("source-controller", "FLUX_SOURCE_CONTROLLER_VERSION"),
            "source.toolkit.fluxcd.io",
            "v1",
            SOURCE,
        ),
        (
            flux_crds("kustomize-controller", "FLUX_KUSTOMIZE_CONTROLLER_VERSION"),
            "kustomize.toolkit.fluxcd.io",
            "v1",
            &[("Kustomization", "kustomizations")],
        ),
        (None, "helm.toolkit.fluxcd.io", "v2", &[("HelmRelease", "helmreleases")]),
    ];
    let mut stand_ins = Vec::new();
    for (real, group, version, kinds) in sets {
        if let Some(dir) = real {
            let dir = dir.to_str().unwrap().to_string();
            cluster.kubectl_ok(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=ferry-tests",
                "-f",
                &dir,
            ]);
        }
        for (kind, plural) in kinds {
            if !cluster.kubectl(&["get", "crd", &format!("{plural}.{group}")]).success {
                // `create`, not apply: a real CRD someone else installed is never replaced.
                let run = cluster
                    .kubectl_stdin(&["create", "-f", "-"], &stand_in_crd(group, version, kind, plural));
                assert!(run.success || run.stderr.contains("AlreadyExists"), "{}", run.stderr);
                stand_ins.push(*kind);
            }
            let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
            wait_until(&format!("the CRD {plural}.{group} to be Established"), T, || {
                let run = cluster.kubectl(&["get", "crd", &format!("{plural}.{group}"), "-o", established]);
                if run.stdout.trim() == "True" {
                    Ok(())
                } else {
                    Err(format!("{}{}", run.stdout, run.stderr))
                }
            });
        }
    }
    stand_ins
}

#[test]
fn from_cluster_reads_the_flux_objects_of_a_namespace() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let stand_ins = install_flux_crds(cluster);
    eprintln!("stand-in CRDs (x-kubernetes-preserve-unknown-fields) for: {stand_ins:?}");
    let ns = cluster.namespace("import-flux");
    let mut upstream = objects(&std::fs::read_to_string(fixture("flux-git-kustomization.yaml")).unwrap());
    upstream.extend(objects(&std::fs::read_to_string(fixture("flux-helm-release.yaml")).unwrap()));
    for mut object in upstream {
        object["metadata"]["namespace"] = Value::String(ns.name.clone());
        if object["kind"] == "HelmRelease" {
            // Not the Kustomization's name: both would become one Application.
            object["metadata"]["name"] = Value::String("podinfo-helm".into());
        }
        let text = serde_json::to_string(&object).unwrap();
        let run = cluster
            .kubectl_stdin(&["apply", "--server-side", "--field-manager=ferry-tests", "-f", "-"], &text);
        assert!(run.success, "{}\n{text}", run.stderr);
    }

    let (code, stdout, stderr) = ferry_import(cluster, &["--from-cluster", "-n", &ns.name], "");
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    let from =
        format!("# ferry import: from Kustomization {0}/podinfo with GitRepository {0}/podinfo", ns.name);
    assert!(stdout.contains(&from), "{stdout}");
    let apps = accepted(cluster, &ns, &stdout);
    let mut names: Vec<&str> = apps.iter().filter_map(|a| a["metadata"]["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["infrastructure", "podinfo", "podinfo-helm"]);
    let podinfo = named(&apps, "podinfo");
    assert_eq!(podinfo["spec"]["source"]["repoURL"], "https://github.com/stefanprodan/podinfo");
    assert_eq!(podinfo["spec"]["dependsOn"][0]["name"], "infrastructure");
    let helm = named(&apps, "podinfo-helm");
    assert_eq!(helm["spec"]["source"]["chart"]["repoURL"], "https://stefanprodan.github.io/podinfo");
    assert_eq!(helm["spec"]["source"]["helm"]["values"]["replicaCount"], 2);

    // Another namespace's objects are not read.
    let other = cluster.namespace("import-empty");
    let (code, stdout, stderr) = ferry_import(cluster, &["--from-cluster", "-n", &other.name], "");
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
}
