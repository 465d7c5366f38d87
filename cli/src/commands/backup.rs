//! `backup` (spec: cli §10.2, JSON §11.1).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restix_engine::archiver::{
    ArchiveError, ArchiveOptions, ArchiveProgress, Archiver, BackupSummary, ItemStatus, StdinSource,
};
use restix_repo_format::{GoTime, Id, Snapshot};
use serde::Serialize;

use crate::args::BackupArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository_impl, LockMode};
use crate::errors::{exit_code, fatal, CliError};
use crate::output::{format_bytes, format_duration, Printer};
use crate::progress::{
    backup_duration, BackupStatusJson as StatusJson, BackupSummaryJson as SummaryJson,
};
use crate::snapshot_select::GroupBy;
use crate::timefmt::parse_local_time;

/// `verbose_status` line: no omitempty.
#[derive(Serialize)]
struct VerboseStatusJson<'a> {
    message_type: &'static str,
    action: &'a str,
    item: &'a str,
    duration: f64,
    data_size: u64,
    data_size_in_repo: u64,
    metadata_size: u64,
    metadata_size_in_repo: u64,
    total_files: u64,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    message_type: &'static str,
    error: ErrorMessage<'a>,
    during: &'a str,
    item: &'a str,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    message: &'a str,
}

/// Progress state shared with the archiver's threads and the reporter.
struct BackupProgress {
    printer: Printer,
    start: Instant,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    scan_done: AtomicBool,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    errors: AtomicU64,
    /// Set on the first event: status lines start only then (0.19).
    started: AtomicBool,
    current: Mutex<Vec<String>>,
    /// Serialises output lines from many threads.
    output: Mutex<()>,
}

impl BackupProgress {
    fn new(printer: Printer) -> Self {
        BackupProgress {
            printer,
            start: Instant::now(),
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            scan_done: AtomicBool::new(false),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            started: AtomicBool::new(false),
            current: Mutex::new(Vec::new()),
            output: Mutex::new(()),
        }
    }

    fn status(&self) -> StatusJson {
        let elapsed = self.start.elapsed();
        let total_bytes = self.total_bytes.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let percent_done = if total_bytes == 0 {
            0.0
        } else {
            (bytes_done as f64 / total_bytes as f64).min(1.0)
        };
        let seconds_remaining =
            if self.scan_done.load(Ordering::Relaxed) && bytes_done > 0 && total_bytes > bytes_done
            {
                let rate = bytes_done as f64 / elapsed.as_secs_f64().max(0.001);
                if rate > 1024.0 {
                    ((total_bytes - bytes_done) as f64 / rate) as u64
                } else {
                    0
                }
            } else {
                0
            };
        let mut current_files = self.current.lock().map(|c| c.clone()).unwrap_or_default();
        current_files.sort();
        StatusJson {
            message_type: "status",
            seconds_elapsed: elapsed.as_secs(),
            seconds_remaining,
            percent_done,
            total_files: self.total_files.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            total_bytes,
            bytes_done,
            error_count: self.errors.load(Ordering::Relaxed),
            current_files,
        }
    }

    fn verbose_json(
        &self,
        action: &str,
        item: &str,
        duration: Duration,
        data: (u64, u64),
        metadata: (u64, u64),
        total_files: u64,
    ) {
        let _guard = self.output.lock();
        self.printer.json_line(&VerboseStatusJson {
            message_type: "verbose_status",
            action,
            item,
            duration: duration.as_secs_f64(),
            data_size: data.0,
            data_size_in_repo: data.1,
            metadata_size: metadata.0,
            metadata_size_in_repo: metadata.1,
            total_files,
        });
    }

    /// Print a line above the terminal status line.
    fn line(&self, text: &str, very_verbose: bool) {
        let _guard = self.output.lock();
        if self.printer.stdout_is_terminal {
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "\r\x1b[2K");
            let _ = stdout.flush();
        }
        if very_verbose {
            self.printer.very_verbose(text);
        } else {
            self.printer.verbose(text);
        }
    }
}

fn item_text(item: &[u8]) -> String {
    String::from_utf8_lossy(item).into_owned()
}

fn status_word(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::New => "new",
        ItemStatus::Changed => "modified",
        ItemStatus::Unchanged => "unchanged",
    }
}

impl ArchiveProgress for BackupProgress {
    fn scan_progress(&self, files: u64, _dirs: u64, bytes: u64) {
        self.started.store(true, Ordering::Relaxed);
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    fn scan_finished(&self, files: u64, _dirs: u64, bytes: u64, duration: Duration) {
        self.started.store(true, Ordering::Relaxed);
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        self.scan_done.store(true, Ordering::Relaxed);
        if self.printer.json {
            if self.printer.verbosity >= 2 {
                self.verbose_json("scan_finished", "", duration, (bytes, 0), (0, 0), files);
            }
        } else {
            self.line(
                &format!(
                    "scan finished in {:.3}s: {files} files, {}",
                    duration.as_secs_f64(),
                    format_bytes(bytes)
                ),
                false,
            );
        }
    }

    fn file_started(&self, _path: &Path, item: &[u8]) {
        self.started.store(true, Ordering::Relaxed);
        if let Ok(mut current) = self.current.lock() {
            current.push(item_text(item));
        }
    }

    fn bytes_done(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    fn file_done(
        &self,
        _path: &Path,
        item: &[u8],
        _size: u64,
        status: ItemStatus,
        added: u64,
        stored: u64,
        duration: Duration,
    ) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        let item = item_text(item);
        if let Ok(mut current) = self.current.lock() {
            if let Some(pos) = current.iter().position(|c| *c == item) {
                current.swap_remove(pos);
            }
        }
        if self.printer.verbosity < 3 {
            return;
        }
        if self.printer.json {
            self.verbose_json(
                status_word(status),
                &item,
                duration,
                (added, stored),
                (0, 0),
                0,
            );
        } else if status == ItemStatus::Unchanged {
            self.line(&format!("unchanged {item}"), true);
        } else {
            self.line(
                &format!(
                    "{:<9} {item}, saved in {:.3}s ({} added, {} stored)",
                    status_word(status),
                    duration.as_secs_f64(),
                    format_bytes(added),
                    format_bytes(stored)
                ),
                true,
            );
        }
    }

    fn dir_done(
        &self,
        _path: &Path,
        item: &[u8],
        status: ItemStatus,
        added: u64,
        stored: u64,
        duration: Duration,
    ) {
        if self.printer.verbosity < 3 {
            return;
        }
        let mut item = item_text(item);
        if !item.ends_with('/') {
            item.push('/');
        }
        if self.printer.json {
            self.verbose_json(
                status_word(status),
                &item,
                duration,
                (0, 0),
                (added, stored),
                0,
            );
        } else if status == ItemStatus::Unchanged {
            self.line(&format!("unchanged {item}"), true);
        } else {
            self.line(
                &format!(
                    "{:<9} {item}, saved in {:.3}s ({} added, {} stored, {} metadata)",
                    status_word(status),
                    duration.as_secs_f64(),
                    format_bytes(0),
                    format_bytes(stored),
                    format_bytes(added)
                ),
                true,
            );
        }
    }

    fn error(&self, path: &Path, during: &str, error: &std::io::Error) {
        let message = error.to_string();
        let _guard = self.output.lock();
        // A missing target is a plain warning in both modes (spec: cli §1.1).
        if error.kind() == std::io::ErrorKind::NotFound
            && message.ends_with("does not exist, skipping")
        {
            self.printer.error(&message);
            return;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.printer.json {
            self.printer.json_error_line(&ErrorJson {
                message_type: "error",
                error: ErrorMessage { message: &message },
                during,
                item: &path.to_string_lossy(),
            });
        } else {
            self.printer.error(&format!("error: {message}"));
        }
    }
}

/// What the shared status reporter prints for a backup: JSON `status`
/// lines, or restic's line on a terminal; nothing before the first event.
impl crate::progress::StatusSource for BackupProgress {
    fn status(&self, _elapsed: Duration) -> Option<crate::progress::Status> {
        if !self.started.load(Ordering::Relaxed) {
            return None;
        }
        let status = BackupProgress::status(self);
        let current = status.current_files.first().cloned().unwrap_or_default();
        Some(crate::progress::Status {
            text: crate::progress::backup_line(&status, &current),
            json: crate::output::to_go_json(&status),
        })
    }

    fn output_lock(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        Some(self.output.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Read `--files-from` (trimmed lines, `#` comments), `--files-from-verbatim`
/// (lines as they are) and `--files-from-raw` (NUL-separated) lists.
fn read_file_lists(args: &BackupArgs) -> anyhow::Result<Vec<String>> {
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        if name == "-" {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data)?;
            Ok(data)
        } else {
            std::fs::read(name).map_err(|e| fatal(format!("unable to read {name}: {e}")).into())
        }
    };
    let mut paths = Vec::new();
    for name in &args.files_from {
        let text = String::from_utf8_lossy(&read(name)?).into_owned();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            paths.push(line.to_string());
        }
    }
    for name in &args.files_from_verbatim {
        let text = String::from_utf8_lossy(&read(name)?).into_owned();
        paths.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
    }
    for name in &args.files_from_raw {
        let data = read(name)?;
        if data.is_empty() {
            continue;
        }
        let Some(body) = data.strip_suffix(&[0]) else {
            return Err(fatal("--files-from-raw: trailing zero byte missing").into());
        };
        for entry in body.split(|b| *b == 0) {
            if entry.is_empty() {
                return Err(fatal("--files-from-raw: empty filename in listing").into());
            }
            paths.push(String::from_utf8_lossy(entry).into_owned());
        }
    }
    Ok(paths)
}

/// The parent snapshot (spec: cli §10.2 "Parent selection"): the newest
/// snapshot of the group (host, paths ⊇ targets, tags) not newer than `time`.
fn find_parent(
    all: &[(Id, Snapshot)],
    group: GroupBy,
    host: &str,
    abs_targets: &[String],
    tags: &[String],
    time: GoTime,
) -> Option<Id> {
    all.iter()
        .filter(|(_, s)| s.time.unix_nanos() <= time.unix_nanos())
        .filter(|(_, s)| !group.host || s.hostname == host)
        .filter(|(_, s)| !group.paths || abs_targets.iter().all(|t| s.paths.contains(t)))
        .filter(|(_, s)| !group.tags || tags.iter().all(|t| s.tags.contains(t)))
        .max_by_key(|(_, s)| s.time.unix_nanos())
        .map(|(id, _)| *id)
}

/// Split `--tag` values on commas, trim, drop empty ones.
fn flatten_tags(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

pub fn run(ctx: &Context, args: &BackupArgs) -> anyhow::Result<()> {
    if args.image.image.is_some() {
        return crate::image_mode::run_backup(ctx, args, &args.image);
    }
    let backup_start = GoTime::now_local();
    let has_files_from = !args.files_from.is_empty()
        || !args.files_from_verbatim.is_empty()
        || !args.files_from_raw.is_empty();
    if args.stdin || args.stdin_from_command {
        if !args.files_from.is_empty() {
            return Err(fatal("--stdin and --files-from cannot be used together").into());
        }
        if !args.files_from_verbatim.is_empty() {
            return Err(fatal("--stdin and --files-from-verbatim cannot be used together").into());
        }
        if !args.files_from_raw.is_empty() {
            return Err(fatal("--stdin and --files-from-raw cannot be used together").into());
        }
    }
    if args.stdin && !args.paths.is_empty() {
        return Err(fatal("--stdin was specified and files/dirs were listed as arguments").into());
    }
    // --- restic 0.18 exclusion flags (#17): --iexclude(-file),
    // --exclude-if-present, --exclude-caches (restic cmd_backup.go
    // collectRejectFuncs; a bad tag spec is a plain error).
    let mut iexcludes = args.iexclude.clone();
    for file in &args.iexclude_file {
        iexcludes.extend(crate::patterns::read_pattern_file(file)?);
    }
    let mut exclude_if_present = args.exclude_if_present.clone();
    if args.exclude_caches {
        exclude_if_present.push(restix_engine::archiver::exclude::CACHEDIR_TAG_SPEC.to_string());
    }
    for spec in &exclude_if_present {
        restix_engine::archiver::exclude::TagFile::parse(spec)
            .map_err(|e| CliError::plain(exit_code::FAILURE, e.to_string()))?;
    }
    // --- end of the exclusion flags ---
    let time = match &args.time {
        Some(text) => {
            Some(parse_local_time(text).map_err(|e| fatal(format!("error in time option: {e}")))?)
        }
        None => None,
    };
    let mut excludes = args.exclude.clone();
    for file in &args.exclude_file {
        excludes.extend(crate::patterns::read_pattern_file(file)?);
    }
    let exclude_larger_than = match &args.exclude_larger_than {
        Some(size) => Some(
            crate::options::parse_size(size)
                .map_err(|e| fatal(format!("invalid value for --exclude-larger-than: {e}")))?,
        ),
        None => None,
    };
    let read_concurrency = match args.read_concurrency {
        Some(n) => n,
        None => match std::env::var("RESTIC_READ_CONCURRENCY").ok().filter(|v| !v.is_empty()) {
            Some(v) => v.trim().parse().map_err(|_| {
                fatal(format!("invalid value for RESTIC_READ_CONCURRENCY \"{v}\": strconv.ParseUint: parsing \"{v}\": invalid syntax"))
            })?,
            None => 0,
        },
    };
    let group = GroupBy::parse(args.group_by.as_deref().unwrap_or("host,paths"))?;
    let from_stdin = args.stdin || args.stdin_from_command;
    let mut paths: Vec<String> = if args.stdin_from_command {
        Vec::new()
    } else {
        args.paths.clone()
    };
    if args.stdin_from_command && args.paths.is_empty() {
        return Err(fatal("--stdin-from-command requires a command to run").into());
    }
    if has_files_from {
        paths.extend(read_file_lists(args)?);
    }
    if !from_stdin && paths.is_empty() {
        return Err(fatal("nothing to backup, please specify source files/dirs").into());
    }
    if !from_stdin && paths.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        for p in &paths {
            ctx.printer.error(&format!("{p} does not exist, skipping"));
        }
        return Err(fatal("all source directories/files do not exist").into());
    }
    let host = args
        .host
        .clone()
        .or_else(|| std::env::var("RESTIC_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(restix_engine::repository::hostname);
    let tags = flatten_tags(&args.tag);

    let stdin_is_data = args.stdin
        || args
            .files_from
            .iter()
            .chain(&args.files_from_verbatim)
            .chain(&args.files_from_raw)
            .any(|f| f == "-");
    ctx.printer.verbose("open repository");
    // --dry-run (#17): no lock, and a backend that stores nothing.
    let opened = open_repository_impl(ctx, LockMode::SharedAlways, stdin_is_data, args.dry_run)?;
    let snapshot_time = time.unwrap_or(backup_start);
    let parent = if from_stdin || args.force {
        None
    } else if let Some(parent_arg) = &args.parent {
        let all = opened.list_snapshots()?;
        let (id, _) = restix_engine::selection::find_in(&all, parent_arg, &Default::default())
            .map_err(|e| fatal(format!("invalid id \"{parent_arg}\": {e}")))?;
        Some(id)
    } else {
        let all = opened.list_snapshots()?;
        let abs: Vec<String> = paths
            .iter()
            .map(|p| {
                restix_engine::archiver::absolute_path(Path::new(p))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        find_parent(&all, group, &host, &abs, &tags, snapshot_time)
    };
    if !from_stdin {
        match parent {
            Some(id) => ctx
                .printer
                .print(&format!("using parent snapshot {}", id.short())),
            None => ctx
                .printer
                .print("no parent snapshot found, will read all files"),
        }
    }
    ctx.printer.verbose("load index files");
    opened.load_index_cached(ctx)?;
    if !from_stdin {
        ctx.printer
            .verbose(&format!("start scan on [{}]", paths.join(" ")));
        ctx.printer
            .verbose(&format!("start backup on [{}]", paths.join(" ")));
    }

    // --stdin-from-command: the arguments are a command whose stdout is stored.
    let mut child = if args.stdin_from_command {
        let (program, rest) = args
            .paths
            .split_first()
            .ok_or_else(|| fatal("no command given"))?;
        Some(
            std::process::Command::new(program)
                .args(rest)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| fatal(format!("command failed: exec: \"{program}\": {e}")))?,
        )
    } else {
        None
    };
    let options = ArchiveOptions {
        threads: ctx.threads,
        read_concurrency,
        excludes,
        exclude_larger_than,
        hostname: host,
        tags,
        time: Some(snapshot_time),
        parent,
        force: args.force,
        ignore_inode: args.ignore_inode,
        ignore_ctime: args.ignore_ctime,
        with_atime: args.with_atime,
        one_file_system: args.one_file_system,
        stdin: match (args.stdin, &mut child) {
            (_, Some(child)) => child.stdout.take().map(|out| StdinSource {
                filename: args.stdin_filename.clone(),
                reader: Box::new(out) as Box<dyn Read + Send>,
            }),
            (true, None) => Some(StdinSource {
                filename: args.stdin_filename.clone(),
                reader: Box::new(std::io::stdin()),
            }),
            (false, None) => None,
        },
        no_scan: args.no_scan,
        backup_start: Some(backup_start),
        // restic 0.18 flags (#17)
        iexcludes,
        exclude_if_present,
        skip_if_unchanged: args.skip_if_unchanged,
        ..ArchiveOptions::default()
    };
    let progress = Arc::new(BackupProgress::new(ctx.printer.clone()));
    let reporter = crate::progress::Reporter::start(&ctx.printer, progress.clone());
    let mut archiver = Archiver::new(Arc::clone(&opened.repo), options);
    let targets: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let result = archiver.backup(&targets, progress.as_ref());
    reporter.finish(false);
    if let Some(mut child) = child {
        let status = child.wait()?;
        if !status.success() {
            // A failed command must not leave a snapshot behind (restic
            // cancels the backup).
            if let Ok(summary) = &result {
                let _ = opened.repo.remove_file(
                    restix_engine::backend::FileType::Snapshot,
                    &summary.snapshot_id,
                );
            }
            let code = status.code().unwrap_or(-1);
            return Err(fatal(format!("command failed: exit status {code}")).into());
        }
    }
    let summary = result.map_err(|e| match e {
        ArchiveError::Repo(repo_error) => anyhow::Error::from(repo_error),
        other => fatal(other).into(),
    })?;
    if !args.dry_run {
        opened.repo.refresh_index_cache();
    }
    print_summary(ctx, &summary, args.dry_run);
    if summary.errors > 0 {
        return Err(CliError::plain(
            exit_code::PARTIAL_BACKUP,
            "Warning: at least one source file could not be read",
        )
        .into());
    }
    Ok(())
}

fn print_summary(ctx: &Context, summary: &BackupSummary, dry_run: bool) {
    if ctx.printer.json {
        // The summary is printed even with -q (spec: cli §1.1).
        ctx.printer
            .json_line(&SummaryJson::from_summary(summary, dry_run));
        return;
    }
    let p = &ctx.printer;
    p.print(&format!(
        "\nFiles:       {:5} new, {:5} changed, {:5} unmodified",
        summary.files_new, summary.files_changed, summary.files_unmodified
    ));
    p.print(&format!(
        "Dirs:        {:5} new, {:5} changed, {:5} unmodified",
        summary.dirs_new, summary.dirs_changed, summary.dirs_unmodified
    ));
    p.verbose(&format!("Data Blobs:  {:5} new", summary.data_blobs));
    p.verbose(&format!("Tree Blobs:  {:5} new", summary.tree_blobs));
    // --dry-run / --skip-if-unchanged (#17): restic's wording.
    let verb = if dry_run { "Would add" } else { "Added" };
    p.print(&format!(
        "{verb} to the repository: {:<5} ({:<5} stored)",
        format_bytes(summary.data_added),
        format_bytes(summary.data_added_packed)
    ));
    p.print("");
    p.print(&format!(
        "processed {} files, {} in {}",
        summary.total_files_processed,
        format_bytes(summary.total_bytes_processed),
        format_duration(backup_duration(summary).as_secs())
    ));
    if !dry_run {
        if summary.snapshot_id == Id::NULL {
            p.print("skipped creating snapshot");
        } else {
            p.print(&format!("snapshot {} saved", summary.snapshot_id.short()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_field_order_and_first_key() {
        let summary = BackupSummary {
            files_new: 2,
            dirs_new: 2,
            data_blobs: 1,
            tree_blobs: 2,
            data_added: 1352,
            data_added_packed: 900,
            total_files_processed: 2,
            total_bytes_processed: 5011,
            total_duration: Duration::from_millis(228),
            backup_start: GoTime::from_unix_utc(1_795_373_836, 0),
            backup_end: GoTime::from_unix_utc(1_795_373_837, 500_000_000),
            snapshot_id: Id([0xc7; 32]),
            ..Default::default()
        };
        let json = crate::output::to_go_json(&SummaryJson::from_summary(&summary, false));
        assert_eq!(
            json,
            format!(
                r#"{{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":2,"data_added":1352,"data_added_packed":900,"total_files_processed":2,"total_bytes_processed":5011,"total_duration":1.5,"backup_start":"2026-11-22T18:57:16Z","backup_end":"2026-11-22T18:57:17.5Z","snapshot_id":"{}"}}"#,
                Id([0xc7; 32]).to_hex()
            )
        );
        assert!(json.starts_with(r#"{"message_type":"summary""#));
        let dry = crate::output::to_go_json(&SummaryJson::from_summary(&summary, true));
        assert!(dry.ends_with(r#","dry_run":true}"#));
    }

    #[test]
    fn status_has_no_summary_fields() {
        let status = crate::output::to_go_json(&StatusJson {
            message_type: "status",
            percent_done: 0.5,
            total_bytes: 10,
            bytes_done: 5,
            ..Default::default()
        });
        assert_eq!(
            status,
            r#"{"message_type":"status","percent_done":0.5,"total_bytes":10,"bytes_done":5}"#
        );
        assert!(!status.contains("snapshot_id") && !status.contains("total_bytes_processed"));
    }

    #[test]
    fn parent_selection() {
        let snap = |secs: i64, host: &str, paths: &[&str], tags: &[&str]| Snapshot {
            time: GoTime::from_unix_utc(secs, 0),
            hostname: host.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tags: tags.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        let all = vec![
            (Id([1; 32]), snap(10, "h", &["/a", "/b"], &[])),
            (Id([2; 32]), snap(20, "h", &["/a"], &["x"])),
            (Id([3; 32]), snap(30, "other", &["/a"], &[])),
            (Id([4; 32]), snap(40, "h", &["/a"], &[])),
        ];
        let group = GroupBy::parse("host,paths").unwrap();
        let paths = vec!["/a".to_string()];
        assert_eq!(
            find_parent(&all, group, "h", &paths, &[], GoTime::from_unix_utc(50, 0)),
            Some(Id([4; 32]))
        );
        assert_eq!(
            find_parent(&all, group, "h", &paths, &[], GoTime::from_unix_utc(35, 0)),
            Some(Id([2; 32]))
        );
        let both = vec!["/a".to_string(), "/b".to_string()];
        assert_eq!(
            find_parent(&all, group, "h", &both, &[], GoTime::from_unix_utc(50, 0)),
            Some(Id([1; 32]))
        );
        assert_eq!(
            find_parent(
                &all,
                group,
                "nohost",
                &paths,
                &[],
                GoTime::from_unix_utc(50, 0)
            ),
            None
        );
        assert_eq!(
            flatten_tags(&["a, b".into(), "".into(), "c".into()]),
            vec!["a", "b", "c"]
        );
    }
}
