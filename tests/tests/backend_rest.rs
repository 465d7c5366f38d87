//! The `rest:` backend against a real REST server: `rclone serve restic`
//! from Debian's rclone on 127.0.0.1 (tests/src/rclone.rs).
//!
//! 1. The backend conformance suite (`restix_backend::testing`) over HTTP
//!    with the server killed and started again (outage), with basic
//!    authentication (htpasswd), and over HTTPS with a private CA
//!    (`--cacert`) and a client certificate (`--tls-client-cert`).
//! 2. restix and the real restic 0.14 (its own `rest:` backend) write and
//!    read each other's repositories; restic's `check --read-data` is clean.
//! 3. Credentials: in the URL, from `RESTIC_REST_USERNAME`/`_PASSWORD`,
//!    missing (401, a permanent error).
//! 4. The server killed in the middle of a backup and started again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use restix_backend::testing::conformance::{Outage, Suite};
use restix_engine::backend::{Backend, BackendError, FileType};
use restix_rest::{RestLocation, RestOptions, TlsOptions};
use restix_tests::harness::{is_restix, Sandbox, Tool};
use restix_tests::rclone::{RcloneServe, ServeOptions, PASSWORD, USER};
use restix_tests::remote_repo::{self, Access, ServerFault};
use restix_tests::require_restic;

fn open(url: &str, tls: &TlsOptions) -> restix_rest::HttpRestBackend {
    let location = RestLocation::parse(url).unwrap();
    restix_rest::open(&location, &RestOptions::default(), tls).unwrap()
}

/// Pack files stored below `dir/data`.
fn stored_packs(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data"))
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|d| std::fs::read_dir(d.path()).ok())
                .flat_map(|files| files.flatten())
                .filter(|f| f.file_name().len() == 64)
                .count()
        })
        .unwrap_or(0)
}

/// Why the suite's atomic-write check is left out against this server
/// (docs/backends.md, "Where the suite runs").
const IN_PLACE: &str =
    "rclone serve restic (1.60) stores uploads under their final name while they arrive";

/// A fresh repository name on the server for every call.
struct Names(AtomicUsize, &'static str);

impl Names {
    fn next(&self) -> String {
        format!("{}{}", self.1, self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// The server killed and started again on the same port and folder.
struct KillServer<'a>(&'a Mutex<RcloneServe>);

impl Outage for KillServer<'_> {
    fn begin(&self) {
        self.0.lock().unwrap().kill();
    }
    fn end(&self) {
        self.0.lock().unwrap().restart();
    }
}

#[test]
fn rest_conformance_over_http_with_outage() {
    let Some(server) = RcloneServe::start_if_available(ServeOptions::default()) else {
        return;
    };
    let root = server.root();
    let port = server.port();
    let server = Mutex::new(server);
    let names = Names(AtomicUsize::new(0), "c");
    let first = open(&server.lock().unwrap().url("named"), &TlsOptions::default());
    assert_eq!(
        first.location(),
        format!("rest:http://127.0.0.1:{port}/named/")
    );
    let outage = KillServer(&server);
    Suite::new(|| {
        let url = server.lock().unwrap().url(&names.next());
        open(&url, &TlsOptions::default())
    })
    .large_file_size(24 << 20)
    .server_writes_in_place(IN_PLACE)
    .outage(&outage)
    .run();
    // The REST layout on the server's disk is restic's default one.
    let packs: usize = (0..names.0.load(Ordering::SeqCst))
        .map(|n| stored_packs(&root.join(format!("c{n}"))))
        .sum();
    assert!(packs > 0, "packs below data/<2 hex>/ on the server");
}

#[test]
fn rest_conformance_with_basic_authentication() {
    let options = ServeOptions {
        htpasswd: true,
        ..ServeOptions::default()
    };
    let Some(server) = RcloneServe::start_if_available(options) else {
        return;
    };
    let names = Names(AtomicUsize::new(0), "auth");
    Suite::new(|| {
        open(
            &server.url_with_credentials(&names.next()),
            &TlsOptions::default(),
        )
    })
    .large_file_size(3 << 20)
    .server_writes_in_place(IN_PLACE)
    .run();
}

#[test]
fn rest_conformance_over_https_with_cacert_and_client_certificate() {
    let options = ServeOptions {
        tls: true,
        client_certs: true,
        htpasswd: false,
    };
    let Some(server) = RcloneServe::start_if_available(options) else {
        return;
    };
    let pki = server.pki().expect("tls server has a pki");
    let tls = TlsOptions {
        ca_cert_files: vec![pki.ca_cert.clone()],
        client_cert: Some(pki.client_pem.clone()),
        ..TlsOptions::default()
    };
    let names = Names(AtomicUsize::new(0), "tls");
    Suite::new(|| open(&server.url(&names.next()), &tls))
        .large_file_size(3 << 20)
        .server_writes_in_place(IN_PLACE)
        .run();

    // Without the CA the server is not trusted; without a client
    // certificate the server refuses the handshake. Neither is NotFound,
    // nor worth a retry.
    let untrusted = open(&server.url("tls0"), &TlsOptions::default());
    let err = untrusted.stat(FileType::Config, "config").unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let anonymous = TlsOptions {
        client_cert: None,
        ..tls.clone()
    };
    let err = open(&server.url("tls0"), &anonymous)
        .stat(FileType::Config, "config")
        .unwrap_err();
    assert!(!err.is_not_found(), "{err}");

    // A bad --cacert file is refused when the backend opens.
    let bogus = TlsOptions {
        ca_cert_files: vec![PathBuf::from("/nonexistent/ca.pem")],
        ..TlsOptions::default()
    };
    let location = RestLocation::parse(&server.url("tls0")).unwrap();
    let err = restix_rest::open(&location, &RestOptions::default(), &bogus).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unable to read root certificate"),
        "{err}"
    );
}

#[test]
fn restix_and_restic_share_a_rest_server() {
    require_restic!();
    let Some(server) = RcloneServe::start_if_available(ServeOptions::default()) else {
        return;
    };
    let sb = Sandbox::new();
    let written_by_restix = Access::url(server.url("by-restix"));
    remote_repo::restix_writes_restic_reads(&sb, &written_by_restix, &written_by_restix, 1);
    let written_by_restic =
        Access::url(server.url("by-restic")).with_args(["-o", "rest.connections=2"]);
    remote_repo::restic_writes_restix_reads(&sb, &written_by_restic, &written_by_restic, 2);
}

#[test]
fn https_with_cacert_and_client_certificate_through_the_cli() {
    require_restic!();
    let options = ServeOptions {
        tls: true,
        client_certs: true,
        htpasswd: true,
    };
    let Some(server) = RcloneServe::start_if_available(options) else {
        return;
    };
    let pki = server.pki().expect("tls server has a pki");
    let sb = Sandbox::new();
    let flags = [
        "--cacert".to_string(),
        pki.ca_cert.display().to_string(),
        "--tls-client-cert".to_string(),
        pki.client_pem.display().to_string(),
    ];
    let access = Access::url(server.url_with_credentials("secure")).with_args(flags.clone());
    remote_repo::restix_writes_restic_reads(&sb, &access, &access, 3);

    // The password never shows in messages.
    let run = access.run(&sb, Tool::Restix, &["cat", "config"]).ok();
    assert!(!run.err().contains(PASSWORD), "{}", run.err());

    // $RESTIC_CACERT (a comma list, like restic 0.18) instead of --cacert.
    if !is_restix() {
        return; // restic 0.14 does not read $RESTIC_CACERT this way
    }
    Access::url(server.url_with_credentials("secure"))
        .with_env([(
            "RESTIC_CACERT".to_string(),
            format!("/dev/null,{}", pki.ca_cert.display()),
        )])
        .with_args([
            "--tls-client-cert".to_string(),
            pki.client_pem.display().to_string(),
        ])
        .run(&sb, Tool::Restix, &["snapshots"])
        .fails();
    Access::url(server.url_with_credentials("secure"))
        .with_env([(
            "RESTIC_CACERT".to_string(),
            pki.ca_cert.display().to_string(),
        )])
        .with_args([
            "--tls-client-cert".to_string(),
            pki.client_pem.display().to_string(),
        ])
        .run(&sb, Tool::Restix, &["snapshots"])
        .ok();
}

#[test]
fn credentials_from_url_environment_or_none() {
    let options = ServeOptions {
        htpasswd: true,
        ..ServeOptions::default()
    };
    let Some(server) = RcloneServe::start_if_available(options) else {
        return;
    };
    let sb = Sandbox::new();
    let src = sb.join("src");
    remote_repo::make_tree(&src, 4);
    let in_url = Access::url(server.url_with_credentials("auth"));
    in_url.run(&sb, Tool::Restix, &["init"]).ok();
    in_url
        .run(&sb, Tool::Restix, &["backup", src.to_str().unwrap()])
        .ok();

    // RESTIC_REST_USERNAME/_PASSWORD came with restic 0.16.
    if is_restix() {
        let from_env = Access::url(server.url("auth")).with_env([
            ("RESTIC_REST_USERNAME".to_string(), USER.to_string()),
            ("RESTIC_REST_PASSWORD".to_string(), PASSWORD.to_string()),
        ]);
        from_env.run(&sb, Tool::Restix, &["check"]).ok();
    }

    // Wrong or no credentials: 401, reported at once (not retried, not
    // "no repository").
    let anonymous = Access::url(server.url("auth"));
    anonymous
        .run(&sb, Tool::Restix, &["snapshots"])
        .fails()
        .stderr_has("401");
    let backend = open(&server.url("auth"), &TlsOptions::default());
    match backend.stat(FileType::Config, "config") {
        Err(BackendError::Other(message)) => assert!(message.contains("401"), "{message}"),
        other => panic!("unauthenticated stat: {other:?}"),
    }
}

#[test]
fn rest_server_killed_mid_backup() {
    require_restic!();
    let Some(mut server) = RcloneServe::start_if_available(ServeOptions::default()) else {
        return;
    };
    let sb = Sandbox::new();
    let access = Access::url(server.url("interrupted"));
    let src = sb.join("src");
    remote_repo::make_large_tree(&src, 3);
    access.run(&sb, Tool::Restix, &["init"]).ok();
    let repo_dir = server.root().join("interrupted");
    let server = std::cell::RefCell::new(&mut server);
    let outcome = remote_repo::backup_with_server_killed(
        &sb,
        &access,
        &src,
        4096,
        ServerFault {
            uploading: &|| stored_packs(&repo_dir) > 0,
            kill: &mut || server.borrow_mut().kill(),
            down: Duration::from_secs(1),
            revive: &mut || server.borrow_mut().restart(),
        },
    );
    if !outcome.status.success() && is_restix() {
        assert!(
            outcome.output.contains("rest:http://127.0.0.1"),
            "the error names the server location: {}",
            outcome.output
        );
    }
    remote_repo::repository_still_sound(&sb, &access, &access, &src);
}
