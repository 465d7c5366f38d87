//! `stats` (spec: cli §10.12, JSON §11.3).

use restix_engine::stats::{compute_stats, StatsMode};
use serde::Serialize;

use crate::args::StatsArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::format_bytes;
use crate::snapshot_select::select_snapshots;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// restic 0.18's `statsContainer` JSON.
#[derive(Serialize)]
struct StatsJson {
    total_size: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    total_uncompressed_size: u64,
    #[serde(skip_serializing_if = "is_zero_f64")]
    compression_ratio: f64,
    #[serde(skip_serializing_if = "is_zero_f64")]
    compression_progress: f64,
    #[serde(skip_serializing_if = "is_zero_f64")]
    compression_space_saving: f64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    total_file_count: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    total_blob_count: u64,
    snapshots_count: u64,
}

pub fn run(ctx: &Context, args: &StatsArgs) -> anyhow::Result<()> {
    let mode = StatsMode::parse(&args.mode).ok_or_else(|| {
        fatal(format!(
            "unknown counting mode: {} (use the -h flag to get a list of supported modes)",
            args.mode
        ))
    })?;
    let mut opened = open_repository(ctx, LockMode::Shared)?;
    let all = opened.list_snapshots()?;
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);
    if !selected.is_empty() {
        opened.load_index()?;
    }
    if !ctx.printer.json {
        ctx.printer.print("scanning...");
    }
    let s = compute_stats(&opened.repo, &selected, mode)?;
    opened.unlock();
    if ctx.printer.json {
        ctx.printer.json_line(&StatsJson {
            total_size: s.total_size,
            total_uncompressed_size: s.total_uncompressed_size,
            compression_ratio: s.compression_ratio,
            compression_progress: s.compression_progress,
            compression_space_saving: s.compression_space_saving,
            total_file_count: s.total_file_count,
            total_blob_count: s.total_blob_count,
            snapshots_count: s.snapshots_count,
        });
        return Ok(());
    }
    let mut out = format!("Stats in {} mode:\n", mode.as_str());
    out.push_str(&format!(
        "     Snapshots processed:  {}\n",
        s.snapshots_count
    ));
    if s.total_blob_count > 0 {
        out.push_str(&format!(
            "        Total Blob Count:  {}\n",
            s.total_blob_count
        ));
    }
    if s.total_file_count > 0 {
        out.push_str(&format!(
            "        Total File Count:  {}\n",
            s.total_file_count
        ));
    }
    if s.total_uncompressed_size > 0 {
        out.push_str(&format!(
            " Total Uncompressed Size:  {:<5}\n",
            format_bytes(s.total_uncompressed_size)
        ));
    }
    out.push_str(&format!(
        "              Total Size:  {:<5}\n",
        format_bytes(s.total_size)
    ));
    if s.compression_progress > 0.0 {
        out.push_str(&format!(
            "    Compression Progress:  {:.2}%\n",
            s.compression_progress
        ));
    }
    if s.compression_ratio > 0.0 {
        out.push_str(&format!(
            "       Compression Ratio:  {:.2}x\n",
            s.compression_ratio
        ));
    }
    if s.compression_space_saving > 0.0 {
        out.push_str(&format!(
            "Compression Space Saving:  {:.2}%\n",
            s.compression_space_saving
        ));
    }
    ctx.printer.important(out.trim_end_matches('\n'));
    Ok(())
}
