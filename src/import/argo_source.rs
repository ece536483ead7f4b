//! An Argo CD source (`spec.source`, or `spec.sources` of a chart and a `ref:` values
//! repository) -> ferry's `spec.source`: Git with kustomize or helm options, a chart from a Helm
//! repository or an OCI registry, or an OCI artifact.

use serde_json::{Map, Value};

use super::{MapError, Note, Options, fields::Fields, is_release_name, repo_path};
use crate::api::{ChartSource, GitRef, HelmSource, KustomizeImage, KustomizeSource, OciSource, Source};

/// Why the fields of an Argo CD source that ferry lacks do not map.
const SOURCE_REASONS: &[(&str, &str)] = &[
    ("plugin", "ferry renders with kustomize, helm or plain files only (no config management plugins)"),
    ("name", "ferry's Application has a single source"),
];
const HELM_REASONS: &[(&str, &str)] = &[
    ("fileParameters", "ferry reads values from the spec and values files only"),
    ("passCredentials", "ferry sends a chart repository's credentials to that repository only"),
    ("ignoreMissingValueFiles", "ferry refuses a missing values file"),
    ("skipCrds", "ferry renders with --include-crds"),
    ("namespace", "helm renders into destination.namespace"),
    ("kubeVersion", "ferry gives helm the cluster's own version"),
    ("apiVersions", "ferry gives helm the cluster's own served APIs"),
    ("version", "ferry renders with Helm 3"),
];
const KUSTOMIZE_REASONS: &[(&str, &str)] = &[
    ("commonLabels", "put labels in the kustomization.yaml in Git"),
    ("commonAnnotations", "put annotations in the kustomization.yaml in Git"),
    ("namespace", "destination.namespace fills in the namespace of objects that have none"),
    ("patches", "put patches in the kustomization.yaml in Git"),
    ("replicas", "put replicas in the kustomization.yaml in Git"),
    ("components", "put components in the kustomization.yaml in Git"),
    ("version", "ferry runs the kustomize it was installed with"),
];
const DIRECTORY_REASONS: &[(&str, &str)] = &[
    ("include", "ferry reads every .yaml, .yml and .json file of the path"),
    ("exclude", "ferry reads every .yaml, .yml and .json file of the path"),
    ("jsonnet", "ferry does not render jsonnet"),
];

/// One Argo CD source -> ferry's source. `notes` collects what does not map.
pub(super) fn source(mut f: Fields, options: &Options, notes: &mut Vec<Note>) -> Result<Source, MapError> {
    let repo_url = f.required_string("repoURL")?;
    let revision = f.string("targetRevision")?;
    let path = f.string("path")?;
    let path = repo_path(&f, "path", path)?;
    let chart = f.string("chart")?;
    let helm = helm(f.nested("helm")?, notes)?;
    let kustomize = kustomize(f.nested("kustomize")?, notes)?;
    directory(f.nested("directory")?, notes)?;
    let mut source = Source::default();
    if let Some(name) = chart {
        source.chart = Some(chart_source(repo_url, name, revision));
        if kustomize.is_some() {
            notes.push(f.note("kustomize", "a chart is rendered with helm"));
        }
        if path.is_some() {
            notes.push(f.note("path", "a chart from a repository has no path"));
        }
        source.helm = Some(helm.unwrap_or_default());
    } else if repo_url.starts_with("oci://") {
        source.oci = Some(oci_source(&f, repo_url, revision.as_deref())?);
        source.path = path;
    } else {
        source.repo_url = Some(repo_url);
        source.git_ref = Some(git_ref(&f, revision.as_deref(), options, notes));
        source.path = path;
        source.helm = helm;
        source.kustomize = kustomize;
    }
    f.rest(SOURCE_REASONS, notes);
    Ok(source)
}

/// A chart: Argo CD's `repoURL` without a scheme is an OCI registry.
fn chart_source(repo_url: String, name: String, revision: Option<String>) -> ChartSource {
    let repo_url = if repo_url.contains("://") { repo_url } else { format!("oci://{repo_url}") };
    let version = revision.filter(|v| v != "*" && v != "HEAD");
    ChartSource { repo_url, name, version, secret_ref: None, insecure: false }
}

/// An OCI artifact (Argo CD 3.1's `oci://` sources): a digest, a range or a tag.
fn oci_source(f: &Fields, url: String, revision: Option<&str>) -> Result<OciSource, MapError> {
    let mut oci = OciSource { url, tag: None, semver: None, digest: None, secret_ref: None, insecure: false };
    match revision {
        Some(d) if d.starts_with("sha256:") => oci.digest = Some(d.to_string()),
        Some(r) if is_range(r) => oci.semver = Some(r.to_string()),
        Some(t) => oci.tag = Some(t.to_string()),
        None => return Err(f.invalid("targetRevision", "an OCI source needs a tag, a range or a digest")),
    }
    Ok(oci)
}

/// A Git `targetRevision` -> ferry's ref. Argo CD resolves a name against the remote; ferry is
/// told which kind of ref it is, so a version (`v1.2.3`) is read as a tag and any other name as
/// a branch.
pub(super) fn git_ref(
    f: &Fields,
    revision: Option<&str>,
    options: &Options,
    notes: &mut Vec<Note>,
) -> GitRef {
    let mut r = GitRef::default();
    match revision {
        None | Some("HEAD") => {
            if options.default_branch.is_none() {
                notes.push(f.note(
                    "targetRevision",
                    "HEAD is the repository's default branch, which ferry does not look up: `main` was assumed; pass --default-branch NAME to choose",
                ));
            }
            r.branch = Some(options.default_branch.clone().unwrap_or_else(|| "main".into()));
        }
        Some(sha) if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => {
            r.commit = Some(sha.into())
        }
        // An ApplicationSet's pull request head commit (Argo CD's head_sha, renamed): ferry
        // follows the pull request's ref, as its preview ApplicationSets do.
        Some("{{sha}}") => r.name = Some("{{ref}}".into()),
        Some(full) if full.starts_with("refs/heads/") => {
            r.branch = full.strip_prefix("refs/heads/").map(Into::into)
        }
        Some(full) if full.starts_with("refs/tags/") => {
            r.tag = full.strip_prefix("refs/tags/").map(Into::into)
        }
        Some(full) if full.starts_with("refs/") => r.name = Some(full.into()),
        Some(range) if is_range(range) => r.semver = Some(range.into()),
        Some(version) if is_version(version) => r.tag = Some(version.into()),
        Some(branch) => r.branch = Some(branch.into()),
    }
    r
}

/// `v1.2.3`, `1.2`, `1.2.3-rc.1`: a version, so a tag.
fn is_version(text: &str) -> bool {
    let rest = text.strip_prefix('v').unwrap_or(text);
    let core = rest.split(['-', '+']).next().unwrap_or_default();
    !core.is_empty() && core.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A semver range (`>=1.0.0`, `1.x`, `^2`, `1.2.*`), not a version or a name.
fn is_range(text: &str) -> bool {
    text.contains(['*', '^', '~', '<', '>', '=', '|', ' '])
        || (text.split('.').any(|p| p == "x" || p == "X") && text.split('.').count() > 1)
}

/// Argo CD's `helm` options -> ferry's, `None` when there are none.
fn helm(mut f: Fields, notes: &mut Vec<Note>) -> Result<Option<HelmSource>, MapError> {
    let mut helm = HelmSource { values_files: f.strings("valueFiles")?, ..Default::default() };
    if let Some(name) = f.string("releaseName")? {
        if !is_release_name(&name) {
            return Err(f.invalid(
                "releaseName",
                "not a Helm release name (at most 53 lowercase letters, digits, '-' and '.')",
            ));
        }
        helm.release_name = Some(name);
    }
    let text = f.string("values")?;
    let mut values = match text {
        Some(text) => parse_values(&f, &text)?,
        None => Map::new(),
    };
    if let Some(object) = f.typed::<Map<String, Value>>("valuesObject", "an object")? {
        // Argo CD: valuesObject takes precedence over values.
        merge(&mut values, object);
    }
    parameters(&mut f, &mut values, notes)?;
    helm.values = (!values.is_empty()).then_some(values);
    f.rest(HELM_REASONS, notes);
    Ok((helm != HelmSource::default()).then_some(helm))
}

/// Argo CD's `helm.parameters` (`--set name=value`, over every other value): plain dotted names
/// become nested values, typed as `--set` types them (unless `forceString`); a name with list
/// indexes or escapes is noted.
fn parameters(
    f: &mut Fields,
    values: &mut Map<String, Value>,
    notes: &mut Vec<Note>,
) -> Result<(), MapError> {
    for (i, p) in f.list("parameters")?.into_iter().enumerate() {
        let mut p = f.element("parameters", i, p)?;
        let name = p.required_string("name")?;
        let value = p.typed::<String>("value", "a string")?.unwrap_or_default();
        let force_string = p.bool("forceString")?.unwrap_or(false);
        p.rest(&[], notes);
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !name.split('.').all(plain) {
            notes.push(f.note(
                &format!("parameters[{i}]"),
                "a name with list indexes or escapes: write it in helm.values",
            ));
            continue;
        }
        let typed = if force_string { Value::String(value) } else { set_value(&value) };
        let mut nested = typed;
        for key in name.rsplit('.') {
            nested = Value::Object(Map::from_iter([(key.to_string(), nested)]));
        }
        if let Value::Object(map) = nested {
            merge(values, map);
        }
    }
    Ok(())
}

/// A `--set` value as Helm types it: true/false, an integer, null, else a string.
fn set_value(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => text.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// Argo CD's `helm.values`: a YAML document in a string.
fn parse_values(f: &Fields, text: &str) -> Result<Map<String, Value>, MapError> {
    let value: Value = serde_saphyr::from_str(text).map_err(|_| {
        f.invalid("values", "not a YAML document (its text is not shown: it may hold secrets)")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(f.invalid("values", "not a YAML mapping")),
    }
}

/// `over` merged into `base`, objects key by key (as Helm merges values).
fn merge(base: &mut Map<String, Value>, over: Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Argo CD's `kustomize` options -> ferry's, `None` when there are none.
fn kustomize(mut f: Fields, notes: &mut Vec<Note>) -> Result<Option<KustomizeSource>, MapError> {
    let mut k = KustomizeSource {
        name_prefix: f.string("namePrefix")?,
        name_suffix: f.string("nameSuffix")?,
        ..Default::default()
    };
    for (i, image) in f.strings("images")?.into_iter().enumerate() {
        k.images.push(image_override(&image).ok_or_else(|| {
            f.invalid(
                &format!("images[{i}]"),
                "not an image override like name=new:tag, name:tag or name@sha256:...",
            )
        })?);
    }
    f.rest(KUSTOMIZE_REASONS, notes);
    Ok((k != KustomizeSource::default()).then_some(k))
}

/// Argo CD's image override (`kustomize edit set image` syntax): `[old=]name[:tag][@digest]`.
fn image_override(text: &str) -> Option<KustomizeImage> {
    let (old, new) = match text.split_once('=') {
        Some((old, new)) => (old, Some(new)),
        None => (text, None),
    };
    let spec = new.unwrap_or(old);
    let (rest, digest) = match spec.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (spec, None),
    };
    // A tag follows the last ':' after the last '/' (a registry may have a port).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
        None => (rest, None),
    };
    let old_name = if new.is_some() { old } else { name };
    if old_name.is_empty() || name.is_empty() {
        return None;
    }
    Some(KustomizeImage {
        name: old_name.to_string(),
        new_name: new.map(|_| name.to_string()).filter(|n| n != old_name),
        new_tag: tag.filter(|t| !t.is_empty()),
        digest: digest.filter(|d| !d.is_empty()),
    })
}

/// Argo CD's `directory` options: `recurse` is what ferry always does.
fn directory(mut f: Fields, notes: &mut Vec<Note>) -> Result<(), MapError> {
    if f.bool("recurse")? == Some(false) {
        notes.push(f.note("recurse", "ferry always reads subdirectories of the path"));
    }
    f.rest(DIRECTORY_REASONS, notes);
    Ok(())
}

/// Argo CD's `sources`: a chart whose values files are `$<ref>/...` of a source with that
/// `ref` becomes ferry's chart with Git values (the common directory of those files as
/// `path`). Any other source beyond the first does not map.
pub(super) fn sources(
    list: Vec<Value>,
    parent: &Fields,
    options: &Options,
    notes: &mut Vec<Note>,
) -> Result<Source, MapError> {
    let mut all = list
        .into_iter()
        .enumerate()
        .map(|(i, v)| Ok((i, parent.element("sources", i, v)?)))
        .collect::<Result<Vec<_>, MapError>>()?;
    let chart_at = all.iter().position(|(_, f)| f.has("chart"));
    let Some(chart_at) = chart_at else {
        if all.is_empty() {
            return Err(MapError::Missing {
                object: parent.object().to_string(),
                field: parent.field("sources[0]"),
            });
        }
        let (_, first) = all.remove(0);
        all.iter().for_each(|(i, _)| notes.push(one_source_note(parent, *i)));
        return source(first, options, notes);
    };
    let (chart_index, chart) = all.remove(chart_at);
    let mut source = source(chart, options, notes)?;
    let values_ref = ref_of(&source);
    let mut git_values = None;
    for (i, mut f) in all {
        let r = f.string("ref")?;
        match (r, &values_ref) {
            (Some(r), Some(wanted)) if &r == wanted && git_values.is_none() => git_values = Some((i, f)),
            _ => notes.push(one_source_note(parent, i)),
        }
    }
    if let Some((_, mut f)) = git_values {
        let repo_url = f.required_string("repoURL")?;
        let revision = f.string("targetRevision")?;
        source.git_ref = Some(git_ref(&f, revision.as_deref(), options, notes));
        source.repo_url = Some(repo_url);
        rebase_values(&mut source, values_ref.as_deref().unwrap_or_default(), chart_index, parent, notes);
        f.rest(&[("path", "the values repository is read at the values files' directory")], notes);
    } else if let Some(helm) =
        source.helm.as_mut().filter(|h| h.values_files.iter().any(|v| v.starts_with('$')))
    {
        helm.values_files.retain(|v| !v.starts_with('$'));
        notes.push(parent.note(
            &format!("sources[{chart_index}].helm.valueFiles"),
            "the $ref values files name no source with that ref: they were dropped",
        ));
    }
    Ok(source)
}

fn one_source_note(parent: &Fields, index: usize) -> Note {
    parent.note(
        &format!("sources[{index}]"),
        "ferry's Application has one source (a chart may take its values from one Git repository); make another Application for it",
    )
}

/// The `ref` name the chart's values files use (`$values/...` -> `values`).
fn ref_of(source: &Source) -> Option<String> {
    let files = &source.helm.as_ref()?.values_files;
    let first = files.iter().find_map(|f| f.strip_prefix('$'))?;
    first.split_once('/').map(|(r, _)| r.to_string())
}

/// `$values/envs/prod/values.yaml` -> `path: envs/prod`, `values.yaml`. A values file of the
/// chart itself cannot be read beside Git values: it is noted and dropped.
fn rebase_values(
    source: &mut Source,
    name: &str,
    chart_index: usize,
    parent: &Fields,
    notes: &mut Vec<Note>,
) {
    let Some(helm) = source.helm.as_mut() else { return };
    let prefix = format!("${name}/");
    let (git, chart): (Vec<String>, Vec<String>) =
        helm.values_files.drain(..).partition(|f| f.starts_with(&prefix));
    if !chart.is_empty() {
        notes.push(parent.note(
            &format!("sources[{chart_index}].helm.valueFiles"),
            "values files of the chart itself do not map beside values from Git: copy them into the Git repository",
        ));
    }
    let git: Vec<String> = git
        .iter()
        .map(|f| f.strip_prefix(&prefix).unwrap_or(f).trim_start_matches("./").to_string())
        .collect();
    let dir = common_dir(&git);
    let under = format!("{dir}/");
    helm.values_files = git
        .iter()
        .map(|f| if dir.is_empty() { f.clone() } else { f.strip_prefix(&under).unwrap_or(f).to_string() })
        .collect();
    source.path = (!dir.is_empty()).then_some(dir);
}

/// The directory every path is under (`a/b/x.yaml`, `a/b/y.yaml` -> `a/b`; none in common: "").
fn common_dir(paths: &[String]) -> String {
    let mut dirs = paths.iter().map(|p| p.rsplit_once('/').map_or("", |(d, _)| d));
    let Some(first) = dirs.next() else { return String::new() };
    let mut common: Vec<&str> = first.split('/').collect();
    for dir in dirs {
        let parts: Vec<&str> = dir.split('/').collect();
        let same = common.iter().zip(&parts).take_while(|(a, b)| a == b).count();
        common.truncate(same);
    }
    common.join("/")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> (Source, Vec<Note>) {
        let mut notes = Vec::new();
        let f = Fields::new("app", "spec.source", Some(value)).unwrap();
        let source = source(f, &Options::default(), &mut notes).unwrap();
        (source, notes)
    }

    #[test]
    fn git_revisions_become_the_ref_kind_they_are() {
        let f = Fields::new("app", "spec.source", None).unwrap();
        let (o, mut notes) = (Options::default(), Vec::new());
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(git_ref(&f, Some(sha), &o, &mut notes).commit.as_deref(), Some(sha));
        assert_eq!(git_ref(&f, Some("v1.2.3"), &o, &mut notes).tag.as_deref(), Some("v1.2.3"));
        assert_eq!(git_ref(&f, Some(">=1.0.0 <2"), &o, &mut notes).semver.as_deref(), Some(">=1.0.0 <2"));
        assert_eq!(git_ref(&f, Some("release-1"), &o, &mut notes).branch.as_deref(), Some("release-1"));
        assert_eq!(git_ref(&f, Some("refs/heads/dev"), &o, &mut notes).branch.as_deref(), Some("dev"));
        assert_eq!(
            git_ref(&f, Some("refs/pull/7/head"), &o, &mut notes).name.as_deref(),
            Some("refs/pull/7/head")
        );
        assert!(notes.is_empty());
        assert_eq!(git_ref(&f, Some("HEAD"), &o, &mut notes).branch.as_deref(), Some("main"));
        assert_eq!(notes.len(), 1, "HEAD is assumed, and said so");
        let chosen = Options { default_branch: Some("trunk".into()) };
        assert_eq!(git_ref(&f, None, &chosen, &mut notes).branch.as_deref(), Some("trunk"));
        assert_eq!(notes.len(), 1, "a chosen default branch is no guess");
    }

    #[test]
    fn image_overrides_in_argo_syntax() {
        let i = image_override("nginx=registry.example.com:5000/nginx:1.25").unwrap();
        assert_eq!(i.name, "nginx");
        assert_eq!(i.new_name.as_deref(), Some("registry.example.com:5000/nginx"));
        assert_eq!(i.new_tag.as_deref(), Some("1.25"));
        let i = image_override("ghcr.io/app:2.0").unwrap();
        assert_eq!((i.name.as_str(), i.new_name, i.new_tag.as_deref()), ("ghcr.io/app", None, Some("2.0")));
        let i = image_override("app@sha256:abc").unwrap();
        assert_eq!(i.digest.as_deref(), Some("sha256:abc"));
        assert!(image_override("=x").is_none());
    }

    #[test]
    fn git_source_with_kustomize_and_notes_for_what_does_not_map() {
        let (s, notes) = map(json!({
            "repoURL": "https://git.example.com/a.git", "targetRevision": "main", "path": "./overlays/prod",
            "kustomize": {"namePrefix": "p-", "images": ["app:2"], "commonLabels": {"a": "b"}}
        }));
        assert_eq!(s.path.as_deref(), Some("overlays/prod"));
        let k = s.kustomize.unwrap();
        assert_eq!(k.name_prefix.as_deref(), Some("p-"));
        assert_eq!(k.images[0].new_tag.as_deref(), Some("2"));
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].field, "spec.source.kustomize.commonLabels");
    }

    #[test]
    fn chart_sources_and_values() {
        let (s, notes) = map(json!({
            "repoURL": "https://charts.example.com", "chart": "podinfo", "targetRevision": "6.5.4",
            "helm": {"releaseName": "web", "values": "replicaCount: 2\nimage: {tag: a}\n", "valuesObject": {"image": {"tag": "b"}}}
        }));
        let chart = s.chart.unwrap();
        assert_eq!(
            (chart.repo_url.as_str(), chart.name.as_str(), chart.version.as_deref()),
            ("https://charts.example.com", "podinfo", Some("6.5.4"))
        );
        let values = s.helm.unwrap().values.unwrap();
        assert_eq!(Value::Object(values), json!({"replicaCount": 2, "image": {"tag": "b"}}));
        assert!(notes.is_empty());
        let (s, notes) = map(json!({
            "repoURL": "https://charts.example.com", "chart": "podinfo",
            "helm": {"values": "service: {type: NodePort}", "parameters": [
                {"name": "service.type", "value": "ClusterIP"}, {"name": "replicaCount", "value": "3"},
                {"name": "image.tag", "value": "1", "forceString": true}, {"name": "a[0].b", "value": "x"}]}
        }));
        let values = Value::Object(s.helm.unwrap().values.unwrap());
        assert_eq!(
            values,
            json!({"service": {"type": "ClusterIP"}, "replicaCount": 3, "image": {"tag": "1"}})
        );
        let fields: Vec<&str> = notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(fields, ["spec.source.helm.parameters[3]"]);
        let (s, _) =
            map(json!({"repoURL": "registry.example.com/charts", "chart": "podinfo", "targetRevision": "*"}));
        let chart = s.chart.unwrap();
        assert_eq!((chart.repo_url.as_str(), chart.version), ("oci://registry.example.com/charts", None));
    }

    #[test]
    fn bad_helm_values_and_release_names_are_errors_not_panics() {
        let f = Fields::new(
            "app",
            "spec.source",
            Some(json!({"repoURL": "https://g/a", "helm": {"values": "a: [", "releaseName": "ok"}})),
        )
        .unwrap();
        let err = source(f, &Options::default(), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("spec.source.helm.values: not a YAML document"), "{err}");
        let f = Fields::new(
            "app",
            "spec.source",
            Some(json!({"repoURL": "https://g/a", "helm": {"releaseName": "Bad_Name"}})),
        )
        .unwrap();
        let err = source(f, &Options::default(), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("spec.source.helm.releaseName: not a Helm release name"), "{err}");
    }

    #[test]
    fn multi_source_chart_with_git_values() {
        let parent = Fields::new("app", "spec", None).unwrap();
        let list = vec![
            json!({"repoURL": "https://charts.example.com", "chart": "podinfo", "targetRevision": "6.5.4",
                   "helm": {"valueFiles": ["$values/envs/prod/values.yaml", "$values/envs/prod/extra.yaml"]}}),
            json!({"repoURL": "https://git.example.com/deploy.git", "targetRevision": "main", "ref": "values"}),
            json!({"repoURL": "https://git.example.com/other.git", "path": "x"}),
        ];
        let mut notes = Vec::new();
        let s = sources(list, &parent, &Options::default(), &mut notes).unwrap();
        assert_eq!(s.repo_url.as_deref(), Some("https://git.example.com/deploy.git"));
        assert_eq!(s.git_ref.unwrap().branch.as_deref(), Some("main"));
        assert_eq!(s.path.as_deref(), Some("envs/prod"));
        assert_eq!(s.helm.unwrap().values_files, ["values.yaml", "extra.yaml"]);
        assert_eq!(notes.iter().map(|n| n.field.as_str()).collect::<Vec<_>>(), ["spec.sources[2]"]);
        assert_eq!(common_dir(&["a/b/x".into(), "a/c/y".into()]), "a");
        let list = vec![
            json!({"repoURL": "https://c", "chart": "c", "helm": {"valueFiles": ["$vals/x.yaml", "own.yaml"]}}),
        ];
        let mut notes = Vec::new();
        let s = sources(list, &parent, &Options::default(), &mut notes).unwrap();
        assert_eq!(s.helm.unwrap().values_files, ["own.yaml"], "no $ref file is left for ferry to refuse");
        assert_eq!(notes[0].field, "spec.sources[0].helm.valueFiles");
        assert_eq!(common_dir(&["x".into()]), "");
    }
}
