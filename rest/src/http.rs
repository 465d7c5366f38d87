//! [`HttpTransport`]: the REST protocol over pooled HTTP/1.1 connections:
//! the agent of `restix_backend::http` (ureq on rustls), built from the
//! global transport flags ([`TlsOptions`]: `--cacert`,
//! `--tls-client-cert`, `--insecure-tls`, `--http-user-agent`).

use restix_backend::http::transport_error_is_transient;
use restix_backend::registry::TlsOptions;

use crate::location::RestLocation;
use crate::transport::{Method, Reply, Request, Transport, TransportError};
use crate::RestError;

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
        tls: &TlsOptions,
    ) -> Result<HttpTransport, RestError> {
        let agent = restix_backend::http::agent(tls, connections)
            .map_err(|e| RestError::Tls(e.to_string()))?;
        Ok(HttpTransport {
            agent,
            base_url: location.base_url.clone(),
            authorization: location.basic_authorization(),
        })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: &Request<'_>) -> Result<Reply, TransportError> {
        let uri = format!("{}{}", self.base_url, request.path);
        // Connection trouble may pass; a refused TLS handshake does not
        // (restix_backend::http).
        let failed = |e: ureq::Error| TransportError {
            transient: transport_error_is_transient(&e),
            message: e.to_string(),
        };
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
