//! Git sources: resolve an Application's `spec.source.ref` to one commit and materialize that
//! commit's files, through an on-disk cache shared by every Application.
//!
//! ```text
//! SourceSpec --resolve--> Revision (ls-remote: one round trip, no objects)
//!            --fetch----> Snapshot (fetch only if the commit has no snapshot yet;
//!                                   the tree exported once to <cache>/trees/<sha>/)
//! ```
//!
//! - [`repo_url`]: parsing, normalization, credential stripping.
//! - [`refs`]: choosing the commit (branch, tag, semver, commit) and formatting revisions.
//! - [`credentials`]: the Secret -> [`Credentials`] mapping and redaction.
//! - [`known_hosts`]: SSH host key checking.
//! - `transport`: libgit2 callbacks, listing, fetching, error classification.
//! - `snapshot`: atomic, symlink-safe export of a commit's tree.
//! - [`cache`]: the shared cache, locking, single-flight fetches and self-repair.
//! - [`gc`]: garbage collection of the cache (unused snapshots and repositories, a disk budget).
//! - [`write`]: workspaces where ferry commits (reverts, image updates) and pushes.
//!
//! git2 is blocking; every git2 call runs on `spawn_blocking` under a deadline, and its
//! callbacks abort the transfer when the deadline passes.

pub mod cache;
pub mod credentials;
mod error;
pub mod gc;
pub mod known_hosts;
pub mod refs;
pub mod repo_url;
mod snapshot;
mod transport;
pub mod write;

use std::fmt;
use std::path::PathBuf;

use crate::api::{GitRef, Source};

pub use cache::{CacheStats, GitCache, GitCacheOptions};
pub use credentials::Credentials;
pub use error::SourceError;
pub use gc::{Collected, Retention};
pub use refs::{InvalidRevision, RemoteRef, Revision, RevisionRef};
pub use repo_url::RepoUrl;
pub use write::{Author, Change, PushOutcome, RevertOutcome, Workspace};

/// What to fetch: a repository, a ref, and the credentials read from the Application's Secret.
#[derive(Clone, PartialEq)]
pub struct SourceSpec {
    pub repo_url: String,
    pub git_ref: GitRef,
    pub credentials: Option<Credentials>,
}

impl SourceSpec {
    /// The fetch-relevant part of an Application's source: `None` when it has no Git part.
    pub fn from_source(source: &Source, credentials: Option<Credentials>) -> Option<SourceSpec> {
        let (url, git_ref) = source.git()?;
        Some(SourceSpec { repo_url: url.to_string(), git_ref: git_ref.clone(), credentials })
    }
}

/// Hand-written so a password embedded in `repo_url` never shows.
impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match RepoUrl::parse(&self.repo_url) {
            Ok(url) => url.redacted().to_string(),
            Err(_) => repo_url::redact_unparsed(&self.repo_url),
        };
        f.debug_struct("SourceSpec")
            .field("repo_url", &url)
            .field("git_ref", &self.git_ref)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// A commit's files on disk: read-only, shared by every Application on this commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Revision,
    /// The root of the repository tree at that commit (`<cache>/trees/<sha>`); for a chart
    /// from a repository without Git, the chart's directory.
    pub root: PathBuf,
    /// A chart from a repository, unpacked (`<cache>/artifacts/sha256-<hex>/<name>`).
    pub chart: Option<PathBuf>,
}
