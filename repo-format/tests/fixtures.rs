//! Decodes every upstream fixture repository (spec: restic-format §17.3):
//! key files, config, index, snapshots, pack headers, every blob's MAC and
//! SHA-256, and re-encodes every tree blob to the identical tree ID.
//!
//! The fixtures folder comes from `RESTIX_FIXTURES` (default
//! `../shared/fixtures` relative to the workspace root); the test prints a
//! note and passes when it is absent.

mod common;

use std::path::{Path, PathBuf};

use common::{check_repo, find_repo, untar};

const REPOS: &[&str] = &[
    "small-repo",
    "repo-layout-default",
    "duplicate-packs-in-index-test-repo",
    "repo-data-missing",
    "repo-duplicates",
    "repo-index-missing",
    "repo-index-missing-blob",
    "repo-obsolete-index",
    "repo-unreferenced-data",
    "repo-unused-data-missing",
];

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("RESTIX_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

#[test]
fn upstream_fixture_repositories() {
    let dir = fixtures_dir().join("restic-upstream");
    if !dir.is_dir() {
        return restix_testkit::skip(
            "fixtures",
            &format!("set RESTIX_FIXTURES or provide {}", dir.display()),
        );
    }
    let mut total_trees = 0;
    for name in REPOS {
        let tarball = dir.join(format!("{name}.tar.gz"));
        if !tarball.exists() {
            return restix_testkit::skip(
                "fixtures",
                &format!("{} is missing from the fixtures", tarball.display()),
            );
        }
        let tmp = untar(&tarball, name);
        let stats = check_repo(&find_repo(&tmp.0), 1);
        println!("{name}: {stats:?}");
        assert!(stats.packs > 0 || *name == "repo-data-missing");
        total_trees += stats.trees;
    }
    assert!(
        total_trees > 10,
        "expected many tree blobs, got {total_trees}"
    );
}
