//! CLI checks shared by the tests of remote backends (`rest:`, `rclone:`,
//! `azure:`): restix and the real restic 0.14 writing and reading each
//! other's repositories, and a backup whose server dies in the middle.
//!
//! A repository is reached through an [`Access`] per program: the `-r`
//! location, environment and global options, since the two may need
//! different ones (restic 0.14 reads an Azure container through its
//! `rclone:` backend, restix through `azure:`).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::harness::{
    assert_trees_equal, pseudo_random_bytes, restored_path, s, Cmd, CompareOptions, Run, Sandbox,
    Tool,
};

/// How one program reaches a repository.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The `-r` location.
    pub url: String,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Global options before the command (`-o key=value`, `--cacert F`).
    pub args: Vec<String>,
}

impl Access {
    /// Reach `url` with no extra environment or options.
    pub fn url(url: impl Into<String>) -> Access {
        Access {
            url: url.into(),
            ..Access::default()
        }
    }

    /// Add environment variables.
    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Access {
        self.env.extend(env);
        self
    }

    /// Add global options.
    pub fn with_args<I, S>(mut self, args: I) -> Access
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A command of `tool` on this repository; `args` follow.
    pub fn cmd(&self, sb: &Sandbox, tool: Tool, args: &[&str]) -> Cmd {
        let mut cmd = sb.cmd(tool);
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd.arg("-r").arg(&self.url).args(&self.args).args(args)
    }

    /// Run `tool` with `args` on this repository.
    pub fn run(&self, sb: &Sandbox, tool: Tool, args: &[&str]) -> Run {
        self.cmd(sb, tool, args).run()
    }
}

/// A small tree (about 7 MB: several packs, empty and zero files).
pub fn make_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), format!("hello remote {seed}\n")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("big.bin"), pseudo_random_bytes(seed, 6_000_000)).unwrap();
    for i in 0..12u64 {
        let len = 1000 + (i as usize) * 7919;
        fs::write(
            root.join("sub").join(format!("f{i:02}")),
            pseudo_random_bytes(seed * 100 + i, len),
        )
        .unwrap();
    }
    fs::write(root.join("sub/deeper/zeros"), vec![0u8; 300_000]).unwrap();
}

/// Restore `latest` with `tool` into `sb/<name>` and compare with `src`.
pub fn restore_and_compare(sb: &Sandbox, access: &Access, tool: Tool, src: &Path, name: &str) {
    let out = sb.join(name);
    access
        .run(sb, tool, &["restore", "latest", "--target", s(&out)])
        .ok();
    let opts = CompareOptions {
        root_metadata: false,
        ..CompareOptions::default()
    };
    assert_trees_equal(src, &restored_path(&out, src), &opts);
}

/// restix inits and backs up (twice); restic checks every pack and
/// restores byte-identical; restix restores too.
pub fn restix_writes_restic_reads(sb: &Sandbox, restix: &Access, restic: &Access, seed: u64) {
    let src = sb.join(format!("src-restix-{seed}"));
    make_tree(&src, seed);
    restix.run(sb, Tool::Restix, &["init"]).ok();
    restix.run(sb, Tool::Restix, &["init"]).fails();
    restix.run(sb, Tool::Restix, &["backup", s(&src)]).ok();
    fs::write(src.join("added.txt"), b"second snapshot\n").unwrap();
    restix.run(sb, Tool::Restix, &["backup", s(&src)]).ok();
    restic.run(sb, Tool::Restic, &["check", "--read-data"]).ok();
    let snapshots = restic.run(sb, Tool::Restic, &["snapshots", "--json"]).ok();
    assert_eq!(snapshots.json().as_array().map(Vec::len), Some(2));
    restore_and_compare(sb, restic, Tool::Restic, &src, &format!("by-restic-{seed}"));
    restore_and_compare(sb, restix, Tool::Restix, &src, &format!("by-restix-{seed}"));
}

/// restic inits and backs up; restix lists, checks and restores it.
pub fn restic_writes_restix_reads(sb: &Sandbox, restix: &Access, restic: &Access, seed: u64) {
    let src = sb.join(format!("src-restic-{seed}"));
    make_tree(&src, seed);
    restic.run(sb, Tool::Restic, &["init"]).ok();
    restic.run(sb, Tool::Restic, &["backup", s(&src)]).ok();
    let snapshots = restix.run(sb, Tool::Restix, &["snapshots", "--json"]).ok();
    assert_eq!(snapshots.json().as_array().map(Vec::len), Some(1));
    restix.run(sb, Tool::Restix, &["check", "--read-data"]).ok();
    restore_and_compare(
        sb,
        restix,
        Tool::Restix,
        &src,
        &format!("restix-out-{seed}"),
    );
}

/// A source tree of `files` x 8 MB of incompressible data.
pub fn make_large_tree(root: &Path, files: u64) {
    fs::create_dir_all(root).unwrap();
    for i in 0..files {
        fs::write(
            root.join(format!("part{i}.bin")),
            pseudo_random_bytes(0xfa17 + i, 8_000_000),
        )
        .unwrap();
    }
}

/// How an interrupted backup ended.
pub struct Interrupted {
    /// restix's exit status.
    pub status: ExitStatus,
    /// Its output (stdout and stderr).
    pub output: String,
}

/// How a test breaks and mends the server under a running backup.
pub struct ServerFault<'a> {
    /// True once uploads are under way (packs arrived on the server).
    pub uploading: &'a dyn Fn() -> bool,
    /// Kill the server.
    pub kill: &'a mut dyn FnMut(),
    /// How long it stays down.
    pub down: Duration,
    /// Start it again (a no-op where it cannot come back).
    pub revive: &'a mut dyn FnMut(),
}

/// Start `restix backup src` (uploads limited to `limit_kib` KiB/s so the
/// kill lands in the middle), wait until `fault.uploading()`, kill the
/// server, wait `fault.down`, revive it, then wait for restix. Asserts
/// restix did not crash and, if it failed, that its message names a
/// repository file (`data/`, `index/`, `snapshots/`, `locks/`, `keys/`).
pub fn backup_with_server_killed(
    sb: &Sandbox,
    restix: &Access,
    src: &Path,
    limit_kib: u32,
    fault: ServerFault<'_>,
) -> Interrupted {
    let log = sb.join("interrupted-backup.log");
    let limit = limit_kib.to_string();
    let started = Instant::now();
    let mut child = restix
        .cmd(
            sb,
            Tool::Restix,
            &["--limit-upload", &limit, "backup", s(src)],
        )
        .spawn_with_stdin(&log);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(fault.uploading)() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = child.try_wait().unwrap().is_none();
    (fault.kill)();
    eprintln!(
        "server killed after {:?} (backup running: {running})",
        started.elapsed()
    );
    std::thread::sleep(fault.down);
    (fault.revive)();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "restix backup hangs after the server came back:\n{}",
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
    assert!(
        status.signal().is_none() && status.code() != Some(101) && !output.contains("panicked"),
        "restix crashed: {status}\n{output}"
    );
    if !status.success() {
        let names_file = ["data/", "index/", "snapshots/", "locks/", "keys/"]
            .iter()
            .any(|dir| output.contains(dir));
        assert!(names_file, "the error does not name the file:\n{output}");
    }
    Interrupted { status, output }
}

/// After an interrupted backup: `restix unlock` (a failed run may leave its
/// lock), restic `check --read-data` clean, and a new backup that works.
pub fn repository_still_sound(sb: &Sandbox, restix: &Access, restic: &Access, src: &Path) {
    restix.run(sb, Tool::Restix, &["unlock"]).ok();
    restic.run(sb, Tool::Restic, &["check", "--read-data"]).ok();
    restix.run(sb, Tool::Restix, &["backup", s(src)]).ok();
    restic.run(sb, Tool::Restic, &["check", "--read-data"]).ok();
    restore_and_compare(sb, restix, Tool::Restix, src, "after-interruption");
}
