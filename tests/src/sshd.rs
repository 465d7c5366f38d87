//! A private OpenSSH sshd on 127.0.0.1 with its own host and user keys.
//!
//! [`Sshd::start`] runs `/usr/sbin/sshd -D` as the current user on a free
//! port, with a config, host key, user key, `authorized_keys` and pid file all
//! inside one temporary folder; the system sshd and `/etc/ssh` are not used.
//! The only thing outside the folder is `/run/sshd`, the privilege
//! separation folder that sshd insists on when it runs as root (created empty
//! if missing).
//!
//! [`Sshd::home`] makes a [`TestHome`]: a `$HOME` with `.ssh/config`,
//! `.ssh/id_ed25519` and `.ssh/known_hosts` for that server, plus a `bin/ssh`
//! wrapper that makes OpenSSH's `ssh` read that config (ssh takes `~` from
//! the passwd entry, not from `$HOME`). Put [`TestHome::apply`] on a command
//! and both restix and the real `restic -r sftp:...` (which runs `ssh`) reach
//! the server. The server is killed on drop.
//!
//! ```no_run
//! use restix_tests::sshd::Sshd;
//! let Some(sshd) = Sshd::start_if_available() else { return };
//! let home = sshd.home();
//! let repo = sshd.dir().join("repo");
//! let url = sshd.sftp_url(&repo); // sftp://root@127.0.0.1:PORT//tmp/.../repo
//! let mut cmd = std::process::Command::new("restic");
//! home.apply(&mut cmd);
//! cmd.args(["-r", &url, "init"]);
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The sshd binary used (never the running system service).
pub const SSHD_BIN: &str = "/usr/sbin/sshd";
/// Host alias written into every [`TestHome`]'s `.ssh/config`.
pub const HOST_ALIAS: &str = "restix-sshd";

/// A running private sshd.
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    child: Option<Child>,
    host_public_key: String,
    homes: AtomicUsize,
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generate an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, comment: &str) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    );
}

/// `type base64` of a `.pub` file (without the comment).
fn public_key_text(pub_path: &Path) -> String {
    let text = fs::read_to_string(pub_path).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// All descendants of `pid`, found through `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == parent && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Sshd {
    /// True when OpenSSH's sshd and ssh-keygen are installed.
    pub fn available() -> bool {
        Path::new(SSHD_BIN).exists()
            && Command::new("ssh-keygen")
                .arg("-?")
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .is_ok()
    }

    /// [`Sshd::start`], or `None` (with a note on stderr) when sshd is missing.
    pub fn start_if_available() -> Option<Sshd> {
        if !Self::available() {
            restix_testkit::skip(SSHD_BIN, "apt-get install openssh-server openssh-client");
            return None;
        }
        Some(Self::start())
    }

    /// Start a private sshd on a free port of 127.0.0.1 (panics on failure).
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("restix-sshd-")
            .tempdir()
            .unwrap();
        // sshd refuses to run as root without its privilege separation folder.
        let _ = fs::create_dir_all("/run/sshd");
        let host_key = dir.path().join("ssh_host_ed25519_key");
        keygen(&host_key, "restix-test-host");
        let user_key = dir.path().join("id_ed25519");
        keygen(&user_key, "restix-test-user");
        let authorized = dir.path().join("authorized_keys");
        fs::copy(dir.path().join("id_ed25519.pub"), &authorized).unwrap();
        let host_public_key = public_key_text(&dir.path().join("ssh_host_ed25519_key.pub"));
        let mut sshd = Sshd {
            dir,
            port: 0,
            user: current_user(),
            child: None,
            host_public_key,
            homes: AtomicUsize::new(0),
        };
        // A port picked as free may be taken before sshd binds it: retry.
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_config();
            if sshd.spawn() {
                return sshd;
            }
        }
        panic!("sshd did not start; log:\n{}", sshd.log());
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/ssh_host_ed25519_key\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin yes\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             MaxStartups 100:30:200\n\
             MaxSessions 50\n\
             LogLevel ERROR\n\
             Subsystem sftp internal-sftp\n",
            port = self.port,
            d = d.display()
        );
        fs::write(d.join("sshd_config"), config).unwrap();
    }

    /// Spawn sshd and wait until it answers with an SSH banner.
    fn spawn(&mut self) -> bool {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let mut child = Command::new(SSHD_BIN)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut banner = [0u8; 4];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    self.child = Some(child);
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Stop the server (connections drop); [`Sshd::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The per-connection sshd processes outlive the listener (they are
            // reparented): collect the whole tree first, then kill it by pid.
            let mut pids = descendants(child.id());
            pids.push(child.id());
            for pid in pids {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) on pids of processes this harness started
                    // (sshd and its children); no memory is involved.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            let _ = child.wait();
        }
    }

    /// Kill and start again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not restart; log:\n{}", self.log());
    }

    /// True while the server runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Login name (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The temporary folder holding everything; repositories can go here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The user's private key (authorized on the server).
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// `ssh-ed25519 AAAA...` of the server.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The server's known_hosts line (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`).
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    /// `sftp://USER@127.0.0.1:PORT//abs/path` for an absolute server path.
    pub fn sftp_url(&self, path: &Path) -> String {
        let p = path.display().to_string();
        format!("sftp://{}@127.0.0.1:{}/{}", self.user, self.port, p)
    }

    /// `sftp:USER@restix-sshd:/abs/path`, the short form through the
    /// [`HOST_ALIAS`] of the home's ssh config (which supplies the port).
    pub fn sftp_short(&self, path: &Path) -> String {
        format!("sftp:{}@{HOST_ALIAS}:{}", self.user, path.display())
    }

    /// sshd's own log (errors only).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A fresh `$HOME` set up for this server (see [`TestHome`]).
    pub fn home(&self) -> TestHome {
        self.home_via(self.port)
    }

    /// A fresh `$HOME` whose ssh config and known_hosts reach this server
    /// through `port` of 127.0.0.1 instead of its own port: a forwarder
    /// there (the [`delay`](crate::delay) line) carries the connection.
    pub fn home_via(&self, port: u16) -> TestHome {
        let n = self.homes.fetch_add(1, Ordering::SeqCst);
        let root = self.dir.path().join(format!("home{n}"));
        let ssh = root.join(".ssh");
        let bin = root.join("bin");
        fs::create_dir_all(&ssh).unwrap();
        fs::create_dir_all(&bin).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
        let key = ssh.join("id_ed25519");
        fs::copy(self.user_key(), &key).unwrap();
        fs::copy(
            self.dir.path().join("id_ed25519.pub"),
            ssh.join("id_ed25519.pub"),
        )
        .unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(
            ssh.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", self.host_public_key),
        )
        .unwrap();
        // Absolute paths throughout: OpenSSH expands `~` from passwd, not $HOME.
        let config = format!(
            "Host {HOST_ALIAS}\n\
             \x20 HostName 127.0.0.1\n\
             \x20 Port {port}\n\
             \x20 User {user}\n\
             Host 127.0.0.1\n\
             \x20 Port {port}\n\
             Host *\n\
             \x20 IdentityFile {key}\n\
             \x20 IdentitiesOnly yes\n\
             \x20 UserKnownHostsFile {kh}\n\
             \x20 GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n\
             \x20 BatchMode yes\n\
             \x20 LogLevel ERROR\n",
            user = self.user,
            key = key.display(),
            kh = ssh.join("known_hosts").display(),
        );
        fs::write(ssh.join("config"), config).unwrap();
        let wrapper = bin.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F '{}' \"$@\"\n",
                ssh.join("config").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        TestHome { root }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `$HOME` whose `.ssh` reaches one [`Sshd`].
#[derive(Debug, Clone)]
pub struct TestHome {
    root: PathBuf,
}

impl TestHome {
    /// The home folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `.ssh/config`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(".ssh").join("config")
    }

    /// `.ssh/id_ed25519`.
    pub fn key_path(&self) -> PathBuf {
        self.root.join(".ssh").join("id_ed25519")
    }

    /// `.ssh/known_hosts`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.root.join(".ssh").join("known_hosts")
    }

    /// Folder with the `ssh` wrapper; first on `PATH` for child processes.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// `ssh -F <config>`: a command line for `-o sftp.command=...`.
    pub fn ssh_command(&self) -> String {
        format!("/usr/bin/ssh -F {}", self.config_path().display())
    }

    /// `PATH` with [`TestHome::bin_dir`] first.
    pub fn path_var(&self) -> OsString {
        let mut path = OsString::from(self.bin_dir());
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        path
    }

    /// Set `HOME` and `PATH` on `cmd` and drop `SSH_AUTH_SOCK`, so the child
    /// uses exactly this home's keys and known_hosts.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.root)
            .env("PATH", self.path_var())
            .env_remove("SSH_AUTH_SOCK");
    }
}
