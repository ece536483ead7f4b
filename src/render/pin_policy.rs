//! `spec.policy.requirePinnedImages`: a revision names exactly what runs, so an image must carry
//! a tag other than `latest` (or a digest); with `require_digest`, a `sha256` digest.
//!
//! Any object is checked at the usual pod template paths, not only the kinds Kubernetes ships:
//! custom workloads (Argo Rollouts, Knative, OpenKruise) embed `spec.template` too.

use serde_json::Value;

use super::{
    error::{ImageViolation, RenderError, UnpinnedReason},
    parse::Manifest,
};

/// What the policy demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinPolicy {
    /// Refuse images without a tag or with `:latest` (a digest also pins).
    pub require_pinned: bool,
    /// Also refuse images without an `@sha256:` digest.
    pub require_digest: bool,
}

/// An image reference split at its tag and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Splits `[host[:port]/]path[:tag][@digest]`. The tag is looked for after the last `/` only,
    /// because a registry port (`localhost:5000/app`) is not a tag.
    pub fn parse(image: &'a str) -> Self {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        let last_segment = rest.rfind('/').map_or(0, |i| i + 1);
        match rest[last_segment..].rfind(':') {
            Some(colon) => {
                let at = last_segment + colon;
                ImageRef { name: &rest[..at], tag: Some(&rest[at + 1..]), digest }
            }
            None => ImageRef { name: rest, tag: None, digest },
        }
    }
}

/// Why `image` breaks `policy`, or `None` when it is pinned enough.
pub fn image_problem(image: &str, policy: PinPolicy) -> Option<UnpinnedReason> {
    if !policy.require_pinned && !policy.require_digest {
        return None;
    }
    let image = image.trim();
    if image.is_empty() {
        return Some(UnpinnedReason::Missing);
    }
    let r = ImageRef::parse(image);
    match r.digest {
        Some(d) if !is_sha256_digest(d) => Some(UnpinnedReason::InvalidDigest),
        // A digest pins the content whatever the tag says, even `latest`.
        Some(_) => None,
        None if policy.require_digest => Some(UnpinnedReason::NoDigest),
        None => match r.tag {
            None | Some("") => Some(UnpinnedReason::NoTag),
            Some("latest") => Some(UnpinnedReason::LatestTag),
            Some(_) => None,
        },
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where pod specs live, by path from the object root.
const POD_SPEC_PATHS: &[&[&str]] = &[
    // Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, and lookalikes.
    &["spec", "template", "spec"],
    // CronJob.
    &["spec", "jobTemplate", "spec", "template", "spec"],
    // PodTemplate.
    &["template", "spec"],
];

const CONTAINER_LISTS: &[(&str, &str)] = &[
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
];

/// Every container image in `m`, as `(which container, image)`; a missing image is `""`.
pub fn container_images(m: &Manifest) -> Vec<(String, String)> {
    let root = &m.object.data;
    let mut specs: Vec<&Value> = Vec::new();
    if m.object.types.as_ref().is_some_and(|t| t.kind == "Pod") {
        specs.push(&root["spec"]);
    }
    for path in POD_SPEC_PATHS {
        let spec = path.iter().fold(root, |v, key| &v[*key]);
        if spec.is_object() {
            specs.push(spec);
        }
    }
    let mut out = Vec::new();
    for spec in specs {
        for (list, label) in CONTAINER_LISTS {
            for (i, c) in spec[*list].as_array().into_iter().flatten().enumerate() {
                let name = c["name"].as_str().map_or_else(|| format!("#{i}"), str::to_owned);
                out.push((format!("{label} {name}"), c["image"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    out
}

/// Checks every image of every object; lists every violation rather than stopping at the first,
/// so one commit can fix them all.
pub fn check_images(manifests: &[Manifest], policy: PinPolicy) -> Result<(), RenderError> {
    if !policy.require_pinned && !policy.require_digest {
        return Ok(());
    }
    let mut violations = Vec::new();
    for m in manifests {
        for (container, image) in container_images(m) {
            if let Some(reason) = image_problem(&image, policy) {
                violations.push(ImageViolation {
                    object: super::describe(&m.object),
                    container,
                    image,
                    reason,
                    origin: m.origin.clone(),
                });
            }
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(RenderError::UnpinnedImages(violations)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::parse::parse_yaml;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_table() {
        let pinned = PinPolicy { require_pinned: true, require_digest: false };
        let digest = PinPolicy { require_pinned: true, require_digest: true };
        let repo_digest = format!("repo/app@{DIGEST}");
        let repo_tag_digest = format!("repo/app:1@{DIGEST}");
        let latest_digest = format!("nginx:latest@{DIGEST}");
        use UnpinnedReason::*;
        let table: Vec<(&str, Option<UnpinnedReason>, Option<UnpinnedReason>)> = vec![
            ("nginx", Some(NoTag), Some(NoDigest)),
            ("nginx:latest", Some(LatestTag), Some(NoDigest)),
            ("nginx:1.27", None, Some(NoDigest)),
            ("localhost:5000/app", Some(NoTag), Some(NoDigest)),
            ("localhost:5000/app:1", None, Some(NoDigest)),
            ("localhost:5000/app:latest", Some(LatestTag), Some(NoDigest)),
            ("docker.io/library/nginx", Some(NoTag), Some(NoDigest)),
            (&repo_digest, None, None),
            (&repo_tag_digest, None, None),
            (&latest_digest, None, None),
            ("repo/app@sha256:abc", Some(InvalidDigest), Some(InvalidDigest)),
            ("repo/app:", Some(NoTag), Some(NoDigest)),
            ("", Some(Missing), Some(Missing)),
        ];
        for (image, want_pinned, want_digest) in table {
            assert_eq!(image_problem(image, pinned), want_pinned, "{image} (tag policy)");
            assert_eq!(image_problem(image, digest), want_digest, "{image} (digest policy)");
            assert_eq!(image_problem(image, PinPolicy::default()), None, "{image} (no policy)");
        }
    }

    #[test]
    fn parse_splits_registry_port_from_tag() {
        assert_eq!(
            ImageRef::parse("localhost:5000/app"),
            ImageRef { name: "localhost:5000/app", tag: None, digest: None }
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/team/app:1.2@sha256:x"),
            ImageRef { name: "localhost:5000/team/app", tag: Some("1.2"), digest: Some("sha256:x") }
        );
    }

    #[test]
    fn every_pod_template_path_and_container_list() {
        let yaml = format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: ns}}
spec:
  containers: [{{name: a, image: "nginx:1"}}]
  ephemeralContainers: [{{name: debug, image: busybox}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d, namespace: ns}}
spec:
  template:
    spec:
      initContainers: [{{name: migrate, image: "app:latest"}}]
      containers: [{{name: web, image: "app@{DIGEST}"}}, {{name: side}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: c, namespace: ns}}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{{name: job, image: "localhost:5000/job"}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cm, namespace: ns}}
data: {{image: nginx}}
"#
        );
        let ms = parse_yaml("w.yaml", &yaml).unwrap();
        let err = check_images(&ms, PinPolicy { require_pinned: true, require_digest: false }).unwrap_err();
        let RenderError::UnpinnedImages(v) = &err else { panic!("{err}") };
        let got: Vec<(&str, &str, &str, UnpinnedReason)> =
            v.iter().map(|v| (v.object.as_str(), v.container.as_str(), v.image.as_str(), v.reason)).collect();
        assert_eq!(
            got,
            [
                ("Pod ns/p", "ephemeralContainer debug", "busybox", UnpinnedReason::NoTag),
                ("Deployment ns/d", "initContainer migrate", "app:latest", UnpinnedReason::LatestTag),
                ("Deployment ns/d", "container side", "", UnpinnedReason::Missing),
                ("CronJob ns/c", "container job", "localhost:5000/job", UnpinnedReason::NoTag),
            ]
        );
        assert_eq!(v[1].origin.doc, 2);
        assert!(err.to_string().contains("Deployment ns/d initContainer migrate: image \"app:latest\" uses the moving :latest tag [w.yaml (document 2"), "{err}");
        assert_eq!(err.category(), "unpinned_image");
        check_images(&ms, PinPolicy::default()).unwrap();
    }
}
