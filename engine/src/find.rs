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

use crate::repository::{RepoError, Repository};

fn split(p: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = p.split('/').collect();
    if p.starts_with('/') {
        if let Some(first) = parts.first_mut() {
            *first = "/";
        }
    }
    parts
}

/// True if `path` (absolute, `/`-separated) matches `pattern` like restic's
/// `filter.Match`.
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let pattern = crate::go_path::clean(pattern);
    let parts = split(&pattern);
    let strs = split(path);
    match_parts(&parts, &strs)
}

fn match_parts(pattern: &[&str], strs: &[&str]) -> bool {
    if let Some(pos) = pattern.iter().position(|p| *p == "**") {
        // Expand `**` into 0..n single-component wildcards.
        let max_extra = (strs.len() + 1).saturating_sub(pattern.len());
        for i in 0..=max_extra {
            let mut expanded: Vec<&str> = pattern.get(..pos).unwrap_or(&[]).to_vec();
            expanded.resize(pos + i, "*");
            expanded.extend_from_slice(pattern.get(pos + 1..).unwrap_or(&[]));
            if match_parts(&expanded, strs) {
                return true;
            }
        }
        return false;
    }
    if pattern.is_empty() {
        return strs.is_empty();
    }
    if pattern.len() > strs.len() {
        return false;
    }
    let mut min_offset = 0;
    let mut max_offset = strs.len() - pattern.len();
    if pattern.first() == Some(&"/") {
        max_offset = 0;
    } else if strs.first() == Some(&"/") {
        min_offset = 1;
    }
    (min_offset..=max_offset).rev().any(|offset| {
        pattern.iter().enumerate().all(|(i, p)| {
            strs.get(offset + i)
                .is_some_and(|s| glob_match(p.as_bytes(), s.as_bytes()))
        })
    })
}

/// Go's `filepath.Match` for one component: one implementation for
/// excludes, restore filters and find.
pub use crate::archiver::exclude::glob_match;

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
        assert!(pattern_matches("*.txt", "/data/a.txt"));
        assert!(pattern_matches("data", "/data/a.txt"));
        assert!(pattern_matches("data/*.txt", "/x/data/a.txt"));
        assert!(pattern_matches("/data", "/data"));
        assert!(!pattern_matches("/a.txt", "/data/a.txt"));
        assert!(pattern_matches("/data/**/x", "/data/x"));
        assert!(pattern_matches("/data/**/x", "/data/a/b/x"));
        assert!(pattern_matches("**/x", "/q/x"));
        assert!(pattern_matches("a?c", "/abc"));
        assert!(pattern_matches("[a-c]x", "/bx"));
        assert!(!pattern_matches("[^a-c]x", "/bx"));
        assert!(pattern_matches("\\*", "/*"));
        assert!(!pattern_matches("\\*", "/a"));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_match(b"*a*b", b"xxaxxbxx"));
    }
}
