//! An Argo CD `ApplicationSet` -> a ferry ApplicationSet, where ferry's generators express it:
//! `list` maps (string values), `pullRequest` of GitHub maps to ferry's `pullRequests` over the
//! Git protocol; the template's spec maps as an Application's (see `argo.rs`). Go templates of
//! the plain `{{.param}}` form become ferry's `{{param}}`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Imported, MapError, Note, Options, Output, Upstream, argo, fields::Fields, metadata};
use crate::api::{
    ApplicationSet, ApplicationSetSpec, ApplicationTemplate, Generator, ListGenerator, PullRequestGenerator,
    TemplateMetadata,
};

const SET_REASONS: &[(&str, &str)] = &[
    ("syncPolicy", "ferry deletes a generated Application when its parameters go, and never otherwise"),
    ("strategy", "ferry updates generated Applications together"),
    ("preservedFields", "ferry owns the generated Applications' spec, labels and annotations"),
    ("templatePatch", "ferry's template has no patch"),
    ("ignoreApplicationDifferences", "ferry owns the generated Applications' spec"),
    ("goTemplateOptions", "ferry's templates are plain {{param}} substitutions"),
    ("applyNestedSelectors", "ferry has no matrix or merge generators"),
];
const GENERATOR_REASONS: &[(&str, &str)] = &[
    ("clusters", "ferry deploys to the cluster it runs in"),
    ("git", "ferry has no Git directory or file generator"),
    ("matrix", "ferry takes the union of its generators, not products"),
    ("merge", "ferry takes the union of its generators"),
    ("scmProvider", "ferry has no SCM provider generator"),
    ("clusterDecisionResource", "ferry deploys to the cluster it runs in"),
    ("plugin", "ferry has no generator plugins"),
    ("selector", "ferry's generators have no selector"),
];

/// The most parameter sets a ferry `list` generator holds.
const MAX_ELEMENTS: usize = 100;

/// Maps one Argo CD ApplicationSet.
pub(super) fn import(object: &Upstream, options: &Options) -> Result<Imported, MapError> {
    let mut notes = Vec::new();
    let mut f = Fields::new(&object.id.to_string(), "spec", Some(object.spec.clone()))?;
    let go_template = f.bool("goTemplate")?.unwrap_or(false);
    let mut generators = Vec::new();
    for (i, g) in f.list("generators")?.into_iter().enumerate() {
        generators.extend(generator(f.element("generators", i, g)?, &mut notes)?);
    }
    let raw = f.raw("template");
    let raw = if go_template { raw.map(|t| plain_template(t, &f, &mut notes)) } else { raw };
    let pull_requests = generators.iter().any(|g| g.pull_requests.is_some());
    let raw = if pull_requests { raw.map(|t| pull_request_params(t, &f, &mut notes)) } else { raw };
    let template = template(Fields::new(f.object(), &f.field("template"), raw)?, options, &mut notes)?;
    f.rest(SET_REASONS, &mut notes);
    if generators.is_empty() {
        return Err(f.invalid("generators", "none of them is one ferry has (list, or pullRequest of GitHub)"));
    }
    let elements: usize = generators.iter().filter_map(|g| g.list.as_ref()).map(|l| l.elements.len()).sum();
    let spec = ApplicationSetSpec {
        generators,
        template,
        max_applications: elements.clamp(50, 1000) as u32,
        strategy: None,
    };
    let set = ApplicationSet { metadata: metadata(object), spec, status: None };
    Ok(Imported {
        from: object.id.clone(),
        joined: Vec::new(),
        output: Some(Output::ApplicationSet(Box::new(set))),
        notes,
    })
}

/// One generator, when ferry has it.
fn generator(mut f: Fields, notes: &mut Vec<Note>) -> Result<Option<Generator>, MapError> {
    let list = if f.has("list") { Some(list(f.nested("list")?, notes)?) } else { None };
    let pull = if f.has("pullRequest") { pull_request(f.nested("pullRequest")?, notes)? } else { None };
    f.rest(GENERATOR_REASONS, notes);
    Ok(match (list, pull) {
        (Some(list), _) => Some(Generator { pull_requests: None, list: Some(list), clusters: None }),
        (None, Some(pr)) => Some(Generator { pull_requests: Some(pr), list: None, clusters: None }),
        (None, None) => None,
    })
}

/// `list.elements`: each element's values as strings (numbers and booleans written out).
fn list(mut f: Fields, notes: &mut Vec<Note>) -> Result<ListGenerator, MapError> {
    let mut elements = Vec::new();
    for (i, e) in f.list("elements")?.into_iter().enumerate() {
        let mut element = BTreeMap::new();
        let Value::Object(map) = e else {
            return Err(f.invalid(&format!("elements[{i}]"), "not an object"));
        };
        for (key, value) in map {
            match value {
                Value::String(s) => element.insert(key, s),
                Value::Number(n) => element.insert(key, n.to_string()),
                Value::Bool(b) => element.insert(key, b.to_string()),
                _ => {
                    notes.push(f.note(
                        &format!("elements[{i}].{key}"),
                        "ferry's parameters are strings, not lists or objects",
                    ));
                    continue;
                }
            };
        }
        elements.push(element);
    }
    if elements.is_empty() || elements.len() > MAX_ELEMENTS {
        return Err(
            f.invalid("elements", format!("ferry's list generator takes 1 to {MAX_ELEMENTS} elements"))
        );
    }
    f.rest(
        &[
            ("elementsYaml", "write the elements out"),
            ("template", "ferry's generators share the set's template"),
        ],
        notes,
    );
    Ok(ListGenerator { elements })
}

/// `pullRequest.github` -> `pullRequests` over the Git protocol (every open pull request's
/// head ref; labels and API filters do not map).
fn pull_request(mut f: Fields, notes: &mut Vec<Note>) -> Result<Option<PullRequestGenerator>, MapError> {
    let mut github = f.nested("github")?;
    let owner = github.string("owner")?;
    let repo = github.string("repo")?;
    let api = github.string("api")?;
    github.rest(
        &[
            (
                "tokenRef",
                "ferry lists pull request refs through Git: set secretRef to a Secret with Git credentials",
            ),
            (
                "appSecretName",
                "ferry lists pull request refs through Git: set secretRef to a Secret with Git credentials",
            ),
            ("labels", "ferry makes an Application for every open pull request"),
        ],
        notes,
    );
    let seconds = f.typed::<u64>("requeueAfterSeconds", "a number of seconds")?;
    f.rest(&[("gitlab", "write a pullRequests generator with refs: refs/merge-requests/*/head by hand (ferry needs the repository URL)")], notes);
    let (Some(owner), Some(repo)) = (owner, repo) else { return Ok(None) };
    if api.is_some_and(|a| !a.trim_end_matches('/').ends_with("api.github.com")) {
        notes.push(f.note(
            "github.api",
            "GitHub Enterprise: set the generator's repoURL to the repository's Git URL",
        ));
    }
    let interval =
        seconds.filter(|s| (1..=3600).contains(s)).map_or_else(|| "1m".to_string(), |s| format!("{s}s"));
    Ok(Some(PullRequestGenerator {
        repo_url: format!("https://github.com/{owner}/{repo}.git"),
        refs: "refs/pull/*/head".into(),
        secret_ref: None,
        interval,
    }))
}

/// Argo CD's pull request parameters that ferry has under another name.
const RENAMED_PARAMS: [(&str, &str); 3] =
    [("head_sha", "sha"), ("head_short_sha", "shortSha"), ("branch_slug", "branchSlug")];

/// Argo CD's pull request parameters that ferry lacks (ferry's `branch` is `pull/<n>/head`,
/// not the pull request's branch).
const MISSING_PARAMS: [&str; 8] = [
    "branch",
    "target_branch",
    "target_branch_slug",
    "head_short_sha_7",
    "labels",
    "author",
    "title",
    "author_slug",
];

/// The template with Argo CD's pull request parameters renamed to ferry's; those ferry lacks
/// are noted.
fn pull_request_params(template: Value, f: &Fields, notes: &mut Vec<Note>) -> Value {
    let mut text = serde_json::to_string(&template).unwrap_or_default();
    for (argo, ferry) in RENAMED_PARAMS {
        text = text.replace(&format!("{{{{{argo}}}}}"), &format!("{{{{{ferry}}}}}"));
    }
    let missing: Vec<&str> =
        MISSING_PARAMS.into_iter().filter(|p| text.contains(&format!("{{{{{p}}}}}"))).collect();
    if !missing.is_empty() {
        notes.push(f.note(
            "template",
            format!(
                "the pull request parameters {} do not map: ferry's are number, branch (pull/<n>/head), branchSlug, ref, sha and shortSha",
                missing.join(", ")
            ),
        ));
    }
    serde_json::from_str(&text).unwrap_or(template)
}

/// The template: its metadata, and its spec mapped as an Application's.
fn template(
    mut f: Fields,
    options: &Options,
    notes: &mut Vec<Note>,
) -> Result<ApplicationTemplate, MapError> {
    let mut m = f.nested("metadata")?;
    let name = m.required_string("name")?;
    let labels = m.typed::<BTreeMap<String, String>>("labels", "a map of strings")?.unwrap_or_default();
    let annotations =
        m.typed::<BTreeMap<String, String>>("annotations", "a map of strings")?.unwrap_or_default();
    let finalizers = m.strings("finalizers")?;
    m.rest(&[("namespace", "ferry generates Applications in the set's namespace")], notes);
    let spec = argo::spec(f.nested("spec")?, &finalizers, options, notes)?;
    f.rest(&[], notes);
    Ok(ApplicationTemplate {
        metadata: TemplateMetadata { name, labels, annotations },
        spec: argo::spec_json(&spec),
    })
}

/// A Go template's `{{.param}}` (and `{{ .param }}`) -> ferry's `{{param}}`, in every string;
/// anything else inside `{{ }}` (functions, pipelines) is noted.
fn plain_template(value: Value, f: &Fields, notes: &mut Vec<Note>) -> Value {
    let mut complex = false;
    let out = rewrite(value, &mut complex);
    if complex {
        notes.push(f.note(
            "template",
            "Go template functions and pipelines do not map: ferry substitutes {{param}} only",
        ));
    }
    out
}

fn rewrite(value: Value, complex: &mut bool) -> Value {
    match value {
        Value::String(s) => Value::String(rewrite_text(&s, complex)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| rewrite(v, complex)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, rewrite(v, complex))).collect()),
        other => other,
    }
}

fn rewrite_text(text: &str, complex: &mut bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + len].trim();
        match inner
            .strip_prefix('.')
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            Some(param) => out.push_str(&format!("{{{{{param}}}}}")),
            None => {
                *complex = true;
                out.push_str(&rest[start..start + len + 2]);
            }
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::import::{Kind, ObjectRef};

    fn set(spec: Value) -> Upstream {
        Upstream {
            id: ObjectRef {
                kind: Kind::ArgoApplicationSet,
                namespace: Some("argocd".into()),
                name: "envs".into(),
            },
            labels: Default::default(),
            finalizers: Vec::new(),
            spec,
        }
    }

    fn template_spec() -> Value {
        json!({
            "metadata": {"name": "{{cluster}}-guestbook"},
            "spec": {"project": "default",
                     "source": {"repoURL": "https://git.example.com/a.git", "targetRevision": "main", "path": "envs/{{cluster}}"},
                     "destination": {"server": "{{url}}", "namespace": "guestbook-{{cluster}}"}}
        })
    }

    #[test]
    fn list_generator_and_template_map() {
        let object = set(json!({
            "generators": [{"list": {"elements": [{"cluster": "dev", "url": "https://kubernetes.default.svc", "replicas": 2, "extra": {"a": 1}}]}}],
            "template": template_spec()
        }));
        let imported = import(&object, &Options::default()).unwrap();
        let Some(Output::ApplicationSet(set)) = &imported.output else { panic!("no set") };
        let element = &set.spec.generators[0].list.as_ref().unwrap().elements[0];
        assert_eq!(element["replicas"], "2");
        assert!(!element.contains_key("extra"));
        assert_eq!(set.spec.template.metadata.name, "{{cluster}}-guestbook");
        assert_eq!(set.spec.template.spec["source"]["path"], "envs/{{cluster}}");
        let fields: Vec<&str> = imported.notes.iter().map(|n| n.field.as_str()).collect();
        assert!(fields.contains(&"spec.generators[0].list.elements[0].extra"), "{fields:?}");
        assert!(fields.contains(&"spec.template.spec.destination.server"), "{fields:?}");
    }

    #[test]
    fn go_templates_and_generators_ferry_lacks() {
        let mut complex = false;
        assert_eq!(rewrite_text("{{ .cluster }}-{{.name}}", &mut complex), "{{cluster}}-{{name}}");
        assert!(!complex);
        assert_eq!(rewrite_text("{{ .a | upper }} {{", &mut complex), "{{ .a | upper }} {{");
        assert!(complex);
        let object = set(json!({"generators": [{"clusters": {}}], "template": template_spec()}));
        let err = import(&object, &Options::default()).unwrap_err().to_string();
        assert!(err.contains("spec.generators: none of them is one ferry has"), "{err}");
        let object = set(
            json!({"generators": [{"pullRequest": {"github": {"owner": "o", "repo": "r", "labels": ["x"]}}}], "template": template_spec()}),
        );
        let imported = import(&object, &Options::default()).unwrap();
        let Some(Output::ApplicationSet(mapped)) = &imported.output else { panic!("no set") };
        assert_eq!(
            mapped.spec.generators[0].pull_requests.as_ref().unwrap().repo_url,
            "https://github.com/o/r.git"
        );
        let mut t = template_spec();
        t["metadata"]["name"] = json!("preview-{{number}}-{{head_short_sha}}");
        t["spec"]["source"]["targetRevision"] = json!("{{head_sha}}");
        t["spec"]["source"]["path"] = json!("{{branch}}");
        let object = set(
            json!({"generators": [{"pullRequest": {"github": {"owner": "o", "repo": "r"}}}], "template": t}),
        );
        let imported = import(&object, &Options::default()).unwrap();
        let Some(Output::ApplicationSet(set)) = &imported.output else { panic!("no set") };
        assert_eq!(set.spec.template.metadata.name, "preview-{{number}}-{{shortSha}}");
        assert_eq!(set.spec.template.spec["source"]["ref"]["name"], "{{ref}}");
        assert!(
            imported.notes.iter().any(|n| n.why.contains("parameters branch do not map")),
            "{:?}",
            imported.notes
        );
    }
}
