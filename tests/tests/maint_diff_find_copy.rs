//! `diff`, `find` and `copy` against the real restic.

use std::collections::BTreeSet;

use restix_tests::harness::{
    assert_trees_equal, pseudo_random_bytes, restored_path, s, CompareOptions, Sandbox, Tool,
};
use restix_tests::require_restic;

/// A repository with two snapshots of a small tree that changes in between.
fn two_snapshots(sb: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf, Vec<String>) {
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::create_dir_all(src.join("gone/deep")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("dir/b.txt"), pseudo_random_bytes(1, 50_000)).unwrap();
    std::fs::write(src.join("dir/sub/c.log"), b"log").unwrap();
    std::fs::write(src.join("gone/deep/x"), b"x").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    std::fs::write(src.join("a.txt"), b"alpha changed").unwrap();
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    std::fs::create_dir_all(src.join("new")).unwrap();
    std::fs::write(src.join("new/n.txt"), b"new").unwrap();
    std::fs::remove_file(src.join("link")).unwrap();
    std::fs::write(src.join("link"), b"now a file").unwrap();
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    let snaps = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let mut list: Vec<(String, String)> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    list.sort();
    (repo, src, list.into_iter().map(|(_, id)| id).collect())
}

#[test]
fn diff_matches_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let (repo, _src, ids) = two_snapshots(&sb);
    let (a, b) = (&ids[0][..8], &ids[1][..8]);
    let expected = sb
        .restic(["-r", s(&repo), "diff", "--json", a, b])
        .ok()
        .json_lines();
    let actual = sb
        .restix(["-r", s(&repo), "diff", "--json", a, b])
        .ok()
        .json_lines();
    let changes = |v: &[serde_json::Value]| -> Vec<(String, String)> {
        v.iter()
            .filter(|l| l["message_type"] == "change")
            .map(|l| {
                (
                    l["path"].as_str().unwrap().to_string(),
                    l["modifier"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(changes(&expected), changes(&actual));
    let stats = |v: &[serde_json::Value]| {
        v.iter()
            .find(|l| l["message_type"] == "statistics")
            .cloned()
            .unwrap()
    };
    let (e, a2) = (stats(&expected), stats(&actual));
    for side in ["added", "removed"] {
        for field in ["files", "dirs", "others", "data_blobs", "tree_blobs"] {
            assert_eq!(
                e[side][field], a2[side][field],
                "{side}.{field}: restic {e} restix {a2}"
            );
        }
    }
    assert_eq!(e["changed_files"], a2["changed_files"]);
    let text = sb.restix(["-r", s(&repo), "diff", a, b]).ok().out();
    assert!(
        text.starts_with(&format!("comparing snapshot {a} to {b}:\n\n")),
        "{text}"
    );
    assert!(text.contains("M    /"), "{text}");
    assert!(text.contains("Files:"), "{text}");
}

#[test]
fn find_matches_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let (repo, _src, _ids) = two_snapshots(&sb);
    for pattern in ["*.txt", "dir", "/nothing", "c.log", "**/sub/*"] {
        let hits = |run: restix_tests::harness::Run| -> BTreeSet<(String, String)> {
            run.json()
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| {
                    let snap = g["snapshot"].as_str().unwrap().to_string();
                    g["matches"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(move |m| (snap.clone(), m["path"].as_str().unwrap().to_string()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let expected = hits(sb.restic(["-r", s(&repo), "find", "--json", pattern]).ok());
        let actual = hits(sb.restix(["-r", s(&repo), "find", "--json", pattern]).ok());
        assert_eq!(expected, actual, "pattern {pattern}");
    }
    let text = sb.restix(["-r", s(&repo), "find", "a.txt"]).ok().out();
    assert!(
        text.contains("Found matching entries in snapshot "),
        "{text}"
    );
}

#[test]
fn copy_between_repositories() {
    require_restic!();
    let sb = Sandbox::new();
    let (repo, src, ids) = two_snapshots(&sb);
    let dst = sb.join("dst");
    sb.cmd(Tool::Restic)
        .args(["init", "-r", s(&dst)])
        .env("RESTIC_PASSWORD", "anders")
        .run()
        .ok();
    let pw = sb.join("srcpw");
    std::fs::write(&pw, "geheim\n").unwrap();
    let run = sb
        .cmd(Tool::Restix)
        .args([
            "-r",
            s(&dst),
            "copy",
            "--from-repo",
            s(&repo),
            "--from-password-file",
            s(&pw),
        ])
        .env("RESTIC_PASSWORD", "anders")
        .run()
        .ok();
    assert!(
        run.out().contains("copied from source snapshot"),
        "{}",
        run.describe()
    );
    let restic_dst = |args: &[&str]| {
        sb.cmd(Tool::Restic)
            .args(["-r", s(&dst)])
            .args(args)
            .env("RESTIC_PASSWORD", "anders")
            .run()
            .ok()
    };
    restic_dst(&["check", "--read-data"]);
    let copied = restic_dst(&["snapshots", "--json"]).json();
    let originals: BTreeSet<String> = copied
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["original"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(originals, ids.iter().cloned().collect());
    let target = sb.join("restore");
    restic_dst(&["restore", "latest", "--target", s(&target)]);
    assert_trees_equal(
        &src,
        &restored_path(&target, &src),
        &CompareOptions::default(),
    );
    // A second copy finds everything copied already.
    let run = sb
        .cmd(Tool::Restix)
        .args([
            "-r",
            s(&dst),
            "copy",
            "--from-repo",
            s(&repo),
            "--from-password-file",
            s(&pw),
        ])
        .env("RESTIC_PASSWORD", "anders")
        .run()
        .ok();
    assert!(!run.out().contains("copy started"), "{}", run.describe());
    assert_eq!(
        restic_dst(&["snapshots", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
