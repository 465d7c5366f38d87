//! `migrate` (restic cmd_migrate.go): without arguments, list the
//! migrations the repository can take; with names, check the repository
//! and apply them (`--force` applies one whose check says no).

use restix_engine::migrate::{check, upgrade_repo_v2, MIGRATIONS};

use crate::args::MigrateArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::repo_check::check_repository;

pub fn run(ctx: &Context, args: &MigrateArgs) -> anyhow::Result<()> {
    let mut opened = open_repository(ctx, LockMode::Exclusive)?;
    let repo = opened.repo.clone();
    let p = &ctx.printer;
    if args.args.is_empty() {
        p.print("available migrations:");
        let mut found = false;
        for migration in MIGRATIONS {
            if check(&repo, migration).0 {
                p.print(&format!("  {}\t{}", migration.name, migration.description));
                found = true;
            }
        }
        if !found {
            p.print("no migrations found");
        }
        opened.unlock();
        return Ok(());
    }
    let mut first_error: Option<anyhow::Error> = None;
    for name in &args.args {
        let Some(migration) = MIGRATIONS.iter().find(|m| m.name == name) else {
            // restic prints this without a line end.
            use std::io::Write;
            let _ = write!(std::io::stderr(), "unknown migration {name}");
            continue;
        };
        let (ok, reason) = check(&repo, migration);
        if !ok {
            if !args.force {
                let reason = if reason.is_empty() {
                    "check failed".to_string()
                } else {
                    reason
                };
                p.error(&format!(
                    "migration {} cannot be applied: {reason}\nIf you want to apply this migration anyway, re-run with option --force",
                    migration.name
                ));
                continue;
            }
            p.error(&format!(
                "check for migration {} failed, continuing anyway",
                migration.name
            ));
        }
        // Every migration of 0.18.1 checks the repository first.
        p.print("checking repository integrity...");
        check_repository(&repo, p, ctx.threads, None)?;
        p.print(&format!("applying migration {}...", migration.name));
        let applied = match migration.name {
            "upgrade_repo_v2" => upgrade_repo_v2(&repo).map_err(anyhow::Error::from),
            other => Err(anyhow::anyhow!("migration {other} is not known")),
        };
        match applied {
            Ok(()) => p.print(&format!("migration {}: success", migration.name)),
            Err(e) => {
                p.error(&format!("migration {} failed: {e}", migration.name));
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    opened.unlock();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
