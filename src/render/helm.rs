//! `helm template`.
//!
//! Offline and self-contained: charts must vendor their dependencies (`charts/`); ferry never
//! runs `helm dependency update` and gives helm empty cache, config and data directories, so no
//! repository index or plugin from the machine is used. CRDs from the chart's `crds/` directory
//! are included (they are part of what the revision declares); test hooks are left out, since
//! ferry has no step that would run them. Other hooks render as ordinary objects.

use std::path::Path;

use super::{
    error::{Origin, RenderError, Tool},
    parse::{Manifest, parse_yaml},
    paths::RepoRoot,
    tool::{ToolRun, clean_stderr},
};
use crate::api::HelmSource;

pub(crate) struct HelmRender<'a> {
    pub root: &'a RepoRoot,
    /// Canonical chart directory.
    pub dir: &'a Path,
    /// The source path as the user knows it.
    pub shown: &'a str,
    pub options: Option<&'a HelmSource>,
    /// Used when `releaseName` is unset: the Application's name.
    pub default_release: &'a str,
    pub namespace: &'a str,
    pub bin: &'a Path,
    pub timeout: std::time::Duration,
}

impl HelmRender<'_> {
    pub(crate) async fn run(self) -> Result<Vec<Manifest>, RenderError> {
        let defaults = HelmSource::default();
        let opts = self.options.unwrap_or(&defaults);
        super::paths::check_symlinks_under(self.root, self.dir)?;
        // Resolve values files before starting anything: an escaping path is refused outright.
        let values_files = opts
            .values_files
            .iter()
            .map(|f| self.root.resolve_from(self.dir, f, "values file"))
            .collect::<Result<Vec<_>, _>>()?;

        let io = |what: &str| {
            let path = format!("{what} for helm");
            move |cause| RenderError::Io { path, cause }
        };
        let tmp = tempfile::Builder::new().prefix("ferry-helm-").tempdir().map_err(io("temp dir"))?;
        let home = tmp.path().join("home");
        for d in ["home", "cache", "config", "data"] {
            std::fs::create_dir(tmp.path().join(d)).map_err(io("temp dirs"))?;
        }

        let release = opts.release_name.as_deref().unwrap_or(self.default_release);
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            release.into(),
            self.dir.into(),
            "--namespace".into(),
            self.namespace.into(),
            "--include-crds".into(),
            "--skip-tests".into(),
        ];
        for f in &values_files {
            args.push("--values".into());
            args.push(f.into());
        }
        if let Some(values) = opts.values.as_ref().filter(|v| !v.is_empty()) {
            // Inline values go last so they win over every values file, as the API documents.
            let path = tmp.path().join("inline-values.json");
            std::fs::write(&path, serde_json::to_vec(values).expect("JSON values serialize"))
                .map_err(io("inline values"))?;
            args.push("--values".into());
            args.push(path.into());
        }

        let out = ToolRun {
            tool: Tool::Helm,
            bin: self.bin,
            args,
            home: &home,
            env: vec![
                ("HELM_CACHE_HOME", tmp.path().join("cache")),
                ("HELM_CONFIG_HOME", tmp.path().join("config")),
                ("HELM_DATA_HOME", tmp.path().join("data")),
            ],
            timeout: self.timeout,
            shown_path: self.shown,
        }
        .run()
        .await?;
        if !out.success {
            return Err(RenderError::Helm {
                path: self.shown.to_owned(),
                stderr: clean_stderr(
                    // Advice for the helm CLI user, not for someone reading a status.
                    &out.stderr.replace("Use --debug flag to render out invalid YAML", ""),
                    &[
                        (tmp.path().join("inline-values.json").as_path(), "<spec.source.helm.values>"),
                        (self.root.path(), "."),
                        (tmp.path(), "<tmp>"),
                    ],
                ),
            });
        }
        let stdout = String::from_utf8(out.stdout).map_err(|_| RenderError::Helm {
            path: self.shown.to_owned(),
            stderr: "helm printed output that is not UTF-8".into(),
        })?;
        let shown = self.shown.to_owned();
        tokio::task::spawn_blocking(move || parse_helm_output(&shown, &stdout))
            .await
            .expect("parsing does not panic")
    }
}

/// Parses `helm template` output, naming each document after the template that produced it.
///
/// helm prints every document as `---` then `# Source: <chart name>/<path in chart>`; the chart
/// name is the one in Chart.yaml, so it is replaced by the source path to give a path in the
/// repository (`apps/shop/templates/deployment.yaml`). Documents are numbered per template.
pub(crate) fn parse_helm_output(chart_path: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    let mut per_template: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for chunk in split_documents(text) {
        let source = chunk.lines().find_map(|l| l.strip_prefix("# Source: ")).map(str::trim);
        let label = match source {
            Some(src) => {
                let in_chart = src.split_once('/').map_or(src, |(_, rest)| rest);
                if chart_path == "." { in_chart.to_owned() } else { format!("{chart_path}/{in_chart}") }
            }
            None => format!("{chart_path} (helm template output)"),
        };
        let parsed = parse_yaml(&label, chunk).map_err(|e| renumber_error(e, &label, &per_template))?;
        if parsed.is_empty() {
            continue;
        }
        let n = per_template.entry(label).or_insert(0);
        *n += 1;
        for mut m in parsed {
            // Lines count within helm's output, not within the template file; leave them out.
            m.origin = Origin { doc: *n, line: None, ..m.origin };
            out.push(m);
        }
    }
    Ok(out)
}

fn renumber_error(
    e: RenderError,
    label: &str,
    seen: &std::collections::HashMap<String, usize>,
) -> RenderError {
    let doc = seen.get(label).copied().unwrap_or(0) + 1;
    let fix = |origin: Origin| Origin { doc, line: None, ..origin };
    match e {
        RenderError::InvalidYaml { origin, cause } => RenderError::InvalidYaml { origin: fix(origin), cause },
        RenderError::MissingField { origin, field } => {
            RenderError::MissingField { origin: fix(origin), field }
        }
        RenderError::InvalidObject { origin, cause } => {
            RenderError::InvalidObject { origin: fix(origin), cause }
        }
        other => other,
    }
}

/// Splits at lines that are exactly `---`, the separator helm writes.
fn split_documents(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            out.push(&text[start..pos]);
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push(&text[start..]);
    out.into_iter().filter(|c| !c.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "---
# Source: shop/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: shop
---
# Source: shop/templates/workers.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: w1
---
# Source: shop/templates/workers.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: w2
";

    #[test]
    fn documents_are_named_after_their_template() {
        let ms = parse_helm_output("charts/shop", OUTPUT).unwrap();
        let origins: Vec<String> = ms.iter().map(|m| m.origin.to_string()).collect();
        assert_eq!(
            origins,
            [
                "charts/shop/templates/service.yaml (document 1)",
                "charts/shop/templates/workers.yaml (document 1)",
                "charts/shop/templates/workers.yaml (document 2)",
            ]
        );
        let ms = parse_helm_output(".", OUTPUT).unwrap();
        assert_eq!(ms[0].origin.file, "templates/service.yaml");
    }

    #[test]
    fn errors_name_the_template() {
        let bad = OUTPUT.replace("  name: w2\n", "");
        let err = parse_helm_output("charts/shop", &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "charts/shop/templates/workers.yaml (document 2): object has no metadata.name"
        );
    }
}
