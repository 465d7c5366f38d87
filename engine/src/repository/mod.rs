//! Repository: keys, config, index, locks, blob load/save, pack writing.
//!
//! A [`Repository`] is opened with a password ([`Repository::open`]) or
//! created ([`Repository::init`]). It is `Send + Sync`; share it with
//! `Arc<Repository>` and call it from many threads.
//!
//! Reading: [`Repository::load_index`] once, then [`Repository::load_blob`],
//! [`Repository::load_tree`], [`Repository::list_snapshots`], ...
//!
//! Commands that trust the index (backup, restore, not check) may first
//! name a local cache folder with [`Repository::use_index_cache`]: the index
//! is then searched in place in memory-mapped files (`mapped_index`, see
//! docs/index.md), so memory does not grow with the repository, and only
//! index files the cache does not cover yet are parsed.
//!
//! Writing: [`Repository::save_blob`] from any number of threads (blobs are
//! deduplicated against the index and against blobs waiting in open packs),
//! then [`Repository::flush`] (finishes packs, waits for uploads, writes the
//! index files) and finally [`Repository::save_snapshot`] — the order of
//! spec: restic-format §16. [`Repository::flush_and_save_snapshot`] does
//! both with one ordered backend write (`Backend::write_in_order`): the
//! snapshot is uploaded together with the index files and renamed into
//! place after them, which saves round trips on a long link.
//!
//! ```no_run
//! use std::sync::Arc;
//! use restix_engine::backend::local::LocalBackend;
//! use restix_engine::repository::Repository;
//! use restix_repo_format::BlobType;
//!
//! let backend = Arc::new(LocalBackend::new("/srv/repo"));
//! let repo = Repository::open(backend, b"geheim", None)?;
//! repo.load_index()?;
//! let (id, _new, _stored) = repo.save_blob(BlobType::Data, b"hello".to_vec(), None)?;
//! repo.flush()?;
//! assert_eq!(repo.load_blob(BlobType::Data, &id)?, b"hello");
//! # Ok::<(), restix_engine::repository::RepoError>(())
//! ```

pub mod index;
pub mod lock;
pub(crate) mod mapped_index;
pub(crate) mod os_identity;
/// The host name (`os.Hostname()`), for the CLI's defaults too.
pub use os_identity::hostname;
mod pack_cache;
mod packer;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use restix_repo_format::compression::{self, CompressionMode, Compressor};
use restix_repo_format::config::Config;
use restix_repo_format::crypto::Key;
use restix_repo_format::keyfile::{KeyFile, KeyFileError, ScryptParams};
use restix_repo_format::pack::{self, HeaderRead, PackBlob};
use restix_repo_format::unpacked;
use restix_repo_format::{BlobType, GoTime, Id, IndexBlob, IndexFile, IndexPack, Snapshot, Tree};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError, FileType};

pub use index::{BlobLocation, MemoryIndex};
pub use lock::{remove_held_locks, LockError, LockGuard};
use mapped_index::{CacheDir, Damaged, IndexView, Manifest};
pub use pack_cache::PackCacheError;
use pack_cache::{DiskPacks, Source, TreePackCache};

/// Default target pack size (spec: restic-format §7.4).
pub const DEFAULT_PACK_SIZE: u64 = 16 << 20;
/// Smallest allowed target pack size.
pub const MIN_PACK_SIZE: u64 = 4 << 20;
/// Largest allowed target pack size.
pub const MAX_PACK_SIZE: u64 = 128 << 20;
/// Blobs per index file before a new one is started (spec §9).
pub const INDEX_BLOBS_PER_FILE: usize = 50_000;
/// Key files tried when opening (spec §5.4).
pub const MAX_KEYS: usize = 20;
/// Upper bound for one decompressed blob (restic's chunks are ≤ 8 MiB, trees
/// can be larger; u32 lengths cap it at 4 GiB anyway).
const MAX_BLOB_SIZE: usize = u32::MAX as usize;

/// The result of [`Repository::list_snapshots_lenient`].
#[derive(Debug, Default)]
pub struct SnapshotListing {
    /// Snapshots that loaded, sorted by ID.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot files that could not be loaded, with the reason.
    pub damaged: Vec<(Id, RepoError)>,
}

/// Errors of repository operations.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No key file could be opened with the password (CLI exit 12).
    #[error("wrong password or no key found")]
    WrongPassword,
    /// The `config` file does not exist (CLI exit 10).
    #[error("unable to open config file: stat {path}: no such file or directory")]
    NotFound {
        /// The repository location.
        location: String,
        /// The config path that is missing.
        path: String,
    },
    /// `init` on an existing repository.
    #[error("config file already exists")]
    AlreadyExists {
        /// The repository location.
        location: String,
    },
    /// The config file is empty.
    #[error("config file has zero size, invalid repository?")]
    EmptyConfig,
    /// The config does not decrypt or is invalid.
    #[error("invalid repository config: {0}")]
    InvalidConfig(String),
    /// Bad argument (version, pack size, polynomial).
    #[error("{0}")]
    InvalidArgument(String),
    /// A backend operation failed.
    #[error("{source}")]
    Backend {
        /// The backend's error.
        #[from]
        source: BackendError,
    },
    /// A key, index, snapshot or lock file is damaged.
    #[error("{file_type} file {name}: {reason}")]
    InvalidFile {
        /// Its type.
        file_type: FileType,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No index entry for a blob.
    #[error("{blob_type} blob {blob} not found in index")]
    BlobNotFound {
        /// Data or tree.
        blob_type: BlobType,
        /// The blob.
        blob: Id,
    },
    /// A blob could not be read back intact from any of its packs; the
    /// error names the last pack tried.
    #[error("{blob_type} blob {blob} in pack {pack}: {reason}")]
    BlobCorrupt {
        /// Data or tree.
        blob_type: BlobType,
        /// The blob.
        blob: Id,
        /// The pack.
        pack: Id,
        /// What failed (read error, MAC, decompression, hash).
        reason: String,
    },
    /// A pack file is damaged (header, size) or failed verification.
    #[error("pack {pack}: {reason}")]
    PackCorrupt {
        /// The pack.
        pack: Id,
        /// What is wrong.
        reason: String,
    },
    /// A tree blob that is not valid tree JSON.
    #[error("tree {id}: {reason}")]
    InvalidTree {
        /// The tree.
        id: Id,
        /// The decode error.
        reason: String,
    },
    /// A blob of 4 GiB or more.
    #[error("blob {blob} is larger than 4GB ({size} bytes)")]
    BlobTooLarge {
        /// The blob.
        blob: Id,
        /// Its size.
        size: u64,
    },
    /// No file has this ID prefix.
    #[error("no matching ID found for prefix \"{prefix}\"")]
    NoMatchingId {
        /// The prefix.
        prefix: String,
    },
    /// Several files share the ID prefix.
    #[error("multiple IDs with prefix \"{prefix}\" found")]
    AmbiguousId {
        /// The prefix.
        prefix: String,
    },
    /// An earlier pack upload failed; nothing more is stored.
    #[error("storing a pack failed: {0}")]
    UploadFailed(String),
    /// An index lists compressed blobs in a version 1 repository.
    #[error("index uses feature not supported by repository version 1")]
    IndexNeedsV2,
    /// A snapshot was saved before its data was flushed.
    #[error("save_snapshot called with unflushed blobs; call flush() first")]
    NotFlushed,
    /// Locking failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// An error adding an index file's blobs, with the file's name.
fn name_index_error(e: RepoError, file: &Id) -> RepoError {
    match e {
        RepoError::InvalidFile {
            file_type, reason, ..
        } => RepoError::InvalidFile {
            file_type,
            name: file.to_hex(),
            reason,
        },
        other => other,
    }
}

impl RepoError {
    fn invalid_file(file_type: FileType, name: &str, reason: impl ToString) -> Self {
        RepoError::InvalidFile {
            file_type,
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Result type of repository operations.
pub type RepoResult<T> = Result<T, RepoError>;

/// State shared with the uploader threads.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: Key,
    pub(crate) version: u32,
    index: RwLock<IndexView>,
    /// Blobs accepted by `save_blob` whose pack is not stored yet.
    pending_blobs: Mutex<HashSet<(BlobType, Id)>>,
    /// Stored packs whose blobs are not in an index file yet.
    pending_index: Mutex<Vec<(Id, Vec<PackBlob>)>>,
    upload_error: Mutex<Option<RepoError>>,
    has_upload_error: AtomicBool,
    verify_blobs: AtomicBool,
    packs_bytes_stored: AtomicU64,
    /// Buffers of stored packs, reused for new packs (so the allocator does
    /// not keep growing; at most [`packer::SPARE_PACK_BUFFERS`]).
    pack_buffers: Mutex<Vec<Vec<u8>>>,
    /// The index cache and what the mapped index holds.
    index_cache: Mutex<IndexCacheState>,
    /// Whole tree packs, on disk or in memory (see `pack_cache`).
    pub(crate) tree_packs: Arc<TreePackCache>,
    /// CPU threads for loading the index (0: every core).
    cpu_threads: AtomicUsize,
}

/// What [`Repository::use_index_cache`] keeps track of.
#[derive(Debug, Default)]
struct IndexCacheState {
    /// The cache folder; `None`: no cache.
    path: Option<std::path::PathBuf>,
    /// The cache the loaded index is mapped from, and its manifest.
    cache: Option<(CacheDir, Manifest)>,
    /// Index files written by this process since the load: their blobs are
    /// in the in-memory part of the index.
    written: Vec<Id>,
    /// The mapped cache failed a check during this process: not trusted or
    /// written again by it (the next load builds it anew).
    failed: bool,
}

/// Why loading through the cache did not work.
#[derive(Debug)]
enum CachedLoadError {
    /// Reading the repository failed: the load fails.
    Repo(RepoError),
    /// The cache folder could not be used (an I/O error, a damaged
    /// segment met while merging): the load goes on without it.
    Cache,
}

impl From<RepoError> for CachedLoadError {
    fn from(e: RepoError) -> Self {
        CachedLoadError::Repo(e)
    }
}

impl From<mapped_index::CacheError> for CachedLoadError {
    fn from(_: mapped_index::CacheError) -> Self {
        CachedLoadError::Cache
    }
}

use crate::poison::lock as lock_mutex;

impl Shared {
    /// CPU threads for index work: [`Repository::set_cpu_threads`], else
    /// every core.
    fn cpus(&self) -> usize {
        match self.cpu_threads.load(Ordering::Relaxed) {
            0 => cpu_count(),
            n => n,
        }
    }

    fn index_read(&self) -> std::sync::RwLockReadGuard<'_, IndexView> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_write(&self) -> std::sync::RwLockWriteGuard<'_, IndexView> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a query on the index. A mapped page that fails its check makes
    /// the whole cache distrusted: every index file is loaded into memory
    /// and the query runs again there.
    fn query<R>(&self, q: impl Fn(&IndexView) -> Result<R, Damaged>) -> R {
        loop {
            let damaged = match q(&self.index_read()) {
                Ok(r) => return r,
                Err(d) => d,
            };
            self.leave_mapped_index(Some(damaged));
        }
    }

    /// Replaces the mapped part of the index by every index file's blobs in
    /// memory: because a page failed its check (`damaged`; the cache is then
    /// removed so that the next load builds it anew), or because a caller
    /// needs the whole index in memory.
    fn leave_mapped_index(&self, damaged: Option<Damaged>) {
        let mut view = self.index_write();
        if view.mapped.take().is_none() {
            return;
        }
        if damaged.is_some() {
            let mut state = lock_mutex(&self.index_cache);
            state.failed = true;
            if let Some((cache, _)) = &state.cache {
                cache.discard();
            }
        }
        // On a read error the index stays incomplete: a blob not found is
        // then stored again (harmless) or reported missing.
        let loaded = self
            .backend
            .list(FileType::Index)
            .map_err(RepoError::from)
            .and_then(|files| {
                let mut ids: Vec<Id> = files
                    .into_iter()
                    .filter_map(|f| Id::from_hex(&f.name).ok())
                    .collect();
                ids.sort();
                self.read_index_files(&ids, |_, file| self.add_to_memory(&mut view.memory, &file))
            });
        let _ = loaded;
        view.memory.finish_bulk_load();
    }

    /// Loads, checks and parses index files, `files_at_once` at a time in
    /// parallel, handing each to `each` in order.
    fn read_index_files<E: From<RepoError>>(
        &self,
        ids: &[Id],
        mut each: impl FnMut(&Id, IndexFile) -> Result<(), E>,
    ) -> Result<(), E> {
        let workers = self.backend.connections() + self.cpus();
        // One file per worker at a time: a cold load of a huge repository
        // holds a few parsed files, not all of them.
        for chunk in ids.chunks(workers) {
            let files = parallel_map(chunk, workers, |id| -> RepoResult<IndexFile> {
                let json = self.load_file(FileType::Index, id)?;
                IndexFile::parse(&json)
                    .map_err(|e| RepoError::invalid_file(FileType::Index, &id.to_hex(), e))
            });
            for (file, id) in files.into_iter().zip(chunk) {
                each(id, file?)?;
            }
        }
        Ok(())
    }

    /// Like [`Shared::read_index_files`], but `prepare` runs on the worker
    /// threads too (right after a file is parsed) and `consume` on this
    /// thread as files complete, in whatever order they do: parsing goes
    /// on while `consume` works, with no pause between groups of files.
    /// Memory stays small: as many files are decoded at once as there are
    /// CPU threads (a decoded file is about four times its stored size;
    /// the other workers hold what they read), and at most two prepared
    /// files wait. Stops at the first error.
    fn stream_index_files<T: Send, E: From<RepoError> + Send>(
        &self,
        ids: &[Id],
        prepare: impl Fn(&Id, IndexFile) -> Result<T, E> + Sync,
        mut consume: impl FnMut(&Id, T) -> Result<(), E>,
    ) -> Result<(), E> {
        let workers = (self.backend.connections() + self.cpus()).clamp(1, ids.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let decoding = crate::semaphore::Semaphore::new(self.cpus());
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(&Id, Result<T, E>)>(2);
            for _ in 0..workers {
                let (tx, next, stop, prepare, decoding) =
                    (tx.clone(), &next, &stop, &prepare, &decoding);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let prepared = match self.backend.read(FileType::Index, &id.to_hex()) {
                            Err(e) => Err(RepoError::from(e).into()),
                            Ok(data) => {
                                // Decoded, parsed and prepared under one
                                // permit: that is when a file is large.
                                let _permit = decoding.acquire();
                                self.decode_file(FileType::Index, id, &data)
                                    .and_then(|json| {
                                        drop(data);
                                        IndexFile::parse(&json).map_err(|e| {
                                            RepoError::invalid_file(
                                                FileType::Index,
                                                &id.to_hex(),
                                                e,
                                            )
                                        })
                                    })
                                    .map_err(E::from)
                                    .and_then(|file| prepare(id, file))
                            }
                        };
                        if tx.send((id, prepared)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut result = Ok(());
            for (id, prepared) in rx.iter() {
                if let Err(e) = prepared.and_then(|t| consume(id, t)) {
                    result = Err(e);
                    break;
                }
            }
            // Workers stop at their next file or send.
            stop.store(true, Ordering::Relaxed);
            drop(rx);
            result
        })
    }

    /// Adds an index file's blobs to `memory` (bulk: found after
    /// `finish_bulk_load`).
    fn add_to_memory(&self, memory: &mut MemoryIndex, file: &IndexFile) -> RepoResult<()> {
        for p in &file.packs {
            for b in &p.blobs {
                if self.version < 2 && b.uncompressed_length.is_some() {
                    return Err(RepoError::IndexNeedsV2);
                }
                memory
                    .add_bulk(
                        b.blob_type,
                        b.id,
                        p.id,
                        b.offset,
                        u64::from(b.length),
                        b.uncompressed_length.map(u64::from),
                    )
                    .map_err(|e| RepoError::invalid_file(FileType::Index, "", e))?;
            }
        }
        Ok(())
    }

    /// Load an index, snapshot or lock file: verify sha256(content) == name,
    /// decrypt, decompress. Returns the JSON bytes.
    fn load_file(&self, file_type: FileType, id: &Id) -> RepoResult<Vec<u8>> {
        let data = self.backend.read(file_type, &id.to_hex())?;
        self.decode_file(file_type, id, &data)
    }

    /// [`Shared::load_file`] of the bytes read: check, decrypt, decompress.
    fn decode_file(&self, file_type: FileType, id: &Id, data: &[u8]) -> RepoResult<Vec<u8>> {
        let name = id.to_hex();
        if Id(Sha256::digest(data).into()) != *id {
            return Err(RepoError::invalid_file(
                file_type,
                &name,
                "invalid data: content does not match ID",
            ));
        }
        unpacked::decode_unpacked(&self.key, data)
            .map_err(|e| RepoError::invalid_file(file_type, &name, e))
    }

    /// A tree blob from its pack kept whole (see `pack_cache`); `None`
    /// when the pack is not kept and cannot be fetched whole, or the blob
    /// does not check out: the caller then reads the range.
    fn tree_from_pack_cache(&self, id: &Id, loc: &BlobLocation) -> Option<Vec<u8>> {
        // Twice at most: a damaged cached copy is forgotten, then the pack
        // is fetched anew (hash-checked).
        for _ in 0..2 {
            let (ciphertext, source) = self.tree_packs.ciphertext(self.backend.as_ref(), loc)?;
            match decode_blob(&self.key, id, &ciphertext, loc.uncompressed_length) {
                Ok(plain) => return Some(plain),
                Err(_) => {
                    self.tree_packs.forget(&loc.pack);
                    if source == Source::Fetched {
                        return None;
                    }
                }
            }
        }
        None
    }

    pub(crate) fn has_upload_error(&self) -> bool {
        self.has_upload_error.load(Ordering::Acquire)
    }

    pub(crate) fn set_upload_error(&self, e: RepoError) {
        let mut slot = lock_mutex(&self.upload_error);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.has_upload_error.store(true, Ordering::Release);
    }

    pub(crate) fn verify_blobs(&self) -> bool {
        self.verify_blobs.load(Ordering::Relaxed)
    }

    /// A cleared buffer for a new pack (a stored pack's, when one is spare).
    pub(crate) fn take_pack_buffer(&self) -> Vec<u8> {
        let mut buffer = lock_mutex(&self.pack_buffers).pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keep a stored pack's buffer for the next pack.
    pub(crate) fn give_back_pack_buffer(&self, buffer: Vec<u8>) {
        let mut spare = lock_mutex(&self.pack_buffers);
        if spare.len() < packer::SPARE_PACK_BUFFERS {
            spare.push(buffer);
        }
    }

    /// A pack is stored: index its blobs, queue them for the next index file
    /// and release them from the pending set (in that order, so a
    /// concurrent dedup check always sees the blob somewhere).
    pub(crate) fn pack_stored(&self, pack: Id, size: u64, blobs: Vec<PackBlob>) -> RepoResult<()> {
        self.packs_bytes_stored.fetch_add(size, Ordering::Relaxed);
        {
            let mut index = self.index_write();
            for b in &blobs {
                index
                    .memory
                    .add(
                        b.blob_type,
                        b.id,
                        pack,
                        b.offset,
                        u64::from(b.length),
                        b.uncompressed_length.map(u64::from),
                    )
                    .map_err(|e| RepoError::PackCorrupt {
                        pack,
                        reason: e.to_string(),
                    })?;
            }
        }
        {
            let mut pending = lock_mutex(&self.pending_blobs);
            for b in &blobs {
                pending.remove(&(b.blob_type, b.id));
            }
        }
        let full = {
            let mut list = lock_mutex(&self.pending_index);
            list.push((pack, blobs));
            let count: usize = list.iter().map(|(_, b)| b.len()).sum();
            if count >= INDEX_BLOBS_PER_FILE {
                std::mem::take(&mut *list)
            } else {
                Vec::new()
            }
        };
        if !full.is_empty() {
            // All packs in the list are stored, so the index may reference
            // them now (spec §16).
            self.write_index_files(full)?;
        }
        Ok(())
    }

    /// Write index files for stored packs, cut at 50000 blobs each.
    fn write_index_files(&self, packs: Vec<(Id, Vec<PackBlob>)>) -> RepoResult<Vec<Id>> {
        let mut written = Vec::new();
        for file in index_files(packs) {
            written.push(self.save_index_file(&file)?);
        }
        Ok(written)
    }

    fn save_index_file(&self, file: &IndexFile) -> RepoResult<Id> {
        let id = self.save_unpacked(FileType::Index, &file.to_json())?;
        lock_mutex(&self.index_cache).written.push(id);
        Ok(id)
    }

    /// The file to store for a JSON document (encrypted, in v2 compressed)
    /// and its ID (spec: the SHA-256 of the stored bytes).
    fn encode_unpacked(&self, json: &[u8]) -> (Id, Vec<u8>) {
        let data = unpacked::encode_unpacked(&self.key, self.version, json);
        (Id(Sha256::digest(&data).into()), data)
    }

    fn save_unpacked(&self, file_type: FileType, json: &[u8]) -> RepoResult<Id> {
        let (id, data) = self.encode_unpacked(json);
        self.backend.write(file_type, &id.to_hex(), &data)?;
        Ok(id)
    }
}

/// The index files for stored packs, cut at 50000 blobs each.
fn index_files(packs: Vec<(Id, Vec<PackBlob>)>) -> Vec<IndexFile> {
    let mut files = Vec::new();
    let mut file = IndexFile::default();
    let mut count = 0usize;
    for (pack, blobs) in packs {
        count += blobs.len();
        file.packs.push(IndexPack {
            id: pack,
            blobs: blobs
                .iter()
                .map(|b| IndexBlob {
                    id: b.id,
                    blob_type: b.blob_type,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        });
        if count >= INDEX_BLOBS_PER_FILE {
            files.push(std::mem::take(&mut file));
            count = 0;
        }
    }
    if !file.packs.is_empty() {
        files.push(file);
    }
    files
}

/// A snapshot's JSON document.
fn snapshot_json(snapshot: &Snapshot) -> RepoResult<Vec<u8>> {
    snapshot
        .to_json()
        .map_err(|e| RepoError::InvalidArgument(format!("encoding snapshot: {e}")))
}

/// Settings that can change after opening.
struct Settings {
    compression: CompressionMode,
    pack_size: u64,
}

/// An open repository. `Send + Sync`: share it with `Arc`.
pub struct Repository {
    shared: Arc<Shared>,
    config: Config,
    key_id: Id,
    settings: RwLock<Settings>,
    /// Open packs: index 0 data, 1 tree.
    packers: [Mutex<Option<packer::OpenPack>>; 2],
    uploads: Mutex<Option<packer::UploadPool>>,
    /// Serialises `flush` calls.
    flush_lock: Mutex<()>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.shared.backend.location())
            .field("version", &self.config.version)
            .finish_non_exhaustive()
    }
}

fn packer_slot(t: BlobType) -> usize {
    match t {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

thread_local! {
    /// One zstd context per thread and level (creating one per blob is slow).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, Compressor)>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// Per-thread output buffer of the compressor: reused for every blob, so
    /// compressing allocates nothing (a fresh multi-MiB buffer per blob
    /// makes the allocator hold on to freed memory in every thread's arena).
    static COMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest compression buffer a thread keeps between blobs: the average
/// chunk is 1 MiB; a rare 8 MiB chunk's buffer is given back.
const KEPT_COMPRESS_BUFFER: usize = 2 << 20;

/// Tree blobs above this size are compressed at zstd level 1 by default.
const LARGE_TREE: usize = 1 << 20;

/// A blob compressed and encrypted, not in a pack yet.
struct SealedBlob {
    blob_type: BlobType,
    id: Id,
    ciphertext: Vec<u8>,
    uncompressed_length: Option<u32>,
}

/// Data blobs encrypted into packs ahead of the index (see
/// [`Repository::seal_packs`]); dropped unsaved, nothing is stored.
pub struct SealedPacks {
    packs: Vec<packer::OpenPack>,
}

impl SealedPacks {
    /// Appends the packs of `later` (sealed from the blobs that follow this
    /// one's): blob slots continue in order.
    pub fn append(&mut self, later: SealedPacks) {
        self.packs.extend(later.packs);
    }

    /// Number of packs sealed.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Number of blobs sealed.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

impl std::fmt::Debug for SealedPacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPacks")
            .field("packs", &self.packs.len())
            .field("blobs", &self.blob_count())
            .finish()
    }
}

/// Compress `data` at `level`, then encrypt the frame with `key`.
fn compress_and_encrypt(key: &Key, level: i32, data: &[u8]) -> Result<Vec<u8>, String> {
    with_compressed(level, data, |compressed| key.encrypt(compressed))
}

/// `data` compressed at zstd `level` exactly as [`Repository::save_blob`]
/// compresses blobs, for callers that compress ahead of opening the
/// repository (see [`Repository::save_blob_precompressed`]).
pub fn compress_blob(level: i32, data: &[u8]) -> Result<Vec<u8>, String> {
    with_compressed(level, data, <[u8]>::to_vec)
}

/// An empty buffer of `capacity` bytes whose memory is already mapped:
/// touching fresh memory costs a page fault per 4 KiB (~1 ms per 4 MiB on a
/// VM), which a caller with an idle thread can pay ahead of time (see
/// [`Repository::give_pack_buffers`]). Stops touching once `enough` is set
/// (the thread has other work then); the buffer keeps its capacity.
pub fn prefaulted_pack_buffer(capacity: usize, enough: &AtomicBool) -> Vec<u8> {
    const STEP: usize = 1 << 20;
    let mut buffer = Vec::with_capacity(capacity);
    while buffer.len() < capacity && !enough.load(Ordering::Relaxed) {
        // Not zeros: zeroed memory may be left untouched by the allocator.
        buffer.resize(capacity.min(buffer.len() + STEP), 1u8);
    }
    buffer.clear();
    buffer
}

/// Runs `f` on `data` compressed at `level` with this thread's compressor.
fn with_compressed<R>(level: i32, data: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let reuse = matches!(&*slot, Some((l, _)) if *l == level);
        if !reuse {
            *slot = Some((level, Compressor::new(level).map_err(|e| e.to_string())?));
        }
        let Some((_, compressor)) = slot.as_mut() else {
            return Err("no compressor".to_string());
        };
        COMPRESSED.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            let result = compressor
                .compress_into(data, &mut buffer)
                .map_err(|e| e.to_string())
                .map(|()| f(&buffer));
            if buffer.capacity() > KEPT_COMPRESS_BUFFER {
                *buffer = Vec::new();
            }
            result
        })
    })
}

/// Decrypt, decompress and hash-check one blob. Returns the reason on failure.
pub(crate) fn decode_blob(
    key: &Key,
    id: &Id,
    ciphertext: &[u8],
    uncompressed_length: Option<u32>,
) -> Result<Vec<u8>, String> {
    let plain = key.decrypt(ciphertext).map_err(|e| e.to_string())?;
    let plain = match uncompressed_length {
        Some(n) => compression::decompress(&plain, Some(n as usize), MAX_BLOB_SIZE)
            .map_err(|e| e.to_string())?,
        None => plain,
    };
    let actual = Id(Sha256::digest(&plain).into());
    if actual != *id {
        return Err(format!("hash mismatch: content has ID {actual}"));
    }
    Ok(plain)
}

/// [`decode_blob`] on a ciphertext the caller may overwrite: decrypted in
/// place, so a compressed blob costs one allocation (its plaintext).
fn decode_blob_in_place(
    key: &Key,
    id: &Id,
    ciphertext: &mut [u8],
    uncompressed_length: Option<u32>,
) -> Result<Vec<u8>, String> {
    let range = key
        .decrypt_slice_in_place(ciphertext)
        .map_err(|e| e.to_string())?;
    let decrypted = ciphertext.get(range).unwrap_or_default();
    let plain = match uncompressed_length {
        Some(n) => compression::decompress(decrypted, Some(n as usize), MAX_BLOB_SIZE)
            .map_err(|e| e.to_string())?,
        None => decrypted.to_vec(),
    };
    let actual = Id(Sha256::digest(&plain).into());
    if actual != *id {
        return Err(format!("hash mismatch: content has ID {actual}"));
    }
    Ok(plain)
}

/// Run `f` over `items` on up to `workers` threads; results in input order.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                lock_mutex(&results).push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
}

impl Repository {
    /// Create a new repository: folders, a key file for `password`, then the
    /// config. `version` is 1 or 2; `polynomial` `None` picks a random
    /// irreducible one (spec §15.3).
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        version: u32,
        polynomial: Option<u64>,
        scrypt: ScryptParams,
    ) -> RepoResult<Repository> {
        if !(1..=2).contains(&version) {
            return Err(RepoError::InvalidArgument(
                "only repository versions between 1 and 2 are allowed".into(),
            ));
        }
        let polynomial = match polynomial {
            Some(p) => {
                if !restix_chunker::Polynomial(p).is_irreducible() {
                    return Err(RepoError::InvalidArgument(format!(
                        "invalid chunker polynomial {p:x}: not irreducible"
                    )));
                }
                p
            }
            None => {
                restix_chunker::Polynomial::random_irreducible(|| {
                    let mut b = [0u8; 8];
                    restix_repo_format::random::fill(&mut b);
                    u64::from_le_bytes(b)
                })
                .map_err(|e| RepoError::InvalidArgument(e.to_string()))?
                .0
            }
        };
        match backend.stat(FileType::Config, "config") {
            Ok(_) => {
                return Err(RepoError::AlreadyExists {
                    location: backend.location(),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        backend.create().map_err(|e| match e {
            BackendError::AlreadyExists { .. } => RepoError::AlreadyExists {
                location: backend.location(),
            },
            e => e.into(),
        })?;
        let master = Key::random();
        let key_file = KeyFile::create(
            &master,
            password,
            scrypt,
            &os_identity::username(),
            &os_identity::hostname(),
            GoTime::now_local(),
        )
        .map_err(|e| RepoError::InvalidArgument(e.to_string()))?;
        let key_json = key_file
            .to_json()
            .map_err(|e| RepoError::InvalidArgument(format!("encoding key file: {e}")))?;
        let key_id = Id(Sha256::digest(&key_json).into());
        backend.write(FileType::Key, &key_id.to_hex(), &key_json)?;
        let config = Config::new(version, polynomial);
        backend.write(
            FileType::Config,
            "config",
            &unpacked::encrypt_config(&master, &config),
        )?;
        Ok(Repository::from_parts(backend, master, key_id, config))
    }

    fn from_parts(backend: Arc<dyn Backend>, key: Key, key_id: Id, config: Config) -> Repository {
        Repository {
            shared: Arc::new(Shared {
                backend,
                key,
                version: config.version,
                index: RwLock::new(IndexView::default()),
                pending_blobs: Mutex::new(HashSet::new()),
                pending_index: Mutex::new(Vec::new()),
                upload_error: Mutex::new(None),
                has_upload_error: AtomicBool::new(false),
                verify_blobs: AtomicBool::new(false),
                packs_bytes_stored: AtomicU64::new(0),
                pack_buffers: Mutex::new(Vec::new()),
                index_cache: Mutex::new(IndexCacheState::default()),
                tree_packs: Arc::new(TreePackCache::default()),
                cpu_threads: AtomicUsize::new(0),
            }),
            config,
            key_id,
            settings: RwLock::new(Settings {
                compression: CompressionMode::Auto,
                pack_size: DEFAULT_PACK_SIZE,
            }),
            packers: [Mutex::new(None), Mutex::new(None)],
            uploads: Mutex::new(None),
            flush_lock: Mutex::new(()),
        }
    }

    /// Open a repository with `password` (spec §5.4): stat the config
    /// ([`RepoError::NotFound`] when missing), try the hinted key first, then
    /// at most 20 key files ([`RepoError::WrongPassword`] when none opens),
    /// then decrypt the config.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        key_hint: Option<&str>,
    ) -> RepoResult<Repository> {
        match backend.stat(FileType::Config, "config") {
            Ok(info) if info.size == 0 => return Err(RepoError::EmptyConfig),
            Ok(_) => {}
            Err(BackendError::NotFound { path }) => {
                return Err(RepoError::NotFound {
                    location: backend.location(),
                    path,
                })
            }
            Err(e) => return Err(e.into()),
        }
        let mut names: Vec<String> = backend
            .list(FileType::Key)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        names.sort();
        if let Some(hint) = key_hint.filter(|h| !h.is_empty()) {
            if let Some(pos) = names.iter().position(|n| n.starts_with(hint)) {
                let hinted = names.remove(pos);
                names.insert(0, hinted);
            }
        }
        let mut opened = None;
        for name in names.iter().take(MAX_KEYS) {
            let data = backend.read(FileType::Key, name)?;
            if Id(Sha256::digest(&data).into()).to_hex() != *name {
                return Err(RepoError::invalid_file(
                    FileType::Key,
                    name,
                    "invalid data: content does not match ID",
                ));
            }
            let kf = KeyFile::parse(&data)
                .map_err(|e| RepoError::invalid_file(FileType::Key, name, e))?;
            match kf.open(password) {
                Ok(key) => {
                    let id = Id::from_hex(name)
                        .map_err(|e| RepoError::invalid_file(FileType::Key, name, e))?;
                    opened = Some((key, id));
                    break;
                }
                Err(KeyFileError::WrongPassword) => continue,
                Err(e) => return Err(RepoError::invalid_file(FileType::Key, name, e)),
            }
        }
        let Some((key, key_id)) = opened else {
            return Err(RepoError::WrongPassword);
        };
        let data = backend.read(FileType::Config, "config")?;
        let config = unpacked::decrypt_config(&key, &data)
            .map_err(|e| RepoError::InvalidConfig(e.to_string()))?;
        if !restix_chunker::Polynomial(config.chunker_polynomial).is_irreducible() {
            return Err(RepoError::InvalidConfig(
                "invalid chunker polynomial".into(),
            ));
        }
        Ok(Repository::from_parts(backend, key, key_id, config))
    }

    /// The decrypted config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The master key.
    pub fn key(&self) -> &Key {
        &self.shared.key
    }

    /// ID of the key file that opened the repository.
    pub fn key_id(&self) -> &Id {
        &self.key_id
    }

    /// Repository format version (1 or 2).
    pub fn version(&self) -> u32 {
        self.config.version
    }

    /// The chunker polynomial from the config.
    pub fn polynomial(&self) -> restix_chunker::Polynomial {
        restix_chunker::Polynomial(self.config.chunker_polynomial)
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    /// At most `threads` CPU threads parse the index and build its cache
    /// (`--threads`, `GOMAXPROCS`; 0: every core). Reads from the backend
    /// still keep its connections busy.
    pub fn set_cpu_threads(&self, threads: usize) {
        self.shared.cpu_threads.store(threads, Ordering::Relaxed);
    }

    /// Compression for data blobs (v2 only; trees are always compressed).
    pub fn set_compression(&self, mode: CompressionMode) {
        if let Ok(mut s) = self.settings.write() {
            s.compression = mode;
        }
    }

    /// The compression setting.
    pub fn compression(&self) -> CompressionMode {
        self.settings
            .read()
            .map(|s| s.compression)
            .unwrap_or_default()
    }

    /// Target pack size in bytes (4..=128 MiB).
    pub fn set_pack_size(&self, bytes: u64) -> RepoResult<()> {
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&bytes) {
            return Err(RepoError::InvalidArgument(format!(
                "pack size {} MiB is outside the allowed range of 4 to 128 MiB",
                bytes >> 20
            )));
        }
        if let Ok(mut s) = self.settings.write() {
            s.pack_size = bytes;
        }
        Ok(())
    }

    /// Set the pack size without the 4 MiB minimum (tests only need small packs).
    #[doc(hidden)]
    pub fn set_pack_size_unchecked(&self, bytes: u64) {
        if let Ok(mut s) = self.settings.write() {
            s.pack_size = bytes.max(1);
        }
    }

    /// The target pack size.
    pub fn pack_size(&self) -> u64 {
        self.settings
            .read()
            .map(|s| s.pack_size)
            .unwrap_or(DEFAULT_PACK_SIZE)
    }

    /// Decrypt and re-hash every blob of a pack before uploading it
    /// (restic's default; off here: the header is always verified).
    pub fn set_verify_packs(&self, full: bool) {
        self.shared.verify_blobs.store(full, Ordering::Relaxed);
    }

    /// Bytes of pack files stored by this process so far (`data_added_packed`
    /// plus headers).
    pub fn pack_bytes_stored(&self) -> u64 {
        self.shared.packs_bytes_stored.load(Ordering::Relaxed)
    }

    // ---------------------------------------------------------------- files

    /// List the names of all files of a type (non-ID names are skipped by the backend).
    pub fn list_files(&self, file_type: FileType) -> RepoResult<Vec<Id>> {
        let mut out = Vec::new();
        for f in self.shared.backend.list(file_type)? {
            if let Ok(id) = Id::from_hex(&f.name) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Load an index, snapshot or lock file: verify sha256(content) == name,
    /// decrypt, decompress. Returns the JSON bytes.
    pub fn load_file(&self, file_type: FileType, id: &Id) -> RepoResult<Vec<u8>> {
        self.shared.load_file(file_type, id)
    }

    /// Encrypt (and in v2 compress) a JSON document and store it; returns its ID.
    pub fn save_unpacked(&self, file_type: FileType, json: &[u8]) -> RepoResult<Id> {
        self.shared.save_unpacked(file_type, json)
    }

    /// Remove one file (a pack's cached copy too, as restic's cache does).
    pub fn remove_file(&self, file_type: FileType, id: &Id) -> RepoResult<()> {
        if file_type == FileType::Pack {
            self.shared.tree_packs.removed(id);
        }
        Ok(self.shared.backend.remove(file_type, &id.to_hex())?)
    }

    /// Resolve a unique ID prefix among the files of a type.
    pub fn find_file(&self, file_type: FileType, prefix: &str) -> RepoResult<Id> {
        let mut found = None;
        for f in self.shared.backend.list(file_type)? {
            if f.name.starts_with(prefix) {
                if found.is_some() {
                    return Err(RepoError::AmbiguousId {
                        prefix: prefix.to_string(),
                    });
                }
                found = Some(f.name);
            }
        }
        let name = found.ok_or_else(|| RepoError::NoMatchingId {
            prefix: prefix.to_string(),
        })?;
        Id::from_hex(&name).map_err(|e| RepoError::invalid_file(file_type, &name, e))
    }

    // ------------------------------------------------------------ snapshots

    /// Load and parse one snapshot.
    pub fn load_snapshot(&self, id: &Id) -> RepoResult<Snapshot> {
        let json = self.load_file(FileType::Snapshot, id)?;
        Snapshot::parse(&json)
            .map_err(|e| RepoError::invalid_file(FileType::Snapshot, &id.to_hex(), e))
    }

    /// All snapshots (loaded in parallel), sorted by ID.
    pub fn list_snapshots(&self) -> RepoResult<Vec<(Id, Snapshot)>> {
        let ids = self.list_files(FileType::Snapshot)?;
        let workers = self.shared.backend.connections() + cpu_count();
        parallel_map(&ids, workers, |id| self.load_snapshot(id).map(|s| (*id, s)))
            .into_iter()
            .collect()
    }

    /// All snapshots that load, sorted by ID, and the snapshot files that
    /// do not (empty, truncated, undecodable) with their errors: listing
    /// commands report and pass over those, as restic does.
    pub fn list_snapshots_lenient(&self) -> RepoResult<SnapshotListing> {
        let ids = self.list_files(FileType::Snapshot)?;
        let workers = self.shared.backend.connections() + cpu_count();
        let mut listing = SnapshotListing::default();
        for (id, result) in ids
            .iter()
            .zip(parallel_map(&ids, workers, |id| self.load_snapshot(id)))
        {
            match result {
                Ok(snapshot) => listing.snapshots.push((*id, snapshot)),
                Err(e) => listing.damaged.push((*id, e)),
            }
        }
        Ok(listing)
    }

    /// The snapshot whose ID starts with `prefix` (unique).
    pub fn find_snapshot(&self, prefix: &str) -> RepoResult<Id> {
        self.find_file(FileType::Snapshot, prefix)
    }

    /// Store a snapshot. Call [`Repository::flush`] first: its tree and data
    /// must be indexed before it exists (spec §16).
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> RepoResult<Id> {
        let pending = !lock_mutex(&self.shared.pending_blobs).is_empty()
            || !lock_mutex(&self.shared.pending_index).is_empty()
            || self.packers.iter().any(|p| lock_mutex(p).is_some());
        if pending {
            return Err(RepoError::NotFlushed);
        }
        self.save_unpacked(FileType::Snapshot, &snapshot_json(snapshot)?)
    }

    // ---------------------------------------------------------------- index

    /// Load the index, replacing what was loaded before; blobs saved by
    /// this process are kept. Without a cache (see
    /// [`Repository::use_index_cache`]) every index file is loaded (in
    /// parallel; each hash-checked) into memory; with one, the index is
    /// mapped from the cache, and index files it does not cover yet are
    /// added to it first. A cache folder that cannot be used is passed over.
    pub fn load_index(&self) -> RepoResult<()> {
        let ids = self.list_files(FileType::Index)?;
        let path = lock_mutex(&self.shared.index_cache).path.clone();
        let mut view = IndexView::default();
        let mut cache_in_use = None;
        if let Some(path) = path {
            let cache = CacheDir::new(path, &self.shared.key, &self.config.id);
            match self.load_mapped(&cache, &ids) {
                Ok((mapped, manifest)) => {
                    view.mapped = Some(mapped);
                    cache_in_use = Some((cache, manifest));
                }
                Err(CachedLoadError::Repo(e)) => return Err(e),
                Err(CachedLoadError::Cache) => {
                    // Not trusted again as it is: the next load rebuilds.
                    cache.discard();
                }
            }
        }
        if view.mapped.is_none() {
            self.shared.read_index_files(&ids, |id, file| {
                self.shared
                    .add_to_memory(&mut view.memory, &file)
                    .map_err(|e| name_index_error(e, id))
            })?;
            view.memory.finish_bulk_load();
        }
        {
            let mut state = lock_mutex(&self.shared.index_cache);
            state.cache = cache_in_use;
            state.written.clear();
            state.failed = false;
        }
        // Keep blobs stored by this process that are not in an index file yet.
        for (pack, blobs) in lock_mutex(&self.shared.pending_index).iter() {
            for b in blobs {
                let _ = view.memory.add(
                    b.blob_type,
                    b.id,
                    *pack,
                    b.offset,
                    u64::from(b.length),
                    b.uncompressed_length.map(u64::from),
                );
            }
        }
        view.memory.finish_bulk_load();
        *self.shared.index_write() = view;
        // restic's prepareCache: cached packs the index no longer lists go.
        let view = self.shared.index_read();
        self.shared
            .tree_packs
            .clear(|packs| view.drop_listed_packs(packs));
        Ok(())
    }

    /// The index mapped from `cache`: segments whose index files are all
    /// still listed are kept (a covered file that is gone, after prune or
    /// repair, may have taken blobs with it), listed files no kept segment
    /// covers are parsed into new segments, then the newest segments are
    /// merged as the cache's policy says. Only a changed cache is written.
    fn load_mapped(
        &self,
        cache: &CacheDir,
        ids: &[Id],
    ) -> Result<(mapped_index::MappedIndex, Manifest), CachedLoadError> {
        cache.create()?;
        let listed: HashSet<&Id> = ids.iter().collect();
        let old = cache.read_or_discard_manifest();
        let mut manifest = Manifest::default();
        let mut replaced = Vec::new();
        for meta in old.segments {
            let current = meta.files.iter().all(|f| listed.contains(f));
            if current && cache.open(&meta).is_ok() {
                manifest.segments.push(meta);
            } else {
                replaced.push(meta);
            }
        }
        let covered: HashSet<&Id> = manifest
            .segments
            .iter()
            .flat_map(|s| s.files.iter())
            .collect();
        let rest: Vec<Id> = ids
            .iter()
            .filter(|id| !covered.contains(id))
            .copied()
            .collect();
        let changed = !replaced.is_empty() || !rest.is_empty();
        // All of them become one segment (see `mapped_index::build`): a
        // cold build merges nothing afterwards.
        let mut build = cache.bulk_build();
        self.shared.stream_index_files(
            &rest,
            |id, file| -> Result<mapped_index::KeyedFile, CachedLoadError> {
                if self.config.version < 2
                    && file
                        .packs
                        .iter()
                        .any(|p| p.blobs.iter().any(|b| b.uncompressed_length.is_some()))
                {
                    return Err(RepoError::IndexNeedsV2.into());
                }
                cache
                    .keyed_file(&file)
                    .map_err(|e| RepoError::invalid_file(FileType::Index, &id.to_hex(), e).into())
            },
            |id, keyed| Ok(build.add_file(*id, keyed)?),
        )?;
        manifest.segments.extend(build.finish(self.shared.cpus())?);
        // Index files without blobs: covered by no segment, parsed each
        // time (they are tiny).
        replaced.extend(cache.compact(&mut manifest)?);
        if changed {
            cache.write_manifest(&manifest)?;
            cache.remove_unused(&manifest, &replaced);
        }
        let segments = manifest
            .segments
            .iter()
            .map(|m| cache.open(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((cache.mapped(segments), manifest))
    }

    /// Keep the index in the local cache folder `path` (see
    /// `mapped_index` and docs/index.md): [`Repository::load_index`] then
    /// maps it instead of loading every index file into memory, and
    /// [`Repository::refresh_index_cache`] adds what this process stored.
    /// Only for commands that trust the index (backup, restore); `check`
    /// reads every index file.
    pub fn use_index_cache(&self, path: std::path::PathBuf) {
        lock_mutex(&self.shared.index_cache).path = Some(path);
    }

    /// Keep tree packs whole in restic's local cache under `base` (the
    /// folder `--cache-dir` names), in the folder of this repository's ID,
    /// shared with restic (see `pack_cache`). Without it, the last few
    /// tree packs are kept in memory. On an error nothing changes.
    pub fn use_tree_pack_cache(&self, base: &std::path::Path) -> Result<(), PackCacheError> {
        let disk = DiskPacks::open(base, &self.config.id)?;
        self.shared.tree_packs.use_disk(disk);
        Ok(())
    }

    /// Where a tree pack is (or would be) cached: `None` without a cache
    /// folder.
    pub fn tree_pack_cache_path(&self, pack: &Id) -> Option<std::path::PathBuf> {
        self.shared.tree_packs.disk().map(|d| d.path(pack))
    }

    /// After a backup has flushed: add the blobs of the index files this
    /// process wrote to the cache (a new small segment, merged by the
    /// cache's policy), so that the next load parses nothing. Does nothing
    /// while blobs are stored but not indexed, or when the cache failed a
    /// check. A failure only means the next load parses more.
    pub fn refresh_index_cache(&self) {
        if !lock_mutex(&self.shared.pending_index).is_empty()
            || !lock_mutex(&self.shared.pending_blobs).is_empty()
        {
            return;
        }
        let view = self.shared.index_read();
        let mut state = lock_mutex(&self.shared.index_cache);
        if state.failed || state.written.is_empty() || view.mapped.is_none() {
            return;
        }
        let written = state.written.clone();
        let Some((cache, manifest)) = &mut state.cache else {
            return;
        };
        let mut batch = cache.batch();
        if mapped_index::batch_from_memory(&view.memory, &mut batch).is_err() {
            return;
        }
        batch.files = written;
        let mut next = manifest.clone();
        let Ok(segment) = cache.write_batch(batch) else {
            return;
        };
        next.segments.extend(segment);
        let replaced = match cache.compact(&mut next) {
            Ok(replaced) => replaced,
            Err(_) => {
                cache.remove_unused(manifest, &next.segments);
                return;
            }
        };
        if cache.write_manifest(&next).is_ok() {
            cache.remove_unused(&next, &replaced);
            *manifest = next;
            state.written.clear();
        } else {
            cache.remove_unused(manifest, &next.segments);
        }
    }

    /// Run `f` with read access to the whole index in memory (a mapped
    /// index is loaded into memory first).
    pub fn with_index<R>(&self, f: impl FnOnce(&MemoryIndex) -> R) -> R {
        if self.shared.index_read().mapped.is_some() {
            self.shared.leave_mapped_index(None);
        }
        f(&self.shared.index_read().memory)
    }

    /// The first indexed copy of a blob.
    pub fn lookup(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.shared.query(|v| v.lookup(blob_type, id))
    }

    /// All indexed copies of a blob.
    pub fn lookup_all(&self, blob_type: BlobType, id: &Id) -> Vec<BlobLocation> {
        self.shared.query(|v| v.lookup_all(blob_type, id))
    }

    /// True if the blob is in the index.
    pub fn has_blob(&self, blob_type: BlobType, id: &Id) -> bool {
        self.shared.query(|v| v.has(blob_type, id))
    }

    /// Packs referenced by the index.
    pub fn list_packs(&self) -> Vec<Id> {
        self.with_index(|index| index.packs().to_vec())
    }

    // ---------------------------------------------------------------- blobs

    /// Load a blob: read, decrypt (MAC check), decompress, verify its ID.
    /// Tries every indexed copy before giving up.
    pub fn load_blob(&self, blob_type: BlobType, id: &Id) -> RepoResult<Vec<u8>> {
        let copies = self.lookup_all(blob_type, id);
        let mut last = None;
        for loc in copies {
            if blob_type == BlobType::Tree {
                if let Some(plain) = self.shared.tree_from_pack_cache(id, &loc) {
                    return Ok(plain);
                }
            }
            let reason = match self.shared.backend.read_range(
                FileType::Pack,
                &loc.pack.to_hex(),
                u64::from(loc.offset),
                u64::from(loc.length),
            ) {
                Ok(ct) => match decode_blob(&self.shared.key, id, &ct, loc.uncompressed_length) {
                    Ok(plain) => return Ok(plain),
                    Err(reason) => reason,
                },
                Err(e) => e.to_string(),
            };
            last = Some(RepoError::BlobCorrupt {
                blob_type,
                blob: *id,
                pack: loc.pack,
                reason,
            });
        }
        Err(last.unwrap_or(RepoError::BlobNotFound {
            blob_type,
            blob: *id,
        }))
    }

    /// Load several blobs of one pack with a single read of the range they
    /// span (restore of big files). `blobs` should be sorted by offset and
    /// close together; each result is checked like [`Repository::load_blob`]
    /// (without trying other copies).
    pub fn load_blobs_from_pack(
        &self,
        pack: &Id,
        blobs: &[(BlobType, Id, BlobLocation)],
    ) -> RepoResult<Vec<RepoResult<Vec<u8>>>> {
        let Some(start) = blobs.iter().map(|(_, _, l)| u64::from(l.offset)).min() else {
            return Ok(Vec::new());
        };
        let end = blobs
            .iter()
            .map(|(_, _, l)| u64::from(l.offset) + u64::from(l.length))
            .max()
            .unwrap_or(start);
        let data =
            self.shared
                .backend
                .read_range(FileType::Pack, &pack.to_hex(), start, end - start)?;
        Ok(blobs
            .iter()
            .map(|(t, id, l)| {
                let from = (u64::from(l.offset) - start) as usize;
                let ct = data
                    .get(from..from + l.length as usize)
                    .ok_or_else(|| "blob outside the read range".to_string());
                ct.and_then(|ct| decode_blob(&self.shared.key, id, ct, l.uncompressed_length))
                    .map_err(|reason| RepoError::BlobCorrupt {
                        blob_type: *t,
                        blob: *id,
                        pack: *pack,
                        reason,
                    })
            })
            .collect())
    }

    /// Like [`Repository::load_blobs_from_pack`], but hands each blob to
    /// `deliver` (with its index in `blobs`) as soon as it is decoded, so
    /// at most one decoded blob is held at a time besides the read range.
    /// Fails only if the range cannot be read (then nothing was delivered).
    pub fn load_blobs_from_pack_each(
        &self,
        pack: &Id,
        blobs: &[(BlobType, Id, BlobLocation)],
        mut deliver: impl FnMut(usize, RepoResult<Vec<u8>>),
    ) -> RepoResult<()> {
        let Some(start) = blobs.iter().map(|(_, _, l)| u64::from(l.offset)).min() else {
            return Ok(());
        };
        let end = blobs
            .iter()
            .map(|(_, _, l)| u64::from(l.offset) + u64::from(l.length))
            .max()
            .unwrap_or(start);
        let mut data =
            self.shared
                .backend
                .read_range(FileType::Pack, &pack.to_hex(), start, end - start)?;
        for (index, (t, id, l)) in blobs.iter().enumerate() {
            let from = usize::try_from(u64::from(l.offset) - start).unwrap_or(usize::MAX);
            // Blobs of one request do not overlap (pack layout), so each
            // ciphertext is decrypted in place exactly once.
            let ct = data
                .get_mut(from..from.saturating_add(l.length as usize))
                .ok_or_else(|| "blob outside the read range".to_string());
            let result = ct
                .and_then(|ct| {
                    decode_blob_in_place(&self.shared.key, id, ct, l.uncompressed_length)
                })
                .map_err(|reason| RepoError::BlobCorrupt {
                    blob_type: *t,
                    blob: *id,
                    pack: *pack,
                    reason,
                });
            deliver(index, result);
        }
        Ok(())
    }

    /// Load and decode a tree blob. With a tree pack cache folder, the
    /// packs of its subtrees not cached yet start downloading in the
    /// background (see `pack_cache`): a walk loads them next.
    pub fn load_tree(&self, id: &Id) -> RepoResult<Tree> {
        let data = self.load_blob(BlobType::Tree, id)?;
        let tree = Tree::decode(&data).map_err(|e| RepoError::InvalidTree {
            id: *id,
            reason: e.to_string(),
        })?;
        if self.shared.tree_packs.disk().is_some() {
            let subtrees = tree
                .nodes
                .iter()
                .filter_map(|n| n.subtree)
                .filter_map(|sub| self.lookup(BlobType::Tree, &sub));
            self.shared.tree_packs.fetch_ahead(
                &self.shared.backend,
                subtrees,
                self.shared.backend.connections(),
            );
        }
        Ok(tree)
    }

    /// Read and decrypt a pack's header: the last 651 bytes first, then the
    /// exact header if it is longer (spec §7.3).
    pub fn read_pack_header(&self, pack_id: &Id) -> RepoResult<Vec<PackBlob>> {
        let name = pack_id.to_hex();
        let backend = &self.shared.backend;
        let size = backend.stat(FileType::Pack, &name)?.size;
        let corrupt = |reason: String| RepoError::PackCorrupt {
            pack: *pack_id,
            reason,
        };
        if size < pack::MIN_FILE_SIZE {
            return Err(corrupt(format!("file is too short ({size} bytes)")));
        }
        let mut want = pack::eager_read_len(size);
        for _ in 0..2 {
            let tail = backend.read_range(FileType::Pack, &name, size - want, want)?;
            match pack::decode_pack_header(&self.shared.key, &tail, size)
                .map_err(|e| corrupt(e.to_string()))?
            {
                HeaderRead::Complete(h) => {
                    h.check_blobs_fit(size)
                        .map_err(|e| corrupt(e.to_string()))?;
                    return Ok(h.blobs);
                }
                HeaderRead::NeedTail(n) => want = n.min(size),
            }
        }
        Err(corrupt("header length inconsistent".into()))
    }

    /// Store a blob unless it is already in the index or pending in an open
    /// pack. Returns `(id, newly_stored, stored_size)`; `stored_size` is the
    /// encrypted (and compressed) size added to the pack, 0 for duplicates.
    /// `id` may be given when the caller has hashed the data already.
    pub fn save_blob(
        &self,
        blob_type: BlobType,
        data: impl AsRef<[u8]>,
        id: Option<Id>,
    ) -> RepoResult<(Id, bool, u64)> {
        let data = data.as_ref();
        let id = id.unwrap_or_else(|| Id(Sha256::digest(data).into()));
        self.save_blob_with(blob_type, data, id, None)
    }

    /// [`Repository::save_blob`] for a blob whose ID the caller computed and
    /// whose `uncompressed_len` bytes it compressed at zstd `level` with
    /// [`compress_blob`]. `None` (nothing stored) when this repository does
    /// not store such blobs at that level (a version 1 repository, another
    /// `--compression`); the caller then saves the plain bytes.
    pub fn save_blob_precompressed(
        &self,
        blob_type: BlobType,
        id: Id,
        uncompressed_len: usize,
        level: i32,
        compressed: &[u8],
    ) -> RepoResult<Option<(Id, bool, u64)>> {
        if self.blob_level(blob_type, uncompressed_len) != Some(level) {
            return Ok(None);
        }
        self.save_blob_with(
            blob_type,
            &[],
            id,
            Some((level, uncompressed_len, compressed)),
        )
        .map(Some)
    }

    /// Encrypts data blobs that the caller hashed and compressed at zstd
    /// `level` with [`compress_blob`] (`(id, uncompressed length, frame)`)
    /// straight into pack buffers, without storing them: for work that runs
    /// while the index loads (encryption needs only the key).
    /// [`Repository::save_sealed_packs`] stores them. `None` when this
    /// repository does not store data blobs at that level.
    pub fn seal_packs<'a>(
        &self,
        level: i32,
        blobs: impl IntoIterator<Item = (Id, usize, &'a [u8])>,
    ) -> RepoResult<Option<SealedPacks>> {
        let pack_size = self.pack_size();
        let mut packs = Vec::new();
        let mut open: Option<packer::OpenPack> = None;
        for (id, len, compressed) in blobs {
            if self.blob_level(BlobType::Data, len) != Some(level) {
                return Ok(None);
            }
            let uncompressed = u32::try_from(len)
                .ok()
                .filter(|&n| n < u32::MAX - 64)
                .ok_or(RepoError::BlobTooLarge {
                    blob: id,
                    size: len as u64,
                })?;
            let pack = open.get_or_insert_with(|| {
                packer::OpenPack::with_buffer(
                    self.shared.take_pack_buffer(),
                    (pack_size as usize).saturating_add(1 << 20),
                )
                .hashed()
            });
            pack.add_encrypted(
                &self.shared.key,
                BlobType::Data,
                id,
                compressed,
                Some(uncompressed),
            )?;
            if pack.is_full(pack_size) {
                packs.extend(open.take());
            }
        }
        packs.extend(open);
        Ok(Some(SealedPacks { packs }))
    }

    /// Adds buffers for new packs, e.g. from [`prefaulted_pack_buffer`]
    /// (kept up to the spare-buffer limit; the last one given is used first).
    pub fn give_pack_buffers(&self, buffers: Vec<Vec<u8>>) {
        for buffer in buffers {
            self.shared.give_back_pack_buffer(buffer);
        }
    }

    /// Stores packs from [`Repository::seal_packs`]. Blobs already indexed,
    /// pending in an open pack, or sealed twice are left out (their pack is
    /// rebuilt without them). Returns `(id, newly_stored, stored_size)` per
    /// sealed blob, in the order they were sealed.
    pub fn save_sealed_packs(&self, sealed: SealedPacks) -> RepoResult<Vec<(Id, bool, u64)>> {
        self.check_upload_error()?;
        let mut saved = Vec::new();
        for pack in sealed.packs {
            let keep: Vec<bool> = pack
                .blobs
                .iter()
                .map(|b| self.claim_blob(b.blob_type, b.id))
                .collect();
            saved.extend(
                pack.blobs
                    .iter()
                    .zip(&keep)
                    .map(|(b, &new)| (b.id, new, if new { u64::from(b.length) } else { 0 })),
            );
            let pack = if keep.iter().all(|&k| k) {
                pack
            } else {
                pack.retain(&keep)
            };
            if pack.blobs.is_empty() {
                continue;
            }
            let claimed: Vec<(BlobType, Id)> =
                pack.blobs.iter().map(|b| (b.blob_type, b.id)).collect();
            if let Err(e) = self.send_pack(pack) {
                let mut pending = lock_mutex(&self.shared.pending_blobs);
                for c in &claimed {
                    pending.remove(c);
                }
                return Err(e);
            }
        }
        Ok(saved)
    }

    /// The zstd level a blob of `len` bytes is stored at (spec §8: v2
    /// compresses trees always, data unless Off; never empty blobs).
    pub fn blob_level(&self, blob_type: BlobType, len: usize) -> Option<i32> {
        if self.config.version < 2 || len == 0 {
            return None;
        }
        let compression = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .compression;
        match blob_type {
            // A tree this large is a file's content list: blob IDs in hex,
            // which zstd level 1 packs as small as level 3 (measured on a
            // 43 424-block image: 1.51 vs 1.53 MB) at 3.4x the speed.
            BlobType::Tree
                if len > LARGE_TREE
                    && matches!(compression, CompressionMode::Auto | CompressionMode::Off) =>
            {
                Some(1)
            }
            BlobType::Tree => Some(compression.level()),
            BlobType::Data => compression.data_level(),
        }
    }

    fn save_blob_with(
        &self,
        blob_type: BlobType,
        data: &[u8],
        id: Id,
        precompressed: Option<(i32, usize, &[u8])>,
    ) -> RepoResult<(Id, bool, u64)> {
        self.save_with(blob_type, id, || {
            self.seal(blob_type, id, data, precompressed)
                .and_then(|sealed| self.append_sealed(&sealed))
        })
    }

    /// Runs `store` (which returns the bytes it added to a pack) unless the
    /// blob is already indexed or pending: the duplicate check comes before
    /// any compressing and encrypting.
    fn save_with(
        &self,
        blob_type: BlobType,
        id: Id,
        store: impl FnOnce() -> RepoResult<u64>,
    ) -> RepoResult<(Id, bool, u64)> {
        self.check_upload_error()?;
        if !self.claim_blob(blob_type, id) {
            return Ok((id, false, 0));
        }
        match store() {
            Ok(size) => Ok((id, true, size)),
            Err(e) => {
                lock_mutex(&self.shared.pending_blobs).remove(&(blob_type, id));
                Err(e)
            }
        }
    }

    /// Marks a blob pending (about to be stored by the caller) unless it is
    /// indexed or pending already; true when the caller is to store it.
    fn claim_blob(&self, blob_type: BlobType, id: Id) -> bool {
        if self.has_blob(blob_type, &id) {
            return false;
        }
        if !lock_mutex(&self.shared.pending_blobs).insert((blob_type, id)) {
            return false;
        }
        // The index may have gained it between the two checks (a pack
        // finished); then it is stored already.
        if self.has_blob(blob_type, &id) {
            lock_mutex(&self.shared.pending_blobs).remove(&(blob_type, id));
            return false;
        }
        true
    }

    fn check_upload_error(&self) -> RepoResult<()> {
        if self.shared.has_upload_error() {
            let msg = lock_mutex(&self.shared.upload_error)
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(RepoError::UploadFailed(msg));
        }
        Ok(())
    }

    /// Compresses (at the repository's level for the blob) and encrypts a
    /// blob, or encrypts the `precompressed` frame.
    fn seal(
        &self,
        blob_type: BlobType,
        id: Id,
        data: &[u8],
        precompressed: Option<(i32, usize, &[u8])>,
    ) -> RepoResult<SealedBlob> {
        let plain_len = precompressed.map_or(data.len(), |(_, len, _)| len);
        if plain_len as u64 >= u64::from(u32::MAX) - 64 {
            return Err(RepoError::BlobTooLarge {
                blob: id,
                size: plain_len as u64,
            });
        }
        let level = self.blob_level(blob_type, plain_len);
        let (ciphertext, uncompressed_length) = match (level, precompressed) {
            (Some(level), Some((l, len, compressed))) if l == level => {
                (self.shared.key.encrypt(compressed), Some(len as u32))
            }
            (_, Some(_)) => {
                return Err(RepoError::InvalidArgument(format!(
                    "blob {id} was compressed at another level than the repository's"
                )))
            }
            (Some(level), None) => {
                let ciphertext =
                    compress_and_encrypt(&self.shared.key, level, data).map_err(|reason| {
                        RepoError::BlobCorrupt {
                            blob_type,
                            blob: id,
                            pack: Id::NULL,
                            reason: format!("compressing: {reason}"),
                        }
                    })?;
                (ciphertext, Some(data.len() as u32))
            }
            (None, None) => (self.shared.key.encrypt(data), None),
        };
        Ok(SealedBlob {
            blob_type,
            id,
            ciphertext,
            uncompressed_length,
        })
    }

    /// Appends a sealed blob to its type's open pack, handing the pack to
    /// the uploaders when full. Returns the bytes added to the pack.
    fn append_sealed(&self, sealed: &SealedBlob) -> RepoResult<u64> {
        let blob_type = sealed.blob_type;
        let pack_size = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pack_size;
        let full = {
            let mut slot = lock_mutex(&self.packers[packer_slot(blob_type)]);
            let open = slot.get_or_insert_with(|| {
                // Tree packs fill slowly; a fresh (untouched) allocation
                // costs no memory until used, a reused one costs it all.
                let buffer = match blob_type {
                    BlobType::Data => self.shared.take_pack_buffer(),
                    BlobType::Tree => Vec::new(),
                };
                packer::OpenPack::with_buffer(buffer, (pack_size as usize).saturating_add(1 << 20))
            });
            open.add(
                blob_type,
                sealed.id,
                &sealed.ciphertext,
                sealed.uncompressed_length,
            )?;
            if open.is_full(pack_size) {
                slot.take()
            } else {
                None
            }
        };
        if let Some(full) = full {
            self.send_pack(full)?;
        }
        Ok(sealed.ciphertext.len() as u64)
    }

    /// Hands the open pack of `blob_type` to the uploaders now instead of at
    /// [`Repository::flush`]: for a caller that adds no more blobs of that
    /// type, so that storing the pack overlaps with what it does next.
    pub fn finish_open_pack(&self, blob_type: BlobType) -> RepoResult<()> {
        let open = lock_mutex(&self.packers[packer_slot(blob_type)]).take();
        match open {
            Some(open) if !open.blobs.is_empty() => self.send_pack(open),
            _ => Ok(()),
        }
    }

    fn send_pack(&self, pack: packer::OpenPack) -> RepoResult<()> {
        let sender = {
            let mut pool = lock_mutex(&self.uploads);
            let pool = pool.get_or_insert_with(|| {
                packer::UploadPool::start(
                    &self.shared,
                    packer::upload_threads(self.shared.backend.connections()),
                )
            });
            pool.sender()
        };
        sender
            .send(pack)
            .map_err(|_| RepoError::UploadFailed("uploader threads are gone".into()))?;
        self.check_upload_error()
    }

    /// Finish the open packs, wait for all uploads, then write index files
    /// for every stored pack (spec §16). Returns the IDs of the index files
    /// written.
    pub fn flush(&self) -> RepoResult<Vec<Id>> {
        self.flush_in_order(None).map(|(index, _)| index)
    }

    /// Finish the open packs and wait until every pack is stored (or an
    /// upload failed: its error). What [`Repository::flush`] does before
    /// it writes the index files; a backup calls it before it takes the
    /// snapshot's end time and counters, then
    /// [`Repository::flush_and_save_snapshot`].
    pub fn finish_packs(&self) -> RepoResult<()> {
        let _serial = lock_mutex(&self.flush_lock);
        self.finish_uploads()
    }

    /// [`Repository::flush`], then [`Repository::save_snapshot`], with the
    /// index files and the snapshot stored by one
    /// [`Backend::write_in_order`], index files first: the snapshot still
    /// becomes visible only after every index file naming its blobs (spec
    /// §16), but a backend with long round trips uploads them together
    /// (SFTP: two round trips fewer at a backup's end). Returns the
    /// snapshot's ID.
    pub fn flush_and_save_snapshot(&self, snapshot: &Snapshot) -> RepoResult<Id> {
        let (_, saved) = self.flush_in_order(Some(snapshot))?;
        saved.ok_or_else(|| RepoError::InvalidArgument("the snapshot was not stored".into()))
    }

    /// Finish the packs, wait for the uploads, then store the index files
    /// for every stored pack and `snapshot` (when given) by one ordered
    /// write. The IDs of the index files and of the snapshot.
    fn flush_in_order(&self, snapshot: Option<&Snapshot>) -> RepoResult<(Vec<Id>, Option<Id>)> {
        let _serial = lock_mutex(&self.flush_lock);
        self.finish_uploads()?;
        let snapshot = match snapshot {
            Some(snapshot) => {
                // Blobs added since the packs were finished (another thread).
                let unflushed = !lock_mutex(&self.shared.pending_blobs).is_empty()
                    || self.packers.iter().any(|p| lock_mutex(p).is_some());
                if unflushed {
                    return Err(RepoError::NotFlushed);
                }
                Some(self.shared.encode_unpacked(&snapshot_json(snapshot)?))
            }
            None => None,
        };
        let packs = std::mem::take(&mut *lock_mutex(&self.shared.pending_index));
        let index: Vec<(Id, Vec<u8>)> = index_files(packs)
            .iter()
            .map(|file| self.shared.encode_unpacked(&file.to_json()))
            .collect();
        let names: Vec<(FileType, String, &[u8])> = index
            .iter()
            .map(|(id, data)| (FileType::Index, id, data))
            .chain(
                snapshot
                    .iter()
                    .map(|(id, data)| (FileType::Snapshot, id, data)),
            )
            .map(|(file_type, id, data)| (file_type, id.to_hex(), data.as_slice()))
            .collect();
        let files: Vec<(FileType, &str, &[u8])> = names
            .iter()
            .map(|(file_type, name, data)| (*file_type, name.as_str(), *data))
            .collect();
        if !files.is_empty() {
            self.shared.backend.write_in_order(&files)?;
        }
        let index_ids: Vec<Id> = index.iter().map(|(id, _)| *id).collect();
        lock_mutex(&self.shared.index_cache)
            .written
            .extend_from_slice(&index_ids);
        Ok((index_ids, snapshot.map(|(id, _)| id)))
    }

    /// Hand the open packs to the uploaders, wait for every upload, and
    /// report the first upload error. The caller holds `flush_lock`.
    fn finish_uploads(&self) -> RepoResult<()> {
        for slot in &self.packers {
            let open = lock_mutex(slot).take();
            if let Some(open) = open {
                if !open.blobs.is_empty() {
                    self.send_pack(open)?;
                }
            }
        }
        if let Some(pool) = lock_mutex(&self.uploads).take() {
            pool.finish();
        }
        if let Some(e) = lock_mutex(&self.shared.upload_error).take() {
            self.shared.has_upload_error.store(false, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Take a lock on the repository (spec §14); see [`lock`].
    pub fn lock(&self, exclusive: bool) -> Result<LockGuard, LockError> {
        lock::acquire(self, exclusive, None)
    }

    /// Like [`Repository::lock`], retrying for up to `retry` while the
    /// repository is locked (`--retry-lock`).
    pub fn lock_with_retry(
        &self,
        exclusive: bool,
        retry: Option<std::time::Duration>,
    ) -> Result<LockGuard, LockError> {
        lock::acquire(self, exclusive, retry)
    }
}

impl Drop for Repository {
    fn drop(&mut self) {
        // Stop the uploader threads; unflushed data is lost like in restic
        // when a command aborts.
        if let Some(pool) = lock_mutex(&self.uploads).take() {
            pool.finish();
        }
    }
}
