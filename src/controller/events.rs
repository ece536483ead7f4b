//! Kubernetes Events on Applications: each sync, failure, prune and drift correction, naming the
//! revision. Publishing is best effort: a refused Event never fails a sync.
//!
//! Every Application Event goes through [`publish`], which also hands the notifications it
//! stands for ([`notification_event`]) to `ctx.notifications`, without waiting for delivery.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

use super::context::Context;
use crate::{
    api::{Application, NotificationEvent, Severity},
    apply::AppRef,
    rollout::types as rollout,
};

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
/// ferry committed a new image tag to Git (or opened a pull request for it).
pub const IMAGE_UPDATED: &str = "ImageUpdated";

/// Events carry at most 1 kB of note.
const NOTE_LIMIT: usize = 1000;

/// Publishes an Event about `app`, and offers the notification it stands for.
pub async fn publish(ctx: &Context, app: &Application, type_: EventType, reason: &str, note: &str) {
    if let Some((event, severity)) = notification_event(&type_, reason) {
        ctx.notifications.offer_about(app, event, severity, note);
    }
    send(ctx, app.object_ref(&()), type_, reason, note).await;
}

/// The notification an Application Event stands for, with its severity: `None` for Events
/// nobody subscribes to (pruned, drift detected, a rollout step, a measurement). Other warnings
/// are failures (sync failed, refusals, failed hooks).
pub fn notification_event(type_: &EventType, reason: &str) -> Option<(NotificationEvent, Severity)> {
    let event = match reason {
        SYNCED => NotificationEvent::Synced,
        DRIFT_CORRECTED => NotificationEvent::DriftCorrected,
        VERIFICATION_FAILED => NotificationEvent::VerificationFailed,
        rollout::ROLLOUT_STARTED => NotificationEvent::RolloutStarted,
        rollout::ROLLOUT_PAUSED => NotificationEvent::RolloutPaused,
        rollout::ROLLOUT_PROMOTED => NotificationEvent::RolloutPromoted,
        rollout::ROLLOUT_ABORTED => NotificationEvent::RolloutAborted,
        GIT_REVERTED => NotificationEvent::Reverted,
        REVERT_CONFLICT => return Some((NotificationEvent::Reverted, Severity::Error)),
        IMAGE_UPDATED => NotificationEvent::ImageUpdated,
        DRIFT_DETECTED
        | PRUNED
        | VERIFICATION_SUCCEEDED
        | rollout::ROLLOUT_STEP
        | rollout::ANALYSIS_MEASURED => {
            return None;
        }
        _ if *type_ == EventType::Warning => NotificationEvent::Failed,
        _ => return None,
    };
    Some((event, event.severity()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions as c;

    #[test]
    fn events_map_to_the_notifications_they_stand_for() {
        use EventType::{Normal, Warning};
        use NotificationEvent as N;
        let cases = [
            (Normal, SYNCED, Some((N::Synced, Severity::Info))),
            (Warning, SYNC_FAILED, Some((N::Failed, Severity::Error))),
            (Warning, c::SOURCE_NOT_PERMITTED, Some((N::Failed, Severity::Error))),
            (Warning, HOOK_FAILED, Some((N::Failed, Severity::Error))),
            (Normal, DRIFT_CORRECTED, Some((N::DriftCorrected, Severity::Info))),
            (Warning, DRIFT_DETECTED, None),
            (Warning, VERIFICATION_FAILED, Some((N::VerificationFailed, Severity::Error))),
            (Normal, VERIFICATION_SUCCEEDED, None),
            (Normal, rollout::ROLLOUT_STARTED, Some((N::RolloutStarted, Severity::Info))),
            (Normal, rollout::ROLLOUT_PAUSED, Some((N::RolloutPaused, Severity::Info))),
            (Normal, rollout::ROLLOUT_PROMOTED, Some((N::RolloutPromoted, Severity::Info))),
            (Warning, rollout::ROLLOUT_ABORTED, Some((N::RolloutAborted, Severity::Error))),
            (Normal, rollout::ROLLOUT_STEP, None),
            (Warning, rollout::ANALYSIS_MEASURED, None),
            (Normal, GIT_REVERTED, Some((N::Reverted, Severity::Info))),
            (Warning, REVERT_CONFLICT, Some((N::Reverted, Severity::Error))),
            (Warning, REVERT_FAILED, Some((N::Failed, Severity::Error))),
            (Normal, IMAGE_UPDATED, Some((N::ImageUpdated, Severity::Info))),
            (Normal, PRUNED, None),
            (Normal, c::WAITING_FOR_PROMOTION, None),
        ];
        for (type_, reason, expected) in cases {
            assert_eq!(notification_event(&type_, reason), expected, "{reason}");
        }
    }
}
