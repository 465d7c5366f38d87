//! Serde helpers for Go JSON conventions (spec: restic-format §12.2-12.3).

use base64::Engine;
use serde::{Deserialize, Deserializer, Serializer};

/// Go decodes `null` into a string/slice/number as "leave unchanged" (the
/// zero value here); serde would reject it.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `[]byte` as padded standard base64 (`null` decodes to empty).
pub mod base64_bytes {
    use super::*;

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    /// Deserializes base64 (or `null`) into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Fixed-length byte arrays as base64.
pub mod base64_array {
    use super::*;

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    /// Deserializes base64 of exactly `N` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        let v = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)?;
        let n = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes, got {n}")))
    }
}

/// For `skip_serializing_if`.
pub fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
