//! The `rclone:` backend as restic has it: restix starts `rclone serve
//! restic --stdio` (Debian's rclone) and speaks HTTP/2 on its pipes.
//!
//! 1. The backend conformance suite (`restix_backend::testing`) on a
//!    local-folder remote; a killed child is a permanent error naming the
//!    file.
//! 2. restix and the real restic 0.14 (its own `rclone:` backend) write and
//!    read each other's repositories, on a local folder and on the Garage
//!    cluster through rclone's s3 remote.
//! 3. `-o rclone.program`, `rclone.args`, `rclone.connections`,
//!    `rclone.timeout`; a remote rclone cannot open.
//! 4. rclone killed in the middle of a backup.
//! 5. `gs:`, `b2:`, `swift:` point to `rclone:`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use restix_backend::testing::conformance::Suite;
use restix_backend::testing::id;
use restix_engine::backend::{Backend, BackendError, FileType};
use restix_rclone::{RcloneLocation, RcloneOptions};
use restix_tests::garage::{GarageCluster, KEY_ID, REGION, SECRET};
use restix_tests::harness::{is_restix, Sandbox, Tool};
use restix_tests::rclone::{rclone_env, require_rclone};
use restix_tests::remote_repo::{self, Access, ServerFault};
use restix_tests::{require_garage, require_restic};

/// Pack files stored below `dir/data`.
fn stored_packs(dir: &Path) -> usize {
    fs::read_dir(dir.join("data"))
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|d| fs::read_dir(d.path()).ok())
                .flat_map(|files| files.flatten())
                .filter(|f| f.file_name().len() == 64)
                .count()
        })
        .unwrap_or(0)
}

/// A wrapper program around `rclone` that records its pid and arguments in
/// `dir` (`rclone.pid`, `rclone.args`) and then becomes rclone.
fn recording_wrapper(dir: &Path, rclone: &Path) -> PathBuf {
    let script = dir.join("rclone-wrapper.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > '{pid}'\necho \"$@\" >> '{args}'\nexec '{rclone}' \"$@\"\n",
            pid = dir.join("rclone.pid").display(),
            args = dir.join("rclone.args").display(),
            rclone = rclone.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn recorded_pid(dir: &Path) -> Option<i32> {
    fs::read_to_string(dir.join("rclone.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn kill_pid(pid: i32) {
    // SAFETY: kill(2) on a pid this test's wrapper recorded; no memory is
    // involved, and a stale pid only makes the call fail.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn rclone_conformance_on_a_local_remote() {
    let Some(rclone) = require_rclone() else {
        return;
    };
    let sb = Sandbox::new();
    // rclone without the user's configuration (rclone_env's empty file).
    let config = rclone_env(sb.path()).remove(0).1;
    let next = AtomicUsize::new(0);
    let repo_of = |n: usize| sb.join(format!("conformance-{n}"));
    Suite::new(|| {
        let repo = repo_of(next.fetch_add(1, Ordering::SeqCst));
        let location = RcloneLocation::parse(&format!("rclone:{}", repo.display())).unwrap();
        let mut options = RcloneOptions {
            program: vec![rclone.display().to_string()],
            ..RcloneOptions::default()
        };
        options
            .args
            .extend(["--config".to_string(), config.clone()]);
        restix_rclone::open(&location, &options).unwrap()
    })
    .server_writes_in_place(
        "rclone serve restic (1.60) stores uploads under their final name while they arrive",
    )
    .run();
    let packs: usize = (0..next.load(Ordering::SeqCst))
        .map(|n| stored_packs(&repo_of(n)))
        .sum();
    assert!(packs > 0, "restic's layout on disk");
}

#[test]
fn a_killed_rclone_is_a_permanent_error_naming_the_file() {
    let Some(rclone) = require_rclone() else {
        return;
    };
    let sb = Sandbox::new();
    let repo = sb.join("killed-repo");
    let location = RcloneLocation::parse(&format!("rclone:{}", repo.display())).unwrap();
    let options = RcloneOptions {
        program: vec![recording_wrapper(sb.path(), rclone).display().to_string()],
        ..RcloneOptions::default()
    };
    let backend = restix_rclone::open(&location, &options).unwrap();
    assert_eq!(backend.location(), format!("rclone:{}", repo.display()));
    assert_eq!(backend.connections(), 5);
    assert!(backend.has_flaky_errors(), "restic's HasFlakyErrors");
    backend.create().unwrap();

    // The child gone: a permanent error that names the file and rclone.
    kill_pid(recorded_pid(sb.path()).expect("wrapper recorded its pid"));
    std::thread::sleep(Duration::from_millis(200));
    let name = id(0xabc);
    match backend.write(FileType::Snapshot, &name, b"after the kill") {
        Err(BackendError::Other(message)) => {
            assert!(message.contains(&name), "{message}");
            assert!(message.contains("rclone"), "{message}");
        }
        other => panic!("write to a killed rclone: {other:?}"),
    }
    // Dropping the backend of a dead child returns at once.
    drop(backend);
}

#[test]
fn restix_and_restic_share_a_repository_through_rclone() {
    require_restic!();
    if require_rclone().is_none() {
        return;
    }
    let sb = Sandbox::new();
    let env = rclone_env(sb.path());
    let by_restix =
        Access::url(format!("rclone:{}", sb.join("by-restix").display())).with_env(env.clone());
    remote_repo::restix_writes_restic_reads(&sb, &by_restix, &by_restix, 11);
    let by_restic = Access::url(format!("rclone:{}", sb.join("by-restic").display()))
        .with_env(env)
        .with_args(["-o", "rclone.connections=3"]);
    remote_repo::restic_writes_restix_reads(&sb, &by_restic, &by_restic, 12);
}

#[test]
fn restix_and_restic_share_a_garage_bucket_through_rclone_s3() {
    require_restic!();
    if require_rclone().is_none() {
        return;
    }
    let cluster: GarageCluster = require_garage!();
    let sb = Sandbox::new();
    let mut env = rclone_env(sb.path());
    // rclone's AWS SDK refuses its own transport when AWS_CA_BUNDLE is set
    // ("LoadCustomCABundleError"); an empty value counts as unset.
    env.push(("AWS_CA_BUNDLE".to_string(), String::new()));
    for (key, value) in [
        ("TYPE", "s3".to_string()),
        ("PROVIDER", "Other".to_string()),
        ("ACCESS_KEY_ID", KEY_ID.to_string()),
        ("SECRET_ACCESS_KEY", SECRET.to_string()),
        ("REGION", REGION.to_string()),
        ("ENDPOINT", cluster.endpoint(0)),
        ("FORCE_PATH_STYLE", "true".to_string()),
    ] {
        env.push((format!("RCLONE_CONFIG_GARAGE_{key}"), value));
    }
    let bucket = restix_tests::garage::BUCKET;
    let by_restix =
        Access::url(format!("rclone:garage:{bucket}/rclone-by-restix")).with_env(env.clone());
    remote_repo::restix_writes_restic_reads(&sb, &by_restix, &by_restix, 13);
    let by_restic = Access::url(format!("rclone:garage:{bucket}/rclone-by-restic")).with_env(env);
    remote_repo::restic_writes_restix_reads(&sb, &by_restic, &by_restic, 14);
}

#[test]
fn rclone_options_and_a_remote_rclone_cannot_open() {
    let Some(rclone) = require_rclone() else {
        return;
    };
    let sb = Sandbox::new();
    let env = rclone_env(sb.path());
    let wrapper = recording_wrapper(sb.path(), rclone);
    let repo = sb.join("opts-repo");
    let access = Access::url(format!("rclone:{}", repo.display())).with_env(env.clone());
    let with = |options: &[&str]| {
        let mut args = Vec::new();
        for option in options {
            args.push("-o".to_string());
            args.push(option.to_string());
        }
        access.clone().with_args(args)
    };
    let program = format!("rclone.program={}", wrapper.display());
    with(&[&program]).run(&sb, Tool::Restix, &["init"]).ok();
    let recorded = fs::read_to_string(sb.join("rclone.args")).unwrap();
    assert_eq!(
        recorded.lines().last().unwrap(),
        format!("serve restic --stdio --b2-hard-delete {}", repo.display())
    );
    with(&[
        &program,
        "rclone.args=serve restic --stdio --verbose",
        "rclone.connections=2",
        "rclone.timeout=30s",
    ])
    .run(&sb, Tool::Restix, &["snapshots"])
    .ok();
    let recorded = fs::read_to_string(sb.join("rclone.args")).unwrap();
    assert_eq!(
        recorded.lines().last().unwrap(),
        format!("serve restic --stdio --verbose {}", repo.display())
    );
    // (restix's own message; with RESTIX_BIN=restic only the failure counts.)
    let bad_timeout = with(&["rclone.timeout=soon"])
        .run(&sb, Tool::Restix, &["snapshots"])
        .fails();
    if is_restix() {
        bad_timeout.stderr_has("invalid duration");
    }
    with(&["rclone.bogus=1"])
        .run(&sb, Tool::Restix, &["snapshots"])
        .fails()
        .stderr_has("option rclone.bogus is not known");
    with(&["rclone.program=/nonexistent/rclone"])
        .run(&sb, Tool::Restix, &["snapshots"])
        .fails()
        .stderr_has("/nonexistent/rclone");

    // rclone exits at once for a remote it does not know: its own message
    // is passed on, then restix says why it cannot go on (exit 1).
    let unknown = Access::url("rclone:nosuchremote:some/path")
        .with_env(env)
        .run(&sb, Tool::Restix, &["snapshots"])
        .code_is(1)
        .stderr_has("rclone: ")
        .stderr_has("error talking HTTP to rclone: ");
    if is_restix() {
        // restic 0.18's text; 0.14 says "context canceled".
        unknown.stderr_has("error talking HTTP to rclone: exit status 1");
    }
}

#[test]
fn rclone_killed_mid_backup_fails_naming_the_file() {
    require_restic!();
    let Some(rclone) = require_rclone() else {
        return;
    };
    let sb = Sandbox::new();
    let env = rclone_env(sb.path());
    let repo = sb.join("interrupted");
    let wrapper = recording_wrapper(sb.path(), rclone);
    let access = Access::url(format!("rclone:{}", repo.display()))
        .with_env(env)
        .with_args([
            "-o".to_string(),
            format!("rclone.program={}", wrapper.display()),
        ]);
    let src = sb.join("src");
    remote_repo::make_large_tree(&src, 3);
    access.run(&sb, Tool::Restix, &["init"]).ok();
    let _ = fs::remove_file(sb.join("rclone.pid"));
    let pid_dir = sb.path().to_path_buf();
    let outcome = remote_repo::backup_with_server_killed(
        &sb,
        &access,
        &src,
        4096,
        ServerFault {
            uploading: &|| stored_packs(&repo) > 0 && recorded_pid(&pid_dir).is_some(),
            kill: &mut || kill_pid(recorded_pid(&pid_dir).expect("wrapper recorded its pid")),
            down: Duration::from_millis(100),
            // The child of a running backup cannot come back.
            revive: &mut || {},
        },
    );
    assert!(
        !outcome.status.success(),
        "a backup whose rclone was killed cannot succeed:\n{}",
        outcome.output
    );
    assert!(outcome.output.contains("rclone"), "{}", outcome.output);
    remote_repo::repository_still_sound(&sb, &access, &access, &src);
}

#[test]
fn gs_b2_and_swift_point_to_rclone() {
    if !is_restix() {
        return; // restic has these backends
    }
    let sb = Sandbox::new();
    for (location, service) in [
        ("gs:bucket:/repo", "Google Cloud Storage"),
        ("b2:bucket:repo", "Backblaze B2"),
        ("swift:container:/repo", "OpenStack Swift"),
    ] {
        sb.restix(["-r", location, "snapshots"])
            .code_is(1)
            .stderr_has("Fatal: parsing repository location failed")
            .stderr_has(service)
            .stderr_has("rclone:");
    }
}
