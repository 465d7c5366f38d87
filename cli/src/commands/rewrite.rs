//! `rewrite` (restic cmd_rewrite.go): new versions of snapshots without the
//! files the exclude patterns match, with a new host or time, or with a
//! summary record; the new snapshot keeps `original` (the old ID) and gets
//! the tag `rewrite` unless `--forget` removes the old one.

use restix_engine::archiver::ExcludeMatcher;
use restix_engine::rewrite::{
    replace_snapshot, rewritten_summary, Change, RewriteError, TreeRewriter,
};

use crate::args::{ExcludePatternOptions, RewriteArgs};
use crate::context::Context;
use crate::engine_glue::{open_repository_dry_run, LockMode};
use crate::errors::fatal;
use crate::rewrite_report::{report_outcome, report_total, snapshot_line};
use crate::snapshot_select::select_snapshots;
use crate::timefmt::parse_local_time;

/// The exclude rules of `--exclude`, `--iexclude` and their `-file`
/// variants (restic `ExcludePatternOptions.CollectPatterns`).
pub fn exclude_matcher(options: &ExcludePatternOptions) -> anyhow::Result<ExcludeMatcher> {
    let mut excludes = options.exclude.clone();
    for file in &options.exclude_file {
        excludes.extend(crate::patterns::read_pattern_file(file)?);
    }
    let mut iexcludes = options.iexclude.clone();
    for file in &options.iexclude_file {
        iexcludes.extend(crate::patterns::read_pattern_file(file)?);
    }
    Ok(ExcludeMatcher::new(&excludes).with_insensitive(&iexcludes))
}

fn excludes_given(options: &ExcludePatternOptions) -> bool {
    !(options.exclude.is_empty()
        && options.iexclude.is_empty()
        && options.exclude_file.is_empty()
        && options.iexclude_file.is_empty())
}

pub fn run(ctx: &Context, args: &RewriteArgs) -> anyhow::Result<()> {
    let new_host = args.new_host.clone().filter(|h| !h.is_empty());
    let new_time = args.new_time.clone().filter(|t| !t.is_empty());
    if !args.snapshot_summary
        && !excludes_given(&args.excludes)
        && new_host.is_none()
        && new_time.is_none()
    {
        return Err(
            fatal("Nothing to do: no excludes provided and no new metadata provided").into(),
        );
    }
    let p = &ctx.printer;
    let lock = if args.forget {
        p.print("create exclusive lock for repository");
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let mut opened = open_repository_dry_run(ctx, lock, args.dry_run)?;
    let all = opened.list_snapshots()?;
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);
    opened.load_index()?;
    let repo = opened.repo.clone();

    let filtering = excludes_given(&args.excludes) || args.snapshot_summary;
    let mut changed = 0u64;
    for (id, snapshot) in &selected {
        p.print(&format!("\n{}", snapshot_line(id, snapshot)));
        let failed = |e: anyhow::Error| {
            fatal(format!(
                "unable to rewrite snapshot ID {:?}: {e:#}",
                id.short()
            ))
        };
        let Some(root) = snapshot.tree else {
            return Err(failed(RewriteError::NoTree(id.short()).into()).into());
        };
        // restic reads the pattern files and the new time for every snapshot.
        let excludes = exclude_matcher(&args.excludes).map_err(failed)?;
        let time = match &new_time {
            Some(text) => Some(
                parse_local_time(text)
                    .map_err(|e| failed(fatal(format!("error in time option: {e}\n")).into()))?,
            ),
            None => None,
        };
        let (tree, summary) = if filtering {
            let mut rewriter = TreeRewriter::new(&repo)
                .keep(|node, path| {
                    if excludes.is_excluded_by_name(path) {
                        p.print(&format!("excluding {}", String::from_utf8_lossy(path)));
                        None
                    } else {
                        Some(node)
                    }
                })
                .count_files();
            let tree = rewriter
                .rewrite(b"/", Some(&root))
                .map_err(|e| failed(e.into()))?;
            let summary =
                rewritten_summary(snapshot.summary.as_ref(), rewriter.files, rewriter.bytes);
            (tree, Some(summary))
        } else {
            (Some(root), None)
        };
        let change = Change {
            time,
            hostname: new_host.clone(),
            tag: "rewrite",
            forget: args.forget,
            dry_run: args.dry_run,
        };
        let outcome = replace_snapshot(&repo, id, snapshot, tree, summary, &change)
            .map_err(|e| failed(e.into()))?;
        if report_outcome(p, id, &outcome, &change) {
            changed += 1;
        }
    }
    opened.unlock();
    report_total(p, changed, args.dry_run);
    Ok(())
}
