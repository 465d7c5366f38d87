//! Exact multi-threaded chunking of one large buffer (spec: restic-format §15.8).
//!
//! Strategy: speculative per-segment chunking with resynchronisation. The
//! buffer is split into one segment per thread. Thread 0 chunks from the true
//! start; every other thread chunks its segment as if a chunk started at the
//! segment start. Where a chunk ends depends only on where it starts and on
//! the data, so once the true chain of boundaries reaches any chunk start of a
//! speculative chain, both chains coincide from there on. The merge walks the
//! true chain: it takes over a segment's speculative boundaries from the first
//! shared boundary and chunks sequentially only until that point (usually one
//! or two chunks; for data without candidates, e.g. constant non-zero bytes,
//! it degrades to sequential speed but stays exact). Each speculative chain
//! keeps restic's skip of the first `min_size - 64` bytes of every chunk, so
//! the total hashing work stays at that of the sequential chunker.

use std::io::{self, Read};

use crate::chunker::{ChunkBoundary, ChunkStep, Chunker};
use crate::stream::{ChunkBatch, WindowBuffer};

/// Default window of [`ParallelChunkStream`]: 64 MiB.
pub const DEFAULT_PARALLEL_WINDOW: usize = 64 * 1024 * 1024;

/// Chunks `data` with up to `threads` scoped threads; identical to
/// [`Chunker::chunk_prefix`].
///
/// `search_from` is the resume hint of
/// [`Chunker::step_searching_from`] for the chunk starting at offset 0.
pub(crate) fn chunk_prefix_threads(
    chunker: &Chunker,
    data: &[u8],
    eof: bool,
    threads: usize,
    search_from: usize,
) -> Vec<ChunkBoundary> {
    // Segments shorter than a few maximal chunks rarely resynchronise in time
    // to pay for a thread.
    let min_segment = chunker.config().max_size.saturating_mul(2).max(1);
    let segments = threads.min(data.len() / min_segment).max(1);
    if segments == 1 {
        return chunker.chunk_prefix_searching_from(data, eof, search_from);
    }
    let bounds: Vec<(usize, usize)> = (0..segments)
        .map(|index| {
            (
                data.len() * index / segments,
                data.len() * (index + 1) / segments,
            )
        })
        .collect();

    let speculative: Vec<SegmentChain> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .iter()
            .skip(1)
            .map(|&(start, end)| {
                scope.spawn(move || {
                    SegmentChain::compute(chunker, data, (start, end), eof, search_from)
                })
            })
            .collect();
        let mut chains = Vec::with_capacity(segments);
        if let Some(&(start, end)) = bounds.first() {
            chains.push(SegmentChain::compute(
                chunker,
                data,
                (start, end),
                eof,
                search_from,
            ));
        }
        for handle in handles {
            match handle.join() {
                Ok(chain) => chains.push(chain),
                // a panicking worker is a bug; surface it on this thread
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        chains
    });

    merge_chains(chunker, data, (eof, search_from), &bounds, speculative)
}

/// Boundaries chunked from a segment start until the first cut at or past the
/// segment end (or until the data ran out).
struct SegmentChain {
    chunks: Vec<ChunkBoundary>,
    /// The chain stopped before reaching the segment end (end of data or
    /// undetermined tail).
    stopped_early: bool,
}

impl SegmentChain {
    fn compute(
        chunker: &Chunker,
        data: &[u8],
        (start, end): (usize, usize),
        eof: bool,
        search_from: usize,
    ) -> Self {
        let mut chunks = Vec::new();
        let mut position = start;
        while position < end {
            match step_at(chunker, data, position, eof, search_from) {
                ChunkStep::Chunk(chunk) => {
                    position = chunk.end();
                    chunks.push(chunk);
                }
                ChunkStep::NeedMoreData | ChunkStep::Finished => {
                    return SegmentChain {
                        chunks,
                        stopped_early: true,
                    }
                }
            }
        }
        SegmentChain {
            chunks,
            stopped_early: false,
        }
    }
}

/// A chunk step where the resume hint applies to the chunk at offset 0 only.
fn step_at(
    chunker: &Chunker,
    data: &[u8],
    position: usize,
    eof: bool,
    search_from: usize,
) -> ChunkStep {
    let hint = if position == 0 { search_from } else { 0 };
    chunker.step_searching_from(data, position, eof, hint)
}

fn merge_chains(
    chunker: &Chunker,
    data: &[u8],
    (eof, search_from): (bool, usize),
    bounds: &[(usize, usize)],
    chains: Vec<SegmentChain>,
) -> Vec<ChunkBoundary> {
    let mut result: Vec<ChunkBoundary> = Vec::new();
    let mut position = 0usize;
    for (chain, &(_, segment_end)) in chains.into_iter().zip(bounds) {
        // invariant: `position` is a true chunk start and `result` holds all
        // chunks before it.
        while position < segment_end {
            let shared = chain
                .chunks
                .binary_search_by_key(&position, |chunk| chunk.offset);
            if let Ok(index) = shared {
                let tail = chain.chunks.get(index..).unwrap_or_default();
                result.extend_from_slice(tail);
                position = result.last().map_or(position, ChunkBoundary::end);
                if chain.stopped_early {
                    // the true chain stops at the same place
                    return result;
                }
                break;
            }
            match step_at(chunker, data, position, eof, search_from) {
                ChunkStep::Chunk(chunk) => {
                    position = chunk.end();
                    result.push(chunk);
                }
                ChunkStep::NeedMoreData | ChunkStep::Finished => return result,
            }
        }
    }
    result
}

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
