//! At most [`Backend::connections`] operations at once (restic's
//! `internal/backend/sema`).
//!
//! The engine runs more workers than the backend has connections (workers
//! also decrypt and hash); this wrapper makes the extra ones wait for a
//! permit instead of piling requests onto the server. Operations on lock
//! files never wait, so a lock can be refreshed or removed while every
//! permit is busy with long uploads (restic does the same).
//!
//! ```
//! use restix_backend::local::LocalBackend;
//! use restix_backend::sema::ConnectionLimited;
//! use restix_backend::Backend;
//! # let dir = std::env::temp_dir().join(format!("restix-sema-doc-{}", std::process::id()));
//! let backend = ConnectionLimited::new(LocalBackend::new(&dir).with_connections(3));
//! assert_eq!(backend.connections(), 3);
//! ```

use std::sync::{Condvar, Mutex, PoisonError};

use crate::{Backend, BackendResult, FileInfo, FileType};

/// A counting semaphore on std primitives (the trait is synchronous).
#[derive(Debug)]
struct Permits {
    total: usize,
    free: Mutex<usize>,
    returned: Condvar,
}

/// Permits (none, one, or several held together), given back on drop.
struct Permit<'a>(Option<&'a Permits>, usize);

impl Permits {
    fn new(count: usize) -> Permits {
        Permits {
            total: count.max(1),
            free: Mutex::new(count.max(1)),
            returned: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        self.acquire_many(1)
    }

    /// `count` permits at once (at most all of them): taken together, so
    /// two callers that each want several never hold part and wait.
    fn acquire_many(&self, count: usize) -> Permit<'_> {
        let count = count.clamp(1, self.total);
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free < count {
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= count;
        Permit(Some(self), count)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(permits) = self.0.take() {
            let mut free = permits.free.lock().unwrap_or_else(PoisonError::into_inner);
            *free += self.1;
            // Waiters may want different counts: let each look.
            permits.returned.notify_all();
        }
    }
}

/// A backend that runs at most `connections()` operations at once.
pub struct ConnectionLimited<B: Backend> {
    inner: B,
    permits: Permits,
}

impl<B: Backend> ConnectionLimited<B> {
    /// Wrap `inner`, allowing `inner.connections()` operations at once.
    pub fn new(inner: B) -> ConnectionLimited<B> {
        let permits = Permits::new(inner.connections());
        ConnectionLimited { inner, permits }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// A permit, except for lock files (they must never wait behind uploads).
    fn permit(&self, file_type: FileType) -> Permit<'_> {
        if file_type == FileType::Lock {
            Permit(None, 0)
        } else {
            self.permits.acquire()
        }
    }
}

impl<B: Backend> Backend for ConnectionLimited<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        let _permit = self.permits.acquire();
        self.inner.create()
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        let _permit = self.permit(file_type);
        self.inner.list(file_type)
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        let _permit = self.permit(file_type);
        self.inner.read(file_type, name)
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let _permit = self.permit(file_type);
        self.inner.read_range(file_type, name, offset, length)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let _permit = self.permit(file_type);
        self.inner.write(file_type, name, data)
    }

    /// One permit per file that the inner backend may upload at once (as
    /// many as a `write` of each would take), none when all are lock files.
    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        let others = files.iter().filter(|(t, _, _)| *t != FileType::Lock);
        let _permit = match others.count() {
            0 => Permit(None, 0),
            n => self.permits.acquire_many(n),
        };
        self.inner.write_in_order(files)
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let _permit = self.permit(file_type);
        self.inner.remove(file_type, name)
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let _permit = self.permit(file_type);
        self.inner.stat(file_type, name)
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts operations in flight and remembers the most at once; each
    /// operation waits until `release` lets it go.
    struct Probe {
        connections: usize,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        gate: Mutex<bool>,
        opened: Condvar,
    }

    impl Probe {
        /// A backend of `connections` whose operations wait for the gate.
        fn new(connections: usize) -> Probe {
            Probe {
                connections,
                in_flight: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                gate: Mutex::new(false),
                opened: Condvar::new(),
            }
        }

        fn op(&self) -> BackendResult<()> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let mut open = self.gate.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            drop(open);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl Backend for Probe {
        fn location(&self) -> String {
            "probe".into()
        }
        fn create(&self) -> BackendResult<()> {
            self.op()
        }
        fn list(&self, _: FileType) -> BackendResult<Vec<FileInfo>> {
            self.op().map(|()| Vec::new())
        }
        fn read(&self, _: FileType, _: &str) -> BackendResult<Vec<u8>> {
            self.op().map(|()| Vec::new())
        }
        fn read_range(&self, _: FileType, _: &str, _: u64, _: u64) -> BackendResult<Vec<u8>> {
            self.op().map(|()| Vec::new())
        }
        fn write(&self, _: FileType, _: &str, _: &[u8]) -> BackendResult<()> {
            self.op()
        }
        fn remove(&self, _: FileType, _: &str) -> BackendResult<()> {
            self.op()
        }
        fn stat(&self, _: FileType, name: &str) -> BackendResult<FileInfo> {
            self.op().map(|()| FileInfo {
                name: name.into(),
                size: 0,
            })
        }
        fn connections(&self) -> usize {
            self.connections
        }
    }

    #[test]
    fn never_more_than_connections_in_flight_and_locks_pass() {
        let backend = Arc::new(ConnectionLimited::new(Probe::new(3)));
        let workers: Vec<_> = (0..10)
            .map(|i| {
                let b = Arc::clone(&backend);
                std::thread::spawn(move || b.write(FileType::Pack, &format!("{i}"), b"x"))
            })
            .collect();
        // Wait until three operations hold all permits; the others queue.
        while backend.inner().in_flight.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        // A lock operation still gets through while every permit is taken.
        let locker = {
            let b = Arc::clone(&backend);
            std::thread::spawn(move || b.write(FileType::Lock, "lock", b"l"))
        };
        while backend.inner().in_flight.load(Ordering::SeqCst) < 4 {
            std::thread::yield_now();
        }
        *backend.inner().gate.lock().unwrap() = true;
        backend.inner().opened.notify_all();
        for w in workers {
            w.join().unwrap().unwrap();
        }
        locker.join().unwrap().unwrap();
        // 3 permits + the lock operation, never more.
        assert_eq!(backend.inner().most.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn an_ordered_write_holds_a_permit_per_file_and_locks_pass() {
        let backend = Arc::new(ConnectionLimited::new(Probe::new(3)));
        let free = |b: &ConnectionLimited<Probe>| *b.permits.free.lock().unwrap();
        let ordered = {
            let b = Arc::clone(&backend);
            std::thread::spawn(move || {
                b.write_in_order(&[
                    (FileType::Index, "i", b"i"),
                    (FileType::Snapshot, "s", b"s"),
                ])
            })
        };
        while backend.inner().in_flight.load(Ordering::SeqCst) < 1 {
            std::thread::yield_now();
        }
        assert_eq!(free(&backend), 1, "two of three permits held");
        // Lock files take none, also in an ordered write.
        let locker = {
            let b = Arc::clone(&backend);
            std::thread::spawn(move || b.write_in_order(&[(FileType::Lock, "l", b"l")]))
        };
        while backend.inner().in_flight.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        assert_eq!(free(&backend), 1);
        *backend.inner().gate.lock().unwrap() = true;
        backend.inner().opened.notify_all();
        ordered.join().unwrap().unwrap();
        locker.join().unwrap().unwrap();
        assert_eq!(free(&backend), 3, "all given back");
        // More files than permits take all of them, and do not wait forever.
        let many: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let files: Vec<(FileType, &str, &[u8])> = many
            .iter()
            .map(|n| (FileType::Pack, n.as_str(), &b"p"[..]))
            .collect();
        backend.write_in_order(&files).unwrap();
        assert_eq!(free(&backend), 3);
    }
}
