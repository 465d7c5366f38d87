//! `recover`: find the trees no snapshot and no other tree refers to and
//! make a snapshot that holds them (restic cmd_recover.go), so data of an
//! interrupted or forgotten backup can be restored.
//!
//! Every tree blob of the index is loaded; its subtrees are marked as
//! referenced, as are the snapshots' root trees; what is left are the
//! unreferenced roots. [`recovery_tree`] builds the new root: one folder
//! per root, named by the root's short ID, mode 0755, times now.

use std::collections::HashMap;

use restix_repo_format::{BlobType, GoTime, Id, Node, NodeType, Snapshot, Tree};

use crate::repository::{os_identity, RepoError, Repository};

/// What [`find_unreferenced_roots`] found.
#[derive(Debug, Default)]
pub struct RecoverScan {
    /// Tree blobs in the index.
    pub trees: u64,
    /// Unreferenced trees, sorted.
    pub roots: Vec<Id>,
    /// Trees that could not be loaded, with the reason.
    pub unreadable: Vec<(Id, String)>,
}

/// Progress of [`find_unreferenced_roots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverStep {
    /// Loading this many trees.
    LoadingTrees(u64),
    /// One tree loaded.
    TreeLoaded,
    /// Loading the snapshots.
    LoadingSnapshots,
}

/// Find the trees nothing refers to (index loaded).
pub fn find_unreferenced_roots(
    repo: &Repository,
    progress: &mut dyn FnMut(RecoverStep),
) -> Result<RecoverScan, RepoError> {
    let mut referenced: HashMap<Id, bool> = HashMap::new();
    repo.with_index(|index| {
        index.for_each(|blob_type, id, _| {
            if blob_type == BlobType::Tree {
                referenced.insert(id, false);
            }
        })
    });
    let mut scan = RecoverScan {
        trees: referenced.len() as u64,
        ..RecoverScan::default()
    };
    progress(RecoverStep::LoadingTrees(scan.trees));
    let mut ids: Vec<Id> = referenced.keys().copied().collect();
    ids.sort();
    for id in ids {
        match repo.load_tree(&id) {
            Ok(tree) => {
                for node in &tree.nodes {
                    if node.node_type == NodeType::Dir {
                        if let Some(sub) = node.subtree {
                            referenced.insert(sub, true);
                        }
                    }
                }
                progress(RecoverStep::TreeLoaded);
            }
            Err(e) => scan.unreadable.push((id, e.to_string())),
        }
    }
    progress(RecoverStep::LoadingSnapshots);
    for (_, snapshot) in repo.list_snapshots()? {
        if let Some(tree) = snapshot.tree {
            referenced.insert(tree, true);
        }
    }
    scan.roots = referenced
        .into_iter()
        .filter(|(_, seen)| !seen)
        .map(|(id, _)| id)
        .collect();
    scan.roots.sort();
    Ok(scan)
}

/// The root tree of the recovery snapshot: a folder per root tree.
pub fn recovery_tree(roots: &[Id], now: GoTime) -> Tree {
    let mut tree = Tree::new();
    for root in roots {
        let mut node = Node::new(root.short().into_bytes(), NodeType::Dir);
        node.mode = 0o755;
        node.mtime = now;
        node.atime = now;
        node.ctime = now;
        node.subtree = Some(*root);
        tree.nodes.push(node);
    }
    tree.sort();
    tree
}

/// Store the recovery tree and a snapshot of it (`/recover`, tag
/// `recovered`, this host and user, time now); returns the snapshot ID.
pub fn save_recovery_snapshot(repo: &Repository, roots: &[Id]) -> Result<Id, RepoError> {
    let now = GoTime::now_local();
    let tree = recovery_tree(roots, now);
    let (bytes, id) = tree.encode_with_id().map_err(|e| RepoError::InvalidTree {
        id: Id::NULL,
        reason: e.to_string(),
    })?;
    repo.save_blob(BlobType::Tree, bytes, Some(id))?;
    let (uid, gid) = os_identity::uid_gid();
    let snapshot = Snapshot {
        time: now,
        tree: Some(id),
        paths: vec!["/recover".to_string()],
        hostname: os_identity::hostname(),
        username: os_identity::username(),
        uid,
        gid,
        tags: vec!["recovered".to_string()],
        ..Snapshot::default()
    };
    // The index files, then the snapshot (spec §16), in one ordered write.
    repo.flush_and_save_snapshot(&snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_folder_per_root_sorted() {
        let a = Id([0xbb; 32]);
        let b = Id([0xaa; 32]);
        let tree = recovery_tree(&[a, b], GoTime::from_unix_utc(1_700_000_000, 0));
        let names: Vec<String> = tree.nodes.iter().map(|n| n.name_lossy()).collect();
        assert_eq!(names, vec![b.short(), a.short()]);
        assert!(tree
            .nodes
            .iter()
            .all(|n| n.mode == 0o755 && n.node_type == NodeType::Dir));
        assert_eq!(tree.nodes[0].subtree, Some(b));
    }
}
