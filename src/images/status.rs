//! The ImagePolicy's status, computed purely from the previous one and a pass's outcome, and
//! written only when it changed (or when `lastScan` is older than
//! [`super::reconcile::LAST_SCAN_EVERY`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::{
    deliver::{Delivered, UpdateError},
    edit::Latest,
    reconcile::{Error, LAST_SCAN_EVERY, now},
};
use crate::{
    api::{ImagePolicy, ImagePolicyStatus, ImageUpdateRecord, conditions as c},
    controller::{
        Context,
        status::{Phase, conditions_for},
    },
};

pub const SCAN_FAILED: &str = "ScanFailed";
pub const NO_MATCHING_TAG: &str = "NoMatchingTag";
pub const UPDATE_FAILED: &str = "UpdateFailed";
pub const UPDATE_CONFLICT: &str = "UpdateConflict";

/// What a pass found. Lives for one pass, so its size does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Suspended,
    ScanFailed { no_match: bool, message: String },
    Scanned { latest: Latest, tags: usize, update: Option<Result<Delivered, UpdateError>> },
}

impl Outcome {
    pub fn failed(&self) -> bool {
        match self {
            Outcome::Suspended => false,
            Outcome::ScanFailed { .. } => true,
            Outcome::Scanned { update, .. } => {
                matches!(update, Some(Err(_)) | Some(Ok(Delivered::Conflict { .. })))
            }
        }
    }
}

/// The next status, `lastScan` kept as it was (see [`write_if_changed`]).
pub fn next_status(
    prev: &ImagePolicyStatus,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &Time,
) -> ImagePolicyStatus {
    let mut next = prev.clone();
    next.observed_generation = generation;
    let phase = match outcome {
        Outcome::Suspended => Phase::Suspended,
        Outcome::ScanFailed { no_match, message } => {
            let reason = if *no_match { NO_MATCHING_TAG } else { SCAN_FAILED };
            Phase::Reconciling { reason, message: message.clone() }
        }
        Outcome::Scanned { latest, tags, update } => {
            next.latest_ref = Some(latest.reference());
            next.latest_tag = Some(latest.tag.clone());
            next.latest_digest = latest.digest.clone();
            next.tags = Some(*tags as i64);
            scanned_phase(&mut next, latest, update.as_ref(), now)
        }
    };
    next.conditions = conditions_for(&prev.conditions, &phase, generation, now);
    next
}

fn scanned_phase(
    next: &mut ImagePolicyStatus,
    latest: &Latest,
    update: Option<&Result<Delivered, UpdateError>>,
    now: &Time,
) -> Phase {
    let record = |commit: &str, branch: &str, pull_request: Option<&str>| ImageUpdateRecord {
        image: latest.reference(),
        commit: commit.to_string(),
        branch: branch.to_string(),
        pull_request: pull_request.map(str::to_string),
        time: now.clone(),
    };
    match update {
        Some(Ok(Delivered::Committed { commit, branch })) => {
            next.last_update = Some(record(commit, branch, None))
        }
        Some(Ok(Delivered::PullRequest { commit, branch, url })) => {
            next.last_update = Some(record(commit, branch, Some(url)))
        }
        Some(Ok(Delivered::Conflict { paths })) => {
            let message = format!("{} conflicts with the branch on {}", latest.reference(), paths.join(", "));
            return Phase::Stalled { reason: UPDATE_CONFLICT, message };
        }
        Some(Err(e)) => return Phase::Reconciling { reason: UPDATE_FAILED, message: e.to_string() },
        Some(Ok(Delivered::Unchanged)) | None => {}
    }
    Phase::Ready {
        reason: c::RECONCILIATION_SUCCEEDED,
        message: format!("latest image {}", latest.reference()),
    }
}

/// Whether `lastScan` is due: missing, or older than [`LAST_SCAN_EVERY`].
fn last_scan_due(prev: Option<&Time>, now: &Time) -> bool {
    prev.is_none_or(|t| now.0.duration_since(t.0).unsigned_abs() >= LAST_SCAN_EVERY || t.0 > now.0)
}

/// Writes the status of the pass when it differs from the one the policy has.
pub async fn write_if_changed(
    ctx: &Context,
    policy: &ImagePolicy,
    ns: &str,
    outcome: Outcome,
) -> Result<(), Error> {
    let prev = policy.status.clone().unwrap_or_default();
    let now = now();
    let mut next = next_status(&prev, policy.meta().generation, &outcome, &now);
    let scanned = !matches!(outcome, Outcome::Suspended);
    if scanned && (next != prev || last_scan_due(prev.last_scan.as_ref(), &now)) {
        next.last_scan = Some(now);
    }
    if next == prev {
        return Ok(());
    }
    let name = policy.name_any();
    crate::controller::reconcile::apply_status::<ImagePolicy>(ctx, ns, &name, &next)
        .await
        .map_err(|source| Error::Status { policy: format!("{ns}/{name}"), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    fn latest(tag: &str) -> Latest {
        Latest { name: "reg/web".into(), tag: tag.into(), digest: None }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + seconds).expect("time"))
    }

    #[test]
    fn a_steady_scan_changes_nothing_but_a_commit_is_recorded() {
        let scanned = |update| Outcome::Scanned { latest: latest("1.1.0"), tags: 3, update };
        let first = next_status(&ImagePolicyStatus::default(), Some(1), &scanned(None), &at(0));
        assert_eq!(first.latest_ref.as_deref(), Some("reg/web:1.1.0"));
        assert_eq!(first.conditions[0].reason, c::RECONCILIATION_SUCCEEDED);
        assert_eq!(next_status(&first, Some(1), &scanned(None), &at(60)), first);
        let committed = Some(Ok(Delivered::Committed { commit: "abc".into(), branch: "main".into() }));
        let after = next_status(&first, Some(1), &scanned(committed), &at(120));
        let record = after.last_update.clone().expect("recorded");
        assert_eq!((record.image.as_str(), record.commit.as_str()), ("reg/web:1.1.0", "abc"));
        // The next scan, finding it written, keeps the status as it is.
        assert_eq!(next_status(&after, Some(1), &scanned(None), &at(180)), after);
    }

    #[test]
    fn failures_have_their_reasons_and_keep_the_last_image() {
        let ok = next_status(
            &ImagePolicyStatus::default(),
            Some(1),
            &Outcome::Scanned { latest: latest("1"), tags: 1, update: None },
            &at(0),
        );
        let failed = next_status(
            &ok,
            Some(1),
            &Outcome::ScanFailed { no_match: true, message: "none".into() },
            &at(1),
        );
        assert_eq!(failed.conditions[0].reason, NO_MATCHING_TAG);
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(failed.latest_ref, ok.latest_ref);
        let failed =
            next_status(&ok, Some(1), &Outcome::ScanFailed { no_match: false, message: "x".into() }, &at(1));
        assert_eq!(failed.conditions[0].reason, SCAN_FAILED);
        let conflict = Outcome::Scanned {
            latest: latest("2"),
            tags: 2,
            update: Some(Ok(Delivered::Conflict { paths: vec!["a.yaml".into()] })),
        };
        assert_eq!(next_status(&ok, Some(1), &conflict, &at(2)).conditions[0].reason, UPDATE_CONFLICT);
        let failed = Outcome::Scanned {
            latest: latest("2"),
            tags: 2,
            update: Some(Err(UpdateError::NotABranch("app".into()))),
        };
        assert_eq!(next_status(&ok, Some(1), &failed, &at(2)).conditions[0].reason, UPDATE_FAILED);
    }

    #[test]
    fn last_scan_alone_is_written_every_ten_minutes() {
        assert!(last_scan_due(None, &at(0)));
        assert!(!last_scan_due(Some(&at(0)), &at(599)));
        assert!(last_scan_due(Some(&at(0)), &at(600)));
        // A clock that went back does not freeze it.
        let future = Time(at(0).0 + SignedDuration::from_secs(3600));
        assert!(last_scan_due(Some(&future), &at(0)));
    }
}
