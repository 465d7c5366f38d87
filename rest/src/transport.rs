//! The HTTP exchange the REST protocol needs, independent of how the bytes
//! travel: [`crate::HttpTransport`] sends them over pooled HTTP/1.1 (or
//! TLS) connections, restix-rclone over HTTP/2 on a child process's
//! stdin/stdout. [`crate::RestBackend`] speaks the protocol on top.

/// The methods of restic's REST protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Read a file or list a folder.
    Get,
    /// Stat a file (its size is the `Content-Length`).
    Head,
    /// Store a file, or create the repository (`?create=true`).
    Post,
    /// Remove a file.
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One request, its path relative to the repository URL.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Path and query below the repository URL: `/`, `/config`,
    /// `/data/<id>`, `/keys/`, `/?create=true`.
    pub path: String,
    /// Extra headers (`Accept`, `Range`, `Content-Type`); the transport
    /// adds `Content-Length` and authentication.
    pub headers: Vec<(&'static str, String)>,
    /// The request body (empty for all but `POST`).
    pub body: &'a [u8],
}

/// An answer, its body read completely (empty for `HEAD`).
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when the server sent a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// What went wrong (connection refused, reset, closed pipe, ...).
    pub message: String,
    /// Whether another attempt may succeed: true for network trouble
    /// (connection refused or reset, timeouts), false when the way to the
    /// server is gone for good (the rclone child process exited).
    pub transient: bool,
}

impl TransportError {
    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> TransportError {
        TransportError {
            message: message.into(),
            transient: true,
        }
    }

    /// An error no retry can change.
    pub fn permanent(message: impl Into<String>) -> TransportError {
        TransportError {
            message: message.into(),
            transient: false,
        }
    }
}

/// Sends requests and returns the answers; called from many threads at
/// once (as many as the backend's `connections`).
pub trait Transport: Send + Sync {
    /// Send one request and read its whole answer. HTTP error statuses are
    /// answers, not errors.
    fn send(&self, request: &Request<'_>) -> Result<Reply, TransportError>;
}
