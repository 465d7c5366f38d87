//! `find` (spec: cli §10.14, JSON §11.9).

use restix_engine::backend::FileType;
use restix_engine::find::{find_in_tree, FindHit, FindTarget};
use restix_engine::selection::sort_snapshots;
use restix_engine::walker::go_file_mode_string;
use restix_repo_format::{BlobType, GoTime, Id, Snapshot};
use serde::Serialize;

use crate::args::FindArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::format_bytes;
use crate::snapshot_select::select_snapshots;
use crate::timefmt::{local_time_text, parse_local_time};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One pattern match as restic's `find --json` prints it (§11.9).
#[derive(Serialize)]
struct MatchJson {
    path: String,
    permissions: String,
    #[serde(rename = "type")]
    node_type: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    mode: u64,
    mtime: GoTime,
    atime: GoTime,
    ctime: GoTime,
    uid: u32,
    gid: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "is_zero")]
    inode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    device_id: u64,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    links: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    linktarget: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Serialize)]
struct SnapshotMatchesJson {
    matches: Vec<MatchJson>,
    hits: usize,
    snapshot: String,
}

#[derive(Serialize)]
struct ObjectJson {
    object_type: &'static str,
    id: String,
    path: String,
    parent_tree: String,
    snapshot: String,
    time: GoTime,
}

fn match_json(hit: &FindHit) -> MatchJson {
    let n = &hit.node;
    MatchJson {
        path: hit.path.clone(),
        permissions: go_file_mode_string(n.mode),
        node_type: n.node_type.as_str(),
        mode: u64::from(n.mode),
        mtime: n.mtime,
        atime: n.atime,
        ctime: n.ctime,
        uid: n.uid,
        gid: n.gid,
        user: String::from_utf8_lossy(&n.user).into_owned(),
        group: String::from_utf8_lossy(&n.group).into_owned(),
        inode: n.inode,
        device_id: n.device_id,
        size: n.size,
        links: n.links,
        linktarget: String::from_utf8_lossy(&n.linktarget).into_owned(),
        error: n.error.clone(),
    }
}

fn long_line(hit: &FindHit, human: bool) -> String {
    let n = &hit.node;
    let size = if human {
        format_bytes(n.size)
    } else {
        n.size.to_string()
    };
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
            .filter(|p| {
                object_ids
                    .iter()
                    .any(|w| p.to_hex().starts_with(w.as_str()))
            })
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
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let mut selected: Vec<(Id, Snapshot)> = select_snapshots(ctx, &all, &args.snapshot, &filter);
    sort_snapshots(&mut selected);
    if !args.reverse {
        selected.reverse();
    }
    let mut objects: Vec<ObjectJson> = Vec::new();
    // --show-pack-id (#17): the objects found, by full ID.
    let mut found_objects: Vec<Id> = Vec::new();
    let mut groups: Vec<SnapshotMatchesJson> = Vec::new();
    let mut first_block = true;
    for (sid, snapshot) in &selected {
        let Some(root) = snapshot.tree else { continue };
        let mut hits = Vec::new();
        find_in_tree(&repo, &root, &target, &mut hits)?;
        hits.retain(|h| {
            let t = h.node.mtime.unix_seconds;
            oldest.is_none_or(|o| t >= o) && newest.is_none_or(|n| t <= n)
        });
        if hits.is_empty() {
            continue;
        }
        if id_mode {
            for h in &hits {
                if let Some(object) = h.object {
                    found_objects.push(object);
                }
                let object_type = if args.tree { "tree" } else { "blob" };
                let object = h.object.map(|o| o.to_hex()).unwrap_or_default();
                if ctx.printer.json {
                    objects.push(ObjectJson {
                        object_type,
                        id: object,
                        path: h.path.clone(),
                        parent_tree: h.parent_tree.to_hex(),
                        snapshot: sid.to_hex(),
                        time: snapshot.time,
                    });
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
            groups.push(SnapshotMatchesJson {
                matches: hits.iter().map(match_json).collect(),
                hits: hits.len(),
                snapshot: sid.to_hex(),
            });
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
    opened.unlock();
    if ctx.printer.json {
        if id_mode {
            ctx.printer.json_line(&objects);
        } else {
            ctx.printer.json_line(&groups);
        }
    }
    if args.show_pack_id && id_mode {
        let blob_type = if args.tree {
            BlobType::Tree
        } else {
            BlobType::Data
        };
        let listing = show_pack_ids(&repo, blob_type, &object_ids, &found_objects);
        if !listing.is_empty() {
            ctx.printer.important(&listing);
        }
    }
    Ok(())
}

/// `--show-pack-id` (restic cmd_find.go `findObjectsPacks`): for each ID
/// searched for, its pack and index entry. An ID given as its full or
/// 8-digit short form and found in a snapshot is shown in full; other
/// short forms cannot be looked up, as in restic.
fn show_pack_ids(
    repo: &restix_engine::repository::Repository,
    blob_type: BlobType,
    searched: &[String],
    found: &[Id],
) -> String {
    let mut ids: Vec<String> = Vec::new();
    for text in searched {
        let full = found
            .iter()
            .find(|f| f.to_hex() == *text || f.short() == *text)
            .map(Id::to_hex)
            .unwrap_or_else(|| text.clone());
        if !ids.contains(&full) {
            ids.push(full);
        }
    }
    let kind = match blob_type {
        BlobType::Data => "data",
        BlobType::Tree => "tree",
    };
    let mut out = String::new();
    for text in ids {
        let id = match Id::from_hex(&text) {
            Ok(id) if text.len() == 64 => id,
            _ => {
                let reason = if text.len() == 64 {
                    format!("invalid ID: {text}")
                } else {
                    format!("invalid length for ID: {text:?}")
                };
                out.push_str(&format!(
                    "Note: cannot find pack for object '{text}', unable to parse ID: {reason}\n"
                ));
                continue;
            }
        };
        match repo.lookup(blob_type, &id) {
            None => out.push_str(&format!("Object {} not found in the index\n", id.short())),
            Some(location) => out.push_str(&format!(
                "Object belongs to pack {}\n ... Pack {}: <Blob ({kind}) {}, offset {}, length {}, uncompressed length {}>\n",
                location.pack.to_hex(),
                location.pack.short(),
                id.short(),
                location.offset,
                location.length,
                location.uncompressed_length.unwrap_or(0)
            )),
        }
    }
    out
}
