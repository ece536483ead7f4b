//! Metadata-only watches of the objects ferry manages: one per kind in use, filtered by ferry's
//! `managed-by` label, so memory follows what ferry manages rather than the cluster's size.
//!
//! They serve two purposes. A change to a managed object (someone's `kubectl edit` or `kubectl
//! delete`, a Deployment's status moving) triggers a reconcile of its Application within
//! seconds. And a reconcile can tell from the watch, without a request, that an object still has
//! the resourceVersion ferry last saw, so it has not changed.
//!
//! A few objects are needed whole, not just their metadata: a rollout reads its Deployments'
//! status on every pass. For those, [`Watches::full`] keeps a watch of the whole objects of one
//! kind in one namespace (with ferry's label), started on first use, so a pass reads them from
//! there rather than with a GET whenever the watch is as new as the metadata watch.
//!
//! With `--managed-namespaces` (the chart's namespaced RBAC mode, Roles only) each kind is
//! watched in each of those namespaces rather than cluster-wide, which needs no cluster-wide list
//! permission; cluster-scoped kinds and other namespaces are not watched, and objects there are
//! read when needed (and refused by RBAC).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{DynamicObject, PartialObjectMeta},
    discovery::ApiResource,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::{mpsc::UnboundedSender, watch};

use crate::{
    api::Application,
    apply::{APP_NAME, APP_NAMESPACE, FIELD_MANAGER, MANAGED_BY},
};

type Meta = PartialObjectMeta<DynamicObject>;

/// What a watch knows of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The watch is synced and no object with ferry's label has this name: it does not exist, or
    /// exists without ferry's labels.
    Absent,
    Present {
        resource_version: String,
        labels: BTreeMap<String, String>,
    },
    /// The watch is not synced yet (just started, or the API server is away).
    Unknown,
}

#[derive(Clone)]
struct Watched {
    resource: ApiResource,
    store: Store<Meta>,
    /// Turns true once the first list is in the store. Set by the watch task itself: kube's
    /// `Store::wait_until_ready` keeps one waker, so of several reconciles waiting on a new kind
    /// at once, all but one would wait out their timeout.
    ready: Arc<watch::Sender<bool>>,
}

/// A watch of whole objects of one kind in one namespace.
#[derive(Clone)]
struct FullWatched {
    store: Store<DynamicObject>,
    /// As for [`Watched`].
    ready: Arc<watch::Sender<bool>>,
}

/// A synced watch of whole objects, as [`Watches::full`] gives it.
#[derive(Clone)]
pub struct FullView {
    watched: FullWatched,
    resource: ApiResource,
    namespace: String,
}

impl FullView {
    /// The object `name` as the watch last saw it.
    pub fn get(&self, name: &str) -> Option<Arc<DynamicObject>> {
        let oref = ObjectRef::<DynamicObject>::new_with(name, self.resource.clone()).within(&self.namespace);
        self.watched.store.get(&oref)
    }
}

/// group, version, kind, and the namespace watched (`None`: all).
type Key = (String, String, String, Option<String>);

/// One object of one watch: the watch's key, the object's namespace and name.
type ObjectId = (Key, Option<String>, String);

/// The resourceVersions ferry's own writes left objects at, until their watch event comes.
type Echoes = Arc<Mutex<HashMap<ObjectId, String>>>;

fn key(resource: &ApiResource, namespace: Option<&str>) -> Key {
    (resource.group.clone(), resource.version.clone(), resource.kind.clone(), namespace.map(str::to_string))
}

/// Whether `meta` is the event of ferry's own last write of it ([`Watches::expect_own_write`]).
/// Any event of the object ends the expectation, so none outlives the next change.
fn is_own_echo(echoes: &Echoes, watch: &Key, meta: &Meta) -> bool {
    let id = (watch.clone(), meta.metadata.namespace.clone(), meta.metadata.name.clone().unwrap_or_default());
    let expected = echoes.lock().expect("echoes lock").remove(&id);
    expected.is_some_and(|rv| meta.metadata.resource_version.as_deref() == Some(rv.as_str()))
}

/// The set of running watches, keyed by group/version/kind and namespace.
pub struct Watches {
    client: Client,
    trigger: UnboundedSender<ObjectRef<Application>>,
    /// With `--namespace`, only Applications there are woken.
    namespace: Option<String>,
    /// With `--managed-namespaces`, kinds are watched in these namespaces only.
    managed: Option<Vec<String>>,
    kinds: Mutex<HashMap<Key, Watched>>,
    /// Watches of whole objects ([`Watches::full`]), by kind and namespace.
    full: Mutex<HashMap<Key, FullWatched>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// See [`Watches::expect_own_write`]. At most one entry per managed object: an entry goes
    /// with the next event of its object.
    echoes: Echoes,
}

impl Watches {
    /// Watches whose events trigger reconciles through `trigger`.
    pub fn new(
        client: Client,
        trigger: UnboundedSender<ObjectRef<Application>>,
        namespace: Option<String>,
        managed: Option<Vec<String>>,
    ) -> Watches {
        Watches {
            client,
            trigger,
            namespace,
            managed,
            kinds: Mutex::new(HashMap::new()),
            full: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            echoes: Arc::default(),
        }
    }

    /// Tells the watch of `resource` that ferry itself just wrote `namespace/name`, which the
    /// write left at `resource_version`. The event that brings back exactly that version wakes
    /// no reconcile: the pass that wrote it already saw that object (the apply's answer), so a
    /// pass woken by it would find nothing to do; in a fleet of new Applications that is one
    /// reconcile in three. An event of any other version (someone else's change, a controller's
    /// status) wakes the Application as before.
    pub fn expect_own_write(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
    ) {
        let Some(scope) = self.scope(namespace) else { return };
        let key = key(resource, scope);
        if !self.kinds.lock().expect("watches lock").contains_key(&key) {
            return;
        }
        let id = (key, namespace.map(str::to_string), name.to_string());
        self.echoes.lock().expect("echoes lock").insert(id, resource_version.to_string());
    }

    /// Starts watching `resource` (a `namespaced` kind or not) unless it is watched already, and
    /// waits up to `wait` for the watches' first lists. Returns whether they are synced; always
    /// false for a cluster-scoped kind with `--managed-namespaces`, which is never watched.
    pub async fn ensure(&self, resource: &ApiResource, namespaced: bool, wait: Duration) -> bool {
        let scopes: Vec<Option<&str>> = match &self.managed {
            None => vec![None],
            Some(list) if namespaced => list.iter().map(|ns| Some(ns.as_str())).collect(),
            Some(_) => return false,
        };
        let readies = scopes.into_iter().map(|ns| {
            let mut ready = self.watched(resource, ns).ready.subscribe();
            async move { ready.wait_for(|r| *r).await.is_ok() }
        });
        let all = futures::future::join_all(readies);
        tokio::time::timeout(wait, all).await.is_ok_and(|synced| synced.iter().all(|s| *s))
    }

    /// The namespace of the watch that answers for objects in `namespace`: `Some(None)` for the
    /// cluster-wide one; `None` when no watch covers it.
    fn scope<'a>(&self, namespace: Option<&'a str>) -> Option<Option<&'a str>> {
        match &self.managed {
            None => Some(None),
            Some(list) => namespace.filter(|ns| list.iter().any(|m| m == ns)).map(Some),
        }
    }

    fn watched(&self, resource: &ApiResource, namespace: Option<&str>) -> Watched {
        let key = key(resource, namespace);
        let mut kinds = self.kinds.lock().expect("watches lock");
        if let Some(w) = kinds.get(&key) {
            return w.clone();
        }
        let writer = reflector::store::Writer::<Meta>::new(resource.clone());
        let store = writer.as_reader();
        let api: Api<Meta> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
        let trigger = self.trigger.clone();
        let (echoes, watch_key) = (self.echoes.clone(), key.clone());
        let only = self.namespace.clone();
        let kind = resource.kind.clone();
        let ready = Arc::new(watch::Sender::new(false));
        let synced = ready.clone();
        let task = tokio::spawn(async move {
            let events = watcher(api, config)
                .default_backoff()
                .reflect(writer)
                .inspect(move |e| {
                    if matches!(e, Ok(watcher::Event::InitDone)) {
                        synced.send_replace(true);
                    }
                })
                .touched_objects();
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(meta) if is_own_echo(&echoes, &watch_key, &meta) => {}
                    Ok(meta) => {
                        let labels = meta.metadata.labels.as_ref();
                        let app = labels.and_then(|l| Some((l.get(APP_NAMESPACE)?, l.get(APP_NAME)?)));
                        if let Some((ns, name)) = app
                            && only.as_ref().is_none_or(|only| only == ns)
                        {
                            // The controller has stopped when the receiver is gone; nothing to do.
                            let _ = trigger.send(ObjectRef::new(name).within(ns));
                        }
                    }
                    Err(err) => {
                        tracing::debug!(kind = %kind, error = %err, "watch of managed objects interrupted")
                    }
                }
            }
        });
        self.tasks.lock().expect("watch tasks lock").push(task);
        let watched = Watched { resource: resource.clone(), store, ready };
        kinds.insert(key, watched.clone());
        watched
    }

    /// What the watch of `resource` knows of `namespace/name`.
    pub fn seen(&self, resource: &ApiResource, namespace: Option<&str>, name: &str) -> Seen {
        let Some(scope) = self.scope(namespace) else { return Seen::Unknown };
        let key = key(resource, scope);
        let Some(watched) = self.kinds.lock().expect("watches lock").get(&key).cloned() else {
            return Seen::Unknown;
        };
        if !*watched.ready.borrow() {
            return Seen::Unknown;
        }
        let mut oref = ObjectRef::<Meta>::new_with(name, watched.resource.clone());
        if let Some(ns) = namespace {
            oref = oref.within(ns);
        }
        match watched.store.get(&oref) {
            None => Seen::Absent,
            Some(meta) => Seen::Present {
                resource_version: meta.metadata.resource_version.clone().unwrap_or_default(),
                labels: meta.metadata.labels.clone().unwrap_or_default(),
            },
        }
    }

    /// The whole objects of `resource` in `namespace` that carry ferry's label, from a watch
    /// started on first use, which waits up to `wait` for its first list (later calls do not
    /// wait: a watch that cannot list, for want of RBAC, must not slow every pass). `None` when
    /// it is not synced, or when no metadata watch covers the namespace (`--managed-namespaces`),
    /// where ferry may not list. It wakes no reconcile: the metadata watch of the kind does.
    pub async fn full(&self, resource: &ApiResource, namespace: &str, wait: Duration) -> Option<FullView> {
        self.scope(Some(namespace))?;
        let (watched, started) = self.full_watched(resource, namespace);
        let mut ready = watched.ready.subscribe();
        let synced = match started {
            true => tokio::time::timeout(wait, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok()),
            false => *ready.borrow(),
        };
        synced.then(|| FullView { watched, resource: resource.clone(), namespace: namespace.to_string() })
    }

    /// The watch of whole objects, and whether it was started just now.
    fn full_watched(&self, resource: &ApiResource, namespace: &str) -> (FullWatched, bool) {
        let key = key(resource, Some(namespace));
        let mut full = self.full.lock().expect("watches lock");
        if let Some(w) = full.get(&key) {
            return (w.clone(), false);
        }
        let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, resource);
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
        let ready = Arc::new(watch::Sender::new(false));
        let synced = ready.clone();
        let kind = resource.kind.clone();
        let task = tokio::spawn(async move {
            let events = watcher(api, config).default_backoff().reflect(writer);
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        synced.send_replace(true);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(kind = %kind, error = %err, "watch of whole objects interrupted")
                    }
                }
            }
        });
        self.tasks.lock().expect("watch tasks lock").push(task);
        let watched = FullWatched { store, ready };
        full.insert(key, watched.clone());
        (watched, true)
    }

    /// Number of watches (kinds, times namespaces with `--managed-namespaces`), for logs and tests.
    pub fn len(&self) -> usize {
        self.kinds.lock().expect("watches lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("watch tasks lock").drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, resource_version: &str) -> Meta {
        let mut meta: Meta = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}
        }))
        .expect("object metadata");
        meta.metadata.resource_version = Some(resource_version.into());
        meta
    }

    fn expect(echoes: &Echoes, watch: &Key, name: &str, resource_version: &str) {
        let id = (watch.clone(), Some("ns".to_string()), name.to_string());
        echoes.lock().unwrap().insert(id, resource_version.into());
    }

    #[test]
    fn only_the_event_of_ferrys_own_write_is_its_echo_and_it_is_recognised_once() {
        let echoes = Echoes::default();
        let watch: Key = ("".into(), "v1".into(), "ConfigMap".into(), None);
        expect(&echoes, &watch, "a", "5");
        assert!(is_own_echo(&echoes, &watch, &event("a", "5")), "the version ferry wrote");
        assert!(
            !is_own_echo(&echoes, &watch, &event("a", "5")),
            "a second event is news: the expectation is gone"
        );

        // Someone else's change (another version) wakes the Application, and ends the expectation.
        expect(&echoes, &watch, "b", "7");
        assert!(!is_own_echo(&echoes, &watch, &event("b", "8")));
        assert!(echoes.lock().unwrap().is_empty(), "an expectation outlived its object's next event");

        // Another object, or the same name in another watch, is not the echo.
        expect(&echoes, &watch, "c", "9");
        assert!(!is_own_echo(&echoes, &watch, &event("d", "9")));
        let other: Key = ("apps".into(), "v1".into(), "Deployment".into(), None);
        assert!(!is_own_echo(&echoes, &other, &event("c", "9")));
        assert!(is_own_echo(&echoes, &watch, &event("c", "9")));
    }
}
