//! `repair index` / `rebuild-index`, `repair packs` and `repair snapshots`
//! (spec: cli §10.18; restic cmd_repair_*.go).

use std::io::Write;
use std::time::Instant;

use restix_engine::backend::FileType;
use restix_engine::repair::{repair_index, repair_packs, RepairPacksEvent, RepairStep};
use restix_engine::repository::RepoError;
use restix_engine::rewrite::{replace_snapshot, Change, RewriteError, TreeRewriter};
use restix_repo_format::{BlobType, Id, NodeType, Tree};

use crate::args::{RepairArgs, RepairCommand, RepairIndexArgs, RepairSnapshotsArgs};
use crate::context::Context;
use crate::counter::{counter_line, Counter};
use crate::engine_glue::{open_repository, open_repository_dry_run, LockMode};
use crate::errors::fatal;
use crate::rewrite_report::{report_outcome, report_total, snapshot_line};
use crate::snapshot_select::select_snapshots;

/// `repair <subcommand>`.
pub fn run(ctx: &Context, args: &RepairArgs) -> anyhow::Result<()> {
    match &args.command {
        RepairCommand::Index(index) => run_index(ctx, index),
        RepairCommand::Packs(packs) => run_packs(ctx, &packs.args),
        RepairCommand::Snapshots(snapshots) => run_snapshots(ctx, snapshots),
    }
}

/// `repair index [--read-all-packs]` (also `rebuild-index`).
pub fn run_index(ctx: &Context, args: &RepairIndexArgs) -> anyhow::Result<()> {
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let repo = opened.repo.clone();
    ctx.printer.print("loading indexes...");
    ctx.printer.print("getting pack files to read...");
    let mut start = Instant::now();
    let mut reading = 0u64;
    let printer = ctx.printer.clone();
    let report = repair_index(&repo, args.read_all_packs, &mut |step| match step {
        RepairStep::ReadingPacks(n) => {
            printer.print("reading pack files");
            reading = n;
            start = Instant::now();
        }
        RepairStep::RebuildingIndex => {
            printer.print(&counter_line(start.elapsed(), reading, reading, "packs"));
            printer.print("rebuilding index");
        }
        RepairStep::DeletingIndex(n) => {
            printer.print("deleting obsolete index files");
            start = Instant::now();
            reading = n;
        }
    })
    .map_err(|e| fatal(e.to_string()))?;
    ctx.printer.print(&counter_line(
        start.elapsed(),
        reading,
        reading,
        "files deleted",
    ));
    for id in &report.added {
        ctx.printer
            .verbose(&format!("adding pack file to index {}", id.to_hex()));
    }
    for id in &report.removed {
        ctx.printer
            .error(&format!("removing not found pack file {}", id.to_hex()));
    }
    for (id, e) in &report.unreadable {
        ctx.printer
            .error(&format!("error reading pack {}: {e}", id.to_hex()));
    }
    opened.unlock();
    ctx.printer.print("done");
    Ok(())
}

/// `repair packs ID...`: keep a copy of each pack in the current folder,
/// salvage the blobs that still read, drop the packs (restic
/// cmd_repair_packs.go).
fn run_packs(ctx: &Context, args: &[String]) -> anyhow::Result<()> {
    let mut ids: Vec<Id> = Vec::new();
    for arg in args {
        let id = Id::from_hex(arg).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(fatal("no ids specified").into());
    }
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let repo = opened.repo.clone();
    opened.load_index()?;
    let p = &ctx.printer;
    p.print("saving backup copies of pack files to current folder");
    for id in &ids {
        let data = match repo.backend().read(FileType::Pack, &id.to_hex()) {
            Ok(data) => data,
            Err(e) => return Err(RepoError::from(e).into()),
        };
        let name = format!("pack-{}", id.to_hex());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)
            .map_err(|e| anyhow::anyhow!("open {name}: {e}"))?;
        file.write_all(&data)
            .map_err(|e| anyhow::anyhow!("write {name}: {e}"))?;
    }
    p.print("salvaging intact data from specified pack files");
    let mut counter: Option<Counter> = None;
    let mut deleting: Option<Counter> = None;
    let printer = p.clone();
    repair_packs(&repo, &ids, &mut |event| match event {
        RepairPacksEvent::Salvaging(n) => counter = Some(Counter::start(&printer, n, "pack files")),
        RepairPacksEvent::NoBlobs(pack) => {
            printer.error(&format!("no blobs found for pack {}", pack.to_hex()))
        }
        RepairPacksEvent::BlobFailed { blob, reason } => {
            printer.error(&format!("failed to load blob {}: {reason}", blob.to_hex()))
        }
        RepairPacksEvent::PackDone => {
            if let Some(c) = &counter {
                c.add(1);
            }
        }
        RepairPacksEvent::RebuildingIndex => {
            if let Some(c) = counter.take() {
                c.finish();
            }
            printer.print("rebuilding index");
        }
        RepairPacksEvent::RemovingPacks(n) => {
            printer.print("removing salvaged pack files");
            deleting = Some(Counter::start(&printer, n, "files deleted"));
            if let Some(c) = &deleting {
                c.add(n);
            }
        }
    })
    .map_err(|e| fatal(e.to_string()))?;
    if let Some(c) = deleting.take() {
        c.finish();
    }
    opened.unlock();
    p.error("\nUse `restic repair snapshots --forget` to remove the corrupted data blobs from all snapshots");
    Ok(())
}

/// `repair snapshots [--forget] [--dry-run] [filters] [IDs]`: files lose
/// the parts that are missing from the index (and get the right size),
/// unreadable folders become empty, invalid nodes go; the new snapshot is
/// tagged `repaired` (restic cmd_repair_snapshots.go).
fn run_snapshots(ctx: &Context, args: &RepairSnapshotsArgs) -> anyhow::Result<()> {
    let mut opened = open_repository_dry_run(ctx, LockMode::Exclusive, args.dry_run)?;
    let (all, damaged) = opened.list_snapshots_and_damaged()?;
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);
    opened.load_index()?;
    let repo = opened.repo.clone();
    let p = &ctx.printer;
    let mut changed = 0u64;
    // A snapshot file that cannot be loaded cannot be repaired; with
    // --forget it is removed (issue #21), when named or when no IDs are given.
    for id in &damaged {
        let hex = id.to_hex();
        let named = args.ids.is_empty()
            || args
                .ids
                .iter()
                .any(|a| hex.starts_with(&a.to_ascii_lowercase()));
        if !args.forget || !named {
            continue;
        }
        changed += 1;
        if args.dry_run {
            p.print(&format!(
                "\nwould remove damaged snapshot file {}",
                id.short()
            ));
        } else {
            repo.remove_file(FileType::Snapshot, id)?;
            p.print(&format!("\nremoved damaged snapshot file {}", id.short()));
        }
    }
    let mut rewriter = TreeRewriter::new(&repo)
        .allow_unstable()
        .keep(|mut node, path| {
            let shown = String::from_utf8_lossy(path);
            if matches!(node.node_type, NodeType::Irregular | NodeType::Invalid) {
                p.print(&format!(
                    "  file {shown:?}: removed node with invalid type {:?}",
                    node.node_type.as_str()
                ));
                return None;
            }
            if node.node_type != NodeType::File {
                return Some(node);
            }
            let mut missing = false;
            let mut kept = Vec::new();
            let mut size = 0u64;
            for blob in node.content.as_deref().unwrap_or_default() {
                match repo.lookup(BlobType::Data, blob) {
                    Some(location) => {
                        kept.push(*blob);
                        size += u64::from(location.plaintext_len());
                    }
                    None => missing = true,
                }
            }
            if missing {
                p.print(&format!("  file {shown:?}: removed missing content"));
            } else if size != node.size {
                p.print(&format!("  file {shown:?}: fixed incorrect size"));
            }
            node.content = Some(kept);
            node.size = size;
            Some(node)
        })
        .on_failed_tree(|path, _| {
            let shown = String::from_utf8_lossy(path);
            if path == b"/" {
                p.print(&format!("  dir {shown:?}: not readable"));
                return Ok(None);
            }
            p.print(&format!("  dir {shown:?}: replaced with empty directory"));
            let (bytes, empty) =
                Tree::default()
                    .encode_with_id()
                    .map_err(|e| RewriteError::Encode {
                        path: shown.into_owned(),
                        reason: e.to_string(),
                    })?;
            repo.save_blob(BlobType::Tree, bytes, Some(empty))?;
            Ok(Some(empty))
        });
    let change = Change {
        tag: "repaired",
        forget: args.forget,
        dry_run: args.dry_run,
        ..Change::default()
    };
    for (id, snapshot) in &selected {
        p.print(&format!("\n{}", snapshot_line(id, snapshot)));
        let result = rewriter
            .rewrite(b"/", snapshot.tree.as_ref())
            .and_then(|tree| replace_snapshot(&repo, id, snapshot, tree, None, &change));
        let outcome = result.map_err(|e| {
            fatal(format!(
                "unable to rewrite snapshot ID {:?}: {e}",
                id.short()
            ))
        })?;
        if report_outcome(p, id, &outcome, &change) {
            changed += 1;
        }
    }
    opened.unlock();
    report_total(p, changed, args.dry_run);
    Ok(())
}
