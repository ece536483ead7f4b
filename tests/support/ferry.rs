//! `ferry run` as a child process, and Applications as the sync engine's tests see them: through
//! kubectl's JSON, the way a person would look at them.
//!
//! [`Ferry`] keeps everything ferry logs (stderr) in memory and in
//! `target/ferry-test-logs/<namespace>.log`, and prints it when the test fails, so a failure
//! shows what the controller was doing.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

use super::{Cluster, Run, T, helm_bin, http_get, kustomize_bin, repo_root, wait_until};

/// How long a graceful stop may take before ferry is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `ferry run --namespace <ns>` against one cluster, with its own Git cache dir.
pub struct Ferry {
    kubeconfig: PathBuf,
    namespace: String,
    cache_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// No `--namespace`: every namespace's Applications (see [`Ferry::start_all_namespaces`]).
    all_namespaces: bool,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<String>>>,
    log_path: PathBuf,
    /// Index in `log` where the current process's lines begin.
    started_at_line: usize,
    starts: usize,
}

impl Ferry {
    /// Starts ferry for the Applications of `namespace` and waits until it is ready.
    pub fn start(cluster: &Cluster, namespace: &str) -> Ferry {
        Ferry::start_with(cluster, namespace, &[])
    }

    /// Same, with extra `ferry run` arguments (e.g. `--concurrency 1`). A `--namespace` among
    /// them replaces the default `--namespace <namespace>`. Runs with `--allow-file-urls`, so
    /// tests may use local `file://` repositories.
    pub fn start_with(cluster: &Cluster, namespace: &str, extra_args: &[&str]) -> Ferry {
        let mut args = vec!["--allow-file-urls"];
        args.extend(extra_args);
        Ferry::start_as(&cluster.kubeconfig, namespace, &args)
    }

    /// Same, with another kubeconfig (another identity: a ServiceAccount's token) and exactly
    /// the given arguments (no `--allow-file-urls`: what the chart runs). `namespace` also names
    /// the log file, so two processes in one test need different names there.
    pub fn start_as(kubeconfig: &Path, namespace: &str, extra_args: &[&str]) -> Ferry {
        Ferry::launch(kubeconfig, namespace, extra_args, false)
    }

    /// Same as [`Ferry::start_with`] without `--namespace`: ferry watches the Applications of
    /// every namespace (`log_name` names the log file). On the shared cluster the extra
    /// arguments must keep it to the test's own Applications (a shard of its own), or it would
    /// reconcile every other test's too.
    pub fn start_all_namespaces(cluster: &Cluster, log_name: &str, extra_args: &[&str]) -> Ferry {
        let mut args = vec!["--allow-file-urls"];
        args.extend(extra_args);
        Ferry::launch(&cluster.kubeconfig, log_name, &args, true)
    }

    fn launch(kubeconfig: &Path, namespace: &str, extra_args: &[&str], all_namespaces: bool) -> Ferry {
        let log_dir = repo_root().join("target/ferry-test-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/ferry-test-logs");
        let log_path = log_dir.join(format!("{namespace}.log"));
        let _ = std::fs::remove_file(&log_path);
        let mut ferry = Ferry {
            kubeconfig: kubeconfig.to_path_buf(),
            namespace: namespace.to_string(),
            cache_dir: tempfile::Builder::new().prefix("ferry-cache-").tempdir().expect("temp cache dir"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            all_namespaces,
            child: None,
            reader: None,
            log: Arc::new(Mutex::new(Vec::new())),
            log_path,
            started_at_line: 0,
            starts: 0,
        };
        ferry.spawn();
        ferry.wait_ready();
        ferry
    }

    /// Where everything this fixture's processes log is kept (`target/ferry-test-logs/...`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The Git cache directory this ferry uses (kept across [`Ferry::restart`]).
    pub fn cache_dir(&self) -> &Path {
        self.cache_dir.path()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "ferry is already running");
        self.starts += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("run");
        let namespaced = !self.extra_args.iter().any(|a| a == "--namespace" || a.starts_with("--namespace="));
        if namespaced && !self.all_namespaces {
            cmd.arg("--namespace").arg(&self.namespace);
        }
        // A `--cache-dir` among the extra arguments (a cache shared by two processes) wins.
        if !self.extra_args.iter().any(|a| a == "--cache-dir" || a.starts_with("--cache-dir=")) {
            cmd.arg("--cache-dir").arg(self.cache_dir.path());
        }
        cmd.arg("--kustomize")
            .arg(kustomize_bin())
            .arg("--helm")
            .arg(helm_bin())
            .args(&self.extra_args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,ferry=debug")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Every flag has an environment variable; none may leak in from the developer's shell.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("FERRY_") {
                cmd.env_remove(var);
            }
        }
        // A free port per process: parallel tests never fight over one (see `http_address`).
        if !self.extra_args.iter().any(|a| a == "--http-address" || a.starts_with("--http-address=")) {
            cmd.args(["--http-address", "127.0.0.1:0"]);
        }
        let mut child = cmd.spawn().expect("start ferry run");
        let stderr = child.stderr.take().expect("ferry's stderr");
        let marker = format!("=== ferry run #{} (pid {}) ===", self.starts, child.id());
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(marker.clone());
            self.started_at_line = log.len();
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&self.log_path).ok();
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{marker}");
        }
        let log = Arc::clone(&self.log);
        self.reader = Some(
            std::thread::Builder::new()
                .name("ferry-stderr".into())
                .spawn(move || copy_lines(stderr, log, file))
                .expect("spawn the log reader"),
        );
        self.child = Some(child);
    }

    /// Waits until the current process has logged `ferry is ready`; panics (with the log) if it
    /// exits first or takes too long.
    pub fn wait_ready(&mut self) {
        let from = self.started_at_line;
        wait_until("ferry to log `ferry is ready`", T, || {
            if self.lines_since(from).iter().any(|l| l.contains("ferry is ready")) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ferry exited with {status} before it was ready; it logged:\n{}", self.logs());
            }
            Err("not ready yet".to_string())
        });
    }

    /// `IP:PORT` of the current process's HTTP server, from its `ferry is ready` line
    /// (`http_address=...`). Changes across [`Ferry::restart`].
    pub fn http_address(&self) -> String {
        let lines = self.lines_since(self.started_at_line);
        let ready = lines
            .iter()
            .find(|l| l.contains("ferry is ready"))
            .unwrap_or_else(|| panic!("ferry has not logged `ferry is ready`; it logged:\n{}", self.logs()));
        let (_, rest) = ready
            .split_once("http_address=")
            .unwrap_or_else(|| panic!("the ready line names no http_address: {ready}"));
        rest.split(|c: char| c.is_whitespace() || c == '"' || c == ',').next().unwrap_or_default().to_string()
    }

    /// The current process's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the current process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills ferry with SIGKILL (no chance to clean up) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let status = child.wait().expect("wait for ferry");
            self.note(&format!("=== ferry killed with SIGKILL: {status} ==="));
        }
        self.join_reader();
    }

    /// When the current process has exited on its own (e.g. a leader that lost its Lease exits so
    /// its supervisor restarts it), reaps it and returns how it exited. Sends no signal.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        self.note(&format!("=== ferry exited: {status} ==="));
        self.join_reader();
        Some(status)
    }

    /// Starts the process again (after [`Ferry::kill`] or [`Ferry::exited`]) with the same
    /// arguments and cache dir, without waiting for it to be ready: as a supervisor restarts a
    /// process, which may fail again while the API server is away.
    pub fn respawn(&mut self) {
        self.spawn();
    }

    /// Stops ferry with SIGTERM and returns how it exited (SIGKILL after 30 s of no exit).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on the child we spawned and have not reaped yet, so the PID is
        // still ours.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    self.note("=== ferry ignored SIGTERM for 30s; killing it ===");
                    let _ = child.kill();
                    break child.wait().expect("wait for ferry");
                }
            }
        };
        self.note(&format!("=== ferry stopped: {status} ==="));
        self.join_reader();
        Some(status)
    }

    /// Starts ferry again with the same arguments and cache dir (stopping it first with SIGTERM
    /// if it still runs) and waits until it is ready.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
        self.wait_ready();
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    fn note(&self, line: &str) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(line.to_string());
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Number of log lines so far: a mark for [`Ferry::lines_since`].
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Log lines from `mark` on.
    pub fn lines_since(&self, mark: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.get(mark..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// Everything logged so far, by every process this fixture started.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Waits until a line logged after `mark` satisfies `matches`, and returns it.
    pub fn wait_for_log(
        &self,
        what: &str,
        mark: usize,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(what, timeout, || {
            self.lines_since(mark).into_iter().find(|l| matches(l)).ok_or_else(|| {
                format!("no such line among {} new lines", self.log_len().saturating_sub(mark))
            })
        })
    }
}

fn copy_lines(stderr: impl std::io::Read, log: Arc<Mutex<Vec<String>>>, mut file: Option<File>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.logs();
            let lines: Vec<&str> = log.lines().collect();
            let shown = &lines[lines.len().saturating_sub(600)..];
            eprintln!(
                "----- ferry's log ({} lines, last {} shown; all in {}) -----\n{}\n----- end of ferry's log -----",
                lines.len(),
                shown.len(),
                self.log_path.display(),
                shown.join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Applications and objects, read through kubectl's JSON.

/// An Application by namespace and name, on one cluster.
#[derive(Clone)]
pub struct FerryApp {
    pub cluster: Cluster,
    pub namespace: String,
    pub name: String,
}

/// The `type` condition of an Application (or any kstatus object) as JSON.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// A one-line summary of an Application's status for failure messages.
pub fn summary(app: &Value) -> String {
    let s = &app["status"];
    let conds: Vec<String> = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{}={} ({}: {})", c["type"], c["status"], c["reason"], c["message"]))
        .collect();
    format!(
        "generation={} observedGeneration={} sync={}/{} health={}/{} lastApplied={} lastAttempted={} conditions=[{}] inventory={} resourceVersion={}",
        app["metadata"]["generation"],
        s["observedGeneration"],
        s["sync"]["status"],
        s["sync"]["revision"],
        s["health"]["status"],
        s["health"]["message"],
        s["lastAppliedRevision"],
        s["lastAttemptedRevision"],
        conds.join(", "),
        s["inventory"].as_array().map_or(0, Vec::len),
        app["metadata"]["resourceVersion"],
    )
}

/// Removes ferry's finalizer from every Application in `namespace`: once the test's ferry has
/// stopped nothing else would, and the namespace would hang in Terminating forever.
pub fn release_applications(cluster: &Cluster, namespace: &str) {
    let list = cluster.kubectl(&["-n", namespace, "get", "applications.ferry.dev", "-o", "name"]);
    for app in list.stdout.lines().filter(|l| !l.is_empty()) {
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        let _ = cluster.kubectl(&["-n", namespace, "patch", app, "--type=merge", "-p", patch]);
    }
}

/// `main@sha1:<sha>`, as `status.sync.revision` names a commit of branch main.
pub fn main_revision(sha: &str) -> String {
    format!("main@sha1:{sha}")
}

/// An Event as the tests look at it.
#[derive(Debug, Clone)]
pub struct Event {
    pub type_: String,
    pub reason: String,
    pub message: String,
}

impl FerryApp {
    pub fn new(cluster: &Cluster, namespace: &str, name: &str) -> FerryApp {
        FerryApp { cluster: cluster.clone(), namespace: namespace.to_string(), name: name.to_string() }
    }

    /// The Application as JSON, or `None` when it does not exist.
    pub fn get(&self) -> Option<Value> {
        get_json(&self.cluster, &["-n", &self.namespace, "get", "applications.ferry.dev", &self.name])
    }

    /// The Application as JSON; panics when it does not exist.
    pub fn json(&self) -> Value {
        self.get().unwrap_or_else(|| panic!("Application {}/{} does not exist", self.namespace, self.name))
    }

    /// Polls the Application until `check` accepts it; panics with `what` and the last
    /// observation after `timeout`.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Result<T, String>,
    ) -> T {
        let what = format!("Application {}/{}: {what}", self.namespace, self.name);
        wait_until(&what, timeout, || {
            let app = self.get().ok_or_else(|| "the Application does not exist".to_string())?;
            check(&app).map_err(|why| format!("{why}; status: {}", summary(&app)))
        })
    }

    /// Waits until the Application reports the commit `sha` of main Synced and Healthy, Ready
    /// with reason ReconciliationSucceeded, for its current generation. Returns it.
    pub fn wait_synced(&self, sha: &str, timeout: Duration) -> Value {
        let revision = main_revision(sha);
        self.wait_synced_where(&revision, timeout, |r| r == revision)
    }

    /// Waits until Synced and Healthy at a revision starting with `prefix` (a chart's
    /// `podinfo@6.5.4@sha256:`, whose digest a test does not know in advance).
    pub fn wait_synced_prefix(&self, prefix: &str, timeout: Duration) -> Value {
        self.wait_synced_where(&format!("{prefix}..."), timeout, |r| r.starts_with(prefix))
    }

    fn wait_synced_where(&self, shown: &str, timeout: Duration, at: impl Fn(&str) -> bool) -> Value {
        self.wait(&format!("Synced and Healthy at {shown}"), timeout, |app| {
            let s = &app["status"];
            if !at(s["sync"]["revision"].as_str().unwrap_or_default()) {
                return Err("not at the revision yet".into());
            }
            if s["sync"]["status"] != "Synced" {
                return Err("not Synced".into());
            }
            if s["health"]["status"] != "Healthy" {
                return Err("not Healthy".into());
            }
            let ready = condition(app, "Ready").ok_or("no Ready condition")?;
            if ready["status"] != "True" || ready["reason"] != "ReconciliationSucceeded" {
                return Err("Ready is not True/ReconciliationSucceeded".into());
            }
            if s["observedGeneration"] != app["metadata"]["generation"] {
                return Err("observedGeneration is behind".into());
            }
            Ok(app.clone())
        })
    }

    /// Waits until the Ready condition is False with `reason` (and observedGeneration is current);
    /// returns the Application.
    pub fn wait_not_ready(&self, reason: &str, timeout: Duration) -> Value {
        self.wait(&format!("Ready=False with reason {reason}"), timeout, |app| {
            let ready = condition(app, "Ready").ok_or("no Ready condition")?;
            if ready["status"] != "False" || ready["reason"] != reason {
                return Err(format!("Ready is {}/{}", ready["status"], ready["reason"]));
            }
            if app["status"]["observedGeneration"] != app["metadata"]["generation"] {
                return Err("observedGeneration is behind".into());
            }
            Ok(app.clone())
        })
    }

    /// Waits until the Ready condition is False with `reason` for an attempt at commit `sha`.
    pub fn wait_refused(&self, reason: &str, sha: &str, timeout: Duration) -> Value {
        self.wait(&format!("{reason} for {}", &sha[..7]), timeout, |app| {
            let ready = condition(app, "Ready").ok_or("no Ready condition")?;
            let attempted = app["status"]["lastAttemptedRevision"].as_str().unwrap_or_default();
            if ready["status"] == "False" && ready["reason"] == reason && attempted.contains(sha) {
                Ok(app.clone())
            } else {
                Err("not refused yet".into())
            }
        })
    }

    /// Events whose involved object is this Application (any kind with its name in its namespace).
    pub fn events(&self) -> Vec<Event> {
        let selector = format!("involvedObject.name={}", self.name);
        let json =
            get_json(&self.cluster, &["-n", &self.namespace, "get", "events", "--field-selector", &selector])
                .unwrap_or(Value::Null);
        json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["kind"] == "Application")
            .map(|e| Event {
                type_: e["type"].as_str().unwrap_or_default().to_string(),
                reason: e["reason"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Waits for an Event with `type_` and `reason` whose message contains every one of `words`.
    pub fn wait_event(&self, type_: &str, reason: &str, words: &[&str], timeout: Duration) -> Event {
        wait_until(
            &format!(
                "a {type_} Event {reason} mentioning {words:?} on Application {}/{}",
                self.namespace, self.name
            ),
            timeout,
            || {
                let events = self.events();
                events
                    .iter()
                    .find(|e| {
                        e.type_ == type_ && e.reason == reason && words.iter().all(|w| e.message.contains(w))
                    })
                    .cloned()
                    .ok_or_else(|| format!("events so far: {events:?}"))
            },
        )
    }

    /// `ferry sync NAME -n NS`: asks ferry to re-check Git and reconcile at once.
    pub fn ferry_sync(&self) {
        let run: Run = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["sync", &self.name, "-n", &self.namespace])
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .output()
            .expect("run ferry sync")
            .into();
        assert!(
            run.success,
            "ferry sync {} -n {} failed: {}{}",
            self.name, self.namespace, run.stdout, run.stderr
        );
    }

    /// Sets `ferry.dev/reconcile-at` to a fresh value with kubectl; returns the Application's
    /// resourceVersion after that write.
    pub fn annotate_reconcile_at(&self) -> String {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        // A distinct value each time (RFC 3339 with a counter in the fraction) so the write is a change.
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = format!("{}.{:09}Z", rfc3339_seconds(secs), seq);
        self.cluster
            .kubectl_ok(&[
                "-n",
                &self.namespace,
                "annotate",
                "--overwrite",
                "applications.ferry.dev",
                &self.name,
                &format!("ferry.dev/reconcile-at={stamp}"),
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
            .trim()
            .to_string()
    }

    /// A JSON merge patch of the Application (e.g. `{"spec":{"suspend":true}}`).
    pub fn patch(&self, merge_patch: &Value) {
        self.cluster.kubectl_ok(&[
            "-n",
            &self.namespace,
            "patch",
            "applications.ferry.dev",
            &self.name,
            "--type=merge",
            "-p",
            &merge_patch.to_string(),
        ]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` for a Unix time (UTC), without a date library.
fn rfc3339_seconds(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `kubectl <args> -o json`, parsed; `None` when the object is not found. Panics on other errors.
pub fn get_json(cluster: &Cluster, args: &[&str]) -> Option<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json", "--show-managed-fields"]);
    let run = cluster.kubectl(&all);
    if !run.success {
        if run.stderr.contains("NotFound") || run.stderr.contains("not found") {
            return None;
        }
        panic!("kubectl {} failed: {}", all.join(" "), run.stderr);
    }
    Some(
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}): {}", run.stdout)),
    )
}

/// The ownership labels ferry must put on an object it manages for Application `ns/name`.
pub fn assert_managed_by(obj: &Value, app_ns: &str, app_name: &str) {
    let labels = &obj["metadata"]["labels"];
    let what = format!("{} {}/{}", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "ferry", "{what} labels: {labels}");
    assert_eq!(labels["ferry.dev/app-name"], app_name, "{what} labels: {labels}");
    assert_eq!(labels["ferry.dev/app-namespace"], app_ns, "{what} labels: {labels}");
    let managers = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    assert!(
        managers.iter().any(|m| m["manager"] == "ferry" && m["operation"] == "Apply"),
        "{what} has no server-side apply by field manager ferry: {managers:?}"
    );
}

/// Runs the `ferry` CLI (`status`, `promote`, ...) against `cluster`; fails the test when it
/// fails. Returns its stdout.
pub fn ferry_cli(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ferry {args:?} failed: {stdout}{stderr}");
    stdout.into_owned()
}

/// The value of one series (`name{labels}` exactly as ferry prints it) on ferry's /metrics;
/// 0 when absent.
pub fn metric(ferry: &Ferry, series: &str) -> f64 {
    let body = http_get(&ferry.http_address(), "/metrics").body;
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `ferry diff ARGS`: (exit code, stdout, stderr).
pub fn ferry_diff(s: &crate::support::Scenario, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("diff")
        .args(args)
        .env("KUBECONFIG", &s.cluster.kubeconfig)
        .env("FERRY_KUSTOMIZE", crate::support::kustomize_bin())
        .env("FERRY_HELM", crate::support::helm_bin())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry diff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Successful reconciles ferry has counted so far.
pub fn reconciles(ferry: &Ferry) -> f64 {
    metric(ferry, "ferry_reconcile_total{result=\"success\"}")
}

/// Waits until ferry has finished `n` more successful reconciles than now.
pub fn wait_reconciles(ferry: &Ferry, n: f64) {
    let before = reconciles(ferry);
    crate::support::wait_until(&format!("{n} more reconciles"), crate::support::T, || {
        let now = reconciles(ferry);
        if now >= before + n { Ok(()) } else { Err(format!("{now} reconciles, from {before}")) }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339_seconds(0), "1970-01-01T00:00:00");
        assert_eq!(super::rfc3339_seconds(951_827_696), "2000-02-29T12:34:56");
        assert_eq!(super::rfc3339_seconds(1_767_225_599), "2025-12-31T23:59:59");
    }
}
