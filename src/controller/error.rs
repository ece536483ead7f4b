//! The sync pass's errors: one enum per stage, each with a typed source, wrapped by one variant
//! of [`SyncError`]. Every stage enum says its condition reason, the `ferry_errors_total`
//! category and whether a retry may help; [`SyncError`] delegates. Below every stage, so that the
//! stages, the hooks and the rollout glue return their own errors without depending on the sync
//! module that calls them.

use kube::runtime::reflector::ObjectRef;

pub use super::prunable::PruneError;
use super::{
    clusters::{ClientError, ClusterError},
    hooks::HookError,
};

use crate::{
    api::{Application, conditions as c},
    apply::{AppRef, ApplyError, NamespaceReadError},
    kube_util::api_words,
    plan::ApplyPhase,
    render::RenderError,
    source::{Revision, SourceError, credentials::SecretReadError},
    tenancy::Refusal,
};

/// How many objects a message lists before saying "and N more".
const LISTED: usize = 3;

/// `a; b; c; and 4 more`.
pub fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let shown = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join("; ");
    match items.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
    }
}

/// `1 object`, `2 objects`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn listed(errors: &[ApplyError]) -> String {
    list(errors.iter().map(ToString::to_string))
}

/// A failed sync pass: the stage that failed and why.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Apply(#[from] ApplyStageError),
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// The strategy's (`controller::strategy`): deciding this pass, converging the canary.
    #[error(transparent)]
    Rollout(#[from] super::strategy::RolloutError),
    /// The PostSync hooks': running, replacing or reading them.
    #[error(transparent)]
    Hooks(#[from] super::hooks::HookError),
    /// `spec.healthChecks` cannot be compiled; nothing was applied.
    #[error(transparent)]
    HealthChecks(#[from] crate::health::InvalidHealthCheck),
    /// `spec.dependsOn`'s (`controller::dependencies`): waiting for, or refused, before the fetch.
    #[error(transparent)]
    Dependencies(#[from] super::dependencies::DependencyError),
}

impl SyncError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Access(e) => e.reason(),
            SyncError::Fetch(e) => e.reason(),
            SyncError::Build(e) => e.reason(),
            SyncError::Plan(e) => e.reason(),
            SyncError::Validate(e) => e.reason(),
            SyncError::Apply(e) => e.reason(),
            SyncError::Prune(e) => e.reason(),
            SyncError::Rollout(e) => e.reason(),
            SyncError::Hooks(e) => e.reason(),
            SyncError::HealthChecks(_) => c::VALIDATION_FAILED,
            SyncError::Dependencies(e) => e.reason(),
        }
    }

    /// The short word for `ferry_errors_total{category}`.
    pub fn category(&self) -> &'static str {
        match self {
            SyncError::Access(e) => e.category(),
            SyncError::Fetch(e) => e.category(),
            SyncError::Build(e) => e.category(),
            SyncError::Plan(e) => e.category(),
            SyncError::Validate(e) => e.category(),
            SyncError::Apply(e) => e.category(),
            SyncError::Prune(e) => e.category(),
            SyncError::Rollout(e) => e.category(),
            SyncError::Hooks(e) => e.category(),
            SyncError::HealthChecks(_) => "validation",
            SyncError::Dependencies(e) => e.category(),
        }
    }

    /// Whether retrying without any change may help (backoff), as opposed to waiting for a
    /// change in Git or in the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Access(e) => e.is_transient(),
            SyncError::Fetch(e) => e.is_transient(),
            SyncError::Build(e) => e.is_transient(),
            SyncError::Plan(e) => e.is_transient(),
            SyncError::Validate(e) => e.is_transient(),
            SyncError::Apply(e) => e.is_transient(),
            SyncError::Prune(e) => e.is_transient(),
            SyncError::Rollout(e) => e.is_transient(),
            SyncError::Hooks(e) => e.is_transient(),
            SyncError::HealthChecks(_) => false,
            SyncError::Dependencies(_) => false,
        }
    }

    /// Only a change to the Application can help (its ServiceAccount cannot be impersonated):
    /// no requeue until then.
    pub fn awaits_change(&self) -> bool {
        matches!(self, SyncError::Access(AccessError::Client(_)))
    }

    /// The pass failed before it had a revision's objects to compare: the sync status stays as
    /// it was rather than turning OutOfSync.
    pub fn before_the_revision(&self) -> bool {
        matches!(
            self,
            SyncError::Access(AccessError::Client(_) | AccessError::Cluster(_))
                | SyncError::Dependencies(_)
                | SyncError::Fetch(
                    FetchError::Credentials(_)
                        | FetchError::Source(_)
                        | FetchError::ArtifactSecret(_)
                        | FetchError::ArtifactAccess(_)
                        | FetchError::Artifact(_)
                )
        )
    }

    /// `ref.fromApplication`: the Application followed has no verified revision yet;
    /// `spec.dependsOn`: a dependency is missing or not Ready. Not a failure: no failed history
    /// entry, no error metric.
    pub fn is_waiting(&self) -> bool {
        match self {
            SyncError::Fetch(FetchError::FollowedMissing { .. } | FetchError::FollowedUnverified { .. }) => {
                true
            }
            SyncError::Dependencies(e) => e.is_waiting(),
            _ => false,
        }
    }

    /// The pass never started, for a reason in the spec (`spec.dependsOn` forms a cycle or is
    /// refused) that no revision has: Stalled, but no history entry (it would be a new one at
    /// every pass, since there is no revision to tell a repeat by).
    pub fn is_blocked(&self) -> bool {
        matches!(self, SyncError::Dependencies(e) if !e.is_waiting())
    }

    /// The destination cluster does not answer: sync and health are Unknown, not failed.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SyncError::Access(AccessError::Cluster(ClusterError::Unreachable { .. })))
    }

    /// The tenancy lockdown refused the Application (its Events carry the rule's reason).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SyncError::Access(AccessError::Refused(_) | AccessError::Cluster(ClusterError::Refused(_)))
                | SyncError::Fetch(FetchError::Refused(_))
                | SyncError::Build(BuildError::Refused(_))
                | SyncError::Dependencies(super::dependencies::DependencyError::Refused(_))
        )
    }
}

/// A Secret that cannot be read is a credentials failure (retried: it is usually about to be
/// created); one that holds no usable credentials fails the fetch.
impl From<SecretReadError> for SyncError {
    fn from(err: SecretReadError) -> SyncError {
        SyncError::Fetch(FetchError::from(err))
    }
}

/// Who the Application acts as, and whether the lockdown lets it.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The tenancy lockdown (flags, TenantPolicies) refuses it; nothing was fetched or written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The ServiceAccount it names cannot be acted as.
    #[error("{0}")]
    Client(#[source] Box<ClientError>),
    /// `spec.destination.cluster`: missing, refused, or not answering.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl AccessError {
    fn reason(&self) -> &'static str {
        match self {
            AccessError::Refused(r) => r.reason(),
            AccessError::Client(_) => c::VALIDATION_FAILED,
            AccessError::Cluster(e) => e.reason(),
        }
    }

    fn category(&self) -> &'static str {
        match self {
            AccessError::Refused(_) => "policy",
            AccessError::Client(_) => "access",
            AccessError::Cluster(e) => e.category(),
        }
    }

    fn is_transient(&self) -> bool {
        matches!(self, AccessError::Cluster(e) if e.is_transient())
    }
}

/// Resolving and fetching the revision.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading Git credentials: {0}")]
    Credentials(#[source] Box<SecretReadError>),
    #[error("{0}")]
    Source(#[source] Box<SourceError>),
    /// The lockdown refuses to follow the Application `ref.fromApplication` names.
    #[error(transparent)]
    Refused(Refusal),
    #[error("spec.source.ref.fromApplication names this Application itself")]
    FollowsItself,
    #[error(
        "waiting for Application {} (spec.source.ref.fromApplication), which does not exist",
        followed(.0)
    )]
    FollowedMissing(ObjectRef<Application>),
    #[error(
        "waiting for Application {} to verify a revision (Synced, Healthy and its PostSync hooks passed)",
        followed(.0)
    )]
    FollowedUnverified(ObjectRef<Application>),
    #[error("spec.source names no Git repository, chart or OCI artifact")]
    NoSource,
    #[error("reading spec.source's Secret: {0}")]
    ArtifactSecret(#[source] Box<SecretReadError>),
    #[error("spec.source's Secret: {0}")]
    ArtifactAccess(#[source] crate::artifact::access::AccessError),
    /// A chart or an OCI artifact could not be fetched.
    #[error("{0}")]
    Artifact(#[source] Box<crate::artifact::fetch::ArtifactError>),
}

fn followed(r: &ObjectRef<Application>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

impl FetchError {
    fn reason(&self) -> &'static str {
        match self {
            FetchError::Credentials(_) | FetchError::Source(_) => c::FETCH_FAILED,
            FetchError::NoSource | FetchError::ArtifactSecret(_) | FetchError::ArtifactAccess(_) => {
                c::FETCH_FAILED
            }
            FetchError::Artifact(_) => c::FETCH_FAILED,
            FetchError::Refused(r) => r.reason(),
            FetchError::FollowsItself => c::VALIDATION_FAILED,
            FetchError::FollowedMissing(_) | FetchError::FollowedUnverified(_) => c::WAITING_FOR_PROMOTION,
        }
    }

    fn category(&self) -> &'static str {
        match self {
            FetchError::Credentials(_) => "credentials",
            FetchError::Source(_) => "fetch",
            FetchError::Refused(_) => "policy",
            FetchError::FollowsItself => "validation",
            FetchError::FollowedMissing(_) | FetchError::FollowedUnverified(_) => "promotion",
            FetchError::ArtifactSecret(_) | FetchError::ArtifactAccess(_) => "credentials",
            FetchError::Artifact(_) => "artifact",
            FetchError::NoSource => "fetch",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            // A missing Secret is usually about to be created.
            FetchError::Credentials(_) => true,
            FetchError::Source(e) => e.is_transient(),
            FetchError::ArtifactSecret(_) => true,
            FetchError::Artifact(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<SecretReadError> for FetchError {
    fn from(err: SecretReadError) -> FetchError {
        match err {
            SecretReadError::Invalid(e) => FetchError::Source(Box::new(e)),
            other => FetchError::Credentials(Box::new(other)),
        }
    }
}

/// Which kinds the objects are: discovery, with kinds a CRD of the revision defines waiting for it.
#[derive(Debug, thiserror::Error)]
pub enum KindsError {
    /// Kinds the API server does not serve and no CRD of the revision defines.
    #[error("{}", listed(.0))]
    Unknown(Vec<ApplyError>),
    #[error("{0}")]
    Discovery(#[source] ApplyError),
}

impl KindsError {
    fn reason(&self) -> &'static str {
        match self {
            KindsError::Unknown(_) => c::VALIDATION_FAILED,
            KindsError::Discovery(_) => c::APPLY_FAILED,
        }
    }

    fn category(&self) -> &'static str {
        match self {
            KindsError::Unknown(_) => "validation",
            KindsError::Discovery(_) => "discovery",
        }
    }

    fn is_transient(&self) -> bool {
        matches!(self, KindsError::Discovery(_))
    }
}

/// From the fetched files to the objects to sync: render, split, kinds, the tenancy's checks.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("rendering {revision}: {source}")]
    Render { revision: Revision, source: RenderError },
    /// A hook annotation ferry does not run.
    #[error(transparent)]
    Hook(HookError),
    /// Whether ferry may create the destination namespace could not be read.
    #[error("{0}")]
    Namespace(#[source] NamespaceReadError),
    #[error(transparent)]
    Kinds(#[from] KindsError),
    /// Sync options or Flux annotations ferry does not know.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The tenancy lockdown refuses an object of the revision.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// What a rollout made of a rendered object is no Kubernetes object (a defect, reported
    /// rather than applied as Git has it, which would bypass the rollout).
    #[error("the rollout's version of {object} is not a Kubernetes object")]
    Rewrite { object: String },
    /// A chart dependency could not be fetched (a render error: the chart cannot render).
    #[error("{0}")]
    Dependency(#[source] Box<RenderError>),
    /// spec.decryption's Secret could not be read.
    #[error("reading spec.decryption's Secret: {0}")]
    DecryptionSecret(#[source] Box<SecretReadError>),
    /// spec.decryption's Secret holds no usable age key.
    #[error("spec.decryption's Secret: {0}")]
    DecryptionKeys(#[source] crate::render::KeyError),
}

impl BuildError {
    fn reason(&self) -> &'static str {
        match self {
            // A missing or wrong key is fixed in spec.decryption, not in the manifests.
            BuildError::Render { source: RenderError::DecryptionFailed { .. }, .. } => c::DECRYPTION_FAILED,
            BuildError::DecryptionSecret(_) | BuildError::DecryptionKeys(_) => c::DECRYPTION_FAILED,
            BuildError::Render { .. } | BuildError::Dependency(_) => c::RENDER_FAILED,
            BuildError::Hook(e) => e.reason(),
            BuildError::Rewrite { .. } | BuildError::Options(_) => c::VALIDATION_FAILED,
            BuildError::Namespace(_) => c::APPLY_FAILED,
            BuildError::Kinds(e) => e.reason(),
            BuildError::Refused(r) => r.reason(),
        }
    }

    fn category(&self) -> &'static str {
        match self {
            BuildError::Render { .. } | BuildError::Dependency(_) => "render",
            BuildError::Hook(e) => e.category(),
            BuildError::Rewrite { .. } | BuildError::Options(_) => "validation",
            BuildError::Namespace(_) => "apply",
            BuildError::Kinds(e) => e.category(),
            BuildError::Refused(_) => "policy",
            BuildError::DecryptionSecret(_) | BuildError::DecryptionKeys(_) => "decryption",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            // A dependency's repository may answer next time.
            BuildError::Namespace(_) | BuildError::DecryptionSecret(_) | BuildError::Dependency(_) => true,
            BuildError::Kinds(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Options on rendered objects that ferry does not know or refuses: (object, what is wrong).
/// A typo must not silently change a deploy, so nothing is applied.
#[derive(Debug, thiserror::Error)]
#[error("{}; nothing was applied", list(.0.iter().map(|(object, e)| format!("{object}: {e}"))))]
pub struct OptionsError(pub Vec<(String, crate::plan::OptionError)>);

/// Comparing the objects with the cluster: reads, ownership.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reading a live object failed in a way a retry may fix.
    #[error("{0}")]
    Read(#[source] ApplyError),
    /// The API server refuses to let ferry read these objects (RBAC, a bad name).
    #[error("{}", listed(.0))]
    Unreadable(Vec<ApplyError>),
    #[error("reading Application {owner} timed out")]
    OwnerTimeout { owner: AppRef },
    #[error("reading Application {owner}: {}", api_words(.source))]
    Owner { owner: AppRef, source: Box<kube::Error> },
    /// Objects another Application owns: (owner, object).
    #[error(
        "{}; ferry does not take over objects of another Application, so nothing of {revision} was applied",
        list(.conflicts.iter().map(|(owner, obj)| format!("{obj} belongs to Application {owner}")))
    )]
    Conflict { conflicts: Vec<(AppRef, String)>, revision: Revision },
    /// Choosing what to prune is part of the plan: nothing is written before it is chosen.
    #[error(transparent)]
    Prune(#[from] PruneError),
}

impl PlanError {
    fn reason(&self) -> &'static str {
        match self {
            PlanError::Unreadable(_) => c::VALIDATION_FAILED,
            PlanError::Conflict { .. } => c::OWNERSHIP_CONFLICT,
            PlanError::Prune(e) => e.reason(),
            _ => c::APPLY_FAILED,
        }
    }

    fn category(&self) -> &'static str {
        match self {
            PlanError::Unreadable(_) => "validation",
            PlanError::Conflict { .. } => "conflict",
            PlanError::Prune(e) => e.category(),
            _ => "apply",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            PlanError::Read(e) => e.is_transient(),
            PlanError::OwnerTimeout { .. } | PlanError::Owner { .. } => true,
            PlanError::Unreadable(_) | PlanError::Conflict { .. } => false,
            PlanError::Prune(e) => e.is_transient(),
        }
    }
}

/// The server-side dry run of every changed object, before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// Objects the API server would refuse; nothing was applied.
    #[error("{}; nothing was applied", listed(.0))]
    Refused(Vec<ApplyError>),
    /// Every dry run that failed failed in a way a retry may fix: the first of them.
    #[error("{0}")]
    Unavailable(#[source] ApplyError),
}

impl ValidateError {
    /// The validation's verdict on the refusals of dry runs (or of the one apply that stood in
    /// for them): transient when every one is, otherwise the refusals.
    pub fn of(errors: Vec<ApplyError>) -> ValidateError {
        let (transient, refused): (Vec<_>, Vec<_>) = errors.into_iter().partition(ApplyError::is_transient);
        match transient.into_iter().next() {
            Some(first) if refused.is_empty() => ValidateError::Unavailable(first),
            _ => ValidateError::Refused(refused),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ValidateError::Refused(_) => c::VALIDATION_FAILED,
            ValidateError::Unavailable(_) => c::APPLY_FAILED,
        }
    }

    fn category(&self) -> &'static str {
        match self {
            ValidateError::Refused(_) => "validation",
            ValidateError::Unavailable(_) => "apply",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            ValidateError::Refused(_) => false,
            ValidateError::Unavailable(e) => e.is_transient(),
        }
    }
}

/// Applying the changed objects, phase by phase.
#[derive(Debug, thiserror::Error)]
pub enum ApplyStageError {
    /// Kinds served only once this revision's CRDs are installed.
    #[error(transparent)]
    Kinds(#[from] KindsError),
    /// The dry run of objects that could only be validated once their phase came.
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("applying {revision} stopped in phase {phase:?}: {}", listed(.failures))]
    Failed { revision: Revision, phase: ApplyPhase, failures: Vec<ApplyError> },
    #[error("CustomResourceDefinition {name} was not Established within 60s")]
    NotEstablished { name: String },
}

impl ApplyStageError {
    fn reason(&self) -> &'static str {
        match self {
            ApplyStageError::Kinds(e) => e.reason(),
            ApplyStageError::Validate(e) => e.reason(),
            ApplyStageError::Failed { .. } | ApplyStageError::NotEstablished { .. } => c::APPLY_FAILED,
        }
    }

    fn category(&self) -> &'static str {
        match self {
            ApplyStageError::Kinds(e) => e.category(),
            ApplyStageError::Validate(e) => e.category(),
            ApplyStageError::Failed { .. } | ApplyStageError::NotEstablished { .. } => "apply",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            ApplyStageError::Kinds(e) => e.is_transient(),
            ApplyStageError::Validate(e) => e.is_transient(),
            ApplyStageError::Failed { failures, .. } => failures.iter().all(ApplyError::is_transient),
            ApplyStageError::NotEstablished { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ApplyError {
        ApplyError::Transient { object: "ConfigMap a/b".into(), message: "503".into() }
    }

    fn refused() -> ApplyError {
        ApplyError::Refused {
            object: "ConfigMap a/b".into(),
            code: 422,
            reason: "Invalid".into(),
            message: "bad".into(),
        }
    }

    #[test]
    fn a_validation_is_transient_only_when_every_refusal_is() {
        let transient =
            || ApplyError::Transient { object: "ConfigMap a/t".into(), message: "timeout".into() };
        assert!(matches!(ValidateError::of(vec![transient(), transient()]), ValidateError::Unavailable(_)));
        match ValidateError::of(vec![transient(), refused()]) {
            ValidateError::Refused(errors) => assert_eq!(errors.len(), 1, "only the refusal: {errors:?}"),
            other => panic!("a refusal among transient failures is a refusal: {other:?}"),
        }
        assert_eq!(ValidateError::of(vec![refused()]).reason(), c::VALIDATION_FAILED);
    }

    #[test]
    fn lists_are_bounded() {
        let items = (1..=5).map(|i| format!("o{i}"));
        assert_eq!(list(items), "o1; o2; o3; and 2 more");
        assert_eq!(list(["a".to_string()].into_iter()), "a");
        assert_eq!(count(1, "object"), "1 object");
        assert_eq!(count(2, "object"), "2 objects");
    }

    #[test]
    fn each_stage_keeps_the_reason_category_and_retry_of_its_failure() {
        let revision: Revision = "sha1:0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let cases: Vec<(SyncError, &str, &str, bool)> = vec![
            (FetchError::FollowsItself.into(), c::VALIDATION_FAILED, "validation", false),
            (
                FetchError::FollowedUnverified(ObjectRef::new("a").within("b")).into(),
                c::WAITING_FOR_PROMOTION,
                "promotion",
                false,
            ),
            (
                BuildError::Kinds(KindsError::Discovery(transient())).into(),
                c::APPLY_FAILED,
                "discovery",
                true,
            ),
            (
                BuildError::Kinds(KindsError::Unknown(vec![refused()])).into(),
                c::VALIDATION_FAILED,
                "validation",
                false,
            ),
            (PlanError::Read(transient()).into(), c::APPLY_FAILED, "apply", true),
            (PlanError::Unreadable(vec![refused()]).into(), c::VALIDATION_FAILED, "validation", false),
            (ValidateError::Refused(vec![refused()]).into(), c::VALIDATION_FAILED, "validation", false),
            (ValidateError::Unavailable(transient()).into(), c::APPLY_FAILED, "apply", true),
            (
                ApplyStageError::Failed {
                    revision: revision.clone(),
                    phase: ApplyPhase::Workloads,
                    failures: vec![transient()],
                }
                .into(),
                c::APPLY_FAILED,
                "apply",
                true,
            ),
            (
                ApplyStageError::Failed {
                    revision,
                    phase: ApplyPhase::Workloads,
                    failures: vec![transient(), refused()],
                }
                .into(),
                c::APPLY_FAILED,
                "apply",
                false,
            ),
            (
                PlanError::Prune(crate::apply::PruneRefused { inventory: 3 }.into()).into(),
                c::PRUNE_REFUSED,
                "prune",
                false,
            ),
            (PruneError::Discovery(transient()).into(), c::APPLY_FAILED, "discovery", true),
            (
                super::super::dependencies::DependencyError::Missing(ObjectRef::new("a").within("b")).into(),
                c::DEPENDENCY_NOT_READY,
                "dependency",
                false,
            ),
        ];
        for (error, reason, category, transient) in cases {
            assert_eq!(
                (error.reason(), error.category(), error.is_transient()),
                (reason, category, transient),
                "{error}"
            );
        }
    }

    #[test]
    fn messages_read_as_one_sentence_per_failure() {
        let owner = AppRef { namespace: "a".into(), name: "owner".into() };
        let revision: Revision = "main@sha1:0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let conflict = PlanError::Conflict { conflicts: vec![(owner, "ConfigMap a/c".into())], revision };
        assert_eq!(
            conflict.to_string(),
            "ConfigMap a/c belongs to Application a/owner; ferry does not take over objects of another Application, so nothing of main@sha1:0123456789abcdef0123456789abcdef01234567 was applied"
        );
        assert_eq!(
            FetchError::FollowedMissing(ObjectRef::new("up").within("team")).to_string(),
            "waiting for Application team/up (spec.source.ref.fromApplication), which does not exist"
        );
        assert_eq!(
            ValidateError::Refused(vec![refused()]).to_string(),
            "ConfigMap a/b: refused by the API server: bad; nothing was applied"
        );
    }
}
