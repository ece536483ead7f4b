//! `ferry diff` (issue 9) against the real cluster and a real Git server: what syncing a branch
//! or a local checkout would change, through server-side dry runs, with exit codes 0/1/2.

use std::process::Command;

use serde_json::Value;

use crate::support::{Scenario, T, configmap, deployment, ferry_diff};

fn secret(value_b64: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {value_b64}\n  user: YWRtaW4=\n"
    )
}

/// The changed lines of one object's section of a text report.
fn changed_lines<'a>(report: &'a str, title: &str) -> Vec<&'a str> {
    let start =
        report.find(&format!("=== {title}")).unwrap_or_else(|| panic!("no section {title} in:\n{report}"));
    report[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("==="))
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
        })
        .collect()
}

#[test]
fn ferry_diff_shows_what_a_branch_or_a_checkout_would_change() {
    let s = Scenario::with_ferry_args("diff", &[]);
    let ns = s.ns().to_string();
    let sha = s.commit_in(
        "app",
        &[
            ("config.yaml", configmap("settings", None, &[("color", "blue")])),
            ("web.yaml", deployment("web", None, "registry.example/web:1.0", 1)),
            ("secret.yaml", secret("c2VjcmV0MQ==")),
        ],
        "v1",
    );
    let app = s.create_app(s.default_app("web"));
    app.wait_synced(&sha, T);

    // Nothing to do: everything the API server defaulted on the Deployment matches.
    let (code, out, err) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "main"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 to create, 0 to change, 0 to prune, 3 unchanged"), "{out}");

    // A pull request: a new tag, a new ConfigMap, a changed Secret, the old ConfigMap removed.
    s.git.commit_files(
        "pr",
        &[
            ("app/web.yaml", &deployment("web", None, "registry.example/web:1.1", 1)),
            ("app/extra.yaml", &configmap("extra", None, &[("k", "v")])),
            ("app/secret.yaml", &secret("c2VjcmV0Mg==")),
        ],
        "pr",
    );
    s.git.remove_files("pr", &["app/config.yaml"], "drop settings");
    let (code, out, err) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "pr"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 to create, 2 to change, 1 to prune, 0 unchanged"), "{out}");
    let web = changed_lines(&out, &format!("Deployment {ns}/web"));
    assert_eq!(web.len(), 2, "only the image line changes: {web:?}\n{out}");
    assert!(web[0].starts_with('-') && web[0].ends_with("registry.example/web:1.0"), "{web:?}");
    assert!(web[1].starts_with('+') && web[1].ends_with("registry.example/web:1.1"), "{web:?}");
    let db = changed_lines(&out, &format!("Secret {ns}/db"));
    assert_eq!(db, vec!["-  password: <redacted>", "+  password: <redacted (changed)>"], "{out}");
    for value in ["c2VjcmV0MQ==", "c2VjcmV0Mg==", "YWRtaW4="] {
        assert!(!out.contains(value), "a Secret value in the diff: {out}");
    }
    assert!(
        changed_lines(&out, &format!("ConfigMap {ns}/extra")).iter().any(|l| l.contains("k: v")),
        "{out}"
    );
    assert!(
        changed_lines(&out, &format!("ConfigMap {ns}/settings")).iter().all(|l| l.starts_with('-')),
        "{out}"
    );

    // The same as markdown (a PR comment) and JSON (for tools).
    let (code, md, _) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "pr", "--output", "markdown"]);
    assert_eq!(code, 1);
    assert!(
        md.contains(&format!("<details><summary>change <code>Deployment {ns}/web</code></summary>")),
        "{md}"
    );
    assert!(md.contains("```diff\n"), "{md}");
    let (code, js, _) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "pr", "-o", "json"]);
    assert_eq!(code, 1);
    let js: Value = serde_json::from_str(&js).unwrap_or_else(|e| panic!("not JSON ({e}): {js}"));
    assert_eq!(
        (js["summary"]["create"].clone(), js["summary"]["change"].clone()),
        (1.into(), 2.into()),
        "{js}"
    );
    assert_eq!(js["summary"]["prune"], 1, "{js}");

    // A local checkout of the branch says the same.
    let dir = tempfile::tempdir().unwrap();
    let clone = Command::new("git")
        .args(["clone", "-q", "-b", "pr", &s.git.url(), &dir.path().join("repo").to_string_lossy()])
        .output()
        .expect("git clone");
    assert!(clone.status.success(), "{}", String::from_utf8_lossy(&clone.stderr));
    let local = dir.path().join("repo");
    let (code, out, err) = ferry_diff(&s, &["web", "-n", &ns, "--local", &local.to_string_lossy()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 to create, 2 to change, 1 to prune"), "{out}");

    // An Application that does not exist yet (--file).
    s.commit_in("other", &[("cm.yaml", configmap("other", None, &[("a", "b")]))], "other");
    let file = dir.path().join("application.yaml");
    std::fs::write(&file, s.application("other").path("other").to_yaml()).unwrap();
    let (code, out, err) = ferry_diff(&s, &["--file", &file.to_string_lossy(), "--revision", "main"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 to create, 0 to change, 0 to prune"), "{out}");

    // A render error: one line, exit 2.
    s.git.commit_files("broken", &[("app/bad.yaml", "kind: [unclosed")], "broken");
    let (code, out, err) = ferry_diff(&s, &["web", "-n", &ns, "--revision", "broken"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.starts_with("error: rendering"), "{err}");
    let (code, _, err) = ferry_diff(&s, &["nope", "-n", &ns, "--revision", "main"]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
}

/// `destination.createNamespace` with a namespace that does not exist yet: the diff shows the
/// Namespace the sync would create (the same function adds it in both), and the objects going
/// into it as creations without a dry run the API server would refuse for want of the namespace.
/// A namespace that exists and is not the Application's is never added.
#[test]
fn ferry_diff_shows_the_namespace_create_namespace_would_create() {
    let s = Scenario::with_ferry_args("diffns", &[]);
    let ns = s.ns().to_string();
    let new_ns = format!("{ns}-created");
    s.commit_in("app", &[("config.yaml", configmap("settings", None, &[("color", "blue")]))], "v1");
    let dir = tempfile::tempdir().unwrap();
    let manifest = |destination: &str| {
        let file = dir.path().join(format!("{destination}.yaml"));
        let app = s.application("web").destination(destination).create_namespace(true);
        std::fs::write(&file, app.to_yaml()).unwrap();
        file.to_string_lossy().to_string()
    };

    let (code, out, err) = ferry_diff(&s, &["--file", &manifest(&new_ns), "--revision", "main"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("2 to create, 0 to change, 0 to prune"), "{out}");
    assert!(out.contains(&format!("=== Namespace {new_ns} (Create)")), "{out}");
    let created = changed_lines(&out, &format!("Namespace {new_ns}"));
    assert!(created.iter().all(|l| l.starts_with('+')), "{out}");
    assert!(created.iter().any(|l| l.contains("ferry.dev/created-namespace")), "{out}");
    let settings = changed_lines(&out, &format!("ConfigMap {new_ns}/settings"));
    assert!(settings.iter().any(|l| l.contains("color: blue")), "{out}");

    // The test namespace exists and is not the Application's: no Namespace to create.
    let (code, out, err) = ferry_diff(&s, &["--file", &manifest(&ns), "--revision", "main"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 to create, 0 to change, 0 to prune"), "{out}");
    assert!(!out.contains("=== Namespace"), "{out}");
}
