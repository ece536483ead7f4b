//! Per-object options that users of Argo CD and Flux already write into their manifests:
//! `argocd.argoproj.io/sync-options`, `argocd.argoproj.io/compare-options` and Flux's
//! `kustomize.toolkit.fluxcd.io/{prune,reconcile,ssa}`. A repository written for either tool then
//! syncs under ferry as it did there.
//!
//! Every option either changes what ferry does (prune, delete, apply mode, dry run, sync status),
//! is accepted as a no-op because ferry already behaves so (`ServerSideApply=true`,
//! `ApplyOutOfSyncOnly=true`, ...), or is refused: an unknown option or value on a rendered object
//! is a validation error naming it, so a typo never silently changes a deploy. The options of a
//! live object (one leaving Git, or of a deleted Application) are read leniently: whatever is
//! recognised counts, the rest is ignored, since there is nothing left to refuse.
//!
//! Pure functions over an object's labels and annotations.

use std::collections::BTreeMap;

pub const ARGO_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
pub const ARGO_COMPARE_OPTIONS: &str = "argocd.argoproj.io/compare-options";
pub const FLUX_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
pub const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
pub const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";

/// Argo CD sync options that ferry accepts without a change in behaviour, with both values:
/// ferry always applies server-side (no client-side validation, no last-applied annotation
/// whose size `Replace=true` works around), applies only what changed, prunes after every
/// apply, creates namespaces only through `spec.destination.createNamespace`, always respects
/// `spec.ignoreDifferences`, and never takes over another Application's objects.
const NO_OPS: &[&str] = &[
    "ServerSideApply",
    "Validate",
    "CreateNamespace",
    "PruneLast",
    "ApplyOutOfSyncOnly",
    "RespectIgnoreDifferences",
    "Replace",
    "FailOnSharedResource",
];

/// Argo CD compare options ferry accepts as no-ops: a difference is always settled by a
/// server-side dry run (mutating webhooks included) before it counts as drift.
const COMPARE_NO_OPS: &[&str] = &["ServerSideDiff", "IncludeMutationWebhook"];

/// How an object is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApplyMode {
    /// Server-side apply, forcing conflicts only on fields ferry applied before.
    #[default]
    Apply,
    /// Server-side apply forcing every conflict (Flux `ssa: Override`).
    Override,
    /// Created when missing, never written once it exists (Flux `ssa: IfNotPresent`).
    IfNotPresent,
    /// Never written, not even created (Flux `ssa: Ignore`, `reconcile: disabled`).
    Skip,
}

/// What an object's annotations (and, for Flux's, labels) ask of ferry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectOptions {
    /// `false`: kept when it leaves Git.
    pub prune: bool,
    /// `false`: kept when the Application is deleted.
    pub delete: bool,
    /// Its kind may be served only later (a CRD another tool installs): no dry run up front,
    /// and the apply waits for its phase.
    pub skip_dry_run_on_missing: bool,
    /// Once out of Git it does not make the Application OutOfSync.
    pub ignore_extraneous: bool,
    pub apply: ApplyMode,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            prune: true,
            delete: true,
            skip_dry_run_on_missing: false,
            ignore_extraneous: false,
            apply: ApplyMode::Apply,
        }
    }
}

/// An option ferry does not know or refuses, with the annotation it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct OptionError {
    pub key: &'static str,
    pub problem: String,
}

/// The options parsed, and what could not be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub options: ObjectOptions,
    pub errors: Vec<OptionError>,
}

type Map = BTreeMap<String, String>;

/// Reads the options of an object from its labels and annotations.
pub fn parse(labels: Option<&Map>, annotations: Option<&Map>) -> Parsed {
    let mut parsed = Parsed::default();
    if let Some(value) = annotations.and_then(|a| a.get(ARGO_SYNC_OPTIONS)) {
        for token in tokens(value) {
            sync_option(&mut parsed, token);
        }
    }
    if let Some(value) = annotations.and_then(|a| a.get(ARGO_COMPARE_OPTIONS)) {
        for token in tokens(value) {
            compare_option(&mut parsed, token);
        }
    }
    // Flux reads its keys from labels and annotations alike; the annotation wins.
    let flux = |key: &str| annotations.and_then(|a| a.get(key)).or_else(|| labels.and_then(|l| l.get(key)));
    if let Some(value) = flux(FLUX_PRUNE) {
        flux_prune(&mut parsed, value);
    }
    if let Some(value) = flux(FLUX_SSA) {
        flux_ssa(&mut parsed, value);
    }
    if let Some(value) = flux(FLUX_RECONCILE) {
        flux_reconcile(&mut parsed, value);
    }
    parsed
}

/// Comma-separated, blanks trimmed, empty entries skipped (as Argo CD reads them).
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

fn sync_option(parsed: &mut Parsed, token: &str) {
    let o = &mut parsed.options;
    match token.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
        Some(("Prune", "false")) => o.prune = false,
        Some(("Delete", "false")) => o.delete = false,
        Some(("Prune" | "Delete", "true")) => {}
        Some(("SkipDryRunOnMissingResource", v @ ("true" | "false"))) => {
            o.skip_dry_run_on_missing = v == "true"
        }
        Some((key, "true" | "false")) if NO_OPS.contains(&key) => {}
        Some(("Prune" | "Delete", "confirm")) => refuse(
            parsed,
            ARGO_SYNC_OPTIONS,
            format!(
                "{token}: ferry asks no confirmation; use Prune=false or Delete=false to keep the object"
            ),
        ),
        Some(("Force", _)) => refuse(
            parsed,
            ARGO_SYNC_OPTIONS,
            format!(
                "{token}: ferry never deletes and recreates an object to apply it; change the immutable field by replacing the object under a new name"
            ),
        ),
        _ => refuse(
            parsed,
            ARGO_SYNC_OPTIONS,
            format!(
                "unknown option {} (ferry knows Prune=false, Delete=false, SkipDryRunOnMissingResource=true and, as no-ops, {}=true|false)",
                shown(token),
                NO_OPS.join("|")
            ),
        ),
    }
}

fn compare_option(parsed: &mut Parsed, token: &str) {
    match token.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
        None if token == "IgnoreExtraneous" => parsed.options.ignore_extraneous = true,
        Some((key, "true" | "false")) if COMPARE_NO_OPS.contains(&key) => {}
        _ => refuse(
            parsed,
            ARGO_COMPARE_OPTIONS,
            format!(
                "unknown option {} (ferry knows IgnoreExtraneous and, as no-ops, {}=true|false)",
                shown(token),
                COMPARE_NO_OPS.join("|")
            ),
        ),
    }
}

fn flux_prune(parsed: &mut Parsed, value: &str) {
    match value.to_ascii_lowercase().as_str() {
        // Flux keeps such objects both when they leave the source and when the Kustomization
        // is deleted.
        "disabled" => (parsed.options.prune, parsed.options.delete) = (false, false),
        "enabled" => {}
        _ => refuse(parsed, FLUX_PRUNE, format!("unknown value {} (disabled or enabled)", shown(value))),
    }
}

fn flux_ssa(parsed: &mut Parsed, value: &str) {
    let mode = match value.to_ascii_lowercase().as_str() {
        "ifnotpresent" => ApplyMode::IfNotPresent,
        "ignore" => ApplyMode::Skip,
        "override" => ApplyMode::Override,
        // Flux's Merge keeps what other managers set: ferry's own way of applying.
        "merge" => ApplyMode::Apply,
        _ => {
            let problem = format!("unknown value {} (IfNotPresent, Ignore, Override or Merge)", shown(value));
            return refuse(parsed, FLUX_SSA, problem);
        }
    };
    if parsed.options.apply != ApplyMode::Skip {
        parsed.options.apply = mode;
    }
}

fn flux_reconcile(parsed: &mut Parsed, value: &str) {
    match value.to_ascii_lowercase().as_str() {
        // Flux neither applies nor prunes such an object (nor deletes it with the Kustomization).
        "disabled" => {
            let o = &mut parsed.options;
            (o.apply, o.prune, o.delete) = (ApplyMode::Skip, false, false);
        }
        "enabled" => {}
        _ => refuse(parsed, FLUX_RECONCILE, format!("unknown value {} (disabled or enabled)", shown(value))),
    }
}

fn refuse(parsed: &mut Parsed, key: &'static str, problem: String) {
    parsed.errors.push(OptionError { key, problem });
}

/// A user's value, quoted and bounded: it lands in conditions and Events.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Map {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn annotated(pairs: &[(&str, &str)]) -> Parsed {
        parse(None, Some(&of(pairs)))
    }

    #[test]
    fn no_annotations_mean_ferrys_defaults() {
        assert_eq!(parse(None, None), Parsed::default());
        let o = ObjectOptions::default();
        assert!(o.prune && o.delete && !o.ignore_extraneous && !o.skip_dry_run_on_missing);
        assert_eq!(o.apply, ApplyMode::Apply);
    }

    #[test]
    fn argo_sync_options_are_comma_separated_and_trimmed() {
        let p = annotated(&[(
            ARGO_SYNC_OPTIONS,
            " Prune=false , Delete=false,,SkipDryRunOnMissingResource=true ",
        )]);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert!(!p.options.prune && !p.options.delete && p.options.skip_dry_run_on_missing);
        let no_ops = annotated(&[(
            ARGO_SYNC_OPTIONS,
            "ServerSideApply=true,Validate=false,CreateNamespace=true,PruneLast=true,ApplyOutOfSyncOnly=true,RespectIgnoreDifferences=true,Replace=true",
        )]);
        assert_eq!(no_ops, Parsed::default());
    }

    #[test]
    fn unknown_or_refused_argo_options_are_errors_naming_them() {
        let p = annotated(&[(ARGO_SYNC_OPTIONS, "Prune=false,Prune=maybe,Frobnicate=true,Force=true")]);
        assert!(!p.options.prune, "what is known still counts (live objects are read leniently)");
        let shown: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("argocd.argoproj.io/sync-options: unknown option \"Prune=maybe\""));
        assert!(shown[1].contains("\"Frobnicate=true\""));
        assert!(shown[2].contains("Force=true: ferry never deletes and recreates"));
        let confirm = annotated(&[(ARGO_SYNC_OPTIONS, "Delete=confirm")]);
        assert!(confirm.errors[0].problem.contains("Delete=false"), "{:?}", confirm.errors);
    }

    #[test]
    fn ignore_extraneous_is_a_compare_option() {
        let p = annotated(&[(ARGO_COMPARE_OPTIONS, "IgnoreExtraneous, ServerSideDiff=true")]);
        assert!(p.errors.is_empty() && p.options.ignore_extraneous);
        let typo = annotated(&[(ARGO_COMPARE_OPTIONS, "IgnoreExtranous")]);
        assert_eq!(typo.errors[0].key, ARGO_COMPARE_OPTIONS);
        assert!(!typo.options.ignore_extraneous);
    }

    #[test]
    fn flux_options_come_from_labels_or_annotations_in_any_case() {
        let from_label = parse(Some(&of(&[(FLUX_PRUNE, "disabled")])), None);
        assert!(!from_label.options.prune && !from_label.options.delete && from_label.errors.is_empty());
        for (value, mode) in [
            ("IfNotPresent", ApplyMode::IfNotPresent),
            ("ignore", ApplyMode::Skip),
            ("Override", ApplyMode::Override),
            ("Merge", ApplyMode::Apply),
        ] {
            assert_eq!(annotated(&[(FLUX_SSA, value)]).options.apply, mode, "{value}");
        }
        let disabled = annotated(&[(FLUX_RECONCILE, "disabled"), (FLUX_SSA, "Override")]);
        let o = disabled.options;
        assert_eq!((o.apply, o.prune, o.delete), (ApplyMode::Skip, false, false), "reconcile: disabled wins");
        // The annotation wins over the label.
        let both = parse(Some(&of(&[(FLUX_SSA, "Ignore")])), Some(&of(&[(FLUX_SSA, "IfNotPresent")])));
        assert_eq!(both.options.apply, ApplyMode::IfNotPresent);
    }

    #[test]
    fn unknown_flux_values_are_errors_and_long_values_are_bounded() {
        for key in [FLUX_PRUNE, FLUX_RECONCILE, FLUX_SSA] {
            let p = annotated(&[(key, "sometimes")]);
            assert_eq!(p.errors.len(), 1, "{key}");
            assert!(p.errors[0].to_string().starts_with(&format!("{key}: unknown value \"sometimes\"")));
        }
        let long = "x".repeat(10_000);
        let p = annotated(&[(FLUX_SSA, &long)]);
        assert!(p.errors[0].problem.len() < 200, "{}", p.errors[0].problem.len());
    }
}
