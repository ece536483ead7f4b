//! The sync pass's error: one variant per stage, with the condition reason, the metric's
//! category and whether a retry may help. Below every stage, so that the hooks and the rollout
//! glue return it without depending on the sync module that calls them.

use crate::{
    apply::{ApplyError, PruneRefused},
    render::RenderError,
    source::{SourceError, credentials::SecretReadError},
    tenancy::Refusal,
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The Application may not run as it is configured (service account).
    #[error("{0}")]
    Access(String),
    #[error("reading Git credentials: {0}")]
    Credentials(#[source] SecretReadError),
    #[error("{0}")]
    Fetch(#[source] SourceError),
    #[error("rendering {revision}: {source}")]
    Render { revision: String, source: RenderError },
    /// An object the API server would refuse; nothing was applied.
    #[error("{0}")]
    Validation(String),
    /// Objects another Application owns.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    PruneRefused(PruneRefused),
    #[error("{message}")]
    Apply { message: String, transient: bool },
    #[error("{0}")]
    Discovery(String),
    /// `ref.fromApplication`: the Application followed has no verified revision yet.
    #[error("{0}")]
    Waiting(String),
    /// The tenancy lockdown (flags, TenantPolicies) refuses it; nothing was fetched or written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The PostSync hooks: split from the render, run, or cleared away.
    #[error(transparent)]
    Hooks(#[from] super::hooks::HookError),
}

impl SyncError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions as c;
        match self {
            SyncError::Access(_) | SyncError::Validation(_) => c::VALIDATION_FAILED,
            SyncError::Credentials(_) | SyncError::Fetch(_) => c::FETCH_FAILED,
            SyncError::Render { .. } => c::RENDER_FAILED,
            SyncError::Conflict(_) => c::OWNERSHIP_CONFLICT,
            SyncError::PruneRefused(_) => c::PRUNE_REFUSED,
            SyncError::Apply { .. } | SyncError::Discovery(_) => c::APPLY_FAILED,
            SyncError::Waiting(_) => c::WAITING_FOR_PROMOTION,
            SyncError::Refused(r) => r.reason(),
            SyncError::Hooks(e) => e.reason(),
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            SyncError::Access(_) => "access",
            SyncError::Credentials(_) => "credentials",
            SyncError::Fetch(_) => "fetch",
            SyncError::Render { .. } => "render",
            SyncError::Validation(_) => "validation",
            SyncError::Conflict(_) => "conflict",
            SyncError::PruneRefused(_) => "prune",
            SyncError::Apply { .. } => "apply",
            SyncError::Discovery(_) => "discovery",
            SyncError::Waiting(_) => "promotion",
            SyncError::Refused(_) => "policy",
            SyncError::Hooks(e) => e.category(),
        }
    }

    /// Whether retrying without any change may help (backoff), as opposed to waiting for a
    /// change in Git or in the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Fetch(e) => e.is_transient(),
            // A missing Secret is usually about to be created.
            SyncError::Credentials(_) | SyncError::Discovery(_) => true,
            SyncError::Apply { transient, .. } => *transient,
            SyncError::Hooks(e) => e.is_transient(),
            _ => false,
        }
    }

    pub(super) fn from_apply(err: ApplyError) -> SyncError {
        SyncError::Apply { transient: err.is_transient(), message: err.to_string() }
    }
}

/// A Secret that cannot be read is a credentials failure (retried: it is usually about to be
/// created); one that holds no usable credentials fails the fetch.
impl From<SecretReadError> for SyncError {
    fn from(err: SecretReadError) -> SyncError {
        match err {
            SecretReadError::Invalid(e) => SyncError::Fetch(e),
            other => SyncError::Credentials(other),
        }
    }
}
