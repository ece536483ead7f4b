//! Flux's source objects as the Kustomization or HelmRelease that uses them needs them: a
//! `GitRepository` (URL, ref, credentials), an `OCIRepository` (URL, tag, range or digest) or a
//! `HelmRepository` (URL, credentials, OCI or not). Their fields that do not map are noted under
//! the source's own name.

use super::{MapError, Note, ObjectRef, Upstream, fields::Fields, interval};
use crate::api::{GitRef, LocalObjectReference};

const GIT_REASONS: &[(&str, &str)] = &[
    ("provider", "ferry authenticates to Git with a Secret (secretRef) only"),
    ("serviceAccountName", "ferry authenticates to Git with a Secret (secretRef) only"),
    ("verify", "ferry does not verify commit signatures"),
    ("ignore", "ferry renders the path as it is in Git"),
    ("include", "ferry's Application reads one repository"),
    ("recurseSubmodules", "ferry does not fetch submodules"),
    ("sparseCheckout", "ferry fetches the whole commit"),
    ("proxySecretRef", "ferry reaches Git without a proxy of its own"),
    ("timeout", "ferry's fetches have timeouts of their own"),
    ("suspend", "suspend the Application instead"),
];
const OCI_REASONS: &[(&str, &str)] = &[
    ("layerSelector", "ferry reads the layer `flux push artifact` writes"),
    ("provider", "ferry authenticates to registries with a Secret (secretRef) only"),
    ("serviceAccountName", "ferry authenticates to registries with a Secret (secretRef) only"),
    ("verify", "ferry does not verify artifact signatures"),
    ("certSecretRef", "put the CA as ca.crt in the secretRef Secret"),
    ("proxySecretRef", "ferry reaches registries without a proxy of its own"),
    ("ignore", "ferry renders the artifact as it is"),
    ("timeout", "ferry's fetches have timeouts of their own"),
    ("suspend", "suspend the Application instead"),
];
const HELM_REPO_REASONS: &[(&str, &str)] = &[
    ("passCredentials", "ferry sends a chart repository's credentials to that repository only"),
    ("provider", "ferry authenticates to registries with a Secret (secretRef) only"),
    ("accessFrom", "ferry's sources belong to one Application"),
    ("timeout", "ferry's fetches have timeouts of their own"),
    ("suspend", "suspend the Application instead"),
    ("certSecretRef", "put the CA as ca.crt in the secretRef Secret"),
];

/// A GitRepository, as ferry's Git source needs it.
#[derive(Debug)]
pub(super) struct GitSource {
    pub url: String,
    pub git_ref: GitRef,
    pub secret_ref: Option<LocalObjectReference>,
    pub interval: Option<String>,
}

/// An OCIRepository: its URL and exactly one of tag, range or digest.
#[derive(Debug)]
pub(super) struct OciRepository {
    pub url: String,
    pub tag: Option<String>,
    pub semver: Option<String>,
    pub digest: Option<String>,
    pub secret_ref: Option<LocalObjectReference>,
    pub insecure: bool,
    pub interval: Option<String>,
}

/// A HelmRepository (of `type: oci` when its URL is `oci://`).
#[derive(Debug)]
pub(super) struct HelmRepository {
    pub url: String,
    pub secret_ref: Option<LocalObjectReference>,
    pub insecure: bool,
    pub interval: Option<String>,
}

/// A `sourceRef` (`chartRef`) of `referrer`: the kind, name and namespace it names (the
/// namespace defaults to the referrer's; `apiVersion` is not needed to find it).
pub(super) fn reference(
    f: &mut Fields,
    key: &str,
    referrer: &ObjectRef,
) -> Result<(String, String, Option<String>), MapError> {
    if !f.has(key) {
        return Err(MapError::Missing { object: f.object().to_string(), field: f.field(key) });
    }
    let mut r = f.nested(key)?;
    let kind = r.required_string("kind")?;
    let name = r.required_string("name")?;
    let namespace = r.string("namespace")?.or_else(|| referrer.namespace.clone());
    Ok((kind, name, namespace))
}

/// The source's spec.
fn source_fields(source: &Upstream) -> Result<Fields, MapError> {
    Fields::new(&source.id.to_string(), "spec", Some(source.spec.clone()))
}

/// The source's notes among the referrer's, named under the source
/// (`GitRepository ns/x spec.verify`).
fn named(source: &Upstream, own: Vec<Note>, notes: &mut Vec<Note>) {
    notes.extend(own.into_iter().map(|n| Note { field: format!("{} {}", source.id, n.field), why: n.why }));
}

fn secret_ref(f: &mut Fields, key: &str) -> Result<Option<LocalObjectReference>, MapError> {
    let mut r = f.nested(key)?;
    let name = r.string("name")?;
    Ok(name.map(|name| LocalObjectReference { name }))
}

fn source_interval(f: &mut Fields) -> Result<Option<String>, MapError> {
    match f.string("interval")? {
        Some(text) => Ok(Some(interval(f, "interval", &text)?)),
        None => Ok(None),
    }
}

/// A GitRepository. Flux's ref precedence: commit, then name, semver, tag, branch; none is
/// the `master` branch.
pub(super) fn git(source: &Upstream, all_notes: &mut Vec<Note>) -> Result<GitSource, MapError> {
    let mut f = source_fields(source)?;
    let notes = &mut Vec::new();
    let url = f.required_string("url")?;
    let secret_ref = secret_ref(&mut f, "secretRef")?;
    let interval = source_interval(&mut f)?;
    let mut r = f.nested("ref")?;
    let (branch, tag, semver, name, commit) =
        (r.string("branch")?, r.string("tag")?, r.string("semver")?, r.string("name")?, r.string("commit")?);
    r.rest(&[], notes);
    let mut git_ref = GitRef::default();
    if commit.is_some() {
        git_ref.commit = commit;
    } else if name.is_some() {
        git_ref.name = name;
    } else if semver.is_some() {
        git_ref.semver = semver;
    } else if tag.is_some() {
        git_ref.tag = tag;
    } else {
        git_ref.branch = Some(branch.unwrap_or_else(|| "master".into()));
    }
    f.rest(GIT_REASONS, notes);
    named(source, std::mem::take(notes), all_notes);
    Ok(GitSource { url, git_ref, secret_ref, interval })
}

/// An OCIRepository. Flux's precedence: digest, then semver, then tag; none is `latest`. For a
/// chart (`for_chart`) the layer selector is what ferry does anyway: it reads the chart layer.
pub(super) fn oci(
    source: &Upstream,
    for_chart: bool,
    all_notes: &mut Vec<Note>,
) -> Result<OciRepository, MapError> {
    let mut f = source_fields(source)?;
    let notes = &mut Vec::new();
    if for_chart {
        f.raw("layerSelector");
    }
    let url = f.required_string("url")?;
    let secret_ref = secret_ref(&mut f, "secretRef")?;
    let insecure = f.bool("insecure")?.unwrap_or(false);
    let interval = source_interval(&mut f)?;
    let mut r = f.nested("ref")?;
    let (digest, semver, tag) = (r.string("digest")?, r.string("semver")?, r.string("tag")?);
    r.rest(&[("semverFilter", "ferry's semver ranges match every tag that parses as a version")], notes);
    let (tag, semver, digest) = match (digest, semver, tag) {
        (Some(d), _, _) => (None, None, Some(d)),
        (None, Some(s), _) => (None, Some(s), None),
        (None, None, t) => (Some(t.unwrap_or_else(|| "latest".into())), None, None),
    };
    f.rest(OCI_REASONS, notes);
    named(source, std::mem::take(notes), all_notes);
    Ok(OciRepository { url, tag, semver, digest, secret_ref, insecure, interval })
}

/// A HelmRepository. A `certSecretRef` alone becomes the secretRef (its `ca.crt` is what ferry
/// reads there); beside a secretRef it is noted.
pub(super) fn helm(source: &Upstream, all_notes: &mut Vec<Note>) -> Result<HelmRepository, MapError> {
    let mut f = source_fields(source)?;
    let notes = &mut Vec::new();
    let url = f.required_string("url")?;
    let mut secret = secret_ref(&mut f, "secretRef")?;
    if secret.is_none() && f.has("certSecretRef") {
        secret = secret_ref(&mut f, "certSecretRef")?;
    }
    let insecure = f.bool("insecure")?.unwrap_or(false);
    let interval = source_interval(&mut f)?;
    let oci = f.string("type")?.as_deref() == Some("oci");
    if oci != url.starts_with("oci://") {
        return Err(
            f.invalid("url", "type oci goes with an oci:// URL, the default type with https:// or http://")
        );
    }
    f.rest(HELM_REPO_REASONS, notes);
    named(source, std::mem::take(notes), all_notes);
    Ok(HelmRepository { url, secret_ref: secret, insecure, interval })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::import::Kind;

    fn object(kind: Kind, spec: serde_json::Value) -> Upstream {
        Upstream {
            id: ObjectRef { kind, namespace: Some("flux-system".into()), name: "podinfo".into() },
            labels: Default::default(),
            finalizers: Vec::new(),
            spec,
        }
    }

    #[test]
    fn git_ref_precedence_and_notes_named_under_the_source() {
        let mut notes = Vec::new();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let g = git(
            &object(Kind::GitRepository, json!({"url": "https://g/x", "interval": "1m", "ref": {"branch": "main", "commit": sha}, "verify": {"mode": "HEAD"}})),
            &mut notes,
        )
        .unwrap();
        assert_eq!(g.git_ref, GitRef { commit: Some(sha.into()), ..Default::default() });
        assert_eq!(notes[0].field, "GitRepository flux-system/podinfo spec.verify");
        let g = git(&object(Kind::GitRepository, json!({"url": "https://g/x"})), &mut notes).unwrap();
        assert_eq!(g.git_ref.branch.as_deref(), Some("master"));
    }

    #[test]
    fn oci_and_helm_repositories() {
        let mut notes = Vec::new();
        let o = oci(
            &object(Kind::OciRepository, json!({"url": "oci://r/x", "ref": {"tag": "1", "semver": ">=1"}})),
            false,
            &mut notes,
        )
        .unwrap();
        assert_eq!((o.tag, o.semver.as_deref()), (None, Some(">=1")));
        let h = helm(
            &object(Kind::HelmRepository, json!({"url": "https://c", "certSecretRef": {"name": "ca"}})),
            &mut notes,
        )
        .unwrap();
        assert_eq!(h.secret_ref.unwrap().name, "ca");
        let err = helm(&object(Kind::HelmRepository, json!({"url": "https://c", "type": "oci"})), &mut notes)
            .unwrap_err();
        assert!(err.to_string().contains("type oci goes with an oci:// URL"), "{err}");
        assert!(notes.is_empty(), "{notes:?}");
    }
}
