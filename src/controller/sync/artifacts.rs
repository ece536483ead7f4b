//! Fetch for sources that are not Git: a chart from a Helm repository (or an OCI registry),
//! optionally with its values files from a Git revision, and an OCI artifact of manifests.
//! Each resolves to a digest, which is the revision (`podinfo@6.5.4@sha256:...`), and is
//! downloaded and unpacked once into the artifact store for every Application that uses it.

use std::time::Duration;

use super::pass::Pass;
use crate::{
    api::{ChartSource, LocalObjectReference, OciSource},
    artifact::access::ArtifactAccess,
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
    let fetched =
        ctx.artifacts.chart(chart, &creds, max_age).await.map_err(|e| FetchError::Artifact(Box::new(e)))?;
    let commit = match &git {
        Some(g) => format!("sha256:{}+sha1:{}", fetched.digest, g.revision.commit),
        None => format!("sha256:{}", fetched.digest),
    };
    let revision = Revision { reference: RevisionRef::Artifact(fetched.label), commit };
    let root = git.map_or_else(|| fetched.dir.clone(), |g| g.root);
    Ok(Snapshot { revision, root, chart: Some(fetched.dir) })
}

/// The OCI artifact of manifests `oci` names.
pub async fn oci(pass: Pass<'_>, client: &kube::Client, oci: &OciSource) -> Result<Snapshot, FetchError> {
    let Pass { ctx, app_ref, .. } = pass;
    let creds = artifact_access(ctx, client, &app_ref.namespace, oci.secret_ref.as_ref()).await?;
    let fetched =
        ctx.artifacts.manifests(oci, &creds).await.map_err(|e| FetchError::Artifact(Box::new(e)))?;
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
        let got = ctx
            .artifacts
            .chart(&chart, &creds, ctx.options.git_ref_cache)
            .await
            .map_err(|e| dependency_error(&req, &dep.name, &e))?;
        fetched.push(FetchedDependency { name: dep.name, dir: got.dir });
    }
    Ok(fetched)
}

fn dependency_error(req: &RenderRequest<'_>, name: &str, e: &dyn std::fmt::Display) -> BuildError {
    let path = req.source.chart.as_ref().map_or_else(
        || req.source.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into()),
        |c| c.name.clone(),
    );
    let source = RenderError::Dependency { path, name: name.to_string(), cause: e.to_string() };
    BuildError::Dependency(Box::new(source))
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
