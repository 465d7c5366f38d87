//! Retries with backoff as a wrapper around any backend.
//!
//! Like restic's `backend/retry`, failed operations are tried again with
//! exponential backoff, a bounded number of times. Answers that retrying
//! cannot change are returned at once: [`BackendError::NotFound`],
//! [`BackendError::AlreadyExists`] and [`BackendError::ShortRead`] (the file
//! really is shorter). After the last attempt the error of that attempt is
//! returned (it names the file and the reason).
//!
//! Backends that reconnect and retry on their own (SFTP) need no wrapper.
//!
//! ```
//! use restix_engine::backend::local::LocalBackend;
//! use restix_engine::backend::retry::{RetryPolicy, Retrying};
//! # let dir = std::env::temp_dir().join(format!("restix-retry-doc-{}", std::process::id()));
//! let backend = Retrying::new(LocalBackend::new(&dir), RetryPolicy::default());
//! # let _ = backend;
//! ```

use std::time::Duration;

use super::{Backend, BackendError, BackendResult, FileInfo, FileType};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `attempt` (2 = the first retry):
    /// doubling from `initial_backoff`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// True for errors that another attempt cannot change.
pub fn is_permanent(err: &BackendError) -> bool {
    matches!(
        err,
        BackendError::NotFound { .. }
            | BackendError::AlreadyExists { .. }
            | BackendError::ShortRead { .. }
    )
}

/// A backend whose operations are retried with exponential backoff.
pub struct Retrying<B: Backend> {
    inner: B,
    policy: RetryPolicy,
}

impl<B: Backend> Retrying<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, policy: RetryPolicy) -> Retrying<B> {
        Retrying { inner, policy }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn run<T>(&self, mut op: impl FnMut(&B) -> BackendResult<T>) -> BackendResult<T> {
        let attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match op(&self.inner) {
                Ok(v) => return Ok(v),
                Err(e) if is_permanent(&e) || attempt >= attempts => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(self.policy.backoff(attempt));
                }
            }
        }
    }
}

impl<B: Backend> Backend for Retrying<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        self.run(|b| b.create())
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        self.run(|b| b.list(file_type))
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        self.run(|b| b.read(file_type, name))
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.run(|b| b.read_range(file_type, name, offset, length))
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.run(|b| b.write(file_type, name, data))
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        self.run(|b| b.remove(file_type, name))
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        self.run(|b| b.stat(file_type, name))
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn list_after_write_consistent(&self) -> bool {
        self.inner.list_after_write_consistent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A backend that fails the first `failures` writes with an I/O error.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn create(&self) -> BackendResult<()> {
            Ok(())
        }
        fn list(&self, _: FileType) -> BackendResult<Vec<FileInfo>> {
            Ok(Vec::new())
        }
        fn read(&self, _: FileType, name: &str) -> BackendResult<Vec<u8>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(BackendError::NotFound { path: name.into() })
        }
        fn read_range(&self, _: FileType, _: &str, _: u64, _: u64) -> BackendResult<Vec<u8>> {
            Ok(Vec::new())
        }
        fn write(&self, _: FileType, name: &str, _: &[u8]) -> BackendResult<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(BackendError::Io {
                    op: "write",
                    path: name.into(),
                    source: std::io::Error::other("connection reset"),
                })
            } else {
                Ok(())
            }
        }
        fn remove(&self, _: FileType, _: &str) -> BackendResult<()> {
            Ok(())
        }
        fn stat(&self, _: FileType, name: &str) -> BackendResult<FileInfo> {
            Ok(FileInfo {
                name: name.into(),
                size: 0,
            })
        }
    }

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[test]
    fn retries_until_success() {
        let r = Retrying::new(
            Flaky {
                failures: 2,
                calls: AtomicU32::new(0),
            },
            fast(5),
        );
        r.write(FileType::Lock, "x", b"d").unwrap();
        assert_eq!(r.inner().calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn gives_up_with_last_error() {
        let r = Retrying::new(
            Flaky {
                failures: 10,
                calls: AtomicU32::new(0),
            },
            fast(3),
        );
        let e = r.write(FileType::Lock, "x", b"d").unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(e.to_string().contains('x'), "{e}");
        assert_eq!(r.inner().calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn not_found_is_not_retried() {
        let r = Retrying::new(
            Flaky {
                failures: 0,
                calls: AtomicU32::new(0),
            },
            fast(5),
        );
        assert!(r.read(FileType::Key, "k").unwrap_err().is_not_found());
        assert_eq!(r.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(400));
        assert_eq!(p.backoff(5), Duration::from_millis(700));
        assert_eq!(p.backoff(40), Duration::from_millis(700));
    }
}
