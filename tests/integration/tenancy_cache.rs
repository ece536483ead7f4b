//! Issue 19, the Git cache as a hostile tenant sees it: one cache serves every Application, so
//! nothing one tenant fetched with its credentials may be handed to another that could not fetch
//! it itself. Each test is the attack, against real Git servers on loopback (no cluster).

use std::path::Path;
use std::time::Duration;

use ferry::api::GitRef;
use ferry::source::{Credentials, GitCache, GitCacheOptions, SourceError, SourceSpec};

use crate::support::{GitServer, T};

fn new_cache(dir: &Path) -> GitCache {
    let options = GitCacheOptions {
        timeout: Duration::from_secs(60),
        network_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    GitCache::new(dir.join("cache"), options).unwrap()
}

fn spec(url: &str, git_ref: GitRef, credentials: Option<Credentials>) -> SourceSpec {
    SourceSpec { repo_url: url.to_string(), git_ref, credentials }
}

fn branch(name: &str) -> GitRef {
    GitRef { branch: Some(name.into()), ..Default::default() }
}

fn commit(sha: &str) -> GitRef {
    GitRef { commit: Some(sha.into()), ..Default::default() }
}

fn named(name: &str) -> GitRef {
    GitRef { name: Some(name.into()), ..Default::default() }
}

fn alice() -> Credentials {
    Credentials { username: Some("alice".into()), password: Some("team-a-Pa55".into()), ..Default::default() }
}

async fn fetch(cache: &GitCache, spec: &SourceSpec) -> Result<ferry::source::Snapshot, SourceError> {
    tokio::time::timeout(T, cache.fetch(spec)).await.expect("the fetch returned in time")
}

/// Team A's private repository, fetched once through the cache with A's credentials.
struct Private {
    server: GitServer,
    commit: String,
}

async fn team_a_fetched(cache: &GitCache) -> Private {
    let server = GitServer::start_with_auth("alice", "team-a-Pa55");
    let commit = server.commit_files("main", &[("app/secret.yaml", "team-a-private-data")], "private");
    let snapshot = fetch(cache, &spec(&server.url(), branch("main"), Some(alice()))).await.unwrap();
    assert_eq!(snapshot.revision.commit, commit);
    Private { server, commit }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_named_by_sha_is_not_served_from_another_tenants_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let a = team_a_fetched(&cache).await;

    // Team B names A's commit through a public repository it controls, which even serves any
    // SHA asked for: it does not have the commit, so it cannot send it.
    let b = GitServer::start();
    b.commit_files("main", &[("app/x.yaml", "b")], "b");
    b.set_config("uploadpack.allowAnySHA1InWant", "true");
    let err = fetch(&cache, &spec(&b.url(), commit(&a.commit), None)).await.map(|s| s.root).unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&a.commit), "{err}");

    // A's repository without A's credentials: the listing already fails.
    let err =
        fetch(&cache, &spec(&a.server.url(), commit(&a.commit), None)).await.map(|s| s.root).unwrap_err();
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");

    // A itself still gets its commit by SHA, from what the cache holds: no new fetch.
    let before = cache.fetch_count();
    let own = fetch(&cache, &spec(&a.server.url(), commit(&a.commit), Some(alice()))).await.unwrap();
    assert_eq!(std::fs::read_to_string(own.root.join("app/secret.yaml")).unwrap(), "team-a-private-data");
    assert_eq!(cache.fetch_count(), before, "the cached repository proved the commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_into_the_cache_and_ferrys_own_refs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let a = team_a_fetched(&cache).await;

    // The cache directory of A's repository is derivable from its URL; ferry's own refs name A's
    // branches there.
    let repo_dir = cache.repo_dir(&a.server.url()).unwrap();
    assert!(repo_dir.is_dir(), "{}", repo_dir.display());
    let link = dir.path().join("innocent-looking");
    std::os::unix::fs::symlink(cache.root(), &link).unwrap();
    let key = repo_dir.file_name().unwrap().to_string_lossy().to_string();
    let spellings = [
        format!("file://{}", repo_dir.display()),
        format!("file://{}/repos/../repos/{key}", cache.root().display()),
        format!("file://{}/repos/{key}", link.display()),
        format!("file://{}/trees", cache.root().display()),
    ];
    for url in &spellings {
        for git_ref in [named("refs/ferry/heads/main"), branch("main")] {
            let err = fetch(&cache, &spec(url, git_ref.clone(), None)).await.map(|s| s.root).unwrap_err();
            assert!(matches!(err, SourceError::InvalidUrl { .. }), "{url} {git_ref:?}: {err}");
            assert!(err.to_string().contains("ferry's own Git cache"), "{err}");
        }
    }

    // ferry's internal refs are never resolvable through ref.name, whatever the repository.
    let b = GitServer::start();
    b.commit_files("main", &[("f", "b")], "b");
    b.push_ref("refs/ferry/heads/main", &b.commit_files("other", &[("f", "c")], "c"));
    let err = fetch(&cache, &spec(&b.url(), named("refs/ferry/heads/main"), None))
        .await
        .map(|s| s.root)
        .unwrap_err();
    assert!(matches!(err, SourceError::InvalidRef { .. }), "{err}");

    // A file:// repository outside the cache still works (when the flag allows file:// at all).
    let outside = format!("file://{}", b.bare_repo_path().display());
    assert!(fetch(&cache, &spec(&outside, branch("main"), None)).await.is_ok());
}

/// Answers every HTTP request with a redirect to the same path on `target` (another host name
/// for the same loopback server), for at most `max` connections.
fn redirector(target: String, max: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max).flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut stream = reader.into_inner();
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_never_sent_to_a_host_a_redirect_names() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    // The host the redirect names asks for credentials; it must never get them.
    let elsewhere = GitServer::start_with_auth("alice", "team-a-Pa55");
    elsewhere.commit_files("main", &[("f", "x")], "x");
    let port = elsewhere.url().split(':').nth(2).unwrap().split('/').next().unwrap().to_string();
    let front = redirector(format!("http://localhost:{port}"), 16);
    let url = format!("{front}/repo.git");

    let err = fetch(&cache, &spec(&url, branch("main"), Some(alice()))).await.map(|s| s.root).unwrap_err();
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");
    assert!(err.to_string().contains("redirected to http://localhost"), "{err}");
    assert!(!format!("{err:?}").contains("team-a-Pa55"), "{err:?}");
}
