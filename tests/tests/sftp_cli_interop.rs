//! restix and the real restic 0.14 share repositories over SFTP, through the
//! CLI: a private OpenSSH sshd (tests/src/sshd.rs) serves both; restix speaks
//! SSH in-process, restic runs OpenSSH's `ssh` via the test home's wrapper.
//!
//! * restix `init` + `backup` (varied tree + 20 MB random file) -> restic
//!   `check --read-data` is clean and `restore` is byte-identical.
//! * restic `init` + `backup` -> restix `snapshots --json` + `restore`.
//! * The location forms `sftp:user@host:/abs`, `sftp://user@host:PORT//abs`
//!   and `sftp:alias:relative/path` (an ssh config `Host` alias, the path
//!   relative to the login's home on the server).

use std::fs;
use std::path::Path;

use restix_tests::harness::{
    assert_trees_equal, backup_summary, make_varied_tree, restored_path, s, Cmd, CompareOptions,
    Sandbox, Tool, TreeSpec,
};
use restix_tests::require_restic;
use restix_tests::sshd::{Sshd, TestHome, HOST_ALIAS};

/// A command for `tool` whose ssh setup is `home` (HOME, PATH with the ssh
/// wrapper, no agent); cache and password come from the sandbox.
fn over_ssh(sb: &Sandbox, home: &TestHome, tool: Tool) -> Cmd {
    sb.cmd(tool)
        .env("HOME", home.path())
        .env("PATH", home.path_var())
        .env_remove("SSH_AUTH_SOCK")
}

/// `sftp:USER@127.0.0.1:/abs`: the home's ssh config supplies the port.
fn short_ip_url(sshd: &Sshd, path: &Path) -> String {
    format!("sftp:{}@127.0.0.1:{}", sshd.user(), path.display())
}

/// Restored trees compared with what restic 0.14 can represent: it predates
/// `linktarget_raw`, so non-UTF-8 symlink targets come back lossily.
fn lossy() -> CompareOptions {
    CompareOptions {
        lossy_symlink_targets: true,
        ..CompareOptions::default()
    }
}

#[test]
fn restix_writes_over_sftp_restic_checks_and_restores() {
    require_restic!();
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(&src, &TreeSpec::default());
    let repo = sshd.dir().join("restix-written");

    // init through the URL form with an explicit port and `//abs`.
    let url = sshd.sftp_url(&repo);
    assert!(url.starts_with("sftp://") && url.contains("//tmp"), "{url}");
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "init"])
        .run()
        .ok();
    assert!(repo.join("config").is_file(), "init wrote no config");

    // backup through the short form (port from ~/.ssh/config).
    let short = short_ip_url(&sshd, &repo);
    let run = over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &short, "backup", "--json", s(&src)])
        .run()
        .ok();
    let summary = backup_summary(&run);
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        summary["total_bytes_processed"].as_u64().unwrap() > 20_000_000,
        "{summary}"
    );

    // The oracle reads everything back over its own sftp backend (ssh).
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "check", "--read-data"])
        .run()
        .ok()
        .stdout_has("no errors were found");
    let snaps = over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "snapshots", "--json"])
        .run()
        .ok()
        .json();
    let list = snaps.as_array().unwrap();
    assert_eq!(list.len(), 1, "{snaps}");
    assert_eq!(list[0]["id"].as_str().unwrap(), id);
    let out = sb.join("out-restic");
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "restore", &id, "--target", s(&out)])
        .run()
        .ok();
    assert_trees_equal(&src, &restored_path(&out, &src), &lossy());

    // restix restores its own snapshot over sftp as well (exact targets).
    let out = sb.join("out-restix");
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &url, "restore", "latest", "--target", s(&out)])
        .run()
        .ok();
    assert_trees_equal(&src, &restored_path(&out, &src), &CompareOptions::default());
    // No temporary upload files are left on the server.
    for entry in walk_files(&repo) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains("-tmp-"), "leftover temporary file {entry:?}");
    }
}

fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn restic_writes_over_sftp_restix_lists_and_restores() {
    require_restic!();
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(&src, &TreeSpec::default());
    let repo = sshd.dir().join("restic-written");
    let short = short_ip_url(&sshd, &repo);
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "init"])
        .run()
        .ok();
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "backup", "--tag", "from-restic", s(&src)])
        .run()
        .ok();

    // restix reads it through the `user@alias:/abs` form and the `//abs` URL.
    let alias = sshd.sftp_short(&repo);
    assert!(alias.contains(HOST_ALIAS), "{alias}");
    let theirs = over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &short, "snapshots", "--json"])
        .run()
        .ok()
        .json();
    let ours = over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &alias, "snapshots", "--json"])
        .run()
        .ok()
        .json();
    let (theirs, ours) = (theirs.as_array().unwrap(), ours.as_array().unwrap());
    assert_eq!(ours.len(), 1, "{ours:?}");
    for field in [
        "id", "short_id", "tree", "paths", "tags", "hostname", "time",
    ] {
        assert_eq!(ours[0][field], theirs[0][field], "field {field}");
    }
    assert_eq!(ours[0]["tags"], serde_json::json!(["from-restic"]));

    let out = sb.join("out");
    over_ssh(&sb, &home, Tool::Restix)
        .args([
            "-r",
            &sshd.sftp_url(&repo),
            "restore",
            ours[0]["short_id"].as_str().unwrap(),
            "--target",
            s(&out),
        ])
        .run()
        .ok();
    assert_trees_equal(&src, &restored_path(&out, &src), &lossy());
}

/// `sftp:alias:relative/path`: host, port and user from the `Host` block of
/// ~/.ssh/config; the path is relative to the login's home on the server.
/// Both programs use the same location string.
#[test]
fn host_alias_with_relative_path() {
    require_restic!();
    let Some(sshd) = Sshd::start_if_available() else {
        return;
    };
    let home = sshd.home();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(
        &src,
        &TreeSpec {
            big_file: false,
            ..TreeSpec::default()
        },
    );
    // The server-side home of the login (sshd runs as the current user).
    let server_home = passwd_home(sshd.user());
    let rel = format!(
        "restix-sftp-cli-test-{}-{}/repo",
        std::process::id(),
        sshd.port()
    );
    let top = server_home.join(rel.split('/').next().unwrap());
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveOnDrop(top.clone());
    let location = format!("sftp:{HOST_ALIAS}:{rel}");

    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &location, "init"])
        .run()
        .ok();
    let written = top.join("repo");
    assert!(
        written.join("config").is_file(),
        "init of {location} did not create {}/config",
        written.display()
    );
    over_ssh(&sb, &home, Tool::Restix)
        .args(["-r", &location, "backup", s(&src)])
        .run()
        .ok();
    // restic runs `ssh restix-sshd -s sftp` with the same relative path.
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &location, "check", "--read-data"])
        .run()
        .ok()
        .stdout_has("no errors were found");
    let out = sb.join("out");
    over_ssh(&sb, &home, Tool::Restic)
        .args(["-r", &location, "restore", "latest", "--target", s(&out)])
        .run()
        .ok();
    assert_trees_equal(&src, &restored_path(&out, &src), &lossy());
    assert!(written.join("data").is_dir());
}

/// The home folder of `user` from /etc/passwd (where sshd starts SFTP sessions).
fn passwd_home(user: &str) -> std::path::PathBuf {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| fields.get(5).map(std::path::PathBuf::from))
        .unwrap_or_else(|| panic!("{user} is not in /etc/passwd"))
}
