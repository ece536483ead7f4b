//! Sources that are not Git: OCI registries and Helm repositories; a downloaded artifact is
//! verified by digest and unpacked safely.
//!
//! - [`oci`]: resolving a tag, semver range or digest in an OCI registry and pulling one
//!   artifact (a Helm chart, or Flux's manifests artifact) pinned by its manifest digest.
//! - [`helm_repo`]: Helm repositories: `index.yaml` (conditional, shared per credentials),
//!   version selection, chart downloads checked against the index's digest.
//! - [`fetch`]: a chart or an OCI artifact from its source to the store, by digest.
//! - [`access`]: credentials and trust from the source's Secret.
//! - [`store`]: unpacked artifacts on disk, addressed by digest, shared by every Application.
//! - [`unpack`]: extracting a `.tar.gz` into a fresh directory, refusing links, devices, paths
//!   outside the directory and archives over the size limits.

pub mod access;
pub mod fetch;
pub mod helm_repo;
pub mod oci;
pub mod store;
pub mod unpack;
