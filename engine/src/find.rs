//! find: search snapshots for files by name pattern, or for blob/tree/pack IDs.
//!
//! Patterns follow restic's `filter.Match` (spec: cli §10.14): the pattern
//! and the path are split at `/`; a pattern starting with `/` must match
//! from the root, any other pattern matches any run of consecutive path
//! components; `**` matches any number of components and each component is
//! a shell glob (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes).
//!
//! ```
//! use restix_engine::find::pattern_matches;
//! assert!(pattern_matches("*.txt", "/data/a.txt"));
//! assert!(pattern_matches("/data/**/x", "/data/a/b/x"));
//! assert!(!pattern_matches("/a.txt", "/data/a.txt"));
//! ```

use restix_repo_format::{Id, Node, NodeType};

use crate::path_pattern::{components, PathPattern};
use crate::repository::{RepoError, Repository};

/// True if `path` (absolute, `/`-separated) matches `pattern` like restic's
/// `filter.Match` (the pattern cleaned like Go's `path.Clean` first; an
/// empty pattern matches everything).
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    PathPattern::parse(&crate::go_path::clean(pattern)).matches(&components(path.as_bytes()))
}

/// Go's `filepath.Match` for one component (see [`crate::path_pattern`]).
pub use crate::path_pattern::glob_match;

/// What to look for.
#[derive(Debug, Clone)]
pub enum FindTarget {
    /// Paths matching any of these patterns.
    Patterns {
        /// The patterns.
        patterns: Vec<String>,
        /// Compare lower-cased.
        ignore_case: bool,
    },
    /// Files containing one of these data blobs (hex prefixes allowed).
    Blobs(Vec<String>),
    /// Directories whose subtree is one of these trees (hex prefixes).
    Trees(Vec<String>),
}

/// One hit.
#[derive(Debug, Clone)]
pub struct FindHit {
    /// Absolute path in the snapshot.
    pub path: String,
    /// The node.
    pub node: Node,
    /// The matched blob or tree ID (ID modes).
    pub object: Option<Id>,
    /// The tree containing the node.
    pub parent_tree: Id,
}

/// Walk `root` and report every node that matches `target`. The index
/// must be loaded.
pub fn find_in_tree(
    repo: &Repository,
    root: &Id,
    target: &FindTarget,
    hits: &mut Vec<FindHit>,
) -> Result<(), RepoError> {
    let mut stack: Vec<(Id, String)> = vec![(*root, String::new())];
    while let Some((tree_id, prefix)) = stack.pop() {
        let tree = repo.load_tree(&tree_id)?;
        // Pre-order: children of this tree are pushed in reverse so that
        // the walk visits them in name order.
        let mut subdirs = Vec::new();
        for node in &tree.nodes {
            let path = format!("{prefix}/{}", node.name_lossy());
            match target {
                FindTarget::Patterns {
                    patterns,
                    ignore_case,
                } => {
                    let subject = if *ignore_case {
                        path.to_lowercase()
                    } else {
                        path.clone()
                    };
                    let hit = patterns.iter().any(|p| {
                        let p = if *ignore_case {
                            p.to_lowercase()
                        } else {
                            p.clone()
                        };
                        pattern_matches(&p, &subject)
                    });
                    if hit {
                        hits.push(FindHit {
                            path: path.clone(),
                            node: node.clone(),
                            object: None,
                            parent_tree: tree_id,
                        });
                    }
                }
                FindTarget::Blobs(ids) => {
                    for b in node.content.iter().flatten() {
                        let hex = b.to_hex();
                        if ids.iter().any(|p| hex.starts_with(p.as_str())) {
                            hits.push(FindHit {
                                path: path.clone(),
                                node: node.clone(),
                                object: Some(*b),
                                parent_tree: tree_id,
                            });
                        }
                    }
                }
                FindTarget::Trees(ids) => {
                    if let Some(sub) = node.subtree {
                        let hex = sub.to_hex();
                        if ids.iter().any(|p| hex.starts_with(p.as_str())) {
                            hits.push(FindHit {
                                path: path.clone(),
                                node: node.clone(),
                                object: Some(sub),
                                parent_tree: tree_id,
                            });
                        }
                    }
                }
            }
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                subdirs.push((sub, path));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_filter_semantics() {
        // The matching itself is `path_pattern`'s (tested there); find adds
        // the empty pattern and Go's path.Clean of the pattern.
        assert!(pattern_matches("", "/anything"));
        assert!(pattern_matches("data/*.txt", "/x/data/a.txt"));
        assert!(!pattern_matches("/a.txt", "/data/a.txt"));
        // Cleaned like path.Clean: `..` and `.` resolve before matching.
        assert!(pattern_matches("/x/../data/./a.txt", "/data/a.txt"));
    }
}
