//! Converging the cluster: ownership labels, the inventory of what a sync applied, which objects
//! a sync may prune, and the server-side apply and dry-run calls themselves.

mod ownership;
mod prune;
mod ssa;

pub use ownership::{AppRef, FIELD_MANAGER, Ownership, label_object, ownership_of};
pub use prune::{PruneRefused, inventory_entry, is_prune_disabled, prune_candidates};
pub use ssa::{Applier, ApplyError, describe};
