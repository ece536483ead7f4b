//! The I/O around the fleet rollout's planner ([`super::fleet`]) in a set's pass: the commit to
//! roll out (the template's source listed through the shared Git cache, as the pullRequests
//! generator lists its repository), the planner's inputs from the caches, its measurements
//! from Prometheus, its pins written into the Applications the template made, its Events, and
//! what the set's Ready condition says of it.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, runtime::events::EventType};
use serde_json::Value;

use super::{
    GeneratorError,
    fleet::{self, Fleet, LOCAL, MeasureStep, Member, Pin, StepVars, steps::Labels},
    generate::Generated,
};
use crate::{
    api::{
        AnalysisMetric, Application, ApplicationSet, Cluster, FleetRolloutPhase, FleetRolloutStatus,
        FleetStrategy, GitRef, ROLLOUT_REQUEST_ANNOTATION, Source, conditions as c,
    },
    controller::{Context, events, status::Phase},
    duration,
    rollout::{
        analysis::render_query,
        types::{MeasureError, Note, Taken, permitted_address},
    },
    source::{RepoUrl, SourceError, refs},
};

/// The reason of the Ready condition of a set whose rollout failed, and of its Event.
pub const ROLLOUT_FAILED: &str = fleet::FAILED;
/// The reason of the Ready condition of a set whose strategy cannot be followed as written.
pub const INVALID_STRATEGY: &str = "InvalidStrategy";
/// How often the template's source is listed when its `interval` says nothing usable.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(180);

/// Where the fleet rollout stands after this pass, and what to tell.
#[derive(Debug)]
pub struct Rollout {
    pub status: FleetRolloutStatus,
    pub notes: Vec<Note>,
    /// Look again within this time (an analysis due, the progress deadline).
    pub requeue: Option<Duration>,
}

/// Why the commit to roll out is not known; nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("spec.strategy rolls out Git commits: the template's source needs repoURL and ref")]
    NoGit,
    #[error(
        "spec.strategy rolls out one commit to every cluster: the template's source.{field} must not depend on generator parameters"
    )]
    Templated { field: &'static str },
    #[error("the template's source is not a valid Application source: {0}")]
    InvalidSource(#[source] serde_json::Error),
    /// Listing the refs of the template's repository (the lockdown, credentials, the listing).
    #[error("the template's source: {0}")]
    Listing(#[source] GeneratorError),
    /// The template's repoURL or ref is not one to resolve (a `fromApplication`, a bad name).
    #[error("the template's source: {0}")]
    InvalidRef(#[source] Box<SourceError>),
    /// The template's ref names nothing the repository has.
    #[error("the template's source: {0}")]
    Ref(#[source] Box<SourceError>),
}

impl TargetError {
    /// The reason of the Ready condition.
    pub fn reason(&self) -> &'static str {
        match self {
            TargetError::NoGit
            | TargetError::Templated { .. }
            | TargetError::InvalidSource(_)
            | TargetError::InvalidRef(_) => INVALID_STRATEGY,
            TargetError::Listing(_) | TargetError::Ref(_) => c::FETCH_FAILED,
        }
    }
}

/// The fleet rollout's pass: the commit, the plan, and its pins written into `wanted`. Returns
/// the rollout and the names of the Applications not to create (or touch) yet.
pub async fn pass(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    strategy: &FleetStrategy,
    clusters: &[Cluster],
    wanted: &mut BTreeMap<String, Generated>,
    existing: &BTreeMap<String, &Arc<Application>>,
) -> Result<(Rollout, BTreeSet<String>), TargetError> {
    let target = target(set, ctx, ns).await?;
    let labels: Labels = clusters.iter().map(|c| (c.name_any(), c.labels().clone())).collect();
    let members: Vec<Member> = wanted
        .iter()
        .map(|(name, g)| Member {
            app: name,
            cluster: g.spec.destination.as_ref().and_then(|d| d.cluster.as_deref()).unwrap_or(LOCAL),
            live: existing.get(name).map(|a| a.as_ref()),
        })
        .collect();
    let name = set.name_any();
    let fleet = Fleet {
        set: &name,
        strategy,
        members: &members,
        labels: &labels,
        target: &target,
        prev: set.status.as_ref().and_then(|s| s.rollout.as_ref()),
        request: set.annotations().get(ROLLOUT_REQUEST_ANNOTATION).map(String::as_str),
        now: Timestamp::now(),
    };
    let plan = fleet::plan(&fleet, &FleetMeasure { ctx, revision: &target, namespace: ns }).await;
    let deferred = pin(wanted, &plan.pins);
    Ok((Rollout { status: plan.status, notes: plan.notes, requeue: plan.requeue }, deferred))
}

/// Pins each Application's commit; returns the names of those not to create yet.
fn pin(wanted: &mut BTreeMap<String, Generated>, pins: &BTreeMap<String, Pin>) -> BTreeSet<String> {
    let mut deferred = BTreeSet::new();
    for (name, pin) in pins {
        match (pin, wanted.get_mut(name)) {
            (Pin::Commit(commit), Some(g)) => {
                g.spec.source.git_ref = Some(GitRef { commit: Some(commit.clone()), ..GitRef::default() });
            }
            (Pin::NotYet, _) => {
                deferred.insert(name.clone());
            }
            (Pin::Commit(_), None) => {}
        }
    }
    deferred
}

/// The commit the template's source names now: one ls-remote through the shared Git cache
/// (a listing by an Application or set on the same repository in the last half interval
/// serves), or the commit itself when the template pins one.
async fn target(set: &ApplicationSet, ctx: &Context, ns: &str) -> Result<String, TargetError> {
    let source = template_source(set)?;
    let (url, git_ref) = source.git().ok_or(TargetError::NoGit)?;
    let invalid = |e| TargetError::InvalidRef(Box::new(e));
    let redacted = RepoUrl::parse(url).map_err(invalid)?.redacted().to_string();
    let request = refs::RefRequest::from_git_ref(git_ref, &redacted).map_err(invalid)?;
    let max_age = ctx.options.git_ref_cache.min(interval(set) / 2);
    let listed = super::list_refs(set, ctx, ns, url, source.secret_ref.as_ref(), max_age).await;
    let refs = listed.map_err(TargetError::Listing)?;
    let revision = refs::select(&request, &refs, &redacted).map_err(|e| TargetError::Ref(Box::new(e)))?;
    Ok(revision.commit)
}

/// The template's source, which must name one repository, ref and Secret for every Application.
fn template_source(set: &ApplicationSet) -> Result<Source, TargetError> {
    let raw = set.spec.template.spec.get("source").cloned().unwrap_or(Value::Null);
    for field in ["repoURL", "ref", "secretRef"] {
        if raw.get(field).is_some_and(|v| v.to_string().contains("{{")) {
            return Err(TargetError::Templated { field });
        }
    }
    serde_json::from_value(raw).map_err(TargetError::InvalidSource)
}

/// How often the set looks for a new commit: as often as its Applications would have looked at
/// the ref themselves (the template's `interval`).
pub fn interval(set: &ApplicationSet) -> Duration {
    let text = set.spec.template.spec.get("interval").and_then(Value::as_str);
    text.and_then(duration::parse).unwrap_or(DEFAULT_INTERVAL)
}

/// Publishes the rollout's Events on the set (best effort).
pub async fn publish(ctx: &Context, set: &ApplicationSet, notes: &[Note]) {
    for note in notes {
        let type_ = if note.warning { EventType::Warning } else { EventType::Normal };
        events::on_object(ctx, set.object_ref(&()), type_, note.reason, &note.message).await;
    }
}

/// The set's Ready condition while it has a rollout: Ready once it completed, Reconciling while
/// it runs or waits for a person, Stalled when it failed; the message says what it waits for.
pub fn phase(note: &str, st: &FleetRolloutStatus) -> Phase {
    let message = match &st.message {
        Some(m) => format!("{note}; rollout of {}: {m}", fleet::progress::short(&st.revision)),
        None => note.to_string(),
    };
    match st.phase {
        FleetRolloutPhase::Completed => Phase::Ready { reason: c::RECONCILIATION_SUCCEEDED, message },
        FleetRolloutPhase::Paused => Phase::Reconciling { reason: c::ROLLOUT_PAUSED, message },
        FleetRolloutPhase::Progressing | FleetRolloutPhase::Analyzing => {
            Phase::Reconciling { reason: c::PROGRESSING, message }
        }
        FleetRolloutPhase::Failed => Phase::Stalled { reason: ROLLOUT_FAILED, message },
    }
}

/// A step's measurements from Prometheus, with ferry's Prometheus settings.
struct FleetMeasure<'a> {
    ctx: &'a Context,
    revision: &'a str,
    namespace: &'a str,
}

impl MeasureStep for FleetMeasure<'_> {
    fn measure(&self, metric: &AnalysisMetric, vars: StepVars<'_>) -> impl Future<Output = Taken> + Send {
        let options = &self.ctx.options;
        let default = options.prometheus_url.as_deref();
        let address = metric.prometheus.address.as_deref().or(default).map(str::to_string);
        let words = BTreeMap::from([
            ("revision", self.revision.to_string()),
            ("namespace", self.namespace.to_string()),
            ("step", vars.step.to_string()),
            ("clusters", vars.clusters.join("|")),
        ]);
        let query = render_query(&metric.prometheus.query, &words).map_err(MeasureError::from);
        let permitted = address
            .as_deref()
            .map_or(Ok(()), |a| permitted_address(a, default, &options.allowed_prometheus_urls));
        let prometheus = self.ctx.prometheus.clone().map_err(MeasureError::NoClient);
        async move {
            let address = address.ok_or(MeasureError::NoAddress)?;
            permitted?;
            Ok(prometheus?.query(&address, &query?).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(source: Value) -> ApplicationSet {
        serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationSet",
            "metadata": {"name": "fleet", "namespace": "team"},
            "spec": {
                "generators": [{"clusters": {}}],
                "template": {"metadata": {"name": "web-{{name}}"}, "spec": {"source": source, "interval": "1m"}},
                "strategy": {"steps": [{"selector": {"matchLabels": {"env": "staging"}}}]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_template_source_must_name_one_repository_and_ref_for_every_cluster() {
        let ok = set(
            json!({"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}, "path": "{{name}}"}),
        );
        assert_eq!(template_source(&ok).unwrap().path.as_deref(), Some("{{name}}"));
        assert_eq!(interval(&ok), Duration::from_secs(60));
        let templated = set(
            json!({"repoURL": "https://git.example.com/a.git", "ref": {"branch": "{{metadata.labels.branch}}"}}),
        );
        let err = template_source(&templated).unwrap_err();
        assert_eq!(err.reason(), INVALID_STRATEGY);
        assert_eq!(
            err.to_string(),
            "spec.strategy rolls out one commit to every cluster: the template's source.ref must not depend on generator parameters"
        );
        let chart = set(
            json!({"chart": {"repoURL": "https://charts.example.com", "name": "web", "version": "1.0.0"}}),
        );
        assert!(matches!(template_source(&chart).map(|s| s.git().is_none()), Ok(true)));
    }

    #[test]
    fn pins_replace_the_templates_ref_and_not_yet_defers() {
        let g = |name: &str| Generated {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            spec: serde_json::from_value(
                json!({"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}}),
            )
            .unwrap(),
        };
        let mut wanted = BTreeMap::from([("a".to_string(), g("a")), ("b".to_string(), g("b"))]);
        let pins =
            BTreeMap::from([("a".to_string(), Pin::Commit("c".repeat(40))), ("b".to_string(), Pin::NotYet)]);
        assert_eq!(pin(&mut wanted, &pins), BTreeSet::from(["b".to_string()]));
        let pinned = wanted["a"].spec.source.git_ref.clone().unwrap();
        assert_eq!((pinned.commit.as_deref(), pinned.branch), (Some("c".repeat(40).as_str()), None));
        assert_eq!(wanted["b"].spec.source.git_ref.as_ref().and_then(|r| r.branch.as_deref()), Some("main"));
    }

    #[test]
    fn the_ready_condition_says_what_the_rollout_waits_for() {
        let mut st = FleetRolloutStatus {
            revision: "a".repeat(40),
            step: 1,
            steps: 3,
            phase: FleetRolloutPhase::Paused,
            clusters: vec![],
            failed_cluster: None,
            message: Some("step 1/3 (staging-1) done; paused: run ferry promote --set fleet to go on".into()),
            step_started_at: None,
            promoted_step: None,
            analysis: None,
            handled_request: None,
        };
        let Phase::Reconciling { reason, message } = phase("3 Applications generated", &st) else { panic!() };
        assert_eq!(reason, c::ROLLOUT_PAUSED);
        assert_eq!(
            message,
            "3 Applications generated; rollout of aaaaaaa: step 1/3 (staging-1) done; paused: run ferry promote --set fleet to go on"
        );
        st.phase = FleetRolloutPhase::Failed;
        assert!(matches!(phase("x", &st), Phase::Stalled { reason: ROLLOUT_FAILED, .. }));
        st.phase = FleetRolloutPhase::Completed;
        assert!(matches!(phase("x", &st), Phase::Ready { .. }));
    }
}
