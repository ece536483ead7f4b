//! Whether ferry is ready to do its work, and if not, why: what `/readyz` reports.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

/// Shared readiness flag with the reason it is not set. Clones share the same state.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ready: AtomicBool,
    /// Set by [`Readiness::shut_down`]: never ready again.
    closed: AtomicBool,
    reason: Mutex<String>,
    /// What this replica does while ready (leader, standby), for /readyz's body.
    role: Mutex<String>,
}

impl Readiness {
    /// Not ready, for `reason` (e.g. "waiting for the Application cache to sync").
    pub fn new(reason: &str) -> Readiness {
        Readiness {
            inner: Arc::new(Inner {
                ready: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                reason: Mutex::new(reason.into()),
                role: Mutex::new(String::new()),
            }),
        }
    }

    /// Ready, unless shut down.
    pub fn set_ready(&self) {
        let _reason = self.inner.reason.lock().unwrap_or_else(|e| e.into_inner());
        if !self.inner.closed.load(Ordering::SeqCst) {
            self.inner.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Not ready for good: ferry is shutting down.
    pub fn shut_down(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.set_not_ready("shutting down");
    }

    /// Not ready (any more), for `reason`.
    pub fn set_not_ready(&self, reason: &str) {
        let mut current = self.inner.reason.lock().unwrap_or_else(|e| e.into_inner());
        if !self.inner.closed.load(Ordering::SeqCst) || reason == "shutting down" {
            *current = reason.to_string();
        }
        self.inner.ready.store(false, Ordering::SeqCst);
    }

    /// What this replica does, shown by /readyz when ready. A standby is ready: it serves
    /// metrics and webhooks (which only stamp Applications, for the leader to act on), and a
    /// rolling update waits for new replicas to be ready, which a standby must be to let it finish.
    pub fn set_role(&self, role: &str) {
        *self.inner.role.lock().unwrap_or_else(|e| e.into_inner()) = role.to_string();
    }

    pub fn role(&self) -> String {
        self.inner.role.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(self.inner.reason.lock().unwrap_or_else(|e| e.into_inner()).clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_reason_until_ready_and_again_after() {
        let r = Readiness::new("waiting for the Application cache to sync");
        let shared = r.clone();
        assert_eq!(r.check(), Err("waiting for the Application cache to sync".to_string()));
        shared.set_ready();
        assert!(r.is_ready());
        assert_eq!(r.check(), Ok(()));
        shared.set_not_ready("lost the cache");
        assert_eq!(r.check(), Err("lost the cache".to_string()));
        shared.shut_down();
        shared.set_ready();
        shared.set_not_ready("waiting for something");
        assert_eq!(r.check(), Err("shutting down".to_string()));
    }
}
