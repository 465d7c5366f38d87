//! AES-256-CTR + Poly1305-AES authenticated encryption. spec: restic-format §5.
//!
//! Every encrypted object is `IV (16) || CIPHERTEXT || MAC (16)`; the MAC is
//! Poly1305 with key `r || AES-128_k(IV)` over the ciphertext only.

use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use poly1305::universal_hash::UniversalHash;
use poly1305::Poly1305;
use subtle::ConstantTimeEq;

/// IV length in bytes.
pub const IV_SIZE: usize = 16;
/// MAC tag length in bytes.
pub const MAC_SIZE: usize = 16;
/// Bytes added by encryption: IV + MAC. spec: restic-format §5.1.
pub const CRYPTO_OVERHEAD: usize = IV_SIZE + MAC_SIZE;

/// Per-byte mask that clamps a Poly1305 `r` value. spec: restic-format §5.2.
const R_CLAMP: [u8; 16] = [
    0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
];

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Decryption failures. The texts follow restic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Fewer than 32 bytes (IV + MAC).
    #[error("ciphertext too short")]
    TooShort,
    /// The IV is all zero, which restic never writes.
    #[error("nonce is invalid")]
    InvalidNonce,
    /// The MAC does not match: wrong key or corrupted data.
    #[error("ciphertext verification failed")]
    MacMismatch,
}

/// A full key set: AES-256 encryption key plus Poly1305-AES MAC keys.
///
/// Used both for the repository master key and for the user key derived
/// from a password (spec §5.3).
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// AES-256 key for CTR mode.
    pub encrypt: [u8; 32],
    /// AES-128 key `k` that encrypts the IV into the Poly1305 `s` part.
    pub mac_k: [u8; 16],
    /// Poly1305 `r` value.
    pub mac_r: [u8; 16],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key { .. }")
    }
}

impl Key {
    /// A fresh random master key with a clamped `r` (spec §5.2: clamped
    /// values are read identically by every restic version).
    pub fn random() -> Key {
        let mut b = [0u8; 64];
        crate::random::fill(&mut b);
        let mut k = Key::from_bytes(&b);
        for (r, m) in k.mac_r.iter_mut().zip(R_CLAMP) {
            *r &= m;
        }
        k
    }

    /// Splits 64 bytes (e.g. scrypt output) into `encrypt || mac_k || mac_r`.
    pub fn from_bytes(b: &[u8; 64]) -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&b[..32]);
        k.mac_k.copy_from_slice(&b[32..48]);
        k.mac_r.copy_from_slice(&b[48..]);
        k
    }

    /// restic's validity rule: none of the three parts may be all zero.
    pub fn is_valid(&self) -> bool {
        self.encrypt != [0; 32] && self.mac_k != [0; 16] && self.mac_r != [0; 16]
    }

    /// Encrypts `plaintext` into a new `IV || CT || MAC` buffer with a fresh
    /// random non-zero IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + CRYPTO_OVERHEAD);
        self.encrypt_into(plaintext, &mut out);
        out
    }

    /// Appends `IV || CT || MAC` of `plaintext` to `out`.
    pub fn encrypt_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        self.encrypt_into_with_iv(random_iv(), plaintext, out);
    }

    /// Encryption with a caller-chosen IV: only for deterministic tests.
    /// Reusing an IV with the same key destroys confidentiality.
    pub fn encrypt_with_iv(&self, iv: [u8; IV_SIZE], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + CRYPTO_OVERHEAD);
        self.encrypt_into_with_iv(iv, plaintext, &mut out);
        out
    }

    fn encrypt_into_with_iv(&self, iv: [u8; IV_SIZE], plaintext: &[u8], out: &mut Vec<u8>) {
        out.reserve(plaintext.len() + CRYPTO_OVERHEAD);
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let ct = &mut out[start..];
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        let mut mac = Poly1305::new(&self.poly1305_key(&iv).into());
        // One pass over cache-sized pieces: encrypt, then MAC the piece while
        // it is still in L1/L2 (spec §5.2: the MAC covers the ciphertext).
        let mut chunks = ct.chunks_mut(FUSED_CHUNK);
        let mut last: &[u8] = &[];
        for chunk in chunks.by_ref() {
            cipher.apply_keystream(chunk);
            if chunk.len() == FUSED_CHUNK {
                // A whole number of blocks: no padding is applied.
                mac.update_padded(chunk);
            } else {
                last = chunk;
            }
        }
        let tag: [u8; MAC_SIZE] = mac.compute_unpadded(last).into();
        out.extend_from_slice(&tag);
    }

    /// Verifies and decrypts `IV || CT || MAC`. The MAC is checked (in
    /// constant time) before anything is decrypted.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (iv, ct) = self.verify(data)?;
        let mut pt = ct.to_vec();
        Aes256Ctr::new(&self.encrypt.into(), &iv.into()).apply_keystream(&mut pt);
        Ok(pt)
    }

    /// Like [`Key::decrypt`] but reuses `buf`: on success `buf` holds the
    /// plaintext. On error `buf` is left unchanged.
    pub fn decrypt_in_place(&self, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let range = self.decrypt_slice_in_place(buf)?;
        buf.truncate(range.end);
        buf.drain(..range.start);
        Ok(())
    }

    /// Verifies and decrypts in place inside a slice; returns the range of
    /// `buf` that now holds the plaintext (`16..len-16`). Avoids any copy.
    pub fn decrypt_slice_in_place(
        &self,
        buf: &mut [u8],
    ) -> Result<std::ops::Range<usize>, CryptoError> {
        let (iv, _) = self.verify(buf)?;
        let end = buf.len() - MAC_SIZE;
        if let Some(ct) = buf.get_mut(IV_SIZE..end) {
            Aes256Ctr::new(&self.encrypt.into(), &iv.into()).apply_keystream(ct);
        }
        Ok(IV_SIZE..end)
    }

    /// Checks length, IV and MAC without decrypting; returns the IV and the
    /// ciphertext.
    pub fn verify<'a>(&self, data: &'a [u8]) -> Result<([u8; IV_SIZE], &'a [u8]), CryptoError> {
        if data.len() < CRYPTO_OVERHEAD {
            return Err(CryptoError::TooShort);
        }
        let (iv_bytes, rest) = data.split_at(IV_SIZE);
        let (ct, tag) = rest.split_at(rest.len() - MAC_SIZE);
        let mut iv = [0u8; IV_SIZE];
        iv.copy_from_slice(iv_bytes);
        if iv == [0; IV_SIZE] {
            return Err(CryptoError::InvalidNonce);
        }
        let expected = self.mac(&iv, ct);
        if bool::from(expected.ct_eq(tag)) {
            Ok((iv, ct))
        } else {
            Err(CryptoError::MacMismatch)
        }
    }

    /// Poly1305-AES over `ct`: key `r || AES-128_k(iv)`. spec: §5.2 steps 3-4.
    fn mac(&self, iv: &[u8; IV_SIZE], ct: &[u8]) -> [u8; MAC_SIZE] {
        poly1305_aes(&self.mac_k, &self.mac_r, iv, ct)
    }

    /// The one-time Poly1305 key `r || AES-128_k(iv)`.
    fn poly1305_key(&self, iv: &[u8; IV_SIZE]) -> [u8; 32] {
        poly1305_key(&self.mac_k, &self.mac_r, iv)
    }
}

/// Poly1305-AES (Bernstein): `Poly1305(r || AES_k(nonce), msg)`.
pub fn poly1305_aes(k: &[u8; 16], r: &[u8; 16], nonce: &[u8; 16], msg: &[u8]) -> [u8; 16] {
    // The poly1305 crate clamps r itself.
    Poly1305::new(&poly1305_key(k, r, nonce).into())
        .compute_unpadded(msg)
        .into()
}

fn poly1305_key(k: &[u8; 16], r: &[u8; 16], nonce: &[u8; 16]) -> [u8; 32] {
    let mut s = (*nonce).into();
    Aes128::new(&(*k).into()).encrypt_block(&mut s);
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(r);
    key[16..].copy_from_slice(&s);
    key
}

/// Piece size for the fused encrypt+MAC pass (a multiple of 16).
const FUSED_CHUNK: usize = 16 * 1024;

fn random_iv() -> [u8; IV_SIZE] {
    let mut iv = [0u8; IV_SIZE];
    loop {
        crate::random::fill(&mut iv);
        if iv != [0; IV_SIZE] {
            return iv;
        }
    }
}

/// Length of the ciphertext for `n` plaintext bytes.
pub const fn ciphertext_len(n: usize) -> usize {
    n + CRYPTO_OVERHEAD
}

/// Length of the plaintext inside `n` ciphertext bytes (None if too short).
pub const fn plaintext_len(n: usize) -> Option<usize> {
    n.checked_sub(CRYPTO_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }
    fn hv(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn vector_key() -> Key {
        Key {
            encrypt: h("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef"),
            mac_k: h("ef4d8824cb80b2bcc5fbff8a9b12a42c"),
            mac_r: h("cc8d4b948ee0ebfe1d415de921d10353"),
        }
    }

    #[test]
    fn restic_object_vector() {
        // spec: restic-format §5.2 test vector.
        let obj = hv("69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750");
        let key = vector_key();
        assert_eq!(key.decrypt(&obj).unwrap(), b"Dies ist ein Test!");
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&obj[..16]);
        assert_eq!(key.encrypt_with_iv(iv, b"Dies ist ein Test!"), obj);
        let mut buf = obj.clone();
        key.decrypt_in_place(&mut buf).unwrap();
        assert_eq!(buf, b"Dies ist ein Test!");
    }

    #[test]
    fn poly1305_aes_paper_vectors() {
        let cases = [
            ("f3f6", "851fc40c3467ac0be05cc20404f3f700", "ec074c835580741701425b623235add6", "fb447350c4e868c52ac3275cf9d4327e", "f4c633c3044fc145f84f335cb81953de"),
            ("", "a0f3080000f46400d0c7e9076c834403", "75deaa25c09f208e1dc4ce6b5cad3fbf", "61ee09218d29b0aaed7e154a2c5509cc", "dd3fab2251f11ac759f0887129cc2ee7"),
            ("663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136", "48443d0bb0d21109c89a100b5ce2c208", "6acb5f61a7176dd320c5c1eb2edcdc74", "ae212a55399729595dea458bc621ff0e", "0ee1c16bb73f0f4fd19881753c01cdbe"),
            ("ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9", "12976a08c4426d0ce8a82407c4f48207", "e1a5668a4d5b66a5f68cc5424ed5982d", "9ae831e743978d3a23527c7128149e3a", "5154ad0d2cb26e01274fc51148491f1b"),
        ];
        for (msg, r, k, nonce, mac) in cases {
            let got = poly1305_aes(&h(k), &h(r), &h(nonce), &hv(msg));
            assert_eq!(got, h::<16>(mac), "msg {msg}");
        }
    }

    #[test]
    fn round_trip_and_failures() {
        let key = Key::random();
        assert!(key.is_valid());
        assert_eq!(key.mac_r[3] & 0xf0, 0);
        for len in [0usize, 1, 15, 16, 17, 1000, 16_384, 32_768, 49_157, 70_000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = key.encrypt(&pt);
            assert_eq!(ct.len(), len + CRYPTO_OVERHEAD);
            assert_eq!(key.decrypt(&ct).unwrap(), pt);
            // The fused pass gives the same tag as a plain Poly1305-AES.
            let iv: [u8; 16] = ct[..16].try_into().unwrap();
            let tag = poly1305_aes(&key.mac_k, &key.mac_r, &iv, &ct[16..ct.len() - 16]);
            assert_eq!(&ct[ct.len() - 16..], &tag);
            let mut bad = ct.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(key.decrypt(&bad), Err(CryptoError::MacMismatch));
        }
        assert_eq!(key.decrypt(&[1u8; 31]), Err(CryptoError::TooShort));
        assert_eq!(key.decrypt(&[0u8; 40]), Err(CryptoError::InvalidNonce));
        assert_eq!(
            Key::random().decrypt(&key.encrypt(b"x")),
            Err(CryptoError::MacMismatch)
        );
        assert_eq!(
            CryptoError::MacMismatch.to_string(),
            "ciphertext verification failed"
        );
    }
}
