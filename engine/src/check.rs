//! check: verify the structure and, optionally, every byte of a repository.
//!
//! The steps follow restic's checker (spec: cli §10.8):
//! 1. [`scan_index`]: load every index file on its own, so one damaged file
//!    is named instead of hiding the others; packs listed in several index
//!    files are reported as a hint (non-critical).
//! 2. [`check_packs`]: every indexed pack must exist with the size its index
//!    entries imply; packs in `data/` that no index lists are "orphaned"
//!    (non-critical, prune removes them).
//! 3. [`walk_trees`]: every snapshot's trees load and decode, every blob a
//!    tree references is in the index.
//! 4. [`read_pack`] (`--read-data`): a pack's SHA-256 equals its name, its
//!    header matches the index, every blob decrypts (MAC) and hashes to its ID.
//!
//! The same index scan and tree walk serve `prune` and `stats`.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(repo: &Repository) {
//! use restix_engine::check::{scan_index, check_packs, walk_trees};
//! let scan = scan_index(repo);
//! let packs = check_packs(repo, &scan).unwrap();
//! let roots: Vec<_> = repo.list_snapshots().unwrap().iter().filter_map(|(_, s)| s.tree).collect();
//! let walk = walk_trees(repo, &scan.index, &roots, 4);
//! assert!(scan.errors.is_empty() && packs.errors.is_empty() && walk.errors.is_empty());
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use rayon::prelude::*;
use restix_repo_format::pack::{self, HeaderRead, PackBlob};
use restix_repo_format::{BlobType, Id, IndexFile, NodeType, Tree, CRYPTO_OVERHEAD};
use sha2::{Digest, Sha256};

use crate::backend::FileType;
use crate::repository::{decode_blob, parallel_map, MemoryIndex, RepoError, Repository};

/// What kind of problem was found (for callers that count or compare kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// An index file cannot be read, decrypted or parsed.
    IndexUnreadable,
    /// A pack is listed in more than one index file (hint).
    DuplicatePack,
    /// A pack holds both tree and data blobs (hint).
    MixedPack,
    /// An indexed pack is missing from the backend.
    PackMissing,
    /// A pack's size differs from what its index entries imply.
    PackSize,
    /// A pack file that no index lists (hint).
    PackOrphaned,
    /// A snapshot file cannot be read.
    SnapshotUnreadable,
    /// A tree referenced by a snapshot or a parent tree is not in the index.
    TreeMissing,
    /// A tree cannot be loaded or decoded.
    TreeDamaged,
    /// A data blob referenced by a file is not in the index.
    BlobMissing,
    /// A blob in the index no snapshot uses (`--check-unused`).
    BlobUnused,
    /// A pack's content is damaged (hash, header, blob MAC or hash).
    PackDamaged,
    /// The backend failed while listing or reading.
    Backend,
}

impl ProblemKind {
    /// True for findings restic prints but does not count as errors.
    pub fn is_hint(self) -> bool {
        matches!(
            self,
            ProblemKind::DuplicatePack | ProblemKind::PackOrphaned | ProblemKind::MixedPack
        )
    }
}

/// One finding, with restic-like text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The object concerned (pack, tree, blob, index or snapshot ID).
    pub id: Id,
    /// Human readable text.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn problem(kind: ProblemKind, id: Id, message: impl Into<String>) -> Problem {
    Problem {
        kind,
        id,
        message: message.into(),
    }
}

/// The result of loading all index files one by one.
#[derive(Debug, Default)]
pub struct IndexScan {
    /// All blobs of the readable index files.
    pub index: MemoryIndex,
    /// Index files read successfully.
    pub index_files: Vec<Id>,
    /// Blobs of each indexed pack (first index file listing it wins).
    pub packs: HashMap<Id, Vec<PackBlob>>,
    /// Unreadable index files.
    pub errors: Vec<Problem>,
    /// Packs listed in several index files.
    pub hints: Vec<Problem>,
}

impl IndexScan {
    /// The file size a pack must have given its index entries: blobs,
    /// encrypted header, 4-byte length (spec: restic-format §7).
    pub fn expected_pack_size(blobs: &[PackBlob]) -> u64 {
        let blob_bytes: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
        let header: u64 = blobs.iter().map(|b| b.entry_size() as u64).sum();
        blob_bytes + header + (CRYPTO_OVERHEAD + pack::HEADER_LENGTH_SIZE) as u64
    }
}

/// Load every index file separately (spec: cli §10.8 "load indexes").
pub fn scan_index(repo: &Repository) -> IndexScan {
    let mut scan = IndexScan::default();
    let ids = match repo.list_files(FileType::Index) {
        Ok(ids) => ids,
        Err(e) => {
            scan.errors.push(problem(
                ProblemKind::Backend,
                Id::NULL,
                format!("listing index files: {e}"),
            ));
            return scan;
        }
    };
    let workers = repo.backend().connections() + 2;
    let files = parallel_map(&ids, workers, |id| -> Result<IndexFile, String> {
        let json = repo
            .load_file(FileType::Index, id)
            .map_err(|e| e.to_string())?;
        IndexFile::parse(&json).map_err(|e| e.to_string())
    });
    let mut seen_in: HashMap<Id, Id> = HashMap::new();
    let mut listed_in: HashMap<Id, Vec<Id>> = HashMap::new();
    for (id, file) in ids.iter().zip(files) {
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                scan.errors.push(problem(
                    ProblemKind::IndexUnreadable,
                    *id,
                    format!("error loading index {}: {e}", id.to_hex()),
                ));
                continue;
            }
        };
        scan.index_files.push(*id);
        for p in file.packs {
            let files = listed_in.entry(p.id).or_default();
            if !files.contains(id) {
                files.push(*id);
            }
            if seen_in.contains_key(&p.id) {
                continue;
            }
            seen_in.insert(p.id, *id);
            let mut blobs = Vec::with_capacity(p.blobs.len());
            for b in p.blobs {
                if let Err(e) = scan.index.add(
                    b.blob_type,
                    b.id,
                    p.id,
                    b.offset,
                    u64::from(b.length),
                    b.uncompressed_length.map(u64::from),
                ) {
                    scan.errors.push(problem(
                        ProblemKind::IndexUnreadable,
                        *id,
                        format!("index {}: {e}", id.to_hex()),
                    ));
                    continue;
                }
                blobs.push(PackBlob {
                    blob_type: b.blob_type,
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                });
            }
            scan.packs.insert(p.id, blobs);
        }
    }
    let mut duplicates: Vec<(Id, Vec<Id>)> =
        listed_in.into_iter().filter(|(_, f)| f.len() > 1).collect();
    duplicates.sort();
    for (pack_id, files) in duplicates {
        let mut shorts: Vec<String> = files.iter().map(Id::short).collect();
        shorts.sort();
        scan.hints.push(problem(
            ProblemKind::DuplicatePack,
            pack_id,
            format!(
                "pack {} contained in several indexes: {{{}}}",
                pack_id.to_hex(),
                shorts.join(" ")
            ),
        ));
    }
    let mut mixed: Vec<Id> = scan
        .packs
        .iter()
        .filter(|(_, blobs)| {
            blobs.iter().any(|b| b.blob_type == BlobType::Tree)
                && blobs.iter().any(|b| b.blob_type == BlobType::Data)
        })
        .map(|(id, _)| *id)
        .collect();
    mixed.sort();
    for pack_id in mixed {
        scan.hints.push(problem(
            ProblemKind::MixedPack,
            pack_id,
            format!(
                "pack {} contains a mix of tree and data blobs",
                pack_id.short()
            ),
        ));
    }
    scan.index.finish_bulk_load();
    scan
}

/// Result of [`check_packs`].
#[derive(Debug, Default)]
pub struct PackCheck {
    /// Missing packs and size mismatches.
    pub errors: Vec<Problem>,
    /// Packs no index lists (non-critical).
    pub orphaned: Vec<Problem>,
    /// Sizes of all pack files in the backend.
    pub sizes: HashMap<Id, u64>,
}

/// Compare the indexed packs with the pack files (spec: cli §10.8 "check all packs").
pub fn check_packs(repo: &Repository, scan: &IndexScan) -> Result<PackCheck, RepoError> {
    let mut out = PackCheck::default();
    for f in repo.backend().list(FileType::Pack)? {
        if let Ok(id) = Id::from_hex(&f.name) {
            out.sizes.insert(id, f.size);
        }
    }
    let mut indexed: Vec<&Id> = scan.packs.keys().collect();
    indexed.sort();
    for id in indexed {
        let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
        match out.sizes.get(id) {
            None => out.errors.push(problem(
                ProblemKind::PackMissing,
                *id,
                format!("pack {}: does not exist", id.to_hex()),
            )),
            Some(&size) => {
                let expected = IndexScan::expected_pack_size(blobs);
                if size != expected {
                    out.errors.push(problem(
                        ProblemKind::PackSize,
                        *id,
                        format!(
                            "pack {}: unexpected file size: got {size}, expected {expected}",
                            id.to_hex()
                        ),
                    ));
                }
            }
        }
    }
    let mut orphaned: Vec<&Id> = out
        .sizes
        .keys()
        .filter(|id| !scan.packs.contains_key(id))
        .collect();
    orphaned.sort();
    for id in orphaned {
        out.orphaned.push(problem(
            ProblemKind::PackOrphaned,
            *id,
            format!("pack {}: not referenced in any index", id.to_hex()),
        ));
    }
    Ok(out)
}

/// Load a tree blob through `index` (not the repository's own index, so a
/// partly readable index still lets check walk what it can).
pub fn load_tree(repo: &Repository, index: &MemoryIndex, id: &Id) -> Result<Tree, Problem> {
    let copies = index.lookup_all(BlobType::Tree, id);
    if copies.is_empty() {
        return Err(problem(
            ProblemKind::TreeMissing,
            *id,
            format!("id {} not found in repository", id.to_hex()),
        ));
    }
    let mut last = String::new();
    for loc in copies {
        let data = repo.backend().read_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            u64::from(loc.offset),
            u64::from(loc.length),
        );
        match data {
            Ok(ct) => match decode_blob(repo.key(), id, &ct, loc.uncompressed_length) {
                Ok(plain) => {
                    return Tree::decode(&plain).map_err(|e| {
                        problem(
                            ProblemKind::TreeDamaged,
                            *id,
                            format!("tree {}: {e}", id.short()),
                        )
                    })
                }
                Err(e) => last = format!("pack {}: {e}", loc.pack.short()),
            },
            Err(e) => last = e.to_string(),
        }
    }
    Err(problem(
        ProblemKind::TreeDamaged,
        *id,
        format!("tree {}: {last}", id.short()),
    ))
}

/// Everything reachable from a set of root trees.
#[derive(Debug, Default)]
pub struct TreeWalk {
    /// Trees reached (loaded or not).
    pub trees: HashSet<Id>,
    /// Data blobs referenced by files.
    pub data: HashSet<Id>,
    /// Missing or damaged trees, data blobs not in the index.
    pub errors: Vec<Problem>,
}

impl TreeWalk {
    /// True if the blob is used.
    pub fn uses(&self, blob_type: BlobType, id: &Id) -> bool {
        match blob_type {
            BlobType::Tree => self.trees.contains(id),
            BlobType::Data => self.data.contains(id),
        }
    }

    /// Take a used blob out of the sets: true the first time for a used
    /// blob, false for unused blobs and for every later copy (prune counts
    /// only one copy of each blob as used).
    pub fn claim(&mut self, blob_type: BlobType, id: &Id) -> bool {
        match blob_type {
            BlobType::Tree => self.trees.remove(id),
            BlobType::Data => self.data.remove(id),
        }
    }
}

/// Walk all trees below `roots` breadth first, loading each distinct tree
/// once, `workers` trees at a time (spec: cli §10.8 "check snapshots,
/// trees and blobs").
pub fn walk_trees(
    repo: &Repository,
    index: &MemoryIndex,
    roots: &[Id],
    workers: usize,
) -> TreeWalk {
    let mut walk = TreeWalk::default();
    let mut frontier: Vec<Id> = Vec::new();
    for r in roots {
        if walk.trees.insert(*r) {
            frontier.push(*r);
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(1))
        .build();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        // A level can be very wide: decode it a batch at a time so only a
        // bounded number of decoded trees is held at once.
        for batch in frontier.chunks(WALK_BATCH) {
            let load = |id: &Id| (*id, load_tree(repo, index, id));
            let loaded: Vec<(Id, Result<Tree, Problem>)> = match &pool {
                Ok(pool) => pool.install(|| batch.par_iter().map(load).collect()),
                Err(_) => batch.iter().map(load).collect(),
            };
            for (tree_id, tree) in loaded {
                let tree = match tree {
                    Ok(t) => t,
                    Err(p) => {
                        walk.errors.push(p);
                        continue;
                    }
                };
                // Names that could escape a restore target ("..", "a/b", NUL,
                // duplicates) make the tree unusable; report it like restic's
                // "tree ... is damaged" rather than leaving it to restore.
                if let Err(e) = crate::walker::check_tree_names(&tree, b"") {
                    walk.errors.push(problem(
                        ProblemKind::TreeDamaged,
                        tree_id,
                        format!("tree {}: {e}", tree_id.short()),
                    ));
                }
                for node in &tree.nodes {
                    match node.node_type {
                        NodeType::Dir => match node.subtree {
                            Some(sub) => {
                                if walk.trees.insert(sub) {
                                    next.push(sub);
                                }
                            }
                            None => walk.errors.push(problem(
                                ProblemKind::TreeDamaged,
                                tree_id,
                                format!(
                                    "tree {}: dir {:?} subtree id is null",
                                    tree_id.short(),
                                    node.name_lossy()
                                ),
                            )),
                        },
                        NodeType::File => {
                            for blob in node.content.iter().flatten() {
                                if walk.data.insert(*blob) && !index.has(BlobType::Data, blob) {
                                    // Reported under the tree that references it.
                                    walk.errors.push(problem(
                                        ProblemKind::BlobMissing,
                                        tree_id,
                                        format!(
                                            "tree {}: file {:?} blob {} not found in index",
                                            tree_id.to_hex(),
                                            node.name_lossy(),
                                            blob.to_hex()
                                        ),
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        frontier = next;
    }
    walk
}

/// Trees decoded at once by [`walk_trees`].
const WALK_BATCH: usize = 256;

/// Index blobs that no walked tree uses (`--check-unused`), sorted.
pub fn unused_blobs(index: &MemoryIndex, walk: &TreeWalk) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    index.for_each(|t, id, _| {
        if !walk.uses(t, &id) && seen.insert((t, id)) {
            out.push(problem(
                ProblemKind::BlobUnused,
                id,
                format!("unused blob {}", id.short()),
            ));
        }
    });
    out.sort_by_key(|p| p.id);
    out
}

/// Read one whole pack and verify it against its index entries
/// (spec: cli §10.8 `--read-data`). Returns every problem found.
pub fn read_pack(repo: &Repository, pack_id: &Id, indexed: &[PackBlob]) -> Vec<Problem> {
    let damaged = |msg: String| {
        problem(
            ProblemKind::PackDamaged,
            *pack_id,
            format!("pack {}: {msg}", pack_id.short()),
        )
    };
    let data = match repo.backend().read(FileType::Pack, &pack_id.to_hex()) {
        Ok(d) => d,
        Err(e) => return vec![damaged(e.to_string())],
    };
    let mut out = Vec::new();
    let actual = Id(Sha256::digest(&data).into());
    if actual != *pack_id {
        out.push(damaged(format!(
            "Pack ID does not match, want {}, got {}",
            pack_id.short(),
            actual.short()
        )));
    }
    let size = data.len() as u64;
    let tail_len = usize::try_from(pack::eager_read_len(size)).unwrap_or(data.len());
    let mut tail = data
        .get(data.len().saturating_sub(tail_len)..)
        .unwrap_or(&data);
    let header = loop {
        match pack::decode_pack_header(repo.key(), tail, size) {
            Ok(HeaderRead::Complete(h)) => break Some(h),
            Ok(HeaderRead::NeedTail(n)) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n <= tail.len() || n > data.len() {
                    out.push(damaged("invalid header length".into()));
                    break None;
                }
                tail = data.get(data.len() - n..).unwrap_or(&data);
            }
            Err(e) => {
                out.push(damaged(format!("header: {e}")));
                break None;
            }
        }
    };
    let blobs: Vec<PackBlob> = match header {
        Some(h) => {
            if let Err(e) = h.check_blobs_fit(size) {
                out.push(damaged(e.to_string()));
            }
            let mut from_header = h.blobs.clone();
            let mut from_index = indexed.to_vec();
            from_header.sort_by_key(|b| (b.offset, b.id));
            from_index.sort_by_key(|b| (b.offset, b.id));
            if from_header != from_index {
                out.push(damaged("header does not match the index".into()));
            }
            h.blobs
        }
        None => indexed.to_vec(),
    };
    for b in &blobs {
        let start = usize::try_from(b.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(b.length as usize);
        let Some(ct) = data.get(start..end) else {
            out.push(damaged(format!("blob {} out of range", b.id.short())));
            continue;
        };
        if let Err(e) = decode_blob(repo.key(), &b.id, ct, b.uncompressed_length) {
            out.push(damaged(format!("blob {}: {e}", b.id.short())));
        }
    }
    out
}

/// How much of the data `--read-data-subset` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadSubset {
    /// Every pack.
    All,
    /// Group `n` of `t` (1-based): packs whose first ID byte mod `t` is `n-1`.
    Group(u32, u32),
    /// This percentage of the packs, chosen at random.
    Percent(f64),
    /// Random packs until this many bytes are chosen.
    Bytes(u64),
}

impl ReadSubset {
    /// Parse `n/t`, `x%` or a size with k/m/g/t suffix.
    pub fn parse(text: &str) -> Option<ReadSubset> {
        if let Some((n, t)) = text.split_once('/') {
            let n: u32 = n.parse().ok()?;
            let t: u32 = t.parse().ok()?;
            if n < 1 || t < 1 || n > t || t > 256 {
                return None;
            }
            return Some(ReadSubset::Group(n, t));
        }
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.parse().ok()?;
            if !(p > 0.0 && p <= 100.0) {
                return None;
            }
            return Some(ReadSubset::Percent(p));
        }
        crate::size::parse_size(text)
            .ok()
            .filter(|&n| n > 0)
            .map(ReadSubset::Bytes)
    }

    /// Pick the packs to read from `(id, size)` pairs.
    pub fn select(&self, packs: &[(Id, u64)]) -> Vec<Id> {
        let mut sorted = packs.to_vec();
        sorted.sort();
        match *self {
            ReadSubset::All => sorted.into_iter().map(|(id, _)| id).collect(),
            ReadSubset::Group(n, t) => sorted
                .into_iter()
                .filter(|(id, _)| u32::from(id.0[0]) % t == n - 1)
                .map(|(id, _)| id)
                .collect(),
            ReadSubset::Percent(p) => {
                shuffle(&mut sorted);
                let count = ((sorted.len() as f64) * p / 100.0).round() as usize;
                let count = count.max(1).min(sorted.len());
                sorted.into_iter().take(count).map(|(id, _)| id).collect()
            }
            ReadSubset::Bytes(limit) => {
                shuffle(&mut sorted);
                let mut total = 0u64;
                let mut out = Vec::new();
                for (id, size) in sorted {
                    if total >= limit {
                        break;
                    }
                    total += size;
                    out.push(id);
                }
                out
            }
        }
    }
}

fn shuffle(v: &mut [(Id, u64)]) {
    // Fisher-Yates with OS randomness (selection only, not security).
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 8];
        restix_repo_format::random_bytes(&mut b);
        let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        assert_eq!(ReadSubset::parse("1/3"), Some(ReadSubset::Group(1, 3)));
        assert_eq!(ReadSubset::parse("0/3"), None);
        assert_eq!(ReadSubset::parse("4/3"), None);
        assert_eq!(ReadSubset::parse("10%"), Some(ReadSubset::Percent(10.0)));
        assert_eq!(ReadSubset::parse("0%"), None);
        assert_eq!(ReadSubset::parse("2M"), Some(ReadSubset::Bytes(2 << 20)));
        assert_eq!(ReadSubset::parse("x"), None);
        let packs: Vec<(Id, u64)> = (0u8..=255).map(|b| (Id([b; 32]), 10)).collect();
        assert_eq!(ReadSubset::Group(1, 2).select(&packs).len(), 128);
        assert_eq!(ReadSubset::Percent(50.0).select(&packs).len(), 128);
        assert_eq!(ReadSubset::Bytes(100).select(&packs).len(), 10);
        assert_eq!(ReadSubset::All.select(&packs).len(), 256);
    }
}
