//! SFTP backend for restix: restic repositories on any SSH server
//! (spec: cli §5.1, §5.2).
//!
//! - Locations are parsed exactly like restic ([`SftpLocation`]):
//!   `sftp:user@host:/abs`, `sftp:host:rel`, `sftp://user@host:2222//abs`.
//! - By default SSH runs in-process (russh): keys from `~/.ssh` (`id_ed25519`,
//!   `id_ecdsa`, `id_rsa`, `IdentityFile`), ssh-agent via `SSH_AUTH_SOCK`, the
//!   basics of `~/.ssh/config`, and strict host key checking against
//!   `known_hosts` (unknown or changed keys are refused, never learnt).
//! - `-o sftp.command=...` or `-o sftp.args=...` switch to subprocess mode:
//!   the command (or `ssh host ... -s sftp`) speaks SFTP on stdin/stdout.
//! - `sftp.connections` (default 5) SSH connections work in parallel; each
//!   upload keeps 64 write requests of 32 KiB in flight (within the server's
//!   `limits@openssh.com`), reads are pipelined the same way. Measured on
//!   loopback: one connection with one write in flight moves 3 MB/s, with 64
//!   in flight 281 MB/s, two connections 421 MB/s.
//! - Writes are atomic: `<final>-tmp-<32 hex>` (mode 0600), fsync when the
//!   server offers `fsync@openssh.com`, then `posix-rename@openssh.com`.
//! - A dropped connection is re-dialed and the operation retried with
//!   exponential backoff (6 attempts, 0.25 s .. 4 s); the final error names
//!   the file and the reason. Do not wrap this backend in
//!   `restix_engine::backend::retry::Retrying` as well.
//!
//! - Bandwidth limits: [`SftpBackend::with_rate_limits`] pays the
//!   process-wide token buckets of `restix_engine::backend::limited` per SFTP
//!   request, so the rate is smooth within a pack (spec: cli §6.1).
//! - [`open`] reads `$HOME` and `$SSH_AUTH_SOCK`; [`open_with_env`] takes
//!   them explicitly ([`SshEnv`]).
//!
//! The API is blocking: the backend owns a tokio runtime and must not be
//! called from inside another tokio runtime.
//!
//! ```no_run
//! use restix_engine::backend::{Backend, FileType};
//! use restix_sftp::{open, SftpLocation, SftpOptions};
//!
//! let location = SftpLocation::parse("sftp:backup@nas:/srv/restic")?;
//! let opts = SftpOptions::from_pairs([("sftp.connections", "8")])?;
//! let backend = open(&location, &opts)?;
//! for file in backend.list(FileType::Snapshot)? {
//!     println!("{} {}", file.name, file.size);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod connection;
pub mod known_hosts;
mod location;
mod pool;
pub mod ssh_config;

pub use backend::SftpBackend;
pub use connection::SshEnv;
pub use location::{SftpLocation, SftpOptions};

use restix_engine::backend::BackendError;

/// Errors of opening an SFTP repository (operations return
/// [`BackendError`]s).
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// The `sftp:` location does not parse (spec: cli §5.1).
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o sftp.*` option (spec: cli §5.4).
    #[error("{0}")]
    InvalidOption(String),
    /// The server's host key is not in known_hosts.
    #[error("host key verification failed for {host}: {message}")]
    UnknownHostKey { host: String, message: String },
    /// The server's host key differs from the recorded one (or is revoked).
    #[error("host key verification failed for {host}:\n{message}")]
    HostKeyChanged { host: String, message: String },
    /// No key was accepted.
    #[error("{target}: authentication failed (publickey): {tried}")]
    Auth { target: String, tried: String },
    /// TCP connect or socket error.
    #[error("{target}: cannot connect: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// SSH protocol failure.
    #[error("ssh: {0}")]
    Ssh(String),
    /// SFTP session failure.
    #[error("sftp: {0}")]
    Sftp(String),
    /// The `sftp.command` subprocess failed to start.
    #[error("{0}")]
    Subprocess(String),
    /// The internal tokio runtime could not start.
    #[error("cannot start the SFTP runtime: {0}")]
    Runtime(std::io::Error),
}

impl SftpError {
    /// Errors worth retrying on a fresh connection (network, server gone);
    /// not host key, authentication or configuration problems.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SftpError::Connect { .. } | SftpError::Ssh(_) | SftpError::Sftp(_)
        )
    }
}

impl From<SftpError> for BackendError {
    fn from(e: SftpError) -> Self {
        BackendError::Other(e.to_string())
    }
}

/// Open the repository at `location`: resolve ssh config and keys, dial the
/// first connection (so host key and authentication problems show up here),
/// and return the backend. More connections are dialed as parallel work
/// needs them, up to `opts.connections`.
pub fn open(location: &SftpLocation, opts: &SftpOptions) -> Result<SftpBackend, SftpError> {
    open_with_env(location, opts, &SshEnv::from_process())
}

/// [`open`] with an explicit home folder and agent socket instead of this
/// process's `$HOME` / `$SSH_AUTH_SOCK` (tests run many homes in one process).
pub fn open_with_env(
    location: &SftpLocation,
    opts: &SftpOptions,
    env: &SshEnv,
) -> Result<SftpBackend, SftpError> {
    let target = connection::Target::resolve(location, opts, env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("restix-sftp")
        .enable_all()
        .build()
        .map_err(SftpError::Runtime)?;
    let pool = pool::Pool::new(target, opts.connections);
    let backend = SftpBackend::new(
        runtime,
        pool,
        location.path.clone(),
        location.original.clone(),
        opts.connections.max(1),
    );
    backend.connect_first()?;
    Ok(backend)
}
