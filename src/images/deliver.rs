//! Commit -> push / PR: where the update goes (an Application's repository, branch and path,
//! or `update.git`), the push credentials read as the policy's ServiceAccount, the delivery,
//! and what follows a delivery: the Application woken at once, an Event, a notification.

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{events::EventType, reflector::ObjectRef},
};
use serde_json::json;

use super::{edit::Latest, reconcile::ScanFailure, reconcile::acting_client, write::ImageCommit};
use crate::{
    api::{Application, ImagePolicy, ImageUpdate, RECONCILE_AT_ANNOTATION, WriteMode},
    controller::{Context, events},
    gitwrite::{self, Author, Delivery, GitWriteError},
    tenancy::Refusal,
};

/// The Event reason of a delivered update.
pub const IMAGE_UPDATED: &str = "ImageUpdated";

/// Where the update is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTarget {
    pub url: String,
    pub branch: String,
    /// Repository directory, `""` for all of it.
    pub dir: String,
    /// The Application it came from, woken after a push.
    pub application: Option<String>,
}

impl UpdateTarget {
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.url, self.branch, self.dir)
    }
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivered {
    Committed {
        commit: String,
        branch: String,
    },
    PullRequest {
        commit: String,
        branch: String,
        url: String,
    },
    /// The files already carry the latest image.
    Unchanged,
    Conflict {
        paths: Vec<String>,
    },
}

/// Why the update was not written (the Ready condition's `UpdateFailed`).
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("update.applicationRef: Application {0} does not exist in this namespace")]
    NoApplication(String),
    #[error("update.applicationRef: Application {0} has no source.repoURL (a Git repository)")]
    NoRepository(String),
    #[error(
        "update.applicationRef: Application {0} follows no branch (ref.branch); ferry writes image updates to a branch"
    )]
    NotABranch(String),
    #[error("update: {0}")]
    Refused(#[from] Refusal),
    #[error("update: {0}")]
    Access(Box<ScanFailure>),
    #[error("update: {0}")]
    Write(Box<GitWriteError>),
    #[error("update: {0}")]
    NoForgeClient(String),
}

impl From<GitWriteError> for UpdateError {
    fn from(e: GitWriteError) -> UpdateError {
        UpdateError::Write(Box::new(e))
    }
}

/// The repository, branch and path `update` names.
pub fn target(ctx: &Context, ns: &str, update: &ImageUpdate) -> Result<UpdateTarget, UpdateError> {
    let target = match (&update.git, &update.application_ref) {
        (Some(git), _) => UpdateTarget {
            url: git.url.clone(),
            branch: git.branch.clone(),
            dir: normalize_dir(git.path.as_deref().unwrap_or("")),
            application: None,
        },
        (None, Some(app_ref)) => application_target(ctx, ns, &app_ref.name)?,
        (None, None) => return Err(UpdateError::NoApplication(String::new())),
    };
    // The tenancy's source rules apply to where a tenant makes ferry push, as to what it reads.
    ctx.tenancy(ns).check_source(&target.url)?;
    Ok(target)
}

fn application_target(ctx: &Context, ns: &str, name: &str) -> Result<UpdateTarget, UpdateError> {
    let app = ctx
        .apps
        .get(&ObjectRef::<Application>::new(name).within(ns))
        .ok_or_else(|| UpdateError::NoApplication(name.to_string()))?;
    let source = &app.spec.source;
    let url = source.repo_url.clone().ok_or_else(|| UpdateError::NoRepository(name.to_string()))?;
    let branch = source
        .git_ref
        .as_ref()
        .and_then(|r| r.branch.clone())
        .ok_or_else(|| UpdateError::NotABranch(name.to_string()))?;
    Ok(UpdateTarget {
        url,
        branch,
        dir: normalize_dir(source.path.as_deref().unwrap_or("")),
        application: Some(name.to_string()),
    })
}

/// `./deploy/` -> `deploy`; `.` and `/` -> the whole repository.
pub fn normalize_dir(path: &str) -> String {
    let trimmed = path.trim().trim_start_matches("./").trim_matches('/');
    if trimmed == "." { String::new() } else { trimmed.to_string() }
}

/// Reads the push credentials as the policy's ServiceAccount and delivers the commit.
pub async fn run(
    ctx: &Context,
    policy: &ImagePolicy,
    ns: &str,
    target: &UpdateTarget,
    update: &ImageUpdate,
    latest: &Latest,
) -> Result<Delivered, UpdateError> {
    let name = policy.name_any();
    let client = acting_client(ctx, policy, ns).map_err(|e| UpdateError::Access(Box::new(e)))?;
    let access = gitwrite::push_credentials(&client, ctx.options.api_timeout, ns, &update.write).await?;
    let forge = ctx.forge.as_ref().map_err(|e| UpdateError::NoForgeClient(e.clone()))?;
    let maker = ImageCommit {
        namespace: ns.to_string(),
        name: name.clone(),
        latest: latest.clone(),
        dir: target.dir.clone(),
        author: Author::from_spec(update.write.author.as_ref()),
    };
    let title = format!("ferry: update {} to {}", latest.name, latest.tag);
    let body = format!("ImagePolicy {ns}/{name} selected `{}`.", latest.reference());
    let gw = gitwrite::Target {
        url: &target.url,
        branch: &target.branch,
        write: &update.write,
        access: &access,
        proposal_branch: format!("ferry/image-update/{ns}-{name}"),
        title,
        body,
    };
    let delivered = match gitwrite::deliver(&ctx.git, forge, &gw, &maker).await? {
        Delivery::Pushed { commit, branch } => Delivered::Committed { commit, branch },
        Delivery::Proposed { commit, branch, pull_request } => {
            Delivered::PullRequest { commit, branch, url: pull_request.url }
        }
        Delivery::Unchanged => Delivered::Unchanged,
        Delivery::Conflict { paths } => Delivered::Conflict { paths },
    };
    announce(ctx, policy, ns, target, latest, &delivered, update.write.mode).await;
    Ok(delivered)
}

/// Metrics, the Event, the notification, and the Application woken after a push.
async fn announce(
    ctx: &Context,
    policy: &ImagePolicy,
    ns: &str,
    target: &UpdateTarget,
    latest: &Latest,
    delivered: &Delivered,
    mode: WriteMode,
) {
    let message = match delivered {
        Delivered::Committed { commit, branch } => {
            ctx.metrics.image_updated("committed");
            format!("{} written to {branch} in commit {}", latest.reference(), short(commit))
        }
        Delivered::PullRequest { url, .. } => {
            ctx.metrics.image_updated("pull_request");
            format!("{} proposed in pull request {url}", latest.reference())
        }
        Delivered::Conflict { paths } => {
            ctx.metrics.image_updated("conflict");
            format!("{} conflicts with {} on {}", latest.reference(), target.branch, paths.join(", "))
        }
        Delivered::Unchanged => return,
    };
    let warning = matches!(delivered, Delivered::Conflict { .. });
    let type_ = if warning { EventType::Warning } else { EventType::Normal };
    let reason = if warning { "UpdateConflict" } else { IMAGE_UPDATED };
    events::on_object(ctx, policy.object_ref(&()), type_, reason, &message).await;
    tracing::info!(policy = %format_args!("{ns}/{}", policy.name_any()), %message, "image update");
    notify(ctx, policy, ns, target, delivered, &message);
    if let (Delivered::Committed { .. }, Some(app), WriteMode::Direct) =
        (delivered, &target.application, mode)
    {
        wake(ctx, ns, app).await;
    }
}

/// Notifiers hear an update as one of the Application it writes for (its labels), or, for a
/// repository named in the policy, as one of the ImagePolicy itself.
fn notify(
    ctx: &Context,
    policy: &ImagePolicy,
    ns: &str,
    target: &UpdateTarget,
    delivered: &Delivered,
    message: &str,
) {
    let (name, labels) = match &target.application {
        Some(app) => {
            let labels = ctx.apps.get(&ObjectRef::new(app).within(ns)).map(|a| a.labels().clone());
            (app.clone(), labels.unwrap_or_default())
        }
        None => (policy.name_any(), policy.labels().clone()),
    };
    let revision = match delivered {
        Delivered::Committed { commit, branch } | Delivered::PullRequest { commit, branch, .. } => {
            Some(format!("{branch}@sha1:{commit}"))
        }
        _ => None,
    };
    let event = crate::api::NotificationEvent::ImageUpdated;
    ctx.notifications.offer_for(ns, &name, &labels, event, revision.as_deref(), message);
}

/// Stamps the Application's `ferry.dev/reconcile-at`, as a webhook does: it re-resolves its
/// branch and deploys the new commit now, not at its next interval. A failure only delays the
/// deploy to that interval.
async fn wake(ctx: &Context, ns: &str, app: &str) {
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {RECONCILE_AT_ANNOTATION: Timestamp::now().to_string()}}});
    let params =
        PatchParams { field_manager: Some(crate::apply::FIELD_MANAGER.into()), ..Default::default() };
    let merge = Patch::Merge(&patch);
    let call = api.patch(app, &params, &merge);
    match tokio::time::timeout(ctx.options.api_timeout, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(application = %format_args!("{ns}/{app}"), error = %e, "cannot wake the Application after an image update")
        }
        Err(_) => {
            tracing::warn!(application = %format_args!("{ns}/{app}"), "cannot wake the Application after an image update: no answer in time")
        }
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_normalize() {
        for (input, want) in
            [("", ""), (".", ""), ("./", ""), ("/", ""), ("./deploy/", "deploy"), ("a/b", "a/b")]
        {
            assert_eq!(normalize_dir(input), want, "{input:?}");
        }
    }
}
