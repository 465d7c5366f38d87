//! restix writes, restix reads: the full varied tree restores exactly,
//! including a non-UTF-8 symlink target, which restix (like restic >= 0.16)
//! keeps in `linktarget_raw` (restic-format §11.6).

use restix_tests::harness::{
    assert_trees_equal, backup_summary, is_restix, make_varied_tree, restored_path, s,
    CompareOptions, Oracle, Sandbox, Tool, TreeSpec,
};
use restix_tests::require_restic;

#[test]
fn restix_restores_what_restix_backed_up_exactly() {
    require_restic!();
    let sb = Sandbox::new();
    let src = sb.join("src");
    make_varied_tree(&src, &TreeSpec::default());
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2);
    let run = sb
        .restix(["-r", s(&repo), "backup", "--json", s(&src)])
        .ok();
    let id = backup_summary(&run)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = sb.join("out");
    sb.restix(["-r", s(&repo), "restore", &id, "--target", s(&out)])
        .ok();
    // restic 0.14 in the restix role cannot keep non-UTF-8 targets.
    let opts = CompareOptions {
        lossy_symlink_targets: !is_restix(),
        root_metadata: true,
        ..CompareOptions::default()
    };
    assert_trees_equal(&src, &restored_path(&out, &src), &opts);

    if is_restix() {
        let mut path: Vec<&str> = src
            .to_str()
            .unwrap()
            .split('/')
            .filter(|c| !c.is_empty())
            .collect();
        path.extend(["links", "non-utf8"]);
        let node = Oracle::new(&sb, &repo).node_at(&id, &path);
        assert_eq!(
            node["linktarget_raw"], "YmFk//79dGFyZ2V0",
            "non-UTF-8 target kept raw: {node}"
        );
        assert_eq!(
            node["linktarget"], "bad\u{fffd}\u{fffd}\u{fffd}target",
            "{node}"
        );
    }
}
