//! From a spec's `ref` and the remote's ref list to one commit: branch tip, tag, highest
//! semver tag, or a commit SHA. Pure functions over plain data; the network is elsewhere.

use std::fmt;

use crate::api::GitRef;

use super::SourceError;

/// One resolved commit and the ref that led to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Revision {
    pub reference: RevisionRef,
    /// What identifies the content: for Git, the full lowercase 40-hex SHA-1 of the commit;
    /// for an artifact (a chart, an OCI artifact), its digest with the algorithm
    /// (`sha256:<64 hex>`), followed by `+sha1:<40 hex>` when values come from a Git commit.
    pub commit: String,
}

/// The ref a [`Revision`] came from. A semver range resolves to the tag it picked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RevisionRef {
    Branch(String),
    Tag(String),
    /// Any other ref, by its full name (`refs/pull/7/head`).
    Ref(String),
    /// Pinned by SHA: no name.
    Commit,
    /// An artifact: `podinfo@6.5.4` for a chart, the tag for an OCI artifact.
    Artifact(String),
}

impl Revision {
    /// The branch or tag name, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.reference {
            RevisionRef::Branch(n) | RevisionRef::Tag(n) | RevisionRef::Ref(n) => Some(n),
            RevisionRef::Artifact(n) if !n.is_empty() => Some(n),
            RevisionRef::Commit | RevisionRef::Artifact(_) => None,
        }
    }

    /// A chart or OCI artifact revision (its `commit` is a `sha256:` digest).
    pub fn is_artifact(&self) -> bool {
        self.commit.starts_with("sha256:")
    }

    /// The content id as written after `@`: `sha1:<hex>` for a commit, the digest as is.
    fn id(&self) -> std::borrow::Cow<'_, str> {
        if self.is_artifact() { self.commit.as_str().into() } else { format!("sha1:{}", self.commit).into() }
    }

    /// Short form for the REVISION printer column: `main@1a2b3c4`, or `1a2b3c4` for a commit.
    pub fn short(&self) -> String {
        let hex = self.commit.strip_prefix("sha256:").unwrap_or(&self.commit);
        let short = &hex[..hex.len().min(7)];
        match self.name() {
            Some(name) => format!("{name}@{short}"),
            None => short.to_string(),
        }
    }
}

/// `main@sha1:<40 hex>`, `v1.2.3@sha1:<40 hex>`, or `sha1:<40 hex>` when pinned by commit
/// (the format Flux uses, so dashboards and habits carry over).
impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}@{}", self.id()),
            None => write!(f, "{}", self.id()),
        }
    }
}

/// A revision as [`Revision`]'s `Display` wrote it (into `status.lastAppliedRevision`,
/// `status.verifiedRevision`, history): `<name>@sha1:<40 hex>` or `sha1:<40 hex>`. Which kind of
/// ref a name was is not written, so a named revision parses as a [`RevisionRef::Ref`].
impl std::str::FromStr for Revision {
    type Err = InvalidRevision;

    fn from_str(s: &str) -> Result<Revision, InvalidRevision> {
        if let Some(artifact) = parse_artifact(s) {
            return artifact;
        }
        let (name, commit) = match s.rsplit_once("@sha1:") {
            Some((name, commit)) => (Some(name), commit),
            None => (None, s.strip_prefix("sha1:").ok_or(InvalidRevision)?),
        };
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(InvalidRevision);
        }
        let reference = match name {
            Some(name) if !name.is_empty() => RevisionRef::Ref(name.to_string()),
            Some(_) => return Err(InvalidRevision),
            None => RevisionRef::Commit,
        };
        Ok(Revision { reference, commit: commit.to_ascii_lowercase() })
    }
}

/// `<name>@sha256:<64 hex>[+sha1:<40 hex>]` or `sha256:...`: an artifact revision; `None` when
/// `s` is not one (a Git revision, maybe).
fn parse_artifact(s: &str) -> Option<Result<Revision, InvalidRevision>> {
    let at = s.find("sha256:")?;
    let (name, id) = match s[..at].strip_suffix('@') {
        Some(name) if !name.is_empty() => (name, &s[at..]),
        None if at == 0 => ("", s),
        _ => return Some(Err(InvalidRevision)),
    };
    let hex = |t: &str, len: usize| t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit());
    let (digest, values) = match id.split_once("+sha1:") {
        Some((digest, commit)) => (digest, Some(commit)),
        None => (id, None),
    };
    let valid = hex(&digest["sha256:".len()..], 64) && values.is_none_or(|c| hex(c, 40));
    Some(if valid {
        Ok(Revision { reference: RevisionRef::Artifact(name.to_string()), commit: id.to_ascii_lowercase() })
    } else {
        Err(InvalidRevision)
    })
}

/// A string that is not a revision as ferry writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a revision (<name>@sha1:<40 hex> or sha1:<40 hex>)")]
pub struct InvalidRevision;

/// Where ferry's cache keeps the refs it fetched (`refs/ferry/heads/main`, ...). A spec may not
/// name one: they are ferry's bookkeeping, and were a tenant's repository URL ever to reach the
/// cache, they would name other tenants' commits.
pub const INTERNAL_REF_PREFIX: &str = "refs/ferry/";

/// A validated `spec.source.ref`.
#[derive(Clone, Debug, PartialEq)]
pub enum RefRequest {
    Branch(String),
    Tag(String),
    Semver(SemverRange),
    /// Lowercase 40-hex SHA-1.
    Commit(String),
    /// A full ref name outside `refs/heads/` and `refs/tags/`.
    Name(String),
}

impl RefRequest {
    /// Validates that exactly one kind is set (the CRD enforces it too, but a spec can come
    /// from anywhere, e.g. `ferry diff` on a file).
    pub fn from_git_ref(git_ref: &GitRef, url: &str) -> Result<RefRequest, SourceError> {
        let invalid = |message: String| SourceError::InvalidRef { url: url.to_string(), message };
        if git_ref.from_application.is_some() {
            return Err(invalid(
                "ref.fromApplication names no revision of its own; it is resolved through the Application it follows"
                    .to_string(),
            ));
        }
        let set = [&git_ref.branch, &git_ref.tag, &git_ref.semver, &git_ref.commit, &git_ref.name]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            return Err(invalid("set exactly one of branch, tag, semver, commit or name".to_string()));
        }
        let check_name = |kind: &str, name: &str| -> Result<(), SourceError> {
            if name.is_empty()
                || name.starts_with('-')
                || name.contains("..")
                || name.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c))
            {
                return Err(invalid(format!("{kind} {name:?} is not a valid Git ref name")));
            }
            Ok(())
        };
        if let Some(name) = &git_ref.name {
            if let Some(branch) = name.strip_prefix("refs/heads/") {
                check_name("branch", branch)?;
                return Ok(RefRequest::Branch(branch.to_string()));
            }
            if let Some(tag) = name.strip_prefix("refs/tags/") {
                check_name("tag", tag)?;
                return Ok(RefRequest::Tag(tag.to_string()));
            }
            check_name("ref", name)?;
            if name.starts_with(INTERNAL_REF_PREFIX) {
                return Err(invalid(format!(
                    "ref {name:?} is in {INTERNAL_REF_PREFIX}, where ferry keeps its own cache's refs; name a ref of the remote"
                )));
            }
            if !name.starts_with("refs/") {
                return Err(invalid(format!("ref {name:?} is not a full ref name (refs/...)")));
            }
            return Ok(RefRequest::Name(name.clone()));
        }
        if let Some(branch) = &git_ref.branch {
            let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
            check_name("branch", branch)?;
            return Ok(RefRequest::Branch(branch.to_string()));
        }
        if let Some(tag) = &git_ref.tag {
            let tag = tag.strip_prefix("refs/tags/").unwrap_or(tag);
            check_name("tag", tag)?;
            return Ok(RefRequest::Tag(tag.to_string()));
        }
        if let Some(range) = &git_ref.semver {
            return SemverRange::parse(range).map(RefRequest::Semver).map_err(|message| {
                SourceError::InvalidSemverRange { url: url.to_string(), range: range.clone(), message }
            });
        }
        let commit = git_ref.commit.as_deref().unwrap_or_default();
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!("commit {commit:?} is not a full 40-character hexadecimal SHA-1")));
        }
        Ok(RefRequest::Commit(commit.to_ascii_lowercase()))
    }

    /// For messages: `branch "main"`, `tag "v1"`, `semver range ">=1"`, `commit 1a2b...`.
    pub fn describe(&self) -> String {
        match self {
            RefRequest::Branch(b) => format!("branch {b:?}"),
            RefRequest::Tag(t) => format!("tag {t:?}"),
            RefRequest::Semver(r) => format!("semver range {:?}", r.text()),
            RefRequest::Commit(c) => format!("commit {c}"),
            RefRequest::Name(n) => format!("ref {n:?}"),
        }
    }
}

/// A ref as a remote advertises it, with annotated tags peeled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    pub name: String,
    /// The object the ref points at (a tag object for annotated tags).
    pub target: String,
    /// The commit an annotated tag points at (from the `^{}` advertisement).
    pub peeled: Option<String>,
}

impl RemoteRef {
    /// The commit this ref stands for.
    pub fn commit(&self) -> &str {
        self.peeled.as_deref().unwrap_or(&self.target)
    }
}

/// Folds the `refs/tags/x^{}` lines of an advertisement into their tags.
pub fn collect_remote_refs(advertised: impl IntoIterator<Item = (String, String)>) -> Vec<RemoteRef> {
    let mut refs: Vec<RemoteRef> = Vec::new();
    let mut peeled: Vec<(String, String)> = Vec::new();
    for (name, oid) in advertised {
        match name.strip_suffix("^{}") {
            Some(base) => peeled.push((base.to_string(), oid)),
            None => refs.push(RemoteRef { name, target: oid, peeled: None }),
        }
    }
    for (base, oid) in peeled {
        if let Some(r) = refs.iter_mut().find(|r| r.name == base) {
            r.peeled = Some(oid);
        }
    }
    refs
}

/// Picks the commit `request` names among the remote's refs.
pub fn select(request: &RefRequest, refs: &[RemoteRef], url: &str) -> Result<Revision, SourceError> {
    let find = |full: &str| refs.iter().find(|r| r.name == full);
    let names_under = |prefix: &str| -> String {
        let mut names: Vec<&str> = refs.iter().filter_map(|r| r.name.strip_prefix(prefix)).collect();
        names.sort_unstable();
        let shown = names.iter().take(10).copied().collect::<Vec<_>>().join(", ");
        match names.len() {
            0 => "none".to_string(),
            n if n > 10 => format!("{shown}, ... ({n} in all)"),
            _ => shown,
        }
    };
    match request {
        RefRequest::Branch(branch) => match find(&format!("refs/heads/{branch}")) {
            Some(r) => Ok(Revision {
                reference: RevisionRef::Branch(branch.clone()),
                commit: r.commit().to_string(),
            }),
            None => Err(SourceError::RefNotFound {
                url: url.to_string(),
                reference: request.describe(),
                message: format!("the remote has no such branch (branches: {})", names_under("refs/heads/")),
            }),
        },
        RefRequest::Tag(tag) => match find(&format!("refs/tags/{tag}")) {
            Some(r) => {
                Ok(Revision { reference: RevisionRef::Tag(tag.clone()), commit: r.commit().to_string() })
            }
            None => Err(SourceError::RefNotFound {
                url: url.to_string(),
                reference: request.describe(),
                message: format!("the remote has no such tag (tags: {})", names_under("refs/tags/")),
            }),
        },
        RefRequest::Semver(range) => {
            let tags = refs.iter().filter_map(|r| r.name.strip_prefix("refs/tags/").map(|t| (t, r)));
            match highest_matching(range, tags.clone().map(|(t, _)| t)) {
                Some(tag) => {
                    let r =
                        tags.clone().find(|(t, _)| *t == tag).map(|(_, r)| r).expect("picked from this list");
                    Ok(Revision {
                        reference: RevisionRef::Tag(tag.to_string()),
                        commit: r.commit().to_string(),
                    })
                }
                None => {
                    let mut versions: Vec<(semver::Version, &str)> =
                        tags.filter_map(|(t, _)| parse_tag_version(t).map(|v| (v, t))).collect();
                    versions.sort();
                    let highest: Vec<&str> = versions.iter().rev().take(5).map(|(_, t)| *t).collect();
                    let message = if highest.is_empty() {
                        "the remote has no semver tags".to_string()
                    } else {
                        format!("highest semver tags on the remote: {}", highest.join(", "))
                    };
                    Err(SourceError::NoTagMatchesSemver {
                        url: url.to_string(),
                        range: range.text().to_string(),
                        message,
                    })
                }
            }
        }
        RefRequest::Commit(commit) => Ok(Revision { reference: RevisionRef::Commit, commit: commit.clone() }),
        RefRequest::Name(name) => match find(name) {
            Some(r) => {
                Ok(Revision { reference: RevisionRef::Ref(name.clone()), commit: r.commit().to_string() })
            }
            None => Err(SourceError::RefNotFound {
                url: url.to_string(),
                reference: request.describe(),
                message: "the remote does not advertise it".to_string(),
            }),
        },
    }
}

/// The tag with the highest version inside `range`. Ties (`v1.2.3` and `1.2.3`) go to the
/// lexically smaller name so the choice never flaps.
pub fn highest_matching<'a>(range: &SemverRange, tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tags.into_iter()
        .filter_map(|t| parse_tag_version(t).map(|v| (v, t)))
        .filter(|(v, _)| range.matches(v))
        .max_by(|(va, ta), (vb, tb)| va.cmp(vb).then_with(|| tb.cmp(ta)))
        .map(|(_, t)| t)
}

/// A tag's version: `1.2.3` or `v1.2.3` (with pre-release and build metadata); `v1.2` and `v1`
/// count as `1.2.0` and `1.0.0`, as Flux and Helm users expect.
pub fn parse_tag_version(tag: &str) -> Option<semver::Version> {
    let s = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(s) {
        return Some(v);
    }
    let split = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 2
        || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padded = match parts.len() {
        1 => format!("{core}.0.0{rest}"),
        _ => format!("{core}.0{rest}"),
    };
    semver::Version::parse(&padded).ok()
}

/// A semver range in the syntax Flux and Helm users write: comparators separated by spaces or
/// commas (`>=1.2.0 <2.0.0`), alternatives with `||`, hyphen ranges (`1.2 - 1.4.5`), `v`
/// prefixes, wildcards (`1.2.x`, `*`), `~` and `^`. A bare version means exactly that version
/// (`1.2.3` is `=1.2.3`, `1.2` is `1.2.x`). Pre-releases only match when a comparator names a
/// pre-release of the same major.minor.patch.
#[derive(Clone, Debug, PartialEq)]
pub struct SemverRange {
    text: String,
    alternatives: Vec<semver::VersionReq>,
}

impl SemverRange {
    pub fn parse(text: &str) -> Result<SemverRange, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("the range is empty".to_string());
        }
        let alternatives = trimmed
            .split("||")
            .map(|alt| {
                let req = translate_alternative(alt)?;
                semver::VersionReq::parse(&req).map_err(|e| format!("{}: {e}", alt.trim()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SemverRange { text: trimmed.to_string(), alternatives })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, version: &semver::Version) -> bool {
        self.alternatives.iter().any(|req| req.matches(version))
    }
}

/// One `||` alternative to the comma-separated syntax of the `semver` crate.
fn translate_alternative(alt: &str) -> Result<String, String> {
    let raw: Vec<&str> = alt.split([' ', '\t', ',']).filter(|t| !t.is_empty()).collect();
    if raw.is_empty() {
        return Err("an alternative between || is empty".to_string());
    }
    // Glue operators written apart from their version (`>= 1.2`) back on.
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for t in raw {
        if !t.is_empty() && t.chars().all(|c| "<>=~^".contains(c)) {
            pending_op.push_str(t);
        } else {
            tokens.push(format!("{pending_op}{t}"));
            pending_op.clear();
        }
    }
    if !pending_op.is_empty() {
        return Err(format!("operator {pending_op:?} has no version"));
    }
    // Hyphen ranges: `A - B` is `>=A, <=B`.
    let mut comparators: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if i + 2 < tokens.len() && tokens[i + 1] == "-" {
            comparators.push(format!(">={}", strip_v(&tokens[i])));
            comparators.push(format!("<={}", strip_v(&tokens[i + 2])));
            i += 3;
            continue;
        }
        if tokens[i] == "-" {
            return Err("a hyphen range needs a version on both sides".to_string());
        }
        comparators.push(translate_comparator(&tokens[i]));
        i += 1;
    }
    Ok(comparators.join(", "))
}

fn translate_comparator(token: &str) -> String {
    let op_len = token.find(|c: char| !"<>=~^".contains(c)).unwrap_or(token.len());
    let (op, version) = token.split_at(op_len);
    let version = strip_v(version);
    let wildcard = version.is_empty() || version.split('.').any(|p| matches!(p, "*" | "x" | "X"));
    if op.is_empty() && !wildcard {
        // Exact, as in Masterminds/semver (the `semver` crate would read a bare version as ^).
        format!("={version}")
    } else {
        format!("{op}{version}")
    }
}

fn strip_v(v: &str) -> &str {
    v.strip_prefix('v').or_else(|| v.strip_prefix('V')).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://git.example.com/r.git";
    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn range(s: &str) -> SemverRange {
        SemverRange::parse(s).unwrap()
    }

    fn pick<'a>(r: &str, tags: &[&'a str]) -> Option<&'a str> {
        highest_matching(&range(r), tags.iter().copied())
    }

    #[test]
    fn ferrys_own_refs_cannot_be_named() {
        let name = |n: &str| GitRef { name: Some(n.into()), ..Default::default() };
        for internal in ["refs/ferry/heads/main", "refs/ferry/commits/abc", "refs/ferry/other/pull/1/head"] {
            let err = RefRequest::from_git_ref(&name(internal), URL).unwrap_err();
            assert!(matches!(err, SourceError::InvalidRef { .. }), "{internal}: {err}");
        }
        assert_eq!(
            RefRequest::from_git_ref(&name("refs/pull/7/head"), URL).unwrap(),
            RefRequest::Name("refs/pull/7/head".into())
        );
    }

    #[test]
    fn semver_picks_the_highest_match_with_or_without_v() {
        let tags = ["v1.0.0", "1.2.0", "v1.10.1", "v2.0.0", "not-a-version", "v1.9.9"];
        assert_eq!(pick(">=1.2.0 <2.0.0", &tags), Some("v1.10.1"));
        assert_eq!(pick(">=1.2.0, <2.0.0", &tags), Some("v1.10.1"));
        assert_eq!(pick(">= 1.2.0 < 2.0.0", &tags), Some("v1.10.1"));
        assert_eq!(pick(">=v1.2.0 <v1.10.0", &tags), Some("v1.9.9"));
        assert_eq!(pick("*", &tags), Some("v2.0.0"));
        assert_eq!(pick("1.x", &tags), Some("v1.10.1"));
        assert_eq!(pick("~1.2", &tags), Some("1.2.0"));
        assert_eq!(pick("^1", &tags), Some("v1.10.1"));
        assert_eq!(pick("1.2.0", &tags), Some("1.2.0"));
        assert_eq!(pick("1.0.0 - 1.9.9", &tags), Some("v1.9.9"));
        assert_eq!(pick("<1.0.0 || >=2.0.0", &tags), Some("v2.0.0"));
        assert_eq!(pick("<1.0.0 || 1.2.x", &tags), Some("1.2.0"));
    }

    #[test]
    fn semver_excludes_prereleases_unless_the_range_names_one() {
        let tags = ["v1.0.0", "v1.1.0-rc.1", "v2.0.0-beta.1"];
        assert_eq!(pick(">=1.0.0", &tags), Some("v1.0.0"));
        assert_eq!(pick(">=1.1.0-rc.0", &tags), Some("v1.1.0-rc.1"));
        assert_eq!(pick(">=2.0.0-alpha <3.0.0", &tags), Some("v2.0.0-beta.1"));
    }

    #[test]
    fn semver_no_match_and_ties() {
        assert_eq!(pick(">=3.0.0", &["v1.0.0", "v2.0.0"]), None);
        assert_eq!(pick("*", &[]), None);
        assert_eq!(pick("*", &["latest", "main"]), None);
        // The same version spelled twice: always the same pick, whatever the order.
        assert_eq!(pick("1.2.3", &["v1.2.3", "1.2.3"]), Some("1.2.3"));
        assert_eq!(pick("1.2.3", &["1.2.3", "v1.2.3"]), Some("1.2.3"));
    }

    #[test]
    fn lenient_tag_versions() {
        assert_eq!(parse_tag_version("v1.2"), Some(semver::Version::new(1, 2, 0)));
        assert_eq!(parse_tag_version("3"), Some(semver::Version::new(3, 0, 0)));
        assert_eq!(parse_tag_version("v1.2-rc.1").unwrap().to_string(), "1.2.0-rc.1");
        assert_eq!(parse_tag_version("v1.2.3.4"), None);
        assert_eq!(parse_tag_version("release-1"), None);
        assert_eq!(parse_tag_version("v"), None);
    }

    #[test]
    fn invalid_ranges() {
        for bad in ["", "   ", ">=", "abc", ">=1.0.0 ||", "1.0 -", "=>1.0"] {
            assert!(SemverRange::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn revision_formats() {
        let commit = "0123456789abcdef0123456789abcdef01234567".to_string();
        let branch = Revision { reference: RevisionRef::Branch("main".into()), commit: commit.clone() };
        assert_eq!(branch.to_string(), format!("main@sha1:{commit}"));
        assert_eq!(branch.short(), "main@0123456");
        let tag = Revision { reference: RevisionRef::Tag("v1.2.3".into()), commit: commit.clone() };
        assert_eq!(tag.to_string(), format!("v1.2.3@sha1:{commit}"));
        assert_eq!(tag.short(), "v1.2.3@0123456");
        let pinned = Revision { reference: RevisionRef::Commit, commit: commit.clone() };
        assert_eq!(pinned.to_string(), format!("sha1:{commit}"));
        assert_eq!(pinned.short(), "0123456");
        assert_eq!(pinned.name(), None);
    }

    fn git_ref(
        branch: Option<&str>,
        tag: Option<&str>,
        semver: Option<&str>,
        commit: Option<&str>,
    ) -> GitRef {
        GitRef {
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            semver: semver.map(Into::into),
            commit: commit.map(Into::into),
            name: None,
            from_application: None,
        }
    }

    #[test]
    fn ref_requests_are_validated() {
        let ok = |g: GitRef| RefRequest::from_git_ref(&g, URL).unwrap();
        assert_eq!(ok(git_ref(Some("main"), None, None, None)), RefRequest::Branch("main".into()));
        assert_eq!(ok(git_ref(Some("refs/heads/a/b"), None, None, None)), RefRequest::Branch("a/b".into()));
        assert_eq!(ok(git_ref(None, Some("refs/tags/v1"), None, None)), RefRequest::Tag("v1".into()));
        assert_eq!(ok(git_ref(None, None, None, Some(&A.to_uppercase()))), RefRequest::Commit(A.into()));
        assert!(matches!(ok(git_ref(None, None, Some(">=1"), None)), RefRequest::Semver(_)));

        let err = |g: GitRef| RefRequest::from_git_ref(&g, URL).unwrap_err().category();
        assert_eq!(err(git_ref(None, None, None, None)), "invalid_ref");
        assert_eq!(err(git_ref(Some("a"), Some("b"), None, None)), "invalid_ref");
        assert_eq!(err(git_ref(Some("a..b"), None, None, None)), "invalid_ref");
        assert_eq!(err(git_ref(Some("-x"), None, None, None)), "invalid_ref");
        assert_eq!(err(git_ref(None, None, None, Some("abc123"))), "invalid_ref");
        assert_eq!(err(git_ref(None, None, Some("not a range"), None)), "invalid_semver_range");
    }

    fn remote() -> Vec<RemoteRef> {
        collect_remote_refs([
            ("HEAD".to_string(), A.to_string()),
            ("refs/heads/main".to_string(), A.to_string()),
            ("refs/heads/dev".to_string(), B.to_string()),
            ("refs/tags/v1.0.0".to_string(), B.to_string()),
            // Annotated tag: the tag object, then the commit it peels to.
            ("refs/tags/v1.1.0".to_string(), C.to_string()),
            ("refs/tags/v1.1.0^{}".to_string(), A.to_string()),
        ])
    }

    #[test]
    fn select_each_kind() {
        let refs = remote();
        let sel = |r: RefRequest| select(&r, &refs, URL);
        assert_eq!(sel(RefRequest::Branch("dev".into())).unwrap().to_string(), format!("dev@sha1:{B}"));
        assert_eq!(sel(RefRequest::Tag("v1.0.0".into())).unwrap().commit, B);
        // Annotated tags resolve to the commit, not the tag object.
        assert_eq!(sel(RefRequest::Tag("v1.1.0".into())).unwrap().commit, A);
        let semver = sel(RefRequest::Semver(range(">=1.0.0 <2.0.0"))).unwrap();
        assert_eq!(semver, Revision { reference: RevisionRef::Tag("v1.1.0".into()), commit: A.into() });
        assert_eq!(sel(RefRequest::Commit(C.into())).unwrap().to_string(), format!("sha1:{C}"));
    }

    #[test]
    fn select_reports_what_exists() {
        let refs = remote();
        let err = select(&RefRequest::Branch("prod".into()), &refs, URL).unwrap_err();
        assert_eq!(err.category(), "ref_not_found");
        assert!(err.to_string().contains("branches: dev, main"), "{err}");
        let err = select(&RefRequest::Tag("v9".into()), &refs, URL).unwrap_err();
        assert!(err.to_string().contains("tags: v1.0.0, v1.1.0"), "{err}");
        let err = select(&RefRequest::Semver(range(">=2.0.0")), &refs, URL).unwrap_err();
        assert_eq!(err.category(), "no_semver_match");
        assert!(err.to_string().contains("highest semver tags on the remote: v1.1.0, v1.0.0"), "{err}");
    }
}

#[cfg(test)]
mod revision_strings {
    use super::*;

    #[test]
    fn a_revision_parses_back_from_what_it_writes() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let pinned = Revision { reference: RevisionRef::Commit, commit: sha.into() };
        assert_eq!(pinned.to_string().parse::<Revision>(), Ok(pinned));
        let named: Revision = format!("release/v1@sha1:{sha}").parse().unwrap();
        assert_eq!(named.commit, sha);
        assert_eq!(named.name(), Some("release/v1"));
        assert_eq!(named.to_string(), format!("release/v1@sha1:{sha}"));
        for bad in
            ["", "main", "sha1:abc", &format!("@sha1:{sha}"), &format!("sha1:{sha}0"), &format!("main@{sha}")]
        {
            assert_eq!(bad.parse::<Revision>(), Err(InvalidRevision), "{bad:?}");
        }
    }

    #[test]
    fn an_artifact_revision_parses_back_from_what_it_writes() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let chart =
            Revision { reference: RevisionRef::Artifact("podinfo@6.5.4".into()), commit: digest.clone() };
        assert_eq!(chart.to_string(), format!("podinfo@6.5.4@{digest}"));
        assert_eq!(chart.to_string().parse::<Revision>(), Ok(chart.clone()));
        assert_eq!(chart.short(), "podinfo@6.5.4@abababa");
        assert!(chart.is_artifact());
        let with_values = format!("podinfo@6.5.4@{digest}+sha1:{}", "c".repeat(40));
        let parsed: Revision = with_values.parse().unwrap();
        assert_eq!(parsed.to_string(), with_values);
        let pinned = Revision { reference: RevisionRef::Artifact(String::new()), commit: digest.clone() };
        assert_eq!(pinned.to_string(), digest);
        assert_eq!(pinned.to_string().parse::<Revision>(), Ok(pinned));
        for bad in [format!("@{digest}"), format!("x@{digest}0"), format!("x@{digest}+sha1:abc")] {
            assert_eq!(bad.parse::<Revision>(), Err(InvalidRevision), "{bad:?}");
        }
    }
}
