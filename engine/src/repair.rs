//! repair: rebuild the index from pack headers; rewrite snapshots with missing data.
//!
//! [`repair_index`] (spec: cli §10.18) keeps the entries of packs whose size
//! matches what the old index says (unless `read_all_packs`), reads the
//! header of every other pack in `data/`, drops packs that no longer exist,
//! writes a fresh index and only then deletes the old index files.
//!
//! [`SnapshotRepairer::repair_tree`] rewrites a snapshot's trees: an unreadable subtree
//! becomes an empty directory, data blobs missing from the index are dropped
//! from files. The caller stores the new snapshot (tagged `repaired`).
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(repo: &Repository) -> Result<(), restix_engine::repair::RepairError> {
//! use restix_engine::repair::repair_index;
//! let report = repair_index(repo, false, &mut |_| {})?;
//! println!("{} packs added", report.added.len());
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use restix_repo_format::{BlobType, Id, IndexBlob, IndexPack, NodeType, Tree};

use crate::backend::FileType;
use crate::check::{scan_index, IndexScan};
use crate::prune::{write_index, PruneError};
use crate::repository::{RepoError, Repository};

/// Errors of the repair commands.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Repository access failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Writing the index failed.
    #[error(transparent)]
    Index(#[from] PruneError),
}

/// What [`repair_index`] did.
#[derive(Debug, Default)]
pub struct RepairIndexReport {
    /// Packs whose header was read and added.
    pub added: Vec<Id>,
    /// Packs in the old index that do not exist any more.
    pub removed: Vec<Id>,
    /// Packs whose header could not be read (left out of the index).
    pub unreadable: Vec<(Id, String)>,
    /// Packs in the new index.
    pub packs: u64,
    /// Old index files deleted.
    pub deleted_index_files: u64,
}

/// Progress of [`repair_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairStep {
    /// Reading this many pack headers.
    ReadingPacks(u64),
    /// Writing the new index.
    RebuildingIndex,
    /// Deleting old index files.
    DeletingIndex(u64),
}

/// Rebuild the index (spec: cli §10.18).
pub fn repair_index(
    repo: &Repository,
    read_all_packs: bool,
    progress: &mut dyn FnMut(RepairStep),
) -> Result<RepairIndexReport, RepairError> {
    let mut report = RepairIndexReport::default();
    let scan: IndexScan = if read_all_packs {
        IndexScan::default()
    } else {
        scan_index(repo)
    };
    let mut sizes: HashMap<Id, u64> = HashMap::new();
    for f in repo
        .backend()
        .list(FileType::Pack)
        .map_err(RepoError::from)?
    {
        if let Ok(id) = Id::from_hex(&f.name) {
            sizes.insert(id, f.size);
        }
    }
    let mut packs: Vec<IndexPack> = Vec::new();
    let mut to_read: Vec<Id> = Vec::new();
    let mut ids: Vec<&Id> = sizes.keys().collect();
    ids.sort();
    for id in ids {
        match scan.packs.get(id) {
            Some(blobs) if sizes.get(id) == Some(&IndexScan::expected_pack_size(blobs)) => {
                packs.push(IndexPack {
                    id: *id,
                    blobs: blobs.iter().map(|b| IndexBlob::from(*b)).collect(),
                });
            }
            _ => to_read.push(*id),
        }
    }
    let mut removed: Vec<Id> = scan
        .packs
        .keys()
        .filter(|id| !sizes.contains_key(id))
        .copied()
        .collect();
    removed.sort();
    report.removed = removed;
    progress(RepairStep::ReadingPacks(to_read.len() as u64));
    for id in to_read {
        match repo.read_pack_header(&id) {
            Ok(blobs) => {
                packs.push(IndexPack {
                    id,
                    blobs: blobs.into_iter().map(IndexBlob::from).collect(),
                });
                report.added.push(id);
            }
            Err(e) => report.unreadable.push((id, e.to_string())),
        }
    }
    progress(RepairStep::RebuildingIndex);
    report.packs = packs.len() as u64;
    let new_files = write_index(repo, packs)?;
    let old: Vec<Id> = repo
        .list_files(FileType::Index)?
        .into_iter()
        .filter(|id| !new_files.contains(id))
        .collect();
    progress(RepairStep::DeletingIndex(old.len() as u64));
    for id in &old {
        repo.remove_file(FileType::Index, id)?;
    }
    report.deleted_index_files = old.len() as u64;
    Ok(report)
}

/// Rewrites trees of damaged snapshots; remembers rewritten trees so shared
/// subtrees are handled once.
pub struct SnapshotRepairer<'a> {
    repo: &'a Repository,
    done: HashMap<Id, Option<Id>>,
    /// Messages like restic's (`  file "/p": removed missing content`).
    pub messages: Vec<String>,
}

impl<'a> SnapshotRepairer<'a> {
    /// A repairer for `repo` (index loaded).
    pub fn new(repo: &'a Repository) -> Self {
        SnapshotRepairer {
            repo,
            done: HashMap::new(),
            messages: Vec::new(),
        }
    }

    /// Repair the tree `id` at `path`: returns the new tree ID if something
    /// changed, `None` if it is intact. With `dry_run` nothing is stored.
    pub fn repair_tree(
        &mut self,
        id: &Id,
        path: &str,
        dry_run: bool,
    ) -> Result<Option<Id>, RepairError> {
        if let Some(r) = self.done.get(id) {
            return Ok(*r);
        }
        let mut tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(_) => {
                // Caller replaces the directory with an empty one.
                self.messages
                    .push(format!("  dir {path:?}: replaced with empty directory"));
                let empty = self.store_tree(&Tree::default(), dry_run)?;
                self.done.insert(*id, Some(empty));
                return Ok(Some(empty));
            }
        };
        let mut changed = false;
        for node in &mut tree.nodes {
            let node_path = format!("{}/{}", path.trim_end_matches('/'), node.name_lossy());
            match node.node_type {
                NodeType::File => {
                    let Some(content) = &node.content else {
                        continue;
                    };
                    let mut kept = Vec::with_capacity(content.len());
                    let mut size = 0u64;
                    let mut missing = false;
                    for blob in content {
                        match self.repo.lookup(BlobType::Data, blob) {
                            Some(loc) => {
                                kept.push(*blob);
                                size += u64::from(loc.plaintext_len());
                            }
                            None => missing = true,
                        }
                    }
                    if missing {
                        self.messages
                            .push(format!("  file {node_path:?}: removed missing content"));
                        node.content = Some(kept);
                        node.size = size;
                        changed = true;
                    }
                }
                NodeType::Dir => {
                    let new_subtree = match node.subtree {
                        Some(sub) => self.repair_tree(&sub, &node_path, dry_run)?,
                        None => {
                            self.messages.push(format!(
                                "  dir {node_path:?}: replaced with empty directory"
                            ));
                            Some(self.store_tree(&Tree::default(), dry_run)?)
                        }
                    };
                    if let Some(new) = new_subtree {
                        node.subtree = Some(new);
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        let result = if changed {
            Some(self.store_tree(&tree, dry_run)?)
        } else {
            None
        };
        self.done.insert(*id, result);
        Ok(result)
    }

    fn store_tree(&self, tree: &Tree, dry_run: bool) -> Result<Id, RepairError> {
        let (bytes, id) = tree.encode_with_id().map_err(|e| RepoError::InvalidTree {
            id: Id::NULL,
            reason: e.to_string(),
        })?;
        if !dry_run {
            self.repo.save_blob(BlobType::Tree, bytes, Some(id))?;
        }
        Ok(id)
    }
}
