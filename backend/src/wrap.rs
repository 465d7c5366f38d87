//! [`wrap()`]: the one place where every backend gets its wrappers
//! (restic's `innerOpen` in `cmd/restic/global.go`).

use std::sync::Arc;

use crate::limited::{Limited, RateLimits};
use crate::retry::{RetryPolicy, RetryReport, Retrying};
use crate::sema::ConnectionLimited;
use crate::Backend;

/// What [`wrap()`] puts around a backend.
#[derive(Clone, Default)]
pub struct WrapOptions {
    /// `--limit-upload` / `--limit-download` (unlimited by default).
    pub limits: RateLimits,
    /// The retry policy (restic's by default).
    pub retry: RetryPolicy,
    /// Where retries are reported (nowhere by default).
    pub report: Option<RetryReport>,
    /// One stderr line per call of the backend ([`crate::trace`]; the CLI
    /// sets it from `RESTIX_TRACE_BACKEND`).
    pub trace: bool,
}

impl std::fmt::Debug for WrapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapOptions")
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("report", &self.report.is_some())
            .field("trace", &self.trace)
            .finish()
    }
}

/// Compose the wrappers around `inner`, innermost first:
///
/// 0. [`crate::trace::Traced`] (only with `trace`): sees each attempt;
/// 1. [`Limited`] (only when a limit is set): pays for the bytes of each
///    transfer, so the limit holds for the data actually moved;
/// 2. [`ConnectionLimited`]: at most `connections()` operations at once
///    (lock files exempt); a transfer waiting for bandwidth holds its permit,
///    as restic's limiter sits inside its semaphore too;
/// 3. [`Retrying`]: outermost, so each attempt queues for a permit anew and
///    the waits between attempts hold none.
///
/// A test that injects faults (`fault::FaultyBackend`, `testing` feature)
/// passes the faulty backend as `inner`: it stands for the storage.
///
/// ```
/// use restix_backend::local::LocalBackend;
/// use restix_backend::limited::RateLimits;
/// use restix_backend::{wrap, Backend, WrapOptions};
/// # let dir = std::env::temp_dir().join(format!("restix-wrap-doc-{}", std::process::id()));
/// let options = WrapOptions {
///     limits: RateLimits::from_kib(1024, 0),
///     ..WrapOptions::default()
/// };
/// let backend = wrap(Box::new(LocalBackend::new(&dir)), &options);
/// assert_eq!(backend.connections(), 2);
/// ```
pub fn wrap(inner: Box<dyn Backend>, options: &WrapOptions) -> Arc<dyn Backend> {
    let inner: Box<dyn Backend> = if options.trace {
        Box::new(crate::trace::Traced::new(inner))
    } else {
        inner
    };
    let limited: Box<dyn Backend> = if options.limits.is_unlimited() {
        inner
    } else {
        Box::new(Limited::new(inner, options.limits.clone()))
    };
    let mut retrying = Retrying::new(ConnectionLimited::new(limited), options.retry);
    if let Some(report) = &options.report {
        retrying = retrying.with_report(Arc::clone(report));
    }
    Arc::new(retrying)
}
