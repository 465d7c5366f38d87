//! `tag --set/--add/--remove` (spec: cli §10.17, JSON §11.11).

use restix_engine::backend::FileType;
use restix_repo_format::Snapshot;
use serde::Serialize;

use crate::args::TagArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::snapshot_select::select_snapshots;

#[derive(Serialize)]
struct ChangedJson {
    message_type: &'static str,
    old_snapshot_id: String,
    new_snapshot_id: String,
}

#[derive(Serialize)]
struct SummaryJson {
    message_type: &'static str,
    changed_snapshots: u64,
}

fn split_tags(lists: &[String]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Apply the tag change; true when the snapshot changed (restic's rules:
/// `--set` always changes, `--add` skips present tags, `--remove` drops
/// every copy).
pub fn change_tags(
    s: &mut Snapshot,
    set: Option<&[String]>,
    add: &[String],
    remove: &[String],
) -> bool {
    if let Some(set) = set {
        s.tags = set.to_vec();
        return true;
    }
    let mut changed = false;
    for t in add {
        if !s.tags.contains(t) {
            s.tags.push(t.clone());
            changed = true;
        }
    }
    let before = s.tags.len();
    s.tags.retain(|t| !remove.contains(t));
    changed || s.tags.len() != before
}

pub fn run(ctx: &Context, args: &TagArgs) -> anyhow::Result<()> {
    if args.set.is_empty() && args.add.is_empty() && args.remove.is_empty() {
        return Err(fatal("nothing to do!").into());
    }
    if !args.set.is_empty() && (!args.add.is_empty() || !args.remove.is_empty()) {
        return Err(fatal("--set and --add/--remove cannot be given at the same time").into());
    }
    let set = (!args.set.is_empty()).then(|| split_tags(&args.set));
    let add = split_tags(&args.add);
    let remove = split_tags(&args.remove);
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    if !ctx.global.no_lock {
        ctx.printer.verbose("create exclusive lock for repository");
    }
    let all = opened.list_snapshots()?;
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);
    let mut changed = 0u64;
    for (id, snapshot) in selected {
        let mut s = snapshot.clone();
        if !change_tags(&mut s, set.as_deref(), &add, &remove) {
            continue;
        }
        if s.original.is_none() {
            s.original = Some(id);
        }
        let new_id = opened.repo.save_snapshot(&s)?;
        opened.repo.remove_file(FileType::Snapshot, &id)?;
        changed += 1;
        if ctx.printer.json {
            ctx.printer.json_line(&ChangedJson {
                message_type: "changed",
                old_snapshot_id: id.to_hex(),
                new_snapshot_id: new_id.to_hex(),
            });
        } else {
            ctx.printer.verbose(&format!(
                "old snapshot ID: {} -> new snapshot ID: {}",
                id.to_hex(),
                new_id.to_hex()
            ));
        }
    }
    opened.unlock();
    if ctx.printer.json {
        ctx.printer.json_line(&SummaryJson {
            message_type: "summary",
            changed_snapshots: changed,
        });
    } else if changed == 0 {
        ctx.printer.print("no snapshots were modified");
    } else {
        ctx.printer.print(&format!("modified {changed} snapshots"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules() {
        let mut s = Snapshot {
            tags: vec!["a".into(), "b".into(), "a".into()],
            ..Default::default()
        };
        assert!(!change_tags(&mut s, None, &["a".into()], &[]));
        assert!(change_tags(&mut s, None, &["c".into()], &["a".into()]));
        assert_eq!(s.tags, vec!["b".to_string(), "c".to_string()]);
        assert!(change_tags(&mut s, Some(&[]), &[], &[]));
        assert!(s.tags.is_empty());
    }
}
