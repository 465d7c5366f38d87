//! Raw images: plain (possibly sparse) files and block devices.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::extent::{check_range, DiskImage, Extent, ExtentKind, ExtentList};
use crate::format::ImageFormat;
use crate::io::{block_device_size, read_zero_padded};

/// A raw disk image: a regular file or a block device.
///
/// Extents come from `SEEK_DATA`/`SEEK_HOLE`: holes are
/// [`ExtentKind::Unallocated`]. Where the file system (or a block device) cannot
/// tell, everything is [`ExtentKind::Data`].
#[derive(Debug)]
pub struct RawImage {
    path: PathBuf,
    file: File,
    size: u64,
    block_device: bool,
}

impl RawImage {
    /// Opens a raw file or block device read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            block_device_size(&file).map_err(|e| Error::io(path, e))?
        } else {
            meta.len()
        };
        Ok(RawImage {
            path: path.to_path_buf(),
            file,
            size,
            block_device,
        })
    }

    /// The path this image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's identity: length and modification time (see
    /// [`LayerIdentity`](crate::LayerIdentity)).
    pub fn identity(&self) -> Result<crate::identity::LayerIdentity> {
        crate::identity::of_file(&self.path, &self.file, ImageFormat::Raw, self.size, None)
    }

    /// Next data or hole boundary at or after `offset`, via `lseek`.
    /// `None` means the file system cannot tell.
    fn seek(&self, offset: u64, whence: libc::c_int) -> Option<SeekResult> {
        let off = libc::off_t::try_from(offset).ok()?;
        // SAFETY: lseek on a file descriptor owned by `self.file`, which stays open
        // for the call. It only moves the shared file position, which this type
        // never uses (all reads are positioned), so concurrent callers are fine.
        let result = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if result >= 0 {
            return u64::try_from(result).ok().map(SeekResult::At);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // SEEK_DATA past the last data: the rest is a hole.
            Some(libc::ENXIO) => Some(SeekResult::NoMore),
            _ => None,
        }
    }
}

enum SeekResult {
    At(u64),
    NoMore,
}

impl DiskImage for RawImage {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn extents(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = check_range(offset, length, self.size)?;
        let mut out = ExtentList::default();
        if self.block_device {
            out.push(offset, length, ExtentKind::Data);
            return Ok(out.into_vec());
        }
        let mut pos = offset;
        while pos < end {
            let data_start = match self.seek(pos, libc::SEEK_DATA) {
                Some(SeekResult::At(at)) => at.min(end),
                Some(SeekResult::NoMore) => end,
                None => {
                    out.push(pos, end - pos, ExtentKind::Data);
                    break;
                }
            };
            if data_start > pos {
                out.push(pos, data_start - pos, ExtentKind::Unallocated);
            }
            if data_start >= end {
                break;
            }
            let data_end = match self.seek(data_start, libc::SEEK_HOLE) {
                Some(SeekResult::At(at)) if at > data_start => at.min(end),
                _ => end,
            };
            out.push(data_start, data_end - data_start, ExtentKind::Data);
            pos = data_end;
        }
        Ok(out.into_vec())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        read_zero_padded(&self.file, &self.path, offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn sparse_file_extents_and_reads() {
        let dir = std::env::temp_dir().join(format!("restix-qcow2-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sparse.raw");
        let file = File::create(&path).unwrap();
        file.set_len(8 << 20).unwrap();
        file.write_all_at(&[0x5a; 4096], 4 << 20).unwrap();
        drop(file);

        let image = RawImage::open(&path).unwrap();
        assert_eq!(image.virtual_size(), 8 << 20);
        let extents = image.extents(0, 8 << 20).unwrap();
        let total: u64 = extents.iter().map(|e| e.length).sum();
        assert_eq!(total, 8 << 20);
        let data = extents.iter().find(|e| e.kind == ExtentKind::Data).unwrap();
        assert!(data.offset <= 4 << 20 && data.offset + data.length >= (4 << 20) + 4096);
        let mut buf = vec![0u8; 8192];
        image.read_at((4 << 20) - 4096, &mut buf).unwrap();
        assert!(buf[..4096].iter().all(|b| *b == 0));
        assert!(buf[4096..].iter().all(|b| *b == 0x5a));
        assert!(image.read_at(8 << 20, &mut buf).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
