//! One qcow2 file: the L1/L2 walk that maps guest ranges to host pieces
//! (spec: qcow2 §1.3-1.5), and reading those pieces.
//!
//! A layer knows nothing of backing files: unallocated ranges are reported as
//! such and the chain ([`crate::Qcow2Image`]) decides where they read from.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::compression::decompress_cluster;
use crate::error::{Error, Result};
use crate::format::ImageFormat;
use crate::header::Qcow2Header;
use crate::io::{block_device_size, read_full_at, read_zero_padded, OFFSET_MASK};

const L1_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
const L2_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// With extended L2 entries bit 0 is reserved too (spec: qcow2 §1.5).
const L2_EXT_RESERVED_MASK: u64 = 0x3f00_0000_0000_01ff;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;
const SUBCLUSTERS: u64 = 32;

/// Memory for cached L2 tables, per layer.
const L2_CACHE_BYTES: u64 = 8 << 20;
/// Decompressed clusters kept per layer (reads smaller than a cluster would
/// otherwise decompress the same cluster again and again).
const DECOMPRESSED_CACHE_ENTRIES: usize = 4;

/// What one guest range maps to inside a single layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Stored uncompressed at this host offset (for the start of the range).
    Data { host: u64 },
    /// Part of a compressed cluster; the L2 entry is the descriptor.
    Compressed { entry: u64 },
    /// Reads as zeros without looking further down the chain.
    Zero,
    /// Not in this layer: the backing layer decides.
    Unallocated,
}

/// A guest range and what it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub guest: u64,
    pub len: u64,
    pub piece: Piece,
}

/// Collects per-(sub)cluster mappings and emits maximal runs.
struct RunMerger<'a> {
    pending: Option<Mapping>,
    sink: &'a mut dyn FnMut(Mapping) -> Result<()>,
}

impl RunMerger<'_> {
    fn push(&mut self, next: Mapping) -> Result<()> {
        if next.len == 0 {
            return Ok(());
        }
        if let Some(pending) = self.pending.as_mut() {
            let contiguous = pending.guest + pending.len == next.guest;
            let mergeable = match (pending.piece, next.piece) {
                (Piece::Data { host: a }, Piece::Data { host: b }) => a + pending.len == b,
                (Piece::Zero, Piece::Zero) | (Piece::Unallocated, Piece::Unallocated) => true,
                _ => false,
            };
            if contiguous && mergeable {
                pending.len += next.len;
                return Ok(());
            }
            let done = *pending;
            self.pending = Some(next);
            return (self.sink)(done);
        }
        self.pending = Some(next);
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        match self.pending.take() {
            Some(done) => (self.sink)(done),
            None => Ok(()),
        }
    }
}

/// Small most-recently-used cache keyed by host offset.
struct MruCache<T> {
    entries: Vec<(u64, Arc<T>)>,
    capacity: usize,
}

impl<T> MruCache<T> {
    fn new(capacity: usize) -> Self {
        MruCache {
            entries: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&mut self, key: u64) -> Option<Arc<T>> {
        let index = self.entries.iter().position(|(k, _)| *k == key)?;
        let entry = self.entries.remove(index);
        let value = Arc::clone(&entry.1);
        self.entries.insert(0, entry);
        Some(value)
    }

    fn insert(&mut self, key: u64, value: Arc<T>) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.insert(0, (key, value));
        self.entries.truncate(self.capacity);
    }
}

/// One open qcow2 file.
pub(crate) struct Qcow2Layer {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: Qcow2Header,
    l1: Vec<u64>,
    l2_cache: Mutex<MruCache<Vec<u64>>>,
    decompressed_cache: Mutex<MruCache<Vec<u8>>>,
}

impl Qcow2Layer {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        // qcow2 on a block device (e.g. an LVM volume): its length is the device size.
        let file_len = if meta.file_type().is_block_device() {
            block_device_size(&file).map_err(|e| Error::io(path, e))?
        } else {
            meta.len()
        };
        // Read the fixed header first to learn the cluster size, then cluster 0.
        let mut first = vec![0u8; 112.min(file_len as usize)];
        read_full_at(&file, path, 0, &mut first)?;
        if first.len() < 24 {
            return Err(Error::NotQcow2 {
                path: path.to_path_buf(),
            });
        }
        let cluster_bits = crate::header::HeaderBytes(&first).u32(20);
        let cluster0_len = if (crate::header::MIN_CLUSTER_BITS..=crate::header::MAX_CLUSTER_BITS)
            .contains(&cluster_bits)
        {
            (1u64 << cluster_bits).min(file_len)
        } else {
            first.len() as u64
        };
        let mut cluster0 = vec![0u8; cluster0_len as usize];
        read_full_at(&file, path, 0, &mut cluster0)?;
        let header = Qcow2Header::parse(path, &cluster0, file_len)?;

        // The header parser capped l1_size at 32 MiB and checked it lies in the file.
        let mut l1_bytes = vec![0u8; header.l1_size as usize * 8];
        read_full_at(&file, path, header.l1_table_offset, &mut l1_bytes)?;
        let l1 = l1_bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();

        let l2_tables = (L2_CACHE_BYTES / header.cluster_size()).max(4) as usize;
        Ok(Qcow2Layer {
            path: path.to_path_buf(),
            file,
            file_len,
            header,
            l1,
            l2_cache: Mutex::new(MruCache::new(l2_tables)),
            decompressed_cache: Mutex::new(MruCache::new(DECOMPRESSED_CACHE_ENTRIES)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn header(&self) -> &Qcow2Header {
        &self.header
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    pub(crate) fn virtual_size(&self) -> u64 {
        self.header.size
    }

    /// The layer's identity: file length, modification time, layout digest.
    pub(crate) fn identity(&self) -> Result<crate::identity::LayerIdentity> {
        crate::identity::of_file(
            &self.path,
            &self.file,
            ImageFormat::Qcow2,
            self.file_len,
            Some(crate::identity::qcow2_layout(&self.header, &self.l1)),
        )
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::corrupt(&self.path, reason)
    }

    /// Checks that a host cluster offset is aligned, outside the header and inside
    /// the file.
    fn check_host_cluster(&self, what: &str, host: u64, must_exist: bool) -> Result<()> {
        let cs = self.header.cluster_size();
        if !host.is_multiple_of(cs) {
            return Err(self.corrupt(format!("{what} offset {host:#x} is not cluster aligned")));
        }
        if host < cs {
            return Err(self.corrupt(format!("{what} offset {host:#x} overlaps the header")));
        }
        if must_exist && host >= self.file_len {
            return Err(self.corrupt(format!(
                "{what} offset {host:#x} is past the end of the file ({})",
                self.file_len
            )));
        }
        Ok(())
    }

    fn l2_table(&self, l2_offset: u64) -> Result<Arc<Vec<u64>>> {
        if let Some(table) = lock(&self.l2_cache).get(l2_offset) {
            return Ok(table);
        }
        let cs = self.header.cluster_size();
        if l2_offset + cs > self.file_len {
            return Err(self.corrupt(format!(
                "L2 table at {l2_offset:#x} is past the end of the file ({})",
                self.file_len
            )));
        }
        let mut bytes = vec![0u8; cs as usize];
        read_full_at(&self.file, &self.path, l2_offset, &mut bytes)?;
        let table: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let table = Arc::new(table);
        lock(&self.l2_cache).insert(l2_offset, Arc::clone(&table));
        Ok(table)
    }

    /// Maps `[offset, offset+len)` (which must lie inside the virtual size) to
    /// maximal runs of pieces, in guest order.
    pub(crate) fn map(
        &self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(Mapping) -> Result<()>,
    ) -> Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= self.header.size)
            .ok_or(Error::OutOfRange {
                offset,
                length: len,
                size: self.header.size,
            })?;
        let bits = self.header.cluster_bits;
        let cs = self.header.cluster_size();
        let l2_entries = self.header.l2_entries();
        let l2_span = cs * l2_entries;
        let extended = self.header.extended_l2();
        let mut merger = RunMerger {
            pending: None,
            sink,
        };
        let mut pos = offset;
        while pos < end {
            let l1_index = pos / l2_span;
            let span_end = end.min((l1_index + 1) * l2_span);
            let l1_entry = usize::try_from(l1_index)
                .ok()
                .and_then(|i| self.l1.get(i))
                .copied()
                .ok_or_else(|| self.corrupt(format!("L1 index {l1_index} out of range")))?;
            if l1_entry & L1_RESERVED_MASK != 0 {
                return Err(self.corrupt(format!(
                    "L1 entry {l1_index} has reserved bits set ({l1_entry:#x})"
                )));
            }
            let l2_offset = l1_entry & OFFSET_MASK;
            if l2_offset == 0 {
                merger.push(Mapping {
                    guest: pos,
                    len: span_end - pos,
                    piece: Piece::Unallocated,
                })?;
                pos = span_end;
                continue;
            }
            self.check_host_cluster("L2 table", l2_offset, true)?;
            let table = self.l2_table(l2_offset)?;
            while pos < span_end {
                let cluster_start = pos & !(cs - 1);
                let cluster_end = span_end.min(cluster_start + cs);
                let index = ((pos >> bits) % l2_entries) as usize;
                if extended {
                    let entry = table.get(2 * index).copied().unwrap_or(0);
                    let bitmap = table.get(2 * index + 1).copied().unwrap_or(0);
                    self.map_extended_entry(
                        entry,
                        bitmap,
                        pos,
                        cluster_start,
                        cluster_end,
                        &mut merger,
                    )?;
                } else {
                    let entry = table.get(index).copied().unwrap_or(0);
                    let piece = self.classify_standard(entry, pos - cluster_start)?;
                    merger.push(Mapping {
                        guest: pos,
                        len: cluster_end - pos,
                        piece,
                    })?;
                }
                pos = cluster_end;
            }
        }
        merger.finish()
    }

    /// Cluster type of a standard L2 entry (QEMU's `qcow2_get_cluster_type`).
    fn classify_standard(&self, entry: u64, within: u64) -> Result<Piece> {
        if entry & L2_COMPRESSED != 0 {
            self.check_compressed(entry)?;
            return Ok(Piece::Compressed { entry });
        }
        if entry & L2_RESERVED_MASK != 0 {
            return Err(self.corrupt(format!("L2 entry has reserved bits set ({entry:#x})")));
        }
        let host = entry & OFFSET_MASK;
        if entry & L2_ZERO != 0 {
            // ZERO_ALLOC or ZERO_PLAIN: zeros, never the backing file.
            if host != 0 {
                self.check_host_cluster("zero cluster", host, false)?;
            }
            return Ok(Piece::Zero);
        }
        if host == 0 {
            return Ok(Piece::Unallocated);
        }
        self.check_host_cluster("data cluster", host, true)?;
        Ok(Piece::Data {
            host: host + within,
        })
    }

    fn map_extended_entry(
        &self,
        entry: u64,
        bitmap: u64,
        pos: u64,
        cluster_start: u64,
        cluster_end: u64,
        merger: &mut RunMerger<'_>,
    ) -> Result<()> {
        if entry & L2_COMPRESSED != 0 {
            // Compressed clusters have no subclusters (spec: qcow2 §1.4).
            self.check_compressed(entry)?;
            return merger.push(Mapping {
                guest: pos,
                len: cluster_end - pos,
                piece: Piece::Compressed { entry },
            });
        }
        if entry & L2_EXT_RESERVED_MASK != 0 {
            return Err(self.corrupt(format!("L2 entry has reserved bits set ({entry:#x})")));
        }
        let host = entry & OFFSET_MASK;
        let alloc = bitmap & 0xffff_ffff;
        let zero = bitmap >> 32;
        if alloc & zero != 0 || (host == 0 && alloc != 0) {
            return Err(self.corrupt(format!(
                "invalid extended L2 entry {entry:#x} bitmap {bitmap:#x}"
            )));
        }
        if host != 0 {
            self.check_host_cluster("data cluster", host, alloc != 0)?;
        }
        let sc_size = self.header.cluster_size() / SUBCLUSTERS;
        let mut sub_pos = pos;
        while sub_pos < cluster_end {
            let within = sub_pos - cluster_start;
            let sc = within / sc_size;
            let sc_end = cluster_end.min(cluster_start + (sc + 1) * sc_size);
            let piece = if zero >> sc & 1 != 0 {
                Piece::Zero
            } else if alloc >> sc & 1 != 0 {
                Piece::Data {
                    host: host + within,
                }
            } else {
                // UNALLOCATED_PLAIN or UNALLOCATED_ALLOC: both fall through.
                Piece::Unallocated
            };
            merger.push(Mapping {
                guest: sub_pos,
                len: sc_end - sub_pos,
                piece,
            })?;
            sub_pos = sc_end;
        }
        Ok(())
    }

    /// Decodes one compressed cluster into `out` (exactly one cluster long).
    fn decompress_into(&self, entry: u64, out: &mut [u8]) -> Result<()> {
        let (coffset, csize) = self.compressed_location(entry);
        // csize is at most cluster_size * 2 (bounded by the descriptor's bit width).
        let mut input = vec![0u8; csize as usize];
        read_zero_padded(&self.file, &self.path, coffset, &mut input)?;
        decompress_cluster(self.header.compression_type, &input, out).map_err(|reason| {
            Error::Decompress {
                path: self.path.clone(),
                host_offset: coffset,
                reason,
            }
        })
    }

    /// Splits a compressed descriptor into (host offset, upper bound of bytes).
    fn compressed_location(&self, entry: u64) -> (u64, u64) {
        let bits = self.header.cluster_bits;
        let x = 62 - (bits - 8);
        let coffset = entry & ((1u64 << x) - 1);
        let nb_sectors = ((entry >> x) & ((1u64 << (bits - 8)) - 1)) + 1;
        let csize = nb_sectors * 512 - (coffset & 511);
        (coffset, csize)
    }

    fn check_compressed(&self, entry: u64) -> Result<()> {
        let (coffset, _) = self.compressed_location(entry);
        if coffset < self.header.cluster_size() || coffset >= self.file_len {
            return Err(self.corrupt(format!(
                "compressed cluster at {coffset:#x} lies outside the data area"
            )));
        }
        Ok(())
    }

    /// Reads host bytes of an uncompressed run; bytes past the end of the file read
    /// as zeros, like QEMU's file driver.
    pub(crate) fn read_data(&self, host: u64, buf: &mut [u8]) -> Result<()> {
        read_zero_padded(&self.file, &self.path, host, buf)
    }

    /// Copies part of a compressed cluster: `within` bytes into the cluster.
    pub(crate) fn read_compressed(&self, entry: u64, within: u64, buf: &mut [u8]) -> Result<()> {
        if within == 0 && buf.len() as u64 == self.header.cluster_size() {
            // A whole cluster: decode straight into the caller's buffer; it will
            // not be asked for again soon, so skip the cache.
            return self.decompress_into(entry, buf);
        }
        let cluster = self.decompressed(entry)?;
        let start = usize::try_from(within).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| cluster.get(start..end))
            .ok_or_else(|| self.corrupt("compressed read outside its cluster".into()))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn decompressed(&self, entry: u64) -> Result<Arc<Vec<u8>>> {
        let (coffset, _) = self.compressed_location(entry);
        if let Some(cluster) = lock(&self.decompressed_cache).get(coffset) {
            return Ok(cluster);
        }
        let mut cluster = vec![0u8; self.header.cluster_size() as usize];
        self.decompress_into(entry, &mut cluster)?;
        let cluster = Arc::new(cluster);
        lock(&self.decompressed_cache).insert(coffset, Arc::clone(&cluster));
        Ok(cluster)
    }
}

/// Locks a cache; a poisoned lock only means another reader panicked while
/// holding it, and the caches hold no invariants a panic could break.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
