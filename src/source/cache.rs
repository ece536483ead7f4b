//! The on-disk Git cache shared by every Application.
//!
//! Layout under the cache root:
//!
//! ```text
//! repos/<slug>-<hash>/      bare repository per normalized repo URL, fetched incrementally
//! repos/<slug>-<hash>.lock  file lock: one writer per repository across processes
//! trees/<sha>/              read-only snapshot of a commit's tree, shared by all Applications
//! scratch.git/              empty repository used only to list remote refs; never written
//! ```
//!
//! Steady state is one ref listing per call of [`GitCache::resolve`], or per repository and
//! credentials within `max_age` for [`GitCache::fetch_within`]: a fleet of Applications on one
//! repository shares its listings, as Flux's Kustomizations share one GitRepository. Objects
//! are fetched only when the resolved commit has no snapshot yet, and only once per repository
//! and revision: callers asking concurrently queue on a per-repository async mutex (then a file
//! lock), and whoever comes second finds the snapshot the first one made.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use git2::{Oid, Repository};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::credentials::Redactor;
use super::gc::Retention;
use super::known_hosts::KnownHosts;
use super::refs::{RefRequest, RemoteRef, Revision, RevisionRef, select};
use super::repo_url::RepoUrl;
use super::transport::{self, Access, Cancel};
use super::{Snapshot, SourceError, SourceSpec, snapshot};

/// Tunables of a [`GitCache`].
#[derive(Clone, Debug)]
pub struct GitCacheOptions {
    /// Upper bound for one `resolve` or `fetch`, including the wait for the repository lock.
    pub timeout: Duration,
    /// libgit2's socket connect and read/write timeout. libgit2 keeps it process-wide, so the
    /// first cache created in a process sets it; it stops a blocking git2 thread that waits on
    /// a silent server, which `timeout` alone cannot (such threads cannot be cancelled).
    pub network_timeout: Duration,
    /// known_hosts lines trusted for every repository, on top of each Secret's `known_hosts`.
    pub known_hosts: Option<String>,
    /// What [`GitCache::collect_garbage`] keeps.
    pub retention: Retention,
}

impl Default for GitCacheOptions {
    fn default() -> Self {
        GitCacheOptions {
            timeout: Duration::from_secs(60),
            network_timeout: Duration::from_secs(30),
            known_hosts: None,
            retention: Retention::default(),
        }
    }
}

/// Counters of what the cache did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Network fetches of objects.
    pub fetches: u64,
    /// Remote ref listings (the cheap check).
    pub ref_listings: u64,
    /// Snapshots exported (commits materialized on disk).
    pub snapshots: u64,
    /// Cached repositories deleted and re-created because they were corrupt.
    pub repairs: u64,
}

/// A handle to the cache; cheap to clone, all clones share locks and counters.
#[derive(Clone)]
pub struct GitCache {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for GitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCache").field("root", &self.inner.root).field("stats", &self.stats()).finish()
    }
}

pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) options: GitCacheOptions,
    known_hosts: KnownHosts,
    pub(super) repo_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// The newest ref listing per repository URL and credentials (see [`listing_key`]). No lock
    /// is held while listing: a silent server then delays each caller by its own timeout only,
    /// as without sharing, and the sharing comes from the listings' age limit.
    pub(super) listings: Mutex<HashMap<[u8; 32], Listing>>,
    /// When each snapshot and repository directory was last handed out or fetched into, for
    /// garbage collection (after a restart, a directory's modification time stands in).
    pub(super) last_used: Mutex<HashMap<PathBuf, SystemTime>>,
    /// The sizes of snapshots, which never change once exported, so that a collection walks
    /// each one once.
    pub(super) tree_sizes: Mutex<HashMap<PathBuf, u64>>,
    pub(super) evictions: AtomicU64,
    fetches: AtomicU64,
    ref_listings: AtomicU64,
    snapshots: AtomicU64,
    repairs: AtomicU64,
}

/// A ref listing and when it was made.
pub(super) struct Listing {
    pub(super) at: Instant,
    refs: Arc<Vec<RemoteRef>>,
}

/// A spec checked and turned into what the blocking side needs.
struct Prepared {
    request: RefRequest,
    access: Access,
}

const ROOT_LABEL: &str = "git cache";

impl GitCache {
    /// Opens (creating if needed) the cache at `root`. Leftovers of interrupted exports are
    /// removed; repositories are checked lazily, when first used.
    pub fn new(root: impl Into<PathBuf>, options: GitCacheOptions) -> Result<GitCache, SourceError> {
        let root = root.into();
        let known_hosts = KnownHosts::parse(options.known_hosts.as_deref().unwrap_or("")).map_err(|e| {
            SourceError::InvalidSecret {
                secret: "(cache-wide known_hosts)".to_string(),
                message: e.to_string(),
            }
        })?;
        for dir in [root.join("repos"), root.join("trees")] {
            fs::create_dir_all(&dir).map_err(|e| SourceError::io(ROOT_LABEL, "cannot create", &dir, e))?;
        }
        remove_stale_exports(&root.join("trees"));
        super::write::remove_leftovers(&root.join("work"), Duration::from_secs(3600));
        let scratch = root.join("scratch.git");
        if Repository::open_bare(&scratch).is_err() {
            let _ = fs::remove_dir_all(&scratch);
            Repository::init_bare(&scratch).map_err(|e| SourceError::Io {
                url: ROOT_LABEL.to_string(),
                action: "cannot create",
                path: scratch.clone(),
                message: e.message().to_string(),
            })?;
        }
        set_libgit2_timeouts(options.network_timeout);
        Ok(GitCache {
            inner: Arc::new(Inner {
                root,
                options,
                known_hosts,
                repo_locks: Mutex::new(HashMap::new()),
                listings: Mutex::new(HashMap::new()),
                last_used: Mutex::new(HashMap::new()),
                tree_sizes: Mutex::new(HashMap::new()),
                evictions: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                ref_listings: AtomicU64::new(0),
                snapshots: AtomicU64::new(0),
                repairs: AtomicU64::new(0),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Network fetches so far (see [`CacheStats::fetches`]).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            fetches: self.inner.fetches.load(Ordering::SeqCst),
            ref_listings: self.inner.ref_listings.load(Ordering::SeqCst),
            snapshots: self.inner.snapshots.load(Ordering::SeqCst),
            repairs: self.inner.repairs.load(Ordering::SeqCst),
        }
    }

    /// The bare repository that caches `repo_url`.
    pub fn repo_dir(&self, repo_url: &str) -> Result<PathBuf, SourceError> {
        Ok(self.inner.root.join("repos").join(RepoUrl::parse(repo_url)?.cache_key()))
    }

    /// Where the snapshot of `commit` is (or will be).
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        snapshot::snapshot_path(&self.inner.root.join("trees"), commit)
    }

    /// The cheap check: lists the remote's refs (one round trip, no objects) and picks the
    /// commit the spec's ref names. A commit ref is listed too, though its answer is known:
    /// the listing proves these credentials may read the repository, so a snapshot cached for
    /// another Application is never handed to one that could not fetch it itself.
    pub async fn resolve(&self, spec: &SourceSpec) -> Result<Revision, SourceError> {
        let prepared = self.prepare(spec)?;
        let refs = self.list_refs(&prepared.access).await?;
        select(&prepared.request, &refs, prepared.access.url.redacted())
    }

    /// Resolves the spec, then makes sure its commit is on disk (fetching only if needed).
    pub async fn fetch(&self, spec: &SourceSpec) -> Result<Snapshot, SourceError> {
        self.fetch_within(spec, Duration::ZERO).await
    }

    /// [`GitCache::fetch`], resolving from a ref listing of the same repository with the same
    /// credentials made at most `max_age` ago when there is one. The listing is keyed by the
    /// credentials too, so it still proves these credentials may read the repository.
    /// `Duration::ZERO` always lists.
    pub async fn fetch_within(&self, spec: &SourceSpec, max_age: Duration) -> Result<Snapshot, SourceError> {
        let prepared = self.prepare(spec)?;
        let refs = self.shared_refs(spec, &prepared.access, max_age).await?;
        let revision = select(&prepared.request, &refs, prepared.access.url.redacted())?;
        self.materialize(prepared, revision).await
    }

    async fn shared_refs(
        &self,
        spec: &SourceSpec,
        access: &Access,
        max_age: Duration,
    ) -> Result<Arc<Vec<RemoteRef>>, SourceError> {
        let key = listing_key(spec);
        if !max_age.is_zero() {
            let listings = self.inner.listings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(listing) = listings.get(&key)
                && listing.at.elapsed() <= max_age
            {
                return Ok(Arc::clone(&listing.refs));
            }
        }
        let at = Instant::now();
        let refs = Arc::new(self.list_refs(access).await?);
        let mut listings = self.inner.listings.lock().unwrap_or_else(|p| p.into_inner());
        // The newest stays: a slower listing that started earlier must not replace it.
        if listings.get(&key).is_none_or(|l| l.at < at) {
            listings.insert(key, Listing { at, refs: Arc::clone(&refs) });
        }
        Ok(refs)
    }

    /// Makes sure `revision` (from [`GitCache::resolve`] with the same spec) is on disk.
    /// A branch that moved since `resolve` yields the commit actually fetched. No ref listing
    /// happens here: the caller's `resolve` is what proved these credentials may read the
    /// repository, so never pass a revision that did not come from one.
    pub async fn snapshot(&self, spec: &SourceSpec, revision: &Revision) -> Result<Snapshot, SourceError> {
        let prepared = self.prepare(spec)?;
        self.materialize(prepared, revision.clone()).await
    }

    /// The committer time (unix seconds) of `commit`, read from the cached repository of
    /// `repo_url`; `None` when it is not there (e.g. the cache was cleared since the fetch).
    /// Asked once per deployment, for the lead time.
    pub async fn commit_time(&self, repo_url: &str, commit: &str) -> Option<i64> {
        let dir = self.repo_dir(repo_url).ok()?;
        let oid = Oid::from_str(commit).ok()?;
        tokio::task::spawn_blocking(move || {
            let repo = Repository::open_bare(&dir).ok()?;
            let time = repo.find_commit(oid).ok()?.committer().when();
            Some(time.seconds())
        })
        .await
        .ok()
        .flatten()
    }

    /// Every ref the remote advertises, from a listing made at most `max_age` ago with the
    /// same credentials when there is one (the ApplicationSet's pull request generator). The
    /// spec's `git_ref` is not used.
    pub async fn list_within(
        &self,
        spec: &SourceSpec,
        max_age: Duration,
    ) -> Result<Arc<Vec<RemoteRef>>, SourceError> {
        let url = RepoUrl::parse(&spec.repo_url)?;
        self.refuse_own_cache(&url)?;
        let access = self.access(url, spec)?;
        self.shared_refs(spec, &access, max_age).await
    }

    /// What a [`super::write::Workspace`] needs to reach `url`: the access (the cache's
    /// known_hosts and timeout, the credentials) and the directory workspaces live in
    /// (`<cache>/work`, so they count against the cache's disk and never leave it).
    pub(crate) fn write_access(
        &self,
        url: &str,
        credentials: Option<super::Credentials>,
    ) -> Result<(Access, PathBuf), SourceError> {
        let url = RepoUrl::parse(url)?;
        self.refuse_own_cache(&url)?;
        let spec = SourceSpec { repo_url: String::new(), git_ref: Default::default(), credentials };
        let access = self.access(url, &spec)?;
        let work = self.inner.root.join("work");
        fs::create_dir_all(&work).map_err(|e| SourceError::io(ROOT_LABEL, "cannot create", &work, e))?;
        Ok((access, work))
    }

    fn prepare(&self, spec: &SourceSpec) -> Result<Prepared, SourceError> {
        let url = RepoUrl::parse(&spec.repo_url)?;
        self.refuse_own_cache(&url)?;
        let request = RefRequest::from_git_ref(&spec.git_ref, url.redacted())?;
        Ok(Prepared { request, access: self.access(url, spec)? })
    }

    /// A `file://` URL into this cache would read what other Applications fetched with their
    /// own credentials (their bare repositories, ferry's refs, their snapshots): refused, however
    /// the path is spelled (symlinks, `..`).
    fn refuse_own_cache(&self, url: &RepoUrl) -> Result<(), SourceError> {
        match url.local_path() {
            Some(path) if is_within(&path, &self.inner.root) => Err(SourceError::InvalidUrl {
                url: url.redacted().to_string(),
                message: "a file:// URL may not point into ferry's own Git cache".to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn access(&self, url: RepoUrl, spec: &SourceSpec) -> Result<Access, SourceError> {
        let credentials = spec.credentials.clone();
        let secret_hosts = match credentials.as_ref().and_then(|c| c.known_hosts.as_deref()) {
            Some(text) => KnownHosts::parse(text).map_err(|e| SourceError::InvalidSecret {
                secret: "(known_hosts of the credentials)".to_string(),
                message: format!("known_hosts: {e}"),
            })?,
            None => KnownHosts::default(),
        };
        let redactor = Redactor::new(credentials.as_ref(), url.password());
        let timeout = self.inner.options.timeout;
        Ok(Access {
            known_hosts: secret_hosts.merged(&self.inner.known_hosts),
            url,
            credentials,
            redactor,
            cancel: Cancel::after(timeout),
            timeout,
        })
    }

    async fn list_refs(&self, access: &Access) -> Result<Vec<RemoteRef>, SourceError> {
        self.inner.ref_listings.fetch_add(1, Ordering::SeqCst);
        let scratch = self.inner.root.join("scratch.git");
        let access = access.clone();
        let url = access.url.redacted().to_string();
        let cancel = access.cancel.clone();
        let timeout = access.timeout;
        run_blocking(&url, "ref listing", &cancel, timeout, move || {
            let repo = Repository::open_bare(&scratch).map_err(|e| SourceError::Io {
                url: access.url.redacted().to_string(),
                action: "cannot open",
                path: scratch.clone(),
                message: e.message().to_string(),
            })?;
            transport::list_refs(&repo, &access)
        })
        .await
    }

    async fn materialize(&self, prepared: Prepared, revision: Revision) -> Result<Snapshot, SourceError> {
        let target = self.snapshot_dir(&revision.commit);
        let key = prepared.access.url.cache_key();
        let repo_dir = self.inner.root.join("repos").join(&key);
        // The repository stays wanted while its Applications resolve through it, new commits or not.
        self.used(&repo_dir);
        // One stat of a local directory: cheap enough to do on the async thread, and the
        // steady-state path, so it should not queue behind blocking git work. Only for a commit
        // the listing named: see `listed_by_remote`.
        if listed_by_remote(&revision) && target.is_dir() {
            self.used(&target);
            return Ok(Snapshot { revision, root: target, chart: None });
        }
        let url = prepared.access.url.redacted().to_string();
        let cancel = prepared.access.cancel.clone();
        let timeout = prepared.access.timeout;
        let lock = self.repo_lock(&key);
        let deadline = tokio::time::Instant::from_std(cancel.deadline());
        let guard =
            tokio::time::timeout_at(deadline, lock.lock_owned()).await.map_err(|_| SourceError::Timeout {
                url: url.clone(),
                operation: "waiting for the repository lock",
                after: timeout,
            })?;
        let inner = Arc::clone(&self.inner);
        let snapshot = run_blocking(&url, "fetch", &cancel, timeout, move || {
            // Held until the blocking work really ends, even if the caller gave up waiting.
            let _guard: OwnedMutexGuard<()> = guard;
            materialize_locked(&inner, &key, &prepared, revision)
        })
        .await?;
        self.used(&snapshot.root);
        self.used(&repo_dir);
        Ok(snapshot)
    }

    /// Records that `dir` (a snapshot or a repository) was just used.
    fn used(&self, dir: &Path) {
        let mut used = self.inner.last_used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert(dir.to_path_buf(), SystemTime::now());
    }

    fn repo_lock(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.inner.repo_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(key.to_string()).or_default())
    }
}

/// What a shared ref listing is keyed by: the repository URL as written (user info included)
/// and every credential field, hashed so that no secret is kept in the map. Two Applications
/// share a listing only when they would have made the same request.
fn listing_key(spec: &SourceSpec) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |value: Option<&str>| match value {
        // Length-prefixed, and absent distinct from empty.
        Some(v) => {
            ctx.update(&[1]);
            ctx.update(&(v.len() as u64).to_le_bytes());
            ctx.update(v.as_bytes());
        }
        None => ctx.update(&[0]),
    };
    field(Some(&spec.repo_url));
    let c = spec.credentials.as_ref();
    field(c.and_then(|c| c.username.as_deref()));
    field(c.and_then(|c| c.password.as_deref()));
    field(c.and_then(|c| c.bearer_token.as_deref()));
    field(c.and_then(|c| c.identity.as_deref()));
    field(c.and_then(|c| c.known_hosts.as_deref()));
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Whether the remote's ref listing named this revision's commit. A listing only proves that
/// the credentials may read the repository; a commit pinned by SHA is not in it, and its
/// snapshot may have been exported for another Application from another (private) repository.
/// So such a commit is handed out only once this repository's own cached copy holds it, or a
/// fetch with these credentials brought it (`ensure_commit`): naming a SHA is no proof of access.
fn listed_by_remote(revision: &Revision) -> bool {
    revision.reference != RevisionRef::Commit
}

/// Whether `path` is `root` or inside it, once symlinks and `..` are resolved. A path that does
/// not exist yet is judged by its longest existing ancestor.
fn is_within(path: &Path, root: &Path) -> bool {
    fn resolved(path: &Path) -> PathBuf {
        if let Ok(real) = fs::canonicalize(path) {
            return real;
        }
        let mut lexical = PathBuf::new();
        for part in path.components() {
            match part {
                std::path::Component::ParentDir => {
                    lexical.pop();
                }
                std::path::Component::CurDir => {}
                other => lexical.push(other),
            }
        }
        let mut existing = lexical.as_path();
        let mut rest = Vec::new();
        loop {
            if let Ok(real) = fs::canonicalize(existing) {
                return rest.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return lexical,
            }
        }
    }
    resolved(path).starts_with(resolved(root))
}

/// Runs blocking git work on the blocking pool, giving up at the deadline. The work itself is
/// told to stop through `cancel` (its callbacks abort the transfer).
pub(crate) async fn run_blocking<T: Send + 'static>(
    url: &str,
    operation: &'static str,
    cancel: &Cancel,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let deadline = tokio::time::Instant::from_std(cancel.deadline());
    let started = cancel.clone();
    let (url_owned, after) = (url.to_string(), timeout);
    let handle = tokio::task::spawn_blocking(move || {
        // A saturated blocking pool may start this after the caller gave up: do nothing then.
        if started.is_cancelled() {
            return Err(SourceError::Timeout { url: url_owned, operation, after });
        }
        work()
    });
    match tokio::time::timeout_at(deadline, handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(SourceError::Git {
            url: url.to_string(),
            message: format!("the git worker failed: {join_error}"),
        }),
        Err(_) => {
            cancel.cancel();
            Err(SourceError::Timeout { url: url.to_string(), operation, after: timeout })
        }
    }
}

fn materialize_locked(
    inner: &Inner,
    key: &str,
    prepared: &Prepared,
    revision: Revision,
) -> Result<Snapshot, SourceError> {
    let access = &prepared.access;
    let url = access.url.redacted();
    let repos = inner.root.join("repos");
    let repo_dir = repos.join(key);
    let _file_lock = lock_file(&repos.join(format!("{key}.lock")), access)?;

    let target = snapshot::snapshot_path(&inner.root.join("trees"), &revision.commit);
    if listed_by_remote(&revision) && target.is_dir() {
        return Ok(Snapshot { revision, root: target, chart: None });
    }
    match materialize_in(inner, &repo_dir, prepared, revision.clone()) {
        Err(SourceError::Corrupt { message, .. }) => {
            tracing::warn!(url, path = %repo_dir.display(), error = %message, "cached repository is corrupt; re-cloning");
            inner.repairs.fetch_add(1, Ordering::SeqCst);
            fs::remove_dir_all(&repo_dir)
                .map_err(|e| SourceError::io(url, "cannot delete corrupt repository", &repo_dir, e))?;
            materialize_in(inner, &repo_dir, prepared, revision)
        }
        other => other,
    }
}

fn materialize_in(
    inner: &Inner,
    repo_dir: &Path,
    prepared: &Prepared,
    revision: Revision,
) -> Result<Snapshot, SourceError> {
    let access = &prepared.access;
    let url = access.url.redacted();
    let corrupt = |e: git2::Error| SourceError::Corrupt {
        url: url.to_string(),
        path: repo_dir.to_path_buf(),
        message: access.redactor.redact(e.message()),
    };
    let repo = open_or_init(repo_dir).map_err(corrupt)?;
    let local = Local { inner, repo: &repo, dir: repo_dir, access };
    let revision = local.ensure_commit(revision)?;
    let oid = Oid::from_str(&revision.commit).map_err(corrupt)?;
    let target = snapshot::snapshot_path(&inner.root.join("trees"), &revision.commit);
    if target.is_dir() {
        // A commit pinned by SHA, now shown to be in this repository.
        return Ok(Snapshot { revision, root: target, chart: None });
    }
    let on_git_error = |e: git2::Error| {
        if transport::is_local_corruption(&e) {
            corrupt(e)
        } else {
            SourceError::Git { url: url.to_string(), message: access.redactor.redact(e.message()) }
        }
    };
    let root = snapshot::export(&repo, oid, &inner.root.join("trees"), url, &on_git_error)?;
    inner.snapshots.fetch_add(1, Ordering::SeqCst);
    tracing::info!(url, revision = %revision, path = %root.display(), "exported Git snapshot");
    Ok(Snapshot { revision, root, chart: None })
}

fn open_or_init(dir: &Path) -> Result<Repository, git2::Error> {
    if dir.exists() {
        let repo = Repository::open_bare(dir)?;
        // Opening only checks the layout; reading the config and HEAD finds a damaged one.
        repo.config()?.get_i32("core.repositoryformatversion")?;
        repo.find_reference("HEAD")?;
        Ok(repo)
    } else {
        Repository::init_bare(dir)
    }
}

/// A cached repository being brought up to date, and how to reach its remote.
struct Local<'a> {
    /// The cache, which counts the fetches.
    inner: &'a Inner,
    repo: &'a Repository,
    dir: &'a Path,
    access: &'a Access,
}

impl Local<'_> {
    /// Makes sure the commit of `revision` is in the repository, fetching only what the ref
    /// names.
    fn ensure_commit(&self, revision: Revision) -> Result<Revision, SourceError> {
        let url = self.access.url.redacted();
        let oid = Oid::from_str(&revision.commit).map_err(|e| SourceError::InvalidRef {
            url: url.to_string(),
            message: format!("{:?} is not a commit id: {}", revision.commit, e.message()),
        })?;
        if self.has_commit(oid)? {
            return Ok(revision);
        }
        match &revision.reference {
            RevisionRef::Branch(name) | RevisionRef::Tag(name) | RevisionRef::Ref(name) => {
                self.fetch_ref(name, oid, revision.clone())
            }
            // An artifact revision's id is no commit id (`Oid::from_str` refused it above).
            RevisionRef::Commit | RevisionRef::Artifact(_) => self.fetch_commit(oid, revision),
        }
    }

    /// Fetches the one ref `revision` names. When the ref moved between listing and fetching
    /// (e.g. a force-push), what was fetched is the newer truth, and it is what gets reported.
    fn fetch_ref(&self, name: &str, oid: Oid, revision: Revision) -> Result<Revision, SourceError> {
        let (remote_ref, local_ref, what) = match &revision.reference {
            RevisionRef::Branch(_) => {
                (format!("refs/heads/{name}"), format!("refs/ferry/heads/{name}"), "branch")
            }
            RevisionRef::Tag(_) => (format!("refs/tags/{name}"), format!("refs/ferry/tags/{name}"), "tag"),
            _ => {
                let rest = name.strip_prefix("refs/").unwrap_or(name);
                (name.to_string(), format!("refs/ferry/other/{rest}"), "ref")
            }
        };
        self.fetch(&revision, &[format!("+{remote_ref}:{local_ref}")])?;
        if self.has_commit(oid)? {
            return Ok(revision);
        }
        let fetched = self.repo.find_reference(&local_ref).and_then(|r| r.peel_to_commit()).map_err(|e| {
            SourceError::RefNotFound {
                url: self.access.url.redacted().to_string(),
                reference: format!("{what} {name:?}"),
                message: format!(
                    "it disappeared during the fetch: {}",
                    self.access.redactor.redact(e.message())
                ),
            }
        })?;
        Ok(Revision { reference: revision.reference.clone(), commit: fetched.id().to_string() })
    }

    /// Fetches a commit named by its SHA. Servers that allow it
    /// (uploadpack.allowReachableSHA1InWant / allowAnySHA1InWant) send just this commit; others
    /// need every branch and tag fetched to find it.
    fn fetch_commit(&self, oid: Oid, revision: Revision) -> Result<Revision, SourceError> {
        let url = self.access.url.redacted();
        let sha = &revision.commit;
        let by_sha = self.fetch(&revision, &[format!("+{sha}:refs/ferry/commits/{sha}")]);
        if let Err(e) = by_sha {
            if matches!(
                e,
                SourceError::AuthenticationFailed { .. }
                    | SourceError::HostKeyUnknown { .. }
                    | SourceError::HostKeyMismatch { .. }
                    | SourceError::RepositoryNotFound { .. }
                    | SourceError::Timeout { .. }
                    | SourceError::Corrupt { .. }
            ) {
                return Err(e);
            }
            tracing::debug!(url, commit = %sha, error = %e, "fetch by SHA refused; fetching all branches and tags");
            let everything = ["+refs/heads/*:refs/ferry/heads/*", "+refs/tags/*:refs/ferry/tags/*"];
            self.fetch(&revision, &everything.map(String::from))?;
        }
        if self.has_commit(oid)? {
            return Ok(revision);
        }
        Err(SourceError::RefNotFound {
            url: url.to_string(),
            reference: format!("commit {sha}"),
            message: "no branch or tag of the remote contains it, and the server did not send it by SHA"
                .to_string(),
        })
    }

    fn fetch(&self, revision: &Revision, refspecs: &[String]) -> Result<(), SourceError> {
        self.inner.fetches.fetch_add(1, Ordering::SeqCst);
        tracing::info!(url = self.access.url.redacted(), revision = %revision, "fetching from Git remote");
        transport::fetch(self.repo, self.dir, self.access, refspecs)
    }

    fn has_commit(&self, oid: Oid) -> Result<bool, SourceError> {
        has_commit(self.repo, self.dir, oid, self.access)
    }
}

fn has_commit(repo: &Repository, repo_dir: &Path, oid: Oid, access: &Access) -> Result<bool, SourceError> {
    match repo.find_commit(oid) {
        Ok(commit) => match commit.tree() {
            Ok(_) => Ok(true),
            Err(e) => Err(SourceError::Corrupt {
                url: access.url.redacted().to_string(),
                path: repo_dir.to_path_buf(),
                message: format!("commit {oid} has no readable tree: {}", e.message()),
            }),
        },
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
        Err(e) if transport::is_local_corruption(&e) => Err(SourceError::Corrupt {
            url: access.url.redacted().to_string(),
            path: repo_dir.to_path_buf(),
            message: access.redactor.redact(e.message()),
        }),
        Err(e) => Err(SourceError::RefNotFound {
            url: access.url.redacted().to_string(),
            reference: format!("commit {oid}"),
            message: format!("the object is not a commit: {}", access.redactor.redact(e.message())),
        }),
    }
}

/// Takes the repository's file lock, polling so the deadline still applies: another process
/// (or a timed-out thread of this one) may hold it for a while.
fn lock_file(path: &Path, access: &Access) -> Result<File, SourceError> {
    let url = access.url.redacted();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SourceError::io(url, "cannot open lock file", path, e))?;
    let mut delay = Duration::from_millis(10);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) => {
                if access.cancel.is_cancelled() {
                    return Err(SourceError::Timeout {
                        url: url.to_string(),
                        operation: "waiting for the repository lock",
                        after: access.timeout,
                    });
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(fs::TryLockError::Error(e)) => return Err(SourceError::io(url, "cannot lock", path, e)),
        }
    }
}

/// Temporary export directories older than an hour belong to a process that died mid-export.
fn remove_stale_exports(trees: &Path) {
    let Ok(entries) = fs::read_dir(trees) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
        if stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn set_libgit2_timeouts(timeout: Duration) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: these write two ints in libgit2's global options. git2 marks them unsafe
        // because a concurrent libgit2 operation could read them mid-write. Every git2 call in
        // ferry goes through a GitCache, which only exists after this Once has completed, so no
        // git2 operation of ours runs concurrently with the write.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_into_the_cache_are_recognised_however_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        fs::create_dir_all(root.join("repos/x")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        for inside in [
            root.clone(),
            root.join("repos/x"),
            root.join("repos/../repos/x"),
            root.join("not-yet/there"),
            link.join("repos/x"),
            dir.path().join("elsewhere/../cache/trees"),
        ] {
            assert!(is_within(&inside, &root), "{}", inside.display());
        }
        for outside in [dir.path().to_path_buf(), dir.path().join("cache-other"), root.join("../other")] {
            assert!(!is_within(&outside, &root), "{}", outside.display());
        }
    }
}
