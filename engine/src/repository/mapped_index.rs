//! The index cache: sorted fixed-size entries in local files, searched in
//! place (each lookup reads and checks the one or two pages it needs), so
//! that a command's memory does not grow with the repository.
//!
//! See docs/index.md for the design and why it protects what restic's
//! encrypted cache protects. In short:
//!
//! - A cache is a folder holding a `manifest` and immutable *segments*
//!   (`<nonce>.seg`). The manifest (encrypted and authenticated with the
//!   repository's master key, like restic's files) lists the segments and,
//!   for each, the index files whose blobs it holds. A segment holds exactly
//!   the blobs of its index files; those are content-addressed, so a segment
//!   stays true for as long as all of its index files are listed.
//! - Each entry is 48 bytes: the blob's *search key*, a keyed BLAKE3 hash of
//!   its type and ID (so blob IDs never appear, yet the entries sort and
//!   search like IDs do), then pack number, offset, length and uncompressed
//!   length, encrypted with an AES-256 keystream derived from the segment's
//!   random nonce and the entry's position. Pack IDs sit in a table at the
//!   end, encrypted the same way.
//! - The file is cut into 4096-byte pages: 4080 bytes of content and a
//!   16-byte keyed BLAKE3 tag over the segment nonce, the page number and
//!   the content. A page is checked whenever it is read, so a
//!   flipped byte, a truncated file, a page from another segment or a segment
//!   of another repository or key is detected and never trusted.
//! - A directory by the search key's leading bits (about 32 entries a slot)
//!   narrows a lookup to one or two pages.
//! - The index files a load finds uncovered become one new segment (a cold
//!   cache: all of them; see `build`); a segment is merged with the
//!   ones before it once they are smaller than 8x its size (a log-structured
//!   merge), so a command pays in proportion to what changed and the number
//!   of segments stays logarithmic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;
use restix_repo_format::crypto::Key;
use restix_repo_format::{BlobType, Id};

use super::index::{BlobLocation, IndexOverflow, MemoryIndex};

/// Bytes per page: the unit of checking (and the OS page size).
pub(crate) const PAGE: usize = 4096;
/// Bytes of a page's tag.
const TAG: usize = 16;
/// Bytes of content per page.
const PAYLOAD: usize = PAGE - TAG;
/// Bytes per entry: search key (32) and encrypted value (16).
const ENTRY: usize = 48;
const ENTRIES_PER_PAGE: u64 = (PAYLOAD / ENTRY) as u64;
const PACKS_PER_PAGE: u64 = (PAYLOAD / 32) as u64;
const SLOTS_PER_PAGE: u64 = (PAYLOAD / 4) as u64;
/// Entries per directory slot, on average.
const ENTRIES_PER_SLOT: u64 = 32;
const MAX_DIRECTORY_BITS: u32 = 26;
/// A group of newest segments is merged into one once the segment before
/// it holds less than this many times its entries.
const MERGE_FACTOR: u64 = 8;
/// Checked pages a segment keeps in memory (4 MiB): directory and pack
/// table pages stay, entry pages come and go.
const CACHED_PAGES: usize = 1024;
/// A segment file not in the manifest and older than this is left over
/// from an interrupted or overtaken process and is removed.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

const SEGMENT_MAGIC: &[u8; 8] = b"RXISEG01";
const MANIFEST_MAGIC: &[u8; 8] = b"RXIMAN01";
const MANIFEST: &str = "manifest";
/// Keystream domains: entry values and pack IDs.
const VALUES: u64 = 0;
const PACK_IDS: u64 = 1;

/// Why a cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error("index cache {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is damaged, foreign or does not match the manifest.
    #[error("index cache {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An index entry does not fit the compact layout.
    #[error(transparent)]
    Overflow(#[from] IndexOverflow),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> CacheError {
    CacheError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A page of a mapped segment failed its check (or the segment's structure
/// is inconsistent): the whole cache is then distrusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("index cache page {page} failed its check")]
pub struct Damaged {
    /// The page.
    pub page: u64,
}

/// The keys of a repository's cache, derived from its master key and ID.
#[derive(Clone)]
pub(crate) struct CacheKeys {
    search: [u8; 32],
    value: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for CacheKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKeys { .. }")
    }
}

impl CacheKeys {
    /// Keys for the repository `repo_id` opened with `key`: another key or
    /// another repository gives other keys, so its cache fails every check.
    pub(crate) fn derive(key: &Key, repo_id: &str) -> CacheKeys {
        let mut material = Vec::with_capacity(64 + repo_id.len());
        material.extend_from_slice(&key.encrypt);
        material.extend_from_slice(&key.mac_k);
        material.extend_from_slice(&key.mac_r);
        material.extend_from_slice(repo_id.as_bytes());
        CacheKeys {
            search: blake3::derive_key("restix 2026 index cache: blob search key", &material),
            value: blake3::derive_key("restix 2026 index cache: value encryption key", &material),
            mac: blake3::derive_key("restix 2026 index cache: page tag key", &material),
        }
    }

    /// The search key of a blob: keyed BLAKE3 of its type and ID.
    pub(crate) fn search_key(&self, blob_type: BlobType, id: &Id) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.search);
        h.update(&[match blob_type {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }]);
        h.update(&id.0);
        *h.finalize().as_bytes()
    }

    fn page_tag(&self, nonce: &[u8; 16], page: u64, payload: &[u8]) -> [u8; TAG] {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(nonce);
        h.update(&page.to_le_bytes());
        h.update(payload);
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&h.finalize().as_bytes()[..TAG]);
        tag
    }

    fn segment_cipher(&self, nonce: &[u8; 16]) -> Aes256 {
        let key = blake3::keyed_hash(&self.value, nonce);
        Aes256::new(GenericArray::from_slice(key.as_bytes()))
    }
}

/// 16 bytes of keystream for `index` in `domain`: AES-256 of the counter.
fn keystream(cipher: &Aes256, domain: u64, index: u64) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&domain.to_be_bytes());
    block[8..].copy_from_slice(&index.to_be_bytes());
    let mut block = GenericArray::from(block);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// The keystream of blocks `first..first + n` in `domain` into `out`, as
/// [`keystream`] gives them one by one, but encrypted many blocks at a
/// time (AES-NI pipelines eight: a cold build encrypts tens of millions).
fn fill_keystream(cipher: &Aes256, domain: u64, first: u64, n: usize, out: &mut Vec<aes::Block>) {
    out.clear();
    out.extend((first..first + n as u64).map(|index| {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&domain.to_be_bytes());
        block[8..].copy_from_slice(&index.to_be_bytes());
        aes::Block::from(block)
    }));
    cipher.encrypt_blocks(out);
}

fn xor16(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Where one blob copy is, with the pack numbered within its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Value {
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed: u32,
}

impl Value {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (i, v) in [self.pack, self.offset, self.length, self.uncompressed]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8; 16]) -> Value {
        let f = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Value {
            pack: f(0),
            offset: f(4),
            length: f(8),
            uncompressed: f(12),
        }
    }

    fn location(self, pack: Id) -> BlobLocation {
        BlobLocation {
            pack,
            offset: self.offset,
            length: self.length,
            uncompressed_length: (self.uncompressed != 0).then_some(self.uncompressed),
        }
    }
}

/// Where the parts of a segment are, from its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    entries: u64,
    packs: u64,
    bits: u32,
}

impl Layout {
    fn slots(&self) -> u64 {
        (1u64 << self.bits) + 1
    }
    fn entry_pages(&self) -> u64 {
        self.entries.div_ceil(ENTRIES_PER_PAGE)
    }
    fn dir_start(&self) -> u64 {
        1 + self.entry_pages()
    }
    fn pack_start(&self) -> u64 {
        self.dir_start() + self.slots().div_ceil(SLOTS_PER_PAGE)
    }
    fn pages(&self) -> u64 {
        self.pack_start() + self.packs.div_ceil(PACKS_PER_PAGE)
    }
}

/// Directory bits for `entries` entries (about 32 a slot).
fn directory_bits(entries: u64) -> u32 {
    let per = entries / ENTRIES_PER_SLOT;
    if per <= 1 {
        0
    } else {
        (63 - per.leading_zeros()).min(MAX_DIRECTORY_BITS)
    }
}

/// The directory slot of a search key: its leading `bits` bits.
fn slot(key: &[u8; 32], bits: u32) -> u64 {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(&key[..8]);
    match bits {
        0 => 0,
        b => u64::from_be_bytes(lead) >> (64 - b),
    }
}

/// What the manifest records of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    /// Random; names the file and keys its values.
    pub(crate) nonce: [u8; 16],
    /// Entries (blob copies).
    pub(crate) entries: u64,
    /// Distinct packs.
    pub(crate) packs: u64,
    /// The index files whose blobs it holds, sorted.
    pub(crate) files: Vec<Id>,
}

impl SegmentMeta {
    fn file_name(&self) -> String {
        let hex: String = self.nonce.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.seg")
    }
}

/// Checks a segment's header page against its manifest record; returns
/// its layout.
fn check_header(
    keys: &CacheKeys,
    meta: &SegmentMeta,
    page: &[u8],
    file_len: u64,
    path: &Path,
) -> Result<Layout, CacheError> {
    let bad = |reason: &str| invalid(path, reason);
    let (payload, tag) = page.split_at(PAYLOAD);
    if keys.page_tag(&meta.nonce, 0, payload) != tag {
        return Err(bad("header fails its check (damaged, or another key's)"));
    }
    let u64_at = |at: usize| {
        payload
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(u64::MAX)
    };
    if payload.get(..8) != Some(&SEGMENT_MAGIC[..]) || payload.get(8..24) != Some(&meta.nonce[..]) {
        return Err(bad("not the segment the manifest names"));
    }
    let bits = payload
        .get(40..44)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(u32::MAX);
    let layout = Layout {
        entries: u64_at(24),
        packs: u64_at(32),
        bits,
    };
    if layout.entries != meta.entries
        || layout.packs != meta.packs
        || bits > MAX_DIRECTORY_BITS
        || layout.entries >= u64::from(u32::MAX)
        || layout.packs > u64::from(u32::MAX)
    {
        return Err(bad("counts differ from the manifest's"));
    }
    if layout.pages().checked_mul(PAGE as u64) != Some(file_len) {
        return Err(bad("truncated or extended"));
    }
    Ok(layout)
}

/// Checked pages of a segment, the oldest dropped first.
#[derive(Debug, Default)]
struct PageCache {
    pages: HashMap<u64, Arc<[u8]>>,
    order: VecDeque<u64>,
}

/// One segment, searched in place: the pages a lookup needs are read
/// (`pread`) and checked, and a few of them kept.
///
/// Not memory-mapped, by measurement: on Linux 6.x a read fault on a
/// mapped file maps the whole page-cache folio around the page (about
/// 750 KiB per touched page was measured on the bench machine, whatever
/// `madvise` says), so a small backup's few thousand lookups made most of
/// a 200 MB segment resident. Reading the 4 KiB pages themselves keeps the
/// process's memory at what the lookups need; the file stays in the page
/// cache, shared and reclaimable, not in the process.
pub(crate) struct Segment {
    file: File,
    layout: Layout,
    nonce: [u8; 16],
    keys: CacheKeys,
    cipher: Aes256,
    cache: Mutex<PageCache>,
    capacity: usize,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("entries", &self.layout.entries)
            .field("packs", &self.layout.packs)
            .finish_non_exhaustive()
    }
}

impl Segment {
    fn open(dir: &Path, keys: &CacheKeys, meta: &SegmentMeta) -> Result<Segment, CacheError> {
        let path = dir.join(meta.file_name());
        let file = File::open(&path).map_err(io_error(&path))?;
        let len = file.metadata().map_err(io_error(&path))?.len();
        let mut header = vec![0u8; PAGE];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| invalid(&path, "truncated"))?;
        let layout = check_header(keys, meta, &header, len, &path)?;
        Ok(Segment {
            file,
            layout,
            nonce: meta.nonce,
            keys: keys.clone(),
            cipher: keys.segment_cipher(&meta.nonce),
            cache: Mutex::new(PageCache::default()),
            capacity: CACHED_PAGES.min(usize::try_from(layout.pages()).unwrap_or(CACHED_PAGES)),
        })
    }

    /// The content of page `page`, read and checked, not kept.
    fn read_page(&self, page: u64) -> Result<Vec<u8>, Damaged> {
        let damaged = Damaged { page };
        if page >= self.layout.pages() {
            return Err(damaged);
        }
        let mut bytes = vec![0u8; PAGE];
        // A read error or a file cut short is damage like a wrong tag.
        self.file
            .read_exact_at(&mut bytes, page * PAGE as u64)
            .map_err(|_| damaged)?;
        let (payload, tag) = bytes.split_at(PAYLOAD);
        if self.keys.page_tag(&self.nonce, page, payload) != tag {
            return Err(damaged);
        }
        bytes.truncate(PAYLOAD);
        Ok(bytes)
    }

    /// The content of page `page`, read and checked (or kept from before).
    fn payload(&self, page: u64) -> Result<Arc<[u8]>, Damaged> {
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = lock().pages.get(&page) {
            return Ok(Arc::clone(p));
        }
        let checked: Arc<[u8]> = self.read_page(page)?.into();
        let mut cache = lock();
        if cache.pages.insert(page, Arc::clone(&checked)).is_none() {
            cache.order.push_back(page);
        }
        while cache.order.len() > self.capacity {
            if let Some(old) = cache.order.pop_front() {
                cache.pages.remove(&old);
            }
        }
        Ok(checked)
    }

    /// Search key and encrypted value of entry `i`.
    fn entry(&self, i: u64) -> Result<([u8; 32], [u8; 16]), Damaged> {
        let page = 1 + i / ENTRIES_PER_PAGE;
        let at = ((i % ENTRIES_PER_PAGE) as usize) * ENTRY;
        let payload = self.payload(page)?;
        let bytes = payload.get(at..at + ENTRY).ok_or(Damaged { page })?;
        let (key, value) = bytes.split_at(32);
        let key: [u8; 32] = key.try_into().map_err(|_| Damaged { page })?;
        let value: [u8; 16] = value.try_into().map_err(|_| Damaged { page })?;
        Ok((key, value))
    }

    fn slot_start(&self, slot: u64) -> Result<u64, Damaged> {
        let page = self.layout.dir_start() + slot / SLOTS_PER_PAGE;
        let at = ((slot % SLOTS_PER_PAGE) as usize) * 4;
        let payload = self.payload(page)?;
        let b = payload.get(at..at + 4).ok_or(Damaged { page })?;
        Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn pack_id(&self, n: u32, page_of_entry: u64) -> Result<Id, Damaged> {
        let n = u64::from(n);
        if n >= self.layout.packs {
            return Err(Damaged {
                page: page_of_entry,
            });
        }
        let page = self.layout.pack_start() + n / PACKS_PER_PAGE;
        let payload = self.payload(page)?;
        self.decrypt_pack_id(n, &payload, page)
    }

    /// Pack number `n` from its page of the pack table.
    fn decrypt_pack_id(&self, n: u64, payload: &[u8], page: u64) -> Result<Id, Damaged> {
        let at = ((n % PACKS_PER_PAGE) as usize) * 32;
        let b = payload.get(at..at + 32).ok_or(Damaged { page })?;
        let mut id = [0u8; 32];
        id.copy_from_slice(b);
        for half in 0..2u64 {
            let ks = keystream(&self.cipher, PACK_IDS, 2 * n + half);
            let h = half as usize * 16;
            for (x, k) in id[h..h + 16].iter_mut().zip(ks) {
                *x ^= k;
            }
        }
        Ok(Id(id))
    }

    /// Removes from `packs` every pack of this segment's pack table, until
    /// `packs` is empty. The table's pages are read and checked one at a
    /// time and not kept (they would push the lookups' pages out).
    fn drop_listed_packs(&self, packs: &mut HashSet<Id>) -> Result<(), Damaged> {
        let mut n = 0;
        while n < self.layout.packs && !packs.is_empty() {
            let page = self.layout.pack_start() + n / PACKS_PER_PAGE;
            let payload = self.read_page(page)?;
            let last = (n - n % PACKS_PER_PAGE + PACKS_PER_PAGE).min(self.layout.packs);
            while n < last {
                packs.remove(&self.decrypt_pack_id(n, &payload, page)?);
                n += 1;
            }
        }
        Ok(())
    }

    /// Calls `f` with every copy of the blob whose search key is `key`
    /// until it returns false.
    fn copies(
        &self,
        key: &[u8; 32],
        f: &mut dyn FnMut(BlobLocation) -> bool,
    ) -> Result<bool, Damaged> {
        if self.layout.entries == 0 {
            return Ok(true);
        }
        let s = slot(key, self.layout.bits);
        let (mut lo, end) = (self.slot_start(s)?, self.slot_start(s + 1)?);
        if lo > end || end > self.layout.entries {
            return Err(Damaged {
                page: self.layout.dir_start() + s / SLOTS_PER_PAGE,
            });
        }
        let mut hi = end;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 < *key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < end {
            let (k, mut value) = self.entry(i)?;
            if k != *key {
                break;
            }
            xor16(&mut value, &keystream(&self.cipher, VALUES, i));
            let v = Value::from_bytes(&value);
            let pack = self.pack_id(v.pack, 1 + i / ENTRIES_PER_PAGE)?;
            if !f(v.location(pack)) {
                return Ok(false);
            }
            i += 1;
        }
        Ok(true)
    }
}

/// The mapped segments of one cache: the repository's index as of the
/// index files they cover.
#[derive(Debug)]
pub(crate) struct MappedIndex {
    keys: CacheKeys,
    segments: Vec<Segment>,
}

impl MappedIndex {
    /// Calls `f` with every copy of a blob until it returns false.
    pub(crate) fn copies(
        &self,
        blob_type: BlobType,
        id: &Id,
        mut f: impl FnMut(BlobLocation) -> bool,
    ) -> Result<(), Damaged> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let key = self.keys.search_key(blob_type, id);
        // Newest first: a blob just stored is found in the smallest segment.
        for s in self.segments.iter().rev() {
            if !s.copies(&key, &mut f)? {
                break;
            }
        }
        Ok(())
    }

    /// Removes from `packs` every pack the segments list (reading their
    /// pack tables, 32 bytes a pack; nothing is kept in memory).
    pub(crate) fn drop_listed_packs(&self, packs: &mut HashSet<Id>) -> Result<(), Damaged> {
        for s in &self.segments {
            if packs.is_empty() {
                break;
            }
            s.drop_listed_packs(packs)?;
        }
        Ok(())
    }

    /// Entries over all segments.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.layout.entries).sum()
    }
}

/// The index a repository searches: blobs in memory (added by this process,
/// or everything when no cache is used) and the mapped cache.
#[derive(Debug, Default)]
pub(crate) struct IndexView {
    /// Blobs added by this process (and, without a cache, all blobs).
    pub(crate) memory: MemoryIndex,
    /// The cache, when one is used and has not failed a check.
    pub(crate) mapped: Option<MappedIndex>,
}

impl IndexView {
    /// True if at least one copy of the blob is known.
    pub(crate) fn has(&self, blob_type: BlobType, id: &Id) -> Result<bool, Damaged> {
        if self.memory.has(blob_type, id) {
            return Ok(true);
        }
        let mut found = false;
        if let Some(m) = &self.mapped {
            m.copies(blob_type, id, |_| {
                found = true;
                false
            })?;
        }
        Ok(found)
    }

    /// The first copy found.
    pub(crate) fn lookup(
        &self,
        blob_type: BlobType,
        id: &Id,
    ) -> Result<Option<BlobLocation>, Damaged> {
        if let Some(l) = self.memory.lookup(blob_type, id) {
            return Ok(Some(l));
        }
        let mut found = None;
        if let Some(m) = &self.mapped {
            m.copies(blob_type, id, |l| {
                found = Some(l);
                false
            })?;
        }
        Ok(found)
    }

    /// Removes from `packs` every pack the index lists.
    pub(crate) fn drop_listed_packs(&self, packs: &mut HashSet<Id>) -> Result<(), Damaged> {
        packs.retain(|p| !self.memory.has_pack(p));
        match &self.mapped {
            Some(m) => m.drop_listed_packs(packs),
            None => Ok(()),
        }
    }

    /// Every copy (exact duplicates once).
    pub(crate) fn lookup_all(
        &self,
        blob_type: BlobType,
        id: &Id,
    ) -> Result<Vec<BlobLocation>, Damaged> {
        let mut all = self.memory.lookup_all(blob_type, id);
        if let Some(m) = &self.mapped {
            m.copies(blob_type, id, |l| {
                if !all.contains(&l) {
                    all.push(l);
                }
                true
            })?;
        }
        Ok(all)
    }
}

/// Writes one segment from entries given in search-key order.
struct SegmentWriter {
    /// `None` once finished.
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    keys: CacheKeys,
    nonce: [u8; 16],
    cipher: Aes256,
    bits: u32,
    /// Directory so far: the first entry of each slot.
    dir: Vec<u32>,
    entries: u64,
    page: Vec<u8>,
    page_no: u64,
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// True when the caller numbers the packs (the table is given up front).
    numbered: bool,
    /// Keystream of the entry page being sealed.
    stream: Vec<aes::Block>,
}

impl SegmentWriter {
    /// A writer for at most `max_entries` entries.
    fn create(dir: &Path, keys: &CacheKeys, max_entries: u64) -> Result<Self, CacheError> {
        let mut nonce = [0u8; 16];
        restix_repo_format::random_bytes(&mut nonce);
        let probe = SegmentMeta {
            nonce,
            entries: 0,
            packs: 0,
            files: Vec::new(),
        };
        let path = dir.join(probe.file_name());
        let tmp = path.with_extension(format!("seg.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(io_error(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // The header is written last, over this placeholder.
        out.write_all(&[0u8; PAGE]).map_err(io_error(&tmp))?;
        Ok(SegmentWriter {
            out: Some(out),
            path,
            keys: keys.clone(),
            cipher: keys.segment_cipher(&nonce),
            nonce,
            tmp,
            bits: directory_bits(max_entries),
            dir: Vec::new(),
            entries: 0,
            page: Vec::with_capacity(PAYLOAD),
            page_no: 1,
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            numbered: false,
            stream: Vec::with_capacity(ENTRIES_PER_PAGE as usize),
        })
    }

    /// A writer whose entries name their pack by its number in `packs`,
    /// which becomes the segment's pack table as it is.
    fn create_numbered(
        dir: &Path,
        keys: &CacheKeys,
        max_entries: u64,
        packs: Vec<Id>,
    ) -> Result<Self, CacheError> {
        let mut w = SegmentWriter::create(dir, keys, max_entries)?;
        w.packs = packs;
        w.numbered = true;
        Ok(w)
    }

    /// Encrypts the values of the entry page being written, then writes it.
    fn write_entry_page(&mut self) -> Result<(), CacheError> {
        let n = self.page.len() / ENTRY;
        let first = self.entries - n as u64;
        fill_keystream(&self.cipher, VALUES, first, n, &mut self.stream);
        for (entry, ks) in self.page.chunks_exact_mut(ENTRY).zip(&self.stream) {
            for (x, k) in entry[32..].iter_mut().zip(ks) {
                *x ^= k;
            }
        }
        self.write_page()
    }

    fn write_page(&mut self) -> Result<(), CacheError> {
        self.page.resize(PAYLOAD, 0);
        let tag = self.keys.page_tag(&self.nonce, self.page_no, &self.page);
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| invalid(&self.tmp, "written after finishing"))?;
        out.write_all(&self.page)
            .and_then(|()| out.write_all(&tag))
            .map_err(io_error(&self.tmp))?;
        self.page.clear();
        self.page_no += 1;
        Ok(())
    }

    /// Appends one entry; keys must come in ascending order.
    fn push(&mut self, key: &[u8; 32], pack: Id, value: Value) -> Result<(), CacheError> {
        if self.numbered {
            return Err(invalid(&self.tmp, "pack named by ID in a numbered segment"));
        }
        let next = self.packs.len() as u32;
        let pack = *self.pack_numbers.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            next
        });
        self.push_numbered(key, Value { pack, ..value })
    }

    /// Appends one entry whose `pack` is already its number in the table;
    /// keys must come in ascending order.
    fn push_numbered(&mut self, key: &[u8; 32], value: Value) -> Result<(), CacheError> {
        if self.entries >= u64::from(u32::MAX) - 1 {
            return Err(invalid(&self.tmp, "more than 2^32 entries"));
        }
        if value.pack as usize >= self.packs.len() {
            return Err(invalid(&self.tmp, "pack number out of range"));
        }
        let s = slot(key, self.bits);
        while self.dir.len() as u64 <= s {
            self.dir.push(self.entries as u32);
        }
        self.page.extend_from_slice(key);
        // Encrypted a page at a time (`write_entry_page`).
        self.page.extend_from_slice(&value.to_bytes());
        self.entries += 1;
        if self.page.len() == ENTRIES_PER_PAGE as usize * ENTRY {
            self.write_entry_page()?;
        }
        Ok(())
    }

    /// Writes directory, pack table and header, then renames the file into
    /// place. `None` (and no file) when no entry was pushed.
    fn finish(mut self, files: Vec<Id>) -> Result<Option<SegmentMeta>, CacheError> {
        if self.entries == 0 {
            // Drop removes the temporary file.
            return Ok(None);
        }
        if !self.page.is_empty() {
            self.write_entry_page()?;
        }
        let layout = Layout {
            entries: self.entries,
            packs: self.packs.len() as u64,
            bits: self.bits,
        };
        while (self.dir.len() as u64) < layout.slots() {
            self.dir.push(self.entries as u32);
        }
        let dir = std::mem::take(&mut self.dir);
        for chunk in dir.chunks(SLOTS_PER_PAGE as usize) {
            for v in chunk {
                self.page.extend_from_slice(&v.to_le_bytes());
            }
            self.write_page()?;
        }
        let packs = std::mem::take(&mut self.packs);
        let mut stream = Vec::with_capacity(2 * PACKS_PER_PAGE as usize);
        for (chunk_no, chunk) in packs.chunks(PACKS_PER_PAGE as usize).enumerate() {
            let first = (chunk_no * PACKS_PER_PAGE as usize) as u64;
            fill_keystream(
                &self.cipher,
                PACK_IDS,
                2 * first,
                2 * chunk.len(),
                &mut stream,
            );
            for (id, ks) in chunk.iter().zip(stream.chunks_exact(2)) {
                for (half, k) in id.0.chunks_exact(16).zip(ks) {
                    self.page.extend(half.iter().zip(k).map(|(x, k)| x ^ k));
                }
            }
            self.write_page()?;
        }
        debug_assert_eq!(self.page_no, layout.pages());
        let mut header = Vec::with_capacity(PAYLOAD);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&self.nonce);
        header.extend_from_slice(&layout.entries.to_le_bytes());
        header.extend_from_slice(&layout.packs.to_le_bytes());
        header.extend_from_slice(&layout.bits.to_le_bytes());
        header.resize(PAYLOAD, 0);
        let tag = self.keys.page_tag(&self.nonce, 0, &header);
        let tmp = self.tmp.clone();
        let mut file = self
            .out
            .take()
            .ok_or_else(|| invalid(&tmp, "finished twice"))?
            .into_inner()
            .map_err(|e| io_error(&tmp)(e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .and_then(|()| file.write_all(&tag))
            .map_err(io_error(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io_error(&self.path))?;
        let mut files = files;
        files.sort();
        files.dedup();
        Ok(Some(SegmentMeta {
            nonce: self.nonce,
            entries: layout.entries,
            packs: layout.packs,
            files,
        }))
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        // Left unfinished (an error, or empty): its temporary file goes.
        if self.out.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a segment front to back with plain reads (no mapping: a merge
/// reads whole segments and must not make them resident), checking every
/// page.
struct SegmentScan {
    file: File,
    path: PathBuf,
    keys: CacheKeys,
    nonce: [u8; 16],
    cipher: Aes256,
    layout: Layout,
    packs: Vec<Id>,
    buf: Vec<u8>,
    /// First page held in `buf`.
    buf_page: u64,
    /// The checked content of the page being read.
    current: Vec<u8>,
    current_page: u64,
    next: u64,
}

/// Pages read at once by a scan.
const SCAN_PAGES: u64 = 256;

impl SegmentScan {
    fn open(dir: &Path, keys: &CacheKeys, meta: &SegmentMeta) -> Result<SegmentScan, CacheError> {
        let path = dir.join(meta.file_name());
        let file = File::open(&path).map_err(io_error(&path))?;
        let len = file.metadata().map_err(io_error(&path))?.len();
        let mut header = vec![0u8; PAGE];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| invalid(&path, "truncated"))?;
        let layout = check_header(keys, meta, &header, len, &path)?;
        let mut scan = SegmentScan {
            file,
            keys: keys.clone(),
            nonce: meta.nonce,
            cipher: keys.segment_cipher(&meta.nonce),
            layout,
            packs: Vec::new(),
            buf: Vec::new(),
            buf_page: 0,
            current: Vec::new(),
            current_page: 0,
            next: 0,
            path,
        };
        let mut packs = Vec::with_capacity(usize::try_from(layout.packs).unwrap_or(0));
        let pack_pages = layout.pages() - layout.pack_start();
        for p in 0..pack_pages {
            let page = layout.pack_start() + p;
            let payload = scan.read_page(page)?;
            let in_page = (layout.packs - p * PACKS_PER_PAGE).min(PACKS_PER_PAGE);
            for i in 0..in_page {
                let n = p * PACKS_PER_PAGE + i;
                let at = i as usize * 32;
                let mut id = [0u8; 32];
                id.copy_from_slice(payload.get(at..at + 32).unwrap_or(&[0; 32]));
                for half in 0..2u64 {
                    let ks = keystream(&scan.cipher, PACK_IDS, 2 * n + half);
                    let h = half as usize * 16;
                    for (x, k) in id[h..h + 16].iter_mut().zip(ks) {
                        *x ^= k;
                    }
                }
                packs.push(Id(id));
            }
        }
        scan.packs = packs;
        Ok(scan)
    }

    /// One page's content, read (with the pages after it) and checked.
    fn read_page(&mut self, page: u64) -> Result<Vec<u8>, CacheError> {
        let held = self.buf.len() as u64 / PAGE as u64;
        if page < self.buf_page || page >= self.buf_page + held {
            let count = SCAN_PAGES.min(self.layout.pages() - page);
            self.buf.resize(count as usize * PAGE, 0);
            self.file
                .read_exact_at(&mut self.buf, page * PAGE as u64)
                .map_err(|_| invalid(&self.path, "truncated"))?;
            self.buf_page = page;
        }
        let at = ((page - self.buf_page) as usize) * PAGE;
        let bytes = self
            .buf
            .get(at..at + PAGE)
            .ok_or_else(|| invalid(&self.path, "truncated"))?;
        let (payload, tag) = bytes.split_at(PAYLOAD);
        if self.keys.page_tag(&self.nonce, page, payload) != tag {
            return Err(invalid(&self.path, format!("page {page} fails its check")));
        }
        Ok(payload.to_vec())
    }

    /// The next entry: search key, pack ID and value.
    fn next_entry(&mut self) -> Result<Option<([u8; 32], Id, Value)>, CacheError> {
        if self.next >= self.layout.entries {
            return Ok(None);
        }
        let i = self.next;
        let page = 1 + i / ENTRIES_PER_PAGE;
        if self.current_page != page {
            self.current = self.read_page(page)?;
            self.current_page = page;
        }
        let at = ((i % ENTRIES_PER_PAGE) as usize) * ENTRY;
        let bytes = self
            .current
            .get(at..at + ENTRY)
            .ok_or_else(|| invalid(&self.path, "truncated"))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let mut value = [0u8; 16];
        value.copy_from_slice(&bytes[32..]);
        xor16(&mut value, &keystream(&self.cipher, VALUES, i));
        let v = Value::from_bytes(&value);
        let pack = *self
            .packs
            .get(v.pack as usize)
            .ok_or_else(|| invalid(&self.path, "pack number out of range"))?;
        self.next += 1;
        // The writer numbers packs anew.
        Ok(Some((key, pack, Value { pack: 0, ..v })))
    }
}

/// Blobs saved by this process, gathered in memory for one new segment
/// (index files are built into segments by [`build::BulkBuild`]).
#[derive(Debug)]
pub(crate) struct Batch {
    keys: CacheKeys,
    entries: Vec<([u8; 32], Value)>,
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// The index files the batch holds.
    pub(crate) files: Vec<Id>,
}

impl Batch {
    /// An empty batch for the cache with `keys`.
    pub(crate) fn new(keys: &CacheKeys) -> Batch {
        Batch {
            keys: keys.clone(),
            entries: Vec::new(),
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            files: Vec::new(),
        }
    }

    /// Adds one blob copy.
    pub(crate) fn add(
        &mut self,
        blob_type: BlobType,
        blob: Id,
        pack: Id,
        offset: u64,
        length: u64,
        uncompressed_length: Option<u64>,
    ) -> Result<(), IndexOverflow> {
        let overflow = || IndexOverflow {
            blob,
            pack,
            offset,
            length,
        };
        let next = self.packs.len() as u32;
        let pack_no = *self.pack_numbers.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            next
        });
        let value = Value {
            pack: pack_no,
            offset: u32::try_from(offset).map_err(|_| overflow())?,
            length: u32::try_from(length).map_err(|_| overflow())?,
            uncompressed: u32::try_from(uncompressed_length.unwrap_or(0))
                .map_err(|_| overflow())?,
        };
        self.entries
            .push((self.keys.search_key(blob_type, &blob), value));
        Ok(())
    }
}

/// The manifest: the segments of a cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Oldest (largest) first.
    pub(crate) segments: Vec<SegmentMeta>,
}

impl Manifest {
    fn encode(&self, repo_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MANIFEST_MAGIC);
        let id = repo_id.as_bytes();
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.nonce);
            out.extend_from_slice(&s.entries.to_le_bytes());
            out.extend_from_slice(&s.packs.to_le_bytes());
            out.extend_from_slice(&(s.files.len() as u32).to_le_bytes());
            for f in &s.files {
                out.extend_from_slice(&f.0);
            }
        }
        out
    }

    fn decode(bytes: &[u8], repo_id: &str) -> Option<Manifest> {
        let mut r = Reader(bytes);
        if r.take(8)? != MANIFEST_MAGIC {
            return None;
        }
        let id_len = r.u32()? as usize;
        if r.take(id_len)? != repo_id.as_bytes() {
            return None;
        }
        let count = r.u32()?;
        let mut segments = Vec::new();
        for _ in 0..count {
            let nonce: [u8; 16] = r.take(16)?.try_into().ok()?;
            let entries = r.u64()?;
            let packs = r.u64()?;
            let n = r.u32()? as usize;
            let files = r
                .take(n.checked_mul(32)?)?
                .chunks_exact(32)
                .map(|c| c.try_into().ok().map(Id))
                .collect::<Option<Vec<Id>>>()?;
            segments.push(SegmentMeta {
                nonce,
                entries,
                packs,
                files,
            });
        }
        r.0.is_empty().then_some(Manifest { segments })
    }
}

/// Reads little-endian fields, refusing to run past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The first segment of the newest group to merge into one, if any: the
/// newest segments are merged while the one before them holds less than
/// [`MERGE_FACTOR`] times their entries.
pub(crate) fn merge_start(sizes: &[u64]) -> Option<usize> {
    let mut j = sizes.len().checked_sub(1)?;
    let mut acc = *sizes.get(j)?;
    while j > 0 {
        let before = *sizes.get(j - 1)?;
        if before >= acc.saturating_mul(MERGE_FACTOR) {
            break;
        }
        j -= 1;
        acc = acc.saturating_add(before);
    }
    (sizes.len() - j >= 2).then_some(j)
}

/// A repository's cache folder.
pub(crate) struct CacheDir {
    dir: PathBuf,
    keys: CacheKeys,
    key: Key,
    repo_id: String,
}

impl std::fmt::Debug for CacheDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CacheDir {
    /// The cache of repository `repo_id` (opened with `key`) in `dir`.
    pub(crate) fn new(dir: PathBuf, key: &Key, repo_id: &str) -> CacheDir {
        CacheDir {
            dir,
            keys: CacheKeys::derive(key, repo_id),
            key: key.clone(),
            repo_id: repo_id.to_string(),
        }
    }

    /// An empty batch of blobs for a new segment.
    pub(crate) fn batch(&self) -> Batch {
        Batch::new(&self.keys)
    }

    /// The manifest, if there is one that decrypts and belongs to this
    /// repository.
    pub(crate) fn read_manifest(&self) -> Option<Manifest> {
        let sealed = std::fs::read(self.dir.join(MANIFEST)).ok()?;
        let plain = self.key.decrypt(&sealed).ok()?;
        Manifest::decode(&plain, &self.repo_id)
    }

    /// The manifest as [`CacheDir::read_manifest`] gives it; a manifest
    /// that is there but damaged or foreign is removed with every segment
    /// (nothing of that cache is trusted).
    pub(crate) fn read_or_discard_manifest(&self) -> Manifest {
        if let Some(m) = self.read_manifest() {
            return m;
        }
        if self.dir.join(MANIFEST).exists() {
            self.discard();
        }
        Manifest::default()
    }

    /// Removes the manifest and every segment file.
    pub(crate) fn discard(&self) {
        self.remove_manifest();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".seg") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Creates the folder (replacing a file of an older cache format there).
    pub(crate) fn create(&self) -> Result<(), CacheError> {
        if self.dir.is_file() {
            std::fs::remove_file(&self.dir).map_err(io_error(&self.dir))?;
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))
    }

    /// Replaces the manifest (temporary name, then rename).
    pub(crate) fn write_manifest(&self, m: &Manifest) -> Result<(), CacheError> {
        let path = self.dir.join(MANIFEST);
        let tmp = self
            .dir
            .join(format!("{MANIFEST}.tmp-{}", std::process::id()));
        let sealed = self.key.encrypt(&m.encode(&self.repo_id));
        let written = std::fs::write(&tmp, sealed).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(&path)(e));
        }
        Ok(())
    }

    /// Removes the manifest: the next load builds the cache anew.
    pub(crate) fn remove_manifest(&self) {
        let _ = std::fs::remove_file(self.dir.join(MANIFEST));
    }

    /// Maps a segment, checking its header against `meta`.
    pub(crate) fn open(&self, meta: &SegmentMeta) -> Result<Segment, CacheError> {
        Segment::open(&self.dir, &self.keys, meta)
    }

    /// The index given by mapped segments.
    pub(crate) fn mapped(&self, segments: Vec<Segment>) -> MappedIndex {
        MappedIndex {
            keys: self.keys.clone(),
            segments,
        }
    }

    /// Removes a segment's file.
    pub(crate) fn remove_segment(&self, meta: &SegmentMeta) {
        let _ = std::fs::remove_file(self.dir.join(meta.file_name()));
    }

    /// Writes a batch as a new segment covering `batch.files`; `None` when
    /// it holds no blob.
    pub(crate) fn write_batch(&self, batch: Batch) -> Result<Option<SegmentMeta>, CacheError> {
        let Batch {
            mut entries,
            packs,
            files,
            ..
        } = batch;
        let pack_of = |v: &Value| packs.get(v.pack as usize).copied().unwrap_or(Id::NULL);
        entries.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| pack_of(&a.1).cmp(&pack_of(&b.1)))
                .then_with(|| a.1.cmp(&b.1))
        });
        entries.dedup();
        let mut w = SegmentWriter::create(&self.dir, &self.keys, entries.len() as u64)?;
        for (key, value) in &entries {
            w.push(key, pack_of(value), *value)?;
        }
        drop(entries);
        w.finish(files)
    }

    /// Merges segments into one (streaming: memory for the pack table and
    /// the directory only); exact duplicates are dropped.
    pub(crate) fn merge(&self, metas: &[SegmentMeta]) -> Result<Option<SegmentMeta>, CacheError> {
        let mut scans = metas
            .iter()
            .map(|m| SegmentScan::open(&self.dir, &self.keys, m))
            .collect::<Result<Vec<_>, _>>()?;
        let total: u64 = metas.iter().map(|m| m.entries).sum();
        let mut w = SegmentWriter::create(&self.dir, &self.keys, total)?;
        let mut heads = Vec::with_capacity(scans.len());
        for s in &mut scans {
            heads.push(s.next_entry()?);
        }
        let mut group: Vec<(Id, Value)> = Vec::new();
        while let Some(key) = heads.iter().flatten().map(|(k, _, _)| *k).min() {
            // All copies of one blob, from every segment, deduplicated.
            group.clear();
            for (head, scan) in heads.iter_mut().zip(&mut scans) {
                while let Some((k, pack, v)) = head {
                    if *k != key {
                        break;
                    }
                    group.push((*pack, *v));
                    *head = scan.next_entry()?;
                }
            }
            group.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            group.dedup();
            for &(pack, v) in &group {
                w.push(&key, pack, v)?;
            }
        }
        let files: Vec<Id> = metas.iter().flat_map(|m| m.files.iter().copied()).collect();
        w.finish(files)
    }

    /// Merges the newest segments while [`merge_start`] says so; the
    /// replaced segments' files are removed once `manifest` names the new one
    /// (the caller writes it).
    pub(crate) fn compact(&self, manifest: &mut Manifest) -> Result<Vec<SegmentMeta>, CacheError> {
        let mut replaced = Vec::new();
        loop {
            let sizes: Vec<u64> = manifest.segments.iter().map(|s| s.entries).collect();
            let Some(start) = merge_start(&sizes) else {
                return Ok(replaced);
            };
            let group: Vec<SegmentMeta> = manifest.segments.drain(start..).collect();
            if let Some(merged) = self.merge(&group)? {
                manifest.segments.push(merged);
            }
            replaced.extend(group);
        }
    }

    /// Removes segment files the manifest does not name: those of
    /// `replaced` at once, others once they are an hour old (another process
    /// may be about to name a fresh one).
    pub(crate) fn remove_unused(&self, manifest: &Manifest, replaced: &[SegmentMeta]) {
        for m in replaced {
            if !manifest.segments.iter().any(|s| s.nonce == m.nonce) {
                self.remove_segment(m);
            }
        }
        let names: Vec<String> = manifest.segments.iter().map(|s| s.file_name()).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.contains(".seg") || names.contains(&name) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ORPHAN_AGE);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Adds every blob of `index` to `batch`.
pub(crate) fn batch_from_memory(
    index: &MemoryIndex,
    batch: &mut Batch,
) -> Result<(), IndexOverflow> {
    let mut result = Ok(());
    index.for_each(|t, id, l| {
        if result.is_ok() {
            result = batch.add(
                t,
                id,
                l.pack,
                u64::from(l.offset),
                u64::from(l.length),
                l.uncompressed_length.map(u64::from),
            );
        }
    });
    result
}

mod build;
pub(crate) use build::KeyedFile;

#[cfg(test)]
mod tests;
