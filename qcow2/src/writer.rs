//! Writing a fresh qcow2 v3 image in one sequential pass (for restores).
//!
//! Layout: cluster 0 is the header; data clusters and L2 tables are appended
//! as the guest offsets increase; `finish` appends the L1 table, then the
//! refcount table and blocks (which count themselves), then writes the header.
//! Every cluster in the file is used exactly once, so all refcounts are 1 and
//! `qemu-img check` finds neither leaks nor errors (spec: qcow2 §1.6, §2
//! "Restore to qcow2").

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::header::{MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS, QCOW2_MAGIC};

/// COPIED flag of L1/L2 entries: refcount is exactly 1.
const COPIED: u64 = 1 << 63;
/// 16-bit refcounts, as QEMU's default.
const REFCOUNT_ORDER: u32 = 4;
/// Appended bytes are collected into writes of about this size.
const WRITE_BUFFER_BYTES: usize = 4 << 20;
/// QEMU 10 writes header_length 112 (with the compression type byte).
const HEADER_LENGTH: u32 = 112;

/// Writes a new qcow2 v3 image: call [`Qcow2Writer::write_at`] with increasing
/// offsets, then [`Qcow2Writer::finish`]. All-zero clusters and ranges never
/// written stay unallocated (they read as zeros). An image dropped without
/// `finish` is incomplete and not a valid qcow2 file.
#[derive(Debug)]
pub struct Qcow2Writer {
    path: PathBuf,
    file: File,
    virtual_size: u64,
    cluster_bits: u32,
    l2_entries: u64,
    l1: Vec<u64>,
    /// The L2 table being filled and its L1 index.
    l2: Vec<u64>,
    l2_index: Option<u64>,
    /// The guest cluster being assembled and its index.
    cluster: Vec<u8>,
    cluster_index: Option<u64>,
    /// First guest offset that may still be written.
    position: u64,
    /// Bytes waiting to be appended at `pending_start`.
    pending: Vec<u8>,
    pending_start: u64,
}

impl Qcow2Writer {
    /// QEMU's default cluster size, 64 KiB.
    pub const DEFAULT_CLUSTER_SIZE: u64 = 65536;

    /// Creates (or truncates) `path` for an image of `virtual_size` bytes with the
    /// given cluster size (a power of two, 512 bytes to 2 MiB; 65536 is QEMU's
    /// default). Like `qemu-img create`, a size that is not a multiple of 512 is
    /// rounded up to one (QEMU cannot address a partial sector).
    pub fn create(path: impl AsRef<Path>, virtual_size: u64, cluster_size: u64) -> Result<Self> {
        let path = path.as_ref();
        let invalid = |reason: String| Error::InvalidWriterParameters { reason };
        if !cluster_size.is_power_of_two() {
            return Err(invalid(format!(
                "cluster size {cluster_size} is not a power of two"
            )));
        }
        let cluster_bits = cluster_size.trailing_zeros();
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(invalid(format!(
                "cluster size {cluster_size} outside 512 bytes..2 MiB"
            )));
        }
        // QEMU only handles whole 512-byte sectors and truncates the size it reads,
        // so round up as `qemu-img create` does; the tail reads as zeros.
        let virtual_size = virtual_size
            .checked_next_multiple_of(512)
            .ok_or_else(|| invalid(format!("virtual size {virtual_size} too large")))?;
        let l2_entries = cluster_size / 8;
        let l1_size = virtual_size.div_ceil(cluster_size * l2_entries);
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(invalid(format!(
                "virtual size {virtual_size} needs an L1 table larger than 32 MiB"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Qcow2Writer {
            path: path.to_path_buf(),
            file,
            virtual_size,
            cluster_bits,
            l2_entries,
            l1: vec![0; l1_size as usize],
            l2: vec![0; l2_entries as usize],
            l2_index: None,
            cluster: vec![0; cluster_size as usize],
            cluster_index: None,
            position: 0,
            pending: Vec::new(),
            // Cluster 0 is the header.
            pending_start: cluster_size,
        })
    }

    fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Next free host offset.
    fn host_end(&self) -> u64 {
        self.pending_start + self.pending.len() as u64
    }

    /// Writes guest bytes at `offset`, which must not be below the end of the
    /// previous write. Gaps read as zeros.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset < self.position {
            return Err(Error::WriteNotIncreasing {
                offset,
                position: self.position,
            });
        }
        let end = crate::extent::check_range(offset, data.len() as u64, self.virtual_size)?;
        let cs = self.cluster_size();
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = pos >> self.cluster_bits;
            let within = (pos & (cs - 1)) as usize;
            let take = rest.len().min(self.cluster.len() - within);
            let (chunk, tail) = rest.split_at(take);
            if self.cluster_index != Some(index) {
                self.flush_cluster()?;
                self.cluster_index = Some(index);
            }
            if let Some(dest) = self.cluster.get_mut(within..within + take) {
                dest.copy_from_slice(chunk);
            }
            if within + take == self.cluster.len() {
                self.flush_cluster()?;
            }
            pos += take as u64;
            rest = tail;
        }
        self.position = end;
        Ok(())
    }

    /// Stores the assembled cluster unless it is all zeros.
    fn flush_cluster(&mut self) -> Result<()> {
        let Some(index) = self.cluster_index.take() else {
            return Ok(());
        };
        if self.cluster.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let l1_index = index / self.l2_entries;
        if self.l2_index != Some(l1_index) {
            self.flush_l2()?;
            self.l2_index = Some(l1_index);
        }
        let host = self.host_end();
        if let Some(entry) = self.l2.get_mut((index % self.l2_entries) as usize) {
            *entry = host | COPIED;
        }
        self.pending.extend_from_slice(&self.cluster);
        self.cluster.fill(0);
        if self.pending.len() >= WRITE_BUFFER_BYTES {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Appends the current L2 table and points its L1 entry at it.
    fn flush_l2(&mut self) -> Result<()> {
        let Some(l1_index) = self.l2_index.take() else {
            return Ok(());
        };
        let host = self.host_end();
        for entry in &self.l2 {
            self.pending.extend_from_slice(&entry.to_be_bytes());
        }
        self.l2.fill(0);
        if let Some(entry) = self.l1.get_mut(l1_index as usize) {
            *entry = host | COPIED;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.pending, self.pending_start)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pending_start += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the L1 table, refcounts and header, and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.flush_cluster()?;
        self.flush_l2()?;
        let cs = self.cluster_size();

        // L1 table, padded to whole clusters (none for an empty disk, which would
        // otherwise be a leaked cluster).
        let l1_offset = self.host_end();
        for entry in &self.l1 {
            self.pending.extend_from_slice(&entry.to_be_bytes());
        }
        let l1_clusters = (self.l1.len() as u64 * 8).div_ceil(cs);
        self.pending.resize(
            self.pending.len() + (l1_offset + l1_clusters * cs - self.host_end()) as usize,
            0,
        );
        self.flush_pending()?;

        // Refcount table and blocks must count every cluster, themselves included:
        // iterate to the fixed point.
        let used = self.host_end() / cs;
        let per_block = cs * 8 / (1 << REFCOUNT_ORDER);
        let (mut blocks, mut table_clusters) = (0u64, 0u64);
        loop {
            let total = used + blocks + table_clusters;
            let need_blocks = total.div_ceil(per_block);
            let need_table = (need_blocks * 8).div_ceil(cs).max(1);
            if need_blocks == blocks && need_table == table_clusters {
                break;
            }
            blocks = need_blocks;
            table_clusters = need_table;
        }
        let total = used + blocks + table_clusters;
        let table_offset = used * cs;
        let first_block = table_offset + table_clusters * cs;
        let mut table = vec![0u8; (table_clusters * cs) as usize];
        for (i, slot) in table.chunks_exact_mut(8).take(blocks as usize).enumerate() {
            slot.copy_from_slice(&(first_block + i as u64 * cs).to_be_bytes());
        }
        self.pending.extend_from_slice(&table);
        for block in 0..blocks {
            for i in 0..per_block {
                let cluster = block * per_block + i;
                let refcount: u16 = u16::from(cluster < total);
                self.pending.extend_from_slice(&refcount.to_be_bytes());
            }
            if self.pending.len() >= WRITE_BUFFER_BYTES {
                self.flush_pending()?;
            }
        }
        self.flush_pending()?;

        let header = self.header(l1_offset, table_offset, table_clusters);
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }

    fn header(
        &self,
        l1_offset: u64,
        refcount_table_offset: u64,
        refcount_clusters: u64,
    ) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
        h.extend_from_slice(&QCOW2_MAGIC.to_be_bytes());
        h.extend_from_slice(&3u32.to_be_bytes()); // version
        h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
        h.extend_from_slice(&self.cluster_bits.to_be_bytes());
        h.extend_from_slice(&self.virtual_size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
        h.extend_from_slice(&(self.l1.len() as u32).to_be_bytes());
        h.extend_from_slice(&l1_offset.to_be_bytes());
        h.extend_from_slice(&refcount_table_offset.to_be_bytes());
        h.extend_from_slice(&(refcount_clusters as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
        h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
        h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        h.push(0); // compression_type: deflate
        h.extend_from_slice(&[0u8; 7]); // padding to 112
        h.extend_from_slice(&[0u8; 8]); // end of header extensions
        h
    }
}
