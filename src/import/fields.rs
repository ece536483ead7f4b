//! Reading one level of an upstream object's JSON: each field ferry maps is taken out, typed,
//! with an error naming the object and the field when its type is wrong; whatever is left when
//! a level is done becomes a note, so no upstream field goes unmentioned.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{MapError, Note};

/// The fields of one JSON object of an upstream object, at `path` (`spec.source`).
#[derive(Debug)]
pub(super) struct Fields {
    /// The upstream object, as errors name it (`Kustomization flux-system/podinfo`).
    object: String,
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    /// The object at `path`; absent or null reads as an empty one, anything else but an object
    /// is an error.
    pub(super) fn new(object: &str, path: &str, value: Option<Value>) -> Result<Fields, MapError> {
        let map = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(MapError::type_error(object, path, "an object")),
        };
        Ok(Fields { object: object.to_string(), path: path.to_string(), map })
    }

    /// The upstream object this level belongs to, for errors.
    pub(super) fn object(&self) -> &str {
        &self.object
    }

    /// The full name of a field of this level (`spec.source.path`).
    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// Whether the field is present (and not null).
    pub(super) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// The field as it is, taken out.
    pub(super) fn raw(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    /// The field as `T`; `expected` says what it should be when it is not.
    pub(super) fn typed<T: DeserializeOwned>(
        &mut self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<T>, MapError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| MapError::type_error(&self.object, &self.field(key), expected)),
        }
    }

    /// A string field; an empty string reads as absent.
    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.typed::<String>(key, "a string")?.filter(|s| !s.is_empty()))
    }

    /// A string field that must be there.
    pub(super) fn required_string(&mut self, key: &str) -> Result<String, MapError> {
        self.string(key)?
            .ok_or_else(|| MapError::Missing { object: self.object.clone(), field: self.field(key) })
    }

    pub(super) fn bool(&mut self, key: &str) -> Result<Option<bool>, MapError> {
        self.typed(key, "true or false")
    }

    /// A list of strings (absent: empty).
    pub(super) fn strings(&mut self, key: &str) -> Result<Vec<String>, MapError> {
        Ok(self.typed(key, "a list of strings")?.unwrap_or_default())
    }

    /// A list of anything (absent: empty).
    pub(super) fn list(&mut self, key: &str) -> Result<Vec<Value>, MapError> {
        Ok(self.typed(key, "a list")?.unwrap_or_default())
    }

    /// A nested object, taken out (absent: empty).
    pub(super) fn nested(&mut self, key: &str) -> Result<Fields, MapError> {
        let field = self.field(key);
        let value = self.raw(key);
        Fields::new(&self.object, &field, value)
    }

    /// The element `index` of a list field `key`, as an object.
    pub(super) fn element(&self, key: &str, index: usize, value: Value) -> Result<Fields, MapError> {
        Fields::new(&self.object, &format!("{}[{index}]", self.field(key)), Some(value))
    }

    /// An error about a field of this level whose value ferry cannot use.
    pub(super) fn invalid(&self, key: &str, why: impl Into<String>) -> MapError {
        MapError::Invalid { object: self.object.clone(), field: self.field(key), why: why.into() }
    }

    /// A note that `key` of this level does not map, and why.
    pub(super) fn note(&self, key: &str, why: impl Into<String>) -> Note {
        Note { field: self.field(key), why: why.into() }
    }

    /// Notes for every field left: the reason `reasons` gives for its name, else that ferry has
    /// no equivalent.
    pub(super) fn rest(&mut self, reasons: &[(&str, &str)], notes: &mut Vec<Note>) {
        for (key, value) in std::mem::take(&mut self.map) {
            if value.is_null() {
                continue;
            }
            let why = reasons.iter().find(|(k, _)| *k == key).map_or("ferry has no equivalent", |(_, w)| w);
            let field = if self.path.is_empty() { key } else { format!("{}.{key}", self.path) };
            notes.push(Note { field, why: why.to_string() });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wrong_types_name_the_object_and_field_and_leftovers_become_notes() {
        let mut f =
            Fields::new("Kustomization ns/a", "spec", Some(json!({"path": 3, "x": 1, "n": null}))).unwrap();
        let err = f.string("path").unwrap_err().to_string();
        assert_eq!(err, "Kustomization ns/a: spec.path: expected a string");
        let mut notes = Vec::new();
        f.rest(&[("x", "because")], &mut notes);
        assert_eq!(notes, [Note { field: "spec.x".into(), why: "because".into() }]);
        let err = Fields::new("o", "spec", Some(json!([1]))).unwrap_err().to_string();
        assert_eq!(err, "o: spec: expected an object");
    }
}
