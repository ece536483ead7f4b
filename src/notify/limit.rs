//! Rate limiting: identical notices (same Notifier, Application, event, revision and message)
//! within a Notifier's `rateLimit` window are sent once; when the window ends, one summary
//! carries how many were held back. Pure over the instants it is given; the table is capped
//! (the oldest window is closed early, its summary sent, when a new one needs room).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{Notice, NotifierKey};

/// Windows open at once, across every Notifier.
pub const CAPACITY: usize = 4096;

/// What makes two notices identical.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    notifier: NotifierKey,
    namespace: String,
    name: String,
    event: crate::api::NotificationEvent,
    revision: Option<String>,
    message: String,
}

impl Key {
    fn of(notifier: &NotifierKey, notice: &Notice) -> Key {
        Key {
            notifier: notifier.clone(),
            namespace: notice.namespace.clone(),
            name: notice.name.clone(),
            event: notice.event,
            revision: notice.revision.clone(),
            message: notice.message.clone(),
        }
    }
}

struct Window {
    ends: Instant,
    held: u32,
    notice: Notice,
}

/// A notice to send, with how many identical ones it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    pub notifier: NotifierKey,
    pub notice: Notice,
    pub count: u32,
}

#[derive(Default)]
pub struct RateLimiter {
    windows: HashMap<Key, Window>,
    capacity: usize,
}

/// What [`RateLimiter::admit`] decided.
#[derive(Debug, PartialEq)]
pub enum Admit {
    /// Send it now (count 1).
    Send,
    /// Identical to one sent within the window: held back, counted into the summary.
    Held,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter { windows: HashMap::new(), capacity: CAPACITY }
    }

    #[cfg(test)]
    fn with_capacity(capacity: usize) -> RateLimiter {
        RateLimiter { windows: HashMap::new(), capacity }
    }

    /// Whether `notice` for `notifier` goes now. A window needing room closes the oldest one
    /// early; its summary (if it held any back) is returned to be sent.
    pub fn admit(
        &mut self,
        notifier: &NotifierKey,
        notice: &Notice,
        window: Duration,
        now: Instant,
    ) -> (Admit, Option<Counted>) {
        if window.is_zero() {
            return (Admit::Send, None);
        }
        let key = Key::of(notifier, notice);
        if let Some(open) = self.windows.get_mut(&key).filter(|w| now < w.ends) {
            open.held = open.held.saturating_add(1);
            return (Admit::Held, None);
        }
        let mut evicted = None;
        if !self.windows.contains_key(&key) && self.windows.len() >= self.capacity {
            let oldest = self.windows.iter().min_by_key(|(_, w)| w.ends).map(|(k, _)| k.clone());
            evicted = oldest.and_then(|k| self.windows.remove_entry(&k)).and_then(|(k, w)| summary(k, w));
        }
        // A window that ended but was not yet collected: its summary goes first.
        let ended = self.windows.remove(&key).and_then(|w| summary(key.clone(), w));
        let opened = Window { ends: now + window, held: 0, notice: notice.clone() };
        self.windows.insert(key, opened);
        (Admit::Send, ended.or(evicted))
    }

    /// Closes the windows that ended by `now`: the summaries of those that held notices back.
    pub fn expired(&mut self, now: Instant) -> Vec<Counted> {
        let ended: Vec<Key> =
            self.windows.iter().filter(|(_, w)| w.ends <= now).map(|(k, _)| k.clone()).collect();
        ended
            .into_iter()
            .filter_map(|k| self.windows.remove_entry(&k))
            .filter_map(|(k, w)| summary(k, w))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

fn summary(key: Key, window: Window) -> Option<Counted> {
    (window.held > 0).then_some(Counted { notifier: key.notifier, notice: window.notice, count: window.held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NotificationEvent, Severity};

    fn notice(event: NotificationEvent, message: &str) -> Notice {
        Notice {
            namespace: "team".into(),
            name: "web".into(),
            labels: Default::default(),
            event,
            severity: Severity::Info,
            revision: Some("main@sha1:0000000000000000000000000000000000000001".into()),
            message: message.into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn key() -> NotifierKey {
        NotifierKey { namespace: "team".into(), name: "hooks".into() }
    }

    #[test]
    fn a_burst_of_twenty_gives_one_now_and_a_summary_of_nineteen_when_the_window_ends() {
        let mut limiter = RateLimiter::new();
        let start = Instant::now();
        let window = Duration::from_secs(300);
        let n = notice(NotificationEvent::DriftCorrected, "reverted changes");
        let admitted: Vec<Admit> =
            (0..20).map(|i| limiter.admit(&key(), &n, window, start + Duration::from_secs(i)).0).collect();
        assert_eq!(admitted.iter().filter(|a| **a == Admit::Send).count(), 1);
        assert_eq!(admitted[0], Admit::Send);
        assert!(limiter.expired(start + Duration::from_secs(299)).is_empty());
        let summaries = limiter.expired(start + window);
        assert_eq!(summaries, vec![Counted { notifier: key(), notice: n.clone(), count: 19 }]);
        assert_eq!(limiter.len(), 0);
        // The next one after the window is sent again at once.
        assert_eq!(limiter.admit(&key(), &n, window, start + window).0, Admit::Send);
    }

    #[test]
    fn distinct_events_messages_and_notifiers_are_not_merged() {
        let mut limiter = RateLimiter::new();
        let now = Instant::now();
        let window = Duration::from_secs(300);
        let a = notice(NotificationEvent::Synced, "applied");
        let b = notice(NotificationEvent::Failed, "applied");
        let c = notice(NotificationEvent::Synced, "applied again");
        let mut d = a.clone();
        d.revision = Some("main@sha1:0000000000000000000000000000000000000002".into());
        for n in [&a, &b, &c, &d] {
            assert_eq!(limiter.admit(&key(), n, window, now).0, Admit::Send);
        }
        let other = NotifierKey { namespace: "team".into(), name: "slack".into() };
        assert_eq!(limiter.admit(&other, &a, window, now).0, Admit::Send);
        assert_eq!(limiter.admit(&key(), &a, window, now).0, Admit::Held);
        // A window that held nothing back ends without a summary.
        let summaries = limiter.expired(now + window);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].count, 1);
    }

    #[test]
    fn a_zero_window_sends_everything_and_the_table_is_capped() {
        let mut limiter = RateLimiter::with_capacity(2);
        let now = Instant::now();
        let n = notice(NotificationEvent::Synced, "x");
        for _ in 0..3 {
            assert_eq!(limiter.admit(&key(), &n, Duration::ZERO, now).0, Admit::Send);
        }
        let w = Duration::from_secs(60);
        limiter.admit(&key(), &notice(NotificationEvent::Synced, "1"), w, now);
        limiter.admit(&key(), &notice(NotificationEvent::Synced, "1"), w, now);
        limiter.admit(&key(), &notice(NotificationEvent::Synced, "2"), w, now + Duration::from_secs(1));
        // A third window evicts the oldest, whose held-back notice is summarised at once.
        let (admit, evicted) =
            limiter.admit(&key(), &notice(NotificationEvent::Synced, "3"), w, now + Duration::from_secs(2));
        assert_eq!(admit, Admit::Send);
        assert_eq!(evicted.map(|c| (c.notice.message, c.count)), Some(("1".to_string(), 1)));
        assert_eq!(limiter.len(), 2);
    }
}
