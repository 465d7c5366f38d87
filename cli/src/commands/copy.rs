//! `copy --from-repo SRC` (spec: cli §10.16).

use std::sync::Arc;

use restix_engine::copy::{copy_snapshot, find_existing_copy, CopyState};
use restix_engine::repository::Repository;

use super::snapshots::select_snapshots;
use super::Context;
use crate::args::CopyArgs;
use crate::engine_errors::{map_lock_error, map_open_error};
use crate::engine_glue::{open_repository, read_password, LockMode};
use crate::errors::fatal;
use crate::location::{open_backend_tls, tls_options};
use crate::options::decode_text_file;
use crate::timefmt::go_time_string;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn source_location(args: &CopyArgs) -> anyhow::Result<String> {
    if let Some(repo) = args
        .from_repo
        .clone()
        .or_else(|| env("RESTIC_FROM_REPOSITORY"))
    {
        return Ok(repo);
    }
    if let Some(file) = args
        .from_repository_file
        .clone()
        .or_else(|| env("RESTIC_FROM_REPOSITORY_FILE"))
    {
        let bytes = std::fs::read(&file)
            .map_err(|e| fatal(format!("unable to read repository file: {e}")))?;
        return Ok(decode_text_file(&bytes).trim().to_string());
    }
    Err(fatal(
        "Please specify a source repository location (--from-repo or --from-repository-file)",
    )
    .into())
}

fn source_password(ctx: &Context, args: &CopyArgs) -> anyhow::Result<String> {
    if let Some(file) = args
        .from_password_file
        .clone()
        .or_else(|| env("RESTIC_FROM_PASSWORD_FILE"))
    {
        let bytes =
            std::fs::read(&file).map_err(|e| fatal(format!("Resolving password failed: {e}")))?;
        return Ok(decode_text_file(&bytes).trim().to_string());
    }
    if let Some(command) = args
        .from_password_command
        .clone()
        .or_else(|| env("RESTIC_FROM_PASSWORD_COMMAND"))
    {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .map_err(|e| fatal(format!("Resolving password failed: {e}")))?;
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    if let Some(p) = env("RESTIC_FROM_PASSWORD") {
        return Ok(p);
    }
    read_password(ctx, "enter password for source repository: ")
}

pub fn run(ctx: &Context, args: &CopyArgs) -> anyhow::Result<()> {
    let location = source_location(args)?;
    let password = source_password(ctx, args)?;
    let backend = open_backend_tls(
        &location,
        &ctx.extended,
        ctx.global.limit_upload,
        ctx.global.limit_download,
        &tls_options(&ctx.global.cacert, ctx.global.insecure_tls),
        ctx.global.tls_client_cert.as_deref(),
    )?;
    let hint = args
        .from_key_hint
        .clone()
        .or_else(|| env("RESTIC_FROM_KEY_HINT"));
    let src = Arc::new(
        Repository::open(backend, password.as_bytes(), hint.as_deref())
            .map_err(|e| map_open_error(e, &location))?,
    );
    let src_lock = if ctx.global.no_lock {
        None
    } else {
        Some(src.lock(false).map_err(map_lock_error)?)
    };
    let mut dst = open_repository(ctx, LockMode::Shared)?;
    let all = src.list_snapshots()?;
    let filter = super::snapshot_filter(&args.filter);
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
        let new_id = copy_snapshot(&src, &dst.repo, id, snapshot, &mut state)
            .map_err(|e| fatal(e.to_string()))?;
        ctx.printer.print(&format!(
            "snapshot {} saved, copied from source snapshot {}",
            new_id.short(),
            id.short()
        ));
    }
    dst.unlock();
    if let Some(lock) = src_lock {
        let _ = lock.release();
    }
    Ok(())
}
