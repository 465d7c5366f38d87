//! `prune` (spec: cli §10.7); the work is in [`crate::pruning`], which
//! `forget --prune` shares.

use crate::args::PruneArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::pruning::{prune_options, run_with_repo_opts};

pub fn run(ctx: &Context, args: &PruneArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal("this command does not accept additional arguments").into());
    }
    if ctx.global.no_lock && !args.dry_run {
        return Err(fatal(
            "--no-lock is only applicable in combination with --dry-run for prune command",
        )
        .into());
    }
    // Validate the options before touching the repository.
    prune_options(&args.prune)?;
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    // --unsafe-recover-no-free-space ID (#17, restic cmd_prune.go): only
    // with the repository's ID; nothing is repacked.
    let unsafe_recovery = match args.unsafe_recover_no_free_space.as_deref() {
        Some(given) if !given.is_empty() => {
            let id = &opened.repo.config().id;
            if given != id {
                return Err(fatal(format!(
                    "must pass id '{id}' to --unsafe-recover-no-free-space"
                ))
                .into());
            }
            true
        }
        _ => false,
    };
    run_with_repo_opts(ctx, &opened, &args.prune, args.dry_run, unsafe_recovery)?;
    opened.unlock();
    Ok(())
}
