//! Pulls from OCI registries for the fetch stage: a Helm chart (`chart.repoURL: oci://...`,
//! the chart at `<repoURL>/<name>`) or an artifact of manifests (`spec.source.oci`), resolved
//! to a manifest digest and unpacked into the artifact store under it.

use super::stored::Fetched;
use crate::{
    api::{ChartSource, OciSource},
    artifact::{
        access::ArtifactAccess,
        oci::{ArtifactKind, OciRepository, OciSelector, RegistryAccess, RegistryAuth},
    },
    controller::{context::Context, error::FetchError},
    source::refs::SemverRange,
};

/// The chart `chart` names in an OCI registry; `version` is a tag or a semver range.
pub async fn chart(
    ctx: &Context,
    chart: &ChartSource,
    creds: &ArtifactAccess,
) -> Result<Fetched, FetchError> {
    let url = format!("{}/{}", chart.repo_url.trim_end_matches('/'), chart.name);
    let repo = repository(&url)?;
    let selector = match chart.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        // Helm writes `+` as `_` in OCI tags; an exact version is a tag.
        Some(v)
            if crate::source::refs::parse_tag_version(v).is_some()
                && !v.contains(['<', '>', '^', '~', '*', ' ']) =>
        {
            OciSelector::Tag(v.replace('+', "_"))
        }
        other => OciSelector::Semver(range(other.unwrap_or("*"))?),
    };
    let fetched = pull(ctx, &repo, &selector, creds, chart.insecure, ArtifactKind::HelmChart).await?;
    let version = fetched.label.replace('_', "+");
    Ok(Fetched { label: format!("{}@{version}", chart.name), ..fetched })
}

/// The artifact of manifests `oci` names.
pub async fn manifests(
    ctx: &Context,
    oci: &OciSource,
    creds: &ArtifactAccess,
) -> Result<Fetched, FetchError> {
    let repo = repository(&oci.url)?;
    let selector = match (&oci.tag, &oci.semver, &oci.digest) {
        (_, _, Some(digest)) => OciSelector::Digest(digest.clone()),
        (_, Some(semver), _) => OciSelector::Semver(range(semver)?),
        (Some(tag), _, _) => OciSelector::Tag(tag.clone()),
        _ => OciSelector::Tag("latest".to_string()),
    };
    pull(ctx, &repo, &selector, creds, oci.insecure, ArtifactKind::FluxManifests).await
}

async fn pull(
    ctx: &Context,
    repo: &OciRepository,
    selector: &OciSelector,
    creds: &ArtifactAccess,
    insecure: bool,
    kind: ArtifactKind,
) -> Result<Fetched, FetchError> {
    let err = |e| FetchError::Oci(Box::new(e));
    let access = registry_access(creds, insecure);
    let resolved = ctx.oci.resolve(repo, selector, &access).await.map_err(err)?;
    let digest = resolved.digest.strip_prefix("sha256:").unwrap_or(&resolved.digest).to_string();
    let label = resolved.tag.clone().unwrap_or_default();
    // The manifest digest pins the layer, so the store keeps the unpacked layer under it.
    if let Some(dir) = ctx.artifacts.get(&digest) {
        return Ok(Fetched { label, digest, dir });
    }
    let pulled = ctx.oci.pull(repo, &resolved.digest, &access, kind).await.map_err(err)?;
    let dir =
        ctx.artifacts.insert(&digest, pulled.layer).await.map_err(|e| FetchError::Store(Box::new(e)))?;
    Ok(Fetched { label, digest, dir })
}

fn repository(url: &str) -> Result<OciRepository, FetchError> {
    OciRepository::parse(url).map_err(|e| FetchError::Oci(Box::new(e.into())))
}

fn range(text: &str) -> Result<SemverRange, FetchError> {
    SemverRange::parse(text).map_err(|cause| FetchError::BadRange { range: text.to_string(), cause })
}

fn registry_access(creds: &ArtifactAccess, insecure: bool) -> RegistryAccess {
    let auth = match (creds.username(), creds.password()) {
        (Some(username), Some(password)) => {
            RegistryAuth::Basic { username: username.to_string(), password: password.to_string() }
        }
        _ => RegistryAuth::Anonymous,
    };
    RegistryAccess { auth, ca_pem: creds.ca_pem().map(<[u8]>::to_vec), plain_http: insecure }
}
