//! ferry's forge client (`ferry::forge`) and webhook endpoint against a real Gitea
//! (`tests/support/gitea.rs`): commit statuses and pull requests as Gitea records them, a
//! refused token, and Gitea's own webhook deliveries reaching a running `ferry run`.

use std::time::Duration;

use ferry::forge::{
    CommitState, CommitStatus, ForgeClient, ForgeError, ForgeProvider, PullRequestRequest, RepoCoordinates,
    Token,
};
use serde_json::Value;

use crate::support::{AppBuilder, Cluster, Ferry, Gitea, T, http_get, release_applications, wait_until};

const CONTEXT: &str = "ferry/web";

fn client() -> ForgeClient {
    ForgeClient::new(Duration::from_secs(30)).expect("a forge client")
}

/// The coordinates ferry derives from the repository's clone URL alone (no apiURL).
fn coordinates(gitea: &Gitea, repo: &str) -> RepoCoordinates {
    let c = RepoCoordinates::from_repo_url(ForgeProvider::Gitea, &gitea.clone_url(repo), None)
        .expect("a Gitea clone URL names a project");
    assert_eq!(
        (c.api_base.as_str(), c.project.as_str()),
        (gitea.api_url().as_str(), &*format!("ferry-admin/{repo}"))
    );
    c
}

/// The newest status of `context` on `sha`, as Gitea lists them.
fn latest_status(gitea: &Gitea, repo: &str, sha: &str, context: &str) -> Option<Value> {
    let mut mine: Vec<Value> =
        gitea.commit_statuses(repo, sha).into_iter().filter(|s| s["context"] == context).collect();
    mine.sort_by_key(|s| s["id"].as_u64().unwrap_or(0));
    mine.pop()
}

#[tokio::test]
async fn commit_statuses_are_recorded_by_gitea() {
    let gitea = Gitea::start();
    gitea.create_repo("app", true);
    let sha = gitea.commit_files("app", "main", &[("app/a.yaml", "a: 1\n")], "a change");
    let repo = coordinates(&gitea, "app");
    let token = Token::new(gitea.token().to_string());
    let forge = client();

    let pending = CommitStatus {
        sha: &sha,
        state: CommitState::Pending,
        context: CONTEXT,
        description: "syncing web",
        target_url: Some("https://ferry.example/apps/web"),
    };
    forge.set_commit_status(&repo, &token, &pending).await.expect("pending is set");
    let got = latest_status(&gitea, "app", &sha, CONTEXT).expect("a status of ferry's context");
    assert_eq!(got["status"], "pending", "{got}");
    assert_eq!(got["description"], "syncing web", "{got}");
    assert_eq!(got["target_url"], "https://ferry.example/apps/web", "{got}");

    // A description longer than any forge takes goes in cut, not refused.
    let long = "é".repeat(400);
    let success =
        CommitStatus { state: CommitState::Success, description: &long, target_url: None, ..pending };
    forge.set_commit_status(&repo, &token, &success).await.expect("success is set");
    let got = latest_status(&gitea, "app", &sha, CONTEXT).expect("a status of ferry's context");
    assert_eq!(got["status"], "success", "{got}");
    assert_eq!(got["description"].as_str().map(|d| d.chars().count()), Some(255), "{got}");
    let combined = gitea.api_ok("GET", &format!("/repos/ferry-admin/app/commits/{sha}/status"), None);
    assert_eq!(combined["state"], "success", "{combined}");

    let failure = CommitStatus { state: CommitState::Failure, description: "health check failed", ..pending };
    forge.set_commit_status(&repo, &token, &failure).await.expect("failure is set");
    let got = latest_status(&gitea, "app", &sha, CONTEXT).expect("a status of ferry's context");
    assert_eq!(
        (got["status"].as_str(), got["description"].as_str()),
        (Some("failure"), Some("health check failed"))
    );
}

#[tokio::test]
async fn a_pull_request_is_opened_once_and_found_again() {
    let gitea = Gitea::start();
    gitea.create_repo("app", true);
    let head = "ferry/image-update-web";
    gitea.commit_files("app", head, &[("app/image.yaml", "tag: v2\n")], "web: v2");
    let repo = coordinates(&gitea, "app");
    let token = Token::new(gitea.token().to_string());
    let forge = client();
    let req = PullRequestRequest { head, base: "main", title: "web: image v2", body: "Opened by ferry." };

    let pr = forge.open_pull_request(&repo, &token, &req).await.expect("the pull request is opened");
    let got = gitea.pull_request("app", pr.number);
    assert_eq!(got["head"]["ref"], head, "{got}");
    assert_eq!(got["base"]["ref"], "main", "{got}");
    assert_eq!(
        (got["title"].as_str(), got["body"].as_str()),
        (Some("web: image v2"), Some("Opened by ferry."))
    );
    assert_eq!(got["html_url"].as_str(), Some(pr.url.as_str()));
    assert!(pr.url.starts_with(&gitea.url()), "{}", pr.url);
    assert_eq!(gitea.pull_request_files("app", pr.number), vec!["app/image.yaml".to_string()]);
    assert!(gitea.pull_request_diff("app", pr.number).contains("+tag: v2"));

    // Again (a retry, a second reconcile): the open one comes back, no second one is made.
    let again = forge.open_pull_request(&repo, &token, &req).await.expect("the open pull request is found");
    assert_eq!(again, pr);
    assert_eq!(gitea.pull_requests("app", "all").len(), 1);

    // A head that was never pushed is refused, and that refusal is not worth retrying.
    let missing = PullRequestRequest { head: "ferry/never-pushed", ..req };
    let err = forge.open_pull_request(&repo, &token, &missing).await.expect_err("no such head branch");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(gitea.pull_requests("app", "all").len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_refused_for_good_and_never_shown() {
    let gitea = Gitea::start();
    gitea.create_repo("app", true);
    let sha = gitea.branch_head("app", "main").expect("main exists");
    let repo = coordinates(&gitea, "app");
    let wrong = "0123456789abcdef0123456789abcdef01234567";
    let token = Token::new(wrong.to_string());
    let forge = client();

    let status = CommitStatus {
        sha: &sha,
        state: CommitState::Success,
        context: CONTEXT,
        description: "",
        target_url: None,
    };
    let err = forge.set_commit_status(&repo, &token, &status).await.expect_err("a wrong token is refused");
    assert_refused(&err, wrong, &gitea);
    let req = PullRequestRequest { head: "x", base: "main", title: "t", body: "" };
    let err = forge.open_pull_request(&repo, &token, &req).await.expect_err("a wrong token is refused");
    assert_refused(&err, wrong, &gitea);
    assert!(gitea.commit_statuses("app", &sha).is_empty());
}

fn assert_refused(err: &ForgeError, token: &str, gitea: &Gitea) {
    let text = err.to_string();
    assert!(matches!(err, ForgeError::Status { status, .. } if status.as_u16() == 401), "{text}");
    assert!(!err.is_transient(), "{text}");
    assert!(text.contains(&format!("gitea at {}", gitea.api_url())) && text.contains("401"), "{text}");
    assert!(!text.contains(token) && !format!("{err:?}").contains(token), "{text}");
}

/// Gitea signs its deliveries the GitHub way too (`X-GitHub-Event`, `X-Hub-Signature-256:
/// sha256=<hex>`, besides `X-Gitea-Event` and `X-Gitea-Signature`), so a Gitea webhook pointed
/// at `/hooks/github` with the webhook Secret's key is a GitHub push to ferry. The Application
/// checks Git once an hour: the new commit can only arrive through Gitea's delivery.
#[test]
fn gitea_webhook_deliveries_make_ferry_fetch_at_once() {
    const KEY: &str = "gitea-webhook-key";
    let cluster = Cluster::shared().clone();
    cluster.install_crds();
    let ns = cluster.namespace("forge-hook");
    let secret = format!("--from-literal=github={KEY}");
    cluster.kubectl_ok(&["-n", &ns.name, "create", "secret", "generic", "hooks", &secret]);
    let gitea = Gitea::start();
    gitea.create_repo("deploy", false);
    let color = |c: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {c}\n")
    };
    let sha1 = gitea.commit_files("deploy", "main", &[("app/settings.yaml", &color("red"))], "red");

    let mut ferry = Ferry::start_with(&cluster, &ns.name, &["--webhook-secret", "hooks"]);
    let addr = ferry.http_address();
    wait_until("ferry's /readyz to answer 200", T, || {
        let r = http_get(&addr, "/readyz");
        if r.status == 200 { Ok(()) } else { Err(format!("{} {}", r.status, r.body)) }
    });
    let app = AppBuilder::new("web")
        .namespace(&ns.name)
        .repo(&gitea.clone_url("deploy"))
        .branch("main")
        .path("app")
        .interval("1h")
        .automated(true)
        .create(&cluster);
    app.wait_synced(&sha1, T);

    gitea.create_webhook("deploy", &format!("http://{addr}/hooks/github"), KEY);
    let sha2 = gitea.commit_files("deploy", "main", &[("app/settings.yaml", &color("green"))], "green");
    app.wait_synced(&sha2, T);
    let cm = crate::support::get_json(&cluster, &["-n", &ns.name, "get", "configmap", "settings"]);
    assert_eq!(cm.expect("ConfigMap settings")["data"]["color"], "green");

    let metrics = http_get(&addr, "/metrics").body;
    let accepted = "ferry_webhook_requests_total{provider=\"github\",result=\"accepted\"} ";
    assert!(metrics.lines().any(|l| l.starts_with(accepted) && !l.ends_with(" 0")), "{metrics}");
    ferry.wait_for_log("the accepted push from Gitea", 0, T, |l| {
        l.contains("push accepted") && l.contains("refs/heads/main") && l.contains("/deploy")
    });
    assert!(!ferry.logs().contains(KEY), "the webhook key reached the log");
    ferry.stop();
    release_applications(&cluster, &ns.name);
}

// ---------------------------------------------------------------------------------------------
// GitHub and GitLab, which cannot run here: a local HTTP receiver records what ferry sends and
// answers as their API documentation says they do.

/// One request as the receiver read it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

type Answer = (u16, String);

/// A loopback HTTP/1.1 server answering each request with `answer(request)` (a status and a
/// JSON body; status 0: never answer) and `Connection: close`; records every request.
struct Receiver {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(answer);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, recorded) = (answer.clone(), recorded.clone());
                tokio::spawn(async move { serve(stream, &*answer, &recorded).await });
            }
        });
        Receiver { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    answer: &(dyn Fn(&Seen) -> Answer + Send + Sync),
    recorded: &std::sync::Mutex<Vec<Seen>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (request_line.next().unwrap_or_default(), request_line.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let seen = Seen { method: method.to_string(), path: path.to_string(), headers, body };
    recorded.lock().unwrap().push(seen.clone());
    let (status, text) = answer(&seen);
    if status == 0 {
        // Hold the connection open without a word: the client's deadline must end it.
        tokio::time::sleep(Duration::from_secs(300)).await;
        return;
    }
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[tokio::test]
async fn github_requests_follow_its_api() {
    let server = Receiver::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/statuses/0123456789abcdef0123456789abcdef01234567") => {
            (201, r#"{"id":1,"state":"pending"}"#.into())
        }
        // GitHub's answer when a pull request for this head and base is open.
        ("POST", "/repos/acme/app/pulls") => (
            422,
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for acme:ferry/x."}]}"#.into(),
        ),
        ("GET", p) if p.starts_with("/repos/acme/app/pulls?") => (
            200,
            r#"[{"number":12,"html_url":"https://github.com/acme/app/pull/12","head":{"ref":"ferry/x"},"base":{"ref":"main"}}]"#.into(),
        ),
        _ => (404, r#"{"message":"Not Found"}"#.into()),
    })
    .await;
    let repo = RepoCoordinates::from_repo_url(
        ForgeProvider::Github,
        "git@github.com:acme/app.git",
        Some(&server.url()),
    )
    .expect("coordinates");
    let token = Token::new("ghp_test_token".into());
    let forge = client();
    let long = "x".repeat(300);
    let status = CommitStatus {
        sha: SHA,
        state: CommitState::Error,
        context: CONTEXT,
        description: &long,
        target_url: Some("https://ferry.example/apps/web"),
    };
    forge.set_commit_status(&repo, &token, &status).await.expect("201 is success");
    let req = PullRequestRequest { head: "ferry/x", base: "main", title: "t", body: "b" };
    let pr = forge.open_pull_request(&repo, &token, &req).await.expect("the open one is found");
    assert_eq!((pr.number, pr.url.as_str()), (12, "https://github.com/acme/app/pull/12"));

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for r in &seen {
        assert_eq!(r.header("authorization"), Some("Bearer ghp_test_token"), "{r:?}");
        assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
        assert!(r.header("user-agent").is_some_and(|u| u.starts_with("ferry/")), "{r:?}");
    }
    assert_eq!(seen[0].path, format!("/repos/acme/app/statuses/{SHA}"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].body["state"], "error");
    assert_eq!(seen[0].body["context"], CONTEXT);
    assert_eq!(seen[0].body["target_url"], "https://ferry.example/apps/web");
    assert_eq!(seen[0].body["description"].as_str().map(str::len), Some(140));
    assert_eq!(
        seen[1].body,
        serde_json::json!({"head": "ferry/x", "base": "main", "title": "t", "body": "b"})
    );
    assert_eq!(
        seen[2].path,
        "/repos/acme/app/pulls?head=acme%3Aferry%2Fx&base=main&state=open&per_page=50&page=1"
    );
}

#[tokio::test]
async fn gitlab_requests_follow_its_api() {
    let server = Receiver::start(|r| match (r.method.as_str(), r.path.as_str()) {
        // GitLab refuses a state the commit already has.
        ("POST", p) if p.contains("/statuses/") && r.body["state"] == "pending" => {
            (400, r#"{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}"#.into())
        }
        ("POST", p) if p.contains("/statuses/") => (201, r#"{"id":1}"#.into()),
        ("POST", "/gitlab/api/v4/projects/group%2Fsub%2Fapp/merge_requests") => {
            (409, r#"{"message":["Another open merge request already exists for this source branch: !7"]}"#.into())
        }
        ("GET", p) if p.starts_with("/gitlab/api/v4/projects/group%2Fsub%2Fapp/merge_requests?") => (
            200,
            r#"[{"iid":7,"web_url":"https://gl.example/group/sub/app/-/merge_requests/7","source_branch":"ferry/x","target_branch":"main"}]"#.into(),
        ),
        _ => (404, r#"{"message":"404 Not Found"}"#.into()),
    })
    .await;
    let api = format!("{}/gitlab/api/v4", server.url());
    let repo = RepoCoordinates::from_repo_url(
        ForgeProvider::Gitlab,
        "https://gl.example/gitlab/group/sub/app.git",
        Some(&api),
    )
    .expect("coordinates");
    assert_eq!(repo.project, "group/sub/app");
    let token = Token::new("glpat-test-token".into());
    let forge = client();
    let mut status = CommitStatus {
        sha: SHA,
        state: CommitState::Failure,
        context: CONTEXT,
        description: "d",
        target_url: None,
    };
    forge.set_commit_status(&repo, &token, &status).await.expect("201 is success");
    status.state = CommitState::Pending;
    forge.set_commit_status(&repo, &token, &status).await.expect("the state it already has counts as set");
    let req = PullRequestRequest { head: "ferry/x", base: "main", title: "t", body: "b" };
    let pr = forge.open_pull_request(&repo, &token, &req).await.expect("the open one is found");
    assert_eq!((pr.number, pr.url.as_str()), (7, "https://gl.example/group/sub/app/-/merge_requests/7"));

    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for r in &seen {
        assert_eq!(r.header("private-token"), Some("glpat-test-token"), "{r:?}");
        assert_eq!(r.header("authorization"), None);
    }
    assert_eq!(seen[0].path, format!("/gitlab/api/v4/projects/group%2Fsub%2Fapp/statuses/{SHA}"));
    assert_eq!(seen[0].body, serde_json::json!({"state": "failed", "name": CONTEXT, "description": "d"}));
    assert_eq!(
        seen[2].body,
        serde_json::json!({"source_branch": "ferry/x", "target_branch": "main", "title": "t", "description": "b"})
    );
    assert_eq!(
        seen[3].path,
        "/gitlab/api/v4/projects/group%2Fsub%2Fapp/merge_requests?source_branch=ferry%2Fx&target_branch=main&state=opened&per_page=50&page=1"
    );
}

#[tokio::test]
async fn failing_silent_and_flooding_forges_are_told_apart() {
    let server = Receiver::start(|r| match r.path.as_str() {
        p if p.starts_with("/busy/") => (503, r#"{"message":"try later"}"#.into()),
        p if p.starts_with("/limited/") => (429, r#"{"message":"API rate limit exceeded"}"#.into()),
        p if p.starts_with("/silent/") => (0, String::new()),
        p if p.starts_with("/flood/") => (200, format!("[{}]", "1,".repeat(3 << 20) + "1")),
        _ => (403, r#"{"message":"Resource not accessible by integration"}"#.into()),
    })
    .await;
    let forge = ForgeClient::new(Duration::from_secs(2)).expect("a forge client");
    let token = Token::new("ghp_hidden_token".into());
    let status = CommitStatus {
        sha: SHA,
        state: CommitState::Success,
        context: CONTEXT,
        description: "",
        target_url: None,
    };
    let req = PullRequestRequest { head: "a", base: "main", title: "t", body: "" };
    for (prefix, transient, words) in [
        ("busy", true, "503 Service Unavailable to setting a commit status: try later"),
        ("limited", true, "429 Too Many Requests"),
        ("silent", true, "did not answer within 2s"),
        ("forbidden", false, "403 Forbidden to setting a commit status: Resource not accessible"),
    ] {
        let api = format!("{}/{prefix}", server.url());
        let repo =
            RepoCoordinates::from_repo_url(ForgeProvider::Github, "https://ghe.example/o/r", Some(&api))
                .unwrap();
        let err = forge.set_commit_status(&repo, &token, &status).await.expect_err(prefix);
        let text = err.to_string();
        assert_eq!(err.is_transient(), transient, "{text}");
        assert!(text.contains(&format!("github at {api}")) && text.contains(words), "{text}");
        assert!(
            !text.contains("ghp_hidden_token") && !format!("{err:?}").contains("ghp_hidden_token"),
            "{err:?}"
        );
    }
    // A pull request listing larger than ferry reads: refused, not retried.
    let api = format!("{}/flood", server.url());
    let repo =
        RepoCoordinates::from_repo_url(ForgeProvider::Github, "https://ghe.example/o/r", Some(&api)).unwrap();
    let err = forge.open_pull_request(&repo, &token, &req).await.expect_err("too large");
    assert!(matches!(err, ForgeError::TooLarge { .. }) && !err.is_transient(), "{err}");
}
