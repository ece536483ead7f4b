//! Mutexes whose critical sections only insert, look up or remove map entries: a panic
//! elsewhere while one was held leaves the data whole, so a poisoned lock is taken as it is
//! rather than spreading the panic to every later caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `mutex`, locked, poisoned or not.
pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
