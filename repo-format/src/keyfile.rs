//! Key files (`keys/<id>`): the master key wrapped with a password-derived
//! key. spec: restic-format §5.3.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, Key};
use crate::serde_util::{base64_array, base64_bytes, null_default};
use crate::time::GoTime;

/// Length of the scrypt salt restic requires.
pub const SALT_SIZE: usize = 64;

/// Errors from key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key file is not valid JSON of the expected shape.
    #[error("invalid key file JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Some KDF other than scrypt.
    #[error("only supported KDF is scrypt(), got {0:?}")]
    UnsupportedKdf(String),
    /// Scrypt parameters fail restic's validity rules.
    #[error("invalid scrypt parameters N={n} r={r} p={p}: {reason}")]
    InvalidParams {
        /// N.
        n: u64,
        /// r.
        r: u64,
        /// p.
        p: u64,
        /// Which rule failed.
        reason: &'static str,
    },
    /// The salt is not 64 bytes.
    #[error("invalid salt length {0}, expected 64")]
    InvalidSalt(usize),
    /// The password does not open this key (MAC mismatch).
    #[error("wrong password or no key found")]
    WrongPassword,
    /// The `data` field is malformed (too short, zero IV).
    #[error("decrypting key data: {0}")]
    Crypto(CryptoError),
    /// The decrypted master key is malformed.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
}

/// scrypt cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScryptParams {
    /// CPU/memory cost (power of two).
    pub n: u64,
    /// Block size.
    pub r: u32,
    /// Parallelism.
    pub p: u32,
}

impl Default for ScryptParams {
    /// N=32768, r=8, p=1 (restic's calibrated N and r; 32 MiB of memory).
    fn default() -> ScryptParams {
        ScryptParams::DEFAULT
    }
}

impl ScryptParams {
    /// Parameters for new keys.
    pub const DEFAULT: ScryptParams = ScryptParams {
        n: 32768,
        r: 8,
        p: 1,
    };

    /// Cheap parameters for tests only (N=128, r=1, p=1 as restic's tests).
    pub fn fast_for_tests() -> ScryptParams {
        ScryptParams { n: 128, r: 1, p: 1 }
    }

    /// simple-scrypt's `Check` rules plus power-of-two N. spec: §5.3.
    pub fn validate(&self) -> Result<(), KeyFileError> {
        let (n, r, p) = (self.n, u64::from(self.r), u64::from(self.p));
        let err = |reason| KeyFileError::InvalidParams { n, r, p, reason };
        const MAX: u64 = (1 << 31) - 1;
        if n <= 1 || n % 2 != 0 {
            return Err(err("N must be > 1 and even"));
        }
        if !n.is_power_of_two() {
            return Err(err("N must be a power of two"));
        }
        if r < 1 || p < 1 {
            return Err(err("r and p must be >= 1"));
        }
        if r * p >= 1 << 30 {
            return Err(err("r*p must be < 2^30"));
        }
        if r > MAX / 128 / p || r > MAX / 256 {
            return Err(err("r too large"));
        }
        if n > MAX / 128 / r {
            return Err(err("N too large"));
        }
        Ok(())
    }

    /// Derives the 64-byte user key from a password.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Key, KeyFileError> {
        self.validate()?;
        let log_n = self.n.trailing_zeros() as u8;
        let params = scrypt::Params::new(log_n, self.r, self.p).map_err(|_| {
            KeyFileError::InvalidParams {
                n: self.n,
                r: u64::from(self.r),
                p: u64::from(self.p),
                reason: "rejected by scrypt",
            }
        })?;
        let mut out = [0u8; 64];
        crate::scrypt_kdf::derive(password, salt, &params, &mut out).map_err(|_| {
            KeyFileError::InvalidParams {
                n: self.n,
                r: u64::from(self.r),
                p: u64::from(self.p),
                reason: "scrypt failed",
            }
        })?;
        Ok(Key::from_bytes(&out))
    }
}

/// The master key as JSON: `{"mac":{"k":..,"r":..},"encrypt":..}`.
#[derive(Serialize, Deserialize)]
struct MasterKeyJson {
    mac: MacJson,
    #[serde(with = "base64_array")]
    encrypt: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct MacJson {
    #[serde(with = "base64_array")]
    k: [u8; 16],
    #[serde(with = "base64_array")]
    r: [u8; 16],
}

impl Key {
    /// The master key JSON restic stores inside key files (and prints with
    /// `restic cat masterkey`, indented there).
    pub fn to_json(&self) -> Vec<u8> {
        let j = MasterKeyJson {
            mac: MacJson {
                k: self.mac_k,
                r: self.mac_r,
            },
            encrypt: self.encrypt,
        };
        serde_json::to_vec(&j).unwrap_or_default()
    }

    /// Parses master key JSON, checking restic's validity rules.
    pub fn from_json(json: &[u8]) -> Result<Key, KeyFileError> {
        let j: MasterKeyJson = serde_json::from_slice(json)
            .map_err(|e| KeyFileError::InvalidMasterKey(e.to_string()))?;
        let k = Key {
            encrypt: j.encrypt,
            mac_k: j.mac.k,
            mac_r: j.mac.r,
        };
        if !k.is_valid() {
            return Err(KeyFileError::InvalidMasterKey(
                "key part is all zero".into(),
            ));
        }
        Ok(k)
    }
}

/// A key file (`keys/<id>`): plain JSON, fields in restic's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Creation time.
    #[serde(default)]
    pub created: GoTime,
    /// OS user that created it.
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    /// Host name.
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// Must be `"scrypt"`.
    #[serde(default, deserialize_with = "null_default")]
    pub kdf: String,
    /// scrypt N.
    #[serde(rename = "N", default)]
    pub n: u64,
    /// scrypt r.
    #[serde(default)]
    pub r: u32,
    /// scrypt p.
    #[serde(default)]
    pub p: u32,
    /// 64 random bytes.
    #[serde(with = "base64_bytes", default)]
    pub salt: Vec<u8>,
    /// `IV || CT || MAC` of the master key JSON under the user key.
    #[serde(with = "base64_bytes", default)]
    pub data: Vec<u8>,
}

impl KeyFile {
    /// Parses key file JSON.
    pub fn parse(json: &[u8]) -> Result<KeyFile, KeyFileError> {
        Ok(serde_json::from_slice(json)?)
    }

    /// The scrypt parameters stored in the file.
    pub fn params(&self) -> ScryptParams {
        ScryptParams {
            n: self.n,
            r: self.r,
            p: self.p,
        }
    }

    /// Derives the user key from `password` and unwraps the master key.
    /// A MAC mismatch means the password is wrong ([`KeyFileError::WrongPassword`]).
    pub fn open(&self, password: &[u8]) -> Result<Key, KeyFileError> {
        if self.kdf != "scrypt" {
            return Err(KeyFileError::UnsupportedKdf(self.kdf.clone()));
        }
        if self.salt.len() != SALT_SIZE {
            return Err(KeyFileError::InvalidSalt(self.salt.len()));
        }
        let user = self.params().derive(password, &self.salt)?;
        let plain = user.decrypt(&self.data).map_err(|e| match e {
            CryptoError::MacMismatch => KeyFileError::WrongPassword,
            other => KeyFileError::Crypto(other),
        })?;
        Key::from_json(&plain)
    }

    /// Wraps `master` with a key derived from `password`.
    pub fn create(
        master: &Key,
        password: &[u8],
        params: ScryptParams,
        username: &str,
        hostname: &str,
        created: GoTime,
    ) -> Result<KeyFile, KeyFileError> {
        let mut salt = vec![0u8; SALT_SIZE];
        crate::random::fill(&mut salt);
        let user = params.derive(password, &salt)?;
        Ok(KeyFile {
            created,
            username: username.to_owned(),
            hostname: hostname.to_owned(),
            kdf: "scrypt".to_owned(),
            n: params.n,
            r: params.r,
            p: params.p,
            salt,
            data: user.encrypt(&master.to_json()),
        })
    }

    /// Compact JSON as Go's `json.Marshal` writes it (no trailing newline).
    /// Fails only if `created` has a year outside 0..=9999.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        Ok(crate::gojson::html_escape(serde_json::to_vec(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_round_trip() {
        let master = Key::random();
        let created = GoTime::parse_rfc3339("2026-11-22T19:03:18.135077708Z").unwrap();
        let kf = KeyFile::create(
            &master,
            b"geheim",
            ScryptParams::fast_for_tests(),
            "root",
            "vm",
            created,
        )
        .unwrap();
        let json = kf.to_json().unwrap();
        let s = String::from_utf8(json.clone()).unwrap();
        assert!(s.starts_with(r#"{"created":"2026-11-22T19:03:18.135077708Z","username":"root","hostname":"vm","kdf":"scrypt","N":128,"r":1,"p":1,"salt":""#), "{s}");
        let parsed = KeyFile::parse(&json).unwrap();
        assert_eq!(parsed, kf);
        assert_eq!(parsed.data.len(), 160);
        assert_eq!(parsed.open(b"geheim").unwrap(), master);
        assert!(matches!(
            parsed.open(b"wrong"),
            Err(KeyFileError::WrongPassword)
        ));
        let mut bad = parsed.clone();
        bad.kdf = "argon".into();
        assert!(matches!(
            bad.open(b"geheim"),
            Err(KeyFileError::UnsupportedKdf(_))
        ));
        let mut bad = parsed.clone();
        bad.salt.pop();
        assert!(matches!(
            bad.open(b"geheim"),
            Err(KeyFileError::InvalidSalt(63))
        ));
        let mut bad = parsed;
        bad.n = 100;
        assert!(matches!(
            bad.open(b"geheim"),
            Err(KeyFileError::InvalidParams { .. })
        ));
    }

    #[test]
    fn params_validation() {
        assert!(ScryptParams::DEFAULT.validate().is_ok());
        assert!(ScryptParams { n: 1, r: 1, p: 1 }.validate().is_err());
        assert!(ScryptParams { n: 3, r: 1, p: 1 }.validate().is_err());
        assert!(ScryptParams {
            n: 1 << 30,
            r: 8,
            p: 1
        }
        .validate()
        .is_err());
        assert!(ScryptParams { n: 16, r: 0, p: 1 }.validate().is_err());
        assert!(ScryptParams {
            n: 16,
            r: 1 << 24,
            p: 1
        }
        .validate()
        .is_err());
    }

    #[test]
    fn master_key_json() {
        let j = br#"{"mac":{"k":"gBrexfn/uaAZgcUg1JeOyw==","r":"E7eKDEwHhQRstfIE0AZcAg=="},"encrypt":"dns+Qh/PwuZU1KI9yvy5veCKMHkRFJXIsThJeJYy5OQ="}"#;
        let k = Key::from_json(j).unwrap();
        assert_eq!(k.to_json(), j.to_vec());
        assert_eq!(k.to_json().len(), 128);
        assert!(Key::from_json(br#"{"mac":{"k":"AA==","r":"AA=="},"encrypt":"AA=="}"#).is_err());
    }

    #[test]
    fn hostile_json() {
        assert!(KeyFile::parse(b"").is_err());
        assert!(KeyFile::parse(b"{\"created\":5}").is_err());
        let kf = KeyFile::parse(br#"{"created":"2015-01-01T10:00:00+01:00","username":null,"kdf":"scrypt","N":16,"r":1,"p":1,"salt":"AA==","data":""}"#).unwrap();
        assert!(matches!(kf.open(b"x"), Err(KeyFileError::InvalidSalt(1))));
    }
}
