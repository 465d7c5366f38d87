//! What every HTTP backend shares (feature `http`; `rest:`, `azure:`): the
//! pooled agent built from the global transport flags ([`TlsOptions`]:
//! `--cacert`, `--tls-client-cert`, `--insecure-tls`, `--http-user-agent`),
//! and restic's classification of answers and transport failures into
//! [`BackendError`] kinds, so the one retry policy ([`crate::retry`]) acts
//! on them alike.
//!
//! | answer | error | kind |
//! |---|---|---|
//! | 404 | [`BackendError::NotFound`] | not found |
//! | 507 Insufficient Storage | [`BackendError::NoSpace`] | no space |
//! | 408, 429, 5xx | [`BackendError::Transient`] | transient |
//! | any other 4xx (401, 403, 400, ...) | [`BackendError::Other`] | permanent |
//! | no answer: connection refused or reset, timeout, DNS | [`BackendError::Transient`] | transient |
//! | TLS refused (certificate not trusted, client certificate rejected), bad URL | [`BackendError::Other`] | permanent |
//!
//! restic retries TLS failures like any transport error; restix does not,
//! since an untrusted certificate does not become trusted within the
//! retry's 15 minutes.
//!
//! ureq because the [`crate::Backend`] trait is blocking and called from
//! worker threads: ureq is a blocking client with a connection pool and
//! rustls (on ring), the stack the S3 backend builds too.

use std::path::Path;
use std::time::Duration;

use crate::registry::TlsOptions;
use crate::BackendError;

/// A `--cacert` or `--tls-client-cert` file that cannot be used (restic's
/// messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The `User-Agent` of every request: `--http-user-agent`, else
/// `restix/<version>`.
pub fn user_agent(tls: &TlsOptions) -> String {
    tls.http_user_agent
        .clone()
        .filter(|agent| !agent.is_empty())
        .unwrap_or_else(|| format!("restix/{}", env!("CARGO_PKG_VERSION")))
}

/// The ureq TLS configuration of the global flags: `--cacert` files
/// replace the system's roots (restic does the same), `--tls-client-cert`
/// authenticates the client, `--insecure-tls` skips verification.
pub fn tls_config(tls: &TlsOptions) -> Result<ureq::tls::TlsConfig, TlsError> {
    let mut builder = ureq::tls::TlsConfig::builder();
    if !tls.ca_cert_files.is_empty() {
        let mut roots = Vec::new();
        for file in &tls.ca_cert_files {
            if file.as_os_str().is_empty() {
                return Err(TlsError(
                    "empty filename for root certificate supplied".to_string(),
                ));
            }
            let pem = std::fs::read(file)
                .map_err(|e| TlsError(format!("unable to read root certificate: {e}")))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                    roots.push(cert);
                }
            }
            if roots.len() == before {
                return Err(TlsError(format!(
                    "cannot parse root certificate from {:?}",
                    file.display().to_string()
                )));
            }
        }
        builder = builder.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    if let Some(file) = &tls.client_cert {
        builder = builder.client_cert(Some(read_client_cert(file)?));
    }
    if tls.insecure {
        builder = builder.disable_verification(true);
    }
    Ok(builder.build())
}

/// restic's `readPEMCertKey`: certificates and exactly one private key in
/// one PEM file.
fn read_client_cert(file: &Path) -> Result<ureq::tls::ClientCert, TlsError> {
    let pem =
        std::fs::read(file).map_err(|e| TlsError(format!("ReadFile: {}: {e}", file.display())))?;
    let failed = |why: String| {
        TlsError(format!(
            "error loading TLS cert and key from {}: {why}",
            file.display()
        ))
    };
    let mut chain = Vec::new();
    let mut key = None;
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => chain.push(cert),
            Ok(ureq::tls::PemItem::PrivateKey(k)) => {
                if key.is_some() {
                    return Err(failed("more than one private key found".to_string()));
                }
                key = Some(k);
            }
            Ok(_) => return Err(failed("unknown block type found".to_string())),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok(ureq::tls::ClientCert::new_with_certs(&chain, key)),
        _ => Err(TlsError(format!(
            "parse TLS client cert or key: {}: needs a certificate and a private key",
            file.display()
        ))),
    }
}

/// The pooled agent of an HTTP backend: up to `connections` connections
/// kept open per host, statuses as answers (not errors), no redirects,
/// restic's transport timeouts (30 s to connect, 2 minutes without
/// progress), TLS and `User-Agent` from the global flags.
pub fn agent(tls: &TlsOptions, connections: usize) -> Result<ureq::Agent, TlsError> {
    let pool = connections.max(1);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .max_idle_connections(pool.saturating_mul(2))
        .max_idle_connections_per_host(pool)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .user_agent(user_agent(tls))
        .tls_config(tls_config(tls)?)
        .build();
    Ok(config.into())
}

/// How a non-success HTTP status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 404.
    NotFound,
    /// 507 Insufficient Storage.
    NoSpace,
    /// 408, 429, 5xx: another attempt may succeed.
    Transient,
    /// Everything else (401, 403, 400, 416, ...): no retry changes it.
    Permanent,
}

/// Classify an HTTP error status (restic's `IsNotExist` and
/// `IsPermanentError`, with 408 and 429 transient).
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        404 => StatusClass::NotFound,
        507 => StatusClass::NoSpace,
        408 | 429 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Permanent,
    }
}

/// The error of operation `op` on the file shown as `path` for an answer
/// with the non-success `status`; `reason` says what the server said.
pub fn status_error(op: &'static str, path: String, status: u16, reason: String) -> BackendError {
    match classify_status(status) {
        StatusClass::NotFound => BackendError::NotFound { path },
        StatusClass::NoSpace => BackendError::NoSpace { path },
        StatusClass::Transient => BackendError::Transient { op, path, reason },
        StatusClass::Permanent => BackendError::Other(format!("{op} {path}: {reason}")),
    }
}

/// restic's text for a status: `unexpected HTTP response (403): 403 Forbidden`.
pub fn unexpected_response(status: u16) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("unexpected HTTP response ({status}): {status} {reason}")
        .trim_end()
        .to_string()
}

/// Whether a request that got no answer may succeed when sent again:
/// connection trouble, timeouts, name resolution and broken answers may
/// pass; a TLS refusal (ureq reports rustls' verdicts as `InvalidData` I/O
/// errors), a bad URL or configuration does not.
pub fn transport_error_is_transient(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(e) => e.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Tls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::RequireHttpsOnly(_)
        | ureq::Error::TlsRequired
        | ureq::Error::TooManyRedirects
        | ureq::Error::RedirectFailed => false,
        _ => true,
    }
}

/// The error of operation `op` on `path` for a request that got no answer.
pub fn transport_error(op: &'static str, path: String, error: &ureq::Error) -> BackendError {
    if transport_error_is_transient(error) {
        BackendError::Transient {
            op,
            path,
            reason: error.to_string(),
        }
    } else {
        BackendError::Other(format!("{op} {path}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn statuses_and_their_kinds() {
        let kind = |status| status_error("load", "p".into(), status, String::new()).kind();
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(507), ErrorKind::NoSpace);
        for transient in [408, 429, 500, 502, 503, 504] {
            assert_eq!(kind(transient), ErrorKind::Transient, "{transient}");
        }
        for permanent in [400, 401, 403, 405, 409, 416] {
            assert_eq!(kind(permanent), ErrorKind::Permanent, "{permanent}");
        }
        assert_eq!(
            unexpected_response(403),
            "unexpected HTTP response (403): 403 Forbidden"
        );
    }

    #[test]
    fn transport_failures() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(transport_error_is_transient(&refused));
        assert!(transport_error_is_transient(&ureq::Error::HostNotFound));
        assert!(transport_error_is_transient(&ureq::Error::ConnectionFailed));
        let untrusted = ureq::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(!transport_error_is_transient(&untrusted));
        let e = transport_error("save", "data/ab".into(), &untrusted);
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(e.to_string().contains("data/ab"), "{e}");
    }

    #[test]
    fn flags_into_agent_settings() {
        assert!(user_agent(&TlsOptions::default()).starts_with("restix/"));
        let named = TlsOptions {
            http_user_agent: Some("agent/1".into()),
            ..TlsOptions::default()
        };
        assert_eq!(user_agent(&named), "agent/1");
        let missing = TlsOptions {
            ca_cert_files: vec!["/nonexistent/ca.pem".into()],
            ..TlsOptions::default()
        };
        assert!(tls_config(&missing)
            .unwrap_err()
            .0
            .starts_with("unable to read root certificate"));
        let empty = TlsOptions {
            ca_cert_files: vec!["".into()],
            ..TlsOptions::default()
        };
        assert_eq!(
            tls_config(&empty).unwrap_err().0,
            "empty filename for root certificate supplied"
        );
        let no_key = TlsOptions {
            client_cert: Some("/dev/null".into()),
            ..TlsOptions::default()
        };
        assert!(tls_config(&no_key)
            .unwrap_err()
            .0
            .contains("needs a certificate and a private key"));
        assert!(agent(&TlsOptions::default(), 5).is_ok());
    }
}
