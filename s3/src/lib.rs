//! S3 backend for restix: a restic repository in an S3 bucket (AWS S3,
//! Garage, MinIO, Ceph RGW, ...), with restic's exact object layout
//! (`<prefix>/config`, `keys/<id>`, `data/<2 hex>/<id>`, `index/<id>`,
//! `snapshots/<id>`, `locks/<id>`), so restic and restix share repositories.
//!
//! # Client choice
//!
//! Requests are signed by [`rusty_s3`] and sent by [`ureq`]:
//! - rusty-s3 is a small, sans-IO S3 library (SigV4 presigned URLs for every
//!   action restic needs, ListObjectsV2 and multipart XML parsing), actively
//!   maintained, BSD-2-Clause like restix;
//! - ureq is a blocking HTTP client with a connection pool and rustls (on
//!   `ring`, already built for the SFTP backend). The engine's [`Backend`]
//!   trait is synchronous and called from worker threads, so a blocking
//!   client needs no internal async runtime;
//! - together they add a few small crates, where `aws-sdk-s3` (and its
//!   smithy runtime) takes many minutes to compile and `rust-s3` /
//!   `object_store` bring tokio + reqwest + hyper for an async API we would
//!   have to block on anyway.
//!
//! # Behaviour
//!
//! - Locations `s3:host[:port]/bucket/prefix` (HTTPS), `s3:http://host:port/bucket/prefix`,
//!   `s3:https://...` ([`S3Location`]).
//! - Credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, then
//!   MinIO's variables, then the shared credentials file with `AWS_PROFILE`
//!   ([`credentials`]). Region: `-o s3.region`, `AWS_DEFAULT_REGION`, `AWS_REGION`,
//!   the AWS host name, the server's `x-amz-bucket-region`, else `us-east-1`.
//! - Options `s3.connections` (default 5), `s3.bucket-lookup=auto|dns|path`,
//!   `s3.region`, `s3.storage-class`, `s3.unsafe-anonymous-auth`
//!   ([`S3Options`]; `s3.retries` is accepted and left to the one retry
//!   policy); `--cacert` and `--insecure-tls` ([`TlsOptions`]).
//! - Every write is one atomic PUT with `Content-MD5`; objects of 64 MiB or
//!   more go up as a multipart upload.
//! - Each call makes one attempt: transport errors, 5xx, 408 and 429 are
//!   transient (`BackendError::Transient`), other 4xx answers permanent; the
//!   retry wrapper of `restix-backend` (`restix_backend::wrap`) retries.
//!   [`S3Factory`] plugs the scheme into `restix_backend::registry`.
//! - `create` (init) creates the bucket when it is missing, like restic.
//!
//! # Example
//!
//! ```no_run
//! use restix_backend::{Backend, FileType};
//! use restix_s3::{S3Backend, S3Location, S3Options, TlsOptions};
//!
//! let location = S3Location::parse("s3:http://127.0.0.1:3900/backups/host1")?;
//! let mut options = S3Options::default();
//! options.set("region", "garage")?;
//! let backend = S3Backend::open(&location, &options, &TlsOptions::default())?;
//! let snapshots = backend.list(FileType::Snapshot)?;
//! # let _ = snapshots;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod credentials;
pub mod location;
pub mod options;

pub use backend::S3Backend;
pub use location::S3Location;
pub use options::{BucketLookup, S3Options, KNOWN_OPTIONS};
pub use restix_backend::registry::TlsOptions;

use restix_backend::registry::{BackendFactory, Location, OpenContext, OpenError, SchemeOptions};
use restix_backend::Backend;

/// Errors while opening an S3 repository (errors of operations are
/// `restix_backend::BackendError`).
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The `s3:` location cannot be parsed.
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o s3.*` option.
    #[error("{0}")]
    InvalidOption(String),
    /// No usable credentials.
    #[error("{0}")]
    Credentials(String),
    /// `--cacert` files that cannot be used.
    #[error("{0}")]
    Tls(String),
}

/// Parse `location`, apply the `-o s3.*` pairs (names without the `s3.`
/// namespace) and open the backend.
pub fn open<'a>(
    location: &str,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    tls: &TlsOptions,
) -> Result<S3Backend, S3Error> {
    let location = S3Location::parse(location)?;
    let mut options = S3Options::default();
    for (key, value) in pairs {
        options.set(key, value)?;
    }
    S3Backend::open(&location, &options, tls)
}

/// The `s3:` scheme for `restix_backend::registry` (options:
/// [`KNOWN_OPTIONS`]; credentials from the context's environment).
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Factory;

impl BackendFactory for S3Factory {
    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn option_names(&self) -> &'static [&'static str] {
        KNOWN_OPTIONS
    }

    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        S3Location::parse(&location.text)
            .map(|_| ())
            .map_err(|e| OpenError::Location(e.to_string()))
    }

    fn open(
        &self,
        location: &Location,
        options: &SchemeOptions,
        ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let parsed =
            S3Location::parse(&location.text).map_err(|e| OpenError::Location(e.to_string()))?;
        let mut s3_options = S3Options::default();
        for (key, value) in options {
            s3_options.set(key, value).map_err(|e| match e {
                S3Error::InvalidOption(m) => OpenError::rejected_option(m),
                other => OpenError::Option(other.to_string()),
            })?;
        }
        let backend = S3Backend::open_with_env(&parsed, &s3_options, ctx.tls, ctx.env)
            .map_err(OpenError::open)?;
        Ok(Box::new(backend))
    }
}
