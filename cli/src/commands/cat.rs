//! `cat` (spec: cli §10.10): print repository objects.
//!
//! `config`, `masterkey`, `key`, `snapshot`, `lock` are printed as indented
//! JSON in restic's field order; `index` as the decrypted JSON text; `pack`
//! as the raw file; `blob` and `tree` as decrypted plaintext.

use std::io::Write;

use restix_engine::backend::FileType;
use restix_engine::selection::{find_in, split_snapshot_arg};
use restix_engine::walker::resolve_subfolder;
use restix_repo_format::{BlobType, Id, KeyFile, Lock};

use crate::args::PositionalArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::output::{indent_json, to_go_json_indent};

const TYPES: &str = "[config|index|snapshot|key|masterkey|lock|pack|blob|tree]";

fn write_raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// A full ID or a unique prefix of a file of `file_type`.
fn find(
    repo: &restix_engine::repository::Repository,
    file_type: FileType,
    arg: &str,
) -> anyhow::Result<Id> {
    if let Ok(id) = Id::from_hex(arg) {
        return Ok(id);
    }
    Ok(repo.find_file(file_type, arg).map_err(fatal)?)
}

pub fn run(ctx: &Context, args: &PositionalArgs) -> anyhow::Result<()> {
    let Some(kind) = args.args.first().map(String::as_str) else {
        return Err(fatal("type or ID not specified").into());
    };
    if !matches!(
        kind,
        "config" | "index" | "snapshot" | "key" | "masterkey" | "lock" | "pack" | "blob" | "tree"
    ) {
        return Err(fatal(format!("invalid type \"{kind}\", must be one of {TYPES}")).into());
    }
    let id_arg = args.args.get(1).map(String::as_str);
    if id_arg.is_none() && !matches!(kind, "config" | "masterkey") {
        return Err(fatal("ID not specified").into());
    }
    let id_arg = id_arg.unwrap_or_default();
    let opened = open_repository(ctx, LockMode::Shared)?;
    let repo = &opened.repo;
    match kind {
        "config" => ctx.printer.important(&to_go_json_indent(repo.config())),
        "masterkey" => {
            let json = String::from_utf8_lossy(&repo.key().to_json()).into_owned();
            ctx.printer.important(&indent_json(&json));
        }
        "key" => {
            let id = find(repo, FileType::Key, id_arg)?;
            let data = repo.backend().read(FileType::Key, &id.to_hex())?;
            let key = KeyFile::parse(&data).map_err(|e| fatal(format!("LoadKey: {e}")))?;
            ctx.printer.important(&to_go_json_indent(&key));
        }
        "lock" => {
            let id = find(repo, FileType::Lock, id_arg)?;
            let data = repo.load_file(FileType::Lock, &id)?;
            let lock = Lock::parse(&data).map_err(|e| fatal(format!("invalid lock: {e}")))?;
            ctx.printer.important(&to_go_json_indent(&lock));
        }
        "index" => {
            let id = find(repo, FileType::Index, id_arg)?;
            let data = repo.load_file(FileType::Index, &id)?;
            write_raw(&data)?;
            write_raw(b"\n")?;
        }
        "snapshot" => {
            let all = opened.list_snapshots()?;
            let (_, snapshot) = find_in(
                &all,
                id_arg,
                &crate::snapshot_select::snapshot_filter(&Default::default()),
            )
            .map_err(|e| fatal(format!("could not find snapshot: {e}")))?;
            ctx.printer.important(&to_go_json_indent(&snapshot));
        }
        "pack" => {
            let id = find(repo, FileType::Pack, id_arg)?;
            let data = repo.backend().read(FileType::Pack, &id.to_hex())?;
            write_raw(&data)?;
        }
        "blob" => {
            let id = Id::from_hex(id_arg).map_err(|e| fatal(format!("unable to parse ID: {e}")))?;
            opened.load_index()?;
            for blob_type in [BlobType::Data, BlobType::Tree] {
                if repo.has_blob(blob_type, &id) {
                    let data = repo.load_blob(blob_type, &id)?;
                    return write_raw(&data);
                }
            }
            return Err(fatal("blob not found").into());
        }
        "tree" => {
            let (snapshot_arg, subfolder) = split_snapshot_arg(id_arg);
            let all = opened.list_snapshots()?;
            let (_, snapshot) = find_in(
                &all,
                snapshot_arg,
                &crate::snapshot_select::snapshot_filter(&Default::default()),
            )
            .map_err(|e| fatal(format!("could not find snapshot: {e}")))?;
            opened.load_index()?;
            let root = snapshot.tree.ok_or_else(|| fatal("snapshot has no tree"))?;
            let tree = match subfolder {
                Some(sub) => resolve_subfolder(repo, &root, sub.as_bytes()).map_err(fatal)?,
                None => root,
            };
            let data = repo.load_blob(BlobType::Tree, &tree)?;
            write_raw(&data)?;
        }
        _ => return Err(fatal(format!("invalid type \"{kind}\", must be one of {TYPES}")).into()),
    }
    Ok(())
}
