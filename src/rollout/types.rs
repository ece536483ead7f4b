//! The types every rollout strategy shares: what one pass observes, what a person requests, the
//! decision a pass returns, why a measurement could not be taken and the Event reasons a pass
//! notes. `analysis_run`, `lifecycle`, `canary` and `blue_green` build on them;
//! `controller::strategy` reads and applies them.

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{
    analysis::{TemplateError, Verdict},
    prometheus::QueryError,
    workload::Availability,
};
use crate::api::{AnalysisMetric, HealthStatusCode, RolloutPhase, RolloutStatus};

/// How soon to look again while waiting for Deployments to move (watches usually come first).
pub(super) const POLL: Duration = Duration::from_secs(2);
pub(super) const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// What a person asked for through `ferry.dev/rollout-request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Finish the current step (a pause, an inconclusive analysis) and go on.
    Promote,
    /// Skip the remaining steps.
    PromoteFull,
    Abort,
    /// Roll out an aborted revision again.
    Retry,
}

impl Request {
    /// Reads `promote@<time>` and friends; `None` for anything else.
    pub fn parse(value: &str) -> Option<Request> {
        let verb = value.split('@').next().unwrap_or_default();
        match verb {
            "promote" => Some(Request::Promote),
            "promote-full" => Some(Request::PromoteFull),
            "abort" => Some(Request::Abort),
            "retry" => Some(Request::Retry),
            _ => None,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Request::Promote => "promote",
            Request::PromoteFull => "promote-full",
            Request::Abort => "abort",
            Request::Retry => "retry",
        }
    }
}

/// What one pass sees.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The revision being synced (`main@sha1:…`).
    pub revision: &'a str,
    /// Hash of the pod template in Git.
    pub template_hash: &'a str,
    /// Replicas in Git.
    pub replicas: i32,
    /// The live primary's template hash (`None`: no primary yet, or one ferry never stamped).
    pub primary_hash: Option<&'a str>,
    pub primary: Availability,
    pub canary: Availability,
    /// The live canary's template hash.
    pub canary_hash: Option<&'a str>,
    /// The revision the primary was last synced to, which becomes the stable revision.
    pub last_applied_revision: Option<&'a str>,
    /// The rollout-request annotation's value, if any.
    pub request: Option<&'a str>,
    /// The hand-over of the canary's ReplicaSet to the primary is possible: the canary's pods run
    /// Git's template and selector as they are (or there is no canary yet), and no
    /// HorizontalPodAutoscaler owns the primary's count.
    pub handover: bool,
    /// The ReplicaSets the primary's Deployment controller owns, when counted (only while the
    /// primary is paused on the stable template; `None` also when they could not be listed).
    pub primary_sets: Option<OwnedSets>,
    pub now: Timestamp,
}

/// The ReplicaSets a primary owns, by whether they are empty (scaled to 0, no pod left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnedSets {
    pub empty: usize,
    pub busy: usize,
}

/// How the primary Deployment is applied this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Primary {
    /// As rendered from Git (stamped with Git's template hash).
    AsGit,
    /// The live (stable) pod template, with these replicas.
    Hold { replicas: i32 },
    /// Paused (`spec.paused`) for the hand-over of the canary's ReplicaSet: on the stable
    /// template at 0 replicas (`git: false`), or on Git's template at Git's replicas.
    Paused { git: bool },
}

/// Whether the canary Deployment exists this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    Absent,
    Present {
        replicas: i32,
    },
    /// Deleted with `propagationPolicy: Orphan`: its ReplicaSet and pods stay, for the paused
    /// primary to adopt.
    Orphaned,
}

/// Something worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub primary: Primary,
    pub canary: Canary,
    /// The canary's weight on the HTTPRoute (Gateway API routing); `None`: the route as in Git.
    pub route_weight: Option<i32>,
    /// Blue-green: the active Service selects the new version's pods.
    pub active_to_new: bool,
    /// Blue-green: the preview Service selects the new version's pods.
    pub preview_to_new: bool,
    /// `None` leaves `status.rollout` as it was (no rollout ever ran).
    pub status: Option<RolloutStatus>,
    /// What the Application's health is while the rollout decides it.
    pub health: Option<(HealthStatusCode, String)>,
    /// The rollout was aborted (now or earlier) and this revision is held back.
    pub aborted: bool,
    /// Look again within this time.
    pub requeue: Option<Duration>,
    pub notes: Vec<Note>,
    /// A rollout ended: its result (`Succeeded`, `Aborted`, `Superseded`) and how long it ran.
    pub finished: Option<(&'static str, Duration)>,
    /// Verdicts of the measurements taken this pass.
    pub measured: Vec<Verdict>,
    /// Delete the paused primary's ReplicaSets (all at 0 replicas) after the apply, so that its
    /// Deployment controller, once given Git's template, has none to scale up but the canary's.
    pub release_primary_sets: bool,
}

impl Decision {
    /// The Deployments as given, and nothing else to do: the route and Services as in Git, no
    /// health, requeue, Events or measurements.
    pub fn new(primary: Primary, canary: Canary, status: Option<RolloutStatus>) -> Decision {
        Decision {
            primary,
            canary,
            route_weight: None,
            active_to_new: false,
            preview_to_new: false,
            status,
            health: None,
            aborted: false,
            requeue: None,
            notes: vec![],
            finished: None,
            measured: vec![],
            release_primary_sets: false,
        }
    }
}

/// One measurement's raw outcome: the query's number (`None`: no data), or why it could not
/// be taken.
pub type Taken = Result<Option<f64>, MeasureError>;

/// Why a measurement could not be taken. Its text is the measurement's message in
/// `status.rollout`, counted against the metric's `consecutiveErrorLimit`.
///
/// `Clone` (the query's error behind an `Arc`) because one cause can stand for every
/// measurement of a pass: ferry's missing Prometheus client is the same for all of them.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MeasureError {
    /// Neither the metric nor ferry's `--prometheus-url` names a Prometheus.
    #[error("no Prometheus to ask: set prometheus.address on the metric or run ferry with --prometheus-url")]
    NoAddress,
    /// The metric names a Prometheus outside `--allowed-prometheus-urls`.
    #[error(
        "prometheus.address {address:?} is not one ferry may query (--allowed-prometheus-urls: {})",
        .allowed.join(", ")
    )]
    NotAllowed { address: String, allowed: Vec<String> },
    /// The query template refers to what it may not.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// ferry has no HTTP client for Prometheus; the text says why (it is made at start-up).
    #[error("{0}")]
    NoClient(String),
    #[error(transparent)]
    Query(Arc<QueryError>),
}

impl From<QueryError> for MeasureError {
    fn from(err: QueryError) -> MeasureError {
        MeasureError::Query(Arc::new(err))
    }
}

/// Whether a metric may query `address`: any when `allowed` (`--allowed-prometheus-urls`) is
/// empty, else only `default` (`--prometheus-url`) and the allowed ones. Otherwise any author
/// of an analysis could make ferry send GET requests to any URL it can reach (and read a JSON
/// answer's error back in the status).
pub fn permitted_address(
    address: &str,
    default: Option<&str>,
    allowed: &[String],
) -> Result<(), MeasureError> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if allowed.is_empty()
        || default.is_some_and(|d| same(d, address))
        || allowed.iter().any(|a| same(a, address))
    {
        return Ok(());
    }
    Err(MeasureError::NotAllowed { address: address.to_string(), allowed: allowed.to_vec() })
}

/// Takes measurements: Prometheus in the controller, a script in tests.
pub trait Measure {
    fn measure(&self, metric: &AnalysisMetric) -> impl Future<Output = Taken> + Send;
}

/// Event reasons.
pub const ROLLOUT_STARTED: &str = "RolloutStarted";
pub const ROLLOUT_STEP: &str = "RolloutStep";
pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
pub const ROLLOUT_PROMOTED: &str = "RolloutPromoted";
pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
pub const ANALYSIS_MEASURED: &str = "AnalysisMeasured";

pub(super) fn is_active(phase: RolloutPhase) -> bool {
    matches!(
        phase,
        RolloutPhase::Progressing | RolloutPhase::Paused | RolloutPhase::Analyzing | RolloutPhase::Promoting
    )
}

pub(super) fn elapsed(now: &Timestamp, since: Option<&Time>) -> Duration {
    let Some(since) = since else { return Duration::ZERO };
    let ms = now.as_millisecond() - since.0.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

/// `main@sha1:abcdef…` -> `main@abcdef0`.
pub(super) fn short(revision: &str) -> String {
    match revision.split_once("@sha1:") {
        Some((name, sha)) => format!("{name}@{}", &sha[..sha.len().min(7)]),
        None => revision.to_string(),
    }
}
