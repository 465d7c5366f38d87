//! Storage backends: the small interface every repository location speaks,
//! and the layer every backend goes through (restic's `internal/backend`).
//!
//! A backend stores opaque, write-once files addressed by a [`FileType`] and a
//! name (the hex ID, or `"config"`). It knows nothing about encryption; the
//! repository layer above does.
//!
//! - [`Backend`]: the trait; [`BackendError`] with its [`ErrorKind`] (not
//!   found, transient, permanent, ...), which the retry wrapper goes by.
//! - [`local`]: the local folder backend. SFTP (`restix-sftp`), S3
//!   (`restix-s3`) and the others live in their own crates on top of this one.
//! - Wrappers, each a [`Backend`] around another: [`limited`] (bandwidth,
//!   `--limit-upload`/`--limit-download`), [`sema`] (at most
//!   [`Backend::connections`] operations at once), [`retry`] (one backoff
//!   policy for every backend). [`wrap()`] composes them, in one place, for
//!   every location.
//! - [`registry`]: URL scheme to backend factory with its `-o` options.
//! - [`options`] (Go's syntax for `-o` values: numbers, durations),
//!   [`go_path`] (Go's `path.Clean`) and [`shell_split`] (restic's
//!   `SplitShellStrings`), shared by the backends (and the CLI's
//!   `--password-command`).
//! - With the `http` feature: `http`, the pooled HTTPS agent of the global
//!   transport flags and restic's classification of HTTP failures, shared
//!   by the HTTP backends (`rest:`, `azure:`).
//! - With the `testing` feature: `fault` (fault injection) and `testing`
//!   (the conformance suite every backend must pass).
//!
//! The trait is synchronous: the engine drives it from worker threads. A
//! backend built on an async protocol (SFTP, S3) keeps its own runtime inside.
//! docs/backends.md describes the layer and how a new backend plugs in.

pub mod go_path;
#[cfg(feature = "http")]
pub mod http;
pub mod limited;
pub mod local;
pub mod options;
pub mod prefetch;
pub mod registry;
pub mod retry;
pub mod sema;
pub mod shell_split;
pub mod trace;
mod wrap;

#[cfg(feature = "testing")]
pub mod fault;
#[cfg(feature = "testing")]
pub mod testing;

pub use wrap::{wrap, WrapOptions};

use std::fmt;

/// The kinds of files in a restic repository (spec: repository layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// `config`: the single encrypted config file; its name is always `"config"`.
    Config,
    /// `keys/<id>`
    Key,
    /// `snapshots/<id>`
    Snapshot,
    /// `index/<id>`
    Index,
    /// `locks/<id>`
    Lock,
    /// `data/<id[0..2]>/<id>`
    Pack,
}

impl FileType {
    /// The folder of this file type in restic's default layout (`""` for config).
    pub fn dir_name(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Lock => "locks",
            FileType::Pack => "data",
        }
    }

    /// Path of a file relative to the repository root in the default layout:
    /// `config`, `keys/<name>`, `data/<name[0..2]>/<name>`, ...
    pub fn relative_path(self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_string(),
            FileType::Pack => {
                let prefix = name.get(0..2).unwrap_or(name);
                format!("data/{prefix}/{name}")
            }
            other => format!("{}/{name}", other.dir_name()),
        }
    }

    /// All file types, config first.
    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
        FileType::Pack,
    ];
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Snapshot => "snapshot",
            FileType::Index => "index",
            FileType::Lock => "lock",
            FileType::Pack => "data",
        };
        f.write_str(s)
    }
}

/// A file as listed by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// File name: 64 lowercase hex characters, or `"config"`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// How an error should be treated: what it means for the caller, and
/// whether another attempt may succeed ([`retry`] goes by this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file (or the repository) does not exist. Permanent.
    NotFound,
    /// The file exists where a new one was required. Permanent.
    AlreadyExists,
    /// The file is shorter than the requested range. Permanent.
    ShortRead,
    /// The storage is full. Permanent (restix does not wait for space).
    NoSpace,
    /// Refused for good: permissions, authentication, a bad request.
    Permanent,
    /// The transport or the server failed (connection lost, timeout, 5xx,
    /// I/O error): another attempt may succeed.
    Transient,
}

impl ErrorKind {
    /// True for [`ErrorKind::Transient`]: worth another attempt.
    pub fn is_transient(self) -> bool {
        self == ErrorKind::Transient
    }
}

/// Errors of any backend. They carry the location (path or URL) of the file.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file (or the repository itself) does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// The file exists already where the caller required a new one.
    #[error("{path}: file already exists")]
    AlreadyExists { path: String },
    /// An I/O error from the local file system or the transport; its
    /// [`std::io::ErrorKind`] decides whether it is transient
    /// ([`BackendError::kind`]).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The storage is full (ENOSPC, SFTP quota, ...).
    #[error("{path}: no space left on device")]
    NoSpace { path: String },
    /// A read returned fewer bytes than requested (truncated file).
    #[error("{path}: short read: wanted {wanted} bytes at offset {offset}, got {got}")]
    ShortRead {
        path: String,
        offset: u64,
        wanted: u64,
        got: u64,
    },
    /// The transport or the server failed in a way another attempt may fix
    /// (connection lost, timeout, HTTP 5xx/408/429, server down).
    #[error("{op} {path}: {reason}")]
    Transient {
        op: &'static str,
        path: String,
        reason: String,
    },
    /// Anything else a remote backend reports (protocol errors, auth, ...);
    /// permanent.
    #[error("{0}")]
    Other(String),
}

impl BackendError {
    /// True when the error means the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// What the error means, and whether retrying may help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::NotFound { .. } => ErrorKind::NotFound,
            BackendError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            BackendError::ShortRead { .. } => ErrorKind::ShortRead,
            BackendError::NoSpace { .. } => ErrorKind::NoSpace,
            BackendError::Transient { .. } => ErrorKind::Transient,
            BackendError::Io { source, .. } if io_error_is_transient(source) => {
                ErrorKind::Transient
            }
            BackendError::Io { .. } | BackendError::Other(_) => ErrorKind::Permanent,
        }
    }

    /// True when another attempt may succeed ([`ErrorKind::Transient`]).
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// Classify an `std::io::Error` for `path` the way every backend should.
    pub fn from_io(op: &'static str, path: impl Into<String>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => BackendError::NotFound { path },
            std::io::ErrorKind::AlreadyExists => BackendError::AlreadyExists { path },
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                BackendError::NoSpace { path }
            }
            _ => BackendError::Io { op, path, source },
        }
    }
}

/// Whether an I/O error may go away on its own: lost, refused or timed-out
/// connections, interrupted or busy calls, errors made by remote backends
/// and tests (`std::io::Error::other`), and the errno values of a storage
/// that hiccups (EIO, EAGAIN, ESTALE, ETIMEDOUT, ENFILE/EMFILE, ENOLCK),
/// which restic retries too. Everything else describes the request or the
/// file (permissions, a file where a folder should be, a symlink loop, a
/// name too long, read-only or full storage) and is permanent, so hostile
/// or broken repositories fail at once instead of after 15 minutes.
fn io_error_is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    let kind_is_transient = matches!(
        error.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::Interrupted
            | K::UnexpectedEof
            | K::WouldBlock
            | K::AddrNotAvailable
            | K::NetworkDown
            | K::NetworkUnreachable
            | K::HostUnreachable
            | K::ResourceBusy
            | K::StaleNetworkFileHandle
            | K::Other
    );
    kind_is_transient
        || matches!(
            error.raw_os_error(),
            Some(
                libc::EIO
                    | libc::EAGAIN
                    | libc::ESTALE
                    | libc::ETIMEDOUT
                    | libc::ENFILE
                    | libc::EMFILE
                    | libc::ENOLCK
            )
        )
}

/// Result type of backend operations.
pub type BackendResult<T> = Result<T, BackendError>;

/// The interface every repository location implements (local, SFTP, S3, ...).
///
/// Contract (spec: repository layout, read/write ordering invariants), checked
/// for every backend by the conformance suite (`testing::conformance`):
/// - `write` is atomic: the file appears under its final name complete (and
///   durably stored, e.g. fsynced) or not at all, even when the writer is
///   killed mid-way; callers never rewrite files (except `config` on init).
/// - `list` ignores names that are not 64-hex IDs (except for `Config`, which
///   lists `config` when present) and temporary files; a repository or
///   folder that does not exist lists as empty.
/// - `read_range` returns exactly `length` bytes or an error
///   ([`BackendError::ShortRead`] when the file is shorter).
/// - A missing file is [`BackendError::NotFound`] for `read`, `read_range`
///   and `stat`; `remove` of a missing file is `NotFound`, or `Ok` on object
///   stores whose DELETE of a missing key succeeds (S3).
/// - Errors say whether another attempt may help ([`BackendError::kind`]);
///   backends do not retry on their own: [`retry`] does, for all of them.
/// - Implementations are `Send + Sync`; the engine calls them from many threads.
pub trait Backend: Send + Sync {
    /// Human-readable location, as the user wrote it (`/srv/repo`, `sftp:host:/repo`).
    fn location(&self) -> String;

    /// Create the repository's folder layout (`init`): `data/00`..`data/ff`,
    /// `index`, `keys`, `locks`, `snapshots`, missing parents too. Fails with
    /// [`BackendError::AlreadyExists`] if a `config` file exists already.
    fn create(&self) -> BackendResult<()>;

    /// List all files of one type.
    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>>;

    /// Read a whole file.
    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>>;

    /// Read `length` bytes at `offset`.
    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>>;

    /// Store a file atomically (temporary name, flush, rename).
    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()>;

    /// Store several files so that each becomes visible only after every
    /// one before it (a backup's index files, then its snapshot: spec
    /// §16, the snapshot must never name blobs that no index lists yet).
    /// Each file is stored as by [`Backend::write`]. On an error, the files
    /// before the failed one may be visible, the failed one and those after
    /// it are not. Storing the same content under the same name again is
    /// harmless, so after an error a caller may repeat the call, or write
    /// the files one by one in order ([`retry`] does).
    ///
    /// The default writes one file after another. A backend with long
    /// round trips overrides it to send the uploads together and only
    /// publish them in order (SFTP: every temporary file written, then the
    /// renames one by one).
    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        for (file_type, name, data) in files {
            self.write(*file_type, name, data)?;
        }
        Ok(())
    }

    /// Remove a file. Removing a missing file is [`BackendError::NotFound`].
    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()>;

    /// Size of one file; [`BackendError::NotFound`] when absent.
    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo>;

    /// Number of operations worth running in parallel against this backend
    /// (local: a few; SFTP: `sftp.connections`).
    fn connections(&self) -> usize {
        2
    }

    /// Whether a file, once `write` has returned, shows up in every later
    /// `list` by any client (list-after-write consistency): true for a local
    /// folder and for an SFTP server's file system, not assumed for object
    /// stores. Locking then re-checks for conflicting locks right after
    /// writing its own, instead of waiting restic's 200 ms first (spec §14):
    /// with such a backend, of two lockers that each write and then list, the
    /// one that lists last always sees the other's lock.
    fn list_after_write_consistent(&self) -> bool {
        false
    }

    /// Whether the backend may report an error as permanent (not found, say)
    /// that goes away on its own; the retry wrapper then tries such errors a
    /// few times too (restic's `HasFlakyErrors`, set for `rclone:`).
    fn has_flaky_errors(&self) -> bool {
        false
    }
}

/// True when `name` is a 64-character lowercase hex ID (restic ignores other
/// names when listing).
pub fn is_id_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A shared, boxed or borrowed backend is the backend it points to (the
/// wrappers hold `Box<dyn Backend>`, the engine shares `Arc`s, tests lend
/// `&B`): one delegation for all three.
macro_rules! delegate_backend {
    ($pointer:ty) => {
        impl<B: Backend + ?Sized> Backend for $pointer {
            fn location(&self) -> String {
                (**self).location()
            }
            fn create(&self) -> BackendResult<()> {
                (**self).create()
            }
            fn list(&self, t: FileType) -> BackendResult<Vec<FileInfo>> {
                (**self).list(t)
            }
            fn read(&self, t: FileType, name: &str) -> BackendResult<Vec<u8>> {
                (**self).read(t, name)
            }
            fn read_range(
                &self,
                t: FileType,
                name: &str,
                offset: u64,
                length: u64,
            ) -> BackendResult<Vec<u8>> {
                (**self).read_range(t, name, offset, length)
            }
            fn write(&self, t: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
                (**self).write(t, name, data)
            }
            fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
                (**self).write_in_order(files)
            }
            fn remove(&self, t: FileType, name: &str) -> BackendResult<()> {
                (**self).remove(t, name)
            }
            fn stat(&self, t: FileType, name: &str) -> BackendResult<FileInfo> {
                (**self).stat(t, name)
            }
            fn connections(&self) -> usize {
                (**self).connections()
            }
            fn list_after_write_consistent(&self) -> bool {
                (**self).list_after_write_consistent()
            }
            fn has_flaky_errors(&self) -> bool {
                (**self).has_flaky_errors()
            }
        }
    };
}

use std::sync::Arc;
delegate_backend!(Arc<B>);
delegate_backend!(Box<B>);
delegate_backend!(&B);

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind_or_errno: Result<std::io::ErrorKind, i32>) -> BackendError {
        let source = match kind_or_errno {
            Ok(kind) => std::io::Error::new(kind, "test"),
            Err(errno) => std::io::Error::from_raw_os_error(errno),
        };
        BackendError::from_io("read", "data/00/00", source)
    }

    #[test]
    fn error_kinds_of_io_errors() {
        use std::io::ErrorKind as K;
        for transient in [
            Ok(K::ConnectionReset),
            Ok(K::TimedOut),
            Ok(K::Other),
            Err(libc::EIO),
            Err(libc::ESTALE),
        ] {
            assert_eq!(io(transient).kind(), ErrorKind::Transient, "{transient:?}");
        }
        for permanent in [
            Ok(K::PermissionDenied),
            Err(libc::ELOOP),
            Err(libc::ENAMETOOLONG),
            Err(libc::ENOTDIR),
            Err(libc::EROFS),
        ] {
            assert_eq!(io(permanent).kind(), ErrorKind::Permanent, "{permanent:?}");
        }
        assert_eq!(io(Err(libc::ENOENT)).kind(), ErrorKind::NotFound);
        assert_eq!(io(Err(libc::ENOSPC)).kind(), ErrorKind::NoSpace);
        assert_eq!(io(Err(libc::EEXIST)).kind(), ErrorKind::AlreadyExists);
        let transient = BackendError::Transient {
            op: "write",
            path: "p".into(),
            reason: "reset".into(),
        };
        assert!(transient.is_transient());
        assert!(!BackendError::Other("refused".into()).is_transient());
    }
}
