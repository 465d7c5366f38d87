//! Tree packs kept whole, so that loading trees costs one download per
//! pack instead of one ranged read per tree (issue #20: two round trips
//! each over SFTP; restore and a backup with a parent read one tree level
//! after another).
//!
//! With a cache folder the packs live in restic's local cache, in restic's
//! layout (restic 0.18.1 internal/backend/cache: `cache.go`, `file.go`,
//! `backend.go`), so that restic and restix share it:
//!
//! - `<base>/CACHEDIR.TAG` (mode 0644, written once), `<base>/<repo-id>/`
//!   (0700) holding `version` (`1`, 0644) and the folders `data`, `index`,
//!   `snapshots` (0700);
//! - a pack in `<base>/<repo-id>/data/<first two hex>/<pack-id>` (folder
//!   0700, file 0600), written to a `tmp-` file in the same folder and
//!   renamed into place, so concurrent processes never see half a file;
//! - restic caches the packs of metadata (tree) blobs, when it loads such a
//!   blob and when it writes such a pack; restix does the same;
//! - files of packs that the loaded index no longer lists are removed
//!   (restic's `prepareCache` and `Cache.Clear` after loading the index),
//!   and a removed pack's file goes with it (`Backend.Remove`).
//!
//! A cached file is never trusted: every blob read from it is checked by
//! its caller (MAC, ID), a failure removes the file (restic's `Forget`),
//! and a pack is cached only if sha256 of its content is its ID. A pack is
//! forgotten at most once per process and then read anew; a second failure
//! leaves that pack to ranged reads (restic's circuit breaker).
//!
//! Without a cache folder (`--no-cache`) the last few tree packs are kept in
//! memory instead (at most [`MEMORY_BUDGET`] bytes), so one process still
//! fetches each tree pack once.
//!
//! Packs larger than [`MAX_CACHED_PACK`] (only a `--pack-size` above 64 MiB
//! writes those) are not fetched whole: their trees are read by range.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use restix_repo_format::crypto::CRYPTO_OVERHEAD;
use restix_repo_format::Id;
use sha2::{Digest, Sha256};

use super::index::BlobLocation;
use crate::backend::{Backend, FileType};

/// The largest pack fetched whole into the cache folder.
pub(crate) const MAX_CACHED_PACK: u64 = 64 << 20;
/// Bytes of whole packs kept in memory without a cache folder; also the
/// largest pack fetched whole then.
pub(crate) const MEMORY_BUDGET: u64 = 32 << 20;

/// restic's cache layout version (`cacheVersion`).
const CACHE_VERSION: u32 = 1;
/// restic's `cachedirTagSignature` (the CACHEDIR.TAG standard).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n";
/// Folders restic creates in a repository's cache folder.
const LAYOUT: [&str; 3] = ["data", "index", "snapshots"];

use crate::poison::lock;

/// Why the cache folder could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PackCacheError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The folder was written by a newer restic.
    #[error("cache version is newer")]
    NewerVersion,
    /// The `version` file does not hold a number.
    #[error("{path}: invalid cache version")]
    InvalidVersion {
        /// The file.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PackCacheError + '_ {
    move |source| PackCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn private_dir() -> DirBuilder {
    let mut b = DirBuilder::new();
    b.mode(0o700);
    b
}

/// A repository's folder in restic's cache.
#[derive(Debug, Clone)]
pub(crate) struct DiskPacks {
    /// `<base>/<repo-id>`.
    dir: PathBuf,
}

impl DiskPacks {
    /// Opens (creating what is missing, like restic's `cache.New`) the
    /// cache folder of repository `repo_id` under `base`, and marks it used
    /// now (restic's `updateTimestamp`, so `cache --cleanup` keeps it).
    pub(crate) fn open(base: &Path, repo_id: &str) -> Result<DiskPacks, PackCacheError> {
        private_dir()
            .recursive(true)
            .create(base)
            .map_err(io_error(base))?;
        let tag = base.join("CACHEDIR.TAG");
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tag)
        {
            Ok(mut f) => f
                .write_all(CACHEDIR_TAG.as_bytes())
                .map_err(io_error(&tag))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&tag)(e)),
        }
        let dir = base.join(repo_id);
        let version_file = dir.join("version");
        let version = match std::fs::read_to_string(&version_file) {
            Ok(text) => {
                let v: u32 = text
                    .trim()
                    .parse()
                    .map_err(|_| PackCacheError::InvalidVersion {
                        path: version_file.clone(),
                    })?;
                if v > CACHE_VERSION {
                    return Err(PackCacheError::NewerVersion);
                }
                let now = std::time::SystemTime::now();
                File::open(&dir)
                    .and_then(|d| {
                        d.set_times(
                            std::fs::FileTimes::new()
                                .set_modified(now)
                                .set_accessed(now),
                        )
                    })
                    .map_err(io_error(&dir))?;
                v
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match private_dir().create(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(&dir)(e)),
                }
                0
            }
            Err(e) => return Err(io_error(&version_file)(e)),
        };
        if version < CACHE_VERSION {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&version_file)
                .map_err(io_error(&version_file))?;
            f.write_all(CACHE_VERSION.to_string().as_bytes())
                .map_err(io_error(&version_file))?;
        }
        for sub in LAYOUT {
            let path = dir.join(sub);
            private_dir()
                .recursive(true)
                .create(&path)
                .map_err(io_error(&path))?;
        }
        Ok(DiskPacks { dir })
    }

    /// `<repo-id>/data/<first two hex>/<pack-id>` (restic's `filename`).
    pub(crate) fn path(&self, pack: &Id) -> PathBuf {
        let hex = pack.to_hex();
        self.dir
            .join("data")
            .join(hex.get(..2).unwrap_or_default())
            .join(hex)
    }

    /// `length` bytes at `offset` of a cached pack; `None` when the pack is
    /// not cached. A file too short for the range (or for any pack) is an
    /// error, as in restic's `Cache.load`.
    fn read(&self, pack: &Id, offset: u64, length: u64) -> std::io::Result<Option<Vec<u8>>> {
        let file = match File::open(self.path(pack)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        if size <= CRYPTO_OVERHEAD as u64 || size < offset.saturating_add(length) {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "cached pack is too short",
            ));
        }
        let len = usize::try_from(length).map_err(|_| ErrorKind::InvalidInput)?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(Some(buf))
    }

    /// Stores a pack: written to a temporary file beside its final name,
    /// then renamed (restic's `Cache.save`).
    pub(crate) fn store(&self, pack: &Id, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(pack);
        let Some(folder) = path.parent() else {
            return Err(ErrorKind::InvalidInput.into());
        };
        match private_dir().create(folder) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut suffix = [0u8; 8];
        restix_repo_format::random_bytes(&mut suffix);
        let tmp = folder.join(format!("tmp-{}", u64::from_le_bytes(suffix)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes a cached pack (absent is fine).
    pub(crate) fn remove(&self, pack: &Id) {
        let _ = std::fs::remove_file(self.path(pack));
    }

    /// The packs cached (files named by an ID under `data/`; restic's `list`).
    pub(crate) fn list(&self) -> Vec<Id> {
        let mut found = Vec::new();
        let Ok(folders) = std::fs::read_dir(self.dir.join("data")) else {
            return found;
        };
        for folder in folders.flatten() {
            let Ok(files) = std::fs::read_dir(folder.path()) else {
                continue;
            };
            for file in files.flatten() {
                let is_file = file.file_type().is_ok_and(|t| t.is_file());
                let name = file.file_name();
                let name = name.to_str().unwrap_or_default();
                if let (true, Ok(id)) = (is_file, Id::from_hex(name)) {
                    found.push(id);
                } else if is_file && name.starts_with("tmp-") && is_stale(&file.path()) {
                    // Left by a process that ended while writing (a pack
                    // fetched ahead when the command finished).
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
        found
    }
}

/// A temporary file older than this is left over, not being written.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(3600);

fn is_stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMPORARY)
}

/// Whole packs in memory, least recently used dropped first.
#[derive(Debug, Default)]
struct MemoryPacks {
    packs: VecDeque<(Id, Arc<Vec<u8>>)>,
    bytes: u64,
}

impl MemoryPacks {
    fn get(&mut self, pack: &Id) -> Option<Arc<Vec<u8>>> {
        let at = self.packs.iter().position(|(id, _)| id == pack)?;
        let entry = self.packs.remove(at)?;
        let bytes = Arc::clone(&entry.1);
        self.packs.push_back(entry);
        Some(bytes)
    }

    fn insert(&mut self, pack: Id, bytes: Arc<Vec<u8>>, budget: u64) {
        self.remove(&pack);
        let len = bytes.len() as u64;
        if len > budget {
            return;
        }
        while self.bytes + len > budget {
            match self.packs.pop_front() {
                Some((_, old)) => self.bytes -= old.len() as u64,
                None => break,
            }
        }
        self.bytes += len;
        self.packs.push_back((pack, bytes));
    }

    fn remove(&mut self, pack: &Id) {
        if let Some(at) = self.packs.iter().position(|(id, _)| id == pack) {
            if let Some((_, old)) = self.packs.remove(at) {
                self.bytes -= old.len() as u64;
            }
        }
    }
}

/// Where a blob's ciphertext came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A pack cached before (on disk or in memory): may be damaged.
    Kept,
    /// The pack just downloaded, its content matching its ID.
    Fetched,
}

/// The tree pack cache of one repository (see the module docs).
#[derive(Debug)]
pub(crate) struct TreePackCache {
    disk: Mutex<Option<DiskPacks>>,
    memory: Mutex<MemoryPacks>,
    memory_budget: u64,
    max_pack: u64,
    /// One lock per pack being fetched: a second loader waits for the
    /// first instead of downloading it too (restic's `inProgress`).
    fetching: Mutex<HashMap<Id, Arc<Mutex<()>>>>,
    /// Packs whose cached copy failed a check once in this process.
    forgotten: Mutex<HashSet<Id>>,
    /// Packs not fetched whole again in this process: too large, content
    /// not matching the ID, or forgotten twice.
    refused: Mutex<HashSet<Id>>,
    /// Packs to fetch ahead of their trees, and the threads fetching them.
    ahead: Mutex<Ahead>,
}

/// The queue of [`TreePackCache::fetch_ahead`].
#[derive(Debug, Default)]
struct Ahead {
    queue: VecDeque<BlobLocation>,
    queued: HashSet<Id>,
    workers: usize,
}

impl Default for TreePackCache {
    fn default() -> Self {
        TreePackCache::new(MEMORY_BUDGET, MAX_CACHED_PACK)
    }
}

impl TreePackCache {
    /// A cache keeping `memory_budget` bytes of packs in memory (until a
    /// folder is given) and fetching packs up to `max_pack` bytes whole.
    pub(crate) fn new(memory_budget: u64, max_pack: u64) -> TreePackCache {
        TreePackCache {
            disk: Mutex::new(None),
            memory: Mutex::new(MemoryPacks::default()),
            memory_budget,
            max_pack,
            fetching: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
            ahead: Mutex::new(Ahead::default()),
        }
    }

    /// True if the pack is cached (or in memory) now.
    fn has(&self, pack: &Id) -> bool {
        match self.disk() {
            Some(disk) => disk.path(pack).is_file(),
            None => lock(&self.memory).packs.iter().any(|(id, _)| id == pack),
        }
    }

    /// Fetches the packs of trees about to be loaded (a loaded tree's
    /// subtrees) on up to `workers` background threads, so that the packs
    /// of one tree level download at once instead of one after another.
    /// Only with a cache folder: what is fetched is kept for later runs
    /// too, and memory does not grow. A loader that needs a pack being
    /// fetched waits for it (the same per-pack gate).
    pub(crate) fn fetch_ahead(
        self: &Arc<Self>,
        backend: &Arc<dyn Backend>,
        locations: impl IntoIterator<Item = BlobLocation>,
        workers: usize,
    ) {
        if self.disk().is_none() {
            return;
        }
        let mut start = 0;
        {
            // The only place holding two of these locks (in this order).
            let refused = lock(&self.refused);
            let mut ahead = lock(&self.ahead);
            for loc in locations {
                if refused.contains(&loc.pack)
                    || ahead.queued.contains(&loc.pack)
                    || self.has(&loc.pack)
                {
                    continue;
                }
                ahead.queued.insert(loc.pack);
                ahead.queue.push_back(loc);
            }
            while ahead.workers < workers && ahead.workers < ahead.queue.len() {
                ahead.workers += 1;
                start += 1;
            }
        }
        for _ in 0..start {
            let cache = Arc::clone(self);
            let backend = Arc::clone(backend);
            let spawned = std::thread::Builder::new()
                .name("tree-pack-ahead".into())
                .spawn(move || cache.fetch_ahead_worker(backend.as_ref()));
            if spawned.is_err() {
                lock(&self.ahead).workers -= 1;
            }
        }
    }

    fn fetch_ahead_worker(&self, backend: &dyn Backend) {
        loop {
            let next = {
                let mut ahead = lock(&self.ahead);
                match ahead.queue.pop_front() {
                    Some(loc) => loc,
                    None => {
                        ahead.workers -= 1;
                        return;
                    }
                }
            };
            let gate = Arc::clone(lock(&self.fetching).entry(next.pack).or_default());
            {
                let _fetching = lock(&gate);
                if !lock(&self.refused).contains(&next.pack) && !self.has(&next.pack) {
                    let _ = self.fetch(backend, &next);
                }
            }
            lock(&self.fetching).remove(&next.pack);
            lock(&self.ahead).queued.remove(&next.pack);
        }
    }

    /// Waits until no pack is being fetched ahead (tests).
    #[cfg(test)]
    pub(crate) fn wait_for_fetch_ahead(&self) {
        while lock(&self.ahead).workers > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Keep packs in `disk` from now on (memory is used no more).
    pub(crate) fn use_disk(&self, disk: DiskPacks) {
        *lock(&self.disk) = Some(disk);
        *lock(&self.memory) = MemoryPacks::default();
    }

    /// The cache folder in use, if any.
    pub(crate) fn disk(&self) -> Option<DiskPacks> {
        lock(&self.disk).clone()
    }

    /// The largest pack fetched whole now.
    fn limit(&self, disk: bool) -> u64 {
        if disk {
            self.max_pack
        } else {
            self.max_pack.min(self.memory_budget)
        }
    }

    /// The ciphertext of the blob at `loc`, from its cached pack or from
    /// the pack fetched whole now; `None` when the pack is not to be
    /// cached (too large, refused, a read failed): the caller then reads
    /// the range itself. The caller checks the blob and calls
    /// [`TreePackCache::forget`] when the check fails.
    pub(crate) fn ciphertext(
        &self,
        backend: &dyn Backend,
        loc: &BlobLocation,
    ) -> Option<(Vec<u8>, Source)> {
        if lock(&self.refused).contains(&loc.pack) {
            return None;
        }
        if let Some(kept) = self.kept(loc) {
            return Some((kept, Source::Kept));
        }
        let gate = Arc::clone(lock(&self.fetching).entry(loc.pack).or_default());
        let result = {
            let _fetching = lock(&gate);
            // Another loader may have fetched it while this one waited.
            match self.kept(loc) {
                Some(kept) => Some((kept, Source::Kept)),
                None => self.fetch(backend, loc).map(|ct| (ct, Source::Fetched)),
            }
        };
        lock(&self.fetching).remove(&loc.pack);
        result
    }

    /// The blob's bytes from a kept pack. A cached file that cannot be
    /// read as far as the blob goes is removed.
    fn kept(&self, loc: &BlobLocation) -> Option<Vec<u8>> {
        let (offset, length) = (u64::from(loc.offset), u64::from(loc.length));
        if let Some(disk) = self.disk() {
            return match disk.read(&loc.pack, offset, length) {
                Ok(found) => found,
                Err(_) => {
                    disk.remove(&loc.pack);
                    None
                }
            };
        }
        let pack = lock(&self.memory).get(&loc.pack)?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(length).ok()?)?;
        pack.get(start..end).map(<[u8]>::to_vec)
    }

    /// Downloads the pack whole, checks it against its ID, keeps it, and
    /// returns the blob's bytes.
    fn fetch(&self, backend: &dyn Backend, loc: &BlobLocation) -> Option<Vec<u8>> {
        let disk = self.disk();
        let name = loc.pack.to_hex();
        let end = u64::from(loc.offset) + u64::from(loc.length);
        let size = backend.stat(FileType::Pack, &name).ok()?.size;
        if size > self.limit(disk.is_some()) || size < end {
            lock(&self.refused).insert(loc.pack);
            return None;
        }
        let bytes = backend.read_range(FileType::Pack, &name, 0, size).ok()?;
        if Id(Sha256::digest(&bytes).into()) != loc.pack {
            // Never cached; the ranged read reports what is wrong.
            lock(&self.refused).insert(loc.pack);
            return None;
        }
        let blob = bytes
            .get(usize::try_from(loc.offset).ok()?..usize::try_from(end).ok()?)?
            .to_vec();
        let stored = disk.is_some_and(|d| d.store(&loc.pack, &bytes).is_ok());
        if !stored {
            lock(&self.memory).insert(loc.pack, Arc::new(bytes), self.memory_budget);
        }
        Some(blob)
    }

    /// A blob read from the cached pack failed its check: the cached copy
    /// goes (restic's `Forget`). The first time for a pack it may be
    /// fetched again; the second time it is left to ranged reads.
    pub(crate) fn forget(&self, pack: &Id) {
        if let Some(disk) = self.disk() {
            disk.remove(pack);
        }
        lock(&self.memory).remove(pack);
        if !lock(&self.forgotten).insert(*pack) {
            lock(&self.refused).insert(*pack);
        }
    }

    /// A pack was removed from the repository: its cached copy goes too.
    pub(crate) fn removed(&self, pack: &Id) {
        if let Some(disk) = self.disk() {
            disk.remove(pack);
        }
        lock(&self.memory).remove(pack);
    }

    /// A tree pack this process wrote: kept in the cache folder (restic
    /// caches metadata packs on save). Without a folder nothing is kept:
    /// memory holds packs that are read.
    pub(crate) fn written(&self, pack: &Id, bytes: &[u8]) {
        if bytes.len() as u64 > self.max_pack {
            return;
        }
        if let Some(disk) = self.disk() {
            let _ = disk.store(pack, bytes);
        }
    }

    /// Removes cached packs the index does not list: `drop_indexed`
    /// removes the listed ones from the set it is given (and fails when it
    /// cannot tell; then nothing is removed).
    pub(crate) fn clear<E>(
        &self,
        drop_indexed: impl FnOnce(&mut HashSet<Id>) -> Result<(), E>,
    ) -> usize {
        let Some(disk) = self.disk() else {
            return 0;
        };
        let mut unknown: HashSet<Id> = disk.list().into_iter().collect();
        if unknown.is_empty() || drop_indexed(&mut unknown).is_err() {
            return 0;
        }
        for pack in &unknown {
            disk.remove(pack);
        }
        unknown.len()
    }

    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> u64 {
        lock(&self.memory).bytes
    }

    #[cfg(test)]
    pub(crate) fn memory_packs(&self) -> usize {
        lock(&self.memory).packs.len()
    }
}

#[cfg(test)]
mod tests;
