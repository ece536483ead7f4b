//! Webhooks as pure functions: signatures, the push events of GitHub, GitLab and ferry's generic
//! format, and which Applications a push concerns. The HTTP side is in the parent module.

use std::collections::BTreeSet;

use ring::{hmac, rand::SystemRandom};
use serde_json::Value;

use crate::{
    api::{Application, GitRef},
    source::{RepoUrl, repo_url::Transport},
};

/// Where a webhook comes from: selects its route, its authentication, its payload format and
/// its key in the webhook Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Generic,
}

impl Provider {
    /// The `provider` label and the Secret key.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Generic => "generic",
        }
    }

    /// The header that authenticates a request.
    pub fn auth_header(self) -> &'static str {
        match self {
            Provider::GitHub => GITHUB_SIGNATURE,
            Provider::GitLab => GITLAB_TOKEN,
            Provider::Generic => GENERIC_SIGNATURE,
        }
    }
}

/// The Secret key every provider falls back to when its own key is absent.
pub const FALLBACK_KEY: &str = "token";

pub const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
pub const GITHUB_EVENT: &str = "X-GitHub-Event";
pub const GITLAB_TOKEN: &str = "X-Gitlab-Token";
pub const GITLAB_EVENT: &str = "X-Gitlab-Event";
pub const GENERIC_SIGNATURE: &str = "X-Ferry-Signature";

// ---------------------------------------------------------------------------------------------
// Authentication

/// Why a request is not authenticated. The messages never contain the secret or the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing(&'static str),
    Malformed(&'static str),
    Mismatch(&'static str),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing(h) => write!(f, "missing {h} header"),
            AuthError::Malformed(h) => write!(f, "{h} must be sha256=<64 hex digits>"),
            AuthError::Mismatch(h) if *h == GITLAB_TOKEN => {
                write!(f, "{h} does not match the webhook secret")
            }
            AuthError::Mismatch(h) => write!(f, "{h} does not match the body signed with the webhook secret"),
        }
    }
}

/// Checks `sha256=<hex of HMAC-SHA256(key, body)>` in constant time (GitHub's
/// `X-Hub-Signature-256`, ferry's `X-Ferry-Signature`).
pub fn verify_signature(
    header: &'static str,
    key: &[u8],
    body: &[u8],
    given: Option<&[u8]>,
) -> Result<(), AuthError> {
    let given = given.ok_or(AuthError::Missing(header))?;
    let hex = given.strip_prefix(b"sha256=").ok_or(AuthError::Malformed(header))?;
    let tag = decode_hex(hex).filter(|t| t.len() == 32).ok_or(AuthError::Malformed(header))?;
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), body, &tag).map_err(|_| AuthError::Mismatch(header))
}

/// Checks a shared token (GitLab's `X-Gitlab-Token`) in constant time: both sides go through
/// HMAC under a fresh random key, and the tags are compared with [`hmac::verify`], so neither the
/// content nor the length of the expected token shows in the timing.
pub fn verify_token(header: &'static str, expected: &[u8], given: Option<&[u8]>) -> Result<(), AuthError> {
    let given = given.ok_or(AuthError::Missing(header))?;
    let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
        .map_err(|_| AuthError::Mismatch(header))?;
    let expected_tag = hmac::sign(&key, expected);
    hmac::verify(&key, given, expected_tag.as_ref()).map_err(|_| AuthError::Mismatch(header))
}

/// `sha256=<hex>` of the body: what a sender puts in `X-Ferry-Signature`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    hex.chunks(2).map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8)).collect()
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// What a pushed ref can match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushedRef {
    /// `refs/heads/B`.
    Branch(String),
    /// `refs/tags/T`.
    Tag(String),
    /// A bare name from the generic format: a branch or a tag.
    Name(String),
    /// Some other ref (`refs/merge-requests/...`): no Application follows it.
    Other(String),
    /// No ref given: every Application of the repository.
    Any,
}

impl PushedRef {
    pub fn parse(git_ref: &str) -> PushedRef {
        if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
            PushedRef::Branch(branch.to_string())
        } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            PushedRef::Tag(tag.to_string())
        } else if git_ref.starts_with("refs/") {
            PushedRef::Other(git_ref.to_string())
        } else if git_ref.is_empty() {
            PushedRef::Any
        } else {
            PushedRef::Name(git_ref.to_string())
        }
    }
}

impl std::fmt::Display for PushedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushedRef::Branch(b) => write!(f, "refs/heads/{b}"),
            PushedRef::Tag(t) => write!(f, "refs/tags/{t}"),
            PushedRef::Name(n) | PushedRef::Other(n) => f.write_str(n),
            PushedRef::Any => f.write_str("(any ref)"),
        }
    }
}

/// A push: the URLs the payload gives for the repository (any of them may be the one an
/// Application names), and the ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub repo_urls: Vec<String>,
    pub git_ref: PushedRef,
}

impl Push {
    /// The first URL that parses, redacted, for logs.
    pub fn repo_for_log(&self) -> String {
        self.repo_urls
            .iter()
            .find_map(|u| RepoUrl::parse(u).ok())
            .map(|u| u.redacted().to_string())
            .unwrap_or_else(|| "(unparsable URL)".to_string())
    }
}

/// A payload ferry cannot read as a push event (the request gets a 400 saying this).
#[derive(Debug, thiserror::Error)]
pub enum BadPayload {
    #[error("the body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the payload must be a JSON object")]
    NotAnObject,
    /// The provider's event header.
    #[error("missing {0} header")]
    NoEvent(&'static str),
    #[error("a push payload has a string `ref`")]
    NoRef,
    /// Where the provider's push payload names the repository.
    #[error("a push payload names the repository in {0}")]
    NoRepository(&'static str),
    #[error("the payload needs a string repoURL")]
    NoRepoUrl,
    #[error("ref must be a string such as refs/heads/main")]
    RefNotAString,
}

/// A parsed, authenticated webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Push(Push),
    /// Valid, but nothing to do (a ping, a deletion, another event), and why.
    Ignored(String),
}

/// A GitHub delivery (`X-GitHub-Event` is `event`).
pub fn parse_github(event: Option<&str>, body: &[u8]) -> Result<Hook, BadPayload> {
    let payload = json_object(body)?;
    let event = event.ok_or(BadPayload::NoEvent(GITHUB_EVENT))?;
    match event {
        "ping" => return Ok(Hook::Ignored("ping: the webhook reaches ferry".into())),
        "push" => {}
        other => {
            return Ok(Hook::Ignored(format!("{} events trigger nothing; send push events", short(other))));
        }
    }
    let git_ref = str_field(&payload, "ref").ok_or(BadPayload::NoRef)?;
    if payload["deleted"] == true {
        return Ok(Hook::Ignored(format!("{git_ref} was deleted; nothing to fetch")));
    }
    let urls = urls(&payload, &[("repository", &["clone_url", "ssh_url", "git_url", "html_url", "url"])]);
    if urls.is_empty() {
        return Err(BadPayload::NoRepository("repository.clone_url"));
    }
    Ok(Hook::Push(Push { repo_urls: urls, git_ref: PushedRef::parse(git_ref) }))
}

/// A GitLab delivery (`X-Gitlab-Event` is `event`).
pub fn parse_gitlab(event: Option<&str>, body: &[u8]) -> Result<Hook, BadPayload> {
    let payload = json_object(body)?;
    let event = event.ok_or(BadPayload::NoEvent(GITLAB_EVENT))?;
    if event != "Push Hook" && event != "Tag Push Hook" {
        return Ok(Hook::Ignored(format!(
            "{} events trigger nothing; send Push Hook or Tag Push Hook events",
            short(event)
        )));
    }
    let git_ref = str_field(&payload, "ref").ok_or(BadPayload::NoRef)?;
    let after = str_field(&payload, "after").unwrap_or_default();
    if !after.is_empty() && after.bytes().all(|b| b == b'0') {
        return Ok(Hook::Ignored(format!("{git_ref} was deleted; nothing to fetch")));
    }
    let urls = urls(
        &payload,
        &[
            ("project", &["git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url"]),
            ("repository", &["git_http_url", "git_ssh_url", "url", "homepage"]),
        ],
    );
    if urls.is_empty() {
        return Err(BadPayload::NoRepository("project.git_http_url"));
    }
    Ok(Hook::Push(Push { repo_urls: urls, git_ref: PushedRef::parse(git_ref) }))
}

/// ferry's own format: `{"repoURL": "...", "ref": "refs/heads/main" | "main" | ...}`, `ref`
/// optional.
pub fn parse_generic(body: &[u8]) -> Result<Hook, BadPayload> {
    let payload = json_object(body)?;
    let url = str_field(&payload, "repoURL").filter(|u| !u.is_empty()).ok_or(BadPayload::NoRepoUrl)?;
    let git_ref = match &payload["ref"] {
        Value::Null => PushedRef::Any,
        Value::String(r) => PushedRef::parse(r),
        _ => return Err(BadPayload::RefNotAString),
    };
    Ok(Hook::Push(Push { repo_urls: vec![url.to_string()], git_ref }))
}

fn json_object(body: &[u8]) -> Result<Value, BadPayload> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(BadPayload::NotAnObject),
        Err(e) => Err(BadPayload::NotJson(e)),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn urls(payload: &Value, places: &[(&str, &[&str])]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (object, keys) in places {
        for key in *keys {
            if let Some(url) = payload[*object][*key].as_str().filter(|u| !u.is_empty())
                && !out.iter().any(|u| u == url)
            {
                out.push(url.to_string());
            }
        }
    }
    out
}

/// At most 64 characters of something the sender chose, for a reply.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

// ---------------------------------------------------------------------------------------------
// Matching

/// The key two spellings of one repository share: lowercase host + path without leading or
/// trailing `/` and without `.git`; scheme, userinfo and port are ignored (`https://`, `ssh://`,
/// `git://`, `git@host:path` all meet). `file://` URLs key on their path. A key that is broader
/// than the repository (two ports, two cases of a path) only costs an extra ref check and Git
/// re-resolve, never a wrong deployment.
pub fn repo_key(url: &str) -> Option<String> {
    let url = url.trim();
    let parsed = match url.split_once("://") {
        // GitHub's git_url: git://github.com/o/r.git. Only its host and path matter here.
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("git") => {
            RepoUrl::parse(&format!("ssh://{rest}"))
        }
        _ => RepoUrl::parse(url),
    }
    .ok()?;
    let (_, after_scheme) = parsed.normalized().split_once("://")?;
    let (prefix, path) = match (parsed.transport(), parsed.host()) {
        (Transport::File, _) => ("file:", after_scheme),
        (_, Some(host)) => (host, after_scheme.split_once('/').map_or("", |(_, path)| path)),
        (_, None) => return None,
    };
    let path = without_git_suffix(path.trim_matches('/')).trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    Some(format!("{prefix}/{path}").to_lowercase())
}

/// `path` without a trailing `.git` in any case. The repository URL is an Application author's
/// text: the cut is checked to be a character boundary, never sliced blind (a multi-byte
/// character before the last four bytes used to panic every webhook request).
fn without_git_suffix(path: &str) -> &str {
    let cut = path.len().saturating_sub(4);
    match path.get(cut..) {
        Some(tail) if tail.eq_ignore_ascii_case(".git") => &path[..cut],
        _ => path,
    }
}

/// The repository keys of a push (every URL of the payload that parses).
pub fn push_keys(push: &Push) -> BTreeSet<String> {
    push.repo_urls.iter().filter_map(|u| repo_key(u)).collect()
}

/// Whether an Application following `wanted` should re-resolve it after a push of `pushed`:
/// a branch push matches that branch; a tag push matches that tag and every semver range (the
/// new tag may satisfy it); a commit is never moved by a push.
pub fn ref_matches(wanted: &GitRef, pushed: &PushedRef) -> bool {
    if wanted.commit.is_some() {
        return false;
    }
    let branch = wanted.branch.as_deref().map(|b| b.strip_prefix("refs/heads/").unwrap_or(b));
    let tag = wanted.tag.as_deref().map(|t| t.strip_prefix("refs/tags/").unwrap_or(t));
    let semver = wanted.semver.is_some();
    match pushed {
        PushedRef::Any => true,
        PushedRef::Branch(b) => branch == Some(b.as_str()),
        PushedRef::Tag(t) => tag == Some(t.as_str()) || semver,
        PushedRef::Name(n) => branch == Some(n.as_str()) || tag == Some(n.as_str()) || semver,
        PushedRef::Other(_) => false,
    }
}

/// Whether a push (by its repository keys and ref) concerns this Application. Suspended
/// Applications and ones being deleted are left alone.
pub fn concerns(app: &Application, keys: &BTreeSet<String>, pushed: &PushedRef) -> bool {
    if app.spec.suspend || app.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some((url, git_ref)) = app.spec.source.git() else { return false };
    repo_key(url).is_some_and(|k| keys.contains(&k)) && ref_matches(git_ref, pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// GitHub's documented test vector for X-Hub-Signature-256.
    const GITHUB_EXAMPLE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn signatures_follow_githubs_test_vector() {
        assert_eq!(sign(KEY, BODY), GITHUB_EXAMPLE);
        let h = GITHUB_SIGNATURE;
        assert_eq!(verify_signature(h, KEY, BODY, Some(GITHUB_EXAMPLE.as_bytes())), Ok(()));
        assert_eq!(
            verify_signature(h, KEY, b"Hello, World?", Some(GITHUB_EXAMPLE.as_bytes())),
            Err(AuthError::Mismatch(h))
        );
        assert_eq!(
            verify_signature(h, b"other", BODY, Some(GITHUB_EXAMPLE.as_bytes())),
            Err(AuthError::Mismatch(h))
        );
        assert_eq!(verify_signature(h, KEY, BODY, None), Err(AuthError::Missing(h)));
        let upper = GITHUB_EXAMPLE.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(verify_signature(h, KEY, BODY, Some(upper.as_bytes())), Ok(()));
        for bad in
            ["", "757107ea", "sha1=757107ea", "sha256=zz", "sha256=757107", &format!("{GITHUB_EXAMPLE}00")]
        {
            assert_eq!(
                verify_signature(h, KEY, BODY, Some(bad.as_bytes())),
                Err(AuthError::Malformed(h)),
                "{bad}"
            );
        }
    }

    #[test]
    fn auth_errors_never_show_the_secret_or_signature() {
        let h = GITHUB_SIGNATURE;
        for e in [
            AuthError::Missing(h),
            AuthError::Malformed(h),
            AuthError::Mismatch(h),
            AuthError::Mismatch(GITLAB_TOKEN),
        ] {
            let msg = e.to_string();
            assert!(!msg.contains("757107") && !msg.contains("Secret to"), "{msg}");
            assert!(msg.contains("X-"), "{msg}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        let h = GITLAB_TOKEN;
        assert_eq!(verify_token(h, b"s3cret", Some(b"s3cret")), Ok(()));
        for bad in [&b"s3cre"[..], b"s3crett", b"", b"S3CRET"] {
            assert_eq!(verify_token(h, b"s3cret", Some(bad)), Err(AuthError::Mismatch(h)));
        }
        assert_eq!(verify_token(h, b"s3cret", None), Err(AuthError::Missing(h)));
        assert_eq!(verify_token(h, b"", Some(b"")), Ok(()));
    }

    #[test]
    fn repo_keys_meet_across_spellings() {
        let key = Some("github.com/org/repo".to_string());
        for url in [
            "https://github.com/org/repo.git",
            "https://github.com/org/repo",
            "https://GitHub.com/org/repo/",
            "HTTPS://github.com:443/org/repo.git",
            "https://user:token@github.com/org/repo.git",
            "http://github.com:8080/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "ssh://git@github.com:2222/org/repo",
            "git@github.com:org/repo.git",
            "git@github.com:/org/repo.git",
            "github.com:org/repo",
            "git://github.com/org/repo.git",
            "https://github.com/Org/Repo.GIT",
        ] {
            assert_eq!(repo_key(url), key, "{url}");
        }
        assert_ne!(repo_key("https://github.com/org/other.git"), key);
        assert_ne!(repo_key("https://gitlab.com/org/repo.git"), key);
        assert_eq!(
            repo_key("https://gitlab.example.com/group/sub/proj.git").as_deref(),
            Some("gitlab.example.com/group/sub/proj")
        );
        assert_eq!(repo_key("file:///srv/git/repo.git/").as_deref(), Some("file:/srv/git/repo"));
        assert_eq!(repo_key("file:///srv/git/repo").as_deref(), Some("file:/srv/git/repo"));
        for bad in ["", "not a url", "https://github.com/", "ftp://h/r", "https://h/.git"] {
            assert_eq!(repo_key(bad), None, "{bad}");
        }
    }

    /// Issue 19, defect 4: a multi-byte character four bytes from the end of an Application's
    /// repository path made the `.git` check slice inside it and panic every signed webhook.
    #[test]
    fn repo_keys_of_multi_byte_paths_do_not_panic() {
        assert_eq!(repo_key("git@h:éabc").as_deref(), Some("h/éabc"));
        assert_eq!(repo_key("git@h:abé").as_deref(), Some("h/abé"));
        assert_eq!(repo_key("ssh://git@h/o/r€").as_deref(), Some("h/o/r%e2%82%ac"));
        assert_eq!(repo_key("file:///o/€.GIT").as_deref(), Some("file:/o/€"));
        assert_eq!(without_git_suffix("é.git"), "é");
        assert_eq!(without_git_suffix("😀"), "😀");
        assert_eq!(without_git_suffix("git"), "git");
    }

    fn r(kind: &str, v: &str) -> GitRef {
        let mut g = GitRef::default();
        match kind {
            "branch" => g.branch = Some(v.into()),
            "tag" => g.tag = Some(v.into()),
            "semver" => g.semver = Some(v.into()),
            _ => g.commit = Some(v.into()),
        }
        g
    }

    #[test]
    fn refs_match_as_documented() {
        let main = PushedRef::parse("refs/heads/main");
        let v1 = PushedRef::parse("refs/tags/v1.2.0");
        assert!(ref_matches(&r("branch", "main"), &main));
        assert!(ref_matches(&r("branch", "refs/heads/main"), &main));
        assert!(!ref_matches(&r("branch", "dev"), &main));
        assert!(!ref_matches(&r("tag", "v1.2.0"), &main));
        assert!(!ref_matches(&r("semver", ">=1"), &main));
        assert!(ref_matches(&r("tag", "v1.2.0"), &v1));
        assert!(ref_matches(&r("tag", "refs/tags/v1.2.0"), &v1));
        assert!(!ref_matches(&r("tag", "v1.1.0"), &v1));
        assert!(ref_matches(&r("semver", ">=2"), &v1), "any tag may satisfy a range");
        assert!(!ref_matches(&r("branch", "v1.2.0"), &v1));
        let sha = "a".repeat(40);
        for pushed in [&main, &v1, &PushedRef::Any, &PushedRef::parse("main")] {
            assert!(!ref_matches(&r("commit", &sha), pushed));
        }
        assert!(ref_matches(&r("branch", "main"), &PushedRef::Any));
        assert!(ref_matches(&r("tag", "v1"), &PushedRef::Any));
        assert!(ref_matches(&r("branch", "main"), &PushedRef::parse("main")));
        assert!(ref_matches(&r("tag", "main"), &PushedRef::parse("main")));
        assert!(!ref_matches(&r("branch", "dev"), &PushedRef::parse("main")));
        assert!(!ref_matches(&r("branch", "main"), &PushedRef::parse("refs/merge-requests/1/head")));
        assert_eq!(PushedRef::parse(""), PushedRef::Any);
    }

    fn github_push(deleted: bool) -> Vec<u8> {
        serde_json::json!({
            "ref": "refs/heads/main",
            "before": "0".repeat(40),
            "after": if deleted { "0".repeat(40) } else { "b".repeat(40) },
            "deleted": deleted,
            "repository": {
                "clone_url": "https://github.com/org/repo.git",
                "ssh_url": "git@github.com:org/repo.git",
                "git_url": "git://github.com/org/repo.git",
                "html_url": "https://github.com/org/repo",
                "url": "https://github.com/org/repo",
            },
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn github_payloads() {
        let Ok(Hook::Push(push)) = parse_github(Some("push"), &github_push(false)) else { panic!() };
        assert_eq!(push.git_ref, PushedRef::Branch("main".into()));
        assert_eq!(push.repo_urls.len(), 4, "duplicates are dropped: {:?}", push.repo_urls);
        assert_eq!(push_keys(&push), BTreeSet::from(["github.com/org/repo".to_string()]));
        assert_eq!(push.repo_for_log(), "https://github.com/org/repo.git");
        assert!(matches!(parse_github(Some("push"), &github_push(true)), Ok(Hook::Ignored(_))));
        assert!(matches!(parse_github(Some("ping"), br#"{"zen":"x"}"#), Ok(Hook::Ignored(_))));
        assert!(matches!(parse_github(Some("issues"), br#"{}"#), Ok(Hook::Ignored(_))));
        assert!(parse_github(None, &github_push(false)).unwrap_err().to_string().contains("X-GitHub-Event"));
        assert!(parse_github(Some("push"), b"{not json").unwrap_err().to_string().contains("not valid JSON"));
        assert!(parse_github(Some("push"), b"[1]").is_err());
        assert!(parse_github(Some("push"), br#"{"ref":"refs/heads/main"}"#).is_err());
        assert!(parse_github(Some("push"), br#"{"repository":{"clone_url":"https://h/r"}}"#).is_err());
    }

    #[test]
    fn gitlab_payloads() {
        let body = serde_json::json!({
            "object_kind": "tag_push",
            "ref": "refs/tags/v2.0.0",
            "after": "c".repeat(40),
            "project": {
                "git_http_url": "https://gitlab.example.com/group/proj.git",
                "git_ssh_url": "git@gitlab.example.com:group/proj.git",
                "web_url": "https://gitlab.example.com/group/proj",
            },
            "repository": {"url": "git@gitlab.example.com:group/proj.git"},
        })
        .to_string();
        let Ok(Hook::Push(push)) = parse_gitlab(Some("Tag Push Hook"), body.as_bytes()) else { panic!() };
        assert_eq!(push.git_ref, PushedRef::Tag("v2.0.0".into()));
        assert_eq!(push_keys(&push), BTreeSet::from(["gitlab.example.com/group/proj".to_string()]));
        assert!(matches!(parse_gitlab(Some("Push Hook"), body.as_bytes()), Ok(Hook::Push(_))));
        assert!(matches!(parse_gitlab(Some("Merge Request Hook"), body.as_bytes()), Ok(Hook::Ignored(_))));
        let deleted = body.replace(&"c".repeat(40), &"0".repeat(40));
        assert!(matches!(parse_gitlab(Some("Push Hook"), deleted.as_bytes()), Ok(Hook::Ignored(_))));
        let old = r#"{"ref":"refs/heads/main","repository":{"git_http_url":"https://gl/g/p.git"}}"#;
        let Ok(Hook::Push(push)) = parse_gitlab(Some("Push Hook"), old.as_bytes()) else { panic!() };
        assert_eq!(push.repo_urls, ["https://gl/g/p.git"]);
        assert!(parse_gitlab(None, body.as_bytes()).unwrap_err().to_string().contains("X-Gitlab-Event"));
        assert!(parse_gitlab(Some("Push Hook"), br#"{"ref":"refs/heads/main"}"#).is_err());
        assert!(parse_gitlab(Some("Push Hook"), b"").is_err());
    }

    #[test]
    fn generic_payloads() {
        let Ok(Hook::Push(push)) = parse_generic(br#"{"repoURL":"https://h/r.git","ref":"main"}"#) else {
            panic!()
        };
        assert_eq!(push.git_ref, PushedRef::Name("main".into()));
        let Ok(Hook::Push(push)) = parse_generic(br#"{"repoURL":"https://h/r.git"}"#) else { panic!() };
        assert_eq!(push.git_ref, PushedRef::Any);
        assert!(parse_generic(br#"{"repoURL":"https://h/r.git","ref":1}"#).is_err());
        assert!(parse_generic(br#"{"ref":"main"}"#).is_err());
        assert!(parse_generic(br#"{"repoURL":""}"#).is_err());
        assert!(parse_generic(b"nope").is_err());
    }

    #[test]
    fn applications_are_concerned_by_repo_and_ref() {
        let app = |url: &str, git_ref: GitRef, suspend: bool| {
            let mut a: Application = serde_json::from_value(serde_json::json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "Application",
                "metadata": {"name": "a", "namespace": "n"},
                "spec": {"source": {"repoURL": url, "ref": {}}},
            }))
            .unwrap();
            a.spec.source.git_ref = Some(git_ref);
            a.spec.suspend = suspend;
            a
        };
        let keys = BTreeSet::from(["github.com/org/repo".to_string()]);
        let main = PushedRef::parse("refs/heads/main");
        assert!(concerns(&app("git@github.com:org/repo.git", r("branch", "main"), false), &keys, &main));
        assert!(!concerns(&app("git@github.com:org/repo.git", r("branch", "main"), true), &keys, &main));
        assert!(!concerns(&app("https://github.com/org/other", r("branch", "main"), false), &keys, &main));
        assert!(!concerns(&app("https://github.com/org/repo", r("branch", "dev"), false), &keys, &main));
    }
}
