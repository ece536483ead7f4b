//! Export of one commit's tree into a read-only directory shared by every Application on that
//! commit, so no Application needs a checkout of its own.
//!
//! The export is atomic: files are written into a temporary directory next to the target and
//! renamed into place, so a snapshot directory that exists is complete. Files are read-only
//! (0444, or 0555 when executable in Git); directories stay writable by the owner only so
//! the cache can delete old snapshots. A symlink whose target leaves the tree (absolute, too
//! many `..`, or through other symlinks) refuses the whole snapshot, because a renderer that
//! follows it would read files of the host.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::SourceError;

/// Symlinks resolving through more links than this are refused (as a loop).
const MAX_LINK_DEPTH: usize = 40;

#[derive(Debug)]
enum Node {
    Dir,
    File {
        blob: Oid,
        executable: bool,
    },
    /// The blob holding the link target.
    Link(Oid),
    /// A submodule: exported as an empty directory, as `git checkout` leaves it.
    Gitlink,
}

/// Where the snapshot of `commit` lives under `trees_dir`.
pub(crate) fn snapshot_path(trees_dir: &Path, commit: &str) -> PathBuf {
    trees_dir.join(commit)
}

/// Exports `commit` into `trees_dir/<sha>` unless it is there already; returns that path.
/// Errors reading objects are reported through `on_git_error` so the caller can tell a corrupt
/// repository from a refused snapshot.
pub(crate) fn export(
    repo: &Repository,
    commit: Oid,
    trees_dir: &Path,
    url: &str,
    on_git_error: &dyn Fn(git2::Error) -> SourceError,
) -> Result<PathBuf, SourceError> {
    let sha = commit.to_string();
    let target = snapshot_path(trees_dir, &sha);
    if target.is_dir() {
        return Ok(target);
    }
    let tree = repo.find_commit(commit).and_then(|c| c.tree()).map_err(on_git_error)?;
    let nodes = collect(&tree).map_err(|e| match e {
        Collect::Git(e) => on_git_error(e),
        Collect::BadName(path) => SourceError::Git {
            url: url.to_string(),
            message: format!("commit {sha} has an entry with an unsafe name: {path:?}"),
        },
    })?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = trees_dir.join(format!(
        ".tmp-{sha}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tree(repo, &nodes, &tmp, url, &sha, on_git_error).and_then(|()| {
        match fs::rename(&tmp, &target) {
            Ok(()) => Ok(()),
            // Another process exported the same commit first: same content, keep theirs.
            Err(_) if target.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(SourceError::io(url, "cannot move snapshot into place at", &target, e)),
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

enum Collect {
    Git(git2::Error),
    BadName(String),
}

/// Every entry of the tree by its `/`-separated path.
fn collect(tree: &git2::Tree<'_>) -> Result<BTreeMap<String, Node>, Collect> {
    let mut nodes = BTreeMap::new();
    let mut bad: Option<String> = None;
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let path = format!("{parent}{name}");
        // Git itself refuses these, but a crafted tree could carry them.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\0'])
            || name.eq_ignore_ascii_case(".git")
        {
            bad = Some(path);
            return TreeWalkResult::Abort;
        }
        let node = match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => Node::Dir,
            (Some(ObjectType::Commit), _) => Node::Gitlink,
            (Some(ObjectType::Blob), 0o120000) => Node::Link(entry.id()),
            (Some(ObjectType::Blob), mode) => Node::File { blob: entry.id(), executable: mode & 0o111 != 0 },
            _ => {
                bad = Some(path.clone());
                return TreeWalkResult::Abort;
            }
        };
        nodes.insert(path, node);
        TreeWalkResult::Ok
    })
    .or_else(|e| if bad.is_some() { Ok(()) } else { Err(e) })
    .map_err(Collect::Git)?;
    if let Some(path) = bad {
        return Err(Collect::BadName(path));
    }
    Ok(nodes)
}

/// Link targets are read lazily (the walk only has ids); resolve them all up front.
fn link_targets(
    repo: &Repository,
    nodes: &BTreeMap<String, Node>,
) -> Result<HashMap<String, String>, git2::Error> {
    let mut targets = HashMap::new();
    for (path, node) in nodes {
        if let Node::Link(id) = node {
            let blob = repo.find_blob(*id)?;
            targets.insert(path.clone(), String::from_utf8_lossy(blob.content()).into_owned());
        }
    }
    Ok(targets)
}

/// Whether `target`, written in the link at `link_path`, stays inside the tree, following
/// other links of the tree on the way.
pub(crate) fn link_stays_inside(link_path: &str, target: &str, links: &HashMap<String, String>) -> bool {
    let mut stack: Vec<String> = link_path.split('/').map(str::to_string).collect();
    stack.pop();
    resolve(&mut stack, target, links, 0)
}

fn resolve(stack: &mut Vec<String>, target: &str, links: &HashMap<String, String>, depth: usize) -> bool {
    if depth > MAX_LINK_DEPTH || target.starts_with('/') || target.is_empty() {
        return false;
    }
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            name => {
                stack.push(name.to_string());
                let here = stack.join("/");
                if let Some(next) = links.get(&here) {
                    stack.pop();
                    if !resolve(stack, next, links, depth + 1) {
                        return false;
                    }
                }
            }
        }
    }
    true
}

fn write_tree(
    repo: &Repository,
    nodes: &BTreeMap<String, Node>,
    root: &Path,
    url: &str,
    sha: &str,
    on_git_error: &dyn Fn(git2::Error) -> SourceError,
) -> Result<(), SourceError> {
    // Every link is checked before anything is written.
    let links = link_targets(repo, nodes).map_err(on_git_error)?;
    for (path, target) in &links {
        if !link_stays_inside(path, target, &links) {
            return Err(SourceError::UnsafeSymlink {
                url: url.to_string(),
                commit: sha.to_string(),
                path: path.clone(),
                target: target.clone(),
            });
        }
    }

    let io = |action: &'static str, path: &Path, e: std::io::Error| SourceError::io(url, action, path, e);
    fs::create_dir(root).map_err(|e| io("cannot create snapshot directory", root, e))?;
    // BTreeMap order puts every directory before its children.
    for (path, node) in nodes {
        let full = root.join(path);
        match node {
            Node::Dir | Node::Gitlink => {
                fs::create_dir(&full).map_err(|e| io("cannot create directory", &full, e))?
            }
            Node::File { blob, executable } => {
                let blob = repo.find_blob(*blob).map_err(on_git_error)?;
                let mode = if *executable { 0o555 } else { 0o444 };
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&full)
                    .map_err(|e| io("cannot create file", &full, e))?;
                file.write_all(blob.content()).map_err(|e| io("cannot write file", &full, e))?;
            }
            Node::Link(_) => {
                let target = &links[path];
                std::os::unix::fs::symlink(target, &full)
                    .map_err(|e| io("cannot create symlink", &full, e))?;
            }
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| io("cannot set permissions on", root, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn symlinks_inside_the_tree_are_allowed() {
        let l =
            links(&[("a/link", "../b/file"), ("top", "a"), ("a/self", "."), ("deep/x/y", "../../a/link")]);
        assert!(link_stays_inside("a/link", "../b/file", &l));
        assert!(link_stays_inside("top", "a", &l));
        assert!(link_stays_inside("a/self", ".", &l));
        assert!(link_stays_inside("deep/x/y", "../../a/link", &l));
        assert!(link_stays_inside("dangling", "nowhere/file", &l));
    }

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        let l = links(&[
            ("up", ".."),
            ("a/b", "../../etc"),
            ("hop", "a/../.."),
            ("via", "up/x"),
            ("sub/l", "../via"),
        ]);
        assert!(!link_stays_inside("abs", "/etc/passwd", &l));
        assert!(!link_stays_inside("up", "..", &l));
        assert!(!link_stays_inside("a/b", "../../etc", &l));
        assert!(!link_stays_inside("hop", "a/../..", &l));
        // Each hop stays inside lexically, but following `up` leaves the tree.
        assert!(!link_stays_inside("via", "up/x", &l));
        assert!(!link_stays_inside("sub/l", "../via", &l));
        assert!(!link_stays_inside("empty", "", &l));
    }

    #[test]
    fn symlink_loops_are_refused() {
        let l = links(&[("a", "b"), ("b", "a")]);
        assert!(!link_stays_inside("a", "b", &l));
    }
}
