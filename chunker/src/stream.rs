//! Chunking of `std::io::Read` streams with bounded memory.

use std::io::{self, Read};

use crate::chunker::{ChunkBoundary, Chunker};
use crate::speculative::chunk_prefix_threads;

/// Smallest read buffer allocation; grown on demand up to the window size so
/// that small files do not cost a full window.
const INITIAL_BUFFER: usize = 64 * 1024;

/// A chunk borrowed from a stream chunker's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Offset of the chunk in the stream (file).
    pub offset: u64,
    /// The chunk's bytes.
    pub data: &'a [u8],
    /// The chunker digest at the cut (spec: restic-format §15.7).
    pub cut: u64,
}

/// An owned chunk, as yielded by the [`Iterator`] impl of [`StreamChunker`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedChunk {
    /// Offset of the chunk in the stream (file).
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
    /// The chunker digest at the cut (spec: restic-format §15.7).
    pub cut: u64,
}

/// A batch of consecutive chunks of a stream that share one buffer.
#[derive(Clone, Copy, Debug)]
pub struct ChunkBatch<'a> {
    /// Stream offset of `data[0]`.
    pub base_offset: u64,
    /// Buffer holding all chunks of the batch (and possibly an unfinished tail).
    pub data: &'a [u8],
    /// The chunks, with offsets relative to `data`; never empty.
    pub chunks: &'a [ChunkBoundary],
}

impl<'a> ChunkBatch<'a> {
    /// Iterates the chunks of the batch with stream offsets and bytes.
    pub fn iter(&self) -> impl Iterator<Item = Chunk<'a>> + 'a {
        let data = self.data;
        let base = self.base_offset;
        self.chunks.iter().map(move |boundary| Chunk {
            offset: base + boundary.offset as u64,
            data: data
                .get(boundary.offset..boundary.end())
                .unwrap_or_default(),
            cut: boundary.cut,
        })
    }

    /// Total bytes in the batch's chunks.
    pub fn byte_len(&self) -> usize {
        self.chunks.last().map_or(0, ChunkBoundary::end)
    }
}

/// Read buffer that keeps the unfinished tail of a stream window.
#[derive(Debug)]
pub(crate) struct WindowBuffer<R> {
    reader: R,
    buffer: Vec<u8>,
    /// Valid bytes in `buffer`.
    filled: usize,
    /// Bytes at the front of `buffer` that belong to already returned chunks.
    consumed: usize,
    /// Stream offset of `buffer[0]`.
    base_offset: u64,
    window: usize,
    eof: bool,
    /// Resume hint for the unfinished chunk: `(chunk start, searched end)`
    /// as stream offsets; no end offset below `searched end` is a cut
    /// candidate for the chunk starting at `chunk start`.
    searched: Option<(u64, u64)>,
}

impl<R: Read> WindowBuffer<R> {
    pub(crate) fn new(reader: R, window: usize) -> Self {
        WindowBuffer {
            reader,
            buffer: Vec::new(),
            filled: 0,
            consumed: 0,
            base_offset: 0,
            window,
            eof: false,
            searched: None,
        }
    }

    /// Chunks the buffered bytes (which start at a chunk boundary) with up
    /// to `threads` threads, without re-searching the part of an unfinished
    /// chunk that an earlier call already searched.
    pub(crate) fn chunk_buffered(
        &mut self,
        chunker: &Chunker,
        threads: usize,
    ) -> Vec<ChunkBoundary> {
        let search_from = match self.searched {
            Some((chunk_start, searched_end)) if chunk_start == self.base_offset => {
                usize::try_from(searched_end - chunk_start).unwrap_or(0)
            }
            _ => 0,
        };
        let chunks = chunk_prefix_threads(chunker, self.data(), self.eof, threads, search_from);
        let tail_start = chunks.last().map_or(0, ChunkBoundary::end);
        // An unfinished tail was searched for cuts at every end offset up to
        // the buffered length (spec: restic-format §15.8).
        self.searched = Some((
            self.base_offset + tail_start as u64,
            self.base_offset + self.filled as u64 + 1,
        ));
        chunks
    }

    /// Drops consumed bytes and reads until the window is full or the stream ends.
    pub(crate) fn refill(&mut self) -> io::Result<()> {
        if self.consumed > 0 {
            self.buffer.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.base_offset += self.consumed as u64;
            self.consumed = 0;
        }
        while !self.eof && self.filled < self.window {
            if self.filled == self.buffer.len() {
                let grown = (self.buffer.len() * 2).max(INITIAL_BUFFER).min(self.window);
                self.buffer.resize(grown, 0);
            }
            let free = self.buffer.get_mut(self.filled..).unwrap_or_default();
            match self.reader.read(free) {
                Ok(0) => self.eof = true,
                Ok(read) => self.filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    pub(crate) fn data(&self) -> &[u8] {
        self.buffer.get(..self.filled).unwrap_or_default()
    }

    pub(crate) fn consume(&mut self, bytes: usize) {
        self.consumed = bytes.min(self.filled);
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub(crate) fn into_reader(self) -> R {
        self.reader
    }
}

/// Sequential chunker over a reader, one chunk at a time.
///
/// Memory is bounded by the window size (default `2 * max_size`, 16 MiB
/// for restic's parameters), allocated on demand. Produces exactly
/// [`Chunker::chunk_slice`]'s chunks of the whole stream.
#[derive(Debug)]
pub struct StreamChunker<R> {
    chunker: Chunker,
    buffer: WindowBuffer<R>,
    pending: Vec<ChunkBoundary>,
    next_pending: usize,
}

// `chunk_reader` lives here, beside the type it returns, so that the core
// chunker does not import the stream built on it.
impl Chunker {
    /// Streams chunks of a reader with bounded memory (see [`StreamChunker`]).
    pub fn chunk_reader<R: std::io::Read>(&self, reader: R) -> StreamChunker<R> {
        StreamChunker::new(self.clone(), reader)
    }
}

impl<R: Read> StreamChunker<R> {
    /// A stream chunker with a window of `2 * max_size` bytes.
    pub fn new(chunker: Chunker, reader: R) -> Self {
        let window = chunker.config().max_size.saturating_mul(2);
        Self::with_window(chunker, reader, window)
    }

    /// A stream chunker with an explicit window (raised to at least `max_size`).
    pub fn with_window(chunker: Chunker, reader: R, window: usize) -> Self {
        let window = window.max(chunker.config().max_size);
        StreamChunker {
            chunker,
            buffer: WindowBuffer::new(reader, window),
            pending: Vec::new(),
            next_pending: 0,
        }
    }

    /// The next chunk, borrowed from the internal buffer; `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk<'_>>> {
        if self.next_pending >= self.pending.len() {
            let consumed = self.pending.last().map_or(0, ChunkBoundary::end);
            self.buffer.consume(consumed);
            self.pending.clear();
            self.next_pending = 0;
            self.buffer.refill()?;
            self.pending = self.buffer.chunk_buffered(&self.chunker, 1);
            if self.pending.is_empty() {
                return Ok(None);
            }
        }
        let Some(boundary) = self.pending.get(self.next_pending).copied() else {
            return Ok(None);
        };
        self.next_pending += 1;
        Ok(Some(Chunk {
            offset: self.buffer.base_offset() + boundary.offset as u64,
            data: self
                .buffer
                .data()
                .get(boundary.offset..boundary.end())
                .unwrap_or_default(),
            cut: boundary.cut,
        }))
    }

    /// Copies the next chunk into `out` (cleared first) and returns its
    /// stream offset and cut value; `None` at the end.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<Option<(u64, u64)>> {
        out.clear();
        Ok(self.next_chunk()?.map(|chunk| {
            out.extend_from_slice(chunk.data);
            (chunk.offset, chunk.cut)
        }))
    }

    /// Gives back the reader.
    pub fn into_inner(self) -> R {
        self.buffer.into_reader()
    }
}

impl<R: Read> Iterator for StreamChunker<R> {
    type Item = io::Result<OwnedChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(Some(chunk)) => Some(Ok(OwnedChunk {
                offset: chunk.offset,
                data: chunk.data.to_vec(),
                cut: chunk.cut,
            })),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }
}
