//! The restix engine: storage backends, the repository (keys, index, locks,
//! blob load/save), the pack writer with deduplication, the archiver that turns
//! files into snapshots, the restorer, and maintenance (forget, prune, check).
//!
//! Layering follows restic's `internal/`: `backend` knows bytes and names,
//! `repository` knows encryption, packs and the index, `archiver`/`restorer`
//! know files and trees.

pub mod archiver;
pub mod backend;
pub mod check;
pub mod dump;
pub mod forget;
pub mod prune;
pub mod repository;
pub mod restorer;
pub mod selection;
pub mod walker;
