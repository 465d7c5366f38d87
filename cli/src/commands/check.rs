//! `check` (spec: cli §10.8, JSON §11.7).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use restix_engine::check::{
    check_packs, read_pack, scan_index, unused_blobs, walk_trees, Problem, ProblemKind, ReadSubset,
};
use restix_repo_format::Id;
use serde::Serialize;

use super::forget::counter_line;
use super::Context;
use crate::args::CheckArgs;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::{exit_code, fatal, CliError};

#[derive(Serialize)]
struct ErrorLine<'a> {
    message_type: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct Summary {
    message_type: &'static str,
    num_errors: u64,
    broken_packs: Option<Vec<String>>,
    suggest_repair_index: bool,
    suggest_prune: bool,
}

pub fn run(ctx: &Context, args: &CheckArgs) -> anyhow::Result<()> {
    if args.read_data && args.read_data_subset.is_some() {
        return Err(fatal(
            "check flags --read-data and --read-data-subset cannot be used together",
        )
        .into());
    }
    let subset = match &args.read_data_subset {
        Some(text) => Some(ReadSubset::parse(text).ok_or_else(|| {
            fatal("check flag --read-data-subset has invalid value, please see documentation")
        })?),
        None if args.read_data => Some(ReadSubset::All),
        None => None,
    };
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    if !ctx.global.no_lock {
        ctx.printer.print("create exclusive lock for repository");
    }
    let repo = opened.repo.clone();
    let printer = &ctx.printer;
    let mut num_errors = 0u64;
    let mut broken_packs: Vec<Id> = Vec::new();
    let mut suggest_repair_index = false;
    let mut suggest_prune = false;
    let report = |p: &Problem| {
        if printer.json {
            printer.json_error_line(&ErrorLine {
                message_type: "error",
                message: &p.message,
            });
        } else {
            printer.error(&p.message);
        }
    };

    printer.print("load indexes");
    let scan = scan_index(&repo);
    let (mixed, duplicates): (Vec<&Problem>, Vec<&Problem>) = scan
        .hints
        .iter()
        .partition(|h| h.kind == ProblemKind::MixedPack);
    for hint in &duplicates {
        printer.print(&hint.message);
        suggest_repair_index = true;
    }
    if !duplicates.is_empty() {
        printer.print("This is non-critical, you can run `restic repair index' to correct this");
    }
    for hint in &mixed {
        printer.print(&hint.message);
    }
    if !mixed.is_empty() {
        printer.print("Mixed packs with tree and data blobs are non-critical, you can run `restic prune` to correct this.");
    }
    for e in &scan.errors {
        report(e);
        num_errors += 1;
    }

    printer.print("check all packs");
    let packs = check_packs(&repo, &scan)?;
    for e in &packs.errors {
        report(e);
        num_errors += 1;
        broken_packs.push(e.id);
    }
    for o in &packs.orphaned {
        printer.print(&o.message);
    }
    if !packs.orphaned.is_empty() {
        suggest_prune = true;
        printer.print(&format!(
            "{} additional files were found in the repo, which likely contain duplicate data.\nThis is non-critical, you can run `restic prune` to correct this.",
            packs.orphaned.len()
        ));
    }

    printer.print("check snapshots, trees and blobs");
    let start = Instant::now();
    let snapshot_ids = repo.list_files(restix_engine::backend::FileType::Snapshot)?;
    let mut roots = Vec::new();
    for id in &snapshot_ids {
        match repo.load_snapshot(id) {
            Ok(s) => match s.tree {
                Some(t) => roots.push(t),
                None => {
                    report(&Problem {
                        kind: ProblemKind::SnapshotUnreadable,
                        id: *id,
                        message: format!("snapshot {} has no tree", id.short()),
                    });
                    num_errors += 1;
                }
            },
            Err(e) => {
                report(&Problem {
                    kind: ProblemKind::SnapshotUnreadable,
                    id: *id,
                    message: format!("failed to load snapshot {}: {e}", id.short()),
                });
                num_errors += 1;
            }
        }
    }
    let walk = walk_trees(&repo, &scan.index, &roots, ctx.threads.max(2));
    printer.print(&counter_line(
        start,
        snapshot_ids.len() as u64,
        snapshot_ids.len() as u64,
        "snapshots",
    ));
    if !printer.json {
        printer.print("");
    }
    // Tree errors are grouped by tree, like restic's "error for tree".
    let mut by_tree: Vec<(Id, Vec<&Problem>)> = Vec::new();
    for e in &walk.errors {
        match by_tree.iter_mut().find(|(id, _)| *id == e.id) {
            Some((_, list)) => list.push(e),
            None => by_tree.push((e.id, vec![e])),
        }
        num_errors += 1;
    }
    for (tree, problems) in by_tree {
        if printer.json {
            for p in problems {
                report(p);
            }
        } else {
            let mut text = format!("error for tree {}:", tree.short());
            for p in problems {
                text.push_str(&format!("\n  {}", p.message));
            }
            printer.error(&text);
        }
    }
    if args.check_unused {
        for u in unused_blobs(&scan.index, &walk) {
            report(&u);
            num_errors += 1;
        }
    }

    if let Some(subset) = subset {
        let all: Vec<(Id, u64)> = scan
            .packs
            .keys()
            .filter_map(|id| packs.sizes.get(id).map(|s| (*id, *s)))
            .collect();
        let chosen = subset.select(&all);
        match subset {
            ReadSubset::All => printer.print("read all data"),
            ReadSubset::Group(n, t) => printer.print(&format!(
                "read group #{n} of {} data packs (out of total {} packs in {t} groups)",
                chosen.len(),
                all.len()
            )),
            ReadSubset::Percent(p) => printer.print(&format!("read {p:.1}% of data packs")),
            ReadSubset::Bytes(b) => printer.print(&format!("read {b} bytes of data packs")),
        }
        let start = Instant::now();
        let done = AtomicU64::new(0);
        let workers = repo.backend().connections().max(ctx.threads).max(2);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()?;
        let results: Vec<Vec<Problem>> = pool.install(|| {
            use rayon::prelude::*;
            chosen
                .par_iter()
                .map(|id| {
                    let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
                    let r = read_pack(&repo, id, blobs);
                    done.fetch_add(1, Ordering::Relaxed);
                    r
                })
                .collect()
        });
        printer.print(&counter_line(
            start,
            done.load(Ordering::Relaxed),
            chosen.len() as u64,
            "packs",
        ));
        if !printer.json {
            printer.print("");
        }
        for problems in results {
            if let Some(first) = problems.first() {
                broken_packs.push(first.id);
            }
            for p in problems {
                report(&p);
                num_errors += 1;
            }
        }
    }

    opened.unlock();
    if printer.json {
        broken_packs.sort();
        broken_packs.dedup();
        printer.json_line(&Summary {
            message_type: "summary",
            num_errors,
            broken_packs: (!broken_packs.is_empty())
                .then(|| broken_packs.iter().map(Id::to_hex).collect()),
            suggest_repair_index,
            suggest_prune,
        });
    }
    if num_errors > 0 {
        if !printer.json {
            printer.error("The repository is damaged and must be repaired. Please follow the troubleshooting guide at https://restic.readthedocs.io/en/stable/077_troubleshooting.html .");
        }
        return Err(
            CliError::plain(exit_code::FAILURE, "Fatal: repository contains errors").into(),
        );
    }
    printer.print("no errors were found");
    Ok(())
}
