//! The chaos soak's invariant checker, as pure logic over what was observed: the soak feeds it
//! the Applications' statuses and the managed objects' watch events (with when they were
//! seen), and it counts checks and records violations per invariant. No cluster here, so the
//! soak's own tests can feed it a synthetic violation and see it reported.
//!
//! Invariants:
//!
//! - `no unexplained deletion`: a managed object deleted while Git still has it. A deletion
//!   known to lie in `[lo, hi]` (`lo`: when the object was last seen, or a short moment before
//!   the watch reported the deletion; `hi`: when it was reported) is explained by a hand
//!   deletion the soak injected in `[lo - 2 s, hi]`, or by a commit pushed by `hi` that lacks the
//!   object and is not older than what the Application reported as synced 5 s before `lo` (ferry
//!   never prunes for a commit older than one it already reported, as long as status does not go
//!   backwards, itself checked). Hook objects and the `-canary` objects a rollout derives are
//!   ferry's own to delete and are not checked.
//! - `ownership`: every object carries the labels of the Application whose name prefixes it,
//!   and every Application's inventory lists only its own objects.
//! - `one canary per workload`: at most one live Deployment named `<workload>-canary...`, and
//!   nothing else labelled `ferry.dev/variant: canary`.
//! - `status monotonic`: `sync.revision`, `lastAppliedRevision` and the newest history entry
//!   never name a commit older (in push order) than one named before; history never shrinks and
//!   is ordered newest first; every revision named is one the soak pushed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{CommitLog, key, owner_of, revision_sha};

pub const INV_DELETION: &str = "no unexplained deletion";
pub const INV_OWNERSHIP: &str = "ownership (labels, inventory)";
pub const INV_CANARY: &str = "one canary per workload";
pub const INV_STATUS: &str = "status monotonic (revision, history)";
/// Every invariant, in the order the table prints them.
pub const INVARIANTS: [&str; 4] = [INV_DELETION, INV_OWNERSHIP, INV_CANARY, INV_STATUS];

/// How far before a deletion the Application's reported revision bounds what ferry may prune for.
const STATUS_LAG: Duration = Duration::from_secs(5);
/// A hand deletion may be reported this long before it was recorded, and a commit recorded this
/// long after ferry acted on it (the soak records a push once `git push` has returned).
const SLACK: Duration = Duration::from_secs(2);
/// How long after it is reported a deletion is judged: the commit log has caught up by then.
const SETTLE: Duration = Duration::from_secs(4);

/// A managed object as the checker needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjView {
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl ObjView {
    pub fn key(&self) -> String {
        key(&self.kind, &self.name)
    }

    /// A hook, or an object a rollout derives: ferry creates and deletes these on its own.
    fn ephemeral(&self) -> bool {
        let hook = self
            .annotations
            .keys()
            .any(|k| k == "ferry.dev/hook" || k == "argocd.argoproj.io/hook" || k == "helm.sh/hook");
        hook || self.labels.contains_key("ferry.dev/variant") || self.name.contains("-canary")
    }
}

/// An Application's status as the checker needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusView {
    pub revision: Option<String>,
    pub last_applied: Option<String>,
    /// Revisions, newest first.
    pub history: Vec<String>,
    /// `Kind/name` of each inventory entry.
    pub inventory: Vec<String>,
}

/// Checks and violations of one invariant.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub checks: u64,
    pub violations: Vec<String>,
}

/// What the checker remembers of one Application.
#[derive(Default)]
struct Track {
    /// (when seen, seq) of each sync.revision observed, oldest first.
    seen: Vec<(Instant, usize)>,
    revision: usize,
    applied: usize,
    newest_history: usize,
    history_len: usize,
}

/// The checker; see the module doc.
pub struct Checker {
    namespace: String,
    log: Arc<Mutex<CommitLog>>,
    tallies: BTreeMap<&'static str, Tally>,
    apps: BTreeMap<String, Track>,
    /// Hand deletions the soak injected: object key and when.
    hand: Vec<(String, Instant)>,
    /// Live objects by key.
    live: BTreeMap<String, ObjView>,
    /// Deletions not judged yet: object, lo, hi.
    pending: Vec<(ObjView, Instant, Instant)>,
    /// Revisions the commit log did not have yet when seen: app, field, revision.
    unknown: BTreeSet<(String, &'static str, String)>,
}

impl Checker {
    pub fn new(namespace: &str, log: Arc<Mutex<CommitLog>>) -> Checker {
        let tallies = INVARIANTS.iter().map(|i| (*i, Tally::default())).collect();
        Checker {
            namespace: namespace.to_string(),
            log,
            tallies,
            apps: BTreeMap::new(),
            hand: Vec::new(),
            live: BTreeMap::new(),
            pending: Vec::new(),
            unknown: BTreeSet::new(),
        }
    }

    fn check(&mut self, invariant: &'static str, ok: bool, why: impl FnOnce() -> String) {
        let tally = self.tallies.entry(invariant).or_default();
        tally.checks += 1;
        if !ok {
            let why = why();
            eprintln!("[soak {}] VIOLATION of {invariant}: {why}", self.namespace);
            tally.violations.push(why);
        }
    }

    /// Counts a check of an invariant the soak checks itself (self-heal, convergence).
    pub fn record(&mut self, invariant: &'static str, ok: bool, why: impl FnOnce() -> String) {
        self.check(invariant, ok, why);
    }

    pub fn tallies(&self) -> &BTreeMap<&'static str, Tally> {
        &self.tallies
    }

    pub fn violations(&self) -> usize {
        self.tallies.values().map(|t| t.violations.len()).sum()
    }

    /// The soak is about to delete `key` by hand, now.
    pub fn expect_hand_deletion(&mut self, key: &str, at: Instant) {
        self.hand.push((key.to_string(), at));
    }

    /// An object was created or changed (or listed).
    pub fn observe_object(&mut self, obj: ObjView) {
        self.check_ownership(&obj);
        let is_deployment = obj.kind == "Deployment";
        self.live.insert(obj.key(), obj);
        if is_deployment {
            self.check_canaries();
        }
    }

    fn check_ownership(&mut self, obj: &ObjView) {
        let owner = owner_of(&obj.name).map(str::to_string);
        let label = |k: &str| obj.labels.get(k).cloned().unwrap_or_default();
        let ok = owner.as_deref() == Some(label("ferry.dev/app-name").as_str())
            && label("ferry.dev/app-namespace") == self.namespace
            && label("app.kubernetes.io/managed-by") == "ferry";
        self.check(INV_OWNERSHIP, ok, || {
            format!("{} is labelled {:?}, its name says it is {owner:?}'s", obj.key(), obj.labels)
        });
    }

    /// At most one canary per workload, and canaries only of rollout workloads' names.
    fn check_canaries(&mut self) {
        let deployments: Vec<&ObjView> = self.live.values().filter(|o| o.kind == "Deployment").collect();
        let mut per_workload: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stray = Vec::new();
        for d in &deployments {
            let canary = d.labels.get("ferry.dev/variant").is_some_and(|v| v == "canary");
            match d.name.split_once("-canary") {
                Some((workload, _)) => {
                    per_workload.entry(workload.to_string()).or_default().push(d.name.clone())
                }
                None if canary => stray.push(d.name.clone()),
                None => {}
            }
        }
        let doubled: Vec<&Vec<String>> = per_workload.values().filter(|names| names.len() > 1).collect();
        let ok = doubled.is_empty() && stray.is_empty();
        self.check(INV_CANARY, ok, || {
            format!("canaries {doubled:?}, canary-labelled non-canaries {stray:?}")
        });
    }

    /// An object is gone: deleted at some moment in `[lo, hi]`. Judged by [`Checker::settle`].
    pub fn observe_deleted(&mut self, obj: &ObjView, lo: Instant, hi: Instant) {
        self.live.remove(&obj.key());
        if !obj.ephemeral() {
            self.pending.push((obj.clone(), lo, hi));
        }
    }

    /// Judges the deletions reported before `now - SETTLE` (every one when `now` is `None`).
    pub fn settle(&mut self, now: Option<Instant>) {
        let due = |hi: &Instant| now.is_none_or(|now| *hi + SETTLE <= now);
        let (judge, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(_, _, hi)| due(hi));
        self.pending = keep;
        for (obj, lo, hi) in judge {
            self.judge_deletion(&obj, lo, hi);
        }
    }

    fn judge_deletion(&mut self, obj: &ObjView, lo: Instant, hi: Instant) {
        let key = obj.key();
        let hand = self.hand.iter().any(|(k, at)| *k == key && *at + SLACK >= lo && *at <= hi);
        let owner = owner_of(&obj.name).unwrap_or_default().to_string();
        let floor = self.synced_floor(&owner, lo.checked_sub(STATUS_LAG).unwrap_or(lo));
        let by_git = {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.commits.iter().any(|c| {
                c.seq >= floor
                    && c.at <= hi + SLACK
                    && c.objects.get(&owner).is_some_and(|objects| !objects.contains(&key))
            })
        };
        let why = if hand {
            "a hand deletion"
        } else if by_git {
            "a commit without it"
        } else {
            "NOTHING"
        };
        eprintln!("[soak {}] {key} deleted, explained by {why}", self.namespace);
        self.check(INV_DELETION, hand || by_git, || {
            format!(
                "{key} of {owner} was deleted though no hand deletion was injected and every commit pushed since the one {owner} reported (stream #{floor}) still has it"
            )
        });
    }

    /// Judges everything left: pending deletions, and revisions the log did not know when seen.
    pub fn finish(&mut self) {
        self.settle(None);
        for (app, what, revision) in std::mem::take(&mut self.unknown) {
            let known = {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                revision_sha(&revision).and_then(|sha| log.seq_of(sha)).is_some()
            };
            self.check(INV_STATUS, known, || {
                format!("{app} {what} {revision:?} is no commit the soak pushed")
            });
        }
    }

    /// The newest stream position app `name` reported as synced at or before `at` (0 if none).
    fn synced_floor(&self, name: &str, at: Instant) -> usize {
        let Some(track) = self.apps.get(name) else { return 0 };
        track.seen.iter().filter(|(when, _)| *when <= at).map(|(_, seq)| *seq).max().unwrap_or(0)
    }

    /// The stream position of a revision; one the log does not have (yet) is judged at
    /// [`Checker::finish`].
    fn seq_of(&mut self, app: &str, what: &'static str, revision: &str) -> Option<usize> {
        // A sync that failed before it knew its commit (Git unreachable) is recorded as `unknown`.
        revision_sha(revision)?;
        let seq = {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            revision_sha(revision).and_then(|sha| log.seq_of(sha))
        };
        if seq.is_none() {
            self.unknown.insert((app.to_string(), what, revision.to_string()));
        }
        seq
    }

    /// An Application's status, seen at `at`.
    pub fn observe_status(&mut self, app: &str, status: &StatusView, at: Instant) {
        let prefix = format!("{app}-");
        let foreign: Vec<&String> = status
            .inventory
            .iter()
            .filter(|k| !k.split_once('/').is_some_and(|(_, n)| n.starts_with(&prefix)))
            .collect();
        self.check(INV_OWNERSHIP, foreign.is_empty(), || format!("{app}'s inventory lists {foreign:?}"));

        let revision = status.revision.as_deref().and_then(|r| self.seq_of(app, "sync.revision", r));
        let applied = status.last_applied.as_deref().and_then(|r| self.seq_of(app, "lastAppliedRevision", r));
        let history: Vec<usize> =
            status.history.clone().iter().filter_map(|r| self.seq_of(app, "history revision", r)).collect();
        let track = self.apps.entry(app.to_string()).or_default();
        let before = (track.revision, track.applied, track.newest_history, track.history_len);
        if let Some(seq) = revision {
            track.revision = track.revision.max(seq);
            track.seen.push((at, seq));
        }
        if let Some(seq) = applied {
            track.applied = track.applied.max(seq);
        }
        if let Some(&newest) = history.first() {
            track.newest_history = track.newest_history.max(newest);
        }
        track.history_len = track.history_len.max(status.history.len());
        let ordered = history.windows(2).all(|w| w[0] >= w[1]);
        let checks = [
            ("sync.revision", revision, before.0),
            ("lastAppliedRevision", applied, before.1),
            ("newest history entry", history.first().copied(), before.2),
        ];
        for (what, now, was) in checks {
            self.check(INV_STATUS, now.is_none_or(|n| n >= was), || {
                format!("{app} {what} went back from stream #{was} to #{}", now.unwrap_or_default())
            });
        }
        self.check(INV_STATUS, status.history.len() >= before.3, || {
            format!("{app} history shrank from {} to {} entries", before.3, status.history.len())
        });
        self.check(INV_STATUS, ordered, || format!("{app} history is not newest first: {history:?}"));
    }
}
