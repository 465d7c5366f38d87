//! The SFTP backend against a real, private OpenSSH sshd (tests/src/sshd.rs):
//! backend conformance, atomic writes, host key checking, authentication
//! errors, reconnecting after a server restart, subprocess mode.
//!
//! Full restix-over-SFTP interop (the CLI against restic) comes with the CLI;
//! see sftp_restic.rs for the harness proven with the real restic.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use restix_engine::backend::{Backend, BackendError, FileType};
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

#[test]
fn conformance() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    // A nested, missing folder: create() makes parents too.
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
    assert!(b.list(FileType::Config).unwrap().is_empty());
    assert!(b.list(FileType::Pack).unwrap().is_empty());

    // config, then create() refuses.
    b.write(FileType::Config, "config", b"cfg").unwrap();
    assert_eq!(b.read(FileType::Config, "config").unwrap(), b"cfg");
    assert!(matches!(
        b.create(),
        Err(BackendError::AlreadyExists { .. })
    ));
    assert_eq!(b.list(FileType::Config).unwrap().len(), 1);

    // Small files of every type.
    for (i, t) in [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
    ]
    .into_iter()
    .enumerate()
    {
        let name = id(i as u32);
        let data = bytes(1000 + i, i as u64);
        b.write(t, &name, &data).unwrap();
        assert_eq!(b.read(t, &name).unwrap(), data);
        assert_eq!(b.stat(t, &name).unwrap().size, data.len() as u64);
        let listed = b.list(t).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, name);
        assert_eq!(listed[0].size, data.len() as u64);
    }
    // Written files are 0600 (written as temporary files with that mode).
    use std::os::unix::fs::PermissionsExt;
    let key_file = repo.join("keys").join(id(0));
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Empty file.
    b.write(FileType::Lock, &id(99), b"").unwrap();
    assert_eq!(b.read(FileType::Lock, &id(99)).unwrap(), b"");

    // Packs, 20 MiB one included, from several threads at once.
    let b = Arc::new(b);
    let big = bytes(20 << 20, 42);
    let mut handles = Vec::new();
    for i in 0..6u32 {
        let b = b.clone();
        let data = if i == 0 {
            big.clone()
        } else {
            bytes(300_000 + i as usize * 7777, u64::from(i))
        };
        handles.push(std::thread::spawn(move || {
            let name = id(100 + i);
            b.write(FileType::Pack, &name, &data).unwrap();
            (name, data)
        }));
    }
    let packs: Vec<(String, Vec<u8>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let listed: BTreeSet<(String, u64)> = b
        .list(FileType::Pack)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    let expected: BTreeSet<(String, u64)> = packs
        .iter()
        .map(|(n, d)| (n.clone(), d.len() as u64))
        .collect();
    assert_eq!(listed, expected);
    let (big_name, _) = &packs[0];
    assert!(repo
        .join("data")
        .join(&big_name[..2])
        .join(big_name)
        .is_file());
    assert_eq!(b.read(FileType::Pack, big_name).unwrap(), big);
    // Ranges: start, middle across request boundaries, end, empty.
    for (off, len) in [
        (0u64, 10u64),
        (65_000, 200_000),
        (big.len() as u64 - 5, 5),
        (1234, 0),
    ] {
        let got = b.read_range(FileType::Pack, big_name, off, len).unwrap();
        assert_eq!(
            got,
            &big[off as usize..(off + len) as usize],
            "range {off}+{len}"
        );
    }
    // Past the end: short read.
    let e = b
        .read_range(FileType::Pack, big_name, big.len() as u64 - 5, 10)
        .unwrap_err();
    assert!(matches!(e, BackendError::ShortRead { .. }), "{e}");

    // list ignores temporary files and foreign names.
    fs::write(repo.join("keys").join(format!("{}-tmp-abc", id(5))), b"x").unwrap();
    fs::write(repo.join("keys").join("README"), b"x").unwrap();
    assert_eq!(b.list(FileType::Key).unwrap().len(), 1);

    // Not found.
    assert!(b.read(FileType::Key, &id(77)).unwrap_err().is_not_found());
    assert!(b
        .read_range(FileType::Key, &id(77), 0, 1)
        .unwrap_err()
        .is_not_found());
    assert!(b.stat(FileType::Key, &id(77)).unwrap_err().is_not_found());
    assert!(b.remove(FileType::Key, &id(77)).unwrap_err().is_not_found());

    // Remove.
    b.remove(FileType::Key, &id(0)).unwrap();
    assert!(b.stat(FileType::Key, &id(0)).unwrap_err().is_not_found());
    assert!(b.list(FileType::Key).unwrap().is_empty());

    // No temporary files left behind by our writes.
    let tmp: Vec<PathBuf> = harness::files_below(&repo)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("-tmp-") && !p.to_string_lossy().contains("-tmp-abc")
        })
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// While a 20 MiB file is being written, its final name never shows a
/// partial file: it is absent, or complete.
#[test]
fn write_is_atomic() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("repo");
    let b = open_url(&sshd.sftp_url(&repo), &home, &SftpOptions::default()).unwrap();
    b.create().unwrap();
    let data = bytes(20 << 20, 7);
    let name = id(1);
    let final_path = repo.join("data").join(&name[..2]).join(&name);
    let size = data.len() as u64;
    let writer = std::thread::spawn(move || {
        b.write(FileType::Pack, &name, &data).unwrap();
        b
    });
    let mut seen_tmp = false;
    while !writer.is_finished() {
        if let Ok(m) = fs::metadata(&final_path) {
            assert_eq!(m.len(), size, "partial file under the final name");
        }
        let dir = final_path.parent().unwrap();
        seen_tmp |= fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("-tmp-"));
        std::thread::yield_now();
    }
    let _b = writer.join().unwrap();
    assert_eq!(fs::metadata(&final_path).unwrap().len(), size);
    // The temporary file existed at some point (usually) and is gone now.
    let _ = seen_tmp;
    let leftovers = fs::read_dir(final_path.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-tmp-"))
        .count();
    assert_eq!(leftovers, 0);
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
    let b = open_url(&sshd.sftp_url(&repo), &home, &opts).unwrap();
    b.create().unwrap();
    let data = bytes(3 << 20, 3);
    b.write(FileType::Pack, &id(1), &data).unwrap();
    sshd.restart();
    // The old connections are dead; the backend redials on its own.
    b.write(FileType::Pack, &id(2), &data).unwrap();
    assert_eq!(b.read(FileType::Pack, &id(1)).unwrap(), data);
    assert_eq!(b.list(FileType::Pack).unwrap().len(), 2);

    // With the server gone for good, the error names the file and the reason.
    sshd.kill();
    let err = b
        .write(FileType::Pack, &id(3), &data)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&id(3)), "{err}");
    eprintln!("{err}");
    assert!(err.contains("gave up after"), "{err}");
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

/// `with_rate_limits` shapes per SFTP request; data stays intact (no timing
/// is asserted: the limit is far above what the test moves).
#[test]
fn rate_limited_transfers_are_intact() {
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("repo");
    let limits = restix_engine::backend::limited::RateLimits::from_kib(1 << 20, 1 << 20);
    let b = open_url(&sshd.sftp_url(&repo), &home, &SftpOptions::default())
        .unwrap()
        .with_rate_limits(limits);
    b.create().unwrap();
    let data = bytes(2 << 20, 11);
    b.write(FileType::Pack, &id(1), &data).unwrap();
    assert_eq!(b.read(FileType::Pack, &id(1)).unwrap(), data);
    assert_eq!(
        b.read_range(FileType::Pack, &id(1), 100, 70_000).unwrap(),
        &data[100..70_100]
    );
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
