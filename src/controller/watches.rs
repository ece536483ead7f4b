//! Metadata-only watches of the objects ferry manages: one per kind in use, filtered by ferry's
//! `managed-by` label, so memory follows what ferry manages rather than the cluster's size.
//!
//! They serve two purposes. A change to a managed object (someone's `kubectl edit` or `kubectl
//! delete`, a Deployment's status moving) triggers a reconcile of its Application within
//! seconds. And a reconcile can tell from the watch, without a request, that an object still has
//! the resourceVersion ferry last saw, so it has not changed.

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

/// The set of running watches, keyed by group/version/kind.
pub struct Watches {
    client: Client,
    trigger: UnboundedSender<ObjectRef<Application>>,
    /// With `--namespace`, only Applications there are woken.
    namespace: Option<String>,
    kinds: Mutex<HashMap<(String, String, String), Watched>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Watches {
    /// Watches whose events trigger reconciles through `trigger`.
    pub fn new(
        client: Client,
        trigger: UnboundedSender<ObjectRef<Application>>,
        namespace: Option<String>,
    ) -> Watches {
        Watches {
            client,
            trigger,
            namespace,
            kinds: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts watching `resource` unless it is watched already, and waits up to `wait` for the
    /// watch's first list. Returns whether the watch is synced.
    pub async fn ensure(&self, resource: &ApiResource, wait: Duration) -> bool {
        let watched = self.watched(resource);
        let mut ready = watched.ready.subscribe();
        tokio::time::timeout(wait, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    fn watched(&self, resource: &ApiResource) -> Watched {
        let key = (resource.group.clone(), resource.version.clone(), resource.kind.clone());
        let mut kinds = self.kinds.lock().expect("watches lock");
        if let Some(w) = kinds.get(&key) {
            return w.clone();
        }
        let writer = reflector::store::Writer::<Meta>::new(resource.clone());
        let store = writer.as_reader();
        let api: Api<Meta> = Api::all_with(self.client.clone(), resource);
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
        let trigger = self.trigger.clone();
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
        let key = (resource.group.clone(), resource.version.clone(), resource.kind.clone());
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

    /// Number of kinds watched, for logs and tests.
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
