//! The canary state machine: from the previous `status.rollout`, what the cluster shows and
//! what a person asked for, the next status and what the primary and canary Deployments
//! should be. Everything it needs to resume lives in the status, so a restarted ferry (or
//! another replica) continues exactly where the last one stopped; every output is a desired
//! state, so applying it twice changes nothing.
//!
//! Traffic is split by replica ratio: the canary's pods carry every label the primary's Service
//! selects, so at weight `w` the canary runs `ceil(replicas * w / 100)` pods and the primary
//! the rest. Under Gateway API routing the HTTPRoute's weights split it instead, and the
//! primary keeps every replica.
//!
//! A pass opens as every strategy does (`lifecycle`), acts on a person's request, measures the
//! background analysis, then walks the steps from the current one until one has to wait.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    analysis,
    analysis_run::{next_due, summarize},
    handover,
    lifecycle::{Flow, Opening, Rollout, Variant, Wait, enter},
    types::{
        Canary, DEFAULT_PROGRESS_DEADLINE, Decision, Measure, Observed, POLL, Primary, ROLLOUT_STEP, Request,
        elapsed, short,
    },
    workload::canary_replicas,
};
use crate::{
    api::{Analysis, CanaryStep, CanaryStrategy, HealthStatusCode, Pause, RolloutPhase, RolloutStatus},
    duration,
};

const DEFAULT_ABORT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

/// Whether traffic is split by HTTPRoute weights rather than by replicas.
fn by_gateway(spec: &CanaryStrategy) -> bool {
    spec.traffic_routing.as_ref().is_some_and(|t| t.gateway_api.is_some())
}

/// How long an aborted canary keeps running: only under Gateway API routing, where it gets no
/// traffic once the route is back to stable.
fn abort_delay(spec: &CanaryStrategy) -> Duration {
    if !by_gateway(spec) {
        return Duration::ZERO;
    }
    spec.abort_scale_down_delay.as_deref().and_then(duration::parse).unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY)
}

/// What differs for a canary in the phases every strategy shares.
impl Variant for CanaryStrategy {
    const NAME: &'static str = "canary";
    const START_WEIGHT: Option<i32> = Some(0);

    fn promoting(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let waited = elapsed(&o.now, st.step_started_at.as_ref());
        if let Some(d) = (!by_gateway(self)).then(|| handover::after_template(o, waited)).flatten() {
            return d;
        }
        let canary =
            if o.canary.exists { Canary::Present { replicas: o.canary.replicas } } else { Canary::Absent };
        let mut d = Decision::new(Primary::AsGit, canary, None);
        d.route_weight = st.canary_weight.filter(|_| by_gateway(self));
        d
    }

    /// All traffic and replicas back on the stable primary at once; the canary removed (after
    /// the abort delay under Gateway API routing).
    fn held_back(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let left = abort_delay(self).saturating_sub(elapsed(&o.now, st.step_started_at.as_ref()));
        let canary = if o.canary.exists && !left.is_zero() {
            Canary::Present { replicas: o.canary.replicas }
        } else {
            Canary::Absent
        };
        let mut d = Decision::new(Primary::Hold { replicas: o.replicas }, canary, None);
        d.requeue = (!left.is_zero()).then_some(left);
        d
    }

    fn started(&self, workload: &str, revision: &str) -> String {
        format!("rolling out {} to Deployment {workload} as a canary", short(revision))
    }

    fn completed(&self, workload: &str, revision: &str) -> String {
        format!("Deployment {workload} runs {} on every replica; canary removed", short(revision))
    }

    fn after_abort(&self, workload: &str) -> String {
        format!("Deployment {workload} keeps the stable version")
    }
}

/// The next pass of a canary rollout.
pub async fn advance(
    spec: &CanaryStrategy,
    workload: &str,
    prev: Option<&RolloutStatus>,
    o: &Observed<'_>,
    measure: &impl Measure,
) -> Decision {
    let mut rollout = Rollout::new(spec, workload, o, measure);
    let (st, request) = match rollout.open(prev) {
        Opening::Decided(d) => return d,
        Opening::Run { st, request } => (st, request),
    };
    let d = match request {
        Some(Request::Abort) => rollout.abort(st, "aborted by `ferry abort`".into()),
        Some(Request::PromoteFull) => rollout.promote_full(st),
        Some(Request::Promote) => {
            let st = rollout.promote(st);
            rollout.run(st).await
        }
        None | Some(Request::Retry) => rollout.run(st).await,
    };
    rollout.conclude(d)
}

/// What the background analysis asks of this pass.
enum Background {
    /// Still running: measure again within this time, whatever the step waits for.
    Due(Duration),
    /// Passed: nothing more to measure.
    Passed,
    /// Inconclusive: pause, with this message, until a person promotes or aborts.
    Inconclusive(String),
    /// Failed or errored: abort, with this message.
    Failed(String),
}

/// Where the canary stands at one step: its weight and the Deployments' sizes there.
struct At {
    index: i32,
    /// `step 2/5`, for the messages.
    label: String,
    weight: i32,
    canary_count: i32,
    primary: Primary,
    canary: Canary,
    /// The canary runs Git's template at its size for this weight.
    ready: bool,
    /// Since the step started.
    waited: Duration,
    gateway: bool,
    /// The primary's empty ReplicaSets go this pass (a step with the canary alone, ahead of
    /// its hand-over).
    release: bool,
}

impl At {
    /// The step's Deployments, and under Gateway API routing the route's weight.
    fn holding(&self) -> Decision {
        let mut d = Decision::new(self.primary, self.canary, None);
        d.route_weight = self.gateway.then_some(self.weight);
        d.release_primary_sets = self.release;
        d
    }
}

impl<M: Measure> Rollout<'_, CanaryStrategy, M> {
    /// `ferry promote --full`: the primary takes Git's template now; the canary keeps serving
    /// at its size (and weight) until it has.
    fn promote_full(&mut self, mut st: RolloutStatus) -> Decision {
        self.promote_fully(&mut st);
        let o = self.o;
        let replicas = if o.canary.exists { o.canary.replicas } else { 0 };
        let weight = st.canary_weight.filter(|_| by_gateway(self.spec));
        let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas }, Some(st));
        d.route_weight = weight;
        d.requeue = Some(POLL);
        d
    }

    /// `ferry promote`: resumes a background analysis paused as inconclusive (a fresh run; the
    /// step stays), or else finishes the current step.
    fn promote(&mut self, mut st: RolloutStatus) -> RolloutStatus {
        let background_paused = st
            .background_analysis
            .as_ref()
            .is_some_and(|run| run.phase == analysis::Phase::Inconclusive.as_str());
        if background_paused {
            st.background_analysis = None;
            st.phase = RolloutPhase::Progressing;
            self.note(ROLLOUT_STEP, "background analysis resumed by request".into());
        } else {
            let step = st.step.unwrap_or(0);
            self.note(
                ROLLOUT_STEP,
                format!("step {} of {} promoted by request", step + 1, self.spec.steps.len()),
            );
            enter(&mut st, step + 1, &Time(self.o.now));
        }
        st
    }

    /// Runs steps from the current one until one has to wait.
    async fn run(&mut self, mut st: RolloutStatus) -> Decision {
        let spec = self.spec;
        let now = Time(self.o.now);
        let total = spec.steps.len() as i32;
        let (mut paused, mut due) = (None, None);
        if let Some(background) = &spec.analysis
            && st.step.unwrap_or(0) < total
        {
            match self.background(&mut st, background).await {
                Background::Failed(message) => return self.abort(st, message),
                Background::Inconclusive(message) => paused = Some(message),
                Background::Due(after) => due = Some(after),
                Background::Passed => {}
            }
        }
        loop {
            let index = st.step.unwrap_or(0).max(0);
            if index >= total {
                return self.promoting(st);
            }
            let at = self.at(&mut st, index);
            let flow = match paused.take() {
                Some(message) => Flow::Decided(self.pause(st, &at, message, true)),
                None => self.step(st, &at).await,
            };
            match flow {
                Flow::Next(next) => {
                    st = next;
                    enter(&mut st, index + 1, &now);
                }
                Flow::Decided(mut d) => {
                    // The background analysis is measured again when due, whatever the step
                    // waits for.
                    if let Some(due) = due {
                        d.requeue = Some(d.requeue.map_or(due, |r| r.min(due)));
                    }
                    return d;
                }
            }
        }
    }

    /// Measures the background analysis (on every pass until promotion) and keeps its run in
    /// the status.
    async fn background(&mut self, st: &mut RolloutStatus, analysis: &Analysis) -> Background {
        let run = self.analyse(st.background_analysis.take(), -1, analysis).await;
        let summary = summarize(&run);
        let asks = match run.phase.as_str() {
            "Failed" | "Error" => {
                Background::Failed(format!("background analysis {} ({summary})", run.phase.to_lowercase()))
            }
            "Inconclusive" => Background::Inconclusive(format!(
                "background analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
            )),
            "Running" => Background::Due(next_due(&run, &analysis.metrics, &self.o.now)),
            _ => Background::Passed,
        };
        st.background_analysis = Some(run);
        asks
    }

    /// Every step passed: the canary's ReplicaSet is handed to the primary (`handover`), or the
    /// primary takes Git's template while the canary keeps serving. The background analysis is
    /// not measured any more, so its due time does not set the requeue.
    fn promoting(&self, mut st: RolloutStatus) -> Decision {
        let o = self.o;
        st.phase = RolloutPhase::Promoting;
        st.message = Some(format!("promoting {}: every step passed", short(o.revision)));
        let waited = elapsed(&o.now, st.step_started_at.as_ref());
        let handed = (!by_gateway(self.spec)).then(|| handover::before_template(o, waited)).flatten();
        let mut d = handed.unwrap_or_else(|| {
            let replicas = if o.canary.exists { o.canary.replicas } else { 0 };
            let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas }, None);
            d.route_weight = st.canary_weight.filter(|_| by_gateway(self.spec));
            d
        });
        d.status = Some(st.clone());
        d.health = Some((HealthStatusCode::Progressing, st.message.unwrap_or_default()));
        d.requeue = d.requeue.or(Some(POLL));
        d
    }

    /// Where the canary stands at step `index`; the status takes the step's weight.
    fn at(&self, st: &mut RolloutStatus, index: i32) -> At {
        let (spec, o) = (self.spec, self.o);
        let gateway = by_gateway(spec);
        let weight = weight_at(spec, index).unwrap_or(st.canary_weight.unwrap_or(0));
        st.canary_weight = Some(weight);
        let canary_count = canary_replicas(o.replicas, weight);
        // Under Gateway API routing the primary keeps every replica: the route splits traffic.
        let primary_count = if gateway { o.replicas } else { (o.replicas - canary_count).max(0) };
        // The canary alone (`setWeight: 100`): the primary is drained for the hand-over already.
        let (primary, release) = match primary_count {
            0 if !gateway => handover::alone(o),
            _ => (Primary::Hold { replicas: primary_count }, false),
        };
        At {
            index,
            label: format!("step {}/{}", index + 1, spec.steps.len()),
            weight,
            canary_count,
            primary,
            canary: Canary::Present { replicas: canary_count },
            ready: o.canary_hash == Some(o.template_hash) && o.canary.settled_at(canary_count),
            waited: elapsed(&o.now, st.step_started_at.as_ref()),
            gateway,
            release,
        }
    }

    /// One step: on to the next, or where this pass stops. Until the canary is up at the
    /// step's size only an analysis step goes on (measuring the canary as it comes up).
    async fn step(&mut self, st: RolloutStatus, at: &At) -> Flow {
        let spec = self.spec;
        let step = &spec.steps[at.index as usize];
        if !at.ready && step.analysis.is_none() {
            return Flow::Decided(self.await_canary(st, at));
        }
        if step.set_weight.is_some() {
            let o = self.o;
            let message = format!(
                "{}: canary weight {}% ({} of {} replicas)",
                at.label, at.weight, at.canary_count, o.replicas
            );
            self.note(ROLLOUT_STEP, message);
            return Flow::Next(st);
        }
        if let Some(pause) = &step.pause {
            return self.pause_step(st, at, pause);
        }
        match &step.analysis {
            Some(analysis) => self.analysis_step(st, at, analysis).await,
            // The schema allows exactly one of the three; an empty step is skipped.
            None => Flow::Next(st),
        }
    }

    /// The canary is not up at the step's size yet: wait for it, up to the progress deadline.
    fn await_canary(&self, st: RolloutStatus, at: &At) -> Decision {
        let deadline = self
            .spec
            .progress_deadline
            .as_deref()
            .and_then(duration::parse)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        if at.waited > deadline {
            let message = format!(
                "the canary of Deployment {} did not reach {} available replicas within {}s",
                self.workload,
                at.canary_count,
                deadline.as_secs()
            );
            return self.abort(st, message);
        }
        let message = format!(
            "{}: weight {}%, waiting for {} canary replicas to be available",
            at.label, at.weight, at.canary_count
        );
        Wait::timed(RolloutPhase::Progressing, message, POLL).onto(st, at.holding())
    }

    /// A pause step: for its duration, or for a person when it has none.
    fn pause_step(&mut self, st: RolloutStatus, at: &At, pause: &Pause) -> Flow {
        match pause.duration.as_deref().and_then(duration::parse) {
            Some(length) if at.waited >= length => Flow::Next(st),
            Some(length) => {
                let left = length - at.waited;
                let message =
                    format!("{}: weight {}%, pausing for {}s more", at.label, at.weight, left.as_secs());
                Flow::Decided(Wait::timed(RolloutPhase::Progressing, message, left).onto(st, at.holding()))
            }
            None => {
                let message = format!(
                    "{}: weight {}%, paused until `ferry promote` (or `ferry abort`)",
                    at.label, at.weight
                );
                Flow::Decided(self.pause(st, at, message, false))
            }
        }
    }

    /// An analysis step: on when it passes, abort when it fails, pause when inconclusive,
    /// else look again when the next measurement is due.
    async fn analysis_step(&mut self, mut st: RolloutStatus, at: &At, analysis: &Analysis) -> Flow {
        let run = self.analyse(st.analysis.take(), at.index, analysis).await;
        let phase = run.phase.clone();
        let summary = summarize(&run);
        let next = next_due(&run, &analysis.metrics, &self.o.now);
        st.analysis = Some(run);
        let label = &at.label;
        match phase.as_str() {
            "Successful" => {
                self.note(ROLLOUT_STEP, format!("{label}: analysis passed ({summary})"));
                Flow::Next(st)
            }
            "Failed" | "Error" => {
                let message = format!("{label}: analysis {} ({summary})", phase.to_lowercase());
                Flow::Decided(self.abort(st, message))
            }
            "Inconclusive" => {
                let message = format!(
                    "{label}: analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
                );
                Flow::Decided(self.pause(st, at, message, true))
            }
            _ => {
                let message = format!("{label}: weight {}%, analysing ({summary})", at.weight);
                Flow::Decided(Wait::timed(RolloutPhase::Analyzing, message, next).onto(st, at.holding()))
            }
        }
    }

    /// Paused at the step until a person promotes or aborts; `warning`: something went wrong
    /// (an inconclusive analysis), rather than a pause the steps ask for.
    fn pause(&mut self, st: RolloutStatus, at: &At, message: String, warning: bool) -> Decision {
        self.note_pause(&st, warning, &message);
        Wait::paused(message).onto(st, at.holding())
    }
}

/// The weight in force at step `index`: the last `setWeight` at or before it.
fn weight_at(spec: &CanaryStrategy, index: i32) -> Option<i32> {
    spec.steps.iter().take(index as usize + 1).filter_map(|s: &CanaryStep| s.set_weight).next_back()
}

#[cfg(test)]
mod tests {
    use std::{future::Future, sync::Mutex};

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::{
        api::AnalysisMetric,
        rollout::{
            analysis::Verdict,
            prometheus::QueryError,
            types::{MeasureError, ROLLOUT_ABORTED, ROLLOUT_STARTED, Taken},
            workload::Availability,
        },
    };

    struct Script(Mutex<Vec<Taken>>);

    impl Measure for Script {
        fn measure(&self, _metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send {
            let next = self.0.lock().unwrap().pop().unwrap_or(Err(MeasureError::NoAddress));
            async move { next }
        }
    }

    /// A query Prometheus did not answer in time.
    fn unanswered() -> MeasureError {
        QueryError::Timeout { base: "http://prometheus:9090".into(), timeout: Duration::from_secs(10) }.into()
    }

    fn script(values: &[Taken]) -> Script {
        Script(Mutex::new(values.iter().rev().cloned().collect()))
    }

    fn spec() -> CanaryStrategy {
        serde_json::from_value(serde_json::json!({
            "workload": {"name": "shop"},
            "steps": [
                {"setWeight": 20},
                {"pause": {}},
                {"analysis": {"metrics": [{"name": "errors", "prometheus": {"query": "q"},
                                           "failureCondition": "result > 0.05", "successCondition": "result <= 0.05",
                                           "interval": "10s", "count": 2}]}},
                {"setWeight": 50},
                {"pause": {"duration": "30s"}}
            ]
        }))
        .unwrap()
    }

    const REV: &str = "main@sha1:2222222222222222222222222222222222222222";

    fn settled(replicas: i32) -> Availability {
        Availability::settled(replicas)
    }

    fn observed(at_secs: i64, canary: Availability, request: Option<&'static str>) -> Observed<'static> {
        Observed {
            revision: REV,
            template_hash: "new",
            replicas: 5,
            primary_hash: Some("old"),
            primary: settled(5),
            canary,
            canary_hash: canary.exists.then_some("new"),
            last_applied_revision: Some("main@sha1:1111111111111111111111111111111111111111"),
            request,
            handover: false,
            primary_sets: None,
            now: Timestamp::from_second(1_800_000_000 + at_secs).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_canary_walks_its_steps_and_waits_for_a_person_at_an_empty_pause() {
        let spec = spec();
        let none = script(&[]);
        let d = advance(&spec, "shop", None, &observed(0, Availability::default(), None), &none).await;
        assert_eq!((d.primary, d.canary), (Primary::Hold { replicas: 4 }, Canary::Present { replicas: 1 }));
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step, st.canary_weight), (RolloutPhase::Progressing, Some(0), Some(20)));
        assert_eq!(st.stable_revision.as_deref(), Some("main@sha1:1111111111111111111111111111111111111111"));
        assert_eq!(d.notes[0].reason, ROLLOUT_STARTED);

        // The canary is up: step 1 done, then the empty pause holds.
        let d = advance(&spec, "shop", Some(&st), &observed(5, settled(1), None), &none).await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step), (RolloutPhase::Paused, Some(1)));
        assert_eq!(d.health.unwrap().0, HealthStatusCode::Suspended);
        assert_eq!(d.requeue, None);
        // Again without a request: nothing moves, no new Event.
        let again = advance(&spec, "shop", Some(&st), &observed(50, settled(1), None), &none).await;
        assert_eq!(again.status.as_ref().unwrap().step, Some(1));
        assert!(again.notes.is_empty());

        // `ferry promote`: on to the analysis, whose first measurement is taken at once.
        let measure = script(&[Ok(Some(0.01))]);
        let d =
            advance(&spec, "shop", Some(&st), &observed(60, settled(1), Some("promote@t1")), &measure).await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step), (RolloutPhase::Analyzing, Some(2)));
        assert_eq!(st.handled_request.as_deref(), Some("promote@t1"));
        assert_eq!(d.measured, vec![Verdict::Successful]);
        assert_eq!(d.requeue, Some(Duration::from_secs(10)));
        // The same request seen again is not acted on twice; the next measurement is not due yet.
        let d =
            advance(&spec, "shop", Some(&st), &observed(65, settled(1), Some("promote@t1")), &measure).await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step), (RolloutPhase::Analyzing, Some(2)));
        assert!(d.measured.is_empty());
        // Second measurement passes: weight 50 with 3 canary pods.
        let measure = script(&[Ok(Some(0.0))]);
        let d = advance(&spec, "shop", Some(&st), &observed(71, settled(1), None), &measure).await;
        assert_eq!((d.primary, d.canary), (Primary::Hold { replicas: 2 }, Canary::Present { replicas: 3 }));
        let st = d.status.unwrap();
        assert_eq!((st.step, st.canary_weight), (Some(3), Some(50)));
        assert_eq!(st.analysis.as_ref().unwrap().phase, "Successful");
        // Canary at 3: step 4 pauses 30s, then promotion.
        let d = advance(&spec, "shop", Some(&st), &observed(80, settled(3), None), &none).await;
        let st = d.status.unwrap();
        assert_eq!(st.step, Some(4));
        assert_eq!(d.requeue, Some(Duration::from_secs(30)));
        let d = advance(&spec, "shop", Some(&st), &observed(111, settled(3), None), &none).await;
        assert_eq!((d.primary, d.canary), (Primary::AsGit, Canary::Present { replicas: 3 }));
        let st = d.status.unwrap();
        assert_eq!(st.phase, RolloutPhase::Promoting);

        // The primary now runs the new template at full size: done.
        let mut o = observed(120, settled(3), None);
        o.primary_hash = Some("new");
        let d = advance(&spec, "shop", Some(&st), &o, &none).await;
        assert_eq!((d.primary, d.canary), (Primary::AsGit, Canary::Absent));
        let st = d.status.unwrap();
        assert_eq!(st.phase, RolloutPhase::Completed);
        assert_eq!(st.stable_revision.as_deref(), Some(REV));
        assert_eq!(d.finished, Some(("Succeeded", Duration::from_secs(120))));
        // Steady state afterwards: the same status, nothing to do.
        let d2 = advance(&spec, "shop", Some(&st), &o, &none).await;
        assert_eq!(d2.status.as_ref(), Some(&st));
        assert_eq!((d2.primary, d2.canary, d2.finished), (Primary::AsGit, Canary::Absent, None));
    }

    #[tokio::test]
    async fn failed_analysis_aborts_and_the_revision_is_held_back_until_retry() {
        let spec = spec();
        let mut st = RolloutStatus {
            phase: RolloutPhase::Analyzing,
            revision: Some(REV.into()),
            template_hash: Some("new".into()),
            step: Some(2),
            canary_weight: Some(20),
            started_at: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
            ..Default::default()
        };
        st.step_started_at = st.started_at.clone();
        let d = advance(&spec, "shop", Some(&st), &observed(30, settled(1), None), &script(&[Ok(Some(0.5))]))
            .await;
        assert_eq!((d.primary, d.canary), (Primary::Hold { replicas: 5 }, Canary::Absent));
        assert!(d.aborted);
        assert_eq!(d.finished, Some(("Aborted", Duration::from_secs(30))));
        assert_eq!(d.health.as_ref().unwrap().0, HealthStatusCode::Degraded);
        assert!(d.notes.iter().any(|n| n.warning && n.reason == ROLLOUT_ABORTED), "{:?}", d.notes);
        let st = d.status.unwrap();
        assert_eq!(st.aborted_revision.as_deref(), Some(REV));
        assert!(st.message.as_ref().unwrap().contains("errors: 1 failed, last 0.5"), "{:?}", st.message);

        // Later passes keep it held back, without new Events.
        let d =
            advance(&spec, "shop", Some(&st), &observed(300, Availability::default(), None), &script(&[]))
                .await;
        assert_eq!((d.primary, d.canary), (Primary::Hold { replicas: 5 }, Canary::Absent));
        assert!(d.notes.is_empty() && d.aborted);
        assert_eq!(d.status.as_ref(), Some(&st));

        // `ferry retry` starts over.
        let d = advance(
            &spec,
            "shop",
            Some(&st),
            &observed(400, Availability::default(), Some("retry@t2")),
            &script(&[]),
        )
        .await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step, st.aborted_revision), (RolloutPhase::Progressing, Some(0), None));
        assert_eq!(d.canary, Canary::Present { replicas: 1 });
    }

    #[tokio::test]
    async fn no_data_is_inconclusive_and_pauses_and_abort_is_obeyed() {
        let spec = spec();
        let st = RolloutStatus {
            phase: RolloutPhase::Analyzing,
            revision: Some(REV.into()),
            template_hash: Some("new".into()),
            step: Some(2),
            canary_weight: Some(20),
            ..Default::default()
        };
        let d =
            advance(&spec, "shop", Some(&st), &observed(30, settled(1), None), &script(&[Ok(None)])).await;
        let st = d.status.unwrap();
        assert_eq!(st.phase, RolloutPhase::Paused);
        assert_eq!(st.analysis.as_ref().unwrap().phase, "Inconclusive");
        assert_eq!(st.analysis.as_ref().unwrap().measurements[0].message.as_deref(), Some("no data"));
        assert_eq!(d.canary, Canary::Present { replicas: 1 });
        let d = advance(&spec, "shop", Some(&st), &observed(40, settled(1), Some("abort@t3")), &script(&[]))
            .await;
        assert_eq!(d.status.unwrap().phase, RolloutPhase::Aborted);
        assert_eq!(d.canary, Canary::Absent);
    }

    #[tokio::test]
    async fn query_errors_are_retried_up_to_the_limit() {
        let spec = spec();
        let mut st = Some(RolloutStatus {
            phase: RolloutPhase::Analyzing,
            revision: Some(REV.into()),
            template_hash: Some("new".into()),
            step: Some(2),
            canary_weight: Some(20),
            ..Default::default()
        });
        // Default consecutiveErrorLimit 4: the fifth error in a row aborts.
        for i in 0..5 {
            let d = advance(
                &spec,
                "shop",
                st.as_ref(),
                &observed(i * 10, settled(1), None),
                &script(&[Err(unanswered())]),
            )
            .await;
            let phase = d.status.as_ref().unwrap().phase;
            assert_eq!(
                phase,
                if i < 4 { RolloutPhase::Analyzing } else { RolloutPhase::Aborted },
                "error {i}"
            );
            st = d.status;
        }
    }

    #[tokio::test]
    async fn a_new_template_mid_rollout_starts_over_and_no_strategy_work_without_a_change() {
        let spec = spec();
        let st = RolloutStatus {
            phase: RolloutPhase::Paused,
            revision: Some(REV.into()),
            template_hash: Some("older".into()),
            step: Some(1),
            canary_weight: Some(20),
            started_at: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
            ..Default::default()
        };
        let mut o = observed(10, settled(1), None);
        o.canary_hash = Some("older");
        let d = advance(&spec, "shop", Some(&st), &o, &script(&[])).await;
        assert_eq!(d.canary, Canary::Present { replicas: 1 }, "the canary gets the new template");
        let next = d.status.unwrap();
        assert_eq!((next.step, next.template_hash.as_deref()), (Some(0), Some("new")));
        assert_eq!(d.finished.map(|f| f.0), Some("Superseded"));

        let mut o = observed(0, Availability::default(), None);
        o.primary_hash = Some("new");
        let d = advance(&spec, "shop", None, &o, &script(&[])).await;
        assert_eq!(d, Decision::new(Primary::AsGit, Canary::Absent, None));
        // A first sync (no primary yet) is no rollout either.
        let mut o = observed(0, Availability::default(), None);
        o.primary = Availability::default();
        o.primary_hash = None;
        assert_eq!(advance(&spec, "shop", None, &o, &script(&[])).await.status, None);
    }

    #[tokio::test]
    async fn a_failing_background_analysis_aborts_at_any_step() {
        let mut spec = spec();
        spec.analysis = Some(
            serde_json::from_value(serde_json::json!({"metrics": [{"name": "latency",
                "prometheus": {"query": "q"}, "interval": "5s", "count": 100, "failureCondition": "result > 1"}]}))
            .unwrap(),
        );
        let d = advance(
            &spec,
            "shop",
            None,
            &observed(0, Availability::default(), None),
            &script(&[Ok(Some(0.2))]),
        )
        .await;
        let st = d.status.unwrap();
        assert_eq!(st.background_analysis.as_ref().unwrap().metrics[0].successful, 1);
        assert_eq!(d.requeue, Some(POLL), "the canary wait is sooner than the next measurement");
        // Paused at step 2 the background analysis still measures, and its failure aborts.
        let d = advance(&spec, "shop", Some(&st), &observed(5, settled(1), None), &script(&[Ok(Some(0.3))]))
            .await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step), (RolloutPhase::Paused, Some(1)));
        assert_eq!(
            d.requeue,
            Some(Duration::from_secs(5)),
            "paused, but the background analysis is due again"
        );
        let d = advance(&spec, "shop", Some(&st), &observed(10, settled(1), None), &script(&[Ok(Some(2.0))]))
            .await;
        let st = d.status.unwrap();
        assert_eq!(st.phase, RolloutPhase::Aborted);
        assert!(st.message.unwrap().contains("background analysis failed"));
        assert_eq!(d.canary, Canary::Absent);
    }

    #[test]
    fn requests_parse_by_verb() {
        assert_eq!(Request::parse("promote@2026-01-01T00:00:00Z"), Some(Request::Promote));
        assert_eq!(Request::parse("promote-full@x"), Some(Request::PromoteFull));
        assert_eq!(Request::parse("abort@x"), Some(Request::Abort));
        assert_eq!(Request::parse("retry@x"), Some(Request::Retry));
        assert_eq!(Request::parse("restart@x"), None);
        assert_eq!(short(REV), "main@2222222");
    }
}
