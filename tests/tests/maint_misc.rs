//! `stats`, `key`, `tag`, `repair index`: restix against the real restic.

use restix_tests::harness::{pseudo_random_bytes, s, Sandbox, Tool};
use restix_tests::require_restic;

fn small_repo(sb: &Sandbox) -> std::path::PathBuf {
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("a"), pseudo_random_bytes(1, 100_000)).unwrap();
    std::fs::write(src.join("dir/b"), pseudo_random_bytes(2, 3000)).unwrap();
    std::fs::write(src.join("dir/same"), pseudo_random_bytes(2, 3000)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    sb.restic(["-r", s(&repo), "backup", "--tag", "t1", s(&src)])
        .ok();
    std::fs::write(src.join("c"), pseudo_random_bytes(3, 5000)).unwrap();
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    repo
}

#[test]
fn stats_match_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let empty = sb.join("empty");
    sb.init(Tool::Restic, &empty, 2).ok();
    let j = sb.restix(["-r", s(&empty), "stats", "--json"]).ok().json();
    assert_eq!(
        j,
        serde_json::json!({"total_size": 0, "snapshots_count": 0})
    );

    let repo = small_repo(&sb);
    for mode in [
        "restore-size",
        "files-by-contents",
        "raw-data",
        "blobs-per-file",
    ] {
        let expected = sb
            .restic(["-r", s(&repo), "stats", "--json", "--mode", mode])
            .ok()
            .json();
        let actual = sb
            .restix(["-r", s(&repo), "stats", "--json", "--mode", mode])
            .ok()
            .json();
        for field in ["total_size", "total_blob_count", "snapshots_count"] {
            assert_eq!(
                expected.get(field),
                actual.get(field),
                "{mode} {field}: restic {expected} restix {actual}"
            );
        }
        let files = |v: &serde_json::Value| {
            v.get("total_file_count")
                .and_then(|n| n.as_u64())
                .unwrap_or(0)
        };
        assert_eq!(
            files(&expected),
            files(&actual),
            "{mode}: restic {expected} restix {actual}"
        );
    }
    let text = sb.restix(["-r", s(&repo), "stats"]).ok().out();
    assert!(text.contains("Stats in restore-size mode:"), "{text}");
    assert!(text.contains("     Snapshots processed:  2"), "{text}");
    sb.restix(["-r", s(&repo), "stats", "--mode", "bogus"])
        .fails()
        .stderr_has("unknown counting mode");
}

#[test]
fn key_management() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = small_repo(&sb);
    let pw = sb.join("pw2");
    std::fs::write(&pw, "zweites\n").unwrap();
    let run = sb
        .restix([
            "-r",
            s(&repo),
            "key",
            "add",
            "--new-password-file",
            s(&pw),
            "--user",
            "u2",
            "--host",
            "h2",
        ])
        .ok();
    assert!(
        run.out().contains("saved new key with ID "),
        "{}",
        run.describe()
    );
    // restic opens the repository with the new password.
    sb.cmd(Tool::Restic)
        .args(["-r", s(&repo), "snapshots"])
        .env("RESTIC_PASSWORD", "zweites")
        .run()
        .ok();
    let list = sb
        .restix(["-r", s(&repo), "key", "list", "--json"])
        .ok()
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|k| k["current"] == true).count(), 1);
    let other = list.iter().find(|k| k["current"] == false).unwrap();
    assert_eq!(other["userName"], "u2");
    let current = list.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    sb.restix(["-r", s(&repo), "key", "remove", &current[..8]])
        .fails()
        .stderr_has("refusing to remove key currently used to access repository");
    let other_id = other["id"].as_str().unwrap().to_string();
    sb.restix(["-r", s(&repo), "key", "remove", &other_id]).ok();
    assert_eq!(
        sb.restic(["-r", s(&repo), "key", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let text = sb.restix(["-r", s(&repo), "key", "list"]).ok().out();
    assert!(text.starts_with(" ID "), "{text}");
    assert!(text.contains(&format!("*{}", &current[..8])), "{text}");
}

#[test]
fn tag_rewrites_snapshots() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = small_repo(&sb);
    let before = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let run = sb
        .restix([
            "-r",
            s(&repo),
            "tag",
            "--tag",
            "t1",
            "--add",
            "x,y",
            "--remove",
            "t1",
        ])
        .ok();
    assert!(
        run.out().contains("modified 1 snapshots"),
        "{}",
        run.describe()
    );
    let after = sb
        .restic(["-r", s(&repo), "snapshots", "--json", "--tag", "x"])
        .ok()
        .json();
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["tags"], serde_json::json!(["x", "y"]));
    let old = before
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tags"] == serde_json::json!(["t1"]))
        .unwrap();
    assert_eq!(after[0]["original"], old["id"]);
    sb.restix(["-r", s(&repo), "tag", "--add", "x", "--tag", "x"])
        .ok()
        .stdout_has("no snapshots were modified");
    sb.restix(["-r", s(&repo), "tag"])
        .fails()
        .stderr_has("nothing to do");
    sb.restic(["-r", s(&repo), "check"]).ok();
}

#[test]
fn rebuild_index_from_packs() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = small_repo(&sb);
    for f in std::fs::read_dir(repo.join("index")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    sb.restic(["-r", s(&repo), "check"]).fails();
    sb.restix(["-r", s(&repo), "rebuild-index"])
        .ok()
        .stdout_has("done");
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    sb.restix(["-r", s(&repo), "repair", "index", "--read-all-packs"])
        .no_crash();
    sb.restix(["-r", s(&repo), "repair", "index"]).ok();
    sb.restic(["-r", s(&repo), "check"]).ok();
}
