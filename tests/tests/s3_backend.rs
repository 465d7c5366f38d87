//! The S3 backend against a real distributed object store: a private 3-node
//! Garage cluster with replication factor 3 (tests/src/garage.rs).
//!
//! 1. restix init/backup/restore/forget --prune/check on the bucket; one node
//!    is stopped and backup + restore still work (quorum 2 of 3); it is
//!    restarted and the repository checks clean.
//! 2. The real restic 0.14 checks (`--read-data`) and restores what restix
//!    wrote to the bucket, and restix does the same with what restic wrote.
//! 3. The backend conformance suite (restix_backend::testing::conformance),
//!    with the endpoint's node stopped and started for its outage check.
//! 4. What is S3's own: multipart uploads, `create` making a missing bucket
//!    like restic does, refused credentials.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use restix_backend::testing::conformance::{Outage, Suite};
use restix_backend::{Backend, FileType};
use restix_s3::{S3Backend, S3Location, S3Options, TlsOptions};
use restix_tests::garage::{GarageCluster, BUCKET};
use restix_tests::harness::{
    assert_trees_equal, pseudo_random_bytes, restored_path, s, CompareOptions, Run, Sandbox, Tool,
};
use restix_tests::{require_garage, require_restic};

/// A small tree with enough data for several packs (one 6 MB file).
fn make_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), format!("hello s3 {seed}\n")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("big.bin"), pseudo_random_bytes(seed, 6_000_000)).unwrap();
    for i in 0..20u64 {
        let len = 1000 + (i as usize) * 7919;
        fs::write(
            root.join("sub").join(format!("f{i:02}")),
            pseudo_random_bytes(seed * 100 + i, len),
        )
        .unwrap();
    }
    fs::write(root.join("sub/deeper/zeros"), vec![0u8; 300_000]).unwrap();
}

/// `tool` with the cluster's AWS variables and `-r <url>` before `args`.
fn run(sb: &Sandbox, cluster: &GarageCluster, tool: Tool, url: &str, args: &[&str]) -> Run {
    let mut cmd = sb.cmd(tool);
    for (key, value) in cluster.env() {
        cmd = cmd.env(key, value);
    }
    cmd.args(["-r", url]).args(args).run()
}

fn compare_opts() -> CompareOptions {
    CompareOptions {
        root_metadata: false,
        ..CompareOptions::default()
    }
}

fn restore_and_compare(
    sb: &Sandbox,
    cluster: &GarageCluster,
    tool: Tool,
    url: &str,
    src: &Path,
    name: &str,
) {
    let out = sb.join(name);
    run(
        sb,
        cluster,
        tool,
        url,
        &["restore", "latest", "--target", s(&out)],
    )
    .ok();
    assert_trees_equal(src, &restored_path(&out, src), &compare_opts());
}

#[test]
fn restix_on_garage_survives_a_node_down() {
    let mut cluster = require_garage!();
    let sb = Sandbox::new();
    let url = cluster.repo_url("restix-repo");
    let src = sb.join("src");
    make_tree(&src, 1);

    run(&sb, &cluster, Tool::Restix, &url, &["init"]).ok();
    // A second init must refuse: config exists.
    run(&sb, &cluster, Tool::Restix, &url, &["init"]).fails();
    run(&sb, &cluster, Tool::Restix, &url, &["backup", s(&src)]).ok();
    restore_and_compare(&sb, &cluster, Tool::Restix, &url, &src, "out1");

    fs::write(src.join("added.txt"), b"second snapshot\n").unwrap();
    fs::remove_file(src.join("sub/f03")).unwrap();
    run(&sb, &cluster, Tool::Restix, &url, &["backup", s(&src)]).ok();
    run(
        &sb,
        &cluster,
        Tool::Restix,
        &url,
        &["forget", "--keep-last", "1", "--prune"],
    )
    .ok();
    run(&sb, &cluster, Tool::Restix, &url, &["check", "--read-data"]).ok();
    let snapshots = run(&sb, &cluster, Tool::Restix, &url, &["snapshots", "--json"]).ok();
    let list: Vec<serde_json::Value> = serde_json::from_str(&snapshots.out()).unwrap();
    assert_eq!(
        list.len(),
        1,
        "forget kept one snapshot: {}",
        snapshots.out()
    );

    // One of three replicas gone: writes and reads still reach a quorum.
    cluster.stop_node(2);
    fs::write(src.join("while-down.txt"), b"written with node 3 down\n").unwrap();
    run(&sb, &cluster, Tool::Restix, &url, &["backup", s(&src)]).ok();
    restore_and_compare(&sb, &cluster, Tool::Restix, &url, &src, "out2");
    cluster.start_node(2);
    cluster.wait_healthy();
    run(&sb, &cluster, Tool::Restix, &url, &["check", "--read-data"]).ok();
}

#[test]
fn restic_and_restix_share_a_garage_bucket() {
    require_restic!();
    let cluster = require_garage!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_tree(&src, 2);

    // restix writes, restic reads and verifies every pack.
    let from_restix = cluster.repo_url("written-by-restix");
    run(&sb, &cluster, Tool::Restix, &from_restix, &["init"]).ok();
    run(
        &sb,
        &cluster,
        Tool::Restix,
        &from_restix,
        &["backup", s(&src)],
    )
    .ok();
    run(
        &sb,
        &cluster,
        Tool::Restic,
        &from_restix,
        &["check", "--read-data"],
    )
    .ok();
    restore_and_compare(
        &sb,
        &cluster,
        Tool::Restic,
        &from_restix,
        &src,
        "restic-out",
    );

    // restic writes, restix reads and verifies every pack.
    let from_restic = cluster.repo_url("written-by-restic");
    run(&sb, &cluster, Tool::Restic, &from_restic, &["init"]).ok();
    run(
        &sb,
        &cluster,
        Tool::Restic,
        &from_restic,
        &["backup", s(&src)],
    )
    .ok();
    run(
        &sb,
        &cluster,
        Tool::Restix,
        &from_restic,
        &["check", "--read-data"],
    )
    .ok();
    restore_and_compare(
        &sb,
        &cluster,
        Tool::Restix,
        &from_restic,
        &src,
        "restix-out",
    );
    // restix adds a snapshot to restic's repository; restic still checks it.
    fs::write(src.join("more.txt"), b"restix was here\n").unwrap();
    run(
        &sb,
        &cluster,
        Tool::Restix,
        &from_restic,
        &["backup", s(&src)],
    )
    .ok();
    run(
        &sb,
        &cluster,
        Tool::Restic,
        &from_restic,
        &["check", "--read-data"],
    )
    .ok();
}

fn env_lookup(cluster: &GarageCluster) -> impl Fn(&str) -> Option<String> {
    let env: Vec<(&str, String)> = cluster.env();
    move |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    }
}

fn open_backend(cluster: &GarageCluster, location: &str, options: &S3Options) -> S3Backend {
    S3Backend::open_with_env(
        &S3Location::parse(location).unwrap(),
        options,
        &TlsOptions::default(),
        &env_lookup(cluster),
    )
    .unwrap()
}

/// Small multipart settings, so the suite's large file goes up in parts.
fn small_parts() -> S3Options {
    S3Options {
        multipart_threshold: 6 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..S3Options::default()
    }
}

/// Stops node 1, whose S3 endpoint the backend talks to (connections are
/// refused), and starts it again, for the suite's outage check. (The other
/// two nodes stay up: a node that restarts finds its peers again through
/// them; three restarted at once would not find each other.)
struct EndpointOutage<'a>(&'a Mutex<GarageCluster>);

impl Outage for EndpointOutage<'_> {
    fn begin(&self) {
        lock(self.0).stop_node(0);
    }
    fn end(&self) {
        let mut cluster = lock(self.0);
        cluster.start_node(0);
        cluster.wait_healthy();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The backend conformance suite (restix_backend::testing::conformance) on
/// fresh prefixes of the bucket; the endpoint's node is stopped and started
/// for its outage check.
#[test]
fn conformance() {
    let cluster = require_garage!();
    let endpoint = cluster.endpoint(0);
    let lookup = env_lookup(&cluster);
    let next = AtomicUsize::new(0);
    let cluster = Mutex::new(cluster);
    let outage = EndpointOutage(&cluster);
    Suite::new(|| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let location = format!("s3:{endpoint}/{BUCKET}/conformance{n}");
        S3Backend::open_with_env(
            &S3Location::parse(&location).unwrap(),
            &small_parts(),
            &TlsOptions::default(),
            &lookup,
        )
        .unwrap()
    })
    .outage(&outage)
    .run();
}

/// What S3 does beyond the contract: `create` makes a missing bucket (as
/// restic does), the region comes from the server, large objects go up in
/// parts, and a refused signature is permanent, not retried.
#[test]
fn bucket_creation_multipart_and_refused_credentials() {
    let cluster = require_garage!();
    // A bucket that does not exist yet: `create` makes it (restic does too).
    let url = format!("s3:{}/fresh-bucket/repo", cluster.endpoint(0));
    let backend = open_backend(&cluster, &url, &small_parts());
    assert_eq!(backend.region(), "garage");
    backend.create().unwrap();

    let id = "ab".repeat(32);
    let data = pseudo_random_bytes(7, 12 * 1024 * 1024 + 123);
    backend.write(FileType::Pack, &id, &data).unwrap(); // 3 parts
    assert_eq!(backend.read(FileType::Pack, &id).unwrap(), data);
    // A range across the first part boundary.
    assert_eq!(
        backend
            .read_range(FileType::Pack, &id, 5 * 1024 * 1024 - 10, 20)
            .unwrap(),
        &data[5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10]
    );

    // Wrong credentials fail at once, permanently, with the server's reason.
    let lookup = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("GK000000000000000000000000".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("00".repeat(32)),
        "AWS_DEFAULT_REGION" => Some("garage".to_string()),
        _ => None,
    };
    let denied = S3Backend::open_with_env(
        &S3Location::parse(&url).unwrap(),
        &S3Options::default(),
        &TlsOptions::default(),
        &lookup,
    )
    .unwrap();
    let err = denied.stat(FileType::Config, "config").unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    assert!(!err.is_transient(), "{err}");
}
