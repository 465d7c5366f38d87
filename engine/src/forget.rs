//! forget: keep policies (`--keep-*`), grouping, and which snapshots to remove.
//!
//! The policy semantics follow restic exactly (spec: cli §10.6): snapshots of
//! one group are sorted newest first; each `--keep-X n` bucket keeps the
//! newest snapshot of every distinct period (hour, day, ISO week, month,
//! year; "last" counts every snapshot) until `n` periods are used (`-1` =
//! unlimited), and the oldest snapshot is kept too while a bucket still has
//! count left. Periods are taken from the snapshot time in its own stored UTC
//! offset, which is what Go's `time.Time` fields return after JSON decoding.
//!
//! ```
//! use restix_engine::forget::{apply_policy, KeepPolicy};
//! use restix_repo_format::{GoTime, Id, Snapshot};
//!
//! let snaps: Vec<(Id, Snapshot)> = (0..5)
//!     .map(|i| {
//!         let snap = Snapshot { time: GoTime::from_unix_utc(i * 86_400, 0), ..Default::default() };
//!         (Id::hash(&i.to_le_bytes()), snap)
//!     })
//!     .collect();
//! let policy = KeepPolicy { daily: 2, ..Default::default() };
//! let result = apply_policy(snaps, &policy);
//! assert_eq!(result.keep.len(), 2);
//! assert_eq!(result.remove.len(), 3);
//! assert_eq!(result.keep[0].2, vec!["daily snapshot".to_string()]);
//! ```

use std::fmt;

use restix_repo_format::{GoTime, Id, Snapshot};

/// Errors of policy flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A `--keep-within*` value is not `NyNmNdNh`.
    #[error("{0}")]
    InvalidDuration(String),
    /// A negative `--keep-*` count other than "unlimited".
    #[error("negative values not allowed, use 'unlimited' instead")]
    Negative,
    /// A count that is not a number.
    #[error("invalid argument {0:?}: strconv.Atoi: parsing {0:?}: invalid syntax")]
    InvalidCount(String),
}

/// A calendar duration as `--keep-within` takes it: `1y5m7d2h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CalendarDuration {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

impl CalendarDuration {
    /// Parse `1y5m7d2h` (any subset, in any order, each part a number and a
    /// unit among y, m, d, h), like restic's `ParseDuration`.
    pub fn parse(text: &str) -> Result<CalendarDuration, PolicyError> {
        let mut d = CalendarDuration::default();
        let mut rest = text;
        if rest.is_empty() {
            return Err(PolicyError::InvalidDuration("empty duration".into()));
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            if number.is_empty() {
                return Err(PolicyError::InvalidDuration(format!(
                    "invalid duration \"{text}\": no number found"
                )));
            }
            let value: i32 = number.parse().map_err(|_| {
                PolicyError::InvalidDuration(format!("invalid duration \"{text}\": invalid number"))
            })?;
            let mut chars = tail.chars();
            let unit = chars.next().ok_or_else(|| {
                PolicyError::InvalidDuration(format!("no unit found after number {value}"))
            })?;
            match unit {
                'y' => d.years = value,
                'm' => d.months = value,
                'd' => d.days = value,
                'h' => d.hours = value,
                other => {
                    return Err(PolicyError::InvalidDuration(format!(
                        "invalid unit {other:?} found after number {value}"
                    )))
                }
            }
            rest = chars.as_str();
        }
        Ok(d)
    }

    /// True when every part is zero (the flag was not given).
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// `t` moved back by this duration: Go's
    /// `t.AddDate(-y, -m, -d).Add(-h * time.Hour)` in `t`'s own offset.
    pub fn before(&self, t: GoTime) -> GoTime {
        let local = t.unix_seconds + i64::from(t.offset_seconds);
        let days = local.div_euclid(86_400);
        let secs_of_day = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        // Go's Date normalises month and day overflow.
        let total_months = y * 12 + (m - 1) - i64::from(self.months) - 12 * i64::from(self.years);
        let ny = total_months.div_euclid(12);
        let nm = total_months.rem_euclid(12) + 1;
        let new_days = days_from_civil(ny, nm, 1) + (d - 1) - i64::from(self.days);
        let new_local = new_days * 86_400 + secs_of_day - 3600 * i64::from(self.hours);
        GoTime {
            unix_seconds: new_local - i64::from(t.offset_seconds),
            ..t
        }
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.years != 0 {
            write!(f, "{}y", self.years)?;
        }
        if self.months != 0 {
            write!(f, "{}m", self.months)?;
        }
        if self.days != 0 {
            write!(f, "{}d", self.days)?;
        }
        if self.hours != 0 {
            write!(f, "{}h", self.hours)?;
        }
        Ok(())
    }
}

/// Parse a `--keep-*` count: a number ≥ 0 or `unlimited` (= -1).
pub fn parse_keep_count(text: &str) -> Result<i64, PolicyError> {
    if text == "unlimited" {
        return Ok(-1);
    }
    let n: i64 = text
        .parse()
        .map_err(|_| PolicyError::InvalidCount(text.to_string()))?;
    if n < 0 {
        return Err(PolicyError::Negative);
    }
    Ok(n)
}

/// The keep policy of `forget` (counts: 0 = off, -1 = unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// `--keep-last`.
    pub last: i64,
    /// `--keep-hourly`.
    pub hourly: i64,
    /// `--keep-daily`.
    pub daily: i64,
    /// `--keep-weekly` (ISO weeks).
    pub weekly: i64,
    /// `--keep-monthly`.
    pub monthly: i64,
    /// `--keep-yearly`.
    pub yearly: i64,
    /// `--keep-within`.
    pub within: CalendarDuration,
    /// `--keep-within-hourly`.
    pub within_hourly: CalendarDuration,
    /// `--keep-within-daily`.
    pub within_daily: CalendarDuration,
    /// `--keep-within-weekly`.
    pub within_weekly: CalendarDuration,
    /// `--keep-within-monthly`.
    pub within_monthly: CalendarDuration,
    /// `--keep-within-yearly`.
    pub within_yearly: CalendarDuration,
    /// `--keep-tag` tag lists: a snapshot with all tags of one list is kept.
    pub tags: Vec<Vec<String>>,
}

impl KeepPolicy {
    /// True when no rule is set (restic: "no policy was specified").
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// `Applying Policy: <this>` text, like restic's `ExpirePolicy.String()`.
impl fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = Vec::new();
        for (n, name) in [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {name}"));
            } else if n == -1 {
                counts.push(format!("all {name}"));
            }
        }
        let mut within = Vec::new();
        for (d, name) in [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ] {
            if !d.is_zero() {
                within.push(format!("{name} snapshots within {d}"));
            }
        }
        let mut s = String::new();
        if !counts.is_empty() {
            s = format!("{} snapshots", counts.join(", "));
        }
        if !within.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&within.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self
                .tags
                .iter()
                // Go prints a TagList as `[a, b]`, a slice of them as `[[a, b] [c]]`.
                .map(|l| format!("[{}]", l.join(", ")))
                .collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if !self.within.is_zero() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        write!(f, "keep {s}")
    }
}

/// Result of [`apply_policy`] for one group, both lists newest first.
#[derive(Debug, Clone, Default)]
pub struct PolicyResult {
    /// Kept snapshots with the reasons they matched.
    pub keep: Vec<(Id, Snapshot, Vec<String>)>,
    /// Snapshots to remove.
    pub remove: Vec<(Id, Snapshot)>,
}

/// How a bucket maps a time to its period.
#[derive(Debug, Clone, Copy)]
enum Period {
    Every,
    Hour,
    Day,
    IsoWeek,
    Month,
    Year,
}

fn period_of(period: Period, t: GoTime, nr: usize) -> i64 {
    let local = t.unix_seconds + i64::from(t.offset_seconds);
    let days = local.div_euclid(86_400);
    let hour = local.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    match period {
        Period::Every => nr as i64,
        Period::Hour => y * 1_000_000 + m * 10_000 + d * 100 + hour,
        Period::Day => y * 10_000 + m * 100 + d,
        Period::IsoWeek => {
            let (iy, w) = iso_week(days);
            iy * 100 + w
        }
        Period::Month => y * 100 + m,
        Period::Year => y,
    }
}

/// Go's `Time.ISOWeek` for a day number (days since 1970-01-01).
fn iso_week(days: i64) -> (i64, i64) {
    // 1970-01-01 was a Thursday; ISO weekday Monday = 0 here.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (ty, _, _) = civil_from_days(thursday);
    let yday = thursday - days_from_civil(ty, 1, 1);
    (ty, yday / 7 + 1)
}

/// Civil date (year, month 1-12, day 1-31) of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
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

/// Day number since 1970-01-01 of a civil date; days beyond the month's
/// end carry over like Go's `time.Date`.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The newest snapshot time that is not in the future (restic's
/// `findLatestTimestamp`); Go's zero time when all are in the future.
fn latest_time(list: &[(Id, Snapshot)], now: GoTime) -> GoTime {
    let mut latest = GoTime::default();
    for (_, s) in list {
        if s.time > latest && s.time < now {
            latest = s.time;
        }
    }
    latest
}

/// Apply `policy` to the snapshots of one group (spec: cli §10.6). With an
/// empty policy everything is kept with the reason "policy is empty".
pub fn apply_policy(list: Vec<(Id, Snapshot)>, policy: &KeepPolicy) -> PolicyResult {
    apply_policy_at(list, policy, GoTime::now_local())
}

/// [`apply_policy`] with an explicit "now" (for tests).
pub fn apply_policy_at(
    mut list: Vec<(Id, Snapshot)>,
    policy: &KeepPolicy,
    now: GoTime,
) -> PolicyResult {
    // Newest first; a stable sort keeps the input order for equal times.
    list.sort_by_key(|e| std::cmp::Reverse(e.1.time.unix_nanos()));
    let mut result = PolicyResult::default();
    if policy.is_empty() {
        result.keep = list
            .into_iter()
            .map(|(id, s)| (id, s, vec!["policy is empty".to_string()]))
            .collect();
        return result;
    }
    if list.is_empty() {
        return result;
    }
    struct Bucket {
        count: i64,
        period: Period,
        last: Option<i64>,
        reason: &'static str,
    }
    let mut buckets = [
        (policy.last, Period::Every, "last snapshot"),
        (policy.hourly, Period::Hour, "hourly snapshot"),
        (policy.daily, Period::Day, "daily snapshot"),
        (policy.weekly, Period::IsoWeek, "weekly snapshot"),
        (policy.monthly, Period::Month, "monthly snapshot"),
        (policy.yearly, Period::Year, "yearly snapshot"),
    ]
    .map(|(count, period, reason)| Bucket {
        count,
        period,
        last: None,
        reason,
    });
    let mut within_buckets = [
        (policy.within_hourly, Period::Hour, "hourly within"),
        (policy.within_daily, Period::Day, "daily within"),
        (policy.within_weekly, Period::IsoWeek, "weekly within"),
        (policy.within_monthly, Period::Month, "monthly within"),
        (policy.within_yearly, Period::Year, "yearly within"),
    ]
    .map(|(within, period, reason)| (within, period, None::<i64>, reason));

    let latest = latest_time(&list, now);
    let n = list.len();
    for (nr, (id, snapshot)) in list.into_iter().enumerate() {
        let t = snapshot.time;
        let mut reasons = Vec::new();
        for tags in &policy.tags {
            if has_tags(&snapshot, tags) {
                reasons.push(format!("has tags [{}]", tags.join(", ")));
            }
        }
        if !policy.within.is_zero() && t > policy.within.before(latest) {
            reasons.push(format!("within {}", policy.within));
        }
        for b in &mut buckets {
            if b.count > 0 || b.count == -1 {
                let value = period_of(b.period, t, nr);
                let oldest = nr == n - 1;
                if b.last != Some(value) || oldest {
                    // restic 0.17+: the extra keep of the oldest snapshot is
                    // named "oldest X snapshot".
                    if b.last == Some(value) {
                        reasons.push(format!("oldest {}", b.reason));
                    } else {
                        reasons.push(b.reason.to_string());
                    }
                    b.last = Some(value);
                    if b.count > 0 {
                        b.count -= 1;
                    }
                }
            }
        }
        for (within, period, last, reason) in &mut within_buckets {
            if within.is_zero() || t <= within.before(latest) {
                continue;
            }
            let value = period_of(*period, t, nr);
            if *last != Some(value) {
                *last = Some(value);
                reasons.push(format!("{reason} {within}"));
            }
        }
        if reasons.is_empty() {
            result.remove.push((id, snapshot));
        } else {
            result.keep.push((id, snapshot, reasons));
        }
    }
    result
}

/// restic's `Snapshot.HasTags`: all tags of the list present; an empty tag
/// in the list matches a snapshot without tags.
fn has_tags(snapshot: &Snapshot, tags: &[String]) -> bool {
    for tag in tags {
        if tag.is_empty() && snapshot.tags.is_empty() {
            return true;
        }
        if !snapshot.tags.iter().any(|t| t == tag) {
            return false;
        }
    }
    true
}

/// Which snapshot fields `--group-by` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the (sorted) path list.
    pub paths: bool,
    /// Group by the (sorted) tag list.
    pub tags: bool,
}

impl GroupBy {
    /// Parse `host,paths,tags` (also singular forms; `""` = no grouping).
    pub fn parse(value: &str) -> Result<GroupBy, String> {
        let mut g = GroupBy::default();
        for part in value.split(',') {
            match part.trim() {
                "" => {}
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                other => return Err(format!("unknown grouping option: \"{other}\"")),
            }
        }
        Ok(g)
    }

    /// The group key of a snapshot.
    pub fn key(&self, s: &Snapshot) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            hostname: if self.host {
                s.hostname.clone()
            } else {
                String::new()
            },
            // Go keeps a nil slice for a snapshot without paths/tags, so
            // the key says `null` (and the header omits the part).
            paths: self
                .paths
                .then(|| sorted(&s.paths))
                .filter(|p| !p.is_empty()),
            tags: self.tags.then(|| sorted(&s.tags)).filter(|t| !t.is_empty()),
        }
    }
}

/// A group key (`None` = not grouped by that field; JSON `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Host name, or empty.
    pub hostname: String,
    /// Sorted paths.
    pub paths: Option<Vec<String>>,
    /// Sorted tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// `host "vm", path [/p]`-style text as restic's `SnapshotGroupKey.String()`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.hostname.is_empty() {
            parts.push(format!("host \"{}\"", self.hostname));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(" ")));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("path [{}]", paths.join(" ")));
        }
        parts.join(", ")
    }

    /// `host [vm], tags [a, b], paths [/p]` (group header of `-v`).
    pub fn header(&self) -> String {
        let mut parts = Vec::new();
        if !self.hostname.is_empty() {
            parts.push(format!("host [{}]", self.hostname));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(", ")));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("paths [{}]", paths.join(", ")));
        }
        parts.join(", ")
    }
}

/// Split snapshots into groups, sorted by key.
pub fn group_snapshots(
    list: Vec<(Id, Snapshot)>,
    by: GroupBy,
) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = Default::default();
    for (id, s) in list {
        groups.entry(by.key(&s)).or_default().push((id, s));
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: i64, d: i64, h: i64) -> GoTime {
        GoTime::from_unix_utc(days_from_civil(y, m, d) * 86_400 + h * 3600, 0)
    }

    fn snaps(times: &[GoTime]) -> Vec<(Id, Snapshot)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    Id::hash(&i.to_le_bytes()),
                    Snapshot {
                        time: *t,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn kept_times(r: &PolicyResult) -> Vec<GoTime> {
        r.keep.iter().map(|(_, s, _)| s.time).collect()
    }

    #[test]
    fn civil_round_trip_and_iso_weeks() {
        for days in -800_000..800_000i64 {
            if days % 997 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        // 2021-01-03 is Sunday of ISO week 2020-53; 2024-12-30 is 2025-W01.
        assert_eq!(iso_week(days_from_civil(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(days_from_civil(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(days_from_civil(2024, 12, 30)), (2025, 1));
        assert_eq!(iso_week(days_from_civil(2026, 11, 22)), (2026, 47));
    }

    #[test]
    fn durations() {
        let d = CalendarDuration::parse("1y5m7d2h").unwrap();
        assert_eq!((d.years, d.months, d.days, d.hours), (1, 5, 7, 2));
        assert_eq!(d.to_string(), "1y5m7d2h");
        assert!(CalendarDuration::parse("5x").is_err());
        assert!(CalendarDuration::parse("d").is_err());
        assert!(CalendarDuration::parse("5").is_err());
        // Go AddDate: 2023-03-31 minus 1 month = 2023-02-31 = 2023-03-03.
        let m = CalendarDuration::parse("1m").unwrap();
        assert_eq!(m.before(at(2023, 3, 31, 5)), at(2023, 3, 3, 5));
        let h = CalendarDuration::parse("1d2h").unwrap();
        assert_eq!(h.before(at(2023, 3, 1, 1)), at(2023, 2, 27, 23));
        assert_eq!(parse_keep_count("unlimited"), Ok(-1));
        assert_eq!(parse_keep_count("-2"), Err(PolicyError::Negative));
    }

    #[test]
    fn daily_with_oldest_rule() {
        // Three days, two snapshots on the first day.
        let list = snaps(&[
            at(2020, 1, 1, 1),
            at(2020, 1, 1, 5),
            at(2020, 1, 2, 3),
            at(2020, 1, 3, 3),
        ]);
        let p = KeepPolicy {
            daily: 10,
            ..Default::default()
        };
        let r = apply_policy_at(list.clone(), &p, at(2030, 1, 1, 0));
        // newest per day + the oldest snapshot (counts left).
        assert_eq!(
            kept_times(&r),
            vec![
                at(2020, 1, 3, 3),
                at(2020, 1, 2, 3),
                at(2020, 1, 1, 5),
                at(2020, 1, 1, 1)
            ]
        );
        assert_eq!(r.keep[3].2, vec!["oldest daily snapshot".to_string()]);
        let p = KeepPolicy {
            daily: 2,
            ..Default::default()
        };
        let r = apply_policy_at(list, &p, at(2030, 1, 1, 0));
        assert_eq!(kept_times(&r), vec![at(2020, 1, 3, 3), at(2020, 1, 2, 3)]);
        assert_eq!(r.remove.len(), 2);
    }

    #[test]
    fn within_and_tags_and_text() {
        let mut list = snaps(&[
            at(2020, 1, 1, 0),
            at(2020, 1, 5, 0),
            at(2020, 1, 9, 0),
            at(2020, 1, 10, 0),
        ]);
        list[0].1.tags = vec!["keep".into()];
        let p = KeepPolicy {
            within: CalendarDuration::parse("2d").unwrap(),
            tags: vec![vec!["keep".into()]],
            ..Default::default()
        };
        let r = apply_policy_at(list, &p, at(2030, 1, 1, 0));
        assert_eq!(
            kept_times(&r),
            vec![at(2020, 1, 10, 0), at(2020, 1, 9, 0), at(2020, 1, 1, 0)]
        );
        assert_eq!(r.keep[2].2, vec!["has tags [keep]".to_string()]);
        assert_eq!(r.keep[0].2, vec!["within 2d".to_string()]);
        assert_eq!(
            p.to_string(),
            "keep all snapshots with tags [[keep]] and all snapshots within 2d of the newest"
        );
        let p = KeepPolicy {
            last: 1,
            ..Default::default()
        };
        assert_eq!(p.to_string(), "keep 1 latest snapshots");
        let p = KeepPolicy {
            daily: 7,
            weekly: -1,
            within_daily: CalendarDuration::parse("7d").unwrap(),
            ..Default::default()
        };
        assert_eq!(
            p.to_string(),
            "keep 7 daily, all weekly snapshots, daily snapshots within 7d"
        );
    }
}
