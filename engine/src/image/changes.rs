//! Where changed guest ranges come from: a qcow2 overlay's own clusters, a
//! persistent dirty bitmap, or a local cache of per-block hashes.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use restix_qcow2::{DiskImage, ExtentKind, Qcow2Image};
use restix_repo_format::Id;
use sha2::{Digest, Sha256};

use super::layout::GuestLayout;
use super::ImageError;

/// Sorts and merges overlapping or touching ranges; drops empty ones.
pub fn merge_ranges(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// What the top layer of `image` changed: its data **and zero** clusters
/// (spec: qcow2 §1.10: a zero cluster in an increment is a change).
///
/// For an OpenNebula increment opened with [`Qcow2Image::open_chain`] (`[disk.N.0,
/// disk.N.1]`) these are the guest ranges that differ from the parent, provided
/// the parent snapshot holds the guest view of the layers below.
pub fn changed_ranges_in_top_layer(image: &Qcow2Image) -> Result<Vec<Range<u64>>, ImageError> {
    let ranges = image
        .allocated_in_layer()?
        .into_iter()
        .filter(|e| e.kind != ExtentKind::Unallocated)
        .map(|e| e.offset..e.end())
        .collect();
    Ok(merge_ranges(ranges))
}

/// The ranges marked dirty in the persistent bitmap `name` (spec: qcow2
/// §1.11). Refuses bitmaps that are in use or inconsistent.
pub fn changed_ranges_from_bitmap(
    image: &Qcow2Image,
    name: &str,
) -> Result<Vec<Range<u64>>, ImageError> {
    Ok(merge_ranges(image.dirty_ranges(name)?))
}

/// Where the block hashes of `image_path` backed up into the repository
/// `repo_id` are cached: `<cache_dir>/restix-image/<repo_id>/<sha256(path)>`.
pub fn block_hash_cache_path(cache_dir: &Path, repo_id: &str, image_path: &Path) -> PathBuf {
    let absolute = crate::archiver::absolute_path(image_path);
    let key = Id(Sha256::digest(absolute.as_os_str().as_encoded_bytes()).into());
    cache_dir
        .join("restix-image")
        .join(repo_id)
        .join(key.to_hex())
}

/// Digest of a snapshot's content list (its blob IDs in order), which binds
/// a block-hash cache to the content it was made with.
pub fn content_digest(ids: &[Id]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"restix content list 1\0");
    for id in ids {
        hasher.update(&id.0);
    }
    *hasher.finalize().as_bytes()
}

/// File magic and format version. Version 01 held truncated SHA-256 block
/// hashes; 02 holds BLAKE3; 03 adds what binds the hashes to their snapshot
/// (the image's absolute path and a digest of the snapshot's content list).
/// A file with any other magic (an older or newer version) is ignored, never
/// misread: the next backup re-chunks in full.
const MAGIC: &[u8; 8] = b"RXBLKH03";
/// Longest image path a cache file holds.
const MAX_PATH_BYTES: usize = 64 * 1024;
/// Stored bytes per block hash (BLAKE3, 256 bits).
const HASH_LEN: usize = 32;
/// Bytes hashed per batch (bounded memory).
const HASH_WINDOW: u64 = 16 << 20;

/// Hashes of every 64 KiB guest block, and the snapshot they describe.
///
/// Hashing with BLAKE3 (several times faster than SHA-256 and, at 256 bits,
/// collision-resistant, so an equal hash means an unchanged block) is cheaper
/// than chunking plus hashing chunks; zero and unallocated blocks are not
/// read.
///
/// A cache is only used for the snapshot it names, for the image it was
/// taken of (`image_path`), and when that snapshot's content list is the one
/// it was made with (`content`, see [`content_digest`]); anything else (a
/// stale or a foreign cache) makes the backup read the whole image and write
/// a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHashes {
    /// The snapshot whose content these hashes describe.
    pub snapshot: Option<Id>,
    /// Absolute path of the image the hashes were taken of ("" = unknown).
    pub image_path: String,
    /// [`content_digest`] of the snapshot's content list.
    pub content: Option<[u8; 32]>,
    /// Guest disk size.
    pub virtual_size: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// One hash per block.
    pub hashes: Vec<[u8; HASH_LEN]>,
}

impl BlockHashes {
    /// Block size of new caches.
    pub const BLOCK_SIZE: u64 = 64 * 1024;

    fn hash(block: &[u8]) -> [u8; HASH_LEN] {
        *blake3::hash(block).as_bytes()
    }

    /// Hashes the guest view of `image`; returns the hashes and the bytes read.
    /// The pass counts towards `progress` as a whole disk of its own.
    pub(crate) fn compute(
        image: &dyn DiskImage,
        layout: &GuestLayout,
        threads: usize,
        progress: Option<&super::ImageProgress>,
    ) -> Result<(BlockHashes, u64), ImageError> {
        let size = layout.size;
        if let Some(p) = progress {
            p.add_total(size);
        }
        let block = Self::BLOCK_SIZE;
        let zero_hash = Self::hash(&vec![0u8; block as usize]);
        let mut hashes = Vec::with_capacity(size.div_ceil(block) as usize);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| ImageError::Chunker(format!("threads: {e}")))?;
        let mut read = 0;
        let mut buf = Vec::new();
        let mut pos = 0;
        while pos < size {
            let end = (pos + HASH_WINDOW).min(size);
            if layout.is_zero_run(pos, end) && (end - pos).is_multiple_of(block) {
                hashes.extend(std::iter::repeat_n(
                    zero_hash,
                    ((end - pos) / block) as usize,
                ));
            } else {
                buf.resize((end - pos) as usize, 0);
                read += layout.materialise(image, pos, &mut buf)?;
                let window: Vec<[u8; HASH_LEN]> = pool.install(|| {
                    buf.par_chunks(block as usize)
                        .map(|b| {
                            if b.len() as u64 == block && restix_chunker::is_all_zero(b) {
                                zero_hash
                            } else {
                                Self::hash(b)
                            }
                        })
                        .collect()
                });
                hashes.extend(window);
            }
            if let Some(p) = progress {
                p.add_done(end - pos);
            }
            pos = end;
        }
        Ok((
            BlockHashes {
                snapshot: None,
                image_path: String::new(),
                content: None,
                virtual_size: size,
                block_size: block,
                hashes,
            },
            read,
        ))
    }

    /// Hashes of every [`BlockHashes::BLOCK_SIZE`] block of a disk of
    /// `virtual_size` bytes, in order (a zero block hashed like any other).
    pub(crate) fn from_hashes(virtual_size: u64, hashes: Vec<[u8; HASH_LEN]>) -> Self {
        BlockHashes {
            snapshot: None,
            image_path: String::new(),
            content: None,
            virtual_size,
            block_size: Self::BLOCK_SIZE,
            hashes,
        }
    }

    /// Whether these hashes describe a disk of `virtual_size` bytes in blocks
    /// of [`BlockHashes::BLOCK_SIZE`] (else they cannot be compared).
    pub fn comparable(&self, virtual_size: u64) -> bool {
        self.virtual_size == virtual_size
            && self.block_size == Self::BLOCK_SIZE
            && self.hashes.len() as u64 == virtual_size.div_ceil(Self::BLOCK_SIZE)
    }

    /// The blocks that differ from `newer`, as merged guest ranges; `None` when
    /// the two are not comparable (size or block size differ).
    pub fn changed_ranges(&self, newer: &BlockHashes) -> Option<Vec<Range<u64>>> {
        if self.virtual_size != newer.virtual_size
            || self.block_size != newer.block_size
            || self.hashes.len() != newer.hashes.len()
        {
            return None;
        }
        let block = self.block_size;
        let ranges = self
            .hashes
            .iter()
            .zip(&newer.hashes)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| {
                let start = i as u64 * block;
                start..(start + block).min(self.virtual_size)
            })
            .collect();
        Some(merge_ranges(ranges))
    }

    /// Loads a cache file; `None` if it is missing or damaged (then the next
    /// backup is a full one).
    pub fn load(path: &Path) -> Option<BlockHashes> {
        let bytes = fs::read(path).ok()?;
        let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if blake3::hash(body).as_bytes().as_slice() != check {
            return None;
        }
        let magic = body.get(..8)?;
        if magic != MAGIC {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            let raw: [u8; 8] = body.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(raw))
        };
        let snapshot: [u8; 32] = body.get(8..40)?.try_into().ok()?;
        let virtual_size = u64_at(40)?;
        let block_size = u64_at(48)?;
        let count = usize::try_from(u64_at(56)?).ok()?;
        let content: [u8; 32] = body.get(64..96)?.try_into().ok()?;
        let path_len = usize::try_from(u64_at(96)?).ok()?;
        if path_len > MAX_PATH_BYTES {
            return None;
        }
        let image_path = String::from_utf8(body.get(104..104 + path_len)?.to_vec()).ok()?;
        let table = body.get(104 + path_len..)?;
        if block_size == 0
            || table.len() != count.checked_mul(HASH_LEN)?
            || virtual_size.div_ceil(block_size) != count as u64
        {
            return None;
        }
        let hashes = table
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Some(BlockHashes {
            snapshot: (snapshot != [0u8; 32]).then_some(Id(snapshot)),
            image_path,
            content: (content != [0u8; 32]).then_some(content),
            virtual_size,
            block_size,
            hashes,
        })
    }

    /// Writes the cache file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ImageError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        let mut body =
            Vec::with_capacity(136 + self.image_path.len() + self.hashes.len() * HASH_LEN);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&self.snapshot.map_or([0u8; 32], |id| id.0));
        body.extend_from_slice(&self.virtual_size.to_le_bytes());
        body.extend_from_slice(&self.block_size.to_le_bytes());
        body.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        body.extend_from_slice(&self.content.unwrap_or([0u8; 32]));
        body.extend_from_slice(&(self.image_path.len() as u64).to_le_bytes());
        body.extend_from_slice(self.image_path.as_bytes());
        for h in &self.hashes {
            body.extend_from_slice(h);
        }
        let check = blake3::hash(&body);
        body.extend_from_slice(check.as_bytes());
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ImageError::io(path, e)
        })
    }
}

/// Computes [`BlockHashes`] from the guest bytes a full backup reads anyway,
/// fed in order, so that the first backup does not read the image twice.
/// Ranges never fed (long zero runs the backup does not read) are zeros.
pub(crate) struct BlockHasher {
    size: u64,
    /// Guest offset up to which blocks are hashed or held in `partial`.
    cursor: u64,
    /// The bytes of the current, incomplete block (`cursor % BLOCK_SIZE`).
    partial: Vec<u8>,
    hashes: Vec<[u8; HASH_LEN]>,
    zero_hash: [u8; HASH_LEN],
}

impl BlockHasher {
    pub(crate) fn new(size: u64) -> Self {
        let block = BlockHashes::BLOCK_SIZE;
        BlockHasher {
            size,
            cursor: 0,
            partial: Vec::with_capacity(block as usize),
            hashes: Vec::with_capacity(size.div_ceil(block) as usize),
            zero_hash: BlockHashes::hash(&vec![0u8; block as usize]),
        }
    }

    fn push_block(&mut self, block: &[u8]) {
        let full = block.len() as u64 == BlockHashes::BLOCK_SIZE;
        self.hashes
            .push(if full && restix_chunker::is_all_zero(block) {
                self.zero_hash
            } else {
                BlockHashes::hash(block)
            });
    }

    /// Appends `bytes` (at most up to the end of the current block) to the
    /// partial block; returns how many were taken.
    fn fill_partial(&mut self, bytes: &[u8]) -> usize {
        let block = BlockHashes::BLOCK_SIZE as usize;
        let take = (block - self.partial.len()).min(bytes.len());
        self.partial
            .extend_from_slice(bytes.get(..take).unwrap_or_default());
        if self.partial.len() == block {
            let partial = std::mem::take(&mut self.partial);
            self.push_block(&partial);
            self.partial = partial;
            self.partial.clear();
        }
        take
    }

    /// Zeros up to guest offset `until`.
    pub(crate) fn zeros(&mut self, until: u64) {
        let block = BlockHashes::BLOCK_SIZE;
        let until = until.min(self.size);
        while self.cursor < until {
            if self.partial.is_empty() && until - self.cursor >= block {
                let n = (until - self.cursor) / block;
                self.hashes
                    .extend(std::iter::repeat_n(self.zero_hash, n as usize));
                self.cursor += n * block;
            } else {
                let want = (block - self.partial.len() as u64).min(until - self.cursor);
                self.cursor += self.fill_partial(&vec![0u8; want as usize]) as u64;
            }
        }
    }

    /// The guest bytes at `offset` (bytes before the cursor are skipped, a
    /// gap before `offset` is zeros).
    pub(crate) fn feed(&mut self, offset: u64, bytes: &[u8]) {
        if offset > self.cursor {
            self.zeros(offset);
        }
        let skip = usize::try_from(self.cursor.saturating_sub(offset)).unwrap_or(usize::MAX);
        let Some(mut bytes) = bytes.get(skip..) else {
            return;
        };
        let block = BlockHashes::BLOCK_SIZE as usize;
        if !self.partial.is_empty() {
            let taken = self.fill_partial(bytes);
            self.cursor += taken as u64;
            bytes = bytes.get(taken..).unwrap_or_default();
        }
        let mut blocks = bytes.chunks_exact(block);
        for b in &mut blocks {
            self.push_block(b);
            self.cursor += block as u64;
        }
        let rest = blocks.remainder();
        self.cursor += self.fill_partial(rest) as u64;
    }

    /// The hashes of the whole disk (anything not fed is zeros).
    pub(crate) fn finish(mut self) -> BlockHashes {
        self.zeros(self.size);
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            self.push_block(&partial);
        }
        BlockHashes {
            snapshot: None,
            image_path: String::new(),
            content: None,
            virtual_size: self.size,
            block_size: BlockHashes::BLOCK_SIZE,
            hashes: self.hashes,
        }
    }
}
