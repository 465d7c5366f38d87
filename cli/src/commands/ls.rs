//! `ls` (spec: cli §10.11, JSON §11.4).

mod ncdu;

use restix_engine::walker::{self, LsFilter, LsNode};
use restix_repo_format::GoTime;
use serde::Serialize;

use crate::args::LsArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::format_bytes;
use crate::snapshot_view::SnapshotJson;
use crate::timefmt::{go_time_string, local_time_text};

#[derive(Serialize)]
struct SnapshotLine<'a> {
    #[serde(flatten)]
    snapshot: SnapshotJson<'a>,
    message_type: &'static str,
    struct_type: &'static str,
}

#[derive(Serialize)]
struct NodeLine {
    name: String,
    #[serde(rename = "type")]
    node_type: &'static str,
    path: String,
    uid: u32,
    gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "is_zero")]
    mode: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    permissions: String,
    mtime: GoTime,
    atime: GoTime,
    ctime: GoTime,
    #[serde(skip_serializing_if = "is_zero_u64")]
    inode: u64,
    message_type: &'static str,
    struct_type: &'static str,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn node_line(node: &LsNode) -> NodeLine {
    NodeLine {
        name: String::from_utf8_lossy(&node.name).into_owned(),
        node_type: node.node_type.as_str(),
        path: String::from_utf8_lossy(&node.path).into_owned(),
        uid: node.uid,
        gid: node.gid,
        size: node.size,
        mode: node.mode,
        permissions: node.permissions.clone(),
        mtime: node.mtime,
        atime: node.atime,
        ctime: node.ctime,
        inode: node.inode,
        message_type: "node",
        struct_type: "node",
    }
}

/// `-l` line: `%s %5d %5d %6d %s %s%s`.
fn long_line(node: &LsNode, human: bool) -> String {
    let size = node.size.unwrap_or(0);
    let size_text = if human {
        format_bytes(size)
    } else {
        size.to_string()
    };
    let target = node
        .link_target
        .as_ref()
        .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
        .unwrap_or_default();
    format!(
        "{} {:5} {:5} {:>6} {} {}{}",
        node.permissions,
        node.uid,
        node.gid,
        size_text,
        local_time_text(node.mtime),
        String::from_utf8_lossy(&node.path),
        target
    )
}

pub fn run(ctx: &Context, args: &LsArgs) -> anyhow::Result<()> {
    let Some((snapshot_arg, dirs)) = args.args.split_first() else {
        return Err(fatal(
            "no snapshot ID specified, specify snapshot ID or use special ID 'latest'",
        )
        .into());
    };
    if dirs.iter().any(|d| !d.starts_with('/')) {
        return Err(
            fatal("All path filters must be absolute, starting with a forward slash '/'").into(),
        );
    }
    if args.ncdu && ctx.printer.json {
        return Err(fatal("only either '--json' or '--ncdu' can be specified").into());
    }
    if args.ncdu && args.sort.as_deref().is_some_and(|s| s != "name") {
        return Err(fatal("--sort and --ncdu are mutually exclusive").into());
    }
    if args.ncdu && args.reverse {
        return Err(fatal("--reverse and --ncdu are mutually exclusive").into());
    }
    let opened = open_repository(ctx, LockMode::Shared)?;
    let (id, snapshot, root) =
        crate::snapshot_select::select_single(ctx, &opened, snapshot_arg, &args.filter)?;
    if args.ncdu {
        let text = ncdu::listing(&opened.repo, &snapshot, &root, dirs, args.recursive)?;
        ctx.printer.important(&text);
        return Ok(());
    }
    if ctx.printer.json {
        ctx.printer.json_line(&SnapshotLine {
            snapshot: SnapshotJson::new(&id, &snapshot),
            message_type: "snapshot",
            struct_type: "snapshot",
        });
    } else {
        ctx.printer.print(&format!(
            "snapshot {} of [{}] at {} by {}@{} filtered by [{}]:",
            id.short(),
            snapshot.paths.join(" "),
            go_time_string(snapshot.time),
            snapshot.username,
            snapshot.hostname,
            dirs.join(" ")
        ));
    }
    let filter = LsFilter {
        dirs: dirs.iter().map(|d| d.as_bytes().to_vec()).collect(),
        recursive: args.recursive,
    };
    let mut nodes: Vec<LsNode> = Vec::new();
    walker::ls(&opened.repo, &root, &filter, |node| nodes.push(node)).map_err(fatal)?;
    match args.sort.as_deref().unwrap_or("name") {
        "name" => {}
        "size" => nodes.sort_by_key(|n| n.size.unwrap_or(0)),
        "time" | "mtime" => nodes.sort_by_key(|n| n.mtime),
        "atime" => nodes.sort_by_key(|n| n.atime),
        "ctime" => nodes.sort_by_key(|n| n.ctime),
        "extension" => nodes.sort_by(|a, b| extension(&a.name).cmp(extension(&b.name))),
        other => return Err(fatal(format!("unknown sort mode \"{other}\"")).into()),
    }
    if args.reverse {
        nodes.reverse();
    }
    let mut out = String::new();
    for node in &nodes {
        if ctx.printer.json {
            out.push_str(&crate::output::to_go_json(&node_line(node)));
        } else if args.long {
            out.push_str(&long_line(node, args.human_readable));
        } else {
            out.push_str(&String::from_utf8_lossy(&node.path));
        }
        out.push('\n');
    }
    if !out.is_empty() {
        ctx.printer.important(&out);
    }
    Ok(())
}

fn extension(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => name.get(dot..).unwrap_or_default(),
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restix_repo_format::NodeType;

    #[test]
    fn node_json_shape() {
        let node = LsNode {
            name: b"a.txt".to_vec(),
            node_type: NodeType::File,
            path: b"/data/a.txt".to_vec(),
            uid: 0,
            gid: 0,
            size: Some(11),
            mode: 420,
            permissions: "-rw-r--r--".into(),
            mtime: GoTime::from_unix_utc(0, 0),
            atime: GoTime::from_unix_utc(0, 0),
            ctime: GoTime::from_unix_utc(0, 0),
            inode: 0,
            link_target: None,
        };
        assert_eq!(
            crate::output::to_go_json(&node_line(&node)),
            r#"{"name":"a.txt","type":"file","path":"/data/a.txt","uid":0,"gid":0,"size":11,"mode":420,"permissions":"-rw-r--r--","mtime":"1970-01-01T00:00:00Z","atime":"1970-01-01T00:00:00Z","ctime":"1970-01-01T00:00:00Z","message_type":"node","struct_type":"node"}"#
        );
        std::env::set_var("TZ", "UTC");
        assert_eq!(
            long_line(&node, false),
            "-rw-r--r--     0     0     11 1970-01-01 00:00:00 /data/a.txt"
        );
    }
}
