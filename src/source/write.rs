//! Writing to Git: a private workspace where ferry makes a commit (a revert, an image update)
//! on top of a branch and pushes it.
//!
//! ```text
//! GitCache::workspace --fetch branch--> Workspace (bare repo in <cache>/work/<tmp>, removed on drop)
//!   .read_files / .commit (changes over a parent's tree) / .revert_path (3-way, path-limited)
//!   .push (fast-forward only unless forced) --> PushOutcome::Pushed | Rejected { why }
//! ```
//!
//! The workspace goes through the same transport as fetches: the host key check, the credential
//! rules (never to another host after a redirect), the redaction of every server message and the
//! deadline. A push that is not a fast-forward is refused by the server (or by libgit2 first),
//! so a branch that moved on since the workspace was opened is never overwritten: the caller
//! opens a new workspace and makes its commit again, or proposes it on a branch of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, ObjectType, Oid, Repository, Signature};

use super::cache::{GitCache, run_blocking};
use super::transport::{self, Access, Cancel};
use super::{Credentials, SourceError};

/// Who a commit is by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// The spec's author, else `ferry <ferry@ferry.dev>`.
    pub fn from_spec(spec: Option<&crate::api::CommitAuthor>) -> Author {
        let a = spec.cloned().unwrap_or_default();
        Author { name: a.name, email: a.email }
    }
}

/// One file of a commit: new contents, or `None` to delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Path in the repository, `/`-separated, relative.
    pub path: String,
    pub contents: Option<Vec<u8>>,
}

/// What the remote said to a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Pushed,
    /// The remote (or libgit2, knowing the remote's tip) refused the update.
    Rejected {
        message: String,
    },
}

/// A path-limited revert, made or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevertOutcome {
    /// The revert commit, on top of the branch tip.
    Committed { commit: String },
    /// The branch tip already has the good files under the path: nothing to revert.
    NothingToRevert,
    /// The branch moved on and its changes conflict with the revert (these paths).
    Conflict { paths: Vec<String> },
}

/// A branch fetched into a private bare repository. Removed from disk when dropped.
pub struct Workspace {
    dir: tempfile::TempDir,
    access: Access,
    branch: String,
    head: String,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("url", &self.access.url.redacted())
            .field("branch", &self.branch)
            .field("head", &self.head)
            .finish()
    }
}

/// The local ref a push is made from.
const PUSH_REF: &str = "refs/heads/ferry-push";

impl GitCache {
    /// Fetches `branch` of `url` (with `credentials`, which must be allowed to push for
    /// [`Workspace::push`] to succeed) into a new workspace.
    pub async fn workspace(
        &self,
        url: &str,
        branch: &str,
        credentials: Option<Credentials>,
    ) -> Result<Workspace, SourceError> {
        let (access, work) = self.write_access(url, credentials)?;
        let dir = tempfile::Builder::new()
            .prefix("ws-")
            .tempdir_in(&work)
            .map_err(|e| SourceError::io(access.url.redacted(), "cannot create", &work, e))?;
        let path = dir.path().to_path_buf();
        let fetch_access = fresh(&access);
        let refname = format!("refs/heads/{branch}");
        let head = blocking(&fetch_access, "fetch", move |a| fetch_branch(&path, a, &refname)).await?;
        Ok(Workspace { dir, access, branch: branch.to_string(), head })
    }
}

impl Workspace {
    /// The branch tip fetched.
    pub fn head(&self) -> &str {
        &self.head
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The URL, without credentials.
    pub fn url(&self) -> &str {
        self.access.url.redacted()
    }

    /// The regular files under `dir` (`""` for the whole tree) at `commit`: at most `max_files`,
    /// each at most `max_bytes` (larger files are skipped; they are not manifests a person edits).
    pub async fn read_files(
        &self,
        commit: &str,
        dir: &str,
        max_files: usize,
        max_bytes: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        let (path, commit, dir) = (self.path(), commit.to_string(), normalize(dir));
        let url = self.url().to_string();
        blocking(&fresh(&self.access), "read", move |_| {
            let repo = open(&path, &url)?;
            let tree = commit_of(&repo, &commit, &url)?.tree().map_err(|e| git(&url, e))?;
            let mut files = Vec::new();
            let walk = tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
                let full = format!("{root}{}", entry.name().unwrap_or_default());
                let wanted = dir.is_empty() || full.starts_with(&format!("{dir}/"));
                if entry.kind() != Some(ObjectType::Blob) || !wanted || files.len() >= max_files {
                    return git2::TreeWalkResult::Ok;
                }
                if entry.filemode() != i32::from(FileMode::Blob)
                    && entry.filemode() != i32::from(FileMode::BlobExecutable)
                {
                    return git2::TreeWalkResult::Ok; // symlinks and submodules are never edited
                }
                if let Ok(blob) = repo.find_blob(entry.id())
                    && (blob.size() as u64) <= max_bytes
                {
                    files.push((full, blob.content().to_vec()));
                }
                git2::TreeWalkResult::Ok
            });
            walk.map_err(|e| git(&url, e))?;
            Ok(files)
        })
        .await
    }

    /// A commit of `changes` over `parent`'s tree, with `parent` as its parent. Not pushed.
    pub async fn commit(
        &self,
        parent: &str,
        changes: Vec<Change>,
        message: &str,
        author: &Author,
    ) -> Result<String, SourceError> {
        let (path, parent, message, author) =
            (self.path(), parent.to_string(), message.to_string(), author.clone());
        let url = self.url().to_string();
        blocking(&fresh(&self.access), "commit", move |_| {
            let repo = open(&path, &url)?;
            let parent = commit_of(&repo, &parent, &url)?;
            let base = parent.tree().map_err(|e| git(&url, e))?;
            let mut update = TreeUpdateBuilder::new();
            for change in &changes {
                let file = normalize(&change.path);
                match &change.contents {
                    Some(bytes) => {
                        let blob = repo.blob(bytes).map_err(|e| git(&url, e))?;
                        let mode = base.get_path(Path::new(&file)).map(|e| e.filemode()).unwrap_or(0o100644);
                        let mode = if mode == 0o100755 { FileMode::BlobExecutable } else { FileMode::Blob };
                        update.upsert(&file, blob, mode);
                    }
                    None => {
                        update.remove(&file);
                    }
                }
            }
            let tree = update.create_updated(&repo, &base).map_err(|e| git(&url, e))?;
            make_commit(&repo, &parent, tree, &message, &author, &url)
        })
        .await
    }

    /// Reverts, on top of `on` (the branch tip, or the failed revision itself), what changed under `dir` from `good` to `failed`: a
    /// three-way merge of the tip with `failed`'s tree whose `dir` is `good`'s, based on
    /// `failed` (what `git revert` does, limited to the path and spanning every commit between
    /// the two). Changes outside `dir` are never touched.
    pub async fn revert_path(
        &self,
        on: &str,
        failed: &str,
        good: &str,
        dir: &str,
        message: &str,
        author: &Author,
    ) -> Result<RevertOutcome, SourceError> {
        let (path, head) = (self.path(), on.to_string());
        let (failed, good, dir) = (failed.to_string(), good.to_string(), normalize(dir));
        let (message, author, url) = (message.to_string(), author.clone(), self.url().to_string());
        blocking(&fresh(&self.access), "revert", move |_| {
            let repo = open(&path, &url)?;
            let head = commit_of(&repo, &head, &url)?;
            let failed_tree = commit_of(&repo, &failed, &url)?.tree().map_err(|e| git(&url, e))?;
            let good_tree = commit_of(&repo, &good, &url)?.tree().map_err(|e| git(&url, e))?;
            let theirs = with_dir_of(&repo, &failed_tree, &good_tree, &dir).map_err(|e| git(&url, e))?;
            let head_tree = head.tree().map_err(|e| git(&url, e))?;
            let merged = if head_tree.id() == failed_tree.id() {
                theirs
            } else {
                let theirs = repo.find_tree(theirs).map_err(|e| git(&url, e))?;
                let mut index =
                    repo.merge_trees(&failed_tree, &head_tree, &theirs, None).map_err(|e| git(&url, e))?;
                if index.has_conflicts() {
                    return Ok(RevertOutcome::Conflict { paths: conflict_paths(&index) });
                }
                index.write_tree_to(&repo).map_err(|e| git(&url, e))?
            };
            if merged == head_tree.id() {
                return Ok(RevertOutcome::NothingToRevert);
            }
            let commit = make_commit(&repo, &head, merged, &message, &author, &url)?;
            Ok(RevertOutcome::Committed { commit })
        })
        .await
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors (both fetched).
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, SourceError> {
        let (path, a, d, url) =
            (self.path(), ancestor.to_string(), descendant.to_string(), self.url().to_string());
        blocking(&fresh(&self.access), "read", move |_| {
            let repo = open(&path, &url)?;
            let (a, d) = (oid(&a, &url)?, oid(&d, &url)?);
            Ok(a == d || repo.graph_descendant_of(d, a).unwrap_or(false))
        })
        .await
    }

    /// Pushes `commit` to `branch`. Without `force` only a fast-forward is accepted.
    pub async fn push(&self, commit: &str, branch: &str, force: bool) -> Result<PushOutcome, SourceError> {
        let (path, commit, url) = (self.path(), commit.to_string(), self.url().to_string());
        let refspec = format!("{}{PUSH_REF}:refs/heads/{branch}", if force { "+" } else { "" });
        let answer = blocking(&fresh(&self.access), "push", move |a| {
            let repo = open(&path, &url)?;
            repo.reference(PUSH_REF, oid(&commit, &url)?, true, "ferry push").map_err(|e| git(&url, e))?;
            transport::push(&repo, a, &refspec)
        })
        .await?;
        Ok(match answer {
            None => PushOutcome::Pushed,
            Some(message) => PushOutcome::Rejected { message },
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A copy of `access` with its own deadline, for one operation.
fn fresh(access: &Access) -> Access {
    Access { cancel: Cancel::after(access.timeout), ..access.clone() }
}

async fn blocking<T: Send + 'static>(
    access: &Access,
    operation: &'static str,
    work: impl FnOnce(&Access) -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let owned = access.clone();
    let url = access.url.redacted().to_string();
    run_blocking(&url, operation, &access.cancel, access.timeout, move || work(&owned)).await
}

fn fetch_branch(path: &Path, access: &Access, refname: &str) -> Result<String, SourceError> {
    let url = access.url.redacted().to_string();
    let repo = Repository::init_bare(path).map_err(|e| git(&url, e))?;
    let local = "refs/ferry/tip";
    transport::fetch(&repo, path, access, &[format!("+{refname}:{local}")])?;
    let tip = repo.refname_to_id(local).map_err(|_| SourceError::RefNotFound {
        url: url.clone(),
        reference: refname.to_string(),
        message: "the remote has no such branch".to_string(),
    })?;
    Ok(tip.to_string())
}

/// `base` with the subtree at `dir` replaced by `source`'s (removed if `source` has none). An
/// empty `dir` is the whole tree.
fn with_dir_of(
    repo: &Repository,
    base: &git2::Tree,
    source: &git2::Tree,
    dir: &str,
) -> Result<Oid, git2::Error> {
    if dir.is_empty() {
        return Ok(source.id());
    }
    let mut update = TreeUpdateBuilder::new();
    match source.get_path(Path::new(dir)) {
        Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
            update.upsert(dir, entry.id(), FileMode::Tree);
        }
        _ => {
            update.remove(dir);
        }
    }
    update.create_updated(repo, base)
}

fn conflict_paths(index: &git2::Index) -> Vec<String> {
    let mut paths: Vec<String> = index
        .conflicts()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|c| c.our.or(c.their).or(c.ancestor))
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn make_commit(
    repo: &Repository,
    parent: &git2::Commit,
    tree: Oid,
    message: &str,
    author: &Author,
    url: &str,
) -> Result<String, SourceError> {
    let tree = repo.find_tree(tree).map_err(|e| git(url, e))?;
    let signature = Signature::now(&author.name, &author.email).map_err(|e| git(url, e))?;
    let oid =
        repo.commit(None, &signature, &signature, message, &tree, &[parent]).map_err(|e| git(url, e))?;
    Ok(oid.to_string())
}

fn open(path: &Path, url: &str) -> Result<Repository, SourceError> {
    Repository::open_bare(path).map_err(|e| git(url, e))
}

fn oid(sha: &str, url: &str) -> Result<Oid, SourceError> {
    Oid::from_str(sha).map_err(|_| SourceError::Git {
        url: url.to_string(),
        message: format!("{sha:?} is not a commit id"),
    })
}

fn commit_of<'r>(repo: &'r Repository, sha: &str, url: &str) -> Result<git2::Commit<'r>, SourceError> {
    repo.find_commit(oid(sha, url)?).map_err(|_| SourceError::RefNotFound {
        url: url.to_string(),
        reference: format!("commit {sha}"),
        message: "it is not on the branch (was the branch force-pushed?)".to_string(),
    })
}

fn git(url: &str, e: git2::Error) -> SourceError {
    SourceError::Git { url: url.to_string(), message: e.message().to_string() }
}

/// `./a/b/` -> `a/b`; `.` and `/` -> the whole tree.
fn normalize(dir: &str) -> String {
    dir.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

/// A workspace is never kept long: anything older under `<cache>/work` is a leftover of a
/// crash, removed at start.
pub(crate) fn remove_leftovers(work: &Path, older_than: Duration) {
    let Ok(listing) = std::fs::read_dir(work) else { return };
    for entry in listing.flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|age| age > older_than) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_are_normalized() {
        assert_eq!(normalize("./apps/web/"), "apps/web");
        assert_eq!(normalize("."), "");
        assert_eq!(normalize("/"), "");
        assert_eq!(normalize("a//b"), "a/b");
    }

    fn repo_with(files: &[(&str, &str)], parent: Option<Oid>, repo: &Repository) -> Oid {
        let base = match parent {
            Some(p) => repo.find_commit(p).unwrap().tree().unwrap(),
            None => repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap(),
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            update.upsert(*path, blob, FileMode::Blob);
        }
        let tree = repo.find_tree(update.create_updated(repo, &base).unwrap()).unwrap();
        let sig = Signature::now("t", "t@t").unwrap();
        let parents: Vec<git2::Commit> = parent.map(|p| repo.find_commit(p).unwrap()).into_iter().collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "m", &tree, &refs).unwrap()
    }

    #[test]
    fn a_dir_is_replaced_and_the_rest_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let good = repo_with(&[("app/a.yaml", "v1"), ("other/x", "1")], None, &repo);
        let failed =
            repo_with(&[("app/a.yaml", "v2"), ("app/new.yaml", "n"), ("other/x", "2")], Some(good), &repo);
        let (g, f) = (
            repo.find_commit(good).unwrap().tree().unwrap(),
            repo.find_commit(failed).unwrap().tree().unwrap(),
        );
        let tree = repo.find_tree(with_dir_of(&repo, &f, &g, "app").unwrap()).unwrap();
        let read = |p: &str| {
            tree.get_path(Path::new(p)).ok().map(|e| repo.find_blob(e.id()).unwrap().content().to_vec())
        };
        assert_eq!(read("app/a.yaml").as_deref(), Some(&b"v1"[..]));
        assert_eq!(read("app/new.yaml"), None, "a file added by the failed revision goes");
        assert_eq!(read("other/x").as_deref(), Some(&b"2"[..]), "outside the path nothing is reverted");
    }
}
