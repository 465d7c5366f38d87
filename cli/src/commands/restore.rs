//! `restore` (spec: cli §10.4, JSON §11.5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restix_engine::restorer::{
    FilterPattern, ItemAction, Overwrite, RestoreOptions, RestoreProgress, RestoreSummary, Restorer,
};
use restix_engine::selection::split_snapshot_arg;
use serde::Serialize;

use crate::args::RestoreArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::{exit_code, fatal, CliError};
use crate::output::{format_bytes, format_duration, Printer};
use crate::timefmt::go_time_string;

use crate::progress::{RestoreStatusJson, RestoreSummaryJson};

#[derive(Serialize)]
struct ErrorJson<'a> {
    message_type: &'static str,
    error: ErrorMessage<'a>,
    during: &'static str,
    item: &'a str,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    message: &'a str,
}

/// Counters shared with the restorer's worker threads.
struct Progress {
    printer: Printer,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    files_restored: AtomicU64,
    bytes_restored: AtomicU64,
    files_skipped: AtomicU64,
    bytes_skipped: AtomicU64,
    files_deleted: AtomicU64,
    /// Serialises lines printed from several threads.
    output: Mutex<()>,
}

impl RestoreProgress for Progress {
    fn planned(&self, total_files: u64, total_bytes: u64) {
        self.total_files.store(total_files, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
    }

    fn item_done(&self, path: &[u8], action: ItemAction, size: u64) {
        match action {
            ItemAction::FileUnchanged => {
                self.files_skipped.fetch_add(1, Ordering::Relaxed);
                self.bytes_skipped.fetch_add(size, Ordering::Relaxed);
            }
            ItemAction::Deleted => {
                self.files_deleted.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.files_restored.fetch_add(1, Ordering::Relaxed);
            }
        }
        let path = String::from_utf8_lossy(path);
        let _guard = self.output.lock();
        if self.printer.json {
            if self.printer.verbosity >= 3 {
                #[derive(Serialize)]
                struct Verbose<'a> {
                    message_type: &'static str,
                    action: &'static str,
                    item: &'a str,
                    size: u64,
                }
                self.printer.json_line(&Verbose {
                    message_type: "verbose_status",
                    action: action.verb(),
                    item: &path,
                    size,
                });
            }
        } else if action.shows_size() {
            self.printer.very_verbose(&format!(
                "{:<9} {path} with size {}",
                action.verb(),
                format_bytes(size)
            ));
        } else {
            self.printer
                .very_verbose(&format!("{:<9} {path}", action.verb()));
        }
    }

    fn bytes_restored(&self, n: u64) {
        self.bytes_restored.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, path: &[u8], message: &str) {
        let path = String::from_utf8_lossy(path);
        let _guard = self.output.lock();
        if self.printer.json {
            self.printer.json_error_line(&ErrorJson {
                message_type: "error",
                error: ErrorMessage { message },
                during: "restore",
                item: &path,
            });
        } else {
            self.printer
                .error(&format!("ignoring error for {path}: {message}"));
        }
    }
}

impl Progress {
    fn status(&self, elapsed: Duration) -> RestoreStatusJson {
        let total_bytes = self.total_bytes.load(Ordering::Relaxed);
        let bytes_restored = self.bytes_restored.load(Ordering::Relaxed);
        RestoreStatusJson {
            message_type: "status",
            seconds_elapsed: elapsed.as_secs(),
            percent_done: if total_bytes == 0 {
                0.0
            } else {
                (bytes_restored as f64 / total_bytes as f64).min(1.0)
            },
            total_files: self.total_files.load(Ordering::Relaxed),
            files_restored: self.files_restored.load(Ordering::Relaxed),
            files_skipped: self.files_skipped.load(Ordering::Relaxed),
            files_deleted: self.files_deleted.load(Ordering::Relaxed),
            total_bytes,
            bytes_restored,
            bytes_skipped: self.bytes_skipped.load(Ordering::Relaxed),
        }
    }
}

/// What the shared status reporter prints for a restore.
impl crate::progress::StatusSource for Progress {
    fn status(&self, elapsed: Duration) -> Option<crate::progress::Status> {
        let status = Progress::status(self, elapsed);
        Some(crate::progress::Status {
            text: crate::progress::restore_line(&status),
            json: crate::output::to_go_json(&status),
        })
    }

    fn output_lock(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        Some(self.output.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub fn run(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<()> {
    if let Some(format) = &args.image.format {
        return crate::image_mode::run_restore(ctx, args, format);
    }
    let snapshot_arg = match args.args.as_slice() {
        [] => return Err(fatal("no snapshot ID specified").into()),
        [one] => one,
        many => {
            return Err(fatal(format!(
                "more than one snapshot ID specified: [{}]",
                many.join(" ")
            ))
            .into())
        }
    };
    let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) else {
        return Err(fatal("please specify a directory to restore to (--target)").into());
    };
    let has_include = !args.include.is_empty()
        || !args.iinclude.is_empty()
        || !args.include_file.is_empty()
        || !args.iinclude_file.is_empty();
    let has_exclude = !args.exclude.is_empty()
        || !args.iexclude.is_empty()
        || !args.exclude_file.is_empty()
        || !args.iexclude_file.is_empty();
    if has_include && has_exclude {
        return Err(fatal("exclude and include patterns are mutually exclusive").into());
    }
    if args.dry_run && args.verify {
        return Err(fatal("--dry-run and --verify are mutually exclusive").into());
    }
    let overwrite = match args.overwrite.as_deref() {
        None => Overwrite::Always,
        Some(value) => Overwrite::parse(value).ok_or_else(|| {
            // pflag's wording for a value its `Set` refuses.
            CliError::plain(
                exit_code::FAILURE,
                format!("invalid argument {value:?} for \"--overwrite\" flag: invalid overwrite behavior {value:?}, must be one of (always|if-changed|if-newer|never)"),
            )
        })?,
    };
    if args.delete
        && std::path::Path::new(target) == std::path::Path::new("/")
        && !has_include
        && !has_exclude
    {
        return Err(fatal(
            "'--target / --delete' must be combined with an include or exclude filter",
        )
        .into());
    }
    let mut include: Vec<FilterPattern> =
        args.include.iter().map(|p| FilterPattern::new(p)).collect();
    include.extend(
        args.iinclude
            .iter()
            .map(|p| FilterPattern::new_case_insensitive(p)),
    );
    for file in &args.include_file {
        include.extend(
            crate::patterns::read_pattern_file(file)?
                .iter()
                .map(|p| FilterPattern::new(p)),
        );
    }
    for file in &args.iinclude_file {
        include.extend(
            crate::patterns::read_pattern_file(file)?
                .iter()
                .map(|p| FilterPattern::new_case_insensitive(p)),
        );
    }
    let mut exclude: Vec<FilterPattern> =
        args.exclude.iter().map(|p| FilterPattern::new(p)).collect();
    exclude.extend(
        args.iexclude
            .iter()
            .map(|p| FilterPattern::new_case_insensitive(p)),
    );
    for file in &args.exclude_file {
        exclude.extend(
            crate::patterns::read_pattern_file(file)?
                .iter()
                .map(|p| FilterPattern::new(p)),
        );
    }
    for file in &args.iexclude_file {
        exclude.extend(
            crate::patterns::read_pattern_file(file)?
                .iter()
                .map(|p| FilterPattern::new_case_insensitive(p)),
        );
    }

    let opened = open_repository(ctx, LockMode::Shared)?;
    let (id, snapshot, _) =
        crate::snapshot_select::select_single(ctx, &opened, snapshot_arg, &args.filter)?;
    let (_, subfolder) = split_snapshot_arg(snapshot_arg);
    let root = snapshot.tree.ok_or_else(|| fatal("snapshot has no tree"))?;
    ctx.printer.print(&format!(
        "restoring snapshot {} of [{}] at {} by {}@{} to {target}",
        id.short(),
        snapshot.paths.join(" "),
        go_time_string(snapshot.time),
        snapshot.username,
        snapshot.hostname
    ));

    let mut options = RestoreOptions::new(target);
    options.include = include;
    options.exclude = exclude;
    // Workers decrypt and write, and wait on the backend: at least one per
    // backend connection, so a remote repository has as many pack reads in
    // flight as it allows (issue #20: latency must not dominate).
    options.threads = (ctx.threads.max(1) * 2).max(opened.repo.backend().connections());
    options.verify = args.verify;
    options.sparse = args.sparse;
    options.overwrite = overwrite;
    options.delete = args.delete;
    options.dry_run = args.dry_run;
    // restic checks the xattr patterns once the snapshot is found.
    if !args.include_xattr.is_empty() && !args.exclude_xattr.is_empty() {
        return Err(fatal("exclude and include xattr patterns are mutually exclusive").into());
    }
    options.xattr_include = args
        .include_xattr
        .iter()
        .map(|p| FilterPattern::new(p))
        .collect();
    options.xattr_exclude = args
        .exclude_xattr
        .iter()
        .map(|p| FilterPattern::new(p))
        .collect();
    let restorer = Restorer::new(Arc::clone(&opened.repo), options).map_err(fatal)?;
    let progress = Arc::new(Progress {
        printer: ctx.printer.clone(),
        total_files: AtomicU64::new(0),
        total_bytes: AtomicU64::new(0),
        files_restored: AtomicU64::new(0),
        bytes_restored: AtomicU64::new(0),
        files_skipped: AtomicU64::new(0),
        bytes_skipped: AtomicU64::new(0),
        files_deleted: AtomicU64::new(0),
        output: Mutex::new(()),
    });
    let start = Instant::now();
    let reporter = crate::progress::Reporter::start_at(&ctx.printer, progress.clone(), start);
    let result = restorer.restore(&root, subfolder.map(str::as_bytes), progress.as_ref());
    reporter.finish(false);
    let summary: RestoreSummary = result.map_err(fatal)?;
    let elapsed = start.elapsed();
    if ctx.printer.json {
        ctx.printer.json_line(&RestoreSummaryJson {
            message_type: "summary",
            seconds_elapsed: elapsed.as_secs(),
            total_files: summary.total_files,
            files_restored: summary.files_restored,
            files_skipped: summary.files_skipped,
            files_deleted: summary.files_deleted,
            total_bytes: summary.total_bytes,
            bytes_restored: summary.bytes_restored,
            bytes_skipped: summary.bytes_skipped,
        });
    } else {
        let counts = if summary.files_restored == summary.total_files
            && summary.bytes_restored == summary.total_bytes
        {
            format!(
                "{} files/dirs ({})",
                summary.total_files,
                format_bytes(summary.total_bytes)
            )
        } else {
            format!(
                "{} / {} files/dirs ({} / {})",
                summary.files_restored,
                summary.total_files,
                format_bytes(summary.bytes_restored),
                format_bytes(summary.total_bytes)
            )
        };
        ctx.printer.print(&format!(
            "Summary: Restored {counts} in {}{}",
            format_duration(elapsed.as_secs()),
            crate::progress::skipped_and_deleted(
                summary.files_skipped,
                summary.bytes_skipped,
                summary.files_deleted
            )
        ));
        if args.verify {
            ctx.printer.print(&format!(
                "finished verifying {} files in {target}",
                summary.files_verified
            ));
        }
    }
    if summary.errors > 0 {
        return Err(fatal(format!("There were {} errors", summary.errors)).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_omits_zero_counters() {
        let json = crate::output::to_go_json(&RestoreSummaryJson {
            message_type: "summary",
            total_files: 3,
            files_restored: 3,
            total_bytes: 11,
            bytes_restored: 11,
            ..Default::default()
        });
        assert_eq!(
            json,
            r#"{"message_type":"summary","total_files":3,"files_restored":3,"total_bytes":11,"bytes_restored":11}"#
        );
        let status = crate::output::to_go_json(&RestoreStatusJson {
            message_type: "status",
            ..Default::default()
        });
        assert_eq!(status, r#"{"message_type":"status","percent_done":0}"#);
    }
}
