//! The SFTP backend against a real, private OpenSSH sshd (tests/src/sshd.rs):
//! the backend conformance suite (with the server killed for its outage
//! check), a writer process killed mid-upload, and what is SFTP's own: the
//! layout and file modes, host key checking, authentication errors,
//! reconnecting after a server restart, subprocess mode, ssh-agent.
//!
//! Full restix-over-SFTP interop (the CLI against restic) comes with the CLI;
//! see sftp_restic.rs for the harness proven with the real restic.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use restix_backend::retry::{RetryPolicy, Retrying};
use restix_backend::testing::conformance::{Outage, Suite};
use restix_backend::testing::killed_writer;
use restix_backend::{wrap, Backend, FileType, WrapOptions};
use restix_sftp::{open_with_env, SftpBackend, SftpLocation, SftpOptions, SshEnv};
use restix_tests::harness;
use restix_tests::sshd::{Sshd, TestHome};

fn env_of(home: &TestHome) -> SshEnv {
    SshEnv {
        home: home.path().to_path_buf(),
        agent_socket: None,
    }
}

fn open_url(
    url: &str,
    home: &TestHome,
    opts: &SftpOptions,
) -> Result<SftpBackend, restix_sftp::SftpError> {
    let loc = SftpLocation::parse(url).unwrap();
    open_with_env(&loc, opts, &env_of(home))
}

fn id(n: u32) -> String {
    format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 7)
}

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Stops and restarts the private sshd for the suite's outage check.
struct SshdOutage<'a>(&'a Mutex<Sshd>);

impl Outage for SshdOutage<'_> {
    fn begin(&self) {
        lock(self.0).kill();
    }
    fn end(&self) {
        lock(self.0).restart();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The backend conformance suite (restix_backend::testing::conformance),
/// with the server killed and restarted for its outage check.
#[test]
fn conformance() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let next = AtomicUsize::new(0);
    let sshd = Mutex::new(sshd);
    let outage = SshdOutage(&sshd);
    Suite::new(|| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let url = {
            let sshd = lock(&sshd);
            sshd.sftp_url(&sshd.dir().join(format!("conformance{n}")))
        };
        open_url(&url, &home, &SftpOptions::default()).unwrap()
    })
    .outage(&outage)
    .run();
}

/// Where the killed-writer child finds its ssh keys.
const CHILD_HOME: &str = "RESTIX_TEST_SSH_HOME";

/// The child of [`writes_survive_a_killed_writer`] (a no-op in a normal run).
#[test]
fn killed_writer_child() {
    killed_writer::child_entry(|url| {
        let home = std::env::var_os(CHILD_HOME).expect("the parent sets the ssh home");
        let env = SshEnv {
            home: PathBuf::from(home),
            agent_socket: None,
        };
        let location = SftpLocation::parse(url).unwrap();
        let backend = open_with_env(&location, &SftpOptions::default(), &env).unwrap();
        Box::new(wrap(Box::new(backend), &WrapOptions::default()))
    });
}

/// A process killed in the middle of an upload leaves no partial file under
/// a final name, only its `-tmp-` file, which nothing lists. (Should the kill
/// miss every upload, the experiment is repeated, up to three times.)
#[test]
fn writes_survive_a_killed_writer() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let home_text = home.path().display().to_string();
    let mut cut_off = 0;
    for attempt in 0..3 {
        let repo = sshd.dir().join(format!("killed{attempt}"));
        let url = sshd.sftp_url(&repo);
        let backend = open_url(&url, &home, &SftpOptions::default()).unwrap();
        backend.create().unwrap();
        killed_writer::check(
            &backend,
            "killed_writer_child",
            &url,
            &[(CHILD_HOME, home_text.as_str())],
        );
        cut_off = harness::files_below(&repo)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("-tmp-"))
            .count();
        if cut_off > 0 {
            break;
        }
    }
    assert!(cut_off > 0, "the kill never landed inside an upload");
}

/// What SFTP does beyond the contract: `create` makes missing parents and
/// the whole layout; files are written 0600 through temporary files that do
/// not stay behind.
#[test]
fn create_layout_modes_and_no_leftovers() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("deep").join("er").join("repo");
    let b = open_url(&sshd.sftp_url(&repo), &home, &SftpOptions::default()).unwrap();
    assert_eq!(b.connections(), 5);
    b.create().unwrap();
    for d in [
        "keys",
        "locks",
        "snapshots",
        "index",
        "data/00",
        "data/7f",
        "data/ff",
    ] {
        assert!(repo.join(d).is_dir(), "{d} missing");
    }
    b.write(FileType::Key, &id(0), b"key").unwrap();
    b.write(FileType::Pack, &id(1), &bytes(3 << 20, 1)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let key_file = repo.join("keys").join(id(0));
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let tmp: Vec<PathBuf> = harness::files_below(&repo)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("-tmp-"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn short_form_with_ssh_config_alias() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("aliased");
    // sftp:user@restix-sshd:/path: port and HostName come from ~/.ssh/config.
    let b = open_url(&sshd.sftp_short(&repo), &home, &SftpOptions::default()).unwrap();
    b.create().unwrap();
    b.write(FileType::Key, &id(1), b"k").unwrap();
    assert_eq!(b.read(FileType::Key, &id(1)).unwrap(), b"k");
    assert_eq!(b.location(), sshd.sftp_short(&repo));
}

#[test]
fn unknown_host_key_is_refused() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    fs::write(home.known_hosts_path(), "").unwrap();
    let repo = sshd.dir().join("repo");
    let err = open_url(&sshd.sftp_url(&repo), &home, &SftpOptions::default())
        .err()
        .expect("unknown host key accepted")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("host key verification failed"), "{err}");
    assert!(err.contains("not in known_hosts"), "{err}");
    assert!(err.contains("ssh -p"), "{err}");
    assert!(err.contains("SHA256:"), "{err}");
    // Nothing was learnt.
    assert_eq!(fs::read_to_string(home.known_hosts_path()).unwrap(), "");
    assert!(!repo.exists());
}

#[test]
fn changed_host_key_is_refused() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let other = sshd.dir().join("other_host_key");
    restix_tests::sshd::keygen(&other, "impostor");
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    fs::write(
        home.known_hosts_path(),
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other_pub.join(" ")),
    )
    .unwrap();
    let err = open_url(
        &sshd.sftp_url(&sshd.dir().join("r")),
        &home,
        &SftpOptions::default(),
    )
    .err()
    .expect("changed host key accepted")
    .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );
    assert!(err.contains("line 1"), "{err}");

    // Hashed entries (ssh-keygen -H) are understood: the right key passes.
    fs::write(
        home.known_hosts_path(),
        format!("{}\n", sshd.known_hosts_line()),
    )
    .unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(home.known_hosts_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashed = fs::read_to_string(home.known_hosts_path()).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    open_url(
        &sshd.sftp_url(&sshd.dir().join("r")),
        &home,
        &SftpOptions::default(),
    )
    .unwrap();
}

#[test]
fn missing_key_gives_clear_error() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    fs::remove_file(home.key_path()).unwrap();
    // Config still names the key via IdentityFile; it is gone.
    let err = open_url(
        &sshd.sftp_url(&sshd.dir().join("r")),
        &home,
        &SftpOptions::default(),
    )
    .err()
    .expect("login without key")
    .to_string();
    eprintln!("{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(err.contains("no key file found"), "{err}");
    assert!(err.contains("id_ed25519"), "{err}");
}

#[test]
fn reconnects_after_sshd_restart() {
    let Some(mut sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("repo");
    let opts = SftpOptions::from_pairs([("sftp.connections", "2")]).unwrap();
    // Reconnecting takes a retry: the backend makes one attempt per call
    // and drops a dead connection; the retry wrapper tries again.
    let b = Retrying::new(
        open_url(&sshd.sftp_url(&repo), &home, &opts).unwrap(),
        RetryPolicy::fast(),
    );
    b.create().unwrap();
    let data = bytes(3 << 20, 3);
    b.write(FileType::Pack, &id(1), &data).unwrap();
    sshd.restart();
    // The old connections are dead; the backend redials on its own.
    b.write(FileType::Pack, &id(2), &data).unwrap();
    assert_eq!(b.read(FileType::Pack, &id(1)).unwrap(), data);
    assert_eq!(b.list(FileType::Pack).unwrap().len(), 2);

    // With the server gone for good, the retries end in a transient error
    // that names the file and the server.
    sshd.kill();
    let err = b.write(FileType::Pack, &id(3), &data).unwrap_err();
    eprintln!("{err}");
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&id(3)), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[test]
fn subprocess_mode_via_sftp_command_and_args() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("repo");
    let command = format!(
        "{} -p {} {}@127.0.0.1 -s sftp",
        home.ssh_command(),
        sshd.port(),
        sshd.user()
    );
    let opts = SftpOptions::from_pairs([("sftp.command", command.as_str())]).unwrap();
    // The location's host is not used in command mode; the path is.
    let url = format!("sftp:ignored:{}", repo.display());
    let b = open_url(&url, &home, &opts).unwrap();
    b.create().unwrap();
    let data = bytes(5 << 20, 9);
    b.write(FileType::Pack, &id(1), &data).unwrap();
    assert_eq!(b.read(FileType::Pack, &id(1)).unwrap(), data);
    drop(b);

    // sftp.args: `ssh 127.0.0.1 -p PORT -l USER <args> -s sftp` (ssh from PATH).
    let args = format!("-F {}", home.config_path().display());
    let opts = SftpOptions::from_pairs([("sftp.args", args.as_str())]).unwrap();
    let b = open_url(&sshd.sftp_url(&repo), &home, &opts).unwrap();
    assert_eq!(b.read(FileType::Pack, &id(1)).unwrap(), data);
    assert_eq!(b.list(FileType::Pack).unwrap().len(), 1);

    // A command that is not an SFTP server fails at open with a clear error.
    let opts = SftpOptions::from_pairs([("sftp.command", "/bin/false")]).unwrap();
    let err = open_url(&url, &home, &opts)
        .err()
        .expect("false is no server")
        .to_string();
    assert!(err.contains("unable to start the sftp session"), "{err}");
}

/// Keys held by a real ssh-agent (`SSH_AUTH_SOCK`) are used when no key
/// file is around.
#[test]
fn authenticates_with_ssh_agent() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sock = sshd.dir().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg("-q")
        .arg(home.key_path())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    fs::remove_file(home.key_path()).unwrap();
    let env = SshEnv {
        home: home.path().to_path_buf(),
        agent_socket: Some(sock.clone()),
    };
    let loc = SftpLocation::parse(&sshd.sftp_url(&sshd.dir().join("repo"))).unwrap();
    let opened = open_with_env(&loc, &SftpOptions::default(), &env);
    let _ = agent.kill();
    let _ = agent.wait();
    let b = opened.unwrap();
    b.create().unwrap();
    assert!(b.list(FileType::Key).unwrap().is_empty());
}
