//! Disk images for image-mode tests, made and judged by qemu-img/qemu-io
//! (the oracle): small qcow2 disks, writes through `qemu-io`, persistent
//! bitmaps, guest views, and `qemu-img compare` of what restix dumps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{self, s, Run, Sandbox};

pub const M: usize = 1024 * 1024;

/// Runs a program and asserts success.
pub fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `qemu-io -f qcow2 -c C1 -c C2 ... image`.
pub fn qemu_io(image: &Path, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(s(image));
    sh("qemu-io", &args);
}

/// `qemu-img bitmap OP image [name]` (`--add`, `--clear`, `--disable`, ...).
pub fn bitmap(image: &Path, op: &str, name: &str) {
    sh("qemu-img", &["bitmap", op, s(image), name]);
}

/// The raw guest view of `image` according to qemu-img.
pub fn guest_view(image: &Path) -> Vec<u8> {
    let out = PathBuf::from(format!("{}.view.raw", image.display()));
    sh("qemu-img", &["convert", "-O", "raw", s(image), s(&out)]);
    let bytes = std::fs::read(&out).expect("read guest view");
    std::fs::remove_file(out).expect("remove guest view");
    bytes
}

/// A `size_mib` MiB qcow2 disk at `path`: pseudo-random data at 1-4 MiB and
/// at 10-13 MiB, zero clusters at 2 MiB, the rest unallocated.
pub fn make_disk(path: &Path, seed: u64, size_mib: usize) -> PathBuf {
    assert!(size_mib >= 16);
    let raw = PathBuf::from(format!("{}.src", path.display()));
    let mut bytes = vec![0u8; size_mib * M];
    let data = harness::pseudo_random_bytes(seed, 6 * M);
    bytes[M..4 * M].copy_from_slice(&data[..3 * M]);
    bytes[10 * M + 512..13 * M + 512].copy_from_slice(&data[3 * M..]);
    std::fs::write(&raw, &bytes).expect("write source");
    sh(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(path)],
    );
    std::fs::remove_file(raw).expect("remove source");
    qemu_io(path, &["write -z 2M 128k"]);
    path.to_path_buf()
}

/// An overlay at `path` on `backing` (qcow2).
pub fn make_overlay(path: &Path, backing: &Path) -> PathBuf {
    sh(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            s(backing),
            "-F",
            "qcow2",
            s(path),
        ],
    );
    path.to_path_buf()
}

/// The snapshot ID of a `backup --json` run.
pub fn snapshot_id(run: &Run) -> String {
    summary(run)["snapshot_id"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| panic!("no snapshot id: {}", run.describe()))
}

/// The `summary` line of a `--json` run.
pub fn summary(run: &Run) -> serde_json::Value {
    run.json_lines()
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}", run.describe()))
}

/// The snapshots of `repo`, as `restic snapshots --json` lists them.
pub fn snapshots(sb: &Sandbox, repo: &Path) -> Vec<serde_json::Value> {
    match sb
        .restic(["-r", s(repo), "snapshots", "--json"])
        .ok()
        .json()
    {
        serde_json::Value::Array(list) => list,
        other => panic!("snapshots --json: {other}"),
    }
}

/// Dumps `file` of `snapshot` as raw with restix and asserts that
/// `qemu-img compare` finds it identical to `image`'s guest view.
pub fn assert_snapshot_is(sb: &Sandbox, repo: &Path, snapshot: &str, file: &str, image: &Path) {
    let out = sb.join(format!("check-{}.raw", &snapshot[..8.min(snapshot.len())]));
    sb.restix([
        "-r",
        s(repo),
        "dump",
        "--format",
        "raw",
        "--target",
        s(&out),
        snapshot,
        file,
    ])
    .ok();
    let format = if is_qcow2(image) { "qcow2" } else { "raw" };
    let compare = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", format, s(&out), s(image)])
        .output()
        .expect("spawn qemu-img compare");
    assert!(
        compare.status.success(),
        "snapshot {snapshot} differs from {}: {}",
        image.display(),
        String::from_utf8_lossy(&compare.stdout)
    );
    std::fs::remove_file(out).expect("remove dump");
}

/// Whether `path` starts with the qcow2 magic.
pub fn is_qcow2(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"QFI\xfb"
}
