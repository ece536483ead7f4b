//! The cluster side of `ferry diff`: builds the input through the sync pass's own stages (same
//! renderers, hook split, created Namespace, labels, manifest hash, kinds, prune selection), then
//! asks the API server what each object would become through a server-side dry run as field
//! manager `ferry`. Reads and dry runs only.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use kube::{Client, ResourceExt, api::DynamicObject, discovery::Discovery};
use serde_json::Value;

use super::{Action, ObjectDiff, Plan, comparable, redact_all_values, redact_secret_values, unified};
use crate::{
    api::{Application, ChartSource, GitRef, HookPhase, InventoryEntry, LocalObjectReference},
    apply::{AppRef, Applier, ApplyError},
    artifact::{
        access::ArtifactAccess, fetch::Artifacts, helm_repo::HelmRepoOptions, oci::OciFetcherOptions,
    },
    controller::{
        error::{BuildError, KindsError, PruneError},
        prunable,
        sync::{
            build::{self, Split},
            desired::{self, Desired},
            prune,
        },
    },
    health::ObjectName,
    plan::hooks::Hook,
    plan::{ApplyMode, ignore},
    render::{
        self, Capabilities, DiscoveredScopes, FetchedDependency, RenderError, RenderOptions, RenderRequest,
    },
    rollout::workload,
    source::{
        GitCache, GitCacheOptions, SourceError, SourceSpec,
        credentials::{SecretReadError, from_secret_ref, read_secret},
    },
};

/// Why `ferry diff` could not compute a plan. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("--local {}: {source}", .dir.display())]
    Local { dir: PathBuf, source: std::io::Error },
    #[error("--file {}: {source}", .path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("--file {}: not an Application: {source}", .path.display())]
    NotAnApplication { path: PathBuf, source: Box<serde_saphyr::Error> },
    #[error(transparent)]
    Credentials(#[from] Box<SecretReadError>),
    #[error("Git cache in {}: {source}", .dir.display())]
    Cache { dir: PathBuf, source: Box<SourceError> },
    #[error("fetching {reference}: {source}")]
    Fetch { reference: String, source: Box<SourceError> },
    #[error("spec.decryption's Secret: {0}")]
    DecryptionKeys(#[source] Box<render::KeyError>),
    #[error("spec.source names no Git repository, chart or OCI artifact")]
    NoSource,
    #[error("spec.source's Secret: {0}")]
    ArtifactAccess(#[source] crate::artifact::access::AccessError),
    #[error("{0}")]
    Artifact(#[source] Box<crate::artifact::fetch::ArtifactError>),
    #[error("API discovery did not finish in time")]
    DiscoveryTimeout,
    #[error("API discovery: {0}")]
    Discovery(#[source] kube::Error),
    #[error("rendering {what}: {error}")]
    Render { what: String, error: Box<RenderError> },
    /// The sync pass's build refuses the revision (a hook it does not run, an unknown kind, ...).
    #[error(transparent)]
    Build(#[from] Box<BuildError>),
    #[error(transparent)]
    Kinds(#[from] KindsError),
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// A read or dry run the API server refused or did not answer.
    #[error(transparent)]
    Cluster(#[from] ApplyError),
    #[error("spec.destination.cluster: Cluster {namespace}/{name} cannot be read: {words}")]
    ClusterRead { namespace: String, name: String, words: String },
    #[error("spec.destination.cluster: Cluster {namespace}/{name} does not exist")]
    NoCluster { namespace: String, name: String },
    #[error("spec.destination.cluster: Cluster {cluster}: {source}")]
    Kubeconfig { cluster: String, source: Box<crate::cluster::connect::ConnectError> },
    #[error("spec.destination.cluster: Cluster {cluster}: no client: {source}")]
    RemoteClient { cluster: String, source: kube::Error },
}

/// The client for the cluster `app` deploys to: `client` itself, or one for its remote
/// Cluster, whose kubeconfig Secret is read (and checked, as the controller does) with the
/// rights of the person running `ferry diff`.
async fn destination(client: &Client, app: &Application, timeout: Duration) -> Result<Client, DiffError> {
    let Some(name) = crate::api::destination_cluster(app) else { return Ok(client.clone()) };
    let namespace = app.namespace().unwrap_or_default();
    let api: kube::Api<crate::api::Cluster> = kube::Api::namespaced(client.clone(), &namespace);
    let read = |words: String| DiffError::ClusterRead {
        namespace: namespace.clone(),
        name: name.to_string(),
        words,
    };
    let cluster = tokio::time::timeout(timeout, api.get_opt(name))
        .await
        .map_err(|_| read("no answer in time".into()))?
        .map_err(|e| read(crate::kube_util::api_words(&e)))?
        .ok_or_else(|| DiffError::NoCluster { namespace: namespace.clone(), name: name.to_string() })?;
    let label = format!("{namespace}/{name}");
    let kubeconfig = |source| DiffError::Kubeconfig { cluster: label.clone(), source: Box::new(source) };
    let checked =
        crate::cluster::connect::kubeconfig_of(client, timeout, &cluster).await.map_err(kubeconfig)?;
    let secret = &cluster.spec.kube_config.secret_ref.name;
    let mut config =
        crate::cluster::connect::config_of(&checked, secret, timeout).await.map_err(kubeconfig)?;
    // There as in a sync: the Application's ServiceAccount, impersonated (ferry's own identity
    // in a remote cluster may only list, watch and impersonate).
    if let Some(sa) = &app.spec.service_account_name {
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{sa}"));
    }
    Client::try_from(config).map_err(|source| DiffError::RemoteClient { cluster: label.clone(), source })
}

/// What to compare with the cluster.
#[derive(Clone, Debug)]
pub enum Input {
    /// A branch, tag or full commit SHA of the Application's repository.
    Revision(String),
    /// A working tree: the repository's root (the Application's path applies inside it).
    Local(PathBuf),
}

/// The plan for syncing `input` into the cluster as `app`. Errors are one sentence.
///
/// The objects come from the sync pass's own build stage ([`build::split`], [`desired`]) and
/// what would be pruned from its prune selection ([`prune::candidates`], [`prunable::select`]),
/// so the diff cannot drift from what a sync does.
pub async fn plan(
    client: Client,
    app: &Application,
    input: &Input,
    render_options: &RenderOptions,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<Plan, DiffError> {
    let namespace = app.namespace().unwrap_or_else(|| client.default_namespace().to_string());
    let app_ref = AppRef { namespace: namespace.clone(), name: app.name_any() };
    let mut app = app.clone();
    app.metadata.namespace = Some(namespace.clone());
    let files = files(&client, &app, input, cache_dir, timeout).await?;
    // The cluster the Application deploys to: this one, or its remote Cluster.
    let target = destination(&client, &app, timeout).await?;
    let discovery = tokio::time::timeout(timeout * 3, Discovery::new(target.clone()).run())
        .await
        .map_err(|_| DiffError::DiscoveryTimeout)?
        .map_err(DiffError::Discovery)?;
    let version = tokio::time::timeout(timeout, target.apiserver_version())
        .await
        .map_err(|_| DiffError::DiscoveryTimeout)?
        .map_err(DiffError::Discovery)?;
    let capabilities = Capabilities::from_discovery(&discovery, &version.git_version);
    let applier = Applier::with_discovery(target, Arc::new(discovery), timeout);
    let dependencies = dependencies(client.clone(), &app, &files, cache_dir, timeout).await?;
    let target = Target {
        root: &files.root,
        chart: files.chart.as_deref(),
        dependencies: &dependencies,
        source: &files.shown,
        capabilities: &capabilities,
    };
    let (desired, split, decrypted) =
        build(&client, &app, &app_ref, &applier, target, render_options, timeout).await?;
    let mut plan = Plan { source: files.shown.clone(), ..Default::default() };
    let new_namespaces = namespaces_to_create(&applier, &split.objects).await?;
    for d in &desired {
        let secret =
            decrypted.contains(&(d.entry.kind.clone(), d.entry.namespace.clone(), d.entry.name.clone()));
        let context = DiffContext { new_namespaces: &new_namespaces, secret };
        if let Some((action, diff)) = object_diff(&app, &applier, d, context, &mut plan).await? {
            plan.objects.push(diff_of(&d.entry, action, diff));
        }
    }
    (plan.waves, plan.hooks) = sequence(&app, &desired, &split.hooks);
    let previous = app.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default();
    let previous = desired::in_scope(previous, applier.discovery());
    let candidates = prune::candidates(&previous, &desired::inventory(&desired));
    let removal = prunable::Removal::Prune;
    let gone = prunable::select(&applier, applier.discovery(), &app_ref, &candidates, removal).await?;
    for p in gone {
        if !app.spec.sync_policy.prune {
            plan.not_pruned.push(ObjectName::from(&p.entry).to_string());
            continue;
        }
        let title = format!("{}/{}", p.entry.kind, p.entry.name);
        let mut before = comparable(&serde_json::to_value(p.live()).expect("objects serialize"));
        let mut after = Value::Null;
        if p.entry.group.is_empty() && p.entry.kind == "Secret" {
            redact_secret_values(&mut before, &mut after);
        }
        plan.objects.push(diff_of(&p.entry, Action::Prune, unified(&before, &after, &title)));
    }
    Ok(plan)
}

/// The sync waves of the objects (when more than one) and the hooks a sync would run, in the
/// order the sync pass runs them (phase, then wave): for the Application's first sync or a later
/// one, as its status says.
fn sequence(app: &Application, desired: &[Desired], hooks: &[Hook]) -> (Vec<i32>, Vec<String>) {
    let waves: std::collections::BTreeSet<i32> = desired.iter().map(|d| d.wave).collect();
    let waves = if waves.len() > 1 { waves.into_iter().collect() } else { Vec::new() };
    let first_sync =
        app.status.as_ref().is_none_or(|s| s.last_applied_revision.is_none() && s.inventory.is_empty());
    let phases = [HookPhase::PreSync, HookPhase::Sync, HookPhase::PostSync, HookPhase::SyncFail];
    let hooks = phases
        .iter()
        .flat_map(|&phase| {
            hooks
                .iter()
                .filter(move |h| h.runs_in(phase, first_sync))
                .map(move |h| format!("{phase} wave {}: {}", h.spec.wave, h.key))
        })
        .collect();
    (waves, hooks)
}

/// What a diff renders: the files' root, a chart from a repository when the source is one,
/// and how to name them in messages.
struct Files {
    root: PathBuf,
    chart: Option<PathBuf>,
    shown: String,
}

/// The input's files: a working tree, or a revision fetched with the Application's credentials
/// (read as the sync pass reads them). For a chart from a repository, `--revision` names the
/// chart version (unless Git gives the values files, when it names the Git ref); for an OCI
/// artifact, its tag (or digest).
async fn files(
    client: &Client,
    app: &Application,
    input: &Input,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<Files, DiffError> {
    let source = &app.spec.source;
    if source.chart.is_some() || source.oci.is_some() {
        return artifact_files(client, app, input, cache_dir, timeout).await;
    }
    let (root, shown) = git_files(client, app, input, cache_dir, timeout).await?;
    Ok(Files { root, chart: None, shown })
}

async fn git_files(
    client: &Client,
    app: &Application,
    input: &Input,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<(PathBuf, String), DiffError> {
    let reference = match input {
        Input::Local(dir) => {
            let dir = dir.canonicalize().map_err(|source| DiffError::Local { dir: dir.clone(), source })?;
            let shown = format!("local {}", dir.display());
            return Ok((dir, shown));
        }
        Input::Revision(reference) => reference,
    };
    let namespace = app.namespace().unwrap_or_default();
    let secret_ref = app.spec.source.secret_ref.as_ref();
    let credentials = from_secret_ref(client, timeout, &namespace, secret_ref).await.map_err(Box::new)?;
    let git = GitCache::new(cache_dir, GitCacheOptions::default())
        .map_err(|source| DiffError::Cache { dir: cache_dir.to_path_buf(), source: Box::new(source) })?;
    let Some(repo_url) = &app.spec.source.repo_url else { return Err(DiffError::NoSource) };
    let mut spec = SourceSpec { repo_url: repo_url.clone(), git_ref: git_ref(reference), credentials };
    let snapshot = match git.fetch(&spec).await {
        // Not a branch: maybe a tag of that name.
        Err(_) if spec.git_ref.branch.is_some() => {
            spec.git_ref = GitRef { tag: Some(reference.clone()), ..Default::default() };
            git.fetch(&spec).await
        }
        other => other,
    }
    .map_err(|source| DiffError::Fetch { reference: reference.clone(), source: Box::new(source) })?;
    Ok((snapshot.root.clone(), snapshot.revision.short()))
}

/// The chart's dependencies from repositories that `charts/` does not vendor, fetched as the
/// sync pass fetches them (with `helm.dependencies`' Secret, read as the caller).
async fn dependencies(
    client: Client,
    app: &Application,
    files: &Files,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<Vec<FetchedDependency>, DiffError> {
    let req =
        RenderRequest { chart: files.chart.as_deref(), ..RenderRequest::for_application(app, &files.root) };
    let wanted = render::dependencies_to_fetch(&req).unwrap_or_default();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let settings = app.spec.source.helm.as_ref().and_then(|h| h.dependencies.clone()).unwrap_or_default();
    let creds = artifact_access(&client, app, settings.secret_ref.as_ref(), timeout).await?;
    let artifacts = diff_artifacts(cache_dir);
    let mut fetched = Vec::new();
    for dep in wanted {
        let chart = ChartSource {
            repo_url: dep.repository,
            name: dep.name.clone(),
            version: dep.version,
            secret_ref: None,
            insecure: settings.insecure,
        };
        let got = artifacts
            .chart(&chart, &creds, Duration::ZERO)
            .await
            .map_err(|e| DiffError::Artifact(Box::new(e)))?;
        fetched.push(FetchedDependency { name: dep.name, dir: got.dir });
    }
    Ok(fetched)
}

/// The clients and the store of a `ferry diff`: beside its Git cache.
fn diff_artifacts(cache_dir: &Path) -> Artifacts {
    Artifacts::new(cache_dir.join("artifacts"), HelmRepoOptions::default(), OciFetcherOptions::default())
}

/// The credentials in `secret_ref`, read as the caller.
async fn artifact_access(
    client: &Client,
    app: &Application,
    secret_ref: Option<&LocalObjectReference>,
    timeout: Duration,
) -> Result<ArtifactAccess, DiffError> {
    let Some(r) = secret_ref else { return Ok(ArtifactAccess::anonymous()) };
    let namespace = app.namespace().unwrap_or_default();
    let secret =
        read_secret(client, timeout, &namespace, r).await.map_err(|e| DiffError::Credentials(Box::new(e)))?;
    ArtifactAccess::from_secret_data(&secret.data.unwrap_or_default()).map_err(DiffError::ArtifactAccess)
}

/// A chart from a repository (and its values files from Git, when set) or an OCI artifact.
async fn artifact_files(
    client: &Client,
    app: &Application,
    input: &Input,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<Files, DiffError> {
    let artifacts = diff_artifacts(cache_dir);
    let source = &app.spec.source;
    let secret_ref = match (&source.chart, &source.oci) {
        (Some(chart), _) => chart.secret_ref.as_ref(),
        (None, Some(oci)) => oci.secret_ref.as_ref(),
        (None, None) => None,
    };
    let creds = artifact_access(client, app, secret_ref, timeout).await?;
    let fetch_err = |e| DiffError::Artifact(Box::new(e));
    let asked = match input {
        Input::Revision(r) => Some(r.clone()),
        Input::Local(_) => None,
    };
    if let Some(oci) = &source.oci {
        let mut oci = oci.clone();
        if let Some(r) = asked {
            (oci.tag, oci.semver, oci.digest) =
                if r.starts_with("sha256:") { (None, None, Some(r)) } else { (Some(r), None, None) };
        }
        let root = match input {
            Input::Local(dir) => {
                dir.canonicalize().map_err(|source| DiffError::Local { dir: dir.clone(), source })?
            }
            Input::Revision(_) => artifacts.manifests(&oci, &creds).await.map_err(fetch_err)?.dir,
        };
        let shown = format!("{} {}", oci.url, oci.tag.or(oci.digest).unwrap_or_default());
        return Ok(Files { root, chart: None, shown });
    }
    let mut chart = source.chart.clone().ok_or(DiffError::NoSource)?;
    if source.git().is_none()
        && let Some(version) = asked
    {
        chart.version = Some(version);
    }
    let fetched = artifacts.chart(&chart, &creds, Duration::ZERO).await.map_err(fetch_err)?;
    let shown = format!("{}@sha256:{}", fetched.label, &fetched.digest[..fetched.digest.len().min(7)]);
    let root = match source.git() {
        Some(_) => git_files(client, app, input, cache_dir, timeout).await?.0,
        None => fetched.dir.clone(),
    };
    Ok(Files { root, chart: Some(fetched.dir), shown })
}

/// Renders as the controller does, then builds through the sync pass's stages: the hooks split
/// off, the created Namespace added, every object prepared (labels, hash) and its kind resolved.
async fn build(
    client: &Client,
    app: &Application,
    app_ref: &AppRef,
    applier: &Applier,
    target: Target<'_>,
    render_options: &RenderOptions,
    timeout: Duration,
) -> Result<(Vec<Desired>, Split, HashSet<ObjectKey>), DiffError> {
    let scopes = DiscoveredScopes::from_discovery(applier.discovery());
    let keys = decryption_keys(client, app, timeout).await?;
    let req = RenderRequest {
        capabilities: Some(target.capabilities),
        decryption: keys.as_ref(),
        chart: target.chart,
        dependencies: target.dependencies,
        ..RenderRequest::for_application(app, target.root)
    };
    let manifests = render::render_manifests(&req, render_options, &scopes)
        .await
        .map_err(|e| DiffError::Render { what: target.source.to_string(), error: Box::new(e) })?;
    let decrypted = manifests
        .iter()
        .filter(|m| m.origin.decrypted)
        .map(|m| {
            (
                m.object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default(),
                m.object.namespace(),
                m.object.name_any(),
            )
        })
        .collect();
    let rendered: Vec<_> = manifests.into_iter().map(|m| m.object).collect();
    // The destination Namespace is read where the objects go.
    let reader = build::NamespaceReader { client: applier.client(), timeout };
    let split = build::split(reader, app, app_ref, &Arc::new(rendered)).await.map_err(Box::new)?;
    let mut desired: Vec<Desired> =
        desired::prepare(&split.objects, app_ref).into_iter().map(Desired::new).collect();
    desired::check_options(&desired).map_err(|e| Box::new(BuildError::Options(e)))?;
    desired::resolve_kinds(&mut desired, applier, &desired::crd_kinds(&split.objects))?;
    Ok((desired, split, decrypted))
}

/// An object by kind, namespace and name.
type ObjectKey = (String, Option<String>, String);

/// spec.decryption's age keys, read as the person running `ferry diff` (their kubeconfig).
async fn decryption_keys(
    client: &Client,
    app: &Application,
    timeout: Duration,
) -> Result<Option<render::AgeKeys>, DiffError> {
    let Some(decryption) = &app.spec.decryption else { return Ok(None) };
    let namespace = app.namespace().unwrap_or_default();
    let secret = crate::source::credentials::read_secret(client, timeout, &namespace, &decryption.secret_ref)
        .await
        .map_err(|e| DiffError::Credentials(Box::new(e)))?;
    render::AgeKeys::from_secret_data(&secret.data.unwrap_or_default())
        .map(Some)
        .map_err(|e| DiffError::DecryptionKeys(Box::new(e)))
}

/// What else decides how one object's diff is shown.
#[derive(Clone, Copy)]
struct DiffContext<'a> {
    /// Namespaces the sync would create first.
    new_namespaces: &'a HashSet<String>,
    /// The object came from a SOPS-encrypted document: every value is redacted.
    secret: bool,
}

/// The files a diff renders and the cluster it renders for.
#[derive(Clone, Copy)]
struct Target<'a> {
    root: &'a Path,
    /// A chart from a repository, unpacked.
    chart: Option<&'a Path>,
    /// The chart's dependencies from repositories, fetched.
    dependencies: &'a [FetchedDependency],
    /// How the files are named in messages (the revision, or the path given).
    source: &'a str,
    capabilities: &'a Capabilities,
}

/// What syncing `d` would change: `None` when nothing (counted as unchanged in `plan`).
async fn object_diff(
    app: &Application,
    applier: &Applier,
    d: &Desired,
    context: DiffContext<'_>,
    plan: &mut Plan,
) -> Result<Option<(Action, String)>, DiffError> {
    let new_namespaces = context.new_namespaces;
    let entry = &d.entry;
    let title = format!("{}/{}", entry.kind, entry.name);
    let desired = serde_json::to_value(&d.obj).expect("objects serialize");
    let live = match &d.resource {
        Some((resource, caps)) => {
            applier.get(&title, resource, caps, entry.namespace.as_deref(), &entry.name).await?
        }
        // A kind whose CRD this revision installs: new by definition.
        None => None,
    };
    let live = live.map(|l| serde_json::to_value(l).expect("objects serialize"));
    // What its options keep a sync from writing: never (ssa: Ignore, reconcile: disabled), or
    // once it exists (ssa: IfNotPresent).
    let left_alone = match d.options.apply {
        ApplyMode::Skip => true,
        ApplyMode::IfNotPresent => live.is_some(),
        ApplyMode::Apply | ApplyMode::Override => false,
    };
    if left_alone {
        plan.unchanged += 1;
        return Ok(None);
    }
    if app.spec.strategy.as_ref().and_then(|s| s.workload()) == Some(entry.name.as_str())
        && entry.kind == "Deployment"
    {
        plan.rollout = rollout_note(app, live.as_ref(), &desired);
    }
    // What the object would become: the dry run's answer (defaults filled in). In a namespace
    // the sync creates first, the API server would refuse a dry run now (the sync dry-runs such
    // objects just before their phase): as Git has it.
    let in_new_namespace = entry.namespace.as_ref().is_some_and(|ns| new_namespaces.contains(ns));
    let after = if (in_new_namespace || d.resource.is_none()) && live.is_none() {
        desired.clone()
    } else {
        let body = live.as_ref().and_then(|l| with_ignored_live(app, d, l));
        match applier.dry_run(body.as_ref().unwrap_or(&d.obj), true).await {
            Ok(result) => serde_json::to_value(result).expect("objects serialize"),
            Err(ApplyError::UnknownKind { .. }) if live.is_none() => desired.clone(),
            Err(e) => return Err(e.into()),
        }
    };
    let (mut before, mut after) = (live.as_ref().map(comparable).unwrap_or(Value::Null), comparable(&after));
    if context.secret {
        redact_all_values(&mut before, &mut after);
    } else if entry.group.is_empty() && entry.kind == "Secret" {
        redact_secret_values(&mut before, &mut after);
    }
    let diff = unified(&before, &after, &title);
    if diff.is_empty() {
        plan.unchanged += 1;
        return Ok(None);
    }
    Ok(Some((if live.is_none() { Action::Create } else { Action::Change }, diff)))
}

/// What a sync applies to an object that exists when `spec.ignoreDifferences` names fields of
/// it: the object with their live values (so the diff shows no change there). `None` when no
/// field is ignored.
fn with_ignored_live(app: &Application, d: &Desired, live: &Value) -> Option<DynamicObject> {
    let e = &d.entry;
    let rules =
        ignore::matching(&app.spec.ignore_differences, &e.group, &e.kind, e.namespace.as_deref(), &e.name);
    let ignored = if rules.is_empty() { return None } else { ignore::ignored_paths(&rules, live) };
    let mut body = serde_json::to_value(&d.obj).ok()?;
    ignore::keep_live(&mut body, live, &ignored);
    serde_json::from_value(body).ok()
}

/// The Namespaces among `objects` that do not exist yet.
async fn namespaces_to_create(
    applier: &Applier,
    objects: &[DynamicObject],
) -> Result<HashSet<String>, DiffError> {
    let mut new = HashSet::new();
    for obj in objects
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "Namespace" && t.api_version == "v1"))
    {
        let Some(name) = obj.metadata.name.as_deref() else { continue };
        let (resource, caps) = applier.resolve(obj)?;
        let title = format!("Namespace/{name}");
        if applier.get(&title, &resource, &caps, None, name).await?.is_none() {
            new.insert(name.to_string());
        }
    }
    Ok(new)
}

/// The rollout a change of the strategy's Deployment would start, naming the images.
fn rollout_note(app: &Application, live: Option<&Value>, desired: &Value) -> Option<String> {
    let live = live?;
    let new_hash = workload::template_hash(desired)?;
    if workload::stamped_hash(live).is_some_and(|h| h == new_hash) {
        return None;
    }
    if workload::template_hash(live) == Some(new_hash) {
        return None;
    }
    let strategy = app.spec.strategy.as_ref()?;
    let kind = if strategy.canary.is_some() { "canary" } else { "blue-green" };
    let images = |v: &Value| -> Vec<String> {
        v.pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["image"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (old, new) = (images(live), images(desired));
    let name = desired.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let change = if old != new {
        format!(": {} -> {}", old.join(", "), new.join(", "))
    } else {
        " (pod template changed)".to_string()
    };
    Some(format!("a {kind} rollout of Deployment {name} would start{change}"))
}

/// `--revision`: 40 hex digits are a commit, `refs/...` a full ref name (`refs/pull/7/head`),
/// anything else a branch (or, failing that, a tag).
fn git_ref(reference: &str) -> GitRef {
    if reference.starts_with("refs/") {
        GitRef { name: Some(reference.to_string()), ..Default::default() }
    } else if reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        GitRef { commit: Some(reference.to_lowercase()), ..Default::default() }
    } else {
        GitRef { branch: Some(reference.to_string()), ..Default::default() }
    }
}

fn diff_of(entry: &InventoryEntry, action: Action, diff: String) -> ObjectDiff {
    ObjectDiff {
        kind: entry.kind.clone(),
        namespace: entry.namespace.clone(),
        name: entry.name.clone(),
        action,
        diff,
    }
}

/// Reads an Application from a YAML file (`--file`), for one that does not exist yet.
pub fn application_from_file(path: &Path) -> Result<Application, DiffError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DiffError::File { path: path.to_path_buf(), source })?;
    serde_saphyr::from_str::<Application>(&text)
        .map_err(|source| DiffError::NotAnApplication { path: path.to_path_buf(), source: Box::new(source) })
}
