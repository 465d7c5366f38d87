//! Bandwidth limits as a wrapper around any backend (`--limit-upload`, `--limit-download`).
//!
//! spec: cli §6.1: the unit is KiB/s (rate = value x 1024 bytes/s), 0 or
//! negative means unlimited; one token bucket per direction is shared by the
//! whole process (all connections); burst = one second's worth, the bucket
//! starts full. Only file payloads are shaped (`write` up, `read` and
//! `read_range` down); `list`, `stat`, `remove` are not.
//!
//! The frozen [`Backend`] trait hands over whole files, so shaping works in
//! slices of [`SLICE`] bytes: an upload waits for its tokens slice by slice
//! before it is sent, a download pays for its bytes slice by slice after they
//! arrived. Many concurrent transfers thus interleave their slices and the
//! process-wide rate stays smooth.
//!
//! ```
//! use restix_backend::limited::{Limited, RateLimits};
//! use restix_backend::local::LocalBackend;
//! # let dir = std::env::temp_dir().join(format!("restix-limited-doc-{}", std::process::id()));
//! let limits = RateLimits::from_kib(1024, 0); // 1 MiB/s up, download unlimited
//! let backend = Limited::new(LocalBackend::new(&dir), limits);
//! # let _ = backend;
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Backend, BackendResult, FileInfo, FileType};

/// Bytes paid for at a time (and the largest wait step).
pub const SLICE: u64 = 64 * 1024;

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug, Clone, Copy)]
struct BucketState {
    /// Tokens available at `at` (negative: owed by reservations).
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s with burst = rate; starts full.
    pub fn new(rate_bytes_per_sec: u64) -> TokenBucket {
        let rate = rate_bytes_per_sec.max(1) as f64;
        TokenBucket {
            rate,
            burst: rate,
            state: Mutex::new(BucketState {
                tokens: rate,
                at: Instant::now(),
            }),
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Take `n` tokens at time `now` and return how long the caller must wait
    /// before using them (zero when they were available). Reservations queue
    /// up: tokens may go negative, later callers wait longer.
    pub fn reserve_at(&self, n: u64, now: Instant) -> Duration {
        let Ok(mut st) = self.state.lock() else {
            return Duration::ZERO;
        };
        let elapsed = now.saturating_duration_since(st.at).as_secs_f64();
        let tokens = (st.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        *st = BucketState {
            tokens,
            at: now.max(st.at),
        };
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }

    /// Take `n` tokens in slices of at most [`SLICE`] (and of at most the
    /// burst), sleeping as the bucket demands.
    pub fn take(&self, n: u64) {
        for wait in slice_sizes(n, (self.burst as u64).clamp(1, SLICE))
            .map(|slice| self.reserve_at(slice, Instant::now()))
        {
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Split `n` bytes into slices of at most `max` bytes.
fn slice_sizes(n: u64, max: u64) -> impl Iterator<Item = u64> {
    let max = max.max(1);
    let full = n / max;
    let rest = n % max;
    (0..full)
        .map(move |_| max)
        .chain((rest > 0).then_some(rest))
}

/// The process-wide limits: one bucket per direction (`None` = unlimited).
/// Clone it to share the buckets between several wrapped backends.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    /// Upload (`write`) bucket.
    pub upload: Option<Arc<TokenBucket>>,
    /// Download (`read`, `read_range`) bucket.
    pub download: Option<Arc<TokenBucket>>,
}

impl RateLimits {
    /// From `--limit-upload` / `--limit-download` values in KiB/s; values
    /// <= 0 mean unlimited (spec: cli §6.1).
    pub fn from_kib(upload_kib: i64, download_kib: i64) -> RateLimits {
        let bucket = |kib: i64| {
            u64::try_from(kib)
                .ok()
                .filter(|k| *k > 0)
                .map(|k| Arc::new(TokenBucket::new(k.saturating_mul(1024))))
        };
        RateLimits {
            upload: bucket(upload_kib),
            download: bucket(download_kib),
        }
    }

    /// True when neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.upload.is_none() && self.download.is_none()
    }
}

/// A backend whose payload transfers are shaped by [`RateLimits`].
pub struct Limited<B: Backend> {
    inner: B,
    limits: RateLimits,
}

impl<B: Backend> Limited<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, limits: RateLimits) -> Limited<B> {
        Limited { inner, limits }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Backend> Backend for Limited<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        self.inner.create()
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        self.inner.list(file_type)
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        let data = self.inner.read(file_type, name)?;
        if let Some(bucket) = &self.limits.download {
            bucket.take(data.len() as u64);
        }
        Ok(data)
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let data = self.inner.read_range(file_type, name, offset, length)?;
        if let Some(bucket) = &self.limits.download {
            bucket.take(data.len() as u64);
        }
        Ok(data)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        if let Some(bucket) = &self.limits.upload {
            bucket.take(data.len() as u64);
        }
        self.inner.write(file_type, name, data)
    }

    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        if let Some(bucket) = &self.limits.upload {
            bucket.take(files.iter().map(|(_, _, data)| data.len() as u64).sum());
        }
        self.inner.write_in_order(files)
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        self.inner.remove(file_type, name)
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        self.inner.stat(file_type, name)
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

    #[test]
    fn kib_units_and_unlimited() {
        let l = RateLimits::from_kib(100, 0);
        assert_eq!(l.upload.as_ref().map(|b| b.rate()), Some(102_400));
        assert!(l.download.is_none());
        assert!(RateLimits::from_kib(-5, 0).is_unlimited());
        assert!(!l.is_unlimited());
    }

    #[test]
    fn slices() {
        let v: Vec<u64> = slice_sizes(10, 4).collect();
        assert_eq!(v, vec![4, 4, 2]);
        assert_eq!(slice_sizes(0, 4).count(), 0);
        assert_eq!(slice_sizes(8, 4).count(), 2);
    }

    /// The wait schedule, computed with a fixed clock (no timing involved):
    /// the first second's worth is free (bucket starts full), after that each
    /// slice waits slice/rate longer than the previous one.
    #[test]
    fn schedule_follows_rate() {
        let bucket = TokenBucket::new(100_000);
        let t0 = Instant::now();
        assert_eq!(bucket.reserve_at(100_000, t0), Duration::ZERO);
        let w1 = bucket.reserve_at(50_000, t0);
        let w2 = bucket.reserve_at(50_000, t0);
        assert!((w1.as_secs_f64() - 0.5).abs() < 1e-6, "{w1:?}");
        assert!((w2.as_secs_f64() - 1.0).abs() < 1e-6, "{w2:?}");
        // Two seconds later the debt is paid and the bucket refilled to the
        // burst at most: one second's worth is free again.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(bucket.reserve_at(100_000, later), Duration::ZERO);
        assert!(bucket.reserve_at(1, later) > Duration::ZERO);
    }

    /// 10 MB at 1 MB/s: total waiting adds up to ~9 s (first second free).
    #[test]
    fn total_wait_for_large_transfer() {
        let bucket = TokenBucket::new(1_000_000);
        let t0 = Instant::now();
        let last = slice_sizes(10_000_000, SLICE)
            .map(|s| bucket.reserve_at(s, t0))
            .last()
            .unwrap();
        assert!((last.as_secs_f64() - 9.0).abs() < 0.01, "{last:?}");
    }
}
