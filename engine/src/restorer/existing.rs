//! What is already at a restore destination, and whether it is kept,
//! updated or replaced (restic 0.18's `--overwrite`, internal/restorer
//! `shouldOverwrite` and `verifyFile`).
//!
//! - `always` (default) and `if-changed` always restore, but a regular file
//!   already there is read first: blobs whose bytes are already correct are
//!   kept, and a file that is correct throughout only gets its metadata
//!   (counted as skipped, verbose action `unchanged`). `if-changed` trusts an
//!   equal size and modification time without reading.
//! - `if-newer` restores only where the snapshot's modification time is
//!   after the existing item's; `never` only where nothing exists. Items
//!   passed over this way are counted as skipped and not touched at all.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use restix_repo_format::{GoTime, Id, Node};
use sha2::{Digest, Sha256};

/// restic 0.18's `--overwrite` behaviours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Always restore; content already correct is verified and kept.
    #[default]
    Always,
    /// Like `Always`, but equal size and modification time count as unchanged.
    IfChanged,
    /// Only where the snapshot's item is newer than the existing one.
    IfNewer,
    /// Only where nothing exists yet.
    Never,
}

impl Overwrite {
    /// Parse restic's flag value (`always|if-changed|if-newer|never`).
    pub fn parse(value: &str) -> Option<Overwrite> {
        match value {
            "always" => Some(Overwrite::Always),
            "if-changed" => Some(Overwrite::IfChanged),
            "if-newer" => Some(Overwrite::IfNewer),
            "never" => Some(Overwrite::Never),
            _ => None,
        }
    }
}

/// restic's `shouldOverwrite`: false when the existing item must be left
/// alone. Errors other than "not found" are returned (they fail the item).
pub(crate) fn should_overwrite(mode: Overwrite, node: &Node, dest: &Path) -> io::Result<bool> {
    if matches!(mode, Overwrite::Always | Overwrite::IfChanged) {
        return Ok(true);
    }
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    Ok(match mode {
        Overwrite::IfNewer => {
            mtime_nanos(&node.mtime)
                > meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec())
        }
        _ => false,
    })
}

fn mtime_nanos(t: &GoTime) -> i128 {
    t.unix_nanos()
}

/// A regular file found at the destination, compared with the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ExistingFile {
    /// Per content blob: the existing bytes at its offset are that blob.
    /// Empty when the file was trusted by size and mtime.
    pub blob_matches: Vec<bool>,
    /// The existing file has the snapshot's size.
    pub size_matches: bool,
}

impl ExistingFile {
    /// restic's `NeedsRestore`: some byte differs from the snapshot.
    pub fn needs_restore(&self) -> bool {
        !self.size_matches || self.blob_matches.iter().any(|m| !m)
    }

    /// Whether blob `index` is already correct in the existing file.
    pub fn has_matching_blob(&self, index: usize) -> bool {
        self.blob_matches.get(index).copied().unwrap_or(false)
    }
}

/// restic's `verifyFile` (not fail-fast): `None` when `dest` is not a
/// readable regular file; `lengths` are the plaintext lengths of the
/// node's content blobs (`None` where a blob is not in the index: the file
/// then counts as unknown and is restored from scratch).
pub(crate) fn inspect(
    dest: &Path,
    node: &Node,
    lengths: &[Option<u64>],
    trust_mtime: bool,
) -> Option<ExistingFile> {
    let file = super::open_nofollow_read(dest).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut size_matches = meta.len() == node.size;
    let same_mtime = meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec())
        == mtime_nanos(&node.mtime);
    if trust_mtime && size_matches && same_mtime {
        return Some(ExistingFile {
            blob_matches: Vec::new(),
            size_matches,
        });
    }
    let content = node.content.as_deref().unwrap_or(&[]);
    let mut blob_matches = vec![false; content.len()];
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for (index, (id, length)) in content.iter().zip(lengths).enumerate() {
        let length = (*length)?;
        let len = usize::try_from(length).ok()?;
        buf.resize(len, 0);
        match read_exact_at(&file, &mut buf, offset) {
            Ok(true) => {}
            Ok(false) => {
                size_matches = false;
                break;
            }
            Err(_) => return None,
        }
        if let Some(slot) = blob_matches.get_mut(index) {
            *slot = Sha256::digest(&buf).as_slice() == id.as_bytes();
        }
        offset += length;
    }
    Some(ExistingFile {
        blob_matches,
        size_matches,
    })
}

/// `pread` all of `buf`; `Ok(false)` when the file ends first.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Copy `len` bytes at `offset` from `from` to the same offset of `to`,
/// checking that they still hash to `id` (the existing file may have
/// changed since it was inspected).
pub(crate) fn copy_verified_range(
    from: &File,
    to: &File,
    offset: u64,
    len: u64,
    id: &Id,
    skip_zeros: bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    if !read_exact_at(from, &mut buf, offset)? {
        return Err(io::Error::other(
            "the existing file shrank during the restore",
        ));
    }
    if Sha256::digest(&buf).as_slice() != id.as_bytes() {
        return Err(io::Error::other(
            "the existing file changed during the restore",
        ));
    }
    if skip_zeros && buf.iter().all(|&b| b == 0) {
        return Ok(());
    }
    to.write_all_at(&buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_values() {
        assert_eq!(Overwrite::parse("always"), Some(Overwrite::Always));
        assert_eq!(Overwrite::parse("if-changed"), Some(Overwrite::IfChanged));
        assert_eq!(Overwrite::parse("if-newer"), Some(Overwrite::IfNewer));
        assert_eq!(Overwrite::parse("never"), Some(Overwrite::Never));
        assert_eq!(Overwrite::parse("sometimes"), None);
    }

    #[test]
    fn state_needs_restore() {
        let same = ExistingFile {
            blob_matches: vec![true, true],
            size_matches: true,
        };
        assert!(!same.needs_restore());
        assert!(same.has_matching_blob(1));
        assert!(!same.has_matching_blob(2));
        let longer = ExistingFile {
            blob_matches: vec![true],
            size_matches: false,
        };
        assert!(longer.needs_restore());
        let differs = ExistingFile {
            blob_matches: vec![true, false],
            size_matches: true,
        };
        assert!(differs.needs_restore());
    }
}
