//! Restorer: writes a snapshot (or part of it) back to the file system
//! (spec: cli.md §10.4; behaviour of restic 0.18's internal/restorer).
//!
//! The restore runs in three phases:
//! 1. **plan** — walk the tree (see [`crate::walker`], which rejects hostile
//!    names and cycles), apply include/exclude patterns and `--overwrite`
//!    (see [`existing`]: a file already correct is only given its metadata
//!    and counted as skipped), create directories, symlinks, FIFOs and
//!    devices, create every file to write at its final size, and group all
//!    needed data blobs by pack;
//! 2. **content** — up to `threads` workers take one pack at a time, read
//!    the blobs they need from it, and write each blob to every place it
//!    occurs with positioned writes (`write_at`), so one large file is
//!    written by several workers at once; with `sparse`, all-zero blobs are
//!    not written (the file was sized with `set_len`, so they stay holes);
//! 3. **metadata** — hard links, `--delete`, then ownership, mode, xattrs
//!    and times of files and other nodes, and directories last, deepest
//!    first, so their times are not changed by restoring their contents.
//!
//! **Nothing restored is thrown away, nothing already there is lost.** A
//! blob that cannot be read (missing pack, failed MAC, decompression or
//! SHA-256 check; `Repository::load_blob`) or written (a full disk) fails
//! its files, but a new file keeps every byte that was restored and the
//! error names the missing byte ranges (they read as zeros). A file that
//! already existed and needs new content is written beside it
//! (`.NAME.restix-PID-N`) and renamed over it only once complete; if it
//! fails, the existing file is left as it was. The rest of the restore goes
//! on; [`RestoreSummary::errors`] counts the failed items. A failed file
//! keeps mode 0600 and its current modification time, so a later
//! `--overwrite if-changed` restores it again.
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

mod delete;
pub mod existing;
pub mod filter;
mod fsops;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use restix_repo_format::tree::unix_permissions_from_go;
use restix_repo_format::{BlobType, Id, Node, NodeType};
use sha2::{Digest, Sha256};

pub use existing::Overwrite;
pub use filter::{FilterPattern, PatternList};

use crate::go_error;
use crate::repository::{BlobLocation, Repository};
use crate::walker::{self, WalkAction, WalkError};
use existing::ExistingFile;

/// Most file handles kept open between blob writes; beyond this, files are
/// opened for each write (bounded file descriptor use).
const MAX_CACHED_HANDLES: usize = 256;

/// Largest single pack range read (bounds memory: one per worker, plus one
/// decoded blob): a default-size pack in one request, as restic reads it
/// (16 MiB, and a pack closes only after the blob that crosses the mark, so
/// packs of 17-20 MiB are common). Each request costs a round trip or two
/// on a remote backend, so a worker reading a pack in several ranges is
/// latency-bound (issue #20).
const MAX_READ_SIZE: u64 = 24 << 20;

/// Bytes of pack ranges all workers together read at once at most: with
/// many workers each reads less (but at least [`MIN_READ_SIZE`]).
const READ_BUDGET: u64 = 64 << 20;

/// A backend with `n` connections may have `n` whole packs in flight (see
/// [`MAX_READ_SIZE`]) even when that exceeds [`READ_BUDGET`]: on a remote
/// backend each worker then reads a pack in one request (at 100 ms round
/// trip, two rounds of reads instead of four for a 140 MiB image).
const PACK_READ_PER_CONNECTION: u64 = MAX_READ_SIZE;

/// Smallest range limit per worker.
const MIN_READ_SIZE: u64 = 1 << 20;

/// Unneeded bytes between two blobs still read in one request.
const MAX_READ_GAP: u64 = 256 << 10;

/// Go's `os.ModeSymlink` bit in a node's mode.
const GO_MODE_SYMLINK: u32 = 1 << 27;

/// Missing ranges listed in one error message at most.
const MAX_LISTED_RANGES: usize = 8;

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
    /// `--overwrite`: what to do with items already at the destination.
    pub overwrite: Overwrite,
    /// `--delete`: remove what the snapshot does not have (filter permitting).
    pub delete: bool,
    /// `--dry-run`: decide and report everything, change nothing.
    pub dry_run: bool,
    /// `--include-xattr`: restore only extended attributes matching these.
    pub xattr_include: Vec<FilterPattern>,
    /// `--exclude-xattr`: do not restore extended attributes matching these.
    pub xattr_exclude: Vec<FilterPattern>,
}

impl RestoreOptions {
    /// Defaults: no filters, 8 threads, no verify, not sparse, overwrite
    /// `always`, no delete, not a dry run, all xattrs.
    pub fn new(target: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            target: target.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            threads: 8,
            verify: false,
            sparse: false,
            overwrite: Overwrite::Always,
            delete: false,
            dry_run: false,
            xattr_include: Vec::new(),
            xattr_exclude: Vec::new(),
        }
    }
}

/// What happened to an item (restic's `ItemAction`s, shown by `-vv` and
/// `--json -vv` as `restored`, `updated`, `unchanged`, `deleted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemAction {
    /// A directory's metadata was restored.
    DirRestored,
    /// A file that did not exist (or was not a readable file) was written.
    FileRestored,
    /// A file that existed got its new content.
    FileUpdated,
    /// A file was already correct, or `--overwrite` left it alone.
    FileUnchanged,
    /// A symlink, FIFO, device or extra hard link was created.
    OtherRestored,
    /// An entry the snapshot does not have was removed (`--delete`).
    Deleted,
}

impl ItemAction {
    /// The word restic prints for the action.
    pub fn verb(self) -> &'static str {
        match self {
            ItemAction::DirRestored | ItemAction::FileRestored | ItemAction::OtherRestored => {
                "restored"
            }
            ItemAction::FileUpdated => "updated",
            ItemAction::FileUnchanged => "unchanged",
            ItemAction::Deleted => "deleted",
        }
    }

    /// restic's text output adds "with size" only for file actions.
    pub fn shows_size(self) -> bool {
        matches!(
            self,
            ItemAction::FileRestored | ItemAction::FileUpdated | ItemAction::FileUnchanged
        )
    }
}

/// Progress reports; all methods may be called from several threads.
/// Paths are absolute inside the restored tree (`/dir/file`), raw bytes,
/// except for [`ItemAction::Deleted`], whose path is the file-system path
/// removed (as restic reports it).
pub trait RestoreProgress: Send + Sync {
    /// Totals, known after planning: items and content bytes to restore.
    fn planned(&self, _total_files: u64, _total_bytes: u64) {}
    /// An item is complete (`size` = content bytes for files).
    fn item_done(&self, _path: &[u8], _action: ItemAction, _size: u64) {}
    /// `n` more content bytes were written (or skipped as holes or kept).
    fn bytes_restored(&self, _n: u64) {}
    /// A per-item error; the restore goes on (restic: `ignoring error for …`).
    fn error(&self, _path: &[u8], _message: &str) {}
}

/// A progress sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl RestoreProgress for NoProgress {}

/// What a restore did (the numbers of restic 0.18's JSON summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Items to restore: files, directories and others (skipped files not
    /// included, as in restic).
    pub total_files: u64,
    /// Items restored completely.
    pub files_restored: u64,
    /// Files (and items) left as they were: already correct or kept by
    /// `--overwrite`.
    pub files_skipped: u64,
    /// Paths removed by `--delete`.
    pub files_deleted: u64,
    /// Content bytes of the files to restore.
    pub total_bytes: u64,
    /// Content bytes written (or already correct in an updated file).
    pub bytes_restored: u64,
    /// Content bytes of the skipped files.
    pub bytes_skipped: u64,
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
    #[error("exclude and include xattr patterns are mutually exclusive")]
    XattrIncludeAndExclude,
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The text is restic's (`mkdir PATH: reason`).
    #[error("cannot create target directory: {message}")]
    Target { message: String },
}

/// Why a file could not be completed.
#[derive(Default)]
struct Failure {
    /// The first error (the one reported).
    first: Option<String>,
    /// Byte ranges `(offset, length)` not restored.
    missing: Vec<(u64, u64)>,
}

/// One file to write.
struct FileJob {
    /// Path inside the snapshot (for messages and progress).
    path: Vec<u8>,
    /// The file's place in the target.
    dest: PathBuf,
    /// Where the content is written: `dest`, or a new file beside it that
    /// replaces an existing file once complete.
    write_path: PathBuf,
    /// `write_path` is a new file beside an existing `dest`.
    replacing: bool,
    /// What was at `dest` (restic's `fileState`): `Some` makes the action
    /// `updated` and lets correct blobs be kept.
    existing: Option<ExistingFile>,
    node: Node,
    /// Blob writes planned (0: nothing to fetch for this file).
    planned_writes: AtomicUsize,
    /// Blob writes still outstanding.
    remaining: AtomicUsize,
    failed: AtomicBool,
    finished: AtomicBool,
    failure: Mutex<Failure>,
    handle: Mutex<Option<Arc<File>>>,
}

impl FileJob {
    fn action(&self) -> ItemAction {
        if self.existing.is_some() {
            ItemAction::FileUpdated
        } else {
            ItemAction::FileRestored
        }
    }

    /// Still worth writing to: a failed replacement is discarded anyway.
    fn live(&self) -> bool {
        !(self.replacing && self.failed.load(Ordering::Relaxed))
    }

    /// Record that `len` bytes at `offset` are missing because of `reason`.
    fn fail(&self, offset: u64, len: u64, reason: impl FnOnce() -> String) {
        self.failed.store(true, Ordering::Release);
        if let Ok(mut failure) = self.failure.lock() {
            if failure.first.is_none() {
                failure.first = Some(reason());
            }
            failure.missing.push((offset, len));
        }
    }
}

/// One blob to read from a pack and the places it goes.
struct BlobJob {
    id: Id,
    location: BlobLocation,
    /// (file index, offset in file)
    targets: Vec<(usize, u64)>,
}

/// A node whose metadata is applied at the end.
struct MetaJob {
    path: Vec<u8>,
    dest: PathBuf,
    node: Node,
}

/// A hard link to create once its first name is complete.
struct LinkJob {
    path: Vec<u8>,
    dest: PathBuf,
    /// The first name's place in the target.
    first_dest: PathBuf,
    /// The first name's file job, if it was written by this restore.
    first_file: Option<usize>,
    node: Node,
}

/// Restores trees from one repository.
pub struct Restorer {
    repo: Arc<Repository>,
    options: RestoreOptions,
    include: PatternList,
    exclude: PatternList,
    xattr_include: PatternList,
    xattr_exclude: PatternList,
}

/// Shared state of one restore run.
struct Run<'a> {
    progress: &'a dyn RestoreProgress,
    errors: AtomicU64,
    files_restored: AtomicU64,
    files_skipped: AtomicU64,
    bytes_skipped: AtomicU64,
    files_deleted: AtomicU64,
    bytes_restored: AtomicU64,
    open_handles: AtomicUsize,
}

impl Run<'_> {
    fn report(&self, path: &[u8], message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.progress.error(path, message);
    }

    fn done(&self, path: &[u8], action: ItemAction, size: u64) {
        self.files_restored.fetch_add(1, Ordering::Relaxed);
        self.progress.item_done(path, action, size);
    }

    fn skipped(&self, path: &[u8], size: u64) {
        self.files_skipped.fetch_add(1, Ordering::Relaxed);
        self.bytes_skipped.fetch_add(size, Ordering::Relaxed);
        self.progress
            .item_done(path, ItemAction::FileUnchanged, size);
    }

    fn bytes(&self, n: u64) {
        self.bytes_restored.fetch_add(n, Ordering::Relaxed);
        self.progress.bytes_restored(n);
    }
}

impl Restorer {
    /// A restorer for `repo`; fails when both include and exclude are set
    /// (for paths or for xattrs).
    pub fn new(repo: Arc<Repository>, options: RestoreOptions) -> Result<Restorer, RestoreError> {
        if !options.include.is_empty() && !options.exclude.is_empty() {
            return Err(RestoreError::IncludeAndExclude);
        }
        if !options.xattr_include.is_empty() && !options.xattr_exclude.is_empty() {
            return Err(RestoreError::XattrIncludeAndExclude);
        }
        Ok(Restorer {
            include: PatternList::new(options.include.clone()),
            exclude: PatternList::new(options.exclude.clone()),
            xattr_include: PatternList::new(options.xattr_include.clone()),
            xattr_exclude: PatternList::new(options.xattr_exclude.clone()),
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

    /// restic's xattr filter (`--include-xattr`/`--exclude-xattr`).
    fn xattr_selected(&self, name: &[u8]) -> bool {
        if !self.xattr_exclude.is_empty() {
            !self.xattr_exclude.evaluate(name).0
        } else if !self.xattr_include.is_empty() {
            self.xattr_include.evaluate(name).0
        } else {
            true
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
        // restic reports deleted paths below the absolute target.
        let target = std::path::absolute(&self.options.target)
            .unwrap_or_else(|_| self.options.target.clone());
        if !self.options.dry_run {
            std::fs::create_dir_all(&target).map_err(|e| RestoreError::Target {
                message: go_error::path_error("mkdir", &target, &e),
            })?;
        }
        let run = Run {
            progress,
            errors: AtomicU64::new(0),
            files_restored: AtomicU64::new(0),
            files_skipped: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            files_deleted: AtomicU64::new(0),
            bytes_restored: AtomicU64::new(0),
            open_handles: AtomicUsize::new(0),
        };
        let mut plan = Plan {
            restorer: self,
            target: target.clone(),
            known_dirs: HashSet::new(),
            files: Vec::new(),
            unchanged: Vec::new(),
            links: Vec::new(),
            others: Vec::new(),
            dirs: Vec::new(),
            inodes: HashMap::new(),
            children: HashMap::new(),
            restored_dirs: HashSet::new(),
            broken_dirs: HashSet::new(),
            total_files: 0,
            total_bytes: 0,
            is_root: fsops::is_root(),
            temp_counter: 0,
        };

        // Phase 1: plan and create the skeleton. A subtree that cannot be
        // walked is reported and skipped; the rest is restored.
        let mut walk_errors: Vec<(Vec<u8>, String)> = Vec::new();
        walker::walk_lenient(
            &self.repo,
            &root,
            |entry| {
                plan.note_child(entry.path);
                let is_dir = entry.node.node_type == NodeType::Dir;
                let (selected, descend) = self.select(entry.path, is_dir);
                if selected {
                    plan.mark_restored(entry.path);
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
            // Never delete in a directory whose listing is unknown.
            plan.broken_dirs.insert(path.clone());
            plan.broken_dirs.insert(parent_of(path).to_vec());
            run.report(path, message);
        }
        progress.planned(plan.total_files, plan.total_bytes);

        // Phase 2: content, grouped by pack.
        let packs = self.group_by_pack(&plan.files, &run);
        self.write_content(packs, &plan.files, &run);
        for file in &plan.files {
            // Files without outstanding blob writes (empty, all holes, all
            // kept, or failed before any write was planned).
            if file.remaining.load(Ordering::Acquire) == 0 {
                self.finish_file(file, &run);
            }
        }

        // Phase 3: links, deletions and metadata.
        if !self.options.dry_run {
            for file in &plan.files {
                if !file.failed.load(Ordering::Relaxed) {
                    self.apply_metadata(&file.dest, &file.node, &file.path, &run);
                }
            }
            for meta in &plan.unchanged {
                self.apply_metadata(&meta.dest, &meta.node, &meta.path, &run);
            }
        }
        for link in &plan.links {
            self.restore_link(link, &plan.files, &run);
        }
        for other in &plan.others {
            if !self.options.dry_run {
                self.apply_metadata(&other.dest, &other.node, &other.path, &run);
            }
            run.done(&other.path, ItemAction::OtherRestored, 0);
        }
        // Directories deepest first: their contents are complete.
        let mut restored_dirs: Vec<&Vec<u8>> = plan.restored_dirs.iter().collect();
        restored_dirs.sort_by(|a, b| b.cmp(a));
        let dir_jobs: HashMap<&[u8], &MetaJob> =
            plan.dirs.iter().map(|d| (d.path.as_slice(), d)).collect();
        for dir in plan.dirs_deepest_first() {
            if self.options.delete {
                self.delete_unexpected(&plan, &dir.path, &dir.dest, &run);
            }
            let ok =
                self.options.dry_run || self.apply_metadata(&dir.dest, &dir.node, &dir.path, &run);
            if ok {
                run.done(&dir.path, ItemAction::DirRestored, 0);
            }
        }
        if self.options.delete {
            // Directories not selected themselves but holding selected
            // items, and the root, are cleaned too (restic's leaveDir).
            for path in restored_dirs {
                if !dir_jobs.contains_key(path.as_slice()) {
                    let dest = plan.dest_of(path);
                    self.delete_unexpected(&plan, path, &dest, &run);
                }
            }
        }

        let mut files_verified = 0;
        if self.options.verify && !self.options.dry_run {
            files_verified = self.verify(&plan.files, &run);
        }

        Ok(RestoreSummary {
            total_files: plan.total_files,
            files_restored: run.files_restored.load(Ordering::Relaxed),
            files_skipped: run.files_skipped.load(Ordering::Relaxed),
            files_deleted: run.files_deleted.load(Ordering::Relaxed),
            total_bytes: plan.total_bytes,
            bytes_restored: run.bytes_restored.load(Ordering::Relaxed),
            bytes_skipped: run.bytes_skipped.load(Ordering::Relaxed),
            files_verified,
            errors: run.errors.load(Ordering::Relaxed),
        })
    }

    /// `--delete` in one directory: `path` inside the snapshot, `dest` in
    /// the target.
    fn delete_unexpected(&self, plan: &Plan<'_>, path: &[u8], dest: &Path, run: &Run<'_>) {
        if plan.broken_dirs.contains(path) {
            return;
        }
        let empty = HashSet::new();
        let expected = plan.children.get(path).unwrap_or(&empty);
        let names = match delete::unexpected_entries(dest, expected) {
            Ok(Some(names)) => names,
            Ok(None) => return,
            Err(e) => {
                run.report(
                    path_or_root(path),
                    &go_error::path_error("readdirent", dest, &e),
                );
                return;
            }
        };
        for name in names {
            let mut location = path.to_vec();
            location.push(b'/');
            location.extend_from_slice(&name);
            // Only what the filter would restore is deleted.
            if !self.select(&location, false).0 {
                continue;
            }
            match delete::remove_entry(dest, &name, self.options.dry_run) {
                Ok(paths) => {
                    for removed in paths {
                        run.files_deleted.fetch_add(1, Ordering::Relaxed);
                        run.progress.item_done(
                            removed.as_os_str().as_bytes(),
                            ItemAction::Deleted,
                            0,
                        );
                    }
                }
                Err(e) => run.report(&location, &format!("delete: {}", go_error::io_text(&e))),
            }
        }
    }

    fn restore_link(&self, link: &LinkJob, files: &[FileJob], run: &Run<'_>) {
        if let Some(first) = link.first_file.and_then(|i| files.get(i)) {
            if first.failed.load(Ordering::Relaxed) {
                run.report(&link.path, "not linked: the linked file failed to restore");
                return;
            }
        }
        if !self.options.dry_run {
            remove_existing(&link.dest);
            if let Err(e) = std::fs::hard_link(&link.first_dest, &link.dest) {
                run.report(&link.path, &go_error::path_error("link", &link.dest, &e));
                return;
            }
        }
        run.done(&link.path, ItemAction::OtherRestored, 0);
        if !self.options.dry_run {
            self.apply_metadata(&link.dest, &link.node, &link.path, run);
        }
    }

    /// Look up every content blob and group the writes by pack. Blobs the
    /// existing file already has are copied into the new file here (or
    /// left in place); a file with a blob missing from the index fails for
    /// the bytes from that blob on.
    fn group_by_pack(&self, files: &[FileJob], run: &Run<'_>) -> Vec<(Id, Vec<BlobJob>)> {
        let zero_chunk = self.options.sparse.then(zero_chunk_id);
        let mut packs: HashMap<Id, (Vec<BlobJob>, HashMap<Id, usize>)> = HashMap::new();
        for (index, file) in files.iter().enumerate() {
            let Some(content) = &file.node.content else {
                continue;
            };
            let mut offset = 0u64;
            let mut writes = Vec::with_capacity(content.len());
            let mut old: Option<(File, File)> = None;
            for (blob_index, id) in content.iter().enumerate() {
                let Some(location) = self.repo.lookup(BlobType::Data, id) else {
                    let rest = file.node.size.saturating_sub(offset);
                    file.fail(offset, rest, || {
                        format!("data blob {} not found in index", id.to_hex())
                    });
                    break;
                };
                let len = u64::from(location.plaintext_len());
                let kept = file.replacing
                    && file
                        .existing
                        .as_ref()
                        .is_some_and(|e| e.has_matching_blob(blob_index));
                if kept {
                    if file.replacing && file.live() {
                        if let Err(e) = self.copy_kept(file, &mut old, id, offset, len) {
                            file.fail(offset, len, || {
                                go_error::path_error("copy from", &file.dest, &e)
                            });
                        }
                    }
                    run.bytes(len);
                } else if zero_chunk == Some(*id) {
                    // The known all-zero chunk stays a hole without a fetch.
                    run.bytes(len);
                } else {
                    writes.push((*id, location, offset));
                }
                offset += len;
            }
            file.planned_writes.store(writes.len(), Ordering::Relaxed);
            file.remaining.store(writes.len(), Ordering::Release);
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

    /// Copy one blob the existing file already has into its replacement.
    fn copy_kept(
        &self,
        file: &FileJob,
        files: &mut Option<(File, File)>,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        if files.is_none() {
            *files = Some((
                open_nofollow_read(&file.dest)?,
                open_for_write(&file.write_path)?,
            ));
        }
        let Some((from, to)) = files.as_ref() else {
            return Err(io::Error::other("existing file not open"));
        };
        existing::copy_verified_range(from, to, offset, len, id, self.options.sparse)
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
            job.targets
                .iter()
                .any(|(f, _)| files.get(*f).is_some_and(FileJob::live))
        };
        let connections = self.repo.backend().connections() as u64;
        let budget = READ_BUDGET.max(connections.saturating_mul(PACK_READ_PER_CONNECTION));
        let max_read =
            (budget / self.options.threads.max(1) as u64).clamp(MIN_READ_SIZE, MAX_READ_SIZE);
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
                    self.deliver(job, data, files, run);
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
                        self.deliver(job, data, files, run);
                    }
                }
            }
        }
        // Blobs skipped because all their files failed still count down.
        for job in skipped {
            for &(file_index, offset) in &job.targets {
                if let Some(file) = files.get(file_index) {
                    let len = u64::from(job.location.plaintext_len());
                    file.fail(offset, len, || "skipped after an earlier error".to_string());
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
        job: &BlobJob,
        data: Result<Vec<u8>, String>,
        files: &[FileJob],
        run: &Run<'_>,
    ) {
        let len = u64::from(job.location.plaintext_len());
        for &(file_index, offset) in &job.targets {
            let Some(file) = files.get(file_index) else {
                continue;
            };
            if file.live() {
                match &data {
                    Ok(bytes) => {
                        if let Err(e) = self.write_blob(file, offset, bytes, run) {
                            file.fail(offset, len, || {
                                go_error::path_error("write", &file.write_path, &e)
                            });
                        }
                    }
                    // The repository's error names the blob and the pack.
                    Err(e) => file.fail(offset, len, || e.clone()),
                }
            } else {
                file.fail(offset, len, || "skipped after an earlier error".to_string());
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
            run.bytes(bytes.len() as u64);
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
                    let h = Arc::new(open_for_write(&file.write_path)?);
                    if run.open_handles.load(Ordering::Relaxed) < MAX_CACHED_HANDLES {
                        run.open_handles.fetch_add(1, Ordering::Relaxed);
                        *slot = Some(Arc::clone(&h));
                    }
                    h
                }
            }
        };
        handle.write_all_at(bytes, offset)?;
        run.bytes(bytes.len() as u64);
        Ok(())
    }

    /// The file's last blob is done: close it, put a replacement in place,
    /// report the outcome (once).
    fn finish_file(&self, file: &FileJob, run: &Run<'_>) {
        if file.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut slot) = file.handle.lock() {
            if slot.take().is_some() {
                run.open_handles.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !file.failed.load(Ordering::Acquire) && file.replacing {
            if let Err(e) = std::fs::rename(&file.write_path, &file.dest) {
                file.fail(0, file.node.size, || {
                    format!("replace the existing file: {e}")
                });
            }
        }
        if !file.failed.load(Ordering::Acquire) {
            run.done(&file.path, file.action(), file.node.size);
            return;
        }
        let failure = match file.failure.lock() {
            Ok(mut f) => std::mem::take(&mut *f),
            Err(_) => Failure::default(),
        };
        let first = failure.first.unwrap_or_else(|| "unknown error".to_string());
        let message = if file.replacing {
            let _ = std::fs::remove_file(&file.write_path);
            format!("{first}; the existing file was left unchanged")
        } else {
            let missing = merge_ranges(failure.missing);
            let lost: u64 = missing.iter().map(|(_, len)| len).sum();
            // Not one byte reached the disk (no block allocated; a blob
            // whose write failed half-way still leaves its first bytes, which
            // are kept): a file of zeros would only look like a restored
            // file. restic 0.18 likewise creates a file at its first blob.
            let nothing_written = lost >= file.node.size
                && file.node.size > 0
                && file.node.links <= 1
                && std::fs::symlink_metadata(&file.write_path).is_ok_and(|m| m.blocks() == 0);
            if nothing_written && std::fs::remove_file(&file.write_path).is_ok() {
                run.report(
                    &file.path,
                    &format!("{first}; nothing of it could be restored, the file was not created"),
                );
                return;
            }
            format!(
                "{first}; kept {} of {} bytes, missing {}",
                file.node.size.saturating_sub(lost),
                file.node.size,
                describe_ranges(&missing)
            )
        };
        run.report(&file.path, &message);
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

    /// Ownership, xattrs (before chmod: user xattrs need write permission),
    /// permissions, times; errors are reported per item. Returns whether
    /// everything was applied.
    fn apply_metadata(&self, dest: &Path, node: &Node, path: &[u8], run: &Run<'_>) -> bool {
        let mut ok = true;
        let is_symlink = node.node_type == NodeType::Symlink;
        if let Err(e) = fsops::lchown(dest, node.uid, node.gid) {
            // Without root, foreign ownership cannot be restored: not an error.
            if fsops::is_root() || e.raw_os_error() != Some(libc::EPERM) {
                run.report(path, &go_error::path_error("lchown", dest, &e));
                ok = false;
            }
        }
        for attr in &node.extended_attributes {
            if !self.xattr_selected(&attr.name) {
                continue;
            }
            // Best effort: file systems without xattr support are common.
            let _ = fsops::lsetxattr(dest, &attr.name, attr.value.as_deref().unwrap_or(&[]));
        }
        if !is_symlink {
            let mut mode = unix_permissions_from_go(node.mode);
            if node.node_type == NodeType::Dir && node.mode & GO_MODE_SYMLINK != 0 {
                // A directory stored with a symlink's mode (0777, by
                // restix before it stored symlinked parents as restic
                // does) never becomes world-writable here.
                mode &= !0o022;
            }
            if let Err(e) = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode)) {
                run.report(path, &go_error::path_error("chmod", dest, &e));
                ok = false;
            }
        }
        if let Err(e) = fsops::set_times_nofollow(dest, &node.atime, &node.mtime) {
            run.report(path, &go_error::path_error("utimes", dest, &e));
            ok = false;
        }
        ok
    }
}

/// `/` for the root's empty path.
fn path_or_root(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        b"/"
    } else {
        path
    }
}

/// The parent of a snapshot path (`/a/b` → `/a`, `/a` → ``).
fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.get(..i).unwrap_or(&[]),
        None => &[],
    }
}

/// Sort and join touching `(offset, length)` ranges.
fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (offset, len) in ranges {
        if len == 0 {
            continue;
        }
        match out.last_mut() {
            Some((start, length)) if *start + *length >= offset => {
                *length = (*length).max(offset + len - *start);
            }
            _ => out.push((offset, len)),
        }
    }
    out
}

/// `bytes 0-1023, 4096-8191` (inclusive ends), at most
/// [`MAX_LISTED_RANGES`] ranges.
fn describe_ranges(ranges: &[(u64, u64)]) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(MAX_LISTED_RANGES)
        .map(|(offset, len)| format!("{}-{}", offset, offset + len - 1))
        .collect();
    if ranges.len() > MAX_LISTED_RANGES {
        parts.push(format!(
            "and {} more ranges",
            ranges.len() - MAX_LISTED_RANGES
        ));
    }
    if parts.is_empty() {
        "no bytes".to_string()
    } else {
        format!("bytes {}", parts.join(", "))
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

/// Planning state.
struct Plan<'r> {
    restorer: &'r Restorer,
    target: PathBuf,
    /// Directories known to be real directories (created or checked).
    known_dirs: HashSet<PathBuf>,
    files: Vec<FileJob>,
    /// Files already correct: only their metadata is restored.
    unchanged: Vec<MetaJob>,
    links: Vec<LinkJob>,
    others: Vec<MetaJob>,
    dirs: Vec<MetaJob>,
    /// (device_id, inode) of multiply linked files → (first name's place,
    /// its file job if written by this restore).
    inodes: HashMap<(u64, u64), (PathBuf, Option<usize>)>,
    /// Names in each walked directory of the snapshot (`--delete` keeps them).
    children: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Directories (root = ``) with something restored in or below them.
    restored_dirs: HashSet<Vec<u8>>,
    /// Directories whose listing could not be loaded completely.
    broken_dirs: HashSet<Vec<u8>>,
    total_files: u64,
    total_bytes: u64,
    is_root: bool,
    temp_counter: u64,
}

impl Plan<'_> {
    fn options(&self) -> &RestoreOptions {
        &self.restorer.options
    }

    fn dest_of(&self, path: &[u8]) -> PathBuf {
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        self.target.join(OsStr::from_bytes(rel))
    }

    /// Remember `path`'s name in its directory's listing.
    fn note_child(&mut self, path: &[u8]) {
        if !self.options().delete {
            return;
        }
        let parent = parent_of(path);
        let name = path.get(parent.len() + 1..).unwrap_or(&[]);
        self.children
            .entry(parent.to_vec())
            .or_default()
            .insert(name.to_vec());
    }

    /// Mark the directories above a selected item as restored.
    fn mark_restored(&mut self, path: &[u8]) {
        let mut dir = parent_of(path);
        loop {
            if !self.restored_dirs.insert(dir.to_vec()) || dir.is_empty() {
                return;
            }
            dir = parent_of(dir);
        }
    }

    /// Selected directories, deepest first.
    fn dirs_deepest_first(&self) -> impl Iterator<Item = &MetaJob> {
        self.dirs.iter().rev()
    }

    /// Make sure `dir` (below the target) is a real directory, creating it
    /// and its parents; a non-directory in the way is replaced.
    fn ensure_dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.options().dry_run || dir == self.target || self.known_dirs.contains(dir) {
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
        let result = match node.node_type {
            NodeType::Dir => self.add_dir(path, node, dest),
            NodeType::File => self.add_file(path, node, dest, run),
            NodeType::Symlink => self.add_special(path, node, dest, run, |d| {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.linktarget), d)
            }),
            NodeType::Fifo => self.add_special(path, node, dest, run, |d| {
                fsops::mkfifo(d, unix_permissions_from_go(node.mode))
            }),
            NodeType::Dev | NodeType::CharDev => {
                if !self.is_root {
                    // Device nodes need root; restic reports nothing either.
                    return;
                }
                let char_device = node.node_type == NodeType::CharDev;
                self.add_special(path, node, dest, run, |d| {
                    fsops::mknod(
                        d,
                        unix_permissions_from_go(node.mode),
                        char_device,
                        node.device,
                    )
                })
            }
            // Sockets and irregular files cannot be restored.
            _ => return,
        };
        if let Err(e) = result {
            run.report(
                path,
                &go_error::path_error("create", &self.dest_of(path), &e),
            );
        }
    }

    fn add_dir(&mut self, path: &[u8], node: &Node, dest: PathBuf) -> io::Result<()> {
        self.total_files += 1;
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
        run: &Run<'_>,
        create: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        self.total_files += 1;
        self.ensure_parent(&dest)?;
        if !existing::should_overwrite(self.options().overwrite, node, &dest)? {
            run.skipped(path, node.size);
            return Ok(());
        }
        if !self.options().dry_run {
            remove_existing(&dest);
            create(&dest)?;
        }
        self.others.push(MetaJob {
            path: path.to_vec(),
            dest,
            node: node.clone(),
        });
        Ok(())
    }

    fn add_file(
        &mut self,
        path: &[u8],
        node: &Node,
        dest: PathBuf,
        run: &Run<'_>,
    ) -> io::Result<()> {
        self.ensure_parent(&dest)?;
        let overwrite = self.options().overwrite;
        if node.links > 1 && node.inode != 0 {
            let key = (node.device_id, node.inode);
            if let Some((first_dest, first_file)) = self.inodes.get(&key).cloned() {
                // A further name of a file restored above: a hard link
                // (restic counts it, with no bytes).
                self.total_files += 1;
                if !existing::should_overwrite(overwrite, node, &dest)? {
                    run.skipped(path, 0);
                    return Ok(());
                }
                self.links.push(LinkJob {
                    path: path.to_vec(),
                    dest,
                    first_dest,
                    first_file,
                    node: node.clone(),
                });
                return Ok(());
            }
            // The job index is filled in once the file is really written.
            self.inodes.insert(key, (dest.clone(), None));
        }
        if !existing::should_overwrite(overwrite, node, &dest)? {
            run.skipped(path, node.size);
            return Ok(());
        }
        let lengths: Vec<Option<u64>> = node
            .content
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|id| {
                self.restorer
                    .repo
                    .lookup(BlobType::Data, id)
                    .map(|l| u64::from(l.plaintext_len()))
            })
            .collect();
        let existing = existing::inspect(&dest, node, &lengths, overwrite == Overwrite::IfChanged);
        if existing.as_ref().is_some_and(|e| !e.needs_restore()) {
            run.skipped(path, node.size);
            self.unchanged.push(MetaJob {
                path: path.to_vec(),
                dest,
                node: node.clone(),
            });
            return Ok(());
        }
        self.total_files += 1;
        self.total_bytes += node.size;
        if self.options().dry_run {
            let action = if existing.is_some() {
                ItemAction::FileUpdated
            } else {
                ItemAction::FileRestored
            };
            run.bytes(node.size);
            run.done(path, action, node.size);
            return Ok(());
        }
        let is_regular = std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file());
        let (write_path, replacing) = if is_regular {
            // Keep the existing file until the new content is complete.
            (self.create_beside(&dest, node.size)?, true)
        } else {
            let file = match create_file(&dest) {
                Ok(f) => f,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EISDIR)) => {
                    if self.options().delete {
                        // restic removes recursively what is in the way
                        // when --delete is given.
                        if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                            std::fs::remove_dir_all(&dest)?;
                        }
                    }
                    remove_existing(&dest);
                    create_file(&dest)?
                }
                Err(e) => return Err(e),
            };
            file.set_len(node.size)?;
            (dest.clone(), false)
        };
        if node.links > 1 && node.inode != 0 {
            let index = self.files.len();
            if let Some(entry) = self.inodes.get_mut(&(node.device_id, node.inode)) {
                entry.1 = Some(index);
            }
        }
        self.files.push(FileJob {
            path: path.to_vec(),
            dest,
            write_path,
            replacing,
            existing,
            node: node.clone(),
            planned_writes: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            failure: Mutex::new(Failure::default()),
            handle: Mutex::new(None),
        });
        Ok(())
    }

    /// A new, empty file of `size` bytes next to `dest`.
    fn create_beside(&mut self, dest: &Path, size: u64) -> io::Result<PathBuf> {
        let name = dest.file_name().unwrap_or_default().as_bytes();
        let parent = dest.parent().unwrap_or(&self.target).to_path_buf();
        loop {
            self.temp_counter += 1;
            let mut temp = b".".to_vec();
            temp.extend_from_slice(name);
            temp.extend_from_slice(
                format!(".restix-{}-{}", std::process::id(), self.temp_counter).as_bytes(),
            );
            let path = parent.join(OsStr::from_bytes(&temp));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => {
                    if let Err(e) = file.set_len(size) {
                        let _ = std::fs::remove_file(&path);
                        return Err(e);
                    }
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
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
