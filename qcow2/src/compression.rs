//! Decoding compressed clusters (spec: qcow2 §1.4).
//!
//! The stored length is only an upper bound (whole sectors), so both decoders
//! stop as soon as exactly one cluster has come out and ignore what follows.

use crate::header::CompressionType;

/// Decompresses `input` into `out`, which is exactly one cluster long.
/// Returns a description of the problem when the data does not yield a full cluster.
pub(crate) fn decompress_cluster(
    kind: CompressionType,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    match kind {
        CompressionType::Deflate => inflate_raw(input, out),
        CompressionType::Zstd => zstd_stream(input, out),
    }
}

fn inflate_raw(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    // Raw deflate: no zlib header (QEMU uses window bits -12).
    let mut inflater = flate2::Decompress::new(false);
    let status = inflater.decompress(input, out, flate2::FlushDecompress::Finish);
    let produced = inflater.total_out();
    match status {
        // A full output buffer is success even if the decoder wanted more room
        // (QEMU accepts Z_BUF_ERROR with a full buffer the same way).
        Ok(_) if produced == out.len() as u64 => Ok(()),
        Ok(s) => Err(format!(
            "deflate stream ended after {produced} of {} bytes ({s:?})",
            out.len()
        )),
        Err(e) => Err(format!("deflate: {e}")),
    }
}

fn zstd_stream(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut decoder = Decoder::new().map_err(|e| format!("zstd init: {e}"))?;
    let mut in_buf = InBuffer::around(input);
    let mut out_buf = OutBuffer::around(out);
    // Stream until the cluster is full; the padded input tail must never be fed
    // to a one-shot decoder (spec: qcow2 §1.4 pitfall). Several frames are allowed.
    loop {
        let before_in = in_buf.pos();
        let before_out = out_buf.pos();
        if out_buf.pos() == out_buf.capacity() {
            return Ok(());
        }
        decoder
            .run(&mut in_buf, &mut out_buf)
            .map_err(|e| format!("zstd: {e}"))?;
        if out_buf.pos() == out_buf.capacity() {
            return Ok(());
        }
        if in_buf.pos() == before_in && out_buf.pos() == before_out {
            return Err(format!(
                "zstd stream ended after {} of {} bytes",
                out_buf.pos(),
                out_buf.capacity()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn raw_deflate_with_trailing_garbage() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(&data).unwrap();
        let mut compressed = enc.finish().unwrap();
        compressed.extend_from_slice(&[0xAB; 300]);
        let mut out = vec![0u8; 4096];
        decompress_cluster(CompressionType::Deflate, &compressed, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn zstd_with_padding() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
        let mut compressed = zstd::bulk::compress(&data, 3).unwrap();
        compressed.extend_from_slice(&[0u8; 511]);
        let mut out = vec![0u8; 4096];
        decompress_cluster(CompressionType::Zstd, &compressed, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn short_stream_is_an_error() {
        let data = vec![7u8; 1000];
        let compressed = zstd::bulk::compress(&data, 3).unwrap();
        let mut out = vec![0u8; 4096];
        assert!(decompress_cluster(CompressionType::Zstd, &compressed, &mut out).is_err());
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(&data).unwrap();
        let compressed = enc.finish().unwrap();
        assert!(decompress_cluster(CompressionType::Deflate, &compressed, &mut out).is_err());
    }
}
