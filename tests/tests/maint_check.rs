//! `check`: restix finds the same kinds of problems as the real restic in
//! restic's upstream fixture repositories, reads all data of healthy
//! repositories, and names damaged packs.

use std::collections::BTreeSet;

use restix_tests::harness::{fixture_repo, s, Run, Sandbox};
use restix_tests::{require_fixtures, require_restic};

/// The kinds of findings in a check transcript (stdout + stderr).
fn kinds(run: &Run) -> BTreeSet<&'static str> {
    let text = format!("{}\n{}", run.out(), run.err());
    let mut out = BTreeSet::new();
    for (needle, kind) in [
        (": does not exist", "pack-missing"),
        ("unexpected file size", "pack-size"),
        ("not referenced in any index", "pack-orphaned"),
        ("contained in several indexes", "pack-duplicate"),
        ("contains a mix of tree and data blobs", "pack-mixed"),
        ("not found in index", "blob-missing"),
        ("not found in repository", "tree-missing"),
        ("no errors were found", "clean"),
        ("repository contains errors", "failed"),
    ] {
        if text.contains(needle) {
            out.insert(kind);
        }
    }
    out
}

#[test]
fn fixture_problems_match_restic() {
    require_restic!();
    let fixtures = require_fixtures!();
    for name in [
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
    ] {
        let sb = Sandbox::new();
        let repo = fixture_repo(&fixtures, &sb, name);
        let expected = sb
            .restic(["--no-cache", "-r", s(&repo), "check"])
            .no_crash();
        let actual = sb
            .restix(["--no-cache", "-r", s(&repo), "check"])
            .no_crash();
        assert_eq!(
            kinds(&expected),
            kinds(&actual),
            "{name}:\nrestic: {}\nrestix: {}",
            expected.describe(),
            actual.describe()
        );
        assert_eq!(
            expected.success(),
            actual.success(),
            "{name}: exit status\n{}",
            actual.describe()
        );
    }
}

#[test]
fn read_data_finds_damage() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(restix_tests::harness::Tool::Restic, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..5u64 {
        std::fs::write(
            src.join(format!("f{i}")),
            restix_tests::harness::pseudo_random_bytes(i, 300_000),
        )
        .unwrap();
    }
    sb.restic(["-r", s(&repo), "backup", s(&src)]).ok();
    let run = sb.restix(["-r", s(&repo), "check", "--read-data"]).ok();
    assert!(run.out().contains("read all data"), "{}", run.describe());
    assert!(
        run.out().contains("no errors were found"),
        "{}",
        run.describe()
    );
    sb.restix(["-r", s(&repo), "check", "--read-data-subset", "1/2"])
        .ok();
    sb.restix(["-r", s(&repo), "check", "--read-data-subset", "50%"])
        .ok();
    sb.restix(["-r", s(&repo), "check", "--read-data-subset", "x"])
        .fails();

    // Flip one byte in the middle of the largest pack.
    let mut packs: Vec<std::path::PathBuf> = restix_tests::harness::walk(&repo.join("data"))
        .into_iter()
        .map(|p| repo.join("data").join(p))
        .filter(|p| p.is_file())
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap().clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();

    // Structure alone is fine; reading finds it, like restic.
    sb.restix(["-r", s(&repo), "check"]).ok();
    sb.restic(["-r", s(&repo), "check", "--read-data"]).fails();
    let run = sb.restix(["-r", s(&repo), "check", "--read-data"]).fails();
    assert!(
        run.err().contains(&name[..8]),
        "damaged pack named: {}",
        run.describe()
    );
    assert!(
        run.err().contains("repository contains errors"),
        "{}",
        run.describe()
    );
    // JSON summary (0.18) lists the broken pack.
    let run = sb
        .restix(["-r", s(&repo), "--json", "check", "--read-data"])
        .fails();
    let summary = run.json();
    assert_eq!(summary["message_type"], "summary");
    assert!(summary["num_errors"].as_u64().unwrap() >= 1);
    assert_eq!(summary["broken_packs"][0], name.as_str());
}
