//! A rendered object as ferry applies it: labelled with its Application, hashed, named in the
//! inventory and placed in an apply phase. The sync pass and `ferry diff` prepare objects through
//! the same function, so what a diff shows is what a sync would apply.

use kube::api::DynamicObject;
use serde_json::Value;

use super::{AppRef, describe, inventory_entry, label_object, manifest_hash};
use crate::{
    api::InventoryEntry,
    plan::{ApplyPhase, phase_of},
};

/// An object's identity across API versions: group, kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl From<&InventoryEntry> for ObjKey {
    fn from(e: &InventoryEntry) -> Self {
        ObjKey {
            group: e.group.clone(),
            kind: e.kind.clone(),
            namespace: e.namespace.clone(),
            name: e.name.clone(),
        }
    }
}

/// A rendered object as ferry applies it.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub obj: DynamicObject,
    pub key: ObjKey,
    pub entry: InventoryEntry,
    /// The manifest hash, also set as an annotation on `obj`.
    pub hash: String,
    /// As shown in messages.
    pub name: String,
    pub phase: ApplyPhase,
    /// Its sync wave (`argocd.argoproj.io/sync-wave`): waves apply in ascending order.
    pub wave: i32,
}

impl Prepared {
    /// Labels and hashes a rendered object; `None` for one that names no object (no kind or no
    /// name), which the render never produces.
    pub fn new(rendered: &DynamicObject, app: &AppRef) -> Option<Prepared> {
        let mut obj = rendered.clone();
        label_object(&mut obj, app);
        let hash = manifest_hash(&mut obj);
        let entry = inventory_entry(&obj)?;
        let phase = phase_of(&entry.group, &entry.kind, entry.namespace.is_some());
        let (key, name) = (ObjKey::from(&entry), describe(&obj));
        let wave = crate::plan::hooks::wave_of(rendered);
        Some(Prepared { obj, key, entry, hash, name, phase, wave })
    }

    /// The same object with other content (the primary as a rollout applies it), hashed anew.
    /// `None` when `value` is not an object.
    pub fn with_object(&self, value: Value) -> Option<Prepared> {
        let mut obj: DynamicObject = serde_json::from_value(value).ok()?;
        let hash = manifest_hash(&mut obj);
        Some(Prepared { obj, hash, ..self.clone() })
    }

    /// The same object without the namespace it was rendered with: for a kind that discovery
    /// says is cluster-scoped.
    pub fn without_namespace(&self) -> Prepared {
        let mut obj = self.obj.clone();
        obj.metadata.namespace = None;
        let hash = manifest_hash(&mut obj);
        let mut p = Prepared { obj, hash, ..self.clone() };
        p.entry.namespace = None;
        p.key.namespace = None;
        p.name = describe(&p.obj);
        p.phase = phase_of(&p.entry.group, &p.entry.kind, false);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    fn app() -> AppRef {
        AppRef { namespace: "team".into(), name: "web".into() }
    }

    #[test]
    fn a_prepared_object_is_labelled_hashed_and_phased() {
        let cm = object(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "team"}, "data": {"a": "1"}
        }));
        let p = Prepared::new(&cm, &app()).unwrap();
        assert_eq!(
            p.key,
            ObjKey {
                group: "".into(),
                kind: "ConfigMap".into(),
                namespace: Some("team".into()),
                name: "c".into()
            }
        );
        assert!(p.obj.metadata.labels.as_ref().unwrap().values().any(|v| v == "web"));
        assert_eq!(
            p.obj.metadata.annotations.as_ref().unwrap().get(super::super::MANIFEST_HASH),
            Some(&p.hash)
        );
        let other = Prepared::new(
            &object(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "team"}, "data": {"a": "2"}
            })),
            &app(),
        )
        .unwrap();
        assert_ne!(p.hash, other.hash, "the hash follows the content");
    }

    #[test]
    fn dropping_the_namespace_renames_rehashes_and_rephases() {
        let role = object(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "namespace": "team"}
        }));
        let p = Prepared::new(&role, &app()).unwrap();
        let q = p.without_namespace();
        assert_eq!(q.entry.namespace, None);
        assert_eq!(q.key.namespace, None);
        assert_eq!(q.obj.metadata.namespace, None);
        assert_ne!(q.hash, p.hash);
        assert_eq!(q.phase, phase_of("rbac.authorization.k8s.io", "ClusterRole", false));
    }
}
