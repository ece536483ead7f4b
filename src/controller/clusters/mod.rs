//! Where an Application deploys: the cluster ferry runs in, or a remote `Cluster` of its
//! namespace. One [`ClusterLink`] per cluster in use, shared by every Application deploying
//! there and dropped when none does:
//!
//! ```text
//! destination.cluster -> Cluster (watch cache) -> kubeconfig Secret (ferry, every 5 min) -> checked -> link
//!                                                 + the Application's ServiceAccount may read it (once per link)
//!                                                 + the TenantPolicy allows the server
//! ```
//!
//! A remote link's clients go through its circuit breaker ([`crate::cluster::breaker`]); while
//! it is open, [`maintain`] probes the API server every few seconds and, when it answers,
//! closes it and wakes the cluster's Applications. `cluster_status` (above this module, beside
//! the context) writes what ferry knows of each Cluster to its status.

mod link;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    Client, ResourceExt,
    discovery::Discovery,
    runtime::reflector::{ObjectRef, Store},
};
use tokio::sync::mpsc::UnboundedSender;

pub use self::link::{ClientError, ClusterId, ClusterLink, LinkParts, build_client};
use super::watches::Watches;
use crate::{
    api::{Application, Cluster, LocalObjectReference, conditions as c, destination_cluster},
    cluster::{
        breaker::Breaker,
        connect::{self, CheckedKubeconfig, ConnectError},
    },
    locks::locked,
    metrics::Metrics,
    source::credentials::read_secret,
    tenancy::{Refusal, Tenancy},
};

/// How long a kubeconfig Secret read is trusted: a rotated token is used within this.
const SECRET_MAX_AGE: Duration = Duration::from_secs(300);
/// How long a failed connection is remembered: the Applications of a cluster that cannot be
/// reached fail at once meanwhile rather than each trying again.
const FAILED_CONNECT_MEMORY: Duration = Duration::from_secs(10);

/// Why an Application's destination cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("spec.destination.cluster names Cluster {namespace}/{name}, which does not exist")]
    NotFound { namespace: String, name: String },
    #[error("Cluster {cluster}: {source}")]
    Kubeconfig { cluster: String, source: Box<ConnectError> },
    #[error(
        "Cluster {cluster}: ServiceAccount {service_account} cannot read the kubeconfig Secret {secret} ({words}); an Application deploys to a Cluster only with credentials it may read"
    )]
    SecretNotReadable { cluster: String, service_account: String, secret: String, words: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(
        "Cluster {cluster} is unreachable: {message}; nothing was pruned, and ferry syncs again when it answers"
    )]
    Unreachable { cluster: String, message: String },
}

impl ClusterError {
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::NotFound { .. } => c::CLUSTER_NOT_FOUND,
            ClusterError::Kubeconfig { .. } | ClusterError::SecretNotReadable { .. } => c::INVALID_KUBECONFIG,
            ClusterError::Refused(r) => r.reason(),
            ClusterError::Unreachable { .. } => c::CLUSTER_UNREACHABLE,
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            ClusterError::Unreachable { .. } => "cluster",
            ClusterError::Refused(_) => "tenancy",
            _ => "config",
        }
    }

    /// A cluster that does not answer, a Cluster or Secret about to be created: retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unreachable { .. } | ClusterError::NotFound { .. })
    }
}

/// The remote clusters in use, and what makes new links.
pub struct Clusters {
    links: Mutex<HashMap<(String, String), Remote>>,
    /// Connections that failed lately: when, with which kubeconfig (its fingerprint), why.
    failed: Mutex<HashMap<(String, String), FailedConnect>>,
    /// One connection attempt per cluster at a time: the first reconciles of a cluster's
    /// Applications, which come together, share one link instead of each making its own.
    connecting: Mutex<HashMap<ClusterKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Every Cluster ferry may read (`None` when the CRD is not installed).
    pub store: Option<Store<Cluster>>,
    trigger: UnboundedSender<ObjectRef<Application>>,
    metrics: Arc<Metrics>,
    api_timeout: Duration,
}

/// A remote cluster's link, the Cluster it was made for and the server it reaches.
pub struct Linked {
    pub link: Arc<ClusterLink>,
    pub cluster: Arc<Cluster>,
    pub server: String,
}

type FailedConnect = (Instant, u64, String);

/// A Cluster's namespace and name.
pub type ClusterKey = (String, String);

/// A link and when its Secret was last read.
struct Remote {
    link: Arc<ClusterLink>,
    server: String,
    /// A client without the breaker, for probes while the circuit is open.
    probe: Client,
    generation: Option<i64>,
    secret_read_at: Instant,
}

impl Clusters {
    pub fn new(
        store: Option<Store<Cluster>>,
        trigger: UnboundedSender<ObjectRef<Application>>,
        metrics: Arc<Metrics>,
        api_timeout: Duration,
    ) -> Clusters {
        Clusters {
            links: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
            store,
            trigger,
            metrics,
            api_timeout,
        }
    }

    /// The link of the remote Cluster `namespace/name`, made or refreshed as needed, read with
    /// ferry's own client `client`.
    pub async fn link(&self, client: &Client, namespace: &str, name: &str) -> Result<Linked, ClusterError> {
        let key = (namespace.to_string(), name.to_string());
        let cluster = self.cluster(namespace, name)?;
        if let Some(linked) = self.current(&key, &cluster) {
            return Ok(linked);
        }
        let turn = locked(&self.connecting).entry(key.clone()).or_default().clone();
        let _turn = turn.lock().await;
        self.refresh(client, key, cluster).await
    }

    /// The link of `key` when it is still good for `cluster` (same generation, Secret read
    /// lately).
    fn current(&self, key: &(String, String), cluster: &Arc<Cluster>) -> Option<Linked> {
        let links = locked(&self.links);
        let remote = links.get(key)?;
        let fresh = remote.generation == cluster.metadata.generation
            && remote.secret_read_at.elapsed() < SECRET_MAX_AGE;
        fresh.then(|| Linked {
            link: remote.link.clone(),
            cluster: cluster.clone(),
            server: remote.server.clone(),
        })
    }

    /// Reads the kubeconfig again and keeps, remakes or makes the link (one caller per cluster
    /// at a time).
    async fn refresh(
        &self,
        client: &Client,
        key: (String, String),
        cluster: Arc<Cluster>,
    ) -> Result<Linked, ClusterError> {
        let (namespace, name) = (&key.0, &key.1);
        let label = format!("{namespace}/{name}");
        // Someone may have made it while this caller waited its turn.
        if let Some(linked) = self.current(&key, &cluster) {
            return Ok(linked);
        }
        let checked = connect::kubeconfig_of(client, self.api_timeout, &cluster)
            .await
            .map_err(|e| ClusterError::Kubeconfig { cluster: label.clone(), source: Box::new(e) })?;
        if let Some(remote) = locked(&self.links).get_mut(&key)
            && remote.link.fingerprint == checked.fingerprint
        {
            remote.generation = cluster.metadata.generation;
            remote.secret_read_at = Instant::now();
            // Who may read the Secret is checked again too: a revoked Role takes effect now.
            locked(&remote.link.secret_readers).clear();
            return Ok(Linked { link: remote.link.clone(), cluster, server: checked.server });
        }
        if let Some((at, fingerprint, message)) = locked(&self.failed).get(&key)
            && at.elapsed() < FAILED_CONNECT_MEMORY
            && *fingerprint == checked.fingerprint
        {
            return Err(ClusterError::Unreachable { cluster: label, message: message.clone() });
        }
        let (link, probe) = match self.connect(&cluster, &checked).await {
            Ok(made) => made,
            Err(e) => {
                let message = e.to_string();
                locked(&self.failed).insert(key, (Instant::now(), checked.fingerprint, message.clone()));
                return Err(ClusterError::Unreachable { cluster: label, message });
            }
        };
        locked(&self.failed).remove(&key);
        let remote = Remote {
            link: link.clone(),
            server: checked.server.clone(),
            probe,
            generation: cluster.metadata.generation,
            secret_read_at: Instant::now(),
        };
        locked(&self.links).insert(key, remote);
        tracing::info!(cluster = %label, server = %checked.server, "connected to a remote cluster");
        Ok(Linked { link, cluster, server: checked.server })
    }

    fn cluster(&self, namespace: &str, name: &str) -> Result<Arc<Cluster>, ClusterError> {
        let not_found =
            || ClusterError::NotFound { namespace: namespace.to_string(), name: name.to_string() };
        let store = self.store.as_ref().ok_or_else(not_found)?;
        store.get(&ObjectRef::new(name).within(namespace)).ok_or_else(not_found)
    }

    /// A new link to `cluster`: its clients, first discovery and version, and its watches.
    async fn connect(
        &self,
        cluster: &Cluster,
        checked: &CheckedKubeconfig,
    ) -> Result<(Arc<ClusterLink>, Client), ConnectFailure> {
        let secret = &cluster.spec.kube_config.secret_ref.name;
        let config =
            connect::config_of(checked, secret, self.api_timeout).await.map_err(ConnectFailure::Config)?;
        let id = ClusterId::Remote {
            namespace: cluster.namespace().unwrap_or_default(),
            name: cluster.name_any(),
        };
        let breaker = Arc::new(Breaker::default());
        let client = build_client(&self.metrics, config.clone(), Some(breaker.clone()), id.label())
            .map_err(ConnectFailure::Client)?;
        // The probe of a failing cluster bypasses its breaker (it is what closes it).
        let probe =
            build_client(&self.metrics, config.clone(), None, id.label()).map_err(ConnectFailure::Client)?;
        let timeout = self.api_timeout;
        let version = tokio::time::timeout(timeout, client.apiserver_version())
            .await
            .map_err(|_| ConnectFailure::Timeout)?
            .map_err(ConnectFailure::Api)?;
        let discovery = tokio::time::timeout(timeout * 3, Discovery::new(client.clone()).run())
            .await
            .map_err(|_| ConnectFailure::Timeout)?
            .map_err(ConnectFailure::Api)?;
        // Its watches wake only Applications of the Cluster's namespace (the only ones that may
        // use it): whatever a remote API server claims its objects' labels say, it cannot make
        // ferry reconcile another tenant's Applications.
        let only = Some(cluster.namespace().unwrap_or_default());
        let watches = Watches::new(client.clone(), self.trigger.clone(), only, None);
        let parts = LinkParts {
            id,
            client,
            config,
            breaker: Some(breaker),
            watches,
            discovery,
            kubernetes_version: version.git_version,
            fingerprint: checked.fingerprint,
        };
        Ok((Arc::new(ClusterLink::new(parts, self.metrics.clone(), timeout)), probe))
    }

    /// The links in use, with their Cluster's key.
    pub fn links(&self) -> Vec<((String, String), Arc<ClusterLink>)> {
        locked(&self.links).iter().map(|(k, r)| (k.clone(), r.link.clone())).collect()
    }

    /// The last failed connection to `namespace/name`, if it is the latest news.
    pub fn failure(&self, namespace: &str, name: &str) -> Option<String> {
        locked(&self.failed).get(&(namespace.to_string(), name.to_string())).map(|(_, _, m)| m.clone())
    }

    /// Drops the links no Application deploys through (their watches stop with them).
    pub fn keep(&self, used: &HashSet<(String, String)>) {
        locked(&self.links).retain(|key, remote| {
            let keep = used.contains(key);
            if !keep {
                tracing::info!(cluster = %remote.link.id, "no Application deploys to the cluster any more; disconnected");
            }
            keep
        });
        locked(&self.failed).retain(|key, _| used.contains(key));
        locked(&self.connecting).retain(|key, _| used.contains(key));
    }

    /// Probes each cluster that did not answer its last request; one that answers has its
    /// circuit closed and its Applications woken. Returns the clusters that came back.
    pub async fn probe_failing(&self, apps: &Store<Application>) -> Vec<ClusterId> {
        let open: Vec<(Arc<ClusterLink>, Client)> = locked(&self.links)
            .values()
            .filter(|r| r.link.is_failing())
            .map(|r| (r.link.clone(), r.probe.clone()))
            .collect();
        let mut back = Vec::new();
        for (link, probe) in open {
            let answered = tokio::time::timeout(connect::CONNECT_TIMEOUT, probe.apiserver_version()).await;
            if !matches!(answered, Ok(Ok(_))) {
                continue;
            }
            if let Some(breaker) = &link.breaker {
                breaker.answered();
            }
            tracing::info!(cluster = %link.id, "the cluster answers again");
            for app in apps.state().iter().filter(|a| deploys_to(a, &link.id)) {
                let _ = self.trigger.send(ObjectRef::from_obj(app.as_ref()));
            }
            back.push(link.id.clone());
        }
        back
    }
}

/// Whether `app` deploys to the cluster `id`.
pub fn deploys_to(app: &Application, id: &ClusterId) -> bool {
    match (destination_cluster(app), id) {
        (None, ClusterId::Local) => true,
        (Some(name), ClusterId::Remote { namespace, name: n }) => {
            name == n && app.namespace().as_deref() == Some(namespace.as_str())
        }
        _ => false,
    }
}

/// Checks an Application may deploy through `link`: the TenantPolicy allows its server, and the
/// ServiceAccount it acts as (when it names one) can read the kubeconfig Secret, read once per
/// link as `local` (that ServiceAccount in the cluster ferry runs in).
pub async fn admit(
    Linked { link, cluster, server }: &Linked,
    tenancy: &Tenancy,
    local: &Client,
    service_account: Option<&str>,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let label = format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any());
    tenancy.check_cluster_server(&label, server)?;
    let Some(sa) = service_account else { return Ok(()) };
    let reader = format!("{}/{sa}", cluster.namespace().unwrap_or_default());
    if locked(&link.secret_readers).contains(&reader) {
        return Ok(());
    }
    let secret = LocalObjectReference { name: cluster.spec.kube_config.secret_ref.name.clone() };
    let namespace = cluster.namespace().unwrap_or_default();
    if let Err(e) = read_secret(local, timeout, &namespace, &secret).await {
        return Err(ClusterError::SecretNotReadable {
            cluster: label,
            service_account: sa.to_string(),
            secret: secret.name,
            words: e.to_string(),
        });
    }
    locked(&link.secret_readers).insert(reader);
    Ok(())
}

/// Why a connection to a remote cluster could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("{0}")]
    Config(ConnectError),
    #[error("no client: {0}")]
    Client(kube::Error),
    #[error("no answer within the API timeout")]
    Timeout,
    #[error("{}", crate::kube_util::api_words(.0))]
    Api(kube::Error),
}
