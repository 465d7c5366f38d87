//! Restore keeps what it can (issue #21, item 1), beside restic 0.14 doing
//! the same: with a pack missing, a blob corrupt, or the target disk full,
//! restix keeps at least the correct bytes restic keeps, and never removes
//! or damages a file that was already there.
//!
//! "Correct bytes" are the bytes of a restored file equal to the source at
//! the same offset; a missing file has none.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use restix_tests::harness::{self, restored_path, Run, Sandbox};
use restix_tests::require_restic;

/// Bytes of `restored` equal to `source` at the same offset.
fn correct_bytes(source: &[u8], restored: &Path) -> u64 {
    let Ok(data) = fs::read(restored) else {
        return 0;
    };
    source
        .iter()
        .zip(data.iter())
        .filter(|(a, b)| a == b)
        .count() as u64
}

/// A repository made by restic 0.14 with 4 MiB packs of one 12 MB file
/// `src/big` (so it spans several packs); returns (sandbox, source bytes).
fn big_file_repo(seed: u64) -> (Sandbox, Vec<u8>) {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.join("src")).unwrap();
    let data = harness::pseudo_random_bytes(seed, 12_000_000);
    fs::write(sb.join("src/big"), &data).unwrap();
    sb.restic(["-r", "repo", "init"]).ok();
    sb.restic(["-r", "repo", "backup", "--pack-size", "4", "src"])
        .ok();
    (sb, data)
}

/// Data pack files, largest first.
fn packs_by_size(repo: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<(u64, PathBuf)> = Vec::new();
    for dir in fs::read_dir(repo.join("data")).unwrap() {
        for file in fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            packs.push((fs::metadata(&path).unwrap().len(), path));
        }
    }
    packs.sort_by(|a, b| b.cmp(a));
    packs.into_iter().map(|(_, p)| p).collect()
}

fn restore(sb: &Sandbox, tool: harness::Tool, target: &str) -> Run {
    sb.cmd(tool)
        .args(["-r", "repo", "restore", "latest", "--target", target])
        .run()
        .no_crash()
}

/// `missing bytes A-B` from restix's error: the first missing range.
fn first_missing_range(stderr: &str) -> (u64, u64) {
    let rest = stderr
        .split("missing bytes ")
        .nth(1)
        .unwrap_or_else(|| panic!("no missing range reported: {stderr}"));
    let range: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn missing_pack_keeps_what_restic_keeps_and_never_the_existing_file() {
    require_restic!();
    let (sb, data) = big_file_repo(21);
    let packs = packs_by_size(&sb.join("repo"));
    assert!(packs.len() >= 3, "expected several packs: {packs:?}");
    let gone = packs.get(1).unwrap();
    fs::remove_file(gone).unwrap();

    // Fresh targets: restix keeps every restored byte, as restic does.
    let rx = restore(&sb, harness::Tool::Restix, "out-restix").code_is(1);
    restore(&sb, harness::Tool::Restic, "out-restic").code_is(1);
    assert!(
        rx.err().contains("There were 1 errors"),
        "{}",
        rx.describe()
    );
    let rx_file = restored_path(&sb.join("out-restix"), Path::new("/src/big"));
    let rc_file = restored_path(&sb.join("out-restic"), Path::new("/src/big"));
    let rx_correct = correct_bytes(&data, &rx_file);
    let rc_correct = correct_bytes(&data, &rc_file);
    assert!(
        rx_correct >= rc_correct && rx_correct > 0,
        "restix kept {rx_correct} correct bytes, restic {rc_correct}\n{}",
        rx.describe()
    );
    assert_eq!(fs::metadata(&rx_file).unwrap().len(), data.len() as u64);
    let (start, end) = first_missing_range(&rx.err());
    assert!(start < end && end < data.len() as u64);
    // The summary says what was restored: not the file.
    assert!(
        rx.out().contains("Summary: Restored 1 / 2 files/dirs"),
        "{}",
        rx.describe()
    );

    // A correct copy already in the target: restix verifies and keeps it
    // (skipped, exit 0); restic 0.14 rewrites it and loses the missing pack's bytes.
    for (tool, name) in [
        (harness::Tool::Restix, "pre-restix"),
        (harness::Tool::Restic, "pre-restic"),
    ] {
        let file = restored_path(&sb.join(name), Path::new("/src/big"));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, &data).unwrap();
        let run = restore(&sb, tool, name);
        if tool == harness::Tool::Restix {
            run.code_is(0).stdout_has("skipped 1 files/dirs 11.444 MiB");
            assert!(fs::read(&file).unwrap() == data, "correct file changed");
        }
    }
    let pre_rx = correct_bytes(
        &data,
        &restored_path(&sb.join("pre-restix"), Path::new("/src/big")),
    );
    let pre_rc = correct_bytes(
        &data,
        &restored_path(&sb.join("pre-restic"), Path::new("/src/big")),
    );
    assert!(pre_rx >= pre_rc, "restix {pre_rx} < restic {pre_rc}");
    assert_eq!(pre_rx, data.len() as u64);

    // An older version already there whose changed bytes lie in the missing
    // pack: the new content cannot be completed, so the old file is left
    // exactly as it was (no byte less than before the restore).
    let file = restored_path(&sb.join("old"), Path::new("/src/big"));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut old = data.clone();
    old[start as usize] ^= 0xff;
    old.extend_from_slice(b"old tail");
    fs::write(&file, &old).unwrap();
    let run = restore(&sb, harness::Tool::Restix, "old").code_is(1);
    assert!(
        run.err().contains("the existing file was left unchanged"),
        "{}",
        run.describe()
    );
    assert!(fs::read(&file).unwrap() == old, "existing file was changed");
    let leftovers: Vec<_> = fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");

    // An older version whose changed bytes are in packs that exist: the
    // bytes of the missing pack are taken from the existing file, and the
    // restore completes.
    let file = restored_path(&sb.join("older"), Path::new("/src/big"));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut older = data.clone();
    older[0] ^= 0xff;
    fs::write(&file, &older).unwrap();
    let run = restore(&sb, harness::Tool::Restix, "older");
    if run.success() {
        assert!(fs::read(&file).unwrap() == data);
    } else {
        // The first blob shares the missing pack: then the old file stays.
        assert!(fs::read(&file).unwrap() == older, "{}", run.describe());
    }
}

#[test]
fn corrupt_blob_keeps_what_restic_keeps() {
    require_restic!();
    let (sb, data) = big_file_repo(22);
    let packs = packs_by_size(&sb.join("repo"));
    // Flip one byte in the middle of the largest pack's first blob area.
    let pack = packs.first().unwrap();
    let mut bytes = fs::read(pack).unwrap();
    bytes[1000] ^= 0x55;
    let mut perms = fs::metadata(pack).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(pack, perms).unwrap();
    fs::write(pack, bytes).unwrap();

    let rx = restore(&sb, harness::Tool::Restix, "out-restix").code_is(1);
    restore(&sb, harness::Tool::Restic, "out-restic").code_is(1);
    let rx_correct = correct_bytes(
        &data,
        &restored_path(&sb.join("out-restix"), Path::new("/src/big")),
    );
    let rc_correct = correct_bytes(
        &data,
        &restored_path(&sb.join("out-restic"), Path::new("/src/big")),
    );
    assert!(
        rx_correct >= rc_correct && rx_correct > 0,
        "restix kept {rx_correct} correct bytes, restic {rc_correct}\n{}",
        rx.describe()
    );
    assert!(rx.err().contains("missing bytes"), "{}", rx.describe());
}

/// A small tmpfs mounted for the test (unmounted on drop).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> Option<SmallFs> {
        fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_target_keeps_what_restic_keeps() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    // 3 MB in one file and 40 files of 60 kB: 5.4 MB into 4 MiB targets.
    let big = harness::pseudo_random_bytes(23, 3_000_000);
    fs::write(src.join("big"), &big).unwrap();
    let mut files = vec![("big".to_string(), big)];
    for i in 0..40 {
        let data = harness::pseudo_random_bytes(100 + i, 60_000);
        fs::write(src.join(format!("f{i:02}")), &data).unwrap();
        files.push((format!("f{i:02}"), data));
    }
    sb.restic(["-r", "repo", "init"]).ok();
    sb.restic(["-r", "repo", "backup", "src"]).ok();

    let mut mounts = Vec::new();
    for name in ["full-restix", "full-restic", "pre-full"] {
        match SmallFs::mount(sb.join(name), "4m") {
            Some(m) => mounts.push(m),
            None => {
                return restix_testkit::skip(
                    "a small tmpfs (mount -t tmpfs needs root)",
                    "run the tests as root, as CI does",
                )
            }
        }
    }
    let total = |target: &str| -> u64 {
        files
            .iter()
            .map(|(name, data)| {
                correct_bytes(
                    data,
                    &restored_path(&sb.join(target), Path::new(&format!("/src/{name}"))),
                )
            })
            .sum()
    };
    let rx = restore(&sb, harness::Tool::Restix, "full-restix").code_is(1);
    restore(&sb, harness::Tool::Restic, "full-restic").code_is(1);
    let (rx_total, rc_total) = (total("full-restix"), total("full-restic"));
    assert!(
        rx_total >= rc_total,
        "restix kept {rx_total} correct bytes, restic {rc_total}\n{}",
        rx.describe()
    );
    assert!(
        rx.err().contains("no space left on device"),
        "{}",
        rx.describe()
    );

    // A correct file and an older file already in a full target: the
    // correct one is verified and kept, the older one is kept as it was
    // when its replacement does not fit.
    let dir = restored_path(&sb.join("pre-full"), Path::new("/src"));
    fs::create_dir_all(&dir).unwrap();
    let (_, big) = &files[0];
    fs::write(dir.join("big"), big).unwrap();
    let mut old = files[1].1.clone();
    old[10] ^= 1;
    fs::write(dir.join("f00"), &old).unwrap();
    let filler = vec![1u8; 700_000];
    let _ = fs::write(dir.join("filler"), &filler);
    restore(&sb, harness::Tool::Restix, "pre-full").code_is(1);
    assert!(
        fs::read(dir.join("big")).unwrap() == *big,
        "correct file changed"
    );
    let f00 = fs::read(dir.join("f00")).unwrap();
    assert!(
        f00 == old || f00 == files[1].1,
        "f00 is neither the old nor the new content"
    );
    drop(mounts);
}
