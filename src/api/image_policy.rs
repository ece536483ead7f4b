//! The `ImagePolicy` custom resource (`ferry.dev/v1alpha1`): image update automation, Flux's
//! ImageRepository, ImagePolicy and ImageUpdateAutomation in one object. ferry scans an image
//! repository in an OCI registry, picks the latest image by the policy, and when it changes
//! commits the new reference to the values in Git that carry a setter marker for this policy
//! (`# {"$imagepolicy": "NAMESPACE:NAME"}`, `:tag` or `:name` after the name, or a Kustomize
//! `images:` entry with the marker), then deploys it as any commit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GitWrite, LocalObjectReference};

/// An image repository to follow, how to pick its latest image, and where to write it.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ImagePolicy",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "fimage",
    category = "ferry",
    doc = "An ImagePolicy follows an image repository in an OCI registry, picks its latest tag by semver range, or by a regex filter and numerical or alphabetical order, and commits it to the marked values in Git (Flux's $imagepolicy setters and Kustomize images), directly or through a pull request.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Latest", type_ = "string", json_path = ".status.latestRef"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// The image repository, without tag: `registry.example.com/team/web`.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.contains('@') && !self.contains('://') && !self.contains(' ')").message("image is a repository such as registry.example.com/team/web, without scheme, tag or digest"))]
    pub image: String,
    /// A Secret of this namespace with registry credentials: `.dockerconfigjson`, or
    /// `username` and `password`. Read as `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Reach the registry over plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// How often to list the tags. Default `5m`.
    #[serde(default = "default_interval")]
    #[schemars(length(min = 2, max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("interval must be a duration such as 30s, 5m or 1h"))]
    pub interval: String,
    /// ServiceAccount of this namespace whose rights read the Secrets. Default: as an
    /// Application's (the TenantPolicy's default, else `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Only tags matching `pattern` (a regex) take part; `extract` (e.g. `$ts`) is what is
    /// ordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// How to order the tags: exactly one of semver, numerical, alphabetical.
    pub policy: TagPolicy,
    /// Write `tag@sha256:...` (the tag's manifest digest) rather than the tag alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin_digest: bool,
    /// Where the latest image is written. Without it ferry only reports the latest image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<ImageUpdate>,
    /// Stop scanning and writing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

fn default_interval() -> String {
    "5m".into()
}

/// Which tags take part.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    /// A regex (RE2 syntax) a tag must match, with optional named groups: `^main-[a-f0-9]+-(?P<ts>[0-9]+)$`.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
    /// What of the match is ordered: `$ts`, `${ts}`, `$1`. Default: the whole tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub extract: Option<String>,
}

/// How tags are ordered; the greatest is the latest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.semver), has(self.numerical), has(self.alphabetical)].filter(x, x).size() == 1").message("policy takes exactly one of semver, numerical or alphabetical"))]
pub struct TagPolicy {
    /// Tags that are semantic versions within `range` (`>=1.0.0 <2.0.0`, `^1.2`, `~1.2.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverPolicy>,
    /// Tags (or what `extract` takes) read as numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,
    /// Tags (or what `extract` takes) in byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,
}

/// A semver range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SemverPolicy {
    #[schemars(length(min = 1, max = 256))]
    pub range: String,
}

/// Ascending (`asc`, default: the greatest is latest) or descending.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrderPolicy {
    #[serde(default)]
    pub order: SortOrder,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// Where to write: an Application's repository, branch and path, or a repository named here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.applicationRef) != has(self.git)").message("update takes exactly one of applicationRef or git"))]
pub struct ImageUpdate {
    /// An Application of this namespace: its repository, branch (`ref.branch`) and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_ref: Option<LocalObjectReference>,
    /// A repository, branch and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitTarget>,
    /// Push credentials and where the commit goes.
    pub write: GitWrite,
}

/// A branch of a repository, and the directory whose files carry markers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitTarget {
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    #[schemars(length(min = 1, max = 255))]
    pub branch: String,
    /// Directory of the repository to edit. Default: the whole repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
}

/// What ferry found and wrote.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True when the last scan (and update) succeeded; False with reason `ScanFailed`,
    /// `NoMatchingTag`, `UpdateFailed`, `UpdateConflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The latest image by the policy: `registry/team/web:1.2.3` (with `@sha256:...` when
    /// pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<String>,
    /// Its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_tag: Option<String>,
    /// Its manifest digest, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_digest: Option<String>,
    /// How many tags the last scan listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<i64>,
    /// When the last scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<Time>,
    /// The last commit ferry pushed for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<ImageUpdateRecord>,
}

/// One update written to Git.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateRecord {
    /// The image reference written.
    pub image: String,
    /// The commit pushed.
    pub commit: String,
    /// The branch pushed to.
    pub branch: String,
    /// The pull request opened, when mode is PullRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    pub time: Time,
}
