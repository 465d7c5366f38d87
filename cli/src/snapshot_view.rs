//! How snapshots are shown: the `--json` object and restic's
//! `PrintSnapshots` table (spec: cli §10.3, §11.2), shared by `snapshots`,
//! `forget` and `ls`.

use restix_repo_format::{Id, Snapshot};
use serde::Serialize;

use crate::output::{format_bytes, Table};
use crate::timefmt::local_time_text;

/// A snapshot as `snapshots --json` prints it: stored fields, then `id`, `short_id`.
#[derive(Serialize)]
pub struct SnapshotJson<'a> {
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
    pub id: String,
    pub short_id: String,
}

impl<'a> SnapshotJson<'a> {
    pub fn new(id: &Id, snapshot: &'a Snapshot) -> Self {
        SnapshotJson {
            snapshot,
            id: id.to_hex(),
            short_id: id.short(),
        }
    }
}

/// The snapshot table (spec: cli §10.3 "Table rules").
pub fn snapshot_table(list: &[(Id, Snapshot)], compact: bool) -> String {
    let rows: Vec<(&Id, &Snapshot, Option<&[String]>)> =
        list.iter().map(|(id, s)| (id, s, None)).collect();
    snapshot_table_with_reasons(&rows, compact)
}

/// restic's `PrintSnapshots` table, with a Reasons column for kept snapshots.
pub fn snapshot_table_with_reasons(
    list: &[(&Id, &Snapshot, Option<&[String]>)],
    compact: bool,
) -> String {
    let with_reasons = list.iter().any(|(_, _, r)| r.is_some());
    let with_size = list.iter().any(|(_, s, _)| s.summary.is_some());
    let mut headers = vec!["ID", "Time", "Host      ", "Tags      "];
    if with_reasons {
        headers.push("Reasons");
    }
    if !compact {
        headers.push("Paths");
    }
    if with_size {
        headers.push("Size");
    }
    let mut table = Table::new(&headers);
    let mut multi_line = false;
    for (id, snapshot, reasons) in list {
        let mut row = vec![
            vec![id.short()],
            vec![local_time_text(snapshot.time)],
            vec![snapshot.hostname.clone()],
        ];
        if compact {
            row.push(snapshot.tags.clone());
        } else {
            row.push(vec![snapshot.tags.join(",")]);
        }
        if with_reasons {
            row.push(reasons.map(|r| r.to_vec()).unwrap_or_default());
        }
        if !compact {
            row.push(snapshot.paths.clone());
            if snapshot.paths.len() > 1 {
                multi_line = true;
            }
        }
        if with_size {
            row.push(vec![snapshot
                .summary
                .as_ref()
                .map(|s| format_bytes(s.total_bytes_processed))
                .unwrap_or_default()]);
        }
        table.add_row(row);
    }
    table.blank_between_rows = multi_line;
    table.add_footer(format!("{} snapshots", list.len()));
    table.render().trim_end_matches('\n').to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use restix_repo_format::GoTime;

    /// A snapshot for tests: `secs` after the epoch, host and paths.
    pub(crate) fn snap(secs: i64, host: &str, paths: &[&str]) -> Snapshot {
        Snapshot {
            time: GoTime::from_unix_utc(secs, 5),
            hostname: host.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tree: Some(Id([1; 32])),
            ..Default::default()
        }
    }

    #[test]
    fn json_shape_matches_restic() {
        let s = Snapshot {
            username: "root".into(),
            tags: vec!["t1".into(), "t2".into()],
            ..snap(1_795_373_836, "myhost", &["/tmp/rx/data"])
        };
        let id = Id([0xc7; 32]);
        let json = crate::output::to_go_json(&vec![SnapshotJson::new(&id, &s)]);
        let expected = format!(
            r#"[{{"time":"2026-11-22T18:57:16.000000005Z","tree":"{}","paths":["/tmp/rx/data"],"hostname":"myhost","username":"root","tags":["t1","t2"],"id":"{}","short_id":"c7c7c7c7"}}]"#,
            Id([1; 32]).to_hex(),
            id.to_hex()
        );
        assert_eq!(json, expected);
        let empty: Vec<SnapshotJson> = Vec::new();
        assert_eq!(crate::output::to_go_json(&empty), "[]");
    }
}
