//! prune: remove unused data, repack partly used packs, rewrite the index.
//!
//! [`plan_prune`] decides, like restic (spec: cli §10.7), which packs to
//! keep, repack or delete; [`execute_prune`] carries the plan out in the
//! only safe order (spec: restic-format §16):
//! 1. copy the still-used blobs of the packs to repack into new packs (their
//!    encrypted bytes are copied as stored and verified on the way),
//! 2. write a fresh index for everything that stays,
//! 3. delete the old index files,
//! 4. delete the old packs.
//!
//! A crash at any point leaves a repository that `check` accepts (at worst
//! with duplicate or orphaned packs that the next prune removes).
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(repo: &Repository) -> Result<(), restix_engine::prune::PruneError> {
//! use restix_engine::prune::{plan_prune, execute_prune, PruneOptions};
//! let plan = plan_prune(repo, &PruneOptions::default(), 4)?;
//! println!("{} packs to delete", plan.remove_packs.len());
//! execute_prune(repo, &plan, 4, &mut |_| {})?;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use rayon::prelude::*;
use restix_repo_format::pack::{self, PackBlob};
use restix_repo_format::unpacked;
use restix_repo_format::{BlobType, Id, IndexBlob, IndexFile, IndexPack};
use sha2::{Digest, Sha256};

use crate::backend::FileType;
use crate::check::{check_packs, scan_index, walk_trees, IndexScan};
use crate::repository::{decode_blob, MemoryIndex, RepoError, Repository};

/// Errors that stop a prune before it changes anything (or while it runs).
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Repository access failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The index or the snapshots are damaged: run check / repair first.
    #[error("{0}")]
    Damaged(String),
    /// A bad option value.
    #[error("{0}")]
    InvalidOption(String),
}

/// `--max-unused`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Percentage of the used size (`5%`).
    Percent(f64),
    /// Absolute bytes.
    Bytes(u64),
    /// No limit: only fully unused packs are deleted.
    Unlimited,
}

impl MaxUnused {
    /// Parse like restic: `N%` (< 100), a size, or `unlimited`.
    pub fn parse(text: &str) -> Result<MaxUnused, PruneError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PruneError::InvalidOption(
                "invalid value for --max-unused: \"\"".into(),
            ));
        }
        if text == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = text.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| {
                PruneError::InvalidOption(format!(
                    "invalid percentage \"{text}\" passed for --max-unused"
                ))
            })?;
            if v < 0.0 {
                return Err(PruneError::InvalidOption(format!(
                    "percentage {text} passed for --max-unused cannot be negative"
                )));
            }
            if v >= 100.0 {
                return Err(PruneError::InvalidOption(
                    "percentage for --max-unused must be below 100%".into(),
                ));
            }
            return Ok(MaxUnused::Percent(v));
        }
        crate::size::parse_size(text)
            .map(MaxUnused::Bytes)
            .map_err(|_| {
                PruneError::InvalidOption(format!(
                    "invalid number of bytes \"{text}\" for --max-unused"
                ))
            })
    }

    /// Unused bytes tolerated when `used` bytes remain.
    fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Percent(p) => ((used as f64) * p / (100.0 - p)) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

/// Tuning of the prune plan (prune's flags).
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// `--max-unused` (default 5%).
    pub max_unused: MaxUnused,
    /// `--max-repack-size`.
    pub max_repack_bytes: Option<u64>,
    /// `--repack-cacheable-only`: repack only tree packs.
    pub repack_cacheable_only: bool,
    /// `--repack-small`: also repack packs below 80% of the target size.
    pub repack_small: bool,
    /// `--repack-uncompressed` (v2 repositories).
    pub repack_uncompressed: bool,
    /// `--repack-smaller-than`: repack packs below this size.
    pub repack_smaller_than: Option<u64>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            repack_cacheable_only: false,
            repack_small: false,
            repack_uncompressed: false,
            repack_smaller_than: None,
        }
    }
}

/// Blob count and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobStat {
    /// Number of blobs.
    pub blobs: u64,
    /// Their stored (encrypted) size.
    pub bytes: u64,
}

impl BlobStat {
    fn add(&mut self, blobs: u64, bytes: u64) {
        self.blobs += blobs;
        self.bytes += bytes;
    }
}

/// Numbers of a plan for the report (spec: cli §10.7).
#[derive(Debug, Clone, Default)]
pub struct PruneStats {
    /// Used blobs in total.
    pub used: BlobStat,
    /// Unused blobs in total.
    pub unused: BlobStat,
    /// Blobs in packs that are repacked (used and unused, like restic).
    pub repack: BlobStat,
    /// Unused blobs dropped by repacking.
    pub repack_remove: BlobStat,
    /// Blobs in packs deleted outright.
    pub remove: BlobStat,
    /// Packs deleted outright (incl. unreferenced ones).
    pub remove_packs: u64,
    /// Bytes of pack files no index lists (deleted).
    pub unreferenced_bytes: u64,
    /// Number of such pack files.
    pub unreferenced_packs: u64,
    /// Packs to repack.
    pub repack_packs: u64,
    /// Packs kept as they are.
    pub keep_packs: u64,
    /// Blobs remaining after the prune.
    pub remaining: BlobStat,
    /// Unused bytes remaining after the prune.
    pub remaining_unused_bytes: u64,
}

/// What prune will do.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Packs whose blobs are copied, then deleted.
    pub repack_packs: Vec<Id>,
    /// Packs deleted without copying (no used blob; also unreferenced packs).
    pub remove_packs: Vec<Id>,
    /// Packs that stay as they are.
    pub keep_packs: Vec<Id>,
    /// For each pack in `repack_packs`: the blobs copied out of it (its
    /// used blobs whose copy counts as *the* used one), sorted by offset.
    pub repack_blobs: HashMap<Id, Vec<PackBlob>>,
    /// Index state the plan was made from. Its in-memory index
    /// (`scan.index`) is emptied once the trees are walked, to free memory
    /// before repacking; `scan.packs` stays complete.
    pub scan: IndexScan,
    /// The statistics.
    pub stats: PruneStats,
    /// Packs the index lists but the repository lacks and no snapshot
    /// needs: forgotten (restic: "will forget missing pack file ID").
    pub missing_unneeded: Vec<Id>,
}

impl PrunePlan {
    /// True when the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.repack_packs.is_empty() && self.remove_packs.is_empty()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct PackInfo {
    used_blobs: u64,
    used_bytes: u64,
    unused_blobs: u64,
    unused_bytes: u64,
    has_tree: bool,
    has_data: bool,
    uncompressed: bool,
    file_size: u64,
}

/// Make the prune plan: find used blobs from all snapshots, rate every
/// pack and pick packs to delete and to repack (restic's algorithm).
pub fn plan_prune(
    repo: &Repository,
    opts: &PruneOptions,
    workers: usize,
) -> Result<PrunePlan, PruneError> {
    let mut scan = scan_index(repo);
    if let Some(e) = scan.errors.first() {
        return Err(PruneError::Damaged(format!(
            "{e}; run `restix repair index` first"
        )));
    }
    let roots: Vec<Id> = repo
        .list_snapshots()?
        .iter()
        .filter_map(|(_, s)| s.tree)
        .collect();
    let mut walk = walk_trees(repo, &scan.index, &roots, workers);
    if let Some(e) = walk.errors.first() {
        return Err(PruneError::Damaged(format!(
            "{e}\nThe repository is damaged: run `restix check` and `restix repair` before prune"
        )));
    }
    // The blob lookup index served the tree walk; from here on the plan
    // works from the per-pack lists, so free it before repacking.
    scan.index = MemoryIndex::new();
    let packs = check_packs(repo, &scan)?;
    let mut missing: Vec<Id> = packs
        .errors
        .iter()
        .filter(|p| p.kind == crate::check::ProblemKind::PackMissing)
        .map(|p| p.id)
        .collect();
    missing.sort();

    // Each used blob counts as used in the first pack (sorted by ID) that
    // holds it; further copies are unused duplicates. Claiming a blob takes
    // it out of the walk's sets, so no second map of used blobs is needed.
    let mut pack_ids: Vec<Id> = scan.packs.keys().copied().collect();
    pack_ids.sort();
    let mut info: HashMap<Id, PackInfo> = HashMap::with_capacity(pack_ids.len());
    // Positions (in `scan.packs`) of the claimed blobs of packs that also
    // hold unused ones; packs without an entry have every blob claimed.
    let mut claimed_at: HashMap<Id, Vec<u32>> = HashMap::new();
    let mut stats = PruneStats::default();
    for id in &pack_ids {
        let mut p = PackInfo {
            file_size: packs.sizes.get(id).copied().unwrap_or(0),
            ..Default::default()
        };
        let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut claimed: Vec<u32> = Vec::new();
        for (pos, b) in blobs.iter().enumerate() {
            let len = u64::from(b.length);
            match b.blob_type {
                BlobType::Tree => p.has_tree = true,
                BlobType::Data => p.has_data = true,
            }
            if b.uncompressed_length.is_none() {
                p.uncompressed = true;
            }
            if walk.claim(b.blob_type, &b.id) {
                p.used_blobs += 1;
                p.used_bytes += len;
                let pos = u32::try_from(pos).map_err(|_| {
                    PruneError::Damaged(format!("pack {}: too many index entries", id.short()))
                })?;
                claimed.push(pos);
            } else {
                p.unused_blobs += 1;
                p.unused_bytes += len;
            }
        }
        if p.used_blobs > 0 && p.unused_blobs > 0 {
            claimed.shrink_to_fit();
            claimed_at.insert(*id, claimed);
        }
        stats.used.add(p.used_blobs, p.used_bytes);
        stats.unused.add(p.unused_blobs, p.unused_bytes);
        info.insert(*id, p);
    }
    drop(walk);

    // restic 0.18: a missing pack that holds no used blob is forgotten
    // (dropped from the index like any unused pack; its file is already
    // gone); one that holds used blobs makes prune fail.
    let needed: Vec<String> = missing
        .iter()
        .filter(|id| info.get(id).is_some_and(|p| p.used_blobs > 0))
        .map(|id| id.to_hex())
        .collect();
    if !needed.is_empty() {
        return Err(PruneError::Damaged(format!(
            "The index references {} needed pack files which are missing from the repository:\n  {}\npacks from index missing in repo",
            needed.len(),
            needed.join("\n  ")
        )));
    }

    let target = repo.pack_size();
    let mut plan = PrunePlan {
        missing_unneeded: missing,
        ..PrunePlan::default()
    };
    let mut candidates: Vec<(Id, PackInfo)> = Vec::new();
    for id in &pack_ids {
        let Some(p) = info.get(id).copied() else {
            continue;
        };
        if p.used_blobs == 0 {
            plan.remove_packs.push(*id);
            stats.remove.add(p.unused_blobs, p.unused_bytes);
            continue;
        }
        let is_data_only = !p.has_tree;
        let must_compress = opts.repack_uncompressed && repo.version() >= 2 && p.uncompressed;
        let small = p.file_size < target.saturating_mul(4) / 5;
        let smaller_than = opts.repack_smaller_than.is_some_and(|n| p.file_size < n);
        if opts.repack_cacheable_only && is_data_only {
            plan.keep_packs.push(*id);
            continue;
        }
        if p.unused_blobs == 0 && !must_compress && (!opts.repack_small || !small) && !smaller_than
        {
            plan.keep_packs.push(*id);
            continue;
        }
        candidates.push((*id, p));
    }
    // Highest unused share first, packs that must be compressed first of all.
    candidates.sort_by(|(ia, a), (ib, b)| {
        let must = |p: &PackInfo| opts.repack_uncompressed && repo.version() >= 2 && p.uncompressed;
        must(b)
            .cmp(&must(a))
            .then_with(|| {
                (u128::from(b.unused_bytes) * u128::from(a.used_bytes))
                    .cmp(&(u128::from(a.unused_bytes) * u128::from(b.used_bytes)))
            })
            .then_with(|| ia.cmp(ib))
    });
    // Small packs alone are not worth repacking (restic: at least two).
    let small_candidates = candidates
        .iter()
        .filter(|(_, p)| p.unused_blobs == 0 && p.file_size < target.saturating_mul(4) / 5)
        .count();
    let max_unused = opts.max_unused.limit(stats.used.bytes);
    let mut repack_bytes = 0u64;
    let mut unused_after = stats.unused.bytes - stats.remove.bytes;
    for (id, p) in candidates {
        let total = p.used_bytes + p.unused_bytes;
        let reached_repack = opts
            .max_repack_bytes
            .is_some_and(|m| repack_bytes + total >= m);
        let must_compress = opts.repack_uncompressed && repo.version() >= 2 && p.uncompressed;
        let only_small = p.unused_blobs == 0 && !must_compress;
        let repack = if reached_repack {
            false
        } else if only_small {
            small_candidates >= 2
        } else if p.has_tree || must_compress {
            true
        } else {
            !(unused_after <= max_unused && total >= target)
        };
        if repack {
            plan.repack_packs.push(id);
            repack_bytes += total;
            unused_after -= p.unused_bytes;
            // restic counts every blob of a repacked pack here, the
            // dropped ones included ("this removes" is the subset).
            stats
                .repack
                .add(p.used_blobs + p.unused_blobs, p.used_bytes + p.unused_bytes);
            stats.repack_remove.add(p.unused_blobs, p.unused_bytes);
        } else {
            plan.keep_packs.push(id);
        }
    }
    // Pack files no index lists are deleted too (exclusive lock held).
    let mut unreferenced: Vec<(Id, u64)> = packs
        .sizes
        .iter()
        .filter(|(id, _)| !scan.packs.contains_key(id))
        .map(|(id, s)| (*id, *s))
        .collect();
    unreferenced.sort();
    for (id, size) in unreferenced {
        plan.remove_packs.push(id);
        stats.unreferenced_packs += 1;
        stats.unreferenced_bytes += size;
    }
    stats.remove_packs = plan.remove_packs.len() as u64;
    stats.repack_packs = plan.repack_packs.len() as u64;
    stats.keep_packs = plan.keep_packs.len() as u64;
    stats.remaining = BlobStat {
        blobs: stats.used.blobs + stats.unused.blobs
            - stats.remove.blobs
            - stats.repack_remove.blobs,
        bytes: stats.used.bytes + stats.unused.bytes
            - stats.remove.bytes
            - stats.repack_remove.bytes,
    };
    stats.remaining_unused_bytes = unused_after;
    for id in &plan.repack_packs {
        let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut copy: Vec<PackBlob> = match claimed_at.get(id) {
            Some(positions) => positions
                .iter()
                .filter_map(|&pos| blobs.get(pos as usize).copied())
                .collect(),
            None => blobs.to_vec(),
        };
        copy.sort_by_key(|b| b.offset);
        plan.repack_blobs.insert(*id, copy);
    }
    plan.stats = stats;
    plan.scan = scan;
    Ok(plan)
}

/// Progress events of [`execute_prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneStep {
    /// Repacking starts (number of packs).
    Repacking(u64),
    /// One pack repacked.
    PackRepacked,
    /// The new index is being written (number of packs in it).
    RebuildingIndex(u64),
    /// Old index files are deleted (count).
    DeletingIndex(u64),
    /// Old packs are deleted (count).
    DeletingPacks(u64),
}

/// Longest byte run read from an old pack at once: neighbouring wanted
/// blobs are read together up to this size (a single larger blob is read
/// on its own), so repacking never holds a whole old pack.
const MAX_READ_RUN: u64 = 1 << 20;

/// Largest gap of unwanted bytes read through to join two wanted blobs.
const MAX_READ_GAP: u64 = 64 << 10;

/// A pack being assembled from copied blobs.
struct NewPack {
    bytes: Vec<u8>,
    blobs: Vec<PackBlob>,
}

impl NewPack {
    fn new() -> Self {
        NewPack {
            bytes: Vec::new(),
            blobs: Vec::new(),
        }
    }
}

use crate::poison::lock;

/// Pack buffers of data packs in existence at once (the one being filled
/// and the one being stored): the bound on repack memory.
const DATA_PACK_BUFFERS: usize = 2;

/// Recycled pack buffers, at most `max` of them: a worker that needs a new
/// one while all are in use (filled or being stored) waits until a store
/// hands one back. Recycling also spares the allocator a fresh 16 MiB
/// block per pack.
struct BufferPool {
    /// Free buffers and the number created so far.
    state: Mutex<(Vec<Vec<u8>>, usize)>,
    returned: Condvar,
    max: usize,
    capacity: usize,
}

impl BufferPool {
    fn new(max: usize, capacity: usize) -> Self {
        BufferPool {
            state: Mutex::new((Vec::new(), 0)),
            returned: Condvar::new(),
            max: max.max(1),
            capacity,
        }
    }

    fn take(&self) -> Vec<u8> {
        let mut state = lock(&self.state);
        loop {
            if let Some(buffer) = state.0.pop() {
                return buffer;
            }
            if state.1 < self.max {
                state.1 += 1;
                return Vec::with_capacity(self.capacity);
            }
            state = self.returned.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        lock(&self.state).0.push(buffer);
        self.returned.notify_one();
    }
}

/// The packs written by a repack, shared by all repack workers: one open
/// pack per blob type (trees and data apart, like restic), so new packs
/// come out full instead of one partial pack per old pack. Data pack
/// buffers come from a [`BufferPool`], so memory stays bounded however
/// many workers copy and however slow the backend stores.
pub(crate) struct RepackWriter<'r> {
    repo: &'r Repository,
    target: usize,
    /// Open packs: 0 data, 1 tree.
    open: Mutex<[NewPack; 2]>,
    data_buffers: BufferPool,
    stored: Mutex<Vec<(Id, Vec<PackBlob>)>>,
}

impl<'r> RepackWriter<'r> {
    pub(crate) fn new(repo: &'r Repository) -> Self {
        let target = usize::try_from(repo.pack_size()).unwrap_or(usize::MAX);
        // Room for a full pack and most headers, so a buffer rarely grows.
        let capacity = target.saturating_add(target / 32).min(1 << 30);
        RepackWriter {
            repo,
            target,
            open: Mutex::new([NewPack::new(), NewPack::new()]),
            data_buffers: BufferPool::new(DATA_PACK_BUFFERS, capacity),
            stored: Mutex::new(Vec::new()),
        }
    }

    /// Append one verified blob (its stored, encrypted bytes); stores the
    /// pack once it is full.
    pub(crate) fn add(&self, blob: &PackBlob, ciphertext: &[u8]) -> Result<(), PruneError> {
        let slot = match blob.blob_type {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        let full = {
            let mut open = lock(&self.open);
            let Some(p) = open.get_mut(slot) else {
                return Ok(());
            };
            if slot == 0 && p.bytes.capacity() == 0 {
                // May wait for a store to hand a buffer back; the storing
                // worker does not need `open`, so this cannot deadlock.
                p.bytes = self.data_buffers.take();
            }
            p.blobs.push(PackBlob {
                offset: p.bytes.len() as u64,
                ..*blob
            });
            p.bytes.extend_from_slice(ciphertext);
            let header_full = p.blobs.len() + 1 >= pack::MAX_HEADER_ENTRIES;
            if p.bytes.len() >= self.target || header_full {
                Some((slot, std::mem::replace(p, NewPack::new())))
            } else {
                None
            }
        };
        // Stored outside the lock: the other workers go on filling the
        // next pack meanwhile.
        if let Some((slot, pack)) = full {
            self.store(slot, pack)?;
        }
        Ok(())
    }

    /// Store one pack and hand its buffer back (also on failure, so no
    /// worker waits for it forever).
    fn store(&self, slot: usize, pack: NewPack) -> Result<(), PruneError> {
        let NewPack { mut bytes, blobs } = pack;
        let result = store_pack(self.repo, &mut bytes, &blobs);
        if slot == 0 {
            self.data_buffers.give(bytes);
        }
        let id = result?;
        lock(&self.stored).push((id, blobs));
        Ok(())
    }

    /// Store the partly filled packs; returns every pack written.
    pub(crate) fn finish(self) -> Result<Vec<(Id, Vec<PackBlob>)>, PruneError> {
        let open = std::mem::replace(&mut *lock(&self.open), [NewPack::new(), NewPack::new()]);
        for (slot, p) in open.into_iter().enumerate() {
            if !p.blobs.is_empty() {
                self.store(slot, p)?;
            }
        }
        Ok(self.stored.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Append the encrypted header to `bytes` (the pack's blobs) and store the
/// pack under the SHA-256 of its content (spec: restic-format §7).
fn store_pack(
    repo: &Repository,
    bytes: &mut Vec<u8>,
    blobs: &[PackBlob],
) -> Result<Id, PruneError> {
    let header = pack::encode_header(blobs);
    pack::append_encrypted_header(repo.key(), &header, bytes);
    let id = Id(Sha256::digest(&bytes[..]).into());
    repo.backend()
        .write(FileType::Pack, &id.to_hex(), bytes)
        .map_err(RepoError::from)?;
    Ok(id)
}

/// Group blobs (sorted by offset) into runs read with one range request.
fn read_runs(blobs: &[PackBlob]) -> Vec<&[PackBlob]> {
    let mut runs = Vec::new();
    let mut start = 0usize;
    for i in 1..=blobs.len() {
        let split = match (blobs.get(start), blobs.get(i - 1), blobs.get(i)) {
            (Some(first), Some(prev), Some(next)) => {
                let prev_end = prev.offset.saturating_add(u64::from(prev.length));
                let next_end = next.offset.saturating_add(u64::from(next.length));
                next.offset < prev_end
                    || next.offset - prev_end > MAX_READ_GAP
                    || next_end.saturating_sub(first.offset) > MAX_READ_RUN
            }
            _ => true,
        };
        if split {
            if let Some(run) = blobs.get(start..i) {
                if !run.is_empty() {
                    runs.push(run);
                }
            }
            start = i;
        }
    }
    runs
}

/// Copy `blobs` (the used ones of `pack_id`, sorted by offset) into the
/// writer, verifying each on the way (MAC, decompression, hash).
fn repack_one(
    repo: &Repository,
    pack_id: &Id,
    blobs: &[PackBlob],
    writer: &RepackWriter<'_>,
) -> Result<(), PruneError> {
    let damaged = |b: &PackBlob, what: String| {
        PruneError::Damaged(format!(
            "pack {}: blob {}: {what}",
            pack_id.short(),
            b.id.short()
        ))
    };
    // A blob listed twice in one pack is copied once.
    let mut done: HashSet<(BlobType, Id)> = HashSet::new();
    for run in read_runs(blobs) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let start = first.offset;
        let end = last.offset.saturating_add(u64::from(last.length));
        let data = repo
            .backend()
            .read_range(
                FileType::Pack,
                &pack_id.to_hex(),
                start,
                end.saturating_sub(start),
            )
            .map_err(RepoError::from)?;
        for b in run {
            if !done.insert((b.blob_type, b.id)) {
                continue;
            }
            let from = usize::try_from(b.offset.saturating_sub(start)).unwrap_or(usize::MAX);
            let to = from.saturating_add(b.length as usize);
            let ct = data
                .get(from..to)
                .ok_or_else(|| damaged(b, "out of range".into()))?;
            decode_blob(repo.key(), &b.id, ct, b.uncompressed_length)
                .map_err(|e| damaged(b, e.to_string()))?;
            writer.add(b, ct)?;
        }
    }
    Ok(())
}

/// Carry out a plan (spec: restic-format §16 ordering). `progress` is called
/// from the calling thread only.
pub fn execute_prune(
    repo: &Repository,
    plan: &PrunePlan,
    workers: usize,
    progress: &mut dyn FnMut(PruneStep),
) -> Result<(), PruneError> {
    if plan.is_noop() {
        return Ok(());
    }
    // 1. New packs.
    let mut new_packs: Vec<(Id, Vec<PackBlob>)> = Vec::new();
    if !plan.repack_packs.is_empty() {
        progress(PruneStep::Repacking(plan.repack_packs.len() as u64));
        let writer = RepackWriter::new(repo);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .build()
            .map_err(|e| PruneError::Damaged(format!("starting worker threads: {e}")))?;
        let results: Vec<Result<(), PruneError>> = pool.install(|| {
            plan.repack_packs
                .par_iter()
                .map(|id| {
                    let blobs = plan.repack_blobs.get(id).map(Vec::as_slice).unwrap_or(&[]);
                    repack_one(repo, id, blobs, &writer)
                })
                .collect()
        });
        for r in results {
            r?;
            progress(PruneStep::PackRepacked);
        }
        new_packs = writer.finish()?;
    }
    // 2. New index: kept packs (all their entries) + new packs.
    let removed: HashSet<Id> = plan
        .repack_packs
        .iter()
        .chain(&plan.remove_packs)
        .copied()
        .collect();
    let mut index_packs: Vec<IndexPack> = Vec::new();
    let mut kept: Vec<&Id> = plan
        .scan
        .packs
        .keys()
        .filter(|id| !removed.contains(id))
        .collect();
    kept.sort();
    for id in kept {
        let blobs = plan.scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
        index_packs.push(IndexPack {
            id: *id,
            blobs: blobs.iter().map(|b| IndexBlob::from(*b)).collect(),
        });
    }
    for (id, blobs) in &new_packs {
        index_packs.push(IndexPack {
            id: *id,
            blobs: blobs.iter().map(|b| IndexBlob::from(*b)).collect(),
        });
    }
    progress(PruneStep::RebuildingIndex(index_packs.len() as u64));
    let new_index_files = write_index(repo, index_packs)?;
    // 3. Old index files (never the ones just written).
    let old_index: Vec<Id> = repo
        .list_files(FileType::Index)?
        .into_iter()
        .filter(|id| !new_index_files.contains(id))
        .collect();
    progress(PruneStep::DeletingIndex(old_index.len() as u64));
    for id in &old_index {
        repo.remove_file(FileType::Index, id)?;
    }
    // 4. Old packs.
    let mut old_packs: Vec<Id> = removed.into_iter().collect();
    old_packs.sort();
    progress(PruneStep::DeletingPacks(old_packs.len() as u64));
    for id in &old_packs {
        match repo.remove_file(FileType::Pack, id) {
            Ok(()) => {}
            Err(RepoError::Backend { source }) if source.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Carry out a plan that repacks nothing in the order of `prune
/// --unsafe-recover-no-free-space` (restic prune.go, `UnsafeRecovery`): the
/// old index files go first and then the packs to remove, so space is
/// freed before anything is written; the new index comes last. Until it is
/// written the repository has no index (`repair index` rebuilds one).
pub fn execute_prune_without_free_space(
    repo: &Repository,
    plan: &PrunePlan,
    progress: &mut dyn FnMut(PruneStep),
) -> Result<(), PruneError> {
    if !plan.repack_packs.is_empty() {
        return Err(PruneError::InvalidOption(
            "--unsafe-recover-no-free-space cannot repack packs".to_string(),
        ));
    }
    let old_index = repo.list_files(FileType::Index)?;
    progress(PruneStep::DeletingIndex(old_index.len() as u64));
    for id in &old_index {
        repo.remove_file(FileType::Index, id)?;
    }
    let removed: HashSet<Id> = plan.remove_packs.iter().copied().collect();
    let mut old_packs: Vec<Id> = removed.iter().copied().collect();
    old_packs.sort();
    progress(PruneStep::DeletingPacks(old_packs.len() as u64));
    for id in &old_packs {
        match repo.remove_file(FileType::Pack, id) {
            Ok(()) => {}
            Err(RepoError::Backend { source }) if source.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut kept: Vec<&Id> = plan
        .scan
        .packs
        .keys()
        .filter(|id| !removed.contains(id))
        .collect();
    kept.sort();
    let index_packs: Vec<IndexPack> = kept
        .into_iter()
        .map(|id| IndexPack {
            id: *id,
            blobs: plan
                .scan
                .packs
                .get(id)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|b| IndexBlob::from(*b))
                .collect(),
        })
        .collect();
    progress(PruneStep::RebuildingIndex(index_packs.len() as u64));
    write_index(repo, index_packs)?;
    Ok(())
}

/// Write index files for `packs`, at most 50000 blobs each (spec:
/// restic-format §9). Returns their IDs.
pub fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<Vec<Id>, PruneError> {
    let mut written = Vec::new();
    let mut file = IndexFile::default();
    let mut count = 0usize;
    let save = |file: &IndexFile| -> Result<Id, PruneError> {
        let data = unpacked::encode_unpacked(repo.key(), repo.version(), &file.to_json());
        let id = Id(Sha256::digest(&data).into());
        repo.backend()
            .write(FileType::Index, &id.to_hex(), &data)
            .map_err(RepoError::from)?;
        Ok(id)
    };
    for p in packs {
        count += p.blobs.len();
        file.packs.push(p);
        if count >= restix_repo_format::index::INDEX_MAX_BLOBS {
            written.push(save(&std::mem::take(&mut file))?);
            count = 0;
        }
    }
    if !file.packs.is_empty() {
        written.push(save(&file)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_parsing() {
        assert_eq!(MaxUnused::parse("5%").unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(MaxUnused::parse("unlimited").unwrap(), MaxUnused::Unlimited);
        assert_eq!(MaxUnused::parse("10M").unwrap(), MaxUnused::Bytes(10 << 20));
        assert!(MaxUnused::parse("100%").is_err());
        assert!(MaxUnused::parse("").is_err());
        assert!(MaxUnused::parse("x%").is_err());
        assert_eq!(MaxUnused::Percent(50.0).limit(100), 100);
    }

    fn blob(n: u8, offset: u64, length: u32) -> PackBlob {
        PackBlob {
            blob_type: BlobType::Data,
            id: Id([n; 32]),
            offset,
            length,
            uncompressed_length: None,
        }
    }

    #[test]
    fn read_runs_join_neighbours_and_stay_bounded() {
        const MIB: u64 = 1 << 20;
        const QUARTER: u64 = MIB / 4;
        let blobs = vec![
            blob(1, 0, 100),
            blob(2, 100, 100),
            // small gap: read through
            blob(3, 300, 100),
            // large gap: a new run
            blob(4, MIB, 10),
            // contiguous 256 KiB blobs: cut where the run would pass 1 MiB
            blob(5, 2 * MIB, QUARTER as u32),
            blob(6, 2 * MIB + QUARTER, QUARTER as u32),
            blob(7, 2 * MIB + 2 * QUARTER, QUARTER as u32),
            blob(8, 2 * MIB + 3 * QUARTER, QUARTER as u32),
            blob(9, 3 * MIB, QUARTER as u32),
            // larger than a run on its own
            blob(10, 3 * MIB + QUARTER, 3 * MIB as u32),
        ];
        let runs: Vec<Vec<u8>> = read_runs(&blobs)
            .iter()
            .map(|r| r.iter().map(|b| b.id.0[0]).collect())
            .collect();
        assert_eq!(
            runs,
            vec![vec![1, 2, 3], vec![4], vec![5, 6, 7, 8], vec![9], vec![10]]
        );
        assert!(read_runs(&[]).is_empty());
    }
}
