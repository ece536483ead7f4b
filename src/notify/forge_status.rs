//! Commit statuses through the forge client (`crate::forge`, landing separately): until it
//! is in the tree, a commit status message fails as transient and is retried.

use std::time::Duration;

use super::{commit::Verdict, dispatch::DeliverError, dispatch::Target};
use crate::api::NotifierProvider;

pub(super) async fn send(
    _timeout: Duration,
    _provider: NotifierProvider,
    _target: &Target,
    _repo_url: &str,
    _context: &str,
    _verdict: &Verdict,
) -> Result<(), DeliverError> {
    Err(DeliverError::ForgePermanent("this build has no forge client".into()))
}
