//! Application manifests for the tests, built field by field (as kube-rs's controller-rs builds
//! its test objects). A manifest holds exactly the fields a test sets: the builder defaults
//! nothing, so what a test applies is what its builder calls say.
//!
//! ```ignore
//! AppBuilder::new("shop")
//!     .namespace(ns)
//!     .repo(&git.url())
//!     .branch("main")
//!     .path("app")
//!     .interval("1h")
//!     .prune(true)
//!     .canary("shop", json!([{"setWeight": 20}, {"pause": {}}]))
//!     .create(&cluster)
//! ```

use std::fmt;

use serde_json::{Map, Value, json};

use super::{Cluster, FerryApp};

/// An Application (`ferry.dev/v1alpha1`) under construction; see the module doc.
#[derive(Clone, Debug)]
pub struct AppBuilder {
    manifest: Value,
}

impl AppBuilder {
    /// `apiVersion`, `kind` and `metadata.name`, and an empty spec.
    pub fn new(name: &str) -> AppBuilder {
        AppBuilder {
            manifest: json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "Application",
                "metadata": {"name": name},
                "spec": {},
            }),
        }
    }

    /// `metadata.namespace`.
    pub fn namespace(self, namespace: &str) -> AppBuilder {
        self.set(&["metadata", "namespace"], json!(namespace))
    }

    // ----- spec.source -----

    /// `spec.source.repoURL`.
    pub fn repo(self, url: &str) -> AppBuilder {
        self.set(&["spec", "source", "repoURL"], json!(url))
    }

    /// `spec.source.ref: {branch}`.
    pub fn branch(self, branch: &str) -> AppBuilder {
        self.git_ref(json!({"branch": branch}))
    }

    /// `spec.source.ref: {tag}`.
    pub fn tag(self, tag: &str) -> AppBuilder {
        self.git_ref(json!({"tag": tag}))
    }

    /// `spec.source.ref: {commit}`.
    pub fn commit(self, sha: &str) -> AppBuilder {
        self.git_ref(json!({"commit": sha}))
    }

    /// `spec.source.ref: {semver}`.
    pub fn semver(self, range: &str) -> AppBuilder {
        self.git_ref(json!({"semver": range}))
    }

    /// `spec.source.ref: {name}`: any ref by its name (`refs/pull/7/head`).
    pub fn ref_name(self, name: &str) -> AppBuilder {
        self.git_ref(json!({"name": name}))
    }

    /// `spec.source.ref: {fromApplication: {name}}`: promotion from another Application of the
    /// same namespace.
    pub fn promoted_from(self, name: &str) -> AppBuilder {
        self.git_ref(json!({"fromApplication": {"name": name}}))
    }

    /// `spec.source.ref`, whole (replaces any ref set before).
    pub fn git_ref(self, git_ref: Value) -> AppBuilder {
        self.set(&["spec", "source", "ref"], git_ref)
    }

    /// `spec.source.path`.
    pub fn path(self, path: &str) -> AppBuilder {
        self.set(&["spec", "source", "path"], json!(path))
    }

    /// `spec.source.secretRef: {name}`: the Secret holding the repository's credentials.
    pub fn secret_ref(self, secret: &str) -> AppBuilder {
        self.set(&["spec", "source", "secretRef"], json!({"name": secret}))
    }

    /// `spec.source.helm` (e.g. `{"releaseName": ...}`).
    pub fn helm(self, helm: Value) -> AppBuilder {
        self.set(&["spec", "source", "helm"], helm)
    }

    /// `spec.source.chart` (`{"repoURL", "name", "version", ...}`).
    pub fn chart(self, chart: Value) -> AppBuilder {
        self.set(&["spec", "source", "chart"], chart)
    }

    /// `spec.source.oci` (`{"url", "tag" | "semver" | "digest", ...}`).
    pub fn oci(self, oci: Value) -> AppBuilder {
        self.set(&["spec", "source", "oci"], oci)
    }

    /// Drops `spec.source.repoURL`, `ref` and `path`: a source of a chart alone.
    pub fn without_git(mut self) -> AppBuilder {
        if let Some(source) = self.manifest["spec"]["source"].as_object_mut() {
            source.remove("repoURL");
            source.remove("ref");
            source.remove("path");
        }
        self
    }

    // ----- the rest of spec -----

    /// `spec.decryption` (`{"provider": "sops", "secretRef": {"name": ...}}`).
    pub fn decryption(self, decryption: Value) -> AppBuilder {
        self.set(&["spec", "decryption"], decryption)
    }

    /// `spec.interval` (`"1m"`, `"1h"`).
    pub fn interval(self, interval: &str) -> AppBuilder {
        self.set(&["spec", "interval"], json!(interval))
    }

    /// `spec.suspend`.
    pub fn suspend(self, suspend: bool) -> AppBuilder {
        self.set(&["spec", "suspend"], json!(suspend))
    }

    /// `spec.syncPolicy.automated`.
    pub fn automated(self, on: bool) -> AppBuilder {
        self.set(&["spec", "syncPolicy", "automated"], json!(on))
    }

    /// `spec.syncPolicy.prune`.
    pub fn prune(self, on: bool) -> AppBuilder {
        self.set(&["spec", "syncPolicy", "prune"], json!(on))
    }

    /// `spec.syncPolicy.selfHeal`.
    pub fn self_heal(self, on: bool) -> AppBuilder {
        self.set(&["spec", "syncPolicy", "selfHeal"], json!(on))
    }

    /// `spec.syncPolicy.allowEmpty`.
    pub fn allow_empty(self, on: bool) -> AppBuilder {
        self.set(&["spec", "syncPolicy", "allowEmpty"], json!(on))
    }

    /// `spec.serviceAccountName`.
    pub fn service_account(self, name: &str) -> AppBuilder {
        self.set(&["spec", "serviceAccountName"], json!(name))
    }

    /// `spec.deletionPolicy` (`"Orphan"`, ...).
    pub fn deletion_policy(self, policy: &str) -> AppBuilder {
        self.set(&["spec", "deletionPolicy"], json!(policy))
    }

    /// `spec.destination.namespace`.
    pub fn destination(self, namespace: &str) -> AppBuilder {
        self.set(&["spec", "destination", "namespace"], json!(namespace))
    }

    /// `spec.destination.cluster`: the Cluster of the Application's namespace to deploy to.
    pub fn cluster(self, name: &str) -> AppBuilder {
        self.set(&["spec", "destination", "cluster"], json!(name))
    }

    /// `spec.destination.createNamespace`.
    pub fn create_namespace(self, on: bool) -> AppBuilder {
        self.set(&["spec", "destination", "createNamespace"], json!(on))
    }

    /// `spec.dependsOn`: `[{"name": ..., "namespace": ...}]`.
    pub fn depends_on(self, dependencies: Value) -> AppBuilder {
        self.set(&["spec", "dependsOn"], dependencies)
    }

    /// `spec.strategy.canary: {workload: {name: workload}, steps}`.
    pub fn canary(self, workload: &str, steps: Value) -> AppBuilder {
        self.set(&["spec", "strategy", "canary"], json!({"workload": {"name": workload}, "steps": steps}))
    }

    /// One more field of `spec.strategy.canary` (`trafficRouting`, `progressDeadline`, ...).
    pub fn canary_field(self, field: &str, value: Value) -> AppBuilder {
        self.set(&["spec", "strategy", "canary", field], value)
    }

    /// `spec.syncPolicy.rollback.gitRevert` (`{secretRef, mode?, forge?}`).
    pub fn git_revert(self, write: Value) -> AppBuilder {
        self.set(&["spec", "syncPolicy", "rollback", "gitRevert"], write)
    }

    /// `spec.healthChecks`: a list of `{apiVersion, kind, current, inProgress?, failed?}`.
    pub fn health_checks(self, checks: Value) -> AppBuilder {
        self.set(&["spec", "healthChecks"], checks)
    }

    /// `spec.ignoreDifferences`.
    pub fn ignore_differences(self, rules: Value) -> AppBuilder {
        self.set(&["spec", "ignoreDifferences"], rules)
    }

    // ----- the result -----

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.manifest["metadata"]["name"].as_str().expect("the builder sets metadata.name")
    }

    /// The manifest as JSON.
    pub fn build(&self) -> Value {
        self.manifest.clone()
    }

    /// The manifest as YAML, for a file a person would write (`ferry diff --file`).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(&self.manifest).expect("a JSON value serializes as YAML")
    }

    /// Applies the manifest (`kubectl apply --server-side`, as [`Cluster::apply`]) and returns
    /// the Application. Needs a namespace.
    pub fn create(&self, cluster: &Cluster) -> FerryApp {
        let namespace = self.manifest["metadata"]["namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("Application {} has no namespace to be created in", self.name()));
        cluster.apply(&self.to_string());
        FerryApp::new(cluster, namespace, self.name())
    }

    /// Sets the field at `path`, creating the objects on the way.
    fn set(mut self, path: &[&str], value: Value) -> AppBuilder {
        let (last, parents) = path.split_last().expect("a field path is never empty");
        let mut at = &mut self.manifest;
        for key in parents {
            let object = at.as_object_mut().expect("the builder only nests objects");
            at = object.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
        }
        at.as_object_mut().expect("the builder only nests objects").insert(last.to_string(), value);
        self
    }
}

/// The manifest as one line of JSON (what `kubectl apply -f -` reads).
impl fmt::Display for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.manifest)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::AppBuilder;

    #[test]
    fn only_the_fields_set_are_in_the_manifest() {
        let app = AppBuilder::new("shop")
            .namespace("team")
            .repo("https://git.example.com/a.git")
            .branch("main")
            .path("app")
            .prune(true)
            .canary("shop", json!([{"setWeight": 20}]))
            .canary_field("progressDeadline", json!("10m"));
        assert_eq!(
            app.build(),
            json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "shop", "namespace": "team"},
                "spec": {
                    "source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}, "path": "app"},
                    "syncPolicy": {"prune": true},
                    "strategy": {"canary": {
                        "workload": {"name": "shop"},
                        "steps": [{"setWeight": 20}],
                        "progressDeadline": "10m",
                    }},
                },
            })
        );
        let yaml: serde_json::Value = serde_saphyr::from_str(&app.to_yaml()).unwrap();
        assert_eq!(yaml, app.build());
    }

    #[test]
    fn a_later_ref_replaces_an_earlier_one() {
        let app = AppBuilder::new("a").branch("main").commit("abc1234");
        assert_eq!(app.build()["spec"]["source"]["ref"], json!({"commit": "abc1234"}));
    }
}
