//! Client-side commands that talk to the cluster on a person's behalf.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};

use crate::api::{Application, RECONCILE_AT_ANNOTATION};

/// `ferry sync NAME`: stamps the reconcile-at annotation, which makes ferry re-check Git and
/// reconcile the Application at once. Returns what to tell the person.
pub async fn request_sync(name: &str, namespace: Option<&str>) -> Result<String, String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("no usable Kubernetes configuration ({e}); set KUBECONFIG"))?;
    let namespace = namespace.map(str::to_string).unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Application> = Api::namespaced(client, &namespace);
    let now = Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {RECONCILE_AT_ANNOTATION: now}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    match tokio::time::timeout(Duration::from_secs(10), api.patch(name, &params, &patch)).await {
        Err(_) => Err("the API server did not answer within 10s".into()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            Err(format!("Application {namespace}/{name} not found; check the name and pass -n NAMESPACE"))
        }
        Ok(Err(e)) => Err(format!("cannot annotate Application {namespace}/{name}: {e}")),
        Ok(Ok(_)) => Ok(format!("reconcile of Application {namespace}/{name} requested at {now}")),
    }
}
