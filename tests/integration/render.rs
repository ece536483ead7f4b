//! Rendering committed fixtures (`tests/fixtures/render/`) with the real kustomize and helm
//! binaries of the test environment, and scoping kinds through discovery on the real cluster.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ferry::{
    api::{GitRef, HelmSource, KustomizeImage, KustomizeSource, Policy, Source},
    render::{
        BuiltinScopes, DiscoveredScopes, KindScope, RenderCache, RenderError, RenderOptions, RenderRequest,
        ScopeResolver, UnpinnedReason, render, render_manifests,
    },
};
use kube::api::DynamicObject;

use crate::support::{Cluster, helm_bin, kustomize_bin, repo_root};

/// The fixture repository: every test renders a path inside it, as if it were an exported commit.
fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/render")
}

fn source(path: &str) -> Source {
    Source {
        repo_url: Some("file:///fixtures".into()),
        git_ref: Some(GitRef { branch: Some("main".into()), ..Default::default() }),
        path: Some(path.into()),
        secret_ref: None,
        kustomize: None,
        helm: None,
        chart: None,
        oci: None,
    }
}

fn options() -> RenderOptions {
    RenderOptions {
        kustomize_bin: kustomize_bin(),
        helm_bin: helm_bin(),
        timeout: Duration::from_secs(60),
        require_digest: false,
        ..Default::default()
    }
}

async fn render_source(
    root: &Path,
    source: &Source,
    policy: &Policy,
) -> Result<Vec<DynamicObject>, RenderError> {
    let req = RenderRequest {
        root,
        source,
        app_name: "myapp",
        default_namespace: "dest",
        policy,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    render(&req, &options(), &BuiltinScopes).await
}

async fn render_path(path: &str) -> Result<Vec<DynamicObject>, RenderError> {
    render_source(&fixtures(), &source(path), &Policy::default()).await
}

/// `Kind ns/name` (or `Kind name`) of each object, in order.
fn ids(objects: &[DynamicObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            let kind = &o.types.as_ref().unwrap().kind;
            let name = o.metadata.name.as_deref().unwrap();
            match &o.metadata.namespace {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            }
        })
        .collect()
}

fn find<'a>(objects: &'a [DynamicObject], kind: &str, name: &str) -> &'a DynamicObject {
    objects
        .iter()
        .find(|o| o.types.as_ref().unwrap().kind == kind && o.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", ids(objects)))
}

#[tokio::test]
async fn plain_directory_in_sorted_order_with_namespaces() {
    let objects = render_path("plain").await.unwrap();
    assert_eq!(
        ids(&objects),
        [
            // 00-config.yaml: two documents around an empty and a comment-only one.
            "ConfigMap dest/settings",
            "Service dest/web",
            // app/deployment.yaml keeps the namespace it names.
            "Deployment pinned-elsewhere/web",
            // app/nested/list.json: a List, flattened.
            "ConfigMap dest/from-list-a",
            "ConfigMap dest/from-list-b",
            // crds/gadgets.yaml: the CRD makes Gadget cluster-scoped; Widget is unknown.
            "CustomResourceDefinition gadgets.fixtures.ferry.dev",
            "Gadget big-gadget",
            "Widget dest/small-widget",
            // rbac/clusterrole.yml: cluster-scoped by the built-in table.
            "ClusterRole web-reader",
        ]
    );
    // README.md, notes.txt and .hidden/ were not read (the hidden file is not even YAML).
    assert_eq!(find(&objects, "ConfigMap", "from-list-b").data["data"]["k"], "v");
}

#[tokio::test]
async fn kustomize_overlay_with_patches_and_images() {
    let objects = render_path("kustomize/overlays/prod").await.unwrap();
    assert_eq!(
        ids(&objects),
        ["ConfigMap dest/prod-web-config-btf6f9dc9c", "Service dest/prod-web", "Deployment dest/prod-web"]
    );
    let deploy = find(&objects, "Deployment", "prod-web");
    assert_eq!(deploy.data["spec"]["replicas"], 3, "the overlay's patch applies");
    let container = &deploy.data["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/web:2.0.0");
    assert_eq!(container["envFrom"][0]["configMapRef"]["name"], "prod-web-config-btf6f9dc9c");
}

#[tokio::test]
async fn kustomize_options_from_the_spec_go_through_an_overlay() {
    let src = Source {
        kustomize: Some(KustomizeSource {
            name_prefix: Some("blue-".into()),
            name_suffix: Some("-v2".into()),
            images: vec![KustomizeImage {
                name: "registry.example/web".into(),
                new_name: Some("mirror.example/web".into()),
                new_tag: Some("9.9.9".into()),
                digest: None,
            }],
        }),
        ..source("kustomize/base")
    };
    let objects = render_source(&fixtures(), &src, &Policy::default()).await.unwrap();
    let deploy = find(&objects, "Deployment", "blue-web-v2");
    let container = &deploy.data["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "mirror.example/web:9.9.9");
    // kustomize renamed the generated ConfigMap and the reference to it together.
    let cm_name = container["envFrom"][0]["configMapRef"]["name"].as_str().unwrap();
    assert!(cm_name.starts_with("blue-web-config-v2-"), "{cm_name}");
    find(&objects, "ConfigMap", cm_name);
    find(&objects, "Service", "blue-web-v2");

    // An empty `kustomize: {}` renders the base as it is.
    let plain = Source { kustomize: Some(KustomizeSource::default()), ..source("kustomize/base") };
    let objects = render_source(&fixtures(), &plain, &Policy::default()).await.unwrap();
    find(&objects, "Deployment", "web");
}

#[tokio::test]
async fn helm_chart_with_values_files_and_inline_values() {
    let values = serde_json::json!({"image": {"tag": "1.2.3"}}).as_object().unwrap().clone();
    let src = Source {
        helm: Some(HelmSource {
            release_name: None,
            values_files: vec!["values-prod.yaml".into()],
            values: Some(values),
            dependencies: None,
        }),
        ..source("helm/chart")
    };
    let objects = render_source(&fixtures(), &src, &Policy::default()).await.unwrap();
    let mut got = ids(&objects);
    got.sort();
    assert_eq!(
        got,
        [
            "ConfigMap audit/myapp-audit",
            "ConfigMap dest/myapp-settings",
            // crds/ is included; the Receipt CRD itself is cluster-scoped.
            "CustomResourceDefinition receipts.shop.ferry.dev",
            "Deployment dest/myapp",
            "Service dest/myapp",
            // templates/tests/ (a helm test hook) is left out.
        ]
    );
    let deploy = find(&objects, "Deployment", "myapp");
    assert_eq!(deploy.data["spec"]["replicas"], 3, "values-prod.yaml over values.yaml");
    assert_eq!(
        deploy.data["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/shop:1.2.3",
        "inline values over values files"
    );
    let settings = find(&objects, "ConfigMap", "myapp-settings");
    assert_eq!(settings.data["data"]["greeting"], "hello from prod");
    assert_eq!(settings.data["data"]["releaseNamespace"], "dest", "--namespace is the destination");

    // Detected from Chart.yaml with no spec.source.helm: chart defaults, release = app name.
    let objects = render_path("helm/chart").await.unwrap();
    assert_eq!(find(&objects, "Deployment", "myapp").data["spec"]["replicas"], 1);

    let named = Source {
        helm: Some(HelmSource { release_name: Some("shop".into()), ..Default::default() }),
        ..source("helm/chart")
    };
    let objects = render_source(&fixtures(), &named, &Policy::default()).await.unwrap();
    find(&objects, "Deployment", "shop");
}

#[tokio::test]
async fn helm_documents_are_traced_to_their_template() {
    let req_source = source("helm/chart");
    let req = RenderRequest {
        root: &fixtures(),
        source: &req_source,
        app_name: "myapp",
        default_namespace: "dest",
        policy: &Policy::default(),
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    let manifests = render_manifests(&req, &options(), &BuiltinScopes).await.unwrap();
    let audit = manifests.iter().find(|m| m.object.metadata.name.as_deref() == Some("myapp-audit")).unwrap();
    assert_eq!(audit.origin.to_string(), "helm/chart/templates/configmap.yaml (document 2)");
}

#[tokio::test]
async fn helm_values_files_must_stay_in_the_repository() {
    let escaping = Source {
        helm: Some(HelmSource {
            values_files: vec!["../../plain/00-config.yaml".into()],
            ..Default::default()
        }),
        ..source("helm/chart")
    };
    let err = render_source(&fixtures(), &escaping, &Policy::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "values file ../../plain/00-config.yaml escapes the repository root");

    let missing = Source {
        helm: Some(HelmSource { values_files: vec!["values-staging.yaml".into()], ..Default::default() }),
        ..source("helm/chart")
    };
    let err = render_source(&fixtures(), &missing, &Policy::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "values file helm/chart/values-staging.yaml does not exist in the revision");

    // A symlinked values file that leads out of the repository is refused too.
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("helm/chart"), &repo.path().join("chart"));
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret-values.yaml"), "replicas: 99\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret-values.yaml"),
        repo.path().join("chart/linked.yaml"),
    )
    .unwrap();
    let linked = Source {
        helm: Some(HelmSource { values_files: vec!["linked.yaml".into()], ..Default::default() }),
        ..source("chart")
    };
    let err = render_source(repo.path(), &linked, &Policy::default()).await.unwrap_err();
    // Caught by the symlink check of the whole chart, before the values file is even looked at.
    assert_eq!(err.to_string(), "symlink chart/linked.yaml escapes the repository root");
}

#[tokio::test]
async fn helm_charts_cannot_read_files_outside_the_repository_through_symlinks() {
    // helm itself follows such a link (with only a warning) and `.Files.Get` would put the
    // file's content into a rendered object.
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("helm/chart"), &repo.path().join("chart"));
    std::fs::write(
        repo.path().join("chart/templates/leak.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata:\n  s: {{ .Files.Get \"files/host.txt\" | quote }}\n",
    )
    .unwrap();
    std::fs::create_dir(repo.path().join("chart/files")).unwrap();
    std::fs::write(repo.path().join("chart/files/host.txt"), "inside").unwrap();
    let objects = render_source(repo.path(), &source("chart"), &Policy::default()).await.unwrap();
    assert_eq!(find(&objects, "ConfigMap", "leak").data["data"]["s"], "inside");

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("host.txt"), "machine secret").unwrap();
    std::fs::remove_file(repo.path().join("chart/files/host.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("host.txt"), repo.path().join("chart/files/host.txt"))
        .unwrap();
    let err = render_source(repo.path(), &source("chart"), &Policy::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "symlink chart/files/host.txt escapes the repository root");
}

#[tokio::test]
async fn error_fixtures_name_the_file() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("errors/invalid-yaml", "invalid_yaml", &["errors/invalid-yaml/bad.yaml (document 2, line "]),
        (
            "errors/missing-kind",
            "missing_field",
            &["errors/missing-kind/nested/no-kind.yaml (document 2, line 5): object has no kind"],
        ),
        (
            "errors/duplicates",
            "duplicate",
            &["ConfigMap dest/twice is defined twice: in errors/duplicates/a.yaml (document 1, line 1) \
                 and in errors/duplicates/sub/b.yaml (document 2, line 7)"],
        ),
        (
            "errors/kustomize-missing-resource",
            "kustomize",
            &[
                "kustomize build errors/kustomize-missing-resource failed: Error: ",
                "errors/kustomize-missing-resource/does-not-exist.yaml",
            ],
        ),
        (
            "errors/kustomize-remote-base",
            "remote_reference",
            &[
                "errors/kustomize-remote-base/kustomization.yaml refers to the remote http://127.0.0.1:9/ferry/remote-base.git",
                "ferry renders offline: vendor remote bases and resources into the repository",
            ],
        ),
        (
            "errors/helm-template-error",
            "helm",
            &[
                "helm template errors/helm-template-error failed: Error: execution error at (broken/templates/deployment.yaml:6:10): image.tag must be set",
            ],
        ),
    ];
    let root = fixtures().canonicalize().unwrap();
    for (path, category, parts) in cases {
        let err = render_path(path).await.expect_err(path);
        let msg = err.to_string();
        assert_eq!(err.category(), *category, "{path}: {msg}");
        for part in *parts {
            assert!(msg.contains(part), "{path}: expected {part:?} in: {msg}");
        }
        assert!(!msg.contains(&*root.to_string_lossy()), "{path}: absolute path in: {msg}");
        assert!(!msg.contains("/tmp/"), "{path}: temp path in: {msg}");
        assert!(!msg.contains('\n'), "{path}: multi-line message: {msg}");
    }
}

#[tokio::test]
async fn required_pinned_images_are_enforced_on_rendered_workloads() {
    let strict = Policy { require_pinned_images: true };
    let err = render_source(&fixtures(), &source("errors/unpinned"), &strict).await.unwrap_err();
    let RenderError::UnpinnedImages(violations) = &err else { panic!("{err}") };
    let got: Vec<(&str, &str, &str, UnpinnedReason)> = violations
        .iter()
        .map(|v| (v.object.as_str(), v.container.as_str(), v.image.as_str(), v.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("Deployment dest/web", "initContainer migrate", "localhost:5000/migrate", UnpinnedReason::NoTag),
            ("Deployment dest/web", "container web", "nginx:latest", UnpinnedReason::LatestTag),
        ]
    );
    assert!(err.to_string().contains("errors/unpinned/workloads.yaml (document 1"), "{err}");
    // Without the policy the same directory renders.
    assert_eq!(render_path("errors/unpinned").await.unwrap().len(), 2);
    // With digests required, the tagged sidecar is refused too but the digest-pinned job is not.
    let req_source = source("errors/unpinned");
    let req = RenderRequest {
        root: &fixtures(),
        source: &req_source,
        app_name: "a",
        default_namespace: "dest",
        policy: &strict,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    let opts = RenderOptions { require_digest: true, ..options() };
    let err = render(&req, &opts, &BuiltinScopes).await.unwrap_err();
    let RenderError::UnpinnedImages(violations) = &err else { panic!("{err}") };
    let containers: Vec<&str> = violations.iter().map(|v| v.container.as_str()).collect();
    assert_eq!(containers, ["initContainer migrate", "container web", "container sidecar"]);
}

#[tokio::test]
async fn cache_renders_an_unchanged_revision_once() {
    let cache = RenderCache::default();
    let src = source("kustomize/overlays/prod");
    let policy = Policy::default();
    let opts = options();
    let root = fixtures();
    let req = RenderRequest {
        root: &root,
        source: &src,
        app_name: "myapp",
        default_namespace: "dest",
        policy: &policy,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let first = cache.get_or_render(commit, &req, &opts, &BuiltinScopes).await.unwrap();
    let second = cache.get_or_render(commit, &req, &opts, &BuiltinScopes).await.unwrap();
    assert_eq!(cache.renders(), 1, "the second call is a hit");
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    cache
        .get_or_render("fedcba9876543210fedcba9876543210fedcba98", &req, &opts, &BuiltinScopes)
        .await
        .unwrap();
    assert_eq!(cache.renders(), 2, "a new commit renders");
}

#[tokio::test]
async fn missing_tool_is_named() {
    let src = source("kustomize/base");
    let policy = Policy::default();
    let root = fixtures();
    let req = RenderRequest {
        root: &root,
        source: &src,
        app_name: "a",
        default_namespace: "d",
        policy: &policy,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    let opts = RenderOptions { kustomize_bin: "/opt/none/kustomize".into(), ..options() };
    let err = render(&req, &opts, &BuiltinScopes).await.unwrap_err();
    assert_eq!(err.category(), "tool_missing");
    assert!(err.to_string().starts_with("kustomize binary /opt/none/kustomize not found"), "{err}");
}

/// A cluster-scoped custom kind that no built-in table knows: only discovery can tell.
const SPROCKET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sprockets.render-test.ferry.dev
spec:
  group: render-test.ferry.dev
  scope: Cluster
  names: {kind: Sprocket, plural: sprockets, singular: sprocket}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test]
async fn discovery_on_the_real_cluster_scopes_custom_kinds() {
    let cluster = Cluster::shared();
    cluster.apply(SPROCKET_CRD);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/sprockets.render-test.ferry.dev",
    ]);

    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    // Established does not mean discovery already lists the kind; poll until it does.
    let mut discovered = DiscoveredScopes::default();
    for attempt in 0.. {
        discovered = DiscoveredScopes::discover(client.clone()).await.unwrap();
        if discovered.scope("render-test.ferry.dev", "Sprocket").is_some() {
            break;
        }
        assert!(attempt < 100, "Sprocket never appeared in discovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(discovered.scope("render-test.ferry.dev", "Sprocket"), Some(KindScope::Cluster));
    assert_eq!(discovered.scope("", "ConfigMap"), Some(KindScope::Namespaced));
    assert_eq!(discovered.scope("apps", "Deployment"), Some(KindScope::Namespaced));
    assert_eq!(discovered.scope("rbac.authorization.k8s.io", "ClusterRole"), Some(KindScope::Cluster));
    assert_eq!(discovered.scope("", "Namespace"), Some(KindScope::Cluster));
    assert!(discovered.len() > 40, "only {} kinds discovered", discovered.len());

    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("objects.yaml"),
        "apiVersion: render-test.ferry.dev/v1\nkind: Sprocket\nmetadata: {name: s}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    .unwrap();
    let src = source("");
    let policy = Policy::default();
    let req = RenderRequest {
        root: repo.path(),
        source: &src,
        app_name: "a",
        default_namespace: "dest",
        policy: &policy,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    let with_discovery = render(&req, &options(), &discovered).await.unwrap();
    assert_eq!(ids(&with_discovery), ["Sprocket s", "ConfigMap dest/c"]);
    // Without a cluster the unknown kind is taken as namespaced: discovery made the difference.
    let offline = render(&req, &options(), &BuiltinScopes).await.unwrap();
    assert_eq!(ids(&offline), ["Sprocket dest/s", "ConfigMap dest/c"]);

    // Leave the cluster as we found it.
    cluster.kubectl_ok(&["delete", "crd", "sprockets.render-test.ferry.dev", "--wait=false"]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
