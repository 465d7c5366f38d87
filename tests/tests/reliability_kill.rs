//! `restix backup` killed with SIGKILL at random points leaves a repository
//! the real `restic check --read-data` accepts, and the next backup works;
//! a flipped byte in a pack, index, snapshot or key file is detected.
//!
//! Leftovers of a killed backup: its lock file (removed by `restic unlock`,
//! which deletes locks of dead processes on this host) and pack files that no
//! index references. restic 0.14's `check` lists such packs as "not referenced
//! in any index" hints and still exits 0 with "no errors were found" (orphaned
//! packs are not counted as errors; `prune` removes them), so they are
//! accepted here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use restix_tests::harness::{self, Sandbox, Tool};

/// Seeded xorshift: reproducible "random" kill points and file contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            piece.copy_from_slice(&v[..piece.len()]);
        }
    }
}

/// ~60 MB of incompressible files (30 x 2 MB) in two folders.
fn make_source(dir: &Path, rng: &mut Rng) {
    let mut buf = vec![0u8; 2_000_000];
    for i in 0..30 {
        let sub = dir.join(format!("d{}", i % 2));
        std::fs::create_dir_all(&sub).unwrap();
        rng.fill(&mut buf);
        std::fs::write(sub.join(format!("f{i:02}.bin")), &buf).unwrap();
    }
}

fn restic_check(sb: &Sandbox, repo: &Path, read_data: bool, context: &str) {
    sb.restic(["-r", harness::s(repo), "unlock"]).ok();
    let mut args = vec!["-r", harness::s(repo), "check"];
    if read_data {
        args.push("--read-data");
    }
    let run = sb.restic(args);
    assert!(
        run.success() && run.out().contains("no errors were found"),
        "{context}: restic check is not clean:\n{}",
        run.describe()
    );
}

#[test]
fn sigkill_during_backup_leaves_a_checkable_repository() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let source = sb.join("src");
    make_source(&source, &mut rng);
    let template = sb.join("template");
    sb.restix(["init", "-r", harness::s(&template)]).ok();

    for round in 0..10 {
        let repo = sb.join(format!("repo{round}"));
        copy_dir(&template, &repo);
        let log = sb.join(format!("backup{round}.log"));
        let mut child = sb
            .cmd(Tool::Restix)
            .args(["-r", harness::s(&repo), "backup", harness::s(&source)])
            .spawn_with_stdin(&log);
        drop(child.stdin.take());
        let delay = Duration::from_millis(rng.next() % 1500);
        std::thread::sleep(delay);
        // Child::kill sends SIGKILL; an already finished backup is fine.
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {delay:?}: {status}");
        restic_check(
            &sb,
            &repo,
            true,
            &format!("round {round} (killed after {delay:?})"),
        );
        let next = sb.restix(["-r", harness::s(&repo), "backup", harness::s(&source)]);
        assert!(
            next.success(),
            "round {round}: the backup after the kill failed:\n{}",
            next.describe()
        );
        if round % 3 == 2 {
            restic_check(&sb, &repo, false, &format!("round {round}, next backup"));
        }
        let _ = std::fs::remove_dir_all(&repo);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// The first file (sorted) under `dir`, recursively.
fn first_file(dir: &Path) -> PathBuf {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no file in {}", dir.display()))
}

fn flip_middle_byte(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    // Files in a repository are read-only (restic writes them 0400/0444).
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
fn flipped_bytes_are_detected_and_named() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let mut rng = Rng(7);
    let source = sb.join("src");
    let mut buf = vec![0u8; 300_000];
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..4 {
        rng.fill(&mut buf);
        std::fs::write(source.join(format!("f{i}")), &buf).unwrap();
    }
    let template = sb.join("template");
    sb.restix(["init", "-r", harness::s(&template)]).ok();
    sb.restix(["-r", harness::s(&template), "backup", harness::s(&source)])
        .ok();

    for kind in ["data", "index", "snapshots", "keys"] {
        let repo = sb.join(format!("repo-{kind}"));
        copy_dir(&template, &repo);
        let victim = first_file(&repo.join(kind));
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        flip_middle_byte(&victim);
        let run = sb.restix(["-r", harness::s(&repo), "check", "--read-data"]);
        let text = format!("{}\n{}", run.out(), run.err());
        eprintln!("{kind}: {}", run.describe());
        assert!(
            !run.success() && !run.crashed(),
            "{kind}/{name}: a flipped byte went unnoticed or crashed restix:\n{}",
            run.describe()
        );
        if kind == "keys" {
            // The only key no longer opens: restic says "wrong password or
            // no key found" without naming the key file, and so does restix.
            assert!(
                text.contains("wrong password") || text.contains(&name[..8]),
                "{kind}/{name}: unclear error:\n{}",
                run.describe()
            );
        } else {
            assert!(
                text.contains(&name[..8]),
                "{kind}/{name}: the damaged file is not named:\n{}",
                run.describe()
            );
        }
        let _ = std::fs::remove_dir_all(&repo);
    }
}
