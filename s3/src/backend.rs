//! [`S3Backend`]: restic's object layout on an S3 bucket, spoken with signed
//! (presigned, SigV4) URLs from rusty-s3 over a pooled blocking ureq agent.

use std::time::Duration;

use md5::{Digest, Md5};
use restix_backend::{is_id_name, Backend, BackendError, BackendResult, FileInfo, FileType};
use rusty_s3::actions::{CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use crate::credentials::resolve_credentials;
use crate::location::S3Location;
use crate::options::{BucketLookup, S3Options};
use crate::S3Error;
use crate::TlsOptions;

/// How long a signed URL stays valid. Requests are signed right before they
/// are sent; the margin covers slow uploads and clock skew.
const SIGNED_URL_LIFETIME: Duration = Duration::from_secs(3600);

/// Region used to sign when nothing says otherwise (AWS's default).
const DEFAULT_REGION: &str = "us-east-1";

/// An S3 bucket (and prefix) holding a restic repository.
pub struct S3Backend {
    location: S3Location,
    options: S3Options,
    bucket: Bucket,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location.text)
            .field("region", &self.bucket.region())
            .finish_non_exhaustive()
    }
}

/// One HTTP exchange's answer, body read completely.
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Code: Message` of an S3 XML error body, or the status alone.
    fn error_text(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let code = xml_element(&body, "Code");
        let message = xml_element(&body, "Message");
        match (code, message) {
            (Some(code), Some(message)) => format!("{} {code}: {message}", self.status),
            (Some(code), None) => format!("{} {code}", self.status),
            _ => format!("HTTP status {}", self.status),
        }
    }
}

/// Why an attempt failed: retrying may help or it does not (the retry
/// wrapper of `restix-backend` decides by the error's kind).
enum Failure {
    Permanent(BackendError),
    Transient(String),
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Head,
    Put,
    Post,
    Delete,
}

impl S3Backend {
    /// Open the bucket of `location` (no request is sent unless the region
    /// must be discovered). Credentials come from the environment
    /// ([`crate::credentials`]) unless `options.anonymous`.
    pub fn open(
        location: &S3Location,
        options: &S3Options,
        tls: &TlsOptions,
    ) -> Result<S3Backend, S3Error> {
        S3Backend::open_with_env(location, options, tls, &|name| std::env::var(name).ok())
    }

    /// [`S3Backend::open`] with `env` as the environment (credentials and
    /// region variables), so callers and tests need not touch the process's.
    pub fn open_with_env(
        location: &S3Location,
        options: &S3Options,
        tls: &TlsOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Backend, S3Error> {
        let credentials = if options.anonymous {
            None
        } else {
            let c = resolve_credentials(env)?;
            Some(match c.session_token {
                Some(token) => Credentials::new_with_token(c.key_id, c.secret, token),
                None => Credentials::new(c.key_id, c.secret),
            })
        };
        let agent = build_agent(options, tls)?;
        let endpoint: Url = location.endpoint_url().parse().map_err(|e| {
            S3Error::InvalidLocation(format!("endpoint {}: {e}", location.endpoint))
        })?;
        let style = url_style(options.bucket_lookup, &endpoint, &location.bucket);
        let configured_region = options
            .region
            .clone()
            .or_else(|| env("AWS_DEFAULT_REGION").filter(|r| !r.is_empty()))
            .or_else(|| env("AWS_REGION").filter(|r| !r.is_empty()))
            .or_else(|| region_from_host(endpoint.host_str().unwrap_or_default()));
        let make_bucket = |region: String| {
            Bucket::new(endpoint.clone(), style, location.bucket.clone(), region)
                .map_err(|e| S3Error::InvalidLocation(format!("{}: {e:?}", location.text)))
        };
        let mut backend = S3Backend {
            location: location.clone(),
            options: options.clone(),
            bucket: make_bucket(
                configured_region
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            )?,
            credentials,
            agent,
        };
        if configured_region.is_none() {
            if let Some(region) = backend.discover_region() {
                backend.bucket = make_bucket(region)?;
            }
        }
        Ok(backend)
    }

    /// The signing region in use.
    pub fn region(&self) -> &str {
        self.bucket.region()
    }

    /// Ask the server which region the bucket is in: S3 answers a HEAD of the
    /// bucket with `x-amz-bucket-region` (even when refusing the request).
    fn discover_region(&self) -> Option<String> {
        let url = self
            .bucket
            .head_bucket(self.credentials.as_ref())
            .sign(SIGNED_URL_LIFETIME);
        let reply = self.exchange(Verb::Head, &url, &[], None).ok()?;
        reply
            .header("x-amz-bucket-region")
            .map(str::to_string)
            .filter(|r| !r.is_empty() && r != self.bucket.region())
    }

    /// Send one request; status codes are not errors here.
    fn exchange(
        &self,
        verb: Verb,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, ureq::Error> {
        let uri = url.as_str();
        let mut response = match verb {
            Verb::Get | Verb::Head | Verb::Delete => {
                let mut request = match verb {
                    Verb::Get => self.agent.get(uri),
                    Verb::Head => self.agent.head(uri),
                    _ => self.agent.delete(uri),
                };
                for (name, value) in headers {
                    request = request.header(*name, value.as_str());
                }
                request.call()?
            }
            Verb::Put | Verb::Post => {
                let mut request = match verb {
                    Verb::Put => self.agent.put(uri),
                    _ => self.agent.post(uri),
                };
                for (name, value) in headers {
                    request = request.header(*name, value.as_str());
                }
                request.send(body.unwrap_or_default())?
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match verb {
            Verb::Head => Vec::new(),
            _ => response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()?,
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// One attempt: send, then sort the answer into success, a permanent
    /// error or a transient one (4xx answers other than 408/429 do not
    /// change on retry; transport errors, 408, 429 and 5xx may).
    fn attempt(
        &self,
        op: &'static str,
        key: &str,
        verb: Verb,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, Failure> {
        let reply = self
            .exchange(verb, url, headers, body)
            .map_err(|e| Failure::Transient(format!("{op} {key}: {e}")))?;
        match reply.status {
            200..=299 => Ok(reply),
            404 => Err(Failure::Permanent(BackendError::NotFound {
                path: self.display_path(key),
            })),
            408 | 429 | 500..=599 => Err(Failure::Transient(format!(
                "{op} {key}: {}",
                reply.error_text()
            ))),
            _ => Err(Failure::Permanent(BackendError::Other(format!(
                "{op} {}: {}",
                self.display_path(key),
                reply.error_text()
            )))),
        }
    }

    /// Run one `attempt`: a transient failure becomes
    /// [`BackendError::Transient`] naming the object; `restix_backend::retry`
    /// tries again (every backend under one policy).
    fn once<T>(
        &self,
        op: &'static str,
        key: &str,
        attempt: impl FnOnce() -> Result<T, Failure>,
    ) -> BackendResult<T> {
        attempt().map_err(|failure| match failure {
            Failure::Permanent(e) => e,
            Failure::Transient(reason) => BackendError::Transient {
                op,
                path: self.display_path(key),
                reason,
            },
        })
    }

    fn display_path(&self, key: &str) -> String {
        format!("s3:{}/{}", self.location.bucket, key)
    }

    fn key_of(&self, file_type: FileType, name: &str) -> String {
        self.location.key(&file_type.relative_path(name))
    }

    fn head_object(&self, key: &str) -> BackendResult<u64> {
        self.once("stat", key, || {
            let url = self
                .bucket
                .head_object(self.credentials.as_ref(), key)
                .sign(SIGNED_URL_LIFETIME);
            let reply = self.attempt("stat", key, Verb::Head, &url, &[], None)?;
            reply
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Failure::Transient(format!("stat {key}: answer without Content-Length"))
                })
        })
    }

    fn put_single(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        let md5 = content_md5(data);
        self.once("save", key, || {
            let mut action = self.bucket.put_object(self.credentials.as_ref(), key);
            let mut headers = vec![("content-md5", md5.clone())];
            if let Some(class) = &self.options.storage_class {
                headers.push(("x-amz-storage-class", class.clone()));
            }
            for (name, value) in &headers {
                action.headers_mut().insert(*name, value.clone());
            }
            let url = action.sign(SIGNED_URL_LIFETIME);
            self.attempt("save", key, Verb::Put, &url, &headers, Some(data))
                .map(|_| ())
        })
    }

    /// Multipart upload for large objects: the object appears only when the
    /// upload is completed, so writes stay atomic.
    fn put_multipart(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        let upload_id = self.once("save", key, || {
            let mut action = self
                .bucket
                .create_multipart_upload(self.credentials.as_ref(), key);
            let mut headers = Vec::new();
            if let Some(class) = &self.options.storage_class {
                headers.push(("x-amz-storage-class", class.clone()));
                action
                    .headers_mut()
                    .insert("x-amz-storage-class", class.clone());
            }
            let url = action.sign(SIGNED_URL_LIFETIME);
            let reply = self.attempt("save", key, Verb::Post, &url, &headers, None)?;
            let text = String::from_utf8_lossy(&reply.body);
            CreateMultipartUpload::parse_response(&text)
                .map(|r| r.upload_id().to_string())
                .map_err(|e| {
                    Failure::Permanent(BackendError::Other(format!(
                        "save {key}: bad CreateMultipartUpload answer: {e}"
                    )))
                })
        })?;
        let result = self.upload_parts(key, &upload_id, data);
        if result.is_err() {
            // Best effort: a dangling upload only costs storage until the
            // bucket's lifecycle rules clean it.
            let url = self
                .bucket
                .abort_multipart_upload(self.credentials.as_ref(), key, &upload_id)
                .sign(SIGNED_URL_LIFETIME);
            let _ = self.exchange(Verb::Delete, &url, &[], None);
        }
        result
    }

    fn upload_parts(&self, key: &str, upload_id: &str, data: &[u8]) -> BackendResult<()> {
        let part_size =
            usize::try_from(self.options.part_size.max(5 * 1024 * 1024)).unwrap_or(usize::MAX);
        let mut etags = Vec::new();
        for (index, part) in data.chunks(part_size).enumerate() {
            let number = u16::try_from(index + 1)
                .map_err(|_| BackendError::Other(format!("save {key}: more than 65535 parts")))?;
            let md5 = content_md5(part);
            let etag = self.once("save", key, || {
                let mut action =
                    self.bucket
                        .upload_part(self.credentials.as_ref(), key, number, upload_id);
                action.headers_mut().insert("content-md5", md5.clone());
                let url = action.sign(SIGNED_URL_LIFETIME);
                let headers = [("content-md5", md5.clone())];
                let reply = self.attempt("save", key, Verb::Put, &url, &headers, Some(part))?;
                reply.header("etag").map(str::to_string).ok_or_else(|| {
                    Failure::Permanent(BackendError::Other(format!(
                        "save {key}: UploadPart answer without ETag"
                    )))
                })
            })?;
            etags.push(etag);
        }
        self.once("save", key, || {
            let action = self.bucket.complete_multipart_upload(
                self.credentials.as_ref(),
                key,
                upload_id,
                etags.iter().map(String::as_str),
            );
            let url = action.sign(SIGNED_URL_LIFETIME);
            let body = action.body();
            let reply = self.attempt("save", key, Verb::Post, &url, &[], Some(body.as_bytes()))?;
            // S3 may answer 200 with an error document in the body.
            let text = String::from_utf8_lossy(&reply.body);
            if text.contains("<Error>") {
                return Err(Failure::Transient(format!(
                    "save {key}: CompleteMultipartUpload failed: {}",
                    xml_element(&text, "Message").unwrap_or_default()
                )));
            }
            Ok(())
        })
    }

    /// All objects under `dir_key` (`<prefix>/data/`), following continuation tokens.
    fn list_keys(&self, dir_key: &str) -> BackendResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.once("list", dir_key, || {
                let mut action = ListObjectsV2::new(&self.bucket, self.credentials.as_ref());
                action.with_prefix(dir_key);
                if let Some(t) = &token {
                    action.with_continuation_token(t.as_str());
                }
                let url = action.sign(SIGNED_URL_LIFETIME);
                let reply = self.attempt("list", dir_key, Verb::Get, &url, &[], None)?;
                let text = String::from_utf8_lossy(&reply.body);
                ListObjectsV2::parse_response(&text).map_err(|e| {
                    Failure::Transient(format!("list {dir_key}: bad ListObjectsV2 answer: {e}"))
                })
            })?;
            out.extend(
                page.contents
                    .into_iter()
                    .map(|c| (c.key, c.size.unwrap_or(0))),
            );
            match page.next_continuation_token {
                Some(next) if !next.is_empty() && Some(&next) != token.as_ref() => {
                    token = Some(next)
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Make sure the bucket exists, creating it like restic does when the
    /// server says it is missing (an access-denied answer counts as present).
    fn ensure_bucket(&self) -> BackendResult<()> {
        let bucket_name = self.location.bucket.clone();
        let exists = self.once("create", &bucket_name, || {
            let url = self
                .bucket
                .head_bucket(self.credentials.as_ref())
                .sign(SIGNED_URL_LIFETIME);
            match self.attempt("create", &bucket_name, Verb::Head, &url, &[], None) {
                Ok(_) => Ok(true),
                Err(Failure::Permanent(BackendError::NotFound { .. })) => Ok(false),
                // HEAD answers carry no error body: 403 is AccessDenied.
                Err(Failure::Permanent(BackendError::Other(m))) if m.contains(" 403") => Ok(true),
                Err(other) => Err(other),
            }
        })?;
        if exists {
            return Ok(());
        }
        let Some(credentials) = self.credentials.as_ref() else {
            return Err(BackendError::Other(format!(
                "bucket {bucket_name} does not exist and cannot be created anonymously"
            )));
        };
        self.once("create", &bucket_name, || {
            let action = self.bucket.create_bucket(credentials);
            let url = action.sign(SIGNED_URL_LIFETIME);
            let body = action.body();
            self.attempt(
                "create",
                &bucket_name,
                Verb::Put,
                &url,
                &[],
                Some(body.as_bytes()),
            )
            .map(|_| ())
        })
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.text.clone()
    }

    fn create(&self) -> BackendResult<()> {
        self.ensure_bucket()?;
        // S3 has no folders: the layout appears with the first object of each kind.
        let config = self.key_of(FileType::Config, "config");
        match self.head_object(&config) {
            Ok(_) => Err(BackendError::AlreadyExists {
                path: self.display_path(&config),
            }),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        if file_type == FileType::Config {
            return match self.head_object(&self.key_of(FileType::Config, "config")) {
                Ok(size) => Ok(vec![FileInfo {
                    name: "config".to_string(),
                    size,
                }]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir_key = format!("{}/", self.location.key(file_type.dir_name()));
        let entries = match self.list_keys(&dir_key) {
            Ok(entries) => entries,
            // A missing bucket lists as empty, like a missing folder.
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter_map(|(key, size)| {
                let rest = key.strip_prefix(&dir_key)?;
                // data/<2 hex>/<id>; the other kinds are flat.
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
        let key = self.key_of(file_type, name);
        self.once("load", &key, || {
            let url = self
                .bucket
                .get_object(self.credentials.as_ref(), &key)
                .sign(SIGNED_URL_LIFETIME);
            let reply = self.attempt("load", &key, Verb::Get, &url, &[], None)?;
            if let Some(expected) = reply
                .header("content-length")
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                if expected != reply.body.len() {
                    return Err(Failure::Transient(format!(
                        "load {key}: got {} of {expected} bytes",
                        reply.body.len()
                    )));
                }
            }
            Ok(reply.body)
        })
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let key = self.key_of(file_type, name);
        if length == 0 {
            self.head_object(&key)?;
            return Ok(Vec::new());
        }
        let last = offset.saturating_add(length - 1);
        let range = format!("bytes={offset}-{last}");
        let short = |got: u64| BackendError::ShortRead {
            path: self.display_path(&key),
            offset,
            wanted: length,
            got,
        };
        let body = self.once("load", &key, || {
            let url = self
                .bucket
                .get_object(self.credentials.as_ref(), &key)
                .sign(SIGNED_URL_LIFETIME);
            let headers = [("range", range.clone())];
            match self.attempt("load", &key, Verb::Get, &url, &headers, None) {
                Ok(reply) if reply.status == 206 => Ok(reply.body),
                // A server that ignores Range sends the whole object.
                Ok(reply) => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    Ok(reply.body.get(start..).unwrap_or_default().to_vec())
                }
                // 416: the offset lies beyond the end of the object.
                Err(Failure::Permanent(BackendError::Other(m))) if m.contains(" 416") => {
                    Err(Failure::Permanent(short(0)))
                }
                Err(other) => Err(other),
            }
        })?;
        let want = usize::try_from(length).unwrap_or(usize::MAX);
        if body.len() < want {
            return Err(short(body.len() as u64));
        }
        let mut body = body;
        body.truncate(want);
        Ok(body)
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let key = self.key_of(file_type, name);
        // An S3 PUT is atomic: the object is visible complete or not at all.
        if data.len() as u64 >= self.options.multipart_threshold {
            self.put_multipart(&key, data)
        } else {
            self.put_single(&key, data)
        }
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let key = self.key_of(file_type, name);
        // S3 answers DELETE of a missing key with success, so removing a
        // missing file is not reported (restic's S3 backend behaves the same).
        self.once("remove", &key, || {
            let url = self
                .bucket
                .delete_object(self.credentials.as_ref(), &key)
                .sign(SIGNED_URL_LIFETIME);
            self.attempt("remove", &key, Verb::Delete, &url, &[], None)
                .map(|_| ())
        })
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let size = self.head_object(&self.key_of(file_type, name))?;
        Ok(FileInfo {
            name: name.to_string(),
            size,
        })
    }

    fn connections(&self) -> usize {
        self.options.connections
    }
}

/// The pooled HTTP agent: statuses are answers (not errors), no redirects
/// (S3 redirects mean a wrong region or endpoint), TLS from the global flags.
fn build_agent(options: &S3Options, tls: &TlsOptions) -> Result<ureq::Agent, S3Error> {
    let mut tls_config = ureq::tls::TlsConfig::builder();
    if !tls.ca_cert_files.is_empty() {
        let mut certs = Vec::new();
        for file in &tls.ca_cert_files {
            let pem = std::fs::read(file)
                .map_err(|e| S3Error::Tls(format!("{}: {e}", file.display())))?;
            let before = certs.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                    certs.push(cert);
                }
            }
            if certs.len() == before {
                return Err(S3Error::Tls(format!(
                    "{}: no PEM certificate found",
                    file.display()
                )));
            }
        }
        tls_config = tls_config.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    if tls.insecure {
        tls_config = tls_config.disable_verification(true);
    }
    let pool = options.connections.max(1);
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
        .tls_config(tls_config.build())
        .build();
    Ok(config.into())
}

/// minio-go's `BucketLookupAuto`: virtual-host style only for the big
/// providers' endpoints, and not for dotted bucket names over HTTPS.
fn url_style(lookup: BucketLookup, endpoint: &Url, bucket: &str) -> UrlStyle {
    match lookup {
        BucketLookup::Dns => UrlStyle::VirtualHost,
        BucketLookup::Path => UrlStyle::Path,
        BucketLookup::Auto => {
            let host = endpoint.host_str().unwrap_or_default();
            let provider = host == "s3.amazonaws.com"
                || host.ends_with(".amazonaws.com")
                || host.ends_with(".amazonaws.com.cn")
                || host == "storage.googleapis.com"
                || host.ends_with(".aliyuncs.com");
            let dotted_https = endpoint.scheme() == "https" && bucket.contains('.');
            if provider && !dotted_https {
                UrlStyle::VirtualHost
            } else {
                UrlStyle::Path
            }
        }
    }
}

/// The region in an AWS endpoint name: `s3.eu-west-1.amazonaws.com`,
/// `s3-eu-west-1.amazonaws.com`, `s3.dualstack.eu-west-1.amazonaws.com`.
fn region_from_host(host: &str) -> Option<String> {
    let stem = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let last = stem.rsplit('.').next()?;
    let region = last.strip_prefix("s3-").unwrap_or(last);
    (region != "s3" && region.contains('-')).then(|| region.to_string())
}

/// Base64 of the MD5 of `data` for `Content-MD5` (the server checks the body).
fn content_md5(data: &[u8]) -> String {
    data_encoding::BASE64.encode(Md5::digest(data).as_slice())
}

/// Text of the first `<name>...</name>` element (S3 error documents are flat).
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = text.get(start..)?.find(&close)? + start;
    text.get(start..end).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lookup_auto() {
        let aws: Url = "https://s3.amazonaws.com".parse().unwrap();
        let local: Url = "http://127.0.0.1:3900".parse().unwrap();
        assert!(matches!(
            url_style(BucketLookup::Auto, &aws, "b"),
            UrlStyle::VirtualHost
        ));
        assert!(matches!(
            url_style(BucketLookup::Auto, &aws, "a.b"),
            UrlStyle::Path
        ));
        assert!(matches!(
            url_style(BucketLookup::Auto, &local, "b"),
            UrlStyle::Path
        ));
        assert!(matches!(
            url_style(BucketLookup::Dns, &local, "b"),
            UrlStyle::VirtualHost
        ));
    }

    #[test]
    fn regions_from_aws_hosts() {
        assert_eq!(
            region_from_host("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_host("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_from_host("s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(region_from_host("s3.amazonaws.com"), None);
        assert_eq!(region_from_host("127.0.0.1"), None);
    }

    #[test]
    fn error_documents_and_md5() {
        let doc =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert_eq!(xml_element(doc, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(xml_element(doc, "Region"), None);
        // RFC 1321 test vector "abc", base64.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }
}
