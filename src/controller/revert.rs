//! Rollback by Git revert (`spec.syncPolicy.rollback.gitRevert`): when the rollout of a revision
//! aborts or its PostSync verification fails, ferry commits a revert of what that revision
//! changed under the Application's path since the last verified revision, so Git says again
//! what the cluster should run. The revert is then deployed as any commit: the failed revision
//! stays held back (its rollout aborted) until Git moves, and Git has now moved.
//!
//! ```text
//! due (pure: a failure newer than the last revert, a verified revision to go back to)
//!   -> push credentials, read as the Application's ServiceAccount
//!   -> gitwrite::deliver (direct push, or a pull request; a conflict proposed or reported)
//!   -> status.revert + an Event (GitReverted / RevertConflict)
//! ```
//!
//! It runs inside the reconcile that first sees the failure, after the status is computed and
//! before it is written, so the status says what was done in the same write. A revert that
//! failed for a transient reason (network, a branch that kept moving) is tried again after
//! [`RETRY_AFTER`]; any other outcome is final for that failed revision.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::runtime::events::EventType;

use super::{context::Context, delivery::commit_of, events};
use crate::{
    api::{
        Application, ApplicationStatus, GitWrite, RevertPhase, RevertStatus, RolloutPhase, VerificationPhase,
    },
    apply::AppRef,
    gitwrite::{self, CommitMaker, Delivery, GitWriteError, Made, RevertOutcome, Target, Workspace},
    source::{Author, SourceError},
};

/// How soon a revert that failed for a transient reason is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// A failed revision to revert, and the revision to go back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub failed_revision: String,
    pub good_revision: String,
    pub failed: String,
    pub good: String,
    /// Why the revision failed, for the commit message.
    pub reason: String,
}

/// The revert `next` calls for, if any: the rollout of a revision aborted or its verification
/// failed, a verified revision before it is known, and no revert of that revision was written
/// yet (or the last try failed and is old enough to try again).
pub fn due(app: &Application, next: &ApplicationStatus, now: &Timestamp) -> Option<Due> {
    app.spec.sync_policy.rollback.as_ref()?.git_revert.as_ref()?;
    let (failed_revision, reason) = failure(next)?;
    let good_revision = next.verified_revision.clone()?;
    let (failed, good) = (commit_of(&failed_revision)?.to_string(), commit_of(&good_revision)?.to_string());
    if failed == good {
        return None;
    }
    if let Some(last) = &next.revert
        && last.failed_revision == failed_revision
    {
        let retry = last.phase == RevertPhase::Failed
            && now.duration_since(last.time.0).as_secs_f64() >= RETRY_AFTER.as_secs_f64();
        if !retry {
            return None;
        }
    }
    Some(Due { failed_revision, good_revision, failed, good, reason })
}

fn failure(next: &ApplicationStatus) -> Option<(String, String)> {
    if let Some(r) = next.rollout.as_ref().filter(|r| r.phase == RolloutPhase::Aborted)
        && let Some(revision) = &r.aborted_revision
    {
        let why = r.message.clone().unwrap_or_else(|| "the rollout was aborted".into());
        return Some((revision.clone(), format!("rollout aborted: {why}")));
    }
    let v = next.verification.as_ref().filter(|v| v.phase == VerificationPhase::Failed)?;
    let why = v.message.clone().unwrap_or_else(|| "a PostSync hook failed".into());
    Some((v.revision.clone(), format!("verification failed: {why}")))
}

/// Writes the revert `due` asks for and records it in `next.revert`, with an Event.
pub async fn run(ctx: &Context, app: &Application, app_ref: &AppRef, due: Due, next: &mut ApplicationStatus) {
    let started = Time(Timestamp::now());
    let outcome = write(ctx, app, app_ref, &due).await;
    let record = record(&due, outcome, started);
    let (type_, reason) = match record.phase {
        RevertPhase::Pushed | RevertPhase::PullRequestOpened => (EventType::Normal, events::GIT_REVERTED),
        RevertPhase::Conflict => (EventType::Warning, events::REVERT_CONFLICT),
        RevertPhase::Failed => (EventType::Warning, events::REVERT_FAILED),
    };
    let note = record.message.clone().unwrap_or_default();
    tracing::info!(app = %app_ref, phase = ?record.phase, "{note}");
    ctx.metrics.git_revert(phase_label(record.phase));
    events::publish(ctx, app, type_, reason, &note).await;
    next.revert = Some(record);
}

fn phase_label(phase: RevertPhase) -> &'static str {
    match phase {
        RevertPhase::Pushed => "pushed",
        RevertPhase::PullRequestOpened => "pull_request",
        RevertPhase::Conflict => "conflict",
        RevertPhase::Failed => "failed",
    }
}

async fn write(
    ctx: &Context,
    app: &Application,
    app_ref: &AppRef,
    due: &Due,
) -> Result<Delivery, RevertError> {
    let write = git_write(app).ok_or(RevertError::NotConfigured)?;
    let (url, branch) = tracked_branch(app)?;
    let forge = ctx.forge.as_ref().map_err(|e| RevertError::NoHttpClient(e.clone()))?;
    let tenancy = ctx.tenancy(&app_ref.namespace);
    let sa = tenancy.service_account(app).map_err(|e| RevertError::Tenancy(e.to_string()))?;
    let client = ctx
        .local
        .client_for(&app_ref.namespace, sa.as_deref())
        .map_err(|e| RevertError::Tenancy(e.to_string()))?;
    let access =
        gitwrite::push_credentials(&client, ctx.options.api_timeout, &app_ref.namespace, write).await?;
    let maker = Reverter {
        due: due.clone(),
        path: app.spec.source.path.clone().unwrap_or_default(),
        message: message(app_ref, due),
    };
    let target = Target {
        url,
        branch,
        write,
        access: &access,
        proposal_branch: format!("ferry/revert/{}-{}", app_ref.name, short(&due.failed)),
        title: format!("Revert {} of {app_ref}", short(&due.failed)),
        body: maker.message.clone(),
    };
    Ok(gitwrite::deliver(&ctx.git, forge, &target, &maker).await?)
}

fn git_write(app: &Application) -> Option<&GitWrite> {
    app.spec.sync_policy.rollback.as_ref()?.git_revert.as_ref()
}

/// The repository and the branch the Application tracks: a revert goes on a branch, never on a
/// tag or a pinned commit.
fn tracked_branch(app: &Application) -> Result<(&str, &str), RevertError> {
    let (url, git_ref) = app.spec.source.git().ok_or(RevertError::NotGit)?;
    let branch = git_ref.branch.as_deref().ok_or(RevertError::NotABranch)?;
    Ok((url, branch))
}

/// The commit message: names the Application, the failed revision, why, and the revision whose
/// files it restores.
fn message(app: &AppRef, due: &Due) -> String {
    format!(
        "Revert {failed} of {app}\n\n\
         ferry reverted the changes under the Application's path from {good} to {failed}:\n\
         {reason}.\n\n\
         Application: {app}\n\
         Failed revision: {failed_revision}\n\
         Last good revision: {good_revision}\n",
        failed = short(&due.failed),
        good = short(&due.good),
        reason = due.reason.trim_end_matches('.'),
        failed_revision = due.failed_revision,
        good_revision = due.good_revision,
    )
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

struct Reverter {
    due: Due,
    path: String,
    message: String,
}

impl CommitMaker for Reverter {
    async fn make(&self, ws: &Workspace, on: &str) -> Result<Made, SourceError> {
        let author = Author::from_spec(None);
        let outcome =
            ws.revert_path(on, &self.due.failed, &self.due.good, &self.path, &self.message, &author).await?;
        Ok(match outcome {
            RevertOutcome::Committed { commit } => Made::Commit(commit),
            RevertOutcome::NothingToRevert => Made::Nothing,
            RevertOutcome::Conflict { paths } => Made::Conflict(paths),
        })
    }

    fn conflict_base(&self) -> Option<String> {
        Some(self.due.failed.clone())
    }
}

/// Why no revert was written.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("rollback.gitRevert is not set")]
    NotConfigured,
    #[error("the source is not a Git repository")]
    NotGit,
    #[error("a revert needs the source to track a branch (ref.branch)")]
    NotABranch,
    #[error("no HTTP client for the forge: {0}")]
    NoHttpClient(String),
    #[error("acting as the Application's ServiceAccount: {0}")]
    Tenancy(String),
    #[error(transparent)]
    Write(#[from] GitWriteError),
}

fn record(due: &Due, outcome: Result<Delivery, RevertError>, time: Time) -> RevertStatus {
    let mut r = RevertStatus {
        failed_revision: due.failed_revision.clone(),
        good_revision: due.good_revision.clone(),
        phase: RevertPhase::Failed,
        commit: None,
        branch: None,
        pull_request: None,
        message: None,
        time,
    };
    let (failed, good) = (short(&due.failed), short(&due.good));
    let message = match outcome {
        Ok(Delivery::Pushed { commit, branch }) => {
            r.phase = RevertPhase::Pushed;
            let m = format!("reverted {failed} to {good} on {branch} with commit {}", short(&commit));
            (r.commit, r.branch) = (Some(commit), Some(branch));
            m
        }
        Ok(Delivery::Proposed { commit, branch, pull_request }) => {
            r.phase = RevertPhase::PullRequestOpened;
            let m = format!("proposed reverting {failed} to {good} in pull request {}", pull_request.url);
            (r.commit, r.branch, r.pull_request) = (Some(commit), Some(branch), Some(pull_request.url));
            m
        }
        Ok(Delivery::Unchanged) => {
            r.phase = RevertPhase::Pushed;
            format!("nothing to revert: the branch already has the files of {good}")
        }
        Ok(Delivery::Conflict { paths }) => {
            r.phase = RevertPhase::Conflict;
            format!(
                "RevertConflict: the branch moved on and conflicts with reverting {failed} in {}; revert it by hand or configure gitRevert.forge to get a pull request",
                paths.join(", ")
            )
        }
        Err(e) => {
            let retry = matches!(&e, RevertError::Write(w) if w.is_transient());
            let when =
                if retry { format!("; trying again in {}s", RETRY_AFTER.as_secs()) } else { String::new() };
            format!("could not revert {failed}: {e}{when}")
        }
    };
    r.message = Some(message);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RolloutStatus, VerificationStatus};

    const GOOD: &str = "main@sha1:1111111111111111111111111111111111111111";
    const BAD: &str = "main@sha1:2222222222222222222222222222222222222222";

    fn app(revert: bool) -> Application {
        let mut spec = serde_json::json!({
            "source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}, "path": "apps/web"}
        });
        if revert {
            spec["syncPolicy"] =
                serde_json::json!({"rollback": {"gitRevert": {"secretRef": {"name": "push"}}}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "team"}, "spec": spec
        }))
        .unwrap()
    }

    fn aborted() -> ApplicationStatus {
        ApplicationStatus {
            verified_revision: Some(GOOD.into()),
            rollout: Some(RolloutStatus {
                phase: RolloutPhase::Aborted,
                aborted_revision: Some(BAD.into()),
                message: Some("analysis error-rate failed".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::now()
    }

    #[test]
    fn an_aborted_rollout_is_reverted_to_the_verified_revision() {
        let d = due(&app(true), &aborted(), &now()).unwrap();
        assert_eq!(d.failed, "2222222222222222222222222222222222222222");
        assert_eq!(d.good, "1111111111111111111111111111111111111111");
        assert!(d.reason.contains("error-rate"), "{}", d.reason);
    }

    #[test]
    fn nothing_is_due_without_opt_in_or_a_verified_revision() {
        assert_eq!(due(&app(false), &aborted(), &now()), None);
        let st = ApplicationStatus { verified_revision: None, ..aborted() };
        assert_eq!(due(&app(true), &st, &now()), None);
        let same = ApplicationStatus { verified_revision: Some(BAD.into()), ..aborted() };
        assert_eq!(due(&app(true), &same, &now()), None);
    }

    #[test]
    fn a_failed_verification_is_due() {
        let st = ApplicationStatus {
            verified_revision: Some(GOOD.into()),
            verification: Some(VerificationStatus {
                revision: BAD.into(),
                phase: VerificationPhase::Failed,
                hooks: vec![],
                hook_uids: vec![],
                started_at: None,
                finished_at: None,
                message: Some("smoke test failed".into()),
            }),
            ..Default::default()
        };
        assert!(due(&app(true), &st, &now()).unwrap().reason.contains("smoke test"));
    }

    #[test]
    fn a_revision_is_reverted_once_and_a_failed_try_again_later() {
        let mut st = aborted();
        let d = due(&app(true), &st, &now()).unwrap();
        let record =
            record(&d, Ok(Delivery::Pushed { commit: "c".into(), branch: "main".into() }), Time(now()));
        st.revert = Some(record);
        assert_eq!(due(&app(true), &st, &now()), None, "pushed: never again for this revision");

        let failed = record_failed_at(&d, now());
        st.revert = Some(failed);
        assert_eq!(due(&app(true), &st, &now()), None, "too soon");
        let later = now().checked_add(jiff_secs(RETRY_AFTER.as_secs() as i64 + 1)).unwrap();
        assert!(due(&app(true), &st, &later).is_some(), "a failed revert is tried again");
    }

    fn jiff_secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }

    fn record_failed_at(d: &Due, at: Timestamp) -> RevertStatus {
        record(d, Err(RevertError::NotABranch), Time(at))
    }

    #[test]
    fn the_message_names_app_revisions_and_reason() {
        let d = due(&app(true), &aborted(), &now()).unwrap();
        let m = message(&AppRef { namespace: "team".into(), name: "web".into() }, &d);
        assert!(m.starts_with("Revert 222222222222 of team/web\n"), "{m}");
        for part in [BAD, GOOD, "rollout aborted: analysis error-rate failed"] {
            assert!(m.contains(part), "{part} missing from {m}");
        }
    }

    #[test]
    fn a_conflict_is_reported_with_its_paths() {
        let d = due(&app(true), &aborted(), &now()).unwrap();
        let r =
            record(&d, Ok(Delivery::Conflict { paths: vec!["apps/web/deploy.yaml".into()] }), Time(now()));
        assert_eq!(r.phase, RevertPhase::Conflict);
        assert!(r.message.unwrap().contains("RevertConflict"));
    }
}
