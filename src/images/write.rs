//! Edit -> commit: the files under the target path at a branch tip, the marked values set to
//! the latest image, one commit authored by ferry. Delivered (pushed, or proposed as a pull
//! request) by [`crate::gitwrite::deliver`].

use super::edit::{self, LineEdit};
use crate::gitwrite::{Author, Change, CommitMaker, Made, Workspace};
use crate::source::SourceError;

/// Files read at most under the target path.
pub const MAX_FILES: usize = 5_000;
/// Files larger than this are skipped (not manifests a person edits).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Makes the image update commit on a tip.
pub struct ImageCommit {
    pub namespace: String,
    pub name: String,
    pub latest: edit::Latest,
    /// Directory of the repository, `""` for all of it.
    pub dir: String,
    pub author: Author,
}

impl ImageCommit {
    /// The files to change on `tip`, and the message describing them.
    pub async fn changes(
        &self,
        ws: &Workspace,
        tip: &str,
    ) -> Result<Option<(Vec<Change>, String)>, SourceError> {
        let files = ws.read_files(tip, &self.dir, MAX_FILES, MAX_FILE_BYTES).await?;
        let (changes, edits) = self.edit_files(files);
        if changes.is_empty() {
            return Ok(None);
        }
        Ok(Some((changes, self.message(&edits))))
    }

    fn edit_files(&self, files: Vec<(String, Vec<u8>)>) -> (Vec<Change>, Vec<LineEdit>) {
        let mut changes = Vec::new();
        let mut edits = Vec::new();
        for (path, bytes) in files.into_iter().filter(|(p, _)| edit::is_yaml(p)) {
            if let Some((contents, mut made)) =
                edit::edit_text(&bytes, &self.namespace, &self.name, &self.latest)
            {
                edits.append(&mut made);
                changes.push(Change { path, contents: Some(contents) });
            }
        }
        (changes, edits)
    }

    /// `ferry: update image(s)`, one line per image changed, and the policy.
    pub fn message(&self, edits: &[LineEdit]) -> String {
        let lines = edit::describe_changes(&self.latest, edits);
        let subject = if lines.len() == 1 { "ferry: update image" } else { "ferry: update images" };
        format!("{subject}\n\n{}\n\nImagePolicy: {}/{}\n", lines.join("\n"), self.namespace, self.name)
    }
}

impl CommitMaker for ImageCommit {
    async fn make(&self, ws: &Workspace, on: &str) -> Result<Made, SourceError> {
        match self.changes(ws, on).await? {
            None => Ok(Made::Nothing),
            Some((changes, message)) => {
                Ok(Made::Commit(ws.commit(on, changes, &message, &self.author).await?))
            }
        }
    }

    /// An image update is remade on any tip; it never conflicts, so there is nothing to propose
    /// from.
    fn conflict_base(&self) -> Option<String> {
        None
    }
}
