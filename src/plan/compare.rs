//! Does the live object already hold every value ferry would set?
//!
//! The desired object is what ferry applies; the live one carries more (defaults, status, fields
//! of other managers). Live matches when every field present in desired has the same value in
//! live. Lists of named objects (containers, env, volumes, ports with names) match element by
//! name, so an element another manager added (a sidecar) is not drift. A difference found here
//! can still be a false alarm (`500m` against `0.5`, a defaulted field inside an element); the
//! planner settles those with a server-side dry run instead of a write.

use serde_json::Value;

/// Where desired and live first disagree, for messages like `spec.replicas: want 3, have 5`.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub path: String,
    pub want: Value,
    pub have: Option<Value>,
}

/// Most characters of a path or a value in a message. Differences land in status conditions
/// and Events; a live value can be any size (a status must not outgrow etcd's object limit)
/// and is not ferry's to print whole.
pub const SHOWN_CHARS: usize = 200;

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let want = self.want.to_string();
        let (path, want) = (bounded(&self.path), bounded(&want));
        match &self.have {
            Some(have) => write!(f, "{path}: want {want}, have {}", bounded(&have.to_string())),
            None => write!(f, "{path}: want {want}, have nothing"),
        }
    }
}

/// `text`, or its first [`SHOWN_CHARS`] characters and a marker saying how long it was.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => text.into(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()).into(),
    }
}

/// The first field where `live` does not hold `desired`'s value, or `None` when it holds all.
/// `metadata` is compared only for labels and annotations: names and namespaces identify the
/// object, everything else there belongs to the API server.
pub fn first_difference(desired: &Value, live: &Value) -> Option<Difference> {
    let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
        return diff_at("", desired, Some(live));
    };
    for (key, want) in d {
        let path = key.to_string();
        if key == "metadata" {
            for sub in ["labels", "annotations"] {
                if let Some(w) = want.get(sub) {
                    let have = &l.get("metadata").and_then(|m| m.get(sub)).cloned().unwrap_or(Value::Null);
                    if let Some(diff) = diff_at(&format!("metadata.{sub}"), w, Some(have)) {
                        return Some(diff);
                    }
                }
            }
            continue;
        }
        if key == "status" {
            continue;
        }
        if let Some(diff) = diff_at(&path, want, l.get(key)) {
            return Some(diff);
        }
    }
    None
}

fn diff_at(path: &str, want: &Value, have: Option<&Value>) -> Option<Difference> {
    let mismatch = || Some(Difference { path: path.to_string(), want: want.clone(), have: have.cloned() });
    let Some(have) = have else {
        // An explicit null in the manifest asks for the field to be absent.
        return if want.is_null() { None } else { mismatch() };
    };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (k, wv) in w {
                if let Some(d) = diff_at(&join(path, k), wv, h.get(k)) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Object(w), Value::Null) if w.is_empty() => None,
        (Value::Array(w), Value::Array(h)) => diff_list(path, w, h),
        (Value::Array(w), Value::Null) if w.is_empty() => None,
        (Value::Number(w), Value::Number(h)) if w.as_f64() == h.as_f64() => None,
        _ if want == have => None,
        _ => mismatch(),
    }
}

fn diff_list(path: &str, want: &[Value], have: &[Value]) -> Option<Difference> {
    let named = |items: &[Value]| items.iter().all(|v| v.get("name").is_some_and(Value::is_string));
    if !want.is_empty() && named(want) && named(have) {
        for w in want {
            let name = &w["name"];
            let element_path = format!("{path}[name={}]", name.as_str().unwrap_or_default());
            match have.iter().find(|h| &h["name"] == name) {
                Some(h) => {
                    if let Some(d) = diff_at(&element_path, w, Some(h)) {
                        return Some(d);
                    }
                }
                None => {
                    return Some(Difference { path: element_path, want: w.clone(), have: None });
                }
            }
        }
        return None;
    }
    if want.len() != have.len() {
        return Some(Difference {
            path: path.to_string(),
            want: Value::Array(want.to_vec()),
            have: Some(Value::Array(have.to_vec())),
        });
    }
    want.iter().zip(have).enumerate().find_map(|(i, (w, h))| diff_at(&format!("{path}[{i}]"), w, Some(h)))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "web", "image": image, "args": ["--port", "80"]}]}}}})
    }

    /// What the API server returns for `deployment(3, "web:1")`: defaults, status, bookkeeping,
    /// and a sidecar injected by someone else.
    fn live() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9",
                            "labels": {"app": "web", "team": "shop"}, "managedFields": []},
               "spec": {"replicas": 3, "revisionHistoryLimit": 10, "template": {"spec": {
                   "dnsPolicy": "ClusterFirst",
                   "containers": [
                       {"name": "istio-proxy", "image": "proxy:1"},
                       {"name": "web", "image": "web:1", "args": ["--port", "80"], "imagePullPolicy": "IfNotPresent"}]}}},
               "status": {"replicas": 3}})
    }

    #[test]
    fn defaults_bookkeeping_and_foreign_elements_are_not_drift() {
        assert_eq!(first_difference(&deployment(3, "web:1"), &live()), None);
    }

    #[test]
    fn a_changed_value_is_named_by_its_path() {
        let d = first_difference(&deployment(5, "web:1"), &live()).unwrap();
        assert_eq!(d.to_string(), "spec.replicas: want 5, have 3");
        let d = first_difference(&deployment(3, "web:2"), &live()).unwrap();
        assert_eq!(d.path, "spec.template.spec.containers[name=web].image");
    }

    #[test]
    fn removed_labels_elements_and_list_changes_are_drift() {
        let mut want = deployment(3, "web:1");
        want["metadata"]["labels"]["tier"] = json!("front");
        assert_eq!(first_difference(&want, &live()).unwrap().path, "metadata.labels.tier");

        let mut want = deployment(3, "web:1");
        want["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log", "image": "log:1"}));
        let d = first_difference(&want, &live()).unwrap();
        assert_eq!((d.path.as_str(), d.have), ("spec.template.spec.containers[name=log]", None));

        let mut want = deployment(3, "web:1");
        want["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--port"]);
        assert_eq!(
            first_difference(&want, &live()).unwrap().path,
            "spec.template.spec.containers[name=web].args"
        );
    }

    /// Issue 19 (low): drift messages printed whole live values into status and Events.
    #[test]
    fn shown_differences_are_bounded() {
        let big = "x".repeat(1 << 20);
        let want = json!({"data": {"k": "small"}});
        let have = json!({"data": {"k": big}});
        let shown = first_difference(&want, &have).unwrap().to_string();
        assert!(shown.len() < 3 * SHOWN_CHARS, "{} bytes", shown.len());
        assert!(shown.starts_with("data.k: want \"small\", have \"xxx"), "{shown}");
        assert!(shown.ends_with(&format!("… ({} bytes in all)", big.len() + 2)), "{shown}");
        let d = Difference { path: "é".repeat(300), want: json!("é".repeat(300)), have: None };
        let shown = d.to_string();
        assert_eq!(shown.matches('…').count(), 2, "{shown}");
        assert!(shown.ends_with("have nothing"));
        let small = Difference { path: "spec.replicas".into(), want: json!(3), have: Some(json!(5)) };
        assert_eq!(small.to_string(), "spec.replicas: want 3, have 5");
    }

    #[test]
    fn numbers_compare_by_value_and_null_means_absent() {
        assert_eq!(first_difference(&json!({"spec": {"x": 1}}), &json!({"spec": {"x": 1.0}})), None);
        assert_eq!(first_difference(&json!({"spec": {"x": null}}), &json!({"spec": {}})), None);
        assert_eq!(first_difference(&json!({"spec": {"x": {}}}), &json!({"spec": {"x": null}})), None);
        assert!(first_difference(&json!({"data": {"k": "v"}}), &json!({})).is_some());
    }
}
