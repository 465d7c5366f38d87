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
//!   ([`TlsOptions`], the agent of `restix_backend::http`).
//! - [`RestFactory`] plugs the scheme into `restix_backend::registry`; the
//!   program opens `rest:` through the registry and `restix_backend::wrap`.
//! - The protocol ([`RestBackend`]) runs over any [`Transport`]: restix-rclone
//!   uses it over HTTP/2 on `rclone serve restic --stdio`'s pipes.
//! - Errors are classified, never retried here: the backend layer's retry
//!   wrapper retries the transient ones ([`backend`] module docs).
//!
//! # Why ureq
//!
//! The [`restix_backend::Backend`] trait is blocking and called from
//! worker threads; ureq is a blocking client with a connection pool and
//! rustls, already in the tree for the S3 backend. reqwest or hyper would
//! bring an async runtime to block on.
//!
//! ```no_run
//! use restix_backend::{Backend, FileType};
//! use restix_rest::{open, RestLocation, RestOptions, TlsOptions};
//!
//! let location = RestLocation::parse("rest:http://127.0.0.1:8000/repo/")?;
//! let backend = open(&location, &RestOptions::default(), &TlsOptions::default())?;
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
pub use http::HttpTransport;
pub use location::RestLocation;
pub use restix_backend::registry::TlsOptions;
pub use transport::{Method, Reply, Request, Transport, TransportError};

use restix_backend::options::{go_uint_syntax_error, parse_go_uint};
use restix_backend::registry::{BackendFactory, Location, OpenContext, OpenError, SchemeOptions};
use restix_backend::Backend;

/// Errors while opening a REST repository (operations return
/// `restix_backend::BackendError`).
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
                let n = parse_go_uint(value.trim())
                    .ok_or_else(|| RestError::InvalidOption(go_uint_syntax_error(value.trim())))?;
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
    tls: &TlsOptions,
) -> Result<HttpRestBackend, RestError> {
    let transport = HttpTransport::new(location, options.connections, tls)?;
    Ok(RestBackend::new(
        transport,
        location.display.clone(),
        options.connections,
    ))
}

/// A bad `-o rest.*` value as the registry reports it: bad numbers print
/// without `Fatal:` (spec: cli §5.4).
fn option_error(error: RestError) -> OpenError {
    match error {
        RestError::InvalidOption(m) => OpenError::rejected_option(m),
        other => OpenError::Option(other.to_string()),
    }
}

/// The `rest:` scheme for `restix_backend::registry` (options:
/// [`KNOWN_OPTIONS`]; `RESTIC_REST_USERNAME` / `_PASSWORD` from the
/// context's environment; TLS from its [`TlsOptions`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RestFactory;

impl BackendFactory for RestFactory {
    fn scheme(&self) -> &'static str {
        "rest"
    }

    fn option_names(&self) -> &'static [&'static str] {
        KNOWN_OPTIONS
    }

    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        RestLocation::parse(&location.text)
            .map(|_| ())
            .map_err(|e| OpenError::Location(e.to_string()))
    }

    fn open(
        &self,
        location: &Location,
        options: &SchemeOptions,
        ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let mut parsed =
            RestLocation::parse(&location.text).map_err(|e| OpenError::Location(e.to_string()))?;
        parsed.apply_environment(&|name| ctx.var(name));
        let mut rest_options = RestOptions::default();
        for (key, value) in options {
            rest_options.set(key, value).map_err(option_error)?;
        }
        let backend = open(&parsed, &rest_options, ctx.tls).map_err(OpenError::open)?;
        Ok(Box::new(backend))
    }

    fn strip_password(&self, location: &str) -> String {
        match RestLocation::parse(location) {
            Ok(parsed) => parsed.display,
            Err(_) => location.to_string(),
        }
    }
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

    #[test]
    fn factory_hides_the_password_and_reads_the_environment() {
        assert_eq!(
            RestFactory.strip_password("rest:https://u:secret@host:8000/r"),
            "rest:https://u:***@host:8000/r/"
        );
        let tls = TlsOptions::default();
        let mut all = std::collections::BTreeMap::new();
        all.insert("rest.connections".to_string(), "x".to_string());
        let mut registry = restix_backend::registry::Registry::new();
        registry.register(Box::new(RestFactory));
        let ctx = OpenContext::process(&tls);
        let err = registry.open("rest:http://h:1/r", &all, &ctx).err();
        assert!(matches!(err, Some(OpenError::OptionSyntax(_))), "{err:?}");
        all.clear();
        let backend = registry.open("rest:http://127.0.0.1:1/r", &all, &ctx);
        assert_eq!(backend.map(|b| b.connections()).ok(), Some(5));
    }
}
