//! The harness's error type.

use std::io;
use std::process::Command;

/// Anything that stops the harness (a failing tool *run* is not an error: it
/// becomes a `FAILED` cell in the table).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A helper program (mkfs.ext4, qemu-img, ...) failed.
    #[error("{0}")]
    Helper(String),
    /// Bad command-line arguments.
    #[error("{0}")]
    Usage(String),
}

/// Attach a description to an `io::Result`.
pub trait IoContext<T> {
    /// Wrap the error with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, BenchError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Io {
            context: context(),
            source,
        })
    }
}

/// Run a helper program to completion; its stdout on success.
pub fn run_helper(cmd: &mut Command) -> Result<String, BenchError> {
    let out = cmd
        .output()
        .map_err(|e| BenchError::Helper(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Helper(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
