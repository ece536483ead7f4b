//! Condition types and reasons. Constants, so that a typo is a compile error and dashboards
//! and alerts can match on them.

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
pub const PROGRESSING: &str = "Progressing";
pub const FETCH_FAILED: &str = "FetchFailed";
pub const RENDER_FAILED: &str = "RenderFailed";
/// spec.decryption cannot decrypt a SOPS document of the revision (or has no usable key).
pub const DECRYPTION_FAILED: &str = "DecryptionFailed";
pub const VALIDATION_FAILED: &str = "ValidationFailed";
pub const APPLY_FAILED: &str = "ApplyFailed";
pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
pub const PRUNE_REFUSED: &str = "PruneRefused";
pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
pub const SUSPENDED: &str = "Suspended";
pub const OWNERSHIP_CONFLICT: &str = "OwnershipConflict";
pub const DRIFT_DETECTED: &str = "DriftDetected";
pub const OUT_OF_SYNC: &str = "OutOfSync";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
/// A PreSync or Sync hook failed: nothing further of the revision was applied.
pub const HOOK_FAILED: &str = "HookFailed";
/// A hook runs or a sync wave is not Healthy yet: the sync goes on.
pub const SYNCING: &str = "Syncing";
pub const WAITING_FOR_PROMOTION: &str = "WaitingForPromotion";
/// An Application of spec.dependsOn is missing or not Ready at its latest revision: ferry waits.
pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
/// spec.dependsOn leads back to the Application itself: it can never sync until a spec changes.
pub const DEPENDENCY_CYCLE: &str = "DependencyCycle";
// Refusals of the tenancy lockdown (flags and TenantPolicies), one reason per rule.
pub const SOURCE_NOT_PERMITTED: &str = "SourceNotPermitted";
pub const DESTINATION_NOT_PERMITTED: &str = "DestinationNotPermitted";
/// The destination Cluster's API server is not one a TenantPolicy lets the Application use.
pub const CLUSTER_NOT_PERMITTED: &str = "ClusterNotPermitted";
/// The destination Cluster does not answer; nothing is pruned and the Application converges
/// when it does.
pub const CLUSTER_UNREACHABLE: &str = "ClusterUnreachable";
/// `spec.destination.cluster` names no Cluster of the Application's namespace.
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
/// The destination Cluster's kubeconfig Secret cannot be read or is refused.
pub const INVALID_KUBECONFIG: &str = "InvalidKubeconfig";
pub const CLUSTER_SCOPED_NOT_PERMITTED: &str = "ClusterScopedNotPermitted";
pub const CROSS_NAMESPACE_REF_NOT_PERMITTED: &str = "CrossNamespaceRefNotPermitted";
pub const SERVICE_ACCOUNT_REQUIRED: &str = "ServiceAccountRequired";
