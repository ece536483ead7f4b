//! A Flux `HelmRelease` joined with its chart's source -> a ferry Application: a chart from a
//! HelmRepository (https:// or OCI) or an OCIRepository (`chartRef`), or a chart directory of
//! a GitRepository; values, releaseName, targetNamespace, dependsOn, drift detection.

use super::{
    Imported, Index, Kind, MapError, Note, ObjectRef, Output, Upstream, fields::Fields,
    flux_kustomization::depends_on, flux_sources, interval, is_release_name, metadata, repo_path, shorter,
};
use crate::api::{
    Application, ApplicationSpec, ChartSource, Destination, HelmSource, IgnoreDifference, Policy, Source,
    SyncPolicy,
};

const REASONS: &[(&str, &str)] = &[
    (
        "valuesFrom",
        "ferry reads values from the spec (helm.values) and from Git (helm.valuesFiles), not from ConfigMaps or Secrets",
    ),
    (
        "storageNamespace",
        "ferry renders with helm template and applies the objects itself: there is no Helm release to store",
    ),
    ("timeout", "ferry's applies and health checks have timeouts of their own"),
    ("maxHistory", "ferry keeps a bounded sync history of its own"),
    ("persistentClient", "ferry has no Helm client to keep"),
    ("postRenderers", "ferry does not post-render charts"),
    ("commonMetadata", "set labels and annotations through the chart's values"),
    ("kubeConfig", "ferry deploys to the cluster it runs in; run a ferry there instead"),
    ("upgrade", "ferry applies changes server-side; a failed sync is retried with backoff"),
    ("test", "ferry skips chart tests; run smoke tests as ferry.dev/hook: PostSync"),
    ("rollback", "ferry does not roll back; use a canary or blue-green strategy"),
    ("uninstall", "ferry deletes what the chart rendered by spec.deletionPolicy"),
];
const CHART_REASONS: &[(&str, &str)] = &[
    ("reconcileStrategy", "ferry reads a chart by version (a repository) or by commit (Git)"),
    ("ignoreMissingValuesFiles", "ferry refuses a missing values file"),
    ("verify", "ferry does not verify chart signatures"),
];

/// Maps one HelmRelease with its chart's source.
pub(super) fn import(object: &Upstream, index: &Index<'_>) -> Result<Imported, MapError> {
    let mut notes = Vec::new();
    let mut f = Fields::new(&object.id.to_string(), "spec", Some(object.spec.clone()))?;
    let (mut source, source_interval, joined) = chart(&mut f, object, index, &mut notes)?;
    let mut helm = source.helm.take().unwrap_or_default();
    helm.values = f.typed("values", "an object")?;
    let namespace = f.string("targetNamespace")?;
    helm.release_name = release_name(&mut f, object, namespace.as_deref(), &mut notes)?;
    source.helm = Some(helm);
    let own = f.required_string("interval")?;
    let own = interval(&f, "interval", &own)?;
    let (create_namespace, install_notes) = install(f.nested("install")?)?;
    notes.extend(install_notes);
    let (self_heal, ignore_differences) = drift_detection(f.nested("driftDetection")?, &mut notes)?;
    let destination = (namespace.is_some() || create_namespace).then_some(Destination {
        namespace,
        create_namespace,
        cluster: None,
    });
    let spec = ApplicationSpec {
        source,
        destination,
        service_account_name: f.string("serviceAccountName")?,
        interval: shorter(own, source_interval),
        // Helm removes what a new release no longer renders: prune.
        sync_policy: SyncPolicy {
            automated: true,
            prune: true,
            self_heal,
            allow_empty: false,
            rollback: None,
        },
        suspend: f.bool("suspend")?.unwrap_or(false),
        policy: Policy::default(),
        decryption: None,
        strategy: None,
        deletion_policy: None,
        depends_on: depends_on(&mut f, &mut notes)?,
        ignore_differences,
        health_checks: Vec::new(),
    };
    f.rest(REASONS, &mut notes);
    let app = Application { metadata: metadata(object), spec, status: None };
    Ok(Imported {
        from: object.id.clone(),
        joined: vec![joined],
        output: Some(Output::Application(Box::new(app))),
        notes,
    })
}

/// A chart's source as ferry writes it, its polling interval and the upstream source joined.
type Joined = (Source, Option<String>, ObjectRef);

/// The chart: `chart.spec` with its `sourceRef`, or `chartRef` to an OCIRepository. Returns
/// the source (with helm.valuesFiles when the chart names some), its interval and its name.
fn chart(
    f: &mut Fields,
    object: &Upstream,
    index: &Index<'_>,
    notes: &mut Vec<Note>,
) -> Result<Joined, MapError> {
    if f.has("chartRef") {
        let (kind, name, namespace) = flux_sources::reference(f, "chartRef", &object.id)?;
        if kind != "OCIRepository" {
            return Err(
                f.invalid("chartRef.kind", "ferry reads charts by chartRef from an OCIRepository only")
            );
        }
        let upstream = index.find(Kind::OciRepository, namespace.as_deref(), &name, f, "chartRef")?;
        let oci = flux_sources::oci(upstream, true, notes)?;
        let interval = oci.interval.clone();
        return Ok((oci_chart(f, oci)?, interval, upstream.id.clone()));
    }
    let mut c = f.nested("chart")?;
    if c.raw("metadata").is_some() {
        notes.push(c.note("metadata", "set labels and annotations through the chart's values"));
    }
    let mut spec = c.nested("spec")?;
    let chart_interval = spec.string("interval")?;
    let (source, source_interval, id) = chart_spec(&mut spec, object, index, notes)?;
    spec.rest(CHART_REASONS, notes);
    c.rest(&[], notes);
    let interval = match chart_interval {
        Some(i) => Some(shorter(i, source_interval)),
        None => source_interval,
    };
    Ok((source, interval, id))
}

/// `chart.spec`: a chart of a HelmRepository, or a chart directory of a GitRepository.
fn chart_spec(
    spec: &mut Fields,
    object: &Upstream,
    index: &Index<'_>,
    notes: &mut Vec<Note>,
) -> Result<Joined, MapError> {
    let chart = spec.required_string("chart")?;
    let version = spec.string("version")?.filter(|v| v != "*");
    let values_files = spec.strings("valuesFiles")?;
    let (kind, name, namespace) = flux_sources::reference(spec, "sourceRef", &object.id)?;
    match kind.as_str() {
        "HelmRepository" => {
            let upstream =
                index.find(Kind::HelmRepository, namespace.as_deref(), &name, spec, "sourceRef")?;
            let repo = flux_sources::helm(upstream, notes)?;
            let chart = ChartSource {
                repo_url: repo.url,
                name: chart,
                version,
                secret_ref: repo.secret_ref,
                insecure: repo.insecure,
            };
            let helm = HelmSource { values_files, ..Default::default() };
            Ok((
                Source { chart: Some(chart), helm: Some(helm), ..Source::default() },
                repo.interval,
                upstream.id.clone(),
            ))
        }
        "GitRepository" => {
            let upstream = index.find(Kind::GitRepository, namespace.as_deref(), &name, spec, "sourceRef")?;
            let git = flux_sources::git(upstream, notes)?;
            let path = repo_path(spec, "chart", Some(chart))?;
            let values_files = git_values(spec, path.as_deref(), values_files, notes);
            let source = Source {
                repo_url: Some(git.url),
                git_ref: Some(git.git_ref),
                secret_ref: git.secret_ref,
                path,
                helm: Some(HelmSource { values_files, ..Default::default() }),
                ..Source::default()
            };
            Ok((source, git.interval, upstream.id.clone()))
        }
        _ => {
            Err(spec.invalid("sourceRef.kind", "ferry reads charts from a HelmRepository or a GitRepository"))
        }
    }
}

/// An OCIRepository holding a chart: `oci://host/path/<chart>` -> repository and chart name;
/// a tag or range is the version. A digest cannot be a chart version.
fn oci_chart(f: &Fields, oci: flux_sources::OciRepository) -> Result<Source, MapError> {
    let Some((repo, name)) =
        oci.url.trim_end_matches('/').rsplit_once('/').filter(|(r, _)| r.len() > "oci://".len())
    else {
        return Err(f.invalid("chartRef", "its OCIRepository's url is not oci://<registry>/<path>/<chart>"));
    };
    if oci.digest.is_some() {
        return Err(f.invalid(
            "chartRef",
            "its OCIRepository pins a digest; ferry pins charts by version: use ref.tag or ref.semver",
        ));
    }
    let version = oci.semver.or(oci.tag).filter(|t| t != "latest");
    let chart = ChartSource {
        repo_url: repo.to_string(),
        name: name.to_string(),
        version,
        secret_ref: oci.secret_ref,
        insecure: oci.insecure,
    };
    Ok(Source { chart: Some(chart), helm: Some(HelmSource::default()), ..Source::default() })
}

/// A chart's values files in Git are relative to the repository root in Flux and to the chart
/// directory in ferry; one outside the chart directory is noted and dropped.
fn git_values(f: &Fields, chart_dir: Option<&str>, files: Vec<String>, notes: &mut Vec<Note>) -> Vec<String> {
    let prefix = chart_dir.map(|d| format!("{d}/")).unwrap_or_default();
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        match file.trim_start_matches("./").strip_prefix(&prefix) {
            Some(rest) => out.push(rest.to_string()),
            None => notes.push(
                f.note(&format!("valuesFiles[{i}]"), "ferry reads values files inside the chart directory"),
            ),
        }
    }
    out
}

/// `releaseName`, else Flux's default `[<targetNamespace>-]<name>` when it differs from
/// ferry's (the Application's name).
fn release_name(
    f: &mut Fields,
    object: &Upstream,
    target_namespace: Option<&str>,
    notes: &mut Vec<Note>,
) -> Result<Option<String>, MapError> {
    if let Some(name) = f.string("releaseName")? {
        if !is_release_name(&name) {
            return Err(f.invalid(
                "releaseName",
                "not a Helm release name (at most 53 lowercase letters, digits, '-' and '.')",
            ));
        }
        return Ok(Some(name));
    }
    let Some(namespace) = target_namespace else { return Ok(None) };
    let default = format!("{namespace}-{}", object.id.name);
    if is_release_name(&default) {
        Ok(Some(default))
    } else {
        notes.push(f.note("releaseName", "Flux's default release name is too long for Helm, and Flux shortens it with a hash: set helm.releaseName"));
        Ok(None)
    }
}

/// `install.createNamespace`; the other install options are noted.
fn install(mut f: Fields) -> Result<(bool, Vec<Note>), MapError> {
    let create = f.bool("createNamespace")?.unwrap_or(false);
    let mut notes = Vec::new();
    f.rest(
        &[
            ("crds", "ferry applies the chart's CRDs, and updates them, as any object"),
            ("remediation", "ferry retries a failed sync with backoff"),
        ],
        &mut notes,
    );
    Ok((create, notes))
}

/// `driftDetection`: `enabled` corrects drift (selfHeal), `warn` only reports it, the default
/// leaves it alone; `ignore` rules with a target kind become ignoreDifferences.
fn drift_detection(mut f: Fields, notes: &mut Vec<Note>) -> Result<(bool, Vec<IgnoreDifference>), MapError> {
    let self_heal = f.string("mode")?.as_deref() == Some("enabled");
    let mut out = Vec::new();
    for (i, rule) in f.list("ignore")?.into_iter().enumerate() {
        let mut rule = f.element("ignore", i, rule)?;
        let paths = rule.strings("paths")?;
        let mut target = rule.nested("target")?;
        let kind = target.string("kind")?;
        let group =
            target.string("group")?.or_else(|| kind.as_deref().and_then(known_group).map(str::to_string));
        let (name, namespace) = (target.string("name")?, target.string("namespace")?);
        // The version does not matter: ferry compares by group and kind.
        target.raw("version");
        target.rest(&[], notes);
        rule.rest(&[], notes);
        match (kind, group) {
            (Some(kind), Some(group)) if !paths.is_empty() => out.push(IgnoreDifference {
                group,
                kind,
                name,
                namespace,
                json_pointers: paths,
                managed_fields_managers: Vec::new(),
            }),
            _ => notes.push(f.note(
                &format!("ignore[{i}]"),
                "ferry ignores fields of one group and kind: set paths, target.kind and (for a kind outside the core and built-in groups) target.group",
            )),
        }
    }
    f.rest(&[], notes);
    Ok((self_heal, out))
}

/// The API group of a built-in kind, for a Flux target that names the kind alone (Flux matches
/// any group then; ferry needs one).
fn known_group(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ConfigMap"
        | "Secret"
        | "Service"
        | "ServiceAccount"
        | "Pod"
        | "PersistentVolumeClaim"
        | "Namespace" => "",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps",
        "Job" | "CronJob" => "batch",
        "HorizontalPodAutoscaler" => "autoscaling",
        "Ingress" | "NetworkPolicy" => "networking.k8s.io",
        "PodDisruptionBudget" => "policy",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::import::import as import_all;

    fn object(kind: Kind, name: &str, spec: serde_json::Value) -> Upstream {
        crate::import::upstream(kind, "apps", name, spec)
    }

    fn mapped(objects: &[Upstream]) -> (Application, Vec<Note>) {
        let report = import_all(objects, &Default::default()).unwrap();
        let imported = report.imported.into_iter().next().unwrap();
        let Some(Output::Application(app)) = imported.output else { panic!("no Application") };
        (*app, imported.notes)
    }

    #[test]
    fn helm_release_from_a_helm_repository() {
        let repo = object(
            Kind::HelmRepository,
            "podinfo",
            json!({"url": "https://charts.example.com", "interval": "5m", "secretRef": {"name": "creds"}}),
        );
        let release = object(
            Kind::HelmRelease,
            "podinfo",
            json!({
                "interval": "10m", "targetNamespace": "web",
                "chart": {"spec": {"chart": "podinfo", "version": "6.5.*", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}},
                "values": {"replicaCount": 2}, "valuesFrom": [{"kind": "Secret", "name": "x"}],
                "install": {"createNamespace": true, "remediation": {"retries": 3}},
                "driftDetection": {"mode": "enabled", "ignore": [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]},
                "dependsOn": [{"name": "cert-manager", "namespace": "infra"}]
            }),
        );
        let (app, notes) = mapped(&[repo, release]);
        let chart = app.spec.source.chart.as_ref().unwrap();
        assert_eq!(
            (chart.repo_url.as_str(), chart.version.as_deref()),
            ("https://charts.example.com", Some("6.5.*"))
        );
        assert_eq!(chart.secret_ref.as_ref().unwrap().name, "creds");
        let helm = app.spec.source.helm.as_ref().unwrap();
        assert_eq!(helm.release_name.as_deref(), Some("web-podinfo"), "Flux's default release name");
        assert_eq!(helm.values.as_ref().unwrap()["replicaCount"], 2);
        assert_eq!(
            app.spec.destination,
            Some(Destination { namespace: Some("web".into()), create_namespace: true, cluster: None })
        );
        assert!(app.spec.sync_policy.self_heal && app.spec.sync_policy.prune);
        assert_eq!(app.spec.ignore_differences[0].json_pointers, ["/spec/replicas"]);
        assert_eq!(
            app.spec.ignore_differences[0].group, "apps",
            "a Deployment's group, which Flux leaves open"
        );
        assert_eq!(app.spec.depends_on[0].namespace.as_deref(), Some("infra"));
        assert_eq!(app.spec.interval, "5m");
        let fields: Vec<&str> = notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(fields, ["spec.install.remediation", "spec.valuesFrom"]);
    }

    #[test]
    fn helm_release_from_an_oci_repository_and_from_git() {
        let oci = object(
            Kind::OciRepository,
            "podinfo",
            json!({"url": "oci://ghcr.io/stefanprodan/charts/podinfo", "ref": {"tag": "6.5.4"}}),
        );
        let release = object(
            Kind::HelmRelease,
            "podinfo",
            json!({"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "podinfo"}}),
        );
        let (app, notes) = mapped(&[oci, release]);
        let chart = app.spec.source.chart.as_ref().unwrap();
        assert_eq!(
            (chart.repo_url.as_str(), chart.name.as_str()),
            ("oci://ghcr.io/stefanprodan/charts", "podinfo")
        );
        assert_eq!(chart.version.as_deref(), Some("6.5.4"));
        assert!(!app.spec.sync_policy.self_heal, "Flux's drift detection is off by default");
        assert!(notes.is_empty(), "{notes:?}");
        let git = object(Kind::GitRepository, "repo", json!({"url": "https://g/x", "ref": {"tag": "v1"}}));
        let release = object(
            Kind::HelmRelease,
            "web",
            json!({"interval": "10m", "chart": {"spec": {"chart": "./charts/web", "valuesFiles": ["./charts/web/prod.yaml", "other/x.yaml"], "sourceRef": {"kind": "GitRepository", "name": "repo"}}}}),
        );
        let (app, notes) = mapped(&[git, release]);
        assert_eq!(app.spec.source.path.as_deref(), Some("charts/web"));
        assert_eq!(app.spec.source.helm.as_ref().unwrap().values_files, ["prod.yaml"]);
        assert_eq!(notes[0].field, "spec.chart.spec.valuesFiles[1]");
    }

    #[test]
    fn a_digest_pinned_chart_or_missing_repository_is_an_error() {
        let oci = object(
            Kind::OciRepository,
            "podinfo",
            json!({"url": "oci://ghcr.io/charts/podinfo", "ref": {"digest": "sha256:00"}}),
        );
        let release = object(
            Kind::HelmRelease,
            "podinfo",
            json!({"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "podinfo"}}),
        );
        let err = import_all(&[oci, release.clone()], &Default::default()).unwrap_err().to_string();
        assert!(err.contains("spec.chartRef: its OCIRepository pins a digest"), "{err}");
        let err = import_all(&[release], &Default::default()).unwrap_err().to_string();
        assert!(err.contains("names OCIRepository apps/podinfo, which is not in the input"), "{err}");
    }
}
