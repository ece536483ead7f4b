//! Per-object options users already write for Argo CD and Flux (issue 22, part 5), against the
//! real control plane: `argocd.argoproj.io/sync-options` (`Prune=false`, `Delete=false`),
//! `argocd.argoproj.io/compare-options: IgnoreExtraneous`, and Flux's
//! `kustomize.toolkit.fluxcd.io/{prune,reconcile,ssa}`; an unknown option is refused.
//!
//! Everything is observed as a person would: the objects in the cluster (kept by uid, values),
//! the Application's status. "Not corrected" is shown after ferry has demonstrably reconciled
//! again (its reconcile counter moved), never by sleeping.

use serde_json::Value;

use crate::support::{
    Scenario, T, condition, configmap, gadget_crd, meta, summary, wait_reconciles, wait_until,
};

const SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
const COMPARE_OPTIONS: &str = "argocd.argoproj.io/compare-options";
const FLUX_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";

/// A ConfigMap with annotations.
fn annotated(name: &str, annotations: &[(&str, &str)], data: &[(&str, &str)]) -> String {
    let mut text = configmap(name, None, data);
    let lines: String = annotations.iter().map(|(k, v)| format!("    {k}: \"{v}\"\n")).collect();
    let plain = meta(name, None);
    text = text.replacen(&plain, &format!("{plain}  annotations:\n{lines}"), 1);
    text
}

fn uid(s: &Scenario, name: &str) -> Option<String> {
    s.get("configmap", Some(s.ns()), name)
        .map(|cm| cm["metadata"]["uid"].as_str().unwrap_or_default().to_string())
}

fn ready(app: &Value) -> (String, String) {
    let c = condition(app, "Ready").cloned().unwrap_or(Value::Null);
    (c["reason"].as_str().unwrap_or_default().into(), c["message"].as_str().unwrap_or_default().into())
}

#[test]
fn prune_false_and_flux_prune_disabled_keep_objects_that_leave_git() {
    let s = Scenario::new("opt-prune");
    let sha1 = s.commit(
        &[
            ("a.yaml", configmap("a", None, &[("k", "a")])),
            ("argo.yaml", annotated("argo", &[(SYNC_OPTIONS, "Prune=false")], &[("k", "v")])),
            ("flux.yaml", annotated("flux", &[(FLUX_PRUNE, "disabled")], &[("k", "v")])),
            ("paused.yaml", annotated("paused", &[(FLUX_RECONCILE, "disabled")], &[("k", "v")])),
            // Delete=false keeps an object from the deletion of its Application, not from a prune.
            ("nodelete.yaml", annotated("nodelete", &[(SYNC_OPTIONS, "Delete=false")], &[("k", "v")])),
        ],
        "objects with prune options",
    );
    let app = s.create_app(s.default_app("prune").interval("1h"));
    app.wait_synced(&sha1, T);
    let kept = ["argo", "flux"].map(|n| (n, uid(&s, n).unwrap_or_else(|| panic!("{n} was not applied"))));
    assert!(uid(&s, "paused").is_none(), "reconcile: disabled was applied");

    let sha2 = s.remove(&["argo.yaml", "flux.yaml", "nodelete.yaml"], "remove them");
    app.annotate_reconcile_at();
    let status = app.wait_synced(&sha2, T);
    for (name, before) in kept {
        assert_eq!(uid(&s, name).as_ref(), Some(&before), "{name} was pruned; status: {}", summary(&status));
    }
    assert!(uid(&s, "nodelete").is_none(), "Delete=false kept an object from a prune");
    assert!(uid(&s, "a").is_some());
}

#[test]
fn delete_false_and_flux_prune_disabled_survive_the_application() {
    let s = Scenario::new("opt-delete");
    let sha = s.commit(
        &[
            ("plain.yaml", configmap("plain", None, &[("k", "v")])),
            ("argo.yaml", annotated("argo", &[(SYNC_OPTIONS, "Delete=false")], &[("k", "v")])),
            ("flux.yaml", annotated("flux", &[(FLUX_PRUNE, "disabled")], &[("k", "v")])),
            // As in Argo CD, Prune=false does not keep an object when its Application is deleted.
            ("noprune.yaml", annotated("noprune", &[(SYNC_OPTIONS, "Prune=false")], &[("k", "v")])),
        ],
        "objects with delete options",
    );
    let app = s.create_app(s.default_app("doomed").interval("1h"));
    app.wait_synced(&sha, T);
    let kept = ["argo", "flux"].map(|n| (n, uid(&s, n).expect("applied")));

    s.kubectl_ok(&["-n", s.ns(), "delete", "applications.ferry.dev", "doomed", "--wait=false"]);
    wait_until("the Application to be gone", T, || {
        app.get().map_or(Ok(()), |_| Err("still there".to_string()))
    });
    for (name, before) in kept {
        assert_eq!(uid(&s, name).as_ref(), Some(&before), "{name} was deleted with its Application");
    }
    assert!(uid(&s, "plain").is_none(), "plain outlived its Application");
    assert!(uid(&s, "noprune").is_none(), "Prune=false kept an object from the Application's deletion");
}

#[test]
fn reconcile_disabled_and_ssa_ignore_leave_objects_alone() {
    let s = Scenario::new("opt-skip");
    let ns = s.ns().to_string();
    // A ConfigMap someone else created, which Git also describes with ssa: Ignore.
    s.cluster.apply(&configmap("theirs", Some(&ns), &[("k", "theirs")]));
    let sha = s.commit(
        &[
            ("settings.yaml", configmap("settings", None, &[("color", "blue")])),
            ("ignored.yaml", annotated("ignored", &[(FLUX_SSA, "Ignore")], &[("k", "v")])),
            ("theirs.yaml", annotated("theirs", &[(FLUX_SSA, "Ignore")], &[("k", "git")])),
        ],
        "settings and ignored objects",
    );
    let app = s.create_app(s.default_app("skip").interval("2s"));
    app.wait_synced(&sha, T);
    assert!(uid(&s, "ignored").is_none(), "ssa: Ignore was created");
    assert_eq!(s.cm_value("theirs", "k").as_deref(), Some("theirs"), "ssa: Ignore was applied");

    // A person pauses the object in the cluster (as with Flux) and changes it: not corrected,
    // though selfHeal is on and ferry reconciles every 2s.
    s.kubectl_ok(&["-n", &ns, "annotate", "configmap", "settings", &format!("{FLUX_RECONCILE}=disabled")]);
    s.edit_settings_color("red");
    wait_reconciles(&s.ferry, 3.0);
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("red"), "a paused object was corrected");
    let status = app.json();
    assert_eq!(status["status"]["sync"]["status"], "Synced", "{}", summary(&status));
    assert_eq!(s.cm_value("theirs", "k").as_deref(), Some("theirs"));
}

#[test]
fn ssa_if_not_present_creates_once_and_never_overwrites() {
    let s = Scenario::new("opt-once");
    let ns = s.ns().to_string();
    s.cluster.apply(&configmap("existing", Some(&ns), &[("k", "someone's")]));
    let seed = |v: &str| annotated("seed", &[(FLUX_SSA, "IfNotPresent")], &[("k", v)]);
    let sha1 = s.commit(
        &[
            ("seed.yaml", seed("v1")),
            ("existing.yaml", annotated("existing", &[(FLUX_SSA, "IfNotPresent")], &[("k", "git")])),
        ],
        "seeds",
    );
    let app = s.create_app(s.default_app("once").interval("2s"));
    app.wait_synced(&sha1, T);
    assert_eq!(s.cm_value("seed", "k").as_deref(), Some("v1"), "created when missing");
    assert_eq!(
        s.cm_value("existing", "k").as_deref(),
        Some("someone's"),
        "an existing object was overwritten"
    );

    // Changed in the cluster, then in Git: neither is written over the live value.
    s.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "configmap",
        "seed",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"edited"}}"#,
    ]);
    let sha2 =
        s.commit(&[("seed.yaml", seed("v2")), ("new.yaml", configmap("new", None, &[("k", "n")]))], "v2");
    app.wait_synced(&sha2, T);
    wait_reconciles(&s.ferry, 2.0);
    assert_eq!(s.cm_value("new", "k").as_deref(), Some("n"));
    assert_eq!(
        s.cm_value("seed", "k").as_deref(),
        Some("edited"),
        "an IfNotPresent object was written again"
    );

    // Deleted in the cluster: created again, as Git has it now.
    s.kubectl_ok(&["-n", &ns, "delete", "configmap", "seed"]);
    wait_until("seed to be created again", T, || match s.cm_value("seed", "k").as_deref() {
        Some("v2") => Ok(()),
        other => Err(format!("seed is {other:?}")),
    });
}

#[test]
fn ssa_override_forces_a_field_another_manager_owns() {
    let s = Scenario::new("opt-override");
    let ns = s.ns().to_string();
    let forced = |data: &[(&str, &str)]| annotated("forced", &[(FLUX_SSA, "Override")], data);
    let sha1 = s.commit(&[("forced.yaml", forced(&[("k", "v1")]))], "forced");
    let app = s.create_app(s.default_app("override").interval("1h"));
    app.wait_synced(&sha1, T);
    // Another manager sets a field ferry never applied.
    let theirs =
        format!("apiVersion: v1\nkind: ConfigMap\n{}data: {{extra: theirs}}\n", meta("forced", Some(&ns)));
    let run = s
        .cluster
        .kubectl_stdin(&["apply", "--server-side", "--field-manager=other-tool", "-f", "-"], &theirs);
    assert!(run.success, "{}", run.stderr);

    // Git now sets it too: ferry alone would refuse the conflict; Override forces it.
    let sha2 = s.commit(&[("forced.yaml", forced(&[("k", "v1"), ("extra", "git")]))], "git sets extra");
    app.annotate_reconcile_at();
    let status = app.wait_synced(&sha2, T);
    assert_eq!(s.cm_value("forced", "extra").as_deref(), Some("git"), "{}", summary(&status));
}

#[test]
fn ignore_extraneous_out_of_git_does_not_make_the_application_out_of_sync() {
    let s = Scenario::new("opt-extraneous");
    let sha1 = s.commit(
        &[
            ("a.yaml", configmap("a", None, &[("k", "a")])),
            (
                "generated.yaml",
                annotated("generated", &[(COMPARE_OPTIONS, "IgnoreExtraneous")], &[("k", "g")]),
            ),
        ],
        "a and a generated object",
    );
    let app = s.create_app(s.default_app("extraneous").interval("1h"));
    app.wait_synced(&sha1, T);
    let generated = uid(&s, "generated").expect("applied");
    app.patch(&serde_json::json!({"spec": {"syncPolicy": {"automated": false}}}));

    let sha2 = s.remove(&["generated.yaml"], "the generated object leaves Git");
    app.annotate_reconcile_at();
    let status = app.wait_synced(&sha2, T);
    assert_eq!(uid(&s, "generated"), Some(generated), "pruned without automated sync");
    let inventory: Vec<&str> = status["status"]["inventory"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(inventory.contains(&"generated"), "left the inventory: {inventory:?}");
}

#[test]
fn an_unknown_option_is_refused_naming_the_object_and_nothing_is_applied() {
    let s = Scenario::new("opt-unknown");
    let ns = s.ns().to_string();
    let sha = s.commit(
        &[
            ("good.yaml", configmap("good", None, &[("k", "v")])),
            ("bad.yaml", annotated("bad", &[(SYNC_OPTIONS, "Prune=false,Frobnicate=true")], &[("k", "v")])),
            ("typo.yaml", annotated("typo", &[(FLUX_SSA, "IfMissing")], &[("k", "v")])),
        ],
        "an unknown option",
    );
    let app = s.create_app(s.default_app("unknown").interval("1h"));
    let status = app.wait_refused("ValidationFailed", &sha, T);
    let (_, message) = ready(&status);
    for words in [
        format!("ConfigMap {ns}/bad"),
        "Frobnicate=true".into(),
        format!("ConfigMap {ns}/typo"),
        "IfMissing".into(),
    ] {
        assert!(message.contains(&words), "{words:?} not in: {message}");
    }
    assert!(message.contains("nothing was applied"), "{message}");
    assert!(uid(&s, "good").is_none(), "an object was applied though the revision was refused");
}

#[test]
fn skip_dry_run_on_missing_resource_waits_for_its_kind_and_applies_the_rest() {
    let s = Scenario::new("opt-skipdry");
    let ns = s.ns().to_string();
    let group = format!("{ns}.example.com");
    s.delete_later(&["crd", &format!("gadgets.{group}")]);
    let gadget = format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\n  annotations:\n    {SYNC_OPTIONS}: SkipDryRunOnMissingResource=true\nspec: {{size: 1}}\n"
    );
    let sha = s.commit(
        &[("settings.yaml", configmap("settings", None, &[("color", "blue")])), ("gadget.yaml", gadget)],
        "a gadget whose CRD another tool installs",
    );
    let app = s.create_app(s.default_app("skipdry").interval("2s"));
    // Its kind is not served: the rest is applied, and the pass names it.
    let status = app.wait_refused("ValidationFailed", &sha, T);
    let (_, message) = ready(&status);
    assert!(message.contains(&format!("Gadget {ns}/g")), "{message}");
    assert_eq!(s.cm_value("settings", "color").as_deref(), Some("blue"), "{}", summary(&status));

    // Once another tool installs the CRD, the next pass applies it.
    s.cluster.apply(&gadget_crd(&group));
    app.wait_synced(&sha, T);
    let g = s.get(&format!("gadgets.{group}"), Some(&ns), "g").expect("the gadget was applied");
    assert_eq!(g["spec"]["size"], 1);
}
