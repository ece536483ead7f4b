//! Who names whom among Applications (`spec.dependsOn`, `ref.fromApplication`), kept up to date
//! from the Application watch's events, so that finding the Applications to wake when one
//! changes is a lookup, not a scan of every Application. At 10,000 Applications the scan, done
//! on every change of readiness and every newly verified revision, was most of ferry's CPU.
//!
//! An Application the watch has not shown yet is in no list; it needs no wake-up either, since
//! its own first sight reconciles it.

use std::collections::{HashMap, HashSet};

use kube::runtime::reflector::ObjectRef;

use crate::api::Application;

type Key = ObjectRef<Application>;

/// Referrers by the Application they name, and what each referrer names.
#[derive(Default)]
pub struct Referrers {
    by_target: HashMap<Key, HashSet<Key>>,
    targets_of: HashMap<Key, Vec<Key>>,
}

impl Referrers {
    /// Records that `referrer` now names `targets` and nothing else.
    pub fn set(&mut self, referrer: &Key, targets: Vec<Key>) {
        if self.targets_of.get(referrer).map_or(targets.is_empty(), |old| *old == targets) {
            return;
        }
        self.remove(referrer);
        for target in &targets {
            self.by_target.entry(target.clone()).or_default().insert(referrer.clone());
        }
        if !targets.is_empty() {
            self.targets_of.insert(referrer.clone(), targets);
        }
    }

    /// Forgets `referrer` (deleted).
    pub fn remove(&mut self, referrer: &Key) {
        for target in self.targets_of.remove(referrer).unwrap_or_default() {
            if let Some(set) = self.by_target.get_mut(&target) {
                set.remove(referrer);
                if set.is_empty() {
                    self.by_target.remove(&target);
                }
            }
        }
    }

    /// The Applications that name `target`.
    pub fn of(&self, target: &Key) -> Vec<Key> {
        self.by_target.get(target).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ObjectRef::new(name).within("t")
    }

    fn sorted(mut keys: Vec<Key>) -> Vec<String> {
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys.into_iter().map(|k| k.name).collect()
    }

    #[test]
    fn referrers_follow_changes_and_deletions_and_keep_nothing_for_none() {
        let mut r = Referrers::default();
        r.set(&key("web"), vec![key("db"), key("cache")]);
        r.set(&key("api"), vec![key("db")]);
        r.set(&key("lonely"), vec![]);
        assert_eq!(sorted(r.of(&key("db"))), ["api", "web"]);
        assert_eq!(sorted(r.of(&key("cache"))), ["web"]);

        r.set(&key("web"), vec![key("cache")]);
        assert_eq!(sorted(r.of(&key("db"))), ["api"], "web no longer names db");
        r.remove(&key("api"));
        assert!(r.of(&key("db")).is_empty());
        r.set(&key("web"), vec![]);
        assert!(r.of(&key("cache")).is_empty());
        assert!(r.by_target.is_empty() && r.targets_of.is_empty(), "memory follows what is named");
    }
}
