//! `cache`: list the local cache folders, or remove the old ones
//! (restic cmd_cache.go), restix's own cache entries included (see
//! [`crate::cache_dirs`]).

use std::time::{Duration, SystemTime};

use crate::args::CacheArgs;
use crate::cache_dirs;
use crate::context::Context;
use crate::engine_glue::cache_dir;
use crate::errors::fatal;
use crate::output::{format_bytes, Table};

pub fn run(ctx: &Context, args: &CacheArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal(
            "the cache command expects no arguments, only options - please see `restic help cache` for usage and flags",
        )
        .into());
    }
    if ctx.global.no_cache {
        return Err(fatal("Refusing to do anything, the cache is disabled").into());
    }
    let Some(base) = cache_dir(ctx) else {
        return Err(fatal(
            "unable to locate cache directory: neither $XDG_CACHE_HOME nor $HOME are defined",
        )
        .into());
    };
    let max_age = Duration::from_secs(args.max_age.saturating_mul(24 * 3600));
    let p = &ctx.printer;

    if args.cleanup || ctx.global.cleanup_cache {
        let old = cache_dirs::old_entries(&base, max_age)?;
        if old.is_empty() {
            p.verbose("no old cache dirs found");
            return Ok(());
        }
        p.verbose(&format!("remove {} old cache directories", old.len()));
        for entry in &old {
            if let Err(e) = cache_dirs::remove(entry) {
                p.error(&format!("unable to remove {}: {e}", entry.path.display()));
            }
        }
        return Ok(());
    }

    let entries = cache_dirs::entries(&base)?;
    if entries.is_empty() {
        p.important(&format!(
            "no cache dirs found, basedir is {}",
            base.display()
        ));
        return Ok(());
    }
    let mut headers = vec!["Repo ID", "Last Used", "Old"];
    if !args.no_size {
        headers.push("Size");
    }
    let mut table = Table::new(&headers);
    let grouped = cache_dirs::by_repository(&entries);
    let mut rows: Vec<_> = grouped.iter().collect();
    rows.sort_by_key(|(_, (modified, _))| *modified);
    let now = SystemTime::now();
    for (repo, (modified, parts)) in &rows {
        let name = if repo.starts_with("restic-check-cache-") {
            repo.to_string()
        } else {
            repo.get(..10).unwrap_or(repo).to_string()
        };
        let days = now
            .duration_since(*modified)
            .map(|d| d.as_secs() / (24 * 3600))
            .unwrap_or(0);
        let old = if cache_dirs::is_old(*modified, max_age, now) {
            "yes"
        } else {
            ""
        };
        let mut row = vec![
            vec![name],
            vec![format!("{days} days ago")],
            vec![old.to_string()],
        ];
        if !args.no_size {
            let bytes: u64 = parts.iter().map(|e| cache_dirs::size(&e.path)).sum();
            row.push(vec![format!("{:>11}", format_bytes(bytes))]);
        }
        table.add_row(row);
    }
    p.important(table.render().trim_end());
    p.important(&format!("{} cache dirs in {}", rows.len(), base.display()));
    Ok(())
}
