//! Desired versus live: which objects need a write, and in what order they are applied.
//!
//! Pure functions over plain data; the controller supplies the live objects from its watches.

mod compare;
pub mod hooks;
mod order;

pub use compare::{Difference, first_difference};
pub use order::{ApplyPhase, phase_of};
