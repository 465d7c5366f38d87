//! What every disk image answers (guest extents, positioned reads) and the
//! helpers its implementations share; below `chain`, `raw` and `writer`, which
//! implement or use them, so that `lib.rs` only re-exports and opens.

use crate::error::{Error, Result};

/// What a guest range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentKind {
    /// Allocated data (it may still happen to contain zeros, e.g. in
    /// `preallocation=metadata` images). Read it.
    Data,
    /// Explicitly zero: a zero-flag cluster or subcluster. Reads as zeros. In an
    /// increment ([`Qcow2Image::allocated_in_layer`](crate::Qcow2Image::allocated_in_layer)) this is a change.
    Zero,
    /// Allocated nowhere in the chain (a hole, or past the end of a shorter
    /// backing file). Reads as zeros.
    Unallocated,
}

/// A range of guest bytes, `[offset, offset + length)`, of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Guest offset in bytes.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub length: u64,
    /// What the range holds.
    pub kind: ExtentKind,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// A disk image the engine can back up.
///
/// Implementations are safe to use from many threads at once: there is no
/// shared seek position, and caches sit behind locks.
pub trait DiskImage: Send + Sync {
    /// The guest disk size in bytes.
    fn virtual_size(&self) -> u64;

    /// The extents covering `[offset, offset + length)` exactly, in order, with
    /// adjacent extents of the same kind merged. Errors if the range reaches past
    /// [`DiskImage::virtual_size`].
    fn extents(&self, offset: u64, length: u64) -> Result<Vec<Extent>>;

    /// Fills `buf` with the guest bytes at `offset`. Errors if the range reaches
    /// past [`DiskImage::virtual_size`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Checks `[offset, offset + length)` against `size`; returns the end.
pub(crate) fn check_range(offset: u64, length: u64, size: u64) -> Result<u64> {
    offset
        .checked_add(length)
        .filter(|end| *end <= size)
        .ok_or(Error::OutOfRange {
            offset,
            length,
            size,
        })
}

/// Builds an extent list, merging adjacent extents of the same kind.
#[derive(Default)]
pub(crate) struct ExtentList {
    extents: Vec<Extent>,
}

impl ExtentList {
    pub(crate) fn push(&mut self, offset: u64, length: u64, kind: ExtentKind) {
        if length == 0 {
            return;
        }
        if let Some(last) = self.extents.last_mut() {
            if last.kind == kind && last.end() == offset {
                last.length += length;
                return;
            }
        }
        self.extents.push(Extent {
            offset,
            length,
            kind,
        });
    }

    pub(crate) fn into_vec(self) -> Vec<Extent> {
        self.extents
    }
}
