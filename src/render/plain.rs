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

/// Lists the manifest files under `dir` (canonical, inside `root`). Hidden files and directories
/// (`.git`, `.github`) are skipped; symlinks are followed only while they stay inside the
/// repository, and one pointing out of it fails the render rather than being skipped, so that
/// a half-rendered directory never looks like a deletion.
pub(crate) fn manifest_files(root: &RepoRoot, dir: &Path) -> Result<Vec<ManifestFile>, RenderError> {
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    visited.insert(dir.to_path_buf());
    walk(root, dir, &root.display(dir), &mut visited, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk(
    root: &RepoRoot,
    dir: &Path,
    rel_dir: &str,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<ManifestFile>,
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
            out.push(ManifestFile { rel, path: target });
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
    for file in manifest_files(root, dir)? {
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
    Ok(manifests)
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
        let rels: Vec<String> = manifest_files(&root, &dir).unwrap().into_iter().map(|f| f.rel).collect();
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
}
