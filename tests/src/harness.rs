//! Binaries, temporary folders, fixtures, running commands.
//!
//! Everything an integration test needs to drive the real `restix` and the
//! real `restic` (0.14, the compatibility oracle) side by side:
//!
//! * [`restix_bin`] / [`restic_bin`]: where the two programs are. `restix`
//!   comes from `$RESTIX_BIN`, or is built into the target folder of the
//!   running test (`cargo build -p restix-cli`, same profile). Setting
//!   `RESTIX_BIN=/usr/bin/restic` lets restic play both roles, which is how
//!   the suite itself is validated; [`is_restix`] tells the two apart for the
//!   few assertions that only hold for restix (restic 0.18 behaviour such as
//!   exit codes 10/11/12).
//! * [`Sandbox`]: a temporary folder with its own `HOME` and cache, and
//!   methods that run either program with `RESTIC_PASSWORD`, `TZ=UTC` set and
//!   return a [`Run`] (exit status, stdout, stderr) whose assertion methods
//!   print the full command and outputs on failure.
//! * [`make_varied_tree`] / [`compare_trees`]: a deterministic source tree full
//!   of awkward cases, and a comparator for restored trees.
//! * [`fixtures_dir`] / [`fixture_repo`]: restic's upstream fixture
//!   repositories, unpacked into a sandbox.
//! * [`Oracle`]: facts read from a repository with the real restic (blob
//!   lists, index entries, stored snapshots).
//!
//! ```no_run
//! use restix_tests::harness::{self, Sandbox};
//! let Some(_restic) = harness::restic_bin() else { return };
//! let sb = Sandbox::new();
//! let repo = sb.join("repo");
//! sb.restic(["init", "-r", harness::s(&repo)]).ok();
//! let snaps = sb.restix(["-r", harness::s(&repo), "snapshots", "--json"]).ok().json();
//! assert_eq!(snaps, serde_json::json!([]));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Password of every repository the tests create (and of the fixtures).
pub const PASSWORD: &str = "geheim";

/// Size of the large pseudo-random file in the varied tree.
pub const BIG_FILE_SIZE: usize = 20_000_000;

/// The workspace root (`tests/..`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `path` as `&str` for argument lists (every sandbox path is ASCII).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("sandbox paths are UTF-8")
}

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// Path of the `restix` binary under test.
///
/// `$RESTIX_BIN` if set; otherwise `restix` in the target folder of the running
/// test executable (`target/<profile>/deps/<test>` -> `target/<profile>/restix`),
/// brought up to date with `cargo build -p restix-cli` in the same profile
/// (a no-op when nothing changed). Panics with the build output if that fails.
pub fn restix_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate_restix)
}

fn locate_restix() -> PathBuf {
    if let Some(bin) = std::env::var_os("RESTIX_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        let bin = if bin.components().count() == 1 {
            find_in_path(bin.as_os_str()).unwrap_or(bin)
        } else {
            bin
        };
        assert!(bin.exists(), "RESTIX_BIN={} does not exist", bin.display());
        eprintln!(
            "harness: restix under test = {} (from RESTIX_BIN)",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("debug")
        .to_string();
    let bin = profile_dir.join("restix");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").arg("-p").arg("restix-cli");
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    eprintln!(
        "harness: building restix: {:?} build -p restix-cli ({profile}) into {}",
        cargo,
        target_dir.display()
    );
    let out = cmd.output().expect("running cargo build -p restix-cli");
    assert!(
        out.status.success(),
        "cargo build -p restix-cli failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        bin.exists(),
        "cargo build -p restix-cli succeeded but {} is missing",
        bin.display()
    );
    eprintln!("harness: restix under test = {}", bin.display());
    bin
}

/// `true` unless the binary under test is restic itself
/// (`RESTIX_BIN=/usr/bin/restic`). Guards assertions on behaviour that only
/// restix (like restic 0.18) has: exit codes 10/11/12, 64-hex snapshot IDs in
/// `backup --json`, `linktarget_raw`.
pub fn is_restix() -> bool {
    let name = restix_bin()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // "restic", "restic-0.14", ... are restic; anything else is restix.
    !name.starts_with("restic")
}

/// The real restic (the oracle): `$RESTIC_BIN`, else `restic` from `PATH`.
/// `None` (and a message on stderr) when absent; use [`require_restic!`].
pub fn restic_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RESTIC_BIN").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(bin));
        }
        find_in_path(OsStr::new("restic"))
    })
    .as_deref()
}

fn find_in_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Returns the restic path, or prints why the test is skipped and returns
/// from the calling test.
#[macro_export]
macro_rules! require_restic {
    () => {
        match $crate::harness::restic_bin() {
            Some(path) => path,
            None => {
                $crate::harness::skip_missing_restic();
                return;
            }
        }
    };
}

/// Returns the fixtures folder, or prints `skipped: fixtures absent` and
/// returns from the calling test.
#[macro_export]
macro_rules! require_fixtures {
    () => {
        match $crate::harness::fixtures_dir() {
            Some(path) => path,
            None => {
                $crate::harness::skip_missing_fixtures();
                return;
            }
        }
    };
}

/// Records that the calling test is skipped for want of restic (fails under
/// `CI=true`, see `restix_testkit`).
pub fn skip_missing_restic() {
    restix_testkit::skip(
        "restic",
        "apt-get install restic; the test needs the real restic 0.14 as the oracle",
    );
}

/// Records that the calling test is skipped for want of restic's fixtures.
pub fn skip_missing_fixtures() {
    restix_testkit::skip(
        "fixtures",
        &format!(
            "set RESTIX_FIXTURES or provide {}",
            default_fixtures_dir().display()
        ),
    );
}

/// `qemu-img` and `qemu-io` both run; otherwise the calling test is recorded
/// as skipped (fails under `CI=true`) and `false` is returned.
pub fn require_qemu() -> bool {
    let found = restix_testkit::have_program("qemu-img", &["--version"])
        && restix_testkit::have_program("qemu-io", &["--version"]);
    if !found {
        restix_testkit::skip("qemu-img/qemu-io", "apt-get install qemu-utils");
    }
    found
}

// Also reachable as `harness::require_restic!` / `harness::require_fixtures!`.
pub use crate::{require_fixtures, require_restic};

/// Is this process running as root (needed for chown in trees)?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Which program a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// The binary under test.
    Restix,
    /// The real restic (oracle).
    Restic,
}

impl Tool {
    /// Path of the program.
    pub fn path(self) -> &'static Path {
        match self {
            Tool::Restix => restix_bin(),
            Tool::Restic => restic_bin().expect("restic is installed (use require_restic!)"),
        }
    }
}

/// A temporary folder for one test, with its own `HOME` and restic cache.
/// Deleted on drop unless `RESTIX_KEEP_TEMP=1` is set.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// Creates the folder (under `$TMPDIR`).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("restix-test-")
            .tempdir()
            .expect("create temp dir");
        let path = dir.path().to_path_buf();
        fs::create_dir_all(path.join("home")).expect("mkdir home");
        Sandbox {
            dir: Some(dir),
            path,
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// A command for `tool` with the sandbox environment; add arguments and
    /// call [`Cmd::run`].
    pub fn cmd(&self, tool: Tool) -> Cmd {
        let mut command = Command::new(tool.path());
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"RESTIC_") {
                command.env_remove(&key);
            }
        }
        command
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("TZ", "UTC")
            .env("HOME", self.join("home"))
            .env("XDG_CACHE_HOME", self.join("home/.cache"))
            .env("RESTIC_CACHE_DIR", self.join("cache"))
            .env("RESTIC_PROGRESS_FPS", "1")
            .current_dir(&self.path)
            .stdin(Stdio::null());
        Cmd {
            command,
            tool,
            words: vec![tool.path().display().to_string()],
            envs: Vec::new(),
        }
    }

    /// Runs restix with `args`.
    pub fn restix<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(Tool::Restix).args(args).run()
    }

    /// Runs the real restic with `args`.
    pub fn restic<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(Tool::Restic).args(args).run()
    }

    /// Runs `tool` with `args`.
    pub fn run<I, S>(&self, tool: Tool, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(tool).args(args).run()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::env::var_os("RESTIX_KEEP_TEMP").is_some_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("harness: keeping {}", dir.keep().display());
            }
            return;
        }
        // Restored trees hold read-only folders; make them writable so the
        // removal does not fail for non-root users.
        let _ = make_writable(&self.path);
    }
}

fn make_writable(root: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if meta.is_dir() {
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        for entry in fs::read_dir(root)? {
            make_writable(&entry?.path())?;
        }
    }
    Ok(())
}

/// A command under construction.
pub struct Cmd {
    command: Command,
    tool: Tool,
    words: Vec<String>,
    envs: Vec<String>,
}

impl Cmd {
    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.words.push(shell_quote(arg.as_ref()));
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push(format!("{key}={}", shell_quote(value.as_ref())));
        self.command.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.envs.push(format!("-u {key}"));
        self.command.env_remove(key);
        self
    }

    /// Runs in `dir` instead of the sandbox folder.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.envs.push(format!("(cd {})", dir.as_ref().display()));
        self.command.current_dir(dir);
        self
    }

    /// Runs the command to completion and captures its outputs. A command
    /// that runs longer than `$RESTIX_TEST_CMD_LIMIT_S` (default 900 s) is
    /// killed so that a hang fails the test instead of blocking CI forever.
    pub fn run(mut self) -> Run {
        let cmdline = if self.envs.is_empty() {
            self.words.join(" ")
        } else {
            format!("{} {}", self.envs.join(" "), self.words.join(" "))
        };
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = match self.command.spawn() {
            Ok(child) => child,
            Err(err) => panic!("cannot start {cmdline}: {err}"),
        };
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let limit = std::env::var("RESTIX_TEST_CMD_LIMIT_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(900u64);
        let output = match rx.recv_timeout(Duration::from_secs(limit)) {
            Ok(out) => out,
            Err(_) => {
                // SAFETY: kill(2) on the pid of our own child; at worst the
                // pid has exited already and the call fails harmlessly.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                let out = rx.recv();
                panic!(
                    "hung: killed after {limit} s: {cmdline}\n{}",
                    match out {
                        Ok(Ok(o)) => format!(
                            "stdout:\n{}\nstderr:\n{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                        _ => String::new(),
                    }
                );
            }
        };
        let output = output.unwrap_or_else(|err| panic!("waiting for {cmdline}: {err}"));
        use std::os::unix::process::ExitStatusExt;
        Run {
            cmdline,
            tool: self.tool,
            code: output.status.code(),
            signal: output.status.signal(),
            stdout: output.stdout,
            stderr: output.stderr,
        }
    }
}

impl Cmd {
    /// Starts the command with a piped stdin (for `backup --stdin`) and
    /// stdout/stderr going to `log`; the caller writes, closes stdin and waits.
    pub fn spawn_with_stdin(mut self, log: &Path) -> std::process::Child {
        let file = fs::File::create(log).expect("create log");
        let file2 = file.try_clone().expect("clone log handle");
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(file2));
        self.command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.words.join(" ")))
    }
}

/// Waits (up to `limit`) until `dir` holds at least one file named by a
/// 64-hex ID (temporary upload files are ignored) and returns them; panics
/// with `what` if none appears. Used to wait for lock files.
pub fn wait_for_files(dir: &Path, limit: Duration, what: &str) -> Vec<PathBuf> {
    let start = std::time::Instant::now();
    loop {
        let files: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.file_name().and_then(OsStr::to_str).is_some_and(is_hex64))
                    .collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            return files;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: nothing appeared in {} within {limit:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shell_quote(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The result of a finished command.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command line as a shell would show it (environment additions first).
    pub cmdline: String,
    /// Which program ran.
    pub tool: Tool,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

impl Run {
    /// stdout as text (lossy).
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Did the program crash: Rust panic (exit 101 or `panicked at`), Go
    /// panic (`goroutine` trace, exit 2 with `panic:`), or killed by a signal?
    pub fn crashed(&self) -> bool {
        let err = self.err();
        self.signal.is_some()
            || self.code == Some(101)
            || err.contains("panicked at")
            || err.contains("RUST_BACKTRACE")
            || (err.contains("panic:") && err.contains("goroutine "))
    }

    /// Everything about the run, for failure messages.
    pub fn describe(&self) -> String {
        let status = match (self.code, self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "unknown status".into(),
        };
        format!(
            "$ {}\n-> {status}\n--- stdout ({} bytes) ---\n{}\n--- stderr ({} bytes) ---\n{}\n--- end ---",
            self.cmdline,
            self.stdout.len(),
            truncate_middle(&self.out(), 20_000),
            self.stderr.len(),
            truncate_middle(&self.err(), 20_000)
        )
    }

    /// Panics unless the command exited with 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed:\n{}", self.describe());
        self
    }

    /// Panics unless the command failed cleanly: non-zero exit, no crash.
    #[track_caller]
    pub fn fails(self) -> Self {
        assert!(
            !self.success(),
            "command succeeded but should have failed:\n{}",
            self.describe()
        );
        self.no_crash()
    }

    /// Panics if the command crashed (panic, exit 101, signal).
    #[track_caller]
    pub fn no_crash(self) -> Self {
        assert!(!self.crashed(), "command crashed:\n{}", self.describe());
        self
    }

    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}:\n{}",
            self.describe()
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.err().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.describe()
        );
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.out().contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.describe()
        );
        self
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not one JSON document ({err}):\n{}",
                self.describe()
            )
        })
    }

    /// stdout parsed as JSON lines (every non-empty line must parse).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.out()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|err| {
                    panic!(
                        "stdout line {line:?} is not JSON ({err}):\n{}",
                        self.describe()
                    )
                })
            })
            .collect()
    }
}

fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[... {} bytes left out ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Lowercase hex SHA-256 of `data` (= the blob ID of a single-chunk file).
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lowercase hex digits?
pub fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Deterministic pseudo-random bytes (splitmix64), the same on every run.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The path a snapshot of the absolute `src` is restored to below `target`
/// (`target/<src without the leading />`).
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap_or(src))
}

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// Sets atime and mtime (seconds, nanoseconds) without following symlinks.
pub fn set_times(path: &Path, mtime: (i64, i64), atime: (i64, i64)) {
    let times = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    let c = cpath(path);
    // SAFETY: `c` is a valid NUL-terminated path and `times` points to two
    // initialised timespecs, as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Creates a named pipe.
pub fn make_fifo(path: &Path, mode: u32) {
    let c = cpath(path);
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Changes owner without following symlinks.
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|err| panic!("lchown {}: {err}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {:o} {}: {err}", mode, path.display()));
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, data).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

/// Does the file system under `dir` keep nanosecond mtimes?
pub fn fs_keeps_nanoseconds(dir: &Path) -> bool {
    let probe = dir.join(".ns-probe");
    write(&probe, b"x");
    set_times(
        &probe,
        (1_600_000_000, 123_456_789),
        (1_600_000_000, 123_456_789),
    );
    let keeps = fs::symlink_metadata(&probe)
        .map(|m| m.mtime_nsec() == 123_456_789)
        .unwrap_or(false);
    let _ = fs::remove_file(&probe);
    keeps
}

// ---------------------------------------------------------------------------
// Varied test tree
// ---------------------------------------------------------------------------

/// What [`make_varied_tree`] puts in.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    /// The 20 MB pseudo-random file (`big/random-20m.bin`) and a 1 MiB zero file.
    pub big_file: bool,
    /// A symlink whose target is not valid UTF-8. restic 0.14 stores such
    /// targets lossily (U+FFFD), restix like restic >= 0.16 adds
    /// `linktarget_raw`; leave it out where tree IDs are compared.
    pub non_utf8_symlink_target: bool,
    /// Files/symlinks owned by uid/gid 1234/5678 (needs root).
    pub foreign_owner: bool,
    /// Pseudo-random seed for file contents.
    pub seed: u64,
}

impl Default for TreeSpec {
    fn default() -> Self {
        TreeSpec {
            big_file: true,
            non_utf8_symlink_target: true,
            foreign_owner: is_root(),
            seed: 0x5eed,
        }
    }
}

/// File names that exercise quoting (restic-format §11.3).
pub fn odd_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = [
        &b"quote\"double"[..],
        b"quote'single",
        b"<html>&amp",
        b"with space ",
        b" leading space",
        b"new\nline",
        b"back\\slash",
        b"tab\tname",
        b"ctl\x01name",
        b"del\x7f",
        b"bad\xff\xfeutf8",
        b"latin1-\xe9t\xe9",
        "ünïcödé ☃".as_bytes(),
        "emoji😀".as_bytes(),
        "nbsp\u{a0}".as_bytes(),
        "bom\u{feff}".as_bytes(),
        "\u{e0001}tag".as_bytes(),
        b"-dash",
        b"--double-dash",
        b"percent%20",
        b"star*?[x]",
        b"semi;colon|pipe$dollar`tick",
        b"trailing.",
        b".hidden",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    names.push(vec![b'n'; 255]);
    names
}

/// Fixed mtimes (seconds, nanoseconds) used in the tree, including
/// pre-1970, the epoch and far future.
pub const ODD_MTIMES: [(i64, i64); 6] = [
    (0, 0),
    (-1, 500_000_000),
    (946_684_800, 1),
    (1_234_567_890, 999_999_999),
    (4_102_444_800, 123_456_789),
    (1_700_000_000, 0),
];

fn mtime_for(index: usize) -> (i64, i64) {
    (
        1_600_000_000 + index as i64 * 3_607,
        (index as i64 * 123_456_791) % 1_000_000_000,
    )
}

/// Builds the varied tree at `root` (which must not exist). Deterministic:
/// two calls with the same spec give trees that [`compare_trees`] finds
/// equal. Contents:
///
/// * `empty-files/`: empty files; `empty-dir/`: an empty directory
/// * `names/`: one small file per [`odd_names`] entry, and a directory with an odd name
/// * `big/`: 20 MB pseudo-random, 1 MiB zeros, a copy of a small file (dedup)
/// * `small/`: 40 files of 1..=200 KiB pseudo-random data
/// * `hardlinks/`: a file with three names (one in a subfolder), a pair
/// * `links/`: relative, absolute, dangling, self-loop, directory, odd and
///   long targets, a non-UTF-8 target (optional)
/// * `deep/`: 20 nested levels
/// * `modes/`: files 0600/0755/0444/0000/0640/04755/02755, folders with
///   setuid, setgid, sticky, read-only
/// * `fifo`
/// * `owned/`: entries owned by 1234:5678 (root only)
/// * mtimes in ns, some pre-1970 and far future, set on files, links, folders
pub fn make_varied_tree(root: &Path, spec: &TreeSpec) {
    assert!(!root.exists(), "{} exists already", root.display());
    fs::create_dir_all(root).expect("mkdir root");
    let mut counter = 0usize;
    let mut next_mtime = || {
        counter += 1;
        mtime_for(counter)
    };
    let mut times: Vec<(PathBuf, (i64, i64))> = Vec::new();

    // empty files and folder
    for name in ["empty1", "empty2", ".empty-hidden"] {
        let p = root.join("empty-files").join(name);
        write(&p, b"");
        times.push((p, next_mtime()));
    }
    fs::create_dir_all(root.join("empty-dir")).unwrap();

    // odd names
    let names_dir = root.join("names");
    fs::create_dir_all(&names_dir).unwrap();
    for (i, name) in odd_names().iter().enumerate() {
        let p = names_dir.join(os(name));
        let mut content = b"content of ".to_vec();
        content.extend_from_slice(name);
        content.extend_from_slice(format!(" #{i}\n").as_bytes());
        write(&p, &content);
        let t = if i < ODD_MTIMES.len() {
            ODD_MTIMES[i]
        } else {
            next_mtime()
        };
        times.push((p, t));
    }
    let odd_dir = names_dir.join(os(b"dir with \"odd\" name\n\xff"));
    write(&odd_dir.join("inside"), b"inside an odd folder\n");
    times.push((odd_dir.join("inside"), next_mtime()));

    // big data
    let mut small_copy_source = Vec::new();
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..40u64 {
        let len = 1024 + ((i * 7919 * 1024) % (200 * 1024)) as usize;
        let data = pseudo_random_bytes(spec.seed ^ (i + 1), len);
        if i == 3 {
            small_copy_source = data.clone();
        }
        let p = root.join("small").join(format!("s{i:02}.bin"));
        write(&p, &data);
        times.push((p, next_mtime()));
    }
    if spec.big_file {
        let p = root.join("big/random-20m.bin");
        write(&p, &pseudo_random_bytes(spec.seed, BIG_FILE_SIZE));
        times.push((p, next_mtime()));
        let p = root.join("big/zeros-1m.bin");
        write(&p, &vec![0u8; 1 << 20]);
        times.push((p, next_mtime()));
        let p = root.join("big/copy-of-s03.bin");
        write(&p, &small_copy_source);
        times.push((p, next_mtime()));
    }

    // hard links
    let hl = root.join("hardlinks");
    write(&hl.join("a"), b"three names, one inode\n");
    fs::create_dir_all(hl.join("sub")).unwrap();
    fs::hard_link(hl.join("a"), hl.join("b")).unwrap();
    fs::hard_link(hl.join("a"), hl.join("sub/c")).unwrap();
    write(&hl.join("pair1"), b"two names\n");
    fs::hard_link(hl.join("pair1"), hl.join("pair2")).unwrap();
    write(&hl.join("single"), b"one name\n");
    times.push((hl.join("a"), next_mtime()));
    times.push((hl.join("pair1"), next_mtime()));
    times.push((hl.join("single"), next_mtime()));

    // symlinks
    let ln = root.join("links");
    write(&ln.join("target.txt"), b"link target\n");
    times.push((ln.join("target.txt"), next_mtime()));
    let mut link_targets: Vec<(&str, Vec<u8>)> = vec![
        ("rel", b"target.txt".to_vec()),
        ("abs", b"/etc/hostname".to_vec()),
        ("dangling", b"does/not/exist".to_vec()),
        ("self-loop", b"self-loop".to_vec()),
        ("dir", b"../deep".to_vec()),
        (
            "odd",
            b"we<ir>d & 'q' \"dq\" back\\slash\nnew line \t tab".to_vec(),
        ),
        ("unicode", "ünïcödé/☃/😀".as_bytes().to_vec()),
        ("long", b"x/".repeat(500)),
    ];
    if spec.non_utf8_symlink_target {
        link_targets.push(("non-utf8", b"bad\xff\xfe\xfdtarget".to_vec()));
    }
    for (name, target) in &link_targets {
        let p = ln.join(name);
        symlink(os(target), &p).unwrap();
        times.push((p, next_mtime()));
    }

    // deep folders
    let mut deep = root.join("deep");
    for level in 1..=20 {
        deep = deep.join(format!("level{level:02}"));
    }
    write(&deep.join("leaf.txt"), b"20 levels down\n");
    times.push((deep.join("leaf.txt"), next_mtime()));

    // fifo
    make_fifo(&root.join("fifo"), 0o640);
    times.push((root.join("fifo"), next_mtime()));

    // owner
    if spec.foreign_owner {
        let own = root.join("owned");
        write(&own.join("file"), b"owned by 1234:5678\n");
        symlink("file", own.join("link")).unwrap();
        lchown(&own.join("file"), 1234, 5678);
        lchown(&own.join("link"), 1234, 5678);
        lchown(&own, 1234, 5678);
        times.push((own.join("file"), next_mtime()));
        times.push((own.join("link"), next_mtime()));
    }

    // modes (files)
    let modes = root.join("modes");
    let file_modes: [(&str, u32); 8] = [
        ("0600", 0o600),
        ("0755", 0o755),
        ("0444", 0o444),
        ("0000", 0o000),
        ("0640", 0o640),
        ("0777", 0o777),
        ("4755-setuid", 0o4755),
        ("2755-setgid", 0o2755),
    ];
    for (name, mode) in file_modes {
        let p = modes.join(name);
        write(&p, format!("mode {name}\n").as_bytes());
        chmod(&p, mode);
        times.push((p, next_mtime()));
    }
    let ro_dir = modes.join("dir-0555");
    write(&ro_dir.join("inside"), b"inside a read-only folder\n");
    times.push((ro_dir.join("inside"), next_mtime()));
    for name in [
        "dir-4755-setuid",
        "dir-2750-setgid",
        "dir-1777-sticky",
        "dir-0700",
    ] {
        let d = modes.join(name);
        write(&d.join("f"), b"f\n");
        times.push((d.join("f"), next_mtime()));
    }

    for (path, t) in &times {
        set_times(path, *t, (t.0 + 1, 0));
    }

    // folder modes and mtimes last, deepest first, so nothing changes them later
    let mut dirs = Vec::new();
    collect_dirs(root, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let dir_modes: BTreeMap<PathBuf, u32> = [
        (modes.join("dir-0555"), 0o555),
        (modes.join("dir-4755-setuid"), 0o4755),
        (modes.join("dir-2750-setgid"), 0o2750),
        (modes.join("dir-1777-sticky"), 0o1777),
        (modes.join("dir-0700"), 0o700),
    ]
    .into_iter()
    .collect();
    for dir in &dirs {
        chmod(dir, dir_modes.get(dir).copied().unwrap_or(0o755));
        let t = next_mtime();
        set_times(dir, t, t);
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            collect_dirs(&entry.path(), out);
        }
    }
}

/// Changes a tree made by [`make_varied_tree`] deterministically: appends to
/// one file, rewrites another in place (same size), removes one, adds a new
/// folder with files, changes a mode, changes an mtime only, and rewrites part
/// of the big file if present. Apply it to two copies to get equal trees.
pub fn modify_tree(root: &Path) {
    let mut restore_dir_times = Vec::new();
    for dir in ["small", "names", "modes", "", "big", "added"] {
        let d = root.join(dir);
        if let Ok(m) = fs::symlink_metadata(&d) {
            restore_dir_times.push((d, (m.mtime(), m.mtime_nsec())));
        }
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(root.join("small/s00.bin"))
        .unwrap();
    f.write_all(b"appended data\n").unwrap();
    drop(f);
    set_times(
        &root.join("small/s00.bin"),
        (1_650_000_000, 1),
        (1_650_000_000, 1),
    );

    let p = root.join("small/s01.bin");
    let len = fs::metadata(&p).unwrap().len() as usize;
    fs::write(&p, pseudo_random_bytes(0xc0ffee, len)).unwrap();
    set_times(&p, (1_650_000_100, 2), (1_650_000_100, 2));

    fs::remove_file(root.join("small/s02.bin")).unwrap();

    let p = root.join("small/s04.bin");
    set_times(&p, (1_650_000_200, 3), (1_650_000_200, 3));

    chmod(&root.join("modes/0640"), 0o604);

    for i in 0..3u64 {
        let p = root.join("added").join(format!("new{i}.txt"));
        write(&p, format!("new file {i}\n").as_bytes());
        set_times(&p, (1_660_000_000 + i as i64, 5), (1_660_000_000, 5));
    }

    let big = root.join("big/random-20m.bin");
    if big.exists() {
        let mut file = fs::OpenOptions::new().write(true).open(&big).unwrap();
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(7_000_000)).unwrap();
        file.write_all(&pseudo_random_bytes(0xbeef, 100_000))
            .unwrap();
        drop(file);
        set_times(&big, (1_650_000_300, 4), (1_650_000_300, 4));
    }

    for (d, t) in restore_dir_times {
        set_times(&d, t, t);
    }
    let added = root.join("added");
    set_times(&added, (1_660_000_100, 0), (1_660_000_100, 0));
    // the root itself gained a folder; give it a fixed mtime too
    set_times(root, (1_660_000_200, 0), (1_660_000_200, 0));
}

/// Sum of the sizes of the regular files in `root` (each hard-link name counts).
pub fn total_file_bytes(root: &Path) -> u64 {
    let mut total = 0;
    for entry in walk(root) {
        let meta = fs::symlink_metadata(root.join(&entry)).unwrap();
        if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// `cp -a from to`: a copy of a repository or tree with modes and times kept.
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
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

/// Every non-folder below `dir` (files, links, fifos), as full paths.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .map(|rel| dir.join(rel))
        .filter(|p| !fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false))
        .collect()
}

/// Replaces the only key file of the local repository at `repo` by one that
/// wraps the same master key with cheap scrypt parameters (N=128, r=1, as
/// restic's own tests use), so tests that run restic and restix hundreds of
/// times do not spend their time deriving keys.
pub fn use_cheap_key(repo: &Path) {
    use restix_engine::backend::local::LocalBackend;
    use restix_engine::backend::{Backend, FileType};
    use restix_engine::repository::Repository;
    use restix_repo_format::{GoTime, Id, KeyFile, ScryptParams};
    use std::sync::Arc;

    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo));
    let opened = Repository::open(Arc::clone(&backend), PASSWORD.as_bytes(), None).unwrap();
    let key = KeyFile::create(
        opened.key(),
        PASSWORD.as_bytes(),
        ScryptParams::fast_for_tests(),
        "test",
        "test",
        GoTime::from_unix_utc(1_700_000_000, 0),
    )
    .unwrap()
    .to_json()
    .unwrap();
    let old = opened.key_id().to_hex();
    drop(opened);
    backend
        .write(FileType::Key, &Id::hash(&key).to_hex(), &key)
        .unwrap();
    backend.remove(FileType::Key, &old).unwrap();
}

/// Every path below `root`, relative, sorted by bytes, pre-order (`root`
/// itself not included).
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk_into(root, Path::new(""), &mut out);
    out
}

fn walk_into(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let dir = root.join(rel);
    let mut names: Vec<OsString> = match fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name()).collect(),
        Err(_) => return,
    };
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let child = rel.join(&name);
        out.push(child.clone());
        if fs::symlink_metadata(root.join(&child))
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            walk_into(root, &child, out);
        }
    }
}

// ---------------------------------------------------------------------------
// Tree comparison
// ---------------------------------------------------------------------------

/// How strict [`compare_trees`] is.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Accept a symlink target with U+FFFD in place of invalid UTF-8 bytes
    /// (restic 0.14 stores and restores non-UTF-8 targets lossily).
    pub lossy_symlink_targets: bool,
    /// Compare uid/gid.
    pub ownership: bool,
    /// Compare modes, mtimes and owner of the two roots themselves.
    pub root_metadata: bool,
    /// Compare mtimes of symlinks.
    pub symlink_mtimes: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            lossy_symlink_targets: false,
            ownership: is_root(),
            root_metadata: false,
            symlink_mtimes: true,
        }
    }
}

fn kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "char device"
    } else {
        "unknown"
    }
}

fn show(rel: &Path) -> String {
    format!("{:?}", rel.as_os_str())
}

/// Differences between `expected` and `actual` (empty = equal): entry
/// sets, types, permission bits (incl. setuid/setgid/sticky), owner, mtimes
/// (ns where the file system keeps them), file contents, symlink targets,
/// and hard-link identity.
pub fn compare_trees(expected: &Path, actual: &Path, opts: &CompareOptions) -> Vec<String> {
    let mut diffs = Vec::new();
    if !actual.exists() {
        diffs.push(format!("{} does not exist", actual.display()));
        return diffs;
    }
    let ns = {
        let probe_dir = tempfile::tempdir().expect("temp dir");
        fs_keeps_nanoseconds(probe_dir.path())
    };
    let exp_entries: BTreeSet<PathBuf> = walk(expected).into_iter().collect();
    let act_entries: BTreeSet<PathBuf> = walk(actual).into_iter().collect();
    for missing in exp_entries.difference(&act_entries) {
        diffs.push(format!("missing: {}", show(missing)));
    }
    for extra in act_entries.difference(&exp_entries) {
        diffs.push(format!("unexpected: {}", show(extra)));
    }
    let mut exp_groups: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut act_inodes: BTreeMap<PathBuf, (u64, u64, u64)> = BTreeMap::new();
    let mut all: Vec<PathBuf> = exp_entries.intersection(&act_entries).cloned().collect();
    if opts.root_metadata {
        all.insert(0, PathBuf::new());
    }
    for rel in all {
        let e = expected.join(&rel);
        let a = actual.join(&rel);
        let (em, am) = match (fs::symlink_metadata(&e), fs::symlink_metadata(&a)) {
            (Ok(em), Ok(am)) => (em, am),
            (x, y) => {
                diffs.push(format!(
                    "{}: stat failed: {:?} / {:?}",
                    show(&rel),
                    x.err(),
                    y.err()
                ));
                continue;
            }
        };
        let (ek, ak) = (kind(&em), kind(&am));
        if ek != ak {
            diffs.push(format!("{}: type {ek} expected, got {ak}", show(&rel)));
            continue;
        }
        if ek != "symlink" && em.mode() & 0o7777 != am.mode() & 0o7777 {
            diffs.push(format!(
                "{}: mode {:04o} expected, got {:04o}",
                show(&rel),
                em.mode() & 0o7777,
                am.mode() & 0o7777
            ));
        }
        if opts.ownership && (em.uid(), em.gid()) != (am.uid(), am.gid()) {
            diffs.push(format!(
                "{}: owner {}:{} expected, got {}:{}",
                show(&rel),
                em.uid(),
                em.gid(),
                am.uid(),
                am.gid()
            ));
        }
        let check_mtime = ek != "symlink" || opts.symlink_mtimes;
        if check_mtime {
            let et = (em.mtime(), if ns { em.mtime_nsec() } else { 0 });
            let at = (am.mtime(), if ns { am.mtime_nsec() } else { 0 });
            if et != at {
                diffs.push(format!(
                    "{}: mtime {}.{:09} expected, got {}.{:09}",
                    show(&rel),
                    et.0,
                    et.1,
                    at.0,
                    at.1
                ));
            }
        }
        match ek {
            "file" => {
                if em.len() != am.len() {
                    diffs.push(format!(
                        "{}: size {} expected, got {}",
                        show(&rel),
                        em.len(),
                        am.len()
                    ));
                } else if let Some(offset) = first_difference(&e, &a) {
                    diffs.push(format!(
                        "{}: content differs (first at byte {offset})",
                        show(&rel)
                    ));
                }
                if em.nlink() > 1 {
                    exp_groups
                        .entry((em.dev(), em.ino()))
                        .or_default()
                        .push(rel.clone());
                }
                act_inodes.insert(rel.clone(), (am.dev(), am.ino(), am.nlink()));
                if em.nlink() == 1 && am.nlink() > 1 {
                    diffs.push(format!(
                        "{}: hard-linked ({} links) but should not be",
                        show(&rel),
                        am.nlink()
                    ));
                }
            }
            "symlink" => {
                let et = fs::read_link(&e).unwrap();
                let at = fs::read_link(&a).unwrap();
                let lossy = String::from_utf8_lossy(et.as_os_str().as_bytes()).into_owned();
                let ok = et == at
                    || (opts.lossy_symlink_targets
                        && at.as_os_str().as_bytes() == lossy.as_bytes());
                if !ok {
                    diffs.push(format!(
                        "{}: symlink target {:?} expected, got {:?}",
                        show(&rel),
                        et.as_os_str(),
                        at.as_os_str()
                    ));
                }
            }
            _ => {}
        }
    }
    // hard-link identity: each expected group is one inode in `actual`,
    // and different groups are different inodes.
    let mut seen: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for group in exp_groups.values() {
        let inodes: BTreeSet<(u64, u64)> = group
            .iter()
            .filter_map(|p| act_inodes.get(p).map(|(d, i, _)| (*d, *i)))
            .collect();
        if inodes.len() != 1 {
            diffs.push(format!(
                "hard links {:?} should share one inode, got {} inodes",
                group,
                inodes.len()
            ));
        }
        for inode in inodes {
            seen.entry(inode).or_default().extend(group.iter().cloned());
        }
    }
    for (inode, names) in seen {
        let act_names: Vec<&PathBuf> = act_inodes
            .iter()
            .filter(|(_, (d, i, _))| (*d, *i) == inode)
            .map(|(p, _)| p)
            .collect();
        if act_names.len() != names.len() {
            diffs.push(format!(
                "hard-link group {names:?}: restored inode is shared by {act_names:?}"
            ));
        }
    }
    diffs
}

fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let mut fa = fs::File::open(a).ok()?;
    let mut fb = fs::File::open(b).ok()?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        let n = na.min(nb);
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Some(offset + i as u64);
        }
        if na != nb {
            return Some(offset + n as u64);
        }
        if na == 0 {
            return None;
        }
        offset += n as u64;
    }
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => break,
        }
    }
    filled
}

/// Panics with every difference if the trees differ.
#[track_caller]
pub fn assert_trees_equal(expected: &Path, actual: &Path, opts: &CompareOptions) {
    let diffs = compare_trees(expected, actual, opts);
    assert!(
        diffs.is_empty(),
        "trees differ: expected {} vs actual {}:\n  {}",
        expected.display(),
        actual.display(),
        diffs.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// `../shared/fixtures` relative to the workspace root.
pub fn default_fixtures_dir() -> PathBuf {
    workspace_root().join("..").join("shared").join("fixtures")
}

/// The fixtures folder: `$RESTIX_FIXTURES`, else [`default_fixtures_dir`];
/// `None` when it does not exist. See [`require_fixtures!`].
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RESTIX_FIXTURES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_fixtures_dir);
    dir.join("restic-upstream").is_dir().then_some(dir)
}

/// Extracts a `.tar.gz` into `into` (created) with the real `tar`.
pub fn untar(tarball: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let out = Command::new("tar")
        .arg("xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar xzf {} failed: {}",
        tarball.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Extracts `restic-upstream/<name>.tar.gz` into `sb/<name>/` and returns
/// that folder (repositories are in its `repo/`).
pub fn fixture_tree(fixtures: &Path, sb: &Sandbox, name: &str) -> PathBuf {
    let tarball = fixtures
        .join("restic-upstream")
        .join(format!("{name}.tar.gz"));
    assert!(tarball.exists(), "{} missing", tarball.display());
    let into = sb.join(name);
    untar(&tarball, &into);
    into
}

/// Extracts the fixture repository `name` and returns its `repo/` folder.
pub fn fixture_repo(fixtures: &Path, sb: &Sandbox, name: &str) -> PathBuf {
    let repo = fixture_tree(fixtures, sb, name).join("repo");
    assert!(repo.join("config").exists(), "{name}: no repo/config");
    repo
}

// ---------------------------------------------------------------------------
// Oracle: facts read with the real restic
// ---------------------------------------------------------------------------

/// One blob in the index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// Pack ID (64 hex).
    pub pack: String,
    /// Blob ID (64 hex).
    pub blob: String,
    /// `data` or `tree`.
    pub kind: String,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub length: u64,
}

/// Reads repository facts with the real restic.
pub struct Oracle<'a> {
    sb: &'a Sandbox,
    repo: PathBuf,
}

impl<'a> Oracle<'a> {
    /// For the repository at `repo`.
    pub fn new(sb: &'a Sandbox, repo: &Path) -> Self {
        Oracle {
            sb,
            repo: repo.to_path_buf(),
        }
    }

    fn restic(&self, args: &[&str]) -> Run {
        self.sb
            .cmd(Tool::Restic)
            .arg("-r")
            .arg(&self.repo)
            .args(args)
            .run()
            .ok()
    }

    /// `restic list <what>` lines.
    pub fn list(&self, what: &str) -> Vec<String> {
        self.restic(&["list", what])
            .out()
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `restic list blobs` as a set of `(type, id)`.
    pub fn blobs(&self) -> BTreeSet<(String, String)> {
        self.list("blobs")
            .into_iter()
            .filter_map(|line| {
                let mut it = line.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect()
    }

    /// Every blob of every index file.
    pub fn index_entries(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        for id in self.list("index") {
            let index = self.restic(&["cat", "index", &id]).json();
            for pack in index["packs"].as_array().into_iter().flatten() {
                let pack_id = pack["id"].as_str().unwrap_or_default().to_string();
                for blob in pack["blobs"].as_array().into_iter().flatten() {
                    out.push(IndexEntry {
                        pack: pack_id.clone(),
                        blob: blob["id"].as_str().unwrap_or_default().to_string(),
                        kind: blob["type"].as_str().unwrap_or_default().to_string(),
                        offset: blob["offset"].as_u64().unwrap_or_default(),
                        length: blob["length"].as_u64().unwrap_or_default(),
                    });
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// `restic snapshots --json`.
    pub fn snapshots(&self) -> Vec<Value> {
        self.restic(&["snapshots", "--json"])
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The stored snapshot (`restic cat snapshot <id>`).
    pub fn snapshot_file(&self, id: &str) -> Value {
        self.restic(&["cat", "snapshot", id]).json()
    }

    /// The nodes of tree `id` (`restic cat blob`).
    pub fn tree_nodes(&self, id: &str) -> Vec<Value> {
        let tree: Value = serde_json::from_slice(&self.blob(id)).unwrap_or(Value::Null);
        tree["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// The node at `path` (plain ASCII names) below the root tree of
    /// snapshot `snapshot`.
    #[track_caller]
    pub fn node_at(&self, snapshot: &str, path: &[&str]) -> Value {
        let mut tree = self.snapshot_file(snapshot)["tree"]
            .as_str()
            .expect("snapshot has a tree")
            .to_string();
        let mut found = Value::Null;
        for (i, name) in path.iter().enumerate() {
            let nodes = self.tree_nodes(&tree);
            found = nodes
                .iter()
                .find(|n| n["name"] == *name)
                .cloned()
                .unwrap_or_else(|| panic!("{name:?} not found in tree {tree}: {nodes:#?}"));
            if i + 1 < path.len() {
                tree = found["subtree"].as_str().expect("a folder").to_string();
            }
        }
        found
    }

    /// The path of a pack file in a local repository.
    pub fn pack_path(&self, pack: &str) -> PathBuf {
        self.repo.join("data").join(&pack[..2]).join(pack)
    }
}

/// Every node `path` printed by `ls --json <snapshot>` (any program).
pub fn ls_paths(run: &Run) -> BTreeSet<String> {
    run.json_lines()
        .into_iter()
        .filter(|v| v["struct_type"] == "node" || v["message_type"] == "node")
        .filter_map(|v| v["path"].as_str().map(str::to_string))
        .collect()
}

/// The `summary` line of `backup --json` output (panics if missing).
#[track_caller]
pub fn backup_summary(run: &Run) -> Value {
    let lines = run.json_lines();
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no JSON lines:\n{}", run.describe()))
        .clone();
    assert_eq!(
        last["message_type"],
        "summary",
        "last line is not the summary:\n{}",
        run.describe()
    );
    last
}

/// The snapshot in `list` whose `id` starts with `id_or_prefix` (restic 0.14
/// prints 8-hex IDs in `backup --json`).
#[track_caller]
pub fn find_snapshot<'v>(list: &'v [Value], id_or_prefix: &str) -> &'v Value {
    assert!(!id_or_prefix.is_empty(), "empty snapshot ID");
    list.iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(id_or_prefix))
        })
        .unwrap_or_else(|| panic!("snapshot {id_or_prefix} not in {list:#?}"))
}

impl Oracle<'_> {
    /// Plaintext of a blob (`restic cat blob <id>`; works for tree blobs too).
    pub fn blob(&self, id: &str) -> Vec<u8> {
        self.restic(&["cat", "blob", id]).stdout
    }

    /// Where two trees first differ, as readable text: walks both from the
    /// root and prints the differing nodes' JSON (for failure messages).
    pub fn explain_tree_difference(&self, a: &str, b: &str) -> String {
        let mut out = String::new();
        self.explain_into(a, b, "/", &mut out, 0);
        if out.is_empty() {
            out.push_str("(no difference found below the roots)");
        }
        out
    }

    fn explain_into(&self, a: &str, b: &str, path: &str, out: &mut String, depth: usize) {
        use std::fmt::Write as _;
        if a == b || depth > 30 || out.len() > 20_000 {
            return;
        }
        let ta = self.blob(a);
        let tb = self.blob(b);
        let nodes = |raw: &[u8]| -> BTreeMap<String, Value> {
            let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
            v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or_default().to_string(),
                        n.clone(),
                    )
                })
                .collect()
        };
        let (na, nb) = (nodes(&ta), nodes(&tb));
        let _ = writeln!(out, "tree {path}: {a} vs {b}");
        if na.is_empty() && nb.is_empty() {
            let _ = writeln!(
                out,
                "  raw A: {}\n  raw B: {}",
                String::from_utf8_lossy(&ta),
                String::from_utf8_lossy(&tb)
            );
        }
        let names: BTreeSet<&String> = na.keys().chain(nb.keys()).collect();
        for name in names {
            match (na.get(name), nb.get(name)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    let (sx, sy) = (x["subtree"].as_str(), y["subtree"].as_str());
                    let mut x_meta = x.clone();
                    let mut y_meta = y.clone();
                    x_meta["subtree"] = Value::Null;
                    y_meta["subtree"] = Value::Null;
                    if x_meta != y_meta {
                        let _ = writeln!(out, "  node {name:?} differs:\n    A: {x}\n    B: {y}");
                    }
                    if let (Some(sx), Some(sy)) = (sx, sy) {
                        let child = format!("{}{}/", path, name);
                        self.explain_into(sx, sy, &child, out, depth + 1);
                    }
                }
                (x, y) => {
                    let _ = writeln!(
                        out,
                        "  node {name:?} only on one side:\n    A: {x:?}\n    B: {y:?}"
                    );
                }
            }
        }
        // Same nodes but different bytes: show the raw encodings.
        if na == nb && ta != tb {
            let _ = writeln!(
                out,
                "  same parsed nodes, different bytes:\n  raw A: {}\n  raw B: {}",
                truncate_middle(&String::from_utf8_lossy(&ta), 4000),
                truncate_middle(&String::from_utf8_lossy(&tb), 4000)
            );
        }
    }
}

impl Sandbox {
    /// `init --repository-version <version>` of `repo` with `tool`; asserts success.
    pub fn init(&self, tool: Tool, repo: &Path, version: u32) -> Run {
        self.run(
            tool,
            [
                "init",
                "--repository-version",
                &version.to_string(),
                "-r",
                s(repo),
            ],
        )
        .ok()
    }
}

/// Numbered steps of a caller replay (OpenNebula, Velero): `begin` logs
/// `[tool] step N: what` to stderr, `context` names the step in assertion
/// messages, so a failure says which caller step broke with which program.
pub struct ReplaySteps {
    replay: &'static str,
    tool: Tool,
    step: std::cell::Cell<usize>,
}

impl ReplaySteps {
    /// Steps of `replay` ("OpenNebula", "Velero") run with `tool`.
    pub fn new(replay: &'static str, tool: Tool) -> ReplaySteps {
        ReplaySteps {
            replay,
            tool,
            step: std::cell::Cell::new(0),
        }
    }

    /// How the replay names the program as `restic`.
    pub fn tool_name(tool: Tool) -> &'static str {
        match tool {
            Tool::Restix => "restix",
            Tool::Restic => "restic-0.14",
        }
    }

    /// Start the next step.
    pub fn begin(&self, what: &str) {
        self.step.set(self.step.get() + 1);
        eprintln!(
            "[{}] step {}: {what}",
            Self::tool_name(self.tool),
            self.step.get()
        );
    }

    /// `"<replay> replay with <tool>: step N"` for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "{} replay with {}: step {}",
            self.replay,
            Self::tool_name(self.tool),
            self.step.get()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_trees() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let spec = TreeSpec {
            big_file: false,
            ..TreeSpec::default()
        };
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        make_varied_tree(&a, &spec);
        make_varied_tree(&b, &spec);
        (dir, a, b)
    }

    #[test]
    fn generated_trees_are_deterministic() {
        let (_dir, a, b) = two_trees();
        assert_trees_equal(&a, &b, &CompareOptions::default());
        assert!(walk(&a).len() > 100);
    }

    #[test]
    fn comparator_finds_every_kind_of_difference() {
        let (_dir, a, b) = two_trees();
        // content, same size
        let p = b.join("small/s05.bin");
        let mut data = fs::read(&p).unwrap();
        data[100] ^= 1;
        let m = fs::symlink_metadata(&p).unwrap();
        fs::write(&p, data).unwrap();
        set_times(&p, (m.mtime(), m.mtime_nsec()), (0, 0));
        // mode, mtime (ns only), symlink target, broken hard link, missing
        chmod(&b.join("modes/0600"), 0o644);
        let m = fs::symlink_metadata(b.join("small/s06.bin")).unwrap();
        set_times(
            &b.join("small/s06.bin"),
            (m.mtime(), m.mtime_nsec() + 1),
            (0, 0),
        );
        fs::remove_file(b.join("links/rel")).unwrap();
        symlink("other", b.join("links/rel")).unwrap();
        fs::remove_file(b.join("hardlinks/b")).unwrap();
        fs::write(b.join("hardlinks/b"), b"three names, one inode\n").unwrap();
        fs::remove_file(b.join("empty-files/empty1")).unwrap();
        let diffs = compare_trees(&a, &b, &CompareOptions::default()).join("\n");
        for needle in [
            "small/s05.bin\": content differs",
            "modes/0600\": mode 0600 expected, got 0644",
            "small/s06.bin\": mtime",
            "links/rel\": symlink target",
            "should share one inode",
            "missing: \"empty-files/empty1\"",
        ] {
            assert!(diffs.contains(needle), "{needle:?} not in:\n{diffs}");
        }
    }

    #[test]
    fn lossy_symlink_targets_are_accepted_only_when_asked() {
        let (_dir, a, b) = two_trees();
        let link = b.join("links/non-utf8");
        fs::remove_file(&link).unwrap();
        let lossy = String::from_utf8_lossy(b"bad\xff\xfe\xfdtarget").into_owned();
        symlink(&lossy, &link).unwrap();
        set_times(
            &link,
            {
                let m = fs::symlink_metadata(a.join("links/non-utf8")).unwrap();
                (m.mtime(), m.mtime_nsec())
            },
            (0, 0),
        );
        let d = fs::symlink_metadata(a.join("links")).unwrap();
        set_times(&b.join("links"), (d.mtime(), d.mtime_nsec()), (0, 0));
        assert!(!compare_trees(&a, &b, &CompareOptions::default()).is_empty());
        let opts = CompareOptions {
            lossy_symlink_targets: true,
            ..CompareOptions::default()
        };
        assert_trees_equal(&a, &b, &opts);
    }
}
