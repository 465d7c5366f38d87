//! `--json` output that scripts (OpenNebula, Velero) parse: `backup --json`
//! lines and summary, `snapshots --json` (also for unknown IDs and empty
//! repositories), `ls --json`, `cat config`.

use std::fs;

use restix_tests::harness::{
    backup_summary, is_hex64, is_restix, pseudo_random_bytes, s, total_file_bytes, Oracle, Sandbox,
    Tool,
};
use restix_tests::require_restic;

fn small_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), b"hello world").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("sub/b.bin"), pseudo_random_bytes(7, 300_000)).unwrap();
    fs::write(root.join("<html>&amp.txt"), b"escaped name").unwrap();
}

#[test]
fn backup_json_ends_with_a_summary() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("data");
    small_tree(&src);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    let run = sb
        .restix(["-r", s(&repo), "backup", "--json", s(&src)])
        .ok();
    let text = run.out();
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(r#"{"message_type":"summary""#),
        "last line: {last:?}\n{}",
        run.describe()
    );
    // every line is a JSON object with a message_type
    for line in run.json_lines() {
        assert!(
            line["message_type"].is_string(),
            "line without message_type: {line}"
        );
    }
    let summary = backup_summary(&run);
    assert_eq!(
        summary["total_bytes_processed"].as_u64(),
        Some(total_file_bytes(&src)),
        "{summary}"
    );
    assert_eq!(summary["files_new"], 4, "{summary}");
    // dirs_new: restic 0.14 also counts the synthesised parent folders of
    // an absolute path, so it is not asserted here.
    assert_eq!(summary["total_files_processed"], 4, "{summary}");
    assert!(summary["data_blobs"].as_u64().unwrap() >= 3, "{summary}");
    assert!(summary["tree_blobs"].as_u64().unwrap() >= 2, "{summary}");
    assert!(
        summary["data_added"].as_u64().unwrap() > 300_000,
        "{summary}"
    );
    assert!(summary["total_duration"].is_number(), "{summary}");
    let id = summary["snapshot_id"].as_str().unwrap();
    if is_restix() {
        // restic >= 0.15 prints the full ID; 0.14 the 8-hex short one.
        assert!(is_hex64(id), "snapshot_id {id:?} is not 64 hex");
    } else {
        assert_eq!(id.len(), 8);
    }
    let snaps = Oracle::new(&sb, &repo).snapshots();
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0]["id"].as_str().unwrap().starts_with(id));

    // A second, unchanged backup reports everything unmodified.
    let run = sb
        .restix(["-r", s(&repo), "backup", "--json", s(&src)])
        .ok();
    let summary = backup_summary(&run);
    assert_eq!(summary["files_unmodified"], 4, "{summary}");
    assert_eq!(summary["data_blobs"], 0, "{summary}");
    // (tree_blobs/data_added may be > 0: the sandbox folder above the
    // source changed, so its synthesised parent tree is new.)
}

#[test]
fn backup_json_quiet_still_prints_the_summary() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("data");
    small_tree(&src);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 1);
    let run = sb
        .restix(["-r", s(&repo), "backup", "--json", "-q", s(&src)])
        .ok();
    let summary = backup_summary(&run);
    assert_eq!(summary["files_new"], 4);
}

#[test]
fn snapshots_json_unknown_id_and_empty_repository_give_empty_arrays() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2);
    let run = sb.restix(["-r", s(&repo), "snapshots", "--json"]).ok();
    assert_eq!(run.out().trim(), "[]", "{}", run.describe());

    let src = sb.join("data");
    small_tree(&src);
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    let run = sb
        .restix(["-r", s(&repo), "snapshots", "--json", "deadbeef"])
        .no_crash();
    assert_eq!(run.out().trim(), "[]", "{}", run.describe());
    if is_restix() {
        run.code_is(0);
    }
    let run = sb.restix(["-r", s(&repo), "snapshots", "--json"]).ok();
    assert_eq!(run.json().as_array().map(Vec::len), Some(1));
}

#[test]
fn snapshots_json_fields_and_escaping() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("data");
    small_tree(&src);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    sb.restix([
        "-r",
        s(&repo),
        "backup",
        "--tag",
        "a<b",
        "--tag",
        "x,y",
        "--host",
        "h&h",
        s(&src),
    ])
    .ok();
    let run = sb.restix(["-r", s(&repo), "snapshots", "--json"]).ok();
    let text = run.out();
    // Go's encoder escapes <, >, & (restic-format §12.1)
    assert!(
        text.contains(r#""h\u0026h""#) && text.contains(r#""a\u003cb""#),
        "HTML escaping: {text}"
    );
    let snaps = run.json();
    let snap = &snaps[0];
    assert_eq!(snap["hostname"], "h&h");
    assert_eq!(snap["tags"], serde_json::json!(["a<b", "x", "y"]));
    assert_eq!(snap["paths"], serde_json::json!([s(&src)]));
    let id = snap["id"].as_str().unwrap();
    assert!(is_hex64(id));
    assert_eq!(snap["short_id"].as_str().unwrap(), &id[..8]);
    assert!(is_hex64(snap["tree"].as_str().unwrap()));
    // identical to what restic prints for it, field by field
    let theirs = Oracle::new(&sb, &repo).snapshots();
    for field in [
        "id", "short_id", "time", "tree", "paths", "hostname", "username", "tags",
    ] {
        assert_eq!(snap[field], theirs[0][field], "field {field}");
    }
}

#[test]
fn ls_json_and_cat_config() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("data");
    small_tree(&src);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    sb.restix(["-r", s(&repo), "backup", s(&src)]).ok();
    let run = sb.restix(["-r", s(&repo), "ls", "--json", "latest"]).ok();
    let lines = run.json_lines();
    assert_eq!(lines[0]["struct_type"], "snapshot", "{}", run.describe());
    let file = lines
        .iter()
        .find(|l| l["name"] == "a.txt")
        .unwrap_or_else(|| panic!("a.txt not listed:\n{}", run.describe()));
    assert_eq!(file["type"], "file");
    assert_eq!(file["size"], 11);
    assert_eq!(file["path"], format!("{}/a.txt", s(&src)));
    assert_eq!(file["struct_type"], "node");
    let dir = lines.iter().find(|l| l["name"] == "sub").unwrap();
    assert_eq!(dir["type"], "dir");
    assert!(dir.get("size").is_none(), "dirs carry no size: {dir}");

    let config = sb.restix(["-r", s(&repo), "cat", "config"]).ok().json();
    assert_eq!(config["version"], 2);
    assert!(is_hex64(config["id"].as_str().unwrap()));
    let poly = config["chunker_polynomial"].as_str().unwrap();
    assert!(
        !poly.is_empty() && poly.bytes().all(|b| b.is_ascii_hexdigit()),
        "{config}"
    );
}

#[test]
fn group_keys_match_restics() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("data");
    small_tree(&src);
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2);
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    sb.restic(["-r", s(&repo), "backup", "--tag", "t1", s(&src)])
        .ok();
    for group in ["host", "tags", "paths", "host,tags"] {
        // restic prints groups in Go map order: compare them as a set.
        let keys = |run: restix_tests::harness::Run| {
            let mut keys: Vec<String> = run
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["group_key"].to_string())
                .collect();
            keys.sort();
            keys
        };
        let want = keys(
            sb.restic(["-r", s(&repo), "snapshots", "--json", "--group-by", group])
                .ok(),
        );
        let got = keys(
            sb.restix(["-r", s(&repo), "snapshots", "--json", "--group-by", group])
                .ok(),
        );
        // An untagged snapshot's key says "tags": null, as restic's nil slice.
        assert_eq!(got, want, "--group-by {group}");
    }
}
