//! Extended options of the `s3` namespace (`-o s3.key=value`, spec: cli §5.4)
//! and the TLS settings of the global `--cacert` / `--insecure-tls` flags.

use crate::S3Error;

/// How the bucket is addressed in request URLs (`-o s3.bucket-lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketLookup {
    /// Virtual-host style for AWS/Google/Aliyun endpoints, path style elsewhere
    /// (minio-go's rule, which restic uses).
    #[default]
    Auto,
    /// `https://bucket.host/key`
    Dns,
    /// `https://host/bucket/key`
    Path,
}

/// Options of the S3 backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Operations run in parallel (`s3.connections`, default 5).
    pub connections: usize,
    /// Signing region (`s3.region`); `None` = environment or discovery.
    pub region: Option<String>,
    /// Bucket addressing (`s3.bucket-lookup`).
    pub bucket_lookup: BucketLookup,
    /// `x-amz-storage-class` for uploads (`s3.storage-class`).
    pub storage_class: Option<String>,
    /// Send unsigned requests (`s3.unsafe-anonymous-auth`).
    pub anonymous: bool,
    /// Objects at least this large are uploaded in parts (not a restic option;
    /// a tuning knob, also used by tests). Default 64 MiB.
    pub multipart_threshold: u64,
    /// Size of one part of a multipart upload (S3 requires at least 5 MiB
    /// for all but the last). Default 16 MiB.
    pub part_size: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            connections: 5,
            region: None,
            bucket_lookup: BucketLookup::Auto,
            storage_class: None,
            anonymous: false,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
        }
    }
}

/// The option names restix knows in the `s3.` namespace (others are an error,
/// like restic's `option s3.x is not known`). `layout` and `list-objects-v1`
/// are accepted for compatibility: restix always uses the default layout and
/// ListObjectsV2. `retries` (restic: the S3 client's own retries) is checked
/// and otherwise ignored: every backend is retried by one policy, the retry
/// wrapper of `restix-backend` (docs/backends.md).
pub const KNOWN_OPTIONS: &[&str] = &[
    "connections",
    "retries",
    "region",
    "bucket-lookup",
    "storage-class",
    "unsafe-anonymous-auth",
    "layout",
    "list-objects-v1",
];

impl S3Options {
    /// Set one option by its name without the `s3.` namespace.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), S3Error> {
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        match key.as_str() {
            "connections" => {
                let n = parse_go_uint(value)?;
                self.connections = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1024);
            }
            "retries" => {
                parse_go_uint(value)?;
            }
            "region" => self.region = Some(value.to_string()).filter(|r| !r.is_empty()),
            "bucket-lookup" => {
                self.bucket_lookup = match value.to_ascii_lowercase().as_str() {
                    "" | "auto" => BucketLookup::Auto,
                    "dns" => BucketLookup::Dns,
                    "path" => BucketLookup::Path,
                    _ => {
                        return Err(S3Error::InvalidOption(format!(
                        "bad bucket-lookup style \"{value}\" must be \"auto\", \"path\" or \"dns\""
                    )))
                    }
                }
            }
            "storage-class" => {
                self.storage_class = Some(value.to_string()).filter(|c| !c.is_empty())
            }
            "unsafe-anonymous-auth" => self.anonymous = parse_go_bool(value)?,
            "layout" | "list-objects-v1" => {}
            other => {
                return Err(S3Error::InvalidOption(format!(
                    "option s3.{other} is not known"
                )))
            }
        }
        Ok(())
    }
}

/// `-o s3.connections=0x10` etc., parsed as restic does (Go's ParseUint).
fn parse_go_uint(value: &str) -> Result<u64, S3Error> {
    restix_backend::options::parse_go_uint(value)
        .ok_or_else(|| S3Error::InvalidOption(restix_backend::options::go_uint_syntax_error(value)))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Result<bool, S3Error> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(S3Error::InvalidOption(format!(
            "strconv.ParseBool: parsing \"{value}\": invalid syntax"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let mut o = S3Options::default();
        assert_eq!(o.connections, 5);
        o.set("connections", "0x10").unwrap();
        o.set("Region", "garage").unwrap();
        o.set("bucket-lookup", "path").unwrap();
        o.set("layout", "default").unwrap();
        o.set("unsafe-anonymous-auth", "true").unwrap();
        assert_eq!(o.connections, 16);
        assert_eq!(o.region.as_deref(), Some("garage"));
        assert_eq!(o.bucket_lookup, BucketLookup::Path);
        assert!(o.anonymous);
        assert_eq!(
            o.set("bucket-lookup", "x").unwrap_err().to_string(),
            "bad bucket-lookup style \"x\" must be \"auto\", \"path\" or \"dns\""
        );
        assert_eq!(
            o.set("bogus", "1").unwrap_err().to_string(),
            "option s3.bogus is not known"
        );
        assert_eq!(
            o.set("connections", "x").unwrap_err().to_string(),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
    }
}
