//! Property tests: no input an Application author, a Git repository or a webhook sender controls
//! makes a parser panic or a redaction leak (issue 19). They run in `cargo test` (so in
//! `make test`) with a fixed number of cases each and no persisted failure files, a few
//! seconds in all; a crash they find is fixed and kept as an explicit regression case below.

use std::collections::{BTreeMap, BTreeSet};

use proptest::{prelude::*, test_runner::Config};
use serde_json::{Value, json};

use crate::{
    api::{Application, ApplicationSpec, HealthCheckExpr},
    artifact::{
        oci::OciRepository,
        unpack::{UnpackLimits, unpack_tar_gz},
    },
    duration,
    health::{self, ExprCache, HealthChecks},
    render::{
        AgeKeys,
        parse::{parse_json, parse_json_with_keys, parse_yaml, parse_yaml_with_keys},
    },
    rollout::analysis::{Condition, render_query},
    server::webhook::{self, PushedRef},
    source::{RepoUrl, repo_url::redact_unparsed},
};

/// Cases per property: enough to find the shallow crashes this is for, few enough that the
/// whole module takes seconds on a shared CI machine.
fn config() -> Config {
    Config { cases: 256, failure_persistence: None, ..Config::default() }
}

/// Text made of the pieces a parser cares about, glued at random, plus any characters.
fn pieces(alphabet: &'static [&'static str]) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(alphabet).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[a-z0-9]{1,6}",
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

/// Pieces of kubeconfigs: the keys `cluster::kubeconfig` looks at, in every place.
const KUBECONFIG: &[&str] = &[
    "apiVersion: v1\n",
    "current-context: c\n",
    "contexts:\n- name: c\n  context: {cluster: k, user: u}\n",
    "clusters:\n- name: k\n  cluster:\n",
    "    server: https://h\n",
    "users:\n- name: u\n  user:\n",
    "    token: t\n",
    "    tokenFile: /x\n",
    "    exec: {command: sh}\n",
    "    client-certificate-data: Yg==\n",
    "- ",
    ": ",
    "{",
    "}",
    "\n",
    "  ",
    "~",
    "null",
];

const YAML: &[&str] = &[
    "---\n",
    "...\n",
    "\n",
    "  ",
    "- ",
    ": ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!t ",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "#",
    "%YAML 1.2\n",
    "<<: ",
    "apiVersion: v1\n",
    "kind: List\n",
    "kind: ConfigMap\n",
    "metadata: {name: x}\n",
    "items: ",
    "null",
    "~",
    "1e999",
    "0x1F",
    "é",
    "\t",
];

/// The pieces of a SOPS document: metadata, `ENC[…]` values in every shape, armor.
const SOPS: &[&str] = &[
    "sops:\n",
    "  mac: ",
    "  lastmodified: \"2026-01-01T00:00:00Z\"\n",
    "  age:\n",
    "    - recipient: age1x\n",
    "      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n        YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n        -----END AGE ENCRYPTED FILE-----\n",
    "  encrypted_regex: ",
    "  unencrypted_suffix: _u\n",
    "  mac_only_encrypted: true\n",
    "  key_groups: ",
    "ENC[AES256_GCM,data:",
    "AAAA",
    "==",
    ",iv:",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ",tag:",
    "AAAAAAAAAAAAAAAAAAAAAA==",
    ",type:",
    "str",
    "int",
    "float",
    "bool",
    "]",
    "a: ",
    "\n",
    "  ",
    "- ",
    "[",
    "(",
    "\"",
    "{\"sops\": {\"mac\": ",
    "}",
];

const DURATION: &[&str] = &["0", "9", "99999999999", ".", "ms", "s", "m", "h", "1h", "é", "-", "+"];

const CONDITION: &[&str] = &[
    "result", "(", ")", "!", "not ", "&&", "||", " and ", " or ", "<", "<=", ">", ">=", "==", "!=", "=", "0",
    "1e308", "1e999", "-", ".5", "NaN", " ", "é",
];

const CEL: &[&str] = &[
    "status",
    "spec",
    "metadata",
    ".",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "==",
    "!=",
    "<",
    "&&",
    "||",
    "!",
    "?",
    ":",
    ",",
    "has(",
    ".all(e, ",
    ".exists(e, ",
    ".exists_one(e, ",
    ".map(e, ",
    ".filter(e, ",
    "e",
    "size(",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615u",
    "1.5",
    "1e309",
    "b'",
    "r'",
    "\\",
    "true",
    "null",
    "+",
    "-",
    "*",
    "/",
    "%",
    " in ",
    "int(",
    "uint(",
    "double(",
    "string(",
    "bytes(",
    "dyn(",
    "type(",
    ".matches(",
    "'[a-'",
    "'(a*)*b'",
    ".conditions",
    "[0]",
    "[-1]",
    "[\"x\"]",
    " ",
    "é",
    ".?",
    "optional.of(",
    ".orValue(",
    ".lowerAscii()",
    ".split(",
    ".substring(",
    ".charAt(",
    "duration(",
    "timestamp(",
    "\u{0}",
];

const TEMPLATE: &[&str] = &["{{", "}}", "{", "}", " ", "revision", "namespace", "é", "{{revision}}"];

/// JSON values of bounded size and depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,24}".prop_map(Value::String),
        "(https?|ssh|git|file)://[a-zé.]{0,8}(:[0-9]{1,6})?/[a-zé/.]{0,12}".prop_map(Value::String),
        "[a-z]{0,4}@[a-z.]{0,6}:[a-zé/]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(payload_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The keys the webhook parsers look at, and others.
fn payload_key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "ref",
                "after",
                "deleted",
                "repository",
                "project",
                "repoURL",
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "url",
                "git_http_url",
                "git_ssh_url",
                "web_url",
                "http_url",
                "homepage",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z]{1,6}",
    ]
}

fn app_on(repo_url: &str) -> Application {
    let spec: ApplicationSpec = serde_json::from_value(json!({
        "source": {"repoURL": repo_url, "ref": {"branch": "main"}},
    }))
    .expect("a minimal spec");
    Application::new("a", spec)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn yaml_and_json_parsing_never_panics(text in pieces(YAML)) {
        let _ = parse_yaml("f.yaml", &text);
        let _ = parse_json("f.json", &text);
    }

    /// A remote cluster's kubeconfig is a tenant's input too.
    #[test]
    fn kubeconfig_checks_never_panic(text in pieces(KUBECONFIG)) {
        let _ = crate::cluster::kubeconfig::check(&text, None);
    }

    /// Whatever an encrypted-looking document holds, decryption fails cleanly (with the
    /// fixtures' test key, so real age stanzas are tried) and never panics.
    #[test]
    fn sops_documents_never_panic(text in pieces(SOPS), raw in proptest::collection::vec(any::<u8>(), 0..96)) {
        let keys = test_keys();
        let raw = format!("sops:\n  mac: x\nv: {}", String::from_utf8_lossy(&raw));
        for text in [&text, &raw] {
            let _ = parse_yaml_with_keys("f.yaml", text, Some(&keys));
            let _ = parse_json_with_keys("f.json", text, Some(&keys));
            let _ = parse_yaml("f.yaml", text);
        }
    }

    /// A real encrypted file with one character changed anywhere (a value, the IV, the MAC,
    /// the armored data key, the YAML around them) fails cleanly or still decrypts.
    #[test]
    fn mutated_sops_files_never_panic(at in any::<proptest::sample::Index>(), c in any::<char>()) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sops/encrypted/nested.yaml");
        let text = std::fs::read_to_string(path).expect("the fixture");
        let mut chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len());
        chars[i] = c;
        let mutated: String = chars.into_iter().collect();
        let _ = parse_yaml_with_keys("f.yaml", &mutated, Some(&test_keys()));
    }

    #[test]
    fn durations_never_panic_and_stay_within_the_bound(text in pieces(DURATION)) {
        prop_assert!(duration::parse(&text).is_none_or(|d| d <= duration::MAX));
    }

    #[test]
    fn whole_durations_parse_exactly_up_to_the_bound(n in 0u64..20_000_000, unit in 0usize..4) {
        let (name, nanos) = [("ms", 1_000_000u128), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)][unit];
        let want = u128::from(n) * nanos;
        let parsed = duration::parse(&format!("{n}{name}"));
        if want <= duration::MAX.as_nanos() {
            prop_assert_eq!(parsed.map(|d| d.as_nanos()), Some(want));
        } else {
            prop_assert_eq!(parsed, None);
        }
    }

    #[test]
    fn conditions_never_panic(text in pieces(CONDITION), result in any::<f64>()) {
        if let Ok(condition) = Condition::parse(&text) {
            let _ = condition.holds(result);
        }
    }

    /// Neither compiling nor evaluating a health check expression panics inside the CEL crate
    /// (ferry catches such a panic too, and says so in the message this looks for).
    #[test]
    fn health_check_expressions_never_panic(text in pieces(CEL), status in json_value(), spec in json_value()) {
        let entry = HealthCheckExpr { api_version: "v1".into(), kind: "Pod".into(), current: text, ..Default::default() };
        match HealthChecks::compile(&[entry], "spec.healthChecks", &ExprCache::default()) {
            Ok(checks) => {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "status": status, "spec": spec});
                let message = health::assess(&pod, &checks).message.unwrap_or_default();
                prop_assert!(!message.contains(health::INTERPRETER_PANICKED), "{}", message);
            }
            Err(e) => prop_assert!(!e.to_string().contains(health::PARSER_PANICKED), "{}", e),
        }
    }

    #[test]
    fn query_templates_never_panic(text in pieces(TEMPLATE)) {
        let vars = BTreeMap::from([("revision", "r".to_string()), ("namespace", "n".to_string())]);
        let _ = render_query(&text, &vars);
    }

    #[test]
    fn webhook_payloads_never_panic(payload in json_value(), raw in proptest::collection::vec(any::<u8>(), 0..64), event in ".{0,12}") {
        let body = serde_json::to_vec(&payload).expect("JSON serializes");
        for body in [&body[..], &raw[..]] {
            for hook in [
                webhook::parse_github(Some("push"), body),
                webhook::parse_github(Some(&event), body),
                webhook::parse_gitlab(Some("Push Hook"), body),
                webhook::parse_gitlab(Some(&event), body),
                webhook::parse_generic(body),
            ] {
                if let Ok(webhook::Hook::Push(push)) = hook {
                    let keys = webhook::push_keys(&push);
                    let _ = push.repo_for_log();
                    for url in &push.repo_urls {
                        let _ = webhook::concerns(&app_on(url), &keys, &push.git_ref);
                    }
                }
            }
            let _ = webhook::verify_signature(webhook::GENERIC_SIGNATURE, b"key", body, Some(body));
            let _ = webhook::verify_token(webhook::GITLAB_TOKEN, b"key", Some(body));
        }
    }

    /// Any repository URL an Application may hold, matched against any push: the panic that
    /// dropped every signed webhook (issue 19, defect 4) lived here.
    #[test]
    fn repository_keys_never_panic(url in ".{0,40}", pushed in ".{0,40}") {
        let keys: BTreeSet<String> = webhook::repo_key(&pushed).into_iter().collect();
        let _ = webhook::concerns(&app_on(&url), &keys, &PushedRef::parse(&pushed));
        let _ = RepoUrl::parse(&url).map(|u| u.cache_key());
    }

    /// Whatever surrounds it, a password in a repository URL reaches no message, label or key.
    #[test]
    fn repository_urls_never_leak_their_password(
        scheme in proptest::sample::select(&["https://", "http://", "ssh://", "git+ssh://", "file://", "ftp://", "HTTPS://", ""][..]),
        user in "[a-z]{0,5}",
        secret in "\\PC{1,10}",
        host in "[a-z.]{0,8}(:[0-9]{1,5})?",
        path in "[a-z/:]{0,10}",
    ) {
        let password = format!("Zq{secret}qZ");
        let input = format!("{scheme}{user}:{password}@{host}{path}");
        let mut shown = vec![redact_unparsed(&input)];
        match RepoUrl::parse(&input) {
            Ok(url) => shown.extend([
                url.redacted().to_string(),
                url.remote_url().to_string(),
                url.normalized().to_string(),
                url.cache_key(),
                format!("{url:?} {url}"),
            ]),
            Err(err) => shown.push(format!("{err} {err:?}")),
        }
        for text in shown {
            prop_assert!(!text.contains(&password), "{:?} leaked from {:?}: {}", password, input, text);
        }
    }
}

/// The fixtures' test key (tests/fixtures/sops/key.agekey).
fn test_keys() -> AgeKeys {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sops/key.agekey");
    AgeKeys::parse(&std::fs::read_to_string(path).expect("the test key")).expect("a valid key")
}

/// Pieces of tar headers: names with `..`, `/` and NUL, magic numbers, type flags, octal
/// sizes, a PAX path record, a zero block.
const TAR_PIECES: &[&[u8]] = &[
    b"../x\0",
    b"/etc/x",
    b"a/b",
    b"ustar\x0000",
    b"ustar  \0",
    b"0000644\0",
    b"77777777777\0",
    b"0",
    b"1",
    b"2",
    b"3",
    b"5",
    b"g",
    b"x",
    b"L",
    b"S",
    b"30 path=../../evil\n",
    &[0u8; 512],
];

/// Tar-like bytes: those pieces glued at random between arbitrary bytes.
fn tar_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => proptest::sample::select(TAR_PIECES).prop_map(<[u8]>::to_vec),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

proptest! {
    #![proptest_config(Config { cases: 128, ..config() })]

    /// A Helm repository's index.yaml is a server's answer: any bytes, or YAML shaped like an
    /// index with hostile values, parse or fail without a panic.
    #[test]
    fn chart_indexes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048), name in "\\PC{0,20}", version in "\\PC{0,20}", url in "\\PC{0,40}") {
        let _ = crate::artifact::helm_repo::parse_index(&raw);
        let text = format!("entries:\n  {name:?}:\n  - version: {version:?}\n    urls: [{url:?}]\n    digest: {url:?}\n");
        if let Ok(index) = crate::artifact::helm_repo::parse_index(text.as_bytes()) {
            let base = crate::artifact::helm_repo::base_url("https://charts.example.com/x").expect("a base");
            let _ = crate::artifact::helm_repo::pick(&index, &base, &name, Some(&version));
            let _ = crate::artifact::helm_repo::pick(&index, &base, &name, None);
        }
    }

    /// An artifact layer is bytes from a registry anyone may control: the unpacker returns an
    /// error for any of them, never panics, and writes nowhere but its destination.
    #[test]
    fn unpacking_arbitrary_archives_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..2048), tar in tar_like()) {
        let limits = UnpackLimits { max_total_bytes: 1 << 16, max_files: 64, max_file_bytes: 1 << 14 };
        for bytes in [raw.clone(), gzip(&raw), gzip(&tar)] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let _ = unpack_tar_gz(&bytes, &tmp.path().join("out"), limits);
            let outside: Vec<_> = std::fs::read_dir(tmp.path()).expect("read tempdir").collect();
            prop_assert!(outside.len() <= 1, "{:?}", outside);
        }
    }

    /// Any OCI repository URL parses or fails without a panic, and a password never shows.
    #[test]
    fn oci_urls_never_panic_or_leak(url in ".{0,40}", secret in "\\PC{1,10}", tail in "[a-z/:@.]{0,12}") {
        let _ = OciRepository::parse(&url).map(|r| r.child(&tail).map(|c| c.to_string()));
        let password = format!("Zq{secret}qZ");
        let input = format!("oci://u:{password}@{tail}");
        let shown = match OciRepository::parse(&input) {
            Ok(r) => format!("{r} {r:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&password), "{}", shown);
    }
}

/// Regression cases: inputs that crashed or leaked before issue 19's fixes.
#[test]
fn regressions() {
    assert_eq!(duration::parse("99999999999999999999h"), None);
    assert_eq!(webhook::repo_key("git@h:éabc").as_deref(), Some("h/éabc"));
    assert!(!redact_unparsed("https://u:pa/ss@h/x").contains("pa/ss"));
    let deep = format!("{}result > 1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(Condition::parse(&deep).is_err());
    let nots = format!("{}result > 1", "!".repeat(100_000));
    assert!(Condition::parse(&nots).is_err());
}
