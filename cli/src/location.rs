//! Repository locations (spec: cli §5.1) and opening their backend, with the
//! extended options (§5.4) and bandwidth limits (§6.1) applied.

use std::sync::Arc;

use restix_engine::backend::local::LocalBackend;
use restix_engine::backend::Backend;
use restix_s3::{S3Location, S3Options, TlsOptions};
use restix_sftp::{SftpLocation, SftpOptions};

use crate::errors::{fatal, CliError};
use crate::options::{options_for_scheme, parse_go_uint, ExtendedOptions};

/// Backends restic knows by scheme (spec: cli §5.1 step 1).
const KNOWN_SCHEMES: &[&str] = &[
    "local", "sftp", "rest", "s3", "gs", "azure", "b2", "swift", "rclone",
];

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local folder (`/srv/repo`, `repo`, `local:/srv/repo`).
    Local(String),
    /// `sftp:...`, parsed later by restix-sftp (it owns the exact rules).
    Sftp(String),
    /// `s3:...`, parsed later by restix-s3 (it owns the exact rules).
    S3(String),
    /// `rest:URL`, parsed later by restix-rest.
    Rest(String),
    /// `rclone:remote:path`, parsed later by restix-rclone.
    Rclone(String),
    /// `azure:container:/path`, parsed later by restix-azure.
    Azure(String),
    /// A backend restic has and restix does not (yet).
    Unsupported(String),
}

/// Path-like strings are local even when they contain `:`.
fn is_path_like(s: &str) -> bool {
    let bytes = s.as_bytes();
    let windows_drive =
        matches!(bytes, [letter, b':', b'\\' | b'/', ..] if letter.is_ascii_alphabetic());
    s.starts_with('/')
        || s.starts_with('\\')
        || s.starts_with("../")
        || s.starts_with("..\\")
        || windows_drive
}

/// Parse a location string (spec: cli §5.1).
pub fn parse_location(s: &str) -> Result<Location, CliError> {
    if let Some((scheme, rest)) = s.split_once(':') {
        if KNOWN_SCHEMES.contains(&scheme) {
            return Ok(match scheme {
                "local" => Location::Local(rest.to_string()),
                "sftp" => Location::Sftp(s.to_string()),
                "s3" => Location::S3(s.to_string()),
                "rest" => Location::Rest(s.to_string()),
                "rclone" => Location::Rclone(s.to_string()),
                "azure" => Location::Azure(s.to_string()),
                other => Location::Unsupported(other.to_string()),
            });
        }
        if !is_path_like(s) {
            return Err(fatal(
                "parsing repository location failed: invalid backend\nIf the repository is in a local directory, you need to add a `local:` prefix",
            ));
        }
    }
    Ok(Location::Local(s.to_string()))
}

/// The global `--cacert` / `--insecure-tls` flags as the HTTP backends take
/// them; without `--cacert`, `$RESTIC_CACERT` names the file (like restic).
pub fn tls_options(cacert: &[String], insecure_tls: bool) -> TlsOptions {
    let mut files: Vec<std::path::PathBuf> = cacert.iter().map(std::path::PathBuf::from).collect();
    if files.is_empty() {
        // restic splits $RESTIC_CACERT at commas (cmd/restic/global.go).
        if let Some(env_files) = std::env::var("RESTIC_CACERT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            files.extend(env_files.split(',').map(std::path::PathBuf::from));
        }
    }
    TlsOptions {
        ca_cert_files: files,
        insecure: insecure_tls,
    }
}

/// The TLS settings of the `rest:` and `azure:` backends: `--cacert` and
/// `--insecure-tls` as [`tls_options`] resolved them, plus
/// `--tls-client-cert` (else `$RESTIC_TLS_CLIENT_CERT`, like restic).
fn http_tls(tls: &TlsOptions, tls_client_cert: Option<&str>) -> restix_rest::TlsSettings {
    let client_cert = tls_client_cert
        .map(str::to_string)
        .or_else(|| std::env::var("RESTIC_TLS_CLIENT_CERT").ok())
        .filter(|f| !f.is_empty());
    restix_rest::TlsSettings {
        ca_cert_files: tls.ca_cert_files.clone(),
        client_cert_file: client_cert.map(std::path::PathBuf::from),
        insecure: tls.insecure,
    }
}

/// Services restic reaches natively and restix through rclone only:
/// (scheme, the service's name, rclone's remote type).
const VIA_RCLONE: &[(&str, &str, &str)] = &[
    ("gs", "Google Cloud Storage", "google cloud storage"),
    ("b2", "Backblaze B2", "b2"),
    ("swift", "OpenStack Swift", "swift"),
];

/// Open the backend for `location` with its `-o` options, rate limits and
/// the TLS settings of `--cacert` / `--insecure-tls` / `--tls-client-cert`
/// (used by `s3:`, `rest:` and `azure:`).
pub fn open_backend_tls(
    location_text: &str,
    options: &ExtendedOptions,
    limit_upload_kib: Option<i64>,
    limit_download_kib: Option<i64>,
    tls: &TlsOptions,
    tls_client_cert: Option<&str>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let location = parse_location(location_text)?;
    let backend: Arc<dyn Backend> = match &location {
        Location::Local(path) => {
            // restix has no layout option; 0.14's local.layout is accepted and ignored.
            let local = options_for_scheme(options, "local", &["connections", "layout"])?;
            let mut backend = LocalBackend::new(path.clone());
            if let Some(connections) = local.get("connections") {
                let n = parse_go_uint(connections)?;
                backend = backend.with_connections(usize::try_from(n).unwrap_or(usize::MAX));
            }
            Arc::new(backend)
        }
        Location::Sftp(text) => {
            let parsed = SftpLocation::parse(text)
                .map_err(|e| fatal(format!("parsing repository location failed: {e}")))?;
            let pairs = options_for_scheme(options, "sftp", &["connections", "command", "args"])?;
            let mut sftp_options = SftpOptions::default();
            for (key, value) in &pairs {
                sftp_options
                    .set(key, value)
                    .map_err(|e| CliError::plain(1, e.to_string()))?;
            }
            sftp_options.validate().map_err(|e| fatal(e.to_string()))?;
            let backend = restix_sftp::open(&parsed, &sftp_options)
                .map_err(|e| fatal(format!("unable to open repository at {location_text}: {e}")))?;
            Arc::new(backend)
        }
        Location::S3(text) => {
            let parsed = S3Location::parse(text)
                .map_err(|e| fatal(format!("parsing repository location failed: {e}")))?;
            let pairs = options_for_scheme(options, "s3", restix_s3::KNOWN_OPTIONS)?;
            let mut s3_options = S3Options::default();
            for (key, value) in &pairs {
                s3_options.set(key, value).map_err(|e| match e {
                    // Bad numbers print without `Fatal:` (spec: cli §5.4).
                    restix_s3::S3Error::InvalidOption(m) if m.starts_with("strconv.") => {
                        CliError::plain(1, m)
                    }
                    other => fatal(other.to_string()),
                })?;
            }
            let backend = restix_s3::S3Backend::open(&parsed, &s3_options, tls)
                .map_err(|e| fatal(format!("unable to open repository at {location_text}: {e}")))?;
            Arc::new(backend)
        }
        Location::Rest(text) => {
            let mut parsed = restix_rest::RestLocation::parse(text)
                .map_err(|e| fatal(format!("parsing repository location failed: {e}")))?;
            parsed.apply_environment(&|name| std::env::var(name).ok());
            let pairs = options_for_scheme(options, "rest", restix_rest::KNOWN_OPTIONS)?;
            let mut rest_options = restix_rest::RestOptions::default();
            for (key, value) in &pairs {
                rest_options
                    .set(key, value)
                    .map_err(|e| CliError::plain(1, e.to_string()))?;
            }
            let backend =
                restix_rest::open(&parsed, &rest_options, &http_tls(tls, tls_client_cert))
                    .map_err(|e| {
                        fatal(format!(
                            "unable to open repository at {}: {e}",
                            parsed.display
                        ))
                    })?;
            Arc::new(backend)
        }
        Location::Rclone(text) => {
            let parsed = restix_rclone::RcloneLocation::parse(text)
                .map_err(|e| fatal(format!("parsing repository location failed: {e}")))?;
            let pairs = options_for_scheme(options, "rclone", restix_rclone::KNOWN_OPTIONS)?;
            let mut rclone_options = restix_rclone::RcloneOptions::default();
            let open_failed =
                |e: String| fatal(format!("unable to open repository at {location_text}: {e}"));
            for (key, value) in &pairs {
                match key.as_str() {
                    // restic splits both with SplitShellStrings; empty = none.
                    "program" | "args" => {
                        let words = if value.is_empty() {
                            Vec::new()
                        } else {
                            crate::options::split_shell_strings(value).map_err(open_failed)?
                        };
                        if key == "program" {
                            rclone_options.program = words;
                        } else {
                            rclone_options.args = words;
                        }
                    }
                    "connections" => rclone_options
                        .set_connections(value)
                        .map_err(|e| CliError::plain(1, e.to_string()))?,
                    _ => {
                        rclone_options.timeout = crate::engine_glue::parse_go_duration(value)
                            .ok_or_else(|| {
                                CliError::plain(1, format!("time: invalid duration \"{value}\""))
                            })?;
                    }
                }
            }
            let backend = restix_rclone::open(&parsed, &rclone_options)
                .map_err(|e| open_failed(e.to_string()))?;
            Arc::new(backend)
        }
        Location::Azure(text) => {
            let parsed = restix_azure::AzureLocation::parse(text)
                .map_err(|e| fatal(format!("parsing repository location failed: {e}")))?;
            let pairs = options_for_scheme(options, "azure", restix_azure::KNOWN_OPTIONS)?;
            let mut azure_options = restix_azure::AzureOptions::default();
            for (key, value) in &pairs {
                azure_options.set(key, value).map_err(|e| match e {
                    restix_azure::AzureError::InvalidOption(m) if m.starts_with("strconv.") => {
                        CliError::plain(1, m)
                    }
                    other => fatal(other.to_string()),
                })?;
            }
            let backend = restix_azure::open_with_env(
                &parsed,
                &azure_options,
                &http_tls(tls, tls_client_cert),
                &|name| std::env::var(name).ok(),
            )
            .map_err(|e| fatal(format!("unable to open repository at {location_text}: {e}")))?;
            Arc::new(backend)
        }
        Location::Unsupported(scheme) => {
            let (service, remote_type) = VIA_RCLONE
                .iter()
                .find(|(s, _, _)| s == scheme)
                .map(|(_, service, remote_type)| (*service, *remote_type))
                .unwrap_or((scheme.as_str(), scheme.as_str()));
            return Err(fatal(format!(
                "parsing repository location failed: restix has no {scheme} backend; \
                 reach {service} through rclone: configure an rclone remote of type \
                 \"{remote_type}\" and use -r rclone:<remote>:<bucket>/<path> \
                 (repository {location_text})"
            ))
            .into());
        }
    };
    Ok(crate::engine_glue::wrap_limits(
        backend,
        limit_upload_kib,
        limit_download_kib,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_forms() {
        assert_eq!(
            parse_location("/srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(
            parse_location("repo").unwrap(),
            Location::Local("repo".into())
        );
        assert_eq!(
            parse_location("local:/srv/r").unwrap(),
            Location::Local("/srv/r".into())
        );
        assert_eq!(
            parse_location("/a:b").unwrap(),
            Location::Local("/a:b".into())
        );
        assert_eq!(
            parse_location("sftp:u@h:/p").unwrap(),
            Location::Sftp("sftp:u@h:/p".into())
        );
        assert_eq!(
            parse_location("s3:s3.amazonaws.com/b/42").unwrap(),
            Location::S3("s3:s3.amazonaws.com/b/42".into())
        );
        assert_eq!(
            parse_location("gs:bucket:/p").unwrap(),
            Location::Unsupported("gs".into())
        );
        assert_eq!(
            parse_location("rest:http://h:8000/r/").unwrap(),
            Location::Rest("rest:http://h:8000/r/".into())
        );
        assert_eq!(
            parse_location("rclone:remote:b/p").unwrap(),
            Location::Rclone("rclone:remote:b/p".into())
        );
        assert_eq!(
            parse_location("azure:c:/p").unwrap(),
            Location::Azure("azure:c:/p".into())
        );
        assert_eq!(
            parse_location("foo:bar").unwrap_err().message,
            "Fatal: parsing repository location failed: invalid backend\nIf the repository is in a local directory, you need to add a `local:` prefix"
        );
    }
}
