//! Renders keyed by what determines them, so an unchanged revision is never rendered twice.
//!
//! A commit names its whole tree, so (commit, path, options) decides the output; where the tree
//! was exported to does not. The scope resolver's fingerprint is part of the key because
//! namespace defaulting depends on discovery. Concurrent requests for the same key share one
//! render. Only successes are kept: a failure may be a timeout, and the next reconcile should
//! try again.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use kube::api::DynamicObject;
use tokio::sync::OnceCell;

use super::{
    RenderError, RenderOptions, RenderRequest, paths::normalize_relative, render, scope::ScopeResolver,
};

/// Default number of renders kept: a few per Application on a busy controller.
pub const DEFAULT_CAPACITY: usize = 64;

type Rendered = Arc<Vec<DynamicObject>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    commit: String,
    path: String,
    options: u64,
}

impl CacheKey {
    fn new(commit: &str, req: &RenderRequest<'_>, opts: &RenderOptions, scopes: &dyn ScopeResolver) -> Self {
        let path = normalize_relative(req.source.path.as_deref().unwrap_or_default()).map_or_else(
            || req.source.path.clone().unwrap_or_default(),
            |p| p.to_string_lossy().into_owned(),
        );
        let mut h = DefaultHasher::new();
        // Serialized forms: the option types have f64-free JSON and no Hash impl of their own.
        serde_json::to_string(&req.source.kustomize).unwrap_or_default().hash(&mut h);
        serde_json::to_string(&req.source.helm).unwrap_or_default().hash(&mut h);
        req.app_name.hash(&mut h);
        req.default_namespace.hash(&mut h);
        req.policy.require_pinned_images.hash(&mut h);
        opts.kustomize_bin.hash(&mut h);
        opts.helm_bin.hash(&mut h);
        opts.require_digest.hash(&mut h);
        scopes.fingerprint().hash(&mut h);
        CacheKey { commit: commit.to_owned(), path, options: h.finish() }
    }
}

struct Slot {
    cell: Arc<OnceCell<Rendered>>,
    last_used: u64,
}

struct Slots {
    map: HashMap<CacheKey, Slot>,
    clock: u64,
}

/// A bounded, least-recently-used map of finished renders.
pub struct RenderCache {
    capacity: usize,
    slots: Mutex<Slots>,
    renders: AtomicU64,
}

impl Default for RenderCache {
    fn default() -> Self {
        RenderCache::new(DEFAULT_CAPACITY)
    }
}

impl RenderCache {
    pub fn new(capacity: usize) -> Self {
        RenderCache {
            capacity: capacity.max(1),
            slots: Mutex::new(Slots { map: HashMap::new(), clock: 0 }),
            renders: AtomicU64::new(0),
        }
    }

    /// The objects `req` renders to at `commit`, rendering only when this exact render is not
    /// cached (or being rendered by another caller right now).
    pub async fn get_or_render(
        &self,
        commit: &str,
        req: &RenderRequest<'_>,
        opts: &RenderOptions,
        scopes: &dyn ScopeResolver,
    ) -> Result<Rendered, RenderError> {
        let key = CacheKey::new(commit, req, opts, scopes);
        let cell = self.slot(&key);
        let result = cell
            .get_or_try_init(|| async {
                self.renders.fetch_add(1, Ordering::Relaxed);
                render(req, opts, scopes).await.map(Arc::new)
            })
            .await
            .cloned();
        if result.is_err() {
            // Drop the empty slot so it does not take the place of a useful one.
            let mut slots = self.slots.lock().expect("render cache lock");
            if slots.map.get(&key).is_some_and(|s| Arc::ptr_eq(&s.cell, &cell) && !s.cell.initialized()) {
                slots.map.remove(&key);
            }
        }
        result
    }

    fn slot(&self, key: &CacheKey) -> Arc<OnceCell<Rendered>> {
        let mut slots = self.slots.lock().expect("render cache lock");
        slots.clock += 1;
        let now = slots.clock;
        if let Some(slot) = slots.map.get_mut(key) {
            slot.last_used = now;
            return slot.cell.clone();
        }
        if slots.map.len() >= self.capacity {
            // 64 entries: a linear scan is cheaper than keeping an ordered structure in sync.
            if let Some(oldest) = slots.map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                slots.map.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        slots.map.insert(key.clone(), Slot { cell: cell.clone(), last_used: now });
        cell
    }

    /// How many renders actually ran (cache misses), for tests and metrics.
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.slots.lock().expect("render cache lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        api::{GitRef, KustomizeSource, Policy, Source},
        render::scope::{BuiltinScopes, DiscoveredScopes, KindScope},
    };

    fn source(path: &str) -> Source {
        Source {
            repo_url: "file:///repo".into(),
            git_ref: GitRef { branch: Some("main".into()), ..Default::default() },
            path: Some(path.into()),
            secret_ref: None,
            kustomize: None,
            helm: None,
        }
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(
            dir.path().join("app/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        )
        .unwrap();
        dir
    }

    fn req<'a>(root: &'a Path, source: &'a Source, policy: &'a Policy) -> RenderRequest<'a> {
        RenderRequest { root, source, app_name: "app", default_namespace: "ns", policy }
    }

    #[tokio::test]
    async fn same_commit_path_and_options_render_once() {
        let (a, b) = (repo(), repo());
        let policy = Policy::default();
        let opts = RenderOptions::default();
        let cache = RenderCache::new(4);
        let src = source("app");
        let first =
            cache.get_or_render("c1", &req(a.path(), &src, &policy), &opts, &BuiltinScopes).await.unwrap();
        // Another export of the same commit, and the same path spelled differently: a hit.
        let src_dot = source("./app/");
        let again = cache
            .get_or_render("c1", &req(b.path(), &src_dot, &policy), &opts, &BuiltinScopes)
            .await
            .unwrap();
        assert_eq!(cache.renders(), 1);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first[0].metadata.namespace.as_deref(), Some("ns"));

        // Anything that can change the output is a miss.
        cache.get_or_render("c2", &req(a.path(), &src, &policy), &opts, &BuiltinScopes).await.unwrap();
        let kust = Source {
            kustomize: Some(KustomizeSource { name_prefix: Some("x-".into()), ..Default::default() }),
            ..source("app")
        };
        let mismatch = cache.get_or_render("c1", &req(a.path(), &kust, &policy), &opts, &BuiltinScopes).await;
        assert_eq!(mismatch.unwrap_err().category(), "renderer_mismatch");
        let strict = Policy { require_pinned_images: true };
        cache.get_or_render("c1", &req(a.path(), &src, &strict), &opts, &BuiltinScopes).await.unwrap();
        let discovered = DiscoveredScopes::from_kinds([(
            ("".to_string(), "ConfigMap".to_string()),
            KindScope::Namespaced,
        )]);
        cache.get_or_render("c1", &req(a.path(), &src, &policy), &opts, &discovered).await.unwrap();
        assert_eq!(cache.renders(), 5);
        // The failed render was not kept.
        assert_eq!(cache.len(), 4);
    }

    #[tokio::test]
    async fn least_recently_used_is_evicted() {
        let a = repo();
        let (policy, opts, src) = (Policy::default(), RenderOptions::default(), source("app"));
        let cache = RenderCache::new(2);
        let r = req(a.path(), &src, &policy);
        for commit in ["c1", "c2", "c1", "c3"] {
            cache.get_or_render(commit, &r, &opts, &BuiltinScopes).await.unwrap();
        }
        assert_eq!(cache.renders(), 3);
        assert_eq!(cache.len(), 2);
        // c2 was least recently used when c3 came in; c1 is still there.
        cache.get_or_render("c1", &r, &opts, &BuiltinScopes).await.unwrap();
        assert_eq!(cache.renders(), 3);
        cache.get_or_render("c2", &r, &opts, &BuiltinScopes).await.unwrap();
        assert_eq!(cache.renders(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_render() {
        let a = repo();
        let (policy, opts, src) = (Policy::default(), RenderOptions::default(), source("app"));
        let cache = RenderCache::new(4);
        let r = req(a.path(), &src, &policy);
        let results =
            futures_join_all((0..8).map(|_| cache.get_or_render("c1", &r, &opts, &BuiltinScopes))).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(cache.renders(), 1);
    }

    /// Polls every future to completion on this task (no extra dependency for join_all).
    async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut futs: Vec<_> = futs.map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in futs.iter_mut().enumerate() {
                if out[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => out[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
        })
        .await;
        out.into_iter().map(Option::unwrap).collect()
    }
}
