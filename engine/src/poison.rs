//! Locking a mutex whose holder panicked: the one home of the helper the
//! repository, the archiver, prune and the pack cache share.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, taking over a poisoned lock: a poisoned lock only means
/// another thread panicked while holding it; the data behind it (sets,
/// lists, counters) stays consistent enough to finish or report errors.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
