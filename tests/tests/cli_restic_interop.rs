//! The commands and flags issue #17 added, checked against the real restic
//! 0.14 wherever 0.14 has the feature: restic reads, checks and restores
//! what `rewrite`, `migrate`, `recover` and `repair packs` leave behind;
//! backup's `--exclude-caches`, `--exclude-if-present` and `--iexclude`
//! select exactly the files restic selects; `cache --cleanup` removes
//! what restic's removes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use restix_tests::harness::{self, s, use_cheap_key, Sandbox};
use restix_tests::require_restic;

/// Files (relative paths) of a restored tree.
fn restored_files(root: &Path) -> BTreeSet<String> {
    harness::walk(root)
        .into_iter()
        .filter(|p| root.join(p).is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The paths `restic ls --json` lists for `snapshot`.
fn listed(sb: &Sandbox, tool: harness::Tool, repo: &Path, snapshot: &str) -> BTreeSet<String> {
    let run = sb.run(tool, ["-r", s(repo), "ls", "--json", snapshot]).ok();
    run.json_lines()
        .into_iter()
        .filter(|v| v["struct_type"] == "node")
        .filter_map(|v| v["path"].as_str().map(str::to_string))
        .collect()
}

/// The snapshot IDs restic lists, sorted: restic orders snapshots by time,
/// and those with the same time (a rewritten snapshot keeps its original's)
/// in whatever order they loaded.
fn snapshot_ids(sb: &Sandbox, repo: &Path) -> Vec<String> {
    let run = sb.restic(["-r", s(repo), "snapshots", "--json"]).ok();
    let mut ids: Vec<String> = run
        .json()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn small_tree(root: &Path) {
    for (path, content) in [
        ("keep/a.txt", "alpha\n"),
        ("keep/b.log", "log\n"),
        ("drop/secret.txt", "secret\n"),
        ("keep/deep/c.LOG", "upper\n"),
        ("top.txt", "top\n"),
    ] {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

#[test]
fn rewritten_snapshots_check_and_restore_with_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let data = sb.join("data");
    small_tree(&data);
    sb.restic(["init", "-r", s(&repo)]).ok();
    sb.restic(["-r", s(&repo), "backup", s(&data)]).ok();
    let original = snapshot_ids(&sb, &repo);
    let excludes = sb.join("excludes.txt");
    fs::write(&excludes, "# comment\n*.log\n").unwrap();
    let run = sb
        .restix([
            "-r",
            s(&repo),
            "rewrite",
            "--exclude",
            &format!("{}/drop", s(&data)),
            "--iexclude-file",
            s(&excludes),
            "--new-host",
            "rewritten-host",
        ])
        .ok();
    assert!(run.out().contains("excluding "), "{}", run.describe());
    assert!(
        run.out().contains("modified 1 snapshots"),
        "{}",
        run.describe()
    );
    sb.restic(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
    let snapshots = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let list = snapshots.as_array().unwrap();
    assert_eq!(list.len(), 2, "{snapshots}");
    let new = list
        .iter()
        .find(|v| v["original"].as_str() == Some(original[0].as_str()))
        .expect("a snapshot derived from the original");
    assert_eq!(new["hostname"], "rewritten-host");
    assert!(new["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "rewrite"));
    let target = sb.join("restored");
    sb.restic([
        "-r",
        s(&repo),
        "restore",
        new["id"].as_str().unwrap(),
        "--target",
        s(&target),
    ])
    .ok();
    let files = restored_files(&harness::restored_path(&target, &data));
    assert_eq!(
        files,
        ["keep/a.txt", "top.txt"]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        "excluded files are gone, the rest is there"
    );

    // --forget replaces the snapshot; a dry run changes nothing.
    let before = snapshot_ids(&sb, &repo);
    sb.restix(["-r", s(&repo), "rewrite", "-n", "--exclude", "*.txt"])
        .ok()
        .stdout_has("would modify");
    assert_eq!(snapshot_ids(&sb, &repo), before);
    sb.restix([
        "-r",
        s(&repo),
        "rewrite",
        "--forget",
        "--exclude",
        "*.txt",
        &original[0],
    ])
    .ok();
    let after = snapshot_ids(&sb, &repo);
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&original[0]));
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
}

#[test]
fn upgrade_repo_v2_of_a_restic_v1_repository() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let data = sb.join("data");
    small_tree(&data);
    sb.restic(["init", "--repository-version", "1", "-r", s(&repo)])
        .ok();
    sb.restic(["-r", s(&repo), "backup", s(&data)]).ok();
    sb.restix(["-r", s(&repo), "migrate"])
        .ok()
        .stdout_has("upgrade_repo_v2");
    let run = sb
        .restix(["-r", s(&repo), "migrate", "upgrade_repo_v2"])
        .ok();
    assert!(
        run.out().contains("checking repository integrity...")
            && run.out().contains("migration upgrade_repo_v2: success"),
        "{}",
        run.describe()
    );
    let config = sb.restic(["-r", s(&repo), "cat", "config"]).ok().json();
    assert_eq!(config["version"], 2, "{config}");
    sb.restic(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
    // restic now writes compressed data into it, and restix reads it.
    sb.restic(["-r", s(&repo), "backup", s(&data), "--compression", "max"])
        .ok();
    let target = sb.join("restored");
    sb.restix(["-r", s(&repo), "restore", "latest", "--target", s(&target)])
        .ok();
    harness::assert_trees_equal(
        &data,
        &harness::restored_path(&target, &data),
        &harness::CompareOptions::default(),
    );
    // A second time: refused, with --force explained.
    sb.restix(["-r", s(&repo), "migrate", "upgrade_repo_v2"])
        .ok()
        .stderr_has("repository is already upgraded to version 2");
}

#[test]
fn recover_makes_a_snapshot_restic_restores() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let data = sb.join("data");
    small_tree(&data);
    sb.restic(["init", "-r", s(&repo)]).ok();
    sb.restic(["-r", s(&repo), "backup", s(&data)]).ok();
    let ids = snapshot_ids(&sb, &repo);
    // Forget without prune: the trees stay, no snapshot refers to them.
    sb.restic(["-r", s(&repo), "forget", &ids[0]]).ok();
    let run = sb.restix(["-r", s(&repo), "recover"]).ok();
    assert!(
        run.out().contains("found 1 unreferenced roots"),
        "{}",
        run.describe()
    );
    let snapshots = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let recovered = &snapshots[0];
    assert_eq!(recovered["paths"][0], "/recover");
    assert_eq!(recovered["tags"][0], "recovered");
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    let target = sb.join("restored");
    sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&target)])
        .ok();
    // One folder per root, named by its short ID, holding the backed-up tree.
    let roots: Vec<PathBuf> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = &roots[0];
    let restored = harness::restored_path(root, &data);
    assert_eq!(
        fs::read_to_string(restored.join("keep/a.txt")).unwrap(),
        "alpha\n"
    );
    // Nothing left to recover.
    sb.restix(["-r", s(&repo), "recover"])
        .ok()
        .stdout_has("found 0 unreferenced roots");
}

/// The pack holding the data blob of `file` (per restic's index).
fn pack_of(sb: &Sandbox, repo: &Path, snapshot: &str, file: &str) -> (String, u64, u64) {
    let tree = sb
        .restic(["-r", s(repo), "cat", "snapshot", snapshot])
        .ok()
        .json();
    let mut tree_id = tree["tree"].as_str().unwrap().to_string();
    let mut node = serde_json::Value::Null;
    for part in file.trim_start_matches('/').split('/') {
        let t = sb
            .restic(["-r", s(repo), "cat", "blob", &tree_id])
            .ok()
            .json();
        node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == part)
            .unwrap_or_else(|| panic!("{part} in {t}"))
            .clone();
        if let Some(sub) = node["subtree"].as_str() {
            tree_id = sub.to_string();
        }
    }
    let blob = node["content"][0].as_str().unwrap().to_string();
    let found = sb
        .restic([
            "-r",
            s(repo),
            "find",
            "--json",
            "--blob",
            &blob,
            "--show-pack-id",
        ])
        .ok();
    // The index tells where it is.
    let index = sb.restic(["-r", s(repo), "list", "index"]).ok().out();
    for id in index.lines() {
        let idx = sb.restic(["-r", s(repo), "cat", "index", id]).ok().json();
        for pack in idx["packs"].as_array().unwrap() {
            for b in pack["blobs"].as_array().unwrap() {
                if b["id"] == blob.as_str() {
                    return (
                        pack["id"].as_str().unwrap().to_string(),
                        b["offset"].as_u64().unwrap(),
                        b["length"].as_u64().unwrap(),
                    );
                }
            }
        }
    }
    panic!("blob {blob} not in the index: {}", found.describe());
}

#[test]
fn repair_packs_salvages_the_intact_blobs() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    let data = sb.join("data");
    small_tree(&data);
    sb.restic(["init", "-r", s(&repo)]).ok();
    sb.restic(["-r", s(&repo), "backup", s(&data)]).ok();
    let id = snapshot_ids(&sb, &repo)[0].clone();
    let file = format!("{}/keep/a.txt", s(&data));
    let (pack, offset, _) = pack_of(&sb, &repo, &id, &file);
    let pack_path = repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&pack_path).unwrap();
    let at = usize::try_from(offset).unwrap() + 20;
    bytes[at] ^= 0x55;
    let mut perms = fs::metadata(&pack_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&pack_path, perms).unwrap();
    fs::write(&pack_path, &bytes).unwrap();
    sb.restic(["-r", s(&repo), "check", "--read-data"]).fails();

    let work = sb.join("work");
    fs::create_dir_all(&work).unwrap();
    let run = sb
        .cmd(harness::Tool::Restix)
        .args(["-r", s(&repo), "repair", "packs", &pack])
        .current_dir(&work)
        .run()
        .ok();
    assert!(
        run.err().contains("failed to load blob"),
        "{}",
        run.describe()
    );
    assert!(
        work.join(format!("pack-{pack}")).is_file(),
        "backup copy of the pack"
    );
    assert!(!pack_path.exists(), "the damaged pack is gone");
    // Only the damaged blob is missing now; repair snapshots drops it.
    sb.restix(["-r", s(&repo), "repair", "snapshots", "--forget"])
        .ok();
    sb.restic(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
    let target = sb.join("restored");
    sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&target)])
        .ok();
    let restored = harness::restored_path(&target, &data);
    for kept in [
        "keep/b.log",
        "drop/secret.txt",
        "keep/deep/c.LOG",
        "top.txt",
    ] {
        assert_eq!(
            fs::read(restored.join(kept)).unwrap(),
            fs::read(data.join(kept)).unwrap(),
            "{kept} salvaged"
        );
    }
    assert_eq!(fs::metadata(restored.join("keep/a.txt")).unwrap().len(), 0);
}

/// A tree with cache folders and marker files of every kind.
fn tagged_tree(root: &Path) {
    let write = |path: &str, content: &[u8]| {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    };
    write("plain/file.txt", b"x");
    write("plain/Photo.JPG", b"jpg");
    write("plain/photo.jpg", b"jpg2");
    write(
        "cache/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write("cache/data.bin", b"cached");
    write("cache/sub/more.bin", b"more");
    write("fakecache/CACHEDIR.TAG", b"Signature: wrong\n");
    write("fakecache/data.bin", b"kept");
    write("marked/.nobackup", b"");
    write("marked/inner/file", b"gone");
    write("marked/file", b"gone");
    write("headered/.marker", b"HEADER and more");
    write("headered/file", b"gone");
    write("badheader/.marker", b"OTHER");
    write("badheader/file", b"kept");
    write("nested/deeper/.nobackup", b"");
    write("nested/deeper/x", b"gone");
    write("nested/y", b"kept");
}

#[test]
fn exclude_flags_select_what_restic_selects() {
    require_restic!();
    let sb = Sandbox::new();
    let data = sb.join("data");
    tagged_tree(&data);
    let flags = [
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-if-present",
        ".marker:HEADER",
        "--iexclude",
        "*.jpg",
    ];
    let mut lists = Vec::new();
    for tool in [harness::Tool::Restic, harness::Tool::Restix] {
        let repo = sb.join(format!("repo-{tool:?}"));
        sb.run(tool, ["init", "-r", s(&repo)]).ok();
        if tool == harness::Tool::Restix {
            use_cheap_key(&repo);
        }
        let mut args = vec!["-r", s(&repo), "backup", s(&data)];
        args.extend(flags);
        sb.run(tool, &args).ok();
        lists.push(listed(&sb, tool, &repo, "latest"));
    }
    assert_eq!(
        lists[0], lists[1],
        "restic (left) and restix (right) select the same files"
    );
    let restix = &lists[1];
    let has = |p: &str| restix.contains(&format!("{}/{p}", s(&data)));
    assert!(has("cache/CACHEDIR.TAG") && !has("cache/data.bin") && !has("cache/sub"));
    assert!(has("fakecache/data.bin") && has("badheader/file") && has("nested/y"));
    assert!(!has("marked/file") && !has("headered/file") && !has("nested/deeper/x"));
    assert!(!has("plain/Photo.JPG") && has("plain/file.txt"));

    // --dry-run stores nothing; --skip-if-unchanged skips an identical snapshot.
    let repo = sb.join("repo-Restix");
    let before = snapshot_ids(&sb, &repo);
    sb.restix(["-r", s(&repo), "backup", "-n", s(&data)])
        .ok()
        .stdout_has("Would add to the repository");
    assert_eq!(snapshot_ids(&sb, &repo), before);
    let mut args = vec!["-r", s(&repo), "backup", s(&data), "--skip-if-unchanged"];
    args.extend(flags);
    sb.restix(&args)
        .ok()
        .stdout_has("skipped creating snapshot");
    assert_eq!(snapshot_ids(&sb, &repo), before);
}

#[test]
fn cache_cleanup_removes_what_restic_removes() {
    require_restic!();
    let sb = Sandbox::new();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let set_old = |p: &Path| {
        fs::File::open(p)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
    };
    let make = |base: &Path| {
        let old_id = "a".repeat(64);
        let new_id = "b".repeat(64);
        for dir in [
            base.join(&old_id).join("data/00"),
            base.join(&new_id).join("snapshots"),
            base.join("restic-check-cache-1234"),
            base.join("unrelated"),
            base.join("restix-image").join(&old_id),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::create_dir_all(base.join("restix-index")).unwrap();
        fs::write(
            base.join("restix-index").join(format!("{old_id}.index")),
            b"x",
        )
        .unwrap();
        fs::write(
            base.join("restix-index").join(format!("{new_id}.index")),
            b"x",
        )
        .unwrap();
        for p in [
            base.join(&old_id),
            base.join("restic-check-cache-1234"),
            base.join("unrelated"),
            base.join("restix-image").join(&old_id),
            base.join("restix-index").join(format!("{old_id}.index")),
        ] {
            set_old(&p);
        }
    };
    let names = |base: &Path| -> BTreeSet<String> {
        harness::walk(base)
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    };
    let with_restic = sb.join("cache-restic");
    let with_restix = sb.join("cache-restix");
    make(&with_restic);
    make(&with_restix);
    let listing = sb.restix(["--cache-dir", s(&with_restix), "cache"]).ok();
    assert!(
        listing.out().contains("aaaaaaaaaa") && listing.out().contains("yes"),
        "{}",
        listing.describe()
    );
    sb.restic(["--cache-dir", s(&with_restic), "cache", "--cleanup"])
        .ok();
    sb.restix(["--cache-dir", s(&with_restix), "cache", "--cleanup"])
        .ok();
    let left_by_restic = names(&with_restic);
    let left_by_restix: BTreeSet<String> = names(&with_restix)
        .into_iter()
        .filter(|n| !n.starts_with("restix-"))
        .collect();
    let restic_view: BTreeSet<String> = left_by_restic
        .into_iter()
        .filter(|n| !n.starts_with("restix-"))
        .collect();
    assert_eq!(
        restic_view, left_by_restix,
        "restic's folders: the same removed"
    );
    // restix's own entries of the old repository are gone, the new one's kept.
    assert!(!with_restix
        .join("restix-image")
        .join("a".repeat(64))
        .exists());
    assert!(!with_restix
        .join("restix-index")
        .join(format!("{}.index", "a".repeat(64)))
        .exists());
    assert!(with_restix
        .join("restix-index")
        .join(format!("{}.index", "b".repeat(64)))
        .exists());
}
