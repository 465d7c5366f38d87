//! Time formats of restic's text output (spec: cli §1.4): `TimeFormat`
//! (`2006-01-02 15:04:05`, local zone), Go's `time.Time.String()`, and the
//! `--time` argument.

use chrono::{DateTime, Local, NaiveDateTime, Offset, TimeZone};
use restix_repo_format::GoTime;

/// `2006-01-02 15:04:05` in the local time zone.
pub fn local_time_text(time: GoTime) -> String {
    match DateTime::from_timestamp(time.unix_seconds, time.nanos) {
        Some(utc) => utc
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => String::new(),
    }
}

/// Go's `time.Time.String()` in the time's own offset:
/// `2026-11-22 18:57:16.002959329 +0000 UTC` (fraction trimmed; zones other
/// than UTC are shown by offset, as Go does for fixed zones).
pub fn go_time_string(time: GoTime) -> String {
    let offset =
        chrono::FixedOffset::east_opt(time.offset_seconds).unwrap_or_else(|| chrono::Utc.fix());
    let Some(utc) = DateTime::from_timestamp(time.unix_seconds, time.nanos) else {
        return String::new();
    };
    let local = utc.with_timezone(&offset);
    let mut text = local.format("%Y-%m-%d %H:%M:%S").to_string();
    if time.nanos > 0 {
        let fraction = format!("{:09}", time.nanos);
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    let numeric = local.format("%z").to_string();
    let zone = if time.offset_seconds == 0 {
        "UTC".to_string()
    } else {
        numeric.clone()
    };
    format!("{text} {numeric} {zone}")
}

/// Parse `--time` (`2006-01-02 15:04:05`, local time zone).
pub fn parse_local_time(text: &str) -> Result<GoTime, String> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("parsing time \"{text}\" as \"2006-01-02 15:04:05\": {e}"))?;
    let local = Local
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| format!("time \"{text}\" does not exist in the local time zone"))?;
    Ok(GoTime::new(
        local.timestamp(),
        0,
        local.offset().local_minus_utc(),
    ))
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
    }

    #[test]
    fn time_argument_round_trip() {
        let t = parse_local_time("2024-07-29 10:00:00").unwrap();
        assert_eq!(local_time_text(t), "2024-07-29 10:00:00");
        assert!(parse_local_time("yesterday").is_err());
    }
}
