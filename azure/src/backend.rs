//! [`AzureBackend`]: restic's default layout in an Azure Blob Storage
//! container (`<prefix>/config`, `<prefix>/data/<2 hex>/<id>`, ...), spoken
//! with the Blob service REST API over a pooled ureq agent.
//!
//! | Operation | Request |
//! |---|---|
//! | create | `HEAD <container>?restype=container`, `PUT` it when missing |
//! | list | `GET <container>?restype=container&comp=list&prefix=<dir>/` (5000 a page, `marker`) |
//! | stat | `HEAD <blob>` (`Content-Length`) |
//! | read | `GET <blob>`, `x-ms-range: bytes=a-b` for a part |
//! | write | `PUT <blob>` (Put Blob), or Put Block ×n + Put Block List from `block_threshold` on |
//! | remove | `DELETE <blob>` |
//!
//! Errors follow restic's classification, the one of
//! `restix_backend::http`: 404 is [`BackendError::NotFound`], 416 a short
//! read, 507 no space, 401/403 and other 4xx are permanent
//! ([`BackendError::Other`]); 408, 429, 5xx and lost connections are
//! [`BackendError::Transient`] for the one retry wrapper of
//! `restix_backend::wrap`. Nothing is retried here.

use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use restix_backend::http::{status_error, transport_error};
use restix_backend::registry::TlsOptions;
use restix_backend::{is_id_name, Backend, BackendError, BackendResult, FileInfo, FileType};

use crate::auth::{shared_key_authorization, AccountSettings, Auth, Signable};
use crate::location::AzureLocation;
use crate::{AzureError, AzureOptions};

/// The Blob service version restix speaks.
pub const API_VERSION: &str = "2021-12-02";

/// Blobs listed per page (restic's `defaultListMaxItems`).
const LIST_PAGE: usize = 5000;

/// Query values: everything but RFC 3986's unreserved characters encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Path segments: like query values, `/` kept.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// A container (and prefix) holding a restic repository.
pub struct AzureBackend {
    location: AzureLocation,
    options: AzureOptions,
    auth: Auth,
    /// `scheme://host[:port]` of the service.
    origin: String,
    /// URL path of the container (`/container` or `/account/container`).
    container_path: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("location", &self.location.text)
            .field("origin", &self.origin)
            .field("container_path", &self.container_path)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// One request before signing.
struct Call<'a> {
    op: &'static str,
    method: &'static str,
    /// Blob name (`None` for container requests).
    blob: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

/// One answer, body read completely.
struct Answer {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `403 AuthenticationFailed: <Message>` from the error code header and
    /// the XML body (HEAD answers have only the header).
    fn error_text(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let code = self
            .header("x-ms-error-code")
            .map(str::to_string)
            .or_else(|| xml_text(&body, "Code"));
        let message =
            xml_text(&body, "Message").map(|m| m.lines().next().unwrap_or_default().to_string());
        match (code, message) {
            (Some(code), Some(message)) => format!("{} {code}: {message}", self.status),
            (Some(code), None) => format!("{} {code}", self.status),
            _ => format!("HTTP status {}", self.status),
        }
    }
}

impl AzureBackend {
    /// The backend for `location`; no request is sent.
    pub(crate) fn new(
        location: &AzureLocation,
        options: &AzureOptions,
        settings: AccountSettings,
        agent: ureq::Agent,
    ) -> Result<AzureBackend, AzureError> {
        let service = match &options.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!(
                "https://{}.blob.{}",
                settings.account, settings.endpoint_suffix
            ),
        };
        let (origin, service_path) = split_origin(&service).ok_or_else(|| {
            AzureError::InvalidOption(format!(
                "azure.endpoint {service:?}: want http(s)://host[:port][/account]"
            ))
        })?;
        let container_path = format!(
            "{service_path}/{}",
            utf8_percent_encode(&location.container, QUERY)
        );
        Ok(AzureBackend {
            location: location.clone(),
            options: options.clone(),
            auth: settings.auth,
            origin,
            container_path,
            agent,
        })
    }

    fn display_path(&self, blob: &str) -> String {
        format!("azure:{}:/{blob}", self.location.container)
    }

    fn blob_of(&self, file_type: FileType, name: &str) -> String {
        self.location.blob_name(&file_type.relative_path(name))
    }

    /// Sign and send one request; HTTP statuses are answers here.
    fn send(&self, call: &Call<'_>) -> Result<Answer, ureq::Error> {
        let path = match call.blob {
            Some(blob) => format!(
                "{}/{}",
                self.container_path,
                utf8_percent_encode(blob, PATH)
            ),
            None => self.container_path.clone(),
        };
        let mut headers = call.headers.clone();
        headers.push((
            "x-ms-date".to_string(),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        ));
        headers.push(("x-ms-version".to_string(), API_VERSION.to_string()));
        if call.method == "PUT" {
            headers.push(("content-length".to_string(), call.body.len().to_string()));
        }
        let mut query: Vec<String> = call
            .query
            .iter()
            .map(|(n, v)| format!("{n}={}", utf8_percent_encode(v, QUERY)))
            .collect();
        match &self.auth {
            Auth::SharedKey { account, key } => {
                let authorization = shared_key_authorization(
                    account,
                    key,
                    &Signable {
                        method: call.method,
                        path: &path,
                        query: &call.query,
                        headers: &headers,
                    },
                );
                headers.push(("authorization".to_string(), authorization));
            }
            Auth::Sas(token) => query.push(token.clone()),
        }
        let mut url = format!("{}{path}", self.origin);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        // ureq sets Content-Length itself from the body.
        let headers = headers.iter().filter(|(n, _)| n != "content-length");
        let mut response = match call.method {
            "PUT" => {
                let mut request = self.agent.put(&url);
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request.send(call.body)?
            }
            method => {
                let mut request = match method {
                    "HEAD" => self.agent.head(&url),
                    "DELETE" => self.agent.delete(&url),
                    _ => self.agent.get(&url),
                };
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request.call()?
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if call.method == "HEAD" {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Send and sort the answer: success, or a classified backend error
    /// naming the blob.
    fn call(&self, call: Call<'_>) -> BackendResult<Answer> {
        let shown = self.display_path(call.blob.unwrap_or(""));
        let answer = self
            .send(&call)
            .map_err(|e| transport_error(call.op, shown.clone(), &e))?;
        match answer.status {
            200..=299 => Ok(answer),
            status => Err(status_error(call.op, shown, status, answer.error_text())),
        }
    }

    fn head_blob(&self, blob: &str) -> BackendResult<u64> {
        let answer = self.call(Call {
            op: "stat",
            method: "HEAD",
            blob: Some(blob),
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
        })?;
        answer
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| BackendError::Transient {
                op: "stat",
                path: self.display_path(blob),
                reason: "answer without Content-Length".to_string(),
            })
    }

    /// Headers every upload carries: type, MD5 of the body, access tier.
    fn upload_headers(&self, data: &[u8]) -> Vec<(String, String)> {
        vec![
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("content-md5".to_string(), content_md5(data)),
        ]
    }

    fn tier_header(&self) -> Option<(String, String)> {
        self.options
            .access_tier
            .clone()
            .map(|tier| ("x-ms-access-tier".to_string(), tier))
    }

    /// Put Blob: one request, atomic.
    fn put_blob(&self, blob: &str, data: &[u8]) -> BackendResult<()> {
        let mut headers = self.upload_headers(data);
        headers.push(("x-ms-blob-type".to_string(), "BlockBlob".to_string()));
        headers.extend(self.tier_header());
        self.call(Call {
            op: "save",
            method: "PUT",
            blob: Some(blob),
            query: Vec::new(),
            headers,
            body: data,
        })
        .map(|_| ())
    }

    /// Put Block for each `block_size` slice, then Put Block List: the blob
    /// appears only when the list is committed, so the write stays atomic.
    fn put_blocks(&self, blob: &str, data: &[u8]) -> BackendResult<()> {
        let block_size = usize::try_from(self.options.block_size.max(1)).unwrap_or(usize::MAX);
        let mut ids = Vec::new();
        for (index, block) in data.chunks(block_size).enumerate() {
            // Block IDs of one blob must all have the same length.
            let id = data_encoding::BASE64.encode(format!("restix-block-{index:010}").as_bytes());
            self.call(Call {
                op: "save",
                method: "PUT",
                blob: Some(blob),
                query: vec![
                    ("comp".to_string(), "block".to_string()),
                    ("blockid".to_string(), id.clone()),
                ],
                headers: self.upload_headers(block),
                body: block,
            })?;
            ids.push(id);
        }
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            list.push_str("<Latest>");
            list.push_str(id);
            list.push_str("</Latest>");
        }
        list.push_str("</BlockList>");
        let mut headers = vec![
            ("content-type".to_string(), "application/xml".to_string()),
            ("content-md5".to_string(), content_md5(list.as_bytes())),
        ];
        headers.extend(self.tier_header());
        self.call(Call {
            op: "save",
            method: "PUT",
            blob: Some(blob),
            query: vec![("comp".to_string(), "blocklist".to_string())],
            headers,
            body: list.as_bytes(),
        })
        .map(|_| ())
    }

    /// Names and sizes of all blobs below `dir` (`<prefix>/data/`).
    fn list_blobs(&self, dir: &str) -> BackendResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("restype".to_string(), "container".to_string()),
                ("comp".to_string(), "list".to_string()),
                ("prefix".to_string(), dir.to_string()),
                ("maxresults".to_string(), LIST_PAGE.to_string()),
            ];
            if let Some(m) = &marker {
                query.push(("marker".to_string(), m.clone()));
            }
            let answer = self.call(Call {
                op: "list",
                method: "GET",
                blob: None,
                query,
                headers: Vec::new(),
                body: &[],
            })?;
            let text = String::from_utf8_lossy(&answer.body);
            let page = parse_list(&text).map_err(|e| BackendError::Transient {
                op: "list",
                path: self.display_path(dir),
                reason: format!("bad List Blobs answer: {e}"),
            })?;
            out.extend(page.blobs);
            match page.next_marker {
                Some(next) if !next.is_empty() && Some(&next) != marker.as_ref() => {
                    marker = Some(next)
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Create the container unless it exists (restic's `Create`): a SAS
    /// token may not allow asking, which counts as present.
    fn ensure_container(&self) -> BackendResult<()> {
        let probe = self.call(Call {
            op: "create",
            method: "HEAD",
            blob: None,
            query: vec![("restype".to_string(), "container".to_string())],
            headers: Vec::new(),
            body: &[],
        });
        match probe {
            Ok(_) => return Ok(()),
            Err(BackendError::NotFound { .. }) => {}
            Err(BackendError::Other(m)) if m.contains(" 403") => return Ok(()),
            Err(e) => return Err(e),
        }
        let created = self.call(Call {
            op: "create",
            method: "PUT",
            blob: None,
            query: vec![("restype".to_string(), "container".to_string())],
            headers: Vec::new(),
            body: &[],
        });
        match created {
            Ok(_) => Ok(()),
            // Created meanwhile by someone else.
            Err(BackendError::Other(m)) if m.contains("ContainerAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Backend for AzureBackend {
    fn location(&self) -> String {
        self.location.text.clone()
    }

    fn create(&self) -> BackendResult<()> {
        self.ensure_container()?;
        let config = self.blob_of(FileType::Config, "config");
        match self.head_blob(&config) {
            Ok(_) => Err(BackendError::AlreadyExists {
                path: self.display_path(&config),
            }),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        if file_type == FileType::Config {
            return match self.stat(FileType::Config, "config") {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = format!("{}/", self.location.blob_name(file_type.dir_name()));
        let blobs = match self.list_blobs(&dir) {
            Ok(blobs) => blobs,
            // A missing container lists as empty, like a missing folder.
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(blobs
            .into_iter()
            .filter_map(|(blob, size)| {
                let rest = blob.strip_prefix(&dir)?;
                let name = match file_type {
                    FileType::Pack => rest.rsplit('/').next()?,
                    _ if rest.contains('/') => return None,
                    _ => rest,
                };
                is_id_name(name).then(|| FileInfo {
                    name: name.to_string(),
                    size,
                })
            })
            .collect())
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        let blob = self.blob_of(file_type, name);
        let answer = self.call(Call {
            op: "load",
            method: "GET",
            blob: Some(&blob),
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
        })?;
        if let Some(expected) = answer
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if expected != answer.body.len() {
                return Err(BackendError::Transient {
                    op: "load",
                    path: self.display_path(&blob),
                    reason: format!("got {} of {expected} bytes", answer.body.len()),
                });
            }
        }
        Ok(answer.body)
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let blob = self.blob_of(file_type, name);
        if length == 0 {
            self.head_blob(&blob)?;
            return Ok(Vec::new());
        }
        let short = |got: u64| BackendError::ShortRead {
            path: self.display_path(&blob),
            offset,
            wanted: length,
            got,
        };
        let last = offset.saturating_add(length - 1);
        let answer = self.call(Call {
            op: "load",
            method: "GET",
            blob: Some(&blob),
            query: Vec::new(),
            headers: vec![("x-ms-range".to_string(), format!("bytes={offset}-{last}"))],
            body: &[],
        });
        let answer = match answer {
            Ok(answer) => answer,
            // 416: the offset lies beyond the end of the blob.
            Err(BackendError::Other(m)) if m.contains(" 416") => return Err(short(0)),
            Err(e) => return Err(e),
        };
        let mut body = if answer.status == 206 {
            answer.body
        } else {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            answer.body.get(start..).unwrap_or_default().to_vec()
        };
        let want = usize::try_from(length).unwrap_or(usize::MAX);
        if body.len() < want {
            return Err(short(body.len() as u64));
        }
        body.truncate(want);
        Ok(body)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let blob = self.blob_of(file_type, name);
        if data.len() as u64 >= self.options.block_threshold {
            self.put_blocks(&blob, data)
        } else {
            self.put_blob(&blob, data)
        }
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let blob = self.blob_of(file_type, name);
        self.call(Call {
            op: "remove",
            method: "DELETE",
            blob: Some(&blob),
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
        })
        .map(|_| ())
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let size = self.head_blob(&self.blob_of(file_type, name))?;
        Ok(FileInfo {
            name: name.to_string(),
            size,
        })
    }

    fn connections(&self) -> usize {
        self.options.connections
    }

    /// Blob Storage is strongly consistent: a committed blob is listed by
    /// every later List Blobs.
    fn list_after_write_consistent(&self) -> bool {
        true
    }
}

/// The pooled agent of `restix_backend::http`: statuses are answers, no
/// redirects, TLS and `User-Agent` from the global flags.
pub(crate) fn build_agent(
    options: &AzureOptions,
    tls: &TlsOptions,
) -> Result<ureq::Agent, AzureError> {
    restix_backend::http::agent(tls, options.connections)
        .map_err(|e| AzureError::Tls(e.to_string()))
}

/// `https://host:port/acct` → (`https://host:port`, `/acct`).
fn split_origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return None;
    }
    Some((
        format!("{scheme}://{host}"),
        path.trim_end_matches('/').to_string(),
    ))
}

fn content_md5(data: &[u8]) -> String {
    data_encoding::BASE64.encode(Md5::digest(data).as_slice())
}

/// Text of the first `<name>` element anywhere in `xml`.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
        .map(str::to_string)
}

/// One page of List Blobs.
struct ListPage {
    blobs: Vec<(String, u64)>,
    next_marker: Option<String>,
}

fn parse_list(xml: &str) -> Result<ListPage, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let mut blobs = Vec::new();
    for blob in root.descendants().filter(|n| n.has_tag_name("Blob")) {
        let name = blob
            .children()
            .find(|n| n.has_tag_name("Name"))
            .and_then(|n| n.text())
            .ok_or("a Blob without Name")?;
        let size = blob
            .descendants()
            .find(|n| n.has_tag_name("Content-Length"))
            .and_then(|n| n.text())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or("a Blob without Content-Length")?;
        blobs.push((name.to_string(), size));
    }
    let next_marker = root
        .children()
        .find(|n| n.has_tag_name("NextMarker"))
        .and_then(|n| n.text())
        .map(str::to_string);
    Ok(ListPage { blobs, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            split_origin("http://127.0.0.1:10000/devstoreaccount1/"),
            Some((
                "http://127.0.0.1:10000".to_string(),
                "/devstoreaccount1".to_string()
            ))
        );
        assert_eq!(
            split_origin("https://acct.blob.core.windows.net"),
            Some((
                "https://acct.blob.core.windows.net".to_string(),
                String::new()
            ))
        );
        assert_eq!(split_origin("ftp://x"), None);
        assert_eq!(split_origin("nourl"), None);
    }

    #[test]
    fn list_pages() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1/devstoreaccount1/" ContainerName="c">
<Prefix>r/keys/</Prefix><MaxResults>5000</MaxResults>
<Blobs><Blob><Name>r/keys/aa</Name><Properties><Content-Length>42</Content-Length></Properties></Blob>
<Blob><Name>r/keys/bb</Name><Properties><Content-Length>7</Content-Length></Properties></Blob></Blobs>
<NextMarker>m2</NextMarker></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(
            page.blobs,
            vec![("r/keys/aa".to_string(), 42), ("r/keys/bb".to_string(), 7)]
        );
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
        let empty =
            parse_list("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert!(empty.blobs.is_empty());
        assert_eq!(empty.next_marker, None);
        assert_eq!(
            xml_text(
                "<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>gone\nRequestId:1</Message></Error>",
                "Code"
            )
            .as_deref(),
            Some("BlobNotFound")
        );
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }
}
