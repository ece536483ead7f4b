//! `ferry::source` against real Git servers on loopback: `git http-backend` over HTTP (anonymous,
//! basic auth, bearer token), OpenSSH's sshd, `file://`, and a TCP listener that never answers.
//! No cluster is needed.

use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry::api::GitRef;
use ferry::source::{Credentials, GitCache, GitCacheOptions, RevisionRef, Snapshot, SourceError, SourceSpec};

use crate::support::{GitServer, SshKey, SshServer, T};

// ----- helpers -----

fn options(timeout: Duration) -> GitCacheOptions {
    // network_timeout is process-wide in libgit2 (first cache wins): keep it the same here.
    GitCacheOptions { timeout, network_timeout: Duration::from_secs(10), ..Default::default() }
}

fn new_cache() -> (tempfile::TempDir, GitCache) {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(dir.path().join("cache"), options(Duration::from_secs(60))).unwrap();
    (dir, cache)
}

fn branch(name: &str) -> GitRef {
    GitRef { branch: Some(name.into()), ..Default::default() }
}
fn tag(name: &str) -> GitRef {
    GitRef { tag: Some(name.into()), ..Default::default() }
}
fn semver(range: &str) -> GitRef {
    GitRef { semver: Some(range.into()), ..Default::default() }
}
fn commit(sha: &str) -> GitRef {
    GitRef { commit: Some(sha.into()), ..Default::default() }
}

fn spec(url: &str, git_ref: GitRef, credentials: Option<Credentials>) -> SourceSpec {
    SourceSpec { repo_url: url.to_string(), git_ref, credentials }
}

fn read(snapshot: &Snapshot, path: &str) -> String {
    fs::read_to_string(snapshot.root.join(path))
        .unwrap_or_else(|e| panic!("cannot read {path} in {}: {e}", snapshot.root.display()))
}

async fn bounded<R>(what: &str, fut: impl std::future::Future<Output = R>) -> R {
    tokio::time::timeout(T, fut).await.unwrap_or_else(|_| panic!("{what} did not return within {T:?}"))
}

async fn fetch_ok(cache: &GitCache, spec: &SourceSpec) -> Snapshot {
    bounded("fetch", cache.fetch(spec)).await.unwrap_or_else(|e| panic!("fetch failed: {e}"))
}

async fn fetch_err(cache: &GitCache, spec: &SourceSpec) -> SourceError {
    match bounded("fetch", cache.fetch(spec)).await {
        Ok(s) => panic!("fetch unexpectedly succeeded: {}", s.revision),
        Err(e) => e,
    }
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials { username: Some(user.into()), password: Some(password.into()), ..Default::default() }
}

fn ssh_credentials(identity: &SshKey, known_hosts: &str) -> Credentials {
    Credentials {
        identity: Some(identity.private.clone()),
        known_hosts: Some(known_hosts.to_string()),
        ..Default::default()
    }
}

/// Every log line of the test binary, so the leak test can read what was logged.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedWriter(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the source tests own the global subscriber");
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Accepts TCP connections and never says a word.
struct SilentServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !thread_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentServer { addr, stop, thread: Some(thread) }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----- HTTP -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_resolves_each_ref_kind_to_its_commit() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("app/version.txt", "1.0.0")], "one");
    server.tag("v1.0.0", &c1);
    let c2 = server.commit_files("main", &[("app/version.txt", "1.1.0")], "two");
    // Annotated: the ref names a tag object, which must be peeled to its commit.
    server.tag_annotated("v1.1.0", &c2, "release 1.1.0");
    let c3 = server.commit_files("main", &[("app/version.txt", "2.0.0")], "three");
    server.tag("2.0.0", &c3);
    let c4 = server.commit_files("main", &[("app/version.txt", "main")], "four");
    let (_dir, cache) = new_cache();
    let url = server.url();

    let s = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(s.revision.to_string(), format!("main@sha1:{c4}"));
    assert_eq!(s.revision.short(), format!("main@{}", &c4[..7]));
    assert_eq!(read(&s, "app/version.txt"), "main");

    let s = fetch_ok(&cache, &spec(&url, tag("v1.0.0"), None)).await;
    assert_eq!(s.revision.to_string(), format!("v1.0.0@sha1:{c1}"));
    assert_eq!(read(&s, "app/version.txt"), "1.0.0");

    let s = fetch_ok(&cache, &spec(&url, semver(">=1.0.0 <2.0.0"), None)).await;
    assert_eq!(s.revision.reference, RevisionRef::Tag("v1.1.0".into()));
    assert_eq!(s.revision.commit, c2);
    assert_eq!(read(&s, "app/version.txt"), "1.1.0");

    let s = fetch_ok(&cache, &spec(&url, tag("v1.1.0"), None)).await;
    assert_eq!(s.revision.to_string(), format!("v1.1.0@sha1:{c2}"));

    // Tags without a `v` count too.
    let s = fetch_ok(&cache, &spec(&url, semver(">=1.0.0"), None)).await;
    assert_eq!(s.revision.to_string(), format!("2.0.0@sha1:{c3}"));

    // An old commit of main: the fixture does not allow fetching by SHA, so the fallback
    // (fetch every branch and tag) finds it.
    let s = fetch_ok(&cache, &spec(&url, commit(&c2.to_uppercase()), None)).await;
    assert_eq!(s.revision.to_string(), format!("sha1:{c2}"));
    assert_eq!(s.revision.short(), c2[..7]);
    assert_eq!(read(&s, "app/version.txt"), "1.1.0");

    let err = fetch_err(&cache, &spec(&url, semver(">=3.0.0"), None)).await;
    assert!(matches!(err, SourceError::NoTagMatchesSemver { .. }), "{err}");
    assert!(err.to_string().contains("2.0.0, v1.1.0, v1.0.0"), "{err}");
    let err = fetch_err(&cache, &spec(&url, branch("nope"), None)).await;
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert_eq!(err.category(), "ref_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_read_only_complete_and_shared_by_commit() {
    let server = GitServer::start();
    let c1 = server.commit_files(
        "main",
        &[("apps/a/deploy.yaml", "a"), ("apps/b/deploy.yaml", "b"), ("base/kustomization.yaml", "k")],
        "init",
    );
    server.tag("v1", &c1);
    let (_dir, cache) = new_cache();
    let a = fetch_ok(&cache, &spec(&server.url(), branch("main"), None)).await;
    let b = fetch_ok(&cache, &spec(&server.url(), tag("v1"), None)).await;
    // Same commit, different refs: one snapshot directory, one fetch.
    assert_eq!(a.root, b.root);
    assert_eq!(a.root, cache.snapshot_dir(&c1));
    assert_eq!(cache.fetch_count(), 1);
    assert_eq!(read(&a, "apps/b/deploy.yaml"), "b");
    assert_eq!(read(&a, "base/kustomization.yaml"), "k");
    let mode = fs::metadata(a.root.join("apps/a/deploy.yaml")).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "snapshot files must be read-only, mode {mode:o}");
    assert!(!a.root.join(".git").exists(), "a snapshot is a tree export, not a checkout");
    let leftovers: Vec<_> = fs::read_dir(a.root.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary export directories left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_auth() {
    let server = GitServer::start_with_auth("alice", "s3cret-Pa55word");
    let c1 = server.commit_files("main", &[("f", "1")], "init");
    let (_dir, cache) = new_cache();
    let url = server.url();

    let s = fetch_ok(&cache, &spec(&url, branch("main"), Some(basic("alice", "s3cret-Pa55word")))).await;
    assert_eq!(s.revision.commit, c1);

    let err = fetch_err(&cache, &spec(&url, branch("main"), Some(basic("alice", "wrong-Pa55word")))).await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");
    assert_eq!(err.category(), "auth_failed");
    assert!(!format!("{err} {err:?}").contains("wrong-Pa55word"), "{err:?}");

    let err = fetch_err(&cache, &spec(&url, branch("main"), None)).await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");

    // Credentials embedded in the URL work, and never show.
    let with_creds = server.url_with_credentials();
    let s = fetch_ok(&cache, &spec(&with_creds, branch("main"), None)).await;
    assert_eq!(s.revision.commit, c1);
    let err = fetch_err(&cache, &spec(&with_creds, branch("gone"), None)).await;
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bearer_token() {
    let server = GitServer::start_with_bearer("tok-0123456789abcdef");
    let c1 = server.commit_files("main", &[("f", "1")], "init");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let creds = |token: &str| Credentials { bearer_token: Some(token.into()), ..Default::default() };

    let s = fetch_ok(&cache, &spec(&url, branch("main"), Some(creds("tok-0123456789abcdef")))).await;
    assert_eq!(s.revision.commit, c1);
    assert_eq!(read(&s, "f"), "1");

    let err = fetch_err(&cache, &spec(&url, branch("main"), Some(creds("tok-wrongwrongwrong")))).await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("tok-wrong"), "{err:?}");
    let err = fetch_err(&cache, &spec(&url, branch("main"), None)).await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_is_repository_not_found() {
    let server = GitServer::start();
    server.commit_files("main", &[("f", "1")], "init");
    let (_dir, cache) = new_cache();
    let url = server.url().replace("repo.git", "missing.git");
    let err = fetch_err(&cache, &spec(&url, branch("main"), None)).await;
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
    assert_eq!(err.category(), "repo_not_found");

    let file_url = format!("file://{}/nothing-here.git", server.bare_repo_path().parent().unwrap().display());
    let err = fetch_err(&cache, &spec(&file_url, branch("main"), None)).await;
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_work() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "file")], "init");
    let (_dir, cache) = new_cache();
    let url = format!("file://{}", server.bare_repo_path().display());
    let s = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(s.revision.commit, c1);
    assert_eq!(read(&s, "f"), "file");
}

// ----- history changes on the server -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_pushed_branch_moves_to_the_new_tip() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    let c2 = server.commit_files("main", &[("f", "2"), ("only-in-c2", "x")], "two");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let s = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(s.revision.commit, c2);

    server.force_push("main", &c1);
    let c3 = server.commit_files("main", &[("f", "3")], "rewritten");
    let resolved = bounded("resolve", cache.resolve(&spec(&url, branch("main"), None))).await.unwrap();
    assert_eq!(resolved.commit, c3);
    let s = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(s.revision.commit, c3);
    assert_eq!(read(&s, "f"), "3");
    assert!(!s.root.join("only-in-c2").exists());

    // The branch is rewritten again after a resolve: the snapshot reports what it fetched.
    let stale = bounded("resolve", cache.resolve(&spec(&url, branch("main"), None))).await.unwrap();
    server.force_push("main", &c1);
    let c4 = server.commit_files("main", &[("f", "4")], "rewritten again");
    let s = bounded("snapshot", cache.snapshot(&spec(&url, branch("main"), None), &stale)).await.unwrap();
    assert_eq!(stale.commit, c3);
    // c3 was fetched before, so it is still cached: the stale revision is served as asked.
    assert_eq!(s.revision.commit, c3);
    let fresh = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(fresh.revision.commit, c4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_rewritten_between_resolve_and_fetch_yields_the_fetched_commit() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    let c2 = server.commit_files("main", &[("f", "2")], "two");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let resolved = bounded("resolve", cache.resolve(&spec(&url, branch("main"), None))).await.unwrap();
    assert_eq!(resolved.commit, c2);
    // c2 never reaches the cache: it is gone from the server's branch before the fetch.
    server.force_push("main", &c1);
    let c3 = server.commit_files("main", &[("f", "3")], "three");
    let s = bounded("snapshot", cache.snapshot(&spec(&url, branch("main"), None), &resolved)).await.unwrap();
    assert_eq!(s.revision.commit, c3);
    assert_eq!(read(&s, "f"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tag_is_ref_not_found() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    server.tag("v1.0.0", &c1);
    let (_dir, cache) = new_cache();
    let url = server.url();
    assert_eq!(fetch_ok(&cache, &spec(&url, tag("v1.0.0"), None)).await.revision.commit, c1);

    server.delete_tag("v1.0.0");
    let err = bounded("resolve", cache.resolve(&spec(&url, tag("v1.0.0"), None))).await.unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains("tag \"v1.0.0\""), "{err}");
    let err = fetch_err(&cache, &spec(&url, tag("v1.0.0"), None)).await;
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reachable_only_by_sha() {
    let server = GitServer::start();
    server.commit_files("main", &[("f", "main")], "main");
    let orphaned = server.commit_files("tmp", &[("f", "orphaned")], "on a branch about to go");
    server.delete_branch("tmp");
    let (_dir, cache) = new_cache();
    let url = server.url();

    // No ref reaches it and the server does not serve arbitrary SHAs.
    let err = fetch_err(&cache, &spec(&url, commit(&orphaned), None)).await;
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&orphaned), "{err}");

    server.set_config("uploadpack.allowAnySHA1InWant", "true");
    let before = cache.fetch_count();
    let s = fetch_ok(&cache, &spec(&url, commit(&orphaned), None)).await;
    assert_eq!(s.revision.to_string(), format!("sha1:{orphaned}"));
    assert_eq!(read(&s, "f"), "orphaned");
    // Fetched by SHA directly: no fallback fetch of every ref.
    assert_eq!(cache.fetch_count(), before + 1);
}

// ----- the cache -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_per_repo_and_revision_also_concurrently() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("apps/a/x", "a1"), ("apps/b/x", "b1")], "one");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let app_a = spec(&url, branch("main"), None);
    let app_b = spec(&format!("{url}/"), branch("main"), None);

    let a = fetch_ok(&cache, &app_a).await;
    let b = fetch_ok(&cache, &app_b).await;
    assert_eq!(a.revision.commit, c1);
    assert_eq!(a, b);
    assert_eq!(cache.fetch_count(), 1);

    // Steady state: checking again lists refs but fetches nothing.
    let listings = cache.stats().ref_listings;
    let again = fetch_ok(&cache, &app_a).await;
    assert_eq!(again.revision.commit, c1);
    assert_eq!(cache.fetch_count(), 1);
    assert!(cache.stats().ref_listings > listings);
    // The listings go through an empty scratch repository and must leave it empty.
    let scratch = cache.root().join("scratch.git");
    assert_eq!(files_under(&scratch.join("objects")), Vec::<String>::new());
    assert_eq!(files_under(&scratch.join("refs")), Vec::<String>::new());

    // A new commit, asked for by four Applications at once: still one fetch.
    let c2 = server.commit_files("main", &[("apps/a/x", "a2")], "two");
    let (r1, r2, r3, r4) = bounded("concurrent fetches", async {
        tokio::join!(cache.fetch(&app_a), cache.fetch(&app_b), cache.fetch(&app_a), cache.fetch(&app_b))
    })
    .await;
    for r in [r1, r2, r3, r4] {
        let s = r.unwrap_or_else(|e| panic!("concurrent fetch failed: {e}"));
        assert_eq!(s.revision.commit, c2);
    }
    assert_eq!(cache.fetch_count(), 2);
    assert_eq!(cache.stats().snapshots, 2);

    // Clones of the handle share the counters and the single-flight.
    let c3 = server.commit_files("main", &[("apps/b/x", "b3")], "three");
    let (c1_, c2_) = (cache.clone(), cache.clone());
    let (sa, sb) = (app_a.clone(), app_b.clone());
    let t1 = tokio::spawn(async move { c1_.fetch(&sa).await });
    let t2 = tokio::spawn(async move { c2_.fetch(&sb).await });
    let (r1, r2) = bounded("spawned fetches", async { (t1.await.unwrap(), t2.await.unwrap()) }).await;
    assert_eq!(r1.unwrap().revision.commit, c3);
    assert_eq!(r2.unwrap().revision.commit, c3);
    assert_eq!(cache.fetch_count(), 3);
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_survives_a_restart() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let app = spec(&server.url(), branch("main"), None);
    {
        capture_logs();
        let cache = GitCache::new(&root, options(Duration::from_secs(60))).unwrap();
        assert_eq!(fetch_ok(&cache, &app).await.revision.commit, c1);
        assert_eq!(cache.fetch_count(), 1);
    }
    let cache = GitCache::new(&root, options(Duration::from_secs(60))).unwrap();
    let s = fetch_ok(&cache, &app).await;
    assert_eq!(s.revision.commit, c1);
    assert_eq!(cache.fetch_count(), 0, "the restarted cache had the commit already");
    // And it fetches incrementally into the same repository.
    let c2 = server.commit_files("main", &[("f", "2")], "two");
    assert_eq!(fetch_ok(&cache, &app).await.revision.commit, c2);
    assert_eq!(cache.fetch_count(), 1);
    assert_eq!(cache.stats().repairs, 0);
}

fn scribble_over(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            scribble_over(&path);
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            fs::write(&path, b"this is not a git object").unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_repository_is_repaired() {
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let app = spec(&url, branch("main"), None);
    assert_eq!(fetch_ok(&cache, &app).await.revision.commit, c1);
    let repo_dir = cache.repo_dir(&url).unwrap();
    assert!(repo_dir.join("objects").is_dir(), "{}", repo_dir.display());

    // A damaged config: the repository no longer opens.
    fs::write(repo_dir.join("config"), "[core\n\0garbage").unwrap();
    let c2 = server.commit_files("main", &[("f", "2")], "two");
    let s = fetch_ok(&cache, &app).await;
    assert_eq!(s.revision.commit, c2);
    assert_eq!(read(&s, "f"), "2");
    assert_eq!(cache.stats().repairs, 1);

    // Damaged objects: the repository opens, but reading history fails.
    scribble_over(&repo_dir.join("objects"));
    let c3 = server.commit_files("main", &[("f", "3")], "three");
    let s = fetch_ok(&cache, &app).await;
    assert_eq!(s.revision.commit, c3);
    assert_eq!(read(&s, "f"), "3");
    assert_eq!(cache.stats().repairs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_leaving_the_tree_refuse_the_snapshot() {
    let server = GitServer::start();
    server.commit_files("main", &[("app/a.yaml", "a")], "one");
    let ok = server.commit_symlink("main", "app/link.yaml", "a.yaml", "inside link");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let s = fetch_ok(&cache, &spec(&url, branch("main"), None)).await;
    assert_eq!(s.revision.commit, ok);
    assert_eq!(read(&s, "app/link.yaml"), "a");

    for (name, target) in [("abs", "/etc/passwd"), ("up", "../../../etc/passwd"), ("hop", "../app/../..")] {
        let bad = server.commit_symlink("main", &format!("app/{name}"), target, "escaping link");
        let err = fetch_err(&cache, &spec(&url, branch("main"), None)).await;
        assert!(matches!(err, SourceError::UnsafeSymlink { .. }), "{name}: {err}");
        assert_eq!(err.category(), "unsafe_symlink");
        assert!(!cache.snapshot_dir(&bad).exists(), "{name}: a refused snapshot must not exist");
        server.remove_files("main", &[&format!("app/{name}")], "remove escaping link");
    }
    let trees = cache.snapshot_dir(&ok).parent().unwrap().to_path_buf();
    assert!(
        fs::read_dir(&trees)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".tmp-")),
        "refused exports must clean up"
    );
}

// ----- timeouts -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_instead_of_hanging() {
    let silent = SilentServer::start();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(dir.path().join("cache"), options(Duration::from_secs(3))).unwrap();
    let port = silent.addr.port();
    for url in [format!("http://127.0.0.1:{port}/repo.git"), format!("ssh://git@127.0.0.1:{port}/repo.git")] {
        let started = Instant::now();
        let err = bounded("fetch from a silent server", cache.fetch(&spec(&url, branch("main"), None)))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Timeout { .. }), "{url}: {err}");
        assert_eq!(err.category(), "timeout");
        eprintln!("{url}: {err} after {:?}", started.elapsed());
        let err = bounded("resolve from a silent server", cache.resolve(&spec(&url, tag("v1"), None)))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Timeout { .. }), "{url}: {err}");
    }
    // The cache still serves other repositories meanwhile.
    let server = GitServer::start();
    let c1 = server.commit_files("main", &[("f", "1")], "one");
    assert_eq!(fetch_ok(&cache, &spec(&server.url(), branch("main"), None)).await.revision.commit, c1);
}

// ----- SSH -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_resolves_each_ref_kind() {
    let git = GitServer::start();
    let ssh = SshServer::start();
    let c1 = git.commit_files("main", &[("v", "1.0.0")], "one");
    git.tag("v1.0.0", &c1);
    let c2 = git.commit_files("main", &[("v", "1.4.0")], "two");
    git.tag("v1.4.0", &c2);
    let c3 = git.commit_files("main", &[("v", "main")], "three");
    let (_dir, cache) = new_cache();
    let url = ssh.url_for(&git.bare_repo_path());
    let creds = Some(ssh_credentials(ssh.client_key(), &ssh.known_hosts_line()));

    let s = bounded("ssh fetch", cache.fetch(&spec(&url, branch("main"), creds.clone())))
        .await
        .unwrap_or_else(|e| panic!("ssh fetch failed: {e}\nsshd log:\n{}", ssh.log()));
    assert_eq!(s.revision.to_string(), format!("main@sha1:{c3}"));
    assert_eq!(read(&s, "v"), "main");
    assert!(ssh.log().contains("Accepted publickey"), "sshd did not authenticate us:\n{}", ssh.log());
    let s = fetch_ok(&cache, &spec(&url, tag("v1.0.0"), creds.clone())).await;
    assert_eq!((s.revision.commit.as_str(), read(&s, "v").as_str()), (c1.as_str(), "1.0.0"));
    let s = fetch_ok(&cache, &spec(&url, semver("^1.2"), creds.clone())).await;
    assert_eq!(s.revision.to_string(), format!("v1.4.0@sha1:{c2}"));
    let s = fetch_ok(&cache, &spec(&url, commit(&c1), creds.clone())).await;
    assert_eq!(s.revision.to_string(), format!("sha1:{c1}"));
    assert_eq!(read(&s, "v"), "1.0.0");

    // known_hosts as `ssh-keygen -H` writes it.
    let hashed_file = ssh.scratch_dir().join("known_hosts");
    fs::write(&hashed_file, format!("{}\n", ssh.known_hosts_line())).unwrap();
    let out =
        std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed_file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hashed = fs::read_to_string(&hashed_file).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let r = bounded(
        "resolve",
        cache.resolve(&spec(&url, branch("main"), Some(ssh_credentials(ssh.client_key(), &hashed)))),
    )
    .await
    .unwrap();
    assert_eq!(r.commit, c3);

    // A cache-wide known_hosts also works, with only the identity in the Secret.
    let dir = tempfile::tempdir().unwrap();
    let global = GitCache::new(
        dir.path().join("cache"),
        GitCacheOptions { known_hosts: Some(ssh.known_hosts_line()), ..options(Duration::from_secs(60)) },
    )
    .unwrap();
    let id_only = Credentials { identity: Some(ssh.client_key().private.clone()), ..Default::default() };
    let r = bounded("resolve", global.resolve(&spec(&url, branch("main"), Some(id_only)))).await.unwrap();
    assert_eq!(r.commit, c3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_refuses_wrong_keys_and_unknown_or_changed_host_keys() {
    let git = GitServer::start();
    let ssh = SshServer::start();
    git.commit_files("main", &[("f", "1")], "one");
    let (_dir, cache) = new_cache();
    let url = ssh.url_for(&git.bare_repo_path());
    let scratch = ssh.scratch_dir();
    let other = SshKey::generate(&scratch, "other");

    // Wrong client key.
    let err = fetch_err(
        &cache,
        &spec(&url, branch("main"), Some(ssh_credentials(&other, &ssh.known_hosts_line()))),
    )
    .await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}\nsshd log:\n{}", ssh.log());
    // No client key at all.
    let kh_only = Credentials { known_hosts: Some(ssh.known_hosts_line()), ..Default::default() };
    let err = fetch_err(&cache, &spec(&url, branch("main"), Some(kh_only))).await;
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");

    // Unknown host: no known_hosts, or entries for other hosts only.
    let err =
        fetch_err(&cache, &spec(&url, branch("main"), Some(ssh_credentials(ssh.client_key(), "")))).await;
    assert!(matches!(err, SourceError::HostKeyUnknown { .. }), "{err}");
    assert_eq!(err.category(), "host_key_unknown");
    let elsewhere = format!(
        "git.example.com {}\n127.0.0.1 {}\n",
        ssh.host_key().public_key_fields(),
        ssh.host_key().public_key_fields()
    );
    let err =
        fetch_err(&cache, &spec(&url, branch("main"), Some(ssh_credentials(ssh.client_key(), &elsewhere))))
            .await;
    assert!(matches!(err, SourceError::HostKeyUnknown { .. }), "{err}");
    assert!(err.to_string().contains(&format!("[127.0.0.1]:{}", ssh.port())), "{err}");

    // Changed host key: same host and type, another key.
    let changed = format!("[127.0.0.1]:{} {}", ssh.port(), other.public_key_fields());
    let err =
        fetch_err(&cache, &spec(&url, branch("main"), Some(ssh_credentials(ssh.client_key(), &changed))))
            .await;
    assert!(matches!(err, SourceError::HostKeyMismatch { .. }), "{err}");
    assert_eq!(err.category(), "host_key_mismatch");
    eprintln!("{err}");
    assert!(err.to_string().contains("SHA256:"), "{err}");

    // Revoked.
    let revoked = format!(
        "{}\n@revoked [127.0.0.1]:{} {}\n",
        ssh.known_hosts_line(),
        ssh.port(),
        ssh.host_key().public_key_fields()
    );
    let err =
        fetch_err(&cache, &spec(&url, branch("main"), Some(ssh_credentials(ssh.client_key(), &revoked))))
            .await;
    assert!(matches!(err, SourceError::HostKeyMismatch { .. }), "{err}");

    // None of that fetched anything.
    assert_eq!(cache.fetch_count(), 0);

    let missing = ssh.url_for(&git.bare_repo_path().with_file_name("missing.git"));
    let err = fetch_err(
        &cache,
        &spec(&missing, branch("main"), Some(ssh_credentials(ssh.client_key(), &ssh.known_hosts_line()))),
    )
    .await;
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
}

// ----- secrets -----

/// Every error the failure paths above can produce with credentials configured, formatted
/// every way, plus every log line of this test binary: no secret anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_errors_debug_output_or_logs() {
    const PASSWORD: &str = "pw-LEAKCHECK-0001";
    const TOKEN: &str = "tok-LEAKCHECK-0002";
    let logs = capture_logs();
    let (_dir, cache) = new_cache();
    let mut errors: Vec<SourceError> = Vec::new();
    let mut debug_output: Vec<String> = Vec::new();

    let basic_server = GitServer::start_with_auth("alice", "right-password");
    basic_server.commit_files("main", &[("f", "1")], "one");
    let url = basic_server.url();
    let wrong = basic("alice", PASSWORD);
    debug_output.push(format!("{wrong:?} {:?}", spec(&url, branch("main"), Some(wrong.clone()))));
    errors.push(fetch_err(&cache, &spec(&url, branch("main"), Some(wrong.clone()))).await);
    let in_url = url.replace("http://", &format!("http://alice:{PASSWORD}@"));
    debug_output.push(format!("{:?}", spec(&in_url, branch("main"), None)));
    errors.push(fetch_err(&cache, &spec(&in_url, branch("main"), None)).await);
    let anonymous = GitServer::start();
    let missing = anonymous
        .url()
        .replace("http://", &format!("http://alice:{PASSWORD}@"))
        .replace("repo.git", "missing.git");
    errors.push(fetch_err(&cache, &spec(&missing, branch("main"), None)).await);

    let bearer_server = GitServer::start_with_bearer("right-token");
    bearer_server.commit_files("main", &[("f", "1")], "one");
    let token = Credentials { bearer_token: Some(TOKEN.into()), ..Default::default() };
    debug_output.push(format!("{token:?}"));
    errors.push(fetch_err(&cache, &spec(&bearer_server.url(), branch("main"), Some(token.clone()))).await);

    let ssh = SshServer::start();
    let stranger = SshKey::generate(&ssh.scratch_dir(), "stranger");
    let key_body: Vec<String> = stranger
        .private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect();
    assert!(!key_body.is_empty());
    let ssh_url = ssh.url_for(&basic_server.bare_repo_path());
    let creds = ssh_credentials(&stranger, &ssh.known_hosts_line());
    debug_output.push(format!("{creds:?}"));
    errors.push(fetch_err(&cache, &spec(&ssh_url, branch("main"), Some(creds))).await);
    let creds = Credentials { password: Some(PASSWORD.into()), ..ssh_credentials(&stranger, "") };
    errors.push(fetch_err(&cache, &spec(&ssh_url, branch("main"), Some(creds))).await);
    let bad_secret = [
        ("username".to_string(), k8s_openapi::ByteString(b"u".to_vec())),
        ("password".to_string(), k8s_openapi::ByteString(PASSWORD.as_bytes().to_vec())),
        ("bearerToken".to_string(), k8s_openapi::ByteString(TOKEN.as_bytes().to_vec())),
    ]
    .into();
    errors.push(Credentials::from_data("creds", &bad_secret).unwrap_err());

    let silent = SilentServer::start();
    let short = GitCache::new(_dir.path().join("short"), options(Duration::from_secs(2))).unwrap();
    let silent_url = format!("http://alice:{PASSWORD}@127.0.0.1:{}/repo.git", silent.addr.port());
    errors.push(fetch_err(&short, &spec(&silent_url, branch("main"), Some(token))).await);

    let categories: Vec<&str> = errors.iter().map(SourceError::category).collect();
    for expected in ["auth_failed", "repo_not_found", "invalid_secret", "timeout"] {
        assert!(categories.contains(&expected), "no {expected} error produced: {categories:?}");
    }
    let logged = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    for e in &errors {
        eprintln!("{}: {e}", e.category());
    }
    let formatted: Vec<String> =
        errors.iter().map(|e| format!("{e}\n{e:?}\n{e:#?}")).chain(debug_output).chain([logged]).collect();
    for text in &formatted {
        for secret in [PASSWORD, TOKEN].iter().copied().chain(key_body.iter().map(String::as_str)) {
            assert!(!text.contains(secret), "secret leaked into: {text}");
        }
    }
}

/// Applications on one repository share an ls-remote within `max_age`: the second sees what the
/// first listed (even though the branch moved since), a zero max_age lists afresh, and other
/// credentials never ride on a listing they did not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_listing_is_shared_within_max_age_and_only_with_the_same_credentials() {
    let server = GitServer::start_with_auth("alice", "s3cret-Pa55word");
    let c1 = server.commit_files("main", &[("x", "1")], "one");
    let (_dir, cache) = new_cache();
    let url = server.url();
    let alice = spec(&url, branch("main"), Some(basic("alice", "s3cret-Pa55word")));
    let minute = Duration::from_secs(60);

    let first = bounded("first fetch", cache.fetch_within(&alice, minute)).await.expect("first fetch");
    assert_eq!(first.revision.commit, c1);
    let listings = cache.stats().ref_listings;

    let c2 = server.commit_files("main", &[("x", "2")], "two");
    let shared = bounded("shared fetch", cache.fetch_within(&alice, minute)).await.expect("shared fetch");
    assert_eq!(shared.revision.commit, c1, "within max_age the listing made before the push is reused");
    assert_eq!(cache.stats().ref_listings, listings);

    let wrong = spec(&url, branch("main"), Some(basic("alice", "wrong-Pa55word")));
    let err = bounded("wrong credentials", cache.fetch_within(&wrong, minute)).await;
    assert!(err.is_err(), "other credentials must list for themselves: {err:?}");
    assert_eq!(cache.stats().ref_listings, listings + 1);

    let fresh =
        bounded("fresh fetch", cache.fetch_within(&alice, Duration::ZERO)).await.expect("fresh fetch");
    assert_eq!(fresh.revision.commit, c2);
    assert_eq!(cache.stats().ref_listings, listings + 2);
    // And the fresh listing is what the next sharer gets.
    let after = bounded("shared again", cache.fetch_within(&alice, minute)).await.expect("shared again");
    assert_eq!(after.revision.commit, c2);
    assert_eq!(cache.stats().ref_listings, listings + 2);
}
