//! restic's own fixture repositories (`$RESTIX_FIXTURES/restic-upstream`,
//! password `geheim`): restix opens every one of them (`snapshots`, `ls` of
//! each snapshot, `cat config`; `check` separately) and agrees with the real restic
//! wherever restic succeeds; the damaged ones may fail, but never crash.
//! Also: restores match restic's, and the fixture source trees round-trip.

use std::collections::BTreeSet;

use restix_tests::harness::{
    assert_trees_equal, fixture_repo, fixture_tree, ls_paths, s, CompareOptions, Run, Sandbox, Tool,
};
use restix_tests::{require_fixtures, require_restic};

fn snapshot_ids(run: &Run) -> Vec<String> {
    run.json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// Runs the same read command with both programs; restix must never crash
/// and must succeed wherever restic succeeds. Returns (restic, restix).
fn both(sb: &Sandbox, repo: &std::path::Path, args: &[&str]) -> (Run, Run) {
    let theirs = sb.cmd(Tool::Restic).arg("-r").arg(repo).args(args).run();
    let ours = sb
        .cmd(Tool::Restix)
        .arg("-r")
        .arg(repo)
        .args(args)
        .run()
        .no_crash();
    if theirs.success() {
        assert!(
            ours.success(),
            "restic succeeds but restix fails:\n{}\n{}",
            theirs.describe(),
            ours.describe()
        );
    }
    (theirs, ours)
}

fn open_fixture(name: &str) {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = fixture_repo(&fixtures, &sb, name);

    let (theirs, ours) = both(&sb, &repo, &["cat", "config"]);
    if theirs.success() {
        assert_eq!(ours.json(), theirs.json(), "{name}: cat config");
    }

    let (theirs, ours) = both(&sb, &repo, &["snapshots", "--json"]);
    let mut ids = Vec::new();
    if theirs.success() {
        ids = snapshot_ids(&theirs);
        let mut a = snapshot_ids(&ours);
        let mut b = ids.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: snapshot IDs");
        let tree = |run: &Run| -> BTreeSet<(String, String)> {
            run.json()
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        s["id"].to_string(),
                        format!("{}|{}|{}|{}", s["tree"], s["time"], s["paths"], s["parent"]),
                    )
                })
                .collect()
        };
        assert_eq!(tree(&ours), tree(&theirs), "{name}: snapshot fields");
    }

    for id in &ids {
        let (theirs, ours) = both(&sb, &repo, &["ls", "--json", id]);
        if theirs.success() {
            assert_eq!(ls_paths(&ours), ls_paths(&theirs), "{name}: ls --json {id}");
        }
    }
}

/// `check` on a fixture: never crash; pass where restic passes, fail where
/// restic fails (damaged repositories).
fn check_fixture(name: &str) {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = fixture_repo(&fixtures, &sb, name);
    let (theirs, ours) = both(&sb, &repo, &["check"]);
    if !theirs.success() {
        assert!(
            !ours.success(),
            "restic check finds errors but restix check does not:\n{}\n{}",
            theirs.describe(),
            ours.describe()
        );
    }
}

macro_rules! fixture_tests {
    ($($open:ident, $check:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $open() {
                open_fixture($name);
            }

            #[test]
            fn $check() {
                check_fixture($name);
            }
        )*
    };
}

fixture_tests! {
    opens_small_repo, checks_small_repo => "small-repo",
    opens_repo_layout_default, checks_repo_layout_default => "repo-layout-default",
    opens_duplicate_packs_in_index, checks_duplicate_packs_in_index => "duplicate-packs-in-index-test-repo",
    opens_repo_data_missing, checks_repo_data_missing => "repo-data-missing",
    opens_repo_duplicates, checks_repo_duplicates => "repo-duplicates",
    opens_repo_index_missing, checks_repo_index_missing => "repo-index-missing",
    opens_repo_index_missing_blob, checks_repo_index_missing_blob => "repo-index-missing-blob",
    opens_repo_obsolete_index, checks_repo_obsolete_index => "repo-obsolete-index",
    opens_repo_unreferenced_data, checks_repo_unreferenced_data => "repo-unreferenced-data",
    opens_repo_unused_data_missing, checks_repo_unused_data_missing => "repo-unused-data-missing",
}

/// Every repository tarball in the fixtures folder is covered above.
#[test]
fn every_fixture_repository_has_a_test() {
    let fixtures = require_fixtures!();
    let covered = [
        "small-repo",
        "repo-layout-default",
        "duplicate-packs-in-index-test-repo",
        "repo-data-missing",
        "repo-duplicates",
        "repo-index-missing",
        "repo-index-missing-blob",
        "repo-obsolete-index",
        "repo-unreferenced-data",
        "repo-unused-data-missing",
        // source trees, not repositories:
        "backup-data",
        "test.hl",
    ];
    for entry in std::fs::read_dir(fixtures.join("restic-upstream")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".tar.gz") {
            assert!(covered.contains(&stem), "fixture {name} has no test");
        }
    }
}

fn restore_like_restic(name: &str) {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = fixture_repo(&fixtures, &sb, name);
    let theirs = sb.join("by-restic");
    let ours = sb.join("by-restix");
    sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&theirs)])
        .ok();
    sb.restix(["-r", s(&repo), "restore", "latest", "--target", s(&ours)])
        .ok();
    assert_trees_equal(
        &theirs,
        &ours,
        &CompareOptions {
            root_metadata: false,
            ..CompareOptions::default()
        },
    );
}

#[test]
fn restores_small_repo_like_restic() {
    restore_like_restic("small-repo");
}

#[test]
fn restores_repo_layout_default_like_restic() {
    restore_like_restic("repo-layout-default");
}

/// The fixture source trees (`backup-data`, `test.hl` with hard links),
/// backed up by restix and restored by restic.
#[test]
fn fixture_source_trees_round_trip_through_restix() {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    for name in ["backup-data", "test.hl"] {
        let src = fixture_tree(&fixtures, &sb, name);
        sb.cmd(Tool::Restix)
            .args(["-r", s(&repo), "backup", "--tag", name, "."])
            .current_dir(&src)
            .run()
            .ok();
        let out = sb.join(format!("out-{name}"));
        sb.restic([
            "-r",
            s(&repo),
            "restore",
            "latest",
            "--tag",
            name,
            "--target",
            s(&out),
        ])
        .ok();
        assert_trees_equal(&src, &out, &CompareOptions::default());
    }
    sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
}
