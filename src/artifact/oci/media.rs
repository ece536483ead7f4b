//! What ferry accepts in an artifact's manifest: which kind of artifact it is (config media
//! type, or OCI 1.1 `artifactType`) and which layer carries the content.
//!
//! - Helm charts, as `helm push` writes them: config `application/vnd.cncf.helm.config.v1+json`,
//!   one chart layer (`...chart.content.v1.tar+gzip`, or `application/tar+gzip` from Helm
//!   3.0-3.7), and optionally a provenance layer, which ferry ignores.
//! - Flux manifests, as `flux push artifact` writes them (fluxcd/pkg/oci): config
//!   `application/vnd.cncf.flux.config.v1+json` and one `application/vnd.cncf.flux.content.v1.tar+gzip`
//!   layer. Flux pushes nothing else for a directory (no generic OCI layer), so ferry accepts
//!   nothing else either.
//!
//! Pushed with `oras push --artifact-type <config type>` and no config, an artifact has the
//! empty config and the type in `artifactType`; that counts as the same kind.

use std::fmt;

use oci_client::manifest::{OciDescriptor, OciImageManifest};

pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// What Helm before 3.8 pushed; Helm still pulls it.
pub const HELM_LEGACY_CHART_LAYER: &str = "application/tar+gzip";
pub const HELM_PROVENANCE_LAYER: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";
pub const FLUX_CONFIG: &str = "application/vnd.cncf.flux.config.v1+json";
pub const FLUX_CONTENT_LAYER: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
/// OCI 1.1's config for artifacts whose type is in `artifactType`.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// What a pulled artifact must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    HelmChart,
    FluxManifests,
}

impl ArtifactKind {
    pub fn config_media_type(self) -> &'static str {
        match self {
            ArtifactKind::HelmChart => HELM_CONFIG,
            ArtifactKind::FluxManifests => FLUX_CONFIG,
        }
    }

    /// Media types of the one content layer (a `.tar.gz`).
    pub fn content_layer_media_types(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::HelmChart => &[HELM_CHART_LAYER, HELM_LEGACY_CHART_LAYER],
            ArtifactKind::FluxManifests => &[FLUX_CONTENT_LAYER],
        }
    }

    /// Layers that may be present beside the content and are left alone.
    fn ignored_layer_media_types(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::HelmChart => &[HELM_PROVENANCE_LAYER],
            ArtifactKind::FluxManifests => &[],
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::HelmChart => "a Helm chart",
            ArtifactKind::FluxManifests => "Flux manifests",
        })
    }
}

/// A manifest that is not the kind asked for: which part, what it had, what would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaTypeMismatch {
    /// `config`, `layer`, `manifest`.
    pub what: &'static str,
    pub found: String,
    pub accepted: Vec<&'static str>,
}

/// The content layer of `manifest`, if it is an artifact of `kind`.
pub fn content_layer(
    manifest: &OciImageManifest,
    kind: ArtifactKind,
) -> Result<&OciDescriptor, MediaTypeMismatch> {
    check_artifact_type(manifest, kind)?;
    let accepted = kind.content_layer_media_types();
    let mut content = Vec::new();
    for layer in &manifest.layers {
        let media_type = layer.media_type.as_str();
        if accepted.contains(&media_type) {
            content.push(layer);
        } else if !kind.ignored_layer_media_types().contains(&media_type) {
            return Err(MediaTypeMismatch {
                what: "layer",
                found: media_type.to_string(),
                accepted: accepted.to_vec(),
            });
        }
    }
    match content.as_slice() {
        [one] => Ok(one),
        [] => Err(MediaTypeMismatch {
            what: "layer",
            found: "no layer".to_string(),
            accepted: accepted.to_vec(),
        }),
        several => Err(MediaTypeMismatch {
            what: "layer",
            found: format!("{} content layers (ferry expects exactly one)", several.len()),
            accepted: accepted.to_vec(),
        }),
    }
}

fn check_artifact_type(manifest: &OciImageManifest, kind: ArtifactKind) -> Result<(), MediaTypeMismatch> {
    let wanted = kind.config_media_type();
    let config = manifest.config.media_type.as_str();
    let artifact_type = manifest.artifact_type.as_deref();
    if config == wanted || (config == EMPTY_CONFIG && artifact_type == Some(wanted)) {
        return Ok(());
    }
    let found = match artifact_type {
        Some(t) => format!("{config} (artifactType {t})"),
        None => config.to_string(),
    };
    Err(MediaTypeMismatch { what: "config", found, accepted: vec![wanted] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str) -> OciDescriptor {
        OciDescriptor {
            media_type: media_type.to_string(),
            digest: "sha256:0".into(),
            size: 1,
            ..Default::default()
        }
    }

    fn manifest(config: &str, artifact_type: Option<&str>, layers: &[&str]) -> OciImageManifest {
        OciImageManifest {
            config: descriptor(config),
            artifact_type: artifact_type.map(str::to_string),
            layers: layers.iter().map(|l| descriptor(l)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn helm_charts_with_or_without_provenance() {
        let m = manifest(HELM_CONFIG, None, &[HELM_CHART_LAYER, HELM_PROVENANCE_LAYER]);
        assert_eq!(content_layer(&m, ArtifactKind::HelmChart).unwrap().media_type, HELM_CHART_LAYER);
        let m = manifest(HELM_CONFIG, None, &[HELM_LEGACY_CHART_LAYER]);
        assert!(content_layer(&m, ArtifactKind::HelmChart).is_ok());
        let err = content_layer(&m, ArtifactKind::FluxManifests).unwrap_err();
        assert_eq!((err.what, err.found.as_str(), err.accepted), ("config", HELM_CONFIG, vec![FLUX_CONFIG]));
    }

    #[test]
    fn flux_artifacts_from_flux_or_oras() {
        let m = manifest(FLUX_CONFIG, None, &[FLUX_CONTENT_LAYER]);
        assert_eq!(content_layer(&m, ArtifactKind::FluxManifests).unwrap().media_type, FLUX_CONTENT_LAYER);
        let m = manifest(EMPTY_CONFIG, Some(FLUX_CONFIG), &[FLUX_CONTENT_LAYER]);
        assert!(content_layer(&m, ArtifactKind::FluxManifests).is_ok());
        let m = manifest(EMPTY_CONFIG, Some("application/x-other"), &[FLUX_CONTENT_LAYER]);
        let err = content_layer(&m, ArtifactKind::FluxManifests).unwrap_err();
        assert!(err.found.contains("application/x-other"), "{err:?}");
    }

    #[test]
    fn container_images_and_odd_layers_are_refused() {
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            None,
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        assert_eq!(content_layer(&image, ArtifactKind::FluxManifests).unwrap_err().what, "config");
        let extra =
            manifest(FLUX_CONFIG, None, &[FLUX_CONTENT_LAYER, "application/vnd.oci.image.layer.v1.tar+gzip"]);
        let err = content_layer(&extra, ArtifactKind::FluxManifests).unwrap_err();
        assert_eq!((err.what, err.found.as_str()), ("layer", "application/vnd.oci.image.layer.v1.tar+gzip"));
        let none = manifest(FLUX_CONFIG, None, &[]);
        assert_eq!(content_layer(&none, ArtifactKind::FluxManifests).unwrap_err().found, "no layer");
        let two = manifest(FLUX_CONFIG, None, &[FLUX_CONTENT_LAYER, FLUX_CONTENT_LAYER]);
        assert!(
            content_layer(&two, ArtifactKind::FluxManifests)
                .unwrap_err()
                .found
                .starts_with("2 content layers")
        );
    }
}
