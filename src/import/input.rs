//! Where `ferry import` reads upstream objects: YAML files (several documents each, `-` for
//! stdin) through the renderer's own parser and its limits, or the cluster of the current
//! kubeconfig. Any object that is not an Argo CD or Flux kind `ferry import` knows is an
//! error: a typo in a kind must not vanish from the output.

use std::{io::Read, path::Path, time::Duration};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
};
use serde_json::Value;

use super::{Kind, ObjectRef, Upstream};
use crate::render::{RenderError, parse};

/// The largest input file (or stdin) read: far beyond any hand-written manifest.
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Why the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {input}: {source}")]
    Read { input: String, source: std::io::Error },
    #[error("{input} is larger than {} MiB", MAX_INPUT_BYTES >> 20)]
    TooLarge { input: String },
    #[error(transparent)]
    Parse(Box<RenderError>),
    #[error(
        "{input}: {kind} {name} ({api_version}) is not something ferry import reads: Argo CD Application or ApplicationSet, Flux GitRepository, OCIRepository, HelmRepository (source.toolkit.fluxcd.io/v1 or v1beta2), Kustomization (kustomize.toolkit.fluxcd.io/v1) or HelmRelease (helm.toolkit.fluxcd.io/v2)"
    )]
    UnknownKind { input: String, api_version: String, kind: String, name: String },
    #[error("{first} appears twice in the input")]
    Duplicate { first: String },
    #[error("no usable Kubernetes configuration ({0}); set KUBECONFIG")]
    NoConfig(#[source] kube::Error),
    #[error("cannot list {what}: {source}")]
    List { what: String, source: kube::Error },
    #[error("the API server did not answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("name files to read, - for stdin, or pass --from-cluster")]
    Nothing,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// The upstream objects in `paths` (`-`: stdin), in order.
pub fn read_files(paths: &[impl AsRef<Path>]) -> Result<Vec<Upstream>, InputError> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let (name, text) = if path == Path::new("-") {
            ("stdin".to_string(), read_limited(std::io::stdin().lock(), "stdin")?)
        } else {
            let name = path.display().to_string();
            let file = std::fs::File::open(path)
                .map_err(|source| InputError::Read { input: name.clone(), source })?;
            let text = read_limited(file, &name)?;
            (name, text)
        };
        out.extend(parse_text(&name, &text)?);
    }
    Ok(out)
}

fn read_limited(reader: impl Read, input: &str) -> Result<String, InputError> {
    let mut text = String::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| InputError::Read { input: input.to_string(), source })?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge { input: input.to_string() });
    }
    Ok(text)
}

/// The upstream objects in one YAML text (`input` names it in errors).
pub fn parse_text(input: &str, text: &str) -> Result<Vec<Upstream>, InputError> {
    let manifests = parse::parse_yaml(input, text).map_err(|e| InputError::Parse(Box::new(e)))?;
    manifests.into_iter().map(|m| upstream(&m.origin.to_string(), m.object)).collect()
}

/// An object read from a file or the cluster, if it is a kind `ferry import` knows.
fn upstream(input: &str, object: DynamicObject) -> Result<Upstream, InputError> {
    let (api_version, kind) =
        object.types.as_ref().map(|t| (t.api_version.clone(), t.kind.clone())).unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let Some(known) = Kind::of(&api_version, &kind) else {
        return Err(InputError::UnknownKind { input: input.to_string(), api_version, kind, name });
    };
    Ok(Upstream {
        id: ObjectRef { kind: known, namespace: object.metadata.namespace.clone(), name },
        labels: object.metadata.labels.clone().unwrap_or_default(),
        finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
        spec: object.data.get("spec").cloned().unwrap_or(Value::Null),
    })
}

/// Refuses an input that holds one object twice (which one would win is a guess).
pub fn check_unique(objects: &[Upstream]) -> Result<(), InputError> {
    let mut seen = std::collections::BTreeSet::new();
    for o in objects {
        if !seen.insert(&o.id) {
            return Err(InputError::Duplicate { first: o.id.to_string() });
        }
    }
    Ok(())
}

/// The upstream kinds as the API server serves them: group, version, kind, plural.
const SERVED: [(&str, &str, &str, &str); 7] = [
    ("argoproj.io", "v1alpha1", "Application", "applications"),
    ("argoproj.io", "v1alpha1", "ApplicationSet", "applicationsets"),
    ("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
    ("source.toolkit.fluxcd.io", "v1", "OCIRepository", "ocirepositories"),
    ("source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories"),
    ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"),
    ("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"),
];

/// Every upstream object in the cluster of the current kubeconfig (in `namespace`, or in all
/// namespaces). A kind whose CRD is not installed (or not at that version) is skipped.
pub async fn from_cluster(namespace: Option<&str>) -> Result<Vec<Upstream>, InputError> {
    let client = Client::try_default().await.map_err(InputError::NoConfig)?;
    let mut out = Vec::new();
    for (group, version, kind, plural) in SERVED {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let list = match tokio::time::timeout(TIMEOUT, api.list(&ListParams::default())).await {
            Err(_) => return Err(InputError::Timeout),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => continue,
            Ok(Err(source)) => return Err(InputError::List { what: format!("{plural}.{group}"), source }),
            Ok(Ok(list)) => list,
        };
        for mut object in list.items {
            // A list's items carry no apiVersion and kind of their own.
            object.types =
                Some(kube::api::TypeMeta { api_version: resource.api_version.clone(), kind: kind.into() });
            out.push(upstream(&format!("the cluster's {plural}.{group}"), object)?);
        }
    }
    out.sort_by(|a, b| order(a).cmp(&order(b)));
    Ok(out)
}

/// Objects from the cluster in a stable order: by namespace, then name, then kind.
fn order(o: &Upstream) -> (Option<&str>, &str, Kind) {
    (o.id.namespace.as_deref(), o.id.name.as_str(), o.id.kind)
}

/// Labels of a parsed object, for tests.
#[cfg(test)]
pub(super) fn labels(o: &Upstream) -> &std::collections::BTreeMap<String, String> {
    &o.labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_of_known_kinds_are_read_and_others_refused() {
        let text = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: a, namespace: ns, labels: {team: x}}\nspec: {url: https://g/x}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: b}\nspec: {}\n";
        let objects = parse_text("f.yaml", text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].id.to_string(), "GitRepository ns/a");
        assert_eq!(labels(&objects[0])["team"], "x");
        assert_eq!(objects[1].id.to_string(), "Argo CD Application b");
        let err = parse_text("f.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap_err();
        assert!(err.to_string().contains("ConfigMap c (v1) is not something ferry import reads"), "{err}");
        let err = parse_text("f.yaml", "kind: [").unwrap_err();
        assert!(err.to_string().contains("f.yaml"), "{err}");
        let twice = parse_text("f.yaml", &format!("{text}---\n{text}")).unwrap();
        assert!(check_unique(&twice).unwrap_err().to_string().contains("GitRepository ns/a appears twice"));
    }
}
