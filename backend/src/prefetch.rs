//! Start the first reads and listings of a command at once instead of one
//! after another (issue #20: on a link with a 100 ms round trip, opening a
//! repository took some twenty serial round trips).
//!
//! Opening a repository asks, in this order: the config (stat, read), the
//! key files (list, read), the locks (list, write our own, list again), then
//! the snapshots and the index (list, read). Each answer is known in advance
//! to be needed, so [`Prefetching::start`] sends them all off on threads of
//! their own as soon as the backend is open, and the calls that ask for them
//! later wait for (or take) what already came back.
//!
//! What makes a prefetched answer as good as asking at the moment of the
//! call:
//!
//! - **Invalidation.** A `write` or `remove` of a file type through this
//!   backend voids every prefetched answer of that type, finished or not;
//!   the next call asks the backend again. So the lock check that follows
//!   our own lock (restic's re-check, spec §14) always lists afresh.
//! - **Listings are served once.** A second `list` of a type asks the
//!   backend, so a command that lists again to see what changed sees it.
//! - **Contents are immutable.** Files other than `config` are named by the
//!   SHA-256 of their content, and `config` never changes after `init`; a
//!   prefetched read is the same bytes a later read returns, as long as the
//!   file was not removed (which voids it, above). Callers still check the
//!   hash as before.
//! - **Snapshots and index only after our lock.** What a backup decides
//!   from the index (which blobs exist) must not come from a listing taken
//!   before the lock protects it: a `prune` that finishes between such a
//!   listing and our lock could have deleted packs that the listing's index
//!   files still name. Listings that are planned
//!   [`PrefetchPlan::after_lock`] start only when a lock file was written
//!   through this backend; anything that prune finished before then is
//!   already gone from them, and a prune that overlaps our lock is caught by
//!   the lock check itself.
//!   Removing a lock file voids them again: a lock given up after a
//!   conflict (`--retry-lock` then waits and locks anew) must not leave its
//!   listings to the next lock.
//! - **Errors are not served.** A prefetch that failed leaves the call to
//!   ask the backend itself, so the error it reports is its own.
//!
//! The wrapper sits outside [`crate::wrap()`]'s wrappers, so prefetched calls
//! are retried and count against the connection limit like any other.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::{Backend, BackendResult, FileInfo, FileType};

/// Most files of one listing read ahead ([`Prefetch::ListAndRead`]).
const MAX_READ_AHEAD: usize = 4096;

/// One thing to fetch ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefetch {
    /// Read one file (`config`).
    Read(FileType, String),
    /// List the files of a type.
    List(FileType),
    /// List the files of a type, then read each of them (keys, snapshots).
    ListAndRead(FileType),
}

/// What to fetch ahead, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefetchPlan {
    /// Started at once.
    pub at_open: Vec<Prefetch>,
    /// Started when the first lock file is written through the backend
    /// (see the module docs for why snapshots and index wait for it).
    pub after_lock: Vec<Prefetch>,
}

/// What a repository open asks first (see the module docs): the config and
/// the keys at once; the locks at once when the command takes a lock; the
/// snapshots (read) and the index (listed) after the lock is written, or at
/// once when no lock is taken.
pub fn repository_open_plan(takes_lock: bool) -> PrefetchPlan {
    let mut plan = PrefetchPlan {
        at_open: vec![
            Prefetch::Read(FileType::Config, "config".to_string()),
            Prefetch::ListAndRead(FileType::Key),
        ],
        after_lock: Vec::new(),
    };
    let later = vec![
        Prefetch::ListAndRead(FileType::Snapshot),
        Prefetch::List(FileType::Index),
    ];
    if takes_lock {
        plan.at_open.push(Prefetch::List(FileType::Lock));
        plan.after_lock = later;
    } else {
        plan.at_open.extend(later);
    }
    plan
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    List(FileType),
    Read(FileType, String),
}

impl Key {
    fn file_type(&self) -> FileType {
        match self {
            Key::List(t) | Key::Read(t, _) => *t,
        }
    }
}

enum Entry {
    /// Asked; the answer has not come yet.
    Pending,
    Listed(Vec<FileInfo>),
    Read(Arc<Vec<u8>>),
    /// Voided by a write or remove, consumed (a listing), or failed: the
    /// call asks the backend.
    Void,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// The after-lock plan, until a lock file is written.
    after_lock: Vec<Prefetch>,
}

struct Shared {
    inner: Arc<dyn Backend>,
    state: Mutex<State>,
    answered: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait while `key` is pending; the guard afterwards.
    fn settled(&self, key: &Key) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        while matches!(state.entries.get(key), Some(Entry::Pending)) {
            state = self
                .answered
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state
    }

    /// Store an answer unless the entry was voided meanwhile.
    fn answer(&self, key: &Key, entry: Entry) {
        let mut state = self.lock();
        if let Some(slot) = state.entries.get_mut(key) {
            if matches!(slot, Entry::Pending) {
                *slot = entry;
            }
        }
        drop(state);
        self.answered.notify_all();
    }

    /// Mark `items` pending and start them.
    fn start(self: &Arc<Self>, items: Vec<Prefetch>) {
        let mut state = self.lock();
        for item in items {
            let key = match &item {
                Prefetch::Read(t, name) => Key::Read(*t, name.clone()),
                Prefetch::List(t) | Prefetch::ListAndRead(t) => Key::List(*t),
            };
            if state.entries.contains_key(&key) {
                continue;
            }
            state.entries.insert(key.clone(), Entry::Pending);
            let shared = Arc::clone(self);
            let started = key.clone();
            let spawned = std::thread::Builder::new()
                .name("restix-prefetch".into())
                .spawn(move || shared.run(item, started));
            if spawned.is_err() {
                // No thread: the call asks the backend itself.
                state.entries.insert(key, Entry::Void);
            }
        }
    }

    fn run(self: Arc<Self>, item: Prefetch, key: Key) {
        match item {
            Prefetch::Read(t, name) => self.read_one(t, &name, &key),
            Prefetch::List(t) => {
                let entry = match self.inner.list(t) {
                    Ok(files) => Entry::Listed(files),
                    Err(_) => Entry::Void,
                };
                self.answer(&key, entry);
            }
            Prefetch::ListAndRead(t) => {
                let Ok(files) = self.inner.list(t) else {
                    self.answer(&key, Entry::Void);
                    return;
                };
                // The reads become pending together with the listing's
                // answer, so a caller that takes the listing and then reads
                // finds them (and waits) instead of asking twice.
                let names: Vec<String> = files
                    .iter()
                    .take(MAX_READ_AHEAD)
                    .map(|f| f.name.clone())
                    .collect();
                {
                    let mut state = self.lock();
                    let listed_still_wanted =
                        matches!(state.entries.get(&key), Some(Entry::Pending));
                    if listed_still_wanted {
                        state.entries.insert(key.clone(), Entry::Listed(files));
                        for name in &names {
                            state
                                .entries
                                .entry(Key::Read(t, name.clone()))
                                .or_insert(Entry::Pending);
                        }
                    }
                    if !listed_still_wanted {
                        return;
                    }
                }
                self.answered.notify_all();
                self.read_all(t, names);
            }
        }
    }

    fn read_one(&self, t: FileType, name: &str, key: &Key) {
        let entry = match self.inner.read(t, name) {
            Ok(data) => Entry::Read(Arc::new(data)),
            Err(_) => Entry::Void,
        };
        self.answer(key, entry);
    }

    /// Read `names` with as many threads as the backend has connections.
    fn read_all(self: &Arc<Self>, t: FileType, names: Vec<String>) {
        let queue = Arc::new(Mutex::new(names.into_iter()));
        let workers = self.inner.connections().max(1);
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                let shared = Arc::clone(self);
                let queue = Arc::clone(&queue);
                std::thread::Builder::new()
                    .name("restix-prefetch".into())
                    .spawn(move || loop {
                        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                        let Some(name) = next else { return };
                        let key = Key::Read(t, name.clone());
                        shared.read_one(t, &name, &key);
                    })
                    .ok()
            })
            .collect();
        if handles.is_empty() {
            // No thread could start: void what is pending so nobody waits.
            let mut state = self.lock();
            for (key, entry) in state.entries.iter_mut() {
                if key.file_type() == t && matches!(entry, Entry::Pending) {
                    *entry = Entry::Void;
                }
            }
            drop(state);
            self.answered.notify_all();
        }
        for handle in handles {
            let _ = handle.join();
        }
        // Anything a worker did not reach (a panic) must not stay pending.
        let mut state = self.lock();
        for (key, entry) in state.entries.iter_mut() {
            if key.file_type() == t
                && matches!(key, Key::Read(..))
                && matches!(entry, Entry::Pending)
            {
                *entry = Entry::Void;
            }
        }
        drop(state);
        self.answered.notify_all();
    }

    /// Void every answer about files of type `t` (a write or remove).
    fn void(&self, t: FileType) {
        let mut state = self.lock();
        for (key, entry) in state.entries.iter_mut() {
            if key.file_type() == t {
                *entry = Entry::Void;
            }
        }
        drop(state);
        self.answered.notify_all();
    }
}

/// A backend whose first reads and listings were started ahead (module docs).
pub struct Prefetching {
    shared: Arc<Shared>,
}

impl Prefetching {
    /// Wrap `inner` and start `plan.at_open`.
    pub fn start(inner: Arc<dyn Backend>, plan: PrefetchPlan) -> Prefetching {
        let shared = Arc::new(Shared {
            inner,
            state: Mutex::new(State {
                entries: HashMap::new(),
                after_lock: plan.after_lock,
            }),
            answered: Condvar::new(),
        });
        shared.start(plan.at_open);
        Prefetching { shared }
    }

    fn inner(&self) -> &dyn Backend {
        self.shared.inner.as_ref()
    }

    /// Our lock is written: start what waited for it.
    fn after_lock_written(&self) {
        let later = std::mem::take(&mut self.shared.lock().after_lock);
        if !later.is_empty() {
            self.shared.start(later);
        }
    }

    /// The prefetched content of a file, if it came (waits while pending).
    fn prefetched(&self, t: FileType, name: &str) -> Option<Arc<Vec<u8>>> {
        let key = Key::Read(t, name.to_string());
        let state = self.shared.settled(&key);
        match state.entries.get(&key) {
            Some(Entry::Read(data)) => Some(Arc::clone(data)),
            _ => None,
        }
    }
}

impl Backend for Prefetching {
    fn location(&self) -> String {
        self.inner().location()
    }

    fn create(&self) -> BackendResult<()> {
        self.inner().create()
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        let key = Key::List(file_type);
        let mut state = self.shared.settled(&key);
        if let Some(entry) = state.entries.get_mut(&key) {
            if let Entry::Listed(files) = std::mem::replace(entry, Entry::Void) {
                return Ok(files);
            }
        }
        drop(state);
        self.inner().list(file_type)
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        match self.prefetched(file_type, name) {
            Some(data) => Ok(data.as_ref().clone()),
            None => self.inner().read(file_type, name),
        }
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.inner().read_range(file_type, name, offset, length)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.shared.void(file_type);
        let written = self.inner().write(file_type, name, data);
        if written.is_ok() && file_type == FileType::Lock {
            self.after_lock_written();
        }
        written
    }

    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        for (file_type, _, _) in files {
            self.shared.void(*file_type);
        }
        let written = self.inner().write_in_order(files);
        if written.is_ok() && files.iter().any(|(t, _, _)| *t == FileType::Lock) {
            self.after_lock_written();
        }
        written
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        self.shared.void(file_type);
        if file_type == FileType::Lock {
            // Our lock goes (a conflict found by the re-check, `--retry-lock`
            // waiting for another locker, or the end): what was listed under
            // it may be older than the next lock we take.
            self.shared.void(FileType::Snapshot);
            self.shared.void(FileType::Index);
        }
        self.inner().remove(file_type, name)
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        match self.prefetched(file_type, name) {
            Some(data) => Ok(FileInfo {
                name: name.to_string(),
                size: data.len() as u64,
            }),
            None => self.inner().stat(file_type, name),
        }
    }

    fn connections(&self) -> usize {
        self.inner().connections()
    }

    fn list_after_write_consistent(&self) -> bool {
        self.inner().list_after_write_consistent()
    }

    fn has_flaky_errors(&self) -> bool {
        self.inner().has_flaky_errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendError;
    use std::collections::BTreeMap;

    /// An in-memory backend that counts the calls that reach it.
    #[derive(Default)]
    struct Counting {
        files: Mutex<BTreeMap<(FileType, String), Vec<u8>>>,
        calls: Mutex<Vec<String>>,
    }

    impl Counting {
        fn with(files: &[(FileType, &str, &[u8])]) -> Arc<Counting> {
            let backend = Counting::default();
            for (t, name, data) in files {
                backend
                    .files
                    .lock()
                    .unwrap()
                    .insert((*t, name.to_string()), data.to_vec());
            }
            Arc::new(backend)
        }

        fn count(&self, call: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| *c == call)
                .count()
        }

        fn note(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    fn missing(name: &str) -> BackendError {
        BackendError::NotFound {
            path: name.to_string(),
        }
    }

    impl Backend for Counting {
        fn location(&self) -> String {
            "memory".into()
        }
        fn create(&self) -> BackendResult<()> {
            Ok(())
        }
        fn list(&self, t: FileType) -> BackendResult<Vec<FileInfo>> {
            self.note(format!("list {t}"));
            Ok(self
                .files
                .lock()
                .unwrap()
                .iter()
                .filter(|((ft, _), _)| *ft == t)
                .map(|((_, name), data)| FileInfo {
                    name: name.clone(),
                    size: data.len() as u64,
                })
                .collect())
        }
        fn read(&self, t: FileType, name: &str) -> BackendResult<Vec<u8>> {
            self.note(format!("read {t} {name}"));
            self.files
                .lock()
                .unwrap()
                .get(&(t, name.to_string()))
                .cloned()
                .ok_or_else(|| missing(name))
        }
        fn read_range(&self, t: FileType, name: &str, o: u64, l: u64) -> BackendResult<Vec<u8>> {
            let data = self.read(t, name)?;
            Ok(data[o as usize..(o + l) as usize].to_vec())
        }
        fn write(&self, t: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
            self.note(format!("write {t} {name}"));
            self.files
                .lock()
                .unwrap()
                .insert((t, name.to_string()), data.to_vec());
            Ok(())
        }
        fn remove(&self, t: FileType, name: &str) -> BackendResult<()> {
            self.note(format!("remove {t} {name}"));
            self.files
                .lock()
                .unwrap()
                .remove(&(t, name.to_string()))
                .map(|_| ())
                .ok_or_else(|| missing(name))
        }
        fn stat(&self, t: FileType, name: &str) -> BackendResult<FileInfo> {
            self.note(format!("stat {t} {name}"));
            let size = self
                .files
                .lock()
                .unwrap()
                .get(&(t, name.to_string()))
                .map(|d| d.len() as u64)
                .ok_or_else(|| missing(name))?;
            Ok(FileInfo {
                name: name.to_string(),
                size,
            })
        }
    }

    fn repo() -> Arc<Counting> {
        Counting::with(&[
            (FileType::Config, "config", b"cfg"),
            (FileType::Key, "k1", b"key one"),
            (FileType::Key, "k2", b"key two"),
            (FileType::Snapshot, "s1", b"snap"),
            (FileType::Index, "i1", b"index"),
        ])
    }

    #[test]
    fn the_open_sequence_reaches_the_backend_once_per_file() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        assert_eq!(backend.stat(FileType::Config, "config").unwrap().size, 3);
        assert_eq!(backend.stat(FileType::Config, "config").unwrap().size, 3);
        let keys = backend.list(FileType::Key).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(backend.read(FileType::Key, "k2").unwrap(), b"key two");
        assert_eq!(backend.read(FileType::Config, "config").unwrap(), b"cfg");
        assert!(backend.list(FileType::Lock).unwrap().is_empty());
        assert_eq!(inner.count("stat config config"), 0);
        assert_eq!(inner.count("read config config"), 1);
        assert_eq!(inner.count("list key"), 1);
        assert_eq!(inner.count("read key k2"), 1);
        assert_eq!(inner.count("list lock"), 1);
    }

    #[test]
    fn snapshots_and_index_wait_for_the_lock() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        backend.read(FileType::Config, "config").unwrap();
        assert_eq!(inner.count("list snapshot"), 0);
        assert_eq!(inner.count("list index"), 0);
        backend.write(FileType::Lock, "l1", b"lock").unwrap();
        assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 1);
        assert_eq!(backend.read(FileType::Snapshot, "s1").unwrap(), b"snap");
        assert_eq!(backend.list(FileType::Index).unwrap().len(), 1);
        assert_eq!(inner.count("list snapshot"), 1);
        assert_eq!(inner.count("read snapshot s1"), 1);
        assert_eq!(inner.count("list index"), 1);
    }

    #[test]
    fn without_a_lock_everything_starts_at_once() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(false));
        assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 1);
        assert_eq!(backend.read(FileType::Snapshot, "s1").unwrap(), b"snap");
        assert_eq!(inner.count("list lock"), 0);
        assert_eq!(inner.count("read snapshot s1"), 1);
    }

    #[test]
    fn our_own_lock_voids_the_prefetched_lock_listing() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        // Wait for the prefetched listing without taking it.
        drop(backend.shared.settled(&Key::List(FileType::Lock)));
        backend.write(FileType::Lock, "mine", b"lock").unwrap();
        let locks = backend.list(FileType::Lock).unwrap();
        assert_eq!(locks.len(), 1, "the re-check sees the lock just written");
        assert_eq!(inner.count("list lock"), 2);
    }

    #[test]
    fn listings_are_served_once_and_removals_void_reads() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(false));
        backend.list(FileType::Snapshot).unwrap();
        backend.list(FileType::Snapshot).unwrap();
        assert_eq!(inner.count("list snapshot"), 2);
        assert_eq!(backend.read(FileType::Snapshot, "s1").unwrap(), b"snap");
        backend.remove(FileType::Snapshot, "s1").unwrap();
        assert!(backend
            .read(FileType::Snapshot, "s1")
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn a_lock_given_up_voids_what_was_listed_under_it() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        backend.write(FileType::Lock, "l1", b"lock").unwrap();
        // Wait for the after-lock listing without taking it.
        drop(backend.shared.settled(&Key::List(FileType::Snapshot)));
        drop(backend.shared.settled(&Key::List(FileType::Index)));
        backend.remove(FileType::Lock, "l1").unwrap();
        backend.write(FileType::Lock, "l2", b"lock").unwrap();
        backend.list(FileType::Snapshot).unwrap();
        backend.list(FileType::Index).unwrap();
        assert_eq!(inner.count("list snapshot"), 2);
        assert_eq!(inner.count("list index"), 2);
    }

    #[test]
    fn ordered_writes_void_what_they_write_and_a_lock_starts_the_rest() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        // Wait for the prefetched lock listing without taking it.
        drop(backend.shared.settled(&Key::List(FileType::Lock)));
        backend
            .write_in_order(&[(FileType::Lock, "mine", b"lock")])
            .unwrap();
        assert_eq!(backend.list(FileType::Lock).unwrap().len(), 1);
        assert_eq!(inner.count("list lock"), 2, "listed afresh");
        // The lock started the after-lock listings; an ordered write of an
        // index and a snapshot voids both.
        drop(backend.shared.settled(&Key::List(FileType::Snapshot)));
        drop(backend.shared.settled(&Key::List(FileType::Index)));
        assert_eq!(inner.count("list snapshot"), 1);
        backend
            .write_in_order(&[
                (FileType::Index, "i2", b"index two"),
                (FileType::Snapshot, "s2", b"snap two"),
            ])
            .unwrap();
        assert_eq!(backend.list(FileType::Index).unwrap().len(), 2);
        assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 2);
        assert_eq!(inner.count("list index"), 2);
        assert_eq!(inner.count("list snapshot"), 2);
        assert_eq!(backend.read(FileType::Snapshot, "s2").unwrap(), b"snap two");
        // Keys were not written: their prefetched listing is still served.
        assert_eq!(backend.list(FileType::Key).unwrap().len(), 2);
        assert_eq!(inner.count("list key"), 1);
    }

    #[test]
    fn a_missing_config_is_reported_by_the_backend_itself() {
        let inner = Counting::with(&[]);
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        let err = backend.stat(FileType::Config, "config").unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(inner.count("stat config config"), 1);
    }
}
