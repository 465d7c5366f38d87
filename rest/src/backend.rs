//! [`RestBackend`]: restic's REST protocol (restic
//! `internal/backend/rest/rest.go`, rest-server's API document) on any
//! [`Transport`].
//!
//! | Operation | Request | Success |
//! |---|---|---|
//! | create (init) | `POST /?create=true` | 200 |
//! | list | `GET /<type>/` | 200, JSON: v2 `[{"name","size"}]`, v1 `["name"]` |
//! | stat | `HEAD /<type>/<name>` | 200, size in `Content-Length` |
//! | read | `GET /<type>/<name>`, `Range: bytes=a-b` for a part | 200 / 206 |
//! | write | `POST /<type>/<name>` with the body | 200 |
//! | remove | `DELETE /<type>/<name>` | 200 |
//!
//! Every request asks for protocol v2 (`Accept:
//! application/vnd.x.restic.rest.v2`); a server that answers a listing with
//! another content type speaks v1, and each listed name is then stat'ed.
//! The REST layout is flat: packs live at `/data/<id>`, not
//! `/data/<2 hex>/<id>` (the server maps them).
//!
//! Errors keep restic's classification (`IsNotExist`, `IsPermanentError`),
//! the one of `restix_backend::http`: 404 is [`BackendError::NotFound`],
//! 416 a short read, 507 [`BackendError::NoSpace`]; 408, 429, 5xx and
//! transport trouble are [`BackendError::Transient`], which the one retry
//! wrapper of `restix_backend::wrap` retries; any other status (401, 403,
//! ...) and a transport that is gone for good are [`BackendError::Other`]
//! (permanent). No request is retried here.

use restix_backend::http::{status_error, unexpected_response};
use restix_backend::{is_id_name, Backend, BackendError, BackendResult, FileInfo, FileType};

use crate::transport::{Method, Reply, Request, Transport, TransportError};

/// `Accept` / `Content-Type` of protocol version 1.
pub const CONTENT_TYPE_V1: &str = "application/vnd.x.restic.rest.v1";
/// `Accept` / `Content-Type` of protocol version 2 (listings with sizes).
pub const CONTENT_TYPE_V2: &str = "application/vnd.x.restic.rest.v2";

/// A restic repository behind a REST server.
pub struct RestBackend<T: Transport> {
    transport: T,
    display: String,
    connections: usize,
    flaky_errors: bool,
}

impl<T: Transport> std::fmt::Debug for RestBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestBackend")
            .field("location", &self.display)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct ListEntryV2 {
    name: String,
    size: u64,
}

impl<T: Transport> RestBackend<T> {
    /// The protocol over `transport`. `display` names the repository in
    /// messages (`rest:http://host/repo/`, password hidden);
    /// `connections` is how many operations the engine runs at once.
    pub fn new(transport: T, display: impl Into<String>, connections: usize) -> RestBackend<T> {
        RestBackend {
            transport,
            display: display.into(),
            connections: connections.max(1),
            flaky_errors: false,
        }
    }

    /// Mark the server's "not found" and other permanent answers as
    /// possibly flaky, so the retry wrapper tries them a few times too
    /// (restic's `HasFlakyErrors`, set for `rclone:`).
    pub fn with_flaky_errors(mut self, flaky: bool) -> RestBackend<T> {
        self.flaky_errors = flaky;
        self
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// `/config`, `/keys/<name>`, `/data/<name>` (restic's REST layout).
    fn file_path(file_type: FileType, name: &str) -> String {
        match file_type {
            FileType::Config => "/config".to_string(),
            other => format!("/{}/{name}", other.dir_name()),
        }
    }

    /// Where `path` is shown in messages.
    fn shown(&self, path: &str) -> String {
        format!("{}{path}", self.display.trim_end_matches('/'))
    }

    /// Send one request; transport failures become backend errors.
    fn exchange(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> BackendResult<Reply> {
        let mut headers = headers;
        headers.push(("accept", CONTENT_TYPE_V2.to_string()));
        let request = Request {
            method,
            path: path.to_string(),
            headers,
            body,
        };
        self.transport
            .send(&request)
            .map_err(|e| self.transport_error(op, path, e))
    }

    fn transport_error(&self, op: &'static str, path: &str, e: TransportError) -> BackendError {
        if e.transient {
            BackendError::Transient {
                op,
                path: self.shown(path),
                reason: e.message,
            }
        } else {
            BackendError::Other(format!("{op} {}: {}", self.shown(path), e.message))
        }
    }

    /// The error for a non-success status (restic's `restError` and
    /// `IsPermanentError`).
    fn status_error(&self, op: &'static str, path: &str, reply: &Reply) -> BackendError {
        status_error(
            op,
            self.shown(path),
            reply.status,
            unexpected_response(reply.status),
        )
    }

    fn expect_ok(&self, op: &'static str, path: &str, reply: Reply) -> BackendResult<Reply> {
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.status_error(op, path, &reply))
        }
    }

    fn stat_path(&self, path: &str) -> BackendResult<u64> {
        let reply = self.exchange("stat", Method::Head, path, Vec::new(), &[])?;
        let reply = self.expect_ok("stat", path, reply)?;
        reply
            .content_length()
            .ok_or_else(|| BackendError::Transient {
                op: "stat",
                path: self.shown(path),
                reason: "answer without Content-Length".to_string(),
            })
    }

    fn bad_listing(&self, path: &str, e: serde_json::Error) -> BackendError {
        BackendError::Transient {
            op: "list",
            path: self.shown(path),
            reason: format!("Decode: {e}"),
        }
    }
}

impl<T: Transport> Backend for RestBackend<T> {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn create(&self) -> BackendResult<()> {
        let config = Self::file_path(FileType::Config, "config");
        match self.stat_path(&config) {
            Ok(_) => {
                return Err(BackendError::AlreadyExists {
                    path: self.shown(&config),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let path = "/?create=true";
        let reply = self.exchange(
            "create",
            Method::Post,
            path,
            vec![("content-type", "binary/octet-stream".to_string())],
            &[],
        )?;
        self.expect_ok("create", path, reply).map(|_| ())
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        if file_type == FileType::Config {
            return match self.stat(FileType::Config, "config") {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let path = format!("/{}/", file_type.dir_name());
        let reply = self.exchange("list", Method::Get, &path, Vec::new(), &[])?;
        if reply.status == 404 {
            // A missing folder lists as empty; rclone answers 404 only for
            // internal errors (it lists missing folders as empty itself).
            let from_rclone = reply
                .header("server")
                .is_some_and(|s| s.starts_with("rclone/"));
            if !from_rclone {
                return Ok(Vec::new());
            }
            return Err(BackendError::Transient {
                op: "list",
                path: self.shown(&path),
                reason: unexpected_response(404),
            });
        }
        let reply = self.expect_ok("list", &path, reply)?;
        let v2 = reply
            .header("content-type")
            .is_some_and(|t| t.trim() == CONTENT_TYPE_V2);
        let mut files = Vec::new();
        if v2 {
            let entries: Vec<ListEntryV2> =
                serde_json::from_slice(&reply.body).map_err(|e| self.bad_listing(&path, e))?;
            for entry in entries {
                if is_id_name(&entry.name) {
                    files.push(FileInfo {
                        name: entry.name,
                        size: entry.size,
                    });
                }
            }
        } else {
            // v1 lists names only: stat each one (restic's listv1).
            let names: Vec<String> =
                serde_json::from_slice(&reply.body).map_err(|e| self.bad_listing(&path, e))?;
            for name in names.into_iter().filter(|n| is_id_name(n)) {
                match self.stat_path(&Self::file_path(file_type, &name)) {
                    Ok(size) => files.push(FileInfo { name, size }),
                    // Removed between listing and stat: not there any more.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(files)
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        let path = Self::file_path(file_type, name);
        let reply = self.exchange("load", Method::Get, &path, Vec::new(), &[])?;
        let reply = self.expect_ok("load", &path, reply)?;
        if let Some(expected) = reply.content_length() {
            if expected != reply.body.len() as u64 {
                return Err(BackendError::Transient {
                    op: "load",
                    path: self.shown(&path),
                    reason: format!("got {} of {expected} bytes", reply.body.len()),
                });
            }
        }
        Ok(reply.body)
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let path = Self::file_path(file_type, name);
        if length == 0 {
            self.stat_path(&path)?;
            return Ok(Vec::new());
        }
        let short = |got: u64| BackendError::ShortRead {
            path: self.shown(&path),
            offset,
            wanted: length,
            got,
        };
        let last = offset.saturating_add(length - 1);
        let reply = self.exchange(
            "load",
            Method::Get,
            &path,
            vec![("range", format!("bytes={offset}-{last}"))],
            &[],
        )?;
        if reply.status == 416 {
            return Err(short(0));
        }
        let reply = self.expect_ok("load", &path, reply)?;
        let mut body = if reply.status == 206 {
            reply.body
        } else {
            // A server that ignores Range sends the whole file.
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            reply.body.get(start..).unwrap_or_default().to_vec()
        };
        let want = usize::try_from(length).unwrap_or(usize::MAX);
        if body.len() < want {
            return Err(short(body.len() as u64));
        }
        body.truncate(want);
        Ok(body)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        // The server writes to a temporary file and renames it (rest-server,
        // rclone's restic server), so the file appears complete or not at all.
        let path = Self::file_path(file_type, name);
        let reply = self.exchange(
            "save",
            Method::Post,
            &path,
            vec![("content-type", "application/octet-stream".to_string())],
            data,
        )?;
        self.expect_ok("save", &path, reply).map(|_| ())
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let path = Self::file_path(file_type, name);
        let reply = self.exchange("remove", Method::Delete, &path, Vec::new(), &[])?;
        self.expect_ok("remove", &path, reply).map(|_| ())
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let size = self.stat_path(&Self::file_path(file_type, name))?;
        Ok(FileInfo {
            name: name.to_string(),
            size,
        })
    }

    fn connections(&self) -> usize {
        self.connections
    }

    fn has_flaky_errors(&self) -> bool {
        self.flaky_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_flat() {
        type B = RestBackend<crate::HttpTransport>;
        let id = "ab".repeat(32);
        assert_eq!(B::file_path(FileType::Config, "config"), "/config");
        assert_eq!(B::file_path(FileType::Pack, &id), format!("/data/{id}"));
        assert_eq!(B::file_path(FileType::Key, &id), format!("/keys/{id}"));
        assert_eq!(B::file_path(FileType::Lock, &id), format!("/locks/{id}"));
    }
}
