//! Tests that cannot run must not pass in silence.
//!
//! Many of restix's tests compare against real peers: restic 0.14, OpenSSH's
//! `sshd`, `qemu-img`, Garage, rclone, Azurite, FUSE, restic's fixture
//! repositories. When one is missing, a test calls [`skip`] (or one of the
//! `require_*` helpers built on it) instead of asserting anything:
//!
//! * under `CI=true` it **panics**, so the run fails and names the peer: CI
//!   installs every peer (`.ci/run`), so a skip there is a broken machine;
//! * otherwise it writes `SKIPPED <test>: <why>` straight to the process's
//!   standard error (libtest's output capture only sees `eprintln!`, which
//!   would hide the note of a passing test), appends the same line to
//!   `<target>/restix-skipped-tests.log`, and when the test binary exits,
//!   prints how many of its tests were skipped and why.
//!
//! `scripts/test.sh` empties that log before the run and prints it at the end,
//! so whoever runs the suite sees every skipped test under the last line.
//!
//! ```no_run
//! fn have_qemu() -> bool {
//!     restix_testkit::have_program("qemu-img", &["--version"])
//! }
//! #[test]
//! fn reads_qcow2() {
//!     if !have_qemu() {
//!         return restix_testkit::skip("qemu-img", "apt-get install qemu-utils");
//!     }
//!     // ...
//! }
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};

/// Skips the running test because `peer` is missing; `how` says how to get it.
///
/// Panics under `CI=true` (see the crate docs); otherwise records the skip
/// and returns, so the caller returns from the test right after.
pub fn skip(peer: &str, how: &str) {
    let test = current_test_name();
    let line = format!("SKIPPED {test}: {peer} missing ({how})");
    if in_ci() {
        panic!(
            "{peer} missing, and CI=true: a test that cannot run must fail \
             ({how}; .ci/run installs every peer)"
        );
    }
    // Directly to fd 2: not through libtest's capture.
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(log) = skip_log_path() {
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(file, "{line}");
        }
    }
    if let Ok(mut skipped) = SKIPPED.lock() {
        skipped.push(line);
    }
    REGISTER_SUMMARY.call_once(|| {
        // SAFETY: `print_summary` is an `extern "C" fn()` that never unwinds
        // (it catches nothing, only writes to stderr and ignores errors) and
        // touches only a static Mutex, which is valid for the whole process.
        unsafe {
            libc::atexit(print_summary);
        }
    });
}

/// `true` when `CI` is set to `true` (or `1`), as `.ci/run` does.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true") | Ok("1")
    )
}

/// Does `program` run (found in `PATH` and exits successfully with `args`)?
pub fn have_program(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where skips are logged: `$RESTIX_SKIP_LOG`, else
/// `<target>/restix-skipped-tests.log` beside the test executable
/// (`target/<profile>/deps/<test>`).
pub fn skip_log_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RESTIX_SKIP_LOG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    Some(target.join("restix-skipped-tests.log"))
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static REGISTER_SUMMARY: Once = Once::new();

extern "C" fn print_summary() {
    let Ok(skipped) = SKIPPED.lock() else {
        return;
    };
    if skipped.is_empty() {
        return;
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\n{} test(s) of {exe} did NOT run (they passed only because a peer is missing):",
        skipped.len()
    );
    for line in skipped.iter() {
        let _ = writeln!(err, "  {line}");
    }
}

/// The running test's name: libtest names each test's thread after it.
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
        .unwrap_or_else(|| "<test>".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_read_from_the_environment() {
        // Only checks the parse; the environment of a test run is shared.
        let expect = matches!(
            std::env::var("CI").as_deref(),
            Ok("true") | Ok("1") | Ok("TRUE")
        );
        assert_eq!(in_ci(), expect);
    }

    #[test]
    fn a_missing_program_is_not_found() {
        assert!(!have_program("restix-testkit-no-such-program", &[]));
    }
}
