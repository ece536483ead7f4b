//! Everything that can go wrong while turning a directory into objects.
//!
//! Messages end up in the Application's status and in Events, so each one names what a person
//! has to fix: a file relative to the repository root (never a temp path of ours), the document
//! in it, the object, the image. Metrics use [`RenderError::category`] instead of the message.

use std::{fmt, time::Duration};

/// Why rendering a revision failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file (or a renderer's output) is not valid YAML or JSON.
    #[error("{origin}: invalid YAML: {cause}")]
    InvalidYaml { origin: Origin, cause: String },

    /// A document lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("{origin}: object has no {field}")]
    MissingField { origin: Origin, field: String },

    /// A document has the required fields but is not a Kubernetes object (e.g. labels that are
    /// not strings).
    #[error("{origin}: not a valid Kubernetes object: {cause}")]
    InvalidObject { origin: Origin, cause: String },

    /// Two documents define the same object. (Boxed: keeps every `Result` of this module small.)
    #[error("{key} is defined twice: in {first} and in {second}")]
    Duplicate { key: String, first: Box<Origin>, second: Box<Origin> },

    /// A path given in the spec, or a symlink met in the tree, leads outside the repository.
    #[error("{what} {path} escapes the repository root")]
    PathEscapes { what: &'static str, path: String },

    /// A kustomization names a remote base or resource. Renders are offline and reproducible from
    /// the pinned commit alone, so remote content is refused before kustomize runs.
    #[error(
        "{file} refers to the remote {entry}; ferry renders offline: vendor remote bases and resources into the repository"
    )]
    RemoteReference { entry: String, file: String },

    /// `spec.source.path` (or a values file) does not exist in the revision.
    #[error("{what} {path} does not exist in the revision")]
    NotFound { what: &'static str, path: String },

    /// `spec.source.path` is a file.
    #[error("source path {path} is not a directory")]
    NotADirectory { path: String },

    /// The spec asks for a renderer the directory is not made for.
    #[error("spec.source.{renderer} is set but {path} has no {expected}")]
    RendererMismatch { renderer: &'static str, path: String, expected: &'static str },

    /// `kustomize build` failed.
    #[error("kustomize build {path} failed: {stderr}")]
    Kustomize { path: String, stderr: String },

    /// `helm template` failed.
    #[error("helm template {path} failed: {stderr}")]
    Helm { path: String, stderr: String },

    /// A renderer ran longer than allowed and was killed.
    #[error("{tool} on {path} did not finish within {after:?} and was killed")]
    Timeout { tool: Tool, path: String, after: Duration },

    /// The renderer's binary cannot be run.
    #[error("{tool} binary {bin} not found; install {tool} or set its path in ferry's options")]
    ToolMissing { tool: Tool, bin: String },

    /// `spec.policy.requirePinnedImages` refused one or more images. All of them are listed so
    /// one commit can fix them all.
    #[error("{}", ImageViolations(.0))]
    UnpinnedImages(Vec<ImageViolation>),

    /// Reading the tree or running a renderer failed at the OS level.
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },

    /// The Helm release name (`releaseName`, else the Application's name) is not one Helm
    /// accepts. Checked before helm runs, so the name can never reach it as a flag.
    #[error(
        "Helm release name {name:?} is invalid: use at most 53 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (spec.source.helm.releaseName)"
    )]
    InvalidReleaseName { name: String },

    /// The render is larger than ferry's limit (`--max-render-bytes`, `--max-render-objects`).
    #[error("{path}: the render exceeds {limit}; split the Application or raise the limit")]
    TooLarge { path: String, limit: RenderLimit },

    /// A chart's dependency cannot be used (a repository alias, or it could not be fetched).
    #[error("{path}: chart dependency {name}: {cause}")]
    Dependency { path: String, name: String, cause: String },

    /// A plain directory rendered no object but holds files ferry does not render: most likely
    /// a format ferry does not support, which must not sync as an empty (and pruning) render.
    #[error(
        "{path} renders no object but holds files ferry does not render: {found}; ferry renders .yaml, .yml and .json files, kustomizations and Helm charts"
    )]
    NothingRendered { path: String, found: String },

    /// A kustomization could not be read completely, so its references could not be checked
    /// (the check fails closed: unchecked references might lead out of the repository).
    #[error("{file} cannot be checked for remote or outside references: {cause}")]
    UncheckedKustomization { file: String, cause: String },

    /// A SOPS-encrypted document could not be decrypted (no keys configured, none matching,
    /// a tampered value or MAC). Never carries a plaintext value or key material. (Boxed, like
    /// `Duplicate`'s origins: keeps every `Result` of this module small.)
    #[error("{origin}: cannot decrypt: {cause}")]
    DecryptionFailed { origin: Origin, cause: Box<super::sops::SopsError> },
}

/// A size limit of renders, named as the flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderLimit {
    /// Bytes a renderer may print, or plain manifest files may hold in total.
    Bytes(u64),
    /// Objects one render may produce.
    Objects(usize),
}

impl fmt::Display for RenderLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderLimit::Bytes(n) => write!(f, "the limit of {n} bytes (--max-render-bytes)"),
            RenderLimit::Objects(n) => write!(f, "the limit of {n} objects (--max-render-objects)"),
        }
    }
}

impl RenderError {
    /// Short, fixed label for metrics (`ferry_errors_total{stage="render",category=...}`).
    pub fn category(&self) -> &'static str {
        match self {
            RenderError::InvalidYaml { .. } => "invalid_yaml",
            RenderError::MissingField { .. } => "missing_field",
            RenderError::InvalidObject { .. } => "invalid_object",
            RenderError::Duplicate { .. } => "duplicate",
            RenderError::PathEscapes { .. } => "path_escapes",
            RenderError::RemoteReference { .. } => "remote_reference",
            RenderError::NotFound { .. } => "not_found",
            RenderError::NotADirectory { .. } => "not_a_directory",
            RenderError::RendererMismatch { .. } => "renderer_mismatch",
            RenderError::Kustomize { .. } => "kustomize",
            RenderError::Helm { .. } => "helm",
            RenderError::Timeout { .. } => "timeout",
            RenderError::ToolMissing { .. } => "tool_missing",
            RenderError::UnpinnedImages(_) => "unpinned_image",
            RenderError::Io { .. } => "io",
            RenderError::InvalidReleaseName { .. } => "invalid_release_name",
            RenderError::TooLarge { .. } => "too_large",
            RenderError::UncheckedKustomization { .. } => "unchecked_kustomization",
            RenderError::NothingRendered { .. } => "nothing_rendered",
            RenderError::Dependency { .. } => "dependency",
            RenderError::DecryptionFailed { .. } => "decryption_failed",
        }
    }
}

/// Where a document came from: a file relative to the repository root (or a renderer's output
/// for a directory), and the 1-based index of the YAML document in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub doc: usize,
    /// 0-based index in the `items` of a `List` document.
    pub item: Option<usize>,
    /// 1-based line of the document's first node, when known.
    pub line: Option<u64>,
    /// The document was SOPS-encrypted: its values are secrets (`ferry diff` redacts them).
    pub decrypted: bool,
}

impl Origin {
    pub fn new(file: impl Into<String>, doc: usize) -> Self {
        Origin { file: file.into(), doc, item: None, line: None, decrypted: false }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file, self.doc)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        f.write_str(")")
    }
}

/// The external renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Kustomize,
    Helm,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tool::Kustomize => "kustomize",
            Tool::Helm => "helm",
        })
    }
}

/// One container image refused by the pin policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageViolation {
    /// `Kind namespace/name`, e.g. `Deployment shop/web`.
    pub object: String,
    /// `container web`, `initContainer migrate`, `ephemeralContainer debug`.
    pub container: String,
    pub image: String,
    pub reason: UnpinnedReason,
    pub origin: Origin,
}

/// Why an image is not pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpinnedReason {
    /// No image at all.
    Missing,
    /// Neither a tag nor a digest: the registry picks `latest`.
    NoTag,
    /// The `latest` tag moves.
    LatestTag,
    /// A tag is set, but the options ask for a digest.
    NoDigest,
    /// Something after `@` that is not `sha256:` and 64 hex digits.
    InvalidDigest,
}

impl fmt::Display for UnpinnedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnpinnedReason::Missing => "has no image",
            UnpinnedReason::NoTag => "has no tag (it would pull :latest)",
            UnpinnedReason::LatestTag => "uses the moving :latest tag",
            UnpinnedReason::NoDigest => "has no @sha256: digest",
            UnpinnedReason::InvalidDigest => "has a digest that is not sha256: followed by 64 hex digits",
        })
    }
}

impl fmt::Display for ImageViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: image {:?} {} [{}]",
            self.object, self.container, self.image, self.reason, self.origin
        )
    }
}

/// Lists the first violations; status messages must stay readable.
struct ImageViolations<'a>(&'a [ImageViolation]);

impl fmt::Display for ImageViolations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        write!(f, "requirePinnedImages refused {} image(s): ", self.0.len())?;
        for (i, v) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_document_and_line() {
        let err = RenderError::MissingField {
            origin: Origin { line: Some(14), ..Origin::new("apps/web/deploy.yaml", 2) },
            field: "kind".into(),
        };
        assert_eq!(err.to_string(), "apps/web/deploy.yaml (document 2, line 14): object has no kind");
        assert_eq!(err.category(), "missing_field");
    }

    #[test]
    fn image_violations_are_bounded() {
        let v = ImageViolation {
            object: "Deployment shop/web".into(),
            container: "container web".into(),
            image: "nginx".into(),
            reason: UnpinnedReason::NoTag,
            origin: Origin::new("web.yaml", 1),
        };
        let err = RenderError::UnpinnedImages(vec![v; 7]);
        let msg = err.to_string();
        assert!(msg.starts_with("requirePinnedImages refused 7 image(s): Deployment shop/web container web: image \"nginx\" has no tag"), "{msg}");
        assert_eq!(msg.matches("Deployment shop/web").count(), 5, "{msg}");
        assert!(msg.ends_with("; and 2 more"), "{msg}");
    }
}
