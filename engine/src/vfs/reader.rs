//! One file's half of random access: offset → blob, readahead, zero blobs.

use std::sync::{Arc, Mutex, OnceLock};

use restix_chunker::{MIN_SIZE, ZERO_CHUNK_ID};
use restix_repo_format::{BlobType, Id, Node, NodeType};

use super::cache::BlobSource;
use super::VfsError;
use crate::image::zero_block_id;

/// First readahead window once reads look sequential.
const READAHEAD_START: u64 = 1 << 20;
/// Largest readahead window (also bounded by a quarter of the cache).
const READAHEAD_MAX: u64 = 32 << 20;
/// A read starting this close to where the previous one ended still counts
/// as sequential: the kernel (FUSE) and NBD clients issue several reads at
/// once, which arrive slightly out of order.
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// Where each blob of a file starts.
#[derive(Debug)]
enum Layout {
    /// Every blob but the last is `block` bytes (image mode): offset / block.
    Fixed { block: u64 },
    /// `starts[i]` is the offset of blob `i`, `starts[n]` the file size.
    Cumulative { starts: Vec<u64> },
}

/// A run of a file's bytes, as [`FileReader::extents`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// All bytes are zero (a zero blob): no need to read them.
    pub zero: bool,
}

#[derive(Debug, Default)]
struct Readahead {
    /// End of the previous read.
    last_end: u64,
    /// Sequential reads in a row.
    streak: u32,
    /// Current window in bytes.
    window: u64,
    /// Blobs before this index have been queued already.
    queued_until: usize,
}

/// Random access to one file's content (see the module docs). Cheap to
/// share between threads: reads take `&self`.
#[derive(Debug)]
pub struct FileReader {
    source: Arc<BlobSource>,
    content: Vec<Id>,
    layout: Layout,
    size: u64,
    /// Length of the last blob (all others are `block` in a fixed layout).
    last_len: u64,
    /// IDs of the zero blobs this file may hold, computed on first need.
    zero_ids: OnceLock<Vec<Id>>,
    ahead: Mutex<Readahead>,
}

// Opening a file lives here rather than in `cache.rs`, beside the type it
// makes, so that the cache does not import the reader that reads through it.
impl BlobSource {
    /// Random access to a regular file node.
    pub fn open_node(self: &Arc<Self>, node: &Node) -> Result<FileReader, VfsError> {
        if node.node_type != NodeType::File {
            return Err(VfsError::NotAFile(node.name_lossy()));
        }
        let content = node.content.clone().unwrap_or_default();
        FileReader::open(Arc::clone(self), content)
    }

    /// Random access to the concatenation of `content`'s data blobs.
    pub fn open_content(self: &Arc<Self>, content: Vec<Id>) -> Result<FileReader, VfsError> {
        FileReader::open(Arc::clone(self), content)
    }
}

impl FileReader {
    /// Look up every blob's size in the index and pick the layout.
    pub(super) fn open(source: Arc<BlobSource>, content: Vec<Id>) -> Result<FileReader, VfsError> {
        let repo = Arc::clone(source.repository());
        let mut sizes = Vec::with_capacity(content.len());
        for id in &content {
            let location = repo
                .lookup(BlobType::Data, id)
                .ok_or(VfsError::MissingBlob(*id))?;
            sizes.push(u64::from(location.plaintext_len()));
        }
        let size: u64 = sizes.iter().sum();
        let last_len = sizes.last().copied().unwrap_or(0);
        let layout = match sizes.split_last() {
            Some((last, rest))
                if *last > 0
                    && rest.first().is_none_or(|first| {
                        *last <= *first && rest.iter().all(|len| len == first)
                    }) =>
            {
                Layout::Fixed {
                    block: rest.first().copied().unwrap_or(*last),
                }
            }
            _ => {
                let mut starts = Vec::with_capacity(sizes.len() + 1);
                let mut at = 0u64;
                starts.push(0);
                for len in &sizes {
                    at += len;
                    starts.push(at);
                }
                Layout::Cumulative { starts }
            }
        };
        Ok(FileReader {
            source,
            content,
            layout,
            size,
            last_len,
            zero_ids: OnceLock::new(),
            ahead: Mutex::new(Readahead::default()),
        })
    }

    /// File size: the sum of its blobs' sizes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of blobs.
    pub fn blob_count(&self) -> usize {
        self.content.len()
    }

    /// The blob size when all blobs but the last have one size (O(1)
    /// offset lookup), else `None`.
    pub fn fixed_block_size(&self) -> Option<u64> {
        match self.layout {
            Layout::Fixed { block } => Some(block),
            Layout::Cumulative { .. } => None,
        }
    }

    /// The shared cache this file reads through.
    pub fn source(&self) -> &Arc<BlobSource> {
        &self.source
    }

    /// Index of the blob holding `offset` (`offset < size`).
    pub fn blob_index(&self, offset: u64) -> usize {
        let index = match &self.layout {
            Layout::Fixed { block } => usize::try_from(offset / block).unwrap_or(usize::MAX),
            Layout::Cumulative { starts } => starts.partition_point(|s| *s <= offset) - 1,
        };
        index.min(self.content.len().saturating_sub(1))
    }

    /// Offset and length of blob `index`.
    pub fn blob_span(&self, index: usize) -> (u64, u64) {
        match &self.layout {
            Layout::Fixed { block } => {
                let start = index as u64 * block;
                let len = if index + 1 == self.content.len() {
                    self.last_len
                } else {
                    *block
                };
                (start, len)
            }
            Layout::Cumulative { starts } => {
                let start = starts.get(index).copied().unwrap_or(self.size);
                let end = starts.get(index + 1).copied().unwrap_or(self.size);
                (start, end - start)
            }
        }
    }

    /// IDs of all-zero blobs worth recognising: image mode's zero block
    /// (and a short zero last block), content-defined chunking's 512 KiB
    /// zero chunk. Hashing a block of zeros once per file is cheap next to
    /// loading it; a file of one blob has no use for it.
    fn zero_ids(&self) -> &[Id] {
        self.zero_ids.get_or_init(|| {
            let mut ids = vec![Id(ZERO_CHUNK_ID)];
            if let Layout::Fixed { block } = self.layout {
                if self.content.len() > 1 {
                    ids.push(zero_block_id(block));
                    if self.last_len != block {
                        ids.push(zero_block_id(self.last_len));
                    }
                }
            }
            ids
        })
    }

    /// Whether blob `index` is known to be all zeros.
    pub fn is_zero_blob(&self, index: usize) -> bool {
        let Some(id) = self.content.get(index) else {
            return false;
        };
        if *id == Id(ZERO_CHUNK_ID) {
            return self.blob_span(index).1 == MIN_SIZE as u64;
        }
        self.content.len() > 1 && self.zero_ids().contains(id)
    }

    /// The runs of `[offset, offset + length)` (clipped to the file), each
    /// marked zero or data; neighbouring runs of one kind are merged.
    pub fn extents(&self, offset: u64, length: u64) -> Vec<Extent> {
        let end = offset.saturating_add(length).min(self.size);
        let mut out: Vec<Extent> = Vec::new();
        if offset >= end {
            return out;
        }
        let mut index = self.blob_index(offset);
        let mut at = offset;
        while at < end && index < self.content.len() {
            let (start, len) = self.blob_span(index);
            let stop = (start + len).min(end);
            let zero = self.is_zero_blob(index);
            match out.last_mut() {
                Some(last) if last.zero == zero => last.length += stop - at,
                _ => out.push(Extent {
                    offset: at,
                    length: stop - at,
                    zero,
                }),
            }
            at = stop;
            index += 1;
        }
        out
    }

    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end of
    /// the file (0 at or past it).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, VfsError> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = offset.saturating_add(buf.len() as u64).min(self.size);
        let first = self.blob_index(offset);
        let last = self.blob_index(end - 1);
        // The blobs after the one being copied go to the loaders, a window
        // of them kept full while the read proceeds, so a read across many
        // blobs has several loads in flight all along.
        let window = self.source.loaders() * 2;
        let mut queued = first + 1;
        let mut filled = 0usize;
        for index in first..=last {
            while queued <= last && queued <= index + window {
                if !self.is_zero_blob(queued) && !self.source.prefetch(&self.content[queued]) {
                    break;
                }
                queued += 1;
            }
            let (start, len) = self.blob_span(index);
            let from = offset.max(start);
            let to = end.min(start + len);
            let count = (to - from) as usize;
            let dst = &mut buf[filled..filled + count];
            if self.is_zero_blob(index) {
                dst.fill(0);
            } else {
                let id = &self.content[index];
                let data = self.source.get(id)?;
                if data.len() as u64 != len {
                    return Err(VfsError::BlobLength {
                        blob: *id,
                        want: len,
                        got: data.len() as u64,
                    });
                }
                let skip = (from - start) as usize;
                dst.copy_from_slice(&data[skip..skip + count]);
            }
            filled += count;
        }
        // Readahead after this read's own blobs, which come first in the
        // loaders' queue.
        self.read_ahead(offset, end, last);
        Ok(filled)
    }

    /// Detect sequential reads and queue the blobs of the window after
    /// `end` (blob `last` holds the read's last byte).
    fn read_ahead(&self, offset: u64, end: u64, last: usize) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let sequential = ahead.last_end > 0
            && offset + SEQUENTIAL_SLACK >= ahead.last_end
            && offset <= ahead.last_end + SEQUENTIAL_SLACK;
        if sequential {
            ahead.streak = ahead.streak.saturating_add(1);
            ahead.last_end = ahead.last_end.max(end);
        } else {
            *ahead = Readahead {
                last_end: end,
                ..Readahead::default()
            };
            return;
        }
        if ahead.streak < 2 {
            return;
        }
        let max = READAHEAD_MAX.min(self.source.capacity() / 4);
        ahead.window = (ahead.window * 2).clamp(READAHEAD_START.min(max), max.max(1));
        let until = ahead.last_end.saturating_add(ahead.window).min(self.size);
        if until <= end {
            return;
        }
        let target = self.blob_index(until - 1);
        let mut index = ahead.queued_until.max(last + 1);
        while index <= target {
            if !self.is_zero_blob(index) && !self.source.prefetch(&self.content[index]) {
                break;
            }
            index += 1;
        }
        ahead.queued_until = index;
    }
}
