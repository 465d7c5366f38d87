//! restic writes, restix reads: repositories made by the real restic 0.14
//! (versions 1 and 2) must list, `ls`, `cat` and restore byte for byte
//! with restix.

use restix_tests::harness::{
    self, assert_trees_equal, backup_summary, find_snapshot, ls_paths, make_varied_tree,
    modify_tree, restored_path, s, CompareOptions, Oracle, Sandbox, Tool, TreeSpec,
};
use restix_tests::require_restic;
use serde_json::Value;

/// Fields of a snapshot object that must be identical in both programs'
/// `snapshots --json` (0.17+ adds `program_version`/`summary` only for
/// snapshots it wrote itself, so those are not compared).
const SNAPSHOT_FIELDS: [&str; 11] = [
    "id", "short_id", "time", "tree", "paths", "hostname", "username", "uid", "gid", "tags",
    "parent",
];

fn compare_snapshot_lists(ours: &Value, theirs: &[Value]) {
    let ours = ours
        .as_array()
        .expect("restix snapshots --json is an array");
    assert_eq!(
        ours.len(),
        theirs.len(),
        "snapshot count: restix {ours:#?}\nrestic {theirs:#?}"
    );
    for (o, t) in ours.iter().zip(theirs) {
        for field in SNAPSHOT_FIELDS {
            assert_eq!(
                o[field], t[field],
                "field {field:?} differs: restix {o}\nrestic {t}"
            );
        }
    }
}

fn restic_writes_restix_reads(version: u32) {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    let ref1 = sb.join("ref1");
    make_varied_tree(&src, &TreeSpec::default());
    make_varied_tree(&ref1, &TreeSpec::default());
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, version);

    let b1 = sb
        .restic([
            "-r",
            s(&repo),
            "backup",
            "--json",
            "--tag",
            "t1,t2",
            "--host",
            "oracle-host",
            s(&src),
        ])
        .ok();
    let id1 = backup_summary(&b1)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    modify_tree(&src);
    let b2 = sb
        .restic(["-r", s(&repo), "backup", "--json", s(&src)])
        .ok();
    let id2 = backup_summary(&b2)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let oracle = Oracle::new(&sb, &repo);
    let theirs = oracle.snapshots();
    let ours = sb
        .restix(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    compare_snapshot_lists(&ours, &theirs);
    let snap1 = find_snapshot(&theirs, &id1).clone();
    let snap2 = find_snapshot(&theirs, &id2).clone();
    assert_eq!(snap1["hostname"], "oracle-host");

    // Restore both snapshots with restix (by short ID and by full ID).
    // restic 0.14 stores non-UTF-8 symlink targets lossily, so accept U+FFFD.
    let opts = CompareOptions {
        lossy_symlink_targets: true,
        root_metadata: true,
        ..CompareOptions::default()
    };
    let out1 = sb.join("out1");
    sb.restix([
        "-r",
        s(&repo),
        "restore",
        snap1["short_id"].as_str().unwrap(),
        "--target",
        s(&out1),
    ])
    .ok();
    assert_trees_equal(&ref1, &restored_path(&out1, &src), &opts);
    let out2 = sb.join("out2");
    sb.restix([
        "-r",
        s(&repo),
        "restore",
        snap2["id"].as_str().unwrap(),
        "--target",
        s(&out2),
    ])
    .ok();
    assert_trees_equal(&src, &restored_path(&out2, &src), &opts);

    // `ls --json` lists the same paths as restic's.
    for snap in [&snap1, &snap2] {
        let id = snap["id"].as_str().unwrap();
        let ours = ls_paths(&sb.restix(["-r", s(&repo), "ls", "--json", id]).ok());
        let theirs = ls_paths(&sb.restic(["-r", s(&repo), "ls", "--json", id]).ok());
        assert!(!theirs.is_empty());
        assert_eq!(ours, theirs, "ls --json {id}: restix vs restic paths");
    }
    // Text `ls`: the same path lines (the header line differs by version).
    let text_paths = |run: harness::Run| -> Vec<String> {
        run.out()
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(str::to_string)
            .collect()
    };
    let id2_full = snap2["id"].as_str().unwrap();
    assert_eq!(
        text_paths(sb.restix(["-r", s(&repo), "ls", id2_full]).ok()),
        text_paths(sb.restic(["-r", s(&repo), "ls", id2_full]).ok()),
        "ls (text) path lines"
    );

    // `cat config` gives the same document.
    let ours = sb.restix(["-r", s(&repo), "cat", "config"]).ok().json();
    let theirs = sb.restic(["-r", s(&repo), "cat", "config"]).ok().json();
    assert_eq!(ours, theirs, "cat config");
    assert_eq!(ours["version"], version);
}

#[test]
fn restic_v1_repository_is_read_by_restix() {
    restic_writes_restix_reads(1);
}

#[test]
fn restic_v2_repository_is_read_by_restix() {
    restic_writes_restix_reads(2);
}

/// A snapshot of a relative path and of `.` (different tree layouts), and
/// `restore latest` with a file filter-free target.
#[test]
fn restix_restores_latest_and_dot_snapshots_made_by_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    let spec = TreeSpec {
        big_file: false,
        ..TreeSpec::default()
    };
    make_varied_tree(&src, &spec);
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2);
    sb.cmd(Tool::Restic)
        .args(["-r", s(&repo), "backup", "."])
        .current_dir(&src)
        .run()
        .ok();
    let out = sb.join("out");
    sb.restix(["-r", s(&repo), "restore", "latest", "--target", s(&out)])
        .ok();
    let opts = CompareOptions {
        lossy_symlink_targets: true,
        ..CompareOptions::default()
    };
    assert_trees_equal(&src, &out, &opts);
}
