//! Helm repositories: `index.yaml` read with conditional requests and shared by every
//! Application on the repository (per credentials), a chart version chosen by exact version or
//! semver range, and chart archives downloaded with a size limit and checked against the
//! index's digest.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;

use super::access::{ArtifactAccess, TlsError};
use crate::locks::locked;
use crate::source::refs::{SemverRange, parse_tag_version};

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Limits of the Helm repository client.
#[derive(Debug, Clone, Copy)]
pub struct HelmRepoOptions {
    /// One request (headers and body) may take this long.
    pub timeout: Duration,
    /// Most bytes an `index.yaml` may be (`--max-chart-index-bytes`): public indexes run to tens
    /// of MiB, and ferry holds one parsed per repository and credentials.
    pub max_index_bytes: u64,
    /// Most bytes a chart archive may be.
    pub max_chart_bytes: u64,
}

impl Default for HelmRepoOptions {
    fn default() -> Self {
        HelmRepoOptions {
            timeout: Duration::from_secs(60),
            max_index_bytes: 64 * 1024 * 1024,
            max_chart_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What went wrong with a Helm repository. Messages name the repository (without credentials)
/// and what a person can change.
#[derive(Debug, thiserror::Error)]
pub enum HelmRepoError {
    #[error("chart repository {url}: not a valid URL")]
    BadUrl { url: String },
    #[error("chart repository {url}: {source}")]
    Tls { url: String, source: TlsError },
    #[error("chart repository {url} is unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("chart repository {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error(
        "chart repository {url} refused the credentials (HTTP {status}); check spec.source.chart.secretRef"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("chart repository {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than ferry's limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("chart repository {url}: index.yaml is not a Helm repository index: {cause}")]
    BadIndex { url: String, cause: String },
    #[error("chart repository {url} has no chart {name}")]
    NoChart { url: String, name: String },
    #[error("chart {name} in {url}: no version matches {range} (newest: {newest})")]
    NoVersion { url: String, name: String, range: String, newest: String },
    #[error("chart {name}: invalid version range {range:?}: {cause}")]
    BadRange { name: String, range: String, cause: String },
    #[error(
        "chart {name} {version} from {url}: digest sha256:{actual} does not match the index's sha256:{expected}"
    )]
    DigestMismatch { url: String, name: String, version: String, expected: String, actual: String },
}

impl HelmRepoError {
    /// Worth retrying soon: the repository may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            HelmRepoError::Unreachable { .. } | HelmRepoError::Timeout { .. } => true,
            HelmRepoError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A chart version picked from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChart {
    /// The repository (its base URL) whose index named the chart.
    pub repository: String,
    pub name: String,
    pub version: String,
    /// Absolute download URL.
    pub url: String,
    /// The index's `digest` (lowercase hex SHA-256 of the archive), when it has one.
    pub digest: Option<String>,
    /// The index's `created` time (RFC 3339), when it has one: a chart version's "commit time"
    /// for lead-time figures.
    pub created: Option<String>,
}

/// The Helm repository client: one per ferry, shared by every Application.
pub struct HelmRepoClient {
    options: HelmRepoOptions,
    clients: Mutex<HashMap<u64, HttpClient>>,
    indexes: Mutex<HashMap<IndexKey, Arc<tokio::sync::Mutex<CachedIndex>>>>,
    /// The digests of archives downloaded, per URL and credentials: an index without digests
    /// still costs one download per chart version, not one per interval.
    downloaded: Mutex<HashMap<IndexKey, String>>,
    /// When each chart archive (by digest) was created, per its index: a chart version's
    /// "commit time" for lead-time figures.
    created: Mutex<HashMap<String, i64>>,
    index_downloads: AtomicU64,
}

/// An index is shared per repository URL *and* credentials: a tenant without the credentials
/// never reads what another tenant's credentials fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IndexKey {
    url: String,
    access: u64,
}

#[derive(Default)]
struct CachedIndex {
    checked_at: Option<Instant>,
    etag: Option<String>,
    last_modified: Option<String>,
    index: Option<Arc<ChartIndex>>,
}

/// The parts of `index.yaml` ferry reads.
#[derive(Debug, Default, Deserialize)]
pub struct ChartIndex {
    #[serde(default)]
    entries: HashMap<String, Vec<IndexedVersion>>,
}

#[derive(Debug, Clone, Deserialize)]
struct IndexedVersion {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

impl HelmRepoClient {
    pub fn new(options: HelmRepoOptions) -> HelmRepoClient {
        HelmRepoClient {
            options,
            clients: Mutex::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
            downloaded: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            index_downloads: AtomicU64::new(0),
        }
    }

    /// How many times an `index.yaml` was downloaded whole (a 304 does not count).
    pub fn index_downloads(&self) -> u64 {
        self.index_downloads.load(Ordering::Relaxed)
    }

    /// The chart version to deploy: `version` exact or a range (default: the newest without a
    /// pre-release), from an index at most `max_age` old (older ones are revalidated with
    /// `If-None-Match` / `If-Modified-Since`).
    pub async fn resolve(
        &self,
        repo_url: &str,
        name: &str,
        version: Option<&str>,
        access: &ArtifactAccess,
        max_age: Duration,
    ) -> Result<ResolvedChart, HelmRepoError> {
        let base = base_url(repo_url)?;
        let index = self.index(&base, access, max_age).await?;
        pick(&index, &base, name, version)
    }

    /// The archive's digest when it is known without a download: the index's, or the one
    /// measured when this URL was downloaded with these credentials.
    pub fn known_digest(&self, chart: &ResolvedChart, access: &ArtifactAccess) -> Option<String> {
        let key = IndexKey { url: chart.url.clone(), access: access.fingerprint() };
        chart.digest.clone().or_else(|| locked(&self.downloaded).get(&key).cloned())
    }

    /// Records that the archive `digest` is `chart` (its index's creation time).
    pub fn remember(&self, chart: &ResolvedChart, digest: &str) {
        let created = chart.created.as_deref().and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok());
        if let Some(created) = created {
            locked(&self.created).insert(digest.to_string(), created.as_second());
        }
    }

    /// When the chart archive `digest` was created (Unix seconds), if its index said.
    pub fn created_at(&self, digest: &str) -> Option<i64> {
        locked(&self.created).get(digest).copied()
    }

    /// Downloads `chart` and checks it against the index's digest; returns the archive and its
    /// SHA-256 (lowercase hex).
    pub async fn download(
        &self,
        chart: &ResolvedChart,
        access: &ArtifactAccess,
    ) -> Result<(Bytes, String), HelmRepoError> {
        let url =
            url::Url::parse(&chart.url).map_err(|_| HelmRepoError::BadUrl { url: chart.url.clone() })?;
        let sent = download_access(chart, &url, access);
        let got = self.get(&url, &sent, &Conditional::default(), self.options.max_chart_bytes).await?;
        let Fetched::Body { bytes, .. } = got else {
            return Err(HelmRepoError::Status { url: shown(&url), status: 304 });
        };
        let actual = sha256_hex(&bytes);
        if let Some(expected) = &chart.digest
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(HelmRepoError::DigestMismatch {
                url: shown(&url),
                name: chart.name.clone(),
                version: chart.version.clone(),
                expected: expected.to_ascii_lowercase(),
                actual,
            });
        }
        let key = IndexKey { url: chart.url.clone(), access: access.fingerprint() };
        locked(&self.downloaded).insert(key, actual.clone());
        Ok((bytes, actual))
    }

    /// The repository's index: the shared one when fresh enough, else revalidated or
    /// downloaded. One request at a time per repository and credentials; the others wait for
    /// it and share its answer.
    async fn index(
        &self,
        base: &url::Url,
        access: &ArtifactAccess,
        max_age: Duration,
    ) -> Result<Arc<ChartIndex>, HelmRepoError> {
        let key = IndexKey { url: base.to_string(), access: access.fingerprint() };
        let slot = locked(&self.indexes).entry(key).or_default().clone();
        let mut cached = slot.lock().await;
        if let (Some(index), Some(at)) = (&cached.index, cached.checked_at)
            && at.elapsed() <= max_age
        {
            return Ok(index.clone());
        }
        let url = base.join("index.yaml").map_err(|_| HelmRepoError::BadUrl { url: shown(base) })?;
        let conditional = match cached.index {
            Some(_) => Conditional { etag: cached.etag.clone(), last_modified: cached.last_modified.clone() },
            None => Conditional::default(),
        };
        match self.get(&url, access, &conditional, self.options.max_index_bytes).await? {
            Fetched::NotModified => {}
            Fetched::Body { bytes, etag, last_modified } => {
                self.index_downloads.fetch_add(1, Ordering::Relaxed);
                let index = tokio::task::spawn_blocking(move || parse_index(&bytes))
                    .await
                    .expect("parsing an index does not panic")
                    .map_err(|cause| HelmRepoError::BadIndex { url: shown(base), cause })?;
                *cached = CachedIndex { checked_at: None, etag, last_modified, index: Some(Arc::new(index)) };
            }
        }
        cached.checked_at = Some(Instant::now());
        Ok(cached.index.clone().expect("an index was stored or kept"))
    }

    /// One GET with the access's credentials and trust, under the timeout, reading at most
    /// `limit` bytes.
    async fn get(
        &self,
        url: &url::Url,
        access: &ArtifactAccess,
        conditional: &Conditional,
        limit: u64,
    ) -> Result<Fetched, HelmRepoError> {
        let client = self.client(url, access)?;
        let request = request(url, access, conditional)?;
        let after = self.options.timeout;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| HelmRepoError::Unreachable { url: shown(url), cause: error_chain(&e) })?;
            read_response(url, response, limit).await
        };
        tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| HelmRepoError::Timeout { url: shown(url), after })?
    }

    /// A client per trust configuration (the system's roots, plus the access's CA).
    fn client(&self, url: &url::Url, access: &ArtifactAccess) -> Result<HttpClient, HelmRepoError> {
        let key = access.tls_fingerprint();
        let mut clients = locked(&self.clients);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let tls = access.tls_config().map_err(|source| HelmRepoError::Tls { url: shown(url), source })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        clients.insert(key, client.clone());
        Ok(client)
    }
}

#[derive(Debug, Default)]
struct Conditional {
    etag: Option<String>,
    last_modified: Option<String>,
}

enum Fetched {
    NotModified,
    Body { bytes: Bytes, etag: Option<String>, last_modified: Option<String> },
}

fn request(
    url: &url::Url,
    access: &ArtifactAccess,
    conditional: &Conditional,
) -> Result<http::Request<Empty<Bytes>>, HelmRepoError> {
    let mut builder = http::Request::get(url.as_str()).header(http::header::USER_AGENT, "ferry");
    if let Some(auth) = access.basic_auth_header() {
        builder = builder.header(http::header::AUTHORIZATION, auth);
    }
    if let Some(etag) = &conditional.etag {
        builder = builder.header(http::header::IF_NONE_MATCH, etag);
    }
    if let Some(modified) = &conditional.last_modified {
        builder = builder.header(http::header::IF_MODIFIED_SINCE, modified);
    }
    builder.body(Empty::new()).map_err(|_| HelmRepoError::BadUrl { url: shown(url) })
}

async fn read_response(
    url: &url::Url,
    response: http::Response<hyper::body::Incoming>,
    limit: u64,
) -> Result<Fetched, HelmRepoError> {
    let status = response.status();
    match status.as_u16() {
        304 => return Ok(Fetched::NotModified),
        401 | 403 => return Err(HelmRepoError::Unauthorized { url: shown(url), status: status.as_u16() }),
        200..=299 => {}
        other => return Err(HelmRepoError::Status { url: shown(url), status: other }),
    }
    let too_large = || HelmRepoError::TooLarge { url: shown(url), limit };
    let header = |name: http::header::HeaderName| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    let declared = header(http::header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let (etag, last_modified) = (header(http::header::ETAG), header(http::header::LAST_MODIFIED));
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = Limited::new(response.into_body(), limit_usize).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            HelmRepoError::Unreachable { url: shown(url), cause: e.to_string() }
        }
    })?;
    Ok(Fetched::Body { bytes: bytes.to_bytes(), etag, last_modified })
}

/// The credentials a chart download carries: the repository's, but only to the repository's
/// own scheme, host and port. An index may name archives anywhere (a CDN); as with helm's
/// default (no `--pass-credentials`), the password never goes to another host.
fn download_access(chart: &ResolvedChart, url: &url::Url, access: &ArtifactAccess) -> ArtifactAccess {
    let same_origin = url::Url::parse(&chart.repository).is_ok_and(|base| base.origin() == url.origin());
    if same_origin { access.clone() } else { access.without_credentials() }
}

/// The repository URL as a base that `index.yaml` and relative chart URLs join onto.
pub(crate) fn base_url(repo_url: &str) -> Result<url::Url, HelmRepoError> {
    let bad = || HelmRepoError::BadUrl { url: crate::source::repo_url::redact_unparsed(repo_url) };
    let mut url = url::Url::parse(repo_url).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    // Credentials belong in the Secret; any in the URL are dropped, never sent or shown.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(url)
}

/// A URL as shown in messages: no credentials, no query.
fn shown(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

pub(crate) fn parse_index(bytes: &[u8]) -> Result<ChartIndex, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    serde_saphyr::from_str_with_options(text, crate::render::parse::options())
        .map_err(|e| e.without_snippet().to_string().lines().next().unwrap_or_default().to_string())
}

/// The version `version` asks for among the index's entries for `name`.
pub(crate) fn pick(
    index: &ChartIndex,
    base: &url::Url,
    name: &str,
    version: Option<&str>,
) -> Result<ResolvedChart, HelmRepoError> {
    let entries = index
        .entries
        .get(name)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| HelmRepoError::NoChart { url: shown(base), name: name.to_string() })?;
    let text = version.map(str::trim).filter(|v| !v.is_empty()).unwrap_or("*");
    let range = SemverRange::parse(text).map_err(|cause| HelmRepoError::BadRange {
        name: name.to_string(),
        range: text.to_string(),
        cause,
    })?;
    let chosen = entries
        .iter()
        .filter_map(|e| parse_tag_version(&e.version).map(|v| (v, e)))
        .filter(|(v, _)| range.matches(v))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, e)| e);
    let Some(chosen) = chosen else {
        let newest = entries
            .iter()
            .filter_map(|e| parse_tag_version(&e.version).map(|v| (v, &e.version)))
            .max()
            .map_or_else(|| "none".to_string(), |(_, v)| v.clone());
        return Err(HelmRepoError::NoVersion {
            url: shown(base),
            name: name.to_string(),
            range: text.to_string(),
            newest,
        });
    };
    let first = chosen.urls.first().ok_or_else(|| HelmRepoError::BadIndex {
        url: shown(base),
        cause: format!("{name} {} has no download URL", chosen.version),
    })?;
    let url = base.join(first).map_err(|_| HelmRepoError::BadIndex {
        url: shown(base),
        cause: format!("{name} {}: bad download URL", chosen.version),
    })?;
    Ok(ResolvedChart {
        repository: base.to_string(),
        name: name.to_string(),
        version: chosen.version.clone(),
        url: url.to_string(),
        digest: chosen.digest.clone().filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())),
        created: chosen.created.clone(),
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A stable hash for cache keys.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  podinfo:
  - version: 6.5.4
    urls: [podinfo-6.5.4.tgz]
    digest: 0000000000000000000000000000000000000000000000000000000000000000
    created: "2024-01-02T03:04:05Z"
  - version: 6.4.0
    urls: [https://cdn.example.com/podinfo-6.4.0.tgz]
  - version: 7.0.0-rc.1
    urls: [podinfo-7.0.0-rc.1.tgz]
  - version: 5.0.0
    urls: [charts/podinfo-5.0.0.tgz]
"#;

    fn index() -> ChartIndex {
        parse_index(INDEX.as_bytes()).unwrap()
    }

    #[test]
    fn the_newest_stable_version_by_default() {
        let base = base_url("https://charts.example.com/stable").unwrap();
        let chart = pick(&index(), &base, "podinfo", None).unwrap();
        assert_eq!(chart.version, "6.5.4");
        assert_eq!(chart.url, "https://charts.example.com/stable/podinfo-6.5.4.tgz");
        assert_eq!(chart.created.as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(chart.digest.as_deref(), Some("0".repeat(64).as_str()));
    }

    #[test]
    fn exact_versions_ranges_and_absolute_urls() {
        let base = base_url("https://charts.example.com/").unwrap();
        let pick_version = |v: &str| pick(&index(), &base, "podinfo", Some(v)).map(|c| (c.version, c.url));
        assert_eq!(
            pick_version("6.4.0").unwrap(),
            ("6.4.0".into(), "https://cdn.example.com/podinfo-6.4.0.tgz".into())
        );
        assert_eq!(
            pick_version(">=5.0.0 <6.0.0").unwrap().1,
            "https://charts.example.com/charts/podinfo-5.0.0.tgz"
        );
        assert_eq!(pick_version(">=7.0.0-0").unwrap().0, "7.0.0-rc.1");
        let err = pick_version(">=8.0.0").unwrap_err().to_string();
        assert_eq!(
            err,
            "chart podinfo in https://charts.example.com/: no version matches >=8.0.0 (newest: 7.0.0-rc.1)"
        );
        let err = pick(&index(), &base, "nginx", None).unwrap_err().to_string();
        assert_eq!(err, "chart repository https://charts.example.com/ has no chart nginx");
    }

    #[test]
    fn credentials_go_only_to_the_repositorys_own_host() {
        let base = base_url("https://charts.example.com/").unwrap();
        let index = index();
        let access = ArtifactAccess::basic("u", "secret");
        let own = pick(&index, &base, "podinfo", Some("6.5.4")).unwrap();
        let foreign = pick(&index, &base, "podinfo", Some("6.4.0")).unwrap();
        let to = |c: &ResolvedChart| download_access(c, &url::Url::parse(&c.url).unwrap(), &access);
        assert_eq!(to(&own).password(), Some("secret"));
        assert_eq!(to(&foreign).password(), None, "{}", foreign.url);
    }

    #[test]
    fn credentials_in_the_url_are_never_kept() {
        let base = base_url("https://user:secret@charts.example.com/x").unwrap();
        assert_eq!(base.as_str(), "https://charts.example.com/x/");
        assert!(base_url("oci://registry/x").is_err());
        assert!(base_url("not a url").is_err());
    }

    #[test]
    fn a_malformed_index_is_an_error_not_a_panic() {
        assert!(parse_index(b"entries: [1, 2").is_err());
        assert!(parse_index(&[0xff, 0xfe]).is_err());
        assert!(parse_index(b"entries:\n  x:\n  - urls: []\n").is_err(), "a version is required");
    }
}
