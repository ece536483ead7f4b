//! What every stage of one pass reads: the shared context, the Application and when the pass
//! began.

use std::time::Instant;

use crate::{api::Application, apply::AppRef, controller::context::Context};

/// One sync pass of one Application.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub app: &'a Application,
    pub app_ref: &'a AppRef,
    /// Discovery run after this is fresh enough for the pass.
    pub started: Instant,
}
