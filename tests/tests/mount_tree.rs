//! `restix mount` against `restic restore` and restic 0.14's own `mount`
//! (issue #19): every file of a snapshot read through the mount equals the
//! restored tree (types, bytes, modes, owners, mtimes, link targets, hard
//! links), for a repository written by restic 0.14 and one written by
//! restix; both mounts show the same folders and `latest` links; signals
//! unmount, and a busy mount says how to unmount it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use restix_tests::harness::{
    assert_trees_equal, make_varied_tree, pseudo_random_bytes, restored_path, s, walk,
    CompareOptions, Sandbox, Tool, TreeSpec,
};
use restix_tests::mounts::{is_mounted, require_fuse, Mounted};
use restix_tests::require_restic;

/// The snapshot's copy of `src` inside a mount of its repository.
fn in_mount(mount: &Path, src: &Path) -> PathBuf {
    mount
        .join("snapshots/latest")
        .join(src.strip_prefix("/").unwrap_or(src))
}

fn mount_equals_restore(writer: Tool) {
    require_restic!();
    if !require_fuse() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.join("src");
    let spec = TreeSpec {
        big_file: false,
        // restic 0.14 stores such targets lossily; restix keeps the bytes,
        // which restic 0.14's restore then cannot reproduce.
        non_utf8_symlink_target: writer == Tool::Restic,
        ..TreeSpec::default()
    };
    make_varied_tree(&src, &spec);
    // Several content-defined blobs: offsets cross blob boundaries.
    std::fs::write(src.join("multi-blob.bin"), pseudo_random_bytes(19, 5 << 20)).unwrap();
    let repo = sb.join("repo");
    sb.run(writer, ["init", "-r", s(&repo)]).ok();
    sb.run(writer, ["-r", s(&repo), "backup", s(&src)]).ok();
    let out = sb.join("restored");
    sb.restic(["-r", s(&repo), "restore", "latest", "--target", s(&out)])
        .ok();

    let mount = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("mnt"), &[]);
    let opts = CompareOptions {
        root_metadata: true,
        ..CompareOptions::default()
    };
    assert_trees_equal(
        &restored_path(&out, &src),
        &in_mount(mount.path(), &src),
        &opts,
    );
}

#[test]
fn repository_written_by_restic_reads_like_its_restore() {
    mount_equals_restore(Tool::Restic);
}

#[test]
fn repository_written_by_restix_reads_like_its_restore() {
    mount_equals_restore(Tool::Restix);
}

/// Every path below `root` with its type and, for links, target.
fn layout(root: &Path) -> BTreeMap<PathBuf, String> {
    walk(root)
        .into_iter()
        .map(|rel| {
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                "dir".to_string()
            } else {
                format!("file {}", meta.len())
            };
            (rel, what)
        })
        .collect()
}

#[test]
fn same_folders_and_links_as_restic_mount() {
    require_restic!();
    if !require_fuse() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), b"layout").unwrap();
    let repo = sb.join("repo");
    sb.restic(["init", "-r", s(&repo)]).ok();
    // Hosts, several tags, no tag, and two snapshots in the same second
    // (the second is named with "-1").
    let runs: [&[&str]; 4] = [
        &[
            "--host",
            "alpha",
            "--tag",
            "daily,vm",
            "--time",
            "2024-01-02 03:04:05",
        ],
        &["--host", "alpha", "--time", "2024-01-02 03:04:05"],
        &[
            "--host",
            "beta",
            "--tag",
            "vm",
            "--time",
            "2024-02-03 04:05:06",
        ],
        &[
            "--host",
            "beta",
            "--tag",
            "weekly",
            "--time",
            "2023-12-31 23:59:59",
        ],
    ];
    for flags in runs {
        sb.restic(
            ["-r", s(&repo), "backup", s(&src)]
                .iter()
                .chain(flags.iter()),
        )
        .ok();
    }
    let theirs = Mounted::start(&sb, Tool::Restic, &repo, &sb.join("restic-mnt"), &[]);
    let ours = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("restix-mnt"), &[]);
    let want = layout(theirs.path());
    let got = layout(ours.path());
    assert!(
        want.len() > 30,
        "restic's mount shows too little: {want:#?}"
    );
    assert_eq!(got, want);

    // Templates and filters the same way.
    drop((theirs, ours));
    let flags = [
        "--path-template",
        "by-host/%h/%i",
        "--path-template",
        "time/%T",
        "--time-template",
        "2006-01-02_15-04",
        "--host",
        "alpha",
    ];
    let theirs = Mounted::start(&sb, Tool::Restic, &repo, &sb.join("restic-mnt2"), &flags);
    let ours = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("restix-mnt2"), &flags);
    let want = layout(theirs.path());
    assert!(want.contains_key(Path::new("time/latest")), "{want:#?}");
    assert_eq!(layout(ours.path()), want);
}

#[test]
fn signals_unmount_and_a_busy_mount_says_how() {
    if !require_fuse() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    sb.restix(["-r", s(&repo), "backup", s(&src)]).ok();

    // SIGINT: unmounted, exit 0, lock gone (restic 0.18.1 behaves so).
    let mut mount = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("mnt"), &[]);
    mount.signal(libc::SIGINT);
    assert_eq!(
        mount.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        mount.log_text()
    );
    assert!(!is_mounted(mount.path()));
    assert_eq!(std::fs::read_dir(repo.join("locks")).unwrap().count(), 0);

    // Busy: a process sits inside; SIGTERM explains and keeps serving.
    let mut mount = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("mnt"), &[]);
    let mut sitter = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(mount.path().join("ids"))
        .spawn()
        .unwrap();
    mount.signal(libc::SIGTERM);
    let still = mount.wait_exit(Duration::from_secs(3));
    let log = mount.log_text();
    assert_eq!(still, None, "exited although busy:\n{log}");
    assert!(log.contains("fusermount3 -u"), "{log}");
    assert!(is_mounted(mount.path()));
    let _ = sitter.kill();
    let _ = sitter.wait();
    // Once free, `fusermount3 -u` ends the command normally.
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mount.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        mount.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        mount.log_text()
    );
}

fn cpath(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Extended attributes of `path` (names and values), without following links.
fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let p = cpath(path);
    let mut names = vec![0u8; 4096];
    // SAFETY: `p` is a NUL-terminated path, `names` a writable buffer of the
    // given length; llistxattr writes at most that many bytes.
    let len = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        len >= 0,
        "llistxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    names.truncate(len as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above; `cname` is NUL-terminated.
        let n = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(
            n >= 0,
            "lgetxattr {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        value.truncate(n as usize);
        out.insert(name.to_vec(), value);
    }
    out
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = cpath(path);
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated path and name, `value` valid for its length.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

#[test]
fn xattrs_owners_and_owner_root() {
    if !require_fuse() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("file"), b"with attributes").unwrap();
    if !set_xattr(&src.join("file"), "user.restix.one", b"1")
        || !set_xattr(&src.join("file"), "user.restix.two", b"")
        || !set_xattr(&src.join("dir"), "user.restix.dir", b"folder")
    {
        restix_testkit::skip(
            "user extended attributes in $TMPDIR",
            "put TMPDIR on a file system with user xattrs (ext4, xfs, tmpfs)",
        );
        return;
    }
    let owned = restix_tests::harness::is_root();
    if owned {
        restix_tests::harness::lchown(&src.join("file"), 1234, 5678);
    }
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    sb.restix(["-r", s(&repo), "backup", s(&src)]).ok();

    let mount = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("mnt"), &[]);
    let inside = in_mount(mount.path(), &src);
    assert_eq!(xattrs(&inside.join("file")), xattrs(&src.join("file")));
    assert_eq!(xattrs(&inside.join("dir")), xattrs(&src.join("dir")));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(inside.join("file")).unwrap();
    if owned {
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }
    // Read-only: no writes, no new files.
    assert!(std::fs::write(inside.join("file"), b"x").is_err());
    assert!(std::fs::write(inside.join("new"), b"x").is_err());
    drop(mount);

    let mount = Mounted::start(
        &sb,
        Tool::Restix,
        &repo,
        &sb.join("mnt-root"),
        &["--owner-root"],
    );
    let meta = std::fs::metadata(in_mount(mount.path(), &src).join("file")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}
