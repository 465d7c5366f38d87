//! Image mode against in-memory disks: exact chunk cuts, no reads of zero or
//! unallocated extents, incrementals equal to full backups, restores.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use restix_chunker::{Chunker, Polynomial};
use restix_qcow2::{DiskImage, Extent, ExtentKind};
use restix_repo_format::{BlobType, Id};
use sha2::{Digest, Sha256};

use super::layout::{ChunkCutter, GuestBuffer, GuestLayout};
use super::*;
use crate::repository::tests::{new_repo, TempDir};

/// A disk held in memory with an explicit extent map. Reads are counted, and a
/// read touching anything but a `Data` extent fails the test.
struct MemDisk {
    bytes: Vec<u8>,
    extents: Vec<Extent>,
    read: AtomicU64,
}

impl MemDisk {
    /// `layout`: (length, kind) pieces; data pieces get pseudo-random bytes
    /// from `seed` (a few of them runs of zeros, to exercise zero data).
    fn new(seed: u32, layout: &[(u64, ExtentKind)]) -> MemDisk {
        let mut bytes = Vec::new();
        let mut extents: Vec<Extent> = Vec::new();
        for (i, &(length, kind)) in layout.iter().enumerate() {
            let offset = bytes.len() as u64;
            match kind {
                ExtentKind::Data => {
                    bytes.extend(pseudo_random(seed * 1000 + i as u32, length as usize))
                }
                _ => bytes.resize(bytes.len() + length as usize, 0),
            }
            match extents.last_mut() {
                Some(last) if last.kind == kind => last.length += length,
                _ => extents.push(Extent {
                    offset,
                    length,
                    kind,
                }),
            }
        }
        MemDisk {
            bytes,
            extents,
            read: AtomicU64::new(0),
        }
    }

    /// Writes `data` at `offset` as allocated data (splitting extents).
    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        self.bytes[offset as usize..end as usize].copy_from_slice(data);
        self.mark(offset, end, ExtentKind::Data);
    }

    /// Makes `[offset, end)` one extent of `kind` (splitting others).
    fn mark(&mut self, offset: u64, end: u64, kind_now: ExtentKind) {
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |offset: u64, end: u64, kind: ExtentKind| {
            if end <= offset {
                return;
            }
            match out.last_mut() {
                Some(last) if last.kind == kind && last.end() == offset => {
                    last.length += end - offset
                }
                _ => out.push(Extent {
                    offset,
                    length: end - offset,
                    kind,
                }),
            }
        };
        for e in &self.extents {
            push(e.offset, e.end().min(offset), e.kind);
            if e.offset < end && e.end() > offset {
                push(e.offset.max(offset), e.end().min(end), kind_now);
            }
            push(e.offset.max(end), e.end(), e.kind);
        }
        self.extents = out;
    }
}

impl DiskImage for MemDisk {
    fn virtual_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn extents(&self, offset: u64, length: u64) -> restix_qcow2::Result<Vec<Extent>> {
        let end = offset + length;
        Ok(self
            .extents
            .iter()
            .filter(|e| e.end() > offset && e.offset < end)
            .map(|e| Extent {
                offset: e.offset.max(offset),
                length: e.end().min(end) - e.offset.max(offset),
                kind: e.kind,
            })
            .collect())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> restix_qcow2::Result<()> {
        let end = offset + buf.len() as u64;
        for e in self.extents(offset, buf.len() as u64)? {
            assert_eq!(
                e.kind,
                ExtentKind::Data,
                "read of {offset}..{end} touches a {:?} extent",
                e.kind
            );
        }
        buf.copy_from_slice(&self.bytes[offset as usize..end as usize]);
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn pseudo_random(seed: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(
            [seed.to_le_bytes(), i.to_le_bytes()].concat(),
        ));
        i += 1;
    }
    out.truncate(len);
    out
}

const K: u64 = 1024;
const M: u64 = 1024 * 1024;
use ExtentKind::{Data, Unallocated, Zero};

/// Awkward layouts: zero runs at the start and end, data shorter than the
/// window between zero runs, zero runs shorter than the long-run threshold,
/// data regions ending a few bytes before chunk-size multiples.
fn layouts() -> Vec<Vec<(u64, ExtentKind)>> {
    vec![
        vec![(3 * M + 17, Data), (5 * M, Zero), (2 * M + 3, Data)],
        vec![
            (4 * M, Unallocated),
            (30, Data),
            (M, Zero),
            (10, Data),
            (3 * M, Unallocated),
        ],
        vec![
            (M + 100, Data),
            (100, Zero),
            (2 * M, Data),
            (LONG_ZERO_RUN, Zero),
            (M, Data),
        ],
        vec![
            (512 * K - 32, Data),
            (9 * M, Unallocated),
            (512 * K + 40, Data),
            (63, Zero),
        ],
        vec![(9 * M, Data), (64, Zero), (5 * M, Data)],
        vec![(20 * M, Zero)],
        vec![
            (700 * K, Data),
            (12 * M + 5, Zero),
            (64, Data),
            (900 * K, Zero),
            (2 * M, Data),
        ],
        vec![(100, Data)],
    ]
}

/// Cut positions through the virtual chunker.
fn virtual_cuts(chunker: &Chunker, disk: &dyn DiskImage) -> Vec<u64> {
    let layout = GuestLayout::new(disk).unwrap();
    let cutter = ChunkCutter::new(chunker).unwrap();
    let mut buffer = GuestBuffer::new(disk, &layout);
    let mut cuts = Vec::new();
    let mut pos = 0;
    while pos < layout.size {
        pos = cutter.cut(&layout, &mut buffer, pos).unwrap();
        buffer.drop_before(pos);
        cuts.push(pos);
    }
    cuts
}

#[test]
fn virtual_cuts_equal_restic_chunking() {
    let chunker = Chunker::new(Polynomial::RESTIC_TEST).unwrap();
    for (seed, layout) in layouts().iter().enumerate() {
        let disk = MemDisk::new(seed as u32 + 1, layout);
        let expected: Vec<u64> = chunker
            .boundaries(&disk.bytes)
            .into_iter()
            .map(|b| b as u64)
            .collect();
        assert_eq!(virtual_cuts(&chunker, &disk), expected, "layout {layout:?}");
    }
}

/// The content list restic would store for `bytes`.
fn reference_content(chunker: &Chunker, bytes: &[u8]) -> Vec<Id> {
    chunker
        .chunk_slice(bytes)
        .iter()
        .map(|c| Id(Sha256::digest(&bytes[c.offset..c.end()]).into()))
        .collect()
}

/// Options for restic's content-defined chunks (what most tests here check:
/// cuts equal to restic's).
fn cdc_options(name: &str) -> ImageBackupOptions {
    let mut options = ImageBackupOptions::new(name);
    options.chunking = ImageChunking::ContentDefined;
    options
}

fn content_of(repo: &Repository, snapshot: &Id) -> Vec<Id> {
    let (_, node) = find_file_node(repo, snapshot, None).unwrap();
    node.content.unwrap()
}

#[test]
fn backup_reads_only_data_and_matches_restic() {
    let t = TempDir::new("image-full");
    let repo = new_repo(&t.0, 2);
    let chunker = Chunker::new(repo.polynomial()).unwrap();
    let disk = MemDisk::new(
        7,
        &[
            (2 * M, Data),
            (6 * M, Unallocated),
            (M + 5, Data),
            (3 * M, Zero),
            (700 * K, Data),
        ],
    );
    let data_bytes: u64 = disk
        .extents
        .iter()
        .filter(|e| e.kind == Data)
        .map(|e| e.length)
        .sum();
    let done = backup_image(&repo, &disk, cdc_options("disk.raw")).unwrap();
    assert_eq!(
        disk.read.load(Ordering::Relaxed),
        data_bytes,
        "each data byte read once"
    );
    assert_eq!(done.stats.bytes_read, data_bytes);
    let id = done.summary.snapshot_id;
    assert_eq!(
        content_of(&repo, &id),
        reference_content(&chunker, &disk.bytes)
    );
    assert!(repo.has_blob(BlobType::Data, &Id(restix_chunker::ZERO_CHUNK_ID)));

    // Restore to raw and qcow2.
    let (path, node) = find_file_node(&repo, &id, None).unwrap();
    assert_eq!(path, "/disk.raw");
    assert_eq!(node.size, disk.bytes.len() as u64);
    let raw = t.0.join("out.raw");
    let stats = restore_node(&repo, &node, &raw, RestoreFormat::Raw, 2).unwrap();
    assert!(stats.zero_chunks > 0);
    assert_eq!(std::fs::read(&raw).unwrap(), disk.bytes);
    let qcow = t.0.join("out.qcow2");
    restore_node(&repo, &node, &qcow, RestoreFormat::Qcow2, 2).unwrap();
    let image = Qcow2Image::open(&qcow).unwrap();
    let mut back = vec![0u8; disk.bytes.len()];
    image.read_at(0, &mut back).unwrap();
    assert_eq!(back, disk.bytes);
    // A raw file restored from it reads back through RawImage too.
    let again = t.0.join("again.raw");
    write_guest_view(&RawImage::open(&raw).unwrap(), &again, RestoreFormat::Raw).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), disk.bytes);
}

fn incremental_case(layout: &[(u64, ExtentKind)], writes: &[(u64, Vec<u8>)]) {
    let t = TempDir::new("image-inc");
    let repo = new_repo(&t.0, 2);
    let chunker = Chunker::new(repo.polynomial()).unwrap();
    let mut disk = MemDisk::new(3, layout);
    let full = backup_image(&repo, &disk, cdc_options("disk")).unwrap();
    let mut changed: Vec<Range<u64>> = Vec::new();
    for (offset, data) in writes {
        disk.write(*offset, data);
        changed.push(*offset..*offset + data.len() as u64);
    }
    disk.read.store(0, Ordering::Relaxed);
    let mut options = cdc_options("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(changed);
    let inc = backup_image(&repo, &disk, options).unwrap();
    assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
    assert!(inc.stats.chunks_reused > 0);
    let read = disk.read.load(Ordering::Relaxed);
    let reference = reference_content(&chunker, &disk.bytes);
    assert_eq!(content_of(&repo, &inc.summary.snapshot_id), reference);
    // A full backup of the same view stores the same tree.
    let again = backup_image(&repo, &disk, cdc_options("disk")).unwrap();
    assert_eq!(content_of(&repo, &again.summary.snapshot_id), reference);
    assert!(
        read < disk.read.load(Ordering::Relaxed),
        "incremental read less"
    );
}

#[test]
fn incremental_equals_full_backup() {
    let layout = [(6 * M, Data), (4 * M, Unallocated), (3 * M, Data)];
    // A small change in the middle of data.
    incremental_case(&layout, &[(3 * M + 5, vec![0xaa; 4096])]);
    // Writes into a hole, at the start, and right at the end.
    let end = 13 * M;
    incremental_case(
        &layout,
        &[
            (0, vec![1; 100]),
            (7 * M, pseudo_random(99, 300 * K as usize)),
            (end - 10, vec![2; 10]),
        ],
    );
    // Zeroing data (a discard) in the middle.
    incremental_case(&layout, &[(M, vec![0; 2 * M as usize])]);
}

#[test]
fn block_hash_cache_finds_changes() {
    let t = TempDir::new("image-hash");
    let repo = new_repo(&t.0, 2);
    let chunker = Chunker::new(repo.polynomial()).unwrap();
    let cache = block_hash_cache_path(&t.0.join("cache"), "repo", std::path::Path::new("/d"));
    let mut disk = MemDisk::new(5, &[(5 * M, Data), (3 * M, Zero), (2 * M, Data)]);
    let mut options = cdc_options("disk");
    options.changes = ChangedBlocks::BlockHashCache(cache.clone());
    let first = backup_image(&repo, &disk, options.clone()).unwrap();
    assert!(!first.stats.incremental);
    let cached = BlockHashes::load(&cache).unwrap();
    assert_eq!(cached.snapshot, Some(first.summary.snapshot_id));

    disk.write(4 * M, &[9; 5000]);
    let second = backup_image(&repo, &disk, options.clone()).unwrap();
    assert!(
        second.stats.incremental,
        "{:?}",
        second.stats.fallback_reason
    );
    assert_eq!(second.summary.parent, Some(first.summary.snapshot_id));
    assert_eq!(second.stats.changed_bytes, 64 * K);
    assert_eq!(
        content_of(&repo, &second.summary.snapshot_id),
        reference_content(&chunker, &disk.bytes)
    );
}

#[test]
fn block_hash_cache_is_blake3_and_ignores_old_versions() {
    let t = TempDir::new("image-hash-version");
    let path = t.0.join("cache");
    let hashes = BlockHashes {
        snapshot: Some(Id([7; 32])),
        image_path: "/vm/disk.raw".into(),
        content: Some([9; 32]),
        virtual_size: 3 * BlockHashes::BLOCK_SIZE - 5,
        block_size: BlockHashes::BLOCK_SIZE,
        hashes: vec![*blake3::hash(b"a").as_bytes(); 3],
    };
    hashes.save(&path).unwrap();
    assert_eq!(BlockHashes::load(&path), Some(hashes.clone()));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"RXBLKH03");
    // 104-byte header, the image path, three 32-byte hashes, a 32-byte
    // BLAKE3 check.
    assert_eq!(bytes.len(), 104 + 12 + 3 * 32 + 32);
    assert_eq!(
        &bytes[bytes.len() - 32..],
        blake3::hash(&bytes[..bytes.len() - 32]).as_bytes()
    );

    // A version-02 file (no binding to the image and the content) is ignored.
    let mut v2 = Vec::new();
    v2.extend_from_slice(b"RXBLKH02");
    v2.extend_from_slice(&[7; 32]);
    v2.extend_from_slice(&hashes.virtual_size.to_le_bytes());
    v2.extend_from_slice(&hashes.block_size.to_le_bytes());
    v2.extend_from_slice(&3u64.to_le_bytes());
    v2.extend_from_slice(&[1; 3 * 32]);
    let check = *blake3::hash(&v2).as_bytes();
    v2.extend_from_slice(&check);
    std::fs::write(&path, &v2).unwrap();
    assert_eq!(BlockHashes::load(&path), None);

    // A version-01 file (truncated SHA-256 hashes, SHA-256 check) is ignored.
    let mut old = Vec::new();
    old.extend_from_slice(b"RXBLKH01");
    old.extend_from_slice(&[7; 32]);
    old.extend_from_slice(&hashes.virtual_size.to_le_bytes());
    old.extend_from_slice(&hashes.block_size.to_le_bytes());
    old.extend_from_slice(&3u64.to_le_bytes());
    old.extend_from_slice(&[1; 3 * 16]);
    let check = Sha256::digest(&old);
    old.extend_from_slice(&check);
    std::fs::write(&path, &old).unwrap();
    assert_eq!(BlockHashes::load(&path), None);

    // So is a damaged current one.
    let mut damaged = bytes.clone();
    damaged[70] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert_eq!(BlockHashes::load(&path), None);
}

#[test]
fn merge_ranges_merges() {
    assert_eq!(
        merge_ranges(vec![5..7, 0..2, 2..3, 6..9, 4..4]),
        vec![0..3, 5..9]
    );
}

/// Small deterministic generator for random layouts.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn random_layout(seed: u64) -> Vec<(u64, ExtentKind)> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut layout = Vec::new();
    let mut total = 0;
    while total < 10 * M {
        let kind = [Data, Zero, Unallocated][(next(&mut state) % 3) as usize];
        let length = match next(&mut state) % 5 {
            0 => 1 + next(&mut state) % 130,
            1 => 4000 + next(&mut state) % 200,
            2 => 512 * K - 70 + next(&mut state) % 140,
            _ => 1 + next(&mut state) % (3 * M),
        };
        layout.push((length, kind));
        total += length;
    }
    layout
}

#[test]
fn virtual_cuts_equal_restic_chunking_random_layouts() {
    let chunker = Chunker::new(Polynomial::RESTIC_TEST).unwrap();
    for seed in 1..=10 {
        let layout = random_layout(seed);
        let disk = MemDisk::new(seed as u32, &layout);
        let expected: Vec<u64> = chunker
            .boundaries(&disk.bytes)
            .into_iter()
            .map(|b| b as u64)
            .collect();
        assert_eq!(
            virtual_cuts(&chunker, &disk),
            expected,
            "seed {seed} layout {layout:?}"
        );
    }
}

/// `count` writes of up to 200 KiB at random offsets of a disk with
/// `layout`; write number `zeros` (if any) writes zeros (a discard).
fn random_writes(
    seed: u64,
    layout: &[(u64, ExtentKind)],
    count: u32,
    zeros: Option<u32>,
) -> Vec<(u64, Vec<u8>)> {
    let size: u64 = layout.iter().map(|(l, _)| l).sum();
    let mut state = seed | 1;
    (0..count)
        .map(|i| {
            let len = 1 + next(&mut state) % (200 * K);
            let offset = next(&mut state) % (size - len);
            let data = if zeros == Some(i) {
                vec![0; len as usize]
            } else {
                pseudo_random(seed as u32 + i, len as usize)
            };
            (offset, data)
        })
        .collect()
}

#[test]
fn incremental_equals_full_backup_random() {
    for seed in 1..=3u64 {
        let layout = random_layout(seed + 100);
        let writes = random_writes(seed, &layout, 3, Some(1));
        incremental_case(&layout, &writes);
    }
}

#[test]
fn incremental_with_many_scattered_changes_reads_only_around_them() {
    // 40 MiB of data with a hole, 64 KiB-block writes that are scattered,
    // adjacent, in the hole and right at the end (regions that run into one
    // another, as with 1 % of random blocks rewritten).
    let layout = [(24 * M, Data), (6 * M, Unallocated), (10 * M, Data)];
    let size = 40 * M;
    let t = TempDir::new("image-inc-many");
    let repo = new_repo(&t.0, 2);
    let chunker = Chunker::new(repo.polynomial()).unwrap();
    let mut disk = MemDisk::new(11, &layout);
    let full = backup_image(&repo, &disk, cdc_options("disk")).unwrap();
    let mut state = 77u64;
    let mut blocks: Vec<u64> = (0..24)
        .map(|_| next(&mut state) % (size / (64 * K)))
        .collect();
    blocks.extend([3, 4, 5, 100, 101, size / (64 * K) - 1]);
    let mut changed = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let offset = block * 64 * K;
        disk.write(offset, &pseudo_random(500 + i as u32, 64 * K as usize));
        changed.push(offset..offset + 64 * K);
    }
    disk.read.store(0, Ordering::Relaxed);
    let mut options = cdc_options("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(changed);
    options.threads = 3;
    let inc = backup_image(&repo, &disk, options).unwrap();
    assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
    assert_eq!(
        content_of(&repo, &inc.summary.snapshot_id),
        reference_content(&chunker, &disk.bytes)
    );
    let stats = &inc.stats;
    assert_eq!(stats.bytes_reused + stats.bytes_rechunked, size);
    assert!(stats.bytes_rechunked < size, "{stats:?}");
    // Each new chunk is read once to be stored, and the part of it after the
    // first change once more to find its cut (in steps of at most 128 KiB
    // per region): under twice what was re-chunked, plus a step per region.
    let read = disk.read.load(Ordering::Relaxed);
    assert_eq!(read, stats.bytes_read);
    // Besides, a sample of unchanged blocks is read to verify the parent.
    assert!(stats.verified_blocks > 0, "{stats:?}");
    let read = read - stats.verified_bytes;
    assert!(
        read < 2 * stats.bytes_rechunked + blocks.len() as u64 * 128 * K,
        "{read} {stats:?}"
    );
}

/// The block-hash cache at `cache` belongs to `snapshot` and holds the
/// hashes a separate hashing pass over `disk` computes.
fn assert_cache_is_fresh(cache: &std::path::Path, disk: &MemDisk, snapshot: &Id) {
    let stored = BlockHashes::load(cache).unwrap();
    let layout = GuestLayout::new(disk).unwrap();
    let (separate, _) = BlockHashes::compute(disk, &layout, 2, None).unwrap();
    assert_eq!(stored.hashes, separate.hashes);
    assert_eq!(stored.snapshot, Some(*snapshot));
}

#[test]
fn first_backup_hashes_blocks_from_what_it_reads() {
    // The first backup with a block-hash cache reads every data byte once
    // (chunking and block hashes from the same bytes) and stores the same
    // hashes as a separate hashing pass.
    for seed in [3u64, 8, 21] {
        let layout = random_layout(seed + 200);
        let t = TempDir::new("image-hash-fused");
        let repo = new_repo(&t.0, 2);
        let disk = MemDisk::new(seed as u32, &layout);
        let cache = t.0.join("cache");
        let mut options = cdc_options("disk");
        options.changes = ChangedBlocks::BlockHashCache(cache.clone());
        let done = backup_image(&repo, &disk, options).unwrap();
        assert_eq!(done.stats.hash_bytes_read, 0);
        let data: u64 = disk
            .extents
            .iter()
            .filter(|e| e.kind == Data)
            .map(|e| e.length)
            .sum();
        assert!(done.stats.bytes_read <= data + 1024 * K, "seed {seed}");
        assert_cache_is_fresh(&cache, &disk, &done.summary.snapshot_id);
    }
}

// ------------------------------------------------------------ fixed blocks

/// The content list of `bytes` in blocks of `block` bytes.
fn block_content(bytes: &[u8], block: usize) -> Vec<Id> {
    bytes
        .chunks(block)
        .map(|b| Id(Sha256::digest(b).into()))
        .collect()
}

#[test]
fn default_backup_is_block_aligned_reads_only_data_and_restores() {
    let t = TempDir::new("image-fixed");
    let repo = new_repo(&t.0, 2);
    let disk = MemDisk::new(
        17,
        &[
            (2 * M, Data),
            (6 * M, Unallocated),
            (M + 5, Data),
            (3 * M, Zero),
            (700 * K + 3, Data),
        ],
    );
    let data_bytes: u64 = disk
        .extents
        .iter()
        .filter(|e| e.kind == Data)
        .map(|e| e.length)
        .sum();
    let done = backup_image(&repo, &disk, ImageBackupOptions::new("disk.raw")).unwrap();
    assert_eq!(done.stats.block_size, 64 * K);
    assert_eq!(disk.read.load(Ordering::Relaxed), data_bytes);
    let id = done.summary.snapshot_id;
    assert_eq!(
        content_of(&repo, &id),
        block_content(&disk.bytes, 64 * K as usize)
    );
    assert!(repo.has_blob(BlobType::Data, &zero_block_id(64 * K)));
    let (_, node) = find_file_node(&repo, &id, None).unwrap();
    let raw = t.0.join("out.raw");
    let stats = restore_node(&repo, &node, &raw, RestoreFormat::Raw, 2).unwrap();
    // 96 blocks of the hole and 47 whole blocks of the unaligned zero extent.
    assert_eq!(stats.zero_chunks, 143, "{stats:?}");
    assert_eq!(std::fs::read(&raw).unwrap(), disk.bytes);
    let qcow = t.0.join("out.qcow2");
    restore_node(&repo, &node, &qcow, RestoreFormat::Qcow2, 3).unwrap();
    let mut back = vec![0u8; disk.bytes.len()];
    Qcow2Image::open(&qcow)
        .unwrap()
        .read_at(0, &mut back)
        .unwrap();
    assert_eq!(back, disk.bytes);

    // An explicit block size.
    let mut options = ImageBackupOptions::new("disk.raw");
    options.chunking = ImageChunking::Fixed(M);
    let big = backup_image(&repo, &disk, options).unwrap();
    assert_eq!(
        content_of(&repo, &big.summary.snapshot_id),
        block_content(&disk.bytes, M as usize)
    );
}

/// A block incremental after `writes` equals a full backup of the new view
/// and reads only the blocks the writes touch.
fn fixed_incremental_case(seed: u64, layout: &[(u64, ExtentKind)], writes: &[(u64, Vec<u8>)]) {
    let t = TempDir::new("image-fixed-inc");
    let repo = new_repo(&t.0, 2);
    let mut disk = MemDisk::new(seed as u32, layout);
    let full = backup_image(&repo, &disk, ImageBackupOptions::new("disk")).unwrap();
    let block = full.stats.block_size;
    let mut changed: Vec<Range<u64>> = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for (offset, data) in writes {
        disk.write(*offset, data);
        changed.push(*offset..*offset + data.len() as u64);
        for b in offset / block..(offset + data.len() as u64).div_ceil(block) {
            touched.insert(b);
        }
    }
    disk.read.store(0, Ordering::Relaxed);
    let mut options = ImageBackupOptions::new("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(changed);
    options.threads = 3;
    let inc = backup_image(&repo, &disk, options).unwrap();
    assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
    assert_eq!(inc.stats.block_size, block);
    let expected = block_content(&disk.bytes, block as usize);
    assert_eq!(content_of(&repo, &inc.summary.snapshot_id), expected);
    assert_eq!(
        inc.stats.chunks_reused as usize + touched.len(),
        expected.len()
    );
    // And a sample of unchanged ones, to verify the parent.
    assert!(
        disk.read.load(Ordering::Relaxed) - inc.stats.verified_bytes
            <= touched.len() as u64 * block,
        "read only touched blocks"
    );
    let again = backup_image(&repo, &disk, ImageBackupOptions::new("disk")).unwrap();
    assert_eq!(content_of(&repo, &again.summary.snapshot_id), expected);
}

#[test]
fn block_incremental_equals_full_backup() {
    let layout = [(6 * M, Data), (4 * M, Unallocated), (3 * M + 77, Data)];
    let end = 13 * M + 77;
    fixed_incremental_case(1, &layout, &[(3 * M + 5, vec![0xaa; 4096])]);
    fixed_incremental_case(
        2,
        &layout,
        &[
            (0, vec![1; 100]),
            (7 * M, pseudo_random(99, 300 * K as usize)),
            (end - 10, vec![2; 10]),
            (64 * K - 1, vec![3; 2]),
        ],
    );
    // A discard: data zeroed.
    fixed_incremental_case(3, &layout, &[(M, vec![0; 2 * M as usize])]);
    for seed in 4..=6u64 {
        let layout = random_layout(seed + 300);
        let writes = random_writes(seed, &layout, 4, None);
        fixed_incremental_case(seed, &layout, &writes);
    }
}

#[test]
fn block_incremental_of_a_grown_disk_reuses_the_old_blocks() {
    let t = TempDir::new("image-fixed-grow");
    let repo = new_repo(&t.0, 2);
    let small = MemDisk::new(8, &[(3 * M + 1000, Data)]);
    let full = backup_image(&repo, &small, ImageBackupOptions::new("disk")).unwrap();
    // The same bytes, then more: the old partial last block is new.
    let mut grown = MemDisk::new(8, &[(3 * M + 1000, Data), (2 * M, Unallocated)]);
    grown.write(4 * M, &[5; 100]);
    let mut options = ImageBackupOptions::new("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(std::iter::once(4 * M..4 * M + 100).collect());
    let inc = backup_image(&repo, &grown, options).unwrap();
    assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
    assert_eq!(inc.stats.chunks_reused, 3 * M / (64 * K));
    assert_eq!(
        content_of(&repo, &inc.summary.snapshot_id),
        block_content(&grown.bytes, 64 * K as usize)
    );
}

#[test]
fn auto_chunking_follows_a_content_defined_parent() {
    let t = TempDir::new("image-auto-cdc");
    let repo = new_repo(&t.0, 2);
    let chunker = Chunker::new(repo.polynomial()).unwrap();
    let mut disk = MemDisk::new(9, &[(5 * M, Data), (M, Zero), (2 * M, Data)]);
    let full = backup_image(&repo, &disk, cdc_options("disk")).unwrap();
    assert_eq!(full.stats.block_size, 0);
    disk.write(2 * M, &[4; 3000]);
    let mut options = ImageBackupOptions::new("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(std::iter::once(2 * M..2 * M + 3000).collect());
    let inc = backup_image(&repo, &disk, options.clone()).unwrap();
    assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
    assert_eq!(inc.stats.block_size, 0);
    assert_eq!(
        content_of(&repo, &inc.summary.snapshot_id),
        reference_content(&chunker, &disk.bytes)
    );
    // Asked for blocks against that parent: a full backup in blocks.
    options.chunking = ImageChunking::Fixed(64 * K);
    let blocks = backup_image(&repo, &disk, options).unwrap();
    assert!(!blocks.stats.incremental);
    assert!(blocks.stats.fallback_reason.is_some());
    assert_eq!(
        content_of(&repo, &blocks.summary.snapshot_id),
        block_content(&disk.bytes, 64 * K as usize)
    );
}

#[test]
fn block_backup_with_a_hash_cache() {
    for seed in [31u64, 32] {
        let t = TempDir::new("image-fixed-hash");
        let repo = new_repo(&t.0, 2);
        let mut disk = MemDisk::new(seed as u32, &random_layout(seed));
        let cache = t.0.join("cache");
        let mut options = ImageBackupOptions::new("disk");
        options.changes = ChangedBlocks::BlockHashCache(cache.clone());
        let first = backup_image(&repo, &disk, options.clone()).unwrap();
        assert_eq!(first.stats.hash_bytes_read, 0);
        assert_cache_is_fresh(&cache, &disk, &first.summary.snapshot_id);

        disk.write(M + 7, &[1; 70_000]);
        let second = backup_image(&repo, &disk, options).unwrap();
        assert!(
            second.stats.incremental,
            "{:?}",
            second.stats.fallback_reason
        );
        assert_eq!(second.summary.parent, Some(first.summary.snapshot_id));
        assert_eq!(
            content_of(&repo, &second.summary.snapshot_id),
            block_content(&disk.bytes, 64 * K as usize)
        );
    }
}

#[test]
fn prefetched_blocks_stand_in_for_reads() {
    let layout = [(5 * M, Data), (2 * M, Unallocated), (3 * M + 11, Data)];
    // Level 3 is what the test repository stores data at; 19 is not, so
    // those blocks are read again.
    let mut added = std::collections::HashMap::new();
    for (level, seal) in [
        (Some(3), false),
        (Some(3), true),
        (None, false),
        (None, true),
        (Some(19), false),
        (Some(19), true),
    ] {
        let t = TempDir::new("image-prefetch");
        let repo = new_repo(&t.0, 2);
        let mut disk = MemDisk::new(41, &layout);
        let full = backup_image(&repo, &disk, ImageBackupOptions::new("disk")).unwrap();
        let writes = [
            (M + 3, pseudo_random(7, 100_000)),
            (6 * M, vec![0; 64 * K as usize]),
            (10 * M, vec![9; 11]),
        ];
        let mut changed = Vec::new();
        for (offset, data) in &writes {
            disk.write(*offset, data);
            changed.push(*offset..*offset + data.len() as u64);
        }
        let mut ahead = prefetch_blocks(&disk, &changed, 64 * K, level, 2, 1 << 30)
            .unwrap()
            .unwrap();
        let mut options = ImageBackupOptions::new("disk");
        options.parent = Some(full.summary.snapshot_id);
        if seal {
            // What the CLI does while the key is derived and the index loads.
            ahead.prefault_pack_buffers(
                repo.pack_size(),
                &std::sync::atomic::AtomicBool::new(false),
            );
            ahead.seal(&repo, 2).unwrap();
            options.parent_blobs = load_parent_blobs(&repo, &full.summary.snapshot_id, "disk");
            assert!(options.parent_blobs.is_some());
        } else {
            // Blobs loaded for another snapshot are not used.
            options.parent_blobs =
                load_parent_blobs(&repo, &full.summary.snapshot_id, "disk").map(|mut p| {
                    p.snapshot = Id::hash(b"another snapshot");
                    p.ids.clear();
                    p
                });
        }
        disk.read.store(0, Ordering::Relaxed);
        options.changes = ChangedBlocks::Ranges(changed.clone());
        options.prefetched = Some(std::sync::Arc::new(ahead));
        let inc = backup_image(&repo, &disk, options).unwrap();
        assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
        // Sealed ahead or not, the same blobs are counted as added (not
        // `data_added`: it includes the tree, whose timestamp varies in length).
        let counted = inc.summary.data_blobs;
        assert_eq!(
            *added.entry(level).or_insert(counted),
            counted,
            "level {level:?}"
        );
        // Only the sample that verifies the parent, beyond the prefetch.
        let reread = disk.read.load(Ordering::Relaxed) - inc.stats.verified_bytes;
        if level == Some(19) {
            assert!(reread > 0, "blocks at a foreign level are read again");
        } else {
            assert_eq!(reread, 0, "level {level:?}: no reads after the prefetch");
        }
        let expected = block_content(&disk.bytes, 64 * K as usize);
        assert_eq!(content_of(&repo, &inc.summary.snapshot_id), expected);
        // Every blob of the new snapshot reads back as its bytes.
        let (_, node) = find_file_node(&repo, &inc.summary.snapshot_id, None).unwrap();
        let raw = t.0.join("back.raw");
        restore_node(&repo, &node, &raw, RestoreFormat::Raw, 2).unwrap();
        assert_eq!(std::fs::read(&raw).unwrap(), disk.bytes, "level {level:?}");
        // Too much to prefetch: none.
        assert!(prefetch_blocks(&disk, &changed, 64 * K, level, 2, 64 * K)
            .unwrap()
            .is_none());
    }
}

#[test]
fn sealed_on_threads_and_prepared_tree() {
    let layout = [(3 * M, Data), (M, Unallocated), (2 * M, Data)];
    for (threads, same_name) in [(3, true), (1, true), (2, false)] {
        let t = TempDir::new("image-prepared");
        let repo = new_repo(&t.0, 2);
        let mut disk = MemDisk::new(43, &layout);
        let full = backup_image(&repo, &disk, ImageBackupOptions::new("disk")).unwrap();
        // Sixteen changed blocks of random data: several 160 KiB packs.
        let changed = vec![M + 5..2 * M + 5, 4 * M..4 * M + 64 * K];
        for r in &changed {
            let data = pseudo_random(r.start as u32, (r.end - r.start) as usize);
            disk.write(r.start, &data);
        }
        repo.set_pack_size_unchecked(160 * K);
        let mut ahead = prefetch_blocks(&disk, &changed, 64 * K, Some(3), 2, 1 << 30)
            .unwrap()
            .unwrap();
        let planned = ahead.planned();
        ahead.seal(&repo, threads).unwrap();
        let (packs, blobs) = ahead.sealed_counts().unwrap();
        assert!(packs >= 4, "{packs} packs");
        assert_eq!(blobs, 18);

        let mut options = ImageBackupOptions::new("disk");
        options.time = Some(restix_repo_format::GoTime::now_local());
        options.parent = Some(full.summary.snapshot_id);
        options.parent_blobs = load_parent_blobs(&repo, &full.summary.snapshot_id, "disk");
        let mut other = ImageBackupOptions::new("other-name");
        other.time = options.time;
        let prepared = prepare_content_tree(
            &repo,
            if same_name { &options } else { &other },
            disk.virtual_size(),
            options.parent_blobs.as_ref().unwrap(),
            &planned,
        )
        .unwrap();
        let prepared_id = prepared.id;
        options.prepared_tree = Some(prepared);
        options.changes = ChangedBlocks::Ranges(changed.clone());
        options.prefetched = Some(std::sync::Arc::new(ahead));
        let inc = backup_image(&repo, &disk, options).unwrap();
        assert!(inc.stats.incremental, "{:?}", inc.stats.fallback_reason);
        // The prepared tree is the one stored when its node is the backup's;
        // another node (here: another file name) is not used.
        let tree = repo.load_snapshot(&inc.summary.snapshot_id).unwrap().tree;
        assert_eq!(tree == Some(prepared_id), same_name, "threads {threads}");
        assert_eq!(
            content_of(&repo, &inc.summary.snapshot_id),
            block_content(&disk.bytes, 64 * K as usize)
        );
        let (_, node) = find_file_node(&repo, &inc.summary.snapshot_id, None).unwrap();
        let raw = t.0.join("back.raw");
        restore_node(&repo, &node, &raw, RestoreFormat::Raw, 2).unwrap();
        assert_eq!(
            std::fs::read(&raw).unwrap(),
            disk.bytes,
            "threads {threads}"
        );
    }
}

// ------------------------------------------------------------ provenance

impl MemDisk {
    /// Discards `[offset, offset + len)`: zeros, unallocated.
    fn discard(&mut self, offset: u64, len: u64) {
        self.write(offset, &vec![0u8; len as usize]);
        self.mark(offset, offset + len, Unallocated);
    }
}

fn snapshot_and_pack_count(repo: &Repository) -> (usize, usize) {
    use crate::backend::FileType;
    (
        repo.list_snapshots().unwrap().len(),
        repo.list_files(FileType::Pack).unwrap().len(),
    )
}

/// A disk, its full backup, and a write the change source reports.
fn missed_change_case(miss: impl FnOnce(&mut MemDisk)) -> (String, (usize, usize), (usize, usize)) {
    let t = TempDir::new("image-missed");
    let repo = new_repo(&t.0, 2);
    let mut disk = MemDisk::new(5, &[(8 * M, Data)]);
    let full = backup_image(&repo, &disk, ImageBackupOptions::new("disk")).unwrap();
    disk.write(M, &pseudo_random(900, 64 * K as usize));
    miss(&mut disk);
    let before = snapshot_and_pack_count(&repo);
    let mut options = ImageBackupOptions::new("disk");
    options.parent = Some(full.summary.snapshot_id);
    options.changes = ChangedBlocks::Ranges(std::iter::once(M..M + 64 * K).collect());
    let err = backup_image(&repo, &disk, options).unwrap_err();
    assert!(matches!(err, ImageError::Refused { .. }), "{err}");
    (err.to_string(), before, snapshot_and_pack_count(&repo))
}

#[test]
fn a_missed_write_is_refused_and_nothing_is_written() {
    let (why, before, after) = missed_change_case(|disk| {
        disk.write(5 * M, &pseudo_random(901, 64 * K as usize));
    });
    assert!(
        why.contains("offset 5242880") && why.contains("differs"),
        "{why}"
    );
    assert!(why.contains("--changes none"), "{why}");
    assert_eq!(before, after, "nothing written");
}

#[test]
fn a_missed_discard_is_refused_without_reading_it() {
    let (why, before, after) = missed_change_case(|disk| disk.discard(6 * M, 64 * K));
    assert!(
        why.contains("offset 6291456") && why.contains("zeros now"),
        "{why}"
    );
    assert_eq!(before, after, "nothing written");
}

fn facts_of(path: &str, disk: &MemDisk) -> ImageFacts {
    ImageFacts {
        path: path.into(),
        size: disk.virtual_size(),
        format: ImageFormat::Raw,
        file: None,
        layers: vec![(path.into(), [1; 16])],
        bitmaps: Vec::new(),
        top_changes: None,
    }
}

#[test]
fn a_block_hash_cache_is_bound_to_its_image_and_snapshot() {
    let t = TempDir::new("image-cache-bound");
    let repo = new_repo(&t.0, 2);
    let mut disk = MemDisk::new(7, &[(4 * M, Data), (M, Unallocated), (3 * M, Data)]);
    let cache = t.0.join("cache");
    let backup = |disk: &MemDisk, path: &str, parent: Option<Id>| {
        let mut options = ImageBackupOptions::new("disk");
        options.changes = ChangedBlocks::BlockHashCache(cache.clone());
        options.facts = Some(facts_of(path, disk));
        options.parent = parent;
        backup_image(&repo, disk, options).unwrap()
    };
    let first = backup(&disk, "/vm/a.raw", None);
    assert_eq!(
        BlockHashes::load(&cache).unwrap().image_path,
        "/vm/a.raw",
        "bound to the image"
    );
    disk.write(2 * M, &pseudo_random(70, 64 * K as usize));
    // The honest case: the cache's snapshot becomes the parent.
    let second = backup(&disk, "/vm/a.raw", None);
    assert!(
        second.stats.incremental,
        "{:?}",
        second.stats.fallback_reason
    );
    assert_eq!(second.summary.parent, Some(first.summary.snapshot_id));
    assert!(second.stats.vouched);

    // Foreign: another image's cache in this one's place is not used.
    disk.write(3 * M, &pseudo_random(71, 64 * K as usize));
    let foreign = backup(&disk, "/vm/b.raw", None);
    assert!(!foreign.stats.incremental);
    let why = foreign.stats.fallback_reason.unwrap();
    assert!(
        why.contains("belongs to another image (/vm/a.raw)"),
        "{why}"
    );
    assert_eq!(
        content_of(&repo, &foreign.summary.snapshot_id),
        block_content(&disk.bytes, 64 * K as usize)
    );

    // Stale: a cache that names a snapshot whose content it does not
    // describe (here: the hashes of `first`, relabelled) is not used.
    let mut stale = BlockHashes::load(&cache).unwrap();
    let (ahead, _) =
        BlockHashes::compute(&disk, &GuestLayout::new(&disk).unwrap(), 2, None).unwrap();
    disk.write(7 * M, &pseudo_random(72, 64 * K as usize));
    stale.hashes = ahead.hashes;
    stale.image_path = "/vm/a.raw".into();
    stale.snapshot = Some(first.summary.snapshot_id);
    stale.save(&cache).unwrap();
    let relabelled = backup(&disk, "/vm/a.raw", None);
    assert!(!relabelled.stats.incremental);
    let why = relabelled.stats.fallback_reason.unwrap();
    assert!(why.contains("stale"), "{why}");
    assert_eq!(
        content_of(&repo, &relabelled.summary.snapshot_id),
        block_content(&disk.bytes, 64 * K as usize)
    );
}
