//! Fixed-size, block-aligned chunks of the guest view: image mode's default.
//!
//! restic's content-defined chunks (512 KiB to 8 MiB, ~1 MiB on average)
//! are the right cut for files whose bytes move, but a disk image's bytes do
//! not move: a guest rewrites blocks in place. With content-defined chunks one
//! changed 64 KiB cluster forces its whole chunk, and the run up to the next
//! boundary that resynchronises, to be read, hashed and stored again
//! (measured: ~2 MiB per changed cluster). With blobs aligned to guest blocks
//! a changed cluster costs one block, and an incremental reads nothing else.
//!
//! The blobs are ordinary data blobs and the content list an ordinary one, so
//! restic restores, dumps and checks such snapshots like any other file. What
//! is given up: deduplication against content-defined backups of the same
//! bytes (restic's own backup of a raw image), which image mode never had for
//! qcow2 files anyway (restic stores their host bytes, not the guest view).
//!
//! The block size is a power of two from 64 KiB (qcow2's default cluster and
//! dirty-bitmap granularity) to 8 MiB (restic's largest chunk). By default it
//! is 64 KiB, doubled until the disk has at most [`TARGET_MAX_BLOCKS`] blocks,
//! which bounds the content list (the tree blob restic loads whole) to ~9 MB
//! of JSON and the index to that many entries per disk. An incremental keeps
//! its parent's block size, read off the parent's blob lengths.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use restix_chunker::is_all_zero;
use restix_repo_format::{BlobType, Id};
use sha2::{Digest, Sha256};

use super::changes::BlockHashes;
use super::layout::GuestLayout;
use super::{add, Counters, DiskImage, ImageError, ImageStats};
use crate::repository::{compress_blob, prefaulted_pack_buffer, Repository, SealedPacks};

/// Smallest block size: qcow2's default cluster size, and the granularity of
/// the block-hash cache (every block is a whole number of cache blocks).
pub const MIN_BLOCK_SIZE: u64 = 64 * 1024;
/// Largest block size: restic's largest chunk.
pub const MAX_BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// The default block size grows until a disk has at most this many blocks.
pub const TARGET_MAX_BLOCKS: u64 = 1 << 17;
/// Guest bytes read and stored per task: a few blocks of the smallest size,
/// one block of the larger ones.
const TASK_BYTES: u64 = 1024 * 1024;

/// How image mode cuts the guest view into blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageChunking {
    /// Follow the parent: its block size when its blobs are blocks, restic's
    /// chunker when they are content-defined; without a parent, blocks of
    /// [`default_block_size`].
    #[default]
    Auto,
    /// Blocks of this many bytes (see [`valid_block_size`]).
    Fixed(u64),
    /// restic's content-defined chunks (spec: restic-format §15).
    ContentDefined,
}

impl std::str::FromStr for ImageChunking {
    type Err = ImageError;

    /// `auto`, `restic` (content-defined) or a block size such as `64K`,
    /// `1M`, `1MiB` or `65536`.
    fn from_str(s: &str) -> Result<Self, ImageError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(ImageChunking::Auto),
            "restic" | "cdc" | "content-defined" => Ok(ImageChunking::ContentDefined),
            size => {
                let bad = || {
                    ImageError::InvalidArgument(format!(
                        "invalid image chunking {s:?}: use auto, restic or a block size \
                         that is a power of two from 64K to 8M"
                    ))
                };
                let size = size.trim_end_matches("ib").trim_end_matches('b');
                let (digits, unit) = match size.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
                    Some((i, _)) => size.split_at(i),
                    None => (size, ""),
                };
                let shift = match unit {
                    "" => 0,
                    "k" => 10,
                    "m" => 20,
                    _ => return Err(bad()),
                };
                let n: u64 = digits.parse().map_err(|_| bad())?;
                let bytes = n
                    .checked_shl(shift)
                    .filter(|b| b >> shift == n)
                    .ok_or_else(bad)?;
                if valid_block_size(bytes) {
                    Ok(ImageChunking::Fixed(bytes))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Whether `size` can be a block size: a power of two from
/// [`MIN_BLOCK_SIZE`] to [`MAX_BLOCK_SIZE`].
pub fn valid_block_size(size: u64) -> bool {
    size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size)
}

/// The block size of a new image backup of a disk of `virtual_size` bytes.
pub fn default_block_size(virtual_size: u64) -> u64 {
    let mut block = MIN_BLOCK_SIZE;
    while block < MAX_BLOCK_SIZE && virtual_size.div_ceil(block) > TARGET_MAX_BLOCKS {
        block *= 2;
    }
    block
}

/// The block size `lengths` (a content list's blob lengths, in order) were
/// cut with, if they are blocks: every blob but the last of one valid block
/// size, the last no longer. A single blob is a block of any size at least
/// its length; `preferred` is taken then if it fits.
pub(crate) fn block_size_of(lengths: &[u64], preferred: u64) -> Option<u64> {
    match lengths {
        [] => Some(preferred),
        [only] if *only <= preferred => Some(preferred),
        [only] => valid_block_size(*only).then_some(*only),
        [first, middle @ .., last] => (valid_block_size(*first)
            && middle.iter().all(|l| l == first)
            && (1..=*first).contains(last))
        .then_some(*first),
    }
}

/// The ID of a blob of `length` zero bytes.
pub fn zero_block_id(length: u64) -> Id {
    // One buffer of zeros hashed in slices: no allocation of `length` bytes.
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut hasher = Sha256::new();
    let mut left = length;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..n]);
        left -= n as u64;
    }
    Id(hasher.finalize().into())
}

/// Changed blocks read, hashed and compressed ahead of the backup (see
/// [`prefetch_blocks`]).
pub struct PrefetchedBlocks {
    block: u64,
    /// zstd level of the compressed copies (`None`: none made).
    level: Option<i32>,
    blocks: HashMap<usize, Prefetched>,
    bytes_read: u64,
    /// The `Packed` blocks' packs, until stored.
    sealed: Mutex<Option<SealedPacks>>,
    /// Pack buffers mapped ahead for [`PrefetchedBlocks::seal`].
    buffers: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PrefetchedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefetchedBlocks")
            .field("block", &self.block)
            .field("level", &self.level)
            .field("blocks", &self.blocks.len())
            .field("bytes_read", &self.bytes_read)
            .finish()
    }
}

/// The blob IDs of prefetched blocks ([`PrefetchedBlocks::planned`]).
#[derive(Debug, Clone)]
pub struct PlannedBlocks {
    pub(crate) block: u64,
    /// Block number and blob ID (`None`: all zeros), by block number.
    pub(crate) ids: Vec<(usize, Option<Id>)>,
}

/// One prefetched block.
enum Prefetched {
    /// All zeros (not read, or read and found zero).
    Zero,
    /// Data: its blob ID, length, and its bytes compressed at the prefetch's
    /// level, else plain (only one copy is kept).
    Data { id: Id, len: usize, bytes: Vec<u8> },
    /// Data encrypted into one of [`PrefetchedBlocks::sealed`]'s packs, as
    /// its `slot`th blob ([`PrefetchedBlocks::seal`]).
    Packed { id: Id, len: usize, slot: usize },
}

impl PrefetchedBlocks {
    /// Encrypts the compressed blocks for `repo` into pack buffers, so that
    /// this runs while the index loads (it needs only the key); the backup
    /// then only stores the packs. Packs are sealed on up to `threads`
    /// threads (the calling one and scoped ones), each a run of whole packs.
    /// Left as they are when `repo` does not store data at the prefetch's
    /// level (the backup reads those blocks again).
    pub fn seal(&mut self, repo: &Repository, threads: usize) -> Result<(), ImageError> {
        let Some(level) = self.level else {
            return Ok(());
        };
        // The last buffer given is used first: the largest, for the first pack.
        self.buffers.sort_by_key(Vec::capacity);
        repo.give_pack_buffers(std::mem::take(&mut self.buffers));
        let mut order: Vec<usize> = self
            .blocks
            .iter()
            .filter(|(_, b)| matches!(b, Prefetched::Data { .. }))
            .map(|(i, _)| *i)
            .collect();
        order.sort_unstable();
        let frames: Vec<(Id, usize, &[u8])> = order
            .iter()
            .filter_map(|i| match self.blocks.get(i) {
                Some(Prefetched::Data { id, len, bytes }) => Some((*id, *len, bytes.as_slice())),
                _ => None,
            })
            .collect();
        let parts = pack_runs(&frames, repo.pack_size(), threads);
        // `None`: a sealing thread panicked (the backup then reads the blocks).
        type Part = Option<Result<Option<SealedPacks>, crate::repository::RepoError>>;
        let sealed: Vec<Part> = std::thread::scope(|scope| {
            let mut rest = frames.as_slice();
            let mut handles = Vec::new();
            for &len in parts.iter().skip(1).rev() {
                let (head, tail) = rest.split_at(rest.len() - len);
                rest = head;
                handles.push(scope.spawn(move || repo.seal_packs(level, tail.iter().copied())));
            }
            let mut all = vec![Some(repo.seal_packs(level, rest.iter().copied()))];
            all.extend(handles.into_iter().rev().map(|h| h.join().ok()));
            all
        });
        let mut packs: Option<SealedPacks> = None;
        for part in sealed {
            let Some(Some(part)) = part.transpose()? else {
                return Ok(());
            };
            match &mut packs {
                Some(p) => p.append(part),
                None => packs = Some(part),
            }
        }
        let Some(packs) = packs else {
            return Ok(());
        };
        for (slot, i) in order.into_iter().enumerate() {
            if let Some(block) = self.blocks.get_mut(&i) {
                if let Prefetched::Data { id, len, .. } = block {
                    *block = Prefetched::Packed {
                        id: *id,
                        len: *len,
                        slot,
                    };
                }
            }
        }
        *self.sealed.lock().unwrap_or_else(|p| p.into_inner()) = Some(packs);
        Ok(())
    }

    /// Maps the memory of the pack buffers that [`PrefetchedBlocks::seal`]
    /// will fill (packs of `pack_size` bytes; two at most, as many as the
    /// repository keeps spare), for a thread that would otherwise wait for
    /// the key: first touching fresh memory is a page fault per 4 KiB. Stops
    /// once `key_ready` is set: sealing then starts on fresh memory rather
    /// than wait.
    pub fn prefault_pack_buffers(&mut self, pack_size: u64, key_ready: &AtomicBool) {
        let bytes: u64 = self
            .blocks
            .values()
            .map(|b| match b {
                Prefetched::Data { bytes, .. } => bytes.len() as u64 + 32,
                _ => 0,
            })
            .sum();
        // A pack ends with the blob that reaches `pack_size`; the header is
        // written behind the blobs. The last pack only needs what is left.
        let full = pack_size.saturating_add(1 << 20);
        let mut left = bytes;
        self.buffers.clear();
        while left > 0 && self.buffers.len() < 2 {
            let capacity = left.saturating_add(1 << 20).min(full);
            self.buffers.push(prefaulted_pack_buffer(
                usize::try_from(capacity).unwrap_or(usize::MAX),
                key_ready,
            ));
            left = left.saturating_sub(pack_size.max(1));
        }
    }

    /// The blocks' blob IDs (`None`: all zeros), for
    /// [`prepare_content_tree`](super::prepare_content_tree).
    pub fn planned(&self) -> PlannedBlocks {
        let mut ids: Vec<(usize, Option<Id>)> = self
            .blocks
            .iter()
            .map(|(i, b)| match b {
                Prefetched::Zero => (*i, None),
                Prefetched::Data { id, .. } | Prefetched::Packed { id, .. } => (*i, Some(*id)),
            })
            .collect();
        ids.sort_unstable_by_key(|(i, _)| *i);
        PlannedBlocks {
            block: self.block,
            ids,
        }
    }

    /// Packs and blobs sealed (tests look without taking them).
    #[cfg(test)]
    pub(super) fn sealed_counts(&self) -> Option<(usize, usize)> {
        let sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        sealed.as_ref().map(|s| (s.pack_count(), s.blob_count()))
    }

    /// The sealed packs, once.
    fn take_sealed(&self) -> Option<SealedPacks> {
        self.sealed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Splits `frames` into at most `threads` runs of consecutive frames for
/// independent packers: each run (but the last) ends where a pack of
/// `pack_size` bytes would, so the packs come out as from one packer, and
/// the runs hold about equal numbers of packs. Returns the runs' lengths.
fn pack_runs(frames: &[(Id, usize, &[u8])], pack_size: u64, threads: usize) -> Vec<usize> {
    // Where one packer would close its packs (blob overhead: IV and MAC).
    let mut packs = Vec::new();
    let (mut bytes, mut start) = (0u64, 0usize);
    for (i, (_, _, frame)) in frames.iter().enumerate() {
        bytes += frame.len() as u64 + 32;
        if bytes >= pack_size {
            packs.push(i + 1 - start);
            (bytes, start) = (0, i + 1);
        }
    }
    if start < frames.len() {
        packs.push(frames.len() - start);
    }
    let runs = threads.clamp(1, packs.len().max(1));
    let per_run = packs.len().div_ceil(runs).max(1);
    packs.chunks(per_run).map(|c| c.iter().sum()).collect()
}

/// Reads, hashes and (at zstd `level`) compresses the blocks of `block`
/// bytes that `changed` touches, on `threads` threads, before the repository
/// is open: an incremental's work then overlaps with deriving the key
/// (~70 ms of scrypt) and loading the index, instead of following them.
/// [`backup_image`](super::backup_image) uses them when its block size is
/// `block` (else they are dropped). `None` when the blocks exceed `max_bytes`
/// (the backup then reads them itself, in bounded memory).
pub fn prefetch_blocks(
    image: &dyn DiskImage,
    changed: &[Range<u64>],
    block: u64,
    level: Option<i32>,
    threads: usize,
    max_bytes: u64,
) -> Result<Option<PrefetchedBlocks>, ImageError> {
    if !valid_block_size(block) {
        return Ok(None);
    }
    let size = image.virtual_size();
    let mut touched: Vec<usize> = Vec::new();
    for range in changed {
        let (start, end) = (range.start.min(size), range.end.min(size));
        if start >= end {
            continue;
        }
        for i in start / block..end.div_ceil(block) {
            let i = usize::try_from(i).map_err(|_| {
                ImageError::InvalidArgument(format!("disk of {size} bytes too large"))
            })?;
            if touched.last() != Some(&i) {
                touched.push(i);
                // Checked per block: one range may cover the whole disk.
                if (touched.len() as u64).saturating_mul(block) > max_bytes {
                    return Ok(None);
                }
            }
        }
    }
    touched.sort_unstable();
    touched.dedup();
    let layout = GuestLayout::new(image)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ImageError::Chunker(format!("threads: {e}")))?;
    let results: Vec<Result<(usize, Prefetched, u64), ImageError>> = pool.install(|| {
        touched
            .par_iter()
            .map(|&i| {
                let start = i as u64 * block;
                let end = (start + block).min(size);
                if layout.is_zero_run(start, end) {
                    return Ok((i, Prefetched::Zero, 0));
                }
                let mut data = vec![0u8; (end - start) as usize];
                let read = layout.materialise(image, start, &mut data)?;
                if is_all_zero(&data) {
                    return Ok((i, Prefetched::Zero, read));
                }
                let id = Id(Sha256::digest(&data).into());
                let len = data.len();
                let bytes = match level {
                    Some(level) => compress_blob(level, &data)
                        .map_err(|e| ImageError::Chunker(format!("compressing block {i}: {e}")))?,
                    None => data,
                };
                Ok((i, Prefetched::Data { id, len, bytes }, read))
            })
            .collect()
    });
    let mut prefetched = PrefetchedBlocks {
        block,
        level,
        blocks: HashMap::with_capacity(results.len()),
        bytes_read: 0,
        sealed: Mutex::new(None),
        buffers: Vec::new(),
    };
    for result in results {
        let (i, block, read) = result?;
        prefetched.bytes_read += read;
        prefetched.blocks.insert(i, block);
    }
    Ok(Some(prefetched))
}

/// The parent's blocks an incremental may reuse.
pub(crate) struct FixedParent<'a> {
    /// The parent's content list (block `i` at `i * block`).
    pub(crate) ids: &'a [Id],
    /// The parent disk's size (its last block may be shorter).
    pub(crate) size: u64,
    /// Guest ranges changed since the parent, sorted and merged.
    pub(crate) changed: &'a [Range<u64>],
}

/// What one task produced: a run of consecutive new blocks.
struct TaskOutput {
    first: usize,
    ids: Vec<Id>,
    /// BLAKE3 hashes of the task's 64 KiB cache blocks (when asked for).
    hashes: Vec<[u8; 32]>,
    read: u64,
}

/// The content list of the guest view in blocks of `block` bytes: blocks
/// that no changed range touches are the parent's (not read); the others are
/// read (zero and unallocated extents never are), hashed and stored on
/// `threads` threads. With `cache_hashes`, also returns the block-hash cache
/// of the whole disk (only meaningful without a parent: every block read).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fixed_content(
    repo: &Repository,
    image: &dyn DiskImage,
    layout: &GuestLayout,
    block: u64,
    parent: Option<FixedParent<'_>>,
    threads: usize,
    counters: &Counters,
    stats: &mut ImageStats,
    cache_hashes: bool,
    prefetched: Option<&PrefetchedBlocks>,
) -> Result<(Vec<Id>, Option<BlockHashes>), ImageError> {
    // Prefetched blocks stand in for reads only when they are this backup's
    // blocks and no block-hash cache is to be fed from the reads.
    let prefetched = prefetched.filter(|p| p.block == block && !cache_hashes);
    let size = layout.size;
    let blocks = usize::try_from(size.div_ceil(block))
        .map_err(|_| ImageError::InvalidArgument(format!("disk of {size} bytes too large")))?;
    let block_range = |i: usize| {
        let start = i as u64 * block;
        start..(start + block).min(size)
    };

    // 1. Which blocks are the parent's.
    let mut content: Vec<Option<Id>> = vec![None; blocks];
    if let Some(parent) = &parent {
        let mut changes = parent.changed.iter().peekable();
        for (i, slot) in content.iter_mut().enumerate() {
            let range = block_range(i);
            while changes.peek().is_some_and(|c| c.end <= range.start) {
                changes.next();
            }
            let touched = changes.peek().is_some_and(|c| c.start < range.end);
            let parent_end = (range.start + block).min(parent.size);
            if touched || parent_end != range.end {
                continue;
            }
            if let Some(id) = parent.ids.get(i) {
                *slot = Some(*id);
                stats.chunks_reused += 1;
                stats.bytes_reused += range.end - range.start;
            }
        }
        counters.progressed(stats.bytes_reused);
    }

    // 2. Runs of new blocks, cut into tasks of about TASK_BYTES (and where
    // prefetched blocks start or end: a task is prefetched or read whole).
    let per_task = (TASK_BYTES / block).max(1) as usize;
    let ahead = |i: usize| prefetched.is_some_and(|p| p.blocks.contains_key(&i));
    let mut tasks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < blocks {
        if content.get(i).is_some_and(Option::is_some) {
            i += 1;
            continue;
        }
        let first = i;
        while i < blocks
            && i - first < per_task
            && content.get(i).is_some_and(Option::is_none)
            && ahead(i) == ahead(first)
        {
            i += 1;
        }
        tasks.push((first, i - first));
    }
    // Blocks sealed into packs ahead are stored first, as whole packs.
    let packed = match prefetched.and_then(PrefetchedBlocks::take_sealed) {
        Some(packs) => repo.save_sealed_packs(packs)?,
        None => Vec::new(),
    };

    // 3. Read, hash and store them in parallel.
    let zero_ids: Mutex<HashMap<u64, Id>> = Mutex::new(HashMap::new());
    let zero_id = |length: u64| -> Result<Id, ImageError> {
        let mut known = zero_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = known.get(&length) {
            return Ok(*id);
        }
        let id = zero_block_id(length);
        let zeros = vec![0u8; length as usize];
        let (id, new, stored) = repo.save_blob(BlobType::Data, &zeros, Some(id))?;
        if new {
            add(&counters.data_blobs, 1);
            add(&counters.data_added, length);
            add(&counters.data_added_packed, stored);
        }
        known.insert(length, id);
        Ok(id)
    };
    let cache_block = BlockHashes::BLOCK_SIZE as usize;
    let zero_cache_hash = *blake3::hash(&vec![0u8; cache_block]).as_bytes();
    let failed = AtomicBool::new(false);
    let run_task = |&(first, count): &(usize, usize)| -> Result<TaskOutput, ImageError> {
        let start = block_range(first).start;
        let end = block_range(first + count - 1).end;
        let mut out = TaskOutput {
            first,
            ids: Vec::with_capacity(count),
            hashes: Vec::new(),
            read: 0,
        };
        if failed.load(Ordering::Relaxed) {
            return Err(ImageError::NotFound("stopped after an error".into()));
        }
        if let Some(ahead) =
            prefetched.filter(|p| (first..first + count).all(|i| p.blocks.contains_key(&i)))
        {
            for i in first..first + count {
                let r = block_range(i);
                let length = r.end - r.start;
                let id = match ahead.blocks.get(&i) {
                    Some(Prefetched::Data { id, len, bytes }) if *len as u64 == length => {
                        let saved = match ahead.level {
                            Some(level) => repo.save_blob_precompressed(
                                BlobType::Data,
                                *id,
                                *len,
                                level,
                                bytes,
                            )?,
                            None => Some(repo.save_blob(BlobType::Data, bytes, Some(*id))?),
                        };
                        let (id, new, stored) = match saved {
                            Some(saved) => saved,
                            // Compressed at a level this repository does not
                            // use: read the block again.
                            None => {
                                let mut data = vec![0u8; length as usize];
                                out.read += layout.materialise(image, r.start, &mut data)?;
                                repo.save_blob(BlobType::Data, &data, None)?
                            }
                        };
                        if new {
                            add(&counters.data_blobs, 1);
                            add(&counters.data_added, length);
                            add(&counters.data_added_packed, stored);
                        }
                        id
                    }
                    Some(Prefetched::Packed { id, len, slot }) if *len as u64 == length => {
                        if let Some((_, true, stored)) = packed.get(*slot) {
                            add(&counters.data_blobs, 1);
                            add(&counters.data_added, length);
                            add(&counters.data_added_packed, *stored);
                        }
                        *id
                    }
                    Some(Prefetched::Zero) => zero_id(length)?,
                    _ => {
                        return Err(ImageError::Chunker(format!(
                            "prefetched block {i} does not match the disk"
                        )))
                    }
                };
                out.ids.push(id);
            }
            counters.progressed(end - start);
            return Ok(out);
        }
        if layout.is_zero_run(start, end) {
            for i in first..first + count {
                let r = block_range(i);
                out.ids.push(zero_id(r.end - r.start)?);
            }
            if cache_hashes {
                let mut pos = start;
                while pos < end {
                    let n = (end - pos).min(cache_block as u64);
                    out.hashes.push(if n == cache_block as u64 {
                        zero_cache_hash
                    } else {
                        *blake3::hash(&vec![0u8; n as usize]).as_bytes()
                    });
                    pos += n;
                }
            }
            counters.progressed(end - start);
            return Ok(out);
        }
        let mut data = vec![0u8; (end - start) as usize];
        out.read = layout.materialise(image, start, &mut data)?;
        for piece in data.chunks(block as usize) {
            let id = if is_all_zero(piece) {
                zero_id(piece.len() as u64)?
            } else {
                let id = Id(Sha256::digest(piece).into());
                let (id, new, stored) = repo.save_blob(BlobType::Data, piece, Some(id))?;
                if new {
                    add(&counters.data_blobs, 1);
                    add(&counters.data_added, piece.len() as u64);
                    add(&counters.data_added_packed, stored);
                }
                id
            };
            out.ids.push(id);
        }
        counters.progressed(end - start);
        if cache_hashes {
            out.hashes = data
                .chunks(cache_block)
                .map(|b| {
                    if b.len() == cache_block && is_all_zero(b) {
                        zero_cache_hash
                    } else {
                        *blake3::hash(b).as_bytes()
                    }
                })
                .collect();
        }
        Ok(out)
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ImageError::Chunker(format!("threads: {e}")))?;
    let outputs: Vec<Result<TaskOutput, ImageError>> = pool.install(|| {
        tasks
            .par_iter()
            .map(|task| {
                let result = run_task(task);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                result
            })
            .collect()
    });

    // 4. Assemble, first error wins (in disk order).
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    let mut read = 0;
    for output in outputs {
        let output = output?;
        read += output.read;
        stats.bytes_rechunked += output
            .ids
            .iter()
            .enumerate()
            .map(|(k, _)| {
                let r = block_range(output.first + k);
                r.end - r.start
            })
            .sum::<u64>();
        for (k, id) in output.ids.into_iter().enumerate() {
            if let Some(slot) = content.get_mut(output.first + k) {
                *slot = Some(id);
            }
        }
        hashes.extend(output.hashes);
    }
    stats.chunks = blocks as u64;
    stats.bytes_read = read + prefetched.map_or(0, |p| p.bytes_read);
    let content = content
        .into_iter()
        .enumerate()
        .map(|(i, id)| id.ok_or_else(|| ImageError::NotFound(format!("block {i} was not stored"))))
        .collect::<Result<Vec<Id>, ImageError>>()?;
    let cache = (cache_hashes && parent.is_none()).then(|| BlockHashes::from_hashes(size, hashes));
    Ok((content, cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunking() {
        let parse = |s: &str| s.parse::<ImageChunking>();
        assert_eq!(parse("auto").ok(), Some(ImageChunking::Auto));
        assert_eq!(parse("restic").ok(), Some(ImageChunking::ContentDefined));
        assert_eq!(parse("64K").ok(), Some(ImageChunking::Fixed(64 << 10)));
        assert_eq!(parse("1MiB").ok(), Some(ImageChunking::Fixed(1 << 20)));
        assert_eq!(parse("8m").ok(), Some(ImageChunking::Fixed(8 << 20)));
        assert_eq!(parse("131072").ok(), Some(ImageChunking::Fixed(128 << 10)));
        for bad in ["4K", "16M", "100K", "x", "1G", "99999999999999999999K", "K"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_block_size_bounds_the_block_count() {
        assert_eq!(default_block_size(0), MIN_BLOCK_SIZE);
        assert_eq!(default_block_size(8 << 30), MIN_BLOCK_SIZE);
        assert_eq!(default_block_size((8 << 30) + 1), 128 << 10);
        assert_eq!(default_block_size(100 << 30), 1 << 20);
        assert_eq!(default_block_size(u64::MAX), MAX_BLOCK_SIZE);
    }

    #[test]
    fn recognises_block_shaped_content() {
        let k = 1024;
        assert_eq!(block_size_of(&[64 * k, 64 * k, 10], 64 * k), Some(64 * k));
        assert_eq!(
            block_size_of(&[64 * k, 64 * k, 64 * k], 128 * k),
            Some(64 * k)
        );
        assert_eq!(block_size_of(&[1000], 64 * k), Some(64 * k));
        assert_eq!(block_size_of(&[1 << 20], 64 * k), Some(1 << 20));
        // Content-defined chunks.
        assert_eq!(block_size_of(&[600 * k, 1100 * k, 700 * k], 64 * k), None);
        assert_eq!(block_size_of(&[64 * k, 32 * k, 64 * k], 64 * k), None);
        assert_eq!(block_size_of(&[64 * k, 65 * k], 64 * k), None);
        assert_eq!(block_size_of(&[64 * k, 0], 64 * k), None);
    }

    #[test]
    fn zero_block_ids_are_sha256_of_zeros() {
        for length in [0u64, 1, 65536, 65537, 512 << 10] {
            let expected = Id(Sha256::digest(vec![0u8; length as usize]).into());
            assert_eq!(zero_block_id(length), expected);
        }
        assert_eq!(
            zero_block_id(512 << 10).0,
            restix_chunker::ZERO_CHUNK_ID,
            "restic's zero chunk"
        );
    }

    #[test]
    fn pack_runs_split_at_pack_ends() {
        let bytes = vec![0u8; 68];
        // Frames of 68 + 32 bytes: a pack of 300 bytes closes after 3.
        let frames: Vec<(Id, usize, &[u8])> = (0..20u32)
            .map(|i| (Id::hash(&i.to_le_bytes()), 68, bytes.as_slice()))
            .collect();
        // Seven packs (3 x 6 + 2) over two threads: 4 packs, then 3.
        assert_eq!(pack_runs(&frames, 300, 2), [12, 8]);
        assert_eq!(pack_runs(&frames, 300, 1), [20]);
        assert_eq!(pack_runs(&frames, 300, 0), [20]);
        // More threads than packs: one run per pack.
        assert_eq!(pack_runs(&frames, 300, 64), [3, 3, 3, 3, 3, 3, 2]);
        assert_eq!(pack_runs(&frames[..2], 300, 4), [2]);
        assert_eq!(pack_runs(&[], 300, 4), Vec::<usize>::new());
        for threads in 1..10 {
            let runs = pack_runs(&frames, 300, threads);
            assert_eq!(runs.iter().sum::<usize>(), 20);
            assert!(runs.len() <= threads);
            let whole_packs = &runs[..runs.len() - 1];
            assert!(whole_packs.iter().all(|n| n % 3 == 0), "{runs:?}");
        }
    }
}
