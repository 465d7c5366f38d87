//! Exact multi-threaded chunking of one large buffer (spec: restic-format §15.8).
//!
//! The public face of the threaded chunker: [`ParallelChunker`], the
//! `*_parallel` methods of [`Chunker`] and the windowed streams. The
//! threaded search itself is `speculative.rs`, below `stream.rs` and this file.

use std::io::{self, Read};

use crate::chunker::{ChunkBoundary, Chunker};
use crate::speculative::chunk_prefix_threads;
use crate::stream::{ChunkBatch, WindowBuffer};

/// Default window of [`ParallelChunkStream`]: 64 MiB.
pub const DEFAULT_PARALLEL_WINDOW: usize = 64 * 1024 * 1024;

/// Exact parallel chunker: a [`Chunker`] plus a thread count.
///
/// Threads are scoped (`std::thread::scope`) and live for one call; no
/// global pool is created.
#[derive(Clone, Debug)]
pub struct ParallelChunker {
    chunker: Chunker,
    threads: usize,
}

impl ParallelChunker {
    /// Uses up to `threads` threads per call (0 is treated as 1).
    pub fn new(chunker: Chunker, threads: usize) -> Self {
        ParallelChunker {
            chunker,
            threads: threads.max(1),
        }
    }

    /// The underlying sequential chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// Thread count per call.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Same result as [`Chunker::chunk_slice`], computed in parallel.
    pub fn chunk_slice(&self, data: &[u8]) -> Vec<ChunkBoundary> {
        chunk_prefix_threads(&self.chunker, data, true, self.threads, 0)
    }

    /// Same result as [`Chunker::chunk_prefix`], computed in parallel.
    pub fn chunk_prefix(&self, data: &[u8], eof: bool) -> Vec<ChunkBoundary> {
        chunk_prefix_threads(&self.chunker, data, eof, self.threads, 0)
    }

    /// Chunk end offsets of a complete file held in `data`.
    pub fn boundaries(&self, data: &[u8]) -> Vec<usize> {
        self.chunk_slice(data)
            .iter()
            .map(ChunkBoundary::end)
            .collect()
    }

    /// Streams a reader in windows of `window` bytes (raised to at least
    /// `max_size`), chunking each window in parallel.
    pub fn chunk_reader<R: Read>(&self, reader: R, window: usize) -> ParallelChunkStream<R> {
        ParallelChunkStream::new(self.clone(), reader, window)
    }
}

impl Chunker {
    /// Same result as [`chunk_slice`](Self::chunk_slice), using up to
    /// `threads` scoped threads.
    pub fn chunk_slice_parallel(&self, data: &[u8], threads: usize) -> Vec<ChunkBoundary> {
        chunk_prefix_threads(self, data, true, threads, 0)
    }

    /// Same result as [`boundaries`](Self::boundaries), using up to
    /// `threads` scoped threads.
    pub fn boundaries_parallel(&self, data: &[u8], threads: usize) -> Vec<usize> {
        self.chunk_slice_parallel(data, threads)
            .iter()
            .map(ChunkBoundary::end)
            .collect()
    }

    /// Same result as [`chunk_prefix`](Self::chunk_prefix), using up to
    /// `threads` scoped threads.
    pub fn chunk_prefix_parallel(
        &self,
        data: &[u8],
        eof: bool,
        threads: usize,
    ) -> Vec<ChunkBoundary> {
        chunk_prefix_threads(self, data, eof, threads, 0)
    }
}

/// Parallel chunking of a reader in large windows with bounded memory
/// (one window, default 64 MiB, plus the boundary list).
///
/// Each [`next_batch`](Self::next_batch) reads until the window is full,
/// chunks it in parallel and returns all determined chunks; the unfinished
/// tail (shorter than `max_size`) is carried over to the next window.
#[derive(Debug)]
pub struct ParallelChunkStream<R> {
    chunker: ParallelChunker,
    buffer: WindowBuffer<R>,
    chunks: Vec<ChunkBoundary>,
}

impl<R: Read> ParallelChunkStream<R> {
    /// See [`ParallelChunker::chunk_reader`].
    pub fn new(chunker: ParallelChunker, reader: R, window: usize) -> Self {
        let window = window.max(chunker.chunker().config().max_size);
        ParallelChunkStream {
            chunker,
            buffer: WindowBuffer::new(reader, window),
            chunks: Vec::new(),
        }
    }

    /// The next batch of chunks, or `None` at the end of the stream.
    pub fn next_batch(&mut self) -> io::Result<Option<ChunkBatch<'_>>> {
        let consumed = self.chunks.last().map_or(0, ChunkBoundary::end);
        self.buffer.consume(consumed);
        self.chunks.clear();
        self.buffer.refill()?;
        self.chunks = self
            .buffer
            .chunk_buffered(self.chunker.chunker(), self.chunker.threads());
        if self.chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some(ChunkBatch {
            base_offset: self.buffer.base_offset(),
            data: self.buffer.data(),
            chunks: &self.chunks,
        }))
    }

    /// Gives back the reader.
    pub fn into_inner(self) -> R {
        self.buffer.into_reader()
    }
}

/// One window of a stream with its determined chunks, owning its bytes, so
/// the chunks can be hashed and stored while the next window is read
/// (see [`WindowStream`]).
#[derive(Debug)]
pub struct OwnedWindow {
    /// Stream offset of `data[0]`.
    pub base_offset: u64,
    /// The window's bytes; `chunks` cover a prefix of them (the unfinished
    /// tail was carried over to the next window).
    pub data: Vec<u8>,
    /// The chunks, with offsets relative to `data`; never empty.
    pub chunks: Vec<ChunkBoundary>,
}

impl OwnedWindow {
    /// The bytes of chunk `boundary` (one of `self.chunks`).
    pub fn chunk_data(&self, boundary: &ChunkBoundary) -> &[u8] {
        self.data
            .get(boundary.offset..boundary.end())
            .unwrap_or_default()
    }

    /// Total bytes in the window's chunks.
    pub fn byte_len(&self) -> usize {
        self.chunks.last().map_or(0, ChunkBoundary::end)
    }
}

/// Chunks a reader in windows that it hands out by value: unlike
/// [`ParallelChunkStream`], a window stays valid while the next one is read
/// and chunked, so reading, chunking and the per-chunk work can overlap.
/// Memory is what the caller keeps of the handed-out windows (it may give
/// their buffers back through [`next_window`](Self::next_window)) plus the
/// carried-over tail (< `max_size`).
#[derive(Debug)]
pub struct WindowStream<R> {
    chunker: ParallelChunker,
    reader: R,
    window: usize,
    /// Unfinished bytes of the previous window (start at a chunk boundary).
    tail: Vec<u8>,
    /// Stream offset of `tail[0]`.
    base_offset: u64,
    eof: bool,
    /// Bytes of `tail` already searched for cuts (restic-format §15.8
    /// resume hint), valid for the chunk starting at `base_offset`.
    searched: usize,
}

impl<R: Read> WindowStream<R> {
    /// Windows of `window` bytes (raised to at least
    /// [`min_window`](Self::min_window), so every window but the last holds
    /// a complete chunk), chunked with up to the chunker's thread count.
    pub fn new(chunker: ParallelChunker, reader: R, window: usize) -> Self {
        let window = window.max(Self::min_window(chunker.chunker()));
        WindowStream {
            chunker,
            reader,
            window,
            tail: Vec::new(),
            base_offset: 0,
            eof: false,
            searched: 0,
        }
    }

    /// The window size in bytes.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The smallest window: the carried-over tail is shorter than
    /// `max_size` (a chunk with `max_size` bytes available is always
    /// determined), so `max_size` plus a few average chunks guarantees
    /// progress without reading mostly tail.
    pub fn min_window(chunker: &Chunker) -> usize {
        let config = chunker.config();
        config
            .max_size
            .saturating_add(config.min_size.saturating_mul(8))
    }

    /// Reads and chunks the next window into `buffer` (cleared first; pass
    /// a buffer of an earlier window to reuse its allocation). `None` at
    /// the end of the stream.
    pub fn next_window(&mut self, mut buffer: Vec<u8>) -> io::Result<Option<OwnedWindow>> {
        buffer.clear();
        if buffer.capacity() < self.window {
            buffer.reserve_exact(self.window);
        }
        buffer.extend_from_slice(&self.tail);
        let carried = self.tail.len();
        self.tail.clear();
        // Whole-window reads (not `read_to_end`'s growing ones), so a reader
        // can split a large read over several threads.
        let mut filled = carried;
        buffer.resize(self.window, 0);
        while !self.eof && filled < self.window {
            let free = buffer.get_mut(filled..).unwrap_or_default();
            match self.reader.read(free) {
                Ok(0) => self.eof = true,
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // keep the stream consistent for a caller that retries
                    self.tail = buffer.get(..carried).unwrap_or_default().to_vec();
                    return Err(err);
                }
            }
        }
        buffer.truncate(filled);
        if buffer.is_empty() {
            return Ok(None);
        }
        let search_from = if carried > 0 { self.searched } else { 0 };
        let chunks = chunk_prefix_threads(
            self.chunker.chunker(),
            &buffer,
            self.eof,
            self.chunker.threads(),
            search_from,
        );
        let consumed = chunks.last().map_or(0, ChunkBoundary::end);
        self.tail
            .extend_from_slice(buffer.get(consumed..).unwrap_or_default());
        // The unfinished tail was searched at every end offset up to the
        // buffered length (spec: restic-format §15.8).
        self.searched = self.tail.len() + 1;
        let base_offset = self.base_offset;
        self.base_offset += consumed as u64;
        if chunks.is_empty() {
            // Only possible at the end of the stream with nothing left.
            return Ok(None);
        }
        Ok(Some(OwnedWindow {
            base_offset,
            data: buffer,
            chunks,
        }))
    }
}

#[cfg(test)]
mod window_stream_tests {
    use super::*;

    fn test_chunker() -> Chunker {
        let polynomial = "3da3358b4dc173".parse().unwrap();
        Chunker::new(polynomial).unwrap()
    }

    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn windows_give_the_sequential_chunks() {
        let chunker = test_chunker();
        let mut data = pseudo_random(40 << 20, 7);
        // a zero run and a constant run across window borders
        data.get_mut(17 << 20..21 << 20).unwrap().fill(0);
        data.get_mut(30 << 20..33 << 20).unwrap().fill(0x5a);
        let expected: Vec<(u64, usize)> = chunker
            .chunk_slice(&data)
            .iter()
            .map(|c| (c.offset as u64, c.length))
            .collect();
        for threads in [1, 2, 3] {
            let parallel = ParallelChunker::new(chunker.clone(), threads);
            let mut stream = WindowStream::new(parallel, &data[..], 0);
            let mut got = Vec::new();
            let mut recycled = Vec::new();
            while let Some(window) = stream.next_window(recycled).unwrap() {
                for c in &window.chunks {
                    let start = window.base_offset + c.offset as u64;
                    assert_eq!(
                        window.chunk_data(c),
                        &data[start as usize..start as usize + c.length]
                    );
                    got.push((start, c.length));
                }
                recycled = window.data;
            }
            assert_eq!(got, expected, "threads {threads}");
        }
    }

    #[test]
    fn empty_and_short_streams() {
        let parallel = ParallelChunker::new(test_chunker(), 2);
        let mut stream = WindowStream::new(parallel.clone(), &[][..], 0);
        assert!(stream.next_window(Vec::new()).unwrap().is_none());
        let data = pseudo_random(1000, 3);
        let mut stream = WindowStream::new(parallel, &data[..], 0);
        let window = stream.next_window(Vec::new()).unwrap().unwrap();
        assert_eq!(window.chunks.len(), 1);
        assert_eq!(window.byte_len(), 1000);
        assert!(stream.next_window(window.data).unwrap().is_none());
    }
}
