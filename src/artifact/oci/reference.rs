//! `oci://host[:port]/path` repository URLs, and the tag and digest syntax of the OCI
//! distribution spec. Pure parsing; nothing here touches the network.

use std::fmt;
use std::str::FromStr;

/// A repository in an OCI registry: `oci://ghcr.io/org/charts/podinfo`. No tag or digest:
/// those come from an [`super::OciSelector`], so a URL always names the same repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciRepository {
    /// `host` or `host:port`, lowercase.
    registry: String,
    /// `org/charts/podinfo`.
    repository: String,
}

/// The whole name (registry and path) may not exceed this, as the distribution spec says.
const MAX_NAME_LEN: usize = 255;

/// Why a string is not an OCI repository URL. `url` has any userinfo replaced, so the error
/// can be shown as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid OCI repository URL {url:?}: {problem}")]
pub struct OciUrlError {
    pub url: String,
    pub problem: OciUrlProblem,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OciUrlProblem {
    #[error("it has no scheme; write oci://host/path")]
    NoScheme,
    #[error("the scheme is {0:?}; OCI repositories are written oci://host/path")]
    OtherScheme(String),
    #[error("credentials do not belong in the URL; put them in the Secret the source references")]
    Credentials,
    #[error("{0:?} is not a host name, IP address or host:port")]
    BadHost(String),
    #[error("the repository path is empty; write oci://host/path")]
    EmptyPath,
    #[error("the repository path must be lowercase")]
    Uppercase,
    #[error("a tag or digest does not belong in the URL; choose it with the tag, semver or digest field")]
    TagOrDigest,
    #[error(
        "{0:?} is not a repository path: components of lowercase letters and digits, joined by \
         '.', '_', '__' or dashes, separated by '/'"
    )]
    BadPath(String),
    #[error("the name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("query strings and fragments are not allowed")]
    QueryOrFragment,
}

impl OciRepository {
    pub fn parse(url: &str) -> Result<OciRepository, OciUrlError> {
        let fail = |problem| OciUrlError { url: redact(url), problem };
        let (scheme, rest) = split_scheme(url).ok_or_else(|| fail(OciUrlProblem::NoScheme))?;
        if userinfo_end(rest).is_some() {
            return Err(fail(OciUrlProblem::Credentials));
        }
        if !scheme.eq_ignore_ascii_case("oci") {
            return Err(fail(OciUrlProblem::OtherScheme(scheme.to_string())));
        }
        if rest.contains(['?', '#']) {
            return Err(fail(OciUrlProblem::QueryOrFragment));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let registry = parse_registry(authority).map_err(fail)?;
        let repository = parse_path(path).map_err(fail)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail(OciUrlProblem::TooLong));
        }
        Ok(OciRepository { registry, repository })
    }

    /// `host` or `host:port`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The path inside the registry, without a leading `/`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The repository `name` below this one: a Helm chart `podinfo` in `oci://h/charts` lives
    /// at `oci://h/charts/podinfo`.
    pub fn child(&self, name: &str) -> Result<OciRepository, OciUrlError> {
        OciRepository::parse(&format!("{self}/{name}"))
    }

    pub(crate) fn by_digest(&self, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.to_string())
    }

    pub(crate) fn by_tag(&self, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.to_string())
    }
}

impl fmt::Display for OciRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)
    }
}

impl FromStr for OciRepository {
    type Err = OciUrlError;

    fn from_str(s: &str) -> Result<OciRepository, OciUrlError> {
        OciRepository::parse(s)
    }
}

/// `host`, `host:port` or `[v6]:port`; host names are case-insensitive, so lowercased.
fn parse_registry(authority: &str) -> Result<String, OciUrlProblem> {
    let bad = || OciUrlProblem::BadHost(authority.to_string());
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, after) = bracketed.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
            };
            (v6, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = match authority.starts_with('[') {
        true => host.parse::<std::net::Ipv6Addr>().is_ok(),
        false => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(authority.to_ascii_lowercase())
}

/// A repository path as the distribution spec defines it. One trailing `/` is forgiven
/// (`oci://ghcr.io/org/charts/`, as Helm users write repository URLs).
fn parse_path(path: &str) -> Result<String, OciUrlProblem> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Err(OciUrlProblem::EmptyPath);
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    if path.contains('@') || last.contains(':') {
        return Err(OciUrlProblem::TagOrDigest);
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(OciUrlProblem::Uppercase);
    }
    if !path.split('/').all(valid_component) {
        return Err(OciUrlProblem::BadPath(path.to_string()));
    }
    Ok(path.to_string())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !component.starts_with(alnum) || !component.ends_with(alnum) {
        return false;
    }
    component
        .split(alnum)
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// `sha256:` and 64 lowercase hex digits: the only digest ferry pins (and hashes) with.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`, the distribution spec's tag.
pub fn is_valid_tag(tag: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    !tag.is_empty() && tag.len() <= 128 && !tag.starts_with(['.', '-']) && tag.bytes().all(ok)
}

/// `scheme://rest`, if the scheme is one (`[a-zA-Z][a-zA-Z0-9+.-]*`); anything else before
/// `://` may be userinfo and is never echoed as a scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
    ok.then_some((scheme, rest))
}

/// Where userinfo ends: the last `@` that does not start a digest (`@sha256:<hex>`). Found
/// anywhere, not only before the first `/`, since a password may hold a `/`.
fn userinfo_end(text: &str) -> Option<usize> {
    let starts_digest = |after: &str| {
        after.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty()
                && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    text.match_indices('@').map(|(i, _)| i).rev().find(|&i| !starts_digest(&text[i + 1..]))
}

/// The URL with any userinfo replaced, for messages about a URL that did not parse.
fn redact(url: &str) -> String {
    let (prefix, rest) = match split_scheme(url) {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match userinfo_end(rest) {
        Some(at) => format!("{prefix}<redacted>{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(url: &str) -> OciUrlProblem {
        OciRepository::parse(url).expect_err(url).problem
    }

    #[test]
    fn parses_registries_and_paths() {
        let r = OciRepository::parse("oci://GHCR.io/stefanprodan/charts/podinfo").unwrap();
        assert_eq!((r.registry(), r.repository()), ("ghcr.io", "stefanprodan/charts/podinfo"));
        assert_eq!(r.to_string(), "oci://ghcr.io/stefanprodan/charts/podinfo");
        let r: OciRepository = "oci://127.0.0.1:5000/a/b_c__d.e--f/".parse().unwrap();
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/a/b_c__d.e--f");
        assert_eq!(OciRepository::parse("oci://[::1]/x").unwrap().registry(), "[::1]");
        let r = OciRepository::parse("OCI://[::1]:5000/x").unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(r.child("podinfo").unwrap().to_string(), "oci://[::1]:5000/x/podinfo");
        assert!(r.child("../y").is_err());
    }

    #[test]
    fn refuses_what_is_not_an_oci_repository() {
        assert_eq!(problem("ghcr.io/org/app"), OciUrlProblem::NoScheme);
        assert_eq!(problem("https://ghcr.io/org/app"), OciUrlProblem::OtherScheme("https".into()));
        assert_eq!(problem("oci://ghcr.io"), OciUrlProblem::EmptyPath);
        assert_eq!(problem("oci://ghcr.io/"), OciUrlProblem::EmptyPath);
        assert_eq!(problem("oci://ghcr.io/Org/App"), OciUrlProblem::Uppercase);
        assert_eq!(problem("oci://ghcr.io/org/app:1.0.0"), OciUrlProblem::TagOrDigest);
        assert_eq!(
            problem(&format!("oci://ghcr.io/org/app@sha256:{}", "a".repeat(64))),
            OciUrlProblem::TagOrDigest
        );
        assert_eq!(problem("oci://ghcr.io/org/app?x=1"), OciUrlProblem::QueryOrFragment);
        assert!(matches!(problem("oci://gh cr.io/app"), OciUrlProblem::BadHost(_)));
        assert!(matches!(problem("oci://host:0/app"), OciUrlProblem::BadHost(_)));
        assert!(matches!(problem("oci://host:99999/app"), OciUrlProblem::BadHost(_)));
        assert!(matches!(problem("oci:///app"), OciUrlProblem::BadHost(_)));
        for path in ["a//b", "a/-b", "a/b-", "a/b..c", "a/._b", "a/b___c", "a/b c", "a/é"] {
            assert!(matches!(problem(&format!("oci://h/{path}")), OciUrlProblem::BadPath(_)), "{path}");
        }
        assert_eq!(problem(&format!("oci://h/{}", "a".repeat(260))), OciUrlProblem::TooLong);
    }

    #[test]
    fn credentials_are_refused_and_never_shown() {
        let err = OciRepository::parse("oci://user:s3cret@ghcr.io/org/app").unwrap_err();
        assert_eq!(err.problem, OciUrlProblem::Credentials);
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
        for url in [
            "https://user:s3cret@ghcr.io/x",
            "oci://u:s3cret/x@ghcr.io/app",
            "oci://u:s3cret@ghcr.io/app@sha256:0123456789abcdef0123456789abcdef",
            "u:s3cret://h/x@h",
            "u:s3cret@ghcr.io/app",
        ] {
            let err = OciRepository::parse(url).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{url}: {err}");
        }
    }

    #[test]
    fn digests_and_tags() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(64))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(is_valid_tag("1.2.3_build.1") && is_valid_tag("latest") && is_valid_tag("_x"));
        assert!(
            !is_valid_tag("")
                && !is_valid_tag(".x")
                && !is_valid_tag("a/b")
                && !is_valid_tag(&"a".repeat(129))
        );
    }
}
