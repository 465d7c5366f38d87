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
//! - Long links (issue #20, `benches/run.sh --distance`): the server's SSH
//!   channel window (OpenSSH: 2 MiB) bounds one connection to a window per
//!   round trip. Each SSH connection therefore carries eight SFTP sessions,
//!   each on its own channel (the connection's own and seven *lanes*, opened
//!   together with it); an upload of 4 MiB or more is split over them, every
//!   session writing its slice, fsyncing and closing its handle before the
//!   rename, so a 17 MB pack takes ~0.5 s at 100 ms instead of 1.3 s. A
//!   server that refuses extra sessions leaves fewer lanes; a lane whose
//!   request fails is retired. The engine uploads one pack per connection
//!   at once. The pool dials every connection at once when the backend opens (the first
//!   in the foreground, for its errors) and never lets an operation wait on
//!   a dial while a connection is up. A dial costs 8 round trips: TCP and
//!   key exchange 2, authentication 3 (russh probes a key before signing),
//!   channel 1, subsystem 1 (OpenSSH opens a session channel's window only
//!   once the subsystem runs), INIT 1; `limits@openssh.com` is answered in
//!   the background. Folder listings send 4 `readdir`s at once, whole-file
//!   reads send `fstat` with the first read, read and folder handles are
//!   closed without waiting, and an upload costs three round trips: open,
//!   the writes with fsync and close, rename. Measured through delay lines
//!   beside restic (docs/benchmarks.md, "distance"); the default stays 5.
//! - Writes are atomic: `<final>-tmp-<32 hex>` (mode 0600), fsync when the
//!   server offers `fsync@openssh.com`, then `posix-rename@openssh.com`.
//! - Each call makes one attempt. A lost connection is dropped from the pool
//!   and reported as a transient error (`BackendError::Transient`, naming
//!   the file); the retry wrapper of `restix-backend` (`restix_backend::wrap`)
//!   tries again and the pool dials a fresh connection. Host key,
//!   authentication and server answers (no such file, permission) are
//!   permanent.
//! - Bandwidth limits and the operation semaphore are `restix-backend`'s
//!   wrappers too, composed by `restix_backend::wrap` for every backend.
//! - [`open`] reads `$HOME` and `$SSH_AUTH_SOCK`; [`open_with_env`] takes
//!   them explicitly ([`SshEnv`]); [`SftpFactory`] plugs the scheme into
//!   `restix_backend::registry`.
//!
//! The API is blocking: the backend owns a tokio runtime and must not be
//! called from inside another tokio runtime.
//!
//! ```no_run
//! use restix_backend::{Backend, FileType};
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
mod error;
pub mod known_hosts;
mod location;
mod pool;
pub mod ssh_config;

pub use backend::SftpBackend;
pub use connection::SshEnv;
pub use error::SftpError;
pub use location::{SftpLocation, SftpOptions};

use restix_backend::registry::{BackendFactory, Location, OpenContext, OpenError, SchemeOptions};
use restix_backend::Backend;

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

/// The `sftp:` scheme for `restix_backend::registry`: options
/// `sftp.connections`, `sftp.command`, `sftp.args` (spec: cli §5.4).
#[derive(Debug, Clone, Copy, Default)]
pub struct SftpFactory;

impl BackendFactory for SftpFactory {
    fn scheme(&self) -> &'static str {
        "sftp"
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["connections", "command", "args"]
    }

    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        SftpLocation::parse(&location.text)
            .map(|_| ())
            .map_err(|e| OpenError::Location(e.to_string()))
    }

    fn open(
        &self,
        location: &Location,
        options: &SchemeOptions,
        _ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let parsed =
            SftpLocation::parse(&location.text).map_err(|e| OpenError::Location(e.to_string()))?;
        let mut sftp_options = SftpOptions::default();
        for (key, value) in options {
            sftp_options.set(key, value).map_err(|e| match e {
                SftpError::InvalidOption(m) => OpenError::rejected_option(m),
                other => OpenError::Option(other.to_string()),
            })?;
        }
        sftp_options
            .validate()
            .map_err(|e| OpenError::Option(e.to_string()))?;
        let backend = open(&parsed, &sftp_options).map_err(OpenError::open)?;
        Ok(Box::new(backend))
    }
}
