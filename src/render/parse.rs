//! Text -> Kubernetes objects: multi-document YAML (serde-saphyr) and JSON, `List` flattening,
//! and the fields every object must have.
//!
//! Documents are read into JSON values first, the way Kubernetes' own YAML decoder does it: map
//! keys that YAML types as numbers or booleans (`9000: default/svc:80` in a ConfigMap) become
//! strings instead of failing the whole file.

use std::fmt;

use kube::api::DynamicObject;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{
    error::{Origin, RenderError},
    sops::{self, AgeKeys, Integrity},
};

/// An object and where it came from, kept together until the end of rendering so that every
/// later check (duplicates, image policy) can name the file.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub origin: Origin,
    pub object: DynamicObject,
}

/// Whether a file name is one the plain-directory renderer reads.
pub fn is_manifest_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")
}

/// Parses one file, choosing YAML or JSON by its extension. `file` is the name shown in errors.
/// SOPS-encrypted documents fail: see [`parse_file_with_keys`].
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    parse_file_with_keys(file, text, None)
}

/// [`parse_file`], decrypting SOPS-encrypted documents with `keys`.
pub fn parse_file_with_keys(
    file: &str,
    text: &str,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
    if file.to_ascii_lowercase().ends_with(".json") {
        parse_json_with_keys(file, text, keys)
    } else {
        parse_yaml_with_keys(file, text, keys)
    }
}

/// Parses a JSON file holding one object or a `List`. A SOPS-encrypted document fails (no
/// keys): see [`parse_json_with_keys`].
pub fn parse_json(file: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    parse_json_with_keys(file, text, None)
}

/// [`parse_json`], decrypting a SOPS-encrypted document with `keys`.
pub fn parse_json_with_keys(
    file: &str,
    text: &str,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| RenderError::InvalidYaml {
        origin: Origin { line: Some(e.line() as u64), ..Origin::new(file, 1) },
        cause: e.to_string(),
    })?;
    let mut docs = vec![(Origin::new(file, 1), value)];
    decrypt(text, sops::Format::Json, &mut docs, keys, Integrity::WholeFile)?;
    for (origin, value) in docs {
        push_objects(origin, value, &mut out)?;
    }
    Ok(out)
}

/// Parses a stream of YAML documents. Empty documents and documents holding only comments are
/// skipped; document numbers in errors count every `---`, as a person reading the file would.
/// SOPS-encrypted documents fail (no keys): see [`parse_yaml_with_keys`].
pub fn parse_yaml(file: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    parse_yaml_with_keys(file, text, None)
}

/// [`parse_yaml`], decrypting SOPS-encrypted documents with `keys`. Every renderer's output
/// goes through here, so nothing encrypted is ever applied or diffed.
pub fn parse_yaml_with_keys(
    file: &str,
    text: &str,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
    parse_yaml_as(file, text, keys, Integrity::WholeFile)
}

/// [`parse_yaml_with_keys`] for a renderer's output (kustomize, helm), which prints documents
/// again in its own key order: SOPS MACs cannot be verified there, values still are (see
/// [`Integrity::RendererOutput`]).
pub(crate) fn parse_rendered_yaml(
    file: &str,
    text: &str,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
    parse_yaml_as(file, text, keys, Integrity::RendererOutput)
}

fn parse_yaml_as(
    file: &str,
    text: &str,
    keys: Option<&AgeKeys>,
    integrity: Integrity,
) -> Result<Vec<Manifest>, RenderError> {
    let markers = DocumentMarkers::scan(text);
    let docs: Vec<serde_saphyr::Spanned<Loose>> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
        RenderError::InvalidYaml {
            origin: Origin { line, ..Origin::new(file, line.map_or(1, |l| markers.document_at(l))) },
            cause: one_line(&e.without_snippet().to_string()),
        }
    })?;
    let mut values: Vec<(Origin, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let line = Some(doc.referenced.line()).filter(|l| *l > 0);
            // Without a position (never seen, but the API allows it) fall back to counting
            // non-empty documents.
            let index = line.map_or(i + 1, |l| markers.document_at(l));
            (Origin { line, ..Origin::new(file, index) }, doc.value.0)
        })
        .collect();
    decrypt(text, sops::Format::Yaml, &mut values, keys, integrity)?;
    let mut out = Vec::with_capacity(values.len());
    for (origin, value) in values {
        push_objects(origin, value, &mut out)?;
    }
    Ok(out)
}

/// serde-saphyr's default budget is made for configuration files: 1,024 documents and 250,000
/// nodes per input. A renderer's output is one input holding the whole application (kustomize
/// builds of operators run to thousands of documents and megabytes of CRD schema), so the size
/// limits are raised, but only so far: the text is an Application author's, and the values
/// built from it live in ferry's memory. Each limit is about ten times the largest render
/// [`super::DEFAULT_MAX_RENDER_BYTES`] lets through in practice, and together they keep one
/// parse to a few hundred MiB at worst. The alias limits, which stop "billion laughs"
/// expansion, stay as they are. Documented in the README ("Render limits").
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            max_events: 2 * MAX_NODES,
            max_depth: 256,
            max_total_scalar_bytes: MAX_SCALAR_BYTES,
        },
    }
}

/// Most YAML documents in one input.
pub const MAX_DOCUMENTS: usize = 100_000;
/// Most nodes (mappings, sequences, scalars) in one input.
pub const MAX_NODES: usize = 4_000_000;
/// Most bytes of scalars in one input.
pub const MAX_SCALAR_BYTES: usize = 64 * 1024 * 1024;

/// Line numbers of `---` document markers, to turn an error's line into a document number.
struct DocumentMarkers {
    lines: Vec<u64>,
    /// The stream starts with a document that has no `---` before it.
    implicit_first: bool,
}

impl DocumentMarkers {
    fn scan(text: &str) -> Self {
        let mut lines = Vec::new();
        let mut implicit_first = false;
        for (i, line) in text.lines().enumerate() {
            // A marker is `---` at column 0 followed by nothing or a space; YAML forbids that
            // sequence inside scalars, so no content line is miscounted.
            let is_marker =
                line.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
            if is_marker {
                lines.push(i as u64 + 1);
            } else if lines.is_empty() && !implicit_first {
                let t = line.trim_start();
                implicit_first = !(t.is_empty() || t.starts_with('#') || t.starts_with('%'));
            }
        }
        DocumentMarkers { lines, implicit_first }
    }

    /// 1-based document number of the content at `line`.
    fn document_at(&self, line: u64) -> usize {
        // A marker on the same line as content (`--- {a: 1}`) opens that content's document.
        let before = self.lines.partition_point(|m| *m <= line);
        (before + usize::from(self.implicit_first)).max(1)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Appends the object in `value`, or every item of a `List`, checking the required fields.
fn push_objects(origin: Origin, value: Value, out: &mut Vec<Manifest>) -> Result<(), RenderError> {
    let Value::Object(map) = value else {
        return Err(RenderError::InvalidObject {
            origin,
            cause: format!("expected a mapping, found {}", kind_of(&value)),
        });
    };
    if is_list(&map) {
        let Some(Value::Array(items)) = map.get("items") else { unreachable!("is_list checked items") };
        for (i, item) in items.iter().enumerate() {
            let origin = Origin { item: Some(i), ..origin.clone() };
            // Lists in lists are not a thing Kubernetes produces; one level is enough.
            let Value::Object(item_map) = item else {
                return Err(RenderError::InvalidObject {
                    origin,
                    cause: format!("List item is {}, not a mapping", kind_of(item)),
                });
            };
            out.push(to_manifest(origin, item_map.clone())?);
        }
        return Ok(());
    }
    out.push(to_manifest(origin, map)?);
    Ok(())
}

/// Decrypts the SOPS-encrypted documents among `docs`, marking their origins as decrypted.
fn decrypt(
    text: &str,
    format: sops::Format,
    docs: &mut [(Origin, Value)],
    keys: Option<&AgeKeys>,
    integrity: Integrity,
) -> Result<(), RenderError> {
    for (origin, value) in docs.iter_mut() {
        origin.decrypted = sops::is_encrypted(value);
    }
    sops::decrypt_documents(text, format, docs, keys, integrity)
}

/// A hook named by `generateName`: created afresh for each run, never applied.
fn generated_hook(metadata: Option<&Value>) -> bool {
    let Some(metadata) = metadata else { return false };
    let generated = metadata.get("generateName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let annotations = metadata.get("annotations").and_then(Value::as_object);
    generated && annotations.is_some_and(|a| crate::api::HOOK_ANNOTATIONS.iter().any(|k| a.contains_key(*k)))
}

/// `v1/List` and typed lists such as `ConfigMapList`, as kubectl accepts them.
fn is_list(map: &Map<String, Value>) -> bool {
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    kind.ends_with("List") && matches!(map.get("items"), Some(Value::Array(_)))
}

fn to_manifest(origin: Origin, map: Map<String, Value>) -> Result<Manifest, RenderError> {
    let missing = |field: &str| RenderError::MissingField { origin: origin.clone(), field: field.into() };
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !non_empty(map.get("apiVersion")) {
        return Err(missing("apiVersion"));
    }
    if !non_empty(map.get("kind")) {
        return Err(missing("kind"));
    }
    let metadata = map.get("metadata");
    if !non_empty(metadata.and_then(|m| m.get("name"))) && !generated_hook(metadata) {
        // Server-side apply needs a name; generateName cannot be reconciled, only created, as
        // hooks are.
        return Err(missing("metadata.name"));
    }
    let object: DynamicObject = serde_json::from_value(Value::Object(map))
        .map_err(|e| RenderError::InvalidObject { origin: origin.clone(), cause: e.to_string() })?;
    Ok(Manifest { origin, object })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// A JSON value read from YAML the way Kubernetes reads it: any scalar key becomes a string.
pub(crate) struct Loose(pub Value);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor).map(Loose)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v).map(|v| Value::Number(v.into())).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v).map(|v| Value::Number(v.into())).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; Kubernetes refuses them too.
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::String(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Loose::deserialize(d).map(|l| l.0)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Loose::deserialize(d).map(|l| l.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Loose(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(LooseKey(k)) = map.next_key()? {
            let Loose(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key as a string, whatever scalar type YAML gave it.
struct LooseKey(String);

impl<'de> Deserialize<'de> for LooseKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Loose::deserialize(d)?.0 {
            Value::String(s) => Ok(LooseKey(s)),
            Value::Null => Ok(LooseKey("null".into())),
            Value::Bool(b) => Ok(LooseKey(b.to_string())),
            Value::Number(n) => Ok(LooseKey(n.to_string())),
            other => Err(de::Error::custom(format!("mapping keys must be scalars, not {}", kind_of(&other)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ms: &[Manifest]) -> Vec<String> {
        ms.iter().map(|m| m.object.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn multi_document_with_empty_and_comment_only_documents() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  9000: default/svc:80\n  enabled: \"true\"\n...\n";
        let ms = parse_yaml("cm.yaml", text).unwrap();
        assert_eq!(names(&ms), ["a", "b"]);
        assert_eq!(ms[0].origin.doc, 1);
        assert_eq!(ms[1].origin.doc, 4, "document numbers count every ---: {:?}", ms[1].origin);
        assert_eq!(ms[1].origin.line, Some(10));
        // A numeric key, as Kubernetes reads it.
        assert_eq!(ms[1].object.data["data"]["9000"], "default/svc:80");
    }

    #[test]
    fn implicit_first_document_is_document_one() {
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\n";
        let err = parse_yaml("x.yaml", text).unwrap_err();
        assert_eq!(err.to_string(), "x.yaml (document 2, line 5): object has no metadata.name");
        assert_eq!(err.category(), "missing_field");
    }

    #[test]
    fn missing_fields_are_named() {
        for (doc, field) in [
            ("kind: ConfigMap\nmetadata: {name: a}", "apiVersion"),
            ("apiVersion: v1\nmetadata: {name: a}", "kind"),
            ("apiVersion: v1\nkind: ConfigMap", "metadata.name"),
            ("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}", "metadata.name"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-, annotations: {other: PreSync}}",
                "metadata.name",
            ),
            ("apiVersion: v1\nkind: \"\"\nmetadata: {name: a}", "kind"),
        ] {
            match parse_yaml("f.yaml", doc).unwrap_err() {
                RenderError::MissingField { origin, field: f } => {
                    assert_eq!(f, field, "{doc}");
                    assert_eq!(origin.file, "f.yaml");
                    assert_eq!(origin.doc, 1);
                }
                other => panic!("{doc}: {other}"),
            }
        }
    }

    #[test]
    fn a_hook_may_be_named_by_generate_name() {
        let doc = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n  annotations: {argocd.argoproj.io/hook: PreSync}\n";
        let ms = parse_yaml("hook.yaml", doc).unwrap();
        assert_eq!(ms[0].object.metadata.generate_name.as_deref(), Some("migrate-"));
    }

    #[test]
    fn syntax_errors_name_document_and_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\n";
        let err = parse_yaml("bad.yaml", text).unwrap_err();
        let RenderError::InvalidYaml { origin, cause } = &err else { panic!("{err}") };
        assert_eq!(origin.file, "bad.yaml");
        assert_eq!(origin.doc, 2, "{err}");
        assert!(!cause.contains('\n'), "{cause}");
        assert!(err.to_string().starts_with("bad.yaml (document 2"), "{err}");
    }

    #[test]
    fn large_streams_fit_the_budget() {
        // More documents than serde-saphyr allows by default (1,024), as a big kustomize build has.
        let text: String = (0..3000)
            .map(|i| {
                format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: b}}\n")
            })
            .collect();
        let ms = parse_yaml("big.yaml", &text).unwrap();
        assert_eq!(ms.len(), 3000);
        assert_eq!(ms[2999].origin.doc, 3000);
        // A deeply nested schema, as CRDs have.
        let mut deep = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n");
        for level in 0..100 {
            deep.push_str(&format!("{}l{level}:\n", "  ".repeat(level + 1)));
        }
        deep.push_str(&format!("{}end: true\n", "  ".repeat(101)));
        parse_yaml("deep.yaml", &deep).unwrap();
    }

    #[test]
    fn alias_bombs_are_still_refused() {
        let mut text = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        );
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_yaml("bomb.yaml", &text).unwrap_err();
        assert_eq!(err.category(), "invalid_yaml", "{err}");
    }

    #[test]
    fn duplicate_keys_are_invalid() {
        let err =
            parse_yaml("d.yaml", "apiVersion: v1\nkind: A\nkind: B\nmetadata: {name: a}\n").unwrap_err();
        assert!(matches!(err, RenderError::InvalidYaml { .. }), "{err}");
    }

    #[test]
    fn lists_are_flattened() {
        let text = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
---
apiVersion: v1
kind: ConfigMapList
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
- {apiVersion: v1, kind: ConfigMap, metadata: {}}
"#;
        let err = parse_yaml("l.yaml", text).unwrap_err();
        assert_eq!(err.to_string(), "l.yaml (document 2, item 1, line 8): object has no metadata.name");
        let ok = text.replace("metadata: {}}", "metadata: {name: d}}");
        assert_eq!(names(&parse_yaml("l.yaml", &ok).unwrap()), ["a", "b", "c", "d"]);
    }

    #[test]
    fn scalars_and_bad_metadata_are_invalid_objects() {
        let err = parse_yaml("s.yaml", "just text\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.yaml (document 1, line 1): not a valid Kubernetes object: expected a mapping, found a string"
        );
        let err = parse_yaml(
            "l.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {tier: [x]}}\n",
        )
        .unwrap_err();
        assert_eq!(err.category(), "invalid_object", "{err}");
    }

    #[test]
    fn json_objects_and_lists() {
        let ms = parse_json("o.json", r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}]}"#).unwrap();
        assert_eq!(names(&ms), ["j"]);
        assert!(parse_json("e.json", "  \n").unwrap().is_empty());
        let err = parse_json("b.json", "{\n\"a\": }").unwrap_err();
        assert!(err.to_string().starts_with("b.json (document 1, line 2): invalid YAML"), "{err}");
    }

    #[test]
    fn manifest_file_names() {
        for (name, yes) in [
            ("a.yaml", true),
            ("a.YML", true),
            ("a.json", true),
            ("README.md", false),
            ("a.yaml.bak", false),
            ("Chart.lock", false),
        ] {
            assert_eq!(is_manifest_file(name), yes, "{name}");
        }
    }
}
