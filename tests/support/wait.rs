//! Waiting for a condition with a deadline: the only honest way to observe an eventually
//! consistent system. Never sleep and then assert.

use std::time::{Duration, Instant};

/// How long a test waits for anything ferry (or the cluster, or a Git fetch) does on its own:
/// generous, because the machine is small and shared. A deadline for a wait, never a timing
/// assertion.
pub const T: Duration = Duration::from_secs(120);

/// Polls `check` until it returns `Ok`, or panics after `timeout` with `what` and the last
/// reason `check` gave for not being done.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}
