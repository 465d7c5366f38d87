//! Tree packs in restic's local cache (issue #20, engine
//! `repository/pack_cache.rs`): restix keeps the packs of tree blobs whole
//! in `<cache>/<repo-id>/data/<xx>/<pack-id>` as restic does, restic 0.14
//! works with the same cache folder, and a damaged cached pack never
//! changes what a restore gives back.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use restix_tests::harness::{
    assert_trees_equal, pseudo_random_bytes, restored_path, s, sha256_hex, use_cheap_key,
    CompareOptions, Sandbox, Tool,
};
use restix_tests::require_restic;

/// Three levels of folders (a tree blob each) with a few small files.
fn write_tree(dir: &Path, depth: u32, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..2u64 {
        let data = pseudo_random_bytes(seed * 10 + i, 2000 + (seed as usize % 97) * 13);
        fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
    if depth > 0 {
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            write_tree(&dir.join(name), depth - 1, seed * 4 + i as u64 + 1);
        }
    }
}

/// `<cache>/<repo-id>`: the sandbox's `RESTIC_CACHE_DIR` is `cache/`.
fn repo_cache(sb: &Sandbox, repo: &Path) -> PathBuf {
    let config = sb
        .restix(["-r", s(repo), "cat", "config", "--no-lock"])
        .ok()
        .json();
    sb.join("cache").join(config["id"].as_str().unwrap())
}

/// The cached packs: `(pack ID, path)` for every file under `data/`.
fn cached_packs(repo_cache: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(folders) = fs::read_dir(repo_cache.join("data")) else {
        return out;
    };
    for folder in folders.flatten() {
        for file in fs::read_dir(folder.path()).unwrap().flatten() {
            out.push((file.file_name().to_string_lossy().into_owned(), file.path()));
        }
    }
    out.sort();
    out
}

/// The packs holding tree blobs, from the repository's index files.
fn tree_packs(sb: &Sandbox, repo: &Path) -> BTreeSet<String> {
    let mut packs = BTreeSet::new();
    let listed = sb
        .restix(["-r", s(repo), "list", "index", "--no-lock"])
        .ok();
    for index in listed.out().lines() {
        let json = sb
            .restix(["-r", s(repo), "cat", "index", index, "--no-lock"])
            .ok()
            .json();
        for pack in json["packs"].as_array().unwrap() {
            let blobs = pack["blobs"].as_array().unwrap();
            if blobs.iter().any(|b| b["type"] == "tree") {
                packs.insert(pack["id"].as_str().unwrap().to_string());
            }
        }
    }
    packs
}

fn restore_and_compare(sb: &Sandbox, repo: &Path, src: &Path, round: &str, extra: &[&str]) {
    let out = sb.join(format!("restore-{round}"));
    let mut args = vec!["-r", s(repo)];
    args.extend_from_slice(extra);
    args.extend(["restore", "latest", "--target", s(&out)]);
    sb.restix(args).ok();
    let opts = CompareOptions {
        root_metadata: false,
        ..CompareOptions::default()
    };
    assert_trees_equal(src, &restored_path(&out, src), &opts);
}

#[test]
fn tree_packs_cached_in_restics_layout_shared_with_restic_and_never_trusted() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    write_tree(&src, 3, 1);
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    use_cheap_key(&repo);
    sb.restix(["-r", s(&repo), "backup", s(&src)]).ok();
    let folder = repo_cache(&sb, &repo);
    let trees = tree_packs(&sb, &repo);
    assert!(!trees.is_empty());

    // The backup cached the tree pack it wrote (restic does on save).
    let cached: BTreeSet<String> = cached_packs(&folder).into_iter().map(|p| p.0).collect();
    assert_eq!(cached, trees);

    // A restore with an empty cache folder fetches the tree packs into it.
    fs::remove_dir_all(folder.join("data")).unwrap();
    restore_and_compare(&sb, &repo, &src, "cold", &[]);
    let cached = cached_packs(&folder);
    assert_eq!(
        cached.iter().map(|p| p.0.clone()).collect::<BTreeSet<_>>(),
        trees,
        "only the tree packs, all of them"
    );
    for (id, path) in &cached {
        assert_eq!(&sha256_hex(&fs::read(path).unwrap()), id);
        let folder_name = path.parent().unwrap().file_name().unwrap();
        assert_eq!(folder_name.to_string_lossy(), id[..2]);
    }
    assert_eq!(fs::read_to_string(folder.join("version")).unwrap(), "1");
    assert!(sb.join("cache/CACHEDIR.TAG").is_file());

    // restic works with the same cache folder (reads the cached tree
    // packs, adds its own files), and finds the repository clean.
    let listing = sb.restic(["-r", s(&repo), "ls", "latest"]).ok().out();
    assert!(listing.contains("/a/b/c/f1"), "{listing}");
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    // restix still uses the folder after restic did.
    restore_and_compare(&sb, &repo, &src, "after-restic", &[]);

    // A damaged cached pack: detected, replaced, the restore is exact.
    for (_, path) in cached_packs(&folder) {
        let mut bytes = fs::read(&path).unwrap();
        for at in (40..bytes.len()).step_by(97) {
            bytes[at] ^= 0x20;
        }
        fs::write(&path, bytes).unwrap();
    }
    restore_and_compare(&sb, &repo, &src, "damaged", &[]);
    for (id, path) in cached_packs(&folder) {
        assert_eq!(sha256_hex(&fs::read(&path).unwrap()), id, "replaced");
    }
    // A truncated one, and another pack's bytes in its place.
    let cached = cached_packs(&folder);
    let (_, first) = &cached[0];
    let bytes = fs::read(first).unwrap();
    fs::write(first, &bytes[..bytes.len() / 3]).unwrap();
    restore_and_compare(&sb, &repo, &src, "truncated", &[]);
    let data_pack = fs::read_dir(repo.join("data"))
        .unwrap()
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.path())
        .find(|p| !trees.contains(&p.file_name().unwrap().to_string_lossy().into_owned()))
        .expect("a data pack");
    fs::copy(&data_pack, first).unwrap();
    restore_and_compare(&sb, &repo, &src, "foreign", &[]);
    assert_eq!(sha256_hex(&fs::read(first).unwrap()), cached[0].0);
    restic_ls_still_works(&sb, &repo);

    // Without a cache: nothing written to the folder, the restore exact.
    fs::remove_dir_all(folder.join("data")).unwrap();
    restore_and_compare(&sb, &repo, &src, "no-cache", &["--no-cache"]);
    assert!(cached_packs(&folder).is_empty());

    // Packs gone from the repository leave the cache: a second snapshot's
    // tree pack, then forget --prune of the first snapshot.
    restore_and_compare(&sb, &repo, &src, "refill", &[]);
    write_tree(&src.join("more"), 1, 77);
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
    sb.restix(["-r", s(&repo), "snapshots"]).ok();
    let now: BTreeSet<String> = cached_packs(&folder).into_iter().map(|p| p.0).collect();
    let trees_now = tree_packs(&sb, &repo);
    assert!(now.is_subset(&trees_now), "{now:?} not in {trees_now:?}");
    restore_and_compare(&sb, &repo, &src, "pruned", &[]);
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
}

/// restic reads through the cache folder restix repaired.
fn restic_ls_still_works(sb: &Sandbox, repo: &Path) {
    let listing = sb.restic(["-r", s(repo), "ls", "latest"]).ok().out();
    assert!(listing.contains("/b/c/a/f0"), "{listing}");
}
