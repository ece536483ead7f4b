//! How ferry writes to Git: the push credentials, where a commit goes (the tracked branch, or a
//! new branch with a pull request) and the forge that opens the pull request. Shared by
//! `spec.syncPolicy.rollback.gitRevert` (revert commits) and `ImagePolicy.spec.update` (image
//! tag updates).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// Where ferry's commit goes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Pushed to the tracked branch (fast-forward only; a branch that moved on is re-read and
    /// the commit made again on top of it, a conflict is never forced).
    #[default]
    Direct,
    /// Pushed to a new branch `ferry/...` and proposed with a pull (merge) request through the
    /// forge's API.
    PullRequest,
}

/// A forge's API, for pull requests (and commit statuses, see `Notifier`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForgeProvider {
    Github,
    Gitlab,
    Gitea,
}

impl ForgeProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeProvider::Github => "github",
            ForgeProvider::Gitlab => "gitlab",
            ForgeProvider::Gitea => "gitea",
        }
    }
}

/// The forge hosting the repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Forge {
    pub provider: ForgeProvider,
    /// The API's base URL. Default: derived from the repository URL (`https://api.github.com`
    /// for github.com, `<host>/api/v3` for GitHub Enterprise, `<host>/api/v4` for GitLab,
    /// `<host>/api/v1` for Gitea).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("apiURL must be an http(s) URL"))]
    pub api_url: Option<String>,
    /// A Secret of this namespace with the API token in key `token`. Default: the push
    /// credentials' Secret (its `token`, else its `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// Who ferry's commits are authored by.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitAuthor {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[schemars(length(min = 3, max = 256))]
    pub email: String,
}

impl Default for CommitAuthor {
    fn default() -> Self {
        CommitAuthor { name: "ferry".into(), email: "ferry@ferry.dev".into() }
    }
}

/// Push access and where commits go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'PullRequest' || has(self.forge)").message("mode PullRequest needs forge (github, gitlab or gitea) to open the pull request"))]
pub struct GitWrite {
    /// A Secret of this namespace with credentials that may push: `username` and `password`
    /// (or `token`) for HTTPS, `identity` and `known_hosts` for SSH, as a source's secretRef.
    /// Read as the ServiceAccount the object acts as.
    pub secret_ref: LocalObjectReference,
    /// `Direct` (default) or `PullRequest`.
    #[serde(default)]
    pub mode: WriteMode,
    /// The forge that opens pull requests; needed by mode PullRequest, and used by Direct to
    /// propose a conflicting change as a pull request instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<Forge>,
    /// Commit author. Default: `ferry <ferry@ferry.dev>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<CommitAuthor>,
}
