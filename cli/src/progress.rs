//! One status reporter for every long-running command (spec: cli §1.1 class
//! `PT`, §11.1 and §11.5 `status` lines): `backup`, `restore`, and image
//! mode's `backup --image`, `restore --format`, `dump --format` and
//! `restore-chain`.
//!
//! A command describes its progress with a [`StatusSource`]; the
//! [`Reporter`] asks it for a [`Status`] at restic's rate and prints it:
//! one line rewritten in place on a terminal (cut to the terminal's width),
//! a `status` JSON line with `--json` (also when stdout is not a terminal),
//! nothing with `--quiet` or when stdout is neither. The rate is restic's
//! ([`crate::progress_rate`]: `RESTIC_PROGRESS_FPS`, else 60 a second).

use std::io::Write;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use restix_engine::archiver::BackupSummary;
use restix_repo_format::{GoTime, Id};
use serde::Serialize;

use crate::output::{format_bytes, format_duration, to_go_json, Printer};

/// What a reporter prints for one update.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The `status` JSON line (encoded).
    pub json: String,
    /// The terminal line.
    pub text: String,
}

/// A command's progress, asked for by the [`Reporter`] thread.
pub trait StatusSource: Send + Sync {
    /// The status after `elapsed`; `None` while there is nothing to show.
    fn status(&self, elapsed: Duration) -> Option<Status>;

    /// Held while the status line is printed, so that lines the command
    /// prints meanwhile do not interleave with it.
    fn output_lock(&self) -> Option<MutexGuard<'_, ()>> {
        None
    }
}

/// Columns of the terminal on stdout (80 if unknown), from the
/// `terminal_size` crate.
pub fn terminal_width() -> usize {
    match terminal_size::terminal_size_of(std::io::stdout()) {
        Some((terminal_size::Width(columns), _)) if columns > 0 => usize::from(columns),
        _ => 80,
    }
}

/// Prints a [`StatusSource`]'s status periodically until finished (or
/// dropped, e.g. on an error path), then clears the terminal line.
pub struct Reporter {
    /// Dropped to stop the thread at once (it waits on the other end
    /// between updates, so a short job does not wait out an interval).
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
    source: Arc<dyn StatusSource>,
    printer: Printer,
    start: Instant,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Terminal,
    Json,
}

impl Reporter {
    /// Starts reporting `source` through `printer` (nothing with `-q`, or
    /// when stdout is neither a terminal nor `--json`).
    pub fn start(printer: &Printer, source: Arc<dyn StatusSource>) -> Reporter {
        Self::start_at(printer, source, Instant::now())
    }

    /// [`Reporter::start`] with elapsed time counted from `start`.
    pub fn start_at(printer: &Printer, source: Arc<dyn StatusSource>, start: Instant) -> Reporter {
        let mode = if printer.verbosity == 0 {
            Mode::Off
        } else if printer.json {
            Mode::Json
        } else if printer.stdout_is_terminal {
            Mode::Terminal
        } else {
            Mode::Off
        };
        let (stop, stopped) = channel::<()>();
        // Shown at all means shown with a rate: --json, or a terminal.
        let every = printer.progress_interval(mode != Mode::Off, printer.json);
        let handle = every.filter(|_| mode != Mode::Off).and_then(|every| {
            let source = Arc::clone(&source);
            let printer = printer.clone();
            std::thread::Builder::new()
                .name("restix-progress".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        let Some(status) = source.status(start.elapsed()) else {
                            continue;
                        };
                        let _guard = source.output_lock();
                        show(&printer, mode, &status);
                    }
                })
                .ok()
        });
        Reporter {
            stop: Some(stop),
            handle,
            source,
            printer: printer.clone(),
            start,
            mode,
        }
    }

    /// Stops reporting. With `final_status`, the status is printed once more
    /// first (so that even a job shorter than one interval shows it). The
    /// terminal line is cleared.
    pub fn finish(mut self, final_status: bool) {
        self.stop_thread();
        if final_status && self.mode != Mode::Off {
            if let Some(status) = self.source.status(self.start.elapsed()) {
                let _guard = self.source.output_lock();
                show(&self.printer, self.mode, &status);
            }
        }
        self.clear();
    }

    fn stop_thread(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }

    fn clear(&mut self) {
        if self.mode == Mode::Terminal {
            let _guard = self.source.output_lock();
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "\r\x1b[2K");
            let _ = stdout.flush();
        }
        self.mode = Mode::Off;
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop_thread();
        self.clear();
    }
}

fn show(printer: &Printer, mode: Mode, status: &Status) {
    match mode {
        // The line is JSON already; `important` prints it as is.
        Mode::Json => printer.important(&status.json),
        Mode::Terminal => {
            let line: String = status
                .text
                .chars()
                .take(terminal_width().saturating_sub(1))
                .collect();
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "\r\x1b[2K{line}");
            let _ = stdout.flush();
        }
        Mode::Off => {}
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `backup`'s `summary` line, 0.18 field order (spec: cli §11.1), shared
/// with image mode.
#[derive(Serialize, Debug)]
pub struct BackupSummaryJson {
    pub message_type: &'static str,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration: GoFloat,
    pub backup_start: GoTime,
    pub backup_end: GoTime,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub snapshot_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A float serialized with Go's shortest formatting (via the Go formatter).
#[derive(Debug, Clone, Copy)]
pub struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl BackupSummaryJson {
    pub fn from_summary(summary: &BackupSummary, dry_run: bool) -> BackupSummaryJson {
        BackupSummaryJson {
            message_type: "summary",
            files_new: summary.files_new,
            files_changed: summary.files_changed,
            files_unmodified: summary.files_unmodified,
            dirs_new: summary.dirs_new,
            dirs_changed: summary.dirs_changed,
            dirs_unmodified: summary.dirs_unmodified,
            data_blobs: summary.data_blobs,
            tree_blobs: summary.tree_blobs,
            data_added: summary.data_added,
            data_added_packed: summary.data_added_packed,
            total_files_processed: summary.total_files_processed,
            total_bytes_processed: summary.total_bytes_processed,
            total_duration: GoFloat(backup_duration(summary).as_secs_f64()),
            backup_start: summary.backup_start,
            backup_end: summary.backup_end,
            // Empty (left out) when --skip-if-unchanged stored nothing.
            snapshot_id: if summary.snapshot_id == Id::NULL {
                String::new()
            } else {
                summary.snapshot_id.to_hex()
            },
            dry_run,
        }
    }
}

/// 0.18+: `total_duration` is `backup_end - backup_start` (spec: cli §11.1).
pub fn backup_duration(summary: &BackupSummary) -> Duration {
    let nanos = summary.backup_end.unix_nanos() - summary.backup_start.unix_nanos();
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .unwrap_or(summary.total_duration)
}

/// `backup`'s `status` line (spec: cli §11.1): everything but
/// `message_type` and `percent_done` is omitempty.
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct BackupStatusJson {
    pub message_type: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    pub seconds_elapsed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub seconds_remaining: u64,
    pub percent_done: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_files: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_done: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_done: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub error_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current_files: Vec<String>,
}

/// `restore`'s `status` line (spec: cli §11.5).
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct RestoreStatusJson {
    pub message_type: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    pub seconds_elapsed: u64,
    pub percent_done: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_files: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_restored: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_skipped: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_deleted: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_restored: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_skipped: u64,
}

/// `restore`'s `summary` line (spec: cli §11.5).
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct RestoreSummaryJson {
    pub message_type: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    pub seconds_elapsed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_files: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_restored: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_skipped: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_deleted: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_restored: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_skipped: u64,
}

/// Fraction done, 0 when the total is not known yet.
pub fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

/// Seconds left at the rate so far; 0 when unknown.
pub fn seconds_remaining(done: u64, total: u64, elapsed: Duration) -> u64 {
    if done == 0 || total <= done {
        return 0;
    }
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    if rate > 1024.0 {
        ((total - done) as f64 / rate) as u64
    } else {
        0
    }
}

/// ` ETA m:ss` when known.
fn eta(seconds: u64) -> String {
    if seconds > 0 {
        format!(" ETA {}", format_duration(seconds))
    } else {
        String::new()
    }
}

/// `, <rate>/s` from the second second on.
fn rate(done: u64, elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(1) {
        return String::new();
    }
    let per_second = (done as f64 / elapsed.as_secs_f64()) as u64;
    format!(", {}/s", format_bytes(per_second))
}

/// restic's backup status line:
/// `[0:12] 45.23%  120 files 1.234 GiB, total 300 files 2.345 GiB, 0 errors ETA 0:15`.
pub fn backup_line(status: &BackupStatusJson, current: &str) -> String {
    format!(
        "[{}] {:.2}%  {} files {}, total {} files {}, {} errors{} {current}",
        format_duration(status.seconds_elapsed),
        status.percent_done * 100.0,
        status.files_done,
        format_bytes(status.bytes_done),
        status.total_files,
        format_bytes(status.total_bytes),
        status.error_count,
        eta(status.seconds_remaining),
    )
}

/// restic's restore status line:
/// `[0:01] 50.00%  1 files/dirs 512.000 MiB, total 2 files/dirs 1.000 GiB`.
pub fn restore_line(status: &RestoreStatusJson) -> String {
    format!(
        "[{}] {:.2}%  {} files/dirs {}, total {} files/dirs {}{}",
        format_duration(status.seconds_elapsed),
        status.percent_done * 100.0,
        status.files_restored,
        format_bytes(status.bytes_restored),
        status.total_files,
        format_bytes(status.total_bytes),
        skipped_and_deleted(
            status.files_skipped,
            status.bytes_skipped,
            status.files_deleted
        )
    )
}

/// restic's `, skipped N files/dirs SIZE, deleted N files/dirs` suffix of
/// restore's status and summary lines.
pub fn skipped_and_deleted(files_skipped: u64, bytes_skipped: u64, files_deleted: u64) -> String {
    let mut out = String::new();
    if files_skipped > 0 {
        out.push_str(&format!(
            ", skipped {files_skipped} files/dirs {}",
            format_bytes(bytes_skipped)
        ));
    }
    if files_deleted > 0 {
        out.push_str(&format!(", deleted {files_deleted} files/dirs"));
    }
    out
}

/// The status of one image file being backed up: `done` of `total` guest
/// bytes handled after `elapsed`. restic's backup line and JSON, with the
/// rate before the ETA on the terminal.
pub fn image_backup_status(path: &str, done: u64, total: u64, elapsed: Duration) -> Status {
    let json = BackupStatusJson {
        message_type: "status",
        seconds_elapsed: elapsed.as_secs(),
        seconds_remaining: seconds_remaining(done, total, elapsed),
        percent_done: fraction(done, total),
        total_files: 1,
        files_done: u64::from(total > 0 && done >= total),
        total_bytes: total,
        bytes_done: done,
        error_count: 0,
        current_files: vec![path.to_string()],
    };
    let line = format!(
        "[{}] {:.2}%  {} files {}, total {} files {}, {} errors{}{} {path}",
        format_duration(json.seconds_elapsed),
        json.percent_done * 100.0,
        json.files_done,
        format_bytes(done),
        json.total_files,
        format_bytes(total),
        json.error_count,
        rate(done, elapsed),
        eta(json.seconds_remaining),
    );
    Status {
        json: to_go_json(&json),
        text: line,
    }
}

/// The status of one image file being restored (restore, dump, chain):
/// restic's restore line and JSON, with the rate and ETA on the terminal.
pub fn image_restore_status(done: u64, total: u64, elapsed: Duration) -> Status {
    let json = RestoreStatusJson {
        message_type: "status",
        seconds_elapsed: elapsed.as_secs(),
        percent_done: fraction(done, total),
        total_files: 1,
        files_restored: u64::from(total > 0 && done >= total),
        total_bytes: total,
        bytes_restored: done,
        ..RestoreStatusJson::default()
    };
    let line = format!(
        "{}{}{}",
        restore_line(&json),
        rate(done, elapsed),
        eta(seconds_remaining(done, total, elapsed))
    );
    Status {
        json: to_go_json(&json),
        text: line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = image_restore_status(512 << 20, 1 << 30, Duration::from_secs(2));
        assert_eq!(
            s.text,
            "[0:02] 50.00%  0 files/dirs 512.000 MiB, total 1 files/dirs 1.000 GiB, \
             256.000 MiB/s ETA 0:02"
        );
        assert_eq!(
            s.json,
            r#"{"message_type":"status","seconds_elapsed":2,"percent_done":0.5,"total_files":1,"total_bytes":1073741824,"bytes_restored":536870912}"#
        );
        let b = image_backup_status("/vm/disk.qcow2", 0, 10 << 20, Duration::ZERO);
        assert_eq!(
            b.text,
            "[0:00] 0.00%  0 files 0 B, total 1 files 10.000 MiB, 0 errors /vm/disk.qcow2"
        );
        assert!(b
            .json
            .starts_with(r#"{"message_type":"status","percent_done":0,"total_files":1"#));
        let status = to_go_json(&RestoreStatusJson {
            message_type: "status",
            ..Default::default()
        });
        assert_eq!(status, r#"{"message_type":"status","percent_done":0}"#);
    }

    #[test]
    fn remaining_time() {
        assert_eq!(seconds_remaining(0, 100, Duration::from_secs(1)), 0);
        assert_eq!(seconds_remaining(100, 100, Duration::from_secs(1)), 0);
        assert_eq!(
            seconds_remaining(1 << 20, 4 << 20, Duration::from_secs(1)),
            3
        );
    }
}
