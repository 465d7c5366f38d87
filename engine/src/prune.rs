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

use rayon::prelude::*;
use restix_repo_format::pack::{self, PackBlob};
use restix_repo_format::unpacked;
use restix_repo_format::{BlobType, Id, IndexBlob, IndexFile, IndexPack};
use sha2::{Digest, Sha256};

use crate::backend::FileType;
use crate::check::{check_packs, scan_index, walk_trees, IndexScan};
use crate::repository::{decode_blob, RepoError, Repository};

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
        crate::check::parse_size(text)
            .map(MaxUnused::Bytes)
            .ok_or_else(|| {
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
    /// Used blobs that are copied to new packs.
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
    /// Used blobs `(type, id)` and the one pack whose copy counts as used.
    pub used: HashMap<(BlobType, Id), Id>,
    /// Index state the plan was made from.
    pub scan: IndexScan,
    /// The statistics.
    pub stats: PruneStats,
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
    let scan = scan_index(repo);
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
    let walk = walk_trees(repo, &scan.index, &roots, workers);
    if let Some(e) = walk.errors.first() {
        return Err(PruneError::Damaged(format!(
            "{e}\nThe repository is damaged: run `restix check` and `restix repair` before prune"
        )));
    }
    let packs = check_packs(repo, &scan)?;
    let mut missing: Vec<String> = packs
        .errors
        .iter()
        .filter(|p| p.kind == crate::check::ProblemKind::PackMissing)
        .map(|p| p.id.to_hex())
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(PruneError::Damaged(format!(
            "packs from index missing in repo: {}\nrun `restix repair index` first",
            missing.join(", ")
        )));
    }

    // Each used blob counts as used in the first pack (sorted by ID) that
    // holds it; further copies are unused duplicates.
    let mut pack_ids: Vec<Id> = scan.packs.keys().copied().collect();
    pack_ids.sort();
    let mut info: HashMap<Id, PackInfo> = HashMap::new();
    let mut used: HashMap<(BlobType, Id), Id> = HashMap::new();
    let mut stats = PruneStats::default();
    for id in &pack_ids {
        let mut p = PackInfo {
            file_size: packs.sizes.get(id).copied().unwrap_or(0),
            ..Default::default()
        };
        for b in scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]) {
            let len = u64::from(b.length);
            match b.blob_type {
                BlobType::Tree => p.has_tree = true,
                BlobType::Data => p.has_data = true,
            }
            if b.uncompressed_length.is_none() {
                p.uncompressed = true;
            }
            let key = (b.blob_type, b.id);
            if walk.uses(b.blob_type, &b.id) && !used.contains_key(&key) {
                p.used_blobs += 1;
                p.used_bytes += len;
                used.insert(key, *id);
            } else {
                p.unused_blobs += 1;
                p.unused_bytes += len;
            }
        }
        stats.used.add(p.used_blobs, p.used_bytes);
        stats.unused.add(p.unused_blobs, p.unused_bytes);
        info.insert(*id, p);
    }

    let target = repo.pack_size();
    let mut plan = PrunePlan::default();
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
            stats.repack.add(p.used_blobs, p.used_bytes);
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
    plan.used = used;
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

/// Packs written by one repack job, with their blobs.
type StoredPacks = Vec<(Id, Vec<PackBlob>)>;

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

fn store_pack(repo: &Repository, pack: NewPack) -> Result<(Id, Vec<PackBlob>), PruneError> {
    let NewPack { mut bytes, blobs } = pack;
    let header = pack::encode_header(&blobs);
    pack::append_encrypted_header(repo.key(), &header, &mut bytes);
    let id = Id(Sha256::digest(&bytes).into());
    repo.backend()
        .write(FileType::Pack, &id.to_hex(), &bytes)
        .map_err(RepoError::from)?;
    Ok((id, blobs))
}

/// Copy the used blobs of `pack_id` (verifying each) into `out`, flushing
/// full packs. Returns the stored packs.
fn repack_one(
    repo: &Repository,
    pack_id: &Id,
    blobs: &[PackBlob],
    wanted: &HashMap<(BlobType, Id), Id>,
    copied: &std::sync::Mutex<HashSet<(BlobType, Id)>>,
) -> Result<Vec<(Id, Vec<PackBlob>)>, PruneError> {
    let data = repo
        .backend()
        .read(FileType::Pack, &pack_id.to_hex())
        .map_err(RepoError::from)?;
    let target = usize::try_from(repo.pack_size()).unwrap_or(usize::MAX);
    let mut stored = Vec::new();
    // Trees and data go into separate packs, like restic.
    let mut open: [NewPack; 2] = [NewPack::new(), NewPack::new()];
    let mut sorted = blobs.to_vec();
    sorted.sort_by_key(|b| b.offset);
    for b in sorted {
        let key = (b.blob_type, b.id);
        // Only the copy that counts as used is carried over.
        if wanted.get(&key) != Some(pack_id) {
            continue;
        }
        {
            let mut done = copied.lock().unwrap_or_else(|e| e.into_inner());
            if !done.insert(key) {
                continue;
            }
        }
        let start = usize::try_from(b.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(b.length as usize);
        let ct = data.get(start..end).ok_or_else(|| {
            PruneError::Damaged(format!(
                "pack {}: blob {} out of range",
                pack_id.short(),
                b.id.short()
            ))
        })?;
        decode_blob(repo.key(), &b.id, ct, b.uncompressed_length).map_err(|e| {
            PruneError::Damaged(format!(
                "pack {}: blob {}: {e}",
                pack_id.short(),
                b.id.short()
            ))
        })?;
        let slot = match b.blob_type {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        let Some(p) = open.get_mut(slot) else {
            continue;
        };
        p.blobs.push(PackBlob {
            offset: p.bytes.len() as u64,
            ..b
        });
        p.bytes.extend_from_slice(ct);
        let header_full = p.blobs.len() + 1 >= pack::MAX_HEADER_ENTRIES;
        if p.bytes.len() >= target || header_full {
            let full = std::mem::replace(p, NewPack::new());
            stored.push(store_pack(repo, full)?);
        }
    }
    for p in open {
        if !p.blobs.is_empty() {
            stored.push(store_pack(repo, p)?);
        }
    }
    Ok(stored)
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
        let copied = std::sync::Mutex::new(HashSet::new());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .build()
            .map_err(|e| PruneError::Damaged(format!("starting worker threads: {e}")))?;
        let results: Vec<Result<StoredPacks, PruneError>> = pool.install(|| {
            plan.repack_packs
                .par_iter()
                .map(|id| {
                    let blobs = plan.scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
                    repack_one(repo, id, blobs, &plan.used, &copied)
                })
                .collect()
        });
        for r in results {
            new_packs.extend(r?);
            progress(PruneStep::PackRepacked);
        }
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
}
