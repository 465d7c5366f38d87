//! Persistent dirty bitmaps (spec: qcow2 §1.11), the on-disk form of libvirt
//! checkpoints: which guest ranges changed since the bitmap was created.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::header::{HeaderBytes, AUTOCLEAR_BITMAPS};
use crate::io::{read_full_at, OFFSET_MASK};
use crate::layer::Qcow2Layer;

/// QEMU's limits (QCOW2_MAX_BITMAPS, QCOW2_MAX_BITMAP_DIRECTORY_SIZE).
const MAX_BITMAPS: u32 = 65535;
const MAX_DIRECTORY_BYTES: u64 = 1024 * MAX_BITMAPS as u64;
/// Cap on one bitmap table (8 MiB of entries covers far more than any disk at
/// 64 KiB granularity).
const MAX_TABLE_BYTES: u64 = 8 << 20;
const FLAG_IN_USE: u32 = 1 << 0;
const FLAG_AUTO: u32 = 1 << 1;
const TYPE_DIRTY_TRACKING: u8 = 1;
const TABLE_ENTRY_RESERVED_MASK: u64 = 0xff00_0000_0000_01fe;

/// One persistent bitmap, as listed in the bitmap directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BitmapInfo {
    /// Bitmap name (for OpenNebula `one-<vmid>-<backup_id>`).
    pub name: String,
    /// Guest bytes per bit.
    pub granularity: u64,
    /// `in_use`: QEMU has the image open or crashed; the on-disk bits are stale.
    pub in_use: bool,
    /// `auto`: the bitmap is enabled and tracks writes.
    pub enabled: bool,
    /// Whether [`crate::Qcow2Image::dirty_ranges`] will trust it: not in use, and
    /// the bitmaps extension is marked consistent (autoclear bit 0).
    pub consistent: bool,
    table_offset: u64,
    table_size: u32,
    kind: u8,
}

pub(crate) fn list(layer: &Qcow2Layer) -> Result<Vec<BitmapInfo>> {
    let header = layer.header();
    let Some(ext) = header.bitmaps else {
        return Ok(Vec::new());
    };
    let extension_consistent = header.autoclear_features & AUTOCLEAR_BITMAPS != 0;
    let path = layer.path();
    let cs = header.cluster_size();
    if ext.nb_bitmaps > MAX_BITMAPS || ext.directory_size > MAX_DIRECTORY_BYTES {
        return Err(Error::corrupt(path, "bitmap directory too large"));
    }
    if ext.directory_offset % cs != 0 || ext.directory_offset < cs {
        return Err(Error::corrupt(path, "bitmap directory offset invalid"));
    }
    if ext
        .directory_offset
        .checked_add(ext.directory_size)
        .is_none_or(|end| end > layer.file_len())
    {
        return Err(Error::corrupt(
            path,
            "bitmap directory past the end of the file",
        ));
    }
    let mut dir = vec![0u8; ext.directory_size as usize];
    read_full_at(layer.file(), path, ext.directory_offset, &mut dir)?;

    let mut bitmaps = Vec::new();
    let mut pos = 0usize;
    for _ in 0..ext.nb_bitmaps {
        let fields = HeaderBytes(dir.get(pos..).unwrap_or(&[]));
        if pos + 24 > dir.len() {
            return Err(Error::corrupt(path, "bitmap directory entry truncated"));
        }
        let table_offset = fields.u64(0);
        let table_size = fields.u32(8);
        let flags = fields.u32(12);
        let kind = dir.get(pos + 16).copied().unwrap_or(0);
        let granularity_bits = dir.get(pos + 17).copied().unwrap_or(0);
        let name_size = usize::from(fields.u16(18));
        let extra_size = fields.u32(20) as usize;
        let name_start = pos + 24 + extra_size;
        let name = dir
            .get(name_start..name_start + name_size)
            .ok_or_else(|| Error::corrupt(path, "bitmap name outside the directory"))?;
        if !(9..=31).contains(&granularity_bits) {
            return Err(Error::corrupt(
                path,
                format!("bitmap granularity bits {granularity_bits} outside 9..=31"),
            ));
        }
        let in_use = flags & FLAG_IN_USE != 0;
        bitmaps.push(BitmapInfo {
            name: String::from_utf8_lossy(name).into_owned(),
            granularity: 1u64 << granularity_bits,
            in_use,
            enabled: flags & FLAG_AUTO != 0,
            consistent: extension_consistent && !in_use,
            table_offset,
            table_size,
            kind,
        });
        // Entries are padded to 8 bytes.
        pos += (24 + extra_size + name_size).div_ceil(8) * 8;
    }
    Ok(bitmaps)
}

pub(crate) fn dirty_ranges(layer: &Qcow2Layer, name: &str) -> Result<Vec<Range<u64>>> {
    let path = layer.path();
    let bitmap = list(layer)?
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| Error::BitmapNotFound {
            path: path.to_path_buf(),
            name: name.to_string(),
        })?;
    let inconsistent = |reason: &str| Error::BitmapInconsistent {
        path: path.to_path_buf(),
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if bitmap.in_use {
        return Err(inconsistent("in use"));
    }
    if !bitmap.consistent {
        return Err(inconsistent("bitmaps extension not consistent"));
    }
    if bitmap.kind != TYPE_DIRTY_TRACKING {
        return Err(Error::corrupt(
            path,
            format!("bitmap {name:?} has unknown type {}", bitmap.kind),
        ));
    }

    let header = layer.header();
    let cs = header.cluster_size();
    let size = header.size;
    let granularity = bitmap.granularity;
    let bits = size.div_ceil(granularity);
    let needed_entries = bits.div_ceil(8).div_ceil(cs);
    if u64::from(bitmap.table_size) < needed_entries
        || u64::from(bitmap.table_size) * 8 > MAX_TABLE_BYTES
    {
        return Err(Error::corrupt(
            path,
            format!(
                "bitmap {name:?} table has {} entries, {needed_entries} needed",
                bitmap.table_size
            ),
        ));
    }
    if needed_entries > 0 {
        if bitmap.table_offset % cs != 0 || bitmap.table_offset < cs {
            return Err(Error::corrupt(
                path,
                format!("bitmap {name:?} table misaligned"),
            ));
        }
        if bitmap
            .table_offset
            .checked_add(needed_entries * 8)
            .is_none_or(|end| end > layer.file_len())
        {
            return Err(Error::corrupt(
                path,
                format!("bitmap {name:?} table past the end of the file"),
            ));
        }
    }
    let mut table = vec![0u8; (needed_entries * 8) as usize];
    read_full_at(layer.file(), path, bitmap.table_offset, &mut table)?;

    let mut ranges = RangeBuilder::default();
    let bits_per_cluster = cs * 8;
    let mut data = vec![0u8; cs as usize];
    for (index, raw) in table.chunks_exact(8).enumerate() {
        let entry = u64::from_be_bytes(raw.try_into().unwrap_or([0; 8]));
        if entry & TABLE_ENTRY_RESERVED_MASK != 0 {
            return Err(Error::corrupt(
                path,
                format!("bitmap {name:?} table entry {index} has reserved bits set"),
            ));
        }
        let first_bit = index as u64 * bits_per_cluster;
        let host = entry & OFFSET_MASK;
        if host == 0 {
            // Bit 0 says what the whole cluster reads as: all ones or all zeros.
            if entry & 1 != 0 {
                let last_bit = (first_bit + bits_per_cluster).min(bits);
                ranges.add(first_bit * granularity, last_bit * granularity);
            }
            continue;
        }
        if !host.is_multiple_of(cs) || host + cs > layer.file_len() {
            return Err(Error::corrupt(
                path,
                format!("bitmap {name:?} data cluster at {host:#x} invalid"),
            ));
        }
        read_full_at(layer.file(), path, host, &mut data)?;
        for (byte_index, byte) in data.iter().enumerate() {
            if *byte == 0 {
                continue;
            }
            let byte_bit = first_bit + byte_index as u64 * 8;
            // LSB first: bit n of the bitmap is bit n%8 of byte n/8.
            for bit in 0..8u64 {
                if byte >> bit & 1 != 0 && byte_bit + bit < bits {
                    let start = (byte_bit + bit) * granularity;
                    ranges.add(start, start + granularity);
                }
            }
        }
    }
    Ok(ranges.finish(size))
}

/// Accumulates ranges in increasing order, merging touching ones.
#[derive(Default)]
struct RangeBuilder {
    ranges: Vec<Range<u64>>,
}

impl RangeBuilder {
    fn add(&mut self, start: u64, end: u64) {
        if let Some(last) = self.ranges.last_mut() {
            if last.end >= start {
                last.end = last.end.max(end);
                return;
            }
        }
        self.ranges.push(start..end);
    }

    /// Clamps to the virtual size (the last bit may cover less than a granule).
    fn finish(mut self, size: u64) -> Vec<Range<u64>> {
        for range in &mut self.ranges {
            range.end = range.end.min(size);
        }
        self.ranges.retain(|r| r.start < r.end);
        self.ranges
    }
}
