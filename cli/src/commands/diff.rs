//! `diff` (spec: cli §10.15, JSON §11.10).

use restix_engine::diff::{diff_trees, DiffStat};
use serde::Serialize;

use crate::args::{DiffArgs, SnapshotFilterOptions};
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::format_bytes;
use crate::snapshot_select::select_single;

#[derive(Serialize)]
struct ChangeJson<'a> {
    message_type: &'static str,
    path: &'a str,
    modifier: &'a str,
}

#[derive(Serialize)]
struct StatJson {
    files: u64,
    dirs: u64,
    others: u64,
    data_blobs: u64,
    tree_blobs: u64,
    bytes: u64,
}

impl From<DiffStat> for StatJson {
    fn from(s: DiffStat) -> Self {
        StatJson {
            files: s.files,
            dirs: s.dirs,
            others: s.others,
            data_blobs: s.data_blobs,
            tree_blobs: s.tree_blobs,
            bytes: s.bytes,
        }
    }
}

#[derive(Serialize)]
struct StatisticsJson<'a> {
    message_type: &'static str,
    source_snapshot: &'a str,
    target_snapshot: &'a str,
    changed_files: u64,
    added: StatJson,
    removed: StatJson,
}

pub fn run(ctx: &Context, args: &DiffArgs) -> anyhow::Result<()> {
    let [first, second] = args.args.as_slice() else {
        return Err(fatal("specify two snapshot IDs").into());
    };
    let mut opened = open_repository(ctx, LockMode::Shared)?;
    let none = SnapshotFilterOptions::default();
    let (id1, _, tree1) = select_single(ctx, &opened, first, &none)?;
    let (id2, _, tree2) = select_single(ctx, &opened, second, &none)?;
    if !ctx.printer.json {
        ctx.printer.print(&format!(
            "comparing snapshot {} to {}:\n\n",
            id1.short(),
            id2.short()
        ));
    }
    let printer = ctx.printer.clone();
    let result = diff_trees(
        &opened.repo,
        &tree1,
        &tree2,
        args.metadata,
        &mut |path, modifier| {
            if printer.json {
                printer.json_line(&ChangeJson {
                    message_type: "change",
                    path,
                    modifier,
                });
            } else {
                printer.important(&format!("{modifier:<5}{path}"));
            }
        },
    )?;
    opened.unlock();
    if ctx.printer.json {
        ctx.printer.json_line(&StatisticsJson {
            message_type: "statistics",
            source_snapshot: first,
            target_snapshot: second,
            changed_files: result.changed_files,
            added: result.added.into(),
            removed: result.removed.into(),
        });
        return Ok(());
    }
    let (a, r) = (result.added, result.removed);
    let mut out = String::from("\n");
    out.push_str(&format!(
        "Files:       {:>5} new, {:>5} removed, {:>5} changed\n",
        a.files, r.files, result.changed_files
    ));
    out.push_str(&format!(
        "Dirs:        {:>5} new, {:>5} removed\n",
        a.dirs, r.dirs
    ));
    out.push_str(&format!(
        "Others:      {:>5} new, {:>5} removed\n",
        a.others, r.others
    ));
    out.push_str(&format!(
        "Data Blobs:  {:>5} new, {:>5} removed\n",
        a.data_blobs, r.data_blobs
    ));
    out.push_str(&format!(
        "Tree Blobs:  {:>5} new, {:>5} removed\n",
        a.tree_blobs, r.tree_blobs
    ));
    out.push_str(&format!("  Added:   {:<5}\n", format_bytes(a.bytes)));
    out.push_str(&format!("  Removed: {:<5}", format_bytes(r.bytes)));
    ctx.printer.print(&out);
    Ok(())
}
