//! The report as YAML: one document per ferry object, preceded by comments naming the upstream
//! object (and the sources joined into it) and every field that did not map, and why.
//!
//! Comment text comes from the input (names, field paths), so control characters are escaped:
//! a newline in a key must not end the comment and inject YAML.

use std::fmt::Write;

use super::{Imported, Output, Report};

/// Every comment line starts with this, so a person (or grep) finds them all.
pub const PREFIX: &str = "# ferry import:";

pub(super) fn yaml(report: &Report) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for imported in &report.imported {
        out.push_str("---\n");
        comments(imported, &mut out);
        match &imported.output {
            Some(Output::Application(app)) => out.push_str(&serde_saphyr::to_string(app)?),
            Some(Output::ApplicationSet(set)) => out.push_str(&serde_saphyr::to_string(set)?),
            None => {}
        }
    }
    Ok(out)
}

fn comments(imported: &Imported, out: &mut String) {
    let from = one_line(&imported.from.to_string());
    let _ = match imported.joined.as_slice() {
        [] => writeln!(out, "{PREFIX} from {from}"),
        joined => {
            let joined: Vec<String> = joined.iter().map(|j| one_line(&j.to_string())).collect();
            writeln!(out, "{PREFIX} from {from} with {}", joined.join(", "))
        }
    };
    for note in &imported.notes {
        let _ = writeln!(out, "{PREFIX} {} does not map: {}", one_line(&note.field), one_line(&note.why));
    }
}

/// Text safe inside a one-line YAML comment.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Kind, Note, ObjectRef};

    #[test]
    fn notes_are_comments_and_cannot_inject_yaml() {
        let report = Report {
            imported: vec![Imported {
                from: ObjectRef { kind: Kind::GitRepository, namespace: Some("n".into()), name: "a".into() },
                joined: Vec::new(),
                output: None,
                notes: vec![Note { field: "spec.x\nkind: Secret".into(), why: "because".into() }],
            }],
        };
        let text = yaml(&report).unwrap();
        assert_eq!(
            text,
            "---\n# ferry import: from GitRepository n/a\n# ferry import: spec.x\\nkind: Secret does not map: because\n"
        );
        assert!(text.lines().all(|l| l == "---" || l.starts_with('#')));
    }
}
