//! Which renderer a directory needs.

use std::path::Path;

use crate::api::Source;

/// Files that make a directory a Kustomization, in the order kustomize itself looks for them.
pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The renderer for a source directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RendererKind {
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
    /// YAML and JSON files read recursively.
    Plain,
}

impl RendererKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RendererKind::Kustomize => "kustomize",
            RendererKind::Helm => "helm",
            RendererKind::Plain => "plain",
        }
    }
}

/// What the directory holds, from the files at its top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirMarkers {
    pub kustomization: bool,
    pub chart: bool,
}

impl DirMarkers {
    /// Looks at `dir` (already checked to be inside the repository). Only regular files count,
    /// after following symlinks, so a dangling `kustomization.yaml` link does not pick a
    /// renderer.
    pub fn scan(dir: &Path) -> DirMarkers {
        DirMarkers {
            kustomization: KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file()),
            chart: dir.join("Chart.yaml").is_file(),
        }
    }
}

/// The renderer the spec asks for, or the one the directory's files call for.
///
/// An explicit `spec.source.kustomize` or `helm` wins; a directory with both a kustomization and
/// a Chart.yaml is a Kustomization (Argo CD decides the same way), since a kustomization can
/// wrap a chart but `helm template` ignores kustomization files.
pub fn detect(source: &Source, markers: DirMarkers) -> RendererKind {
    if source.kustomize.is_some() {
        RendererKind::Kustomize
    } else if source.helm.is_some() {
        RendererKind::Helm
    } else if markers.kustomization {
        RendererKind::Kustomize
    } else if markers.chart {
        RendererKind::Helm
    } else {
        RendererKind::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GitRef, HelmSource, KustomizeSource};

    fn source() -> Source {
        Source {
            repo_url: Some("file:///repo".into()),
            git_ref: Some(GitRef { branch: Some("main".into()), ..Default::default() }),
            ..Source::default()
        }
    }

    #[test]
    fn detection_table() {
        let none = DirMarkers::default();
        let kust = DirMarkers { kustomization: true, chart: false };
        let chart = DirMarkers { kustomization: false, chart: true };
        let both = DirMarkers { kustomization: true, chart: true };
        let s = source();
        assert_eq!(detect(&s, none), RendererKind::Plain);
        assert_eq!(detect(&s, kust), RendererKind::Kustomize);
        assert_eq!(detect(&s, chart), RendererKind::Helm);
        assert_eq!(detect(&s, both), RendererKind::Kustomize);

        let explicit_helm = Source { helm: Some(HelmSource::default()), ..source() };
        assert_eq!(detect(&explicit_helm, both), RendererKind::Helm);
        assert_eq!(detect(&explicit_helm, none), RendererKind::Helm);
        let explicit_kust = Source { kustomize: Some(KustomizeSource::default()), ..source() };
        assert_eq!(detect(&explicit_kust, chart), RendererKind::Kustomize);
    }

    #[test]
    fn markers_from_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DirMarkers::scan(dir.path()), DirMarkers::default());
        std::fs::write(dir.path().join("Kustomization"), "resources: []\n").unwrap();
        assert!(DirMarkers::scan(dir.path()).kustomization);
        std::fs::write(dir.path().join("Chart.yaml"), "name: x\n").unwrap();
        assert!(DirMarkers::scan(dir.path()).chart);
        // A directory named like the marker is not a marker.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("kustomization.yaml")).unwrap();
        assert!(!DirMarkers::scan(other.path()).kustomization);
    }
}
