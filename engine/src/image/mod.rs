//! Image mode: back up a disk image (qcow2, raw file, block device) as **one
//! regular file holding its guest view**, with changed-block incrementals, and
//! restore such a file to a sparse raw file or a fresh qcow2 image.
//!
//! The snapshot is an ordinary restic snapshot: its root tree holds one file
//! node (like `restic backup --stdin --stdin-filename NAME`), so `restic
//! restore` and `restic dump` reproduce the raw guest disk byte for byte.
//!
//! - Chunking is restic's exact content-defined chunking of the guest view
//!   (spec: restic-format §15), but zero and unallocated extents are never read
//!   or hashed: an all-zero 64-byte window has fingerprint 0, so inside a long
//!   zero run every position is a cut candidate and the cuts follow
//!   arithmetically ([`layout`]). Chunks of exactly 512 KiB zeros get
//!   [`restix_chunker::ZERO_CHUNK_ID`] without hashing.
//! - Incrementals ([`ChangedBlocks`]) take the changed guest ranges from a
//!   qcow2 overlay's own clusters ([`changed_ranges_in_top_layer`]), a
//!   persistent dirty bitmap ([`changed_ranges_from_bitmap`]) or a local
//!   block-hash cache ([`BlockHashes`]). Unchanged ranges reuse the parent
//!   snapshot's blobs; only from the last parent boundary before a change to
//!   the first new boundary after it that coincides with a parent boundary is
//!   re-chunked. The content list equals that of a full backup, so every
//!   snapshot restores on its own.
//! - [`restore_node`] writes a sparse raw file or a qcow2 image;
//!   [`restore_chain`] flattens an OpenNebula chain (full + qcow2 increments,
//!   one snapshot each) without qemu-img.
//!
//! ```no_run
//! use std::sync::Arc;
//! use restix_engine::backend::local::LocalBackend;
//! use restix_engine::image::{self, ImageBackupOptions, RestoreFormat};
//! use restix_engine::repository::Repository;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let repo = Repository::open(Arc::new(LocalBackend::new("/srv/repo")), b"geheim", None)?;
//! repo.load_index()?;
//! let disk = image::open_disk_image("vm.qcow2")?;
//! let done = image::backup_image(&repo, disk.as_ref(), ImageBackupOptions::new("vm.qcow2"))?;
//! let (_, node) = image::find_file_node(&repo, &done.summary.snapshot_id, None)?;
//! image::restore_node(&repo, &node, "restored.qcow2".as_ref(), RestoreFormat::Qcow2, 0)?;
//! # Ok(())
//! # }
//! ```

mod changes;
mod layout;
mod restore;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::Mutex;
use std::time::Instant;

use restix_chunker::{known_chunk_id, Chunker, MIN_SIZE, ZERO_CHUNK_ID};
use restix_repo_format::{BlobType, GoTime, Id, Node, NodeType, Snapshot, SnapshotSummary, Tree};
use sha2::{Digest, Sha256};

use crate::archiver::BackupSummary;
use crate::repository::{os_identity, RepoError, Repository};

pub use changes::{
    block_hash_cache_path, changed_ranges_from_bitmap, changed_ranges_in_top_layer, merge_ranges,
    BlockHashes,
};
pub use layout::LONG_ZERO_RUN;
pub use restix_qcow2::{
    open_disk_image, DiskImage, Extent, ExtentKind, ImageFormat, Qcow2Image, Qcow2Writer, RawImage,
};
pub use restore::{
    find_file_node, restore_chain, restore_node, write_guest_view, ChainLayer, ImageRestoreStats,
    RestoreFormat,
};

use layout::{ChunkCutter, GuestBuffer, GuestLayout};

/// Errors of image backups and restores.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The disk image could not be read or written.
    #[error(transparent)]
    Image(#[from] restix_qcow2::Error),
    /// A local file (cache, restore target) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The chunker rejected the repository's polynomial.
    #[error("chunker: {0}")]
    Chunker(String),
    /// A tree could not be encoded.
    #[error("tree: {0}")]
    Tree(String),
    /// A snapshot, path or blob is missing.
    #[error("{0}")]
    NotFound(String),
    /// The caller asked for something impossible.
    #[error("{0}")]
    InvalidArgument(String),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Where an incremental image backup learns what changed since its parent.
#[derive(Debug, Clone, Default)]
pub enum ChangedBlocks {
    /// Nothing known: re-chunk the whole guest view (still deduplicated).
    #[default]
    Unknown,
    /// These guest ranges (a superset of what changed since the parent's
    /// content was taken); see [`changed_ranges_in_top_layer`] and
    /// [`changed_ranges_from_bitmap`].
    Ranges(Vec<Range<u64>>),
    /// Compare with the block hashes cached at this path by the previous
    /// backup of the same image into the same repository (see
    /// [`block_hash_cache_path`]); refreshed after the backup. Without an
    /// explicit parent, the snapshot the cache belongs to becomes the parent.
    BlockHashCache(PathBuf),
}

/// Options of [`backup_image`].
#[derive(Debug, Clone)]
pub struct ImageBackupOptions {
    /// Name of the file node in the snapshot (normally the image's file name).
    pub file_name: String,
    /// The node's modification time (normally the image file's); default now.
    pub mtime: Option<GoTime>,
    /// Snapshot paths; default `["/<file_name>"]`.
    pub paths: Vec<String>,
    /// Parent snapshot.
    pub parent: Option<Id>,
    /// How changes since the parent are found.
    pub changes: ChangedBlocks,
    /// Host name for the snapshot ("" = this host's name).
    pub hostname: String,
    /// Snapshot tags.
    pub tags: Vec<String>,
    /// Snapshot time; default now.
    pub time: Option<GoTime>,
    /// Worker threads for hashing and saving (0 = number of CPUs).
    pub threads: usize,
    /// `program_version` of the snapshot.
    pub program_version: String,
    /// Wall-clock start of the command; default when `backup_image` is called.
    pub backup_start: Option<GoTime>,
}

impl ImageBackupOptions {
    /// Defaults for a file node called `file_name`.
    pub fn new(file_name: impl Into<String>) -> Self {
        ImageBackupOptions {
            file_name: file_name.into(),
            mtime: None,
            paths: Vec::new(),
            parent: None,
            changes: ChangedBlocks::Unknown,
            hostname: String::new(),
            tags: Vec::new(),
            time: None,
            threads: 0,
            program_version: format!("restix {}", env!("CARGO_PKG_VERSION")),
            backup_start: None,
        }
    }
}

/// What an image backup did beyond restic's summary counters.
#[derive(Debug, Clone, Default)]
pub struct ImageStats {
    /// Guest disk size.
    pub virtual_size: u64,
    /// Bytes in allocated data extents of the image.
    pub allocated_bytes: u64,
    /// Bytes read from the image for chunking (plus hashing for a block-hash
    /// cache, see `hash_bytes_read`).
    pub bytes_read: u64,
    /// Bytes read to compute block hashes.
    pub hash_bytes_read: u64,
    /// Chunks in the content list.
    pub chunks: u64,
    /// Chunks copied from the parent without reading.
    pub chunks_reused: u64,
    /// Guest bytes covered by copied parent chunks.
    pub bytes_reused: u64,
    /// Whether the parent's content was reused (changed-block incremental).
    pub incremental: bool,
    /// Guest bytes reported as changed.
    pub changed_bytes: u64,
    /// Why a requested incremental fell back to a full re-chunk.
    pub fallback_reason: Option<String>,
}

/// Result of [`backup_image`]: restic's summary plus image statistics.
#[derive(Debug, Clone)]
pub struct ImageBackupSummary {
    /// The counters of restic's JSON summary, the snapshot and its ID.
    pub summary: BackupSummary,
    /// Image specifics.
    pub stats: ImageStats,
}

/// The parent's content with cumulative chunk ends, and the changed ranges.
struct ParentPlan {
    ends: Vec<u64>,
    ids: Vec<Id>,
    changed: Vec<Range<u64>>,
}

impl ParentPlan {
    /// Start of the first changed range ending after `pos`.
    fn next_change(&self, pos: u64) -> u64 {
        let i = self.changed.partition_point(|r| r.end <= pos);
        self.changed.get(i).map_or(u64::MAX, |r| r.start)
    }

    /// Whether `pos` lies strictly inside a changed range.
    fn inside_change(&self, pos: u64) -> bool {
        let i = self.changed.partition_point(|r| r.end <= pos);
        self.changed.get(i).is_some_and(|r| r.start < pos)
    }
}

#[derive(Default)]
struct Counters {
    data_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Backs up the guest view of `image` as one file node and writes a snapshot.
///
/// The repository's index must be loaded. Zero and unallocated extents are
/// never read; with a parent and known changes only changed regions are read.
pub fn backup_image(
    repo: &Repository,
    image: &dyn DiskImage,
    options: ImageBackupOptions,
) -> Result<ImageBackupSummary, ImageError> {
    let started = Instant::now();
    let backup_start = options.backup_start.unwrap_or_else(GoTime::now_local);
    let threads = match options.threads {
        0 => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2),
        n => n,
    };
    if options.file_name.is_empty() || options.file_name.contains('/') {
        return Err(ImageError::InvalidArgument(format!(
            "invalid file name {:?} for the image in the snapshot",
            options.file_name
        )));
    }
    let chunker =
        Chunker::new(repo.polynomial()).map_err(|e| ImageError::Chunker(e.to_string()))?;
    let layout = GuestLayout::new(image)?;
    let mut stats = ImageStats {
        virtual_size: layout.size,
        allocated_bytes: layout.data_bytes(),
        ..ImageStats::default()
    };

    // What changed, and against which parent.
    let mut parent = options.parent;
    let mut new_hashes = None;
    let changed: Option<Vec<Range<u64>>> = match &options.changes {
        ChangedBlocks::Unknown => None,
        ChangedBlocks::Ranges(ranges) => Some(merge_ranges(ranges.clone())),
        ChangedBlocks::BlockHashCache(path) => {
            let (hashes, read) = BlockHashes::compute(image, &layout, threads)?;
            stats.hash_bytes_read = read;
            let old = BlockHashes::load(path);
            let ranges = match old {
                Some(old) if old.snapshot.is_some() => {
                    if parent.is_none()
                        && old
                            .snapshot
                            .is_some_and(|id| repo.load_snapshot(&id).is_ok())
                    {
                        parent = old.snapshot;
                    }
                    if parent == old.snapshot {
                        old.changed_ranges(&hashes)
                    } else {
                        stats.fallback_reason =
                            Some("the block-hash cache belongs to another snapshot".into());
                        None
                    }
                }
                _ => {
                    stats.fallback_reason = Some("no block-hash cache yet".into());
                    None
                }
            };
            new_hashes = Some(hashes);
            ranges
        }
    };
    stats.changed_bytes = changed
        .as_ref()
        .map_or(layout.size, |r| r.iter().map(|r| r.end - r.start).sum());

    let mut parent_content = None;
    let plan = match (parent, changed) {
        (Some(parent_id), Some(changed)) => {
            match parent_plan(repo, &parent_id, &options.file_name, layout.size, changed)? {
                Ok(plan) => Some(plan),
                Err(reason) => {
                    stats.fallback_reason = Some(reason);
                    None
                }
            }
        }
        (Some(parent_id), None) => {
            parent_content = parent_node(repo, &parent_id, &options.file_name)
                .ok()
                .and_then(|n| n.content);
            None
        }
        _ => None,
    };
    stats.incremental = plan.is_some();
    if let Some(plan) = &plan {
        parent_content = Some(plan.ids.clone());
    }

    let counters = Counters::default();
    let content = produce_content(
        repo,
        image,
        &layout,
        &chunker,
        plan.as_ref(),
        threads,
        &counters,
        &mut stats,
    )?;

    // The snapshot: one file node at the root (like `--stdin`).
    let (uid, gid) = os_identity::uid_gid();
    let time = options.time.unwrap_or_else(GoTime::now_local);
    let mtime = options.mtime.unwrap_or(time);
    let mut node = Node::new(options.file_name.clone().into_bytes(), NodeType::File);
    node.mode = 0o644;
    node.mtime = mtime;
    node.atime = mtime;
    node.ctime = mtime;
    node.uid = uid;
    node.gid = gid;
    node.size = layout.size;
    let unmodified = parent_content.as_ref() == Some(&content);
    node.content = Some(content);
    let tree = Tree { nodes: vec![node] };
    let tree_bytes = tree.encode().map_err(|e| ImageError::Tree(e.to_string()))?;
    let (tree_id, tree_new, tree_stored) = repo.save_blob(BlobType::Tree, &tree_bytes, None)?;
    if tree_new {
        add(&counters.data_added, tree_bytes.len() as u64);
        add(&counters.data_added_packed, tree_stored);
    }
    repo.flush()?;

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (files_new, files_changed, files_unmodified) = match (parent, unmodified) {
        (None, _) => (1, 0, 0),
        (Some(_), false) => (0, 1, 0),
        (Some(_), true) => (0, 0, 1),
    };
    let hostname = if options.hostname.is_empty() {
        os_identity::hostname()
    } else {
        options.hostname.clone()
    };
    let backup_end = GoTime::now_local();
    let snapshot_summary = SnapshotSummary {
        backup_start,
        backup_end,
        files_new,
        files_changed,
        files_unmodified,
        dirs_new: 0,
        dirs_changed: 0,
        dirs_unmodified: 0,
        data_blobs: get(&counters.data_blobs) as i64,
        tree_blobs: i64::from(tree_new),
        data_added: get(&counters.data_added),
        data_added_packed: get(&counters.data_added_packed),
        total_files_processed: 1,
        total_bytes_processed: layout.size,
    };
    let paths = if options.paths.is_empty() {
        vec![format!("/{}", options.file_name)]
    } else {
        options.paths.clone()
    };
    let snapshot = Snapshot {
        time,
        parent,
        tree: Some(tree_id),
        paths,
        hostname,
        username: os_identity::username(),
        uid,
        gid,
        excludes: Vec::new(),
        tags: options.tags.clone(),
        original: None,
        program_version: options.program_version.clone(),
        summary: Some(snapshot_summary.clone()),
    };
    let snapshot_id = repo.save_snapshot(&snapshot)?;

    if let (ChangedBlocks::BlockHashCache(path), Some(mut hashes)) = (&options.changes, new_hashes)
    {
        hashes.snapshot = Some(snapshot_id);
        hashes.save(path)?;
    }

    let summary = BackupSummary {
        files_new,
        files_changed,
        files_unmodified,
        dirs_new: 0,
        dirs_changed: 0,
        dirs_unmodified: 0,
        data_blobs: get(&counters.data_blobs),
        tree_blobs: u64::from(tree_new),
        data_added: snapshot_summary.data_added,
        data_added_packed: snapshot_summary.data_added_packed,
        total_files_processed: 1,
        total_bytes_processed: layout.size,
        total_duration: started.elapsed(),
        backup_start,
        backup_end,
        snapshot_id,
        snapshot,
        errors: 0,
        missing_targets: Vec::new(),
        parent,
    };
    Ok(ImageBackupSummary { summary, stats })
}

/// The file node an image snapshot stores: the one called `file_name`, else
/// the only file of the snapshot.
fn parent_node(repo: &Repository, parent: &Id, file_name: &str) -> Result<Node, ImageError> {
    match find_file_node(repo, parent, Some(file_name)) {
        Ok((_, node)) => Ok(node),
        Err(_) => find_file_node(repo, parent, None).map(|(_, node)| node),
    }
}

/// Builds the reuse plan, or says why the parent cannot be reused.
fn parent_plan(
    repo: &Repository,
    parent: &Id,
    file_name: &str,
    size: u64,
    changed: Vec<Range<u64>>,
) -> Result<Result<ParentPlan, String>, ImageError> {
    let node = match parent_node(repo, parent, file_name) {
        Ok(node) => node,
        Err(e) => return Ok(Err(format!("parent snapshot has no image file: {e}"))),
    };
    if node.size != size {
        // The last parent chunk ended at the old end of file, not at a cut.
        return Ok(Err(format!(
            "disk size changed ({} -> {size} bytes)",
            node.size
        )));
    }
    let ids = node.content.unwrap_or_default();
    let mut ends = Vec::with_capacity(ids.len());
    let mut end = 0u64;
    for id in &ids {
        let Some(location) = repo.lookup(BlobType::Data, id) else {
            return Ok(Err(format!("parent blob {id} is not in the index")));
        };
        end += u64::from(location.plaintext_len());
        ends.push(end);
    }
    if end != size {
        return Ok(Err(format!(
            "parent content covers {end} bytes, not {size}"
        )));
    }
    Ok(Ok(ParentPlan { ends, ids, changed }))
}

/// A chunk handed to a worker: its index in the content list and its bytes.
type Job = (usize, Vec<u8>);

/// Chunks the guest view (or only its changed regions) and stores the blobs on
/// worker threads; returns the content list.
#[allow(clippy::too_many_arguments)]
fn produce_content(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    chunker: &Chunker,
    plan: Option<&ParentPlan>,
    threads: usize,
    counters: &Counters,
    stats: &mut ImageStats,
) -> Result<Vec<Id>, ImageError> {
    let cutter = ChunkCutter::new(chunker)?;
    let mut content: Vec<Option<Id>> = Vec::new();
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
    let (job_tx, job_rx) = sync_channel::<Job>(threads * 2);
    let job_rx: Mutex<Receiver<Job>> = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<(usize, Id)>();
    let fail = |e: ImageError| {
        failed.store(true, Ordering::Release);
        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    };

    let produced = std::thread::scope(|scope| -> Result<(), ImageError> {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let failed = &failed;
            let fail = &fail;
            scope.spawn(move || loop {
                let job = {
                    let rx = job_rx.lock().unwrap_or_else(|p| p.into_inner());
                    rx.recv()
                };
                let Ok((index, data)) = job else { break };
                if failed.load(Ordering::Acquire) {
                    continue;
                }
                let id = Id(known_chunk_id(&data).unwrap_or_else(|| Sha256::digest(&data).into()));
                match repo.save_blob(BlobType::Data, &data, Some(id)) {
                    Ok((id, new, stored)) => {
                        if new {
                            add(&counters.data_blobs, 1);
                            add(&counters.data_added, data.len() as u64);
                            add(&counters.data_added_packed, stored);
                        }
                        let _ = done_tx.send((index, id));
                    }
                    Err(e) => fail(e.into()),
                }
            });
        }
        drop(done_tx);
        let result = chunk_guest(
            repo,
            image,
            layout,
            &cutter,
            plan,
            counters,
            stats,
            &mut content,
            &failed,
            &job_tx,
        );
        drop(job_tx);
        result
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    produced?;
    for (index, id) in done_rx.try_iter() {
        if let Some(slot) = content.get_mut(index) {
            *slot = Some(id);
        }
    }
    content
        .into_iter()
        .enumerate()
        .map(|(i, id)| id.ok_or_else(|| ImageError::NotFound(format!("chunk {i} was not stored"))))
        .collect()
}

/// The producer: walks the guest view chunk by chunk (copying parent chunks
/// where nothing changed) and feeds the workers.
#[allow(clippy::too_many_arguments)]
fn chunk_guest(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    cutter: &ChunkCutter,
    plan: Option<&ParentPlan>,
    counters: &Counters,
    stats: &mut ImageStats,
    content: &mut Vec<Option<Id>>,
    failed: &AtomicBool,
    jobs: &std::sync::mpsc::SyncSender<Job>,
) -> Result<(), ImageError> {
    let size = layout.size;
    let mut buffer = GuestBuffer::new(image, layout);
    let mut zero_ids: HashMap<u64, Id> = HashMap::new();
    let mut pos = 0u64;
    // Index of the next parent chunk while positions coincide; `None` while
    // re-chunking.
    let mut synced: Option<usize> = plan.map(|_| 0);
    while pos < size {
        if failed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let (Some(plan), Some(mut next)) = (plan, synced) {
            // Copy parent chunks that end before the next change: their bytes,
            // and so their cuts, are the parent's.
            let change = plan.next_change(pos);
            while let (Some(&end), Some(id)) = (plan.ends.get(next), plan.ids.get(next)) {
                if end > change {
                    break;
                }
                content.push(Some(*id));
                stats.chunks_reused += 1;
                stats.bytes_reused += end - pos;
                pos = end;
                next += 1;
            }
            synced = None;
            if pos >= size {
                break;
            }
        }
        let end = cutter.cut(layout, &mut buffer, pos)?;
        if end <= pos {
            return Err(ImageError::Chunker(format!("no progress at offset {pos}")));
        }
        if layout.is_zero_run(pos, end) {
            let length = end - pos;
            let id = match zero_ids.get(&length) {
                Some(id) => *id,
                None => {
                    let zeros = vec![0u8; length as usize];
                    let id = if length == MIN_SIZE as u64 {
                        Id(ZERO_CHUNK_ID)
                    } else {
                        Id(Sha256::digest(&zeros).into())
                    };
                    let (id, new, stored) = repo.save_blob(BlobType::Data, &zeros, Some(id))?;
                    if new {
                        add(&counters.data_blobs, 1);
                        add(&counters.data_added, length);
                        add(&counters.data_added_packed, stored);
                    }
                    zero_ids.insert(length, id);
                    id
                }
            };
            content.push(Some(id));
        } else {
            let data = buffer.range(pos, end)?.to_vec();
            let index = content.len();
            content.push(None);
            if jobs.send((index, data)).is_err() {
                return Ok(()); // workers gone: an error was recorded
            }
        }
        buffer.drop_before(end);
        pos = end;
        if let Some(plan) = plan {
            if let Ok(k) = plan.ends.binary_search(&pos) {
                if !plan.inside_change(pos) {
                    synced = Some(k + 1);
                }
            }
        }
    }
    stats.chunks = content.len() as u64;
    stats.bytes_read = buffer.bytes_read;
    Ok(())
}
