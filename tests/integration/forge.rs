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
