//! Build, second half: the rendered objects as ferry applies them, each with its kind resolved
//! through discovery. `ferry diff` prepares and resolves through the same functions.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use kube::{
    api::DynamicObject,
    discovery::{ApiCapabilities, ApiResource, Scope},
};

use crate::{
    api::InventoryEntry,
    apply::{AppRef, Applier, ApplyError, Prepared},
    controller::{
        error::{KindsError, OptionsError},
        memory::{AppMemory, Known, keeps_live},
    },
    plan::{ObjectOptions, sync_options},
    tenancy::Target,
};

/// One rendered object on its way to the cluster.
pub struct Desired {
    pub prepared: Arc<Prepared>,
    /// `None` while its kind is served only once a CRD of this revision is installed.
    pub resource: Option<(ApiResource, ApiCapabilities)>,
    /// What its annotations ask (Argo CD's sync and compare options, Flux's prune, reconcile
    /// and ssa); an unknown one is refused by [`check_options`].
    pub options: ObjectOptions,
}

impl std::ops::Deref for Desired {
    type Target = Prepared;

    fn deref(&self) -> &Prepared {
        &self.prepared
    }
}

impl Desired {
    /// A prepared object, its kind not resolved yet.
    pub fn new(prepared: Arc<Prepared>) -> Desired {
        let meta = &prepared.obj.metadata;
        let options = sync_options::parse(meta.labels.as_ref(), meta.annotations.as_ref()).options;
        Desired { prepared, resource: None, options }
    }

    /// The object as the tenancy checks see it: cluster-scoped when discovery says so, whatever
    /// namespace the manifest carries.
    pub fn target(&self) -> Target<'_> {
        let cluster_scoped = self.resource.as_ref().is_some_and(|(_, caps)| caps.scope == Scope::Cluster);
        let e = &self.entry;
        let namespace = if cluster_scoped { None } else { e.namespace.as_deref() };
        Target { group: &e.group, kind: &e.kind, name: &e.name, namespace }
    }

    /// Whether it can only be dry-run once its phase comes: its kind is served only once a CRD
    /// of this revision is installed, or its namespace is among those this pass creates.
    pub fn is_deferred(&self, new_namespaces: &HashSet<String>) -> bool {
        self.resource.is_none() || self.entry.namespace.as_ref().is_some_and(|ns| new_namespaces.contains(ns))
    }
}

/// Every rendered object prepared: labelled with its Application and hashed, in render order.
/// Objects without a kind or a name (the render refuses them) are left out.
pub fn prepare(rendered: &[DynamicObject], app: &AppRef) -> Vec<Arc<Prepared>> {
    rendered.iter().filter_map(|o| Prepared::new(o, app)).map(Arc::new).collect()
}

/// [`prepare`], from memory when `rendered` is the render prepared last time.
pub fn prepare_remembered(
    mem: &mut AppMemory,
    rendered: &Arc<Vec<DynamicObject>>,
    app: &AppRef,
) -> Vec<Desired> {
    let prepared = match &mem.prepared {
        Some((source, prepared)) if Arc::ptr_eq(source, rendered) => prepared.clone(),
        _ => {
            let prepared = Arc::new(prepare(rendered, app));
            mem.prepared = Some((rendered.clone(), prepared.clone()));
            prepared
        }
    };
    prepared.iter().map(|p| Desired::new(p.clone())).collect()
}

/// Refuses objects whose options ferry does not know, naming each, before anything is written.
pub fn check_options(desired: &[Desired]) -> Result<(), OptionsError> {
    let refused: Vec<(String, crate::plan::OptionError)> = desired
        .iter()
        .flat_map(|d| {
            let meta = &d.obj.metadata;
            let parsed = sync_options::parse(meta.labels.as_ref(), meta.annotations.as_ref());
            parsed.errors.into_iter().map(|e| (d.name.clone(), e))
        })
        .collect();
    if refused.is_empty() { Ok(()) } else { Err(OptionsError(refused)) }
}

/// (group, kind) of every CustomResourceDefinition in the render.
pub fn crd_kinds(objects: &[DynamicObject]) -> HashSet<(String, String)> {
    objects
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "CustomResourceDefinition"))
        .filter_map(|o| {
            let group = o.data.pointer("/spec/group")?.as_str()?;
            let kind = o.data.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_string(), kind.to_string()))
        })
        .collect()
}

/// Resolves every object's kind through discovery. Kinds a CRD of this revision defines may stay
/// unresolved until it is installed; any other unknown kind is an error naming the objects.
pub fn resolve_kinds(
    desired: &mut [Desired],
    applier: &Applier,
    crd_kinds: &HashSet<(String, String)>,
) -> Result<(), KindsError> {
    let mut unknown: Vec<ApplyError> = Vec::new();
    for d in desired.iter_mut() {
        match applier.resolve(&d.obj) {
            Ok(r) => {
                if r.1.scope == Scope::Cluster && d.entry.namespace.is_some() {
                    // Rendered while discovery did not know the kind, so defaulted to namespaced.
                    // The API server ignores the namespace; the inventory must too, or the next
                    // render (which knows) would name another object and prune this one.
                    d.prepared = Arc::new(d.without_namespace());
                }
                d.resource = Some(r)
            }
            // SkipDryRunOnMissingResource: a kind another tool installs may come later; the
            // object waits for its phase, when discovery is run again.
            Err(_)
                if d.options.skip_dry_run_on_missing
                    || crd_kinds.contains(&(d.entry.group.clone(), d.entry.kind.clone())) =>
            {
                d.resource = None
            }
            Err(e) => unknown.push(e),
        }
    }
    if unknown.is_empty() { Ok(()) } else { Err(KindsError::Unknown(unknown)) }
}

/// The inventory the objects make, sorted and without duplicates.
pub fn inventory(desired: &[Desired]) -> Vec<InventoryEntry> {
    let set: BTreeSet<InventoryEntry> = desired.iter().map(|d| d.entry.clone()).collect();
    set.into_iter().collect()
}

/// The inventory with the namespace of cluster-scoped kinds dropped: one recorded while
/// discovery did not know such a kind names the object with a namespace, and must still match
/// the same object rendered without (else it would be pruned while wanted).
pub fn in_scope(mut entries: Vec<InventoryEntry>, discovery: &kube::Discovery) -> Vec<InventoryEntry> {
    for e in entries.iter_mut().filter(|e| e.namespace.is_some()) {
        let gvk = kube::api::GroupVersionKind::gvk(&e.group, &e.version, &e.kind);
        if discovery.resolve_gvk(&gvk).is_some_and(|(_, caps)| caps.scope == Scope::Cluster) {
            e.namespace = None;
        }
    }
    entries
}

/// Records that `live` matches `d`.
pub fn remember(mem: &mut AppMemory, d: &Desired, live: &DynamicObject) {
    let keep = keeps_live(&d.entry.group, &d.entry.kind);
    mem.known.insert(
        d.key.clone(),
        Known {
            resource_version: live.metadata.resource_version.clone().unwrap_or_default(),
            hash: d.hash.clone(),
            live: keep.then(|| Arc::new(serde_json::to_value(live).expect("objects serialize"))),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_in_the_render_name_the_kinds_they_serve() {
        let crd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}}
        }))
        .unwrap();
        assert_eq!(crd_kinds(&[crd]), HashSet::from([("example.com".to_string(), "Widget".to_string())]));
    }

    #[test]
    fn a_render_is_prepared_once_and_remembered() {
        let cm: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "t"}
        }))
        .unwrap();
        let app = AppRef { namespace: "t".into(), name: "a".into() };
        let rendered = Arc::new(vec![cm.clone()]);
        let mut mem = AppMemory::default();
        let first = prepare_remembered(&mut mem, &rendered, &app);
        let again = prepare_remembered(&mut mem, &rendered, &app);
        assert!(Arc::ptr_eq(&first[0].prepared, &again[0].prepared), "the same render is not prepared twice");
        let other = prepare_remembered(&mut mem, &Arc::new(vec![cm]), &app);
        assert!(!Arc::ptr_eq(&first[0].prepared, &other[0].prepared), "another render is prepared anew");
        assert_eq!(first[0].hash, other[0].hash);
    }
}
