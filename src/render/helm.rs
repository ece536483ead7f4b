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
    parse::{Manifest, parse_rendered_yaml},
    paths::RepoRoot,
    sops::AgeKeys,
    tool::{ToolRun, clean_stderr},
};
use crate::api::HelmSource;

pub(crate) struct HelmRender<'a> {
    pub root: &'a RepoRoot,
    /// Canonical chart directory.
    pub dir: &'a Path,
    /// Where `valuesFiles` are read: the chart directory, or for a chart from a repository
    /// with a Git source beside it, the source path in the Git revision.
    pub values: (&'a RepoRoot, &'a Path),
    /// The source path as the user knows it.
    pub shown: &'a str,
    pub options: Option<&'a HelmSource>,
    /// Used when `releaseName` is unset: the Application's name.
    pub default_release: &'a str,
    pub namespace: &'a str,
    pub capabilities: Option<&'a super::Capabilities>,
    pub bin: &'a Path,
    pub timeout: std::time::Duration,
    /// `spec.decryption`'s keys. Templates rarely hold SOPS documents, but the output goes
    /// through the same decryption as every renderer's, so none is ever applied encrypted.
    pub keys: Option<&'a AgeKeys>,
    /// Dependencies fetched from repositories: helm renders a copy of the chart with them in
    /// `charts/` (the snapshot is shared and read-only).
    pub dependencies: &'a [super::FetchedDependency],
    /// Most bytes the renderer may print (`RenderOptions::max_bytes`).
    pub max_bytes: u64,
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
            .map(|f| self.values.0.resolve_from(self.values.1, f, "values file"))
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

        let release = release_name(opts, self.default_release)?;
        // Every value travels inside its flag (`--flag=value`) and the positionals come after
        // `--`, so no text from the spec or the repository can be read by helm as a flag.
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            flag("--namespace", std::ffi::OsStr::new(self.namespace)),
            "--include-crds".into(),
            "--skip-tests".into(),
        ];
        args.extend(self.capabilities.map(|c| c.helm_flags()).unwrap_or_default());
        for f in &values_files {
            args.push(flag("--values", f.as_os_str()));
        }
        if let Some(values) = opts.values.as_ref().filter(|v| !v.is_empty()) {
            // Inline values go last so they win over every values file, as the API documents.
            let path = tmp.path().join("inline-values.json");
            std::fs::write(&path, serde_json::to_vec(values).expect("JSON values serialize"))
                .map_err(io("inline values"))?;
            args.push(flag("--values", path.as_os_str()));
        }
        let chart = if self.dependencies.is_empty() {
            self.dir.to_path_buf()
        } else {
            let composed = tmp.path().join("chart");
            super::dependencies::compose(self.dir, self.dependencies, &composed)
                .map_err(io("the chart and its dependencies"))?;
            composed
        };
        args.extend(["--".into(), release.into(), chart.into()]);

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
            max_stdout: self.max_bytes,
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
                        (self.values.0.path(), "."),
                        (self.root.path(), "<chart>"),
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
        let keys = self.keys.cloned();
        tokio::task::spawn_blocking(move || parse_helm_output(&shown, &stdout, keys.as_ref()))
            .await
            .expect("parsing does not panic")
    }
}

/// `--name=value` as one argument.
fn flag(name: &str, value: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut out = std::ffi::OsString::from(format!("{name}="));
    out.push(value);
    out
}

/// The release name helm is given: `releaseName`, else the Application's name, refused unless
/// it is a name helm itself accepts. The schema refuses a bad `releaseName` already; this check
/// is what protects `ferry diff --file`, which reads an Application no API server has seen.
pub(crate) fn release_name<'a>(opts: &'a HelmSource, default: &'a str) -> Result<&'a str, RenderError> {
    let name = opts.release_name.as_deref().unwrap_or(default);
    if is_release_name(name) {
        Ok(name)
    } else {
        Err(RenderError::InvalidReleaseName { name: name.chars().take(80).collect() })
    }
}

/// Helm's own rule (`chartutil.ValidateReleaseName`): at most 53 characters of DNS-1123
/// subdomain, `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`. The same
/// rule is [`crate::api::RELEASE_NAME_PATTERN`] in the schema. It never starts with `-`.
pub fn is_release_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge) && b.last().is_some_and(edge) && b.iter().all(|c| edge(c) || *c == b'-')
    };
    name.len() <= MAX_RELEASE_NAME && name.split('.').all(label_ok)
}

/// Helm's limit on a release name's length.
pub const MAX_RELEASE_NAME: usize = 53;

/// Parses `helm template` output, naming each document after the template that produced it.
///
/// helm prints every document as `---` then `# Source: <chart name>/<path in chart>`; the chart
/// name is the one in Chart.yaml, so it is replaced by the source path to give a path in the
/// repository (`apps/shop/templates/deployment.yaml`). Documents are numbered per template.
pub(crate) fn parse_helm_output(
    chart_path: &str,
    text: &str,
    keys: Option<&AgeKeys>,
) -> Result<Vec<Manifest>, RenderError> {
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
        let parsed =
            parse_rendered_yaml(&label, chunk, keys).map_err(|e| renumber_error(e, &label, &per_template))?;
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
        RenderError::DecryptionFailed { origin, cause } => {
            RenderError::DecryptionFailed { origin: fix(origin), cause }
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

    /// Issue 19, defect 5: `releaseName` went to helm as a positional argument, so a value
    /// like `--output-dir=/x` was read as a flag.
    #[test]
    fn release_names_are_helms_and_never_flags() {
        for good in ["shop", "a", "shop-2", "my.release", "0abc", &"a".repeat(53)] {
            assert!(is_release_name(good), "{good}");
        }
        let long = "a".repeat(54);
        for bad in [
            "",
            "--output-dir=/tmp/x",
            "--set-file=x=/proc/self/environ",
            "-x",
            "Shop",
            "shop-",
            "-shop",
            "shop..a",
            ".shop",
            "shop_a",
            "sh op",
            "é",
            &long,
        ] {
            assert!(!is_release_name(bad), "{bad}");
        }
        let opts = HelmSource { release_name: Some("--output-dir=/tmp/x".into()), ..Default::default() };
        let err = release_name(&opts, "app").unwrap_err();
        assert_eq!(err.category(), "invalid_release_name");
        assert!(err.to_string().contains("--output-dir=/tmp/x"), "{err}");
        // The Application's name is held to the same rule (`ferry diff --file` reads any name).
        assert!(release_name(&HelmSource::default(), "-x").is_err());
        assert_eq!(release_name(&HelmSource::default(), "app").unwrap(), "app");
    }

    #[test]
    fn flags_carry_their_value_in_one_argument() {
        assert_eq!(flag("--values", std::ffi::OsStr::new("-v.yaml")), "--values=-v.yaml");
    }

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
        let ms = parse_helm_output("charts/shop", OUTPUT, None).unwrap();
        let origins: Vec<String> = ms.iter().map(|m| m.origin.to_string()).collect();
        assert_eq!(
            origins,
            [
                "charts/shop/templates/service.yaml (document 1)",
                "charts/shop/templates/workers.yaml (document 1)",
                "charts/shop/templates/workers.yaml (document 2)",
            ]
        );
        let ms = parse_helm_output(".", OUTPUT, None).unwrap();
        assert_eq!(ms[0].origin.file, "templates/service.yaml");
    }

    #[test]
    fn errors_name_the_template() {
        let bad = OUTPUT.replace("  name: w2\n", "");
        let err = parse_helm_output("charts/shop", &bad, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "charts/shop/templates/workers.yaml (document 2): object has no metadata.name"
        );
    }
}
