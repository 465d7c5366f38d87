//! What `rewrite` and `repair snapshots` print about each snapshot and at
//! the end, in restic's words (cmd_rewrite.go `filterAndReplaceSnapshot`).

use restix_engine::rewrite::{Change, Outcome};
use restix_repo_format::{Id, Snapshot};

use crate::output::Printer;
use crate::timefmt::go_time_string;

/// restic's `Snapshot.String()`: `snapshot 1a2b3c4d of [/p] at <time> by u@h`.
pub fn snapshot_line(id: &Id, snapshot: &Snapshot) -> String {
    format!(
        "snapshot {} of [{}] at {} by {}@{}",
        id.short(),
        snapshot.paths.join(" "),
        go_time_string(snapshot.time),
        snapshot.username,
        snapshot.hostname
    )
}

/// Print what [`replace_snapshot`] did as restic does; true if the
/// snapshot changed.
pub fn report_outcome(p: &Printer, id: &Id, outcome: &Outcome, change: &Change<'_>) -> bool {
    match outcome {
        Outcome::Unchanged => false,
        Outcome::RemovedEmpty => {
            if change.dry_run {
                p.print("would delete empty snapshot");
            } else {
                p.print(&format!("removed empty snapshot {}", id.short()));
            }
            true
        }
        Outcome::Saved {
            new_id,
            removed_old,
        } => {
            match new_id {
                None => {
                    p.print("would save new snapshot");
                    if *removed_old {
                        p.print("would remove old snapshot");
                    }
                    if let Some(time) = change.time {
                        p.print(&format!("would set time to {}", go_time_string(time)));
                    }
                    if let Some(host) = &change.hostname {
                        p.print(&format!("would set hostname to {host}"));
                    }
                }
                Some(new_id) => {
                    if let Some(time) = change.time {
                        p.print(&format!("setting time to {}", go_time_string(time)));
                    }
                    if let Some(host) = &change.hostname {
                        p.print(&format!("setting host to {host}"));
                    }
                    p.print(&format!("saved new snapshot {}", new_id.short()));
                    if *removed_old {
                        p.print(&format!("removed old snapshot {}", id.short()));
                    }
                }
            }
            true
        }
    }
}

/// The closing line of `rewrite` and `repair snapshots`.
pub fn report_total(p: &Printer, changed: u64, dry_run: bool) {
    p.print("");
    match (changed, dry_run) {
        (0, false) => p.print("no snapshots were modified"),
        (0, true) => p.print("no snapshots would be modified"),
        (n, false) => p.print(&format!("modified {n} snapshots")),
        (n, true) => p.print(&format!("would modify {n} snapshots")),
    }
}
