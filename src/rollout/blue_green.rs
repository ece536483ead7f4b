//! The blue-green state machine. Same model as the canary (`canary.rs`): the primary keeps the
//! stable template, the new version runs as `<name>-canary`, everything lives in
//! `status.rollout`, and every output is a desired state.
//!
//! Steps, by index in `status.rollout.step`:
//!
//! 0. the new version comes up at full size; the preview Service selects it;
//! 1. pre-promotion analysis;
//! 2. the switch waits for `ferry promote` (or `autoPromotion`, after `autoPromotionSeconds`);
//! 3. the active Service selects the new version, in one update; post-promotion analysis runs
//!    (a failure switches back at once, the old version still being at full size);
//! 4. the old version stays at full size for `scaleDownDelay`;
//! 5. promotion: the primary takes the new template; once it is available the Services are back
//!    as in Git (selecting the primary) and the new-version Deployment goes.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    analysis_run::summarize,
    lifecycle::{Flow, Opening, Rollout, Variant, Wait, enter},
    types::{
        Canary, DEFAULT_PROGRESS_DEADLINE, Decision, Measure, Observed, POLL, Primary, ROLLOUT_STEP, Request,
        elapsed, short,
    },
};
use crate::{
    api::{Analysis, BlueGreenStrategy, RolloutPhase, RolloutStatus},
    duration,
};

const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
const PREVIEW: i32 = 0;
const PRE_ANALYSIS: i32 = 1;
const AWAIT_SWITCH: i32 = 2;
const SWITCHED: i32 = 3;
const SCALE_DOWN: i32 = 4;
const PROMOTE: i32 = 5;

/// What differs for blue-green in the phases every strategy shares.
impl Variant for BlueGreenStrategy {
    const NAME: &'static str = "blueGreen";
    const START_WEIGHT: Option<i32> = None;

    fn promoting(&self, _st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas: o.replicas }, None);
        (d.active_to_new, d.preview_to_new) = (true, true);
        d
    }

    /// The Services back on the primary (still the old version at full size) at once, the new
    /// version removed.
    fn held_back(&self, _st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        Decision::new(Primary::Hold { replicas: o.replicas }, Canary::Absent, None)
    }

    fn started(&self, workload: &str, revision: &str) -> String {
        format!("rolling out {} beside Deployment {workload} (blue-green)", short(revision))
    }

    fn completed(&self, workload: &str, revision: &str) -> String {
        format!("Deployment {workload} runs {}; the Services select it again", short(revision))
    }

    fn after_abort(&self, workload: &str) -> String {
        format!("the Services select Deployment {workload} (the stable version) again")
    }
}

/// The next pass of a blue-green rollout.
pub async fn advance(
    spec: &BlueGreenStrategy,
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

impl<M: Measure> Rollout<'_, BlueGreenStrategy, M> {
    /// `ferry promote --full`: both Services on the new version and the primary taking it now.
    fn promote_full(&mut self, mut st: RolloutStatus) -> Decision {
        self.promote_fully(&mut st);
        st.step = Some(PROMOTE);
        let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas: self.o.replicas }, Some(st));
        (d.active_to_new, d.preview_to_new) = (true, true);
        d.requeue = Some(POLL);
        d
    }

    /// `ferry promote`: finishes the current step (the switch, or an inconclusive analysis).
    fn promote(&mut self, mut st: RolloutStatus) -> RolloutStatus {
        let step = st.step.unwrap_or(0);
        self.note(ROLLOUT_STEP, format!("step {} promoted by request", step + 1));
        enter(&mut st, step + 1, &Time(self.o.now));
        st
    }

    /// Runs steps from the current one until one has to wait.
    async fn run(&mut self, mut st: RolloutStatus) -> Decision {
        let now = Time(self.o.now);
        loop {
            let index = st.step.unwrap_or(0).max(0);
            match self.step(st, index).await {
                Flow::Next(next) => {
                    st = next;
                    enter(&mut st, index + 1, &now);
                }
                Flow::Decided(d) => return d,
            }
        }
    }

    /// Step `index`: on to the next, or where this pass stops.
    async fn step(&mut self, st: RolloutStatus, index: i32) -> Flow {
        let spec = self.spec;
        let waited = elapsed(&self.o.now, st.step_started_at.as_ref());
        match index {
            PREVIEW => self.preview(st, waited),
            PRE_ANALYSIS => match &spec.pre_promotion_analysis {
                Some(analysis) => self.analysis_step(st, index, analysis).await,
                None => Flow::Next(st),
            },
            AWAIT_SWITCH => self.await_switch(st, waited),
            SWITCHED => match &spec.post_promotion_analysis {
                Some(analysis) => self.analysis_step(st, index, analysis).await,
                None => {
                    self.note(ROLLOUT_STEP, format!("active Service switched to {}", short(self.o.revision)));
                    Flow::Next(st)
                }
            },
            SCALE_DOWN => self.scale_down(st, waited),
            _ => Flow::Decided(self.promote_primary(st, index)),
        }
    }

    /// The Deployments and Services at step `index`: the new version at full size beside the
    /// stable primary, the preview Service on it, the active Service on it once switched, and
    /// from promotion on the primary as in Git.
    fn at(&self, index: i32) -> Decision {
        let replicas = self.o.replicas;
        let primary = if index >= PROMOTE { Primary::AsGit } else { Primary::Hold { replicas } };
        let mut d = Decision::new(primary, Canary::Present { replicas }, None);
        (d.active_to_new, d.preview_to_new) = (index >= SWITCHED, true);
        d
    }

    /// Step 0: the new version comes up at full size, within the progress deadline.
    fn preview(&self, st: RolloutStatus, waited: Duration) -> Flow {
        let o = self.o;
        if o.canary_hash == Some(o.template_hash) && o.canary.settled_at(o.replicas) {
            return Flow::Next(st);
        }
        let deadline = self
            .spec
            .progress_deadline
            .as_deref()
            .and_then(duration::parse)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        if waited > deadline {
            let message = format!(
                "the new version of Deployment {} did not reach {} available replicas within {}s",
                self.workload,
                o.replicas,
                deadline.as_secs()
            );
            return Flow::Decided(self.abort(st, message));
        }
        let message = format!("preview: waiting for {} replicas of the new version", o.replicas);
        Flow::Decided(Wait::timed(RolloutPhase::Progressing, message, POLL).onto(st, self.at(PREVIEW)))
    }

    /// Steps 1 and 3, the pre- and post-promotion analyses: on when it passes, abort (and so
    /// switch back) when it fails, pause when inconclusive.
    async fn analysis_step(&mut self, mut st: RolloutStatus, index: i32, analysis: &Analysis) -> Flow {
        let run = self.analyse(st.analysis.take(), index, analysis).await;
        let phase = run.phase.clone();
        let summary = summarize(&run);
        st.analysis = Some(run);
        let which = if index == PRE_ANALYSIS { "pre-promotion" } else { "post-promotion" };
        match phase.as_str() {
            "Successful" => {
                self.note(ROLLOUT_STEP, format!("{which} analysis passed ({summary})"));
                Flow::Next(st)
            }
            "Failed" | "Error" => {
                let message = format!("{which} analysis {} ({summary})", phase.to_lowercase());
                Flow::Decided(self.abort(st, message))
            }
            "Inconclusive" => {
                let message = format!(
                    "{which} analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
                );
                self.note_pause(&st, true, &message);
                Flow::Decided(Wait::paused(message).onto(st, self.at(index)))
            }
            _ => {
                let message = format!("{which} analysis running ({summary})");
                let wait = Wait::timed(RolloutPhase::Analyzing, message, POLL.max(Duration::from_secs(1)));
                Flow::Decided(wait.onto(st, self.at(index)))
            }
        }
    }

    /// Step 2: the switch waits for `ferry promote`, or under `autoPromotion` for
    /// `autoPromotionSeconds` (at once without them).
    fn await_switch(&mut self, st: RolloutStatus, waited: Duration) -> Flow {
        let (spec, o) = (self.spec, self.o);
        let after = spec.auto_promotion_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
        match (spec.auto_promotion, after) {
            (true, Some(after)) if waited < after => {
                let left = after - waited;
                let message = format!("previewing {}; switching in {}s", short(o.revision), left.as_secs());
                Flow::Decided(
                    Wait::timed(RolloutPhase::Progressing, message, left).onto(st, self.at(AWAIT_SWITCH)),
                )
            }
            (true, _) => Flow::Next(st),
            (false, _) => {
                let message = format!(
                    "previewing {}; the switch waits for `ferry promote` (or `ferry abort`)",
                    short(o.revision)
                );
                self.note_pause(&st, false, &message);
                Flow::Decided(Wait::paused(message).onto(st, self.at(AWAIT_SWITCH)))
            }
        }
    }

    /// Step 4: the old version stays at full size for `scaleDownDelay`, so a switch back is
    /// instant.
    fn scale_down(&self, st: RolloutStatus, waited: Duration) -> Flow {
        let delay = self
            .spec
            .scale_down_delay
            .as_deref()
            .and_then(duration::parse)
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
        if waited >= delay {
            return Flow::Next(st);
        }
        let left = delay - waited;
        let message = format!(
            "active on {}; the old version stays at full size for {}s more",
            short(self.o.revision),
            left.as_secs()
        );
        Flow::Decided(Wait::timed(RolloutPhase::Progressing, message, left).onto(st, self.at(SCALE_DOWN)))
    }

    /// Step 5: the primary takes the new version; the shared phases end the promotion once it
    /// is available.
    fn promote_primary(&self, mut st: RolloutStatus, index: i32) -> Decision {
        st.step = Some(PROMOTE);
        let message = format!(
            "promoting {}: Deployment {} takes the new version",
            short(self.o.revision),
            self.workload
        );
        Wait::timed(RolloutPhase::Promoting, message, POLL).onto(st, self.at(index))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::super::{analysis::Verdict, types::Taken, workload::Availability};
    use super::*;

    struct Fixed(Taken);

    impl Measure for Fixed {
        fn measure(
            &self,
            _m: &crate::api::AnalysisMetric,
        ) -> impl std::future::Future<Output = Taken> + Send {
            let v = self.0.clone();
            async move { v }
        }
    }

    const REV: &str = "main@sha1:2222222222222222222222222222222222222222";

    fn settled(replicas: i32) -> Availability {
        Availability::settled(replicas)
    }

    fn observed(at: i64, canary: Availability, request: Option<&'static str>) -> Observed<'static> {
        Observed {
            revision: REV,
            template_hash: "new",
            replicas: 3,
            primary_hash: Some("old"),
            primary: settled(3),
            canary,
            canary_hash: canary.exists.then_some("new"),
            last_applied_revision: None,
            request,
            handover: false,
            primary_sets: None,
            now: Timestamp::from_second(1_800_000_000 + at).unwrap(),
        }
    }

    fn spec(auto: bool) -> BlueGreenStrategy {
        serde_json::from_value(serde_json::json!({
            "workload": {"name": "shop"}, "activeService": "shop", "previewService": "shop-preview",
            "autoPromotion": auto, "scaleDownDelay": "20s",
            "postPromotionAnalysis": {"metrics": [{"name": "errors", "prometheus": {"query": "q"},
                                                   "successCondition": "result < 0.05"}]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn preview_then_switch_on_promote_then_scale_down_after_the_delay() {
        let s = spec(false);
        let ok = Fixed(Ok(Some(0.0)));
        let d = advance(&s, "shop", None, &observed(0, Availability::default(), None), &ok).await;
        assert_eq!((d.primary, d.canary), (Primary::Hold { replicas: 3 }, Canary::Present { replicas: 3 }));
        assert_eq!((d.active_to_new, d.preview_to_new), (false, true));
        let st = d.status.unwrap();
        // Up: no pre-promotion analysis, so it waits for a person.
        let d = advance(&s, "shop", Some(&st), &observed(5, settled(3), None), &ok).await;
        let st = d.status.unwrap();
        assert_eq!((st.phase, st.step), (RolloutPhase::Paused, Some(AWAIT_SWITCH)));
        assert!(!d.active_to_new);
        // Promote: switch, post analysis passes, old version kept for 20s.
        let d = advance(&s, "shop", Some(&st), &observed(10, settled(3), Some("promote@1")), &ok).await;
        assert_eq!(d.measured, vec![Verdict::Successful]);
        assert!(d.active_to_new);
        assert_eq!(d.primary, Primary::Hold { replicas: 3 });
        let st = d.status.unwrap();
        assert_eq!(st.step, Some(SCALE_DOWN));
        assert_eq!(d.requeue, Some(Duration::from_secs(20)));
        let d = advance(&s, "shop", Some(&st), &observed(31, settled(3), None), &ok).await;
        assert_eq!((d.primary, d.active_to_new), (Primary::AsGit, true));
        let st = d.status.unwrap();
        assert_eq!(st.phase, RolloutPhase::Promoting);
        let mut o = observed(40, settled(3), None);
        o.primary_hash = Some("new");
        let d = advance(&s, "shop", Some(&st), &o, &ok).await;
        assert_eq!((d.primary, d.canary, d.active_to_new), (Primary::AsGit, Canary::Absent, false));
        assert_eq!(d.status.unwrap().phase, RolloutPhase::Completed);
    }

    #[tokio::test]
    async fn a_failed_post_promotion_analysis_switches_back_at_once() {
        let s = spec(true);
        let bad = Fixed(Ok(Some(0.5)));
        let st = RolloutStatus {
            phase: RolloutPhase::Progressing,
            revision: Some(REV.into()),
            template_hash: Some("new".into()),
            step: Some(PREVIEW),
            ..Default::default()
        };
        let d = advance(&s, "shop", Some(&st), &observed(5, settled(3), None), &bad).await;
        assert_eq!(d.status.as_ref().unwrap().phase, RolloutPhase::Aborted);
        assert_eq!(
            (d.primary, d.canary, d.active_to_new, d.preview_to_new),
            (Primary::Hold { replicas: 3 }, Canary::Absent, false, false)
        );
        assert!(d.aborted && d.notes.iter().any(|n| n.reason == super::super::types::ROLLOUT_ABORTED));
    }
}
