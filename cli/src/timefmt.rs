//! Time formats of restic's text output (spec: cli §1.4): `TimeFormat`
//! (`2006-01-02 15:04:05`, local zone), Go's `time.Time.String()`, and the
//! `--time` argument.
//!
//! The one home of time formatting and parsing in the CLI. It uses `jiff`,
//! the time crate of `restix-repo-format`, and that crate's local zone
//! ([`restix_repo_format::time::local_zone`], Go's `time.Local` rules for
//! `TZ`), so that what the CLI shows and reads is in the zone snapshots are
//! written in.

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset};
use jiff::Timestamp;
use restix_repo_format::time::local_zone;
use restix_repo_format::GoTime;

/// restic's `TimeFormat` as a strftime pattern.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The wall-clock time of `time` at `offset_seconds` east of UTC; `None`
/// outside the range of dates the formats can show.
fn civil(time: GoTime, offset_seconds: i32) -> Option<DateTime> {
    let nanos = i32::try_from(time.nanos).ok()?;
    let timestamp = Timestamp::new(time.unix_seconds, nanos).ok()?;
    let offset = Offset::from_seconds(offset_seconds).unwrap_or(Offset::UTC);
    Some(offset.to_datetime(timestamp))
}

/// `2006-01-02 15:04:05` in the local time zone.
pub fn local_time_text(time: GoTime) -> String {
    let Some(timestamp) = Timestamp::new(time.unix_seconds, 0).ok() else {
        return String::new();
    };
    let offset = local_zone().to_offset(timestamp).seconds();
    civil(time, offset)
        .map(|dt| dt.strftime(TIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// Go's `time.Time.String()` in the time's own offset:
/// `2026-11-22 18:57:16.002959329 +0000 UTC` (fraction trimmed; zones other
/// than UTC are shown by offset, as Go does for fixed zones).
pub fn go_time_string(time: GoTime) -> String {
    let offset = if Offset::from_seconds(time.offset_seconds).is_ok() {
        time.offset_seconds
    } else {
        0
    };
    let Some(local) = civil(time, offset) else {
        return String::new();
    };
    let mut text = local.strftime(TIME_FORMAT).to_string();
    if time.nanos > 0 {
        let fraction = format!("{:09}", time.nanos);
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    let numeric = format!("{sign}{:02}{:02}", minutes / 60, minutes % 60);
    let zone = if offset == 0 {
        "UTC".to_string()
    } else {
        numeric.clone()
    };
    format!("{text} {numeric} {zone}")
}

/// Parse `--time` (`2006-01-02 15:04:05`, local time zone). A wall-clock
/// time the local zone shows twice (the hour after a clock goes back) is
/// taken at the offset after the change, one it skips is an error, as
/// restix always did. (Go's `time.Date` takes the later instant east of
/// UTC and the earlier one west of it, and moves a skipped time forward.)
pub fn parse_local_time(text: &str) -> Result<GoTime, String> {
    let civil = DateTime::strptime(TIME_FORMAT, text)
        .map_err(|e| format!("parsing time \"{text}\" as \"2006-01-02 15:04:05\": {e}"))?;
    let offset = match local_zone().to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Fold { after, .. } => after,
        AmbiguousOffset::Gap { .. } => {
            return Err(format!(
                "time \"{text}\" does not exist in the local time zone"
            ))
        }
    };
    let timestamp = offset
        .to_timestamp(civil)
        .map_err(|e| format!("parsing time \"{text}\" as \"2006-01-02 15:04:05\": {e}"))?;
    Ok(GoTime::new(timestamp.as_second(), 0, offset.seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_string_format() {
        let t = GoTime::new(1_795_373_836, 2_959_329, 0);
        assert_eq!(go_time_string(t), "2026-11-22 18:57:16.002959329 +0000 UTC");
        let t = GoTime::new(1_795_373_836, 0, 7200);
        assert_eq!(go_time_string(t), "2026-11-22 20:57:16 +0200 +0200");
        let t = GoTime::new(1_795_373_836, 0, -(3 * 3600 + 30 * 60));
        assert_eq!(go_time_string(t), "2026-11-22 15:27:16 -0330 -0330");
    }

    #[test]
    fn time_argument_round_trip() {
        let t = parse_local_time("2024-07-29 10:00:00").unwrap();
        assert_eq!(local_time_text(t), "2024-07-29 10:00:00");
        assert!(parse_local_time("yesterday").is_err());
        assert!(parse_local_time("2024-07-29").is_err());
        assert!(parse_local_time("2024-07-29 10:00:00 x").is_err());
    }
}
