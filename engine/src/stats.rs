//! stats: sizes and counts of snapshots (restore-size, files-by-contents, raw-data, blobs-per-file).
//!
//! Semantics follow restic (spec: cli §10.12): `restore-size` counts every
//! node of every selected snapshot and its size (hard links once per
//! snapshot); `files-by-contents` counts files unique by content list;
//! `raw-data` sums the stored size of every distinct blob referenced;
//! `blobs-per-file` counts distinct (path, blob) pairs.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(repo: &Repository) {
//! use restix_engine::stats::{compute_stats, StatsMode};
//! repo.load_index().unwrap();
//! let snaps = repo.list_snapshots().unwrap();
//! let s = compute_stats(repo, &snaps, StatsMode::RestoreSize).unwrap();
//! println!("{} files, {} bytes", s.total_file_count, s.total_size);
//! # }
//! ```

use std::collections::{HashMap, HashSet};

use restix_repo_format::{BlobType, Id, NodeType, Snapshot};

use crate::repository::{RepoError, Repository};

/// The counting mode (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    /// `restore-size` (default).
    RestoreSize,
    /// `files-by-contents`.
    FilesByContents,
    /// `raw-data`.
    RawData,
    /// `blobs-per-file`.
    BlobsPerFile,
}

impl StatsMode {
    /// Parse a `--mode` value.
    pub fn parse(text: &str) -> Option<StatsMode> {
        match text {
            "restore-size" => Some(StatsMode::RestoreSize),
            "files-by-contents" => Some(StatsMode::FilesByContents),
            "raw-data" => Some(StatsMode::RawData),
            "blobs-per-file" => Some(StatsMode::BlobsPerFile),
            _ => None,
        }
    }

    /// The mode's name as restic prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsMode::RestoreSize => "restore-size",
            StatsMode::FilesByContents => "files-by-contents",
            StatsMode::RawData => "raw-data",
            StatsMode::BlobsPerFile => "blobs-per-file",
        }
    }
}

/// The numbers `stats` prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Total size (bytes).
    pub total_size: u64,
    /// Uncompressed size of the blobs (raw-data only).
    pub total_uncompressed_size: u64,
    /// Uncompressed / stored (raw-data on v2 repositories).
    pub compression_ratio: f64,
    /// Percentage of bytes that are stored compressed.
    pub compression_progress: f64,
    /// Space saved by compression in percent.
    pub compression_space_saving: f64,
    /// Files (nodes) counted.
    pub total_file_count: u64,
    /// Blobs counted.
    pub total_blob_count: u64,
    /// Snapshots processed.
    pub snapshots_count: u64,
}

/// Errors of `stats`.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Loading a tree or a blob size failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A blob referenced by a file is not in the index.
    #[error("blob {blob} not found for tree {tree}")]
    BlobNotFound {
        /// The blob.
        blob: Id,
        /// The tree that references it.
        tree: Id,
    },
    /// A snapshot without a tree.
    #[error("snapshot {0} has no tree")]
    NoTree(Id),
}

/// Compute stats over `snapshots` (the index must be loaded).
pub fn compute_stats(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    mode: StatsMode,
) -> Result<Stats, StatsError> {
    let mut stats = Stats::default();
    let mut unique_files: HashSet<Vec<Id>> = HashSet::new();
    let mut file_blobs: HashMap<Vec<u8>, HashSet<Id>> = HashMap::new();
    let mut raw_blobs: HashSet<(BlobType, Id)> = HashSet::new();
    for (id, snapshot) in snapshots {
        stats.snapshots_count += 1;
        let root = snapshot.tree.ok_or(StatsError::NoTree(*id))?;
        let mut hardlinks: HashSet<(u64, u64)> = HashSet::new();
        // Depth-first walk with explicit stack of (tree, path).
        let mut stack: Vec<(Id, Vec<u8>)> = vec![(root, Vec::new())];
        let mut seen_trees: HashSet<Id> = HashSet::new();
        while let Some((tree_id, path)) = stack.pop() {
            if mode == StatsMode::RawData {
                if !raw_blobs.insert((BlobType::Tree, tree_id)) {
                    continue;
                }
            } else if mode != StatsMode::RestoreSize
                && mode != StatsMode::BlobsPerFile
                && !seen_trees.insert(tree_id)
            {
                // files-by-contents: a repeated subtree adds nothing new.
                continue;
            }
            let tree = repo.load_tree(&tree_id)?;
            for node in &tree.nodes {
                let mut node_path = path.clone();
                node_path.push(b'/');
                node_path.extend_from_slice(&node.name);
                match mode {
                    StatsMode::RestoreSize => {
                        stats.total_file_count += 1;
                        let linked =
                            node.links > 1 && node.node_type != NodeType::Dir && node.inode != 0;
                        if !linked || hardlinks.insert((node.inode, node.device_id)) {
                            stats.total_size += node.size;
                        }
                    }
                    StatsMode::FilesByContents => {
                        let content = node.content.clone().unwrap_or_default();
                        if unique_files.insert(content) {
                            stats.total_size += node.size;
                            stats.total_file_count += 1;
                        }
                    }
                    StatsMode::BlobsPerFile => {
                        let content = node.content.clone().unwrap_or_default();
                        if unique_files.insert(content.clone()) {
                            for blob in &content {
                                let set =
                                    file_blobs.entry(node_path.clone()).or_insert_with(|| {
                                        stats.total_file_count += 1;
                                        HashSet::new()
                                    });
                                if set.insert(*blob) {
                                    let loc = repo.lookup(BlobType::Data, blob).ok_or(
                                        StatsError::BlobNotFound {
                                            blob: *blob,
                                            tree: tree_id,
                                        },
                                    )?;
                                    stats.total_size += u64::from(loc.plaintext_len());
                                    stats.total_blob_count += 1;
                                }
                            }
                        }
                    }
                    StatsMode::RawData => {
                        for blob in node.content.iter().flatten() {
                            raw_blobs.insert((BlobType::Data, *blob));
                        }
                    }
                }
                if let Some(sub) = node.subtree.filter(|_| node.node_type == NodeType::Dir) {
                    stack.push((sub, node_path));
                }
            }
        }
    }
    if mode == StatsMode::RawData {
        // restic 0.18: sizes as stored; "uncompressed" = what the blob would
        // take encrypted without compression (plaintext + 32).
        let overhead = restix_repo_format::CRYPTO_OVERHEAD as u64;
        let (mut compressed_stored, mut compressed_uncompressed) = (0u64, 0u64);
        for (t, id) in &raw_blobs {
            let loc = repo.lookup(*t, id).ok_or(StatsError::BlobNotFound {
                blob: *id,
                tree: Id::NULL,
            })?;
            let stored = u64::from(loc.length);
            let uncompressed = u64::from(loc.plaintext_len()) + overhead;
            stats.total_size += stored;
            stats.total_uncompressed_size += uncompressed;
            if loc.uncompressed_length.is_some() {
                compressed_stored += stored;
                compressed_uncompressed += uncompressed;
            }
            stats.total_blob_count += 1;
        }
        if compressed_stored > 0 {
            stats.compression_ratio = compressed_uncompressed as f64 / compressed_stored as f64;
        }
        if stats.total_uncompressed_size > 0 {
            stats.compression_space_saving =
                (1.0 - stats.total_size as f64 / stats.total_uncompressed_size as f64) * 100.0;
            stats.compression_progress =
                compressed_uncompressed as f64 / stats.total_uncompressed_size as f64 * 100.0;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for m in [
            "restore-size",
            "files-by-contents",
            "raw-data",
            "blobs-per-file",
        ] {
            assert_eq!(StatsMode::parse(m).map(StatsMode::as_str), Some(m));
        }
        assert!(StatsMode::parse("debug").is_none());
    }
}
