//! Test support for backends (the `testing` feature): the conformance suite
//! every backend must pass ([`conformance`]), the killed-writer check
//! ([`killed_writer`]), and small helpers for deterministic test data.
//!
//! restic's `internal/backend/test` is the model: one suite, run by each
//! backend's tests against a real server.

pub mod conformance;
pub mod killed_writer;

/// A 64-hex file name derived from `n` (distinct for distinct `n`; the first
/// two hex digits vary, so packs land in different `data/xx` folders).
pub fn id(n: u64) -> String {
    let mixed = u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ 0x5bd1_e995;
    format!("{mixed:032x}{:032x}", u128::from(n))
}

/// `len` deterministic pseudo-random bytes for `seed` (xorshift64).
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = x.to_le_bytes();
        let take = (len - out.len()).min(word.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(id).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| crate::is_id_name(i)));
        let prefixes: std::collections::BTreeSet<&str> = ids.iter().map(|i| &i[..2]).collect();
        assert!(prefixes.len() > 100);
        assert_eq!(data(1, 10), data(1, 10));
        assert_ne!(data(1, 10), data(2, 10));
        assert_eq!(data(3, 13).len(), 13);
    }
}
