//! Pruning an opened repository (spec: cli §10.7): the flags as engine
//! options, the run with restic's progress lines and statistics. Shared by
//! `prune` and `forget --prune`.

use std::time::Instant;

use restix_engine::prune::{
    execute_prune, execute_prune_without_free_space, plan_prune, MaxUnused, PruneError,
    PruneOptions, PruneStats, PruneStep,
};
use restix_engine::size::parse_size;

use crate::args::PruneOptions as PruneFlags;
use crate::context::Context;
use crate::counter::counter_line_with_total as counter_line;
use crate::engine_glue::OpenedRepository;
use crate::errors::fatal;
use crate::output::format_bytes;

/// Prune flags as engine options.
pub fn prune_options(flags: &PruneFlags) -> anyhow::Result<PruneOptions> {
    let mut opts = PruneOptions::default();
    if let Some(text) = &flags.max_unused {
        opts.max_unused = MaxUnused::parse(text).map_err(fatal)?;
    }
    if let Some(text) = &flags.max_repack_size {
        opts.max_repack_bytes = Some(parse_size(text).map_err(|_| {
            fatal(format!(
                "invalid number of bytes \"{text}\" for --max-repack-size"
            ))
        })?);
    }
    if let Some(text) = &flags.repack_smaller_than {
        opts.repack_smaller_than = Some(parse_size(text).map_err(|_| {
            fatal(format!(
                "invalid number of bytes \"{text}\" for --repack-smaller-than"
            ))
        })?);
    }
    opts.repack_cacheable_only = flags.repack_cacheable_only;
    opts.repack_small = flags.repack_small;
    opts.repack_uncompressed = flags.repack_uncompressed;
    Ok(opts)
}

fn stat_line(label: &str, blobs: u64, bytes: u64) -> String {
    let width = 24usize.saturating_sub(label.len());
    format!("{label}{blobs:>width$} blobs / {}", format_bytes(bytes))
}

fn print_stats(ctx: &Context, s: &PruneStats) {
    if ctx.printer.verbosity >= 2 {
        ctx.printer.print(&format!(
            "\nused:         {:>10} blobs / {}",
            s.used.blobs,
            format_bytes(s.used.bytes)
        ));
        ctx.printer.print(&format!(
            "unused:       {:>10} blobs / {}",
            s.unused.blobs,
            format_bytes(s.unused.bytes)
        ));
        if s.unreferenced_packs > 0 {
            ctx.printer.print(&format!(
                "unreferenced:                    {}",
                format_bytes(s.unreferenced_bytes)
            ));
        }
    }
    ctx.printer.print("");
    ctx.printer
        .print(&stat_line("to repack:", s.repack.blobs, s.repack.bytes));
    ctx.printer.print(&stat_line(
        "this removes:",
        s.repack_remove.blobs,
        s.repack_remove.bytes,
    ));
    ctx.printer.print(&stat_line(
        "to delete:",
        s.remove.blobs,
        s.remove.bytes + s.unreferenced_bytes,
    ));
    ctx.printer.print(&stat_line(
        "total prune:",
        s.remove.blobs + s.repack_remove.blobs,
        s.remove.bytes + s.repack_remove.bytes + s.unreferenced_bytes,
    ));
    ctx.printer.print(&stat_line(
        "remaining:",
        s.remaining.blobs,
        s.remaining.bytes,
    ));
    let percent = if s.remaining.bytes == 0 {
        0.0
    } else {
        100.0 * s.remaining_unused_bytes as f64 / s.remaining.bytes as f64
    };
    ctx.printer.print(&format!(
        "unused size after prune: {} ({percent:.2}% of remaining size)",
        format_bytes(s.remaining_unused_bytes)
    ));
    ctx.printer.print("");
}

/// Prune an opened repository (also used by `forget --prune`).
pub fn run_with_repo(
    ctx: &Context,
    opened: &OpenedRepository,
    flags: &PruneFlags,
    dry_run: bool,
) -> anyhow::Result<()> {
    run_with_repo_opts(ctx, opened, flags, dry_run, false)
}

/// [`run_with_repo`]; `unsafe_recovery` (`--unsafe-recover-no-free-space`)
/// repacks nothing and deletes before it writes.
pub fn run_with_repo_opts(
    ctx: &Context,
    opened: &OpenedRepository,
    flags: &PruneFlags,
    dry_run: bool,
    unsafe_recovery: bool,
) -> anyhow::Result<()> {
    let mut opts = prune_options(flags)?;
    if unsafe_recovery {
        opts.max_repack_bytes = Some(0);
    }
    let repo = &opened.repo;
    ctx.printer.print("loading indexes...");
    let snapshots = repo
        .list_files(restix_engine::backend::FileType::Snapshot)?
        .len();
    ctx.printer.print("loading all snapshots...");
    ctx.printer.print(&format!(
        "finding data that is still in use for {snapshots} snapshots"
    ));
    let start = Instant::now();
    let plan = plan_prune(repo, &opts, ctx.threads.max(2)).map_err(|e| match e {
        PruneError::InvalidOption(m) | PruneError::Damaged(m) => anyhow::Error::from(fatal(m)),
        PruneError::Repo(e) => anyhow::Error::from(e),
    })?;
    if !plan.missing_unneeded.is_empty() {
        // restic 0.18's words (class E).
        ctx.printer
            .error("Missing but unneeded pack files are referenced in the index, will be repaired");
        for id in &plan.missing_unneeded {
            ctx.printer
                .error(&format!("will forget missing pack file {}", id.to_hex()));
        }
    }
    ctx.printer.print(&counter_line(
        start,
        snapshots as u64,
        snapshots as u64,
        "snapshots",
    ));
    ctx.printer.print("");
    ctx.printer.print("searching used packs...");
    ctx.printer
        .print("collecting packs for deletion and repacking");
    let packs = plan.scan.packs.len() as u64;
    ctx.printer
        .print(&counter_line(start, packs, packs, "packs processed"));
    ctx.printer.print("");
    if dry_run {
        ctx.printer
            .print("\nWould have made the following changes:");
    }
    print_stats(ctx, &plan.stats);
    if dry_run {
        return Ok(());
    }
    if plan.is_noop() {
        ctx.printer.print("done");
        return Ok(());
    }
    let mut step_start = Instant::now();
    let mut repack_total = 0u64;
    let mut repacked = 0u64;
    let mut pending: Option<(u64, &'static str)> = None;
    let printer = ctx.printer.clone();
    let finish = |pending: &mut Option<(u64, &'static str)>, start: Instant| {
        if let Some((n, what)) = pending.take() {
            printer.print(&counter_line(start, n, n, what));
        }
    };
    let mut on_step = |step: PruneStep| match step {
        PruneStep::Repacking(n) => {
            printer.print("repacking packs");
            repack_total = n;
            step_start = Instant::now();
        }
        PruneStep::PackRepacked => {
            repacked += 1;
            if repacked == repack_total {
                printer.print(&counter_line(
                    step_start,
                    repacked,
                    repack_total,
                    "packs repacked",
                ));
            }
        }
        PruneStep::RebuildingIndex(n) => {
            finish(&mut pending, step_start);
            printer.print("rebuilding index");
            step_start = Instant::now();
            pending = Some((n, "packs processed"));
        }
        PruneStep::DeletingIndex(n) => {
            finish(&mut pending, step_start);
            printer.print("deleting obsolete index files");
            step_start = Instant::now();
            pending = Some((n, "files deleted"));
        }
        PruneStep::DeletingPacks(n) => {
            finish(&mut pending, step_start);
            printer.print(&format!("removing {n} old packs"));
            step_start = Instant::now();
            pending = Some((n, "files deleted"));
        }
    };
    let executed = if unsafe_recovery {
        execute_prune_without_free_space(repo, &plan, &mut on_step)
    } else {
        execute_prune(repo, &plan, ctx.threads.max(2), &mut on_step)
    };
    executed.map_err(|e| match e {
        PruneError::InvalidOption(m) | PruneError::Damaged(m) => anyhow::Error::from(fatal(m)),
        PruneError::Repo(e) => anyhow::Error::from(e),
    })?;
    finish(&mut pending, step_start);
    ctx.printer.print("done");
    Ok(())
}
