//! Sources that are not Git: OCI registries and Helm repositories; a downloaded artifact is
//! verified by digest and unpacked safely.
//!
//! - [`oci`]: resolving a tag, semver range or digest in an OCI registry and pulling one
//!   artifact (a Helm chart, or Flux's manifests artifact) pinned by its manifest digest.
//! - [`unpack`]: extracting a `.tar.gz` into a fresh directory, refusing links, devices, paths
//!   outside the directory and archives over the size limits.

pub mod oci;
pub mod unpack;
