//! Single-core throughput of the hot paths: encryption, decryption,
//! SHA-256, zstd (levels 1/3) and decompression.
//!
//! Run: `cargo run --release -p restix-repo-format --example throughput`

use std::time::Instant;

use restix_repo_format::compression::{decompress, Compressor};
use restix_repo_format::{Id, Key};

fn report(what: &str, bytes: usize, secs: f64) {
    println!(
        "{what:<28} {:>8.0} MiB/s",
        bytes as f64 / secs / (1024.0 * 1024.0)
    );
}

fn main() {
    let size = 64 << 20;
    // Semi-compressible data: repeating text mixed with pseudo-random bytes.
    let mut data = Vec::with_capacity(size);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x & 3 == 0 {
            data.extend_from_slice(b"the quick brown fox jumps over the lazy dog ");
        } else {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    data.truncate(size);
    let key = Key::random();

    let mut ct = Vec::with_capacity(size + 32);
    key.encrypt_into(&data, &mut ct); // warm-up: fault in the buffer
    ct.clear();
    let t = Instant::now();
    key.encrypt_into(&data, &mut ct);
    report(
        "encrypt (AES-CTR+Poly1305)",
        size,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    let range = key.decrypt_slice_in_place(&mut ct).expect("own ciphertext");
    report("decrypt in place", size, t.elapsed().as_secs_f64());
    assert!(ct[range] == data[..]);

    let t = Instant::now();
    let id = Id::hash(&data);
    report("sha256", size, t.elapsed().as_secs_f64());
    std::hint::black_box(id);

    for level in [1, 3] {
        let mut c = Compressor::new(level).expect("zstd context");
        let t = Instant::now();
        let mut total = 0;
        let mut frames = Vec::new();
        for chunk in data.chunks(1 << 20) {
            let f = c.compress(chunk).expect("compress");
            total += f.len();
            frames.push(f);
        }
        report(
            &format!("zstd level {level} (1 MiB blobs)"),
            size,
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        for f in &frames {
            std::hint::black_box(decompress(f, Some(1 << 20), 1 << 20).expect("decompress"));
        }
        report(
            &format!("  decompress (ratio {:.2})", size as f64 / total as f64),
            size,
            t.elapsed().as_secs_f64(),
        );
    }
}
