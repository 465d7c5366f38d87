//! restix over a long link (issue #20): SFTP and S3 through the harness's
//! delay line (tests/src/delay.rs), with restix's default concurrency
//! (several packs uploading and downloading at once, pipelined SFTP
//! requests). Correctness only, never speed (speed: `benches/run.sh
//! --distance`): the repository written through the line passes
//! `restic check --read-data`, restic restores it, and restix restores it
//! through the line byte for byte.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use restix_tests::delay::DelayLine;
use restix_tests::garage::BUCKET;
use restix_tests::harness::{Cmd, Sandbox, Tool};
use restix_tests::sshd::{Sshd, TestHome, HOST_ALIAS};

/// Round trip of the line: long enough that requests overlap, short enough
/// for CI.
const RTT: Duration = Duration::from_millis(30);

/// Files spread over several packs: 20 MiB of incompressible data in
/// 2 MiB files, plus small ones.
fn write_source(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..10 {
        let data: Vec<u8> = (0..2 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(dir.join(format!("big{i}.bin")), data).unwrap();
    }
    for i in 0..50 {
        fs::write(
            dir.join("sub").join(format!("s{i}.txt")),
            format!("small {i}\n"),
        )
        .unwrap();
    }
}

/// True when the trees hold the same files with the same bytes.
fn same_tree(a: &Path, b: &Path) -> bool {
    let mut names: Vec<_> = fs::read_dir(a).unwrap().flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if !same_tree(&entry.path(), &other) {
                return false;
            }
        } else if fs::read(entry.path()).unwrap() != fs::read(&other).unwrap_or_default() {
            return false;
        }
    }
    true
}

fn over_ssh(sb: &Sandbox, home: &TestHome, tool: Tool) -> Cmd {
    sb.cmd(tool)
        .env("HOME", home.path())
        .env("PATH", home.path_var())
        .env_remove("SSH_AUTH_SOCK")
}

#[test]
fn sftp_backup_and_restore_through_a_delay_line() {
    restix_tests::require_restic!();
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let line = DelayLine::start(SocketAddr::from(([127, 0, 0, 1], sshd.port())), RTT).unwrap();
    let home = sshd.home_via(line.port());
    let sb = Sandbox::new();
    let src = sb.join("src");
    write_source(&src);
    let repo = sshd.dir().join("far-repo");
    let url = format!("sftp:{}@{HOST_ALIAS}:{}", sshd.user(), repo.display());

    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", url.as_str(), "init"])
        .run()
        .ok();
    // Small packs, so that several upload (and later download) at once.
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", url.as_str(), "--pack-size", "4", "backup"])
        .arg(&src)
        .run()
        .ok();
    assert!(line.connections() >= 2, "one connection only");
    let (up, _) = line.bytes();
    assert!(up >= 20 << 20, "only {up} bytes went through the line");

    // The oracle reads every byte, on the plain local path.
    sb.restic(["-r", repo.to_str().unwrap(), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
    let by_restic = sb.join("by-restic");
    sb.cmd(Tool::Restic)
        .args([
            "-r",
            repo.to_str().unwrap(),
            "restore",
            "latest",
            "--target",
        ])
        .arg(&by_restic)
        .run()
        .ok();
    assert!(same_tree(
        &src,
        &by_restic.join(src.strip_prefix("/").unwrap())
    ));

    let by_restix = sb.join("by-restix");
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", url.as_str(), "restore", "latest", "--target"])
        .arg(&by_restix)
        .run()
        .ok();
    assert!(same_tree(
        &src,
        &by_restix.join(src.strip_prefix("/").unwrap())
    ));
}

#[test]
fn s3_backup_and_restore_through_a_delay_line() {
    restix_tests::require_restic!();
    let garage = restix_tests::require_garage!();
    let port: u16 = garage
        .endpoint(0)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let line = DelayLine::start(SocketAddr::from(([127, 0, 0, 1], port)), RTT).unwrap();
    let far = format!("s3:http://127.0.0.1:{}/{BUCKET}/far", line.port());
    let near = garage.repo_url("far");
    let sb = Sandbox::new();
    let src = sb.join("src");
    write_source(&src);
    let with_env = |cmd: Cmd| {
        garage
            .env()
            .into_iter()
            .fold(cmd, |cmd, (key, value)| cmd.env(key, value))
    };

    with_env(sb.cmd(Tool::Restix))
        .args(["-r", far.as_str(), "init"])
        .run()
        .ok();
    with_env(sb.cmd(Tool::Restix))
        .args(["-r", far.as_str(), "--pack-size", "4", "backup"])
        .arg(&src)
        .run()
        .ok();
    assert!(line.connections() >= 2, "one connection only");

    with_env(sb.cmd(Tool::Restic))
        .args(["-r", near.as_str(), "check", "--read-data"])
        .run()
        .ok()
        .stdout_has("no errors were found");
    let by_restix = sb.join("by-restix");
    with_env(sb.cmd(Tool::Restix))
        .args(["-r", far.as_str(), "restore", "latest", "--target"])
        .arg(&by_restix)
        .run()
        .ok();
    assert!(same_tree(
        &src,
        &by_restix.join(src.strip_prefix("/").unwrap())
    ));
}
