//! The Git server fixture itself: commits pushed through it can be cloned back over HTTP, with
//! and without basic auth, and it behaves like a real Git host under load and bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::GitServer;

struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> ScratchDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gitfixture-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git_cmd(dir: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "credential.helper="])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null());
    cmd
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> Output {
    git_cmd(dir, home, args).output().unwrap()
}

fn git_ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = git(dir, home, args);
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Clones `url` (optionally a branch) into scratch/<name> and returns the path.
fn clone(scratch: &ScratchDir, url: &str, branch: Option<&str>, name: &str) -> PathBuf {
    let dest = scratch.path().join(name);
    let dest_s = dest.to_string_lossy().into_owned();
    let mut args = vec!["clone", "-q"];
    if let Some(b) = branch {
        args.extend(["-b", b]);
    }
    args.extend([url, dest_s.as_str()]);
    git_ok(scratch.path(), scratch.path(), &args);
    dest
}

/// Runs git with HTTP tracing on, asserts success, and returns the trace (stderr).
fn git_traced_ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir, home, args)
        .env("GIT_TRACE_CURL", "1")
        .env("GIT_TRACE_CURL_NO_DATA", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn commit_and_clone_anonymous() {
    let server = GitServer::start();
    assert!(server.auth().is_none());
    assert_eq!(server.url(), server.url_with_credentials());
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert!(server.url().ends_with("/repo.git"));
    assert!(server.bare_repo_path().join("HEAD").exists());

    let sha1 = server.commit_files(
        "main",
        &[("README.md", "hello\n"), ("deploy/app/deployment.yaml", "kind: Deployment\n")],
        "first",
    );
    assert!(is_sha(&sha1), "{sha1}");

    let scratch = ScratchDir::new("anon");
    let c1 = clone(&scratch, &server.url(), None, "c1");
    assert_eq!(read(&c1.join("README.md")), "hello\n");
    assert_eq!(read(&c1.join("deploy/app/deployment.yaml")), "kind: Deployment\n");
    assert_eq!(git_ok(&c1, scratch.path(), &["rev-parse", "HEAD"]), sha1);
    assert_eq!(git_ok(&c1, scratch.path(), &["rev-parse", "--abbrev-ref", "HEAD"]), "main");

    // Second commit keeps unlisted files.
    let sha2 = server.commit_files("main", &[("README.md", "hello again\n")], "second");
    assert_ne!(sha1, sha2);
    let c2 = clone(&scratch, &server.url(), None, "c2");
    assert_eq!(read(&c2.join("README.md")), "hello again\n");
    assert_eq!(read(&c2.join("deploy/app/deployment.yaml")), "kind: Deployment\n");
    assert_eq!(git_ok(&c2, scratch.path(), &["rev-parse", "HEAD"]), sha2);
    assert_eq!(git_ok(&c2, scratch.path(), &["rev-parse", "HEAD~1"]), sha1);
    assert_eq!(
        git_ok(&c2, scratch.path(), &["log", "-1", "--format=%s|%an|%ae"]),
        "second|ferry-test|test@ferry.invalid"
    );

    // Bare repo agrees.
    let bare = server.bare_repo_path();
    assert_eq!(git_ok(&bare, scratch.path(), &["rev-parse", "refs/heads/main"]), sha2);

    // An existing clone can fetch the update (incremental fetch).
    git_ok(&c1, scratch.path(), &["pull", "-q", "--ff-only"]);
    assert_eq!(git_ok(&c1, scratch.path(), &["rev-parse", "HEAD"]), sha2);
}

#[test]
fn auth_required() {
    let server = GitServer::start_with_auth("alice", "s3cr:et@/p ss");
    let auth = server.auth().unwrap();
    assert_eq!(auth.username, "alice");
    assert_eq!(auth.password, "s3cr:et@/p ss");
    assert_ne!(server.url(), server.url_with_credentials());
    assert!(server.url_with_credentials().starts_with("http://alice:"));
    assert!(!format!("{auth:?}").contains("s3cr"));

    let sha = server.commit_files("main", &[("a.txt", "A")], "with auth");
    let scratch = ScratchDir::new("auth");
    let ok = clone(&scratch, &server.url_with_credentials(), None, "ok");
    assert_eq!(read(&ok.join("a.txt")), "A");
    assert_eq!(git_ok(&ok, scratch.path(), &["rev-parse", "HEAD"]), sha);

    // No credentials.
    let dest = scratch.path().join("nocreds");
    let out = git(scratch.path(), scratch.path(), &["clone", &server.url(), dest.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("terminal prompts disabled") || stderr.contains("Authentication failed"),
        "{stderr}"
    );

    // Wrong password.
    let wrong = server.url().replace("http://", "http://alice:wrong@");
    let dest = scratch.path().join("wrong");
    let out = git(scratch.path(), scratch.path(), &["clone", &wrong, dest.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");

    // Wrong user, right password.
    let wrong_user = server.url_with_credentials().replace("http://alice:", "http://bob:");
    let out = git(scratch.path(), scratch.path(), &["ls-remote", &wrong_user]);
    assert!(!out.status.success());

    // Push without credentials fails too.
    let out = git(&ok, scratch.path(), &["push", &server.url(), "HEAD:refs/heads/x"]);
    assert!(!out.status.success());

    // Raw 401 response carries the realm.
    let resp =
        raw_request(&server, "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("WWW-Authenticate: Basic realm=\"ferry-test\""), "{resp}");
}

#[test]
fn failure_messages_redact_password() {
    let server = GitServer::start_with_auth("alice", "topsecretpw");
    server.commit_files("main", &[("a.txt", "A")], "first");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.remove_files("main", &["does-not-exist.txt"], "remove missing");
    }));
    let err = result.expect_err("removing a missing file must panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(msg.contains("git rm"), "{msg}");
    assert!(!msg.contains("topsecretpw"), "{msg}");
    // Server still usable after the failure.
    let sha = server.commit_files("main", &[("b.txt", "B")], "after failure");
    assert!(is_sha(&sha));

    // Tag on an unknown commit panics with a redacted message too.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.tag("bad", "0123456789012345678901234567890123456789");
    }));
    let err = result.expect_err("tagging an unknown commit must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap();
    assert!(!msg.contains("topsecretpw"), "{msg}");
}

fn pseudo_random_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed;
    let mut s = String::with_capacity(len + len / 64);
    for i in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALPHABET[(x % 64) as usize] as char);
        if i % 76 == 75 {
            s.push('\n');
        }
    }
    s
}

#[test]
fn large_push_uses_chunked_body() {
    let server = GitServer::start_with_auth("bob", "pw");
    let big = pseudo_random_text(3 * 1024 * 1024, 0x9E37_79B9_7F4A_7C15);
    let sha = server.commit_files("main", &[("big/blob.txt", &big), ("small.txt", "s")], "big");

    let scratch = ScratchDir::new("big");
    let c = clone(&scratch, &server.url_with_credentials(), None, "c");
    assert_eq!(read(&c.join("big/blob.txt")), big);
    assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), sha);

    // Push another big file from our own clone with curl tracing, to prove the request
    // body really was chunked.
    let big2 = pseudo_random_text(3 * 1024 * 1024, 42);
    std::fs::write(c.join("big2.txt"), &big2).unwrap();
    git_ok(&c, scratch.path(), &["add", "big2.txt"]);
    git_ok(&c, scratch.path(), &["commit", "-q", "-m", "big2"]);
    let stderr = git_traced_ok(&c, scratch.path(), &["push", "origin", "HEAD:refs/heads/main"]);
    assert!(stderr.contains("Transfer-Encoding: chunked"), "push was not chunked");
    let pushed = git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]);

    // The fixture picks up the externally pushed commit and builds on top of it.
    let sha3 = server.commit_files("main", &[("small.txt", "t")], "after");
    let c2 = clone(&scratch, &server.url_with_credentials(), None, "c2");
    assert_eq!(git_ok(&c2, scratch.path(), &["rev-parse", "HEAD~1"]), pushed);
    assert_eq!(git_ok(&c2, scratch.path(), &["rev-parse", "HEAD"]), sha3);
    assert_eq!(read(&c2.join("big2.txt")), big2);
    assert_eq!(read(&c2.join("big/blob.txt")), big);
}

#[test]
fn gzip_request_bodies() {
    // A fetch into a repository with many unrelated local commits sends many "have"
    // lines, which makes git gzip the upload-pack request bodies.
    let server = GitServer::start();
    server.commit_files("main", &[("f.txt", "0")], "base");
    let scratch = ScratchDir::new("gzip");
    let c = scratch.path().join("c");
    git_ok(scratch.path(), scratch.path(), &["init", "-q", c.to_str().unwrap()]);
    for i in 0..100 {
        git_ok(&c, scratch.path(), &["commit", "-q", "--allow-empty", "-m", &format!("local {i}")]);
    }
    git_ok(&c, scratch.path(), &["remote", "add", "origin", &server.url()]);
    let sha = server.commit_files("main", &[("f.txt", "1")], "remote");
    let stderr = git_traced_ok(&c, scratch.path(), &["fetch", "origin"]);
    assert!(stderr.contains("Content-Encoding: gzip"), "fetch did not gzip");
    assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "origin/main"]), sha);
}

#[test]
fn two_branches() {
    let server = GitServer::start();
    let main1 = server.commit_files("main", &[("common.txt", "c"), ("env.txt", "prod")], "main 1");
    let feat1 = server.commit_files("feature", &[("env.txt", "staging"), ("feat.txt", "f")], "feat 1");
    let main2 = server.commit_files("main", &[("main-only.txt", "m")], "main 2");
    let feat2 = server.commit_files("release/x", &[("x.txt", "x")], "x 1");

    let scratch = ScratchDir::new("branches");
    let m = clone(&scratch, &server.url(), Some("main"), "m");
    assert_eq!(git_ok(&m, scratch.path(), &["rev-parse", "HEAD"]), main2);
    assert_eq!(git_ok(&m, scratch.path(), &["rev-parse", "HEAD~1"]), main1);
    assert_eq!(read(&m.join("env.txt")), "prod");
    assert!(!m.join("feat.txt").exists());
    assert!(m.join("main-only.txt").exists());

    let f = clone(&scratch, &server.url(), Some("feature"), "f");
    assert_eq!(git_ok(&f, scratch.path(), &["rev-parse", "HEAD"]), feat1);
    // "feature" was created from main's state at the time.
    assert_eq!(git_ok(&f, scratch.path(), &["rev-parse", "HEAD~1"]), main1);
    assert_eq!(read(&f.join("env.txt")), "staging");
    assert_eq!(read(&f.join("common.txt")), "c");
    assert!(f.join("feat.txt").exists());
    assert!(!f.join("main-only.txt").exists());

    let x = clone(&scratch, &server.url(), Some("release/x"), "x");
    assert_eq!(git_ok(&x, scratch.path(), &["rev-parse", "HEAD"]), feat2);

    let bare = server.bare_repo_path();
    let heads = git_ok(&bare, scratch.path(), &["for-each-ref", "--format=%(refname)", "refs/heads"]);
    assert_eq!(heads, "refs/heads/feature\nrefs/heads/main\nrefs/heads/release/x");
    assert_eq!(git_ok(&bare, scratch.path(), &["symbolic-ref", "HEAD"]), "refs/heads/main");
}

#[test]
fn first_branch_not_main_is_orphan() {
    let server = GitServer::start();
    let sha = server.commit_files("release", &[("r.txt", "r")], "release 1");
    let scratch = ScratchDir::new("orphan");
    let r = clone(&scratch, &server.url(), Some("release"), "r");
    assert_eq!(git_ok(&r, scratch.path(), &["rev-parse", "HEAD"]), sha);
    assert_eq!(git_ok(&r, scratch.path(), &["rev-list", "--count", "HEAD"]), "1");
}

#[test]
fn tags() {
    let server = GitServer::start();
    let v1 = server.commit_files("main", &[("version", "1")], "v1");
    server.tag("v1.0.0", &v1);
    let v2 = server.commit_files("main", &[("version", "2")], "v2");
    server.tag("v2.0.0", &v2);
    // Moving a tag is allowed.
    server.tag("latest", &v1);
    server.tag("latest", &v2);

    let scratch = ScratchDir::new("tags");
    let out = git_ok(scratch.path(), scratch.path(), &["ls-remote", "--tags", &server.url()]);
    assert!(out.contains(&format!("{v1}\trefs/tags/v1.0.0")), "{out}");
    assert!(out.contains(&format!("{v2}\trefs/tags/v2.0.0")), "{out}");
    assert!(out.contains(&format!("{v2}\trefs/tags/latest")), "{out}");
    assert!(!out.contains("^{}"), "tags must be lightweight: {out}");

    let c = clone(&scratch, &server.url(), Some("v1.0.0"), "c");
    assert_eq!(read(&c.join("version")), "1");
    assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), v1);
    assert_eq!(git_ok(&c, scratch.path(), &["cat-file", "-t", "v1.0.0"]), "commit");
}

#[test]
fn remove_files() {
    let server = GitServer::start_with_auth("u", "p");
    server.commit_files(
        "main",
        &[("keep.txt", "k"), ("dir/a.txt", "a"), ("dir/b.txt", "b"), ("gone.txt", "g")],
        "init",
    );
    let sha = server.remove_files("main", &["gone.txt", "dir/a.txt"], "remove");
    let scratch = ScratchDir::new("remove");
    let c = clone(&scratch, &server.url_with_credentials(), None, "c");
    assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), sha);
    assert!(c.join("keep.txt").exists());
    assert!(c.join("dir/b.txt").exists());
    assert!(!c.join("gone.txt").exists());
    assert!(!c.join("dir/a.txt").exists());
    assert_eq!(git_ok(&c, scratch.path(), &["log", "-1", "--format=%s"]), "remove");

    // Removing a whole directory.
    let sha2 = server.remove_files("main", &["dir"], "remove dir");
    git_ok(&c, scratch.path(), &["pull", "-q", "--ff-only"]);
    assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), sha2);
    assert!(!c.join("dir").exists());
    assert!(c.join("keep.txt").exists());
}

#[test]
fn concurrent_clones() {
    let server = GitServer::start_with_auth("c", "d");
    let files: Vec<(String, String)> =
        (0..50).map(|i| (format!("files/f{i}.yaml"), pseudo_random_text(20_000, i + 1))).collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let sha = server.commit_files("main", &refs, "many");
    let scratch = ScratchDir::new("concurrent");
    let url = server.url_with_credentials();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (scratch, url, sha, files) = (&scratch, &url, &sha, &files);
                s.spawn(move || {
                    for round in 0..3 {
                        let c = clone(scratch, url, None, &format!("t{t}-{round}"));
                        assert_eq!(&git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), sha);
                        for (p, content) in files {
                            assert_eq!(&read(&c.join(p)), content);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn concurrent_commits_from_threads() {
    let server = GitServer::start();
    server.commit_files("main", &[("base", "b")], "base");
    std::thread::scope(|s| {
        for t in 0..4 {
            let server = &server;
            s.spawn(move || {
                for i in 0..3 {
                    server.commit_files("main", &[(&format!("t{t}/{i}"), "x")], "c");
                }
            });
        }
    });
    let scratch = ScratchDir::new("ccommits");
    let c = clone(&scratch, &server.url(), None, "c");
    assert_eq!(git_ok(&c, scratch.path(), &["rev-list", "--count", "HEAD"]), "13");
}

fn raw_request(server: &GitServer, request: &str) -> String {
    raw_bytes(server, request.as_bytes())
}

fn raw_bytes(server: &GitServer, request: &[u8]) -> String {
    let addr = server.url()["http://".len()..].split('/').next().unwrap().to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_requests_get_400() {
    let server = GitServer::start();
    server.commit_files("main", &[("a", "a")], "a");

    let r = raw_request(&server, "garbage\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_request(&server, "GET /repo.git/info/refs HTTP/1.1\r\nno colon here\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_request(&server, "GET relative HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_request(&server, "POST /repo.git/git-upload-pack HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_request(
        &server,
        "POST /repo.git/git-upload-pack HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_request(
        &server,
        "POST /repo.git/git-upload-pack HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = raw_bytes(&server, b"GET /\xff\xfe HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Truncated body.
    let r = raw_request(&server, "POST /repo.git/git-upload-pack HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Oversized headers.
    let mut big = String::from("GET /repo.git/info/refs HTTP/1.1\r\n");
    for i in 0..2000 {
        big.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(40)));
    }
    big.push_str("\r\n");
    let r = raw_request(&server, &big);
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    // Connect and close immediately.
    drop(TcpStream::connect(server.url()["http://".len()..].split('/').next().unwrap()).unwrap());

    // Valid requests still work after all of that, including chunked + Expect.
    let r =
        raw_request(&server, "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("Content-Type: application/x-git-upload-pack-advertisement"), "{r}");
    assert!(r.contains("Connection: close"), "{r}");
    let r = raw_request(
        &server,
        "POST /repo.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-upload-pack-request\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0000\r\n0\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), "{r}");
    let r = raw_request(&server, "GET /other.git/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = raw_request(&server, "GET /repo.git/../../etc/passwd HTTP/1.1\r\n\r\n");
    assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn drop_stops_server_and_cleans_up() {
    let server = GitServer::start();
    server.commit_files("main", &[("a", "a")], "a");
    let addr = server.url()["http://".len()..].split('/').next().unwrap().to_string();
    let root = server.bare_repo_path().parent().unwrap().parent().unwrap().to_path_buf();
    assert!(root.exists());
    drop(server);
    assert!(!root.exists(), "temp dir not removed: {}", root.display());
    assert!(TcpStream::connect(addr).is_err(), "server still accepting");
}

#[test]
fn many_servers_in_parallel() {
    let servers: Vec<GitServer> = (0..4).map(|_| GitServer::start()).collect();
    std::thread::scope(|s| {
        for (i, server) in servers.iter().enumerate() {
            s.spawn(move || {
                let sha = server.commit_files("main", &[("i", &i.to_string())], "i");
                let scratch = ScratchDir::new("multi");
                let c = clone(&scratch, &server.url(), None, "c");
                assert_eq!(git_ok(&c, scratch.path(), &["rev-parse", "HEAD"]), sha);
                assert_eq!(read(&c.join("i")), i.to_string());
            });
        }
    });
}

#[test]
fn drop_does_not_hang_on_idle_connection() {
    let server = GitServer::start();
    let addr = server.url()["http://".len()..].split('/').next().unwrap().to_string();
    let idle = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = std::time::Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(idle);
}
