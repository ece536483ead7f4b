//! `ferry import`: Argo CD and Flux objects -> the equivalent ferry objects, as YAML with a
//! comment for every upstream field that does not map, and why.
//!
//! People move to ferry with manifests they already have; translating them by hand is where
//! fields get lost silently. Each upstream shape has its own file (`argo.rs`, `argo_set.rs`,
//! `flux_kustomization.rs`, `flux_helm.rs`, with the Flux sources they join in
//! `flux_sources.rs`); `input.rs` reads files, stdin or the cluster; `output.rs` prints. The
//! mapping itself is pure: upstream objects in, a [`Report`] out.

mod argo;
mod argo_set;
mod argo_source;
mod fields;
mod flux_helm;
mod flux_kustomization;
mod flux_sources;
pub mod input;
mod output;

use std::{collections::BTreeMap, fmt};

use serde_json::Value;

use crate::api::{Application, ApplicationSet};

pub use input::InputError;

/// The upstream kinds `ferry import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ArgoApplication,
    ArgoApplicationSet,
    GitRepository,
    OciRepository,
    HelmRepository,
    Kustomization,
    HelmRelease,
}

impl Kind {
    /// The kind of an object by its `apiVersion` and `kind`, when `ferry import` reads it.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        match (group, api_version, kind) {
            ("argoproj.io", _, "Application") => Some(Kind::ArgoApplication),
            ("argoproj.io", _, "ApplicationSet") => Some(Kind::ArgoApplicationSet),
            (_, "source.toolkit.fluxcd.io/v1" | "source.toolkit.fluxcd.io/v1beta2", k) => match k {
                "GitRepository" => Some(Kind::GitRepository),
                "OCIRepository" => Some(Kind::OciRepository),
                "HelmRepository" => Some(Kind::HelmRepository),
                _ => None,
            },
            (_, "kustomize.toolkit.fluxcd.io/v1", "Kustomization") => Some(Kind::Kustomization),
            (_, "helm.toolkit.fluxcd.io/v2", "HelmRelease") => Some(Kind::HelmRelease),
            _ => None,
        }
    }

    /// How people call it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ArgoApplication => "Argo CD Application",
            Kind::ArgoApplicationSet => "Argo CD ApplicationSet",
            Kind::GitRepository => "GitRepository",
            Kind::OciRepository => "OCIRepository",
            Kind::HelmRepository => "HelmRepository",
            Kind::Kustomization => "Kustomization",
            Kind::HelmRelease => "HelmRelease",
        }
    }
}

/// One upstream object: which, and where (namespace may be unset in a file).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

/// An upstream object as read: what it is, its labels and finalizers, and its `spec`.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub id: ObjectRef,
    pub labels: BTreeMap<String, String>,
    pub finalizers: Vec<String>,
    pub spec: Value,
}

/// An upstream field that does not map, and why. Never holds the field's value (it may be a
/// secret), only its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub field: String,
    pub why: String,
}

/// What one upstream object became.
#[derive(Clone, Debug)]
pub struct Imported {
    pub from: ObjectRef,
    /// The sources joined into it (a Kustomization's GitRepository).
    pub joined: Vec<ObjectRef>,
    /// `None` for a source nothing in the input uses.
    pub output: Option<Output>,
    pub notes: Vec<Note>,
}

/// A ferry object.
#[derive(Clone, Debug)]
pub enum Output {
    Application(Box<Application>),
    ApplicationSet(Box<ApplicationSet>),
}

/// Everything `ferry import` made of its input, in input order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub imported: Vec<Imported>,
}

impl Report {
    /// Whether some upstream field did not map (`ferry import` exits 1).
    pub fn has_notes(&self) -> bool {
        self.imported.iter().any(|i| !i.notes.is_empty())
    }

    /// The report as YAML documents, each preceded by comments naming its upstream object and
    /// the fields that did not map.
    pub fn to_yaml(&self) -> Result<String, ImportError> {
        output::yaml(self).map_err(ImportError::Serialize)
    }
}

/// What the person chose where upstream leaves a choice to the server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The branch Argo CD's `HEAD` (the repository's default branch) stands for.
    pub default_branch: Option<String>,
}

/// An upstream object ferry cannot express.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("{object}: {field}: expected {expected}")]
    Type { object: String, field: String, expected: &'static str },
    #[error("{object}: {field} is required")]
    Missing { object: String, field: String },
    #[error("{object}: {field}: {why}")]
    Invalid { object: String, field: String, why: String },
    #[error("{first} and {second} would both become the ferry {kind} {name}; rename one")]
    SameName { first: String, second: String, kind: &'static str, name: String },
    #[error(
        "{object}: {field} names {named}, which is not in the input; pass the file that defines it too (or use --from-cluster)"
    )]
    MissingSource { object: String, field: String, named: String },
}

impl MapError {
    fn type_error(object: &str, field: &str, expected: &'static str) -> MapError {
        MapError::Type { object: object.to_string(), field: field.to_string(), expected }
    }
}

/// Why `ferry import` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("cannot print the result as YAML: {0}")]
    Serialize(#[source] serde_saphyr::ser::Error),
}

/// The upstream objects, by what they are, for joining sources.
pub(crate) struct Index<'a> {
    objects: BTreeMap<ObjectRef, &'a Upstream>,
}

impl<'a> Index<'a> {
    /// The source `kind` `name` in `namespace`, or an error naming the field `key` of `referrer`
    /// that refers to it.
    fn find(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        referrer: &fields::Fields,
        key: &str,
    ) -> Result<&'a Upstream, MapError> {
        let id = ObjectRef { kind, namespace: namespace.map(str::to_string), name: name.to_string() };
        self.objects.get(&id).copied().ok_or_else(|| MapError::MissingSource {
            object: referrer.object().to_string(),
            field: referrer.field(key),
            named: id.to_string(),
        })
    }
}

/// Maps every object; the first one ferry cannot express fails the whole import, so nothing is
/// printed half-done.
pub fn import(objects: &[Upstream], options: &Options) -> Result<Report, ImportError> {
    let index = Index { objects: objects.iter().map(|o| (o.id.clone(), o)).collect() };
    let mut used = std::collections::BTreeSet::new();
    let mut report = Report::default();
    for object in objects {
        let imported = match object.id.kind {
            Kind::ArgoApplication => argo::import(object, options)?,
            Kind::ArgoApplicationSet => argo_set::import(object, options)?,
            Kind::Kustomization => flux_kustomization::import(object, &index)?,
            Kind::HelmRelease => flux_helm::import(object, &index)?,
            Kind::GitRepository | Kind::OciRepository | Kind::HelmRepository => continue,
        };
        used.extend(imported.joined.iter().cloned());
        report.imported.push(imported);
    }
    check_names(&report)?;
    for source in objects.iter().filter(|o| is_source(o.id.kind) && !used.contains(&o.id)) {
        report.imported.push(Imported {
            from: source.id.clone(),
            joined: Vec::new(),
            output: None,
            notes: vec![Note {
                field: "(the whole object)".into(),
                why: "no Kustomization or HelmRelease in the input uses it; in ferry a source is part of the Application that syncs it".into(),
            }],
        });
    }
    Ok(report)
}

/// Refuses two upstream objects that map to one ferry object (a Kustomization and a
/// HelmRelease of the same name and namespace): printing both would make the second replace
/// the first when applied.
fn check_names(report: &Report) -> Result<(), MapError> {
    let mut seen = BTreeMap::new();
    for imported in &report.imported {
        let (kind, meta) = match &imported.output {
            Some(Output::Application(a)) => ("Application", &a.metadata),
            Some(Output::ApplicationSet(s)) => ("ApplicationSet", &s.metadata),
            None => continue,
        };
        let name = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("-"),
            meta.name.as_deref().unwrap_or_default()
        );
        if let Some(first) = seen.insert((kind, name.clone()), &imported.from) {
            return Err(MapError::SameName {
                first: first.to_string(),
                second: imported.from.to_string(),
                kind,
                name,
            });
        }
    }
    Ok(())
}

fn is_source(kind: Kind) -> bool {
    matches!(kind, Kind::GitRepository | Kind::OciRepository | Kind::HelmRepository)
}

/// Upstream labels worth keeping on the ferry object: not those the upstream controllers set.
fn kept_labels(labels: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| !(k.contains("fluxcd.io/") || k.contains("argoproj.io/")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// `metadata` of the ferry object made from `from`.
fn metadata(from: &Upstream) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(from.id.name.clone()),
        namespace: from.id.namespace.clone(),
        labels: kept_labels(&from.labels),
        ..Default::default()
    }
}

/// A polling interval ferry accepts (a duration of 1s to 8760h), or an error naming the field.
fn interval(fields: &fields::Fields, key: &str, text: &str) -> Result<String, MapError> {
    let ok = crate::duration::parse(text).is_some_and(|d| d >= std::time::Duration::from_secs(1))
        && regex::Regex::new(crate::api::DURATION_PATTERN).is_ok_and(|r| r.is_match(text));
    if ok { Ok(text.to_string()) } else { Err(fields.invalid(key, "not a duration from 1s to 8760h")) }
}

/// The shorter of two intervals (ferry has one interval where Flux has the source's and the
/// object's: the shorter keeps both checks at least as frequent).
fn shorter(a: String, b: Option<String>) -> String {
    let len = |s: &str| crate::duration::parse(s).unwrap_or(crate::duration::MAX);
    match b {
        Some(b) if len(&b) < len(&a) => b,
        _ => a,
    }
}

/// A Helm release name ferry (and Helm) accepts.
fn is_release_name(name: &str) -> bool {
    name.len() <= 53 && regex::Regex::new(crate::api::RELEASE_NAME_PATTERN).is_ok_and(|r| r.is_match(name))
}

/// A path inside a repository as ferry writes it: `./deploy/` -> `deploy`; the root -> `None`.
fn repo_path(fields: &fields::Fields, key: &str, path: Option<String>) -> Result<Option<String>, MapError> {
    let Some(path) = path else { return Ok(None) };
    let trimmed = path.trim_start_matches("./").trim_end_matches('/');
    if trimmed.starts_with('/') || trimmed.split('/').any(|p| p == "..") {
        return Err(fields.invalid(key, "must be relative to the repository root, without '..'"));
    }
    Ok((!trimmed.is_empty() && trimmed != ".").then(|| trimmed.to_string()))
}

/// An upstream object of `kind` in `namespace` with `spec`, as the mappings' unit tests write them.
#[cfg(test)]
pub(crate) fn upstream(kind: Kind, namespace: &str, name: &str, spec: serde_json::Value) -> Upstream {
    Upstream {
        id: ObjectRef { kind, namespace: Some(namespace.into()), name: name.into() },
        labels: Default::default(),
        finalizers: Vec::new(),
        spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_recognised_by_group_version_and_kind() {
        assert_eq!(Kind::of("argoproj.io/v1alpha1", "Application"), Some(Kind::ArgoApplication));
        assert_eq!(Kind::of("source.toolkit.fluxcd.io/v1beta2", "OCIRepository"), Some(Kind::OciRepository));
        assert_eq!(Kind::of("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), Some(Kind::Kustomization));
        assert_eq!(Kind::of("kustomize.config.k8s.io/v1beta1", "Kustomization"), None);
        assert_eq!(Kind::of("v1", "ConfigMap"), None);
    }

    #[test]
    fn two_objects_that_become_one_application_are_an_error() {
        let object = |kind, spec: Value| Upstream {
            id: ObjectRef { kind, namespace: Some("apps".into()), name: "podinfo".into() },
            labels: Default::default(),
            finalizers: Vec::new(),
            spec,
        };
        let objects = [
            object(Kind::GitRepository, serde_json::json!({"url": "https://g/x"})),
            object(
                Kind::Kustomization,
                serde_json::json!({"sourceRef": {"kind": "GitRepository", "name": "podinfo"}, "interval": "1m", "prune": true}),
            ),
            object(
                Kind::ArgoApplication,
                serde_json::json!({"source": {"repoURL": "https://g/x", "targetRevision": "main"}}),
            ),
        ];
        let err = import(&objects, &Options::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            "Kustomization apps/podinfo and Argo CD Application apps/podinfo would both become the ferry Application apps/podinfo; rename one"
        );
    }

    /// Every fixture, with each of its values in turn replaced by values of other types and
    /// shapes: the mapping may refuse them, never panic.
    #[test]
    fn no_value_in_any_field_makes_the_mapping_panic() {
        let fixtures = [
            include_str!("../../tests/fixtures/import/argo-git-kustomize.yaml"),
            include_str!("../../tests/fixtures/import/argo-helm-chart.yaml"),
            include_str!("../../tests/fixtures/import/argo-multi-source.yaml"),
            include_str!("../../tests/fixtures/import/argo-appset-list.yaml"),
            include_str!("../../tests/fixtures/import/flux-git-kustomization.yaml"),
            include_str!("../../tests/fixtures/import/flux-helm-release.yaml"),
            include_str!("../../tests/fixtures/import/flux-oci.yaml"),
        ];
        let odd = [
            Value::Null,
            serde_json::json!(7),
            serde_json::json!(""),
            serde_json::json!("{{"),
            serde_json::json!("é/../$values/é"),
            serde_json::json!(":"),
            serde_json::json!([]),
            serde_json::json!([{}]),
            serde_json::json!({}),
        ];
        let mut runs = 0;
        for text in fixtures {
            let objects = input::parse_text("fixture", text).unwrap();
            for (i, object) in objects.iter().enumerate() {
                for path in leaf_paths(&object.spec, String::new()) {
                    for value in &odd {
                        let mut changed = objects.clone();
                        if let Some(slot) = changed[i].spec.pointer_mut(&path) {
                            *slot = value.clone();
                        }
                        if let Ok(report) = import(&changed, &Options::default()) {
                            report.to_yaml().unwrap();
                        }
                        runs += 1;
                    }
                }
            }
        }
        assert!(runs > 1000, "{runs}");
    }

    /// JSON pointers to every value under `value`.
    fn leaf_paths(value: &Value, at: String) -> Vec<String> {
        let mut out = vec![at.clone()];
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.extend(leaf_paths(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"))))
            }),
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, v)| out.extend(leaf_paths(v, format!("{at}/{i}"))))
            }
            _ => {}
        }
        out
    }

    #[test]
    fn intervals_and_paths_are_checked() {
        let f = fields::Fields::new("o", "spec", None).unwrap();
        assert_eq!(interval(&f, "interval", "10m0s").unwrap(), "10m0s");
        assert!(interval(&f, "interval", "500ms").is_err());
        assert!(interval(&f, "interval", "10 minutes").is_err());
        assert_eq!(shorter("10m".into(), Some("1m".into())), "1m");
        assert_eq!(shorter("10m".into(), None), "10m");
        assert_eq!(repo_path(&f, "path", Some("./deploy/".into())).unwrap().as_deref(), Some("deploy"));
        assert_eq!(repo_path(&f, "path", Some("./".into())).unwrap(), None);
        assert!(repo_path(&f, "path", Some("../x".into())).is_err());
        assert!(is_release_name("podinfo") && !is_release_name("Pod_Info"));
    }
}
