//! Bandwidth limits as a wrapper around any backend (`--limit-upload`, `--limit-download`).
