//! The real control plane from `tests/testenv/`, shared by every test in a process, and a
//! namespace per test.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

/// Root of the ferry checkout.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testenv_script() -> PathBuf {
    repo_root().join("tests/testenv/testenv.sh")
}

/// A running control plane: where its kubeconfig and tools are.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
    state: PathBuf,
    components: &'static str,
    profile: &'static str,
}

/// Output of a finished command, for assertions.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Cluster {
    /// The full control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    /// kwok), started on first use and reused afterwards, also across test runs.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let state = std::env::var_os("FERRY_TESTENV_STATE")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target/testenv"));
            Cluster::up(state, "full")
        })
    }

    /// An extra full control plane, `name`d, for tests of ferry deploying to a cluster it does
    /// not run in: its state is `target/testenv-extra-<name>` (`$FERRY_TESTENV_EXTRA_ROOT/
    /// testenv-extra-<name>` when set), started on first use with the `small` profile, shared by
    /// every test of the process and reused by the next run, as [`Cluster::shared`].
    ///
    /// A test that stops its API server must have the cluster to itself: give it a name no other
    /// test uses.
    pub fn extra(name: &str) -> &'static Cluster {
        // One cell per name, so two tests asking for the same cluster start it once, and tests
        // asking for different ones do not wait for each other.
        static CLUSTERS: Mutex<BTreeMap<String, &'static OnceLock<Cluster>>> = Mutex::new(BTreeMap::new());
        let cell = *CLUSTERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
        cell.get_or_init(|| Cluster::start(extra_state(name), "full", "small"))
    }

    /// A separate bare cluster (etcd and kube-apiserver only, no CRDs installed) in `state`.
    /// Stop it with [`Cluster::down`].
    pub fn bare(state: &Path) -> Cluster {
        Cluster::up(state.to_path_buf(), "apiserver")
    }

    fn up(state: PathBuf, components: &'static str) -> Cluster {
        Cluster::start(state, components, "default")
    }

    fn start(state: PathBuf, components: &'static str, profile: &'static str) -> Cluster {
        let script = testenv_script();
        let run = |cmd: &str| -> Run {
            Command::new("bash")
                .arg(&script)
                .arg(cmd)
                .env("FERRY_TESTENV_STATE", &state)
                .env("FERRY_TESTENV_COMPONENTS", components)
                .env("FERRY_TESTENV_PROFILE", profile)
                .stdin(Stdio::null())
                // Progress (a first build takes many minutes) goes straight to the terminal.
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
                .into()
        };
        let up = run("up");
        assert!(up.success, "testenv.sh up failed (its output is above)");
        let env = run("env");
        assert!(env.success, "testenv.sh env failed (its output is above)");
        let vars: HashMap<&str, &str> = env.stdout.lines().filter_map(|l| l.split_once('=')).collect();
        Cluster {
            kubeconfig: PathBuf::from(vars["KUBECONFIG"]),
            bin: PathBuf::from(vars["FERRY_TESTENV_BIN"]),
            state,
            components,
            profile,
        }
    }

    /// Stops this cluster's processes.
    pub fn down(&self) {
        self.testenv("down");
    }

    /// Restarts only kube-apiserver, with the same flags and port; etcd (and so every object)
    /// and the other daemons keep running. Returns once the new API server is ready.
    pub fn restart_apiserver(&self) {
        self.testenv("restart-apiserver");
    }

    /// Stops only kube-apiserver: the cluster is unreachable (connections refused at its port)
    /// until [`Cluster::start_apiserver`]; etcd, the other daemons and the certificates stay.
    pub fn stop_apiserver(&self) {
        self.testenv("stop-apiserver");
    }

    /// Starts kube-apiserver again as it was started (same port, flags and etcd) and returns once
    /// it answers /readyz.
    pub fn start_apiserver(&self) {
        self.testenv("start-apiserver");
    }

    /// `https://127.0.0.1:<port>`: where this cluster's API server listens.
    pub fn server(&self) -> String {
        let port = std::fs::read_to_string(self.state.join("apiserver.port")).expect("read apiserver.port");
        format!("https://127.0.0.1:{}", port.trim())
    }

    /// The same cluster reached with another kubeconfig, i.e. as another user: its `kubectl`
    /// and `client` authenticate as that kubeconfig says.
    pub fn with_kubeconfig(&self, kubeconfig: PathBuf) -> Cluster {
        Cluster { kubeconfig, ..self.clone() }
    }

    /// Where this cluster's state (kubeconfig, logs, PIDs) is.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Runs a `testenv.sh` command (`up`, `status`, ...) on this cluster's state, panicking with
    /// its output on failure.
    pub fn testenv(&self, command: &str) {
        let out = Command::new("bash")
            .arg(testenv_script())
            .arg(command)
            .env("FERRY_TESTENV_STATE", &self.state)
            .env("FERRY_TESTENV_COMPONENTS", self.components)
            .env("FERRY_TESTENV_PROFILE", self.profile)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run testenv.sh {command}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "testenv.sh {command} failed: {stderr}");
    }

    /// A kube client for this cluster, as the admin user.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .expect("load kubeconfig");
        kube::Client::try_from(config).expect("build client")
    }

    /// A kubectl command already pointed at this cluster.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig).stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl and returns what it printed, successful or not.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_command().args(args).output().expect("run kubectl").into()
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(input.as_bytes()).expect("write kubectl stdin");
        child.wait_with_output().expect("wait for kubectl").into()
    }

    /// Runs kubectl and panics unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args);
        assert!(run.success, "kubectl {} failed: {}", args.join(" "), run.stderr);
        run.stdout
    }

    /// `kubectl apply --server-side` of a YAML document, panicking on failure.
    pub fn apply(&self, yaml: &str) -> String {
        let run = self.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "--field-manager=ferry-tests", "-f", "-"],
            yaml,
        );
        assert!(run.success, "kubectl apply failed: {}\n{yaml}", run.stderr);
        run.stdout
    }

    /// Installs ferry's CRDs (as `ferry crd` prints them) and waits until they are Established.
    pub fn install_crds(&self) {
        let yaml = ferry::api::crds_yaml().expect("serialize CRDs");
        self.apply(&yaml);
        // Polled rather than `kubectl wait`: that one fails at once, instead of waiting, when it
        // reads the CRD at a moment its status.conditions is null (seen while another test
        // restarted the API server).
        let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
        for crd in ferry::api::crds() {
            let name = crd.metadata.name.unwrap_or_default();
            super::wait_until(&format!("the CRD {name} to be Established"), Duration::from_secs(60), || {
                let run = self.kubectl(&["get", "crd", &name, "-o", established]);
                if run.success && run.stdout.trim() == "True" {
                    Ok(())
                } else {
                    Err(format!("not yet: {}{}", run.stdout.trim(), run.stderr.trim()))
                }
            });
        }
    }

    /// A fresh namespace for one test, deleted when the returned guard drops.
    pub fn namespace(&self, prefix: &str) -> TestNamespace {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        self.kubectl_ok(&["create", "namespace", &name]);
        TestNamespace { name, cluster: self.clone() }
    }
}

/// The state directory of the extra cluster `name`.
fn extra_state(name: &str) -> PathBuf {
    let root = std::env::var_os("FERRY_TESTENV_EXTRA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    root.join(format!("testenv-extra-{name}"))
}

/// A namespace that is deleted (without waiting) when dropped, so tests never see each other's
/// objects and leave nothing behind.
pub struct TestNamespace {
    pub name: String,
    cluster: Cluster,
}

impl Drop for TestNamespace {
    /// Deletes the namespace, then frees the Applications still in it of their finalizers: the
    /// test's ferry has usually stopped by now, and an Application whose finalizer no ferry will
    /// ever run would keep the namespace Terminating for good (and a bench run after the tests
    /// waits for no namespace to be Terminating).
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        let names = self.cluster.kubectl(&[
            "-n",
            &self.name,
            "get",
            "applications.ferry.dev",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        if !names.success {
            return;
        }
        for app in names.stdout.split_whitespace() {
            let unfinalize = r#"{"metadata":{"finalizers":null}}"#;
            let args =
                ["-n", &self.name, "patch", "applications.ferry.dev", app, "--type=merge", "-p", unfinalize];
            let _ = self.cluster.kubectl(&args);
        }
    }
}
