//! Namespaced or cluster-scoped: which objects get the destination namespace.
//!
//! The answer comes, in order, from a CustomResourceDefinition in the same render (a CRD decides
//! its own kinds, even before it exists in the cluster), then from a [`ScopeResolver`] — API
//! discovery when the controller has a cluster, a built-in table of Kubernetes kinds otherwise —
//! and finally defaults to namespaced, the common case for custom kinds.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
};

use kube::{
    Client,
    discovery::{Discovery, Scope},
};

use super::parse::Manifest;

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KindScope {
    Namespaced,
    Cluster,
}

/// Answers "is this kind namespaced?". Implementations must be cheap: they are asked once per
/// rendered object.
pub trait ScopeResolver: Send + Sync {
    /// The scope of `kind` in API group `group` (empty for the core group), or `None` when
    /// unknown.
    fn scope(&self, group: &str, kind: &str) -> Option<KindScope>;

    /// Changes whenever an answer of [`ScopeResolver::scope`] may have changed. The render
    /// cache keys on it, so a refreshed discovery is never answered from a stale render.
    fn fingerprint(&self) -> u64;
}

/// Cluster-scoped kinds of Kubernetes itself (1.36) and of Gateway API, keyed by group.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "RuntimeClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"),
    ("authentication.k8s.io", "TokenReview"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// The built-in table, for rendering without a cluster (`ferry diff` offline, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinScopes;

impl ScopeResolver for BuiltinScopes {
    fn scope(&self, group: &str, kind: &str) -> Option<KindScope> {
        CLUSTER_SCOPED.iter().any(|(g, k)| *g == group && *k == kind).then_some(KindScope::Cluster)
    }

    fn fingerprint(&self) -> u64 {
        0
    }
}

/// A snapshot of the cluster's API discovery, falling back to the built-in table for kinds the
/// cluster does not serve.
#[derive(Debug, Clone, Default)]
pub struct DiscoveredScopes {
    kinds: HashMap<(String, String), KindScope>,
    fingerprint: u64,
}

impl DiscoveredScopes {
    /// Runs discovery against the cluster (aggregated discovery, one request, when the API
    /// server offers it).
    pub async fn discover(client: Client) -> Result<Self, kube::Error> {
        let discovery = match Discovery::new(client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => Discovery::new(client).run().await?,
        };
        Ok(Self::from_discovery(&discovery))
    }

    /// Takes every kind of every served version from a finished discovery.
    pub fn from_discovery(discovery: &Discovery) -> Self {
        let mut kinds = BTreeMap::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    let scope = match caps.scope {
                        Scope::Cluster => KindScope::Cluster,
                        Scope::Namespaced => KindScope::Namespaced,
                    };
                    kinds.insert((resource.group.clone(), resource.kind.clone()), scope);
                }
            }
        }
        Self::from_kinds(kinds)
    }

    /// From a plain table of `(group, kind) -> scope`.
    pub fn from_kinds(kinds: impl IntoIterator<Item = ((String, String), KindScope)>) -> Self {
        let kinds: BTreeMap<_, _> = kinds.into_iter().collect();
        let mut hasher = DefaultHasher::new();
        kinds.hash(&mut hasher);
        DiscoveredScopes { fingerprint: hasher.finish(), kinds: kinds.into_iter().collect() }
    }

    /// Number of kinds discovered.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

impl ScopeResolver for DiscoveredScopes {
    fn scope(&self, group: &str, kind: &str) -> Option<KindScope> {
        // Borrowed lookups on a tuple key need an owned key; kinds are short, this is cheap.
        self.kinds
            .get(&(group.to_owned(), kind.to_owned()))
            .copied()
            .or_else(|| BuiltinScopes.scope(group, kind))
    }

    fn fingerprint(&self) -> u64 {
        // Never 0, which is BuiltinScopes' fingerprint.
        self.fingerprint | 1
    }
}

/// The API group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Kinds declared by CustomResourceDefinitions among `manifests`.
pub fn crd_scopes(manifests: &[Manifest]) -> HashMap<(String, String), KindScope> {
    let mut out = HashMap::new();
    for m in manifests {
        let Some(types) = &m.object.types else { continue };
        if types.kind != "CustomResourceDefinition" || group_of(&types.api_version) != "apiextensions.k8s.io"
        {
            continue;
        }
        let spec = &m.object.data["spec"];
        let (Some(group), Some(kind), Some(scope)) =
            (spec["group"].as_str(), spec["names"]["kind"].as_str(), spec["scope"].as_str())
        else {
            continue;
        };
        let scope = if scope == "Cluster" { KindScope::Cluster } else { KindScope::Namespaced };
        out.insert((group.to_owned(), kind.to_owned()), scope);
    }
    out
}

/// Gives every namespaced object without a namespace `default_namespace`, and removes the
/// namespace of cluster-scoped objects (the API server ignores it; keeping it would make the
/// same object look different in plans and duplicate checks).
pub fn assign_namespaces(manifests: &mut [Manifest], default_namespace: &str, resolver: &dyn ScopeResolver) {
    let from_crds = crd_scopes(manifests);
    for m in manifests.iter_mut() {
        let Some(types) = &m.object.types else { continue };
        let key = (group_of(&types.api_version).to_owned(), types.kind.clone());
        let scope = from_crds
            .get(&key)
            .copied()
            .or_else(|| resolver.scope(&key.0, &key.1))
            .unwrap_or(KindScope::Namespaced);
        let ns = &mut m.object.metadata.namespace;
        match scope {
            KindScope::Namespaced if ns.as_deref().is_none_or(str::is_empty) => {
                *ns = Some(default_namespace.to_owned())
            }
            KindScope::Cluster => *ns = None,
            KindScope::Namespaced => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::parse::parse_yaml;

    fn ns_of(ms: &[Manifest]) -> Vec<(String, Option<String>)> {
        ms.iter()
            .map(|m| (m.object.metadata.name.clone().unwrap(), m.object.metadata.namespace.clone()))
            .collect()
    }

    const OBJECTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kept, namespace: other}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns, namespace: ignored}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cr}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {kind: Gadget, plural: gadgets}
"#;

    #[test]
    fn builtin_table_and_crds_in_the_render() {
        let mut ms = parse_yaml("o.yaml", OBJECTS).unwrap();
        assign_namespaces(&mut ms, "shop", &BuiltinScopes);
        assert_eq!(
            ns_of(&ms),
            [
                ("cm".to_string(), Some("shop".to_string())),
                ("kept".into(), Some("other".into())),
                ("ns".into(), None),
                ("cr".into(), None),
                // Unknown kinds are namespaced...
                ("w".into(), Some("shop".into())),
                // ...unless a CRD in the same render says otherwise.
                ("g".into(), None),
                ("gadgets.example.com".into(), None),
            ]
        );
    }

    #[test]
    fn discovered_scopes_win_over_the_table_and_fall_back_to_it() {
        let discovered = DiscoveredScopes::from_kinds([
            (("example.com".to_string(), "Widget".to_string()), KindScope::Cluster),
            (("".to_string(), "ConfigMap".to_string()), KindScope::Namespaced),
        ]);
        assert_eq!(discovered.scope("example.com", "Widget"), Some(KindScope::Cluster));
        assert_eq!(discovered.scope("", "Namespace"), Some(KindScope::Cluster), "table fallback");
        assert_eq!(discovered.scope("example.com", "Nope"), None);
        let mut ms = parse_yaml("o.yaml", OBJECTS).unwrap();
        assign_namespaces(&mut ms, "shop", &discovered);
        assert_eq!(ms[4].object.metadata.namespace, None, "Widget is cluster-scoped per discovery");

        let other = DiscoveredScopes::from_kinds([(
            ("example.com".to_string(), "Widget".to_string()),
            KindScope::Namespaced,
        )]);
        assert_ne!(discovered.fingerprint(), other.fingerprint());
        assert_ne!(discovered.fingerprint(), BuiltinScopes.fingerprint());
    }

    #[test]
    fn groups() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("gateway.networking.k8s.io/v1"), "gateway.networking.k8s.io");
    }
}
