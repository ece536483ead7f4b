//! Remote clusters for multi-cluster tests: an extra control plane ([`Cluster::extra`]) prepared
//! with `scripts/remote-cluster-kubeconfig.sh`, exactly as a user prepares theirs (so the script
//! and `examples/remote-cluster/` are what the tests exercise), and the Secret and `Cluster`
//! object that hand its kubeconfig to ferry in the local cluster.
//!
//! ```ignore
//! let east = Cluster::extra("east");
//! let access = remote_access(east, RemoteRbac::Impersonate);
//! register_cluster(Cluster::shared(), &ns.name, "east", &[("env", "test")], &access.kubeconfig);
//! ```

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
};

use serde_json::json;

use super::{Cluster, Run, repo_root};

/// How ferry's own identity may act in a remote cluster: the script's two modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteRbac {
    /// `--impersonate`: read everything, impersonate ServiceAccounts, write nothing itself.
    Impersonate,
    /// `--admin`: cluster-admin.
    Admin,
}

impl RemoteRbac {
    fn flag(self) -> &'static str {
        match self {
            RemoteRbac::Impersonate => "--impersonate",
            RemoteRbac::Admin => "--admin",
        }
    }
}

/// What the script made of a remote cluster.
#[derive(Clone, Debug)]
pub struct RemoteAccess {
    /// The kubeconfig it printed: what the kubeconfig Secret in the local cluster holds.
    pub kubeconfig: String,
    /// The remote cluster as ferry's identity (ServiceAccount `ferry-system/ferry`): its
    /// `kubectl` and `client` authenticate with the kubeconfig's token.
    pub as_ferry: Cluster,
    pub rbac: RemoteRbac,
}

/// Prepares `remote` for ferry with `scripts/remote-cluster-kubeconfig.sh` in mode `rbac`, once
/// per cluster and process. Panics when the script fails, when ferry would refuse the
/// kubeconfig it prints, or when the cluster was already prepared in the other mode: each mode
/// removes the other's binding, so tests of both modes need two clusters.
pub fn remote_access(remote: &Cluster, rbac: RemoteRbac) -> RemoteAccess {
    static PREPARED: Mutex<BTreeMap<PathBuf, RemoteAccess>> = Mutex::new(BTreeMap::new());
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    let access = prepared.entry(remote.state_dir().to_path_buf()).or_insert_with(|| prepare(remote, rbac));
    assert_eq!(
        access.rbac,
        rbac,
        "{} is prepared in the other mode; use another Cluster::extra",
        remote.state_dir().display()
    );
    access.clone()
}

fn prepare(remote: &Cluster, rbac: RemoteRbac) -> RemoteAccess {
    let run = run_script(remote, &["--name", &extra_name(remote), rbac.flag()]);
    assert!(run.success, "scripts/remote-cluster-kubeconfig.sh failed: {}", run.stderr);
    let kubeconfig = run.stdout;
    if let Err(e) = ferry::cluster::kubeconfig::check(&kubeconfig, None) {
        panic!("ferry refuses the kubeconfig the script printed: {e}\n{kubeconfig}");
    }
    let path = remote.state_dir().join("ferry.kubeconfig");
    std::fs::write(&path, &kubeconfig).expect("write the remote kubeconfig");
    RemoteAccess { kubeconfig, as_ferry: remote.with_kubeconfig(path), rbac }
}

/// Runs `scripts/remote-cluster-kubeconfig.sh args` against `remote` as its admin (the user
/// who prepares a cluster), with the test environment's kubectl.
pub fn run_script(remote: &Cluster, args: &[&str]) -> Run {
    Command::new("bash")
        .arg(repo_root().join("scripts/remote-cluster-kubeconfig.sh"))
        .args(args)
        .env("KUBECONFIG", &remote.kubeconfig)
        .env("KUBECTL", remote.bin.join("kubectl"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/remote-cluster-kubeconfig.sh")
        .into()
}

/// `east` for `target/testenv-extra-east`: the name of the cluster in its kubeconfig.
fn extra_name(remote: &Cluster) -> String {
    let dir = remote.state_dir().file_name().unwrap_or_default().to_string_lossy();
    dir.strip_prefix("testenv-extra-").unwrap_or("remote").to_string()
}

/// The user name ferry impersonates in a remote cluster for an Application of `namespace`
/// naming the ServiceAccount `name`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The Secret [`register_cluster`] puts a Cluster's kubeconfig in.
pub fn kubeconfig_secret_name(cluster: &str) -> String {
    format!("{cluster}-kubeconfig")
}

/// In `local`'s `namespace`, what the script tells a user to create: the Secret
/// `<name>-kubeconfig` holding `kubeconfig` under the key `value`, and the `Cluster` `name` with
/// `labels` pointing at it. Needs ferry's CRDs ([`Cluster::install_crds`]). Applying again
/// updates both.
pub fn register_cluster(
    local: &Cluster,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    kubeconfig: &str,
) {
    let secret = kubeconfig_secret_name(name);
    apply_kubeconfig_secret(local, namespace, &secret, kubeconfig);
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let cluster = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"kubeConfig": {"secretRef": {"name": secret}}},
    });
    local.apply(&cluster.to_string());
}

/// The script's `kubectl create secret generic ... --from-file=value=...`, rendered and applied
/// rather than run, so that applying again updates the Secret.
fn apply_kubeconfig_secret(local: &Cluster, namespace: &str, secret: &str, kubeconfig: &str) {
    let file = tempfile::NamedTempFile::new().expect("create a temporary file");
    std::fs::write(file.path(), kubeconfig).expect("write the kubeconfig");
    let from_file = format!("--from-file=value={}", file.path().display());
    let create = ["create", "secret", "generic", secret, &from_file, "--dry-run=client", "-o", "json"];
    local.apply(&local.kubectl_ok(&[&["-n", namespace][..], &create].concat()));
}

/// Holds `remote` for this test alone: a test that stops its API server takes it, so that no
/// other test of the process sees the outage. Other tests of such a cluster take it too.
pub fn exclusively(remote: &Cluster) -> std::sync::MutexGuard<'static, ()> {
    static LOCKS: Mutex<BTreeMap<PathBuf, &'static Mutex<()>>> = Mutex::new(BTreeMap::new());
    let lock = *LOCKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(remote.state_dir().to_path_buf())
        .or_insert_with(|| Box::leak(Box::new(Mutex::new(()))));
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// The mode each shared extra cluster is prepared in: `west` admin, the others impersonate
/// (a cluster is prepared in one mode per process).
pub fn mode_of(remote: &Cluster) -> RemoteRbac {
    if extra_name(remote) == "west" { RemoteRbac::Admin } else { RemoteRbac::Impersonate }
}
