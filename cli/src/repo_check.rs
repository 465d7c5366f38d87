//! The repository check behind `check` and `migrate` (spec: cli §10.8,
//! JSON §11.7): index files, packs, snapshots and trees, optionally pack
//! contents, with restic's messages, `--json` error and summary lines and
//! the final "no errors were found" / "repository contains errors".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use restix_engine::check::{
    check_packs, read_pack, scan_index, walk_trees, Problem, ProblemKind, ReadSubset,
};
use restix_engine::repository::Repository;
use restix_repo_format::Id;
use serde::Serialize;

use crate::counter::counter_line;
use crate::errors::{exit_code, CliError};
use crate::output::Printer;

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

/// Check `repo` (index loaded or not) and print the findings; an error
/// (exit 1, "Fatal: repository contains errors") if anything is damaged.
/// `subset`: which pack files to read in full (`--read-data[-subset]`).
pub fn check_repository(
    repo: &Repository,
    printer: &Printer,
    threads: usize,
    subset: Option<ReadSubset>,
) -> anyhow::Result<()> {
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
    let scan = scan_index(repo);
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
    let packs = check_packs(repo, &scan)?;
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
    let walk = walk_trees(repo, &scan.index, &roots, threads.max(2));
    printer.print(&counter_line(
        start.elapsed(),
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
        let workers = repo.backend().connections().max(threads).max(2);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()?;
        let results: Vec<Vec<Problem>> = pool.install(|| {
            use rayon::prelude::*;
            chosen
                .par_iter()
                .map(|id| {
                    let blobs = scan.packs.get(id).map(Vec::as_slice).unwrap_or(&[]);
                    let r = read_pack(repo, id, blobs);
                    done.fetch_add(1, Ordering::Relaxed);
                    r
                })
                .collect()
        });
        printer.print(&counter_line(
            start.elapsed(),
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
