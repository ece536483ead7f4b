//! The delivery figures (the four DORA metrics) from what reconciles observe, as a small state
//! machine over plain data.
//!
//! - A **deployment** starts when a pass applies (or prunes) objects at a commit other than
//!   the one the last deployment started at: a new revision reached the cluster. Drift
//!   corrections at the same commit are not deployments.
//! - It **succeeds** when the Application is Healthy at that commit (lead time: from the commit's
//!   own committer time), and **fails** when it turns Degraded, or when a pass at a new commit
//!   ends in an error that retrying will not fix (counted once per commit).
//! - **Time to restore** runs from the Application turning Degraded to Healthy again.
//!
//! This lives in memory: a deployment in flight when ferry restarts is not counted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::HealthStatusCode;

#[derive(Debug, Default)]
pub struct Delivery {
    in_flight: Option<InFlight>,
    /// The commit the last deployment started at (or, after a restart, the last applied one).
    started: Option<String>,
    /// The commit whose failure was counted last.
    failed: Option<String>,
    degraded_since: Option<SystemTime>,
}

#[derive(Debug)]
struct InFlight {
    commit: String,
    committed_at: Option<i64>,
}

/// What a pass did, as far as delivery is concerned.
#[derive(Debug)]
pub enum Pass<'a> {
    /// The pass succeeded at `commit`; `changed`: it applied or pruned objects.
    Synced {
        commit: &'a str,
        changed: bool,
        health: HealthStatusCode,
        /// Committer time of `commit`, needed only when [`Delivery::starts`] said so.
        committed_at: Option<i64>,
    },
    /// The pass failed at `commit` in a way retrying will not fix.
    Failed { commit: &'a str },
}

/// A figure to record.
#[derive(Debug, PartialEq)]
pub enum Figure {
    Succeeded { lead_time: Option<Duration> },
    Failed,
    Restored(Duration),
}

impl Delivery {
    /// Before the first pass after a restart: what was applied before is not a new deployment.
    pub fn seed(&mut self, last_applied_commit: Option<&str>) {
        if self.started.is_none() {
            self.started = last_applied_commit.map(str::to_string);
        }
    }

    /// Whether a pass that changed objects at `commit` starts a deployment (the caller then
    /// looks up the commit time).
    pub fn starts(&self, commit: &str, changed: bool) -> bool {
        changed && self.started.as_deref() != Some(commit)
    }

    pub fn observe(&mut self, pass: Pass<'_>, now: SystemTime) -> Vec<Figure> {
        let mut figures = Vec::new();
        match pass {
            Pass::Failed { commit } => {
                let in_flight_here = self.in_flight.as_ref().is_some_and(|f| f.commit == commit);
                let new_commit = self.started.as_deref() != Some(commit);
                if (in_flight_here || new_commit) && self.failed.as_deref() != Some(commit) {
                    figures.push(Figure::Failed);
                    self.failed = Some(commit.to_string());
                    self.in_flight = None;
                }
            }
            Pass::Synced { commit, changed, health, committed_at } => {
                if self.starts(commit, changed) {
                    self.started = Some(commit.to_string());
                    self.in_flight = Some(InFlight { commit: commit.to_string(), committed_at });
                }
                let here = self.in_flight.as_ref().filter(|f| f.commit == commit);
                match health {
                    HealthStatusCode::Healthy => {
                        if let Some(f) = here {
                            let lead_time = f.committed_at.map(|t| since(now, t));
                            figures.push(Figure::Succeeded { lead_time });
                            self.in_flight = None;
                        }
                        if let Some(since) = self.degraded_since.take() {
                            figures.push(Figure::Restored(now.duration_since(since).unwrap_or_default()));
                        }
                    }
                    HealthStatusCode::Degraded => {
                        if here.is_some() {
                            figures.push(Figure::Failed);
                            self.failed = Some(commit.to_string());
                            self.in_flight = None;
                        }
                        self.degraded_since.get_or_insert(now);
                    }
                    _ => {}
                }
            }
        }
        figures
    }
}

/// From unix time `t` to `now`; zero for a commit dated in the future (clock skew).
fn since(now: SystemTime, t: i64) -> Duration {
    let then = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    now.duration_since(then).unwrap_or_default()
}

/// The commit of a `<ref>@sha1:<hex>` revision string.
pub fn commit_of(revision: &str) -> Option<&str> {
    revision.rsplit_once("@sha1:").map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatusCode::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn synced(commit: &str, changed: bool, health: HealthStatusCode) -> Pass<'_> {
        Pass::Synced { commit, changed, health, committed_at: Some(1_000) }
    }

    #[test]
    fn a_new_commit_that_becomes_healthy_is_a_successful_deployment_timed_from_its_commit() {
        let mut d = Delivery::default();
        assert!(d.starts("a", true));
        assert_eq!(d.observe(synced("a", true, Progressing), at(1_100)), vec![]);
        // Later passes change nothing; health arrives.
        let figures = d.observe(synced("a", false, Healthy), at(1_300));
        assert_eq!(figures, vec![Figure::Succeeded { lead_time: Some(Duration::from_secs(300)) }]);
        // Steady state records nothing more; a drift correction at the same commit is no deployment.
        assert_eq!(d.observe(synced("a", false, Healthy), at(1_400)), vec![]);
        assert!(!d.starts("a", true));
        assert_eq!(d.observe(synced("a", true, Healthy), at(1_500)), vec![]);
    }

    #[test]
    fn degraded_fails_the_deployment_once_and_healthy_again_measures_the_restore() {
        let mut d = Delivery::default();
        d.observe(synced("a", true, Healthy), at(1_100));
        assert_eq!(d.observe(synced("b", true, Degraded), at(2_000)), vec![Figure::Failed]);
        assert_eq!(d.observe(synced("b", false, Degraded), at(2_100)), vec![], "counted once");
        let figures = d.observe(synced("c", true, Healthy), at(2_600));
        assert_eq!(
            figures,
            vec![
                Figure::Succeeded { lead_time: Some(Duration::from_secs(1_600)) },
                Figure::Restored(Duration::from_secs(600))
            ]
        );
    }

    #[test]
    fn a_refused_new_commit_fails_once_and_a_restart_does_not_count_old_work() {
        let mut d = Delivery::default();
        d.seed(Some("a"));
        assert!(!d.starts("a", true), "applied before the restart");
        assert_eq!(d.observe(Pass::Failed { commit: "a" }, at(10)), vec![], "not a new commit");
        assert_eq!(d.observe(Pass::Failed { commit: "b" }, at(20)), vec![Figure::Failed]);
        assert_eq!(d.observe(Pass::Failed { commit: "b" }, at(30)), vec![]);
        assert_eq!(commit_of("main@sha1:abc"), Some("abc"));
        assert_eq!(commit_of("garbage"), None);
    }
}
