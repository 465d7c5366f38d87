//! Azure Blob Storage backend for restix: a restic repository in a blob
//! container, with restic's layout, so restic and restix share it.
//!
//! - Locations `azure:<container>:/<prefix>` ([`AzureLocation`]).
//! - Credentials from the environment, as restic reads them:
//!   `AZURE_ACCOUNT_NAME` with `AZURE_ACCOUNT_KEY` (Shared Key signatures)
//!   or `AZURE_ACCOUNT_SAS` (a SAS token); `AZURE_ENDPOINT_SUFFIX` for
//!   other clouds (default `core.windows.net`): the service is
//!   `https://<account>.blob.<suffix>`.
//! - `-o azure.endpoint=URL` (restix's own option) replaces that service
//!   URL, for the Azurite emulator and private endpoints. Azurite's form
//!   has the account in the path:
//!   `-o azure.endpoint=http://127.0.0.1:10000/devstoreaccount1`.
//! - Options ([`AzureOptions`]): `azure.connections` (default 5),
//!   `azure.access-tier` (`Hot`, `Cool`, `Cold`).
//! - Writes of less than 256 MiB are one Put Blob with `Content-MD5`;
//!   larger ones go up as 100 MiB blocks (Put Block) committed by one Put
//!   Block List, restic's sizes. Both are atomic.
//! - `create` (init) creates the container when it is missing.
//!
//! # Why hand-written requests
//!
//! The Azure SDK crates for Rust (`azure_storage_blobs` and the newer
//! `azure_storage_blob`) are async on reqwest + tokio and pull in
//! azure_core's large dependency tree; the engine's [`Backend`] trait is
//! blocking. The six Blob operations restic needs plus the Shared Key
//! signature ([`auth`]) are a few hundred lines on the ureq + rustls stack
//! the S3 and REST backends already use.
//!
//! [`AzureFactory`] plugs the scheme into `restix_backend::registry`.
//!
//! ```no_run
//! use restix_backend::{Backend, FileType};
//! use restix_azure::{open, AzureLocation, AzureOptions};
//!
//! let location = AzureLocation::parse("azure:backups:/host1")?;
//! let backend = open(&location, &AzureOptions::default(), &Default::default())?;
//! let snapshots = backend.list(FileType::Snapshot)?;
//! # let _ = snapshots;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
mod backend;
mod location;

pub use backend::{AzureBackend, API_VERSION};
pub use location::AzureLocation;
pub use restix_backend::registry::TlsOptions;

use restix_backend::options::{go_uint_syntax_error, parse_go_uint};
use restix_backend::registry::{BackendFactory, Location, OpenContext, OpenError, SchemeOptions};
use restix_backend::Backend;

/// Errors while opening an Azure repository (operations return
/// `restix_backend::BackendError`).
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// The `azure:` location cannot be parsed.
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o azure.*` option.
    #[error("{0}")]
    InvalidOption(String),
    /// Missing or unusable credentials.
    #[error("{0}")]
    Credentials(String),
    /// `--cacert` / `--tls-client-cert` files that cannot be used.
    #[error("{0}")]
    Tls(String),
}

/// The option names of the `azure.` namespace (`endpoint` is restix's own).
pub const KNOWN_OPTIONS: &[&str] = &["connections", "access-tier", "endpoint"];

/// Options of the Azure backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureOptions {
    /// Requests in flight (`azure.connections`, default 5).
    pub connections: usize,
    /// `x-ms-access-tier` of uploads (`azure.access-tier`); `None` = the
    /// account's default.
    pub access_tier: Option<String>,
    /// Service URL replacing `https://<account>.blob.<suffix>`
    /// (`azure.endpoint`).
    pub endpoint: Option<String>,
    /// Writes of at least this many bytes go up in blocks (not a restic
    /// option; a tuning knob, also used by tests). Default 256 MiB.
    pub block_threshold: u64,
    /// Size of one block. Default 100 MiB (Azure allows up to 4000 MiB).
    pub block_size: u64,
}

impl Default for AzureOptions {
    fn default() -> Self {
        AzureOptions {
            connections: 5,
            access_tier: None,
            endpoint: None,
            block_threshold: 256 * 1024 * 1024,
            block_size: 100 * 1024 * 1024,
        }
    }
}

impl AzureOptions {
    /// Set one option by its name without the `azure.` namespace.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), AzureError> {
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "connections" => {
                let n = parse_go_uint(value)
                    .ok_or_else(|| AzureError::InvalidOption(go_uint_syntax_error(value)))?;
                self.connections = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1024);
            }
            "access-tier" => {
                // restic ignores tiers it does not know; Archive would make
                // the tree packs restix reads unreadable, so it is refused.
                self.access_tier = match value.to_ascii_lowercase().as_str() {
                    "hot" => Some("Hot".to_string()),
                    "cool" => Some("Cool".to_string()),
                    "cold" => Some("Cold".to_string()),
                    "archive" => {
                        return Err(AzureError::InvalidOption(
                            "azure.access-tier=archive is not supported by restix: \
                             archived blobs cannot be read without rehydration"
                                .to_string(),
                        ))
                    }
                    _ => None,
                }
            }
            "endpoint" => self.endpoint = Some(value.to_string()).filter(|e| !e.is_empty()),
            other => {
                return Err(AzureError::InvalidOption(format!(
                    "option azure.{other} is not known"
                )))
            }
        }
        Ok(())
    }
}

/// Open the container of `location` with credentials from this process's
/// environment (no request is sent yet).
pub fn open(
    location: &AzureLocation,
    options: &AzureOptions,
    tls: &TlsOptions,
) -> Result<AzureBackend, AzureError> {
    open_with_env(location, options, tls, &|name| std::env::var(name).ok())
}

/// [`open`] with `env` as the environment.
pub fn open_with_env(
    location: &AzureLocation,
    options: &AzureOptions,
    tls: &TlsOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AzureBackend, AzureError> {
    let settings = auth::AccountSettings::from_env(env)?;
    let agent = backend::build_agent(options, tls)?;
    AzureBackend::new(location, options, settings, agent)
}

/// The `azure:` scheme for `restix_backend::registry` (options:
/// [`KNOWN_OPTIONS`]; credentials from the context's environment, TLS from
/// its [`TlsOptions`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AzureFactory;

impl BackendFactory for AzureFactory {
    fn scheme(&self) -> &'static str {
        "azure"
    }

    fn option_names(&self) -> &'static [&'static str] {
        KNOWN_OPTIONS
    }

    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        AzureLocation::parse(&location.text)
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
            AzureLocation::parse(&location.text).map_err(|e| OpenError::Location(e.to_string()))?;
        let mut azure_options = AzureOptions::default();
        for (key, value) in options {
            azure_options.set(key, value).map_err(|e| match e {
                AzureError::InvalidOption(m) => OpenError::rejected_option(m),
                other => OpenError::Option(other.to_string()),
            })?;
        }
        let backend = open_with_env(&parsed, &azure_options, ctx.tls, &|name| ctx.var(name))
            .map_err(OpenError::open)?;
        Ok(Box::new(backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let mut o = AzureOptions::default();
        o.set("connections", "0x8").unwrap();
        o.set("access-tier", "cool").unwrap();
        o.set("endpoint", "http://127.0.0.1:10000/devstoreaccount1")
            .unwrap();
        assert_eq!(o.connections, 8);
        assert_eq!(o.access_tier.as_deref(), Some("Cool"));
        assert!(o.set("access-tier", "archive").is_err());
        o.set("access-tier", "premium").unwrap();
        assert_eq!(o.access_tier, None);
        assert_eq!(
            o.set("bogus", "1").unwrap_err().to_string(),
            "option azure.bogus is not known"
        );
        assert_eq!(
            o.set("connections", "x").unwrap_err().to_string(),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
    }
}
