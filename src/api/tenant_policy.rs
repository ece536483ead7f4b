//! The `TenantPolicy` custom resource (`ferry.dev/v1alpha1`): what the Applications of some
//! namespaces may do, written by a platform team and enforced by ferry before any fetch.
//!
//! One shape for both installs: a namespaced object that ferry reads from one namespace only,
//! its own (`ferry run --policy-namespace`, the release namespace in the chart). Tenants get no
//! rights there, so only the platform team writes policies, and reading them needs a Role in one
//! namespace: the same in the cluster-wide install and in the Roles-only namespaced install.
//! A policy governs the Applications of the namespaces `applicationNamespaces` names, wherever
//! the policy itself lives.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule of a list of globs: each non-empty, without spaces. `*` matches any run of
/// characters, `?` one character.
const GLOBS_RULE: &str = "self.all(g, size(g) > 0 && !g.contains(' '))";
const GLOBS_MESSAGE: &str =
    "each entry is a name or a glob, non-empty and without spaces; * matches any run of characters";

/// What the Applications of some namespaces may do. Every policy that selects an Application's
/// namespace applies: an Application may do only what all of them allow.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "TenantPolicy",
    namespaced,
    shortname = "ftenant",
    category = "ferry",
    doc = "A TenantPolicy limits the Applications of some namespaces: which repositories they may read, where their objects may go, which cluster-scoped kinds they may write, and which ServiceAccount they act as. ferry reads TenantPolicies from its own namespace only (--policy-namespace).",
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".spec.applicationNamespaces",
        description = "Application namespaces this policy governs"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicySpec {
    /// Namespaces whose Applications this policy governs: names or globs (`team-a`, `team-a-*`).
    #[schemars(length(min = 1, max = 64), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(GLOBS_RULE).message(GLOBS_MESSAGE))]
    pub application_namespaces: Vec<String>,

    /// Repository URLs those Applications may use, as globs over the URL as written in
    /// `spec.source.repoURL` (`https://git.example.com/team-a/*`); `*` allows any. A URL with
    /// credentials, `.` or `..` path segments or percent-encoded dots never matches.
    #[schemars(length(min = 1, max = 64), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(GLOBS_RULE).message(GLOBS_MESSAGE))]
    pub source_repos: Vec<String>,

    /// Namespaces their namespaced objects (and Namespace objects) may be written to: names or
    /// globs. Default: the Application's own namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(GLOBS_RULE).message(GLOBS_MESSAGE))]
    pub destination_namespaces: Vec<String>,

    /// API servers of the `Cluster`s they may deploy to, as globs over the kubeconfig's
    /// server URL (`https://*.prod.example.com:6443`). Default: none, only the cluster ferry
    /// runs in. In a remote cluster, too, they act as their ServiceAccount (impersonated there)
    /// and the other rules of the policy apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(GLOBS_RULE).message(GLOBS_MESSAGE))]
    pub cluster_servers: Vec<String>,

    /// Cluster-scoped kinds they may write. Default: none. A Namespace must in addition be
    /// named by `destinationNamespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub cluster_resources: Vec<GroupKind>,

    /// May `spec.source.ref.fromApplication` and `spec.dependsOn` name an Application in
    /// another namespace (ferry must also run with `--promotion-namespaces` naming it).
    /// Default: no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cross_namespace_refs: bool,

    /// ServiceAccount, in the Application's namespace, that Applications naming none act as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("defaultServiceAccount must be a ServiceAccount name (lower-case letters, digits, '-' and '.')"))]
    pub default_service_account: Option<String>,
}

/// An API group and kind; `*` for any group or any kind.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupKind {
    /// The API group: `""` (or omitted) for the core group, `rbac.authorization.k8s.io`, `*`.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    /// The kind: `Namespace`, `ClusterRole`, `*`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
}
