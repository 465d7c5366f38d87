//! The shared half of random access: a byte-bounded LRU cache of decrypted
//! data blobs and the loader threads that fill it.
//!
//! Hand-written rather than taken from an LRU crate because the cache has
//! to do two things those do not: bound itself by bytes (blobs range from a
//! few bytes to 8 MiB) and know which blobs are being loaded right now, so
//! that a reader wanting a blob a loader is already fetching waits for that
//! load instead of starting a second one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use restix_repo_format::{BlobType, Id};

use super::VfsError;
use crate::repository::Repository;

/// Default size of the blob cache: 128 MiB (restic's mount uses 64 MiB;
/// image blocks of a few MiB and a readahead window need more room).
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// Loads queued per loader thread before prefetches are dropped.
const QUEUE_PER_LOADER: usize = 4;

/// Counters of a [`BlobSource`], for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache (or by waiting for a load in flight).
    pub hits: u64,
    /// Blobs loaded from the repository (foreground and prefetch).
    pub loads: u64,
    /// Of those, loads started by readahead or a multi-blob read.
    pub prefetches: u64,
    /// Bytes of decrypted blobs held now.
    pub bytes: u64,
}

struct CachedBlob {
    data: Arc<Vec<u8>>,
    tick: u64,
}

#[derive(Default)]
struct CacheState {
    blobs: HashMap<Id, CachedBlob>,
    /// Use order: tick → blob; the smallest tick is evicted first.
    order: BTreeMap<u64, Id>,
    bytes: u64,
    tick: u64,
    /// Blobs a thread is loading now; waiters sleep on `Shared::loaded`.
    loading: HashSet<Id>,
}

impl CacheState {
    fn touch(&mut self, id: &Id) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let blob = self.blobs.get_mut(id)?;
        self.order.remove(&blob.tick);
        blob.tick = tick;
        self.order.insert(tick, *id);
        Some(Arc::clone(&blob.data))
    }

    fn insert(&mut self, id: Id, data: Arc<Vec<u8>>, capacity: u64) {
        let len = data.len() as u64;
        if len > capacity || self.blobs.contains_key(&id) {
            return;
        }
        while self.bytes + len > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(old) = self.blobs.remove(&oldest) {
                self.bytes -= old.data.len() as u64;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, id);
        self.blobs.insert(
            id,
            CachedBlob {
                data,
                tick: self.tick,
            },
        );
        self.bytes += len;
    }
}

/// What the caller and the loader threads share.
struct Shared {
    repo: Arc<Repository>,
    capacity: u64,
    state: Mutex<CacheState>,
    loaded: Condvar,
    hits: AtomicU64,
    loads: AtomicU64,
    prefetches: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // A panic while holding the lock cannot leave the cache
        // inconsistent in a way reads care about: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Load `id` (already marked as loading) and publish the result.
    fn load_marked(&self, id: &Id) -> Result<Arc<Vec<u8>>, VfsError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let result = self.repo.load_blob(BlobType::Data, id).map(Arc::new);
        let mut state = self.lock();
        state.loading.remove(id);
        if let Ok(data) = &result {
            state.insert(*id, Arc::clone(data), self.capacity);
        }
        drop(state);
        self.loaded.notify_all();
        Ok(result?)
    }
}

/// The blob cache and loader threads of one repository, shared by every
/// [`FileReader`](super::FileReader) opened from it. Dropping the last handle stops the
/// loaders once their current load is done.
pub struct BlobSource {
    shared: Arc<Shared>,
    queue: SyncSender<Id>,
    loaders: usize,
}

impl std::fmt::Debug for BlobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSource")
            .field("capacity", &self.shared.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlobSource {
    /// A cache of at most `cache_bytes` decrypted bytes, with `loaders`
    /// threads (at least one) for loads ahead of the reader. The index must
    /// be loaded.
    pub fn new(repo: Arc<Repository>, cache_bytes: u64, loaders: usize) -> Arc<BlobSource> {
        let loaders = loaders.max(1);
        let shared = Arc::new(Shared {
            repo,
            capacity: cache_bytes,
            state: Mutex::new(CacheState::default()),
            loaded: Condvar::new(),
            hits: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
        });
        let (queue, jobs) = sync_channel::<Id>(loaders * QUEUE_PER_LOADER);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..loaders {
            let shared = Arc::clone(&shared);
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("restix-blob-{n}"))
                .spawn(move || run_loader(&shared, &jobs));
            // Without threads, reads still work: every load then happens in
            // the foreground (prefetches find the queue full and are dropped).
            drop(spawned);
        }
        Arc::new(BlobSource {
            shared,
            queue,
            loaders,
        })
    }

    /// The repository blobs are loaded from.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.shared.repo
    }

    /// Number of loader threads.
    pub fn loaders(&self) -> usize {
        self.loaders
    }

    /// Cache size in bytes.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Counters since creation.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.shared.hits.load(Ordering::Relaxed),
            loads: self.shared.loads.load(Ordering::Relaxed),
            prefetches: self.shared.prefetches.load(Ordering::Relaxed),
            bytes: self.shared.lock().bytes,
        }
    }

    /// A data blob: from the cache, from a load in flight, or loaded now.
    pub fn get(&self, id: &Id) -> Result<Arc<Vec<u8>>, VfsError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(data) = state.touch(id) {
                self.shared.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(data);
            }
            if !state.loading.contains(id) {
                break;
            }
            // Someone loads it: wait, then look again (a failed load leaves
            // nothing behind, and this thread then loads it itself).
            state = self
                .shared
                .loaded
                .wait_while(state, |s| s.loading.contains(id))
                .unwrap_or_else(|e| e.into_inner());
        }
        state.loading.insert(*id);
        drop(state);
        self.shared.load_marked(id)
    }

    /// Queue a load of `id` on a loader thread unless it is cached or
    /// loading. Returns false when the queue is full (nothing queued).
    pub fn prefetch(&self, id: &Id) -> bool {
        let mut state = self.shared.lock();
        if state.blobs.contains_key(id) || state.loading.contains(id) {
            return true;
        }
        match self.queue.try_send(*id) {
            Ok(()) => {
                state.loading.insert(*id);
                self.shared.prefetches.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Whether `id` is cached now (tests and benchmarks).
    pub fn is_cached(&self, id: &Id) -> bool {
        self.shared.lock().blobs.contains_key(id)
    }
}

/// A loader thread: load queued blobs into the cache until the queue closes.
fn run_loader(shared: &Shared, jobs: &Mutex<Receiver<Id>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(id) = next else {
            return;
        };
        // A failed prefetch is not reported: the reader that needs the
        // blob loads it again and sees the error.
        let _ = shared.load_marked(&id);
    }
}
