//! Upstream and generated test vectors (spec: restic-format §15.9,
//! `testdata/chunker_vectors.txt`), plus differential tests of the fast paths.

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::go_rng_cooked::GO_RNG_COOKED;
use crate::{
    ChunkBoundary, Chunker, ChunkerConfig, ParallelChunker, Polynomial, MAX_SIZE, MIN_SIZE,
};

const VECTORS: &str = include_str!("../testdata/chunker_vectors.txt");

/// Port of Go's `math/rand` `rngSource` (additive lagged Fibonacci generator,
/// length 607, tap 273), for regenerating upstream inputs.
struct GoRandSource {
    tap: usize,
    feed: usize,
    vec: [i64; 607],
}

impl GoRandSource {
    const LEN: usize = 607;
    const TAP: usize = 273;
    const INT32_MAX: i64 = (1 << 31) - 1;

    fn new(seed: i64) -> Self {
        // Park-Miller step x[n+1] = 48271 * x[n] mod (2^31 - 1), Schrage's method
        fn seed_step(x: i32) -> i32 {
            const A: i32 = 48271;
            const Q: i32 = 44488;
            const R: i32 = 3399;
            let hi = x / Q;
            let lo = x % Q;
            let mut next = A.wrapping_mul(lo).wrapping_sub(R.wrapping_mul(hi));
            if next < 0 {
                next = next.wrapping_add(i32::MAX);
            }
            next
        }
        let mut seed = seed % Self::INT32_MAX;
        if seed < 0 {
            seed += Self::INT32_MAX;
        }
        if seed == 0 {
            seed = 89482311;
        }
        let mut x = seed as i32;
        let mut vec = [0i64; 607];
        for i in -20i32..Self::LEN as i32 {
            x = seed_step(x);
            if i >= 0 {
                let mut u = i64::from(x) << 40;
                x = seed_step(x);
                u ^= i64::from(x) << 20;
                x = seed_step(x);
                u ^= i64::from(x);
                u ^= GO_RNG_COOKED[i as usize];
                vec[i as usize] = u;
            }
        }
        GoRandSource {
            tap: 0,
            feed: Self::LEN - Self::TAP,
            vec,
        }
    }

    fn uint64(&mut self) -> u64 {
        self.tap = if self.tap == 0 {
            Self::LEN - 1
        } else {
            self.tap - 1
        };
        self.feed = if self.feed == 0 {
            Self::LEN - 1
        } else {
            self.feed - 1
        };
        let x = self.vec[self.feed].wrapping_add(self.vec[self.tap]);
        self.vec[self.feed] = x;
        x as u64
    }

    fn int63(&mut self) -> i64 {
        (self.uint64() & (u64::MAX >> 1)) as i64
    }

    fn uint32(&mut self) -> u32 {
        (self.int63() >> 31) as u32
    }
}

/// The 32 MiB input of upstream `chunks1`/`chunks3`/`chunks4`.
fn go_uint32_data() -> Vec<u8> {
    let mut rng = GoRandSource::new(23);
    let mut data = Vec::with_capacity(32 << 20);
    for _ in 0..(32 << 20) / 4 {
        data.extend_from_slice(&rng.uint32().to_le_bytes());
    }
    data
}

/// The 32 MiB input of the upstream example (`Rand.Read`: 7 bytes per Int63).
fn go_read_data() -> Vec<u8> {
    let mut rng = GoRandSource::new(23);
    let mut data = Vec::with_capacity(32 << 20);
    let mut value = 0i64;
    let mut remaining = 0;
    for _ in 0..32 << 20 {
        if remaining == 0 {
            value = rng.int63();
            remaining = 7;
        }
        data.push(value as u8);
        value >>= 8;
        remaining -= 1;
    }
    data
}

/// `SHA256(le64(0)) || SHA256(le64(1)) || ...` truncated to `len` bytes.
fn sha256_stream(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while data.len() < len {
        data.extend_from_slice(&Sha256::digest(counter.to_le_bytes()));
        counter += 1;
    }
    data.truncate(len);
    data
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(length, cut, sha256)` lines of every normalized section.
fn sections() -> HashMap<String, Vec<Vec<String>>> {
    let mut sections = HashMap::new();
    let mut current: Option<String> = None;
    for line in VECTORS.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_insert_with(Vec::new);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = &current {
            let fields = line.split_whitespace().map(str::to_string).collect();
            sections.get_mut(name).unwrap().push(fields);
        }
    }
    sections
}

fn expected_chunks(name: &str) -> Vec<(usize, u64, String)> {
    let all = sections();
    let lines = all
        .get(name)
        .unwrap_or_else(|| panic!("section {name} missing"));
    lines
        .iter()
        .map(|fields| {
            assert_eq!(fields.len(), 3, "{name}: {fields:?}");
            (
                fields[0].parse().unwrap(),
                u64::from_str_radix(&fields[1], 16).unwrap(),
                fields[2].clone(),
            )
        })
        .collect()
}

fn restic_chunker() -> Chunker {
    Chunker::new(Polynomial::RESTIC_TEST).unwrap()
}

/// Checks `chunks` of `data` against a section, and all other APIs against `chunks`.
fn assert_chunks(name: &str, chunker: &Chunker, data: &[u8]) {
    let expected = expected_chunks(name);
    let chunks = chunker.chunk_slice(data);
    let actual: Vec<(usize, u64, String)> = chunks
        .iter()
        .map(|c| (c.length, c.cut, sha256_hex(&data[c.offset..c.end()])))
        .collect();
    assert_eq!(actual, expected, "section {name}");
    assert_same_everywhere(chunker, data, &chunks);
}

/// Parallel, prefix and streaming forms must agree with `chunks`.
fn assert_same_everywhere(chunker: &Chunker, data: &[u8], chunks: &[ChunkBoundary]) {
    for threads in [2, 3, 4] {
        assert_eq!(
            chunker.chunk_slice_parallel(data, threads),
            chunks,
            "threads {threads}"
        );
    }
    let mut stream = chunker.chunk_reader(data);
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next_chunk().unwrap() {
        streamed.push(ChunkBoundary {
            offset: chunk.offset as usize,
            length: chunk.data.len(),
            cut: chunk.cut,
        });
        assert_eq!(
            chunk.data,
            &data[chunk.offset as usize..chunk.offset as usize + chunk.data.len()]
        );
    }
    assert_eq!(streamed, chunks, "stream");
    let max = chunker.config().max_size;
    let parallel = ParallelChunker::new(chunker.clone(), 2);
    let mut batches = parallel.chunk_reader(data, 3 * max);
    let mut batched = Vec::new();
    while let Some(batch) = batches.next_batch().unwrap() {
        for chunk in batch.iter() {
            batched.push(ChunkBoundary {
                offset: chunk.offset as usize,
                length: chunk.data.len(),
                cut: chunk.cut,
            });
        }
    }
    assert_eq!(batched, chunks, "parallel stream");
}

#[test]
fn go_math_rand_port_matches_reference_values() {
    let mut rng = GoRandSource::new(23);
    let values: Vec<u64> = (0..4).map(|_| rng.uint64()).collect();
    assert_eq!(
        values,
        [
            0x67f2c767b5f7061b,
            0x4639aa289ff39b31,
            0x9c6baf0d0f553715,
            0x85da4db4df4f5692
        ]
    );
}

#[test]
fn upstream_chunks1_chunks3_chunks4() {
    let data = go_uint32_data();
    assert_eq!(hex(&data[..16]), "cf8ee5cf5154738c1a5ed738699bb40b");
    assert_eq!(
        sha256_hex(&data),
        "529617b3a6df2372a77f656f14a5baaf997dc03c1fc458d196f933fed0a46573"
    );
    assert_chunks("chunks1", &restic_chunker(), &data);
    let bits19 = ChunkerConfig::default().with_average_bits(19);
    assert_chunks(
        "chunks3",
        &Chunker::with_config(Polynomial::RESTIC_TEST, bits19).unwrap(),
        &data,
    );
    let big = ChunkerConfig {
        min_size: 16 << 20,
        max_size: 32 << 20,
        ..ChunkerConfig::default()
    };
    assert_chunks(
        "chunks4",
        &Chunker::with_config(Polynomial::RESTIC_TEST, big).unwrap(),
        &data,
    );
}

#[test]
fn upstream_chunks2_zeros() {
    assert_chunks("chunks2", &restic_chunker(), &vec![0u8; 4 * MIN_SIZE]);
}

#[test]
fn upstream_example_first_five() {
    let data = go_read_data();
    assert_eq!(hex(&data[..16]), "1b06f7b567c7f2319bf39f28aa391537");
    assert_eq!(
        sha256_hex(&data),
        "c5c2783e0c54d67b33f362abc4bfda0141d85c9d7701ccfc48488f6e09120885"
    );
    let all = sections();
    let expected: Vec<(usize, String)> = all["example-first5"]
        .iter()
        .map(|fields| (fields[0].parse().unwrap(), fields[1].clone()))
        .collect();
    let mut stream = restic_chunker().chunk_reader(&data[..]);
    let mut buffer = Vec::new();
    let mut actual = Vec::new();
    for _ in 0..5 {
        stream.next_into(&mut buffer).unwrap().unwrap();
        actual.push((buffer.len(), sha256_hex(&buffer)));
    }
    assert_eq!(actual, expected);
}

#[test]
fn generated_sha256_stream_vectors() {
    let data = sha256_stream(32 << 20);
    assert_eq!(
        sha256_hex(&data),
        "e8b10ee1485f66037afca792113ce0e75116962aeda104b71a9fdaf0a8ec896b"
    );
    assert_chunks(
        "gen:sha256stream-32MiB-pol-3da3358b4dc173",
        &restic_chunker(),
        &data,
    );
    let other = Chunker::new(Polynomial(0x2482734cacca49)).unwrap();
    assert_chunks("gen:sha256stream-32MiB-pol-2482734cacca49", &other, &data);
    for len in [524224usize, 524225, 524287] {
        let name = format!("gen:sha256stream-{len}-pol-3da3358b4dc173");
        assert_chunks(&name, &restic_chunker(), &data[..len]);
    }
}

#[test]
fn generated_window_fingerprints_and_candidates() {
    let data = sha256_stream(32 << 20);
    let chunker = restic_chunker();
    let tables = chunker.tables();
    let all = sections();
    for fields in &all["window-fingerprints-sha256stream-pol-3da3358b4dc173"] {
        let end: usize = fields[0].parse().unwrap();
        let expected = u64::from_str_radix(&fields[1], 16).unwrap();
        assert_eq!(
            tables.window_fingerprint_at(&data, end),
            Some(expected),
            "F({end})"
        );
    }
    let expected: Vec<usize> = all["candidates-sha256stream-pol-3da3358b4dc173-first32"]
        .iter()
        .map(|fields| fields[0].parse().unwrap())
        .collect();
    assert_eq!(tables.candidates(&data, crate::SPLIT_MASK), expected);
}

#[test]
fn generated_ff_and_zero_vectors() {
    let chunker = restic_chunker();
    assert_chunks(
        "gen:ff-20MiB-pol-3da3358b4dc173",
        &chunker,
        &vec![0xFFu8; 20 << 20],
    );
    for len in [0usize, 1, 100, 524287, 524288, 524289, 1572869] {
        let name = format!("gen:zeros-{len}-pol-3da3358b4dc173");
        assert_chunks(&name, &chunker, &vec![0u8; len]);
    }
}

#[test]
fn derive_polynomial_from_sha256_stream() {
    let data = sha256_stream(1 << 20);
    let pol = Polynomial::derive(&mut &data[..]).unwrap();
    assert_eq!(pol, Polynomial(0x24c4f312816ed9));
    let mut empty: &[u8] = &[];
    assert!(Polynomial::derive(&mut empty).is_err());
    let _ = (&data[..]).read(&mut [0u8; 1]);
}

#[test]
fn zero_chunk_id_constant() {
    let zeros = vec![0u8; MIN_SIZE];
    assert_eq!(Sha256::digest(&zeros).as_slice(), crate::ZERO_CHUNK_ID);
    assert_eq!(hex(&crate::ZERO_CHUNK_ID), crate::ZERO_CHUNK_ID_HEX);
    assert_eq!(crate::known_chunk_id(&zeros), Some(crate::ZERO_CHUNK_ID));
    let mut almost = zeros.clone();
    almost[MIN_SIZE - 1] = 1;
    assert_eq!(crate::known_chunk_id(&almost), None);
    assert_eq!(crate::known_chunk_id(&zeros[1..]), None);
}

/// Straightforward model of restic's stateful chunker (spec §15.5-15.6),
/// byte by byte, used to cross-check the fast implementation.
fn model_chunks(chunker: &Chunker, data: &[u8]) -> Vec<ChunkBoundary> {
    let tables = chunker.tables();
    let config = chunker.config();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let mut window = [0u8; 64];
        let mut wpos = 0;
        let mut digest = 0u64;
        let update = |digest: &mut u64, byte: u8, window: &mut [u8; 64], wpos: &mut usize| {
            let old = window[*wpos];
            window[*wpos] = byte;
            *wpos = (*wpos + 1) % 64;
            *digest = tables.roll(*digest, old, byte);
        };
        update(&mut digest, 1, &mut window, &mut wpos);
        let mut count = config.min_size - 64;
        let mut position = start + count;
        let mut end = None;
        while position < data.len() {
            update(&mut digest, data[position], &mut window, &mut wpos);
            count += 1;
            position += 1;
            if (digest & config.split_mask == 0 || count >= config.max_size)
                && count >= config.min_size
            {
                end = Some(position);
                break;
            }
        }
        let end = end.unwrap_or(data.len());
        chunks.push(ChunkBoundary {
            offset: start,
            length: end - start,
            cut: digest,
        });
        start = end;
    }
    chunks
}

fn xorshift_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
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

fn small_chunker(mask: u64) -> Chunker {
    let config = ChunkerConfig {
        min_size: 1024,
        max_size: 8192,
        split_mask: mask,
    };
    Chunker::with_config(Polynomial::RESTIC_TEST, config).unwrap()
}

#[test]
fn differential_random_inputs_small_config() {
    for seed in 0..40u64 {
        let len = (seed as usize * 7919) % 300_000;
        let mut data = xorshift_bytes(len, seed);
        // sprinkle zero runs and constant runs of assorted lengths
        let mut state = seed;
        for _ in 0..(seed % 6) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if len == 0 {
                break;
            }
            let at = (state >> 33) as usize % len;
            let run = [1usize, 63, 64, 65, 1000, 1024, 5000, 20_000][(state >> 20) as usize % 8];
            let byte = if state & 1 == 0 { 0 } else { 0xAB };
            let stop = (at + run).min(len);
            data[at..stop].fill(byte);
        }
        for mask in [0x3Fu64, 0x1FF, 0xFFF] {
            let chunker = small_chunker(mask);
            let expected = model_chunks(&chunker, &data);
            let chunks = chunker.chunk_slice(&data);
            assert_eq!(chunks, expected, "seed {seed} mask {mask:#x}");
            for threads in [2, 3, 5, 8] {
                assert_eq!(
                    chunker.chunk_slice_parallel(&data, threads),
                    expected,
                    "threads {threads}"
                );
            }
            // piecewise input through chunk_prefix
            let mut carried = Vec::new();
            let mut base = 0;
            let mut piecewise = Vec::new();
            for piece in data.chunks(9000) {
                carried.extend_from_slice(piece);
                for chunk in chunker.chunk_prefix(&carried, false) {
                    piecewise.push(ChunkBoundary {
                        offset: base + chunk.offset,
                        ..chunk
                    });
                }
                let done = piecewise.last().map_or(0, ChunkBoundary::end) - base;
                carried.drain(..done);
                base += done;
            }
            for chunk in chunker.chunk_prefix(&carried, true) {
                piecewise.push(ChunkBoundary {
                    offset: base + chunk.offset,
                    ..chunk
                });
            }
            assert_eq!(piecewise, expected, "piecewise seed {seed}");
            assert_same_everywhere(&chunker, &data, &expected);
        }
    }
}

#[test]
fn zero_runs_at_all_alignments() {
    let chunker = small_chunker(0xFF);
    let base = xorshift_bytes(40_000, 99);
    for run_start in (900..1200).step_by(7) {
        for run_len in [
            1usize, 30, 63, 64, 65, 127, 128, 1023, 1024, 1025, 3000, 9000,
        ] {
            let mut data = base.clone();
            let stop = (run_start + run_len).min(data.len());
            data[run_start..stop].fill(0);
            let expected = model_chunks(&chunker, &data);
            assert_eq!(
                chunker.chunk_slice(&data),
                expected,
                "run {run_start}+{run_len}"
            );
        }
    }
}

#[test]
fn default_config_mixed_zero_random() {
    let chunker = restic_chunker();
    let mut data = xorshift_bytes(12 << 20, 5);
    data[1_000_000..3_100_003].fill(0);
    data[5_000_000..5_000_063].fill(0);
    data[7_000_001..7_600_000].fill(0);
    data[9_000_000..9_000_064].fill(0);
    let expected = model_chunks(&chunker, &data);
    assert_eq!(chunker.chunk_slice(&data), expected);
    assert_same_everywhere(&chunker, &data, &expected);
    assert!(expected.iter().any(|c| c.length == MIN_SIZE && c.cut == 0));
    assert!(expected.iter().all(|c| c.length <= MAX_SIZE));
}

/// A reader that hands out at most `limit` bytes per call and reports
/// `Interrupted` every few calls.
struct TrickleReader<'a> {
    data: &'a [u8],
    limit: usize,
    calls: usize,
}

impl Read for TrickleReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls == 5 {
            self.calls = 0;
            return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
        }
        let take = buf.len().min(self.limit).min(self.data.len());
        buf[..take].copy_from_slice(&self.data[..take]);
        self.data = &self.data[take..];
        Ok(take)
    }
}

struct FailingReader;

impl Read for FailingReader {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

#[test]
fn streams_handle_short_reads_and_errors() {
    let chunker = small_chunker(0x1FF);
    let data = xorshift_bytes(200_000, 11);
    let expected = chunker.chunk_slice(&data);
    for limit in [1usize, 7, 1000, 65_536] {
        let reader = TrickleReader {
            data: &data,
            limit,
            calls: 0,
        };
        let owned: Vec<_> = crate::StreamChunker::with_window(chunker.clone(), reader, 10_000)
            .collect::<Result<_, _>>()
            .unwrap();
        let got: Vec<ChunkBoundary> = owned
            .iter()
            .map(|c| ChunkBoundary {
                offset: c.offset as usize,
                length: c.data.len(),
                cut: c.cut,
            })
            .collect();
        assert_eq!(got, expected, "limit {limit}");
        let reader = TrickleReader {
            data: &data,
            limit,
            calls: 0,
        };
        let mut stream = ParallelChunker::new(chunker.clone(), 3).chunk_reader(reader, 50_000);
        let mut batched = Vec::new();
        while let Some(batch) = stream.next_batch().unwrap() {
            assert_eq!(batch.byte_len(), batch.chunks.last().unwrap().end());
            batched.extend(batch.iter().map(|c| ChunkBoundary {
                offset: c.offset as usize,
                length: c.data.len(),
                cut: c.cut,
            }));
        }
        assert_eq!(batched, expected, "parallel limit {limit}");
    }
    let mut failing = chunker.chunk_reader(FailingReader);
    assert!(failing.next_chunk().is_err());
    let mut empty = chunker.chunk_reader(&[][..]);
    assert!(empty.next_chunk().unwrap().is_none());
}

#[test]
fn rejects_invalid_configs() {
    let bad = [
        ChunkerConfig {
            min_size: 63,
            ..ChunkerConfig::default()
        },
        ChunkerConfig {
            min_size: 4096,
            max_size: 4095,
            split_mask: 0xFF,
        },
    ];
    for config in bad {
        assert!(
            Chunker::with_config(Polynomial::RESTIC_TEST, config).is_err(),
            "{config:?}"
        );
    }
    assert!(Chunker::new(Polynomial(0x1ff)).is_err());
    let exact = ChunkerConfig {
        min_size: 64,
        max_size: 64,
        split_mask: 0xFF,
    };
    let chunker = Chunker::with_config(Polynomial::RESTIC_TEST, exact).unwrap();
    let data = xorshift_bytes(1000, 1);
    assert_eq!(chunker.chunk_slice(&data), model_chunks(&chunker, &data));
}
