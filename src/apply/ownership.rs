//! Which Application an object belongs to, by the labels ferry puts on everything it applies.
//!
//! Labels rather than ownerReferences: an Application may manage cluster-scoped objects and
//! objects in other namespaces, which ownerReferences cannot express, and label selectors let
//! ferry watch only its own objects.

use std::collections::BTreeMap;

use kube::api::DynamicObject;

/// Field manager for everything synced from Git.
pub const FIELD_MANAGER: &str = "ferry";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const APP_NAME: &str = "ferry.dev/app-name";
pub const APP_NAMESPACE: &str = "ferry.dev/app-namespace";
/// `ferry.dev/prune: disabled` keeps an object when it leaves Git.
pub const PRUNE: &str = "ferry.dev/prune";
/// Annotation holding a hash of the manifest ferry last applied to the object. It tells a change
/// in Git (hash differs: apply, which also removes fields Git dropped) from a change made in the
/// cluster (hash equal, content differs: drift), and it survives ferry's restarts.
pub const MANIFEST_HASH: &str = "ferry.dev/manifest-hash";

/// An Application, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Who owns a live object, as seen from one Application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Labelled as this Application's.
    Ours,
    /// No ferry labels: created by hand or by another tool. Applying adopts it.
    Unowned,
    /// Labelled as another Application's: never taken over or deleted, reported as a conflict.
    Other(AppRef),
}

/// Puts the ownership labels of `app` on an object about to be applied.
pub fn label_object(obj: &mut DynamicObject, app: &AppRef) {
    let labels = obj.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(MANAGED_BY.to_string(), FIELD_MANAGER.to_string());
    labels.insert(APP_NAME.to_string(), app.name.clone());
    labels.insert(APP_NAMESPACE.to_string(), app.namespace.clone());
}

/// Hashes the labelled manifest (before the hash annotation is added) and records the hash on it.
/// Returns the hash.
pub fn manifest_hash(obj: &mut DynamicObject) -> String {
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(MANIFEST_HASH);
        if annotations.is_empty() {
            obj.metadata.annotations = None;
        }
    }
    let bytes = serde_json::to_vec(obj).expect("a DynamicObject serializes");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hash: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    obj.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MANIFEST_HASH.to_string(), hash.clone());
    hash
}

/// Who owns an object with these labels, from `app`'s point of view.
pub fn ownership_of(labels: Option<&BTreeMap<String, String>>, app: &AppRef) -> Ownership {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    match (get(MANAGED_BY).map(String::as_str), get(APP_NAMESPACE), get(APP_NAME)) {
        (Some(FIELD_MANAGER), Some(ns), Some(name)) if *ns == app.namespace && *name == app.name => {
            Ownership::Ours
        }
        (Some(FIELD_MANAGER), Some(ns), Some(name)) => {
            Ownership::Other(AppRef { namespace: ns.clone(), name: name.clone() })
        }
        _ => Ownership::Unowned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(ns: &str, name: &str) -> AppRef {
        AppRef { namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn labelled_objects_are_recognised_as_ours_or_another_apps() {
        let shop = app("team-a", "shop");
        let mut obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"keep": "me"}}
        }))
        .unwrap();
        assert_eq!(ownership_of(obj.metadata.labels.as_ref(), &shop), Ownership::Unowned);
        label_object(&mut obj, &shop);
        let labels = obj.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["keep"], "me");
        assert_eq!(labels[MANAGED_BY], "ferry");
        assert_eq!(ownership_of(Some(labels), &shop), Ownership::Ours);
        // Same name in another namespace is another Application.
        assert_eq!(ownership_of(Some(labels), &app("team-b", "shop")), Ownership::Other(shop.clone()));
    }

    #[test]
    fn the_manifest_hash_ignores_an_earlier_hash_and_follows_the_content() {
        let mut a: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}
        }))
        .unwrap();
        let mut b = a.clone();
        let first = manifest_hash(&mut a);
        assert_eq!(manifest_hash(&mut a), first, "hashing twice gives the same hash");
        assert_eq!(a.metadata.annotations.as_ref().unwrap()[MANIFEST_HASH], first);
        b.data["data"]["k"] = "w".into();
        assert_ne!(manifest_hash(&mut b), first);
    }

    #[test]
    fn labels_of_another_manager_are_not_ferrys() {
        let labels: BTreeMap<String, String> = [
            (MANAGED_BY.to_string(), "Helm".to_string()),
            (APP_NAME.to_string(), "shop".to_string()),
            (APP_NAMESPACE.to_string(), "team-a".to_string()),
        ]
        .into();
        assert_eq!(ownership_of(Some(&labels), &app("team-a", "shop")), Ownership::Unowned);
    }
}
