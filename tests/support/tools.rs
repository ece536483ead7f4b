//! The kustomize and helm binaries the test environment builds, for render tests that need the
//! real tools but no cluster.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
};

use super::repo_root;

/// `kustomize`, at the version pinned in `tests/testenv/versions.env`.
pub fn kustomize_bin() -> PathBuf {
    pinned_tool("kustomize", "KUSTOMIZE_VERSION")
}

/// `helm`, at the version pinned in `tests/testenv/versions.env`.
pub fn helm_bin() -> PathBuf {
    pinned_tool("helm", "HELM_VERSION")
}

/// A version from `tests/testenv/versions.env`.
pub fn pinned_version(var: &str) -> String {
    let path = repo_root().join("tests/testenv/versions.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(var).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{var} missing from {}", path.display()))
        .trim()
        .to_string()
}

/// Where `tests/testenv/build.sh` puts a component: `$FERRY_CACHE/testenv/<name>-<version>`
/// (default `~/.cache/ferry`). Builds it first when missing (once per process; the script
/// itself locks against other processes and skips finished builds).
fn pinned_tool(name: &str, version_var: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let cache = std::env::var_os("FERRY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/ferry")
    });
    let dir = cache.join("testenv").join(format!("{name}-{}", pinned_version(version_var)));
    let bin = dir.join("bin").join(name);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join(".complete").exists() {
        eprintln!("building {name} with tests/testenv/build.sh (first run only)");
        let status = Command::new("bash")
            .arg(repo_root().join("tests/testenv/build.sh"))
            .arg(name)
            .stdin(Stdio::null())
            .status()
            .expect("run tests/testenv/build.sh");
        assert!(status.success(), "tests/testenv/build.sh {name} failed (its output is above)");
    }
    assert!(bin.is_file(), "{} is missing after a complete build", bin.display());
    bin
}
