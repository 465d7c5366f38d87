//! [`HttpTransport`]: the REST protocol over pooled HTTP/1.1 connections
//! (ureq on rustls), with restic's TLS settings ([`TlsSettings`]: the global
//! `--cacert`, `--tls-client-cert` and `--insecure-tls` flags).

use std::path::PathBuf;
use std::time::Duration;

use crate::location::RestLocation;
use crate::transport::{Method, Reply, Request, Transport, TransportError};
use crate::RestError;

/// TLS settings from the global flags (restic `backend.TransportOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `--cacert FILE` (repeatable; `$RESTIC_CACERT` is a comma list): PEM
    /// files whose certificates replace the system's roots.
    pub ca_cert_files: Vec<PathBuf>,
    /// `--tls-client-cert FILE` (`$RESTIC_TLS_CLIENT_CERT`): one PEM file
    /// holding the client certificate (chain) and its private key.
    pub client_cert_file: Option<PathBuf>,
    /// `--insecure-tls`: do not verify the server's certificate.
    pub insecure: bool,
}

impl TlsSettings {
    /// The ureq TLS configuration, with restic's error messages for files
    /// that cannot be used.
    pub fn tls_config(&self) -> Result<ureq::tls::TlsConfig, RestError> {
        let mut builder = ureq::tls::TlsConfig::builder();
        if !self.ca_cert_files.is_empty() {
            let mut roots = Vec::new();
            for file in &self.ca_cert_files {
                if file.as_os_str().is_empty() {
                    return Err(RestError::Tls(
                        "empty filename for root certificate supplied".to_string(),
                    ));
                }
                let pem = std::fs::read(file)
                    .map_err(|e| RestError::Tls(format!("unable to read root certificate: {e}")))?;
                let before = roots.len();
                for item in ureq::tls::parse_pem(&pem) {
                    if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                        roots.push(cert);
                    }
                }
                if roots.len() == before {
                    return Err(RestError::Tls(format!(
                        "cannot parse root certificate from {:?}",
                        file.display().to_string()
                    )));
                }
            }
            builder = builder.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
        }
        if let Some(file) = &self.client_cert_file {
            builder = builder.client_cert(Some(read_client_cert(file)?));
        }
        if self.insecure {
            builder = builder.disable_verification(true);
        }
        Ok(builder.build())
    }
}

/// restic's `readPEMCertKey`: certificates and exactly one private key in
/// one PEM file.
fn read_client_cert(file: &std::path::Path) -> Result<ureq::tls::ClientCert, RestError> {
    let pem = std::fs::read(file)
        .map_err(|e| RestError::Tls(format!("ReadFile: {}: {e}", file.display())))?;
    let failed = |why: String| {
        RestError::Tls(format!(
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
        _ => Err(RestError::Tls(format!(
            "parse TLS client cert or key: {}: needs a certificate and a private key",
            file.display()
        ))),
    }
}

/// The REST protocol's transport over HTTP/1.1: a pooled ureq agent keeping
/// up to `connections` connections to the server open.
pub struct HttpTransport {
    agent: ureq::Agent,
    base_url: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to `location`'s server keeping up to `connections`
    /// connections open.
    pub fn new(
        location: &RestLocation,
        connections: usize,
        tls: &TlsSettings,
    ) -> Result<HttpTransport, RestError> {
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
            .user_agent(format!("restix/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.tls_config()?)
            .build();
        Ok(HttpTransport {
            agent: config.into(),
            base_url: location.base_url.clone(),
            authorization: location.basic_authorization(),
        })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: &Request<'_>) -> Result<Reply, TransportError> {
        let uri = format!("{}{}", self.base_url, request.path);
        let failed = |e: ureq::Error| TransportError::transient(e.to_string());
        let headers = request
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(self.authorization.as_deref().map(|a| ("authorization", a)));
        let mut response = match request.method {
            Method::Post => {
                let mut builder = self.agent.post(&uri);
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                builder.send(request.body).map_err(failed)?
            }
            Method::Get | Method::Head | Method::Delete => {
                let mut builder = match request.method {
                    Method::Get => self.agent.get(&uri),
                    Method::Head => self.agent.head(&uri),
                    _ => self.agent.delete(&uri),
                };
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                builder.call().map_err(failed)?
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = match request.method {
            Method::Head => Vec::new(),
            _ => response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .map_err(failed)?,
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
