//! `find` (spec: cli §10.14, JSON §11.9).

use restix_engine::backend::FileType;
use restix_engine::find::{find_in_tree, FindHit, FindTarget};
use restix_engine::selection::sort_snapshots;
use restix_engine::walker::go_file_mode_string;
use restix_repo_format::{BlobType, Id, Snapshot};
use serde_json::{json, Map, Value};

use super::snapshots::select_snapshots;
use super::Context;
use crate::args::FindArgs;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::format_bytes;
use crate::timefmt::{local_time_text, parse_local_time};

fn match_json(hit: &FindHit) -> Value {
    let n = &hit.node;
    let mut m = Map::new();
    m.insert("path".into(), json!(hit.path));
    m.insert("permissions".into(), json!(go_file_mode_string(n.mode)));
    m.insert("type".into(), json!(n.node_type.as_str()));
    if n.mode != 0 {
        m.insert("mode".into(), json!(n.mode));
    }
    m.insert("mtime".into(), serde_json::to_value(n.mtime).unwrap_or(Value::Null));
    m.insert("atime".into(), serde_json::to_value(n.atime).unwrap_or(Value::Null));
    m.insert("ctime".into(), serde_json::to_value(n.ctime).unwrap_or(Value::Null));
    m.insert("uid".into(), json!(n.uid));
    m.insert("gid".into(), json!(n.gid));
    if !n.user.is_empty() {
        m.insert("user".into(), json!(String::from_utf8_lossy(&n.user)));
    }
    if !n.group.is_empty() {
        m.insert("group".into(), json!(String::from_utf8_lossy(&n.group)));
    }
    if n.inode != 0 {
        m.insert("inode".into(), json!(n.inode));
    }
    if n.device_id != 0 {
        m.insert("device_id".into(), json!(n.device_id));
    }
    if n.size != 0 {
        m.insert("size".into(), json!(n.size));
    }
    if n.links != 0 {
        m.insert("links".into(), json!(n.links));
    }
    if !n.linktarget.is_empty() {
        m.insert("linktarget".into(), json!(String::from_utf8_lossy(&n.linktarget)));
    }
    if !n.error.is_empty() {
        m.insert("error".into(), json!(n.error));
    }
    Value::Object(m)
}

fn long_line(hit: &FindHit, human: bool) -> String {
    let n = &hit.node;
    let size = if human { format_bytes(n.size) } else { n.size.to_string() };
    let mut line = format!(
        "{} {:>5} {:>5} {:>6} {} {}",
        go_file_mode_string(n.mode),
        n.uid,
        n.gid,
        size,
        local_time_text(n.mtime),
        hit.path
    );
    if !n.linktarget.is_empty() {
        line.push_str(&format!(" -> {}", String::from_utf8_lossy(&n.linktarget)));
    }
    line
}

pub fn run(ctx: &Context, args: &FindArgs) -> anyhow::Result<()> {
    if args.patterns.is_empty() {
        return Err(fatal("wrong number of arguments").into());
    }
    let parse_time = |t: &Option<String>| -> anyhow::Result<Option<i64>> {
        match t {
            None => Ok(None),
            Some(text) => Ok(Some(
                parse_local_time(text)
                    .or_else(|_| parse_local_time(&format!("{text} 00:00:00")))
                    .or_else(|_| parse_local_time(&format!("{text}:00")))
                    .map_err(|_| fatal(format!("unable to parse time: {text:?}")))?
                    .unix_seconds,
            )),
        }
    };
    let oldest = parse_time(&args.oldest)?;
    let newest = parse_time(&args.newest)?;
    let mut opened = open_repository(ctx, LockMode::Shared)?;
    opened.load_index()?;
    let repo = opened.repo.clone();
    let mut object_ids: Vec<String> = args.patterns.iter().map(|p| p.to_lowercase()).collect();
    let target = if args.pack {
        // Blobs of the given packs.
        let mut blobs = Vec::new();
        let packs: Vec<Id> = repo.list_files(FileType::Pack)?;
        let wanted: Vec<Id> = packs
            .into_iter()
            .filter(|p| object_ids.iter().any(|w| p.to_hex().starts_with(w.as_str())))
            .collect();
        repo.with_index(|idx| {
            idx.for_each(|t, id, loc| {
                if t == BlobType::Data && wanted.contains(&loc.pack) {
                    blobs.push(id.to_hex());
                }
            })
        });
        object_ids = blobs.clone();
        FindTarget::Blobs(blobs)
    } else if args.blob {
        FindTarget::Blobs(object_ids.clone())
    } else if args.tree {
        FindTarget::Trees(object_ids.clone())
    } else {
        FindTarget::Patterns {
            patterns: args.patterns.clone(),
            ignore_case: args.ignore_case,
        }
    };
    let id_mode = !matches!(target, FindTarget::Patterns { .. });
    let all = opened.list_snapshots()?;
    let filter = super::snapshot_filter(&args.filter);
    let mut selected: Vec<(Id, Snapshot)> = select_snapshots(ctx, &all, &args.snapshot, &filter);
    sort_snapshots(&mut selected);
    if !args.reverse {
        selected.reverse();
    }
    let mut json_out: Vec<Value> = Vec::new();
    let mut first_block = true;
    for (sid, snapshot) in &selected {
        let Some(root) = snapshot.tree else { continue };
        let mut hits = Vec::new();
        find_in_tree(&repo, &root, &target, &mut hits)?;
        hits.retain(|h| {
            let t = h.node.mtime.unix_seconds;
            oldest.map_or(true, |o| t >= o) && newest.map_or(true, |n| t <= n)
        });
        if hits.is_empty() {
            continue;
        }
        if id_mode {
            for h in &hits {
                let object_type = if args.tree { "tree" } else { "blob" };
                let object = h.object.map(|o| o.to_hex()).unwrap_or_default();
                if ctx.printer.json {
                    json_out.push(json!({
                        "object_type": object_type,
                        "id": object,
                        "path": h.path,
                        "parent_tree": h.parent_tree.to_hex(),
                        "snapshot": sid.to_hex(),
                        "time": snapshot.time,
                    }));
                } else {
                    let kind = if args.tree { "directory" } else { "file" };
                    ctx.printer.important(&format!(
                        "Found {object_type} {object}\n ... in {kind} {}\n     (tree {})\n ... in snapshot {} ({})",
                        h.path,
                        h.parent_tree.to_hex(),
                        sid.short(),
                        local_time_text(snapshot.time)
                    ));
                }
            }
            continue;
        }
        if ctx.printer.json {
            json_out.push(json!({
                "matches": hits.iter().map(match_json).collect::<Vec<_>>(),
                "hits": hits.len(),
                "snapshot": sid.to_hex(),
            }));
            continue;
        }
        if !first_block {
            ctx.printer.important("");
        }
        first_block = false;
        ctx.printer.important(&format!(
            "Found matching entries in snapshot {} from {}",
            sid.short(),
            local_time_text(snapshot.time)
        ));
        for h in &hits {
            if args.long {
                ctx.printer.important(&long_line(h, args.human_readable));
            } else {
                ctx.printer.important(&h.path);
            }
        }
    }
    let _ = object_ids;
    opened.unlock();
    if ctx.printer.json {
        ctx.printer.json_line(&json_out);
    }
    Ok(())
}
