//! An Argo CD `Application` -> a ferry Application: its source (see `argo_source.rs`),
//! destination, sync policy, sync options and ignoreDifferences; the resources finalizer
//! becomes the deletion policy.

use serde_json::Value;

use super::{Imported, MapError, Note, Options, Output, Upstream, argo_source, fields::Fields, metadata};
use crate::api::{
    Application, ApplicationSpec, DeletionPolicy, Destination, IgnoreDifference, Policy, SyncPolicy,
};

/// The in-cluster destination, as Argo CD names it.
const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// Argo CD's finalizer that deletes an Application's resources with it (with `/foreground` or
/// `/background` variants).
const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

const SPEC_REASONS: &[(&str, &str)] = &[
    (
        "project",
        "ferry has no projects: a TenantPolicy in the Application's namespace limits its sources, destinations and kinds",
    ),
    ("info", "ferry has no free-form info; use labels or annotations"),
    ("revisionHistoryLimit", "ferry keeps a bounded sync history of its own"),
    ("sourceHydrator", "ferry renders at sync time; it does not hydrate manifests into Git"),
];
const SYNC_REASONS: &[(&str, &str)] = &[
    ("retry", "ferry retries failed syncs with backoff on its own"),
    ("managedNamespaceMetadata", "ferry creates the destination namespace with its own labels only"),
];
const IGNORE_REASONS: &[(&str, &str)] = &[(
    "jqPathExpressions",
    "ferry ignores fields by JSON pointer or by field manager, not by jq expression",
)];

/// Maps one Argo CD Application.
pub(super) fn import(object: &Upstream, options: &Options) -> Result<Imported, MapError> {
    let mut notes = Vec::new();
    let f = Fields::new(&object.id.to_string(), "spec", Some(object.spec.clone()))?;
    let spec = spec(f, &object.finalizers, options, &mut notes)?;
    let app = Application { metadata: metadata(object), spec, status: None };
    Ok(Imported {
        from: object.id.clone(),
        joined: Vec::new(),
        output: Some(Output::Application(Box::new(app))),
        notes,
    })
}

/// An Argo CD Application spec (with the Application's finalizers) -> ferry's.
pub(super) fn spec(
    mut f: Fields,
    finalizers: &[String],
    options: &Options,
    notes: &mut Vec<Note>,
) -> Result<ApplicationSpec, MapError> {
    let sources = f.list("sources")?;
    let source = match (f.raw("source"), sources.is_empty()) {
        (Some(single), true) => {
            argo_source::source(Fields::new(f.object(), &f.field("source"), Some(single))?, options, notes)?
        }
        (single, false) => {
            if single.is_some() {
                notes.push(f.note("source", "Argo CD reads sources when both are set"));
            }
            argo_source::sources(sources, &f, options, notes)?
        }
        (None, true) => {
            return Err(MapError::Missing { object: f.object().to_string(), field: f.field("source") });
        }
    };
    let destination = destination(f.nested("destination")?, notes)?;
    let (sync_policy, create_namespace) = sync_policy(f.nested("syncPolicy")?, notes)?;
    let ignore_differences = ignore_differences(&mut f, notes)?;
    let destination = match (destination, create_namespace) {
        ((None, None), false) => None,
        ((namespace, cluster), create_namespace) => {
            Some(Destination { namespace, create_namespace, cluster })
        }
    };
    let deleting = finalizers.iter().any(|x| x.split('/').next() == Some(RESOURCES_FINALIZER));
    f.rest(SPEC_REASONS, notes);
    Ok(ApplicationSpec {
        source,
        destination,
        service_account_name: None,
        interval: "3m".into(),
        sync_policy,
        suspend: false,
        policy: Policy::default(),
        decryption: None,
        strategy: None,
        // Without the resources finalizer Argo CD leaves the resources when the Application goes.
        deletion_policy: Some(if deleting { DeletionPolicy::Delete } else { DeletionPolicy::Orphan }),
        depends_on: Vec::new(),
        ignore_differences,
        health_checks: Vec::new(),
    })
}

/// `destination.namespace`, and `destination.name` as the `Cluster` to deploy to; a server
/// URL other than the cluster ferry runs in is noted (ferry names clusters, not URLs).
fn destination(mut f: Fields, notes: &mut Vec<Note>) -> Result<(Option<String>, Option<String>), MapError> {
    let namespace = f.string("namespace")?;
    if f.string("server")?.is_some_and(|s| s.trim_end_matches('/') != IN_CLUSTER_SERVER) {
        let why = "ferry names a Cluster object rather than a server URL; create a Cluster for this server and set destination.cluster";
        notes.push(f.note("server", why));
    }
    let cluster = f.string("name")?.filter(|n| n != "in-cluster");
    if let Some(name) = &cluster {
        let why = format!(
            "create a Cluster {name:?} with a kubeconfig Secret in the Application's namespace (see the README's \"Many clusters\")"
        );
        notes.push(f.note("name", &why));
    }
    f.rest(&[], notes);
    Ok((namespace, cluster))
}

/// `syncPolicy` -> ferry's sync policy and whether to create the namespace. Without
/// `automated` Argo CD syncs only when asked, and without `selfHeal` it leaves drift alone.
fn sync_policy(mut f: Fields, notes: &mut Vec<Note>) -> Result<(SyncPolicy, bool), MapError> {
    let automated = f.has("automated");
    let mut a = f.nested("automated")?;
    let enabled = automated && a.bool("enabled")? != Some(false);
    let policy = SyncPolicy {
        automated: enabled,
        prune: a.bool("prune")?.unwrap_or(false),
        self_heal: enabled && a.bool("selfHeal")?.unwrap_or(false),
        allow_empty: a.bool("allowEmpty")?.unwrap_or(false),
        rollback: None,
    };
    a.rest(&[], notes);
    let mut create_namespace = false;
    for (i, option) in f.strings("syncOptions")?.into_iter().enumerate() {
        match option.as_str() {
            "CreateNamespace=true" => create_namespace = true,
            // ferry always applies server-side and compares before it applies.
            "ServerSideApply=true" | "CreateNamespace=false" => {}
            _ => notes.push(f.note(&format!("syncOptions[{i}]"), sync_option_reason(&option))),
        }
    }
    f.rest(SYNC_REASONS, notes);
    Ok((policy, create_namespace))
}

/// Why an Application-wide sync option does not map (named without its value).
fn sync_option_reason(option: &str) -> String {
    let name = option.split('=').next().unwrap_or_default();
    let why = match name {
        "PruneLast" => "ferry prunes after every apply already",
        "ApplyOutOfSyncOnly" => "ferry applies only the objects that differ already",
        "Validate" => "the API server validates every object ferry applies",
        "Replace" | "Force" => "ferry applies server-side, never replaces",
        "PrunePropagationPolicy" => "ferry prunes with the API server's default propagation",
        "RespectIgnoreDifferences" => "ferry's ignoreDifferences always apply to syncs too",
        "FailOnSharedResource" => "ferry never takes over another Application's objects",
        _ => "ferry has no such sync option",
    };
    format!("{name}: {why}")
}

/// `ignoreDifferences` -> ferry's; entries with jq expressions only are dropped (and noted).
fn ignore_differences(f: &mut Fields, notes: &mut Vec<Note>) -> Result<Vec<IgnoreDifference>, MapError> {
    let mut out = Vec::new();
    for (i, entry) in f.list("ignoreDifferences")?.into_iter().enumerate() {
        let mut e = f.element("ignoreDifferences", i, entry)?;
        let d = IgnoreDifference {
            group: e.string("group")?.unwrap_or_default(),
            kind: e.required_string("kind")?,
            name: e.string("name")?,
            namespace: e.string("namespace")?,
            json_pointers: e.strings("jsonPointers")?,
            managed_fields_managers: e.strings("managedFieldsManagers")?,
        };
        e.rest(IGNORE_REASONS, notes);
        if !d.json_pointers.is_empty() || !d.managed_fields_managers.is_empty() {
            out.push(d);
        }
    }
    Ok(out)
}

/// The spec as a JSON object, for an ApplicationSet's template.
pub(super) fn spec_json(spec: &ApplicationSpec) -> serde_json::Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::import::{Kind, ObjectRef};

    fn argo(spec: Value, finalizers: &[&str]) -> Upstream {
        Upstream {
            id: ObjectRef {
                kind: Kind::ArgoApplication,
                namespace: Some("argocd".into()),
                name: "guestbook".into(),
            },
            labels: Default::default(),
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
            spec,
        }
    }

    fn app(imported: &Imported) -> &Application {
        match &imported.output {
            Some(Output::Application(app)) => app,
            other => panic!("not an Application: {other:?}"),
        }
    }

    #[test]
    fn sync_policy_destination_and_ignore_differences() {
        let object = argo(
            json!({
                "project": "default",
                "source": {"repoURL": "https://git.example.com/a.git", "targetRevision": "main", "path": "guestbook"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "guestbook"},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true", "PruneLast=true"], "retry": {"limit": 5}},
                "ignoreDifferences": [
                    {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]},
                    {"kind": "ConfigMap", "jqPathExpressions": [".data.x"]}
                ]
            }),
            &["resources-finalizer.argocd.argoproj.io/background"],
        );
        let imported = import(&object, &Options::default()).unwrap();
        let spec = &app(&imported).spec;
        assert_eq!(
            spec.sync_policy,
            SyncPolicy { automated: true, prune: true, self_heal: true, allow_empty: false, rollback: None }
        );
        assert_eq!(
            spec.destination,
            Some(Destination { namespace: Some("guestbook".into()), create_namespace: true, cluster: None })
        );
        assert_eq!(spec.ignore_differences.len(), 1);
        assert_eq!(spec.deletion_policy, Some(DeletionPolicy::Delete));
        let fields: Vec<&str> = imported.notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.syncPolicy.syncOptions[1]",
                "spec.syncPolicy.retry",
                "spec.ignoreDifferences[1].jqPathExpressions",
                "spec.project"
            ]
        );
        assert!(imported.notes[1].why.contains("retries"), "{:?}", imported.notes[1]);
    }

    #[test]
    fn manual_sync_other_clusters_and_missing_sources() {
        let object = argo(
            json!({"source": {"repoURL": "https://git.example.com/a.git", "targetRevision": "v1.0.0"},
                   "destination": {"server": "https://prod.example.com:6443"}}),
            &[],
        );
        let imported = import(&object, &Options::default()).unwrap();
        let spec = &app(&imported).spec;
        assert!(!spec.sync_policy.automated && !spec.sync_policy.self_heal);
        assert_eq!(spec.deletion_policy, Some(DeletionPolicy::Orphan));
        assert_eq!(imported.notes[0].field, "spec.destination.server");
        let named = argo(
            json!({"source": {"repoURL": "https://git.example.com/a.git"},
                   "destination": {"name": "prod-eu", "namespace": "web"}}),
            &[],
        );
        let imported = import(&named, &Options::default()).unwrap();
        let destination = app(&imported).spec.destination.clone().unwrap();
        assert_eq!(
            (destination.cluster.as_deref(), destination.namespace.as_deref()),
            (Some("prod-eu"), Some("web"))
        );
        assert!(imported.notes.iter().any(|n| n.field == "spec.destination.name"), "{:?}", imported.notes);
        let err = import(&argo(json!({"destination": {}}), &[]), &Options::default()).unwrap_err();
        assert_eq!(err.to_string(), "Argo CD Application argocd/guestbook: spec.source is required");
        let err = import(&argo(json!({"source": {"repoURL": 7}}), &[]), &Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Argo CD Application argocd/guestbook: spec.source.repoURL: expected a string"
        );
    }
}
