//! Repository URLs: parse once, then hand out the forms each consumer needs.
//!
//! - [`RepoUrl::redacted`] for errors, logs, status and metrics: never any password, and for
//!   HTTP(S) no userinfo at all (a lone "username" there is often a token, as in
//!   `https://<token>@github.com/...`).
//! - [`RepoUrl::remote_url`] for libgit2: credentials travel through callbacks and headers,
//!   never inside the URL, so libgit2 can never echo them into an error message.
//! - [`RepoUrl::cache_key`] for the on-disk cache: a readable slug plus a hash of the
//!   normalized URL, so `HTTPS://Host:443/x` and `https://host/x` share one cache directory.

use std::fmt;

use ring::digest;

use super::SourceError;

/// How the repository is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Http,
    Https,
    Ssh,
    File,
}

/// A parsed repository URL. Its `Debug` shows only the redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    transport: Transport,
    redacted: String,
    remote_url: String,
    normalized: String,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RepoUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl RepoUrl {
    /// Parses `https://`, `http://`, `ssh://`, `file://` and scp-like `user@host:path` URLs.
    pub fn parse(input: &str) -> Result<RepoUrl, SourceError> {
        let invalid = |problem: Invalid| SourceError::InvalidUrl {
            url: redact_unparsed(input),
            message: problem.to_string(),
        };
        if input.is_empty() {
            return Err(invalid(Invalid::Empty));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(Invalid::Whitespace));
        }
        match input.split_once("://") {
            // Not a scheme (`user:pass://x@host`): never echoed, it may hold a secret.
            Some((scheme, _)) if !is_scheme(scheme) => Err(invalid(Invalid::NotAScheme)),
            Some((scheme, _)) => parse_with_scheme(input, &scheme.to_ascii_lowercase()).map_err(invalid),
            None => parse_scp_like(input).map_err(invalid),
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URL without any secret, for messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The URL given to libgit2 (no password; for HTTP(S) no userinfo).
    pub fn remote_url(&self) -> &str {
        &self.remote_url
    }

    /// Host name (lowercase) for SSH and HTTP(S) URLs.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Port, when the URL names one that is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Username from the URL (SSH user, or HTTP userinfo user).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Password embedded in an HTTP(S) URL, used only when no Secret gives credentials.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The local path of a `file://` URL; `None` for the other transports.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        match self.transport {
            Transport::File => self.normalized.strip_prefix("file://").map(std::path::PathBuf::from),
            _ => None,
        }
    }

    /// The canonical form two spellings of the same repository share.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// Directory name for this repository in the cache: `<slug>-<16 hex of sha256(normalized)>`.
    /// Stable across releases (unlike std's hasher), so the cache survives upgrades.
    pub fn cache_key(&self) -> String {
        let hash = digest::digest(&digest::SHA256, self.normalized.as_bytes());
        let hex: String = hash.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let tail = self.normalized.split_once("://").map_or(self.normalized.as_str(), |(_, rest)| rest);
        let tail = tail.rsplit_once('@').map_or(tail, |(_, rest)| rest);
        let mut slug: String = tail
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' })
            .collect();
        // Keep the end of the path: it names the repository, the start only names the host.
        if slug.len() > 48 {
            slug = slug[slug.len() - 48..].to_string();
        }
        let slug = slug.trim_matches(|c| c == '-' || c == '.');
        format!("{slug}-{hex}")
    }
}

/// What is wrong with a repository URL: the message of [`SourceError::InvalidUrl`].
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL contains whitespace or control characters")]
    Whitespace,
    #[error("the text before :// is not a URL scheme")]
    NotAScheme,
    #[error("unsupported scheme {0:?}: use https://, http://, ssh://, file:// or user@host:path")]
    UnsupportedScheme(String),
    #[error(transparent)]
    Syntax(#[from] url::ParseError),
    #[error("a repository URL has no query or fragment")]
    QueryOrFragment,
    #[error("file:// URLs must name a local path (file:///path)")]
    FileHost,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL has no repository path")]
    NoPath,
    /// `what`: the path, the username or the password.
    #[error("the {0} is not valid percent-encoded UTF-8")]
    Encoding(&'static str),
    #[error("expected a URL with a scheme (https://, ssh://, ...) or user@host:path")]
    NoScheme,
    #[error("the user in user@host:path may only contain letters, digits and ._~-")]
    ScpUser,
    #[error("the host in user@host:path may only contain letters, digits, '.' and '-'")]
    ScpHost,
}

fn parse_with_scheme(input: &str, scheme: &str) -> Result<RepoUrl, Invalid> {
    let transport = match scheme {
        "https" => Transport::Https,
        "http" => Transport::Http,
        "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
        "file" => Transport::File,
        other => return Err(Invalid::UnsupportedScheme(other.to_string())),
    };
    let parsed = url::Url::parse(input)?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Invalid::QueryOrFragment);
    }
    match transport {
        Transport::File => file_url(&parsed),
        _ => network_url(&parsed, transport),
    }
}

/// `file:///path`: a local path, no host.
fn file_url(parsed: &url::Url) -> Result<RepoUrl, Invalid> {
    let path = parsed.path();
    if parsed.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(Invalid::FileHost);
    }
    let decoded = percent_decode(path).ok_or(Invalid::Encoding("path"))?;
    if decoded.trim_end_matches('/').is_empty() {
        return Err(Invalid::NoPath);
    }
    let url = format!("file://{path}");
    let normalized = format!("file://{}", decoded.trim_end_matches('/'));
    Ok(RepoUrl {
        transport: Transport::File,
        redacted: url.clone(),
        remote_url: url,
        normalized,
        host: None,
        port: None,
        username: None,
        password: None,
    })
}

/// An HTTP(S) or SSH URL: a host, a path, perhaps a user, a password and a port other than the
/// scheme's default.
fn network_url(parsed: &url::Url, transport: Transport) -> Result<RepoUrl, Invalid> {
    let path = parsed.path();
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or(Invalid::NoHost)?.to_ascii_lowercase();
    if path.trim_matches('/').is_empty() {
        return Err(Invalid::NoPath);
    }
    let decode = |part: Option<&str>, what: &'static str| -> Result<Option<String>, Invalid> {
        match part.filter(|p| !p.is_empty()) {
            None => Ok(None),
            Some(p) => percent_decode(p).map(Some).ok_or(Invalid::Encoding(what)),
        }
    };
    let username = decode(Some(parsed.username()), "username")?;
    let password = decode(parsed.password(), "password")?;
    let (default_port, scheme_out) = match transport {
        Transport::Https => (443, "https"),
        Transport::Http => (80, "http"),
        _ => (22, "ssh"),
    };
    let port = parsed.port().filter(|p| *p != default_port);
    let host_port = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let trimmed_path = path.trim_end_matches('/');
    // The SSH user is not a secret and selects the account on the server, so it stays; over
    // HTTP(S) no userinfo does.
    let user = match transport {
        Transport::Ssh if username.is_some() => format!("{}@", parsed.username()),
        _ => String::new(),
    };
    let url = format!("{scheme_out}://{user}{host_port}{path}");
    let normalized = format!("{scheme_out}://{user}{host_port}{trimmed_path}");
    Ok(RepoUrl {
        transport,
        redacted: url.clone(),
        remote_url: url,
        normalized,
        host: Some(host),
        port,
        username,
        password,
    })
}

/// `user@host:path` (the path is relative to the user's home unless it starts with `/`).
fn parse_scp_like(input: &str) -> Result<RepoUrl, Invalid> {
    let (user, rest) = match input.split_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, input),
    };
    let (host, path) = rest.split_once(':').ok_or(Invalid::NoScheme)?;
    if let Some(user) = user
        && (user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)))
    {
        return Err(Invalid::ScpUser);
    }
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
        return Err(Invalid::ScpHost);
    }
    if path.trim_matches('/').is_empty() {
        return Err(Invalid::NoPath);
    }
    let host = host.to_ascii_lowercase();
    let user_at = user.map(|u| format!("{u}@")).unwrap_or_default();
    let url = format!("{user_at}{host}:{path}");
    Ok(RepoUrl {
        transport: Transport::Ssh,
        redacted: url.clone(),
        remote_url: url,
        normalized: format!("scp://{user_at}{host}/{}", path.trim_end_matches('/')),
        host: Some(host),
        port: None,
        username: user.map(str::to_string),
        password: None,
    })
}

/// Whether `s` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Best-effort redaction of a URL that failed to parse. A password may hold any character
/// (`/`, `:`, `?`, `#` and `@` too), so the end of the authority cannot be found reliably:
/// everything between the scheme and the **last** `@` goes. An SSH user (`ssh://user@`, scp-like
/// `user@host:`) is not a secret and stays when it is a plain name.
pub(crate) fn redact_unparsed(input: &str) -> String {
    // Only a real scheme counts: in `user:pass://x@host` the text before `://` is a password.
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, input),
    };
    let Some(at) = rest.rfind('@') else {
        return input.to_string();
    };
    let (userinfo, host_and_path) = (&rest[..at], &rest[at + 1..]);
    let ssh = scheme.is_none_or(|s| ["ssh", "git+ssh", "ssh+git"].iter().any(|t| s.eq_ignore_ascii_case(t)));
    let user = userinfo.split(':').next().unwrap_or("");
    let plain = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
    let user_at = if ssh && plain { format!("{user}@") } else { String::new() };
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    format!("{scheme}{user_at}{host_and_path}")
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of each refusal, as it read before the refusals were typed.
    #[test]
    fn refusals_say_what_is_wrong() {
        let cases = [
            ("", "the URL is empty"),
            ("https://h/r x", "the URL contains whitespace or control characters"),
            ("a:b://h/r", "the text before :// is not a URL scheme"),
            (
                "ftp://h/r",
                r#"unsupported scheme "ftp": use https://, http://, ssh://, file:// or user@host:path"#,
            ),
            ("https://h/r?x=1", "a repository URL has no query or fragment"),
            ("file://other/x", "file:// URLs must name a local path (file:///path)"),
            ("file:///", "the URL has no repository path"),
            ("https://h/", "the URL has no repository path"),
            ("git@h:", "the URL has no repository path"),
            ("nothing", "expected a URL with a scheme (https://, ssh://, ...) or user@host:path"),
            ("a%b@h:r", "the user in user@host:path may only contain letters, digits and ._~-"),
            ("git@h_h:r", "the host in user@host:path may only contain letters, digits, '.' and '-'"),
            ("https://[::1/r", "invalid IPv6 address"),
        ];
        for (input, words) in cases {
            match RepoUrl::parse(input) {
                Err(SourceError::InvalidUrl { message, .. }) => assert_eq!(message, words, "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn https_credentials_are_stripped_everywhere_but_kept_for_auth() {
        let u = RepoUrl::parse("https://alice:s3cr%40t@Git.Example.com/team/deploy.git").unwrap();
        assert_eq!(u.transport(), Transport::Https);
        assert_eq!(u.redacted(), "https://git.example.com/team/deploy.git");
        assert_eq!(u.remote_url(), "https://git.example.com/team/deploy.git");
        assert_eq!(u.username(), Some("alice"));
        assert_eq!(u.password(), Some("s3cr@t"));
        let debug = format!("{u:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
        assert!(!u.to_string().contains("alice"));
    }

    #[test]
    fn a_lone_https_username_is_treated_as_secret() {
        let u = RepoUrl::parse("https://ghp_tokenvalue@github.com/o/r").unwrap();
        assert_eq!(u.redacted(), "https://github.com/o/r");
        assert!(!u.cache_key().contains("ghp"));
    }

    #[test]
    fn normalization_ignores_case_default_ports_userinfo_and_trailing_slash() {
        let a = RepoUrl::parse("HTTPS://Git.Example.com:443/team/deploy.git/").unwrap();
        let b = RepoUrl::parse("https://u:p@git.example.com/team/deploy.git").unwrap();
        assert_eq!(a.normalized(), "https://git.example.com/team/deploy.git");
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.cache_key(), b.cache_key());
        // `.git` is significant: some servers host both.
        let c = RepoUrl::parse("https://git.example.com/team/deploy").unwrap();
        assert_ne!(a.cache_key(), c.cache_key());
        let http = RepoUrl::parse("http://git.example.com/team/deploy.git").unwrap();
        assert_ne!(a.cache_key(), http.cache_key());
    }

    #[test]
    fn cache_key_is_a_readable_stable_directory_name() {
        let u = RepoUrl::parse("https://git.example.com/team/deploy.git").unwrap();
        let key = u.cache_key();
        assert!(key.starts_with("git.example.com-team-deploy.git-"), "{key}");
        let hash = key.rsplit('-').next().unwrap();
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Pinned value: changing the scheme would orphan every existing cache directory.
        assert_eq!(key, RepoUrl::parse("https://git.example.com/team/deploy.git").unwrap().cache_key());
        let long = RepoUrl::parse(&format!("https://h/{}/repo.git", "x".repeat(200))).unwrap();
        assert!(long.cache_key().len() <= 48 + 17, "{}", long.cache_key());
        assert!(long.cache_key().contains("repo.git-"));
    }

    #[test]
    fn ssh_keeps_the_user_and_the_port_but_drops_a_password() {
        let u = RepoUrl::parse("ssh://git:pw@Example.com:2222/srv/repo.git").unwrap();
        assert_eq!(u.transport(), Transport::Ssh);
        assert_eq!(u.redacted(), "ssh://git@example.com:2222/srv/repo.git");
        assert_eq!(u.remote_url(), "ssh://git@example.com:2222/srv/repo.git");
        assert_eq!(u.host(), Some("example.com"));
        assert_eq!(u.port(), Some(2222));
        assert_eq!(u.username(), Some("git"));
        let default_port = RepoUrl::parse("ssh://git@example.com:22/srv/repo.git").unwrap();
        assert_eq!(default_port.port(), None);
        assert_eq!(default_port.normalized(), "ssh://git@example.com/srv/repo.git");
    }

    #[test]
    fn scp_like_urls() {
        let u = RepoUrl::parse("git@GitHub.com:org/repo.git").unwrap();
        assert_eq!(u.transport(), Transport::Ssh);
        assert_eq!(u.remote_url(), "git@github.com:org/repo.git");
        assert_eq!(u.host(), Some("github.com"));
        assert_eq!(u.port(), None);
        assert_eq!(u.username(), Some("git"));
        assert_eq!(u.normalized(), "scp://git@github.com/org/repo.git");
        assert!(RepoUrl::parse("git@github.com:").is_err());
        assert!(RepoUrl::parse("git@:repo").is_err());
    }

    #[test]
    fn file_urls() {
        let u = RepoUrl::parse("file:///srv/git/repo.git/").unwrap();
        assert_eq!(u.transport(), Transport::File);
        assert_eq!(u.remote_url(), "file:///srv/git/repo.git/");
        assert_eq!(u.normalized(), "file:///srv/git/repo.git");
        assert!(RepoUrl::parse("file:///").is_err());
        assert!(RepoUrl::parse("file://otherhost/x").is_err());
    }

    #[test]
    fn invalid_urls_are_refused_without_echoing_secrets() {
        for bad in [
            "",
            "ftp://h/r",
            "https://h",
            "https:///r",
            "https://h/r?x=1",
            "https://h/r repo",
            "/local/path",
            "ext::sh -c evil",
            "https://user:hunter2@/r",
        ] {
            let err = RepoUrl::parse(bad).expect_err(bad);
            assert_eq!(err.category(), "invalid_url", "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn redact_unparsed_drops_passwords() {
        assert_eq!(redact_unparsed("https://u:p@h/x"), "https://h/x");
        assert_eq!(redact_unparsed("ssh://git:p@h/x"), "ssh://git@h/x");
        assert_eq!(redact_unparsed("https://h/x"), "https://h/x");
    }

    /// Issue 19 (low): the authority used to end at the first `/`, so a password holding one
    /// was printed whole into status, Events, logs and the `repo` label of `/metrics`.
    #[test]
    fn redact_unparsed_drops_passwords_holding_slashes_and_at_signs() {
        let cases = [
            ("https://u:hun/ter2@h/x", "https://h/x"),
            ("https://u:hun/ter2@/x", "https:///x"),
            ("ssh://git:hun/ter2@h/x", "ssh://git@h/x"),
            ("git+ssh://git:hun?ter2@h/x", "git+ssh://git@h/x"),
            ("git:hun/ter2@h:x", "git@h:x"),
            ("a:b/hunter2#c@h:x y", "a@h:x y"),
            ("u:hun://ter2@h/x", "u@h/x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_unparsed(input), want, "{input}");
            let err = RepoUrl::parse(input).map(|u| u.to_string()).unwrap_or_else(|e| e.to_string());
            assert!(!err.contains("ter2"), "{input}: {err}");
        }
    }
}
