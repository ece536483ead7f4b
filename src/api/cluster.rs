//! The `Cluster` custom resource (`ferry.dev/v1alpha1`): a Kubernetes cluster ferry does not run
//! in, reached through a kubeconfig in a Secret beside it. Namespaced, so that a team owns its
//! clusters as it owns its Applications: an Application names a Cluster of its own namespace in
//! `spec.destination.cluster`, and ferry reads the kubeconfig Secret of that namespace only.
//! The Cluster's labels (`env: prod`, `region: eu`) are what ApplicationSets select clusters by.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A remote cluster and how to reach it.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "fcluster",
    category = "ferry",
    doc = "A Cluster is a Kubernetes cluster ferry deploys to from here, reached with the kubeconfig in a Secret of the same namespace. Applications of that namespace name it in spec.destination.cluster; its labels are what ApplicationSets select clusters by.",
    printcolumn(
        name = "Reachable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether ferry reaches the cluster"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.kubernetesVersion",
        description = "Kubernetes version of the cluster"
    ),
    printcolumn(
        name = "Applications",
        type_ = "integer",
        json_path = ".status.applications",
        description = "Applications deploying to the cluster"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The kubeconfig to reach the cluster with.
    pub kube_config: KubeConfigReference,
}

/// Where the kubeconfig is: a key of a Secret in the Cluster's namespace. Only inline
/// credentials are accepted (a bearer token, basic auth, or a client certificate and key) and
/// an `https://` server verified by its CA; exec plugins, auth providers, files, proxies and
/// impersonation are refused with a message naming the field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigReference {
    pub secret_ref: SecretKeyReference,
    /// The context to use. Default: the kubeconfig's current-context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub context: Option<String>,
}

/// A Secret of the referring object's namespace, and a key of it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("name must be a Secret name (lower-case letters, digits, '-' and '.')"))]
    pub name: String,
    /// The key holding the kubeconfig. Default: `value`, else `value.yaml` (as Flux's
    /// `kubeConfig.secretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("key must be a Secret key (letters, digits, '-', '_' and '.')"))]
    pub key: Option<String>,
}

/// What ferry knows of the cluster. Written only by ferry, and only when it changes (and
/// `lastContact` at most every five minutes while the cluster is reachable).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True while ferry reaches the cluster's API server with the kubeconfig; False with
    /// reason `ClusterUnreachable` or `InvalidKubeconfig` and the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The API server's version, e.g. `v1.36.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// When ferry last had an answer from the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Time>,
    /// How many Applications deploy to the cluster.
    #[serde(default)]
    pub applications: i32,
}

/// The key of the kubeconfig Secret ferry reads when `key` is unset, in order.
pub const KUBECONFIG_KEYS: [&str; 2] = ["value", "value.yaml"];

/// `namespace/name` of an Application's destination cluster: `None` for the cluster ferry runs in.
pub fn destination_cluster(app: &super::Application) -> Option<&str> {
    app.spec.destination.as_ref().and_then(|d| d.cluster.as_deref())
}
