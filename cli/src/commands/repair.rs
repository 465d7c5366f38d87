//! `repair index` / `rebuild-index` and `repair snapshots` (spec: cli §10.18).

use std::time::Instant;

use restix_engine::backend::FileType;
use restix_engine::repair::{repair_index, RepairStep, SnapshotRepairer};
use restix_engine::selection::SnapshotFilter;

use super::forget::counter_line;
use super::snapshots::select_snapshots;
use super::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;

/// `repair index [--read-all-packs]`.
pub fn run_index(ctx: &Context, read_all_packs: bool) -> anyhow::Result<()> {
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let repo = opened.repo.clone();
    ctx.printer.print("loading indexes...");
    ctx.printer.print("getting pack files to read...");
    let mut start = Instant::now();
    let mut reading = 0u64;
    let printer = ctx.printer.clone();
    let report = repair_index(&repo, read_all_packs, &mut |step| match step {
        RepairStep::ReadingPacks(n) => {
            printer.print("reading pack files");
            reading = n;
            start = Instant::now();
        }
        RepairStep::RebuildingIndex => {
            printer.print(&counter_line(start, reading, reading, "packs"));
            printer.print("rebuilding index");
        }
        RepairStep::DeletingIndex(n) => {
            printer.print("deleting obsolete index files");
            start = Instant::now();
            reading = n;
        }
    })
    .map_err(|e| fatal(e.to_string()))?;
    ctx.printer
        .print(&counter_line(start, reading, reading, "files deleted"));
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

/// `repair snapshots [--forget] [--dry-run] [IDs]`.
pub fn run_snapshots(ctx: &Context, args: &[String]) -> anyhow::Result<()> {
    let mut forget = false;
    let mut dry_run = false;
    let mut ids = Vec::new();
    for a in args {
        match a.as_str() {
            "--forget" => forget = true,
            "--dry-run" | "-n" => dry_run = true,
            other if other.starts_with('-') => {
                return Err(fatal(format!("unknown flag: {other}")).into())
            }
            other => ids.push(other.to_string()),
        }
    }
    let mut opened = open_repository(
        ctx,
        if dry_run {
            LockMode::None
        } else {
            LockMode::Exclusive
        },
    )?;
    let (all, damaged) = opened.list_snapshots_and_damaged()?;
    let selected = select_snapshots(ctx, &all, &ids, &SnapshotFilter::default());
    opened.load_index()?;
    let repo = opened.repo.clone();
    let mut repairer = SnapshotRepairer::new(&repo);
    let mut changed = 0u64;
    // A snapshot file that cannot be loaded cannot be repaired; with
    // --forget it is removed (issue #21), when named or when no IDs are given.
    for id in &damaged {
        let hex = id.to_hex();
        let named = ids.is_empty() || ids.iter().any(|a| hex.starts_with(&a.to_ascii_lowercase()));
        if !forget || !named {
            continue;
        }
        changed += 1;
        if dry_run {
            ctx.printer.print(&format!(
                "\nwould remove damaged snapshot file {}",
                id.short()
            ));
        } else {
            repo.remove_file(FileType::Snapshot, id)?;
            ctx.printer
                .print(&format!("\nremoved damaged snapshot file {}", id.short()));
        }
    }
    for (id, snapshot) in selected {
        ctx.printer.print(&format!(
            "\nsnapshot {} of {:?} at {})",
            id.short(),
            snapshot.paths,
            crate::timefmt::go_time_string(snapshot.time)
        ));
        let Some(root) = snapshot.tree else { continue };
        repairer.messages.clear();
        let new_root = repairer
            .repair_tree(&root, "/", dry_run)
            .map_err(|e| fatal(e.to_string()))?;
        for m in &repairer.messages {
            ctx.printer.print(m);
        }
        let Some(new_root) = new_root else {
            ctx.printer.print("  no changes");
            continue;
        };
        changed += 1;
        if dry_run {
            ctx.printer.print("  would save new snapshot");
            continue;
        }
        repo.flush()?;
        let mut s = snapshot.clone();
        s.tree = Some(new_root);
        if s.original.is_none() {
            s.original = Some(id);
        }
        if !s.tags.iter().any(|t| t == "repaired") {
            s.tags.push("repaired".to_string());
        }
        let new_id = repo.save_snapshot(&s)?;
        ctx.printer
            .print(&format!("saved new snapshot {}", new_id.short()));
        if forget {
            repo.remove_file(FileType::Snapshot, &id)?;
            ctx.printer
                .print(&format!("removed old snapshot {}", id.short()));
        }
    }
    opened.unlock();
    if changed == 0 {
        ctx.printer.print("\nno snapshots were modified");
    } else if dry_run {
        ctx.printer
            .print(&format!("\nwould have modified {changed} snapshots"));
    } else {
        ctx.printer
            .print(&format!("\nmodified {changed} snapshots"));
    }
    Ok(())
}

/// `repair <what> ...` with the arguments clap passed through.
pub fn run(ctx: &Context, args: &[String]) -> anyhow::Result<()> {
    match args.split_first() {
        Some((what, rest)) if what == "index" => {
            let read_all = rest.iter().any(|a| a == "--read-all-packs");
            run_index(ctx, read_all)
        }
        Some((what, rest)) if what == "snapshots" => run_snapshots(ctx, rest),
        Some((what, _)) if what == "packs" => {
            Err(fatal("repair packs is not implemented yet in restix").into())
        }
        _ => Err(fatal("specify what to repair: index or snapshots").into()),
    }
}
