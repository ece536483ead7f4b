//! The `ApplicationSet` custom resource (`ferry.dev/v1alpha1`): Applications generated from a
//! template, one per parameter set. Preview environments come from the `pullRequests`
//! generator (one Application per open pull request, found through the Git protocol alone);
//! fixed environments from `list`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AnalysisStatus, HealthStatusCode, INTERVAL_MESSAGE, LocalObjectReference, REPO_URL_MESSAGE,
    REPO_URL_RULE, SyncStatusCode, interval_rule,
};

/// Label on every generated Application: the name of the set that generated it.
pub const APPLICATION_SET_LABEL: &str = "ferry.dev/application-set";

/// Applications generated from a template, one per parameter set of its generators.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ApplicationSet",
    namespaced,
    status = "ApplicationSetStatus",
    shortname = "fappset",
    category = "ferry",
    doc = "An ApplicationSet generates Applications from a template: one per open pull request, or one per element of a list.",
    printcolumn(
        name = "Applications",
        type_ = "integer",
        json_path = ".status.generated",
        description = "Applications generated"
    ),
    printcolumn(
        name = "Rollout",
        type_ = "string",
        json_path = ".status.rollout.phase",
        description = "Phase of the fleet rollout (sets with a strategy)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
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
pub struct ApplicationSetSpec {
    /// Where parameter sets come from; the Applications are the union over all generators.
    #[schemars(length(min = 1, max = 8))]
    pub generators: Vec<Generator>,

    /// The Application made for each parameter set. `{{param}}` in any string is replaced by
    /// the parameter's value; a parameter no generator provides is an error.
    pub template: ApplicationTemplate,

    /// At most this many Applications; parameter sets beyond it (the newest pull requests) wait.
    #[serde(default = "default_max_applications")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_applications: u32,

    /// Roll new revisions out over the clusters step by step (see [`FleetStrategy`]). Default:
    /// every Application follows the template's source at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<FleetStrategy>,
}

fn default_max_applications() -> u32 {
    50
}

/// Exactly one kind of generator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.pullRequests) ? 1 : 0) + (has(self.list) ? 1 : 0) + (has(self.clusters) ? 1 : 0) == 1").message("each generator takes exactly one of pullRequests, list or clusters"))]
pub struct Generator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_requests: Option<PullRequestGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClustersGenerator>,
}

/// One parameter set per `Cluster` of the set's namespace whose labels match `selector` (every
/// Cluster when it is empty). Parameters, as Argo CD's cluster generator names them: `name`,
/// `nameNormalized` (a DNS label) and `metadata.labels.<key>` for each label.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClustersGenerator {
    #[serde(default)]
    pub selector: ClusterSelector,
}

/// A label selector over Clusters: every `matchLabels` entry and every expression must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<LabelExpression>,
}

/// `key In (values)`, `key NotIn (values)`, `key Exists`, `key DoesNotExist`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)").message("In and NotIn take values; Exists and DoesNotExist take none"))]
pub struct LabelExpression {
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub values: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// How a new revision reaches the generated Applications: step by step over their clusters.
/// The set resolves the template's source (its `repoURL` and `ref`, which may not hold
/// parameters) to one commit and pins it (`ref.commit`) in the Applications of each step in
/// turn; the others keep the commit they had, and one not created yet waits for its step. A
/// step is done when each of its Applications is Synced and Healthy at that commit (and its
/// PostSync hooks passed), then its analysis succeeded, then a person promoted it
/// (`ferry promote --set`) when it pauses. A failure stops the rollout: later steps keep the
/// old commit, and the status and an Event name the cluster and why. A newer commit starts over
/// from the first step. Only commits are rolled out this way: a change of the template itself
/// reaches every Application at once (each with the commit it has).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetStrategy {
    /// In order. A cluster belongs to the first step whose selector matches it; clusters no
    /// step matches form a last step. An Application's cluster is its `destination.cluster`
    /// (one without deploys to ferry's own cluster, shown as `(local)`, which has no labels).
    #[schemars(length(min = 1, max = 32))]
    pub steps: Vec<FleetStep>,
    /// A step whose Applications are not all Synced and Healthy at the new commit this long
    /// after it started fails. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(interval_rule()).message(INTERVAL_MESSAGE))]
    pub progress_deadline: Option<String>,
}

/// One step of a fleet rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetStep {
    /// The clusters of this step, by their labels (a Cluster's labels, as the clusters
    /// generator sees them). Empty: every cluster not taken by an earlier step.
    #[serde(default)]
    pub selector: ClusterSelector,
    /// At most this many of the selected clusters (by name), as a number or a percentage of
    /// them (`25%`, rounded up); the rest go to the next step that selects them, or the last.
    /// Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+|[0-9]{1,3}%)$')").message("maxClusters is a number or a percentage such as 25%"))]
    pub max_clusters: Option<String>,
    /// Measured once the step's Applications are Healthy at the new commit; a failed analysis
    /// fails the rollout, an inconclusive one pauses it for a person. The queries run once per
    /// step, with `{{revision}}` (the commit), `{{namespace}}` (the set's), `{{step}}` (1-based)
    /// and `{{clusters}}` (the step's cluster names joined by `|`, for a regex match such as
    /// `cluster=~"{{clusters}}"`) filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<super::Analysis>,
    /// Wait for `ferry promote --set` after this step before the next one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
}

/// One parameter set per ref of a Git repository that matches `refs`, listed through the Git
/// protocol (an ls-remote: no forge API, no token beyond Git's own). Parameters: `number`
/// (what `*` matched, when it is a number), `branch` (the ref without `refs/heads/`, or without
/// `refs/` for other refs), `branchSlug` (the same as a DNS label), `ref` (the full ref), `sha`
/// and `shortSha` (7 characters).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGenerator {
    /// Git URL, as an Application's `source.repoURL`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(REPO_URL_RULE).message(REPO_URL_MESSAGE))]
    #[serde(rename = "repoURL")]
    pub repo_url: String,

    /// Which refs are pull requests, with one `*`: GitHub's `refs/pull/*/head` (the default),
    /// GitLab's `refs/merge-requests/*/head`, or a branch glob such as `preview/*`
    /// (a pattern without `refs/` is a branch pattern).
    #[serde(default = "default_pull_request_refs")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self.indexOf('*') >= 0 && self.indexOf('*') == self.lastIndexOf('*') && !self.contains('..')").message("refs must contain exactly one '*', as in refs/pull/*/head or preview/*"))]
    pub refs: String,

    /// Secret in the set's namespace with Git credentials, as an Application's `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// How often to list the refs.
    #[serde(default = "default_generator_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(interval_rule()).message(INTERVAL_MESSAGE))]
    pub interval: String,
}

fn default_pull_request_refs() -> String {
    "refs/pull/*/head".to_string()
}

fn default_generator_interval() -> String {
    "1m".to_string()
}

/// A fixed list of parameter sets, e.g. one per environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ListGenerator {
    #[schemars(length(min = 1, max = 100))]
    pub elements: Vec<BTreeMap<String, String>>,
}

/// An Application as a template.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApplicationTemplate {
    pub metadata: TemplateMetadata,
    /// An Application spec in which strings may hold `{{param}}`. Checked against the
    /// Application schema once the parameters are filled in.
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub spec: serde_json::Map<String, serde_json::Value>,
}

/// Name, labels and annotations of the generated Applications (in the set's namespace).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TemplateMetadata {
    /// Made a valid DNS label after the parameters are filled in (lowercase, `-` for other
    /// characters, at most 63 characters).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the set generated. Written only by ferry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// How many Applications the set has.
    #[serde(default)]
    pub generated: i32,
    /// The generated Applications, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<GeneratedApplication>,
    /// Where the fleet rollout of the newest commit stands (sets with a strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<FleetRolloutStatus>,
}

/// The fleet rollout of one commit. Every field ferry needs to resume after a restart is here.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetRolloutStatus {
    /// The commit being rolled out (full SHA).
    pub revision: String,
    /// The step under way (0-based); equal to the number of steps once every step is done.
    pub step: u32,
    pub steps: u32,
    pub phase: FleetRolloutPhase,
    /// The clusters of each step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<Vec<String>>,
    /// The cluster whose Application failed the step, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_cluster: Option<String>,
    /// What the rollout waits for, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current step started, for `progressDeadline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// The last step a person promoted past its pause (`ferry promote --set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_step: Option<u32>,
    /// The analysis run of the current step (`step` is its index), with its latest
    /// measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// The last `ferry.dev/rollout-request` annotation of the set acted on, so that each
    /// request acts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetRolloutPhase {
    Progressing,
    Analyzing,
    Paused,
    Failed,
    Completed,
}

/// One generated Application and where it stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedApplication {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatusCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatusCode>,
    /// `<ref>@<7 hex>` of its last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}
