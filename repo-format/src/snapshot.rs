//! Snapshot files (`snapshots/<id>`). spec: restic-format §10.

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::serde_util::{is_zero_u32, null_default};
use crate::time::GoTime;

/// A snapshot, fields in restic's order with its `omitempty` rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot time.
    #[serde(default)]
    pub time: GoTime,
    /// Parent snapshot used for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Root tree (`null` only in test data).
    #[serde(default)]
    pub tree: Option<Id>,
    /// Backed-up paths (absolute).
    #[serde(default, deserialize_with = "null_default")]
    pub paths: Vec<String>,
    /// Host name.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub hostname: String,
    /// User name.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub username: String,
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
    /// Exclude patterns.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub excludes: Vec<String>,
    /// Tags.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub tags: Vec<String>,
    /// The snapshot this one was derived from (tag/rewrite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// e.g. `"restic 0.18.0"`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub program_version: String,
    /// Backup statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
}

/// Backup statistics stored in a snapshot (all keys always present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotSummary {
    /// Start of the backup.
    pub backup_start: GoTime,
    /// End of the backup.
    pub backup_end: GoTime,
    /// New files.
    pub files_new: u64,
    /// Changed files.
    pub files_changed: u64,
    /// Unmodified files.
    pub files_unmodified: u64,
    /// New directories.
    pub dirs_new: u64,
    /// Changed directories.
    pub dirs_changed: u64,
    /// Unmodified directories.
    pub dirs_unmodified: u64,
    /// Data blobs added.
    pub data_blobs: i64,
    /// Tree blobs added.
    pub tree_blobs: i64,
    /// Bytes added (uncompressed).
    pub data_added: u64,
    /// Bytes added (as stored).
    pub data_added_packed: u64,
    /// Files processed.
    pub total_files_processed: u64,
    /// Bytes processed.
    pub total_bytes_processed: u64,
}

impl Snapshot {
    /// Parses snapshot JSON (unknown keys ignored, trailing newline fine).
    pub fn parse(json: &[u8]) -> Result<Snapshot, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Compact Go-compatible JSON (HTML-escaped, no trailing newline).
    /// Fails only for times with years outside 0..=9999.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        Ok(crate::gojson::html_escape(serde_json::to_vec(self)?))
    }

    /// True if the snapshot has all of `tags`.
    pub fn has_tags(&self, tags: &[&str]) -> bool {
        tags.iter().all(|t| self.tags.iter().any(|s| s == t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let j = r#"{"time":"2015-06-27T12:18:51.759239612+02:00","parent":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","tree":"9ccb846e60d90d4eb915848add7aa7ea1e4bbabfc60e573db9f7bfb2789afbae","paths":["/a<b>"],"hostname":"h","username":"u","uid":1000,"gid":100,"excludes":["*.o"],"tags":["x"],"original":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","program_version":"restic 0.18.0","summary":{"backup_start":"2015-06-27T12:18:51Z","backup_end":"2015-06-27T12:18:52Z","files_new":1,"files_changed":2,"files_unmodified":3,"dirs_new":4,"dirs_changed":5,"dirs_unmodified":6,"data_blobs":7,"tree_blobs":8,"data_added":9,"data_added_packed":10,"total_files_processed":11,"total_bytes_processed":12}}"#;
        let s = Snapshot::parse(format!("{j}\n").as_bytes()).unwrap();
        let out = String::from_utf8(s.to_json().unwrap()).unwrap();
        assert_eq!(out, j.replace("/a<b>", "/a\\u003cb\\u003e"));
        let min = Snapshot::parse(
            br#"{"time":"2015-06-27T12:18:51Z","tree":null,"paths":null,"unknown":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(min.to_json().unwrap()).unwrap(),
            r#"{"time":"2015-06-27T12:18:51Z","tree":null,"paths":[]}"#
        );
        assert!(s.has_tags(&["x"]) && !s.has_tags(&["y"]));
    }
}
