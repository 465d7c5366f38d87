//! Retries with backoff: ONE policy for every backend (restic's
//! `internal/backend/retry`, with its `backend-error-redesign` behaviour,
//! on by default in restic 0.18).
//!
//! Backends make one attempt per call and say through
//! [`BackendError::kind`] whether another may help. [`Retrying`] tries
//! transient errors again: waits start at 1 s and double up to 60 s, each
//! randomized by ±50 %, until 15 minutes have passed since the first attempt
//! (at least one retry always happens). Permanent answers (not found, short
//! read, exists, no space, refused) are returned at once; a backend with
//! [`Backend::has_flaky_errors`] gets 5 attempts for those. `stat` of a
//! missing file is never retried. A `read` that used up its retries on a
//! transient error opens a circuit breaker: reads of that file fail at once
//! for the next hour. The final error is the last attempt's (it names the
//! file and the reason).
//!
//! ```
//! use restix_backend::local::LocalBackend;
//! use restix_backend::retry::{RetryPolicy, Retrying};
//! # let dir = std::env::temp_dir().join(format!("restix-retry-doc-{}", std::process::id()));
//! let backend = Retrying::new(LocalBackend::new(&dir), RetryPolicy::default());
//! # let _ = backend;
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Backend, BackendError, BackendResult, ErrorKind, FileInfo, FileType};

/// How patiently to retry. [`RetryPolicy::default`] is restic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the second attempt; doubles after each retry.
    pub initial_backoff: Duration,
    /// Upper bound of one wait (before randomization).
    pub max_backoff: Duration,
    /// Give up once the next wait would end this long after the first
    /// attempt began.
    pub max_elapsed: Duration,
    /// Attempts at most, the first included (`u32::MAX`: only `max_elapsed`
    /// bounds them, as in restic).
    pub max_attempts: u32,
    /// Randomize each wait by ±50 % (restic's backoff does), so clients that
    /// failed together do not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// restic 0.18: 1 s doubling to 60 s, ±50 %, for 15 minutes.
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(15 * 60),
            max_attempts: u32::MAX,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// For tests (restic's `fastRetries`): waits of 1 ms doubling to 50 ms,
    /// at most 10 attempts within 5 seconds, no randomization.
    pub fn fast() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(5),
            max_attempts: 10,
            jitter: false,
        }
    }

    /// The wait after failed attempt number `attempt` (1 = the first
    /// attempt), before randomization: `initial_backoff` doubled
    /// `attempt - 1` times, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// [`RetryPolicy::backoff`] randomized into [50 %, 150 %] when `jitter`.
    fn randomized_backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff(attempt);
        if !self.jitter {
            return base;
        }
        let mut byte = [0u8; 2];
        // Without randomness the wait is simply not randomized.
        let r = match getrandom::fill(&mut byte) {
            Ok(()) => f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX),
            Err(_) => 0.5,
        };
        base.mul_f64(0.5 + r)
    }
}

/// What the retry wrapper reports (restic prints these as warnings).
#[derive(Debug)]
pub enum RetryEvent<'a> {
    /// `operation` failed with `error`; the next attempt follows after `wait`.
    Retrying {
        operation: &'a str,
        error: &'a BackendError,
        wait: Duration,
    },
    /// `operation` failed with `error` after it was retried; no more attempts.
    GaveUp {
        operation: &'a str,
        error: &'a BackendError,
    },
    /// `operation` succeeded after `retries` retries.
    Recovered { operation: &'a str, retries: u32 },
}

/// Receives [`RetryEvent`]s (the CLI prints them to stderr like restic).
pub type RetryReport = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// How long a read that used up its retries keeps failing at once (restic's
/// `failedLoadExpiry`).
pub const FAILED_READ_EXPIRY: Duration = Duration::from_secs(3600);

/// Attempts of permanent errors on a backend with flaky errors (restic: 5).
const FLAKY_PERMANENT_ATTEMPTS: u32 = 5;

/// restic's name of a file in messages: `<data/0123456789>` (the name cut
/// to 10 characters; `<config/>` for the config file).
pub fn handle_text(file_type: FileType, name: &str) -> String {
    let name = if file_type == FileType::Config {
        ""
    } else {
        name.get(..10).unwrap_or(name)
    };
    format!("<{file_type}/{name}>")
}

/// A backend whose operations are retried by a [`RetryPolicy`].
pub struct Retrying<B: Backend> {
    inner: B,
    policy: RetryPolicy,
    report: Option<RetryReport>,
    /// Files whose read used up its retries, and when.
    failed_reads: Mutex<HashMap<(FileType, String), Instant>>,
}

impl<B: Backend> Retrying<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, policy: RetryPolicy) -> Retrying<B> {
        Retrying {
            inner,
            policy,
            report: None,
            failed_reads: Mutex::new(HashMap::new()),
        }
    }

    /// Report retries, give-ups and recoveries to `report`.
    pub fn with_report(mut self, report: RetryReport) -> Retrying<B> {
        self.report = Some(report);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn emit(&self, event: RetryEvent<'_>) {
        if let Some(report) = &self.report {
            report(&event);
        }
    }

    /// Run `op` until it succeeds, fails for good or the policy gives up.
    fn run<T>(
        &self,
        operation: impl Fn() -> String,
        op: impl FnMut(&B) -> BackendResult<T>,
    ) -> BackendResult<T> {
        self.run_with(operation, false, op)
    }

    /// [`Retrying::run`]; `not_found_is_final`: a missing file ends the
    /// attempts even on a backend with flaky errors (`stat` asks whether a
    /// file exists).
    fn run_with<T>(
        &self,
        operation: impl Fn() -> String,
        not_found_is_final: bool,
        mut op: impl FnMut(&B) -> BackendResult<T>,
    ) -> BackendResult<T> {
        let started = Instant::now();
        let mut attempt: u32 = 1;
        let mut permanent_left = if self.inner.has_flaky_errors() {
            FLAKY_PERMANENT_ATTEMPTS
        } else {
            1
        };
        loop {
            let error = match op(&self.inner) {
                Ok(value) => {
                    if attempt > 1 {
                        self.emit(RetryEvent::Recovered {
                            operation: &operation(),
                            retries: attempt - 1,
                        });
                    }
                    return Ok(value);
                }
                Err(e) => e,
            };
            if !error.is_transient() {
                permanent_left = permanent_left.saturating_sub(1);
                let final_not_found = not_found_is_final && error.kind() == ErrorKind::NotFound;
                if permanent_left == 0 || final_not_found {
                    if attempt > 1 {
                        self.emit(RetryEvent::GaveUp {
                            operation: &operation(),
                            error: &error,
                        });
                    }
                    return Err(error);
                }
            }
            let wait = self.policy.randomized_backoff(attempt);
            // At least one retry, as restic's `retryAtLeastOnce`.
            let out_of_time =
                attempt > 1 && started.elapsed().saturating_add(wait) > self.policy.max_elapsed;
            if out_of_time || attempt >= self.policy.max_attempts.max(1) {
                self.emit(RetryEvent::GaveUp {
                    operation: &operation(),
                    error: &error,
                });
                return Err(error);
            }
            self.emit(RetryEvent::Retrying {
                operation: &operation(),
                error: &error,
                wait,
            });
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// A read of a file whose earlier read used up its retries within
    /// [`FAILED_READ_EXPIRY`] fails at once.
    fn read_guarded<T>(
        &self,
        file_type: FileType,
        name: &str,
        operation: impl Fn() -> String,
        op: impl FnMut(&B) -> BackendResult<T>,
    ) -> BackendResult<T> {
        let key = (file_type, name.to_string());
        {
            let mut failed = lock(&self.failed_reads);
            match failed.get(&key) {
                Some(at) if at.elapsed() < FAILED_READ_EXPIRY => {
                    return Err(BackendError::Other(format!(
                        "circuit breaker open for file {}",
                        handle_text(file_type, name)
                    )));
                }
                Some(_) => {
                    failed.remove(&key);
                }
                None => {}
            }
        }
        let result = self.run(operation, op);
        if let Err(e) = &result {
            if e.is_transient() {
                lock(&self.failed_reads).insert(key, Instant::now());
            }
        }
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<B: Backend> Backend for Retrying<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        self.run(|| "Create()".to_string(), |b| b.create())
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        self.run(|| format!("List({file_type})"), |b| b.list(file_type))
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        self.read_guarded(
            file_type,
            name,
            || format!("Load({}, 0, 0)", handle_text(file_type, name)),
            |b| b.read(file_type, name),
        )
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.read_guarded(
            file_type,
            name,
            || format!("Load({}, {length}, {offset})", handle_text(file_type, name)),
            |b| b.read_range(file_type, name, offset, length),
        )
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.run(
            || format!("Save({})", handle_text(file_type, name)),
            |b| b.write(file_type, name, data),
        )
    }

    /// One attempt of the whole ordered write; after a failure that may
    /// go away, the files are written one after another, each retried on
    /// its own (a whole-call retry of many files could fail every time on
    /// a link that drops one request in a few). Files the first attempt
    /// stored are stored again: the same content under the same name,
    /// which changes nothing, and the order still holds.
    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        let error = match self.inner.write_in_order(files) {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_transient() && !self.inner.has_flaky_errors() => return Err(e),
            Err(e) => e,
        };
        let operation = {
            let names: Vec<String> = files
                .iter()
                .map(|(file_type, name, _)| handle_text(*file_type, name))
                .collect();
            format!("Save({})", names.join(", "))
        };
        let wait = self.policy.randomized_backoff(1);
        self.emit(RetryEvent::Retrying {
            operation: &operation,
            error: &error,
            wait,
        });
        std::thread::sleep(wait);
        let one_by_one = files
            .iter()
            .try_for_each(|(file_type, name, data)| self.write(*file_type, name, data));
        match &one_by_one {
            Ok(()) => self.emit(RetryEvent::Recovered {
                operation: &operation,
                retries: 1,
            }),
            Err(error) => self.emit(RetryEvent::GaveUp {
                operation: &operation,
                error,
            }),
        }
        one_by_one
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        self.run(
            || format!("Remove({})", handle_text(file_type, name)),
            |b| b.remove(file_type, name),
        )
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        self.run_with(
            || format!("Stat({})", handle_text(file_type, name)),
            true,
            |b| b.stat(file_type, name),
        )
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn list_after_write_consistent(&self) -> bool {
        self.inner.list_after_write_consistent()
    }
    fn has_flaky_errors(&self) -> bool {
        self.inner.has_flaky_errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails the first `failures` calls of every operation with `error`.
    struct Flaky {
        failures: u32,
        error: fn(&str) -> BackendError,
        flaky: bool,
        calls: AtomicU32,
    }

    impl Flaky {
        fn new(failures: u32, error: fn(&str) -> BackendError) -> Flaky {
            Flaky {
                failures,
                error,
                flaky: false,
                calls: AtomicU32::new(0),
            }
        }

        fn call(&self, name: &str) -> BackendResult<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err((self.error)(name))
            } else {
                Ok(())
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn create(&self) -> BackendResult<()> {
            self.call("")
        }
        fn list(&self, _: FileType) -> BackendResult<Vec<FileInfo>> {
            self.call("").map(|()| Vec::new())
        }
        fn read(&self, _: FileType, name: &str) -> BackendResult<Vec<u8>> {
            self.call(name).map(|()| b"data".to_vec())
        }
        fn read_range(&self, _: FileType, name: &str, _: u64, _: u64) -> BackendResult<Vec<u8>> {
            self.call(name).map(|()| b"d".to_vec())
        }
        fn write(&self, _: FileType, name: &str, _: &[u8]) -> BackendResult<()> {
            self.call(name)
        }
        fn remove(&self, _: FileType, name: &str) -> BackendResult<()> {
            self.call(name)
        }
        fn stat(&self, _: FileType, name: &str) -> BackendResult<FileInfo> {
            self.call(name).map(|()| FileInfo {
                name: name.into(),
                size: 0,
            })
        }
        fn has_flaky_errors(&self) -> bool {
            self.flaky
        }
    }

    fn reset(name: &str) -> BackendError {
        BackendError::Io {
            op: "write",
            path: name.into(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
        }
    }

    fn missing(name: &str) -> BackendError {
        BackendError::NotFound { path: name.into() }
    }

    fn denied(name: &str) -> BackendError {
        BackendError::Io {
            op: "open",
            path: name.into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        }
    }

    /// Records every event as text.
    fn recorder() -> (RetryReport, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let report: RetryReport = Arc::new(move |event: &RetryEvent<'_>| {
            let text = match event {
                RetryEvent::Retrying { operation, .. } => format!("retry {operation}"),
                RetryEvent::GaveUp { operation, .. } => format!("gave up {operation}"),
                RetryEvent::Recovered { operation, retries } => {
                    format!("recovered {operation} after {retries}")
                }
            };
            lock(&sink).push(text);
        });
        (report, seen)
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let (report, seen) = recorder();
        let r = Retrying::new(Flaky::new(2, reset), RetryPolicy::fast()).with_report(report);
        let name = "ab".repeat(32);
        r.write(FileType::Pack, &name, b"d").unwrap();
        assert_eq!(r.inner().calls(), 3);
        assert_eq!(
            *lock(&seen),
            [
                "retry Save(<data/ababababab>)",
                "retry Save(<data/ababababab>)",
                "recovered Save(<data/ababababab>) after 2",
            ]
        );
    }

    #[test]
    fn ordered_writes_are_retried_as_a_whole_and_refusals_are_not() {
        let (report, seen) = recorder();
        let r = Retrying::new(Flaky::new(1, reset), RetryPolicy::fast()).with_report(report);
        let (index, snapshot) = ("ab".repeat(32), "cd".repeat(32));
        let files: [(FileType, &str, &[u8]); 2] = [
            (FileType::Index, &index, b"i"),
            (FileType::Snapshot, &snapshot, b"s"),
        ];
        r.write_in_order(&files).unwrap();
        // The failed first write, then one after another.
        assert_eq!(r.inner().calls(), 3);
        assert_eq!(
            *lock(&seen),
            [
                "retry Save(<index/ababababab>, <snapshot/cdcdcdcdcd>)",
                "recovered Save(<index/ababababab>, <snapshot/cdcdcdcdcd>) after 1",
            ]
        );
        let r = Retrying::new(Flaky::new(1, denied), RetryPolicy::fast());
        assert!(r.write_in_order(&files).is_err());
        assert_eq!(r.inner().calls(), 1);
    }

    #[test]
    fn gives_up_with_the_last_error_after_max_attempts() {
        let r = Retrying::new(Flaky::new(100, reset), RetryPolicy::fast());
        let e = r.write(FileType::Lock, "x", b"d").unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(e.to_string().contains('x'), "{e}");
        assert!(e.is_transient());
        assert_eq!(r.inner().calls(), RetryPolicy::fast().max_attempts);
    }

    #[test]
    fn gives_up_when_time_runs_out_after_one_retry_at_least() {
        let policy = RetryPolicy {
            max_elapsed: Duration::ZERO,
            ..RetryPolicy::fast()
        };
        let r = Retrying::new(Flaky::new(100, reset), policy);
        assert!(r.list(FileType::Index).is_err());
        assert_eq!(r.inner().calls(), 2);
    }

    #[test]
    fn permanent_errors_are_returned_at_once() {
        for error in [missing as fn(&str) -> BackendError, denied] {
            let r = Retrying::new(Flaky::new(5, error), RetryPolicy::fast());
            assert!(!r.read(FileType::Key, "k").unwrap_err().is_transient());
            assert_eq!(r.inner().calls(), 1);
        }
    }

    #[test]
    fn flaky_backends_get_permanent_errors_retried_but_not_stat_not_found() {
        let mut flaky = Flaky::new(3, denied);
        flaky.flaky = true;
        let r = Retrying::new(flaky, RetryPolicy::fast());
        r.remove(FileType::Lock, "l").unwrap();
        assert_eq!(r.inner().calls(), 4);

        let mut flaky = Flaky::new(3, missing);
        flaky.flaky = true;
        let r = Retrying::new(flaky, RetryPolicy::fast());
        assert!(r
            .stat(FileType::Config, "config")
            .unwrap_err()
            .is_not_found());
        assert_eq!(r.inner().calls(), 1);
    }

    #[test]
    fn a_read_that_used_up_its_retries_opens_the_circuit_breaker() {
        let r = Retrying::new(Flaky::new(10, reset), RetryPolicy::fast());
        let name = "cd".repeat(32);
        assert!(r.read(FileType::Pack, &name).unwrap_err().is_transient());
        assert_eq!(r.inner().calls(), 10);
        // The backend works again, but this file is not tried for an hour.
        let e = r.read_range(FileType::Pack, &name, 0, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "circuit breaker open for file <data/cdcdcdcdcd>"
        );
        assert_eq!(r.inner().calls(), 10);
        // Other files are read.
        assert_eq!(r.read(FileType::Pack, &"ef".repeat(32)).unwrap(), b"data");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(700));
        assert_eq!(p.backoff(40), Duration::from_millis(700));
        for attempt in 1..6 {
            let w = p.randomized_backoff(attempt);
            let base = p.backoff(attempt);
            assert!(w >= base / 2 && w <= base.mul_f64(1.5), "{w:?} vs {base:?}");
        }
        let restic = RetryPolicy::default();
        assert_eq!(restic.backoff(1), Duration::from_secs(1));
        assert_eq!(restic.backoff(7), Duration::from_secs(60));
        assert_eq!(restic.max_elapsed, Duration::from_secs(900));
    }

    #[test]
    fn handles_read_like_restics() {
        assert_eq!(handle_text(FileType::Config, "config"), "<config/>");
        assert_eq!(
            handle_text(FileType::Lock, "0123456789abcdef"),
            "<lock/0123456789>"
        );
        assert_eq!(handle_text(FileType::Key, "short"), "<key/short>");
    }
}
