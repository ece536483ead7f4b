//! Fleet rollouts (`ApplicationSet.spec.strategy`): which commit each generated Application
//! pins, step by step over their clusters, as a state machine over plain data. One pass takes
//! the steps, the Applications with their clusters' labels, the commit to roll out, the rollout
//! status so far, a person's request and the time, and returns the pin of every Application,
//! the next status and the Events to publish. Pure apart from the measurements of a step's
//! analysis, which it asks of a [`Measure`] (Prometheus in the controller, a script in tests).
//!
//! - [`steps`]: which clusters each step takes.
//! - [`progress`]: where one Application stands against the commit.
//!
//! The rules: the Applications of the steps reached pin the new commit, the others keep the
//! one they have (one that does not exist yet is not created before its step). A step is done
//! when all its Applications are done ([`progress::Progress::Done`]); then its analysis runs;
//! then it pauses for `ferry promote --set` when it says so; then the next step starts. A
//! failed Application, a failed analysis or the progress deadline fails the rollout, which
//! stays Failed until the commit changes. A new commit starts over at the first step.

pub mod progress;
pub mod steps;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, future::Future, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::{
    api::{AnalysisMetric, Application, FleetRolloutPhase, FleetRolloutStatus, FleetStep, FleetStrategy},
    duration,
    rollout::{
        analysis::Phase as RunPhase,
        analysis_run::{measure_due, next_due, run_of, summarize},
        types::{Measure, Note, Request, Taken},
    },
};

use progress::{Progress, short};
use steps::Labels;

/// The cluster of an Application that names none in `destination.cluster`: ferry's own. It
/// has no labels, and the parentheses keep it apart from any Cluster's name.
pub const LOCAL: &str = "(local)";

/// How soon to look again while Applications move (their status changes wake the set first;
/// this is the safety net, and how the progress deadline is noticed).
pub const POLL: Duration = Duration::from_secs(5);
const DEFAULT_PROGRESS_DEADLINE: &str = "10m";

/// Event reasons, on the ApplicationSet.
pub const STARTED: &str = "FleetRolloutStarted";
pub const STEP: &str = "FleetRolloutStep";
pub const PAUSED: &str = "FleetRolloutPaused";
pub const COMPLETED: &str = "FleetRolloutCompleted";
pub const FAILED: &str = "FleetRolloutFailed";
pub const REQUEST_IGNORED: &str = "FleetRolloutRequestIgnored";

/// One generated Application of the set.
#[derive(Clone, Debug)]
pub struct Member<'a> {
    /// Its name.
    pub app: &'a str,
    /// Its cluster: `destination.cluster`, or [`LOCAL`].
    pub cluster: &'a str,
    /// The live Application (`None`: not created yet).
    pub live: Option<&'a Application>,
}

/// What one pass reads.
#[derive(Clone, Debug)]
pub struct Fleet<'a> {
    /// The set's name, for the messages that tell a person what to run.
    pub set: &'a str,
    pub strategy: &'a FleetStrategy,
    pub members: &'a [Member<'a>],
    /// The labels of the Clusters of the set's namespace (one an Application names but that
    /// does not exist has none).
    pub labels: &'a Labels,
    /// The commit to roll out (full SHA).
    pub target: &'a str,
    pub prev: Option<&'a FleetRolloutStatus>,
    /// The set's `ferry.dev/rollout-request` annotation.
    pub request: Option<&'a str>,
    pub now: Timestamp,
}

/// The commit an Application pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    Commit(String),
    /// Its step has not come and it has no commit of its own: it is not created yet (and one
    /// that exists is left as it is).
    NotYet,
}

/// The outcome of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// By Application name.
    pub pins: BTreeMap<String, Pin>,
    pub status: FleetRolloutStatus,
    pub notes: Vec<Note>,
    /// Look again within this time (`None`: when something changes).
    pub requeue: Option<Duration>,
}

/// One pass of the fleet rollout; see the module's doc.
pub async fn plan(f: &Fleet<'_>, measure: &impl MeasureStep) -> Plan {
    let mut pass = Pass::new(f);
    let mut st = pass.open();
    if is_active(st.phase) {
        pass.advance(&mut st, measure).await;
    }
    if pass.promote {
        let message = format!("promote of {} ignored: no step waits for one ({})", f.set, describe(&st));
        pass.note(REQUEST_IGNORED, message);
    }
    Plan { pins: pass.pins(&st), status: st, notes: pass.notes, requeue: pass.requeue }
}

fn is_active(phase: FleetRolloutPhase) -> bool {
    matches!(phase, FleetRolloutPhase::Progressing | FleetRolloutPhase::Analyzing | FleetRolloutPhase::Paused)
}

/// Whether a step ends the pass (waiting, paused, failed) or the next one is looked at now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Wait,
    Next,
}

/// One pass: what it reads and what it gathers on the way.
struct Pass<'f, 'a> {
    f: &'f Fleet<'a>,
    /// The clusters of each step.
    steps: Vec<Vec<String>>,
    /// A person's promote not acted on yet.
    promote: bool,
    notes: Vec<Note>,
    requeue: Option<Duration>,
}

impl<'f, 'a> Pass<'f, 'a> {
    fn new(f: &'f Fleet<'a>) -> Self {
        // Only the clusters the set deploys to take part, each with its Cluster's labels.
        let none = BTreeMap::new();
        let clusters: Labels = f
            .members
            .iter()
            .map(|m| (m.cluster.to_string(), f.labels.get(m.cluster).unwrap_or(&none).clone()))
            .collect();
        let steps = steps::assign(&f.strategy.steps, &clusters);
        Pass { f, steps, promote: false, notes: vec![], requeue: None }
    }

    fn note(&mut self, reason: &'static str, message: String) {
        self.notes.push(Note { warning: false, reason, message });
    }

    /// The status to go on from: the previous one while the commit is the same, else a new
    /// rollout at the first step. A request is acted on once: its value is remembered.
    fn open(&mut self) -> FleetRolloutStatus {
        let f = self.f;
        let mut st = match f.prev {
            Some(prev) if prev.revision == f.target => prev.clone(),
            _ => {
                let message = format!("rolling out {} over {} steps", short(f.target), self.steps.len());
                self.note(STARTED, message);
                FleetRolloutStatus {
                    revision: f.target.to_string(),
                    step: 0,
                    steps: 0,
                    phase: FleetRolloutPhase::Progressing,
                    clusters: vec![],
                    failed_cluster: None,
                    message: None,
                    step_started_at: Some(Time(f.now)),
                    promoted_step: None,
                    analysis: None,
                    // An old request must not promote the new rollout.
                    handled_request: f.prev.and_then(|p| p.handled_request.clone()),
                }
            }
        };
        st.steps = self.steps.len() as u32;
        st.clusters = self.steps.clone();
        if let Some(raw) = f.request.filter(|r| st.handled_request.as_deref() != Some(*r)) {
            st.handled_request = Some(raw.to_string());
            self.promote = Request::parse(raw) == Some(Request::Promote);
        }
        st
    }

    /// Goes through the steps from the current one until one has to wait (or the rollout
    /// completes or fails).
    async fn advance(&mut self, st: &mut FleetRolloutStatus, measure: &impl MeasureStep) {
        loop {
            let index = st.step as usize;
            if index >= self.steps.len() {
                return self.complete(st);
            }
            if let Some((member, why)) = self.first(index, |p| matches!(p, Progress::Failed(_))) {
                let why = format!("Application {} failed on cluster {}: {why}", member.app, member.cluster);
                return self.fail(st, Some(member.cluster.to_string()), why);
            }
            let flow = match st.phase {
                FleetRolloutPhase::Progressing => self.progressing(st),
                FleetRolloutPhase::Analyzing => self.analyzing(st, measure).await,
                FleetRolloutPhase::Paused => self.paused(st),
                FleetRolloutPhase::Failed | FleetRolloutPhase::Completed => Flow::Wait,
            };
            if flow == Flow::Wait {
                return;
            }
        }
    }

    /// The first Application of step `index` (by name) whose progress `which` picks, with the
    /// words of its progress.
    fn first(&self, index: usize, which: impl Fn(&Progress) -> bool) -> Option<(&'f Member<'a>, String)> {
        let clusters = &self.steps[index];
        let mut members: Vec<&Member> =
            self.f.members.iter().filter(|m| clusters.iter().any(|c| c == m.cluster)).collect();
        members.sort_by_key(|m| m.app);
        members.into_iter().find_map(|m| {
            let p = progress::progress(m.live, self.f.target);
            which(&p).then(|| match p {
                Progress::Waiting(why) | Progress::Failed(why) => (m, why),
                Progress::Done => (m, String::new()),
            })
        })
    }

    /// Waiting for the step's Applications, within the progress deadline.
    fn progressing(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        let Some((member, why)) = self.first(st.step as usize, |p| !matches!(p, Progress::Done)) else {
            return self.step_done(st);
        };
        let f = self.f;
        let deadline_text = f.strategy.progress_deadline.as_deref().unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        let deadline = duration::parse(deadline_text).unwrap_or(Duration::from_secs(600));
        let since = elapsed(&f.now, st.step_started_at.as_ref());
        if since >= deadline {
            let why = format!(
                "Application {} on cluster {} is not Synced and Healthy at {} after {}: {why}",
                member.app,
                member.cluster,
                short(f.target),
                deadline_text
            );
            self.fail(st, Some(member.cluster.to_string()), why);
            return Flow::Wait;
        }
        st.message = Some(format!(
            "{}: waiting for Application {} on cluster {}: {why}",
            self.label(st.step as usize),
            member.app,
            member.cluster
        ));
        self.wake_within(POLL.min(deadline - since));
        Flow::Wait
    }

    /// Every Application of the step is done: its analysis next, else its gate.
    fn step_done(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        let index = st.step as usize;
        let analysed = st
            .analysis
            .as_ref()
            .is_some_and(|r| r.step == index as i32 && r.phase == RunPhase::Successful.as_str());
        if self.definition(index).and_then(|s| s.analysis.as_ref()).is_some() && !analysed {
            st.phase = FleetRolloutPhase::Analyzing;
            return Flow::Next;
        }
        self.gate(st)
    }

    /// The step's analysis: measures what is due and judges the run.
    async fn analyzing(&mut self, st: &mut FleetRolloutStatus, measure: &impl MeasureStep) -> Flow {
        let index = st.step as usize;
        let Some(analysis) = self.definition(index).and_then(|s| s.analysis.as_ref()) else {
            // The spec no longer has one.
            return self.gate(st);
        };
        let mut run = run_of(st.analysis.take(), index as i32, analysis);
        let vars = StepVars { step: index + 1, clusters: &self.steps[index] };
        measure_due(&mut run, analysis, self.f.now, &StepMeasure { inner: measure, vars }).await;
        let (phase, summary, next) =
            (run.phase.clone(), summarize(&run), next_due(&run, &analysis.metrics, &self.f.now));
        st.analysis = Some(run);
        let label = self.label(index);
        match phase.as_str() {
            p if p == RunPhase::Successful.as_str() => self.gate(st),
            p if p == RunPhase::Inconclusive.as_str() => {
                let why = format!("{label}: analysis inconclusive ({summary})");
                self.pause(st, why)
            }
            p if p == RunPhase::Running.as_str() => {
                st.message = Some(format!("{label}: analysis running ({summary})"));
                self.wake_within(next);
                Flow::Wait
            }
            _ => {
                self.fail(st, None, format!("analysis {phase} ({summary})"));
                Flow::Wait
            }
        }
    }

    /// After the step's analysis: a pause waits for a person, else the next step.
    fn gate(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        let index = st.step as usize;
        if self.definition(index).is_some_and(|s| s.pause) {
            let why = format!("{} done", self.label(index));
            return self.pause(st, why);
        }
        self.next_step(st)
    }

    /// Paused at the current step: a promote goes on, else wait (an Event when the pause begins).
    fn pause(&mut self, st: &mut FleetRolloutStatus, why: String) -> Flow {
        if self.promote {
            return self.promoted(st);
        }
        if st.phase != FleetRolloutPhase::Paused {
            self.note(PAUSED, format!("{why}; paused until ferry promote --set {}", self.f.set));
        }
        st.phase = FleetRolloutPhase::Paused;
        st.message = Some(format!("{why}; paused: run ferry promote --set {} to go on", self.f.set));
        Flow::Wait
    }

    /// A pass that finds the rollout paused.
    fn paused(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        if self.promote { self.promoted(st) } else { Flow::Wait }
    }

    fn promoted(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        self.promote = false;
        st.promoted_step = Some(st.step);
        self.next_step(st)
    }

    fn next_step(&mut self, st: &mut FleetRolloutStatus) -> Flow {
        st.step += 1;
        st.phase = FleetRolloutPhase::Progressing;
        st.step_started_at = Some(Time(self.f.now));
        let index = st.step as usize;
        if index < self.steps.len() {
            let message = format!("{}: pinning {}", self.label(index), short(self.f.target));
            self.note(STEP, message);
        }
        Flow::Next
    }

    fn complete(&mut self, st: &mut FleetRolloutStatus) {
        st.step = self.steps.len() as u32;
        st.phase = FleetRolloutPhase::Completed;
        st.failed_cluster = None;
        let clusters: usize = self.steps.iter().map(Vec::len).sum();
        let message = format!(
            "{} rolled out to {} in {} steps",
            short(self.f.target),
            count(clusters, "cluster"),
            self.steps.len()
        );
        st.message = Some(message.clone());
        self.note(COMPLETED, message);
    }

    fn fail(&mut self, st: &mut FleetRolloutStatus, cluster: Option<String>, why: String) {
        let label = self.label(st.step as usize);
        st.phase = FleetRolloutPhase::Failed;
        st.failed_cluster = cluster;
        st.message = Some(format!("{label}: {why}"));
        let later =
            if st.step + 1 < self.steps.len() as u32 { "; later steps keep their commit" } else { "" };
        let message = format!("rollout of {} stopped at {label}: {why}{later}", short(self.f.target));
        self.notes.push(Note { warning: true, reason: FAILED, message });
    }

    fn wake_within(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// The step's definition (`None`: the last step of the clusters no step took).
    fn definition(&self, index: usize) -> Option<&'a FleetStep> {
        self.f.strategy.steps.get(index)
    }

    /// `step 2/3 (prod-a, prod-b)`, for messages.
    fn label(&self, index: usize) -> String {
        let clusters = self.steps.get(index).map(|c| shown_clusters(c)).unwrap_or_default();
        format!("step {}/{} ({clusters})", index + 1, self.steps.len())
    }

    /// The pin of every member: the rollout's commit from the steps reached, else its own.
    fn pins(&self, st: &FleetRolloutStatus) -> BTreeMap<String, Pin> {
        let step_of = |cluster: &str| self.steps.iter().position(|s| s.iter().any(|c| c == cluster));
        let done = st.phase == FleetRolloutPhase::Completed;
        self.f
            .members
            .iter()
            .map(|m| {
                let reached = done || step_of(m.cluster).is_some_and(|s| s <= st.step as usize);
                let pin = match m.live.and_then(progress::held) {
                    _ if reached => Pin::Commit(self.f.target.to_string()),
                    Some(commit) => Pin::Commit(commit),
                    None => Pin::NotYet,
                };
                (m.app.to_string(), pin)
            })
            .collect()
    }
}

/// What a step's analysis queries are filled with, besides the commit and the namespace.
#[derive(Clone, Copy, Debug)]
pub struct StepVars<'a> {
    /// 1-based, as messages count steps.
    pub step: usize,
    pub clusters: &'a [String],
}

/// Takes the measurements of a step's analysis: Prometheus in the controller, a script in
/// tests.
pub trait MeasureStep {
    fn measure(&self, metric: &AnalysisMetric, vars: StepVars<'_>) -> impl Future<Output = Taken> + Send;
}

/// A [`MeasureStep`] for one step, as the analysis run asks for measurements.
struct StepMeasure<'m, M> {
    inner: &'m M,
    vars: StepVars<'m>,
}

impl<M: MeasureStep> Measure for StepMeasure<'_, M> {
    fn measure(&self, metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send {
        self.inner.measure(metric, self.vars)
    }
}

/// Where a rollout stands, in a few words, for messages.
fn describe(st: &FleetRolloutStatus) -> String {
    format!("{:?} at step {}/{}", st.phase, (st.step + 1).min(st.steps.max(1)), st.steps)
}

/// `a, b, c and 4 more`.
fn shown_clusters(clusters: &[String]) -> String {
    match clusters.len() {
        0 => "no clusters".to_string(),
        n if n <= 3 => clusters.join(", "),
        n => format!("{} and {} more", clusters[..3].join(", "), n - 3),
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn elapsed(now: &Timestamp, since: Option<&Time>) -> Duration {
    let Some(since) = since else { return Duration::ZERO };
    let ms = now.as_millisecond() - since.0.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}
