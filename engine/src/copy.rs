//! copy: transfer snapshots between repositories with different keys.
//!
//! Like restic's `copy` (spec: cli §10.16): every tree and data blob a
//! snapshot needs that the destination lacks is loaded (decrypted) from the
//! source and saved (re-encrypted, compressed per the destination's
//! settings) into the destination; after a flush the snapshot is saved with
//! `original` pointing at the source snapshot and no parent. Source
//! snapshots already copied (same original ID and equal fields) are
//! skipped.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(src: &Repository, dst: &Repository) -> Result<(), restix_engine::copy::CopyError> {
//! use restix_engine::copy::{copy_snapshot, find_existing_copy};
//! src.load_index()?;
//! dst.load_index()?;
//! let dst_snaps = dst.list_snapshots()?;
//! for (id, snap) in src.list_snapshots()? {
//!     if find_existing_copy(&dst_snaps, &id, &snap).is_none() {
//!         copy_snapshot(src, dst, &id, &snap, &mut Default::default())?;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;

use restix_repo_format::{BlobType, Id, NodeType, Snapshot};

use crate::repository::{RepoError, Repository};

/// Errors of copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source or writing the destination failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A snapshot without a tree.
    #[error("snapshot {0} has no tree")]
    NoTree(Id),
}

/// restic's `similarSnapshots`: the fields a copy keeps unchanged.
fn similar(a: &Snapshot, b: &Snapshot) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.time.unix_nanos() == b.time.unix_nanos()
        && a.tree == b.tree
        && a.hostname == b.hostname
        && a.username == b.username
        && a.uid == b.uid
        && a.gid == b.gid
        && sorted(&a.paths) == sorted(&b.paths)
        && sorted(&a.excludes) == sorted(&b.excludes)
        && sorted(&a.tags) == sorted(&b.tags)
}

/// The destination snapshot that is already a copy of `src`, if any.
pub fn find_existing_copy(dst: &[(Id, Snapshot)], src_id: &Id, src: &Snapshot) -> Option<Id> {
    let original = src.original.unwrap_or(*src_id);
    dst.iter()
        .find(|(id, s)| s.original.unwrap_or(*id) == original && similar(s, src))
        .map(|(id, _)| *id)
}

/// Blobs copied so far (shared across snapshots of one run).
#[derive(Debug, Default)]
pub struct CopyState {
    /// Trees already handled.
    pub visited_trees: HashSet<Id>,
    /// Blobs stored in the destination by this run.
    pub blobs_copied: u64,
}

/// Copy one snapshot's data and the snapshot itself; returns the new ID.
/// Both repositories' indexes must be loaded.
pub fn copy_snapshot(
    src: &Repository,
    dst: &Repository,
    src_id: &Id,
    snapshot: &Snapshot,
    state: &mut CopyState,
) -> Result<Id, CopyError> {
    let root = snapshot.tree.ok_or(CopyError::NoTree(*src_id))?;
    let mut stack = vec![root];
    while let Some(tree_id) = stack.pop() {
        if !state.visited_trees.insert(tree_id) {
            continue;
        }
        let raw = src.load_blob(BlobType::Tree, &tree_id)?;
        let tree = restix_repo_format::Tree::decode(&raw).map_err(|e| RepoError::InvalidTree {
            id: tree_id,
            reason: e.to_string(),
        })?;
        for node in &tree.nodes {
            if node.node_type == NodeType::File {
                for blob in node.content.iter().flatten() {
                    if !dst.has_blob(BlobType::Data, blob) {
                        let data = src.load_blob(BlobType::Data, blob)?;
                        let (_, new, _) = dst.save_blob(BlobType::Data, data, Some(*blob))?;
                        if new {
                            state.blobs_copied += 1;
                        }
                    }
                }
            }
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                stack.push(sub);
            }
        }
        if !dst.has_blob(BlobType::Tree, &tree_id) {
            // The tree bytes are copied verbatim: its ID stays the same.
            let (_, new, _) = dst.save_blob(BlobType::Tree, raw, Some(tree_id))?;
            if new {
                state.blobs_copied += 1;
            }
        }
    }
    let mut copy = snapshot.clone();
    copy.parent = None;
    if copy.original.is_none() {
        copy.original = Some(*src_id);
    }
    // The index files, then the snapshot (spec §16), in one ordered write.
    Ok(dst.flush_and_save_snapshot(&copy)?)
}
