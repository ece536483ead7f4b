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
/// Default bound of the renders kept, by their size as JSON (`--render-cache-bytes`): a few
/// large renders, or many small ones. Entry count alone did not bound memory, since a render
/// may be as large as `--max-render-bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

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
        req.capabilities.map(|c| c.fingerprint()).hash(&mut h);
        // Dependencies live in the store under their digests: new versions, new paths.
        req.dependencies.hash(&mut h);
        // Other keys may decrypt to other values, or fail where these succeeded.
        req.decryption.map(|k| k.fingerprint()).hash(&mut h);
        CacheKey { commit: commit.to_owned(), path, options: h.finish() }
    }
}

struct Slot {
    cell: Arc<OnceCell<Rendered>>,
    last_used: u64,
    /// Size of the render as JSON; 0 until it is done.
    bytes: u64,
}

struct Slots {
    map: HashMap<CacheKey, Slot>,
    clock: u64,
}

/// A least-recently-used map of finished renders, bounded by entries and by bytes.
pub struct RenderCache {
    capacity: usize,
    max_bytes: u64,
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
            max_bytes: DEFAULT_MAX_BYTES,
            slots: Mutex::new(Slots { map: HashMap::new(), clock: 0 }),
            renders: AtomicU64::new(0),
        }
    }

    /// The same cache holding at most `max_bytes` of renders (their size as JSON). A render
    /// larger than that on its own is returned but not kept.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
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
        let mut slots = self.slots.lock().expect("render cache lock");
        match &result {
            Err(_) => {
                // Drop the empty slot so it does not take the place of a useful one.
                if slots.map.get(&key).is_some_and(|s| Arc::ptr_eq(&s.cell, &cell) && !s.cell.initialized()) {
                    slots.map.remove(&key);
                }
            }
            Ok(objects) => {
                if let Some(slot) =
                    slots.map.get_mut(&key).filter(|s| Arc::ptr_eq(&s.cell, &cell) && s.bytes == 0)
                {
                    slot.bytes = json_bytes(objects).max(1);
                    self.evict_over_budget(&mut slots, &key);
                }
            }
        }
        result
    }

    /// Evicts the least recently used renders until the kept ones fit `max_bytes`; `newest`
    /// goes last, and goes too when it alone is over the budget.
    fn evict_over_budget(&self, slots: &mut Slots, newest: &CacheKey) {
        while slots.map.values().map(|s| s.bytes).sum::<u64>() > self.max_bytes {
            let victim = slots
                .map
                .iter()
                .filter(|(k, s)| *k != newest && s.bytes > 0)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            slots.map.remove(victim.as_ref().unwrap_or(newest));
        }
    }

    /// Bytes of the renders kept (their size as JSON).
    pub fn bytes(&self) -> u64 {
        self.slots.lock().expect("render cache lock").map.values().map(|s| s.bytes).sum()
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
        slots.map.insert(key.clone(), Slot { cell: cell.clone(), last_used: now, bytes: 0 });
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

/// The size of a render as JSON: what bounds the cache (memory is a small multiple of it).
fn json_bytes(objects: &[DynamicObject]) -> u64 {
    objects.iter().map(|o| serde_json::to_vec(o).map_or(0, |v| v.len() as u64)).sum()
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
            repo_url: Some("file:///repo".into()),
            git_ref: Some(GitRef { branch: Some("main".into()), ..Default::default() }),
            path: Some(path.into()),
            secret_ref: None,
            kustomize: None,
            helm: None,
            chart: None,
            oci: None,
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
        RenderRequest {
            root,
            source,
            app_name: "app",
            default_namespace: "ns",
            policy,
            capabilities: None,
            chart: None,
            decryption: None,
            dependencies: &[],
        }
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

    /// Other keys may decrypt differently, or fail: a changed key set renders again.
    #[tokio::test]
    async fn decryption_keys_are_part_of_the_key() {
        let a = repo();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sops");
        std::fs::copy(fixtures.join("encrypted/secret.yaml"), a.path().join("app/secret.yaml")).unwrap();
        let read = |name: &str| std::fs::read_to_string(fixtures.join(name)).unwrap();
        let key = crate::render::AgeKeys::parse(&read("key.agekey")).unwrap();
        let both = crate::render::AgeKeys::parse(&(read("key.agekey") + &read("wrong.agekey"))).unwrap();
        let (policy, opts, src) = (Policy::default(), RenderOptions::default(), source("app"));
        let cache = RenderCache::new(4);
        let err = cache
            .get_or_render("c1", &req(a.path(), &src, &policy), &opts, &BuiltinScopes)
            .await
            .unwrap_err();
        assert_eq!(err.category(), "decryption_failed");
        for keys in [&key, &key, &both] {
            let r = RenderRequest { decryption: Some(keys), ..req(a.path(), &src, &policy) };
            assert_eq!(cache.get_or_render("c1", &r, &opts, &BuiltinScopes).await.unwrap().len(), 2);
        }
        assert_eq!(cache.renders(), 3, "no keys, one key (then a hit), two keys");
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

    /// Issue 19, defect 13: renders were cached without a size bound.
    #[tokio::test]
    async fn renders_are_evicted_to_stay_within_the_byte_budget() {
        let a = repo();
        let (policy, opts, src) = (Policy::default(), RenderOptions::default(), source("app"));
        let r = req(a.path(), &src, &policy);
        let one = RenderCache::new(8).get_or_render("c0", &r, &opts, &BuiltinScopes).await.unwrap();
        let size = json_bytes(&one);
        let cache = RenderCache::new(8).with_max_bytes(2 * size);
        for commit in ["c1", "c2", "c3"] {
            cache.get_or_render(commit, &r, &opts, &BuiltinScopes).await.unwrap();
            assert!(cache.bytes() <= 2 * size, "{} > {}", cache.bytes(), 2 * size);
        }
        assert_eq!(cache.len(), 2);
        // c1 was the least recently used; c3, the newest, is kept.
        cache.get_or_render("c3", &r, &opts, &BuiltinScopes).await.unwrap();
        assert_eq!(cache.renders(), 3);
        cache.get_or_render("c1", &r, &opts, &BuiltinScopes).await.unwrap();
        assert_eq!(cache.renders(), 4);
        // A render larger than the whole budget is returned and not kept.
        let tiny = RenderCache::new(8).with_max_bytes(size - 1);
        assert_eq!(tiny.get_or_render("c1", &r, &opts, &BuiltinScopes).await.unwrap().len(), 1);
        assert_eq!((tiny.len(), tiny.bytes()), (0, 0));
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
