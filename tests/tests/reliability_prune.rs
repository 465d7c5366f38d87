//! Issue #21 item 5: `prune` on a repository whose index names packs that
//! are missing but hold no used blob (restic's `repo-unused-data-missing`
//! fixture) forgets them as restic 0.18.1 does ("will forget missing pack
//! file"), and the real `restic check` is clean afterwards.

use restix_tests::harness::{fixture_repo, Sandbox};
use restix_tests::{require_fixtures, require_restic};

#[test]
fn prune_forgets_missing_unused_packs_and_restic_check_is_clean() {
    require_restic!();
    let fixtures = require_fixtures!();
    let sb = Sandbox::new();
    let repo = fixture_repo(&fixtures, &sb, "repo-unused-data-missing");
    let repo = repo.to_str().unwrap();
    // restic 0.14 itself refuses this repository's check before the prune.
    let before = sb.restic(["-r", repo, "check"]).no_crash();
    let run = sb.restix(["-r", repo, "prune"]).ok();
    assert!(
        run.err().contains(
            "Missing but unneeded pack files are referenced in the index, will be repaired"
        ) && run.err().contains("will forget missing pack file "),
        "{}",
        run.describe()
    );
    let after = sb.restic(["-r", repo, "check"]).no_crash();
    assert!(
        after.success(),
        "before:\n{}\nafter:\n{}",
        before.describe(),
        after.describe()
    );
    sb.restix(["-r", repo, "check"]).ok();
}
