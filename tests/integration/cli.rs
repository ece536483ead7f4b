//! The `ferry` binary as a person meets it: versions, CRDs, and `ferry run` failing clearly when
//! there is no cluster or no CRD.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::support::{Cluster, Run, repo_root};

fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    // Nothing from the developer's environment may leak in: no in-cluster config, no ~/.kube.
    cmd.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Run {
    cmd.output().expect("run ferry").into()
}

/// Asserts the failure contract of `ferry run`: exit code 1 and exactly one line on stderr.
fn assert_one_line_failure(run: &Run, expected: &str) -> String {
    assert!(!run.success, "ferry run should fail; stdout: {} stderr: {}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(lines[0].contains(expected), "expected `{expected}` in: {}", lines[0]);
    lines[0].to_string()
}

#[test]
fn version_prints_the_crate_version() {
    let mut cmd = ferry();
    cmd.arg("version");
    let out = run(cmd);
    assert!(out.success);
    assert_eq!(out.stdout.trim(), format!("ferry {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn checked_in_crds_match_ferry_crd() {
    let mut cmd = ferry();
    cmd.arg("crd");
    let out = run(cmd);
    assert!(out.success, "{}", out.stderr);
    let checked_in = std::fs::read_to_string(repo_root().join("crds/application.yaml"))
        .expect("read crds/application.yaml");
    assert!(
        out.stdout == checked_in,
        "crds/application.yaml is out of date with the Rust types; run `make crds` and commit the result"
    );
    assert!(out.stdout.contains("kind: CustomResourceDefinition"));
}

#[test]
fn run_without_any_kubeconfig_says_so() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = ferry();
    cmd.args(["run"]).env("HOME", home.path());
    let line = assert_one_line_failure(&run(cmd), "no Kubernetes configuration found");
    assert!(line.contains("KUBECONFIG"), "{line}");
}

#[test]
fn run_with_a_missing_kubeconfig_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let mut cmd = ferry();
    cmd.arg("run").env("KUBECONFIG", &missing).env("HOME", dir.path());
    let line = assert_one_line_failure(&run(cmd), "cannot load the kubeconfig named by KUBECONFIG");
    assert!(line.contains(&missing.display().to_string()), "{line}");
}

fn kubeconfig_for(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\n\
             users:\n- name: u\n  user: {{token: not-a-secret}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn run_with_no_cluster_listening_says_it_cannot_reach_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{port}"));
    let mut cmd = ferry();
    cmd.args(["run", "--api-timeout-seconds", "5"]).env("KUBECONFIG", &kubeconfig);
    let line = assert_one_line_failure(
        &run(cmd),
        &format!("cannot reach the Kubernetes API server at https://127.0.0.1:{port}"),
    );
    assert!(line.contains("check that the cluster is running"), "{line}");
    assert!(!line.contains("not-a-secret"), "the token leaked: {line}");
}

/// Stops the bare cluster even when the test fails.
struct Down<'a>(&'a Cluster);
impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.down();
    }
}

#[test]
fn run_against_a_cluster_without_the_crd_says_how_to_install_it() {
    let state = repo_root().join("target/testenv-bare");
    let bare = Cluster::bare(&state);
    let _down = Down(&bare);
    let no_crd = bare.kubectl(&["get", "crd", "applications.ferry.dev"]);
    assert!(!no_crd.success, "the bare cluster unexpectedly has the CRD");

    let mut cmd = ferry();
    cmd.arg("run").env("KUBECONFIG", &bare.kubeconfig);
    let line =
        assert_one_line_failure(&run(cmd), "the Application CRD (applications.ferry.dev) is not installed");
    assert!(line.contains("ferry crd | kubectl apply --server-side -f -"), "{line}");
}

#[test]
fn run_with_the_crd_installed_reports_ready_and_stops_on_sigterm() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    // Scoped to an empty namespace: this ferry must not reconcile other tests' Applications.
    let ns = cluster.namespace("cli-run");
    let mut child = ferry()
        .args(["run", "--namespace", &ns.name, "--http-address", "127.0.0.1:0"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("ferry is ready") => break line,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("ferry run never reported ready; it logged:\n{}", seen.join("\n"));
            }
        }
    };
    assert!(ready.contains("v1.36"), "the ready line names the server version: {ready}");

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status =
        crate::support::wait_until("ferry run to exit after SIGTERM", Duration::from_secs(30), || {
            child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_string())
        });
    assert!(status.success(), "ferry run exited with {status} after SIGTERM");
}
