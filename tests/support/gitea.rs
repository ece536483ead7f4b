//! A real Gitea for tests: `gitea web` (built by `tests/testenv/build.sh gitea`, on demand) as a
//! child process on a free loopback port, with SQLite and its config, data and repositories in a
//! temp dir; an admin user and an API token of scope `all` made with Gitea's own CLI. Killed
//! when dropped.
//!
//! The config: installed (`INSTALL_LOCK`), offline, no mailer, no SSH, default branch `main`,
//! and webhooks may be delivered to loopback and private addresses (where ferry listens in tests).
//!
//! Repositories are made through the API; commits are pushed through Git over HTTP with the token
//! (a working clone per repository, as [`super::GitServer`] does); statuses, pull requests,
//! files and webhooks are read and made through the API (`curl`).

use std::{
    collections::HashMap,
    fs::{self, File},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::Duration,
};

use serde_json::{Value, json};

use super::{testenv_tool, wait_until};

/// The admin user (and owner of the repositories the helpers make).
pub const GITEA_ADMIN: &str = "ferry-admin";
const ADMIN_PASSWORD: &str = "ferry-admin-password-1";
/// How long Gitea may take to migrate its database and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A deadline for one API call.
const CALL_TIMEOUT: &str = "30";

/// A running Gitea.
pub struct Gitea {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
    token: String,
    /// One lock per repository's working clone.
    work_locks: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
}

/// `gitea` at `GITEA_VERSION`.
pub fn gitea_bin() -> PathBuf {
    testenv_tool("gitea", "GITEA_VERSION", "gitea")
}

impl Gitea {
    /// Starts Gitea and makes the admin and its token. Retries on another free port when the one
    /// probed was taken before Gitea bound it.
    pub fn start() -> Gitea {
        let bin = gitea_bin();
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new().prefix("ferry-gitea-").tempdir().expect("temp dir");
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a loopback address");
            write_config(&bin, dir.path(), addr);
            cli(&bin, dir.path(), &["migrate"]);
            cli(
                &bin,
                dir.path(),
                &[
                    "admin",
                    "user",
                    "create",
                    "--username",
                    GITEA_ADMIN,
                    "--password",
                    ADMIN_PASSWORD,
                    "--email",
                    "admin@ferry.invalid",
                    "--admin",
                    "--must-change-password=false",
                ],
            );
            let token = cli(
                &bin,
                dir.path(),
                &[
                    "admin",
                    "user",
                    "generate-access-token",
                    "-u",
                    GITEA_ADMIN,
                    "-t",
                    "ferry-tests",
                    "--scopes",
                    "all",
                    "--raw",
                ],
            );
            let token = token.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_string();
            assert!(
                token.len() >= 20 && token.bytes().all(|b| b.is_ascii_hexdigit()),
                "no token from gitea: {token:?}"
            );
            let log = File::create(dir.path().join("gitea.log")).expect("create gitea.log");
            let child = gitea_command(&bin, dir.path())
                .arg("web")
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut gitea =
                Gitea { dir, addr, child: Some(child), token, work_locks: Mutex::new(HashMap::new()) };
            if gitea.wait_ready() {
                return gitea;
            }
            gitea.stop();
            last_log = gitea.log();
        }
        panic!("Gitea did not become ready; its last log:\n{last_log}");
    }

    /// Waits for `/api/v1/version` to answer; false when Gitea exits first.
    fn wait_ready(&mut self) -> bool {
        let url = format!("{}/api/v1/version", self.url());
        let child = self.child.as_mut().expect("gitea was started");
        let mut exited = false;
        wait_until("Gitea to answer /api/v1/version", READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = true;
                return Ok(status.to_string());
            }
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "5", "-f", &url])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("curl: {e}"))?;
            let body = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && body.contains("\"version\"") {
                Ok(String::new())
            } else {
                Err(format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        !exited
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:<port>` (Gitea's ROOT_URL without the trailing `/`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin's API token (scope `all`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Gitea's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("gitea.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>/<admin>/<repo>.git`: the HTTP clone URL.
    pub fn clone_url(&self, repo: &str) -> String {
        format!("{}/{GITEA_ADMIN}/{repo}.git", self.url())
    }

    /// The clone URL with the admin and its token as credentials.
    pub fn clone_url_with_credentials(&self, repo: &str) -> String {
        format!("http://{GITEA_ADMIN}:{}@{}/{GITEA_ADMIN}/{repo}.git", self.token, self.addr)
    }

    /// One API call (`path` after `/api/v1`, e.g. `/user/repos`) with the admin's token;
    /// returns the status and the body as JSON (`Null` when empty or not JSON).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.api_text(method, path, body, &self.token);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One API call with any token, the body as text.
    pub fn api_text(&self, method: &str, path: &str, body: Option<&Value>, token: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", CALL_TIMEOUT, "-X", method, "-w", "\n%{http_code}"]).args([
            "-H",
            &format!("Authorization: token {token}"),
            "-H",
            "Accept: application/json",
        ]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", &body.to_string()]);
        }
        let out =
            cmd.arg(format!("{}{path}", self.api_url())).stdin(Stdio::null()).output().expect("run curl");
        assert!(out.status.success(), "curl {method} {path}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or_else(|_| panic!("no status from curl: {text}")), body.to_string())
    }

    /// The API call, which must answer 2xx; its JSON.
    pub fn api_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, json) = self.api(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {json}\nGitea log:\n{}",
            self.log()
        );
        json
    }

    /// A public repository of the admin: with an initial commit (README) on `main` when
    /// `auto_init`, else empty.
    pub fn create_repo(&self, name: &str, auto_init: bool) {
        let body = json!({"name": name, "auto_init": auto_init, "default_branch": "main", "readme": "Default", "private": false});
        self.api_ok("POST", "/user/repos", Some(&body));
    }

    /// The commit `branch` points at, if it exists.
    pub fn branch_head(&self, repo: &str, branch: &str) -> Option<String> {
        let (status, json) = self.api("GET", &format!("/repos/{GITEA_ADMIN}/{repo}/branches/{branch}"), None);
        (status == 200).then(|| json["commit"]["id"].as_str().map(str::to_string)).flatten()
    }

    /// A file's text at `branch`, or `None` when it (or the branch) does not exist.
    pub fn read_file(&self, repo: &str, branch: &str, path: &str) -> Option<String> {
        let url = format!("/repos/{GITEA_ADMIN}/{repo}/raw/{path}?ref={branch}");
        let (status, text) = self.api_text("GET", &url, None, &self.token);
        (status == 200).then_some(text)
    }

    /// The statuses of commit `sha`, newest first (each with `context`, `status`, `description`, `target_url`).
    pub fn commit_statuses(&self, repo: &str, sha: &str) -> Vec<Value> {
        let json =
            self.api_ok("GET", &format!("/repos/{GITEA_ADMIN}/{repo}/commits/{sha}/statuses?limit=50"), None);
        json.as_array().cloned().unwrap_or_default()
    }

    /// Pull requests in `state` (`open`, `closed`, `all`).
    pub fn pull_requests(&self, repo: &str, state: &str) -> Vec<Value> {
        let json =
            self.api_ok("GET", &format!("/repos/{GITEA_ADMIN}/{repo}/pulls?state={state}&limit=50"), None);
        json.as_array().cloned().unwrap_or_default()
    }

    /// One pull request (`head.ref`, `base.ref`, `title`, `body`, `html_url`, `state`...).
    pub fn pull_request(&self, repo: &str, number: u64) -> Value {
        self.api_ok("GET", &format!("/repos/{GITEA_ADMIN}/{repo}/pulls/{number}"), None)
    }

    /// A pull request's diff, as text.
    pub fn pull_request_diff(&self, repo: &str, number: u64) -> String {
        let (status, text) = self.api_text(
            "GET",
            &format!("/repos/{GITEA_ADMIN}/{repo}/pulls/{number}.diff"),
            None,
            &self.token,
        );
        assert_eq!(status, 200, "pull request {number} diff: {text}");
        text
    }

    /// The paths a pull request changes.
    pub fn pull_request_files(&self, repo: &str, number: u64) -> Vec<String> {
        let json = self.api_ok("GET", &format!("/repos/{GITEA_ADMIN}/{repo}/pulls/{number}/files"), None);
        let files = json.as_array().cloned().unwrap_or_default();
        files.iter().filter_map(|f| f["filename"].as_str().map(str::to_string)).collect()
    }

    /// A Gitea-type webhook on `repo` for push events, posting JSON to `url` signed with
    /// `secret`; returns its id.
    pub fn create_webhook(&self, repo: &str, url: &str, secret: &str) -> u64 {
        let body = json!({
            "type": "gitea",
            "active": true,
            "events": ["push"],
            "config": {"url": url, "content_type": "json", "secret": secret},
        });
        let json = self.api_ok("POST", &format!("/repos/{GITEA_ADMIN}/{repo}/hooks"), Some(&body));
        json["id"].as_u64().unwrap_or_else(|| panic!("no webhook id in {json}"))
    }

    /// Writes `files` on `branch` (created from the repository's HEAD, or as the first branch of an
    /// empty one), commits and pushes over HTTP with the token; returns the commit pushed.
    pub fn commit_files(&self, repo: &str, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let lock = self.work_lock(repo);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let work = self.prepare_branch(repo, branch);
        for (rel, contents) in files {
            assert!(
                !rel.starts_with('/') && !rel.split('/').any(|s| s == ".." || s.is_empty()),
                "bad path {rel}"
            );
            let full = work.join(rel);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).expect("create the file's directory");
            }
            fs::write(&full, contents).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
            self.git(&work, &["add", "-f", "--", rel]);
        }
        self.git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&work, &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")]);
        self.git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    fn work_lock(&self, repo: &str) -> std::sync::Arc<Mutex<()>> {
        let mut locks = self.work_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(repo.to_string()).or_default().clone()
    }

    /// The working clone of `repo` on `branch`: from `origin/branch`, else from the current
    /// HEAD, else an orphan branch (empty repository).
    fn prepare_branch(&self, repo: &str, branch: &str) -> PathBuf {
        let work = self.dir.path().join("work").join(repo);
        if !work.join(".git").exists() {
            fs::create_dir_all(&work).expect("create the working clone's directory");
            self.git(&work, &["clone", "-q", &self.clone_url_with_credentials(repo), "."]);
        }
        self.git(&work, &["fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*"]);
        let remote = format!("refs/remotes/origin/{branch}");
        if self.git_ok(&work, &["rev-parse", "--verify", "-q", &format!("{remote}^{{commit}}")]) {
            self.git(&work, &["checkout", "-q", "-f", "-B", branch, &remote]);
        } else if self.git_ok(&work, &["rev-parse", "--verify", "-q", "HEAD^{commit}"]) {
            self.git(&work, &["checkout", "-q", "-f", "-B", branch]);
        } else {
            self.git(&work, &["checkout", "-q", "--orphan", branch]);
        }
        work
    }

    fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let home = self.dir.path().join("git-home");
        let mut cmd = Command::new("git");
        cmd.args([
            "-c",
            "user.name=ferry-test",
            "-c",
            "user.email=test@ferry.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args([
            "-c",
            "credential.helper=",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
        cmd
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out: Output = self.git_command(dir, args).output().expect("run git");
        let redact = |s: &[u8]| String::from_utf8_lossy(s).replace(&self.token, "***");
        assert!(
            out.status.success(),
            "git {} failed in {}: {}{}",
            args.join(" ").replace(&self.token, "***"),
            dir.display(),
            redact(&out.stderr),
            redact(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn git_ok(&self, dir: &Path, args: &[&str]) -> bool {
        self.git_command(dir, args).output().is_ok_and(|o| o.status.success())
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `gitea` command on the config in `dir`.
fn gitea_command(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(dir.join("app.ini")).arg("--work-path").arg(dir);
    cmd.env("HOME", dir.join("home")).env("GITEA_WORK_DIR", dir).stdin(Stdio::null());
    cmd
}

/// Runs a `gitea` CLI command to completion; its stdout.
fn cli(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = gitea_command(bin, dir).args(args).output().expect("run gitea");
    assert!(
        out.status.success(),
        "gitea {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `app.ini` for a throwaway instance at `addr`. Templates and options (README and licence
/// templates for auto-init) come from the build's `share/` (no bindata in the test build).
fn write_config(bin: &Path, dir: &Path, addr: SocketAddr) {
    let share = bin.parent().and_then(Path::parent).expect("<dir>/bin/gitea").join("share");
    let d = dir.display();
    let config = format!(
        "APP_NAME = ferry-test\nRUN_MODE = prod\nWORK_PATH = {d}\n\
         ; Tests may run as root (containers, CI); Gitea refuses that unless told.\n\
         I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n\
         [server]\nPROTOCOL = http\nHTTP_ADDR = {ip}\nHTTP_PORT = {port}\nROOT_URL = http://{addr}/\n\
         DISABLE_SSH = true\nSTART_SSH_SERVER = false\nOFFLINE_MODE = true\nLFS_START_SERVER = false\n\
         STATIC_ROOT_PATH = {share}\nAPP_DATA_PATH = {d}/data\n\
         [database]\nDB_TYPE = sqlite3\nPATH = {d}/data/gitea.db\n\
         [repository]\nROOT = {d}/repos\nDEFAULT_BRANCH = main\n\
         [security]\nINSTALL_LOCK = true\nSECRET_KEY = ferry-test-secret-key\n\
         ; Webhooks may go to ferry on 127.0.0.1 (v1.27 reads this here; [webhook] is deprecated).\n\
         ALLOWED_HOST_LIST = loopback,private,*\n\
         [service]\nDISABLE_REGISTRATION = true\nREQUIRE_SIGNIN_VIEW = false\n\
         [mailer]\nENABLED = false\n\
         [log]\nMODE = console\nLEVEL = Info\nROOT_PATH = {d}/log\n\
         [cron]\nENABLED = false\n[indexer]\nREPO_INDEXER_ENABLED = false\n\
         [session]\nPROVIDER = memory\n[cache]\nADAPTER = memory\n",
        ip = addr.ip(),
        port = addr.port(),
        share = share.display(),
    );
    fs::write(dir.join("app.ini"), config).expect("write app.ini");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}
