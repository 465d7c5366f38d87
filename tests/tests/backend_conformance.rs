//! The backend conformance suite (`restix_backend::testing::conformance`)
//! on the local backend, on each wrapper of the backend layer around it, and
//! on the whole stack `restix_backend::wrap` builds; plus atomic writes when
//! the writing process is killed (a child process, SIGKILL mid-write).
//!
//! The same suite runs against SFTP (sftp_backend.rs, real sshd) and S3
//! (s3_backend.rs, real Garage).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use restix_backend::fault::{Fault, FaultPlan, FaultyBackend, OpKind};
use restix_backend::limited::{Limited, RateLimits};
use restix_backend::local::LocalBackend;
use restix_backend::retry::{RetryPolicy, Retrying};
use restix_backend::sema::ConnectionLimited;
use restix_backend::testing::conformance::Suite;
use restix_backend::testing::killed_writer;
use restix_backend::{wrap, Backend, WrapOptions};

/// A fresh repository folder for every call, all below one temporary folder.
struct Locations {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Locations {
    fn new() -> Locations {
        Locations {
            dir: tempfile::Builder::new()
                .prefix("restix-conformance-")
                .tempdir()
                .unwrap(),
            next: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.dir.path().join(format!("repo{n}"))
    }
}

/// Limits far above what the suite moves: the data path is shaped, the
/// test is not slowed (no timing is asserted here; `sftp_cli_faults.rs`
/// checks that a limit takes effect).
fn generous_limits() -> RateLimits {
    RateLimits::from_kib(4 << 20, 4 << 20)
}

#[test]
fn local() {
    let locations = Locations::new();
    Suite::new(|| LocalBackend::new(locations.next())).run();
}

#[test]
fn bandwidth_limiter_around_local() {
    let locations = Locations::new();
    Suite::new(|| Limited::new(LocalBackend::new(locations.next()), generous_limits())).run();
}

#[test]
fn semaphore_around_local() {
    let locations = Locations::new();
    Suite::new(|| ConnectionLimited::new(LocalBackend::new(locations.next()).with_connections(3)))
        .run();
}

#[test]
fn retry_around_local() {
    let locations = Locations::new();
    Suite::new(|| Retrying::new(LocalBackend::new(locations.next()), RetryPolicy::fast())).run();
}

#[test]
fn fault_injection_without_faults_around_local() {
    let locations = Locations::new();
    Suite::new(|| FaultyBackend::new(LocalBackend::new(locations.next()), FaultPlan::new())).run();
}

/// Every 3rd operation of every kind fails with a transient error: through
/// the retry wrapper the backend still passes the whole suite.
#[test]
fn retry_rides_out_injected_transient_faults() {
    let locations = Locations::new();
    Suite::new(|| {
        let mut plan = FaultPlan::new();
        for op in OpKind::ALL {
            plan = plan.every(op, 2, 3, Fault::Fail);
        }
        Retrying::new(
            FaultyBackend::new(LocalBackend::new(locations.next()), plan),
            RetryPolicy::fast(),
        )
    })
    .run();
}

/// The stack restix opens every repository with.
#[test]
fn whole_wrapper_stack_around_local() {
    let locations = Locations::new();
    let options = WrapOptions {
        limits: generous_limits(),
        retry: RetryPolicy::fast(),
        report: None,
        trace: false,
    };
    Suite::new(|| wrap(Box::new(LocalBackend::new(locations.next())), &options)).run();
}

/// The child of [`local_writes_survive_a_killed_writer`]: writes through
/// the stack restix uses until it is killed (a no-op in a normal run).
#[test]
fn killed_writer_child() {
    killed_writer::child_entry(|location| {
        let backend: Box<dyn Backend> = Box::new(wrap(
            Box::new(LocalBackend::new(location)),
            &WrapOptions::default(),
        ));
        backend
    });
}

/// A process killed in the middle of a write leaves no partial file under a
/// final name, only its temporary file, which nothing lists. (The kill is
/// placed half a write after a completed one; should it miss every write,
/// the experiment is repeated, up to three times.)
#[test]
fn local_writes_survive_a_killed_writer() {
    let locations = Locations::new();
    let mut cut_off = 0;
    for _ in 0..3 {
        let repo = locations.next();
        let backend = LocalBackend::new(&repo);
        backend.create().unwrap();
        killed_writer::check(
            &backend,
            "killed_writer_child",
            &repo.display().to_string(),
            &[],
        );
        cut_off = restix_tests::harness::files_below(&repo)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("-tmp-"))
            .count();
        if cut_off > 0 {
            break;
        }
    }
    assert!(cut_off > 0, "the kill never landed inside a write");
}
