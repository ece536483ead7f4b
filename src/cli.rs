//! Client-side commands that talk to the cluster on a person's behalf. Each returns what to
//! tell the person, or a [`CliError`] saying what to check or do.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};

use crate::api::{
    Application, ApplicationSet, ImagePolicy, Notifier, RECONCILE_AT_ANNOTATION, ROLLOUT_REQUEST_ANNOTATION,
};
use crate::notify::select::{Subject, selects};

/// Why a command could not do what the person asked. Each says what to check or do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no usable Kubernetes configuration ({0}); set KUBECONFIG")]
    NoConfig(#[source] kube::Error),
    #[error("the API server did not answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("Application {app} not found; check the name and pass -n NAMESPACE")]
    NotFound { app: String },
    #[error("cannot read Application {app}: {source}")]
    Read { app: String, source: kube::Error },
    #[error("cannot annotate Application {app}: {source}")]
    Annotate { app: String, source: kube::Error },
    #[error("Application {app} has no spec.strategy, so there is no rollout to {verb}")]
    NoRollout { app: String, verb: String },
    #[error("ApplicationSet {set} not found; check the name and pass -n NAMESPACE")]
    SetNotFound { set: String },
    #[error("cannot annotate ApplicationSet {set}: {source}")]
    AnnotateSet { set: String, source: kube::Error },
    #[error("ApplicationSet {set} has no spec.strategy, so there is no fleet rollout to promote")]
    NoFleetRollout { set: String },
    #[error("name an Application, or pass --file application.yaml")]
    NoApplication,
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// What `ferry diff` itself reports (reading `--file`, fetching, rendering, the dry runs).
    #[error(transparent)]
    Diff(#[from] Box<crate::diff::live::DiffError>),
    /// What `ferry import` reports (reading the input, an object ferry cannot express).
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
}

/// `ferry sync NAME`: stamps the reconcile-at annotation, which makes ferry re-check Git and
/// reconcile the Application at once. Returns what to tell the person.
pub async fn request_sync(name: &str, namespace: Option<&str>) -> Result<String, CliError> {
    let now = Timestamp::now().to_string();
    let (namespace, _) = annotate(name, namespace, RECONCILE_AT_ANNOTATION, &now).await?;
    Ok(format!("reconcile of Application {namespace}/{name} requested at {now}"))
}

/// `ferry promote|abort|retry NAME`: stamps the rollout-request annotation (`<verb>@<time>`),
/// which ferry acts on once and records in `status.rollout.handledRequest`.
pub async fn request_rollout(name: &str, namespace: Option<&str>, verb: &str) -> Result<String, CliError> {
    let value = format!("{verb}@{}", Timestamp::now());
    let (namespace, app) = annotate(name, namespace, ROLLOUT_REQUEST_ANNOTATION, &value).await?;
    if app.spec.strategy.is_none() {
        return Err(CliError::NoRollout { app: format!("{namespace}/{name}"), verb: verb.to_string() });
    }
    Ok(format!("{verb} of the rollout of Application {namespace}/{name} requested ({value})"))
}

/// `ferry promote --set NAME`: stamps the rollout-request annotation (`promote@<time>`) on an
/// ApplicationSet, whose fleet rollout then goes on past the step it paused after (once per
/// value, recorded in `status.rollout.handledRequest`).
pub async fn request_set_promotion(name: &str, namespace: Option<&str>) -> Result<String, CliError> {
    let client = Client::try_default().await.map_err(CliError::NoConfig)?;
    let namespace = namespace.map(str::to_string).unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<ApplicationSet> = Api::namespaced(client, &namespace);
    let set = format!("{namespace}/{name}");
    let value = format!("promote@{}", Timestamp::now());
    let patch = serde_json::json!({"metadata": {"annotations": {ROLLOUT_REQUEST_ANNOTATION: value}}});
    let patched =
        match tokio::time::timeout(TIMEOUT, api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
        {
            Err(_) => return Err(CliError::Timeout),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Err(CliError::SetNotFound { set }),
            Ok(Err(source)) => return Err(CliError::AnnotateSet { set, source }),
            Ok(Ok(patched)) => patched,
        };
    if patched.spec.strategy.is_none() {
        return Err(CliError::NoFleetRollout { set });
    }
    Ok(format!("promote of the fleet rollout of ApplicationSet {set} requested ({value})"))
}

/// `ferry status NAME`: what an Application's status says, for a person, with the Notifiers of
/// its namespace that hear it and the ImagePolicies that write for it.
pub async fn status(name: &str, namespace: Option<&str>) -> Result<String, CliError> {
    let (api, namespace) = applications(namespace).await?;
    let app = read(&api, &namespace, name).await?;
    let client = api.into_client();
    let notifiers = list_or_none::<Notifier>(&client, &namespace).await;
    let policies = list_or_none::<ImagePolicy>(&client, &namespace).await;
    let mut out = describe(&app);
    out.push_str(&describe_loop(&app, &notifiers, &policies));
    Ok(out)
}

/// The objects of a kind in `namespace`; none when the CRD is not installed, the caller may not
/// list them or the API server is slow (the rest of `ferry status` still helps).
async fn list_or_none<K>(client: &Client, namespace: &str) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match tokio::time::timeout(TIMEOUT, api.list(&Default::default())).await {
        Ok(Ok(list)) => list.items,
        _ => Vec::new(),
    }
}

/// The Notifiers of the Application's namespace that hear it (sent, failed, last sent, Ready),
/// and the ImagePolicies that update it (latest image, last commit or pull request).
pub fn describe_loop(app: &Application, notifiers: &[Notifier], policies: &[ImagePolicy]) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
    let subject = Subject { namespace: &namespace, name: &name, labels: app.labels() };
    for n in notifiers.iter().filter(|n| selects(n, None, &subject)) {
        let st = n.status.clone().unwrap_or_default();
        let last = st.last_sent.map(|t| format!(", last {}", t.0)).unwrap_or_default();
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready");
        let ready = ready.map(|c| format!("; Ready {} {}", c.status, c.reason)).unwrap_or_default();
        let provider = n.spec.provider.as_str();
        line(
            "Notifier",
            format!("{} ({provider}): {} sent, {} failed{last}{ready}", n.name_any(), st.sent, st.failed),
        );
    }
    let writes_for = |p: &&ImagePolicy| {
        p.spec.update.as_ref().and_then(|u| u.application_ref.as_ref()).is_some_and(|r| r.name == name)
    };
    for p in policies.iter().filter(writes_for) {
        let st = p.status.clone().unwrap_or_default();
        let latest = st.latest_ref.clone().unwrap_or_else(|| "not scanned yet".into());
        line("Image policy", format!("{}: latest {latest}", p.name_any()));
        if let Some(u) = &st.last_update {
            let pr = u.pull_request.as_ref().map(|p| format!(" (pull request {p})")).unwrap_or_default();
            line("  updated", format!("{} in {} on {}{pr} at {}", u.image, u.commit, u.branch, u.time.0));
        }
    }
    out
}

/// `spec.dependsOn` as `namespace/name, ...`.
fn dependencies(app: &Application) -> String {
    let own = app.namespace().unwrap_or_default();
    let deps = app.spec.depends_on.iter();
    deps.map(|d| format!("{}/{}", d.namespace.as_deref().unwrap_or(&own), d.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `status.progress`: the phase and wave of a revision's sync, and its hooks.
fn describe_progress(line: &mut impl FnMut(&str, String), p: &crate::api::SyncProgress) {
    let wave = p.wave.map(|w| format!(", wave {w}")).unwrap_or_default();
    let first = if p.first_sync { " (first sync)" } else { "" };
    line("Sync phase", format!("{} {:?}{wave} at {}{first}", p.phase, p.result, p.revision));
    if let Some(message) = &p.message {
        line("  message", message.clone());
    }
    for run in &p.hooks {
        let gone = if run.deleted { ", deleted" } else { "" };
        let why = run.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        let object = crate::controller::hooks::shown(run);
        line("  hook", format!("{} wave {} {object} {:?}{gone}{why}", run.phase, run.wave, run.result));
    }
}

/// The text of `ferry status`.
pub fn describe(app: &Application) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    let status = app.status.clone().unwrap_or_default();
    line("Application", format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()));
    line(
        "Cluster",
        crate::api::destination_cluster(app).unwrap_or("in-cluster (the one ferry runs in)").to_string(),
    );
    let sync = status.sync.unwrap_or_default();
    line("Sync", format!("{:?}", sync.status));
    line("Revision", sync.revision.unwrap_or_else(|| "-".into()));
    let health = status.health.unwrap_or_default();
    let message = health.message.map(|m| format!(" ({m})")).unwrap_or_default();
    line("Health", format!("{:?}{message}", health.status));
    if let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") {
        line("Ready", format!("{} {}: {}", ready.status, ready.reason, ready.message));
    }
    if let Some(upstream) = app.spec.source.from_application() {
        let ns = upstream.namespace.clone().unwrap_or_else(|| app.namespace().unwrap_or_default());
        line("Follows", format!("{ns}/{} (its verified revision)", upstream.name));
    }
    if !app.spec.depends_on.is_empty() {
        line("Depends on", dependencies(app));
    }
    if let Some(v) = &status.verification {
        let message = v.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        line("Verification", format!("{:?} at {}{message}", v.phase, v.revision));
    }
    if let Some(verified) = &status.verified_revision {
        line("Verified", verified.clone());
    }
    if let Some(p) = &status.progress {
        describe_progress(&mut line, p);
    }
    if let Some(r) = &status.revert {
        line(
            "Revert",
            format!("{:?}: {} back to {} at {}", r.phase, r.failed_revision, r.good_revision, r.time.0),
        );
        let shown = [("  commit", &r.commit), ("  pull", &r.pull_request), ("  message", &r.message)];
        for (k, v) in shown {
            if let Some(v) = v {
                line(k, v.clone());
            }
        }
    }
    let Some(strategy) = &app.spec.strategy else { return out };
    let kind = if strategy.canary.is_some() { "canary" } else { "blueGreen" };
    let Some(r) = status.rollout else {
        line("Rollout", format!("{kind}, none yet"));
        return out;
    };
    line("Rollout", format!("{kind}, {:?}", r.phase));
    if let Some(revision) = &r.revision {
        line("  revision", revision.clone());
    }
    if let Some(stable) = &r.stable_revision {
        line("  stable", stable.clone());
    }
    if let (Some(step), Some(steps)) = (r.step, strategy.canary.as_ref().map(|c| c.steps.len())) {
        line("  step", format!("{} of {steps}", (step + 1).min(steps as i32)));
    }
    if let Some(weight) = r.canary_weight {
        line("  weight", format!("{weight}%"));
    }
    if let Some(aborted) = &r.aborted_revision {
        line("  aborted", aborted.clone());
    }
    if let Some(message) = &r.message {
        line("  message", message.clone());
    }
    let runs = [("Analysis", r.analysis.as_ref()), ("Background", r.background_analysis.as_ref())];
    for (title, analysis) in runs.into_iter().filter_map(|(t, a)| Some((t, a?))) {
        let at = if analysis.step >= 0 { format!("step {}, ", analysis.step + 1) } else { String::new() };
        line(title, format!("{at}{}", analysis.phase));
        for m in &analysis.metrics {
            line(
                &format!("  {}", m.name),
                format!(
                    "{}: {} successful, {} failed, {} inconclusive, {} errors",
                    m.phase, m.successful, m.failed, m.inconclusive, m.errors
                ),
            );
        }
        for x in &analysis.measurements {
            let value = x.value.clone().or(x.message.clone()).unwrap_or_default();
            line("  measured", format!("{} {} {} {value}", x.at.0, x.metric, x.verdict));
        }
    }
    out
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn applications(namespace: Option<&str>) -> Result<(Api<Application>, String), CliError> {
    let client = Client::try_default().await.map_err(CliError::NoConfig)?;
    let namespace = namespace.map(str::to_string).unwrap_or_else(|| client.default_namespace().to_string());
    Ok((Api::namespaced(client, &namespace), namespace))
}

/// The Application `namespace/name` (`api` is of `namespace`).
async fn read(api: &Api<Application>, namespace: &str, name: &str) -> Result<Application, CliError> {
    let app = || format!("{namespace}/{name}");
    match tokio::time::timeout(TIMEOUT, api.get_opt(name)).await {
        Err(_) => Err(CliError::Timeout),
        Ok(Err(source)) => Err(CliError::Read { app: app(), source }),
        Ok(Ok(None)) => Err(CliError::NotFound { app: app() }),
        Ok(Ok(Some(app))) => Ok(app),
    }
}

/// Sets one annotation on an Application; returns its namespace and the patched Application.
async fn annotate(
    name: &str,
    namespace: Option<&str>,
    key: &str,
    value: &str,
) -> Result<(String, Application), CliError> {
    let (api, namespace) = applications(namespace).await?;
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    match tokio::time::timeout(TIMEOUT, api.patch(name, &params, &patch)).await {
        Err(_) => Err(CliError::Timeout),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            Err(CliError::NotFound { app: format!("{namespace}/{name}") })
        }
        Ok(Err(source)) => Err(CliError::Annotate { app: format!("{namespace}/{name}"), source }),
        Ok(Ok(app)) => Ok((namespace, app)),
    }
}

/// What `ferry diff` is asked: which Application (by name, or from a manifest), and what to
/// compare with the cluster.
pub struct DiffRequest<'a> {
    /// Optional with `file`.
    pub name: Option<&'a str>,
    /// Default: the kubeconfig context's (with `file`: the manifest's).
    pub namespace: Option<&'a str>,
    /// An Application manifest to use instead of one in the cluster.
    pub file: Option<&'a std::path::Path>,
    /// A revision of the Application's repository, or a local checkout.
    pub input: &'a crate::diff::live::Input,
    pub render: &'a crate::render::RenderOptions,
    /// Where revision fetches go; `None`: a temporary directory.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// `ferry diff`: the Application from the cluster (or `--file`), the plan for `input`.
pub async fn diff(request: DiffRequest<'_>) -> Result<crate::diff::Plan, CliError> {
    let DiffRequest { name, namespace, file, input, render, cache_dir } = request;
    let client = Client::try_default().await.map_err(CliError::NoConfig)?;
    let app = match (file, name) {
        (Some(path), _) => {
            let mut app =
                crate::diff::live::application_from_file(path).map_err(|e| CliError::Diff(Box::new(e)))?;
            if let Some(ns) = namespace {
                app.metadata.namespace = Some(ns.to_string());
            }
            app
        }
        (None, Some(name)) => {
            let (api, namespace) = applications(namespace).await?;
            read(&api, &namespace, name).await?
        }
        (None, None) => return Err(CliError::NoApplication),
    };
    let temp;
    let cache = match cache_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::Builder::new().prefix("ferry-diff-").tempdir().map_err(CliError::TempDir)?;
            temp.path().to_path_buf()
        }
    };
    let plan = crate::diff::live::plan(client, &app, input, render, &cache, TIMEOUT).await;
    plan.map_err(|e| CliError::Diff(Box::new(e)))
}

/// What `ferry import` reads: files (`-`: stdin) and, with `from_cluster`, the upstream objects
/// in the cluster (of `namespace`, or all namespaces).
pub struct ImportRequest<'a> {
    pub files: &'a [std::path::PathBuf],
    pub from_cluster: bool,
    pub namespace: Option<&'a str>,
    pub options: crate::import::Options,
}

/// `ferry import`: the upstream objects read, then mapped. Nothing is mapped when anything
/// cannot be read.
pub async fn import(request: ImportRequest<'_>) -> Result<crate::import::Report, CliError> {
    use crate::import::{ImportError, InputError, input};
    if request.files.is_empty() && !request.from_cluster {
        return Err(ImportError::from(InputError::Nothing).into());
    }
    let mut objects = input::read_files(request.files).map_err(ImportError::from)?;
    if request.from_cluster {
        objects.extend(input::from_cluster(request.namespace).await.map_err(ImportError::from)?);
    }
    input::check_unique(&objects).map_err(ImportError::from)?;
    Ok(crate::import::import(&objects, &request.options)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApplicationSpec;

    #[test]
    fn status_shows_the_phase_wave_and_hooks_of_a_sync() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}},
            "status": {"progress": {"revision": "main@sha1:abc", "phase": "Sync", "wave": 1,
                "result": "Running", "message": "sync wave 1 is not Healthy yet",
                "hooks": [{"phase": "PreSync", "wave": -1, "hook": "Job shop/migrate-",
                    "object": {"group": "batch", "version": "v1", "kind": "Job", "namespace": "shop",
                        "name": "migrate-x7k2p"}, "uid": "u1", "result": "Succeeded", "deleted": true}]}}
        }))
        .unwrap();
        let said = describe(&app);
        assert!(said.contains("Sync phase    Sync Running, wave 1 at main@sha1:abc\n"), "{said}");
        assert!(said.contains("  message     sync wave 1 is not Healthy yet\n"), "{said}");
        assert!(
            said.contains("  hook        PreSync wave -1 Job shop/migrate-x7k2p Succeeded, deleted\n"),
            "{said}"
        );
    }

    #[test]
    fn status_shows_the_revert_of_a_failed_revision() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}},
            "status": {"revert": {"failedRevision": "main@sha1:bad", "goodRevision": "main@sha1:good",
                "phase": "PullRequestOpened", "pullRequest": "https://git.example.com/a/pulls/7",
                "message": "proposed reverting bad to good", "time": "2026-12-06T10:00:00Z"}}
        }))
        .unwrap();
        let said = describe(&app);
        assert!(
            said.contains("Revert        PullRequestOpened: main@sha1:bad back to main@sha1:good at 2026-12-06T10:00:00Z\n"),
            "{said}"
        );
        assert!(said.contains("  pull        https://git.example.com/a/pulls/7\n"), "{said}");
    }

    #[test]
    fn status_shows_the_notifiers_that_hear_it_and_the_image_policies_that_write_for_it() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}}}
        }))
        .unwrap();
        let notifier = |name: &str, applications: serde_json::Value| -> Notifier {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ferry.dev/v1alpha1", "kind": "Notifier",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"provider": "slack", "address": "https://hooks.example.com/x", "applications": applications},
                "status": {"sent": 4, "failed": 1, "lastSent": "2026-12-06T10:00:00Z",
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                        "lastTransitionTime": "2026-12-06T09:00:00Z"}]}
            }))
            .unwrap()
        };
        let hears = notifier("team", serde_json::json!({"selector": {"matchLabels": {"tier": "front"}}}));
        let deaf = notifier("db-only", serde_json::json!({"names": ["db-*"]}));
        let policy: ImagePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "web-image", "namespace": "shop"},
            "spec": {"image": "reg/web", "policy": {"semver": {"range": ">=1"}},
                "update": {"applicationRef": {"name": "web"}, "write": {"secretRef": {"name": "push"}}}},
            "status": {"latestRef": "reg/web:1.1.0", "lastUpdate": {"image": "reg/web:1.1.0", "commit": "abc",
                "branch": "main", "time": "2026-12-06T11:00:00Z"}}
        }))
        .unwrap();
        let said = describe_loop(&app, &[hears, deaf], &[policy]);
        assert!(
            said.contains(
                "Notifier      team (slack): 4 sent, 1 failed, last 2026-12-06T10:00:00Z; Ready True Ready\n"
            ),
            "{said}"
        );
        assert!(!said.contains("db-only"), "{said}");
        assert!(said.contains("Image policy  web-image: latest reg/web:1.1.0\n"), "{said}");
        assert!(
            said.contains("  updated     reg/web:1.1.0 in abc on main at 2026-12-06T11:00:00Z\n"),
            "{said}"
        );
    }

    #[test]
    fn status_names_the_dependencies_with_their_namespaces() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": {"branch": "main"}},
                     "dependsOn": [{"name": "db"}, {"name": "crds", "namespace": "platform"}]}
        }))
        .unwrap();
        assert!(describe(&app).contains("Depends on    shop/db, platform/crds\n"), "{}", describe(&app));
        let alone = Application { spec: ApplicationSpec { depends_on: vec![], ..app.spec.clone() }, ..app };
        assert!(!describe(&alone).contains("Depends on"));
    }
}
