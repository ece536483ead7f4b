//! Where one generated Application stands against the commit a fleet rollout pins: done, on its
//! way, or failed; and the commit it keeps until its step comes. Pure, over the Application as
//! the cache shows it.

use kube::ResourceExt;

use crate::{
    api::{
        Application, ApplicationStatus, HealthStatusCode, RolloutPhase, SyncStatusCode, VerificationPhase,
        conditions as c,
    },
    source::Revision,
};

/// An Application's state at the rollout's commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Synced, Healthy and Ready at the commit, and its PostSync hooks (if any) passed: its
    /// `verifiedRevision` is the commit.
    Done,
    /// Not there yet: why, for the rollout's message.
    Waiting(String),
    /// Failed at the commit: why, for the rollout's message and Event.
    Failed(String),
}

/// Ready=False reasons that are Stalled yet say nothing against the commit: drift left alone
/// (`selfHeal: false`) and automated sync turned off. The rollout waits for them (a person may
/// act) until its progress deadline.
const NOT_THE_COMMITS_FAULT: [&str; 2] = [c::DRIFT_DETECTED, c::OUT_OF_SYNC];

/// The Application's state at `commit` (`None`: it does not exist yet).
pub fn progress(app: Option<&Application>, commit: &str) -> Progress {
    let waiting = |why: &str| Progress::Waiting(why.to_string());
    let Some(app) = app else { return waiting("not created yet") };
    if app.metadata.deletion_timestamp.is_some() {
        return waiting("being deleted");
    }
    // The cache may not show this pass's pin yet; what it shows is then about another commit.
    if pinned(app) != Some(commit) {
        return Progress::Waiting(format!("not pinned to {} yet", short(commit)));
    }
    let Some(status) = &app.status else { return waiting("not reconciled yet") };
    // A status of an older generation is about the commit pinned before.
    if status.observed_generation != app.metadata.generation {
        return waiting("its new spec is not reconciled yet");
    }
    if let Some(why) = failure(status, commit) {
        return Progress::Failed(why);
    }
    if is_done(status, commit) {
        return Progress::Done;
    }
    Progress::Waiting(match ready(status) {
        Some((_, reason, message)) if !message.is_empty() => format!("{reason}: {message}"),
        Some((_, reason, _)) => reason.to_string(),
        None => "not reconciled yet".to_string(),
    })
}

/// The commit the Application keeps until its step comes: the one pinned in its spec, else the
/// one it last applied (a set that had no strategy before). `None`: it has none to keep.
pub fn held(app: &Application) -> Option<String> {
    if let Some(commit) = pinned(app) {
        return Some(commit.to_string());
    }
    let applied = app.status.as_ref()?.last_applied_revision.as_deref()?;
    commit_of(applied).map(str::to_string)
}

/// `ref.commit` of the Application's source, lowercase.
pub fn pinned(app: &Application) -> Option<&str> {
    app.spec.source.git_ref.as_ref()?.commit.as_deref()
}

/// The commit of a revision as ferry writes them (`main@sha1:<hex>`, `sha1:<hex>`).
fn commit_of(revision: &str) -> Option<&str> {
    let parsed: Revision = revision.parse().ok()?;
    if parsed.is_artifact() {
        return None;
    }
    // The commit is the revision's tail; a status someone else wrote may not be, and is then
    // no commit of ours (never a panic on a bad slice).
    let at = revision.len().checked_sub(parsed.commit.len())?;
    revision.get(at..).filter(|tail| tail.eq_ignore_ascii_case(&parsed.commit))
}

fn at(revision: Option<&str>, commit: &str) -> bool {
    revision.and_then(commit_of).is_some_and(|c| c.eq_ignore_ascii_case(commit))
}

/// (status, reason, message) of the Ready condition.
fn ready(status: &ApplicationStatus) -> Option<(&str, &str, &str)> {
    let cond = status.conditions.iter().find(|c| c.type_ == c::READY)?;
    Some((cond.status.as_str(), cond.reason.as_str(), cond.message.as_str()))
}

fn stalled(status: &ApplicationStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == c::STALLED && c.status == "True")
}

/// Why the Application failed at `commit`, if it did: Stalled (a failure only a change fixes:
/// a refused manifest, a failed hook or verification, a Degraded health, an aborted rollout...),
/// or, whatever the conditions say, Degraded, a failed verification or an aborted rollout of
/// the commit.
fn failure(status: &ApplicationStatus, commit: &str) -> Option<String> {
    let (_, reason, message) = ready(status).unwrap_or(("", "", ""));
    let words = |fallback: &str| {
        if message.is_empty() { format!("{reason}: {fallback}") } else { format!("{reason}: {message}") }
    };
    if stalled(status) && !NOT_THE_COMMITS_FAULT.contains(&reason) {
        return Some(words("stalled"));
    }
    let synced_at = status.sync.as_ref().is_some_and(|s| at(s.revision.as_deref(), commit));
    if synced_at && status.health.as_ref().is_some_and(|h| h.status == HealthStatusCode::Degraded) {
        let health = status.health.as_ref().and_then(|h| h.message.clone()).unwrap_or_default();
        return Some(format!("Degraded: {health}").trim_end_matches(": ").to_string());
    }
    if let Some(v) = &status.verification
        && v.phase == VerificationPhase::Failed
        && at(Some(&v.revision), commit)
    {
        return Some(format!(
            "VerificationFailed: {}",
            v.message.as_deref().unwrap_or("PostSync hook failed")
        ));
    }
    if let Some(r) = &status.rollout
        && r.phase == RolloutPhase::Aborted
        && at(r.revision.as_deref(), commit)
    {
        return Some(format!("RolloutAborted: {}", r.message.as_deref().unwrap_or("rollout aborted")));
    }
    None
}

/// Synced and Healthy at `commit`, Ready, and verified there (ferry records the verified
/// revision only once the PostSync hooks of the revision passed, and for every Healthy revision
/// without hooks).
fn is_done(status: &ApplicationStatus, commit: &str) -> bool {
    let synced = status
        .sync
        .as_ref()
        .is_some_and(|s| s.status == SyncStatusCode::Synced && at(s.revision.as_deref(), commit));
    let healthy = status.health.as_ref().is_some_and(|h| h.status == HealthStatusCode::Healthy);
    let is_ready = ready(status).is_some_and(|(s, _, _)| s == "True");
    synced && healthy && is_ready && at(status.verified_revision.as_deref(), commit)
}

/// The first 7 characters of a commit, for messages.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// `namespace/name` of an Application, for messages.
pub fn shown(app: &Application) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{Value, json};

    use super::*;

    pub const V1: &str = "1111111111111111111111111111111111111111";
    pub const V2: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn the_commit_of_a_revision_any_status_may_hold_never_panics() {
        assert_eq!(commit_of(&format!("main@sha1:{V1}")), Some(V1));
        assert_eq!(commit_of(&format!("sha1:{V1}")), Some(V1));
        for odd in ["", "main@", "sha1:", "é@sha1:ü", &format!("main@sha1:{}", V1.to_uppercase())] {
            let _ = commit_of(odd);
        }
    }
    pub const V3: &str = "3333333333333333333333333333333333333333";

    /// An Application pinned to `pinned` (`None`: on branch main) at generation 2, with `status`.
    pub fn app(name: &str, pinned: Option<&str>, status: Value) -> Application {
        let git_ref = match pinned {
            Some(commit) => json!({"commit": commit}),
            None => json!({"branch": "main"}),
        };
        serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "team", "generation": 2},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": git_ref}},
            "status": status,
        }))
        .unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    /// Synced, Healthy, Ready and verified at `commit`.
    pub fn done_at(commit: &str) -> Value {
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "True", "ReconciliationSucceeded", "synced")],
            "sync": {"status": "Synced", "revision": format!("sha1:{commit}")},
            "health": {"status": "Healthy"},
            "lastAppliedRevision": format!("sha1:{commit}"),
            "verifiedRevision": format!("sha1:{commit}"),
        })
    }

    /// Stalled at `commit` with `reason`.
    pub fn stalled_at(commit: &str, reason: &str, message: &str) -> Value {
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "False", reason, message), cond("Stalled", "True", reason, message)],
            "sync": {"status": "OutOfSync", "revision": format!("sha1:{commit}")},
            "lastAttemptedRevision": format!("sha1:{commit}"),
        })
    }

    /// Applied at `commit`, Progressing.
    pub fn progressing_at(commit: &str) -> Value {
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "False", "Progressing", "waiting for Deployment web"),
                           cond("Reconciling", "True", "Progressing", "waiting for Deployment web")],
            "sync": {"status": "Synced", "revision": format!("sha1:{commit}")},
            "health": {"status": "Progressing"},
        })
    }

    #[test]
    fn synced_healthy_ready_and_verified_at_the_commit_is_done() {
        assert_eq!(progress(Some(&app("a", Some(V1), done_at(V1))), V1), Progress::Done);
        // The same status about another commit is not.
        let other = progress(Some(&app("a", Some(V1), done_at(V2))), V1);
        assert!(matches!(other, Progress::Waiting(_)), "{other:?}");
    }

    #[test]
    fn healthy_but_not_verified_yet_waits_for_the_post_sync_hooks() {
        let mut status = done_at(V1);
        status["verifiedRevision"] = json!(format!("sha1:{V2}"));
        status["conditions"] =
            json!([cond("Ready", "False", "Progressing", "PostSync hook Job smoke is running")]);
        assert_eq!(
            progress(Some(&app("a", Some(V1), status)), V1),
            Progress::Waiting("Progressing: PostSync hook Job smoke is running".into())
        );
    }

    #[test]
    fn missing_unpinned_or_unobserved_applications_wait() {
        assert_eq!(progress(None, V1), Progress::Waiting("not created yet".into()));
        let stale_pin = app("a", Some(V2), done_at(V2));
        assert_eq!(progress(Some(&stale_pin), V1), Progress::Waiting("not pinned to 1111111 yet".into()));
        let mut older = done_at(V2);
        older["observedGeneration"] = json!(1);
        // Pinned to V1 now, but the status (even a failure) is the previous generation's.
        let mut failed_before = stalled_at(V2, "VerificationFailed", "Job smoke failed");
        failed_before["observedGeneration"] = json!(1);
        for status in [older, failed_before, json!(null)] {
            let p = progress(Some(&app("a", Some(V1), status)), V1);
            assert!(matches!(p, Progress::Waiting(_)), "{p:?}");
        }
        assert_eq!(
            progress(Some(&app("a", Some(V1), progressing_at(V1))), V1),
            Progress::Waiting("Progressing: waiting for Deployment web".into())
        );
    }

    #[test]
    fn stalled_degraded_failed_verification_or_aborted_rollout_is_a_failure() {
        let refused = progress(
            Some(&app("a", Some(V1), stalled_at(V1, "ValidationFailed", "ConfigMap x: invalid"))),
            V1,
        );
        assert_eq!(refused, Progress::Failed("ValidationFailed: ConfigMap x: invalid".into()));

        let mut degraded = progressing_at(V1);
        degraded["health"] = json!({"status": "Degraded", "message": "Deployment web: ImagePullBackOff"});
        assert_eq!(
            progress(Some(&app("a", Some(V1), degraded)), V1),
            Progress::Failed("Degraded: Deployment web: ImagePullBackOff".into())
        );

        let mut unverified = progressing_at(V1);
        unverified["verification"] =
            json!({"revision": format!("sha1:{V1}"), "phase": "Failed", "message": "Job smoke failed"});
        assert_eq!(
            progress(Some(&app("a", Some(V1), unverified)), V1),
            Progress::Failed("VerificationFailed: Job smoke failed".into())
        );

        let mut aborted = progressing_at(V1);
        aborted["rollout"] =
            json!({"phase": "Aborted", "revision": format!("main@sha1:{V1}"), "message": "analysis failed"});
        assert_eq!(
            progress(Some(&app("a", Some(V1), aborted)), V1),
            Progress::Failed("RolloutAborted: analysis failed".into())
        );
    }

    #[test]
    fn drift_left_alone_or_automated_sync_off_is_waited_for() {
        for reason in ["DriftDetected", "OutOfSync"] {
            let p = progress(Some(&app("a", Some(V1), stalled_at(V1, reason, "a person must act"))), V1);
            assert_eq!(p, Progress::Waiting(format!("{reason}: a person must act")));
        }
    }

    #[test]
    fn an_application_keeps_its_pinned_commit_else_the_one_it_applied() {
        assert_eq!(held(&app("a", Some(V1), json!(null))).as_deref(), Some(V1));
        let mut on_branch = done_at(V2);
        on_branch["lastAppliedRevision"] = json!(format!("main@sha1:{V2}"));
        assert_eq!(held(&app("a", None, on_branch)).as_deref(), Some(V2));
        assert_eq!(held(&app("a", None, json!({"observedGeneration": 1}))), None);
    }
}
