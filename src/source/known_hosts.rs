//! OpenSSH `known_hosts` parsing and host key checking.
//!
//! ferry checks SSH host keys itself (libgit2's check only reads `~/.ssh/known_hosts` of the
//! process) against the `known_hosts` of the Application's Secret plus any cache-wide entries.
//! An unknown key is refused, never trusted on first use. Supported: plain, comma-separated,
//! wildcard (`*`, `?`) and negated (`!`) host patterns, `[host]:port` for non-default ports,
//! hashed `|1|salt|hash` entries (HMAC-SHA1, as written by `ssh-keygen -H`) and `@revoked`.
//! `@cert-authority` lines are parsed but never trust a key: libgit2 hands us only the raw key,
//! not a certificate to verify.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::{digest, hmac};

/// Parsed known_hosts entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Hosts {
    /// `(negated, lowercase pattern)` pairs.
    Patterns(Vec<(bool, String)>),
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// The verdict on a presented host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// An entry for this host has exactly this key.
    Trusted,
    /// No entry for this host has a key of this type. `known_types` lists the types that do
    /// have entries for the host (empty when the host is not known at all).
    Unknown { known_types: Vec<String> },
    /// Entries for this host have keys of this type, but not this key.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
}

impl KnownHosts {
    /// Parses known_hosts text. Blank lines and `#` comments are skipped; a malformed line is an
    /// error naming its line number, because silently skipping it could leave a host untrusted
    /// for reasons nobody can see.
    pub fn parse(text: &str) -> Result<KnownHosts, BadKnownHosts> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|problem| BadKnownHosts { line: index + 1, problem })?;
            entries.push(entry);
        }
        Ok(KnownHosts { entries })
    }

    /// Entries from both sets, for merging a Secret's known_hosts with cache-wide ones.
    pub fn merged(&self, other: &KnownHosts) -> KnownHosts {
        KnownHosts { entries: self.entries.iter().chain(&other.entries).cloned().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the key `host` presented on `port` (None or 22 for the default port).
    pub fn check(&self, host: &str, port: Option<u16>, key_type: &str, key: &[u8]) -> HostKeyStatus {
        let name = host_entry_name(host, port);
        let for_host: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.marker != Marker::CertAuthority && e.hosts.matches(&name))
            .collect();
        if for_host.iter().any(|e| e.marker == Marker::Revoked && e.key == key) {
            return HostKeyStatus::Revoked;
        }
        let plain = for_host.iter().filter(|e| e.marker == Marker::None);
        if plain.clone().any(|e| e.key == key) {
            return HostKeyStatus::Trusted;
        }
        if plain.clone().any(|e| e.key_type == key_type) {
            return HostKeyStatus::Mismatch;
        }
        let mut known_types: Vec<String> = plain.map(|e| e.key_type.clone()).collect();
        known_types.sort();
        known_types.dedup();
        HostKeyStatus::Unknown { known_types }
    }
}

/// The name a known_hosts entry uses for a host: `host`, or `[host]:port` off port 22.
pub fn host_entry_name(host: &str, port: Option<u16>) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host,
    }
}

/// OpenSSH-style fingerprint: `SHA256:<unpadded base64>`.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest::digest(&digest::SHA256, key)))
}

/// A known_hosts text that does not parse: which line, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct BadKnownHosts {
    /// From 1.
    pub line: usize,
    pub problem: BadLine,
}

/// What is wrong with one known_hosts line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    #[error("empty line")]
    Empty,
    #[error("unknown marker {0:?}")]
    UnknownMarker(String),
    #[error("missing host patterns after the marker")]
    NoHostsAfterMarker,
    #[error("missing key type")]
    NoKeyType,
    #[error("missing key")]
    NoKey,
    #[error("the key is not valid base64")]
    KeyNotBase64,
    #[error("the key is empty")]
    EmptyKey,
    #[error("hashed host must be |1|salt|hash")]
    HashedShape,
    #[error("hashed host salt is not valid base64")]
    SaltNotBase64,
    #[error("hashed host hash is not valid base64")]
    HashNotBase64,
    #[error("hashed host hash must be 20 bytes (HMAC-SHA1)")]
    HashLength,
    #[error("unsupported hashed host format (only |1| is defined)")]
    HashFormat,
    #[error("no host patterns")]
    NoPatterns,
}

fn parse_line(line: &str) -> Result<Entry, BadLine> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or(BadLine::Empty)?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(BadLine::UnknownMarker(m.to_string())),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or(BadLine::NoHostsAfterMarker)?;
    }
    let key_type = fields.next().ok_or(BadLine::NoKeyType)?;
    let key_b64 = fields.next().ok_or(BadLine::NoKey)?;
    let key = STANDARD.decode(key_b64).map_err(|_| BadLine::KeyNotBase64)?;
    if key.is_empty() {
        return Err(BadLine::EmptyKey);
    }
    Ok(Entry { marker, hosts: parse_hosts(first)?, key_type: key_type.to_string(), key })
}

fn parse_hosts(field: &str) -> Result<Hosts, BadLine> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or(BadLine::HashedShape)?;
        let salt = STANDARD.decode(salt).map_err(|_| BadLine::SaltNotBase64)?;
        let hash = STANDARD.decode(hash).map_err(|_| BadLine::HashNotBase64)?;
        if hash.len() != 20 {
            return Err(BadLine::HashLength);
        }
        return Ok(Hosts::Hashed { salt, hash });
    }
    if field.starts_with('|') {
        return Err(BadLine::HashFormat);
    }
    let patterns: Vec<(bool, String)> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(neg) => (true, neg.to_ascii_lowercase()),
            None => (false, p.to_ascii_lowercase()),
        })
        .collect();
    if patterns.is_empty() {
        return Err(BadLine::NoPatterns);
    }
    Ok(Hosts::Patterns(patterns))
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                hmac::verify(&key, name.as_bytes(), hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                // As in OpenSSH: any matching negation rejects, otherwise any positive match.
                let mut matched = false;
                for (negated, pattern) in patterns {
                    if glob_match(pattern.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// `*` matches any run (also empty), `?` one character; everything else literally.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((bp, bt)) = backtrack {
            p = bp + 1;
            t = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real ed25519 public keys (the key blob embeds the type name).
    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBlAzn0tUu+1KJSzfwPZBr0qNsBMSvhMlwqDLBz+6QuM";

    fn key(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).unwrap()
    }

    /// What `ssh-keygen -H` writes: `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
    fn hashed(name: &str, salt: &[u8]) -> String {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt), name.as_bytes());
        format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(tag.as_ref()))
    }

    #[test]
    fn plain_entries_trust_only_their_key() {
        let kh = KnownHosts::parse(&format!("# comment\n\ngit.example.com,10.0.0.1 ssh-ed25519 {K1} c\n"))
            .unwrap();
        assert_eq!(kh.check("git.example.com", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert_eq!(kh.check("GIT.example.com", Some(22), "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert_eq!(kh.check("10.0.0.1", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert_eq!(kh.check("git.example.com", None, "ssh-ed25519", &key(K2)), HostKeyStatus::Mismatch);
        assert_eq!(
            kh.check("other.example.com", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { known_types: vec![] }
        );
        // Only keys of another type known: unknown (as OpenSSH), naming what is known.
        assert_eq!(
            kh.check("git.example.com", None, "ecdsa-sha2-nistp256", b"other"),
            HostKeyStatus::Unknown { known_types: vec!["ssh-ed25519".into()] }
        );
    }

    #[test]
    fn non_default_ports_need_bracketed_entries() {
        let kh = KnownHosts::parse(&format!("[127.0.0.1]:2222 ssh-ed25519 {K1}\n")).unwrap();
        assert_eq!(kh.check("127.0.0.1", Some(2222), "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert!(matches!(
            kh.check("127.0.0.1", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
        assert!(matches!(
            kh.check("127.0.0.1", Some(2223), "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
        let plain = KnownHosts::parse(&format!("127.0.0.1 ssh-ed25519 {K1}\n")).unwrap();
        assert!(matches!(
            plain.check("127.0.0.1", Some(2222), "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
    }

    #[test]
    fn hashed_entries() {
        let text = format!(
            "{} ssh-ed25519 {K1}\n{} ssh-ed25519 {K2}\n",
            hashed("git.example.com", b"0123456789abcdefghij"),
            hashed("[127.0.0.1]:2222", b"saltsaltsaltsaltsalt")
        );
        let kh = KnownHosts::parse(&text).unwrap();
        assert_eq!(kh.check("git.example.com", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert_eq!(kh.check("git.example.com", None, "ssh-ed25519", &key(K2)), HostKeyStatus::Mismatch);
        assert_eq!(kh.check("127.0.0.1", Some(2222), "ssh-ed25519", &key(K2)), HostKeyStatus::Trusted);
        assert!(matches!(
            kh.check("example.com", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
    }

    #[test]
    fn known_good_hash_from_ssh_keygen() {
        // Generated by `ssh-keygen -H` for host "localhost" (OpenSSH 9.2).
        let line = "|1|R/snmCIM1hDCwNgcETfCw0udO5g=|o3DgPdUNQFzJZWGv0xF5tgB0z3M= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let kh = KnownHosts::parse(line).unwrap();
        let status = kh.check("localhost", None, "ssh-ed25519", &key(K1));
        assert_eq!(status, HostKeyStatus::Trusted);
    }

    #[test]
    fn wildcards_and_negation() {
        let kh = KnownHosts::parse(&format!("*.example.com,!bad.example.com,git?.test ssh-ed25519 {K1}\n"))
            .unwrap();
        assert_eq!(kh.check("a.example.com", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert_eq!(kh.check("git1.test", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        assert!(matches!(
            kh.check("bad.example.com", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
        assert!(matches!(
            kh.check("example.com", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
        assert!(matches!(
            kh.check("git12.test", None, "ssh-ed25519", &key(K1)),
            HostKeyStatus::Unknown { .. }
        ));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn markers() {
        let kh = KnownHosts::parse(&format!(
            "@revoked h ssh-ed25519 {K2}\nh ssh-ed25519 {K1}\n@cert-authority * ssh-ed25519 {K2}\n"
        ))
        .unwrap();
        assert_eq!(kh.check("h", None, "ssh-ed25519", &key(K2)), HostKeyStatus::Revoked);
        assert_eq!(kh.check("h", None, "ssh-ed25519", &key(K1)), HostKeyStatus::Trusted);
        // A CA line never vouches for a raw key.
        assert!(matches!(kh.check("other", None, "ssh-ed25519", &key(K2)), HostKeyStatus::Unknown { .. }));
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        assert_eq!(KnownHosts::parse("h ssh-ed25519").unwrap_err().to_string(), "line 1: missing key");
        assert!(KnownHosts::parse("\n\nh ssh-ed25519 !!!").unwrap_err().to_string().starts_with("line 3:"));
        assert!(KnownHosts::parse("@bogus h ssh-ed25519 AAAA").is_err());
        assert!(KnownHosts::parse("|2|a|b ssh-ed25519 AAAA").is_err());
        assert!(KnownHosts::parse("|1|AAAA|AAAA ssh-ed25519 AAAA").is_err());
        assert!(KnownHosts::parse("").unwrap().is_empty());
    }

    #[test]
    fn fingerprints_look_like_openssh() {
        // `ssh-keygen -lf` prints this fingerprint for K1.
        assert_eq!(fingerprint(&key(K1)), "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU");
    }
}
