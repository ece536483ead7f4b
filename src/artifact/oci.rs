//! OCI registries: resolving a tag, semver range or digest to a manifest digest, and pulling
//! one artifact (a Helm chart as `helm push` writes it, or manifests as `flux push artifact`
//! writes them) by that digest.
//!
//! ```text
//! OciSelector --resolve--> Resolved { tag, digest }   (HEAD/GET of a manifest, or tag listing)
//!             --pull-----> Pulled { layer bytes }     (by digest only: the manifest must hash
//!                                                      to it, the layer to its descriptor)
//! ```
//!
//! The protocol (token exchange, manifests, blobs, tag lists) is oci-client's; this module adds
//! what ferry needs around it: digest pinning checked by ferry itself, media type checks, size
//! limits, a deadline on every request, and errors a user can act on.
//!
//! - [`reference`]: `oci://host/path` URLs, tag and digest syntax.
//! - [`select`]: [`OciSelector`] and semver tag selection.
//! - [`media`]: [`ArtifactKind`] and which manifests and layers are accepted.
//! - [`error`]: [`OciError`] and its wording.

pub mod error;
pub mod media;
pub mod reference;
pub mod select;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};

pub use error::OciError;
pub use media::ArtifactKind;
pub use reference::{OciRepository, OciUrlError, OciUrlProblem};
pub use select::OciSelector;

use error::Context;
use reference::{is_sha256_digest, is_valid_tag};

/// How to reach one registry: credentials and TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    pub auth: RegistryAuth,
    /// An extra trust anchor (PEM), besides the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Plain HTTP instead of HTTPS (a registry inside the cluster without TLS).
    pub plain_http: bool,
}

/// Credentials for a registry. oci-client exchanges basic credentials for a bearer token when
/// the registry asks for one, and sends them as basic auth when it asks for that.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"<redacted>").finish()
            }
        }
    }
}

impl RegistryAuth {
    fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }

    fn password(&self) -> Option<&str> {
        match self {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { password, .. } => Some(password),
        }
    }
}

/// What a selector resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// The tag that led to the digest; `None` when the selector was a digest.
    pub tag: Option<String>,
    /// The manifest digest, `sha256:<64 hex>`.
    pub digest: String,
}

/// `1.2.3@sha256:<hex>`, or `sha256:<hex>` when pinned by digest: the revision format of Flux's
/// OCIRepository, so dashboards and habits carry over.
impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{tag}@{}", self.digest),
            None => f.write_str(&self.digest),
        }
    }
}

/// One pulled artifact: its content layer, verified against the digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The manifest digest that was asked for (and checked).
    pub digest: String,
    pub tag: Option<String>,
    /// The content layer: a `.tar.gz` (see [`super::unpack`]).
    pub layer: Bytes,
    /// The manifest's annotations (`org.opencontainers.image.revision`, `...source`, ...).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OciFetcherOptions {
    /// Deadline of each request (a whole layer download counts as one).
    pub timeout: Duration,
    /// Largest manifest and largest layer accepted.
    pub max_bytes: u64,
}

impl Default for OciFetcherOptions {
    fn default() -> Self {
        OciFetcherOptions { timeout: Duration::from_secs(60), max_bytes: 64 << 20 }
    }
}

/// Registries refuse manifests over 4 MiB (distribution's limit); a larger one is hostile.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Tags asked for per page of a tag listing.
const TAG_PAGE: usize = 1000;
/// Pages read at most: 100,000 tags, which no chart repository comes near.
const MAX_TAG_PAGES: usize = 100;
/// Distinct registry clients kept; the least recently used goes first.
const MAX_CLIENTS: usize = 64;
/// Tags named in a "no tag matches" message.
const TAGS_IN_MESSAGE: usize = 5;

/// Resolves and pulls OCI artifacts. Cheap to clone: every Application shares one.
///
/// Clients (and so connection pools) are cached per TLS configuration *and* per credentials:
/// oci-client keeps the credentials and bearer tokens inside the client, by registry and
/// repository, so a client shared by two Applications with different Secrets would pull for
/// one with the other's token.
#[derive(Clone)]
pub struct OciFetcher {
    options: OciFetcherOptions,
    clients: Arc<Mutex<ClientCache>>,
}

#[derive(Default)]
struct ClientCache {
    clients: HashMap<ClientKey, (oci_client::Client, u64)>,
    clock: u64,
}

/// Which client serves an access: hashes, so the cache's keys hold no password.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    ca_sha256: Option<Vec<u8>>,
    plain_http: bool,
    username: Option<String>,
    password_sha256: Option<Vec<u8>>,
}

impl ClientKey {
    fn of(access: &RegistryAccess) -> ClientKey {
        let (username, password) = match &access.auth {
            RegistryAuth::Anonymous => (None, None),
            RegistryAuth::Basic { username, password } => {
                (Some(username.clone()), Some(sha256(password.as_bytes())))
            }
        };
        ClientKey {
            ca_sha256: access.ca_pem.as_deref().map(sha256),
            plain_http: access.plain_http,
            username,
            password_sha256: password,
        }
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hex: String = sha256(bytes).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl OciFetcher {
    pub fn new(options: OciFetcherOptions) -> OciFetcher {
        install_crypto_provider();
        OciFetcher { options, clients: Arc::default() }
    }

    pub fn options(&self) -> OciFetcherOptions {
        self.options
    }

    /// The manifest digest `selector` names in `repo`.
    pub async fn resolve(
        &self,
        repo: &OciRepository,
        selector: &OciSelector,
        access: &RegistryAccess,
    ) -> Result<Resolved, OciError> {
        let tag = match selector {
            OciSelector::Digest(digest) => {
                check_digest(repo, digest)?;
                return Ok(Resolved { tag: None, digest: digest.clone() });
            }
            OciSelector::Tag(tag) => {
                check_tag(repo, tag)?;
                tag.clone()
            }
            OciSelector::Semver(range) => {
                let tags = self.list_tags(repo, access).await?;
                match select::highest_matching(range, &tags) {
                    Some(tag) => tag.to_string(),
                    None => {
                        return Err(OciError::NoMatchingTag {
                            repo: repo.to_string(),
                            range: range.text().to_string(),
                            highest: select::highest_tags(&tags, TAGS_IN_MESSAGE),
                        });
                    }
                }
            }
        };
        let digest = self.tag_digest(repo, &tag, access).await?;
        Ok(Resolved { tag: Some(tag), digest })
    }

    /// Pulls the artifact whose manifest has `digest`, if it is of `kind`.
    pub async fn pull(
        &self,
        repo: &OciRepository,
        digest: &str,
        access: &RegistryAccess,
        kind: ArtifactKind,
    ) -> Result<Pulled, OciError> {
        check_digest(repo, digest)?;
        let client = self.client(repo, access)?;
        let reference = repo.by_digest(digest);
        let manifest = self.manifest(&client, repo, &reference, digest, access).await?;
        let layer = media::content_layer(&manifest, kind)
            .map_err(|m| OciError::media_type(&repo.to_string(), kind, m))?;
        let bytes = self.layer(&client, repo, &reference, layer, access).await?;
        Ok(Pulled {
            digest: digest.to_string(),
            tag: None,
            layer: bytes,
            annotations: manifest.annotations.unwrap_or_default(),
        })
    }

    /// [`OciFetcher::pull`] of what [`OciFetcher::resolve`] returned, keeping its tag.
    pub async fn pull_resolved(
        &self,
        repo: &OciRepository,
        resolved: &Resolved,
        access: &RegistryAccess,
        kind: ArtifactKind,
    ) -> Result<Pulled, OciError> {
        let pulled = self.pull(repo, &resolved.digest, access, kind).await?;
        Ok(Pulled { tag: resolved.tag.clone(), ..pulled })
    }

    /// Every tag of `repo`, page by page. A page that brings nothing new ends the listing, so
    /// a registry that ignores `last` costs one extra request, not a loop.
    async fn list_tags(
        &self,
        repo: &OciRepository,
        access: &RegistryAccess,
    ) -> Result<Vec<String>, OciError> {
        self.list_tags_at_most(repo, access, MAX_TAG_PAGES * TAG_PAGE).await
    }

    /// The tags of `repo` (sorted), reading pages until `max_tags` are known: a registry
    /// with more is cut there (the listing's order is the registry's, lexical in distribution).
    pub async fn list_tags_at_most(
        &self,
        repo: &OciRepository,
        access: &RegistryAccess,
        max_tags: usize,
    ) -> Result<Vec<String>, OciError> {
        let client = self.client(repo, access)?;
        let reference = repo.by_tag("latest");
        let auth = access.auth.to_oci();
        let ctx = self.context(repo, "repository", access);
        let mut tags = BTreeSet::new();
        let mut last: Option<String> = None;
        for _ in 0..max_tags.div_ceil(TAG_PAGE).clamp(1, MAX_TAG_PAGES) {
            let call = client.list_tags(&reference, &auth, Some(TAG_PAGE), last.as_deref());
            let page = self.timed(repo, "listing tags", call).await?.map_err(|e| ctx.classify(e))?;
            let before = tags.len();
            tags.extend(page.tags.iter().cloned());
            if tags.len() == before || tags.len() >= max_tags {
                break;
            }
            last = page.tags.last().cloned();
        }
        Ok(tags.into_iter().take(max_tags).collect())
    }

    /// The manifest digest `tag` points to (a HEAD of the manifest, else a GET).
    pub async fn tag_digest(
        &self,
        repo: &OciRepository,
        tag: &str,
        access: &RegistryAccess,
    ) -> Result<String, OciError> {
        let client = self.client(repo, access)?;
        let what = format!("tag {tag:?}");
        let ctx = self.context(repo, &what, access);
        let (reference, auth) = (repo.by_tag(tag), access.auth.to_oci());
        let call = client.fetch_manifest_digest(&reference, &auth);
        let digest = self.timed(repo, "resolving a tag", call).await?.map_err(|e| ctx.classify(e))?;
        if !is_sha256_digest(&digest) {
            return Err(OciError::InvalidManifest {
                repo: repo.to_string(),
                message: format!(
                    "the registry gave {what} the digest {:?}; ferry pins sha256 digests",
                    ctx.scrub(&digest)
                ),
            });
        }
        Ok(digest)
    }

    /// The image manifest with `digest`, checked against it by ferry (not only by oci-client).
    /// Its size is checked once read: oci-client reads a manifest whole, so until then only the
    /// deadline bounds it.
    async fn manifest(
        &self,
        client: &oci_client::Client,
        repo: &OciRepository,
        reference: &oci_client::Reference,
        digest: &str,
        access: &RegistryAccess,
    ) -> Result<OciImageManifest, OciError> {
        let what = format!("manifest {digest}");
        let ctx = self.context(repo, &what, access);
        let auth = access.auth.to_oci();
        let call = client.pull_manifest_raw(reference, &auth, &[OCI_IMAGE_MEDIA_TYPE]);
        let (body, _) =
            self.timed(repo, "fetching the manifest", call).await?.map_err(|e| ctx.classify(e))?;
        let limit = self.options.max_bytes.min(MAX_MANIFEST_BYTES);
        if body.len() as u64 > limit {
            return Err(OciError::TooLarge {
                repo: repo.to_string(),
                what: "manifest",
                size: Some(body.len() as u64),
                limit,
            });
        }
        let actual = sha256_digest(&body);
        if actual != digest {
            let repo = repo.to_string();
            return Err(OciError::DigestMismatch {
                repo,
                what: "manifest",
                expected: digest.to_string(),
                actual,
            });
        }
        parse_manifest(repo, &body)
    }

    /// The content layer, read up to its descriptor's size (itself at most `max_bytes`) and
    /// checked against its digest.
    async fn layer(
        &self,
        client: &oci_client::Client,
        repo: &OciRepository,
        reference: &oci_client::Reference,
        layer: &OciDescriptor,
        access: &RegistryAccess,
    ) -> Result<Bytes, OciError> {
        let size = check_layer_descriptor(repo, layer, self.options.max_bytes)?;
        let what = format!("layer {}", layer.digest);
        let ctx = self.context(repo, &what, access);
        let download = async {
            let mut stream = client.pull_blob_stream(reference, layer).await.map_err(|e| ctx.classify(e))?;
            if let Some(length) = stream.content_length.filter(|&l| l > size) {
                return Err(OciError::DigestMismatch {
                    repo: repo.to_string(),
                    what: "layer",
                    expected: format!("{} ({size} bytes)", layer.digest),
                    actual: format!("a download of {length} bytes"),
                });
            }
            read_exactly(&mut stream, size, repo, &ctx).await
        };
        let bytes = self.timed(repo, "downloading the layer", download).await??;
        let actual = sha256_digest(&bytes);
        if actual != layer.digest {
            let repo = repo.to_string();
            return Err(OciError::DigestMismatch {
                repo,
                what: "layer",
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn context<'a>(
        &self,
        repo: &'a OciRepository,
        what: &'a str,
        access: &'a RegistryAccess,
    ) -> ContextFor<'a> {
        ContextFor { repo: repo.to_string(), what, access }
    }

    async fn timed<T>(
        &self,
        repo: &OciRepository,
        operation: &'static str,
        call: impl Future<Output = T>,
    ) -> Result<T, OciError> {
        let after = self.options.timeout;
        tokio::time::timeout(after, call).await.map_err(|_| OciError::Timeout {
            repo: repo.to_string(),
            operation,
            after,
        })
    }

    /// The client for this access: cached, built on first use.
    fn client(&self, repo: &OciRepository, access: &RegistryAccess) -> Result<oci_client::Client, OciError> {
        let key = ClientKey::of(access);
        let mut cache = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.clock += 1;
        let now = cache.clock;
        if let Some((client, used)) = cache.clients.get_mut(&key) {
            *used = now;
            return Ok(client.clone());
        }
        let client = build_client(repo, access, self.options.timeout)?;
        if cache.clients.len() >= MAX_CLIENTS {
            let oldest = cache.clients.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cache.clients.remove(&oldest);
            }
        }
        cache.clients.insert(key, (client.clone(), now));
        Ok(client)
    }

    #[cfg(test)]
    fn cached_clients(&self) -> usize {
        self.clients.lock().unwrap().clients.len()
    }
}

/// [`Context`] owning the repository's text.
struct ContextFor<'a> {
    repo: String,
    what: &'a str,
    access: &'a RegistryAccess,
}

impl ContextFor<'_> {
    fn get(&self) -> Context<'_> {
        Context {
            repo: &self.repo,
            what: self.what,
            with_credentials: self.access.auth != RegistryAuth::Anonymous,
            password: self.access.auth.password(),
        }
    }

    fn classify(&self, err: oci_client::errors::OciDistributionError) -> OciError {
        self.get().classify(err)
    }

    fn scrub(&self, text: &str) -> String {
        self.get().scrub(text)
    }
}

/// ring's provider as the process default: oci-client's reqwest is built without a provider
/// of its own (no aws-lc-rs beside the ring that kube and hyper-rustls use) and asks rustls
/// for the default. Installing fails harmlessly when one is already installed.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn build_client(
    repo: &OciRepository,
    access: &RegistryAccess,
    timeout: Duration,
) -> Result<oci_client::Client, OciError> {
    let extra_root_certificates = match &access.ca_pem {
        Some(pem) => vec![Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() }],
        None => Vec::new(),
    };
    let config = ClientConfig {
        protocol: if access.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
        extra_root_certificates,
        // No platform resolver: an image index (a multi-arch image) is not an artifact ferry
        // pulls, and without one oci-client refuses it instead of picking an entry.
        platform_resolver: None,
        read_timeout: Some(timeout),
        connect_timeout: Some(timeout),
        max_concurrent_download: 1,
        user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    // try_from, not new: new() falls back to a default client, silently dropping the CA.
    oci_client::Client::try_from(config)
        .map_err(|e| OciError::BadCaCertificate { repo: repo.to_string(), message: e.to_string() })
}

fn check_digest(repo: &OciRepository, digest: &str) -> Result<(), OciError> {
    match is_sha256_digest(digest) {
        true => Ok(()),
        false => Err(OciError::BadReference {
            repo: repo.to_string(),
            problem: format!("digest {digest:?} is not sha256:<64 lowercase hex digits>"),
        }),
    }
}

fn check_tag(repo: &OciRepository, tag: &str) -> Result<(), OciError> {
    match is_valid_tag(tag) {
        true => Ok(()),
        false => Err(OciError::BadReference {
            repo: repo.to_string(),
            problem: format!(
                "tag {tag:?} is not a valid OCI tag (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')"
            ),
        }),
    }
}

/// An OCI image manifest (schema 2); an index or a Docker manifest is refused by name.
fn parse_manifest(repo: &OciRepository, body: &[u8]) -> Result<OciImageManifest, OciError> {
    let invalid = |message: String| OciError::InvalidManifest { repo: repo.to_string(), message };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let media_type = value.get("mediaType").and_then(|m| m.as_str()).unwrap_or(OCI_IMAGE_MEDIA_TYPE);
    if media_type != OCI_IMAGE_MEDIA_TYPE {
        return Err(invalid(format!(
            "media type {media_type} (an image index or another kind of manifest); ferry pulls OCI image manifests ({OCI_IMAGE_MEDIA_TYPE})"
        )));
    }
    let manifest: OciImageManifest = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(invalid(format!("schema version {} (ferry reads version 2)", manifest.schema_version)));
    }
    Ok(manifest)
}

/// The descriptor's size, if it is one ferry will download.
fn check_layer_descriptor(
    repo: &OciRepository,
    layer: &OciDescriptor,
    max_bytes: u64,
) -> Result<u64, OciError> {
    let invalid = |message: String| OciError::InvalidManifest { repo: repo.to_string(), message };
    if !is_sha256_digest(&layer.digest) {
        return Err(invalid(format!("layer digest {:?} is not a sha256 digest", layer.digest)));
    }
    let size =
        u64::try_from(layer.size).map_err(|_| invalid(format!("layer size {} is negative", layer.size)))?;
    if size > max_bytes {
        return Err(OciError::TooLarge {
            repo: repo.to_string(),
            what: "layer",
            size: Some(size),
            limit: max_bytes,
        });
    }
    Ok(size)
}

/// Exactly `size` bytes of `stream`: more is not read, fewer is a broken transfer.
async fn read_exactly(
    stream: &mut oci_client::client::SizedStream,
    size: u64,
    repo: &OciRepository,
    ctx: &ContextFor<'_>,
) -> Result<Bytes, OciError> {
    let mut buf = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
    while (buf.len() as u64) < size {
        let Some(chunk) = stream.next().await else {
            let message = format!("the layer download ended after {} of {size} bytes", buf.len());
            return Err(OciError::Unreachable { repo: repo.to_string(), message });
        };
        let chunk = chunk.map_err(|e| OciError::Unreachable {
            repo: repo.to_string(),
            message: ctx.scrub(&e.to_string()),
        })?;
        let room = usize::try_from(size - buf.len() as u64).unwrap_or(usize::MAX);
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> OciRepository {
        OciRepository::parse("oci://127.0.0.1:1/charts/app").unwrap()
    }

    fn basic(password: &str) -> RegistryAccess {
        let auth = RegistryAuth::Basic { username: "u".into(), password: password.into() };
        RegistryAccess { auth, ..Default::default() }
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", basic("hunter2"));
        assert!(text.contains("\"u\"") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn clients_are_shared_per_tls_config_and_credentials() {
        let fetcher = OciFetcher::new(OciFetcherOptions::default());
        let plain = RegistryAccess { plain_http: true, ..Default::default() };
        for access in [&RegistryAccess::default(), &plain, &basic("a"), &basic("b"), &basic("a"), &plain] {
            fetcher.client(&repo(), access).unwrap();
        }
        assert_eq!(fetcher.cached_clients(), 4);
        assert!(!format!("{:?}", ClientKey::of(&basic("hunter2"))).contains("hunter2"));
    }

    #[test]
    fn a_bad_ca_is_an_error_not_a_silent_default() {
        let fetcher = OciFetcher::new(OciFetcherOptions::default());
        let access = RegistryAccess {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec()),
            ..Default::default()
        };
        let err = fetcher.client(&repo(), &access).err().expect("refused");
        assert_eq!(err.category(), "invalid_ca", "{err}");
    }

    #[tokio::test]
    async fn digests_resolve_without_the_network_and_bad_ones_are_refused() {
        let fetcher = OciFetcher::new(OciFetcherOptions::default());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let resolved = fetcher
            .resolve(&repo(), &OciSelector::Digest(digest.clone()), &Default::default())
            .await
            .unwrap();
        assert_eq!(resolved, Resolved { tag: None, digest: digest.clone() });
        assert_eq!(resolved.to_string(), digest);
        let bad =
            fetcher.resolve(&repo(), &OciSelector::Digest("sha256:AB".into()), &Default::default()).await;
        assert_eq!(bad.unwrap_err().category(), "invalid_ref");
        let bad = fetcher.resolve(&repo(), &OciSelector::Tag("a/b".into()), &Default::default()).await;
        assert_eq!(bad.unwrap_err().category(), "invalid_ref");
        let bad = fetcher.pull(&repo(), "latest", &Default::default(), ArtifactKind::HelmChart).await;
        assert_eq!(bad.unwrap_err().category(), "invalid_ref");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_network_error() {
        let fetcher =
            OciFetcher::new(OciFetcherOptions { timeout: Duration::from_secs(5), max_bytes: 1 << 20 });
        let access = RegistryAccess { plain_http: true, ..Default::default() };
        let err = fetcher.resolve(&repo(), &OciSelector::Tag("1.0.0".into()), &access).await.unwrap_err();
        assert_eq!(err.category(), "network", "{err}");
        assert!(
            err.to_string().starts_with("oci://127.0.0.1:1/charts/app: cannot reach the registry"),
            "{err}"
        );
    }

    #[test]
    fn manifests_and_layer_descriptors_are_checked() {
        let index =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = parse_manifest(&repo(), index).unwrap_err();
        assert!(err.to_string().contains("image index"), "{err}");
        assert_eq!(parse_manifest(&repo(), b"{").unwrap_err().category(), "invalid_manifest");
        let ok =
            br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0","size":2},"layers":[]}"#;
        assert!(parse_manifest(&repo(), ok).is_ok());
        let layer =
            |digest: &str, size: i64| OciDescriptor { digest: digest.into(), size, ..Default::default() };
        let good = format!("sha256:{}", "0".repeat(64));
        assert_eq!(check_layer_descriptor(&repo(), &layer(&good, 10), 10).unwrap(), 10);
        assert_eq!(
            check_layer_descriptor(&repo(), &layer(&good, 11), 10).unwrap_err().category(),
            "too_large"
        );
        assert_eq!(
            check_layer_descriptor(&repo(), &layer(&good, -1), 10).unwrap_err().category(),
            "invalid_manifest"
        );
        assert_eq!(
            check_layer_descriptor(&repo(), &layer("md5:x", 1), 10).unwrap_err().category(),
            "invalid_manifest"
        );
    }

    #[test]
    fn revisions_read_like_fluxs() {
        let r = Resolved { tag: Some("1.2.3".into()), digest: "sha256:ab".into() };
        assert_eq!(r.to_string(), "1.2.3@sha256:ab");
    }
}
