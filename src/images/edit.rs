//! Setter markers and the edit of the values they mark: pure, line by line, byte for byte.
//!
//! A marker is the comment of a line, Flux's form exactly: `# {"$imagepolicy": "NS:NAME"}`
//! (the full reference `name:tag`, `name:tag@digest` when pinned), `"NS:NAME:tag"` (the tag,
//! `tag@digest` when pinned), `"NS:NAME:name"` (the repository) or `"NS:NAME:digest"` (the
//! digest; left alone while the policy does not pin digests). It marks the scalar on its line:
//! `key: value # marker`, `- key: value # marker` or `- value # marker`, the value plain,
//! 'single' or "double" quoted. Kustomize's `images:` entries are the same lines
//! (`newName:`, `newTag:`, `digest:`).
//!
//! Only that value is rewritten, in its quoting style; a plain value that would read as
//! something other than a string (`1.10`, `20240101`, `true`) is written double-quoted. Every
//! other byte stays: comments, indentation, line endings, other documents. Lines the editor
//! cannot read with certainty (block scalars, flow collections, anchors, tags) are left alone.

/// Which part of the image a marker asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Full,
    Tag,
    Name,
    Digest,
}

/// The image the policy chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// The repository as `spec.image` names it.
    pub name: String,
    pub tag: String,
    /// `sha256:...`, when the policy pins digests.
    pub digest: Option<String>,
}

impl Latest {
    /// `name:tag`, or `name:tag@digest` when pinned.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag_value())
    }

    fn tag_value(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.tag),
            None => self.tag.clone(),
        }
    }

    /// What a marker of `field` sets; `None` for a digest the policy does not know.
    pub fn value(&self, field: Field) -> Option<String> {
        match field {
            Field::Full => Some(self.reference()),
            Field::Tag => Some(self.tag_value()),
            Field::Name => Some(self.name.clone()),
            Field::Digest => self.digest.clone(),
        }
    }
}

/// One value rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineEdit {
    /// 1-based.
    pub line: usize,
    pub field: Field,
    pub old: String,
    pub new: String,
}

/// The policy a marker names, and which part it sets. Anything but Flux's exact JSON object
/// is not a marker.
pub fn parse_marker(comment: &str) -> Option<(String, String, Field)> {
    let text = comment.trim();
    if !text.starts_with('{') || !text.ends_with('}') {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    let value = object.get("$imagepolicy")?.as_str()?;
    let parts: Vec<&str> = value.split(':').collect();
    let field = match parts.get(2).copied() {
        None => Field::Full,
        Some("tag") => Field::Tag,
        Some("name") => Field::Name,
        Some("digest") => Field::Digest,
        Some(_) => return None,
    };
    match parts.as_slice() {
        [ns, name, ..] if parts.len() <= 3 && !ns.is_empty() && !name.is_empty() => {
            Some((ns.to_string(), name.to_string(), field))
        }
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// Where a marked line's value is.
#[derive(Debug, PartialEq, Eq)]
struct Marked<'a> {
    /// Byte range of the value as written (quotes included); empty for `key: # marker`.
    start: usize,
    end: usize,
    style: Style,
    comment: &'a str,
}

/// The value and the comment of one line (without its line ending), if it has both in a form
/// the editor reads with certainty.
fn locate(line: &str) -> Option<Marked<'_>> {
    let bytes = line.as_bytes();
    // Document markers are not values.
    if line.starts_with("---") || line.starts_with("...") {
        return None;
    }
    let mut i = bytes.iter().take_while(|b| **b == b' ').count();
    // Sequence indicators: `- `, `- - `.
    while bytes.get(i) == Some(&b'-') && matches!(bytes.get(i + 1), Some(b' ' | b'\t')) {
        i += 2;
        i += skip_blanks(&bytes[i..]);
    }
    // A line that is all comment (a value commented out) has no value.
    if bytes.get(i) == Some(&b'#') {
        return None;
    }
    let value_start = match key_end(line, i) {
        Some(after_colon) => after_colon + skip_blanks(&bytes[after_colon..]),
        None => i,
    };
    let (style, end) = match bytes.get(value_start) {
        Some(b'"') => (Style::Double, value_start + 1 + double_quoted_len(&line[value_start + 1..])? + 1),
        Some(b'\'') => (Style::Single, value_start + 1 + single_quoted_len(&line[value_start + 1..])? + 1),
        Some(b'#') => (Style::Plain, value_start),
        Some(b'|' | b'>' | b'[' | b'{' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`') | None => return None,
        Some(_) => (Style::Plain, value_start + plain_len(&line[value_start..])),
    };
    let rest = &line[end..];
    let blanks = skip_blanks(rest.as_bytes());
    // A comment needs a blank before it, except where the value is empty.
    if rest.as_bytes().get(blanks) != Some(&b'#') || (blanks == 0 && end != value_start) {
        return None;
    }
    Some(Marked { start: value_start, end, style, comment: &rest[blanks + 1..] })
}

fn skip_blanks(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| matches!(b, b' ' | b'\t')).count()
}

/// The byte after the `:` that ends a mapping key starting at `from`, if the line has one.
fn key_end(line: &str, from: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = from;
    match bytes.get(from) {
        Some(b'"') => i += 2 + double_quoted_len(&line[from + 1..])?,
        Some(b'\'') => i += 2 + single_quoted_len(&line[from + 1..])?,
        _ => {}
    }
    while i < bytes.len() {
        match bytes[i] {
            b':' if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) => return Some(i + 1),
            b'#' if i > from && matches!(bytes[i - 1], b' ' | b'\t') => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Length of a double-quoted scalar's content (up to the closing quote).
fn double_quoted_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Length of a single-quoted scalar's content (`''` is a quote).
fn single_quoted_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Length of a plain scalar: up to a blank followed by `#`, without trailing blanks.
fn plain_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut end = bytes.len();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && matches!(bytes[i - 1], b' ' | b'\t') {
            end = i;
            break;
        }
    }
    s[..end].trim_end_matches([' ', '\t']).len()
}

/// A written value, as YAML reads it (the escapes image references could carry).
fn decode(raw: &str, style: Style) -> String {
    match style {
        Style::Plain => raw.to_string(),
        Style::Single => raw[1..raw.len() - 1].replace("''", "'"),
        Style::Double => {
            let inner = &raw[1..raw.len() - 1];
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            out
        }
    }
}

fn encode(value: &str, style: Style) -> String {
    match style {
        Style::Plain if !plain_safe(value) => encode(value, Style::Double),
        Style::Plain => value.to_string(),
        Style::Single if value.chars().any(char::is_control) => encode(value, Style::Double),
        Style::Single => format!("'{}'", value.replace('\'', "''")),
        Style::Double => {
            let mut out = String::from("\"");
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

/// Whether `value` written plain reads back as this string (YAML 1.1 and 1.2: not a number,
/// boolean or null, no indicator or comment).
fn plain_safe(value: &str) -> bool {
    let Some(first) = value.chars().next() else { return false };
    if "-?:,[]{}#&*!|>'\"%@` \t".contains(first)
        || value.ends_with([' ', '\t', ':'])
        || value.contains(": ")
        || value.contains(" #")
        || value.chars().any(char::is_control)
    {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let words = ["true", "false", "yes", "no", "y", "n", "on", "off", "null", "~", ".inf", ".nan"];
    if words.contains(&lower.as_str()) || looks_numeric(&lower) {
        return false;
    }
    true
}

/// Numbers in YAML 1.1 or 1.2: `10`, `1.10`, `1e3`, `0x1f`, `0o17`, `1_000`, `1:20` (base 60).
fn looks_numeric(v: &str) -> bool {
    let unsigned = v.strip_prefix(['+', '-']).unwrap_or(v);
    if unsigned.parse::<f64>().is_ok() && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return true;
    }
    if let Some(rest) = unsigned.strip_prefix("0x").or_else(|| unsigned.strip_prefix("0o")) {
        return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    }
    let digits = unsigned.chars().filter(char::is_ascii_digit).count();
    digits > 0
        && unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '_' | ':' | '.'))
        && unsigned.matches('.').count() <= 1
}

/// `text` with the values marked for policy `namespace/name` set to `latest`, and what
/// changed. `None` when `text` is not UTF-8 or nothing changed.
pub fn edit_text(
    text: &[u8],
    namespace: &str,
    name: &str,
    latest: &Latest,
) -> Option<(Vec<u8>, Vec<LineEdit>)> {
    let text = std::str::from_utf8(text).ok()?;
    if !text.contains("$imagepolicy") {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut edits = Vec::new();
    for (index, full) in text.split_inclusive('\n').enumerate() {
        let body = full.trim_end_matches(['\n', '\r']);
        match edit_line(body, namespace, name, latest) {
            Some((line, old, new, field)) => {
                out.push_str(&line);
                out.push_str(&full[body.len()..]);
                edits.push(LineEdit { line: index + 1, field, old, new });
            }
            None => out.push_str(full),
        }
    }
    (!edits.is_empty()).then(|| (out.into_bytes(), edits))
}

/// The line with its marked value replaced, the old and new values, when it carries this
/// policy's marker and its value differs.
fn edit_line(
    line: &str,
    namespace: &str,
    name: &str,
    latest: &Latest,
) -> Option<(String, String, String, Field)> {
    if !line.contains("$imagepolicy") {
        return None;
    }
    let marked = locate(line)?;
    let (ns, policy, field) = parse_marker(marked.comment)?;
    if ns != namespace || policy != name {
        return None;
    }
    let new = latest.value(field)?;
    let raw = &line[marked.start..marked.end];
    let old = if raw.is_empty() { String::new() } else { decode(raw, marked.style) };
    if old == new {
        return None;
    }
    let mut written = encode(&new, marked.style);
    if raw.is_empty() {
        written.push(' ');
    }
    let edited = format!("{}{written}{}", &line[..marked.start], &line[marked.end..]);
    Some((edited, old, new, field))
}

/// Whether a repository path is a file the editor reads.
pub fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// One line per image changed for the commit message: `reg/team/web 1.0.0 -> 1.1.0`.
pub fn describe_changes<'a>(latest: &Latest, edits: impl IntoIterator<Item = &'a LineEdit>) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for e in edits {
        let line = match e.field {
            Field::Full => {
                let (old_name, old_tag) = split_reference(&e.old);
                if old_name == latest.name {
                    format!("{} {old_tag} -> {}", latest.name, latest.tag_value())
                } else {
                    format!("{} -> {}", e.old, e.new)
                }
            }
            Field::Tag | Field::Digest => format!("{} {} -> {}", latest.name, or_none(&e.old), e.new),
            Field::Name => format!("{} -> {}", or_none(&e.old), e.new),
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

/// `reg:5000/team/web:1.0@sha256:..` into the name and what follows it.
pub fn split_reference(reference: &str) -> (&str, &str) {
    let before_digest = reference.find('@').unwrap_or(reference.len());
    let last_slash = reference[..before_digest].rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..before_digest].rfind(':') {
        Some(colon) => (&reference[..last_slash + colon], &reference[last_slash + colon + 1..]),
        None if before_digest < reference.len() => (&reference[..before_digest], &reference[before_digest..]),
        None => (reference, "(none)"),
    }
}

#[cfg(test)]
mod tests;
