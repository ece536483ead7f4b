//! Manifests -> objects: a directory of an exported Git revision becomes the list of Kubernetes
//! objects it declares. No cluster writes happen here.
//!
//! The pipeline, each step a plain function over plain data where it can be:
//!
//! 1. resolve `spec.source.path` inside the checkout, refusing `..` and symlinks that leave it
//!    ([`paths`]);
//! 2. pick the renderer: explicit `spec.source.kustomize`/`helm`, else `kustomization.yaml` or
//!    `Chart.yaml`, else a plain directory ([`detect`]);
//! 3. render: read YAML/JSON files ([`plain`]), or run `kustomize build` / `helm template` offline
//!    with a timeout ([`kustomize`], [`helm`], [`tool`]);
//! 4. parse into objects, decrypting SOPS-encrypted documents with `spec.decryption`'s age keys
//!    ([`sops`]), flattening `List`s and requiring apiVersion, kind and metadata.name ([`parse`]);
//! 5. give namespaced objects the destination namespace ([`scope`]), refuse duplicates
//!    ([`duplicates`]) and unpinned images ([`pin_policy`]).
//!
//! [`RenderCache`] keeps finished renders per (commit, path, options).

mod cache;
pub mod capabilities;
pub mod dependencies;
pub mod detect;
pub mod duplicates;
mod error;
mod helm;
mod kustomize;
pub mod parse;
mod paths;
pub mod pin_policy;
mod plain;
pub mod scope;
pub mod sops;
mod tool;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

pub use cache::{DEFAULT_CAPACITY, DEFAULT_MAX_BYTES as DEFAULT_RENDER_CACHE_BYTES, RenderCache};
pub use capabilities::Capabilities;
pub use dependencies::{Dependency, FetchedDependency};
pub use detect::RendererKind;
pub use error::{ImageViolation, Origin, RenderError, RenderLimit, Tool, UnpinnedReason};
use kube::{ResourceExt, api::DynamicObject};
pub use parse::Manifest;
pub use pin_policy::PinPolicy;
pub use scope::{BuiltinScopes, DiscoveredScopes, KindScope, ScopeResolver};
pub use sops::{AgeKeys, KeyError, SopsError};

use crate::api::{Application, Policy, Source};

/// Controller-wide settings for rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// The kustomize binary: a path, or a name looked up in `PATH`.
    pub kustomize_bin: PathBuf,
    /// The helm binary: a path, or a name looked up in `PATH`.
    pub helm_bin: PathBuf,
    /// How long one renderer may run before it is killed.
    pub timeout: Duration,
    /// With `requirePinnedImages`, also require an `@sha256:` digest on every image.
    pub require_digest: bool,
    /// Most bytes one render may be: a renderer's output, or a plain directory's manifest
    /// files together (`--max-render-bytes`). A repository author decides the size of a render,
    /// and ferry holds it in memory whole, so it is bounded.
    pub max_bytes: u64,
    /// Most objects one render may produce (`--max-render-objects`).
    pub max_objects: usize,
}

/// Default of [`RenderOptions::max_bytes`]: 32 MiB, several times the largest real renders
/// (charts bundling hundreds of CRDs), and a peak memory well inside the chart's 1 GiB limit.
pub const DEFAULT_MAX_RENDER_BYTES: u64 = 32 * 1024 * 1024;
/// Default of [`RenderOptions::max_objects`].
pub const DEFAULT_MAX_RENDER_OBJECTS: usize = 10_000;

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            kustomize_bin: "kustomize".into(),
            helm_bin: "helm".into(),
            timeout: Duration::from_secs(60),
            require_digest: false,
            max_bytes: DEFAULT_MAX_RENDER_BYTES,
            max_objects: DEFAULT_MAX_RENDER_OBJECTS,
        }
    }
}

/// What to render: a checkout and the Application's source settings.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// Root of the exported revision. Nothing outside it is read.
    pub root: &'a Path,
    /// `spec.source`: the path inside the repository and the Kustomize/Helm options.
    pub source: &'a Source,
    /// The Application's name: Helm's release name unless `releaseName` is set.
    pub app_name: &'a str,
    /// Namespace for namespaced objects that name none (and Helm's `--namespace`).
    pub default_namespace: &'a str,
    pub policy: &'a Policy,
    /// The cluster's version and served APIs, for helm; `None` renders as `helm template`
    /// alone would (v1.20, helm's built-in API list).
    pub capabilities: Option<&'a Capabilities>,
    /// A chart from a repository, unpacked: rendered with helm whatever `root` holds, its
    /// `valuesFiles` read from `root` at the source path (the Git revision beside the chart).
    pub chart: Option<&'a Path>,
    /// `spec.decryption`'s age keys. SOPS-encrypted documents are decrypted with them after
    /// rendering; without them such a document fails the render (it is never applied
    /// encrypted).
    pub decryption: Option<&'a AgeKeys>,
    /// The chart's dependencies from repositories, fetched by the controller
    /// ([`dependencies::to_fetch`]): helm renders a copy of the chart with them in `charts/`.
    pub dependencies: &'a [FetchedDependency],
}

impl<'a> RenderRequest<'a> {
    /// The request an Application makes: the destination namespace defaults to the
    /// Application's own namespace.
    pub fn for_application(app: &'a Application, root: &'a Path) -> Self {
        let default_namespace = app
            .spec
            .destination
            .as_ref()
            .and_then(|d| d.namespace.as_deref())
            .or(app.metadata.namespace.as_deref())
            .unwrap_or("default");
        RenderRequest {
            root,
            source: &app.spec.source,
            app_name: app.metadata.name.as_deref().unwrap_or_default(),
            default_namespace,
            policy: &app.spec.policy,
            capabilities: None,
            chart: None,
            // Filled in by the controller, which reads spec.decryption's Secret.
            decryption: None,
            dependencies: &[],
        }
    }

    /// The source path as written, normalized (`.` for the repository root).
    fn shown_path(&self) -> String {
        let raw = self.source.path.as_deref().unwrap_or_default();
        match paths::normalize_relative(raw) {
            Some(p) if p.as_os_str().is_empty() => ".".into(),
            Some(p) => p.to_string_lossy().into_owned(),
            None => raw.into(),
        }
    }
}

/// Renders `req` into objects: see the module documentation for the steps.
pub async fn render(
    req: &RenderRequest<'_>,
    opts: &RenderOptions,
    scopes: &dyn ScopeResolver,
) -> Result<Vec<DynamicObject>, RenderError> {
    Ok(render_manifests(req, opts, scopes).await?.into_iter().map(|m| m.object).collect())
}

/// Like [`render`], keeping where each object came from (for diffs and error reports).
pub async fn render_manifests(
    req: &RenderRequest<'_>,
    opts: &RenderOptions,
    scopes: &dyn ScopeResolver,
) -> Result<Vec<Manifest>, RenderError> {
    let (kind, mut manifests) = render_raw(req, opts).await?;
    let pin =
        PinPolicy { require_pinned: req.policy.require_pinned_images, require_digest: opts.require_digest };
    finish(&mut manifests, req.default_namespace, scopes, pin)?;
    tracing::debug!(
        path = %req.shown_path(),
        renderer = kind.as_str(),
        objects = manifests.len(),
        "rendered"
    );
    Ok(manifests)
}

/// The checks that run on every render whatever produced it: namespaces, duplicates, images.
pub fn finish(
    manifests: &mut [Manifest],
    default_namespace: &str,
    scopes: &dyn ScopeResolver,
    pin: PinPolicy,
) -> Result<(), RenderError> {
    scope::assign_namespaces(manifests, default_namespace, scopes);
    duplicates::check_duplicates(manifests)?;
    pin_policy::check_images(manifests, pin)
}

/// The dependencies of the chart `req` renders that must be fetched ([`dependencies`]): none
/// when it renders no chart. Errors are the render's (a path that escapes, say), so the
/// render reports them the same way.
pub fn dependencies_to_fetch(req: &RenderRequest<'_>) -> Result<Vec<Dependency>, RenderError> {
    let (root, dir, shown) = match req.chart {
        Some(chart) => {
            let root = paths::RepoRoot::new(chart)?;
            let dir = root.resolve("", "chart")?;
            (root, dir, req.source.chart.as_ref().map_or_else(|| "chart".to_string(), |c| c.name.clone()))
        }
        None => {
            let root = paths::RepoRoot::new(req.root)?;
            let dir = root.resolve(req.source.path.as_deref().unwrap_or_default(), "source path")?;
            let markers = detect::DirMarkers::scan(&dir);
            if !dir.is_dir() || detect::detect(req.source, markers) != RendererKind::Helm {
                return Ok(Vec::new());
            }
            (root, dir, req.shown_path())
        }
    };
    dependencies::to_fetch(&root, &dir, &shown)
}

/// Steps 1 to 4: resolve, detect, render, parse.
async fn render_raw(
    req: &RenderRequest<'_>,
    opts: &RenderOptions,
) -> Result<(RendererKind, Vec<Manifest>), RenderError> {
    let root = paths::RepoRoot::new(req.root)?;
    let shown = req.shown_path();
    let dir = root.resolve(req.source.path.as_deref().unwrap_or_default(), "source path")?;
    if !dir.is_dir() {
        return Err(RenderError::NotADirectory { path: shown });
    }
    if let Some(chart) = req.chart {
        let chart_root = paths::RepoRoot::new(chart)?;
        let chart_dir = chart_root.resolve("", "chart")?;
        let shown = req.source.chart.as_ref().map_or_else(|| "chart".to_string(), |c| c.name.clone());
        let manifests =
            helm_render(req, opts, (&chart_root, &chart_dir), (&root, &dir), &shown).run().await?;
        return within_limits(RendererKind::Helm, manifests, shown, opts);
    }
    let markers = detect::DirMarkers::scan(&dir);
    let kind = detect::detect(req.source, markers);
    let manifests = match kind {
        RendererKind::Kustomize => {
            if !markers.kustomization {
                return Err(RenderError::RendererMismatch {
                    renderer: "kustomize",
                    path: shown,
                    expected: "kustomization.yaml",
                });
            }
            kustomize::KustomizeRender {
                root: &root,
                dir: &dir,
                shown: &shown,
                options: req.source.kustomize.as_ref(),
                bin: &opts.kustomize_bin,
                timeout: opts.timeout,
                max_bytes: opts.max_bytes,
                keys: req.decryption,
            }
            .run()
            .await?
        }
        RendererKind::Helm => {
            if !markers.chart {
                return Err(RenderError::RendererMismatch {
                    renderer: "helm",
                    path: shown,
                    expected: "Chart.yaml",
                });
            }
            helm_render(req, opts, (&root, &dir), (&root, &dir), &shown).run().await?
        }
        // Reading a large tree blocks; keep it off the runtime's worker threads.
        RendererKind::Plain => {
            let max_bytes = opts.max_bytes;
            let keys = req.decryption.cloned();
            tokio::task::spawn_blocking(move || plain::render_plain(&root, &dir, max_bytes, keys.as_ref()))
                .await
                .expect("plain rendering does not panic")?
        }
    };
    within_limits(kind, manifests, shown, opts)
}

/// `helm template` of the chart in `chart` (its repository root and directory), reading
/// `valuesFiles` from `values`.
fn helm_render<'a>(
    req: &'a RenderRequest<'a>,
    opts: &'a RenderOptions,
    chart: (&'a paths::RepoRoot, &'a Path),
    values: (&'a paths::RepoRoot, &'a Path),
    shown: &'a str,
) -> helm::HelmRender<'a> {
    helm::HelmRender {
        root: chart.0,
        dir: chart.1,
        values,
        shown,
        options: req.source.helm.as_ref(),
        default_release: req.app_name,
        namespace: req.default_namespace,
        capabilities: req.capabilities,
        keys: req.decryption,
        dependencies: req.dependencies,
        bin: &opts.helm_bin,
        timeout: opts.timeout,
        max_bytes: opts.max_bytes,
    }
}

fn within_limits(
    kind: RendererKind,
    manifests: Vec<Manifest>,
    shown: String,
    opts: &RenderOptions,
) -> Result<(RendererKind, Vec<Manifest>), RenderError> {
    if manifests.len() > opts.max_objects {
        return Err(RenderError::TooLarge { path: shown, limit: RenderLimit::Objects(opts.max_objects) });
    }
    Ok((kind, manifests))
}

/// `Kind namespace/name` of an object, for logs and messages.
pub fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map_or("Object", |t| t.kind.as_str());
    match obj.namespace() {
        Some(ns) => format!("{kind} {ns}/{}", obj.name_any()),
        None => format!("{kind} {}", obj.name_any()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApplicationSpec, Destination, GitRef, HelmSource};

    fn spec(path: &str) -> ApplicationSpec {
        serde_json::from_value(serde_json::json!({
            "source": {"repoURL": "file:///r", "ref": {"branch": "main"}, "path": path},
        }))
        .unwrap()
    }

    #[test]
    fn request_for_application_defaults_namespace() {
        let mut app = Application::new("shop", spec("apps/shop"));
        app.metadata.namespace = Some("team".into());
        let root = Path::new("/r");
        let r = RenderRequest::for_application(&app, root);
        assert_eq!((r.app_name, r.default_namespace), ("shop", "team"));
        app.spec.destination =
            Some(Destination { namespace: Some("prod".into()), create_namespace: false, cluster: None });
        assert_eq!(RenderRequest::for_application(&app, root).default_namespace, "prod");
        app.spec.source.path = Some("./apps//shop/".into());
        assert_eq!(RenderRequest::for_application(&app, root).shown_path(), "apps/shop");
    }

    fn source(path: &str) -> Source {
        Source {
            repo_url: Some("file:///r".into()),
            git_ref: Some(GitRef { branch: Some("main".into()), ..Default::default() }),
            path: Some(path.into()),
            secret_ref: None,
            kustomize: None,
            helm: None,
            chart: None,
            oci: None,
        }
    }

    #[tokio::test]
    async fn path_problems_and_mismatches_are_reported_before_any_tool_runs() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("plain")).unwrap();
        std::fs::write(repo.path().join("file.yaml"), "").unwrap();
        let policy = Policy::default();
        // Binaries that do not exist: reaching a tool would fail with tool_missing instead.
        let opts = RenderOptions {
            kustomize_bin: "/none/k".into(),
            helm_bin: "/none/h".into(),
            ..Default::default()
        };
        let run = |source: Source| {
            let policy = &policy;
            let opts = &opts;
            let root = repo.path().to_path_buf();
            async move {
                let req = RenderRequest {
                    root: &root,
                    source: &source,
                    app_name: "a",
                    default_namespace: "n",
                    policy,
                    capabilities: None,
                    chart: None,
                    decryption: None,
                    dependencies: &[],
                };
                render(&req, opts, &BuiltinScopes).await.unwrap_err().to_string()
            }
        };
        assert_eq!(run(source("../x")).await, "source path ../x escapes the repository root");
        assert_eq!(run(source("/etc")).await, "source path /etc escapes the repository root");
        assert_eq!(run(source("missing")).await, "source path missing does not exist in the revision");
        assert_eq!(run(source("file.yaml")).await, "source path file.yaml is not a directory");
        let helm = Source { helm: Some(HelmSource::default()), ..source("plain") };
        assert_eq!(run(helm).await, "spec.source.helm is set but plain has no Chart.yaml");
        std::fs::write(repo.path().join("plain/kustomization.yaml"), "resources: []\n").unwrap();
        let err = run(source("plain")).await;
        assert!(err.starts_with("kustomize binary /none/k not found"), "{err}");
    }
}
