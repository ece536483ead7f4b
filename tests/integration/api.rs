//! The Application API as the real API server serves it: the CRD installs, good specs are
//! accepted and listed with ferry's columns, and bad specs are refused by the server itself.

use crate::support::{Cluster, repo_root};

fn example() -> String {
    std::fs::read_to_string(repo_root().join("examples/application.yaml"))
        .expect("read examples/application.yaml")
}

#[test]
fn crd_installs_and_is_established() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let out = cluster.kubectl_ok(&[
        "get",
        "crd",
        "applications.ferry.dev",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Established")].status} {.spec.names.shortNames} {.spec.scope}"#,
    ]);
    assert_eq!(out.trim(), r#"True ["fapp"] Namespaced"#);
}

#[test]
fn example_application_is_accepted_and_listed_with_printer_columns() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("api-example");
    let applied = cluster.kubectl_stdin(&["apply", "-n", &ns.name, "-f", "-"], &example());
    assert!(applied.success, "the example Application was refused: {}", applied.stderr);

    // Defaults are filled in by the API server from the schema.
    let spec = cluster.kubectl_ok(&[
        "-n",
        &ns.name,
        "get",
        "fapp",
        "guestbook",
        "-o",
        "jsonpath={.spec.suspend} {.spec.policy}",
    ]);
    assert_eq!(spec.trim(), r#"false {"requirePinnedImages":false}"#);

    // Before ferry writes any status, the columns exist but are empty.
    let table = cluster.kubectl_ok(&["-n", &ns.name, "get", "fapp"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SYNC", "HEALTH", "REVISION", "READY", "AGE"], "{table}");

    // Status as ferry will write it; the subresource is the only way to set it.
    let status = r#"{"status":{"sync":{"status":"Synced","revision":"main@sha1:0123456789abcdef0123456789abcdef01234567","shortRevision":"main@0123456"},"health":{"status":"Healthy"},"conditions":[{"type":"Ready","status":"True","reason":"ReconciliationSucceeded","message":"applied revision main@0123456","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    cluster.kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "fapp",
        "guestbook",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);

    let table = cluster.kubectl_ok(&["-n", &ns.name, "get", "fapp"]);
    let row: Vec<&str> = table.lines().nth(1).expect("a row for guestbook").split_whitespace().collect();
    assert_eq!(&row[..5], ["guestbook", "Synced", "Healthy", "main@0123456", "True"], "{table}");

    let wide = cluster.kubectl_ok(&["-n", &ns.name, "get", "applications.ferry.dev", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().ends_with("MESSAGE"), "{wide}");
    assert!(wide.contains("applied revision main@0123456"), "{wide}");

    // The `ferry` category lists Applications too.
    let cat = cluster.kubectl_ok(&["-n", &ns.name, "get", "ferry", "-o", "name"]);
    assert_eq!(cat.trim(), "application.ferry.dev/guestbook");
}

/// One invalid Application: a spec fragment and what the refusal must mention.
struct BadSpec {
    case: &'static str,
    spec: &'static str,
    field: &'static str,
    message: &'static str,
}

const GOOD_SOURCE: &str = "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main}}";

fn bad_specs() -> Vec<BadSpec> {
    vec![
        BadSpec {
            case: "no-ref",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {}}",
            field: "spec.source.ref",
            message: "set exactly one of branch, tag, semver, commit, name or fromApplication",
        },
        BadSpec {
            case: "two-refs",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main, tag: v1.0.0}}",
            field: "spec.source.ref",
            message: "set exactly one of branch, tag, semver, commit, name or fromApplication",
        },
        BadSpec {
            case: "branch-and-from-application",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main, fromApplication: {name: staging}}}",
            field: "spec.source.ref",
            message: "set exactly one of branch, tag, semver, commit, name or fromApplication",
        },
        BadSpec {
            case: "ref-name-not-full",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {name: pull/7/head}}",
            field: "spec.source.ref.name",
            message: "name must be a full ref name starting with refs/",
        },
        BadSpec {
            case: "short-commit",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {commit: abc1234}}",
            field: "spec.source.ref.commit",
            message: "commit must be a full 40-character hexadecimal SHA",
        },
        BadSpec {
            case: "non-hex-commit",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {commit: zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz}}",
            field: "spec.source.ref.commit",
            message: "commit must be a full 40-character hexadecimal SHA",
        },
        BadSpec {
            case: "empty-repourl",
            spec: "source: {repoURL: '', ref: {branch: main}}",
            field: "spec.source.repoURL",
            message: "at least 1 chars long",
        },
        BadSpec {
            case: "repourl-not-a-url",
            spec: "source: {repoURL: 'not a url', ref: {branch: main}}",
            field: "spec.source.repoURL",
            message: "repoURL must be a Git URL",
        },
        BadSpec {
            case: "negative-interval",
            spec: "interval: -5m",
            field: "spec.interval",
            message: "interval must be a duration from 1s to 8760h",
        },
        BadSpec {
            case: "unparsable-interval",
            spec: "interval: soon",
            field: "spec.interval",
            message: "interval must be a duration from 1s to 8760h",
        },
        BadSpec {
            case: "zero-interval",
            spec: "interval: 0s",
            field: "spec.interval",
            message: "interval must be a duration from 1s to 8760h",
        },
        BadSpec {
            case: "weight-over-100",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{setWeight: 20}, {setWeight: 150}]}}",
            field: "spec.strategy.canary.steps[1].setWeight",
            message: "less than or equal to 100",
        },
        BadSpec {
            case: "negative-weight",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{setWeight: -1}]}}",
            field: "spec.strategy.canary.steps[0].setWeight",
            message: "greater than or equal to 0",
        },
        BadSpec {
            case: "canary-and-bluegreen",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{setWeight: 20}]}, blueGreen: {workload: {name: web}, activeService: web}}",
            field: "spec.strategy",
            message: "strategy takes exactly one of canary or blueGreen",
        },
        BadSpec {
            case: "step-with-two-actions",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{setWeight: 20, pause: {}}]}}",
            field: "spec.strategy.canary.steps[0]",
            message: "each canary step sets exactly one of setWeight, pause or analysis",
        },
        BadSpec {
            case: "metric-without-condition",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{analysis: {metrics: [{name: errors, prometheus: {query: up}}]}}]}}",
            field: "spec.strategy.canary.steps[0].analysis.metrics[0]",
            message: "an analysis metric needs a successCondition, a failureCondition or both",
        },
        BadSpec {
            case: "condition-with-code",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{analysis: {metrics: [{name: errors, prometheus: {query: up}, successCondition: 'result < 1; rm -rf /'}]}}]}}",
            field: "spec.strategy.canary.steps[0].analysis.metrics[0].successCondition",
            message: "should match",
        },
        BadSpec {
            case: "prometheus-not-a-url",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{analysis: {metrics: [{name: errors, prometheus: {address: 'prometheus:9090', query: up}, failureCondition: result > 1}]}}]}}",
            field: "spec.strategy.canary.steps[0].analysis.metrics[0].prometheus.address",
            message: "should match",
        },
        BadSpec {
            case: "analysis-interval-zero",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{analysis: {metrics: [{name: errors, prometheus: {query: up}, interval: 0s, failureCondition: result > 1}]}}]}}",
            field: "spec.strategy.canary.steps[0].analysis.metrics[0].interval",
            message: "interval must be a duration from 1s to 8760h",
        },
        // Issue 19: durations past ferry's bound, and a release name helm would read as a flag.
        BadSpec {
            case: "interval-past-a-year",
            spec: "interval: 8761h",
            field: "spec.interval",
            message: "interval must be a duration from 1s to 8760h",
        },
        BadSpec {
            case: "huge-progress-deadline",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{setWeight: 50}], progressDeadline: 99999999999999999999h}}",
            field: "spec.strategy.canary.progressDeadline",
            message: "at most 8760h",
        },
        BadSpec {
            case: "pause-past-a-year",
            spec: "strategy: {canary: {workload: {name: web}, steps: [{pause: {duration: 8761h}}]}}",
            field: "spec.strategy.canary.steps[0].pause.duration",
            message: "must be a duration of at most 8760h",
        },
        BadSpec {
            case: "scale-down-delay-past-a-year",
            spec: "strategy: {blueGreen: {workload: {name: web}, activeService: web, scaleDownDelay: 525601m}}",
            field: "spec.strategy.blueGreen.scaleDownDelay",
            message: "must be a duration of at most 8760h",
        },
        BadSpec {
            case: "release-name-flag",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main}, helm: {releaseName: '--output-dir=/tmp/x'}}",
            field: "spec.source.helm.releaseName",
            message: "should match",
        },
        BadSpec {
            case: "absolute-path",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main}, path: /etc}",
            field: "spec.source.path",
            message: "path must be relative",
        },
        BadSpec {
            case: "kustomize-and-helm",
            spec: "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main}, kustomize: {}, helm: {}}",
            field: "spec.source",
            message: "set at most one of kustomize or helm",
        },
    ]
}

fn manifest(name: &str, spec_fragment: &str) -> String {
    // A fragment that sets its own source replaces the good one.
    let source = if spec_fragment.starts_with("source:") { "" } else { GOOD_SOURCE };
    let mut spec = String::new();
    for line in [source, spec_fragment] {
        if !line.is_empty() {
            spec.push_str("  ");
            spec.push_str(line);
            spec.push('\n');
        }
    }
    format!("apiVersion: ferry.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn bad_specs_are_refused_by_the_api_server_naming_the_field() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("api-bad");

    // The control: the same harness with a good spec is accepted, so the refusals below are about
    // the fields and not about the harness.
    let good =
        cluster.kubectl_stdin(&["create", "-n", &ns.name, "-f", "-"], &manifest("good", "interval: 30s"));
    assert!(good.success, "a good spec was refused: {}", good.stderr);

    // The rules refuse only what they should: each of these neighbours of a bad spec is valid.
    let good_specs = [
        (
            "commit",
            "source: {repoURL: 'https://git.example.com/a.git', ref: {commit: 0123456789abcdef0123456789ABCDEF01234567}}",
        ),
        ("tag", "source: {repoURL: 'ssh://git@git.example.com/a.git', ref: {tag: v1.0.0}}"),
        ("semver", "source: {repoURL: 'git@github.com:team/deploy.git', ref: {semver: '>=1.0.0 <2.0.0'}}"),
        ("file-url", "source: {repoURL: 'file:///srv/git/a.git', ref: {branch: main}, path: apps/shop}"),
        (
            "pull-request-ref",
            "source: {repoURL: 'https://git.example.com/a.git', ref: {name: refs/pull/7/head}}",
        ),
        (
            "promotion",
            "source: {repoURL: 'https://git.example.com/a.git', ref: {fromApplication: {name: staging, namespace: team}}, path: prod}",
        ),
        (
            "create-namespace",
            "source: {repoURL: 'https://git.example.com/a.git', ref: {branch: main}}\n  destination: {namespace: preview-7, createNamespace: true}",
        ),
        ("compound-interval", "interval: 1h30m"),
        ("fractional-interval", "interval: 1.5m"),
        (
            "weights-0-and-100",
            "strategy: {canary: {workload: {name: web}, steps: [{setWeight: 0}, {pause: {duration: 10s}}, {setWeight: 100}]}}",
        ),
        (
            "bluegreen-only",
            "strategy: {blueGreen: {workload: {name: web}, activeService: web, previewService: web-preview}}",
        ),
        (
            "canary-with-analyses",
            r#"strategy: {canary: {workload: {name: web}, trafficRouting: {gatewayAPI: {httpRoute: web}}, analysis: {metrics: [{name: latency, prometheus: {address: 'http://prometheus:9090', query: 'max(x)'}, failureCondition: 'result > 0.5 || result < 0'}]}, steps: [{setWeight: 20}, {analysis: {metrics: [{name: errors, prometheus: {query: 'sum(rate(e{v="{{variant}}"}[1m]))'}, interval: 30s, count: 3, successCondition: 'result >= 0.99 && result <= 1', noData: Fail}]}}]}}"#,
        ),
        (
            "bluegreen-with-analyses",
            "strategy: {blueGreen: {workload: {name: web}, activeService: web, autoPromotion: true, autoPromotionSeconds: 30, scaleDownDelay: 1m, postPromotionAnalysis: {metrics: [{name: e, prometheus: {query: up}, successCondition: result == 1}]}}}",
        ),
    ];
    for (case, spec) in good_specs {
        let run = cluster
            .kubectl_stdin(&["create", "-n", &ns.name, "-f", "-"], &manifest(&format!("good-{case}"), spec));
        assert!(run.success, "the valid spec `{case}` was refused: {}", run.stderr);
    }

    let mut failures = Vec::new();
    for bad in bad_specs() {
        let run =
            cluster.kubectl_stdin(&["create", "-n", &ns.name, "-f", "-"], &manifest(bad.case, bad.spec));
        if run.success {
            failures.push(format!("{}: accepted, but should be refused", bad.case));
        } else if !run.stderr.contains(bad.field) || !run.stderr.contains(bad.message) {
            failures.push(format!(
                "{}: refused, but the message does not name `{}` with `{}`: {}",
                bad.case,
                bad.field,
                bad.message,
                run.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_applicationset_and_promotion_examples_are_accepted() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("api-examples");
    for file in ["examples/previews.yaml", "examples/promotion.yaml"] {
        let yaml = std::fs::read_to_string(repo_root().join(file)).expect("read the example");
        let run = cluster.kubectl_stdin(&["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"], &yaml);
        assert!(run.success, "{file} was refused: {}", run.stderr);
    }
    let listed = cluster.kubectl_ok(&[
        "get",
        "crd",
        "applicationsets.ferry.dev",
        "-o",
        "jsonpath={.spec.names.shortNames}",
    ]);
    assert_eq!(listed.trim(), r#"["fappset"]"#);
}

/// TenantPolicies as the API server serves them: a good one is accepted, and policies that
/// govern nothing, allow no repository or carry a malformed glob or ServiceAccount name are
/// refused by the server, naming the field.
#[test]
fn bad_tenant_policies_are_refused_by_the_api_server_naming_the_field() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("api-tenant");
    let policy = |name: &str, spec: &str| {
        format!(
            "apiVersion: ferry.dev/v1alpha1\nkind: TenantPolicy\nmetadata:\n  name: {name}\nspec:\n  {spec}\n"
        )
    };
    let good = policy(
        "good",
        "{applicationNamespaces: [team-a, 'team-a-*'], sourceRepos: ['https://git.example.com/team-a/*'], destinationNamespaces: [team-a], clusterResources: [{kind: Namespace}], defaultServiceAccount: deployer}",
    );
    let run = cluster.kubectl_stdin(&["create", "-n", &ns.name, "-f", "-"], &good);
    assert!(run.success, "a good TenantPolicy was refused: {}", run.stderr);
    let listed = cluster.kubectl_ok(&["-n", &ns.name, "get", "ftenant", "good", "-o", "name"]);
    assert_eq!(listed.trim(), "tenantpolicy.ferry.dev/good");

    let cases = [
        ("no-namespaces", "{applicationNamespaces: [], sourceRepos: ['*']}", "spec.applicationNamespaces"),
        ("no-repos", "{applicationNamespaces: [team-a]}", "spec.sourceRepos"),
        ("empty-glob", "{applicationNamespaces: [''], sourceRepos: ['*']}", "each entry is a name or a glob"),
        (
            "spaced-glob",
            "{applicationNamespaces: [team-a], sourceRepos: ['https://x/ a']}",
            "spec.sourceRepos",
        ),
        (
            "bad-service-account",
            "{applicationNamespaces: [team-a], sourceRepos: ['*'], defaultServiceAccount: Deployer_1}",
            "defaultServiceAccount must be a ServiceAccount name",
        ),
        (
            "kind-missing",
            "{applicationNamespaces: [team-a], sourceRepos: ['*'], clusterResources: [{group: ''}]}",
            "kind",
        ),
    ];
    for (name, spec, words) in cases {
        let run = cluster.kubectl_stdin(&["create", "-n", &ns.name, "-f", "-"], &policy(name, spec));
        assert!(!run.success, "TenantPolicy {name} was accepted");
        assert!(run.stderr.contains(words), "{name}: the refusal should mention {words}: {}", run.stderr);
    }
}
