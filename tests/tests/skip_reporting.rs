//! A test whose peer is missing must not pass in silence (issue #21): this
//! file runs one of its own tests again, in a child process whose `PATH` has
//! no restic, once with `CI=true` (the child must fail and name restic) and
//! once without (the child passes, and says on its standard error, past
//! libtest's capture, which test did not run).

use std::process::Command;

use restix_tests::require_restic;

/// Only run by the tests below, in a child process (hence `#[ignore]`).
#[test]
#[ignore = "run by skip_is_reported_and_fails_under_ci, with PATH stripped"]
fn probe_needs_restic() {
    let _restic = require_restic!();
}

fn run_probe(ci: bool) -> std::process::Output {
    let exe = std::env::current_exe().expect("current_exe");
    let log = tempfile::NamedTempFile::new().expect("temp log");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "probe_needs_restic",
        "--test-threads=1",
    ])
    .env("PATH", "/nonexistent")
    .env_remove("RESTIC_BIN")
    .env("RESTIX_SKIP_LOG", log.path());
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    let out = cmd.output().expect("run the probe");
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    if !ci {
        assert!(
            logged.contains("SKIPPED probe_needs_restic: restic missing"),
            "skip log: {logged:?}"
        );
    }
    out
}

#[test]
fn skip_is_reported_and_fails_under_ci() {
    let quiet = run_probe(false);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(
        quiet.status.success(),
        "without CI the probe passes: {stderr}"
    );
    assert!(
        stderr.contains("SKIPPED probe_needs_restic: restic missing"),
        "the skip is printed past the capture: {stderr}"
    );
    assert!(
        stderr.contains("1 test(s) of") && stderr.contains("did NOT run"),
        "the binary's summary names the count: {stderr}"
    );

    let ci = run_probe(true);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&ci.stdout),
        String::from_utf8_lossy(&ci.stderr)
    );
    assert!(!ci.status.success(), "under CI=true the probe fails: {all}");
    assert!(all.contains("restic missing, and CI=true"), "{all}");
}
