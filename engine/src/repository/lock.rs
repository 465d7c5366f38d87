//! Repository locks (`locks/<id>`), spec: restic-format §14, cli.md §7.
//!
//! Acquiring: list and load all lock files (ignoring empty ones), fail on a
//! conflict, write our own lock, wait 200 ms, check again (removing ours on
//! a conflict). Stale locks conflict like any other until removed with
//! [`remove_stale_locks`]. A background thread refreshes the lock every
//! 5 minutes (new file first, then the old one is removed). The
//! [`LockGuard`] removes the lock file when dropped; [`remove_held_locks`]
//! removes every lock this process holds (for SIGINT/SIGTERM handlers).

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use restix_repo_format::{GoTime, Id, Lock};

use super::{os_identity, RepoError, Repository, Shared};
use crate::backend::{Backend, FileType};

/// How often a held lock is refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Age after which a lock is stale.
pub const STALE_AGE: Duration = Duration::from_secs(30 * 60);
/// After this long without a successful refresh a lock may have been
/// removed as stale by others (30 min − 7.5 min, spec §14).
pub const REFRESH_GIVE_UP: Duration = Duration::from_secs(22 * 60 + 30);
/// Delay before re-checking after writing our lock.
const RECHECK_DELAY: Duration = Duration::from_millis(200);

/// Errors of lock operations.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another lock conflicts. The text is restic's; the CLI appends
    /// "the `unlock` command can be used to remove stale locks".
    #[error("unable to create lock in backend: repository is already locked {}by {}", if .lock.exclusive { "exclusively " } else { "" }, describe_lock(.lock, .id))]
    Locked {
        /// The conflicting lock.
        lock: Lock,
        /// Its file ID.
        id: Id,
    },
    /// A lock file that cannot be loaded or decoded. The text is restic
    /// 0.18's (`invalid lock file: LoadRaw(<lock/0123456789>): invalid data
    /// returned`); the CLI adds the `unlock --remove-all` hint.
    #[error("invalid lock file: {reason}")]
    Invalid {
        /// The lock file.
        id: Id,
        /// Why it cannot be read, naming the file.
        reason: String,
        /// The file's bytes are wrong (checksum, decryption, JSON): reading
        /// it again cannot help, so it is not retried.
        damaged: bool,
    },
    /// Our lock could not be refreshed for too long and its file is gone
    /// (e.g. after a suspend another process ran `unlock`).
    #[error("lock {id} was lost: not refreshed for {minutes} minutes and removed meanwhile")]
    Lost {
        /// The lock file that vanished.
        id: Id,
        /// Minutes since the last successful refresh.
        minutes: u64,
    },
    /// Listing, writing or removing lock files failed.
    #[error("{0}")]
    Repo(Box<RepoError>),
}

impl From<RepoError> for LockError {
    fn from(e: RepoError) -> Self {
        LockError::Repo(Box::new(e))
    }
}

impl From<crate::backend::BackendError> for LockError {
    fn from(e: crate::backend::BackendError) -> Self {
        LockError::Repo(Box::new(RepoError::from(e)))
    }
}

/// restic's `Lock.String()`:
/// `PID 1 on host by user (UID 0, GID 0)\nlock was created at 2024-01-02 03:04:05 (1m2s ago)\nstorage ID abcd1234`.
pub fn describe_lock(lock: &Lock, id: &Id) -> String {
    let created = format_local_datetime(lock.time);
    let now = GoTime::now_local();
    let age = now.unix_nanos() - lock.time.unix_nanos();
    format!(
        "PID {} on {} by {} (UID {}, GID {})\nlock was created at {} ({} ago)\nstorage ID {}",
        lock.pid,
        lock.hostname,
        lock.username,
        lock.uid,
        lock.gid,
        created,
        go_duration_string(age),
        id.short()
    )
}

/// `2006-01-02 15:04:05` in the time's own offset.
fn format_local_datetime(t: GoTime) -> String {
    // to_rfc3339 gives `YYYY-MM-DDTHH:MM:SS[.f](Z|±hh:mm)`.
    match t.to_rfc3339() {
        Ok(s) => {
            let date = s.get(0..10).unwrap_or("");
            let time = s.get(11..19).unwrap_or("");
            format!("{date} {time}")
        }
        Err(_) => format!("@{}", t.unix_seconds),
    }
}

/// Go's `time.Duration.String()` for a nanosecond count.
pub fn go_duration_string(nanos: i128) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    fn frac(value: u128, digits: u32) -> String {
        let unit = 10u128.pow(digits);
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let f = format!("{rest:0width$}", width = digits as usize);
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    }
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let total_secs = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let secs = total_secs % 60;
    let mins = (total_secs / 60) % 60;
    let hours = total_secs / 3600;
    let s = frac(secs * 1_000_000_000 + sub, 9);
    if hours > 0 {
        format!("{sign}{hours}h{mins}m{s}s")
    } else if mins > 0 {
        format!("{sign}{mins}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// True if the lock is stale: older than 30 minutes, or made on this host by
/// a process that no longer exists.
pub fn is_stale(lock: &Lock) -> bool {
    let now = GoTime::now_local();
    if now.unix_nanos() - lock.time.unix_nanos() > STALE_AGE.as_nanos() as i128 {
        return true;
    }
    lock.hostname == os_identity::hostname() && !os_identity::process_exists(lock.pid)
}

/// A lock for this process, now.
fn new_lock(exclusive: bool) -> Lock {
    let (uid, gid) = os_identity::uid_gid();
    Lock {
        time: GoTime::now_local(),
        exclusive,
        hostname: os_identity::hostname(),
        username: os_identity::username(),
        pid: i64::from(std::process::id()),
        uid,
        gid,
    }
}

// ------------------------------------------------------------ registry

struct HeldLock {
    token: u64,
    backend: Arc<dyn Backend>,
    name: String,
}

fn registry() -> &'static Mutex<Vec<HeldLock>> {
    static HELD: OnceLock<Mutex<Vec<HeldLock>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(token: u64, backend: &Arc<dyn Backend>, name: String) {
    if let Ok(mut held) = registry().lock() {
        held.retain(|h| h.token != token);
        held.push(HeldLock {
            token,
            backend: Arc::clone(backend),
            name,
        });
    }
}

fn unregister(token: u64) {
    if let Ok(mut held) = registry().lock() {
        held.retain(|h| h.token != token);
    }
}

/// Remove every lock file this process holds (best effort; for signal
/// handlers before exiting). Returns how many were removed.
pub fn remove_held_locks() -> usize {
    let held = match registry().lock() {
        Ok(mut held) => std::mem::take(&mut *held),
        Err(_) => return 0,
    };
    held.iter()
        .filter(|h| h.backend.remove(FileType::Lock, &h.name).is_ok())
        .count()
}

// ---------------------------------------------------------------- guard

/// A held lock. Dropping it stops the refresh thread and removes the lock file.
pub struct LockGuard {
    shared: Arc<Shared>,
    token: u64,
    current: Arc<Mutex<Id>>,
    last_refresh: Arc<Mutex<Instant>>,
    exclusive: bool,
    stop: Option<Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock_file_id", &self.lock_file_id())
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

impl LockGuard {
    /// ID of the lock file currently held (it changes on every refresh).
    pub fn lock_file_id(&self) -> Id {
        self.current.lock().map(|g| *g).unwrap_or(Id::NULL)
    }

    /// For long operations: fails with [`LockError::Lost`] when the lock
    /// was not refreshed for 22.5 minutes and its file no longer exists.
    pub fn check(&self) -> Result<(), LockError> {
        let since = self
            .last_refresh
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if since < REFRESH_GIVE_UP {
            return Ok(());
        }
        let id = self.lock_file_id();
        match self.shared.backend.stat(FileType::Lock, &id.to_hex()) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(LockError::Lost {
                id,
                minutes: since.as_secs() / 60,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// True for an exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Remove the lock now (same as dropping the guard, but reports errors).
    pub fn release(mut self) -> Result<(), LockError> {
        self.stop_refresher();
        let id = self.lock_file_id();
        unregister(self.token);
        let result = self.shared.backend.remove(FileType::Lock, &id.to_hex());
        self.token = 0;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn stop_refresher(&mut self) {
        self.stop.take();
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop_refresher();
        if self.token != 0 {
            unregister(self.token);
            let _ = self
                .shared
                .backend
                .remove(FileType::Lock, &self.lock_file_id().to_hex());
        }
    }
}

fn next_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

// ------------------------------------------------------------ operations

/// Every lock file with its decoded content; empty files are skipped. A lock
/// that cannot be read is retried after 5, 10 and 20 s, then reported, as
/// restic 0.18 does; a lock whose bytes are wrong (garbage, truncated) is
/// reported at once: restic would read the same bytes three more times
/// and fail after 35 s with the same message.
fn load_locks(repo: &Repository, except: Option<&Id>) -> Result<Vec<(Id, Lock)>, LockError> {
    let mut delays = [5u64, 10, 20].into_iter();
    loop {
        match try_load_locks(repo, except) {
            Ok(locks) => return Ok(locks),
            Err(e @ LockError::Invalid { damaged: true, .. }) => return Err(e),
            Err(e @ LockError::Invalid { .. }) => match delays.next() {
                Some(d) => std::thread::sleep(Duration::from_secs(d)),
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

fn try_load_locks(repo: &Repository, except: Option<&Id>) -> Result<Vec<(Id, Lock)>, LockError> {
    load_locks_with(repo, except, true)
}

/// The readable locks; with `strict`, the first unreadable one is an error,
/// otherwise it is passed over (restic's `unlock` ignores such locks).
fn load_locks_with(
    repo: &Repository,
    except: Option<&Id>,
    strict: bool,
) -> Result<Vec<(Id, Lock)>, LockError> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileType::Lock)? {
        if f.size == 0 {
            continue;
        }
        let Ok(id) = Id::from_hex(&f.name) else {
            continue;
        };
        if Some(&id) == except {
            continue;
        }
        let json = match repo.load_file(FileType::Lock, &id) {
            Ok(j) => j,
            // Removed meanwhile (the holder finished or refreshed).
            Err(RepoError::Backend { source }) if source.is_not_found() => continue,
            Err(RepoError::InvalidFile { reason, .. }) => {
                let handle = format!("<lock/{}>", f.name.get(..10).unwrap_or(&f.name));
                let reason = if reason.starts_with("invalid data") {
                    // restic's LoadRaw check of the content's hash.
                    format!("LoadRaw({handle}): invalid data returned")
                } else {
                    format!("{handle}: {reason}")
                };
                if !strict {
                    continue;
                }
                return Err(LockError::Invalid {
                    id,
                    reason,
                    damaged: true,
                });
            }
            Err(_) if !strict => continue,
            Err(e) => {
                return Err(LockError::Invalid {
                    id,
                    reason: e.to_string(),
                    damaged: false,
                })
            }
        };
        let lock = Lock::parse(&json).map_err(|e| LockError::Invalid {
            id,
            reason: format!("<lock/{}>: {e}", f.name.get(..10).unwrap_or(&f.name)),
            damaged: true,
        });
        match lock {
            Ok(lock) => out.push((id, lock)),
            Err(e) if strict => return Err(e),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// All readable locks (`list locks`, `unlock`).
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, Lock)>, LockError> {
    load_locks_with(repo, None, false)
}

fn check_conflicts(repo: &Repository, exclusive: bool, own: Option<&Id>) -> Result<(), LockError> {
    for (id, lock) in load_locks(repo, own)? {
        if exclusive || lock.exclusive {
            return Err(LockError::Locked { lock, id });
        }
    }
    Ok(())
}

fn try_acquire(repo: &Repository, exclusive: bool) -> Result<LockGuard, LockError> {
    check_conflicts(repo, exclusive, None)?;
    let json = new_lock(exclusive)
        .to_json()
        .map_err(|e| RepoError::InvalidArgument(format!("encoding lock: {e}")))?;
    let id = repo.save_unpacked(FileType::Lock, &json)?;
    let token = next_token();
    register(token, repo.backend(), id.to_hex());
    // restic waits before re-checking so that a concurrent locker's file has
    // time to show up in listings; where a written file is listed at once the
    // re-check alone is enough (see `Backend::list_after_write_consistent`).
    if !repo.backend().list_after_write_consistent() {
        std::thread::sleep(RECHECK_DELAY);
    }
    if let Err(e) = check_conflicts(repo, exclusive, Some(&id)) {
        unregister(token);
        let _ = repo.backend().remove(FileType::Lock, &id.to_hex());
        return Err(e);
    }
    let current = Arc::new(Mutex::new(id));
    let last_refresh = Arc::new(Mutex::new(Instant::now()));
    let (stop, stopped) = channel::<()>();
    let shared = Arc::clone(&repo.shared);
    let refresher = {
        let shared = Arc::clone(&shared);
        let current = Arc::clone(&current);
        let last_refresh = Arc::clone(&last_refresh);
        std::thread::Builder::new()
            .name("restix-lock-refresh".into())
            .spawn(move || loop {
                match stopped.recv_timeout(REFRESH_INTERVAL) {
                    Err(RecvTimeoutError::Timeout) => {
                        if refresh(&shared, &current, token, exclusive) {
                            if let Ok(mut t) = last_refresh.lock() {
                                *t = Instant::now();
                            }
                        }
                    }
                    _ => return,
                }
            })
            .ok()
    };
    Ok(LockGuard {
        shared,
        token,
        current,
        last_refresh,
        exclusive,
        stop: Some(stop),
        refresher,
    })
}

/// Write a fresh lock file, then remove the old one (spec §14 refresh).
/// Returns whether the new lock file was written.
fn refresh(shared: &Shared, current: &Mutex<Id>, token: u64, exclusive: bool) -> bool {
    let Ok(json) = new_lock(exclusive).to_json() else {
        return false;
    };
    let Ok(new_id) = shared.save_unpacked(FileType::Lock, &json) else {
        return false;
    };
    let old = match current.lock() {
        Ok(mut cur) => std::mem::replace(&mut *cur, new_id),
        Err(_) => return false,
    };
    register(token, &shared.backend, new_id.to_hex());
    let _ = shared.backend.remove(FileType::Lock, &old.to_hex());
    true
}

/// Acquire a lock, retrying for up to `retry` (restic's `--retry-lock`:
/// sleep 5 s, doubling, at most 60 s) while the repository is locked.
pub fn acquire(
    repo: &Repository,
    exclusive: bool,
    retry: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let deadline = retry.map(|r| Instant::now() + r);
    let mut delay = Duration::from_secs(5);
    loop {
        match try_acquire(repo, exclusive) {
            Err(LockError::Locked { lock, id }) => {
                let now = Instant::now();
                match deadline {
                    Some(d) if now < d => {
                        std::thread::sleep(delay.min(d - now));
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                    _ => return Err(LockError::Locked { lock, id }),
                }
            }
            other => return other,
        }
    }
}

/// Remove stale locks (`restic unlock`); returns how many were removed.
pub fn remove_stale_locks(repo: &Repository) -> Result<usize, LockError> {
    let mut removed = 0;
    // Unreadable locks are left alone (restic 0.18: "ignore locks that
    // cannot be loaded"); `unlock --remove-all` removes them.
    for (id, lock) in load_locks_with(repo, None, false)? {
        if is_stale(&lock) {
            match repo.backend().remove(FileType::Lock, &id.to_hex()) {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

/// Remove every lock file, readable or not (`restic unlock --remove-all`).
pub fn remove_all_locks(repo: &Repository) -> Result<usize, LockError> {
    let mut removed = 0;
    for f in repo.backend().list(FileType::Lock)? {
        match repo.backend().remove(FileType::Lock, &f.name) {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(999), "999ns");
        assert_eq!(go_duration_string(1_500), "1.5µs");
        assert_eq!(go_duration_string(2_000_000), "2ms");
        assert_eq!(go_duration_string(2_067_715_509), "2.067715509s");
        assert_eq!(go_duration_string(62_000_000_000), "1m2s");
        assert_eq!(go_duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration_string(-1_500_000_000), "-1.5s");
    }
}
