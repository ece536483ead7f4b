//! What every strategy does around its steps: reading a person's request, finishing a
//! promotion, standing down when Git matches the primary again, holding back an aborted
//! revision, and starting a rollout. The strategies (`canary`, `blue_green`) say only what
//! differs: how the new version and the traffic look while promotion finishes or after an abort.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::types::{
    Canary, Decision, Note, Observed, POLL, Primary, ROLLOUT_ABORTED, ROLLOUT_PROMOTED, ROLLOUT_STARTED,
    Request, elapsed, is_active, short,
};
use crate::api::{HealthStatusCode, RolloutPhase, RolloutStatus};

/// What a strategy decides for itself in the shared phases.
pub(super) trait Variant {
    /// `canary` or `blueGreen`, as in `status.rollout.strategy`.
    const NAME: &'static str;
    /// `status.rollout.canaryWeight` of a rollout that just started.
    const START_WEIGHT: Option<i32>;
    /// How the new version (and traffic) look while the primary takes the new template.
    fn promoting(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision;
    /// How they look while an aborted revision is held back (`None` status, set by the caller).
    fn held_back(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision;
    /// The Event note of a rollout that starts / ends promoted.
    fn started(&self, workload: &str, revision: &str) -> String;
    fn completed(&self, workload: &str, revision: &str) -> String;
    /// What an abort leaves serving, for its Event.
    fn after_abort(&self, workload: &str) -> String;
}

/// Aborts: everything back on the stable primary at once, the revision held back; the new
/// version goes as the strategy's `held_back` says (at once, or after a delay).
pub(super) fn abort<V: Variant>(
    v: &V,
    mut st: RolloutStatus,
    workload: &str,
    o: &Observed<'_>,
    reason: String,
) -> Decision {
    let took = elapsed(&o.now, st.started_at.as_ref());
    st.phase = RolloutPhase::Aborted;
    st.aborted_revision = Some(o.revision.to_string());
    st.canary_weight = st.canary_weight.map(|_| 0);
    st.step_started_at = Some(Time(o.now));
    st.message = Some(format!("rollout of {} aborted: {reason}", short(o.revision)));
    let message = st.message.clone().unwrap_or_default();
    let mut d = v.held_back(&st, o);
    d.status = Some(st);
    d.health = Some((HealthStatusCode::Degraded, message.clone()));
    d.aborted = true;
    d.finished = Some(("Aborted", took));
    d.notes.push(Note {
        warning: true,
        reason: ROLLOUT_ABORTED,
        message: format!("{message}; {}", v.after_abort(workload)),
    });
    d
}

/// How a pass opens: decided already, or on to the strategy's request handling and steps.
pub(super) enum Opening {
    Decided(Decision),
    Run {
        st: RolloutStatus,
        request: Option<Request>,
        notes: Vec<Note>,
        /// A rollout superseded by this one.
        finished: Option<(&'static str, Duration)>,
    },
}

pub(super) fn open<V: Variant>(
    v: &V,
    workload: &str,
    prev: Option<&RolloutStatus>,
    o: &Observed<'_>,
) -> Opening {
    let now = Time(o.now);
    let mut st = prev.cloned().unwrap_or_default();
    st.strategy = Some(V::NAME.into());
    let fresh_request = o.request.filter(|r| prev.and_then(|p| p.handled_request.as_deref()) != Some(*r));
    let request = fresh_request.and_then(Request::parse);
    if let Some(raw) = fresh_request {
        st.handled_request = Some(raw.to_string());
    }
    let same_template = st.template_hash.as_deref() == Some(o.template_hash);
    let wanted = o.primary.exists && o.primary_hash.is_some_and(|h| h != o.template_hash);

    // Promotion ends once the primary runs Git's template at full size.
    if st.phase == RolloutPhase::Promoting && same_template && !wanted {
        if o.primary_hash == Some(o.template_hash) && o.primary.settled_at(o.replicas) {
            let took = elapsed(&o.now, st.started_at.as_ref());
            st.phase = RolloutPhase::Completed;
            st.stable_revision = st.revision.clone();
            st.step = None;
            st.canary_weight = None;
            st.step_started_at = Some(now);
            st.message = Some(format!("promoted {}", short(o.revision)));
            let mut d = Decision::new(Primary::AsGit, Canary::Absent, Some(st));
            d.finished = Some(("Succeeded", took));
            d.notes.push(Note {
                warning: false,
                reason: ROLLOUT_PROMOTED,
                message: v.completed(workload, o.revision),
            });
            return Opening::Decided(d);
        }
        st.message = Some(format!("promoting: Deployment {workload} is rolling out {}", short(o.revision)));
        let mut d = v.promoting(&st, o);
        d.health = Some((HealthStatusCode::Progressing, st.message.clone().unwrap_or_default()));
        d.status = Some(st);
        d.requeue = Some(POLL);
        return Opening::Decided(d);
    }

    if !wanted {
        // The primary runs Git's template (or there is no primary yet): nothing to roll out.
        let mut d = Decision::new(Primary::AsGit, Canary::Absent, None);
        if prev.is_none() {
            return Opening::Decided(d);
        }
        if is_active(st.phase) || st.phase == RolloutPhase::Aborted {
            // Git went back to what the primary runs: the rollout (or the abort) is moot.
            if is_active(st.phase) {
                d.finished = Some(("Superseded", elapsed(&o.now, st.started_at.as_ref())));
            }
            st.phase = RolloutPhase::Idle;
            st.step = None;
            st.canary_weight = None;
            st.message =
                Some(format!("Git's Deployment {workload} matches the one running; nothing to roll out"));
        }
        d.status = Some(st);
        return Opening::Decided(d);
    }

    let held_back = st.phase == RolloutPhase::Aborted && st.aborted_revision.as_deref() == Some(o.revision);
    if held_back && request != Some(Request::Retry) {
        let message = st.message.clone().unwrap_or_else(|| "rollout aborted".into());
        let mut d = v.held_back(&st, o);
        d.status = Some(st);
        d.health = Some((
            HealthStatusCode::Degraded,
            format!(
                "{message}; {} is not rolled out again by itself: push a new commit or run `ferry retry`",
                short(o.revision)
            ),
        ));
        d.aborted = true;
        return Opening::Decided(d);
    }

    let mut notes = vec![];
    let mut finished = None;
    if !is_active(st.phase) || !same_template || held_back {
        if is_active(st.phase) {
            finished = Some(("Superseded", elapsed(&o.now, st.started_at.as_ref())));
        }
        let stable = st.stable_revision.clone().or(o.last_applied_revision.map(str::to_string));
        st = RolloutStatus {
            phase: RolloutPhase::Progressing,
            strategy: st.strategy.clone(),
            revision: Some(o.revision.to_string()),
            template_hash: Some(o.template_hash.to_string()),
            stable_revision: stable,
            step: Some(0),
            canary_weight: V::START_WEIGHT,
            started_at: Some(now.clone()),
            step_started_at: Some(now),
            handled_request: st.handled_request.clone(),
            ..Default::default()
        };
        notes.push(Note {
            warning: false,
            reason: ROLLOUT_STARTED,
            message: v.started(workload, o.revision),
        });
    }
    Opening::Run { st, request, notes, finished }
}
