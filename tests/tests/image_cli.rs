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
    // A target ending in / is a folder: the image is named for its format.
    let out = sb.join("restored");
    sb.restix([
        "-r",
        r,
        "restore",
        &inc_id,
        "--target",
        &format!("{}/", out.display()),
        "--format",
        "qcow2",
    ])
    .ok();
    let restored = out.join("disk.0.0.qcow2");
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

/// `dump --format` and `restore --format` honour every snapshot filter: the
/// latest snapshot *with the tag* (or host, or path), not the latest of all.
#[test]
fn image_dump_and_restore_honour_snapshot_filters() {
    use restix_tests::images::{make_disk, snapshot_id as id_of};
    harness::require_restic!();
    if !have_qemu() || !harness::is_restix() {
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let r = s(&repo);
    sb.restix(["-r", r, "init"]).ok();
    let tagged = make_disk(&sb.join("zstd.qcow2"), 21, 16);
    let other = make_disk(&sb.join("other.qcow2"), 22, 16);
    let zstd = id_of(
        &sb.restix([
            "-r",
            r,
            "backup",
            "--json",
            "--tag",
            "zstd",
            "--host",
            "h1",
            "--image",
            s(&tagged),
        ])
        .ok(),
    );
    // A newer snapshot, of another image, without the tag, from another host.
    sb.restix([
        "-r",
        r,
        "backup",
        "--json",
        "--host",
        "h2",
        "--image",
        s(&other),
    ])
    .ok();
    let dumped = sb.join("tag.qcow2");
    sb.restix([
        "-r",
        r,
        "dump",
        "--tag",
        "zstd",
        "--format",
        "qcow2",
        "--target",
        s(&dumped),
        "latest",
        "/zstd.qcow2",
    ])
    .ok();
    sh("qemu-img", &["compare", s(&dumped), s(&tagged)]);
    let by_host = sb.join("host.raw");
    sb.restix([
        "-r",
        r,
        "dump",
        "--host",
        "h1",
        "--format",
        "raw",
        "--target",
        s(&by_host),
        "latest",
        "/zstd.qcow2",
    ])
    .ok();
    assert!(std::fs::read(&by_host).unwrap() == guest_view(&tagged));
    // Snapshot paths are absolute: --path selects by the image's full path.
    let by_path = sb.join("path.raw");
    sb.restix([
        "-r",
        r,
        "dump",
        "--path",
        s(&tagged),
        "--format",
        "raw",
        "--target",
        s(&by_path),
        "latest",
        "/zstd.qcow2",
    ])
    .ok();
    assert!(std::fs::read(&by_path).unwrap() == guest_view(&tagged));
    let restored = sb.join("restore");
    std::fs::create_dir(&restored).unwrap();
    sb.restix([
        "-r",
        r,
        "restore",
        "--tag",
        "zstd",
        "latest",
        "--format",
        "raw",
        "--target",
        s(&restored),
    ])
    .ok()
    .stdout_has(&format!("of snapshot {}", &zstd[..8]));
    assert!(std::fs::read(restored.join("zstd.raw")).unwrap() == guest_view(&tagged));
    // A filter nothing matches is an error, not another snapshot.
    sb.restix([
        "-r",
        r,
        "dump",
        "--tag",
        "nope",
        "--format",
        "qcow2",
        "--target",
        s(&dumped),
        "latest",
        "/zstd.qcow2",
    ])
    .code_is(1)
    .stderr_has("no snapshot found");
}

/// `--target` is the file to write, or a folder (existing, or ending in /)
/// where the image is named for its format, for restore, dump and
/// restore-chain alike; raw output is sparse and never called .qcow2 by
/// restix; dump writes to a pipe.
#[test]
fn image_targets_mean_the_same_everywhere() {
    use restix_tests::images::{make_disk, snapshot_id as id_of};
    if !have_qemu() || !harness::is_restix() {
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let r = s(&repo);
    sb.restix(["-r", r, "init"]).ok();
    let disk = make_disk(&sb.join("disk.qcow2"), 23, 32);
    let snap = id_of(
        &sb.restix(["-r", r, "backup", "--json", "--image", s(&disk)])
            .ok(),
    );
    let view = guest_view(&disk);
    let dir = sb.join("out");
    std::fs::create_dir(&dir).unwrap();
    for (command, format, expected) in [
        ("restore", "raw", "disk.raw"),
        ("restore", "qcow2", "disk.qcow2"),
        ("dump", "raw", "disk.raw"),
        ("dump", "qcow2", "disk.qcow2"),
        ("restore-chain", "raw", "disk.raw"),
        ("restore-chain", "qcow2", "disk.qcow2"),
    ] {
        for target in [s(&dir).to_string(), format!("{}/new/", dir.display())] {
            let mut args = vec!["-r", r, command, "--format", format, "--target", &target];
            match command {
                "dump" => args.extend([snap.as_str(), "/disk.qcow2"]),
                _ => args.push(&snap),
            }
            let run = sb.restix(&args).ok();
            let out = Path::new(target.trim_end_matches('/')).join(expected);
            assert!(
                run.out().contains(&format!("wrote {}", out.display())),
                "{}",
                run.describe()
            );
            assert!(guest_view(&out) == view, "{command} {format} {target}");
            std::fs::remove_file(&out).unwrap();
        }
    }
    // A file name is used as given; raw output is sparse, and a raw image
    // given a .qcow2 name says what it is.
    let named = sb.join("named.qcow2");
    let run = sb
        .restix([
            "-r",
            r,
            "dump",
            "--format",
            "raw",
            "--target",
            s(&named),
            &snap,
            "/disk.qcow2",
        ])
        .ok();
    assert!(run.out().contains("not qcow2"), "{}", run.describe());
    assert!(std::fs::read(&named).unwrap() == view);
    let allocated = std::fs::metadata(&named).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    });
    assert!(allocated.unwrap() < view.len() as u64 / 2, "sparse");
    // Standard output, when it is not a terminal.
    for format in ["raw", "qcow2"] {
        let run = sb
            .restix(["-r", r, "dump", "--format", format, &snap, "/disk.qcow2"])
            .ok();
        let piped = sb.join(format!("piped.{format}"));
        std::fs::write(&piped, &run.stdout).unwrap();
        assert!(guest_view(&piped) == view, "{format} on stdout");
    }
}

/// Progress on every image job: restic's status line on a terminal (a pty,
/// through `script`), `status` lines and a `summary` with --json.
#[test]
fn image_jobs_show_progress() {
    use restix_tests::images::{make_disk, snapshot_id as id_of};
    if !have_qemu() || !harness::is_restix() {
        return;
    }
    if !restix_testkit::have_program("script", &["--version"]) {
        restix_testkit::skip("script", "apt-get install bsdutils");
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let r = s(&repo);
    sb.restix(["-r", r, "init"]).ok();
    let disk = make_disk(&sb.join("disk.qcow2"), 24, 32);
    let snap = id_of(
        &sb.restix(["-r", r, "backup", "--json", "--image", s(&disk)])
            .ok(),
    );
    let bin = harness::restix_bin().display().to_string();
    let in_pty = |command: String| -> String {
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .current_dir(sb.path())
            .env("RESTIC_PASSWORD", harness::PASSWORD)
            .env("RESTIC_CACHE_DIR", sb.join("cache"))
            .env("HOME", sb.join("home"))
            .env_remove("RESTIC_PROGRESS_FPS")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run script");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{command}:\n{text}");
        text
    };
    let target = sb.join("out");
    std::fs::create_dir(&target).unwrap();
    let jobs = [
        (
            format!("{bin} -r {r} backup --image {} --changes none", s(&disk)),
            " files ",
        ),
        (
            format!(
                "{bin} -r {r} restore {snap} --format raw --target {}",
                s(&target)
            ),
            " files/dirs ",
        ),
        (
            format!(
                "{bin} -r {r} dump --format qcow2 --target {}/d.qcow2 {snap} /disk.qcow2",
                s(&target)
            ),
            " files/dirs ",
        ),
        (
            format!(
                "{bin} -r {r} restore-chain --target {}/c.raw {snap}",
                s(&target)
            ),
            " files/dirs ",
        ),
    ];
    for (command, unit) in jobs {
        let text = in_pty(command.clone());
        // The line is rewritten in place ("\r" + erase line), shows the
        // bytes done of the total, and is cleared at the end.
        let line = text
            .split("\r\x1b[2K")
            .find(|l| l.starts_with("[0:") && l.contains("100.00%"))
            .unwrap_or_else(|| panic!("no progress line for {command}:\n{text:?}"));
        assert!(line.contains(unit) && line.contains("total 1"), "{line:?}");
        // restore-chain counts each layer it restores, then the image.
        assert!(line.contains("MiB"), "{line:?}");
    }
    // --json: status lines, then the summary.
    for args in [
        vec![
            "-r",
            r,
            "--json",
            "backup",
            "--image",
            s(&disk),
            "--changes",
            "none",
        ],
        vec![
            "-r",
            r,
            "--json",
            "restore",
            &snap,
            "--format",
            "raw",
            "--target",
            s(&target),
        ],
    ] {
        let run = sb.restix(&args).ok();
        let lines = run.json_lines();
        let status = lines
            .iter()
            .find(|v| v["message_type"] == "status")
            .unwrap_or_else(|| panic!("no status line: {}", run.describe()));
        assert_eq!(status["total_files"], 1, "{status}");
        assert_eq!(status["total_bytes"], 32 * M, "{status}");
        assert_eq!(
            lines.last().map(|v| v["message_type"].clone()),
            Some("summary".into()),
            "{}",
            run.describe()
        );
    }
}

/// restore-chain's errors name the snapshot and the file of the layer, not
/// the temporary file it was restored to.
#[test]
fn restore_chain_errors_name_the_snapshot_and_file() {
    use restix_tests::images::{make_disk, snapshot_id as id_of};
    if !have_qemu() || !harness::is_restix() {
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let r = s(&repo);
    sb.restix(["-r", r, "init"]).ok();
    let full = make_disk(&sb.join("disk.0.0"), 25, 16);
    let not_qcow = sb.join("disk.0.1");
    std::fs::write(&not_qcow, vec![7u8; M]).unwrap();
    let full_id = id_of(
        &sb.restix(["-r", r, "backup", "--json", "--image", s(&full)])
            .ok(),
    );
    let bad_id = id_of(
        &sb.restix([
            "-r",
            r,
            "backup",
            "--json",
            "--image",
            s(&not_qcow),
            "--image-format",
            "raw",
        ])
        .ok(),
    );
    let run = sb
        .restix([
            "-r",
            r,
            "restore-chain",
            "--target",
            s(&sb.join("flat.raw")),
            &full_id,
            &bad_id,
        ])
        .code_is(1);
    let err = run.err();
    assert!(
        err.contains(&format!("/disk.0.1 of snapshot {}", &bad_id[..8])),
        "{}",
        run.describe()
    );
    assert!(!err.contains(".restix-chain"), "{}", run.describe());
}
