//! What the fetch of a chart or OCI artifact hands on: where it is in the artifact store and
//! how the revision names it.

use std::path::PathBuf;

/// An artifact in the store: how the revision names it, its digest (hex), where it is.
pub struct Fetched {
    pub label: String,
    pub digest: String,
    pub dir: PathBuf,
}
