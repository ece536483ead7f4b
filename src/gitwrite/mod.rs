//! Delivering a commit ferry makes (a revert, an image update) the way `GitWrite` says:
//!
//! ```text
//! push_credentials (as the ServiceAccount) -> deliver:
//!   Direct:      workspace(branch) -> make(tip) -> push fast-forward ---------> Pushed
//!                  rejected (branch moved): again, on the new tip (3 tries)
//!                  conflict: a forge? propose from the maker's conflict base -> PullRequest
//!                            no forge -----------------------------------------> Conflict
//!   PullRequest: workspace(branch) -> make(tip) -> push ferry's branch (forced)
//!                  -> open (or find) the pull request -------------------------> PullRequest
//! ```
//!
//! Nothing is ever forced onto the tracked branch: a conflict is proposed or reported.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{GitWrite, LocalObjectReference, WriteMode};
use crate::forge::{ForgeClient, ForgeError, PullRequest, PullRequestRequest, RepoCoordinates, Token};
use crate::source::credentials::{SecretReadError, read_secret};
use crate::source::{Credentials, GitCache, SourceError};

pub use crate::source::{Author, Change, PushOutcome, RevertOutcome, Workspace};

/// How often a direct push is tried again on a branch that moved on meanwhile.
const DIRECT_ATTEMPTS: usize = 3;

/// Writing to Git failed.
#[derive(Debug, thiserror::Error)]
pub enum GitWriteError {
    #[error("push credentials: {0}")]
    Secret(Box<SecretReadError>),
    #[error("push credentials in Secret {secret}: {source}")]
    Credentials { secret: String, source: Box<SourceError> },
    #[error("the forge token Secret {secret} has no key token")]
    NoToken { secret: String },
    #[error(transparent)]
    Git(Box<SourceError>),
    #[error("pull request: {0}")]
    Forge(Box<ForgeError>),
    #[error("mode PullRequest needs spec forge to open the pull request")]
    NoForge,
    #[error("the branch {branch} moved on during each of {attempts} pushes; will try again")]
    BranchKeepsMoving { branch: String, attempts: usize },
    #[error("the push to {branch} was refused: {message}")]
    Refused { branch: String, message: String },
}

impl From<SecretReadError> for GitWriteError {
    fn from(e: SecretReadError) -> Self {
        GitWriteError::Secret(Box::new(e))
    }
}

impl From<SourceError> for GitWriteError {
    fn from(e: SourceError) -> Self {
        GitWriteError::Git(Box::new(e))
    }
}

impl From<ForgeError> for GitWriteError {
    fn from(e: ForgeError) -> Self {
        GitWriteError::Forge(Box::new(e))
    }
}

impl GitWriteError {
    /// Worth trying again later without a change of spec or Secret.
    pub fn is_transient(&self) -> bool {
        match self {
            GitWriteError::Git(e) => matches!(**e, SourceError::Timeout { .. } | SourceError::Network { .. }),
            GitWriteError::Forge(e) => e.is_transient(),
            GitWriteError::Secret(e) => {
                matches!(**e, SecretReadError::Timeout { .. } | SecretReadError::Api { .. })
            }
            GitWriteError::BranchKeepsMoving { .. } => true,
            _ => false,
        }
    }
}

/// Push credentials and the forge token, read as `client` (the ServiceAccount the object acts
/// as, so a tenant cannot make ferry push with a Secret it may not read).
pub struct WriteAccess {
    pub credentials: Credentials,
    pub token: Option<Token>,
}

impl std::fmt::Debug for WriteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAccess").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

/// Reads `write.secretRef` (and `write.forge.secretRef`) in `namespace` as `client`.
pub async fn push_credentials(
    client: &kube::Client,
    timeout: Duration,
    namespace: &str,
    write: &GitWrite,
) -> Result<WriteAccess, GitWriteError> {
    let secret = read_secret(client, timeout, namespace, &write.secret_ref).await?;
    let (mut credentials, token) = write_access(&secret)
        .map_err(|source| GitWriteError::Credentials { secret: write.secret_ref.name.clone(), source })?;
    credentials.username = credentials.username.map(|u| u.trim().to_string());
    let token = match write.forge.as_ref().and_then(|f| f.secret_ref.as_ref()) {
        Some(r) => Some(forge_token(client, timeout, namespace, r).await?),
        None => token,
    };
    Ok(WriteAccess { credentials, token })
}

/// The push credentials of a Secret and the forge token it offers. A Secret with a `token` and
/// nothing else Git reads (no username, SSH key or bearer token) pushes over HTTPS with the
/// token as the password of any user, as GitHub, GitLab and Gitea take it; otherwise the keys
/// are a source's (`token` then only serves the forge). The forge token: `token`, else the
/// password.
fn write_access(secret: &Secret) -> Result<(Credentials, Option<Token>), Box<SourceError>> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    let git_keys = ["username", "identity", "ssh-privatekey", "bearerToken"];
    let bare_token = text("token").filter(|_| git_keys.iter().all(|k| !data.contains_key(*k)));
    let credentials = match bare_token {
        Some(token) => {
            Credentials { username: Some("ferry".into()), password: Some(token), ..Default::default() }
        }
        None => Credentials::from_secret(secret).map_err(Box::new)?,
    };
    let token =
        text("token").or_else(|| credentials.password.clone()).map(|t| Token::new(t.trim().to_string()));
    Ok((credentials, token))
}

async fn forge_token(
    client: &kube::Client,
    timeout: Duration,
    namespace: &str,
    r: &LocalObjectReference,
) -> Result<Token, GitWriteError> {
    let secret = read_secret(client, timeout, namespace, r).await?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .map(|t| Token::new(t.trim().to_string()))
        .ok_or_else(|| GitWriteError::NoToken { secret: r.name.clone() })
}

/// What a maker made on a tip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Made {
    Commit(String),
    /// Nothing to change: the tip already says it.
    Nothing,
    /// The change conflicts with the tip on these paths.
    Conflict(Vec<String>),
}

/// Makes the commit to deliver, on top of a given commit of the workspace.
pub trait CommitMaker {
    fn make(&self, ws: &Workspace, on: &str) -> impl Future<Output = Result<Made, SourceError>> + Send;
    /// A commit the change applies to cleanly, to propose it from when it conflicts with the
    /// tip (a revert: the failed revision). `None`: a conflict is reported, never proposed.
    fn conflict_base(&self) -> Option<String>;
}

/// Where a commit goes, and how it is proposed.
pub struct Target<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub write: &'a GitWrite,
    pub access: &'a WriteAccess,
    /// ferry's own branch for a pull request (`ferry/revert/...`).
    pub proposal_branch: String,
    pub title: String,
    pub body: String,
}

/// How a commit was delivered.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Pushed { commit: String, branch: String },
    Proposed { commit: String, branch: String, pull_request: PullRequest },
    Unchanged,
    Conflict { paths: Vec<String> },
}

/// Delivers what `maker` makes to `target`, per its mode.
pub async fn deliver(
    cache: &GitCache,
    forge: &ForgeClient,
    target: &Target<'_>,
    maker: &impl CommitMaker,
) -> Result<Delivery, GitWriteError> {
    if target.write.mode == WriteMode::PullRequest {
        let ws = workspace(cache, target).await?;
        let tip = ws.head().to_string();
        return match maker.make(&ws, &tip).await? {
            Made::Commit(commit) => propose(forge, target, &ws, commit).await,
            Made::Nothing => Ok(Delivery::Unchanged),
            Made::Conflict(paths) => propose_conflict(forge, target, &ws, maker, paths).await,
        };
    }
    for _ in 0..DIRECT_ATTEMPTS {
        let ws = workspace(cache, target).await?;
        let tip = ws.head().to_string();
        let commit = match maker.make(&ws, &tip).await? {
            Made::Commit(commit) => commit,
            Made::Nothing => return Ok(Delivery::Unchanged),
            Made::Conflict(paths) => return propose_conflict(forge, target, &ws, maker, paths).await,
        };
        match ws.push(&commit, target.branch, false).await? {
            PushOutcome::Pushed => return Ok(Delivery::Pushed { commit, branch: target.branch.to_string() }),
            // The branch moved on since the fetch (or a hook refused): fetch again and redo.
            PushOutcome::Rejected { message } if looks_like_moved(&message) => continue,
            PushOutcome::Rejected { message } => {
                return Err(GitWriteError::Refused { branch: target.branch.to_string(), message });
            }
        }
    }
    Err(GitWriteError::BranchKeepsMoving { branch: target.branch.to_string(), attempts: DIRECT_ATTEMPTS })
}

fn looks_like_moved(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("fast-forward") || lower.contains("fastforward") || lower.contains("fetch first")
}

async fn workspace(cache: &GitCache, target: &Target<'_>) -> Result<Workspace, GitWriteError> {
    Ok(cache.workspace(target.url, target.branch, Some(target.access.credentials.clone())).await?)
}

/// A conflicting change: proposed from the maker's conflict base when a forge is configured
/// (the pull request shows the conflict to a person), else reported.
async fn propose_conflict(
    forge: &ForgeClient,
    target: &Target<'_>,
    ws: &Workspace,
    maker: &impl CommitMaker,
    paths: Vec<String>,
) -> Result<Delivery, GitWriteError> {
    let Some(base) = maker.conflict_base().filter(|_| target.write.forge.is_some()) else {
        return Ok(Delivery::Conflict { paths });
    };
    match maker.make(ws, &base).await? {
        Made::Commit(commit) => propose(forge, target, ws, commit).await,
        Made::Nothing | Made::Conflict(_) => Ok(Delivery::Conflict { paths }),
    }
}

/// Pushes `commit` to ferry's own branch (forced: it is ferry's) and opens the pull request,
/// or finds the one already open.
async fn propose(
    forge: &ForgeClient,
    target: &Target<'_>,
    ws: &Workspace,
    commit: String,
) -> Result<Delivery, GitWriteError> {
    let spec = target.write.forge.as_ref().ok_or(GitWriteError::NoForge)?;
    let token = target.access.token.as_ref().ok_or(GitWriteError::NoForge)?;
    let branch = target.proposal_branch.clone();
    if let PushOutcome::Rejected { message } = ws.push(&commit, &branch, true).await? {
        return Err(GitWriteError::Refused { branch, message });
    }
    let repo = RepoCoordinates::from_repo_url(spec.provider, target.url, spec.api_url.as_deref())?;
    let request =
        PullRequestRequest { head: &branch, base: target.branch, title: &target.title, body: &target.body };
    let pull_request = forge.open_pull_request(&repo, token, &request).await?;
    Ok(Delivery::Proposed { commit, branch, pull_request })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let data: BTreeMap<String, ByteString> =
            pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect();
        Secret { data: Some(data), ..Default::default() }
    }

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn a_bare_token_pushes_as_a_password_and_opens_pull_requests() {
        let (c, token) = write_access(&secret(&[("token", "t0ken-123")])).unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("ferry"), Some("t0ken-123")));
        assert!(token.is_some());
    }

    #[test]
    fn an_ssh_key_beside_a_forge_token_still_pushes_with_the_key() {
        let (c, token) = write_access(&secret(&[("identity", KEY), ("token", "forge-t0ken")])).unwrap();
        assert_eq!(c.identity.as_deref(), Some(KEY));
        assert_eq!(c.password, None);
        assert!(token.is_some(), "the token serves the forge");
    }

    #[test]
    fn username_and_password_push_and_the_password_is_the_forge_token() {
        let (c, token) = write_access(&secret(&[("username", "bot"), ("password", "pw-1234")])).unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("bot"), Some("pw-1234")));
        assert!(token.is_some());
        assert!(write_access(&secret(&[("nothing", "x")])).is_err());
    }
}
