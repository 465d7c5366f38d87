//! REST backend for restix: restic repositories behind a REST server
//! (restic's rest-server, `rclone serve restic`, ...), spoken with restic's
//! REST protocol v2 (and v1 servers understood).
//!
//! - Locations `rest:http://[user:password@]host:port/path/` and `https://`
//!   ([`RestLocation`]); without credentials in the URL,
//!   `RESTIC_REST_USERNAME` / `RESTIC_REST_PASSWORD` are used.
//! - `-o rest.connections=N` (default 5): that many requests in flight, each
//!   on its own pooled HTTP/1.1 connection ([`RestOptions`]).
//! - TLS (rustls): `--cacert` replaces the system roots, `--tls-client-cert`
//!   authenticates the client, `--insecure-tls` skips verification
//!   ([`TlsSettings`]).
//! - The protocol ([`RestBackend`]) runs over any [`Transport`]: restix-rclone
//!   uses it over HTTP/2 on `rclone serve restic --stdio`'s pipes.
//! - Errors are classified, never retried here: the backend layer's retry
//!   wrapper retries the transient ones ([`backend`] module docs).
//!
//! # Why ureq
//!
//! The [`restix_engine::backend::Backend`] trait is blocking and called from
//! worker threads; ureq is a blocking client with a connection pool and
//! rustls, already in the tree for the S3 backend. reqwest or hyper would
//! bring an async runtime to block on.
//!
//! ```no_run
//! use restix_engine::backend::{Backend, FileType};
//! use restix_rest::{open, RestLocation, RestOptions, TlsSettings};
//!
//! let location = RestLocation::parse("rest:http://127.0.0.1:8000/repo/")?;
//! let backend = open(&location, &RestOptions::default(), &TlsSettings::default())?;
//! for file in backend.list(FileType::Snapshot)? {
//!     println!("{} {}", file.name, file.size);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
mod http;
pub mod location;
pub mod transport;

pub use backend::{RestBackend, CONTENT_TYPE_V1, CONTENT_TYPE_V2};
pub use http::{HttpTransport, TlsSettings};
pub use location::RestLocation;
pub use transport::{Method, Reply, Request, Transport, TransportError};

/// Errors while opening a REST repository (operations return the engine's
/// `BackendError`).
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The `rest:` location cannot be parsed.
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o rest.*` option.
    #[error("{0}")]
    InvalidOption(String),
    /// `--cacert` / `--tls-client-cert` files that cannot be used.
    #[error("{0}")]
    Tls(String),
}

/// The option names of the `rest.` namespace.
pub const KNOWN_OPTIONS: &[&str] = &["connections"];

/// Options of the REST backend (`-o rest.key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOptions {
    /// Requests in flight at once (`rest.connections`, default 5 like restic).
    pub connections: usize,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions { connections: 5 }
    }
}

impl RestOptions {
    /// Set one option by its name without the `rest.` namespace.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), RestError> {
        match key.trim().to_ascii_lowercase().as_str() {
            "connections" => {
                let n = restix_engine::backend::options::parse_go_uint(value.trim()).ok_or_else(
                    || {
                        RestError::InvalidOption(
                            restix_engine::backend::options::go_uint_syntax_error(value.trim()),
                        )
                    },
                )?;
                self.connections = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1024);
            }
            other => {
                return Err(RestError::InvalidOption(format!(
                    "option rest.{other} is not known"
                )))
            }
        }
        Ok(())
    }
}

/// The backend [`open`] returns.
pub type HttpRestBackend = RestBackend<HttpTransport>;

/// Open the REST repository at `location` (no request is sent yet).
pub fn open(
    location: &RestLocation,
    options: &RestOptions,
    tls: &TlsSettings,
) -> Result<HttpRestBackend, RestError> {
    let transport = HttpTransport::new(location, options.connections, tls)?;
    Ok(RestBackend::new(
        transport,
        location.display.clone(),
        options.connections,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let mut o = RestOptions::default();
        assert_eq!(o.connections, 5);
        o.set("connections", "0x10").unwrap();
        assert_eq!(o.connections, 16);
        assert_eq!(
            o.set("connections", "x").unwrap_err().to_string(),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            o.set("bogus", "1").unwrap_err().to_string(),
            "option rest.bogus is not known"
        );
    }
}
