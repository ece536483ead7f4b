//! ferry's HTTP server and webhook receiver (issue 6) against a running `ferry run`, the real API
//! server and the real `git http-backend` fixture.
//!
//! Applications here poll Git once an hour, so a new commit that shows up within the test's
//! deadline can only have come through a webhook. A refused webhook must change nothing: its
//! only effect would be the `ferry.dev/reconcile-at` patch, written before the answer, so the
//! annotation is checked right after each answer; the revision is checked too.

use ring::hmac;
use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, HttpResponse, T, TestNamespace, http_get, http_request,
    main_revision, release_applications, wait_until,
};

const RECONCILE_AT: &str = "ferry.dev/reconcile-at";
const GITHUB_KEY: &str = "github-webhook-key";
const GITLAB_KEY: &str = "gitlab-webhook-token";
const SHARED_KEY: &str = "shared-webhook-key";

/// A namespace, a Git repository, the webhook Secret and a ferry with `--webhook-secret`.
struct Hooks {
    ferry: Ferry,
    git: GitServer,
    cluster: Cluster,
    ns: TestNamespace,
}

impl Hooks {
    /// `keys`: the webhook Secret's data; `None` creates no Secret.
    fn new(prefix: &str, keys: Option<&[(&str, &str)]>) -> Hooks {
        let cluster = Cluster::shared().clone();
        cluster.install_crds();
        let ns = cluster.namespace(prefix);
        if let Some(keys) = keys {
            create_secret(&cluster, &ns.name, "hooks", keys);
        }
        let git = GitServer::start();
        let ferry = Ferry::start_with(&cluster, &ns.name, &["--webhook-secret", "hooks"]);
        let hooks = Hooks { ferry, git, cluster, ns };
        hooks.wait_ready();
        hooks
    }

    fn ns(&self) -> &str {
        &self.ns.name
    }

    fn addr(&self) -> String {
        self.ferry.http_address()
    }

    fn wait_ready(&self) {
        let addr = self.addr();
        wait_until("ferry's /readyz to answer 200", T, || {
            let r = http_get(&addr, "/readyz");
            if r.status == 200 { Ok(()) } else { Err(format!("{} {}", r.status, r.body)) }
        });
    }

    /// Commits ConfigMap `settings` with `color` under `app/`; returns the SHA.
    fn commit_color(&self, color: &str) -> String {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {color}\n"
        );
        self.git.commit_files("main", &[("app/settings.yaml", &cm)], &format!("color {color}"))
    }

    /// An Application following branch `main` of the fixture's repository, checking Git once an hour.
    fn create_app(&self, name: &str) -> FerryApp {
        AppBuilder::new(name)
            .namespace(self.ns())
            .repo(&self.git.url())
            .branch("main")
            .path("app")
            .interval("1h")
            .automated(true)
            .prune(true)
            .self_heal(true)
            .create(&self.cluster)
    }

    fn post(&self, provider: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        http_request(&self.addr(), "POST", &format!("/hooks/{provider}"), &all, body)
    }

    fn github(&self, event: &str, key: &str, body: &[u8]) -> HttpResponse {
        let signature = sign(key, body);
        self.post("github", &[("X-GitHub-Event", event), ("X-Hub-Signature-256", &signature)], body)
    }

    fn gitlab(&self, event: &str, token: &str, body: &[u8]) -> HttpResponse {
        self.post("gitlab", &[("X-Gitlab-Event", event), ("X-Gitlab-Token", token)], body)
    }

    fn generic(&self, key: &str, body: &[u8]) -> HttpResponse {
        self.post("generic", &[("X-Ferry-Signature", &sign(key, body))], body)
    }

    fn metrics(&self) -> String {
        let r = http_get(&self.addr(), "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.ferry.stop();
        release_applications(&self.cluster, &self.ns.name);
    }
}

fn create_secret(cluster: &Cluster, ns: &str, name: &str, keys: &[(&str, &str)]) {
    let mut args = vec!["-n".to_string(), ns.to_string(), "create".into(), "secret".into(), "generic".into()];
    args.push(name.to_string());
    args.extend(keys.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.kubectl_ok(&args);
}

/// `sha256=<hex>` of HMAC-SHA256(key, body), as GitHub and ferry's generic format sign.
fn sign(key: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A GitHub push event as github.com sends it (the fields ferry reads, and a few it does not).
fn github_push(clone_url: &str, git_ref: &str, after: &str) -> Vec<u8> {
    let html_url = clone_url.trim_end_matches(".git");
    json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {
            "full_name": "team/repo",
            "clone_url": clone_url,
            "html_url": html_url,
            "ssh_url": "git@github.invalid:team/repo.git",
        },
        "pusher": {"name": "someone"},
        "head_commit": {"id": after, "message": "change"},
    })
    .to_string()
    .into_bytes()
}

/// A GitLab push event whose project names the repository by its web URL (no `.git`) and an
/// SSH URL, not by the URL the Application uses: matching must normalise.
fn gitlab_push(repo_url: &str, git_ref: &str, after: &str) -> Vec<u8> {
    let web_url = repo_url.trim_end_matches(".git");
    json!({
        "object_kind": "push",
        "event_name": "push",
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": after,
        "checkout_sha": after,
        "project": {
            "path_with_namespace": "team/repo",
            "web_url": web_url,
            "git_ssh_url": "git@gitlab.invalid:team/repo.git",
        },
        "commits": [],
    })
    .to_string()
    .into_bytes()
}

fn triggered(r: &HttpResponse) -> Vec<String> {
    let body = r.json();
    let list = body["triggered"].as_array().unwrap_or_else(|| panic!("no triggered list: {body}"));
    list.iter().map(|v| v.as_str().expect("names are strings").to_string()).collect()
}

fn reconcile_at(app: &Value) -> Option<String> {
    app["metadata"]["annotations"][RECONCILE_AT].as_str().map(str::to_string)
}

/// The value of one sample, e.g. `ferry_webhook_requests_total{provider="github",result="accepted"}`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn health_readiness_and_metrics_answer_and_unknown_paths_are_404() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("http");
    let mut ferry = Ferry::start(cluster, &ns.name);
    let addr = ferry.http_address();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");

    let health = http_get(&addr, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    wait_until("/readyz to answer 200", T, || {
        let r = http_get(&addr, "/readyz");
        if r.status == 200 { Ok(r) } else { Err(format!("{} {}", r.status, r.body)) }
    });

    let metrics = http_get(&addr, "/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(metrics.body.lines().any(|l| l.starts_with("# TYPE ferry_")), "{}", metrics.body);
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);

    let missing = http_get(&addr, "/no/such/path");
    assert_eq!(missing.status, 404, "{}", missing.body);

    // No --webhook-secret: webhooks are off, and say how to turn them on.
    let off = http_request(&addr, "POST", "/hooks/github", &[("X-GitHub-Event", "ping")], b"{}");
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(off.json()["error"].as_str().unwrap().contains("--webhook-secret"), "{}", off.body);

    // SIGTERM: the server stops with the controller, and ferry exits cleanly.
    let status = ferry.stop().expect("ferry was running");
    assert!(status.success(), "ferry exited with {status}");
    assert!(std::net::TcpStream::connect(&addr).is_err(), "{addr} still accepts connections after exit");
}

#[test]
fn signed_github_and_gitlab_pushes_make_the_application_pick_up_a_new_commit_at_once() {
    let hooks = Hooks::new("hooks-push", Some(&[("github", GITHUB_KEY), ("gitlab", GITLAB_KEY)]));
    let sha1 = hooks.commit_color("red");
    let app = hooks.create_app("web");
    app.wait_synced(&sha1, T);
    let id = format!("{}/web", hooks.ns());

    // GitHub's ping when the hook is created: answered, nothing triggered.
    let ping = hooks.github("ping", GITHUB_KEY, br#"{"zen":"Keep it logically awesome.","hook_id":1}"#);
    assert_eq!(ping.status, 200, "{}", ping.body);
    assert_eq!(triggered(&ping), Vec::<String>::new());

    // GitHub: a push of main with the Application's own URL.
    let sha2 = hooks.commit_color("green");
    let before = reconcile_at(&app.json());
    let r = hooks.github("push", GITHUB_KEY, &github_push(&hooks.git.url(), "refs/heads/main", &sha2));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(triggered(&r), vec![id.clone()]);
    let stamped = reconcile_at(&app.json());
    assert!(stamped.is_some() && stamped != before, "reconcile-at was not stamped: {stamped:?}");
    app.wait_synced(&sha2, T);
    let cm = crate::support::get_json(&hooks.cluster, &["-n", hooks.ns(), "get", "configmap", "settings"]);
    assert_eq!(cm.expect("ConfigMap settings")["data"]["color"], "green");

    // GitLab: a push of main naming the repository by web URL and SSH URL only.
    let sha3 = hooks.commit_color("blue");
    let r = hooks.gitlab("Push Hook", GITLAB_KEY, &gitlab_push(&hooks.git.url(), "refs/heads/main", &sha3));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(triggered(&r), vec![id.clone()]);
    let status = app.wait_synced(&sha3, T);
    assert_eq!(status["status"]["sync"]["revision"], main_revision(&sha3));

    // The accepted push is logged with the repository, the ref and what it triggered.
    hooks.ferry.wait_for_log("an info line for the accepted GitLab push", 0, T, |l| {
        l.contains("push accepted")
            && l.contains("provider=\"gitlab\"")
            && l.contains("refs/heads/main")
            && l.contains(&id)
    });
    let logs = hooks.ferry.logs();
    assert!(!logs.contains(GITHUB_KEY) && !logs.contains(GITLAB_KEY), "a webhook key reached the log");

    let metrics = hooks.metrics();
    for provider in ["github", "gitlab"] {
        let series = format!("ferry_webhook_requests_total{{provider=\"{provider}\",result=\"accepted\"}}");
        assert_eq!(sample(&metrics, &series), 1.0, "{series} in:\n{metrics}");
    }
}

#[test]
fn refused_webhooks_change_nothing() {
    // One shared key (`token`) serves all three providers.
    let hooks = Hooks::new("hooks-refused", Some(&[("token", SHARED_KEY)]));
    let sha1 = hooks.commit_color("red");
    let app = hooks.create_app("web");
    app.wait_synced(&sha1, T);
    let url = hooks.git.url();

    // The webhook path works in this very setup: a signed generic push is picked up at once.
    let sha2 = hooks.commit_color("green");
    let body = json!({"repoURL": url, "ref": "refs/heads/main"}).to_string();
    let r = hooks.generic(SHARED_KEY, body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(triggered(&r), vec![format!("{}/web", hooks.ns())]);
    app.wait_synced(&sha2, T);

    // A new commit that only a webhook could bring in; everything below must leave it out.
    let sha3 = hooks.commit_color("blue");
    let stamp = reconcile_at(&app.json()).expect("the generic push stamped reconcile-at");
    let push = github_push(&url, "refs/heads/main", &sha3);
    let unchanged = |what: &str| {
        let now = app.json();
        assert_eq!(reconcile_at(&now).as_ref(), Some(&stamp), "{what} stamped reconcile-at");
        assert_eq!(now["status"]["sync"]["revision"], main_revision(&sha2), "{what} moved the revision");
    };
    let error_of = |r: &HttpResponse| r.json()["error"].as_str().unwrap_or_default().to_string();

    let wrong = hooks.github("push", "not-the-key", &push);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(error_of(&wrong).contains("X-Hub-Signature-256"), "{}", wrong.body);
    unchanged("a GitHub push with a wrong signature");

    let missing = hooks.post("github", &[("X-GitHub-Event", "push")], &push);
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert!(error_of(&missing).contains("missing X-Hub-Signature-256"), "{}", missing.body);
    unchanged("a GitHub push without a signature");

    let gitlab = gitlab_push(&url, "refs/heads/main", &sha3);
    let wrong = hooks.gitlab("Push Hook", "not-the-token", &gitlab);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    unchanged("a GitLab push with a wrong token");
    let missing = hooks.post("gitlab", &[("X-Gitlab-Event", "Push Hook")], &gitlab);
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert!(error_of(&missing).contains("missing X-Gitlab-Token"), "{}", missing.body);
    unchanged("a GitLab push without a token");

    let generic = json!({"repoURL": url}).to_string();
    let tampered =
        hooks.post("generic", &[("X-Ferry-Signature", &sign(SHARED_KEY, b"{}"))], generic.as_bytes());
    assert_eq!(tampered.status, 401, "{}", tampered.body);
    unchanged("a generic push signed for another body");

    // Correctly signed, but for a repository no Application follows: 202, nothing triggered.
    let elsewhere = github_push("https://git.example.com/team/other.git", "refs/heads/main", &sha3);
    let unknown = hooks.github("push", SHARED_KEY, &elsewhere);
    assert_eq!(unknown.status, 202, "{}", unknown.body);
    assert_eq!(triggered(&unknown), Vec::<String>::new());
    unchanged("a push of an unknown repository");

    // Correctly signed, the right repository, another branch: 202, nothing triggered.
    let other_branch = hooks.github("push", SHARED_KEY, &github_push(&url, "refs/heads/dev", &sha3));
    assert_eq!(other_branch.status, 202, "{}", other_branch.body);
    assert_eq!(triggered(&other_branch), Vec::<String>::new());
    unchanged("a push of another branch");

    // Over 1 MiB: refused before anything is checked.
    let mut big = push.clone();
    big.truncate(big.len() - 1);
    big.extend(format!(r#","padding":"{}"}}"#, "x".repeat(1024 * 1024)).bytes());
    let too_large = hooks.github("push", SHARED_KEY, &big);
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    unchanged("an oversized body");

    // Correctly signed, but not JSON.
    let malformed = br#"{"ref": "refs/heads/main", "repository": {"clone_url": "#;
    let bad = hooks.github("push", SHARED_KEY, malformed);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(error_of(&bad).contains("not valid JSON"), "{}", bad.body);
    let bad = hooks.generic(SHARED_KEY, b"repoURL=x");
    assert_eq!(bad.status, 400, "{}", bad.body);
    unchanged("malformed JSON");

    // Every refusal is counted.
    let metrics = hooks.metrics();
    for (provider, result, count) in [
        ("github", "unauthorized", 2.0),
        ("gitlab", "unauthorized", 2.0),
        ("generic", "unauthorized", 1.0),
        ("github", "ignored", 2.0),
        ("github", "too_large", 1.0),
        ("github", "bad_request", 1.0),
        ("generic", "bad_request", 1.0),
        ("generic", "accepted", 1.0),
    ] {
        let series = format!("ferry_webhook_requests_total{{provider=\"{provider}\",result=\"{result}\"}}");
        assert_eq!(sample(&metrics, &series), count, "{series} in:\n{metrics}");
    }
    let logs = hooks.ferry.logs();
    assert!(!logs.contains(SHARED_KEY), "the webhook key reached the log");
    assert!(!logs.contains(&sign(SHARED_KEY, &push)), "a signature reached the log");

    // And the same push, correctly signed, still brings the commit in.
    let r = hooks.github("push", SHARED_KEY, &push);
    assert_eq!(r.status, 202, "{}", r.body);
    app.wait_synced(&sha3, T);
}

#[test]
fn a_missing_webhook_secret_refuses_webhooks_until_it_is_created() {
    let hooks = Hooks::new("hooks-nosecret", None);
    let body = json!({"repoURL": "https://git.example.com/team/repo.git"}).to_string();
    let r = hooks.generic(SHARED_KEY, body.as_bytes());
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("no webhook secret"), "{}", r.body);
    // The log reader thread may not have the line yet when the answer arrives: wait for it.
    let missing = format!("{}/hooks does not exist", hooks.ns());
    hooks.ferry.wait_for_log("a warning naming the missing Secret", 0, T, |l| {
        l.contains("WARN") && l.contains(&missing)
    });

    // The Secret is watched: once it exists, the same request is accepted (no Application
    // follows that repository, so nothing is triggered).
    create_secret(&hooks.cluster, hooks.ns(), "hooks", &[("generic", SHARED_KEY)]);
    let accepted = wait_until("the webhook Secret to be picked up", T, || {
        let r = hooks.generic(SHARED_KEY, body.as_bytes());
        if r.status == 202 { Ok(r) } else { Err(format!("{} {}", r.status, r.body)) }
    });
    assert_eq!(triggered(&accepted), Vec::<String>::new());
}
