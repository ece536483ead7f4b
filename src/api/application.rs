//! The `Application` custom resource (`ferry.dev/v1alpha1`).
//!
//! Validation lives in the schema so the API server refuses bad specs itself: structural
//! constraints (lengths, ranges, patterns) through schemars, cross-field rules through CEL
//! (`x-kubernetes-validations`). Every CEL rule carries a message a person understands, because
//! the API server prints it next to the field path when it refuses an object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Go-style duration accepted by `interval`, `pause.duration` and friends: one or more
/// number+unit pairs, units ms, s, m, h. No sign, so negative values never parse.
/// Written without backslashes so the same text works as an OpenAPI pattern and inside a CEL
/// string literal.
pub const DURATION_PATTERN: &str = r"^([0-9]+([.][0-9]+)?(ms|s|m|h))+$";

/// CEL rule of every `repoURL`: https://, http://, ssh://, file:// or scp-like user@host:path.
pub const REPO_URL_RULE: &str =
    r"self.matches('^(https?|ssh|file)://.+') || self.matches('^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:.+')";
pub const REPO_URL_MESSAGE: &str = "repoURL must be a Git URL starting with https://, http://, ssh:// or file://, or of the form user@host:path";
/// The longest duration any field accepts (`crate::duration::MAX`): one year. A longer
/// value is no one's intent, and ferry turns durations into timers and requeues, which have
/// limits of their own.
pub const MAX_DURATION_TEXT: &str = "8760h";

/// CEL rule of every polling `interval`: a duration of at least 1s and at most
/// [`MAX_DURATION_TEXT`]. `matches` comes first so `duration()` only sees the pattern's
/// strings; one too large for Go's `time.Duration` makes `duration()` fail, and the API server
/// refuses the object for that too.
pub fn interval_rule() -> String {
    format!(
        "self.matches('{DURATION_PATTERN}') && duration(self) >= duration('1s') && duration(self) <= duration('{MAX_DURATION_TEXT}')"
    )
}
pub const INTERVAL_MESSAGE: &str =
    "interval must be a duration from 1s to 8760h (a year), such as 30s, 5m or 1h";

/// CEL rule of every other duration field: at most [`MAX_DURATION_TEXT`] (see
/// [`interval_rule`] for why it is robust to huge values).
pub fn bounded_duration_rule() -> String {
    format!("self.matches('{DURATION_PATTERN}') && duration(self) <= duration('{MAX_DURATION_TEXT}')")
}
pub const BOUNDED_DURATION_MESSAGE: &str =
    "must be a duration of at most 8760h (a year), such as 30s, 10m or 1h30m";

/// A Helm release name as Helm itself validates it (at most 53 characters, DNS-1123
/// subdomain); it can never begin with `-` and so never reads as a flag.
pub const RELEASE_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// An Application syncs one path of one Git revision into the cluster.
// Each printcolumn repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "fapp",
    category = "ferry",
    doc = "An Application syncs one path of a pinned Git revision into the cluster and keeps it there.",
    printcolumn(
        name = "Sync",
        type_ = "string",
        json_path = ".status.sync.status",
        description = "Synced, OutOfSync or Unknown"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.health.status",
        description = "Aggregated health of the synced objects"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.sync.shortRevision",
        description = "Ref and short commit of the last sync"
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
pub struct ApplicationSpec {
    /// Where the manifests come from.
    pub source: Source,

    /// Where namespaced objects that name no namespace go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,

    /// ServiceAccount (in the Application's namespace) that every apply impersonates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// How often to check the ref and correct drift, e.g. `30s`, `5m`, `1h`. Webhooks make it immediate.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(interval_rule()).message(INTERVAL_MESSAGE))]
    pub interval: String,

    /// What ferry may do on its own.
    #[serde(default)]
    pub sync_policy: SyncPolicy,

    /// Stop reconciling (no fetch, no apply, no prune) until set back to false.
    #[serde(default)]
    pub suspend: bool,

    /// Checks the rendered manifests must pass before anything is applied.
    #[serde(default)]
    pub policy: Policy,

    /// Decrypt SOPS-encrypted documents after rendering, before anything is diffed or applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,

    /// Progressive delivery for one Deployment of this Application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,

    /// What happens to the synced objects when the Application is deleted: `Delete` them or
    /// `Orphan` them. Default: `Delete` when `syncPolicy.prune` is on, `Orphan` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Applications that must be Ready at their latest revision before this one syncs (Flux's
    /// `dependsOn`). Another namespace only as `ferry run --promotion-namespaces` allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub depends_on: Vec<ApplicationReference>,

    /// Fields ferry leaves alone once an object exists: neither drift nor overwritten (Argo CD's
    /// `ignoreDifferences`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub ignore_differences: Vec<IgnoreDifference>,

    /// Health of a kind as CEL expressions over the live object (Flux's `healthCheckExprs`);
    /// they take precedence over ferry's built-in rules and the cluster-wide ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub health_checks: Vec<HealthCheckExpr>,
}

/// See `spec.ignoreDifferences`: which objects (by group, kind and optionally name and
/// namespace) and which of their fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.jsonPointers) + size(self.managedFieldsManagers) > 0").message("an ignoreDifferences entry needs jsonPointers or managedFieldsManagers"))]
pub struct IgnoreDifference {
    /// API group; empty (the default) is the core group.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Every object of the kind when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// RFC 6901 pointers to the fields, e.g. `/spec/replicas`.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024), regex(pattern = r"^/")))]
    pub json_pointers: Vec<String>,
    /// Field managers (as in `metadata.managedFields`) whose fields ferry leaves to them, e.g. an
    /// HPA's `kube-controller-manager`.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub managed_fields_managers: Vec<String>,
}

/// See `spec.healthChecks`: CEL expressions over the live object (its fields at the top level,
/// e.g. `status.conditions`), tried in the order inProgress, failed, current (Flux's); none true
/// is Progressing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckExpr {
    /// e.g. `cert-manager.io/v1`; the version is not compared, so one entry covers them all.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// True when the object is Healthy.
    #[schemars(length(min = 1, max = 4096))]
    pub current: String,
    /// True when the object is still Progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub in_progress: Option<String>,
    /// True when the object is Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub failed: Option<String>,
}

/// See `spec.deletionPolicy`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    Delete,
    Orphan,
}

/// Annotation that asks for a reconcile now (`ferry sync` sets it to the current time).
pub const RECONCILE_AT_ANNOTATION: &str = "ferry.dev/reconcile-at";

/// Annotation through which a person steers a rollout: `promote@<time>`, `promote-full@<time>`,
/// `abort@<time>` or `retry@<time>` (`ferry promote|abort|retry` set it). ferry acts on each
/// value once and records it in `status.rollout.handledRequest`.
pub const ROLLOUT_REQUEST_ANNOTATION: &str = "ferry.dev/rollout-request";

impl ApplicationSpec {
    /// Whether deleting the Application deletes what it synced.
    pub fn deletes_on_removal(&self) -> bool {
        match self.deletion_policy {
            Some(DeletionPolicy::Delete) => true,
            Some(DeletionPolicy::Orphan) => false,
            None => self.sync_policy.prune,
        }
    }
}

fn default_interval() -> String {
    "3m".to_string()
}

/// Where the manifests come from: a Git repository at a pinned ref (and a path inside it), a
/// Helm chart from a Helm or OCI repository (with values files from Git when `repoURL` and `ref`
/// are set too), or an OCI artifact of plain manifests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.kustomize) && has(self.helm))").message("set at most one of kustomize or helm"))]
#[x_kube(validation = Rule::new("has(self.repoURL) == has(self.ref)").message("repoURL and ref go together"))]
#[x_kube(validation = Rule::new("has(self.repoURL) || has(self.chart) || has(self.oci)").message("set repoURL and ref (Git), chart (a Helm or OCI chart repository) or oci (an OCI artifact)"))]
#[x_kube(validation = Rule::new("!(has(self.oci) && (has(self.chart) || has(self.repoURL)))").message("oci is a source of its own: set neither chart nor repoURL with it"))]
#[x_kube(validation = Rule::new("!has(self.chart) || !has(self.kustomize)").message("a chart is rendered with helm: kustomize does not apply"))]
#[x_kube(validation = Rule::new("!has(self.chart) || has(self.repoURL) || !has(self.path)").message("with chart, path is where helm.valuesFiles are read in the Git revision: set repoURL and ref too, or drop path"))]
pub struct Source {
    /// Git URL: https://, http://, ssh://, file:// or user@host:path.
    #[serde(default, rename = "repoURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(REPO_URL_RULE).message(REPO_URL_MESSAGE))]
    pub repo_url: Option<String>,

    /// The revision to sync: exactly one of branch, tag, semver or commit.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<GitRef>,

    /// Directory inside the repository (or the OCI artifact), relative to its root. Defaults to
    /// the root. With `chart`, where `helm.valuesFiles` are read from in the Git revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')").message("path must be relative to the repository root and must not contain '..'"))]
    pub path: Option<String>,

    /// Secret in the Application's namespace with Git credentials: `username` + `password`,
    /// `bearerToken`, or `identity` + `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// Render with Kustomize (detected from kustomization.yaml when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,

    /// Render with `helm template` (detected from Chart.yaml when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,

    /// A chart from a Helm repository (`https://`, with an `index.yaml`) or an OCI registry
    /// (`oci://`), rendered with `helm` and the options of `helm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartSource>,

    /// An OCI artifact of plain manifests (the layout `flux push artifact` writes), rendered as
    /// a directory (or a kustomization in it), at `path` inside the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
}

impl Source {
    /// The Git part of the source, when there is one: `repoURL` and `ref`.
    pub fn git(&self) -> Option<(&str, &GitRef)> {
        Some((self.repo_url.as_deref()?, self.git_ref.as_ref()?))
    }

    /// The `repoURL` people see (Git URL, chart repository or OCI URL), for metrics and logs.
    pub fn shown_url(&self) -> &str {
        match (&self.repo_url, &self.chart, &self.oci) {
            (_, Some(chart), _) => &chart.repo_url,
            (_, _, Some(oci)) => &oci.url,
            (Some(url), _, _) => url,
            _ => "",
        }
    }

    /// `ref.fromApplication`, when set.
    pub fn from_application(&self) -> Option<&ApplicationReference> {
        self.git_ref.as_ref()?.from_application.as_ref()
    }
}

/// CEL rule of a chart or OCI repository URL.
pub const CHART_REPO_URL_RULE: &str = r"self.matches('^(https?|oci)://[^/]+.*')";

/// A chart from a Helm repository or an OCI registry (Argo CD's `chart` source, Flux's
/// `HelmRepository` + `HelmRelease`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChartSource {
    /// `https://charts.example.com` (a Helm repository: `index.yaml` at that URL) or
    /// `oci://registry.example.com/charts` (the chart is `<repoURL>/<name>`).
    #[serde(rename = "repoURL")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(CHART_REPO_URL_RULE).message("chart.repoURL must start with https://, http:// or oci://"))]
    pub repo_url: String,
    /// The chart's name.
    #[schemars(length(min = 1, max = 250), pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: String,
    /// An exact version or a semver range (`>=6.0.0 <7.0.0`, `6.x`); default: the newest
    /// version without a pre-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub version: Option<String>,
    /// Secret in the Application's namespace: `username` + `password`, and `ca.crt` (or
    /// `caFile`) with a CA to trust, read as the Application's ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Plain HTTP to an OCI registry (a registry on a private network or loopback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// An OCI artifact of manifests: `url` and exactly one of `tag`, `semver` or `digest`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.tag), has(self.semver), has(self.digest)].filter(x, x).size() == 1").message("set exactly one of tag, semver or digest"))]
pub struct OciSource {
    /// `oci://registry.example.com/team/manifests`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('oci://')").message("oci.url must start with oci://"))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// The highest tag matching this semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,
    /// Pinned by manifest digest: `sha256:<64 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^sha256:[0-9a-f]{64}$')").message("digest must be sha256: and 64 lowercase hexadecimal digits"))]
    #[schemars(length(max = 71))]
    pub digest: Option<String>,
    /// Secret with `username` + `password` (and `ca.crt`) for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Plain HTTP to the registry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// How to decrypt SOPS-encrypted documents in the rendered manifests (Flux's
/// `spec.decryption`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    pub provider: DecryptionProvider,
    /// Secret in the Application's namespace holding age identities in entries named
    /// `*.agekey`, read as the Application's ServiceAccount.
    pub secret_ref: LocalObjectReference,
}

/// See [`Decryption`].
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    Sops,
}

/// Exactly one of the four ways to pin a revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.branch), has(self.tag), has(self.semver), has(self.commit), has(self.name), has(self.fromApplication)].filter(x, x).size() == 1").message("set exactly one of branch, tag, semver, commit, name or fromApplication"))]
pub struct GitRef {
    /// Follow the tip of this branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,
    /// This tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
    /// The highest tag matching this semver range, e.g. `>=1.2.0 <2.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,
    /// This commit: a full 40-character SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{40}$')").message("commit must be a full 40-character hexadecimal SHA"))]
    pub commit: Option<String>,
    /// Any ref by its full name, as Flux's `ref.name`: `refs/pull/7/head`,
    /// `refs/merge-requests/7/head`, `refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 255))]
    #[x_kube(validation = Rule::new("self.startsWith('refs/') && !self.contains('..') && !self.contains('*')").message("name must be a full ref name starting with refs/, such as refs/pull/7/head"))]
    pub name: Option<String>,
    /// Deploy the revision another Application last reached Synced and Healthy with and, if it
    /// has PostSync hooks, passed them (its `status.verifiedRevision`): promotion between
    /// environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_application: Option<ApplicationReference>,
}

/// Another Application: in the same namespace unless `namespace` is set (and allowed by
/// `ferry run --promotion-namespaces`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApplicationReference {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A reference to an object in the Application's own namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LocalObjectReference {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kustomize options.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSource {
    /// Prefix added to the names of all rendered objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Suffix added to the names of all rendered objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Image overrides, as in a kustomization's `images:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<KustomizeImage>,
}

/// One image override.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeImage {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Helm options for `helm template`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// Release name; defaults to the Application's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53), pattern(RELEASE_NAME_PATTERN))]
    pub release_name: Option<String>,
    /// Values files inside the chart directory, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Values merged over the values files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    /// How to reach the repositories of the chart's dependencies that `charts/` does not
    /// vendor (ferry fetches them, at the versions `Chart.lock` pins when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<DependencyAccess>,
}

/// Credentials and transport for a chart's dependencies: one Secret for all their repositories.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DependencyAccess {
    /// Secret with `username` + `password` (and `ca.crt`), read as the Application's
    /// ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Plain HTTP to OCI registries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Where objects go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Namespace for namespaced objects that name none. Defaults to the Application's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Create the destination namespace when it does not exist. A namespace ferry created is
    /// part of the Application and deleted with it (deletion policy Delete), but never pruned:
    /// when createNamespace is turned off or the destination changes, ferry releases it (removes
    /// its labels, leaves it and what it holds, and says so in a NamespaceReleased Event). A
    /// namespace that already existed is never taken over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_namespace: bool,
    /// The `Cluster` (of the Application's namespace) to deploy to. Default: the cluster ferry
    /// runs in. Every stage works there as here: discovery, watches, server-side apply as the
    /// Application's ServiceAccount (impersonated in that cluster), prune, health, hooks,
    /// rollouts, `ferry diff` and deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("cluster must be the name of a Cluster in the Application's namespace"))]
    pub cluster: Option<String>,
}

/// What ferry may do without a person.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Apply new revisions automatically. When false, ferry only reports OutOfSync.
    #[serde(default = "yes")]
    pub automated: bool,
    /// Delete objects that were synced before and are no longer in Git.
    #[serde(default)]
    pub prune: bool,
    /// Correct changes made to synced objects in the cluster.
    #[serde(default = "yes")]
    pub self_heal: bool,
    /// Allow a revision that renders no objects to prune everything.
    #[serde(default)]
    pub allow_empty: bool,
    /// What to do in Git when a revision fails in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// Rollback in Git: when a rollout of a revision aborts, or its PostSync verification fails,
/// ferry commits a revert of that revision's changes under the Application's path (back to the
/// last verified revision), so that Git says again what the cluster runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// Opt-in: revert the failed revision in the Application's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revert: Option<super::GitWrite>,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy { automated: true, prune: false, self_heal: true, allow_empty: false, rollback: None }
    }
}

fn yes() -> bool {
    true
}

/// Checks on rendered manifests.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Refuse images with no tag, the `latest` tag, or no digest/tag pin.
    #[serde(default)]
    pub require_pinned_images: bool,
}

/// Progressive delivery: exactly one of canary or blueGreen.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)").message("strategy takes exactly one of canary or blueGreen, not both and not neither"))]
pub struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

impl Strategy {
    /// The name of the Deployment the strategy drives.
    pub fn workload(&self) -> Option<&str> {
        match (&self.canary, &self.blue_green) {
            (Some(c), _) => Some(&c.workload.name),
            (None, Some(b)) => Some(&b.workload.name),
            (None, None) => None,
        }
    }
}

/// The Deployment a strategy drives.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WorkloadRef {
    /// Name of a Deployment rendered by this Application.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Canary: run the new version beside the old one and shift traffic step by step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    pub workload: WorkloadRef,
    /// How traffic is split. Default: by replica ratio behind the existing Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Steps run in order; after the last one the new version is promoted.
    #[schemars(length(min = 1, max = 64))]
    pub steps: Vec<CanaryStep>,
    /// Background analysis, measured from the first step until promotion: a failure aborts, an
    /// inconclusive result pauses for a person (`ferry promote` resumes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// With Gateway API routing, how long the canary keeps running after an abort (its traffic
    /// is gone at once), for debugging. Default 30s. With replica-ratio routing the canary's pods
    /// serve traffic as long as they run, so an abort removes them at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new(bounded_duration_rule()).message(BOUNDED_DURATION_MESSAGE))]
    pub abort_scale_down_delay: Option<String>,
    /// Abort when a step makes no progress for this long. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new(bounded_duration_rule()).message(BOUNDED_DURATION_MESSAGE))]
    pub progress_deadline: Option<String>,
}

/// Traffic routing for a canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Weighted backendRefs on a Gateway API HTTPRoute.
    #[serde(default, rename = "gatewayAPI", skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiRouting>,
}

/// A Gateway API HTTPRoute whose backend weights ferry sets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of the HTTPRoute, in the workload's namespace, rendered by this Application.
    #[schemars(length(min = 1, max = 253))]
    pub http_route: String,
    /// The Service the route sends stable traffic to, rendered by this Application. Default:
    /// the workload's name. ferry derives `<stableService>-canary` from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub stable_service: Option<String>,
}

/// One canary step: exactly one of setWeight, pause or analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1").message("each canary step sets exactly one of setWeight, pause or analysis"))]
pub struct CanaryStep {
    /// Percentage of traffic to send to the canary, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait for a duration, or for `ferry promote` when no duration is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Query Prometheus and abort when the canary misbehaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to wait; wait for `ferry promote` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new(bounded_duration_rule()).message(BOUNDED_DURATION_MESSAGE))]
    pub duration: Option<String>,
}

/// Prometheus analysis: each metric is measured `count` times, `interval` apart. The run
/// succeeds when every metric succeeds, fails (and aborts the rollout) when one fails, and
/// pauses the rollout for a person when one is inconclusive.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<AnalysisMetric>,
}

/// One PromQL query and what its result must be.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.successCondition) || has(self.failureCondition)").message("an analysis metric needs a successCondition, a failureCondition or both"))]
pub struct AnalysisMetric {
    /// Names the metric in status and messages.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub prometheus: PrometheusQuery,
    /// Time between measurements, e.g. `30s`. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(interval_rule()).message(INTERVAL_MESSAGE))]
    pub interval: Option<String>,
    /// Measurements to take. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<i32>,
    /// When a measurement is Successful, e.g. `result >= 0.99`. The query's single number is `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(CONDITION_PATTERN))]
    pub success_condition: Option<String>,
    /// When a measurement is Failed, e.g. `result > 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(CONDITION_PATTERN))]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated; one more aborts. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failure_limit: Option<i32>,
    /// Inconclusive measurements tolerated; one more pauses the rollout. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub inconclusive_limit: Option<i32>,
    /// Failed queries in a row tolerated (they are retried); one more aborts. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub consecutive_error_limit: Option<i32>,
    /// What a query that returns no data (or NaN) means. Default Inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
}

/// Characters a success or failure condition may contain: `result`, numbers, comparisons,
/// `&&`, `||`, `!`, `and`, `or`, `not`, parentheses. ferry parses the rest at the first
/// measurement and says where a condition is wrong.
pub const CONDITION_PATTERN: &str = r"^[a-zA-Z0-9 .<>=!&|()+eE_-]+$";

/// A Prometheus instant query.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusQuery {
    /// Prometheus base URL, e.g. `http://prometheus.monitoring:9090`. Default: the controller's
    /// `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://"))]
    pub address: Option<String>,
    /// PromQL returning one number. `{{revision}}`, `{{namespace}}`, `{{workload}}` and
    /// `{{variant}}` (`canary` or `primary`) are filled in.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
}

/// What a measurement with no data counts as.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoDataPolicy {
    #[default]
    Inconclusive,
    Fail,
    Pass,
}

/// Blue-green: bring the new version up behind a preview Service, then switch the active one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    pub workload: WorkloadRef,
    /// Service that receives production traffic.
    #[schemars(length(min = 1, max = 63))]
    pub active_service: String,
    /// Service that points at the new version before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub preview_service: Option<String>,
    /// Switch without waiting for `ferry promote` once the new version is available and
    /// pre-promotion analysis passed (after `autoPromotionSeconds`, when set).
    #[serde(default)]
    pub auto_promotion: bool,
    /// With autoPromotion, how long the new version is previewed before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub auto_promotion_seconds: Option<i32>,
    /// Abort when the new version is not available after this long. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new(bounded_duration_rule()).message(BOUNDED_DURATION_MESSAGE))]
    pub progress_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<Analysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<Analysis>,
    /// How long the old version keeps running after the switch. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new(bounded_duration_rule()).message(BOUNDED_DURATION_MESSAGE))]
    pub scale_down_delay: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Status

/// What ferry observed and did. Written only by ferry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus-compatible conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// Objects applied by the last successful sync: what prune compares against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// Recent syncs, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The PostSync hooks of the last revision synced, and how they ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    /// The last revision that was Synced and Healthy and passed its PostSync hooks: what
    /// Applications with `ref.fromApplication` naming this one deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_revision: Option<String>,
    /// Where the sync of a revision with hooks or sync waves stands: its phase and wave, and
    /// every hook object ferry created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::hooks::SyncProgress>,
    /// The last revert ferry wrote to Git for a failed revision (`syncPolicy.rollback.gitRevert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertStatus>,
}

/// A revert of a failed revision, written to Git.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevertStatus {
    /// The revision that failed (its rollout aborted, or its verification failed).
    pub failed_revision: String,
    /// The last verified revision, whose files under the path the revert restores.
    pub good_revision: String,
    pub phase: RevertPhase,
    /// The revert commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The branch the commit was pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The pull request opened for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub time: Time,
}

/// How a revert ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevertPhase {
    /// Pushed to the tracked branch.
    Pushed,
    /// Pushed to a branch of its own, with a pull request open.
    PullRequestOpened,
    /// The branch moved on in a way that conflicts, and no forge is configured to propose it.
    Conflict,
    /// Writing to Git failed (credentials, push refused); retried with back-off.
    Failed,
}

/// Where the PostSync hooks (objects annotated `ferry.dev/hook: PostSync`) of a revision stand.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    pub revision: String,
    pub phase: VerificationPhase,
    /// The hook objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<InventoryEntry>,
    /// The uids of the hook objects ferry created for this revision. Only they count: an object
    /// of a hook's name that anyone else created never verifies a revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_uids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationPhase {
    Running,
    Succeeded,
    Failed,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncStatusCode {
    Synced,
    OutOfSync,
    #[default]
    Unknown,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub status: SyncStatusCode,
    /// `<ref>@sha1:<40 hex>` of the revision compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `<ref>@<7 hex>`, for the REVISION column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_revision: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HealthStatusCode {
    Healthy,
    Progressing,
    Degraded,
    Suspended,
    Missing,
    #[default]
    Unknown,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HealthStatus {
    pub status: HealthStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InventoryEntry {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncResult {
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub revision: String,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    pub result: SyncResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How the PostSync hooks of this revision ended, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationPhase>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutPhase {
    #[default]
    Idle,
    Progressing,
    Paused,
    Analyzing,
    Promoting,
    Completed,
    Aborted,
}

/// Where a progressive rollout stands. Every field ferry needs to resume after a restart is here.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub phase: RolloutPhase,
    /// `canary` or `blueGreen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Revision being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Hash of the pod template being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Revision the primary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Index of the current canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current step (or the abort) began: pause durations and deadlines count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// The background analysis of a canary (`spec.strategy.canary.analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_analysis: Option<AnalysisStatus>,
    /// A revision whose rollout was aborted; ferry does not retry it by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_revision: Option<String>,
    /// The last `ferry.dev/rollout-request` annotation acted on, so each request acts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The analysis run of the current step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The step it belongs to.
    pub step: i32,
    /// Running, Successful, Failed, Inconclusive or Error.
    pub phase: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStatus>,
    /// The latest measurements of every metric, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// Counts of one metric's measurements.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    pub name: String,
    pub phase: String,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub errors: i32,
    #[serde(default)]
    pub consecutive_errors: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_at: Option<Time>,
}

/// One measurement.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub metric: String,
    pub at: Time,
    /// Successful, Failed, Inconclusive or Error.
    pub verdict: String,
    /// The query's number; absent when there was no data or an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
