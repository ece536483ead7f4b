//! What each forge's API wants, as pure functions: paths, JSON payloads, state names, the
//! authentication header, and how to read a pull request out of an answer.
//!
//! GitHub: `POST /repos/{o}/{r}/statuses/{sha}`, `POST /repos/{o}/{r}/pulls` (422 when one is
//! open; found again with `GET /repos/{o}/{r}/pulls?head=o:branch&base=..&state=open`).
//! GitLab: `POST /projects/{id}/statuses/{sha}` (`name` is the context),
//! `POST /projects/{id}/merge_requests` (409 when one is open; found with `source_branch`,
//! `target_branch`, `state=opened`). Gitea: `POST /repos/{o}/{r}/statuses/{sha}`,
//! `POST /repos/{o}/{r}/pulls` (409 when one is open; found in `GET /repos/{o}/{r}/pulls?state=open`).

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::{
    CommitState, CommitStatus, ForgeError, ForgeProvider, PullRequest, PullRequestRequest, RepoCoordinates,
    Token,
};

/// GitHub refuses a status description longer than this.
const GITHUB_DESCRIPTION: usize = 140;
/// GitLab and Gitea take more; a status line is read at a glance, so this is plenty.
const OTHER_DESCRIPTION: usize = 255;
/// Items per page when listing open pull requests.
pub(crate) const PAGE_SIZE: u32 = 50;

/// The state's name in the forge's API.
pub fn state_name(provider: ForgeProvider, state: CommitState) -> &'static str {
    match (provider, state) {
        (_, CommitState::Pending) => "pending",
        (_, CommitState::Success) => "success",
        (ForgeProvider::Gitlab, CommitState::Failure | CommitState::Error) => "failed",
        (_, CommitState::Failure) => "failure",
        (_, CommitState::Error) => "error",
    }
}

/// At most `max` characters of `text` (never cut inside a character).
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// The header that carries the token, marked sensitive so no debug output shows it.
pub fn auth_header(provider: ForgeProvider, token: &Token) -> Result<(HeaderName, HeaderValue), ForgeError> {
    let (name, value) = match provider {
        ForgeProvider::Github => (http::header::AUTHORIZATION, format!("Bearer {}", token.secret())),
        ForgeProvider::Gitlab => (HeaderName::from_static("private-token"), token.secret().to_string()),
        ForgeProvider::Gitea => (http::header::AUTHORIZATION, format!("token {}", token.secret())),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| ForgeError::BadToken)?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The project as the API path names it: `repos/o/r`, or GitLab's `projects/<url-encoded path>`.
fn project_path(repo: &RepoCoordinates) -> String {
    match repo.provider {
        ForgeProvider::Gitlab => format!("projects/{}", repo.project.replace('/', "%2F")),
        ForgeProvider::Github | ForgeProvider::Gitea => format!("repos/{}", repo.project),
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A commit id: 4 to 64 hex digits (SHA-1 or SHA-256, possibly abbreviated).
fn check_sha(sha: &str) -> Result<(), ForgeError> {
    if (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ForgeError::BadSha)
    }
}

/// The path (after the API base) and body that set a commit status.
pub fn status_request(
    repo: &RepoCoordinates,
    status: &CommitStatus<'_>,
) -> Result<(String, Value), ForgeError> {
    check_sha(status.sha)?;
    let path = format!("/{}/statuses/{}", project_path(repo), status.sha);
    let state = state_name(repo.provider, status.state);
    let max = match repo.provider {
        ForgeProvider::Github => GITHUB_DESCRIPTION,
        _ => OTHER_DESCRIPTION,
    };
    let description = truncate(status.description, max);
    let context_key = match repo.provider {
        ForgeProvider::Gitlab => "name",
        _ => "context",
    };
    let mut body = json!({ "state": state, "description": description, context_key: status.context });
    if let Some(url) = status.target_url {
        body["target_url"] = json!(url);
    }
    Ok((path, body))
}

/// The path and body that open a pull (merge) request.
pub fn create_pull_request(repo: &RepoCoordinates, req: &PullRequestRequest<'_>) -> (String, Value) {
    let body = match repo.provider {
        ForgeProvider::Gitlab => json!({
            "source_branch": req.head, "target_branch": req.base, "title": req.title, "description": req.body,
        }),
        ForgeProvider::Github | ForgeProvider::Gitea => json!({
            "head": req.head, "base": req.base, "title": req.title, "body": req.body,
        }),
    };
    let what = match repo.provider {
        ForgeProvider::Gitlab => "merge_requests",
        _ => "pulls",
    };
    (format!("/{}/{what}", project_path(repo)), body)
}

/// Whether the answer to opening a pull request says one is already open for this head and
/// base (GitHub 422, GitLab and Gitea 409). GitHub also answers 422 for "no commits between":
/// the listing that follows finds nothing then, and the first error stands.
pub fn already_exists(provider: ForgeProvider, status: StatusCode) -> bool {
    match provider {
        ForgeProvider::Github => status == StatusCode::UNPROCESSABLE_ENTITY,
        ForgeProvider::Gitlab | ForgeProvider::Gitea => {
            status == StatusCode::CONFLICT || status == StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

/// The path that lists open pull requests for this head and base, page `page` (from 1). GitHub
/// and GitLab filter on the server; Gitea's list is filtered by [`find_pull_request`].
pub fn list_pull_requests(repo: &RepoCoordinates, req: &PullRequestRequest<'_>, page: u32) -> String {
    let page = page.to_string();
    let per_page = PAGE_SIZE.to_string();
    let q = match repo.provider {
        ForgeProvider::Github => {
            let head = format!("{}:{}", repo.owner(), req.head);
            query(&[
                ("head", &head),
                ("base", req.base),
                ("state", "open"),
                ("per_page", &per_page),
                ("page", &page),
            ])
        }
        ForgeProvider::Gitlab => query(&[
            ("source_branch", req.head),
            ("target_branch", req.base),
            ("state", "opened"),
            ("per_page", &per_page),
            ("page", &page),
        ]),
        ForgeProvider::Gitea => query(&[("state", "open"), ("limit", &per_page), ("page", &page)]),
    };
    let what = match repo.provider {
        ForgeProvider::Gitlab => "merge_requests",
        _ => "pulls",
    };
    format!("/{}/{what}?{q}", project_path(repo))
}

/// A pull request out of an answer: GitHub and Gitea `number`/`html_url`, GitLab `iid`/`web_url`.
pub fn read_pull_request(provider: ForgeProvider, v: &Value) -> Option<PullRequest> {
    let (number, url) = match provider {
        ForgeProvider::Gitlab => ("iid", "web_url"),
        _ => ("number", "html_url"),
    };
    Some(PullRequest { number: v.get(number)?.as_u64()?, url: v.get(url)?.as_str()?.to_string() })
}

/// The open pull request for this head and base in one page of a listing (checked on every
/// provider, not only Gitea's, so a forge that ignored a filter cannot hand back another one).
pub fn find_pull_request(
    provider: ForgeProvider,
    page: &Value,
    req: &PullRequestRequest<'_>,
) -> Option<PullRequest> {
    let refs = |v: &Value| -> Option<(String, String)> {
        let pair = match provider {
            ForgeProvider::Gitlab => (v.get("source_branch")?.as_str()?, v.get("target_branch")?.as_str()?),
            _ => (v.get("head")?.get("ref")?.as_str()?, v.get("base")?.get("ref")?.as_str()?),
        };
        Some((pair.0.to_string(), pair.1.to_string()))
    };
    page.as_array()?
        .iter()
        .filter(|pr| refs(pr).is_some_and(|(h, b)| h == req.head && b == req.base))
        .find_map(|pr| read_pull_request(provider, pr))
}

/// The `message` of an error answer (GitHub, Gitea) or GitLab's `message`/`error`, at most
/// 200 characters, for the error text.
pub fn error_message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = match v.get("message").or_else(|| v.get("error")) {
        Some(Value::String(s)) => s.clone(),
        Some(other @ (Value::Array(_) | Value::Object(_))) => other.to_string(),
        _ => String::new(),
    };
    truncate(text.trim(), 200).to_string()
}

/// GitLab refuses to set a status a commit already has ("Cannot transition status via :run
/// from :running"): that is the state wanted, so it counts as done.
pub fn is_same_state(provider: ForgeProvider, status: StatusCode, message: &str) -> bool {
    provider == ForgeProvider::Gitlab
        && status == StatusCode::BAD_REQUEST
        && message.contains("Cannot transition status")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(provider: ForgeProvider, project: &str) -> RepoCoordinates {
        RepoCoordinates { provider, api_base: "https://forge.example/api".into(), project: project.into() }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn status<'a>(state: CommitState, description: &'a str) -> CommitStatus<'a> {
        CommitStatus {
            sha: SHA,
            state,
            context: "ferry/app",
            description,
            target_url: Some("https://ferry.example/a"),
        }
    }

    #[test]
    fn state_names_follow_each_api() {
        use CommitState::*;
        use ForgeProvider::*;
        let names = |p| [Pending, Success, Failure, Error].map(|s| state_name(p, s));
        assert_eq!(names(Github), ["pending", "success", "failure", "error"]);
        assert_eq!(names(Gitea), ["pending", "success", "failure", "error"]);
        assert_eq!(names(Gitlab), ["pending", "success", "failed", "failed"]);
    }

    #[test]
    fn status_payloads() {
        let (path, body) =
            status_request(&repo(ForgeProvider::Github, "o/r"), &status(CommitState::Success, "ok")).unwrap();
        assert_eq!(path, format!("/repos/o/r/statuses/{SHA}"));
        assert_eq!(
            body,
            json!({"state": "success", "description": "ok", "context": "ferry/app", "target_url": "https://ferry.example/a"})
        );
        let (path, body) =
            status_request(&repo(ForgeProvider::Gitlab, "g/sub/p"), &status(CommitState::Failure, "no"))
                .unwrap();
        assert_eq!(path, format!("/projects/g%2Fsub%2Fp/statuses/{SHA}"));
        assert_eq!(body["name"], "ferry/app");
        assert_eq!(body["state"], "failed");
        assert!(body.get("context").is_none());
        let mut s = status(CommitState::Pending, "x");
        s.target_url = None;
        let (_, body) = status_request(&repo(ForgeProvider::Gitea, "o/r"), &s).unwrap();
        assert!(body.get("target_url").is_none(), "{body}");
    }

    #[test]
    fn descriptions_are_capped_on_a_character_boundary() {
        let long = "é".repeat(300);
        let (_, body) =
            status_request(&repo(ForgeProvider::Github, "o/r"), &status(CommitState::Error, &long)).unwrap();
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 140);
        let (_, body) =
            status_request(&repo(ForgeProvider::Gitea, "o/r"), &status(CommitState::Error, &long)).unwrap();
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 255);
        assert_eq!(truncate("abc", 140), "abc");
        assert_eq!(truncate("a🦀b", 2), "a🦀");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn a_sha_that_is_not_hex_never_reaches_a_path() {
        for sha in ["", "abc", "../../admin", "0123456789abcdef?x=1", &"a".repeat(65), "ééééé"] {
            let s = CommitStatus { sha, ..status(CommitState::Success, "") };
            assert!(
                matches!(status_request(&repo(ForgeProvider::Gitea, "o/r"), &s), Err(ForgeError::BadSha)),
                "{sha}"
            );
        }
    }

    #[test]
    fn pull_request_payloads_and_listings() {
        let req = PullRequestRequest { head: "ferry/revert-1", base: "main", title: "Revert", body: "why" };
        let (path, body) = create_pull_request(&repo(ForgeProvider::Github, "o/r"), &req);
        assert_eq!(path, "/repos/o/r/pulls");
        assert_eq!(body, json!({"head": "ferry/revert-1", "base": "main", "title": "Revert", "body": "why"}));
        let (path, body) = create_pull_request(&repo(ForgeProvider::Gitlab, "g/p"), &req);
        assert_eq!(path, "/projects/g%2Fp/merge_requests");
        assert_eq!(
            body,
            json!({"source_branch": "ferry/revert-1", "target_branch": "main", "title": "Revert", "description": "why"})
        );
        assert_eq!(
            list_pull_requests(&repo(ForgeProvider::Github, "o/r"), &req, 1),
            "/repos/o/r/pulls?head=o%3Aferry%2Frevert-1&base=main&state=open&per_page=50&page=1"
        );
        assert_eq!(
            list_pull_requests(&repo(ForgeProvider::Gitlab, "g/p"), &req, 2),
            "/projects/g%2Fp/merge_requests?source_branch=ferry%2Frevert-1&target_branch=main&state=opened&per_page=50&page=2"
        );
        assert_eq!(
            list_pull_requests(&repo(ForgeProvider::Gitea, "o/r"), &req, 1),
            "/repos/o/r/pulls?state=open&limit=50&page=1"
        );
        let hostile = PullRequestRequest { head: "a&state=closed#", ..req };
        assert!(
            list_pull_requests(&repo(ForgeProvider::Github, "o/r"), &hostile, 1)
                .contains("head=o%3Aa%26state%3Dclosed%23&")
        );
    }

    #[test]
    fn pull_requests_are_found_by_head_and_base() {
        let req = PullRequestRequest { head: "ferry/x", base: "main", title: "", body: "" };
        let gitea = json!([
            {"number": 1, "html_url": "u1", "head": {"ref": "ferry/x"}, "base": {"ref": "release"}},
            {"number": 2, "html_url": "u2", "head": {"ref": "other"}, "base": {"ref": "main"}},
            {"number": 3, "html_url": "u3", "head": {"ref": "ferry/x"}, "base": {"ref": "main"}},
        ]);
        assert_eq!(
            find_pull_request(ForgeProvider::Gitea, &gitea, &req),
            Some(PullRequest { number: 3, url: "u3".into() })
        );
        let gitlab =
            json!([{"iid": 7, "web_url": "w7", "source_branch": "ferry/x", "target_branch": "main"}]);
        assert_eq!(
            find_pull_request(ForgeProvider::Gitlab, &gitlab, &req),
            Some(PullRequest { number: 7, url: "w7".into() })
        );
        for junk in
            [json!({}), json!(null), json!([1, "x", {"number": "3"}]), json!([{"head": {"ref": "ferry/x"}}])]
        {
            assert_eq!(find_pull_request(ForgeProvider::Github, &junk, &req), None, "{junk}");
        }
    }

    #[test]
    fn headers_carry_the_token_marked_sensitive() {
        let token = Token::new("t0k".into());
        let (name, value) = auth_header(ForgeProvider::Github, &token).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("authorization", "Bearer t0k"));
        assert!(value.is_sensitive());
        let (name, value) = auth_header(ForgeProvider::Gitlab, &token).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("private-token", "t0k"));
        let (_, value) = auth_header(ForgeProvider::Gitea, &token).unwrap();
        assert_eq!(value.to_str().unwrap(), "token t0k");
        let err = auth_header(ForgeProvider::Gitea, &Token::new("bad\nzq9".into())).unwrap_err();
        assert!(!err.to_string().contains("zq9"), "{err}");
    }

    #[test]
    fn error_messages_are_short_and_tolerate_anything() {
        assert_eq!(error_message(br#"{"message":"Validation Failed"}"#), "Validation Failed");
        assert_eq!(
            error_message(br#"{"message":["Another open merge request"]}"#),
            r#"["Another open merge request"]"#
        );
        assert_eq!(error_message(br#"{"error":"insufficient_scope"}"#), "insufficient_scope");
        assert_eq!(error_message(b"<html>bad gateway</html>"), "");
        assert_eq!(error_message(format!(r#"{{"message":"{}"}}"#, "x".repeat(500)).as_bytes()).len(), 200);
        assert!(is_same_state(
            ForgeProvider::Gitlab,
            StatusCode::BAD_REQUEST,
            "Cannot transition status via :run from :running"
        ));
        assert!(!is_same_state(ForgeProvider::Github, StatusCode::BAD_REQUEST, "Cannot transition status"));
    }
}
