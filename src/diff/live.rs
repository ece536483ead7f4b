//! The cluster side of `ferry diff`: renders the input exactly as the controller would (same
//! renderers, labels and manifest hash), then asks the API server what each object would become
//! through a server-side dry run as field manager `ferry`. Reads and dry runs only.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt, api::DynamicObject, discovery::Discovery};
use serde_json::Value;

use super::{Action, ObjectDiff, Plan, comparable, redact_secret_values, unified};
use crate::{
    api::{Application, GitRef, InventoryEntry},
    apply::{
        AppRef, Applier, ApplyError, Ownership, created_namespace, inventory_entry, label_object,
        manifest_hash, ownership_of, requested_namespace,
    },
    health::ObjectName,
    render::{self, DiscoveredScopes, RenderOptions, RenderRequest},
    rollout::workload,
    source::{Credentials, GitCache, GitCacheOptions, SourceSpec},
};

/// What to compare with the cluster.
#[derive(Clone, Debug)]
pub enum Input {
    /// A branch, tag or full commit SHA of the Application's repository.
    Revision(String),
    /// A working tree: the repository's root (the Application's path applies inside it).
    Local(PathBuf),
}

/// The plan for syncing `input` into the cluster as `app`. Errors are one sentence.
pub async fn plan(
    client: Client,
    app: &Application,
    input: &Input,
    render_options: &RenderOptions,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<Plan, String> {
    let namespace = app.namespace().unwrap_or_else(|| client.default_namespace().to_string());
    let app_ref = AppRef { namespace: namespace.clone(), name: app.name_any() };
    let mut app = app.clone();
    app.metadata.namespace = Some(namespace.clone());

    // The input's files.
    let (root, source) = match input {
        Input::Local(dir) => {
            let dir = dir.canonicalize().map_err(|e| format!("--local {}: {e}", dir.display()))?;
            let shown = format!("local {}", dir.display());
            (dir, shown)
        }
        Input::Revision(reference) => {
            let credentials = credentials(&client, &app, &namespace, timeout).await?;
            let git = GitCache::new(cache_dir, GitCacheOptions::default())
                .map_err(|e| format!("Git cache in {}: {e}", cache_dir.display()))?;
            let mut source = app.spec.source.clone();
            source.git_ref = git_ref(reference);
            let spec = SourceSpec::from_source(&source, credentials.clone());
            let snapshot = match git.fetch(&spec).await {
                // Not a branch: maybe a tag of that name.
                Err(_) if source.git_ref.branch.is_some() => {
                    source.git_ref = GitRef { tag: Some(reference.clone()), ..Default::default() };
                    git.fetch(&SourceSpec::from_source(&source, credentials)).await
                }
                other => other,
            }
            .map_err(|e| format!("fetching {reference}: {e}"))?;
            (snapshot.root.clone(), snapshot.revision.short())
        }
    };

    // Render as the controller does.
    let discovery = tokio::time::timeout(timeout * 3, Discovery::new(client.clone()).run())
        .await
        .map_err(|_| "API discovery did not finish in time".to_string())?
        .map_err(|e| format!("API discovery: {e}"))?;
    let scopes = DiscoveredScopes::from_discovery(&discovery);
    let req = RenderRequest::for_application(&app, &root);
    let mut rendered = render::render(&req, render_options, &scopes)
        .await
        .map_err(|e| format!("rendering {source}: {e}"))?;
    let previous = app.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default();
    // The Namespace a sync adds for `createNamespace`, first, as the sync adds it.
    if let Some(name) = requested_namespace(&app, &app_ref) {
        let created = created_namespace(&client, timeout, &app_ref, &name, &rendered, &previous)
            .await
            .map_err(|e| e.to_string())?;
        rendered.splice(0..0, created);
    }
    let applier = Applier::with_discovery(client.clone(), Arc::new(discovery), timeout);
    let new_namespaces = namespaces_to_create(&applier, &rendered).await?;

    let mut plan = Plan { source, ..Default::default() };
    let mut desired_keys = HashSet::new();
    let workload_name = app.spec.strategy.as_ref().and_then(|s| {
        s.canary
            .as_ref()
            .map(|c| c.workload.name.clone())
            .or(s.blue_green.as_ref().map(|b| b.workload.name.clone()))
    });
    // PostSync hooks run after a sync; they are not part of what it changes.
    for object in rendered.into_iter().filter(|o| !crate::api::is_hook(o)) {
        let mut obj = object;
        label_object(&mut obj, &app_ref);
        manifest_hash(&mut obj);
        let Some(entry) = inventory_entry(&obj) else { continue };
        desired_keys.insert(key(&entry));
        let title = format!("{}/{}", entry.kind, entry.name);
        let desired = serde_json::to_value(&obj).expect("objects serialize");
        let live = match applier.resolve(&obj) {
            Ok((resource, caps)) => applier
                .get(&title, &resource, &caps, entry.namespace.as_deref(), &entry.name)
                .await
                .map_err(|e| e.to_string())?,
            // A kind whose CRD this revision installs: new by definition.
            Err(_) => None,
        };
        let live = live.map(|l| serde_json::to_value(l).expect("objects serialize"));
        if workload_name.as_deref() == Some(entry.name.as_str()) && entry.kind == "Deployment" {
            plan.rollout = rollout_note(&app, live.as_ref(), &desired);
        }
        // What the object would become: the dry run's answer (defaults filled in). In a
        // namespace the sync creates first, the API server would refuse a dry run now (the sync
        // dry-runs such objects just before their phase): as Git has it.
        let in_new_namespace = entry.namespace.as_ref().is_some_and(|ns| new_namespaces.contains(ns));
        let after = if in_new_namespace && live.is_none() {
            desired.clone()
        } else {
            match applier.dry_run(&obj, true).await {
                Ok(result) => serde_json::to_value(result).expect("objects serialize"),
                Err(ApplyError::UnknownKind { .. }) if live.is_none() => desired.clone(),
                Err(e) => return Err(e.to_string()),
            }
        };
        let (mut before, mut after) =
            (live.as_ref().map(comparable).unwrap_or(Value::Null), comparable(&after));
        if entry.group.is_empty() && entry.kind == "Secret" {
            redact_secret_values(&mut before, &mut after);
        }
        let diff = unified(&before, &after, &title);
        let action = if live.is_none() { Action::Create } else { Action::Change };
        if diff.is_empty() {
            plan.unchanged += 1;
        } else {
            plan.objects.push(diff_of(&entry, action, diff));
        }
    }

    // What the last sync applied and Git no longer has.
    for entry in previous.iter().filter(|e| !desired_keys.contains(&key(e))) {
        let gvk = kube::api::GroupVersionKind::gvk(&entry.group, &entry.version, &entry.kind);
        let Some((resource, caps)) = applier.discovery().resolve_gvk(&gvk) else { continue };
        let title = format!("{}/{}", entry.kind, entry.name);
        let live = applier
            .get(&title, &resource, &caps, entry.namespace.as_deref(), &entry.name)
            .await
            .map_err(|e| e.to_string())?;
        let Some(live) = live else { continue };
        if ownership_of(live.metadata.labels.as_ref(), &app_ref) != Ownership::Ours
            || crate::apply::is_prune_disabled(live.metadata.labels.as_ref())
        {
            continue;
        }
        if !app.spec.sync_policy.prune {
            plan.not_pruned.push(ObjectName::from(entry).to_string());
            continue;
        }
        let mut before = comparable(&serde_json::to_value(&live).expect("objects serialize"));
        let mut after = Value::Null;
        if entry.group.is_empty() && entry.kind == "Secret" {
            redact_secret_values(&mut before, &mut after);
        }
        plan.objects.push(diff_of(entry, Action::Prune, unified(&before, &after, &title)));
    }
    Ok(plan)
}

/// The Namespaces among `objects` that do not exist yet.
async fn namespaces_to_create(
    applier: &Applier,
    objects: &[DynamicObject],
) -> Result<HashSet<String>, String> {
    let mut new = HashSet::new();
    for obj in objects
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "Namespace" && t.api_version == "v1"))
    {
        let Some(name) = obj.metadata.name.as_deref() else { continue };
        let (resource, caps) = applier.resolve(obj).map_err(|e| e.to_string())?;
        let title = format!("Namespace/{name}");
        if applier.get(&title, &resource, &caps, None, name).await.map_err(|e| e.to_string())?.is_none() {
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

async fn credentials(
    client: &Client,
    app: &Application,
    namespace: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, String> {
    let Some(secret_ref) = &app.spec.source.secret_ref else { return Ok(None) };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = tokio::time::timeout(timeout, secrets.get(&secret_ref.name))
        .await
        .map_err(|_| format!("reading Secret {namespace}/{} timed out", secret_ref.name))?
        .map_err(|e| {
            format!("reading Secret {namespace}/{} (spec.source.secretRef): {e}", secret_ref.name)
        })?;
    Credentials::from_secret(&secret).map(Some).map_err(|e| e.to_string())
}

fn key(e: &InventoryEntry) -> (String, String, Option<String>, String) {
    (e.group.clone(), e.kind.clone(), e.namespace.clone(), e.name.clone())
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
pub fn application_from_file(path: &Path) -> Result<Application, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--file {}: {e}", path.display()))?;
    serde_saphyr::from_str::<Application>(&text)
        .map_err(|e| format!("--file {}: not an Application: {e}", path.display()))
}
