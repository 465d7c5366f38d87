//! The backend contract checks the `rest:`, `rclone:` and `azure:` tests
//! run against their real servers (tests/tests/backend_{rest,rclone,azure}.rs).
//!
//! Stand-in for the conformance suite of the backend crate (issue #18 item
//! 2): [`check_all`] is the one entry point, so the three callers switch to
//! that suite by replacing this call. Covered: a fresh repository is empty
//! and `create` refuses a second time; list, stat, whole and ranged reads
//! (short reads and zero lengths); list after write; remove, and missing
//! files as [`BackendError::NotFound`]; a large file; concurrent writers.
//! [`check_transient_while_down`] checks the error kinds of a server that
//! went away.

use std::collections::BTreeMap;

use restix_engine::backend::{Backend, BackendError, FileType};

use crate::harness::pseudo_random_bytes;

/// A 64-hex name made from `n`.
pub fn id(n: u64) -> String {
    format!("{n:016x}").repeat(4)
}

/// Run every check on a backend whose repository does not exist yet.
/// `large` is the size of the large-file check (make it cross the
/// backend's multipart/block threshold where it has one).
pub fn check_all(backend: &dyn Backend, large: usize) {
    check_fresh_repository(backend);
    check_write_list_stat(backend);
    check_reads(backend);
    check_remove(backend);
    check_large_file(backend, large);
    check_concurrent_writers(backend);
}

/// `create` works once; everything lists empty; a missing file is NotFound.
pub fn check_fresh_repository(backend: &dyn Backend) {
    backend.create().expect("create a fresh repository");
    for t in FileType::ALL {
        assert_eq!(backend.list(t).expect("list"), Vec::new(), "{t} is empty");
    }
    let missing = id(0xdead);
    assert!(matches!(
        backend.stat(FileType::Config, "config"),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        backend.stat(FileType::Pack, &missing),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        backend.read(FileType::Index, &missing),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        backend.read_range(FileType::Pack, &missing, 0, 10),
        Err(BackendError::NotFound { .. })
    ));
}

/// Files of every type show up in `list` right after `write`, with sizes.
pub fn check_write_list_stat(backend: &dyn Backend) {
    backend
        .write(FileType::Config, "config", b"config-bytes")
        .expect("write config");
    let mut expected: BTreeMap<FileType, Vec<(String, u64)>> = BTreeMap::new();
    for (i, t) in [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
        FileType::Pack,
    ]
    .into_iter()
    .enumerate()
    {
        for j in 0..3u64 {
            let name = id(((i as u64) << 8) | j);
            let data = pseudo_random_bytes(j + 7, 100 + 37 * j as usize);
            backend.write(t, &name, &data).expect("write");
            expected
                .entry(t)
                .or_default()
                .push((name, data.len() as u64));
        }
    }
    let config = backend.list(FileType::Config).expect("list config");
    assert_eq!(config.len(), 1);
    assert_eq!(config[0].name, "config");
    assert_eq!(config[0].size, 12);
    for (t, mut files) in expected {
        let mut listed: Vec<(String, u64)> = backend
            .list(t)
            .expect("list")
            .into_iter()
            .map(|f| (f.name, f.size))
            .collect();
        listed.sort();
        files.sort();
        assert_eq!(listed, files, "list {t} after write");
        for (name, size) in files {
            let info = backend.stat(t, &name).expect("stat");
            assert_eq!((info.name, info.size), (name, size));
        }
    }
    assert!(matches!(
        backend.create(),
        Err(BackendError::AlreadyExists { .. })
    ));
}

/// Whole reads, ranges inside, at the end and past the end, zero lengths.
pub fn check_reads(backend: &dyn Backend) {
    let name = id(0x5eed);
    let data = pseudo_random_bytes(99, 70_000);
    backend.write(FileType::Pack, &name, &data).expect("write");
    assert_eq!(backend.read(FileType::Pack, &name).expect("read"), data);
    assert_eq!(
        backend
            .read(FileType::Config, "config")
            .expect("read config"),
        b"config-bytes"
    );
    for (offset, length) in [(0u64, 1u64), (1, 100), (65_000, 5_000), (69_999, 1)] {
        let got = backend
            .read_range(FileType::Pack, &name, offset, length)
            .expect("read_range");
        assert_eq!(
            got,
            &data[offset as usize..(offset + length) as usize],
            "range {offset}+{length}"
        );
    }
    assert!(backend
        .read_range(FileType::Pack, &name, 10, 0)
        .expect("zero length")
        .is_empty());
    for (offset, length) in [(69_990u64, 20u64), (80_000, 10)] {
        match backend.read_range(FileType::Pack, &name, offset, length) {
            Err(BackendError::ShortRead { wanted, got, .. }) => {
                assert_eq!(wanted, length);
                assert!(got < length);
            }
            other => panic!("range {offset}+{length} past the end: {other:?}"),
        }
    }
}

/// Removed files are gone; removing or reading them again is NotFound.
pub fn check_remove(backend: &dyn Backend) {
    let name = id(0x5eed);
    backend.remove(FileType::Pack, &name).expect("remove");
    assert!(matches!(
        backend.stat(FileType::Pack, &name),
        Err(BackendError::NotFound { .. })
    ));
    assert!(!backend
        .list(FileType::Pack)
        .expect("list")
        .iter()
        .any(|f| f.name == name));
    assert!(matches!(
        backend.remove(FileType::Pack, &name),
        Err(BackendError::NotFound { .. })
    ));
    backend
        .remove(FileType::Lock, &id(0x300))
        .expect("remove lock");
    assert_eq!(backend.list(FileType::Lock).expect("list").len(), 2);
}

/// A file of `size` bytes goes up and comes back intact, whole and in parts.
pub fn check_large_file(backend: &dyn Backend, size: usize) {
    let name = id(0x1a59e);
    let data = pseudo_random_bytes(4242, size);
    backend
        .write(FileType::Pack, &name, &data)
        .expect("write large");
    assert_eq!(
        backend.stat(FileType::Pack, &name).expect("stat").size,
        size as u64
    );
    let back = backend.read(FileType::Pack, &name).expect("read large");
    assert!(back == data, "large file came back changed");
    let middle = (size / 2) as u64;
    assert_eq!(
        backend
            .read_range(FileType::Pack, &name, middle, 1 << 16)
            .expect("range of large"),
        &data[middle as usize..middle as usize + (1 << 16)]
    );
}

/// Eight threads write four files each at once; all 32 are listed and read
/// back intact.
pub fn check_concurrent_writers(backend: &dyn Backend) {
    let before = backend.list(FileType::Index).expect("list").len();
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            scope.spawn(move || {
                for k in 0..4u64 {
                    let n = 0x10_000 + thread * 16 + k;
                    let data = pseudo_random_bytes(n, 20_000 + k as usize);
                    backend
                        .write(FileType::Index, &id(n), &data)
                        .expect("concurrent write");
                }
            });
        }
    });
    let listed = backend.list(FileType::Index).expect("list");
    assert_eq!(listed.len(), before + 32);
    for thread in 0..8u64 {
        for k in 0..4u64 {
            let n = 0x10_000 + thread * 16 + k;
            assert_eq!(
                backend.read(FileType::Index, &id(n)).expect("read back"),
                pseudo_random_bytes(n, 20_000 + k as usize)
            );
        }
    }
}

/// With the server gone (`stop` ran), operations fail with a transient
/// error ([`BackendError::Io`], which the retry layer retries) naming the
/// file; once `start` brought it back, the same backend works again.
pub fn check_transient_while_down(
    backend: &dyn Backend,
    stop: &mut dyn FnMut(),
    start: &mut dyn FnMut(),
) {
    let name = id(0x7777);
    stop();
    match backend.write(FileType::Snapshot, &name, b"while down") {
        Err(BackendError::Io { path, .. }) => {
            assert!(path.contains(&name), "the error names the file: {path}")
        }
        other => panic!("write while the server is down: {other:?}"),
    }
    assert!(
        matches!(
            backend.stat(FileType::Snapshot, &name),
            Err(BackendError::Io { .. })
        ),
        "stat while down is transient, not NotFound"
    );
    start();
    backend
        .write(FileType::Snapshot, &name, b"after restart")
        .expect("write after the server came back");
    assert_eq!(
        backend.read(FileType::Snapshot, &name).expect("read"),
        b"after restart"
    );
}
