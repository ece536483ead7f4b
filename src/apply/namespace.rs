//! The Namespace `spec.destination.createNamespace` asks for: which namespace, and whether ferry
//! adds it to the objects to sync. The sync pass and `ferry diff` both call these, so a diff
//! shows the Namespace a sync would create.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, api::DynamicObject};

use super::{AppRef, Ownership, ownership_of};
use crate::{
    api::{Application, InventoryEntry},
    kube_util::api_words,
};

/// Annotation on a Namespace ferry created for `createNamespace`: it is released, never pruned.
pub const CREATED_NAMESPACE: &str = "ferry.dev/created-namespace";

/// Whether `e` is the Namespace `name`.
pub fn is_namespace(e: &InventoryEntry, name: &str) -> bool {
    e.group.is_empty() && e.kind == "Namespace" && e.name == name
}

/// Reading the destination Namespace failed; retrying may help.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceReadError {
    #[error("reading Namespace {name}: the API server did not answer in time")]
    Timeout { name: String },
    #[error("reading Namespace {name}: {}", api_words(.source))]
    Api { name: String, source: kube::Error },
}

/// The namespace `spec.destination.createNamespace` asks ferry to create, if it does.
pub fn requested_namespace(app: &Application, app_ref: &AppRef) -> Option<String> {
    let dest = app.spec.destination.as_ref().filter(|d| d.create_namespace)?;
    Some(dest.namespace.clone().unwrap_or_else(|| app_ref.namespace.clone()))
}

/// The Namespace object for `spec.destination.createNamespace`: when the render has none of
/// that name and the namespace is ferry's to create, i.e. it is in the inventory already or does
/// not exist. A namespace that exists and is not this Application's is never taken over, since
/// deleting the Application would then delete it with everything in it.
pub async fn created_namespace(
    client: &kube::Client,
    timeout: Duration,
    app_ref: &AppRef,
    name: &str,
    rendered: &[DynamicObject],
    previous: &[InventoryEntry],
) -> Result<Option<DynamicObject>, NamespaceReadError> {
    let in_render = rendered.iter().any(|o| {
        o.types.as_ref().is_some_and(|t| t.kind == "Namespace" && t.api_version == "v1")
            && o.metadata.name.as_deref() == Some(name)
    });
    if in_render {
        return Ok(None);
    }
    let ours = previous.iter().any(|e| is_namespace(e, name)) || {
        let api: Api<Namespace> = Api::all(client.clone());
        let live = tokio::time::timeout(timeout, api.get_opt(name))
            .await
            .map_err(|_| NamespaceReadError::Timeout { name: name.to_string() })?
            .map_err(|source| NamespaceReadError::Api { name: name.to_string(), source })?;
        match live {
            None => true,
            Some(ns) => ownership_of(ns.metadata.labels.as_ref(), app_ref) == Ownership::Ours,
        }
    };
    if !ours {
        tracing::info!(app = %app_ref, namespace = %name, "destination namespace exists and is not ours; not managing it");
        return Ok(None);
    }
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "annotations": {CREATED_NAMESPACE: "true"},
    }});
    Ok(Some(serde_json::from_value(ns).expect("a Namespace deserializes")))
}
