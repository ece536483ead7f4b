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
