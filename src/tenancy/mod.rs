//! Tenant isolation as pure functions: what an Application may read and write, decided from
//! `ferry run`'s lockdown flags and the [`TenantPolicy`] objects that govern its namespace.
//!
//! Every check runs before the step it guards (the source before any fetch, the rendered objects
//! before anything is planned or applied), so a refusal writes nothing. Each refusal names the
//! rule that refused, as the condition reason and in a message that says what would allow it.
//!
//! Several policies may govern one namespace; an Application may then do only what every one of
//! them allows (they never widen each other). Without any policy only the flags apply.

mod glob;

use std::sync::Arc;

pub use glob::glob_matches;

use crate::api::{Application, TenantPolicy, TenantPolicySpec, conditions as c};

/// What `ferry run`'s flags lock down, for every Application whatever the policies say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lockdown {
    /// `--allow-file-urls`: `file://` repositories are refused unless set.
    pub allow_file_urls: bool,
    /// `--require-service-account`: an Application must act as a ServiceAccount.
    pub require_service_account: bool,
    /// `--default-service-account`: what Applications that name none act as.
    pub default_service_account: Option<String>,
    /// `--no-cross-namespace-refs`: `ref.fromApplication` never leaves the namespace.
    pub no_cross_namespace_refs: bool,
}

/// Why an Application may not do what it asks. Its `Display` is the condition message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "spec.source.repoURL {url} is a file:// repository; ferry reads those only when it runs with --allow-file-urls (never in a shared install)"
    )]
    FileUrl { url: String },
    #[error(
        "spec.source.repoURL {url} is not a repository Applications of namespace {namespace} may use: TenantPolicy {policy} allows {allowed}; nothing was fetched"
    )]
    Source { url: String, namespace: String, policy: String, allowed: String },
    #[error(
        "{objects}: Applications of namespace {namespace} may write only to namespaces {allowed} (TenantPolicy {policy}); nothing was applied"
    )]
    Destination { objects: String, namespace: String, policy: String, allowed: String },
    #[error(
        "{objects}: cluster-scoped, and Applications of namespace {namespace} may write only the cluster-scoped kinds {allowed} (TenantPolicy {policy}); nothing was applied"
    )]
    ClusterScoped { objects: String, namespace: String, policy: String, allowed: String },
    /// `field`: the reference (`spec.source.ref.fromApplication`, `spec.dependsOn`).
    #[error("{field} names Application {followed} in another namespace: {why}")]
    CrossNamespaceRef { field: &'static str, followed: String, why: String },
    #[error(
        "spec.serviceAccountName is required: ferry runs with --require-service-account and no default ServiceAccount applies (--default-service-account or a TenantPolicy's defaultServiceAccount), so every Application must name the ServiceAccount it acts as"
    )]
    ServiceAccountRequired,
    #[error(
        "spec.destination.cluster {cluster} is served at {server}, which Applications of namespace {namespace} may not deploy to: TenantPolicy {policy} allows {allowed}; nothing was applied"
    )]
    ClusterServer { cluster: String, server: String, namespace: String, policy: String, allowed: String },
}

impl Refusal {
    /// The condition reason: the rule that refused.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::FileUrl { .. } | Refusal::Source { .. } => c::SOURCE_NOT_PERMITTED,
            Refusal::Destination { .. } => c::DESTINATION_NOT_PERMITTED,
            Refusal::ClusterScoped { .. } => c::CLUSTER_SCOPED_NOT_PERMITTED,
            Refusal::CrossNamespaceRef { .. } => c::CROSS_NAMESPACE_REF_NOT_PERMITTED,
            Refusal::ServiceAccountRequired => c::SERVICE_ACCOUNT_REQUIRED,
            Refusal::ClusterServer { .. } => c::CLUSTER_NOT_PERMITTED,
        }
    }
}

/// An object an Application would write, as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<&'a str>,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl Target<'_> {
    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }
}

/// How many refused objects a message names before "and N more".
const LISTED: usize = 3;

/// The rules for the Applications of one namespace: the flags and the policies governing it.
#[derive(Clone, Debug)]
pub struct Tenancy {
    namespace: String,
    /// Sorted by name, so that "the first policy" is the same on every replica.
    policies: Vec<Arc<TenantPolicy>>,
    lockdown: Lockdown,
}

impl Tenancy {
    /// The rules for Applications of `namespace`, from every policy ferry read.
    pub fn new(
        namespace: &str,
        policies: impl IntoIterator<Item = Arc<TenantPolicy>>,
        lockdown: &Lockdown,
    ) -> Tenancy {
        let mut governing: Vec<Arc<TenantPolicy>> =
            policies.into_iter().filter(|p| selects(&p.spec, namespace)).collect();
        governing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Tenancy { namespace: namespace.to_string(), policies: governing, lockdown: lockdown.clone() }
    }

    /// Whether any policy governs this namespace.
    pub fn is_governed(&self) -> bool {
        !self.policies.is_empty()
    }

    /// The ServiceAccount the Application acts as: its own, else a policy's default (the first
    /// by name that sets one), else `--default-service-account`; `None` means ferry's identity,
    /// refused under `--require-service-account`.
    pub fn service_account(&self, app: &Application) -> Result<Option<String>, Refusal> {
        self.acting_as(app.spec.service_account_name.as_deref())
    }

    /// [`Tenancy::service_account`] for a ServiceAccount `named` in a spec (an Application's, or
    /// an ApplicationSet template's).
    pub fn acting_as(&self, named: Option<&str>) -> Result<Option<String>, Refusal> {
        let chosen = named
            .map(str::to_string)
            .or_else(|| self.policies.iter().find_map(|p| p.spec.default_service_account.clone()))
            .or_else(|| self.lockdown.default_service_account.clone());
        match chosen {
            None if self.lockdown.require_service_account => Err(Refusal::ServiceAccountRequired),
            chosen => Ok(chosen),
        }
    }

    /// May the Application read `repo_url`? Checked before anything is fetched.
    pub fn check_source(&self, repo_url: &str) -> Result<(), Refusal> {
        if is_file_url(repo_url) && !self.lockdown.allow_file_urls {
            return Err(Refusal::FileUrl { url: repo_url.to_string() });
        }
        for policy in &self.policies {
            let allowed = &policy.spec.source_repos;
            if !is_plain_url(repo_url) || !allowed.iter().any(|g| glob_matches(g, repo_url)) {
                return Err(Refusal::Source {
                    url: repo_url.to_string(),
                    namespace: self.namespace.clone(),
                    policy: policy_name(policy),
                    allowed: allowed.join(", "),
                });
            }
        }
        Ok(())
    }

    /// May the Application's objects go to `destination` (its `spec.destination.namespace`, or
    /// its own namespace)? Checked before the fetch, so a wrong destination costs no Git traffic.
    /// May the Application deploy to the remote `cluster`, whose API server is `server`? Every
    /// policy governing it must list the server in `clusterServers`.
    pub fn check_cluster_server(&self, cluster: &str, server: &str) -> Result<(), Refusal> {
        let refusing =
            self.policies.iter().find(|p| !p.spec.cluster_servers.iter().any(|g| glob_matches(g, server)));
        match refusing {
            None => Ok(()),
            Some(policy) => Err(Refusal::ClusterServer {
                cluster: cluster.to_string(),
                server: server.to_string(),
                namespace: self.namespace.clone(),
                policy: policy_name(policy),
                allowed: match policy.spec.cluster_servers.join(", ") {
                    none if none.is_empty() => "none (only the cluster ferry runs in)".to_string(),
                    some => some,
                },
            }),
        }
    }

    pub fn check_destination(&self, destination: &str) -> Result<(), Refusal> {
        match self.policies.iter().find(|p| !self.may_write_to(&p.spec, destination)) {
            None => Ok(()),
            Some(p) => {
                Err(self.destination_refusal(p, &[format!("spec.destination.namespace {destination}")]))
            }
        }
    }

    /// May the Application write every one of `objects`? Checked on the render, before anything
    /// is planned or applied; one refusal names up to three objects of the first rule broken.
    pub fn check_objects<'a>(&self, objects: impl IntoIterator<Item = Target<'a>>) -> Result<(), Refusal> {
        let objects: Vec<Target<'a>> = objects.into_iter().collect();
        for policy in &self.policies {
            let spec = &policy.spec;
            let cluster_scoped: Vec<String> = objects
                .iter()
                .filter(|t| t.namespace.is_none() && !may_write_cluster_kind(spec, t))
                .map(Target::to_string)
                .collect();
            if !cluster_scoped.is_empty() {
                return Err(Refusal::ClusterScoped {
                    objects: listed(&cluster_scoped),
                    namespace: self.namespace.clone(),
                    policy: policy_name(policy),
                    allowed: allowed_kinds(spec),
                });
            }
            let elsewhere: Vec<String> = objects
                .iter()
                .filter(|t| {
                    let ns = if t.is_namespace() { Some(t.name) } else { t.namespace };
                    ns.is_some_and(|ns| !self.may_write_to(spec, ns))
                })
                .map(Target::to_string)
                .collect();
            if !elsewhere.is_empty() {
                return Err(self.destination_refusal(policy, &elsewhere));
            }
        }
        Ok(())
    }

    /// May `ref.fromApplication` follow an Application of `followed_namespace`? `promotion_namespaces`
    /// are the namespaces ferry lets others follow (`--promotion-namespaces`, `*` for any).
    pub fn check_follow(
        &self,
        followed_namespace: &str,
        followed_name: &str,
        promotion_namespaces: &[String],
    ) -> Result<(), Refusal> {
        let field = "spec.source.ref.fromApplication";
        self.check_reference(field, followed_namespace, followed_name, promotion_namespaces)
    }

    /// May the Application's `field` (`ref.fromApplication`, `dependsOn`) read the Application
    /// `namespace/name`? One rule for every reference to another Application: its own namespace
    /// always; another only as `--promotion-namespaces`, `--no-cross-namespace-refs` and the
    /// TenantPolicies allow.
    pub fn check_reference(
        &self,
        field: &'static str,
        namespace: &str,
        name: &str,
        promotion_namespaces: &[String],
    ) -> Result<(), Refusal> {
        if namespace == self.namespace {
            return Ok(());
        }
        let refuse = |why: String| {
            Err(Refusal::CrossNamespaceRef { field, followed: format!("{namespace}/{name}"), why })
        };
        if self.lockdown.no_cross_namespace_refs {
            return refuse("ferry runs with --no-cross-namespace-refs, so references never leave the Application's namespace".into());
        }
        if !promotion_namespaces.iter().any(|n| n == "*" || n == namespace) {
            return refuse(format!(
                "ferry lets Applications elsewhere refer to those of namespace {namespace} only when it runs with --promotion-namespaces={namespace}"
            ));
        }
        if let Some(p) = self.policies.iter().find(|p| !p.spec.allow_cross_namespace_refs) {
            return refuse(format!(
                "TenantPolicy {} does not allow Applications of namespace {} to refer to other namespaces (allowCrossNamespaceRefs)",
                policy_name(p),
                self.namespace
            ));
        }
        Ok(())
    }

    fn may_write_to(&self, spec: &TenantPolicySpec, namespace: &str) -> bool {
        if spec.destination_namespaces.is_empty() {
            namespace == self.namespace
        } else {
            spec.destination_namespaces.iter().any(|g| glob_matches(g, namespace))
        }
    }

    fn destination_refusal(&self, policy: &TenantPolicy, objects: &[String]) -> Refusal {
        let allowed = if policy.spec.destination_namespaces.is_empty() {
            format!("{} (its own; destinationNamespaces is empty)", self.namespace)
        } else {
            policy.spec.destination_namespaces.join(", ")
        };
        Refusal::Destination {
            objects: listed(objects),
            namespace: self.namespace.clone(),
            policy: policy_name(policy),
            allowed,
        }
    }
}

/// Whether `policy` governs the Applications of `namespace`.
pub fn selects(policy: &TenantPolicySpec, namespace: &str) -> bool {
    policy.application_namespaces.iter().any(|g| glob_matches(g, namespace))
}

/// `namespace/name`, as messages name a policy.
fn policy_name(policy: &TenantPolicy) -> String {
    let meta = &policy.metadata;
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// `file://`, whatever the case of the scheme.
pub fn is_file_url(url: &str) -> bool {
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("file://"))
}

/// A URL a glob may judge by its text: no credentials in it (a policy names repositories, not
/// who reads them) and no `.`/`..` segments or encoded dots, which a server may resolve to a
/// path the glob did not mean (`team-a/../team-b`).
fn is_plain_url(url: &str) -> bool {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest);
    let has_userinfo = after_scheme.is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    });
    let lower = url.to_ascii_lowercase();
    let dot_segment = url.split(['/', ':', '?', '#', '\\']).any(|segment| segment == "." || segment == "..");
    !has_userinfo && !dot_segment && !lower.contains("%2e") && !lower.contains("%2f") && !url.contains('\\')
}

fn may_write_cluster_kind(spec: &TenantPolicySpec, target: &Target) -> bool {
    spec.cluster_resources
        .iter()
        .any(|gk| (gk.group == "*" || gk.group == target.group) && (gk.kind == "*" || gk.kind == target.kind))
}

fn allowed_kinds(spec: &TenantPolicySpec) -> String {
    if spec.cluster_resources.is_empty() {
        return "none (clusterResources is empty)".into();
    }
    let kinds: Vec<String> = spec
        .cluster_resources
        .iter()
        .map(|gk| if gk.group.is_empty() { gk.kind.clone() } else { format!("{}.{}", gk.kind, gk.group) })
        .collect();
    kinds.join(", ")
}

fn listed(items: &[String]) -> String {
    let shown = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests;
