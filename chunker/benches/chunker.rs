//! Throughput of the sequential and parallel chunker on 64 MiB of random and
//! of zero data (`cargo bench -p restix-chunker`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use restix_chunker::{Chunker, Polynomial};

const LEN: usize = 64 * 1024 * 1024;

fn random_data(len: usize) -> Vec<u8> {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

fn bench_chunker(c: &mut Criterion) {
    let chunker = Chunker::new(Polynomial::RESTIC_TEST).expect("valid polynomial");
    let inputs = [("random", random_data(LEN)), ("zero", vec![0u8; LEN])];
    let mut group = c.benchmark_group("chunk_64MiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (name, data) in &inputs {
        group.bench_function(format!("{name}/sequential"), |b| {
            b.iter(|| black_box(chunker.chunk_slice(black_box(data))))
        });
        for threads in [1usize, 2, 4] {
            group.bench_function(format!("{name}/parallel-{threads}"), |b| {
                b.iter(|| black_box(chunker.chunk_slice_parallel(black_box(data), threads)))
            });
        }
        group.bench_function(format!("{name}/stream-reader"), |b| {
            b.iter(|| {
                let mut stream = chunker.chunk_reader(black_box(&data[..]));
                let mut chunks = 0usize;
                while let Ok(Some(_)) = stream.next_chunk() {
                    chunks += 1;
                }
                black_box(chunks)
            })
        });
    }
    // baseline: plain single-digest rolling hash over every byte
    let (_, random) = &inputs[0];
    group.bench_function("random/single-lane-all-positions", |b| {
        b.iter(|| {
            black_box(
                chunker
                    .tables()
                    .candidates(black_box(random), restix_chunker::SPLIT_MASK),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_chunker);
criterion_main!(benches);
