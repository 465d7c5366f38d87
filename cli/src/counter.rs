//! restic's counter progress line (`[0:02] 45.00%  9 / 20 packs`) and how
//! often it is redrawn (cmd/restic/progress.go).
//!
//! The rate is restic's ([`crate::progress_rate`]): without
//! `RESTIC_PROGRESS_FPS` a terminal gets 60 updates a second and a pipe only
//! the final line. `-q` and `--json` show nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::{format_duration, format_percent, Printer};

/// restic's counter text: with a total `[m:ss] p%  n / total what`,
/// without `[m:ss]          n what`.
pub fn counter_line(elapsed: Duration, done: u64, total: u64, what: &str) -> String {
    let time = format_duration(elapsed.as_secs());
    if total == 0 {
        format!("[{time}]          {done} {what}")
    } else {
        format!(
            "[{time}] {}  {done} / {total} {what}",
            format_percent(done, total)
        )
    }
}

/// The final counter line restic prints when stdout is not a terminal
/// (spec: cli §1.1): `[0:00] 100.00%  2 / 2 files deleted`, always in
/// the form with a total (as `forget` and `prune` print it).
pub fn counter_line_with_total(start: Instant, done: u64, total: u64, what: &str) -> String {
    format!(
        "[{}] {}  {done} / {total} {what}",
        format_duration(start.elapsed().as_secs()),
        format_percent(done, total)
    )
}

struct Shared {
    done: AtomicU64,
    total: AtomicU64,
    stop: AtomicBool,
}

/// A counter that redraws its line while work goes on and prints the
/// final line when [`Counter::finish`] is called.
pub struct Counter {
    shared: Arc<Shared>,
    what: String,
    start: Instant,
    show: bool,
    terminal: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    /// Start counting `what` up to `total` (0: unknown).
    pub fn start(printer: &Printer, total: u64, what: &str) -> Counter {
        let show = printer.verbosity > 0 && !printer.json;
        let terminal = printer.stdout_is_terminal;
        let shared = Arc::new(Shared {
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            stop: AtomicBool::new(false),
        });
        let start = Instant::now();
        let thread = match printer.progress_interval(show, false) {
            Some(interval) if show => {
                let shared = Arc::clone(&shared);
                let what = what.to_string();
                std::thread::Builder::new()
                    .name("restix-counter".into())
                    .spawn(move || loop {
                        std::thread::sleep(interval);
                        if shared.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let line = counter_line(
                            start.elapsed(),
                            shared.done.load(Ordering::Relaxed),
                            shared.total.load(Ordering::Relaxed),
                            &what,
                        );
                        let mut stdout = std::io::stdout().lock();
                        let _ = if terminal {
                            write!(stdout, "\r\x1b[2K{line}")
                        } else {
                            writeln!(stdout, "{line}")
                        };
                        let _ = stdout.flush();
                    })
                    .ok()
            }
            _ => None,
        };
        Counter {
            shared,
            what: what.to_string(),
            start,
            show,
            terminal,
            thread,
        }
    }

    pub fn add(&self, n: u64) {
        self.shared.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// Stop redrawing and print the final line.
    pub fn finish(mut self) {
        self.stop();
        if !self.show {
            return;
        }
        let line = counter_line(
            self.start.elapsed(),
            self.shared.done.load(Ordering::Relaxed),
            self.shared.total.load(Ordering::Relaxed),
            &self.what,
        );
        let mut stdout = std::io::stdout().lock();
        let _ = if self.terminal {
            writeln!(stdout, "\r\x1b[2K{line}")
        } else {
            writeln!(stdout, "{line}")
        };
        let _ = stdout.flush();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_text() {
        assert_eq!(
            counter_line(Duration::from_secs(62), 3, 4, "packs"),
            "[1:02] 75.00%  3 / 4 packs"
        );
        assert_eq!(
            counter_line(Duration::from_secs(1), 5, 0, "files deleted"),
            "[0:01]          5 files deleted"
        );
    }
}
