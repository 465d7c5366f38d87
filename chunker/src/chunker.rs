//! The exact sequential chunker (spec: restic-format §15.6-15.8).

use crate::error::ChunkerError;
use crate::polynomial::Polynomial;
use crate::search::first_candidate;
use crate::tables::{ChunkerTables, WINDOW_SIZE};

/// restic's minimum chunk size, 512 KiB (spec: restic-format §15.1).
pub const MIN_SIZE: usize = 512 * 1024;
/// restic's maximum chunk size, 8 MiB.
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
/// restic's split mask, 20 "average bits" (~1 MiB mean chunk size).
pub const SPLIT_MASK: u64 = (1 << 20) - 1;

/// Chunk size bounds and split mask. restic always uses [`Default`]; other
/// values exist for the upstream test vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Minimum chunk length (except for the last chunk); must be >= 64.
    pub min_size: usize,
    /// Maximum chunk length; must be >= `min_size`.
    pub max_size: usize,
    /// A position is a cut candidate when `fingerprint & split_mask == 0`.
    pub split_mask: u64,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            min_size: MIN_SIZE,
            max_size: MAX_SIZE,
            split_mask: SPLIT_MASK,
        }
    }
}

impl ChunkerConfig {
    /// Sets the split mask to `2^bits - 1` (upstream `SetAverageBits`).
    pub fn with_average_bits(mut self, bits: u32) -> Self {
        self.split_mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        self
    }

    fn validate(&self) -> Result<(), ChunkerError> {
        // spec: restic-format §15.8: the window formulation (and restic's
        // `pre = MinSize - 64`) needs MinSize >= 64.
        if self.min_size < WINDOW_SIZE || self.max_size < self.min_size {
            return Err(ChunkerError::InvalidSizes {
                min_size: self.min_size,
                max_size: self.max_size,
            });
        }
        Ok(())
    }
}

/// One chunk found in a slice: `data[offset..offset + length]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkBoundary {
    /// Start of the chunk, relative to the slice (or stream window) given.
    pub offset: usize,
    /// Length of the chunk in bytes.
    pub length: usize,
    /// The chunker's digest when the chunk ended (spec: restic-format §15.7);
    /// restic never uses it, it only matters for upstream test vectors.
    pub cut: u64,
}

impl ChunkBoundary {
    /// One past the last byte of the chunk (`offset + length`).
    pub fn end(&self) -> usize {
        self.offset + self.length
    }
}

/// Outcome of looking for the chunk that starts at a given offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkStep {
    /// The chunk is fully determined by the data available.
    Chunk(ChunkBoundary),
    /// More input is needed to decide where the chunk ends.
    NeedMoreData,
    /// End of input at a chunk boundary: no further chunk.
    Finished,
}

/// restic's content-defined chunker for one polynomial and configuration.
///
/// Stateless apart from the shared tables: each call chunks the given data
/// as one file (the chunker state is reset at the start of every file, spec:
/// restic-format §13). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Chunker {
    tables: ChunkerTables,
    config: ChunkerConfig,
}

impl Chunker {
    /// A chunker with restic's parameters (window 64, min 512 KiB, max
    /// 8 MiB, mask `0xFFFFF`).
    pub fn new(polynomial: Polynomial) -> Result<Self, ChunkerError> {
        Self::with_config(polynomial, ChunkerConfig::default())
    }

    /// A chunker with explicit sizes and mask.
    pub fn with_config(
        polynomial: Polynomial,
        config: ChunkerConfig,
    ) -> Result<Self, ChunkerError> {
        Self::from_tables(ChunkerTables::new(polynomial)?, config)
    }

    /// A chunker reusing already computed tables.
    pub fn from_tables(tables: ChunkerTables, config: ChunkerConfig) -> Result<Self, ChunkerError> {
        config.validate()?;
        Ok(Chunker { tables, config })
    }

    /// The polynomial in use.
    pub fn polynomial(&self) -> Polynomial {
        self.tables.polynomial()
    }

    /// The configuration in use.
    pub fn config(&self) -> ChunkerConfig {
        self.config
    }

    /// The shared lookup tables.
    pub fn tables(&self) -> &ChunkerTables {
        &self.tables
    }

    /// Chunks `data` as one complete file: every chunk, including the final
    /// short one. Empty input gives no chunks.
    pub fn chunk_slice(&self, data: &[u8]) -> Vec<ChunkBoundary> {
        self.chunk_prefix(data, true)
    }

    /// Chunk end offsets of `data` (complete file), i.e. `chunk_slice` ends.
    pub fn boundaries(&self, data: &[u8]) -> Vec<usize> {
        self.chunk_slice(data)
            .iter()
            .map(ChunkBoundary::end)
            .collect()
    }

    /// Chunks the beginning of a file whose first `data.len()` bytes are
    /// given. With `eof == false` only chunks whose end is already certain
    /// are returned; the caller keeps `data[last.end()..]`, appends more
    /// input and calls again with that tail as the start of `data`. With
    /// `eof == true` this is [`chunk_slice`](Self::chunk_slice).
    pub fn chunk_prefix(&self, data: &[u8], eof: bool) -> Vec<ChunkBoundary> {
        self.chunk_prefix_searching_from(data, eof, 0)
    }

    /// [`chunk_prefix`](Self::chunk_prefix) where the first chunk's cut
    /// search starts at end offset `search_from` (see
    /// [`step_searching_from`](Self::step_searching_from)).
    pub(crate) fn chunk_prefix_searching_from(
        &self,
        data: &[u8],
        eof: bool,
        search_from: usize,
    ) -> Vec<ChunkBoundary> {
        let mut chunks = Vec::new();
        let mut step = self.step_searching_from(data, 0, eof, search_from);
        while let ChunkStep::Chunk(chunk) = step {
            chunks.push(chunk);
            step = self.step(data, chunk.end(), eof);
        }
        chunks
    }

    /// The chunk that starts at the beginning of `data`, if determined
    /// (see [`chunk_prefix`](Self::chunk_prefix) for `eof`).
    pub fn next_boundary(&self, data: &[u8], eof: bool) -> Option<ChunkBoundary> {
        match self.step(data, 0, eof) {
            ChunkStep::Chunk(chunk) => Some(chunk),
            ChunkStep::NeedMoreData | ChunkStep::Finished => None,
        }
    }

    /// Finds the chunk starting at `start` (a true chunk start of the file
    /// whose bytes `data` holds from offset 0) (spec: restic-format §15.8).
    pub(crate) fn step(&self, data: &[u8], start: usize, eof: bool) -> ChunkStep {
        self.step_searching_from(data, start, eof, 0)
    }

    /// [`step`](Self::step) for a caller that already knows that no end
    /// offset below `search_from` is a cut candidate for this chunk (an
    /// earlier call on a shorter prefix of the same data returned
    /// `NeedMoreData` after searching up to its length).
    pub(crate) fn step_searching_from(
        &self,
        data: &[u8],
        start: usize,
        eof: bool,
        search_from: usize,
    ) -> ChunkStep {
        let len = data.len();
        if start >= len {
            return if eof {
                ChunkStep::Finished
            } else {
                ChunkStep::NeedMoreData
            };
        }
        let config = &self.config;
        let lo = start.saturating_add(config.min_size).max(search_from);
        let max_end = start.saturating_add(config.max_size);
        let hi = max_end.min(len);
        if lo <= hi {
            if let Some(end) = first_candidate(&self.tables, data, lo, hi, config.split_mask) {
                return ChunkStep::Chunk(self.boundary(data, start, end));
            }
        }
        if max_end <= len {
            // forced cut at MaxSize
            return ChunkStep::Chunk(self.boundary(data, start, max_end));
        }
        if !eof {
            return ChunkStep::NeedMoreData;
        }
        ChunkStep::Chunk(ChunkBoundary {
            offset: start,
            length: len - start,
            cut: self.final_cut(data.get(start..).unwrap_or_default()),
        })
    }

    /// A non-final chunk `[start, end)`: its cut value is `F(end)`.
    fn boundary(&self, data: &[u8], start: usize, end: usize) -> ChunkBoundary {
        ChunkBoundary {
            offset: start,
            length: end - start,
            cut: self
                .tables
                .window_fingerprint_at(data, end)
                .unwrap_or_default(),
        }
    }

    /// The digest at end of input for a final chunk (spec: restic-format §15.7).
    pub(crate) fn final_cut(&self, chunk: &[u8]) -> u64 {
        let skipped = self.config.min_size - WINDOW_SIZE;
        match chunk.get(skipped..) {
            None => 1,
            Some(hashed) if hashed.len() < WINDOW_SIZE => {
                // the reset marker byte 1 is still inside the window
                hashed
                    .iter()
                    .fold(1, |digest, &byte| self.tables.append(digest, byte))
            }
            Some(hashed) => self
                .tables
                .fingerprint(hashed.get(hashed.len() - WINDOW_SIZE..).unwrap_or_default()),
        }
    }
}
