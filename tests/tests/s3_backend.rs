//! The S3 backend against a real distributed object store: a private 3-node
//! Garage cluster with replication factor 3 (tests/src/garage.rs).
//!
//! 1. restix init/backup/restore/forget --prune/check on the bucket; one node
//!    is stopped and backup + restore still work (quorum 2 of 3); it is
//!    restarted and the repository checks clean.
//! 2. The real restic 0.14 checks (`--read-data`) and restores what restix
//!    wrote to the bucket, and restix does the same with what restic wrote.
//! 3. The backend library on its own: multipart uploads, ranges, listing,
//!    removal, and `create` making a missing bucket like restic does.

use std::fs;
use std::path::Path;

use restix_engine::backend::{Backend, FileType};
use restix_s3::{S3Backend, S3Location, S3Options, TlsOptions};
use restix_tests::garage::GarageCluster;
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

fn open_backend(cluster: &GarageCluster, location: &str, options: &S3Options) -> S3Backend {
    let env: Vec<(&str, String)> = cluster.env();
    let lookup = move |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    };
    S3Backend::open_with_env(
        &S3Location::parse(location).unwrap(),
        options,
        &TlsOptions::default(),
        &lookup,
    )
    .unwrap()
}

#[test]
fn backend_multipart_ranges_listing_and_bucket_creation() {
    let cluster = require_garage!();
    let options = S3Options {
        multipart_threshold: 6 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..S3Options::default()
    };
    // A bucket that does not exist yet: `create` makes it (restic does too).
    let url = format!("s3:{}/fresh-bucket/repo", cluster.endpoint(0));
    let backend = open_backend(&cluster, &url, &options);
    assert_eq!(backend.region(), "garage");
    backend.create().unwrap();
    assert!(backend.list(FileType::Config).unwrap().is_empty());
    assert!(backend
        .read(FileType::Config, "config")
        .unwrap_err()
        .is_not_found());

    let id = "ab".repeat(32);
    let data = pseudo_random_bytes(7, 12 * 1024 * 1024 + 123);
    backend.write(FileType::Pack, &id, &data).unwrap(); // 3 parts
    let small_id = "cd".repeat(32);
    backend.write(FileType::Pack, &small_id, b"small").unwrap(); // one PUT
    backend.write(FileType::Config, "config", b"cfg").unwrap();
    backend.write(FileType::Snapshot, &id, b"snap").unwrap();

    assert_eq!(backend.read(FileType::Pack, &id).unwrap(), data);
    assert_eq!(
        backend
            .read_range(FileType::Pack, &id, 5 * 1024 * 1024 - 10, 20)
            .unwrap(),
        &data[5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10]
    );
    let err = backend
        .read_range(FileType::Pack, &small_id, 3, 10)
        .unwrap_err();
    assert!(
        matches!(err, restix_engine::backend::BackendError::ShortRead { .. }),
        "{err}"
    );
    assert_eq!(
        backend.stat(FileType::Pack, &id).unwrap().size,
        data.len() as u64
    );

    let mut packs: Vec<(String, u64)> = backend
        .list(FileType::Pack)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    packs.sort();
    assert_eq!(
        packs,
        vec![(id.clone(), data.len() as u64), (small_id.clone(), 5)]
    );
    assert_eq!(backend.list(FileType::Config).unwrap().len(), 1);
    assert_eq!(backend.list(FileType::Snapshot).unwrap().len(), 1);
    assert!(backend.list(FileType::Index).unwrap().is_empty());
    // init on an existing repository refuses.
    assert!(matches!(
        backend.create().unwrap_err(),
        restix_engine::backend::BackendError::AlreadyExists { .. }
    ));

    backend.remove(FileType::Pack, &id).unwrap();
    assert!(backend
        .stat(FileType::Pack, &id)
        .unwrap_err()
        .is_not_found());
    assert_eq!(backend.list(FileType::Pack).unwrap().len(), 1);

    // Wrong credentials fail at once, with the server's reason.
    let bad = S3Options {
        retries: 0,
        ..S3Options::default()
    };
    let lookup = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("GK000000000000000000000000".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("00".repeat(32)),
        "AWS_DEFAULT_REGION" => Some("garage".to_string()),
        _ => None,
    };
    let denied = S3Backend::open_with_env(
        &S3Location::parse(&url).unwrap(),
        &bad,
        &TlsOptions::default(),
        &lookup,
    )
    .unwrap();
    let err = denied.stat(FileType::Config, "config").unwrap_err();
    assert!(!err.is_not_found(), "{err}");
}
