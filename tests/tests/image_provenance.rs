//! Image mode never stores a wrong disk: every changed-block source that
//! does not belong to its parent is refused (exit 1, nothing written) or, when
//! restix picks the parent itself, leads to a full read; the honest cases stay
//! incremental. Disks are made and judged with qemu-img/qemu-io, the oracle:
//! every snapshot written is dumped and `qemu-img compare`d with the image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use restix_engine::backend::local::LocalBackend;
use restix_engine::image::{self, ImageBackupOptions, Qcow2Image};
use restix_engine::repository::Repository;
use restix_tests::harness::{self, s, Run, Sandbox, PASSWORD};
use restix_tests::images::{
    assert_snapshot_is, bitmap, guest_view, make_disk, make_overlay, qemu_io, snapshot_id,
    snapshots, summary, M,
};

/// A sandbox with a repository, when restic, qemu and restix are there.
fn setup() -> Option<(Sandbox, PathBuf)> {
    if harness::restic_bin().is_none() {
        harness::skip_missing_restic();
        return None;
    }
    if !harness::require_qemu() || !harness::is_restix() {
        return None;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.restic(["init", "-r", s(&repo)]).ok();
    Some((sb, repo))
}

/// `restix backup --json --image IMAGE EXTRA...`.
fn backup(sb: &Sandbox, repo: &Path, image: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["-r", s(repo), "backup", "--json", "--image", s(image)];
    args.extend_from_slice(extra);
    sb.restix(args)
}

/// Asserts a refusal: exit 1, the message says `what` and how to go on, and
/// no snapshot was added.
fn assert_refused(sb: &Sandbox, repo: &Path, run: Run, what: &str) {
    let before = snapshots(sb, repo).len();
    let run = run.code_is(1);
    // With --json the error is restic's `exit_error` line.
    let err = serde_json::from_str::<serde_json::Value>(run.err().trim())
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| run.err());
    assert!(err.contains(what), "{}", run.describe());
    assert!(
        err.contains("--changes none")
            && err.contains("--parent")
            && err.contains("Nothing was written"),
        "{}",
        run.describe()
    );
    assert_eq!(snapshots(sb, repo).len(), before, "nothing written");
}

fn image_stats(run: &Run) -> serde_json::Value {
    summary(run)["image"].clone()
}

#[test]
fn a_bitmap_started_after_the_parent_is_refused() {
    let Some((sb, repo)) = setup() else { return };
    let disk = make_disk(&sb.join("disk.qcow2"), 1, 24);
    let parent = snapshot_id(&backup(&sb, &repo, &disk, &[]).ok());
    // A write, then the bitmap, then another write: the bitmap misses the
    // first, so it cannot tell what changed since the parent.
    qemu_io(&disk, &["write -P 0x31 5M 64k"]);
    bitmap(&disk, "--add", "late");
    qemu_io(&disk, &["write -P 0x32 15M 64k"]);
    let run = backup(
        &sb,
        &repo,
        &disk,
        &["--bitmap", "late", "--parent", &parent],
    );
    assert_refused(
        &sb,
        &repo,
        run,
        "bitmap \"late\" did not exist when it was taken",
    );

    // Without --parent restix finds no snapshot the bitmap belongs to and
    // reads the whole disk: the snapshot is the disk.
    let run = backup(&sb, &repo, &disk, &["--bitmap", "late"]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], false, "{stats}");
    let why = stats["parent_reason"].as_str().unwrap();
    assert!(
        why.starts_with("no parent snapshot") && why.contains("did not exist"),
        "{why}"
    );
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/disk.qcow2", &disk);
}

#[test]
fn a_bitmap_started_before_the_parent() {
    let Some((sb, repo)) = setup() else { return };
    let disk = make_disk(&sb.join("disk.qcow2"), 2, 24);
    // Tracking starts before the first backup and goes on: the bitmap holds
    // more than what changed since (a superset), which is honest.
    bitmap(&disk, "--add", "b");
    qemu_io(&disk, &["write -P 0x41 3M 64k"]);
    let first = snapshot_id(&backup(&sb, &repo, &disk, &[]).ok());
    qemu_io(&disk, &["write -P 0x42 12M 128k", "write -z 1M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b"]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], true, "{stats}");
    assert_eq!(stats["vouched"], true, "{stats}");
    let why = stats["parent_reason"].as_str().unwrap();
    assert!(
        why.contains(&format!("using parent snapshot {}", &first[..8]))
            && why.contains("only grown since"),
        "{why}"
    );
    // Only the bitmap's blocks were stored anew.
    assert_eq!(stats["bytes_rechunked"], 4 * 64 * 1024, "{stats}");
    let second = snapshot_id(&run);
    assert_snapshot_is(&sb, &repo, &second, "/disk.qcow2", &disk);

    // Cleared since: it no longer holds what it held then.
    bitmap(&disk, "--clear", "b");
    qemu_io(&disk, &["write -P 0x43 20M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b", "--parent", &second]);
    assert_refused(&sb, &repo, run, "cleared or recreated since");
    // Removed and added again under the same name: the same.
    bitmap(&disk, "--remove", "b");
    bitmap(&disk, "--add", "b");
    qemu_io(&disk, &["write -P 0x44 21M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b", "--parent", &second]);
    assert_refused(&sb, &repo, run, "cleared or recreated since");
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b"]).ok();
    assert_eq!(image_stats(&run)["incremental"], false);
    let third = snapshot_id(&run);
    assert_snapshot_is(&sb, &repo, &third, "/disk.qcow2", &disk);

    // A disabled bitmap misses what was written after it was disabled.
    bitmap(&disk, "--disable", "b");
    qemu_io(&disk, &["write -P 0x45 22M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b", "--parent", &third]);
    assert_refused(&sb, &repo, run, "is disabled now");
}

#[test]
fn an_overlay_on_another_backing_file_is_refused() {
    let Some((sb, repo)) = setup() else { return };
    let base = make_disk(&sb.join("base.qcow2"), 3, 24);
    let parent = snapshot_id(&backup(&sb, &repo, &base, &[]).ok());

    // The honest overlay: on the very disk the parent holds.
    let good = make_overlay(&sb.join("good.qcow2"), &base);
    qemu_io(&good, &["write -P 0x51 4M 64k", "write -z 11M 64k"]);
    let run = backup(&sb, &repo, &good, &[]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], true, "{stats}");
    assert_eq!(stats["change_source"], "layer");
    assert!(stats["parent_reason"]
        .as_str()
        .unwrap()
        .contains(&parent[..8]));
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/good.qcow2", &good);

    // An overlay on another disk (a copy of the base, written to since).
    let other = sb.join("other.qcow2");
    std::fs::copy(&base, &other).unwrap();
    qemu_io(&other, &["write -P 0x52 2M 64k"]);
    let wrong = make_overlay(&sb.join("wrong.qcow2"), &other);
    qemu_io(&wrong, &["write -P 0x53 6M 64k"]);
    let run = backup(
        &sb,
        &repo,
        &wrong,
        &["--changes", "layer", "--parent", &parent],
    );
    assert_refused(
        &sb,
        &repo,
        run,
        &format!("the overlay's backing file is {}", other.display()),
    );
    // Without --parent: no snapshot of other.qcow2, so the whole disk.
    let run = backup(&sb, &repo, &wrong, &[]).ok();
    assert_eq!(image_stats(&run)["incremental"], false);
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/wrong.qcow2", &wrong);

    // The right backing file, but written to since the parent read it.
    let late = make_overlay(&sb.join("late.qcow2"), &base);
    qemu_io(&late, &["write -P 0x54 7M 64k"]);
    qemu_io(&base, &["write -P 0x55 1M 64k"]);
    let run = backup(
        &sb,
        &repo,
        &late,
        &["--changes", "layer", "--parent", &parent],
    );
    assert_refused(&sb, &repo, run, "was modified or replaced since it read it");
    let run = backup(&sb, &repo, &late, &[]).ok();
    assert_eq!(image_stats(&run)["incremental"], false);
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/late.qcow2", &late);
}

#[test]
fn another_vms_same_named_disk_is_never_the_parent() {
    let Some((sb, repo)) = setup() else { return };
    std::fs::create_dir_all(sb.join("vm-a")).unwrap();
    std::fs::create_dir_all(sb.join("vm-b")).unwrap();
    let a = make_disk(&sb.join("vm-a/disk.qcow2"), 4, 24);
    let b = make_disk(&sb.join("vm-b/disk.qcow2"), 5, 24);
    bitmap(&a, "--add", "b0");
    bitmap(&b, "--add", "b0");
    let pa = snapshot_id(&backup(&sb, &repo, &a, &[]).ok());
    // Snapshots record the absolute path, so the two disks are two groups.
    let paths: Vec<String> = snapshots(&sb, &repo)
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, [a.display().to_string()]);

    qemu_io(&b, &["write -P 0x61 3M 64k"]);
    // Not picked by itself...
    let run = backup(&sb, &repo, &b, &["--bitmap", "b0"]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], false, "{stats}");
    assert!(
        stats["parent_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("no earlier snapshot of {}", b.display())),
        "{stats}"
    );
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/disk.qcow2", &b);
    // ...and refused when named.
    qemu_io(&b, &["write -P 0x62 4M 64k"]);
    let run = backup(&sb, &repo, &b, &["--bitmap", "b0", "--parent", &pa]);
    assert_refused(
        &sb,
        &repo,
        run,
        &format!("it is a backup of {}, not of {}", a.display(), b.display()),
    );
}

/// The files of the block-hash caches under `cache`.
fn cache_files(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for repo in std::fs::read_dir(cache.join("restix-image")).unwrap() {
        for file in std::fs::read_dir(repo.unwrap().path()).unwrap() {
            out.push(file.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn stale_and_foreign_block_hash_caches_are_not_trusted() {
    let Some((sb, repo)) = setup() else { return };
    let raw = |name: &str, seed: u64| {
        let q = make_disk(&sb.join(format!("{name}.qcow2")), seed, 16);
        let path = sb.join(name);
        std::fs::write(&path, guest_view(&q)).unwrap();
        path
    };
    let rewrite = |path: &Path, offset: usize, byte: u8| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[offset..offset + 4096].fill(byte);
        std::fs::write(path, bytes).unwrap();
    };
    let a = raw("a.raw", 6);
    let b = raw("b.raw", 7);
    backup(&sb, &repo, &a, &[]).ok();
    let cache_a = cache_files(&sb.join("cache"));
    backup(&sb, &repo, &b, &[]).ok();
    let cache_b: Vec<PathBuf> = cache_files(&sb.join("cache"))
        .into_iter()
        .filter(|f| !cache_a.contains(f))
        .collect();
    let (cache_a, cache_b) = (&cache_a[0], &cache_b[0]);

    // The honest case.
    rewrite(&a, 5 * M, 0x71);
    let run = backup(&sb, &repo, &a, &[]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], true, "{stats}");
    assert_eq!(stats["change_source"], "hash-cache");
    let a_second = snapshot_id(&run);
    assert_snapshot_is(&sb, &repo, &a_second, "/a.raw", &a);

    // Foreign: a's cache where b's belongs.
    std::fs::copy(cache_a, cache_b).unwrap();
    rewrite(&b, 9 * M, 0x72);
    let run = backup(&sb, &repo, &b, &[]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], false, "{stats}");
    assert!(
        stats["fallback_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("belongs to another image ({})", a.display())),
        "{stats}"
    );
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/b.raw", &b);

    // Stale: an old cache put back after its snapshot was forgotten.
    let old = std::fs::read(cache_a).unwrap();
    rewrite(&a, 6 * M, 0x73);
    backup(&sb, &repo, &a, &[]).ok();
    sb.restix(["-r", s(&repo), "forget", &a_second]).ok();
    std::fs::write(cache_a, old).unwrap();
    rewrite(&a, 7 * M, 0x74);
    let run = backup(&sb, &repo, &a, &[]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], false, "{stats}");
    assert!(
        stats["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{stats}"
    );
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/a.raw", &a);
}

/// The value of the extended attribute `name` of `path`, if it has one.
fn user_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A parent an older restix made: no image record on its node.
fn parent_without_record(repo: &Path, disk: &Path) -> String {
    let repository =
        Repository::open(Arc::new(LocalBackend::new(repo)), PASSWORD.as_bytes(), None).unwrap();
    repository.load_index().unwrap();
    let mut options = ImageBackupOptions::new("disk.qcow2");
    options.paths = vec![disk.display().to_string()];
    options.threads = 2;
    let done = image::backup_image(&repository, &Qcow2Image::open(disk).unwrap(), options).unwrap();
    done.summary.snapshot_id.to_hex()
}

#[test]
fn a_parent_without_a_record_is_verified_by_content() {
    let Some((sb, repo)) = setup() else { return };
    let disk = make_disk(&sb.join("disk.qcow2"), 8, 24);
    bitmap(&disk, "--add", "b");
    let old = parent_without_record(&repo, &disk);
    // Honest: the bitmap started at the parent's disk.
    qemu_io(&disk, &["write -P 0x81 3M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "b", "--parent", &old]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], true, "{stats}");
    assert_eq!(stats["vouched"], false, "{stats}");
    assert!(stats["verified_blocks"].as_u64().unwrap() > 8, "{stats}");
    assert!(
        stats["parent_reason"]
            .as_str()
            .unwrap()
            .contains("carries no image record"),
        "{stats}"
    );
    assert_snapshot_is(&sb, &repo, &snapshot_id(&run), "/disk.qcow2", &disk);

    // Not: a write before the bitmap started. The blocks the bitmap calls
    // unchanged are read and compared with the parent's, and one differs.
    let old = parent_without_record(&repo, &disk);
    qemu_io(&disk, &["write -P 0x82 12M 64k"]);
    bitmap(&disk, "--add", "c");
    qemu_io(&disk, &["write -P 0x83 3M 64k"]);
    let run = backup(&sb, &repo, &disk, &["--bitmap", "c", "--parent", &old]);
    assert_refused(
        &sb,
        &repo,
        run,
        &format!("block at offset {} differs from the parent's", 12 * M),
    );
}

#[test]
fn provenance_survives_restic_check_restore_and_copy() {
    let Some((sb, repo)) = setup() else { return };
    let disk = make_disk(&sb.join("disk.qcow2"), 9, 24);
    bitmap(&disk, "--add", "b");
    let first = snapshot_id(&backup(&sb, &repo, &disk, &[]).ok());
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    let out = sb.join("restic-out");
    sb.restic(["-r", s(&repo), "restore", &first, "--target", s(&out)])
        .ok();
    let restored = out.join("disk.qcow2");
    assert!(std::fs::read(&restored).unwrap() == guest_view(&disk));
    // restic puts the record on the restored file where the file system
    // has user attributes.
    if let Some(value) = user_xattr(&restored, "user.restix.image") {
        let record: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(record["path"], disk.display().to_string(), "{record}");
        assert_eq!(record["bitmaps"][0]["name"], "b", "{record}");
    }

    // restic copy keeps the tree blob, so the record arrives intact.
    let copy = sb.join("copy");
    let pw = sb.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    sb.restic(["init", "-r", s(&copy)]).ok();
    sb.restic([
        "-r",
        s(&copy),
        "copy",
        "--from-repo",
        s(&repo),
        "--from-password-file",
        s(&pw),
    ])
    .ok();
    sb.restic(["-r", s(&copy), "check", "--read-data"]).ok();
    let copied = snapshots(&sb, &copy)[0]["id"].as_str().unwrap().to_string();
    let out2 = sb.join("restic-out-2");
    sb.restic(["-r", s(&copy), "restore", &copied, "--target", s(&out2)])
        .ok();
    assert!(std::fs::read(out2.join("disk.qcow2")).unwrap() == guest_view(&disk));

    // The copied snapshot is found as the parent and vouches for the bitmap.
    qemu_io(&disk, &["write -P 0x91 14M 64k"]);
    let run = backup(&sb, &copy, &disk, &["--bitmap", "b"]).ok();
    let stats = image_stats(&run);
    assert_eq!(stats["incremental"], true, "{stats}");
    assert_eq!(stats["vouched"], true, "{stats}");
    assert!(stats["parent_reason"]
        .as_str()
        .unwrap()
        .contains(&copied[..8]));
    let next = snapshot_id(&run);
    assert_snapshot_is(&sb, &copy, &next, "/disk.qcow2", &disk);
    sb.restic(["-r", s(&copy), "check", "--read-data"]).ok();
    let out3 = sb.join("restic-out-3");
    sb.restic(["-r", s(&copy), "restore", &next, "--target", s(&out3)])
        .ok();
    assert!(std::fs::read(out3.join("disk.qcow2")).unwrap() == guest_view(&disk));
}
