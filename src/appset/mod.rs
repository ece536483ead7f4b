//! The ApplicationSet controller: generates Applications from a template, one per parameter set
//! of the set's generators, and keeps them in line with the generators.
//!
//! - [`generate`]: the pure part (matching pull request refs, filling the template, names).
//! - This module: listing refs, applying the Applications that are new or changed, deleting
//!   the ones whose parameter set is gone, and the status.
//!
//! Safety: when any generator fails (Git unreachable, a bad template), nothing is deleted: an
//! outage must not look like "every pull request was closed". Steady state is one ref listing
//! per interval (shared with Applications on the same repository) and no writes: Applications
//! and the status are written only when they differ.

pub mod generate;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PropagationPolicy},
    runtime::controller::Action,
};

use crate::{
    api::{
        APPLICATION_SET_LABEL, Application, ApplicationSet, ApplicationSetStatus, GeneratedApplication,
        GitRef, conditions as c,
    },
    controller::{
        Context,
        error::SyncError,
        status::{self, Phase},
        sync,
    },
    duration,
    source::{SourceSpec, credentials},
};

use generate::{Generated, Params};

/// The field manager of generated Applications.
pub const FIELD_MANAGER: &str = "ferry-applicationset";

const GENERATOR_FAILED: &str = "GeneratorFailed";
const TEMPLATE_FAILED: &str = "TemplateFailed";
const APPLY_FAILED: &str = "ApplyFailed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ApplicationSet has no namespace")]
    NoNamespace,
    #[error("writing the status of ApplicationSet {set}: {message}")]
    Status { set: String, message: String },
}

/// Reconciles one ApplicationSet.
pub async fn reconcile(set: Arc<ApplicationSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = set.namespace().ok_or(Error::NoNamespace)?;
    let name = set.name_any();
    let existing = owned(&ctx, &set, &ns);
    let outcome = converge(&set, &ctx, &ns, &existing).await;
    // The status lists what the cache shows; this pass's writes come back as watch events,
    // which reconcile the set again.
    let generated = existing;
    let phase = match &outcome {
        Ok(note) => Phase::Ready { reason: c::RECONCILIATION_SUCCEEDED, message: note.clone() },
        Err((reason, message)) => Phase::Stalled { reason, message: message.clone() },
    };
    if let Err((reason, message)) = &outcome {
        tracing::warn!(set = %format_args!("{ns}/{name}"), reason, %message, "ApplicationSet not converged");
    }
    let prev = set.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let next = ApplicationSetStatus {
        observed_generation: set.metadata.generation,
        conditions: status::conditions_for(&prev.conditions, &phase, set.metadata.generation, &now),
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
    };
    if set.status.as_ref() != Some(&next) {
        write_status(&ctx, &set, &ns, &next).await?;
    }
    let interval = set
        .spec
        .generators
        .iter()
        .filter_map(|g| g.pull_requests.as_ref())
        .filter_map(|p| duration::parse(&p.interval))
        .min();
    Ok(match (outcome, interval) {
        (Err(_), Some(i)) => Action::requeue(i.min(Duration::from_secs(30))),
        (Err(_), None) => Action::requeue(Duration::from_secs(60)),
        (Ok(_), Some(i)) => Action::requeue(i),
        // A list generator changes only with the spec, which wakes the set anyway.
        (Ok(_), None) => Action::await_change(),
    })
}

/// Status writes and other errors that escaped reconcile: retry soon.
pub fn error_policy(set: Arc<ApplicationSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(set = %set.name_any(), %error, "ApplicationSet reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Applies what the generators want and deletes what they no longer want. Ok: a note for the
/// Ready condition; Err: (reason, message).
async fn converge(
    set: &ApplicationSet,
    ctx: &Context,
    ns: &str,
    existing: &[Arc<Application>],
) -> Result<String, (&'static str, String)> {
    let params = parameter_sets(set, ctx, ns).await.map_err(|m| (GENERATOR_FAILED, m))?;
    let limit = set.spec.max_applications as usize;
    let Wanted { wanted, mut problems, over_limit } = wanted(set, &params, limit);
    let pass = Pass {
        set,
        ctx,
        ns,
        api: Api::namespaced(ctx.client.clone(), ns),
        existing: existing.iter().map(|a| (a.name_any(), a)).collect(),
    };
    let applied = pass.apply(&wanted, &mut problems).await?;
    if !problems.is_empty() {
        // Some parameter set could not be turned into an Application: its Application (whose
        // name is unknown) must not be deleted, so nothing is.
        return Err((TEMPLATE_FAILED, problems.join("; ")));
    }
    let deleted = pass.delete_unwanted(&wanted).await?;
    if !applied.is_empty() || !deleted.is_empty() {
        tracing::info!(set = %format_args!("{ns}/{}", set.name_any()), ?applied, ?deleted, "ApplicationSet converged");
    }
    let mut note = format!("{} generated", sync::count(wanted.len(), "Application"));
    if over_limit > 0 {
        note.push_str(&format!(
            "; {} waiting: maxApplications is {limit}",
            sync::count(over_limit, "more parameter set")
        ));
    }
    Ok(note)
}

/// The Applications the template makes from the parameter sets, by name.
struct Wanted {
    wanted: BTreeMap<String, Generated>,
    /// Parameter sets that made no Application (a bad template, a name made twice).
    problems: Vec<String>,
    /// Parameter sets past `maxApplications`.
    over_limit: usize,
}

/// The Applications the template makes, at most `limit` of them (the first parameter sets win).
fn wanted(set: &ApplicationSet, params: &[Params], limit: usize) -> Wanted {
    let mut out = Wanted { wanted: BTreeMap::new(), problems: Vec::new(), over_limit: 0 };
    for p in params {
        match generate::generate(&set.spec.template, p) {
            Ok(g) if out.wanted.contains_key(&g.name) => out
                .problems
                .push(format!("two parameter sets make the name {}; the first one is kept", g.name)),
            Ok(_) if out.wanted.len() >= limit => out.over_limit += 1,
            Ok(g) => {
                out.wanted.insert(g.name.clone(), g);
            }
            Err(e) => out.problems.push(e),
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
    /// Applies the wanted Applications that are new or differ from the live ones. One of that
    /// name that is not this set's is left alone, as a problem. Returns the names applied.
    async fn apply(
        &self,
        wanted: &BTreeMap<String, Generated>,
        problems: &mut Vec<String>,
    ) -> Result<Vec<String>, (&'static str, String)> {
        let (set, ns) = (self.set, self.ns);
        let mut applied = Vec::new();
        for (name, g) in wanted {
            if self.existing.get(name).is_some_and(|live| matches(live, g, set)) {
                continue;
            }
            if let Some(other) = foreign(self.ctx, ns, name, set) {
                problems.push(format!("Application {ns}/{name} exists and {other}; it is left alone"));
                continue;
            }
            let body = Patch::Apply(manifest(set, g));
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let patch = self.api.patch(name, &params, &body);
            match tokio::time::timeout(self.ctx.options.api_timeout, patch).await {
                Ok(Ok(_)) => applied.push(name.clone()),
                Ok(Err(e)) => {
                    return Err((
                        APPLY_FAILED,
                        format!("applying Application {ns}/{name}: {}", crate::kube_util::api_words(&e)),
                    ));
                }
                Err(_) => {
                    return Err((
                        APPLY_FAILED,
                        format!("applying Application {ns}/{name}: no answer in time"),
                    ));
                }
            }
        }
        Ok(applied)
    }

    /// Deletes this set's Applications that no parameter set wants any more (and that are not
    /// going already). Returns the names deleted.
    async fn delete_unwanted(
        &self,
        wanted: &BTreeMap<String, Generated>,
    ) -> Result<Vec<String>, (&'static str, String)> {
        let ns = self.ns;
        let mut deleted = Vec::new();
        let going = |a: &Application| a.metadata.deletion_timestamp.is_some();
        for (name, _) in self.existing.iter().filter(|(n, a)| !wanted.contains_key(*n) && !going(a)) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match tokio::time::timeout(self.ctx.options.api_timeout, self.api.delete(name, &dp)).await {
                Ok(Ok(_)) => deleted.push(name.clone()),
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
                Ok(Err(e)) => {
                    return Err((
                        APPLY_FAILED,
                        format!("deleting Application {ns}/{name}: {}", crate::kube_util::api_words(&e)),
                    ));
                }
                Err(_) => {
                    return Err((
                        APPLY_FAILED,
                        format!("deleting Application {ns}/{name}: no answer in time"),
                    ));
                }
            }
        }
        Ok(deleted)
    }
}

/// Every parameter set of every generator, in generator order.
async fn parameter_sets(set: &ApplicationSet, ctx: &Context, ns: &str) -> Result<Vec<Params>, String> {
    let mut all = Vec::new();
    for (i, generator) in set.spec.generators.iter().enumerate() {
        if let Some(list) = &generator.list {
            all.extend(list.elements.iter().cloned());
        }
        if let Some(pr) = &generator.pull_requests {
            // The same lockdown as an Application's source: no listing of a repository the
            // namespace may not read.
            ctx.tenancy(ns)
                .check_source(&pr.repo_url)
                .map_err(|e| format!("generator {i} (pullRequests): {e}"))?;
            let client = match &pr.secret_ref {
                Some(_) => generator_client(set, ctx, ns)
                    .map_err(|e| format!("generator {i} (pullRequests): {e}"))?,
                None => ctx.client.clone(),
            };
            let credentials =
                credentials::from_secret_ref(&client, ctx.options.api_timeout, ns, pr.secret_ref.as_ref())
                    .await
                    .map_err(|e| format!("generator {i} (pullRequests): {}", SyncError::from(e)))?;
            let spec = SourceSpec { repo_url: pr.repo_url.clone(), git_ref: GitRef::default(), credentials };
            let interval = duration::parse(&pr.interval).unwrap_or(Duration::from_secs(60));
            // A listing made by another set or an Application on the same repository in the
            // last half interval is as good as a new one.
            let max_age = ctx.options.git_ref_cache.min(interval / 2);
            let refs = ctx
                .git
                .list_within(&spec, max_age)
                .await
                .map_err(|e| format!("generator {i} (pullRequests): {e}"))?;
            all.extend(generate::pull_request_params(&pr.refs, &refs));
        }
    }
    Ok(all)
}

/// Who reads a generator's `secretRef`: the ServiceAccount the template's Applications act as,
/// so that a set cannot send a Secret its own Applications could not read to a Git server its
/// author controls. Without one in the template: the tenancy's default ServiceAccount, else ferry (refused
/// when ferry requires a ServiceAccount).
fn generator_client(set: &ApplicationSet, ctx: &Context, ns: &str) -> Result<kube::Client, String> {
    let named = set.spec.template.spec.get("serviceAccountName").and_then(|v| v.as_str());
    if named.is_some_and(|sa| sa.contains("{{")) {
        return Err("the template's serviceAccountName must not depend on generator parameters when a generator reads a secretRef".to_string());
    }
    let sa = ctx.tenancy(ns).acting_as(named).map_err(|e| e.to_string())?;
    ctx.client_for(ns, sa.as_deref()).map_err(|e| e.to_string())
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
fn foreign(ctx: &Context, ns: &str, name: &str, set: &ApplicationSet) -> Option<String> {
    let key = kube::runtime::reflector::ObjectRef::new(name).within(ns);
    let live = ctx.apps.get(&key)?;
    if owned_by(&live, set) {
        return None;
    }
    Some(match live.owner_references().iter().find(|o| o.kind == "ApplicationSet") {
        Some(o) => format!("belongs to ApplicationSet {}", o.name),
        None => "was not generated by this ApplicationSet".to_string(),
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
    let api: Api<ApplicationSet> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": ApplicationSet::api_version(&()),
        "kind": ApplicationSet::kind(&()),
        "status": next,
    });
    let params = PatchParams::apply(crate::apply::FIELD_MANAGER).force();
    let err = |message: String| Error::Status { set: format!("{ns}/{name}"), message };
    tokio::time::timeout(ctx.options.api_timeout, api.patch_status(&name, &params, &Patch::Apply(&body)))
        .await
        .map_err(|_| err("the API server did not answer in time".into()))?
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}
