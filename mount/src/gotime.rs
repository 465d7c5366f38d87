//! Go's `time.Time.Format` with a reference layout (`2006-01-02T15:04:05Z07:00`),
//! for `mount --time-template` (restic formats snapshot directory names with
//! it, in the snapshot's own time zone offset).
//!
//! The layout elements are Go's (`time/format.go`): `2006 06 01 1 Jan January
//! 02 2 _2 002 __2 Mon Monday 15 03 3 04 4 05 5 PM pm MST`, the numeric and
//! ISO 8601 zones (`-0700 -07:00 -07 -070000 -07:00:00`, and the same with
//! `Z`), and fractional seconds (`.000`, `.999`, or with `,`). Everything
//! else is copied. Zone names are not known for fixed offsets: `MST` gives
//! `UTC` for offset 0 and `+hhmm` otherwise, as Go does for an unnamed zone.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use restix_repo_format::GoTime;

/// restic's default `--time-template`: Go's `time.RFC3339`.
pub const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    /// `-0700`-style (never `Z`); `iso` = `Z` for offset 0.
    Numeric {
        iso: bool,
        colon: bool,
        minutes: bool,
        seconds: bool,
    },
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    LongYear,
    Year,
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekday,
    Weekday,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    Pm {
        upper: bool,
    },
    Zone(Zone),
    /// Fractional seconds: separator, digits, trim trailing zeros (`9`s).
    Fraction {
        separator: char,
        digits: usize,
        trim: bool,
    },
}

/// The next layout element at the start of `s`, with its length in bytes.
fn element_at(s: &str) -> Option<(Element, usize)> {
    let b = s.as_bytes();
    let starts = |p: &str| s.starts_with(p);
    let lower_after = |n: usize| b.get(n).is_some_and(u8::is_ascii_lowercase);
    let numeric = |iso, colon, minutes, seconds| {
        Element::Zone(Zone::Numeric {
            iso,
            colon,
            minutes,
            seconds,
        })
    };
    let found = match b.first()? {
        b'J' if starts("January") => (Element::LongMonth, 7),
        b'J' if starts("Jan") && !lower_after(3) => (Element::Month, 3),
        b'M' if starts("Monday") => (Element::LongWeekday, 6),
        b'M' if starts("Mon") && !lower_after(3) => (Element::Weekday, 3),
        b'M' if starts("MST") => (Element::Zone(Zone::Name), 3),
        b'0' if starts("002") => (Element::ZeroYearDay, 3),
        b'0' => match b.get(1)? {
            b'1' => (Element::ZeroMonth, 2),
            b'2' => (Element::ZeroDay, 2),
            b'3' => (Element::ZeroHour12, 2),
            b'4' => (Element::ZeroMinute, 2),
            b'5' => (Element::ZeroSecond, 2),
            b'6' => (Element::Year, 2),
            _ => return None,
        },
        b'1' if starts("15") => (Element::Hour, 2),
        b'1' => (Element::NumMonth, 1),
        b'2' if starts("2006") => (Element::LongYear, 4),
        b'2' => (Element::Day, 1),
        b'_' if starts("__2") => (Element::UnderYearDay, 3),
        // `_2006` is a literal `_` followed by the year.
        b'_' if starts("_2") && !starts("_2006") => (Element::UnderDay, 2),
        b'3' => (Element::Hour12, 1),
        b'4' => (Element::Minute, 1),
        b'5' => (Element::Second, 1),
        b'P' if starts("PM") => (Element::Pm { upper: true }, 2),
        b'p' if starts("pm") => (Element::Pm { upper: false }, 2),
        b'-' | b'Z' => {
            let iso = b[0] == b'Z';
            let rest = &s[1..];
            if rest.starts_with("07:00:00") {
                (numeric(iso, true, true, true), 9)
            } else if rest.starts_with("070000") {
                (numeric(iso, false, true, true), 7)
            } else if rest.starts_with("07:00") {
                (numeric(iso, true, true, false), 6)
            } else if rest.starts_with("0700") {
                (numeric(iso, false, true, false), 5)
            } else if rest.starts_with("07") {
                (numeric(iso, false, false, false), 3)
            } else {
                return None;
            }
        }
        b'.' | b',' => {
            let digit = *b.get(1)?;
            if digit != b'0' && digit != b'9' {
                return None;
            }
            let run = b[1..].iter().take_while(|c| **c == digit).count();
            if b.get(1 + run).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            let element = Element::Fraction {
                separator: b[0] as char,
                digits: run,
                trim: digit == b'9',
            };
            (element, 1 + run)
        }
        _ => return None,
    };
    Some(found)
}

/// Format `time` (in its own offset) with Go layout `layout`.
pub fn format(time: GoTime, layout: &str) -> String {
    let offset = FixedOffset::east_opt(time.offset_seconds)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"));
    let Some(utc) = DateTime::from_timestamp(time.unix_seconds, time.nanos) else {
        return String::new();
    };
    let t = utc.with_timezone(&offset);
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    while let Some(c) = rest.chars().next() {
        match element_at(rest) {
            Some((element, len)) => {
                write_element(&mut out, &t, time.offset_seconds, element);
                rest = &rest[len..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

fn write_element(out: &mut String, t: &DateTime<FixedOffset>, offset: i32, element: Element) {
    use std::fmt::Write;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let _ = match element {
        Element::LongYear => write!(out, "{:04}", t.year()),
        Element::Year => write!(out, "{:02}", t.year().rem_euclid(100)),
        Element::LongMonth => write!(out, "{}", MONTHS[t.month0() as usize]),
        Element::Month => write!(out, "{}", &MONTHS[t.month0() as usize][..3]),
        Element::NumMonth => write!(out, "{}", t.month()),
        Element::ZeroMonth => write!(out, "{:02}", t.month()),
        Element::LongWeekday => write!(
            out,
            "{}",
            WEEKDAYS[t.weekday().num_days_from_monday() as usize]
        ),
        Element::Weekday => write!(
            out,
            "{}",
            &WEEKDAYS[t.weekday().num_days_from_monday() as usize][..3]
        ),
        Element::Day => write!(out, "{}", t.day()),
        Element::UnderDay => write!(out, "{:>2}", t.day()),
        Element::ZeroDay => write!(out, "{:02}", t.day()),
        Element::UnderYearDay => write!(out, "{:>3}", t.ordinal()),
        Element::ZeroYearDay => write!(out, "{:03}", t.ordinal()),
        Element::Hour => write!(out, "{:02}", t.hour()),
        Element::Hour12 => write!(out, "{hour12}"),
        Element::ZeroHour12 => write!(out, "{hour12:02}"),
        Element::Minute => write!(out, "{}", t.minute()),
        Element::ZeroMinute => write!(out, "{:02}", t.minute()),
        Element::Second => write!(out, "{}", t.second()),
        Element::ZeroSecond => write!(out, "{:02}", t.second()),
        Element::Pm { upper } => {
            let text = if t.hour() >= 12 { "PM" } else { "AM" };
            if upper {
                write!(out, "{text}")
            } else {
                write!(out, "{}", text.to_lowercase())
            }
        }
        Element::Zone(Zone::Name) => {
            if offset == 0 {
                write!(out, "UTC")
            } else {
                write_offset(out, offset, false, true, false);
                Ok(())
            }
        }
        Element::Zone(Zone::Numeric {
            iso,
            colon,
            minutes,
            seconds,
        }) => {
            if iso && offset == 0 {
                out.push('Z');
            } else {
                write_offset(out, offset, colon, minutes, seconds);
            }
            Ok(())
        }
        Element::Fraction {
            separator,
            digits,
            trim,
        } => {
            let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
            let mut text = &nanos[..digits.min(9)];
            if trim {
                text = text.trim_end_matches('0');
            }
            if !text.is_empty() {
                out.push(separator);
                out.push_str(text);
            }
            Ok(())
        }
    };
}

fn write_offset(out: &mut String, offset: i32, colon: bool, minutes: bool, seconds: bool) {
    use std::fmt::Write;
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    let _ = write!(out, "{sign}{:02}", abs / 3600);
    if minutes {
        if colon {
            out.push(':');
        }
        let _ = write!(out, "{:02}", abs / 60 % 60);
    }
    if seconds {
        if colon {
            out.push(':');
        }
        let _ = write!(out, "{:02}", abs % 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-05 07:08:09.120 UTC, a Tuesday, day 65 of the year.
    fn t(offset: i32) -> GoTime {
        GoTime::new(1_709_622_489, 120_000_000, offset)
    }

    #[test]
    fn rfc3339_in_the_snapshots_own_offset() {
        assert_eq!(format(t(0), RFC3339), "2024-03-05T07:08:09Z");
        assert_eq!(format(t(3600), RFC3339), "2024-03-05T08:08:09+01:00");
        assert_eq!(
            format(t(-5 * 3600 - 1800), RFC3339),
            "2024-03-05T01:38:09-05:30"
        );
    }

    #[test]
    fn every_element() {
        let layout = "2006 06 01 1 Jan January 02 2 _2 002 __2 Mon Monday 15 03 3 04 4 05 5 PM pm";
        assert_eq!(
            format(t(0), layout),
            "2024 24 03 3 Mar March 05 5  5 065  65 Tue Tuesday 07 07 7 08 8 09 9 AM am"
        );
        assert_eq!(
            format(t(0), "15:04:05.000 .999 ,9 .000000000"),
            "07:08:09.120 .12 ,1 .120000000"
        );
        assert_eq!(format(t(0), "MST -0700 -07 Z0700"), "UTC +0000 +00 Z");
        assert_eq!(format(t(-3600), "MST -07:00:00 Z07"), "-0100 -01:00:00 -01");
        // Not elements: copied as they are.
        assert_eq!(format(t(0), "Janx Monx .5 _2006 x"), "Janx Monx .9 _2024 x");
        assert_eq!(format(t(0), "2006-01-02_15-04-05"), "2024-03-05_07-08-09");
    }
}
