//! Plan: for every object, whether it needs a write, decided from what the watches and reads
//! observed. Pure functions over plain values, so every decision (unchanged, drifted, new,
//! deleted in the cluster, another Application's, left alone by its options) is unit-tested
//! without a cluster; the reads that feed them are in [`super::observe`].

use serde_json::Value;

use crate::{
    api::SyncPolicy,
    apply::{AppRef, Ownership},
    controller::{
        error::{count, list},
        memory::Known,
    },
    plan::{ApplyMode, Difference, first_difference},
    source::Revision,
};

/// What a pass does to one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    InSync,
    Create,
    /// Git changed it (or ferry adopts it).
    Update,
    /// It changed in the cluster: the difference, as shown.
    Drift(String),
    /// It was deleted in the cluster (drift too): like Create, its namespace may be missing.
    Recreate,
}

impl Change {
    /// Created by this pass (its namespace may not exist yet).
    pub fn creates(&self) -> bool {
        matches!(self, Change::Create | Change::Recreate)
    }

    /// Undoes a change made in the cluster.
    pub fn corrects(&self) -> bool {
        matches!(self, Change::Drift(_) | Change::Recreate)
    }
}

/// The plan for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectPlan {
    pub change: Change,
    /// The Application that owns the object, when it is another one that exists.
    pub owner: Option<AppRef>,
    /// The live object carries this Application's labels.
    pub ours: bool,
    /// The manifest hash on the live object.
    pub live_hash: Option<String>,
}

impl ObjectPlan {
    fn new(change: Change) -> ObjectPlan {
        ObjectPlan { change, owner: None, ours: false, live_hash: None }
    }

    /// Another Application that exists owns it: ferry leaves it alone.
    fn claimed(owner: AppRef, ours: bool, live_hash: Option<String>) -> ObjectPlan {
        ObjectPlan { change: Change::InSync, owner: Some(owner), ours, live_hash }
    }
}

/// What a metadata watch says about an object.
#[derive(Clone, Debug, PartialEq)]
pub enum Watched {
    /// Its kind is served only once a CRD of this revision is installed.
    Unresolved,
    Present {
        resource_version: String,
        ownership: Ownership,
    },
    /// The watch has no object of that name carrying any Application's labels.
    Absent,
    /// The watch is not synced (yet).
    Unknown,
}

/// The object as ferry prepared it, and what it remembers of it.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// The manifest hash of the object as prepared.
    pub hash: &'a str,
    /// What ferry last saw of it live, if it matched.
    pub known: Option<&'a Known>,
    /// The last successful sync applied it (so its absence is drift, not news).
    pub previously_applied: bool,
    /// A Secret: a difference names the field, never the values.
    pub secret: bool,
    /// How its options say to write it (Flux's `ssa` and `reconcile` annotations).
    pub mode: ApplyMode,
    /// `spec.ignoreDifferences` names fields of it: one that exists is read before it is
    /// applied, so those fields keep their live values.
    pub ignores: bool,
}

/// A live object as read, and whose it is by its labels.
#[derive(Clone, Copy, Debug)]
pub struct Live<'a> {
    pub value: &'a Value,
    pub ownership: &'a Ownership,
}

/// The watch's answer: a plan, or the object must be read.
#[derive(Clone, Debug, PartialEq)]
pub enum FromWatch {
    Planned(ObjectPlan),
    Read,
}

/// Decides from the watch alone where it can: a write-free steady state is decided here.
/// `owner_exists` says whether the Application named by an object's labels still exists.
pub fn from_watch(
    watched: &Watched,
    wanted: Wanted<'_>,
    owner_exists: impl Fn(&AppRef) -> bool,
) -> FromWatch {
    match decide_from_watch(watched, wanted, owner_exists) {
        FromWatch::Planned(plan) => FromWatch::Planned(with_options(plan, wanted.mode)),
        FromWatch::Read => FromWatch::Read,
    }
}

fn decide_from_watch(
    watched: &Watched,
    wanted: Wanted<'_>,
    owner_exists: impl Fn(&AppRef) -> bool,
) -> FromWatch {
    match watched {
        Watched::Unresolved => FromWatch::Planned(ObjectPlan::new(Change::Create)),
        Watched::Present { ownership: Ownership::Other(owner), .. } if owner_exists(owner) => {
            FromWatch::Planned(ObjectPlan::claimed(owner.clone(), false, None))
        }
        Watched::Present { resource_version, ownership: Ownership::Ours } => {
            let unchanged = wanted
                .known
                .is_some_and(|k| &k.resource_version == resource_version && k.hash == wanted.hash);
            if unchanged {
                let plan = ObjectPlan {
                    ours: true,
                    live_hash: Some(wanted.hash.to_string()),
                    ..ObjectPlan::new(Change::InSync)
                };
                FromWatch::Planned(plan)
            } else {
                FromWatch::Read
            }
        }
        // ferry applied it, but the watch has not caught up yet (or someone deleted it).
        Watched::Absent if wanted.known.is_some() => FromWatch::Read,
        // The watch sees only labelled objects: one that someone else created must not be
        // overwritten, so only a read says whether it is present.
        // The same for an object whose ignored fields must keep their live values (one another
        // tool applied before ferry adopts it: an HPA's replicas).
        Watched::Absent if wanted.mode == ApplyMode::IfNotPresent || wanted.ignores => FromWatch::Read,
        // Not labelled by any Application: it does not exist, or ferry adopts it with the apply.
        Watched::Absent => FromWatch::Planned(missing(wanted.previously_applied, ApplyMode::Apply)),
        Watched::Present { .. } | Watched::Unknown => FromWatch::Read,
    }
}

/// The plan for an object that does not exist: deleted in the cluster (drift) when the last
/// successful sync applied it, new otherwise.
pub fn missing(previously_applied: bool, mode: ApplyMode) -> ObjectPlan {
    with_options(ObjectPlan::new(if previously_applied { Change::Recreate } else { Change::Create }), mode)
}

/// The plan as the object's options have it: never written (Flux `ssa: Ignore`, `reconcile:
/// disabled`), or only created (`ssa: IfNotPresent`).
pub fn with_options(mut plan: ObjectPlan, mode: ApplyMode) -> ObjectPlan {
    let left_alone = match mode {
        ApplyMode::Skip => true,
        ApplyMode::IfNotPresent => !plan.change.creates(),
        ApplyMode::Apply | ApplyMode::Override => false,
    };
    if left_alone {
        plan.change = Change::InSync;
    }
    plan
}

/// The plan from a live object read, and what to do about the difference.
#[derive(Clone, Debug, PartialEq)]
pub struct FromLive {
    pub plan: ObjectPlan,
    /// The live object matches: remember it, so the next pass decides from the watch.
    pub matches: bool,
    /// A difference on an object ferry applied unchanged (drift) that may be a false alarm
    /// (`0.5` against `500m`): a dry run decides.
    pub settle: bool,
}

/// Compares the object as ferry would apply it (`want`) with the live one.
pub fn from_live(
    want: &Value,
    live: Live<'_>,
    wanted: Wanted<'_>,
    owner_exists: impl Fn(&AppRef) -> bool,
) -> FromLive {
    let live_hash =
        live.value.pointer("/metadata/annotations").and_then(|a| a.get(crate::apply::MANIFEST_HASH));
    let live_hash = live_hash.and_then(Value::as_str).map(str::to_string);
    let ours = *live.ownership == Ownership::Ours;
    // An object of an Application that is gone (deleted with the Orphan policy) is free to adopt.
    if let Ownership::Other(owner) = live.ownership
        && owner_exists(owner)
    {
        return FromLive {
            plan: ObjectPlan::claimed(owner.clone(), ours, live_hash),
            matches: false,
            settle: false,
        };
    }
    let (change, matches, settle) = match first_difference(want, live.value) {
        None => (Change::InSync, true, false),
        Some(diff) if live_hash.as_deref() == Some(wanted.hash) => {
            (Change::Drift(shown(&diff, wanted.secret)), false, true)
        }
        Some(_) => (Change::Update, false, false),
    };
    let plan = with_options(ObjectPlan { change, owner: None, ours, live_hash }, wanted.mode);
    if plan.change == Change::InSync {
        // In sync, or left alone by its options: either way remembered, so the next pass
        // decides from the watch without a read.
        return FromLive { plan, matches: true, settle: false };
    }
    FromLive { plan, matches, settle }
}

/// A difference as shown in messages; a Secret's values never are, only the field.
fn shown(diff: &Difference, secret: bool) -> String {
    if secret { diff.path.clone() } else { diff.to_string() }
}

/// Where the Application stands after a successful pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Live matches Git.
    Synced,
    /// Changes are pending and `automated: false`: reported, not applied.
    OutOfSync { message: String },
    /// Someone changed managed objects and `selfHeal: false`: reported, not reverted.
    Drifted { message: String },
    /// The sync goes on over several passes: a hook runs, or a sync wave is not Healthy yet.
    InProgress { message: String },
}

/// What the plan found, by name, for the sync policy to judge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    /// Objects to create or change.
    pub changed: Vec<String>,
    /// Of those, the ones changed or deleted in the cluster, with what changed.
    pub drifted: Vec<String>,
    /// Objects to prune.
    pub prune: Vec<String>,
}

impl Pending {
    /// From each object's name and plan, and the objects to prune.
    pub fn of<'a>(plans: impl Iterator<Item = (&'a str, &'a ObjectPlan)>, prune: Vec<String>) -> Pending {
        let mut pending = Pending { prune, ..Pending::default() };
        for (name, plan) in plans {
            match &plan.change {
                Change::InSync => continue,
                Change::Drift(diff) => pending.drifted.push(format!("{name} ({diff})")),
                Change::Recreate => pending.drifted.push(format!("{name} (deleted in the cluster)")),
                Change::Create | Change::Update => {}
            }
            pending.changed.push(name.to_string());
        }
        pending
    }

    pub fn count(&self) -> usize {
        self.changed.len() + self.prune.len()
    }

    /// When the policy says to report rather than write: the state to report. `None` when the
    /// pass goes on to apply (nothing pending, or the policy allows it).
    pub fn report_only(&self, policy: &SyncPolicy, revision: &Revision) -> Option<SyncState> {
        let pending = self.count();
        if pending > 0 && !policy.automated {
            let names = self.changed.iter().chain(&self.prune).cloned();
            let message = format!(
                "{} to sync at {revision} (automated sync is off): {}",
                count(pending, "object"),
                list(names)
            );
            return Some(SyncState::OutOfSync { message });
        }
        let only_drift = self.prune.is_empty() && self.drifted.len() == self.changed.len();
        if pending > 0 && only_drift && !policy.self_heal {
            let message =
                format!("changed in the cluster (selfHeal is off): {}", list(self.drifted.iter().cloned()));
            return Some(SyncState::Drifted { message });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn known(resource_version: &str, hash: &str) -> Known {
        Known { resource_version: resource_version.into(), hash: hash.into(), live: None }
    }

    fn wanted<'a>(hash: &'a str, known: Option<&'a Known>, previously_applied: bool) -> Wanted<'a> {
        Wanted { hash, known, previously_applied, secret: false, mode: ApplyMode::Apply, ignores: false }
    }

    fn other() -> AppRef {
        AppRef { namespace: "team-b".into(), name: "other".into() }
    }

    fn present(rv: &str, ownership: Ownership) -> Watched {
        Watched::Present { resource_version: rv.into(), ownership }
    }

    fn planned(change: Change) -> FromWatch {
        FromWatch::Planned(ObjectPlan::new(change))
    }

    fn policy(automated: bool, self_heal: bool) -> SyncPolicy {
        SyncPolicy { automated, self_heal, prune: true, allow_empty: false, rollback: None }
    }

    fn revision() -> Revision {
        "main@sha1:0123456789abcdef0123456789abcdef01234567".parse().unwrap()
    }

    #[test]
    fn an_object_the_watch_shows_unchanged_is_in_sync_without_a_read() {
        let k = known("7", "h1");
        let got = from_watch(&present("7", Ownership::Ours), wanted("h1", Some(&k), true), |_| true);
        let FromWatch::Planned(plan) = got else { panic!("decided from the watch") };
        assert_eq!((plan.change, plan.ours, plan.live_hash.as_deref()), (Change::InSync, true, Some("h1")));
    }

    #[test]
    fn a_new_resource_version_or_a_new_manifest_means_a_read() {
        let k = known("7", "h1");
        assert_eq!(
            from_watch(&present("8", Ownership::Ours), wanted("h1", Some(&k), true), |_| true),
            FromWatch::Read
        );
        assert_eq!(
            from_watch(&present("7", Ownership::Ours), wanted("h2", Some(&k), true), |_| true),
            FromWatch::Read
        );
        assert_eq!(
            from_watch(&present("7", Ownership::Ours), wanted("h1", None, true), |_| true),
            FromWatch::Read
        );
        assert_eq!(from_watch(&Watched::Unknown, wanted("h1", Some(&k), true), |_| true), FromWatch::Read);
    }

    #[test]
    fn another_applications_object_is_claimed_while_that_application_exists() {
        let watched = present("3", Ownership::Other(other()));
        let got = from_watch(&watched, wanted("h", None, false), |_| true);
        assert_eq!(got, FromWatch::Planned(ObjectPlan::claimed(other(), false, None)));
        // Its Application is gone (deleted with the Orphan policy): read, then adopted.
        assert_eq!(from_watch(&watched, wanted("h", None, false), |_| false), FromWatch::Read);
    }

    #[test]
    fn an_absent_object_is_new_or_deleted_in_the_cluster() {
        assert_eq!(from_watch(&Watched::Absent, wanted("h", None, false), |_| true), planned(Change::Create));
        assert_eq!(
            from_watch(&Watched::Absent, wanted("h", None, true), |_| true),
            planned(Change::Recreate)
        );
        let k = known("1", "h");
        // ferry applied it and the watch has not caught up: read before deciding.
        assert_eq!(from_watch(&Watched::Absent, wanted("h", Some(&k), true), |_| true), FromWatch::Read);
        assert_eq!(
            from_watch(&Watched::Unresolved, wanted("h", None, true), |_| true),
            planned(Change::Create)
        );
    }

    fn cm(data: &str, hash: Option<&str>) -> Value {
        let mut v =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": data}});
        if let Some(h) = hash {
            v["metadata"]["annotations"] = json!({ crate::apply::MANIFEST_HASH: h });
        }
        v
    }

    /// `from_live` of a ConfigMap wanted with hash `hash`, previously applied.
    fn judge(want: &Value, have: &Value, hash: &str, ownership: Ownership, owner_alive: bool) -> FromLive {
        let live = Live { value: have, ownership: &ownership };
        from_live(want, live, wanted(hash, None, true), |_| owner_alive)
    }

    #[test]
    fn a_live_object_is_in_sync_drifted_or_to_update() {
        let same = judge(&cm("a", Some("h")), &cm("a", Some("h")), "h", Ownership::Ours, true);
        assert_eq!((same.plan.change, same.matches, same.settle), (Change::InSync, true, false));
        // Live carries the hash of what ferry would apply, yet differs: changed in the cluster.
        let drift = judge(&cm("a", Some("h")), &cm("b", Some("h")), "h", Ownership::Ours, true);
        assert!(
            matches!(drift.plan.change, Change::Drift(ref p) if p.contains("data") && p.contains('b')),
            "{drift:?}"
        );
        assert!(drift.settle && !drift.matches);
        // Git changed it: the live hash is the old one.
        let update = judge(&cm("a", Some("new")), &cm("b", Some("old")), "new", Ownership::Ours, true);
        assert_eq!((update.plan.change, update.plan.live_hash.as_deref()), (Change::Update, Some("old")));
        // Not ferry's yet (no labels): adopted with an update.
        let adopt = judge(&cm("a", Some("h")), &cm("b", None), "h", Ownership::Unowned, true);
        assert_eq!((adopt.plan.change, adopt.plan.ours), (Change::Update, false));
    }

    #[test]
    fn a_secrets_drift_names_the_field_not_the_values() {
        let (want, have) = (cm("s3cret-a", Some("h")), cm("s3cret-b", Some("h")));
        let ours = Ownership::Ours;
        let live = Live { value: &have, ownership: &ours };
        let secret = Wanted { secret: true, ..wanted("h", None, true) };
        let got = from_live(&want, live, secret, |_| true);
        let Change::Drift(shown) = got.plan.change else { panic!("drift: {got:?}") };
        assert!(shown.contains("data") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn a_live_object_of_an_existing_application_is_claimed_not_compared() {
        let got = judge(&cm("a", None), &cm("b", None), "h", Ownership::Other(other()), true);
        assert_eq!(got.plan, ObjectPlan::claimed(other(), false, None));
        let orphan = judge(&cm("a", None), &cm("b", None), "h", Ownership::Other(other()), false);
        assert_eq!(orphan.plan.change, Change::Update);
    }

    #[test]
    fn options_leave_objects_alone_or_only_create_them() {
        let k = known("7", "h1");
        let skip = Wanted { mode: ApplyMode::Skip, ..wanted("h2", Some(&k), true) };
        // Never created, never updated, never recreated.
        assert_eq!(
            from_watch(&Watched::Absent, Wanted { known: None, ..skip }, |_| true),
            planned(Change::InSync)
        );
        assert_eq!(from_watch(&Watched::Unresolved, skip, |_| true), planned(Change::InSync));
        let live = Live { value: &cm("b", Some("h1")), ownership: &Ownership::Ours };
        let got = from_live(&cm("a", Some("h2")), live, skip, |_| true);
        assert_eq!((got.plan.change, got.matches, got.settle), (Change::InSync, true, false));
        // IfNotPresent: created (or recreated) when missing, else left as it is.
        let once = Wanted { mode: ApplyMode::IfNotPresent, ..wanted("h2", None, false) };
        assert_eq!(from_watch(&Watched::Absent, once, |_| true), FromWatch::Read, "someone else's may exist");
        assert_eq!(from_watch(&Watched::Unresolved, once, |_| true), planned(Change::Create));
        assert_eq!(missing(true, ApplyMode::IfNotPresent), ObjectPlan::new(Change::Recreate));
        let drifted = from_live(&cm("a", Some("h2")), live, once, |_| true);
        assert_eq!((drifted.plan.change, drifted.matches), (Change::InSync, true));
        // An object with ignored fields that another tool may have created is read first.
        let ignores = Wanted { ignores: true, ..wanted("h2", None, false) };
        assert_eq!(from_watch(&Watched::Absent, ignores, |_| true), FromWatch::Read);
        // Override changes nothing here: it forces conflicts when applying.
        let force = Wanted { mode: ApplyMode::Override, ..wanted("h2", None, false) };
        assert_eq!(from_live(&cm("a", Some("h2")), live, force, |_| true).plan.change, Change::Update);
    }

    fn pending() -> Pending {
        let plans = [
            ("ConfigMap t/a", ObjectPlan::new(Change::InSync)),
            ("ConfigMap t/b", ObjectPlan::new(Change::Drift(".data.k: \"x\" -> \"y\"".into()))),
            ("ConfigMap t/c", ObjectPlan::new(Change::Recreate)),
        ];
        Pending::of(plans.iter().map(|(n, p)| (*n, p)), vec![])
    }

    #[test]
    fn pending_changes_name_the_drift() {
        let p = pending();
        assert_eq!(p.changed, ["ConfigMap t/b", "ConfigMap t/c"]);
        assert_eq!(
            p.drifted,
            ["ConfigMap t/b (.data.k: \"x\" -> \"y\")", "ConfigMap t/c (deleted in the cluster)"]
        );
        assert_eq!(p.count(), 2);
    }

    #[test]
    fn the_policy_decides_between_applying_and_reporting() {
        let p = pending();
        let Some(SyncState::OutOfSync { message }) = p.report_only(&policy(false, true), &revision()) else {
            panic!("automated off reports")
        };
        assert!(message.starts_with("2 objects to sync at main@sha1:0123"), "{message}");
        let Some(SyncState::Drifted { message }) = p.report_only(&policy(true, false), &revision()) else {
            panic!("drift with selfHeal off reports")
        };
        assert!(message.starts_with("changed in the cluster (selfHeal is off): ConfigMap t/b"), "{message}");
        assert_eq!(p.report_only(&policy(true, true), &revision()), None, "selfHeal corrects");
        // A prune is not drift: with selfHeal off the pass still applies Git's change.
        let with_prune = Pending { prune: vec!["ConfigMap t/old".into()], ..pending() };
        assert_eq!(with_prune.report_only(&policy(true, false), &revision()), None);
        assert_eq!(
            Pending::default().report_only(&policy(false, false), &revision()),
            None,
            "nothing pending"
        );
    }
}
