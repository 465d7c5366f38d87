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
//!
//! Below both `stream.rs` (whose window buffer chunks with it) and
//! `parallel.rs` (the public API over it), so neither imports the other for it.

use crate::chunker::{ChunkBoundary, ChunkStep, Chunker};

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
    // A speculative chain usually meets the true one within a chunk or two
    // (average 1 MiB); segments of at least one maximal chunk keep that
    // sequential catch-up in the merge small.
    let min_segment = chunker.config().max_size.max(1);
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
