//! Everything that can go wrong while resolving or fetching a Git revision.
//!
//! Every variant that concerns a repository carries its URL with userinfo stripped
//! ([`super::RepoUrl::redacted`]), so an error can be logged, put into a condition message or an
//! Event as it is. Messages that come from libgit2 pass through [`super::credentials::Redactor`]
//! before they land here, so a secret that libgit2 might echo never reaches a message.

use std::path::PathBuf;
use std::time::Duration;

/// Why a Git source could not be resolved or fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository URL cannot be used (unsupported scheme, no host, no path, ...).
    #[error("invalid repository URL {url:?}: {message}")]
    InvalidUrl { url: String, message: String },

    /// The ref in the spec is malformed (not exactly one kind, bad commit SHA, ...).
    #[error("{url}: invalid ref: {message}")]
    InvalidRef { url: String, message: String },

    /// The semver range does not parse.
    #[error("{url}: invalid semver range {range:?}: {message}")]
    InvalidSemverRange { url: String, range: String, message: String },

    /// The Secret named by `secretRef` has unusable contents.
    #[error("invalid Git credentials in Secret {secret:?}: {message}")]
    InvalidSecret { secret: String, message: String },

    /// The server refused the credentials, or asked for credentials that were not configured.
    #[error("{url}: authentication failed: {message}")]
    AuthenticationFailed { url: String, message: String },

    /// The server has no repository at this URL (or hides it from these credentials).
    #[error("{url}: repository not found: {message}")]
    RepositoryNotFound { url: String, message: String },

    /// The branch, tag or commit does not exist on the remote.
    #[error("{url}: {reference} not found: {message}")]
    RefNotFound { url: String, reference: String, message: String },

    /// No tag on the remote is a version inside the range.
    #[error("{url}: no tag matches semver range {range:?}: {message}")]
    NoTagMatchesSemver { url: String, range: String, message: String },

    /// The SSH server's host key is not in known_hosts: refused, never trusted on first use.
    #[error(
        "{url}: host key of {host} is not known ({key_type} {fingerprint}); add it to known_hosts: {message}"
    )]
    HostKeyUnknown { url: String, host: String, key_type: String, fingerprint: String, message: String },

    /// known_hosts has a different key of the same type for this host (or marks it revoked).
    #[error(
        "{url}: host key of {host} does not match known_hosts (server presented {key_type} {fingerprint}): {message}"
    )]
    HostKeyMismatch { url: String, host: String, key_type: String, fingerprint: String, message: String },

    /// The operation did not finish within the configured timeout.
    #[error("{url}: {operation} timed out after {after:?}")]
    Timeout { url: String, operation: &'static str, after: Duration },

    /// The connection failed or broke (DNS, refused, reset, TLS, protocol errors).
    #[error("{url}: network error: {message}")]
    Network { url: String, message: String },

    /// The cached repository is damaged and could not be repaired.
    #[error("{url}: cached repository at {} is corrupt: {message}", path.display())]
    Corrupt { url: String, path: PathBuf, message: String },

    /// A symlink in the commit points outside the repository tree; the snapshot is refused.
    #[error("{url}: commit {commit} has symlink {path:?} pointing outside the repository ({target:?})")]
    UnsafeSymlink { url: String, commit: String, path: String, target: String },

    /// A filesystem operation on the cache failed.
    #[error("{url}: {action} {}: {message}", path.display())]
    Io { url: String, action: &'static str, path: PathBuf, message: String },

    /// Any other libgit2 failure.
    #[error("{url}: git error: {message}")]
    Git { url: String, message: String },
}

impl SourceError {
    /// A short, stable label for metrics (`ferry_git_errors_total{category=...}`).
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::InvalidUrl { .. } => "invalid_url",
            SourceError::InvalidRef { .. } => "invalid_ref",
            SourceError::InvalidSemverRange { .. } => "invalid_semver_range",
            SourceError::InvalidSecret { .. } => "invalid_secret",
            SourceError::AuthenticationFailed { .. } => "auth_failed",
            SourceError::RepositoryNotFound { .. } => "repo_not_found",
            SourceError::RefNotFound { .. } => "ref_not_found",
            SourceError::NoTagMatchesSemver { .. } => "no_semver_match",
            SourceError::HostKeyUnknown { .. } => "host_key_unknown",
            SourceError::HostKeyMismatch { .. } => "host_key_mismatch",
            SourceError::Timeout { .. } => "timeout",
            SourceError::Network { .. } => "network",
            SourceError::Corrupt { .. } => "corrupt",
            SourceError::UnsafeSymlink { .. } => "unsafe_symlink",
            SourceError::Io { .. } => "io",
            SourceError::Git { .. } => "git",
        }
    }

    /// Whether retrying later may help without anyone changing the spec, the Secret or the repo.
    /// The controller uses it to pick a backoff: transient errors retry soon, others wait for a
    /// change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Timeout { .. }
                | SourceError::Network { .. }
                | SourceError::Io { .. }
                | SourceError::Corrupt { .. }
                | SourceError::Git { .. }
        )
    }

    pub(crate) fn io(url: &str, action: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        SourceError::Io { url: url.to_string(), action, path: path.into(), message: err.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_short_labels() {
        let e = SourceError::Timeout {
            url: "https://h/r".into(),
            operation: "fetch",
            after: Duration::from_secs(3),
        };
        assert_eq!(e.category(), "timeout");
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "https://h/r: fetch timed out after 3s");
        let e = SourceError::RefNotFound {
            url: "https://h/r".into(),
            reference: "branch main".into(),
            message: "the remote has no refs/heads/main".into(),
        };
        assert_eq!(e.category(), "ref_not_found");
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "https://h/r: branch main not found: the remote has no refs/heads/main");
    }
}
