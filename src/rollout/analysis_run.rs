//! An analysis run as `status.rollout` keeps it: which metrics are due, taking their
//! measurements, folding each into the run, and what the run concludes. Every strategy's
//! analysis steps (and the canary's background analysis) go through here; the verdict on one
//! number and the run's semantics are [`super::analysis`]'s.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{
    analysis::{self, Condition, Limits, NoData, Tally, Verdict},
    types::{Measure, Taken, elapsed},
};
use crate::{
    api::{Analysis, AnalysisMetric, AnalysisStatus, Measurement, MetricStatus, NoDataPolicy},
    duration,
};

/// Measurements kept in status, newest first.
const KEPT_MEASUREMENTS: usize = 10;
const DEFAULT_ANALYSIS_INTERVAL: Duration = Duration::from_secs(30);

/// The run of step `index` (`-1`: the background analysis): the one in status if it is that
/// step's, else a fresh one.
pub(crate) fn run_of(prev: Option<AnalysisStatus>, index: i32, analysis: &Analysis) -> AnalysisStatus {
    match prev {
        Some(run) if run.step == index => run,
        _ => fresh_run(index, &analysis.metrics),
    }
}

/// Takes the measurements of `analysis` that are due and judges the run. A run that has
/// concluded takes none.
pub(crate) async fn measure_due(
    run: &mut AnalysisStatus,
    analysis: &Analysis,
    now: Timestamp,
    measure: &impl Measure,
) -> Vec<Verdict> {
    let mut measured = vec![];
    if run.phase == analysis::Phase::Running.as_str() {
        let at = Time(now);
        for metric in &analysis.metrics {
            if is_due(run, metric, &now) {
                let taken = measure.measure(metric).await;
                measured.push(record(run, metric, taken, &at));
            }
        }
        run.phase = run_phase(run, &analysis.metrics).as_str().to_string();
    }
    measured
}

fn fresh_run(step: i32, metrics: &[AnalysisMetric]) -> AnalysisStatus {
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

fn interval_of(metric: &AnalysisMetric) -> Duration {
    metric.interval.as_deref().and_then(duration::parse).unwrap_or(DEFAULT_ANALYSIS_INTERVAL)
}

fn limits_of(metric: &AnalysisMetric) -> Limits {
    let d = Limits::default();
    let n = |v: Option<i32>, default: u32| v.map(|v| v.max(0) as u32).unwrap_or(default);
    Limits {
        count: n(metric.count, d.count).max(1),
        failure_limit: n(metric.failure_limit, d.failure_limit),
        inconclusive_limit: n(metric.inconclusive_limit, d.inconclusive_limit),
        consecutive_error_limit: n(metric.consecutive_error_limit, d.consecutive_error_limit),
    }
}

fn tally_of(m: &MetricStatus) -> Tally {
    let n = |v: i32| v.max(0) as u32;
    Tally {
        successful: n(m.successful),
        failed: n(m.failed),
        inconclusive: n(m.inconclusive),
        errors: n(m.errors),
        consecutive_errors: n(m.consecutive_errors),
    }
}

fn metric_status<'r>(run: &'r mut AnalysisStatus, name: &str) -> &'r mut MetricStatus {
    if let Some(i) = run.metrics.iter().position(|m| m.name == name) {
        return &mut run.metrics[i];
    }
    run.metrics.push(MetricStatus { name: name.into(), phase: "Running".into(), ..Default::default() });
    run.metrics.last_mut().expect("just pushed")
}

/// Whether `metric` should be measured now: still running, and its interval has passed since
/// its last measurement (the first is taken at once).
fn is_due(run: &AnalysisStatus, metric: &AnalysisMetric, now: &Timestamp) -> bool {
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
pub(crate) fn next_due(run: &AnalysisStatus, metrics: &[AnalysisMetric], now: &Timestamp) -> Duration {
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
fn record(run: &mut AnalysisStatus, metric: &AnalysisMetric, taken: Taken, now: &Time) -> Verdict {
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
fn run_phase(run: &AnalysisStatus, metrics: &[AnalysisMetric]) -> analysis::Phase {
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
pub(crate) fn summarize(run: &AnalysisStatus) -> String {
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
