//! Index files (`index/<id>`). spec: restic-format §9.

use serde::{Deserialize, Serialize};

use crate::id::{BlobType, Id};
use crate::serde_util::null_default;

mod fast;

/// Blobs per index file at which restic starts a new one.
pub const INDEX_MAX_BLOBS: usize = 50_000;

/// A decoded index file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Legacy list of index files this one replaces: read, never written.
    #[serde(default, skip_serializing)]
    pub supersedes: Option<Vec<Id>>,
    /// Packs and their blobs.
    #[serde(default, deserialize_with = "null_default")]
    pub packs: Vec<IndexPack>,
}

/// One pack in an index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack storage ID.
    pub id: Id,
    /// Blobs stored in the pack.
    #[serde(default, deserialize_with = "null_default")]
    pub blobs: Vec<IndexBlob>,
}

/// One blob in an index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Blob ID (SHA-256 of the plaintext).
    pub id: Id,
    /// Data or tree.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// Offset in the pack.
    pub offset: u64,
    /// Encrypted length.
    pub length: u32,
    /// Plaintext length if compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl IndexBlob {
    /// Plaintext length (uncompressed length or encrypted length − 32).
    pub fn data_length(&self) -> u32 {
        self.uncompressed_length
            .filter(|&n| n != 0)
            .unwrap_or_else(|| {
                self.length
                    .saturating_sub(crate::crypto::CRYPTO_OVERHEAD as u32)
            })
    }
}

impl From<crate::pack::PackBlob> for IndexBlob {
    fn from(b: crate::pack::PackBlob) -> IndexBlob {
        IndexBlob {
            id: b.id,
            blob_type: b.blob_type,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        }
    }
}

impl IndexFile {
    /// Parses an index file; also accepts the legacy top-level array of packs.
    pub fn parse(json: &[u8]) -> Result<IndexFile, serde_json::Error> {
        Self::parse_with(json, true)
    }

    /// [`IndexFile::parse`] without the fast path: serde_json alone. For the
    /// `index` fuzz target, which checks that both agree.
    #[doc(hidden)]
    pub fn parse_with_serde_only(json: &[u8]) -> Result<IndexFile, serde_json::Error> {
        Self::parse_with(json, false)
    }

    fn parse_with(json: &[u8], fast_path: bool) -> Result<IndexFile, serde_json::Error> {
        let first = json.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            let packs: Vec<IndexPack> = serde_json::from_slice(json)?;
            return Ok(IndexFile {
                supersedes: None,
                packs,
            });
        }
        // restic's own shape is read without serde (see `fast`); anything
        // else, valid or not, goes through serde_json as before.
        let mut f: IndexFile = match fast::parse(json).filter(|_| fast_path) {
            Some(f) => f,
            None => serde_json::from_slice(json)?,
        };
        // uncompressed_length 0 means "not compressed" (spec §7.2).
        for p in &mut f.packs {
            for b in &mut p.blobs {
                if b.uncompressed_length == Some(0) {
                    b.uncompressed_length = None;
                }
            }
        }
        Ok(f)
    }

    /// Compact JSON with a trailing newline (Go `json.Encoder`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Number of blobs over all packs.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"{"supersedes":["ed54ae36197f4745ebc4b54d10e0f623eaaaedd03013eb7ae90df881b7781452"],"packs":[{"id":"73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c","blobs":[{"id":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","type":"data","offset":0,"length":38,"uncompressed_length":6},{"id":"9ccb846e60d90d4eb915848add7aa7ea1e4bbabfc60e573db9f7bfb2789afbae","type":"tree","offset":38,"length":112}]}]}"#;

    #[test]
    fn parse_and_write() {
        let f = IndexFile::parse(V2.as_bytes()).unwrap();
        assert_eq!(f.supersedes.as_ref().unwrap().len(), 1);
        assert_eq!(f.blob_count(), 2);
        assert_eq!(f.packs[0].blobs[0].uncompressed_length, Some(6));
        assert_eq!(f.packs[0].blobs[1].data_length(), 80);
        let out = String::from_utf8(f.to_json()).unwrap();
        assert!(out.starts_with(r#"{"packs":[{"id":"73d04e"#));
        assert!(out.ends_with("\"length\":112}]}]}\n"));
        assert!(!out.contains("supersedes"));
        assert_eq!(IndexFile::parse(out.as_bytes()).unwrap().packs, f.packs);
        let legacy = format!("[{}]", &V2[V2.find(r#"{"id":"73"#).unwrap()..V2.len() - 2]);
        assert_eq!(IndexFile::parse(legacy.as_bytes()).unwrap().packs, f.packs);
        assert!(IndexFile::parse(br#"{"packs":null}"#)
            .unwrap()
            .packs
            .is_empty());
        assert!(IndexFile::parse(br#"{"packs":[{"id":"00","blobs":[]}]}"#).is_err());
        assert!(IndexFile::parse(b"").is_err());
    }
}
