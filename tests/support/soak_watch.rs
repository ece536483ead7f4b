//! The chaos soak's eyes: watches of the managed ConfigMaps, Deployments and Services and a poll
//! of the Applications' statuses, fed to the [`Checker`] until told to stop. A watch that breaks
//! (the API server restarting) lists again; what the new list lacks was deleted during the gap.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Service},
    },
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Checker, Cluster, ObjView, StatusView};

const SELECTOR: &str = "app.kubernetes.io/managed-by=ferry";
/// How often statuses are read.
const POLL: Duration = Duration::from_secs(2);
/// A deletion the watch reports happened at most this long before (delivery may lag).
const LAG: Duration = Duration::from_secs(10);

/// An object of any kind as the checker sees it.
fn view<K: Resource<DynamicType = ()>>(obj: &K) -> ObjView {
    ObjView {
        kind: K::kind(&()).to_string(),
        name: obj.meta().name.clone().unwrap_or_default(),
        labels: obj.labels().clone(),
        annotations: obj.annotations().clone(),
    }
}

/// The same from `kubectl -o json`.
pub fn view_of_json(obj: &Value) -> ObjView {
    let map = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    };
    ObjView {
        kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        name: obj["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        labels: map(&obj["metadata"]["labels"]),
        annotations: map(&obj["metadata"]["annotations"]),
    }
}

type Item = (&'static str, Result<watcher::Event<ObjView>, String>);

fn events<K>(client: kube::Client, ns: &str, kind: &'static str) -> BoxStream<'static, Item>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client, ns);
    let config = watcher::Config::default().labels(SELECTOR);
    watcher(api, config)
        .default_backoff()
        .map(move |r| {
            let event = r.map_err(|e| e.to_string()).map(|e| match e {
                watcher::Event::Apply(o) => watcher::Event::Apply(view(&o)),
                watcher::Event::Delete(o) => watcher::Event::Delete(view(&o)),
                watcher::Event::Init => watcher::Event::Init,
                watcher::Event::InitApply(o) => watcher::Event::InitApply(view(&o)),
                watcher::Event::InitDone => watcher::Event::InitDone,
            });
            (kind, event)
        })
        .boxed()
}

/// One kind's view of the live objects, across re-lists.
#[derive(Default)]
struct Known {
    live: BTreeMap<String, ObjView>,
    /// Keys listed so far by a re-list in progress.
    relisting: Option<BTreeSet<String>>,
    /// When the watch first failed since it last worked.
    broken_at: Option<Instant>,
}

impl Known {
    fn handle(
        &mut self,
        checker: &Mutex<Checker>,
        event: Result<watcher::Event<ObjView>, String>,
        kind: &str,
    ) {
        let now = Instant::now();
        let mut checker = checker.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Err(e) => {
                if self.broken_at.is_none() {
                    eprintln!("[soak] the {kind} watch broke (it will list again): {e}");
                    self.broken_at = Some(now);
                }
            }
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                if let Some(listed) = self.relisting.as_mut() {
                    listed.insert(obj.key());
                }
                self.live.insert(obj.key(), obj.clone());
                checker.observe_object(obj);
            }
            Ok(watcher::Event::Delete(obj)) => {
                self.live.remove(&obj.key());
                checker.observe_deleted(&obj, now.checked_sub(LAG).unwrap_or(now), now);
            }
            Ok(watcher::Event::Init) => self.relisting = Some(BTreeSet::new()),
            Ok(watcher::Event::InitDone) => {
                let listed = self.relisting.take().unwrap_or_default();
                let since = self.broken_at.take().unwrap_or(now);
                let lo = since.checked_sub(LAG).unwrap_or(since);
                let gone: Vec<String> = self.live.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                for k in gone {
                    if let Some(obj) = self.live.remove(&k) {
                        checker.observe_deleted(&obj, lo, now);
                    }
                }
            }
        }
    }
}

/// An Application's status as the checker needs it.
fn status_view(status: &Value) -> StatusView {
    let text = |v: &Value| v.as_str().map(str::to_string);
    StatusView {
        revision: text(&status["sync"]["revision"]),
        last_applied: text(&status["lastAppliedRevision"]),
        history: status["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| text(&h["revision"]))
            .collect(),
        inventory: status["inventory"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["kind"].as_str().unwrap_or_default(),
                    e["name"].as_str().unwrap_or_default()
                )
            })
            .collect(),
    }
}

async fn poll_statuses(client: &kube::Client, ns: &str, checker: &Mutex<Checker>) {
    let api: Api<ferry::api::Application> = Api::namespaced(client.clone(), ns);
    let Ok(list) = api.list(&Default::default()).await else { return };
    let now = Instant::now();
    let mut checker = checker.lock().unwrap_or_else(|e| e.into_inner());
    for app in list.items {
        let status = serde_json::to_value(&app.status).unwrap_or(Value::Null);
        checker.observe_status(&app.name_any(), &status_view(&status), now);
    }
    checker.settle(Some(now));
}

/// Watches and polls until `stop` is set.
pub fn run_watch(cluster: &Cluster, ns: &str, checker: &Arc<Mutex<Checker>>, stop: &AtomicBool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let client = cluster.client().await;
        let mut stream = futures::stream::select_all([
            events::<ConfigMap>(client.clone(), ns, "ConfigMap"),
            events::<Deployment>(client.clone(), ns, "Deployment"),
            events::<Service>(client.clone(), ns, "Service"),
        ]);
        let mut known: BTreeMap<&'static str, Known> = BTreeMap::new();
        let mut tick = tokio::time::interval(POLL);
        while !stop.load(Ordering::SeqCst) {
            tokio::select! {
                Some((kind, event)) = stream.next() => known.entry(kind).or_default().handle(checker, event, kind),
                _ = tick.tick() => poll_statuses(&client, ns, checker).await,
            }
        }
    });
}
