//! Runs one command as its own child process and measures exactly that child.
//!
//! The child is reaped with `wait4(2)`, which hands back the `rusage` of that
//! one child (on Linux: the child plus the descendants it reaped itself, e.g.
//! the `ssh` that restic starts for `sftp:`), so runs never mix their CPU time
//! or peak RSS the way `getrusage(RUSAGE_CHILDREN)` over several runs would.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a measured command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Ran past the time limit and was killed.
    TimedOut,
}

impl Exit {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "rc {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::TimedOut => write!(f, "timed out"),
        }
    }
}

/// Resources used by one child process.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Wall-clock time from spawn to reap.
    pub wall: Duration,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub sys: Duration,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// How it ended.
    pub exit: Exit,
    /// The last non-empty line the child wrote to stderr.
    pub stderr_tail: String,
}

impl Measurement {
    /// User + system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// The last non-empty line of a (possibly large) log file; reads at most its
/// final 64 KiB.
pub fn last_line(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut tail = Vec::new();
    if file.read_to_end(&mut tail).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&tail);
    // Progress output may use '\r' to redraw a line; treat it as a break.
    text.split(['\n', '\r'])
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Spawn `cmd` (stdin from /dev/null, stdout to `stdout`, stderr into
/// `stderr_log`) in its own process group, wait for it with `wait4`, and
/// return what it used. Past `timeout` the whole group is killed.
pub fn run_measured(
    cmd: &mut Command,
    stdout: Stdio,
    stderr_log: &Path,
    timeout: Duration,
) -> io::Result<Measurement> {
    let stderr = File::create(stderr_log)?;
    // Dirty page-cache data left by earlier steps (a first backup's gigabyte
    // of packs) is written back before the clock starts: otherwise a short
    // run's fsyncs wait behind its predecessor's writeback.
    // SAFETY: sync(2) takes no arguments, touches no memory of ours and
    // cannot fail.
    unsafe { libc::sync() };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("child pid out of range"))?;
    // `child` is reaped by wait4 below, never through std: dropping the
    // handle only closes our copies of its pipes (there are none).
    drop(child);
    let mut killed = false;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero `rusage` is a valid value (plain integers and
        // timevals); wait4 only writes into it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own unreaped child; `status` and `usage` are
        // valid, exclusively borrowed out-pointers for the call's duration.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            let wall = start.elapsed();
            let exit = if killed {
                Exit::TimedOut
            } else if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(-1)
            };
            return Ok(Measurement {
                wall,
                user: timeval(usage.ru_utime),
                sys: timeval(usage.ru_stime),
                max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                exit,
                stderr_tail: last_line(stderr_log),
            });
        }
        if reaped == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if !killed && start.elapsed() > timeout {
            // SAFETY: kill(2) on the process group we created for our own
            // still-unreaped child (its pid cannot have been reused).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            killed = true;
        }
        // Polling keeps the timeout simple; 2 ms is noise next to runs of
        // seconds and costs the parent (not the child) a few wake-ups.
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_one_child_and_its_exit() {
        let dir = std::env::temp_dir().join(format!("restix-bench-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("err");
        let m = run_measured(
            Command::new("sh").args(["-c", "echo first >&2; echo boom >&2; exit 3"]),
            Stdio::null(),
            &log,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(m.exit, Exit::Code(3));
        assert_eq!(m.stderr_tail, "boom");
        assert!(m.max_rss_kib > 0);

        // A child that allocates and touches 64 MiB shows it in its peak RSS.
        let m = run_measured(
            Command::new("sh").args([
                "-c",
                "head -c 67108864 /dev/zero | tail -c 67108864 >/dev/null",
            ]),
            Stdio::null(),
            &log,
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(m.exit.success());
        assert!(m.max_rss_kib >= 60 * 1024, "{}", m.max_rss_kib);

        let m = run_measured(
            Command::new("sleep").arg("30"),
            Stdio::null(),
            &log,
            Duration::from_millis(100),
        )
        .unwrap();
        assert_eq!(m.exit, Exit::TimedOut);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
