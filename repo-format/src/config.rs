//! The repository config file. spec: restic-format §4.1.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;

/// Oldest supported repository version.
pub const MIN_REPO_VERSION: u32 = 1;
/// Newest supported repository version (and what `init` writes).
pub const MAX_REPO_VERSION: u32 = 2;

/// Errors from the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid config JSON.
    #[error("invalid config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Version outside 1..=2.
    #[error("unsupported repository version {0}")]
    UnsupportedVersion(u32),
    /// Decryption failed.
    #[error("decrypting config: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// The decrypted `config` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version (1 or 2).
    pub version: u32,
    /// Repository ID: 64 lowercase hex characters.
    pub id: String,
    /// The chunker polynomial (hex in JSON, without `0x`).
    #[serde(with = "polynomial_hex")]
    pub chunker_polynomial: u64,
}

impl Config {
    /// A new config with a random repository ID.
    pub fn new(version: u32, chunker_polynomial: u64) -> Config {
        Config {
            version,
            id: Id::random().to_hex(),
            chunker_polynomial,
        }
    }

    /// Parses and checks the version (the polynomial's irreducibility is
    /// checked by the chunker crate).
    pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
        let c: Config = serde_json::from_slice(json)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the version range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_REPO_VERSION..=MAX_REPO_VERSION).contains(&self.version) {
            return Err(ConfigError::UnsupportedVersion(self.version));
        }
        Ok(())
    }

    /// Compact JSON (`json.Marshal`, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

mod polynomial_hex {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:x}"))
    }

    struct HexVisitor;

    impl Visitor<'_> for HexVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a hex string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(E::custom(format!("invalid chunker polynomial {v:?}")));
            }
            u64::from_str_radix(v, 16).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_str(HexVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let j = br#"{"version":2,"id":"5978f84487c8a76caaa4be22831e69a79d47c6f8bfd7c5f8df131bc88b2e232b","chunker_polynomial":"3da3358b4dc173"}"#;
        let c = Config::parse(j).unwrap();
        assert_eq!(c.chunker_polynomial, 0x3da3358b4dc173);
        assert_eq!(c.to_json(), j.to_vec());
        assert!(Config::parse(br#"{"version":3,"id":"","chunker_polynomial":"1"}"#).is_err());
        assert!(Config::parse(br#"{"version":1,"id":"","chunker_polynomial":"0x1"}"#).is_err());
        assert!(Config::parse(br#"{"version":1,"id":"","chunker_polynomial":"+1"}"#).is_err());
        let n = Config::new(2, 0x3da3358b4dc173);
        assert_eq!(n.id.len(), 64);
    }
}
