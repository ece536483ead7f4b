//! Commit statuses from Application statuses: which commit, and whether it is `pending`
//! (syncing, rolling out, verifying), `success` (Ready at that commit, verification passed) or
//! `failure` (stalled: sync failed, rollout aborted, verification failed). Pure.

use serde::{Deserialize, Serialize};

use crate::api::{ApplicationStatus, conditions as c};

/// A commit status state, as the forges name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Success,
    Failure,
}

/// The status one commit should show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The 40-hex commit.
    pub sha: String,
    pub state: State,
    /// Why, for the forge's description (at most [`DESCRIPTION`] characters).
    pub description: String,
}

/// GitHub's limit on a status description.
pub const DESCRIPTION: usize = 140;

/// Stalled reasons that say nothing bad of the commit itself: it waits (drift not corrected, a
/// manual sync), so the commit stays pending.
const WAITING: [&str; 2] = [c::DRIFT_DETECTED, c::OUT_OF_SYNC];

/// The Git commit of a revision as the status writes it (`main@sha1:<40 hex>`, `sha1:<40
/// hex>`); `None` for charts and OCI artifacts (no commit on a forge).
pub fn git_commit(revision: &str) -> Option<&str> {
    if revision.contains("sha256:") {
        return None;
    }
    let sha = revision.rsplit_once("@sha1:").map(|(_, c)| c).or_else(|| revision.strip_prefix("sha1:"))?;
    (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// What the commit of `status`'s last attempted revision should show; `None` when there is no
/// Git commit or nothing to say (suspended, cluster unreachable).
pub fn verdict(status: &ApplicationStatus) -> Option<Verdict> {
    let revision = status.last_attempted_revision.as_deref()?;
    let sha = git_commit(revision)?.to_ascii_lowercase();
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    let (state, description) = if let Some(ready) = condition(c::READY) {
        if status.verified_revision.as_deref() != Some(revision) {
            return None;
        }
        (State::Success, ready.message.clone())
    } else if let Some(stalled) = condition(c::STALLED) {
        let state = if WAITING.contains(&stalled.reason.as_str()) { State::Pending } else { State::Failure };
        (state, format!("{}: {}", stalled.reason, stalled.message))
    } else if let Some(reconciling) = condition(c::RECONCILING) {
        (State::Pending, format!("{}: {}", reconciling.reason, reconciling.message))
    } else {
        return None;
    };
    Some(Verdict { sha, state, description: shorten(&description) })
}

/// The verdict of `next` when it differs from that of `prev` (a new commit, or a new state).
pub fn transition(prev: Option<&ApplicationStatus>, next: &ApplicationStatus) -> Option<Verdict> {
    let after = verdict(next)?;
    let before = prev.and_then(verdict);
    match before {
        Some(b) if b.sha == after.sha && b.state == after.state => None,
        _ => Some(after),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION {
        return text.to_string();
    }
    let mut short: String = text.chars().take(DESCRIPTION - 3).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn status(type_: &str, reason: &str, verified: bool) -> ApplicationStatus {
        let revision = format!("main@sha1:{SHA}");
        ApplicationStatus {
            last_attempted_revision: Some(revision.clone()),
            verified_revision: verified.then_some(revision),
            conditions: vec![Condition {
                type_: type_.into(),
                status: "True".into(),
                reason: reason.into(),
                message: "why".into(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_git_commits_have_a_status() {
        assert_eq!(git_commit(&format!("main@sha1:{SHA}")), Some(SHA));
        assert_eq!(git_commit(&format!("sha1:{SHA}")), Some(SHA));
        assert_eq!(git_commit("main@sha1:abc"), None);
        let digest = "0".repeat(64);
        assert_eq!(git_commit(&format!("podinfo@sha256:{digest}")), None);
        assert_eq!(git_commit(&format!("podinfo@sha256:{digest}+sha1:{SHA}")), None);
    }

    #[test]
    fn syncing_is_pending_ready_is_success_and_stalled_is_failure() {
        let pending = verdict(&status("Reconciling", "Progressing", false)).unwrap();
        assert_eq!((pending.sha.as_str(), pending.state), (SHA, State::Pending));
        assert_eq!(verdict(&status("Ready", "ReconciliationSucceeded", true)).unwrap().state, State::Success);
        // Ready at another commit than the one attempted says nothing of this one.
        assert_eq!(verdict(&status("Ready", "ReconciliationSucceeded", false)), None);
        let aborted = verdict(&status("Stalled", "RolloutAborted", false)).unwrap();
        assert_eq!(aborted.state, State::Failure);
        assert_eq!(aborted.description, "RolloutAborted: why");
        assert_eq!(verdict(&status("Stalled", "VerificationFailed", false)).unwrap().state, State::Failure);
        assert_eq!(verdict(&status("Stalled", "DriftDetected", false)).unwrap().state, State::Pending);
        assert_eq!(verdict(&ApplicationStatus::default()), None);
    }

    #[test]
    fn only_a_change_of_commit_or_state_is_a_transition() {
        let syncing = status("Reconciling", "Progressing", false);
        let ready = status("Ready", "ReconciliationSucceeded", true);
        assert_eq!(transition(None, &syncing).map(|v| v.state), Some(State::Pending));
        assert_eq!(transition(Some(&syncing), &status("Reconciling", "Syncing", false)), None);
        assert_eq!(transition(Some(&syncing), &ready).map(|v| v.state), Some(State::Success));
        let mut next = syncing.clone();
        next.last_attempted_revision = Some(format!("main@sha1:{}", "f".repeat(40)));
        assert_eq!(transition(Some(&syncing), &next).map(|v| v.sha), Some("f".repeat(40)));
        let long = ApplicationStatus {
            conditions: vec![Condition { message: "x".repeat(500), ..syncing.conditions[0].clone() }],
            ..syncing
        };
        assert_eq!(verdict(&long).unwrap().description.chars().count(), DESCRIPTION);
    }
}
