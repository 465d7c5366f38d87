//! Four `restix backup` processes started at the same time into one
//! repository (issue #6, must-show 4). Backups take shared locks
//! (spec: restic-format §14), so none may be refused; their sources share
//! content, so the processes race to store the same blobs. Every snapshot
//! must be complete and restore byte for byte, and the real restic must find
//! the repository clean with `check --read-data`.

use std::path::{Path, PathBuf};

use restix_tests::harness::{
    assert_trees_equal, pseudo_random_bytes, restored_path, s, CompareOptions, Sandbox, Tool,
};
use restix_tests::require_restic;

/// A source folder: files shared by all four (same content, other names in
/// part) and files of its own; about 3 MB.
fn make_source(root: &Path, n: u64) {
    let shared = root.join("shared");
    let own = root.join("own");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&own).unwrap();
    for i in 0..4u64 {
        // Large enough for several chunks each (chunker minimum 512 KiB).
        std::fs::write(
            shared.join(format!("common{i}.bin")),
            pseudo_random_bytes(1000 + i, 400_000),
        )
        .unwrap();
    }
    // The same bytes under a name of this source only.
    std::fs::write(
        own.join(format!("copy-of-common-{n}.bin")),
        pseudo_random_bytes(1000 + n % 4, 400_000),
    )
    .unwrap();
    for i in 0..3u64 {
        std::fs::write(
            own.join(format!("unique{i}.bin")),
            pseudo_random_bytes(2000 + n * 10 + i, 300_000),
        )
        .unwrap();
    }
    for i in 0..40u64 {
        // Small files: many tree entries and small blobs.
        std::fs::write(
            own.join(format!("small{i}.txt")),
            format!("source {n} small file {i}\n").repeat((i as usize % 7) + 1),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("same-everywhere.txt"),
        b"identical in every source\n",
    )
    .unwrap();
}

#[test]
fn four_concurrent_backups_into_one_repository() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    let sources: Vec<PathBuf> = (0..4u64)
        .map(|n| {
            let src = sb.join(format!("src{n}"));
            make_source(&src, n);
            src
        })
        .collect();

    // Start all four at once; each exits 0.
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let sb = &sb;
                let repo = &repo;
                scope.spawn(move || {
                    sb.restix(["-r", s(repo), "backup", "--json", "--host", "h", s(src)])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.code, Some(0), "{}", run.describe());
    }
    assert_eq!(
        std::fs::read_dir(repo.join("locks")).unwrap().count(),
        0,
        "every backup removed its lock"
    );

    // Four snapshots, one per source.
    let list = sb
        .restix(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let snapshots = list.as_array().unwrap();
    assert_eq!(snapshots.len(), 4, "{list}");
    for src in &sources {
        let snap = snapshots
            .iter()
            .find(|v| v["paths"][0].as_str() == Some(s(src)))
            .unwrap_or_else(|| panic!("no snapshot of {}: {list}", src.display()));
        let id = snap["id"].as_str().unwrap();
        // Complete and byte-identical, with restix and with restic.
        for tool in [Tool::Restix, Tool::Restic] {
            let target = sb.join(format!("restore-{tool:?}-{}", &id[..8]));
            sb.run(
                tool,
                ["-r", s(&repo), "restore", id, "--target", s(&target)],
            )
            .ok();
            assert_trees_equal(
                src,
                &restored_path(&target, src),
                &CompareOptions::default(),
            );
        }
    }

    // The real restic finds nothing wrong, reading every byte.
    sb.restic(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
    sb.restix(["-r", s(&repo), "check", "--read-data"])
        .ok()
        .stdout_has("no errors were found");
}
