//! Image mode: back up a disk image (qcow2, raw file, block device) as **one
//! regular file holding its guest view**, with changed-block incrementals, and
//! restore such a file to a sparse raw file or a fresh qcow2 image.
//!
//! The snapshot is an ordinary restic snapshot: its root tree holds one file
//! node (like `restic backup --stdin --stdin-filename NAME`), so `restic
//! restore` and `restic dump` reproduce the raw guest disk byte for byte.
//!
//! - Blobs are blocks aligned to guest offsets (64 KiB by default,
//!   more for disks over 8 GiB, [`ImageChunking`]): a guest rewrites blocks in
//!   place, so a changed cluster changes one blob. Zero and unallocated
//!   extents are never read or hashed; all zero blocks share one blob whose
//!   ID is computed once. [`ImageChunking::ContentDefined`] keeps restic's exact
//!   content-defined chunks of the guest view instead (spec: restic-format
//!   §15): inside a long zero run every position is a cut candidate, so the
//!   cuts follow arithmetically.
//! - Incrementals ([`ChangedBlocks`]) take the changed guest ranges from a
//!   qcow2 overlay's own clusters ([`changed_ranges_in_top_layer`]), a
//!   persistent dirty bitmap ([`changed_ranges_from_bitmap`]) or a local
//!   block-hash cache ([`BlockHashes`]). Unchanged blocks are the parent
//!   snapshot's blobs, never read; with content-defined chunks only from the
//!   last parent boundary before a change to the first new boundary that
//!   coincides with a parent boundary is re-chunked. Either way the content
//!   list equals that of a full backup, so every snapshot restores on its own.
//!   An incremental's own work overlaps with opening the repository:
//!   [`prefetch_blocks`] reads, hashes and compresses the changed blocks
//!   while the key is derived (scrypt, ~40 ms), [`PrefetchedBlocks::seal`]
//!   encrypts them into hashed packs on every thread while the index and
//!   then the parent's blobs ([`load_parent_blobs`]) load, and
//!   [`prepare_content_tree`] builds the new content list's tree meanwhile;
//!   the backup then only stores them.
//! - A changed-block incremental never trusts its parent blindly: every
//!   image node records the disk it was read from ([`ImageRecord`], the
//!   extended attribute [`RECORD_XATTR`]), [`judge`] compares the parent's
//!   record with the change source, and a sample of the blocks called
//!   unchanged is compared with the parent's blobs; a mismatch is
//!   [`ImageError::Refused`] before anything is written (see `provenance`).
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
mod fixed;
mod layout;
mod provenance;
mod restore;
mod verify;

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
use crate::repository::{compress_blob, os_identity, RepoError, Repository};

pub use changes::{
    block_hash_cache_path, changed_ranges_from_bitmap, changed_ranges_in_top_layer, content_digest,
    merge_ranges, BlockHashes,
};
pub use fixed::{
    default_block_size, prefetch_blocks, valid_block_size, zero_block_id, ImageChunking,
    PlannedBlocks, PrefetchedBlocks, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE,
};
pub use layout::LONG_ZERO_RUN;
pub use provenance::{
    chain_digest, first_uncovered, judge, BitmapFacts, BitmapRecord, ChangeSource, ImageFacts,
    ImageRecord, LayerRecord, ParentRecord, Verdict, MAX_RECORD_BYTES, RECORD_VERSION,
    RECORD_XATTR,
};
pub use restix_qcow2::{
    open_disk_image, DiskImage, Extent, ExtentKind, ImageFormat, LayerIdentity, Qcow2Image,
    Qcow2Writer, RawImage,
};
pub use restore::{
    find_file_node, restore_chain, restore_chain_with, restore_node, restore_node_with,
    write_guest_view, write_guest_view_with, ChainLayer, ImageRestoreStats, RestoreFormat,
    RestoreSettings, RestoreTarget,
};

use changes::BlockHasher;
use layout::{ChunkCutter, GuestBuffer, GuestLayout};

/// This host's name, as image snapshots record it by default (and as a
/// parent is looked up by).
pub fn host_name() -> String {
    os_identity::hostname()
}

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
    /// A layer of a chain could not be flattened (the message names its
    /// snapshot and file).
    #[error("{0}")]
    Chain(String),
    /// A changed-block incremental's parent does not match its change source;
    /// nothing was written.
    #[error(
        "snapshot {} cannot be the parent of {image}: {reason}. Nothing was written; back up \
         the whole image with --changes none, or name the snapshot this change source \
         continues from with --parent",
        parent.short()
    )]
    Refused {
        /// The parent snapshot.
        parent: Id,
        /// The image (its absolute path, when known).
        image: String,
        /// What did not match.
        reason: String,
    },
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
    /// content was taken), from a source the engine knows nothing about: the
    /// parent is verified by content, thoroughly (see `verify`).
    Ranges(Vec<Range<u64>>),
    /// The top layer's own clusters ([`changed_ranges_in_top_layer`]): the
    /// parent's record must show that it read exactly the overlay's backing
    /// chain ([`judge`]).
    Layer(Vec<Range<u64>>),
    /// The persistent dirty bitmap `name` ([`changed_ranges_from_bitmap`]):
    /// the parent's record must show the bitmap then, and that it only grew
    /// since ([`judge`]).
    Bitmap {
        /// Bitmap name.
        name: String,
        /// Its dirty ranges.
        ranges: Vec<Range<u64>>,
    },
    /// Compare with the block hashes cached at this path by the previous
    /// backup of the same image into the same repository (see
    /// [`block_hash_cache_path`]); refreshed after the backup. Without an
    /// explicit parent, the snapshot the cache belongs to becomes the parent.
    BlockHashCache(PathBuf),
}

impl ChangedBlocks {
    /// A short name for messages: `none`, `ranges`, `layer`, `bitmap`,
    /// `hash-cache`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChangedBlocks::Unknown => "none",
            ChangedBlocks::Ranges(_) => "ranges",
            ChangedBlocks::Layer(_) => "layer",
            ChangedBlocks::Bitmap { .. } => "bitmap",
            ChangedBlocks::BlockHashCache(_) => "hash-cache",
        }
    }

    fn source(&self) -> ChangeSource<'_> {
        match self {
            ChangedBlocks::Layer(_) => ChangeSource::Layer,
            ChangedBlocks::Bitmap { name, ranges } => ChangeSource::Bitmap {
                name,
                dirty: ranges,
            },
            ChangedBlocks::BlockHashCache(_) => ChangeSource::HashCache,
            ChangedBlocks::Unknown | ChangedBlocks::Ranges(_) => ChangeSource::Given,
        }
    }
}

/// Byte counters an image job advances as it goes, for a progress display:
/// the guest bytes to handle and those handled (stored, reused or hashed;
/// written or skipped as zeros).
#[derive(Debug, Default)]
pub struct ImageProgress {
    total: AtomicU64,
    done: AtomicU64,
}

impl ImageProgress {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the job will handle (grows as the job learns more).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes handled so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}
/// Options of [`backup_image`].
#[derive(Debug, Clone)]
pub struct ImageBackupOptions {
    /// Name of the file node in the snapshot (normally the image's file name).
    pub file_name: String,
    /// The node's modification time (normally the image file's); default now.
    pub mtime: Option<GoTime>,
    /// Snapshot paths; default the image's absolute path (from `facts`),
    /// else `["/<file_name>"]`.
    pub paths: Vec<String>,
    /// Parent snapshot.
    pub parent: Option<Id>,
    /// How changes since the parent are found.
    pub changes: ChangedBlocks,
    /// How the guest view is cut into blobs (blocks by default).
    pub chunking: ImageChunking,
    /// Changed blocks read ahead ([`prefetch_blocks`]), used when they match.
    pub prefetched: Option<std::sync::Arc<PrefetchedBlocks>>,
    /// The parent's blobs loaded ahead ([`load_parent_blobs`]), used when
    /// they are `parent`'s and `file_name`'s.
    pub parent_blobs: Option<ParentBlobs>,
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
    /// The image file's tree made ahead ([`prepare_content_tree`]), used
    /// when the backup's node turns out the same.
    pub prepared_tree: Option<PreparedTree>,
    /// The image described ([`ImageFacts::of_qcow2`], [`ImageFacts::of_raw`]):
    /// its record is stored on the image node, and a parent's record is
    /// judged against it. Without it a changed-block backup verifies its
    /// parent by content only.
    pub facts: Option<ImageFacts>,
    /// Counters for a progress display.
    pub progress: Option<std::sync::Arc<ImageProgress>>,
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
            chunking: ImageChunking::Auto,
            prefetched: None,
            parent_blobs: None,
            hostname: String::new(),
            tags: Vec::new(),
            time: None,
            threads: 0,
            program_version: format!("restix {}", env!("CARGO_PKG_VERSION")),
            backup_start: None,
            prepared_tree: None,
            facts: None,
            progress: None,
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
    /// Bytes per blob with block-aligned chunks; 0 with restic's
    /// content-defined chunks.
    pub block_size: u64,
    /// Chunks in the content list.
    pub chunks: u64,
    /// Chunks copied from the parent without reading.
    pub chunks_reused: u64,
    /// Guest bytes covered by copied parent chunks.
    pub bytes_reused: u64,
    /// Guest bytes of the chunks chunked anew in an incremental (from the
    /// parent boundary before each change to the cut where the boundaries
    /// resynchronise): what was hashed, compressed and stored at most.
    pub bytes_rechunked: u64,
    /// Whether the parent's content was reused (changed-block incremental).
    pub incremental: bool,
    /// Guest bytes reported as changed.
    pub changed_bytes: u64,
    /// Why a requested incremental fell back to a full re-chunk.
    pub fallback_reason: Option<String>,
    /// Where the changed ranges came from ([`ChangedBlocks::kind`]).
    pub change_source: &'static str,
    /// Why the parent was trusted (its record vouched for the change source,
    /// or there was nothing to check against and its content was verified).
    pub parent_verdict: Option<String>,
    /// Whether the parent's record vouched for the change source.
    pub vouched: bool,
    /// Unchanged blocks checked to be zero in the parent, without reading.
    pub verified_zero_blocks: u64,
    /// Unchanged blocks read and compared with the parent's.
    pub verified_blocks: u64,
    /// Bytes read for that (also counted in `bytes_read`).
    pub verified_bytes: u64,
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
    progress: Option<std::sync::Arc<ImageProgress>>,
}

impl Counters {
    /// `n` more guest bytes handled.
    fn progressed(&self, n: u64) {
        if let Some(p) = &self.progress {
            p.add_done(n);
        }
    }
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
    mut options: ImageBackupOptions,
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
    let layout = GuestLayout::new(image)?;
    let mut stats = ImageStats {
        virtual_size: layout.size,
        allocated_bytes: layout.data_bytes(),
        ..ImageStats::default()
    };
    let counters = Counters {
        progress: options.progress.clone(),
        ..Counters::default()
    };
    if let Some(progress) = &counters.progress {
        progress.add_total(layout.size);
    }

    // Against which parent, and whether a block-hash cache belongs to it
    // (to the image, the snapshot and that snapshot's content).
    let mut parent = options.parent;
    let mut cache = None;
    if let ChangedBlocks::BlockHashCache(path) = &options.changes {
        match bind_cache(repo, path, options.facts.as_ref(), layout.size, &mut parent) {
            Ok(old) => cache = Some(old),
            Err(reason) => stats.fallback_reason = Some(reason),
        }
    }
    let parent_blobs = match options
        .parent_blobs
        .take()
        .filter(|p| Some(p.snapshot) == parent && p.file_name == options.file_name)
    {
        Some(loaded) => Some(loaded),
        None => parent.and_then(|id| load_parent_blobs(repo, &id, &options.file_name)),
    };
    if let (Some(old), Some(p)) = (&cache, &parent_blobs) {
        if old.content != Some(changes::content_digest(&p.ids)) {
            stats.fallback_reason = Some(format!(
                "the block-hash cache is stale: it does not describe the content of snapshot {}",
                p.snapshot.short()
            ));
            cache = None;
        }
    }

    // What changed since.
    let mut new_hashes = None;
    let changed: Option<Vec<Range<u64>>> = match &options.changes {
        ChangedBlocks::Unknown => None,
        ChangedBlocks::Ranges(ranges) | ChangedBlocks::Layer(ranges) => {
            Some(merge_ranges(ranges.clone()))
        }
        ChangedBlocks::Bitmap { ranges, .. } => Some(merge_ranges(ranges.clone())),
        ChangedBlocks::BlockHashCache(_) => match cache.take() {
            Some(old) => {
                // Hash every block now to learn what changed.
                let (hashes, read) =
                    BlockHashes::compute(image, &layout, threads, counters.progress.as_deref())?;
                stats.hash_bytes_read = read;
                let ranges = old.changed_ranges(&hashes);
                new_hashes = Some(hashes);
                ranges
            }
            // The full pass hashes the blocks from what it reads.
            None => None,
        },
    };
    stats.changed_bytes = changed
        .as_ref()
        .map_or(layout.size, |r| r.iter().map(|r| r.end - r.start).sum());
    stats.change_source = options.changes.kind();

    // Blocks or restic's chunks (see `fixed`): an incremental follows its
    // parent unless told otherwise.
    let block = match options.chunking {
        ImageChunking::ContentDefined => None,
        ImageChunking::Fixed(block) => Some(block),
        ImageChunking::Auto => match &parent_blobs {
            Some(p) => fixed::block_size_of(&p.lengths, default_block_size(layout.size)),
            None => Some(default_block_size(layout.size)),
        },
    };

    // Whether the parent's blobs will stand in for unread blocks; if so,
    // nothing is written unless the parent passes the checks.
    let reuse = match (&parent_blobs, &changed) {
        (Some(p), Some(_)) => match block {
            Some(block) if fixed::block_size_of(&p.lengths, block) == Some(block) => true,
            Some(block) => {
                stats.fallback_reason =
                    Some(format!("the parent's blobs are not {block}-byte blocks"));
                false
            }
            None if p.size != layout.size => {
                // The last parent chunk ended at the old end of file, not at a cut.
                stats.fallback_reason = Some(format!(
                    "disk size changed ({} -> {} bytes)",
                    p.size, layout.size
                ));
                false
            }
            None => true,
        },
        (None, Some(_)) if parent.is_some() => {
            stats.fallback_reason = Some("the parent snapshot has no readable image file".into());
            false
        }
        _ => false,
    };
    if let (true, Some(p), Some(changed)) = (reuse, &parent_blobs, &changed) {
        check_parent(image, &layout, &options, p, changed, threads, &mut stats)?;
    }
    let changed = if reuse { changed } else { None };

    let (content, parent_content) = match block {
        Some(block) => {
            stats.block_size = block;
            let reuse = match (&parent_blobs, &changed) {
                (Some(p), Some(changed)) => Some(fixed::FixedParent {
                    ids: &p.ids,
                    size: p.size,
                    changed,
                }),
                _ => None,
            };
            stats.incremental = reuse.is_some();
            let cache_hashes =
                matches!(options.changes, ChangedBlocks::BlockHashCache(_)) && new_hashes.is_none();
            let (content, cache) = fixed::fixed_content(
                repo,
                image,
                &layout,
                block,
                reuse,
                threads,
                &counters,
                &mut stats,
                cache_hashes,
                options.prefetched.as_deref(),
            )?;
            if cache.is_some() {
                new_hashes = cache;
            }
            (content, parent_blobs.map(|p| p.ids))
        }
        None => content_defined(
            repo,
            image,
            &layout,
            &Chunker::new(repo.polynomial()).map_err(|e| ImageError::Chunker(e.to_string()))?,
            &options,
            parent.map(|_| parent_blobs),
            changed,
            &mut new_hashes,
            threads,
            &counters,
            &mut stats,
        )?,
    };

    stats.bytes_read += stats.verified_bytes;

    // No more data blobs: their last pack is stored while the content list
    // is encoded and saved.
    repo.finish_open_pack(BlobType::Data)?;
    // The snapshot: one file node at the root (like `--stdin`).
    let time = options.time.unwrap_or_else(GoTime::now_local);
    let unmodified = parent_content.as_ref() == Some(&content);
    let cache_content = matches!(options.changes, ChangedBlocks::BlockHashCache(_))
        .then(|| changes::content_digest(&content));
    let node = image_node(&options, time, layout.size, content);
    let (uid, gid) = (node.uid, node.gid);
    let (tree_bytes, hashed) = match options.prepared_tree.take().filter(|p| p.node == node) {
        Some(prepared) => (prepared.bytes, (prepared.id, prepared.frame)),
        None => {
            let tree = Tree { nodes: vec![node] };
            let bytes = tree.encode().map_err(|e| ImageError::Tree(e.to_string()))?;
            let hashed = hash_and_compress(repo, &bytes);
            (bytes, hashed)
        }
    };
    let (tree_id, tree_new, tree_stored) = save_content_tree(repo, &tree_bytes, hashed)?;
    if tree_new {
        add(&counters.data_added, tree_bytes.len() as u64);
        add(&counters.data_added_packed, tree_stored);
    }
    // Every pack stored before the end time is taken; the index files and
    // the snapshot are then stored together below.
    repo.finish_packs()?;

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
    let paths = match (&options.paths, &options.facts) {
        (paths, _) if !paths.is_empty() => paths.clone(),
        // As restic records paths: the image's absolute path.
        (_, Some(facts)) => vec![facts.path.clone()],
        (_, None) => vec![format!("/{}", options.file_name)],
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
    // Index files first, then the snapshot (spec §16), in one ordered write.
    let snapshot_id = repo.flush_and_save_snapshot(&snapshot)?;

    if let (ChangedBlocks::BlockHashCache(path), Some(mut hashes)) = (&options.changes, new_hashes)
    {
        hashes.snapshot = Some(snapshot_id);
        hashes.content = cache_content;
        hashes.image_path = options
            .facts
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_default();
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

/// Binds a block-hash cache to this backup: the image it was taken of, and
/// its snapshot (which becomes the parent when none was given). `Err` says
/// why it cannot be used (the backup then reads everything and rewrites it).
fn bind_cache(
    repo: &Repository,
    path: &std::path::Path,
    facts: Option<&ImageFacts>,
    size: u64,
    parent: &mut Option<Id>,
) -> Result<BlockHashes, String> {
    let Some(old) = BlockHashes::load(path) else {
        return Err("no block-hash cache yet".into());
    };
    if let Some(facts) = facts {
        if old.image_path != facts.path {
            return Err(format!(
                "the block-hash cache {} belongs to another image ({})",
                path.display(),
                if old.image_path.is_empty() {
                    "unknown"
                } else {
                    old.image_path.as_str()
                }
            ));
        }
    }
    if !old.comparable(size) {
        return Err("the block-hash cache is for another disk size".into());
    }
    let Some(cached) = old.snapshot else {
        return Err("the block-hash cache names no snapshot".into());
    };
    match *parent {
        None if repo.load_snapshot(&cached).is_ok() => *parent = Some(cached),
        None => {
            return Err(format!(
                "the block-hash cache's snapshot {} no longer exists",
                cached.short()
            ))
        }
        Some(p) if p != cached => {
            return Err(format!(
                "the block-hash cache belongs to snapshot {}, not {}",
                cached.short(),
                p.short()
            ))
        }
        Some(_) => {}
    }
    Ok(old)
}

/// Checks a parent before its blobs stand in for unread blocks: its record
/// against the change source ([`judge`]), then its content ([`verify`]);
/// refuses on a mismatch.
fn check_parent(
    image: &dyn DiskImage,
    layout: &GuestLayout,
    options: &ImageBackupOptions,
    parent: &ParentBlobs,
    changed: &[Range<u64>],
    threads: usize,
    stats: &mut ImageStats,
) -> Result<(), ImageError> {
    let refuse = |reason: String| ImageError::Refused {
        parent: parent.snapshot,
        image: options
            .facts
            .as_ref()
            .map_or_else(|| options.file_name.clone(), |f| f.path.clone()),
        reason,
    };
    let verdict = judge(
        options.facts.as_ref(),
        &parent.record,
        options.changes.source(),
    )
    .map_err(refuse)?;
    let budget = match verdict {
        Verdict::Vouched(_) => verify::Budget::LIGHT,
        Verdict::Unvouched(_) => verify::Budget::FULL,
    };
    match verify::verify_unchanged(
        image,
        layout,
        &parent.ids,
        &parent.lengths,
        changed,
        budget,
        &parent.snapshot,
        threads,
    )? {
        verify::Outcome::Matched(verified) => {
            stats.vouched = matches!(verdict, Verdict::Vouched(_));
            stats.parent_verdict = Some(verdict.reason().to_string());
            stats.verified_zero_blocks = verified.zero_blocks;
            stats.verified_blocks = verified.blocks_read;
            stats.verified_bytes = verified.bytes_read;
            Ok(())
        }
        verify::Outcome::Mismatch(what) => Err(refuse(format!(
            "{what}, although the change source ({}) calls it unchanged",
            options.changes.kind()
        ))),
    }
}

/// An image backup in restic's content-defined chunks: a changed-block
/// incremental when the parent and the changes are known, else a full
/// re-chunk. Returns the content list and the parent's.
#[allow(clippy::too_many_arguments)]
fn content_defined(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    chunker: &Chunker,
    options: &ImageBackupOptions,
    parent: Option<Option<ParentBlobs>>,
    changed: Option<Vec<Range<u64>>>,
    new_hashes: &mut Option<BlockHashes>,
    threads: usize,
    counters: &Counters,
    stats: &mut ImageStats,
) -> Result<(Vec<Id>, Option<Vec<Id>>), ImageError> {
    let mut parent_content = None;
    let plan = match (parent, changed) {
        (Some(Some(blobs)), Some(changed)) => match parent_plan(blobs, layout.size, changed) {
            Ok(plan) => Some(plan),
            Err(reason) => {
                stats.fallback_reason = Some(reason);
                None
            }
        },
        (Some(None), Some(_)) => {
            stats.fallback_reason = Some("the parent snapshot has no readable image file".into());
            None
        }
        (Some(blobs), None) => {
            parent_content = blobs.map(|b| b.ids);
            None
        }
        _ => None,
    };
    stats.incremental = plan.is_some();
    if let Some(plan) = &plan {
        parent_content = Some(plan.ids.clone());
    }

    let content = match &plan {
        Some(plan) => {
            incremental_content(repo, image, layout, chunker, plan, threads, counters, stats)?
        }
        None => {
            // A block-hash cache still to be computed is computed from the
            // bytes this pass reads anyway.
            let mut hasher = match (&options.changes, &*new_hashes) {
                (ChangedBlocks::BlockHashCache(_), None) => Some(BlockHasher::new(layout.size)),
                _ => None,
            };
            let content = produce_content(
                repo,
                image,
                layout,
                chunker,
                threads,
                counters,
                stats,
                hasher.as_mut(),
            )?;
            if let Some(hasher) = hasher {
                *new_hashes = Some(hasher.finish());
            }
            content
        }
    };

    Ok((content, parent_content))
}

/// The file node an image snapshot stores: the one called `file_name`, else
/// the only file of the snapshot.
fn parent_node(repo: &Repository, parent: &Id, file_name: &str) -> Result<Node, ImageError> {
    // The usual image snapshot (one file at the root) is resolved from one
    // load of the root tree, which holds the whole content list.
    let snapshot = repo.load_snapshot(parent)?;
    if let Some(root) = snapshot.tree {
        let tree = repo.load_tree(&root)?;
        let named = tree
            .find(file_name.as_bytes())
            .filter(|n| n.node_type == NodeType::File);
        let only = match tree.nodes.as_slice() {
            [only] if only.node_type == NodeType::File => Some(only),
            _ => None,
        };
        if let Some(node) = named.or(only) {
            return Ok(node.clone());
        }
    }
    find_file_node(repo, parent, None).map(|(_, node)| node)
}

/// Saves the snapshot's tree, which holds the whole content list (megabytes
/// of hex IDs for a large disk): hashed on one thread while compressed on
/// another, as it is on the critical path of a fast incremental.
fn save_content_tree(
    repo: &Repository,
    tree: &[u8],
    (id, frame): (Id, Option<(i32, Vec<u8>)>),
) -> Result<(Id, bool, u64), ImageError> {
    let saved = match &frame {
        Some((level, frame)) => {
            repo.save_blob_precompressed(BlobType::Tree, id, tree.len(), *level, frame)?
        }
        None => None,
    };
    match saved {
        Some(saved) => Ok(saved),
        None => Ok(repo.save_blob(BlobType::Tree, tree, Some(id))?),
    }
}

/// A tree's ID and, when the repository compresses trees of its size, its
/// zstd frame at that level: hashed on one thread while compressed on
/// another (a content list of a large disk is megabytes of hex).
fn hash_and_compress(repo: &Repository, tree: &[u8]) -> (Id, Option<(i32, Vec<u8>)>) {
    let Some(level) = repo.blob_level(BlobType::Tree, tree.len()) else {
        return (Id(Sha256::digest(tree).into()), None);
    };
    std::thread::scope(|scope| {
        let hashing = scope.spawn(|| Id(Sha256::digest(tree).into()));
        let frame = compress_blob(level, tree).ok().map(|frame| (level, frame));
        let id = hashing
            .join()
            .unwrap_or_else(|_| Id(Sha256::digest(tree).into()));
        (id, frame)
    })
}

/// The image file's node in its snapshot (like `--stdin`'s, with the
/// image's mtime when given).
fn image_node(options: &ImageBackupOptions, time: GoTime, size: u64, content: Vec<Id>) -> Node {
    let mtime = options.mtime.unwrap_or(time);
    let mut node = crate::archiver::stream_file_node(
        options.file_name.as_bytes().to_vec(),
        mtime,
        size,
        content,
    );
    if let Some(facts) = &options.facts {
        node.extended_attributes = vec![facts.record().to_xattr()];
    }
    node
}

/// The image file's node and tree, encoded, hashed and compressed ahead of
/// [`backup_image`] ([`prepare_content_tree`]).
#[derive(Clone)]
pub struct PreparedTree {
    node: Node,
    bytes: Vec<u8>,
    id: Id,
    frame: Option<(i32, Vec<u8>)>,
}

impl std::fmt::Debug for PreparedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedTree")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Makes the tree an incremental will store, from the parent's blobs and
/// the prefetched blocks' IDs, while the blocks are still being sealed
/// (a thread that would wait does it): every block the parent has, except
/// the prefetched ones. [`backup_image`] stores it only if the node it ends
/// up with is the same (else it encodes its own); `None` when the parent
/// does not fit (other size or block size) or `options` has no time.
pub fn prepare_content_tree(
    repo: &Repository,
    options: &ImageBackupOptions,
    size: u64,
    parent: &ParentBlobs,
    planned: &PlannedBlocks,
) -> Option<PreparedTree> {
    let time = options.time?;
    let block = planned.block;
    if parent.size != size || fixed::block_size_of(&parent.lengths, block) != Some(block) {
        return None;
    }
    let mut content = parent.ids.clone();
    for &(i, id) in &planned.ids {
        let start = (i as u64).checked_mul(block)?;
        let length = block.min(size.checked_sub(start)?);
        *content.get_mut(i)? = id.unwrap_or_else(|| fixed::zero_block_id(length));
    }
    let node = image_node(options, time, size, content);
    let tree = Tree { nodes: vec![node] };
    let bytes = tree.encode().ok()?;
    let (id, frame) = hash_and_compress(repo, &bytes);
    let node = tree.nodes.into_iter().next()?;
    Some(PreparedTree {
        node,
        bytes,
        id,
        frame,
    })
}

/// The parent image file's content list and blob lengths
/// ([`load_parent_blobs`]).
#[derive(Clone)]
pub struct ParentBlobs {
    snapshot: Id,
    file_name: String,
    ids: Vec<Id>,
    lengths: Vec<u64>,
    size: u64,
    record: ParentRecord,
}

impl ParentBlobs {
    /// The parent snapshot.
    pub fn snapshot(&self) -> Id {
        self.snapshot
    }

    /// The image record its node carries.
    pub fn record(&self) -> &ParentRecord {
        &self.record
    }
}

impl std::fmt::Debug for ParentBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentBlobs")
            .field("snapshot", &self.snapshot)
            .field("file_name", &self.file_name)
            .field("blobs", &self.ids.len())
            .field("size", &self.size)
            .finish()
    }
}

/// The blobs of the image file `file_name` in snapshot `parent` (needs the
/// index), for [`ImageBackupOptions::parent_blobs`]; `None` when it has no
/// such file, or its blobs are not all in the index or do not add up to its
/// size.
pub fn load_parent_blobs(repo: &Repository, parent: &Id, file_name: &str) -> Option<ParentBlobs> {
    let node = parent_node(repo, parent, file_name).ok()?;
    let record = ParentRecord::of_node(&node);
    let ids = node.content.unwrap_or_default();
    let lengths = ids
        .iter()
        .map(|id| {
            repo.lookup(BlobType::Data, id)
                .map(|l| u64::from(l.plaintext_len()))
        })
        .collect::<Option<Vec<u64>>>()?;
    (lengths.iter().sum::<u64>() == node.size).then_some(ParentBlobs {
        snapshot: *parent,
        file_name: file_name.to_string(),
        ids,
        lengths,
        size: node.size,
        record,
    })
}

/// Builds the reuse plan from the parent's blobs, or says why they cannot
/// be reused.
fn parent_plan(
    parent: ParentBlobs,
    size: u64,
    changed: Vec<Range<u64>>,
) -> Result<ParentPlan, String> {
    if parent.size != size {
        // The last parent chunk ended at the old end of file, not at a cut.
        return Err(format!(
            "disk size changed ({} -> {size} bytes)",
            parent.size
        ));
    }
    let ends = parent
        .lengths
        .iter()
        .scan(0u64, |end, length| {
            *end += length;
            Some(*end)
        })
        .collect();
    Ok(ParentPlan {
        ends,
        ids: parent.ids,
        changed,
    })
}

/// A chunk handed to a worker: its index in the content list and its bytes.
type Job = (usize, Vec<u8>);

/// Chunks the whole guest view and stores the blobs on worker threads
/// (feeding `hasher` the guest bytes in order); returns the content list.
#[allow(clippy::too_many_arguments)]
fn produce_content(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    chunker: &Chunker,
    threads: usize,
    counters: &Counters,
    stats: &mut ImageStats,
    hasher: Option<&mut BlockHasher>,
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
            counters,
            stats,
            hasher,
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

/// The producer: walks the guest view chunk by chunk and feeds the workers.
#[allow(clippy::too_many_arguments)]
fn chunk_guest(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    cutter: &ChunkCutter,
    counters: &Counters,
    stats: &mut ImageStats,
    mut hasher: Option<&mut BlockHasher>,
    content: &mut Vec<Option<Id>>,
    failed: &AtomicBool,
    jobs: &std::sync::mpsc::SyncSender<Job>,
) -> Result<(), ImageError> {
    let size = layout.size;
    let mut buffer = GuestBuffer::new(image, layout);
    let mut zero_ids: HashMap<u64, Id> = HashMap::new();
    let mut pos = 0u64;
    while pos < size {
        if failed.load(Ordering::Acquire) {
            return Ok(());
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
                    let id = save_zero_chunk(repo, length, counters)?;
                    zero_ids.insert(length, id);
                    id
                }
            };
            content.push(Some(id));
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.zeros(end);
            }
        } else {
            let data = buffer.range(pos, end)?.to_vec();
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.feed(pos, &data);
            }
            let index = content.len();
            content.push(None);
            if jobs.send((index, data)).is_err() {
                return Ok(()); // workers gone: an error was recorded
            }
        }
        buffer.drop_before(end);
        counters.progressed(end - pos);
        pos = end;
    }
    stats.chunks = content.len() as u64;
    stats.bytes_read = buffer.bytes_read;
    Ok(())
}

/// Stores the all-zero chunk of `length` bytes (never read from the image).
fn save_zero_chunk(repo: &Repository, length: u64, counters: &Counters) -> Result<Id, ImageError> {
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
    Ok(id)
}

/// The new chunk cuts from a true chunk start up to the cut where the
/// boundaries resynchronise with the parent's.
struct RegionCuts {
    /// Chunk ends, in order; the last one is the resynchronising cut (a
    /// parent boundary outside every change) or the end of the disk.
    cuts: Vec<u64>,
    /// Bytes read from the image to find them.
    bytes_read: u64,
}

/// One entry of an incremental's content list.
enum Piece {
    /// A parent chunk, reused without reading.
    Parent(Id),
    /// A new chunk `[start, end)` of the guest view.
    New(u64, u64),
}

/// Re-chunks from `start` (a parent boundary that is a true chunk start of
/// the new content: the start of the parent chunk holding the first change at
/// or after it) until a cut coincides with a parent boundary that is
/// not inside a change (spec: restic-format §15: from there on the cuts are
/// the parent's, as they depend only on the bytes since the last cut).
fn rechunk_region(
    image: &dyn DiskImage,
    layout: &GuestLayout,
    cutter: &ChunkCutter,
    plan: &ParentPlan,
    start: u64,
) -> Result<RegionCuts, ImageError> {
    let size = layout.size;
    // The first changed byte at or after `start`.
    let change = plan.next_change(start).max(start);
    let mut buffer = GuestBuffer::exact(image, layout);
    let mut cuts = Vec::new();
    let mut pos = start;
    // Positions up to `change` see the parent's bytes in their window, and the
    // parent chunk from `start` did not end before `change`: no cut there.
    let mut search_from = change.saturating_add(1);
    while pos < size {
        let end = cutter.cut_searching_from(layout, &mut buffer, pos, search_from)?;
        if end <= pos {
            return Err(ImageError::Chunker(format!("no progress at offset {pos}")));
        }
        cuts.push(end);
        buffer.drop_before(end);
        pos = end;
        search_from = 0;
        if plan.ends.binary_search(&pos).is_ok() && !plan.inside_change(pos) {
            break;
        }
    }
    Ok(RegionCuts {
        cuts,
        bytes_read: buffer.bytes_read,
    })
}

/// The parent boundary at or before `change`: the start of the parent chunk
/// holding byte `change`, and that chunk's index.
fn parent_chunk_start(plan: &ParentPlan, change: u64) -> (u64, usize) {
    let k = plan.ends.partition_point(|&end| end <= change);
    let start = match k.checked_sub(1) {
        Some(i) => plan.ends.get(i).copied().unwrap_or(0),
        None => 0,
    };
    (start, k)
}

/// A changed-block incremental: reuses the parent's chunks where nothing
/// changed (without reading them), re-chunks only from the parent boundary
/// before each change until the boundaries resynchronise, and hashes and
/// stores the new chunks; all of it on `threads` threads. The content list
/// equals that of a full backup of the same guest view.
///
/// 1. For each changed region (in parallel) find the new cuts, reading only
///    from the first position after the change that could be a cut.
/// 2. Stitch the content list in order: parent chunks up to each region,
///    then the region's new chunks. A region that a previous one ran past
///    (rare: a new cut inside a change that does not resynchronise before the
///    next change's parent chunk) is re-chunked there and then.
/// 3. Read, hash and store the new chunks (in parallel).
#[allow(clippy::too_many_arguments)]
fn incremental_content(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    chunker: &Chunker,
    plan: &ParentPlan,
    threads: usize,
    counters: &Counters,
    stats: &mut ImageStats,
) -> Result<Vec<Id>, ImageError> {
    use rayon::prelude::*;

    let cutter = ChunkCutter::new(chunker)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ImageError::Chunker(format!("threads: {e}")))?;

    // 1. Speculative re-chunk of every region, keyed by its start.
    let mut starts: Vec<u64> = Vec::new();
    for range in &plan.changed {
        let (start, _) = parent_chunk_start(plan, range.start);
        // A start inside a change is run past by the region before it.
        if starts.last() != Some(&start) && !plan.inside_change(start) {
            starts.push(start);
        }
    }
    let regions: Vec<Result<RegionCuts, ImageError>> = pool.install(|| {
        starts
            .par_iter()
            .map(|&start| rechunk_region(image, layout, &cutter, plan, start))
            .collect()
    });
    let mut by_start: HashMap<u64, RegionCuts> = HashMap::with_capacity(regions.len());
    for (&start, region) in starts.iter().zip(regions) {
        by_start.insert(start, region?);
    }

    // 2. Stitch.
    let size = layout.size;
    let mut pieces: Vec<Piece> = Vec::with_capacity(plan.ids.len() + starts.len());
    let mut pos = 0u64;
    let mut next = 0usize; // index of the parent chunk starting at `pos`
    let mut bytes_read = 0u64;
    while pos < size {
        let change = plan.next_change(pos);
        let (start, k) = if change >= size {
            (size, plan.ids.len())
        } else {
            parent_chunk_start(plan, change)
        };
        for i in next..k {
            let (Some(&id), Some(&end)) = (plan.ids.get(i), plan.ends.get(i)) else {
                break;
            };
            pieces.push(Piece::Parent(id));
            stats.chunks_reused += 1;
            stats.bytes_reused += end - pos;
            counters.progressed(end - pos);
            pos = end;
        }
        if start >= size {
            break;
        }
        if pos != start {
            return Err(ImageError::Chunker(format!(
                "parent boundaries out of step at offset {pos} (expected {start})"
            )));
        }
        let region = match by_start.remove(&start) {
            Some(region) => region,
            None => rechunk_region(image, layout, &cutter, plan, start)?,
        };
        bytes_read += region.bytes_read;
        for &end in &region.cuts {
            pieces.push(Piece::New(pos, end));
            stats.bytes_rechunked += end - pos;
            pos = end;
        }
        next = match plan.ends.binary_search(&pos) {
            Ok(i) => i + 1,
            Err(_) if pos >= size => plan.ids.len(),
            Err(_) => {
                return Err(ImageError::Chunker(format!(
                    "re-chunking stopped off a parent boundary at offset {pos}"
                )))
            }
        };
    }
    // Regions left in `by_start` were run past by an earlier one (step 2
    // re-chunked from where that one resynchronised); their work is dropped.
    for region in by_start.values() {
        bytes_read += region.bytes_read;
    }

    // 3. Hash and store the new chunks.
    let new_chunks: Vec<(usize, u64, u64)> = pieces
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Piece::New(a, b) => Some((i, *a, *b)),
            Piece::Parent(_) => None,
        })
        .collect();
    let stored: Vec<Result<(usize, Id, u64), ImageError>> = pool.install(|| {
        new_chunks
            .par_iter()
            .map(|&(index, start, end)| {
                let mut data = vec![0u8; (end - start) as usize];
                let read = layout.materialise(image, start, &mut data)?;
                let id = Id(known_chunk_id(&data).unwrap_or_else(|| Sha256::digest(&data).into()));
                let (id, new, packed) = repo.save_blob(BlobType::Data, &data, Some(id))?;
                if new {
                    add(&counters.data_blobs, 1);
                    add(&counters.data_added, data.len() as u64);
                    add(&counters.data_added_packed, packed);
                }
                counters.progressed(end - start);
                Ok((index, id, read))
            })
            .collect()
    });
    let mut content: Vec<Id> = pieces
        .iter()
        .map(|p| match p {
            Piece::Parent(id) => *id,
            Piece::New(..) => Id([0; 32]),
        })
        .collect();
    for result in stored {
        let (index, id, read) = result?;
        bytes_read += read;
        if let Some(slot) = content.get_mut(index) {
            *slot = id;
        }
    }
    stats.chunks = content.len() as u64;
    stats.bytes_read = bytes_read;
    Ok(content)
}
