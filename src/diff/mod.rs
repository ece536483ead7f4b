//! `ferry diff`: what syncing a revision would change, for a person reviewing a pull request.
//!
//! The controller's own pipeline produces the objects (render, labels, manifest hash); the
//! cluster says what each would become through a server-side dry run, so fields the API server
//! defaults never show as changes. This module holds the pure part: cleaning objects of noise,
//! redacting Secrets, unified diffs, and the text, markdown and JSON reports.

pub mod live;

use serde::Serialize;
use serde_json::{Value, json};
use similar::TextDiff;

use crate::apply::MANIFEST_HASH;

/// What a sync would do to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Change,
    Prune,
}

/// One object that would change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectDiff {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub action: Action,
    /// Unified diff of the object as YAML, noise left out and Secret values redacted.
    pub diff: String,
}

impl ObjectDiff {
    pub fn title(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// Everything a sync of the revision would change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// What was compared: `main@abc1234`, or the local directory.
    pub source: String,
    pub objects: Vec<ObjectDiff>,
    /// Objects the sync would leave as they are.
    pub unchanged: usize,
    /// Objects no longer in Git that stay because pruning is off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_pruned: Vec<String>,
    /// The progressive rollout the change would start, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The sync waves the objects would be applied in, when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<i32>,
    /// The hooks a sync of the revision would run, in order: `PreSync wave -1: Job shop/migrate-`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.objects.iter().filter(|o| o.action == action).count()
    }

    pub fn has_changes(&self) -> bool {
        !self.objects.is_empty()
    }

    /// `2 to create, 1 to change, 0 to prune; a canary rollout would start (...)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} to create, {} to change, {} to prune, {} unchanged",
            self.source,
            self.count(Action::Create),
            self.count(Action::Change),
            self.count(Action::Prune),
            self.unchanged
        );
        if !self.not_pruned.is_empty() {
            s.push_str(&format!("; {} no longer in Git but kept (prune is off)", self.not_pruned.len()));
        }
        if let Some(rollout) = &self.rollout {
            s.push_str(&format!("; {rollout}"));
        }
        if !self.waves.is_empty() {
            let waves: Vec<String> = self.waves.iter().map(i32::to_string).collect();
            s.push_str(&format!("; in sync waves {}", waves.join(", ")));
        }
        if !self.hooks.is_empty() {
            s.push_str(&format!("; {} hook(s) to run", self.hooks.len()));
        }
        s
    }
}

/// Metadata every write changes, or the API server owns: never part of a diff.
const NOISE: [&str; 7] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionGracePeriodSeconds",
];

/// The object as a person compares it: no status, no server-owned metadata, no ferry hash.
pub fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in NOISE {
            meta.remove(key);
        }
        let annotations = meta.get_mut("annotations").and_then(Value::as_object_mut);
        if let Some(annotations) = annotations {
            annotations.remove(MANIFEST_HASH);
            annotations.remove(crate::rollout::workload::TEMPLATE_HASH);
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            annotations.remove("deployment.kubernetes.io/revision");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

/// Replaces every value of a Secret's `data` and `stringData` on both sides (either may be
/// `Null`, for a created or pruned Secret) with a marker that says only whether it changed.
pub fn redact_secret_values(before: &mut Value, after: &mut Value) {
    for field in ["data", "stringData"] {
        let old = before.get(field).cloned().unwrap_or(Value::Null);
        let new = after.get(field).cloned().unwrap_or(Value::Null);
        // The live side always reads `<redacted>`; the desired side says whether it changed, so
        // a changed value is a changed line and an unchanged one is not.
        if let Some(map) = before.get_mut(field).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                *value = json!("<redacted>");
            }
        }
        if let Some(map) = after.get_mut(field).and_then(Value::as_object_mut) {
            for (key, value) in map.iter_mut() {
                let changed = old.get(key).is_some_and(|was| Some(was) != new.get(key));
                *value = json!(if changed { "<redacted (changed)>" } else { "<redacted>" });
            }
        }
    }
}

/// Replaces every value outside `apiVersion`, `kind` and `metadata` on both sides with a
/// marker that says only whether it changed: for objects decrypted from SOPS documents, whose
/// every value may be a secret.
pub fn redact_all_values(before: &mut Value, after: &mut Value) {
    let old = before.clone();
    redact_leaves(before, None, true);
    redact_leaves(after, Some(&old), true);
}

fn redact_leaves(value: &mut Value, old: Option<&Value>, top: bool) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if top && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                redact_leaves(v, old.map(|o| o.get(key).unwrap_or(&Value::Null)), false);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                redact_leaves(v, old.map(|o| o.get(i).unwrap_or(&Value::Null)), false);
            }
        }
        Value::Null => {}
        leaf => {
            let changed = old.is_some_and(|o| !o.is_null() && o != leaf);
            *leaf = json!(if changed { "<redacted (changed)>" } else { "<redacted>" });
        }
    }
}

/// YAML of an object for diffing; `Null` (absent) is empty.
fn yaml(v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("<not printable: {e}>\n"))
}

/// A unified diff (3 lines of context) between two objects, labelled `live` and `desired`;
/// empty when they print the same.
pub fn unified(before: &Value, after: &Value, title: &str) -> String {
    let (a, b) = (yaml(before), yaml(after));
    if a == b {
        return String::new();
    }
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{title}"), &format!("desired/{title}"))
        .to_string()
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Markdown,
    Json,
}

/// The report in `format`.
pub fn report(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => {
            let mut out = format!("{}\n", plan.summary());
            for o in &plan.objects {
                out.push_str(&format!("\n=== {} ({:?})\n{}", o.title(), o.action, o.diff));
            }
            for name in &plan.not_pruned {
                out.push_str(&format!("\n=== {name}: no longer in Git, kept (prune is off)\n"));
            }
            if !plan.hooks.is_empty() {
                out.push_str("\n=== hooks, in the order a sync runs them\n");
                plan.hooks.iter().for_each(|h| out.push_str(&format!("  {h}\n")));
            }
            out
        }
        Format::Markdown => {
            let mut out = format!("### ferry diff\n\n**{}**\n", plan.summary());
            for o in &plan.objects {
                let action = match o.action {
                    Action::Create => "create",
                    Action::Change => "change",
                    Action::Prune => "prune",
                };
                out.push_str(&format!(
                    "\n<details><summary>{action} <code>{}</code></summary>\n\n```diff\n{}```\n\n</details>\n",
                    o.title(),
                    o.diff
                ));
            }
            for name in &plan.not_pruned {
                out.push_str(&format!("\n- `{name}`: no longer in Git, kept (prune is off)\n"));
            }
            if !plan.hooks.is_empty() {
                out.push_str("\nHooks, in the order a sync runs them:\n\n");
                plan.hooks.iter().for_each(|h| out.push_str(&format!("- `{h}`\n")));
            }
            out
        }
        Format::Json => {
            let mut v = serde_json::to_value(plan).expect("a plan serializes");
            v["summary"] = json!({
                "create": plan.count(Action::Create),
                "change": plan.count(Action::Change),
                "prune": plan.count(Action::Prune),
                "unchanged": plan.unchanged,
                "text": plan.summary(),
            });
            format!("{}\n", serde_json::to_string_pretty(&v).expect("JSON values serialize"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_left_out_and_secret_values_never_show() {
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "resourceVersion": "7", "uid": "u", "managedFields": [],
                         "annotations": {MANIFEST_HASH: "old"}},
            "data": {"password": "c2VjcmV0", "user": "YWRtaW4="}});
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {MANIFEST_HASH: "new"}},
            "data": {"password": "bmV3c2VjcmV0", "user": "YWRtaW4="}});
        let (mut a, mut b) = (comparable(&live), comparable(&desired));
        redact_secret_values(&mut a, &mut b);
        let diff = unified(&a, &b, "Secret/db");
        assert!(diff.contains("-  password: <redacted>"), "{diff}");
        assert!(diff.contains("+  password: <redacted (changed)>"), "{diff}");
        assert!(
            !diff.lines().any(|l| (l.starts_with('+') || l.starts_with('-')) && l.contains("user")),
            "an unchanged key is context at most: {diff}"
        );
        for secret in
            ["c2VjcmV0", "bmV3c2VjcmV0", "YWRtaW4=", "resourceVersion", "managedFields", "ferry.dev"]
        {
            assert!(!diff.contains(secret), "{secret} in {diff}");
        }
    }

    #[test]
    fn waves_and_hooks_are_in_every_report() {
        let plan = Plan {
            source: "main@abc1234".into(),
            waves: vec![-1, 0, 2],
            hooks: vec!["PreSync wave -1: Job shop/migrate-".into()],
            ..Plan::default()
        };
        assert!(plan.summary().ends_with("; in sync waves -1, 0, 2; 1 hook(s) to run"), "{}", plan.summary());
        for format in [Format::Text, Format::Markdown, Format::Json] {
            let out = report(&plan, format);
            assert!(out.contains("PreSync wave -1: Job shop/migrate-"), "{out}");
        }
    }

    #[test]
    fn identical_objects_have_no_diff_and_reports_count_actions() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        assert_eq!(unified(&obj, &obj, "ConfigMap/a"), "");
        let created = unified(&Value::Null, &obj, "ConfigMap/a");
        assert!(
            created.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count() >= 3,
            "{created}"
        );
        let plan = Plan {
            source: "main@abc1234".into(),
            objects: vec![ObjectDiff {
                kind: "ConfigMap".into(),
                namespace: Some("team".into()),
                name: "a".into(),
                action: Action::Create,
                diff: created.clone(),
            }],
            unchanged: 2,
            not_pruned: vec![],
            rollout: Some("a canary rollout of Deployment web would start: nginx:1.0 -> nginx:1.1".into()),
            ..Plan::default()
        };
        assert_eq!(
            plan.summary(),
            "main@abc1234: 1 to create, 0 to change, 0 to prune, 2 unchanged; a canary rollout of Deployment web would start: nginx:1.0 -> nginx:1.1"
        );
        let md = report(&plan, Format::Markdown);
        assert!(md.contains("<details><summary>create <code>ConfigMap team/a</code></summary>"), "{md}");
        assert!(md.contains("```diff\n"), "{md}");
        let js: Value = serde_json::from_str(&report(&plan, Format::Json)).unwrap();
        assert_eq!(js["summary"]["create"], 1);
        assert_eq!(js["objects"][0]["action"], "create");
        assert_eq!(js["rollout"], plan.rollout.clone().unwrap());
    }
}
