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
    canary::{enter, measure_run, summarize},
    lifecycle,
    types::{
        Canary, DEFAULT_PROGRESS_DEADLINE, Decision, Measure, Note, Observed, POLL, Primary, ROLLOUT_PAUSED,
        ROLLOUT_PROMOTED, ROLLOUT_STEP, Request, elapsed, short,
    },
};
use crate::{
    api::{Analysis, BlueGreenStrategy, HealthStatusCode, RolloutPhase, RolloutStatus},
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
struct BlueGreen;

impl lifecycle::Variant for BlueGreen {
    const NAME: &'static str = "blueGreen";
    const START_WEIGHT: Option<i32> = None;

    fn promoting(&self, _st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas: o.replicas }, None);
        (d.active_to_new, d.preview_to_new) = (true, true);
        d
    }

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
    let now = Time(o.now);
    let full = Canary::Present { replicas: o.replicas };
    let (mut st, request, mut notes, finished) = match lifecycle::open(&BlueGreen, workload, prev, o) {
        lifecycle::Opening::Decided(d) => return d,
        lifecycle::Opening::Run { st, request, notes, finished } => (st, request, notes, finished),
    };

    let mut d = match request {
        Some(Request::Abort) => abort(st, workload, o, "aborted by `ferry abort`".into()),
        Some(Request::PromoteFull) => {
            st.phase = RolloutPhase::Promoting;
            st.step = Some(PROMOTE);
            st.message = Some("fully promoted by `ferry promote --full`".into());
            notes.push(Note {
                warning: false,
                reason: ROLLOUT_PROMOTED,
                message: format!("{} promoted past every remaining step by request", short(o.revision)),
            });
            let mut d = Decision::new(Primary::AsGit, full, Some(st));
            (d.active_to_new, d.preview_to_new) = (true, true);
            d.requeue = Some(POLL);
            d
        }
        other => {
            if other == Some(Request::Promote) {
                let step = st.step.unwrap_or(0);
                notes.push(Note {
                    warning: false,
                    reason: ROLLOUT_STEP,
                    message: format!("step {} promoted by request", step + 1),
                });
                enter(&mut st, step + 1, &now);
            }
            run_steps(spec, workload, st, o, measure).await
        }
    };
    notes.append(&mut d.notes);
    d.notes = notes;
    d.finished = d.finished.or(finished);
    d
}

async fn run_steps(
    spec: &BlueGreenStrategy,
    workload: &str,
    mut st: RolloutStatus,
    o: &Observed<'_>,
    measure: &impl Measure,
) -> Decision {
    let now = Time(o.now);
    let deadline =
        spec.progress_deadline.as_deref().and_then(duration::parse).unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    let full = Canary::Present { replicas: o.replicas };
    let mut notes = vec![];
    let mut measured = vec![];
    let ready = o.canary_hash == Some(o.template_hash) && o.canary.settled_at(o.replicas);
    loop {
        let index = st.step.unwrap_or(0).max(0);
        let switched = index >= SWITCHED;
        let waited = elapsed(&o.now, st.step_started_at.as_ref());
        let decide = |st: RolloutStatus, phase, message: String, requeue: Option<Duration>, health| {
            let mut st = st;
            st.phase = phase;
            st.message = Some(message.clone());
            let primary =
                if index >= PROMOTE { Primary::AsGit } else { Primary::Hold { replicas: o.replicas } };
            let mut d = Decision::new(primary, full, Some(st));
            (d.active_to_new, d.preview_to_new) = (switched, true);
            d.health = Some((health, message));
            d.requeue = requeue;
            d
        };
        let finish = |mut d: Decision, mut notes: Vec<Note>, measured| {
            notes.append(&mut d.notes);
            d.notes = notes;
            d.measured = measured;
            d
        };
        let analysis_step = |a: &Option<Analysis>| a.clone();
        let step_analysis = match index {
            PRE_ANALYSIS => analysis_step(&spec.pre_promotion_analysis),
            SWITCHED => analysis_step(&spec.post_promotion_analysis),
            _ => None,
        };
        match index {
            PREVIEW => {
                if ready {
                    enter(&mut st, PRE_ANALYSIS, &now);
                    continue;
                }
                if waited > deadline {
                    let message = format!(
                        "the new version of Deployment {workload} did not reach {} available replicas within {}s",
                        o.replicas,
                        deadline.as_secs()
                    );
                    return finish(abort(st, workload, o, message), notes, measured);
                }
                let message = format!("preview: waiting for {} replicas of the new version", o.replicas);
                let d =
                    decide(st, RolloutPhase::Progressing, message, Some(POLL), HealthStatusCode::Progressing);
                return finish(d, notes, measured);
            }
            PRE_ANALYSIS | SWITCHED if step_analysis.is_some() => {
                let analysis = step_analysis.expect("checked");
                let (run, taken) = measure_run(st.analysis.take(), index, &analysis, o, measure).await;
                measured.extend(taken);
                let phase = run.phase.clone();
                let summary = summarize(&run);
                st.analysis = Some(run);
                let which = if index == PRE_ANALYSIS { "pre-promotion" } else { "post-promotion" };
                match phase.as_str() {
                    "Successful" => {
                        notes.push(Note {
                            warning: false,
                            reason: ROLLOUT_STEP,
                            message: format!("{which} analysis passed ({summary})"),
                        });
                        enter(&mut st, index + 1, &now);
                        continue;
                    }
                    "Failed" | "Error" => {
                        let message = format!("{which} analysis {} ({summary})", phase.to_lowercase());
                        return finish(abort(st, workload, o, message), notes, measured);
                    }
                    "Inconclusive" => {
                        let message = format!(
                            "{which} analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
                        );
                        if st.phase != RolloutPhase::Paused {
                            notes.push(Note {
                                warning: true,
                                reason: ROLLOUT_PAUSED,
                                message: message.clone(),
                            });
                        }
                        let d = decide(st, RolloutPhase::Paused, message, None, HealthStatusCode::Suspended);
                        return finish(d, notes, measured);
                    }
                    _ => {
                        let message = format!("{which} analysis running ({summary})");
                        let d = decide(
                            st,
                            RolloutPhase::Analyzing,
                            message,
                            Some(POLL.max(Duration::from_secs(1))),
                            HealthStatusCode::Progressing,
                        );
                        return finish(d, notes, measured);
                    }
                }
            }
            PRE_ANALYSIS => {
                enter(&mut st, AWAIT_SWITCH, &now);
                continue;
            }
            SWITCHED => {
                notes.push(Note {
                    warning: false,
                    reason: ROLLOUT_STEP,
                    message: format!("active Service switched to {}", short(o.revision)),
                });
                enter(&mut st, SCALE_DOWN, &now);
                continue;
            }
            AWAIT_SWITCH => {
                let after = spec.auto_promotion_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
                match (spec.auto_promotion, after) {
                    (true, Some(after)) if waited < after => {
                        let left = after - waited;
                        let message =
                            format!("previewing {}; switching in {}s", short(o.revision), left.as_secs());
                        let d = decide(
                            st,
                            RolloutPhase::Progressing,
                            message,
                            Some(left),
                            HealthStatusCode::Progressing,
                        );
                        return finish(d, notes, measured);
                    }
                    (true, _) => {
                        enter(&mut st, SWITCHED, &now);
                        continue;
                    }
                    (false, _) => {
                        let message = format!(
                            "previewing {}; the switch waits for `ferry promote` (or `ferry abort`)",
                            short(o.revision)
                        );
                        if st.phase != RolloutPhase::Paused {
                            notes.push(Note {
                                warning: false,
                                reason: ROLLOUT_PAUSED,
                                message: message.clone(),
                            });
                        }
                        let d = decide(st, RolloutPhase::Paused, message, None, HealthStatusCode::Suspended);
                        return finish(d, notes, measured);
                    }
                }
            }
            SCALE_DOWN => {
                let delay = spec
                    .scale_down_delay
                    .as_deref()
                    .and_then(duration::parse)
                    .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
                if waited >= delay {
                    enter(&mut st, PROMOTE, &now);
                    continue;
                }
                let left = delay - waited;
                let message = format!(
                    "active on {}; the old version stays at full size for {}s more",
                    short(o.revision),
                    left.as_secs()
                );
                let d =
                    decide(st, RolloutPhase::Progressing, message, Some(left), HealthStatusCode::Progressing);
                return finish(d, notes, measured);
            }
            _ => {
                st.phase = RolloutPhase::Promoting;
                st.step = Some(PROMOTE);
                let message =
                    format!("promoting {}: Deployment {workload} takes the new version", short(o.revision));
                let d =
                    decide(st, RolloutPhase::Promoting, message, Some(POLL), HealthStatusCode::Progressing);
                return finish(d, notes, measured);
            }
        }
    }
}

/// Aborts: the Services back on the primary (still the old version at full size) at once, the
/// new version removed, the revision held back.
fn abort(st: RolloutStatus, workload: &str, o: &Observed<'_>, reason: String) -> Decision {
    lifecycle::abort(&BlueGreen, st, workload, o, reason)
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
        Availability {
            exists: true,
            replicas,
            updated: replicas,
            available: replicas,
            total: replicas,
            observed: true,
        }
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
