//! Apply order: what other objects depend on goes first.

/// Phases in apply order; prune runs them in reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApplyPhase {
    /// CustomResourceDefinitions; the sync waits until they are Established before going on, so
    /// custom resources of them in the same revision can be applied.
    Crds,
    Namespaces,
    /// Cluster-scoped RBAC and configuration: ClusterRoles, StorageClasses, PriorityClasses, ...
    ClusterConfig,
    /// Namespaced configuration: ServiceAccounts, ConfigMaps, Secrets, Roles, quotas, ...
    NamespacedConfig,
    Services,
    Workloads,
    /// Everything else: Ingresses, HPAs, PDBs, custom resources, ...
    Rest,
}

impl ApplyPhase {
    pub const ALL: [ApplyPhase; 7] = [
        ApplyPhase::Crds,
        ApplyPhase::Namespaces,
        ApplyPhase::ClusterConfig,
        ApplyPhase::NamespacedConfig,
        ApplyPhase::Services,
        ApplyPhase::Workloads,
        ApplyPhase::Rest,
    ];
}

/// The phase of an object of this group and kind. `namespaced` is the kind's scope, from
/// discovery or the renderer's built-in table.
pub fn phase_of(group: &str, kind: &str, namespaced: bool) -> ApplyPhase {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => ApplyPhase::Crds,
        ("", "Namespace") => ApplyPhase::Namespaces,
        (
            "",
            "ServiceAccount"
            | "ConfigMap"
            | "Secret"
            | "LimitRange"
            | "ResourceQuota"
            | "PersistentVolumeClaim",
        )
        | ("rbac.authorization.k8s.io", "Role" | "RoleBinding")
        | ("networking.k8s.io", "NetworkPolicy") => ApplyPhase::NamespacedConfig,
        ("", "Service") => ApplyPhase::Services,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob")
        | ("", "Pod" | "ReplicationController") => ApplyPhase::Workloads,
        _ if !namespaced => ApplyPhase::ClusterConfig,
        _ => ApplyPhase::Rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first() {
        let kinds = [
            ("apps", "Deployment", true),
            ("networking.k8s.io", "Ingress", true),
            ("", "ConfigMap", true),
            ("apiextensions.k8s.io", "CustomResourceDefinition", false),
            ("example.com", "Widget", true),
            ("", "Service", true),
            ("rbac.authorization.k8s.io", "ClusterRole", false),
            ("", "Namespace", false),
        ];
        let mut sorted = kinds.to_vec();
        sorted.sort_by_key(|(g, k, n)| phase_of(g, k, *n));
        let order: Vec<&str> = sorted.iter().map(|(_, k, _)| *k).collect();
        assert_eq!(
            order,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ClusterRole",
                "ConfigMap",
                "Service",
                "Deployment",
                "Ingress",
                "Widget"
            ]
        );
    }

    #[test]
    fn unknown_cluster_scoped_kinds_go_with_cluster_config() {
        assert_eq!(phase_of("example.com", "ClusterWidget", false), ApplyPhase::ClusterConfig);
        assert_eq!(phase_of("example.com", "Widget", true), ApplyPhase::Rest);
        assert!(ApplyPhase::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
