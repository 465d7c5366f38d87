//! Faults on the SFTP path, through the restix CLI against a private OpenSSH
//! sshd (tests/src/sshd.rs):
//!
//! * sshd is killed in the middle of a backup and restarted: restix either
//!   reconnects and completes, or fails cleanly naming what it was doing;
//!   either way the repository stays consistent for the real restic
//!   (`check --read-data`, after `restix unlock`) and the next backup works.
//! * Unknown and changed host keys are refused with a clear message and a
//!   non-zero exit, and nothing is learnt into known_hosts.
//! * `--limit-upload` is applied to SFTP uploads (only a very wide bound is
//!   asserted; the measured time is printed).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use restix_tests::harness::{pseudo_random_bytes, s, Cmd, Run, Sandbox, Tool};
use restix_tests::require_restic;
use restix_tests::sshd::{keygen, Sshd, TestHome};

/// A command for `tool` whose ssh setup is `home`.
fn over_ssh(sb: &Sandbox, home: &TestHome, tool: Tool) -> Cmd {
    sb.cmd(tool)
        .env("HOME", home.path())
        .env("PATH", home.path_var())
        .env_remove("SSH_AUTH_SOCK")
}

/// `sftp:USER@127.0.0.1:/abs` (the port comes from the home's ssh config).
fn short_url(sshd: &Sshd, path: &Path) -> String {
    format!("sftp:{}@127.0.0.1:{}", sshd.user(), path.display())
}

/// Pack files (64-hex names) stored under `repo/data`.
fn stored_packs(repo: &Path) -> usize {
    let Ok(dirs) = fs::read_dir(repo.join("data")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().len() == 64)
        .count()
}

#[test]
fn sshd_killed_mid_backup_leaves_a_clean_repository() {
    require_restic!();
    let Some(mut sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    // 4 x 40 MB of incompressible data: long enough to be cut in the middle.
    for i in 0..4u64 {
        fs::write(
            src.join(format!("part{i}.bin")),
            pseudo_random_bytes(0xfa17 + i, 40_000_000),
        )
        .unwrap();
    }
    let repo = sshd.dir().join("repo");
    let url = short_url(&sshd, &repo);
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "init"])
        .run()
        .ok();

    let log = sb.join("backup.log");
    let started = Instant::now();
    let mut child = over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "backup", s(&src)])
        .spawn_with_stdin(&log);
    drop(child.stdin.take());
    // Cut the connection once uploads are under way (and at least 1 s in).
    let deadline = Instant::now() + Duration::from_secs(60);
    while (stored_packs(&repo) == 0 || started.elapsed() < Duration::from_secs(1))
        && Instant::now() < deadline
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let running_at_kill = child.try_wait().unwrap().is_none();
    let packs_at_kill = stored_packs(&repo);
    sshd.kill();
    eprintln!(
        "sshd killed after {:?} ({packs_at_kill} packs stored, backup running: {running_at_kill})",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    sshd.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "restix backup hangs after the sshd restart:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "backup ended after {:?} with {status}; output:\n{output}",
        started.elapsed()
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal().is_none() && status.code() != Some(101) && !output.contains("panicked"),
        "restix crashed: {status}\n{output}"
    );
    if !status.success() {
        // A clear error: it names the server file or the repository it was
        // working on, not just a bare I/O error.
        assert!(
            output.contains(&repo.display().to_string())
                || output.contains("data/")
                || output.contains("index/")
                || output.contains("snapshots/")
                || output.contains("locks/"),
            "the error does not say which file failed:\n{output}"
        );
        // A process that failed may leave its lock behind; unlock removes it
        // (same host, dead PID).
        over_ssh(&sb, &home, Tool::Restix)
            .args(["-r", &url, "unlock"])
            .run()
            .ok();
    }
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &url, "check", "--read-data"])
        .run()
        .ok()
        .stdout_has("no errors were found");

    // The next backup succeeds and the repository stays clean.
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "backup", s(&src)])
        .run()
        .ok();
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &url, "check", "--read-data"])
        .run()
        .ok()
        .stdout_has("no errors were found");
    let snaps = over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &url, "snapshots", "--json"])
        .run()
        .ok()
        .json();
    let expected = if status.success() { 2 } else { 1 };
    assert_eq!(snaps.as_array().unwrap().len(), expected, "{snaps}");
}

fn refused(run: Run, what: &str) -> String {
    let run = run.fails();
    let err = run.err().to_lowercase();
    assert!(
        err.contains("host key"),
        "{what}: the error does not mention the host key:\n{}",
        run.describe()
    );
    run.err()
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let sb = Sandbox::new();
    let repo = sshd.dir().join("repo");
    let url = short_url(&sshd, &repo);
    let good = sshd.home();
    over_ssh(&sb, &good, Tool::Restix)
        .args(["-r", &url, "init"])
        .run()
        .ok();

    // Unknown: empty known_hosts. Refused, and the key is not learnt.
    let unknown = sshd.home();
    fs::write(unknown.known_hosts_path(), "").unwrap();
    let err = refused(
        over_ssh(&sb, &unknown, Tool::Restix)
            .args(["-r", &url, "snapshots"])
            .run(),
        "unknown host key",
    );
    eprintln!("unknown host key -> {err}");
    assert_eq!(fs::read_to_string(unknown.known_hosts_path()).unwrap(), "");

    // Changed: known_hosts records another key for [127.0.0.1]:PORT.
    let changed = sshd.home();
    let other = sb.join("other_host_key");
    keygen(&other, "someone-else");
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let recorded = format!("[127.0.0.1]:{} {}\n", sshd.port(), other_pub.join(" "));
    fs::write(changed.known_hosts_path(), &recorded).unwrap();
    let err = refused(
        over_ssh(&sb, &changed, Tool::Restix)
            .args(["-r", &url, "backup", s(sb.path())])
            .run(),
        "changed host key",
    );
    eprintln!("changed host key -> {err}");
    assert_eq!(
        fs::read_to_string(changed.known_hosts_path()).unwrap(),
        recorded
    );
    // Nothing was written to the repository by the refused backup.
    assert!(
        fs::read_dir(repo.join("snapshots"))
            .unwrap()
            .next()
            .is_none(),
        "a snapshot appeared"
    );
}

#[test]
fn limit_upload_slows_sftp_uploads() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("random-64m.bin"),
        pseudo_random_bytes(0x1117, 64 << 20),
    )
    .unwrap();
    let repo = sshd.dir().join("repo");
    let url = short_url(&sshd, &repo);
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "init"])
        .run()
        .ok();
    let started = Instant::now();
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "--limit-upload", "8192", "backup", s(&src)])
        .run()
        .ok();
    let elapsed = started.elapsed();
    eprintln!(
        "64 MiB over sftp with --limit-upload 8192 (KiB/s): {elapsed:?} \
         (about 8 s expected at the limit)"
    );
    // Only "the limit is applied at all": unlimited loopback takes well
    // under a second for the upload itself.
    assert!(
        elapsed > Duration::from_secs(4),
        "--limit-upload 8192 had no visible effect: {elapsed:?}"
    );
}
