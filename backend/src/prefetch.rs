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
//! - **Snapshots and index listed only after our lock.** What a backup decides
//!   from the index (which blobs exist) must not come from a listing taken
//!   before the lock protects it: a `prune` that finishes between such a
//!   listing and our lock could have deleted packs that the listing's index
//!   files still name. Listings that are planned
//!   [`PrefetchPlan::after_lock`] start only when a lock file was written
//!   through this backend; anything that prune finished before then is
//!   already gone from them, and a prune that overlaps our lock is caught by
//!   the lock check itself.
//!   Snapshot files are *read* while the lock is being taken
//!   ([`Prefetch::ReadAhead`]), but what was read is served only for the
//!   files that the listing under the lock names: content never changes,
//!   existence may (a `forget` in between).
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
    /// Read every file of a listing taken now, but serve neither the listing
    /// nor any content until a later listing of the type (one planned
    /// [`PrefetchPlan::after_lock`]) names the file: content is immutable,
    /// so a file read before the lock is the same bytes after it, and the
    /// listing taken under the lock still decides which files exist.
    ReadAhead(FileType),
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
        // The snapshot files are read while the lock is taken; the listing
        // under the lock says which of them count (Prefetch::ReadAhead).
        plan.at_open.push(Prefetch::ReadAhead(FileType::Snapshot));
        plan.after_lock = later;
    } else {
        plan.at_open.extend(later);
    }
    plan
}

impl PrefetchPlan {
    /// Also read the key file `name` at once, beside the key listing: the
    /// key that opened the repository last time (the CLI remembers it), so
    /// the common open needs the listing's round trips only, not the
    /// listing's and then the read's. A hint and no more: the listing still
    /// decides which key files exist, and a file of another name is not
    /// read ahead.
    pub fn with_key_read(mut self, name: &str) -> PrefetchPlan {
        if crate::is_id_name(name) {
            self.at_open
                .push(Prefetch::Read(FileType::Key, name.to_string()));
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    List(FileType),
    Read(FileType, String),
    /// The listing of a [`Prefetch::ReadAhead`]; never served.
    ReadAhead(FileType),
}

impl Key {
    fn file_type(&self) -> FileType {
        match self {
            Key::List(t) | Key::Read(t, _) | Key::ReadAhead(t) => *t,
        }
    }
}

impl State {
    /// Mark the reads of `names` pending unless they are pending or done
    /// already; the names to read. A voided read is read again.
    fn claim_reads(&mut self, t: FileType, names: Vec<String>) -> Vec<String> {
        let mut fresh = Vec::with_capacity(names.len());
        for name in names {
            let read = Key::Read(t, name.clone());
            let wanted = match self.entries.get(&read) {
                None | Some(Entry::Void) => true,
                Some(_) => false,
            };
            if wanted {
                self.entries.insert(read, Entry::Pending);
                fresh.push(name);
            }
        }
        fresh
    }

    /// A listing of type `t` taken under the lock arrived: read-ahead
    /// contents of files it names may be served from now on, the others
    /// (removed since they were read) never.
    fn confirm(&mut self, t: FileType, files: &[FileInfo]) {
        let named: std::collections::HashSet<&str> =
            files.iter().map(|f| f.name.as_str()).collect();
        let mut gone = Vec::new();
        self.unconfirmed.retain(|key| match key {
            Key::Read(kt, name) if *kt == t => {
                if !named.contains(name.as_str()) {
                    gone.push(key.clone());
                }
                false
            }
            _ => true,
        });
        for key in gone {
            self.entries.insert(key, Entry::Void);
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
    /// Reads started by [`Prefetch::ReadAhead`] that no listing taken
    /// since has named: not served (waiting or void).
    unconfirmed: std::collections::HashSet<Key>,
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
                Prefetch::ReadAhead(t) => Key::ReadAhead(*t),
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
                    Ok(files) => {
                        self.lock().confirm(t, &files);
                        Entry::Listed(files)
                    }
                    Err(_) => Entry::Void,
                };
                self.answer(&key, entry);
            }
            Prefetch::ReadAhead(t) => {
                let Ok(files) = self.inner.list(t) else {
                    self.answer(&key, Entry::Void);
                    return;
                };
                let names: Vec<String> = files
                    .into_iter()
                    .take(MAX_READ_AHEAD)
                    .map(|f| f.name)
                    .collect();
                let fresh = {
                    let mut state = self.lock();
                    let fresh = state.claim_reads(t, names);
                    for name in &fresh {
                        state.unconfirmed.insert(Key::Read(t, name.clone()));
                    }
                    fresh
                };
                self.answer(&key, Entry::Void);
                self.read_all(t, fresh);
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
                // A file already asked for on its own (the key file named
                // in the plan, a read ahead) is not read a second time.
                let fresh = {
                    let mut state = self.lock();
                    let listed_still_wanted =
                        matches!(state.entries.get(&key), Some(Entry::Pending));
                    if !listed_still_wanted {
                        return;
                    }
                    state.confirm(t, &files);
                    state.entries.insert(key.clone(), Entry::Listed(files));
                    state.claim_reads(t, names)
                };
                self.answered.notify_all();
                self.read_all(t, fresh);
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
        let mine: Vec<Key> = names.iter().map(|n| Key::Read(t, n.clone())).collect();
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
        for handle in handles {
            let _ = handle.join();
        }
        // Anything no worker reached (no thread could start, a panic) must
        // not stay pending; other reads of the type are not ours to touch.
        let mut state = self.lock();
        for key in &mine {
            if let Some(entry) = state.entries.get_mut(key) {
                if matches!(entry, Entry::Pending) {
                    *entry = Entry::Void;
                }
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
        state.unconfirmed.retain(|key| key.file_type() != t);
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
                unconfirmed: Default::default(),
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
        if state.unconfirmed.contains(&key) {
            return None;
        }
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
    fn a_named_key_is_read_at_once_and_only_once() {
        let k1 = "1".repeat(64);
        let k2 = "2".repeat(64);
        let gone = "3".repeat(64);
        let inner = Counting::with(&[
            (FileType::Config, "config", b"cfg"),
            (FileType::Key, &k1, b"key one"),
            (FileType::Key, &k2, b"key two"),
        ]);
        let plan = repository_open_plan(true).with_key_read(&k2);
        let backend = Prefetching::start(inner.clone(), plan);
        assert_eq!(backend.list(FileType::Key).unwrap().len(), 2);
        assert_eq!(backend.read(FileType::Key, &k2).unwrap(), b"key two");
        assert_eq!(backend.read(FileType::Key, &k1).unwrap(), b"key one");
        assert_eq!(
            inner.count(&format!("read key {k2}")),
            1,
            "not read again after the listing"
        );
        assert_eq!(inner.count(&format!("read key {k1}")), 1);
        // A name that is no ID is not read ahead; a key that is gone fails
        // as it would without the plan (its failed read is not served).
        let plan = repository_open_plan(true)
            .with_key_read("k9")
            .with_key_read(&gone);
        let backend = Prefetching::start(inner.clone(), plan);
        assert!(backend.read(FileType::Key, &gone).is_err());
        assert_eq!(inner.count("read key k9"), 0);
        assert_eq!(inner.count(&format!("read key {gone}")), 2);
    }

    #[test]
    fn snapshots_and_index_wait_for_the_lock() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        backend.read(FileType::Config, "config").unwrap();
        assert_eq!(inner.count("list index"), 0);
        backend.write(FileType::Lock, "l1", b"lock").unwrap();
        assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 1);
        assert_eq!(backend.read(FileType::Snapshot, "s1").unwrap(), b"snap");
        assert_eq!(backend.list(FileType::Index).unwrap().len(), 1);
        assert_eq!(
            inner.count("read snapshot s1"),
            1,
            "read ahead or after the lock, once"
        );
        assert_eq!(inner.count("list index"), 1);
    }

    #[test]
    fn snapshots_read_before_the_lock_count_only_when_listed_under_it() {
        let inner = Counting::with(&[
            (FileType::Config, "config", b"cfg"),
            (FileType::Snapshot, "kept", b"kept"),
            (FileType::Snapshot, "forgotten", b"forgotten"),
        ]);
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        // The read-ahead finishes before the lock; until a listing under
        // the lock names them, nothing it read is served.
        drop(backend.shared.settled(&Key::ReadAhead(FileType::Snapshot)));
        drop(
            backend
                .shared
                .settled(&Key::Read(FileType::Snapshot, "kept".into())),
        );
        drop(
            backend
                .shared
                .settled(&Key::Read(FileType::Snapshot, "forgotten".into())),
        );
        assert_eq!(inner.count("read snapshot forgotten"), 1);
        assert!(backend.prefetched(FileType::Snapshot, "kept").is_none());
        // A `forget` elsewhere removes one, a backup adds another.
        inner.remove(FileType::Snapshot, "forgotten").unwrap();
        inner.write(FileType::Snapshot, "new", b"new").unwrap();
        backend.write(FileType::Lock, "l1", b"lock").unwrap();
        let mut names: Vec<String> = backend
            .list(FileType::Snapshot)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        names.sort();
        assert_eq!(names, ["kept", "new"]);
        assert_eq!(backend.read(FileType::Snapshot, "kept").unwrap(), b"kept");
        assert_eq!(backend.read(FileType::Snapshot, "new").unwrap(), b"new");
        assert!(backend
            .read(FileType::Snapshot, "forgotten")
            .unwrap_err()
            .is_not_found());
        assert!(backend.stat(FileType::Snapshot, "forgotten").is_err());
        assert_eq!(
            inner.count("read snapshot kept"),
            1,
            "read once, before the lock"
        );
        assert_eq!(inner.count("read snapshot new"), 1);
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
        drop(backend.shared.settled(&Key::ReadAhead(FileType::Snapshot)));
        backend.write(FileType::Lock, "l1", b"lock").unwrap();
        // Wait for the after-lock listing without taking it.
        drop(backend.shared.settled(&Key::List(FileType::Snapshot)));
        drop(backend.shared.settled(&Key::List(FileType::Index)));
        backend.remove(FileType::Lock, "l1").unwrap();
        backend.write(FileType::Lock, "l2", b"lock").unwrap();
        backend.list(FileType::Snapshot).unwrap();
        backend.list(FileType::Index).unwrap();
        // The read-ahead's listing, the one under l1, the one under l2.
        assert_eq!(inner.count("list snapshot"), 3);
        assert_eq!(inner.count("list index"), 2);
    }

    #[test]
    fn ordered_writes_void_what_they_write_and_a_lock_starts_the_rest() {
        let inner = repo();
        let backend = Prefetching::start(inner.clone(), repository_open_plan(true));
        // Wait for the prefetched lock listing without taking it (and for
        // the snapshot read-ahead, which lists snapshots once more).
        drop(backend.shared.settled(&Key::List(FileType::Lock)));
        drop(backend.shared.settled(&Key::ReadAhead(FileType::Snapshot)));
        backend
            .write_in_order(&[(FileType::Lock, "mine", b"lock")])
            .unwrap();
        assert_eq!(backend.list(FileType::Lock).unwrap().len(), 1);
        assert_eq!(inner.count("list lock"), 2, "listed afresh");
        // The lock started the after-lock listings; an ordered write of an
        // index and a snapshot voids both.
        drop(backend.shared.settled(&Key::List(FileType::Snapshot)));
        drop(backend.shared.settled(&Key::List(FileType::Index)));
        assert_eq!(inner.count("list snapshot"), 2);
        backend
            .write_in_order(&[
                (FileType::Index, "i2", b"index two"),
                (FileType::Snapshot, "s2", b"snap two"),
            ])
            .unwrap();
        assert_eq!(backend.list(FileType::Index).unwrap().len(), 2);
        assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 2);
        assert_eq!(inner.count("list index"), 2);
        assert_eq!(inner.count("list snapshot"), 3);
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
