//! The same data backed up by both programs into one repository: the second
//! program must add no data blobs (same chunker, same blob IDs) and produce
//! the same tree IDs (same node JSON, restic-format §11) for the unchanged
//! folder. Both run with `TZ=UTC` (the harness sets it); the source is not
//! touched between the runs, so ctime/mtime/inode are identical.
//!
//! The tree has no non-UTF-8 symlink target: restic 0.14 stores those
//! lossily while restix (like restic >= 0.16) adds `linktarget_raw`, so
//! their tree IDs legitimately differ.

use std::collections::BTreeSet;

use restix_tests::harness::{
    backup_summary, find_snapshot, make_varied_tree, s, Oracle, Run, Sandbox, Tool, TreeSpec,
};
use restix_tests::require_restic;

fn spec() -> TreeSpec {
    TreeSpec {
        non_utf8_symlink_target: false,
        ..TreeSpec::default()
    }
}

fn data_blobs(blobs: &BTreeSet<(String, String)>) -> BTreeSet<String> {
    blobs
        .iter()
        .filter(|(t, _)| t == "data")
        .map(|(_, id)| id.clone())
        .collect()
}

/// Runs `backup --json . [extra]` in `src` with `tool` and returns the run.
fn backup_dot(
    sb: &Sandbox,
    tool: Tool,
    repo: &std::path::Path,
    src: &std::path::Path,
    extra: &[&str],
) -> Run {
    sb.cmd(tool)
        .args(["-r", s(repo), "backup", "--json"])
        .args(extra)
        .arg(".")
        .current_dir(src)
        .run()
        .ok()
}

/// Asserts that snapshots `first` and `second` have the same root tree, and
/// explains the first differing node otherwise.
fn assert_same_tree(oracle: &Oracle, first: &str, second: &str, what: &str) {
    let snaps = oracle.snapshots();
    let a = find_snapshot(&snaps, first)["tree"]
        .as_str()
        .unwrap()
        .to_string();
    let b = find_snapshot(&snaps, second)["tree"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        a == b,
        "{what}: root tree IDs differ ({a} vs {b}); A = first snapshot, B = second:\n{}",
        oracle.explain_tree_difference(&a, &b)
    );
}

fn first_then_second(version: u32, first: Tool, second: Tool) {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(&src, &spec());
    let repo = sb.join("repo");
    sb.init(first, &repo, version);
    let oracle = Oracle::new(&sb, &repo);

    let b1 = backup_dot(&sb, first, &repo, &src, &[]);
    let id1 = backup_summary(&b1)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = oracle.blobs();

    // --force: read and chunk every file again, no parent shortcuts.
    let b2 = backup_dot(&sb, second, &repo, &src, &["--force"]);
    let sum2 = backup_summary(&b2);
    let id2 = sum2["snapshot_id"].as_str().unwrap().to_string();
    let after = oracle.blobs();
    assert_eq!(
        data_blobs(&before),
        data_blobs(&after),
        "the second backup (--force) added or lost data blobs"
    );
    assert_eq!(
        sum2["data_blobs"], 0,
        "summary of the second backup: {sum2}"
    );
    assert_same_tree(&oracle, &id1, &id2, "forced second backup");
    assert_eq!(
        sum2["tree_blobs"], 0,
        "summary of the second backup: {sum2}"
    );
    assert_eq!(before, after, "no new blobs of any type");

    // With a parent (the first snapshot, same host and path).
    let b3 = backup_dot(&sb, second, &repo, &src, &[]);
    let sum3 = backup_summary(&b3);
    let id3 = sum3["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(sum3["data_blobs"], 0, "summary of the third backup: {sum3}");
    assert_eq!(sum3["files_new"], 0, "summary of the third backup: {sum3}");
    assert_eq!(
        sum3["files_changed"], 0,
        "summary of the third backup: {sum3}"
    );
    assert_same_tree(&oracle, &id1, &id3, "second backup with parent");
    assert_eq!(
        before,
        oracle.blobs(),
        "no new blobs after the third backup"
    );
}

#[test]
fn restix_adds_nothing_to_a_restic_v2_backup_of_the_same_folder() {
    first_then_second(2, Tool::Restic, Tool::Restix);
}

#[test]
fn restix_adds_nothing_to_a_restic_v1_backup_of_the_same_folder() {
    first_then_second(1, Tool::Restic, Tool::Restix);
}

#[test]
fn restic_adds_nothing_to_a_restix_v2_backup_of_the_same_folder() {
    first_then_second(2, Tool::Restix, Tool::Restic);
}
