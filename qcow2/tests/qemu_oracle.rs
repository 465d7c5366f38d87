//! The reader and writer checked against qemu-img/qemu-io as the oracle
//! (spec: qcow2 §3). Each test builds small images (16 MiB guests) in its own
//! temporary directory. Without qemu-img the tests print why and pass.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use restix_qcow2::{
    DiskImage, Error, Extent, ExtentKind, ImageFormat, Qcow2Image, Qcow2Writer, RawImage,
};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
const SIZE: u64 = 16 * MIB;

// ---------------------------------------------------------------- harness

fn qemu_available() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if ok("qemu-img") && ok("qemu-io") {
        true
    } else {
        restix_testkit::skip("qemu-img/qemu-io", "apt-get install qemu-utils");
        false
    }
}

macro_rules! require_qemu {
    () => {
        if !qemu_available() {
            return;
        }
    };
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "restix-qcow2-{}-{}-{}",
            name,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn qemu_img(dir: &TempDir, args: &[&str]) -> std::process::Output {
    run("qemu-img", args, &dir.0)
}

fn qemu_io(dir: &TempDir, file: &str, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(file);
    run("qemu-io", &args, &dir.0);
}

/// Deterministic incompressible bytes.
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

/// A sparse 16 MiB source: random, compressible text, holes, a sub-cluster
/// piece, a pattern, and data up to the very end.
fn make_source(dir: &TempDir) -> PathBuf {
    let path = dir.path("src.raw");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(SIZE).unwrap();
    file.write_all_at(&noise(1, MIB as usize), 0).unwrap();
    let text: Vec<u8> = b"restix qcow2 test text, compressible. "
        .iter()
        .copied()
        .cycle()
        .take(MIB as usize)
        .collect();
    file.write_all_at(&text, MIB).unwrap();
    file.write_all_at(&noise(2, 8 * KIB as usize), 3 * MIB + 4 * KIB)
        .unwrap();
    file.write_all_at(&noise(3, 512 * KIB as usize), 5 * MIB)
        .unwrap();
    file.write_all_at(&vec![0x55; 64 * KIB as usize], 8 * MIB)
        .unwrap();
    file.write_all_at(&noise(4, MIB as usize), 9 * MIB + 512 * KIB)
        .unwrap();
    file.write_all_at(&noise(5, 512 * KIB as usize), SIZE - 512 * KIB)
        .unwrap();
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapEntry {
    start: u64,
    length: u64,
    present: bool,
    zero: bool,
    data: bool,
}

fn qemu_map(dir: &TempDir, spec: &str) -> Vec<MapEntry> {
    let out = qemu_img(dir, &["map", "--output=json", spec]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| MapEntry {
            start: e["start"].as_u64().unwrap(),
            length: e["length"].as_u64().unwrap(),
            present: e["present"].as_bool().unwrap(),
            zero: e["zero"].as_bool().unwrap(),
            data: e["data"].as_bool().unwrap(),
        })
        .collect()
}

/// The guest contents according to `qemu-img convert -O raw`.
fn qemu_raw(dir: &TempDir, image: &str) -> Vec<u8> {
    let out = dir.path(&format!("{image}.ref.raw"));
    qemu_img(dir, &["convert", "-O", "raw", image, out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    bytes
}

/// Our map in the oracle's vocabulary: (start, end, kind) merged.
fn kinds_from_qemu(map: &[MapEntry], three_way: bool) -> Vec<(u64, u64, ExtentKind)> {
    let mut out: Vec<(u64, u64, ExtentKind)> = Vec::new();
    for e in map {
        let kind = if e.data {
            ExtentKind::Data
        } else if !three_way || !e.present {
            ExtentKind::Unallocated
        } else {
            ExtentKind::Zero
        };
        push_merged(&mut out, e.start, e.start + e.length, kind);
    }
    out
}

fn kinds_from_ours(extents: &[Extent], three_way: bool) -> Vec<(u64, u64, ExtentKind)> {
    let mut out = Vec::new();
    for e in extents {
        let kind = match e.kind {
            ExtentKind::Zero if !three_way => ExtentKind::Unallocated,
            k => k,
        };
        push_merged(&mut out, e.offset, e.end(), kind);
    }
    out
}

fn push_merged(out: &mut Vec<(u64, u64, ExtentKind)>, start: u64, end: u64, kind: ExtentKind) {
    if let Some(last) = out.last_mut() {
        if last.1 == start && last.2 == kind {
            last.1 = end;
            return;
        }
    }
    out.push((start, end, kind));
}

/// Reads the guest view the way the engine does: extents, then `read_at` over
/// the Data extents only (in odd-sized pieces), zeros elsewhere.
fn guest_view(image: &dyn DiskImage) -> Vec<u8> {
    let size = image.virtual_size();
    let extents = image.extents(0, size).unwrap();
    let mut pos = 0;
    for e in &extents {
        assert_eq!(e.offset, pos, "extents must cover the range in order");
        assert!(e.length > 0);
        pos = e.end();
    }
    assert_eq!(pos, size);
    for pair in extents.windows(2) {
        assert_ne!(pair[0].kind, pair[1].kind, "extents must be merged");
    }
    let mut view = vec![0u8; size as usize];
    for e in extents.iter().filter(|e| e.kind == ExtentKind::Data) {
        let mut at = e.offset;
        while at < e.end() {
            let n = (e.end() - at).min(300 * KIB + 7);
            image
                .read_at(at, &mut view[at as usize..(at + n) as usize])
                .unwrap();
            at += n;
        }
    }
    view
}

/// The full check: contents equal `qemu-img convert -O raw`, our extents agree
/// with `qemu-img map` (data vs not; with `three_way` also zero vs unallocated),
/// and one big `read_at` equals the reference too.
fn assert_matches_qemu(dir: &TempDir, name: &str, image: &dyn DiskImage, three_way: bool) {
    let reference = qemu_raw(dir, name);
    assert_eq!(image.virtual_size(), reference.len() as u64);
    let view = guest_view(image);
    assert!(
        view == reference,
        "{name}: guest view differs from qemu-img convert"
    );
    let mut whole = vec![0xEEu8; reference.len()];
    image.read_at(0, &mut whole).unwrap();
    assert!(whole == reference, "{name}: read_at(0, all) differs");

    let ours = kinds_from_ours(&image.extents(0, image.virtual_size()).unwrap(), three_way);
    let theirs = kinds_from_qemu(&qemu_map(dir, name), three_way);
    assert_eq!(ours, theirs, "{name}: extents differ from qemu-img map");
}

fn convert(dir: &TempDir, src: &Path, out: &str, extra: &[&str]) {
    let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    args.push(out);
    qemu_img(dir, &args);
}

fn header_u64(path: &Path, offset: u64) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf, offset).unwrap();
    u64::from_be_bytes(buf)
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

// ---------------------------------------------------------------- formats

fn check_converted(name: &str, extra: &[&str]) -> (TempDir, Qcow2Image) {
    let dir = TempDir::new(name);
    let src = make_source(&dir);
    let file = format!("{name}.qcow2");
    convert(&dir, &src, &file, extra);
    let image = Qcow2Image::open(dir.path(&file)).unwrap();
    assert_matches_qemu(&dir, &file, &image, true);
    (dir, image)
}

#[test]
fn v3_default() {
    require_qemu!();
    let (_dir, image) = check_converted("v3", &[]);
    assert_eq!(image.header().version, 3);
    assert_eq!(image.header().cluster_size(), 65536);
}

#[test]
fn v2_compat_0_10() {
    require_qemu!();
    let (_dir, image) = check_converted("v2", &["-o", "compat=0.10"]);
    assert_eq!(image.header().version, 2);
}

#[test]
fn compressed_deflate() {
    require_qemu!();
    let (_dir, image) = check_converted("zlib", &["-c"]);
    assert_eq!(
        image.header().compression_type,
        restix_qcow2::CompressionType::Deflate
    );
}

#[test]
fn compressed_zstd() {
    require_qemu!();
    let (_dir, image) = check_converted("zstd", &["-c", "-o", "compression_type=zstd"]);
    assert_eq!(
        image.header().compression_type,
        restix_qcow2::CompressionType::Zstd
    );
}

#[test]
fn compressed_zstd_4k_clusters() {
    require_qemu!();
    check_converted(
        "zstd4k",
        &["-c", "-o", "compression_type=zstd,cluster_size=4k"],
    );
}

#[test]
fn extended_l2() {
    require_qemu!();
    let (_dir, image) = check_converted("extl2", &["-o", "extended_l2=on,cluster_size=128k"]);
    assert!(image.header().extended_l2());
}

#[test]
fn small_clusters_refcount_bits_1() {
    require_qemu!();
    check_converted("c4k", &["-o", "cluster_size=4k,refcount_bits=1"]);
}

#[test]
fn large_clusters() {
    require_qemu!();
    check_converted("c2m", &["-o", "cluster_size=2M"]);
}

#[test]
fn preallocation_metadata() {
    require_qemu!();
    check_converted("prealloc", &["-o", "preallocation=metadata"]);
}

#[test]
fn zero_clusters_and_discard() {
    require_qemu!();
    let dir = TempDir::new("zero");
    let src = make_source(&dir);
    convert(&dir, &src, "zero.qcow2", &[]);
    qemu_io(
        &dir,
        "zero.qcow2",
        &[
            "write -z 0 64k",
            "write -z -u 64k 64k",
            "discard 5M 128k",
            "write -z 9M 1M",
        ],
    );
    let image = Qcow2Image::open(dir.path("zero.qcow2")).unwrap();
    assert_matches_qemu(&dir, "zero.qcow2", &image, true);
    let extents = image.extents(0, 128 * KIB).unwrap();
    assert_eq!(extents.len(), 1);
    assert_eq!(extents[0].kind, ExtentKind::Zero);
}

#[test]
fn internal_snapshot_is_ignored() {
    require_qemu!();
    let dir = TempDir::new("snap");
    let src = make_source(&dir);
    convert(&dir, &src, "snap.qcow2", &[]);
    qemu_img(&dir, &["snapshot", "-c", "s1", "snap.qcow2"]);
    qemu_io(
        &dir,
        "snap.qcow2",
        &["write -P 0x77 0 128k", "write -z 5M 64k"],
    );
    let image = Qcow2Image::open(dir.path("snap.qcow2")).unwrap();
    assert_eq!(image.snapshot_count(), 1);
    assert_matches_qemu(&dir, "snap.qcow2", &image, true);
}

#[test]
fn dirty_bit_image_is_readable() {
    require_qemu!();
    let dir = TempDir::new("lazy");
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "lazy_refcounts=on",
            "lazy.qcow2",
            "16M",
        ],
    );
    // abort leaves the dirty bit set (spec: qcow2 §3).
    let _ = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x42 0 64k",
            "-c",
            "abort",
            "lazy.qcow2",
        ])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let image = Qcow2Image::open(dir.path("lazy.qcow2")).unwrap();
    assert!(image.is_dirty());
    let mut buf = vec![0u8; 64 * KIB as usize];
    image.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x42));
    assert_matches_qemu(&dir, "lazy.qcow2", &image, true);
}

// ---------------------------------------------------------------- chains

/// base (v3) <- inc1 (data, zero, discard) <- inc2 (data, zero without alloc).
fn build_chain(dir: &TempDir) {
    let src = make_source(dir);
    convert(dir, &src, "base.qcow2", &[]);
    qemu_img(
        dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "inc1.qcow2",
        ],
    );
    qemu_io(
        dir,
        "inc1.qcow2",
        &[
            "write -P 0xaa 0 64k",
            "write -P 0xbb 5M 4k",
            "write -z 10M 128k",
            "discard 1088k 64k",
        ],
    );
    qemu_img(
        dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "inc1.qcow2",
            "-F",
            "qcow2",
            "inc2.qcow2",
        ],
    );
    qemu_io(
        dir,
        "inc2.qcow2",
        &["write -P 0xcc 32k 64k", "write -z -u 12M 1M"],
    );
}

#[test]
fn backing_chain_of_three_by_stored_names() {
    require_qemu!();
    let dir = TempDir::new("chain");
    build_chain(&dir);
    // Open from another working directory: relative names resolve against the
    // overlay's folder.
    let image = Qcow2Image::open(dir.path("inc2.qcow2")).unwrap();
    assert_eq!(image.layer_paths().len(), 3);
    assert_eq!(image.layer_paths()[0], dir.path("base.qcow2"));
    assert_matches_qemu(&dir, "inc2.qcow2", &image, true);
    let middle = Qcow2Image::open(dir.path("inc1.qcow2")).unwrap();
    assert_matches_qemu(&dir, "inc1.qcow2", &middle, true);
}

#[test]
fn explicit_chain_ignores_stored_names() {
    require_qemu!();
    let dir = TempDir::new("explicit");
    build_chain(&dir);
    let reference = qemu_raw(&dir, "inc2.qcow2");
    let reference_map = qemu_map(&dir, "inc2.qcow2");
    // Like OpenNebula's increments: the stored names are an NBD socket and nothing.
    qemu_img(
        &dir,
        &[
            "rebase",
            "-u",
            "-F",
            "raw",
            "-b",
            "nbd+unix:///?socket=/nonexistent",
            "inc2.qcow2",
        ],
    );
    qemu_img(&dir, &["rebase", "-u", "-b", "", "inc1.qcow2"]);
    match Qcow2Image::open(dir.path("inc2.qcow2")) {
        Err(Error::UnsupportedBacking { .. }) => {}
        other => panic!("expected UnsupportedBacking, got {other:?}"),
    }
    let image = Qcow2Image::open_chain(&[
        dir.path("base.qcow2"),
        dir.path("inc1.qcow2"),
        dir.path("inc2.qcow2"),
    ])
    .unwrap();
    assert!(guest_view(&image) == reference);
    let ours = kinds_from_ours(&image.extents(0, SIZE).unwrap(), true);
    assert_eq!(ours, kinds_from_qemu(&reference_map, true));
}

#[test]
fn allocated_in_layer_matches_qemu_without_backing() {
    require_qemu!();
    let dir = TempDir::new("inlayer");
    build_chain(&dir);
    for name in ["inc1.qcow2", "inc2.qcow2"] {
        let image = Qcow2Image::open(dir.path(name)).unwrap();
        let ours = kinds_from_ours(&image.allocated_in_layer().unwrap(), true);
        let spec = format!(
            r#"json:{{"driver":"qcow2","backing":null,"file":{{"driver":"file","filename":"{}"}}}}"#,
            dir.path(name).display()
        );
        let theirs = kinds_from_qemu(&qemu_map(&dir, &spec), true);
        assert_eq!(ours, theirs, "{name}");
    }
    // inc1's zero and discard ranges are changes, reported as Zero.
    let inc1 = Qcow2Image::open(dir.path("inc1.qcow2")).unwrap();
    let layer = inc1.allocated_in_layer().unwrap();
    let at = |off: u64| {
        layer
            .iter()
            .find(|e| e.offset <= off && off < e.end())
            .unwrap()
            .kind
    };
    assert_eq!(at(10 * MIB), ExtentKind::Zero);
    assert_eq!(at(1088 * KIB), ExtentKind::Zero);
    assert_eq!(at(5 * MIB), ExtentKind::Data);
    assert_eq!(at(7 * MIB), ExtentKind::Unallocated);
}

#[test]
fn v2_overlay_on_compressed_base() {
    require_qemu!();
    let dir = TempDir::new("v2chain");
    let src = make_source(&dir);
    convert(&dir, &src, "base.qcow2", &["-c"]);
    // A v2 overlay keeps its backing-format extension at offset 72.
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "inc.qcow2",
        ],
    );
    qemu_io(
        &dir,
        "inc.qcow2",
        &["write -P 0x5a 100k 10k", "write -P 0x5b 9M 1M"],
    );
    let image = Qcow2Image::open(dir.path("inc.qcow2")).unwrap();
    assert_eq!(image.header().version, 2);
    assert_eq!(image.header().backing_format.as_deref(), Some("qcow2"));
    assert_matches_qemu(&dir, "inc.qcow2", &image, true);
}

#[test]
fn overlay_larger_than_backing() {
    require_qemu!();
    let dir = TempDir::new("grow");
    let src = make_source(&dir);
    convert(&dir, &src, "base.qcow2", &[]);
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "grow.qcow2",
            "20M",
        ],
    );
    qemu_io(
        &dir,
        "grow.qcow2",
        &["write -P 0x11 17M 4k", "write -P 0x12 16380k 8k"],
    );
    let image = Qcow2Image::open(dir.path("grow.qcow2")).unwrap();
    assert_eq!(image.virtual_size(), 20 * MIB);
    assert_matches_qemu(&dir, "grow.qcow2", &image, true);
}

#[test]
fn extended_l2_overlay_subclusters() {
    require_qemu!();
    let dir = TempDir::new("extl2inc");
    let src = make_source(&dir);
    convert(&dir, &src, "base.qcow2", &[]);
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "inc.qcow2",
        ],
    );
    qemu_io(
        &dir,
        "inc.qcow2",
        &[
            "write -P 0xa1 4k 4k",
            "write -z 64k 16k",
            "write -P 0xa2 1M 2k",
            "write -z 5M 6k",
            "discard 9728k 32k",
        ],
    );
    let image = Qcow2Image::open(dir.path("inc.qcow2")).unwrap();
    assert_matches_qemu(&dir, "inc.qcow2", &image, true);
}

#[test]
fn raw_backing_file() {
    require_qemu!();
    let dir = TempDir::new("rawback");
    make_source(&dir);
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "src.raw",
            "-F",
            "raw",
            "top.qcow2",
        ],
    );
    qemu_io(
        &dir,
        "top.qcow2",
        &["write -P 0x31 2M 64k", "write -z 0 4k"],
    );
    let image = Qcow2Image::open(dir.path("top.qcow2")).unwrap();
    // Raw holes are Unallocated for us and "present, zero" for QEMU: compare
    // data against non-data only.
    assert_matches_qemu(&dir, "top.qcow2", &image, false);
    let explicit = Qcow2Image::open_chain_with_formats(&[
        (dir.path("src.raw"), ImageFormat::Raw),
        (dir.path("top.qcow2"), ImageFormat::Qcow2),
    ])
    .unwrap();
    assert!(guest_view(&explicit) == guest_view(&image));
}

#[test]
fn raw_image_matches_source() {
    require_qemu!();
    let dir = TempDir::new("raw");
    let src = make_source(&dir);
    let image = RawImage::open(&src).unwrap();
    assert_matches_qemu(&dir, "src.raw", &image, false);
    // Probing opens raw as raw and qcow2 as qcow2.
    let probed = restix_qcow2::open_disk_image(&src).unwrap();
    assert!(guest_view(probed.as_ref()) == guest_view(&image));
    convert(&dir, &src, "probe.qcow2", &["-c"]);
    let probed = restix_qcow2::open_disk_image(dir.path("probe.qcow2")).unwrap();
    assert!(guest_view(probed.as_ref()) == guest_view(&image));
}

#[test]
fn concurrent_reads() {
    require_qemu!();
    let dir = TempDir::new("threads");
    build_chain(&dir);
    let reference = qemu_raw(&dir, "inc2.qcow2");
    let image = Qcow2Image::open(dir.path("inc2.qcow2")).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (image, reference) = (&image, &reference);
            scope.spawn(move || {
                let chunk = 96 * KIB + t * 4096 + 1;
                let mut buf = vec![0u8; chunk as usize];
                let mut at = t * 1000;
                while at + chunk <= SIZE {
                    image.read_at(at, &mut buf).unwrap();
                    assert!(buf[..] == reference[at as usize..(at + chunk) as usize]);
                    at += chunk * 3;
                }
            });
        }
    });
}

// ---------------------------------------------------------------- bitmaps

#[test]
fn dirty_bitmap_ranges() {
    require_qemu!();
    let dir = TempDir::new("bitmap");
    let src = make_source(&dir);
    convert(&dir, &src, "bm.qcow2", &[]);
    qemu_img(&dir, &["bitmap", "--add", "-g", "64K", "bm.qcow2", "chk1"]);
    qemu_io(
        &dir,
        "bm.qcow2",
        &[
            "write -P 0x11 1M 4k",
            "write -P 0x12 6M 200k",
            "write -z 12M 64k",
        ],
    );
    qemu_img(&dir, &["bitmap", "--add", "-g", "128K", "bm.qcow2", "chk2"]);
    qemu_io(&dir, "bm.qcow2", &["write -P 0x13 15M 1k"]);
    qemu_img(&dir, &["bitmap", "--disable", "bm.qcow2", "chk1"]);
    qemu_io(&dir, "bm.qcow2", &["write -P 0x14 14M 1k"]);

    let image = Qcow2Image::open(dir.path("bm.qcow2")).unwrap();
    let list = image.bitmaps().unwrap();
    let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["chk1", "chk2"]);
    assert_eq!(list[0].granularity, 64 * KIB);
    assert!(!list[0].enabled && list[1].enabled);
    assert!(list.iter().all(|b| b.consistent && !b.in_use));

    // chk1 saw the first three writes (the 200 KiB write dirties 4 granules) and
    // the write before it was disabled.
    assert_eq!(
        image.dirty_ranges("chk1").unwrap(),
        vec![
            MIB..MIB + 64 * KIB,
            6 * MIB..6 * MIB + 256 * KIB,
            12 * MIB..12 * MIB + 64 * KIB,
            15 * MIB..15 * MIB + 64 * KIB,
        ]
    );
    assert_eq!(
        image.dirty_ranges("chk2").unwrap(),
        vec![
            14 * MIB..14 * MIB + 128 * KIB,
            15 * MIB..15 * MIB + 128 * KIB
        ]
    );
    assert!(matches!(
        image.dirty_ranges("nope"),
        Err(Error::BitmapNotFound { .. })
    ));

    // The oracle: QEMU's own view of the bitmaps, exported by qemu-nbd.
    for name in ["chk1", "chk2"] {
        if let Some(theirs) = qemu_nbd_dirty_ranges(&dir, "bm.qcow2", name) {
            assert_eq!(image.dirty_ranges(name).unwrap(), theirs, "{name}");
        }
    }

    // After a crash the bitmaps stay in use: refuse them.
    let _ = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x15 2M 4k",
            "-c",
            "abort",
            "bm.qcow2",
        ])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let image = Qcow2Image::open(dir.path("bm.qcow2")).unwrap();
    assert!(image.bitmaps().unwrap().iter().all(|b| b.in_use));
    assert!(matches!(
        image.dirty_ranges("chk1"),
        Err(Error::BitmapInconsistent { .. })
    ));
}

/// Dirty ranges of a bitmap as QEMU sees them: `qemu-nbd -B` exports it as a
/// meta-context that `qemu-img map` reports as `"data": false` (spec: qcow2
/// §1.11). `None` when qemu-nbd is not installed.
fn qemu_nbd_dirty_ranges(
    dir: &TempDir,
    image: &str,
    bitmap: &str,
) -> Option<Vec<std::ops::Range<u64>>> {
    let socket = dir.path(&format!("nbd-{bitmap}.sock"));
    // Without -t qemu-nbd serves one client and exits.
    let mut server = match Command::new("qemu-nbd")
        .args([
            "-r",
            "-f",
            "qcow2",
            "-k",
            socket.to_str().unwrap(),
            "-B",
            bitmap,
            image,
        ])
        .current_dir(&dir.0)
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            restix_testkit::skip("qemu-nbd", "apt-get install qemu-utils");
            return None;
        }
    };
    // Wait for the socket (a readiness wait, not a timing assertion).
    for _ in 0..600 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let spec = format!(
        "driver=nbd,server.type=unix,server.path={},x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}",
        socket.display()
    );
    let out = Command::new("qemu-img")
        .args(["map", "--output=json", "--image-opts", &spec])
        .output()
        .unwrap();
    if server.try_wait().unwrap().is_none() {
        let _ = server.kill();
    }
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    for e in json.as_array().unwrap() {
        if e["data"].as_bool().unwrap() {
            continue;
        }
        let start = e["start"].as_u64().unwrap();
        let end = start + e["length"].as_u64().unwrap();
        match ranges.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => ranges.push(start..end),
        }
    }
    Some(ranges)
}

// ---------------------------------------------------------------- refusals

#[test]
fn refuses_encrypted() {
    require_qemu!();
    let dir = TempDir::new("enc");
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=pass123",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0",
            "enc.qcow2",
            "16M",
        ],
    );
    match Qcow2Image::open(dir.path("enc.qcow2")) {
        Err(Error::Encrypted { method, .. }) => assert_eq!(method, "LUKS"),
        other => panic!("expected Encrypted, got {other:?}"),
    }
}

#[test]
fn refuses_external_data_file() {
    require_qemu!();
    let dir = TempDir::new("ext");
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "data_file=ext.data,data_file_raw=on",
            "ext.qcow2",
            "16M",
        ],
    );
    assert!(matches!(
        Qcow2Image::open(dir.path("ext.qcow2")),
        Err(Error::ExternalDataFile { .. })
    ));
}

#[test]
fn refuses_corrupt_and_damaged_images() {
    require_qemu!();
    let dir = TempDir::new("corrupt");
    let src = make_source(&dir);
    convert(&dir, &src, "good.qcow2", &[]);
    let good = dir.path("good.qcow2");
    let copy = |name: &str| {
        let path = dir.path(name);
        std::fs::copy(&good, &path).unwrap();
        path
    };

    // Corrupt bit (incompatible bit 1).
    let p = copy("corrupt-bit.qcow2");
    patch(&p, 72, &2u64.to_be_bytes());
    assert!(matches!(
        Qcow2Image::open(&p),
        Err(Error::MarkedCorrupt { .. })
    ));

    // Unknown incompatible bit: named in the error.
    let p = copy("unknown-bit.qcow2");
    patch(&p, 72, &(1u64 << 40).to_be_bytes());
    match Qcow2Image::open(&p) {
        Err(Error::UnknownIncompatibleFeatures { bits, .. }) => assert_eq!(bits, 1 << 40),
        other => panic!("expected UnknownIncompatibleFeatures, got {other:?}"),
    }

    // Truncated file: the tables point past the end.
    let p = copy("truncated.qcow2");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let result = Qcow2Image::open(&p)
        .and_then(|image| image.extents(0, SIZE).map(|_| image))
        .and_then(|image| {
            let mut buf = vec![0u8; SIZE as usize];
            image.read_at(0, &mut buf)
        });
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");

    // Misaligned L1 table and L1 inside the header.
    let l1_offset = header_u64(&good, 40);
    let p = copy("l1-misaligned.qcow2");
    patch(&p, 40, &(l1_offset + 512).to_be_bytes());
    assert!(matches!(Qcow2Image::open(&p), Err(Error::Corrupt { .. })));
    let p = copy("l1-header.qcow2");
    patch(&p, 40, &0u64.to_be_bytes());
    assert!(matches!(Qcow2Image::open(&p), Err(Error::Corrupt { .. })));

    // An absurd L1 size.
    let p = copy("l1-huge.qcow2");
    patch(&p, 36, &0x7fff_ffffu32.to_be_bytes());
    assert!(matches!(Qcow2Image::open(&p), Err(Error::Corrupt { .. })));

    // Reserved bits in an L1 entry.
    let p = copy("l1-reserved.qcow2");
    let entry = header_u64(&p, l1_offset);
    patch(&p, l1_offset, &(entry | 0x100).to_be_bytes());
    let image = Qcow2Image::open(&p).unwrap();
    assert!(matches!(image.extents(0, SIZE), Err(Error::Corrupt { .. })));

    // A data cluster that is not cluster aligned.
    let p = copy("l2-misaligned.qcow2");
    let l2_offset = header_u64(&p, l1_offset) & 0x00ff_ffff_ffff_fe00;
    let entry = header_u64(&p, l2_offset);
    assert_ne!(
        entry & 0x00ff_ffff_ffff_fe00,
        0,
        "guest cluster 0 holds data"
    );
    patch(&p, l2_offset, &(entry + 512).to_be_bytes());
    let image = Qcow2Image::open(&p).unwrap();
    assert!(matches!(image.extents(0, SIZE), Err(Error::Corrupt { .. })));
    let mut buf = vec![0u8; 4096];
    assert!(matches!(
        image.read_at(0, &mut buf),
        Err(Error::Corrupt { .. })
    ));

    // A backing chain that loops back to itself.
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "good.qcow2",
            "-F",
            "qcow2",
            "loop-a.qcow2",
        ],
    );
    qemu_img(
        &dir,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "loop-a.qcow2",
            "-F",
            "qcow2",
            "loop-b.qcow2",
        ],
    );
    qemu_img(
        &dir,
        &[
            "rebase",
            "-u",
            "-F",
            "qcow2",
            "-b",
            "loop-b.qcow2",
            "loop-a.qcow2",
        ],
    );
    assert!(matches!(
        Qcow2Image::open(dir.path("loop-b.qcow2")),
        Err(Error::InvalidChain { .. })
    ));

    // Not a qcow2 file at all.
    assert!(matches!(
        Qcow2Image::open(&src),
        Err(Error::NotQcow2 { .. })
    ));

    // Reads past the end are refused.
    let image = Qcow2Image::open(&good).unwrap();
    let mut buf = [0u8; 2];
    assert!(matches!(
        image.read_at(SIZE - 1, &mut buf),
        Err(Error::OutOfRange { .. })
    ));
}

// ---------------------------------------------------------------- writer

fn copy_with_writer(image: &dyn DiskImage, out: &Path, cluster_size: u64) {
    let mut writer = Qcow2Writer::create(out, image.virtual_size(), cluster_size).unwrap();
    for e in image.extents(0, image.virtual_size()).unwrap() {
        if e.kind != ExtentKind::Data {
            continue;
        }
        let mut at = e.offset;
        while at < e.end() {
            let n = (e.end() - at).min(100 * KIB + 3);
            let mut buf = vec![0u8; n as usize];
            image.read_at(at, &mut buf).unwrap();
            writer.write_at(at, &buf).unwrap();
            at += n;
        }
    }
    writer.finish().unwrap();
}

#[test]
fn writer_output_is_clean_and_equal() {
    require_qemu!();
    let dir = TempDir::new("writer");
    let src = make_source(&dir);
    let raw = RawImage::open(&src).unwrap();
    for cluster_size in [65536u64, 4096, 2 << 20] {
        let name = format!("out-{cluster_size}.qcow2");
        let out = dir.path(&name);
        copy_with_writer(&raw, &out, cluster_size);
        qemu_img(&dir, &["check", &name]);
        qemu_img(
            &dir,
            &["compare", "-f", "raw", "-F", "qcow2", "src.raw", &name],
        );
        // And our own reader agrees.
        let back = Qcow2Image::open(&out).unwrap();
        assert_matches_qemu(&dir, &name, &back, true);
    }

    // Restoring a chain into one image.
    build_chain(&dir);
    let chain = Qcow2Image::open(dir.path("inc2.qcow2")).unwrap();
    copy_with_writer(&chain, &dir.path("flat.qcow2"), 65536);
    qemu_img(&dir, &["check", "flat.qcow2"]);
    qemu_img(&dir, &["compare", "inc2.qcow2", "flat.qcow2"]);
}

#[test]
fn writer_edge_cases() {
    require_qemu!();
    let dir = TempDir::new("writer-edge");
    // Odd virtual size, unaligned writes, an all-zero cluster, a gap.
    let size = 3 * MIB + 12345;
    let out = dir.path("edge.qcow2");
    let mut writer = Qcow2Writer::create(&out, size, 65536).unwrap();
    writer.write_at(100, &noise(7, 70_000)).unwrap();
    writer.write_at(70_100, &vec![0u8; 65536]).unwrap();
    writer.write_at(2 * MIB + 1, &noise(8, 5000)).unwrap();
    writer.write_at(size - 10, &[9u8; 10]).unwrap();
    assert!(matches!(
        writer.write_at(0, &[1]),
        Err(Error::WriteNotIncreasing { .. })
    ));
    writer.finish().unwrap();
    qemu_img(&dir, &["check", "edge.qcow2"]);
    let image = Qcow2Image::open(&out).unwrap();
    // The size is rounded up to whole sectors, like qemu-img create does.
    assert_eq!(image.virtual_size(), size.next_multiple_of(512));
    let mut expected = vec![0u8; size.next_multiple_of(512) as usize];
    expected[100..70_100].copy_from_slice(&noise(7, 70_000));
    expected[(2 * MIB + 1) as usize..(2 * MIB + 5001) as usize].copy_from_slice(&noise(8, 5000));
    expected[(size - 10) as usize..size as usize].copy_from_slice(&[9u8; 10]);
    assert!(qemu_raw(&dir, "edge.qcow2") == expected);
    assert!(guest_view(&image) == expected);

    // An empty image.
    Qcow2Writer::create(dir.path("empty.qcow2"), 0, 65536)
        .unwrap()
        .finish()
        .unwrap();
    qemu_img(&dir, &["check", "empty.qcow2"]);
    assert!(matches!(
        Qcow2Writer::create(dir.path("bad.qcow2"), 1, 1000),
        Err(Error::InvalidWriterParameters { .. })
    ));
}

// ---------------------------------------------------------------- robustness

/// Uses every read path of an image that may be damaged; errors are fine,
/// panics and unbounded allocations are not.
fn exercise(path: &Path) {
    let Ok(image) = Qcow2Image::open(path) else {
        return;
    };
    let size = image.virtual_size();
    let _ = image.extents(0, size);
    let mut buf = vec![0u8; size.min(4 * MIB) as usize];
    let _ = image.read_at(0, &mut buf);
    let _ = image.allocated_in_layer();
    if let Ok(bitmaps) = image.bitmaps() {
        for b in bitmaps {
            let _ = image.dirty_ranges(&b.name);
        }
    }
}

#[test]
fn damaged_images_never_panic() {
    require_qemu!();
    let dir = TempDir::new("fuzz");
    let src = dir.path("small.raw");
    let mut content = noise(11, 384 * KIB as usize);
    content.extend(b"compressible ".iter().cycle().take(384 * KIB as usize));
    content.extend(vec![0u8; 256 * KIB as usize]);
    std::fs::write(&src, &content).unwrap();
    let images: [(&str, &[&str]); 3] = [
        (
            "zstd4k.qcow2",
            &["-c", "-o", "compression_type=zstd,cluster_size=4k"],
        ),
        (
            "v2zlib.qcow2",
            &["-c", "-o", "compat=0.10,cluster_size=512"],
        ),
        ("extl2.qcow2", &["-o", "extended_l2=on,cluster_size=16k"]),
    ];
    for (name, extra) in images {
        convert(&dir, &src, name, extra);
    }
    qemu_img(&dir, &["bitmap", "--add", "extl2.qcow2", "b1"]);
    qemu_io(
        &dir,
        "extl2.qcow2",
        &["write -P 1 4k 4k", "write -z 64k 16k"],
    );

    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let target = dir.path("damaged.qcow2");
    for (name, _) in images {
        let original = std::fs::read(dir.path(name)).unwrap();
        exercise(&dir.path(name));
        for _ in 0..150 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                // Half the hits land in the header cluster, the rest anywhere.
                let limit = if next() % 2 == 0 { 512 } else { bytes.len() };
                let at = (next() % limit as u64) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
            std::fs::write(&target, &bytes).unwrap();
            exercise(&target);
        }
    }
}
