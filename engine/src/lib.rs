//! The restix engine: storage backends, the repository (keys, index, locks,
//! blob load/save), the pack writer with deduplication, the archiver that turns
//! files into snapshots, the restorer, and maintenance (forget, prune, check).
//!
//! Layering follows restic's `internal/`: `backend` knows bytes and names,
//! `repository` knows encryption, packs and the index, `archiver`/`restorer`
//! know files and trees.

pub mod archiver;
/// Storage backends live in their own crate (`restix-backend`); re-exported
/// so `restix_engine::backend::...` keeps working.
pub use restix_backend as backend;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dry_run;
pub mod dump;
pub mod dump_zip;
pub mod find;
pub mod forget;
pub mod go_error;
pub use restix_backend::go_path;
pub mod image;
pub mod keys;
pub mod migrate;
pub mod path_pattern;
mod poison;
pub mod prune;
pub mod recover;
pub mod repair;
pub mod repository;
pub mod restorer;
pub mod rewrite;
pub mod selection;
mod semaphore;
pub mod size;
pub mod stats;
pub mod vfs;
pub mod walker;
