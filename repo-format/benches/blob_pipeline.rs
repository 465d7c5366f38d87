//! Throughput of the per-blob stages of a backup after chunking: SHA-256
//! (blob ID), zstd at restic's levels, AES-256-CTR + Poly1305-AES (seal and
//! open), on 1 MiB blobs, restic's mean chunk size (`cargo bench -p
//! restix-repo-format`). Two inputs: random bytes (incompressible, like
//! media and archives) and text-like bytes (compressible, like logs and
//! binaries).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use restix_repo_format::compression::{decompress, Compressor};
use restix_repo_format::{CompressionMode, Id, Key};

const BLOB: usize = 1024 * 1024;

fn random_blob() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut data = Vec::with_capacity(BLOB + 8);
    while data.len() < BLOB {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(BLOB);
    data
}

/// Log-like lines with varying numbers: compresses about 4-6x with zstd.
fn text_blob() -> Vec<u8> {
    let mut data = Vec::with_capacity(BLOB + 128);
    let mut n = 0u64;
    while data.len() < BLOB {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let line = format!(
            "2026-12-04T21:{:02}:{:02} host-{} backup[{}]: stored blob {:016x} in pack {}\n",
            (n >> 8) % 60,
            (n >> 16) % 60,
            (n >> 24) % 7,
            (n >> 32) % 4096,
            n,
            (n >> 40) % 1000
        );
        data.extend_from_slice(line.as_bytes());
    }
    data.truncate(BLOB);
    data
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.throughput(Throughput::Bytes(BLOB as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
}

fn bench_blob_stages(c: &mut Criterion) {
    let inputs = [("random", random_blob()), ("text", text_blob())];
    let key = Key::random();

    let mut group = c.benchmark_group("sha256_1MiB");
    configure(&mut group);
    for (name, data) in &inputs {
        group.bench_function(*name, |b| b.iter(|| black_box(Id::hash(black_box(data)))));
    }
    group.finish();

    let mut group = c.benchmark_group("zstd_1MiB");
    configure(&mut group);
    for mode in [
        CompressionMode::Fastest,
        CompressionMode::Auto,
        CompressionMode::Better,
    ] {
        let level = mode.level();
        let Ok(mut compressor) = Compressor::new(level) else {
            continue;
        };
        for (name, data) in &inputs {
            group.bench_function(format!("compress-level{level}/{name}"), |b| {
                b.iter(|| black_box(compressor.compress(black_box(data))))
            });
            if let Ok(frame) = compressor.compress(data) {
                group.bench_function(format!("decompress-level{level}/{name}"), |b| {
                    b.iter(|| black_box(decompress(black_box(&frame), Some(BLOB), BLOB)))
                });
            }
        }
    }
    group.finish();

    let mut group = c.benchmark_group("aes_ctr_poly1305_1MiB");
    configure(&mut group);
    let (_, data) = &inputs[0];
    let sealed = key.encrypt(data);
    group.bench_function("seal", |b| {
        b.iter(|| black_box(key.encrypt(black_box(data))))
    });
    group.bench_function("open", |b| {
        b.iter(|| black_box(key.decrypt(black_box(&sealed))))
    });
    group.finish();
}

criterion_group!(benches, bench_blob_stages);
criterion_main!(benches);
