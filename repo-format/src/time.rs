//! Go `time.Time` as restic stores it: an instant plus the UTC offset of the
//! zone it was taken in, serialized as RFC 3339 with nanoseconds.
//! spec: restic-format §12.4, §11.5.

use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing or formatting times.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not an RFC 3339 time.
    #[error("invalid RFC 3339 time {0:?}")]
    Parse(String),
    /// Go refuses to encode years outside 0..=9999.
    #[error("year {0} outside of range [0,9999]")]
    YearOutOfRange(i64),
}

/// Seconds from 0001-01-01T00:00:00Z (Go's zero time) to the Unix epoch.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// An instant with nanosecond precision and the UTC offset of its zone.
///
/// `Default` is Go's zero time `0001-01-01T00:00:00Z`, which is what Go's
/// decoder leaves in a missing time field. Ordering compares the instant
/// first (then the offset, to stay consistent with `Eq`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
    /// UTC offset of the zone in seconds (east positive).
    pub offset_seconds: i32,
}

impl Default for GoTime {
    fn default() -> GoTime {
        GoTime {
            unix_seconds: GO_ZERO_UNIX,
            nanos: 0,
            offset_seconds: 0,
        }
    }
}

impl PartialOrd for GoTime {
    fn partial_cmp(&self, other: &GoTime) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GoTime {
    fn cmp(&self, other: &GoTime) -> Ordering {
        (self.unix_seconds, self.nanos, self.offset_seconds).cmp(&(
            other.unix_seconds,
            other.nanos,
            other.offset_seconds,
        ))
    }
}

/// The process's local zone, resolved once like Go's `time.Local`:
/// `TZ` unset → `/etc/localtime`; `TZ=""` → UTC; `TZ=[:]Name` → zoneinfo
/// (or the file if `Name` is an absolute path); unknown → UTC. Public so
/// that the CLI shows and reads local times in the same zone.
pub fn local_zone() -> &'static jiff::tz::TimeZone {
    static ZONE: OnceLock<jiff::tz::TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| match std::env::var_os("TZ") {
        // The file itself, as Go reads it: asking jiff for the system zone
        // resolves the symlink's name through a scan of the whole zoneinfo
        // tree (~5 ms on every start).
        None => std::fs::read("/etc/localtime")
            .ok()
            .and_then(|data| jiff::tz::TimeZone::tzif("Local", &data).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC),
        Some(v) if v.is_empty() => jiff::tz::TimeZone::UTC,
        Some(v) => {
            let s = v.to_string_lossy();
            let name = s.strip_prefix(':').unwrap_or(&s);
            if name.starts_with('/') {
                std::fs::read(name)
                    .ok()
                    .and_then(|data| jiff::tz::TimeZone::tzif(name, &data).ok())
                    .unwrap_or(jiff::tz::TimeZone::UTC)
            } else {
                jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
            }
        }
    })
}

/// UTC offset of the local zone at the given instant.
pub fn local_offset_at(unix_seconds: i64) -> i32 {
    let secs = unix_seconds.clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    match jiff::Timestamp::from_second(secs) {
        Ok(ts) => local_zone().to_offset(ts).seconds(),
        Err(_) => 0,
    }
}

impl GoTime {
    /// A time in UTC.
    pub fn from_unix_utc(unix_seconds: i64, nanos: u32) -> GoTime {
        GoTime::new(unix_seconds, nanos, 0)
    }

    /// A time with an explicit offset; `nanos` beyond one second carry over.
    pub fn new(unix_seconds: i64, nanos: u32, offset_seconds: i32) -> GoTime {
        GoTime {
            unix_seconds: unix_seconds.saturating_add(i64::from(nanos / 1_000_000_000)),
            nanos: nanos % 1_000_000_000,
            offset_seconds,
        }
    }

    /// The instant in the process's local zone (Go `time.Local`).
    pub fn from_unix_nanos_local(unix_seconds: i64, nanos: u32) -> GoTime {
        let t = GoTime::new(unix_seconds, nanos, 0);
        GoTime {
            offset_seconds: local_offset_at(t.unix_seconds),
            ..t
        }
    }

    /// A `SystemTime` in the local zone.
    pub fn from_system_time_local(t: SystemTime) -> GoTime {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                (secs, nanos)
            }
        };
        GoTime::from_unix_nanos_local(secs, nanos)
    }

    /// The current time in the local zone.
    pub fn now_local() -> GoTime {
        GoTime::from_system_time_local(SystemTime::now())
    }

    /// The same instant expressed in UTC.
    pub fn to_utc(self) -> GoTime {
        GoTime {
            offset_seconds: 0,
            ..self
        }
    }

    /// The same instant expressed in the local zone.
    pub fn to_local(self) -> GoTime {
        GoTime::from_unix_nanos_local(self.unix_seconds, self.nanos)
    }

    /// As a `SystemTime` (saturating at the platform limits).
    pub fn to_system_time(self) -> SystemTime {
        if self.unix_seconds >= 0 {
            UNIX_EPOCH
                .checked_add(Duration::new(self.unix_seconds.unsigned_abs(), self.nanos))
                .unwrap_or(UNIX_EPOCH)
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(self.unix_seconds.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nanos))))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(self) -> i128 {
        i128::from(self.unix_seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// True for Go's zero time (`0001-01-01T00:00:00Z`, any offset).
    pub fn is_go_zero(self) -> bool {
        self.unix_seconds == GO_ZERO_UNIX && self.nanos == 0
    }

    fn local_seconds(self) -> i64 {
        self.unix_seconds
            .saturating_add(i64::from(self.offset_seconds))
    }

    /// The civil year in the time's own zone.
    pub fn year(self) -> i64 {
        civil_from_days(self.local_seconds().div_euclid(86_400)).0
    }

    /// restic's `fixTime`: moves years before 0 to 0 and after 9999 to 9999
    /// by changing only the year (Go `AddDate`, so Feb 29 of a non-leap
    /// target year becomes Mar 1). spec: §11.5.
    pub fn clamp_year(self) -> GoTime {
        let local = self.local_seconds();
        let days = local.div_euclid(86_400);
        let secs_of_day = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let target = y.clamp(0, 9999);
        if target == y {
            return self;
        }
        // days_from_civil normalises Feb 29 of a non-leap year to Mar 1.
        let new_days = days_from_civil(target, m, 1) + (d - 1);
        let new_local = new_days * 86_400 + secs_of_day;
        GoTime {
            unix_seconds: new_local - i64::from(self.offset_seconds),
            ..self
        }
    }

    /// Go's `time.RFC3339Nano` formatting (as `MarshalJSON` writes it, without
    /// quotes). Fails for years outside 0..=9999 like Go's `MarshalJSON`.
    pub fn to_rfc3339(self) -> Result<String, TimeError> {
        let mut s = String::with_capacity(35);
        self.write_rfc3339(&mut s)?;
        Ok(s)
    }

    /// Appends the RFC 3339 text to `out`.
    pub fn write_rfc3339(self, out: &mut String) -> Result<(), TimeError> {
        use std::fmt::Write;
        let local = self.local_seconds();
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            return Err(TimeError::YearOutOfRange(y));
        }
        let sod = local.rem_euclid(86_400);
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            mo,
            d,
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        let off = self.offset_seconds;
        if off == 0 {
            out.push('Z');
        } else {
            // Go: the sign comes from the offset in whole minutes (so
            // -30s prints "+00:00"); seconds are truncated.
            let minutes = off / 60;
            let sign = if minutes < 0 { '-' } else { '+' };
            let a = minutes.unsigned_abs();
            let _ = write!(out, "{}{:02}:{:02}", sign, a / 60, a % 60);
        }
        Ok(())
    }

    /// Parses any RFC 3339 time (`T`/`t`, `Z`/`z` or `±HH:MM`, any number of
    /// fraction digits, extra digits beyond nanoseconds truncated), keeping
    /// its offset.
    pub fn parse_rfc3339(s: &str) -> Result<GoTime, TimeError> {
        parse_rfc3339(s.as_bytes()).ok_or_else(|| TimeError::Parse(s.to_owned()))
    }
}

fn digits(b: &[u8], n: usize) -> Option<i64> {
    let part = b.get(..n)?;
    let mut v = 0i64;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn parse_rfc3339(b: &[u8]) -> Option<GoTime> {
    // YYYY-MM-DDTHH:MM:SS
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 4)?;
    let month = digits(b.get(5..)?, 2)?;
    let day = digits(b.get(8..)?, 2)?;
    let hour = digits(b.get(11..)?, 2)?;
    let min = digits(b.get(14..)?, 2)?;
    let sec = digits(b.get(17..)?, 2)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut digits_used = 0;
        for &c in frac.iter().take(n.min(9)) {
            nanos = nanos * 10 + u32::from(c - b'0');
            digits_used += 1;
        }
        for _ in digits_used..9 {
            nanos *= 10;
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2], 2)?;
            let m = digits(&[*m1, *m2], 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    Some(GoTime {
        unix_seconds: local - offset,
        nanos,
        offset_seconds: i32::try_from(offset).ok()?,
    })
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm). Out-of-range days roll over into the next month.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for GoTime {
    /// RFC 3339 text; years outside 0..=9999 are printed with more digits
    /// or a sign (Go would refuse to marshal those).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(
                f,
                "{}s+{}ns (offset {}s)",
                self.unix_seconds, self.nanos, self.offset_seconds
            ),
        }
    }
}

impl fmt::Debug for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoTime({self})")
    }
}

impl std::str::FromStr for GoTime {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<GoTime, TimeError> {
        GoTime::parse_rfc3339(s)
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

struct GoTimeVisitor;

impl Visitor<'_> for GoTimeVisitor {
    type Value = GoTime;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 time string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoTime, E> {
        GoTime::parse_rfc3339(v).map_err(E::custom)
    }
    // Go leaves a time unchanged when it is decoded from `null`.
    fn visit_unit<E: de::Error>(self) -> Result<GoTime, E> {
        Ok(GoTime::default())
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoTime, D::Error> {
        d.deserialize_any(GoTimeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) {
        let t = GoTime::parse_rfc3339(s).unwrap();
        assert_eq!(t.to_rfc3339().unwrap(), s);
    }

    #[test]
    fn spec_examples() {
        rt("2024-03-05T07:08:09Z");
        rt("2024-03-05T07:08:09.5+01:00");
        rt("2024-03-05T07:08:09.000000001-05:30");
        rt("0012-01-02T03:04:05Z");
        rt("2026-11-22T18:58:51.874635235Z");
        rt("2015-06-27T12:18:51.759239612+02:00");
        rt("0001-01-01T00:00:00Z");
        let lmt = GoTime::new(0, 0, 1172);
        assert_eq!(lmt.to_rfc3339().unwrap(), "1970-01-01T00:19:32+00:19");
        let tiny = GoTime::new(0, 0, -30);
        assert_eq!(tiny.to_rfc3339().unwrap(), "1969-12-31T23:59:30+00:00");
        assert_eq!(
            GoTime::default().to_rfc3339().unwrap(),
            "0001-01-01T00:00:00Z"
        );
        let t = GoTime::parse_rfc3339("2024-03-05T07:08:09.120+00:00").unwrap();
        assert_eq!(t.to_rfc3339().unwrap(), "2024-03-05T07:08:09.12Z");
        assert_eq!(t.unix_seconds, 1_709_622_489);
        let t = GoTime::parse_rfc3339("1970-01-01T01:00:00+01:00").unwrap();
        assert_eq!(t.unix_seconds, 0);
        assert!(GoTime::parse_rfc3339("2024-02-30T00:00:00Z").is_err());
        assert!(GoTime::parse_rfc3339("2024-02-10T00:00:00").is_err());
        assert!(GoTime::parse_rfc3339("2024-02-10T00:00:00.Z").is_err());
        assert!(GoTime::parse_rfc3339("").is_err());
    }

    #[test]
    fn year_clamping() {
        let far = GoTime::parse_rfc3339("9999-12-31T23:59:59Z").unwrap();
        let beyond = GoTime {
            unix_seconds: far.unix_seconds + 86_400 * 400,
            ..far
        };
        assert!(beyond.to_rfc3339().is_err());
        let c = beyond.clamp_year();
        assert_eq!(c.year(), 9999);
        let leap = GoTime::parse_rfc3339("2024-02-29T10:00:00+02:00").unwrap();
        assert_eq!(leap.clamp_year(), leap);
        let t = GoTime::new(days_from_civil(10_004, 2, 29) * 86_400, 0, 0);
        assert_eq!(t.clamp_year().to_rfc3339().unwrap(), "9999-03-01T00:00:00Z");
        let t = GoTime::new(days_from_civil(-5, 6, 7) * 86_400 + 5, 3, 0);
        assert_eq!(
            t.clamp_year().to_rfc3339().unwrap(),
            "0000-06-07T00:00:05.000000003Z"
        );
    }

    #[test]
    fn ordering_and_system_time() {
        let a = GoTime::parse_rfc3339("2024-03-05T07:08:09+01:00").unwrap();
        let b = GoTime::parse_rfc3339("2024-03-05T07:08:09Z").unwrap();
        assert!(a < b);
        let st = b.to_system_time();
        assert_eq!(
            GoTime::from_system_time_local(st).unix_nanos(),
            b.unix_nanos()
        );
        let neg = GoTime::new(-2, 500, 0);
        assert_eq!(
            GoTime::from_system_time_local(neg.to_system_time()).unix_nanos(),
            neg.unix_nanos()
        );
    }
}
