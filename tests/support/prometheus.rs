//! A real Prometheus (Debian's `prometheus` package, installed by `tests/testenv/deps.sh`) as a
//! child process: its own temp dir for the config and the TSDB, a free loopback port, every
//! target scraped each second under job `ferry`. Killed when dropped.
//!
//! Queries go through the HTTP API (`/api/v1/query`) over a plain TCP connection: HTTP/1.0 with
//! `Connection: close`, so the answer is the bytes up to EOF (no chunking, no keep-alive).

use std::{
    fs::{self, File},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::wait_until;

/// The binary of Debian's `prometheus` package.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// How long Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one HTTP request to Prometheus.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Prometheus scraping a fixed list of targets.
pub struct Prometheus {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second as job
    /// `ferry`, and waits until it is ready.
    pub fn start(targets: &[String]) -> Prometheus {
        Prometheus::spawn(targets, false)
    }

    /// Starts Prometheus scraping only itself (job `prometheus`): for checking the harness and
    /// PromQL without any other process.
    pub fn start_scraping_itself() -> Prometheus {
        Prometheus::spawn(&[], true)
    }

    fn spawn(targets: &[String], scrape_self: bool) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus package (tests/testenv/deps.sh does)"
        );
        let mut last_log = String::new();
        // Another process may take the free port between our probe and Prometheus's bind.
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new().prefix("ferry-prometheus-").tempdir().expect("temp dir");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("a loopback address");
            let config = dir.path().join("prometheus.yml");
            fs::write(&config, config_yaml(targets, scrape_self.then_some(addr)))
                .expect("write prometheus.yml");
            let log = File::create(dir.path().join("prometheus.log")).expect("create prometheus.log");
            let child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
            let mut prometheus = Prometheus { dir, addr, child: Some(child) };
            if prometheus.wait_ready() {
                return prometheus;
            }
            prometheus.stop();
            last_log = prometheus.log();
        }
        panic!("prometheus did not become ready; its last log:\n{last_log}");
    }

    /// Waits for `/-/ready`; false when Prometheus exits first (e.g. the port was taken).
    fn wait_ready(&mut self) -> bool {
        let child = self.child.as_mut().expect("prometheus was started");
        let mut exited = false;
        wait_until("prometheus to answer /-/ready", READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = true;
                return Ok(status.to_string());
            }
            match try_get(self.addr, "/-/ready") {
                Ok((200, _)) => Ok(String::new()),
                Ok((code, body)) => Err(format!("{code}: {}", body.trim())),
                Err(e) => Err(e),
            }
        });
        !exited
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prometheus's log so far (warnings and errors), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Evaluates `promql` as an instant query at now. `Ok` is the answer's `data`
    /// (`{"resultType": ..., "result": ...}`); `Err` is Prometheus's error (a bad expression,
    /// an execution error) or a transport failure.
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        self.api(&format!("/api/v1/query?query={encoded}"))
    }

    /// Waits until `promql` returns at least one series (or a scalar); returns the result.
    pub fn wait_for_series(&self, promql: &str, timeout: Duration) -> Value {
        wait_until(&format!("prometheus to return a series for `{promql}`"), timeout, || {
            let data = self.query(promql)?;
            if has_series(&data) { Ok(data["result"].clone()) } else { Err("no series".to_string()) }
        })
    }

    /// `Ok(n)` when there are `n > 0` active targets and every one was scraped successfully the
    /// last time; `Err` names the targets that are not up (with Prometheus's reason).
    pub fn targets_up(&self) -> Result<usize, String> {
        let data = self.api("/api/v1/targets?state=active")?;
        let targets = data["activeTargets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            return Err("no active targets yet".to_string());
        }
        let down: Vec<String> = targets
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| format!("{} is {} ({})", t["scrapeUrl"], t["health"], t["lastError"]))
            .collect();
        if down.is_empty() { Ok(targets.len()) } else { Err(down.join("; ")) }
    }

    /// Waits until [`Prometheus::targets_up`] is `Ok`.
    pub fn wait_targets_up(&self, timeout: Duration) -> usize {
        wait_until("every Prometheus target to be up", timeout, || self.targets_up())
    }

    /// A GET of the HTTP API; `Ok` is the `data` of a `"status": "success"` answer.
    fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (code, body) = try_get(self.addr, path_and_query)?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| {
            format!("HTTP {code}, not JSON ({e}): {}", body.chars().take(500).collect::<String>())
        })?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("HTTP {code}: {}: {}", answer["errorType"], answer["error"]))
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                eprintln!("----- prometheus's log -----\n{log}\n----- end of prometheus's log -----");
            }
        }
    }
}

/// Whether a query's `data` holds anything: a non-empty vector or matrix, or a scalar/string.
pub fn has_series(data: &Value) -> bool {
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => data["result"].as_array().is_some_and(|r| !r.is_empty()),
        Some("scalar" | "string") => true,
        _ => false,
    }
}

fn config_yaml(targets: &[String], itself: Option<SocketAddr>) -> String {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    if !targets.is_empty() {
        let list = serde_json::to_string(targets).expect("strings serialize");
        yaml.push_str(&format!("- job_name: ferry\n  static_configs:\n  - targets: {list}\n"));
    }
    if let Some(addr) = itself {
        yaml.push_str(&format!("- job_name: prometheus\n  static_configs:\n  - targets: [\"{addr}\"]\n"));
    }
    yaml
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// One HTTP/1.0 GET; returns the status code and the body.
fn try_get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP head in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}
