//! Secrets stay secret and files get restic's permissions:
//!
//! * With the password given by `RESTIC_PASSWORD`, `--password-file` or
//!   `--password-command`, the password text never appears in stdout, stderr
//!   or `--json` output of `init`, `backup`, `snapshots`, a wrong-password
//!   failure, `key add`/`key passwd` (success and failure), a failing
//!   password command, or a `check` with its error paths. Neither does the
//!   new password of `key add`/`key passwd`, nor the wrong one.
//! * Key files are written 0400, exactly as the real restic writes them in a
//!   local repository (compared with restic's own `init` and `key add`);
//!   every other repository file restix writes is 0400 too, folders 0700.
//!   (Temporary files of the local backend are created 0600: tested beside
//!   the code, in `engine/src/backend/local.rs`.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use restix_tests::harness::{self, Cmd, Run, Sandbox, Tool};

const SECRET: &str = "Sekr3t-Pa55-q9Zx";
const NEW_SECRET: &str = "N3w-Sekr3t-w7Yv";
const WRONG: &str = "Wr0ng-Gue55-k4Pm";

/// The three ways of giving the password.
#[derive(Clone, Copy, Debug)]
enum Source {
    Env,
    File,
    Command,
}

fn with_password(sb: &Sandbox, source: Source, password: &str) -> Cmd {
    let cmd = sb.cmd(Tool::Restix).env_remove("RESTIC_PASSWORD");
    match source {
        Source::Env => cmd.env("RESTIC_PASSWORD", password),
        Source::File => {
            let file = sb.join(format!("pw-{}", harness::sha256_hex(password.as_bytes())));
            fs::write(&file, format!("{password}\n")).unwrap();
            cmd.arg("--password-file").arg(&file)
        }
        Source::Command => {
            // The password is in the script, not on the command line.
            let script = sb.join(format!(
                "pwcmd-{}",
                harness::sha256_hex(password.as_bytes())
            ));
            fs::write(&script, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
            cmd.arg("--password-command").arg(&script)
        }
    }
}

#[track_caller]
fn assert_no_secret(run: &Run, what: &str) {
    for secret in [SECRET, NEW_SECRET, WRONG] {
        assert!(
            !run.out().contains(secret) && !run.err().contains(secret),
            "{what}: a password appears in the output:\n{}",
            run.describe()
        );
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn passwords_never_appear_in_output() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"some data").unwrap();
    let new_pw = sb.join("new-password");
    fs::write(&new_pw, format!("{NEW_SECRET}\n")).unwrap();
    let new_pw = harness::s(&new_pw).to_string();

    for source in [Source::Env, Source::File, Source::Command] {
        let repo = sb.join(format!("repo-{source:?}"));
        let r = harness::s(&repo).to_string();
        let ok = |args: &[&str], what: &str| {
            let run = with_password(&sb, source, SECRET)
                .args(["-r", &r])
                .args(args)
                .run();
            assert_no_secret(&run, &format!("{source:?} {what}"));
            assert!(run.success(), "{source:?} {what}:\n{}", run.describe());
            run
        };
        let bad = |cmd: Cmd, args: &[&str], what: &str| {
            let run = cmd.args(["-r", &r]).args(args).run();
            assert_no_secret(&run, &format!("{source:?} {what}"));
            assert!(
                !run.success() && !run.crashed(),
                "{source:?} {what} should fail cleanly:\n{}",
                run.describe()
            );
            run
        };

        ok(&["init"], "init");
        let init_json_repo = sb.join(format!("repo-json-{source:?}"));
        let run = with_password(&sb, source, SECRET)
            .args(["-r", harness::s(&init_json_repo), "init", "--json"])
            .run();
        assert_no_secret(&run, "init --json");
        ok(&["backup", harness::s(&src)], "backup");
        ok(&["backup", "--json", harness::s(&src)], "backup --json");
        ok(&["snapshots", "--json"], "snapshots --json");
        ok(&["-v", "-v", "check"], "check -vv");
        ok(&["cat", "config"], "cat config");
        ok(&["key", "list", "--json"], "key list --json");

        // The wrong password, in every form, and an init over an existing repo.
        bad(
            with_password(&sb, source, WRONG),
            &["snapshots"],
            "wrong password",
        );
        bad(
            with_password(&sb, source, WRONG),
            &["snapshots", "--json"],
            "wrong password --json",
        );
        bad(
            with_password(&sb, source, WRONG),
            &["-v", "-v", "-v", "check"],
            "wrong password -vvv",
        );
        bad(
            with_password(&sb, source, SECRET),
            &["init"],
            "init over a repository",
        );
        bad(
            with_password(&sb, source, WRONG),
            &["key", "add", "--new-password-file", &new_pw],
            "key add with the wrong password",
        );
        bad(
            with_password(&sb, source, SECRET),
            &["key", "add", "--new-password-file", "/nonexistent/pw"],
            "key add with a missing new password file",
        );
        bad(
            with_password(&sb, source, SECRET),
            &["key", "passwd", "--new-password-file", "/nonexistent/pw"],
            "key passwd with a missing new password file",
        );

        // key add / key passwd succeed without echoing either password.
        ok(&["key", "add", "--new-password-file", &new_pw], "key add");
        ok(
            &["key", "passwd", "--new-password-file", &new_pw],
            "key passwd",
        );
        let run = with_password(&sb, source, NEW_SECRET)
            .args(["-r", &r, "snapshots", "--json"])
            .run();
        assert_no_secret(&run, "snapshots with the new password");
        assert!(run.success(), "{}", run.describe());
    }

    // A password command that prints the password and then fails: its output
    // must not be shown.
    let repo = sb.join("repo-Env");
    let script = sb.join("failing-pwcmd");
    fs::write(
        &script,
        format!("#!/bin/sh\necho '{SECRET}'\necho '{SECRET}' >&2\nexit 3\n"),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
    let run = sb
        .cmd(Tool::Restix)
        .env_remove("RESTIC_PASSWORD")
        .args(["-r", harness::s(&repo), "--password-command"])
        .arg(&script)
        .args(["snapshots", "--json"])
        .run();
    assert!(!run.success() && !run.crashed(), "{}", run.describe());
    assert!(
        !run.out().contains(SECRET),
        "a failing password command's stdout is shown:\n{}",
        run.describe()
    );
}

#[test]
fn repository_files_get_restics_permissions() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"some data").unwrap();
    let new_pw = sb.join("new-password");
    fs::write(&new_pw, format!("{NEW_SECRET}\n")).unwrap();

    let mut key_modes = Vec::new();
    for tool in [Tool::Restic, Tool::Restix] {
        let repo = sb.join(format!("repo-{tool:?}"));
        let r = harness::s(&repo);
        sb.run(tool, ["init", "-r", r]).ok();
        sb.run(
            tool,
            [
                "-r",
                r,
                "key",
                "add",
                "--new-password-file",
                harness::s(&new_pw),
            ],
        )
        .ok();
        let keys = harness::files_below(&repo.join("keys"));
        assert_eq!(keys.len(), 2, "{tool:?}: two keys expected");
        let modes: Vec<u32> = keys.iter().map(|k| mode_of(k)).collect();
        key_modes.push(modes[0]);
        for (k, m) in keys.iter().zip(&modes) {
            eprintln!("{tool:?}: {} is {m:o}", k.display());
        }
        assert!(
            modes.iter().all(|&m| m == modes[0]),
            "{tool:?}: key files differ in mode: {modes:?}"
        );
    }
    assert_eq!(
        key_modes[0], key_modes[1],
        "restix key files are {:o}, restic's {:o}",
        key_modes[1], key_modes[0]
    );
    assert_eq!(key_modes[1], 0o400, "key files must be 0400 like restic");

    // Every file restix writes in a local repository is read-only for the
    // owner alone; folders are private.
    let repo = sb.join("repo-Restix");
    let r = harness::s(&repo);
    sb.restix(["-r", r, "backup", harness::s(&src)]).ok();
    for f in harness::files_below(&repo) {
        if f.starts_with(repo.join("locks")) {
            continue;
        }
        assert_eq!(
            mode_of(&f),
            0o400,
            "{} has mode {:o}",
            f.display(),
            mode_of(&f)
        );
    }
    for d in ["data", "index", "keys", "snapshots", "locks", "data/00"] {
        assert_eq!(
            mode_of(&repo.join(d)),
            0o700,
            "{d} has mode {:o}",
            mode_of(&repo.join(d))
        );
    }
}
