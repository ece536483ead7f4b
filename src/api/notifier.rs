//! The `Notifier` custom resource (`ferry.dev/v1alpha1`): where to tell people about what ferry
//! does to some Applications — a chat webhook, a signed JSON endpoint, or the commit status of
//! the revision on the forge. Namespaced: a Notifier hears only the Applications of its own
//! namespace, except one in ferry's own namespace, which a platform team may point at others.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// A notification channel and what it hears.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Notifier",
    namespaced,
    status = "NotifierStatus",
    shortname = "fnotifier",
    category = "ferry",
    doc = "A Notifier sends what ferry does to some Applications of its namespace (synced, failed, rollouts, reverts, image updates) to a webhook, a chat, or the revision's commit status on GitHub, GitLab or Gitea.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Sent", type_ = "integer", json_path = ".status.sent"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.address) || has(self.secretRef) || self.provider in ['github', 'gitlab', 'gitea']").message("address or secretRef (with key address) is required, except for commit status providers"))]
pub struct NotifierSpec {
    /// `generic`, `generic-hmac`, `slack`, `msteams`, or the commit status of `github`,
    /// `gitlab` or `gitea`.
    pub provider: NotifierProvider,
    /// Where to send: the webhook URL, or for commit statuses the forge API's base URL (default
    /// derived from the repository URL). A Secret's `address` key takes precedence: keep URLs
    /// that carry a token (Slack, Teams) there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("address must be an http(s) URL"))]
    pub address: Option<String>,
    /// A Secret of this namespace: `address` (the URL), `token` (the forge API token, the
    /// HMAC key of `generic-hmac`, or a bearer token for `generic`). Read as `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccount of this namespace whose rights read the Secret. Default: as an
    /// Application's (the TenantPolicy's default, else `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Which Applications it hears. Default: every Application of this namespace.
    #[serde(default)]
    pub applications: ApplicationSelector,
    /// Which events it hears. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<NotificationEvent>,
    /// The least severity it hears: `info` (default: everything) or `error` (failures only).
    #[serde(default)]
    pub severity: Severity,
    /// Identical events (same Application, event, revision and message) within this window are
    /// sent once; the next one after the window carries how many were held back. Default `5m`;
    /// `0s` sends every one.
    #[serde(default = "default_rate_limit", skip_serializing_if = "is_default_rate_limit")]
    #[schemars(length(min = 2, max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("rateLimit must be a duration such as 30s, 5m or 1h"))]
    pub rate_limit: String,
    /// The commit status context. Default `ferry/<namespace>/<application>`, one per
    /// Application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub commit_status_context: Option<String>,
    /// Stop sending; nothing is queued meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

fn default_rate_limit() -> String {
    "5m".into()
}

fn is_default_rate_limit(s: &String) -> bool {
    s == "5m"
}

/// Where a Notifier sends.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NotifierProvider {
    /// A JSON POST of the event.
    Generic,
    /// A JSON POST signed with HMAC-SHA256 of the body, key from the Secret's `token`
    /// (`X-Signature: sha256=<hex>`, as Flux's generic-hmac).
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    /// A Slack incoming webhook (`text` and `attachments`).
    Slack,
    /// A Microsoft Teams incoming webhook (a MessageCard).
    Msteams,
    /// GitHub commit status of the revision.
    Github,
    /// GitLab commit status of the revision.
    Gitlab,
    /// Gitea commit status of the revision.
    Gitea,
}

impl NotifierProvider {
    pub const ALL: [NotifierProvider; 7] = [
        NotifierProvider::Generic,
        NotifierProvider::GenericHmac,
        NotifierProvider::Slack,
        NotifierProvider::Msteams,
        NotifierProvider::Github,
        NotifierProvider::Gitlab,
        NotifierProvider::Gitea,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifierProvider::Generic => "generic",
            NotifierProvider::GenericHmac => "generic-hmac",
            NotifierProvider::Slack => "slack",
            NotifierProvider::Msteams => "msteams",
            NotifierProvider::Github => "github",
            NotifierProvider::Gitlab => "gitlab",
            NotifierProvider::Gitea => "gitea",
        }
    }

    /// Commit status providers: they hear the sync state of each revision, not single events.
    pub fn is_commit_status(self) -> bool {
        matches!(self, NotifierProvider::Github | NotifierProvider::Gitlab | NotifierProvider::Gitea)
    }
}

/// Which Applications a Notifier hears: all conditions hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSelector {
    /// Application names or globs (`web-*`). Default: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub names: Vec<String>,
    /// Labels of the Applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces (names or globs) of the Applications. Only a Notifier in ferry's own
    /// namespace may name others; elsewhere the Notifier is refused (`CrossNamespaceNotPermitted`).
    /// Default: the Notifier's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub namespaces: Vec<String>,
}

/// What happened to an Application.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum NotificationEvent {
    /// A revision was applied.
    Synced,
    /// A sync failed or was refused.
    Failed,
    /// Health became Degraded.
    Degraded,
    /// Changes made in the cluster were reverted to Git's.
    DriftCorrected,
    RolloutStarted,
    RolloutPaused,
    RolloutPromoted,
    RolloutAborted,
    /// A PostSync verification failed.
    VerificationFailed,
    /// ferry committed a revert of a failed revision to Git (or opened a pull request).
    Reverted,
    /// ferry committed a new image tag to Git (or opened a pull request).
    ImageUpdated,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 11] = [
        NotificationEvent::Synced,
        NotificationEvent::Failed,
        NotificationEvent::Degraded,
        NotificationEvent::DriftCorrected,
        NotificationEvent::RolloutStarted,
        NotificationEvent::RolloutPaused,
        NotificationEvent::RolloutPromoted,
        NotificationEvent::RolloutAborted,
        NotificationEvent::VerificationFailed,
        NotificationEvent::Reverted,
        NotificationEvent::ImageUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Synced => "synced",
            NotificationEvent::Failed => "failed",
            NotificationEvent::Degraded => "degraded",
            NotificationEvent::DriftCorrected => "driftCorrected",
            NotificationEvent::RolloutStarted => "rolloutStarted",
            NotificationEvent::RolloutPaused => "rolloutPaused",
            NotificationEvent::RolloutPromoted => "rolloutPromoted",
            NotificationEvent::RolloutAborted => "rolloutAborted",
            NotificationEvent::VerificationFailed => "verificationFailed",
            NotificationEvent::Reverted => "reverted",
            NotificationEvent::ImageUpdated => "imageUpdated",
        }
    }

    /// Failures are `error`, the rest `info`.
    pub fn severity(self) -> Severity {
        match self {
            NotificationEvent::Failed
            | NotificationEvent::Degraded
            | NotificationEvent::RolloutAborted
            | NotificationEvent::VerificationFailed => Severity::Error,
            _ => Severity::Info,
        }
    }
}

/// How bad an event is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Error,
}

/// What ferry knows of the Notifier. Each replica that sends adds its counts at most once a
/// minute (a write conditional on the resourceVersion, so replicas never overwrite each other).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NotifierStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True when the Notifier is usable; False with the reason (`SecretNotFound`,
    /// `CrossNamespaceNotPermitted`, `DeliveryFailing`) and a message that never holds the
    /// address or token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Messages delivered since the Notifier was created.
    #[serde(default)]
    pub sent: i64,
    /// Messages given up on after every retry.
    #[serde(default)]
    pub failed: i64,
    /// When the last message was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<Time>,
}
