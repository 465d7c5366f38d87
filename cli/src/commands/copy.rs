//! `copy --from-repo SRC` or the legacy `copy --repo2 DST` (spec: cli
//! §10.16; the second repository: [`crate::secondary_repo`]).

use restix_engine::copy::{copy_snapshot, find_existing_copy, CopyState};
use restix_engine::repository::{LockGuard, Repository};

use crate::args::CopyArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, read_password, LockMode};
use crate::errors::{fatal, map_lock_error};
use crate::options::ProcessEnv;
use crate::secondary_repo::open_secondary;
use crate::snapshot_select::select_snapshots;
use crate::timefmt::go_time_string;

pub fn run(ctx: &Context, args: &CopyArgs) -> anyhow::Result<()> {
    let secondary = open_secondary(
        &ctx.global,
        &ctx.extended,
        &args.secondary,
        "destination",
        &ProcessEnv,
        &|prompt| read_password(ctx, prompt),
    )?;
    // With --from-repo the second repository is the source and --repo the
    // destination; with the legacy --repo2 it is the other way round.
    // The destination is always locked (restic openWithAppendLock), the
    // source not with --no-lock.
    let primary_lock = if secondary.from_repo {
        LockMode::SharedAlways
    } else {
        LockMode::Shared
    };
    let mut primary = open_repository(ctx, primary_lock)?;
    let secondary_lock: Option<LockGuard> = if ctx.global.no_lock && secondary.from_repo {
        None
    } else {
        Some(secondary.repo.lock(false).map_err(map_lock_error)?)
    };
    let (src, dst): (&Repository, &Repository) = if secondary.from_repo {
        (&secondary.repo, &primary.repo)
    } else {
        ctx.apply_write_settings(&secondary.repo)?;
        (&primary.repo, &secondary.repo)
    };
    let all = src.list_snapshots()?;
    let filter = crate::snapshot_select::snapshot_filter(&args.filter);
    let selected = select_snapshots(ctx, &all, &args.ids, &filter);
    let dst_snaps = dst.list_snapshots()?;
    src.load_index()?;
    dst.load_index()?;
    let mut state = CopyState::default();
    for (id, snapshot) in &selected {
        if let Some(existing) = find_existing_copy(&dst_snaps, id, snapshot) {
            ctx.printer.verbose(&format!(
                "\nskipping source snapshot {}, was already copied to snapshot {}",
                id.short(),
                existing.short()
            ));
            continue;
        }
        ctx.printer.print(&format!(
            "\nsnapshot {} of [{}] at {} by {}@{}",
            id.short(),
            snapshot.paths.join(" "),
            go_time_string(snapshot.time),
            snapshot.username,
            snapshot.hostname
        ));
        ctx.printer
            .print("  copy started, this may take a while...");
        let new_id =
            copy_snapshot(src, dst, id, snapshot, &mut state).map_err(|e| fatal(e.to_string()))?;
        ctx.printer.print(&format!(
            "snapshot {} saved, copied from source snapshot {}",
            new_id.short(),
            id.short()
        ));
    }
    primary.unlock();
    if let Some(lock) = secondary_lock {
        let _ = lock.release();
    }
    Ok(())
}
