//! The mapped index cache (docs/index.md) is never trusted: whatever it
//! holds (a flipped byte, a truncated segment, another repository's cache,
//! a cache made stale by prune), backups still deduplicate correctly,
//! restores give back exactly what was backed up, and restic 0.14 finds
//! the repository clean with `check --read-data`.

use std::fs;
use std::path::{Path, PathBuf};

use restix_tests::harness::{assert_trees_equal, restored_path, s, CompareOptions, Sandbox, Tool};
use restix_tests::require_restic;

/// The cache folder restix keeps for the repository at `repo` (the
/// sandbox's `RESTIC_CACHE_DIR` is `cache/`).
fn cache_folder(sb: &Sandbox, repo: &Path) -> PathBuf {
    let config = sb
        .restix(["-r", s(repo), "cat", "config", "--no-lock"])
        .ok()
        .json();
    let id = config["id"].as_str().unwrap().to_string();
    sb.join("cache")
        .join("restix-index")
        .join(format!("{id}.index"))
}

fn segments(folder: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A folder of `n` small files whose content depends on `seed`.
fn write_files(dir: &Path, seed: u64, n: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let data =
            restix_tests::harness::pseudo_random_bytes(seed * 1000 + i, 3000 + i as usize * 7);
        fs::write(dir.join(format!("f{seed}-{i}")), data).unwrap();
    }
}

/// Backs up `src`, restores the latest snapshot and compares.
fn backup_and_restore(sb: &Sandbox, repo: &Path, src: &Path, round: &str) {
    sb.restix(["-r", s(repo), "backup", s(src)]).ok();
    let out = sb.join(format!("restore-{round}"));
    sb.restix(["-r", s(repo), "restore", "latest", "--target", s(&out)])
        .ok();
    let opts = CompareOptions {
        root_metadata: false,
        ..CompareOptions::default()
    };
    assert_trees_equal(src, &restored_path(&out, src), &opts);
}

#[test]
fn a_damaged_swapped_or_stale_cache_never_changes_what_is_stored() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    write_files(&src.join("base"), 1, 300);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    backup_and_restore(&sb, &repo, &src, "first");
    let folder = cache_folder(&sb, &repo);
    assert!(folder.join("manifest").is_file(), "{}", folder.display());
    assert!(!segments(&folder).is_empty());

    // Another repository's cache, to swap in later.
    let other = sb.join("other");
    sb.init(Tool::Restix, &other, 2);
    let other_src = sb.join("other-src");
    write_files(&other_src, 99, 50);
    sb.restix(["-r", s(&other), "backup", s(&other_src)]).ok();
    let other_folder = cache_folder(&sb, &other);
    assert!(other_folder.join("manifest").is_file());

    // A flipped byte in every entry page's first entry of every segment.
    for seg in segments(&folder) {
        let mut bytes = fs::read(&seg).unwrap();
        let mut at = 4096 + 7;
        while at + 4096 < bytes.len() {
            bytes[at] ^= 0x40;
            at += 4096 * 3;
        }
        fs::write(&seg, bytes).unwrap();
    }
    write_files(&src.join("after-flip"), 2, 40);
    backup_and_restore(&sb, &repo, &src, "flipped");

    // Every segment truncated by a page.
    for seg in segments(&folder) {
        let bytes = fs::read(&seg).unwrap();
        fs::write(&seg, &bytes[..bytes.len() - 4096]).unwrap();
    }
    write_files(&src.join("after-truncate"), 3, 40);
    backup_and_restore(&sb, &repo, &src, "truncated");

    // The other repository's cache in this one's place.
    fs::remove_dir_all(&folder).unwrap();
    fs::create_dir_all(&folder).unwrap();
    for e in fs::read_dir(&other_folder).unwrap().flatten() {
        fs::copy(e.path(), folder.join(e.file_name())).unwrap();
    }
    write_files(&src.join("after-swap"), 4, 40);
    backup_and_restore(&sb, &repo, &src, "swapped");

    // Stale: prune rewrites the index files the cache covers.
    fs::remove_dir_all(src.join("after-flip")).unwrap();
    sb.restix(["-r", s(&repo), "backup", s(&src)]).ok();
    sb.restix([
        "-r",
        s(&repo),
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--max-unused",
        "0",
    ])
    .ok();
    write_files(&src.join("after-prune"), 5, 40);
    backup_and_restore(&sb, &repo, &src, "pruned");
    // The files of the first rounds again: deduplicated against the cache
    // (stored once), still restorable.
    write_files(&src.join("after-flip"), 2, 40);
    backup_and_restore(&sb, &repo, &src, "again");

    sb.restic(["-r", s(&repo), "--no-cache", "check", "--read-data"])
        .ok();
    sb.restix(["-r", s(&repo), "check", "--read-data"]).ok();
}
