//! Encrypted (and in v2 compressed) JSON files: index, snapshots, locks;
//! and the config file. spec: restic-format §6, §4.1.

use crate::compression::{self, CompressionError, MAX_DECOMPRESSED_SIZE};
use crate::config::{Config, ConfigError};
use crate::crypto::{CryptoError, Key};

/// Version byte of a zstd-compressed payload.
pub const COMPRESSED_PAYLOAD: u8 = 2;

/// zstd level for unpacked files (restic's default).
const UNPACKED_LEVEL: i32 = 3;

/// Errors decoding unpacked files.
#[derive(Debug, thiserror::Error)]
pub enum UnpackedError {
    /// Decryption failed.
    #[error("decrypting: {0}")]
    Crypto(#[from] CryptoError),
    /// The payload's first byte is neither 2 nor `{`/`[`.
    #[error("not supported encoding format {0}")]
    UnsupportedEncoding(u8),
    /// The zstd frame is bad or too large.
    #[error("decompressing: {0}")]
    Compression(#[from] CompressionError),
}

/// Encrypts a JSON document for `index/`, `snapshots/` or `locks/`.
/// Version 2 repositories always get `0x02 || zstd(json)`.
pub fn encode_unpacked(key: &Key, repo_version: u32, json: &[u8]) -> Vec<u8> {
    if repo_version < 2 {
        return key.encrypt(json);
    }
    let mut payload = Vec::with_capacity(json.len() / 2 + 64);
    payload.push(COMPRESSED_PAYLOAD);
    let ok = compression::Compressor::new(UNPACKED_LEVEL)
        .and_then(|mut c| c.compress_into(json, &mut payload))
        .is_ok();
    if ok {
        key.encrypt(&payload)
    } else {
        // A v2 payload starting with `{`/`[` is read as uncompressed JSON;
        // this fallback keeps the function infallible.
        key.encrypt(json)
    }
}

/// Decrypts an unpacked file and decompresses v2 payloads (at most
/// [`MAX_DECOMPRESSED_SIZE`] bytes).
pub fn decode_unpacked(key: &Key, data: &[u8]) -> Result<Vec<u8>, UnpackedError> {
    decode_unpacked_with_limit(key, data, MAX_DECOMPRESSED_SIZE)
}

/// [`decode_unpacked`] with a custom decompression limit.
pub fn decode_unpacked_with_limit(
    key: &Key,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, UnpackedError> {
    let plain = key.decrypt(data)?;
    decode_payload(plain, limit)
}

/// Interprets a decrypted payload (version byte rules of §6).
pub fn decode_payload(plain: Vec<u8>, limit: usize) -> Result<Vec<u8>, UnpackedError> {
    match plain.first() {
        None | Some(b'{') | Some(b'[') => Ok(plain),
        Some(&COMPRESSED_PAYLOAD) => Ok(compression::decompress(&plain[1..], None, limit)?),
        Some(&other) => Err(UnpackedError::UnsupportedEncoding(other)),
    }
}

/// Encrypts the config (never compressed).
pub fn encrypt_config(key: &Key, config: &Config) -> Vec<u8> {
    key.encrypt(&config.to_json())
}

/// Decrypts and parses the config, checking its version.
pub fn decrypt_config(key: &Key, data: &[u8]) -> Result<Config, ConfigError> {
    Config::parse(&key.decrypt(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = Key::random();
        let json = br#"{"packs":[]}"#.repeat(10);
        let v1 = encode_unpacked(&key, 1, &json);
        assert_eq!(key.decrypt(&v1).unwrap(), json);
        assert_eq!(decode_unpacked(&key, &v1).unwrap(), json);
        let v2 = encode_unpacked(&key, 2, &json);
        let p = key.decrypt(&v2).unwrap();
        assert_eq!(&p[..5], &[2, 0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(decode_unpacked(&key, &v2).unwrap(), json);
        assert_eq!(decode_unpacked(&key, &key.encrypt(b"")).unwrap(), b"");
        assert_eq!(decode_unpacked(&key, &key.encrypt(b"[1]")).unwrap(), b"[1]");
        assert!(matches!(
            decode_unpacked(&key, &key.encrypt(b"x")),
            Err(UnpackedError::UnsupportedEncoding(b'x'))
        ));
        assert!(decode_unpacked(&key, &key.encrypt(b"\x02junk")).is_err());
        let cfg = Config::new(2, 0x3da3358b4dc173);
        let enc = encrypt_config(&key, &cfg);
        assert_eq!(decrypt_config(&key, &enc).unwrap(), cfg);
    }
}
