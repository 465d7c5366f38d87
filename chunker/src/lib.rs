//! restic's content-defined chunker (Rabin fingerprints over a 64-byte window),
//! bit-exact with `github.com/restic/chunker` as used by restic
//! (spec: restic-format §15).
//!
//! A file is cut into chunks of 512 KiB to 8 MiB. The cut positions depend on
//! the content: a rolling Rabin fingerprint over the last 64 bytes, computed
//! modulo the repository's random irreducible polynomial of degree 53 (stored
//! in the repository config), marks a cut wherever its low 20 bits are zero.
//! Because the fingerprint at a position depends only on the 64 bytes before
//! it, identical data yields identical chunks wherever it sits in a file, and
//! the search can run on many threads at once ([`ParallelChunker`]).
//!
//! * [`Polynomial`]: GF(2) arithmetic, irreducibility test, random
//!   polynomials for `init`, hex form of the config file.
//! * [`Chunker`]: sequential exact chunking of slices ([`Chunker::chunk_slice`],
//!   [`Chunker::chunk_prefix`] for data that arrives piecewise) and of
//!   readers ([`StreamChunker`]).
//! * [`ParallelChunker`] / [`ParallelChunkStream`]: the same boundaries with
//!   N threads, for large files read in big windows.
//! * Runs of zero bytes are detected with a word-wise scan instead of being
//!   hashed; [`ZERO_CHUNK_ID`] is the ID of the 512 KiB zero chunk such runs
//!   produce.
//!
//! ```
//! use restix_chunker::{Chunker, Polynomial};
//!
//! let polynomial: Polynomial = "3da3358b4dc173".parse()?;
//! assert!(polynomial.is_irreducible());
//! let chunker = Chunker::new(polynomial)?;
//!
//! // 3 MiB of zeros: cut every 512 KiB (all-zero windows have fingerprint 0)
//! let data = vec![0u8; 3 * 1024 * 1024];
//! let chunks = chunker.chunk_slice(&data);
//! assert_eq!(chunks.len(), 6);
//! assert!(chunks.iter().all(|c| c.length == restix_chunker::MIN_SIZE));
//!
//! // the same with two threads, and streaming from a reader
//! assert_eq!(chunker.chunk_slice_parallel(&data, 2), chunks);
//! let mut stream = chunker.chunk_reader(&data[..]);
//! let mut lengths = Vec::new();
//! while let Some(chunk) = stream.next_chunk()? {
//!     lengths.push(chunk.data.len());
//! }
//! assert_eq!(lengths.len(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunker;
mod error;
mod parallel;
mod polynomial;
mod search;
mod speculative;
mod stream;
mod tables;

#[cfg(test)]
mod go_rng_cooked;
#[cfg(test)]
mod vector_tests;

pub use crate::chunker::{ChunkBoundary, Chunker, ChunkerConfig, MAX_SIZE, MIN_SIZE, SPLIT_MASK};
pub use crate::error::ChunkerError;
pub use crate::parallel::{
    OwnedWindow, ParallelChunkStream, ParallelChunker, WindowStream, DEFAULT_PARALLEL_WINDOW,
};
pub use crate::polynomial::{Polynomial, PolynomialError, RANDOM_POLYNOMIAL_MAX_TRIES};
pub use crate::stream::{Chunk, ChunkBatch, OwnedChunk, StreamChunker};
pub use crate::tables::{ChunkerTables, WINDOW_SIZE};

/// SHA-256 of 512 KiB (`MIN_SIZE`) of zero bytes, i.e. the blob ID of every
/// chunk cut inside a long zero run (spec: restic-format §15.8).
pub const ZERO_CHUNK_ID_HEX: &str =
    "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541";

/// [`ZERO_CHUNK_ID_HEX`] as bytes.
pub const ZERO_CHUNK_ID: [u8; 32] = [
    0x07, 0x85, 0x4d, 0x2f, 0xef, 0x29, 0x7a, 0x06, 0xba, 0x81, 0x68, 0x5e, 0x66, 0x0c, 0x33, 0x2d,
    0xe3, 0x6d, 0x5d, 0x18, 0xd5, 0x46, 0x92, 0x7d, 0x30, 0xda, 0xad, 0x6d, 0x7f, 0xda, 0x15, 0x41,
];

/// The SHA-256 of `chunk` when it is the 512 KiB all-zero chunk, without
/// hashing it; `None` otherwise (callers then hash normally).
pub fn known_chunk_id(chunk: &[u8]) -> Option<[u8; 32]> {
    (chunk.len() == MIN_SIZE && is_all_zero(chunk)).then_some(ZERO_CHUNK_ID)
}

/// Whether every byte of `data` is zero (word-wise; stops at the first
/// non-zero word).
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(8);
    let words_zero = words.all(|word| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        u64::from_ne_bytes(bytes) == 0
    });
    words_zero && words.remainder().iter().all(|&byte| byte == 0)
}
