//! SSH server fixture: Debian's OpenSSH `sshd` on a free loopback port, in the foreground
//! (`-D -e`), with a generated ed25519 host key and one authorized client key, for the
//! current user. Git over SSH runs `git-upload-pack '<path>'` in the session, so any
//! repository on this machine is reachable as `ssh://<user>@127.0.0.1:<port>/<absolute path>`,
//! e.g. a [`super::GitServer`]'s bare repository.
//!
//! Only the standard library is used. Drop kills sshd (and the session processes it forked)
//! and removes the temporary directory.

#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SSHD: &str = "/usr/sbin/sshd";

/// A generated SSH key pair.
#[derive(Clone)]
pub struct SshKey {
    /// Private key in OpenSSH format.
    pub private: String,
    /// `ssh-ed25519 AAAA... comment`
    pub public: String,
}

impl fmt::Debug for SshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshKey").field("public", &self.public).field("private", &"***").finish()
    }
}

impl SshKey {
    /// Generates an unencrypted ed25519 key with `ssh-keygen`.
    pub fn generate(dir: &Path, name: &str) -> SshKey {
        let path = dir.join(name);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("pub"));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e}"));
        assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
        let private = fs::read_to_string(&path).unwrap();
        let public = fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap().trim().to_string();
        SshKey { private, public }
    }

    /// `<type> <base64>` without the comment.
    pub fn public_key_fields(&self) -> String {
        self.public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }
}

/// A running sshd.
pub struct SshServer {
    root: PathBuf,
    addr: SocketAddr,
    user: String,
    host_key: SshKey,
    client_key: SshKey,
    child: Option<Child>,
}

impl fmt::Debug for SshServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshServer").field("addr", &self.addr).field("user", &self.user).finish()
    }
}

impl SshServer {
    /// Starts sshd; panics with its log if it does not accept SSH connections within 20s.
    pub fn start() -> SshServer {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (tests/testenv/deps.sh does)"
        );
        let root = make_temp_dir();
        let host_key = SshKey::generate(&root, "host_key");
        let client_key = SshKey::generate(&root, "client_key");
        fs::write(root.join("authorized_keys"), format!("{}\n", client_key.public)).unwrap();
        let user = current_user();
        if is_root() {
            // sshd running as root wants its privilege separation directory.
            let _ = fs::create_dir_all("/run/sshd");
            let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        }

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = root.join("sshd_config");
            fs::write(&config, sshd_config(&root, port, &user)).unwrap();
            let log_path = root.join("sshd.log");
            let log = fs::File::create(&log_path).unwrap();
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                // Its own process group, so Drop can end the session processes sshd forks too.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let mut server = SshServer {
                root: root.clone(),
                addr,
                user: user.clone(),
                host_key: host_key.clone(),
                client_key: client_key.clone(),
                child: Some(child),
            };
            if server.wait_ready(Duration::from_secs(20)) {
                return server;
            }
            last_log = server.log();
            server.stop();
            // Lost the race for the port, or a real failure: the log tells which.
        }
        let _ = fs::remove_dir_all(&root);
        panic!("sshd did not start; last log:\n{last_log}");
    }

    /// `ssh://<user>@127.0.0.1:<port><absolute path>`
    pub fn url_for(&self, repo: &Path) -> String {
        assert!(repo.is_absolute(), "sshd fixture URLs need absolute paths: {}", repo.display());
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.addr.port(), repo.display())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key sshd accepts.
    pub fn client_key(&self) -> &SshKey {
        &self.client_key
    }

    /// The server's host key.
    pub fn host_key(&self) -> &SshKey {
        &self.host_key
    }

    /// A known_hosts line trusting this server: `[127.0.0.1]:<port> ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.addr.port(), self.host_key.public_key_fields())
    }

    /// A directory for a test's own files (removed with the fixture).
    pub fn scratch_dir(&self) -> PathBuf {
        let dir = self.root.join("scratch");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// sshd's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("sshd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-" {
                    let _ = stream.write_all(b"SSH-2.0-probe\r\n");
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group id is sshd's pid (process_group(0)); this reaches only what it forked.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn sshd_config(root: &Path, port: u16, user: &str) -> String {
    format!(
        "\
ListenAddress 127.0.0.1:{port}
HostKey {root}/host_key
PidFile none
AuthorizedKeysFile {root}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
PermitUserEnvironment no
LogLevel VERBOSE
MaxStartups 50:30:100
",
        root = root.display()
    )
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("cannot run id -un");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "cannot determine the current user name");
    user
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener.local_addr().unwrap().port()
}

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("ferry-sshd-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    // sshd reads the host key and authorized_keys from here; keep it private to the user.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}
