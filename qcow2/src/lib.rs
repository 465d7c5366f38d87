//! Disk images for the restix backup engine: read the guest view of qcow2 and
//! raw images as extents plus positioned reads, and write fresh qcow2 images
//! on restore.
//!
//! - [`DiskImage`] is what the engine backs up: a virtual size, a map of
//!   [`Extent`]s ([`ExtentKind::Data`], [`ExtentKind::Zero`],
//!   [`ExtentKind::Unallocated`]) and `read_at`. Only `Data` extents need to be
//!   read or hashed; the others read as zeros. Every method takes `&self` and
//!   uses positioned reads, so one image can be shared by many threads.
//! - [`Qcow2Image`] reads qcow2 v2/v3 with compressed clusters (deflate and
//!   zstd), extended L2 entries (subclusters), zero clusters, backing chains
//!   (stored names or an explicit layer list, for OpenNebula increments), and
//!   persistent dirty bitmaps. It refuses encrypted images, external data
//!   files, unknown incompatible features, images marked corrupt and damaged
//!   tables with typed [`Error`]s.
//! - [`RawImage`] reads raw files (holes via `SEEK_DATA`/`SEEK_HOLE`) and block
//!   devices.
//! - [`Qcow2Writer`] writes a fresh qcow2 v3 image in one sequential pass.
//!
//! # Memory
//!
//! Bounded regardless of what a header claims: per qcow2 layer the L1 table
//! (8 bytes per 512 MiB of guest at 64 KiB clusters, i.e. 16 KiB per TiB;
//! capped at 32 MiB like QEMU), an L2 table cache of at most 8 MiB (at least 4
//! tables) and 4 decompressed clusters. [`Qcow2Writer`] holds one cluster, one
//! L2 table, the L1 table and a 4 MiB write buffer.
//!
//! The format notes this follows are in the project's `spec/qcow2.md`; comments
//! cite its sections as `spec: qcow2 §N`.
//!
//! # Example
//!
//! ```no_run
//! use restix_qcow2::{DiskImage, ExtentKind, Qcow2Image, Qcow2Writer};
//!
//! # fn main() -> Result<(), restix_qcow2::Error> {
//! // Follows the backing file names stored in the image.
//! let image = Qcow2Image::open("vm-disk.qcow2")?;
//! let mut restored = Qcow2Writer::create(
//!     "restored.qcow2",
//!     image.virtual_size(),
//!     Qcow2Writer::DEFAULT_CLUSTER_SIZE,
//! )?;
//! for extent in image.extents(0, image.virtual_size())? {
//!     if extent.kind != ExtentKind::Data {
//!         continue; // reads as zeros: nothing to copy
//!     }
//!     let mut buf = vec![0u8; 1 << 20];
//!     let mut pos = extent.offset;
//!     while pos < extent.offset + extent.length {
//!         let n = buf.len().min((extent.offset + extent.length - pos) as usize);
//!         image.read_at(pos, &mut buf[..n])?;
//!         restored.write_at(pos, &buf[..n])?;
//!         pos += n as u64;
//!     }
//! }
//! restored.finish()?;
//!
//! // An OpenNebula increment chain, base first, ignoring stored backing names:
//! let chain = Qcow2Image::open_chain(&["disk.0.0".into(), "disk.0.1".into()])?;
//! let changed = chain.allocated_in_layer()?; // what increment 1 changed
//! # let _ = changed;
//! # Ok(())
//! # }
//! ```

mod bitmap;
mod chain;
mod compression;
mod error;
mod extent;
mod format;
mod header;
mod identity;
mod io;
mod layer;
mod raw;
mod writer;

use std::path::Path;

pub use bitmap::BitmapInfo;
pub use chain::Qcow2Image;
pub use error::{Error, Result};
pub use extent::{DiskImage, Extent, ExtentKind};
pub use format::ImageFormat;
pub use header::{CompressionType, Qcow2Header};
pub use identity::LayerIdentity;
pub use raw::RawImage;
pub use writer::Qcow2Writer;

/// Opens `path` as qcow2 (following its stored backing chain) if it starts with
/// the qcow2 magic, otherwise as a raw file or block device.
///
/// Probing is for images the user names on the command line; a raw guest disk
/// could in theory start with the qcow2 magic, so callers that know the format
/// should open [`Qcow2Image`] or [`RawImage`] directly.
pub fn open_disk_image(path: impl AsRef<Path>) -> Result<Box<dyn DiskImage>> {
    let path = path.as_ref();
    match chain::probe_format(path)? {
        ImageFormat::Qcow2 => Ok(Box::new(Qcow2Image::open(path)?)),
        ImageFormat::Raw => Ok(Box::new(RawImage::open(path)?)),
    }
}
