//! What identifies one layer of an image without reading its guest data: the
//! file's length and modification time and, for qcow2, a digest of what
//! places guest data in it (the layout fields of the header and the L1
//! table). A backup records these so that a later incremental can tell that
//! an overlay's backing file is still the very disk an earlier backup read.
//!
//! The digest leaves out what changes without moving guest data: the stored
//! backing name (`qemu-img rebase -u`), the dirty bit and the autoclear bits
//! (an open by QEMU), refcounts and bitmaps. Any write that allocates moves
//! an L1 or L2 entry and any write at all changes the modification time, so
//! a layer written since compares unequal; a copy that keeps the time
//! (`cp -p`, `rsync -a`, `mv`) compares equal, as its guest data is the same.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::ImageFormat;
use crate::header::{Qcow2Header, INCOMPAT_DIRTY};

/// Identity of one layer file (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerIdentity {
    /// The path the layer was opened from.
    pub path: PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// The file's length in bytes (a block device's size).
    pub file_len: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Device and inode number: the same file, as opposed to a copy.
    pub device: u64,
    /// See `device`.
    pub inode: u64,
    /// For qcow2: BLAKE3 of the layout fields of the header and the L1 table.
    pub layout: Option<[u8; 32]>,
}

impl LayerIdentity {
    /// A 128-bit digest of format, length, modification time and layout:
    /// equal for a layer that was not written since (or an exact copy that
    /// kept its time), unequal otherwise.
    pub fn digest(&self) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"restix layer identity 1\0");
        hasher.update(match self.format {
            ImageFormat::Qcow2 => b"qcow2",
            ImageFormat::Raw => b"raw\0\0",
        });
        hasher.update(&self.file_len.to_le_bytes());
        hasher.update(&self.mtime_ns.to_le_bytes());
        if let Some(layout) = &self.layout {
            hasher.update(layout);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        out
    }
}

/// The identity of an open layer file.
pub(crate) fn of_file(
    path: &Path,
    file: &File,
    format: ImageFormat,
    file_len: u64,
    layout: Option<[u8; 32]>,
) -> Result<LayerIdentity> {
    let meta: Metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    Ok(LayerIdentity {
        path: path.to_path_buf(),
        format,
        file_len,
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        device: meta.dev(),
        inode: meta.ino(),
        layout,
    })
}

/// BLAKE3 over the header fields that place guest data and the L1 table.
pub(crate) fn qcow2_layout(header: &Qcow2Header, l1: &[u64]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"restix qcow2 layout 1\0");
    hasher.update(&header.version.to_le_bytes());
    hasher.update(&header.cluster_bits.to_le_bytes());
    hasher.update(&header.size.to_le_bytes());
    hasher.update(&header.l1_size.to_le_bytes());
    hasher.update(&header.l1_table_offset.to_le_bytes());
    hasher.update(&(header.incompatible_features & !INCOMPAT_DIRTY).to_le_bytes());
    hasher.update(&[header.compression_type as u8]);
    for entry in l1 {
        hasher.update(&entry.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}
