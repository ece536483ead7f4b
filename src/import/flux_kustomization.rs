//! A Flux `Kustomization` joined with its `sourceRef` (GitRepository or OCIRepository) -> a
//! ferry Application: path, interval, prune, targetNamespace, serviceAccountName, suspend,
//! dependsOn, healthCheckExprs, SOPS decryption, and the kustomize options ferry has
//! (namePrefix, nameSuffix, images).

use super::{
    Imported, Index, Kind, MapError, Note, Output, Upstream, fields::Fields, flux_sources, interval,
    metadata, repo_path, shorter,
};
use crate::api::{
    Application, ApplicationReference, ApplicationSpec, Decryption, DecryptionProvider, DeletionPolicy,
    Destination, HealthCheckExpr, KustomizeImage, KustomizeSource, LocalObjectReference, OciSource, Policy,
    Source, SyncPolicy,
};

const REASONS: &[(&str, &str)] = &[
    ("retryInterval", "ferry retries failed syncs with backoff on its own"),
    ("timeout", "ferry's applies and health checks have timeouts of their own"),
    ("force", "ferry never deletes and recreates an object to change an immutable field"),
    (
        "healthChecks",
        "ferry checks the health of every object it applies; add healthCheckExprs for custom kinds",
    ),
    ("patches", "put patches in the kustomization.yaml in Git"),
    ("components", "put components in the kustomization.yaml in Git"),
    ("ignoreMissingComponents", "put components in the kustomization.yaml in Git"),
    ("commonMetadata", "put labels and annotations in the kustomization.yaml in Git"),
    ("postBuild", "ferry does not substitute variables after the build"),
    ("kubeConfig", "ferry deploys to the cluster it runs in; run a ferry there instead"),
];

/// Maps one Kustomization with its source.
pub(super) fn import(object: &Upstream, index: &Index<'_>) -> Result<Imported, MapError> {
    let mut notes = Vec::new();
    let mut f = Fields::new(&object.id.to_string(), "spec", Some(object.spec.clone()))?;
    let (kind, name, namespace) = flux_sources::reference(&mut f, "sourceRef", &object.id)?;
    let (source, source_interval, joined) = match kind.as_str() {
        "GitRepository" | "OCIRepository" => {
            let kind = if kind == "GitRepository" { Kind::GitRepository } else { Kind::OciRepository };
            let upstream = index.find(kind, namespace.as_deref(), &name, &f, "sourceRef")?;
            let (source, interval) = source(upstream, &mut notes)?;
            (source, interval, upstream.id.clone())
        }
        _ => return Err(f.invalid("sourceRef.kind", "ferry syncs from a GitRepository or an OCIRepository")),
    };
    let spec = spec(&mut f, source, source_interval, &mut notes)?;
    f.rest(REASONS, &mut notes);
    let app = Application { metadata: metadata(object), spec, status: None };
    Ok(Imported {
        from: object.id.clone(),
        joined: vec![joined],
        output: Some(Output::Application(Box::new(app))),
        notes,
    })
}

/// ferry's source from a GitRepository or OCIRepository (path still unset), and its interval.
fn source(upstream: &Upstream, notes: &mut Vec<Note>) -> Result<(Source, Option<String>), MapError> {
    let mut source = Source::default();
    if upstream.id.kind == Kind::GitRepository {
        let git = flux_sources::git(upstream, notes)?;
        source.repo_url = Some(git.url);
        source.git_ref = Some(git.git_ref);
        source.secret_ref = git.secret_ref;
        Ok((source, git.interval))
    } else {
        let oci = flux_sources::oci(upstream, false, notes)?;
        source.oci = Some(OciSource {
            url: oci.url,
            tag: oci.tag,
            semver: oci.semver,
            digest: oci.digest,
            secret_ref: oci.secret_ref,
            insecure: oci.insecure,
        });
        Ok((source, oci.interval))
    }
}

/// The Kustomization's own fields -> ferry's spec around `source`.
fn spec(
    f: &mut Fields,
    mut source: Source,
    source_interval: Option<String>,
    notes: &mut Vec<Note>,
) -> Result<ApplicationSpec, MapError> {
    let path = f.string("path")?;
    source.path = repo_path(f, "path", path)?;
    source.kustomize = kustomize(f)?;
    let own_interval = f.required_string("interval")?;
    let own_interval = interval(f, "interval", &own_interval)?;
    let Some(prune) = f.bool("prune")? else {
        return Err(MapError::Missing { object: f.object().to_string(), field: f.field("prune") });
    };
    // `wait` (health of everything applied) is what ferry always does.
    f.raw("wait");
    let destination = f.string("targetNamespace")?.map(|ns| Destination {
        namespace: Some(ns),
        create_namespace: false,
        cluster: None,
    });
    Ok(ApplicationSpec {
        source,
        destination,
        service_account_name: f.string("serviceAccountName")?,
        interval: shorter(own_interval, source_interval),
        // Flux applies every interval and corrects drift; prune is the Kustomization's.
        sync_policy: SyncPolicy {
            automated: true,
            prune,
            self_heal: true,
            allow_empty: false,
            rollback: None,
        },
        suspend: f.bool("suspend")?.unwrap_or(false),
        policy: Policy::default(),
        decryption: decryption(f, notes)?,
        strategy: None,
        deletion_policy: deletion_policy(f, notes)?,
        depends_on: depends_on(f, notes)?,
        ignore_differences: Vec::new(),
        health_checks: health_checks(f)?,
    })
}

/// namePrefix, nameSuffix and images, when any is set.
fn kustomize(f: &mut Fields) -> Result<Option<KustomizeSource>, MapError> {
    let images = f.typed::<Vec<KustomizeImage>>("images", "a list of {name, newName, newTag, digest}")?;
    let k = KustomizeSource {
        name_prefix: f.string("namePrefix")?,
        name_suffix: f.string("nameSuffix")?,
        images: images.unwrap_or_default(),
    };
    Ok((k != KustomizeSource::default()).then_some(k))
}

/// `decryption`: SOPS with age keys in a Secret maps; keys from a cloud KMS (no secretRef) do not.
fn decryption(f: &mut Fields, notes: &mut Vec<Note>) -> Result<Option<Decryption>, MapError> {
    if !f.has("decryption") {
        return Ok(None);
    }
    let mut d = f.nested("decryption")?;
    let provider = d.required_string("provider")?;
    if provider != "sops" {
        return Err(d.invalid("provider", "ferry decrypts SOPS only"));
    }
    let secret = d.nested("secretRef")?.string("name")?;
    d.rest(
        &[("serviceAccountName", "ferry reads age keys from the secretRef Secret, not a cloud KMS")],
        notes,
    );
    match secret {
        Some(name) => Ok(Some(Decryption {
            provider: DecryptionProvider::Sops,
            secret_ref: LocalObjectReference { name },
        })),
        None => {
            notes.push(d.note("secretRef", "ferry decrypts with age keys from a Secret only: add one"));
            Ok(None)
        }
    }
}

/// `deletionPolicy`: MirrorPrune (the default) is ferry's default too.
fn deletion_policy(f: &mut Fields, notes: &mut Vec<Note>) -> Result<Option<DeletionPolicy>, MapError> {
    Ok(match f.string("deletionPolicy")?.as_deref() {
        None | Some("MirrorPrune") => None,
        Some("Delete") => Some(DeletionPolicy::Delete),
        Some("Orphan") => Some(DeletionPolicy::Orphan),
        Some("WaitForTermination") => {
            notes.push(f.note(
                "deletionPolicy",
                "WaitForTermination: ferry deletes without waiting for the objects to go",
            ));
            Some(DeletionPolicy::Delete)
        }
        Some(_) => {
            return Err(f.invalid("deletionPolicy", "not MirrorPrune, Delete, WaitForTermination or Orphan"));
        }
    })
}

/// `dependsOn` (Kustomizations or HelmReleases: each becomes a ferry Application of its name).
pub(super) fn depends_on(
    f: &mut Fields,
    notes: &mut Vec<Note>,
) -> Result<Vec<ApplicationReference>, MapError> {
    let mut out = Vec::new();
    for (i, d) in f.list("dependsOn")?.into_iter().enumerate() {
        let mut d = f.element("dependsOn", i, d)?;
        out.push(ApplicationReference {
            name: d.required_string("name")?,
            namespace: d.string("namespace")?,
        });
        d.rest(&[("readyExpr", "ferry waits for Ready at the latest revision")], notes);
    }
    Ok(out)
}

/// `healthCheckExprs` -> `healthChecks`: the same CEL expressions.
fn health_checks(f: &mut Fields) -> Result<Vec<HealthCheckExpr>, MapError> {
    Ok(f.typed("healthCheckExprs", "a list of {apiVersion, kind, current, inProgress, failed}")?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::import::import as import_all;

    fn object(kind: Kind, name: &str, spec: serde_json::Value) -> Upstream {
        crate::import::upstream(kind, "flux-system", name, spec)
    }

    fn kustomization(spec: serde_json::Value) -> Upstream {
        object(Kind::Kustomization, "apps", spec)
    }

    #[test]
    fn kustomization_joins_its_git_repository() {
        let git = object(
            Kind::GitRepository,
            "repo",
            json!({"url": "https://g/x", "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": "creds"}}),
        );
        let k = kustomization(json!({
            "sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": "./apps/prod", "interval": "10m",
            "prune": true, "targetNamespace": "apps", "serviceAccountName": "deployer", "suspend": true,
            "dependsOn": [{"name": "infra"}], "namePrefix": "p-", "timeout": "5m", "wait": true,
            "healthCheckExprs": [{"apiVersion": "example.com/v1", "kind": "Thing", "current": "status.ready == true"}],
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}
        }));
        let report = import_all(&[git, k], &Default::default()).unwrap();
        assert_eq!(report.imported.len(), 1, "the source is joined, not printed alone");
        let Some(Output::Application(app)) = &report.imported[0].output else { panic!("no Application") };
        let s = &app.spec;
        assert_eq!(s.source.repo_url.as_deref(), Some("https://g/x"));
        assert_eq!(s.source.secret_ref.as_ref().unwrap().name, "creds");
        assert_eq!(s.source.path.as_deref(), Some("apps/prod"));
        assert_eq!(s.interval, "1m", "the shorter of the source's and the Kustomization's");
        assert!(s.sync_policy.prune && s.suspend);
        assert_eq!(s.destination.as_ref().unwrap().namespace.as_deref(), Some("apps"));
        assert_eq!(s.depends_on[0].name, "infra");
        assert_eq!(s.health_checks[0].kind, "Thing");
        assert_eq!(s.decryption.as_ref().unwrap().secret_ref.name, "sops-age");
        assert_eq!(s.source.kustomize.as_ref().unwrap().name_prefix.as_deref(), Some("p-"));
        let fields: Vec<&str> = report.imported[0].notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(fields, ["spec.timeout"], "wait is what ferry does anyway");
    }

    #[test]
    fn missing_sources_and_required_fields_are_errors() {
        let k = kustomization(
            json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}, "interval": "10m", "prune": true}),
        );
        let err = import_all(&[k], &Default::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            "Kustomization flux-system/apps: spec.sourceRef names GitRepository flux-system/repo, which is not in the input; pass the file that defines it too (or use --from-cluster)"
        );
        let git = object(Kind::GitRepository, "repo", json!({"url": "https://g/x"}));
        let k =
            kustomization(json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}, "interval": "10m"}));
        let err = import_all(&[git.clone(), k], &Default::default()).unwrap_err().to_string();
        assert_eq!(err, "Kustomization flux-system/apps: spec.prune is required");
        let k = kustomization(
            json!({"sourceRef": {"kind": "Bucket", "name": "repo"}, "interval": "10m", "prune": false}),
        );
        let err = import_all(&[git, k], &Default::default()).unwrap_err().to_string();
        assert!(
            err.contains("spec.sourceRef.kind: ferry syncs from a GitRepository or an OCIRepository"),
            "{err}"
        );
    }

    #[test]
    fn kustomization_from_an_oci_repository() {
        let oci = object(
            Kind::OciRepository,
            "manifests",
            json!({"url": "oci://r.example.com/m", "interval": "5m", "ref": {"semver": ">=1.0.0"}}),
        );
        let k = kustomization(
            json!({"sourceRef": {"kind": "OCIRepository", "name": "manifests"}, "interval": "10m", "prune": false, "path": "./"}),
        );
        let report = import_all(&[oci, k], &Default::default()).unwrap();
        let Some(Output::Application(app)) = &report.imported[0].output else { panic!("no Application") };
        let o = app.spec.source.oci.as_ref().unwrap();
        assert_eq!((o.url.as_str(), o.semver.as_deref()), ("oci://r.example.com/m", Some(">=1.0.0")));
        assert_eq!(app.spec.source.path, None);
        assert_eq!(app.spec.interval, "5m");
    }
}
