//! A Helm chart repository for tests: a static file server (hyper on its own tokio runtime and
//! thread) on a free loopback port, serving a temp directory that the real `helm` fills
//! (`helm package`, `helm repo index`).
//!
//! Options: HTTP basic auth, and HTTPS with a certificate from a throwaway CA made by the real
//! `openssl` CLI ([`TestCa`], whose `ca.crt` is what ferry gets as `caFile`). The server counts
//! requests per path and keeps a log of them (with the conditional headers the client sent);
//! it answers `If-None-Match` (content ETag) and `If-Modified-Since` (file mtime) with 304; it
//! can be told to be down (connections closed without an answer) or to fail every request with
//! a status.
//!
//! Everything (the server, its directory, the CA) goes away when the [`ChartRepo`] is dropped.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;

use super::{BasicAuth, helm_bin};

/// Realm announced in `WWW-Authenticate`.
const REALM: &str = "ferry-chart-repo";

/// A throwaway certificate authority made with the real `openssl` CLI, and server certificates
/// it signs (valid for `127.0.0.1` and `localhost`). Its files live in a temp dir that goes away
/// with it.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// A new CA (`ca.crt`, `ca.key`; ECDSA P-256, valid for a year).
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new().prefix("ferry-test-ca-").tempdir().expect("temp dir");
        let ca = TestCa { dir };
        openssl(
            ca.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "365",
                "-sha256",
                "-subj",
                "/CN=ferry-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
        );
        ca
    }

    /// The CA certificate (PEM): what a client is given to trust the servers.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA certificate's PEM text.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.ca_file()).expect("read ca.crt")
    }

    /// Issues a server certificate `<name>.crt` / `<name>.key` (PEM; the key unencrypted) for
    /// `127.0.0.1` and `localhost`. Returns (certificate, key).
    pub fn issue_server_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr, ext) =
            (format!("{name}.crt"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
        fs::write(
            self.dir.path().join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write the extensions file");
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "365",
                "-sha256",
                "-extfile",
                &ext,
            ],
        );
        (self.dir.path().join(crt), self.dir.path().join(key))
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (tests/testenv/deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a [`ChartRepo`] is served.
#[derive(Debug, Clone, Default)]
pub struct ChartRepoOptions {
    /// Require HTTP basic auth with these credentials (401 otherwise).
    pub basic_auth: Option<BasicAuth>,
    /// Serve HTTPS with a certificate from a fresh [`TestCa`].
    pub tls: bool,
}

/// One request the repository received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRepoRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub status: u16,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    /// Whether an `Authorization` header came with it (right or wrong).
    pub authorization: bool,
    pub user_agent: Option<String>,
}

struct Shared {
    root: PathBuf,
    auth: Option<BasicAuth>,
    down: AtomicBool,
    /// 0: serve normally; otherwise answer every request with this status.
    fail_status: AtomicU16,
    log: Mutex<Vec<ChartRepoRequest>>,
}

/// A running Helm chart repository (a static file server over a temp directory).
pub struct ChartRepo {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca: Option<TestCa>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ChartRepo {
    /// Plain HTTP, no auth.
    pub fn start() -> ChartRepo {
        ChartRepo::start_with(ChartRepoOptions::default())
    }

    /// Plain HTTP behind basic auth.
    pub fn start_with_auth(username: &str, password: &str) -> ChartRepo {
        ChartRepo::start_with(ChartRepoOptions {
            basic_auth: Some(BasicAuth { username: username.to_string(), password: password.to_string() }),
            tls: false,
        })
    }

    /// HTTPS (certificate signed by [`ChartRepo::ca_file`]), no auth.
    pub fn start_tls() -> ChartRepo {
        ChartRepo::start_with(ChartRepoOptions { basic_auth: None, tls: true })
    }

    pub fn start_with(options: ChartRepoOptions) -> ChartRepo {
        let dir = tempfile::Builder::new().prefix("ferry-chart-repo-").tempdir().expect("temp dir");
        let root = dir.path().join("www");
        fs::create_dir(&root).expect("create the served directory");
        let (ca, tls) = if options.tls {
            let ca = TestCa::new();
            let (cert, key) = ca.issue_server_cert("chart-repo");
            let acceptor = tls_acceptor(&cert, &key);
            (Some(ca), Some(acceptor))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            root,
            auth: options.basic_auth,
            down: AtomicBool::new(false),
            fail_status: AtomicU16::new(0),
            log: Mutex::new(Vec::new()),
        });
        // Port 0: the kernel picks a free port, and nobody can take it between probe and bind.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        // Its own runtime on its own thread: the server keeps answering while a test blocks on a
        // child process (helm, ferry) or runs on a current-thread runtime.
        let thread = std::thread::Builder::new()
            .name("chart-repo".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the chart repo");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, thread_shared, tls) => {}
                    }
                });
            })
            .expect("spawn the chart repo thread");
        ChartRepo { dir, addr, shared, ca, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`: the repository's URL.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The served directory (charts and `index.yaml` go here).
    pub fn dir(&self) -> &Path {
        &self.shared.root
    }

    /// The CA certificate that signed the server's certificate (HTTPS only): ferry's `caFile`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_file)
    }

    pub fn auth(&self) -> Option<&BasicAuth> {
        self.shared.auth.as_ref()
    }

    /// `helm package` of `chart_dir` into the served directory; returns the `.tgz`. Call
    /// [`ChartRepo::index`] afterwards (or use [`ChartRepo::publish`]).
    pub fn package(&self, chart_dir: &Path) -> PathBuf {
        helm_package(chart_dir, self.dir())
    }

    /// `helm repo index <dir> --url <url>`: (re)writes `index.yaml` from every `.tgz` served.
    pub fn index(&self) {
        helm_repo_index(self.dir(), &self.url());
    }

    /// [`ChartRepo::package`] then [`ChartRepo::index`]; returns the `.tgz`.
    pub fn publish(&self, chart_dir: &Path) -> PathBuf {
        let tgz = self.package(chart_dir);
        self.index();
        tgz
    }

    /// How many requests (any method, any answer) came for `path` (e.g. `/index.yaml`).
    pub fn requests(&self, path: &str) -> usize {
        self.lock_log().iter().filter(|r| r.path == path).count()
    }

    /// Requests per path.
    pub fn request_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.lock_log().iter() {
            *counts.entry(r.path.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Every request so far, oldest first.
    pub fn request_log(&self) -> Vec<ChartRepoRequest> {
        self.lock_log().clone()
    }

    /// Forgets the requests so far.
    pub fn reset_requests(&self) {
        self.lock_log().clear();
    }

    /// Down: every new connection is closed at once, and requests on kept-alive ones are
    /// dropped without an answer. Nothing is logged while down.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Answer every request with `status` (e.g. 503) until called with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.fail_status.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Vec<ChartRepoRequest>> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ChartRepo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("read {}: {e}", key.display()));
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a rustls server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if shared.down.load(Ordering::SeqCst) {
            drop(tcp);
            continue;
        }
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(&shared, req) }
            });
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

/// One request. `Err` (while down) makes hyper drop the connection without an answer.
fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Answer, std::io::Error> {
    if shared.down.load(Ordering::SeqCst) {
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the chart repo is down"));
    }
    let text =
        |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut record = ChartRepoRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        status: 0,
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: text(header::IF_MODIFIED_SINCE),
        authorization: req.headers().contains_key(header::AUTHORIZATION),
        user_agent: text(header::USER_AGENT),
    };
    let answer = answer(shared, &req, &record);
    record.status = answer.status().as_u16();
    shared.log.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    Ok(answer)
}

fn answer(shared: &Shared, req: &Request<Incoming>, record: &ChartRepoRequest) -> Answer {
    let fail = shared.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        let status = StatusCode::from_u16(fail).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return simple(status, "failing on purpose\n");
    }
    if let Some(auth) = &shared.auth {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password))
        );
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            let mut answer = simple(StatusCode::UNAUTHORIZED, "unauthorized\n");
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                format!("Basic realm=\"{REALM}\"").parse().expect("a header value"),
            );
            return answer;
        }
    }
    let head = req.method() == hyper::Method::HEAD;
    if req.method() != hyper::Method::GET && !head {
        return simple(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
    }
    let Some(file) = resolve(&shared.root, &record.path) else {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    };
    let (Ok(content), Ok(meta)) = (fs::read(&file), fs::metadata(&file)) else {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    };
    let etag = content_etag(&content);
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let last_modified = httpdate::fmt_http_date(modified);
    let not_modified = match (&record.if_none_match, &record.if_modified_since) {
        // If-None-Match wins over If-Modified-Since (RFC 9110, 13.2.2).
        (Some(inm), _) => etag_matches(inm, &etag),
        (None, Some(ims)) => {
            httpdate::parse_http_date(ims).is_ok_and(|since| whole_seconds(modified) <= since)
        }
        (None, None) => false,
    };
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::CACHE_CONTROL, "no-cache");
    if not_modified {
        return builder.status(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new())).expect("a response");
    }
    let builder = builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(&file))
        .header(header::CONTENT_LENGTH, content.len());
    let body = if head { Bytes::new() } else { Bytes::from(content) };
    builder.body(Full::new(body)).expect("a response")
}

fn simple(status: StatusCode, body: &'static str) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a response")
}

/// The file under `root` for a request path; `None` for anything that is not a plain relative
/// path to a regular file.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded: String = url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative.as_os_str().is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

/// A strong ETag from the content: the same bytes always get the same tag.
fn content_etag(content: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let mut tag = String::from("\"");
    for b in &digest.as_ref()[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

/// `If-None-Match` against our tag (weak comparison, as RFC 9110 asks for GET).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// HTTP dates have whole seconds; so must the comparison.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => "application/x-yaml",
        Some("tgz" | "gz") => "application/gzip",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A `helm` command with its own config, cache, data and registry-credential dirs under `home`:
/// the user's repositories and logins are never read, and tests do not share state.
pub fn helm_command(home: &Path) -> Command {
    let mut cmd = Command::new(helm_bin());
    cmd.env("HOME", home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REGISTRY_CONFIG", home.join("config/registry/config.json"))
        .env("HELM_REPOSITORY_CONFIG", home.join("config/repositories.yaml"))
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .env_remove("HELM_KUBECONTEXT")
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_DEBUG")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to success; returns its stdout (panics with stderr otherwise).
pub(super) fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm package <chart_dir> --destination <dest>`; returns the `.tgz` helm wrote.
pub fn helm_package(chart_dir: &Path, dest: &Path) -> PathBuf {
    let home = tempfile::Builder::new().prefix("ferry-helm-").tempdir().expect("temp dir");
    let mut cmd = helm_command(home.path());
    cmd.arg("package").arg(chart_dir).arg("--destination").arg(dest);
    let stdout = run_ok(cmd, &format!("helm package {}", chart_dir.display()));
    // "Successfully packaged chart and saved it to: /path/name-version.tgz"
    let tgz = stdout
        .lines()
        .find_map(|l| l.split_once("saved it to: ").map(|(_, p)| PathBuf::from(p.trim())))
        .unwrap_or_else(|| panic!("helm package did not say where the chart went: {stdout}"));
    assert!(tgz.is_file(), "helm package said {} but there is no such file", tgz.display());
    tgz
}

/// `helm repo index <dir> --url <url>`.
pub fn helm_repo_index(dir: &Path, url: &str) {
    let home = tempfile::Builder::new().prefix("ferry-helm-").tempdir().expect("temp dir");
    let mut cmd = helm_command(home.path());
    cmd.arg("repo").arg("index").arg(dir).arg("--url").arg(url);
    run_ok(cmd, &format!("helm repo index {}", dir.display()));
}

/// A minimal chart to write to disk: `Chart.yaml` (apiVersion v2), `values.yaml`
/// (`greeting: hello` unless set) and one template, by default a ConfigMap named
/// `<release>-<chart>` with the chart's name and version and `.Values.greeting`.
#[derive(Debug, Clone)]
pub struct TestChart {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    /// `kubeVersion:` in Chart.yaml (a semver constraint, e.g. `>=1.30.0-0`).
    pub kube_version: Option<String>,
    /// `templates/configmap.yaml`'s text.
    pub template: Option<String>,
    /// `values.yaml`'s text.
    pub values: Option<String>,
}

/// The default template of a [`TestChart`].
pub const TEST_CHART_TEMPLATE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
data:
  chart: {{ .Chart.Name | quote }}
  version: {{ .Chart.Version | quote }}
  greeting: {{ .Values.greeting | quote }}
";

impl TestChart {
    pub fn new(name: &str, version: &str) -> TestChart {
        TestChart {
            name: name.to_string(),
            version: version.to_string(),
            app_version: None,
            kube_version: None,
            template: None,
            values: None,
        }
    }

    pub fn kube_version(mut self, constraint: &str) -> TestChart {
        self.kube_version = Some(constraint.to_string());
        self
    }

    pub fn template(mut self, text: &str) -> TestChart {
        self.template = Some(text.to_string());
        self
    }

    pub fn values(mut self, text: &str) -> TestChart {
        self.values = Some(text.to_string());
        self
    }

    pub fn app_version(mut self, version: &str) -> TestChart {
        self.app_version = Some(version.to_string());
        self
    }

    /// Writes the chart to `<parent>/<name>/`; returns that directory.
    pub fn write_in(&self, parent: &Path) -> PathBuf {
        let dir = parent.join(&self.name);
        fs::create_dir_all(dir.join("templates")).expect("create the chart's templates dir");
        let mut chart =
            format!("apiVersion: v2\nname: {}\nversion: {}\ntype: application\n", self.name, self.version);
        if let Some(v) = &self.app_version {
            chart.push_str(&format!("appVersion: {v:?}\n"));
        }
        if let Some(k) = &self.kube_version {
            chart.push_str(&format!("kubeVersion: {k:?}\n"));
        }
        fs::write(dir.join("Chart.yaml"), chart).expect("write Chart.yaml");
        fs::write(dir.join("values.yaml"), self.values.as_deref().unwrap_or("greeting: hello\n"))
            .expect("write values.yaml");
        fs::write(
            dir.join("templates/configmap.yaml"),
            self.template.as_deref().unwrap_or(TEST_CHART_TEMPLATE),
        )
        .expect("write the template");
        dir
    }

    /// Writes the chart into a new temp dir; returns it (keep it alive) and the chart's directory.
    pub fn write_temp(&self) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::Builder::new().prefix("ferry-test-chart-").tempdir().expect("temp dir");
        let dir = self.write_in(tmp.path());
        (tmp, dir)
    }
}
