//! A counting semaphore: the one home of the helper the archiver (files
//! read at once) and the index load (files decoded at once) share.

use std::sync::{Condvar, Mutex};

use crate::poison::lock;

/// At most `n` holders of a [`SemaphoreGuard`] at once.
pub(crate) struct Semaphore {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Semaphore {
    /// A semaphore with `n` permits (at least one).
    pub(crate) fn new(n: usize) -> Self {
        Semaphore {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    /// Waits for a permit; it is given back when the guard drops.
    pub(crate) fn acquire(&self) -> SemaphoreGuard<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SemaphoreGuard(self)
    }
}

/// A permit of a [`Semaphore`].
pub(crate) struct SemaphoreGuard<'a>(&'a Semaphore);

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_holders_than_permits() {
        let sema = Semaphore::new(2);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _permit = sema.acquire();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // Zero permits asked for: one.
        let zero = Semaphore::new(0);
        let _one = zero.acquire();
    }
}
