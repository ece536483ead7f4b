//! Desired versus live: which objects need a write, and in what order they are applied; the
//! per-object options users write for Argo CD and Flux ([`sync_options`]) and the fields
//! `spec.ignoreDifferences` leaves alone ([`ignore`]).
//!
//! Pure functions over plain data; the controller supplies the live objects from its watches.

mod compare;
pub mod hooks;
pub mod ignore;
mod order;
pub mod sync_options;

pub use compare::{Difference, first_difference};
pub use order::{ApplyPhase, phase_of};
pub use sync_options::{ApplyMode, ObjectOptions, OptionError};
