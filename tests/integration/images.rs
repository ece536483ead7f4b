//! Image update automation (issue 24): an ImagePolicy follows an image repository in a real
//! OCI registry (CNCF distribution, images pushed by the real `crane`), and when a new tag
//! within its semver range appears, ferry commits it to the line carrying the policy's setter
//! marker in the Application's repository (a real Git server, pushed to over HTTP), then the
//! Application deploys it. Tags outside the range, and scans that find nothing new, write
//! nothing.

use serde_json::Value;

use crate::support::{
    FerryApp, GITEA_ADMIN, Gitea, OciRegistry, Scenario, T, deployment, get_json, metric, wait_until,
};

const PUSH_PASSWORD: &str = "image-push-secret-481";

struct Images {
    s: Scenario,
    registry: OciRegistry,
}

impl Images {
    fn new(prefix: &str) -> Images {
        Images::with_registry(prefix, OciRegistry::start())
    }

    fn with_registry(prefix: &str, registry: OciRegistry) -> Images {
        let s = Scenario::new(prefix);
        s.kubectl_ok(&[
            "-n",
            s.ns(),
            "create",
            "secret",
            "generic",
            "push",
            "--from-literal=username=ferry-bot",
            &format!("--from-literal=password={PUSH_PASSWORD}"),
        ]);
        Images { s, registry }
    }

    fn image(&self) -> String {
        format!("{}/team/web", self.registry.host())
    }

    fn marked_deployment(&self, tag: &str) -> String {
        let marker = format!(r#"{} # {{"$imagepolicy": "{}:web"}}"#, self.image_ref(tag), self.s.ns());
        deployment("web", None, &marker, 1)
    }

    fn image_ref(&self, tag: &str) -> String {
        format!("{}:{tag}", self.image())
    }

    /// Pushes `team/web:<tag>`; returns its digest.
    fn push(&self, tag: &str) -> String {
        self.registry.crane_push_image(&format!("team/web:{tag}"), &format!("web {tag}\n"))
    }

    fn create_policy(&self, range: &str, mode: &str) {
        self.create_policy_with(range, mode, "", "");
    }

    /// `extra`: more spec fields, indented by two spaces; `write`: more fields of
    /// `update.write`, indented by six (with a `secretRef`, it replaces `push`).
    fn create_policy_with(&self, range: &str, mode: &str, extra: &str, write: &str) {
        let secret = if write.contains("secretRef") { "" } else { "      secretRef:\n        name: push\n" };
        let yaml = format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: web
  namespace: {ns}
spec:
  image: {image}
  insecure: true
  interval: 1s
  policy:
    semver:
      range: "{range}"
  update:
    applicationRef:
      name: web
    write:
{secret}      mode: {mode}
{write}{extra}"#,
            ns = self.s.ns(),
            image = self.image(),
        );
        self.s.cluster.apply(&yaml);
    }

    fn policy(&self) -> Value {
        get_json(&self.s.cluster, &["-n", self.s.ns(), "get", "imagepolicy", "web"]).unwrap_or(Value::Null)
    }

    fn wait_policy<T>(&self, what: &str, mut check: impl FnMut(&Value) -> Option<T>) -> T {
        wait_until(&format!("ImagePolicy web: {what}"), T, || {
            let p = self.policy();
            check(&p).ok_or_else(|| format!("status: {}", p["status"]))
        })
    }

    fn deployed_image(&self) -> String {
        get_json(&self.s.cluster, &["-n", self.s.ns(), "get", "deployment", "web"])
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().map(str::to_string)
            })
            .unwrap_or_default()
    }

    fn scans(&self) -> f64 {
        metric(&self.s.ferry, r#"ferry_image_scans_total{result="success"}"#)
    }

    /// Waits until ferry has finished `n` more successful scans than now.
    fn wait_scans(&self, n: f64) {
        let start = self.scans();
        wait_until(&format!("{n} more image scans"), T, || {
            let now = self.scans();
            if now >= start + n { Ok(()) } else { Err(format!("{now} scans, from {start}")) }
        });
    }

    fn create_app(&self) -> FerryApp {
        self.s.create_app(self.s.default_app("web"))
    }

    /// The policy's Events, as `kubectl get events` lists them (JSON).
    fn events(&self) -> String {
        self.s.kubectl_ok(&["-n", self.s.ns(), "get", "events", "-o", "json"])
    }
}

fn ready(p: &Value) -> Option<&Value> {
    p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

#[test]
fn a_new_tag_in_range_is_committed_to_the_marked_line_and_deployed() {
    let t = Images::new("images-direct");
    t.push("1.0.0");
    let v1 = t.s.commit(&[("deployment.yaml", t.marked_deployment("1.0.0"))], "web 1.0.0");
    let app = t.create_app();
    app.wait_synced(&v1, T);
    assert_eq!(t.deployed_image(), t.image_ref("1.0.0"));

    t.create_policy(">=1.0.0", "Direct");
    t.wait_policy("latest 1.0.0, Ready", |p| {
        (p["status"]["latestRef"] == t.image_ref("1.0.0") && ready(p)?["status"] == "True").then_some(())
    });
    // Already at the latest: nothing written.
    assert_eq!(t.s.git.head("main"), v1);

    // A pre-release outside the range: listed, not chosen, nothing written.
    t.push("2.0.0-rc.1");
    t.wait_policy("2 tags listed", |p| (p["status"]["tags"] == 2).then_some(()));
    assert_eq!(t.policy()["status"]["latestRef"], t.image_ref("1.0.0"));
    assert_eq!(t.s.git.head("main"), v1);

    t.push("1.1.0");
    let update = t.wait_policy("the update to 1.1.0 written", |p| {
        let u = &p["status"]["lastUpdate"];
        (u["image"] == t.image_ref("1.1.0")).then(|| u.clone())
    });
    let v2 = update["commit"].as_str().expect("the commit").to_string();
    assert_eq!(update["branch"], "main");

    // Exactly one commit, by ferry, on top of v1, changing exactly the marked line.
    assert_eq!(t.s.git.head("main"), v2);
    assert_eq!(t.s.git.bare_git(&["rev-parse", &format!("{v2}^")]), v1);
    assert_eq!(t.s.git.bare_git(&["log", "-1", "--format=%an <%ae>", &v2]), "ferry <ferry@ferry.dev>");
    let message = t.s.git.bare_git(&["log", "-1", "--format=%B", &v2]);
    let line = format!("{} 1.0.0 -> 1.1.0", t.image());
    assert!(message.starts_with("ferry: update image"), "{message}");
    assert!(message.contains(&line) && message.contains(&format!("{}/web", t.s.ns())), "{message}");
    assert_eq!(t.s.git.bare_git(&["diff", "--name-only", &v1, &v2]), "app/deployment.yaml");
    let before = t.s.git.bare_git(&["show", &format!("{v1}:app/deployment.yaml")]);
    let after = t.s.git.bare_git(&["show", &format!("{v2}:app/deployment.yaml")]);
    let expected = before.replace(&t.image_ref("1.0.0"), &t.image_ref("1.1.0"));
    assert_eq!(after, expected);
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");

    // ferry deploys it (the Application is woken, not left to its 1m interval).
    app.wait_synced(&v2, T);
    assert_eq!(t.deployed_image(), t.image_ref("1.1.0"));
    let p = t.policy();
    assert_eq!(ready(&p).map(|c| c["status"].clone()), Some("True".into()), "{}", p["status"]);

    // Steady state: more scans, no new commit, the same record.
    t.wait_scans(3.0);
    assert_eq!(t.s.git.head("main"), v2);
    assert_eq!(t.policy()["status"]["lastUpdate"], update);
    assert_eq!(metric(&t.s.ferry, r#"ferry_image_updates_total{result="committed"}"#), 1.0);

    // The push password reaches no log, Event or status.
    let events = t.events();
    assert!(events.contains("ImageUpdated"), "no ImageUpdated Event: {events}");
    for (what, text) in [("logs", t.s.ferry.logs()), ("events", events), ("status", t.policy().to_string())] {
        assert!(!text.contains(PUSH_PASSWORD), "the push password is in ferry's {what}");
    }
}

#[test]
fn no_matching_tag_is_reported_and_writes_nothing() {
    let t = Images::new("images-nomatch");
    t.push("1.0.0");
    let v1 = t.s.commit(&[("deployment.yaml", t.marked_deployment("1.0.0"))], "web 1.0.0");
    let app = t.create_app();
    app.wait_synced(&v1, T);
    t.create_policy(">=3.0.0", "Direct");
    t.wait_policy("Ready False NoMatchingTag", |p| {
        let c = ready(p)?;
        (c["status"] == "False" && c["reason"] == "NoMatchingTag").then_some(())
    });
    assert_eq!(t.s.git.head("main"), v1);
}

/// A registry behind basic auth, read through a `.dockerconfigjson` Secret; a Kustomize
/// `images:` entry whose `newName` and `newTag` carry the `:name` and `:tag` markers; digests
/// pinned: the tag written is `tag@sha256:...` and the Deployment runs exactly that image.
#[test]
fn kustomize_image_entries_with_pinned_digests_from_a_private_registry() {
    use base64::Engine;
    let t =
        Images::with_registry("images-kustomize", OciRegistry::start_with_auth("puller", "reg-pass-9271"));
    t.push("1.0.0");
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:reg-pass-9271");
    let config = format!(r#"{{"auths": {{"http://{}": {{"auth": "{auth}"}}}}}}"#, t.registry.host());
    t.s.kubectl_ok(&[
        "-n",
        t.s.ns(),
        "create",
        "secret",
        "generic",
        "registry",
        "--type=kubernetes.io/dockerconfigjson",
        &format!("--from-literal=.dockerconfigjson={config}"),
    ]);
    let ns = t.s.ns();
    let kustomization = format!(
        "resources:\n- deployment.yaml\nimages:\n- name: web\n  newName: \"old/web\" # {{\"$imagepolicy\": \"{ns}:web:name\"}}\n  \
         newTag: 1.0.0 # {{\"$imagepolicy\": \"{ns}:web:tag\"}}\n"
    );
    let v1 = t.s.commit(
        &[
            ("kustomization.yaml", kustomization.clone()),
            ("deployment.yaml", deployment("web", None, "web", 1)),
        ],
        "web via kustomize",
    );
    let app = t.create_app();
    app.wait_synced(&v1, T);
    assert_eq!(t.deployed_image(), "old/web:1.0.0");

    let digest = t.push("1.1.0");
    t.create_policy_with(">=1.0.0", "Direct", "  secretRef:\n    name: registry\n  pinDigest: true\n", "");
    let update = t.wait_policy("the pinned update written", |p| {
        let u = &p["status"]["lastUpdate"];
        (u["image"] == format!("{}@{digest}", t.image_ref("1.1.0"))).then(|| u.clone())
    });
    let p = t.policy();
    assert_eq!(p["status"]["latestDigest"], digest.as_str(), "{}", p["status"]);
    let v2 = update["commit"].as_str().expect("the commit").to_string();
    let after = t.s.git.bare_git(&["show", &format!("{v2}:app/kustomization.yaml")]);
    let expected = kustomization
        .replace("\"old/web\"", &format!("\"{}\"", t.image()))
        .replace("newTag: 1.0.0", &format!("newTag: 1.1.0@{digest}"));
    assert_eq!(format!("{after}\n"), expected);
    app.wait_synced(&v2, T);
    assert_eq!(t.deployed_image(), format!("{}:1.1.0@{digest}", t.image()));
    let status = t.policy().to_string();
    assert!(!status.contains("reg-pass-9271") && !t.s.ferry.logs().contains("reg-pass-9271"));
}

/// Mode PullRequest against a real Gitea: the update is pushed to ferry's own branch and
/// proposed as one pull request (found again, not duplicated, on later scans); the tracked
/// branch is untouched.
#[test]
fn pull_request_mode_proposes_the_update_on_gitea() {
    let t = Images::new("images-pr");
    let gitea = Gitea::start();
    gitea.create_repo("web", true);
    let v1 = gitea.commit_files(
        "web",
        "main",
        &[("app/deployment.yaml", &t.marked_deployment("1.0.0"))],
        "web 1.0.0",
    );
    t.push("1.0.0");
    let app = t.s.create_app(t.s.default_app("web").repo(&gitea.clone_url("web")));
    app.wait_synced(&v1, T);
    let token = gitea.token().to_string();
    t.s.kubectl_ok(&[
        "-n",
        t.s.ns(),
        "create",
        "secret",
        "generic",
        "gitea",
        &format!("--from-literal=username={GITEA_ADMIN}"),
        &format!("--from-literal=password={token}"),
    ]);
    let write = format!(
        "      secretRef:\n        name: gitea\n      forge:\n        provider: gitea\n        apiURL: {}\n",
        gitea.api_url()
    );
    t.create_policy_with(">=1.0.0", "PullRequest", "", &write);
    t.wait_policy("latest 1.0.0", |p| (p["status"]["latestRef"] == t.image_ref("1.0.0")).then_some(()));

    t.push("1.1.0");
    let update = t.wait_policy("the pull request recorded", |p| {
        let u = &p["status"]["lastUpdate"];
        (u["image"] == t.image_ref("1.1.0") && u["pullRequest"].is_string()).then(|| u.clone())
    });
    let branch = format!("ferry/image-update/{}-web", t.s.ns());
    assert_eq!(update["branch"], branch.as_str());
    let open = gitea.pull_requests("web", "open");
    assert_eq!(open.len(), 1, "{open:?}");
    let pr = &open[0];
    assert_eq!(
        (pr["head"]["ref"].as_str(), pr["base"]["ref"].as_str()),
        (Some(branch.as_str()), Some("main"))
    );
    assert_eq!(update["pullRequest"], pr["html_url"]);
    let number = pr["number"].as_u64().expect("a number");
    assert_eq!(gitea.pull_request_files("web", number), vec!["app/deployment.yaml".to_string()]);
    let proposed = gitea.read_file("web", &branch, "app/deployment.yaml").expect("the proposed file");
    assert_eq!(proposed, t.marked_deployment("1.0.0").replace(&t.image_ref("1.0.0"), &t.image_ref("1.1.0")));
    // The tracked branch is untouched until a person merges; nothing deploys meanwhile.
    assert_eq!(gitea.branch_head("web", "main").as_deref(), Some(v1.as_str()));
    assert_eq!(t.deployed_image(), t.image_ref("1.0.0"));

    // Later scans neither push again nor open a second pull request.
    t.wait_scans(3.0);
    assert_eq!(gitea.pull_requests("web", "open").len(), 1);
    assert_eq!(gitea.branch_head("web", &branch), update["commit"].as_str().map(str::to_string));
    assert_eq!(metric(&t.s.ferry, r#"ferry_image_updates_total{result="pull_request"}"#), 1.0);
    for (what, text) in
        [("logs", t.s.ferry.logs()), ("events", t.events()), ("status", t.policy().to_string())]
    {
        assert!(!text.contains(&token), "the Gitea token is in ferry's {what}");
    }
}
