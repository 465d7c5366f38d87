//! Archiver tests: a varied folder, parent snapshots, and tree IDs compared
//! with the real `restic backup` of the same folder.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use restix_repo_format::{BlobType, Id, NodeType, Tree};

use super::*;
use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::repository::tests::{new_repo, TempDir};

fn pseudo_random(seed: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(&Id::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).0);
        i += 1;
    }
    out.truncate(len);
    out
}

fn make_source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("small.txt"), b"hello restic\n").unwrap();
    std::fs::write(src.join("a\"b\\c <&>"), b"odd name").unwrap();
    std::fs::write(src.join("sub/big.bin"), pseudo_random(7, 3 << 20)).unwrap();
    std::fs::write(src.join("sub/zeros"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(src.join("sub/deeper/x"), b"x").unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("normal<target>", src.join("goodlink")).unwrap();
    let fifo = CString::new(src.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: fifo is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::create_dir(src.join("emptydir")).unwrap();
    src
}

/// Follow `path`'s components from the root tree; returns the target node.
fn find_node(repo: &Repository, root: Id, path: &Path) -> restix_repo_format::Node {
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    let mut tree = repo.load_tree(&root).unwrap();
    for (i, c) in comps.iter().enumerate() {
        let node = tree
            .find(c)
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(c)))
            .clone();
        if i + 1 == comps.len() {
            return node;
        }
        tree = repo.load_tree(&node.subtree.unwrap()).unwrap();
    }
    unreachable!()
}

#[test]
fn archives_varied_tree() {
    let t = TempDir::new("arch");
    let src = make_source(&t.0);
    let repo = Arc::new(new_repo(&t.0, 2));
    repo.load_index().unwrap();
    let mut archiver = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads: 2,
            ..Default::default()
        },
    );
    let s = archiver
        .backup(std::slice::from_ref(&src), &NoProgress)
        .unwrap();
    assert_eq!(s.files_new, 6);
    assert_eq!(s.dirs_new, 4);
    assert_eq!(s.errors, 0);
    assert_eq!(s.snapshot.paths, vec![src.to_string_lossy().into_owned()]);
    assert_eq!(s.total_bytes_processed, 13 + 8 + (3 << 20) + (1 << 20) + 1);
    let node = find_node(&repo, s.snapshot.tree.unwrap(), &src);
    assert_eq!(node.node_type, NodeType::Dir);
    let tree = repo.load_tree(&node.subtree.unwrap()).unwrap();
    let names: Vec<String> = tree.nodes.iter().map(|n| n.name_lossy()).collect();
    assert_eq!(
        names,
        [
            "a\"b\\c <&>",
            "empty",
            "emptydir",
            "fifo",
            "goodlink",
            "link",
            "small.txt",
            "sub"
        ]
    );
    let by = |n: &str| tree.nodes.iter().find(|x| x.name_lossy() == n).unwrap();
    assert_eq!(by("empty").content, Some(vec![]));
    assert_eq!(by("fifo").node_type, NodeType::Fifo);
    assert_eq!(by("fifo").content, None);
    assert_eq!(by("link").linktarget, b"small.txt");
    assert_eq!(
        by("small.txt").content,
        Some(vec![Id::hash(b"hello restic\n")])
    );
    let bytes = tree.encode().unwrap();
    let json = String::from_utf8(bytes).unwrap();
    assert!(
        json.contains(r#""name":"a\\\"b\\\\c \u003c\u0026\u003e""#),
        "{json}"
    );
    // The big file round-trips.
    let sub = repo.load_tree(&by("sub").subtree.unwrap()).unwrap();
    let big = sub.find(b"big.bin").unwrap();
    let mut data = Vec::new();
    for id in big.content.as_ref().unwrap() {
        data.extend(repo.load_blob(BlobType::Data, id).unwrap());
    }
    assert_eq!(data, pseudo_random(7, 3 << 20));

    // The parallel large-file path gives the same tree.
    let mut parallel = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads: 3,
            force: true,
            large_file_threshold: 1 << 20,
            ..Default::default()
        },
    );
    let sp = parallel
        .backup(std::slice::from_ref(&src), &NoProgress)
        .unwrap();
    assert_eq!(
        find_node(&repo, sp.snapshot.tree.unwrap(), &src).subtree,
        node.subtree
    );
    assert_eq!(sp.files_new + sp.files_changed, 6);

    // Second run with the parent: nothing re-read, same tree.
    let mut archiver = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads: 2,
            parent: Some(s.snapshot_id),
            ..Default::default()
        },
    );
    let s2 = archiver
        .backup(std::slice::from_ref(&src), &NoProgress)
        .unwrap();
    assert_eq!(
        (s2.files_new, s2.files_changed, s2.files_unmodified),
        (0, 0, 6)
    );
    assert_eq!(s2.dirs_unmodified, 4);
    assert_eq!(s2.data_blobs, 0);
    assert_eq!(
        find_node(&repo, s2.snapshot.tree.unwrap(), &src).subtree,
        node.subtree
    );
    assert_eq!(s2.snapshot.parent, Some(s.snapshot_id));

    // Excludes, relative to any folder.
    let mut archiver = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            excludes: vec!["sub".into(), "*.txt".into()],
            ..Default::default()
        },
    );
    let s3 = archiver
        .backup(std::slice::from_ref(&src), &NoProgress)
        .unwrap();
    let n3 = find_node(&repo, s3.snapshot.tree.unwrap(), &src);
    let t3: Tree = repo.load_tree(&n3.subtree.unwrap()).unwrap();
    assert!(
        t3.find(b"sub").is_none() && t3.find(b"small.txt").is_none() && t3.find(b"empty").is_some()
    );
    assert_eq!(
        s3.snapshot.excludes,
        vec!["sub".to_string(), "*.txt".to_string()]
    );
}

#[test]
fn stdin_and_missing_targets() {
    let t = TempDir::new("stdin");
    let repo = Arc::new(new_repo(&t.0, 2));
    let mut archiver = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            stdin: Some(StdinSource {
                filename: "x.txt".into(),
                reader: Box::new(&b"data"[..]),
            }),
            ..Default::default()
        },
    );
    let s = archiver.backup(&[], &NoProgress).unwrap();
    assert_eq!(s.snapshot.paths, vec!["/x.txt".to_string()]);
    let root = repo.load_tree(&s.snapshot.tree.unwrap()).unwrap();
    assert_eq!(root.nodes[0].content, Some(vec![Id::hash(b"data")]));
    let mut empty = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            stdin: Some(StdinSource {
                filename: "x.txt".into(),
                reader: Box::new(&b""[..]),
            }),
            ..Default::default()
        },
    );
    let err = empty.backup(&[], &NoProgress).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to save snapshot: snapshot is empty"
    );
    let mut missing = Archiver::new(Arc::clone(&repo), ArchiveOptions::default());
    assert!(matches!(
        missing.backup(&[t.0.join("nope")], &NoProgress),
        Err(ArchiveError::AllTargetsMissing)
    ));
}

#[test]
fn same_base_names_get_suffixes() {
    let targets = vec![
        PathBuf::from("a/x"),
        PathBuf::from("b/x"),
        PathBuf::from("../c/x"),
    ];
    let v = build_virtual_tree(&targets);
    let names: Vec<String> = v
        .children
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let flat = build_virtual_tree(&[PathBuf::from("../p/x"), PathBuf::from("x")]);
    let names: Vec<String> = flat
        .children
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["p", "x"]);
    let dup = build_virtual_tree(&[PathBuf::from("../x"), PathBuf::from("x")]);
    let names: Vec<String> = dup
        .children
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["x", "x-1"]);
}

/// The key compatibility test: restic and restix back up the same folder
/// into the same repository and must produce the same tree IDs.
#[test]
fn tree_ids_equal_restics() {
    if Command::new("restic").arg("version").output().is_err() {
        restix_testkit::skip("restic", "apt-get install restic");
        return;
    }
    if restix_repo_format::time::local_offset_at(0) != 0
        || restix_repo_format::time::local_offset_at(1_800_000_000) != 0
    {
        restix_testkit::skip(
            "a UTC local time zone",
            "run the tests with TZ=UTC, as restic's comparison needs",
        );
        return;
    }
    let t = TempDir::new("vsrestic");
    let src = make_source(&t.0);
    let repo_dir = t.0.join("repo");
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args([
                "-r",
                repo_dir.to_str().unwrap(),
                "--no-cache",
                "--json",
                "-q",
            ])
            .args(args)
            .env("RESTIC_PASSWORD", "pw")
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    restic(&["init", "--repository-version", "2"]);
    restic(&["backup", src.to_str().unwrap()]);
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&repo_dir));
    let repo = Arc::new(Repository::open(be, b"pw", None).unwrap());
    repo.load_index().unwrap();
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let theirs = find_node(&repo, snaps[0].1.tree.unwrap(), &src);
    let mut archiver = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads: 2,
            ..Default::default()
        },
    );
    let s = archiver
        .backup(std::slice::from_ref(&src), &NoProgress)
        .unwrap();
    let ours = find_node(&repo, s.snapshot.tree.unwrap(), &src);
    if ours.subtree != theirs.subtree {
        let a = repo.load_tree(&theirs.subtree.unwrap()).unwrap();
        let b = repo.load_tree(&ours.subtree.unwrap()).unwrap();
        let enc = |t: &Tree| String::from_utf8_lossy(&t.encode().unwrap()).replace("},{", "},\n{");
        panic!("tree differs:\nrestic: {}\nrestix: {}", enc(&a), enc(&b));
    }
    assert_eq!(ours, theirs);
    // Intermediate directories carry the real metadata, like restic's.
    assert_eq!(
        find_node(&repo, s.snapshot.tree.unwrap(), &t.0),
        find_node(&repo, snaps[0].1.tree.unwrap(), &t.0)
    );
    // restic accepts what we wrote.
    restic(&["check", "--read-data"]);
}

/// Throughput of one large file (run with `--release -- --ignored`); checks
/// that the parallel path and the sequential path agree on a file large
/// enough to be split into several segments.
#[test]
#[ignore]
fn large_file_throughput() {
    let t = TempDir::new("large");
    let src = t.0.join("src");
    std::fs::create_dir(&src).unwrap();
    let mut data = pseudo_random(3, 128 << 20);
    data.extend(vec![0u8; 64 << 20]);
    data.extend(pseudo_random(4, 64 << 20));
    std::fs::write(src.join("disk.img"), &data).unwrap();
    drop(data);
    let repo = Arc::new(new_repo(&t.0, 2));
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let cpu = || {
        // SAFETY: rusage is plain data; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a rusage struct.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    let cpu0 = cpu();
    let started = Instant::now();
    let s = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads,
            ..Default::default()
        },
    )
    .backup(std::slice::from_ref(&src), &NoProgress)
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "parallel: {} MiB in {secs:.2} s = {:.0} MiB/s ({threads} threads)",
        s.total_bytes_processed >> 20,
        (s.total_bytes_processed >> 20) as f64 / secs
    );
    eprintln!("CPU: {:.2} s per GiB", (cpu() - cpu0) * 4.0);
    let cpu1 = cpu();
    let started = Instant::now();
    let s2 = Archiver::new(
        Arc::clone(&repo),
        ArchiveOptions {
            threads: 1,
            force: true,
            ..Default::default()
        },
    )
    .backup(std::slice::from_ref(&src), &NoProgress)
    .unwrap();
    eprintln!(
        "sequential (all blobs known): {:.2} s, CPU {:.2} s per GiB",
        started.elapsed().as_secs_f64(),
        (cpu() - cpu1) * 4.0
    );
    assert_eq!(
        find_node(&repo, s.snapshot.tree.unwrap(), &src).subtree,
        find_node(&repo, s2.snapshot.tree.unwrap(), &src).subtree
    );
}

#[test]
fn errors_read_like_go() {
    let e = std::io::Error::from_raw_os_error(libc::EACCES);
    assert_eq!(crate::go_error::io_text(&e), "permission denied");
    let e = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(crate::go_error::io_text(&e), "no such file or directory");
}
