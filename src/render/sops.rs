//! SOPS decryption of rendered documents (`spec.decryption: {provider: sops}`), with age keys.
//!
//! A document is SOPS-encrypted when it has a top-level `sops` mapping with a `mac`. Its values
//! are `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` strings encrypted with a 32-byte data key;
//! the data key sits in `sops.age[].enc`, an armored age file per recipient. Decryption follows
//! SOPS's own code (getsops/sops `aes/cipher.go`, `sops.go` `Tree.Decrypt`,
//! `cmd/sops/common` `DecryptTree`):
//!
//! - each value's additional data is the path of map keys to it, each followed by `:`
//!   (`spec:servers:host:`; list positions are not part of it);
//! - which values are encrypted follows `unencrypted_suffix`, `encrypted_suffix`,
//!   `unencrypted_regex` and `encrypted_regex`, in that order, each looking at every key of the
//!   path;
//! - the MAC is SHA-512 over the plaintext of every value (only the encrypted ones with
//!   `mac_only_encrypted`), in document order, as upper-case hex; the file's `mac` is itself an
//!   encrypted value whose additional data is `lastmodified`. Key order is part of the MAC, so
//!   encrypted documents are read again here in an order-preserving form ([`Node`]), never
//!   through the sorted maps of `serde_json::Value`.
//!
//! A YAML stream's documents with the same `mac` and `lastmodified` are one SOPS file (SOPS
//! copies the metadata into every document of a multi-document file and MACs them together).
//! The MAC is verified where the text is the file sops wrote (plain directories); a renderer's
//! output (kustomize sorts keys and adds fields) is checked value by value only: see
//! [`Integrity`].
//!
//! Nothing decrypted leaves memory, and no error, log line or `Debug` output carries a
//! plaintext value or key material: errors name files, documents, key paths and public
//! recipients only.

use std::{collections::BTreeMap, fmt, io::Read, sync::Arc};

use aes_gcm::{
    AesGcm, KeyInit,
    aead::{Aead, Payload, consts::U32},
    aes::Aes256,
};
use base64::Engine as _;
use k8s_openapi::ByteString;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use zeroize::Zeroizing;

use super::error::{Origin, RenderError};

/// The key of a `Secret`'s data whose entries are age identity files, as Flux's
/// kustomize-controller reads them.
pub const AGE_KEY_SUFFIX: &str = ".agekey";

/// age X25519 identities that may decrypt SOPS data keys. Cheap to clone (shared), so a render
/// can hand it to a blocking task.
#[derive(Clone)]
pub struct AgeKeys {
    identities: Arc<[age::x25519::Identity]>,
    /// The public recipients (`age1…`), sorted: for the fingerprint and for error messages.
    recipients: Arc<[String]>,
}

/// Bad key material. Never holds the key or the offending line, only where it was.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("line {line}{} is not an age X25519 identity (AGE-SECRET-KEY-1…)", entry_suffix(.entry))]
    InvalidLine { entry: Option<String>, line: usize },
    #[error("{entry} of the Secret is not UTF-8 text")]
    NotUtf8 { entry: String },
    #[error("no age identity (AGE-SECRET-KEY-1…) found{}", entry_suffix(.entry))]
    NoIdentities { entry: Option<String> },
    #[error("the Secret has no entry whose name ends in {AGE_KEY_SUFFIX}")]
    NoAgeKeyEntries,
}

fn entry_suffix(entry: &Option<String>) -> String {
    entry.as_deref().map(|e| format!(" of {e}")).unwrap_or_default()
}

impl AgeKeys {
    /// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments and blank lines.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::from_identities(parse_identities(text, None)?)
    }

    /// Reads every entry of a Secret's `data` whose name ends in `.agekey` (Flux's convention
    /// for `spec.decryption.secretRef`), each an age identity file; other entries are ignored.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, KeyError> {
        let mut identities = Vec::new();
        for (name, value) in data.iter().filter(|(name, _)| name.ends_with(AGE_KEY_SUFFIX)) {
            let text =
                std::str::from_utf8(&value.0).map_err(|_| KeyError::NotUtf8 { entry: name.clone() })?;
            identities.extend(parse_identities(text, Some(name))?);
        }
        if identities.is_empty() {
            return Err(KeyError::NoAgeKeyEntries);
        }
        Self::from_identities(identities)
    }

    fn from_identities(identities: Vec<age::x25519::Identity>) -> Result<Self, KeyError> {
        let mut recipients: Vec<String> = identities.iter().map(|i| i.to_public().to_string()).collect();
        recipients.sort();
        recipients.dedup();
        Ok(AgeKeys { identities: identities.into(), recipients: recipients.into() })
    }

    /// Hex SHA-256 of the sorted public recipients: tells key sets apart (render cache keys)
    /// without revealing anything about the secret keys.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.recipients.join("\n").as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The public recipients (`age1…`) of these identities, sorted.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The SOPS data key from the first `age` stanza one of the identities opens.
    fn data_key(&self, stanzas: &[AgeStanza]) -> Result<Zeroizing<Vec<u8>>, SopsError> {
        let mut unreadable = 0;
        for stanza in stanzas {
            let armored = age::armor::ArmoredReader::new(stanza.enc.as_bytes());
            let Ok(decryptor) = age::Decryptor::new(armored) else {
                unreadable += 1;
                continue;
            };
            let identities = self.identities.iter().map(|i| i as &dyn age::Identity);
            match decryptor.decrypt(identities) {
                Ok(mut reader) => {
                    let mut key = Zeroizing::new(Vec::new());
                    reader.read_to_end(&mut key).map_err(|_| SopsError::DataKey)?;
                    return if key.len() == 32 { Ok(key) } else { Err(SopsError::DataKey) };
                }
                Err(age::DecryptError::NoMatchingKeys) => {}
                Err(_) => unreadable += 1,
            }
        }
        Err(SopsError::NoMatchingIdentity {
            recipients: stanzas.iter().map(|s| s.recipient.clone()).collect(),
            unreadable,
        })
    }
}

/// Never shows a key: only how many there are and the fingerprint.
impl fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeKeys")
            .field("identities", &self.identities.len())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn parse_identities(text: &str, entry: Option<&str>) -> Result<Vec<age::x25519::Identity>, KeyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // age's parse error is a fixed phrase, but it is dropped anyway: only the line number
        // can be shown without risking part of a key in a status message.
        let identity = line
            .parse::<age::x25519::Identity>()
            .map_err(|_| KeyError::InvalidLine { entry: entry.map(str::to_owned), line: i + 1 })?;
        out.push(identity);
    }
    if out.is_empty() {
        return Err(KeyError::NoIdentities { entry: entry.map(str::to_owned) });
    }
    Ok(out)
}

/// Why a SOPS document could not be decrypted. Names key paths and public recipients only.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("the document is encrypted with SOPS; set spec.decryption (provider sops, an age key)")]
    NotConfigured,
    #[error(
        "no age identity in spec.decryption's Secret matches the file's recipients {}{}",
        if .recipients.is_empty() { "(none)".to_string() } else { .recipients.join(", ") },
        if *.unreadable > 0 { format!(" ({} age stanza(s) could not be read)", .unreadable) } else { String::new() }
    )]
    NoMatchingIdentity { recipients: Vec<String>, unreadable: usize },
    #[error("the file is encrypted for {kinds} only; ferry decrypts SOPS files with age recipients")]
    NoAgeRecipients { kinds: String },
    #[error("the file uses SOPS key groups (Shamir secret sharing), which ferry does not decrypt")]
    KeyGroups,
    #[error(
        "the file's sops metadata sets {field}, which ferry does not support (it depends on YAML comments)"
    )]
    Unsupported { field: &'static str },
    #[error("the file's sops metadata is malformed: {what}")]
    Metadata { what: String },
    #[error("the age-encrypted SOPS data key is not a 32-byte key")]
    DataKey,
    #[error(
        "the value at {path} is not a valid SOPS value (ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]): {reason}"
    )]
    MalformedValue { path: String, reason: &'static str },
    #[error(
        "the value at {path} does not decrypt with the file's data key: its ciphertext was changed, or it was moved to another key"
    )]
    ValueAuthentication { path: String },
    #[error("the value at {path} should be encrypted but is {found}")]
    NotEncrypted { path: String, found: &'static str },
    #[error("the MAC does not decrypt with the file's data key: the sops mac or lastmodified was changed")]
    MacUnreadable,
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (a value, a key or their order); re-encrypt it with sops"
    )]
    MacMismatch,
    #[error("the document cannot be read again in order: {cause}")]
    Reread { cause: String },
}

/// Whether a parsed document carries SOPS metadata: a top-level `sops` mapping. Anything in it
/// counts (a `mac` and `age` are then required), so a document whose metadata was cut short
/// fails instead of being applied with its `ENC[…]` values.
pub fn is_encrypted(doc: &Value) -> bool {
    doc.get("sops").is_some_and(Value::is_object)
}

/// How the text of the documents is to be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

/// How much of a SOPS file's integrity can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Integrity {
    /// The text is the file as sops wrote it (a plain directory's file): every value is
    /// authenticated, and the MAC over all of them, their keys and their order is verified.
    WholeFile,
    /// A renderer printed the documents again: kustomize sorts keys and may add a namespace,
    /// labels or a name prefix, so the file's MAC cannot hold (sops itself reports a mismatch
    /// on any `kustomize build` output). Each encrypted value is still authenticated by
    /// AES-GCM with its key path, so no value can be altered or moved to another key; what
    /// is not checked is the unencrypted rest, which the renderer was free to change anyway.
    RendererOutput,
}

/// Decrypts, in place, every document of `docs` that [`is_encrypted`]. `docs` are the
/// documents of `text` in order, as parse.rs read them; `text` is read again, in order, only
/// when one of them is encrypted.
pub(crate) fn decrypt_documents(
    text: &str,
    format: Format,
    docs: &mut [(Origin, Value)],
    keys: Option<&AgeKeys>,
    integrity: Integrity,
) -> Result<(), RenderError> {
    let encrypted: Vec<usize> = (0..docs.len()).filter(|i| is_encrypted(&docs[*i].1)).collect();
    let Some(&first) = encrypted.first() else { return Ok(()) };
    let fail = |i: usize, cause: SopsError| RenderError::DecryptionFailed {
        origin: docs[i].0.clone(),
        cause: Box::new(cause),
    };
    let Some(keys) = keys else { return Err(fail(first, SopsError::NotConfigured)) };
    let mut nodes = reread(text, format).map_err(|cause| fail(first, cause))?;
    if nodes.len() != docs.len() {
        let cause = format!("{} documents, not {}", nodes.len(), docs.len());
        return Err(fail(first, SopsError::Reread { cause }));
    }
    for group in files(docs, &encrypted) {
        decrypt_file(&mut nodes, &group, keys, integrity).map_err(|(i, cause)| fail(i, cause))?;
    }
    for i in encrypted {
        let node = std::mem::replace(&mut nodes[i], Node::Null);
        match node.into_value() {
            Ok(value) => docs[i].1 = value,
            Err(cause) => {
                return Err(RenderError::DecryptionFailed {
                    origin: docs[i].0.clone(),
                    cause: Box::new(cause),
                });
            }
        }
    }
    Ok(())
}

fn reread(text: &str, format: Format) -> Result<Vec<Node>, SopsError> {
    match format {
        Format::Yaml => serde_saphyr::from_multiple_with_options(text, super::parse::options())
            .map_err(|e| SopsError::Reread { cause: e.without_snippet().to_string() }),
        Format::Json => serde_json::from_str(text)
            .map(|n| vec![n])
            .map_err(|e| SopsError::Reread { cause: e.to_string() }),
    }
}

/// The encrypted documents grouped into SOPS files: same `mac` and `lastmodified`, in order.
fn files(docs: &[(Origin, Value)], encrypted: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<((String, String), Vec<usize>)> = Vec::new();
    for &i in encrypted {
        let field = |name: &str| docs[i].1["sops"][name].as_str().unwrap_or_default().to_owned();
        let id = (field("mac"), field("lastmodified"));
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, members)) => members.push(i),
            None => groups.push((id, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// Decrypts one SOPS file made of the documents `members` of `nodes`; an error comes with the
/// document it concerns.
fn decrypt_file(
    nodes: &mut [Node],
    members: &[usize],
    keys: &AgeKeys,
    integrity: Integrity,
) -> Result<(), (usize, SopsError)> {
    let first = members[0];
    let meta = Metadata::read(&nodes[first]).map_err(|e| (first, e))?;
    for &i in members {
        if let Node::Map(entries) = &mut nodes[i] {
            entries.retain(|(k, _)| k != "sops");
        }
    }
    let data_key = keys.data_key(&meta.age).map_err(|e| (first, e))?;
    let cipher = ValueCipher::new(&data_key);
    let mut walk = Walk::new(&meta.rules, &cipher);
    for &i in members {
        walk.node(&mut nodes[i], &mut Vec::new()).map_err(|e| (i, e))?;
    }
    let computed = walk.finish();
    if integrity == Integrity::RendererOutput {
        return Ok(());
    }
    let stored = match cipher.decrypt(&meta.mac, &meta.lastmodified) {
        Ok(Node::Str(mac)) => mac,
        _ => return Err((first, SopsError::MacUnreadable)),
    };
    if stored != computed {
        return Err((first, SopsError::MacMismatch));
    }
    Ok(())
}

/// One `sops.age` entry.
struct AgeStanza {
    recipient: String,
    enc: String,
}

/// What decides which values are encrypted and MAC'd.
#[derive(Default)]
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
}

impl Rules {
    /// SOPS's `shouldBeEncrypted` without the comment rules (refused in [`Metadata::read`]).
    fn encrypts(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix {
            encrypted = !path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|k| re.is_match(k))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        encrypted
    }
}

/// The parts of the `sops` mapping decryption needs.
struct Metadata {
    mac: String,
    lastmodified: String,
    age: Vec<AgeStanza>,
    rules: Rules,
}

/// Master key kinds ferry cannot use, as SOPS names them in the metadata.
const OTHER_KEY_KINDS: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl Metadata {
    fn read(doc: &Node) -> Result<Self, SopsError> {
        let bad = |what: &str| SopsError::Metadata { what: what.to_owned() };
        let sops = doc.get("sops").ok_or_else(|| bad("no sops mapping"))?;
        let Node::Map(_) = sops else { return Err(bad("sops is not a mapping")) };
        for field in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if sops.get(field).and_then(Node::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(SopsError::Unsupported { field });
            }
        }
        let text = |name: &str| sops.get(name).and_then(Node::as_str).map(str::to_owned);
        let mac = text("mac").ok_or_else(|| bad("mac is not a string"))?;
        let lastmodified = text("lastmodified").ok_or_else(|| bad("lastmodified is not a string"))?;
        let age = Self::age_stanzas(sops)?;
        let rules = Rules {
            unencrypted_suffix: text("unencrypted_suffix").filter(|s| !s.is_empty()),
            encrypted_suffix: text("encrypted_suffix").filter(|s| !s.is_empty()),
            unencrypted_regex: Self::regex(sops, "unencrypted_regex")?,
            encrypted_regex: Self::regex(sops, "encrypted_regex")?,
            // mapstructure's weak typing in SOPS accepts a string "true" too.
            mac_only_encrypted: match sops.get("mac_only_encrypted") {
                Some(Node::Bool(b)) => *b,
                Some(Node::Str(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            },
        };
        Ok(Metadata { mac, lastmodified, age, rules })
    }

    fn age_stanzas(sops: &Node) -> Result<Vec<AgeStanza>, SopsError> {
        let groups = sops.get("key_groups").and_then(Node::as_seq).unwrap_or_default();
        let holder = match groups {
            [] => sops,
            [one] => one,
            _ => return Err(SopsError::KeyGroups),
        };
        let entries = holder.get("age").and_then(Node::as_seq).unwrap_or_default();
        if entries.is_empty() {
            let kinds: Vec<&str> = OTHER_KEY_KINDS
                .into_iter()
                .filter(|k| holder.get(k).and_then(Node::as_seq).is_some_and(|s| !s.is_empty()))
                .collect();
            let kinds = if kinds.is_empty() { "no key".to_owned() } else { kinds.join(", ") };
            return Err(SopsError::NoAgeRecipients { kinds });
        }
        entries
            .iter()
            .map(|e| {
                let field = |name: &str| e.get(name).and_then(Node::as_str).map(str::to_owned);
                match (field("recipient"), field("enc")) {
                    (Some(recipient), Some(enc)) => Ok(AgeStanza { recipient, enc }),
                    _ => Err(SopsError::Metadata { what: "an age entry lacks recipient or enc".into() }),
                }
            })
            .collect()
    }

    fn regex(sops: &Node, field: &'static str) -> Result<Option<regex::Regex>, SopsError> {
        match sops.get(field).and_then(Node::as_str).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(re) => regex::Regex::new(re).map(Some).map_err(|_| SopsError::Metadata {
                what: format!("{field} is not a valid regular expression"),
            }),
        }
    }
}

/// AES-256-GCM with SOPS's 32-byte IVs.
struct ValueCipher(AesGcm<Aes256, U32>);

/// The `ENC[…]` syntax, exactly as SOPS's `aes/cipher.go` matches it.
static ENC: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]").expect("a valid regex")
});

/// Why one value did not decrypt (the caller adds the path).
enum ValueError {
    Malformed(&'static str),
    Authentication,
}

impl ValueCipher {
    fn new(key: &[u8]) -> Self {
        ValueCipher(AesGcm::new_from_slice(key).expect("data keys are checked to be 32 bytes"))
    }

    /// Decrypts one `ENC[…]` value into the node its `type` says. `""` stays `""`, as SOPS
    /// leaves empty values unencrypted.
    fn decrypt(&self, value: &str, additional_data: &str) -> Result<Node, ValueError> {
        if value.is_empty() {
            return Ok(Node::Str(String::new()));
        }
        let caps = ENC.captures(value).ok_or(ValueError::Malformed("not in ENC[…] form"))?;
        let b64 = |i: usize, what: &'static str| {
            base64::engine::general_purpose::STANDARD
                .decode(&caps[i])
                .map_err(|_| ValueError::Malformed(what))
        };
        let (mut data, iv, tag) =
            (b64(1, "data is not base64")?, b64(2, "iv is not base64")?, b64(3, "tag is not base64")?);
        if iv.len() != 32 {
            return Err(ValueError::Malformed("iv is not 32 bytes"));
        }
        let nonce = aes_gcm::Nonce::<U32>::from_slice(&iv);
        if tag.len() != 16 {
            return Err(ValueError::Malformed("tag is not 16 bytes"));
        }
        data.extend_from_slice(&tag);
        let plain = self
            .0
            .decrypt(nonce, Payload { msg: &data, aad: additional_data.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| ValueError::Authentication)?;
        typed(&plain, &caps[4])
    }
}

/// A decrypted value as the type SOPS recorded (`strconv` parsing in Go).
fn typed(plain: &[u8], kind: &str) -> Result<Node, ValueError> {
    let text = || std::str::from_utf8(plain).map_err(|_| ValueError::Malformed("the plaintext is not UTF-8"));
    Ok(match kind {
        "str" | "bytes" | "time" | "comment" => Node::Str(text()?.to_owned()),
        "int" => {
            Node::Int(text()?.parse().map_err(|_| ValueError::Malformed("type int, but not an integer"))?)
        }
        "float" => {
            Node::Float(text()?.parse().map_err(|_| ValueError::Malformed("type float, but not a number"))?)
        }
        "bool" => Node::Bool(go_bool(text()?).ok_or(ValueError::Malformed("type bool, but not a boolean"))?),
        _ => return Err(ValueError::Malformed("unknown type")),
    })
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The traversal of SOPS's `walkBranch`: decrypts what the rules say is encrypted and feeds
/// the MAC.
struct Walk<'a> {
    rules: &'a Rules,
    cipher: &'a ValueCipher,
    mac: ring::digest::Context,
}

/// SOPS starts the MAC with these bytes under `mac_only_encrypted`, so the two kinds of MAC
/// never coincide (`MACOnlyEncryptedInitialization` in sops.go).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b,
    0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

impl<'a> Walk<'a> {
    fn new(rules: &'a Rules, cipher: &'a ValueCipher) -> Self {
        let mut mac = ring::digest::Context::new(&ring::digest::SHA512);
        if rules.mac_only_encrypted {
            mac.update(&MAC_ONLY_ENCRYPTED_INIT);
        }
        Walk { rules, cipher, mac }
    }

    fn node(&mut self, node: &mut Node, path: &mut Vec<String>) -> Result<(), SopsError> {
        match node {
            // SOPS neither decrypts nor MACs nulls.
            Node::Null => Ok(()),
            Node::Map(entries) => {
                for (key, value) in entries.iter_mut() {
                    path.push(key.clone());
                    let done = self.node(value, path);
                    path.pop();
                    done?;
                }
                Ok(())
            }
            Node::Seq(items) => items.iter_mut().try_for_each(|item| self.node(item, path)),
            leaf => self.leaf(leaf, path),
        }
    }

    fn leaf(&mut self, leaf: &mut Node, path: &[String]) -> Result<(), SopsError> {
        let encrypted = self.rules.encrypts(path);
        if encrypted {
            let shown = path.join(".");
            let Node::Str(value) = leaf else {
                return Err(SopsError::NotEncrypted { path: shown, found: leaf.kind() });
            };
            // The additional data: every key of the path followed by ':'.
            let ad: String = path.iter().flat_map(|k| [k.as_str(), ":"]).collect();
            *leaf = self.cipher.decrypt(value, &ad).map_err(|e| match e {
                ValueError::Malformed(reason) => SopsError::MalformedValue { path: shown, reason },
                ValueError::Authentication => SopsError::ValueAuthentication { path: shown },
            })?;
        }
        if !self.rules.mac_only_encrypted || encrypted {
            self.mac.update(leaf.mac_bytes().as_bytes());
        }
        Ok(())
    }

    /// The MAC as SOPS prints it: upper-case hex.
    fn finish(self) -> String {
        self.mac.finish().as_ref().iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// A YAML/JSON value that keeps the order of mapping keys, which the MAC depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`; SOPS's JSON store reads these as floats.
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_seq(&self) -> Option<&[Node]> {
        match self {
            Node::Seq(items) => Some(items),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::Uint(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a sequence",
            Node::Map(_) => "a mapping",
        }
    }

    /// The bytes SOPS's `ToBytes` gives a scalar: Go's `strconv` forms, booleans as Python
    /// wrote them (`True`, `False`).
    fn mac_bytes(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Node::Str(s) => s.as_str().into(),
            Node::Int(n) => n.to_string().into(),
            Node::Uint(n) => go_float(*n as f64).into(),
            Node::Float(f) => go_float(*f).into(),
            Node::Bool(true) => "True".into(),
            Node::Bool(false) => "False".into(),
            Node::Null | Node::Seq(_) | Node::Map(_) => "".into(),
        }
    }

    /// The JSON value parse.rs works with.
    fn into_value(self) -> Result<Value, SopsError> {
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(n) => Value::Number(n.into()),
            Node::Uint(n) => Value::Number(n.into()),
            Node::Float(f) => Number::from_f64(f).map(Value::Number).ok_or_else(|| SopsError::Metadata {
                what: "a value decrypts to a number JSON cannot hold".into(),
            })?,
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => {
                Value::Array(items.into_iter().map(Node::into_value).collect::<Result<_, _>>()?)
            }
            Node::Map(entries) => {
                Value::Object(entries.into_iter().map(|(k, v)| Ok((k, v.into_value()?))).collect::<Result<
                    Map<_, _>,
                    _,
                >>(
                )?)
            }
        })
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back, never an
/// exponent; Rust's `Display` for `f64` is the same except for infinities.
fn go_float(f: f64) -> String {
    match f {
        f if f == f64::INFINITY => "+Inf".into(),
        f if f == f64::NEG_INFINITY => "-Inf".into(),
        f => f.to_string(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Uint(v), Node::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v).map(Node::Int).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v).map_err(|_| E::custom("integer out of range")).and_then(|v| self.visit_u64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<Node>()? {
            // Scalar keys become strings, as parse.rs's `LooseKey` makes them.
            let key = match key {
                Node::Str(s) => s,
                Node::Null => "null".into(),
                Node::Bool(b) => b.to_string(),
                Node::Int(n) => n.to_string(),
                Node::Uint(n) => n.to_string(),
                Node::Float(f) => Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string()),
                other => {
                    return Err(de::Error::custom(format!(
                        "mapping keys must be scalars, not {}",
                        other.kind()
                    )));
                }
            };
            out.push((key, map.next_value()?));
        }
        Ok(Node::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::parse::{Manifest, parse_file, parse_file_with_keys};

    fn fixture(rel: &str) -> String {
        let path = format!("{}/tests/fixtures/sops/{rel}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn keys() -> AgeKeys {
        AgeKeys::parse(&fixture("key.agekey")).unwrap()
    }

    fn wrong() -> AgeKeys {
        AgeKeys::parse(&fixture("wrong.agekey")).unwrap()
    }

    /// Every plaintext value of the fixtures, and the secret keys: none may appear in an error.
    fn secrets() -> Vec<String> {
        let mut out: Vec<String> = [
            "shop-admin",
            "correct horse battery staple",
            "c2VjcmV0LXRva2VuLTQy",
            "payments.internal",
            "json-api-key-value",
            "buried-value",
            "db-1.internal",
            "s3cr3t-pw",
            "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t",
            "mac-only-secret-value",
            "suffix-secret-value",
            "first-document-secret",
            "second-document-secret",
        ]
        .map(str::to_owned)
        .into();
        for key in ["key.agekey", "wrong.agekey"] {
            let text = fixture(key);
            let line = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap();
            out.push(line["AGE-SECRET-KEY-1".len()..].to_owned());
            out.push(line.to_lowercase());
        }
        out
    }

    fn assert_no_secret(text: &str) {
        for s in secrets() {
            assert!(!text.contains(&s), "{s:?} leaked into: {text}");
        }
    }

    fn as_json(ms: &[Manifest]) -> Vec<Value> {
        ms.iter().map(|m| serde_json::to_value(&m.object).unwrap()).collect()
    }

    const FIXTURES: [&str; 8] = [
        "secret.yaml",
        "configmap.yaml",
        "document.json",
        "nested.yaml",
        "kubernetes-secret.yaml",
        "mac-only.yaml",
        "suffix.yaml",
        "multi.yaml",
    ];

    fn decrypt(name: &str, text: &str, keys: &AgeKeys) -> Result<Vec<Manifest>, RenderError> {
        parse_file_with_keys(name, text, Some(keys))
    }

    fn error(name: &str, text: &str, keys: &AgeKeys) -> String {
        let err = decrypt(name, text, keys).unwrap_err();
        assert_eq!(err.category(), "decryption_failed", "{err}");
        let shown = format!("{err} {err:?}");
        assert_no_secret(&shown);
        err.to_string()
    }

    #[test]
    fn every_fixture_decrypts_to_exactly_its_plaintext() {
        let keys = keys();
        for name in FIXTURES {
            let encrypted = fixture(&format!("encrypted/{name}"));
            assert!(encrypted.contains("ENC[AES256_GCM"), "{name} is encrypted");
            let got = decrypt(name, &encrypted, &keys).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = parse_file(name, &fixture(&format!("plain/{name}"))).unwrap();
            assert_eq!(as_json(&got), as_json(&want), "{name}");
            let docs: Vec<usize> = got.iter().map(|m| m.origin.doc).collect();
            assert_eq!(docs, want.iter().map(|m| m.origin.doc).collect::<Vec<_>>(), "{name}");
            for m in &got {
                assert!(m.object.data.get("sops").is_none(), "{name}: the sops metadata is removed");
            }
        }
    }

    #[test]
    fn types_and_order_survive() {
        let got = decrypt("nested.yaml", &fixture("encrypted/nested.yaml"), &keys()).unwrap();
        let spec = &got[0].object.data["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["ratio"], 0.75);
        assert_eq!(spec["enabled"], true);
        assert_eq!(spec["disabled"], false);
        assert_eq!(spec["nothing"], Value::Null);
        assert_eq!(spec["note_unencrypted"], "visible in git");
        assert_eq!(spec["servers"][1]["port"], 5433);
        assert_eq!(spec["matrix"][1], serde_json::json!(["three", 4.5]));
        assert_eq!(spec["deep"]["level1"]["level2"]["secret"], "buried-value");
    }

    #[test]
    fn the_wrong_key_names_the_recipients() {
        let recipient = keys().recipients()[0].clone();
        let err = error("apps/secret.yaml", &fixture("encrypted/secret.yaml"), &wrong());
        assert_eq!(
            err,
            format!(
                "apps/secret.yaml (document 1, line 1): cannot decrypt: no age identity in spec.decryption's Secret matches the file's recipients {recipient}"
            )
        );
        // Several keys: any one that matches will do.
        let both =
            AgeKeys::parse(&format!("{}\n{}", fixture("wrong.agekey"), fixture("key.agekey"))).unwrap();
        decrypt("secret.yaml", &fixture("encrypted/secret.yaml"), &both).unwrap();
    }

    #[test]
    fn no_keys_is_an_error_not_an_encrypted_apply() {
        for name in FIXTURES {
            let err = parse_file(name, &fixture(&format!("encrypted/{name}"))).unwrap_err();
            assert_eq!(err.category(), "decryption_failed");
            assert!(
                err.to_string().ends_with(
                    "cannot decrypt: the document is encrypted with SOPS; set spec.decryption (provider sops, an age key)"
                ),
                "{err}"
            );
        }
    }

    /// The `data:` part of the `ENC[…]` value on the line starting with `key`.
    fn enc_data<'t>(text: &'t str, key: &str) -> &'t str {
        let line = text.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
        let start = line.find("data:").unwrap() + 5;
        &line[start..start + line[start..].find(',').unwrap()]
    }

    #[test]
    fn tampered_values_fail() {
        let keys = keys();
        let text = fixture("encrypted/kubernetes-secret.yaml");
        // A flipped ciphertext byte.
        let data = enc_data(&text, "DATABASE_URL:");
        let flipped = format!("{}{}", if data.starts_with('A') { 'B' } else { 'A' }, &data[1..]);
        let err = error("s.yaml", &text.replacen(data, &flipped, 1), &keys);
        assert!(err.ends_with("cannot decrypt: the value at stringData.DATABASE_URL does not decrypt with the file's data key: its ciphertext was changed, or it was moved to another key"), "{err}");
        // A valid ciphertext moved under another key: the path is its additional data.
        let port = text.lines().find(|l| l.trim_start().starts_with("PORT:")).unwrap();
        let url = text.lines().find(|l| l.trim_start().starts_with("DATABASE_URL:")).unwrap();
        let moved = text.replacen(port, &url.replace("DATABASE_URL:", "PORT:"), 1);
        let err = error("s.yaml", &moved, &keys);
        assert!(err.contains("the value at stringData.PORT does not decrypt"), "{err}");
        // A changed unencrypted value, and reordered keys: only the MAC tells.
        let renamed = text.replacen("name: regex-secret", "name: other-secret", 1);
        assert!(error("s.yaml", &renamed, &keys).ends_with("MAC mismatch: the file was changed after it was encrypted (a value, a key or their order); re-encrypt it with sops"));
        let reordered = text.replacen(
            "    name: regex-secret\n    namespace: shop\n",
            "    namespace: shop\n    name: regex-secret\n",
            1,
        );
        assert_ne!(reordered, text);
        assert!(error("s.yaml", &reordered, &keys).contains("MAC mismatch"));
        // One document of a multi-document file dropped: the MAC covers the file.
        let multi = fixture("encrypted/multi.yaml");
        let first = multi.split("\n---\n").next().unwrap();
        assert!(error("m.yaml", first, &keys).contains("MAC mismatch"));
    }

    /// kustomize re-sorts keys and adds fields, so renderer output is checked value by value.
    #[test]
    fn kustomize_output_is_decrypted_value_by_value() {
        use crate::render::parse::{parse_rendered_yaml, parse_yaml_with_keys};
        let (keys, text) = (keys(), fixture("encrypted/kustomize-build.yaml"));
        let err = parse_yaml_with_keys("k.yaml", &text, Some(&keys)).unwrap_err();
        assert!(err.to_string().contains("MAC mismatch"), "{err}");
        let got = parse_rendered_yaml("k.yaml", &text, Some(&keys)).unwrap();
        let mut want = parse_file("m.yaml", &fixture("plain/mac-only.yaml")).unwrap();
        want.extend(parse_file("k.yaml", &fixture("plain/kubernetes-secret.yaml")).unwrap());
        for m in &mut want {
            m.object.metadata.namespace = Some("other".into());
        }
        assert_eq!(as_json(&got), as_json(&want));
        // A changed ciphertext still fails.
        let data = enc_data(&text, "DATABASE_URL:");
        let flipped = format!("{}{}", if data.starts_with('A') { 'B' } else { 'A' }, &data[1..]);
        let err = parse_rendered_yaml("k.yaml", &text.replacen(data, &flipped, 1), Some(&keys)).unwrap_err();
        assert!(err.to_string().contains("the value at stringData.DATABASE_URL does not decrypt"), "{err}");
        assert_eq!(parse_rendered_yaml("k.yaml", &text, None).unwrap_err().category(), "decryption_failed");
    }

    #[test]
    fn mac_only_encrypted_leaves_unencrypted_values_out_of_the_mac() {
        let text = fixture("encrypted/mac-only.yaml").replacen("name: mac-only", "name: renamed", 1);
        let got = decrypt("m.yaml", &text, &keys()).unwrap();
        assert_eq!(got[0].object.metadata.name.as_deref(), Some("renamed"));
    }

    #[test]
    fn tampered_mac_fails() {
        let keys = keys();
        let text = fixture("encrypted/secret.yaml");
        let mac = enc_data(&text, "mac:");
        let flipped = format!("{}{}", if mac.starts_with('A') { 'B' } else { 'A' }, &mac[1..]);
        let err = error("s.yaml", &text.replacen(mac, &flipped, 1), &keys);
        assert!(
            err.ends_with(
                "the MAC does not decrypt with the file's data key: the sops mac or lastmodified was changed"
            ),
            "{err}"
        );
        let stamp = text.lines().find(|l| l.contains("lastmodified:")).unwrap();
        let err =
            error("s.yaml", &text.replacen(stamp, "    lastmodified: \"2020-01-01T00:00:00Z\"", 1), &keys);
        assert!(err.contains("the MAC does not decrypt"), "{err}");
    }

    #[test]
    fn malformed_values_and_metadata_fail_clearly() {
        let keys = keys();
        let text = fixture("encrypted/secret.yaml");
        let cases = [
            (
                text.replacen(",iv:", ",iv:!!", 1),
                "the value at apiVersion is not a valid SOPS value (ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]): iv is not base64",
            ),
            (
                text.replacen("type:str]", "type:blob]", 1),
                "the value at apiVersion is not a valid SOPS value (ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]): unknown type",
            ),
            (
                text.replacen("ENC[AES256_GCM,data:", "ENC[AES128,data:", 1),
                "the value at apiVersion is not a valid SOPS value (ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]): not in ENC[…] form",
            ),
            (
                text.replacen("    age:\n", "    pgp:\n", 1),
                "the file is encrypted for pgp only; ferry decrypts SOPS files with age recipients",
            ),
        ];
        for (bad, want) in cases {
            let err = error("s.yaml", &bad, &keys);
            assert!(err.ends_with(want), "{err}\nwant: {want}");
        }
        // An unencrypted value where the rules say encrypted.
        let plain_value =
            text.replacen(text.lines().find(|l| l.starts_with("kind:")).unwrap(), "kind: Secret", 1);
        assert!(error("s.yaml", &plain_value, &keys).contains("the value at kind is not a valid SOPS value"));
        let mac_line = text.lines().find(|l| l.trim_start().starts_with("mac:")).unwrap();
        let no_mac = text.replacen(&format!("{mac_line}\n"), "", 1);
        assert!(
            error("s.yaml", &no_mac, &keys)
                .ends_with("the file's sops metadata is malformed: mac is not a string")
        );
        let comment_rule =
            text.replacen("    lastmodified:", "    encrypted_comment_regex: sops\n    lastmodified:", 1);
        assert!(
            error("s.yaml", &comment_rule, &keys)
                .contains("sets encrypted_comment_regex, which ferry does not support")
        );
    }

    #[test]
    fn errors_name_the_document() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before}\n---\n";
        let text = format!("{cm}{}", fixture("encrypted/secret.yaml"));
        let err = parse_file("all.yaml", &text).unwrap_err().to_string();
        assert!(err.starts_with("all.yaml (document 2, line 5): cannot decrypt"), "{err}");
        // Plain documents beside encrypted ones are left as they are.
        let ms = decrypt("all.yaml", &text, &keys()).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].object.metadata.name.as_deref(), Some("before"));
    }

    #[test]
    fn keys_parse_and_never_show_themselves() {
        let both = format!("# two keys\n\n{}\n  {}  \n", fixture("key.agekey"), fixture("wrong.agekey"));
        let keys = AgeKeys::parse(&both).unwrap();
        assert_eq!(keys.recipients().len(), 2);
        let shown = format!("{keys:?}");
        assert_no_secret(&shown);
        assert!(shown.starts_with("AgeKeys { identities: 2, fingerprint: "), "{shown}");
        // The fingerprint depends on the set of keys, not their order.
        let swapped =
            AgeKeys::parse(&format!("{}{}", fixture("wrong.agekey"), fixture("key.agekey"))).unwrap();
        assert_eq!(keys.fingerprint(), swapped.fingerprint());
        assert_ne!(keys.fingerprint(), self::keys().fingerprint());
        assert_eq!(keys.fingerprint().len(), 64);

        let key_line = fixture("key.agekey").lines().find(|l| l.starts_with("AGE-")).unwrap().to_owned();
        let damaged = format!("# c\n{}X\n", &key_line[..key_line.len() - 1]);
        let err = AgeKeys::parse(&damaged).unwrap_err();
        assert_eq!(err.to_string(), "line 2 is not an age X25519 identity (AGE-SECRET-KEY-1…)");
        assert_no_secret(&format!("{err} {err:?}"));
        assert_eq!(
            AgeKeys::parse("# nothing\n").unwrap_err().to_string(),
            "no age identity (AGE-SECRET-KEY-1…) found"
        );
    }

    #[test]
    fn keys_from_a_secret_read_every_agekey_entry() {
        let entry = |name: &str, text: &str| (name.to_owned(), ByteString(text.as_bytes().to_vec()));
        let data = BTreeMap::from([
            entry("a.agekey", &fixture("wrong.agekey")),
            entry("identity.agekey", &fixture("key.agekey")),
            entry("README", "not a key"),
        ]);
        let keys = AgeKeys::from_secret_data(&data).unwrap();
        assert_eq!(keys.recipients().len(), 2);
        decrypt("s.yaml", &fixture("encrypted/secret.yaml"), &keys).unwrap();

        let none = BTreeMap::from([entry("README", "x")]);
        let err = AgeKeys::from_secret_data(&none).unwrap_err();
        assert_eq!(err.to_string(), "the Secret has no entry whose name ends in .agekey");
        let bad = BTreeMap::from([entry("x.agekey", "AGE-SECRET-KEY-1NOPE\n")]);
        let err = AgeKeys::from_secret_data(&bad).unwrap_err();
        assert_eq!(err.to_string(), "line 1 of x.agekey is not an age X25519 identity (AGE-SECRET-KEY-1…)");
        let binary = BTreeMap::from([("y.agekey".to_owned(), ByteString(vec![0xff, 0xfe]))]);
        assert_eq!(
            AgeKeys::from_secret_data(&binary).unwrap_err().to_string(),
            "y.agekey of the Secret is not UTF-8 text"
        );
    }

    #[test]
    fn rules_follow_sops() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let default = Rules { unencrypted_suffix: Some("_unencrypted".into()), ..Rules::default() };
        assert!(default.encrypts(&path(&["a", "b"])));
        assert!(!default.encrypts(&path(&["a_unencrypted", "b"])));
        let regex = Rules {
            encrypted_regex: Some(regex::Regex::new("^(data|stringData)$").unwrap()),
            ..Rules::default()
        };
        assert!(regex.encrypts(&path(&["stringData", "x"])));
        assert!(!regex.encrypts(&path(&["metadata", "name"])));
        assert!(!regex.encrypts(&path(&["metadata", "mydata"])));
        let unregex =
            Rules { unencrypted_regex: Some(regex::Regex::new("^meta").unwrap()), ..Rules::default() };
        assert!(!unregex.encrypts(&path(&["metadata", "name"])));
        assert!(unregex.encrypts(&path(&["spec"])));
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.75), "0.75");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
