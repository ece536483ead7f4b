//! Two documents that define the same object would make the applied result depend on their
//! order; refuse them and name both places.

use std::collections::HashMap;

use super::{error::RenderError, parse::Manifest, scope::group_of};

/// The identity of an object in the cluster: group, kind, namespace, name. The version is left
/// out on purpose: `apps/v1` and `apps/v1beta1` Deployments named alike are the same object.
pub fn object_key(m: &Manifest) -> String {
    let (group, kind) =
        m.object.types.as_ref().map_or(("", ""), |t| (group_of(&t.api_version), t.kind.as_str()));
    let gk = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
    let name = m.object.metadata.name.as_deref().unwrap_or_default();
    match m.object.metadata.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{gk} {ns}/{name}"),
        None => format!("{gk} {name}"),
    }
}

/// Fails on the first object defined twice. Run after namespaces are assigned, so an object
/// without a namespace and the same one spelled with the destination namespace collide.
pub fn check_duplicates(manifests: &[Manifest]) -> Result<(), RenderError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(manifests.len());
    for (i, m) in manifests.iter().enumerate() {
        // Hooks named by `generateName` get a fresh name per run: several may share one.
        if m.object.metadata.name.is_none() {
            continue;
        }
        let key = object_key(m);
        if let Some(&first) = seen.get(&key) {
            return Err(RenderError::Duplicate {
                key,
                first: Box::new(manifests[first].origin.clone()),
                second: Box::new(m.origin.clone()),
            });
        }
        seen.insert(key, i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{
        parse::parse_yaml,
        scope::{BuiltinScopes, assign_namespaces},
    };

    #[test]
    fn same_object_in_two_files_after_namespace_defaulting() {
        let mut ms =
            parse_yaml("a.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n").unwrap();
        ms.extend(
            parse_yaml(
                "dir/b.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n",
            )
            .unwrap(),
        );
        assert!(check_duplicates(&ms).is_ok(), "different namespaces before defaulting");
        assign_namespaces(&mut ms, "shop", &BuiltinScopes);
        let err = check_duplicates(&ms).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment.apps shop/web is defined twice: in a.yaml (document 1, line 1) and in dir/b.yaml (document 2, line 5)"
        );
        assert_eq!(err.category(), "duplicate");
    }

    #[test]
    fn same_name_different_kind_or_group_is_fine() {
        let ms = parse_yaml(
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\n---\napiVersion: example.com/v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        )
        .unwrap();
        check_duplicates(&ms).unwrap();
        assert_eq!(object_key(&ms[2]), "ConfigMap.example.com x");
    }
}
