//! A fault-injecting backend wrapper for tests: fails, truncates, delays or drops chosen operations.
//!
//! [`FaultyBackend`] wraps any [`Backend`] and, following a [`FaultPlan`],
//! makes the N-th operation of a kind misbehave. Operations are counted per
//! [`OpKind`] (1-based; `read` and `read_range` both count as reads), so a
//! plan says things like "the 3rd write fails" or "every read from the 5th on
//! returns truncated data". A plan can also simulate a full disk: once the
//! bytes stored through `write` would exceed a budget, writes fail with
//! [`BackendError::NoSpace`] and store nothing (the backend contract makes
//! writes atomic, so a full disk leaves no partial file).
//!
//! It exists to prove the engine's reliability claims (errors are reported
//! clearly, a failed backup leaves a repository that `restic check` accepts)
//! and that the retry wrapper rides out transient faults; it is compiled
//! only with the `testing` feature. [`Fault::Fail`] is a transient error
//! (an I/O error another attempt may not meet), [`Fault::FailPermanently`]
//! a permanent one.
//!
//! ```
//! use std::sync::Arc;
//! use restix_backend::fault::{FaultPlan, FaultyBackend, OpKind};
//! use restix_backend::local::LocalBackend;
//! use restix_backend::{Backend, FileType};
//! # let dir = std::env::temp_dir().join(format!("restix-fault-doc-{}", std::process::id()));
//! let plan = FaultPlan::new().fail(OpKind::Write, 2).no_space_after(1 << 20);
//! let backend = Arc::new(FaultyBackend::new(LocalBackend::new(&dir), plan));
//! backend.create().unwrap();
//! let name = "00".repeat(32);
//! backend.write(FileType::Snapshot, &name, b"first").unwrap();
//! assert!(backend.write(FileType::Snapshot, &"11".repeat(32), b"second").is_err());
//! assert_eq!(backend.count(OpKind::Write), 2);
//! # let _ = std::fs::remove_dir_all(&dir);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::{Backend, BackendError, BackendResult, FileInfo, FileType};

/// The operation kinds that are counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `read` and `read_range`.
    Read,
    /// `write`.
    Write,
    /// `list`.
    List,
    /// `remove`.
    Remove,
    /// `stat`.
    Stat,
}

impl OpKind {
    /// All kinds, in a fixed order.
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::List,
        OpKind::Remove,
        OpKind::Stat,
    ];

    fn slot(self) -> usize {
        match self {
            OpKind::Read => 0,
            OpKind::Write => 1,
            OpKind::List => 2,
            OpKind::Remove => 3,
            OpKind::Stat => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::List => "list",
            OpKind::Remove => "remove",
            OpKind::Stat => "stat",
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to a chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation is not performed and returns [`BackendError::Io`]
    /// (an [`std::io::ErrorKind::Other`] error: transient, retried).
    Fail,
    /// The operation is not performed and returns [`BackendError::Other`]
    /// (permanent, not retried).
    FailPermanently,
    /// Reads return (successfully) only the first half of the data; writes
    /// store only the first half under the final name and then fail, like a
    /// non-atomic remote that lost the connection mid-upload; lists return
    /// the first half of the entries. Remove and stat fail as with `Fail`.
    Truncate,
    /// The operation is performed after sleeping this long.
    Delay(Duration),
    /// The operation silently does nothing: writes and removes report
    /// success without touching storage, reads and stats report
    /// [`BackendError::NotFound`], lists return no entries.
    Drop,
    /// Reads return (successfully) at most this many bytes, violating the
    /// `read_range` contract: callers must detect it. Other kinds: `Fail`.
    ShortRead(u64),
}

/// One rule of a plan: which operations of a kind get which fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The kind of operation counted.
    pub op: OpKind,
    /// The first operation hit (1-based count of operations of this kind).
    pub nth: u64,
    /// Also hit later operations of this kind (a lasting outage).
    pub persistent: bool,
    /// With `persistent`: hit every `every`-th operation from `nth` on
    /// (0 and 1: all of them).
    pub every: u64,
    /// Only operations on this file type match (they still count towards
    /// `nth` only when they match); `None` matches every type.
    pub file_type: Option<FileType>,
    /// What happens.
    pub fault: Fault,
}

/// Which faults a [`FaultyBackend`] injects. Built with chained calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The rules; the first matching rule wins.
    pub rules: Vec<FaultRule>,
    /// Simulated disk capacity: writes fail with [`BackendError::NoSpace`]
    /// once the bytes written would exceed this many.
    pub no_space_after: Option<u64>,
}

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Add a rule.
    pub fn rule(mut self, rule: FaultRule) -> FaultPlan {
        self.rules.push(rule);
        self
    }

    /// Hit only the `nth` operation of kind `op` with `fault`.
    pub fn at(self, op: OpKind, nth: u64, fault: Fault) -> FaultPlan {
        self.rule(FaultRule {
            op,
            nth,
            persistent: false,
            every: 1,
            file_type: None,
            fault,
        })
    }

    /// Hit the `nth` operation of kind `op` and all later ones with `fault`.
    pub fn from_nth(self, op: OpKind, nth: u64, fault: Fault) -> FaultPlan {
        self.rule(FaultRule {
            op,
            nth,
            persistent: true,
            every: 1,
            file_type: None,
            fault,
        })
    }

    /// Hit the `nth` operation of kind `op`, then every `every`-th after it
    /// (an unreliable link: with a retry wrapper every operation succeeds).
    pub fn every(self, op: OpKind, nth: u64, every: u64, fault: Fault) -> FaultPlan {
        self.rule(FaultRule {
            op,
            nth,
            persistent: true,
            every,
            file_type: None,
            fault,
        })
    }

    /// The `nth` operation of kind `op` fails.
    pub fn fail(self, op: OpKind, nth: u64) -> FaultPlan {
        self.at(op, nth, Fault::Fail)
    }

    /// The `nth` operation of kind `op` is truncated (see [`Fault::Truncate`]).
    pub fn truncate(self, op: OpKind, nth: u64) -> FaultPlan {
        self.at(op, nth, Fault::Truncate)
    }

    /// The `nth` operation of kind `op` is delayed by `delay`.
    pub fn delay(self, op: OpKind, nth: u64, delay: Duration) -> FaultPlan {
        self.at(op, nth, Fault::Delay(delay))
    }

    /// The `nth` operation of kind `op` is silently dropped.
    pub fn drop_op(self, op: OpKind, nth: u64) -> FaultPlan {
        self.at(op, nth, Fault::Drop)
    }

    /// The `nth` read returns at most `len` bytes.
    pub fn short_read(self, nth: u64, len: u64) -> FaultPlan {
        self.at(OpKind::Read, nth, Fault::ShortRead(len))
    }

    /// Writes fail with [`BackendError::NoSpace`] once more than `bytes`
    /// bytes would have been written in total.
    pub fn no_space_after(mut self, bytes: u64) -> FaultPlan {
        self.no_space_after = Some(bytes);
        self
    }
}

/// A backend wrapper that injects the faults of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyBackend<B: Backend> {
    inner: B,
    plan: Mutex<FaultPlan>,
    /// Operations seen, per kind (index: [`OpKind::slot`]).
    counts: [AtomicU64; 5],
    /// Per rule: matching operations seen so far.
    rule_counts: Mutex<Vec<u64>>,
    injected: AtomicU64,
    bytes_written: Mutex<u64>,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wrap `inner`, injecting the faults of `plan`.
    pub fn new(inner: B, plan: FaultPlan) -> FaultyBackend<B> {
        let rules = plan.rules.len();
        FaultyBackend {
            inner,
            plan: Mutex::new(plan),
            counts: Default::default(),
            rule_counts: Mutex::new(vec![0; rules]),
            injected: AtomicU64::new(0),
            bytes_written: Mutex::new(0),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Replace the plan and reset all counters (e.g. to run a clean
    /// follow-up operation on the same backend).
    pub fn set_plan(&self, plan: FaultPlan) {
        let rules = plan.rules.len();
        *lock(&self.plan) = plan;
        *lock(&self.rule_counts) = vec![0; rules];
        for c in &self.counts {
            c.store(0, Ordering::SeqCst);
        }
        self.injected.store(0, Ordering::SeqCst);
        *lock(&self.bytes_written) = 0;
    }

    /// Operations of kind `op` seen so far.
    pub fn count(&self, op: OpKind) -> u64 {
        self.counts
            .get(op.slot())
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// Faults injected so far (delays included).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Bytes stored through `write` so far (truncated writes count what was
    /// stored).
    pub fn bytes_written(&self) -> u64 {
        *lock(&self.bytes_written)
    }

    /// Count one operation and decide its fault. `Delay` is applied here
    /// (the caller then performs the operation normally).
    fn decide(&self, op: OpKind, file_type: FileType) -> Option<Fault> {
        if let Some(c) = self.counts.get(op.slot()) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        let plan = lock(&self.plan);
        let mut rule_counts = lock(&self.rule_counts);
        let mut chosen = None;
        for (rule, seen) in plan.rules.iter().zip(rule_counts.iter_mut()) {
            if rule.op != op || rule.file_type.is_some_and(|t| t != file_type) {
                continue;
            }
            *seen += 1;
            let hit = if rule.persistent {
                *seen >= rule.nth && (*seen - rule.nth) % rule.every.max(1) == 0
            } else {
                *seen == rule.nth
            };
            if hit && chosen.is_none() {
                chosen = Some(rule.fault);
            }
        }
        drop(rule_counts);
        drop(plan);
        if let Some(fault) = chosen {
            self.injected.fetch_add(1, Ordering::SeqCst);
            if let Fault::Delay(d) = fault {
                std::thread::sleep(d);
                return None;
            }
        }
        chosen
    }

    fn injected_error(&self, op: OpKind, file_type: FileType, name: &str) -> BackendError {
        BackendError::Io {
            op: op.name(),
            path: format!(
                "{}/{}",
                self.inner.location(),
                file_type.relative_path(name)
            ),
            source: std::io::Error::other(format!("injected fault on {op}")),
        }
    }

    /// The error of a failing operation: transient for [`Fault::Fail`] (and
    /// the kinds that fail like it), permanent for [`Fault::FailPermanently`].
    fn failure(&self, fault: Fault, op: OpKind, file_type: FileType, name: &str) -> BackendError {
        match fault {
            Fault::FailPermanently => BackendError::Other(format!(
                "{}: injected permanent fault on {op}",
                self.path(file_type, name)
            )),
            _ => self.injected_error(op, file_type, name),
        }
    }

    fn path(&self, file_type: FileType, name: &str) -> String {
        format!(
            "{}/{}",
            self.inner.location(),
            file_type.relative_path(name)
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not make every later operation panic too.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shorten_read(data: Vec<u8>, fault: Fault) -> Vec<u8> {
    let mut data = data;
    let keep = match fault {
        Fault::ShortRead(n) => usize::try_from(n).unwrap_or(usize::MAX).min(data.len()),
        _ => data.len() / 2,
    };
    data.truncate(keep);
    data
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        self.inner.create()
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        match self.decide(OpKind::List, file_type) {
            None => self.inner.list(file_type),
            Some(Fault::Drop) => Ok(Vec::new()),
            Some(Fault::Truncate) => {
                let mut all = self.inner.list(file_type)?;
                all.truncate(all.len() / 2);
                Ok(all)
            }
            Some(f) => Err(self.failure(f, OpKind::List, file_type, "")),
        }
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        match self.decide(OpKind::Read, file_type) {
            None => self.inner.read(file_type, name),
            Some(Fault::Drop) => Err(BackendError::NotFound {
                path: self.path(file_type, name),
            }),
            Some(f @ (Fault::Truncate | Fault::ShortRead(_))) => {
                Ok(shorten_read(self.inner.read(file_type, name)?, f))
            }
            Some(f) => Err(self.failure(f, OpKind::Read, file_type, name)),
        }
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        match self.decide(OpKind::Read, file_type) {
            None => self.inner.read_range(file_type, name, offset, length),
            Some(Fault::Drop) => Err(BackendError::NotFound {
                path: self.path(file_type, name),
            }),
            Some(f @ (Fault::Truncate | Fault::ShortRead(_))) => Ok(shorten_read(
                self.inner.read_range(file_type, name, offset, length)?,
                f,
            )),
            Some(f) => Err(self.failure(f, OpKind::Read, file_type, name)),
        }
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let fault = self.decide(OpKind::Write, file_type);
        let stored = match fault {
            Some(Fault::Truncate) => data.get(..data.len() / 2).unwrap_or(data),
            _ => data,
        };
        if !matches!(fault, Some(Fault::Drop)) {
            let mut written = lock(&self.bytes_written);
            if let Some(cap) = lock(&self.plan).no_space_after {
                if written.saturating_add(stored.len() as u64) > cap {
                    return Err(BackendError::NoSpace {
                        path: self.path(file_type, name),
                    });
                }
            }
            *written = written.saturating_add(stored.len() as u64);
        }
        match fault {
            None => self.inner.write(file_type, name, data),
            Some(Fault::Drop) => Ok(()),
            Some(Fault::Truncate) => {
                self.inner.write(file_type, name, stored)?;
                Err(self.injected_error(OpKind::Write, file_type, name))
            }
            Some(f) => Err(self.failure(f, OpKind::Write, file_type, name)),
        }
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        match self.decide(OpKind::Remove, file_type) {
            None => self.inner.remove(file_type, name),
            Some(Fault::Drop) => Ok(()),
            Some(f) => Err(self.failure(f, OpKind::Remove, file_type, name)),
        }
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        match self.decide(OpKind::Stat, file_type) {
            None => self.inner.stat(file_type, name),
            Some(Fault::Drop) => Err(BackendError::NotFound {
                path: self.path(file_type, name),
            }),
            Some(f) => Err(self.failure(f, OpKind::Stat, file_type, name)),
        }
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
    use crate::local::LocalBackend;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_repo() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "restix-fault-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        TempDir(dir)
    }

    fn name(i: u8) -> String {
        format!("{i:02x}").repeat(32)
    }

    fn faulty(dir: &TempDir, plan: FaultPlan) -> FaultyBackend<LocalBackend> {
        let b = FaultyBackend::new(LocalBackend::new(&dir.0), plan);
        b.create().unwrap();
        b
    }

    #[test]
    fn fails_only_the_nth_write() {
        let dir = temp_repo();
        let b = faulty(&dir, FaultPlan::new().fail(OpKind::Write, 2));
        b.write(FileType::Snapshot, &name(1), b"one").unwrap();
        let err = b.write(FileType::Snapshot, &name(2), b"two").unwrap_err();
        assert!(err.to_string().contains("injected fault on write"), "{err}");
        b.write(FileType::Snapshot, &name(3), b"three").unwrap();
        assert_eq!(b.count(OpKind::Write), 3);
        assert_eq!(b.injected(), 1);
        let names: Vec<String> = b
            .list(FileType::Snapshot)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(!names.contains(&name(2)));
    }

    #[test]
    fn persistent_faults_hit_every_later_operation() {
        let dir = temp_repo();
        let b = faulty(
            &dir,
            FaultPlan::new().from_nth(OpKind::Stat, 2, Fault::Fail),
        );
        b.write(FileType::Key, &name(1), b"k").unwrap();
        assert!(b.stat(FileType::Key, &name(1)).is_ok());
        for _ in 0..3 {
            assert!(b.stat(FileType::Key, &name(1)).is_err());
        }
        assert_eq!(b.injected(), 3);
    }

    #[test]
    fn file_type_filter_counts_only_matching_operations() {
        let dir = temp_repo();
        let plan = FaultPlan::new().rule(FaultRule {
            op: OpKind::Write,
            nth: 1,
            persistent: false,
            every: 1,
            file_type: Some(FileType::Index),
            fault: Fault::Fail,
        });
        let b = faulty(&dir, plan);
        b.write(FileType::Pack, &name(1), b"pack").unwrap();
        assert!(b.write(FileType::Index, &name(2), b"index").is_err());
        b.write(FileType::Index, &name(3), b"index").unwrap();
    }

    #[test]
    fn truncated_and_short_reads_return_less_data() {
        let dir = temp_repo();
        let plan = FaultPlan::new()
            .truncate(OpKind::Read, 1)
            .short_read(2, 3)
            .fail(OpKind::Read, 3)
            .drop_op(OpKind::Read, 4);
        let b = faulty(&dir, plan);
        b.write(FileType::Pack, &name(7), b"0123456789").unwrap();
        assert_eq!(b.read(FileType::Pack, &name(7)).unwrap(), b"01234");
        assert_eq!(
            b.read_range(FileType::Pack, &name(7), 2, 6).unwrap(),
            b"234"
        );
        assert!(b.read(FileType::Pack, &name(7)).is_err());
        assert!(b
            .read_range(FileType::Pack, &name(7), 0, 1)
            .unwrap_err()
            .is_not_found());
        assert_eq!(b.read(FileType::Pack, &name(7)).unwrap(), b"0123456789");
        assert_eq!(b.count(OpKind::Read), 5);
    }

    #[test]
    fn truncated_write_leaves_a_partial_file_and_fails() {
        let dir = temp_repo();
        let b = faulty(&dir, FaultPlan::new().truncate(OpKind::Write, 1));
        assert!(b.write(FileType::Pack, &name(1), b"abcdef").is_err());
        assert_eq!(b.inner().read(FileType::Pack, &name(1)).unwrap(), b"abc");
        assert_eq!(b.bytes_written(), 3);
    }

    #[test]
    fn dropped_operations_do_nothing() {
        let dir = temp_repo();
        let plan = FaultPlan::new()
            .drop_op(OpKind::Write, 1)
            .drop_op(OpKind::Remove, 1)
            .drop_op(OpKind::List, 1)
            .drop_op(OpKind::Stat, 1);
        let b = faulty(&dir, plan);
        b.write(FileType::Lock, &name(1), b"lost").unwrap();
        assert!(b.inner().stat(FileType::Lock, &name(1)).is_err());
        b.write(FileType::Lock, &name(2), b"kept").unwrap();
        b.remove(FileType::Lock, &name(2)).unwrap();
        assert!(b.inner().stat(FileType::Lock, &name(2)).is_ok());
        assert!(b.list(FileType::Lock).unwrap().is_empty());
        assert_eq!(b.list(FileType::Lock).unwrap().len(), 1);
        assert!(b.stat(FileType::Lock, &name(2)).unwrap_err().is_not_found());
        assert_eq!(b.stat(FileType::Lock, &name(2)).unwrap().size, 4);
    }

    #[test]
    fn truncated_list_returns_half() {
        let dir = temp_repo();
        let b = faulty(&dir, FaultPlan::new().truncate(OpKind::List, 1));
        for i in 0..4 {
            b.write(FileType::Index, &name(i), b"x").unwrap();
        }
        assert_eq!(b.list(FileType::Index).unwrap().len(), 2);
        assert_eq!(b.list(FileType::Index).unwrap().len(), 4);
    }

    #[test]
    fn delayed_operations_still_succeed() {
        let dir = temp_repo();
        let b = faulty(
            &dir,
            FaultPlan::new().delay(OpKind::Write, 1, Duration::from_millis(1)),
        );
        b.write(FileType::Snapshot, &name(1), b"late").unwrap();
        assert_eq!(b.read(FileType::Snapshot, &name(1)).unwrap(), b"late");
        assert_eq!(b.injected(), 1);
    }

    #[test]
    fn full_disk_reports_no_space_and_stores_nothing() {
        let dir = temp_repo();
        let b = faulty(&dir, FaultPlan::new().no_space_after(10));
        b.write(FileType::Pack, &name(1), b"12345678").unwrap();
        let err = b.write(FileType::Pack, &name(2), b"123").unwrap_err();
        assert!(matches!(err, BackendError::NoSpace { .. }), "{err:?}");
        assert!(err.to_string().contains("no space left on device"));
        assert!(b.inner().stat(FileType::Pack, &name(2)).is_err());
        b.write(FileType::Pack, &name(3), b"12").unwrap();
        assert_eq!(b.bytes_written(), 10);
    }

    #[test]
    fn set_plan_resets_counters() {
        let dir = temp_repo();
        let b = faulty(
            &dir,
            FaultPlan::new().from_nth(OpKind::Write, 1, Fault::Fail),
        );
        assert!(b.write(FileType::Key, &name(1), b"k").is_err());
        b.set_plan(FaultPlan::new());
        assert_eq!(b.count(OpKind::Write), 0);
        b.write(FileType::Key, &name(1), b"k").unwrap();
    }
}
