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
//! - Errors are classified by restix-rest and retried only by the one retry
//!   wrapper of `restix_backend::wrap`; the backend says it has flaky
//!   errors (restic's `HasFlakyErrors`), so "not found" from a remote that
//!   is eventually consistent is tried again a few times.
//! - [`RcloneFactory`] plugs the scheme into `restix_backend::registry`.
//!
//! ```no_run
//! use restix_backend::{Backend, FileType};
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

use restix_backend::options::{
    go_duration_syntax_error, go_uint_syntax_error, parse_go_duration, parse_go_uint,
};
use restix_backend::registry::{BackendFactory, Location, OpenContext, OpenError, SchemeOptions};
use restix_backend::shell_split::split_shell_strings;
use restix_backend::Backend;

/// Errors while starting rclone (operations return
/// `restix_backend::BackendError`).
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
        let n = parse_go_uint(value.trim())
            .ok_or_else(|| RcloneError::InvalidOption(go_uint_syntax_error(value.trim())))?;
        self.connections = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1024);
        Ok(())
    }

    /// Set one option by its name without the `rclone.` namespace:
    /// `program` and `args` are split like restic's `SplitShellStrings`
    /// (empty: no words), `timeout` is a Go duration.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), RcloneError> {
        match key {
            "program" | "args" => {
                let words = if value.trim().is_empty() {
                    Vec::new()
                } else {
                    split_shell_strings(value)
                        .map_err(|e| RcloneError::InvalidOption(e.to_string()))?
                };
                if key == "program" {
                    self.program = words;
                } else {
                    self.args = words;
                }
            }
            "connections" => self.set_connections(value)?,
            "timeout" => {
                self.timeout = parse_go_duration(value.trim()).ok_or_else(|| {
                    RcloneError::InvalidOption(go_duration_syntax_error(value.trim()))
                })?;
            }
            other => {
                return Err(RcloneError::InvalidOption(format!(
                    "option rclone.{other} is not known"
                )))
            }
        }
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
    Ok(
        RestBackend::new(transport, location.display(), options.connections)
            .with_flaky_errors(true),
    )
}

/// The `rclone:` scheme for `restix_backend::registry` (options:
/// [`KNOWN_OPTIONS`]). Opening starts rclone.
#[derive(Debug, Clone, Copy, Default)]
pub struct RcloneFactory;

impl BackendFactory for RcloneFactory {
    fn scheme(&self) -> &'static str {
        "rclone"
    }

    fn option_names(&self) -> &'static [&'static str] {
        KNOWN_OPTIONS
    }

    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        RcloneLocation::parse(&location.text)
            .map(|_| ())
            .map_err(|e| OpenError::Location(e.to_string()))
    }

    fn open(
        &self,
        location: &Location,
        options: &SchemeOptions,
        _ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let parsed = RcloneLocation::parse(&location.text)
            .map_err(|e| OpenError::Location(e.to_string()))?;
        let mut rclone_options = RcloneOptions::default();
        for (key, value) in options {
            rclone_options.set(key, value).map_err(|e| match e {
                RcloneError::InvalidOption(m) => OpenError::rejected_option(m),
                other => OpenError::open(other),
            })?;
        }
        let backend = open(&parsed, &rclone_options).map_err(OpenError::open)?;
        Ok(Box::new(backend))
    }
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
        o.set("args", "serve restic --stdio -v").unwrap();
        o.set("program", "'/opt/my rclone'").unwrap();
        o.set("timeout", "1m30s").unwrap();
        assert_eq!(o.timeout, Duration::from_secs(90));
        assert_eq!(
            o.command_line(&l),
            [
                "/opt/my rclone",
                "serve",
                "restic",
                "--stdio",
                "-v",
                "b2prod:bucket/path"
            ]
        );
        assert_eq!(
            o.set("timeout", "soon").unwrap_err().to_string(),
            "time: invalid duration \"soon\""
        );
        assert!(o.set("bogus", "1").is_err());
    }
}
