//! From generators to Applications, as pure functions over plain data: matching pull request
//! refs, selecting Clusters, filling the template, and making names valid DNS labels.

use std::collections::BTreeMap;

use serde_json::Value;

use kube::ResourceExt;

use crate::{
    api::{ApplicationSpec, ApplicationTemplate, Cluster, ClusterSelector, RECONCILE_AT_ANNOTATION},
    source::RemoteRef,
};

/// One parameter set: parameter name -> value.
pub type Params = BTreeMap<String, String>;

/// An Application as the template makes it for one parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: ApplicationSpec,
}

/// The full ref pattern of a `pullRequests` generator: patterns without `refs/` are branches.
pub fn full_pattern(refs: &str) -> String {
    if refs.starts_with("refs/") { refs.to_string() } else { format!("refs/heads/{refs}") }
}

/// One parameter set per advertised ref matching `pattern` (one `*`), ordered by pull request
/// number (then by ref name), so that `maxApplications` keeps the oldest.
pub fn pull_request_params(pattern: &str, refs: &[RemoteRef]) -> Vec<Params> {
    let full = full_pattern(pattern);
    let Some((prefix, suffix)) = full.split_once('*') else { return Vec::new() };
    let mut found: Vec<(Option<u64>, Params)> = refs
        .iter()
        .filter_map(|r| {
            let middle = r.name.strip_prefix(prefix)?.strip_suffix(suffix)?;
            if middle.is_empty() || r.name.ends_with("^{}") {
                return None;
            }
            let number = middle.parse::<u64>().ok().filter(|_| middle.bytes().all(|b| b.is_ascii_digit()));
            let branch = r
                .name
                .strip_prefix("refs/heads/")
                .or_else(|| r.name.strip_prefix("refs/"))
                .unwrap_or(&r.name)
                .to_string();
            let sha = r.commit().to_string();
            let mut p = Params::new();
            p.insert("number".into(), number.map(|n| n.to_string()).unwrap_or_default());
            p.insert("branchSlug".into(), dns_label(&branch));
            p.insert("branch".into(), branch);
            p.insert("ref".into(), r.name.clone());
            p.insert("shortSha".into(), sha.chars().take(7).collect());
            p.insert("sha".into(), sha);
            Some((number, p))
        })
        .collect();
    found.sort_by(|(na, pa), (nb, pb)| {
        let by_number = match (na, nb) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_number.then_with(|| pa["ref"].cmp(&pb["ref"]))
    });
    found.into_iter().map(|(_, p)| p).collect()
}

/// One parameter set per Cluster whose labels `selector` matches, by name, with the parameters
/// Argo CD's cluster generator gives: `name`, `nameNormalized` (a DNS label) and
/// `metadata.labels.<key>` for each label.
pub fn cluster_params(selector: &ClusterSelector, clusters: &[Cluster]) -> Vec<Params> {
    let mut selected: Vec<&Cluster> =
        clusters.iter().filter(|c| super::selector::matches(selector, c.labels())).collect();
    selected.sort_by_key(|c| c.name_any());
    selected
        .into_iter()
        .map(|c| {
            let name = c.name_any();
            let mut p = Params::new();
            p.insert("nameNormalized".into(), dns_label(&name));
            p.insert("name".into(), name);
            for (key, value) in c.labels() {
                p.insert(format!("metadata.labels.{key}"), value.clone());
            }
            p
        })
        .collect()
}

/// A parameter set the template cannot turn into an Application.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{text:?} opens {{{{ without closing it")]
    Unclosed { text: String },
    /// A name the parameter set lacks; `known`: the ones it has.
    #[error("unknown parameter {{{{{key}}}}} in {text:?}; this generator provides: {}", known.join(", "))]
    UnknownParameter { key: String, text: String, known: Vec<String> },
    #[error("the template's name {name:?} has no character usable in a DNS label")]
    NoDnsLabel { name: String },
    #[error("the template's spec for Application {name} is not a valid Application spec: {source}")]
    InvalidSpec { name: String, source: serde_json::Error },
}

/// Replaces every `{{ name }}` in `text`. A name the parameter set lacks is an error listing
/// the ones it has, since an empty replacement would silently merge Applications.
pub fn substitute(text: &str, params: &Params) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed { text: text.to_string() });
        };
        let key = after[..end].trim();
        match params.get(key) {
            Some(value) => out.push_str(value),
            None => {
                return Err(TemplateError::UnknownParameter {
                    key: key.to_string(),
                    text: text.to_string(),
                    known: params.keys().cloned().collect(),
                });
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_value(value: &Value, params: &Params) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => Value::String(substitute(s, params)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute_value(v, params)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((substitute(k, params)?, substitute_value(v, params)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// The Application the template makes for `params`, its spec checked against the Application
/// type (the API server checks the rest of the schema when it is applied).
pub fn generate(template: &ApplicationTemplate, params: &Params) -> Result<Generated, TemplateError> {
    let raw_name = substitute(&template.metadata.name, params)?;
    let name = dns_label(&raw_name);
    if name.is_empty() {
        return Err(TemplateError::NoDnsLabel { name: raw_name });
    }
    let map = |m: &BTreeMap<String, String>| -> Result<BTreeMap<String, String>, TemplateError> {
        m.iter().map(|(k, v)| Ok((substitute(k, params)?, substitute(v, params)?))).collect()
    };
    let spec = substitute_value(&Value::Object(template.spec.clone()), params)?;
    let spec: ApplicationSpec = serde_json::from_value(spec)
        .map_err(|source| TemplateError::InvalidSpec { name: name.clone(), source })?;
    let mut annotations = map(&template.metadata.annotations)?;
    // A pull request's new commit is a sync request for its Application, as a webhook would
    // be: without it the Application would see the commit only at its own interval.
    if let Some(sha) = params.get("sha") {
        annotations.insert(RECONCILE_AT_ANNOTATION.to_string(), sha.clone());
    }
    Ok(Generated { name, labels: map(&template.metadata.labels)?, annotations, spec })
}

/// `text` as a DNS label (RFC 1123): lowercase letters, digits and `-`, starting and ending
/// with a letter or digit, at most 63 characters. Anything else becomes `-` (runs collapse).
/// A name cut to fit gets a hash of the whole, so two long names stay distinct.
pub fn dns_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.len() <= 63 {
        return trimmed.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hash: String = digest.as_ref().iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", trimmed[..54].trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn remote(name: &str, sha: char) -> RemoteRef {
        RemoteRef { name: name.into(), target: sha.to_string().repeat(40), peeled: None }
    }

    #[test]
    fn github_pull_refs_give_number_branch_and_sha_in_number_order() {
        let refs = [
            remote("refs/heads/main", 'a'),
            remote("refs/pull/12/head", 'b'),
            remote("refs/pull/7/head", 'c'),
            remote("refs/pull/7/merge", 'd'),
        ];
        let params = pull_request_params("refs/pull/*/head", &refs);
        assert_eq!(params.len(), 2);
        assert_eq!(params[0]["number"], "7");
        assert_eq!(params[0]["branch"], "pull/7/head");
        assert_eq!(params[0]["branchSlug"], "pull-7-head");
        assert_eq!(params[0]["ref"], "refs/pull/7/head");
        assert_eq!(params[0]["sha"], "c".repeat(40));
        assert_eq!(params[0]["shortSha"], "ccccccc");
        assert_eq!(params[1]["number"], "12");
    }

    #[test]
    fn gitlab_refs_and_branch_globs_match_too() {
        let refs = [remote("refs/merge-requests/3/head", 'a'), remote("refs/heads/preview/Login_Page", 'b')];
        let gitlab = pull_request_params("refs/merge-requests/*/head", &refs);
        assert_eq!(gitlab.len(), 1);
        assert_eq!(gitlab[0]["number"], "3");
        let branches = pull_request_params("preview/*", &refs);
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0]["branch"], "preview/Login_Page");
        assert_eq!(branches[0]["branchSlug"], "preview-login-page");
        assert_eq!(branches[0]["number"], "");
    }

    fn cluster(name: &str, env: &str) -> Cluster {
        serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": "team", "labels": {"env": env, "region": "eu"}},
            "spec": {"kubeConfig": {"secretRef": {"name": format!("{name}-kubeconfig")}}}
        }))
        .unwrap()
    }

    #[test]
    fn clusters_give_their_name_and_labels_as_argo_cd_names_them() {
        let clusters = [cluster("prod.b", "prod"), cluster("staging", "staging"), cluster("prod-a", "prod")];
        let prod = ClusterSelector {
            match_labels: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        };
        let params = cluster_params(&prod, &clusters);
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["prod-a", "prod.b"]);
        assert_eq!(params[1]["nameNormalized"], "prod-b");
        assert_eq!(params[1]["metadata.labels.env"], "prod");
        assert_eq!(params[1]["metadata.labels.region"], "eu");
        assert_eq!(cluster_params(&ClusterSelector::default(), &clusters).len(), 3);

        let template: ApplicationTemplate = serde_json::from_value(json!({
            "metadata": {"name": "web-{{nameNormalized}}"},
            "spec": {
                "source": {"repoURL": "https://git.example.com/app.git", "ref": {"branch": "main"}, "path": "{{metadata.labels.env}}"},
                "destination": {"cluster": "{{name}}", "namespace": "web"}
            }
        }))
        .unwrap();
        let generated = generate(&template, &params[1]).unwrap();
        assert_eq!(generated.name, "web-prod-b");
        assert_eq!(generated.spec.source.path.as_deref(), Some("prod"));
        assert_eq!(generated.spec.destination.unwrap().cluster.as_deref(), Some("prod.b"));
    }

    #[test]
    fn substitution_fills_parameters_and_refuses_unknown_ones() {
        let p: Params = [("number".to_string(), "7".to_string())].into();
        assert_eq!(substitute("preview-{{number}}-{{ number }}", &p).unwrap(), "preview-7-7");
        let err = substitute("x-{{sha}}", &p).unwrap_err().to_string();
        assert!(err.contains("{{sha}}") && err.contains("number"), "{err}");
        assert_eq!(err, r#"unknown parameter {{sha}} in "x-{{sha}}"; this generator provides: number"#);
        assert!(substitute("x-{{number", &p).is_err());
        assert_eq!(
            substitute("x-{{number", &p).unwrap_err().to_string(),
            r#""x-{{number" opens {{ without closing it"#
        );
        assert_eq!(substitute("plain", &p).unwrap(), "plain");
    }

    #[test]
    fn names_become_dns_labels_and_long_ones_stay_distinct() {
        assert_eq!(dns_label("Preview/Feature_X--1"), "preview-feature-x-1");
        assert_eq!(dns_label("--a--"), "a");
        let long_a = dns_label(&format!("preview-{}-a", "x".repeat(80)));
        let long_b = dns_label(&format!("preview-{}-b", "x".repeat(80)));
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
        assert!(long_a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn the_template_makes_a_checked_application() {
        let template: ApplicationTemplate = serde_json::from_value(json!({
            "metadata": {"name": "Preview-{{number}}", "labels": {"pr": "{{number}}"}},
            "spec": {
                "source": {"repoURL": "https://git.example.com/app.git", "ref": {"name": "{{ref}}"}, "path": "deploy"},
                "destination": {"namespace": "preview-{{number}}", "createNamespace": true}
            }
        }))
        .unwrap();
        let params = pull_request_params("refs/pull/*/head", &[remote("refs/pull/7/head", 'c')]);
        let generated = generate(&template, &params[0]).unwrap();
        assert_eq!(generated.name, "preview-7");
        assert_eq!(generated.labels["pr"], "7");
        assert_eq!(generated.annotations[RECONCILE_AT_ANNOTATION], "c".repeat(40));
        assert_eq!(
            generated.spec.source.git_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("refs/pull/7/head")
        );
        let dest = generated.spec.destination.unwrap();
        assert_eq!(dest.namespace.as_deref(), Some("preview-7"));
        assert!(dest.create_namespace);

        let broken: ApplicationTemplate =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"source": 3}})).unwrap();
        let err = generate(&broken, &params[0]).unwrap_err().to_string();
        assert!(err.contains("not a valid Application spec"), "{err}");
    }
}
