//! Image update automation: the `ImagePolicy` controller.
//!
//! ```text
//! scan --------> select -------> edit ---------> commit -------> push / PR ----> status
//! (tags of the   (filterTags,    (the lines      (one commit,    (the branch,     (latestRef,
//!  repository;    semver range,   marked for      authored by     or ferry/image-  Ready, Event,
//!  the digest     numerical or    this policy)    ferry)          update/... and   wakes the
//!  when pinned)   alphabetical)                                   a pull request)  Application)
//! ```
//!
//! - [`scan`]: the registry (oci-client through [`crate::artifact::oci::OciFetcher`]) and its
//!   credentials (`.dockerconfigjson`, or `username` and `password`).
//! - [`select`]: the latest tag by the policy. Pure.
//! - [`edit`]: the setter markers (`# {"$imagepolicy": "ns:name[:tag|:name|:digest]"}`) and
//!   rewriting the marked values, byte for byte otherwise. Pure.

pub mod deliver;
pub mod edit;
pub mod reconcile;
pub mod scan;
pub mod select;
pub mod status;
pub mod write;

pub use reconcile::{Error, ImagesContext, error_policy, reconcile};
