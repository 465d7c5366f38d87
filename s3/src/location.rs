//! `s3:` repository locations, parsed the way restic parses them
//! (restic `internal/backend/s3/config.go`, facts only).
//!
//! | Form | Endpoint | Scheme | Bucket | Prefix |
//! |---|---|---|---|---|
//! | `s3:host[:port]/bucket/prefix` | `host[:port]` | https | `bucket` | `prefix` |
//! | `s3://host/bucket/prefix` | `host` | https | `bucket` | `prefix` |
//! | `s3:http://host:port/bucket/prefix` | `host:port` | http | `bucket` | `prefix` |
//! | `s3:https://host/bucket/prefix` | `host` | https | `bucket` | `prefix` |
//!
//! The prefix is `path.Clean`ed (Go semantics); an empty prefix puts the
//! repository at the root of the bucket.

use crate::S3Error;

/// A parsed `s3:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `host` or `host:port` (an AWS region-style host such as `s3.amazonaws.com`).
    pub endpoint: String,
    /// True for `s3:http://...`: plain HTTP instead of HTTPS.
    pub use_http: bool,
    /// The bucket name.
    pub bucket: String,
    /// Object-key prefix of the repository inside the bucket (`""` = bucket root).
    pub prefix: String,
    /// The location as the user wrote it.
    pub text: String,
}

impl S3Location {
    /// Parse `s3:...` (spec: cli §5.1; restic's S3 `ParseConfig`).
    pub fn parse(text: &str) -> Result<S3Location, S3Error> {
        let invalid = |msg: &str| S3Error::InvalidLocation(msg.to_string());
        let (endpoint, bucket, prefix, use_http) = if text.starts_with("s3:http") {
            // A URL: host is the endpoint, the path holds bucket and prefix.
            let url_text = text.get(3..).unwrap_or_default();
            let url = url::Url::parse(url_text)
                .map_err(|e| S3Error::InvalidLocation(format!("parse {url_text:?}: {e}")))?;
            let path = percent_encoding::percent_decode_str(url.path())
                .decode_utf8_lossy()
                .into_owned();
            let Some(path) = path.strip_prefix('/').filter(|p| !p.is_empty()) else {
                return Err(invalid("s3: bucket name not found"));
            };
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            let host = url.host_str().unwrap_or_default();
            let endpoint = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            (
                endpoint,
                bucket.to_string(),
                prefix.to_string(),
                url.scheme() == "http",
            )
        } else {
            let rest = text
                .strip_prefix("s3://")
                .or_else(|| text.strip_prefix("s3:"))
                .ok_or_else(|| invalid("s3: invalid format"))?;
            let (endpoint, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            (
                endpoint.to_string(),
                bucket.to_string(),
                prefix.to_string(),
                false,
            )
        };
        if endpoint.is_empty() {
            return Err(invalid(
                "s3: invalid format, host/region or bucket name not found",
            ));
        }
        if bucket.is_empty() {
            return Err(invalid("s3: bucket name not found"));
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            restix_backend::go_path::clean(&prefix)
        };
        Ok(S3Location {
            endpoint,
            use_http,
            bucket,
            prefix,
            text: text.to_string(),
        })
    }

    /// The object key of `relative` (`config`, `data/ab/ab...`) under the prefix,
    /// joined like Go's `path.Join`.
    pub fn key(&self, relative: &str) -> String {
        join_key(&self.prefix, relative)
    }

    /// The endpoint as a URL (`https://host[:port]`).
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.use_http { "http" } else { "https" };
        format!("{scheme}://{}", self.endpoint)
    }
}

/// Go's `path.Join(prefix, relative)` for a clean `relative`.
pub(crate) fn join_key(prefix: &str, relative: &str) -> String {
    if prefix.is_empty() || prefix == "." {
        relative.to_string()
    } else if prefix == "/" {
        format!("/{relative}")
    } else {
        format!("{prefix}/{relative}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, bool, String, String) {
        let l = S3Location::parse(text).unwrap();
        (l.endpoint, l.use_http, l.bucket, l.prefix)
    }

    #[test]
    fn short_and_url_forms() {
        assert_eq!(
            parsed("s3:s3.amazonaws.com/bucket/restic"),
            (
                "s3.amazonaws.com".into(),
                false,
                "bucket".into(),
                "restic".into()
            )
        );
        assert_eq!(
            parsed("s3://host:9000/b/p/q/"),
            ("host:9000".into(), false, "b".into(), "p/q".into())
        );
        assert_eq!(
            parsed("s3:http://127.0.0.1:3900/bucket/a//b/../c"),
            ("127.0.0.1:3900".into(), true, "bucket".into(), "a/c".into())
        );
        assert_eq!(
            parsed("s3:https://minio.local/bucket"),
            ("minio.local".into(), false, "bucket".into(), "".into())
        );
        assert_eq!(
            parsed("s3:host/bucket"),
            ("host".into(), false, "bucket".into(), "".into())
        );
    }

    #[test]
    fn errors() {
        for bad in ["s3:http://host:9000", "s3:http://host/", "s3:host", "s3:/b"] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
        assert!(S3Location::parse("sftp:x").is_err());
    }

    #[test]
    fn keys_follow_restic_layout() {
        let l = S3Location::parse("s3:h/b/pre").unwrap();
        assert_eq!(l.key("config"), "pre/config");
        let root = S3Location::parse("s3:h/b").unwrap();
        assert_eq!(root.key("keys/ab"), "keys/ab");
        assert_eq!(restix_backend::go_path::clean("./"), ".");
        assert_eq!(root.endpoint_url(), "https://h");
        let dot = S3Location::parse("s3:h/b/.").unwrap();
        assert_eq!(dot.key("config"), "config");
    }
}
