//! Which artifact a source asks for, and choosing a tag for a semver range from a registry's
//! tag list. Pure functions; the listing itself is in [`super::OciFetcher`].

use crate::source::refs::{SemverRange, parse_tag_version};

/// How a source names its artifact.
#[derive(Clone, Debug, PartialEq)]
pub enum OciSelector {
    /// A tag, followed as it moves.
    Tag(String),
    /// The highest tag whose version is in the range (the same range syntax as Git sources).
    Semver(SemverRange),
    /// A manifest digest, `sha256:<64 hex>`: pinned, never moves.
    Digest(String),
}

impl OciSelector {
    /// For messages: `tag "1.0.0"`, `semver range ">=1"`, `digest sha256:...`.
    pub fn describe(&self) -> String {
        match self {
            OciSelector::Tag(tag) => format!("tag {tag:?}"),
            OciSelector::Semver(range) => format!("semver range {:?}", range.text()),
            OciSelector::Digest(digest) => format!("digest {digest}"),
        }
    }
}

/// A tag's version. OCI tags cannot hold `+`, so Helm pushes `1.2.3+build` as `1.2.3_build`:
/// `_` reads as `+`. A leading `v`, and `v1.2` for `1.2.0`, as for Git tags.
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    parse_tag_version(&tag.replace('_', "+"))
}

/// The tag with the highest version inside `range`. Pre-releases only when the range names a
/// pre-release (see [`SemverRange`]), as Helm does. Ties (`v1.0.0` and `1.0.0`; build metadata
/// aside, semver's order ranks them) go to the lexically smaller tag so the choice never flaps.
pub fn highest_matching<'a>(range: &SemverRange, tags: &'a [String]) -> Option<&'a str> {
    tags.iter()
        .filter_map(|t| tag_version(t).map(|v| (v, t.as_str())))
        .filter(|(v, _)| range.matches(v))
        .max_by(|(va, ta), (vb, tb)| va.cmp(vb).then_with(|| tb.cmp(ta)))
        .map(|(_, t)| t)
}

/// The `n` highest version tags, highest first, for a message when nothing matched.
pub fn highest_tags(tags: &[String], n: usize) -> Vec<String> {
    let mut versions: Vec<(semver::Version, &String)> =
        tags.iter().filter_map(|t| tag_version(t).map(|v| (v, t))).collect();
    versions.sort_by(|(va, ta), (vb, tb)| vb.cmp(va).then_with(|| ta.cmp(tb)));
    versions.into_iter().take(n).map(|(_, t)| t.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(range: &str, tags: &[&str]) -> Option<String> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        highest_matching(&SemverRange::parse(range).unwrap(), &tags).map(str::to_string)
    }

    #[test]
    fn picks_the_highest_match_with_or_without_v() {
        let tags = ["0.9.0", "v1.0.0", "1.2.0", "v1.10.1", "2.0.0", "latest", "sha256-abc.sig"];
        assert_eq!(pick(">=1.0.0 <2.0.0", &tags).as_deref(), Some("v1.10.1"));
        assert_eq!(pick("1.2.x", &tags).as_deref(), Some("1.2.0"));
        assert_eq!(pick("*", &tags).as_deref(), Some("2.0.0"));
        assert_eq!(pick(">=3", &tags), None);
    }

    #[test]
    fn underscores_are_helms_plus() {
        assert_eq!(tag_version("1.2.3_build.7").unwrap().to_string(), "1.2.3+build.7");
        assert_eq!(pick("1.2.3", &["1.2.3_build.7", "1.2.2"]).as_deref(), Some("1.2.3_build.7"));
        assert_eq!(pick(">=1.0.0", &["v1.0.0_a", "v1.0.1_a"]).as_deref(), Some("v1.0.1_a"));
    }

    #[test]
    fn prereleases_only_when_the_range_names_one() {
        let tags = ["1.0.0", "1.1.0-rc.1", "2.0.0-beta.1"];
        assert_eq!(pick(">=1.0.0", &tags).as_deref(), Some("1.0.0"));
        assert_eq!(pick(">=1.1.0-rc.0", &tags).as_deref(), Some("1.1.0-rc.1"));
        assert_eq!(pick(">=2.0.0-alpha <3.0.0", &tags).as_deref(), Some("2.0.0-beta.1"));
    }

    #[test]
    fn ties_and_the_message_list() {
        assert_eq!(pick("1.0.0", &["v1.0.0", "1.0.0"]).as_deref(), Some("1.0.0"));
        assert_eq!(pick("1.0.0", &["1.0.0", "v1.0.0"]).as_deref(), Some("1.0.0"));
        let tags: Vec<String> = ["0.1.0", "latest", "v3.0.0", "2.0.0_x", "1.0.0"].map(String::from).into();
        assert_eq!(highest_tags(&tags, 3), ["v3.0.0", "2.0.0_x", "1.0.0"]);
    }
}
