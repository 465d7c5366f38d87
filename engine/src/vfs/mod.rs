//! Random access to the files of a snapshot: what `mount`, `serve-nbd` and
//! any other reader that seeks (rather than streams) needs.
//!
//! - [`BlobSource`] is shared by every open file of one repository: a
//!   bounded cache of decrypted data blobs ([`BlobSource::new`] takes its
//!   size in bytes) and a small pool of loader threads, so several blob
//!   loads are in flight at once on any [`Backend`](crate::backend::Backend)
//!   (the trait is synchronous: the threads are the concurrency). Two
//!   readers that want the same blob wait for one load.
//! - [`FileReader`] maps a byte offset of one file to the blob holding it:
//!   in O(1) when every blob but the last has the same size (image-mode
//!   files, whose blobs are guest blocks: see [`crate::image`]), by binary
//!   search over cumulative sizes otherwise (content-defined chunks). It
//!   detects sequential reads and then loads a growing window ahead
//!   (readahead); a read that spans several blobs loads them in parallel.
//!   Blobs known to be all zero (the shared zero block of image mode, the
//!   512 KiB zero chunk of content-defined files) are never loaded, and
//!   [`FileReader::extents`] reports them, so an NBD client can skip them.
//!
//! Sizes come from the index, as in restic's `internal/fuse/file.go`: a
//! file whose node size disagrees with its blobs shows the blobs' total.
//!
//! ```no_run
//! # fn demo(repo: std::sync::Arc<restix_engine::repository::Repository>, node: &restix_repo_format::Node) -> Result<(), restix_engine::vfs::VfsError> {
//! use restix_engine::vfs::{BlobSource, DEFAULT_CACHE_BYTES};
//! let source = BlobSource::new(repo, DEFAULT_CACHE_BYTES, 8);
//! let file = source.open_node(node)?;
//! let mut buf = vec![0; 4096];
//! let n = file.read_at(1 << 30, &mut buf)?;
//! # let _ = n; Ok(()) }
//! ```

mod cache;
mod reader;

#[cfg(test)]
mod tests;

pub use cache::{BlobSource, CacheStats, DEFAULT_CACHE_BYTES};
pub use reader::{Extent, FileReader};

use restix_repo_format::Id;

use crate::repository::RepoError;

/// Errors of random-access reads.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// A blob of the file's content list is not in the index.
    #[error("data blob {0} is not in the repository index")]
    MissingBlob(Id),
    /// The node is not a regular file with a content list.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// Loading or verifying a blob failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A loaded blob is not as long as the index says.
    #[error("data blob {blob} has {got} bytes, the index says {want}")]
    BlobLength {
        /// The blob.
        blob: Id,
        /// Length from the index.
        want: u64,
        /// Length loaded.
        got: u64,
    },
}
