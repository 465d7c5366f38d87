//! restic's content-defined chunker (Rabin fingerprints over a 64-byte window).
