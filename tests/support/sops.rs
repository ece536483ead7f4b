//! SOPS with age, for tests: keys from the real `age-keygen`, encryption and decryption with the
//! real `sops` CLI (both built by `tests/testenv/build.sh`, found in the build cache like
//! [`super::helm_bin`]).
//!
//! sops runs with a cleared environment (only `PATH`, and `HOME` and `XDG_CONFIG_HOME` pointing
//! at a fresh temp dir) in that temp dir as its working directory: no `SOPS_AGE_KEY_FILE`,
//! `SOPS_AGE_RECIPIENTS`, `~/.config/sops/age/keys.txt` or `.sops.yaml` of the user's is read.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::{chart_repo::run_ok, registry::testenv_tool};

/// `age`, at `AGE_VERSION`.
pub fn age_bin() -> PathBuf {
    testenv_tool("age", "AGE_VERSION", "age")
}

/// `age-keygen`, at `AGE_VERSION`.
pub fn age_keygen_bin() -> PathBuf {
    testenv_tool("age", "AGE_VERSION", "age-keygen")
}

/// `sops`, at `SOPS_VERSION`.
pub fn sops_bin() -> PathBuf {
    testenv_tool("sops", "SOPS_VERSION", "sops")
}

/// A new age key pair from the real `age-keygen`: (public recipient `age1...`, the key file's
/// text). The key file's text is what age-keygen writes (`# created: ...`, `# public key: ...`,
/// `AGE-SECRET-KEY-1...`): what `SOPS_AGE_KEY` or a key file holds, and what a Flux-style
/// decryption Secret holds under `<name>.agekey`. [`age_secret_key_line`] picks the bare key.
pub fn age_keygen() -> (String, String) {
    let mut cmd = Command::new(age_keygen_bin());
    cmd.stdin(Stdio::null());
    let key_file = run_ok(cmd, "age-keygen");
    let recipient = key_file
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_else(|| panic!("age-keygen printed no public key: {key_file}"))
        .trim()
        .to_string();
    assert!(recipient.starts_with("age1"), "not an age recipient: {recipient}");
    (recipient, key_file)
}

/// The `AGE-SECRET-KEY-1...` line of an age key file.
pub fn age_secret_key_line(key_file: &str) -> String {
    key_file
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap_or_else(|| panic!("no AGE-SECRET-KEY line in the key file"))
        .to_string()
}

/// A format sops reads and writes (`--input-type`/`--output-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SopsFormat {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl SopsFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SopsFormat::Yaml => "yaml",
            SopsFormat::Json => "json",
            SopsFormat::Dotenv => "dotenv",
            SopsFormat::Ini => "ini",
            SopsFormat::Binary => "binary",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            SopsFormat::Yaml => "yaml",
            SopsFormat::Json => "json",
            SopsFormat::Dotenv => "env",
            SopsFormat::Ini => "ini",
            SopsFormat::Binary => "bin",
        }
    }
}

/// `sops --encrypt --age <recipient>` of `plaintext` as `format`; returns the encrypted
/// document. Every value is encrypted; see [`sops_encrypt_with`] for `--encrypted-regex` and
/// the like.
pub fn sops_encrypt(plaintext: &str, recipient: &str, format: SopsFormat) -> String {
    sops_encrypt_with(plaintext, recipient, format, &[])
}

/// [`sops_encrypt`] of a file's contents.
pub fn sops_encrypt_file(path: &Path, recipient: &str, format: SopsFormat) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sops_encrypt(&text, recipient, format)
}

/// [`sops_encrypt`] with more sops flags, e.g. `&["--encrypted-regex", "^(data|stringData)$"]`
/// (how Kubernetes Secrets are usually encrypted for Flux). `recipient` may list several,
/// comma-separated.
pub fn sops_encrypt_with(plaintext: &str, recipient: &str, format: SopsFormat, extra: &[&str]) -> String {
    let (work, mut cmd) = sops_command();
    let input = write_input(work.path(), "plain", format, plaintext);
    cmd.args([
        "--encrypt",
        "--age",
        recipient,
        "--input-type",
        format.as_str(),
        "--output-type",
        format.as_str(),
    ])
    .args(extra)
    .arg(&input);
    run_ok(cmd, "sops --encrypt")
}

/// `sops --decrypt` of `ciphertext` with the age key `age_key` (a key file's text or a bare
/// `AGE-SECRET-KEY-1...`, given as `SOPS_AGE_KEY`); returns the plaintext. Panics when sops
/// fails (see [`try_sops_decrypt`]).
pub fn sops_decrypt(ciphertext: &str, age_key: &str, format: SopsFormat) -> String {
    try_sops_decrypt(ciphertext, age_key, format).unwrap_or_else(|e| panic!("sops --decrypt failed: {e}"))
}

/// [`sops_decrypt`], with sops's error (e.g. a wrong key, a tampered MAC) as `Err`.
pub fn try_sops_decrypt(ciphertext: &str, age_key: &str, format: SopsFormat) -> Result<String, String> {
    let (work, mut cmd) = sops_command();
    let input = write_input(work.path(), "secret", format, ciphertext);
    cmd.env("SOPS_AGE_KEY", age_key)
        .args(["--decrypt", "--input-type", format.as_str(), "--output-type", format.as_str()])
        .arg(&input);
    let out = cmd.output().map_err(|e| format!("cannot run sops: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A sops command with a cleared environment in a fresh temp dir (returned: keep it alive).
fn sops_command() -> (tempfile::TempDir, Command) {
    let work = tempfile::Builder::new().prefix("ferry-sops-").tempdir().expect("temp dir");
    let mut cmd = Command::new(sops_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", work.path())
        .env("XDG_CONFIG_HOME", work.path().join(".config"))
        .current_dir(work.path())
        .stdin(Stdio::null());
    (work, cmd)
}

fn write_input(dir: &Path, stem: &str, format: SopsFormat, text: &str) -> PathBuf {
    let path = dir.join(format!("{stem}.{}", format.extension()));
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
