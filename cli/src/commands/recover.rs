//! `recover` (restic cmd_recover.go): make sure the index lists every pack,
//! find the trees nothing refers to, and save a snapshot `/recover` (tag
//! `recovered`) that holds one folder per such tree.

use restix_engine::recover::{find_unreferenced_roots, save_recovery_snapshot, RecoverStep};
use restix_engine::repair::{repair_index, RepairStep};

use crate::args::PositionalArgs;
use crate::context::Context;
use crate::counter::Counter;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;

pub fn run(ctx: &Context, _args: &PositionalArgs) -> anyhow::Result<()> {
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let repo = opened.repo.clone();
    let p = &ctx.printer;

    p.print("ensuring index is complete");
    let mut counter: Option<Counter> = None;
    let report = repair_index(&repo, false, &mut |step| match step {
        RepairStep::ReadingPacks(n) => {
            p.print("reading pack files");
            counter = Some(Counter::start(p, n, "packs"));
        }
        RepairStep::RebuildingIndex => {
            if let Some(c) = counter.take() {
                c.add(c.total());
                c.finish();
            }
            p.print("rebuilding index");
        }
        RepairStep::DeletingIndex(_) => p.print("deleting obsolete index files"),
    })
    .map_err(|e| fatal(e.to_string()))?;
    for (id, e) in &report.unreadable {
        p.error(&format!("error reading pack {}: {e}", id.to_hex()));
    }

    p.print("load index files");
    opened.load_index()?;
    let mut loading: Option<Counter> = None;
    let scan = find_unreferenced_roots(&repo, &mut |step| match step {
        RecoverStep::LoadingTrees(n) => {
            p.print(&format!("load {n} trees"));
            loading = Some(Counter::start(p, n, "trees loaded"));
        }
        RecoverStep::TreeLoaded => {
            if let Some(c) = &loading {
                c.add(1);
            }
        }
        RecoverStep::LoadingSnapshots => {
            if let Some(c) = loading.take() {
                c.finish();
            }
            p.print("load snapshots");
        }
    })?;
    for (id, e) in &scan.unreadable {
        p.error(&format!("unable to load tree {}: {e}", id.short()));
    }
    p.print("done");
    for id in &scan.roots {
        p.verbose(&format!("found root tree {}", id.short()));
    }
    p.important(&format!("\nfound {} unreferenced roots", scan.roots.len()));
    if scan.roots.is_empty() {
        p.print("no snapshot to write.");
        opened.unlock();
        return Ok(());
    }
    let id = save_recovery_snapshot(&repo, &scan.roots)
        .map_err(|e| fatal(format!("unable to save snapshot: {e}")))?;
    opened.unlock();
    p.important(&format!("saved new snapshot {}", id.short()));
    Ok(())
}
