//! The sync engine's usual fixture: a namespace, a Git repository and a `ferry run` for that
//! namespace, so tests never fight over Applications; cluster-scoped names (Namespaces, CRD
//! groups) derive from the test namespace.

use std::cell::RefCell;

use serde_json::Value;

use super::{AppBuilder, Cluster, Ferry, FerryApp, GitServer, TestNamespace, get_json, release_applications};

/// A namespace, a Git repository and a ferry for it; see the module doc.
pub struct Scenario {
    pub ferry: Ferry,
    pub git: GitServer,
    pub cluster: Cluster,
    /// `kubectl delete` arguments for what lives outside the test namespace.
    cleanup: RefCell<Vec<Vec<String>>>,
    ns: TestNamespace,
}

impl Scenario {
    /// On the shared cluster, with ferry's CRD installed.
    pub fn new(prefix: &str) -> Scenario {
        Scenario::with_ferry_args(prefix, &[])
    }

    /// Same, with extra `ferry run` arguments.
    pub fn with_ferry_args(prefix: &str, ferry_args: &[&str]) -> Scenario {
        let cluster = Cluster::shared();
        cluster.install_crds();
        Scenario::on_with(cluster.clone(), prefix, ferry_args)
    }

    /// On any cluster that already has ferry's CRD.
    pub fn on(cluster: Cluster, prefix: &str) -> Scenario {
        Scenario::on_with(cluster, prefix, &[])
    }

    fn on_with(cluster: Cluster, prefix: &str, ferry_args: &[&str]) -> Scenario {
        let ns = cluster.namespace(prefix);
        let git = GitServer::start();
        // A file that is not a manifest keeps the directories in Git even when they hold no
        // manifest (the empty-render test needs that).
        git.commit_files(
            "main",
            &[("app/README.md", "manifests of the test app\n"), ("other/README.md", "second app\n")],
            "readme",
        );
        let ferry = Ferry::start_with(&cluster, &ns.name, ferry_args);
        Scenario { ferry, git, cluster, cleanup: RefCell::new(Vec::new()), ns }
    }

    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// Changes ConfigMap `settings` in the cluster, as `kubectl edit` would: drift.
    pub fn edit_settings_color(&self, color: &str) {
        let patch = format!(r#"{{"data":{{"color":"{color}"}}}}"#);
        self.kubectl_ok(&["-n", self.ns(), "patch", "configmap", "settings", "--type=merge", "-p", &patch]);
    }

    /// Deletes this (cluster-scoped or other-namespace) object when the test ends.
    pub fn delete_later(&self, args: &[&str]) {
        self.cleanup.borrow_mut().push(args.iter().map(|s| s.to_string()).collect());
    }

    /// Commits files under `app/` and pushes; returns the SHA.
    pub fn commit(&self, files: &[(&str, String)], message: &str) -> String {
        self.commit_in("app", files, message)
    }

    pub fn commit_in(&self, dir: &str, files: &[(&str, String)], message: &str) -> String {
        let paths: Vec<(String, &str)> =
            files.iter().map(|(p, c)| (format!("{dir}/{p}"), c.as_str())).collect();
        let refs: Vec<(&str, &str)> = paths.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        self.git.commit_files("main", &refs, message)
    }

    /// Removes files under `app/` in a new commit; returns the SHA.
    pub fn remove(&self, files: &[&str], message: &str) -> String {
        let paths: Vec<String> = files.iter().map(|p| format!("app/{p}")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.git.remove_files("main", &refs, message)
    }

    pub fn app(&self, name: &str) -> FerryApp {
        FerryApp::new(&self.cluster, self.ns(), name)
    }

    /// An Application in the test namespace following `app/` of branch main of the scenario's
    /// repository; nothing else is set.
    pub fn application(&self, name: &str) -> AppBuilder {
        AppBuilder::new(name).namespace(self.ns()).repo(&self.git.url()).branch("main").path("app")
    }

    /// [`Scenario::application`] with every other field the sync tests spell out: every minute,
    /// not suspended, automated sync with prune and selfHeal, allowEmpty off.
    pub fn default_app(&self, name: &str) -> AppBuilder {
        self.application(name)
            .interval("1m")
            .suspend(false)
            .automated(true)
            .prune(true)
            .self_heal(true)
            .allow_empty(false)
    }

    /// Creates the Application and returns it.
    pub fn create_app(&self, app: AppBuilder) -> FerryApp {
        app.create(&self.cluster)
    }

    /// An object as JSON, or `None` when it does not exist.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        match namespace {
            Some(ns) => get_json(&self.cluster, &["-n", ns, "get", kind, name]),
            None => get_json(&self.cluster, &["get", kind, name]),
        }
    }

    /// A key of a ConfigMap in the test namespace (`None` when the ConfigMap does not exist).
    pub fn cm_value(&self, name: &str, key: &str) -> Option<String> {
        self.get("configmap", Some(self.ns()), name)
            .map(|cm| cm["data"][key].as_str().unwrap_or("<unset>").to_string())
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.ferry.stop();
        release_applications(&self.cluster, &self.ns.name);
        for args in self.cleanup.borrow().iter() {
            let mut all: Vec<&str> = vec!["delete", "--ignore-not-found", "--wait=false"];
            all.extend(args.iter().map(String::as_str));
            let _ = self.cluster.kubectl(&all);
        }
    }
}
