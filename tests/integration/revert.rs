//! Rollback by Git revert (issue 24): a canary whose analysis fails makes ferry write a revert
//! of the failed revision to the branch, limited to the Application's path; the cluster then
//! converges to the reverted revision as to any commit. A branch that moved on in a conflicting
//! way is never forced: `RevertConflict`, or a pull request when a forge is configured. Against
//! the real control plane, a real Git server (pushes over HTTP), a real Gitea (pull requests
//! through its API) and a real Prometheus.

use serde_json::{Value, json};

use crate::rollout::{ERROR_QUERY, Exporter, analysis_step};
use crate::support::{
    FerryApp, GITEA_ADMIN, Gitea, Prometheus, Scenario, T, deployment, get_json, main_revision, wait_until,
};

/// A scenario whose ferry asks Prometheus, which scrapes an exporter the test sets.
struct Failing {
    s: Scenario,
    exporter: Exporter,
    prometheus: Prometheus,
}

impl Failing {
    fn new(prefix: &str) -> Failing {
        let exporter = Exporter::start();
        let prometheus = Prometheus::start(std::slice::from_ref(&exporter.addr));
        let s = Scenario::with_ferry_args(prefix, &["--prometheus-url", &prometheus.url()]);
        // Credentials that may push: the scenario's server takes any, ferry must send them.
        s.kubectl_ok(&[
            "-n",
            s.ns(),
            "create",
            "secret",
            "generic",
            "push",
            "--from-literal=username=ferry-bot",
            "--from-literal=password=push-secret-123",
        ]);
        Failing { s, exporter, prometheus }
    }

    fn set_error_ratio(&self, value: f64) {
        self.exporter.set(Some(value));
        let query = ERROR_QUERY.replace("{{variant}}", "canary");
        wait_until(&format!("Prometheus to see error ratio {value}"), T, || {
            let data = self.prometheus.query(&query)?;
            let seen = data["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if seen == Some(value) { Ok(()) } else { Err(format!("Prometheus answers {data}")) }
        });
    }

    fn commit_shop(&self, tag: &str, extra: &[(&str, &str)]) -> String {
        let mut files = vec![(
            "app/deployment.yaml".to_string(),
            deployment("shop", None, &format!("registry.example/shop:{tag}"), 3),
        )];
        files.extend(extra.iter().map(|(p, c)| (p.to_string(), c.to_string())));
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        self.s.git.commit_files("main", &refs, &format!("shop {tag}"))
    }

    fn create_app(&self, steps: Value) -> FerryApp {
        let app = self
            .s
            .application("shop")
            .interval("1m")
            .prune(true)
            .canary("shop", steps)
            .git_revert(json!({"secretRef": {"name": "push"}}));
        self.s.create_app(app)
    }

    fn image(&self) -> String {
        get_json(&self.s.cluster, &["-n", self.s.ns(), "get", "deployment", "shop"])
            .map(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    }
}

fn revert_of(app: &Value) -> &Value {
    &app["status"]["revert"]
}

#[test]
fn a_failed_canary_is_reverted_in_git_under_its_path_and_the_cluster_follows() {
    let f = Failing::new("revert-direct");
    let v1 = f.commit_shop("1.0", &[("other/notes.txt", "one\n")]);
    let app = f.create_app(json!([{"setWeight": 34}, analysis_step("result < 0.05", 1)]));
    app.wait_synced(&v1, T);
    f.set_error_ratio(0.5);

    // The failed revision also changes a file outside the Application's path.
    let v2 = f.commit_shop("2.0", &[("other/notes.txt", "two\n")]);
    app.ferry_sync();
    let a = app.wait("the revert of the failed revision", T, |a| {
        let r = revert_of(a);
        if r["phase"] == "Pushed" { Ok(a.clone()) } else { Err(format!("revert: {r}")) }
    });
    let r = revert_of(&a);
    assert_eq!(r["failedRevision"], main_revision(&v2), "{r}");
    assert_eq!(r["goodRevision"], main_revision(&v1), "{r}");
    let v3 = r["commit"].as_str().expect("the revert commit").to_string();

    // One commit on top of the failed one, by ferry, saying what and why.
    assert_eq!(f.s.git.head("main"), v3);
    assert_eq!(f.s.git.bare_git(&["rev-parse", &format!("{v3}^")]), v2);
    assert_eq!(f.s.git.bare_git(&["log", "-1", "--format=%an <%ae>", &v3]), "ferry <ferry@ferry.dev>");
    let message = f.s.git.bare_git(&["log", "-1", "--format=%B", &v3]);
    let parts =
        [format!("{}/shop", f.s.ns()), main_revision(&v2), main_revision(&v1), "rollout aborted".into()];
    for part in &parts {
        assert!(message.contains(part), "{part:?} missing from the commit message:\n{message}");
    }
    // Only the path is reverted: app/ is v1's again, other/ keeps v2's change.
    assert_eq!(f.s.git.bare_git(&["diff", "--name-only", &v1, &v3, "--", "app"]), "");
    assert_eq!(f.s.git.bare_git(&["show", &format!("{v3}:other/notes.txt")]), "two");
    assert_eq!(f.s.git.bare_git(&["diff", "--name-only", &v2, &v3]), "app/deployment.yaml");

    // Git drives the cluster back: the revert is synced, the stable stays on 1.0.
    let a = app.wait_synced(&v3, T);
    assert_eq!(f.image(), "registry.example/shop:1.0", "{}", a["status"]);
    app.wait_event("Normal", "GitReverted", &[&v2[..12], &v1[..12]], T);
    let metrics = crate::support::metric(&f.s.ferry, "ferry_git_reverts_total{result=\"pushed\"}");
    assert_eq!(metrics, 1.0);

    // Steady state: more reconciles write no second revert.
    let before = crate::support::reconciles(&f.s.ferry);
    app.ferry_sync();
    wait_until("another reconcile", T, || {
        let now = crate::support::reconciles(&f.s.ferry);
        if now > before { Ok(()) } else { Err(format!("{now} reconciles")) }
    });
    assert_eq!(f.s.git.head("main"), v3, "a second revert was written");
    // The push credentials never show.
    let shown = format!("{}{}", app.json(), f.s.ferry.logs());
    assert!(!shown.contains("push-secret-123"), "the push password leaked");
}

#[test]
fn a_branch_that_moved_on_in_conflict_is_reported_never_forced() {
    let f = Failing::new("revert-conflict");
    let v1 = f.commit_shop("1.0", &[]);
    // The rollout waits for a person before its analysis, so the branch can move meanwhile.
    let app = f.create_app(json!([{"setWeight": 34}, {"pause": {}}, analysis_step("result < 0.05", 1)]));
    app.wait_synced(&v1, T);
    f.set_error_ratio(0.5);

    let v2 = f.commit_shop("2.0", &[]);
    app.ferry_sync();
    app.wait("the rollout of the failed revision to pause", T, |a| {
        let r = &a["status"]["rollout"];
        let ours = a["status"]["lastAttemptedRevision"] == main_revision(&v2);
        if ours && r["phase"] == "Paused" { Ok(()) } else { Err(format!("rollout: {r}")) }
    });
    // Someone changes the same line before ferry reverts; then the analysis fails.
    let moved = f.commit_shop("2.1", &[]);
    crate::support::ferry_cli(&f.s.cluster, &["promote", "shop", "-n", f.s.ns()]);
    let a = app.wait("the revert to conflict", T, |a| {
        let r = revert_of(a);
        if r["phase"] == "Conflict" { Ok(a.clone()) } else { Err(format!("revert: {r}")) }
    });
    let r = revert_of(&a);
    assert!(r["message"].as_str().unwrap_or_default().contains("app/deployment.yaml"), "{r}");
    assert_eq!(f.s.git.head("main"), moved, "the branch was written despite the conflict");
    app.wait_event("Warning", "RevertConflict", &["app/deployment.yaml"], T);
}

/// The shop Deployment at `tag`, committed to `app/` of the Gitea repository `shop`.
fn commit_to_gitea(gitea: &Gitea, tag: &str) -> String {
    let manifest = deployment("shop", None, &format!("registry.example/shop:{tag}"), 3);
    gitea.commit_files("shop", "main", &[("app/deployment.yaml", &manifest)], &format!("shop {tag}"))
}

/// An Application following `app/` of the Gitea repository with a failing-capable canary and
/// `gitRevert` of `mode` through Gitea's API; the Secret holds the admin's token.
fn gitea_app(f: &Failing, gitea: &Gitea, mode: &str, steps: Value) -> FerryApp {
    f.s.kubectl_ok(&[
        "-n",
        f.s.ns(),
        "create",
        "secret",
        "generic",
        "gitea-push",
        &format!("--from-literal=username={GITEA_ADMIN}"),
        &format!("--from-literal=password={}", gitea.token()),
    ]);
    let write = json!({"secretRef": {"name": "gitea-push"}, "mode": mode,
        "forge": {"provider": "gitea", "apiURL": gitea.api_url()}});
    let app = (f.s.application("shop").repo(&gitea.clone_url("shop")))
        .secret_ref("gitea-push")
        .interval("1m")
        .prune(true)
        .canary("shop", steps)
        .git_revert(write);
    f.s.create_app(app)
}

/// The one open pull request of `shop`, waiting for it.
fn open_pull_request(gitea: &Gitea) -> Value {
    wait_until("one open pull request", T, || match gitea.pull_requests("shop", "open").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{} open pull requests", other.len())),
    })
}

#[test]
fn in_pull_request_mode_the_revert_is_proposed_on_gitea_and_the_branch_left_alone() {
    let f = Failing::new("revert-pr");
    let gitea = Gitea::start();
    gitea.create_repo("shop", false);
    let v1 = commit_to_gitea(&gitea, "1.0");
    let app =
        gitea_app(&f, &gitea, "PullRequest", json!([{"setWeight": 34}, analysis_step("result < 0.05", 1)]));
    app.wait_synced(&v1, T);
    f.set_error_ratio(0.5);

    let v2 = commit_to_gitea(&gitea, "2.0");
    app.ferry_sync();
    let a = app.wait("the revert's pull request", T, |a| {
        let r = revert_of(a);
        if r["phase"] == "PullRequestOpened" { Ok(a.clone()) } else { Err(format!("revert: {r}")) }
    });
    let pr = open_pull_request(&gitea);
    assert_eq!(pr["base"]["ref"], "main", "{pr}");
    let head = pr["head"]["ref"].as_str().unwrap_or_default();
    assert!(head.starts_with("ferry/revert/shop-"), "{pr}");
    assert_eq!(revert_of(&a)["pullRequest"], pr["html_url"], "{}", revert_of(&a));
    assert!(pr["title"].as_str().unwrap_or_default().contains(&v2[..12]), "{pr}");
    assert!(pr["body"].as_str().unwrap_or_default().contains(&main_revision(&v1)), "{pr}");
    let number = pr["number"].as_u64().expect("a pull request number");
    assert_eq!(gitea.pull_request_files("shop", number), ["app/deployment.yaml"]);
    assert!(gitea.pull_request_diff("shop", number).contains("+        image: registry.example/shop:1.0"));
    // The tracked branch is not written: a person merges.
    assert_eq!(gitea.branch_head("shop", "main").as_deref(), Some(v2.as_str()));
    assert_eq!(
        gitea.read_file("shop", head, "app/deployment.yaml"),
        Some(deployment("shop", None, "registry.example/shop:1.0", 3))
    );
    app.wait_event("Normal", "GitReverted", &[pr["html_url"].as_str().unwrap_or("?")], T);
    let shown = format!("{}{}", app.json(), f.s.ferry.logs());
    assert!(!shown.contains(gitea.token()), "the Gitea token leaked");
}

#[test]
fn in_direct_mode_a_conflicting_revert_becomes_a_pull_request_when_a_forge_is_set() {
    let f = Failing::new("revert-conflict-pr");
    let gitea = Gitea::start();
    gitea.create_repo("shop", false);
    let v1 = commit_to_gitea(&gitea, "1.0");
    let steps = json!([{"setWeight": 34}, {"pause": {}}, analysis_step("result < 0.05", 1)]);
    let app = gitea_app(&f, &gitea, "Direct", steps);
    app.wait_synced(&v1, T);
    f.set_error_ratio(0.5);

    let v2 = commit_to_gitea(&gitea, "2.0");
    app.ferry_sync();
    app.wait("the rollout of the failed revision to pause", T, |a| {
        let ours = a["status"]["lastAttemptedRevision"] == main_revision(&v2);
        let r = &a["status"]["rollout"];
        if ours && r["phase"] == "Paused" { Ok(()) } else { Err(format!("rollout: {r}")) }
    });
    let moved = commit_to_gitea(&gitea, "2.1");
    crate::support::ferry_cli(&f.s.cluster, &["promote", "shop", "-n", f.s.ns()]);
    app.wait("the conflicting revert to be proposed", T, |a| {
        let r = revert_of(a);
        if r["phase"] == "PullRequestOpened" { Ok(()) } else { Err(format!("revert: {r}")) }
    });
    let pr = open_pull_request(&gitea);
    // Made on the failed revision, where it applies: the pull request shows the conflict.
    let head = pr["head"]["ref"].as_str().unwrap_or_default();
    assert_eq!(
        gitea.read_file("shop", head, "app/deployment.yaml"),
        Some(deployment("shop", None, "registry.example/shop:1.0", 3))
    );
    assert_eq!(gitea.branch_head("shop", "main").as_deref(), Some(moved.as_str()), "main was forced");
}

/// A PostSync Job (`ferry.dev/hook: PostSync`): done at once, or never scheduled (`fails`), so it
/// fails at its 3 s deadline.
fn verify_job(fails: bool) -> String {
    let pod = if fails { "      nodeSelector: {ferry.dev/no-such-node: \"true\"}\n" } else { "" };
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: verify-\n  annotations: {{ferry.dev/hook: PostSync}}\nspec:\n  backoffLimit: 0\n  activeDeadlineSeconds: 3\n  template:\n    spec:\n      restartPolicy: Never\n{pod}      containers:\n      - name: run\n        image: registry.example/tools:1\n"
    )
}

#[test]
fn a_failed_post_sync_verification_is_reverted_too() {
    let s = Scenario::new("revert-verify");
    s.kubectl_ok(&[
        "-n",
        s.ns(),
        "create",
        "secret",
        "generic",
        "push",
        "--from-literal=username=ferry-bot",
        "--from-literal=password=push-secret-123",
    ]);
    let config = |v: &str| crate::support::configmap("settings", None, &[("version", v)]);
    let v1 = s.commit(&[("config.yaml", config("1")), ("verify.yaml", verify_job(false))], "v1");
    let app = s.create_app(s.default_app("web").git_revert(json!({"secretRef": {"name": "push"}})));
    app.wait("v1 verified", T, |a| {
        let verified = a["status"]["verifiedRevision"] == main_revision(&v1);
        if verified { Ok(()) } else { Err(format!("status: {}", a["status"]["verification"])) }
    });

    let v2 =
        s.commit(&[("config.yaml", config("2")), ("verify.yaml", verify_job(true))], "v2: fails its check");
    app.ferry_sync();
    let a = app.wait("the revert of the revision that failed verification", T, |a| {
        let r = revert_of(a);
        if r["phase"] == "Pushed" { Ok(a.clone()) } else { Err(format!("revert: {r}")) }
    });
    let r = revert_of(&a);
    assert_eq!(r["failedRevision"], main_revision(&v2), "{r}");
    assert!(r["message"].as_str().unwrap_or_default().contains(&v1[..12]), "{r}");
    let v3 = r["commit"].as_str().expect("the revert commit").to_string();
    assert_eq!(s.git.head("main"), v3);
    assert!(s.git.show(&v3).contains("verification failed"), "the message gives the reason");
    // The revert is deployed and verifies: the cluster is v1's again.
    app.wait("the revert verified", T, |a| {
        let verified = a["status"]["verifiedRevision"] == main_revision(&v3);
        if verified { Ok(()) } else { Err(format!("status: {}", a["status"]["verification"])) }
    });
    assert_eq!(s.cm_value("settings", "version").as_deref(), Some("1"));
}
