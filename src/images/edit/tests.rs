use super::*;

const NS: &str = "apps";
const NAME: &str = "web";

fn latest(tag: &str) -> Latest {
    Latest { name: "reg.example.com:5000/team/web".into(), tag: tag.into(), digest: None }
}

fn pinned(tag: &str) -> Latest {
    Latest { digest: Some(format!("sha256:{}", "a".repeat(64))), ..latest(tag) }
}

fn edit(text: &str, l: &Latest) -> Option<String> {
    edit_text(text.as_bytes(), NS, NAME, l).map(|(out, _)| String::from_utf8(out).expect("utf-8"))
}

/// Each case: input line, expected line after setting 1.1.0 (`None`: untouched).
#[test]
fn marked_values_are_rewritten_in_their_style() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"    image: reg.example.com:5000/team/web:1.0.0 # {"$imagepolicy": "apps:web"}"#,
            Some(r#"    image: reg.example.com:5000/team/web:1.1.0 # {"$imagepolicy": "apps:web"}"#),
        ),
        (
            r#"  - image: "reg.example.com:5000/team/web:1.0.0"  # {"$imagepolicy": "apps:web"}"#,
            Some(r#"  - image: "reg.example.com:5000/team/web:1.1.0"  # {"$imagepolicy": "apps:web"}"#),
        ),
        (
            r#"image: 'reg.example.com:5000/team/web:1.0.0' # {"$imagepolicy": "apps:web"}"#,
            Some(r#"image: 'reg.example.com:5000/team/web:1.1.0' # {"$imagepolicy": "apps:web"}"#),
        ),
        (
            r#"  newTag: 1.0.0 # {"$imagepolicy": "apps:web:tag"}"#,
            Some(r#"  newTag: 1.1.0 # {"$imagepolicy": "apps:web:tag"}"#),
        ),
        (
            r#"  newName: old/web # {"$imagepolicy": "apps:web:name"}"#,
            Some(r#"  newName: reg.example.com:5000/team/web # {"$imagepolicy": "apps:web:name"}"#),
        ),
        (
            r#"- reg.example.com:5000/team/web:1.0.0 # {"$imagepolicy": "apps:web"}"#,
            Some(r#"- reg.example.com:5000/team/web:1.1.0 # {"$imagepolicy": "apps:web"}"#),
        ),
        (
            r#"tag: # {"$imagepolicy": "apps:web:tag"}"#,
            Some(r#"tag: 1.1.0 # {"$imagepolicy": "apps:web:tag"}"#),
        ),
        (
            "\t\"image\": x:1 #\t{\"$imagepolicy\":\"apps:web\"}",
            Some("\t\"image\": reg.example.com:5000/team/web:1.1.0 #\t{\"$imagepolicy\":\"apps:web\"}"),
        ),
        // Another policy, another namespace, other suffixes, no marker: untouched.
        (r#"image: a:1 # {"$imagepolicy": "apps:api"}"#, None),
        (r#"image: a:1 # {"$imagepolicy": "other:web"}"#, None),
        (r#"image: a:1 # {"$imagepolicy": "apps:web:label"}"#, None),
        (r#"image: a:1 # {"$imagepolicy": "web"}"#, None),
        (r#"image: a:1 # {"$imagepolicy": "apps:web:tag:x"}"#, None),
        (r#"image: a:1 # {"$imagepolicy": "apps:web"} trailing"#, None),
        (r#"image: a:1 # {"$imagepolicy": 1}"#, None),
        (r#"image: a:1 # $imagepolicy apps:web"#, None),
        // A comment without a blank before it is part of a plain value.
        (r#"image: a:1#{"$imagepolicy": "apps:web"}"#, None),
        // Commented-out lines, document markers, block scalars, flow, anchors, tags: untouched.
        (r#"# image: a:1 # {"$imagepolicy": "apps:web"}"#, None),
        (r#"  #image: a:1 # {"$imagepolicy": "apps:web"}"#, None),
        (r#"--- # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: | # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: [a, b] # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: &x a:1 # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: !!str a:1 # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: "unterminated # {"$imagepolicy": "apps:web"}"#, None),
        // Already at the latest: no change.
        (r#"image: reg.example.com:5000/team/web:1.1.0 # {"$imagepolicy": "apps:web"}"#, None),
        (r#"image: "reg.example.com:5000/team/web:1.1.0" # {"$imagepolicy": "apps:web"}"#, None),
    ];
    for (input, want) in cases {
        let got = edit(input, &latest("1.1.0"));
        assert_eq!(got.as_deref(), *want, "line {input:?}");
    }
}

#[test]
fn plain_values_that_would_not_read_as_strings_are_quoted() {
    for (tag, want) in [
        ("1.10", "\"1.10\""),
        ("20240101", "\"20240101\""),
        ("1e3", "\"1e3\""),
        ("true", "\"true\""),
        ("No", "\"No\""),
        ("0x1f", "\"0x1f\""),
        ("1:20", "\"1:20\""),
        ("1.2.3", "1.2.3"),
        ("v1.10", "v1.10"),
        ("main-abc-1", "main-abc-1"),
        ("inf", "inf"),
    ] {
        let got = edit(r#"newTag: 1.0.0 # {"$imagepolicy": "apps:web:tag"}"#, &latest(tag));
        assert_eq!(got, Some(format!(r#"newTag: {want} # {{"$imagepolicy": "apps:web:tag"}}"#)), "tag {tag}");
    }
    // A quoted value stays quoted even when plain would do; one already quoted is not re-quoted.
    let got = edit(r#"newTag: "1.0" # {"$imagepolicy": "apps:web:tag"}"#, &latest("1.10"));
    assert_eq!(got.as_deref(), Some(r#"newTag: "1.10" # {"$imagepolicy": "apps:web:tag"}"#));
    let got = edit(r#"newTag: '1.0' # {"$imagepolicy": "apps:web:tag"}"#, &latest("it's"));
    assert_eq!(got.as_deref(), Some(r#"newTag: 'it''s' # {"$imagepolicy": "apps:web:tag"}"#));
    let got = edit(r#"newTag: "1.0" # {"$imagepolicy": "apps:web:tag"}"#, &latest("a\"b\\c"));
    assert_eq!(got.as_deref(), Some(r#"newTag: "a\"b\\c" # {"$imagepolicy": "apps:web:tag"}"#));
}

#[test]
fn escaped_quotes_in_an_old_value_are_read_whole() {
    let got = edit(r#"k: "a\"b" # {"$imagepolicy": "apps:web:tag"}"#, &latest("2"));
    assert_eq!(got.as_deref(), Some(r#"k: "2" # {"$imagepolicy": "apps:web:tag"}"#));
    let got = edit(r#"k: 'a''b' # {"$imagepolicy": "apps:web:tag"}"#, &latest("2"));
    assert_eq!(got.as_deref(), Some(r#"k: '2' # {"$imagepolicy": "apps:web:tag"}"#));
}

#[test]
fn pinned_digests_follow_flux() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let l = pinned("1.1.0");
    let full = edit(r#"image: x # {"$imagepolicy": "apps:web"}"#, &l).expect("edited");
    assert!(full.contains(&format!("image: reg.example.com:5000/team/web:1.1.0@{digest} #")), "{full}");
    let tag = edit(r#"newTag: x # {"$imagepolicy": "apps:web:tag"}"#, &l).expect("edited");
    assert!(tag.contains(&format!("newTag: 1.1.0@{digest} #")), "{tag}");
    let d = edit(r#"digest: x # {"$imagepolicy": "apps:web:digest"}"#, &l).expect("edited");
    assert!(d.contains(&format!("digest: {digest} #")), "{d}");
    // Unpinned, a digest marker is left alone.
    assert_eq!(edit(r#"digest: x # {"$imagepolicy": "apps:web:digest"}"#, &latest("1.1.0")), None);
}

#[test]
fn everything_else_in_the_file_stays_byte_for_byte() {
    let input = "# a comment: with $imagepolicy words\r\n---\napiVersion: apps/v1\nkind: Deployment\n\
                 spec:\n  template:\n    spec:\n      containers:\n        - name: web\n          \
                 image: reg.example.com:5000/team/web:1.0.0   # {\"$imagepolicy\": \"apps:web\"}\r\n          \
                 ports: [80]\n---\n# other document\nimages:\n- name: web\n  newTag: \"1.0.0\" # {\"$imagepolicy\": \"apps:web:tag\"}\n  \
                 newName: keep # {\"$imagepolicy\": \"apps:api:name\"}\nno-newline-at-end: x";
    let (out, edits) = edit_text(input.as_bytes(), NS, NAME, &latest("1.1.0")).expect("edited");
    let out = String::from_utf8(out).expect("utf-8");
    let expected =
        input.replace("web:1.0.0   #", "web:1.1.0   #").replace("newTag: \"1.0.0\"", "newTag: \"1.1.0\"");
    assert_eq!(out, expected);
    assert_eq!(edits.len(), 2);
    assert_eq!(edits[0].line, 10);
    assert_eq!(edits[0].old, "reg.example.com:5000/team/web:1.0.0");
    assert_eq!(edits[1], LineEdit { line: 16, field: Field::Tag, old: "1.0.0".into(), new: "1.1.0".into() });
    // Already at the latest: nothing to write.
    assert_eq!(edit_text(out.as_bytes(), NS, NAME, &latest("1.1.0")), None);
}

#[test]
fn markers_parse_exactly() {
    assert_eq!(parse_marker(r#" {"$imagepolicy": "a:b"}"#), Some(("a".into(), "b".into(), Field::Full)));
    assert_eq!(parse_marker(r#"{"$imagepolicy":"a:b:tag"}  "#), Some(("a".into(), "b".into(), Field::Tag)));
    assert_eq!(parse_marker(r#"{"$imagepolicy": "a:b:name"}"#), Some(("a".into(), "b".into(), Field::Name)));
    assert_eq!(
        parse_marker(r#"{"$imagepolicy": "a:b:digest"}"#),
        Some(("a".into(), "b".into(), Field::Digest))
    );
    for bad in [
        r#"{"$imagepolicy": ":b"}"#,
        r#"{"$imagepolicy": "a:"}"#,
        r#"{"$imagepolicy": "a"}"#,
        "{",
        "{}",
        r#"{"$setter": "a:b"}"#,
        "",
    ] {
        assert_eq!(parse_marker(bad), None, "{bad:?}");
    }
}

#[test]
fn commit_lines_name_each_image_once() {
    let l = latest("1.1.0");
    let edits = [
        LineEdit {
            line: 1,
            field: Field::Full,
            old: "reg.example.com:5000/team/web:1.0.0".into(),
            new: l.reference(),
        },
        LineEdit {
            line: 9,
            field: Field::Full,
            old: "reg.example.com:5000/team/web:1.0.0".into(),
            new: l.reference(),
        },
        LineEdit { line: 3, field: Field::Tag, old: "0.9".into(), new: "1.1.0".into() },
        LineEdit { line: 4, field: Field::Full, old: "other/web:2".into(), new: l.reference() },
    ];
    assert_eq!(
        describe_changes(&l, &edits),
        vec![
            "reg.example.com:5000/team/web 1.0.0 -> 1.1.0".to_string(),
            "reg.example.com:5000/team/web 0.9 -> 1.1.0".to_string(),
            "other/web:2 -> reg.example.com:5000/team/web:1.1.0".to_string(),
        ]
    );
}

#[test]
fn references_split_at_the_tag() {
    assert_eq!(split_reference("reg:5000/a/b:1.0"), ("reg:5000/a/b", "1.0"));
    assert_eq!(split_reference("reg:5000/a/b"), ("reg:5000/a/b", "(none)"));
    assert_eq!(split_reference("a/b:1@sha256:ab"), ("a/b", "1@sha256:ab"));
    assert_eq!(split_reference("a/b@sha256:ab"), ("a/b", "@sha256:ab"));
    assert_eq!(split_reference(""), ("", "(none)"));
}

#[test]
fn not_utf8_or_no_marker_is_not_edited() {
    assert_eq!(
        edit_text(b"\xff\xfe image: x # {\"$imagepolicy\": \"apps:web\"}", NS, NAME, &latest("1")),
        None
    );
    assert_eq!(edit_text(b"image: x\n", NS, NAME, &latest("1")), None);
}

/// Hostile input: every prefix and many mutations of a marked file never panic, and the
/// edit touches only the marked line.
#[test]
fn hostile_input_never_panics() {
    let base = "a: \"x\\\" # {\"$imagepolicy\": \"apps:web\"}\n- 'é''' # {\"$imagepolicy\": \"apps:web:tag\"}\n\
                k: é # {\"$imagepolicy\": \"apps:web\"}\r\n\"q\": # {\"$imagepolicy\": \"apps:web:name\"}\n- - v # {\"$imagepolicy\": \"apps:web\"}";
    let l = pinned("1.1.0");
    for end in 0..=base.len() {
        if base.is_char_boundary(end) {
            let _ = edit(&base[..end], &l);
        }
    }
    let specials = ["\"", "'", "#", " ", ":", "-", "\\", "\n", "\r", "{", "}", "\t", "é"];
    for (i, _) in base.char_indices() {
        for s in specials {
            let mut mutated = base.to_string();
            mutated.insert_str(i, s);
            let _ = edit(&mutated, &l);
            let mut removed = base.to_string();
            removed.remove(i);
            let _ = edit(&removed, &l);
        }
    }
    let tags = ["", "\u{0}", "\u{85}", "é\"'", "a: b", "x #y", "-", "'", "\\"];
    for tag in tags {
        if let Some(out) = edit("k: v # {\"$imagepolicy\": \"apps:web:tag\"}\n", &latest(tag)) {
            assert!(out.ends_with("# {\"$imagepolicy\": \"apps:web:tag\"}\n"), "{out:?}");
            assert_eq!(out.lines().count(), 1, "{out:?}");
        }
    }
}

mod properties {
    use proptest::{prelude::*, test_runner::Config};

    use super::*;

    fn config() -> Config {
        Config { cases: 512, failure_persistence: None, ..Config::default() }
    }

    /// Lines made of what the editor looks at, glued at random, plus any characters.
    fn text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => proptest::sample::select(vec![
                "image: ", "- ", "\"", "'", "''", "\\", "#", " # ", ":", ": ", "\n", "\r\n", "\t", "---",
                "{\"$imagepolicy\": \"apps:web\"}", "{\"$imagepolicy\": \"apps:web:tag\"}",
                "{\"$imagepolicy\": \"apps:web:name\"}", "{\"$imagepolicy\": \"apps:web:digest\"}",
                "reg/web:1.0", "|", "[", "&a", "é",
            ])
            .prop_map(str::to_string),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any text: no panic; lines are neither added nor removed; a line without this
        /// policy's marker is kept byte for byte, and an edited line keeps its comment.
        #[test]
        fn edits_touch_only_marked_lines(input in text(), tag in "[a-zA-Z0-9._\"' :#-]{0,12}") {
            let l = Latest { name: "reg/web".into(), tag, digest: Some("sha256:ab".into()) };
            if let Some((out, edits)) = edit_text(input.as_bytes(), "apps", "web", &l) {
                let out = String::from_utf8(out).expect("utf-8 in, utf-8 out");
                let before: Vec<&str> = input.split_inclusive('\n').collect();
                let after: Vec<&str> = out.split_inclusive('\n').collect();
                prop_assert_eq!(before.len(), after.len());
                let edited: Vec<usize> = edits.iter().map(|e| e.line).collect();
                for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                    if edited.contains(&(i + 1)) {
                        prop_assert!(b.contains("$imagepolicy"));
                        let comment = b.rfind(" #").or_else(|| b.rfind("\t#")).map(|at| &b[at..]).unwrap_or("");
                        prop_assert!(a.ends_with(comment), "{:?} -> {:?}", b, a);
                    } else {
                        prop_assert_eq!(b, a);
                    }
                }
            }
        }

        #[test]
        fn markers_and_templates_never_panic(comment in text()) {
            let _ = parse_marker(&comment);
            let _ = crate::images::select::Template::parse(&comment);
            let _ = crate::images::scan::docker_config_auth(comment.as_bytes(), "reg");
        }
    }
}
