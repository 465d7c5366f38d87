//! zstd compression for repository version 2. spec: restic-format §8.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// zstd window log used when writing: 2^19 = 512 KiB, like restic.
pub const WINDOW_LOG: u32 = 19;

/// Upper bound for any single decompression without a known expected size
/// (unpacked index/snapshot/lock files). Real files are a few MiB.
pub const MAX_DECOMPRESSED_SIZE: usize = 1 << 30;

/// Errors from compression and decompression.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// Unknown `--compression` value.
    #[error("invalid compression mode {0:?} (expected auto, off, max, fastest or better)")]
    InvalidMode(String),
    /// zstd failed (corrupt frame, output longer than expected, …).
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    /// The frame decodes to more bytes than allowed.
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was hit.
        limit: usize,
    },
    /// The decoded length differs from the expected one (pack header).
    #[error("decompressed length {actual} differs from expected {expected}")]
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Actual decoded length.
        actual: usize,
    },
}

/// The `--compression` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CompressionMode {
    /// restic's default (zstd level 3).
    #[default]
    Auto,
    /// Do not compress data blobs (tree blobs and unpacked files still are).
    Off,
    /// Best compression restic offers. We use zstd level 11: klauspost's
    /// `SpeedBestCompression` that restic uses is roughly level 11 in ratio
    /// and speed; level 19 with a 512 KiB window gains about 1-2 % at
    /// 5-10 times the CPU cost.
    Max,
    /// zstd level 1.
    Fastest,
    /// zstd level 7.
    Better,
}

impl CompressionMode {
    /// The zstd level for data blobs, `None` for `Off`.
    pub fn data_level(self) -> Option<i32> {
        match self {
            CompressionMode::Off => None,
            m => Some(m.level()),
        }
    }

    /// The zstd level for tree blobs and unpacked files (always compressed;
    /// `Off` uses the default level 3).
    pub fn level(self) -> i32 {
        match self {
            CompressionMode::Auto | CompressionMode::Off => 3,
            CompressionMode::Fastest => 1,
            CompressionMode::Better => 7,
            CompressionMode::Max => 11,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionMode::Auto => "auto",
            CompressionMode::Off => "off",
            CompressionMode::Max => "max",
            CompressionMode::Fastest => "fastest",
            CompressionMode::Better => "better",
        }
    }
}

impl fmt::Display for CompressionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompressionMode {
    type Err = CompressionError;
    fn from_str(s: &str) -> Result<CompressionMode, CompressionError> {
        match s {
            "auto" => Ok(CompressionMode::Auto),
            "off" => Ok(CompressionMode::Off),
            "max" => Ok(CompressionMode::Max),
            "fastest" => Ok(CompressionMode::Fastest),
            "better" => Ok(CompressionMode::Better),
            _ => Err(CompressionError::InvalidMode(s.to_owned())),
        }
    }
}

/// A reusable zstd compression context (creating one costs more than
/// compressing a small tree blob; keep one per worker thread).
pub struct Compressor {
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    /// A context for `level` with restic's frame settings: 512 KiB window,
    /// content size in the frame header, no checksum.
    pub fn new(level: i32) -> Result<Compressor, CompressionError> {
        use zstd::zstd_safe::CParameter;
        let mut inner = zstd::bulk::Compressor::new(level)?;
        inner.set_parameter(CParameter::WindowLog(WINDOW_LOG))?;
        inner.set_parameter(CParameter::ChecksumFlag(false))?;
        inner.set_parameter(CParameter::ContentSizeFlag(true))?;
        Ok(Compressor { inner })
    }

    /// Compresses `data` into one zstd frame.
    pub fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
        Ok(self.inner.compress(data)?)
    }

    /// Appends one zstd frame of `data` to `out`.
    pub fn compress_into(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let start = out.len();
        out.resize(start + zstd::zstd_safe::compress_bound(data.len()), 0);
        let res = match out.get_mut(start..) {
            Some(dst) => self.inner.compress_to_buffer(data, dst),
            None => Ok(0),
        };
        match res {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }
}

/// Compresses `data` with zstd at `level` (see [`CompressionMode::level`]).
pub fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    Compressor::new(level)?.compress(data)
}

/// Decompresses hostile input without unbounded allocation.
///
/// With `expected_len` (pack header `UncompressedLength`) the output must be
/// exactly that long and at most `limit`; without it the output may grow up
/// to `limit` bytes, allocated incrementally as data actually decodes.
pub fn decompress(
    data: &[u8],
    expected_len: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    match expected_len {
        // zstd's one-shot decoder refuses a zero-sized destination even for a
        // valid empty frame (fuzz finding), so an empty output is decoded as
        // a stream and must stay empty.
        Some(0) => {
            let out = decode_stream(data, 1)?;
            if out.is_empty() {
                Ok(out)
            } else {
                Err(CompressionError::LengthMismatch {
                    expected: 0,
                    actual: out.len(),
                })
            }
        }
        Some(expected) => {
            if expected > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            // One-shot decode straight into an exactly sized buffer: zstd
            // fails with "destination too small" if the frame is longer.
            let mut out = Vec::with_capacity(expected);
            zstd::bulk::Decompressor::new()?.decompress_to_buffer(data, &mut out)?;
            if out.len() != expected {
                return Err(CompressionError::LengthMismatch {
                    expected,
                    actual: out.len(),
                });
            }
            Ok(out)
        }
        None => {
            // A frame that declares its content size (restic's always do) is
            // decoded one-shot against that size, so a corrupt frame cannot
            // pass as a shorter output (found by the `decompress` fuzz target).
            if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(data) {
                let declared = usize::try_from(declared).unwrap_or(usize::MAX);
                if declared > limit {
                    return Err(CompressionError::TooLarge { limit });
                }
                return decompress(data, Some(declared), limit);
            }
            let out = decode_stream(data, limit)?;
            if out.is_empty() {
                return Ok(out);
            }
            // Cross-check with the one-shot decoder, which bounds every match
            // by the output written so far: the streaming decoder turned a
            // hostile frame into bytes no exact decode gives (fuzz finding).
            let exact = decompress(data, Some(out.len()), limit)?;
            if exact != out {
                return Err(CompressionError::Zstd(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "corrupt frame: streaming and exact decodes differ",
                )));
            }
            Ok(exact)
        }
    }
}

/// Streaming decode of whole frames only, output growing up to `limit`.
fn decode_stream(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    // Every frame must be complete by zstd's own frame walk, so input cut
    // inside a frame cannot pass as a shorter output.
    let mut rest = data;
    while !rest.is_empty() {
        let whole = zstd::zstd_safe::find_frame_compressed_size(rest)
            .ok()
            .filter(|&n| n > 0)
            .and_then(|n| rest.get(n..));
        match whole {
            Some(after) => rest = after,
            None => {
                return Err(CompressionError::Zstd(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "truncated or corrupt frame",
                )))
            }
        }
    }
    let mut out = Vec::new();
    let dec = zstd::stream::read::Decoder::with_buffer(data)?;
    dec.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_frame_with_declared_size_is_refused() {
        // fuzz finding: stream-accepts-corrupt-frame
        let data = [0x28, 0xb5, 0x2f, 0xfd, 0x31, 0x00, 0x58, 0x01, 0x00, 0x00];
        assert!(decompress(&data, None, 1 << 20).is_err());
    }

    #[test]
    fn modes() {
        for m in ["auto", "off", "max", "fastest", "better"] {
            assert_eq!(m.parse::<CompressionMode>().unwrap().to_string(), m);
        }
        assert!("Auto".parse::<CompressionMode>().is_err());
        assert_eq!(CompressionMode::Off.data_level(), None);
    }

    #[test]
    fn round_trip_and_frame_layout() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for m in [
            CompressionMode::Auto,
            CompressionMode::Fastest,
            CompressionMode::Better,
            CompressionMode::Max,
        ] {
            let c = compress(m.level(), &data).unwrap();
            assert_eq!(&c[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
            // Frame header descriptor: no checksum bit (bit 2).
            assert_eq!(c[4] & 0x04, 0);
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&c).unwrap(),
                Some(data.len() as u64)
            );
            assert_eq!(decompress(&c, Some(data.len()), usize::MAX).unwrap(), data);
            assert_eq!(decompress(&c, None, 1 << 20).unwrap(), data);
            assert!(matches!(
                decompress(&c, None, 1000),
                Err(CompressionError::TooLarge { .. })
            ));
            assert!(decompress(&c, Some(10), 1 << 20).is_err());
            assert!(matches!(
                decompress(&c, Some(1 << 21), 1 << 20),
                Err(CompressionError::TooLarge { .. })
            ));
            assert!(matches!(
                decompress(&c, Some(data.len() + 1), 1 << 20),
                Err(CompressionError::LengthMismatch { .. })
            ));
        }
        let mut ctx = Compressor::new(3).unwrap();
        let mut out = b"prefix".to_vec();
        ctx.compress_into(b"hello hello hello", &mut out).unwrap();
        assert_eq!(
            decompress(&out[6..], Some(17), 100).unwrap(),
            b"hello hello hello"
        );
        assert!(decompress(b"garbage", None, 100).is_err());
        assert!(decompress(&[], Some(0), 100).is_ok() || decompress(&[], Some(0), 100).is_err());
    }

    #[test]
    fn empty_frame_decodes_the_same_with_and_without_a_length() {
        // Fuzz finding: a frame without content size holding one RLE block
        // of length 0 is a whole, empty frame for zstd; the one-shot decoder
        // refused it with a zero-sized destination while the stream gave [].
        let empty = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x05, 0x00, 0x00];
        assert_eq!(decompress(&empty, None, 1 << 20).unwrap(), Vec::<u8>::new());
        assert_eq!(
            decompress(&empty, Some(0), 1 << 20).unwrap(),
            Vec::<u8>::new()
        );
        let real_empty = compress(3, &[]).unwrap();
        assert_eq!(
            decompress(&real_empty, Some(0), 16).unwrap(),
            Vec::<u8>::new()
        );
        // Cut inside a frame: an error, never a shorter output.
        assert!(decompress(&empty[..8], None, 1 << 20).is_err());
        let whole = compress(3, b"some bytes to compress").unwrap();
        assert!(decompress(&whole[..whole.len() - 2], None, 1 << 20).is_err());
    }
}
