//! Everything that can go wrong while resolving or pulling an OCI artifact, worded for the
//! person who wrote the source. Every variant that concerns a repository carries its URL
//! (`oci://host/path`, never with credentials), and text that comes from the registry is cut
//! short and has the password, if any, replaced before it lands here.

use std::time::Duration;

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

use super::media::{ArtifactKind, MediaTypeMismatch};
use super::reference::OciUrlError;

/// Why an OCI artifact could not be resolved or pulled.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    BadUrl(#[from] OciUrlError),

    /// A tag or digest in the selector is malformed.
    #[error("{repo}: {problem}")]
    BadReference { repo: String, problem: String },

    /// The CA certificate given for the registry does not parse.
    #[error("{repo}: invalid CA certificate: {message}")]
    BadCaCertificate { repo: String, message: String },

    /// Connection refused, DNS, TLS, a broken transfer.
    #[error("{repo}: cannot reach the registry: {message}")]
    Unreachable { repo: String, message: String },

    #[error("{repo}: {operation} timed out after {after:?}")]
    Timeout { repo: String, operation: &'static str, after: Duration },

    /// HTTP 401 or 403, or the token service refused.
    #[error("{repo}: {}", unauthorized_words(*.with_credentials))]
    Unauthorized { repo: String, with_credentials: bool },

    /// The repository, tag, manifest or blob does not exist (or is hidden from these credentials).
    #[error("{repo}: {what} not found")]
    NotFound { repo: String, what: String },

    #[error("{repo}: no tag matches semver range {range:?}; {}", seen_words(.highest))]
    NoMatchingTag { repo: String, range: String, highest: Vec<String> },

    #[error("{repo}: {what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { repo: String, what: &'static str, expected: String, actual: String },

    #[error("{repo}: {what} is larger than the limit of {limit} bytes{}", size_words(*.size))]
    TooLarge { repo: String, what: &'static str, size: Option<u64>, limit: u64 },

    #[error(
        "{repo}: unexpected {what} media type {found}; ferry accepts {} for {kind}",
        accepted.join(" or ")
    )]
    UnexpectedMediaType {
        repo: String,
        kind: ArtifactKind,
        what: &'static str,
        found: String,
        accepted: Vec<&'static str>,
    },

    #[error("{repo}: invalid manifest: {message}")]
    InvalidManifest { repo: String, message: String },

    /// Any other answer from the registry (5xx, unexpected statuses, protocol violations).
    #[error("{repo}: registry error: {message}")]
    Registry { repo: String, message: String },
}

fn unauthorized_words(with_credentials: bool) -> &'static str {
    match with_credentials {
        true => {
            "the registry refused the credentials; check the username and password in the Secret \
             and that they may pull this repository"
        }
        false => "the registry requires credentials; reference a Secret with a username and password",
    }
}

fn seen_words(highest: &[String]) -> String {
    match highest {
        [] => "the repository has no semver tags".to_string(),
        _ => format!("highest semver tags in the repository: {}", highest.join(", ")),
    }
}

fn size_words(size: Option<u64>) -> String {
    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
}

impl OciError {
    /// A short, stable label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            OciError::BadUrl(_) => "invalid_url",
            OciError::BadReference { .. } => "invalid_ref",
            OciError::BadCaCertificate { .. } => "invalid_ca",
            OciError::Unreachable { .. } => "network",
            OciError::Timeout { .. } => "timeout",
            OciError::Unauthorized { .. } => "auth_failed",
            OciError::NotFound { .. } => "not_found",
            OciError::NoMatchingTag { .. } => "no_semver_match",
            OciError::DigestMismatch { .. } => "digest_mismatch",
            OciError::TooLarge { .. } => "too_large",
            OciError::UnexpectedMediaType { .. } => "media_type",
            OciError::InvalidManifest { .. } => "invalid_manifest",
            OciError::Registry { .. } => "registry",
        }
    }

    /// Whether retrying later may help without anyone changing the source, the Secret or the
    /// artifact. A digest mismatch counts: a proxy or a half-written blob can cause one.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OciError::Unreachable { .. }
                | OciError::Timeout { .. }
                | OciError::Registry { .. }
                | OciError::DigestMismatch { .. }
        )
    }

    pub(crate) fn media_type(repo: &str, kind: ArtifactKind, m: MediaTypeMismatch) -> OciError {
        OciError::UnexpectedMediaType {
            repo: repo.to_string(),
            kind,
            what: m.what,
            found: m.found,
            accepted: m.accepted,
        }
    }
}

/// What a failing call was about, to turn oci-client's error into an [`OciError`].
pub(crate) struct Context<'a> {
    pub repo: &'a str,
    /// For "not found": `tag "1.0"`, `manifest sha256:...`.
    pub what: &'a str,
    pub with_credentials: bool,
    /// Replaced wherever it appears in text from the registry.
    pub password: Option<&'a str>,
}

/// Registry text in a message is cut at this many characters: enough for an error envelope,
/// not enough for an HTML error page.
const MAX_REGISTRY_TEXT: usize = 300;

impl Context<'_> {
    pub fn classify(&self, err: OciDistributionError) -> OciError {
        use OciDistributionError as E;
        let repo = self.repo.to_string();
        match err {
            E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => self.unauthorized(),
            E::RegistryError { envelope, .. } => match envelope.errors.first().map(|e| &e.code) {
                Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => self.unauthorized(),
                Some(
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => self.not_found(),
                _ => OciError::Registry { repo, message: self.scrub(&envelope.to_string()) },
            },
            E::ServerError { code: 401 | 403, .. } => self.unauthorized(),
            E::ServerError { code: 404, .. } => self.not_found(),
            E::ServerError { code, message, .. } => {
                OciError::Registry { repo, message: self.scrub(&format!("HTTP {code}: {message}")) }
            }
            E::DigestError(DigestError::VerificationError { expected, actual }) => OciError::DigestMismatch {
                repo,
                what: "content",
                expected: self.scrub(&expected),
                actual: self.scrub(&actual),
            },
            E::DigestError(e) => OciError::InvalidManifest { repo, message: self.scrub(&e.to_string()) },
            E::RequestError(e) => OciError::Unreachable { repo, message: self.scrub(&chain(&e)) },
            E::IoError(e) => OciError::Unreachable { repo, message: self.scrub(&chain(&e)) },
            other => OciError::Registry { repo, message: self.scrub(&chain(&other)) },
        }
    }

    fn unauthorized(&self) -> OciError {
        OciError::Unauthorized { repo: self.repo.to_string(), with_credentials: self.with_credentials }
    }

    fn not_found(&self) -> OciError {
        OciError::NotFound { repo: self.repo.to_string(), what: self.what.to_string() }
    }

    /// Registry text with the password replaced and cut to a readable length.
    pub fn scrub(&self, text: &str) -> String {
        let text = match self.password {
            Some(p) if !p.is_empty() => text.replace(p, "<redacted>"),
            _ => text.to_string(),
        };
        match text.char_indices().nth(MAX_REGISTRY_TEXT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text,
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest's own text hides the TLS or socket cause).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use oci_client::errors::{OciEnvelope, OciError as Envelope};

    use super::*;

    fn ctx(password: Option<&'static str>) -> Context<'static> {
        Context { repo: "oci://h/r", what: "tag \"1.0.0\"", with_credentials: password.is_some(), password }
    }

    fn envelope(code: OciErrorCode) -> OciDistributionError {
        let errors = vec![Envelope { code, message: "m".into(), detail: serde_json::Value::Null }];
        OciDistributionError::RegistryError { envelope: OciEnvelope { errors }, url: "http://h/v2/r".into() }
    }

    #[test]
    fn statuses_become_actionable_errors() {
        let c = ctx(None);
        let e = c.classify(OciDistributionError::UnauthorizedError { url: "u".into() });
        assert_eq!(e.to_string(), format!("oci://h/r: {}", unauthorized_words(false)));
        assert!(
            ctx(Some("pw"))
                .classify(envelope(OciErrorCode::Denied))
                .to_string()
                .contains("refused the credentials")
        );
        let e = c.classify(envelope(OciErrorCode::ManifestUnknown));
        assert_eq!(e.to_string(), "oci://h/r: tag \"1.0.0\" not found");
        let e =
            c.classify(OciDistributionError::ServerError { code: 404, url: "u".into(), message: "".into() });
        assert_eq!(e.category(), "not_found");
        let e = c.classify(OciDistributionError::ServerError {
            code: 503,
            url: "u".into(),
            message: "busy".into(),
        });
        assert_eq!((e.category(), e.is_transient()), ("registry", true));
    }

    #[test]
    fn registry_text_is_scrubbed_and_cut() {
        let c = ctx(Some("hunter2"));
        let message = format!("echo hunter2 {}", "x".repeat(1000));
        let e = c.classify(OciDistributionError::ServerError { code: 500, url: "u".into(), message });
        let text = e.to_string();
        assert!(!text.contains("hunter2") && text.contains("<redacted>") && text.len() < 400, "{text}");
    }

    #[test]
    fn messages_name_what_to_do() {
        let e = OciError::NoMatchingTag {
            repo: "oci://h/r".into(),
            range: ">=2".into(),
            highest: vec!["1.1.0".into(), "1.0.0".into()],
        };
        assert_eq!(
            e.to_string(),
            "oci://h/r: no tag matches semver range \">=2\"; highest semver tags in the repository: 1.1.0, 1.0.0"
        );
        let m =
            MediaTypeMismatch { what: "layer", found: "application/x".into(), accepted: vec!["a/b", "c/d"] };
        let e = OciError::media_type("oci://h/r", ArtifactKind::HelmChart, m);
        assert_eq!(
            e.to_string(),
            "oci://h/r: unexpected layer media type application/x; ferry accepts a/b or c/d for a Helm chart"
        );
        let e = OciError::TooLarge { repo: "oci://h/r".into(), what: "layer", size: Some(9), limit: 8 };
        assert_eq!(e.to_string(), "oci://h/r: layer is larger than the limit of 8 bytes (9 bytes)");
    }
}
