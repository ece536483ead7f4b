//! Where a repository lives on a forge: its provider, the API's base URL and the project path,
//! derived from the repository URL an Application names (and an optional `Forge.apiURL`).
//!
//! The repository URL is an author's text and may carry credentials
//! (`https://user:token@host/...`): they are dropped, and no error repeats the URL.

use url::Url;

use super::{ForgeError, ForgeProvider};

/// Where a repository lives on a forge: provider, API base URL, and project path (owner/name,
/// or GitLab group/sub/name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoCoordinates {
    pub provider: ForgeProvider,
    /// Without a trailing `/` and without credentials, e.g. `https://api.github.com`.
    pub api_base: String,
    /// Path segments of `[A-Za-z0-9._-]`, joined by `/`, without `.git`.
    pub project: String,
}

/// The scheme, host and port an API URL is derived from, and the repository path's segments.
struct Parsed {
    /// `https` for SSH and scp-like URLs, the URL's own for http(s).
    scheme: &'static str,
    /// `host` or `host:port` (the port only for http(s) URLs).
    authority: String,
    host: String,
    segments: Vec<String>,
}

impl RepoCoordinates {
    /// From a repository URL (https://host/owner/name(.git), ssh://git@host/owner/name.git,
    /// git@host:owner/name.git) and an optional API base override (Forge.apiURL). Defaults:
    /// github.com -> https://api.github.com, other GitHub hosts -> https://host/api/v3, GitLab
    /// https://host/api/v4, Gitea https://host/api/v1 (keeping the scheme and port of an http(s)
    /// repository URL; SSH URLs give https).
    ///
    /// GitHub and Gitea projects are the last two segments (`owner/name`); segments before
    /// them are the sub-path the forge is served under (`https://host/git/owner/name` has its
    /// Gitea API at `https://host/git/api/v1`). A GitLab project is the whole path (groups
    /// nest), less the sub-path of an `apiURL` that ends in `/api/v4`.
    pub fn from_repo_url(
        provider: ForgeProvider,
        repo_url: &str,
        api_url: Option<&str>,
    ) -> Result<RepoCoordinates, ForgeError> {
        let parsed = parse_repo_url(repo_url)?;
        let api = api_url.map(parse_api_url).transpose()?;
        let (prefix, project) = split_project(provider, &parsed.segments, api.as_ref())?;
        let api_base = match api {
            Some(api) => api.as_str().trim_end_matches('/').to_string(),
            None => default_api_base(provider, &parsed, &prefix)?,
        };
        Ok(RepoCoordinates { provider, api_base, project })
    }

    /// The owner (first segment) of a GitHub or Gitea project.
    pub(crate) fn owner(&self) -> &str {
        self.project.split('/').next().unwrap_or_default()
    }
}

fn bad_repo(reason: &'static str) -> ForgeError {
    ForgeError::BadRepoUrl { reason }
}

fn parse_repo_url(repo_url: &str) -> Result<Parsed, ForgeError> {
    let text = repo_url.trim();
    if text.is_empty() {
        return Err(bad_repo("it is empty"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad_repo("it contains spaces or control characters"));
    }
    if text.contains("://") { parse_scheme_url(text) } else { parse_scp_like(text) }
}

fn parse_scheme_url(text: &str) -> Result<Parsed, ForgeError> {
    let url = Url::parse(text).map_err(|_| bad_repo("it is not a URL"))?;
    let scheme = match url.scheme() {
        "https" => "https",
        "http" => "http",
        "ssh" | "git+ssh" | "ssh+git" => "https",
        _ => return Err(bad_repo("its scheme is not http, https or ssh")),
    };
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad_repo("it has no host"))?;
    let authority = match (scheme == url.scheme(), url.port()) {
        (true, Some(port)) => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad_repo("it has a query or fragment"));
    }
    let segments = path_segments(url.path())?;
    Ok(Parsed { scheme, authority, host: host.to_string(), segments })
}

/// `[user@]host:path` (Git's scp-like syntax).
fn parse_scp_like(text: &str) -> Result<Parsed, ForgeError> {
    let (user_host, path) = text.split_once(':').ok_or_else(|| bad_repo("it is not a URL"))?;
    let host = user_host.rsplit_once('@').map_or(user_host, |(_, host)| host);
    if host.is_empty() || host.contains(['/', '[', ']', '\\', '?', '#', '%']) {
        return Err(bad_repo("it has no valid host"));
    }
    // The url crate checks and normalises the host as it would for an ssh:// URL.
    let url = Url::parse(&format!("https://{host}/")).map_err(|_| bad_repo("it has no valid host"))?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad_repo("it has no host"))?;
    let segments = path_segments(path)?;
    Ok(Parsed { scheme: "https", authority: host.to_string(), host: host.to_string(), segments })
}

/// The path's segments, without `.git` at the end; each made of `[A-Za-z0-9._-]` only, so a
/// project path can go into an API path as it is (no `%`, `?`, `#`, `..`).
fn path_segments(path: &str) -> Result<Vec<String>, ForgeError> {
    let path = path.trim_matches('/');
    let path = without_git_suffix(path).trim_end_matches('/');
    let mut segments = Vec::new();
    for segment in path.split('/') {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if segment.is_empty() || segment == "." || segment == ".." || !segment.chars().all(allowed) {
            return Err(bad_repo("its path must be segments of letters, digits, '.', '_' and '-'"));
        }
        segments.push(segment.to_string());
    }
    Ok(segments)
}

/// `path` without a trailing `.git` (any case), cut only on a character boundary.
fn without_git_suffix(path: &str) -> &str {
    let cut = path.len().saturating_sub(4);
    match path.get(cut..) {
        Some(tail) if tail.eq_ignore_ascii_case(".git") => path.get(..cut).unwrap_or(path),
        _ => path,
    }
}

/// An `apiURL`: http(s), with a host, no credentials, query or fragment.
fn parse_api_url(text: &str) -> Result<Url, ForgeError> {
    let bad = |reason| ForgeError::BadApiUrl { reason };
    let url = Url::parse(text.trim()).map_err(|_| bad("it is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("its scheme is not http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not contain credentials; the token comes from a Secret"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

/// The sub-path segments before the project, and the project.
fn split_project(
    provider: ForgeProvider,
    segments: &[String],
    api: Option<&Url>,
) -> Result<(Vec<String>, String), ForgeError> {
    match provider {
        ForgeProvider::Github | ForgeProvider::Gitea => {
            let at = segments
                .len()
                .checked_sub(2)
                .ok_or_else(|| bad_repo("its path must name the owner and the repository"))?;
            Ok((segments[..at].to_vec(), segments[at..].join("/")))
        }
        ForgeProvider::Gitlab => {
            let prefix = api.map(gitlab_sub_path).unwrap_or_default();
            let rest = segments.strip_prefix(prefix.as_slice()).unwrap_or(segments);
            if rest.len() < 2 {
                return Err(bad_repo("its path must name the group and the project"));
            }
            Ok((prefix, rest.join("/")))
        }
    }
}

/// The sub-path GitLab is served under, from an apiURL ending in `/api/v4`.
fn gitlab_sub_path(api: &Url) -> Vec<String> {
    let path = api.path().trim_end_matches('/');
    let Some(prefix) = path.strip_suffix("/api/v4") else { return Vec::new() };
    prefix.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn default_api_base(provider: ForgeProvider, repo: &Parsed, prefix: &[String]) -> Result<String, ForgeError> {
    let root = prefix.iter().fold(format!("{}://{}", repo.scheme, repo.authority), |acc, s| acc + "/" + s);
    Ok(match provider {
        ForgeProvider::Github if repo.host.eq_ignore_ascii_case("github.com") => {
            if !prefix.is_empty() {
                return Err(bad_repo("a github.com path is owner/name"));
            }
            "https://api.github.com".to_string()
        }
        ForgeProvider::Github => format!("{root}/api/v3"),
        ForgeProvider::Gitlab => format!("{root}/api/v4"),
        ForgeProvider::Gitea => format!("{root}/api/v1"),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn coords(provider: ForgeProvider, url: &str, api: Option<&str>) -> (String, String) {
        let c = RepoCoordinates::from_repo_url(provider, url, api).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(c.provider, provider);
        (c.api_base, c.project)
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn github_urls_in_every_spelling() {
        use ForgeProvider::Github;
        let want = pair("https://api.github.com", "acme/app");
        for url in [
            "https://github.com/acme/app",
            "https://github.com/acme/app.git",
            "https://github.com/acme/app/",
            "https://GitHub.com/acme/app.GIT",
            "https://x-access-token:ghp_secret@github.com/acme/app.git",
            "ssh://git@github.com/acme/app.git",
            "ssh://git@github.com:22/acme/app.git",
            "git@github.com:acme/app.git",
            "github.com:acme/app",
        ] {
            assert_eq!(coords(Github, url, None), want, "{url}");
        }
        assert_eq!(
            coords(Github, "https://ghe.corp:8443/acme/app.git", None),
            pair("https://ghe.corp:8443/api/v3", "acme/app")
        );
        assert_eq!(
            coords(Github, "git@ghe.corp:acme/app.git", None),
            pair("https://ghe.corp/api/v3", "acme/app")
        );
        let err = RepoCoordinates::from_repo_url(Github, "https://github.com/a/b/c", None).unwrap_err();
        assert!(err.to_string().contains("owner/name"), "{err}");
    }

    #[test]
    fn gitlab_projects_keep_their_groups() {
        use ForgeProvider::Gitlab;
        assert_eq!(
            coords(Gitlab, "https://gitlab.com/group/sub/app.git", None),
            pair("https://gitlab.com/api/v4", "group/sub/app")
        );
        assert_eq!(
            coords(Gitlab, "git@gitlab.example:group/app.git", None),
            pair("https://gitlab.example/api/v4", "group/app")
        );
        // GitLab under a sub-path: the apiURL says where, and the sub-path is not the group.
        assert_eq!(
            coords(
                Gitlab,
                "https://corp.example/gitlab/group/app.git",
                Some("https://corp.example/gitlab/api/v4/")
            ),
            pair("https://corp.example/gitlab/api/v4", "group/app")
        );
        assert!(RepoCoordinates::from_repo_url(Gitlab, "https://gitlab.com/app.git", None).is_err());
    }

    #[test]
    fn gitea_keeps_scheme_port_and_sub_path() {
        use ForgeProvider::Gitea;
        assert_eq!(
            coords(Gitea, "http://127.0.0.1:3000/ferry/app.git", None),
            pair("http://127.0.0.1:3000/api/v1", "ferry/app")
        );
        assert_eq!(
            coords(Gitea, "https://code.example/git/ferry/app", None),
            pair("https://code.example/git/api/v1", "ferry/app")
        );
        // An SSH port says nothing about the HTTPS one.
        assert_eq!(
            coords(Gitea, "ssh://git@code.example:2222/ferry/app.git", None),
            pair("https://code.example/api/v1", "ferry/app")
        );
        assert_eq!(
            coords(Gitea, "git@code.example:ferry/app.git", Some("http://10.0.0.5:3000/api/v1")),
            pair("http://10.0.0.5:3000/api/v1", "ferry/app")
        );
    }

    #[test]
    fn hostile_or_broken_urls_are_refused_without_echoing_them() {
        use ForgeProvider::*;
        for url in [
            "",
            "   ",
            "file:///srv/git/app.git",
            "ftp://host/a/b",
            "https:///a/b",
            "https://host/a/../b",
            "https://host/a/%2e%2e/b",
            "https://host/a/b?x=1/../../admin",
            "https://host/own er/app",
            "https://host/a\n/b",
            "https://host/ä/b",
            "https://host//b",
            "git@:a/b",
            "git@host/x:a/b",
            "git@[::1:a/b",
            "justaword",
            "https://tok3n@host/only",
        ] {
            for provider in [Github, Gitlab, Gitea] {
                let Err(e) = RepoCoordinates::from_repo_url(provider, url, None) else {
                    panic!("{url:?} was accepted for {provider:?}");
                };
                let text = e.to_string();
                assert!(!text.contains("tok3n") && !text.contains("host/"), "{text}");
            }
        }
        for api in ["ftp://h/api", "https://user:pw@h/api/v1", "https://h/api/v1?x=1", "not a url", "http://"]
        {
            let e = RepoCoordinates::from_repo_url(Gitea, "https://h/a/b", Some(api)).unwrap_err();
            assert!(matches!(e, ForgeError::BadApiUrl { .. }), "{api}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
    }

    #[test]
    fn credentials_never_reach_the_api_base() {
        let c = RepoCoordinates::from_repo_url(ForgeProvider::Gitea, "https://u:s3cret@h:3000/o/r.git", None)
            .unwrap();
        assert_eq!(c.api_base, "https://h:3000/api/v1");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn git_suffix_is_cut_on_a_character_boundary() {
        assert_eq!(without_git_suffix("a/b.git"), "a/b");
        assert_eq!(without_git_suffix("a/bé"), "a/bé");
        assert_eq!(without_git_suffix("ééé"), "ééé");
        assert_eq!(without_git_suffix(".git"), "");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
        /// Whatever the URL, parsing returns (no panic), and an accepted project is made of safe
        /// segments and an API base without userinfo.
        #[test]
        fn any_url_parses_or_is_refused(url in "(https?://|ssh://|git@)?[a-zA-Z0-9@:/._%?#\\[\\]é -]{0,40}") {
            for provider in [ForgeProvider::Github, ForgeProvider::Gitlab, ForgeProvider::Gitea] {
                if let Ok(c) = RepoCoordinates::from_repo_url(provider, &url, None) {
                    prop_assert!(c.project.split('/').all(|s| !s.is_empty() && s != ".."));
                    prop_assert!(!c.project.contains(['%', '?', '#', ' ']));
                    let after_scheme = c.api_base.split_once("://").map(|(_, r)| r).unwrap_or("");
                    prop_assert!(!after_scheme.split('/').next().unwrap_or("").contains('@'), "{}", c.api_base);
                }
            }
        }
    }
}
