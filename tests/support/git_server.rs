//! Git server fixture for integration tests.
//!
//! Hosts one bare repository (`repo.git`) served by the system's `git http-backend`
//! (run as a CGI program) over HTTP on a free loopback port, optionally behind HTTP
//! basic auth. Tests can commit, remove and tag files through the fixture; every
//! change is pushed over HTTP through the server itself.
//!
//! Only the standard library is used. The server and its temporary directory go away
//! when the [`GitServer`] is dropped.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maximum size of the request line plus headers (and of chunked trailers).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Maximum size of a (decoded) request body.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Socket read/write timeout for client connections.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How many http-backend stderr lines are kept for debugging.
const MAX_STDERR_LINES: usize = 200;
/// Name of the repository hosted by the fixture.
const REPO_NAME: &str = "repo.git";
/// Realm announced in `WWW-Authenticate`.
const REALM: &str = "ferry-test";

/// HTTP basic-auth credentials required by a [`GitServer`].
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth").field("username", &self.username).field("password", &"***").finish()
    }
}

/// State shared between the fixture and the server threads.
struct Shared {
    stop: AtomicBool,
    /// The server is "stopped": its port is closed (connections refused) until cleared.
    down: AtomicBool,
    /// Milliseconds every request waits before it is served: a slow server.
    delay_ms: AtomicU64,
    project_root: PathBuf,
    home: PathBuf,
    auth: Option<BasicAuth>,
    /// When set, every request must carry `Authorization: Bearer <token>` instead.
    bearer: Option<String>,
    backend_stderr: Mutex<VecDeque<String>>,
}

impl Shared {
    fn record_stderr(&self, line: String) {
        eprintln!("[git-server] {line}");
        let mut log = self.backend_stderr.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if log.len() >= MAX_STDERR_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}

/// A bare Git repository served over HTTP by `git http-backend`.
pub struct GitServer {
    root: PathBuf,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// Serialises use of the working clone.
    work_lock: Mutex<()>,
}

impl fmt::Debug for GitServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitServer")
            .field("url", &self.url())
            .field("root", &self.root)
            .field("auth", &self.shared.auth)
            .field("bearer", &self.shared.bearer.as_ref().map(|_| "***"))
            .finish()
    }
}

impl GitServer {
    /// Starts a server hosting one empty bare repository named `repo.git` (initial branch `main`).
    pub fn start() -> GitServer {
        Self::start_inner(None, None)
    }

    /// Same, requiring HTTP basic auth with these credentials for every request.
    pub fn start_with_auth(username: &str, password: &str) -> GitServer {
        Self::start_inner(
            Some(BasicAuth { username: username.to_string(), password: password.to_string() }),
            None,
        )
    }

    /// Same, requiring `Authorization: Bearer <token>` for every request (answering 401 with a
    /// Basic challenge otherwise, as hosting services that take tokens do). The fixture's own
    /// pushes send the header through `http.extraHeader`.
    pub fn start_with_bearer(token: &str) -> GitServer {
        Self::start_inner(None, Some(token.to_string()))
    }

    fn start_inner(auth: Option<BasicAuth>, bearer: Option<String>) -> GitServer {
        let root = make_temp_dir();
        let project_root = root.join("repos");
        let home = root.join("home");
        for dir in [&project_root, &home] {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }

        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a loopback port for the git server: {e}"));
        let addr =
            listener.local_addr().unwrap_or_else(|e| panic!("cannot read the git server's address: {e}"));

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            project_root,
            home,
            auth,
            bearer,
            backend_stderr: Mutex::new(VecDeque::new()),
        });

        // Build the fixture before spawning anything so that a panic during
        // initialisation still cleans up the temporary directory.
        let mut server = GitServer {
            root,
            addr,
            shared: Arc::clone(&shared),
            accept_thread: None,
            work_lock: Mutex::new(()),
        };

        let bare = server.bare_repo_path();
        let bare_str = bare.to_string_lossy().into_owned();
        server.git(&server.root, &["init", "-q", "--bare", "-b", "main", &bare_str]);
        server.git(&bare, &["config", "http.receivepack", "true"]);
        server.git(&bare, &["config", "http.uploadpack", "true"]);

        let thread_shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(format!("git-server-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, addr, thread_shared))
            .unwrap_or_else(|e| panic!("cannot spawn the git server thread: {e}"));
        server.accept_thread = Some(handle);
        server
    }

    /// URL of the repository without credentials, e.g. `http://127.0.0.1:PORT/repo.git`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/{REPO_NAME}", self.addr.port())
    }

    /// URL with credentials embedded (`http://user:pass@127.0.0.1:PORT/repo.git`);
    /// equals [`GitServer::url`] without auth.
    pub fn url_with_credentials(&self) -> String {
        match &self.shared.auth {
            None => self.url(),
            Some(auth) => format!(
                "http://{}:{}@127.0.0.1:{}/{REPO_NAME}",
                percent_encode_userinfo(&auth.username),
                percent_encode_userinfo(&auth.password),
                self.addr.port()
            ),
        }
    }

    /// The credentials required by the server, if any.
    pub fn auth(&self) -> Option<&BasicAuth> {
        self.shared.auth.as_ref()
    }

    /// Filesystem path of the bare repository (for assertions).
    pub fn bare_repo_path(&self) -> PathBuf {
        self.shared.project_root.join(REPO_NAME)
    }

    /// `git <args>` in the bare repository; its output, trimmed.
    pub fn bare_git(&self, args: &[&str]) -> String {
        let bare = self.bare_repo_path();
        self.git(&bare, args).trim().to_string()
    }

    /// The commit `branch` points at in the bare repository (what a clone would get).
    pub fn head(&self, branch: &str) -> String {
        self.bare_git(&["rev-parse", &format!("refs/heads/{branch}")])
    }

    /// `git show <spec>` in the bare repository (`<commit>:<path>` gives a file's contents).
    pub fn show(&self, spec: &str) -> String {
        let bare = self.bare_repo_path();
        self.git(&bare, &["show", spec])
    }

    /// Recent stderr lines written by `git http-backend` (oldest first), for debugging.
    pub fn backend_stderr(&self) -> Vec<String> {
        self.shared
            .backend_stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Writes the given files (relative path -> contents; parent directories created) into a
    /// working clone, commits them on `branch` with `message`, and pushes over HTTP (through the
    /// server, with credentials when auth is configured). Files not listed are left as they were
    /// in the previous commit of that branch. Returns the 40-hex commit SHA pushed.
    pub fn commit_files(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        self.commit_files_dated(branch, files, message, None)
    }

    /// Like [`GitServer::commit_files`], with the commit's author and committer time set to
    /// `date` (unix seconds) instead of now: a commit made earlier and pushed later.
    pub fn commit_files_at(&self, branch: &str, files: &[(&str, &str)], message: &str, date: i64) -> String {
        self.commit_files_dated(branch, files, message, Some(date))
    }

    fn commit_files_dated(
        &self,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
        date: Option<i64>,
    ) -> String {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.prepare_branch(branch);

        let mut add_args: Vec<String> = vec!["add".into(), "-f".into(), "--".into()];
        for (rel, contents) in files {
            let rel_path = checked_relative_path(rel);
            let full = work.join(&rel_path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
            }
            fs::write(&full, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", full.display()));
            add_args.push(rel_path.to_string_lossy().into_owned());
        }
        if !files.is_empty() {
            let add_refs: Vec<&str> = add_args.iter().map(String::as_str).collect();
            self.git(&work, &add_refs);
        }
        self.commit_and_push_at(&work, branch, message, date)
    }

    /// Commits a symlink at `path` pointing at `target` (any text, even outside the tree) on
    /// `branch` and pushes; returns the SHA.
    pub fn commit_symlink(&self, branch: &str, path: &str, target: &str, message: &str) -> String {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.prepare_branch(branch);
        let rel = checked_relative_path(path);
        let full = work.join(&rel);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        let _ = fs::remove_file(&full);
        std::os::unix::fs::symlink(target, &full)
            .unwrap_or_else(|e| panic!("cannot create symlink {}: {e}", full.display()));
        let rel_str = rel.to_string_lossy().into_owned();
        self.git(&work, &["add", "-f", "--", &rel_str]);
        self.commit_and_push(&work, branch, message)
    }

    /// Removes files in a new commit and pushes; returns the SHA.
    pub fn remove_files(&self, branch: &str, paths: &[&str], message: &str) -> String {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.prepare_branch(branch);

        if !paths.is_empty() {
            let mut rm_args: Vec<String> =
                vec!["rm".into(), "-r".into(), "-f".into(), "-q".into(), "--".into()];
            for rel in paths {
                rm_args.push(checked_relative_path(rel).to_string_lossy().into_owned());
            }
            let rm_refs: Vec<&str> = rm_args.iter().map(String::as_str).collect();
            self.git(&work, &rm_refs);
        }
        self.commit_and_push(&work, branch, message)
    }

    /// Creates a lightweight tag at `commit` and pushes it.
    pub fn tag(&self, name: &str, commit: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        self.fetch(&work);
        self.git(&work, &["tag", "-f", name, commit]);
        let refspec = format!("+refs/tags/{name}:refs/tags/{name}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Creates an annotated tag (a tag object) at `commit` and pushes it.
    pub fn tag_annotated(&self, name: &str, commit: &str, message: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        self.fetch(&work);
        self.git(&work, &["tag", "-a", "-f", "-m", message, name, commit]);
        let refspec = format!("+refs/tags/{name}:refs/tags/{name}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Deletes a tag on the server.
    pub fn delete_tag(&self, name: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        let refspec = format!(":refs/tags/{name}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
        let _ = self.git_ok(&work, &["tag", "-d", name]);
    }

    /// Deletes a branch on the server (its commits stay in the repository, unreferenced).
    pub fn delete_branch(&self, name: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        let refspec = format!(":refs/heads/{name}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Points any ref (`refs/pull/7/head`) at `commit` on the server, as a forge does for a
    /// pull request.
    pub fn push_ref(&self, refname: &str, commit: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        self.fetch(&work);
        let refspec = format!("+{commit}:{refname}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Deletes any ref on the server (a pull request merged or closed).
    pub fn delete_ref(&self, refname: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        let refspec = format!(":{refname}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Force-pushes `branch` to `commit` (which must have been made through this fixture),
    /// rewriting history: later commits of the branch are no longer on it.
    pub fn force_push(&self, branch: &str, commit: &str) {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.ensure_clone();
        self.fetch(&work);
        let refspec = format!("+{commit}:refs/heads/{branch}");
        self.git(&work, &["push", "-q", "origin", &refspec]);
    }

    /// Sets a config key in the served bare repository, e.g. `uploadpack.allowAnySHA1InWant`.
    pub fn set_config(&self, key: &str, value: &str) {
        let bare = self.bare_repo_path();
        self.git(&bare, &["config", key, value]);
    }

    /// Stops serving: the listening socket is closed, so clients get "connection refused" as
    /// from a server that is down, until [`GitServer::start_serving`]. The fixture's own commits
    /// go through the server too, so a test must not commit while it is stopped.
    pub fn stop_serving(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        // Wake the blocked accept() so the loop sees the flag and closes the socket.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        wait_for("the git server's port to close", || TcpStream::connect(self.addr).is_err());
    }

    /// Serves again on the same port after [`GitServer::stop_serving`]; returns once it accepts.
    pub fn start_serving(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
        wait_for("the git server's port to open", || TcpStream::connect(self.addr).is_ok());
    }

    /// Makes every request wait `delay` before it is served (zero: at once): a slow server.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Replaces the whole tree of `branch` with exactly `files` (every other file is removed)
    /// in one commit, and pushes; returns the SHA.
    pub fn commit_tree(&self, branch: &str, files: &[(String, String)], message: &str) -> String {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.prepare_branch(branch);
        for entry in fs::read_dir(&work).unwrap_or_else(|e| panic!("cannot list {}: {e}", work.display())) {
            let path = entry.expect("a directory entry").path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            removed.unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
        }
        for (rel, contents) in files {
            let full = work.join(checked_relative_path(rel));
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
            }
            fs::write(&full, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", full.display()));
        }
        self.git(&work, &["add", "-A", "-f"]);
        self.commit_and_push(&work, branch, message)
    }

    /// Force-pushes `branch` to a new commit whose tree is the branch's current tree and whose
    /// parent is `parent` (an earlier commit of it): history is rewritten, the commits after
    /// `parent` leave the branch, and the files stay as they were. Returns the new SHA.
    pub fn rewrite_branch(&self, branch: &str, parent: &str, message: &str) -> String {
        let _guard = self.work_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let work = self.prepare_branch(branch);
        let sha = self.git(&work, &["commit-tree", "HEAD^{tree}", "-p", parent, "-m", message]);
        let sha = sha.trim().to_string();
        self.git(&work, &["push", "-q", "origin", &format!("+{sha}:refs/heads/{branch}")]);
        sha
    }

    // ----- working clone helpers -----

    fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Clones the repository through the server on first use; returns the clone's path.
    fn ensure_clone(&self) -> PathBuf {
        let work = self.work_dir();
        if !work.join(".git").exists() {
            let url = self.url_with_credentials();
            let work_str = work.to_string_lossy().into_owned();
            self.git(&self.root, &["clone", "-q", &url, &work_str]);
        }
        work
    }

    fn fetch(&self, work: &Path) {
        self.git(work, &["fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*"]);
    }

    /// Fetches, then checks out `branch` in the working clone: based on `origin/branch` if it
    /// exists, else on the current HEAD, else as an orphan (unborn) branch.
    fn prepare_branch(&self, branch: &str) -> PathBuf {
        let work = self.ensure_clone();
        self.fetch(&work);

        let remote_ref = format!("refs/remotes/origin/{branch}");
        let remote_commit = format!("{remote_ref}^{{commit}}");
        if self.git_ok(&work, &["rev-parse", "--verify", "-q", &remote_commit]) {
            self.git(&work, &["checkout", "-q", "-f", "-B", branch, &remote_ref]);
        } else if self.git_ok(&work, &["rev-parse", "--verify", "-q", "HEAD^{commit}"]) {
            self.git(&work, &["checkout", "-q", "-f", "-B", branch]);
        } else {
            let head_ref = format!("refs/heads/{branch}");
            self.git(&work, &["symbolic-ref", "HEAD", &head_ref]);
        }
        self.git(&work, &["clean", "-q", "-f", "-d", "-x"]);
        work
    }

    fn commit_and_push(&self, work: &Path, branch: &str, message: &str) -> String {
        self.commit_and_push_at(work, branch, message, None)
    }

    fn commit_and_push_at(&self, work: &Path, branch: &str, message: &str, date: Option<i64>) -> String {
        let args = ["commit", "-q", "--no-verify", "--allow-empty", "-m", message];
        match date {
            None => {
                self.git(work, &args);
            }
            Some(date) => {
                let stamp = format!("@{date} +0000");
                let out = self
                    .git_command(work, &args)
                    .env("GIT_AUTHOR_DATE", &stamp)
                    .env("GIT_COMMITTER_DATE", &stamp)
                    .output()
                    .expect("run git commit");
                assert!(out.status.success(), "git commit failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let sha = self.git(work, &["rev-parse", "HEAD"]).trim().to_string();
        assert!(
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "unexpected commit id from git rev-parse HEAD: {sha:?}"
        );
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git(work, &["push", "-q", "origin", &refspec]);
        sha
    }

    // ----- git CLI helpers -----

    fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.args([
            "-c",
            "user.name=ferry-test",
            "-c",
            "user.email=test@ferry.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "credential.helper=",
            "-c",
            "core.autocrlf=false",
            "-c",
            "advice.detachedHead=false",
        ]);
        if let Some(token) = &self.shared.bearer {
            cmd.args(["-c", &format!("http.extraHeader=Authorization: Bearer {token}")]);
        }
        cmd.args(args).current_dir(dir);
        for var in SCRUBBED_GIT_ENV {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.shared.home)
            .env("XDG_CONFIG_HOME", self.shared.home.join(".config"))
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    fn run_git(&self, dir: &Path, args: &[&str]) -> (String, io::Result<Output>) {
        let cmdline = self.redact(&format!("git {}", args.join(" ")));
        (cmdline, self.git_command(dir, args).output())
    }

    /// Runs git and returns its stdout; panics (with redacted details) on failure.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let (cmdline, result) = self.run_git(dir, args);
        let output = match result {
            Ok(output) => output,
            Err(e) => panic!("cannot run `{cmdline}` in {}: {e}", dir.display()),
        };
        if !output.status.success() {
            let stderr = self.redact(&String::from_utf8_lossy(&output.stderr));
            let stdout = self.redact(&String::from_utf8_lossy(&output.stdout));
            let backend = self.redact(&self.backend_stderr().join("\n"));
            panic!(
                "git command failed: `{cmdline}`\n  in: {}\n  status: {}\n  stderr:\n{}\n  stdout:\n{}\n  recent http-backend stderr:\n{}",
                dir.display(),
                output.status,
                stderr.trim_end(),
                stdout.trim_end(),
                backend.trim_end(),
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs git and reports whether it succeeded.
    fn git_ok(&self, dir: &Path, args: &[&str]) -> bool {
        matches!(self.run_git(dir, args).1, Ok(output) if output.status.success())
    }

    /// Removes the credentials from any text that may contain the credential URL.
    fn redact(&self, text: &str) -> String {
        if let Some(token) = &self.shared.bearer {
            return text.replace(token.as_str(), "***");
        }
        let Some(auth) = &self.shared.auth else {
            return text.to_string();
        };
        let mut out = text.replace(&self.url_with_credentials(), &self.url());
        let encoded = percent_encode_userinfo(&auth.password);
        for secret in [encoded.as_str(), auth.password.as_str()] {
            if !secret.is_empty() {
                out = out.replace(&format!(":{secret}@"), ":***@");
            }
        }
        out
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept_thread.take() {
            // Unblock accept(); retry a few times in the unlikely case a connect fails.
            for _ in 0..20 {
                if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = handle.join();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Environment variables that would make git look at another repository or config.
const SCRUBBED_GIT_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_PROTOCOL",
    "GIT_SSL_NO_VERIFY",
    "GIT_TEMPLATE_DIR",
    "GIT_EXEC_PATH",
    "EMAIL",
];

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = base.join(format!("ferry-git-server-{}-{n}-{nanos}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temporary directory {}: {e}", dir.display()),
        }
    }
    panic!("cannot create a unique temporary directory under {}", base.display());
}

/// Validates a repository-relative path supplied by a test.
fn checked_relative_path(rel: &str) -> PathBuf {
    let path = PathBuf::from(rel);
    let valid = !rel.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)));
    assert!(valid, "invalid repository-relative path: {rel:?}");
    path
}

/// Percent-encodes a URL userinfo component (user name or password).
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ===================== HTTP server =====================

/// Polls `ready` every 20 ms for up to 60 s; panics with `what` when it never holds.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Binds `addr` again after a stop; `None` while the port is taken (retried by the caller).
fn rebind(addr: SocketAddr, shared: &Shared) -> Option<TcpListener> {
    match TcpListener::bind(addr) {
        Ok(listener) => Some(listener),
        Err(e) => {
            shared.record_stderr(format!("cannot listen on {addr} again yet: {e}"));
            thread::sleep(Duration::from_millis(200));
            None
        }
    }
}

fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut listening = Some(listener);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if shared.down.load(Ordering::SeqCst) {
            // Stopped: no socket at the port, so connections are refused.
            listening = None;
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        let Some(listener) = listening.as_ref() else {
            listening = rebind(addr, &shared);
            continue;
        };
        let incoming = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if shared.down.load(Ordering::SeqCst) {
            continue;
        }
        match incoming {
            Ok((stream, _)) => {
                connections.retain(|h| !h.is_finished());
                let conn_shared = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("git-server-conn".into())
                    .spawn(move || handle_connection(stream, &conn_shared));
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(e) => shared.record_stderr(format!("cannot spawn connection thread: {e}")),
                }
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(listening);
    // Give in-flight requests a moment to finish, but never hang the fixture's drop on a
    // client that keeps an idle connection open: unfinished threads are detached.
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    for handle in connections {
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn simple(status: &str, message: &str) -> Response {
        Response {
            status: status.to_string(),
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: format!("{message}\n").into_bytes(),
        }
    }
}

enum ReadError {
    /// The peer closed the connection before sending anything.
    Closed,
    /// Malformed request.
    Bad(String),
    /// A size limit was exceeded.
    TooLarge(&'static str),
    /// Socket error (including timeouts).
    Io(io::Error),
}

impl ReadError {
    fn into_response(self) -> Option<Response> {
        match self {
            ReadError::Closed => None,
            ReadError::Bad(msg) => Some(Response::simple("400 Bad Request", &msg)),
            ReadError::TooLarge("header") => {
                Some(Response::simple("431 Request Header Fields Too Large", "request header too large"))
            }
            ReadError::TooLarge(what) => {
                Some(Response::simple("413 Payload Too Large", &format!("{what} too large")))
            }
            ReadError::Io(e) => {
                Some(Response::simple("400 Bad Request", &format!("error reading request: {e}")))
            }
        }
    }
}

fn handle_connection(stream: TcpStream, shared: &Shared) {
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        thread::sleep(Duration::from_millis(delay));
    }
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|_| "127.0.0.1".to_string());
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);

    let (response, is_head) = match serve(&mut reader, &mut writer, shared, &peer) {
        Some(pair) => pair,
        None => return,
    };
    let written = write_response(&mut writer, &response, is_head);
    match written {
        Err(e) if !shared.stop.load(Ordering::SeqCst) => {
            shared.record_stderr(format!("error writing response: {e}"));
        }
        _ => {}
    }
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Write);

    // Drain whatever the client may still send (e.g. an unread body after an error
    // response) so that closing the socket does not reset the connection before the
    // client has read the response.
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while drained < 16 * 1024 * 1024 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Reads one request and produces its response. `None` means: close without answering.
fn serve(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    shared: &Shared,
    peer: &str,
) -> Option<(Response, bool)> {
    let request = match read_head(reader) {
        Ok(request) => request,
        Err(e) => return e.into_response().map(|r| (r, false)),
    };
    let is_head = request.method == "HEAD";

    let expects_continue =
        request.header("Expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));

    // Authentication.
    if let Some(token) = &shared.bearer {
        let expected = format!("Bearer {token}");
        if request.header("Authorization").map(str::trim) != Some(expected.as_str()) {
            if !expects_continue {
                let _ = read_body(reader, &request);
            }
            let mut response = Response::simple("401 Unauthorized", "authentication required");
            response.headers.push(("WWW-Authenticate".into(), format!("Basic realm=\"{REALM}\"")));
            return Some((response, is_head));
        }
    }
    let remote_user = match &shared.auth {
        None if shared.bearer.is_some() => "bearer".to_string(),
        None => "anonymous".to_string(),
        Some(auth) => {
            if !authorized(&request, auth) {
                if !expects_continue {
                    // Consume the body so the client can read the 401 cleanly.
                    let _ = read_body(reader, &request);
                }
                let mut response = Response::simple("401 Unauthorized", "authentication required");
                response.headers.push(("WWW-Authenticate".into(), format!("Basic realm=\"{REALM}\"")));
                return Some((response, is_head));
            }
            auth.username.clone()
        }
    };

    if expects_continue {
        let sent = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|()| writer.flush());
        if sent.is_err() {
            return None;
        }
    }

    let body = match read_body(reader, &request) {
        Ok(body) => body,
        Err(e) => return e.into_response().map(|r| (r, is_head)),
    };

    let (path_info, query) = match split_target(&request.target) {
        Ok(parts) => parts,
        Err(msg) => return Some((Response::simple("400 Bad Request", &msg), is_head)),
    };

    let response = run_backend(shared, &request, &path_info, &query, body, &remote_user, peer);
    Some((response, is_head))
}

/// Reads one CRLF- or LF-terminated line, charging its length against `budget`.
fn read_line_limited(
    reader: &mut BufReader<TcpStream>,
    budget: &mut usize,
    what: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let limit = (*budget as u64).saturating_add(1);
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut line).map_err(ReadError::Io)?;
    if n > *budget {
        return Err(ReadError::TooLarge(what));
    }
    *budget -= n;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Bad("unexpected end of request".into()));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut budget = MAX_HEADER_BYTES;

    // Tolerate empty lines before the request line (RFC 9112 section 2.2).
    let request_line = loop {
        let line = read_line_limited(reader, &mut budget, "header")?;
        if !line.is_empty() {
            break line;
        }
    };
    let request_line = String::from_utf8(request_line)
        .map_err(|_| ReadError::Bad("request line is not valid UTF-8".into()))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("malformed request line: {request_line:?}")));
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
    {
        return Err(ReadError::Bad(format!("malformed request line: {request_line:?}")));
    }

    let mut headers = Vec::new();
    loop {
        let line = match read_line_limited(reader, &mut budget, "header") {
            Err(ReadError::Closed) => {
                return Err(ReadError::Bad("connection closed inside the header".into()));
            }
            other => other?,
        };
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed header line: {line:?}")));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(ReadError::Bad(format!("malformed header name: {name:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }

    Ok(Request { method: method.to_string(), target: target.to_string(), headers })
}

fn read_body(reader: &mut BufReader<TcpStream>, request: &Request) -> Result<Vec<u8>, ReadError> {
    if let Some(te) = request.header("Transfer-Encoding") {
        let codings: Vec<String> =
            te.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect();
        if codings.last().map(String::as_str) != Some("chunked") || codings.iter().any(|c| c != "chunked") {
            return Err(ReadError::Bad(format!("unsupported Transfer-Encoding: {te}")));
        }
        return read_chunked(reader);
    }
    match request.header("Content-Length") {
        None => Ok(Vec::new()),
        Some(value) => {
            let len: u64 = value
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad(format!("invalid Content-Length: {value:?}")))?;
            if len > MAX_BODY_BYTES as u64 {
                return Err(ReadError::TooLarge("request body"));
            }
            read_exact_vec(reader, len as usize)
        }
    }
}

fn read_exact_vec(reader: &mut BufReader<TcpStream>, len: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::with_capacity(len.min(8 * 1024 * 1024));
    let n = reader.by_ref().take(len as u64).read_to_end(&mut body).map_err(ReadError::Io)?;
    if n != len {
        return Err(ReadError::Bad(format!("request body ended after {n} of {len} bytes")));
    }
    Ok(body)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut trailer_budget = MAX_HEADER_BYTES;
    loop {
        let mut line_budget = 1024usize;
        let line = match read_line_limited(reader, &mut line_budget, "chunk size line") {
            Err(ReadError::Closed) => {
                return Err(ReadError::Bad("connection closed inside a chunked body".into()));
            }
            other => other?,
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let size_str = line.split(';').next().unwrap_or("").trim();
        if size_str.is_empty() || !size_str.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReadError::Bad(format!("invalid chunk size line: {line:?}")));
        }
        let size = usize::from_str_radix(size_str, 16).map_err(|_| ReadError::TooLarge("request body"))?;
        if size == 0 {
            // Trailer section, terminated by an empty line.
            loop {
                let trailer = match read_line_limited(reader, &mut trailer_budget, "header") {
                    Err(ReadError::Closed) => {
                        return Err(ReadError::Bad("connection closed inside chunk trailers".into()));
                    }
                    other => other?,
                };
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge("request body"));
        }
        let chunk = read_exact_vec(reader, size)?;
        body.extend_from_slice(&chunk);
        let mut crlf_budget = 2usize;
        match read_line_limited(reader, &mut crlf_budget, "chunk terminator") {
            Ok(rest) if rest.is_empty() => {}
            Ok(_) | Err(ReadError::TooLarge(_)) | Err(ReadError::Closed) => {
                return Err(ReadError::Bad("missing CRLF after chunk data".into()));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Checks the `Authorization: Basic ...` header against the expected credentials.
fn authorized(request: &Request, auth: &BasicAuth) -> bool {
    let Some(value) = request.header("Authorization") else {
        return false;
    };
    let value = value.trim();
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("Basic") {
        return false;
    }
    let Some(decoded) = base64_decode(token.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    decoded == expected.as_bytes()
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut seen_padding = false;
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                seen_padding = true;
                continue;
            }
            _ => return None,
        };
        if seen_padding {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1u32 << bits) - 1;
        }
    }
    Some(out)
}

/// Splits a request target into a percent-decoded path and the raw query string.
fn split_target(target: &str) -> Result<(String, String), String> {
    let mut target = target;
    // Absolute form (http://host/path) as sent through proxies.
    if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        target = match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        };
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let path = path.split('#').next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(format!("unsupported request target: {target:?}"));
    }
    let decoded = percent_decode(path).ok_or_else(|| format!("invalid path: {path:?}"))?;
    if decoded.contains('\0') {
        return Err(format!("invalid path: {path:?}"));
    }
    Ok((decoded, query.to_string()))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Runs `git http-backend` as a CGI program for one request.
fn run_backend(
    shared: &Shared,
    request: &Request,
    path_info: &str,
    query: &str,
    body: Vec<u8>,
    remote_user: &str,
    peer: &str,
) -> Response {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", &shared.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_PROJECT_ROOT", &shared.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "ferry-test-git-server")
        .env("SERVER_NAME", "127.0.0.1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", &request.method)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", peer)
        .current_dir(&shared.project_root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ct) = request.header("Content-Type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(proto) = request.header("Git-Protocol") {
        cmd.env("GIT_PROTOCOL", proto).env("HTTP_GIT_PROTOCOL", proto);
    }
    if let Some(enc) = request.header("Content-Encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if shared.auth.is_some() {
        cmd.env("AUTH_TYPE", "Basic");
    }

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let msg = format!("cannot start git http-backend: {e}");
            shared.record_stderr(msg.clone());
            return Response::simple("500 Internal Server Error", &msg);
        }
    };

    // Feed stdin from its own thread so a backend that writes output before reading all
    // of its input cannot deadlock with us.
    let stdin_writer = child.stdin.take().map(|mut stdin| {
        thread::spawn(move || {
            // A backend that exits early closes the pipe; that is not our error to report.
            let _ = stdin.write_all(&body);
        })
    });

    let output = child.wait_with_output();
    if let Some(handle) = stdin_writer {
        let _ = handle.join();
    }
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let msg = format!("error running git http-backend: {e}");
            shared.record_stderr(msg.clone());
            return Response::simple("500 Internal Server Error", &msg);
        }
    };

    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        shared.record_stderr(format!("http-backend ({} {path_info}): {line}", request.method));
    }
    if !output.status.success() {
        shared.record_stderr(format!(
            "http-backend ({} {path_info}) exited with {}",
            request.method, output.status
        ));
    }

    match parse_cgi_output(&output.stdout) {
        Some(response) => response,
        None => {
            let msg =
                format!("git http-backend produced no valid CGI response (exit status {})", output.status);
            shared.record_stderr(msg.clone());
            Response::simple("502 Bad Gateway", &msg)
        }
    }
}

fn parse_cgi_output(stdout: &[u8]) -> Option<Response> {
    // Find the end of the CGI header block: an empty line (CRLF or LF line endings).
    let mut pos = 0;
    let mut header_lines: Vec<String> = Vec::new();
    let body_start = loop {
        let rest = stdout.get(pos..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        header_lines.push(String::from_utf8_lossy(line).into_owned());
    };

    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in header_lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            status = value.to_string();
        } else if name.eq_ignore_ascii_case("Content-Length")
            || name.eq_ignore_ascii_case("Connection")
            || name.eq_ignore_ascii_case("Transfer-Encoding")
        {
            // Recomputed / set by us.
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let status_ok = status.get(..3).is_some_and(|code| code.bytes().all(|b| b.is_ascii_digit()));
    if !status_ok {
        return None;
    }
    if status.len() == 3 {
        status.push_str(" Unknown");
    }
    Some(Response { status, headers, body: stdout[body_start..].to_vec() })
}

fn write_response(stream: &mut TcpStream, response: &Response, is_head: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {}\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
    stream.write_all(head.as_bytes())?;
    if !is_head {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}
