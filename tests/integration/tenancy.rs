//! Issue 19, as a hostile tenant tries it against the real control plane: two teams in two
//! namespaces, each with its own ServiceAccount and Role, its own Git server and credentials,
//! and one ferry cache between them (two `ferry run` processes sharing `--cache-dir`, as the
//! replicas of one install would). Each test is an attack that worked before the fix.

use serde_json::{Value, json};

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, GitServer, T, TestNamespace, get_json, main_revision,
};

/// One team: a namespace, a ServiceAccount `deployer` that may write ConfigMaps there (and
/// nothing else), and a ferry for that namespace.
struct Team {
    ns: TestNamespace,
    /// Keeps the team's ferry running for as long as the team exists.
    _ferry: Ferry,
}

impl Team {
    fn new(cluster: &Cluster, prefix: &str, cache_dir: &std::path::Path) -> Team {
        let ns = cluster.namespace(prefix);
        cluster.apply(&deployer_rbac(&ns.name, &[]));
        let cache = cache_dir.display().to_string();
        let ferry = Ferry::start_with(cluster, &ns.name, &["--cache-dir", &cache]);
        Team { ns, _ferry: ferry }
    }

    /// A team whose namespace holds Secret `platform-creds`, which its ServiceAccount may not
    /// read, and a Git server the team's author controls that asks for exactly its keys.
    fn with_a_secret_it_may_not_read(
        cluster: &Cluster,
        prefix: &str,
        cache_dir: &std::path::Path,
    ) -> (Team, GitServer) {
        let team = Team::new(cluster, prefix, cache_dir);
        basic_auth_secret(cluster, team.name(), "platform-creds", "platform", "not-for-tenants-Pa55");
        (team, GitServer::start_with_auth("platform", "not-for-tenants-Pa55"))
    }

    fn name(&self) -> &str {
        &self.ns.name
    }

    /// An Application acting as `deployer`, syncing `app/` of `repo_url` (at a ref still to set).
    fn application(&self, name: &str, repo_url: &str) -> AppBuilder {
        AppBuilder::new(name)
            .namespace(self.name())
            .repo(repo_url)
            .path("app")
            .service_account("deployer")
            .interval("1m")
            .automated(true)
            .prune(true)
            .self_heal(true)
    }
}

/// ServiceAccount `deployer` with a Role on ConfigMaps in `ns`, plus `get` on the named Secrets.
fn deployer_rbac(ns: &str, readable_secrets: &[&str]) -> String {
    let secrets = if readable_secrets.is_empty() {
        String::new()
    } else {
        format!(
            "- apiGroups: [\"\"]\n  resources: [secrets]\n  resourceNames: [{}]\n  verbs: [get]\n",
            readable_secrets.join(", ")
        )
    };
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: deployer, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: deployer, namespace: {ns}}}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
{secrets}---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: deployer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}
subjects:
- {{kind: ServiceAccount, name: deployer, namespace: {ns}}}
"#
    )
}

fn configmap(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{value: {data}}}\n")
}

fn basic_auth_secret(cluster: &Cluster, ns: &str, name: &str, user: &str, password: &str) {
    cluster.apply(
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {"username": user, "password": password},
        })
        .to_string(),
    );
}

/// Team A syncs its private repository (basic auth) at a commit holding ConfigMap `private`.
fn team_a_synced(cluster: &Cluster, a: &Team) -> (GitServer, String) {
    let private = GitServer::start_with_auth("alice", "team-a-Pa55");
    let sha =
        private.commit_files("main", &[("app/private.yaml", &configmap("private", "team-a-only"))], "a");
    basic_auth_secret(cluster, a.name(), "git", "alice", "team-a-Pa55");
    cluster.apply(&deployer_rbac(a.name(), &["git"]));
    let app = a.application("a", &private.url()).branch("main").secret_ref("git").create(cluster);
    app.wait_synced(&sha, T);
    (private, sha)
}

fn wait_fetch_failed(app: &FerryApp, words: &[&str]) -> Value {
    let status = app.wait_not_ready("FetchFailed", T);
    let message = crate::support::condition(&status, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for word in words {
        assert!(message.contains(word), "the message must say {word:?}: {message}");
    }
    status
}

fn assert_absent(cluster: &Cluster, ns: &str, name: &str) {
    assert!(
        get_json(cluster, &["-n", ns, "get", "configmap", name]).is_none(),
        "ConfigMap {ns}/{name} of another tenant was applied"
    );
}

#[test]
fn a_tenant_naming_another_tenants_private_commit_gets_nothing() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let cache = tempfile::Builder::new().prefix("ferry-shared-cache-").tempdir().unwrap();
    let a = Team::new(cluster, "tenancy-a", cache.path());
    let b = Team::new(cluster, "tenancy-b", cache.path());
    let (_private, sha) = team_a_synced(cluster, &a);

    // B names A's commit through a public repository B controls.
    let public = GitServer::start();
    public.commit_files("main", &[("app/b.yaml", &configmap("b", "b"))], "b");
    public.set_config("uploadpack.allowAnySHA1InWant", "true");
    let app = b.application("steal", &public.url()).commit(&sha).create(cluster);
    wait_fetch_failed(&app, &[&sha]);
    assert_absent(cluster, b.name(), "private");
    let revision = app.json()["status"]["sync"]["revision"].clone();
    assert!(revision.is_null() || revision != main_revision(&sha).as_str(), "{revision}");
}

#[test]
fn a_file_url_into_the_cache_or_ferrys_own_refs_is_refused() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let cache = tempfile::Builder::new().prefix("ferry-shared-cache-").tempdir().unwrap();
    let a = Team::new(cluster, "tenancy-fa", cache.path());
    let b = Team::new(cluster, "tenancy-fb", cache.path());
    let (_private, _sha) = team_a_synced(cluster, &a);

    // The directory name is derivable from A's URL; ferry's refs there name A's branches.
    let repos = cache.path().join("repos");
    let key = std::fs::read_dir(&repos)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| !n.ends_with(".lock"))
        .expect("A's repository is cached");
    let url = format!("file://{}/repos/{key}", cache.path().display());
    let app = b.application("steal", &url).ref_name("refs/ferry/heads/main").create(cluster);
    wait_fetch_failed(&app, &["ferry's own Git cache"]);
    assert_absent(cluster, b.name(), "private");
}

#[test]
fn credentials_are_read_as_the_applications_service_account() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let cache = tempfile::Builder::new().prefix("ferry-cache-").tempdir().unwrap();
    let (team, attacker) = Team::with_a_secret_it_may_not_read(cluster, "tenancy-cred", cache.path());
    let sha = attacker.commit_files("main", &[("app/x.yaml", &configmap("x", "x"))], "x");
    let app = team
        .application("exfiltrate", &attacker.url())
        .branch("main")
        .secret_ref("platform-creds")
        .create(cluster);
    wait_fetch_failed(&app, &["platform-creds", "forbidden"]);
    assert_absent(cluster, team.name(), "x");

    // Given the right to read it, the same Application syncs: the refusal was the RBAC's.
    cluster.apply(&deployer_rbac(team.name(), &["platform-creds"]));
    app.ferry_sync();
    app.wait_synced(&sha, T);
}

/// Bytes of file content under the cache's snapshots and repositories, as the budget counts them.
fn cache_bytes(root: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| match e.path().symlink_metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&root.join("trees")) + walk(&root.join("repos"))
}

/// 128 KiB of hex that compresses to about half (so the repository grows with every revision).
fn noise(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:02x}", x as u8)
        })
        .collect()
}

#[test]
fn the_git_cache_stays_within_its_budget_and_the_application_still_syncs() {
    const BUDGET: u64 = 1200 * 1024;
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("tenancy-disk");
    let git = GitServer::start();
    let ferry =
        Ferry::start_with(cluster, &ns.name, &["--cache-max-size", "1200Ki", "--cache-gc-interval", "1s"]);
    let app = |sha: &str| {
        let app = AppBuilder::new("big")
            .namespace(&ns.name)
            .repo(&git.url())
            .branch("main")
            .path("app")
            .interval("1m")
            .create(cluster);
        if !sha.is_empty() {
            app.ferry_sync();
            app.wait_synced(sha, T);
        }
        app
    };
    let mut last = String::new();
    for revision in 0..8u64 {
        let blob = noise(revision);
        let config = configmap("config", &format!("r{revision}"));
        last = git.commit_files("main", &[("app/config.yaml", &config), ("data/blob.txt", &blob)], "next");
        app(&last);
    }
    // Eight snapshots of 128 KiB and their repository would be over 1.5 MiB.
    crate::support::wait_until("the Git cache to be within its budget", T, || {
        match cache_bytes(ferry.cache_dir()) {
            bytes if bytes <= BUDGET => Ok(()),
            bytes => Err(format!("{bytes} bytes")),
        }
    });
    assert!(ferry.cache_dir().join("trees").join(&last).is_dir(), "the snapshot in use was deleted");
    assert!(crate::support::metric(&ferry, "ferry_git_cache_evictions_total") >= 1.0);
    // And the Application keeps syncing from the collected cache.
    let next = git.commit_files("main", &[("app/config.yaml", &configmap("config", "after"))], "after");
    app(&next);
    let cm = get_json(cluster, &["-n", &ns.name, "get", "configmap", "config"]).expect("config exists");
    assert_eq!(cm["data"]["value"], "after");
}

#[test]
fn an_applicationset_reads_its_generators_secret_as_its_applications_service_account() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let cache = tempfile::Builder::new().prefix("ferry-cache-").tempdir().unwrap();
    let (team, attacker) = Team::with_a_secret_it_may_not_read(cluster, "tenancy-set", cache.path());
    let sha = attacker.commit_files("feature", &[("app/x.yaml", &configmap("x", "x"))], "x");
    attacker.push_ref("refs/pull/1/head", &sha);
    let set = json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "previews", "namespace": team.name()},
        "spec": {
            "generators": [{"pullRequests": {
                "repoURL": attacker.url(), "interval": "2s", "secretRef": {"name": "platform-creds"},
            }}],
            "template": {
                "metadata": {"name": "pr-{{number}}"},
                "spec": {
                    "source": {"repoURL": attacker.url(), "ref": {"name": "{{ref}}"}, "path": "app"},
                    "serviceAccountName": "deployer",
                    "interval": "1h",
                },
            },
        },
    });
    cluster.apply(&set.to_string());
    let message = crate::support::wait_until("the ApplicationSet to refuse its generator", T, || {
        let set = get_json(cluster, &["-n", team.name(), "get", "applicationset", "previews"])
            .ok_or("no set".to_string())?;
        let ready = crate::support::condition(&set, "Ready").cloned().unwrap_or_default();
        match (ready["status"].as_str(), ready["reason"].as_str()) {
            (Some("False"), Some("GeneratorFailed")) => {
                Ok(ready["message"].as_str().unwrap_or_default().to_string())
            }
            _ => Err(format!("Ready: {ready}")),
        }
    });
    assert!(message.contains("platform-creds") && message.contains("forbidden"), "{message}");
    assert!(get_json(cluster, &["-n", team.name(), "get", "applications.ferry.dev", "pr-1"]).is_none());

    // Allowed to read it, the set generates its Application.
    cluster.apply(&deployer_rbac(team.name(), &["platform-creds"]));
    crate::support::wait_until("the generated Application", T, || {
        get_json(cluster, &["-n", team.name(), "get", "applications.ferry.dev", "pr-1"])
            .ok_or("not yet".to_string())
    });
}
