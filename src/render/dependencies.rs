//! A chart's dependencies from Helm and OCI repositories: which ones `Chart.yaml` lists that
//! `charts/` does not vendor, at the version `Chart.lock` pins (or the range `Chart.yaml`
//! gives). Reading only: the controller fetches them through its caches, and helm renders a
//! copy of the chart with them in `charts/`, so no renderer ever reaches the network itself.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RenderError, paths::RepoRoot};

/// A dependency to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// `https://charts.example.com` or `oci://registry.example.com/charts`.
    pub repository: String,
    /// The exact version `Chart.lock` pins, else `Chart.yaml`'s version or range.
    pub version: Option<String>,
}

/// A fetched dependency: its name and the unpacked chart's directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchedDependency {
    pub name: String,
    pub dir: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
struct ChartFile {
    #[serde(default)]
    dependencies: Vec<Listed>,
}

#[derive(Debug, Default, Deserialize)]
struct Listed {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    repository: Option<String>,
}

/// The dependencies of the chart in `dir` (inside `root`) that come from a repository and are
/// not in `charts/`. A dependency from a repository name (`@stable`, `alias:stable`) is refused:
/// ferry has no `helm repo add`; a `file://` one must be vendored or inside the chart.
pub(crate) fn to_fetch(root: &RepoRoot, dir: &Path, shown: &str) -> Result<Vec<Dependency>, RenderError> {
    let chart_yaml = dir.join("Chart.yaml");
    if !chart_yaml.is_file() {
        return Ok(Vec::new());
    }
    root.check_inside(&chart_yaml.canonicalize().unwrap_or(chart_yaml.clone()), "Chart.yaml", "symlink")?;
    let chart: ChartFile = read_yaml(&chart_yaml, shown, "Chart.yaml")?;
    let lock: ChartFile = match dir.join("Chart.lock") {
        lock if lock.is_file() => read_yaml(&lock, shown, "Chart.lock")?,
        _ => ChartFile::default(),
    };
    let mut out = Vec::new();
    for listed in chart.dependencies {
        let Some(repository) = listed.repository.filter(|r| !r.is_empty()) else { continue };
        if repository.starts_with("file://") || vendored(dir, &listed.name) {
            continue;
        }
        if repository.starts_with('@') || repository.starts_with("alias:") {
            return Err(RenderError::Dependency {
                path: shown.to_string(),
                name: listed.name,
                cause: format!("repository {repository} names a `helm repo add` alias; use its URL"),
            });
        }
        let pinned = lock
            .dependencies
            .iter()
            .find(|l| l.name == listed.name && l.repository.as_deref() == Some(&repository));
        let version = pinned.and_then(|l| l.version.clone()).or(listed.version);
        out.push(Dependency { name: listed.name, repository, version });
    }
    Ok(out)
}

/// Whether `charts/` holds the dependency already (a directory, or an archive helm unpacks).
fn vendored(dir: &Path, name: &str) -> bool {
    let charts = dir.join("charts");
    if charts.join(name).join("Chart.yaml").is_file() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(&charts) else { return false };
    entries.flatten().any(|e| {
        let file = e.file_name().to_string_lossy().into_owned();
        file.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest.ends_with(".tgz") && rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}

fn read_yaml(path: &Path, shown: &str, what: &str) -> Result<ChartFile, RenderError> {
    let text = std::fs::read_to_string(path)
        .map_err(|cause| RenderError::Io { path: format!("{shown}/{what}"), cause })?;
    serde_saphyr::from_str(&text).map_err(|e| RenderError::InvalidYaml {
        origin: super::Origin::new(format!("{shown}/{what}"), 1),
        cause: e.without_snippet().to_string().lines().next().unwrap_or_default().to_string(),
    })
}

/// Copies the chart in `dir` to `dest`, adding each fetched dependency under `charts/<name>`.
/// The snapshot is shared and read-only; helm renders the copy.
pub(crate) fn compose(dir: &Path, deps: &[FetchedDependency], dest: &Path) -> std::io::Result<()> {
    copy_tree(dir, dest)?;
    let charts = dest.join("charts");
    std::fs::create_dir_all(&charts)?;
    for dep in deps {
        copy_tree(&dep.dir, &charts.join(&dep.name))?;
    }
    Ok(())
}

/// Copies regular files and directories (the snapshot export and the unpacker write no other
/// kind; a symlink inside the repository was checked by the render already and is followed).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let meta = std::fs::metadata(entry.path())?;
        if meta.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mut perms = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)] // our own copy in a private temp dir
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const CHART: &str = "apiVersion: v2
name: umbrella
version: 1.0.0
dependencies:
  - name: redis
    version: \">=1.0.0 <2.0.0\"
    repository: https://charts.example.com
  - name: db
    version: 2.x
    repository: oci://registry.example.com/charts
  - name: local
    version: 0.1.0
    repository: file://../local
  - name: vendored
    version: 0.1.0
    repository: https://charts.example.com
";

    #[test]
    fn listed_dependencies_not_vendored_at_the_locked_version() {
        let repo = tempfile::tempdir().unwrap();
        write(repo.path(), "umbrella/Chart.yaml", CHART);
        write(repo.path(), "umbrella/charts/vendored-0.1.0.tgz", "");
        write(
            repo.path(),
            "umbrella/Chart.lock",
            "dependencies:\n- name: redis\n  repository: https://charts.example.com\n  version: 1.2.3\n",
        );
        let root = RepoRoot::new(repo.path()).unwrap();
        let dir = root.resolve("umbrella", "source path").unwrap();
        let deps = to_fetch(&root, &dir, "umbrella").unwrap();
        assert_eq!(
            deps,
            vec![
                Dependency {
                    name: "redis".into(),
                    repository: "https://charts.example.com".into(),
                    version: Some("1.2.3".into())
                },
                Dependency {
                    name: "db".into(),
                    repository: "oci://registry.example.com/charts".into(),
                    version: Some("2.x".into())
                },
            ]
        );
    }

    #[test]
    fn a_repository_alias_is_refused_naming_the_dependency() {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "c/Chart.yaml",
            "apiVersion: v2\nname: c\nversion: 1.0.0\ndependencies:\n- name: x\n  version: 1.0.0\n  repository: \"@stable\"\n",
        );
        let root = RepoRoot::new(repo.path()).unwrap();
        let dir = root.resolve("c", "source path").unwrap();
        let err = to_fetch(&root, &dir, "c").unwrap_err().to_string();
        assert!(err.contains("dependency x") && err.contains("@stable"), "{err}");
    }

    #[test]
    fn compose_puts_dependencies_under_charts() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "chart/Chart.yaml", "name: c\n");
        write(tmp.path(), "dep/Chart.yaml", "name: d\n");
        let dest = tmp.path().join("out");
        compose(
            &tmp.path().join("chart"),
            &[FetchedDependency { name: "d".into(), dir: tmp.path().join("dep") }],
            &dest,
        )
        .unwrap();
        assert!(dest.join("Chart.yaml").is_file());
        assert!(dest.join("charts/d/Chart.yaml").is_file());
    }
}
