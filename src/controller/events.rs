//! Kubernetes Events on Applications: each sync, failure, prune and drift correction, naming the
//! revision. Publishing is best effort: a refused Event never fails a sync.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

use super::context::Context;
use crate::{api::Application, apply::AppRef};

pub const SYNCED: &str = "Synced";
pub const SYNC_FAILED: &str = "SyncFailed";
pub const PRUNED: &str = "Pruned";
pub const NAMESPACE_RELEASED: &str = "NamespaceReleased";
pub const DRIFT_CORRECTED: &str = "DriftCorrected";
pub const DRIFT_DETECTED: &str = "DriftDetected";
pub const OWNERSHIP_CONFLICT: &str = "OwnershipConflict";
pub const VERIFICATION_SUCCEEDED: &str = "VerificationSucceeded";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
pub const HOOK_FAILED: &str = "HookFailed";
/// ferry wrote a revert of a failed revision to Git (pushed, or a pull request).
pub const GIT_REVERTED: &str = "GitReverted";
/// A revert of a failed revision conflicts with the branch and was not proposed.
pub const REVERT_CONFLICT: &str = "RevertConflict";
/// Writing a revert to Git failed.
pub const REVERT_FAILED: &str = "RevertFailed";

/// Events carry at most 1 kB of note.
const NOTE_LIMIT: usize = 1000;

/// Publishes an Event about `app`.
pub async fn publish(ctx: &Context, app: &Application, type_: EventType, reason: &str, note: &str) {
    send(ctx, app.object_ref(&()), type_, reason, note).await;
}

/// Publishes an Event about another Application, known only by name.
pub async fn on_other(ctx: &Context, app: &AppRef, type_: EventType, reason: &str, note: &str) {
    let reference = ObjectReference {
        api_version: Some(Application::api_version(&()).into_owned()),
        kind: Some(Application::kind(&()).into_owned()),
        namespace: Some(app.namespace.clone()),
        name: Some(app.name.clone()),
        ..Default::default()
    };
    send(ctx, reference, type_, reason, note).await;
}

/// Publishes an Event about any object ferry writes (an ApplicationSet's fleet rollout).
pub async fn on_object(
    ctx: &Context,
    reference: ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    send(ctx, reference, type_, reason, note).await;
}

async fn send(ctx: &Context, reference: ObjectReference, type_: EventType, reason: &str, note: &str) {
    let mut note = note.to_string();
    if note.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Sync".to_string(),
        secondary: None,
    };
    // A recorder per Event: kube's Recorder folds Events with the same reason about the same
    // object into one series and keeps the first note, which would show a sync of a new
    // revision with the old revision's words. ferry dedupes repeated failures itself.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let publish = recorder.publish(&event, &reference);
    match tokio::time::timeout(ctx.options.api_timeout, publish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(reason, error = %e, "could not publish an event"),
        Err(_) => tracing::warn!(reason, "publishing an event timed out"),
    }
}
