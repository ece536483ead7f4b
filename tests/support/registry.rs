//! A real OCI registry for tests: CNCF distribution's `registry` (built by
//! `tests/testenv/build.sh registry`) as a child process on a free loopback port, with its config
//! and filesystem storage in a temp dir; optionally behind htpasswd (bcrypt, written by Debian's
//! `htpasswd -B` from apache2-utils) basic auth and/or TLS (certificate from a [`TestCa`]).
//! Killed when dropped.
//!
//! distribution does not insist on TLS for htpasswd auth (its docs advise it), and helm and oras
//! send credentials over plain HTTP when told `--plain-http`; so auth works either way.
//!
//! Pushes go through the real clients: `helm push` for charts, and `oras push` for directories
//! of plain manifests in the layout `flux push artifact` makes (one gzipped tarball layer of
//! media type [`FLUX_CONTENT_MEDIA_TYPE`], config of media type [`FLUX_CONFIG_MEDIA_TYPE`]).
//!
//! The tools' binaries are found like [`super::helm_bin`] finds helm: in the build cache under
//! the version pinned in `tests/testenv/versions.env`, built first when missing.

use std::{
    fs::{self, File},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{BasicAuth, TestCa, chart_repo::run_ok, helm_command, pinned_version, repo_root, wait_until};

/// The layer media type of `flux push artifact`: a gzipped tarball of the pushed directory.
pub const FLUX_CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
/// The config media type of `flux push artifact`.
pub const FLUX_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// How long the registry may take to answer `/v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A binary that `tests/testenv/build.sh <component>` puts in
/// `$FERRY_CACHE/testenv/<component>-<version>/bin/<binary>` (default `~/.cache/ferry`), the
/// version read from `version_var` in `tests/testenv/versions.env`. Builds the component first
/// when its `.complete` marker is missing (the script locks against other processes and skips
/// finished builds). Unlike `tools.rs`'s helper, the binary may be named differently from the
/// component (`age-keygen` comes with `age`).
pub fn testenv_tool(component: &str, version_var: &str, binary: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let cache = std::env::var_os("FERRY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/ferry")
    });
    let dir = cache.join("testenv").join(format!("{component}-{}", pinned_version(version_var)));
    let bin = dir.join("bin").join(binary);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join(".complete").exists() {
        eprintln!("building {component} with tests/testenv/build.sh (first run only)");
        let status = Command::new("bash")
            .arg(repo_root().join("tests/testenv/build.sh"))
            .arg(component)
            .stdin(Stdio::null())
            .status()
            .expect("run tests/testenv/build.sh");
        assert!(status.success(), "tests/testenv/build.sh {component} failed (its output is above)");
    }
    assert!(bin.is_file(), "{} is missing after a complete build", bin.display());
    bin
}

/// distribution's `registry`, at `REGISTRY_VERSION`.
pub fn registry_bin() -> PathBuf {
    testenv_tool("registry", "REGISTRY_VERSION", "registry")
}

/// `oras`, at `ORAS_VERSION`.
pub fn oras_bin() -> PathBuf {
    testenv_tool("oras", "ORAS_VERSION", "oras")
}

/// `crane` (go-containerregistry), at `CRANE_VERSION`.
pub fn crane_bin() -> PathBuf {
    testenv_tool("crane", "CRANE_VERSION", "crane")
}

/// Debian's `htpasswd` (apache2-utils, installed by `tests/testenv/deps.sh`).
pub const HTPASSWD: &str = "/usr/bin/htpasswd";

/// A bcrypt htpasswd line `user:$2y$...` made by the real `htpasswd -nbB`.
pub fn htpasswd_line(username: &str, password: &str) -> String {
    assert!(
        Path::new(HTPASSWD).exists(),
        "{HTPASSWD} is missing: install Debian's apache2-utils (tests/testenv/deps.sh does)"
    );
    let mut cmd = Command::new(HTPASSWD);
    cmd.args(["-n", "-b", "-B", username, password]).stdin(Stdio::null());
    let out = run_ok(cmd, "htpasswd -nbB");
    out.lines().next().unwrap_or_default().trim().to_string()
}

/// How a [`OciRegistry`] is served.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// htpasswd basic auth with these credentials.
    pub basic_auth: Option<BasicAuth>,
    /// HTTPS with a certificate from a fresh [`TestCa`] (see [`OciRegistry::ca_file`]).
    pub tls: bool,
}

/// A running distribution registry.
pub struct OciRegistry {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
    auth: Option<BasicAuth>,
    ca: Option<TestCa>,
}

impl OciRegistry {
    /// Plain HTTP, no auth.
    pub fn start() -> OciRegistry {
        OciRegistry::start_with(RegistryOptions::default())
    }

    /// Plain HTTP behind htpasswd basic auth.
    pub fn start_with_auth(username: &str, password: &str) -> OciRegistry {
        OciRegistry::start_with(RegistryOptions {
            basic_auth: Some(BasicAuth { username: username.to_string(), password: password.to_string() }),
            tls: false,
        })
    }

    pub fn start_with(options: RegistryOptions) -> OciRegistry {
        let bin = registry_bin();
        let ca = options.tls.then(TestCa::new);
        let cert = ca.as_ref().map(|ca| ca.issue_server_cert("registry"));
        let mut last_log = String::new();
        // Another process may take the free port between our probe and the registry's bind.
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new().prefix("ferry-registry-").tempdir().expect("temp dir");
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a loopback address");
            let mut config = format!(
                "version: 0.1\nlog:\n  level: warn\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: ferry-test-secret\n",
                data = dir.path().join("data").display(),
            );
            if let Some((crt, key)) = &cert {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    crt.display(),
                    key.display()
                ));
            }
            if let Some(auth) = &options.basic_auth {
                let htpasswd = dir.path().join("htpasswd");
                fs::write(&htpasswd, htpasswd_line(&auth.username, &auth.password) + "\n")
                    .expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).expect("write the registry config");
            let log = File::create(dir.path().join("registry.log")).expect("create registry.log");
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config_path)
                .env_remove("REGISTRY_HTTP_ADDR")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut registry =
                OciRegistry { dir, addr, child: Some(child), auth: options.basic_auth.clone(), ca: None };
            let ca_file = ca.as_ref().map(TestCa::ca_file);
            if registry.wait_ready(ca_file.as_deref()) {
                registry.ca = ca;
                return registry;
            }
            registry.stop();
            last_log = registry.log();
        }
        panic!("the registry did not become ready; its last log:\n{last_log}");
    }

    /// Waits for `/v2/` to answer as a registry (200, or 401 behind auth); false when the
    /// registry exits first (e.g. the port was taken).
    fn wait_ready(&mut self, ca_file: Option<&Path>) -> bool {
        let scheme = if ca_file.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/v2/", self.addr);
        let child = self.child.as_mut().expect("the registry was started");
        let mut exited = false;
        wait_until("the registry to answer /v2/", READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = true;
                return Ok(status.to_string());
            }
            let mut curl = Command::new("curl");
            curl.args(["-sS", "--max-time", "5", "-o", "/dev/null", "-D", "-"]);
            if let Some(ca) = ca_file {
                curl.arg("--cacert").arg(ca);
            }
            let out = curl.arg(&url).stdin(Stdio::null()).output().map_err(|e| format!("curl: {e}"))?;
            let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
            if head.contains("docker-distribution-api-version: registry/2.0") {
                Ok(String::new())
            } else {
                Err(format!("{head}{}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        !exited
    }

    /// `127.0.0.1:<port>`: the registry host for references (`<host>/<repo>:<tag>`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `oci://127.0.0.1:<port>/<path>` (e.g. `oci_url("charts")`, for `helm push` and ferry).
    pub fn oci_url(&self, path: &str) -> String {
        format!("oci://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// `http://127.0.0.1:<port>` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether clients must be told `--plain-http` / `insecure: true`.
    pub fn plain_http(&self) -> bool {
        self.ca.is_none()
    }

    /// The CA certificate that signed the registry's certificate (TLS only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_file)
    }

    pub fn auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// The registry's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The storage root (`docker/registry/v2/...`), e.g. to count or corrupt blobs.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `helm push <tgz> <oci_url>` (e.g. `oci://127.0.0.1:PORT/charts`) with the real helm:
    /// `--plain-http` or `--ca-file`, and `--username/--password` when the registry has auth.
    /// Returns the pushed manifest's digest (`sha256:...`).
    pub fn helm_push(&self, tgz: &Path, oci_url: &str) -> String {
        let home = tempfile::Builder::new().prefix("ferry-helm-").tempdir().expect("temp dir");
        let mut cmd = helm_command(home.path());
        cmd.arg("push").arg(tgz).arg(oci_url);
        match self.ca_file() {
            Some(ca) => cmd.arg("--ca-file").arg(ca),
            None => cmd.arg("--plain-http"),
        };
        if let Some(auth) = &self.auth {
            cmd.arg("--username").arg(&auth.username).arg("--password").arg(&auth.password);
        }
        let out = cmd.output().expect("run helm push");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "helm push {} {oci_url} failed: {text}\nregistry log:\n{}",
            tgz.display(),
            self.log()
        );
        // helm prints "Pushed: ..." and "Digest: sha256:..." (on stderr in helm 3).
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Digest: "))
            .map(|d| d.trim().to_string())
            .unwrap_or_else(|| panic!("helm push printed no digest: {text}"))
    }

    /// An `oras` command with this registry's flags after `args` (`--plain-http` or `--ca-file`,
    /// `-u/-p` when it has auth) and a private registry config, so `~/.docker/config.json` is
    /// never read.
    pub fn oras(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(oras_bin());
        cmd.args(args)
            .arg("--registry-config")
            .arg(self.dir.path().join("oras-auth.json"))
            .env("HOME", self.dir.path())
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        match self.ca_file() {
            Some(ca) => cmd.arg("--ca-file").arg(ca),
            None => cmd.arg("--plain-http"),
        };
        if let Some(auth) = &self.auth {
            cmd.arg("-u").arg(&auth.username).arg("-p").arg(&auth.password);
        }
        cmd
    }

    /// A `crane` command for this plain-HTTP registry (`--insecure`), with a private Docker
    /// config (logged in when the registry has auth), so `~/.docker/config.json` is never read.
    pub fn crane(&self, args: &[&str]) -> Command {
        assert!(self.plain_http(), "crane helpers serve plain-HTTP registries");
        let config = self.dir.path().join("crane-config");
        if let Some(auth) = &self.auth
            && !config.join("config.json").exists()
        {
            fs::create_dir_all(&config).expect("crane config dir");
            let mut login = Command::new(crane_bin());
            login
                .args(["auth", "login", &self.host(), "-u", &auth.username, "-p", &auth.password])
                .env("DOCKER_CONFIG", &config)
                .stdin(Stdio::null());
            run_ok(login, "crane auth login");
        }
        let mut cmd = Command::new(crane_bin());
        cmd.args(args).arg("--insecure").env("DOCKER_CONFIG", &config).stdin(Stdio::null());
        cmd
    }

    /// Pushes a tiny image to `<host>/<reference>` (`web:1.0.0`) with the real crane and no
    /// base image (no internet): `crane append` of one layer, a tarball of one file holding
    /// `content`, onto scratch. Returns the manifest digest (`sha256:...`).
    pub fn crane_push_image(&self, reference: &str, content: &str) -> String {
        let work = tempfile::Builder::new().prefix("ferry-crane-").tempdir().expect("temp dir");
        fs::write(work.path().join("version.txt"), content).expect("write the layer's file");
        let layer = work.path().join("layer.tar");
        let mut tar = Command::new("tar");
        tar.args(["--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf"])
            .arg(&layer)
            .arg("-C")
            .arg(work.path())
            .arg("version.txt")
            .stdin(Stdio::null());
        run_ok(tar, "tar the image layer");
        let target = format!("{}/{reference}", self.host());
        let layer_arg = layer.to_string_lossy().into_owned();
        run_ok(self.crane(&["append", "-f", &layer_arg, "-t", &target]), "crane append");
        run_ok(self.crane(&["digest", &target]), "crane digest").trim().to_string()
    }

    /// Pushes the directory `dir` of plain YAML manifests as `flux push artifact` would, with the
    /// real oras, to `<repo>:<tag>` on this registry (`reference` is `repo:tag`, without the
    /// host): one layer, a gzipped tarball (made by GNU tar, entries relative to `dir`, sorted,
    /// owner 0, mtime 0) of media type [`FLUX_CONTENT_MEDIA_TYPE`]; a `{}` config of media type
    /// [`FLUX_CONFIG_MEDIA_TYPE`]; an OCI image manifest without `artifactType` (oras uses image
    /// spec v1.0 when given `--config` and no `--artifact-type`, as Flux's manifests are) with
    /// Flux's `org.opencontainers.image.{created,source,revision}` annotations. One difference
    /// from Flux: oras annotates the layer with `org.opencontainers.image.title: artifact.tgz`.
    /// Returns the manifest digest (`sha256:...`).
    pub fn oras_push_manifests(&self, dir: &Path, reference: &str) -> String {
        self.oras_push_manifests_with(
            dir,
            reference,
            "ferry-test@sha1:0000000000000000000000000000000000000000",
        )
    }

    /// [`OciRegistry::oras_push_manifests`] with a given `org.opencontainers.image.revision`
    /// (Flux writes `<branch>@sha1:<commit>`).
    pub fn oras_push_manifests_with(&self, dir: &Path, reference: &str, revision: &str) -> String {
        let work = tempfile::Builder::new().prefix("ferry-oras-push-").tempdir().expect("temp dir");
        let mut entries: Vec<String> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "{} is empty: nothing to push", dir.display());
        let mut tar = Command::new("tar");
        tar.arg("--sort=name")
            .args(["--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-czf"])
            .arg(work.path().join("artifact.tgz"))
            .arg("-C")
            .arg(dir)
            .arg("--")
            .args(&entries)
            .env("GZIP", "-n")
            .stdin(Stdio::null());
        run_ok(tar, "tar -czf artifact.tgz");
        fs::write(work.path().join("config.json"), "{}").expect("write config.json");
        let target = format!("{}/{}", self.host(), reference);
        let created = format!("org.opencontainers.image.created={}", rfc3339_now());
        let source = "org.opencontainers.image.source=https://git.invalid/ferry-tests.git".to_string();
        let revision = format!("org.opencontainers.image.revision={revision}");
        let config = format!("config.json:{FLUX_CONFIG_MEDIA_TYPE}");
        let layer = format!("artifact.tgz:{FLUX_CONTENT_MEDIA_TYPE}");
        let mut cmd = self.oras(&[
            "push",
            &target,
            "--config",
            &config,
            "--annotation",
            &created,
            "--annotation",
            &source,
            "--annotation",
            &revision,
            "--format",
            "json",
            "--no-tty",
            &layer,
        ]);
        cmd.current_dir(work.path());
        let out = cmd.output().expect("run oras push");
        assert!(
            out.status.success(),
            "oras push {target} failed: {}{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("oras push --format json printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
        });
        answer["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest in oras's answer: {answer}"))
            .to_string()
    }

    /// `oras manifest fetch <host>/<reference>`: the manifest as JSON.
    pub fn fetch_manifest(&self, reference: &str) -> Value {
        let target = format!("{}/{}", self.host(), reference);
        let stdout =
            run_ok(self.oras(&["manifest", "fetch", &target]), &format!("oras manifest fetch {target}"));
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the manifest is not JSON ({e}): {stdout}"))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                eprintln!("----- the registry's log -----\n{log}\n----- end of the registry's log -----");
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as Flux writes `org.opencontainers.image.created`.
fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
