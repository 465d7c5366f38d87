//! The qcow2 header and its extensions (spec: qcow2 §1.1, §1.2).
//!
//! Parsing is strict about everything that decides where guest data is, and
//! never sizes an allocation from a header value without a cap.

use std::path::Path;

use crate::error::{Error, Result};

/// `"QFI\xfb"`.
pub(crate) const QCOW2_MAGIC: u32 = 0x5146_49fb;

/// Incompatible feature bits (spec: qcow2 §1.1).
pub(crate) const INCOMPAT_DIRTY: u64 = 1 << 0;
pub(crate) const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub(crate) const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub(crate) const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub(crate) const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/// Autoclear bit 0: the bitmaps extension is consistent (spec: qcow2 §1.11).
pub(crate) const AUTOCLEAR_BITMAPS: u64 = 1 << 0;

/// Header extension types (spec: qcow2 §1.2).
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
const EXT_FEATURE_NAMES: u32 = 0x6803_F857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_CRYPTO: u32 = 0x0537_BE77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// QEMU's limits, used as caps so that header values cannot make us allocate
/// or loop without bound.
pub(crate) const MIN_CLUSTER_BITS: u32 = 9;
pub(crate) const MAX_CLUSTER_BITS: u32 = 21;
/// QEMU's QCOW_MAX_L1_SIZE: 32 MiB of L1 entries.
pub(crate) const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU's QCOW_MAX_SNAPSHOTS.
const MAX_SNAPSHOTS: u32 = 65536;
/// QEMU's QCOW_MAX_REFTABLE_SIZE: 8 MiB.
const MAX_REFTABLE_BYTES: u64 = 8 << 20;

/// How compressed clusters are encoded (header byte 104).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate without a zlib header (type 0, the default).
    Deflate,
    /// zstd frames (type 1).
    Zstd,
}

/// The bitmaps header extension (spec: qcow2 §1.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitmapsExtension {
    pub nb_bitmaps: u32,
    pub directory_size: u64,
    pub directory_offset: u64,
}

/// The parsed, validated header of one qcow2 file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// `log2(cluster_size)`, 9..=21.
    pub cluster_bits: u32,
    /// Guest virtual size in bytes.
    pub size: u64,
    /// Number of L1 entries.
    pub l1_size: u32,
    /// Host offset of the L1 table.
    pub l1_table_offset: u64,
    /// Host offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Size of the refcount table in clusters.
    pub refcount_table_clusters: u32,
    /// Number of internal snapshots (the current state ignores them).
    pub nb_snapshots: u32,
    /// Host offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits.
    pub incompatible_features: u64,
    /// Compatible feature bits (bit 0: lazy refcounts).
    pub compatible_features: u64,
    /// Autoclear feature bits (bit 0: bitmaps consistent).
    pub autoclear_features: u64,
    /// `log2(refcount_bits)`.
    pub refcount_order: u32,
    /// Header length in bytes (72 for v2).
    pub header_length: u32,
    /// Codec of compressed clusters.
    pub compression_type: CompressionType,
    /// The stored backing file name, if any (not resolved).
    pub backing_file: Option<String>,
    /// The stored backing format (`qcow2`, `raw`, ...), if any.
    pub backing_format: Option<String>,
    /// Feature-name table entries `(type, bit, name)`.
    pub feature_names: Vec<(u8, u8, String)>,
    pub(crate) bitmaps: Option<BitmapsExtension>,
}

impl Qcow2Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Whether the image uses extended L2 entries (subclusters).
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTL2 != 0
    }

    /// Whether the dirty bit is set (refcounts may be stale; data is readable).
    pub fn is_dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }

    /// Number of L2 entries in one L2 table.
    pub(crate) fn l2_entries(&self) -> u64 {
        let entry_bytes = if self.extended_l2() { 16 } else { 8 };
        self.cluster_size() / entry_bytes
    }

    /// Parses and validates cluster 0. `cluster0` holds the file's first bytes
    /// (at least 72, at most one cluster); `file_len` is the file's length.
    pub(crate) fn parse(path: &Path, cluster0: &[u8], file_len: u64) -> Result<Self> {
        let corrupt = |reason: String| Error::corrupt(path, reason);
        let field = HeaderBytes(cluster0);
        if cluster0.len() < 72 || field.u32(0) != QCOW2_MAGIC {
            return Err(Error::NotQcow2 {
                path: path.to_path_buf(),
            });
        }
        let version = field.u32(4);
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let backing_file_offset = field.u64(8);
        let backing_file_size = field.u32(16);
        let cluster_bits = field.u32(20);
        let size = field.u64(24);
        let crypt_method = field.u32(32);
        let l1_size = field.u32(36);
        let l1_table_offset = field.u64(40);
        let refcount_table_offset = field.u64(48);
        let refcount_table_clusters = field.u32(56);
        let nb_snapshots = field.u32(60);
        let snapshots_offset = field.u64(64);

        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "cluster_bits {cluster_bits} outside 9..=21"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;

        // v2 has no feature fields: refcount_order 4, header 72 bytes (spec: qcow2 §1.1).
        let (incompatible, compatible, autoclear, refcount_order, header_length) = if version == 2 {
            (0, 0, 0, 4, 72)
        } else {
            if cluster0.len() < 104 {
                return Err(corrupt("v3 header shorter than 104 bytes".into()));
            }
            (
                field.u64(72),
                field.u64(80),
                field.u64(88),
                field.u32(96),
                field.u32(100),
            )
        };
        if version == 3
            && (header_length < 104
                || header_length % 8 != 0
                || u64::from(header_length) > cluster_size)
        {
            return Err(corrupt(format!("invalid header_length {header_length}")));
        }
        if refcount_order > 6 {
            return Err(corrupt(format!("refcount_order {refcount_order} > 6")));
        }

        // Extensions run from the end of the header to the backing file name, or to
        // the end of cluster 0 (spec: qcow2 §1.2).
        let ext_limit = if backing_file_offset != 0 {
            backing_file_offset
        } else {
            cluster_size
        };
        let mut ext = Extensions::default();
        parse_extensions(
            path,
            cluster0,
            u64::from(header_length),
            ext_limit,
            &mut ext,
        )?;

        // Refuse what would make us return wrong bytes (spec: qcow2 §1.8, §1.9).
        if crypt_method != 0 || ext.has_crypto {
            let method = match crypt_method {
                1 => "AES".to_string(),
                2 => "LUKS".to_string(),
                0 => "LUKS header extension".to_string(),
                other => format!("method {other}"),
            };
            return Err(Error::Encrypted {
                path: path.to_path_buf(),
                method,
            });
        }
        if incompatible & INCOMPAT_CORRUPT != 0 {
            return Err(Error::MarkedCorrupt {
                path: path.to_path_buf(),
            });
        }
        if incompatible & INCOMPAT_DATA_FILE != 0 || ext.has_data_file {
            return Err(Error::ExternalDataFile {
                path: path.to_path_buf(),
            });
        }
        let unknown = incompatible & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let names: Vec<String> = (0..64u8)
                .filter(|bit| unknown & (1u64 << bit) != 0)
                .map(|bit| {
                    ext.feature_names
                        .iter()
                        .find(|(kind, b, _)| *kind == 0 && *b == bit)
                        .map(|(_, _, name)| format!("bit {bit}: {name}"))
                        .unwrap_or_else(|| format!("bit {bit}: unnamed"))
                })
                .collect();
            return Err(Error::UnknownIncompatibleFeatures {
                path: path.to_path_buf(),
                bits: unknown,
                names: names.join(", "),
            });
        }

        // Compression type: present only if header_length > 104; the incompatible bit
        // must agree with it (QEMU refuses a mismatch).
        let compression_byte = if header_length > 104 {
            cluster0.get(104).copied().unwrap_or(0)
        } else {
            0
        };
        let compression_type = match compression_byte {
            0 => CompressionType::Deflate,
            1 => CompressionType::Zstd,
            other => return Err(corrupt(format!("unknown compression type {other}"))),
        };
        if (compression_byte != 0) != (incompatible & INCOMPAT_COMPRESSION != 0) {
            return Err(corrupt(
                "compression type and incompatible bit 3 disagree".to_string(),
            ));
        }
        if incompatible & INCOMPAT_EXTL2 != 0 && cluster_bits < 14 {
            return Err(corrupt(
                "extended L2 entries need clusters of at least 16 KiB".to_string(),
            ));
        }

        // L1 table: aligned, outside the header, inside the file, large enough for the
        // virtual size and capped like QEMU's (spec: qcow2 §1.3).
        let l2_entries = cluster_size
            / if incompatible & INCOMPAT_EXTL2 != 0 {
                16
            } else {
                8
            };
        let bytes_per_l1 = cluster_size * l2_entries;
        let needed_l1 = size.div_ceil(bytes_per_l1);
        if needed_l1 > u64::from(l1_size) {
            return Err(corrupt(format!(
                "L1 table too small: {l1_size} entries for virtual size {size}"
            )));
        }
        let l1_bytes = u64::from(l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(corrupt(format!("L1 table too large: {l1_size} entries")));
        }
        if l1_size > 0 {
            check_table(
                path,
                "L1 table",
                l1_table_offset,
                l1_bytes,
                cluster_size,
                file_len,
            )?;
        }
        // The refcount table is not needed for reading, but a wild pointer means the
        // file is damaged or truncated.
        let reftable_bytes = u64::from(refcount_table_clusters) * cluster_size;
        if reftable_bytes > MAX_REFTABLE_BYTES.max(cluster_size) {
            return Err(corrupt(format!(
                "refcount table too large: {refcount_table_clusters} clusters"
            )));
        }
        check_table(
            path,
            "refcount table",
            refcount_table_offset,
            reftable_bytes.max(1),
            cluster_size,
            file_len,
        )?;
        if nb_snapshots > MAX_SNAPSHOTS {
            return Err(corrupt(format!("too many snapshots: {nb_snapshots}")));
        }
        if nb_snapshots > 0 {
            check_table(
                path,
                "snapshot table",
                snapshots_offset,
                1,
                cluster_size,
                file_len,
            )?;
        }

        // The backing file name lives in cluster 0 and is not NUL-terminated.
        let backing_file = if backing_file_offset != 0 {
            if backing_file_size == 0 || backing_file_size > 1023 {
                return Err(corrupt(format!(
                    "backing file name length {backing_file_size} outside 1..=1023"
                )));
            }
            let end = backing_file_offset
                .checked_add(u64::from(backing_file_size))
                .filter(|end| *end <= cluster_size)
                .ok_or_else(|| corrupt("backing file name outside cluster 0".into()))?;
            let name = usize::try_from(backing_file_offset)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(start, end)| cluster0.get(start..end))
                .ok_or_else(|| corrupt("backing file name past end of file".into()))?;
            Some(String::from_utf8_lossy(name).into_owned())
        } else {
            None
        };

        Ok(Qcow2Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            nb_snapshots,
            snapshots_offset,
            incompatible_features: incompatible,
            compatible_features: compatible,
            autoclear_features: autoclear,
            refcount_order,
            header_length,
            compression_type,
            backing_file,
            backing_format: ext.backing_format,
            feature_names: ext.feature_names,
            bitmaps: ext.bitmaps,
        })
    }
}

/// A metadata table must be cluster aligned, must not overlap the header and must
/// lie inside the file.
fn check_table(
    path: &Path,
    what: &str,
    offset: u64,
    length: u64,
    cluster_size: u64,
    file_len: u64,
) -> Result<()> {
    if !offset.is_multiple_of(cluster_size) {
        return Err(Error::corrupt(
            path,
            format!("{what} offset {offset:#x} is not cluster aligned"),
        ));
    }
    if offset < cluster_size {
        return Err(Error::corrupt(
            path,
            format!("{what} offset {offset:#x} overlaps the header"),
        ));
    }
    match offset.checked_add(length) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::corrupt(
            path,
            format!("{what} at {offset:#x} (+{length}) is past the end of the file ({file_len})"),
        )),
    }
}

#[derive(Default)]
struct Extensions {
    backing_format: Option<String>,
    feature_names: Vec<(u8, u8, String)>,
    bitmaps: Option<BitmapsExtension>,
    has_crypto: bool,
    has_data_file: bool,
}

fn parse_extensions(
    path: &Path,
    cluster0: &[u8],
    start: u64,
    limit: u64,
    ext: &mut Extensions,
) -> Result<()> {
    let limit = limit.min(cluster0.len() as u64);
    let mut offset = start;
    // Each extension takes at least 8 bytes, so this loop is bounded by the cluster size.
    while offset + 8 <= limit {
        let field = HeaderBytes(cluster0);
        let kind = field.u32_at(offset);
        let len = u64::from(field.u32_at(offset + 4));
        if kind == EXT_END {
            break;
        }
        let data_start = offset + 8;
        let data_end = data_start
            .checked_add(len)
            .filter(|end| *end <= limit)
            .ok_or_else(|| {
                Error::corrupt(
                    path,
                    format!("header extension {kind:#x} at {offset} runs past cluster 0"),
                )
            })?;
        let data = slice(cluster0, data_start, data_end);
        match kind {
            EXT_BACKING_FORMAT => {
                ext.backing_format = Some(String::from_utf8_lossy(data).into_owned());
            }
            EXT_FEATURE_NAMES => {
                for entry in data.chunks_exact(48) {
                    if let [kind, bit, name @ ..] = entry {
                        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                        let name = String::from_utf8_lossy(name.get(..end).unwrap_or(name));
                        ext.feature_names.push((*kind, *bit, name.into_owned()));
                    }
                }
            }
            EXT_BITMAPS => {
                if data.len() < 24 {
                    return Err(Error::corrupt(
                        path,
                        "bitmaps extension shorter than 24 bytes",
                    ));
                }
                let bytes = HeaderBytes(data);
                ext.bitmaps = Some(BitmapsExtension {
                    nb_bitmaps: bytes.u32(0),
                    directory_size: bytes.u64(8),
                    directory_offset: bytes.u64(16),
                });
            }
            EXT_CRYPTO => ext.has_crypto = true,
            EXT_DATA_FILE => ext.has_data_file = true,
            _ => {} // unknown extensions may be ignored (spec: qcow2 §1.2)
        }
        offset = data_start + len.div_ceil(8) * 8;
    }
    Ok(())
}

fn slice(bytes: &[u8], start: u64, end: u64) -> &[u8] {
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| bytes.get(s..e))
        .unwrap_or(&[])
}

/// Big-endian field access that reads missing bytes as zero.
pub(crate) struct HeaderBytes<'a>(pub(crate) &'a [u8]);

impl HeaderBytes<'_> {
    pub(crate) fn u64(&self, at: usize) -> u64 {
        let mut buf = [0u8; 8];
        if let Some(src) = self.0.get(at..at + 8) {
            buf.copy_from_slice(src);
        }
        u64::from_be_bytes(buf)
    }

    pub(crate) fn u32(&self, at: usize) -> u32 {
        let mut buf = [0u8; 4];
        if let Some(src) = self.0.get(at..at + 4) {
            buf.copy_from_slice(src);
        }
        u32::from_be_bytes(buf)
    }

    pub(crate) fn u16(&self, at: usize) -> u16 {
        let mut buf = [0u8; 2];
        if let Some(src) = self.0.get(at..at + 2) {
            buf.copy_from_slice(src);
        }
        u16::from_be_bytes(buf)
    }

    fn u32_at(&self, at: u64) -> u32 {
        usize::try_from(at).map(|at| self.u32(at)).unwrap_or(0)
    }
}
