//! What every strategy does around its steps: reading a person's request, finishing a
//! promotion, standing down when Git matches the primary again, holding back an aborted
//! revision, starting and aborting a rollout; and the bookkeeping of one pass through the steps
//! ([`Rollout`]: the Events and measurements gathered on the way, [`Wait`]: where a step stops).
//! The strategies (`canary`, `blue_green`) say only what differs: how the new version and the
//! traffic look while promotion finishes or after an abort, and what their steps are.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    analysis::Verdict,
    analysis_run::{measure_due, run_of},
    types::{
        Canary, Decision, Measure, Note, Observed, POLL, Primary, ROLLOUT_ABORTED, ROLLOUT_PAUSED,
        ROLLOUT_PROMOTED, ROLLOUT_STARTED, Request, elapsed, is_active, short,
    },
};
use crate::api::{Analysis, AnalysisStatus, HealthStatusCode, RolloutPhase, RolloutStatus};

/// What a strategy decides for itself in the shared phases. Implemented by the strategy's spec.
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

/// One pass of a rollout: what it reads (the strategy's spec, the workload's name, what the
/// cluster shows, where measurements come from) and what it gathers on the way, which the
/// pass's decision carries at the end ([`Rollout::conclude`]).
pub(super) struct Rollout<'a, S, M> {
    pub spec: &'a S,
    pub workload: &'a str,
    pub o: &'a Observed<'a>,
    measure: &'a M,
    /// Events of the opening and of the steps passed, before the decision's own.
    notes: Vec<Note>,
    /// Verdicts of the measurements taken.
    measured: Vec<Verdict>,
    /// A rollout this one superseded: its result and how long it ran.
    superseded: Option<(&'static str, Duration)>,
}

/// How a pass opens: decided already, or on to the strategy's request handling and steps.
pub(super) enum Opening {
    Decided(Decision),
    Run { st: RolloutStatus, request: Option<Request> },
}

/// What a step says: on to the next step (with the status as it left it), or this pass's
/// decision.
pub(super) enum Flow {
    Next(RolloutStatus),
    Decided(Decision),
}

impl<'a, S, M> Rollout<'a, S, M> {
    pub fn new(spec: &'a S, workload: &'a str, o: &'a Observed<'a>, measure: &'a M) -> Self {
        Rollout { spec, workload, o, measure, notes: vec![], measured: vec![], superseded: None }
    }

    /// An Event (not a warning).
    pub fn note(&mut self, reason: &'static str, message: String) {
        self.notes.push(Note { warning: false, reason, message });
    }

    /// The Event of a step that pauses for a person, noted only when the pause begins: a pass
    /// that finds the rollout paused already has nothing new to say.
    pub fn note_pause(&mut self, st: &RolloutStatus, warning: bool, message: &str) {
        if st.phase != RolloutPhase::Paused {
            self.notes.push(Note { warning, reason: ROLLOUT_PAUSED, message: message.to_string() });
        }
    }

    /// The pass's decision with what was gathered: the Events noted on the way before the
    /// decision's own, the measurements taken, and the superseded rollout unless the decision
    /// ends one itself.
    pub fn conclude(self, mut d: Decision) -> Decision {
        let mut notes = self.notes;
        notes.append(&mut d.notes);
        d.notes = notes;
        d.measured = self.measured;
        d.finished = d.finished.or(self.superseded);
        d
    }
}

impl<S, M: Measure> Rollout<'_, S, M> {
    /// Takes the measurements of step `index`'s analysis that are due (`-1`: the background
    /// analysis) and judges its run: the one in `prev` if it is that step's, else a fresh one.
    pub async fn analyse(
        &mut self,
        prev: Option<AnalysisStatus>,
        index: i32,
        analysis: &Analysis,
    ) -> AnalysisStatus {
        let mut run = run_of(prev, index, analysis);
        let verdicts = measure_due(&mut run, analysis, self.o.now, self.measure).await;
        self.measured.extend(verdicts);
        run
    }
}

impl<S: Variant, M> Rollout<'_, S, M> {
    /// Opens a pass from the previous status: the phases every strategy shares decide it, or
    /// it goes on to the strategy's steps with the status to run them from and a fresh request.
    pub fn open(&mut self, prev: Option<&RolloutStatus>) -> Opening {
        let o = self.o;
        let mut st = prev.cloned().unwrap_or_default();
        st.strategy = Some(S::NAME.into());
        // A request is acted on once: its value is remembered as handled.
        let fresh_request = o.request.filter(|r| prev.and_then(|p| p.handled_request.as_deref()) != Some(*r));
        let request = fresh_request.and_then(Request::parse);
        if let Some(raw) = fresh_request {
            st.handled_request = Some(raw.to_string());
        }
        let same_template = st.template_hash.as_deref() == Some(o.template_hash);
        let wanted = o.primary.exists && o.primary_hash.is_some_and(|h| h != o.template_hash);

        if st.phase == RolloutPhase::Promoting && same_template && !wanted {
            return Opening::Decided(self.promotion(st));
        }
        if !wanted {
            // The primary runs Git's template (or there is no primary yet): nothing to roll out,
            // and nothing to say of a rollout that never ran.
            return Opening::Decided(match prev {
                None => Decision::new(Primary::AsGit, Canary::Absent, None),
                Some(_) => self.stand_down(st),
            });
        }
        let held_back =
            st.phase == RolloutPhase::Aborted && st.aborted_revision.as_deref() == Some(o.revision);
        if held_back && request != Some(Request::Retry) {
            return Opening::Decided(self.hold_back(st));
        }
        if !is_active(st.phase) || !same_template || held_back {
            st = self.start(st);
        }
        Opening::Run { st, request }
    }

    /// Promotion ends once the primary runs Git's template at full size; until then the
    /// strategy keeps the new version serving.
    fn promotion(&self, mut st: RolloutStatus) -> Decision {
        let o = self.o;
        if o.primary_hash == Some(o.template_hash) && o.primary.settled_at(o.replicas) {
            let took = elapsed(&o.now, st.started_at.as_ref());
            st.phase = RolloutPhase::Completed;
            st.stable_revision = st.revision.clone();
            st.step = None;
            st.canary_weight = None;
            st.step_started_at = Some(Time(o.now));
            st.message = Some(format!("promoted {}", short(o.revision)));
            let mut d = Decision::new(Primary::AsGit, Canary::Absent, Some(st));
            d.finished = Some(("Succeeded", took));
            d.notes.push(Note {
                warning: false,
                reason: ROLLOUT_PROMOTED,
                message: self.spec.completed(self.workload, o.revision),
            });
            return d;
        }
        st.message =
            Some(format!("promoting: Deployment {} is rolling out {}", self.workload, short(o.revision)));
        let mut d = self.spec.promoting(&st, o);
        d.health = Some((HealthStatusCode::Progressing, st.message.clone().unwrap_or_default()));
        d.status = Some(st);
        d.requeue = Some(POLL);
        d
    }

    /// Git went back to what the primary runs: a rollout (or an abort) in progress is moot.
    fn stand_down(&self, mut st: RolloutStatus) -> Decision {
        let mut d = Decision::new(Primary::AsGit, Canary::Absent, None);
        if is_active(st.phase) || st.phase == RolloutPhase::Aborted {
            if is_active(st.phase) {
                d.finished = Some(("Superseded", elapsed(&self.o.now, st.started_at.as_ref())));
            }
            st.phase = RolloutPhase::Idle;
            st.step = None;
            st.canary_weight = None;
            st.message = Some(format!(
                "Git's Deployment {} matches the one running; nothing to roll out",
                self.workload
            ));
        }
        d.status = Some(st);
        d
    }

    /// An aborted revision stays held back until a new commit or `ferry retry`.
    fn hold_back(&self, st: RolloutStatus) -> Decision {
        let message = st.message.clone().unwrap_or_else(|| "rollout aborted".into());
        let mut d = self.spec.held_back(&st, self.o);
        d.status = Some(st);
        d.health = Some((
            HealthStatusCode::Degraded,
            format!(
                "{message}; {} is not rolled out again by itself: push a new commit or run `ferry retry`",
                short(self.o.revision)
            ),
        ));
        d.aborted = true;
        d
    }

    /// A rollout of Git's template starts at step 0, superseding one in progress. The stable
    /// revision is kept from the status, or is the one the primary was last synced to.
    fn start(&mut self, st: RolloutStatus) -> RolloutStatus {
        let o = self.o;
        let now = Time(o.now);
        if is_active(st.phase) {
            self.superseded = Some(("Superseded", elapsed(&o.now, st.started_at.as_ref())));
        }
        let stable = st.stable_revision.clone().or(o.last_applied_revision.map(str::to_string));
        self.notes.push(Note {
            warning: false,
            reason: ROLLOUT_STARTED,
            message: self.spec.started(self.workload, o.revision),
        });
        RolloutStatus {
            phase: RolloutPhase::Progressing,
            strategy: st.strategy.clone(),
            revision: Some(o.revision.to_string()),
            template_hash: Some(o.template_hash.to_string()),
            stable_revision: stable,
            step: Some(0),
            canary_weight: S::START_WEIGHT,
            started_at: Some(now.clone()),
            step_started_at: Some(now),
            handled_request: st.handled_request.clone(),
            ..Default::default()
        }
    }

    /// Aborts: everything back on the stable primary at once, the revision held back; the new
    /// version goes as the strategy's `held_back` says (at once, or after a delay).
    pub fn abort(&self, mut st: RolloutStatus, reason: String) -> Decision {
        let o = self.o;
        let took = elapsed(&o.now, st.started_at.as_ref());
        st.phase = RolloutPhase::Aborted;
        st.aborted_revision = Some(o.revision.to_string());
        st.canary_weight = st.canary_weight.map(|_| 0);
        st.step_started_at = Some(Time(o.now));
        st.message = Some(format!("rollout of {} aborted: {reason}", short(o.revision)));
        let message = st.message.clone().unwrap_or_default();
        let mut d = self.spec.held_back(&st, o);
        d.status = Some(st);
        d.health = Some((HealthStatusCode::Degraded, message.clone()));
        d.aborted = true;
        d.finished = Some(("Aborted", took));
        d.notes.push(Note {
            warning: true,
            reason: ROLLOUT_ABORTED,
            message: format!("{message}; {}", self.spec.after_abort(self.workload)),
        });
        d
    }

    /// `ferry promote --full`: the status and Event; the strategy says what the Deployments
    /// and traffic do.
    pub fn promote_fully(&mut self, st: &mut RolloutStatus) {
        st.phase = RolloutPhase::Promoting;
        st.message = Some("fully promoted by `ferry promote --full`".into());
        let message = format!("{} promoted past every remaining step by request", short(self.o.revision));
        self.note(ROLLOUT_PROMOTED, message);
    }
}

/// Moves to step `index`.
pub(super) fn enter(st: &mut RolloutStatus, index: i32, now: &Time) {
    st.step = Some(index);
    st.step_started_at = Some(now.clone());
    st.phase = RolloutPhase::Progressing;
}

/// Where a step stops this pass: the phase and message the status shows, and when to look
/// again.
pub(super) struct Wait {
    phase: RolloutPhase,
    message: String,
    requeue: Option<Duration>,
}

impl Wait {
    /// Paused until a person promotes or aborts: nothing to look at again by itself.
    pub fn paused(message: String) -> Wait {
        Wait { phase: RolloutPhase::Paused, message, requeue: None }
    }

    /// Showing `phase` until time passes or the cluster moves: look again `after`.
    pub fn timed(phase: RolloutPhase, message: String, after: Duration) -> Wait {
        Wait { phase, message, requeue: Some(after) }
    }

    /// The step's decision `d` (its Deployments and traffic) waiting here. The Application's
    /// health says the same: Suspended while a person must act, Progressing otherwise.
    pub fn onto(self, mut st: RolloutStatus, mut d: Decision) -> Decision {
        let health = match self.phase {
            RolloutPhase::Paused => HealthStatusCode::Suspended,
            _ => HealthStatusCode::Progressing,
        };
        st.phase = self.phase;
        st.message = Some(self.message.clone());
        d.status = Some(st);
        d.health = Some((health, self.message));
        d.requeue = self.requeue;
        d
    }
}
