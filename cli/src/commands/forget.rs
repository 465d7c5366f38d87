//! `forget` (spec: cli §10.6, JSON §11.6).

use std::time::Instant;

use restix_engine::backend::FileType;
use restix_engine::forget::{
    apply_policy, group_snapshots, parse_keep_count, CalendarDuration, GroupBy, KeepPolicy,
    PolicyResult,
};
use restix_engine::selection::SnapshotFilter;
use restix_repo_format::{Id, Snapshot};
use serde::Serialize;

use crate::args::ForgetArgs;
use crate::context::Context;
use crate::counter::counter_line_with_total;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::{exit_code, fatal, CliError};
use crate::snapshot_select::select_snapshots;
use crate::snapshot_view::snapshot_table_with_reasons;
use crate::snapshot_view::SnapshotJson;

fn count_flag(value: &Option<String>, flag: &str) -> anyhow::Result<i64> {
    match value {
        None => Ok(0),
        Some(text) => parse_keep_count(text).map_err(|e| {
            CliError::plain(
                exit_code::FAILURE,
                format!("invalid argument \"{text}\" for \"--{flag}\" flag: {e}"),
            )
            .into()
        }),
    }
}

fn duration_flag(value: &Option<String>, flag: &str) -> anyhow::Result<CalendarDuration> {
    match value {
        None => Ok(CalendarDuration::default()),
        Some(text) => CalendarDuration::parse(text).map_err(|e| {
            CliError::plain(
                exit_code::FAILURE,
                format!("invalid argument \"{text}\" for \"--{flag}\" flag: {e}"),
            )
            .into()
        }),
    }
}

/// The policy given by the `--keep-*` flags.
pub fn policy_from_args(args: &ForgetArgs) -> anyhow::Result<KeepPolicy> {
    Ok(KeepPolicy {
        last: count_flag(&args.keep_last, "keep-last")?,
        hourly: count_flag(&args.keep_hourly, "keep-hourly")?,
        daily: count_flag(&args.keep_daily, "keep-daily")?,
        weekly: count_flag(&args.keep_weekly, "keep-weekly")?,
        monthly: count_flag(&args.keep_monthly, "keep-monthly")?,
        yearly: count_flag(&args.keep_yearly, "keep-yearly")?,
        within: duration_flag(&args.keep_within, "keep-within")?,
        within_hourly: duration_flag(&args.keep_within_hourly, "keep-within-hourly")?,
        within_daily: duration_flag(&args.keep_within_daily, "keep-within-daily")?,
        within_weekly: duration_flag(&args.keep_within_weekly, "keep-within-weekly")?,
        within_monthly: duration_flag(&args.keep_within_monthly, "keep-within-monthly")?,
        within_yearly: duration_flag(&args.keep_within_yearly, "keep-within-yearly")?,
        tags: args
            .keep_tag
            .iter()
            // restic's splitTagList: trimmed, empty entries kept ("" = untagged).
            .map(|l| l.split(',').map(|t| t.trim().to_string()).collect())
            .collect(),
    })
}

#[derive(Serialize)]
struct KeepReasonJson<'a> {
    snapshot: SnapshotJson<'a>,
    matches: &'a [String],
}

#[derive(Serialize)]
struct ForgetGroupJson<'a> {
    tags: Option<&'a Vec<String>>,
    host: &'a str,
    paths: Option<&'a Vec<String>>,
    keep: Option<Vec<SnapshotJson<'a>>>,
    remove: Option<Vec<SnapshotJson<'a>>>,
    reasons: Option<Vec<KeepReasonJson<'a>>>,
}

/// Go's `%v` of an `IDSet`: `{id8 id8}` sorted.
fn id_set_text(ids: &[Id]) -> String {
    let mut shorts: Vec<String> = ids.iter().map(Id::short).collect();
    shorts.sort();
    format!("{{{}}}", shorts.join(" "))
}

/// The arguments that name a damaged snapshot file (full ID or a prefix no
/// loadable snapshot shares), and the other arguments.
fn split_damaged(
    args: &[String],
    all: &[(Id, Snapshot)],
    damaged: &[Id],
) -> (Vec<Id>, Vec<String>) {
    let mut found = Vec::new();
    let mut rest = Vec::new();
    for arg in args {
        let prefix = arg.to_ascii_lowercase();
        let good = all.iter().any(|(id, _)| id.to_hex().starts_with(&prefix));
        let matching: Vec<&Id> = damaged
            .iter()
            .filter(|id| !prefix.is_empty() && id.to_hex().starts_with(&prefix))
            .collect();
        match matching.as_slice() {
            [one] if !good && arg != "latest" => found.push(**one),
            _ => rest.push(arg.clone()),
        }
    }
    (found, rest)
}

pub fn run(ctx: &Context, args: &ForgetArgs) -> anyhow::Result<()> {
    let policy = policy_from_args(args)?;
    let group_by =
        GroupBy::parse(args.group_by.as_deref().unwrap_or("host,paths")).map_err(fatal)?;
    if ctx.global.no_lock && !args.dry_run {
        return Err(fatal(
            "--no-lock is only applicable in combination with --dry-run for forget command",
        )
        .into());
    }
    if args.unsafe_allow_remove_all {
        let no_filter = args.host.is_empty() && args.tag.is_empty() && args.path.is_empty();
        if no_filter && args.ids.is_empty() {
            return Err(fatal("--unsafe-allow-remove-all is not allowed unless a snapshot filter option is specified").into());
        }
    }
    if policy.is_empty() && args.ids.is_empty() && !args.unsafe_allow_remove_all {
        return Err(fatal("no policy was specified, no snapshots will be removed").into());
    }
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let (all, damaged) = opened.list_snapshots_and_damaged()?;
    // A damaged snapshot file named explicitly is removed: it cannot be
    // loaded, so no policy or filter can apply to it (issue #21).
    let (damaged_ids, ids) = split_damaged(&args.ids, &all, &damaged);
    for id in &damaged_ids {
        if args.dry_run {
            ctx.printer.print(&format!(
                "would remove damaged snapshot file {}",
                id.short()
            ));
        } else {
            opened.repo.remove_file(FileType::Snapshot, id)?;
            ctx.printer
                .print(&format!("removed damaged snapshot file {}", id.short()));
        }
    }
    if !damaged_ids.is_empty() && ids.is_empty() {
        return Ok(());
    }
    let args = &ForgetArgs {
        ids,
        ..args.clone()
    };
    let mut hosts = args.host.clone();
    if hosts.is_empty() {
        if let Some(host) = std::env::var("RESTIC_HOST").ok().filter(|h| !h.is_empty()) {
            hosts.push(host);
        }
    }
    let filter = SnapshotFilter::from_args(&hosts, &args.tag, &args.path);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);

    let mut to_remove: Vec<Id> = Vec::new();
    if !args.ids.is_empty() {
        // Explicit IDs: removed directly, no policy.
        to_remove = selected.iter().map(|(id, _)| *id).collect();
    } else {
        ctx.printer.print(&format!("Applying Policy: {policy}"));
        let groups = group_snapshots(selected, group_by);
        let mut results = Vec::new();
        for (key, list) in groups {
            if ctx.printer.verbosity >= 2 && !ctx.printer.json {
                ctx.printer
                    .important(&format!("snapshots for ({}):", key.header()));
            }
            let result = if policy.is_empty() {
                // --unsafe-allow-remove-all without a policy: everything goes.
                let mut list = list;
                list.sort_by_key(|e| std::cmp::Reverse(e.1.time.unix_nanos()));
                PolicyResult {
                    keep: Vec::new(),
                    remove: list,
                }
            } else {
                apply_policy(list, &policy)
            };
            if result.keep.is_empty() && !args.unsafe_allow_remove_all {
                return Err(CliError::plain(
                    exit_code::FAILURE,
                    format!(
                        "refusing to delete last snapshot of snapshot group \"{}\"",
                        key.describe()
                    ),
                )
                .into());
            }
            if !ctx.printer.json && ctx.printer.verbosity >= 1 {
                if !result.keep.is_empty() {
                    ctx.printer
                        .print(&format!("keep {} snapshots:", result.keep.len()));
                    let rows: Vec<_> = result
                        .keep
                        .iter()
                        .map(|(id, s, r)| (id, s, Some(r.as_slice())))
                        .collect();
                    ctx.printer
                        .print(&snapshot_table_with_reasons(&rows, args.compact));
                    ctx.printer.print("");
                }
                if !result.remove.is_empty() {
                    ctx.printer
                        .print(&format!("remove {} snapshots:", result.remove.len()));
                    let rows: Vec<_> = result.remove.iter().map(|(id, s)| (id, s, None)).collect();
                    ctx.printer
                        .print(&snapshot_table_with_reasons(&rows, args.compact));
                    ctx.printer.print("");
                }
            }
            to_remove.extend(result.remove.iter().map(|(id, _)| *id));
            results.push((key, result));
        }
        if ctx.printer.json && !results.is_empty() {
            let groups: Vec<ForgetGroupJson> = results
                .iter()
                .map(|(key, r)| {
                    let keep: Vec<SnapshotJson> = r
                        .keep
                        .iter()
                        .map(|(id, s, _)| SnapshotJson::new(id, s))
                        .collect();
                    let remove: Vec<SnapshotJson> = r
                        .remove
                        .iter()
                        .map(|(id, s)| SnapshotJson::new(id, s))
                        .collect();
                    let reasons: Vec<KeepReasonJson> = r
                        .keep
                        .iter()
                        .map(|(id, s, m)| KeepReasonJson {
                            snapshot: SnapshotJson::new(id, s),
                            matches: m,
                        })
                        .collect();
                    ForgetGroupJson {
                        tags: key.tags.as_ref(),
                        host: &key.hostname,
                        paths: key.paths.as_ref(),
                        keep: (!keep.is_empty()).then_some(keep),
                        remove: (!remove.is_empty()).then_some(remove),
                        reasons: (!reasons.is_empty()).then_some(reasons),
                    }
                })
                .collect();
            ctx.printer.json_line(&groups);
        }
    }

    if !to_remove.is_empty() {
        if args.dry_run {
            if !ctx.printer.json {
                ctx.printer.print(&format!(
                    "Would have removed the following snapshots:\n{}\n",
                    id_set_text(&to_remove)
                ));
            }
        } else {
            let start = Instant::now();
            let mut done = 0u64;
            for id in &to_remove {
                match opened.repo.remove_file(FileType::Snapshot, id) {
                    Ok(()) => {
                        done += 1;
                        ctx.printer
                            .very_verbose(&format!("removed snapshot/{}", id.to_hex()));
                    }
                    Err(e) => {
                        ctx.printer.error(&format!(
                            "unable to remove snapshot/{} from the repository: {e}",
                            id.to_hex()
                        ));
                    }
                }
            }
            if !ctx.printer.json {
                ctx.printer.print(&counter_line_with_total(
                    start,
                    done,
                    to_remove.len() as u64,
                    "files deleted",
                ));
            }
            if done < to_remove.len() as u64 {
                return Err(CliError::plain(exit_code::PARTIAL_BACKUP, "").into());
            }
        }
    }

    if !to_remove.is_empty() && args.prune {
        if args.dry_run {
            ctx.printer.print(&format!(
                "{} snapshots would be removed, running prune dry run",
                to_remove.len()
            ));
        } else {
            ctx.printer.print(&format!(
                "{} snapshots have been removed, running prune",
                to_remove.len()
            ));
        }
        crate::pruning::run_with_repo(ctx, &opened, &args.prune_options, args.dry_run)?;
    }
    opened.unlock();
    Ok(())
}
