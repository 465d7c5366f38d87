//! A replay of OpenNebula's restic backup datastore driver over SFTP
//! (spec: callers §1), with the exact command shapes the driver renders:
//! every option before the subcommand, `'--name=value'` words,
//! `--limit-upload=-1 --limit-download=-1` on every command,
//! `--option=sftp.connections=8 --compression=max` on backup/dump.
//!
//! The lifecycle: `stats || init` (creating missing parents), a full qcow2
//! backup (`disk.0.0` + base64 `vm.xml`) and two incremental qcow2 overlays
//! (qemu-img create -b + qemu-io writes), `snapshots --no-lock --json` of the
//! chain, `dump` of every file, the chain rebuilt with
//! `qemu-img rebase -u` + `convert` and compared with the source disk, a
//! backup and a dump refused by an exclusive lock and retried on exit code 11
//! (restic 0.14: on the older stderr regex), `forget --prune --max-unused=0`,
//! a backup cancelled with SIGTERM then `unlock` and a clean `check`.
//!
//! [`run_replay`] runs once with restix and once with the real restic 0.14,
//! which proves the replay itself is honest. A failing step is named in the
//! panic message (`step N <name>`).

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use restix_tests::harness::{pseudo_random_bytes, s, wait_for_files, Run, Sandbox, Tool};
use restix_tests::sshd::{Sshd, TestHome};

const VM_ID: u32 = 42;
/// Driver retries (`run_with_lock_retry`: 60 tries); the pause is shortened
/// from 5-15 s to keep the test fast.
const LOCK_RETRIES: usize = 60;
const LOCK_PAUSE: Duration = Duration::from_millis(300);

fn tool_name(tool: Tool) -> &'static str {
    match tool {
        Tool::Restix => "restix",
        Tool::Restic => "restic-0.14",
    }
}

/// One datastore configuration and the program playing `$RESTIC_BIN`.
struct Driver<'a> {
    sb: &'a Sandbox,
    home: &'a TestHome,
    tool: Tool,
    /// `--repo=` value: `sftp:USER@127.0.0.1:/…/datastores/100/42`.
    repo: String,
    /// `RESTIC_BWLIMIT` (the string the attribute holds).
    bwlimit: String,
    step: Cell<usize>,
}

impl Driver<'_> {
    fn begin(&self, what: &str) {
        self.step.set(self.step.get() + 1);
        eprintln!(
            "[{}] step {}: {what}",
            tool_name(self.tool),
            self.step.get()
        );
    }

    fn context(&self) -> String {
        format!(
            "OpenNebula replay with {}: step {}",
            tool_name(self.tool),
            self.step.get()
        )
    }

    /// `restic.rb#restic(cmd, opts)`: caller options, limits, backend
    /// option (backup/restore/dump), compression (same), `--repo=`, cmd.
    fn argv(&self, opts: &[&str], cmd: &[&str], bwlimit: &str) -> Vec<String> {
        let mut words: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
        words.push(format!("--limit-upload={bwlimit}"));
        words.push(format!("--limit-download={bwlimit}"));
        let name = cmd.first().copied().unwrap_or_default();
        if matches!(name, "backup" | "restore" | "dump") {
            words.push("--option=sftp.connections=8".into());
            words.push("--compression=max".into());
        }
        words.push(format!("--repo={}", self.repo));
        words.extend(cmd.iter().map(|c| c.to_string()));
        words
    }

    /// The confined environment: only RESTIC_PASSWORD (from the sandbox)
    /// and the ssh setup of oneadmin's home; the default cache is used.
    fn command(&self, argv: &[String]) -> restix_tests::harness::Cmd {
        self.sb
            .cmd(self.tool)
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env_remove("RESTIC_CACHE_DIR")
            .env("PATH", self.home.path_var())
            .env_remove("SSH_AUTH_SOCK")
            .args(argv)
    }

    fn run(&self, opts: &[&str], cmd: &[&str]) -> Run {
        self.command(&self.argv(opts, cmd, &self.bwlimit)).run()
    }

    /// Run and require exit 0, naming the step on failure.
    #[track_caller]
    fn ok(&self, opts: &[&str], cmd: &[&str]) -> Run {
        let run = self.run(opts, cmd);
        assert!(
            run.success(),
            "{} failed:\n{}",
            self.context(),
            run.describe()
        );
        run
    }

    /// `run_with_lock_retry`: repeat while the repository is locked.
    /// Returns the successful run and the number of locked attempts.
    #[track_caller]
    fn ok_with_lock_retry(&self, opts: &[&str], cmd: &[&str]) -> (Run, usize) {
        let mut locked = 0;
        for _ in 0..LOCK_RETRIES {
            let run = self.run(opts, cmd);
            if self.is_locked(&run) {
                locked += 1;
                std::thread::sleep(LOCK_PAUSE);
                continue;
            }
            assert!(
                run.success(),
                "{} failed:\n{}",
                self.context(),
                run.describe()
            );
            return (run, locked);
        }
        panic!(
            "{}: still locked after {LOCK_RETRIES} tries",
            self.context()
        );
    }

    /// Exit code 11 (restic >= 0.17, restix), or for restic 0.14 the
    /// driver's older test: `unable to create lock.+locked exclusively`.
    fn is_locked(&self, run: &Run) -> bool {
        let err = run.err();
        let message = err
            .lines()
            .any(|l| l.contains("unable to create lock") && l.contains("locked exclusively"));
        match self.tool {
            Tool::Restix => run.code == Some(11),
            Tool::Restic => !run.success() && message,
        }
    }

    /// `backup`: the glob `'vm_dir'/disk.*` expanded by bash, then vm.xml;
    /// returns the `INFO` line's first two words (snapshot id, bytes).
    #[track_caller]
    fn backup(&self, vm_dir: &Path, extra: &[&str]) -> (String, u64) {
        let (run, _) = self.backup_with_retry(vm_dir, extra, false);
        parse_backup_output(&self.context(), &run)
    }

    fn backup_argv(&self, vm_dir: &Path) -> Vec<String> {
        let mut cmd = vec!["backup".to_string()];
        cmd.extend(disk_glob(vm_dir).iter().map(|p| s(p).to_string()));
        cmd.push(s(&vm_dir.join("vm.xml")).to_string());
        cmd
    }

    #[track_caller]
    fn backup_with_retry(&self, vm_dir: &Path, extra: &[&str], retry: bool) -> (Run, usize) {
        let tag = format!("--tag=one-{VM_ID}");
        let mut opts = vec!["--force", "--json", tag.as_str()];
        opts.extend_from_slice(extra);
        let cmd = self.backup_argv(vm_dir);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        if retry {
            self.ok_with_lock_retry(&opts, &cmd)
        } else {
            (self.ok(&opts, &cmd), 0)
        }
    }

    /// `dump '<short_id>' '<abs path>' > file`, retried on lock.
    #[track_caller]
    fn dump(&self, short_id: &str, path: &Path) -> Vec<u8> {
        let (run, _) = self.ok_with_lock_retry(&["--quiet"], &["dump", short_id, s(path)]);
        run.stdout
    }
}

/// `disk.*` in `dir`, sorted like bash's glob.
fn disk_glob(dir: &Path) -> Vec<PathBuf> {
    let mut disks: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("disk."))
        })
        .collect();
    disks.sort();
    disks
}

/// The driver's parsing: `jq -r '.snapshot_id + " " + (.total_bytes_processed|tostring)'`
/// on every line (each must be JSON), and the last line is the summary.
fn parse_backup_output(context: &str, run: &Run) -> (String, u64) {
    let out = run.out();
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut info = Vec::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{context}: backup stdout line is not JSON ({e}): {line:?}\n{}",
                run.describe()
            )
        });
        if let (Some(id), Some(bytes)) = (
            value["snapshot_id"].as_str(),
            value["total_bytes_processed"].as_u64(),
        ) {
            info.push((id.to_string(), bytes, value["message_type"].clone()));
        }
    }
    assert_eq!(
        info.len(),
        1,
        "{context}: exactly one line must carry snapshot_id + total_bytes_processed:\n{}",
        run.describe()
    );
    let (id, bytes, kind) = info.remove(0);
    assert_eq!(kind, "summary", "{context}: {}", run.describe());
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        last["snapshot_id"].as_str(),
        Some(id.as_str()),
        "{context}: the summary must be the last line"
    );
    assert!(
        id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{context}: snapshot_id {id:?}"
    );
    (id, bytes)
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_available() -> bool {
    ["qemu-img", "qemu-io"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    })
}

/// A 32 MiB (virtual) qcow2 full backup image: random and zero regions.
fn make_full_disk(raw: &Path, qcow2: &Path) {
    let mut data = vec![0u8; 32 << 20];
    for (offset, len, seed) in [
        (0usize, 3 << 20, 1u64),
        (9 << 20, 5 << 20, 2),
        (31 << 20, 1 << 19, 3),
    ] {
        data[offset..offset + len].copy_from_slice(&pseudo_random_bytes(seed, len));
    }
    fs::write(raw, data).unwrap();
    sh(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(raw), s(qcow2)],
    );
}

/// `disk.0.<n>`: a qcow2 overlay over `backing` with a few guest writes.
fn make_increment(backing: &Path, overlay: &Path, n: u8) {
    sh(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            s(backing),
            s(overlay),
        ],
    );
    let w1 = format!("write -P 0x{:02x} {}M 1M", 0x30 + n, u32::from(n) * 2);
    let w2 = format!("write -z {}M 512k", 10 + u32::from(n));
    let w3 = format!("write -P 0x{:02x} 20M 64k", 0x60 + n);
    sh(
        "qemu-io",
        &["-f", "qcow2", "-c", &w1, "-c", &w2, "-c", &w3, s(overlay)],
    );
}

/// Holds an exclusive lock: the real restic's `key passwd` locks the
/// repository exclusively, then waits for the new password on stdin.
/// Closing stdin makes it fail ("an empty password") and remove its lock.
struct ExclusiveLockHolder {
    child: Child,
}

impl ExclusiveLockHolder {
    fn start(sb: &Sandbox, home: &TestHome, repo: &str, repo_dir: &Path) -> Self {
        let child = sb
            .cmd(Tool::Restic)
            .env("HOME", home.path())
            .env("PATH", home.path_var())
            .env_remove("SSH_AUTH_SOCK")
            .args(["-r", repo, "key", "passwd"])
            .spawn_with_stdin(&sb.join("lock-holder.log"));
        wait_for_files(
            &repo_dir.join("locks"),
            Duration::from_secs(30),
            "the exclusive lock of `restic key passwd`",
        );
        ExclusiveLockHolder { child }
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for ExclusiveLockHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock_files(repo_dir: &Path) -> Vec<String> {
    fs::read_dir(repo_dir.join("locks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn run_replay(tool: Tool) {
    if restix_tests::harness::restic_bin().is_none() {
        eprintln!("skipped: restic not found in PATH (needed for the lock holder)");
        return;
    }
    if !qemu_available() {
        eprintln!("skipped: qemu-img/qemu-io not installed");
        return;
    }
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    // Datastore 100 on the backup server; the repository per VM is BASE/42.
    let base = sshd.dir().join("var/lib/one/datastores/100");
    let repo_dir = base.join(VM_ID.to_string());
    let repo = format!("sftp:{}@127.0.0.1:{}", sshd.user(), repo_dir.display());
    let vm_dir = sb.join(format!("var/lib/one/datastores/0/{VM_ID}/backup"));
    let work = sb.join("work");
    fs::create_dir_all(&vm_dir).unwrap();
    fs::create_dir_all(&work).unwrap();
    let d = Driver {
        sb: &sb,
        home: &home,
        tool,
        repo: repo.clone(),
        bwlimit: "-1".into(),
        step: Cell::new(0),
    };

    // (a) stats || init, on a repository whose parents do not exist yet.
    d.begin("stats (existence probe) on a missing repository");
    let probe = d.run(&[], &["stats"]);
    assert!(
        !probe.success() && !probe.crashed(),
        "{}: stats must fail cleanly on a missing repository:\n{}",
        d.context(),
        probe.describe()
    );
    d.begin("init (creates missing parents over sftp)");
    d.ok(&[], &["init"]);
    assert!(repo_dir.join("config").is_file());
    d.begin("stats on the existing repository");
    d.ok(&[], &["stats"]);
    d.begin("init on an existing repository must fail");
    let config_before = fs::read(repo_dir.join("config")).unwrap();
    let again = d.run(&[], &["init"]);
    assert!(
        !again.success() && !again.crashed(),
        "{}: {}",
        d.context(),
        again.describe()
    );
    assert_eq!(fs::read(repo_dir.join("config")).unwrap(), config_before);

    // (b) full backup: disk.0.0 + vm.xml (base64 of the VM template).
    let vm_xml = "PFZNPjxJRD40MjwvSUQ+PE5BTUU+YWxwaW5lPC9OQU1FPjxURU1QTEFURT48\nRElTSz48L0RJU0s+PC9URU1QTEFURT48L1ZNPg==\n";
    fs::write(vm_dir.join("vm.xml"), vm_xml).unwrap();
    make_full_disk(&work.join("source.raw"), &vm_dir.join("disk.0.0"));
    let mut chain: Vec<(String, PathBuf)> = Vec::new();
    d.begin("backup of the full disk.0.0 + vm.xml");
    let (id, bytes) = d.backup(&vm_dir, &[]);
    assert!(
        bytes > 8 << 20,
        "{}: total_bytes_processed {bytes}",
        d.context()
    );
    let kept = work.join("disk.0.0");
    fs::rename(vm_dir.join("disk.0.0"), &kept).unwrap();
    chain.push((id[..8].to_string(), kept));

    // Two increments: qcow2 overlays on the previous image, backed up alone.
    for n in 1..=2u8 {
        let name = format!("disk.0.{n}");
        let previous = chain.last().unwrap().1.clone();
        make_increment(&previous, &vm_dir.join(&name), n);
        d.begin(&format!("backup of increment {name} + vm.xml"));
        let (id, _) = d.backup(&vm_dir, &[]);
        let kept = work.join(&name);
        fs::rename(vm_dir.join(&name), &kept).unwrap();
        chain.push((id[..8].to_string(), kept));
    }

    // (d) snapshots of the chain: one array, oldest first, a path per file.
    d.begin("snapshots --no-lock --json <chain ids>");
    let ids: Vec<&str> = chain.iter().map(|(id, _)| id.as_str()).collect();
    let mut cmd = vec!["snapshots"];
    cmd.extend(&ids);
    let snaps = d.ok(&["--no-lock", "--json"], &cmd).json();
    let list = snaps
        .as_array()
        .unwrap_or_else(|| panic!("{}: {snaps}", d.context()));
    assert_eq!(list.len(), 3, "{}: {snaps}", d.context());
    for (i, snap) in list.iter().enumerate() {
        assert_eq!(
            snap["short_id"].as_str(),
            Some(ids[i]),
            "{}: order",
            d.context()
        );
        let expected = serde_json::json!([
            s(&vm_dir.join(format!("disk.0.{i}"))),
            s(&vm_dir.join("vm.xml"))
        ]);
        assert_eq!(snap["paths"], expected, "{}", d.context());
        assert_eq!(snap["tags"], serde_json::json!([format!("one-{VM_ID}")]));
        let time = snap["time"].as_str().unwrap_or_default();
        assert!(
            time.len() >= 20 && time.as_bytes().get(10) == Some(&b'T'),
            "{time}"
        );
    }
    d.begin("snapshots with an unknown id: warning, exit 0, the rest listed");
    let run = d.ok(&["--no-lock", "--json"], &["snapshots", ids[2], "deadbeef"]);
    let found = run.json();
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "{}",
        run.describe()
    );
    assert!(run.err().contains("deadbeef"), "{}", run.describe());

    // (e) dump every file of the chain, and vm.xml of the last one.
    let wdir = sb.join("restore-wdir");
    fs::create_dir_all(&wdir).unwrap();
    for (i, (id, kept)) in chain.iter().enumerate() {
        let name = format!("disk.0.{i}");
        d.begin(&format!("dump {id} {name}"));
        let bytes = d.dump(id, &vm_dir.join(&name));
        assert!(
            bytes == fs::read(kept).unwrap(),
            "{}: dump of {name} differs from the backed-up file ({} bytes)",
            d.context(),
            bytes.len()
        );
        fs::write(wdir.join(&name), bytes).unwrap();
    }
    d.begin("dump vm.xml of the chain top");
    let xml = d.dump(&chain[2].0, &vm_dir.join("vm.xml"));
    assert_eq!(String::from_utf8_lossy(&xml), vm_xml, "{}", d.context());

    // Restore: rebase -u each link onto the dumped previous one, convert.
    d.begin("qemu-img rebase -u + convert + compare with the source disk");
    for i in 1..=2 {
        let prev = wdir.join(format!("disk.0.{}", i - 1));
        let next = wdir.join(format!("disk.0.{i}"));
        sh(
            "qemu-img",
            &["rebase", "-u", "-F", "qcow2", "-b", s(&prev), s(&next)],
        );
    }
    let restored = wdir.join("restored.qcow2");
    sh(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            s(&wdir.join("disk.0.2")),
            s(&restored),
        ],
    );
    sh("qemu-img", &["compare", s(&chain[2].1), s(&restored)]);

    // A concurrent exclusive lock (a prune elsewhere): backup and dump are
    // refused with exit 11 and succeed when retried after it is gone.
    make_increment(&chain[2].1, &vm_dir.join("disk.0.3"), 3);
    d.begin("backup while the repository is locked exclusively");
    let holder = ExclusiveLockHolder::start(&sb, &home, &repo, &repo_dir);
    let tag = format!("--tag=one-{VM_ID}");
    let backup_cmd = d.backup_argv(&vm_dir);
    let backup_cmd: Vec<&str> = backup_cmd.iter().map(String::as_str).collect();
    let refused = d.run(&["--force", "--json", &tag], &backup_cmd);
    assert!(
        d.is_locked(&refused),
        "{}: expected a lock failure (exit 11, `unable to create lock ... locked exclusively`):\n{}",
        d.context(),
        refused.describe()
    );
    d.begin("dump while the repository is locked exclusively");
    let refused = d.run(&["--quiet"], &["dump", ids[0], s(&vm_dir.join("vm.xml"))]);
    assert!(
        d.is_locked(&refused),
        "{}:\n{}",
        d.context(),
        refused.describe()
    );
    assert!(
        refused.stdout.is_empty(),
        "{}: dump wrote to stdout",
        d.context()
    );
    d.begin("backup retried on the lock while the lock holder finishes");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        holder.release();
    });
    let (run, locked) = d.backup_with_retry(&vm_dir, &[], true);
    release.join().unwrap();
    let (id3, _) = parse_backup_output(&d.context(), &run);
    eprintln!("backup succeeded after {locked} locked attempts");
    fs::rename(vm_dir.join("disk.0.3"), work.join("disk.0.3")).unwrap();

    // (f) forget --prune --max-unused=0 of that snapshot (unquoted ids).
    d.begin("forget <id> --prune --max-unused=0");
    d.ok_with_lock_retry(&["--prune", "--max-unused=0"], &["forget", &id3[..8]]);
    d.begin("snapshots after forget");
    let mut cmd = vec!["snapshots"];
    cmd.extend(&ids);
    let snaps = d.ok(&["--no-lock", "--json"], &cmd).json();
    assert_eq!(
        snaps.as_array().map(Vec::len),
        Some(3),
        "{}: {snaps}",
        d.context()
    );

    // (c) cancel: SIGTERM mid-backup (a slow datastore: RESTIC_BWLIMIT=1024),
    // then `unlock` and a clean `check`.
    let big_raw = work.join("big.raw");
    fs::write(&big_raw, pseudo_random_bytes(77, 24 << 20)).unwrap();
    sh(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&big_raw),
            s(&vm_dir.join("disk.1.0")),
        ],
    );
    d.begin("backup cancelled with SIGTERM (RESTIC_BWLIMIT=1024)");
    let slow_argv = {
        let cmd = d.backup_argv(&vm_dir);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        d.argv(&["--force", "--json", &tag], &cmd, "1024")
    };
    let log = sb.join("cancelled-backup.log");
    let mut child = d.command(&slow_argv).spawn_with_stdin(&log);
    drop(child.stdin.take());
    wait_for_files(
        &repo_dir.join("locks"),
        Duration::from_secs(30),
        "the lock of the backup to cancel",
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{}: the slow backup ended before it could be cancelled:\n{}",
        d.context(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child, which has not been waited for.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{}: SIGTERM did not stop the backup within 30 s",
                d.context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{}: {status}\n{output}", d.context());
    assert!(
        !output.contains("panicked") && status.code() != Some(101),
        "{}: crashed on SIGTERM: {status}\n{output}",
        d.context()
    );
    eprintln!(
        "cancelled backup: {status}; locks left: {:?}",
        lock_files(&repo_dir)
    );
    fs::remove_file(vm_dir.join("disk.1.0")).unwrap();
    d.begin("unlock after the cancel");
    d.ok(&[], &["unlock"]);
    assert_eq!(
        lock_files(&repo_dir),
        Vec::<String>::new(),
        "{}",
        d.context()
    );
    d.begin("check after the cancel");
    d.ok(&[], &["check"]).stdout_has("no errors were found");

    // rm of the whole chain: forget every snapshot, prune, empty and clean.
    d.begin("forget <chain ids> --prune --max-unused=0 (rm)");
    let mut cmd = vec!["forget"];
    cmd.extend(&ids);
    d.ok_with_lock_retry(&["--prune", "--max-unused=0"], &cmd);
    d.begin("snapshots of the removed chain: []");
    let mut cmd = vec!["snapshots"];
    cmd.extend(&ids);
    let snaps = d.ok(&["--no-lock", "--json"], &cmd).json();
    assert_eq!(snaps, serde_json::json!([]), "{}", d.context());

    // The oracle agrees the repository is sound, reading all data.
    d.begin("restic check --read-data (oracle)");
    let oracle = sb
        .cmd(Tool::Restic)
        .env("HOME", home.path())
        .env("PATH", home.path_var())
        .env_remove("SSH_AUTH_SOCK")
        .args(["-r", &repo, "check", "--read-data"])
        .run();
    assert!(
        oracle.success() && oracle.out().contains("no errors were found"),
        "{}:\n{}",
        d.context(),
        oracle.describe()
    );
    let _ = std::io::stderr().flush();
}

#[test]
fn opennebula_replay_with_restix() {
    run_replay(Tool::Restix);
}

/// The same replay with the real restic 0.14 proves the replay itself.
#[test]
fn opennebula_replay_with_real_restic() {
    run_replay(Tool::Restic);
}
