//! Typed errors for reading and writing disk images.

use std::path::PathBuf;

/// Everything that can go wrong while opening, reading or writing an image.
///
/// Every variant that concerns a file names it, so a caller can print the
/// error as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call on the image file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file the call was made on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the qcow2 magic `QFI\xfb`.
    #[error("{path}: not a qcow2 image (bad magic)")]
    NotQcow2 {
        /// The file.
        path: PathBuf,
    },

    /// Only qcow2 versions 2 and 3 are understood.
    #[error("{path}: unsupported qcow2 version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version field from the header.
        version: u32,
    },

    /// The image is encrypted (spec: qcow2 §1.8); reading it would return ciphertext.
    #[error("{path}: encrypted qcow2 ({method}) is not supported")]
    Encrypted {
        /// The file.
        path: PathBuf,
        /// `AES` or `LUKS` (or the raw method number).
        method: String,
    },

    /// The guest data lives in an external data file (spec: qcow2 §1.9).
    #[error("{path}: qcow2 with an external data file is not supported")]
    ExternalDataFile {
        /// The file.
        path: PathBuf,
    },

    /// The header sets incompatible feature bits this reader does not know.
    #[error("{path}: unknown incompatible qcow2 features {bits:#x} ({names})")]
    UnknownIncompatibleFeatures {
        /// The file.
        path: PathBuf,
        /// The unknown bits.
        bits: u64,
        /// Names from the image's feature-name table, or `unnamed`.
        names: String,
    },

    /// QEMU marked the image corrupt (incompatible bit 1); it must be repaired first
    /// (`qemu-img check -r all`).
    #[error("{path}: qcow2 image is marked corrupt; repair it with 'qemu-img check -r all'")]
    MarkedCorrupt {
        /// The file.
        path: PathBuf,
    },

    /// A header field or metadata table is inconsistent, or points outside the file.
    #[error("{path}: corrupt qcow2 image: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A compressed cluster did not decompress to exactly one cluster.
    #[error("{path}: compressed cluster at host offset {host_offset:#x}: {reason}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// Where the compressed bytes start.
        host_offset: u64,
        /// The decoder's complaint.
        reason: String,
    },

    /// The stored backing file cannot be opened by name (an NBD URI, `json:` options,
    /// an unknown format). Use [`crate::Qcow2Image::open_chain`] to name the layers.
    #[error("{path}: unsupported backing file {backing:?}: {reason}")]
    UnsupportedBacking {
        /// The overlay.
        path: PathBuf,
        /// The stored backing file name.
        backing: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The layer list passed to an explicit chain is unusable.
    #[error("invalid layer chain: {reason}")]
    InvalidChain {
        /// What is wrong.
        reason: String,
    },

    /// A read or extent query reaches past the virtual size.
    #[error("range {offset}+{length} is outside the virtual size {size}")]
    OutOfRange {
        /// Start of the request.
        offset: u64,
        /// Its length.
        length: u64,
        /// The virtual size.
        size: u64,
    },

    /// No persistent bitmap has this name.
    #[error("{path}: no dirty bitmap named {name:?}")]
    BitmapNotFound {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },

    /// The bitmap cannot be trusted: it is marked in-use (the image is open in QEMU, or
    /// QEMU crashed), or the bitmaps extension is inconsistent (autoclear bit 0 clear).
    /// A full backup is needed.
    #[error("{path}: dirty bitmap {name:?} is inconsistent ({reason}); a full backup is required")]
    BitmapInconsistent {
        /// The file.
        path: PathBuf,
        /// The bitmap.
        name: String,
        /// `in use` or `bitmaps extension not consistent`.
        reason: String,
    },

    /// Writer: offsets must not go backwards.
    #[error("qcow2 writer: write at {offset} is before the current position {position}")]
    WriteNotIncreasing {
        /// The offset asked for.
        offset: u64,
        /// The first offset still writable.
        position: u64,
    },

    /// Writer: invalid creation parameters (cluster size not a power of two in
    /// 512..=2 MiB, virtual size too large).
    #[error("qcow2 writer: {reason}")]
    InvalidWriterParameters {
        /// What is wrong.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
