//! Fuzz targets for every restix parser of outside bytes.
//!
//! Each target is a plain function in [`targets`] taking the fuzzer's bytes;
//! the binaries in `fuzz_targets/` only call them. The same file is compiled
//! into `tests/tests/reliability_fuzz_regressions.rs`, which replays the
//! inputs saved under `fuzz/regressions/<target>/` on stable Rust.
//!
//! ```no_run
//! restix_fuzz::targets::tree(br#"{"nodes":[]}"#);
//! ```
//!
//! Run them with `scripts/fuzz.sh [seconds per target]`.

/// The qcow2 API the targets use (the tests crate reaches it through
/// `restix_engine::image` instead).
pub mod qcow2_api {
    pub use restix_qcow2::{DiskImage, Qcow2Image};
}

#[path = "targets.rs"]
pub mod targets;
