//! Restorer, dump and walker tests against repositories made by the real
//! `restic` binary (skipped with a note when it is not installed).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use restix_repo_format::{BlobType, GoTime, Id, Node, NodeType, Tree};

use super::fsops;
use super::*;
use crate::backend::local::LocalBackend;
use crate::repository::Repository;
use crate::selection::{select_one, SnapshotFilter};
use crate::walker::{self, LsFilter, WalkError};

const PASSWORD: &str = "geheim";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("restix-read-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn restic_available() -> bool {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        restix_testkit::skip("restic", "apt-get install restic");
    }
    ok
}

fn restic(repo: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .arg("-q")
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn restic_bytes(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Deterministic pseudo-random bytes (xorshift), so chunks are not all equal.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = GoTime::from_unix_utc(secs, nanos);
    fsops::set_times_nofollow(path, &t, &t).unwrap();
}

/// A source tree with every node kind the restorer handles.
fn build_source(root: &Path) {
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    fs::write(root.join("a.txt"), b"hello world\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("sub/b.bin"), noise(3 << 20, 7)).unwrap();
    let mut zeros = vec![0u8; 2 << 20];
    zeros.extend_from_slice(b"tail");
    fs::write(root.join("sub/zeros.img"), zeros).unwrap();
    fs::write(root.join("sub/deep/c.txt"), b"deep").unwrap();
    fs::write(root.join("hard1"), b"linked content").unwrap();
    fs::hard_link(root.join("hard1"), root.join("hard2")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    fsops::mkfifo(&root.join("fifo"), 0o640).unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(
        root.join("sub/deep/c.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::set_permissions(root.join("sub/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    for (i, p) in [
        "a.txt",
        "empty",
        "sub/b.bin",
        "sub/zeros.img",
        "sub/deep/c.txt",
        "hard1",
        "link",
        "fifo",
        "sub/deep",
        "sub",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(p), 1_600_000_000 + i as i64 * 1000, 123_456_789);
    }
}

struct Fixture {
    _dir: TempDir,
    src: PathBuf,
    repo_path: PathBuf,
    repo: Arc<Repository>,
    tree: Id,
    work: PathBuf,
}

fn open_repo(path: &Path) -> Arc<Repository> {
    let repo =
        Repository::open(Arc::new(LocalBackend::new(path)), PASSWORD.as_bytes(), None).unwrap();
    repo.load_index().unwrap();
    Arc::new(repo)
}

fn fixture(tag: &str) -> Fixture {
    fixture_with(tag, |_| {})
}

fn fixture_with(tag: &str, extra: impl FnOnce(&Path)) -> Fixture {
    let dir = TempDir::new(tag);
    let src = dir.0.join("src");
    let repo_path = dir.0.join("repo");
    let work = dir.0.join("work");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&work).unwrap();
    build_source(&src);
    extra(&src);
    restic(&repo_path, &dir.0, &["init"]);
    restic(&repo_path, &src, &["backup", "."]);
    let repo = open_repo(&repo_path);
    let (_, snapshot) = select_one(&repo, "latest", &SnapshotFilter::default()).unwrap();
    let tree = snapshot.tree.unwrap();
    Fixture {
        _dir: dir,
        src,
        repo_path,
        repo,
        tree,
        work,
    }
}

#[derive(Default)]
struct Collect {
    errors: Mutex<Vec<(String, String)>>,
    restored: AtomicUsize,
}

impl RestoreProgress for Collect {
    fn item_done(&self, _path: &[u8], _action: ItemAction, _size: u64) {
        self.restored.fetch_add(1, Ordering::Relaxed);
    }
    fn error(&self, path: &[u8], message: &str) {
        self.errors.lock().unwrap().push((
            String::from_utf8_lossy(path).into_owned(),
            message.to_string(),
        ));
    }
}

fn compare(src: &Path, dst: &Path, rel: &str) {
    let a = fs::symlink_metadata(src.join(rel)).unwrap();
    let b = fs::symlink_metadata(dst.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(a.file_type(), b.file_type(), "{rel}");
    if !a.file_type().is_symlink() {
        assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{rel} mode");
    }
    assert_eq!(
        (a.mtime(), a.mtime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        "{rel} mtime"
    );
    if a.is_file() {
        assert_eq!(
            fs::read(src.join(rel)).unwrap(),
            fs::read(dst.join(rel)).unwrap(),
            "{rel}"
        );
    }
    if a.file_type().is_symlink() {
        assert_eq!(
            fs::read_link(src.join(rel)).unwrap(),
            fs::read_link(dst.join(rel)).unwrap()
        );
    }
}

const ALL: [&str; 11] = [
    "a.txt",
    "empty",
    "sub/b.bin",
    "sub/zeros.img",
    "sub/deep/c.txt",
    "hard1",
    "hard2",
    "link",
    "fifo",
    "sub/deep",
    "sub",
];

#[test]
fn zero_chunk_id_is_restics() {
    assert_eq!(
        zero_chunk_id().to_hex(),
        "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"
    );
}

#[test]
fn restore_matches_source() {
    if !restic_available() {
        return;
    }
    let fx = fixture("full");
    for (sparse, threads) in [(false, 4), (true, 1)] {
        let target = fx.work.join(format!("out-{sparse}"));
        let mut options = RestoreOptions::new(&target);
        options.threads = threads;
        options.sparse = sparse;
        options.verify = true;
        let progress = Collect::default();
        let summary = Restorer::new(Arc::clone(&fx.repo), options)
            .unwrap()
            .restore(&fx.tree, None, &progress)
            .unwrap();
        assert_eq!(*progress.errors.lock().unwrap(), vec![]);
        assert_eq!(summary.errors, 0);
        assert_eq!(summary.total_files, 11);
        assert_eq!(summary.files_restored, 11);
        assert_eq!(summary.files_verified, 6);
        assert_eq!(summary.bytes_restored, summary.total_bytes);
        for rel in ALL {
            compare(&fx.src, &target, rel);
        }
        let h1 = fs::metadata(target.join("hard1")).unwrap();
        let h2 = fs::metadata(target.join("hard2")).unwrap();
        assert_eq!(h1.ino(), h2.ino(), "hard links restored as links");
        assert!(fs::symlink_metadata(target.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }

    // `snapshot:subfolder` makes the subfolder the root.
    let target = fx.work.join("subfolder");
    let summary = Restorer::new(Arc::clone(&fx.repo), RestoreOptions::new(&target))
        .unwrap()
        .restore(&fx.tree, Some(b"/sub"), &NoProgress)
        .unwrap();
    assert_eq!(summary.errors, 0);
    assert_eq!(fs::read(target.join("deep/c.txt")).unwrap(), b"deep");
    assert!(!target.join("sub").exists());
}

fn restored_paths(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn rec(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                rec(root, &p, out);
            }
        }
    }
    rec(root, root, &mut out);
    out
}

#[test]
fn include_and_exclude() {
    if !restic_available() {
        return;
    }
    let fx = fixture("filter");
    let target = fx.work.join("inc");
    let mut options = RestoreOptions::new(&target);
    options.include = vec![FilterPattern::new("*.txt")];
    let summary = Restorer::new(Arc::clone(&fx.repo), options)
        .unwrap()
        .restore(&fx.tree, None, &NoProgress)
        .unwrap();
    assert_eq!(summary.errors, 0);
    assert_eq!(
        restored_paths(&target),
        vec!["a.txt", "sub", "sub/deep", "sub/deep/c.txt"]
    );

    let target = fx.work.join("inc-dir");
    let mut options = RestoreOptions::new(&target);
    options.include = vec![FilterPattern::new("/sub/deep")];
    Restorer::new(Arc::clone(&fx.repo), options)
        .unwrap()
        .restore(&fx.tree, None, &NoProgress)
        .unwrap();
    assert_eq!(
        restored_paths(&target),
        vec!["sub", "sub/deep", "sub/deep/c.txt"]
    );
    compare(&fx.src, &target, "sub/deep");

    let target = fx.work.join("exc");
    let mut options = RestoreOptions::new(&target);
    options.exclude = vec![FilterPattern::new("sub"), FilterPattern::new("hard*")];
    Restorer::new(Arc::clone(&fx.repo), options)
        .unwrap()
        .restore(&fx.tree, None, &NoProgress)
        .unwrap();
    assert_eq!(
        restored_paths(&target),
        vec!["a.txt", "empty", "fifo", "link"]
    );

    let mut options = RestoreOptions::new(&target);
    options.include = vec![FilterPattern::new("a")];
    options.exclude = vec![FilterPattern::new("b")];
    assert!(matches!(
        Restorer::new(Arc::clone(&fx.repo), options),
        Err(RestoreError::IncludeAndExclude)
    ));
}

#[test]
fn corrupt_blob_is_reported_and_not_restored() {
    if !restic_available() {
        return;
    }
    let fx = fixture("corrupt");
    // Find the blob of sub/deep/c.txt and flip one byte of it in its pack.
    let node = match walker::resolve_path(&fx.repo, &fx.tree, b"/sub/deep/c.txt").unwrap() {
        walker::ResolvedPath::Node(n) => n,
        _ => unreachable!(),
    };
    let blob = node.content.as_ref().unwrap()[0];
    let loc = fx.repo.lookup(BlobType::Data, &blob).unwrap();
    let hex = loc.pack.to_hex();
    let pack_path = fx.repo_path.join("data").join(&hex[..2]).join(&hex);
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[loc.offset as usize + 20] ^= 0x55;
    fs::set_permissions(&pack_path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&pack_path, bytes).unwrap();

    let repo = open_repo(&fx.repo_path);
    let target = fx.work.join("out");
    let progress = Collect::default();
    let summary = Restorer::new(repo, RestoreOptions::new(&target))
        .unwrap()
        .restore(&fx.tree, None, &progress)
        .unwrap();
    assert!(summary.errors >= 1);
    let errors = progress.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "/sub/deep/c.txt");
    assert!(errors[0].1.contains(&hex), "{}", errors[0].1);
    // Its only blob failed: nothing of it could be restored, so no file of
    // zeros is left looking like a restored one (partly restored files are
    // kept: reliability_restore.rs).
    assert!(
        errors[0].1.contains("nothing of it could be restored"),
        "{}",
        errors[0].1
    );
    assert!(!target.join("sub/deep/c.txt").exists());
    for rel in ["a.txt", "sub/b.bin", "sub/zeros.img", "hard2", "link"] {
        compare(&fx.src, &target, rel);
    }
}

#[test]
fn hostile_tree_is_refused() {
    if !restic_available() {
        return;
    }
    let fx = fixture("hostile");
    let mut evil = Node::new(b"../escape".to_vec(), NodeType::File);
    evil.content = Some(Vec::new());
    let mut ok = Node::new(b"fine".to_vec(), NodeType::File);
    ok.content = Some(Vec::new());
    let tree = Tree {
        nodes: vec![evil, ok],
    };
    let (tree_id, _, _) = fx
        .repo
        .save_blob(BlobType::Tree, tree.encode().unwrap(), None)
        .unwrap();
    fx.repo.flush().unwrap();
    let target = fx.work.join("out");
    let result = Restorer::new(Arc::clone(&fx.repo), RestoreOptions::new(&target))
        .unwrap()
        .restore(&tree_id, None, &NoProgress);
    assert!(
        matches!(
            result,
            Err(RestoreError::Walk(WalkError::InvalidName { .. }))
        ),
        "{result:?}"
    );
    assert!(!fx.work.join("escape").exists());
    assert!(
        !target.join("fine").exists(),
        "names are checked before anything is created"
    );

    // Below the root, the hostile subtree is reported and skipped; the rest
    // is restored.
    let mut bad_dir = Node::new(b"bad".to_vec(), NodeType::Dir);
    bad_dir.mode = 0x8000_01ed;
    bad_dir.subtree = Some(tree_id);
    let mut good = Node::new(b"good".to_vec(), NodeType::File);
    good.mode = 0o644;
    good.content = Some(Vec::new());
    let outer = Tree {
        nodes: vec![bad_dir, good],
    };
    let (outer_id, _, _) = fx
        .repo
        .save_blob(BlobType::Tree, outer.encode().unwrap(), None)
        .unwrap();
    fx.repo.flush().unwrap();
    let target = fx.work.join("partial");
    let progress = Collect::default();
    let summary = Restorer::new(Arc::clone(&fx.repo), RestoreOptions::new(&target))
        .unwrap()
        .restore(&outer_id, None, &progress)
        .unwrap();
    assert_eq!(summary.errors, 1);
    assert_eq!(progress.errors.lock().unwrap()[0].0, "/bad");
    assert!(target.join("good").is_file());
    assert!(!target.join("escape").exists() && !fx.work.join("escape").exists());

    // A symlink already in the target is replaced, never followed.
    let outside = fx.work.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = fx.work.join("pre");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), target.join("a.txt")).unwrap();
    let summary = Restorer::new(Arc::clone(&fx.repo), RestoreOptions::new(&target))
        .unwrap()
        .restore(&fx.tree, None, &NoProgress)
        .unwrap();
    assert_eq!(summary.errors, 0);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(fs::symlink_metadata(target.join("sub")).unwrap().is_dir());
    compare(&fx.src, &target, "a.txt");
    compare(&fx.src, &target, "sub/deep/c.txt");
}

#[test]
fn dump_and_ls_match_restic() {
    if !restic_available() {
        return;
    }
    // Long and non-ASCII names need PAX headers or a USTAR prefix; mtimes
    // with .6 s round up.
    let fx = fixture_with("dump", |src| {
        let long = src.join("d".repeat(120));
        fs::create_dir(&long).unwrap();
        fs::write(long.join("f"), b"x").unwrap();
        fs::write(long.join("ünïcödé ☃"), b"y").unwrap();
        std::os::unix::fs::symlink("t".repeat(150), src.join("longlink")).unwrap();
        set_mtime(&long.join("f"), 1_600_000_000, 600_000_000);
    });
    // One file, several blobs, streamed in order.
    let mut out = Vec::new();
    crate::dump::dump_path(&fx.repo, &fx.tree, b"/sub/b.bin", &mut out).unwrap();
    assert_eq!(out, fs::read(fx.src.join("sub/b.bin")).unwrap());
    // Tar of the whole snapshot and of a folder: byte-identical to restic's.
    for path in ["/", "/sub"] {
        let mut ours = Vec::new();
        crate::dump::dump_path(&fx.repo, &fx.tree, path.as_bytes(), &mut ours).unwrap();
        let theirs = restic_bytes(&fx.repo_path, &["dump", "latest", path]);
        assert!(ours == theirs, "tar of {path} differs from restic's");
    }
    assert!(matches!(
        crate::dump::dump_path(&fx.repo, &fx.tree, b"/nope", &mut Vec::new()),
        Err(crate::dump::DumpError::Walk(WalkError::NotFound { .. }))
    ));
    // ls: same paths, same order as `restic ls`.
    let mut ours = Vec::new();
    walker::ls(&fx.repo, &fx.tree, &LsFilter::default(), |n| {
        ours.push(String::from_utf8(n.path).unwrap())
    })
    .unwrap();
    let theirs: Vec<String> = restic(&fx.repo_path, &fx.src, &["ls", "latest"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ours, theirs);
    let mut long = Vec::new();
    walker::ls(
        &fx.repo,
        &fx.tree,
        &LsFilter {
            dirs: vec![b"/sub".to_vec()],
            recursive: false,
        },
        |n| long.push((String::from_utf8(n.path).unwrap(), n.permissions, n.size)),
    )
    .unwrap();
    assert_eq!(
        long,
        vec![
            ("/sub".to_string(), "drwxr-xr-x".to_string(), None),
            (
                "/sub/b.bin".to_string(),
                "-rw-r--r--".to_string(),
                Some(3 << 20)
            ),
            ("/sub/deep".to_string(), "drwxr-x---".to_string(), None),
            (
                "/sub/zeros.img".to_string(),
                "-rw-r--r--".to_string(),
                Some((2 << 20) + 4)
            ),
        ]
    );
}

/// `lgetxattr` for the check (test only).
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: `p`/`n` are NUL-terminated and `buf` has `buf.len()` writable
    // bytes; all outlive the call.
    let len = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    buf.truncate(len);
    Some(buf)
}

#[test]
fn xattrs_are_restored() {
    if !restic_available() {
        return;
    }
    let mut supported = true;
    let fx = fixture_with("xattr", |src| {
        supported = fsops::lsetxattr(&src.join("a.txt"), b"user.restix", b"value").is_ok();
    });
    if !supported {
        restix_testkit::skip(
            "user xattrs on the temporary folder's file system",
            "run the tests on ext4, xfs or btrfs",
        );
        return;
    }
    let target = fx.work.join("out");
    let summary = Restorer::new(Arc::clone(&fx.repo), RestoreOptions::new(&target))
        .unwrap()
        .restore(&fx.tree, None, &NoProgress)
        .unwrap();
    assert_eq!(summary.errors, 0);
    assert_eq!(
        get_xattr(&target.join("a.txt"), "user.restix").as_deref(),
        Some(&b"value"[..])
    );
}

#[test]
fn missing_ranges_are_merged_and_listed() {
    let merged = merge_ranges(vec![(10, 5), (0, 10), (20, 0), (30, 2), (31, 4)]);
    assert_eq!(merged, vec![(0, 15), (30, 5)]);
    assert_eq!(describe_ranges(&merged), "bytes 0-14, 30-34");
    let many: Vec<(u64, u64)> = (0..10).map(|i| (i * 10, 1)).collect();
    assert!(describe_ranges(&many).ends_with("and 2 more ranges"));
    assert_eq!(describe_ranges(&[]), "no bytes");
}
