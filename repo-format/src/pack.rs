//! Pack file headers. spec: restic-format §7.
//!
//! A pack is `blob_1 || … || blob_n || encrypted header || header_len (u32 LE)`.

use crate::crypto::{Key, CRYPTO_OVERHEAD};
use crate::id::{BlobType, Id};

/// Size of the trailing header length field.
pub const HEADER_LENGTH_SIZE: usize = 4;
/// Constant overhead of a header: length field + crypto overhead (36).
pub const HEADER_OVERHEAD: usize = HEADER_LENGTH_SIZE + CRYPTO_OVERHEAD;
/// Largest header restic accepts (16 MiB + 4).
pub const MAX_HEADER_SIZE: usize = 16 * 1024 * 1024 + 4;
/// Entry size for uncompressed blobs (types 0/1).
pub const PLAIN_ENTRY_SIZE: usize = 37;
/// Entry size for compressed blobs (types 2/3).
pub const COMPRESSED_ENTRY_SIZE: usize = 41;
/// Smallest valid pack file: one plain entry + crypto overhead + length.
pub const MIN_FILE_SIZE: u64 = (PLAIN_ENTRY_SIZE + CRYPTO_OVERHEAD + HEADER_LENGTH_SIZE) as u64;
/// How many bytes from the end restic reads first (15 entries + overhead).
pub const EAGER_READ_SIZE: usize = 15 * COMPRESSED_ENTRY_SIZE + HEADER_OVERHEAD;
/// Most entries a header can hold.
pub const MAX_HEADER_ENTRIES: usize = (MAX_HEADER_SIZE - HEADER_OVERHEAD) / COMPRESSED_ENTRY_SIZE;

/// Errors in pack headers and trailers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// Shorter than [`MIN_FILE_SIZE`].
    #[error("file is too short ({0} bytes)")]
    FileTooShort(u64),
    /// Fewer tail bytes were given than needed.
    #[error("need {needed} bytes from the end of the pack, got {got}")]
    TailTooShort {
        /// Needed tail size.
        needed: u64,
        /// Given tail size.
        got: usize,
    },
    /// The header length field is out of range.
    #[error("header length {hlen} is invalid for a pack of {file_size} bytes")]
    InvalidHeaderLength {
        /// The length field's value.
        hlen: u32,
        /// The pack's size.
        file_size: u64,
    },
    /// Unknown entry type byte.
    #[error("invalid type {0} in pack header")]
    InvalidType(u8),
    /// The header ends in the middle of an entry.
    #[error("pack header truncated at entry {0}")]
    TruncatedEntry(usize),
    /// The header does not decrypt.
    #[error("decrypting pack header: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// A blob extends into the header.
    #[error("blob {id} at offset {offset}+{length} overlaps the pack header at {header_start}")]
    BlobOutOfRange {
        /// The blob.
        id: Id,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u32,
        /// Where the header starts.
        header_start: u64,
    },
}

/// One blob as listed in a pack header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// SHA-256 of the uncompressed plaintext.
    pub id: Id,
    /// Offset of the encrypted blob in the pack (implicit in the header).
    pub offset: u64,
    /// Length of the encrypted blob (`IV || CT || MAC`).
    pub length: u32,
    /// Plaintext length for compressed blobs, `None` if stored uncompressed.
    pub uncompressed_length: Option<u32>,
}

impl PackBlob {
    /// Length of the plaintext this blob decodes to.
    pub fn data_length(&self) -> u32 {
        match self.uncompressed_length {
            Some(n) => n,
            None => self.length.saturating_sub(CRYPTO_OVERHEAD as u32),
        }
    }

    /// Size of this blob's header entry.
    pub fn entry_size(&self) -> usize {
        if self.uncompressed_length.is_some() {
            COMPRESSED_ENTRY_SIZE
        } else {
            PLAIN_ENTRY_SIZE
        }
    }
}

/// Appends the header entry of `blob` to `out`. spec: §7.2.
pub fn encode_entry(out: &mut Vec<u8>, blob: &PackBlob) {
    let compressed = blob.uncompressed_length.filter(|&n| n != 0);
    let t = match (blob.blob_type, compressed.is_some()) {
        (BlobType::Data, false) => 0u8,
        (BlobType::Tree, false) => 1,
        (BlobType::Data, true) => 2,
        (BlobType::Tree, true) => 3,
    };
    out.push(t);
    out.extend_from_slice(&blob.length.to_le_bytes());
    if let Some(n) = compressed {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&blob.id.0);
}

/// The plaintext header for `blobs` (offsets are implicit: blobs must be
/// given in file order).
pub fn encode_header(blobs: &[PackBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.iter().map(PackBlob::entry_size).sum());
    for b in blobs {
        encode_entry(&mut out, b);
    }
    out
}

/// Parses a decrypted header, computing offsets (first blob at 0).
pub fn parse_header(plaintext: &[u8]) -> Result<Vec<PackBlob>, PackError> {
    let mut blobs = Vec::with_capacity(plaintext.len() / COMPRESSED_ENTRY_SIZE);
    let mut rest = plaintext;
    let mut offset = 0u64;
    while let Some((&t, tail)) = rest.split_first() {
        let (blob_type, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            other => return Err(PackError::InvalidType(other)),
        };
        let need = if compressed { 40 } else { 36 };
        if tail.len() < need {
            return Err(PackError::TruncatedEntry(blobs.len()));
        }
        let length = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let (uncompressed_length, id_at) = if compressed {
            let n = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
            // restic: compressed iff UncompressedLength != 0.
            ((n != 0).then_some(n), 8)
        } else {
            (None, 4)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&tail[id_at..id_at + 32]);
        blobs.push(PackBlob {
            blob_type,
            id: Id(id),
            offset,
            length,
            uncompressed_length,
        });
        offset += u64::from(length);
        rest = &tail[need..];
    }
    Ok(blobs)
}

/// Validates the trailer: `tail` is the end of the pack file (at least 4
/// bytes), `file_size` its total size. Returns the encrypted header length.
/// spec: §7.3 steps 1 and 3.
pub fn parse_trailer(tail: &[u8], file_size: u64) -> Result<u32, PackError> {
    if file_size < MIN_FILE_SIZE {
        return Err(PackError::FileTooShort(file_size));
    }
    let n = tail.len();
    if n < HEADER_LENGTH_SIZE {
        return Err(PackError::TailTooShort {
            needed: HEADER_LENGTH_SIZE as u64,
            got: n,
        });
    }
    let hlen = u32::from_le_bytes([tail[n - 4], tail[n - 3], tail[n - 2], tail[n - 1]]);
    let h = u64::from(hlen);
    if hlen == 0
        || h < CRYPTO_OVERHEAD as u64
        || h > file_size - HEADER_LENGTH_SIZE as u64
        || h > (MAX_HEADER_SIZE - HEADER_LENGTH_SIZE) as u64
    {
        return Err(PackError::InvalidHeaderLength { hlen, file_size });
    }
    Ok(hlen)
}

/// How many bytes to read first from the end of a pack of `file_size` bytes.
pub fn eager_read_len(file_size: u64) -> u64 {
    file_size.min(EAGER_READ_SIZE as u64)
}

/// A decoded pack header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackHeader {
    /// Blobs in file order with offsets.
    pub blobs: Vec<PackBlob>,
    /// Length of the encrypted header (the trailer's value).
    pub header_len: u32,
}

impl PackHeader {
    /// Offset where the encrypted header starts (= end of the blob area).
    pub fn header_start(&self, file_size: u64) -> u64 {
        file_size.saturating_sub(u64::from(self.header_len) + HEADER_LENGTH_SIZE as u64)
    }

    /// Checks that every blob lies before the header (so slicing a blob out
    /// of the file cannot go out of bounds).
    pub fn check_blobs_fit(&self, file_size: u64) -> Result<(), PackError> {
        let header_start = self.header_start(file_size);
        for b in &self.blobs {
            if b.offset + u64::from(b.length) > header_start {
                return Err(PackError::BlobOutOfRange {
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    header_start,
                });
            }
        }
        Ok(())
    }
}

/// Result of [`decode_pack_header`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderRead {
    /// The header was decoded.
    Complete(PackHeader),
    /// The header is longer than the given tail: read this many bytes from
    /// the end of the file and call again.
    NeedTail(u64),
}

/// Decodes a pack header from the last bytes of a pack file.
///
/// Read [`eager_read_len`] bytes from the end first; if the answer is
/// [`HeaderRead::NeedTail`], read that many bytes from the end and call
/// again.
pub fn decode_pack_header(key: &Key, tail: &[u8], file_size: u64) -> Result<HeaderRead, PackError> {
    let hlen = parse_trailer(tail, file_size)?;
    let needed = u64::from(hlen) + HEADER_LENGTH_SIZE as u64;
    if (tail.len() as u64) < needed {
        if tail.len() as u64 >= file_size {
            return Err(PackError::TailTooShort {
                needed,
                got: tail.len(),
            });
        }
        return Ok(HeaderRead::NeedTail(needed));
    }
    let start = tail.len() - needed as usize;
    let enc = &tail[start..tail.len() - HEADER_LENGTH_SIZE];
    let plain = key.decrypt(enc)?;
    Ok(HeaderRead::Complete(PackHeader {
        blobs: parse_header(&plain)?,
        header_len: hlen,
    }))
}

/// Encrypts `header_plaintext` and appends it plus the length field to
/// `out` (the end of a pack being written).
pub fn append_encrypted_header(key: &Key, header_plaintext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    key.encrypt_into(header_plaintext, out);
    let hlen = (out.len() - start) as u32;
    out.extend_from_slice(&hlen.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hx(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn spec_worked_example() {
        // spec: restic-format §7.2 worked example.
        let plain = hx(
            "03 45010000 b8010000 11cde5d47fc8b9f2493cf0016aadc6d24fc556d197026fa4efe4c5cba6a4be91
             03 06020000 68060000 23bb58de60d5bbbbed1af209074b3cb80bded48a916314deab39eea8648e05a1
             03 f9000000 61010000 16622c83d891251ff089954388d05f159884bf7654e7646a452a13337d930d17",
        );
        let blobs = parse_header(&plain).unwrap();
        let got: Vec<(u64, u32, Option<u32>)> = blobs
            .iter()
            .map(|b| (b.offset, b.length, b.uncompressed_length))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 325, Some(440)),
                (325, 518, Some(1640)),
                (843, 249, Some(353))
            ]
        );
        assert!(blobs.iter().all(|b| b.blob_type == BlobType::Tree));
        assert_eq!(encode_header(&blobs), plain);
        assert_eq!(blobs[0].data_length(), 440);
    }

    #[test]
    fn constants() {
        assert_eq!(EAGER_READ_SIZE, 651);
        assert_eq!(MIN_FILE_SIZE, 73);
        assert_eq!(MAX_HEADER_ENTRIES, 409_199);
        assert_eq!(MAX_HEADER_SIZE, 16_777_220);
    }

    #[test]
    fn bad_headers() {
        assert_eq!(parse_header(&[4]), Err(PackError::InvalidType(4)));
        assert_eq!(parse_header(&[0; 36]), Err(PackError::TruncatedEntry(0)));
        assert_eq!(parse_header(&[2; 40]), Err(PackError::TruncatedEntry(0)));
        assert!(parse_header(&[]).unwrap().is_empty());
        assert!(matches!(
            parse_trailer(&[0, 0, 0, 0], 100),
            Err(PackError::InvalidHeaderLength { .. })
        ));
        assert!(matches!(
            parse_trailer(&31u32.to_le_bytes(), 100),
            Err(PackError::InvalidHeaderLength { .. })
        ));
        assert!(matches!(
            parse_trailer(&97u32.to_le_bytes(), 100),
            Err(PackError::InvalidHeaderLength { .. })
        ));
        assert_eq!(parse_trailer(&96u32.to_le_bytes(), 100), Ok(96));
        assert_eq!(
            parse_trailer(&[1, 2, 3, 4], 72),
            Err(PackError::FileTooShort(72))
        );
        assert!(matches!(
            parse_trailer(&[1, 2], 100),
            Err(PackError::TailTooShort { .. })
        ));
    }

    #[test]
    fn pack_round_trip() {
        let key = Key::random();
        let mut pack = Vec::new();
        let mut blobs = Vec::new();
        for i in 0..40u32 {
            let data = vec![i as u8; i as usize * 3];
            let offset = pack.len() as u64;
            key.encrypt_into(&data, &mut pack);
            blobs.push(PackBlob {
                blob_type: if i % 2 == 0 {
                    BlobType::Data
                } else {
                    BlobType::Tree
                },
                id: Id::hash(&data),
                offset,
                length: (pack.len() as u64 - offset) as u32,
                uncompressed_length: (i % 3 == 0).then_some(i + 7),
            });
        }
        append_encrypted_header(&key, &encode_header(&blobs), &mut pack);
        let size = pack.len() as u64;
        let eager = eager_read_len(size) as usize;
        let need = match decode_pack_header(&key, &pack[pack.len() - eager..], size).unwrap() {
            HeaderRead::NeedTail(n) => n as usize,
            HeaderRead::Complete(_) => panic!("40 entries exceed the eager read"),
        };
        match decode_pack_header(&key, &pack[pack.len() - need..], size).unwrap() {
            HeaderRead::Complete(h) => {
                assert_eq!(h.blobs, blobs);
                h.check_blobs_fit(size).unwrap();
            }
            HeaderRead::NeedTail(_) => panic!("tail was complete"),
        }
    }
}
