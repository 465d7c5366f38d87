//! Lock files (`locks/<id>`). spec: restic-format §14.

use serde::{Deserialize, Serialize};

use crate::serde_util::{is_zero_u32, null_default};
use crate::time::GoTime;

/// Age after which a lock is stale (30 minutes).
pub const STALE_LOCK_SECONDS: i64 = 30 * 60;
/// How often a lock holder writes a fresh lock (5 minutes).
pub const LOCK_REFRESH_SECONDS: i64 = 5 * 60;

/// A lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// When the lock was written.
    #[serde(default)]
    pub time: GoTime,
    /// Exclusive (prune, …) or shared.
    #[serde(default, deserialize_with = "null_default")]
    pub exclusive: bool,
    /// Host of the holder.
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// User of the holder.
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    /// Process ID of the holder.
    #[serde(default, deserialize_with = "null_default")]
    pub pid: i64,
    /// Numeric user ID.
    #[serde(
        default,
        skip_serializing_if = "is_zero_u32",
        deserialize_with = "null_default"
    )]
    pub uid: u32,
    /// Numeric group ID.
    #[serde(
        default,
        skip_serializing_if = "is_zero_u32",
        deserialize_with = "null_default"
    )]
    pub gid: u32,
}

impl Lock {
    /// Parses lock JSON.
    pub fn parse(json: &[u8]) -> Result<Lock, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Compact Go-compatible JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        Ok(crate::gojson::html_escape(serde_json::to_vec(self)?))
    }

    /// True if older than 30 minutes at `now` (the time half of restic's
    /// staleness rule; the same-host dead-PID half needs the OS).
    pub fn is_stale_by_age(&self, now: GoTime) -> bool {
        now.unix_seconds.saturating_sub(self.time.unix_seconds) > STALE_LOCK_SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let j = r#"{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":false,"hostname":"kasimir","username":"fd0","pid":13607,"uid":1000,"gid":100}"#;
        let l = Lock::parse(j.as_bytes()).unwrap();
        assert_eq!(l.to_json().unwrap(), j.as_bytes());
        let root = Lock {
            uid: 0,
            gid: 0,
            ..l.clone()
        };
        assert!(!String::from_utf8(root.to_json().unwrap())
            .unwrap()
            .contains("uid"));
        let later = GoTime {
            unix_seconds: l.time.unix_seconds + 1801,
            ..l.time
        };
        assert!(l.is_stale_by_age(later));
        assert!(!l.is_stale_by_age(l.time));
    }
}
