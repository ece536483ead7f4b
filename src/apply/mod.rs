//! Converging the cluster: ownership labels, the inventory of what a sync applied, and which
//! objects a sync may prune. The pure rules live here; the server-side apply calls that use them
//! come with the sync engine.

mod ownership;
mod prune;

pub use ownership::{AppRef, FIELD_MANAGER, Ownership, label_object, ownership_of};
pub use prune::{PruneRefused, inventory_entry, is_prune_disabled, prune_candidates};
