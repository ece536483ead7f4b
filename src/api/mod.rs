//! The ferry API: custom resource types and their generated CRDs.

mod application;
pub mod conditions;
pub mod schema;

pub use application::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD ferry serves, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Application::crd()]
}

/// The CRDs as one multi-document YAML stream, exactly as checked in under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
