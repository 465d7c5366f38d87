//! Read throughput of the guest view, side by side with `qemu-img convert -O raw`
//! on the same images: `cargo bench -p restix-qcow2` (needs qemu-img).
//!
//! A 256 MiB guest (half random, a quarter compressible, a quarter holes) is
//! stored as plain qcow2 v3, deflate-compressed and zstd-compressed. For each,
//! the table shows restix reading every Data extent with 1, 2 and 4 threads,
//! and qemu-img converting the image to a raw file (which uses its own threads).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use restix_qcow2::{DiskImage, ExtentKind, Qcow2Image};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 256 * MIB;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn make_source(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(SIZE).unwrap();
    let random = noise(1, (SIZE / 2) as usize);
    file.write_all_at(&random, 0).unwrap();
    // Compressible: random words from a small vocabulary.
    let words: [&[u8]; 8] = [
        b"disk ",
        b"image ",
        b"backup ",
        b"cluster ",
        b"qcow2 ",
        b"restic ",
        b"zstd ",
        b"\n",
    ];
    let picks = noise(2, (SIZE / 4) as usize);
    let mut text = Vec::with_capacity((SIZE / 4) as usize);
    for p in picks {
        if text.len() as u64 >= SIZE / 4 {
            break;
        }
        text.extend_from_slice(words[(p % 8) as usize]);
    }
    text.truncate((SIZE / 4) as usize);
    file.write_all_at(&text, SIZE / 2).unwrap();
}

fn read_all(image: &Qcow2Image, threads: usize) -> u64 {
    let extents: Vec<(u64, u64)> = image
        .extents(0, image.virtual_size())
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .flat_map(|e| {
            let step = 4 * MIB;
            (e.offset..e.end())
                .step_by(step as usize)
                .map(move |at| (at, step.min(e.end() - at)))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; (4 * MIB) as usize];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(at, len)) = extents.get(i) else {
                        break;
                    };
                    image.read_at(at, &mut buf[..len as usize]).unwrap();
                    total.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    total.into_inner()
}

fn main() {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!("SKIPPED: qemu-img not installed");
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("restix-qcow2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.raw");
    make_source(&src);
    println!(
        "| image | restix 1 thread | restix 2 threads | restix 4 threads | qemu-img convert |"
    );
    println!("|---|---|---|---|---|");
    for (name, extra) in [
        ("v3", &[][..]),
        ("deflate", &["-c"][..]),
        ("zstd", &["-c", "-o", "compression_type=zstd"][..]),
    ] {
        let image_path = dir.join(format!("{name}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend([src.to_str().unwrap(), image_path.to_str().unwrap()]);
        assert!(Command::new("qemu-img")
            .args(&args)
            .status()
            .unwrap()
            .success());
        let image = Qcow2Image::open(&image_path).unwrap();
        // Warm the page cache so every column reads from memory alike.
        read_all(&image, 2);
        let mut cells = Vec::new();
        for threads in [1, 2, 4] {
            let start = Instant::now();
            let bytes = read_all(&image, threads);
            let secs = start.elapsed().as_secs_f64();
            cells.push(format!("{:.0} MiB/s", bytes as f64 / MIB as f64 / secs));
        }
        let out = dir.join("out.raw");
        let start = Instant::now();
        assert!(Command::new("qemu-img")
            .args([
                "convert",
                "-O",
                "raw",
                image_path.to_str().unwrap(),
                out.to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success());
        let secs = start.elapsed().as_secs_f64();
        // qemu-img writes the guest's 192 MiB of data; report the same unit.
        cells.push(format!(
            "{:.0} MiB/s",
            (SIZE * 3 / 4) as f64 / MIB as f64 / secs
        ));
        println!("| {name} | {} |", cells.join(" | "));
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&image_path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
