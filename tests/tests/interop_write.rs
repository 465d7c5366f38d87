//! restix writes, restic reads: repositories made by restix (versions 1
//! and 2, two snapshots) must pass `restic check --read-data`, list, `cat`
//! and restore byte for byte with the real restic 0.14.

use std::collections::BTreeSet;

use restix_tests::harness::{
    assert_trees_equal, backup_summary, find_snapshot, is_hex64, is_restix, ls_paths,
    make_varied_tree, modify_tree, restored_path, s, walk, CompareOptions, Oracle, Sandbox, Tool,
    TreeSpec,
};
use restix_tests::require_restic;

fn restix_writes_restic_reads(version: u32) {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    let ref1 = sb.join("ref1");
    make_varied_tree(&src, &TreeSpec::default());
    make_varied_tree(&ref1, &TreeSpec::default());
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, version);

    let b1 = sb
        .restix([
            "-r",
            s(&repo),
            "backup",
            "--json",
            "--tag",
            "first",
            s(&src),
        ])
        .ok();
    let sum1 = backup_summary(&b1);
    modify_tree(&src);
    let b2 = sb
        .restix(["-r", s(&repo), "backup", "--json", s(&src)])
        .ok();
    let sum2 = backup_summary(&b2);
    let id1 = sum1["snapshot_id"].as_str().unwrap().to_string();
    let id2 = sum2["snapshot_id"].as_str().unwrap().to_string();
    if is_restix() {
        assert!(is_hex64(&id1) && is_hex64(&id2), "full IDs: {id1} {id2}");
    }
    // The second run saw the changes made by modify_tree.
    assert_eq!(sum2["files_new"], 3, "second summary: {sum2}");
    assert!(
        sum2["files_changed"].as_u64().unwrap() >= 3,
        "second summary: {sum2}"
    );
    assert!(
        sum2["files_unmodified"].as_u64().unwrap() >= 30,
        "second summary: {sum2}"
    );

    // The oracle checks everything, reading all data.
    sb.restic(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");

    let oracle = Oracle::new(&sb, &repo);
    let snaps = oracle.snapshots();
    assert_eq!(snaps.len(), 2, "restic snapshots --json: {snaps:#?}");
    let snap1 = find_snapshot(&snaps, &id1).clone();
    let snap2 = find_snapshot(&snaps, &id2).clone();
    assert_eq!(snap1["paths"], serde_json::json!([s(&src)]));
    assert_eq!(snap1["tags"], serde_json::json!(["first"]));
    assert_eq!(
        snap2["parent"], snap1["id"],
        "the second snapshot names the first as parent"
    );
    assert!(snap1["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    // The stored snapshot file parses for restic too.
    let stored = oracle.snapshot_file(snap2["id"].as_str().unwrap());
    assert_eq!(stored["tree"], snap2["tree"]);

    // restic restores both snapshots byte for byte (0.14 restores
    // non-UTF-8 symlink targets lossily: it predates linktarget_raw).
    let opts = CompareOptions {
        lossy_symlink_targets: true,
        root_metadata: true,
        ..CompareOptions::default()
    };
    for (snap, expected, name) in [(&snap1, &ref1, "out1"), (&snap2, &src, "out2")] {
        let out = sb.join(name);
        sb.restic([
            "-r",
            s(&repo),
            "restore",
            snap["id"].as_str().unwrap(),
            "--target",
            s(&out),
        ])
        .ok();
        assert_trees_equal(expected, &restored_path(&out, &src), &opts);
    }

    // cat config: same document from both, right version.
    let theirs = sb.restic(["-r", s(&repo), "cat", "config"]).ok().json();
    let ours = sb.restix(["-r", s(&repo), "cat", "config"]).ok().json();
    assert_eq!(theirs, ours);
    assert_eq!(theirs["version"], version);
    assert!(is_hex64(theirs["id"].as_str().unwrap()));
    assert!(theirs["chunker_polynomial"].as_str().is_some());

    // restic ls lists every entry of the source (plus the parents of src).
    let id = snap2["id"].as_str().unwrap();
    let listed = ls_paths(&sb.restic(["-r", s(&repo), "ls", "--json", id]).ok());
    let ancestors = src.ancestors().count() - 1; // "/tmp", "/tmp/x", "/tmp/x/src"
    assert_eq!(
        listed.len(),
        walk(&src).len() + ancestors,
        "restic ls --json entries"
    );
    let ours: BTreeSet<String> = ls_paths(&sb.restix(["-r", s(&repo), "ls", "--json", id]).ok());
    assert_eq!(ours, listed, "ls --json paths: restix vs restic");

    // restic list works on every file type restix wrote.
    for what in ["packs", "index", "snapshots", "keys"] {
        assert!(!oracle.list(what).is_empty(), "restic list {what} is empty");
    }
    assert!(oracle.blobs().iter().any(|(t, _)| t == "tree"));
}

#[test]
fn restix_v1_repository_is_read_by_restic() {
    restix_writes_restic_reads(1);
}

#[test]
fn restix_v2_repository_is_read_by_restic() {
    restix_writes_restic_reads(2);
}

/// A backup of `.` and of a file given by relative path.
#[test]
fn restix_dot_backup_restores_with_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(
        &src,
        &TreeSpec {
            big_file: false,
            ..TreeSpec::default()
        },
    );
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    sb.cmd(Tool::Restix)
        .args(["-r", s(&repo), "backup", "."])
        .current_dir(&src)
        .run()
        .ok();
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    let out = sb.join("out");
    sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&out)])
        .ok();
    assert_trees_equal(
        &src,
        &out,
        &CompareOptions {
            lossy_symlink_targets: true,
            ..CompareOptions::default()
        },
    );
}
