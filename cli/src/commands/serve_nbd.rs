//! `serve-nbd SNAPSHOT[:PATH]`: one file of a snapshot (a VM disk backed
//! up in image mode, or any file) as a read-only NBD export, for instant
//! recovery: a qcow2 overlay on top boots the VM at once while
//! `qemu-img convert` copies the disk home (docs/mount.md).
//!
//! Serves until SIGINT/SIGTERM; the export never changes, so any number of
//! clients may connect, also at once.

use std::sync::Arc;

use restix_engine::image::find_file_node;
use restix_engine::selection::{find_in, split_snapshot_arg};
use restix_mount::nbd::{Export, Listen, NbdServer};

use crate::args::ServeNbdArgs;
use crate::blob_source::blob_source;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::fatal;
use crate::snapshot_select::snapshot_filter;

pub fn run(ctx: &Context, args: &ServeNbdArgs) -> anyhow::Result<()> {
    let [snapshot_arg] = args.args.as_slice() else {
        return Err(fatal("serve-nbd needs exactly one argument: SNAPSHOT[:PATH]").into());
    };
    let (id_arg, path) = split_snapshot_arg(snapshot_arg);
    let opened = open_repository(ctx, LockMode::Shared)?;
    let all = opened.list_snapshots()?;
    let filter = snapshot_filter(&args.filter);
    let (id, _) = find_in(&all, id_arg, &filter)
        .map_err(|e| fatal(format!("failed to find snapshot: {e}")))?;
    opened.load_index_cached(ctx)?;
    let (file_path, node) = find_file_node(&opened.repo, &id, path)
        .map_err(|e| fatal(format!("cannot serve {snapshot_arg}: {e}")))?;
    let source = blob_source(&opened, args.blob_cache.as_deref())?;
    let reader = source
        .open_node(&node)
        .map_err(|e| fatal(format!("cannot serve {file_path}: {e}")))?;
    let name = args
        .export_name
        .clone()
        .unwrap_or_else(|| node.name_lossy());
    let export = Export {
        name,
        description: format!("snapshot {}:{file_path}", id.short()),
        source: Arc::new(reader),
    };
    let size = export.source.size();
    let listen = Listen::parse(&args.listen);
    let server = NbdServer::bind(&listen, export)
        .map_err(|e| fatal(format!("cannot listen on {}: {e}", args.listen)))?;
    if let Listen::Unix(path) = &listen {
        // A signal ends the process without unwinding: remove the socket then.
        crate::signals::register_temp_file(path.clone());
    }
    ctx.printer.important(&format!(
        "serving {file_path} of snapshot {} ({size} bytes, read-only) at {}",
        id.short(),
        server.url()
    ));
    ctx.printer.important("quit with Ctrl-c");
    server
        .serve()
        .map_err(|e| fatal(format!("serving {}: {e}", args.listen)))?;
    Ok(())
}
