//! `restix backup` and `restix prune` killed with SIGKILL at seeded random
//! points leave a repository that the real `restic check --read-data`
//! accepts, and the next backup (or prune) completes; a flipped byte in a
//! pack, index, snapshot or key file is detected and named.
//!
//! * Backup, local backend: [`LOCAL_BACKUP_KILLS`] kills (default 50).
//! * Backup over SFTP (private OpenSSH sshd, `tests/src/sshd.rs`):
//!   [`SFTP_BACKUP_KILLS`] kills (default 50; each round also pays for ssh
//!   handshakes). restic checks the same folder through its local path.
//! * Prune, local backend: [`PRUNE_KILLS`] kills (default 50).
//!
//! Every kill is followed by `restic unlock` and `restic check --read-data`
//! (the repositories stay a few tens of MB, so reading all data each time
//! is affordable), then by an uninterrupted backup (or prune) that must
//! succeed. `RESTIX_KILL_ROUNDS=<n>` overrides all three counts (e.g. for a
//! longer soak run).
//!
//! Kill delays are drawn uniformly from zero to the measured duration of an
//! uninterrupted run of the same kind, so they land in every phase: opening
//! the key, locking, loading the index, reading the parent, chunking and
//! uploading packs, writing the index and snapshot, unlocking; for prune:
//! listing, planning, repacking, writing the new index, deleting old index
//! files and packs. Several kills run in sequence on one repository (the
//! source changes between rounds so each backup has new data to upload), and
//! a repository is replaced by a fresh copy every [`ROUNDS_PER_REPO`] rounds
//! to keep `check --read-data` fast.
//!
//! Leftovers of a killed run: its lock file (removed by `restic unlock`,
//! which deletes locks of dead processes on this host) and pack files that no
//! index references. restic 0.14's `check` lists such packs as "not referenced
//! in any index" hints and still exits 0 with "no errors were found" (orphaned
//! packs are not counted as errors; `prune` removes them), so they are
//! accepted here. A dangling index entry, a missing tree or an unreadable
//! snapshot fails the check and the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use restix_tests::harness::{self, Cmd, Sandbox, Tool};
use restix_tests::sshd::{Sshd, TestHome};

/// Kills of `restix backup` on the local backend.
const LOCAL_BACKUP_KILLS: usize = 50;
/// Kills of `restix backup` over SFTP.
const SFTP_BACKUP_KILLS: usize = 50;
/// Kills of `restix prune` on the local backend.
const PRUNE_KILLS: usize = 50;
/// Rounds on one repository before a fresh copy of the template is used.
const ROUNDS_PER_REPO: usize = 10;
/// Files in the source tree and bytes per file (~6 MB in all).
const SOURCE_FILES: usize = 24;
const FILE_SIZE: usize = 256 * 1024;
/// Files rewritten with new content before each round.
const CHANGED_PER_ROUND: usize = 8;

fn rounds(default: usize) -> usize {
    std::env::var("RESTIX_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeded xorshift: reproducible "random" kill points and file contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            piece.copy_from_slice(&v[..piece.len()]);
        }
    }
}

/// [`SOURCE_FILES`] incompressible files in three folders.
fn make_source(dir: &Path, rng: &mut Rng) {
    for i in 0..SOURCE_FILES {
        rewrite_file(dir, i, rng);
    }
}

fn rewrite_file(dir: &Path, i: usize, rng: &mut Rng) {
    let sub = dir.join(format!("d{}", i % 3));
    std::fs::create_dir_all(&sub).unwrap();
    let mut buf = vec![0u8; FILE_SIZE];
    rng.fill(&mut buf);
    std::fs::write(sub.join(format!("f{i:02}.bin")), &buf).unwrap();
}

/// New content for [`CHANGED_PER_ROUND`] files, so the next backup uploads
/// about 2 MB and leaves partly used packs behind for prune.
fn change_source(dir: &Path, rng: &mut Rng) {
    for _ in 0..CHANGED_PER_ROUND {
        let i = rng.below(SOURCE_FILES as u64) as usize;
        rewrite_file(dir, i, rng);
    }
}

/// One repository as restix reaches it (`-r` argument, ssh home for SFTP)
/// and as a local folder for the real restic.
struct Target<'a> {
    sb: &'a Sandbox,
    url: String,
    local: PathBuf,
    home: Option<TestHome>,
}

impl Target<'_> {
    /// `restix -r <url>` with the right ssh setup.
    fn restix(&self) -> Cmd {
        let cmd = self.sb.cmd(Tool::Restix);
        let cmd = match &self.home {
            Some(home) => cmd
                .env("HOME", home.path())
                .env("PATH", home.path_var())
                .env_remove("SSH_AUTH_SOCK"),
            None => cmd,
        };
        cmd.args(["-r", &self.url])
    }

    /// `restic unlock` (stale locks of killed runs) and `restic check`
    /// (with `--read-data`) on the local path: must be clean.
    fn check_clean(&self, context: &str) {
        let repo = harness::s(&self.local);
        self.sb.restic(["-r", repo, "unlock"]).ok();
        let run = self.sb.restic(["-r", repo, "check", "--read-data"]);
        assert!(
            run.success() && run.out().contains("no errors were found"),
            "{context}: restic check --read-data is not clean:\n{}",
            run.describe()
        );
    }

    /// Runs `args` to completion; panics with the output on failure.
    fn must_succeed(&self, args: &[&str], context: &str) -> Duration {
        let started = Instant::now();
        let run = self.restix().args(args).run();
        assert!(
            run.success(),
            "{context}: restix {} failed:\n{}",
            args.join(" "),
            run.describe()
        );
        started.elapsed()
    }

    /// Starts `args`, sends SIGKILL after `delay` (unless it ended first),
    /// and returns a line describing what happened. A crash other than our
    /// SIGKILL fails the test.
    fn run_and_kill(&self, args: &[&str], delay: Duration, log: &Path) -> String {
        let mut child = self.restix().args(args).spawn_with_stdin(log);
        drop(child.stdin.take());
        std::thread::sleep(delay);
        let ended_before = child.try_wait().unwrap();
        // Child::kill sends SIGKILL.
        let _ = child.kill();
        let status = child.wait().unwrap();
        let output = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !output.contains("panicked") && status.code() != Some(101),
            "restix {} crashed:\n{output}",
            args.join(" ")
        );
        if let Some(done) = ended_before {
            format!("ended before the kill ({done})")
        } else {
            format!(
                "killed; repository now has {} packs, {} index files, {} snapshots",
                count_files(&self.local.join("data")),
                count_files(&self.local.join("index")),
                count_files(&self.local.join("snapshots"))
            )
        }
    }
}

/// Files with 64-hex names under `dir` (recursively).
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_str().is_some_and(harness::is_hex64) {
                n += 1;
            }
        }
    }
    n
}

/// Kill series for `restix backup`: `kills` rounds on repositories made by
/// `fresh_repo(n)` (a new one every [`ROUNDS_PER_REPO`] rounds).
fn backup_kill_series<'a>(
    sb: &'a Sandbox,
    name: &str,
    kills: usize,
    seed: u64,
    fresh_repo: &dyn Fn(usize) -> Target<'a>,
) {
    let mut rng = Rng(seed);
    let source = sb.join(format!("src-{name}"));
    make_source(&source, &mut rng);
    let src = harness::s(&source).to_string();
    let backup = ["backup", src.as_str()];

    // An uninterrupted run of the same size as a round gives the range of
    // kill delays (the first backup uploads everything; time the second).
    let warm = fresh_repo(usize::MAX);
    warm.must_succeed(&backup, &format!("{name}: first backup"));
    change_source(&source, &mut rng);
    let span = warm.must_succeed(&backup, &format!("{name}: timing backup"));
    let span_ms = (span.as_millis() as u64).max(50);
    eprintln!("{name}: an uninterrupted round takes {span:?}");

    let started = Instant::now();
    let mut target = None;
    let mut ended_early = 0;
    for round in 0..kills {
        if round % ROUNDS_PER_REPO == 0 {
            let t = fresh_repo(round / ROUNDS_PER_REPO);
            t.must_succeed(&backup, &format!("{name}: initial backup"));
            target = Some(t);
        }
        let t = target.as_ref().unwrap();
        change_source(&source, &mut rng);
        let delay = Duration::from_millis(rng.below(span_ms));
        let log = sb.join(format!("{name}-{round}.log"));
        let what = t.run_and_kill(&backup, delay, &log);
        if what.starts_with("ended") {
            ended_early += 1;
        }
        eprintln!("{name} round {round}: after {delay:?}: {what}");
        let context = format!("{name} round {round} (kill after {delay:?}: {what})");
        t.check_clean(&context);
        t.must_succeed(&backup, &format!("{context}, next backup"));
    }
    // Checked once more after the last round's completed backup.
    if let Some(t) = &target {
        t.check_clean(&format!("{name}: after the last round"));
    }
    eprintln!(
        "{name}: {kills} rounds ({ended_early} ended before their kill) in {:?}",
        started.elapsed()
    );
}

/// An initialised repository whose only key uses cheap scrypt parameters
/// (N=128, r=1, as restic's own tests), so that the hundreds of restic and
/// restix runs below do not spend their time deriving keys.
fn local_template(sb: &Sandbox) -> PathBuf {
    let template = sb.join("template");
    sb.restix(["init", "-r", harness::s(&template)]).ok();
    harness::use_cheap_key(&template);
    template
}

#[test]
fn sigkill_during_backup_leaves_a_checkable_repository() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let template = local_template(&sb);
    let fresh = |n: usize| {
        let local = sb.join(format!("repo-local-{n}"));
        harness::copy_dir(&template, &local);
        Target {
            sb: &sb,
            url: harness::s(&local).to_string(),
            local,
            home: None,
        }
    };
    backup_kill_series(
        &sb,
        "local",
        rounds(LOCAL_BACKUP_KILLS),
        0x5eed_1234_abcd_0042,
        &fresh,
    );
}

#[test]
fn sigkill_during_sftp_backup_leaves_a_checkable_repository() {
    harness::require_restic!();
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let template = local_template(&sb);
    let fresh = |n: usize| {
        let local = sshd.dir().join(format!("repo-sftp-{n}"));
        harness::copy_dir(&template, &local);
        Target {
            sb: &sb,
            url: format!("sftp:{}@127.0.0.1:{}", sshd.user(), local.display()),
            local,
            home: Some(home.clone()),
        }
    };
    backup_kill_series(
        &sb,
        "sftp",
        rounds(SFTP_BACKUP_KILLS),
        0x0051_f7b0_c4a1_1e55,
        &fresh,
    );
}

#[test]
fn sigkill_during_prune_leaves_a_checkable_repository() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let template = local_template(&sb);
    let mut rng = Rng(0x9b0e_2f11_7700_0d0d);
    let source = sb.join("src-prune");
    make_source(&source, &mut rng);
    let src = harness::s(&source).to_string();
    let backup = ["backup", src.as_str()];
    let forget = ["forget", "--keep-last", "1"];
    let prune = ["prune"];
    let fresh = |n: usize| {
        let local = sb.join(format!("repo-prune-{n}"));
        harness::copy_dir(&template, &local);
        let t = Target {
            sb: &sb,
            url: harness::s(&local).to_string(),
            local,
            home: None,
        };
        t.must_succeed(&backup, "prune: initial backup");
        t
    };

    // Time one uninterrupted prune of a round's size.
    let warm = fresh(usize::MAX);
    change_source(&source, &mut rng);
    warm.must_succeed(&backup, "prune: timing backup");
    warm.must_succeed(&forget, "prune: timing forget");
    let span = warm.must_succeed(&prune, "prune: timing prune");
    let span_ms = (span.as_millis() as u64).max(50);
    eprintln!("prune: an uninterrupted prune takes {span:?}");

    let kills = rounds(PRUNE_KILLS);
    let started = Instant::now();
    let mut target = None;
    let mut ended_early = 0;
    for round in 0..kills {
        if round % ROUNDS_PER_REPO == 0 {
            target = Some(fresh(round / ROUNDS_PER_REPO));
        }
        let t = target.as_ref().unwrap();
        change_source(&source, &mut rng);
        t.must_succeed(&backup, &format!("prune round {round}: backup"));
        t.must_succeed(&forget, &format!("prune round {round}: forget"));
        let delay = Duration::from_millis(rng.below(span_ms));
        let log = sb.join(format!("prune-{round}.log"));
        let what = t.run_and_kill(&prune, delay, &log);
        if what.starts_with("ended") {
            ended_early += 1;
        }
        eprintln!("prune round {round}: after {delay:?}: {what}");
        let context = format!("prune round {round} (kill after {delay:?}: {what})");
        t.check_clean(&context);
        t.must_succeed(&prune, &format!("{context}, next prune"));
    }
    if let Some(t) = &target {
        t.check_clean("prune: after the last round");
    }
    eprintln!(
        "prune: {kills} rounds ({ended_early} ended before their kill) in {:?}",
        started.elapsed()
    );
}

/// Files under `dir`, recursively, sorted by size then name.
fn files_by_size(dir: &Path) -> Vec<PathBuf> {
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
    files.sort_by_key(|p| (std::fs::metadata(p).unwrap().len(), p.clone()));
    assert!(!files.is_empty(), "no file in {}", dir.display());
    files
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

/// Every file restored under `target` has exactly its source content:
/// nothing damaged is written as if it were good. Returns how many files
/// were restored.
fn restored_files_are_intact(source: &Path, target: &Path, context: &str) -> usize {
    let restored = harness::restored_path(target, source);
    let mut n = 0;
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let out = restored.join(&name);
        if let Ok(data) = std::fs::read(&out) {
            let want = std::fs::read(entry.path()).unwrap();
            assert!(
                data == want,
                "{context}: {} was restored with damaged content",
                out.display()
            );
            n += 1;
        }
    }
    n
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
    let template = local_template(&sb);
    sb.restix(["-r", harness::s(&template), "backup", harness::s(&source)])
        .ok();
    let snapshots = files_by_size(&template.join("snapshots"));
    let snap = snapshots[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // The data pack is the largest pack, the tree pack the smallest.
    for (kind, folder, largest) in [
        ("data pack", "data", true),
        ("tree pack", "data", false),
        ("index", "index", false),
        ("snapshot", "snapshots", false),
        ("key", "keys", false),
    ] {
        let repo = sb.join(format!("repo-{}", kind.replace(' ', "-")));
        harness::copy_dir(&template, &repo);
        let files = files_by_size(&repo.join(folder));
        let victim = if largest {
            files.last().unwrap().clone()
        } else {
            files[0].clone()
        };
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
        if kind == "key" {
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

        // A restore fails with a non-zero exit, and whatever it wrote is
        // intact (a file whose blob is damaged is not left behind as good).
        // `--no-cache`: every copy has the template's repository ID, so the
        // cache the backup filled holds the intact index and snapshot, and
        // a restore would use them (as restic uses its cached copies).
        let target = sb.join(format!("target-{}", kind.replace(' ', "-")));
        let run = sb.restix([
            "-r",
            harness::s(&repo),
            "--no-cache",
            "restore",
            &snap,
            "--target",
            harness::s(&target),
        ]);
        eprintln!("{kind} restore: {}", run.describe());
        assert!(
            !run.success() && !run.crashed(),
            "{kind}/{name}: restore did not fail cleanly:\n{}",
            run.describe()
        );
        let text = format!("{}\n{}", run.out(), run.err());
        assert!(
            text.contains(&name[..8])
                || text.contains("wrong password")
                || (kind == "data pack" && text.contains("f0")),
            "{kind}/{name}: restore does not name the damage:\n{}",
            run.describe()
        );
        let intact = restored_files_are_intact(&source, &target, kind);
        eprintln!("{kind}: {intact} intact files restored");
        if kind == "data pack" {
            // Each 300 KB file is one blob: only the damaged one is missing,
            // the rest of the restore went on.
            assert_eq!(
                intact, 3,
                "{kind}: the undamaged files were not all restored"
            );
        }
        let _ = std::fs::remove_dir_all(&repo);
    }
}
