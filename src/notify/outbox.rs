//! The undelivered messages, one queue per Notifier in order, and the commit status last sent
//! per context, persisted to one JSON file (written to a temporary file and renamed, so a crash
//! leaves the old file or the new one, never half of one) and read back at start.
//!
//! A message leaves its queue only once delivered (or given up on), so a message whose
//! delivery was in flight when ferry stopped is sent again at start: at most once more.
//! Bounded: [`MAX_MESSAGES`] messages (the oldest of the longest queue is dropped) and
//! [`MAX_CONTEXTS`] commit status contexts (the oldest forgotten).

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Notice, NotifierKey, commit::Verdict};
use crate::api::NotifierProvider;

/// Undelivered messages kept, across every Notifier.
pub const MAX_MESSAGES: usize = 10_000;
/// Commit status contexts whose last state is remembered.
pub const MAX_CONTEXTS: usize = 10_000;
/// The longest message text kept (a sync failure can be long).
pub const MAX_TEXT: usize = 2_000;

/// One message to deliver. It holds neither address nor token: those are read from the
/// Notifier and its Secret when it is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub provider: NotifierProvider,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Body {
    /// An event, standing for `count` identical ones.
    Event { notice: Notice, count: u32 },
    /// A commit status of the repository at `repo_url`.
    Commit { repo_url: String, context: String, verdict: Verdict },
}

/// The commit status last queued for one context of one Notifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentState {
    pub notifier: NotifierKey,
    pub context: String,
    pub sha: String,
    pub state: super::commit::State,
}

#[derive(Default, Debug, Serialize, Deserialize, PartialEq)]
struct Stored {
    #[serde(default)]
    queues: Vec<(NotifierKey, Vec<Message>)>,
    #[serde(default)]
    commits: Vec<SentState>,
}

/// The queues, in memory; [`Outbox::save`] writes them.
#[derive(Default, Debug)]
pub struct Outbox {
    pub queues: BTreeMap<NotifierKey, VecDeque<Message>>,
    /// Oldest first.
    commits: VecDeque<SentState>,
    /// Notifiers whose queue a delivery task works on (not persisted).
    pub working: HashSet<NotifierKey>,
}

impl Outbox {
    /// Reads `path`; a missing or unreadable file is an empty outbox (logged by the caller).
    pub fn load(path: &Path) -> Result<Outbox, OutboxError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outbox::default()),
            Err(source) => return Err(OutboxError::Read { path: path.to_path_buf(), source }),
        };
        let stored: Stored = serde_json::from_slice(&text)
            .map_err(|source| OutboxError::Parse { path: path.to_path_buf(), source })?;
        let mut outbox = Outbox { commits: stored.commits.into(), ..Default::default() };
        for (key, messages) in stored.queues {
            outbox.queues.entry(key).or_default().extend(messages);
        }
        Ok(outbox)
    }

    /// The JSON of what is kept.
    pub fn to_json(&self) -> Vec<u8> {
        let stored = Stored {
            queues: self
                .queues
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, q)| (k.clone(), q.iter().cloned().collect()))
                .collect(),
            commits: self.commits.iter().cloned().collect(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Appends `message` to `notifier`'s queue; returns how many messages were dropped to stay
    /// within bounds.
    pub fn push(&mut self, notifier: &NotifierKey, mut message: Message) -> usize {
        if let Body::Event { notice, .. } = &mut message.body {
            notice.message = truncate(&notice.message, MAX_TEXT);
        }
        self.queues.entry(notifier.clone()).or_default().push_back(message);
        let mut dropped = 0;
        while self.len() > MAX_MESSAGES {
            let longest = self.queues.iter_mut().max_by_key(|(_, q)| q.len()).map(|(_, q)| q);
            if longest.and_then(VecDeque::pop_front).is_none() {
                break;
            }
            dropped += 1;
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.values().all(VecDeque::is_empty)
    }

    /// Whether the commit status `verdict` is new for `context` of `notifier`; if so, it is
    /// remembered as the last one.
    pub fn commit_changed(&mut self, notifier: &NotifierKey, context: &str, verdict: &Verdict) -> bool {
        let at = self.commits.iter().position(|s| &s.notifier == notifier && s.context == context);
        if let Some(i) = at {
            let same = self.commits[i].sha == verdict.sha && self.commits[i].state == verdict.state;
            if same {
                return false;
            }
            self.commits.remove(i);
        }
        self.commits.push_back(SentState {
            notifier: notifier.clone(),
            context: context.to_string(),
            sha: verdict.sha.clone(),
            state: verdict.state,
        });
        while self.commits.len() > MAX_CONTEXTS {
            self.commits.pop_front();
        }
        true
    }
}

/// Writes `json` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, json: &[u8]) -> Result<(), OutboxError> {
    let err = |source| OutboxError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(json).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max - 3;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("reading the notification queue {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the notification queue {} is not valid JSON; starting with an empty one: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("writing the notification queue {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{NotificationEvent, Severity},
        notify::commit::State,
    };

    fn key(name: &str) -> NotifierKey {
        NotifierKey { namespace: "team".into(), name: name.into() }
    }

    fn event(message: &str) -> Message {
        Message {
            provider: NotifierProvider::GenericHmac,
            body: Body::Event {
                notice: Notice {
                    namespace: "team".into(),
                    name: "web".into(),
                    labels: [("a".to_string(), "b".to_string())].into(),
                    event: NotificationEvent::Synced,
                    severity: Severity::Info,
                    revision: None,
                    message: message.into(),
                    timestamp: "2026-01-01T00:00:00Z".into(),
                },
                count: 2,
            },
        }
    }

    fn verdict(sha: &str, state: State) -> Verdict {
        Verdict { sha: sha.into(), state, description: "d".into() }
    }

    #[test]
    fn the_queues_and_commit_states_survive_a_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications/outbox.json");
        let mut outbox = Outbox::default();
        outbox.push(&key("a"), event("1"));
        outbox.push(&key("a"), event("2"));
        outbox.push(&key("b"), event("3"));
        let commit = Message {
            provider: NotifierProvider::Gitea,
            body: Body::Commit {
                repo_url: "http://x/o/r.git".into(),
                context: "ferry/team/web".into(),
                verdict: verdict("s", State::Pending),
            },
        };
        outbox.push(&key("c"), commit.clone());
        assert!(outbox.commit_changed(&key("c"), "ferry/team/web", &verdict("s", State::Pending)));
        write_atomically(&path, &outbox.to_json()).unwrap();
        let mut back = Outbox::load(&path).unwrap();
        let messages: Vec<&Message> = back.queues[&key("a")].iter().collect();
        let mut first = event("1");
        // Labels serve selection only and are not kept.
        if let Body::Event { notice, .. } = &mut first.body {
            notice.labels.clear();
        }
        assert_eq!(messages[0], &first);
        assert_eq!(back.queues[&key("a")].len(), 2);
        assert_eq!(back.queues[&key("c")][0], commit);
        assert!(!back.commit_changed(&key("c"), "ferry/team/web", &verdict("s", State::Pending)));
        assert!(back.commit_changed(&key("c"), "ferry/team/web", &verdict("s", State::Success)));
        assert!(Outbox::load(&dir.path().join("missing.json")).unwrap().queues.is_empty());
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(Outbox::load(&path), Err(OutboxError::Parse { .. })));
    }

    #[test]
    fn the_outbox_is_bounded() {
        let mut outbox = Outbox::default();
        let mut dropped = 0;
        for i in 0..MAX_MESSAGES + 5 {
            dropped += outbox.push(&key("a"), event(&i.to_string()));
        }
        assert_eq!((outbox.len(), dropped), (MAX_MESSAGES, 5));
        outbox.push(&key("b"), event(&"x".repeat(10 * MAX_TEXT)));
        let Body::Event { notice, .. } = &outbox.queues[&key("b")][0].body else { panic!() };
        assert!(notice.message.len() <= MAX_TEXT);
        for i in 0..MAX_CONTEXTS + 1 {
            outbox.commit_changed(&key("a"), &i.to_string(), &verdict("s", State::Pending));
        }
        assert_eq!(outbox.commits.len(), MAX_CONTEXTS);
    }
}
