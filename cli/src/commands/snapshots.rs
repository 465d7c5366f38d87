//! `snapshots` (spec: cli §10.3, JSON §11.2).

use std::collections::BTreeMap;

use restix_engine::selection::{find_in, sort_snapshots, SnapshotFilter};
use restix_repo_format::{Id, Snapshot};
use serde::Serialize;

use super::Context;
use crate::args::SnapshotsArgs;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
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

/// Group key of `--group-by` (spec: cli §9).
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GroupKey {
    pub hostname: String,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Which snapshot fields a `--group-by` value groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    pub fn parse(value: &str) -> anyhow::Result<GroupBy> {
        let mut group = GroupBy::default();
        for part in value.split(',') {
            match part.trim() {
                "" => {}
                "host" | "hosts" => group.host = true,
                "path" | "paths" => group.paths = true,
                "tag" | "tags" => group.tags = true,
                other => return Err(fatal(format!("unknown grouping option: \"{other}\"")).into()),
            }
        }
        Ok(group)
    }

    pub fn is_none(&self) -> bool {
        !self.host && !self.paths && !self.tags
    }

    pub fn key(&self, snapshot: &Snapshot) -> GroupKey {
        let mut key = GroupKey::default();
        if self.host {
            key.hostname = snapshot.hostname.clone();
        }
        if self.paths {
            let mut paths = snapshot.paths.clone();
            paths.sort();
            key.paths = Some(paths);
        }
        if self.tags {
            let mut tags = snapshot.tags.clone();
            tags.sort();
            key.tags = Some(tags);
        }
        key
    }
}

/// Text of a group key: `host [vm], paths [/a, /b], tags [x]`.
fn group_key_text(key: &GroupKey, group: GroupBy) -> String {
    let mut parts = Vec::new();
    if group.host {
        parts.push(format!("host [{}]", key.hostname));
    }
    if group.paths {
        parts.push(format!(
            "paths [{}]",
            key.paths.clone().unwrap_or_default().join(", ")
        ));
    }
    if group.tags {
        parts.push(format!(
            "tags [{}]",
            key.tags.clone().unwrap_or_default().join(", ")
        ));
    }
    parts.join(", ")
}

/// Multi-snapshot selection with restic's "Ignoring" warnings (spec: cli §8.2, §9).
pub fn select_snapshots(
    ctx: &Context,
    all: &[(Id, Snapshot)],
    ids: &[String],
    filter: &SnapshotFilter,
) -> Vec<(Id, Snapshot)> {
    let mut selected: Vec<(Id, Snapshot)> = Vec::new();
    if ids.is_empty() {
        selected = all
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
    } else {
        if !filter.is_empty() && !ids.iter().any(|id| id == "latest") {
            ctx.printer
                .error("Ignoring \"filters\": explicit snapshot ids are given");
        }
        for arg in ids {
            if arg.contains(':') {
                ctx.printer.error(&format!(
                    "Ignoring \"{arg}\": <snapshot>:<subfolder> syntax not allowed"
                ));
                continue;
            }
            match find_in(all, arg, filter) {
                Ok(found) => {
                    if !selected.iter().any(|(id, _)| *id == found.0) {
                        selected.push(found);
                    }
                }
                Err(restix_engine::selection::SelectionError::NoLatest) => ctx.printer.error(&format!(
                    "Ignoring \"{arg}\": no snapshot matched given filter (Paths:{} Tags:{} Hosts:{})",
                    super::go_slice(&filter.paths),
                    super::go_tag_lists(&filter.tags),
                    super::go_slice(&filter.hosts)
                )),
                Err(e) => ctx.printer.error(&format!("Ignoring \"{arg}\": {e}")),
            }
        }
    }
    sort_snapshots(&mut selected);
    selected
}

/// Keep the newest `n` snapshots of each group (input sorted oldest first).
fn keep_latest(list: Vec<(Id, Snapshot)>, n: usize, group: GroupBy) -> Vec<(Id, Snapshot)> {
    let mut counts: BTreeMap<GroupKey, usize> = BTreeMap::new();
    let mut kept: Vec<(Id, Snapshot)> = Vec::new();
    for entry in list.into_iter().rev() {
        let count = counts.entry(group.key(&entry.1)).or_insert(0);
        if *count < n {
            *count += 1;
            kept.push(entry);
        }
    }
    kept.reverse();
    kept
}

pub fn run(ctx: &Context, args: &SnapshotsArgs) -> anyhow::Result<()> {
    let group = GroupBy::parse(args.group_by.as_deref().unwrap_or(""))?;
    let opened = open_repository(ctx, LockMode::Shared)?;
    let all = opened.list_snapshots()?;
    let filter = super::snapshot_filter(&args.filter);
    let mut selected = select_snapshots(ctx, &all, &args.ids, &filter);
    let latest = if args.last { Some(1) } else { args.latest };
    if let Some(n) = latest.filter(|n| *n > 0) {
        // Without --group-by, --latest groups by host and paths.
        let latest_group = if group.is_none() {
            GroupBy {
                host: true,
                paths: true,
                tags: false,
            }
        } else {
            group
        };
        selected = keep_latest(selected, n, latest_group);
    }

    if group.is_none() {
        if ctx.printer.json {
            let items: Vec<SnapshotJson> = selected
                .iter()
                .map(|(id, s)| SnapshotJson::new(id, s))
                .collect();
            ctx.printer.json_line(&items);
        } else if !selected.is_empty() {
            ctx.printer
                .important(&snapshot_table(&selected, args.compact));
        }
        return Ok(());
    }

    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for entry in selected {
        groups.entry(group.key(&entry.1)).or_default().push(entry);
    }
    if ctx.printer.json {
        #[derive(Serialize)]
        struct GroupJson<'a> {
            group_key: &'a GroupKey,
            snapshots: Vec<SnapshotJson<'a>>,
        }
        let items: Vec<GroupJson> = groups
            .iter()
            .map(|(key, list)| GroupJson {
                group_key: key,
                snapshots: list
                    .iter()
                    .map(|(id, s)| SnapshotJson::new(id, s))
                    .collect(),
            })
            .collect();
        ctx.printer.json_line(&items);
        return Ok(());
    }
    for (key, list) in &groups {
        ctx.printer
            .important(&format!("snapshots for ({}):", group_key_text(key, group)));
        ctx.printer.important(&snapshot_table(list, args.compact));
    }
    Ok(())
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
mod tests {
    use super::*;
    use restix_repo_format::GoTime;

    fn snap(secs: i64, host: &str, paths: &[&str]) -> Snapshot {
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

    #[test]
    fn latest_per_host_and_paths() {
        let list = vec![
            (Id([1; 32]), snap(1, "a", &["/p"])),
            (Id([2; 32]), snap(2, "a", &["/p"])),
            (Id([3; 32]), snap(3, "b", &["/p"])),
            (Id([4; 32]), snap(4, "a", &["/q"])),
        ];
        let group = GroupBy {
            host: true,
            paths: true,
            tags: false,
        };
        let kept: Vec<Id> = keep_latest(list, 1, group)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(kept, vec![Id([2; 32]), Id([3; 32]), Id([4; 32])]);
        assert!(GroupBy::parse("host,x").is_err());
    }
}
