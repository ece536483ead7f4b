//! Talking to a remote with libgit2: the callbacks (credentials, host key check, cancellation),
//! the cheap ref listing and the fetch, and turning libgit2's errors into [`SourceError`]s.
//!
//! Everything here is blocking and runs on a `spawn_blocking` thread owned by the cache.
//! Such a thread cannot be cancelled from outside, so every callback checks [`Cancel`] and
//! aborts the transfer once the deadline has passed or the caller gave up.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions,
    RemoteCallbacks, RemoteRedirect, Repository,
};

use super::SourceError;
use super::credentials::{Credentials, Redactor};
use super::known_hosts::{HostKeyStatus, KnownHosts, fingerprint};
use super::refs::{RemoteRef, collect_remote_refs};
use super::repo_url::{RepoUrl, Transport};

/// A deadline plus a flag the async side raises when it stops waiting.
#[derive(Clone, Debug)]
pub(crate) struct Cancel {
    deadline: Instant,
    flag: Arc<AtomicBool>,
}

impl Cancel {
    pub(crate) fn after(timeout: Duration) -> Cancel {
        Cancel { deadline: Instant::now() + timeout, flag: Arc::new(AtomicBool::new(false)) }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

/// Everything needed to reach one remote.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub url: RepoUrl,
    pub credentials: Option<Credentials>,
    pub known_hosts: KnownHosts,
    pub redactor: Redactor,
    pub cancel: Cancel,
    pub timeout: Duration,
}

/// What the callbacks learned, so a generic libgit2 error can be reported precisely.
#[derive(Default)]
struct Observed {
    failure: RefCell<Option<SourceError>>,
    cancelled: Cell<bool>,
    tried_key: Cell<bool>,
    tried_password: Cell<bool>,
    remote_messages: RefCell<String>,
}

impl Observed {
    fn fail(&self, error: SourceError, code: ErrorCode, class: ErrorClass) -> git2::Error {
        let err = git2::Error::new(code, class, error.to_string());
        self.failure.borrow_mut().get_or_insert(error);
        err
    }
}

fn callbacks<'a>(access: &'a Access, observed: &'a Observed) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    cb.credentials(move |url, username_from_url, allowed| {
        if let Some(elsewhere) = redirected_elsewhere(access, url) {
            return Err(observed.fail(
                SourceError::AuthenticationFailed {
                    url: access.url.redacted().to_string(),
                    message: format!(
                        "the server redirected to {elsewhere}, which asks for credentials; ferry sends credentials only to the host the repository URL names"
                    ),
                },
                ErrorCode::Auth,
                ErrorClass::Callback,
            ));
        }
        credential(access, observed, username_from_url, allowed)
    });
    cb.certificate_check(move |cert, _hostname| {
        if access.cancel.is_cancelled() {
            observed.cancelled.set(true);
            return Err(git2::Error::from_str("cancelled"));
        }
        match cert.as_hostkey() {
            Some(hostkey) => check_host_key(access, observed, hostkey.hostkey(), hostkey.hostkey_type()),
            // TLS: libgit2 verified the chain against the system roots; keep its verdict.
            None => Ok(CertificateCheckStatus::CertificatePassthrough),
        }
    });
    cb.transfer_progress(move |_| {
        let go_on = !access.cancel.is_cancelled();
        observed.cancelled.set(observed.cancelled.get() || !go_on);
        go_on
    });
    cb.sideband_progress(move |text| {
        // Keep the server's last words ("fatal: ..." explains many failures), bounded.
        let mut messages = observed.remote_messages.borrow_mut();
        if messages.len() < 4096 {
            messages.push_str(&String::from_utf8_lossy(text));
        }
        let go_on = !access.cancel.is_cancelled();
        observed.cancelled.set(observed.cancelled.get() || !go_on);
        go_on
    });
    cb
}

/// The host (and port) an HTTP(S) request for credentials went to, when a redirect took it away
/// from the one the repository URL names: libgit2 follows the first redirect to any host and
/// would hand that host the username and password.
fn redirected_elsewhere(access: &Access, requested: &str) -> Option<String> {
    if !matches!(access.url.transport(), Transport::Http | Transport::Https) {
        return None;
    }
    let Ok(parsed) = url::Url::parse(requested) else {
        return Some("an address ferry cannot parse".to_string());
    };
    let host = parsed.host_str().map(str::to_ascii_lowercase);
    let default_port = if access.url.transport() == Transport::Https { 443 } else { 80 };
    let port = parsed.port_or_known_default().filter(|p| *p != default_port);
    let scheme_kept = parsed.scheme() == requested_scheme(access.url.transport());
    if host.as_deref() == access.url.host() && port == access.url.port() && scheme_kept {
        return None;
    }
    Some(match (host, parsed.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", parsed.scheme()),
        (Some(h), None) => format!("{}://{h}", parsed.scheme()),
        (None, _) => "an address without a host".to_string(),
    })
}

fn requested_scheme(transport: Transport) -> &'static str {
    if transport == Transport::Https { "https" } else { "http" }
}

fn credential(
    access: &Access,
    observed: &Observed,
    username_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    if access.cancel.is_cancelled() {
        observed.cancelled.set(true);
        return Err(git2::Error::from_str("cancelled"));
    }
    let creds = access.credentials.as_ref();
    let auth_failed = |message: &str| auth_failed(access, observed, message);
    let ssh_user = username_from_url
        .or(access.url.username())
        .or(creds.and_then(|c| c.username.as_deref()))
        .unwrap_or("git");
    // A username can be a token (`https://<token>@host`, or a Secret's `username`), so messages
    // say where the user came from, never who it is.
    let user_origin = user_origin(username_from_url.or(access.url.username()).is_some(), creds.is_some());

    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(ssh_user);
    }
    // libgit2 asks again after the server rejected what we gave; one try per kind is all we
    // have, and asking forever would hang.
    if allowed.contains(CredentialType::SSH_KEY)
        && let Some(identity) = creds.and_then(|c| c.identity.as_deref())
    {
        if observed.tried_key.replace(true) {
            return Err(auth_failed(&format!("the server rejected the SSH key for {user_origin}")));
        }
        return Cred::ssh_key_from_memory(ssh_user, None, identity, None).map_err(|e| {
            auth_failed(&format!(
                "the identity in the Secret cannot be used: {}",
                access.redactor.redact(e.message())
            ))
        });
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        return user_password(access, observed, user_origin);
    }
    if allowed.contains(CredentialType::SSH_KEY) {
        return Err(auth_failed(&format!(
            "the server wants an SSH key for {user_origin} and the Secret has none (identity)"
        )));
    }
    Err(auth_failed("the server asks for an authentication method ferry does not support"))
}

/// A username and password: the Secret's, else those in the URL, tried once.
fn user_password(access: &Access, observed: &Observed, user_origin: &str) -> Result<Cred, git2::Error> {
    let creds = access.credentials.as_ref();
    let auth_failed = |message: &str| auth_failed(access, observed, message);
    let (user, password, origin) = match creds.and_then(|c| c.username.as_deref().zip(c.password.as_deref()))
    {
        Some((user, password)) => (user, password, "the Secret's username and password"),
        None => match access.url.username().zip(access.url.password()) {
            Some((user, password)) => (user, password, "the username and password in the URL"),
            None if creds.is_some_and(|c| c.bearer_token.is_some()) => {
                return Err(auth_failed("the server rejected the bearer token"));
            }
            None if access.url.transport() == Transport::Ssh => {
                return Err(auth_failed(&format!(
                    "the server wants an SSH key or password for {user_origin}, and the Secret has neither (identity)"
                )));
            }
            None => {
                return Err(auth_failed(
                    "the server requires authentication and no credentials are configured (secretRef with username+password or bearerToken)",
                ));
            }
        },
    };
    if observed.tried_password.replace(true) {
        return Err(auth_failed(&format!("the server rejected {origin}")));
    }
    Cred::userpass_plaintext(user, password)
}

/// Records an authentication failure (the first one is what the fetch reports).
fn auth_failed(access: &Access, observed: &Observed, message: &str) -> git2::Error {
    observed.fail(
        SourceError::AuthenticationFailed {
            url: access.url.redacted().to_string(),
            message: message.to_string(),
        },
        ErrorCode::Auth,
        ErrorClass::Callback,
    )
}

/// Where the user libgit2 authenticates as came from, for messages that must not name it.
fn user_origin(in_url: bool, has_secret: bool) -> &'static str {
    match (in_url, has_secret) {
        (true, _) => "the user in the URL",
        (false, true) => "the Secret's username (or git)",
        (false, false) => "the user git",
    }
}

fn check_host_key(
    access: &Access,
    observed: &Observed,
    key: Option<&[u8]>,
    key_type: Option<git2::cert::SshHostKeyType>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let url = access.url.redacted().to_string();
    let host = access.url.host().unwrap_or_default();
    let (Some(key), Some(key_type)) = (key, key_type) else {
        return Err(observed.fail(
            SourceError::Network {
                url,
                message: "the SSH server did not present a raw host key".to_string(),
            },
            ErrorCode::Certificate,
            ErrorClass::Ssh,
        ));
    };
    let shown_host = super::known_hosts::host_entry_name(host, access.url.port());
    let key_type_name = key_type.name().to_string();
    let fp = fingerprint(key);
    let error = match access.known_hosts.check(host, access.url.port(), &key_type_name, key) {
        HostKeyStatus::Trusted => return Ok(CertificateCheckStatus::CertificateOk),
        HostKeyStatus::Unknown { known_types } => SourceError::HostKeyUnknown {
            url,
            host: shown_host,
            key_type: key_type_name,
            fingerprint: fp,
            message: if access.known_hosts.is_empty() {
                "no known_hosts are configured (known_hosts key of the Secret)".to_string()
            } else if known_types.is_empty() {
                "known_hosts has no entry for this host".to_string()
            } else {
                format!("known_hosts only has {} keys for this host", known_types.join(", "))
            },
        },
        HostKeyStatus::Mismatch => SourceError::HostKeyMismatch {
            url,
            host: shown_host,
            key_type: key_type_name,
            fingerprint: fp,
            message: "known_hosts has a different key of this type: the server's key changed or someone is intercepting the connection".to_string(),
        },
        HostKeyStatus::Revoked => SourceError::HostKeyMismatch {
            url,
            host: shown_host,
            key_type: key_type_name,
            fingerprint: fp,
            message: "this key is marked @revoked in known_hosts".to_string(),
        },
    };
    Err(observed.fail(error, ErrorCode::Certificate, ErrorClass::Ssh))
}

fn fetch_options<'a>(access: &'a Access, observed: &'a Observed) -> FetchOptions<'a> {
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(access, observed));
    opts.download_tags(AutotagOption::None);
    opts.update_fetchhead(false);
    if let Some(token) = access.credentials.as_ref().and_then(|c| c.bearer_token.as_deref())
        && matches!(access.url.transport(), Transport::Http | Transport::Https)
    {
        opts.custom_headers(&[&format!("Authorization: Bearer {token}")]);
        // libgit2 sends custom headers on every request, also after a redirect to another
        // host: never hand the token to a host the URL does not name.
        opts.follow_redirects(RemoteRedirect::None);
    }
    opts
}

/// The remote's refs, like `git ls-remote`: one round trip, no objects transferred.
///
/// `Remote::connect_auth` cannot send custom headers (needed for bearer tokens), so this
/// runs a download whose only refspec matches nothing: libgit2 connects with the full fetch
/// options, reads the advertisement, wants nothing and stops. `scratch` is an empty
/// repository that is never written to.
pub(crate) fn list_refs(scratch: &Repository, access: &Access) -> Result<Vec<RemoteRef>, SourceError> {
    let observed = Observed::default();
    let mut remote = scratch
        .remote_anonymous(access.url.remote_url())
        .map_err(|e| classify(&e, access, &observed, "ref listing", None))?;
    let mut opts = fetch_options(access, &observed);
    remote
        .download(&["refs/ferry-list-only/none:refs/ferry-list-only/none"], Some(&mut opts))
        .map_err(|e| classify(&e, access, &observed, "ref listing", None))?;
    let advertised: Vec<(String, String)> = remote
        .list()
        .map_err(|e| classify(&e, access, &observed, "ref listing", None))?
        .iter()
        .map(|head| (head.name().to_string(), head.oid().to_string()))
        .collect();
    let _ = remote.disconnect();
    Ok(collect_remote_refs(advertised))
}

/// Fetches `refspecs` into `repo`. No tags are followed, FETCH_HEAD is not written.
pub(crate) fn fetch(
    repo: &Repository,
    repo_path: &Path,
    access: &Access,
    refspecs: &[String],
) -> Result<(), SourceError> {
    let observed = Observed::default();
    let mut remote = repo
        .remote_anonymous(access.url.remote_url())
        .map_err(|e| classify(&e, access, &observed, "fetch", Some(repo_path)))?;
    let mut opts = fetch_options(access, &observed);
    remote
        .fetch(refspecs, Some(&mut opts), None)
        .map_err(|e| classify(&e, access, &observed, "fetch", Some(repo_path)))
}

/// Pushes `refspec` (`[+]<local ref>:refs/heads/<branch>`) from `repo`. `Ok(None)` when the
/// remote took it, `Ok(Some(why))` when it refused the update (not a fast-forward, a protected
/// branch, a hook): that is an answer, not a failure of the transport.
pub(crate) fn push(repo: &Repository, access: &Access, refspec: &str) -> Result<Option<String>, SourceError> {
    let observed = Observed::default();
    let rejection: RefCell<Option<String>> = RefCell::new(None);
    let mut remote = repo
        .remote_anonymous(access.url.remote_url())
        .map_err(|e| classify(&e, access, &observed, "push", None))?;
    let mut cb = callbacks(access, &observed);
    cb.push_update_reference(|_refname, status| {
        if let Some(why) = status {
            rejection.borrow_mut().get_or_insert_with(|| access.redactor.redact(why));
        }
        Ok(())
    });
    let mut opts = git2::PushOptions::new();
    opts.remote_callbacks(cb);
    if let Some(token) = access.credentials.as_ref().and_then(|c| c.bearer_token.as_deref())
        && matches!(access.url.transport(), Transport::Http | Transport::Https)
    {
        opts.custom_headers(&[&format!("Authorization: Bearer {token}")]);
        opts.follow_redirects(RemoteRedirect::None);
    }
    let pushed = remote.push(&[refspec], Some(&mut opts));
    drop(opts);
    match pushed {
        Ok(()) => Ok(rejection.take()),
        // libgit2 refuses a non-fast-forward itself when it knows the remote's tip.
        Err(e) if is_not_fast_forward(&e) => Ok(Some("not a fast-forward: the branch moved on".to_string())),
        Err(e) => Err(classify(&e, access, &observed, "push", None)),
    }
}

fn is_not_fast_forward(err: &git2::Error) -> bool {
    let lower = err.message().to_ascii_lowercase();
    err.code() == ErrorCode::NotFastForward
        || lower.contains("non-fastforward")
        || lower.contains("not present locally")
        || lower.contains("fast-forward")
}

/// Maps a libgit2 error to a [`SourceError`], preferring what the callbacks observed.
/// `repo_path` is the local repository, if the operation touched one: errors from its object
/// database mean it is corrupt.
fn classify(
    err: &git2::Error,
    access: &Access,
    observed: &Observed,
    operation: &'static str,
    repo_path: Option<&Path>,
) -> SourceError {
    if let Some(failure) = observed.failure.borrow_mut().take() {
        return failure;
    }
    let url = access.url.redacted().to_string();
    let timeout = SourceError::Timeout { url: url.clone(), operation, after: access.timeout };
    if observed.cancelled.get() || access.cancel.is_cancelled() {
        return timeout;
    }
    let mut message = err.message().trim().to_string();
    let remote = observed.remote_messages.borrow();
    let remote = remote.trim();
    if !remote.is_empty() {
        message = format!("{message} (remote: {})", remote.lines().last().unwrap_or(remote).trim());
    }
    let message = access.redactor.redact(&message);
    let lower = message.to_ascii_lowercase();

    if err.code() == ErrorCode::Timeout || lower.contains("timed out") || lower.contains("timeout") {
        return timeout;
    }
    if err.code() == ErrorCode::Auth
        || mentions_http_status(&lower, "401")
        || mentions_http_status(&lower, "403")
        || lower.contains("authentication")
        || lower.contains("permission denied")
    {
        return SourceError::AuthenticationFailed { url, message };
    }
    if let Some(path) = repo_path
        && is_local_corruption(err)
    {
        return SourceError::Corrupt { url, path: path.to_path_buf(), message };
    }
    if mentions_http_status(&lower, "404")
        || lower.contains("not found")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("not a git repository")
        || lower.contains("no such file or directory")
        || lower.contains("could not find repository")
        || (access.url.transport() == Transport::File && err.code() == ErrorCode::NotFound)
    {
        return SourceError::RepositoryNotFound { url, message };
    }
    if err.code() == ErrorCode::Certificate {
        return SourceError::Network { url, message: format!("certificate check failed: {message}") };
    }
    match err.class() {
        ErrorClass::Net
        | ErrorClass::Os
        | ErrorClass::Ssl
        | ErrorClass::Ssh
        | ErrorClass::Http
        | ErrorClass::Indexer
        | ErrorClass::Callback => SourceError::Network { url, message },
        _ => SourceError::Git { url, message },
    }
}

/// Whether a (lower-cased) message reports this HTTP status, as in libgit2's "unexpected http
/// status code: 403". A bare substring match is not enough: messages carry paths and URLs, and
/// a temp directory like `/tmp/x-1795540373` contains "403".
fn mentions_http_status(lower: &str, code: &str) -> bool {
    let tokens: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).collect();
    tokens.windows(2).any(|w| matches!(w[0], "code" | "status" | "http" | "error") && w[1] == code)
}

/// Whether an error from reading the local repository means it is damaged. Callers that can
/// legitimately miss an object (looking up a commit not fetched yet) check `NotFound` first;
/// anywhere else a missing object is damage too: a ref or a commit points at it.
pub(crate) fn is_local_corruption(err: &git2::Error) -> bool {
    matches!(
        err.class(),
        ErrorClass::Odb
            | ErrorClass::Zlib
            | ErrorClass::Repository
            | ErrorClass::Reference
            | ErrorClass::Object
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_found_only_as_statuses() {
        assert!(mentions_http_status("unexpected http status code: 403", "403"));
        assert!(mentions_http_status("remote: http 404 not found", "404"));
        // Seen in CI: a temp path whose digits contain 403 made a missing repo an auth failure.
        let path = "failed to resolve path '/tmp/ferry-git-server-11337-28-1795540373140185974/repos/x.git'";
        assert!(!mentions_http_status(path, "403"));
        assert!(!mentions_http_status("/tmp/ferry-403/repo.git: no such file or directory", "403"));
    }

    const PASSWORD: &str = "pw-Unit/Secret 1";
    const TOKEN: &str = "tok-UnitSecret-2";

    fn access(url: &str) -> Access {
        let url = RepoUrl::parse(url).unwrap();
        let credentials = Some(Credentials {
            username: Some("alice".into()),
            password: Some(PASSWORD.into()),
            bearer_token: Some(TOKEN.into()),
            identity: None,
            known_hosts: None,
        });
        let redactor = Redactor::new(credentials.as_ref(), url.password());
        Access {
            url,
            credentials,
            known_hosts: KnownHosts::default(),
            redactor,
            cancel: Cancel::after(Duration::from_secs(60)),
            timeout: Duration::from_secs(60),
        }
    }

    /// Whatever libgit2 or the server puts into a message, the error ferry builds from it
    /// holds no secret, for every variant `classify` can produce.
    #[test]
    fn classified_errors_never_carry_secrets() {
        let encoded = "pw-Unit%2FSecret%201";
        let url = format!("https://alice:{encoded}@git.example.com/r.git");
        let a = access(&url);
        let echo = format!("{PASSWORD} {encoded} {TOKEN} via https://alice:{encoded}@git.example.com/r.git");
        let cases = [
            (ErrorCode::Auth, ErrorClass::Http, "auth_failed"),
            (ErrorCode::GenericError, ErrorClass::Http, "repo_not_found"),
            (ErrorCode::Timeout, ErrorClass::Net, "timeout"),
            (ErrorCode::GenericError, ErrorClass::Net, "network"),
            (ErrorCode::Certificate, ErrorClass::Ssl, "network"),
            (ErrorCode::GenericError, ErrorClass::Odb, "corrupt"),
            (ErrorCode::GenericError, ErrorClass::Config, "git"),
        ];
        let mut produced = Vec::new();
        for (code, class, expected) in cases {
            let message = match expected {
                "repo_not_found" => format!("unexpected http status code: 404 {echo}"),
                _ => format!("something failed: {echo}"),
            };
            let err = git2::Error::new(code, class, message);
            let observed = Observed::default();
            *observed.remote_messages.borrow_mut() = format!("remote says {echo}\n");
            let classified = classify(&err, &a, &observed, "fetch", Some(Path::new("/cache/repos/r")));
            assert_eq!(classified.category(), expected, "{classified}");
            produced.push(classified);
        }
        // What the callbacks recorded wins over libgit2's message.
        let observed = Observed::default();
        observed.fail(
            SourceError::HostKeyUnknown {
                url: a.url.redacted().to_string(),
                host: "git.example.com".into(),
                key_type: "ssh-ed25519".into(),
                fingerprint: "SHA256:x".into(),
                message: "no entry".into(),
            },
            ErrorCode::Certificate,
            ErrorClass::Ssh,
        );
        let err = git2::Error::new(ErrorCode::Certificate, ErrorClass::Ssh, echo.clone());
        produced.push(classify(&err, &a, &observed, "fetch", None));
        assert_eq!(produced.last().unwrap().category(), "host_key_unknown");
        let observed = Observed::default();
        observed.cancelled.set(true);
        produced.push(classify(&git2::Error::from_str(&echo), &a, &observed, "fetch", None));
        assert_eq!(produced.last().unwrap().category(), "timeout");

        for e in &produced {
            let shown = format!("{e} | {e:?} | {e:#?}");
            for secret in [PASSWORD, encoded, TOKEN, "Unit/Secret", "UnitSecret"] {
                assert!(!shown.contains(secret), "{secret:?} leaked: {shown}");
            }
            assert!(shown.contains("https://git.example.com/r.git"), "{shown}");
        }
    }

    /// Issue 19 (low): a rejected username/password or key named the user, and a username can
    /// be a token. Every refusal the credentials callback builds names where the user came from.
    #[test]
    fn auth_failures_never_name_the_user() {
        let mut a = access("https://git.example.com/r.git");
        a.credentials.as_mut().unwrap().username = Some("ghp_UserToken".into());
        let plain = CredentialType::USER_PASS_PLAINTEXT;
        let observed = Observed::default();
        assert!(credential(&a, &observed, None, plain).is_ok(), "the first try is made");
        let err = credential(&a, &observed, None, plain).err().expect("the second try is refused");
        let recorded = observed.failure.borrow().as_ref().map(ToString::to_string).unwrap_or_default();
        for shown in [err.message().to_string(), recorded] {
            assert!(shown.contains("the Secret's username and password"), "{shown}");
            assert!(!shown.contains("ghp_UserToken"), "{shown}");
        }

        let mut ssh = access("ssh://git.example.com/r.git");
        ssh.credentials.as_mut().unwrap().username = Some("ghp_UserToken".into());
        let observed = Observed::default();
        let err = credential(&ssh, &observed, None, CredentialType::SSH_KEY).err().expect("no identity");
        assert!(err.message().contains("the Secret's username"), "{}", err.message());
        assert!(!err.message().contains("ghp_UserToken"), "{}", err.message());
    }

    #[test]
    fn cancel_reports_a_passed_deadline_or_the_flag() {
        let c = Cancel::after(Duration::from_secs(60));
        assert!(!c.is_cancelled());
        c.clone().cancel();
        assert!(c.is_cancelled());
        assert!(Cancel::after(Duration::ZERO).is_cancelled());
    }
}
