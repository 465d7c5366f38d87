//! diff: what changed between two snapshots.
//!
//! Follows restic's `diff` (spec: cli §10.15): both trees are walked side
//! by side in name order; each change is reported with a modifier (`+`,
//! `-`, `M` content changed, `T` type changed, `U` metadata changed with
//! `--metadata`, `?` content changed but metadata equal); added and removed
//! subtrees are listed entry by entry. Blob statistics count blobs only in
//! the first or only in the second snapshot.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # use restix_repo_format::Id;
//! # fn demo(repo: &Repository, a: Id, b: Id) -> Result<(), restix_engine::repository::RepoError> {
//! use restix_engine::diff::diff_trees;
//! let result = diff_trees(repo, &a, &b, false, &mut |path, modifier| println!("{modifier:<5}{path}"))?;
//! println!("{} files changed", result.changed_files);
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashSet};

use restix_repo_format::{BlobType, Id, Node, NodeType};

use crate::repository::{RepoError, Repository};

/// Counts for one side (`added` or `removed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStat {
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other nodes (symlinks, devices, ...).
    pub others: u64,
    /// Data blobs.
    pub data_blobs: u64,
    /// Tree blobs.
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub bytes: u64,
}

impl DiffStat {
    fn add_node(&mut self, node: &Node) {
        match node.node_type {
            NodeType::File => self.files += 1,
            NodeType::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// The outcome of [`diff_trees`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffResult {
    /// Files whose content changed.
    pub changed_files: u64,
    /// What the second snapshot adds.
    pub added: DiffStat,
    /// What it removes.
    pub removed: DiffStat,
}

type BlobSet = HashSet<(BlobType, Id)>;

struct Differ<'a, F: FnMut(&str, &str)> {
    repo: &'a Repository,
    metadata: bool,
    emit: F,
    result: DiffResult,
    before: BlobSet,
    after: BlobSet,
    common: BlobSet,
}

fn add_blobs(set: &mut BlobSet, node: &Node) {
    match node.node_type {
        NodeType::File => {
            for b in node.content.iter().flatten() {
                set.insert((BlobType::Data, *b));
            }
        }
        NodeType::Dir => {
            if let Some(t) = node.subtree {
                set.insert((BlobType::Tree, t));
            }
        }
        _ => {}
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.ends_with('/') {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}/{name}")
    }
}

impl<F: FnMut(&str, &str)> Differ<'_, F> {
    fn list_dir(
        &mut self,
        modifier: &str,
        added: bool,
        prefix: &str,
        id: &Id,
    ) -> Result<(), RepoError> {
        let tree = self.repo.load_tree(id)?;
        for node in &tree.nodes {
            let mut name = join(prefix, &node.name_lossy());
            if node.node_type == NodeType::Dir {
                name.push('/');
            }
            (self.emit)(&name, modifier);
            if added {
                self.result.added.add_node(node);
                add_blobs(&mut self.after, node);
            } else {
                self.result.removed.add_node(node);
                add_blobs(&mut self.before, node);
            }
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                self.list_dir(modifier, added, &name, &sub)?;
            }
        }
        Ok(())
    }

    fn collect(&mut self, which: u8, id: &Id) -> Result<(), RepoError> {
        let tree = self.repo.load_tree(id)?;
        for node in &tree.nodes {
            let set = match which {
                0 => &mut self.before,
                1 => &mut self.after,
                _ => &mut self.common,
            };
            add_blobs(set, node);
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                self.collect(which, &sub)?;
            }
        }
        Ok(())
    }

    fn diff(&mut self, prefix: &str, id1: &Id, id2: &Id) -> Result<(), RepoError> {
        let t1 = self.repo.load_tree(id1)?;
        let t2 = self.repo.load_tree(id2)?;
        let names: BTreeSet<&[u8]> = t1
            .nodes
            .iter()
            .chain(&t2.nodes)
            .map(|n| n.name.as_slice())
            .collect();
        for name in names {
            let n1 = t1.find(name);
            let n2 = t2.find(name);
            if let Some(n) = n1 {
                add_blobs(&mut self.before, n);
            }
            if let Some(n) = n2 {
                add_blobs(&mut self.after, n);
            }
            let text = String::from_utf8_lossy(name);
            match (n1, n2) {
                (Some(a), Some(b)) => {
                    let mut path = join(prefix, &text);
                    let mut modifier = String::new();
                    if a.node_type != b.node_type {
                        modifier.push('T');
                    }
                    if b.node_type == NodeType::Dir {
                        path.push('/');
                    }
                    if a.node_type == NodeType::File
                        && b.node_type == NodeType::File
                        && a.content != b.content
                    {
                        modifier.push('M');
                        self.result.changed_files += 1;
                        let mut a0 = a.clone();
                        let mut b0 = b.clone();
                        a0.content = None;
                        b0.content = None;
                        if a0 == b0 {
                            // Content changed, metadata not: probable bit rot.
                            modifier.push('?');
                        }
                    } else if self.metadata && a != b {
                        modifier.push('U');
                    }
                    if !modifier.is_empty() {
                        (self.emit)(&path, &modifier);
                    }
                    match (a.node_type, b.node_type, a.subtree, b.subtree) {
                        (NodeType::Dir, NodeType::Dir, Some(s1), Some(s2)) => {
                            if s1 == s2 {
                                self.collect(2, &s1)?;
                            } else {
                                self.diff(&path, &s1, &s2)?;
                            }
                        }
                        (NodeType::Dir, _, Some(s1), _) => self.collect(0, &s1)?,
                        (_, NodeType::Dir, _, Some(s2)) => self.collect(1, &s2)?,
                        _ => {}
                    }
                }
                (Some(a), None) => {
                    let mut path = join(prefix, &text);
                    if a.node_type == NodeType::Dir {
                        path.push('/');
                    }
                    (self.emit)(&path, "-");
                    self.result.removed.add_node(a);
                    if let (NodeType::Dir, Some(sub)) = (a.node_type, a.subtree) {
                        self.list_dir("-", false, &path, &sub)?;
                    }
                }
                (None, Some(b)) => {
                    let mut path = join(prefix, &text);
                    if b.node_type == NodeType::Dir {
                        path.push('/');
                    }
                    (self.emit)(&path, "+");
                    self.result.added.add_node(b);
                    if let (NodeType::Dir, Some(sub)) = (b.node_type, b.subtree) {
                        self.list_dir("+", true, &path, &sub)?;
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }
}

/// Compare the trees `tree1` and `tree2` (index loaded); `emit(path,
/// modifier)` is called for every change in restic's order.
pub fn diff_trees(
    repo: &Repository,
    tree1: &Id,
    tree2: &Id,
    metadata: bool,
    emit: &mut dyn FnMut(&str, &str),
) -> Result<DiffResult, RepoError> {
    let mut d = Differ {
        repo,
        metadata,
        emit: |p: &str, m: &str| emit(p, m),
        result: DiffResult::default(),
        before: BlobSet::new(),
        after: BlobSet::new(),
        common: BlobSet::new(),
    };
    d.before.insert((BlobType::Tree, *tree1));
    d.after.insert((BlobType::Tree, *tree2));
    d.diff("/", tree1, tree2)?;
    let size = |t: BlobType, id: &Id| {
        repo.lookup(t, id)
            .map(|l| u64::from(l.plaintext_len()))
            .unwrap_or(0)
    };
    let mut result = d.result;
    for h in d
        .before
        .iter()
        .filter(|h| !d.after.contains(h) && !d.common.contains(h))
    {
        match h.0 {
            BlobType::Data => result.removed.data_blobs += 1,
            BlobType::Tree => result.removed.tree_blobs += 1,
        }
        result.removed.bytes += size(h.0, &h.1);
    }
    for h in d
        .after
        .iter()
        .filter(|h| !d.before.contains(h) && !d.common.contains(h))
    {
        match h.0 {
            BlobType::Data => result.added.data_blobs += 1,
            BlobType::Tree => result.added.tree_blobs += 1,
        }
        result.added.bytes += size(h.0, &h.1);
    }
    Ok(result)
}
