//! The in-memory index: where every blob lives (pack, offset, length).
//!
//! Memory layout: per blob type one `Vec<IndexEntry>` sorted by blob ID, plus
//! a small unsorted tail of recently added entries that is merged into the
//! sorted part once it grows beyond 1/8 of it (so inserts stay amortised
//! O(log n); the tail is a hash map).
//!
//! **Bytes per blob: about 50** — 32 (blob ID) + 4 (pack number into a shared
//! `Vec<Id>` of pack IDs) + 4 (offset) + 4 (encrypted length) + 4
//! (uncompressed length, 0 = not compressed). Pack IDs cost 32 bytes per
//! *pack* plus a hash map entry (packs hold hundreds to thousands of blobs),
//! and ~2 for the lookup directory below.
//! restic's own index uses about 60-70 bytes per blob.
//!
//! Lookups go through a directory of the sorted part by the leading bits of
//! the blob ID (one `usize` per four blobs, ~2 bytes per blob): blob IDs are SHA-256
//! hashes, so the leading bits are uniform and the directory narrows a
//! lookup to a handful of neighbouring entries (one or two cache misses
//! instead of a binary search's ~17 over a large index).
//!
//! Offsets and lengths are `u32` (restic's pack header stores lengths as
//! `u32`, packs are at most 128 MiB + header); an index entry with a larger
//! offset is rejected when it is added.
//!
//! Commands that trust the index use the mapped index cache instead
//! (`mapped_index`): this in-memory index then holds only the blobs the
//! process adds. Without a cache, and for check and prune, it holds all.
//!
//! Several copies of one blob (in different packs) are legal
//! (spec: restic-format §9); all are kept, exact duplicates (the same pack
//! listed in several index files) are dropped.

use std::collections::HashMap;

use restix_repo_format::{BlobType, Id};

/// Where one copy of a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobLocation {
    /// The pack file holding the blob.
    pub pack: Id,
    /// Byte offset of the encrypted blob in the pack.
    pub offset: u32,
    /// Length of the encrypted blob in the pack (ciphertext + 32).
    pub length: u32,
    /// Plaintext length after decompression; `None` for uncompressed blobs.
    pub uncompressed_length: Option<u32>,
}

impl BlobLocation {
    /// Plaintext size of the blob (uncompressed length, or encrypted length − 32).
    pub fn plaintext_len(&self) -> u32 {
        match self.uncompressed_length {
            Some(n) => n,
            None => self.length.saturating_sub(32),
        }
    }
}

/// One blob copy: 48 bytes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct IndexEntry {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed_length: u32,
}

/// Entries of one blob type.
#[derive(Debug, Default)]
struct TypeIndex {
    sorted: Vec<IndexEntry>,
    /// `directory[p]` is the first position in `sorted` whose ID's leading
    /// `directory_bits` bits are >= `p`; one more entry holds `sorted.len()`.
    /// Empty while `sorted` is (then every lookup finds nothing).
    directory: Vec<usize>,
    directory_bits: u32,
    /// Recently added, not yet merged; keyed by blob ID.
    recent: HashMap<[u8; 32], Vec<IndexEntry>>,
    recent_len: usize,
    /// Added by [`MemoryIndex::add_bulk`]: not visible until merged.
    bulk: Vec<IndexEntry>,
}

impl TypeIndex {
    fn sorted_range(&self, id: &[u8; 32]) -> &[IndexEntry] {
        let p = directory_slot(id, self.directory_bits);
        let (Some(&from), Some(&to)) = (self.directory.get(p), self.directory.get(p + 1)) else {
            return &[];
        };
        let bucket = self.sorted.get(from..to).unwrap_or(&[]);
        let start = bucket.partition_point(|e| e.id < *id);
        let rest = bucket.get(start..).unwrap_or(&[]);
        let len = rest.partition_point(|e| e.id == *id);
        rest.get(..len).unwrap_or(&[])
    }

    /// Rebuild the directory over `sorted` (after every merge).
    fn build_directory(&mut self) {
        self.directory.clear();
        if self.sorted.is_empty() {
            self.directory_bits = 0;
            return;
        }
        // About four entries per slot, at most 2^24 slots (128 MiB of
        // directory, for ~64 million blobs and more).
        let bits = (usize::BITS - (self.sorted.len() / 4).leading_zeros()).min(24);
        self.directory_bits = bits;
        let slots = 1usize << bits;
        self.directory.reserve_exact(slots + 1);
        let mut pos = 0usize;
        for p in 0..slots {
            while self
                .sorted
                .get(pos)
                .is_some_and(|e| directory_slot(&e.id, bits) < p)
            {
                pos += 1;
            }
            self.directory.push(pos);
        }
        self.directory.push(self.sorted.len());
    }

    fn for_each_copy(&self, id: &[u8; 32], mut f: impl FnMut(&IndexEntry)) {
        for e in self.sorted_range(id) {
            f(e);
        }
        if let Some(list) = self.recent.get(id) {
            for e in list {
                f(e);
            }
        }
    }

    fn contains(&self, id: &[u8; 32]) -> bool {
        !self.sorted_range(id).is_empty() || self.recent.contains_key(id)
    }

    fn add(&mut self, e: IndexEntry) {
        if self.sorted_range(&e.id).contains(&e) {
            return;
        }
        let list = self.recent.entry(e.id).or_default();
        if list.contains(&e) {
            return;
        }
        list.push(e);
        self.recent_len += 1;
        if self.recent_len > 4096 && self.recent_len > self.sorted.len() / 8 {
            self.merge();
        }
    }

    fn merge(&mut self) {
        if self.recent_len == 0 && self.bulk.is_empty() {
            return;
        }
        let mut tail: Vec<IndexEntry> = std::mem::take(&mut self.bulk);
        tail.extend(self.recent.drain().flat_map(|(_, v)| v));
        self.recent_len = 0;
        tail.sort_unstable();
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + tail.len());
        let (mut a, mut b) = (old.into_iter().peekable(), tail.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x <= y {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(e) = next {
                if merged.last() != Some(&e) {
                    merged.push(e);
                }
            }
        }
        self.sorted = merged;
        self.build_directory();
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.recent_len + self.bulk.len()
    }
}

/// The directory slot of a blob ID: its leading `bits` bits.
fn directory_slot(id: &[u8; 32], bits: u32) -> usize {
    let lead = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    match bits {
        0 => 0,
        b => (lead >> (32 - b)) as usize,
    }
}

/// The in-memory index of a repository (all blob types).
#[derive(Debug, Default)]
pub struct MemoryIndex {
    data: TypeIndex,
    tree: TypeIndex,
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
}

/// An index entry that does not fit the compact layout.
#[derive(Debug, thiserror::Error)]
#[error("blob {blob} in pack {pack}: offset {offset} or length {length} exceeds 4 GiB")]
pub struct IndexOverflow {
    /// The blob.
    pub blob: Id,
    /// Its pack.
    pub pack: Id,
    /// Offset as given.
    pub offset: u64,
    /// Length as given.
    pub length: u64,
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn of(&self, t: BlobType) -> &TypeIndex {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        }
    }

    fn of_mut(&mut self, t: BlobType) -> &mut TypeIndex {
        match t {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        }
    }

    fn pack_number(&mut self, pack: Id) -> u32 {
        if let Some(n) = self.pack_numbers.get(&pack) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    fn location(&self, e: &IndexEntry) -> Option<BlobLocation> {
        let pack = *self.packs.get(e.pack as usize)?;
        Some(BlobLocation {
            pack,
            offset: e.offset,
            length: e.length,
            uncompressed_length: (e.uncompressed_length != 0).then_some(e.uncompressed_length),
        })
    }

    /// Add one blob copy. Exact duplicates are ignored.
    pub fn add(
        &mut self,
        blob_type: BlobType,
        blob: Id,
        pack: Id,
        offset: u64,
        length: u64,
        uncompressed_length: Option<u64>,
    ) -> Result<(), IndexOverflow> {
        let e = self.entry(blob, pack, offset, length, uncompressed_length)?;
        self.of_mut(blob_type).add(e);
        Ok(())
    }

    /// Like [`MemoryIndex::add`], for loading many entries at once: no
    /// duplicate check per entry (one sort and merge in
    /// [`MemoryIndex::finish_bulk_load`] drops exact duplicates), and the
    /// entries are not found until `finish_bulk_load` is called.
    pub fn add_bulk(
        &mut self,
        blob_type: BlobType,
        blob: Id,
        pack: Id,
        offset: u64,
        length: u64,
        uncompressed_length: Option<u64>,
    ) -> Result<(), IndexOverflow> {
        let e = self.entry(blob, pack, offset, length, uncompressed_length)?;
        self.of_mut(blob_type).bulk.push(e);
        Ok(())
    }

    /// The compact entry of one blob copy (its pack numbered).
    fn entry(
        &mut self,
        blob: Id,
        pack: Id,
        offset: u64,
        length: u64,
        uncompressed_length: Option<u64>,
    ) -> Result<IndexEntry, IndexOverflow> {
        let overflow = || IndexOverflow {
            blob,
            pack,
            offset,
            length,
        };
        let offset32 = u32::try_from(offset).map_err(|_| overflow())?;
        let length32 = u32::try_from(length).map_err(|_| overflow())?;
        let ulen = u32::try_from(uncompressed_length.unwrap_or(0)).map_err(|_| overflow())?;
        Ok(IndexEntry {
            id: blob.0,
            pack: self.pack_number(pack),
            offset: offset32,
            length: length32,
            uncompressed_length: ulen,
        })
    }

    /// Sort everything added so far (call after bulk loading: entries from
    /// [`MemoryIndex::add_bulk`] are found only after it; those from `add`
    /// are found anyway, faster after it).
    pub fn finish_bulk_load(&mut self) {
        self.data.merge();
        self.tree.merge();
    }

    /// The first stored copy of a blob.
    pub fn lookup(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        let mut found = None;
        self.of(blob_type).for_each_copy(&id.0, |e| {
            if found.is_none() {
                found = self.location(e);
            }
        });
        found
    }

    /// All stored copies of a blob.
    pub fn lookup_all(&self, blob_type: BlobType, id: &Id) -> Vec<BlobLocation> {
        let mut out = Vec::new();
        self.of(blob_type).for_each_copy(&id.0, |e| {
            if let Some(l) = self.location(e) {
                out.push(l);
            }
        });
        out
    }

    /// True if at least one copy of the blob is known.
    pub fn has(&self, blob_type: BlobType, id: &Id) -> bool {
        self.of(blob_type).contains(&id.0)
    }

    /// Number of blob copies of one type.
    pub fn len(&self, blob_type: BlobType) -> usize {
        self.of(blob_type).len()
    }

    /// True when no blob is known.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0 && self.tree.len() == 0
    }

    /// All packs referenced by the index, in the order first seen.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// True if a blob of the index is in `pack`.
    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_numbers.contains_key(pack)
    }

    /// Every blob copy: `(type, blob id, location)`. Sorted by blob ID per type
    /// after [`MemoryIndex::finish_bulk_load`].
    pub fn for_each(&self, mut f: impl FnMut(BlobType, Id, BlobLocation)) {
        for (t, idx) in [(BlobType::Data, &self.data), (BlobType::Tree, &self.tree)] {
            for e in idx.sorted.iter().chain(idx.recent.values().flatten()) {
                if let Some(l) = self.location(e) {
                    f(t, Id(e.id), l);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        Id::hash(&n.to_le_bytes())
    }

    #[test]
    fn add_lookup_merge_and_duplicates() {
        let mut idx = MemoryIndex::new();
        let p1 = id(1_000_000);
        let p2 = id(1_000_001);
        for i in 0..10_000u32 {
            idx.add(BlobType::Data, id(i), p1, u64::from(i) * 10, 42, None)
                .unwrap();
        }
        idx.add(BlobType::Data, id(5), p2, 7, 50, Some(100))
            .unwrap();
        // exact duplicate is dropped
        idx.add(BlobType::Data, id(5), p2, 7, 50, Some(100))
            .unwrap();
        idx.add(BlobType::Tree, id(7), p2, 0, 33, None).unwrap();
        assert_eq!(idx.len(BlobType::Data), 10_001);
        let all = idx.lookup_all(BlobType::Data, &id(5));
        assert_eq!(all.len(), 2);
        idx.finish_bulk_load();
        assert_eq!(idx.len(BlobType::Data), 10_001);
        let l = idx.lookup(BlobType::Data, &id(9999)).unwrap();
        assert_eq!(
            (l.pack, l.offset, l.length, l.uncompressed_length),
            (p1, 99990, 42, None)
        );
        assert_eq!(idx.lookup_all(BlobType::Data, &id(5)).len(), 2);
        assert!(idx.has(BlobType::Tree, &id(7)));
        assert!(!idx.has(BlobType::Data, &id(7_000_000)));
        assert!(!idx.has(BlobType::Tree, &id(5)));
        assert_eq!(idx.packs(), &[p1, p2]);
        assert!(idx
            .add(BlobType::Data, id(1), p1, 1 << 33, 1, None)
            .is_err());
        assert_eq!(std::mem::size_of::<IndexEntry>(), 48);
    }

    #[test]
    fn directory_finds_every_entry_at_the_edges_and_skewed() {
        let pack = id(1);
        for n in [0usize, 1, 2, 3, 4, 5, 17, 1000, 20_000] {
            let mut idx = MemoryIndex::new();
            let mut ids: Vec<Id> = (0..n as u32).map(id).collect();
            // The extremes of the ID space, and a run sharing 4 leading bytes
            // (one directory slot holding many entries).
            if n > 0 {
                ids.push(Id([0; 32]));
                ids.push(Id([0xff; 32]));
                for i in 0..64u8 {
                    let mut b = [0x7f; 32];
                    b[31] = i;
                    ids.push(Id(b));
                }
            }
            for (i, b) in ids.iter().enumerate() {
                idx.add_bulk(BlobType::Data, *b, pack, i as u64, 40, None)
                    .unwrap();
            }
            idx.finish_bulk_load();
            for (i, b) in ids.iter().enumerate() {
                let l = idx.lookup(BlobType::Data, b).unwrap();
                assert_eq!(l.offset, i as u32, "n={n} i={i}");
            }
            let mut absent = [0x7f; 32];
            absent[31] = 200;
            assert!(!idx.has(BlobType::Data, &Id(absent)));
            assert!(!idx.has(BlobType::Data, &id(n as u32 + 1)));
            assert!(!idx.has(BlobType::Tree, &Id([0; 32])));
        }
    }
}
