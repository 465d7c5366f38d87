//! `ls --ncdu`: the snapshot in ncdu's JSON export format (version 1.2,
//! dev.yorhel.nl/ncdu/jsonfmt), laid out as restic prints it
//! (cmd_ls.go `ncduLsPrinter`): `[1, 2, <snapshot>, [{"name":"/"}` then one
//! object per node, folders as nested lists indented two spaces a level.
//! Pipe it into `ncdu -f -`.

use restix_engine::repository::Repository;
use restix_repo_format::tree::{MODE_PERM, MODE_SETGID, MODE_SETUID, MODE_STICKY};
use restix_repo_format::{Id, Node, NodeType, Snapshot};
use serde::Serialize;

use crate::output::to_go_json;

#[derive(Serialize)]
struct NcduNode {
    name: String,
    asize: u64,
    dsize: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
    notreg: bool,
    uid: u32,
    gid: u32,
    mode: u16,
    mtime: i64,
}

fn ncdu_node(node: &Node) -> String {
    const BLOCK: u64 = 512;
    let mut mode = (node.mode & MODE_PERM) as u16;
    if node.mode & MODE_SETUID != 0 {
        mode |= 0o4000;
    }
    if node.mode & MODE_SETGID != 0 {
        mode |= 0o2000;
    }
    if node.mode & MODE_STICKY != 0 {
        mode |= 0o1000;
    }
    to_go_json(&NcduNode {
        name: node.name_lossy(),
        asize: node.size,
        dsize: node.size.div_ceil(BLOCK) * BLOCK,
        dev: node.device_id,
        ino: node.inode,
        nlink: node.links,
        notreg: !matches!(node.node_type, NodeType::Dir | NodeType::File),
        uid: node.uid,
        gid: node.gid,
        mode,
        mtime: node.mtime.unix_seconds.max(0),
    })
}

/// restic's `fs.HasPathPrefix(base, p)`: `p` is `base` or below it.
fn has_path_prefix(base: &[u8], path: &[u8]) -> bool {
    let base = base.strip_suffix(b"/").unwrap_or(base);
    path == base
        || (path.starts_with(base) && path.get(base.len()) == Some(&b'/'))
        || base.is_empty()
}

/// The ncdu listing of `root` (a snapshot's tree or a subfolder of it);
/// `dirs` and `recursive` select nodes as plain `ls` does.
pub fn listing(
    repo: &Repository,
    snapshot: &Snapshot,
    root: &Id,
    dirs: &[String],
    recursive: bool,
) -> anyhow::Result<String> {
    let snapshot_json = String::from_utf8(snapshot.to_json()?)?;
    let mut out = format!("[1, 2, {snapshot_json}, [{{\"name\":\"/\"}}");
    let mut walk = Walk {
        repo,
        dirs: dirs.iter().map(|d| d.as_bytes().to_vec()).collect(),
        recursive,
        depth: 1,
        out: &mut out,
    };
    walk.tree(root, b"/")?;
    out.push_str("\n]\n]\n");
    Ok(out)
}

struct Walk<'a> {
    repo: &'a Repository,
    dirs: Vec<Vec<u8>>,
    recursive: bool,
    depth: usize,
    out: &'a mut String,
}

impl Walk<'_> {
    fn within(&self, path: &[u8]) -> bool {
        self.dirs.is_empty() || self.dirs.iter().any(|d| has_path_prefix(d, path))
    }

    fn approaching(&self, path: &[u8]) -> bool {
        self.dirs.is_empty() || self.dirs.iter().any(|d| has_path_prefix(path, d))
    }

    fn print(&mut self, node: &Node) {
        let indent = "  ".repeat(self.depth);
        if node.node_type == NodeType::Dir {
            let inner = "  ".repeat(self.depth + 1);
            self.out
                .push_str(&format!(",\n{indent}[\n{inner}{}", ncdu_node(node)));
            self.depth += 1;
        } else {
            self.out
                .push_str(&format!(",\n{indent}{}", ncdu_node(node)));
        }
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        let indent = "  ".repeat(self.depth);
        self.out.push_str(&format!("\n{indent}]"));
    }

    /// restic walker.Walk with ls's node visitor.
    fn tree(&mut self, id: &Id, path: &[u8]) -> anyhow::Result<()> {
        let tree = self.repo.load_tree(id)?;
        for node in &tree.nodes {
            let mut child = path.to_vec();
            if !child.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(&node.name);
            let is_dir = node.node_type == NodeType::Dir;
            let mut printed = false;
            let mut descend = false;
            if self.within(&child) {
                self.print(node);
                printed = true;
                descend = self.recursive;
            }
            if !descend && self.approaching(&child) {
                if !printed {
                    self.print(node);
                }
                descend = true;
            }
            if !descend {
                if is_dir && printed {
                    self.leave();
                }
                continue;
            }
            if is_dir {
                let Some(subtree) = node.subtree else {
                    anyhow::bail!(
                        "subtree for node {} in tree {} is nil",
                        node.name_lossy(),
                        String::from_utf8_lossy(&child)
                    );
                };
                self.tree(&subtree, &child)?;
                self.leave();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restix_repo_format::GoTime;

    #[test]
    fn node_fields_as_restic() {
        let mut node = Node::new(b"a<b".to_vec(), NodeType::File);
        node.size = 513;
        node.mode = 0o644 | MODE_SETUID;
        node.mtime = GoTime::from_unix_utc(-5, 0);
        node.links = 1;
        assert_eq!(
            ncdu_node(&node),
            r#"{"name":"a\u003cb","asize":513,"dsize":1024,"dev":0,"ino":0,"nlink":1,"notreg":false,"uid":0,"gid":0,"mode":2468,"mtime":0}"#
        );
        assert!(has_path_prefix(b"/a", b"/a/b"));
        assert!(has_path_prefix(b"/a", b"/a"));
        assert!(!has_path_prefix(b"/a", b"/ab"));
        assert!(has_path_prefix(b"/", b"/x"));
    }
}
