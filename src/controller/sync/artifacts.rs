//! Fetch for sources that are not Git: a chart from a Helm repository (or an OCI registry),
//! optionally with its values files from a Git revision, and an OCI artifact of manifests.
//! Each resolves to a digest, which is the revision (`podinfo@6.5.4@sha256:...`), and is
//! downloaded and unpacked once into the artifact store for every Application that uses it.

use std::{path::PathBuf, time::Duration};

use super::{pass::Pass, stored::Fetched};
use crate::{
    api::{ChartSource, LocalObjectReference, OciSource},
    artifact::{access::ArtifactAccess, helm_repo::ResolvedChart},
    controller::{
        context::Context,
        error::{BuildError, FetchError},
    },
    render::{self, Dependency, FetchedDependency, RenderError, RenderRequest},
    source::{Revision, RevisionRef, Snapshot},
};

/// The chart `chart` names, with `git` (the revision its values files come from) when set.
pub async fn chart(
    pass: Pass<'_>,
    client: &kube::Client,
    chart: &ChartSource,
    git: Option<Snapshot>,
    max_age: Duration,
) -> Result<Snapshot, FetchError> {
    let Pass { ctx, app_ref, .. } = pass;
    let creds = artifact_access(ctx, client, &app_ref.namespace, chart.secret_ref.as_ref()).await?;
    let fetched = match chart.repo_url.strip_prefix("oci://") {
        Some(_) => oci_chart(ctx, chart, &creds).await?,
        None => repository_chart(ctx, chart, &creds, max_age).await?,
    };
    let chart_dir = chart_dir(&fetched.dir, &chart.name)?;
    let commit = match &git {
        Some(g) => format!("sha256:{}+sha1:{}", fetched.digest, g.revision.commit),
        None => format!("sha256:{}", fetched.digest),
    };
    let revision = Revision { reference: RevisionRef::Artifact(fetched.label), commit };
    let root = git.map_or_else(|| chart_dir.clone(), |g| g.root);
    Ok(Snapshot { revision, root, chart: Some(chart_dir) })
}

/// The OCI artifact of manifests `oci` names.
pub async fn oci(pass: Pass<'_>, client: &kube::Client, oci: &OciSource) -> Result<Snapshot, FetchError> {
    let Pass { ctx, app_ref, .. } = pass;
    let creds = artifact_access(ctx, client, &app_ref.namespace, oci.secret_ref.as_ref()).await?;
    let fetched = super::oci_pull::manifests(ctx, oci, &creds).await?;
    let revision = Revision {
        reference: RevisionRef::Artifact(fetched.label),
        commit: format!("sha256:{}", fetched.digest),
    };
    Ok(Snapshot { revision, root: fetched.dir, chart: None })
}

/// The dependencies of the revision's chart that `charts/` does not vendor. An error is the
/// render's to report (the same check fails there), so it counts as none here.
pub fn wanted_dependencies(app: &crate::api::Application, snapshot: &Snapshot) -> Vec<Dependency> {
    let req = RenderRequest {
        chart: snapshot.chart.as_deref(),
        ..RenderRequest::for_application(app, &snapshot.root)
    };
    render::dependencies_to_fetch(&req).unwrap_or_default()
}

/// `wanted` (see [`wanted_dependencies`]), fetched through the
/// same caches as charts (with `helm.dependencies`' Secret and transport). A dependency that
/// cannot be fetched fails the build as RenderFailed, naming it; nothing is applied.
pub async fn chart_dependencies(
    pass: Pass<'_>,
    client: &kube::Client,
    snapshot: &Snapshot,
    wanted: Vec<Dependency>,
) -> Result<Vec<FetchedDependency>, BuildError> {
    let Pass { ctx, app, app_ref, .. } = pass;
    let req = RenderRequest {
        chart: snapshot.chart.as_deref(),
        ..RenderRequest::for_application(app, &snapshot.root)
    };
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let settings = app.spec.source.helm.as_ref().and_then(|h| h.dependencies.clone()).unwrap_or_default();
    let creds = artifact_access(ctx, client, &app_ref.namespace, settings.secret_ref.as_ref())
        .await
        .map_err(|e| dependency_error(&req, "(all)", &e))?;
    let mut fetched = Vec::with_capacity(wanted.len());
    for dep in wanted {
        let chart = ChartSource {
            repo_url: dep.repository.clone(),
            name: dep.name.clone(),
            version: dep.version.clone(),
            secret_ref: None,
            insecure: settings.insecure,
        };
        let got = match chart.repo_url.strip_prefix("oci://") {
            Some(_) => oci_chart(ctx, &chart, &creds).await,
            None => repository_chart(ctx, &chart, &creds, ctx.options.git_ref_cache).await,
        }
        .and_then(|f| chart_dir(&f.dir, &dep.name))
        .map_err(|e| dependency_error(&req, &dep.name, &e))?;
        fetched.push(FetchedDependency { name: dep.name, dir: got });
    }
    Ok(fetched)
}

fn dependency_error(req: &RenderRequest<'_>, name: &str, e: &FetchError) -> BuildError {
    let path = req.source.chart.as_ref().map_or_else(
        || req.source.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into()),
        |c| c.name.clone(),
    );
    let source = RenderError::Dependency { path, name: name.to_string(), cause: e.to_string() };
    BuildError::Dependency(Box::new(source))
}

async fn repository_chart(
    ctx: &Context,
    chart: &ChartSource,
    creds: &ArtifactAccess,
    max_age: Duration,
) -> Result<Fetched, FetchError> {
    let err = |e| FetchError::Chart(Box::new(e));
    let resolved: ResolvedChart = ctx
        .charts
        .resolve(&chart.repo_url, &chart.name, chart.version.as_deref(), creds, max_age)
        .await
        .map_err(err)?;
    let label = format!("{}@{}", resolved.name, resolved.version);
    if let Some(digest) = ctx.charts.known_digest(&resolved, creds)
        && let Some(dir) = ctx.artifacts.get(&digest)
    {
        ctx.charts.remember(&resolved, &digest);
        return Ok(Fetched { label, digest, dir });
    }
    let (archive, digest) = ctx.charts.download(&resolved, creds).await.map_err(err)?;
    ctx.charts.remember(&resolved, &digest);
    let dir = ctx.artifacts.insert(&digest, archive).await.map_err(|e| FetchError::Store(Box::new(e)))?;
    Ok(Fetched { label, digest, dir })
}

async fn oci_chart(
    ctx: &Context,
    chart: &ChartSource,
    creds: &ArtifactAccess,
) -> Result<Fetched, FetchError> {
    super::oci_pull::chart(ctx, chart, creds).await
}

/// `<name>/` inside the unpacked archive (helm packages a chart under its name).
fn chart_dir(unpacked: &std::path::Path, name: &str) -> Result<PathBuf, FetchError> {
    let dir = unpacked.join(name);
    if dir.join("Chart.yaml").is_file() {
        return Ok(dir);
    }
    Err(FetchError::NotAChart { name: name.to_string() })
}

/// The credentials and CA in the source's Secret, read as the Application's ServiceAccount.
async fn artifact_access(
    ctx: &Context,
    client: &kube::Client,
    namespace: &str,
    secret_ref: Option<&LocalObjectReference>,
) -> Result<ArtifactAccess, FetchError> {
    let Some(r) = secret_ref else { return Ok(ArtifactAccess::anonymous()) };
    let secret = crate::source::credentials::read_secret(client, ctx.options.api_timeout, namespace, r)
        .await
        .map_err(|e| FetchError::ArtifactSecret(Box::new(e)))?;
    ArtifactAccess::from_secret_data(&secret.data.unwrap_or_default()).map_err(FetchError::ArtifactAccess)
}
