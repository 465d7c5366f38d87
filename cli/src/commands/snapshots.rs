//! `snapshots` (spec: cli §10.3, JSON §11.2).

use std::collections::BTreeMap;

use restix_repo_format::{Id, Snapshot};
use serde::Serialize;

use crate::args::SnapshotsArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::snapshot_select::{select_snapshots, snapshot_filter, GroupBy, GroupKey};
use crate::snapshot_view::{snapshot_table, SnapshotJson};

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
    let filter = snapshot_filter(&args.filter);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot_view::tests::snap;

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
