//! Converging the cluster: ownership labels, the inventory of what a sync applied, which objects
//! a sync may prune, which conflicts it may force, objects prepared as ferry applies them, and the
//! server-side apply and dry-run calls.

mod conflict;
mod namespace;
mod ownership;
mod prepared;
mod prune;
mod ssa;

pub use conflict::{all_previously_set, field_in};
pub use namespace::{
    CREATED_NAMESPACE, NamespaceReadError, created_namespace, is_namespace, requested_namespace,
};
pub use ownership::{
    APP_NAME, APP_NAMESPACE, AppRef, FIELD_MANAGER, MANAGED_BY, MANIFEST_HASH, Ownership, label_object,
    manifest_hash, ownership_of,
};
pub use prepared::{ObjKey, Prepared};
pub use prune::{PruneRefused, inventory_entry, is_prune_disabled, prune_candidates};
pub use ssa::{Applier, ApplyError, FieldConflict, describe};
