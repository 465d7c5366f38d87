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

/// The source of the `--overwrite`/`--delete`/`--dry-run` tests: files
/// with fixed contents and modification times.
const FLAG_FILES: [(&str, &str, i64); 6] = [
    ("same.txt", "same\n", 1_500_000_000),
    ("changed.txt", "new content\n", 1_500_000_100),
    ("trusted.txt", "abc\n", 1_500_000_200),
    ("newer.txt", "snap\n", 2_000),
    ("older.txt", "snap\n", 1_000),
    ("d/new.txt", "n\n", 1_500_000_300),
];

/// A target that has: `same.txt` identical (mtime now), `changed.txt`
/// different, `trusted.txt` different but with the snapshot's size and
/// mtime, `newer.txt` older than the snapshot's, `older.txt` newer than
/// the snapshot's, no `d/new.txt`, and `extra.txt` and `extra_dir/x` the
/// snapshot does not have.
fn flag_target(root: &Path) -> PathBuf {
    let dir = root.join("src");
    fs::create_dir_all(dir.join("extra_dir")).unwrap();
    fs::write(dir.join("same.txt"), "same\n").unwrap();
    fs::write(dir.join("changed.txt"), "old\n").unwrap();
    fs::write(dir.join("trusted.txt"), "xyz\n").unwrap();
    harness::set_times(
        &dir.join("trusted.txt"),
        (1_500_000_200, 0),
        (1_500_000_200, 0),
    );
    fs::write(dir.join("newer.txt"), "old\n").unwrap();
    harness::set_times(&dir.join("newer.txt"), (1_000, 0), (1_000, 0));
    fs::write(dir.join("older.txt"), "older here\n").unwrap();
    harness::set_times(&dir.join("older.txt"), (2_000, 0), (2_000, 0));
    fs::write(dir.join("extra.txt"), "x").unwrap();
    fs::write(dir.join("extra_dir/x"), "x").unwrap();
    dir
}

fn summary_of(run: &Run) -> serde_json::Value {
    let mut summary = run
        .json_lines()
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}", run.describe()));
    summary.as_object_mut().unwrap().remove("seconds_elapsed");
    summary
}

fn actions_of(run: &Run) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = run
        .json_lines()
        .into_iter()
        .filter(|v| v["message_type"] == "verbose_status")
        .map(|v| {
            (
                v["item"].as_str().unwrap().to_string(),
                v["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// restore `--overwrite`, `--delete` and `--dry-run` give restic 0.18.1's
/// results. restic 0.14 has none of these flags; the expected values are
/// derived from 0.18.1's internal/restorer/restorer.go (`withOverwriteCheck`,
/// `shouldOverwrite`, `verifyFile`, `removeUnexpectedFiles`) and
/// internal/ui/restore/progress.go (what is counted where):
/// - a file that is not restored is not in `total_files`; it counts in
///   `files_skipped`/`bytes_skipped` with the action `unchanged`;
/// - `always` reads an existing file and skips it when every blob matches;
///   `if-changed` trusts an equal size and mtime without reading;
///   `if-newer` restores only where the snapshot's mtime is later;
///   `never` only where nothing exists; skipped files are not touched;
/// - a file that existed is `updated`, one that did not is `restored`;
///   directories count in `total_files` and are `restored`;
/// - `--delete` removes what the snapshot lacks and reports every removed
///   path (absolute, below the target), deepest first, as `deleted`;
/// - `--dry-run` reports the same and changes nothing.
#[test]
fn overwrite_delete_and_dry_run_give_restic_018_results() {
    let sb = Sandbox::new();
    for (name, content, mtime) in FLAG_FILES {
        let path = sb.join("src").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        harness::set_times(&path, (mtime, 0), (mtime, 0));
    }
    sb.restix(["-r", "repo", "init"]).ok();
    sb.restix(["-r", "repo", "backup", "src"]).ok();

    let size = |name: &str| -> u64 {
        FLAG_FILES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, c, _)| c.len() as u64)
            .unwrap()
    };
    let sum = |names: &[&str]| -> u64 { names.iter().map(|n| size(n)).sum() };
    let action = |item: &str, what: &str| (format!("/src/{item}"), what.to_string());
    let dirs = || {
        vec![
            ("/src".to_string(), "restored".to_string()),
            action("d", "restored"),
        ]
    };

    struct Case {
        mode: &'static str,
        restored: Vec<&'static str>,
        updated: Vec<&'static str>,
        skipped: Vec<&'static str>,
    }
    let cases = [
        Case {
            mode: "always",
            restored: vec!["d/new.txt"],
            updated: vec!["changed.txt", "trusted.txt", "newer.txt", "older.txt"],
            skipped: vec!["same.txt"],
        },
        Case {
            mode: "if-changed",
            restored: vec!["d/new.txt"],
            updated: vec!["changed.txt", "newer.txt", "older.txt"],
            skipped: vec!["same.txt", "trusted.txt"],
        },
        Case {
            mode: "if-newer",
            restored: vec!["d/new.txt"],
            updated: vec!["newer.txt"],
            skipped: vec!["same.txt", "changed.txt", "trusted.txt", "older.txt"],
        },
        Case {
            mode: "never",
            restored: vec!["d/new.txt"],
            updated: vec![],
            skipped: vec![
                "same.txt",
                "changed.txt",
                "trusted.txt",
                "newer.txt",
                "older.txt",
            ],
        },
    ];
    for case in &cases {
        let target = sb.join(format!("t-{}", case.mode));
        let dir = flag_target(&target);
        let before_older = fs::metadata(dir.join("older.txt")).unwrap();
        let run = sb
            .restix([
                "-r",
                "repo",
                "--json",
                "-vv",
                "restore",
                "latest",
                "--target",
                target.to_str().unwrap(),
                "--overwrite",
                case.mode,
            ])
            .ok();
        let written: Vec<&str> = case.restored.iter().chain(&case.updated).copied().collect();
        let total_files = 2 + written.len() as u64;
        let mut expected = serde_json::json!({
            "message_type": "summary",
            "total_files": total_files,
            "files_restored": total_files,
            "files_skipped": case.skipped.len(),
            "total_bytes": sum(&written),
            "bytes_restored": sum(&written),
            "bytes_skipped": sum(&case.skipped),
        });
        if sum(&written) == 0 {
            let map = expected.as_object_mut().unwrap();
            map.remove("total_bytes");
            map.remove("bytes_restored");
        }
        assert_eq!(summary_of(&run), expected, "--overwrite {}", case.mode);
        let mut actions = dirs();
        actions.extend(case.restored.iter().map(|n| action(n, "restored")));
        actions.extend(case.updated.iter().map(|n| action(n, "updated")));
        actions.extend(case.skipped.iter().map(|n| action(n, "unchanged")));
        actions.sort();
        assert_eq!(actions_of(&run), actions, "--overwrite {}", case.mode);
        // Contents: written files are the snapshot's, skipped ones as before.
        for name in &written {
            let content = FLAG_FILES.iter().find(|(n, _, _)| n == name).unwrap().1;
            assert_eq!(
                fs::read_to_string(dir.join(name)).unwrap(),
                content,
                "{name}"
            );
        }
        if case.skipped.contains(&"older.txt") {
            assert_eq!(
                fs::read_to_string(dir.join("older.txt")).unwrap(),
                "older here\n"
            );
            let after = fs::metadata(dir.join("older.txt")).unwrap();
            assert_eq!(
                std::os::unix::fs::MetadataExt::mtime(&after),
                std::os::unix::fs::MetadataExt::mtime(&before_older),
                "a skipped file is not touched"
            );
        }
        if case.skipped.contains(&"trusted.txt") && case.mode == "if-changed" {
            // Trusted by size and mtime: not read, not rewritten.
            assert_eq!(
                fs::read_to_string(dir.join("trusted.txt")).unwrap(),
                "xyz\n"
            );
        }
        assert!(
            dir.join("extra.txt").exists(),
            "no --delete, nothing deleted"
        );
    }

    // --delete (and --dry-run first: same report, nothing changed).
    let target = sb.join("t-delete");
    let dir = flag_target(&target);
    let abs = dir.clone();
    let deleted = |p: &str| {
        (
            abs.join(p).to_str().unwrap().to_string(),
            "deleted".to_string(),
        )
    };
    let mut expected_actions = dirs();
    expected_actions.push(action("d/new.txt", "restored"));
    for n in ["changed.txt", "trusted.txt", "newer.txt", "older.txt"] {
        expected_actions.push(action(n, "updated"));
    }
    expected_actions.push(action("same.txt", "unchanged"));
    expected_actions.extend([
        deleted("extra.txt"),
        deleted("extra_dir/x"),
        deleted("extra_dir"),
    ]);
    expected_actions.sort();
    let written = [
        "d/new.txt",
        "changed.txt",
        "trusted.txt",
        "newer.txt",
        "older.txt",
    ];
    let expected = serde_json::json!({
        "message_type": "summary",
        "total_files": 7,
        "files_restored": 7,
        "files_skipped": 1,
        "files_deleted": 3,
        "total_bytes": sum(&written),
        "bytes_restored": sum(&written),
        "bytes_skipped": sum(&["same.txt"]),
    });
    let args = |dry: bool| {
        let mut a = vec![
            "-r".to_string(),
            "repo".into(),
            "--json".into(),
            "-vv".into(),
            "restore".into(),
            "latest".into(),
            "--target".into(),
            target.to_str().unwrap().into(),
            "--delete".into(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };
    let run = sb.restix(args(true)).ok();
    assert_eq!(summary_of(&run), expected, "--delete --dry-run");
    assert_eq!(actions_of(&run), expected_actions, "--delete --dry-run");
    assert!(
        dir.join("extra_dir/x").exists() && !dir.join("d").exists(),
        "dry run changed nothing"
    );
    assert_eq!(
        fs::read_to_string(dir.join("changed.txt")).unwrap(),
        "old\n"
    );
    let run = sb.restix(args(false)).ok();
    assert_eq!(summary_of(&run), expected, "--delete");
    assert_eq!(actions_of(&run), expected_actions, "--delete");
    assert!(!dir.join("extra.txt").exists() && !dir.join("extra_dir").exists());
    assert_eq!(fs::read_to_string(dir.join("d/new.txt")).unwrap(), "n\n");

    // The text summary (restic 0.18's Finish) and the verbose lines.
    let dir = flag_target(&sb.join("t-text"));
    let run = sb
        .restix([
            "-r", "repo", "-vv", "restore", "latest", "--target", "t-text", "--delete",
        ])
        .ok();
    assert!(
        run.out().contains("Summary: Restored 7 files/dirs (")
            && run
                .out()
                .contains(", skipped 1 files/dirs 5 B, deleted 3 files/dirs"),
        "{}",
        run.describe()
    );
    assert!(
        run.out().contains("unchanged /src/same.txt with size 5 B"),
        "{}",
        run.describe()
    );
    assert!(
        run.out().contains("restored  /src/d\n"),
        "{}",
        run.describe()
    );
    assert!(!dir.join("extra.txt").exists());

    // Wrong values are refused in pflag's words.
    sb.restix(["-r", "repo", "restore", "latest", "--target", "x", "--overwrite", "sometimes"])
        .code_is(1)
        .stderr_has("invalid argument \"sometimes\" for \"--overwrite\" flag: invalid overwrite behavior \"sometimes\", must be one of (always|if-changed|if-newer|never)");
    sb.restix([
        "-r", "repo", "restore", "latest", "--target", "/", "--delete",
    ])
    .code_is(1)
    .stderr_has("'--target / --delete' must be combined with an include or exclude filter");
}
