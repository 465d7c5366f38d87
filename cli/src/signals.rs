//! SIGINT/SIGTERM as restic 0.18.1 handles them (cmd/restic/cleanup.go and
//! main.go): the signal cancels the command, which then ends with the error
//! `context canceled` and exit status 130, for both signals.
//!
//! restix ends the process from the signal thread instead of unwinding the
//! command: it takes the stdout lock (so no progress line is drawn after
//! this point), clears the status line on a terminal, prints `signal
//! interrupt received, cleaning up` (Go's signal names: `interrupt`,
//! `terminated`) on stderr, removes this process's locks and registered
//! temporary files, prints the exit error (`context canceled`, or the JSON
//! `exit_error` object under `--json`) and exits 130.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::errors::{exit_code, exit_error_json};

/// Files to delete if the process is interrupted (e.g. a partial `dump --target`).
static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether `--json` is on: the exit error is then a JSON object.
static JSON: AtomicBool = AtomicBool::new(false);

/// The message of restic's exit error after a signal (Go's `context.Canceled`).
pub const CANCELED: &str = "context canceled";

/// Register a file for removal on interruption.
#[allow(dead_code)]
pub fn register_temp_file(path: PathBuf) {
    if let Ok(mut files) = TEMP_FILES.lock() {
        files.push(path);
    }
}

/// Forget a registered file (it was completed or removed).
#[allow(dead_code)]
pub fn unregister_temp_file(path: &std::path::Path) {
    if let Ok(mut files) = TEMP_FILES.lock() {
        files.retain(|p| p != path);
    }
}

/// Clear a progress line left on a terminal stdout (`\r` + erase line).
pub fn clear_status_line() {
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        let _ = stdout.write_all(b"\r\x1b[2K");
        let _ = stdout.flush();
    }
}

/// Go's names of the two signals.
fn signal_name(signal: i32) -> &'static str {
    if signal == SIGTERM {
        "terminated"
    } else {
        "interrupt"
    }
}

/// What restic prints on stderr for a signal: the notice and the exit error.
pub fn interruption_report(signal: i32, json: bool) -> String {
    let exit = if json {
        exit_error_json(exit_code::INTERRUPTED, CANCELED)
    } else {
        CANCELED.to_string()
    };
    // restic prefixes the notice with its clear-line sequence (global.go
    // `clearLine`), on stderr, terminal or not.
    format!(
        "\x1b[2Ksignal {} received, cleaning up\n{exit}\n",
        signal_name(signal)
    )
}

/// Start the signal thread. Failure to install is not fatal: the default
/// action (terminate) still applies.
pub fn install(json: bool) {
    JSON.store(json, Ordering::Relaxed);
    // restic probes whether a lock's owner is alive by sending it SIGHUP
    // (spec: restic-format §14); restic itself ignores SIGHUP, and so must
    // we, or a `restic unlock` next to a running backup would kill it.
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler code
    // to run and is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("restix-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let report = interruption_report(signal, JSON.load(Ordering::Relaxed));
                let (notice, exit) = report.split_once('\n').unwrap_or((&report, ""));
                // A serving command (mount, serve-nbd) stops itself: it
                // unmounts and returns, and the process exits on its own.
                if has_interrupt_hook() {
                    let _ = writeln!(std::io::stderr(), "{notice}");
                    if run_interrupt_hook() {
                        continue;
                    }
                }
                // Held until exit: no other thread redraws a progress line.
                let mut stdout = std::io::stdout().lock();
                if stdout.is_terminal() {
                    let _ = stdout.write_all(b"\r\x1b[2K");
                    let _ = stdout.flush();
                }
                let mut stderr = std::io::stderr().lock();
                if !has_interrupt_hook() {
                    let _ = writeln!(stderr, "{notice}");
                }
                restix_engine::repository::remove_held_locks();
                if let Ok(files) = TEMP_FILES.lock() {
                    for file in files.iter() {
                        let _ = std::fs::remove_file(file);
                    }
                }
                let _ = stderr.write_all(exit.as_bytes());
                let _ = stderr.flush();
                std::process::exit(exit_code::INTERRUPTED);
            }
        });
    drop(spawned);
}

/// What a long-running command does on SIGINT/SIGTERM before the process
/// would exit (mount: unmount, then return from its serving loop itself).
type InterruptHook = Box<dyn FnMut() -> bool + Send>;

static INTERRUPT_HOOK: Mutex<Option<InterruptHook>> = Mutex::new(None);

/// Install `hook`: on a signal it runs first; when it returns true the
/// process does not exit (the command finishes on its own), else the usual
/// cleanup and exit follow.
pub fn set_interrupt_hook(hook: InterruptHook) {
    if let Ok(mut slot) = INTERRUPT_HOOK.lock() {
        *slot = Some(hook);
    }
}

fn has_interrupt_hook() -> bool {
    INTERRUPT_HOOK.lock().is_ok_and(|slot| slot.is_some())
}

fn run_interrupt_hook() -> bool {
    match INTERRUPT_HOOK.lock() {
        Ok(mut slot) => slot.as_mut().is_some_and(|hook| hook()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_signals_report_context_canceled() {
        assert_eq!(
            interruption_report(SIGINT, false),
            "\x1b[2Ksignal interrupt received, cleaning up\ncontext canceled\n"
        );
        assert_eq!(
            interruption_report(SIGTERM, true),
            "\x1b[2Ksignal terminated received, cleaning up\n{\"message_type\":\"exit_error\",\"code\":130,\"message\":\"context canceled\"}\n"
        );
    }
}
