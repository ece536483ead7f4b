//! Garbage collection of the Git cache: disk stays bounded by what ferry manages.
//!
//! Snapshots (`trees/<sha>`) and bare repositories (`repos/<key>`) that nothing used for
//! [`Retention::unused_after`] are deleted. Over [`Retention::max_bytes`], the least recently
//! used go next, snapshots before repositories (a snapshot is re-exported from its repository
//! without the network; a repository costs a clone). Never deleted: the snapshots the caller
//! says are in use (each Application's current one), anything used in the last few seconds (a
//! snapshot being handed to an Application that has not recorded it yet), a repository another
//! fetch holds, and half-written exports (`.tmp-*`, cleaned up at start). A deleted snapshot or
//! repository is simply fetched again when an Application needs it.
//!
//! The in-memory bookkeeping is trimmed in the same pass: ref listings older than the
//! retention, and the lock of every repository no one is using.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::cache::{GitCache, Inner};

/// What the cache keeps.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Snapshots and repositories unused for this long are deleted.
    pub unused_after: Duration,
    /// Bytes of file content the cache may hold (`None`: no budget). A soft limit: what is in
    /// use is kept even when it alone is larger.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { unused_after: Duration::from_secs(3600), max_bytes: None }
    }
}

/// Anything used this recently is kept: it may be on its way to an Application.
const JUST_USED: Duration = Duration::from_secs(5);

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Snapshots and repositories deleted.
    pub deleted: u64,
    /// Bytes of file content left in the cache.
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Snapshot,
    Repository,
}

struct Entry {
    kind: Kind,
    path: PathBuf,
    last_used: SystemTime,
    bytes: u64,
}

impl GitCache {
    /// Deletes what the retention does not keep; `in_use` are snapshot directories that must
    /// stay. Blocking (it walks and deletes directories): run it on the blocking pool.
    pub fn collect_garbage(&self, in_use: &HashSet<PathBuf>) -> Collected {
        let inner = &self.inner;
        let retention = &inner.options.retention;
        trim_bookkeeping(inner, retention.unused_after);
        let now = SystemTime::now();
        let age = |e: &Entry| now.duration_since(e.last_used).unwrap_or_default();
        let (mut candidates, kept): (Vec<Entry>, Vec<Entry>) =
            entries(inner).into_iter().partition(|e| !in_use.contains(&e.path) && age(e) >= JUST_USED);
        let mut bytes: u64 = candidates.iter().chain(&kept).map(|e| e.bytes).sum();
        let mut deleted = 0;
        // Unused for too long: gone, whatever the budget.
        candidates.retain(|e| {
            if age(e) < retention.unused_after || !delete(inner, e) {
                return true;
            }
            bytes = bytes.saturating_sub(e.bytes);
            deleted += 1;
            false
        });
        // Over budget: snapshots, then repositories, least recently used first.
        candidates.sort_by_key(|e| (e.kind, e.last_used));
        for entry in candidates {
            if retention.max_bytes.is_none_or(|max| bytes <= max) {
                break;
            }
            if delete(inner, &entry) {
                bytes = bytes.saturating_sub(entry.bytes);
                deleted += 1;
            }
        }
        inner.evictions.fetch_add(deleted, Ordering::SeqCst);
        Collected { deleted, bytes }
    }

    /// Snapshots and repositories deleted by garbage collection so far.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::SeqCst)
    }
}

fn entries(inner: &Inner) -> Vec<Entry> {
    let mut out = Vec::new();
    for (kind, dir) in [(Kind::Snapshot, "trees"), (Kind::Repository, "repos")] {
        let Ok(listing) = fs::read_dir(inner.root.join(dir)) else { continue };
        for item in listing.flatten() {
            let path = item.path();
            if hidden(&path) || !item.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(last_used) = last_used(inner, &path) else { continue };
            let bytes = match kind {
                Kind::Snapshot => snapshot_bytes(inner, &path),
                Kind::Repository => dir_bytes(&path),
            };
            out.push(Entry { kind, path, last_used, bytes });
        }
    }
    out
}

/// `.tmp-*` exports in progress (and anything else hidden) are not the collector's.
fn hidden(path: &Path) -> bool {
    path.file_name().is_none_or(|n| n.to_string_lossy().starts_with('.'))
}

/// When `path` was last used: as recorded by this process, or else its modification time.
fn last_used(inner: &Inner, path: &Path) -> Option<SystemTime> {
    let recorded = inner.last_used.lock().unwrap_or_else(|p| p.into_inner()).get(path).copied();
    recorded.or_else(|| fs::metadata(path).and_then(|m| m.modified()).ok())
}

fn snapshot_bytes(inner: &Inner, path: &Path) -> u64 {
    if let Some(bytes) = inner.tree_sizes.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        return *bytes;
    }
    let bytes = dir_bytes(path);
    inner.tree_sizes.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), bytes);
    bytes
}

/// Bytes of file content under `dir`, not following symlinks.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = fs::read_dir(&dir) else { continue };
        for item in listing.flatten() {
            let Ok(meta) = item.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(item.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// Deletes one entry; a repository only while no fetch holds it (this process's lock, then
/// the file lock other processes take).
fn delete(inner: &Inner, entry: &Entry) -> bool {
    // Handed out since the listing was made: it is on its way to an Application.
    let since = last_used(inner, &entry.path).and_then(|t| SystemTime::now().duration_since(t).ok());
    if since.is_some_and(|age| age < JUST_USED) {
        return false;
    }
    let removed = match entry.kind {
        Kind::Snapshot => remove_snapshot(&entry.path),
        Kind::Repository => remove_repository(inner, &entry.path),
    };
    if removed {
        inner.last_used.lock().unwrap_or_else(|p| p.into_inner()).remove(&entry.path);
        inner.tree_sizes.lock().unwrap_or_else(|p| p.into_inner()).remove(&entry.path);
        tracing::info!(path = %entry.path.display(), bytes = entry.bytes, "deleted from the Git cache");
    }
    removed
}

/// Snapshots are read-only (0555 directories): moved aside atomically first, so a reader sees
/// either the whole snapshot or none, then made writable and deleted.
fn remove_snapshot(path: &Path) -> bool {
    let Some(name) = path.file_name() else { return false };
    let aside = path.with_file_name(format!(".tmp-gc-{}", name.to_string_lossy()));
    if fs::rename(path, &aside).is_err() {
        return false;
    }
    make_writable(&aside);
    if let Err(e) = fs::remove_dir_all(&aside) {
        tracing::warn!(path = %aside.display(), error = %e, "could not delete a collected snapshot");
    }
    true
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
        let Ok(listing) = fs::read_dir(&dir) else { continue };
        for item in listing.flatten() {
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(item.path());
            }
        }
    }
}

fn remove_repository(inner: &Inner, path: &Path) -> bool {
    let Some(key) = path.file_name().map(|n| n.to_string_lossy().to_string()) else { return false };
    let lock = {
        let locks = inner.repo_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.get(&key).cloned()
    };
    let _in_process = match &lock {
        Some(lock) => match lock.try_lock() {
            Ok(guard) => Some(guard),
            Err(_) => return false,
        },
        None => None,
    };
    let lock_path = inner.root.join("repos").join(format!("{key}.lock"));
    let Ok(file) = fs::File::options().create(true).truncate(false).write(true).open(&lock_path) else {
        return false;
    };
    if file.try_lock().is_err() {
        return false;
    }
    match fs::remove_dir_all(path) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete a cached repository");
            false
        }
    }
}

/// Ref listings older than the retention are never reused; locks of repositories no one holds
/// are re-created on demand.
fn trim_bookkeeping(inner: &Inner, unused_after: Duration) {
    inner.listings.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, l| l.at.elapsed() < unused_after);
    inner.repo_locks.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, lock| Arc::strong_count(lock) > 1);
}

/// `1000`, `500Mi`, `2Gi`, `1.5G`: a byte count with an optional decimal (K, M, G, T) or binary
/// (Ki, Mi, Gi, Ti) suffix, as Kubernetes quantities write them. `None` for anything else,
/// including sizes past `u64`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        // Digits past the multiplier's precision add nothing.
        let digits = fraction.len().min(18);
        let scale = 10u64.checked_pow(u32::try_from(digits).ok()?)?;
        let fraction: u64 = fraction[..digits].parse().ok()?;
        bytes = bytes.checked_add(
            u64::try_from(u128::from(fraction) * u128::from(multiplier) / u128::from(scale)).ok()?,
        )?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_kubernetes_writes_them() {
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("500Mi"), Some(500 << 20));
        assert_eq!(parse_size("2Gi"), Some(2 << 30));
        assert_eq!(parse_size("1.5G"), Some(1_500_000_000));
        assert_eq!(parse_size("64k"), Some(64_000));
        for bad in
            ["", "Mi", "1.", ".5G", "1..5G", "5 Gi", "-1", "1Pi", "99999999999999999999", "20000000Ti", "1e9"]
        {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    fn tree(root: &Path, name: &str, bytes: usize) -> PathBuf {
        let dir = root.join("trees").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f"), vec![b'x'; bytes]).unwrap();
        dir
    }

    fn cache(root: &Path, retention: Retention) -> GitCache {
        let options = super::super::GitCacheOptions { retention, ..Default::default() };
        GitCache::new(root, options).unwrap()
    }

    /// Pretends `dir` was last used `ago`.
    fn used_ago(cache: &GitCache, dir: &Path, ago: Duration) {
        let at = SystemTime::now() - ago;
        cache.inner.last_used.lock().unwrap().insert(dir.to_path_buf(), at);
    }

    #[test]
    fn unused_snapshots_go_and_what_is_in_use_or_just_used_stays() {
        let root = tempfile::tempdir().unwrap();
        let retention = Retention { unused_after: Duration::from_secs(60), max_bytes: None };
        let cache = cache(root.path(), retention);
        let (old, pinned, fresh) =
            (tree(root.path(), "a", 10), tree(root.path(), "b", 10), tree(root.path(), "c", 10));
        used_ago(&cache, &old, Duration::from_secs(120));
        used_ago(&cache, &pinned, Duration::from_secs(120));
        used_ago(&cache, &fresh, Duration::from_secs(1));
        let collected = cache.collect_garbage(&HashSet::from([pinned.clone()]));
        assert_eq!(collected, Collected { deleted: 1, bytes: 20 });
        assert!(!old.exists() && pinned.is_dir() && fresh.is_dir());
        assert_eq!(cache.evictions(), 1);
    }

    #[test]
    fn over_budget_the_least_recently_used_snapshots_go_first() {
        let root = tempfile::tempdir().unwrap();
        let retention = Retention { unused_after: Duration::from_secs(3600), max_bytes: Some(250) };
        let cache = cache(root.path(), retention);
        let trees: Vec<PathBuf> = (0..5).map(|i| tree(root.path(), &format!("t{i}"), 100)).collect();
        for (i, t) in trees.iter().enumerate() {
            used_ago(&cache, t, Duration::from_secs(100 - i as u64 * 10));
        }
        let repo = root.path().join("repos/r");
        fs::create_dir_all(&repo).unwrap();
        fs::write(repo.join("pack"), vec![0u8; 50]).unwrap();
        used_ago(&cache, &repo, Duration::from_secs(500));
        let collected = cache.collect_garbage(&HashSet::from([trees[0].clone()]));
        // t0 is in use; t1..t3 are the oldest others; t4 and the (older) repository fit.
        assert_eq!(collected.bytes, 250, "{collected:?}");
        assert!(trees[0].is_dir() && trees[4].is_dir() && repo.is_dir());
        assert!(trees[1..4].iter().all(|t| !t.exists()));
    }

    #[test]
    fn read_only_snapshots_are_deleted_whole() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let cache = cache(root.path(), Retention { unused_after: Duration::from_secs(1), max_bytes: None });
        let t = tree(root.path(), "ro", 10);
        fs::create_dir_all(t.join("sub")).unwrap();
        fs::set_permissions(t.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(&t, fs::Permissions::from_mode(0o555)).unwrap();
        used_ago(&cache, &t, Duration::from_secs(30));
        assert_eq!(cache.collect_garbage(&HashSet::new()).deleted, 1);
        assert!(!t.exists());
        let leftovers: Vec<_> = fs::read_dir(root.path().join("trees")).unwrap().flatten().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
