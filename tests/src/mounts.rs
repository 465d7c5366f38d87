//! FUSE mounts, NBD servers and loop devices for the `mount_*` and `nbd_*`
//! tests: each is a guard that cleans up on drop, also when the test fails
//! (`fusermount3 -u`, then the serving process is stopped; loop devices are
//! detached and inner mounts unmounted first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{is_root, s, Sandbox, Tool};

/// How long a mount or server may take to come up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// `/dev/fuse` is usable and `fusermount3` runs; otherwise the calling test
/// is recorded as skipped (fails under `CI=true`) and `false` is returned.
pub fn require_fuse() -> bool {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok();
    let helper = restix_testkit::have_program("fusermount3", &["--version"]);
    if !(device && helper) {
        restix_testkit::skip(
            "FUSE (/dev/fuse and fusermount3)",
            "apt-get install fuse3; in a container, pass --device /dev/fuse",
        );
    }
    device && helper
}

/// Loop devices can be set up (root, `losetup`, `/dev/loop-control`) and
/// `mkfs.ext4`/`debugfs` run; otherwise the test is recorded as skipped.
pub fn require_loop_and_ext4() -> bool {
    let ok = is_root()
        && Path::new("/dev/loop-control").exists()
        && restix_testkit::have_program("losetup", &["--version"])
        && restix_testkit::have_program("mkfs.ext4", &["-V"])
        && restix_testkit::have_program("debugfs", &["-V"]);
    if !ok {
        restix_testkit::skip(
            "loop devices and e2fsprogs (root, losetup, mkfs.ext4, debugfs)",
            "run as root; apt-get install mount e2fsprogs",
        );
    }
    ok
}

/// Whether `path` is a mount point now (`/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canonical) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canonical.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(want.as_str()))
}

/// A `mount` command serving in the background; unmounted on drop.
pub struct Mounted {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Mounted {
    /// Run `tool -r REPO mount [extra...] MOUNTPOINT` and wait until the
    /// mount answers (its root lists something). `mountpoint` is created.
    pub fn start(
        sb: &Sandbox,
        tool: Tool,
        repo: &Path,
        mountpoint: &Path,
        extra: &[&str],
    ) -> Mounted {
        std::fs::create_dir_all(mountpoint).expect("create mountpoint");
        let name = mountpoint
            .file_name()
            .map_or("mount".into(), |n| n.to_string_lossy().into_owned());
        let log = sb.join(format!("{name}.log"));
        let child = sb
            .cmd(tool)
            .args(["-r", s(repo), "mount"])
            .args(extra)
            .arg(mountpoint)
            .spawn_with_stdin(&log);
        let mut mounted = Mounted {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            log,
        };
        mounted.wait_ready();
        mounted
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let listed = is_mounted(&self.mountpoint)
                && std::fs::read_dir(&self.mountpoint).is_ok_and(|mut d| d.next().is_some());
            if listed {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "mount exited with {status} before serving:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "mount did not come up in {START_LIMIT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// What the command printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The serving process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send `signal` to the serving process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; harmless if it exited.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, signal);
        }
    }

    /// Wait up to `limit` for the process to exit; its exit code, or `None`
    /// when it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    self.child = None;
                    return Some(status.code().unwrap_or(-1));
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(50)),
                _ => return Some(-1),
            }
        }
        None
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let unmounted = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mountpoint)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A `restix serve-nbd` in the background; stopped on drop.
pub struct NbdServer {
    child: Child,
    log: PathBuf,
    /// The URL qemu takes (`nbd://127.0.0.1:PORT/NAME` or `nbd+unix:...`).
    pub url: String,
}

impl NbdServer {
    /// Run `restix -r REPO serve-nbd --listen LISTEN [extra...] SNAPSHOT` and
    /// wait until it prints its URL.
    pub fn start(
        sb: &Sandbox,
        repo: &Path,
        snapshot: &str,
        listen: &str,
        extra: &[&str],
    ) -> NbdServer {
        let log = sb.join(format!("nbd-{}.log", std::process::id() ^ rand_suffix()));
        let child = sb
            .cmd(Tool::Restix)
            .args(["-r", s(repo), "serve-nbd", "--listen", listen])
            .args(extra)
            .arg(snapshot)
            .spawn_with_stdin(&log);
        let mut server = NbdServer {
            child,
            log,
            url: String::new(),
        };
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(url) = text
                .split_whitespace()
                .find(|w| w.starts_with("nbd://") || w.starts_with("nbd+unix://"))
            {
                server.url = url.to_string();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("serve-nbd exited with {status}:\n{text}");
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "serve-nbd did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; harmless if it exited.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos & 0xffff
}

/// A read-only loop device over a file; detached on drop.
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub device: String,
}

impl LoopDevice {
    /// `losetup --find --show --read-only FILE`.
    pub fn attach_read_only(file: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDevice {
            device: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A file system mounted read-only from a device; unmounted on drop.
pub struct ReadOnlyMount {
    path: PathBuf,
}

impl ReadOnlyMount {
    /// `mount -o ro,noload DEVICE PATH` (noload: no journal replay, the
    /// device is read-only).
    pub fn ext4(device: &str, path: &Path) -> ReadOnlyMount {
        std::fs::create_dir_all(path).expect("create mount point");
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "ro,noload", device])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ReadOnlyMount {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A small ext4 file system image (raw) holding `files` (path in the file
/// system → content), made with mkfs.ext4 and debugfs (no loop device).
pub fn make_ext4_image(sb: &Sandbox, raw: &Path, size_mib: u64, files: &[(&str, &[u8])]) {
    let file = std::fs::File::create(raw).expect("create image");
    file.set_len(size_mib << 20).expect("size image");
    drop(file);
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(raw));
    for (index, (path, content)) in files.iter().enumerate() {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut dir = String::new();
        for part in &parts[..parts.len() - 1] {
            dir = format!("{dir}/{part}");
            // mkdir of an existing folder fails harmlessly.
            let _ = Command::new("debugfs")
                .args(["-w", "-R", &format!("mkdir {dir}")])
                .arg(raw)
                .output();
        }
        let local = sb.join(format!("ext4-file-{index}"));
        std::fs::write(&local, content).expect("write file");
        run_ok(
            Command::new("debugfs")
                .args([
                    "-w",
                    "-R",
                    &format!("write {} {}", s(&local), path.trim_start_matches('/')),
                ])
                .arg(raw),
        );
    }
}

/// Run a command and panic with its output unless it succeeds; stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shell block that follows `<!-- test: MARKER ...-->` in a file under
/// docs/ (so the documented commands are the tested ones).
pub fn doc_block(doc: &str, marker: &str) -> String {
    let path = crate::harness::workspace_root().join("docs").join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text
        .find(&format!("<!-- test: {marker}"))
        .unwrap_or_else(|| panic!("no test block {marker} in {}", path.display()));
    let after = &text[start..];
    let open = after
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + "```sh\n".len();
    let close = after[open..].find("```").expect("the block ends");
    after[open..open + close].to_string()
}

/// Run a documented shell block with `bash -eu` in `dir`, `restix` first on
/// `PATH`, the repository and password in the environment; panics with the
/// output unless it succeeds.
pub fn run_doc_block(sb: &Sandbox, dir: &Path, repo: &Path, block: &str) -> String {
    let bin_dir = crate::harness::restix_bin()
        .parent()
        .expect("restix has a folder")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -eu\n{block}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", crate::harness::PASSWORD)
        .env("RESTIC_CACHE_DIR", sb.join("cache"))
        .env("HOME", sb.join("home"))
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "documented commands failed ({}):\n{script}\n{text}",
        out.status
    );
    text
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}
