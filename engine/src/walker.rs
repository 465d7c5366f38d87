//! Tree walking: visit every node of a snapshot (ls, find, restore, dump).
//!
//! The walk is depth-first pre-order, entries in tree order (sorted by raw
//! name bytes), the order `restic ls` prints (spec: cli.md §10.11). Paths are
//! raw bytes, absolute inside the snapshot (`/dir/file`).
//!
//! Repositories can be hostile: every tree's names are checked before any of
//! its nodes is visited (no empty names, `.`, `..`, `/` or NUL, no
//! duplicates), a directory whose subtree is one of its own ancestors is an
//! error, and so is a tree deeper than [`MAX_DEPTH`]. So a path produced here
//! never escapes the root it is joined to.
//!
//! ```no_run
//! # use restix_engine::walker::{walk, WalkAction};
//! # fn demo(repo: &restix_engine::repository::Repository, root: &restix_repo_format::Id) {
//! walk(repo, root, |entry| {
//!     println!("{}", String::from_utf8_lossy(entry.path));
//!     Ok(WalkAction::Continue)
//! })
//! .unwrap();
//! # }
//! ```

use restix_repo_format::{GoTime, Id, Node, NodeType, Tree};

use crate::repository::Repository;

/// Deepest directory nesting accepted (Linux paths are at most 4096 bytes, so
/// a real tree cannot nest deeper than 2048 levels).
pub const MAX_DEPTH: usize = 2048;

/// What the visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkAction {
    /// Go on; descend into this node if it is a directory.
    Continue,
    /// Do not descend into this directory (no effect on other nodes).
    SkipChildren,
    /// End the walk now (successfully).
    Stop,
}

/// One visited node.
#[derive(Debug)]
pub struct WalkEntry<'a> {
    /// Absolute path inside the walked tree, raw bytes: `/a/b`.
    pub path: &'a [u8],
    /// The node itself.
    pub node: &'a Node,
    /// 0 for the root tree's entries.
    pub depth: usize,
}

/// Errors of a walk.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A tree could not be loaded (missing, corrupt, undecodable).
    #[error("loading tree {tree} for {path}: {source}")]
    Load {
        tree: String,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A node name that could escape its directory or is not a file name.
    #[error("invalid node name {name:?} in {dir}")]
    InvalidName { dir: String, name: String },
    /// Two nodes of one tree have the same name.
    #[error("duplicate node name {name:?} in {dir}")]
    DuplicateName { dir: String, name: String },
    /// A directory node without a subtree.
    #[error("directory {path} has no subtree")]
    MissingSubtree { path: String },
    /// A directory that contains itself (hostile or broken repository).
    #[error("tree {tree} at {path} references one of its parents (cycle)")]
    Cycle { tree: String, path: String },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("tree nesting deeper than {MAX_DEPTH} levels at {path}")]
    TooDeep { path: String },
    /// A path looked up in the tree does not exist.
    #[error("path {path:?} not found in snapshot")]
    NotFound { path: String },
    /// A path component that is not a directory.
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    /// The visitor failed.
    #[error("{0}")]
    Visitor(Box<dyn std::error::Error + Send + Sync>),
}

/// Path bytes for messages.
pub(crate) fn display_path(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// Reject names that are not a single safe path component.
pub fn check_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// Check every name of a tree (valid, unique) before any node is used.
pub fn check_tree_names(tree: &Tree, dir: &[u8]) -> Result<(), WalkError> {
    let mut names: Vec<&[u8]> = Vec::with_capacity(tree.nodes.len());
    for node in &tree.nodes {
        if !check_name(&node.name) {
            return Err(WalkError::InvalidName {
                dir: display_path(dir),
                name: String::from_utf8_lossy(&node.name).into_owned(),
            });
        }
        names.push(&node.name);
    }
    names.sort_unstable();
    for pair in names.windows(2) {
        if let [a, b] = pair {
            if a == b {
                return Err(WalkError::DuplicateName {
                    dir: display_path(dir),
                    name: String::from_utf8_lossy(a).into_owned(),
                });
            }
        }
    }
    Ok(())
}

struct Frame {
    tree: Id,
    nodes: Vec<Node>,
    next: usize,
    path_len: usize,
}

/// Walk the tree `root` of `repo`, calling `visit` for every node in
/// pre-order. Each tree is loaded once per place it occurs.
pub fn walk<F>(repo: &Repository, root: &Id, visit: F) -> Result<(), WalkError>
where
    F: FnMut(&WalkEntry<'_>) -> Result<WalkAction, WalkError>,
{
    walk_with_loader(|id| repo.load_tree(id), root, visit)
}

/// [`walk`] with any tree source (used by tests and by callers with a cache).
pub fn walk_with_loader<L, E, F>(load: L, root: &Id, visit: F) -> Result<(), WalkError>
where
    L: FnMut(&Id) -> Result<Tree, E>,
    E: std::error::Error + Send + Sync + 'static,
    F: FnMut(&WalkEntry<'_>) -> Result<WalkAction, WalkError>,
{
    walk_impl(load, root, visit, None)
}

/// Like [`walk`], but a subtree that cannot be walked (missing, corrupt,
/// hostile names, cycle, too deep) is passed to `on_error` with the
/// directory's path and skipped when it returns `Ok` (restic's "ignoring
/// error for …"). The root tree's errors are returned.
pub fn walk_lenient<F, H>(
    repo: &Repository,
    root: &Id,
    visit: F,
    mut on_error: H,
) -> Result<(), WalkError>
where
    F: FnMut(&WalkEntry<'_>) -> Result<WalkAction, WalkError>,
    H: FnMut(&[u8], WalkError) -> Result<(), WalkError>,
{
    walk_impl(|id| repo.load_tree(id), root, visit, Some(&mut on_error))
}

type ErrorHandler<'a> = &'a mut dyn FnMut(&[u8], WalkError) -> Result<(), WalkError>;

fn walk_impl<L, E, F>(
    mut load: L,
    root: &Id,
    mut visit: F,
    mut on_error: Option<ErrorHandler<'_>>,
) -> Result<(), WalkError>
where
    L: FnMut(&Id) -> Result<Tree, E>,
    E: std::error::Error + Send + Sync + 'static,
    F: FnMut(&WalkEntry<'_>) -> Result<WalkAction, WalkError>,
{
    let mut path: Vec<u8> = Vec::new();
    let root_tree = load_checked(&mut load, root, &path)?;
    let mut stack = vec![Frame {
        tree: *root,
        nodes: root_tree.nodes,
        next: 0,
        path_len: 0,
    }];
    loop {
        let depth = stack.len().saturating_sub(1);
        let Some(frame) = stack.last_mut() else {
            return Ok(());
        };
        let Some(node) = frame.nodes.get(frame.next) else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        path.truncate(frame.path_len);
        path.push(b'/');
        path.extend_from_slice(&node.name);
        let action = visit(&WalkEntry {
            path: &path,
            node,
            depth,
        })?;
        match action {
            WalkAction::Stop => return Ok(()),
            WalkAction::SkipChildren => continue,
            WalkAction::Continue => {}
        }
        if node.node_type != NodeType::Dir {
            continue;
        }
        let subtree = node.subtree;
        match descend(&mut load, &stack, subtree, &path) {
            Ok((id, tree)) => stack.push(Frame {
                tree: id,
                nodes: tree.nodes,
                next: 0,
                path_len: path.len(),
            }),
            Err(e) => match on_error.as_mut() {
                Some(handler) => handler(&path, e)?,
                None => return Err(e),
            },
        }
    }
}

/// Checks and loads the subtree of the directory at `path`.
fn descend<L, E>(
    load: &mut L,
    stack: &[Frame],
    subtree: Option<Id>,
    path: &[u8],
) -> Result<(Id, Tree), WalkError>
where
    L: FnMut(&Id) -> Result<Tree, E>,
    E: std::error::Error + Send + Sync + 'static,
{
    let subtree = subtree.ok_or_else(|| WalkError::MissingSubtree {
        path: display_path(path),
    })?;
    if stack.iter().any(|f| f.tree == subtree) {
        return Err(WalkError::Cycle {
            tree: subtree.to_hex(),
            path: display_path(path),
        });
    }
    if stack.len() >= MAX_DEPTH {
        return Err(WalkError::TooDeep {
            path: display_path(path),
        });
    }
    Ok((subtree, load_checked(load, &subtree, path)?))
}

fn load_checked<L, E>(load: &mut L, id: &Id, path: &[u8]) -> Result<Tree, WalkError>
where
    L: FnMut(&Id) -> Result<Tree, E>,
    E: std::error::Error + Send + Sync + 'static,
{
    let tree = load(id).map_err(|e| WalkError::Load {
        tree: id.to_hex(),
        path: display_path(path),
        source: Box::new(e),
    })?;
    check_tree_names(&tree, path)?;
    Ok(tree)
}

/// Split a snapshot path (`/a/b`, `a/b/`, `/`) into checked components.
pub fn split_snapshot_path(path: &[u8]) -> Result<Vec<&[u8]>, WalkError> {
    let mut out = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." || comp.contains(&0) {
            return Err(WalkError::InvalidName {
                dir: display_path(path),
                name: String::from_utf8_lossy(comp).into_owned(),
            });
        }
        out.push(comp);
    }
    Ok(out)
}

/// What a path inside a snapshot names.
#[derive(Debug, Clone)]
pub enum ResolvedPath {
    /// The root itself (`/` or empty): the tree given.
    Root(Id),
    /// A node below the root (`node.subtree` is the tree for directories).
    Node(Box<Node>),
}

/// Resolve `path` (absolute or relative to `root`) through the trees.
pub fn resolve_path(repo: &Repository, root: &Id, path: &[u8]) -> Result<ResolvedPath, WalkError> {
    resolve_path_with_loader(|id| repo.load_tree(id), root, path)
}

/// [`resolve_path`] with any tree source.
pub fn resolve_path_with_loader<L, E>(
    mut load: L,
    root: &Id,
    path: &[u8],
) -> Result<ResolvedPath, WalkError>
where
    L: FnMut(&Id) -> Result<Tree, E>,
    E: std::error::Error + Send + Sync + 'static,
{
    let comps = split_snapshot_path(path)?;
    let mut current = *root;
    let mut walked: Vec<u8> = Vec::new();
    let mut found: Option<Node> = None;
    for comp in comps {
        if let Some(node) = &found {
            current = match (node.node_type == NodeType::Dir, node.subtree) {
                (true, Some(id)) => id,
                (true, None) => {
                    return Err(WalkError::MissingSubtree {
                        path: display_path(&walked),
                    })
                }
                (false, _) => {
                    return Err(WalkError::NotADirectory {
                        path: display_path(&walked),
                    })
                }
            };
        }
        let tree = load_checked(&mut load, &current, &walked)?;
        walked.push(b'/');
        walked.extend_from_slice(comp);
        let node = tree
            .nodes
            .into_iter()
            .find(|n| n.name == comp)
            .ok_or_else(|| WalkError::NotFound {
                path: display_path(&walked),
            })?;
        found = Some(node);
    }
    Ok(match found {
        None => ResolvedPath::Root(current),
        Some(node) => ResolvedPath::Node(Box::new(node)),
    })
}

/// Resolve a `snapshot:subfolder` subfolder to the tree that becomes the root.
pub fn resolve_subfolder(repo: &Repository, root: &Id, subfolder: &[u8]) -> Result<Id, WalkError> {
    match resolve_path(repo, root, subfolder)? {
        ResolvedPath::Root(id) => Ok(id),
        ResolvedPath::Node(node) => match (node.node_type == NodeType::Dir, node.subtree) {
            (true, Some(id)) => Ok(id),
            (true, None) => Err(WalkError::MissingSubtree {
                path: display_path(subfolder),
            }),
            (false, _) => Err(WalkError::NotADirectory {
                path: display_path(subfolder),
            }),
        },
    }
}

/// The formatting-neutral data of one `restic ls` line (spec: cli.md §10.11,
/// §11.4). The CLI renders text, `-l` and `--json` from it.
#[derive(Debug, Clone, PartialEq)]
pub struct LsNode {
    /// Base name (raw bytes).
    pub name: Vec<u8>,
    /// `file`, `dir`, ... as in the tree.
    pub node_type: NodeType,
    /// Absolute path inside the snapshot (raw bytes).
    pub path: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// Size: `Some` exactly for files (JSON prints it only then, even 0).
    pub size: Option<u64>,
    /// Go `os.FileMode` bits as stored (JSON `mode`, omitempty).
    pub mode: u32,
    /// `mode` as Go's `FileMode.String()` (JSON `permissions`, `-l`).
    pub permissions: String,
    pub mtime: GoTime,
    pub atime: GoTime,
    pub ctime: GoTime,
    /// st_ino (JSON `inode`, omitempty, 0.16.1+).
    pub inode: u64,
    /// Symlink target for `-l` (` -> target`), raw bytes.
    pub link_target: Option<Vec<u8>>,
}

impl LsNode {
    /// Build the ls data of `node` found at `path`.
    pub fn new(path: &[u8], node: &Node) -> LsNode {
        LsNode {
            name: node.name.clone(),
            node_type: node.node_type,
            path: path.to_vec(),
            uid: node.uid,
            gid: node.gid,
            size: (node.node_type == NodeType::File).then_some(node.size),
            mode: node.mode,
            permissions: go_file_mode_string(node.mode),
            mtime: node.mtime,
            atime: node.atime,
            ctime: node.ctime,
            inode: node.inode,
            link_target: (node.node_type == NodeType::Symlink).then(|| node.linktarget.clone()),
        }
    }
}

/// Go's `os.FileMode.String()`: type letters (or `-`) then `rwxrwxrwx`
/// (spec: cli.md §1.5).
pub fn go_file_mode_string(mode: u32) -> String {
    const LETTERS: &[u8] = b"dalTLDpSugct?";
    let mut out = String::with_capacity(16);
    for (i, &c) in LETTERS.iter().enumerate() {
        if mode & (1u32 << (31 - i)) != 0 {
            out.push(char::from(c));
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    const RWX: &[u8] = b"rwxrwxrwx";
    for (i, &c) in RWX.iter().enumerate() {
        if mode & (1u32 << (8 - i)) != 0 {
            out.push(char::from(c));
        } else {
            out.push('-');
        }
    }
    out
}

/// `restic ls` directory filters (spec: cli.md §10.11): with dirs given,
/// nodes inside one of them are printed, the walk descends towards them, and
/// only with `recursive` below their direct children.
#[derive(Debug, Clone, Default)]
pub struct LsFilter {
    /// Absolute directories inside the snapshot (empty: everything).
    pub dirs: Vec<Vec<u8>>,
    /// `--recursive`.
    pub recursive: bool,
}

/// `p` equals `base` or lies below it (component-wise).
fn has_path_prefix(base: &[u8], p: &[u8]) -> bool {
    let base_c: Vec<&[u8]> = base
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let p_c: Vec<&[u8]> = p.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    base_c.len() <= p_c.len() && base_c.iter().zip(&p_c).all(|(a, b)| a == b)
}

impl LsFilter {
    /// Whether to print the node at `path`, and how the walk continues.
    pub fn decide(&self, path: &[u8], is_dir: bool) -> (bool, WalkAction) {
        if self.dirs.is_empty() {
            return (true, WalkAction::Continue);
        }
        let within = self.dirs.iter().any(|d| has_path_prefix(d, path));
        if within && self.recursive {
            return (true, WalkAction::Continue);
        }
        let approaching = self.dirs.iter().any(|d| has_path_prefix(path, d));
        let action = if approaching || !is_dir {
            WalkAction::Continue
        } else {
            WalkAction::SkipChildren
        };
        (within, action)
    }
}

/// Walk `root` and collect the `ls` entries selected by `filter`.
pub fn ls(
    repo: &Repository,
    root: &Id,
    filter: &LsFilter,
    mut emit: impl FnMut(LsNode),
) -> Result<(), WalkError> {
    walk(repo, root, |entry| {
        let (print, action) = filter.decide(entry.path, entry.node.node_type == NodeType::Dir);
        if print {
            emit(LsNode::new(entry.path, entry.node));
        }
        Ok(action)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, thiserror::Error)]
    #[error("no such tree")]
    struct NoTree;

    fn node(name: &str, node_type: NodeType, subtree: Option<Id>) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            node_type,
            subtree,
            ..Node::default()
        }
    }

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn run(trees: &HashMap<Id, Tree>, root: Id) -> Result<Vec<String>, WalkError> {
        let mut seen = Vec::new();
        walk_with_loader(
            |i: &Id| trees.get(i).cloned().ok_or(NoTree),
            &root,
            |e| {
                seen.push(String::from_utf8_lossy(e.path).into_owned());
                Ok(WalkAction::Continue)
            },
        )?;
        Ok(seen)
    }

    #[test]
    fn preorder_paths() {
        let mut trees = HashMap::new();
        trees.insert(
            id(1),
            Tree {
                nodes: vec![
                    node("a", NodeType::Dir, Some(id(2))),
                    node("z", NodeType::File, None),
                ],
            },
        );
        trees.insert(
            id(2),
            Tree {
                nodes: vec![node("b", NodeType::File, None)],
            },
        );
        assert_eq!(run(&trees, id(1)).unwrap(), vec!["/a", "/a/b", "/z"]);
    }

    #[test]
    fn hostile_names_and_cycles_are_errors() {
        for bad in ["..", ".", "", "../x", "a/b"] {
            let mut trees = HashMap::new();
            trees.insert(
                id(1),
                Tree {
                    nodes: vec![node(bad, NodeType::File, None)],
                },
            );
            assert!(
                matches!(run(&trees, id(1)), Err(WalkError::InvalidName { .. })),
                "{bad}"
            );
        }
        let mut trees = HashMap::new();
        trees.insert(
            id(1),
            Tree {
                nodes: vec![node("loop", NodeType::Dir, Some(id(1)))],
            },
        );
        assert!(matches!(run(&trees, id(1)), Err(WalkError::Cycle { .. })));
        let mut trees = HashMap::new();
        trees.insert(
            id(1),
            Tree {
                nodes: vec![
                    node("a", NodeType::File, None),
                    node("a", NodeType::Dir, Some(id(1))),
                ],
            },
        );
        assert!(matches!(
            run(&trees, id(1)),
            Err(WalkError::DuplicateName { .. })
        ));
    }

    #[test]
    fn absurd_depth_is_an_error() {
        let mut trees = HashMap::new();
        let levels = MAX_DEPTH as u32 + 2;
        for level in 0..levels {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&level.to_le_bytes());
            let mut next = [0u8; 32];
            next[..4].copy_from_slice(&(level + 1).to_le_bytes());
            trees.insert(
                Id(bytes),
                Tree {
                    nodes: vec![node("d", NodeType::Dir, Some(Id(next)))],
                },
            );
        }
        assert!(matches!(
            run(&trees, Id([0; 32])),
            Err(WalkError::TooDeep { .. })
        ));
    }

    #[test]
    fn resolve_and_modes() {
        let mut trees = HashMap::new();
        trees.insert(
            id(1),
            Tree {
                nodes: vec![node("a", NodeType::Dir, Some(id(2)))],
            },
        );
        trees.insert(
            id(2),
            Tree {
                nodes: vec![node("b", NodeType::File, None)],
            },
        );
        let load = |i: &Id| trees.get(i).cloned().ok_or(NoTree);
        assert!(matches!(
            resolve_path_with_loader(load, &id(1), b"/a/b").unwrap(),
            ResolvedPath::Node(n) if n.name == b"b"
        ));
        assert!(matches!(
            resolve_path_with_loader(load, &id(1), b"/").unwrap(),
            ResolvedPath::Root(r) if r == id(1)
        ));
        assert!(matches!(
            resolve_path_with_loader(load, &id(1), b"/a/nope"),
            Err(WalkError::NotFound { .. })
        ));
        assert_eq!(go_file_mode_string(420), "-rw-r--r--");
        assert_eq!(go_file_mode_string(2147484141), "drwxr-xr-x");
        assert_eq!(go_file_mode_string(134218239), "Lrwxrwxrwx");
    }

    #[test]
    fn ls_filter_semantics() {
        let f = LsFilter {
            dirs: vec![b"/test".to_vec()],
            recursive: false,
        };
        assert_eq!(f.decide(b"/other", true), (false, WalkAction::SkipChildren));
        assert_eq!(f.decide(b"/test", true), (true, WalkAction::Continue));
        assert_eq!(
            f.decide(b"/test/foo", true),
            (true, WalkAction::SkipChildren)
        );
        let f = LsFilter {
            dirs: vec![b"/test/foo".to_vec()],
            recursive: true,
        };
        assert_eq!(f.decide(b"/test", true), (false, WalkAction::Continue));
        assert_eq!(f.decide(b"/test/foo/x", true), (true, WalkAction::Continue));
    }
}
