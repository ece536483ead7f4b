//! Notifications (issue 24) against a running `ferry run`, the real API server, the `git
//! http-backend` fixture and local HTTP receivers on real sockets that check what each provider
//! documents: Flux's generic-hmac signature (`X-Signature: sha256=<hex HMAC of the body>`), a
//! Slack incoming-webhook message, a Teams MessageCard.
//!
//! The burst is real: twenty edits of a managed ConfigMap, each reverted by self-heal, give
//! twenty identical `DriftCorrected` Events (same object, same revision, same words), which a
//! Notifier with a rate limit must turn into one message and a summary counting nineteen.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use ring::hmac;
use serde_json::Value;

use crate::rollout::{ERROR_QUERY, Exporter, analysis_step};
use crate::support::{
    GITEA_ADMIN, Gitea, Prometheus, Scenario, T, configmap, deployment, get_json, http_get, wait_until,
};

const TOKEN: &str = "n0tify-t0ken-5ecret-4f1c";
/// The secret part of a Slack-style webhook path: must never be seen outside the Secret.
const PATH_TOKEN: &str = "T000/B000/XyZsecretPathToken";

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// An HTTP/1.1 server on a real socket that records every POST and answers 200 (keep-alive,
/// as hyper's pooled client expects).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").expect("bind a receiver"))
    }

    fn on(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().expect("receiver address").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let shared = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let got = shared.clone();
                std::thread::spawn(move || serve(stream, &got));
            }
        });
        Receiver { port, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `ok` holds for what was received.
    fn wait<R>(&self, what: &str, ok: impl Fn(&[Received]) -> Option<R>) -> R {
        wait_until(what, T, || ok(&self.all()).ok_or_else(|| format!("received {} so far", self.all().len())))
    }
}

fn serve(stream: TcpStream, got: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().unwrap_or_else(|e| e.into_inner()).push(Received { path, headers, body });
        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// Verifies `X-Signature` as Flux's documentation does: `<hash>=<hex HMAC of the body>`.
fn signature_ok(r: &Received, key: &str) -> bool {
    let Some((algorithm, hex)) = r.header("x-signature").and_then(|s| s.split_once('=')) else {
        return false;
    };
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), &r.body);
    let expected: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    algorithm == "sha256" && hex == expected
}

/// The generic body's documented fields.
fn assert_generic_shape(v: &Value) {
    for field in ["application", "namespace", "event", "severity", "message", "timestamp"] {
        assert!(v[field].is_string(), "{field} missing in {v}");
    }
    assert!(v["count"].is_u64(), "count missing in {v}");
}

fn secret(s: &Scenario, name: &str, data: &[(&str, &str)]) {
    let mut args =
        vec!["-n".to_string(), s.ns().to_string(), "create".into(), "secret".into(), "generic".into()];
    args.push(name.into());
    args.extend(data.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.kubectl_ok(&args);
}

fn notifier(s: &Scenario, name: &str, spec: Value) {
    let obj = serde_json::json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Notifier",
        "metadata": {"name": name, "namespace": s.ns()},
        "spec": spec,
    });
    s.cluster.apply(&obj.to_string());
}

fn settings(color: &str) -> Vec<(&'static str, String)> {
    vec![("settings.yaml", configmap("settings", None, &[("color", color)]))]
}

/// Nothing ferry shows holds `secrets`: its log, the Notifiers' and Applications' status, the
/// namespace's Events, /metrics.
fn assert_nothing_leaks(s: &Scenario, secrets: &[&str]) {
    let shown = [
        ("the log", s.ferry.logs()),
        ("the Notifiers", s.kubectl_ok(&["-n", s.ns(), "get", "notifiers", "-o", "json"])),
        ("the Applications", s.kubectl_ok(&["-n", s.ns(), "get", "applications", "-o", "json"])),
        ("the Events", s.kubectl_ok(&["-n", s.ns(), "get", "events", "-o", "json"])),
        ("/metrics", http_get(&s.ferry.http_address(), "/metrics").body),
    ];
    for (what, text) in shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows a secret ({secret})");
        }
    }
}

fn metric(s: &Scenario, series: &str) -> f64 {
    let body = http_get(&s.ferry.http_address(), "/metrics").body;
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[test]
fn each_provider_gets_its_documented_shape_once_per_event_and_no_token_leaks() {
    let s = Scenario::new("notify-shapes");
    let (hmac_rx, slack_rx, teams_rx) = (Receiver::start(), Receiver::start(), Receiver::start());
    secret(&s, "hmac", &[("address", &hmac_rx.url("/hook")), ("token", TOKEN)]);
    secret(&s, "slack", &[("address", &slack_rx.url(&format!("/services/{PATH_TOKEN}")))]);
    let synced = serde_json::json!(["synced"]);
    notifier(
        &s,
        "signed",
        serde_json::json!({"provider": "generic-hmac", "secretRef": {"name": "hmac"}, "events": synced}),
    );
    notifier(
        &s,
        "chat",
        serde_json::json!({"provider": "slack", "secretRef": {"name": "slack"}, "events": synced}),
    );
    notifier(
        &s,
        "teams",
        serde_json::json!({"provider": "msteams", "address": teams_rx.url("/teams"), "events": synced}),
    );
    // Another namespace's Notifier would need ferry's own namespace: refused, and never used.
    notifier(
        &s,
        "reach",
        serde_json::json!({"provider": "generic", "address": hmac_rx.url("/reach"), "applications": {"namespaces": ["*"]}}),
    );

    let first = s.commit(&settings("blue"), "blue");
    let app = s.create_app(s.default_app("web").interval("1h"));
    app.wait_synced(&first, T);
    let second = s.commit(&settings("green"), "green");
    app.ferry_sync();
    app.wait_synced(&second, T);

    // generic-hmac: exactly one signed message per revision synced.
    let signed = hmac_rx.wait("a signed message for each revision", |got| {
        let hook: Vec<&Received> = got.iter().filter(|r| r.path == "/hook").collect();
        let has =
            |sha: &str| hook.iter().any(|r| r.json()["revision"].as_str().is_some_and(|v| v.contains(sha)));
        (has(&first) && has(&second)).then(|| hook.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
    });
    assert_eq!(signed.len(), 2, "one message per distinct event: {signed:?}");
    for r in &signed {
        assert!(signature_ok(r, TOKEN), "bad signature: {:?}", r.header("x-signature"));
        let v = r.json();
        assert_generic_shape(&v);
        assert_eq!(
            (v["application"].as_str(), v["event"].as_str(), v["count"].as_u64()),
            (Some("web"), Some("synced"), Some(1))
        );
        assert_eq!(v["namespace"], s.ns());
    }

    // Slack: text, and an attachment with a color and fields.
    let slack = slack_rx.wait("a Slack message for the second revision", |got| {
        got.iter().find(|r| r.body.windows(7).any(|w| w == &second.as_bytes()[..7])).cloned()
    });
    assert_eq!(slack.path, format!("/services/{PATH_TOKEN}"));
    let v = slack.json();
    assert!(v["text"].as_str().is_some_and(|t| t.contains("web") && t.contains("synced")), "{v}");
    let attachment = &v["attachments"][0];
    assert_eq!(attachment["color"], "good");
    assert!(
        attachment["fields"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["title"].is_string() && f["value"].is_string())),
        "{v}"
    );

    // Teams: a MessageCard with facts.
    let teams = teams_rx.wait("a Teams card", |got| got.first().cloned());
    let v = teams.json();
    assert_eq!(v["@type"], "MessageCard");
    assert!(v["@context"].as_str().is_some_and(|c| c.contains("schema.org/extensions")), "{v}");
    assert!(v["themeColor"].is_string() && v["summary"].is_string(), "{v}");
    assert!(
        v["sections"][0]["facts"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["name"].is_string() && f["value"].is_string())),
        "{v}"
    );

    // The cross-namespace Notifier is refused, and nothing went its way.
    let refused = wait_until("the cross-namespace Notifier to be refused", Duration::from_secs(150), || {
        let n = get_json(&s.cluster, &["-n", s.ns(), "get", "notifier", "reach", "-o", "json"])
            .ok_or("no Notifier")?;
        let ready = n["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
        match ready {
            Some(c) if c["reason"] == "CrossNamespaceNotPermitted" && c["status"] == "False" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("ferry's own namespace")));
    assert!(hmac_rx.all().iter().all(|r| r.path != "/reach"));

    // The counts reach the Notifier's status, and the metric.
    wait_until("the signed Notifier's status to count 2 sent", Duration::from_secs(150), || {
        let n = get_json(&s.cluster, &["-n", s.ns(), "get", "notifier", "signed", "-o", "json"])
            .ok_or("no Notifier")?;
        if n["status"]["sent"] == 2 { Ok(()) } else { Err(format!("{}", n["status"])) }
    });
    assert!(metric(&s, r#"ferry_notifications_total{provider="generic-hmac",result="sent"}"#) >= 2.0);
    assert_nothing_leaks(&s, &[TOKEN, PATH_TOKEN]);
}

#[test]
fn a_burst_of_twenty_identical_drift_corrections_is_one_message_and_a_summary_of_nineteen() {
    let s = Scenario::new("notify-burst");
    let rx = Receiver::start();
    secret(&s, "hmac", &[("address", &rx.url("/hook")), ("token", TOKEN)]);
    // A window longer than the burst takes (twenty reverts), short enough for the test.
    notifier(
        &s,
        "drift",
        serde_json::json!({"provider": "generic-hmac", "secretRef": {"name": "hmac"}, "events": ["driftCorrected"], "rateLimit": "100s"}),
    );
    let sha = s.commit(&settings("blue"), "blue");
    let app = s.create_app(s.default_app("web").interval("1h"));
    app.wait_synced(&sha, T);

    for i in 0..20 {
        s.edit_settings_color(&format!("red{i}"));
        wait_until("self-heal to put blue back", T, || match s.cm_value("settings", "color").as_deref() {
            Some("blue") => Ok(()),
            other => Err(format!("color is {other:?}")),
        });
    }
    let corrections = app.events().iter().filter(|e| e.reason == "DriftCorrected").count();
    assert!(corrections >= 20, "twenty corrections expected, Events show {corrections}");

    let messages = rx.wait("the first message and the summary", |got| {
        let counts: Vec<u64> = got.iter().filter_map(|r| r.json()["count"].as_u64()).collect();
        (counts.iter().sum::<u64>() >= corrections as u64).then(|| got.to_vec())
    });
    let counts: Vec<u64> = messages.iter().map(|r| r.json()["count"].as_u64().unwrap_or(0)).collect();
    assert_eq!(counts, vec![1, corrections as u64 - 1], "one message now and one counted summary");
    for r in &messages {
        assert!(signature_ok(r, TOKEN));
        assert_eq!(r.json()["event"], "driftCorrected");
    }
    assert!(metric(&s, r#"ferry_notifications_total{provider="generic-hmac",result="suppressed"}"#) >= 19.0);
    assert_nothing_leaks(&s, &[TOKEN]);
}

#[test]
fn a_receiver_down_for_thirty_seconds_and_a_restart_of_ferry_lose_nothing() {
    let mut s = Scenario::new("notify-down");
    // A port nobody listens on yet; the receiver takes it later.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let address = format!("http://127.0.0.1:{port}/hook");
    secret(&s, "hmac", &[("address", &address), ("token", TOKEN)]);
    notifier(
        &s,
        "late",
        serde_json::json!({"provider": "generic-hmac", "secretRef": {"name": "hmac"}, "events": ["synced"]}),
    );
    let sha = s.commit(&settings("blue"), "blue");
    let app = s.create_app(s.default_app("web").interval("1h"));
    app.wait_synced(&sha, T);

    // The message waits in the outbox on disk while the receiver is down...
    let outbox = s.ferry.cache_dir().join("notifications/outbox.json");
    wait_until("the undelivered message in the outbox file", T, || {
        let text = std::fs::read_to_string(&outbox).map_err(|e| e.to_string())?;
        if text.contains(&sha) { Ok(()) } else { Err(text) }
    });
    let text = std::fs::read_to_string(&outbox).unwrap_or_default();
    assert!(!text.contains(TOKEN) && !text.contains(&address), "the outbox keeps neither address nor token");
    // ...survives ferry being killed...
    s.ferry.kill();
    s.ferry.restart();
    // ...and the receiver down for thirty seconds in all.
    std::thread::sleep(Duration::from_secs(30));
    let rx = Receiver::on(TcpListener::bind(("127.0.0.1", port)).expect("the receiver takes its port back"));
    let got = rx.wait("the held message", |got| {
        got.iter().find(|r| r.json()["revision"].as_str().is_some_and(|v| v.contains(&sha))).cloned()
    });
    assert!(signature_ok(&got, TOKEN));
    assert_generic_shape(&got.json());
    assert_nothing_leaks(&s, &[TOKEN, &format!(":{port}/hook")]);
    app.wait_synced(&sha, T);
}

/// The statuses of `sha` with `context`, oldest first (Gitea lists the newest first).
fn statuses(gitea: &Gitea, sha: &str, context: &str) -> Vec<Value> {
    let mut all: Vec<Value> =
        gitea.commit_statuses("shop", sha).into_iter().filter(|s| s["context"] == context).collect();
    all.sort_by_key(|s| s["id"].as_u64().unwrap_or(0));
    all
}

/// Waits until the statuses of `sha` end in `last`; returns their states, oldest first.
fn wait_statuses(gitea: &Gitea, sha: &str, context: &str, last: &str) -> (Vec<String>, Value) {
    wait_until(&format!("a {last} status on {}", &sha[..7]), T, || {
        let all = statuses(gitea, sha, context);
        let states: Vec<String> =
            all.iter().map(|s| s["status"].as_str().unwrap_or_default().to_string()).collect();
        match all.last() {
            Some(s) if s["status"] == last => Ok((states, s.clone())),
            _ => Err(format!("{states:?}")),
        }
    })
}

#[test]
fn gitea_commit_statuses_go_pending_to_success_for_a_good_rollout_and_to_failure_for_an_aborted_one() {
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(std::slice::from_ref(&exporter.addr));
    let s = Scenario::with_ferry_args("notify-gitea", &["--prometheus-url", &prometheus.url()]);
    let set_error_ratio = |value: f64| {
        exporter.set(Some(value));
        let query = ERROR_QUERY.replace("{{variant}}", "canary");
        wait_until(&format!("Prometheus to see error ratio {value}"), T, || {
            let data = prometheus.query(&query)?;
            let seen = data["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if seen == Some(value) { Ok(()) } else { Err(format!("Prometheus answers {data}")) }
        });
    };
    let gitea = Gitea::start();
    gitea.create_repo("shop", false);
    let commit = |tag: &str| {
        let manifest = deployment("shop", None, &format!("registry.example/shop:{tag}"), 3);
        gitea.commit_files("shop", "main", &[("app/deployment.yaml", &manifest)], &format!("shop {tag}"))
    };
    secret(&s, "gitea-read", &[("username", GITEA_ADMIN), ("password", gitea.token())]);
    secret(&s, "gitea-status", &[("token", gitea.token())]);
    notifier(
        &s,
        "statuses",
        serde_json::json!({"provider": "gitea", "address": gitea.api_url(), "secretRef": {"name": "gitea-status"}}),
    );
    let context = format!("ferry/{}/shop", s.ns());

    set_error_ratio(0.0);
    let v1 = commit("1.0");
    let steps = serde_json::json!([{"setWeight": 34}, analysis_step("result < 0.05", 2)]);
    let app = s.create_app(
        s.application("shop")
            .repo(&gitea.clone_url("shop"))
            .secret_ref("gitea-read")
            .interval("1m")
            .prune(true)
            .canary("shop", steps),
    );
    app.wait_synced(&v1, T);
    wait_statuses(&gitea, &v1, &context, "success");

    // A good canary: pending while it rolls out and analyses, success once Ready at v2.
    let v2 = commit("2.0");
    app.ferry_sync();
    let (states, done) = wait_statuses(&gitea, &v2, &context, "success");
    assert_eq!(states.first().map(String::as_str), Some("pending"), "{states:?}");
    assert!(done["description"].as_str().is_some_and(|d| !d.is_empty()), "{done}");

    // A failing canary: pending, then failure naming why.
    set_error_ratio(0.5);
    let v3 = commit("3.0");
    app.ferry_sync();
    let (states, failed) = wait_statuses(&gitea, &v3, &context, "failure");
    assert_eq!(states.first().map(String::as_str), Some("pending"), "{states:?}");
    assert!(failed["description"].as_str().is_some_and(|d| d.contains("RolloutAborted")), "{failed}");
    // Sent on change only: no state repeats in a row.
    assert!(states.windows(2).all(|w| w[0] != w[1]), "{states:?}");
    assert_nothing_leaks(&s, &[gitea.token()]);
}
