//! Per-polynomial lookup tables and the rolling Rabin fingerprint
//! (spec: restic-format §15.4-15.5).

use std::sync::Arc;

use crate::error::ChunkerError;
use crate::polynomial::Polynomial;

/// Window size of the rolling hash in bytes (spec: restic-format §15.1).
pub const WINDOW_SIZE: usize = 64;

/// Lowest polynomial degree the table scheme supports: the top 8 bits of
/// the digest index the reduction table.
const MIN_DEGREE: i32 = 8;
/// Highest supported degree: `digest << 8` must fit into 64 bits.
const MAX_DEGREE: i32 = 56;

#[derive(Debug)]
struct TableData {
    polynomial: Polynomial,
    /// `deg(P) - 8`: shift that extracts the byte overflowing past degree k.
    shift: u32,
    /// `out[b]` = fingerprint of `b` followed by 63 zero bytes.
    out: [u64; 256],
    /// `reduce[b]` = `((b << k) mod P) | (b << k)`.
    reduce: [u64; 256],
}

/// Lookup tables for one polynomial, computed once and shared cheaply
/// (cloning copies an `Arc`).
#[derive(Clone, Debug)]
pub struct ChunkerTables {
    data: Arc<TableData>,
}

impl ChunkerTables {
    /// Computes the tables for `polynomial` (spec: restic-format §15.4).
    ///
    /// Only the degree is checked (it must lie in 9..=56 for the 8-bit table
    /// scheme); irreducibility is the repository loader's business
    /// ([`Polynomial::is_irreducible`]), as in restic.
    pub fn new(polynomial: Polynomial) -> Result<Self, ChunkerError> {
        let degree = polynomial.deg();
        if !(MIN_DEGREE + 1..=MAX_DEGREE).contains(&degree) {
            return Err(ChunkerError::UnsupportedPolynomialDegree { polynomial, degree });
        }
        let mut out = [0u64; 256];
        let mut reduce = [0u64; 256];
        for (byte, (out_entry, reduce_entry)) in out.iter_mut().zip(reduce.iter_mut()).enumerate() {
            let byte = byte as u64;
            let mut hash = Polynomial(byte).modulo(polynomial);
            for _ in 0..WINDOW_SIZE - 1 {
                hash = Polynomial(hash.0 << 8).modulo(polynomial);
            }
            *out_entry = hash.0;
            let high = byte << degree;
            *reduce_entry = Polynomial(high).modulo(polynomial).0 | high;
        }
        Ok(ChunkerTables {
            data: Arc::new(TableData {
                polynomial,
                shift: (degree - 8) as u32,
                out,
                reduce,
            }),
        })
    }

    /// The polynomial these tables belong to.
    pub fn polynomial(&self) -> Polynomial {
        self.data.polynomial
    }

    /// `out[byte]`: fingerprint of `byte` followed by 63 zero bytes.
    pub fn out_entry(&self, byte: u8) -> u64 {
        self.data.out[usize::from(byte)]
    }

    /// `mod[byte]`: `((byte << k) mod P) | (byte << k)`.
    pub fn reduce_entry(&self, byte: u8) -> u64 {
        self.data.reduce[usize::from(byte)]
    }

    /// Appends one byte to a fingerprint without removing anything from the
    /// window: `((digest << 8) | byte) mod P` for a reduced `digest`.
    #[inline(always)]
    pub(crate) fn append(&self, digest: u64, byte: u8) -> u64 {
        append_byte(&self.data.reduce, self.data.shift, digest, byte)
    }

    /// Fingerprint of the bytes of a window: `Σ w_j · x^(8·(n−1−j)) mod P`
    /// (spec: restic-format §15.5). For exactly 64 bytes this is `F(p)`.
    pub fn fingerprint(&self, window: &[u8]) -> u64 {
        window
            .iter()
            .fold(0, |digest, &byte| self.append(digest, byte))
    }

    /// `F(end)`: fingerprint of `data[end-64..end)`; `None` when `end < 64`
    /// or `end > data.len()` (spec: restic-format §15.8).
    pub fn window_fingerprint_at(&self, data: &[u8], end: usize) -> Option<u64> {
        let window = data.get(end.checked_sub(WINDOW_SIZE)?..end)?;
        Some(self.fingerprint(window))
    }

    /// All end offsets `p` (64 <= p <= len) with `F(p) & mask == 0`, in
    /// increasing order. Plain single-lane scan, meant for tests and tools.
    pub fn candidates(&self, data: &[u8], mask: u64) -> Vec<usize> {
        let mut found = Vec::new();
        let Some(first) = data.get(..WINDOW_SIZE) else {
            return found;
        };
        let mut digest = self.fingerprint(first);
        if digest & mask == 0 {
            found.push(WINDOW_SIZE);
        }
        let leaving = data.iter();
        let entering = data.iter().skip(WINDOW_SIZE);
        for (index, (&old, &new)) in leaving.zip(entering).enumerate() {
            digest = self.roll(digest, old, new);
            if digest & mask == 0 {
                found.push(index + WINDOW_SIZE + 1);
            }
        }
        found
    }

    /// One rolling step: remove `old` (the byte 64 positions back), append `new`.
    #[inline(always)]
    pub(crate) fn roll(&self, digest: u64, old: u8, new: u8) -> u64 {
        self.append(digest ^ self.data.out[usize::from(old)], new)
    }

    pub(crate) fn raw(&self) -> (&[u64; 256], &[u64; 256], u32) {
        (&self.data.out, &self.data.reduce, self.data.shift)
    }
}

/// `((digest << 8) | byte) ^ reduce[top byte of digest]` (spec: restic-format §15.5).
#[inline(always)]
pub(crate) fn append_byte(reduce: &[u64; 256], shift: u32, digest: u64, byte: u8) -> u64 {
    // digest < 2^k, so the shifted value is below 256; the mask only lets
    // the compiler drop the bounds check.
    let index = ((digest >> shift) & 0xFF) as usize;
    ((digest << 8) | u64::from(byte)) ^ reduce[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spot_values() {
        // [tables-pol-3da3358b4dc173] in chunker_vectors.txt
        let tables = ChunkerTables::new(Polynomial::RESTIC_TEST).unwrap();
        let out = [
            (0, 0x0000000000000000),
            (1, 0x0017eb4232e19216),
            (2, 0x001275b1ee8ee55f),
            (3, 0x00059ef3dc6f7749),
            (128, 0x0005b54453ea6b5c),
            (255, 0x000b80b98cecc39a),
        ];
        for (byte, value) in out {
            assert_eq!(tables.out_entry(byte), value, "out[{byte}]");
        }
        let reduce = [
            (0, 0x0000000000000000),
            (1, 0x003da3358b4dc173),
            (2, 0x0046e55e9dd64395),
            (3, 0x007b466b169b82e6),
            (128, 0x1012ab55b228ad4d),
            (255, 0x1ff7ac8a5af476a7),
        ];
        for (byte, value) in reduce {
            assert_eq!(tables.reduce_entry(byte), value, "mod[{byte}]");
        }
    }

    #[test]
    fn rejects_unsupported_degrees() {
        for pol in [0u64, 1, 0x1ff, 1 << 57, u64::MAX] {
            assert!(ChunkerTables::new(Polynomial(pol)).is_err(), "{pol:#x}");
        }
        assert!(ChunkerTables::new(Polynomial(0x3ff)).is_ok());
    }

    #[test]
    fn rolling_equals_direct_fingerprint() {
        let tables = ChunkerTables::new(Polynomial::RESTIC_TEST).unwrap();
        let data: Vec<u8> = (0u32..1000)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut digest = tables.fingerprint(&data[..64]);
        for end in 65..=data.len() {
            digest = tables.roll(digest, data[end - 65], data[end - 1]);
            assert_eq!(
                Some(digest),
                tables.window_fingerprint_at(&data, end),
                "end {end}"
            );
        }
        assert_eq!(tables.window_fingerprint_at(&data, 63), None);
        assert_eq!(tables.window_fingerprint_at(&data, 1001), None);
        // one byte after the reset marker: ((1 << 8) | b) mod P
        assert_eq!(tables.fingerprint(&[1, 0x8c]), 0x18c);
    }
}
