//! Locks across programs: a lock held by one program must stop the other's
//! exclusive operations (`prune`), and `unlock` must not remove a live lock
//! (restic-format §14; cli §7). The lock is held by a `backup --stdin` that
//! waits for its input.

use std::fs;
use std::io::Write;
use std::time::Duration;

use restix_tests::harness::{is_restix, s, wait_for_files, Sandbox, Tool};
use restix_tests::require_restic;

fn lock_held_by(holder: Tool, other: Tool) {
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(holder, &repo, 2);
    let log = sb.join("holder.log");
    let mut child = sb
        .cmd(holder)
        .args([
            "-r",
            s(&repo),
            "backup",
            "--stdin",
            "--stdin-filename",
            "streamed.txt",
        ])
        .spawn_with_stdin(&log);
    let locks = wait_for_files(
        &repo.join("locks"),
        Duration::from_secs(120),
        "lock of the running backup --stdin",
    );

    // An exclusive operation by the other program must be refused.
    let run = sb
        .run(other, ["-r", s(&repo), "prune"])
        .fails()
        .stderr_has("repository is already locked");
    if other == Tool::Restix && is_restix() {
        run.code_is(11);
    }
    // unlock removes stale locks only: this one is alive. (restic checks
    // that the lock's PID is alive by sending it SIGHUP, so the holder must
    // survive SIGHUP.)
    sb.run(other, ["-r", s(&repo), "unlock"]).ok();
    for lock in &locks {
        assert!(
            lock.exists(),
            "unlock removed the live lock {}",
            lock.display()
        );
    }
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "the lock holder ({holder:?}) died during `{other:?} unlock` ({status}); restic \
             probes a lock's PID with SIGHUP, so a lock holder must ignore SIGHUP. Its output:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    // Let the holder finish; its snapshot is readable by the other.
    let mut stdin = child.stdin.take().unwrap();
    let written = stdin.write_all(b"streamed through stdin\n");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(
        written.is_ok() && status.success(),
        "backup --stdin failed ({status}, stdin write: {written:?}):\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        fs::read_dir(repo.join("locks")).unwrap().count(),
        0,
        "the holder removed its lock"
    );
    let out = sb
        .run(other, ["-r", s(&repo), "dump", "latest", "/streamed.txt"])
        .ok();
    assert_eq!(out.stdout, b"streamed through stdin\n");
    sb.restic(["-r", s(&repo), "check"]).ok();
}

#[test]
fn restix_honours_a_lock_held_by_restic() {
    require_restic!();
    lock_held_by(Tool::Restic, Tool::Restix);
}

#[test]
fn restic_honours_a_lock_held_by_restix() {
    require_restic!();
    lock_held_by(Tool::Restix, Tool::Restic);
}
