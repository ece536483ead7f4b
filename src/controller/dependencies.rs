//! `spec.dependsOn`: an Application syncs only once every Application it depends on is Ready at
//! its latest revision and is not being deleted (Flux's Kustomization `dependsOn`). Until then it
//! waits: Ready False and Reconciling True with reason `DependencyNotReady`, naming the
//! dependency and why; its sync state stays as it was and nothing is fetched, applied or pruned.
//! A `dependsOn` that leads back to the Application itself is a `DependencyCycle`, Stalled, since
//! only a change to one of the specs in the cycle can end it.
//!
//! Everything is read from the controller's Application cache, never with a request, so a Ready
//! Application whose dependencies are Ready costs a few lookups per reconcile and no write.
//! Waiting ends through the Application watch: [`Dependants`] wakes the Applications that depend
//! on one whose readiness changed, after the cache stored the change (as promotion's followers
//! are woken), so that what they read is what woke them.
//!
//! - [`gate`]: the check a sync pass makes after access and before it fetches anything.
//! - [`readiness`] and [`find_cycle`]: the decisions, pure functions.
//! - [`Dependants`]: the wake-up.
//!
//! Deleting an Application others depend on is never blocked (nor is it in Flux): its
//! dependants then wait for it to exist again.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::referrers::Referrers;
use crate::{
    api::{Application, conditions as c},
    tenancy::{Refusal, Tenancy},
};

/// The field named in messages and refusals.
const FIELD: &str = "spec.dependsOn";

/// Why an Application does not count as Ready at its latest revision for its dependants; its
/// text completes "waiting for Application X, which ...". A condition's reason, not its message:
/// the message changes as a rollout progresses, and repeating it would rewrite the status of
/// every dependant (and theirs, nesting the messages) at each step; the dependency's own status
/// has the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("is being deleted")]
    Deleting,
    #[error("has not been reconciled yet")]
    NotReconciled,
    #[error("has a spec change ferry has not reconciled yet")]
    SpecNotObserved,
    #[error("is not Ready ({reason})")]
    Condition { reason: String },
    #[error("has not applied the revision it last resolved ({attempted})")]
    OlderRevision { attempted: String },
}

/// Why the dependencies keep this pass from starting.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    /// A dependency in another namespace that the tenancy rules do not let it read.
    #[error(transparent)]
    Refused(Refusal),
    #[error("waiting for Application {} ({FIELD}), which does not exist", shown(.0))]
    Missing(ObjectRef<Application>),
    #[error("waiting for Application {} ({FIELD}), which {why}", shown(.dependency))]
    NotReady { dependency: ObjectRef<Application>, why: Box<NotReady> },
    /// The path from the Application back to itself.
    #[error("{FIELD} forms a cycle: {}", .0.iter().map(shown).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<ObjectRef<Application>>),
}

impl DependencyError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DependencyError::Refused(r) => r.reason(),
            DependencyError::Missing(_) | DependencyError::NotReady { .. } => c::DEPENDENCY_NOT_READY,
            DependencyError::Cycle(_) => c::DEPENDENCY_CYCLE,
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            DependencyError::Refused(_) => "policy",
            _ => "dependency",
        }
    }

    /// Waiting is not failing: a dependency that becomes Ready ends it without any change here.
    pub fn is_waiting(&self) -> bool {
        matches!(self, DependencyError::Missing(_) | DependencyError::NotReady { .. })
    }
}

/// `namespace/name`.
fn shown(r: &ObjectRef<Application>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

/// The Applications `app` depends on; a reference without a namespace is to its own namespace.
pub fn dependencies(app: &Application) -> Vec<ObjectRef<Application>> {
    let own = app.namespace().unwrap_or_default();
    app.spec
        .depends_on
        .iter()
        .map(|d| ObjectRef::new(&d.name).within(d.namespace.as_deref().unwrap_or(&own)))
        .collect()
}

/// The check before a pass fetches anything: every dependency may be read (the tenancy rules
/// for references to other namespaces, those of `ref.fromApplication`), none leads back to
/// `app`, and each is Ready at its latest revision. `apps` is the controller's cache.
pub fn gate(
    app: &Application,
    tenancy: &Tenancy,
    promotion_namespaces: &[String],
    apps: &Store<Application>,
) -> Result<(), DependencyError> {
    let deps = dependencies(app);
    if deps.is_empty() {
        return Ok(());
    }
    for dep in &deps {
        let namespace = dep.namespace.as_deref().unwrap_or_default();
        tenancy
            .check_reference(FIELD, namespace, &dep.name, promotion_namespaces)
            .map_err(DependencyError::Refused)?;
    }
    // The spec being reconciled, not the cache's copy of it, which may be older.
    let me = ObjectRef::new(&app.name_any()).within(&app.namespace().unwrap_or_default());
    let edges = |r: &ObjectRef<Application>| {
        if r == &me { deps.clone() } else { apps.get(r).map(|a| dependencies(&a)).unwrap_or_default() }
    };
    if let Some(cycle) = find_cycle(&me, edges) {
        return Err(DependencyError::Cycle(cycle));
    }
    for dep in deps {
        let Some(found) = apps.get(&dep) else { return Err(DependencyError::Missing(dep)) };
        readiness(&found).map_err(|why| DependencyError::NotReady { dependency: dep, why: Box::new(why) })?;
    }
    Ok(())
}

/// Whether `dep` is Ready at its latest revision for the Applications that depend on it:
///
/// - it is not being deleted;
/// - ferry reconciled its current spec: `status.observedGeneration` and the Ready condition's
///   `observedGeneration` are `metadata.generation` (a new ref, path or source is a new
///   revision to sync; until ferry looked at it, Ready speaks of the old spec);
/// - its Ready condition is True: its last pass synced and its objects are Healthy (and its
///   PostSync hooks passed);
/// - that pass applied the revision it resolved: `status.lastAppliedRevision` is
///   `status.lastAttemptedRevision`, the revision its source resolved last (Flux compares
///   `lastAppliedRevision` with its source's artifact the same way).
///
/// A commit the dependency has not fetched yet is not known without a fetch; it counts from the
/// dependency's next pass (its interval, a webhook, `ferry sync`).
pub fn readiness(dep: &Application) -> Result<(), NotReady> {
    if dep.metadata.deletion_timestamp.is_some() {
        return Err(NotReady::Deleting);
    }
    let Some(status) = &dep.status else { return Err(NotReady::NotReconciled) };
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == c::READY) else {
        return Err(NotReady::NotReconciled);
    };
    let generation = dep.metadata.generation;
    if status.observed_generation != generation || ready.observed_generation != generation {
        return Err(NotReady::SpecNotObserved);
    }
    if ready.status != "True" {
        return Err(NotReady::Condition { reason: ready.reason.clone() });
    }
    match &status.last_attempted_revision {
        Some(attempted) if status.last_applied_revision.as_ref() != Some(attempted) => {
            Err(NotReady::OlderRevision { attempted: attempted.clone() })
        }
        _ => Ok(()),
    }
}

/// A cycle through `start` along `edges`, as the path `start -> ... -> start`, or `None`.
/// Depth first, each node expanded once: linear in the nodes and edges reachable from `start`,
/// whatever the graph (a cycle elsewhere, diamonds) looks like.
pub fn find_cycle<K: Clone + Eq + Hash>(start: &K, edges: impl Fn(&K) -> Vec<K>) -> Option<Vec<K>> {
    let mut expanded = HashSet::from([start.clone()]);
    let mut path = vec![(start.clone(), edges(start).into_iter())];
    loop {
        let (_, next) = path.last_mut()?;
        let Some(node) = next.next() else {
            path.pop();
            continue;
        };
        if node == *start {
            let mut cycle: Vec<K> = path.iter().map(|(k, _)| k.clone()).collect();
            cycle.push(node);
            return Some(cycle);
        }
        // A node expanded before either reaches no `start` or is on the path now (a cycle that
        // does not pass through `start`, which is another Application's to report).
        if expanded.insert(node.clone()) {
            let onward = edges(&node).into_iter();
            path.push((node, onward));
        }
    }
}

/// The readiness last seen per Application, to wake its dependants on a change only, and who
/// depends on whom.
#[derive(Default)]
pub struct Dependants {
    seen: HashMap<ObjectRef<Application>, Result<(), NotReady>>,
    depend: Referrers,
}

impl Dependants {
    /// The Applications to wake for this watch event of `app`: those that depend on it, when its
    /// readiness changed (a first sight counts: they may be waiting for it to exist), none
    /// otherwise. A status write that leaves it Ready, or not Ready for the same reason, wakes
    /// no one, so steady state stays free and a cycle's reports do not wake each other forever.
    pub fn on_event(&mut self, app: &Application) -> Vec<ObjectRef<Application>> {
        let key = key(app);
        self.depend.set(&key, dependencies(app));
        let now = readiness(app);
        if self.seen.get(&key) == Some(&now) {
            return Vec::new();
        }
        self.seen.insert(key.clone(), now);
        self.depend.of(&key)
    }

    /// A deleted Application: its dependants now wait for it to exist.
    pub fn on_delete(&mut self, app: &Application) -> Vec<ObjectRef<Application>> {
        let key = key(app);
        self.seen.remove(&key);
        self.depend.remove(&key);
        self.depend.of(&key)
    }
}

fn key(app: &Application) -> ObjectRef<Application> {
    ObjectRef::new(&app.name_any()).within(&app.namespace().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use crate::{api::ApplicationStatus, tenancy::Lockdown};

    const REV: &str = "main@sha1:0123456789abcdef0123456789abcdef01234567";

    /// `ns/name`, depending on `deps` (`name` or `ns/name`), generation 1, never reconciled.
    fn app(ns: &str, name: &str, deps: &[&str]) -> Application {
        let deps: Vec<serde_json::Value> = deps
            .iter()
            .map(|d| match d.split_once('/') {
                Some((ns, name)) => json!({"name": name, "namespace": ns}),
                None => json!({"name": d}),
            })
            .collect();
        let mut app: Application = serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}},
                     "dependsOn": deps}
        }))
        .unwrap();
        app.metadata.generation = Some(1);
        app
    }

    /// `app` with a Ready condition of `status` and `reason`, for generation 1, at [`REV`].
    fn with_ready(mut app: Application, status: &str, reason: &str) -> Application {
        app.status = Some(ApplicationStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: c::READY.into(),
                status: status.into(),
                reason: reason.into(),
                message: format!("{reason} message"),
                observed_generation: Some(1),
                last_transition_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
            }],
            last_applied_revision: Some(REV.into()),
            last_attempted_revision: Some(REV.into()),
            ..Default::default()
        });
        app
    }

    fn ready(app: Application) -> Application {
        with_ready(app, "True", c::RECONCILIATION_SUCCEEDED)
    }

    fn store(apps: &[&Application]) -> Store<Application> {
        let (reader, mut writer) = reflector::store::<Application>();
        for a in apps {
            writer.apply_watcher_event(&watcher::Event::Apply((*a).clone()));
        }
        reader
    }

    fn open(namespace: &str) -> Tenancy {
        Tenancy::new(namespace, [], &Lockdown::default())
    }

    fn names(refs: &[ObjectRef<Application>]) -> Vec<String> {
        let mut names: Vec<String> = refs.iter().map(shown).collect();
        names.sort();
        names
    }

    #[test]
    fn ready_means_ready_at_the_latest_revision_of_the_current_spec() {
        assert_eq!(readiness(&ready(app("t", "db", &[]))), Ok(()));
        assert_eq!(readiness(&app("t", "db", &[])), Err(NotReady::NotReconciled));

        let failed = with_ready(app("t", "db", &[]), "False", c::RENDER_FAILED);
        assert_eq!(readiness(&failed), Err(NotReady::Condition { reason: c::RENDER_FAILED.into() }));

        // A spec change ferry has not looked at yet: Ready speaks of the old spec.
        let mut changed = ready(app("t", "db", &[]));
        changed.metadata.generation = Some(2);
        assert_eq!(readiness(&changed), Err(NotReady::SpecNotObserved));
        // The status caught up but the condition did not (a status written by another writer).
        if let Some(s) = changed.status.as_mut() {
            s.observed_generation = Some(2);
        }
        assert_eq!(readiness(&changed), Err(NotReady::SpecNotObserved));

        // Its last pass resolved a revision it has not applied.
        let mut behind = ready(app("t", "db", &[]));
        if let Some(s) = behind.status.as_mut() {
            s.last_attempted_revision = Some("main@sha1:ffffffffffffffffffffffffffffffffffffffff".into());
        }
        assert!(matches!(readiness(&behind), Err(NotReady::OlderRevision { .. })));

        let mut deleting = ready(app("t", "db", &[]));
        deleting.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(readiness(&deleting), Err(NotReady::Deleting));
    }

    #[test]
    fn cycles_through_the_start_are_found_and_others_left_to_their_members() {
        let graph = |edges: &'static [(u8, &'static [u8])]| {
            move |n: &u8| edges.iter().find(|(k, _)| k == n).map(|(_, e)| e.to_vec()).unwrap_or_default()
        };
        assert_eq!(find_cycle(&1, graph(&[(1, &[1])])), Some(vec![1, 1]));
        assert_eq!(find_cycle(&1, graph(&[(1, &[2]), (2, &[1])])), Some(vec![1, 2, 1]));
        assert_eq!(find_cycle(&1, graph(&[(1, &[2, 3]), (3, &[4]), (4, &[1])])), Some(vec![1, 3, 4, 1]));
        // A diamond is no cycle; a cycle that 1 only reaches is 2's and 3's to report.
        assert_eq!(find_cycle(&1, graph(&[(1, &[2, 3]), (2, &[4]), (3, &[4])])), None);
        assert_eq!(find_cycle(&1, graph(&[(1, &[2]), (2, &[3]), (3, &[2])])), None);
        assert_eq!(find_cycle(&2, graph(&[(1, &[2]), (2, &[3]), (3, &[2])])), Some(vec![2, 3, 2]));
    }

    #[test]
    fn the_gate_opens_only_when_every_dependency_is_ready() {
        let web = app("t", "web", &["db", "other/cache"]);
        let db = ready(app("t", "db", &[]));
        let cache = app("other", "cache", &[]);
        let all = ["*".to_string()];

        let err = gate(&web, &open("t"), &all, &store(&[&web, &cache])).unwrap_err();
        assert_eq!(err.to_string(), "waiting for Application t/db (spec.dependsOn), which does not exist");
        assert_eq!((err.reason(), err.is_waiting()), (c::DEPENDENCY_NOT_READY, true));

        let err = gate(&web, &open("t"), &all, &store(&[&web, &db, &cache])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "waiting for Application other/cache (spec.dependsOn), which has not been reconciled yet"
        );

        let cache = ready(cache);
        assert!(gate(&web, &open("t"), &all, &store(&[&web, &db, &cache])).is_ok());
        assert!(gate(&app("t", "alone", &[]), &open("t"), &[], &store(&[])).is_ok());
    }

    #[test]
    fn another_namespace_is_read_only_as_the_tenancy_rules_allow() {
        let web = app("t", "web", &["other/cache"]);
        let cache = ready(app("other", "cache", &[]));
        let apps = store(&[&web, &cache]);
        let err = gate(&web, &open("t"), &[], &apps).unwrap_err();
        assert_eq!(err.reason(), c::CROSS_NAMESPACE_REF_NOT_PERMITTED);
        assert!(!err.is_waiting());
        let message = err.to_string();
        assert!(
            message.starts_with("spec.dependsOn names Application other/cache in another namespace"),
            "{message}"
        );
        assert!(message.contains("--promotion-namespaces=other"), "{message}");
        assert!(gate(&web, &open("t"), &["other".to_string()], &apps).is_ok());
        let locked = Tenancy::new("t", [], &Lockdown { no_cross_namespace_refs: true, ..Default::default() });
        assert!(gate(&web, &locked, &["*".to_string()], &apps).is_err());
    }

    #[test]
    fn a_cycle_is_reported_on_its_members_and_waited_for_by_the_rest() {
        let a = ready(app("t", "a", &["b"]));
        let b = ready(app("t", "b", &["a"]));
        let c = app("t", "c", &["a"]);
        let apps = store(&[&a, &b, &c]);
        let err = gate(&a, &open("t"), &[], &apps).unwrap_err();
        assert_eq!(err.to_string(), "spec.dependsOn forms a cycle: t/a -> t/b -> t/a");
        assert_eq!((err.reason(), err.is_waiting()), (c::DEPENDENCY_CYCLE, false));
        assert_eq!(
            gate(&b, &open("t"), &[], &apps).unwrap_err().to_string(),
            "spec.dependsOn forms a cycle: t/b -> t/a -> t/b"
        );
        // c is in no cycle: it waits for a, which its cycle keeps from being Ready.
        let a = with_ready(app("t", "a", &["b"]), "False", c::DEPENDENCY_CYCLE);
        let err = gate(&c, &open("t"), &[], &store(&[&a, &b, &c])).unwrap_err();
        assert!(err.is_waiting() && err.to_string().contains("is not Ready (DependencyCycle"), "{err}");
        // Depending on itself, in the spec being reconciled (the cache may not hold it yet).
        let me = app("t", "me", &["me"]);
        assert_eq!(
            gate(&me, &open("t"), &[], &store(&[])).unwrap_err().to_string(),
            "spec.dependsOn forms a cycle: t/me -> t/me"
        );
    }

    #[test]
    fn dependants_are_woken_when_readiness_changes_only() {
        let web = app("t", "web", &["db"]);
        let elsewhere = app("u", "api", &["t/db"]);
        let unrelated = app("u", "db-user", &["db"]);
        let mut dependants = Dependants::default();
        for a in [&web, &elsewhere, &unrelated] {
            assert!(dependants.on_event(a).is_empty(), "nothing depends on {}", a.name_any());
        }
        let db = app("t", "db", &[]);
        assert_eq!(names(&dependants.on_event(&db)), ["t/web", "u/api"], "first sight");
        assert!(dependants.on_event(&db).is_empty(), "nothing changed");
        let db = ready(db);
        assert_eq!(dependants.on_event(&db).len(), 2, "became Ready");
        // Another status write that leaves it Ready (a new history entry, a new revision).
        let mut again = db.clone();
        if let Some(s) = again.status.as_mut() {
            s.conditions[0].message = "5 objects synced and healthy".into();
        }
        assert!(dependants.on_event(&again).is_empty(), "still Ready");
        let progressing = |message: &str| {
            let mut app = with_ready(app("t", "db", &[]), "False", c::PROGRESSING);
            if let Some(s) = app.status.as_mut() {
                s.conditions[0].message = message.into();
            }
            app
        };
        assert_eq!(dependants.on_event(&progressing("1/3 replicas")).len(), 2, "no longer Ready");
        assert!(dependants.on_event(&progressing("2/3 replicas")).is_empty(), "a rollout's steps");
        let failed = with_ready(app("t", "db", &[]), "False", c::APPLY_FAILED);
        assert_eq!(dependants.on_event(&failed).len(), 2, "no longer Ready");
        assert_eq!(names(&dependants.on_delete(&failed)), ["t/web", "u/api"]);
        assert_eq!(dependants.on_event(&failed).len(), 2, "created again: a first sight");
    }
}
