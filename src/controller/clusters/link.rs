//! One cluster as the sync stages see it: ferry's client there, the clients that impersonate
//! Applications' ServiceAccounts there, its API discovery, and the watches of the objects ferry
//! manages in it. The cluster ferry runs in has one; each remote `Cluster` in use has one,
//! shared by every Application deploying to it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{Client, Config, discovery::Discovery};
use tokio::sync::RwLock;

use crate::{
    apply::ApplyError,
    cluster::breaker::{Breaker, BreakerLayer},
    controller::watches::Watches,
    locks::locked,
    metrics::Metrics,
    render::{Capabilities, DiscoveredScopes},
};

/// Which cluster a link reaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterId {
    /// The cluster ferry runs in.
    Local,
    /// A `Cluster` object: its namespace and name.
    Remote { namespace: String, name: String },
}

impl ClusterId {
    /// The `cluster` label of metrics and logs: `in-cluster` (as Argo CD names it) or the
    /// Cluster's name.
    pub fn label(&self) -> &str {
        match self {
            ClusterId::Local => "in-cluster",
            ClusterId::Remote { name, .. } => name,
        }
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterId::Local => f.write_str("the local cluster"),
            ClusterId::Remote { namespace, name } => write!(f, "cluster {namespace}/{name}"),
        }
    }
}

/// One cluster's connection pool, discovery and watches.
pub struct ClusterLink {
    pub id: ClusterId,
    /// ferry's own identity in the cluster (for a remote one, the kubeconfig's).
    pub client: Client,
    /// The configuration `client` was built from, for impersonating clients.
    config: Config,
    /// Remote clusters only: fed by every request to the cluster, refuses requests while open.
    pub breaker: Option<Arc<Breaker>>,
    pub watches: Watches,
    /// The API server's version (`v1.36.3`).
    pub kubernetes_version: String,
    /// Remote clusters only: the hash of the kubeconfig the link was made from.
    pub fingerprint: u64,
    /// Remote clusters only: ServiceAccounts (`namespace/name`) seen able to read the
    /// kubeconfig Secret, so that an Application uses a Cluster only if it could read its
    /// credentials itself.
    pub(super) secret_readers: Mutex<HashSet<String>>,
    discovery: RwLock<Discovered>,
    impersonating: Mutex<HashMap<String, Client>>,
    metrics: Arc<Metrics>,
    api_timeout: Duration,
}

/// What a link is made from.
pub struct LinkParts {
    pub id: ClusterId,
    pub client: Client,
    pub config: Config,
    pub breaker: Option<Arc<Breaker>>,
    pub watches: Watches,
    pub discovery: Discovery,
    pub kubernetes_version: String,
    pub fingerprint: u64,
}

impl ClusterLink {
    pub fn new(parts: LinkParts, metrics: Arc<Metrics>, api_timeout: Duration) -> ClusterLink {
        let LinkParts { id, client, config, breaker, watches, discovery, kubernetes_version, fingerprint } =
            parts;
        let discovered = Discovered::new(discovery, kubernetes_version.clone(), Instant::now());
        ClusterLink {
            id,
            client,
            config,
            breaker,
            watches,
            kubernetes_version,
            fingerprint,
            secret_readers: Mutex::new(HashSet::new()),
            discovery: RwLock::new(discovered),
            impersonating: Mutex::new(HashMap::new()),
            metrics,
            api_timeout,
        }
    }

    /// The client an Application's reads and writes in this cluster go through: ferry's own,
    /// or one that impersonates `system:serviceaccount:<namespace>:<service_account>` (in a
    /// remote cluster, that user name as the remote cluster's RBAC knows it).
    pub fn client_for(&self, namespace: &str, service_account: Option<&str>) -> Result<Client, ClientError> {
        let Some(sa) = service_account else { return Ok(self.client.clone()) };
        let user = format!("system:serviceaccount:{namespace}:{sa}");
        let mut clients = locked(&self.impersonating);
        if let Some(client) = clients.get(&user) {
            return Ok(client.clone());
        }
        let mut config = self.config.clone();
        // No Impersonate-Group: for a ServiceAccount user the API server adds its groups
        // (system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated) itself, so
        // ferry needs `impersonate` on serviceaccounts only, never on groups (which, being
        // cluster-scoped and unnamed in advance, would need a rule wide enough to escalate).
        config.auth_info.impersonate = Some(user.clone());
        let client = match build_client(&self.metrics, config, self.breaker.clone(), self.id.label()) {
            Ok(client) => client,
            Err(source) => return Err(ClientError { user, source }),
        };
        clients.insert(user, client.clone());
        Ok(client)
    }

    /// The latest discovery.
    pub async fn discovery(&self) -> Arc<Discovery> {
        self.discovery.read().await.discovery.clone()
    }

    /// The scope of every served kind, from the latest discovery, for rendering.
    pub async fn scopes(&self) -> Arc<DiscoveredScopes> {
        self.discovery.read().await.scopes.clone()
    }

    /// The cluster's version and served APIs, from the latest discovery, for helm.
    pub async fn capabilities(&self) -> Arc<Capabilities> {
        self.discovery.read().await.capabilities.clone()
    }

    /// Re-runs discovery unless someone did so after `not_before` (many reconciles asking at
    /// once share one run). Pass the moment from which the answer must be fresh: after CRDs
    /// became Established, that moment.
    pub async fn refresh_discovery(&self, not_before: Instant) -> Result<Arc<Discovery>, ApplyError> {
        let mut guard = self.discovery.write().await;
        if guard.taken > not_before {
            return Ok(guard.discovery.clone());
        }
        let taken = Instant::now();
        let discovery = tokio::time::timeout(self.api_timeout * 3, Discovery::new(self.client.clone()).run())
            .await
            .map_err(|_| ApplyError::Discovery("no answer in time".into()))?
            .map_err(|e| ApplyError::Discovery(e.to_string()))?;
        // The version is the one read when the link was made: an upgrade of the API server
        // changes what charts see only when the link is made again.
        let version = guard.capabilities.kube_version.clone();
        *guard = Discovered::new(discovery, version, taken);
        Ok(guard.discovery.clone())
    }

    /// Drops impersonating clients for users no Application acts as any more.
    pub fn keep_users(&self, users: &HashSet<String>) {
        locked(&self.impersonating).retain(|user, _| users.contains(user));
    }

    /// Whether the cluster did not answer the last request (remote clusters only).
    pub fn is_failing(&self) -> bool {
        self.breaker.as_ref().is_some_and(|b| b.is_failing())
    }
}

/// A client for `config`, counted in the metrics and, for a remote cluster, behind `breaker`.
pub fn build_client(
    metrics: &Arc<Metrics>,
    config: Config,
    breaker: Option<Arc<Breaker>>,
    cluster: &str,
) -> Result<Client, kube::Error> {
    match breaker {
        Some(breaker) => metrics.client_with(config, &BreakerLayer { breaker }, cluster),
        None => metrics.client_with(config, &tower::layer::util::Identity::new(), cluster),
    }
}

/// An impersonating client that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build a client for {user}: {source}")]
pub struct ClientError {
    /// `system:serviceaccount:<namespace>:<name>`.
    user: String,
    source: kube::Error,
}

/// A discovery and what is derived from it once, rather than on every reconcile.
struct Discovered {
    discovery: Arc<Discovery>,
    scopes: Arc<DiscoveredScopes>,
    capabilities: Arc<Capabilities>,
    taken: Instant,
}

impl Discovered {
    fn new(discovery: Discovery, kubernetes_version: String, taken: Instant) -> Discovered {
        let scopes = Arc::new(DiscoveredScopes::from_discovery(&discovery));
        let capabilities = Arc::new(Capabilities::from_discovery(&discovery, &kubernetes_version));
        Discovered { discovery: Arc::new(discovery), scopes, capabilities, taken }
    }
}
