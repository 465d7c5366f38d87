//! repair: rebuild the index from pack headers; rewrite snapshots with missing data.
//!
//! [`repair_index`] (spec: cli §10.18) keeps the entries of packs whose size
//! matches what the old index says (unless `read_all_packs`), reads the
//! header of every other pack in `data/`, drops packs that no longer exist,
//! writes a fresh index and only then deletes the old index files.
//!
//! [`repair_packs`] (restic `repair packs`) copies every blob of the given
//! pack files that still decrypts and verifies into new packs, writes an
//! index without the damaged packs and then deletes them.
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
use crate::prune::{write_index, PruneError, RepackWriter};
use crate::repository::{decode_blob, RepoError, Repository};
use restix_repo_format::pack::PackBlob;

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

/// Progress and findings of [`repair_packs`], in restic's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairPacksEvent {
    /// Salvaging starts for this many pack files.
    Salvaging(u64),
    /// The index lists no blobs for this pack.
    NoBlobs(Id),
    /// This blob could not be read or verified (left behind).
    BlobFailed { blob: Id, reason: String },
    /// One pack file is done.
    PackDone,
    /// The index is rewritten without the salvaged packs.
    RebuildingIndex,
    /// The salvaged pack files are deleted (this many).
    RemovingPacks(u64),
}

/// What [`repair_packs`] did.
#[derive(Debug, Default)]
pub struct RepairPacksReport {
    /// Blobs copied into new packs.
    pub salvaged: u64,
    /// Blobs that could not be read.
    pub lost: Vec<Id>,
    /// New pack files.
    pub new_packs: Vec<Id>,
}

/// Salvage the readable blobs of `packs` (restic `repair packs`): blobs as
/// the index lists them are read, verified (MAC, decompression, hash) and
/// copied into new packs; then the index is written without `packs` (with
/// the new packs) and `packs` are deleted. A pack that cannot be read at
/// once is read blob by blob, so a truncated file yields what is left.
pub fn repair_packs(
    repo: &Repository,
    packs: &[Id],
    progress: &mut dyn FnMut(RepairPacksEvent),
) -> Result<RepairPacksReport, RepairError> {
    let mut report = RepairPacksReport::default();
    let scan = scan_index(repo);
    let damaged: std::collections::HashSet<Id> = packs.iter().copied().collect();
    progress(RepairPacksEvent::Salvaging(packs.len() as u64));
    let writer = RepackWriter::new(repo);
    for pack_id in packs {
        let mut blobs: Vec<PackBlob> = scan.packs.get(pack_id).cloned().unwrap_or_default();
        if blobs.is_empty() {
            progress(RepairPacksEvent::NoBlobs(*pack_id));
            progress(RepairPacksEvent::PackDone);
            continue;
        }
        blobs.sort_by_key(|b| b.offset);
        let name = pack_id.to_hex();
        let (Some(first), Some(last)) = (blobs.first(), blobs.last()) else {
            continue;
        };
        let start = first.offset;
        let end = last.offset.saturating_add(u64::from(last.length));
        let whole = repo
            .backend()
            .read_range(FileType::Pack, &name, start, end.saturating_sub(start))
            .ok();
        let mut done: std::collections::HashSet<(BlobType, Id)> = Default::default();
        for blob in &blobs {
            if !done.insert((blob.blob_type, blob.id)) {
                continue;
            }
            let ciphertext = match &whole {
                Some(data) => {
                    let from = usize::try_from(blob.offset - start).unwrap_or(usize::MAX);
                    data.get(from..from.saturating_add(blob.length as usize))
                        .map(<[u8]>::to_vec)
                        .ok_or_else(|| "blob outside the pack".to_string())
                }
                None => repo
                    .backend()
                    .read_range(FileType::Pack, &name, blob.offset, u64::from(blob.length))
                    .map_err(|e| e.to_string())
                    .and_then(|data| {
                        if data.len() == blob.length as usize {
                            Ok(data)
                        } else {
                            Err("unexpected EOF".to_string())
                        }
                    }),
            };
            let verified = ciphertext.and_then(|ct| {
                decode_blob(repo.key(), &blob.id, &ct, blob.uncompressed_length)
                    .map(|_| ct)
                    .map_err(|e| e.to_string())
            });
            match verified {
                Ok(ct) => {
                    writer.add(blob, &ct)?;
                    report.salvaged += 1;
                }
                Err(reason) => {
                    report.lost.push(blob.id);
                    progress(RepairPacksEvent::BlobFailed {
                        blob: blob.id,
                        reason,
                    });
                }
            }
        }
        progress(RepairPacksEvent::PackDone);
    }
    let new_packs = writer.finish()?;
    report.new_packs = new_packs.iter().map(|(id, _)| *id).collect();

    progress(RepairPacksEvent::RebuildingIndex);
    let mut index_packs: Vec<IndexPack> = Vec::new();
    let mut kept: Vec<&Id> = scan
        .packs
        .keys()
        .filter(|id| !damaged.contains(id))
        .collect();
    kept.sort();
    for id in kept {
        let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
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
    let written = write_index(repo, index_packs)?;
    for id in repo.list_files(FileType::Index)? {
        if !written.contains(&id) {
            repo.remove_file(FileType::Index, &id)?;
        }
    }
    progress(RepairPacksEvent::RemovingPacks(packs.len() as u64));
    for id in packs {
        // A pack that cannot be deleted now is left to prune (restic too).
        let _ = repo.remove_file(FileType::Pack, id);
    }
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
