//! Lock interoperation with the real restic (issue #6, must-show 3;
//! spec: restic-format §14, cli §7, §8.1):
//! - an *exclusive* lock held by one program refuses the other's backup
//!   (restix: exit 11 and restic's message), both ways; `unlock` keeps it;
//! - the lock of a killed process (PID gone, same host) is stale: the
//!   other program's `unlock` removes it and work goes on.
//!
//! `key passwd` holds its exclusive lock while it waits for the new
//! password on stdin, which makes a lock holder that needs no timing.

use std::fs;
use std::io::Write;
use std::time::Duration;

use restix_tests::harness::{is_restix, s, wait_for_files, Sandbox, Tool};
use restix_tests::require_restic;

fn small_source(sb: &Sandbox) -> std::path::PathBuf {
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"lock test\n").unwrap();
    src
}

fn lock_count(repo: &std::path::Path) -> usize {
    fs::read_dir(repo.join("locks")).unwrap().count()
}

fn exclusive_lock_held_by(holder: Tool, other: Tool) {
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(holder, &repo, 2);
    let src = small_source(&sb);
    sb.run(holder, ["-r", s(&repo), "backup", s(&src)]).ok();

    let log = sb.join("holder.log");
    let mut child = sb
        .cmd(holder)
        .args(["-r", s(&repo), "key", "passwd"])
        .spawn_with_stdin(&log);
    let locks = wait_for_files(
        &repo.join("locks"),
        Duration::from_secs(120),
        "exclusive lock of `key passwd`",
    );

    let run = sb
        .run(other, ["-r", s(&repo), "backup", s(&src)])
        .fails()
        .stderr_has("repository is already locked exclusively by PID");
    if other == Tool::Restix && is_restix() {
        run.code_is(11);
    }
    // Alive: unlock keeps it.
    sb.run(other, ["-r", s(&repo), "unlock"]).ok();
    for lock in &locks {
        assert!(lock.exists(), "unlock removed the live lock");
    }

    // The holder gets its new password (the same one) and finishes.
    let mut stdin = child.stdin.take().unwrap();
    let written = stdin.write_all(b"geheim\n");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(
        written.is_ok() && status.success(),
        "{holder:?} key passwd failed ({status}):\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(lock_count(&repo), 0, "the holder removed its lock");
    sb.run(other, ["-r", s(&repo), "backup", s(&src)]).ok();
    sb.restic(["-r", s(&repo), "check"]).ok();
}

#[test]
fn restix_honours_an_exclusive_lock_of_restic() {
    require_restic!();
    exclusive_lock_held_by(Tool::Restic, Tool::Restix);
}

#[test]
fn restic_honours_an_exclusive_lock_of_restix() {
    require_restic!();
    exclusive_lock_held_by(Tool::Restix, Tool::Restic);
}

fn stale_lock_left_by(holder: Tool, other: Tool) {
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(other, &repo, 2);
    let log = sb.join("holder.log");
    let mut child = sb
        .cmd(holder)
        .args(["-r", s(&repo), "backup", "--stdin", "--stdin-filename", "x"])
        .spawn_with_stdin(&log);
    wait_for_files(
        &repo.join("locks"),
        Duration::from_secs(120),
        "lock of the running backup --stdin",
    );
    // SIGKILL: no chance to clean up; the lock file stays behind.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lock_count(&repo), 1, "the killed process left its lock");

    // Still a lock: an exclusive operation is refused until unlock.
    let run = sb
        .run(other, ["-r", s(&repo), "prune"])
        .fails()
        .stderr_has("repository is already locked by PID");
    if other == Tool::Restix && is_restix() {
        run.code_is(11);
    }
    sb.run(other, ["-r", s(&repo), "unlock"])
        .ok()
        .stdout_has("successfully removed");
    assert_eq!(lock_count(&repo), 0);
    sb.run(other, ["-r", s(&repo), "prune"]).ok();
}

#[test]
fn restix_unlock_removes_a_stale_lock_of_restic() {
    require_restic!();
    stale_lock_left_by(Tool::Restic, Tool::Restix);
}

#[test]
fn restic_unlock_removes_a_stale_lock_of_restix() {
    require_restic!();
    stale_lock_left_by(Tool::Restix, Tool::Restic);
}
