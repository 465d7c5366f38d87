//! `list blobs|packs|index|snapshots|keys|locks` (spec: cli §10.22).

use restix_engine::backend::FileType;

use crate::args::PositionalArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::CliError;

pub fn run(ctx: &Context, args: &PositionalArgs) -> anyhow::Result<()> {
    // cobra ExactArgs(1) and OnlyValidArgs (restic cmd_list.go); the
    // messages have no `Fatal:` prefix.
    let program = crate::pflag::program_name(std::env::args().next().as_deref());
    let kind = match args.args.as_slice() {
        [kind] => kind.as_str(),
        other => {
            return Err(
                CliError::plain(1, format!("accepts 1 arg(s), received {}", other.len())).into(),
            )
        }
    };
    let file_type = match kind {
        "blobs" => None,
        "packs" => Some(FileType::Pack),
        "index" => Some(FileType::Index),
        "snapshots" => Some(FileType::Snapshot),
        "keys" => Some(FileType::Key),
        "locks" => Some(FileType::Lock),
        other => {
            return Err(CliError::plain(
                1,
                format!("invalid argument {other:?} for \"{program} list\""),
            )
            .into())
        }
    };
    let lock = if file_type == Some(FileType::Lock) {
        LockMode::None
    } else {
        LockMode::Shared
    };
    let opened = open_repository(ctx, lock)?;
    let mut out = String::new();
    match file_type {
        Some(file_type) => {
            for id in opened.repo.list_files(file_type)? {
                out.push_str(&id.to_hex());
                out.push('\n');
            }
        }
        None => {
            opened.load_index()?;
            opened.repo.with_index(|index| {
                index.for_each(|blob_type, id, _| {
                    out.push_str(blob_type.as_str());
                    out.push(' ');
                    out.push_str(&id.to_hex());
                    out.push('\n');
                })
            });
        }
    }
    if !out.is_empty() {
        ctx.printer.important(&out);
    }
    Ok(())
}
