//! Which server-side apply conflicts ferry may force.
//!
//! ferry forces a conflict only for fields it set before: a person's `kubectl edit` of a field
//! that Git owns is drift and is reverted, but a field another controller owns and ferry never
//! set (an HPA's replicas when Git newly adds them) is not silently taken over.
//!
//! The API server names conflicting fields in its field-path syntax:
//! `.spec.template.spec.containers[name="web"].image`, `.spec.ports[port=80,protocol="TCP"]`,
//! `.spec.finalizers[="a"]`, `.items[3]`. Field names may themselves contain dots
//! (`.metadata.labels.app.kubernetes.io/name`), so names are matched against the keys that exist.

use serde_json::Value;

use super::ssa::FieldConflict;

/// Whether every conflicting field is a field of `previous`, the manifest ferry applied before.
pub fn all_previously_set(conflicts: &[FieldConflict], previous: &Value) -> bool {
    !conflicts.is_empty() && conflicts.iter().all(|c| field_in(previous, &c.field))
}

/// Whether the field at `path` (server-side apply syntax) exists in `value`.
pub fn field_in(value: &Value, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    if let Some(body) = path.strip_prefix('.') {
        let Value::Object(map) = value else { return false };
        // Try every split point: the longest key that exists and lets the rest match.
        let ends = body.char_indices().filter(|(_, c)| *c == '.' || *c == '[').map(|(i, _)| i);
        return ends
            .chain([body.len()])
            .any(|end| map.get(&body[..end]).is_some_and(|child| field_in(child, &body[end..])));
    }
    if path.starts_with('[') {
        let Some(close) = closing_bracket(path) else { return false };
        let selector = &path[1..close];
        let rest = &path[close + 1..];
        let Value::Array(items) = value else { return false };
        if let Ok(index) = selector.parse::<usize>() {
            return items.get(index).is_some_and(|item| field_in(item, rest));
        }
        if let Some(literal) = selector.strip_prefix('=') {
            let Ok(wanted) = serde_json::from_str::<Value>(literal) else { return false };
            return items.iter().any(|item| same_scalar(item, &wanted) && field_in(item, rest));
        }
        let keys: Vec<(&str, Value)> = split_outside_quotes(selector, ',')
            .into_iter()
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k, serde_json::from_str(v).ok()?))
            })
            .collect();
        return !keys.is_empty()
            && items.iter().any(|item| {
                keys.iter().all(|(k, v)| item.get(*k).is_some_and(|x| same_scalar(x, v)))
                    && field_in(item, rest)
            });
    }
    false
}

/// Numbers compare by value (`80` and `80.0`), everything else exactly.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The index of the `]` closing the selector that opens `path`, skipping quoted strings.
fn closing_bracket(path: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in path.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                "finalizers": ["a", "b"]
            }
        })
    }

    #[test]
    fn fields_are_found_through_maps_keyed_lists_and_dotted_names() {
        let d = deployment();
        assert!(field_in(&d, ".spec.replicas"));
        assert!(field_in(&d, ".spec.template.spec.containers[name=\"web\"].image"));
        assert!(!field_in(&d, ".spec.template.spec.containers[name=\"sidecar\"].image"));
        assert!(field_in(&d, ".metadata.labels.app.kubernetes.io/name"));
        assert!(field_in(&d, ".spec.ports[port=80,protocol=\"TCP\"].targetPort"));
        assert!(!field_in(&d, ".spec.ports[port=443,protocol=\"TCP\"].targetPort"));
        assert!(field_in(&d, ".spec.finalizers[=\"b\"]"));
        assert!(field_in(&d, ".spec.template.spec.containers[0].name"));
        assert!(!field_in(&d, ".spec.paused"));
        assert!(!field_in(&d, ".spec.replicas.more"));
    }

    #[test]
    fn only_conflicts_on_fields_ferry_set_before_may_be_forced() {
        let d = deployment();
        let c = |field: &str| FieldConflict { manager: "kubectl-edit".into(), field: field.into() };
        assert!(all_previously_set(&[c(".spec.replicas")], &d));
        assert!(!all_previously_set(&[c(".spec.replicas"), c(".spec.paused")], &d));
        assert!(!all_previously_set(&[], &d));
    }
}
