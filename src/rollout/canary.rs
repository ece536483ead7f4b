//! The canary state machine: from the previous `status.rollout`, what the cluster shows and
//! what a person asked for, the next status and what the primary and canary Deployments
//! should be. Everything it needs to resume lives in the status, so a restarted ferry (or
//! another replica) continues exactly where the last one stopped; every output is a desired
//! state, so applying it twice changes nothing.
//!
//! Traffic is split by replica ratio: the canary's pods carry every label the primary's Service
//! selects, so at weight `w` the canary runs `ceil(replicas * w / 100)` pods and the primary
//! the rest.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{
    analysis::{self, Condition, Limits, NoData, Tally, Verdict},
    lifecycle,
    types::{
        Canary, DEFAULT_PROGRESS_DEADLINE, Decision, Measure, Note, Observed, POLL, Primary, ROLLOUT_PAUSED,
        ROLLOUT_PROMOTED, ROLLOUT_STEP, Request, Taken, elapsed, short,
    },
    workload::canary_replicas,
};
use crate::{
    api::{
        Analysis, AnalysisMetric, AnalysisStatus, CanaryStep, CanaryStrategy, HealthStatusCode, Measurement,
        MetricStatus, NoDataPolicy, RolloutPhase, RolloutStatus,
    },
    duration,
};

/// Measurements kept in status, newest first.
pub const KEPT_MEASUREMENTS: usize = 10;
pub(super) const DEFAULT_ANALYSIS_INTERVAL: Duration = Duration::from_secs(30);
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
struct CanaryVariant<'a>(&'a CanaryStrategy);

impl lifecycle::Variant for CanaryVariant<'_> {
    const NAME: &'static str = "canary";
    const START_WEIGHT: Option<i32> = Some(0);

    fn promoting(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let canary =
            if o.canary.exists { Canary::Present { replicas: o.canary.replicas } } else { Canary::Absent };
        let mut d = Decision::new(Primary::AsGit, canary, None);
        d.route_weight = st.canary_weight.filter(|_| by_gateway(self.0));
        d
    }

    fn held_back(&self, st: &RolloutStatus, o: &Observed<'_>) -> Decision {
        let left = abort_delay(self.0).saturating_sub(elapsed(&o.now, st.step_started_at.as_ref()));
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
    let now = Time(o.now);
    let (mut st, request, mut notes, finished) =
        match lifecycle::open(&CanaryVariant(spec), workload, prev, o) {
            lifecycle::Opening::Decided(d) => return d,
            lifecycle::Opening::Run { st, request, notes, finished } => (st, request, notes, finished),
        };

    let mut d = match request {
        Some(Request::Abort) => abort(spec, st, workload, o, "aborted by `ferry abort`".into()),
        Some(Request::PromoteFull) => {
            st.phase = RolloutPhase::Promoting;
            st.message = Some("fully promoted by `ferry promote --full`".into());
            notes.push(Note {
                warning: false,
                reason: ROLLOUT_PROMOTED,
                message: format!("{} promoted past every remaining step by request", short(o.revision)),
            });
            let replicas = if o.canary.exists { o.canary.replicas } else { 0 };
            let weight = st.canary_weight.filter(|_| by_gateway(spec));
            let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas }, Some(st));
            d.route_weight = weight;
            d.requeue = Some(POLL);
            d
        }
        other => {
            let background_paused = st
                .background_analysis
                .as_ref()
                .is_some_and(|run| run.phase == analysis::Phase::Inconclusive.as_str());
            if other == Some(Request::Promote) && background_paused {
                // Resume: the background analysis starts a fresh run; the step stays.
                st.background_analysis = None;
                st.phase = RolloutPhase::Progressing;
                notes.push(Note {
                    warning: false,
                    reason: ROLLOUT_STEP,
                    message: "background analysis resumed by request".into(),
                });
            } else if other == Some(Request::Promote) {
                let step = st.step.unwrap_or(0);
                notes.push(Note {
                    warning: false,
                    reason: ROLLOUT_STEP,
                    message: format!("step {} of {} promoted by request", step + 1, spec.steps.len()),
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

/// Moves to step `index`.
pub(super) fn enter(st: &mut RolloutStatus, index: i32, now: &Time) {
    st.step = Some(index);
    st.step_started_at = Some(now.clone());
    st.phase = RolloutPhase::Progressing;
}

/// Runs steps from the current one until one has to wait.
async fn run_steps(
    spec: &CanaryStrategy,
    workload: &str,
    mut st: RolloutStatus,
    o: &Observed<'_>,
    measure: &impl Measure,
) -> Decision {
    let now = Time(o.now);
    let total = spec.steps.len() as i32;
    let gateway = by_gateway(spec);
    let deadline =
        spec.progress_deadline.as_deref().and_then(duration::parse).unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    let mut notes = vec![];
    let mut measured = vec![];
    // The background analysis: measured on every pass until promotion.
    let mut background_due = None;
    let mut background_paused = None;
    if let Some(background) = &spec.analysis
        && st.step.unwrap_or(0) < total
    {
        let (run, taken) = measure_run(st.background_analysis.take(), -1, background, o, measure).await;
        measured.extend(taken);
        let summary = summarize(&run);
        match run.phase.as_str() {
            "Failed" | "Error" => {
                let message = format!("background analysis {} ({summary})", run.phase.to_lowercase());
                st.background_analysis = Some(run);
                let mut d = abort(spec, st, workload, o, message);
                d.measured = measured;
                return d;
            }
            "Inconclusive" => {
                background_paused = Some(format!(
                    "background analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
                ));
            }
            "Running" => background_due = Some(next_due(&run, &background.metrics, &o.now)),
            _ => {}
        }
        st.background_analysis = Some(run);
    }
    loop {
        let index = st.step.unwrap_or(0).max(0);
        if index >= total {
            st.phase = RolloutPhase::Promoting;
            st.message = Some(format!("promoting {}: every step passed", short(o.revision)));
            let replicas = if o.canary.exists { o.canary.replicas } else { 0 };
            let mut d = Decision::new(Primary::AsGit, Canary::Present { replicas }, Some(st.clone()));
            d.route_weight = st.canary_weight.filter(|_| gateway);
            d.health = Some((HealthStatusCode::Progressing, st.message.unwrap_or_default()));
            d.requeue = Some(POLL);
            d.notes = notes;
            d.measured = measured;
            return d;
        }
        let step = &spec.steps[index as usize];
        let weight = weight_at(spec, index).unwrap_or(st.canary_weight.unwrap_or(0));
        st.canary_weight = Some(weight);
        let canary_count = canary_replicas(o.replicas, weight);
        // Under Gateway API routing the primary keeps every replica: the route splits traffic.
        let primary_count = if gateway { o.replicas } else { (o.replicas - canary_count).max(0) };
        let primary = Primary::Hold { replicas: primary_count };
        let canary = Canary::Present { replicas: canary_count };
        let ready = o.canary_hash == Some(o.template_hash) && o.canary.settled_at(canary_count);
        let label = format!("step {}/{total}", index + 1);
        let waited = elapsed(&o.now, st.step_started_at.as_ref());

        let wait = |st: RolloutStatus, phase, message: String, requeue: Option<Duration>, health| {
            let mut st = st;
            st.phase = phase;
            st.message = Some(message.clone());
            let mut d = Decision::new(primary, canary, Some(st));
            d.route_weight = gateway.then_some(weight);
            d.health = Some((health, message));
            d.requeue = requeue;
            d
        };
        let finish = |mut d: Decision, mut notes: Vec<Note>, measured: Vec<Verdict>| {
            notes.append(&mut d.notes);
            d.notes = notes;
            d.measured = measured;
            if let Some(due) = background_due {
                d.requeue = Some(d.requeue.map_or(due, |r| r.min(due)));
            }
            d
        };

        if let Some(message) = background_paused.take() {
            if st.phase != RolloutPhase::Paused {
                notes.push(Note { warning: true, reason: ROLLOUT_PAUSED, message: message.clone() });
            }
            let d = wait(st, RolloutPhase::Paused, message, None, HealthStatusCode::Suspended);
            return finish(d, notes, measured);
        }

        if !ready && step.analysis.is_none() {
            if waited > deadline {
                let message = format!(
                    "the canary of Deployment {workload} did not reach {canary_count} available replicas within {}s",
                    deadline.as_secs()
                );
                return finish(abort(spec, st, workload, o, message), notes, measured);
            }
            let message = format!(
                "{label}: weight {weight}%, waiting for {canary_count} canary replicas to be available"
            );
            let d = wait(st, RolloutPhase::Progressing, message, Some(POLL), HealthStatusCode::Progressing);
            return finish(d, notes, measured);
        }

        if step.set_weight.is_some() {
            notes.push(Note {
                warning: false,
                reason: ROLLOUT_STEP,
                message: format!(
                    "{label}: canary weight {weight}% ({canary_count} of {} replicas)",
                    o.replicas
                ),
            });
            enter(&mut st, index + 1, &now);
            continue;
        }
        if let Some(pause) = &step.pause {
            match pause.duration.as_deref().and_then(duration::parse) {
                Some(length) if waited >= length => {
                    enter(&mut st, index + 1, &now);
                    continue;
                }
                Some(length) => {
                    let left = length - waited;
                    let message = format!("{label}: weight {weight}%, pausing for {}s more", left.as_secs());
                    let d = wait(
                        st,
                        RolloutPhase::Progressing,
                        message,
                        Some(left),
                        HealthStatusCode::Progressing,
                    );
                    return finish(d, notes, measured);
                }
                None => {
                    let message =
                        format!("{label}: weight {weight}%, paused until `ferry promote` (or `ferry abort`)");
                    if st.phase != RolloutPhase::Paused {
                        notes.push(Note { warning: false, reason: ROLLOUT_PAUSED, message: message.clone() });
                    }
                    let d = wait(st, RolloutPhase::Paused, message, None, HealthStatusCode::Suspended);
                    return finish(d, notes, measured);
                }
            }
        }
        let Some(analysis) = &step.analysis else {
            // The schema allows exactly one of the three; an empty step is skipped.
            enter(&mut st, index + 1, &now);
            continue;
        };
        let (run, taken) = measure_run(st.analysis.take(), index, analysis, o, measure).await;
        measured.extend(taken);
        let phase = run.phase.clone();
        let summary = summarize(&run);
        st.analysis = Some(run);
        match phase.as_str() {
            "Successful" => {
                notes.push(Note {
                    warning: false,
                    reason: ROLLOUT_STEP,
                    message: format!("{label}: analysis passed ({summary})"),
                });
                enter(&mut st, index + 1, &now);
                continue;
            }
            "Failed" | "Error" => {
                let message = format!("{label}: analysis {} ({summary})", phase.to_lowercase());
                return finish(abort(spec, st, workload, o, message), notes, measured);
            }
            "Inconclusive" => {
                let message = format!(
                    "{label}: analysis inconclusive ({summary}); paused until `ferry promote` (or `ferry abort`)"
                );
                if st.phase != RolloutPhase::Paused {
                    notes.push(Note { warning: true, reason: ROLLOUT_PAUSED, message: message.clone() });
                }
                let d = wait(st, RolloutPhase::Paused, message, None, HealthStatusCode::Suspended);
                return finish(d, notes, measured);
            }
            _ => {
                let next = st
                    .analysis
                    .as_ref()
                    .map(|run| next_due(run, &analysis.metrics, &o.now))
                    .unwrap_or(DEFAULT_ANALYSIS_INTERVAL);
                let message = format!("{label}: weight {weight}%, analysing ({summary})");
                let d = wait(st, RolloutPhase::Analyzing, message, Some(next), HealthStatusCode::Progressing);
                return finish(d, notes, measured);
            }
        }
    }
}

/// Takes the measurements of `analysis` that are due and judges the run (step `index`).
pub(super) async fn measure_run(
    prev: Option<AnalysisStatus>,
    index: i32,
    analysis: &Analysis,
    o: &Observed<'_>,
    measure: &impl Measure,
) -> (AnalysisStatus, Vec<Verdict>) {
    let now = Time(o.now);
    let mut run = match prev {
        Some(run) if run.step == index => run,
        _ => fresh_run(index, &analysis.metrics),
    };
    let mut measured = vec![];
    if run.phase == analysis::Phase::Running.as_str() {
        for metric in &analysis.metrics {
            if is_due(&run, metric, &o.now) {
                let taken = measure.measure(metric).await;
                measured.push(record(&mut run, metric, taken, &now));
            }
        }
        run.phase = run_phase(&run, &analysis.metrics).as_str().to_string();
    }
    (run, measured)
}

/// Aborts: all traffic and replicas back to the stable primary at once, the canary removed (after
/// the abort delay under Gateway API routing), the revision held back.
fn abort(
    spec: &CanaryStrategy,
    st: RolloutStatus,
    workload: &str,
    o: &Observed<'_>,
    reason: String,
) -> Decision {
    lifecycle::abort(&CanaryVariant(spec), st, workload, o, reason)
}

/// The weight in force at step `index`: the last `setWeight` at or before it.
fn weight_at(spec: &CanaryStrategy, index: i32) -> Option<i32> {
    spec.steps.iter().take(index as usize + 1).filter_map(|s: &CanaryStep| s.set_weight).next_back()
}

pub(super) fn fresh_run(step: i32, metrics: &[AnalysisMetric]) -> AnalysisStatus {
    AnalysisStatus {
        step,
        phase: analysis::Phase::Running.as_str().into(),
        metrics: metrics
            .iter()
            .map(|m| MetricStatus {
                name: m.name.clone(),
                phase: analysis::Phase::Running.as_str().into(),
                ..Default::default()
            })
            .collect(),
        measurements: vec![],
    }
}

pub(super) fn interval_of(metric: &AnalysisMetric) -> Duration {
    metric.interval.as_deref().and_then(duration::parse).unwrap_or(DEFAULT_ANALYSIS_INTERVAL)
}

pub(super) fn limits_of(metric: &AnalysisMetric) -> Limits {
    let d = Limits::default();
    let n = |v: Option<i32>, default: u32| v.map(|v| v.max(0) as u32).unwrap_or(default);
    Limits {
        count: n(metric.count, d.count).max(1),
        failure_limit: n(metric.failure_limit, d.failure_limit),
        inconclusive_limit: n(metric.inconclusive_limit, d.inconclusive_limit),
        consecutive_error_limit: n(metric.consecutive_error_limit, d.consecutive_error_limit),
    }
}

pub(super) fn tally_of(m: &MetricStatus) -> Tally {
    let n = |v: i32| v.max(0) as u32;
    Tally {
        successful: n(m.successful),
        failed: n(m.failed),
        inconclusive: n(m.inconclusive),
        errors: n(m.errors),
        consecutive_errors: n(m.consecutive_errors),
    }
}

pub(super) fn metric_status<'r>(run: &'r mut AnalysisStatus, name: &str) -> &'r mut MetricStatus {
    if let Some(i) = run.metrics.iter().position(|m| m.name == name) {
        return &mut run.metrics[i];
    }
    run.metrics.push(MetricStatus { name: name.into(), phase: "Running".into(), ..Default::default() });
    run.metrics.last_mut().expect("just pushed")
}

/// Whether `metric` should be measured now: still running, and its interval has passed since
/// its last measurement (the first is taken at once).
pub(super) fn is_due(run: &AnalysisStatus, metric: &AnalysisMetric, now: &Timestamp) -> bool {
    let Some(m) = run.metrics.iter().find(|m| m.name == metric.name) else { return true };
    if m.phase != analysis::Phase::Running.as_str() {
        return false;
    }
    match &m.last_measured_at {
        None => true,
        Some(at) => elapsed(now, Some(at)) >= interval_of(metric),
    }
}

/// Until the next metric is due.
pub(super) fn next_due(run: &AnalysisStatus, metrics: &[AnalysisMetric], now: &Timestamp) -> Duration {
    metrics
        .iter()
        .filter_map(|metric| {
            let m = run.metrics.iter().find(|m| m.name == metric.name)?;
            if m.phase != analysis::Phase::Running.as_str() {
                return None;
            }
            let since = elapsed(now, m.last_measured_at.as_ref());
            Some(interval_of(metric).saturating_sub(since))
        })
        .min()
        .unwrap_or(DEFAULT_ANALYSIS_INTERVAL)
        .max(Duration::from_millis(500))
}

/// Judges one measurement and folds it into the run.
pub(super) fn record(run: &mut AnalysisStatus, metric: &AnalysisMetric, taken: Taken, now: &Time) -> Verdict {
    let parse = |c: &Option<String>| c.as_deref().map(Condition::parse).transpose();
    let (verdict, value, message) = match (parse(&metric.success_condition), parse(&metric.failure_condition))
    {
        (Err(e), _) | (_, Err(e)) => (Verdict::Failed, None, Some(e.to_string())),
        (Ok(success), Ok(failure)) => match taken {
            Err(e) => (Verdict::Error, None, Some(e.to_string())),
            Ok(value) => {
                let no_data = match metric.no_data.unwrap_or_default() {
                    NoDataPolicy::Inconclusive => NoData::Inconclusive,
                    NoDataPolicy::Fail => NoData::Fail,
                    NoDataPolicy::Pass => NoData::Pass,
                };
                let verdict = analysis::judge(value, success.as_ref(), failure.as_ref(), no_data);
                let shown = value.filter(|v| !v.is_nan()).map(|v| v.to_string());
                let message = shown.is_none().then(|| "no data".to_string());
                (verdict, shown, message)
            }
        },
    };
    let limits = limits_of(metric);
    let m = metric_status(run, &metric.name);
    let tally = tally_of(m).with(verdict);
    m.successful = tally.successful as i32;
    m.failed = tally.failed as i32;
    m.inconclusive = tally.inconclusive as i32;
    m.errors = tally.errors as i32;
    m.consecutive_errors = tally.consecutive_errors as i32;
    m.last_measured_at = Some(now.clone());
    // A condition that cannot be read fails the metric outright: waiting would not fix it.
    let phase = if verdict == Verdict::Failed && value.is_none() && message.as_deref() != Some("no data") {
        analysis::Phase::Failed
    } else {
        analysis::phase(&tally, &limits)
    };
    m.phase = phase.as_str().into();
    run.measurements.insert(
        0,
        Measurement {
            metric: metric.name.clone(),
            at: now.clone(),
            verdict: verdict.as_str().into(),
            value,
            message,
        },
    );
    run.measurements.truncate(KEPT_MEASUREMENTS);
    verdict
}

/// The run's phase from its metrics: any failure or error fails it, then any inconclusive
/// metric makes it inconclusive, and it succeeds when every metric has.
pub(super) fn run_phase(run: &AnalysisStatus, metrics: &[AnalysisMetric]) -> analysis::Phase {
    let phases: Vec<&str> = metrics
        .iter()
        .map(|metric| {
            run.metrics.iter().find(|m| m.name == metric.name).map(|m| m.phase.as_str()).unwrap_or("Running")
        })
        .collect();
    let any = |p: analysis::Phase| phases.contains(&p.as_str());
    if any(analysis::Phase::Failed) {
        analysis::Phase::Failed
    } else if any(analysis::Phase::Error) {
        analysis::Phase::Error
    } else if any(analysis::Phase::Inconclusive) {
        analysis::Phase::Inconclusive
    } else if phases.iter().all(|p| *p == analysis::Phase::Successful.as_str()) {
        analysis::Phase::Successful
    } else {
        analysis::Phase::Running
    }
}

/// `error-rate: 2 successful, 1 failed (last 0.2)`, per metric.
pub(super) fn summarize(run: &AnalysisStatus) -> String {
    run.metrics
        .iter()
        .map(|m| {
            let last = run.measurements.iter().find(|x| x.metric == m.name);
            let last = match last {
                Some(x) => format!(", last {}", x.value.clone().or(x.message.clone()).unwrap_or_default()),
                None => String::new(),
            };
            let mut counts = vec![];
            for (n, word) in [
                (m.successful, "successful"),
                (m.failed, "failed"),
                (m.inconclusive, "inconclusive"),
                (m.errors, "errors"),
            ] {
                if n > 0 {
                    counts.push(format!("{n} {word}"));
                }
            }
            let counts = if counts.is_empty() { "not measured yet".to_string() } else { counts.join(", ") };
            format!("{}: {counts}{last}", m.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::{future::Future, sync::Mutex};

    use super::*;
    use crate::rollout::{
        prometheus::QueryError,
        types::{MeasureError, ROLLOUT_ABORTED, ROLLOUT_STARTED},
        workload::Availability,
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
        Availability {
            exists: true,
            replicas,
            updated: replicas,
            available: replicas,
            total: replicas,
            observed: true,
        }
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
