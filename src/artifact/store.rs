//! Unpacked artifacts on disk, addressed by the SHA-256 of their archive: a chart version or
//! an OCI layer is downloaded and unpacked once for every Application that uses it, and a
//! directory is only ever seen complete (unpacked beside it, then renamed into place).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::unpack::{UnpackError, UnpackLimits, unpack_tar_gz};

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
        let lock = self.busy.lock().expect("store lock").entry(digest.to_string()).or_default().clone();
        let _held = lock.lock().await;
        if let Some(dir) = self.get(digest) {
            return Ok(dir);
        }
        let (root, dir, digest_owned) = (self.root.clone(), self.dir(digest), digest.to_string());
        let result = tokio::task::spawn_blocking(move || unpack_into(&root, &dir, &digest_owned, &archive))
            .await
            .expect("unpacking does not panic");
        self.busy.lock().expect("store lock").remove(digest);
        result
    }
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
