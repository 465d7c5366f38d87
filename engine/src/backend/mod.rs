//! Storage backends: the small interface every repository location speaks.
//!
//! A backend stores opaque, write-once files addressed by a [`FileType`] and a
//! name (the hex ID, or `"config"`). It knows nothing about encryption; the
//! repository layer above does. Wrappers such as bandwidth limiting or retries
//! implement [`Backend`] around another backend, so every location gets them
//! once (restic's `backend/limiter`, `backend/retry`).
//!
//! The trait is synchronous: the engine drives it from worker threads. A
//! backend built on an async protocol (SFTP, S3) keeps its own runtime inside.

pub mod fault;
pub mod limited;
pub mod local;
pub mod options;
pub mod retry;

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

/// Errors of any backend. They carry the location (path or URL) of the file.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file (or the repository itself) does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// The file exists already where the caller required a new one.
    #[error("{path}: file already exists")]
    AlreadyExists { path: String },
    /// An I/O error from the local file system or the transport.
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
    /// Anything else a remote backend reports (protocol errors, auth, ...).
    #[error("{0}")]
    Other(String),
}

impl BackendError {
    /// True when the error means the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// Classify an `std::io::Error` for `path` the way every backend should.
    pub fn from_io(op: &'static str, path: impl Into<String>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => BackendError::NotFound { path },
            std::io::ErrorKind::AlreadyExists => BackendError::AlreadyExists { path },
            std::io::ErrorKind::StorageFull => BackendError::NoSpace { path },
            _ => BackendError::Io { op, path, source },
        }
    }
}

/// Result type of backend operations.
pub type BackendResult<T> = Result<T, BackendError>;

/// The interface every repository location implements (local, SFTP, S3).
///
/// Contract (spec: repository layout, read/write ordering invariants):
/// - `write` is atomic: the file appears under its final name complete (and
///   durably stored, e.g. fsynced) or not at all; it never overwrites an
///   existing file of type other than `Config`... callers never rewrite files.
/// - `list` ignores names that are not 64-hex IDs (except for `Config`, which
///   lists `config` when present) and temporary files.
/// - `read_range` returns exactly `length` bytes or an error
///   ([`BackendError::ShortRead`] when the file is shorter).
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
}

/// True when `name` is a 64-character lowercase hex ID (restic ignores other
/// names when listing).
pub fn is_id_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
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
}

impl<B: Backend + ?Sized> Backend for Box<B> {
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
}
