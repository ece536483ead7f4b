//! Commit statuses through the forge client ([`crate::forge`]): the Notifier's provider names
//! the forge, the Application's repository URL its project (the API base from `spec.address`,
//! else derived), the Secret's `token` the credentials.

use super::{
    commit::{State, Verdict},
    dispatch::{DeliverError, Target},
};
use crate::{
    api::{ForgeProvider, NotifierProvider},
    forge::{CommitState, CommitStatus, ForgeClient, ForgeError, RepoCoordinates, Token},
};

/// Sets `verdict` as the `context` status of its commit in `repo_url`'s project.
pub(super) async fn send(
    client: Option<&ForgeClient>,
    provider: NotifierProvider,
    target: &Target,
    repo_url: &str,
    context: &str,
    verdict: &Verdict,
) -> Result<(), DeliverError> {
    let forge = forge_provider(provider).ok_or(DeliverError::NotACommitStatusProvider)?;
    let client = client.ok_or(DeliverError::NoClient)?;
    let token = target.token.clone().ok_or(DeliverError::NoToken)?;
    let repo =
        RepoCoordinates::from_repo_url(forge, repo_url, target.address.as_deref()).map_err(classify)?;
    let status = CommitStatus {
        sha: &verdict.sha,
        state: state(verdict.state),
        context,
        description: &verdict.description,
        target_url: None,
    };
    client.set_commit_status(&repo, &Token::new(token), &status).await.map_err(classify)
}

/// The forge of a commit status provider.
pub fn forge_provider(provider: NotifierProvider) -> Option<ForgeProvider> {
    match provider {
        NotifierProvider::Github => Some(ForgeProvider::Github),
        NotifierProvider::Gitlab => Some(ForgeProvider::Gitlab),
        NotifierProvider::Gitea => Some(ForgeProvider::Gitea),
        _ => None,
    }
}

fn state(state: State) -> CommitState {
    match state {
        State::Pending => CommitState::Pending,
        State::Success => CommitState::Success,
        State::Failure => CommitState::Failure,
    }
}

fn classify(e: ForgeError) -> DeliverError {
    if e.is_transient() {
        DeliverError::Forge(e.to_string())
    } else {
        DeliverError::ForgePermanent(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_status_providers_map_to_their_forge() {
        assert_eq!(forge_provider(NotifierProvider::Gitea), Some(ForgeProvider::Gitea));
        assert_eq!(forge_provider(NotifierProvider::Github), Some(ForgeProvider::Github));
        assert_eq!(forge_provider(NotifierProvider::Gitlab), Some(ForgeProvider::Gitlab));
        assert_eq!(forge_provider(NotifierProvider::Slack), None);
        assert_eq!(state(State::Failure), CommitState::Failure);
    }
}
