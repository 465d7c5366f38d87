//! `dump` (spec: cli §10.5): a file's content, or a folder as a tar archive.

use std::io::{BufWriter, IsTerminal, Write};

use restix_engine::dump::{dump_file, dump_tar};
use restix_engine::walker::{resolve_path, ResolvedPath, WalkError};
use restix_repo_format::NodeType;

use crate::args::DumpArgs;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode, OpenedRepository};
use crate::errors::fatal;

/// Output buffer: large writes keep multi-GB image dumps fast.
const OUTPUT_BUFFER: usize = 4 << 20;

pub fn run(ctx: &Context, args: &DumpArgs) -> anyhow::Result<()> {
    if let Some(format) = &args.image.format {
        return crate::image_mode::run_dump(ctx, args, format);
    }
    let [snapshot_arg, path] = args.args.as_slice() else {
        return Err(fatal("no file and no snapshot ID specified").into());
    };
    match args.archive.as_str() {
        "tar" => {}
        "zip" => return run_zip(ctx, args, snapshot_arg, path),
        other => return Err(fatal(format!("unknown archive format \"{other}\"")).into()),
    }
    let (opened, resolved) = open_and_resolve(ctx, args, snapshot_arg, path)?;
    let repo = &opened.repo;
    let is_archive =
        !matches!(&resolved, ResolvedPath::Node(node) if node.node_type == NodeType::File);
    let mut writer: Box<dyn Write> = match &args.target {
        Some(target) => {
            let file = std::fs::File::create(target)
                .map_err(|e| fatal(format!("cannot create target file {target}: {e}")))?;
            crate::signals::register_temp_file(target.into());
            Box::new(BufWriter::with_capacity(OUTPUT_BUFFER, file))
        }
        None => {
            if is_archive && std::io::stdout().is_terminal() {
                return Err(fatal("stdout is the terminal, please redirect output").into());
            }
            Box::new(BufWriter::with_capacity(
                OUTPUT_BUFFER,
                std::io::stdout().lock(),
            ))
        }
    };
    let result = match resolved {
        ResolvedPath::Root(tree) => dump_tar(repo, &tree, b"", &mut writer),
        ResolvedPath::Node(node) => match node.node_type {
            NodeType::File => dump_file(repo, &node, &mut writer).map(|_| ()),
            NodeType::Dir => {
                let subtree = node.subtree.ok_or_else(|| {
                    fatal(format!("cannot dump file: directory {path} has no subtree"))
                })?;
                let base: Vec<u8> = clean_base(path);
                dump_tar(repo, &subtree, &base, &mut writer)
            }
            other => {
                return Err(fatal(format!(
                    "cannot dump file: {path} is a {other}, not a file or directory"
                ))
                .into())
            }
        },
    };
    result.map_err(|e| fatal(format!("cannot dump file: {e}")))?;
    writer.flush()?;
    if let Some(target) = &args.target {
        crate::signals::unregister_temp_file(std::path::Path::new(target));
    }
    Ok(())
}

/// `/a//b/` → `/a/b`, the archive's base inside the snapshot.
fn clean_base(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for component in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push(b'/');
        out.extend_from_slice(component.as_bytes());
    }
    out
}

/// Open the repository and find `path` in the snapshot `snapshot_arg`
/// names (restic's "cannot dump file" errors).
fn open_and_resolve(
    ctx: &Context,
    args: &DumpArgs,
    snapshot_arg: &str,
    path: &str,
) -> anyhow::Result<(OpenedRepository, ResolvedPath)> {
    let opened = open_repository(ctx, LockMode::Shared)?;
    let (_, _, root) =
        crate::snapshot_select::select_single(ctx, &opened, snapshot_arg, &args.filter)?;
    let resolved = resolve_path(&opened.repo, &root, path.as_bytes()).map_err(|e| match e {
        WalkError::NotFound { .. } => fatal(format!(
            "cannot dump file: path \"{path}\" not found in snapshot"
        )),
        other => fatal(format!("cannot dump file: {other}")),
    })?;
    Ok((opened, resolved))
}

/// `dump --archive zip` (#17): a file's content as with tar, a folder as a
/// zip archive ([`restix_engine::dump_zip`]).
fn run_zip(ctx: &Context, args: &DumpArgs, snapshot_arg: &str, path: &str) -> anyhow::Result<()> {
    let (opened, resolved) = open_and_resolve(ctx, args, snapshot_arg, path)?;
    let repo = &opened.repo;
    let (tree, base) = match resolved {
        ResolvedPath::Root(tree) => (tree, Vec::new()),
        ResolvedPath::Node(node) if node.node_type == NodeType::Dir => {
            let subtree = node.subtree.ok_or_else(|| {
                fatal(format!("cannot dump file: directory {path} has no subtree"))
            })?;
            (subtree, clean_base(path))
        }
        ResolvedPath::Node(node) => {
            // A single file is its content, whatever the archive format.
            let mut out: Box<dyn Write> = match &args.target {
                Some(target) => Box::new(
                    std::fs::File::create(target)
                        .map_err(|e| fatal(format!("cannot create target file {target}: {e}")))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            dump_file(repo, &node, &mut out)
                .map_err(|e| fatal(format!("cannot dump file: {e}")))?;
            out.flush()?;
            return Ok(());
        }
    };
    let result = match &args.target {
        Some(target) => {
            let file = std::fs::File::create(target)
                .map_err(|e| fatal(format!("cannot create target file {target}: {e}")))?;
            crate::signals::register_temp_file(target.into());
            let result = restix_engine::dump_zip::dump_zip(
                repo,
                &tree,
                &base,
                BufWriter::with_capacity(OUTPUT_BUFFER, file),
            );
            crate::signals::unregister_temp_file(std::path::Path::new(target));
            result
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(fatal("stdout is the terminal, please redirect output").into());
            }
            restix_engine::dump_zip::dump_zip(
                repo,
                &tree,
                &base,
                BufWriter::with_capacity(OUTPUT_BUFFER, std::io::stdout().lock()),
            )
        }
    };
    result.map_err(|e| fatal(format!("cannot dump file: {e}")))?;
    Ok(())
}
