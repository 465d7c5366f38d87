//! Issue #21 item 3: a backup target below a symlinked parent
//! (`backup /x/link/sub`, `link -> real`) is stored as restic stores it:
//! the parent is the directory the link points to (restic 0.14 `statDir`,
//! 0.18.1 `dirPathToNode`: `stat`, following the link), under the link's
//! name. restix's tree below `x` has restic 0.14's tree ID, and a restore
//! creates no world-writable directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use restix_engine::backend::local::LocalBackend;
use restix_engine::repository::Repository;
use restix_engine::selection::{select_one, SnapshotFilter};
use restix_engine::walker::{resolve_path, ResolvedPath};
use restix_repo_format::{Node, NodeType};
use restix_tests::harness::{Sandbox, Tool, PASSWORD};
use restix_tests::require_restic;

/// The node at `path` in the latest snapshot of `repo` that lists `target`.
fn node_at(repo: &Path, snapshot: &str, path: &Path) -> Node {
    let repo =
        Repository::open(Arc::new(LocalBackend::new(repo)), PASSWORD.as_bytes(), None).unwrap();
    repo.load_index().unwrap();
    let (_, snap) = select_one(&repo, snapshot, &SnapshotFilter::default()).unwrap();
    match resolve_path(
        &repo,
        &snap.tree.unwrap(),
        path.as_os_str().as_encoded_bytes(),
    )
    .unwrap()
    {
        ResolvedPath::Node(node) => *node,
        ResolvedPath::Root(_) => panic!("{path:?} is the root"),
    }
}

#[test]
fn symlinked_parent_is_stored_as_restic_stores_it() {
    require_restic!();
    let sb = Sandbox::new();
    let x = sb.join("x");
    fs::create_dir_all(x.join("real/sub")).unwrap();
    fs::write(x.join("real/sub/file"), b"content").unwrap();
    fs::set_permissions(x.join("real"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("real", x.join("link")).unwrap();
    let target = x.join("link/sub");

    sb.restic(["-r", "rc", "init"]).ok();
    sb.cmd(Tool::Restic)
        .args(["-r", "rc", "backup"])
        .arg(&target)
        .run()
        .ok();
    sb.cmd(Tool::Restix)
        .args(["-r", "rc", "backup"])
        .arg(&target)
        .run()
        .ok();
    let restic_snap = {
        let run = sb.restix(["-r", "rc", "snapshots", "--json"]).ok();
        let list = run.json();
        let ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 2);
        ids
    };
    let theirs = node_at(&sb.join("rc"), &restic_snap[0], &x);
    let ours = node_at(&sb.join("rc"), &restic_snap[1], &x);
    let (theirs, ours) = if theirs.subtree.is_some() && ours.subtree.is_some() {
        (theirs, ours)
    } else {
        panic!("x has no subtree")
    };
    // Which one is restic's does not matter: both must be equal.
    assert_eq!(
        ours.subtree, theirs.subtree,
        "tree below x differs from restic's"
    );
    let link_ours = node_at(&sb.join("rc"), &restic_snap[1], &x.join("link"));
    assert_eq!(link_ours.node_type, NodeType::Dir);
    assert_eq!(link_ours.mode & 0o777, 0o755, "the directory's own mode");
    assert_eq!(link_ours.mode & (1 << 27), 0, "no symlink bit");

    // A restore gives a 0755 directory, as in the source.
    for tool in ["restix", "restic"] {
        let out = sb.join(format!("out-{tool}"));
        let snap = if tool == "restix" {
            &restic_snap[1]
        } else {
            &restic_snap[0]
        };
        sb.cmd(Tool::Restix)
            .args(["-r", "rc", "restore", snap, "--target"])
            .arg(&out)
            .run()
            .ok();
        let restored = out.join(x.strip_prefix("/").unwrap()).join("link");
        let meta = fs::symlink_metadata(&restored).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o755,
            "{tool}'s snapshot"
        );
    }
}
