//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol of client-go's
//! `leaderelection` package, so `kubectl get lease` reads the same as for any controller.
//!
//! kube 5's runtime has no leader election, and the protocol is small: every `retry_period` each
//! candidate reads the Lease; the holder renews it (`renewTime`), a standby takes it over once it
//! has seen the Lease unchanged for `leaseDurationSeconds`, and every write is a replace guarded by
//! the resourceVersion read, so of two candidates racing for it exactly one wins.
//!
//! Expiry is judged by the standby's own clock from the moment it saw the record change, never
//! by comparing `renewTime` with its clock: candidates on nodes with skewed clocks still agree.
//! A leader that has not renewed for `renew_deadline` (shorter than the lease duration) gives up
//! at once, before any standby may take over; ferry then stops reconciling and exits, as
//! client-go's controllers do, and its restart joins as a standby.
//!
//! [`decide`] is the pure part (lease + observation -> acquire, renew or stand by); [`Elector`]
//! makes the API calls, each under a timeout.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use tokio::sync::watch;
use tracing::{info, warn};

/// Settings of `--leader-elect`.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique among the candidates: the Pod's name in a cluster.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// The timings must let a leader give up before a standby may take over.
    pub fn validate(&self) -> Result<(), LeaderConfigError> {
        if self.identity.is_empty() {
            return Err(LeaderConfigError::NoIdentity);
        }
        if self.lease_duration.as_secs() < 1 {
            return Err(LeaderConfigError::LeaseTooShort);
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderConfigError::RenewDeadlineTooLong {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(LeaderConfigError::RetryPeriod {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// Leader-election flags that cannot work together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaderConfigError {
    #[error("the leader-election identity is empty; set POD_NAME or --leader-election-identity")]
    NoIdentity,
    #[error("--leader-election-lease-duration must be at least 1s")]
    LeaseTooShort,
    #[error(
        "--leader-election-renew-deadline ({renew_deadline:?}) must be shorter than --leader-election-lease-duration ({lease_duration:?}), so a leader gives up before a standby takes over"
    )]
    RenewDeadlineTooLong { renew_deadline: Duration, lease_duration: Duration },
    #[error(
        "--leader-election-retry-period ({retry_period:?}) must be above zero and shorter than --leader-election-renew-deadline ({renew_deadline:?})"
    )]
    RetryPeriod { retry_period: Duration, renew_deadline: Duration },
}

/// Why a round of the election neither renewed nor acquired the Lease nor learned who holds it.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("the API server did not answer in time")]
    Timeout,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// What of a Lease the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub lease_duration: Option<Duration>,
    pub renew_time: Option<String>,
    pub transitions: i32,
}

impl Record {
    pub fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration: spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(0) as u64)),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What a candidate does after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and renewed it recently.
    Standby { holder: String },
}

/// Decides from the Lease as read (`None`: it does not exist) and how long this candidate has
/// seen it unchanged. `default_duration` applies when the Lease names none.
pub fn decide(
    me: &str,
    record: Option<&Record>,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let Some(record) = record else { return Decision::Acquire };
    match &record.holder {
        None => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) => {
            if unchanged_for >= record.lease_duration.unwrap_or(default_duration) {
                Decision::Acquire
            } else {
                Decision::Standby { holder: holder.clone() }
            }
        }
    }
}

/// Where this process stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not holding the Lease; `holder` is who does, when known.
    Standby {
        holder: Option<String>,
    },
    Leader,
    /// Held the Lease and lost it: must stop writing now.
    Lost,
}

/// A handle on the election's outcome, shared with the controller, /readyz and metrics.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<Role>,
}

impl Leadership {
    /// Leading from the start: no election (`--leader-elect` off).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(Role::Leader);
        // No sender remains, so the role never changes and waiters see it at once.
        drop(tx);
        Leadership { rx }
    }

    /// Role changes, for those who report them.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.rx.clone()
    }

    pub fn role(&self) -> Role {
        self.rx.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow() == Role::Leader
    }

    /// Resolves once this process leads; `false` when the election ended without that.
    pub async fn acquired(&self) -> bool {
        let mut rx = self.rx.clone();
        matches!(rx.wait_for(|r| !matches!(r, Role::Standby { .. })).await.as_deref(), Ok(Role::Leader))
    }

    /// Resolves once a leader has lost the Lease (never, without an election).
    pub async fn lost(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|r| *r == Role::Lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The candidate: reads and writes the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    api_timeout: Duration,
    tx: watch::Sender<Role>,
    /// The record last read and when this candidate first saw it so.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaderConfig, api_timeout: Duration) -> (Elector, Leadership) {
        let (tx, rx) = watch::channel(Role::Standby { holder: None });
        let api = Api::namespaced(client, &config.namespace);
        (Elector { api, config, api_timeout, tx, observed: None }, Leadership { rx })
    }

    /// Campaigns until `stop` resolves or leadership is lost; then, if leading, releases the
    /// Lease so a standby takes over without waiting out the lease duration.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut last_renewed: Option<Instant> = None;
        loop {
            let attempt_started = Instant::now();
            // A leader's attempt may take only what is left before its renew deadline.
            let budget = match last_renewed {
                Some(at) => self.config.renew_deadline.saturating_sub(at.elapsed()).min(self.api_timeout),
                None => self.api_timeout,
            };
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(budget, self.try_acquire_or_renew()) => {
                    outcome.unwrap_or(Err(RoundError::Timeout))
                }
                _ = &mut stop => break,
            };
            match outcome {
                Ok(true) => {
                    if last_renewed.is_none() {
                        info!(lease = %self.lease(), identity = %self.config.identity, "became the leader");
                        self.tx.send_replace(Role::Leader);
                    }
                    last_renewed = Some(attempt_started);
                }
                Ok(false) if last_renewed.is_some() => {
                    warn!(lease = %self.lease(), holder = ?self.holder(), "another candidate holds the lease now; stopping");
                    self.tx.send_replace(Role::Lost);
                    return;
                }
                Ok(false) => {
                    self.tx.send_if_modified(|role| {
                        let next = Role::Standby {
                            holder: self.observed.as_ref().and_then(|(r, _)| r.holder.clone()),
                        };
                        let changed = *role != next;
                        *role = next;
                        changed
                    });
                }
                Err(why) => {
                    if let Some(at) = last_renewed
                        && at.elapsed() >= self.config.renew_deadline
                    {
                        warn!(lease = %self.lease(), error = %why, "could not renew the lease within the renew deadline; stopping");
                        self.tx.send_replace(Role::Lost);
                        return;
                    }
                    warn!(lease = %self.lease(), error = %why, "leader election: lease not read or written; retrying");
                }
            }
            // A leader wakes up by its renew deadline at the latest, so it gives up in time.
            let pause = match last_renewed {
                Some(at) => {
                    self.config.retry_period.min(self.config.renew_deadline.saturating_sub(at.elapsed()))
                }
                None => self.config.retry_period,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut stop => break,
            }
        }
        if last_renewed.is_some() && self.tx.borrow().clone() == Role::Leader {
            match tokio::time::timeout(self.api_timeout, self.release()).await {
                Ok(Ok(())) => info!(lease = %self.lease(), "released the lease"),
                Ok(Err(e)) => warn!(lease = %self.lease(), error = %e, "could not release the lease"),
                Err(_) => warn!(lease = %self.lease(), "could not release the lease in time"),
            }
        }
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.lease_name)
    }

    fn holder(&self) -> Option<String> {
        self.observed.as_ref().and_then(|(r, _)| r.holder.clone())
    }

    /// One round: read, decide, write. `Ok(true)`: we hold the Lease now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, RoundError> {
        let name = &self.config.lease_name;
        let Some(lease) = self.api.get_opt(name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                spec: Some(self.spec(None, true)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another candidate created it first.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let record = Record::of(&lease);
        let now = Instant::now();
        let seen_since = match &self.observed {
            Some((seen, since)) if *seen == record => *since,
            _ => now,
        };
        self.observed = Some((record.clone(), seen_since));
        let decision =
            decide(&self.config.identity, Some(&record), now - seen_since, self.config.lease_duration);
        let spec = match decision {
            Decision::Standby { .. } => return Ok(false),
            Decision::Renew => self.spec(Some(&lease), false),
            Decision::Acquire => self.spec(Some(&lease), true),
        };
        // The resourceVersion read above guards the write: a candidate that raced us gets 409.
        let mut next = lease.clone();
        next.spec = Some(spec);
        match self.api.replace(&lease.name_any(), &PostParams::default(), &next).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The Lease spec with us as holder; `acquire` starts a new term.
    fn spec(&self, current: Option<&Lease>, acquire: bool) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let mut spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.lease_duration.as_secs().max(1) as i32);
        spec.renew_time = Some(now.clone());
        if acquire {
            spec.acquire_time = Some(now);
            if current.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            } else {
                spec.lease_transitions = Some(0);
            }
        }
        spec
    }

    /// Gives the Lease up: no holder, so any standby acquires it on its next round.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        if Record::of(&lease).holder.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let mut next = lease.clone();
        let spec = next.spec.get_or_insert_with(Default::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api.replace(&lease.name_any(), &PostParams::default(), &next).await?;
        Ok(())
    }
}

/// This process's identity: `--leader-election-identity`/POD_NAME, else the host name and PID
/// (two processes on one machine must never share one).
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferry".into());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn held_by(holder: &str) -> Record {
        Record {
            holder: Some(holder.into()),
            lease_duration: Some(LEASE),
            renew_time: Some("2026-01-01T00:00:00Z".into()),
            transitions: 0,
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_acquired() {
        assert_eq!(decide("a", None, Duration::ZERO, LEASE), Decision::Acquire);
        let released = Record { holder: None, ..held_by("b") };
        assert_eq!(decide("a", Some(&released), Duration::ZERO, LEASE), Decision::Acquire);
    }

    #[test]
    fn the_holder_renews_and_others_stand_by_until_it_expires() {
        let lease = held_by("b");
        assert_eq!(decide("b", Some(&lease), Duration::from_secs(60), LEASE), Decision::Renew);
        assert_eq!(
            decide("a", Some(&lease), Duration::from_secs(14), LEASE),
            Decision::Standby { holder: "b".into() }
        );
        assert_eq!(decide("a", Some(&lease), LEASE, LEASE), Decision::Acquire);
    }

    #[test]
    fn the_leases_own_duration_wins_over_ours() {
        let short = Record { lease_duration: Some(Duration::from_secs(1)), ..held_by("b") };
        assert_eq!(decide("a", Some(&short), Duration::from_secs(1), LEASE), Decision::Acquire);
        let unset = Record { lease_duration: None, ..held_by("b") };
        assert_eq!(
            decide("a", Some(&unset), Duration::from_secs(1), LEASE),
            Decision::Standby { holder: "b".into() }
        );
    }

    #[test]
    fn timings_must_let_the_leader_give_up_first() {
        let ok = LeaderConfig {
            namespace: "ferry".into(),
            lease_name: "ferry".into(),
            identity: "pod-a".into(),
            lease_duration: LEASE,
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        assert_eq!(ok.validate(), Ok(()));
        let late = LeaderConfig { renew_deadline: LEASE, ..ok.clone() };
        assert!(
            late.validate()
                .unwrap_err()
                .to_string()
                .contains("shorter than --leader-election-lease-duration")
        );
        assert_eq!(
            late.validate().unwrap_err().to_string(),
            "--leader-election-renew-deadline (15s) must be shorter than --leader-election-lease-duration (15s), so a leader gives up before a standby takes over"
        );
        let slow = LeaderConfig { retry_period: Duration::from_secs(10), ..ok.clone() };
        assert!(slow.validate().is_err());
        assert_eq!(
            slow.validate().unwrap_err().to_string(),
            "--leader-election-retry-period (10s) must be above zero and shorter than --leader-election-renew-deadline (10s)"
        );
        let nobody = LeaderConfig { identity: String::new(), ..ok };
        assert!(nobody.validate().is_err());
    }

    #[test]
    fn a_record_reads_an_empty_holder_as_none() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        };
        let record = Record::of(&lease);
        assert_eq!(record.holder, None);
        assert_eq!(record.lease_duration, Some(LEASE));
    }

    #[tokio::test]
    async fn without_an_election_the_process_leads_and_never_loses() {
        let l = Leadership::always();
        assert!(l.is_leader());
        assert!(l.acquired().await);
        let lost = tokio::time::timeout(Duration::from_millis(20), l.lost()).await;
        assert!(lost.is_err(), "lost() must never resolve without an election");
    }
}
