//! The guest view of a disk image as the chunker sees it: data that must be
//! read, and long zero runs that are chunked arithmetically without touching
//! a byte (spec: restic-format §15.8: an all-zero window has fingerprint 0).

use std::ops::Range;

use restix_chunker::{Chunker, ChunkerConfig, MAX_SIZE, MIN_SIZE, SPLIT_MASK, WINDOW_SIZE};
use restix_qcow2::{DiskImage, Extent, ExtentKind};

use super::ImageError;

/// Zero/unallocated runs at least this long are chunked without bytes; shorter
/// ones are materialised as zeros (never read). Must be at least the window.
pub const LONG_ZERO_RUN: u64 = 4096;

/// Bytes read ahead beyond what the chunker asked for, inside data regions
/// (full backups, which read everything anyway).
const READ_AHEAD: u64 = 4 << 20;

/// Candidate positions searched per read while cutting: small enough that a
/// re-chunk around a change reads little beyond the cut it finds.
const SCAN_STEP: u64 = 128 << 10;

/// Extents and long zero runs of one image, covering `[0, size)`.
pub(crate) struct GuestLayout {
    pub(crate) size: u64,
    extents: Vec<Extent>,
    zero_runs: Vec<Range<u64>>,
}

impl GuestLayout {
    pub(crate) fn new(image: &dyn DiskImage) -> Result<Self, ImageError> {
        let size = image.virtual_size();
        let extents = if size == 0 {
            Vec::new()
        } else {
            image.extents(0, size)?
        };
        let mut zero_runs: Vec<Range<u64>> = Vec::new();
        for extent in &extents {
            if extent.kind == ExtentKind::Data {
                continue;
            }
            match zero_runs.last_mut() {
                Some(last) if last.end == extent.offset => last.end = extent.end(),
                _ => zero_runs.push(extent.offset..extent.end()),
            }
        }
        zero_runs.retain(|run| run.end - run.start >= LONG_ZERO_RUN);
        Ok(GuestLayout {
            size,
            extents,
            zero_runs,
        })
    }

    /// The extents covering the disk, in order.
    pub(crate) fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Total bytes in `Data` extents (what a backup reads at most).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.extents
            .iter()
            .filter(|e| e.kind == ExtentKind::Data)
            .map(|e| e.length)
            .sum()
    }

    /// The long zero run containing byte `pos`.
    pub(crate) fn zero_run_at(&self, pos: u64) -> Option<Range<u64>> {
        let i = self.zero_runs.partition_point(|run| run.end <= pos);
        self.zero_runs
            .get(i)
            .filter(|run| run.start <= pos)
            .cloned()
    }

    /// The first long zero run starting after `pos`.
    fn zero_run_after(&self, pos: u64) -> Option<Range<u64>> {
        let i = self.zero_runs.partition_point(|run| run.start <= pos);
        self.zero_runs.get(i).cloned()
    }

    /// Whether `[start, end)` lies inside one long zero run.
    pub(crate) fn is_zero_run(&self, start: u64, end: u64) -> bool {
        self.zero_run_at(start).is_some_and(|run| end <= run.end)
    }

    /// Fills `buf` with guest bytes at `offset`, reading only `Data` extents.
    /// Returns the bytes read from the image.
    pub(crate) fn materialise(
        &self,
        image: &dyn DiskImage,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<u64, ImageError> {
        let end = offset + buf.len() as u64;
        let mut read = 0;
        let first = self.extents.partition_point(|e| e.end() <= offset);
        for extent in self.extents.iter().skip(first) {
            if extent.offset >= end {
                break;
            }
            let a = extent.offset.max(offset);
            let b = extent.end().min(end);
            let (lo, hi) = ((a - offset) as usize, (b - offset) as usize);
            let Some(part) = buf.get_mut(lo..hi) else {
                continue;
            };
            if extent.kind == ExtentKind::Data {
                image.read_at(a, part)?;
                read += part.len() as u64;
            } else {
                part.fill(0);
            }
        }
        Ok(read)
    }

    /// End of the read-ahead when the chunker needs bytes up to `end`: more
    /// data, but never into a long zero run.
    fn read_ahead_end(&self, end: u64, read_ahead: u64) -> u64 {
        if end == 0 || read_ahead == 0 || self.zero_run_at(end - 1).is_some() {
            return end;
        }
        let limit = self
            .zero_run_after(end - 1)
            .map_or(self.size, |run| run.start);
        (end + read_ahead).min(limit).min(self.size).max(end)
    }
}

/// Materialised guest bytes `[start, start + len)`, read forward once.
pub(crate) struct GuestBuffer<'a> {
    image: &'a dyn DiskImage,
    layout: &'a GuestLayout,
    /// Guest offset of `data[consumed]`.
    start: u64,
    data: Vec<u8>,
    consumed: usize,
    /// Bytes read beyond what was asked for.
    read_ahead: u64,
    /// Bytes read from the image so far.
    pub(crate) bytes_read: u64,
}

impl<'a> GuestBuffer<'a> {
    /// A buffer that reads ahead (for a sequential walk of the whole disk).
    pub(crate) fn new(image: &'a dyn DiskImage, layout: &'a GuestLayout) -> Self {
        Self::with_read_ahead(image, layout, READ_AHEAD)
    }

    /// A buffer that reads exactly what is asked for (for re-chunking around
    /// changes, where bytes past the resynchronising cut are not needed).
    pub(crate) fn exact(image: &'a dyn DiskImage, layout: &'a GuestLayout) -> Self {
        Self::with_read_ahead(image, layout, 0)
    }

    fn with_read_ahead(image: &'a dyn DiskImage, layout: &'a GuestLayout, read_ahead: u64) -> Self {
        GuestBuffer {
            image,
            layout,
            start: 0,
            data: Vec::new(),
            consumed: 0,
            read_ahead,
            bytes_read: 0,
        }
    }

    fn end(&self) -> u64 {
        self.start + (self.data.len() - self.consumed) as u64
    }

    /// Guest bytes `[a, b)`, materialising what is missing.
    pub(crate) fn range(&mut self, a: u64, b: u64) -> Result<&[u8], ImageError> {
        // An exact buffer (re-chunking around changes) never reads a gap: it
        // needs only the windows it searches.
        let gap_limit = if self.read_ahead == 0 {
            0
        } else {
            MAX_SIZE as u64
        };
        if a > self.end().saturating_add(gap_limit)
            || (a < self.start && b <= self.start)
            || self.data.len() == self.consumed
        {
            // Jump: nothing buffered is useful. (When reading ahead, a short
            // gap after the buffered bytes is read below instead: the chunk
            // holding the buffered bytes is read up to `a` later anyway, and
            // dropping them now would read them twice.)
            self.data.clear();
            self.consumed = 0;
            self.start = a;
        } else if a < self.start {
            // Prepend `[a, start)` (a chunk that began in a zero run before the
            // search window).
            let mut fresh = vec![0u8; (self.start - a) as usize];
            self.bytes_read += self.layout.materialise(self.image, a, &mut fresh)?;
            fresh.extend_from_slice(self.data.get(self.consumed..).unwrap_or_default());
            self.data = fresh;
            self.consumed = 0;
            self.start = a;
        }
        if b > self.end() {
            let target = self.layout.read_ahead_end(b, self.read_ahead);
            let from = self.end();
            let old = self.data.len();
            self.data.resize(old + (target - from) as usize, 0);
            let fresh = self.data.get_mut(old..).unwrap_or_default();
            self.bytes_read += self.layout.materialise(self.image, from, fresh)?;
        }
        let lo = self.consumed + (a - self.start) as usize;
        let hi = self.consumed + (b - self.start) as usize;
        Ok(self.data.get(lo..hi).unwrap_or_default())
    }

    /// Forgets bytes before `pos` (already chunked).
    pub(crate) fn drop_before(&mut self, pos: u64) {
        if pos <= self.start {
            return;
        }
        if pos >= self.end() {
            self.data.clear();
            self.consumed = 0;
            self.start = pos;
            return;
        }
        self.consumed += (pos - self.start) as usize;
        self.start = pos;
        // Compact rarely so that dropping a chunk costs no memmove.
        if self.consumed > (16 << 20) && self.consumed > self.data.len() / 2 {
            self.data.drain(..self.consumed);
            self.consumed = 0;
        }
    }
}

/// restic's chunk boundaries over a [`GuestLayout`], exact (the same cuts as
/// `Chunker::chunk_slice` over the whole guest disk) but without touching long
/// zero runs.
pub(crate) struct ChunkCutter {
    min_size: u64,
    max_size: u64,
    /// The same fingerprint with a minimum chunk of one window: its first cut
    /// in a slice is the first candidate position at least 64 bytes in.
    window: Chunker,
}

impl ChunkCutter {
    pub(crate) fn new(chunker: &Chunker) -> Result<Self, ImageError> {
        let config = chunker.config();
        let window = Chunker::from_tables(
            chunker.tables().clone(),
            ChunkerConfig {
                min_size: WINDOW_SIZE,
                max_size: usize::MAX / 2,
                split_mask: config.split_mask,
            },
        )
        .map_err(|e| ImageError::Chunker(e.to_string()))?;
        Ok(ChunkCutter {
            min_size: config.min_size as u64,
            max_size: config.max_size as u64,
            window,
        })
    }

    /// restic's parameters (for tests and defaults).
    #[allow(dead_code)]
    pub(crate) fn restic_sizes() -> (u64, u64, u64) {
        (MIN_SIZE as u64, MAX_SIZE as u64, SPLIT_MASK)
    }

    /// The end of the chunk starting at `start` (a true chunk start).
    pub(crate) fn cut(
        &self,
        layout: &GuestLayout,
        buffer: &mut GuestBuffer<'_>,
        start: u64,
    ) -> Result<u64, ImageError> {
        self.cut_searching_from(layout, buffer, start, 0)
    }

    /// [`cut`](Self::cut) for a caller that knows that no position below
    /// `search_from` ends this chunk: the window before a position that lies
    /// before a change holds the parent's bytes, and the parent did not cut
    /// there, so the fingerprint need not be computed (and the bytes before
    /// `search_from - 64` need not be read) there.
    pub(crate) fn cut_searching_from(
        &self,
        layout: &GuestLayout,
        buffer: &mut GuestBuffer<'_>,
        start: u64,
        search_from: u64,
    ) -> Result<u64, ImageError> {
        let size = layout.size;
        let window = WINDOW_SIZE as u64;
        let lo = start + self.min_size;
        let max_end = start + self.max_size;
        let hi = max_end.min(size);
        let mut p = lo.max(search_from);
        while p <= hi {
            let w = p - window;
            if let Some(run) = layout.zero_run_at(w) {
                if p <= run.end {
                    // The window [p-64, p) is all zeros: fingerprint 0, a cut.
                    return Ok(p);
                }
            }
            // Positions whose window holds real bytes, up to the first position
            // whose window lies wholly in the next long zero run.
            let q = layout
                .zero_run_after(w)
                .map_or(hi, |run| hi.min(run.start + window - 1))
                .min(p + SCAN_STEP);
            let bytes = buffer.range(w, q)?;
            if let Some(boundary) = self.window.next_boundary(bytes, false) {
                return Ok(w + boundary.end() as u64);
            }
            p = q + 1;
        }
        Ok(if max_end <= size { max_end } else { size })
    }
}
