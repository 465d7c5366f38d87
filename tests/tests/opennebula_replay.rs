//! A replay of OpenNebula's restic backup datastore driver over SFTP
//! (spec: callers §1), run as the driver runs it: each step is the bash
//! script `restic.rb` renders (`set -e -o pipefail; shopt -qs failglob`,
//! `"$RESTIC_BIN" '--name=value' … '--repo=…' <cmd>`), with `$RESTIC_BIN` a
//! symlink named `restic` (the driver's `restic -> ./vendor/bin/restic`),
//! only the confined environment (`RESTIC_BIN`, `RESTIC_PASSWORD`,
//! `GOMAXPROCS`, no `SSH_AUTH_SOCK` here: the key is in oneadmin's
//! `~/.ssh`), every option before the subcommand,
//! `--limit-upload=-1 --limit-download=-1` on every command and
//! `--option=sftp.connections=8 --compression=max` on backup/dump.
//!
//! The lifecycle: `stats || init` (creating missing parents), a full qcow2
//! backup (`disk.0.0` + base64 `vm.xml`, the glob `'dir'/disk.*` expanded by
//! bash, the output read with the driver's `jq` filter) and two incremental
//! qcow2 overlays (qemu-img create -b + qemu-io writes), `snapshots
//! --no-lock --json` of the chain, `dump` of every file, the chain rebuilt
//! with `qemu-img rebase -u` + `convert` and compared with the source disk,
//! a backup and a dump refused by an exclusive lock and retried on exit code
//! 11 (restic 0.14: on the older stderr regex), two backups sharing the
//! repository (a backup job) while `forget --prune` waits for them,
//! `forget --prune --max-unused=0`, a backup cancelled the way
//! `backup_cancel` does it (`ps -C restic` + `kill -s TERM`, which only
//! finds the process because its name is `restic`), then `unlock` and a
//! clean `check`, and the real restic's `check --read-data`.
//!
//! [`run_replay`] runs once with restix and once with the real restic 0.14,
//! which proves the replay itself is honest. A failing step is named in the
//! panic message (`step N <name>`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use restix_tests::harness::{
    pseudo_random_bytes, s, wait_for_files, ReplaySteps, Run, Sandbox, Tool, PASSWORD,
};
use restix_tests::sshd::{Sshd, TestHome};

const VM_ID: u32 = 42;
/// Driver retries (`run_with_lock_retry`: 60 tries); the pause is shortened
/// from 5-15 s to keep the test fast.
const LOCK_RETRIES: usize = 60;
const LOCK_PAUSE: Duration = Duration::from_millis(300);
/// `RESTIC_MAXPROC` of the datastore.
const MAXPROC: &str = "2";

/// `'word'` for the shell, as `opts_to_str` writes it (quotes removed).
fn quote(word: &str) -> String {
    format!("'{}'", word.replace(['\'', '"'], ""))
}

/// One datastore configuration and the program playing `$RESTIC_BIN`.
struct Driver<'a> {
    sb: &'a Sandbox,
    home: &'a TestHome,
    tool: Tool,
    /// `$RESTIC_BIN`: `…/datastore/restic/restic`, a symlink to the binary.
    restic_bin: PathBuf,
    /// `--repo=` value: `sftp:USER@127.0.0.1:/…/datastores/100/42`.
    repo: String,
    /// `RESTIC_BWLIMIT` (the string the attribute holds).
    bwlimit: String,
    steps: ReplaySteps,
}

impl Driver<'_> {
    fn begin(&self, what: &str) {
        self.steps.begin(what);
    }

    fn context(&self) -> String {
        self.steps.context()
    }

    /// `restic.rb#restic(cmd, opts)`: `"$RESTIC_BIN"`, the caller's
    /// options, limits, backend option and compression (backup, restore,
    /// dump), `--repo=`, then `cmd` verbatim (its own quoting).
    fn rcmd(&self, opts: &[&str], cmd: &str, bwlimit: &str) -> String {
        let mut words = vec![r#""$RESTIC_BIN""#.to_string()];
        words.extend(opts.iter().map(|o| quote(o)));
        words.push(quote(&format!("--limit-upload={bwlimit}")));
        words.push(quote(&format!("--limit-download={bwlimit}")));
        if cmd.starts_with("backup") || cmd.starts_with("restore") || cmd.starts_with("dump") {
            words.push(quote("--option=sftp.connections=8"));
            words.push(quote("--compression=max"));
        }
        words.push(quote(&format!("--repo={}", self.repo)));
        words.push(cmd.to_string());
        words.join(" ")
    }

    /// `bash` with the script on its command line and the confined
    /// environment (`Datastore#cmd_confinement`).
    fn bash(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("set -e -o pipefail; shopt -qs failglob\n{script}"))
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", self.home.path_var())
            .env("TZ", "UTC")
            .env("RESTIC_BIN", &self.restic_bin)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("GOMAXPROCS", MAXPROC)
            .current_dir(self.sb.path())
            .stdin(Stdio::null());
        command
    }

    fn script(&self, script: &str) -> Run {
        run_to_end(self.tool, self.bash(script), script)
    }

    fn run(&self, opts: &[&str], cmd: &str) -> Run {
        self.script(&self.rcmd(opts, cmd, &self.bwlimit))
    }

    /// Run and require exit 0, naming the step on failure.
    #[track_caller]
    fn ok(&self, opts: &[&str], cmd: &str) -> Run {
        let run = self.run(opts, cmd);
        self.require(run)
    }

    #[track_caller]
    fn require(&self, run: Run) -> Run {
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
    fn script_with_lock_retry(&self, script: &str) -> (Run, usize) {
        self.script_with_lock_retry_and(script, &mut || {})
    }

    /// As [`Driver::script_with_lock_retry`], calling `on_locked` after
    /// every refused attempt (the test releases a lock there).
    #[track_caller]
    fn script_with_lock_retry_and(
        &self,
        script: &str,
        on_locked: &mut dyn FnMut(),
    ) -> (Run, usize) {
        let mut locked = 0;
        for _ in 0..LOCK_RETRIES {
            let run = self.script(script);
            if self.is_locked(&run) {
                locked += 1;
                on_locked();
                std::thread::sleep(LOCK_PAUSE);
                continue;
            }
            return (self.require(run), locked);
        }
        panic!(
            "{}: still locked after {LOCK_RETRIES} tries",
            self.context()
        );
    }

    #[track_caller]
    fn ok_with_lock_retry(&self, opts: &[&str], cmd: &str) -> (Run, usize) {
        self.script_with_lock_retry(&self.rcmd(opts, cmd, &self.bwlimit))
    }

    /// Exit code 11 (restic >= 0.17, restix). restic 0.14 exits with 1, so
    /// its lock failures are told by the text (`unable to create lock in
    /// backend: repository is already locked [exclusively] by …`). The
    /// driver's pre-2026-05 regex `unable to create lock.+locked
    /// exclusively` misses the non-exclusive case (a `forget --prune`
    /// blocked by a running backup), which the exit code 11 catches.
    fn is_locked(&self, run: &Run) -> bool {
        let err = run.err();
        let message = err.lines().any(|l| {
            l.contains("unable to create lock") && l.contains("repository is already locked")
        });
        match self.tool {
            Tool::Restix => run.code == Some(11),
            Tool::Restic => !run.success() && message,
        }
    }

    /// `backup '<vm_dir>'/disk.* '<vm_dir>'/vm.xml` (the glob is bash's).
    fn backup_cmd(vm_dir: &Path) -> String {
        let dir = quote(s(vm_dir));
        format!("backup {dir}/disk.* {dir}/vm.xml")
    }

    /// The driver's `backup` script: the confined backup, its output piped
    /// through `jq`, and `echo "$INFO $BKNAME"`.
    fn backup_script(&self, vm_dir: &Path, bwlimit: &str) -> String {
        let tag = format!("--tag=one-{VM_ID}");
        let rcmd = self.rcmd(
            &["--force", "--json", &tag],
            &Self::backup_cmd(vm_dir),
            bwlimit,
        );
        format!(
            "RC=`{rcmd}`\n\
             INFO=`echo \"$RC\" | jq -r '.snapshot_id + \" \" + (.total_bytes_processed|tostring) | select ( . != \" null\" )'`\n\
             BKNAME=$(ls {dir}/disk.* | head -n 1)\n\
             echo \"$INFO $BKNAME\"",
            dir = s(vm_dir)
        )
    }

    /// A backup of `vm_dir`; returns the snapshot id (as printed) and
    /// `total_bytes_processed`, parsed as the driver's Ruby side does.
    #[track_caller]
    fn backup(&self, vm_dir: &Path) -> (String, u64) {
        let run = self.require(self.script(&self.backup_script(vm_dir, &self.bwlimit)));
        parse_backup_info(&self.context(), &run)
    }

    #[track_caller]
    fn backup_with_retry(&self, vm_dir: &Path, on_locked: &mut dyn FnMut()) -> (Run, usize) {
        let script = self.backup_script(vm_dir, &self.bwlimit);
        self.script_with_lock_retry_and(&script, on_locked)
    }

    /// `install -d wdir; dump '<short_id>' '<abs path>' > 'wdir/name'`,
    /// retried on lock; returns the file's bytes.
    #[track_caller]
    fn dump(&self, short_id: &str, path: &Path, wdir: &Path) -> Vec<u8> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
        let out = wdir.join(name);
        let cmd = format!("dump {} {}", quote(short_id), quote(s(path)));
        let script = format!(
            "install -d {}\n{} > {}",
            quote(&format!("{}/", s(wdir))),
            self.rcmd(&["--quiet"], &cmd, &self.bwlimit),
            quote(s(&out))
        );
        self.script_with_lock_retry(&script);
        fs::read(&out).unwrap()
    }

    /// `snapshots 'id' 'id' …` with `--no-lock --json`: the JSON array.
    #[track_caller]
    fn snapshots(&self, ids: &[&str]) -> (Run, serde_json::Value) {
        let quoted: Vec<String> = ids.iter().map(|id| quote(id)).collect();
        let run = self.ok(
            &["--no-lock", "--json"],
            &format!("snapshots {}", quoted.join(" ")),
        );
        let value: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: JSON.parse fails ({e}):\n{}",
                self.context(),
                run.describe()
            )
        });
        (run, value)
    }
}

/// Runs `command` to the end (at most 15 minutes) and captures its outputs.
fn run_to_end(tool: Tool, mut command: Command, script: &str) -> Run {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bash for {script}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(900)) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {script}: {e}")),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; harmless if it exited.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("hung: {script}");
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Run {
        cmdline: format!("bash -c {script:?}"),
        tool,
        code: output.status.code(),
        signal: output.status.signal(),
        stdout: output.stdout,
        stderr: output.stderr,
    }
}

/// The driver's Ruby side: `parts = stdout.lines.last.split`, three tokens
/// (`<id> <bytes> <first disk>`); the id is trimmed to 8 characters.
fn parse_backup_info(context: &str, run: &Run) -> (String, u64) {
    let out = run.out();
    let last = out.lines().last().unwrap_or_default();
    let parts: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(
        parts.len(),
        3,
        "{context}: INFO line {last:?}:\n{}",
        run.describe()
    );
    let id = parts[0];
    assert!(
        id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{context}: snapshot_id {id:?}"
    );
    let bytes: u64 = parts[1]
        .parse()
        .unwrap_or_else(|e| panic!("{context}: total_bytes_processed {:?}: {e}", parts[1]));
    (id.to_string(), bytes)
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

/// `backup_cancel`'s search: `ps --no-headers -o pid,cmd -C restic` lines
/// that mention the VM's backup folder. `ps -C` matches the process name
/// (`/proc/PID/comm`), so only a program named `restic` is found.
fn restic_pids(vm_dir: &Path) -> Vec<libc::pid_t> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ps --no-headers -o pid,cmd -C restic | awk '$0 ~ \"{}\" {{ print $1 }}'",
            s(vm_dir)
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until exactly one `restic` process works on `vm_dir`; checks
/// that its process name really is `restic` and returns its pid.
fn wait_for_restic_pid(vm_dir: &Path) -> libc::pid_t {
    let started = Instant::now();
    loop {
        let pids = restic_pids(vm_dir);
        if let [pid] = pids[..] {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            assert_eq!(comm.trim_end(), "restic", "process name of pid {pid}");
            return pid;
        }
        assert!(
            pids.len() <= 1 && started.elapsed() < Duration::from_secs(30),
            "`ps -C restic` found {pids:?} for {}",
            vm_dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a restic process this test started
    // (a grandchild through bash) that has not been reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits for a background script; panics after 60 s.
fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A qcow2 image with `mib` MiB of incompressible data.
fn make_random_disk(raw: &Path, qcow2: &Path, mib: usize, seed: u64) {
    fs::write(raw, pseudo_random_bytes(seed, mib << 20)).unwrap();
    sh(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(raw), s(qcow2)],
    );
}

fn run_replay(tool: Tool) {
    if restix_tests::harness::restic_bin().is_none() {
        restix_tests::harness::skip_missing_restic();
        return;
    }
    if !restix_tests::harness::require_qemu() {
        return;
    }
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    // The driver folder on the hypervisor: `restic` links to the binary.
    let driver_dir = sb.join("var/tmp/one/datastore/restic");
    fs::create_dir_all(&driver_dir).unwrap();
    let restic_bin = driver_dir.join("restic");
    std::os::unix::fs::symlink(tool.path(), &restic_bin).unwrap();
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
        restic_bin,
        repo: repo.clone(),
        bwlimit: "-1".into(),
        steps: ReplaySteps::new("OpenNebula", tool),
    };

    // (a) stats || init, on a repository whose parents do not exist yet.
    d.begin("stats (existence probe) on a missing repository");
    let probe = d.run(&[], "stats");
    assert!(
        !probe.success() && !probe.crashed(),
        "{}: stats must fail cleanly on a missing repository:\n{}",
        d.context(),
        probe.describe()
    );
    d.begin("stats || init (creates missing parents over sftp)");
    let stats_or_init = format!(
        "{} || {}",
        d.rcmd(&[], "stats", &d.bwlimit),
        d.rcmd(&[], "init", &d.bwlimit)
    );
    d.require(d.script(&stats_or_init));
    assert!(repo_dir.join("config").is_file());
    d.begin("stats || init on the existing repository: stats succeeds");
    let config_before = fs::read(repo_dir.join("config")).unwrap();
    d.require(d.script(&stats_or_init));
    d.ok(&[], "stats");
    d.begin("init on an existing repository must fail");
    let again = d.run(&[], "init");
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
    let expected_bytes = fs::metadata(vm_dir.join("disk.0.0")).unwrap().len() + vm_xml.len() as u64;
    let (id, bytes) = d.backup(&vm_dir);
    assert_eq!(
        bytes,
        expected_bytes,
        "{}: total_bytes_processed",
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
        let (id, _) = d.backup(&vm_dir);
        let kept = work.join(&name);
        fs::rename(vm_dir.join(&name), &kept).unwrap();
        chain.push((id[..8].to_string(), kept));
    }

    // (d) snapshots of the chain: one array, oldest first, a path per file.
    d.begin("snapshots --no-lock --json <chain ids>");
    let ids: Vec<&str> = chain.iter().map(|(id, _)| id.as_str()).collect();
    let (_, snaps) = d.snapshots(&ids);
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
    let (run, found) = d.snapshots(&[ids[2], "deadbeef"]);
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "{}",
        run.describe()
    );
    assert!(run.err().contains("deadbeef"), "{}", run.describe());

    // (e) dump every file of the chain, and vm.xml of the last one.
    let wdir = sb.join("restore-wdir");
    for (i, (id, kept)) in chain.iter().enumerate() {
        let name = format!("disk.0.{i}");
        d.begin(&format!("dump {id} {name}"));
        let bytes = d.dump(id, &vm_dir.join(&name), &wdir);
        assert!(
            bytes == fs::read(kept).unwrap(),
            "{}: dump of {name} differs from the backed-up file ({} bytes)",
            d.context(),
            bytes.len()
        );
    }
    d.begin("dump vm.xml of the chain top");
    let xml = d.dump(&chain[2].0, &vm_dir.join("vm.xml"), &sb.join("xml-wdir"));
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
    sh(
        "qemu-img",
        &[
            "compare",
            s(&work.join("source.raw")),
            s(&wdir.join("disk.0.0")),
        ],
    );

    // A concurrent exclusive lock (a prune elsewhere): backup and dump are
    // refused with exit 11 and succeed when retried after it is gone.
    make_increment(&chain[2].1, &vm_dir.join("disk.0.3"), 3);
    d.begin("backup while the repository is locked exclusively");
    let holder = ExclusiveLockHolder::start(&sb, &home, &repo, &repo_dir);
    let refused = d.script(&d.backup_script(&vm_dir, &d.bwlimit));
    assert!(
        d.is_locked(&refused),
        "{}: expected a lock failure (exit 11, `unable to create lock ... locked exclusively`):\n{}",
        d.context(),
        refused.describe()
    );
    // The driver's pre-2026-05 retry test matched this one line.
    assert!(
        refused
            .err()
            .lines()
            .any(|l| l.contains("unable to create lock") && l.contains("locked exclusively")),
        "{}: {}",
        d.context(),
        refused.describe()
    );
    assert!(
        !refused.err().contains("panicked") && refused.out().is_empty(),
        "{}",
        refused.describe()
    );
    d.begin("dump while the repository is locked exclusively");
    let cmd = format!(
        "dump {} {}",
        quote(ids[0]),
        quote(s(&vm_dir.join("vm.xml")))
    );
    let refused = d.run(&["--quiet"], &cmd);
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
    // The lock holder finishes after the first refused attempt.
    let mut holder = Some(holder);
    let (run, locked) = d.backup_with_retry(&vm_dir, &mut || {
        if let Some(holder) = holder.take() {
            holder.release();
        }
    });
    assert!(locked >= 1, "{}: no attempt was refused", d.context());
    let (id3, _) = parse_backup_info(&d.context(), &run);
    eprintln!("backup succeeded after {locked} locked attempts");
    fs::rename(vm_dir.join("disk.0.3"), work.join("disk.0.3")).unwrap();

    // A backup job: two VMs back up into the same repository at once
    // (shared locks), while `rm` (forget --prune) of an old snapshot is
    // refused with exit 11 and retried until the backups are done. The
    // first backup is paused (SIGSTOP) so the overlap does not depend on
    // timing.
    d.begin("backup job: VM 42 backs up (paused while holding its lock)");
    make_random_disk(&work.join("job.raw"), &vm_dir.join("disk.1.0"), 4, 9);
    let job_log = sb.join("job-backup.log");
    let mut job = d
        .bash(&d.backup_script(&vm_dir, "1024"))
        .stdout(Stdio::from(fs::File::create(&job_log).unwrap()))
        .stderr(Stdio::from(
            fs::File::create(sb.join("job-backup.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for_files(
        &repo_dir.join("locks"),
        Duration::from_secs(30),
        "the lock of VM 42's backup",
    );
    let job_pid = wait_for_restic_pid(&vm_dir);
    send_signal(job_pid, libc::SIGSTOP);
    d.begin("backup job: VM 43 backs up into the same repository meanwhile");
    let vm43_dir = sb.join("var/lib/one/datastores/0/43/backup");
    fs::create_dir_all(&vm43_dir).unwrap();
    fs::write(vm43_dir.join("vm.xml"), "PFZNPjxJRD40MzwvSUQ+PC9WTT4=\n").unwrap();
    make_random_disk(&work.join("vm43.raw"), &vm43_dir.join("disk.0.0"), 1, 43);
    let (id43, _) = d.backup(&vm43_dir);
    d.begin("forget <id> --prune --max-unused=0 waits for the backup (exit 11, retried)");
    // The paused backup goes on after the first refused attempt.
    let forget = format!("forget {}", &id3[..8]);
    let script = d.rcmd(&["--prune", "--max-unused=0"], &forget, &d.bwlimit);
    let mut resumed = false;
    let (_, locked) = d.script_with_lock_retry_and(&script, &mut || {
        if !resumed {
            send_signal(job_pid, libc::SIGCONT);
            resumed = true;
        }
    });
    if !resumed {
        send_signal(job_pid, libc::SIGCONT);
    }
    assert!(
        locked >= 1,
        "{}: forget --prune must be refused while a backup holds its lock",
        d.context()
    );
    let status = wait_child(&mut job, "VM 42's backup");
    let job_out = fs::read_to_string(&job_log).unwrap_or_default();
    assert!(
        status.success(),
        "{}: VM 42's backup: {status}\n{job_out}\n{}",
        d.context(),
        fs::read_to_string(sb.join("job-backup.err")).unwrap_or_default()
    );
    let job_run = Run {
        cmdline: "VM 42 backup job".into(),
        tool,
        code: status.code(),
        signal: None,
        stdout: job_out.into_bytes(),
        stderr: Vec::new(),
    };
    let (id_job, _) = parse_backup_info(&d.context(), &job_run);
    fs::remove_file(vm_dir.join("disk.1.0")).unwrap();
    d.begin("snapshots after forget");
    let (_, snaps) = d.snapshots(&[ids[0], ids[1], ids[2], &id3[..8], &id43[..8], &id_job[..8]]);
    let listed: Vec<&str> = snaps
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["short_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        listed,
        // The job's backup started first: its snapshot time is earlier.
        vec![ids[0], ids[1], ids[2], &id_job[..8], &id43[..8]],
        "{}: {snaps}",
        d.context()
    );

    // (c) cancel, as `backup_cancel` does: find the slow backup
    // (RESTIC_BWLIMIT=1024) with `ps -C restic`, `kill -s TERM`, then
    // `unlock` and a clean `check`.
    make_random_disk(&work.join("big.raw"), &vm_dir.join("disk.1.0"), 24, 77);
    d.begin("backup cancelled with `ps -C restic` + kill -s TERM (RESTIC_BWLIMIT=1024)");
    let log = sb.join("cancelled-backup.log");
    let mut child = d
        .bash(&d.backup_script(&vm_dir, "1024"))
        .stdout(Stdio::from(fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            fs::File::create(sb.join("cancelled.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for_files(
        &repo_dir.join("locks"),
        Duration::from_secs(30),
        "the lock of the backup to cancel",
    );
    let pid = wait_for_restic_pid(&vm_dir);
    let cancel = format!(
        "PIDS=$(ps --no-headers -o pid,cmd -C restic | awk '$0 ~ \"{}\" {{ print $1 }}')\n\
         [ -n \"$PIDS\" ]\nkill -s TERM $PIDS\necho $PIDS",
        s(&vm_dir)
    );
    let killed = d.require(d.script(&cancel));
    assert_eq!(killed.out().trim(), pid.to_string(), "{}", d.context());
    let status = wait_child(&mut child, "the cancelled backup");
    let output = format!(
        "{}{}",
        fs::read_to_string(&log).unwrap_or_default(),
        fs::read_to_string(sb.join("cancelled.err")).unwrap_or_default()
    );
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
    d.ok(&[], "unlock");
    assert_eq!(
        lock_files(&repo_dir),
        Vec::<String>::new(),
        "{}",
        d.context()
    );
    d.begin("check after the cancel");
    d.ok(&[], "check").stdout_has("no errors were found");

    // rm of the whole chain: forget every snapshot, prune, empty and clean.
    d.begin("forget <chain ids> --prune --max-unused=0 (rm)");
    d.ok_with_lock_retry(
        &["--prune", "--max-unused=0"],
        &format!("forget {}", ids.join(" ")),
    );
    d.begin("snapshots of the removed chain: []");
    let (_, snaps) = d.snapshots(&ids);
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
