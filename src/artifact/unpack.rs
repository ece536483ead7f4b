//! Extracting a `.tar.gz` artifact (a Helm chart, a Flux manifests artifact) into a fresh
//! directory. The archive comes from a registry that an Application's author chose, so every
//! entry is hostile until checked:
//!
//! - Only regular files and directories are written. Symbolic links, hard links, devices,
//!   FIFOs and sparse files make the whole archive refused (not skipped: a chart or a manifest
//!   directory needs none of them, and silently dropping one would change what gets applied).
//!   PAX global headers (`git archive` writes one) carry no file and are skipped.
//! - A path must be relative UTF-8 without `..`, backslashes or NUL; `./` prefixes are fine.
//!   Since nothing but files and directories is ever created, and the destination starts
//!   empty, no path can reach outside it.
//! - Limits: entries (files and directories), bytes per file, bytes in all, checked against
//!   each header before anything is written; the decompressed stream itself is capped too,
//!   since the tar reader holds long names and PAX headers in memory (a gzip bomb there would
//!   otherwise never meet a file limit).
//! - A path written twice is refused (which copy wins would depend on the unpacker).
//! - Files are read-only (0444, or 0555 when the archive marks them executable), as in Git
//!   snapshots: the artifact cache is shared and must not be edited in place.

use std::cell::Cell;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

/// Bounds on what one archive may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of file content in all.
    pub max_total_bytes: u64,
    /// Entries written: files and directories.
    pub max_files: u64,
    /// Bytes of one file.
    pub max_file_bytes: u64,
}

impl Default for UnpackLimits {
    /// Generous for charts and manifests (the largest public charts are a few MiB unpacked).
    fn default() -> Self {
        UnpackLimits { max_total_bytes: 256 << 20, max_files: 20_000, max_file_bytes: 64 << 20 }
    }
}

/// What an archive wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub files: u64,
    pub directories: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Why an archive was not (completely) unpacked. The destination may then hold part of it:
/// callers unpack into a temporary directory and remove it on error.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot unpack into {}: {reason}", dest.display())]
    Destination { dest: PathBuf, reason: &'static str },
    #[error("not a valid gzip-compressed tar archive: {message}")]
    Corrupt { message: String },
    #[error("archive entry {path:?} {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("archive entry {path:?} is a {kind}; only regular files and directories are allowed")]
    UnsupportedEntry { path: String, kind: &'static str },
    #[error("archive entry {path:?} is written twice or clashes with an earlier entry")]
    Duplicate { path: String },
    #[error("archive has more than {limit} files and directories")]
    TooManyFiles { limit: u64 },
    #[error("archive entry {path:?} is {size} bytes, over the limit of {limit} bytes per file")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

/// Unpacks the gzip-compressed tar `bytes` into `dest`, which must be an empty directory or
/// not exist yet (its parent must).
pub fn unpack_tar_gz(bytes: &[u8], dest: &Path, limits: UnpackLimits) -> Result<Unpacked, UnpackError> {
    if bytes.is_empty() {
        return Err(UnpackError::Corrupt { message: "the archive is empty (0 bytes)".to_string() });
    }
    prepare_destination(dest)?;
    let cap = decompressed_cap(&limits);
    let over_cap = Rc::new(Cell::new(false));
    let reader = CappedReader { inner: MultiGzDecoder::new(bytes), left: cap, over: over_cap.clone() };
    let mut archive = tar::Archive::new(reader);
    let read_error = |e: io::Error| match over_cap.get() {
        true => UnpackError::TooLarge { limit: limits.max_total_bytes },
        false => UnpackError::Corrupt { message: e.to_string() },
    };
    let mut tally = Unpacked::default();
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        match unpack_entry(&mut entry, dest, &limits, &mut tally) {
            Err(UnpackError::Corrupt { .. }) if over_cap.get() => {
                return Err(UnpackError::TooLarge { limit: limits.max_total_bytes });
            }
            other => other?,
        }
    }
    Ok(tally)
}

/// The decompressed tar stream may exceed the file content by headers, padding and names;
/// 8 KiB an entry is far above what any tool writes, and small enough to stop a bomb.
fn decompressed_cap(limits: &UnpackLimits) -> u64 {
    let per_entry = limits.max_files.saturating_add(1).saturating_mul(8 << 10);
    limits.max_total_bytes.saturating_add(per_entry).saturating_add(64 << 10)
}

/// `dest` must be a real directory (not a symlink) with nothing in it, or absent: an existing
/// symlink inside it could otherwise carry a file outside.
fn prepare_destination(dest: &Path) -> Result<(), UnpackError> {
    let refuse = |reason| UnpackError::Destination { dest: dest.to_path_buf(), reason };
    let io_err = |source| UnpackError::Io { action: "cannot create", path: dest.to_path_buf(), source };
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(dest).map_err(io_err),
        Err(e) => Err(io_err(e)),
        Ok(meta) if !meta.is_dir() => Err(refuse("it exists and is not a directory")),
        Ok(_) => {
            let mut listing = fs::read_dir(dest).map_err(io_err)?;
            match listing.next() {
                None => Ok(()),
                Some(_) => Err(refuse("the directory is not empty")),
            }
        }
    }
}

/// What to do with an entry of a given type.
enum Action {
    File,
    Dir,
    Skip,
    Refuse(&'static str),
}

fn action(kind: tar::EntryType) -> Action {
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous => Action::File,
        T::Directory => Action::Dir,
        T::XGlobalHeader => Action::Skip,
        T::Symlink => Action::Refuse("symbolic link"),
        T::Link => Action::Refuse("hard link"),
        T::Char => Action::Refuse("character device"),
        T::Block => Action::Refuse("block device"),
        T::Fifo => Action::Refuse("FIFO"),
        T::GNUSparse => Action::Refuse("sparse file"),
        _ => Action::Refuse("entry of an unsupported type"),
    }
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    limits: &UnpackLimits,
    tally: &mut Unpacked,
) -> Result<(), UnpackError> {
    let raw = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let what = action(entry.header().entry_type());
    if let Action::Refuse(kind) = what {
        return Err(UnpackError::UnsupportedEntry { path: shown, kind });
    }
    if let Action::Skip = what {
        return Ok(());
    }
    let relative =
        safe_relative_path(&raw).map_err(|reason| UnpackError::UnsafePath { path: shown.clone(), reason })?;
    if tally.files + tally.directories >= limits.max_files {
        return Err(UnpackError::TooManyFiles { limit: limits.max_files });
    }
    match (what, relative) {
        // `./` itself: the destination, which exists.
        (Action::Dir, None) => Ok(()),
        (Action::Dir, Some(relative)) => {
            let full = dest.join(relative);
            fs::create_dir_all(&full)
                .map_err(|e| clash_or_io(e, &shown, "cannot create directory", &full))?;
            tally.directories += 1;
            Ok(())
        }
        (_, None) => Err(UnpackError::UnsafePath { path: shown, reason: "is a file with no name" }),
        (_, Some(relative)) => write_file(entry, &dest.join(relative), &shown, limits, tally),
    }
}

/// The entry's path as a relative path below the destination; `None` for the destination
/// itself (`.` or `./`).
fn safe_relative_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "has a path that is not UTF-8")?;
    if text.contains('\0') {
        return Err("has a NUL byte in its path");
    }
    // A backslash is a separator to Windows tools and a name character here: ambiguous.
    if text.contains('\\') {
        return Err("has a backslash in its path");
    }
    if text.starts_with('/') {
        return Err("has an absolute path");
    }
    let mut out = PathBuf::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has `..` in its path"),
            name => out.push(name),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    full: &Path,
    shown: &str,
    limits: &UnpackLimits,
    tally: &mut Unpacked,
) -> Result<(), UnpackError> {
    let size = entry.size();
    if size > limits.max_file_bytes {
        return Err(UnpackError::FileTooLarge {
            path: shown.to_string(),
            size,
            limit: limits.max_file_bytes,
        });
    }
    if tally.bytes.saturating_add(size) > limits.max_total_bytes {
        return Err(UnpackError::TooLarge { limit: limits.max_total_bytes });
    }
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).map_err(|e| clash_or_io(e, shown, "cannot create directory", parent))?;
    }
    let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o555 } else { 0o444 })
        .open(full)
        .map_err(|e| clash_or_io(e, shown, "cannot create file", full))?;
    // `take` as well as the header check: the reader stops at the header's size, and this
    // makes the bound independent of that.
    let written = io::copy(&mut entry.take(size), &mut file)
        .map_err(|e| UnpackError::Corrupt { message: format!("reading {shown:?}: {e}") })?;
    if written != size {
        return Err(UnpackError::Corrupt {
            message: format!("{shown:?} is truncated ({written} of {size} bytes)"),
        });
    }
    tally.files += 1;
    tally.bytes += size;
    Ok(())
}

/// A create that fails because the path is taken (or a parent is a file) is the archive's
/// fault, not the disk's.
fn clash_or_io(source: io::Error, shown: &str, action: &'static str, path: &Path) -> UnpackError {
    match source.kind() {
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
            UnpackError::Duplicate { path: shown.to_string() }
        }
        _ => UnpackError::Io { action, path: path.to_path_buf(), source },
    }
}

/// Fails reads once `left` bytes have been read, and says so through `over`.
struct CappedReader<R> {
    inner: R,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more would be past the cap; a stream that ends exactly here is fine.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.over.set(true);
            return Err(io::Error::other("decompressed archive exceeds the size limit"));
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    /// One entry with a raw name (bypassing the tar builder's own path checks) and type.
    struct Raw<'a> {
        name: &'a [u8],
        kind: tar::EntryType,
        data: &'a [u8],
        mode: u32,
        link: &'a [u8],
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
        Raw { name: name.as_bytes(), kind: tar::EntryType::Regular, data, mode: 0o644, link: b"" }
    }

    fn dir(name: &str) -> Raw<'_> {
        Raw { name: name.as_bytes(), kind: tar::EntryType::Directory, data: b"", mode: 0o755, link: b"" }
    }

    fn of_kind<'a>(name: &'a str, kind: tar::EntryType, link: &'a str) -> Raw<'a> {
        Raw { name: name.as_bytes(), kind, data: b"", mode: 0o644, link: link.as_bytes() }
    }

    fn tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for e in entries {
            let mut header = tar::Header::new_gnu();
            let gnu = header.as_gnu_mut().expect("a GNU header");
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            gnu.linkname[..e.link.len()].copy_from_slice(e.link);
            header.set_entry_type(e.kind);
            header.set_size(e.data.len() as u64);
            header.set_mode(e.mode);
            header.set_cksum();
            builder.append(&header, e.data).expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn unpack(archive: &[u8], limits: UnpackLimits) -> (tempfile::TempDir, Result<Unpacked, UnpackError>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let result = unpack_tar_gz(archive, &tmp.path().join("out"), limits);
        (tmp, result)
    }

    fn refused(entries: &[Raw<'_>]) -> UnpackError {
        let (tmp, result) = unpack(&tar_gz(entries), UnpackLimits::default());
        assert!(!tmp.path().join("evil").exists(), "something was written outside the destination");
        result.expect_err("the archive must be refused")
    }

    #[test]
    fn unpacks_files_and_directories_read_only() {
        let script = Raw { mode: 0o755, ..file("chart/run.sh", b"#!/bin/sh\n") };
        let archive = tar_gz(&[
            dir("./"),
            dir("chart/"),
            file("chart/Chart.yaml", b"name: c\n"),
            file("./chart/templates/cm.yaml", b"kind: ConfigMap\n"),
            script,
        ]);
        let (tmp, result) = unpack(&archive, UnpackLimits::default());
        let out = tmp.path().join("out");
        assert_eq!(result.unwrap(), Unpacked { files: 3, directories: 1, bytes: 8 + 16 + 10 });
        assert_eq!(fs::read(out.join("chart/templates/cm.yaml")).unwrap(), b"kind: ConfigMap\n");
        let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("chart/Chart.yaml") & 0o222, 0, "files are read-only");
        assert_ne!(mode("chart/run.sh") & 0o100, 0, "the executable bit is kept");
    }

    #[test]
    fn parent_directory_escapes_are_refused() {
        for name in ["../evil", "a/../../evil", "./../evil", ".."] {
            let err = refused(&[file(name, b"x")]);
            assert!(matches!(err, UnpackError::UnsafePath { .. }), "{name}: {err}");
            assert!(err.to_string().contains(".."), "{err}");
        }
    }

    #[test]
    fn absolute_backslash_and_non_utf8_paths_are_refused() {
        let evil = std::env::temp_dir().join("ferry-unpack-absolute-evil");
        let err = refused(&[file(evil.to_str().unwrap(), b"x")]);
        assert!(err.to_string().contains("absolute"), "{err}");
        assert!(!evil.exists());
        let err = refused(&[file("..\\evil", b"x")]);
        assert!(err.to_string().contains("backslash"), "{err}");
        let err = refused(&[Raw { name: b"caf\xe9", ..file("", b"x") }]);
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn links_devices_and_fifos_are_refused() {
        use tar::EntryType as T;
        for (kind, word) in [
            (T::Symlink, "symbolic link"),
            (T::Link, "hard link"),
            (T::Char, "character device"),
            (T::Block, "block device"),
            (T::Fifo, "FIFO"),
        ] {
            // A link to outside, then a file written through it: refused at the link.
            let err = refused(&[of_kind("evil-link", kind, "../evil"), file("evil-link/x", b"x")]);
            assert!(matches!(err, UnpackError::UnsupportedEntry { .. }), "{kind:?}: {err}");
            assert!(err.to_string().contains(word), "{err}");
        }
    }

    #[test]
    fn an_entry_written_twice_is_refused() {
        let err = refused(&[file("a.yaml", b"one"), file("a.yaml", b"two")]);
        assert!(matches!(err, UnpackError::Duplicate { .. }), "{err}");
        let err = refused(&[file("a", b"file"), file("a/b", b"under a file")]);
        assert!(matches!(err, UnpackError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn size_and_count_limits() {
        let limits = UnpackLimits { max_total_bytes: 10, max_files: 3, max_file_bytes: 6 };
        let (_tmp, r) = unpack(&tar_gz(&[file("a", b"1234567")]), limits);
        assert!(matches!(r, Err(UnpackError::FileTooLarge { size: 7, limit: 6, .. })), "{r:?}");
        let (_tmp, r) = unpack(&tar_gz(&[file("a", b"123456"), file("b", b"12345")]), limits);
        assert!(matches!(r, Err(UnpackError::TooLarge { limit: 10 })), "{r:?}");
        let (_tmp, r) =
            unpack(&tar_gz(&[dir("d"), file("d/a", b""), file("d/b", b""), file("d/c", b"")]), limits);
        assert!(matches!(r, Err(UnpackError::TooManyFiles { limit: 3 })), "{r:?}");
        let (_tmp, r) = unpack(&tar_gz(&[dir("d"), file("d/a", b"123456"), file("d/b", b"1234")]), limits);
        assert_eq!(r.unwrap(), Unpacked { files: 2, directories: 1, bytes: 10 });
    }

    #[test]
    fn gzip_bombs_stop_at_the_limits() {
        let limits = UnpackLimits { max_total_bytes: 1 << 20, max_files: 10, max_file_bytes: 1 << 20 };
        // 64 MiB of zeros in one file: refused from its header, before it is inflated.
        let zeros = vec![0u8; 64 << 20];
        let archive = tar_gz(&[file("bomb", &zeros)]);
        assert!(archive.len() < 1 << 20);
        let (tmp, r) = unpack(&archive, limits);
        assert!(matches!(r, Err(UnpackError::FileTooLarge { .. })), "{r:?}");
        assert!(!tmp.path().join("out/bomb").exists());
        // 8 MiB of PAX header, which the tar reader would hold in memory: the stream cap stops it.
        let pax = Raw { kind: tar::EntryType::XHeader, data: &zeros[..8 << 20], ..file("pax", b"") };
        let (_tmp, r) = unpack(&tar_gz(&[pax, file("a", b"x")]), limits);
        assert!(matches!(r, Err(UnpackError::TooLarge { .. })), "{r:?}");
    }

    #[test]
    fn pax_global_headers_are_skipped() {
        let global = Raw {
            kind: tar::EntryType::XGlobalHeader,
            data: b"52 comment=0123\n",
            ..file("pax_global_header", b"")
        };
        let (_tmp, r) = unpack(&tar_gz(&[global, file("a", b"x")]), UnpackLimits::default());
        assert_eq!(r.unwrap().files, 1);
    }

    #[test]
    fn destination_must_be_empty_and_real() {
        let archive = tar_gz(&[file("a", b"x")]);
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("taken"), b"").unwrap();
        let err = unpack_tar_gz(&archive, tmp.path(), UnpackLimits::default()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let err = unpack_tar_gz(&archive, &tmp.path().join("taken"), UnpackLimits::default()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        std::os::unix::fs::symlink(&empty, tmp.path().join("link")).unwrap();
        let err = unpack_tar_gz(&archive, &tmp.path().join("link"), UnpackLimits::default()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(unpack_tar_gz(&archive, &empty, UnpackLimits::default()).unwrap().files, 1);
    }

    #[test]
    fn corrupt_archives_are_errors() {
        for bytes in [&b""[..], b"not gzip at all", &gz(b"not a tar archive, but gzip")] {
            let (_tmp, r) = unpack(bytes, UnpackLimits::default());
            assert!(matches!(r, Err(UnpackError::Corrupt { .. })), "{r:?}");
        }
        let archive = tar_gz(&[file("a", &[7u8; 4096])]);
        let (_tmp, r) = unpack(&archive[..archive.len() / 2], UnpackLimits::default());
        assert!(matches!(r, Err(UnpackError::Corrupt { .. })), "{r:?}");
    }
}
