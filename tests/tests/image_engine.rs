//! Image mode through the engine API, checked with the real qemu-img/qemu-io
//! and the real restic: restic restores the guest view, changed-block
//! incrementals store exactly what a full backup stores, qcow2 restores pass
//! `qemu-img check`, and an OpenNebula chain flattens like `qemu-img rebase -u`
//! plus `convert`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use restix_engine::backend::local::LocalBackend;
use restix_engine::image::{
    self, ChainLayer, ChangedBlocks, ImageBackupOptions, Qcow2Image, RawImage, RestoreFormat,
};
use restix_engine::repository::Repository;
use restix_tests::harness::{self, s, Sandbox, PASSWORD};

const M: u64 = 1024 * 1024;

fn have_qemu() -> bool {
    harness::require_qemu()
}

/// Runs a program and asserts success.
fn sh(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// The raw guest view of `image` according to qemu-img.
fn guest_view(dir: &Path, image: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "{}.ref.raw",
        image.file_name().unwrap().to_string_lossy()
    ));
    sh("qemu-img", &["convert", "-O", "raw", s(image), s(&out)]);
    std::fs::read(out).unwrap()
}

/// A 40 MiB qcow2 disk with pseudo-random data, text, holes and zero clusters.
fn make_disk(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let raw = dir.join(format!("{name}.src.raw"));
    let mut bytes = vec![0u8; (40 * M) as usize];
    let data = harness::pseudo_random_bytes(seed, (9 * M) as usize);
    bytes[(M as usize)..(4 * M as usize)].copy_from_slice(&data[..(3 * M as usize)]);
    bytes[(13 * M as usize + 4096)..(19 * M as usize + 4096)]
        .copy_from_slice(&data[(3 * M as usize)..]);
    let text = b"restix image mode ".repeat(20_000);
    bytes[(30 * M as usize)..(30 * M as usize + text.len())].copy_from_slice(&text);
    std::fs::write(&raw, &bytes).unwrap();
    let image = dir.join(name);
    sh(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&image)],
    );
    std::fs::remove_file(raw).unwrap();
    // Zero clusters (allocated and plain) over data.
    qemu_io(&image, &["write -z 2M 128k", "write -z -u 15M 64k"]);
    image
}

/// A fresh repository made by the real restic, opened through the engine.
fn new_repo(sb: &Sandbox) -> (PathBuf, Repository) {
    let path = sb.join("repo");
    sb.restic(["init", "-r", s(&path)]).ok();
    let repo = Repository::open(
        Arc::new(LocalBackend::new(path.clone())),
        PASSWORD.as_bytes(),
        None,
    )
    .unwrap();
    repo.load_index().unwrap();
    (path, repo)
}

fn options(name: &str) -> ImageBackupOptions {
    let mut options = ImageBackupOptions::new(name);
    options.mtime = None;
    options.threads = 2;
    options
}

fn tree_of(repo: &Repository, summary: &image::ImageBackupSummary) -> String {
    let snap = repo.load_snapshot(&summary.summary.snapshot_id).unwrap();
    snap.tree.unwrap().to_hex()
}

#[test]
fn image_backup_is_restored_by_restic() {
    harness::require_restic!();
    if !have_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (repo_path, repo) = new_repo(&sb);
    let disk = make_disk(sb.path(), "disk.qcow2", 1);
    let reference = guest_view(sb.path(), &disk);

    let image = image::open_disk_image(&disk).unwrap();
    let done = image::backup_image(&repo, image.as_ref(), options("disk.qcow2")).unwrap();
    assert!(done.stats.bytes_read < done.stats.virtual_size / 2);

    let target = sb.join("restored");
    sb.restic([
        "-r",
        s(&repo_path),
        "restore",
        "latest",
        "--target",
        s(&target),
    ])
    .ok();
    assert!(std::fs::read(target.join("disk.qcow2")).unwrap() == reference);
    sb.restic(["-r", s(&repo_path), "check", "--read-data"])
        .ok();

    // The engine's qcow2 restore is a valid image with the same guest view.
    let (path, node) = image::find_file_node(&repo, &done.summary.snapshot_id, None).unwrap();
    assert_eq!(path, "/disk.qcow2");
    let out = sb.join("out.qcow2");
    image::restore_node(&repo, &node, &out, RestoreFormat::Qcow2, 2).unwrap();
    sh("qemu-img", &["check", s(&out)]);
    sh("qemu-img", &["compare", s(&out), s(&disk)]);
    let raw = sb.join("out.raw");
    image::restore_node(&repo, &node, &raw, RestoreFormat::Raw, 2).unwrap();
    assert!(std::fs::read(&raw).unwrap() == reference);
}

#[test]
fn overlay_and_bitmap_incrementals_equal_full_backups() {
    harness::require_restic!();
    if !have_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (repo_path, repo) = new_repo(&sb);
    let base = make_disk(sb.path(), "disk.0.0", 2);
    let full =
        image::backup_image(&repo, &Qcow2Image::open(&base).unwrap(), options("disk")).unwrap();

    // OpenNebula-style increment: an overlay over the full disk.
    let inc = sb.join("disk.0.1");
    sh(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            s(&base),
            "-F",
            "qcow2",
            s(&inc),
        ],
    );
    qemu_io(
        &inc,
        &[
            "write -P 0xaa 0 64k",
            "write -P 0xbb 5M 4k",
            "write -z 14M 128k",
            "discard 30M 64k",
            "write -P 0xcc 25M 1M",
        ],
    );
    let chain = Qcow2Image::open_chain(&[base.clone(), inc.clone()]).unwrap();
    let changed = image::changed_ranges_in_top_layer(&chain).unwrap();
    let mut incremental = options("disk");
    incremental.parent = Some(full.summary.snapshot_id);
    incremental.changes = ChangedBlocks::Ranges(changed);
    let mtime = repo.load_snapshot(&full.summary.snapshot_id).unwrap().time;
    incremental.mtime = Some(mtime);
    let inc_done = image::backup_image(&repo, &chain, incremental).unwrap();
    assert!(
        inc_done.stats.incremental,
        "{:?}",
        inc_done.stats.fallback_reason
    );
    // Only around the changes: the new blocks are read to be stored (the
    // 40 MiB disk holds 9 MiB of random data and some text). Besides, as the
    // changed ranges come from the caller and the parent has no image
    // record, a sample of the unchanged blocks is read to verify the parent.
    let stats = &inc_done.stats;
    let read = stats.bytes_read - stats.verified_bytes;
    assert!(stats.verified_blocks > 0, "{stats:?}");
    assert!(
        read < 2 * stats.bytes_rechunked && read < 10 * M,
        "{stats:?}"
    );
    assert_eq!(stats.bytes_reused + stats.bytes_rechunked, 40 * M);
    let mut again = options("disk");
    again.mtime = Some(mtime);
    let full_again = image::backup_image(&repo, &chain, again).unwrap();
    assert_eq!(tree_of(&repo, &inc_done), tree_of(&repo, &full_again));

    let target = sb.join("restored");
    let snap = inc_done.summary.snapshot_id.to_hex();
    sb.restic([
        "-r",
        s(&repo_path),
        "restore",
        &snap,
        "--target",
        s(&target),
    ])
    .ok();
    assert!(std::fs::read(target.join("disk")).unwrap() == guest_view(sb.path(), &inc));

    // Dirty bitmap (CBT): a standalone disk with a persistent bitmap.
    let cbt = make_disk(sb.path(), "cbt.qcow2", 3);
    sh(
        "qemu-img",
        &["bitmap", "--add", "-g", "64K", s(&cbt), "one-0-0"],
    );
    let first =
        image::backup_image(&repo, &Qcow2Image::open(&cbt).unwrap(), options("cbt")).unwrap();
    qemu_io(
        &cbt,
        &[
            "write -P 0x11 1M 4k",
            "write -z 3M 64k",
            "write -P 0x22 39M 1M",
        ],
    );
    let cbt_image = Qcow2Image::open(&cbt).unwrap();
    let dirty = image::changed_ranges_from_bitmap(&cbt_image, "one-0-0").unwrap();
    assert!(!dirty.is_empty());
    let mut by_bitmap = options("cbt");
    let cbt_mtime = repo.load_snapshot(&first.summary.snapshot_id).unwrap().time;
    by_bitmap.mtime = Some(cbt_mtime);
    by_bitmap.parent = Some(first.summary.snapshot_id);
    by_bitmap.changes = ChangedBlocks::Ranges(dirty);
    let by_bitmap = image::backup_image(&repo, &cbt_image, by_bitmap).unwrap();
    assert!(by_bitmap.stats.incremental);
    let mut full_cbt = options("cbt");
    full_cbt.mtime = Some(cbt_mtime);
    let full_cbt = image::backup_image(&repo, &cbt_image, full_cbt).unwrap();
    assert_eq!(tree_of(&repo, &by_bitmap), tree_of(&repo, &full_cbt));
    sb.restic(["-r", s(&repo_path), "check", "--read-data"])
        .ok();
}

#[test]
fn opennebula_chain_flattens_like_qemu_img() {
    harness::require_restic!();
    if !have_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (_repo_path, repo) = new_repo(&sb);
    // disk.0.0 full; disk.0.1 and disk.0.2 increments whose headers name no
    // backing file (SNAPSHOT mode) or a stale one.
    let d0 = make_disk(sb.path(), "disk.0.0", 4);
    let d1 = sb.join("disk.0.1");
    let d2 = sb.join("disk.0.2");
    sh(
        "qemu-img",
        &["create", "-f", "qcow2", "-b", s(&d0), "-F", "qcow2", s(&d1)],
    );
    qemu_io(
        &d1,
        &[
            "write -P 0x31 0 1M",
            "write -z 13M 64k",
            "write -P 0x32 37M 64k",
        ],
    );
    sh(
        "qemu-img",
        &["create", "-f", "qcow2", "-b", s(&d1), "-F", "qcow2", s(&d2)],
    );
    qemu_io(
        &d2,
        &[
            "write -P 0x41 512k 1M",
            "discard 2M 1M",
            "write -P 0x42 20M 3M",
        ],
    );

    // The reference: qemu-img rebase -u + convert on copies.
    let refdir = sb.join("ref");
    std::fs::create_dir(&refdir).unwrap();
    for d in [&d0, &d1, &d2] {
        std::fs::copy(d, refdir.join(d.file_name().unwrap())).unwrap();
    }
    let (r0, r1, r2) = (
        refdir.join("disk.0.0"),
        refdir.join("disk.0.1"),
        refdir.join("disk.0.2"),
    );
    sh(
        "qemu-img",
        &["rebase", "-u", "-F", "qcow2", "-b", s(&r0), s(&r1)],
    );
    sh(
        "qemu-img",
        &["rebase", "-u", "-F", "qcow2", "-b", s(&r1), s(&r2)],
    );
    let flat = guest_view(&refdir, &r2);

    // Now break the recorded backing names of the increments, as OpenNebula's
    // SNAPSHOT mode does, and back up: the full disk in image mode (guest
    // view), the increments as plain files (their qcow2 bytes).
    sh("qemu-img", &["rebase", "-u", "-b", "", s(&d1)]);
    sh("qemu-img", &["rebase", "-u", "-b", "", s(&d2)]);
    let s0 =
        image::backup_image(&repo, &Qcow2Image::open(&d0).unwrap(), options("disk.0.0")).unwrap();
    let s1 =
        image::backup_image(&repo, &RawImage::open(&d1).unwrap(), options("disk.0.1")).unwrap();
    let s2 =
        image::backup_image(&repo, &RawImage::open(&d2).unwrap(), options("disk.0.2")).unwrap();
    let layers: Vec<ChainLayer> = [&s0, &s1, &s2]
        .iter()
        .map(|d| ChainLayer {
            snapshot: d.summary.snapshot_id,
            path: None,
        })
        .collect();

    let out_raw = sb.join("flat.raw");
    image::restore_chain(&repo, &layers, &out_raw, RestoreFormat::Raw, None, 2).unwrap();
    assert!(std::fs::read(&out_raw).unwrap() == flat);
    let out_qcow = sb.join("flat.qcow2");
    image::restore_chain(&repo, &layers, &out_qcow, RestoreFormat::Qcow2, None, 2).unwrap();
    sh("qemu-img", &["check", s(&out_qcow)]);
    sh("qemu-img", &["compare", s(&out_qcow), s(&r2)]);
    // No temporary folders left behind.
    let leftovers: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restix-chain"))
        .collect();
    assert!(leftovers.is_empty());
}
