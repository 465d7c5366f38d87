//! Content identifiers (SHA-256) and blob types. spec: restic-format §1.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Errors from parsing an [`Id`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not exactly 64 characters long.
    #[error("invalid ID length {0}, expected 64 hex characters")]
    InvalidLength(usize),
    /// The text contains a character that is not a hex digit.
    #[error("invalid ID {0:?}: not hex")]
    InvalidHex(String),
}

/// A 32-byte SHA-256 identifier of a blob or repository file.
///
/// Displayed (and serialized) as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Size of an ID in bytes.
    pub const SIZE: usize = 32;
    /// The all-zero "null" ID (used e.g. for the config file).
    pub const NULL: Id = Id([0; 32]);

    /// SHA-256 of `data`.
    pub fn hash(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// A random ID (e.g. a repository ID).
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        crate::random::fill(&mut b);
        Id(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True for the all-zero ID.
    pub fn is_null(&self) -> bool {
        self.0 == [0; 32]
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        let mut hex = Vec::with_capacity(64);
        self.write_hex(&mut hex);
        // Only ASCII hex digits were written.
        String::from_utf8(hex).unwrap_or_default()
    }

    /// Appends the 64 lowercase hex characters to `out` (no `String` per ID:
    /// a large file's content list encodes hundreds of thousands).
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        let mut hex = [0u8; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        out.extend_from_slice(&hex);
    }

    /// The first 8 hex characters, as restic prints IDs.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(8);
        s
    }

    /// Parses exactly 64 hex characters (upper or lower case).
    pub fn from_hex(s: &str) -> Result<Id, IdError> {
        Id::from_hex_bytes(s.as_bytes())
    }

    /// [`Id::from_hex`] of raw bytes (no UTF-8 check needed: only ASCII hex
    /// digits are accepted).
    pub fn from_hex_bytes(b: &[u8]) -> Result<Id, IdError> {
        if b.len() != 64 {
            return Err(IdError::InvalidLength(b.len()));
        }
        let mut out = [0u8; 32];
        // Table lookups, one validity check for the whole ID: IDs are parsed
        // by the tens of thousands from index files and trees.
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (h, l) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            invalid |= (h | l) & INVALID;
            *o = (h << 4) | (l & 0x0f);
        }
        if invalid != 0 {
            return Err(IdError::InvalidHex(String::from_utf8_lossy(b).into_owned()));
        }
        Ok(Id(out))
    }
}

/// Marks a byte that is not a hex digit in [`HEX_VALUE`].
const INVALID: u8 = 0x80;

/// Value of each byte as a hex digit, [`INVALID`] for other bytes.
const HEX_VALUE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match hex_val(i as u8) {
            Some(v) => v,
            None => INVALID,
        };
        i += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.to_hex())
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::from_hex(s)
    }
}

impl From<[u8; 32]> for Id {
    fn from(b: [u8; 32]) -> Id {
        Id(b)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string of 64 hex characters")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
        Id::from_hex(v).map_err(E::custom)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id, E> {
        Id::from_hex_bytes(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        // As bytes: serde_json then hands over the string's raw bytes
        // without validating them as UTF-8 (IDs are parsed by the tens of
        // thousands from index files and content lists; only hex digits
        // pass `from_hex_bytes` anyway).
        d.deserialize_bytes(IdVisitor)
    }
}

/// The type of a blob: file content or a tree (directory listing).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A tree blob (JSON directory listing, spec §11).
    Tree,
}

impl BlobType {
    /// `"data"` or `"tree"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

impl fmt::Display for BlobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BlobType {
    type Err = String;
    fn from_str(s: &str) -> Result<BlobType, String> {
        match s {
            "data" => Ok(BlobType::Data),
            "tree" => Ok(BlobType::Tree),
            _ => Err(format!("invalid blob type {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_foobar() {
        // spec: restic-format §17.1 (id_test.go)
        let id = Id::hash(b"foobar");
        assert_eq!(
            id.to_hex(),
            "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2"
        );
        assert_eq!(id.short(), "c3ab8ff1");
        assert_eq!(Id::from_hex(&id.to_hex().to_uppercase()).unwrap(), id);
        assert_eq!(format!("{id}"), id.to_hex());
        let quoted = format!("\"{id}\"");
        assert_eq!(serde_json::from_str::<Id>(&quoted).unwrap(), id);
        assert!(serde_json::from_str::<Id>("[1,2]").is_err());
        assert!(serde_json::from_str::<Id>("\"zz\"").is_err());
        let mut out = b"x".to_vec();
        id.write_hex(&mut out);
        assert_eq!(&out[1..], id.to_hex().as_bytes());
    }

    #[test]
    fn serde_rejects_bad_lengths() {
        let id = Id::hash(b"x");
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<Id>(&j).unwrap(), id);
        assert!(serde_json::from_str::<Id>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<Id>(&format!("\"{}0\"", id.to_hex())).is_err());
        assert!(Id::from_hex(&"g".repeat(64)).is_err());
        assert!(Id::from_hex("é").is_err());
    }

    #[test]
    fn blob_type_serde() {
        assert_eq!(serde_json::to_string(&BlobType::Tree).unwrap(), "\"tree\"");
        assert_eq!(
            serde_json::from_str::<BlobType>("\"data\"").unwrap(),
            BlobType::Data
        );
        assert!(serde_json::from_str::<BlobType>("\"Data\"").is_err());
    }
}
