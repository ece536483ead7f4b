//! What `helm install` learns from the cluster and `helm template` does not: the Kubernetes
//! version (`.Capabilities.KubeVersion`, checked against a chart's `kubeVersion`) and the API
//! versions served (`.Capabilities.APIVersions.Has`). Without them helm assumes v1.20 and only
//! its built-in API list, so real charts refuse to render or take the wrong branch.

use std::{
    collections::BTreeSet,
    hash::{DefaultHasher, Hash, Hasher},
};

use kube::Discovery;

/// The cluster as a chart sees it; passed to helm as `--kube-version` and `--api-versions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The API server's `gitVersion` (`v1.36.3`).
    pub kube_version: String,
    /// Every served `group/version` (`v1` for the core group) and `group/version/Kind`, sorted,
    /// the two forms `helm install` reads from discovery.
    pub api_versions: Vec<String>,
}

impl Capabilities {
    /// From a finished discovery and the API server's version.
    pub fn from_discovery(discovery: &Discovery, kube_version: &str) -> Capabilities {
        let mut versions = BTreeSet::new();
        for group in discovery.groups() {
            for version in group.versions() {
                let group_version = if group.name().is_empty() {
                    version.to_string()
                } else {
                    format!("{}/{version}", group.name())
                };
                for (resource, _) in group.versioned_resources(version) {
                    versions.insert(format!("{group_version}/{}", resource.kind));
                }
                versions.insert(group_version);
            }
        }
        Capabilities { kube_version: kube_version.to_string(), api_versions: versions.into_iter().collect() }
    }

    /// A hash for cache keys: a render depends on what the cluster serves.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// helm's flags, one value per flag (`--flag=value`, so no value can pass for a flag).
    pub(crate) fn helm_flags(&self) -> Vec<std::ffi::OsString> {
        let mut flags = Vec::with_capacity(self.api_versions.len() + 1);
        if !self.kube_version.is_empty() {
            flags.push(format!("--kube-version={}", self.kube_version).into());
        }
        flags.extend(self.api_versions.iter().map(|v| format!("--api-versions={v}").into()));
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_carry_the_version_and_every_api_version() {
        let caps = Capabilities {
            kube_version: "v1.36.3".into(),
            api_versions: vec!["apps/v1".into(), "apps/v1/Deployment".into(), "v1".into()],
        };
        let flags: Vec<String> = caps.helm_flags().into_iter().map(|f| f.into_string().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--kube-version=v1.36.3",
                "--api-versions=apps/v1",
                "--api-versions=apps/v1/Deployment",
                "--api-versions=v1"
            ]
        );
    }

    #[test]
    fn no_version_means_no_kube_version_flag() {
        assert!(Capabilities::default().helm_flags().is_empty());
        let a = Capabilities { kube_version: "v1.30.0".into(), ..Default::default() };
        assert_ne!(a.fingerprint(), Capabilities::default().fingerprint());
    }
}
