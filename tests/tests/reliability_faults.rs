//! Backups through a backend that fails: every failure is reported clearly,
//! and the repository stays one that the real `restic check` accepts and the
//! next normal backup can use.
//!
//! For each operation kind (read, write, list, remove, stat) and several N,
//! the N-th operation fails (through `FaultyBackend<LocalBackend>` from
//! `restix_backend::fault`, the `testing` feature) while the engine opens the repository,
//! locks it, loads the index and backs up a small tree with small packs.
//! The backup either completes or returns an error whose chain names the
//! injected fault. Then `restic unlock --remove-all` (a lock left by a failed
//! removal is expected and harmless) and `restic check --read-data` must
//! succeed (packs that no index references are hints, not errors, in
//! restic's check), and a fault-free backup through the engine must succeed
//! and be checked again. Truncated and short reads, a delay, and a full disk
//! are covered too. Through the wrappers restix opens every repository with
//! (`restix_backend::wrap`: retries), an unreliable backend that fails every
//! few operations still completes the backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use restix_backend::fault::{Fault, FaultPlan, FaultyBackend, OpKind};
use restix_backend::local::LocalBackend;
use restix_backend::retry::RetryPolicy;
use restix_backend::{wrap, Backend, WrapOptions};
use restix_engine::archiver::{ArchiveOptions, Archiver, NoProgress};
use restix_engine::repository::Repository;
use restix_repo_format::ScryptParams;
use restix_tests::harness::{self, Sandbox, PASSWORD};

/// Small packs so one backup writes many files.
const PACK_SIZE: u64 = 48 * 1024;

/// A deterministic source tree of ~600 KB in a few folders.
fn make_source(dir: &Path) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for d in 0..3 {
        let sub = dir.join(format!("dir{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..6 {
            let len = (next() % 60_000) as usize + 100;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            std::fs::write(sub.join(format!("file{f}.bin")), data).unwrap();
        }
    }
    std::fs::write(dir.join("small.txt"), b"hello").unwrap();
}

/// Error and all its sources on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Open, lock, load the index and back up `source` through `backend`, as
/// `restix backup` does. Returns the error text on failure.
fn backup(backend: Arc<dyn Backend>, source: &Path) -> Result<(), String> {
    let repo = Repository::open(backend, PASSWORD.as_bytes(), None).map_err(|e| chain(&e))?;
    repo.set_pack_size_unchecked(PACK_SIZE);
    let guard = repo.lock(false).map_err(|e| chain(&e))?;
    repo.load_index().map_err(|e| chain(&e))?;
    let repo = Arc::new(repo);
    let options = ArchiveOptions {
        hostname: "faults".into(),
        threads: 2,
        ..ArchiveOptions::default()
    };
    let mut archiver = Archiver::new(Arc::clone(&repo), options);
    let result = archiver
        .backup(&[source.to_path_buf()], &NoProgress)
        .map(|_| ())
        .map_err(|e| chain(&e));
    drop(guard);
    result
}

struct Case {
    name: String,
    plan: FaultPlan,
    /// Text the error must contain when the backup fails.
    expect_in_error: &'static [&'static str],
}

fn restic_check_clean(sb: &Sandbox, repo: &Path, context: &str) {
    sb.restic(["-r", harness::s(repo), "unlock", "--remove-all"])
        .ok();
    let run = sb.restic(["-r", harness::s(repo), "check", "--read-data"]);
    assert!(
        run.success() && run.out().contains("no errors were found"),
        "{context}: restic check --read-data is not clean:\n{}",
        run.describe()
    );
}

fn template_repo(sb: &Sandbox) -> PathBuf {
    let repo = sb.join("template");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&repo));
    Repository::init(
        backend,
        PASSWORD.as_bytes(),
        2,
        None,
        ScryptParams::fast_for_tests(),
    )
    .unwrap();
    repo
}

fn run_case(sb: &Sandbox, template: &Path, source: &Path, case: &Case, with_parent: bool) {
    let repo = sb.join(format!("repo-{}", case.name));
    harness::copy_dir(template, &repo);
    if with_parent {
        // A first snapshot makes the faulted run a parent-based backup that
        // reads trees and index files.
        backup(Arc::new(LocalBackend::new(&repo)), source).unwrap();
    }
    let faulty = Arc::new(FaultyBackend::new(
        LocalBackend::new(&repo),
        case.plan.clone(),
    ));
    let outcome = backup(Arc::clone(&faulty) as Arc<dyn Backend>, source);
    match &outcome {
        Ok(()) => eprintln!(
            "{}: completed ({} faults injected)",
            case.name,
            faulty.injected()
        ),
        Err(text) => {
            eprintln!("{}: failed: {text}", case.name);
            assert!(
                faulty.injected() > 0,
                "{}: failed without an injected fault: {text}",
                case.name
            );
            assert!(
                case.expect_in_error.iter().any(|w| text.contains(w)),
                "{}: error does not say what failed (want one of {:?}): {text}",
                case.name,
                case.expect_in_error
            );
        }
    }
    restic_check_clean(sb, &repo, &format!("{} after the faulty backup", case.name));
    backup(Arc::new(LocalBackend::new(&repo)), source)
        .unwrap_or_else(|e| panic!("{}: the next normal backup failed: {e}", case.name));
    restic_check_clean(sb, &repo, &format!("{} after the next backup", case.name));
    let _ = std::fs::remove_dir_all(&repo);
}

const FAIL_WORDS: &[&str] = &["injected fault"];

#[test]
fn failing_operations_leave_a_clean_repository() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let source = sb.join("src");
    make_source(&source);
    let template = template_repo(&sb);

    let plan_ns: [(OpKind, &[u64]); 5] = [
        (OpKind::Read, &[1, 2, 4]),
        (OpKind::Write, &[1, 2, 5, 12]),
        (OpKind::List, &[1, 3]),
        (OpKind::Remove, &[1]),
        (OpKind::Stat, &[1, 2]),
    ];
    let mut ran = 0;
    for (op, ns) in plan_ns {
        for &n in ns {
            // Reads mostly happen when there is a parent snapshot and index.
            let with_parent = op == OpKind::Read || op == OpKind::List;
            let case = Case {
                name: format!("{op}-{n}"),
                plan: FaultPlan::new().fail(op, n),
                expect_in_error: FAIL_WORDS,
            };
            run_case(&sb, &template, &source, &case, with_parent);
            ran += 1;
        }
    }
    // A lasting outage of writes from the 3rd on.
    let case = Case {
        name: "write-outage".into(),
        plan: FaultPlan::new().from_nth(OpKind::Write, 3, Fault::Fail),
        expect_in_error: FAIL_WORDS,
    };
    run_case(&sb, &template, &source, &case, false);
    assert!(ran > 10);
}

#[test]
fn corrupt_reads_and_delays_are_survived() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let source = sb.join("src");
    make_source(&source);
    let template = template_repo(&sb);
    // A truncated or short read must be caught (MAC, length, hash checks),
    // never silently used.
    let corrupt_words: &[&str] = &[
        "short read",
        "ciphertext",
        "MAC",
        "mac",
        "authentic",
        "truncated",
        "too short",
        "invalid",
        "decrypt",
        "unexpected end",
        "length",
    ];
    for n in [1, 2, 3, 5] {
        run_case(
            &sb,
            &template,
            &source,
            &Case {
                name: format!("truncated-read-{n}"),
                plan: FaultPlan::new().truncate(OpKind::Read, n),
                expect_in_error: corrupt_words,
            },
            true,
        );
        run_case(
            &sb,
            &template,
            &source,
            &Case {
                name: format!("short-read-{n}"),
                plan: FaultPlan::new().short_read(n, 10),
                expect_in_error: corrupt_words,
            },
            true,
        );
    }
    run_case(
        &sb,
        &template,
        &source,
        &Case {
            name: "delayed-write".into(),
            plan: FaultPlan::new().delay(OpKind::Write, 2, Duration::from_millis(300)),
            expect_in_error: &[],
        },
        false,
    );
}

#[test]
fn full_disk_gives_a_clear_error() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let source = sb.join("src");
    make_source(&source);
    let template = template_repo(&sb);
    for cap in [0u64, 1_000, 150_000] {
        let repo = sb.join(format!("repo-full-{cap}"));
        harness::copy_dir(&template, &repo);
        let faulty = Arc::new(FaultyBackend::new(
            LocalBackend::new(&repo),
            FaultPlan::new().no_space_after(cap),
        ));
        let err = backup(Arc::clone(&faulty) as Arc<dyn Backend>, &source)
            .expect_err("a backup of ~600 KB cannot fit");
        eprintln!("full disk after {cap} bytes: {err}");
        assert!(
            err.contains("no space left on device"),
            "full disk not reported clearly: {err}"
        );
        restic_check_clean(&sb, &repo, &format!("full disk after {cap} bytes"));
        backup(Arc::new(LocalBackend::new(&repo)), &source).unwrap();
        restic_check_clean(&sb, &repo, &format!("full disk after {cap}, next backup"));
    }
}

/// Every 4th operation of each kind fails with a transient error, as over
/// an unreliable link: through the wrappers restix opens repositories with
/// (the retry wrapper), the backup completes and the repository is clean.
#[test]
fn transient_faults_are_retried_and_the_backup_completes() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let source = sb.join("src");
    make_source(&source);
    let template = template_repo(&sb);
    let repo = sb.join("repo-unreliable");
    harness::copy_dir(&template, &repo);
    backup(Arc::new(LocalBackend::new(&repo)), &source).unwrap();
    let mut plan = FaultPlan::new();
    for op in OpKind::ALL {
        plan = plan.every(op, 1, 4, Fault::Fail);
    }
    let faulty = Arc::new(FaultyBackend::new(LocalBackend::new(&repo), plan));
    let options = WrapOptions {
        retry: RetryPolicy::fast(),
        ..WrapOptions::default()
    };
    let wrapped = wrap(Box::new(Arc::clone(&faulty)), &options);
    std::fs::write(source.join("new.txt"), b"written over an unreliable link").unwrap();
    backup(wrapped, &source).expect("the retries carry the backup through");
    assert!(
        faulty.injected() > 5,
        "{} faults injected",
        faulty.injected()
    );
    restic_check_clean(&sb, &repo, "after the retried backup");
}
