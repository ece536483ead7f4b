//! Charts and OCI artifacts from their sources to the store: a chart from a Helm repository or
//! an OCI registry (`chart.repoURL: oci://...`, the chart at `<repoURL>/<name>`), or an OCI
//! artifact of manifests, resolved to a digest and unpacked once under it. Shared by the sync
//! pass and `ferry diff`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    access::ArtifactAccess,
    helm_repo::{HelmRepoClient, HelmRepoError, HelmRepoOptions},
    oci::{
        ArtifactKind, OciError, OciFetcher, OciFetcherOptions, OciRepository, OciSelector, RegistryAccess,
        RegistryAuth,
    },
    store::{ArtifactStore, StoreError},
};
use crate::{
    api::{ChartSource, OciSource},
    locks::locked,
    source::refs::{SemverRange, parse_tag_version},
};

/// The clients and the store: one per ferry (or per `ferry diff`).
pub struct Artifacts {
    pub charts: HelmRepoClient,
    pub oci: OciFetcher,
    pub store: Arc<ArtifactStore>,
    /// One download at a time per archive URL or manifest digest: the Applications that ask
    /// for it meanwhile wait and find it in the store.
    downloading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An artifact in the store: how the revision names it (`podinfo@6.5.4`, an OCI tag, or
/// nothing when pinned by digest), its digest (lowercase hex), and its directory (for a chart,
/// the chart's own directory inside the archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub label: String,
    pub digest: String,
    pub dir: PathBuf,
}

/// Why a chart or artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    Chart(#[source] HelmRepoError),
    #[error("{0}")]
    Oci(#[source] OciError),
    #[error("{0}")]
    Store(#[source] StoreError),
    #[error("invalid version range {range:?}: {cause}")]
    BadRange { range: String, cause: String },
    /// The unpacked chart archive holds no chart of the name asked for.
    #[error("the archive of chart {name} holds no {name}/Chart.yaml")]
    NotAChart { name: String },
}

impl ArtifactError {
    /// Worth retrying soon: the repository or registry may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            ArtifactError::Chart(e) => e.is_transient(),
            ArtifactError::Oci(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Artifacts {
    /// The store under `root` (`<cache>/artifacts`).
    pub fn new(root: PathBuf, charts: HelmRepoOptions, oci: OciFetcherOptions) -> Artifacts {
        Artifacts {
            charts: HelmRepoClient::new(charts),
            oci: OciFetcher::new(oci),
            store: Arc::new(ArtifactStore::new(root)),
            downloading: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of one download (see `downloading`).
    fn download_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = locked(&self.downloading);
        // Unlocked entries are dropped as others are added, so the map stays small.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    /// The chart `chart` names; `max_age` bounds how old a Helm repository's index may be.
    pub async fn chart(
        &self,
        chart: &ChartSource,
        creds: &ArtifactAccess,
        max_age: Duration,
    ) -> Result<Fetched, ArtifactError> {
        let fetched = match chart.repo_url.strip_prefix("oci://") {
            Some(_) => self.oci_chart(chart, creds).await?,
            None => self.repository_chart(chart, creds, max_age).await?,
        };
        let dir = chart_dir(&fetched.dir, &chart.name)?;
        Ok(Fetched { dir, ..fetched })
    }

    /// The OCI artifact of manifests `oci` names.
    pub async fn manifests(&self, oci: &OciSource, creds: &ArtifactAccess) -> Result<Fetched, ArtifactError> {
        let repo = repository(&oci.url)?;
        let selector = match (&oci.tag, &oci.semver, &oci.digest) {
            (_, _, Some(digest)) => OciSelector::Digest(digest.clone()),
            (_, Some(semver), _) => OciSelector::Semver(range(semver)?),
            (Some(tag), _, _) => OciSelector::Tag(tag.clone()),
            _ => OciSelector::Tag("latest".to_string()),
        };
        self.pull(&repo, &selector, creds, oci.insecure, ArtifactKind::FluxManifests).await
    }

    async fn repository_chart(
        &self,
        chart: &ChartSource,
        creds: &ArtifactAccess,
        max_age: Duration,
    ) -> Result<Fetched, ArtifactError> {
        let resolved = self
            .charts
            .resolve(&chart.repo_url, &chart.name, chart.version.as_deref(), creds, max_age)
            .await
            .map_err(ArtifactError::Chart)?;
        let label = format!("{}@{}", resolved.name, resolved.version);
        let lock = self.download_lock(&resolved.url);
        let _one_download = lock.lock().await;
        if let Some(digest) = self.charts.known_digest(&resolved, creds)
            && let Some(dir) = self.store.get(&digest)
        {
            self.charts.remember(&resolved, &digest);
            return Ok(Fetched { label, digest, dir });
        }
        let (archive, digest) = self.charts.download(&resolved, creds).await.map_err(ArtifactError::Chart)?;
        self.charts.remember(&resolved, &digest);
        let dir = self.store.insert(&digest, archive).await.map_err(ArtifactError::Store)?;
        Ok(Fetched { label, digest, dir })
    }

    /// A chart in an OCI registry; `version` is a tag (an exact version) or a semver range.
    async fn oci_chart(&self, chart: &ChartSource, creds: &ArtifactAccess) -> Result<Fetched, ArtifactError> {
        let url = format!("{}/{}", chart.repo_url.trim_end_matches('/'), chart.name);
        let repo = repository(&url)?;
        let selector = match chart.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            // Helm writes `+` as `_` in OCI tags.
            Some(v) if parse_tag_version(v).is_some() && !v.contains(['<', '>', '^', '~', '*', ' ']) => {
                OciSelector::Tag(v.replace('+', "_"))
            }
            other => OciSelector::Semver(range(other.unwrap_or("*"))?),
        };
        let fetched = self.pull(&repo, &selector, creds, chart.insecure, ArtifactKind::HelmChart).await?;
        let version = fetched.label.replace('_', "+");
        Ok(Fetched { label: format!("{}@{version}", chart.name), ..fetched })
    }

    async fn pull(
        &self,
        repo: &OciRepository,
        selector: &OciSelector,
        creds: &ArtifactAccess,
        insecure: bool,
        kind: ArtifactKind,
    ) -> Result<Fetched, ArtifactError> {
        let access = registry_access(creds, insecure);
        let resolved = self.oci.resolve(repo, selector, &access).await.map_err(ArtifactError::Oci)?;
        let digest = resolved.digest.strip_prefix("sha256:").unwrap_or(&resolved.digest).to_string();
        let label = resolved.tag.clone().unwrap_or_default();
        let lock = self.download_lock(&digest);
        let _one_download = lock.lock().await;
        // The manifest digest pins the layer, so the store keeps the unpacked layer under it.
        if let Some(dir) = self.store.get(&digest) {
            return Ok(Fetched { label, digest, dir });
        }
        let pulled =
            self.oci.pull(repo, &resolved.digest, &access, kind).await.map_err(ArtifactError::Oci)?;
        let dir = self.store.insert(&digest, pulled.layer).await.map_err(ArtifactError::Store)?;
        Ok(Fetched { label, digest, dir })
    }
}

/// `<name>/` inside the unpacked archive (helm packages a chart under its name).
fn chart_dir(unpacked: &Path, name: &str) -> Result<PathBuf, ArtifactError> {
    let dir = unpacked.join(name);
    if dir.join("Chart.yaml").is_file() {
        return Ok(dir);
    }
    Err(ArtifactError::NotAChart { name: name.to_string() })
}

fn repository(url: &str) -> Result<OciRepository, ArtifactError> {
    OciRepository::parse(url).map_err(|e| ArtifactError::Oci(e.into()))
}

fn range(text: &str) -> Result<SemverRange, ArtifactError> {
    SemverRange::parse(text).map_err(|cause| ArtifactError::BadRange { range: text.to_string(), cause })
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
