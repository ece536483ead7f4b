//! Issue 19, the hostile-input half: what an Application author, a pull request or a network
//! client could do to ferry, tried against a running `ferry run`, the real API server and real
//! renderers. Each test is the attack and fails on the code before the fix (see each test).

use std::{
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ring::hmac;
use serde_json::json;

use crate::support::{
    AppBuilder, Cluster, Ferry, FerryApp, Scenario, T, condition, configmap, http_get, http_request,
    wait_until,
};

/// Defect 4: `progressDeadline: 99999999999999999999h` matched the pattern, reached
/// `Duration::from_secs_f64` and panicked every replica. Now the API server refuses it (the
/// schema states ferry's bound), a `ferry run` flag (which no schema guards) is refused with a
/// message instead of a panic, and the longest allowed interval syncs. Before the fix the
/// API server accepted the Application and the flag panicked (exit 101).
#[test]
fn a_huge_duration_is_refused_everywhere_and_ferry_keeps_syncing() {
    let s = Scenario::with_ferry_args("huge-duration", &[]);
    s.commit_in("other", &[("cm.yaml", configmap("yearly", None, &[("a", "b")]))], "yearly");
    let sha = s.commit_in("app", &[("cm.yaml", configmap("settings", None, &[("color", "blue")]))], "blue");
    let steady = s.create_app(s.default_app("steady"));
    steady.wait_synced(&sha, T);

    let hostile = s
        .application("hostile")
        .canary("web", json!([{"setWeight": 50}]))
        .canary_field("progressDeadline", json!("99999999999999999999h"))
        .build();
    // Again, right before: work trees sharing one control plane install their own CRDs.
    s.cluster.install_crds();
    let refused = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &hostile.to_string());
    assert!(!refused.success, "the API server accepted {hostile}");
    assert!(refused.stderr.contains("progressDeadline"), "{}", refused.stderr);
    for (field, value) in [("interval", "8761h"), ("interval", "99999999999999999999h")] {
        let mut app = hostile.clone();
        app["spec"]["strategy"] = json!(null);
        app["spec"][field] = json!(value);
        let run = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &app.to_string());
        assert!(!run.success, "the API server accepted {field}: {value}");
    }

    // The longest interval the schema allows is one ferry can wait for.
    let year = FerryApp::new(&s.cluster, s.ns(), "year");
    let mut app = hostile.clone();
    app["metadata"]["name"] = json!("year");
    app["spec"]["strategy"] = json!(null);
    app["spec"]["interval"] = json!("8760h");
    app["spec"]["source"]["path"] = json!("other");
    s.cluster.apply(&app.to_string());
    year.wait_synced(&sha, T);

    let sha = s.commit_in("app", &[("cm.yaml", configmap("settings", None, &[("color", "green")]))], "green");
    steady.ferry_sync();
    steady.wait_synced(&sha, T);

    let flag = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--leader-elect", "--leader-election-lease-duration", "99999999999999999999h"])
        .env("KUBECONFIG", &s.cluster.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("run ferry");
    let stderr = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at most 8760h") && !stderr.contains("panicked"), "{stderr}");
}

/// Defect 4: one Application whose repoURL holds a multi-byte character made every signed
/// webhook panic while ferry matched repositories (the connection dropped without an answer).
/// Now the push is answered and triggers the Application it concerns.
#[test]
fn a_multi_byte_repository_url_does_not_break_webhooks() {
    const KEY: &str = "hardening-webhook-key";
    let s = Scenario::with_ferry_args("mb-url", &["--webhook-secret", "hooks"]);
    s.kubectl_ok(&[
        "-n",
        s.ns(),
        "create",
        "secret",
        "generic",
        "hooks",
        &format!("--from-literal=generic={KEY}"),
    ]);
    let sha = s.commit_in("app", &[("cm.yaml", configmap("settings", None, &[("color", "blue")]))], "blue");
    let app = s.create_app(s.default_app("normal").interval("1h"));
    app.wait_synced(&sha, T);
    AppBuilder::new("odd")
        .namespace(s.ns())
        .repo("git@h:éabc")
        .branch("main")
        .interval("1h")
        .create(&s.cluster);

    let addr = s.ferry.http_address();
    wait_until("/readyz to answer 200", T, || {
        let r = http_get(&addr, "/readyz");
        if r.status == 200 { Ok(()) } else { Err(format!("{} {}", r.status, r.body)) }
    });
    let body = json!({"repoURL": s.git.url(), "ref": "refs/heads/main"}).to_string();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes()), body.as_bytes());
    let signature = format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
    // The cache may not hold `odd` yet right after the apply: deliver until it is matched too.
    wait_until("a signed webhook to trigger `normal` with `odd` in the cache", T, || {
        let r = std::panic::catch_unwind(|| {
            http_request(
                &addr,
                "POST",
                "/hooks/generic",
                &[("X-Ferry-Signature", &signature)],
                body.as_bytes(),
            )
        })
        .map_err(|_| "the connection was dropped without an answer".to_string())?;
        let triggered = r.json()["triggered"].clone();
        match (r.status, triggered == json!([format!("{}/normal", s.ns())])) {
            (202, true) if odd_is_known(&s) => Ok(()),
            _ => Err(format!("{} {}", r.status, r.body)),
        }
    });
    assert_eq!(http_get(&addr, "/healthz").status, 200);
}

/// Whether ferry has seen Application `odd` (it reports its failed fetch).
fn odd_is_known(s: &Scenario) -> bool {
    FerryApp::new(&s.cluster, s.ns(), "odd").get().is_some_and(|a| condition(&a, "Ready").is_some())
}

/// Defect 12: clients that send their request a byte at a time were held forever and without
/// limit; once they took every file descriptor ferry could not accept `/healthz`, and the
/// kubelet would restart a healthy ferry. With ferry's descriptors lowered to 256 and 400 such
/// clients, `/healthz` still answers. Before the fix it timed out.
#[test]
fn slow_clients_do_not_starve_healthz() {
    let cluster = Cluster::shared();
    cluster.install_crds();
    let ns = cluster.namespace("slow-clients");
    let mut ferry = Ferry::start(cluster, &ns.name);
    let addr = ferry.http_address();
    let pid = ferry.pid().expect("ferry runs");
    let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
    // SAFETY: prlimit(2) on our own child, with a valid struct and no old-limit pointer.
    let set = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());

    let slow = SlowClients::open(&addr, 400);
    for _ in 0..3 {
        let started = Instant::now();
        let health = get_within(&addr, "/healthz", Duration::from_secs(5));
        assert_eq!(health.as_deref(), Some("ok\n"), "no answer within 5s ({:?})", started.elapsed());
    }
    drop(slow);
    assert!(ferry.is_running(), "{}", ferry.logs());
}

/// Connections that send a request head one byte every 100ms, until dropped (also when the test
/// fails: the clients must not outlive it and hold ferry's shutdown).
struct SlowClients {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    fn open(addr: &str, count: usize) -> SlowClients {
        let open = |_| {
            // A full accept backlog drops SYNs; such a client just does not join.
            let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut streams: Vec<TcpStream> = (0..count).filter_map(open).collect();
        assert!(streams.len() > count / 2, "only {} of {count} connections opened", streams.len());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for s in &mut streams {
                    let _ = s.write(b"a");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SlowClients { stop, thread: Some(thread) }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The body of `GET path` if it answers 200 within `timeout`.
fn get_within(addr: &str, path: &str, timeout: Duration) -> Option<String> {
    use std::io::Read;
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    raw.starts_with("HTTP/1.1 200").then(|| raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))?
}

/// Defect 5: `releaseName` went to `helm template` as a positional argument, so
/// `--output-dir=...` was read as a flag; `ferry diff --file` in a pull request's CI reads an
/// Application no API server has checked. Now ferry refuses the name itself and helm never runs;
/// before the fix helm wrote the chart into the named directory. The API server refuses it too.
#[test]
fn a_release_name_is_never_a_helm_flag() {
    let s = Scenario::with_ferry_args("helm-flag", &[]);
    let chart = "apiVersion: v2\nname: shop\nversion: 0.1.0\n";
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\ndata:\n  a: b\n";
    s.git.commit_files("main", &[("chart/Chart.yaml", chart), ("chart/templates/cm.yaml", cm)], "chart");
    let dir = tempfile::tempdir().expect("temp dir");
    let stolen = dir.path().join("written-by-helm");
    let release = format!("--output-dir={}", stolen.display());
    let app = s.application("shop").path("chart").helm(json!({"releaseName": release}));
    let file = dir.path().join("application.json");
    std::fs::write(&file, app.to_string()).expect("write the Application");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["diff", "--file", &file.to_string_lossy(), "--revision", "main"])
        .env("KUBECONFIG", &s.cluster.kubeconfig)
        .env("FERRY_HELM", crate::support::helm_bin())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry diff");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stolen.exists(), "helm took the release name for --output-dir; ferry diff said: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Helm release name") && stderr.contains("--output-dir="), "{stderr}");

    s.cluster.install_crds(); // as above: other work trees may have installed theirs since
    let refused = s.cluster.kubectl_stdin(&["apply", "-f", "-"], &app.to_string());
    assert!(!refused.success && refused.stderr.contains("releaseName"), "{}", refused.stderr);
}

/// Defect 13: renders were read and parsed whatever their size. Over `--max-render-objects` or
/// `--max-render-bytes` the sync fails as RenderFailed naming the limit, and nothing is applied.
/// Before the fix `ferry run` did not know the flags (and applied any render).
#[test]
fn an_oversized_render_fails_naming_the_limit_and_applies_nothing() {
    let s = Scenario::with_ferry_args(
        "render-limits",
        &["--max-render-objects", "3", "--max-render-bytes", "8Ki"],
    );
    let many: Vec<(String, String)> = (0..5)
        .map(|i| (format!("cm{i}.yaml"), configmap(&format!("many-{i}"), None, &[("i", "x")])))
        .collect();
    let refs: Vec<(&str, String)> = many.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    s.commit_in("app", &refs, "five objects");
    let big = "x".repeat(10 * 1024);
    let sha =
        s.commit_in("other", &[("big.yaml", configmap("big", None, &[("blob", &big)]))], "one large object");

    for (app, limit) in [
        (s.create_app(s.default_app("objects").path("app")), "3 objects (--max-render-objects)"),
        (s.create_app(s.default_app("bytes").path("other")), "8192 bytes (--max-render-bytes)"),
    ] {
        let failed = app.wait_refused("RenderFailed", &sha, T);
        let message =
            condition(&failed, "Ready").and_then(|c| c["message"].as_str()).unwrap_or_default().to_string();
        assert!(message.contains(limit), "{message}");
    }
    for name in ["many-0", "many-4", "big"] {
        assert_eq!(s.cm_value(name, "i"), None, "ConfigMap {name} was applied");
    }
}
