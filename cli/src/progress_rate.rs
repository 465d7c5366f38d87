//! How often progress is redrawn: the one home of `RESTIC_PROGRESS_FPS`,
//! with restic 0.18.1's rule (`calculateProgressInterval` in
//! cmd/restic/progress.go).
//!
//! A rate above 0 sets the interval (at most 60 updates a second), on a
//! terminal and also when stdout is not one (each update is then a line of
//! its own). Without it a terminal, or a JSON status stream, gets 60 updates
//! a second, and a pipe without `--json` no periodic update at all; a
//! progress display that is not shown (`-q`) gets none either.
//!
//! The variable is read once, into the [`crate::output::Printer`] the
//! command context holds; the counter line and the status reporter both
//! ask the printer.

use std::time::Duration;

/// restic's cap on `RESTIC_PROGRESS_FPS`.
const MAX_FPS: f64 = 60.0;

/// `RESTIC_PROGRESS_FPS` from the environment (see [`parse_fps`]).
pub fn fps_from_env() -> Option<f64> {
    std::env::var("RESTIC_PROGRESS_FPS")
        .ok()
        .and_then(|text| parse_fps(&text))
}

/// A rate as restic reads it with Go's `strconv.ParseFloat`: no trimming,
/// and a value that does not parse or is not above 0 counts as unset.
pub fn parse_fps(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|fps| *fps > 0.0)
}

/// The redraw interval: `None` means no periodic updates.
pub fn progress_interval(
    fps: Option<f64>,
    show: bool,
    json: bool,
    terminal: bool,
) -> Option<Duration> {
    match fps {
        Some(fps) => Some(Duration::from_secs_f64(1.0 / fps.min(MAX_FPS))),
        None if !show || (!json && !terminal) => None,
        None => Some(Duration::from_secs_f64(1.0 / MAX_FPS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(fps: Option<&str>, show: bool, json: bool, terminal: bool) -> Option<Duration> {
        progress_interval(fps.and_then(parse_fps), show, json, terminal)
    }

    #[test]
    fn intervals_as_restic() {
        let sixtieth = Some(Duration::from_secs_f64(1.0 / 60.0));
        assert_eq!(
            interval(Some("2"), true, false, false),
            Some(Duration::from_millis(500))
        );
        assert_eq!(interval(Some("1000"), true, false, true), sixtieth);
        assert_eq!(interval(Some("inf"), true, false, true), sixtieth);
        assert_eq!(interval(None, true, false, false), None);
        assert_eq!(interval(Some("x"), true, false, false), None);
        assert_eq!(interval(Some("0"), true, false, false), None);
        assert_eq!(interval(Some("-1"), true, false, true), sixtieth);
        assert_eq!(interval(Some("NaN"), true, false, false), None);
        // Go's ParseFloat does not trim: " 2" is no rate.
        assert_eq!(interval(Some(" 2"), true, false, false), None);
        assert_eq!(interval(None, true, false, true), sixtieth);
        assert_eq!(interval(None, true, true, false), sixtieth);
        assert_eq!(interval(None, false, false, true), None);
        // A rate applies even where nothing would be shown without it.
        assert_eq!(
            interval(Some("4"), false, false, false),
            Some(Duration::from_millis(250))
        );
    }
}
