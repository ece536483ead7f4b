//! `kustomize build`.
//!
//! `spec.source.kustomize` options (namePrefix, nameSuffix, images) are applied the way a person
//! would: a throwaway overlay kustomization in a temp dir lists the source directory as its only
//! resource and sets the options. kustomize itself then does the renaming, including the
//! references it knows about (a ConfigMap's new name inside the Deployment that mounts it), which
//! no post-processing of ours could match. The source tree is never written to. kustomize
//! refuses absolute resource paths, so the overlay names the source by a relative path.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{
    detect::KUSTOMIZATION_FILES,
    error::{RenderError, Tool},
    parse::{Loose, Manifest, parse_rendered_yaml},
    paths::RepoRoot,
    tool::{ToolRun, clean_stderr},
};
use crate::api::KustomizeSource;

/// Whether the options change anything; an empty `kustomize: {}` only forces the renderer.
pub(crate) fn has_overlay_options(opts: &KustomizeSource) -> bool {
    opts.name_prefix.as_deref().is_some_and(|s| !s.is_empty())
        || opts.name_suffix.as_deref().is_some_and(|s| !s.is_empty())
        || !opts.images.is_empty()
}

/// The overlay kustomization for `opts`, as JSON (which kustomize reads as YAML). `resource` is
/// the source directory relative to the overlay.
pub(crate) fn overlay_kustomization(resource: &Path, opts: &KustomizeSource) -> serde_json::Value {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [resource.to_string_lossy()],
    });
    if let Some(p) = opts.name_prefix.as_deref().filter(|s| !s.is_empty()) {
        k["namePrefix"] = json!(p);
    }
    if let Some(s) = opts.name_suffix.as_deref().filter(|s| !s.is_empty()) {
        k["nameSuffix"] = json!(s);
    }
    if !opts.images.is_empty() {
        // KustomizeImage serializes with kustomize's own field names (name, newName, newTag, digest).
        k["images"] = json!(opts.images);
    }
    k
}

/// Keys of a kustomization whose entries may name other directories (bases, components,
/// generator or transformer configs). kustomize's own load restrictor keeps *files* inside each
/// kustomization's directory, but happily loads a *directory* anywhere on the machine:
/// `resources: [../../../../etc/x]` or an absolute path would read outside the checkout.
const DIRECTORY_KEYS: [&str; 6] =
    ["resources", "bases", "components", "generators", "transformers", "validators"];

/// Walks the kustomizations reachable from `dir` through local directory references and fails
/// on the first one that leads out of the repository. Entries that do not exist locally (remote
/// URLs, inline generator YAML, typos) are left to kustomize, which reports them itself.
pub(crate) fn check_local_references(root: &RepoRoot, dir: &Path) -> Result<(), RenderError> {
    let mut visited = std::collections::HashSet::new();
    check_kustomization_dir(root, dir, &mut visited)
}

fn check_kustomization_dir(
    root: &RepoRoot,
    dir: &Path,
    visited: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), RenderError> {
    if !visited.insert(dir.to_path_buf()) {
        return Ok(());
    }
    let Some(file) = KUSTOMIZATION_FILES.iter().map(|f| dir.join(f)).find(|f| f.is_file()) else {
        return Ok(());
    };
    // Fail closed: a kustomization this check cannot read whole (too large for the parser's
    // limits, not UTF-8, not YAML) might hide a reference it would have refused.
    let unchecked = |cause: String| RenderError::UncheckedKustomization { file: root.display(&file), cause };
    let text = std::fs::read_to_string(&file).map_err(|e| unchecked(e.to_string()))?;
    if text.trim().is_empty() {
        return Ok(());
    }
    let Loose(doc) =
        serde_saphyr::from_str_with_options::<Loose>(&text, super::parse::options()).map_err(|e| {
            unchecked(e.without_snippet().to_string().split_whitespace().collect::<Vec<_>>().join(" "))
        })?;
    for key in DIRECTORY_KEYS {
        for entry in doc[key].as_array().into_iter().flatten().filter_map(|e| e.as_str()) {
            if is_remote(entry) {
                return Err(RenderError::RemoteReference {
                    entry: entry.to_string(),
                    file: root.display(&file),
                });
            }
            let Ok(target) = dir.join(entry).canonicalize() else { continue };
            let shown = format!("{entry} (in {})", root.display(&file));
            root.check_inside(&target, &shown, "kustomize reference")?;
            if target.is_dir() {
                check_kustomization_dir(root, &target, visited)?;
            }
        }
    }
    Ok(())
}

/// Whether a kustomization entry names remote content: a URL, or one of the go-getter forms
/// kustomize accepts (`git@host:repo`, `github.com/org/repo//path`, `git::...`).
fn is_remote(entry: &str) -> bool {
    entry.contains("://")
        || ["git@", "git::", "github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|p| entry.starts_with(p))
}

/// Whether kustomize failed on a URL resource (`https://`, `git@`, `github.com/...`), which
/// cannot work without network access.
pub(crate) fn mentions_remote_resource(stderr: &str) -> bool {
    ["from 'http://", "from 'https://", "from 'git@", "from 'ssh://", "from 'git::", "from 'github.com/"]
        .iter()
        .any(|p| stderr.contains(p))
}

/// `to` relative to `from`; both absolute and canonical.
pub(crate) fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

pub(crate) struct KustomizeRender<'a> {
    pub root: &'a RepoRoot,
    /// Canonical source directory.
    pub dir: &'a Path,
    /// The source path as the user knows it.
    pub shown: &'a str,
    pub options: Option<&'a KustomizeSource>,
    pub bin: &'a Path,
    pub timeout: std::time::Duration,
    /// Most bytes the renderer may print (`RenderOptions::max_bytes`).
    pub max_bytes: u64,
    /// `spec.decryption`'s keys: SOPS-encrypted documents of the build output are decrypted
    /// one by one after kustomize ran, so plaintext never reaches a file.
    pub keys: Option<&'a crate::render::sops::AgeKeys>,
}

impl KustomizeRender<'_> {
    pub(crate) async fn run(self) -> Result<Vec<Manifest>, RenderError> {
        let io = |what: &str| {
            let path = format!("{what} for kustomize");
            move |cause| RenderError::Io { path, cause }
        };
        check_local_references(self.root, self.dir)?;
        let tmp = tempfile::Builder::new().prefix("ferry-kustomize-").tempdir().map_err(io("temp dir"))?;
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).map_err(io("temp HOME"))?;
        let overlay: Option<PathBuf> = match self.options.filter(|o| has_overlay_options(o)) {
            Some(opts) => {
                let dir = tmp.path().join("overlay");
                std::fs::create_dir(&dir).map_err(io("overlay dir"))?;
                let dir = dir.canonicalize().map_err(io("overlay dir"))?;
                let resource = relative_path(&dir, self.dir);
                let text = serde_json::to_string_pretty(&overlay_kustomization(&resource, opts))
                    .expect("a JSON value always serializes");
                std::fs::write(dir.join("kustomization.yaml"), text).map_err(io("overlay kustomization"))?;
                Some(dir)
            }
            None => None,
        };
        let target = overlay.as_deref().unwrap_or(self.dir);
        let out = ToolRun {
            tool: Tool::Kustomize,
            bin: self.bin,
            args: vec!["build".into(), target.into()],
            home: &home,
            env: vec![("XDG_CONFIG_HOME", home.join(".config"))],
            timeout: self.timeout,
            shown_path: self.shown,
            max_stdout: self.max_bytes,
        }
        .run()
        .await?;
        if !out.success {
            let mut replacements: Vec<(&Path, &str)> = vec![(self.root.path(), ".")];
            if let Some(o) = &overlay {
                replacements.insert(0, (o.as_path(), "<spec.source.kustomize overlay>"));
            }
            replacements.push((tmp.path(), "<tmp>"));
            let mut stderr = clean_stderr(&out.stderr, &replacements);
            if mentions_remote_resource(&stderr) {
                stderr.push_str(
                    " (ferry renders offline: vendor remote bases and resources into the repository)",
                );
            }
            return Err(RenderError::Kustomize { path: self.shown.to_owned(), stderr });
        }
        let label = format!("{} (kustomize build output)", self.shown);
        let stdout = String::from_utf8(out.stdout).map_err(|_| RenderError::Kustomize {
            path: self.shown.to_owned(),
            stderr: "kustomize printed output that is not UTF-8".into(),
        })?;
        let keys = self.keys.cloned();
        tokio::task::spawn_blocking(move || parse_rendered_yaml(&label, &stdout, keys.as_ref()))
            .await
            .expect("parsing does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KustomizeImage;

    #[test]
    fn overlay_carries_every_option() {
        let opts = KustomizeSource {
            name_prefix: Some("prod-".into()),
            name_suffix: Some("".into()),
            images: vec![KustomizeImage {
                name: "app".into(),
                new_name: Some("registry/app".into()),
                new_tag: Some("1.2".into()),
                digest: None,
            }],
        };
        assert!(has_overlay_options(&opts));
        assert!(!has_overlay_options(&KustomizeSource::default()));
        let k = overlay_kustomization(Path::new("../../r/apps/web"), &opts);
        assert_eq!(
            k,
            json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../../r/apps/web"],
                "namePrefix": "prod-",
                "images": [{"name": "app", "newName": "registry/app", "newTag": "1.2"}],
            })
        );
    }

    #[test]
    fn references_out_of_the_repository_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("kustomization.yaml"), "resources: []\n").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        for d in ["base", "overlays/prod", "components/x"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("base/kustomization.yaml"), "resources: [cm.yaml]\n").unwrap();
        std::fs::write(r.join("base/cm.yaml"), "").unwrap();
        std::fs::write(r.join("components/x/kustomization.yaml"), "kind: Component\n").unwrap();
        std::fs::write(
            r.join("overlays/prod/kustomization.yaml"),
            "resources: [../../base]\ncomponents: [../../components/x]\ngenerators: ['inline: yaml']\n",
        )
        .unwrap();
        let root = RepoRoot::new(r).unwrap();
        let prod = root.resolve("overlays/prod", "source path").unwrap();
        check_local_references(&root, &prod).unwrap();

        // A base (two levels down) that reaches out of the checkout.
        let escape = relative_path(&root.path().join("base"), &outside.path().canonicalize().unwrap());
        std::fs::write(
            r.join("base/kustomization.yaml"),
            format!("resources: [cm.yaml, {}]\n", escape.display()),
        )
        .unwrap();
        let err = check_local_references(&root, &prod).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "kustomize reference {} (in base/kustomization.yaml) escapes the repository root",
                escape.display()
            )
        );
        let abs = outside.path().canonicalize().unwrap();
        std::fs::write(r.join("base/kustomization.yaml"), format!("bases: [{}]\n", abs.display())).unwrap();
        assert_eq!(check_local_references(&root, &prod).unwrap_err().category(), "path_escapes");
    }

    #[test]
    fn remote_entries_are_refused_before_kustomize_runs() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join("app")).unwrap();
        let root = RepoRoot::new(r).unwrap();
        let app = root.resolve("app", "source path").unwrap();
        for entry in [
            "https://example.invalid/x.yaml",
            "github.com/org/repo//base?ref=v1",
            "git@github.com:org/repo.git",
            "ssh://git@host/repo.git//base",
        ] {
            std::fs::write(r.join("app/kustomization.yaml"), format!("resources: [cm.yaml, '{entry}']\n"))
                .unwrap();
            let err = check_local_references(&root, &app).unwrap_err();
            assert_eq!(err.category(), "remote_reference", "{entry}: {err}");
            assert!(
                err.to_string().starts_with(&format!("app/kustomization.yaml refers to the remote {entry}")),
                "{err}"
            );
        }
        // Local references and inline generator configs are not remote.
        std::fs::write(
            r.join("app/kustomization.yaml"),
            "resources: [cm.yaml, ../app]\ngenerators: ['inline: yaml']\n",
        )
        .unwrap();
        check_local_references(&root, &app).unwrap();
    }

    /// Issue 19 (low): a kustomization the parser's limits refused was let through unchecked,
    /// so deep nesting beside a remote base hid the base from the check.
    #[test]
    fn a_kustomization_the_check_cannot_read_fails_closed() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join("app")).unwrap();
        let root = RepoRoot::new(r).unwrap();
        let app = root.resolve("app", "source path").unwrap();
        let deep = format!("{}x{}", "[".repeat(300), "]".repeat(300));
        let hostile = format!("resources: ['github.com/org/repo//base']\npatches: {deep}\n");
        for (text, cause) in [(hostile.as_bytes(), "limit exceeded"), (&b"resources: [\xff]\n"[..], "UTF-8")]
        {
            std::fs::write(r.join("app/kustomization.yaml"), text).unwrap();
            let err = check_local_references(&root, &app).unwrap_err();
            assert_eq!(err.category(), "unchecked_kustomization", "{err}");
            let shown = err.to_string();
            assert!(shown.starts_with("app/kustomization.yaml cannot be checked"), "{shown}");
            assert!(shown.to_lowercase().contains(&cause.to_lowercase()), "{shown}");
        }
        std::fs::write(r.join("app/kustomization.yaml"), "\n").unwrap();
        check_local_references(&root, &app).unwrap();
    }

    #[test]
    fn remote_resources_are_recognized() {
        assert!(mentions_remote_resource(
            "accumulating resources from 'https://github.com/x/y//base?ref=v1': ..."
        ));
        assert!(!mentions_remote_resource("accumulating resources from 'missing.yaml': no such file"));
    }

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b)).to_string_lossy().into_owned();
        assert_eq!(rel("/tmp/ferry-k/overlay", "/work/repo/apps"), "../../../work/repo/apps");
        assert_eq!(rel("/work/a/b", "/work/a/c/d"), "../c/d");
        assert_eq!(rel("/work/a", "/work/a"), ".");
    }
}
