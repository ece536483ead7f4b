//! `spec.ignoreDifferences`: fields ferry leaves alone once an object exists, as Argo CD does
//! with `RespectIgnoreDifferences=true`. They are not drift, and an apply of an existing object
//! carries their live values (or leaves them out when the live object has none), so ferry never
//! resets them. Live values rather than leaving the fields out: a field that ferry alone owns
//! would be removed (and defaulted) by server-side apply if ferry stopped sending it.
//!
//! Fields are named by JSON pointers (RFC 6901) or by field manager: every field a named
//! manager owns in the live object's `metadata.managedFields` (its `fieldsV1` set: `f:` fields,
//! `k:` keyed list items, `v:` set values, `i:` indexes). Both become [`FieldPath`]s, located
//! in each document separately, so a keyed list item is found wherever it sits.
//!
//! The identity of an object and ferry's own labels and manifest hash are never ignored.
//! Pure functions over JSON values.

use serde_json::{Map, Value};

use crate::api::IgnoreDifference;

/// One step of a path to a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A map key, or (in a list) an index written as a number (JSON pointers).
    Field(String),
    /// The list item whose fields hold these values (`k:{"name":"web"}`).
    Key(Map<String, Value>),
    /// The list item equal to this value (`v:"a"`).
    Item(Value),
    /// A list index (`i:3`).
    Index(usize),
}

/// A path to a field, independent of where it sits in one document.
pub type FieldPath = Vec<Step>;

/// Where a path leads in one document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Loc {
    Key(String),
    Index(usize),
}

/// How deep a `fieldsV1` set is read: deeper than any real object, a bound for hostile input.
const MAX_DEPTH: usize = 64;

/// The entries of `rules` that apply to the object (group, kind, and name and namespace when
/// the entry names them).
pub fn matching<'a>(
    rules: &'a [IgnoreDifference],
    group: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Vec<&'a IgnoreDifference> {
    rules
        .iter()
        .filter(|r| r.group == group && r.kind == kind)
        .filter(|r| r.name.as_deref().is_none_or(|n| n == name))
        .filter(|r| r.namespace.is_none() || r.namespace.as_deref() == namespace)
        .collect()
}

/// The fields `rules` ignore in `live`: their JSON pointers, and every field the named managers
/// own in its managedFields.
pub fn ignored_paths(rules: &[&IgnoreDifference], live: &Value) -> Vec<FieldPath> {
    let mut paths: Vec<FieldPath> =
        rules.iter().flat_map(|r| r.json_pointers.iter()).map(|p| pointer(p)).collect();
    let managers: Vec<&str> =
        rules.iter().flat_map(|r| r.managed_fields_managers.iter()).map(String::as_str).collect();
    if !managers.is_empty() {
        paths.extend(owned_by(live, &managers));
    }
    paths.retain(|p| !protected(p));
    paths
}

/// `/spec/template/0/a~1b` -> spec, template, 0, a/b. The empty pointer names no field.
pub fn pointer(text: &str) -> FieldPath {
    text.split('/').skip(1).map(|t| Step::Field(t.replace("~1", "/").replace("~0", "~"))).collect()
}

/// Every field the managers own in `live`'s managedFields.
pub fn owned_by(live: &Value, managers: &[&str]) -> Vec<FieldPath> {
    let Some(entries) = live.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let manager = entry.get("manager").and_then(Value::as_str).unwrap_or_default();
        if managers.contains(&manager)
            && let Some(set) = entry.get("fieldsV1")
        {
            fields_v1(set, &mut Vec::new(), &mut out);
        }
    }
    out
}

/// The leaves of a `fieldsV1` set (entries with no members); `.` marks a node's own existence,
/// which names no field of its own.
fn fields_v1(set: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
    let Some(members) = set.as_object() else { return };
    if prefix.len() > MAX_DEPTH {
        return;
    }
    for (key, child) in members {
        let Some(step) = step_of(key) else { continue };
        prefix.push(step);
        match child.as_object() {
            Some(m) if m.is_empty() => out.push(prefix.clone()),
            Some(_) => fields_v1(child, prefix, out),
            None => {}
        }
        prefix.pop();
    }
}

/// One `fieldsV1` key as a step; `.` and anything unknown are none.
fn step_of(key: &str) -> Option<Step> {
    let (kind, rest) = key.split_once(':')?;
    match kind {
        "f" => Some(Step::Field(rest.to_string())),
        "k" => match serde_json::from_str(rest).ok()? {
            Value::Object(map) => Some(Step::Key(map)),
            _ => None,
        },
        "v" => Some(Step::Item(serde_json::from_str(rest).ok()?)),
        "i" => Some(Step::Index(rest.parse().ok()?)),
        _ => None,
    }
}

/// The object's identity and ferry's own bookkeeping are never left to anyone else.
fn protected(path: &FieldPath) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(Step::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    let ferrys = |k: &str| k.starts_with("ferry.dev/") || k == "app.kubernetes.io/managed-by";
    match (field(0), field(1), field(2)) {
        (None, _, _) if path.is_empty() => true,
        (Some("apiVersion" | "kind"), _, _) => true,
        (Some("metadata"), None, _) => true,
        (Some("metadata"), Some("name" | "namespace" | "managedFields"), _) => true,
        (Some("metadata"), Some("labels" | "annotations"), Some(k)) => ferrys(k),
        (Some("metadata"), Some("labels" | "annotations"), None) => true,
        _ => false,
    }
}

/// Where `path` leads in `doc`, `None` when the field is not there.
fn locate(doc: &Value, path: &[Step]) -> Option<Vec<Loc>> {
    let mut at = doc;
    let mut locs = Vec::with_capacity(path.len());
    for step in path {
        let loc = match (step, at) {
            (Step::Field(f), Value::Object(m)) => m.contains_key(f).then(|| Loc::Key(f.clone()))?,
            (Step::Field(f), Value::Array(_)) => Loc::Index(f.parse().ok()?),
            (Step::Index(i), Value::Array(_)) => Loc::Index(*i),
            (Step::Key(k), Value::Array(items)) => Loc::Index(
                items
                    .iter()
                    .position(|item| k.iter().all(|(f, v)| item.get(f).is_some_and(|x| same(x, v))))?,
            ),
            (Step::Item(v), Value::Array(items)) => Loc::Index(items.iter().position(|item| same(item, v))?),
            _ => return None,
        };
        at = child(at, &loc)?;
        locs.push(loc);
    }
    Some(locs)
}

/// Numbers compare by value (`80` and `80.0`), everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn child<'a>(v: &'a Value, loc: &Loc) -> Option<&'a Value> {
    match loc {
        Loc::Key(k) => v.get(k),
        Loc::Index(i) => v.get(i),
    }
}

fn child_mut<'a>(v: &'a mut Value, loc: &Loc) -> Option<&'a mut Value> {
    match loc {
        Loc::Key(k) => v.get_mut(k),
        Loc::Index(i) => v.get_mut(i),
    }
}

fn at_mut<'a>(doc: &'a mut Value, locs: &[Loc]) -> Option<&'a mut Value> {
    locs.iter().try_fold(doc, |v, loc| child_mut(v, loc))
}

/// Removes the fields at `locs`, deepest and last first so that earlier ones stay valid.
fn remove_all(doc: &mut Value, mut locs: Vec<Vec<Loc>>) {
    locs.sort();
    locs.dedup();
    for loc in locs.iter().rev() {
        let Some((last, parent)) = loc.split_last() else { continue };
        match (at_mut(doc, parent), last) {
            (Some(Value::Object(m)), Loc::Key(k)) => {
                m.remove(k);
            }
            (Some(Value::Array(items)), Loc::Index(i)) if *i < items.len() => {
                items.remove(*i);
            }
            _ => {}
        }
    }
}

/// `doc` without the fields at `paths`: what the drift comparison sees.
pub fn strip(doc: &mut Value, paths: &[FieldPath]) {
    let locs = paths.iter().filter_map(|p| locate(doc, p)).collect();
    remove_all(doc, locs);
}

/// `body` (what ferry would apply) with the live value of every field at `paths`, and without
/// those the live object lacks: what ferry applies to an object that exists.
pub fn keep_live(body: &mut Value, live: &Value, paths: &[FieldPath]) {
    let mut absent = Vec::new();
    for path in paths {
        let have = locate(live, path).and_then(|l| l.iter().try_fold(live, |v, loc| child(v, loc)));
        match (have, locate(body, path)) {
            (Some(v), Some(loc)) => {
                if let Some(slot) = at_mut(body, &loc) {
                    *slot = v.clone();
                }
            }
            (Some(v), None) => insert(body, path, v),
            (None, Some(loc)) => absent.push(loc),
            (None, None) => {}
        }
    }
    remove_all(body, absent);
}

/// Sets a map field the body lacks, when its parent exists in the body.
fn insert(body: &mut Value, path: &[Step], value: &Value) {
    let Some((Step::Field(name), parent)) = path.split_last() else { return };
    let Some(loc) = locate(body, parent) else { return };
    if let Some(Value::Object(m)) = at_mut(body, &loc) {
        m.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(kind: &str, pointers: &[&str], managers: &[&str]) -> IgnoreDifference {
        IgnoreDifference {
            group: "apps".into(),
            kind: kind.into(),
            json_pointers: pointers.iter().map(|p| p.to_string()).collect(),
            managed_fields_managers: managers.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop",
                "labels": {"ferry.dev/app-name": "a", "team": "x"},
                "managedFields": [
                    {"manager": "ferry", "operation": "Apply", "fieldsV1": {
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                    {"manager": "hpa-test", "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {".": {}, "f:team": {}, "f:ferry.dev/app-name": {}}},
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}}}}}
                ]
            },
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "side", "image": "busybox"}, {"name": "web", "image": image}
            ]}}}
        })
    }

    #[test]
    fn rules_match_by_group_kind_and_optionally_name_and_namespace() {
        let mut named = rule("Deployment", &["/spec/replicas"], &[]);
        named.name = Some("web".into());
        named.namespace = Some("shop".into());
        let rules = [rule("Deployment", &["/a"], &[]), named, rule("StatefulSet", &["/a"], &[])];
        assert_eq!(matching(&rules, "apps", "Deployment", Some("shop"), "web").len(), 2);
        assert_eq!(matching(&rules, "apps", "Deployment", Some("other"), "web").len(), 1);
        assert_eq!(matching(&rules, "", "Deployment", Some("shop"), "web").len(), 0, "the group counts");
    }

    #[test]
    fn json_pointers_unescape_and_index_lists() {
        assert_eq!(
            pointer("/metadata/annotations/a~1b~0c"),
            vec![
                Step::Field("metadata".into()),
                Step::Field("annotations".into()),
                Step::Field("a/b~c".into())
            ]
        );
        let mut d = deployment(3, "web:1");
        strip(&mut d, &[pointer("/spec/template/spec/containers/0/image"), pointer("/spec/nothing/here")]);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0], json!({"name": "side"}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["image"], "web:1");
    }

    #[test]
    fn a_managers_fields_are_the_leaves_of_its_fields_v1_set() {
        let d = deployment(3, "web:1");
        let paths = owned_by(&d, &["hpa-test"]);
        let key = Step::Key(serde_json::from_str(r#"{"name":"web"}"#).unwrap());
        let f = |s: &str| Step::Field(s.into());
        assert!(paths.contains(&vec![f("spec"), f("replicas")]), "{paths:?}");
        assert!(paths.contains(&vec![f("spec"), f("template"), f("spec"), f("containers"), key, f("image")]));
        assert!(paths.contains(&vec![f("metadata"), f("labels"), f("team")]));
        assert_eq!(paths.len(), 4, "`.` names no field: {paths:?}");
        assert!(owned_by(&d, &["someone-else"]).is_empty());
        assert!(owned_by(&json!({"metadata": {"managedFields": "garbage"}}), &["hpa-test"]).is_empty());
    }

    #[test]
    fn ferrys_labels_and_the_objects_identity_are_never_ignored() {
        let d = deployment(3, "web:1");
        let r = rule("Deployment", &["/metadata/name", "/kind", "/metadata/labels", ""], &["hpa-test"]);
        let paths = ignored_paths(&[&r], &d);
        let f = |s: &str| Step::Field(s.into());
        assert!(!paths.iter().any(|p| p.get(1) == Some(&f("name")) || p.first() == Some(&f("kind"))));
        assert!(!paths.contains(&vec![f("metadata"), f("labels"), f("ferry.dev/app-name")]));
        assert!(!paths.contains(&vec![f("metadata"), f("labels")]) && !paths.contains(&vec![]));
        assert!(paths.contains(&vec![f("metadata"), f("labels"), f("team")]));
    }

    #[test]
    fn stripping_finds_keyed_items_wherever_they_sit() {
        let r = rule("Deployment", &[], &["hpa-test"]);
        let live = deployment(5, "web:2");
        let paths = ignored_paths(&[&r], &live);
        // Git lists the containers in another order and wants other values.
        let mut want = deployment(3, "web:1");
        want["spec"]["template"]["spec"]["containers"] = json!([{"name": "web", "image": "web:1"}]);
        let mut have = live.clone();
        strip(&mut want, &paths);
        strip(&mut have, &paths);
        assert_eq!(want["spec"].get("replicas"), None);
        assert_eq!(want["spec"]["template"]["spec"]["containers"], json!([{"name": "web"}]));
        assert_eq!(have["spec"]["template"]["spec"]["containers"][1], json!({"name": "web"}));
        assert_eq!(want["metadata"]["labels"]["ferry.dev/app-name"], "a");
    }

    #[test]
    fn hostile_managed_fields_and_pointers_never_panic() {
        let mut deep = json!({});
        for _ in 0..200 {
            deep = json!({ "f:a": deep });
        }
        let odd_sets =
            json!({"k:not json": {}, "k:[1]": {}, "v:": {}, "i:-1": {}, "f:spec": "x", "": {}, "f": {}});
        let lives = [
            json!({"metadata": {"managedFields": [{"manager": "m", "fieldsV1": odd_sets}]}, "spec": [1, 2]}),
            json!({"metadata": {"managedFields": [null, 3, {"manager": 5}, {"manager": "m", "fieldsV1": deep}]}}),
            json!(null),
            json!([1, {"a": 2}]),
        ];
        let pointers =
            ["/", "//", "/spec/~2", "/spec/1/-", "/spec/99", "/spec/0/x", "/metadata/managedFields/0"];
        for live in &lives {
            let mut paths = owned_by(live, &["m"]);
            assert!(paths.iter().all(|p| p.len() <= MAX_DEPTH + 1), "depth is bounded");
            paths.extend(pointers.iter().map(|p| pointer(p)));
            let paths: Vec<FieldPath> = paths.into_iter().filter(|p| !protected(p)).collect();
            let (mut stripped, mut body) = (live.clone(), json!({"spec": [0], "metadata": {}}));
            strip(&mut stripped, &paths);
            keep_live(&mut body, live, &paths);
        }
    }

    #[test]
    fn an_apply_keeps_the_live_values_of_ignored_fields() {
        let live = deployment(5, "web:2");
        let mut body = deployment(3, "web:1");
        body["metadata"]["labels"].as_object_mut().unwrap().remove("team");
        body["spec"]["paused"] = json!(true);
        let mut paths = ignored_paths(&[&rule("Deployment", &["/spec/paused"], &["hpa-test"])], &live);
        paths.push(pointer("/spec/absent/everywhere"));
        keep_live(&mut body, &live, &paths);
        assert_eq!(body["spec"]["replicas"], 5);
        assert_eq!(body["spec"]["template"]["spec"]["containers"][1]["image"], "web:2");
        assert_eq!(body["metadata"]["labels"]["team"], "x", "inserted where the body lacked it");
        assert_eq!(body["spec"].get("paused"), None, "the live object has none: left out");
    }
}
