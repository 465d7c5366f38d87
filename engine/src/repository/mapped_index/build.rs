//! Building one segment from many index files (a cold cache: every index
//! file of the repository) fast and in little memory.
//!
//! Worker threads decrypt and parse the index files and compute the blobs'
//! search keys ([`CacheDir::keyed_file`]); one thread numbers the packs and
//! spreads the entries over [`BUCKETS`] buckets by the search key's leading
//! bits ([`BulkBuild::add_file`]). A bucket that fills its
//! [`CHUNK_ENTRIES`] is spilled to a temporary file, encrypted with a
//! keystream of a fresh random nonce and tagged (the tags stay in memory),
//! so the build holds about 8 MiB of entries whatever the repository's
//! size. [`BulkBuild::finish`] then reads the buckets back, checks, sorts
//! and deduplicates them on every CPU thread while this one writes them, in
//! key order, into the segment: the entries are written twice, like sorted
//! runs merged afterwards would be, but no run is merged, and the sort is
//! many small cache-friendly ones.
//!
//! Because the search keys are keyed hashes, the buckets are even: at 10M
//! blobs each holds about 10 000 entries (470 KiB).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Condvar;

use restix_repo_format::IndexFile;

use super::*;

/// An entry being built: search key and value (`pack` numbers the
/// build's pack table).
type Entry = ([u8; 32], Value);

/// Leading search-key bits that pick a bucket.
const BUCKET_BITS: u32 = 10;
/// Buckets of a build.
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Entries a bucket holds in memory before they are spilled (8 KiB).
const CHUNK_ENTRIES: usize = 170;
/// Buckets sorted ahead of the one being written, at most.
const SORT_WINDOW: usize = 4;
/// Bytes of the spill file written at once.
const SPILL_BUFFER: usize = 1 << 20;

/// The blobs of one index file with their search keys, ready for
/// [`BulkBuild::add_file`]; made on a worker thread.
#[derive(Debug, Default)]
pub(crate) struct KeyedFile {
    /// The file's packs (with at least one blob).
    packs: Vec<Id>,
    /// Search key and value; `pack` numbers `packs`.
    entries: Vec<Entry>,
}

impl CacheDir {
    /// The blobs of `file` keyed for this cache (the expensive part of
    /// adding a file to a build: one keyed hash a blob).
    pub(crate) fn keyed_file(&self, file: &IndexFile) -> Result<KeyedFile, IndexOverflow> {
        let mut keyed = KeyedFile {
            packs: Vec::with_capacity(file.packs.len()),
            entries: Vec::with_capacity(file.blob_count()),
        };
        for p in &file.packs {
            if p.blobs.is_empty() {
                continue;
            }
            let pack = keyed.packs.len() as u32;
            keyed.packs.push(p.id);
            for b in &p.blobs {
                let overflow = || IndexOverflow {
                    blob: b.id,
                    pack: p.id,
                    offset: b.offset,
                    length: u64::from(b.length),
                };
                let value = Value {
                    pack,
                    offset: u32::try_from(b.offset).map_err(|_| overflow())?,
                    length: b.length,
                    uncompressed: b.uncompressed_length.unwrap_or(0),
                };
                keyed
                    .entries
                    .push((self.keys.search_key(b.blob_type, &b.id), value));
            }
        }
        Ok(keyed)
    }

    /// A build of one new segment from index files.
    pub(crate) fn bulk_build(&self) -> BulkBuild {
        let mut nonce = [0u8; 16];
        restix_repo_format::random_bytes(&mut nonce);
        BulkBuild {
            dir: self.dir.clone(),
            keys: self.keys.clone(),
            cipher: self.keys.segment_cipher(&nonce),
            nonce,
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            chunks: (0..BUCKETS).map(|_| Vec::new()).collect(),
            spill: None,
            spill_path: None,
            spill_len: 0,
            entries: 0,
            files: Vec::new(),
            stream: Vec::new(),
            bytes: Vec::new(),
            chunk_entries: CHUNK_ENTRIES,
        }
    }
}

/// The bucket of a search key: its leading [`BUCKET_BITS`] bits.
fn bucket(key: &[u8; 32]) -> usize {
    (usize::from(key[0]) << 8 | usize::from(key[1])) >> (16 - BUCKET_BITS)
}

/// Entries of one bucket spilled at once.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Where in the spill file.
    offset: u64,
    entries: u32,
    /// Keyed tag of the encrypted bytes and their offset.
    tag: [u8; 16],
}

/// One segment being built from index files (see the module's text).
pub(crate) struct BulkBuild {
    dir: PathBuf,
    keys: CacheKeys,
    /// The spill's nonce: keys its keystream and its tags.
    nonce: [u8; 16],
    cipher: Aes256,
    /// Every pack, numbered as the segment's table will.
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    /// Entries of each bucket not spilled.
    buckets: Vec<Vec<Entry>>,
    /// Spilled entries of each bucket.
    chunks: Vec<Vec<Chunk>>,
    spill: Option<BufWriter<File>>,
    /// Set once the spill file exists (removed on drop).
    spill_path: Option<PathBuf>,
    spill_len: u64,
    entries: u64,
    /// The index files added.
    files: Vec<Id>,
    stream: Vec<aes::Block>,
    bytes: Vec<u8>,
    /// [`CHUNK_ENTRIES`] (fewer in tests, to spill small builds).
    chunk_entries: usize,
}

impl std::fmt::Debug for BulkBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkBuild")
            .field("entries", &self.entries)
            .field("packs", &self.packs.len())
            .field("spilled", &self.spill_len)
            .finish_non_exhaustive()
    }
}

impl Drop for BulkBuild {
    fn drop(&mut self) {
        self.spill = None;
        if let Some(path) = &self.spill_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// XORs `bytes` (a multiple of 16 long) with the keystream from block
/// `first` on.
fn apply_keystream(cipher: &Aes256, first: u64, bytes: &mut [u8], stream: &mut Vec<aes::Block>) {
    fill_keystream(cipher, VALUES, first, bytes.len() / 16, stream);
    for (block, ks) in bytes.chunks_exact_mut(16).zip(stream.iter()) {
        for (x, k) in block.iter_mut().zip(ks) {
            *x ^= k;
        }
    }
}

impl BulkBuild {
    /// Adds the blobs of index file `file`.
    pub(crate) fn add_file(&mut self, file: Id, keyed: KeyedFile) -> Result<(), CacheError> {
        let numbers: Vec<u32> = keyed
            .packs
            .iter()
            .map(|p| {
                let next = self.packs.len() as u32;
                *self.pack_numbers.entry(*p).or_insert_with(|| {
                    self.packs.push(*p);
                    next
                })
            })
            .collect();
        for (key, value) in keyed.entries {
            let pack = *numbers
                .get(value.pack as usize)
                .ok_or_else(|| invalid(&self.dir, "pack number out of range"))?;
            let b = bucket(&key);
            let entries = &mut self.buckets[b];
            if entries.capacity() == 0 {
                entries.reserve_exact(self.chunk_entries);
            }
            entries.push((key, Value { pack, ..value }));
            if entries.len() >= self.chunk_entries {
                self.spill_bucket(b)?;
            }
            self.entries += 1;
        }
        self.files.push(file);
        Ok(())
    }

    /// Spills a bucket once it holds `n` entries (tests: spill small builds).
    #[cfg(test)]
    pub(super) fn spill_every(&mut self, n: usize) {
        self.chunk_entries = n.max(1);
    }

    /// Bytes spilled so far.
    #[cfg(test)]
    pub(super) fn spilled(&self) -> u64 {
        self.spill_len
    }

    /// Writes out what the spill file's buffer holds.
    #[cfg(test)]
    pub(super) fn flush_spill_for_test(&mut self) {
        if let Some(w) = &mut self.spill {
            let _ = w.flush();
        }
    }

    /// The spill file, once there is one.
    #[cfg(test)]
    pub(super) fn spill_path(&self) -> Option<&Path> {
        self.spill_path.as_deref()
    }

    /// Writes bucket `b`'s entries to the spill file, encrypted and tagged.
    fn spill_bucket(&mut self, b: usize) -> Result<(), CacheError> {
        if self.spill.is_none() {
            let path = self.dir.join(format!(
                "{}.spill-{}",
                SegmentMeta {
                    nonce: self.nonce,
                    entries: 0,
                    packs: 0,
                    files: Vec::new(),
                }
                .file_name(),
                std::process::id()
            ));
            // Read back by `finish`.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_error(&path))?;
            self.spill_path = Some(path);
            self.spill = Some(BufWriter::with_capacity(SPILL_BUFFER, file));
        }
        let entries = std::mem::take(&mut self.buckets[b]);
        self.bytes.clear();
        for (key, value) in &entries {
            self.bytes.extend_from_slice(key);
            self.bytes.extend_from_slice(&value.to_bytes());
        }
        let offset = self.spill_len;
        apply_keystream(&self.cipher, offset / 16, &mut self.bytes, &mut self.stream);
        let tag = self.keys.page_tag(&self.nonce, offset, &self.bytes);
        let path = self.spill_path.clone().unwrap_or_default();
        self.spill
            .as_mut()
            .ok_or_else(|| invalid(&path, "spill file gone"))?
            .write_all(&self.bytes)
            .map_err(io_error(&path))?;
        self.spill_len += self.bytes.len() as u64;
        self.chunks[b].push(Chunk {
            offset,
            entries: entries.len() as u32,
            tag,
        });
        // The allocation is reused for the bucket's next entries.
        let mut entries = entries;
        entries.clear();
        self.buckets[b] = entries;
        Ok(())
    }

    /// Writes the segment (`threads` threads read and sort the buckets,
    /// this one writes them in order); `None` when no blob was added.
    pub(crate) fn finish(mut self, threads: usize) -> Result<Option<SegmentMeta>, CacheError> {
        if self.entries == 0 {
            // Nothing spilled either; a warm load ends here.
            return Ok(None);
        }
        let spill = match self.spill.take() {
            Some(w) => {
                let path = self.spill_path.clone().unwrap_or_default();
                Some(
                    w.into_inner()
                        .map_err(|e| io_error(&path)(e.into_error()))?,
                )
            }
            None => None,
        };
        let packs = std::mem::take(&mut self.packs);
        // The sorting thread orders copies by pack ID: its own table.
        let mut writer =
            SegmentWriter::create_numbered(&self.dir, &self.keys, self.entries, packs.clone())?;
        let buckets = std::mem::take(&mut self.buckets);
        let chunks = std::mem::take(&mut self.chunks);
        let reader = SpillReader {
            file: spill.as_ref(),
            path: self.spill_path.clone().unwrap_or_default(),
            keys: &self.keys,
            nonce: &self.nonce,
            cipher: &self.cipher,
            packs: &packs,
        };
        let buckets: Vec<Mutex<Vec<Entry>>> = buckets.into_iter().map(Mutex::new).collect();
        let written = in_order(
            BUCKETS,
            threads,
            SORT_WINDOW,
            |b| {
                let entries = std::mem::take(&mut *crate::poison::lock(&buckets[b]));
                reader.sorted(entries, &chunks[b])
            },
            |sorted| {
                sorted
                    .iter()
                    .try_for_each(|(key, value)| writer.push_numbered(key, *value))
            },
        );
        drop(spill);
        if let Some(path) = self.spill_path.take() {
            let _ = std::fs::remove_file(path);
        }
        written?;
        writer.finish(std::mem::take(&mut self.files))
    }
}

/// Reads a bucket back from the spill and sorts it.
struct SpillReader<'a> {
    file: Option<&'a File>,
    path: PathBuf,
    keys: &'a CacheKeys,
    nonce: &'a [u8; 16],
    cipher: &'a Aes256,
    packs: &'a [Id],
}

impl SpillReader<'_> {
    /// The entries of one bucket (those in memory and those spilled),
    /// checked, sorted as a segment holds them and without exact
    /// duplicates.
    fn sorted(&self, mut entries: Vec<Entry>, chunks: &[Chunk]) -> Result<Vec<Entry>, CacheError> {
        let mut stream = Vec::new();
        let spilled: usize = chunks.iter().map(|c| c.entries as usize).sum();
        entries.reserve_exact(spilled);
        let mut bytes = Vec::new();
        for c in chunks {
            let file = self
                .file
                .ok_or_else(|| invalid(&self.path, "spill file gone"))?;
            bytes.resize(c.entries as usize * ENTRY, 0);
            file.read_exact_at(&mut bytes, c.offset)
                .map_err(io_error(&self.path))?;
            if self.keys.page_tag(self.nonce, c.offset, &bytes) != c.tag {
                return Err(invalid(&self.path, "spilled entries fail their check"));
            }
            apply_keystream(self.cipher, c.offset / 16, &mut bytes, &mut stream);
            for e in bytes.chunks_exact(ENTRY) {
                let mut key = [0u8; 32];
                key.copy_from_slice(&e[..32]);
                let mut value = [0u8; 16];
                value.copy_from_slice(&e[32..]);
                entries.push((key, Value::from_bytes(&value)));
            }
        }
        let pack_of = |v: &Value| self.packs.get(v.pack as usize).copied().unwrap_or(Id::NULL);
        // As `CacheDir::write_batch` orders them: copies of one blob by
        // pack ID, then place.
        // The keys' leading 8 bytes first: they differ but for copies of
        // one blob, and compare as one integer.
        let lead =
            |k: &[u8; 32]| u64::from_be_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        entries.sort_unstable_by(|a, b| {
            lead(&a.0)
                .cmp(&lead(&b.0))
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| pack_of(&a.1).cmp(&pack_of(&b.1)))
                .then_with(|| a.1.cmp(&b.1))
        });
        entries.dedup();
        Ok(entries)
    }
}

/// Runs `make` for `0..n` on `threads` threads and hands the results to
/// `consume` (on this thread) in order, at most `window` items ahead of it;
/// stops at the first error.
pub(super) fn in_order<T: Send, E: Send>(
    n: usize,
    threads: usize,
    window: usize,
    make: impl Fn(usize) -> Result<T, E> + Sync,
    mut consume: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    struct State<T> {
        ready: HashMap<usize, T>,
        consumed: usize,
        stop: bool,
        /// A maker panicked: `consume` stops waiting, and the scope passes
        /// the panic on.
        panicked: bool,
    }
    /// Marks the state when a maker unwinds.
    struct OnPanic<'a, T>(&'a Mutex<State<T>>, &'a Condvar);
    impl<T> Drop for OnPanic<'_, T> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                crate::poison::lock(self.0).panicked = true;
                self.1.notify_all();
            }
        }
    }
    let state = Mutex::new(State {
        ready: HashMap::new(),
        consumed: 0,
        stop: false,
        panicked: false,
    });
    let changed = Condvar::new();
    let wait = |guard| changed.wait(guard).unwrap_or_else(|e| e.into_inner());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let _on_panic = OnPanic(&state, &changed);
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                {
                    // Every item before `i` is taken, so the one `consume`
                    // waits for is being made: this wait always ends.
                    let mut st = crate::poison::lock(&state);
                    while !st.stop && i >= st.consumed + window {
                        st = wait(st);
                    }
                    if st.stop {
                        return;
                    }
                }
                let made = make(i);
                crate::poison::lock(&state).ready.insert(i, made);
                changed.notify_all();
            });
        }
        let mut result = Ok(());
        for i in 0..n {
            let made = {
                let mut st = crate::poison::lock(&state);
                loop {
                    if let Some(made) = st.ready.remove(&i) {
                        break Some(made);
                    }
                    if st.panicked {
                        break None;
                    }
                    st = wait(st);
                }
            };
            let Some(made) = made else { break };
            if let Err(e) = made.and_then(&mut consume) {
                result = Err(e);
                break;
            }
            crate::poison::lock(&state).consumed = i + 1;
            changed.notify_all();
        }
        crate::poison::lock(&state).stop = true;
        changed.notify_all();
        result
    })
}
