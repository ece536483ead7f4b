//! ferry's client of forge APIs (GitHub, GitLab, Gitea): commit statuses (notifications) and
//! pull requests (git revert, image updates).
//!
//! Built on the hyper client already in the tree (http and https, system roots), with a deadline
//! on every request and a bound on every answer, so a silent or chatty forge costs one timeout,
//! never a stuck controller. Tokens travel in sensitive headers and never appear in errors:
//! an error names the forge (provider and API base) and the HTTP status.

mod coordinates;
mod provider;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

pub use crate::api::ForgeProvider;
pub use coordinates::RepoCoordinates;

/// The largest answer read: a page of pull requests is at most a few hundred KiB.
const MAX_ANSWER: usize = 4 << 20;
/// Pages of open pull requests searched for an existing one (Gitea lists them all).
const MAX_PAGES: u32 = 20;
const USER_AGENT: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// An API token; Debug/Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(s: String) -> Token {
        Token(s)
    }

    fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A commit status's state; GitLab calls failure and error both `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A status on a commit; `context` tells ferry's statuses apart from CI's (GitLab calls it
/// `name`). The description is cut to what the forge takes (140 characters on GitHub).
#[derive(Clone, Debug)]
pub struct CommitStatus<'a> {
    pub sha: &'a str,
    pub state: CommitState,
    pub context: &'a str,
    pub description: &'a str,
    pub target_url: Option<&'a str>,
}

/// A pull (merge) request to open from branch `head` into branch `base` of the same repository.
#[derive(Clone, Debug)]
pub struct PullRequestRequest<'a> {
    pub head: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// An open pull request: its number (GitLab's `iid`) and web page.
#[derive(Clone, Debug, PartialEq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// Why a forge call failed. Messages name the forge and the HTTP status, never the token (nor
/// a repository URL, which may carry credentials).
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("repository URL cannot name a forge project: {reason}")]
    BadRepoUrl { reason: &'static str },
    #[error("forge apiURL is not usable: {reason}")]
    BadApiUrl { reason: &'static str },
    #[error("the forge token is not a valid HTTP header value (a newline or control character?)")]
    BadToken,
    #[error("the commit id is not 4 to 64 hex digits")]
    BadSha,
    #[error("{forge}: cannot build the request: {source}")]
    Request { forge: String, source: http::Error },
    #[error("{forge} is unreachable: {source}")]
    Unreachable { forge: String, source: hyper_util::client::legacy::Error },
    #[error("{forge}: reading the answer: {source}")]
    Reading { forge: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{forge} answered with more than {limit} bytes")]
    TooLarge { forge: String, limit: usize },
    #[error("{forge} did not answer within {}s", .timeout.as_secs())]
    Timeout { forge: String, timeout: Duration },
    /// The forge refused (4xx) or failed (5xx); `message` is the start of its own words.
    #[error("{forge} answered {status} to {action}{}", colon(.message))]
    Status { forge: String, action: &'static str, status: StatusCode, message: String },
    #[error("{forge} answered {status} to {action} with something that is not the forge's JSON")]
    NotJson { forge: String, action: &'static str, status: StatusCode },
}

impl ForgeError {
    /// Whether trying again later may succeed: 5xx, 429, timeouts and connection errors.
    pub fn is_transient(&self) -> bool {
        match self {
            ForgeError::Unreachable { .. } | ForgeError::Reading { .. } | ForgeError::Timeout { .. } => true,
            ForgeError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            // A proxy's error page in front of a restarting forge.
            ForgeError::NotJson { status, .. } => status.is_server_error(),
            ForgeError::BadRepoUrl { .. }
            | ForgeError::BadApiUrl { .. }
            | ForgeError::BadToken
            | ForgeError::BadSha
            | ForgeError::TooLarge { .. }
            | ForgeError::Request { .. } => false,
        }
    }
}

/// One answer: its status and body (read up to [`MAX_ANSWER`]).
struct Answer {
    status: StatusCode,
    body: Bytes,
}

/// A forge API client; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct ForgeClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl ForgeClient {
    /// A client whose every request (send and read) ends within `timeout`.
    pub fn new(timeout: Duration) -> std::io::Result<ForgeClient> {
        let connector =
            HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(ForgeClient { client, timeout })
    }

    /// Sets a commit status (creating a new one; forges show the latest per context).
    pub async fn set_commit_status(
        &self,
        repo: &RepoCoordinates,
        token: &Token,
        status: &CommitStatus<'_>,
    ) -> Result<(), ForgeError> {
        const ACTION: &str = "setting a commit status";
        let (path, body) = provider::status_request(repo, status)?;
        let answer = self.send(repo, token, Method::POST, &path, Some(&body)).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        let message = sanitize(provider::error_message(&answer.body), token);
        if provider::is_same_state(repo.provider, answer.status, &message) {
            return Ok(());
        }
        Err(ForgeError::Status { forge: forge_name(repo), action: ACTION, status: answer.status, message })
    }

    /// Opens a pull (merge) request from `head` into `base`, or returns the one already open
    /// for that head and base (idempotent).
    pub async fn open_pull_request(
        &self,
        repo: &RepoCoordinates,
        token: &Token,
        req: &PullRequestRequest<'_>,
    ) -> Result<PullRequest, ForgeError> {
        const ACTION: &str = "opening a pull request";
        let (path, body) = provider::create_pull_request(repo, req);
        let answer = self.send(repo, token, Method::POST, &path, Some(&body)).await?;
        if answer.status.is_success() {
            let json = self.json(repo, ACTION, &answer)?;
            return provider::read_pull_request(repo.provider, &json).ok_or_else(|| ForgeError::NotJson {
                forge: forge_name(repo),
                action: ACTION,
                status: answer.status,
            });
        }
        let refused = ForgeError::Status {
            forge: forge_name(repo),
            action: ACTION,
            status: answer.status,
            message: sanitize(provider::error_message(&answer.body), token),
        };
        if !provider::already_exists(repo.provider, answer.status) {
            return Err(refused);
        }
        // One is open already (or the forge refused for another reason, such as no commits
        // between the branches: then no open one is found, and the refusal stands).
        match self.find_open_pull_request(repo, token, req).await? {
            Some(pr) => Ok(pr),
            None => Err(refused),
        }
    }

    /// The open pull request for `req`'s head and base, searched page by page.
    async fn find_open_pull_request(
        &self,
        repo: &RepoCoordinates,
        token: &Token,
        req: &PullRequestRequest<'_>,
    ) -> Result<Option<PullRequest>, ForgeError> {
        const ACTION: &str = "listing open pull requests";
        for page in 1..=MAX_PAGES {
            let path = provider::list_pull_requests(repo, req, page);
            let answer = self.send(repo, token, Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                let message = sanitize(provider::error_message(&answer.body), token);
                return Err(ForgeError::Status {
                    forge: forge_name(repo),
                    action: ACTION,
                    status: answer.status,
                    message,
                });
            }
            let json = self.json(repo, ACTION, &answer)?;
            if let Some(pr) = provider::find_pull_request(repo.provider, &json, req) {
                return Ok(Some(pr));
            }
            let len = json.as_array().map_or(0, Vec::len);
            if len < provider::PAGE_SIZE as usize {
                return Ok(None);
            }
        }
        Ok(None)
    }

    fn json(
        &self,
        repo: &RepoCoordinates,
        action: &'static str,
        answer: &Answer,
    ) -> Result<Value, ForgeError> {
        serde_json::from_slice(&answer.body).map_err(|_| ForgeError::NotJson {
            forge: forge_name(repo),
            action,
            status: answer.status,
        })
    }

    /// One request to `<api_base><path>` with the token and JSON, within the timeout.
    async fn send(
        &self,
        repo: &RepoCoordinates,
        token: &Token,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        let forge = forge_name(repo);
        let (auth_name, auth_value) = provider::auth_header(repo.provider, token)?;
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", repo.api_base))
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "application/json")
            .header(auth_name, auth_value);
        if repo.provider == ForgeProvider::Github {
            builder = builder.header("X-GitHub-Api-Version", "2022-11-28");
        }
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(bytes))
            .map_err(|source| ForgeError::Request { forge: forge.clone(), source })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| ForgeError::Unreachable { forge: forge.clone(), source })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|source| match source.is::<LengthLimitError>() {
                    true => ForgeError::TooLarge { forge: forge.clone(), limit: MAX_ANSWER },
                    false => ForgeError::Reading { forge: forge.clone(), source },
                })?
                .to_bytes();
            Ok::<_, ForgeError>(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ForgeError::Timeout { forge: forge.clone(), timeout: self.timeout })?
    }
}

/// `: message`, or nothing for an empty one.
fn colon(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

/// `gitea at http://host/api/v1`: what errors call the forge (the base has no credentials).
fn forge_name(repo: &RepoCoordinates) -> String {
    format!("{} at {}", repo.provider.as_str(), repo.api_base)
}

/// A forge's message with the token blanked, should the forge echo it.
fn sanitize(message: String, token: &Token) -> String {
    if token.secret().len() >= 4 && message.contains(token.secret()) {
        message.replace(token.secret(), "***")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show() {
        let t = Token::new("glpat-s3cret".into());
        assert_eq!(format!("{t}"), "***");
        assert_eq!(format!("{t:?}"), "Token(***)");
        assert_eq!(sanitize("bad token glpat-s3cret".into(), &t), "bad token ***");
    }

    #[test]
    fn transient_errors_are_server_side() {
        let status = |code: u16| ForgeError::Status {
            forge: "gitea at http://h/api/v1".into(),
            action: "x",
            status: StatusCode::from_u16(code).unwrap(),
            message: String::new(),
        };
        for code in [500, 502, 503, 429] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!status(code).is_transient(), "{code}");
        }
        let timeout = ForgeError::Timeout { forge: "f".into(), timeout: Duration::from_secs(3) };
        assert!(timeout.is_transient());
        assert_eq!(timeout.to_string(), "f did not answer within 3s");
        assert!(!ForgeError::BadSha.is_transient());
        assert_eq!(status(401).to_string(), "gitea at http://h/api/v1 answered 401 Unauthorized to x");
    }

    #[tokio::test]
    async fn an_unreachable_forge_is_transient_and_named() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let repo = RepoCoordinates::from_repo_url(
            ForgeProvider::Gitea,
            &format!("http://127.0.0.1:{port}/o/r"),
            None,
        )
        .unwrap();
        let client = ForgeClient::new(Duration::from_secs(5)).unwrap();
        let token = Token::new("s3cret-token".into());
        let status = CommitStatus {
            sha: "abcdef12",
            state: CommitState::Pending,
            context: "ferry",
            description: "",
            target_url: None,
        };
        let err = client.set_commit_status(&repo, &token, &status).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("gitea at http://127.0.0.1:{port}/api/v1")), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
