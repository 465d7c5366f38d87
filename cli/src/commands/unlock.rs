//! `unlock` (spec: cli §10.9): remove stale locks, or all with `--remove-all`.

use restix_engine::repository::lock::{remove_all_locks, remove_stale_locks};

use crate::args::UnlockArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::map_lock_error;

pub fn run(ctx: &Context, args: &UnlockArgs) -> anyhow::Result<()> {
    let opened = open_repository(ctx, LockMode::None)?;
    let removed = if args.remove_all {
        remove_all_locks(&opened.repo)
    } else {
        remove_stale_locks(&opened.repo)
    }
    .map_err(map_lock_error)?;
    if removed > 0 {
        ctx.printer
            .print(&format!("successfully removed {removed} locks"));
    }
    Ok(())
}
