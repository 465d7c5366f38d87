//! Image mode through the `restix` binary: `backup --image` (full, overlay
//! increment, block-hash cache), `restore --format`, `dump --format` and
//! `restore-chain`, checked with the real restic and qemu-img.

use std::path::{Path, PathBuf};
use std::process::Command;

use restix_tests::harness::{self, s, Sandbox};

const M: usize = 1024 * 1024;

fn have_qemu() -> bool {
    harness::require_qemu()
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_io(image: &Path, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(s(image));
    sh("qemu-io", &args);
}

fn guest_view(image: &Path) -> Vec<u8> {
    let out = PathBuf::from(format!("{}.ref.raw", image.display()));
    sh("qemu-img", &["convert", "-O", "raw", s(image), s(&out)]);
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(out).unwrap();
    bytes
}

/// A 24 MiB qcow2 disk: random data, a hole, zero clusters.
fn make_disk(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let raw = dir.join(format!("{name}.src"));
    let mut bytes = vec![0u8; 24 * M];
    let data = harness::pseudo_random_bytes(seed, 6 * M);
    bytes[M..4 * M].copy_from_slice(&data[..3 * M]);
    bytes[10 * M + 512..13 * M + 512].copy_from_slice(&data[3 * M..]);
    std::fs::write(&raw, &bytes).unwrap();
    let image = dir.join(name);
    sh(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&image)],
    );
    std::fs::remove_file(raw).unwrap();
    qemu_io(&image, &["write -z 2M 128k"]);
    image
}

/// The snapshot ID of a `backup --json` run.
fn snapshot_id(run: &harness::Run) -> String {
    run.json_lines()
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .and_then(|v| v["snapshot_id"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no summary: {}", run.describe()))
}

#[test]
fn cli_image_backup_restore_and_chain() {
    harness::require_restic!();
    if !have_qemu() || !harness::is_restix() {
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let r = s(&repo);
    sb.restix(["-r", r, "init"]).ok();

    // Full backup of disk.0.0; restic restores its guest view.
    let d0 = make_disk(sb.path(), "disk.0.0", 11);
    let full = sb
        .restix(["-r", r, "backup", "--json", "--image", s(&d0)])
        .ok();
    let full_id = snapshot_id(&full);
    let target = sb.join("restic-out");
    sb.restic(["-r", r, "restore", &full_id, "--target", s(&target)])
        .ok();
    assert!(std::fs::read(target.join("disk.0.0")).unwrap() == guest_view(&d0));

    // An OpenNebula increment: overlay disk.0.1 over disk.0.0 with a stale
    // backing name; back up the chain incrementally, named like the full one.
    let d1 = sb.join("disk.0.1");
    sh(
        "qemu-img",
        &["create", "-f", "qcow2", "-b", s(&d0), "-F", "qcow2", s(&d1)],
    );
    qemu_io(&d1, &["write -P 0x5a 5M 64k", "write -z 11M 64k"]);
    let expected = guest_view(&d1);
    sh("qemu-img", &["rebase", "-u", "-b", "", s(&d1)]);
    let inc = sb
        .restix([
            "-r",
            r,
            "backup",
            "--json",
            "--image",
            s(&d1),
            "--image-backing",
            s(&d0),
            "--image-name",
            "disk.0.0",
            "--parent",
            &full_id,
        ])
        .ok();
    let inc_id = snapshot_id(&inc);
    // The summary line carries what image mode read: only the parent chunks
    // around the two changed clusters, not the 24 MiB disk.
    let summary = inc
        .json_lines()
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let image = &summary["image"];
    assert_eq!(image["incremental"], true, "{summary}");
    assert_eq!(image["changed_bytes"], 128 * 1024, "{summary}");
    let read = image["bytes_read"].as_u64().unwrap();
    let rechunked = image["bytes_rechunked"].as_u64().unwrap();
    assert!(read > 0 && read < 2 * rechunked + (1 << 20), "{summary}");
    assert_eq!(
        image["bytes_reused"].as_u64().unwrap() + rechunked,
        image["virtual_size"].as_u64().unwrap(),
        "{summary}"
    );
    let out = sb.join("restored");
    sb.restix([
        "-r",
        r,
        "restore",
        &inc_id,
        "--target",
        s(&out),
        "--format",
        "qcow2",
    ])
    .ok();
    let restored = out.join("disk.0.0");
    sh("qemu-img", &["check", s(&restored)]);
    let raw = sb.join("dumped.raw");
    sb.restix([
        "-r",
        r,
        "dump",
        "--format",
        "raw",
        "--target",
        s(&raw),
        &inc_id,
        "/disk.0.0",
    ])
    .ok();
    assert!(std::fs::read(&raw).unwrap() == expected);

    // The increment file itself as a plain file, then the chain flattened.
    let layer = sb
        .restix([
            "-r",
            r,
            "backup",
            "--json",
            "--image",
            s(&d1),
            "--image-format",
            "raw",
        ])
        .ok();
    let layer_id = snapshot_id(&layer);
    let flat = sb.join("flat.qcow2");
    sb.restix([
        "-r",
        r,
        "restore-chain",
        "--target",
        s(&flat),
        &full_id,
        &layer_id,
    ])
    .ok();
    sh("qemu-img", &["check", s(&flat)]);
    assert!(guest_view(&flat) == expected);

    // Block-hash cache: a raw image backed up twice; the second run finds its
    // parent in the cache and reads only what changed.
    let disk_raw = sb.join("vm.raw");
    std::fs::write(&disk_raw, guest_view(&d0)).unwrap();
    let first = sb
        .restix(["-r", r, "backup", "--json", "--image", s(&disk_raw)])
        .ok();
    let first_id = snapshot_id(&first);
    let mut bytes = std::fs::read(&disk_raw).unwrap();
    bytes[7 * M..7 * M + 100].fill(0x77);
    std::fs::write(&disk_raw, &bytes).unwrap();
    let second = sb.restix(["-r", r, "backup", "--image", s(&disk_raw)]).ok();
    assert!(
        second
            .out()
            .contains(&format!("using parent snapshot {}", &first_id[..8])),
        "{}",
        second.describe()
    );
    let back = sb.join("back");
    sb.restic(["-r", r, "restore", "latest", "--target", s(&back)])
        .ok();
    assert!(std::fs::read(back.join("vm.raw")).unwrap() == bytes);
    sb.restic(["-r", r, "check", "--read-data"]).ok();
}
