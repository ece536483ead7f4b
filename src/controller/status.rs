//! Status bookkeeping as pure functions: kstatus-compatible conditions and bounded history.
//!
//! kstatus (what `kubectl wait`, Flux and most dashboards read): `Ready` says whether the
//! Application reached its goal, `Reconciling` is present and True while work is under way,
//! `Stalled` is present and True when ferry cannot make progress without someone changing
//! something. A condition's `lastTransitionTime` moves only when its status flips, so "Ready
//! since" stays meaningful across reconciles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{HistoryEntry, conditions as c};

/// How many syncs `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// Where a reconcile left the Application, in kstatus terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Goal reached: synced and healthy.
    Ready { reason: &'static str, message: String },
    /// Work under way (syncing, waiting for health), or a failure a retry may fix (network, API
    /// server): not Ready, expected to resolve by itself.
    Reconciling { reason: &'static str, message: String },
    /// A failure only a change can fix (bad manifests, refused objects, forbidden).
    Stalled { reason: &'static str, message: String },
    /// `spec.suspend`: nothing is done, and that is not a failure.
    Suspended,
    /// ferry cannot tell (the destination cluster does not answer): Ready is Unknown, and
    /// ferry keeps trying.
    Unknown { reason: &'static str, message: String },
}

/// The conditions for `phase`, keeping transition times of conditions whose status is unchanged.
pub fn conditions_for(
    previous: &[Condition],
    phase: &Phase,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        let last_transition_time = previous
            .iter()
            .find(|p| p.type_ == type_ && p.status == status)
            .map(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time,
        }
    };
    match phase {
        Phase::Ready { reason, message } => vec![cond(c::READY, "True", reason, message)],
        Phase::Reconciling { reason, message } => {
            vec![cond(c::READY, "False", reason, message), cond(c::RECONCILING, "True", reason, message)]
        }
        Phase::Stalled { reason, message } => {
            vec![cond(c::READY, "False", reason, message), cond(c::STALLED, "True", reason, message)]
        }
        Phase::Suspended => vec![cond(c::READY, "False", c::SUSPENDED, "reconciliation is suspended")],
        Phase::Unknown { reason, message } => {
            vec![cond(c::READY, "Unknown", reason, message), cond(c::RECONCILING, "True", reason, message)]
        }
    }
}

/// Adds `entry` as the newest sync, replacing an unfinished entry for the same revision (a sync
/// that was retried), and keeps at most [`HISTORY_LIMIT`] entries.
pub fn record_history(history: &[HistoryEntry], entry: HistoryEntry) -> Vec<HistoryEntry> {
    let mut out = Vec::with_capacity(HISTORY_LIMIT);
    let retried = history.first().is_some_and(|h| h.revision == entry.revision && h.finished_at.is_none());
    out.push(entry);
    out.extend(history.iter().skip(usize::from(retried)).cloned());
    out.truncate(HISTORY_LIMIT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SyncResult;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conds.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn ready_has_no_reconciling_or_stalled() {
        let phase =
            Phase::Ready { reason: c::RECONCILIATION_SUCCEEDED, message: "applied main@0123456".into() };
        let conds = conditions_for(&[], &phase, Some(3), &time("2026-01-01T00:00:00Z"));
        assert_eq!(conds.len(), 1);
        assert_eq!((conds[0].type_.as_str(), conds[0].status.as_str()), ("Ready", "True"));
        assert_eq!(conds[0].observed_generation, Some(3));
    }

    #[test]
    fn stalled_and_reconciling_are_exclusive_and_ready_is_false() {
        let t = time("2026-01-01T00:00:00Z");
        let stalled = conditions_for(
            &[],
            &Phase::Stalled { reason: c::VALIDATION_FAILED, message: "Deployment shop/web: refused".into() },
            Some(1),
            &t,
        );
        assert_eq!(find(&stalled, "Ready").unwrap().status, "False");
        assert_eq!(find(&stalled, "Stalled").unwrap().reason, "ValidationFailed");
        assert!(find(&stalled, "Reconciling").is_none());

        let retrying = conditions_for(
            &[],
            &Phase::Reconciling { reason: c::FETCH_FAILED, message: "timeout".into() },
            Some(1),
            &t,
        );
        assert_eq!(find(&retrying, "Reconciling").unwrap().status, "True");
        assert!(find(&retrying, "Stalled").is_none());

        let suspended = conditions_for(&[], &Phase::Suspended, Some(1), &t);
        assert_eq!(find(&suspended, "Ready").unwrap().reason, "Suspended");
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let ready = Phase::Ready { reason: c::RECONCILIATION_SUCCEEDED, message: "a".into() };
        let first = conditions_for(&[], &ready, Some(1), &time("2026-01-01T00:00:00Z"));
        let again = conditions_for(&first, &ready, Some(2), &time("2026-01-02T00:00:00Z"));
        assert_eq!(again[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        let failed = Phase::Stalled { reason: c::RENDER_FAILED, message: "b".into() };
        let flipped = conditions_for(&again, &failed, Some(3), &time("2026-01-03T00:00:00Z"));
        assert_eq!(find(&flipped, "Ready").unwrap().last_transition_time, time("2026-01-03T00:00:00Z"));
    }

    fn entry(rev: &str, finished: bool) -> HistoryEntry {
        HistoryEntry {
            revision: rev.into(),
            started_at: time("2026-01-01T00:00:00Z"),
            finished_at: finished.then(|| time("2026-01-01T00:01:00Z")),
            result: SyncResult::Succeeded,
            message: None,
            verification: None,
        }
    }

    #[test]
    fn history_is_newest_first_bounded_and_replaces_a_retried_sync() {
        let mut history = Vec::new();
        for i in 0..12 {
            history = record_history(&history, entry(&format!("r{i}"), true));
        }
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].revision, "r11");
        assert_eq!(history[9].revision, "r2");

        let started = record_history(&history, entry("r12", false));
        let finished = record_history(&started, entry("r12", true));
        assert_eq!(finished[0].revision, "r12");
        assert_eq!(finished[1].revision, "r11", "the unfinished attempt was replaced, not kept");
        assert!(finished[0].finished_at.is_some());
    }
}
