use super::*;
use crate::api::{OrderPolicy, SemverPolicy, TagFilter, TagPolicy};

fn spec(policy: TagPolicy, filter: Option<(&str, Option<&str>)>) -> ImagePolicySpec {
    serde_json::from_value::<ImagePolicySpec>(serde_json::json!({
        "image": "reg.example.com/team/web",
        "policy": {},
    }))
    .map(|mut s| {
        s.policy = policy;
        s.filter_tags = filter.map(|(p, e)| TagFilter { pattern: p.into(), extract: e.map(Into::into) });
        s
    })
    .expect("spec")
}

fn semver(range: &str) -> TagPolicy {
    TagPolicy { semver: Some(SemverPolicy { range: range.into() }), numerical: None, alphabetical: None }
}

fn numerical(order: SortOrder) -> TagPolicy {
    TagPolicy { semver: None, numerical: Some(OrderPolicy { order }), alphabetical: None }
}

fn alphabetical(order: SortOrder) -> TagPolicy {
    TagPolicy { semver: None, numerical: None, alphabetical: Some(OrderPolicy { order }) }
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn latest(policy: TagPolicy, filter: Option<(&str, Option<&str>)>, list: &[&str]) -> Option<String> {
    let selector = Selector::from_spec(&spec(policy, filter)).expect("selector");
    selector.latest(&tags(list)).map(str::to_string)
}

#[test]
fn semver_ranges_flux_users_write() {
    let list = ["1.0.0", "1.1.0", "1.2.3", "2.0.0", "2.0.0-rc.1", "latest", "v1.3.0", "main-abc"];
    let cases = [
        (">=1.0.0", Some("2.0.0")),
        (">=1.0.0 <2.0.0", Some("v1.3.0")),
        (">=1.0.0, <2.0.0", Some("v1.3.0")),
        ("^1.2", Some("v1.3.0")),
        ("~1.2.0", Some("1.2.3")),
        ("1.x", Some("v1.3.0")),
        ("1.1.x", Some("1.1.0")),
        ("1.0.0 - 1.2.3", Some("1.2.3")),
        ("<1.0.0 || >=2.0.0", Some("2.0.0")),
        ("=1.1.0", Some("1.1.0")),
        (">=3.0.0", None),
        ("*", Some("2.0.0")),
    ];
    for (range, want) in cases {
        assert_eq!(latest(semver(range), None, &list).as_deref(), want, "range {range}");
    }
}

#[test]
fn pre_releases_only_when_the_range_names_one() {
    let list = ["1.0.0", "2.0.0-rc.1"];
    assert_eq!(latest(semver(">=1.0.0"), None, &list).as_deref(), Some("1.0.0"));
    assert_eq!(latest(semver(">=2.0.0-rc.0"), None, &list).as_deref(), Some("2.0.0-rc.1"));
}

#[test]
fn semver_ties_go_to_the_smaller_tag_whatever_the_listing_order() {
    assert_eq!(latest(semver(">=1"), None, &["v1.0.0", "1.0.0"]).as_deref(), Some("1.0.0"));
    assert_eq!(latest(semver(">=1"), None, &["1.0.0", "v1.0.0"]).as_deref(), Some("1.0.0"));
}

#[test]
fn bad_ranges_say_what_is_accepted() {
    for range in ["not a range", ">=", "1.0.0 -", "||"] {
        let err = Selector::from_spec(&spec(semver(range), None)).expect_err(range);
        let text = err.to_string();
        assert!(text.contains(range.trim()) && text.contains(">=1.0.0 <2.0.0"), "{text}");
    }
}

#[test]
fn numerical_orders_read_numbers_and_skip_the_rest() {
    let list = ["1", "10", "9", "2.5", "abc", "", "NaN", "inf", "-3", "1e3"];
    assert_eq!(latest(numerical(SortOrder::Asc), None, &list).as_deref(), Some("1e3"));
    assert_eq!(latest(numerical(SortOrder::Desc), None, &list).as_deref(), Some("-3"));
    assert_eq!(latest(numerical(SortOrder::Asc), None, &["x", "y"]), None);
}

#[test]
fn alphabetical_orders_by_bytes() {
    let list = ["a", "b", "B", "aa"];
    assert_eq!(latest(alphabetical(SortOrder::Asc), None, &list).as_deref(), Some("b"));
    assert_eq!(latest(alphabetical(SortOrder::Desc), None, &list).as_deref(), Some("B"));
    assert_eq!(latest(alphabetical(SortOrder::Asc), None, &[]), None);
}

#[test]
fn a_filter_with_extract_orders_what_it_extracts_and_chooses_the_tag() {
    let list = ["main-abc123-100", "main-def456-99", "main-fff000-1000", "dev-aaa-5000", "latest"];
    let pattern = "^main-[a-f0-9]+-(?P<ts>[0-9]+)$";
    for extract in ["$ts", "${ts}", "$1"] {
        let got = latest(numerical(SortOrder::Asc), Some((pattern, Some(extract))), &list);
        assert_eq!(got.as_deref(), Some("main-fff000-1000"), "extract {extract}");
    }
    // Alphabetically, "99" > "1000".
    let got = latest(alphabetical(SortOrder::Asc), Some((pattern, Some("$ts"))), &list);
    assert_eq!(got.as_deref(), Some("main-def456-99"));
    // Without extract the whole tag is ordered.
    let got = latest(alphabetical(SortOrder::Asc), Some(("^main-", None)), &list);
    assert_eq!(got.as_deref(), Some("main-fff000-1000"));
}

#[test]
fn a_filter_applies_before_semver() {
    let list = ["1.0.0", "1.1.0-alpine", "1.2.0-alpine", "2.0.0"];
    let got = latest(semver(">=1.0.0-0"), Some(("^(?P<v>.*)-alpine$", Some("$v"))), &list);
    assert_eq!(got.as_deref(), Some("1.2.0-alpine"));
}

#[test]
fn templates_parse_like_go_expand() {
    use Part::*;
    let lit = |s: &str| Literal(s.to_string());
    let cases: &[(&str, Vec<Part>)] = &[
        ("$ts", vec![Name("ts".into())]),
        ("${ts}", vec![Name("ts".into())]),
        ("$1", vec![Index(1)]),
        ("${1}x", vec![Index(1), lit("x")]),
        ("v$major.$minor", vec![lit("v"), Name("major".into()), lit("."), Name("minor".into())]),
        ("$$1", vec![lit("$1")]),
        ("a$", vec![lit("a$")]),
        ("$-", vec![lit("$-")]),
        ("plain", vec![lit("plain")]),
        ("", vec![]),
    ];
    for (text, want) in cases {
        assert_eq!(&Template::parse(text).expect(text).0, want, "template {text:?}");
    }
    assert_eq!(Template::parse("${ts"), Err(TemplateError::Unclosed(0)));
    assert_eq!(Template::parse("x${}"), Err(TemplateError::EmptyName(1)));
    assert_eq!(Template::parse("${a-b}"), Err(TemplateError::BadName("a-b".into())));
}

#[test]
fn templates_naming_missing_groups_are_refused() {
    let err = |p: &str, e: &str| {
        Selector::from_spec(&spec(numerical(SortOrder::Asc), Some((p, Some(e))))).expect_err(e).to_string()
    };
    assert!(err("^(?P<ts>[0-9]+)$", "$other").contains("no group \"other\""));
    assert!(err("^([0-9]+)$", "$2").contains("no group 2"));
    assert!(Selector::from_spec(&spec(numerical(SortOrder::Asc), Some(("(", None)))).is_err());
}

#[test]
fn hostile_tags_and_patterns_never_panic() {
    let long = "9".repeat(100_000);
    let list = [long.as_str(), "\u{0}", "é", "1.0.0\n", "$1", "${", "-", "."];
    for policy in [semver(">=0"), numerical(SortOrder::Asc), alphabetical(SortOrder::Desc)] {
        let _ = latest(policy, Some(("(?P<x>.*)", Some("$x$1${x}"))), &list);
    }
    let huge = format!("{}{{1000}}{{1000}}", "a");
    assert!(Selector::from_spec(&spec(numerical(SortOrder::Asc), Some((&huge, None)))).is_err());
}
