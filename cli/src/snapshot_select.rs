//! Choosing snapshots from the command line, shared by every command that
//! takes snapshot IDs or filters (spec: cli §8.2, §9): the filter from
//! `--host/--tag/--path`, one snapshot (`ID[:subfolder]`, `latest`) or a
//! list with restic's "Ignoring" warnings, and `--group-by` keys.

use restix_engine::selection::{
    find_in, sort_snapshots, split_snapshot_arg, SelectionError, SnapshotFilter,
};
use restix_engine::walker::resolve_subfolder;
use restix_repo_format::{Id, Snapshot};
use serde::Serialize;

use crate::args::SnapshotFilterOptions;
use crate::context::Context;
use crate::engine_glue::OpenedRepository;
use crate::errors::fatal;
use crate::output::{go_slice, go_tag_lists};

/// Snapshot filter from `--host/--tag/--path`; `$RESTIC_HOST` is the
/// default host filter (spec: cli §9).
pub fn snapshot_filter(args: &SnapshotFilterOptions) -> SnapshotFilter {
    let mut hosts = args.host.clone();
    if hosts.is_empty() {
        if let Some(host) = std::env::var("RESTIC_HOST").ok().filter(|h| !h.is_empty()) {
            hosts.push(host);
        }
    }
    SnapshotFilter::from_args(&hosts, &args.tag, &args.path)
}

/// Resolve the argument of a single-snapshot command (`ID`, prefix,
/// `latest`, optionally `:subfolder`): the snapshot and the tree to work on.
/// Loads the index.
pub fn select_single(
    ctx: &Context,
    opened: &OpenedRepository,
    arg: &str,
    filter_args: &SnapshotFilterOptions,
) -> anyhow::Result<(Id, Snapshot, Id)> {
    let (id_arg, subfolder) = split_snapshot_arg(arg);
    let filter = snapshot_filter(filter_args);
    let all = opened.list_snapshots()?;
    let (id, snapshot) = find_in(&all, id_arg, &filter).map_err(|e| match e {
        SelectionError::NoLatest => fatal(format!(
            "failed to find snapshot: snapshot filter (Paths:{} Tags:{} Hosts:{}): no snapshot found",
            go_slice(&filter.paths),
            go_tag_lists(&filter.tags),
            go_slice(&filter.hosts)
        )),
        other => fatal(format!("failed to find snapshot: {other}")),
    })?;
    opened.load_index_cached(ctx)?;
    let root = snapshot
        .tree
        .ok_or_else(|| fatal(format!("snapshot {} has no tree", id.short())))?;
    let tree = match subfolder {
        Some(sub) => resolve_subfolder(&opened.repo, &root, sub.as_bytes())
            .map_err(|e| fatal(format!("failed to find snapshot: {e}")))?,
        None => root,
    };
    Ok((id, snapshot, tree))
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
            // restic copies the snapshot's tag slice, which is nil for an
            // untagged snapshot: its group key says `"tags": null`, not `[]`.
            let mut tags = snapshot.tags.clone();
            tags.sort();
            key.tags = (!tags.is_empty()).then_some(tags);
        }
        key
    }
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
                    go_slice(&filter.paths),
                    go_tag_lists(&filter.tags),
                    go_slice(&filter.hosts)
                )),
                Err(e) => ctx.printer.error(&format!("Ignoring \"{arg}\": {e}")),
            }
        }
    }
    sort_snapshots(&mut selected);
    selected
}
