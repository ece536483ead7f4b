//! The ApplicationSet controller: generates Applications from a template, one per parameter set
//! of the set's generators, and keeps them in line with the generators.
//!
//! - [`generate`]: the pure part (matching pull request refs, selecting Clusters, filling the
//!   template, names), with [`selector`] (label selectors over Clusters).
//! - [`fleet`]: the fleet rollout of `spec.strategy` as a pure planner: which commit each
//!   Application pins, step by step over their clusters; [`strategy`]: its I/O in a pass (the
//!   commit from Git, measurements, pins, Events).
//! - This module: listing refs and Clusters, applying the Applications that are new or changed,
//!   deleting the ones whose parameter set is gone, and the status.
//!
//! Safety: when any generator fails (Git unreachable, a bad template), nothing is deleted: an
//! outage must not look like "every pull request was closed". Each way a pass can fall short is
//! a `NotConverged` variant, whose reason (GeneratorFailed, TemplateFailed, ApplyFailed) the
//! Ready condition shows. Steady state is one ref listing
//! per interval (shared with Applications on the same repository) and no writes: Applications
//! and the status are written only when they differ.

pub mod fleet;
pub mod generate;
pub mod selector;
mod strategy;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy},
    runtime::controller::Action,
};

use crate::{
    api::{
        APPLICATION_SET_LABEL, Application, ApplicationSet, ApplicationSetStatus, Cluster,
        FleetRolloutStatus, GeneratedApplication, GitRef, LocalObjectReference, PullRequestGenerator,
        conditions as c,
    },
    controller::{
        ClientError, Context,
        reconcile::StatusWriteError,
        status::{self, Phase},
        sync,
    },
    duration,
    source::{RemoteRef, SourceError, SourceSpec, credentials, credentials::SecretReadError},
    tenancy::Refusal,
};

use generate::{Generated, Params, TemplateError};
use strategy::{Rollout, TargetError};

/// The field manager of generated Applications.
pub const FIELD_MANAGER: &str = "ferry-applicationset";

const GENERATOR_FAILED: &str = "GeneratorFailed";
const TEMPLATE_FAILED: &str = "TemplateFailed";
const APPLY_FAILED: &str = "ApplyFailed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ApplicationSet has no namespace")]
    NoNamespace,
    #[error("writing the status of ApplicationSet {set}: {source}")]
    Status { set: String, source: StatusWriteError },
}

/// Why an ApplicationSet did not converge; each failure is the reason of its Ready condition.
#[derive(Debug, thiserror::Error)]
enum NotConverged {
    /// A generator could not list its parameter sets: nothing is written.
    #[error("generator {index} ({kind}): {source}")]
    Generator { index: usize, kind: &'static str, source: GeneratorError },
    /// The Clusters of the namespace could not be listed (for a clusters generator or the
    /// strategy's steps): nothing is written.
    #[error("listing the Clusters of namespace {namespace}: {failure}")]
    Clusters { namespace: String, failure: WriteFailure },
    /// The commit `spec.strategy` rolls out is not known: nothing is written.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Some parameter sets made no Application (whose name is then unknown): nothing is deleted.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Template(Vec<Problem>),
    /// Applying (`action`: "applying") or deleting ("deleting") a generated Application.
    #[error("{action} Application {app}: {failure}")]
    Write { action: &'static str, app: String, failure: WriteFailure },
}

impl NotConverged {
    /// The reason of the Ready condition.
    fn reason(&self) -> &'static str {
        match self {
            NotConverged::Generator { .. } | NotConverged::Clusters { .. } => GENERATOR_FAILED,
            NotConverged::Target(e) => e.reason(),
            NotConverged::Template(_) => TEMPLATE_FAILED,
            NotConverged::Write { .. } => APPLY_FAILED,
        }
    }
}

/// Why the refs of a repository (a `pullRequests` generator's, the strategy's template source)
/// could not be listed.
#[derive(Debug, thiserror::Error)]
enum GeneratorError {
    /// The tenancy lockdown refuses its repository or the ServiceAccount it would read as.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(
        "the template's serviceAccountName must not depend on generator parameters when a generator reads a secretRef"
    )]
    TemplatedServiceAccount,
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Reading its `secretRef`, worded as an Application's sync words it.
    #[error("{}", credentials_words(.0))]
    Credentials(#[source] Box<SecretReadError>),
    /// Listing the repository's refs.
    #[error(transparent)]
    List(Box<SourceError>),
}

/// A Secret that cannot be read is "reading Git credentials: ..."; one without usable
/// credentials says only what is wrong with them.
fn credentials_words(err: &SecretReadError) -> String {
    match err {
        SecretReadError::Invalid(e) => e.to_string(),
        other => format!("reading Git credentials: {other}"),
    }
}

/// A parameter set that made no Application.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("two parameter sets make the name {0}; the first one is kept")]
    SameName(String),
    #[error("Application {app} exists and {owner}; it is left alone")]
    Foreign { app: String, owner: Foreign },
}

/// Whose an Application of a generated name is, when not this set's.
#[derive(Debug)]
enum Foreign {
    OtherSet(String),
    NotGenerated,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::OtherSet(set) => write!(f, "belongs to ApplicationSet {set}"),
            Foreign::NotGenerated => f.write_str("was not generated by this ApplicationSet"),
        }
    }
}

/// Why a call to the API server failed: applying or deleting a generated Application, listing
/// Clusters.
#[derive(Debug, thiserror::Error)]
enum WriteFailure {
    #[error("{}", crate::kube_util::api_words(.0))]
    Api(#[source] kube::Error),
    #[error("no answer in time")]
    Timeout,
}

/// Reconciles one ApplicationSet.
pub async fn reconcile(set: Arc<ApplicationSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = set.namespace().ok_or(Error::NoNamespace)?;
    let name = set.name_any();
    let existing = owned(&ctx, &set, &ns);
    let Converged { outcome, rollout } = converge(&set, &ctx, &ns, &existing).await;
    if let Some(r) = &rollout {
        strategy::publish(&ctx, &set, &r.notes).await;
    }
    let phase = match (&outcome, &rollout) {
        (Ok(note), Some(r)) => strategy::phase(note, &r.status),
        (Ok(note), None) => Phase::Ready { reason: c::RECONCILIATION_SUCCEEDED, message: note.clone() },
        (Err(e), _) => Phase::Stalled { reason: e.reason(), message: e.to_string() },
    };
    if let Err(e) = &outcome {
        tracing::warn!(set = %format_args!("{ns}/{name}"), reason = e.reason(), message = %e, "ApplicationSet not converged");
    }
    // The status lists what the cache shows; this pass's writes come back as watch events,
    // which reconcile the set again. A pass that wrote no pins keeps the rollout as it was.
    let prev = set.status.clone().unwrap_or_default();
    let rollout_status = rollout.as_ref().map(|r| r.status.clone()).or(prev.rollout.clone());
    let next = next_status(&set, &prev, &existing, &phase, rollout_status);
    if set.status.as_ref() != Some(&next) {
        write_status(&ctx, &set, &ns, &next).await?;
    }
    Ok(requeue(&set, outcome.is_ok(), rollout.as_ref()))
}

/// Status writes and other errors that escaped reconcile: retry soon.
pub fn error_policy(set: Arc<ApplicationSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(set = %set.name_any(), %error, "ApplicationSet reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

fn next_status(
    set: &ApplicationSet,
    prev: &ApplicationSetStatus,
    generated: &[Arc<Application>],
    phase: &Phase,
    rollout: Option<FleetRolloutStatus>,
) -> ApplicationSetStatus {
    let now = Time(Timestamp::now());
    ApplicationSetStatus {
        observed_generation: set.metadata.generation,
        conditions: status::conditions_for(&prev.conditions, phase, set.metadata.generation, &now),
        generated: generated.len() as i32,
        applications: generated
            .iter()
            .map(|app| {
                let st = app.status.as_ref();
                GeneratedApplication {
                    name: app.name_any(),
                    sync: st.and_then(|s| s.sync.as_ref()).map(|s| s.status),
                    health: st.and_then(|s| s.health.as_ref()).map(|h| h.status),
                    revision: st.and_then(|s| s.sync.as_ref()).and_then(|s| s.short_revision.clone()),
                }
            })
            .collect(),
        // A set whose strategy was removed has no rollout any more.
        rollout: rollout.filter(|_| set.spec.strategy.is_some()),
    }
}

/// Clusters are not watched: a set that selects them looks again this often.
const CLUSTERS_INTERVAL: Duration = Duration::from_secs(60);

/// When to look again: at the shortest of the generators' intervals (a pullRequests listing,
/// new Clusters), the strategy's (a new commit; an analysis due, a progress deadline) and, after
/// a failure, 30 s at most.
fn requeue(set: &ApplicationSet, converged: bool, rollout: Option<&Rollout>) -> Action {
    let generators = set.spec.generators.iter();
    let mut every: Vec<Duration> = generators
        .clone()
        .filter_map(|g| g.pull_requests.as_ref())
        .filter_map(|p| duration::parse(&p.interval))
        .collect();
    if generators.clone().any(|g| g.clusters.is_some()) {
        every.push(CLUSTERS_INTERVAL);
    }
    if set.spec.strategy.is_some() {
        every.push(strategy::interval(set));
        every.extend(rollout.and_then(|r| r.requeue));
    }
    let soonest = every.into_iter().min();
    match (converged, soonest) {
        (false, Some(i)) => Action::requeue(i.min(Duration::from_secs(30))),
        (false, None) => Action::requeue(Duration::from_secs(60)),
        (true, Some(i)) => Action::requeue(i),
        // A list generator changes only with the spec, which wakes the set anyway.
        (true, None) => Action::await_change(),
    }
}

/// What a pass did: a note for the Ready condition, or why it fell short; and the fleet
/// rollout, when the pass wrote its pins.
struct Converged {
    outcome: Result<String, NotConverged>,
    rollout: Option<Rollout>,
}

impl From<NotConverged> for Converged {
    fn from(e: NotConverged) -> Converged {
        Converged { outcome: Err(e), rollout: None }
    }
}

/// Applies what the generators want (with the commits the strategy pins) and deletes what they
/// no longer want.
async fn converge(set: &ApplicationSet, ctx: &Context, ns: &str, existing: &[Arc<Application>]) -> Converged {
    let planned = match plan(set, ctx, ns, existing).await {
        Ok(planned) => planned,
        Err(e) => return e.into(),
    };
    let Planned { wanted, deferred, mut problems, over_limit, rollout } = planned;
    let pass = Pass {
        set,
        ctx,
        ns,
        api: Api::namespaced(ctx.client.clone(), ns),
        existing: existing.iter().map(|a| (a.name_any(), a)).collect(),
    };
    let applied = match pass.apply(&wanted, &deferred, &mut problems).await {
        Ok(applied) => applied,
        Err(e) => return e.into(),
    };
    let written = |outcome| Converged { outcome, rollout };
    if !problems.is_empty() {
        // Some parameter set could not be turned into an Application: its Application (whose
        // name is unknown) must not be deleted, so nothing is.
        return written(Err(NotConverged::Template(problems)));
    }
    let deleted = match pass.delete_unwanted(&wanted).await {
        Ok(deleted) => deleted,
        Err(e) => return written(Err(e)),
    };
    if !applied.is_empty() || !deleted.is_empty() {
        tracing::info!(set = %format_args!("{ns}/{}", set.name_any()), ?applied, ?deleted, "ApplicationSet converged");
    }
    let limit = set.spec.max_applications as usize;
    let mut note = format!("{} generated", sync::count(wanted.len() - deferred.len(), "Application"));
    if !deferred.is_empty() {
        note.push_str(&format!(
            "; {} waiting for their step",
            sync::count(deferred.len(), "more Application")
        ));
    }
    if over_limit > 0 {
        note.push_str(&format!(
            "; {} waiting: maxApplications is {limit}",
            sync::count(over_limit, "more parameter set")
        ));
    }
    written(Ok(note))
}

/// What a pass means to write, before anything is.
struct Planned {
    wanted: BTreeMap<String, Generated>,
    /// Wanted Applications not to create (nor touch) yet: their step has not come.
    deferred: BTreeSet<String>,
    problems: Vec<Problem>,
    over_limit: usize,
    rollout: Option<Rollout>,
}

/// The parameter sets, the Applications they make and, with a strategy, the commit each pins.
async fn plan(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    existing: &[Arc<Application>],
) -> Result<Planned, NotConverged> {
    let needs_clusters =
        set.spec.strategy.is_some() || set.spec.generators.iter().any(|g| g.clusters.is_some());
    let clusters = if needs_clusters { list_clusters(ctx, ns).await? } else { Vec::new() };
    let params = parameter_sets(set, ctx, ns, &clusters).await?;
    let limit = set.spec.max_applications as usize;
    let Wanted { mut wanted, problems, over_limit } = wanted(set, &params, limit);
    let (mut deferred, mut rollout) = (BTreeSet::new(), None);
    if let Some(strategy) = &set.spec.strategy {
        let live: BTreeMap<String, &Arc<Application>> = existing.iter().map(|a| (a.name_any(), a)).collect();
        let (r, d) = strategy::pass(set, ctx, ns, strategy, &clusters, &mut wanted, &live).await?;
        (rollout, deferred) = (Some(r), d);
    }
    Ok(Planned { wanted, deferred, problems, over_limit, rollout })
}

/// The Clusters of the set's namespace, through the API with ferry's own identity (the set
/// selects among its own namespace's Clusters only).
async fn list_clusters(ctx: &Context, ns: &str) -> Result<Vec<Cluster>, NotConverged> {
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);
    let failure = |failure| NotConverged::Clusters { namespace: ns.to_string(), failure };
    match tokio::time::timeout(ctx.options.api_timeout, api.list(&ListParams::default())).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(e)) => Err(failure(WriteFailure::Api(e))),
        Err(_) => Err(failure(WriteFailure::Timeout)),
    }
}

/// The Applications the template makes from the parameter sets, by name.
struct Wanted {
    wanted: BTreeMap<String, Generated>,
    /// Parameter sets that made no Application (a bad template, a name made twice).
    problems: Vec<Problem>,
    /// Parameter sets past `maxApplications`.
    over_limit: usize,
}

/// The Applications the template makes, at most `limit` of them (the first parameter sets win).
fn wanted(set: &ApplicationSet, params: &[Params], limit: usize) -> Wanted {
    let mut out = Wanted { wanted: BTreeMap::new(), problems: Vec::new(), over_limit: 0 };
    for p in params {
        match generate::generate(&set.spec.template, p) {
            Ok(g) if out.wanted.contains_key(&g.name) => out.problems.push(Problem::SameName(g.name)),
            Ok(_) if out.wanted.len() >= limit => out.over_limit += 1,
            Ok(g) => {
                out.wanted.insert(g.name.clone(), g);
            }
            Err(e) => out.problems.push(e.into()),
        }
    }
    out
}

/// One pass over a set's Applications: where they live, and what the cache shows of them.
struct Pass<'a> {
    set: &'a ApplicationSet,
    ctx: &'a Context,
    ns: &'a str,
    api: Api<Application>,
    existing: BTreeMap<String, &'a Arc<Application>>,
}

impl Pass<'_> {
    /// Applies the wanted Applications that are new or differ from the live ones, but the
    /// deferred ones. One of that name that is not this set's is left alone, as a problem.
    /// Returns the names applied.
    async fn apply(
        &self,
        wanted: &BTreeMap<String, Generated>,
        deferred: &BTreeSet<String>,
        problems: &mut Vec<Problem>,
    ) -> Result<Vec<String>, NotConverged> {
        let (set, ns) = (self.set, self.ns);
        let mut applied = Vec::new();
        for (name, g) in wanted.iter().filter(|(name, _)| !deferred.contains(*name)) {
            if self.existing.get(name).is_some_and(|live| matches(live, g, set)) {
                continue;
            }
            if let Some(owner) = foreign(self.ctx, ns, name, set) {
                problems.push(Problem::Foreign { app: format!("{ns}/{name}"), owner });
                continue;
            }
            let body = Patch::Apply(manifest(set, g));
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let patch = self.api.patch(name, &params, &body);
            let failure = match tokio::time::timeout(self.ctx.options.api_timeout, patch).await {
                Ok(Ok(_)) => {
                    applied.push(name.clone());
                    continue;
                }
                Ok(Err(e)) => WriteFailure::Api(e),
                Err(_) => WriteFailure::Timeout,
            };
            return Err(NotConverged::Write { action: "applying", app: format!("{ns}/{name}"), failure });
        }
        Ok(applied)
    }

    /// Deletes this set's Applications that no parameter set wants any more (and that are not
    /// going already). Returns the names deleted.
    async fn delete_unwanted(
        &self,
        wanted: &BTreeMap<String, Generated>,
    ) -> Result<Vec<String>, NotConverged> {
        let ns = self.ns;
        let mut deleted = Vec::new();
        let going = |a: &Application| a.metadata.deletion_timestamp.is_some();
        for (name, _) in self.existing.iter().filter(|(n, a)| !wanted.contains_key(*n) && !going(a)) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            let deleting = tokio::time::timeout(self.ctx.options.api_timeout, self.api.delete(name, &dp));
            let failure = match deleting.await {
                Ok(Ok(_)) => {
                    deleted.push(name.clone());
                    continue;
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => continue,
                Ok(Err(e)) => WriteFailure::Api(e),
                Err(_) => WriteFailure::Timeout,
            };
            return Err(NotConverged::Write { action: "deleting", app: format!("{ns}/{name}"), failure });
        }
        Ok(deleted)
    }
}

/// Every parameter set of every generator, in generator order.
async fn parameter_sets(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    clusters: &[Cluster],
) -> Result<Vec<Params>, NotConverged> {
    let mut all = Vec::new();
    for (index, generator) in set.spec.generators.iter().enumerate() {
        if let Some(list) = &generator.list {
            all.extend(list.elements.iter().cloned());
        }
        if let Some(selected) = &generator.clusters {
            all.extend(generate::cluster_params(&selected.selector, clusters));
        }
        if let Some(pr) = &generator.pull_requests {
            let refs = pull_requests(set, ctx, ns, pr).await.map_err(|source| NotConverged::Generator {
                index,
                kind: "pullRequests",
                source,
            })?;
            all.extend(generate::pull_request_params(&pr.refs, &refs));
        }
    }
    Ok(all)
}

/// The refs of a `pullRequests` generator's repository.
async fn pull_requests(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    pr: &PullRequestGenerator,
) -> Result<Arc<Vec<RemoteRef>>, GeneratorError> {
    let interval = duration::parse(&pr.interval).unwrap_or(Duration::from_secs(60));
    // A listing made by another set or an Application on the same repository in the last half
    // interval is as good as a new one.
    let max_age = ctx.options.git_ref_cache.min(interval / 2);
    list_refs(set, ctx, ns, &pr.repo_url, pr.secret_ref.as_ref(), max_age).await
}

/// The refs of `repo_url`, read with the credentials of `secret_ref` (as the template's
/// ServiceAccount), from a listing made at most `max_age` ago when there is one.
async fn list_refs(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    repo_url: &str,
    secret_ref: Option<&LocalObjectReference>,
    max_age: Duration,
) -> Result<Arc<Vec<RemoteRef>>, GeneratorError> {
    // The same lockdown as an Application's source: no listing of a repository the namespace
    // may not read.
    ctx.tenancy(ns).check_source(repo_url)?;
    let client = match secret_ref {
        Some(_) => generator_client(set, ctx, ns)?,
        None => ctx.client.clone(),
    };
    let credentials = credentials::from_secret_ref(&client, ctx.options.api_timeout, ns, secret_ref)
        .await
        .map_err(|e| GeneratorError::Credentials(Box::new(e)))?;
    let spec = SourceSpec { repo_url: repo_url.to_string(), git_ref: GitRef::default(), credentials };
    ctx.git.list_within(&spec, max_age).await.map_err(|e| GeneratorError::List(Box::new(e)))
}

/// Who reads a generator's `secretRef`: the ServiceAccount the template's Applications act as,
/// so that a set cannot send a Secret its own Applications could not read to a Git server its
/// author controls. Without one in the template: the tenancy's default ServiceAccount, else ferry (refused
/// when ferry requires a ServiceAccount).
fn generator_client(set: &ApplicationSet, ctx: &Context, ns: &str) -> Result<kube::Client, GeneratorError> {
    let named = set.spec.template.spec.get("serviceAccountName").and_then(|v| v.as_str());
    if named.is_some_and(|sa| sa.contains("{{")) {
        return Err(GeneratorError::TemplatedServiceAccount);
    }
    let sa = ctx.tenancy(ns).acting_as(named)?;
    Ok(ctx.local.client_for(ns, sa.as_deref())?)
}

/// The Applications this set generated (by label and owner), from the controller's cache.
fn owned(ctx: &Context, set: &ApplicationSet, ns: &str) -> Vec<Arc<Application>> {
    let mut apps: Vec<Arc<Application>> = ctx
        .apps
        .state()
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(ns))
        .filter(|a| a.labels().get(APPLICATION_SET_LABEL) == Some(&set.name_any()))
        .filter(|a| owned_by(a, set))
        .collect();
    apps.sort_by_key(|a| a.name_any());
    apps
}

fn owned_by(app: &Application, set: &ApplicationSet) -> bool {
    let uid = set.metadata.uid.as_deref();
    app.owner_references().iter().any(|o| o.kind == "ApplicationSet" && Some(o.uid.as_str()) == uid)
}

/// Why an Application of that name is not this set's to write, if it is not.
fn foreign(ctx: &Context, ns: &str, name: &str, set: &ApplicationSet) -> Option<Foreign> {
    let key = kube::runtime::reflector::ObjectRef::new(name).within(ns);
    let live = ctx.apps.get(&key)?;
    if owned_by(&live, set) {
        return None;
    }
    Some(match live.owner_references().iter().find(|o| o.kind == "ApplicationSet") {
        Some(o) => Foreign::OtherSet(o.name.clone()),
        None => Foreign::NotGenerated,
    })
}

/// Whether the live Application already is what the template makes.
fn matches(live: &Application, g: &Generated, set: &ApplicationSet) -> bool {
    let has_all = |live: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| live.get(k) == Some(v))
    };
    live.spec == g.spec
        && has_all(live.labels(), &labels(set, g))
        && has_all(live.annotations(), &g.annotations)
        && owned_by(live, set)
}

fn labels(set: &ApplicationSet, g: &Generated) -> BTreeMap<String, String> {
    let mut labels = g.labels.clone();
    labels.insert(APPLICATION_SET_LABEL.to_string(), set.name_any());
    labels
}

/// The generated Application as applied: owned by the set (so deleting the set deletes it).
fn manifest(set: &ApplicationSet, g: &Generated) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: ApplicationSet::api_version(&()).into_owned(),
        kind: ApplicationSet::kind(&()).into_owned(),
        name: set.name_any(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    serde_json::json!({
        "apiVersion": Application::api_version(&()),
        "kind": Application::kind(&()),
        "metadata": {
            "name": g.name,
            "labels": labels(set, g),
            "annotations": g.annotations,
            "ownerReferences": [owner],
        },
        "spec": g.spec,
    })
}

async fn write_status(
    ctx: &Context,
    set: &ApplicationSet,
    ns: &str,
    next: &ApplicationSetStatus,
) -> Result<(), Error> {
    let name = set.name_any();
    crate::controller::reconcile::apply_status::<ApplicationSet>(ctx, ns, &name, next)
        .await
        .map_err(|source| Error::Status { set: format!("{ns}/{name}"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Ready condition of a set that did not converge reads as it did before the failures
    /// were typed.
    #[test]
    fn each_failure_keeps_its_reason_and_words() {
        let missing = SecretReadError::Missing { namespace: "team".into(), name: "creds".into() };
        let cases = [
            (
                NotConverged::Generator {
                    index: 0,
                    kind: "pullRequests",
                    source: GeneratorError::TemplatedServiceAccount,
                },
                GENERATOR_FAILED,
                "generator 0 (pullRequests): the template's serviceAccountName must not depend on generator parameters when a generator reads a secretRef",
            ),
            (
                NotConverged::Generator {
                    index: 1,
                    kind: "pullRequests",
                    source: GeneratorError::Credentials(Box::new(missing)),
                },
                GENERATOR_FAILED,
                "generator 1 (pullRequests): reading Git credentials: Secret team/creds (secretRef) does not exist",
            ),
            (
                NotConverged::Template(vec![
                    Problem::SameName("pr-1".into()),
                    Problem::Foreign { app: "team/pr-2".into(), owner: Foreign::OtherSet("other".into()) },
                    Problem::Foreign { app: "team/pr-3".into(), owner: Foreign::NotGenerated },
                ]),
                TEMPLATE_FAILED,
                "two parameter sets make the name pr-1; the first one is kept; Application team/pr-2 exists and belongs to ApplicationSet other; it is left alone; Application team/pr-3 exists and was not generated by this ApplicationSet; it is left alone",
            ),
            (
                NotConverged::Write {
                    action: "deleting",
                    app: "team/pr-1".into(),
                    failure: WriteFailure::Timeout,
                },
                APPLY_FAILED,
                "deleting Application team/pr-1: no answer in time",
            ),
            (
                NotConverged::Clusters { namespace: "team".into(), failure: WriteFailure::Timeout },
                GENERATOR_FAILED,
                "listing the Clusters of namespace team: no answer in time",
            ),
            (
                NotConverged::Target(TargetError::NoGit),
                strategy::INVALID_STRATEGY,
                "spec.strategy rolls out Git commits: the template's source needs repoURL and ref",
            ),
            (
                NotConverged::Target(TargetError::Listing(GeneratorError::TemplatedServiceAccount)),
                c::FETCH_FAILED,
                "the template's source: the template's serviceAccountName must not depend on generator parameters when a generator reads a secretRef",
            ),
        ];
        for (err, reason, words) in cases {
            assert_eq!((err.reason(), err.to_string().as_str()), (reason, words));
        }
    }
}
