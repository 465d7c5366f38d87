//! Reads of image files shared by every layer kind (qcow2, raw, bitmaps) and
//! the on-disk offset mask of qcow2 tables; below `layer`, `raw` and `bitmap`,
//! which all use them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Offset bits 9-55 of L1, L2 and bitmap-table entries.
pub(crate) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// `pread` until `buf` is full; a short file is an error.
pub(crate) fn read_full_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.read_exact_at(buf, offset)
        .map_err(|e| Error::io(path, e))
}

/// `pread` until `buf` is full; bytes past the end of the file read as zeros.
pub(crate) fn read_zero_padded(
    file: &File,
    path: &Path,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => {
                rest.fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(())
}

/// Size of a block device: the BLKGETSIZE64 ioctl, else seeking to the end.
pub(crate) fn block_device_size(file: &File) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a
    // live, properly aligned u64; the fd is owned by `file` and open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if rc == 0 {
        return Ok(size);
    }
    use std::io::Seek;
    let mut handle = file;
    handle.seek(std::io::SeekFrom::End(0))
}

/// `_IOR(0x12, 114, size_t)` on Linux.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
