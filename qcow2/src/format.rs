//! The formats a layer of a chain can have; below `chain`, `layer`, `raw`
//! and `identity`, which all name them.

/// Format of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A qcow2 file.
    Qcow2,
    /// A raw file or block device (only as the base of a chain).
    Raw,
}
