//! Server-side apply of rendered objects, and the server-side dry run that validates them first.
//!
//! Every call names the object in its error and carries the API server's own words, because
//! that is what a person needs to fix a manifest. Each call has a timeout: a stuck API server
//! must not hold a reconcile forever.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, Client,
    api::{
        DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, Preconditions,
        PropagationPolicy,
    },
    discovery::{ApiCapabilities, ApiResource, Discovery, Scope},
};

use super::ownership::FIELD_MANAGER;
pub use crate::render::describe;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kind is not served (a typo, or a CRD that is not installed or not established yet).
    #[error("{object}: the API server does not serve {api_version} {kind}")]
    UnknownKind { object: String, api_version: String, kind: String },

    /// The API server refused the object: schema, admission, RBAC, conflict. A change is needed.
    #[error("{object}: refused by the API server: {message}")]
    Refused { object: String, code: u16, reason: String, message: String },

    /// The request did not complete (network, timeout, 5xx, 429): retrying may help.
    #[error("{object}: {message}")]
    Transient { object: String, message: String },

    /// Server-side apply found fields another manager owns with other values (409). Whether
    /// ferry may take them over is the caller's decision.
    #[error("{object}: {message}")]
    Conflict { object: String, message: String, conflicts: Vec<FieldConflict> },

    /// Discovery itself failed.
    #[error("API discovery failed: {0}")]
    Discovery(String),
}

/// One field server-side apply refused to take over: `.spec.replicas` owned by `kubectl-edit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    pub field: String,
}

impl ApplyError {
    /// Short label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::UnknownKind { .. } => "unknown_kind",
            ApplyError::Refused { .. } => "refused",
            ApplyError::Transient { .. } => "transient",
            ApplyError::Conflict { .. } => "conflict",
            ApplyError::Discovery(_) => "discovery",
        }
    }

    /// Whether retrying without a change may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Transient { .. } | ApplyError::Discovery(_))
    }
}

/// Applies objects with server-side apply as field manager `ferry`.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    discovery: Arc<Discovery>,
    timeout: Duration,
}

impl Applier {
    /// Runs discovery once; call [`Applier::refresh`] after CRDs are established.
    pub async fn new(client: Client, timeout: Duration) -> Result<Applier, ApplyError> {
        let discovery = Arc::new(discover(&client, timeout).await?);
        Ok(Applier { client, discovery, timeout })
    }

    /// An applier over a discovery someone already ran: the controller shares one discovery
    /// between Applications, each with its own (possibly impersonating) client.
    pub fn with_discovery(client: Client, discovery: Arc<Discovery>, timeout: Duration) -> Applier {
        Applier { client, discovery, timeout }
    }

    /// The same client with another discovery (one refreshed after this sync installed CRDs).
    pub fn with_new_discovery(&self, discovery: Arc<Discovery>) -> Applier {
        Applier { client: self.client.clone(), discovery, timeout: self.timeout }
    }

    /// Re-runs discovery, e.g. after this sync installed CRDs.
    pub async fn refresh(&mut self) -> Result<(), ApplyError> {
        self.discovery = Arc::new(discover(&self.client, self.timeout).await?);
        Ok(())
    }

    /// The discovery this applier resolves kinds with.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// The API for objects of `resource` in `namespace` (ignored for cluster-scoped kinds).
    /// The client it acts as (for reads outside applying, e.g. a hook Job's pods).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn api(
        &self,
        resource: &ApiResource,
        caps: &ApiCapabilities,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        match (&caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            _ => Api::all_with(self.client.clone(), resource),
        }
    }

    /// The live object, `None` when it does not exist.
    pub async fn get(
        &self,
        object: &str,
        resource: &ApiResource,
        caps: &ApiCapabilities,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, ApplyError> {
        let api = self.api(resource, caps, namespace);
        let result = self.timed(object, api.get_opt(name)).await?;
        result.map_err(|e| classify(object, e))
    }

    /// Deletes an object in the background (its dependents are collected by the garbage
    /// collector). Already gone is success. `uid` is the uid of the object the caller checked
    /// (as ferry's): the API server then deletes only that object, never one that replaced it
    /// under the same name since, and a replaced object counts as gone.
    pub async fn delete(
        &self,
        object: &str,
        resource: &ApiResource,
        caps: &ApiCapabilities,
        namespace: Option<&str>,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApplyError> {
        let target = (resource, caps, namespace, name);
        self.delete_with(object, target, uid, PropagationPolicy::Background).await
    }

    /// Deletes an object and leaves its dependents (`propagationPolicy: Orphan`): the garbage
    /// collector takes the object's owner reference off them, and they stay. Otherwise as
    /// [`Applier::delete`].
    pub async fn delete_orphaning(
        &self,
        object: &str,
        (resource, caps): (&ApiResource, &ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApplyError> {
        let target = (resource, caps, namespace, name);
        self.delete_with(object, target, uid, PropagationPolicy::Orphan).await
    }

    /// The objects of a kind in `namespace` (all namespaces: `None`) whose labels match
    /// `selector` (`key=value,...`).
    pub async fn list(
        &self,
        object: &str,
        (resource, caps): (&ApiResource, &ApiCapabilities),
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        let api = self.api(resource, caps, namespace);
        let params = kube::api::ListParams::default().labels(selector);
        let listed = self.timed(object, api.list(&params)).await?;
        Ok(listed.map_err(|e| classify(object, e))?.items)
    }

    async fn delete_with(
        &self,
        object: &str,
        (resource, caps, namespace, name): (&ApiResource, &ApiCapabilities, Option<&str>, &str),
        uid: Option<&str>,
        propagation: PropagationPolicy,
    ) -> Result<(), ApplyError> {
        let api = self.api(resource, caps, namespace);
        let params = DeleteParams {
            propagation_policy: Some(propagation),
            preconditions: uid
                .map(|uid| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match self.timed(object, api.delete(name, &params)).await? {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(kube::Error::Api(status)) if uid.is_some() && is_replaced(status.code, &status.message) => {
                tracing::info!(object, "not deleted: the object was replaced since ferry checked it");
                Ok(())
            }
            Err(e) => Err(classify(object, e)),
        }
    }

    async fn timed<T>(&self, object: &str, fut: impl Future<Output = T>) -> Result<T, ApplyError> {
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| ApplyError::Transient {
            object: object.to_string(),
            message: format!("the API server did not answer within {}s", self.timeout.as_secs()),
        })
    }

    /// Whether the kind of `obj` is served, and its scope.
    pub fn resolve(&self, obj: &DynamicObject) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let types = obj.types.as_ref().ok_or_else(|| ApplyError::UnknownKind {
            object: describe(obj),
            api_version: String::new(),
            kind: String::new(),
        })?;
        let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        self.discovery.resolve_gvk(&gvk).ok_or_else(|| ApplyError::UnknownKind {
            object: describe(obj),
            api_version: types.api_version.clone(),
            kind: types.kind.clone(),
        })
    }

    /// Creates an object that must not exist yet (a hook's run), as field manager `ferry`. One of
    /// that name that someone else created meanwhile is never taken over: `None` then.
    pub async fn create(&self, obj: &DynamicObject) -> Result<Option<DynamicObject>, ApplyError> {
        let (resource, caps) = self.resolve(obj)?;
        let object = describe(obj);
        let api = self.api(&resource, &caps, obj.metadata.namespace.as_deref());
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match self.timed(&object, api.create(&params, obj)).await? {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "AlreadyExists" => {
                Ok(None)
            }
            Err(e) => Err(classify(&object, e)),
        }
    }

    /// Server-side dry run of an apply: the API server validates and admits the object exactly as
    /// it would for the real apply, and persists nothing.
    pub async fn dry_run(&self, obj: &DynamicObject, force: bool) -> Result<DynamicObject, ApplyError> {
        self.patch(obj, force, true).await
    }

    /// Server-side apply. `force` takes over fields another manager owns.
    pub async fn apply(&self, obj: &DynamicObject, force: bool) -> Result<DynamicObject, ApplyError> {
        self.patch(obj, force, false).await
    }

    /// Server-side apply under another field manager (the rollout engine's `ferry-rollout`).
    pub async fn apply_as(
        &self,
        manager: &str,
        obj: &DynamicObject,
        force: bool,
    ) -> Result<DynamicObject, ApplyError> {
        self.patch_as(manager, obj, force, false).await
    }

    async fn patch(
        &self,
        obj: &DynamicObject,
        force: bool,
        dry_run: bool,
    ) -> Result<DynamicObject, ApplyError> {
        self.patch_as(FIELD_MANAGER, obj, force, dry_run).await
    }

    async fn patch_as(
        &self,
        manager: &str,
        obj: &DynamicObject,
        force: bool,
        dry_run: bool,
    ) -> Result<DynamicObject, ApplyError> {
        let (resource, caps) = self.resolve(obj)?;
        let object = describe(obj);
        let name = obj.metadata.name.as_deref().ok_or_else(|| ApplyError::Refused {
            object: object.clone(),
            code: 422,
            reason: "Invalid".into(),
            message: "metadata.name is required".into(),
        })?;
        if caps.scope == Scope::Namespaced && obj.metadata.namespace.is_none() {
            return Err(ApplyError::Refused {
                object,
                code: 422,
                reason: "Invalid".into(),
                message: "a namespaced object needs metadata.namespace".into(),
            });
        }
        let api = self.api(&resource, &caps, obj.metadata.namespace.as_deref());
        let mut params = PatchParams::apply(manager);
        if force {
            params = params.force();
        }
        if dry_run {
            params = params.dry_run();
        }
        // managedFields and resourceVersion in the body would make the apply a conditional write
        // or reset ownership; the body is what ferry wants, nothing more.
        let mut body = obj.clone();
        body.metadata.managed_fields = None;
        body.metadata.resource_version = None;
        let result = self.timed(&object, api.patch(name, &params, &Patch::Apply(&body))).await?;
        result.map_err(|e| classify(&object, e))
    }
}

/// Sorts an API error into what the caller can do about it.
fn classify(object: &str, err: kube::Error) -> ApplyError {
    let object = object.to_string();
    match err {
        kube::Error::Api(status) if status.code == 409 && status.reason == "Conflict" => {
            let conflicts = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .filter(|c| c.reason == "FieldManagerConflict")
                .map(|c| FieldConflict { manager: manager_of(&c.message), field: c.field.clone() })
                .collect::<Vec<_>>();
            if conflicts.is_empty() {
                ApplyError::Refused {
                    object,
                    code: 409,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                }
            } else {
                ApplyError::Conflict { object, message: status.message.clone(), conflicts }
            }
        }
        // A namespace being deleted refuses new content until it is gone; then it can be
        // recreated, so this passes by itself.
        kube::Error::Api(status) if status.message.contains("because it is being terminated") => {
            ApplyError::Transient { object, message: status.message.clone() }
        }
        kube::Error::Api(status) if is_refusal(status.code, &status.message) => ApplyError::Refused {
            object,
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) => ApplyError::Transient {
            object,
            message: format!("{} {}: {}", status.code, status.reason, status.message),
        },
        err => ApplyError::Transient { object, message: err.to_string() },
    }
}

/// `conflict with "kubectl-edit" using apps/v1` -> `kubectl-edit`.
fn manager_of(message: &str) -> String {
    message.split('"').nth(1).unwrap_or(message).to_string()
}

/// 4xx answers other than throttling and timeouts mean the object itself is the problem. So does
/// one 500: server-side apply reports a value of the wrong type (`replicas: three`) as an
/// internal error while building the typed patch, though retrying can never fix it.
fn is_refusal(code: u16, message: &str) -> bool {
    ((400..500).contains(&code) && code != 408 && code != 429)
        || (code == 500 && message.starts_with("failed to create typed patch object"))
}

/// A delete refused because the uid precondition failed: the object of that name is another one.
/// The API server's words differ between versions (`Precondition failed: UID in precondition`,
/// `the UID in the precondition ... does not match`).
fn is_replaced(code: u16, message: &str) -> bool {
    code == 409 && message.to_ascii_lowercase().contains("precondition")
}

async fn discover(client: &Client, timeout: Duration) -> Result<Discovery, ApplyError> {
    match tokio::time::timeout(timeout, Discovery::new(client.clone()).run()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(ApplyError::Discovery(e.to_string())),
        Err(_) => Err(ApplyError::Discovery(format!("no answer within {}s", timeout.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_described_by_kind_namespace_and_name() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}
        }))
        .unwrap();
        assert_eq!(describe(&obj), "Deployment shop/web");
        let ns: DynamicObject = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        )
        .unwrap();
        assert_eq!(describe(&ns), "Namespace shop");
    }

    #[test]
    fn client_errors_are_refusals_except_throttling_and_timeouts() {
        for code in [400, 403, 404, 409, 422] {
            assert!(is_refusal(code, ""), "{code}");
        }
        for code in [408, 429, 500, 503] {
            assert!(!is_refusal(code, "etcdserver: request timed out"), "{code}");
        }
        assert_eq!(manager_of(r#"conflict with "kubectl-edit" using apps/v1"#), "kubectl-edit");
        assert!(is_replaced(
            409,
            "Operation cannot be fulfilled on configmaps \"cfg\": Precondition failed: UID in precondition: 1, UID in object meta: 2"
        ));
        assert!(is_replaced(
            409,
            "Operation cannot be fulfilled on ConfigMap \"cfg\": the UID in the precondition (b7f) does not match the UID in record (d5d). The object might have been deleted and then recreated"
        ));
        assert!(!is_replaced(409, "the object has been modified"));
        assert!(is_refusal(
            500,
            "failed to create typed patch object (ns/web; apps/v1, Kind=Deployment): .spec.replicas: expected numeric"
        ));
    }
}
