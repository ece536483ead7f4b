//! Keeping every read inside the repository.
//!
//! A repository is untrusted input: `spec.source.path`, Helm `valuesFiles` and symlinks committed
//! to the tree must never make ferry read (and then apply, or print in an error) a file of the
//! machine it runs on. Two checks, because each catches what the other cannot: `..` is refused
//! lexically (even when it would happen to land inside the repository, so the rule is simple to
//! state), and every resolved path is canonicalized and must stay under the canonical root, which
//! catches symlinks.

use std::path::{Component, Path, PathBuf};

use super::error::RenderError;

/// A repository checkout whose root has been canonicalized once.
#[derive(Debug, Clone)]
pub(crate) struct RepoRoot {
    canonical: PathBuf,
}

impl RepoRoot {
    pub(crate) fn new(root: &Path) -> Result<Self, RenderError> {
        let canonical = root.canonicalize().map_err(|cause| RenderError::Io {
            // The root itself is ours (an export directory), not the user's; say what it is.
            path: "repository checkout".into(),
            cause,
        })?;
        Ok(RepoRoot { canonical })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves `rel` (as written in the spec) inside the repository and returns the canonical
    /// path. `what` names the field in errors ("source path", "values file").
    pub(crate) fn resolve(&self, rel: &str, what: &'static str) -> Result<PathBuf, RenderError> {
        let clean =
            normalize_relative(rel).ok_or_else(|| RenderError::PathEscapes { what, path: rel.into() })?;
        self.resolve_under(&self.canonical.join(&clean), rel, what)
    }

    /// Like [`RepoRoot::resolve`] for a path relative to `base`, a canonical directory inside
    /// the repository (Helm values files are relative to the chart).
    pub(crate) fn resolve_from(
        &self,
        base: &Path,
        rel: &str,
        what: &'static str,
    ) -> Result<PathBuf, RenderError> {
        let clean =
            normalize_relative(rel).ok_or_else(|| RenderError::PathEscapes { what, path: rel.into() })?;
        let shown = self.display(&base.join(&clean));
        self.resolve_under(&base.join(&clean), &shown, what)
    }

    fn resolve_under(&self, joined: &Path, shown: &str, what: &'static str) -> Result<PathBuf, RenderError> {
        let canonical = joined.canonicalize().map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => RenderError::NotFound { what, path: display_rel(shown) },
            _ => RenderError::Io { path: display_rel(shown), cause },
        })?;
        self.check_inside(&canonical, shown, what)?;
        Ok(canonical)
    }

    /// Fails unless `canonical` is the root or below it.
    pub(crate) fn check_inside(
        &self,
        canonical: &Path,
        shown: &str,
        what: &'static str,
    ) -> Result<(), RenderError> {
        if canonical.starts_with(&self.canonical) {
            Ok(())
        } else {
            Err(RenderError::PathEscapes { what, path: display_rel(shown) })
        }
    }

    /// A path under the root as the user knows it: relative, `/`-separated, `.` for the root.
    pub(crate) fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.canonical) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.to_string_lossy().into_owned(),
            // Never print a path outside the repository; it would be one of ours.
            Err(_) => "<outside the repository>".into(),
        }
    }
}

/// Fails on the first symlink under `dir` (hidden entries included) that resolves outside the
/// repository. helm follows symlinks anywhere (it only logs a warning), so without this a chart
/// could `.Files.Get` a file of the machine ferry runs on into a ConfigMap. Dangling links are
/// let through: they cannot leak anything, and the renderer reports them if they matter.
pub(crate) fn check_symlinks_under(root: &RepoRoot, dir: &Path) -> Result<(), RenderError> {
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        if !visited.insert(current.clone()) {
            continue;
        }
        let io = |cause| RenderError::Io { path: root.display(&current), cause };
        for entry in std::fs::read_dir(&current).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file_type = entry.file_type().map_err(io)?;
            if file_type.is_symlink() {
                let Ok(target) = entry.path().canonicalize() else { continue };
                let shown = match root.display(&current).as_str() {
                    "." => entry.file_name().to_string_lossy().into_owned(),
                    parent => format!("{parent}/{}", entry.file_name().to_string_lossy()),
                };
                root.check_inside(&target, &shown, "symlink")?;
                if target.is_dir() {
                    stack.push(target);
                }
            } else if file_type.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

fn display_rel(rel: &str) -> String {
    if rel.is_empty() { ".".into() } else { rel.into() }
}

/// `rel` without `.` components, or `None` when it is absolute or has a `..` component.
pub(crate) fn normalize_relative(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_anywhere_under_a_directory_are_checked() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let chart = repo.path().join("chart");
        std::fs::create_dir_all(chart.join("templates/.deep")).unwrap();
        std::fs::write(repo.path().join("shared.txt"), "ok").unwrap();
        std::os::unix::fs::symlink("../../shared.txt", chart.join("templates/shared.txt")).unwrap();
        std::os::unix::fs::symlink("missing", chart.join("dangling")).unwrap();
        let root = RepoRoot::new(repo.path()).unwrap();
        let dir = root.resolve("chart", "source path").unwrap();
        check_symlinks_under(&root, &dir).unwrap();

        std::os::unix::fs::symlink(outside.path().join("secret"), chart.join("templates/.deep/s")).unwrap();
        let err = check_symlinks_under(&root, &dir).unwrap_err();
        assert_eq!(err.to_string(), "symlink chart/templates/.deep/s escapes the repository root");
    }

    #[test]
    fn normalize_refuses_parent_and_absolute() {
        assert_eq!(normalize_relative(""), Some(PathBuf::new()));
        assert_eq!(normalize_relative("."), Some(PathBuf::new()));
        assert_eq!(normalize_relative("./apps//web/"), Some(PathBuf::from("apps/web")));
        assert_eq!(normalize_relative("apps/../web"), None);
        assert_eq!(normalize_relative(".."), None);
        assert_eq!(normalize_relative("/etc"), None);
    }

    #[test]
    fn resolve_refuses_symlinks_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("apps")).unwrap();
        std::os::unix::fs::symlink(outside.path(), repo.path().join("apps/escape")).unwrap();
        std::os::unix::fs::symlink("../apps", repo.path().join("apps/inside")).unwrap();
        let root = RepoRoot::new(repo.path()).unwrap();

        let err = root.resolve("apps/escape", "source path").unwrap_err();
        assert_eq!(err.to_string(), "source path apps/escape escapes the repository root");
        assert!(!err.to_string().contains(&*outside.path().to_string_lossy()));

        // A symlink that stays inside is fine: repositories use them to share folders.
        let inside = root.resolve("apps/inside", "source path").unwrap();
        assert_eq!(root.display(&inside), "apps");

        let err = root.resolve("apps/../..", "source path").unwrap_err();
        assert!(matches!(err, RenderError::PathEscapes { .. }), "{err}");
        let err = root.resolve("nope", "source path").unwrap_err();
        assert_eq!(err.to_string(), "source path nope does not exist in the revision");
        assert_eq!(root.display(&root.resolve("", "source path").unwrap()), ".");
    }
}
