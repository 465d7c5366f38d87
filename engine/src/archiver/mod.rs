//! Archiver: turns files and directories into trees, blobs and a snapshot.
//!
//! [`Archiver::backup`] walks the targets, chunks every file with restic's
//! chunker (the repository's polynomial), stores the chunks as data blobs,
//! builds one tree per directory bottom-up (nodes filled as restic does,
//! spec: restic-format §11.5), flushes the repository and writes the
//! snapshot. All CPU work runs on one thread pool of `threads` threads;
//! at most `read_concurrency` files are read at once; one large file at a
//! time goes through the pipeline of `pipeline`: windows read and chunked
//! while the pool hashes and stores the chunks of earlier windows, with the
//! windows in memory capped by bytes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use restix_engine::archiver::{ArchiveOptions, Archiver, NoProgress};
//! # fn demo(repo: Arc<restix_engine::repository::Repository>) -> Result<(), restix_engine::archiver::ArchiveError> {
//! let mut archiver = Archiver::new(repo, ArchiveOptions::default());
//! let summary = archiver.backup(&["/srv/data".into()], &NoProgress)?;
//! println!("snapshot {} saved", summary.snapshot_id.short());
//! # Ok(()) }
//! ```

pub mod exclude;
pub mod node;
mod pipeline;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use restix_chunker::Chunker;
use restix_repo_format::{BlobType, GoTime, Id, Node, NodeType, Snapshot, SnapshotSummary, Tree};
use sha2::{Digest, Sha256};

use crate::repository::{os_identity, RepoError, Repository};
use crate::semaphore::Semaphore;

pub use exclude::ExcludeMatcher;

/// Files at least this large are chunked with the parallel chunker.
const LARGE_FILE: u64 = 32 << 20;

/// Data read from stdin instead of files (`--stdin`).
pub struct StdinSource {
    /// File name stored in the snapshot (`--stdin-filename`, default `stdin`).
    pub filename: String,
    /// The data.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinSource")
            .field("filename", &self.filename)
            .finish()
    }
}

/// Options of one backup.
#[derive(Debug)]
pub struct ArchiveOptions {
    /// Busy threads at most (0 = number of CPUs).
    pub threads: usize,
    /// Files read at once (0 = 2, restic's default).
    pub read_concurrency: usize,
    /// `--exclude` patterns (restic semantics, see [`exclude`]).
    pub excludes: Vec<String>,
    /// `--exclude-larger-than` in bytes.
    pub exclude_larger_than: Option<u64>,
    /// Host name for the snapshot ("" = this host's name).
    pub hostname: String,
    /// Snapshot tags.
    pub tags: Vec<String>,
    /// Snapshot time (`--time`); default now.
    pub time: Option<GoTime>,
    /// Parent snapshot for change detection.
    pub parent: Option<Id>,
    /// Re-read all files even if the parent says they are unchanged.
    pub force: bool,
    /// `--ignore-inode` (implies ignoring ctime).
    pub ignore_inode: bool,
    /// `--ignore-ctime`.
    pub ignore_ctime: bool,
    /// `--with-atime`.
    pub with_atime: bool,
    /// `--one-file-system`: skip items on other file systems than their target.
    pub one_file_system: bool,
    /// Read data from here instead of the paths.
    pub stdin: Option<StdinSource>,
    /// Skip the size pre-scan (no totals for progress).
    pub no_scan: bool,
    /// `program_version` of the snapshot.
    pub program_version: String,
    /// Files at least this large go through the windowed pipeline that
    /// spreads one file over all threads (default 32 MiB); smaller ones are
    /// read `read_concurrency` at a time, each on one thread.
    pub large_file_threshold: u64,
    /// Wall-clock start of the command (summary `backup_start`); default:
    /// when `backup` is called.
    pub backup_start: Option<GoTime>,
    // --- restic 0.18 exclusion and snapshot flags (see [`exclude`]) ---
    /// `--iexclude` patterns (case-insensitive).
    pub iexcludes: Vec<String>,
    /// `--exclude-if-present` specs (`filename[:header]`); `--exclude-caches`
    /// adds [`exclude::CACHEDIR_TAG_SPEC`].
    pub exclude_if_present: Vec<String>,
    /// `--skip-if-unchanged`: store no snapshot when its tree is the
    /// parent's (the summary's `snapshot_id` is then [`Id::NULL`]).
    pub skip_if_unchanged: bool,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            threads: 0,
            read_concurrency: 0,
            excludes: Vec::new(),
            exclude_larger_than: None,
            hostname: String::new(),
            tags: Vec::new(),
            time: None,
            parent: None,
            force: false,
            ignore_inode: false,
            ignore_ctime: false,
            with_atime: false,
            one_file_system: false,
            stdin: None,
            no_scan: false,
            program_version: format!("restix {}", env!("CARGO_PKG_VERSION")),
            backup_start: None,
            large_file_threshold: LARGE_FILE,
            iexcludes: Vec::new(),
            exclude_if_present: Vec::new(),
            skip_if_unchanged: false,
        }
    }
}

/// How an item compares with the parent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// Not in the parent.
    New,
    /// In the parent, but different.
    Changed,
    /// Same as in the parent.
    Unchanged,
}

/// Progress callbacks. Called from many threads.
#[allow(unused_variables)]
pub trait ArchiveProgress: Sync {
    /// The size scan found more: totals so far.
    fn scan_progress(&self, files: u64, dirs: u64, bytes: u64) {}
    /// The size scan is done.
    fn scan_finished(&self, files: u64, dirs: u64, bytes: u64, duration: Duration) {}
    /// A file starts being read (`path` on disk, `item` in the snapshot).
    fn file_started(&self, path: &Path, item: &[u8]) {}
    /// File bytes were read (or found unchanged).
    fn bytes_done(&self, bytes: u64) {}
    /// A file is done: its size, status, and the new data it added
    /// (plaintext / stored bytes).
    #[allow(clippy::too_many_arguments)]
    fn file_done(
        &self,
        path: &Path,
        item: &[u8],
        size: u64,
        status: ItemStatus,
        added: u64,
        stored: u64,
        duration: Duration,
    ) {
    }
    /// A directory's tree was stored.
    fn dir_done(
        &self,
        path: &Path,
        item: &[u8],
        status: ItemStatus,
        added: u64,
        stored: u64,
        duration: Duration,
    ) {
    }
    /// An item could not be read; it is left out and the backup continues
    /// (exit code 3 at the end). `during` is `"scan"` or `"archival"`.
    fn error(&self, path: &Path, during: &str, error: &std::io::Error) {}
}

/// A progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ArchiveProgress for NoProgress {}

/// Errors that abort a backup.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The repository failed (upload, index, ...).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// No target exists.
    #[error("all source directories/files do not exist")]
    AllTargetsMissing,
    /// Nothing to back up.
    #[error("nothing to backup, please specify source files/dirs")]
    NoTargets,
    /// Nothing was saved (e.g. empty stdin).
    #[error("unable to save snapshot: snapshot is empty")]
    EmptySnapshot,
    /// A target path that cannot be used.
    #[error("invalid target {0:?}")]
    InvalidTarget(String),
    /// Building the thread pool failed.
    #[error("starting worker threads: {0}")]
    Threads(String),
    /// A tree could not be encoded.
    #[error("encoding tree: {0}")]
    Tree(String),
    /// Reading stdin failed.
    #[error("read {path}: {source}")]
    Stdin {
        /// The stdin file name in the snapshot.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The chunker rejected the repository's polynomial.
    #[error("chunker: {0}")]
    Chunker(String),
}

/// What a backup did: the counters of restic's JSON summary.
#[derive(Debug, Clone, Default)]
pub struct BackupSummary {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent (not read).
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unmodified: u64,
    /// New data blobs stored.
    pub data_blobs: u64,
    /// New tree blobs stored.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs (data + tree).
    pub data_added: u64,
    /// Bytes the new blobs take in packs (compressed + encrypted).
    pub data_added_packed: u64,
    /// new + changed + unmodified files.
    pub total_files_processed: u64,
    /// Sum of file sizes.
    pub total_bytes_processed: u64,
    /// Wall-clock duration of the backup.
    pub total_duration: Duration,
    /// `backup_start` (see [`ArchiveOptions::backup_start`]).
    pub backup_start: GoTime,
    /// When the snapshot was written.
    pub backup_end: GoTime,
    /// The new snapshot.
    pub snapshot_id: Id,
    /// Its content.
    pub snapshot: Snapshot,
    /// Items that could not be read (exit code 3 when > 0).
    pub errors: u64,
    /// Targets that did not exist (warned and skipped).
    pub missing_targets: Vec<PathBuf>,
    /// The parent snapshot used, if any.
    pub parent: Option<Id>,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
    bytes_processed: AtomicU64,
    errors: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The archiver for one repository.
pub struct Archiver {
    repo: Arc<Repository>,
    options: ArchiveOptions,
}

/// Per-backup state shared by the workers.
struct Run<'a> {
    repo: &'a Repository,
    options: RunOptions,
    excludes: ExcludeMatcher,
    chunker: Chunker,
    threads: usize,
    read_slots: Semaphore,
    large_file: Mutex<()>,
    counters: Counters,
    progress: &'a dyn ArchiveProgress,
}

/// The options the workers need (`ArchiveOptions` holds the non-`Sync` stdin reader).
#[derive(Debug, Clone, Copy)]
struct RunOptions {
    with_atime: bool,
    force: bool,
    ignore_ctime: bool,
    ignore_inode: bool,
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
    large_file_threshold: u64,
}

/// The virtual tree of targets (spec §11.5 "the snapshot root mirrors the
/// absolute target path").
#[derive(Debug, Default)]
struct VirtualDir {
    /// Real path whose metadata the intermediate directory node carries.
    meta_path: Option<PathBuf>,
    children: BTreeMap<Vec<u8>, VirtualEntry>,
}

#[derive(Debug)]
enum VirtualEntry {
    /// A backup target: archived completely.
    Target(PathBuf),
    /// An intermediate directory.
    Dir(VirtualDir),
}

/// `filepath.Abs`: join with the working directory and clean lexically
/// (no symlink resolution).
pub fn absolute_path(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(p)
    };
    clean_path(&joined)
}

/// Lexical cleaning like Go's `filepath.Clean` for absolute paths.
fn clean_path(p: &Path) -> PathBuf {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
        }
    }
    let mut r = PathBuf::from("/");
    for c in out {
        r.push(c);
    }
    r
}

/// Path components used for the snapshot tree: absolute targets keep all
/// components; relative ones drop `.` and `..` (restic stores `data` at
/// `/data`, `../x` at `/x`).
fn tree_components(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

fn build_virtual_tree(targets: &[PathBuf]) -> VirtualDir {
    let mut root = VirtualDir::default();
    for target in targets {
        let comps = tree_components(target);
        let Some((leaf, parents)) = comps.split_last() else {
            continue;
        };
        // Real path of every prefix, for the intermediate nodes' metadata.
        let mut prefix = if target.is_absolute() {
            PathBuf::from("/")
        } else {
            PathBuf::new()
        };
        let mut prefixes = Vec::new();
        for c in target.components() {
            match c {
                Component::Normal(s) => {
                    prefix.push(s);
                    prefixes.push(prefix.clone());
                }
                Component::ParentDir => prefix.push(".."),
                _ => {}
            }
        }
        insert_target(&mut root, parents, &prefixes, leaf, target);
    }
    root
}

fn insert_target(
    dir: &mut VirtualDir,
    parents: &[Vec<u8>],
    prefixes: &[PathBuf],
    leaf: &[u8],
    target: &Path,
) {
    if let Some((name, rest)) = parents.split_first() {
        let entry = dir.children.entry(name.clone()).or_insert_with(|| {
            VirtualEntry::Dir(VirtualDir {
                meta_path: prefixes.first().cloned(),
                children: BTreeMap::new(),
            })
        });
        match entry {
            VirtualEntry::Dir(d) => {
                insert_target(d, rest, prefixes.get(1..).unwrap_or(&[]), leaf, target)
            }
            // A parent of this target is a target itself: covered already.
            VirtualEntry::Target(_) => {}
        }
        return;
    }
    match dir.children.get(leaf) {
        None | Some(VirtualEntry::Dir(_)) => {
            // A target replaces an intermediate directory (its contents
            // include the other targets).
            dir.children
                .insert(leaf.to_vec(), VirtualEntry::Target(target.to_path_buf()));
        }
        Some(VirtualEntry::Target(existing)) if existing == target => {}
        Some(VirtualEntry::Target(_)) => {
            // Same base name, different parent: `name-1`, `name-2`, ...
            let mut i = 1;
            loop {
                let mut name = leaf.to_vec();
                name.extend_from_slice(format!("-{i}").as_bytes());
                if let std::collections::btree_map::Entry::Vacant(slot) = dir.children.entry(name) {
                    slot.insert(VirtualEntry::Target(target.to_path_buf()));
                    return;
                }
                i += 1;
            }
        }
    }
}

/// Expand targets that consist only of `.`/`..` into their entries (restic:
/// `.` puts the directory's children at the root).
fn expand_relative_targets(targets: &[PathBuf], progress: &dyn ArchiveProgress) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for t in targets {
        if tree_components(t).is_empty() {
            match std::fs::read_dir(t) {
                Ok(entries) => {
                    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
                    names.sort();
                    out.extend(names.into_iter().map(|n| t.join(n)));
                }
                Err(e) => progress.error(t, "archival", &e),
            }
        } else {
            out.push(t.clone());
        }
    }
    out
}

impl Archiver {
    /// An archiver writing into `repo` (with its index loaded).
    pub fn new(repo: Arc<Repository>, options: ArchiveOptions) -> Self {
        Archiver { repo, options }
    }

    /// Back up `paths` (or stdin, if set in the options) and write a snapshot.
    pub fn backup(
        &mut self,
        paths: &[PathBuf],
        progress: &dyn ArchiveProgress,
    ) -> Result<BackupSummary, ArchiveError> {
        let started = Instant::now();
        let backup_start = self.options.backup_start.unwrap_or_else(GoTime::now_local);
        let threads = if self.options.threads == 0 {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2)
        } else {
            self.options.threads
        };
        let read_concurrency = if self.options.read_concurrency == 0 {
            2
        } else {
            self.options.read_concurrency
        };
        let chunker = Chunker::new(self.repo.polynomial())
            .map_err(|e| ArchiveError::Chunker(e.to_string()))?;
        let stdin = self.options.stdin.take();
        let options = &self.options;
        let run = Run {
            repo: &self.repo,
            options: RunOptions {
                with_atime: options.with_atime,
                force: options.force,
                ignore_ctime: options.ignore_ctime,
                ignore_inode: options.ignore_inode,
                one_file_system: options.one_file_system,
                exclude_larger_than: options.exclude_larger_than,
                large_file_threshold: options.large_file_threshold,
            },
            excludes: ExcludeMatcher::new(&options.excludes)
                .with_insensitive(&options.iexcludes)
                .with_tag_files(&options.exclude_if_present),
            chunker,
            threads,
            read_slots: Semaphore::new(read_concurrency),
            large_file: Mutex::new(()),
            counters: Counters::default(),
            progress,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("restix-archiver-{i}"))
            .build()
            .map_err(|e| ArchiveError::Threads(e.to_string()))?;

        let snapshot_time = options.time.unwrap_or_else(GoTime::now_local);
        let mut missing = Vec::new();
        let (root, snapshot_paths, parent_used) = if let Some(stdin) = stdin {
            let (tree, path) = pool.install(|| run.archive_stdin(stdin, snapshot_time))?;
            (tree, vec![path], None)
        } else {
            if paths.is_empty() {
                return Err(ArchiveError::NoTargets);
            }
            let mut existing = Vec::new();
            for p in paths {
                match std::fs::symlink_metadata(p) {
                    Ok(_) => existing.push(p.clone()),
                    Err(e) => {
                        let err = std::io::Error::new(
                            e.kind(),
                            format!("{} does not exist, skipping", p.display()),
                        );
                        progress.error(p, "scan", &err);
                        missing.push(p.clone());
                    }
                }
            }
            if existing.is_empty() {
                return Err(ArchiveError::AllTargetsMissing);
            }
            let snapshot_paths: Vec<String> = existing
                .iter()
                .map(|p| absolute_path(p).to_string_lossy().into_owned())
                .collect();
            let targets = expand_relative_targets(&existing, progress);
            let vtree = build_virtual_tree(&targets);
            let parent_tree = match options.parent {
                Some(id) if !options.force => {
                    let snap = self.repo.load_snapshot(&id)?;
                    snap.tree.and_then(|t| self.repo.load_tree(&t).ok())
                }
                _ => None,
            };
            if !options.no_scan {
                let scan_targets = targets.clone();
                let excludes = run.excludes.clone();
                std::thread::scope(|s| -> Result<Tree, ArchiveError> {
                    s.spawn(|| scan(&scan_targets, &excludes, progress));
                    pool.install(|| run.archive_virtual(&vtree, parent_tree.as_ref()))
                })
                .map(|t| (t, snapshot_paths, options.parent.filter(|_| !options.force)))?
            } else {
                let t = pool.install(|| run.archive_virtual(&vtree, parent_tree.as_ref()))?;
                (t, snapshot_paths, options.parent.filter(|_| !options.force))
            }
        };
        if root.nodes.is_empty() {
            return Err(ArchiveError::EmptySnapshot);
        }
        let root_id = run.save_tree(&root)?;
        // Every pack stored before the end time and counters are taken; the
        // index files and the snapshot are then stored together below.
        self.repo.finish_packs()?;

        let c = &run.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (uid, gid) = os_identity::uid_gid();
        let hostname = if options.hostname.is_empty() {
            os_identity::hostname()
        } else {
            options.hostname.clone()
        };
        let files_total = get(&c.files_new) + get(&c.files_changed) + get(&c.files_unmodified);
        let backup_end = GoTime::now_local();
        let summary = SnapshotSummary {
            backup_start,
            backup_end,
            files_new: get(&c.files_new),
            files_changed: get(&c.files_changed),
            files_unmodified: get(&c.files_unmodified),
            dirs_new: get(&c.dirs_new),
            dirs_changed: get(&c.dirs_changed),
            dirs_unmodified: get(&c.dirs_unmodified),
            data_blobs: get(&c.data_blobs) as i64,
            tree_blobs: get(&c.tree_blobs) as i64,
            data_added: get(&c.data_added),
            data_added_packed: get(&c.data_added_packed),
            total_files_processed: files_total,
            total_bytes_processed: get(&c.bytes_processed),
        };
        let snapshot = Snapshot {
            time: snapshot_time,
            parent: parent_used,
            tree: Some(root_id),
            paths: snapshot_paths,
            hostname,
            username: os_identity::username(),
            uid,
            gid,
            excludes: options.excludes.clone(),
            tags: options.tags.clone(),
            original: None,
            program_version: options.program_version.clone(),
            summary: Some(summary.clone()),
        };
        let unchanged = match (options.skip_if_unchanged, parent_used) {
            (true, Some(parent)) => self.repo.load_snapshot(&parent)?.tree == Some(root_id),
            _ => false,
        };
        // Index files first, then the snapshot (spec §16), in one ordered
        // write: the snapshot's upload overlaps the index's.
        let snapshot_id = if unchanged {
            self.repo.flush()?;
            Id::NULL
        } else {
            self.repo.flush_and_save_snapshot(&snapshot)?
        };
        Ok(BackupSummary {
            files_new: summary.files_new,
            files_changed: summary.files_changed,
            files_unmodified: summary.files_unmodified,
            dirs_new: summary.dirs_new,
            dirs_changed: summary.dirs_changed,
            dirs_unmodified: summary.dirs_unmodified,
            data_blobs: get(&c.data_blobs),
            tree_blobs: get(&c.tree_blobs),
            data_added: summary.data_added,
            data_added_packed: summary.data_added_packed,
            total_files_processed: files_total,
            total_bytes_processed: summary.total_bytes_processed,
            total_duration: started.elapsed(),
            backup_start,
            backup_end,
            snapshot_id,
            snapshot,
            errors: get(&c.errors),
            missing_targets: missing,
            parent: parent_used,
        })
    }
}

/// Count files/dirs/bytes for progress totals (restic's scanner).
fn scan(targets: &[PathBuf], excludes: &ExcludeMatcher, progress: &dyn ArchiveProgress) {
    let started = Instant::now();
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    let mut stack: Vec<(PathBuf, bool)> = targets.iter().map(|t| (t.clone(), true)).collect();
    let mut last = Instant::now();
    while let Some((p, is_target)) = stack.pop() {
        let abs = absolute_path(&p);
        if !is_target && excludes.is_excluded(abs.as_os_str().as_bytes()) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            dirs += 1;
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| (e.path(), false)));
            }
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
        if last.elapsed() > Duration::from_millis(100) {
            progress.scan_progress(files, dirs, bytes);
            last = Instant::now();
        }
    }
    progress.scan_finished(files, dirs, bytes, started.elapsed());
}

/// restic's change detection (archiver `fileChanged`): type, mtime, size,
/// ctime (unless ignored), inode (unless ignored) must match.
fn file_unchanged(old: &Node, new: &Node, ignore_ctime: bool, ignore_inode: bool) -> bool {
    old.node_type == NodeType::File
        && old.mtime.unix_nanos() == new.mtime.unix_nanos()
        && old.size == new.size
        && (ignore_ctime || ignore_inode || old.ctime.unix_nanos() == new.ctime.unix_nanos())
        && (ignore_inode || old.inode == new.inode)
}

impl Run<'_> {
    fn save_tree(&self, tree: &Tree) -> Result<Id, ArchiveError> {
        let bytes = tree
            .encode()
            .map_err(|e| ArchiveError::Tree(e.to_string()))?;
        let (id, new, stored) = self.repo.save_blob(BlobType::Tree, &bytes, None)?;
        if new {
            inc(&self.counters.tree_blobs, 1);
            inc(&self.counters.data_added, bytes.len() as u64);
            inc(&self.counters.data_added_packed, stored);
        }
        Ok(id)
    }

    /// Report an unreadable item with Go's `*PathError` text
    /// (`open /x: permission denied`), as restic prints it.
    fn note_error(&self, op: &str, path: &Path, e: &std::io::Error) {
        let text = crate::go_error::io_text(e);
        let wrapped = std::io::Error::new(e.kind(), format!("{op} {}: {text}", path.display()));
        self.note_error_text(path, &wrapped);
    }

    fn note_error_text(&self, path: &Path, e: &std::io::Error) {
        inc(&self.counters.errors, 1);
        self.progress.error(path, "archival", e);
    }

    /// Archive the virtual tree of targets; returns the root tree.
    fn archive_virtual(
        &self,
        dir: &VirtualDir,
        parent: Option<&Tree>,
    ) -> Result<Tree, ArchiveError> {
        let entries: Vec<(&Vec<u8>, &VirtualEntry)> = dir.children.iter().collect();
        let nodes: Vec<Result<Option<Node>, ArchiveError>> = entries
            .par_iter()
            .map(|(name, entry)| {
                let parent_node = parent.and_then(|t| t.find(name));
                match entry {
                    VirtualEntry::Target(path) => {
                        let meta = match std::fs::symlink_metadata(path) {
                            Ok(m) => m,
                            Err(e) => {
                                self.note_error("lstat", path, &e);
                                return Ok(None);
                            }
                        };
                        let item = absolute_path(path);
                        let dev = meta.dev();
                        self.archive_item(
                            name,
                            path,
                            item.as_os_str().as_bytes(),
                            &meta,
                            parent_node,
                            dev,
                        )
                    }
                    VirtualEntry::Dir(sub) => {
                        let parent_sub = parent_node
                            .filter(|n| n.node_type == NodeType::Dir)
                            .and_then(|n| n.subtree)
                            .and_then(|id| self.repo.load_tree(&id).ok());
                        let tree = self.archive_virtual(sub, parent_sub.as_ref())?;
                        let subtree = self.save_tree(&tree)?;
                        // restic (0.14 `statDir`, 0.18 `dirPathToNode`)
                        // stats a target's parent directories following
                        // symlinks: a symlinked parent is stored as the
                        // directory it points to, under the link's name.
                        let mut node = match sub
                            .meta_path
                            .as_ref()
                            .map(|p| (p, std::fs::metadata(p)))
                        {
                            Some((p, Ok(meta))) => {
                                node::node_from_metadata(name, p, &meta, self.options.with_atime)
                            }
                            _ => Node::new(name.to_vec(), NodeType::Dir),
                        };
                        node.node_type = NodeType::Dir;
                        node.content = None;
                        node.size = 0;
                        node.links = 0;
                        node.subtree = Some(subtree);
                        Ok(Some(node))
                    }
                }
            })
            .collect();
        let mut tree = Tree::new();
        for n in nodes {
            if let Some(n) = n? {
                tree.nodes.push(n);
            }
        }
        tree.sort();
        Ok(tree)
    }

    /// Archive one file system item (already lstat'ed).
    fn archive_item(
        &self,
        name: &[u8],
        path: &Path,
        item: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>, ArchiveError> {
        let ft = meta.file_type();
        if ft.is_dir() {
            self.archive_dir(name, path, item, meta, parent, root_dev)
        } else if ft.is_file() {
            Ok(self.archive_file(name, path, item, meta, parent))
        } else {
            Ok(Some(node::node_from_metadata(
                name,
                path,
                meta,
                self.options.with_atime,
            )))
        }
    }

    fn archive_dir(
        &self,
        name: &[u8],
        path: &Path,
        item: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>, ArchiveError> {
        let started = Instant::now();
        let mut node = node::node_from_metadata(name, path, meta, self.options.with_atime);
        let parent_tree = parent
            .filter(|n| n.node_type == NodeType::Dir)
            .and_then(|n| n.subtree)
            .and_then(|id| self.repo.load_tree(&id).ok());
        let entries = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.note_error("open", path, &e);
                return Ok(None);
            }
        };
        let mut children: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => children.push((e.file_name().as_bytes().to_vec(), e.path())),
                Err(e) => self.note_error("readdirent", path, &e),
            }
        }
        children.sort();
        let results: Vec<Result<Option<Node>, ArchiveError>> = children
            .par_iter()
            .map(|(child_name, child_path)| {
                let mut child_item = item.to_vec();
                if !child_item.ends_with(b"/") {
                    child_item.push(b'/');
                }
                child_item.extend_from_slice(child_name);
                if self.excludes.is_excluded(&child_item) {
                    return Ok(None);
                }
                let meta = match std::fs::symlink_metadata(child_path) {
                    Ok(m) => m,
                    Err(e) => {
                        self.note_error("lstat", child_path, &e);
                        return Ok(None);
                    }
                };
                if self.options.one_file_system && meta.dev() != root_dev {
                    return Ok(None);
                }
                if let Some(limit) = self.options.exclude_larger_than {
                    if meta.is_file() && meta.len() > limit {
                        return Ok(None);
                    }
                }
                let parent_node = parent_tree.as_ref().and_then(|t| t.find(child_name));
                self.archive_item(
                    child_name,
                    child_path,
                    &child_item,
                    &meta,
                    parent_node,
                    root_dev,
                )
            })
            .collect();
        let mut tree = Tree::new();
        for r in results {
            if let Some(n) = r? {
                tree.nodes.push(n);
            }
        }
        let bytes = tree
            .encode()
            .map_err(|e| ArchiveError::Tree(e.to_string()))?;
        let (subtree, new, stored) = self.repo.save_blob(BlobType::Tree, &bytes, None)?;
        let (added, stored) = if new {
            inc(&self.counters.tree_blobs, 1);
            inc(&self.counters.data_added, bytes.len() as u64);
            inc(&self.counters.data_added_packed, stored);
            (bytes.len() as u64, stored)
        } else {
            (0, 0)
        };
        node.subtree = Some(subtree);
        let status = match parent {
            None => ItemStatus::New,
            Some(p) if *p == node => ItemStatus::Unchanged,
            Some(_) => ItemStatus::Changed,
        };
        match status {
            ItemStatus::New => inc(&self.counters.dirs_new, 1),
            ItemStatus::Changed => inc(&self.counters.dirs_changed, 1),
            ItemStatus::Unchanged => inc(&self.counters.dirs_unmodified, 1),
        }
        let mut dir_item = item.to_vec();
        dir_item.push(b'/');
        self.progress
            .dir_done(path, &dir_item, status, added, stored, started.elapsed());
        Ok(Some(node))
    }

    fn archive_file(
        &self,
        name: &[u8],
        path: &Path,
        item: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
    ) -> Option<Node> {
        let started = Instant::now();
        let mut node = node::node_from_metadata(name, path, meta, self.options.with_atime);
        // Unchanged since the parent: reuse its content without reading.
        if let Some(old) = parent {
            if !self.options.force
                && file_unchanged(
                    old,
                    &node,
                    self.options.ignore_ctime,
                    self.options.ignore_inode,
                )
            {
                if let Some(content) = old.content.as_ref() {
                    if content
                        .iter()
                        .all(|id| self.repo.has_blob(BlobType::Data, id))
                    {
                        node.content = Some(content.clone());
                        inc(&self.counters.files_unmodified, 1);
                        inc(&self.counters.bytes_processed, node.size);
                        self.progress.bytes_done(node.size);
                        self.progress.file_done(
                            path,
                            item,
                            node.size,
                            ItemStatus::Unchanged,
                            0,
                            0,
                            started.elapsed(),
                        );
                        return Some(node);
                    }
                }
            }
        }
        let _slot = self.read_slots.acquire();
        self.progress.file_started(path, item);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                self.note_error("open", path, &e);
                return None;
            }
        };
        // Metadata of what we actually read.
        if let Ok(m) = file.metadata() {
            if m.is_file() {
                node = node::node_from_metadata(name, path, &m, self.options.with_atime);
            }
        }
        let result = if node.size >= self.options.large_file_threshold && self.threads > 1 {
            match self.large_file.try_lock() {
                Ok(_guard) => self.save_content_parallel(pipeline::ParallelFileReader::new(
                    file,
                    pipeline::chunking_threads(self.threads),
                )),
                Err(_) => self.save_content_sequential(file),
            }
        } else {
            self.save_content_sequential(file)
        };
        let (content, size, added, stored) = match result {
            Ok(r) => r,
            Err(FileError::Io(e)) => {
                self.note_error("read", path, &e);
                return None;
            }
            Err(FileError::Repo(e)) => {
                // Repository errors also surface at flush; report them here
                // as a read error of this file so the walk can finish.
                self.note_error_text(path, &std::io::Error::other(e.to_string()));
                return None;
            }
        };
        node.content = Some(content);
        node.size = size;
        let status = if parent.is_some() {
            ItemStatus::Changed
        } else {
            ItemStatus::New
        };
        match status {
            ItemStatus::New => inc(&self.counters.files_new, 1),
            _ => inc(&self.counters.files_changed, 1),
        }
        inc(&self.counters.bytes_processed, size);
        self.progress
            .file_done(path, item, size, status, added, stored, started.elapsed());
        Some(node)
    }

    /// Hash and store one chunk; returns (id, added plaintext, stored).
    fn save_chunk(&self, data: &[u8]) -> Result<(Id, u64, u64), RepoError> {
        let id = match restix_chunker::known_chunk_id(data) {
            Some(id) => Id(id),
            None => Id(Sha256::digest(data).into()),
        };
        let (id, new, stored) = self.repo.save_blob(BlobType::Data, data, Some(id))?;
        if new {
            inc(&self.counters.data_blobs, 1);
            inc(&self.counters.data_added, data.len() as u64);
            inc(&self.counters.data_added_packed, stored);
            Ok((id, data.len() as u64, stored))
        } else {
            Ok((id, 0, 0))
        }
    }

    fn save_content_sequential(
        &self,
        file: impl Read,
    ) -> Result<(Vec<Id>, u64, u64, u64), FileError> {
        let mut stream = self.chunker.chunk_reader(file);
        let (mut ids, mut size, mut added, mut stored) = (Vec::new(), 0u64, 0u64, 0u64);
        while let Some(chunk) = stream.next_chunk().map_err(FileError::Io)? {
            let (id, a, s) = self.save_chunk(chunk.data).map_err(FileError::Repo)?;
            ids.push(id);
            size += chunk.data.len() as u64;
            added += a;
            stored += s;
            self.progress.bytes_done(chunk.data.len() as u64);
        }
        Ok((ids, size, added, stored))
    }

    /// The large-file path (see `pipeline`): read and chunk in windows,
    /// hash and store the chunks on all pool threads.
    fn save_content_parallel(
        &self,
        reader: impl Read,
    ) -> Result<(Vec<Id>, u64, u64, u64), FileError> {
        let save = |data: &[u8]| self.save_chunk(data);
        let done = |bytes: u64| self.progress.bytes_done(bytes);
        match pipeline::store_stream(&self.chunker, self.threads, reader, &save, &done) {
            Ok(out) => Ok((out.ids, out.size, out.added, out.stored)),
            Err(pipeline::PipelineError::Io(e)) => Err(FileError::Io(e)),
            Err(pipeline::PipelineError::Repo(e)) => Err(FileError::Repo(e)),
        }
    }

    /// `--stdin`: one file node at the root.
    fn archive_stdin(
        &self,
        stdin: StdinSource,
        time: GoTime,
    ) -> Result<(Tree, String), ArchiveError> {
        let name = stdin.filename.trim_start_matches('/').to_string();
        let snap_path = format!("/{name}");
        let path = PathBuf::from(&snap_path);
        self.progress.file_started(&path, snap_path.as_bytes());
        let started = Instant::now();
        // stdin may be a whole disk image: use the pipeline when there are
        // threads to share the work.
        let result = if self.threads > 1 {
            self.save_content_parallel(stdin.reader)
        } else {
            self.save_content_sequential(stdin.reader)
        };
        let (content, size, added, stored) = match result {
            Ok(r) => r,
            Err(FileError::Io(e)) => {
                return Err(ArchiveError::Stdin {
                    path: snap_path,
                    source: e,
                })
            }
            Err(FileError::Repo(e)) => return Err(e.into()),
        };
        if size == 0 {
            return Ok((Tree::new(), snap_path));
        }
        let node = stream_file_node(name.into_bytes(), time, size, content);
        inc(&self.counters.files_new, 1);
        inc(&self.counters.bytes_processed, size);
        self.progress.file_done(
            &path,
            snap_path.as_bytes(),
            size,
            ItemStatus::New,
            added,
            stored,
            started.elapsed(),
        );
        Ok((Tree { nodes: vec![node] }, snap_path))
    }
}

enum FileError {
    Io(std::io::Error),
    Repo(RepoError),
}

/// The node of a file that exists only as a stream of bytes (`--stdin`, an
/// image's guest view): a regular file, mode 0644, every timestamp `time`,
/// owned by the user running the backup.
pub(crate) fn stream_file_node(name: Vec<u8>, time: GoTime, size: u64, content: Vec<Id>) -> Node {
    let (uid, gid) = os_identity::uid_gid();
    let mut node = Node::new(name, NodeType::File);
    node.mode = 0o644;
    node.mtime = time;
    node.atime = time;
    node.ctime = time;
    node.uid = uid;
    node.gid = gid;
    node.size = size;
    node.content = Some(content);
    node
}
