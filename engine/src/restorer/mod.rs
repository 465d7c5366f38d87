//! Restorer: writes a snapshot (or part of it) back to the file system
//! (spec: cli.md §10.4).
//!
//! The restore runs in three phases:
//! 1. **plan** — walk the tree (see [`crate::walker`], which rejects hostile
//!    names and cycles), apply include/exclude patterns, create directories,
//!    symlinks, FIFOs and devices, create every file at its final size, and
//!    group all needed data blobs by pack;
//! 2. **content** — up to `threads` workers take one pack at a time, read
//!    the blobs they need from it, and write each blob to every place it
//!    occurs with positioned writes (`write_at`), so one large file is
//!    written by several workers at once; with `sparse`, all-zero blobs are
//!    not written (the file was sized with `set_len`, so they stay holes);
//! 3. **metadata** — hard links, then ownership, mode, xattrs and times of
//!    files and other nodes, and directories last, deepest first, so their
//!    times are not changed by restoring their contents.
//!
//! A blob that fails verification (MAC, decompression, SHA-256; done by
//! `Repository::load_blob`) fails its files: they are reported with the pack
//! and removed, so no corrupt content stays behind looking restored; the rest
//! of the restore continues and [`RestoreSummary::errors`] counts the
//! failures.
//!
//! Nothing is written outside `target`: names come from the walker (single,
//! safe components), and every directory on the way is checked to be a real
//! directory (a symlink found there is replaced, not followed); files are
//! opened with `O_NOFOLLOW`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use restix_engine::restorer::{NoProgress, RestoreOptions, Restorer};
//! # fn demo(repo: Arc<restix_engine::repository::Repository>, tree: restix_repo_format::Id) {
//! let options = RestoreOptions::new("/tmp/restore");
//! let summary = Restorer::new(repo, options).unwrap().restore(&tree, None, &NoProgress).unwrap();
//! assert_eq!(summary.errors, 0);
//! # }
//! ```

pub mod filter;
mod fsops;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use restix_repo_format::tree::unix_permissions_from_go;
use restix_repo_format::{BlobType, Id, Node, NodeType};
use sha2::{Digest, Sha256};

pub use filter::{FilterPattern, PatternList};

use crate::repository::{BlobLocation, Repository};
use crate::walker::{self, WalkAction, WalkError};

/// Most file handles kept open between blob writes; beyond this, files are
/// opened for each write (bounded file descriptor use).
const MAX_CACHED_HANDLES: usize = 256;

/// Largest single pack range read (bounds memory: one per worker, plus one
/// decoded blob).
const MAX_READ_SIZE: u64 = 8 << 20;

/// Bytes of pack ranges all workers together read at once at most: with
/// many workers each reads less (but at least [`MIN_READ_SIZE`]).
const READ_BUDGET: u64 = 32 << 20;

/// Smallest range limit per worker.
const MIN_READ_SIZE: u64 = 1 << 20;

/// Unneeded bytes between two blobs still read in one request.
const MAX_READ_GAP: u64 = 256 << 10;

/// Options of one restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Folder to restore into (created if missing).
    pub target: PathBuf,
    /// `--include` patterns (restore only matching paths).
    pub include: Vec<FilterPattern>,
    /// `--exclude` patterns (skip matching paths); exclusive with `include`.
    pub exclude: Vec<FilterPattern>,
    /// Parallel pack readers/writers (at least 1).
    pub threads: usize,
    /// Re-read every restored file and check it against the blob IDs.
    pub verify: bool,
    /// Do not write all-zero blobs (leave holes).
    pub sparse: bool,
}

impl RestoreOptions {
    /// Defaults: no filters, 8 threads, no verify, not sparse.
    pub fn new(target: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            target: target.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            threads: 8,
            verify: false,
            sparse: false,
        }
    }
}

/// Progress reports; all methods may be called from several threads.
/// Paths are absolute inside the restored tree (`/dir/file`), raw bytes.
pub trait RestoreProgress: Send + Sync {
    /// Totals, known after planning: nodes (files, dirs, others) and bytes.
    fn planned(&self, _total_files: u64, _total_bytes: u64) {}
    /// A node is completely restored (`size` = content bytes for files).
    fn item_restored(&self, _path: &[u8], _size: u64) {}
    /// `n` more content bytes were written (or skipped as holes).
    fn bytes_restored(&self, _n: u64) {}
    /// A per-item error; the restore goes on (restic: `ignoring error for …`).
    fn error(&self, _path: &[u8], _message: &str) {}
}

/// A progress sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl RestoreProgress for NoProgress {}

/// What a restore did (the numbers of restic's JSON summary, cli.md §11.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Selected nodes: files, directories and others.
    pub total_files: u64,
    /// Nodes restored successfully.
    pub files_restored: u64,
    /// Content bytes of the selected files.
    pub total_bytes: u64,
    /// Content bytes written successfully.
    pub bytes_restored: u64,
    /// Files checked by `verify`.
    pub files_verified: u64,
    /// Per-item errors (each also went to [`RestoreProgress::error`]).
    pub errors: u64,
}

/// Errors that end a restore (per-item errors are counted instead).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("exclude and include patterns are mutually exclusive")]
    IncludeAndExclude,
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// One file to write.
struct FileJob {
    /// Path inside the snapshot (for messages and progress).
    path: Vec<u8>,
    dest: PathBuf,
    node: Node,
    /// Blob writes planned (0: nothing to fetch for this file).
    planned_writes: AtomicUsize,
    /// Blob writes still outstanding.
    remaining: AtomicUsize,
    failed: AtomicBool,
    handle: Mutex<Option<Arc<File>>>,
}

/// One blob to read from a pack and the places it goes.
struct BlobJob {
    id: Id,
    location: BlobLocation,
    /// (file index, offset in file)
    targets: Vec<(usize, u64)>,
}

/// A non-file node whose metadata is applied at the end.
struct MetaJob {
    path: Vec<u8>,
    dest: PathBuf,
    node: Node,
}

/// A hard link to create once its first name is complete.
struct LinkJob {
    path: Vec<u8>,
    dest: PathBuf,
    first: usize,
    node: Node,
}

/// Restores trees from one repository.
pub struct Restorer {
    repo: Arc<Repository>,
    options: RestoreOptions,
    include: PatternList,
    exclude: PatternList,
}

/// Shared state of one restore run.
struct Run<'a> {
    progress: &'a dyn RestoreProgress,
    errors: AtomicU64,
    files_restored: AtomicU64,
    bytes_restored: AtomicU64,
    open_handles: AtomicUsize,
}

impl Run<'_> {
    fn report(&self, path: &[u8], message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.progress.error(path, message);
    }

    fn restored(&self, path: &[u8], size: u64) {
        self.files_restored.fetch_add(1, Ordering::Relaxed);
        self.progress.item_restored(path, size);
    }
}

fn io_err(path: &Path, source: io::Error) -> RestoreError {
    RestoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Restorer {
    /// A restorer for `repo`; fails when both include and exclude are set.
    pub fn new(repo: Arc<Repository>, options: RestoreOptions) -> Result<Restorer, RestoreError> {
        if !options.include.is_empty() && !options.exclude.is_empty() {
            return Err(RestoreError::IncludeAndExclude);
        }
        Ok(Restorer {
            include: PatternList::new(options.include.clone()),
            exclude: PatternList::new(options.exclude.clone()),
            repo,
            options,
        })
    }

    /// restic's selection: `(restore this node, descend into it)`.
    fn select(&self, path: &[u8], is_dir: bool) -> (bool, bool) {
        if !self.exclude.is_empty() {
            let selected = !self.exclude.evaluate(path).0;
            (selected, selected && is_dir)
        } else if !self.include.is_empty() {
            let (matched, child) = self.include.evaluate(path);
            (matched, child && is_dir)
        } else {
            (true, is_dir)
        }
    }

    /// Restore the tree `root` (a snapshot's tree), or its directory
    /// `subfolder` (`snapshot:subfolder`), into the target folder.
    pub fn restore(
        &self,
        root: &Id,
        subfolder: Option<&[u8]>,
        progress: &dyn RestoreProgress,
    ) -> Result<RestoreSummary, RestoreError> {
        let root = match subfolder {
            Some(sub) => walker::resolve_subfolder(&self.repo, root, sub)?,
            None => *root,
        };
        let target = self.options.target.clone();
        std::fs::create_dir_all(&target).map_err(|e| io_err(&target, e))?;
        let run = Run {
            progress,
            errors: AtomicU64::new(0),
            files_restored: AtomicU64::new(0),
            bytes_restored: AtomicU64::new(0),
            open_handles: AtomicUsize::new(0),
        };
        let mut plan = Plan {
            target: target.clone(),
            known_dirs: HashSet::new(),
            files: Vec::new(),
            links: Vec::new(),
            others: Vec::new(),
            dirs: Vec::new(),
            inodes: HashMap::new(),
            total_files: 0,
            total_bytes: 0,
            is_root: fsops::is_root(),
        };

        // Phase 1: plan and create the skeleton. A subtree that cannot be
        // walked is reported and skipped; the rest is restored.
        let mut walk_errors: Vec<(Vec<u8>, String)> = Vec::new();
        walker::walk_lenient(
            &self.repo,
            &root,
            |entry| {
                let is_dir = entry.node.node_type == NodeType::Dir;
                let (selected, descend) = self.select(entry.path, is_dir);
                if selected {
                    plan.add(entry.path, entry.node, &run);
                }
                Ok(if descend {
                    WalkAction::Continue
                } else {
                    WalkAction::SkipChildren
                })
            },
            |path, error| {
                walk_errors.push((path.to_vec(), error.to_string()));
                Ok(())
            },
        )?;
        for (path, message) in &walk_errors {
            run.report(path, message);
        }
        progress.planned(plan.total_files, plan.total_bytes);

        // Phase 2: content, grouped by pack.
        let packs = self.group_by_pack(&plan.files, &run);
        self.write_content(packs, &plan.files, &run);
        for file in &plan.files {
            if file.planned_writes.load(Ordering::Relaxed) == 0
                && !file.failed.load(Ordering::Relaxed)
            {
                // Files without blob writes (empty, or all holes) are done.
                run.restored(&file.path, file.node.size);
            }
        }

        // Phase 3: links and metadata; failed files are removed.
        for file in &plan.files {
            if file.failed.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&file.dest);
            } else {
                apply_metadata(&file.dest, &file.node, &file.path, &run);
            }
        }
        for link in &plan.links {
            let Some(first) = plan.files.get(link.first) else {
                continue;
            };
            if first.failed.load(Ordering::Relaxed) {
                run.report(&link.path, "not linked: the linked file failed to restore");
                continue;
            }
            remove_existing(&link.dest);
            match std::fs::hard_link(&first.dest, &link.dest) {
                Ok(()) => run.restored(&link.path, link.node.size),
                Err(e) => run.report(&link.path, &format!("hard link: {e}")),
            }
        }
        for other in &plan.others {
            apply_metadata(&other.dest, &other.node, &other.path, &run);
            run.restored(&other.path, 0);
        }
        for dir in plan.dirs.iter().rev() {
            apply_metadata(&dir.dest, &dir.node, &dir.path, &run);
            run.restored(&dir.path, 0);
        }

        let mut files_verified = 0;
        if self.options.verify {
            files_verified = self.verify(&plan.files, &run);
        }

        Ok(RestoreSummary {
            total_files: plan.total_files,
            files_restored: run.files_restored.load(Ordering::Relaxed),
            total_bytes: plan.total_bytes,
            bytes_restored: run.bytes_restored.load(Ordering::Relaxed),
            files_verified,
            errors: run.errors.load(Ordering::Relaxed),
        })
    }

    /// Look up every content blob and group the writes by pack. Files with
    /// a blob missing from the index fail here.
    fn group_by_pack(&self, files: &[FileJob], run: &Run<'_>) -> Vec<(Id, Vec<BlobJob>)> {
        let zero_chunk = self.options.sparse.then(zero_chunk_id);
        let mut packs: HashMap<Id, (Vec<BlobJob>, HashMap<Id, usize>)> = HashMap::new();
        for (index, file) in files.iter().enumerate() {
            let Some(content) = &file.node.content else {
                continue;
            };
            let mut offset = 0u64;
            let mut writes = Vec::with_capacity(content.len());
            let mut missing = None;
            for id in content {
                match self.repo.lookup(BlobType::Data, id) {
                    Some(location) => {
                        let len = u64::from(location.plaintext_len());
                        writes.push((*id, location, offset));
                        offset += len;
                    }
                    None => {
                        missing = Some(*id);
                        break;
                    }
                }
            }
            if let Some(id) = missing {
                file.failed.store(true, Ordering::Relaxed);
                run.report(
                    &file.path,
                    &format!("data blob {} not found in index", id.to_hex()),
                );
                continue;
            }
            if let Some(zero) = zero_chunk {
                // The known all-zero chunk stays a hole without being fetched.
                writes.retain(|(id, location, _)| {
                    if *id != zero {
                        return true;
                    }
                    let len = u64::from(location.plaintext_len());
                    run.bytes_restored.fetch_add(len, Ordering::Relaxed);
                    run.progress.bytes_restored(len);
                    false
                });
            }
            file.planned_writes.store(writes.len(), Ordering::Relaxed);
            file.remaining.store(writes.len(), Ordering::Relaxed);
            for (id, location, offset) in writes {
                let (jobs, by_id) = packs.entry(location.pack).or_default();
                let slot = *by_id.entry(id).or_insert_with(|| {
                    jobs.push(BlobJob {
                        id,
                        location,
                        targets: Vec::new(),
                    });
                    jobs.len() - 1
                });
                if let Some(job) = jobs.get_mut(slot) {
                    job.targets.push((index, offset));
                }
            }
        }
        let mut out: Vec<(Id, Vec<BlobJob>)> = packs
            .into_iter()
            .map(|(pack, (mut jobs, _))| {
                jobs.sort_by_key(|j| j.location.offset);
                (pack, jobs)
            })
            .collect();
        // Workers pop from the end: take packs in the order of the file
        // positions they fill, so the files are written front to back
        // (contiguous allocation, no scattered writes into sparse files).
        out.sort_by_key(|(pack, jobs)| {
            let first = jobs
                .iter()
                .filter_map(|j| j.targets.first().copied())
                .min()
                .unwrap_or((usize::MAX, u64::MAX));
            (std::cmp::Reverse(first), *pack)
        });
        out
    }

    fn write_content(&self, packs: Vec<(Id, Vec<BlobJob>)>, files: &[FileJob], run: &Run<'_>) {
        let threads = self.options.threads.max(1).min(packs.len().max(1));
        let queue = Mutex::new(packs);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(_) => None,
                    };
                    let Some((pack, jobs)) = next else {
                        break;
                    };
                    self.restore_pack(&pack, &jobs, files, run);
                });
            }
        });
    }

    /// Read the blobs of one pack and write them to their files. Blobs that
    /// lie close together are read with one range request.
    fn restore_pack(&self, pack: &Id, jobs: &[BlobJob], files: &[FileJob], run: &Run<'_>) {
        let live = |job: &BlobJob| {
            job.targets.iter().any(|(f, _)| {
                files
                    .get(*f)
                    .is_some_and(|file| !file.failed.load(Ordering::Relaxed))
            })
        };
        let max_read =
            (READ_BUDGET / self.options.threads.max(1) as u64).clamp(MIN_READ_SIZE, MAX_READ_SIZE);
        let mut skipped: Vec<&BlobJob> = Vec::new();
        let mut start = 0;
        while start < jobs.len() {
            // Extend the run while the next blob is near and the read small.
            let mut end = start + 1;
            while let (Some(prev), Some(next)) = (jobs.get(end - 1), jobs.get(end)) {
                let first = jobs.get(start).map_or(0, |j| u64::from(j.location.offset));
                let prev_end = u64::from(prev.location.offset) + u64::from(prev.location.length);
                let next_start = u64::from(next.location.offset);
                let next_end = next_start + u64::from(next.location.length);
                if next_start.saturating_sub(prev_end) > MAX_READ_GAP || next_end - first > max_read
                {
                    break;
                }
                end += 1;
            }
            let mut group: Vec<&BlobJob> = Vec::with_capacity(end - start);
            for job in jobs.get(start..end).unwrap_or(&[]) {
                if live(job) {
                    group.push(job);
                } else {
                    skipped.push(job);
                }
            }
            start = end;
            let request: Vec<(BlobType, Id, BlobLocation)> = group
                .iter()
                .map(|j| (BlobType::Data, j.id, j.location))
                .collect();
            // Each blob is written as soon as it is decoded: a worker holds
            // the read range and one decoded blob, never a whole range of
            // decoded blobs.
            let mut delivered = vec![false; group.len()];
            let streamed = self
                .repo
                .load_blobs_from_pack_each(pack, &request, |index, result| {
                    let Some(job) = group.get(index) else {
                        return;
                    };
                    let data = match result {
                        Ok(data) => Ok(data),
                        // Another copy of the blob may be intact.
                        Err(first) => self
                            .repo
                            .load_blob(BlobType::Data, &job.id)
                            .map_err(|_| first.to_string()),
                    };
                    if let Some(flag) = delivered.get_mut(index) {
                        *flag = true;
                    }
                    self.deliver(pack, job, data, files, run);
                });
            if streamed.is_err() {
                // The range could not be read: fetch each blob on its own
                // (other copies may be readable).
                for (job, done) in group.iter().zip(&delivered) {
                    if !done {
                        let data = self
                            .repo
                            .load_blob(BlobType::Data, &job.id)
                            .map_err(|e| e.to_string());
                        self.deliver(pack, job, data, files, run);
                    }
                }
            }
        }
        // Blobs skipped because all their files failed still count down.
        for job in skipped {
            for &(file_index, _) in &job.targets {
                if let Some(file) = files.get(file_index) {
                    if file.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        self.finish_file(file, run);
                    }
                }
            }
        }
    }

    /// Write one loaded blob (or its error) to all places it goes.
    fn deliver(
        &self,
        pack: &Id,
        job: &BlobJob,
        data: Result<Vec<u8>, String>,
        files: &[FileJob],
        run: &Run<'_>,
    ) {
        for &(file_index, offset) in &job.targets {
            let Some(file) = files.get(file_index) else {
                continue;
            };
            if !file.failed.load(Ordering::Relaxed) {
                match &data {
                    Ok(bytes) => {
                        if let Err(e) = self.write_blob(file, offset, bytes, run) {
                            fail_file(file, run, &format!("write: {e}"));
                        }
                    }
                    Err(e) => fail_file(
                        file,
                        run,
                        &format!(
                            "data blob {} in pack {}: {e}",
                            job.id.to_hex(),
                            pack.to_hex()
                        ),
                    ),
                }
            }
            if file.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.finish_file(file, run);
            }
        }
    }

    fn write_blob(
        &self,
        file: &FileJob,
        offset: u64,
        bytes: &[u8],
        run: &Run<'_>,
    ) -> io::Result<()> {
        if self.options.sparse && bytes.iter().all(|&b| b == 0) {
            // The file already has its final size: the range reads as zeros.
            run.bytes_restored
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            run.progress.bytes_restored(bytes.len() as u64);
            return Ok(());
        }
        let handle = {
            let mut slot = file
                .handle
                .lock()
                .map_err(|_| io::Error::other("poisoned lock"))?;
            match &*slot {
                Some(h) => Arc::clone(h),
                None => {
                    let h = Arc::new(open_for_write(&file.dest)?);
                    if run.open_handles.load(Ordering::Relaxed) < MAX_CACHED_HANDLES {
                        run.open_handles.fetch_add(1, Ordering::Relaxed);
                        *slot = Some(Arc::clone(&h));
                    }
                    h
                }
            }
        };
        handle.write_all_at(bytes, offset)?;
        run.bytes_restored
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        run.progress.bytes_restored(bytes.len() as u64);
        Ok(())
    }

    fn finish_file(&self, file: &FileJob, run: &Run<'_>) {
        if let Ok(mut slot) = file.handle.lock() {
            if slot.take().is_some() {
                run.open_handles.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !file.failed.load(Ordering::Relaxed) {
            run.restored(&file.path, file.node.size);
        }
    }

    /// Re-read restored files and check each blob range's SHA-256 against
    /// its blob ID. Returns the number of files checked.
    fn verify(&self, files: &[FileJob], run: &Run<'_>) -> u64 {
        let mut verified = 0;
        for file in files {
            if file.failed.load(Ordering::Relaxed) {
                continue;
            }
            let Some(content) = &file.node.content else {
                continue;
            };
            verified += 1;
            let lengths: Option<Vec<u64>> = content
                .iter()
                .map(|id| {
                    self.repo
                        .lookup(BlobType::Data, id)
                        .map(|l| u64::from(l.plaintext_len()))
                })
                .collect();
            let Some(lengths) = lengths else {
                run.report(&file.path, "verify: data blob not found in index");
                continue;
            };
            if let Err(message) = verify_file(&file.dest, content, &lengths) {
                run.report(&file.path, &format!("verify: {message}"));
            }
        }
        verified
    }
}

/// ID of the chunk restic's chunker cuts from a long run of zero bytes: an
/// all-zero window has fingerprint 0, so zero runs are cut every `MinSize`
/// = 512 KiB (spec: restic-format §13, §15.9).
fn zero_chunk_id() -> Id {
    static ZERO: std::sync::OnceLock<Id> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| Id::hash(&vec![0u8; ZERO_CHUNK_SIZE]))
}

/// restic's chunker `MinSize`.
const ZERO_CHUNK_SIZE: usize = 512 << 10;

fn verify_file(dest: &Path, content: &[Id], lengths: &[u64]) -> Result<(), String> {
    let mut f = open_nofollow_read(dest).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for (id, &len) in content.iter().zip(lengths) {
        buf.resize(usize::try_from(len).map_err(|e| e.to_string())?, 0);
        f.read_exact(&mut buf).map_err(|e| e.to_string())?;
        if Sha256::digest(&buf).as_slice() != id.as_bytes() {
            return Err(format!("content differs from blob {}", id.to_hex()));
        }
    }
    let mut rest = [0u8; 1];
    if f.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err("file is longer than its content".to_string());
    }
    Ok(())
}

fn fail_file(file: &FileJob, run: &Run<'_>, message: &str) {
    // Only the first error of a file is reported.
    if !file.failed.swap(true, Ordering::AcqRel) {
        run.report(&file.path, message);
    }
}

fn open_nofollow_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn open_for_write(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Remove whatever is at `path` (file, symlink, or an empty directory; a
/// non-empty directory is left alone and the create that follows fails).
/// Errors are left to that create.
fn remove_existing(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Ownership, xattrs (before chmod: user xattrs need write permission),
/// permissions, times; errors are reported per item.
fn apply_metadata(dest: &Path, node: &Node, path: &[u8], run: &Run<'_>) {
    let is_symlink = node.node_type == NodeType::Symlink;
    if let Err(e) = fsops::lchown(dest, node.uid, node.gid) {
        // Without root, foreign ownership cannot be restored: not an error.
        if fsops::is_root() || e.raw_os_error() != Some(libc::EPERM) {
            run.report(path, &format!("lchown: {e}"));
        }
    }
    for attr in &node.extended_attributes {
        // Best effort: file systems without xattr support are common.
        let _ = fsops::lsetxattr(dest, &attr.name, attr.value.as_deref().unwrap_or(&[]));
    }
    if !is_symlink {
        let mode = unix_permissions_from_go(node.mode);
        if let Err(e) = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode)) {
            run.report(path, &format!("chmod: {e}"));
        }
    }
    if let Err(e) = fsops::set_times_nofollow(dest, &node.atime, &node.mtime) {
        run.report(path, &format!("utimes: {e}"));
    }
}

/// Planning state.
struct Plan {
    target: PathBuf,
    /// Directories known to be real directories (created or checked).
    known_dirs: HashSet<PathBuf>,
    files: Vec<FileJob>,
    links: Vec<LinkJob>,
    others: Vec<MetaJob>,
    dirs: Vec<MetaJob>,
    /// (device_id, inode) of multiply linked files → file index.
    inodes: HashMap<(u64, u64), usize>,
    total_files: u64,
    total_bytes: u64,
    is_root: bool,
}

impl Plan {
    fn dest_of(&self, path: &[u8]) -> PathBuf {
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        self.target.join(OsStr::from_bytes(rel))
    }

    /// Make sure `dir` (below the target) is a real directory, creating it
    /// and its parents; a non-directory in the way is replaced.
    fn ensure_dir(&mut self, dir: &Path) -> io::Result<()> {
        if dir == self.target || self.known_dirs.contains(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            if parent.starts_with(&self.target) {
                self.ensure_dir(parent)?;
            }
        }
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(dir)?;
                create_private_dir(dir)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_private_dir(dir)?,
            Err(e) => return Err(e),
        }
        self.known_dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn ensure_parent(&mut self, dest: &Path) -> io::Result<()> {
        match dest.parent() {
            Some(parent) => self.ensure_dir(parent),
            None => Ok(()),
        }
    }

    fn add(&mut self, path: &[u8], node: &Node, run: &Run<'_>) {
        let dest = self.dest_of(path);
        self.total_files += 1;
        let result = match node.node_type {
            NodeType::Dir => self.add_dir(path, node, dest),
            NodeType::File => self.add_file(path, node, dest),
            NodeType::Symlink => self.add_special(path, node, dest, |d| {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.linktarget), d)
            }),
            NodeType::Fifo => self.add_special(path, node, dest, |d| {
                fsops::mkfifo(d, unix_permissions_from_go(node.mode))
            }),
            NodeType::Dev | NodeType::CharDev => {
                if !self.is_root {
                    // Device nodes need root; restic reports nothing either.
                    self.total_files -= 1;
                    return;
                }
                let char_device = node.node_type == NodeType::CharDev;
                self.add_special(path, node, dest, |d| {
                    fsops::mknod(
                        d,
                        unix_permissions_from_go(node.mode),
                        char_device,
                        node.device,
                    )
                })
            }
            _ => {
                // Sockets and irregular files cannot be restored.
                self.total_files -= 1;
                return;
            }
        };
        if let Err(e) = result {
            run.report(path, &e.to_string());
        }
    }

    fn add_dir(&mut self, path: &[u8], node: &Node, dest: PathBuf) -> io::Result<()> {
        self.ensure_dir(&dest)?;
        self.dirs.push(MetaJob {
            path: path.to_vec(),
            dest,
            node: node.clone(),
        });
        Ok(())
    }

    fn add_special(
        &mut self,
        path: &[u8],
        node: &Node,
        dest: PathBuf,
        create: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        self.ensure_parent(&dest)?;
        remove_existing(&dest);
        create(&dest)?;
        self.others.push(MetaJob {
            path: path.to_vec(),
            dest,
            node: node.clone(),
        });
        Ok(())
    }

    fn add_file(&mut self, path: &[u8], node: &Node, dest: PathBuf) -> io::Result<()> {
        self.ensure_parent(&dest)?;
        if node.links > 1 && node.inode != 0 {
            if let Some(&first) = self.inodes.get(&(node.device_id, node.inode)) {
                self.links.push(LinkJob {
                    path: path.to_vec(),
                    dest,
                    first,
                    node: node.clone(),
                });
                return Ok(());
            }
            self.inodes
                .insert((node.device_id, node.inode), self.files.len());
        }
        let file = match create_file(&dest) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EISDIR)) => {
                remove_existing(&dest);
                create_file(&dest)?
            }
            Err(e) => return Err(e),
        };
        file.set_len(node.size)?;
        drop(file);
        self.total_bytes += node.size;
        self.files.push(FileJob {
            path: path.to_vec(),
            dest,
            node: node.clone(),
            planned_writes: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            handle: Mutex::new(None),
        });
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

fn create_file(dest: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest)
}

#[cfg(test)]
mod tests;
