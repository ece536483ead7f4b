//! What ferry knows of each `Cluster`, written to its status by the leader: whether it answers,
//! its Kubernetes version, when it last answered, and how many Applications deploy to it.
//!
//! Computed from the links (their circuit breakers see every request), so a cluster in use
//! costs no request here. A Cluster no Application uses is probed once per generation. The
//! status is written only when it changes, and `lastContact` at most every five minutes.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use super::{
    clusters::{ClusterKey, ClusterLink, build_client},
    context::Context,
    leader::Leadership,
};
use crate::{
    api::{Cluster, ClusterStatus, conditions as c, destination_cluster},
    cluster::connect,
};

/// How often links are probed and statuses computed.
pub const MAINTAIN_INTERVAL: Duration = Duration::from_secs(5);
/// `lastContact` is refreshed at most this often while nothing else changes.
const CONTACT_REFRESH: Duration = Duration::from_secs(300);

/// Every [`MAINTAIN_INTERVAL`]: probes the clusters whose circuit is open, then, while this
/// replica leads, writes the Clusters' status where it changed.
pub async fn maintain(ctx: Arc<Context>, leadership: Leadership) {
    let mut ticks = tokio::time::interval(MAINTAIN_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        ctx.clusters.probe_failing(&ctx.apps).await;
        let links: HashMap<ClusterKey, Arc<ClusterLink>> = ctx.clusters.links().into_iter().collect();
        ctx.metrics.clusters_reachable(links.iter().map(|(key, link)| (key, !link.is_failing())));
        if !leadership.is_leader() {
            continue;
        }
        let Some(store) = &ctx.clusters.store else { continue };
        // Once per tick, not once per Cluster: how many Applications deploy to each.
        let mut users: HashMap<ClusterKey, i32> = HashMap::new();
        for app in ctx.apps.state() {
            if let (Some(ns), Some(name)) = (app.namespace(), destination_cluster(&app)) {
                *users.entry((ns, name.to_string())).or_default() += 1;
            }
        }
        for cluster in store.state() {
            let key = (cluster.namespace().unwrap_or_default(), cluster.name_any());
            let seen = Seen { link: links.get(&key), applications: users.get(&key).copied().unwrap_or(0) };
            if let Err(error) = write_status(&ctx, &cluster, seen).await {
                tracing::debug!(cluster = %cluster.name_any(), %error, "the Cluster status was not written");
            }
        }
    }
}

/// What ferry observed of one cluster.
struct Observed {
    reachable: bool,
    version: Option<String>,
    message: String,
    reason: &'static str,
    last_contact: Option<Time>,
}

/// What this tick knows of one Cluster: its link, if one is in use, and its Applications.
struct Seen<'a> {
    link: Option<&'a Arc<ClusterLink>>,
    applications: i32,
}

async fn write_status(ctx: &Context, cluster: &Cluster, seen: Seen<'_>) -> Result<(), kube::Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let previous = cluster.status.clone().unwrap_or_default();
    let observed = match (seen.link, ctx.clusters.failure(&namespace, &name)) {
        (Some(link), _) => Some(of_link(link)),
        (None, Some(message)) => Some(unreachable(message)),
        (None, None) if previous.observed_generation != cluster.metadata.generation => {
            Some(probe(ctx, cluster).await)
        }
        (None, None) => None,
    };
    let next = next_status(&previous, observed, seen.applications, cluster.metadata.generation);
    if !worth_writing(&previous, &next) {
        return Ok(());
    }
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": next });
    let params = PatchParams::default();
    let merge = Patch::Merge(&patch);
    match tokio::time::timeout(ctx.options.api_timeout, api.patch_status(&name, &params, &merge)).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Ok(()),
    }
}

fn of_link(link: &ClusterLink) -> Observed {
    let breaker = link.breaker.as_ref();
    let last_contact = breaker.and_then(|b| b.last_answer()).map(|at| {
        let when = SystemTime::now() - at.elapsed();
        Time(Timestamp::try_from(when).unwrap_or_else(|_| Timestamp::now()))
    });
    match breaker.and_then(|b| b.last_error()) {
        Some(error) => Observed { last_contact, ..unreachable(error) },
        None => Observed {
            reachable: true,
            version: Some(link.kubernetes_version.clone()),
            message: format!("reachable, Kubernetes {}", link.kubernetes_version),
            reason: "Reachable",
            last_contact,
        },
    }
}

fn unreachable(message: String) -> Observed {
    Observed { reachable: false, version: None, message, reason: c::CLUSTER_UNREACHABLE, last_contact: None }
}

/// One look at a Cluster no Application uses: its kubeconfig, and its API server's version.
async fn probe(ctx: &Context, cluster: &Cluster) -> Observed {
    let timeout = ctx.options.api_timeout;
    let invalid = |message: String| Observed { reason: c::INVALID_KUBECONFIG, ..unreachable(message) };
    let checked = match connect::kubeconfig_of(&ctx.client, timeout, cluster).await {
        Ok(checked) => checked,
        Err(e) => return invalid(e.to_string()),
    };
    let secret = &cluster.spec.kube_config.secret_ref.name;
    let config = match connect::config_of(&checked, secret, timeout).await {
        Ok(config) => config,
        Err(e) => return invalid(e.to_string()),
    };
    let client = match build_client(&ctx.metrics, config, None, &cluster.name_any()) {
        Ok(client) => client,
        Err(e) => return invalid(e.to_string()),
    };
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => Observed {
            reachable: true,
            message: format!("reachable, Kubernetes {}; no Application deploys to it", version.git_version),
            version: Some(version.git_version),
            reason: "Reachable",
            last_contact: Some(Time(Timestamp::now())),
        },
        Ok(Err(e)) => unreachable(crate::kube_util::api_words(&e)),
        Err(_) => unreachable("no answer within the API timeout".into()),
    }
}

/// The status after `observed` (`None`: nothing new to say of reachability).
fn next_status(
    previous: &ClusterStatus,
    observed: Option<Observed>,
    applications: i32,
    generation: Option<i64>,
) -> ClusterStatus {
    let mut next = previous.clone();
    next.applications = applications;
    let Some(o) = observed else { return next };
    next.observed_generation = generation;
    let status = if o.reachable { "True" } else { "False" };
    let kept = previous.conditions.iter().find(|p| p.type_ == c::READY && p.status == status);
    let now = Time(Timestamp::now());
    next.conditions = vec![Condition {
        type_: c::READY.into(),
        status: status.into(),
        reason: o.reason.into(),
        message: o.message,
        observed_generation: generation,
        last_transition_time: kept.map(|p| p.last_transition_time.clone()).unwrap_or(now),
    }];
    if o.version.is_some() {
        next.kubernetes_version = o.version;
    }
    if o.last_contact.is_some() {
        next.last_contact = o.last_contact;
    }
    next
}

/// Whether `next` says something `previous` does not: anything but `lastContact`, or a
/// `lastContact` more than [`CONTACT_REFRESH`] newer.
fn worth_writing(previous: &ClusterStatus, next: &ClusterStatus) -> bool {
    let without_contact = |s: &ClusterStatus| ClusterStatus { last_contact: None, ..s.clone() };
    if without_contact(previous) != without_contact(next) {
        return true;
    }
    match (&previous.last_contact, &next.last_contact) {
        (None, Some(_)) => true,
        (Some(Time(before)), Some(Time(after))) => {
            after.duration_since(*before).as_secs_f64() > CONTACT_REFRESH.as_secs_f64()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reachable_at(at: Timestamp) -> Observed {
        Observed {
            reachable: true,
            version: Some("v1.36.3".into()),
            message: "reachable, Kubernetes v1.36.3".into(),
            reason: "Reachable",
            last_contact: Some(Time(at)),
        }
    }

    #[test]
    fn a_new_contact_alone_is_written_only_every_five_minutes() {
        let t0 = Timestamp::now();
        let first = next_status(&ClusterStatus::default(), Some(reachable_at(t0)), 2, Some(1));
        assert!(worth_writing(&ClusterStatus::default(), &first));
        let soon = next_status(&first, Some(reachable_at(t0 + Duration::from_secs(60))), 2, Some(1));
        assert!(!worth_writing(&first, &soon), "a minute later, nothing to write");
        let later = next_status(&first, Some(reachable_at(t0 + Duration::from_secs(301))), 2, Some(1));
        assert!(worth_writing(&first, &later));
        let more_apps = next_status(&first, Some(reachable_at(t0 + Duration::from_secs(1))), 3, Some(1));
        assert!(worth_writing(&first, &more_apps));
    }

    #[test]
    fn unreachable_keeps_the_version_and_last_contact_and_flips_ready() {
        let t0 = Timestamp::now();
        let up = next_status(&ClusterStatus::default(), Some(reachable_at(t0)), 1, Some(1));
        let down = next_status(&up, Some(unreachable("connection refused".into())), 1, Some(1));
        assert_eq!(down.kubernetes_version.as_deref(), Some("v1.36.3"));
        assert_eq!(down.last_contact, up.last_contact);
        let ready = &down.conditions[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", c::CLUSTER_UNREACHABLE));
        assert!(worth_writing(&up, &down));
    }
}
