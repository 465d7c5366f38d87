//! SIGINT/SIGTERM handling (spec: cli §8.1): remove this process's locks and
//! temporary files, then exit 130 (SIGINT) or 143 (SIGTERM).

use std::path::PathBuf;
use std::sync::Mutex;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::errors::exit_code;

/// Files to delete if the process is interrupted (e.g. a partial `dump --target`).
static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

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

/// Start the signal thread. Failure to install is not fatal: the default
/// action (terminate) still applies.
pub fn install() {
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
                let (text, code) = if signal == SIGTERM {
                    ("terminated", exit_code::TERMINATED)
                } else {
                    ("interrupt", exit_code::INTERRUPTED)
                };
                crate::output::write_stderr_line(&format!("\rsignal {text} received, cleaning up"));
                if run_interrupt_hook() {
                    continue;
                }
                crate::engine_glue::release_locks_on_signal();
                if let Ok(files) = TEMP_FILES.lock() {
                    for file in files.iter() {
                        let _ = std::fs::remove_file(file);
                    }
                }
                std::process::exit(code);
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

fn run_interrupt_hook() -> bool {
    match INTERRUPT_HOOK.lock() {
        Ok(mut slot) => slot.as_mut().is_some_and(|hook| hook()),
        Err(_) => false,
    }
}
