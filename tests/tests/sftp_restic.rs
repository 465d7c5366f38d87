//! The private sshd harness (tests/src/sshd.rs) proven with the real restic:
//! `restic -r sftp:...` runs OpenSSH's `ssh` through the TestHome's wrapper
//! and config (init + backup + check), and the restix SFTP backend reads the
//! repository restic wrote.
//!
//! TODO(lead): restix-CLI-over-SFTP interop (restix init/backup/restore
//! against restic on the same sftp: repository, both directions) belongs here
//! once the CLI exists; `TestHome::apply` gives both programs the same ssh
//! setup.

use std::fs;
use std::path::Path;
use std::process::Command;

use restix_backend::{Backend, FileType};
use restix_sftp::{open_with_env, SftpLocation, SftpOptions, SshEnv};
use restix_tests::sshd::{Sshd, TestHome};

const RESTIC: &str = "/usr/bin/restic";

fn restic(home: &TestHome, args: &[&str]) -> String {
    let mut cmd = Command::new(RESTIC);
    home.apply(&mut cmd);
    cmd.env("RESTIC_PASSWORD", "geheim")
        .env("TZ", "UTC")
        .arg("--no-cache")
        .args(args);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "restic {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_restic_over_harness_sshd() {
    if !Path::new(RESTIC).exists() {
        restix_tests::harness::skip_missing_restic();
        return;
    }
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let repo = sshd.dir().join("restic-repo");
    // restic runs `ssh 127.0.0.1 -l USER -s sftp`; the home's config adds the port.
    let location = format!("sftp:{}@127.0.0.1:{}", sshd.user(), repo.display());
    let src = sshd.dir().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"hello sftp\n").unwrap();
    fs::write(src.join("sub").join("b.bin"), vec![7u8; 300_000]).unwrap();

    restic(&home, &["-r", &location, "init"]);
    assert!(repo.join("config").is_file());
    restic(&home, &["-r", &location, "backup", src.to_str().unwrap()]);
    let check = restic(&home, &["-r", &location, "check"]);
    assert!(check.contains("no errors were found"), "{check}");
    let snaps = restic(&home, &["-r", &location, "snapshots", "--json"]);
    assert!(snaps.contains("\"paths\""), "{snaps}");

    // The restix backend sees what restic wrote, through the same home.
    let env = SshEnv {
        home: home.path().to_path_buf(),
        agent_socket: None,
    };
    let b = open_with_env(
        &SftpLocation::parse(&location).unwrap(),
        &SftpOptions::default(),
        &env,
    )
    .unwrap();
    assert_eq!(b.list(FileType::Config).unwrap().len(), 1);
    assert_eq!(b.list(FileType::Key).unwrap().len(), 1);
    assert_eq!(b.list(FileType::Snapshot).unwrap().len(), 1);
    let packs = b.list(FileType::Pack).unwrap();
    assert!(!packs.is_empty());
    for p in &packs {
        let data = b.read(FileType::Pack, &p.name).unwrap();
        assert_eq!(data.len() as u64, p.size);
    }
    let config = b.read(FileType::Config, "config").unwrap();
    assert_eq!(
        config.len() as u64,
        fs::metadata(repo.join("config")).unwrap().len()
    );
    // restic's own files keep their names; restix leaves no temporaries.
    assert!(b.create().is_err(), "create over an existing repository");
}
