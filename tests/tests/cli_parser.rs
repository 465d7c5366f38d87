//! restic's command-line grammar (pflag/cobra) and signal handling, as
//! scripts see them: exit statuses and the exact messages on stderr.

use std::io::Read;
use std::process::{Command, Stdio};

use restix_tests::harness::{self, s, Sandbox};

#[test]
fn pflag_and_cobra_behaviour() {
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    harness::use_cheap_key(&repo);
    // The last of two values counts (here: the bad one first).
    sb.restix(["-r", "/nonexistent", "snapshots", "-r", s(&repo), "--json"])
        .ok();
    // pflag's wording, exit 1.
    sb.restix(["snapshots", "--nope"])
        .code_is(1)
        .stderr_has("unknown flag: --nope");
    sb.restix(["snapshots", "-Z"])
        .code_is(1)
        .stderr_has("unknown shorthand flag: 'Z' in -Z");
    sb.restix(["snapshots", "--repo"])
        .code_is(1)
        .stderr_has("flag needs an argument: --repo");
    sb.restix(["snapshots", "--latest", "many"])
        .code_is(1)
        .stderr_has("invalid argument \"many\" for \"--latest\" flag: strconv.Parse");
    sb.restix(["--json", "snapshots", "--nope"])
        .code_is(1)
        .stderr_has(r#"{"message_type":"exit_error","code":1,"message":"unknown flag: --nope"}"#);
    // Mistyped commands, help topics.
    sb.restix(["snapshot"])
        .code_is(1)
        .stderr_has("Did you mean this?\n\tsnapshots\n");
    let help = sb.restix(["help", "rewrite"]).ok();
    assert!(help.out().contains("\nUsage:\n"), "{}", help.describe());
    assert!(
        help.out().contains("--snapshot-summary"),
        "{}",
        help.describe()
    );
    assert!(
        help.out().contains("\nGlobal Flags:\n"),
        "{}",
        help.describe()
    );
    sb.restix(["help", "nosuch"])
        .ok()
        .stderr_has("Unknown help topic [`nosuch`]");
    // Deprecated flags still work and say so.
    sb.restix(["-r", s(&repo), "snapshots", "--last"])
        .ok()
        .stderr_has("Flag --last has been deprecated, use --latest 1");
}

#[test]
fn program_named_as_invoked() {
    let sb = Sandbox::new();
    let link = sb.join("restic");
    std::os::unix::fs::symlink(harness::restix_bin(), &link).unwrap();
    let out = Command::new(&link)
        .args(["snapshotz"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("unknown command \"snapshotz\" for \"restic\""),
        "{err}"
    );
    let out = Command::new(&link)
        .args(["version", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n  restic version [flags]\n"), "{text}");
    let out = Command::new(harness::restix_bin())
        .args(["version", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n  restix version [flags]\n"), "{text}");
    assert!(text.contains("EXIT STATUS"), "{text}");
}

/// SIGINT and SIGTERM both end a running command with 130 and restic
/// 0.18.1's `context canceled` (as JSON under `--json`).
#[test]
fn signals_exit_130_with_context_canceled() {
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    harness::use_cheap_key(&repo);
    for (signal, json) in [(libc::SIGINT, true), (libc::SIGTERM, false)] {
        let mut args = vec!["-r", s(&repo), "backup", "--stdin"];
        if json {
            args.push("--json");
        }
        let mut child = Command::new(harness::restix_bin())
            .args(&args)
            .env("RESTIC_PASSWORD", harness::PASSWORD)
            .env("RESTIC_CACHE_DIR", sb.join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The backup holds a lock while it waits for more stdin.
        harness::wait_for_files(
            &repo.join("locks"),
            std::time::Duration::from_secs(60),
            "the backup's lock",
        );
        // SAFETY: kill(2) with the pid of our own child and a plain signal.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: {err}");
        let name = if signal == libc::SIGINT {
            "interrupt"
        } else {
            "terminated"
        };
        assert!(
            err.contains(&format!("signal {name} received, cleaning up")),
            "{err}"
        );
        let last = err.lines().last().unwrap_or_default();
        if json {
            assert_eq!(
                last,
                r#"{"message_type":"exit_error","code":130,"message":"context canceled"}"#
            );
        } else {
            assert_eq!(last, "context canceled");
        }
        assert!(
            std::fs::read_dir(repo.join("locks"))
                .unwrap()
                .next()
                .is_none(),
            "the lock is removed"
        );
        drop(child.stdin.take());
    }
}
