//! Reading snapshots in place, without a restore:
//!
//! - [`fs::SnapshotFs`]: the repository as a read-only FUSE filesystem
//!   (`restix mount`), with restic's `ids/`, `snapshots/`, `hosts/`, `tags/`
//!   folders and `latest` links ([`layout`]) and snapshot trees below;
//! - [`nbd::NbdServer`]: one file of a snapshot, typically a VM disk backed
//!   up in image mode, as a read-only NBD export (`restix serve-nbd`), for
//!   booting a VM from the backup through a qcow2 overlay.
//!
//! Both read file data through [`restix_engine::vfs`]: offset → blob
//! without scanning, a shared blob cache, readahead, parallel loads.

pub mod fs;
pub mod gotime;
pub mod layout;
pub mod nbd;

use std::path::Path;

pub use fs::{MountConfig, SnapshotFs};

/// Errors of mounting and serving.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The repository failed (listing snapshots, loading the index).
    #[error(transparent)]
    Repo(#[from] restix_engine::repository::RepoError),
    /// The FUSE mount or a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// FUSE mount options (restic's `mount` flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseOptions {
    /// `--allow-other`.
    pub allow_other: bool,
    /// `--no-default-permissions` (only meaningful with `allow_other`).
    pub no_default_permissions: bool,
    /// Threads serving kernel requests (at least 1).
    pub threads: usize,
}

/// A mounted filesystem, not yet serving: [`fuser::Session::run`] serves
/// until it is unmounted; [`fuser::Session::unmount_callable`] gives a
/// handle that unmounts from another thread (a signal handler).
pub type MountSession = fuser::Session<SnapshotFs>;

/// Mount `fs` read-only at `mountpoint` (restic's options: `ro`, fsname
/// `restic`, `allow_other` and `default_permissions` as asked).
pub fn mount(
    fs: SnapshotFs,
    mountpoint: &Path,
    options: FuseOptions,
) -> Result<MountSession, MountError> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("restic".into()),
        fuser::MountOption::Subtype("restix".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if options.allow_other {
        config.acl = fuser::SessionACL::All;
        // Let the kernel check permissions unless told not to (restic).
        if !options.no_default_permissions {
            config
                .mount_options
                .push(fuser::MountOption::DefaultPermissions);
        }
    }
    config.n_threads = Some(options.threads.max(1));
    fuser::Session::new(fs, mountpoint, &config).map_err(|source| MountError::Io {
        what: format!("mounting {}", mountpoint.display()),
        source,
    })
}
