//! Running kustomize and helm as untrusted, offline, bounded processes.
//!
//! The environment is cleared (no proxy settings, no cloud credentials, no KUBECONFIG leak into a
//! renderer) except `PATH`; `HOME` and every cache or config directory point into a temp dir
//! that dies with the render, so nothing a chart or kustomization does persists or reads the
//! user's configuration. stdin is closed so nothing can prompt. The renderer runs in its own
//! process group, and a timeout kills the whole group: kustomize starts `git` for remote bases.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    process::Command,
};

use super::error::{RenderError, RenderLimit, Tool};

/// A proxy nobody listens on (the discard port): requests through it fail at once.
const OFFLINE_PROXY: &str = "http://127.0.0.1:9";

/// How much of a renderer's stderr goes into an error message.
const STDERR_LIMIT: usize = 2000;

/// What a finished renderer printed.
pub(crate) struct ToolOutput {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// One renderer invocation.
pub(crate) struct ToolRun<'a> {
    pub tool: Tool,
    pub bin: &'a Path,
    pub args: Vec<OsString>,
    /// A private temp dir: HOME and working directory.
    pub home: &'a Path,
    pub env: Vec<(&'static str, PathBuf)>,
    pub timeout: Duration,
    /// The source path as the user wrote it, for errors.
    pub shown_path: &'a str,
    /// Most bytes the renderer may print on stdout (`--max-render-bytes`): past it the
    /// renderer is killed and the render fails naming the limit.
    pub max_stdout: u64,
}

impl ToolRun<'_> {
    pub(crate) async fn run(self) -> Result<ToolOutput, RenderError> {
        let mut cmd = Command::new(self.bin);
        cmd.args(&self.args)
            .env_clear()
            .env("HOME", self.home)
            // Remote bases clone with git: never let it wait for a password.
            .env("GIT_TERMINAL_PROMPT", "0")
            // Defence in depth behind the refusal of remote references: git may only read local
            // files, and HTTP clients (Go honours these) go to a closed port instead of the network.
            .env("GIT_ALLOW_PROTOCOL", "file")
            .env("HTTP_PROXY", OFFLINE_PROXY)
            .env("HTTPS_PROXY", OFFLINE_PROXY)
            .env("http_proxy", OFFLINE_PROXY)
            .env("https_proxy", OFFLINE_PROXY)
            .current_dir(self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => {
                RenderError::ToolMissing { tool: self.tool, bin: self.bin.display().to_string() }
            }
            _ => RenderError::Io { path: format!("running {} ({})", self.tool, self.bin.display()), cause },
        })?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both pipes were requested")
        };
        let max_stdout = self.max_stdout;
        let finished = async {
            let (out, err) = tokio::join!(
                async {
                    let out = read_capped(stdout, max_stdout).await;
                    // Past the limit nobody reads the pipe any more: end the renderer (and its
                    // children) now, or it would block on a full pipe until the timeout.
                    if matches!(out, Ok(None)) {
                        kill_group(pid);
                    }
                    out
                },
                read_tail(stderr, STDERR_KEEP),
            );
            let status = child.wait().await;
            (out, err, status)
        };
        let io = |cause| RenderError::Io { path: format!("running {}", self.tool), cause };
        match tokio::time::timeout(self.timeout, finished).await {
            Ok((Ok(Some(stdout)), Ok(stderr), Ok(status))) => Ok(ToolOutput {
                success: status.success(),
                stdout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }),
            Ok((Ok(None), _, _)) => Err(RenderError::TooLarge {
                path: self.shown_path.to_owned(),
                limit: RenderLimit::Bytes(max_stdout),
            }),
            Ok((Err(cause), _, _) | (_, Err(cause), _) | (_, _, Err(cause))) => Err(io(cause)),
            Err(_) => {
                // Dropping the future killed the renderer itself (kill_on_drop); its children
                // share its process group, so end them too.
                kill_group(pid);
                Err(RenderError::Timeout {
                    tool: self.tool,
                    path: self.shown_path.to_owned(),
                    after: self.timeout,
                })
            }
        }
    }
}

/// How much of the end of a renderer's stderr is kept: the error that stopped it is printed
/// last, and anything before it is trimmed further by [`clean_stderr`].
const STDERR_KEEP: usize = 64 * 1024;

/// All of `pipe` if it holds at most `limit` bytes; `None` as soon as it holds more.
async fn read_capped(mut pipe: impl AsyncRead + Unpin, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = read_some(&mut pipe, &mut chunk).await?;
        if n == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() as u64 > limit {
            return Ok(None);
        }
    }
}

/// The last `keep` bytes (about) of `pipe`, read to its end so the writer never blocks.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, keep: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0; 8192];
    loop {
        let n = read_some(&mut pipe, &mut chunk).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > 2 * keep {
            out.drain(..out.len() - keep);
        }
    }
}

/// One read into `buf` (tokio's `AsyncReadExt` needs a tokio feature nothing else in the tree
/// enables); 0 at the end of the stream.
async fn read_some(pipe: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut read = ReadBuf::new(buf);
        std::pin::Pin::new(&mut *pipe).poll_read(cx, &mut read).map_ok(|()| read.filled().len())
    })
    .await
}

/// SIGKILLs the process group `pid` leads (the renderer was started as its leader).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) has no memory effects; the group is the one we created.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// A renderer's stderr made fit for a status message: our temp paths and the checkout location
/// replaced by what the user knows, lines joined with ` | `, length bounded (keeping the end,
/// where both tools print the error that stopped them).
pub(crate) fn clean_stderr(stderr: &str, replacements: &[(&Path, &str)]) -> String {
    let mut s = stderr.trim().to_owned();
    for (path, with) in replacements {
        let p = path.to_string_lossy();
        if p.is_empty() {
            continue;
        }
        // Below the repository root, paths read as the user writes them: `apps/base`.
        let below = if *with == "." { String::new() } else { format!("{with}/") };
        s = s.replace(&format!("{p}/"), &below).replace(&*p, with);
    }
    // One line: the message lands in a condition, an Event and a log line.
    s = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
    if s.is_empty() {
        return "(no output on stderr)".into();
    }
    if s.len() > STDERR_LIMIT {
        let mut start = s.len() - STDERR_LIMIT;
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s = format!("…{}", &s[start..]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_trimmed_bounded_and_free_of_our_paths() {
        let root = Path::new("/tmp/export-123/tree");
        let overlay = Path::new("/tmp/.tmpAbC");
        let s = clean_stderr(
            "  Error: accumulating resources from '/tmp/export-123/tree/apps/base': missing; overlay /tmp/.tmpAbC/kustomization.yaml\n",
            &[(root, "."), (overlay, "<overlay>")],
        );
        assert_eq!(
            s,
            "Error: accumulating resources from 'apps/base': missing; overlay <overlay>/kustomization.yaml"
        );
        let long = "x".repeat(5000) + "THE END";
        let s = clean_stderr(&long, &[]);
        assert!(s.ends_with("THE END") && s.chars().count() <= STDERR_LIMIT + 1, "{}", s.len());
        assert_eq!(clean_stderr(" \n", &[]), "(no output on stderr)");
        assert_eq!(clean_stderr("warning: a\n\n  Error: b\n", &[]), "warning: a | Error: b");
    }

    #[tokio::test]
    async fn missing_binary_and_timeout() {
        let home = tempfile::tempdir().unwrap();
        let run = |bin: &'static str, args: &[&str], timeout| ToolRun {
            tool: Tool::Kustomize,
            bin: Path::new(bin),
            args: args.iter().map(OsString::from).collect(),
            home: home.path(),
            env: vec![],
            timeout,
            shown_path: "apps/x",
            max_stdout: u64::MAX,
        };
        let err = run("/nonexistent/kustomize", &[], Duration::from_secs(5)).run().await.err().unwrap();
        assert_eq!(err.category(), "tool_missing", "{err}");
        assert!(err.to_string().contains("/nonexistent/kustomize"), "{err}");

        // A child that would outlive its parent: both must be gone after the timeout.
        let marker = home.path().join("grandchild-pid");
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let started = std::time::Instant::now();
        let err = run("sh", &["-c", &script], Duration::from_millis(300)).run().await.err().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(err.to_string(), "kustomize on apps/x did not finish within 300ms and was killed");
        let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        // The grandchild was SIGKILLed; once reaped by init it disappears. Poll, don't sleep-assert.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "grandchild {pid} still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Issue 19, defect 13: a renderer's output was read whole. Past the limit the renderer is
    /// killed at once (not left to the timeout) and the error names the limit.
    #[tokio::test]
    async fn output_past_the_limit_kills_the_renderer_and_names_the_limit() {
        let home = tempfile::tempdir().unwrap();
        let run = |script: &str, max_stdout| ToolRun {
            tool: Tool::Kustomize,
            bin: Path::new("sh"),
            args: vec!["-c".into(), script.into()],
            home: home.path(),
            env: vec![],
            timeout: Duration::from_secs(60),
            shown_path: "apps/x",
            max_stdout,
        };
        let started = std::time::Instant::now();
        let err = run("yes ferry", 1 << 20).run().await.err().expect("endless output is refused");
        assert!(started.elapsed() < Duration::from_secs(30), "killed, not timed out");
        assert_eq!(err.category(), "too_large");
        assert_eq!(
            err.to_string(),
            "apps/x: the render exceeds the limit of 1048576 bytes (--max-render-bytes); split the Application or raise the limit"
        );
        let out = run("printf 12345", 5).run().await.unwrap();
        assert_eq!(out.stdout, b"12345");
        assert!(run("printf 123456", 5).run().await.is_err());
        // stderr is drained whatever its size and only its end is kept.
        let out = run("yes e | head -c 1000000 >&2; echo THE END >&2", 5).run().await.unwrap();
        assert!(out.stderr.len() <= 2 * STDERR_KEEP && out.stderr.ends_with("THE END\n"));
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        let home = tempfile::tempdir().unwrap();
        let out = ToolRun {
            tool: Tool::Helm,
            bin: Path::new("sh"),
            args: vec!["-c".into(), "env".into()],
            home: home.path(),
            env: vec![("HELM_CACHE_HOME", home.path().join("cache"))],
            timeout: Duration::from_secs(10),
            shown_path: ".",
            max_stdout: u64::MAX,
        }
        .run()
        .await
        .unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(out.success);
        // Whatever this test process has (CARGO_*, RUST_*, USER...), the renderer sees only
        // what ferry sets, plus what sh itself adds.
        let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        for name in &names {
            assert!(
                [
                    "HOME",
                    "PATH",
                    "GIT_TERMINAL_PROMPT",
                    "GIT_ALLOW_PROTOCOL",
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "HELM_CACHE_HOME",
                    "PWD",
                    "OLDPWD",
                    "SHLVL",
                    "_"
                ]
                .contains(name),
                "unexpected variable {name} in {env}"
            );
        }
        assert!(env.contains(&format!("HOME={}", home.path().display())), "{env}");
        assert!(env.contains("HELM_CACHE_HOME="), "{env}");
        assert!(env.contains("GIT_ALLOW_PROTOCOL=file\n"), "{env}");
        assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:9\n"), "{env}");
    }
}
