//! One module per command; [`dispatch`] runs the parsed command line.
//!
//! This is the top floor of the crate below `lib.rs`: each command module
//! takes a [`Context`] and its own argument struct and imports only the
//! layers below (see docs/cli-layers.md); no command imports another, and
//! nothing below imports a command.

mod backup;
mod cache;
mod cat;
mod check;
mod copy;
mod diff;
mod dump;
mod extended_options;
mod features;
mod find;
mod forget;
mod generate;
mod init;
mod key;
mod list;
mod ls;
mod migrate;
mod mount;
mod prune;
mod recover;
mod repair;
mod restore;
mod restore_chain;
mod rewrite;
mod self_update;
mod serve_nbd;
mod snapshots;
mod stats;
mod tag;
mod unlock;
mod version;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::errors::exit_code;

/// Run the command; returns the exit status on success paths.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return Ok(exit_code::SUCCESS);
    };
    let ctx = Context::new(cli.global)?;
    match &command {
        Command::Version(_) => version::run(&ctx)?,
        Command::Generate(args) => generate::run(&ctx, args)?,
        Command::Init(args) => init::run(&ctx, args)?,
        Command::Backup(args) => backup::run(&ctx, args)?,
        Command::Snapshots(args) => snapshots::run(&ctx, args)?,
        Command::Restore(args) => restore::run(&ctx, args)?,
        Command::RestoreChain(args) => restore_chain::run(&ctx, args)?,
        Command::Dump(args) => dump::run(&ctx, args)?,
        Command::Ls(args) => ls::run(&ctx, args)?,
        Command::Cat(args) => cat::run(&ctx, args)?,
        Command::List(args) => list::run(&ctx, args)?,
        Command::Unlock(args) => unlock::run(&ctx, args)?,
        Command::Forget(args) => forget::run(&ctx, args)?,
        Command::Prune(args) => prune::run(&ctx, args)?,
        Command::Check(args) => check::run(&ctx, args)?,
        Command::Stats(args) => stats::run(&ctx, args)?,
        Command::Key(args) => key::run(&ctx, args)?,
        Command::Tag(args) => tag::run(&ctx, args)?,
        Command::Diff(args) => diff::run(&ctx, args)?,
        Command::Find(args) => find::run(&ctx, args)?,
        Command::Copy(args) => copy::run(&ctx, args)?,
        Command::Repair(args) => repair::run(&ctx, args)?,
        Command::RebuildIndex(args) => repair::run_index(&ctx, args)?,
        Command::Cache(args) => cache::run(&ctx, args)?,
        Command::Features(args) => features::run(&ctx, args)?,
        Command::Options(args) => extended_options::run(&ctx, args)?,
        Command::SelfUpdate(args) => self_update::run(&ctx, args)?,
        Command::Rewrite(args) => rewrite::run(&ctx, args)?,
        Command::Recover(args) => recover::run(&ctx, args)?,
        Command::Migrate(args) => migrate::run(&ctx, args)?,
        Command::Mount(args) => mount::run(&ctx, args)?,
        Command::ServeNbd(args) => serve_nbd::run(&ctx, args)?,
    }
    Ok(exit_code::SUCCESS)
}
