//! The restic repository format as pure data: IDs, encryption, key files,
//! config, pack headers, index/snapshot/tree/lock JSON and compression.
//!
//! No I/O happens here; `restix-engine` moves the bytes.
