//! rclone backend for restix: a restic repository anywhere rclone reaches
//! (some 40 storage services), the way restic does it (restic
//! `internal/backend/rclone`, facts only).
//!
//! - `rclone:<remote>:<path>` ([`RcloneLocation`]): restix starts
//!   `rclone serve restic --stdio --b2-hard-delete <remote>:<path>` and
//!   speaks restic's REST protocol (restix-rest's [`RestBackend`]) over
//!   HTTP/2 on the child's stdin/stdout ([`StdioTransport`]).
//! - Options ([`RcloneOptions`]): `rclone.program` (default `rclone`),
//!   `rclone.args` (default `serve restic --stdio --b2-hard-delete`), both
//!   split like a shell would by the caller; `rclone.connections` (default
//!   5) requests in flight on the one HTTP/2 connection; `rclone.timeout`
//!   (default 1 minute) for rclone to answer its first request.
//! - rclone's stderr is passed on line by line as `rclone: <line>`; the
//!   child runs in its own process group, so Ctrl-C reaches restix only.
//! - On drop the HTTP/2 connection is closed, which closes rclone's stdin;
//!   rclone gets 5 seconds to exit (restic's `waitForExit`), then it is
//!   killed.
//! - A dead child is a permanent error: there is no second connection to
//!   dial (restic: "rclone stdio connection already closed").
//!
//! ```no_run
//! use restix_engine::backend::{Backend, FileType};
//! use restix_rclone::{open, RcloneLocation, RcloneOptions};
//!
//! let location = RcloneLocation::parse("rclone:b2prod:bucket/restic")?;
//! let backend = open(&location, &RcloneOptions::default())?;
//! let snapshots = backend.list(FileType::Snapshot)?;
//! # let _ = snapshots;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod stdio;

use std::time::Duration;

pub use restix_rest::RestBackend;
pub use stdio::StdioTransport;

/// Errors while starting rclone (operations return the engine's
/// `BackendError`).
#[derive(Debug, thiserror::Error)]
pub enum RcloneError {
    /// The `rclone:` location cannot be parsed.
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o rclone.*` option.
    #[error("{0}")]
    InvalidOption(String),
    /// rclone could not be started.
    #[error("{0}")]
    Start(String),
    /// rclone did not answer HTTP (it exited, or the timeout passed).
    #[error("error talking HTTP to rclone: {0}")]
    Talk(String),
    /// The internal tokio runtime could not start.
    #[error("cannot start the rclone runtime: {0}")]
    Runtime(std::io::Error),
}

/// A parsed `rclone:` location: everything after `rclone:` is the remote
/// (`remote:path`, or a local path), handed to rclone unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcloneLocation {
    /// The rclone remote and path (`b2prod:bucket/restic`).
    pub remote: String,
}

impl RcloneLocation {
    /// Parse `rclone:<remote>`.
    pub fn parse(text: &str) -> Result<RcloneLocation, RcloneError> {
        let remote = text.strip_prefix("rclone:").ok_or_else(|| {
            RcloneError::InvalidLocation("invalid rclone backend specification".to_string())
        })?;
        Ok(RcloneLocation {
            remote: remote.to_string(),
        })
    }

    /// The location as written: `rclone:<remote>`.
    pub fn display(&self) -> String {
        format!("rclone:{}", self.remote)
    }
}

/// The option names of the `rclone.` namespace.
pub const KNOWN_OPTIONS: &[&str] = &["program", "args", "connections", "timeout"];

/// Options of the rclone backend (`-o rclone.key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcloneOptions {
    /// `rclone.program`, already split into words (default `["rclone"]`).
    pub program: Vec<String>,
    /// `rclone.args`, already split (default `serve restic --stdio
    /// --b2-hard-delete`). The remote is appended after them.
    pub args: Vec<String>,
    /// Requests in flight (`rclone.connections`, default 5).
    pub connections: usize,
    /// How long rclone may take to answer its first request
    /// (`rclone.timeout`, default 1 minute).
    pub timeout: Duration,
}

impl Default for RcloneOptions {
    fn default() -> Self {
        RcloneOptions {
            program: vec!["rclone".to_string()],
            args: ["serve", "restic", "--stdio", "--b2-hard-delete"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            connections: 5,
            timeout: Duration::from_secs(60),
        }
    }
}

impl RcloneOptions {
    /// Set `rclone.connections` from its text (Go `ParseUint` syntax).
    pub fn set_connections(&mut self, value: &str) -> Result<(), RcloneError> {
        let n = restix_engine::backend::options::parse_go_uint(value.trim()).ok_or_else(|| {
            RcloneError::InvalidOption(restix_engine::backend::options::go_uint_syntax_error(
                value.trim(),
            ))
        })?;
        self.connections = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1024);
        Ok(())
    }

    /// The command line: program words, argument words, then the remote.
    pub fn command_line(&self, location: &RcloneLocation) -> Vec<String> {
        let mut argv = self.program.clone();
        argv.extend(self.args.iter().cloned());
        argv.push(location.remote.clone());
        argv
    }
}

/// The backend [`open`] returns: the REST protocol over rclone's pipes.
pub type RcloneBackend = RestBackend<StdioTransport>;

/// Start rclone for `location`, wait until it answers HTTP, and return the
/// backend. rclone runs until the backend is dropped.
pub fn open(
    location: &RcloneLocation,
    options: &RcloneOptions,
) -> Result<RcloneBackend, RcloneError> {
    let argv = options.command_line(location);
    let transport = StdioTransport::start(&argv, options.timeout)?;
    Ok(RestBackend::new(
        transport,
        location.display(),
        options.connections,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_and_command_line() {
        let l = RcloneLocation::parse("rclone:b2prod:bucket/path").unwrap();
        assert_eq!(l.remote, "b2prod:bucket/path");
        assert_eq!(l.display(), "rclone:b2prod:bucket/path");
        assert!(RcloneLocation::parse("rest:x").is_err());
        let o = RcloneOptions::default();
        assert_eq!(
            o.command_line(&l),
            [
                "rclone",
                "serve",
                "restic",
                "--stdio",
                "--b2-hard-delete",
                "b2prod:bucket/path"
            ]
        );
        let mut o = o;
        o.set_connections("0b11").unwrap();
        assert_eq!(o.connections, 3);
        assert!(o.set_connections("-1").is_err());
    }
}
