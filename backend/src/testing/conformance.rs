//! The backend conformance suite: the contract of [`Backend`], checked the
//! same way for every backend (restic's `internal/backend/test`).
//!
//! A backend crate's test hands the suite a function that returns a backend
//! for a fresh, empty location each time it is called (not yet `create`d),
//! and runs it:
//!
//! ```no_run
//! use restix_backend::local::LocalBackend;
//! use restix_backend::testing::conformance;
//! let root = std::env::temp_dir().join(format!("restix-conformance-doc-{}", std::process::id()));
//! let counter = std::sync::atomic::AtomicUsize::new(0);
//! conformance::Suite::new(|| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     LocalBackend::new(root.join(format!("repo{n}")))
//! })
//! .large_file_size(3 << 20)
//! .run();
//! # let _ = std::fs::remove_dir_all(&root);
//! ```
//!
//! [`run_all`] is the same with the defaults. Each check is also a public
//! function of its own, taking a created, empty backend (except
//! [`create_and_config`], which takes one not yet created), so a test can run
//! one check alone. A failed check panics with the check's name and what
//! went wrong. The checks:
//!
//! | check | what it asserts |
//! |---|---|
//! | [`create_and_config`] | a missing repository lists empty; `create` makes it; `config` round-trips; `create` then refuses (AlreadyExists) |
//! | [`list_by_type`] | each type lists exactly its files with their sizes; packs across `data/xx` |
//! | [`list_ignores_foreign_names`] | temporary and non-ID names are not listed |
//! | [`stat_sizes`] | `stat` gives the size; empty files too |
//! | [`whole_and_ranged_reads`] | whole reads, ranges at start/middle/end, zero-length ranges, short reads past the end |
//! | [`missing_files`] | read, range, stat: NotFound naming the file; remove: NotFound or Ok |
//! | [`delete`] | removed files are gone from stat, read and list |
//! | [`large_file`] | a large file round-trips; ranges near its end |
//! | [`atomic_write_observed`] | while a large write runs, its name shows nothing or the whole file |
//! | [`concurrent_writers`] | many threads write and read at once; all files listed and intact |
//! | [`ordered_writes`] | `write_in_order` stores every file (index, pack in its `data/xx`, snapshot) with its content |
//! | [`list_after_write`] | a written file is in the next `stat` and (eventually, or at once where promised) `list` |
//! | [`error_kinds`] | not found, short read, already exists: their kinds, never transient |
//! | [`outage`] | with [`Suite::outage`]: while the server is down errors are transient; after it returns, retrying recovers |
//!
//! Atomic writes when the writer process is killed are checked by
//! [`super::killed_writer`] (it needs a child process).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{data, id};
use crate::retry::{RetryPolicy, Retrying};
use crate::{Backend, BackendError, ErrorKind, FileType};

/// The default size of [`large_file`] and [`atomic_write_observed`].
pub const LARGE_FILE: usize = 20 << 20;

/// Stops and restarts the server of a backend, for [`outage`].
pub trait Outage: Sync {
    /// Make the server unreachable (kill it).
    fn begin(&self);
    /// Bring it back, and return once it serves again.
    fn end(&self);
}

/// One check of the suite, run on a created, empty backend.
type Check<'c> = dyn Fn(&dyn Backend) + 'c;

/// The suite for one backend. See the module docs.
pub struct Suite<'a> {
    make: Box<dyn Fn() -> Box<dyn Backend> + 'a>,
    large_file: usize,
    outage: Option<&'a dyn Outage>,
    writes_in_place: Option<&'a str>,
}

impl<'a> Suite<'a> {
    /// `make` returns a backend for a fresh, empty location on every call.
    pub fn new<B, F>(make: F) -> Suite<'a>
    where
        B: Backend + 'static,
        F: Fn() -> B + 'a,
    {
        Suite {
            make: Box::new(move || Box::new(make()) as Box<dyn Backend>),
            large_file: LARGE_FILE,
            outage: None,
            writes_in_place: None,
        }
    }

    /// Size of the large file (default [`LARGE_FILE`]).
    pub fn large_file_size(mut self, bytes: usize) -> Suite<'a> {
        self.large_file = bytes;
        self
    }

    /// Also run [`outage`] with this way of stopping the server.
    pub fn outage(mut self, outage: &'a dyn Outage) -> Suite<'a> {
        self.outage = Some(outage);
        self
    }

    /// The server stores an upload under its final name while it arrives
    /// (`rclone serve restic` 1.60 does, behind `rest:` and `rclone:`), so
    /// no client can make its writes atomic: [`atomic_write_observed`] is
    /// left out of the run, which prints `why`. Every other check runs.
    pub fn server_writes_in_place(mut self, why: &'a str) -> Suite<'a> {
        self.writes_in_place = Some(why);
        self
    }

    /// A created, empty backend.
    fn fresh(&self, check: &str) -> Box<dyn Backend> {
        let backend = (self.make)();
        if let Err(e) = backend.create() {
            panic!("{check}: create() of a fresh location failed: {e}");
        }
        backend
    }

    /// Run every check, each on a fresh location.
    pub fn run(&self) {
        let checks: [(&str, &Check<'_>); 12] = [
            ("list_by_type", &list_by_type),
            ("list_ignores_foreign_names", &list_ignores_foreign_names),
            ("stat_sizes", &stat_sizes),
            ("whole_and_ranged_reads", &whole_and_ranged_reads),
            ("missing_files", &missing_files),
            ("delete", &delete),
            ("large_file", &|b| large_file(b, self.large_file)),
            ("atomic_write_observed", &|b| {
                atomic_write_observed(b, self.large_file)
            }),
            ("concurrent_writers", &concurrent_writers),
            ("ordered_writes", &ordered_writes),
            ("list_after_write", &list_after_write),
            ("error_kinds", &error_kinds),
        ];
        eprintln!("conformance: create_and_config");
        create_and_config(&*(self.make)());
        for (name, check) in checks {
            if let (Some(why), "atomic_write_observed") = (self.writes_in_place, name) {
                eprintln!("conformance: {name} left out: {why}");
                continue;
            }
            eprintln!("conformance: {name}");
            let backend = self.fresh(name);
            check(&*backend);
        }
        if let Some(stopper) = self.outage {
            eprintln!("conformance: outage");
            let backend = self.fresh("outage");
            outage(&*backend, stopper);
        }
    }
}

/// [`Suite::run`] with the defaults (no outage check).
pub fn run_all<B, F>(make: F)
where
    B: Backend + 'static,
    F: Fn() -> B,
{
    Suite::new(make).run();
}

fn must<T>(what: &str, result: Result<T, BackendError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e} ({:?})", e.kind()),
    }
}

fn listed(backend: &dyn Backend, file_type: FileType) -> BTreeMap<String, u64> {
    must(&format!("list {file_type}"), backend.list(file_type))
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect()
}

fn write(backend: &dyn Backend, file_type: FileType, name: &str, bytes: &[u8]) {
    must(
        &format!(
            "write {} ({} bytes)",
            file_type.relative_path(name),
            bytes.len()
        ),
        backend.write(file_type, name, bytes),
    );
}

fn read(backend: &dyn Backend, file_type: FileType, name: &str) -> Vec<u8> {
    must(
        &format!("read {}", file_type.relative_path(name)),
        backend.read(file_type, name),
    )
}

fn range(backend: &dyn Backend, name: &str, offset: u64, length: u64) -> Vec<u8> {
    must(
        &format!("read_range {name} {offset}+{length}"),
        backend.read_range(FileType::Pack, name, offset, length),
    )
}

fn slice(bytes: &[u8], offset: u64, length: u64) -> &[u8] {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = usize::try_from(offset + length).unwrap_or(usize::MAX);
    &bytes[start..end]
}

/// Expect an error of `kind` from `result`.
fn expect_kind<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, BackendError>,
    kind: ErrorKind,
) -> BackendError {
    match result {
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected {kind:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            e
        }
    }
}

/// A backend not yet created: a missing repository lists as empty and its
/// config reads NotFound; `create` makes it (twice is fine without a
/// config); `config` written is read back and listed; `create` then
/// refuses with AlreadyExists.
pub fn create_and_config(backend: &dyn Backend) {
    for t in FileType::ALL {
        assert!(
            listed(backend, t).is_empty(),
            "{t}: a missing repository lists files"
        );
    }
    expect_kind(
        "read config of a missing repository",
        backend.read(FileType::Config, "config"),
        ErrorKind::NotFound,
    );
    must("create", backend.create());
    must("create again (no config yet)", backend.create());
    assert!(listed(backend, FileType::Config).is_empty());
    write(backend, FileType::Config, "config", b"the config");
    assert_eq!(read(backend, FileType::Config, "config"), b"the config");
    let config: Vec<_> = listed(backend, FileType::Config).into_iter().collect();
    assert_eq!(config, vec![("config".to_string(), 10)], "list config");
    assert_eq!(
        must("stat config", backend.stat(FileType::Config, "config")).size,
        10
    );
    expect_kind(
        "create with a config",
        backend.create(),
        ErrorKind::AlreadyExists,
    );
}

/// One file of each type: each type lists exactly its own; packs in
/// several `data/xx` folders are all listed, with their sizes.
pub fn list_by_type(backend: &dyn Backend) {
    let types = [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
    ];
    for (i, t) in types.into_iter().enumerate() {
        write(backend, t, &id(i as u64), &data(i as u64, 100 + i));
    }
    let packs: BTreeMap<String, u64> = (10..30u64).map(|n| (id(n), 1000 + n * 7)).collect();
    for (name, size) in &packs {
        write(backend, FileType::Pack, name, &data(*size, *size as usize));
    }
    for (i, t) in types.into_iter().enumerate() {
        let want: BTreeMap<String, u64> = [(id(i as u64), 100 + i as u64)].into();
        assert_eq!(listed(backend, t), want, "list {t}");
    }
    assert_eq!(listed(backend, FileType::Pack), packs, "list data");
    assert!(listed(backend, FileType::Config).is_empty(), "list config");
}

/// Names that are not 64-hex IDs (temporary files, strays) are not listed.
/// They are planted through `write`; a backend that refuses such names
/// (a server validating them) passes too.
pub fn list_ignores_foreign_names(backend: &dyn Backend) {
    let real = id(1);
    write(backend, FileType::Key, &real, b"key");
    write(backend, FileType::Pack, &real, b"pack");
    let strays = [
        format!("{real}-tmp-0123abcd"),
        "README".to_string(),
        real[..63].to_string(),
        real.to_uppercase(),
    ];
    for stray in &strays {
        for t in [FileType::Key, FileType::Pack] {
            let _ = backend.write(t, stray, b"stray");
        }
    }
    let want = |size: u64| -> BTreeMap<String, u64> { [(real.clone(), size)].into() };
    assert_eq!(listed(backend, FileType::Key), want(3), "list keys");
    assert_eq!(listed(backend, FileType::Pack), want(4), "list data");
}

/// `stat` gives each file's size, the empty file's too.
pub fn stat_sizes(backend: &dyn Backend) {
    for (n, size) in [(0u64, 0usize), (1, 1), (2, 4096), (3, 100_001)] {
        let name = id(n);
        write(backend, FileType::Index, &name, &data(n, size));
        let info = must("stat", backend.stat(FileType::Index, &name));
        assert_eq!(
            (info.name.as_str(), info.size),
            (name.as_str(), size as u64)
        );
    }
    assert_eq!(read(backend, FileType::Index, &id(0)), b"");
}

/// [`Backend::write_in_order`] stores each file with its content: index
/// files, a pack in its `data/xx` folder and a snapshot (what a backup
/// stores last), small and larger ones.
pub fn ordered_writes(backend: &dyn Backend) {
    let contents: Vec<(FileType, String, Vec<u8>)> = vec![
        (FileType::Index, id(40), data(40, 3000)),
        (FileType::Index, id(41), data(41, 300_001)),
        (FileType::Pack, id(42), data(42, 70_000)),
        (FileType::Snapshot, id(43), data(43, 500)),
    ];
    let files: Vec<(FileType, &str, &[u8])> = contents
        .iter()
        .map(|(t, name, bytes)| (*t, name.as_str(), bytes.as_slice()))
        .collect();
    must("write_in_order", backend.write_in_order(&files));
    for (file_type, name, bytes) in &files {
        assert!(
            read(backend, *file_type, name) == *bytes,
            "{} differs after write_in_order",
            file_type.relative_path(name)
        );
    }
}

/// Whole reads and ranges: at the start, across 64 KiB boundaries, at the
/// end, zero-length; past the end is a ShortRead.
pub fn whole_and_ranged_reads(backend: &dyn Backend) {
    let name = id(7);
    let bytes = data(7, 1_234_567);
    let size = bytes.len() as u64;
    write(backend, FileType::Pack, &name, &bytes);
    assert!(
        read(backend, FileType::Pack, &name) == bytes,
        "whole read differs"
    );
    for (offset, length) in [
        (0, 1),
        (0, 10),
        (65_000, 200_000),
        (65_536, 65_536),
        (size - 5, 5),
        (1, size - 1),
        (0, size),
        (1234, 0),
        (size, 0),
    ] {
        let got = range(backend, &name, offset, length);
        assert!(
            got == slice(&bytes, offset, length),
            "range {offset}+{length}: got {} bytes, not the file's",
            got.len()
        );
    }
    for (offset, length) in [(size - 5, 10), (size, 1), (size + 100, 1), (0, size + 1)] {
        expect_kind(
            &format!("range {offset}+{length} past the end of {size}"),
            backend.read_range(FileType::Pack, &name, offset, length),
            ErrorKind::ShortRead,
        );
    }
}

/// A missing file: read, range and stat are NotFound and name the file;
/// remove is NotFound or Ok (object stores); list of an empty type is empty.
pub fn missing_files(backend: &dyn Backend) {
    let name = id(99);
    for t in [FileType::Key, FileType::Pack, FileType::Snapshot] {
        let e = expect_kind("read missing", backend.read(t, &name), ErrorKind::NotFound);
        assert!(
            e.to_string().contains(&name),
            "not found error without the name: {e}"
        );
        expect_kind(
            "read_range missing",
            backend.read_range(t, &name, 0, 1),
            ErrorKind::NotFound,
        );
        let e = expect_kind("stat missing", backend.stat(t, &name), ErrorKind::NotFound);
        assert!(
            e.to_string().contains(&name),
            "not found error without the name: {e}"
        );
        match backend.remove(t, &name) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "remove missing: {e}"),
        }
        assert!(listed(backend, t).is_empty());
    }
    expect_kind(
        "stat missing config",
        backend.stat(FileType::Config, "config"),
        ErrorKind::NotFound,
    );
}

/// Removed files are gone from stat, read and list; others stay.
pub fn delete(backend: &dyn Backend) {
    for n in 0..4 {
        write(backend, FileType::Lock, &id(n), &data(n, 50));
        write(backend, FileType::Pack, &id(n), &data(n, 5000));
    }
    for t in [FileType::Lock, FileType::Pack] {
        must("remove", backend.remove(t, &id(1)));
        must("remove", backend.remove(t, &id(2)));
        expect_kind("stat removed", backend.stat(t, &id(1)), ErrorKind::NotFound);
        expect_kind("read removed", backend.read(t, &id(2)), ErrorKind::NotFound);
        let names: Vec<String> = listed(backend, t).into_keys().collect();
        let mut want = vec![id(0), id(3)];
        want.sort();
        assert_eq!(names, want, "list {t} after remove");
    }
    write(backend, FileType::Config, "config", b"c");
    must("remove config", backend.remove(FileType::Config, "config"));
    assert!(listed(backend, FileType::Config).is_empty());
}

/// A file of `size` bytes round-trips; ranges near its end.
pub fn large_file(backend: &dyn Backend, size: usize) {
    let name = id(3);
    let bytes = data(3, size);
    write(backend, FileType::Pack, &name, &bytes);
    assert_eq!(
        must("stat", backend.stat(FileType::Pack, &name)).size,
        size as u64
    );
    assert!(
        read(backend, FileType::Pack, &name) == bytes,
        "large file differs"
    );
    let end = size as u64;
    for (offset, length) in [
        (end - 1, 1),
        (end / 2 - 3, 70_000),
        (end - 300_000, 300_000),
    ] {
        assert!(
            range(backend, &name, offset, length) == slice(&bytes, offset, length),
            "range {offset}+{length} differs"
        );
    }
}

/// While a file of `size` bytes is being written from another thread, its
/// name shows nothing or the complete file (stat and list); afterwards the
/// file is complete.
pub fn atomic_write_observed(backend: &dyn Backend, size: usize) {
    let name = id(4);
    let bytes = data(4, size);
    let total = size as u64;
    let mut observations = 0u64;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| backend.write(FileType::Pack, &name, &bytes));
        while !writer.is_finished() {
            match backend.stat(FileType::Pack, &name) {
                Ok(info) => assert_eq!(info.size, total, "partial file under the final name"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "stat during write: {e}"),
            }
            if let Ok(files) = backend.list(FileType::Pack) {
                for f in files.iter().filter(|f| f.name == name) {
                    assert_eq!(f.size, total, "partial file listed");
                }
            }
            observations += 1;
        }
        match writer.join() {
            Ok(result) => must("write while observed", result),
            Err(_) => panic!("the writer thread panicked"),
        }
    });
    assert!(observations > 0);
    assert!(
        read(backend, FileType::Pack, &name) == bytes,
        "file differs after write"
    );
}

/// 8 threads write 4 files each (0 bytes to 600 KB) and read them back at
/// once; then every file is listed with its size and intact.
pub fn concurrent_writers(backend: &dyn Backend) {
    let size = |n: u64| ((n * 7919) % 600_000) as usize;
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            scope.spawn(move || {
                for k in 0..4 {
                    let n = 100 + thread * 4 + k;
                    let bytes = data(n, size(n));
                    write(backend, FileType::Pack, &id(n), &bytes);
                    assert!(
                        read(backend, FileType::Pack, &id(n)) == bytes,
                        "file {n} read back differs"
                    );
                }
            });
        }
    });
    let want: BTreeMap<String, u64> = (100..132).map(|n| (id(n), size(n) as u64)).collect();
    assert_eq!(
        listed(backend, FileType::Pack),
        want,
        "list after concurrent writes"
    );
    for n in 100..132 {
        assert!(read(backend, FileType::Pack, &id(n)) == data(n, size(n)));
    }
}

/// A written file is found by the next `stat` at once, and by `list`: at
/// once where [`Backend::list_after_write_consistent`] promises it, else
/// within a few seconds.
pub fn list_after_write(backend: &dyn Backend) {
    let consistent = backend.list_after_write_consistent();
    for n in 0..8 {
        let name = id(n);
        write(backend, FileType::Snapshot, &name, &data(n, 300));
        assert_eq!(
            must("stat after write", backend.stat(FileType::Snapshot, &name)).size,
            300
        );
        let mut tries = 0;
        while !listed(backend, FileType::Snapshot).contains_key(&name) {
            assert!(
                !consistent && tries < 50,
                "file {n} not listed right after it was written"
            );
            tries += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(listed(backend, FileType::Snapshot).len(), 8);
}

/// Errors carry their kind: not found, short read, already exists are
/// permanent (never transient), so the retry wrapper returns them at once.
pub fn error_kinds(backend: &dyn Backend) {
    let name = id(5);
    write(backend, FileType::Pack, &name, b"0123456789");
    let cases = [
        expect_kind(
            "read missing",
            backend.read(FileType::Pack, &id(6)),
            ErrorKind::NotFound,
        ),
        expect_kind(
            "range past the end",
            backend.read_range(FileType::Pack, &name, 8, 3),
            ErrorKind::ShortRead,
        ),
    ];
    write(backend, FileType::Config, "config", b"c");
    let exists = expect_kind(
        "create over a config",
        backend.create(),
        ErrorKind::AlreadyExists,
    );
    for e in cases.iter().chain([&exists]) {
        assert!(!e.is_transient(), "{e} counts as transient");
    }
    // Through the retry wrapper they come back after one attempt (a
    // transient kind would make it wait and try again).
    let retrying = Retrying::new(backend, RetryPolicy::default());
    expect_kind(
        "read missing through the retry wrapper",
        retrying.read(FileType::Pack, &id(6)),
        ErrorKind::NotFound,
    );
}

/// The server goes away: every operation fails with a transient error (so
/// the retry wrapper waits for it). It comes back: through the retry
/// wrapper the backend works again (it reconnects) and nothing was lost.
pub fn outage(backend: &dyn Backend, stopper: &dyn Outage) {
    let before = id(1);
    write(backend, FileType::Snapshot, &before, b"before the outage");
    stopper.begin();
    let during = id(2);
    let failures = [
        backend.read(FileType::Snapshot, &before).map(|_| ()),
        backend.stat(FileType::Snapshot, &before).map(|_| ()),
        backend.list(FileType::Snapshot).map(|_| ()),
        backend.write(FileType::Snapshot, &during, b"during"),
    ];
    let kinds: Vec<String> = failures
        .iter()
        .map(|r| match r {
            Ok(()) => "succeeded".to_string(),
            Err(e) => format!("{:?}: {e}", e.kind()),
        })
        .collect();
    stopper.end();
    for (r, text) in failures.iter().zip(&kinds) {
        assert!(
            matches!(r, Err(e) if e.is_transient()),
            "during the outage: {text} (expected a transient error)"
        );
    }
    let patient = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(120),
        max_attempts: u32::MAX,
        jitter: false,
    };
    let retrying = Retrying::new(backend, patient);
    assert_eq!(
        read(&retrying, FileType::Snapshot, &before),
        b"before the outage"
    );
    write(&retrying, FileType::Snapshot, &during, b"after");
    let names: Vec<String> = listed(&retrying, FileType::Snapshot).into_keys().collect();
    let mut want = vec![before, during];
    want.sort();
    assert_eq!(names, want);
}
