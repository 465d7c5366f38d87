//! `mount` (restic 0.18.1 `cmd_mount.go`): the repository as a read-only
//! FUSE filesystem until SIGINT/SIGTERM or `umount`.
//!
//! On a signal the mount is unmounted and the command exits 0, as restic's
//! does. When something still uses the mount (a shell inside it, an open
//! file, a loop device), unmounting fails with "busy": restix then keeps
//! serving and says how to unmount; a second signal detaches the mount
//! lazily and exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use restix_mount::{FuseOptions, MountConfig, SnapshotFs};

use crate::args::MountArgs;
use crate::blob_source::blob_source;
use crate::context::Context;
use crate::engine_glue::{open_repository, LockMode};
use crate::errors::{exit_code, fatal, CliError};
use crate::snapshot_select::snapshot_filter;

/// Threads answering kernel requests (reads of several files, or the
/// kernel's parallel readahead of one, run at once).
const FUSE_THREADS: usize = 4;

pub fn run(ctx: &Context, args: &MountArgs) -> anyhow::Result<()> {
    let template = args.time_template.as_str();
    if template.is_empty() {
        return Err(fatal("time template string cannot be empty").into());
    }
    if template.starts_with('/') || template.ends_with('/') {
        return Err(fatal("time template string cannot start or end with '/'").into());
    }
    let Some(mountpoint) = args.args.first() else {
        return Err(fatal("wrong number of parameters").into());
    };
    // Checked before the repository is opened (restic does the same).
    if let Err(e) = std::fs::metadata(mountpoint) {
        if e.kind() == std::io::ErrorKind::NotFound {
            ctx.printer
                .verbose(&format!("Mountpoint {mountpoint} doesn't exist"));
        }
        let text = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            _ => e.to_string(),
        };
        // Not "Fatal:": restic returns the plain os.Stat error.
        return Err(
            CliError::plain(exit_code::FAILURE, format!("stat {mountpoint}: {text}")).into(),
        );
    }
    let opened = open_repository(ctx, LockMode::Shared)?;
    opened.load_index_cached(ctx)?;
    let source = blob_source(&opened, args.blob_cache.as_deref())?;
    let config = MountConfig {
        owner_root: args.owner_root,
        filter: snapshot_filter(&args.filter),
        time_template: args.time_template.clone(),
        path_templates: args.path_template.clone(),
    };
    let fs = SnapshotFs::new(source, config).map_err(fatal)?;
    let options = FuseOptions {
        allow_other: args.allow_other,
        no_default_permissions: args.no_default_permissions,
        threads: FUSE_THREADS,
    };
    let session = restix_mount::mount(fs, Path::new(mountpoint), options).map_err(fatal)?;
    install_unmount_on_signal(PathBuf::from(mountpoint));
    ctx.printer
        .important(&format!("Now serving the repository at {mountpoint}"));
    ctx.printer
        .important("Use another terminal or tool to browse the contents of this folder.");
    ctx.printer
        .important("When finished, quit with Ctrl-c here or umount the mountpoint.");
    session
        .run()
        .map_err(|e| fatal(format!("serving {mountpoint}: {e}")))?;
    Ok(())
}

/// On SIGINT/SIGTERM: unmount (the serving loop then returns and the
/// command ends normally, releasing its lock). Busy: explain and go on
/// serving; on the next signal detach lazily and let the process exit.
///
/// `fusermount3` rather than fuser's unmount handle: that handle is spent
/// by a failed (busy) attempt, and fusermount3 also works without root.
fn install_unmount_on_signal(mountpoint: PathBuf) {
    let tries = AtomicU32::new(0);
    crate::signals::set_interrupt_hook(Box::new(move || {
        let shown = mountpoint.display();
        let lazy = tries.fetch_add(1, Ordering::Relaxed) > 0;
        let mut command = std::process::Command::new("fusermount3");
        command
            .arg(if lazy { "-uz" } else { "-u" })
            .arg("--")
            .arg(&mountpoint);
        let result = command.output();
        let failure = match &result {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => Some(format!("fusermount3: {e}")),
        };
        match (failure, lazy) {
            (None, _) => !lazy,
            (Some(text), true) => {
                eprintln!("unable to umount {shown}: {text}");
                false
            }
            (Some(text), false) => {
                eprintln!(
                    "unable to umount {shown}: {text}\n\
                     {shown} is still in use (a shell inside it, an open file, a loop device?).\n\
                     Close those (`fuser -vm {shown}` lists them; `losetup -j FILE` finds loop devices), \
                     then run `fusermount3 -u {shown}`, or press Ctrl-c again to detach it lazily."
                );
                true
            }
        }
    }));
}
