//! The ImagePolicy controller: one pass scans, selects, and when the latest image is not yet
//! written, edits, commits and delivers it; then the status.
//!
//! Steady state costs one scan per interval and nothing else: a pass writes to Git only when
//! the latest image differs from the last one it wrote or found already written (remembered in
//! memory per policy, target and generation, and in `status.lastUpdate` across restarts); the
//! status is written only when it changes, and `lastScan` alone moves it at most every
//! [`LAST_SCAN_EVERY`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Resource, ResourceExt, runtime::controller::Action};

use super::{
    deliver::{self, Delivered, UpdateError},
    edit::Latest,
    scan::{self, ScanError},
    select::{SelectError, Selector},
    status::{self as st, Outcome},
};
use crate::{
    api::ImagePolicy,
    controller::{ClientError, Context},
    duration,
    locks::locked,
    source::credentials::read_secret,
    tenancy::Refusal,
};

/// How often `lastScan` alone is written (see the module doc).
pub const LAST_SCAN_EVERY: Duration = Duration::from_secs(600);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The controller's state: the shared context, and what each policy last found written.
pub struct ImagesContext {
    pub ctx: Arc<Context>,
    /// Per policy uid: the image and target last written or found already there.
    written: Mutex<HashMap<String, WrittenKey>>,
    /// Per policy uid: passes failed in a row (scan or update), for the back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl ImagesContext {
    pub fn new(ctx: Arc<Context>) -> ImagesContext {
        ImagesContext { ctx, written: Mutex::default(), failures: Mutex::default() }
    }
}

/// What makes a write unnecessary: this image, to this target, by this generation of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenKey {
    pub image: String,
    pub target: String,
    pub generation: Option<i64>,
}

/// What escaped a pass (the status write); the error policy backs off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ImagePolicy has no namespace")]
    NoNamespace,
    #[error("writing the status of ImagePolicy {policy}: {source}")]
    Status { policy: String, source: crate::controller::reconcile::StatusWriteError },
}

impl From<ScanError> for ScanFailure {
    fn from(e: ScanError) -> ScanFailure {
        ScanFailure::Scan(Box::new(e))
    }
}

/// Why a scan gave no image.
#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Client(Box<ClientError>),
    #[error(transparent)]
    Policy(#[from] SelectError),
    #[error(transparent)]
    Scan(Box<ScanError>),
    #[error("no tag of {image} matches the policy ({tags} tags listed)")]
    NoMatchingTag { image: String, tags: usize },
}

pub async fn reconcile(policy: Arc<ImagePolicy>, ictx: Arc<ImagesContext>) -> Result<Action, Error> {
    let ns = policy.namespace().ok_or(Error::NoNamespace)?;
    let ctx = &ictx.ctx;
    let interval = duration::parse(&policy.spec.interval).unwrap_or(DEFAULT_INTERVAL);
    if policy.spec.suspend {
        st::write_if_changed(ctx, &policy, &ns, Outcome::Suspended).await?;
        return Ok(Action::await_change());
    }
    let outcome = match scan_latest(ctx, &policy, &ns).await {
        Err(e) => {
            let no_match = matches!(e, ScanFailure::NoMatchingTag { .. });
            ctx.metrics.image_scanned(if no_match { "no_matching_tag" } else { "failed" });
            Outcome::ScanFailed { no_match, message: e.to_string() }
        }
        Ok((latest, tags)) => {
            ctx.metrics.image_scanned("success");
            let update = update(&ictx, &policy, &ns, &latest).await;
            Outcome::Scanned { latest, tags, update }
        }
    };
    let failed = outcome.failed();
    st::write_if_changed(ctx, &policy, &ns, outcome).await?;
    let uid = policy.uid().unwrap_or_default();
    Ok(Action::requeue(match failed {
        true => backoff(ictx.failed(&uid)),
        false => {
            locked(&ictx.failures).remove(&uid);
            interval
        }
    }))
}

/// What escaped a pass (a status write): retried with the same back-off as a failed pass.
pub fn error_policy(policy: Arc<ImagePolicy>, error: &Error, ictx: Arc<ImagesContext>) -> Action {
    tracing::warn!(policy = %policy.name_any(), %error, "ImagePolicy reconcile failed; retrying");
    Action::requeue(backoff(ictx.failed(&policy.uid().unwrap_or_default())))
}

impl ImagesContext {
    /// Counts a failed pass of policy `uid`; returns how many failed in a row.
    fn failed(&self, uid: &str) -> u32 {
        let mut failures = locked(&self.failures);
        let n = failures.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }
}

/// 5 s after the first failure in a row, doubling up to 5 minutes: a registry or Git server
/// that is down is not asked every second by a policy scanning every second, and one that
/// failed once is asked again soon even when the interval is an hour.
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let exponent = failures_in_a_row.saturating_sub(1).min(16);
    Duration::from_secs(5u64 << exponent).min(Duration::from_secs(300))
}

/// The latest image by the policy, and how many tags were listed.
async fn scan_latest(ctx: &Context, policy: &ImagePolicy, ns: &str) -> Result<(Latest, usize), ScanFailure> {
    let spec = &policy.spec;
    let selector = Selector::from_spec(spec)?;
    let repo = scan::repository(&spec.image).map_err(ScanError::from)?;
    let client = acting_client(ctx, policy, ns)?;
    let data = match &spec.secret_ref {
        Some(r) => {
            let secret =
                read_secret(&client, ctx.options.api_timeout, ns, r).await.map_err(ScanError::from)?;
            secret.data
        }
        None => None,
    };
    let access =
        scan::registry_access(data.as_ref(), repo.registry(), spec.insecure).map_err(ScanError::from)?;
    let tags = scan::list_tags(&ctx.artifacts.oci, &repo, &access).await.map_err(ScanError::from)?;
    let tag = selector
        .latest(&tags)
        .ok_or_else(|| ScanFailure::NoMatchingTag { image: spec.image.clone(), tags: tags.len() })?
        .to_string();
    let digest = match spec.pin_digest {
        true => Some(ctx.artifacts.oci.tag_digest(&repo, &tag, &access).await.map_err(ScanError::from)?),
        false => None,
    };
    Ok((Latest { name: spec.image.clone(), tag, digest }, tags.len()))
}

/// A client acting as the policy's ServiceAccount (as an Application's would: the
/// TenantPolicy's default, else none), for its Secrets.
pub fn acting_client(ctx: &Context, policy: &ImagePolicy, ns: &str) -> Result<kube::Client, ScanFailure> {
    let tenancy = ctx.tenancy(ns);
    let sa = tenancy.acting_as(policy.spec.service_account_name.as_deref())?;
    ctx.local.client_for(ns, sa.as_deref()).map_err(|e| ScanFailure::Client(Box::new(e)))
}

/// Writes `latest` when the policy has an update target and it is not known to be written.
async fn update(
    ictx: &ImagesContext,
    policy: &ImagePolicy,
    ns: &str,
    latest: &Latest,
) -> Option<Result<Delivered, UpdateError>> {
    let spec_update = policy.spec.update.as_ref()?;
    let ctx = &ictx.ctx;
    let target = match deliver::target(ctx, ns, spec_update) {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let uid = policy.uid().unwrap_or_default();
    let key = WrittenKey {
        image: latest.reference(),
        target: target.describe(),
        generation: policy.meta().generation,
    };
    let recorded = policy.status.as_ref().and_then(|s| s.last_update.as_ref()).map(|u| u.image.as_str());
    if locked(&ictx.written).get(&uid) == Some(&key) || recorded == Some(key.image.as_str()) {
        return None;
    }
    let result = deliver::run(ctx, policy, ns, &target, spec_update, latest).await;
    match &result {
        Ok(_) => {
            locked(&ictx.written).insert(uid, key);
        }
        Err(_) => ctx.metrics.image_updated("failed"),
    }
    Some(result)
}

/// Now, as a status timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5s_up_to_5_minutes() {
        let secs: Vec<u64> = [1, 2, 3, 6, 7, 100, u32::MAX].iter().map(|n| backoff(*n).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
    }
}
