//! Deterministic synthetic file content, streamed in bounded buffers.
//!
//! Data sets are built from a seeded generator so two builds with the same
//! size give the same bytes, and nothing larger than one buffer is ever held
//! in memory.

use std::io::{self, Write};

/// SplitMix64: tiny, fast, good enough for benchmark filler (not crypto).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` > 0; slight modulo bias is fine here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// What a synthetic file contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Random bytes: incompressible, no duplicate chunks.
    Random,
    /// Lines of words from a small vocabulary: compresses about 3:1, like
    /// source code or documents.
    Text,
    /// Log-like records with counters and long repeated runs: compresses
    /// very well.
    Records,
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "backup",
    "snapshot",
    "repository",
    "index",
    "pack",
    "blob",
    "tree",
    "chunk",
    "restore",
    "prune",
    "forget",
    "lock",
    "key",
    "config",
    "data",
    "file",
    "folder",
    "image",
    "disk",
    "cluster",
    "offset",
    "length",
    "virtual",
    "machine",
    "server",
    "client",
    "network",
    "error",
    "warning",
    "info",
    "debug",
    "request",
    "response",
    "status",
    "value",
    "a",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "with",
    "as",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "from",
    "or",
    "which",
    "but",
    "not",
    "are",
    "have",
    "one",
    "all",
    "were",
    "when",
    "fn",
    "let",
    "mut",
    "impl",
    "struct",
    "enum",
    "match",
    "return",
    "self",
    "pub",
    "use",
    "if",
    "else",
    "while",
    "loop",
    "break",
    "continue",
    "true",
    "false",
    "none",
    "some",
];

/// Write `len` bytes of `kind` content from `rng` into `out`.
pub fn write_content(
    out: &mut impl Write,
    kind: Kind,
    len: u64,
    rng: &mut SplitMix64,
) -> io::Result<()> {
    const BUF: usize = 1 << 20;
    let mut buf = Vec::with_capacity(BUF + 256);
    let mut left = len;
    let mut record = 0u64;
    while left > 0 {
        buf.clear();
        let want = usize::try_from(left.min(BUF as u64)).unwrap_or(BUF);
        match kind {
            Kind::Random => {
                buf.resize(want, 0);
                rng.fill(&mut buf);
            }
            Kind::Text => {
                while buf.len() < want {
                    let words = 4 + rng.below(12);
                    for i in 0..words {
                        let w = WORDS
                            .get(usize::try_from(rng.below(WORDS.len() as u64)).unwrap_or(0))
                            .copied()
                            .unwrap_or("x");
                        if i > 0 {
                            buf.push(b' ');
                        }
                        buf.extend_from_slice(w.as_bytes());
                    }
                    buf.push(b'\n');
                }
                buf.truncate(want);
            }
            Kind::Records => {
                while buf.len() < want {
                    record += 1;
                    let level = ["INFO", "WARN", "DEBUG"]
                        .get(usize::try_from(rng.below(3)).unwrap_or(0))
                        .copied()
                        .unwrap_or("INFO");
                    let line = format!(
                        "2026-11-22T{:02}:{:02}:{:02}Z {level} worker={} request={record} latency_us={} path=/api/v1/objects/{}\n",
                        (record / 3600) % 24,
                        (record / 60) % 60,
                        record % 60,
                        rng.below(16),
                        rng.below(100_000),
                        rng.below(1000)
                    );
                    buf.extend_from_slice(line.as_bytes());
                    if record.is_multiple_of(64) {
                        // Runs of zeros, like preallocated or padded regions.
                        buf.resize(buf.len() + 4096, 0);
                    }
                }
                buf.truncate(want);
            }
        }
        out.write_all(&buf)?;
        left -= want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_has_the_requested_length_and_is_deterministic() {
        for kind in [Kind::Random, Kind::Text, Kind::Records] {
            let mut a = Vec::new();
            write_content(&mut a, kind, 3 << 20 | 17, &mut SplitMix64::new(7)).unwrap();
            assert_eq!(a.len(), 3 << 20 | 17);
            let mut b = Vec::new();
            write_content(&mut b, kind, 3 << 20 | 17, &mut SplitMix64::new(7)).unwrap();
            assert_eq!(a, b);
        }
    }
}
