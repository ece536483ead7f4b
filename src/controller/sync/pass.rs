//! What every stage of one pass reads: the shared context, the Application, the cluster it
//! deploys to and when the pass began.

use std::time::Instant;

use crate::{
    api::Application,
    apply::AppRef,
    controller::{clusters::ClusterLink, context::Context},
};

/// One sync pass of one Application.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub app: &'a Application,
    pub app_ref: &'a AppRef,
    /// The cluster the Application deploys to: its discovery, watches and clients.
    pub cluster: &'a ClusterLink,
    /// Discovery run after this is fresh enough for the pass.
    pub started: Instant,
}
