//! Unpacked artifacts on disk, addressed by the SHA-256 of their archive: a chart version or
//! an OCI layer is downloaded and unpacked once for every Application that uses it, and a
//! directory is only ever seen complete (unpacked beside it, then renamed into place).

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::unpack::{UnpackError, UnpackLimits, unpack_tar_gz};
use crate::locks::locked;

/// The store under `<cache>/artifacts`.
pub struct ArtifactStore {
    root: PathBuf,
    /// One unpack at a time per digest; the others wait and find it done.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An archive that could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unpacking sha256:{digest}: {source}")]
    Unpack { digest: String, source: UnpackError },
    #[error("artifact store {}: {source}", .dir.display())]
    Io { dir: PathBuf, source: std::io::Error },
}

impl ArtifactStore {
    /// The store in `root`, created on the first insert.
    pub fn new(root: impl Into<PathBuf>) -> ArtifactStore {
        ArtifactStore { root: root.into(), busy: Mutex::new(HashMap::new()) }
    }

    /// Where the archive with this digest (lowercase hex SHA-256 of the archive, or of the OCI
    /// manifest that pins it) is unpacked.
    pub fn dir(&self, digest: &str) -> PathBuf {
        self.root.join(format!("sha256-{digest}"))
    }

    /// The unpacked archive, if it is stored.
    pub fn get(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir(digest);
        dir.is_dir().then_some(dir)
    }

    /// Unpacks `archive` (whose SHA-256 the caller has checked is `digest`) unless it is stored
    /// already; returns its directory.
    pub async fn insert(&self, digest: &str, archive: bytes::Bytes) -> Result<PathBuf, StoreError> {
        let lock = locked(&self.busy).entry(digest.to_string()).or_default().clone();
        let _held = lock.lock().await;
        if let Some(dir) = self.get(digest) {
            return Ok(dir);
        }
        let (root, dir, digest_owned) = (self.root.clone(), self.dir(digest), digest.to_string());
        let result = tokio::task::spawn_blocking(move || unpack_into(&root, &dir, &digest_owned, &archive))
            .await
            .expect("unpacking does not panic");
        locked(&self.busy).remove(digest);
        result
    }
}

impl ArtifactStore {
    /// Removes the unpacked artifacts no Application uses (none of `in_use` lies inside them)
    /// that are older than [`GRACE`]: one just unpacked may not be recorded as in use yet.
    /// Returns how many were removed. Blocking: run it off the runtime's workers.
    pub fn collect_garbage(&self, in_use: &HashSet<PathBuf>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return 0 };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name();
            let kept = in_use.iter().any(|p| p.starts_with(&dir));
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a < GRACE));
            if kept || young || !name.to_string_lossy().starts_with("sha256-") {
                continue;
            }
            if remove_read_only_tree(&dir).is_ok() {
                deleted += 1;
            }
        }
        deleted
    }
}

/// How long an unpacked artifact is kept before anything uses it.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Unpacked files are read-only (0444/0555): make them writable again to remove them.
fn remove_read_only_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path) -> std::io::Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_type()?.is_dir() {
                walk(&entry.path())?;
            }
        }
        Ok(())
    }
    walk(dir)?;
    std::fs::remove_dir_all(dir)
}

fn unpack_into(root: &Path, dir: &Path, digest: &str, archive: &[u8]) -> Result<PathBuf, StoreError> {
    let io = |source| StoreError::Io { dir: root.to_path_buf(), source };
    std::fs::create_dir_all(root).map_err(io)?;
    let staging = tempfile::Builder::new().prefix(".unpacking-").tempdir_in(root).map_err(io)?;
    unpack_tar_gz(archive, staging.path(), UnpackLimits::default())
        .map_err(|source| StoreError::Unpack { digest: digest.to_string(), source })?;
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(io)?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> bytes::Bytes {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "chart/Chart.yaml", &b"a: b"[..3]).unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap().into()
    }

    fn age(dir: &Path) {
        let old = std::time::SystemTime::now() - GRACE - std::time::Duration::from_secs(60);
        std::fs::File::open(dir).unwrap().set_modified(old).unwrap();
    }

    #[tokio::test]
    async fn unused_artifacts_past_the_grace_period_are_removed_and_used_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(root.path().join("artifacts"));
        let used = store.insert("aa", archive()).await.unwrap();
        let unused = store.insert("bb", archive()).await.unwrap();
        let young = store.insert("cc", archive()).await.unwrap();
        assert_eq!(store.insert("aa", archive()).await.unwrap(), used, "stored once");
        age(&used);
        age(&unused);
        let in_use: HashSet<PathBuf> = [used.join("chart")].into();
        assert_eq!(store.collect_garbage(&in_use), 1);
        assert!(used.join("chart/Chart.yaml").is_file());
        assert!(!unused.exists());
        assert!(young.exists(), "an artifact within the grace period is kept");
    }
}
