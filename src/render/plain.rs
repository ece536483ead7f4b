//! A plain directory: every `.yaml`, `.yml` and `.json` file below it, in sorted path order so
//! the same revision always yields the same list.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use super::{
    error::{RenderError, RenderLimit},
    parse::{Manifest, is_manifest_file, parse_file_with_keys},
    paths::RepoRoot,
    sops::AgeKeys,
};

/// A manifest file: its path relative to the repository root (as shown in errors) and where to
/// read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestFile {
    pub rel: String,
    pub path: PathBuf,
}

/// The files under a directory: those ferry reads, and the names of those it does not (for
/// saying why a directory rendered nothing).
#[derive(Debug, Default)]
struct Listing {
    files: Vec<ManifestFile>,
    unrendered: Vec<String>,
}

/// Lists the files under `dir` (canonical, inside `root`). Hidden files and directories
/// (`.git`, `.github`) are skipped; symlinks are followed only while they stay inside the
/// repository, and one pointing out of it fails the render rather than being skipped, so that
/// a half-rendered directory never looks like a deletion.
fn listing(root: &RepoRoot, dir: &Path) -> Result<Listing, RenderError> {
    let mut out = Listing::default();
    let mut visited = HashSet::new();
    visited.insert(dir.to_path_buf());
    walk(root, dir, &root.display(dir), &mut visited, &mut out)?;
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk(
    root: &RepoRoot,
    dir: &Path,
    rel_dir: &str,
    visited: &mut HashSet<PathBuf>,
    out: &mut Listing,
) -> Result<(), RenderError> {
    let io = |rel: &str| {
        let rel = rel.to_owned();
        move |cause| RenderError::Io { path: rel, cause }
    };
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(io(rel_dir))?.collect::<Result<_, _>>().map_err(io(rel_dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let rel = if rel_dir == "." { name.to_string() } else { format!("{rel_dir}/{name}") };
        let path = entry.path();
        let file_type = entry.file_type().map_err(io(&rel))?;
        let (is_dir, target) = if file_type.is_symlink() {
            // Resolve the link and insist it stays inside; a dangling link is an error too,
            // because the file it meant is missing from the render.
            let target = path.canonicalize().map_err(io(&rel))?;
            root.check_inside(&target, &rel, "symlink")?;
            (target.is_dir(), target)
        } else {
            (file_type.is_dir(), path)
        };
        if is_dir {
            // Symlinked directories can form cycles; visit each real directory once.
            let real = target.canonicalize().map_err(io(&rel))?;
            if visited.insert(real) {
                walk(root, &target, &rel, visited, out)?;
            }
        } else if is_manifest_file(&name) {
            out.files.push(ManifestFile { rel, path: target });
        } else if !is_documentation(&name) {
            out.unrendered.push(name.into_owned());
        }
    }
    Ok(())
}

/// Reads and parses every manifest file under `dir`, refusing the whole render when the files
/// hold more than `max_bytes` together (checked before each file is read). SOPS-encrypted
/// files are decrypted with `keys`, file by file, in memory.
pub(crate) fn render_plain(
    root: &RepoRoot,
    dir: &Path,
    max_bytes: u64,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
    let mut manifests = Vec::new();
    let mut total: u64 = 0;
    let listing = listing(root, dir)?;
    for file in listing.files {
        let io = |cause| RenderError::Io { path: file.rel.clone(), cause };
        total = total.saturating_add(std::fs::metadata(&file.path).map_err(io)?.len());
        if total > max_bytes {
            return Err(RenderError::TooLarge {
                path: root.display(dir),
                limit: RenderLimit::Bytes(max_bytes),
            });
        }
        let bytes = std::fs::read(&file.path).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|_| RenderError::InvalidYaml {
            origin: super::error::Origin::new(&file.rel, 1),
            cause: "the file is not UTF-8".into(),
        })?;
        manifests.extend(parse_file_with_keys(&file.rel, &text, keys)?);
    }
    if manifests.is_empty() && !listing.unrendered.is_empty() {
        return Err(RenderError::NothingRendered {
            path: root.display(dir),
            found: describe_unrendered(&listing.unrendered),
        });
    }
    Ok(manifests)
}

/// Files that sit beside manifests without being meant for the cluster: a directory holding
/// only these (and no manifest) is an empty render, not a mistake.
fn is_documentation(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or_default();
    [".md", ".txt", ".rst", ".adoc"].iter().any(|ext| lower.ends_with(ext))
        || ["license", "notice", "owners", "codeowners", "readme", "makefile"].contains(&stem)
}

/// `2 .jsonnet files (jsonnet is not supported), 1 .tf file`: the unrendered files by
/// extension, most common first, with what ferry knows of the format.
fn describe_unrendered(names: &[String]) -> String {
    let mut by_ext: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for name in names {
        let ext = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!(".{}", ext.to_ascii_lowercase()),
            _ => name.clone(),
        };
        *by_ext.entry(ext).or_default() += 1;
    }
    let mut groups: Vec<(String, usize)> = by_ext.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let described: Vec<String> = groups
        .iter()
        .take(5)
        .map(|(ext, n)| {
            let noun = if *n == 1 { "file" } else { "files" };
            match unsupported_format(ext) {
                Some(format) => format!("{n} {ext} {noun} ({format} is not supported)"),
                None => format!("{n} {ext} {noun}"),
            }
        })
        .collect();
    let more = groups.len().saturating_sub(5);
    if more > 0 { format!("{} and {more} more kinds", described.join(", ")) } else { described.join(", ") }
}

/// Formats people keep manifests in that ferry does not render.
fn unsupported_format(ext: &str) -> Option<&'static str> {
    Some(match ext {
        ".jsonnet" | ".libsonnet" => "jsonnet",
        ".cue" => "CUE",
        ".tf" | ".hcl" => "Terraform",
        ".j2" | ".jinja" | ".jinja2" => "Jinja",
        ".tpl" | ".gotmpl" => "a template outside a Helm chart",
        ".pkl" => "Pkl",
        ".ts" | ".py" => "cdk8s",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn sorted_recursive_skipping_hidden_and_non_manifests() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        for f in [
            "apps/b.yaml",
            "apps/a.yml",
            "apps/z/c.json",
            "apps/README.md",
            "apps/.hidden.yaml",
            "apps/.git/x.yaml",
            "apps/10.yaml",
        ] {
            write(r, f, "");
        }
        let root = RepoRoot::new(r).unwrap();
        let dir = root.resolve("apps", "source path").unwrap();
        let rels: Vec<String> = listing(&root, &dir).unwrap().files.into_iter().map(|f| f.rel).collect();
        assert_eq!(rels, ["apps/10.yaml", "apps/a.yml", "apps/b.yaml", "apps/z/c.json"]);
    }

    #[test]
    fn symlinks_inside_are_followed_once_outside_refused() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n");
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        write(r, "shared/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n");
        write(r, "app/own.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\n");
        symlink("../shared", r.join("app/linked")).unwrap();
        // A cycle must not loop forever.
        symlink("..", r.join("app/loop")).unwrap();
        let root = RepoRoot::new(r).unwrap();
        let dir = root.resolve("app", "source path").unwrap();
        let names: Vec<String> = render_plain(&root, &dir, u64::MAX, None)
            .unwrap()
            .into_iter()
            .map(|m| m.object.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["shared", "own"], "linked/cm.yaml sorts before own.yaml; loop/ adds nothing new");

        symlink(outside.path().join("secret.yaml"), r.join("app/steal.yaml")).unwrap();
        let err = render_plain(&root, &dir, u64::MAX, None).unwrap_err();
        assert_eq!(err.to_string(), "symlink app/steal.yaml escapes the repository root");

        std::fs::remove_file(r.join("app/steal.yaml")).unwrap();
        symlink(outside.path(), r.join("app/stealdir")).unwrap();
        let err = render_plain(&root, &dir, u64::MAX, None).unwrap_err();
        assert_eq!(err.to_string(), "symlink app/stealdir escapes the repository root");
    }

    #[test]
    fn errors_name_the_file() {
        let repo = tempfile::tempdir().unwrap();
        write(repo.path(), "ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
        write(repo.path(), "sub/bad.yaml", "apiVersion: v1\nmetadata: {name: a}\n");
        let root = RepoRoot::new(repo.path()).unwrap();
        let err = render_plain(&root, root.path(), u64::MAX, None).unwrap_err();
        assert_eq!(err.to_string(), "sub/bad.yaml (document 1, line 1): object has no kind");
    }

    #[test]
    fn files_past_the_byte_limit_fail_the_render_naming_the_limit() {
        let repo = tempfile::tempdir().unwrap();
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        write(repo.path(), "a.yaml", cm);
        write(repo.path(), "b.yaml", &cm.replace("name: a", "name: b"));
        let root = RepoRoot::new(repo.path()).unwrap();
        let both = 2 * cm.len() as u64;
        assert_eq!(render_plain(&root, root.path(), both, None).unwrap().len(), 2);
        let err = render_plain(&root, root.path(), both - 1, None).unwrap_err();
        assert_eq!(err.category(), "too_large");
        assert!(
            err.to_string().contains(&format!("the limit of {} bytes (--max-render-bytes)", both - 1)),
            "{err}"
        );
    }

    #[test]
    fn a_directory_of_files_ferry_does_not_render_is_an_error() {
        let repo = tempfile::tempdir().unwrap();
        write(repo.path(), "app/main.jsonnet", "{}");
        write(repo.path(), "app/lib/util.jsonnet", "{}");
        write(repo.path(), "app/README.md", "# app");
        let root = RepoRoot::new(repo.path()).unwrap();
        let dir = root.resolve("app", "source path").unwrap();
        let err = render_plain(&root, &dir, 1 << 20, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "app renders no object but holds files ferry does not render: 2 .jsonnet files (jsonnet is not supported); ferry renders .yaml, .yml and .json files, kustomizations and Helm charts"
        );
    }

    #[test]
    fn an_empty_directory_or_one_of_documentation_renders_nothing_without_error() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("empty")).unwrap();
        write(repo.path(), "docs/README.md", "# nothing here");
        write(repo.path(), "docs/.gitkeep", "");
        let root = RepoRoot::new(repo.path()).unwrap();
        for path in ["empty", "docs"] {
            let dir = root.resolve(path, "source path").unwrap();
            assert!(render_plain(&root, &dir, 1 << 20, None).unwrap().is_empty(), "{path}");
        }
    }

    #[test]
    fn unrendered_files_beside_manifests_are_not_an_error() {
        let repo = tempfile::tempdir().unwrap();
        write(repo.path(), "app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
        write(repo.path(), "app/extra.jsonnet", "{}");
        let root = RepoRoot::new(repo.path()).unwrap();
        let dir = root.resolve("app", "source path").unwrap();
        assert_eq!(render_plain(&root, &dir, 1 << 20, None).unwrap().len(), 1);
    }
}
