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
//!   `s3.region`, `s3.retries`, `s3.storage-class`, `s3.unsafe-anonymous-auth`
//!   ([`S3Options`]); `--cacert` and `--insecure-tls` ([`TlsOptions`]).
//! - Every write is one atomic PUT with `Content-MD5`; objects of 64 MiB or
//!   more go up as a multipart upload. Transport errors, 5xx, 408 and 429 are
//!   retried with exponential backoff; other 4xx answers fail at once.
//! - `create` (init) creates the bucket when it is missing, like restic.
//!
//! # Example
//!
//! ```no_run
//! use restix_engine::backend::{Backend, FileType};
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
pub use options::{BucketLookup, S3Options, TlsOptions, KNOWN_OPTIONS};

#[cfg(doc)]
use restix_engine::backend::Backend;

/// Errors while opening an S3 repository (errors of operations are the
/// engine's `BackendError`).
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
