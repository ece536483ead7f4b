//! Manifests -> objects.

pub mod error;
pub mod parse;
mod paths;
