//! `ferry::source::write` against real Git servers, no cluster: a workspace fetches a branch,
//! commits over it and pushes, fast-forward only, over HTTP with basic auth and over SSH with a
//! key (`git http-backend` and OpenSSH's sshd running `git-receive-pack`).

use std::time::Duration;

use ferry::source::{Author, Change, Credentials, GitCache, GitCacheOptions, PushOutcome, SourceError};

use crate::support::{GitServer, SshServer, T};

fn cache() -> (tempfile::TempDir, GitCache) {
    let dir = tempfile::tempdir().unwrap();
    // network_timeout is process-wide in libgit2: the value the source tests use.
    let options = GitCacheOptions {
        timeout: Duration::from_secs(60),
        network_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let cache = GitCache::new(dir.path().join("cache"), options).unwrap();
    (dir, cache)
}

fn change(path: &str, text: &str) -> Change {
    Change { path: path.into(), contents: Some(text.as_bytes().to_vec()) }
}

/// Commits over the tip, loses the race to another pusher (rejected, the branch untouched), then
/// makes the commit again on the new tip and pushes it.
async fn commit_race_and_push(cache: &GitCache, git: &GitServer, url: &str, creds: Credentials) {
    let author = Author::from_spec(None);
    let ws =
        tokio::time::timeout(T, cache.workspace(url, "main", Some(creds.clone()))).await.unwrap().unwrap();
    let first = ws.head().to_string();
    let mine = ws.commit(&first, vec![change("app/a.yaml", "a: 2\n")], "ferry: a 2", &author).await.unwrap();
    let theirs = git.commit_files("main", &[("other/b.txt", "b\n")], "someone else");
    match ws.push(&mine, "main", false).await.unwrap() {
        PushOutcome::Rejected { .. } => {}
        PushOutcome::Pushed => panic!("a push that is not a fast-forward was accepted"),
    }
    assert_eq!(git.head("main"), theirs, "the branch moved despite the rejection");

    let ws = cache.workspace(url, "main", Some(creds)).await.unwrap();
    assert_eq!(ws.head(), theirs);
    let mine = ws.commit(&theirs, vec![change("app/a.yaml", "a: 2\n")], "ferry: a 2", &author).await.unwrap();
    assert_eq!(ws.push(&mine, "main", false).await.unwrap(), PushOutcome::Pushed);
    assert_eq!(git.head("main"), mine);
    assert_eq!(git.show(&format!("{mine}:app/a.yaml")), "a: 2\n");
    assert_eq!(git.show(&format!("{mine}:other/b.txt")), "b\n", "the other commit is kept");
    let files = ws.read_files(&mine, "app", 10, 1024).await.unwrap();
    assert_eq!(files, vec![("app/a.yaml".to_string(), b"a: 2\n".to_vec())]);
}

#[tokio::test]
async fn a_workspace_pushes_over_http_with_basic_auth_fast_forward_only() {
    let git = GitServer::start_with_auth("pusher", "push-password-1");
    git.commit_files("main", &[("app/a.yaml", "a: 1\n")], "one");
    let (_dir, cache) = cache();
    let creds = Credentials {
        username: Some("pusher".into()),
        password: Some("push-password-1".into()),
        ..Default::default()
    };
    commit_race_and_push(&cache, &git, &git.url(), creds).await;

    // Wrong credentials: an authentication error that does not show the password.
    let wrong = Credentials {
        username: Some("pusher".into()),
        password: Some("wrong-pass-9".into()),
        ..Default::default()
    };
    let err = cache.workspace(&git.url(), "main", Some(wrong)).await.unwrap_err();
    assert!(matches!(err, SourceError::AuthenticationFailed { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-pass-9"), "{err}");
}

#[tokio::test]
async fn a_workspace_pushes_over_ssh_with_a_key() {
    let git = GitServer::start();
    git.commit_files("main", &[("app/a.yaml", "a: 1\n")], "one");
    let ssh = SshServer::start();
    let (_dir, cache) = cache();
    let creds = Credentials {
        identity: Some(ssh.client_key().private.clone()),
        known_hosts: Some(ssh.known_hosts_line()),
        ..Default::default()
    };
    let url = ssh.url_for(&git.bare_repo_path());
    commit_race_and_push(&cache, &git, &url, creds).await;
}

#[tokio::test]
async fn a_missing_branch_is_named() {
    let git = GitServer::start();
    git.commit_files("main", &[("a", "1")], "one");
    let (_dir, cache) = cache();
    let err = cache.workspace(&git.url(), "nope", None).await.unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains("refs/heads/nope"), "{err}");
}
