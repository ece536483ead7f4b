//! Render benchmark: a 1,000-object plain directory and a 1,000-object Kustomize overlay (a base
//! with the objects, an overlay with a namePrefix and a patch), generated into a temp dir and
//! rendered N times after a warm-up. Prints and writes median, min and max to
//! `target/bench/render.txt`. Timings live here, never in pass/fail tests.
//!
//! Needs the pinned kustomize: `make bench` builds it first (`tests/testenv/build.sh kustomize`).
//! `FERRY_BENCH_ITERATIONS` changes N (default 15); `FERRY_KUSTOMIZE` points at another binary.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ferry::{
    api::{GitRef, Policy, Source},
    render::{BuiltinScopes, RenderCache, RenderOptions, RenderRequest, render},
};

const OBJECTS: usize = 1000;
const PER_FILE: usize = 10;
const WARMUP: usize = 2;

fn main() {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let iterations: usize = std::env::var("FERRY_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(15);
    let kustomize = kustomize_bin(repo_root);
    if !kustomize.is_file() {
        eprintln!(
            "kustomize not found at {}; run `tests/testenv/build.sh kustomize` (make bench does)",
            kustomize.display()
        );
        std::process::exit(1);
    }

    let tree = tempfile::tempdir().expect("temp dir");
    generate(tree.path());
    let opts = RenderOptions {
        kustomize_bin: kustomize.clone(),
        timeout: Duration::from_secs(300),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");

    let mut report = String::new();
    writeln!(
        report,
        "ferry render benchmark: {OBJECTS} objects, {iterations} runs after {WARMUP} warm-up, {} cores, kustomize {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kustomize.display()
    )
    .unwrap();

    for (name, path, expect) in
        [("plain directory", "plain", OBJECTS), ("kustomize overlay", "overlay", OBJECTS)]
    {
        let src = source(path);
        let policy = Policy { require_pinned_images: true };
        let req = RenderRequest {
            root: tree.path(),
            source: &src,
            app_name: "bench",
            default_namespace: "bench",
            policy: &policy,
            capabilities: None,
            chart: None,
            decryption: None,
            dependencies: &[],
        };
        let mut times = Vec::with_capacity(iterations);
        for i in 0..WARMUP + iterations {
            let start = Instant::now();
            let objects = runtime
                .block_on(render(&req, &opts, &BuiltinScopes))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let took = start.elapsed();
            assert_eq!(objects.len(), expect, "{name}");
            if i >= WARMUP {
                times.push(took);
            }
        }
        writeln!(report, "{}", summary(name, &mut times)).unwrap();
    }

    // Reference: the kustomize process alone, to tell its cost from ferry's parsing and checks.
    let mut times = Vec::with_capacity(iterations);
    for i in 0..WARMUP + iterations {
        let start = Instant::now();
        let out = std::process::Command::new(&kustomize)
            .arg("build")
            .arg(tree.path().join("overlay"))
            .output()
            .expect("run kustomize");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    writeln!(report, "{}", summary("  (kustomize build alone)", &mut times)).unwrap();

    // A cache hit: what a reconcile of an unchanged revision pays.
    let cache = RenderCache::default();
    let src = source("overlay");
    let policy = Policy::default();
    let req = RenderRequest {
        root: tree.path(),
        source: &src,
        app_name: "bench",
        default_namespace: "bench",
        policy: &policy,
        capabilities: None,
        chart: None,
        decryption: None,
        dependencies: &[],
    };
    runtime.block_on(cache.get_or_render("c0ffee", &req, &opts, &BuiltinScopes)).expect("render");
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        runtime.block_on(cache.get_or_render("c0ffee", &req, &opts, &BuiltinScopes)).expect("cached render");
        times.push(start.elapsed());
    }
    assert_eq!(cache.renders(), 1, "every later call was a hit");
    writeln!(report, "{}", summary("kustomize overlay, cache hit", &mut times)).unwrap();

    print!("{report}");
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root.join("target"), PathBuf::from)
        .join("bench");
    std::fs::create_dir_all(&out_dir).expect("create target/bench");
    std::fs::write(out_dir.join("render.txt"), &report).expect("write target/bench/render.txt");
    println!("written to {}", out_dir.join("render.txt").display());
}

fn summary(name: &str, times: &mut [Duration]) -> String {
    times.sort();
    let median = times[times.len() / 2];
    let show = |d: Duration| {
        if d < Duration::from_millis(1) {
            format!("{:>9.1} µs", d.as_secs_f64() * 1e6)
        } else {
            format!("{:>9.3} ms", d.as_secs_f64() * 1e3)
        }
    };
    format!(
        "{name:<30} median {}   min {}   max {}",
        show(median),
        show(times[0]),
        show(times[times.len() - 1])
    )
}

fn source(path: &str) -> Source {
    Source {
        repo_url: Some("file:///bench".into()),
        git_ref: Some(GitRef { branch: Some("main".into()), ..Default::default() }),
        path: Some(path.into()),
        secret_ref: None,
        kustomize: None,
        helm: None,
        chart: None,
        oci: None,
    }
}

/// `tests/testenv/versions.env` + FERRY_CACHE (or ~/.cache/ferry), as build.sh lays it out.
fn kustomize_bin(repo_root: &Path) -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRY_KUSTOMIZE") {
        return bin.into();
    }
    let versions =
        std::fs::read_to_string(repo_root.join("tests/testenv/versions.env")).expect("versions.env");
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("KUSTOMIZE_VERSION="))
        .expect("KUSTOMIZE_VERSION")
        .trim();
    let cache = std::env::var_os("FERRY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ferry"));
    cache.join(format!("testenv/kustomize-{version}/bin/kustomize"))
}

/// One object of a realistic mix: Deployments (with a pod template for the pin policy),
/// Services and ConfigMaps.
fn object(i: usize) -> String {
    match i % 3 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels: {{app: app-{i}, tier: web}}\n\
             spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      \
             labels: {{app: app-{i}}}\n    spec:\n      containers:\n      - name: app\n        \
             image: registry.example/app-{i}:1.{i}.0\n        ports: [{{containerPort: 8080}}]\n        \
             env: [{{name: MODE, value: bench}}]\n"
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  selector: {{app: app-{i}}}\n  \
             ports:\n  - port: 80\n    targetPort: 8080\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-{i}\ndata:\n  greeting: hello {i}\n  \
             settings.json: '{{\"replicas\": 1, \"index\": {i}}}'\n"
        ),
    }
}

fn generate(root: &Path) {
    let files = OBJECTS / PER_FILE;
    for dir in ["plain", "base", "overlay"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let mut resources = String::new();
    for f in 0..files {
        let docs: Vec<String> = (0..PER_FILE).map(|d| object(f * PER_FILE + d)).collect();
        let text = docs.join("---\n");
        let name = format!("objects-{f:03}.yaml");
        // Nest half the plain files one level down, as real repositories do.
        let plain =
            if f % 2 == 0 { root.join("plain").join(&name) } else { root.join("plain/nested").join(&name) };
        std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
        std::fs::write(plain, &text).unwrap();
        std::fs::write(root.join("base").join(&name), &text).unwrap();
        writeln!(resources, "- {name}").unwrap();
    }
    std::fs::write(
        root.join("base/kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"),
    )
    .unwrap();
    std::fs::write(
        root.join("overlay/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../base\nnamePrefix: prod-\n\
         patches:\n- target: {kind: Deployment}\n  patch: |\n    - op: replace\n      path: /spec/replicas\n      value: 3\n",
    )
    .unwrap();
}
