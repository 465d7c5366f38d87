//! `check` (spec: cli §10.8, JSON §11.7): the flags as restic 0.18.1 reads
//! them, then [`crate::repo_check`].
//!
//! - arguments are refused (0.18.1's check has no snapshot selection);
//! - `--check-unused` is accepted and ignored (pflag prints its
//!   deprecation note);
//! - without `--with-cache` (and without `--no-cache`) restic checks with a
//!   fresh temporary cache, `restic-check-cache-<n>` in the cache folder (or
//!   the temp folder), and removes it afterwards; restix reads the
//!   repository directly either way, and makes and removes that folder
//!   and prints restic's line about it.

use restix_engine::check::ReadSubset;

use crate::args::CheckArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::repo_check::check_repository;

/// The temporary cache folder restic's check uses; removed on drop.
struct TemporaryCache(Option<std::path::PathBuf>);

impl Drop for TemporaryCache {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temporary_cache(ctx: &Context, args: &CheckArgs) -> TemporaryCache {
    if args.with_cache || ctx.global.no_cache {
        return TemporaryCache(None);
    }
    let base = ctx
        .global
        .cache_dir
        .clone()
        .or_else(|| {
            std::env::var("RESTIC_CACHE_DIR")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .map(std::path::PathBuf::from);
    let parent = match &base {
        Some(base) => {
            if let Err(e) = std::fs::create_dir_all(base) {
                ctx.printer.error(&format!(
                    "unable to create cache directory {}, disabling cache: {e}",
                    base.display()
                ));
                return TemporaryCache(None);
            }
            base.clone()
        }
        None => std::env::temp_dir(),
    };
    for attempt in 0..100u32 {
        // Go's MkdirTemp: the pattern with a random decimal number.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let number =
            nanos ^ std::process::id().rotate_left(16) ^ attempt.wrapping_mul(2_654_435_761);
        let dir = parent.join(format!("restic-check-cache-{number}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                ctx.printer
                    .print(&format!("using temporary cache in {}", dir.display()));
                return TemporaryCache(Some(dir));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                ctx.printer.error(&format!(
                    "unable to create temporary directory for cache during check, disabling cache: {e}"
                ));
                return TemporaryCache(None);
            }
        }
    }
    TemporaryCache(None)
}

pub fn run(ctx: &Context, args: &CheckArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal(
            "the check command expects no arguments, only options - please see `restic help check` for usage and flags",
        )
        .into());
    }
    if args.read_data && args.read_data_subset.is_some() {
        return Err(fatal(
            "check flags --read-data and --read-data-subset cannot be used together",
        )
        .into());
    }
    let subset = match &args.read_data_subset {
        Some(text) => Some(ReadSubset::parse(text).ok_or_else(|| {
            fatal("check flag --read-data-subset has invalid value, please see documentation")
        })?),
        None if args.read_data => Some(ReadSubset::All),
        None => None,
    };
    let _cache = temporary_cache(ctx, args);
    if !ctx.global.no_lock {
        ctx.printer.print("create exclusive lock for repository");
    }
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let result = check_repository(&opened.repo, &ctx.printer, ctx.threads, subset);
    opened.unlock();
    result
}
