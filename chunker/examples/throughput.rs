use restix_chunker::{Chunker, Polynomial};
use std::time::Instant;
fn cpu_ns() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap()
}
fn proc_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
fn main() {
    let len = 256 << 20;
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    let c = Chunker::new(Polynomial::RESTIC_TEST).unwrap();
    let reps = 8;
    let c0 = cpu_ns();
    for _ in 0..reps {
        std::hint::black_box(c.chunk_slice(&data));
    }
    let cs = (cpu_ns() - c0) / 1e9 / reps as f64;
    println!(
        "sequential: {:.0} MB/s per cpu-second ({cs:.4}s cpu per 256 MiB)",
        len as f64 / cs / 1e6
    );
    for th in [2usize, 4] {
        let t = Instant::now();
        let p0 = proc_cpu();
        let mut n = 0;
        for _ in 0..reps {
            n = c.chunk_slice_parallel(&data, th).len();
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let ps = (proc_cpu() - p0) / reps as f64;
        println!("threads {th}: {n} chunks {:.0} MB/s wall, {:.0} MB/s per cpu-second (cpu {ps:.3}s wall {s:.3}s)", len as f64 / s / 1e6, len as f64 / ps / 1e6);
    }
}
