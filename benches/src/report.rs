//! The Markdown report: an environment header and one table of results.

use std::fmt::Write as _;

use crate::scenarios::{Outcome, Scenario};
use crate::tools::{Family, Tool};

/// The best outcome of one tool in one scenario over all repeats.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Which scenario.
    pub scenario: Scenario,
    /// Index into the tool list.
    pub tool: usize,
    /// Best successful run (least wall time), else the last failure.
    pub outcome: Outcome,
}

/// Keep the better of two outcomes: a run beats a failure, a faster run
/// beats a slower one.
pub fn better(old: Outcome, new: Outcome) -> Outcome {
    match (&old, &new) {
        (Outcome::Ran { measurement: a, .. }, Outcome::Ran { measurement: b, .. }) => {
            if b.wall < a.wall {
                new
            } else {
                old
            }
        }
        (Outcome::Ran { .. }, Outcome::Failed(_)) => old,
        _ => new,
    }
}

const MIB: f64 = 1048576.0;

fn cell_text(s: &str) -> String {
    // Keep a stderr line from breaking the table.
    let s: String = s.replace('|', "/").chars().take(320).collect();
    s
}

/// The results table in Markdown. `input_bytes(s)` is the data a scenario
/// reads or writes (for the throughput column; 0 leaves it empty).
pub fn table(
    tools: &[Tool],
    cells: &[Cell],
    scenarios: &[Scenario],
    input_bytes: impl Fn(Scenario) -> u64,
) -> String {
    let mut out = String::new();
    out.push_str(
        "| Scenario | Tool | Wall s | CPU s (user+sys) | Peak RSS MiB | Repo MiB | MiB/s | Speed-up vs restic | RSS vs restic | Notes |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for &s in scenarios {
        let baseline = cells.iter().find_map(|c| {
            let tool = tools.get(c.tool)?;
            match (&c.outcome, tool.family) {
                (Outcome::Ran { measurement, .. }, Family::Restic)
                    if c.scenario == s.baseline() =>
                {
                    Some(measurement.clone())
                }
                _ => None,
            }
        });
        for c in cells.iter().filter(|c| c.scenario == s) {
            let Some(tool) = tools.get(c.tool) else {
                continue;
            };
            match &c.outcome {
                Outcome::Ran {
                    measurement: m,
                    repo_bytes,
                    note,
                } => {
                    let wall = m.wall.as_secs_f64();
                    let repo = repo_bytes
                        .map(|b| format!("{:.1}", b as f64 / MIB))
                        .unwrap_or_else(|| "–".into());
                    let rate = if wall > 0.0 && input_bytes(s) > 0 {
                        format!("{:.1}", input_bytes(s) as f64 / MIB / wall)
                    } else {
                        "–".into()
                    };
                    let rss = m.max_rss_kib as f64 / 1024.0;
                    let (speedup, rss_ratio) = match &baseline {
                        Some(b) if wall > 0.0 && m.max_rss_kib > 0 => (
                            format!("{:.2}×", b.wall.as_secs_f64() / wall),
                            format!("{:.2}×", rss / (b.max_rss_kib as f64 / 1024.0)),
                        ),
                        _ => ("–".into(), "–".into()),
                    };
                    let note = if s.restix_only() && baseline.is_some() {
                        format!("ratios vs restic `{}` row; {note}", s.baseline().name())
                    } else {
                        note.clone()
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {wall:.2} | {:.2} | {rss:.0} | {repo} | {rate} | {speedup} | {rss_ratio} | {} |",
                        s.title(),
                        tool.label,
                        m.cpu().as_secs_f64(),
                        cell_text(&note)
                    );
                }
                Outcome::Failed(why) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | FAILED | | | | | | | {} |",
                        s.title(),
                        tool.label,
                        cell_text(why)
                    );
                }
            }
        }
    }
    out
}
