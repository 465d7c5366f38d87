//! Errors constructing a chunker; below `tables.rs` and `chunker.rs`, which
//! both return them.

use crate::polynomial::Polynomial;

/// Errors constructing a chunker.
#[derive(Debug, thiserror::Error)]
pub enum ChunkerError {
    /// The table scheme needs a polynomial degree in 9..=56 (restic: 53).
    #[error("unsupported chunker polynomial {polynomial}: degree {degree} is outside 9..=56")]
    UnsupportedPolynomialDegree {
        /// The polynomial given.
        polynomial: Polynomial,
        /// Its degree.
        degree: i32,
    },
    /// `min_size` must be at least 64 and at most `max_size`.
    #[error("invalid chunk size bounds: min {min_size}, max {max_size}")]
    InvalidSizes {
        /// The minimum chunk size given.
        min_size: usize,
        /// The maximum chunk size given.
        max_size: usize,
    },
}
