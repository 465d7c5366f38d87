//! `prune` and `forget --prune`: after restix prunes a repository made by
//! the real restic, `restic check --read-data` is clean and the remaining
//! snapshots restore byte for byte.

use restix_tests::harness::{
    assert_trees_equal, fixture_repo, pseudo_random_bytes, restored_path, s, CompareOptions,
    Sandbox, Tool,
};
use restix_tests::{require_fixtures, require_restic};

fn write_files(dir: &std::path::Path, seed: u64, count: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::write(
            dir.join(format!("f{i}")),
            pseudo_random_bytes(seed * 100 + i, 200_000),
        )
        .unwrap();
    }
}

fn pack_count(repo: &std::path::Path) -> usize {
    restix_tests::harness::walk(&repo.join("data"))
        .into_iter()
        .filter(|p| repo.join("data").join(p).is_file())
        .count()
}

#[test]
fn prune_repacks_and_restic_agrees() {
    require_restic!();
    for version in [1u32, 2] {
        let sb = Sandbox::new();
        let repo = sb.join("repo");
        sb.init(Tool::Restic, &repo, version).ok();
        let src = sb.join("src");
        // Three backups; each replaces some files, so forgetting the first
        // two leaves packs that are partly used.
        write_files(&src, 1, 6);
        sb.restic(["-r", s(&repo), "backup", "--tag", "one", s(&src)])
            .ok();
        write_files(&src.join("sub"), 2, 3);
        std::fs::remove_file(src.join("f0")).unwrap();
        sb.restic(["-r", s(&repo), "backup", "--tag", "two", s(&src)])
            .ok();
        std::fs::remove_file(src.join("f1")).unwrap();
        std::fs::write(src.join("sub/f0"), b"changed").unwrap();
        sb.restic(["-r", s(&repo), "backup", "--tag", "three", s(&src)])
            .ok();
        let before = pack_count(&repo);

        // Dry run changes nothing.
        sb.restix([
            "-r",
            s(&repo),
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--dry-run",
        ])
        .ok()
        .stdout_has("Would have made the following changes");
        assert_eq!(pack_count(&repo), before);
        assert_eq!(
            sb.restic(["-r", s(&repo), "snapshots", "--json"])
                .ok()
                .json()
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let run = sb
            .restix([
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
        let out = run.out();
        assert!(
            out.contains("2 snapshots have been removed, running prune"),
            "{}",
            run.describe()
        );
        assert!(out.contains("to repack:"), "{}", run.describe());
        assert!(out.contains("done"), "{}", run.describe());
        let after = pack_count(&repo);
        assert!(after <= before, "packs {before} -> {after}");

        sb.restic(["-r", s(&repo), "check", "--read-data"])
            .ok()
            .stdout_has("no errors were found");
        sb.restix(["-r", s(&repo), "check", "--read-data"]).ok();
        // Nothing unused is left: a second prune has nothing to do.
        let run = sb
            .restic(["-r", s(&repo), "prune", "--dry-run", "--max-unused", "0"])
            .ok();
        assert!(
            run.out().contains("this removes:          0 blobs"),
            "{}",
            run.describe()
        );
        let target = sb.join("restore");
        sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&target)])
            .ok();
        assert_trees_equal(
            &src,
            &restored_path(&target, &src),
            &CompareOptions::default(),
        );
    }
}

#[test]
fn prune_removes_unreferenced_fixture_data() {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = fixture_repo(&fixtures, &sb, "repo-unreferenced-data");
    let run = sb.restix(["--no-cache", "-r", s(&repo), "prune"]).ok();
    assert!(run.out().contains("done"), "{}", run.describe());
    let check = sb
        .restic(["--no-cache", "-r", s(&repo), "check", "--read-data"])
        .ok();
    assert!(
        !check.out().contains("not referenced in any index"),
        "{}",
        check.describe()
    );
    // Prune refuses a repository with missing packs, like restic.
    let sb2 = Sandbox::new();
    let repo2 = fixture_repo(&fixtures, &sb2, "repo-data-missing");
    sb2.restix(["--no-cache", "-r", s(&repo2), "prune"]).fails();
}
