//! One module per command; [`dispatch`] runs the parsed command line.

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
pub(crate) mod image;
mod init;
mod key;
mod list;
mod ls;
mod ls_ncdu;
mod migrate;
mod mount;
mod prune;
mod recover;
mod repair;
mod restore;
mod rewrite;
mod self_update;
mod serve_nbd;
mod snapshots;
mod stats;
mod tag;
mod unlock;
mod version;

use restix_engine::selection::{find_in, split_snapshot_arg, SelectionError, SnapshotFilter};
use restix_engine::walker::resolve_subfolder;
use restix_repo_format::{Id, Snapshot};

use crate::args::{Cli, Command, GlobalOptions, SnapshotFilterOptions};
use crate::engine_glue::OpenedRepository;
use crate::errors::{exit_code, fatal};
use crate::options::{self, ExtendedOptions, ProcessEnv};
use crate::output::Printer;

/// Everything a command needs from the global flags.
pub struct Context {
    pub global: GlobalOptions,
    pub printer: Printer,
    pub extended: ExtendedOptions,
    pub threads: usize,
}

impl Context {
    /// Validate the global flags (spec: cli §4 step 1).
    fn new(mut global: GlobalOptions) -> anyhow::Result<Context> {
        // --cacert lists, $RESTIC_CACERT, $RESTIC_TLS_CLIENT_CERT,
        // $RESTIC_HTTP_USER_AGENT and --stuck-request-timeout, resolved
        // once for the backends (restic global.go).
        options::resolve_transport(&mut global, &ProcessEnv)?;
        let verbosity = options::verbosity(&global)?;
        let extended = options::parse_extended_options(&global.option)?;
        let threads = options::worker_threads(&global, &ProcessEnv);
        let printer = Printer::new(verbosity, global.json);
        Ok(Context {
            global,
            printer,
            extended,
            threads,
        })
    }
}

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

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of restic's `[]TagList`: `[[a b] [c]]`.
pub fn go_tag_lists(groups: &[Vec<String>]) -> String {
    let inner: Vec<String> = groups.iter().map(|g| go_slice(g)).collect();
    go_slice(&inner)
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
        Command::RestoreChain(args) => image::run_restore_chain(&ctx, args)?,
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

/// The blob cache and loader threads `mount` and `serve-nbd` read file
/// data through: `--blob-cache SIZE` (default 128 MiB), two loads in
/// flight per backend connection, at least four.
pub fn blob_source(
    opened: &OpenedRepository,
    cache_flag: Option<&str>,
) -> anyhow::Result<std::sync::Arc<restix_engine::vfs::BlobSource>> {
    let bytes = match cache_flag {
        Some(text) => options::parse_size(text).map_err(|e| {
            fatal(format!(
                "invalid argument \"{text}\" for \"--blob-cache\" flag: {e}"
            ))
        })?,
        None => restix_engine::vfs::DEFAULT_CACHE_BYTES,
    };
    let loaders = (opened.repo.backend().connections() * 2).max(4);
    Ok(restix_engine::vfs::BlobSource::new(
        std::sync::Arc::clone(&opened.repo),
        bytes,
        loaders,
    ))
}
