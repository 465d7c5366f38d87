//! Rewriting snapshots: new trees without some nodes, new metadata, and the
//! replacement of the old snapshot (restic `walker/rewriter.go` and
//! `cmd_rewrite.go`'s `filterAndReplaceSnapshot`, used by `rewrite` and
//! `repair snapshots`).
//!
//! [`TreeRewriter`] walks a tree depth first and hands every node with its
//! path (`/home/u/file`) to a callback that keeps, changes or drops it;
//! folders are rewritten below, and every tree is stored again (unchanged
//! trees have the same ID, so nothing new is written for them). A tree
//! that cannot be loaded goes to a second callback (repair replaces it, a
//! rewrite fails). [`replace_snapshot`] then stores the new snapshot with
//! `original` set and a tag, or removes the old one with `forget`.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # use restix_repo_format::{Id, Snapshot};
//! # fn demo(repo: &Repository, id: Id, snap: Snapshot) -> Result<(), restix_engine::rewrite::RewriteError> {
//! use restix_engine::archiver::ExcludeMatcher;
//! use restix_engine::rewrite::{replace_snapshot, Change, TreeRewriter};
//! let excludes = ExcludeMatcher::new(&["*.log"]);
//! let mut rewriter = TreeRewriter::new(repo)
//!     .keep(move |node, path| (!excludes.is_excluded_by_name(path)).then_some(node))
//!     .count_files();
//! let tree = rewriter.rewrite(b"/", snap.tree.as_ref())?;
//! let change = Change { tag: "rewrite", ..Change::default() };
//! let outcome = replace_snapshot(repo, &id, &snap, tree, None, &change)?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use restix_repo_format::{BlobType, GoTime, Id, Node, NodeType, Snapshot, SnapshotSummary, Tree};

use crate::backend::FileType;
use crate::repository::{RepoError, Repository};

/// Errors of rewriting.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// Repository access failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A tree restix would store with other bytes than it has (restic:
    /// "cannot encode tree ... without losing information").
    #[error("cannot encode tree at {path:?} without losing information")]
    Unstable { path: String },
    /// A tree could not be encoded.
    #[error("encoding tree at {path:?}: {reason}")]
    Encode { path: String, reason: String },
    /// The snapshot has no tree.
    #[error("snapshot {0} has nil tree")]
    NoTree(String),
}

/// What to do with a node: `Some` keeps (a possibly changed) node, `None`
/// drops it.
type NodeFn<'r> = Box<dyn FnMut(Node, &[u8]) -> Option<Node> + 'r>;
/// What to put in place of a tree that failed to load: `Ok(Some(id))` a
/// replacement, `Ok(None)` nothing (only meaningful for the root), `Err`
/// to stop.
type FailedFn<'r> = Box<dyn FnMut(&[u8], RepoError) -> Result<Option<Id>, RewriteError> + 'r>;

/// Depth-first tree rewriting (restic `walker.TreeRewriter`).
pub struct TreeRewriter<'r> {
    repo: &'r Repository,
    node: NodeFn<'r>,
    failed: FailedFn<'r>,
    /// Old tree -> new tree, when the result does not depend on the path.
    cache: Option<HashMap<Id, Option<Id>>>,
    /// Check that every loaded tree encodes to its own ID.
    stable: bool,
    /// Files kept and their bytes, when counting.
    counting: bool,
    pub files: u64,
    pub bytes: u64,
}

impl<'r> TreeRewriter<'r> {
    /// Keeps every node; a tree that cannot be loaded is an error.
    pub fn new(repo: &'r Repository) -> Self {
        TreeRewriter {
            repo,
            node: Box::new(|node, _| Some(node)),
            failed: Box::new(|_, e| Err(RewriteError::Repo(e))),
            cache: Some(HashMap::new()),
            stable: true,
            counting: false,
            files: 0,
            bytes: 0,
        }
    }

    /// The node callback (gets each node with its path).
    pub fn keep(mut self, f: impl FnMut(Node, &[u8]) -> Option<Node> + 'r) -> Self {
        self.node = Box::new(f);
        self
    }

    /// The callback for trees that cannot be loaded (gets the path).
    pub fn on_failed_tree(
        mut self,
        f: impl FnMut(&[u8], RepoError) -> Result<Option<Id>, RewriteError> + 'r,
    ) -> Self {
        self.failed = Box::new(f);
        self
    }

    /// Count kept files and their sizes (restic `NewSnapshotSizeRewriter`);
    /// this also rewrites every tree at every path (no cache), as the node
    /// callback may decide by path.
    pub fn count_files(mut self) -> Self {
        self.counting = true;
        self.cache = None;
        self
    }

    /// Do not check that loaded trees encode to their own ID (repair: a
    /// damaged tree may be stored differently).
    pub fn allow_unstable(mut self) -> Self {
        self.stable = false;
        self
    }

    /// Rewrite the tree `id` found at `path` (`b"/"` for a snapshot's root);
    /// `None` (a folder without subtree) counts as a tree that fails to
    /// load. Returns the new tree ID, or `None` if the failed-tree callback
    /// dropped it.
    pub fn rewrite(&mut self, path: &[u8], id: Option<&Id>) -> Result<Option<Id>, RewriteError> {
        if let (Some(cache), Some(id)) = (&self.cache, id) {
            if let Some(done) = cache.get(id) {
                return Ok(*done);
            }
        }
        let loaded = match id {
            Some(id) => self.repo.load_tree(id),
            None => Err(RepoError::InvalidTree {
                id: Id::NULL,
                reason: "node has no subtree".to_string(),
            }),
        };
        let tree = match loaded {
            Ok(tree) => tree,
            Err(e) => return (self.failed)(path, e),
        };
        let path_text = || String::from_utf8_lossy(path).into_owned();
        if self.stable {
            let (_, encoded) = tree.encode_with_id().map_err(|e| RewriteError::Encode {
                path: path_text(),
                reason: e.to_string(),
            })?;
            if Some(&encoded) != id {
                return Err(RewriteError::Unstable { path: path_text() });
            }
        }
        let mut rewritten = Tree::new();
        for node in tree.nodes {
            let mut child = path.to_vec();
            if !child.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(&node.name);
            let Some(mut node) = (self.node)(node, &child) else {
                continue;
            };
            if self.counting && node.node_type == NodeType::File {
                self.files += 1;
                self.bytes += node.size;
            }
            if node.node_type == NodeType::Dir {
                let subtree = node.subtree;
                node.subtree = self.rewrite(&child, subtree.as_ref())?;
            }
            rewritten.nodes.push(node);
        }
        let (bytes, new_id) = rewritten
            .encode_with_id()
            .map_err(|e| RewriteError::Encode {
                path: path_text(),
                reason: e.to_string(),
            })?;
        self.repo.save_blob(BlobType::Tree, bytes, Some(new_id))?;
        if let (Some(cache), Some(id)) = (&mut self.cache, id) {
            cache.insert(*id, Some(new_id));
        }
        Ok(Some(new_id))
    }
}

/// How the new snapshot differs besides its tree.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// `--new-time`.
    pub time: Option<GoTime>,
    /// `--new-host`.
    pub hostname: Option<String>,
    /// Tag added when the old snapshot is kept (`rewrite`, `repaired`).
    pub tag: &'a str,
    /// Remove the old snapshot (`--forget`).
    pub forget: bool,
    /// Report what would happen, store nothing.
    pub dry_run: bool,
}

/// What [`replace_snapshot`] did (or would do, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tree, summary and metadata are unchanged: nothing to do.
    Unchanged,
    /// The new tree is empty (`None`): the snapshot is removed.
    RemovedEmpty,
    /// A new snapshot (its ID; `None` in a dry run); `removed_old` with
    /// `forget`.
    Saved {
        new_id: Option<Id>,
        removed_old: bool,
    },
}

/// Store `snapshot` (ID `id`) again with the tree `tree` and, if given, the
/// summary `summary` and the metadata of `change` (restic
/// `filterAndReplaceSnapshot`). Flushes the repository first, so the new
/// trees are stored before the snapshot that refers to them.
pub fn replace_snapshot(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    tree: Option<Id>,
    summary: Option<SnapshotSummary>,
    change: &Change<'_>,
) -> Result<Outcome, RewriteError> {
    repo.flush()?;
    let Some(tree) = tree else {
        if !change.dry_run {
            repo.remove_file(FileType::Snapshot, id)?;
        }
        return Ok(Outcome::RemovedEmpty);
    };
    let matching_summary = match &summary {
        Some(new) => snapshot.summary.as_ref() == Some(new),
        None => true,
    };
    let new_metadata = change.time.is_some() || change.hostname.is_some();
    if snapshot.tree == Some(tree) && !new_metadata && matching_summary {
        return Ok(Outcome::Unchanged);
    }
    if change.dry_run {
        return Ok(Outcome::Saved {
            new_id: None,
            removed_old: change.forget,
        });
    }
    let mut new = snapshot.clone();
    new.original = Some(*id);
    new.tree = Some(tree);
    if let Some(summary) = summary {
        new.summary = Some(summary);
    }
    if !change.forget && !new.tags.iter().any(|t| t == change.tag) {
        new.tags.push(change.tag.to_string());
    }
    if let Some(time) = change.time {
        new.time = time;
    }
    if let Some(host) = &change.hostname {
        new.hostname = host.clone();
    }
    let new_id = repo.save_snapshot(&new)?;
    if change.forget {
        repo.remove_file(FileType::Snapshot, id)?;
    }
    Ok(Outcome::Saved {
        new_id: Some(new_id),
        removed_old: change.forget,
    })
}

/// The summary a rewrite stores: the old one (or an empty one) with the
/// counted files and bytes (restic: only `TotalFilesProcessed` and
/// `TotalBytesProcessed` change).
pub fn rewritten_summary(old: Option<&SnapshotSummary>, files: u64, bytes: u64) -> SnapshotSummary {
    let mut summary = old.cloned().unwrap_or_default();
    summary.total_files_processed = files;
    summary.total_bytes_processed = bytes;
    summary
}
