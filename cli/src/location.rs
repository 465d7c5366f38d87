//! Repository locations (spec: cli §5.1) and opening their backend: the
//! registry of the backends restix links, with their `-o` options (§5.4),
//! then `restix_backend::wrap` with the bandwidth limits (§6.1), the
//! operation semaphore and restic's retry policy, whose retries are printed
//! like restic's (docs/backends.md).

use std::sync::Arc;

use restix_engine::backend::limited::RateLimits;
use restix_engine::backend::local::LocalFactory;
use restix_engine::backend::registry::{Location, OpenContext, OpenError, Registry, TlsOptions};
use restix_engine::backend::retry::{RetryEvent, RetryPolicy, RetryReport};
use restix_engine::backend::{wrap, Backend, WrapOptions};
use restix_engine::repository::lock::go_duration_string;

use crate::args::GlobalOptions;
use crate::errors::{fatal, CliError};
use crate::options::ExtendedOptions;

/// Every backend restix has, by scheme (restic's `internal/backend/all`).
/// A new backend crate adds its factory here.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Box::new(LocalFactory));
    registry.register(Box::new(restix_sftp::SftpFactory));
    registry.register(Box::new(restix_s3::S3Factory));
    registry.register(Box::new(restix_rest::RestFactory));
    registry.register(Box::new(restix_rclone::RcloneFactory));
    registry.register(Box::new(restix_azure::AzureFactory));
    registry
}

/// Services restic reaches natively and restix through rclone only
/// (issue #18): (scheme, the service, rclone's remote type).
const VIA_RCLONE: &[(&str, &str, &str)] = &[
    ("gs", "Google Cloud Storage", "google cloud storage"),
    ("b2", "Backblaze B2", "b2"),
    ("swift", "OpenStack Swift", "swift"),
];

/// Parse a location string (spec: cli §5.1).
pub fn parse_location(s: &str) -> Result<Location, CliError> {
    registry()
        .parse(s)
        .map_err(|e| fatal(format!("parsing repository location failed: {e}")))
}

/// The global transport flags as the HTTP backends take them (`--cacert`,
/// `--insecure-tls`, `--tls-client-cert`, `--http-user-agent`), as
/// `options::resolve_transport` resolved them from the flags and
/// `$RESTIC_CACERT` (a comma list), `$RESTIC_TLS_CLIENT_CERT`,
/// `$RESTIC_HTTP_USER_AGENT`.
pub fn tls_options(global: &GlobalOptions) -> TlsOptions {
    let mut files: Vec<std::path::PathBuf> =
        global.cacert.iter().map(std::path::PathBuf::from).collect();
    if files.is_empty() {
        if let Some(list) = std::env::var("RESTIC_CACERT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            files.extend(list.split(',').map(std::path::PathBuf::from));
        }
    }
    let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    TlsOptions {
        ca_cert_files: files,
        insecure: global.insecure_tls,
        client_cert: non_empty(&global.tls_client_cert).map(std::path::PathBuf::from),
        http_user_agent: non_empty(&global.http_user_agent),
    }
}

/// restic's messages for a location that cannot be opened.
fn open_error(error: OpenError, location: &str) -> CliError {
    match error {
        OpenError::Location(m) => fatal(format!("parsing repository location failed: {m}")),
        OpenError::Option(m) => fatal(m),
        OpenError::OptionSyntax(m) => CliError::plain(1, m),
        OpenError::Unsupported { scheme } => match VIA_RCLONE.iter().find(|(s, _, _)| *s == scheme)
        {
            Some((_, service, remote_type)) => fatal(format!(
                "parsing repository location failed: restix has no {scheme} backend; \
                 reach {service} through rclone: configure an rclone remote of type \
                 \"{remote_type}\" and use -r rclone:<remote>:<bucket>/<path> \
                 (repository {location})"
            )),
            None => fatal(format!(
                "the {scheme} backend is not supported yet by restix (repository {location})"
            )),
        },
        OpenError::Open(e) => fatal(format!("unable to open repository at {location}: {e}")),
    }
}

/// Retries printed to stderr as restic's `Warnf` does (cmd/restic/global.go).
fn print_retries() -> RetryReport {
    Arc::new(|event: &RetryEvent<'_>| match event {
        RetryEvent::Retrying {
            operation,
            error,
            wait,
        } => {
            let wait = go_duration_string(i128::try_from(wait.as_nanos()).unwrap_or(i128::MAX));
            eprintln!("{operation} returned error, retrying after {wait}: {error}");
        }
        RetryEvent::GaveUp { operation, error } => eprintln!("{operation} failed: {error}"),
        RetryEvent::Recovered { operation, retries } => {
            eprintln!("{operation} operation successful after {retries} retries")
        }
    })
}

/// Open the backend for `location` with its `-o` options, rate limits and
/// the TLS settings of `--cacert` / `--insecure-tls`, wrapped for use.
pub fn open_backend_tls(
    location_text: &str,
    options: &ExtendedOptions,
    limit_upload_kib: Option<i64>,
    limit_download_kib: Option<i64>,
    tls: &TlsOptions,
) -> anyhow::Result<Arc<dyn Backend>> {
    let registry = registry();
    let inner = registry
        .open(location_text, options, &OpenContext::process(tls))
        .map_err(|e| open_error(e, &registry.strip_password(location_text)))?;
    let wrap_options = WrapOptions {
        limits: RateLimits::from_kib(
            limit_upload_kib.unwrap_or(0),
            limit_download_kib.unwrap_or(0),
        ),
        retry: RetryPolicy::default(),
        report: Some(print_retries()),
        // A diagnostic of restix's own (not restic's): which backend calls
        // wait for each other on a long link (docs/benchmarks.md, distance).
        trace: std::env::var_os("RESTIX_TRACE_BACKEND").is_some_and(|v| !v.is_empty()),
    };
    Ok(wrap(inner, &wrap_options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme_of(s: &str) -> String {
        parse_location(s).unwrap().scheme
    }

    #[test]
    fn location_forms() {
        assert_eq!(scheme_of("/srv/repo"), "local");
        assert_eq!(parse_location("repo").unwrap().rest, "repo");
        assert_eq!(parse_location("local:/srv/r").unwrap().rest, "/srv/r");
        assert_eq!(parse_location("/a:b").unwrap().rest, "/a:b");
        assert_eq!(scheme_of("sftp:u@h:/p"), "sftp");
        assert_eq!(scheme_of("s3:s3.amazonaws.com/b/42"), "s3");
        assert_eq!(scheme_of("gs:bucket:/p"), "gs");
        assert_eq!(
            parse_location("foo:bar").unwrap_err().message,
            "Fatal: parsing repository location failed: invalid backend\nIf the repository is in a local directory, you need to add a `local:` prefix"
        );
    }

    fn open_message(location: &str, options: &[(&str, &str)]) -> String {
        let options: ExtendedOptions = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match open_backend_tls(location, &options, None, None, &TlsOptions::default()) {
            Ok(_) => "opened".to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn restics_messages() {
        let gs = open_message("gs:bucket:/p", &[]);
        assert!(
            gs.starts_with("Fatal: parsing repository location failed: restix has no gs backend")
                && gs.contains("Google Cloud Storage through rclone")
                && gs.ends_with("(repository gs:bucket:/p)"),
            "{gs}"
        );
        assert_eq!(
            open_message("rclone:r:p", &[("rclone.timeout", "soon")]),
            "time: invalid duration \"soon\""
        );
        assert_eq!(
            open_message("rest:http://h:1/r", &[("rest.bogus", "1")]),
            "Fatal: option rest.bogus is not known"
        );
        assert_eq!(
            open_message("azure:nocolon", &[]),
            "Fatal: parsing repository location failed: azure: invalid format: bucket name or path not found"
        );
        assert_eq!(
            open_message("/nonexistent/repo", &[("local.bogus", "1")]),
            "Fatal: option local.bogus is not known"
        );
        assert_eq!(
            open_message("/nonexistent/repo", &[("local.connections", "x")]),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            open_message("sftp:hostonly", &[("sftp.bogus", "1")]),
            "Fatal: parsing repository location failed: sftp: invalid format, hostname or path not found"
        );
        assert_eq!(
            open_message("s3:h/b", &[("s3.bucket-lookup", "x")]),
            "Fatal: bad bucket-lookup style \"x\" must be \"auto\", \"path\" or \"dns\""
        );
        assert_eq!(
            open_message("sftp:h:/p", &[("sftp.command", "a"), ("sftp.args", "b")]),
            "Fatal: cannot specify both sftp.command and sftp.args options"
        );
        assert_eq!(
            open_message("/nonexistent/repo", &[("sftp.bogus", "1")]),
            "opened"
        );
    }
}
