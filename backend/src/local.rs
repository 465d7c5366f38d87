//! The local file-system backend (restic's default layout).
//!
//! Layout (spec: restic-format §2): `config`, `keys/<id>`, `locks/<id>`,
//! `snapshots/<id>`, `index/<id>`, `data/<id[0..2]>/<id>`. Files are written
//! once: to `<name>-tmp-<random>` in the target folder (mode 0600), fsynced,
//! renamed into place, the folder fsynced, then made read-only (0400). When
//! `config` is group-readable, new files and folders get the group bits too
//! (0440 / 0770), like restic.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::options::parse_go_uint;
use crate::registry::{BackendFactory, OpenContext, OpenError, SchemeOptions};
use crate::{is_id_name, Backend, BackendError, BackendResult, FileInfo, FileType};

/// Files are written in pieces of this size, not in one `write` call: for a
/// multi-megabyte write Linux allocates the page cache in large folios
/// (ext4), which costs far more kernel time than small writes on a host whose
/// free memory is fragmented. Measured on the bench VM (2 cores), a first
/// image-mode backup of 2.1 GB: whole packs per call 6.65-7.0 s (kernel time
/// 3.4 s), 1 MiB pieces 6.3 s, 256 KiB 5.95-6.0 s, 64 KiB 5.75-5.85 s (0.8 s).
const WRITE_PIECE: usize = 64 << 10;

/// A repository in a local folder.
///
/// ```no_run
/// use restix_backend::{local::LocalBackend, Backend, FileType};
/// let be = LocalBackend::new("/srv/repo");
/// be.create().unwrap();
/// let keys = be.list(FileType::Key).unwrap();
/// assert!(keys.is_empty());
/// ```
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    connections: usize,
    /// The config file is group-readable: new files/folders get group bits
    /// (spec: restic-format §2).
    group_access: AtomicBool,
}

/// Directories created by [`Backend::create`] besides `data/00`..`data/ff`.
const TOP_DIRS: [&str; 5] = ["data", "snapshots", "index", "locks", "keys"];

impl LocalBackend {
    /// A backend for the repository at `path` (nothing is touched yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let root = path.into();
        let group_access = config_group_readable(&root);
        LocalBackend {
            root,
            connections: 2,
            group_access: AtomicBool::new(group_access),
        }
    }

    /// Set the number of parallel operations (`-o local.connections=N`, default 2).
    pub fn with_connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// The repository folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a file in the default layout.
    pub fn path_of(&self, file_type: FileType, name: &str) -> PathBuf {
        self.root.join(file_type.relative_path(name))
    }

    fn display(path: &Path) -> String {
        path.display().to_string()
    }

    fn file_mode(&self) -> u32 {
        if self.group_access.load(Ordering::Relaxed) {
            0o440
        } else {
            0o400
        }
    }

    fn dir_mode(&self) -> u32 {
        if self.group_access.load(Ordering::Relaxed) {
            0o770
        } else {
            0o700
        }
    }

    fn create_dir(&self, dir: &Path) -> BackendResult<()> {
        // Existing folders keep their permissions (the user may have made
        // the repository folder beforehand).
        if dir.is_dir() {
            return Ok(());
        }
        match fs::create_dir_all(dir) {
            Ok(()) => {}
            Err(e) => return Err(BackendError::from_io("mkdir", Self::display(dir), e)),
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(self.dir_mode()))
            .map_err(|e| BackendError::from_io("chmod", Self::display(dir), e))
    }

    fn list_dir(&self, dir: &Path, pack_root: bool, out: &mut Vec<FileInfo>) -> BackendResult<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // A missing folder lists as empty (restic ignores ENOENT here).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(BackendError::from_io("readdir", Self::display(dir), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| BackendError::from_io("readdir", Self::display(dir), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if pack_root && name.len() == 2 && is_hex2(name) {
                let ft = entry
                    .file_type()
                    .map_err(|e| BackendError::from_io("stat", Self::display(&entry.path()), e))?;
                if ft.is_dir() {
                    self.list_dir(&entry.path(), false, out)?;
                }
                continue;
            }
            if !is_id_name(name) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between readdir and stat.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(BackendError::from_io(
                        "stat",
                        Self::display(&entry.path()),
                        e,
                    ))
                }
            };
            if !meta.is_file() {
                continue;
            }
            out.push(FileInfo {
                name: name.to_string(),
                size: meta.len(),
            });
        }
        Ok(())
    }
}

/// Like [`BackendError::from_io`], also mapping a full quota (EDQUOT) to
/// [`BackendError::NoSpace`].
fn write_error(op: &'static str, path: String, e: std::io::Error) -> BackendError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => BackendError::NoSpace { path },
        _ => BackendError::from_io(op, path, e),
    }
}

fn is_hex2(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn config_group_readable(root: &Path) -> bool {
    fs::metadata(root.join("config"))
        .map(|m| m.permissions().mode() & 0o040 != 0)
        .unwrap_or(false)
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Fall back to something unique within this host; the suffix only
        // has to avoid collisions between concurrent writers.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = ((nanos as u64) ^ u64::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a new upload file readable and writable by the owner only
/// (0600, never an existing file): it holds repository data until it is
/// renamed into place and made read-only.
fn create_temp_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        Self::display(&self.root)
    }

    fn create(&self) -> BackendResult<()> {
        let config = self.root.join("config");
        if config.symlink_metadata().is_ok() {
            return Err(BackendError::AlreadyExists {
                path: Self::display(&config),
            });
        }
        self.create_dir(&self.root)?;
        for dir in TOP_DIRS {
            self.create_dir(&self.root.join(dir))?;
        }
        for i in 0..=255u8 {
            self.create_dir(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        let mut out = Vec::new();
        if file_type == FileType::Config {
            let path = self.root.join("config");
            match fs::metadata(&path) {
                Ok(m) => out.push(FileInfo {
                    name: "config".to_string(),
                    size: m.len(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackendError::from_io("stat", Self::display(&path), e)),
            }
            return Ok(out);
        }
        let dir = self.root.join(file_type.dir_name());
        self.list_dir(&dir, file_type == FileType::Pack, &mut out)?;
        Ok(out)
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        let path = self.path_of(file_type, name);
        fs::read(&path).map_err(|e| BackendError::from_io("open", Self::display(&path), e))
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let path = self.path_of(file_type, name);
        let p = || Self::display(&path);
        let mut file = File::open(&path).map_err(|e| BackendError::from_io("open", p(), e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| BackendError::from_io("seek", p(), e))?;
        let wanted = usize::try_from(length).map_err(|_| {
            BackendError::Other(format!("{}: read of {length} bytes is too large", p()))
        })?;
        // A hostile index can ask for up to 4 GiB past the end of a small
        // pack: never reserve more than the file holds after `offset`.
        let size = file
            .metadata()
            .map_err(|e| BackendError::from_io("stat", p(), e))?
            .len();
        let available = size.saturating_sub(offset);
        if available < length {
            return Err(BackendError::ShortRead {
                path: p(),
                offset,
                wanted: length,
                got: available,
            });
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(wanted)
            .map_err(|_| BackendError::Other(format!("{}: cannot allocate {length} bytes", p())))?;
        (&mut file)
            .take(length)
            .read_to_end(&mut buf)
            .map_err(|e| BackendError::from_io("read", p(), e))?;
        if buf.len() != wanted {
            return Err(BackendError::ShortRead {
                path: p(),
                offset,
                wanted: length,
                got: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let path = self.path_of(file_type, name);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let tmp = dir.join(format!("{name}-tmp-{}", random_suffix()));
        let tmp_s = || Self::display(&tmp);
        let open = |dir_retry: bool| -> std::io::Result<File> {
            if dir_retry {
                fs::create_dir_all(&dir)?;
            }
            create_temp_file(&tmp)
        };
        // The pack's subfolder may be missing in repositories made by other
        // tools; create it on demand like restic does.
        let mut file = match open(false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                open(true).map_err(|e| BackendError::from_io("create", tmp_s(), e))?
            }
            Err(e) => return Err(BackendError::from_io("create", tmp_s(), e)),
        };
        let result = (|| {
            for piece in data.chunks(WRITE_PIECE) {
                file.write_all(piece)
                    .map_err(|e| write_error("write", tmp_s(), e))?;
            }
            file.sync_all()
                .map_err(|e| write_error("fsync", tmp_s(), e))?;
            drop(file);
            fs::rename(&tmp, &path)
                .map_err(|e| BackendError::from_io("rename", Self::display(&path), e))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // Durability of the rename; some file systems refuse fsync on a
        // folder, which restic ignores as well.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        if file_type == FileType::Config {
            self.group_access
                .store(config_group_readable(&self.root), Ordering::Relaxed);
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(self.file_mode()))
            .map_err(|e| BackendError::from_io("chmod", Self::display(&path), e))
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let path = self.path_of(file_type, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                // Make it writable first (some file systems require it).
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
                fs::remove_file(&path)
                    .map_err(|e| BackendError::from_io("remove", Self::display(&path), e))
            }
            Err(e) => Err(BackendError::from_io("remove", Self::display(&path), e)),
        }
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let path = self.path_of(file_type, name);
        let meta = fs::metadata(&path)
            .map_err(|e| BackendError::from_io("stat", Self::display(&path), e))?;
        Ok(FileInfo {
            name: name.to_string(),
            size: meta.len(),
        })
    }

    fn connections(&self) -> usize {
        self.connections
    }
    /// One file system: a renamed file is in every later directory listing.
    fn list_after_write_consistent(&self) -> bool {
        true
    }
}

/// The `local:` scheme (and plain paths) for the [`crate::registry`].
/// Options: `local.connections` (default 2); `local.layout` is accepted and
/// ignored (restix has only restic's default layout; 0.14 knew the option).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFactory;

impl BackendFactory for LocalFactory {
    fn scheme(&self) -> &'static str {
        "local"
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["connections", "layout"]
    }

    fn open(
        &self,
        location: &crate::registry::Location,
        options: &SchemeOptions,
        _ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let mut backend = LocalBackend::new(location.rest.clone());
        if let Some(value) = options.get("connections") {
            let n = parse_go_uint(value).ok_or_else(|| {
                OpenError::OptionSyntax(crate::options::go_uint_syntax_error(value))
            })?;
            backend = backend.with_connections(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(Box::new(backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("restix-local-{}", random_suffix()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Folders 0700, files 0400 (restic's modes), written through a
    /// temporary file; the contract itself is the conformance suite's
    /// (tests/tests/backend_conformance.rs).
    #[test]
    fn modes_of_folders_and_files() {
        let dir = tempdir();
        let root = dir.join("a/b/repo");
        let be = LocalBackend::new(&root);
        be.create().unwrap();
        for d in ["data/00", "data/ff", "keys", "locks", "snapshots", "index"] {
            let m = fs::metadata(root.join(d)).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o777, 0o700);
        }
        let pack = format!("ab{}", &id('1')[2..]);
        be.write(FileType::Pack, &pack, b"hello world").unwrap();
        let p = root.join("data/ab").join(&pack);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o400
        );
        // A read-only file can still be removed.
        be.remove(FileType::Pack, &pack).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    /// A group-readable config (restic's `init` by a group) makes new files
    /// and folders group-accessible too.
    #[test]
    fn group_readable_config_spreads_group_bits() {
        let dir = tempdir();
        let root = dir.join("repo");
        let be = LocalBackend::new(&root);
        be.create().unwrap();
        be.write(FileType::Config, "config", b"c").unwrap();
        fs::set_permissions(root.join("config"), fs::Permissions::from_mode(0o440)).unwrap();
        let be = LocalBackend::new(&root);
        be.write(FileType::Key, &id('4'), b"k").unwrap();
        let mode = fs::metadata(root.join("keys").join(id('4')))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o440);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporary_files_are_private_and_never_reused() {
        let dir = tempdir();
        let tmp = dir.join("upload-tmp-1");
        let file = create_temp_file(&tmp).unwrap();
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "temporary file has mode {mode:o}");
        drop(file);
        // An existing file (or a planted symlink) is never opened.
        assert!(create_temp_file(&tmp).is_err());
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("link-tmp")).unwrap();
        assert!(create_temp_file(&dir.join("link-tmp")).is_err());
        assert!(!dir.join("elsewhere").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_past_the_end_fail_without_allocating_the_claimed_length() {
        let dir = tempdir();
        let be = LocalBackend::new(dir.join("repo"));
        be.create().unwrap();
        let pack = id('3');
        be.write(FileType::Pack, &pack, b"0123456789").unwrap();
        for (offset, length, got) in [(0, u64::from(u32::MAX), 10), (1 << 40, 1, 0), (8, 3, 2)] {
            match be.read_range(FileType::Pack, &pack, offset, length) {
                Err(BackendError::ShortRead { got: g, .. }) => assert_eq!(g, got),
                other => panic!("{offset}+{length}: {other:?}"),
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
