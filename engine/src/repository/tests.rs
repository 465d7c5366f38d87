//! Repository tests against real files (local backend) and restic's fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use restix_repo_format::{BlobType, GoTime, Id, Lock, ScryptParams, Snapshot};

use super::*;
use crate::backend::local::LocalBackend;

pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        restix_repo_format::random_bytes(&mut r);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let p = std::env::temp_dir().join(format!("restix-{tag}-{hex}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chmod")
            .arg("-R")
            .arg("u+w")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn new_repo(dir: &Path, version: u32) -> Repository {
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.join("repo")));
    Repository::init(be, b"pw", version, None, ScryptParams::fast_for_tests()).unwrap()
}

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

#[test]
fn init_open_and_errors() {
    let t = TempDir::new("init");
    let repo = new_repo(&t.0, 2);
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(t.0.join("repo")));
    let opened = Repository::open(Arc::clone(&be), b"pw", None).unwrap();
    assert_eq!(opened.config(), repo.config());
    assert_eq!(opened.version(), 2);
    assert_eq!(opened.key_id(), repo.key_id());
    assert!(opened.polynomial().is_irreducible());
    assert!(matches!(
        Repository::open(Arc::clone(&be), b"wrong", None),
        Err(RepoError::WrongPassword)
    ));
    assert_eq!(
        RepoError::WrongPassword.to_string(),
        "wrong password or no key found"
    );
    let hint = repo.key_id().to_hex();
    Repository::open(Arc::clone(&be), b"pw", Some(&hint[..8])).unwrap();
    assert!(matches!(
        Repository::init(
            Arc::clone(&be),
            b"pw",
            2,
            None,
            ScryptParams::fast_for_tests()
        ),
        Err(RepoError::AlreadyExists { .. })
    ));
    let missing: Arc<dyn Backend> = Arc::new(LocalBackend::new(t.0.join("nope")));
    let err = Repository::open(missing, b"pw", None).unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("unable to open config file: stat "),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("/nope/config: no such file or directory"),
        "{err}"
    );
    // The polynomial is kept when given.
    let t2 = TempDir::new("init2");
    let be2: Arc<dyn Backend> = Arc::new(LocalBackend::new(t2.0.join("r")));
    let r2 = Repository::init(
        be2,
        b"pw",
        1,
        Some(0x3DA3358B4DC173),
        ScryptParams::fast_for_tests(),
    )
    .unwrap();
    assert_eq!(r2.config().chunker_polynomial, 0x3DA3358B4DC173);
    assert_eq!(r2.version(), 1);
}

fn save_load_cycle(version: u32) {
    let t = TempDir::new("saveload");
    let repo = Arc::new(new_repo(&t.0, version));
    repo.set_pack_size_unchecked(40_000);
    let blobs: Vec<Vec<u8>> = (0..40)
        .map(|i| pseudo_random(i, 5_000 + i as usize * 50))
        .collect();
    // Concurrent saves, each blob twice: exactly one of the two stores it.
    let results: Vec<(Id, bool, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let repo = Arc::clone(&repo);
                let blobs = &blobs;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, b) in blobs.iter().enumerate() {
                        if i % 2 == w % 2 {
                            out.push(repo.save_blob(BlobType::Data, b, None).unwrap());
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.iter().filter(|r| r.1).count(), 40);
    assert!(results.iter().filter(|r| !r.1).all(|r| r.2 == 0));
    let tree_json = b"{\"nodes\":[]}\n".to_vec();
    let (tree_id, new, _) = repo.save_blob(BlobType::Tree, &tree_json, None).unwrap();
    assert!(new);
    // An empty blob is never compressed.
    let (empty_id, _, empty_size) = repo.save_blob(BlobType::Data, b"", None).unwrap();
    assert_eq!(empty_size, 32);
    let index_files = repo.flush().unwrap();
    assert!(!index_files.is_empty());
    // Index files only reference packs that exist.
    let packs = repo.list_files(FileType::Pack).unwrap();
    assert!(packs.len() >= 4, "{} packs", packs.len());
    for idx in repo.list_files(FileType::Index).unwrap() {
        let file =
            restix_repo_format::IndexFile::parse(&repo.load_file(FileType::Index, &idx).unwrap())
                .unwrap();
        for p in file.packs {
            assert!(packs.contains(&p.id));
        }
    }
    // Data and tree blobs are in separate packs.
    for p in &packs {
        let header = repo.read_pack_header(p).unwrap();
        assert!(header.iter().all(|b| b.blob_type == header[0].blob_type));
        for b in header {
            let loc = repo.lookup(b.blob_type, &b.id).unwrap();
            assert_eq!(
                (loc.pack, u64::from(loc.offset), loc.length),
                (*p, b.offset, b.length)
            );
            if version == 1 {
                assert!(b.uncompressed_length.is_none());
            }
        }
    }
    // Dedup after flush.
    assert!(!repo.save_blob(BlobType::Data, &blobs[3], None).unwrap().1);
    // Re-open and read everything back.
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(t.0.join("repo")));
    let again = Repository::open(be, b"pw", None).unwrap();
    again.load_index().unwrap();
    for b in &blobs {
        assert_eq!(&again.load_blob(BlobType::Data, &Id::hash(b)).unwrap(), b);
    }
    assert_eq!(again.load_blob(BlobType::Data, &empty_id).unwrap(), b"");
    assert!(again.load_tree(&tree_id).unwrap().nodes.is_empty());
    assert!(matches!(
        again.load_blob(BlobType::Tree, &Id::hash(&blobs[0])),
        Err(RepoError::BlobNotFound { .. })
    ));
    // Several blobs of one pack in one read.
    let pack = packs
        .iter()
        .find(|p| again.read_pack_header(p).unwrap()[0].blob_type == BlobType::Data)
        .unwrap();
    let wanted: Vec<_> = again
        .read_pack_header(pack)
        .unwrap()
        .into_iter()
        .map(|b| (b.blob_type, b.id, again.lookup(b.blob_type, &b.id).unwrap()))
        .collect();
    for (r, (_, id, _)) in again
        .load_blobs_from_pack(pack, &wanted)
        .unwrap()
        .into_iter()
        .zip(&wanted)
    {
        assert_eq!(Id::hash(&r.unwrap()), *id);
    }
    // Snapshots: only after flush; list, load, find by prefix.
    let snap = Snapshot {
        time: GoTime::now_local(),
        tree: Some(tree_id),
        paths: vec!["/x".into()],
        hostname: "h".into(),
        ..Snapshot::default()
    };
    let sid = again.save_snapshot(&snap).unwrap();
    assert_eq!(again.list_snapshots().unwrap(), vec![(sid, snap.clone())]);
    assert_eq!(again.find_snapshot(&sid.to_hex()[..6]).unwrap(), sid);
    assert_eq!(
        again.find_snapshot("zz").unwrap_err().to_string(),
        "no matching ID found for prefix \"zz\""
    );
}

#[test]
fn save_load_v2() {
    save_load_cycle(2);
}

#[test]
fn save_load_v1() {
    save_load_cycle(1);
}

#[test]
fn sealed_packs_store_new_blobs_once() {
    let t = TempDir::new("sealed");
    let repo = new_repo(&t.0, 2);
    // Three packs' worth at a 64 KiB pack size.
    repo.set_pack_size_unchecked(64 * 1024);
    let level = repo.blob_level(BlobType::Data, 1).unwrap();
    let plain: Vec<Vec<u8>> = (0..5).map(|i| pseudo_random(100 + i, 40_000)).collect();
    let frames: Vec<(Id, usize, Vec<u8>)> = plain
        .iter()
        .map(|p| (Id::hash(p), p.len(), compress_blob(level, p).unwrap()))
        .collect();
    // Blob 1 is stored already; blob 3 is sealed twice.
    repo.save_blob(BlobType::Data, &plain[1], None).unwrap();
    repo.flush().unwrap();
    let order = [0usize, 1, 2, 3, 3, 4];
    let sealed = repo
        .seal_packs(
            level,
            order
                .iter()
                .map(|&i| (frames[i].0, frames[i].1, frames[i].2.as_slice())),
        )
        .unwrap()
        .unwrap();
    assert_eq!(sealed.blob_count(), 6);
    let saved = repo.save_sealed_packs(sealed).unwrap();
    let new: Vec<bool> = saved.iter().map(|(_, new, _)| *new).collect();
    assert_eq!(new, [true, false, true, true, false, true]);
    for ((id, new, stored), &i) in saved.iter().zip(&order) {
        assert_eq!(*id, frames[i].0);
        assert_eq!(*stored > 0, *new);
    }
    repo.flush().unwrap();
    // Every blob reads back, from a reopened repository too.
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(t.0.join("repo")));
    let reopened = Repository::open(be, b"pw", None).unwrap();
    reopened.load_index().unwrap();
    for (p, (id, _, _)) in plain.iter().zip(&frames) {
        assert_eq!(&reopened.load_blob(BlobType::Data, id).unwrap(), p);
        assert_eq!(reopened.lookup_all(BlobType::Data, id).len(), 1);
    }
    // Nothing is stored for sealed packs dropped unsaved, and a version 1
    // repository (no compression) refuses compressed frames.
    let before = reopened.list_packs().len();
    drop(reopened.seal_packs(level, [(frames[0].0, 1, &frames[0].2[..])]));
    reopened.flush().unwrap();
    assert_eq!(reopened.list_packs().len(), before);
    let v1 = new_repo(&t.0.join("v1"), 1);
    assert!(v1
        .seal_packs(level, [(frames[0].0, frames[0].1, &frames[0].2[..])])
        .unwrap()
        .is_none());
}

#[test]
fn corrupt_blob_is_reported_with_pack() {
    let t = TempDir::new("corrupt");
    let repo = new_repo(&t.0, 2);
    let (id, _, _) = repo
        .save_blob(BlobType::Data, pseudo_random(1, 1000), None)
        .unwrap();
    repo.flush().unwrap();
    let loc = repo.lookup(BlobType::Data, &id).unwrap();
    let path =
        t.0.join("repo")
            .join(FileType::Pack.relative_path(&loc.pack.to_hex()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    match repo.load_blob(BlobType::Data, &id) {
        Err(RepoError::BlobCorrupt {
            blob, pack, reason, ..
        }) => {
            assert_eq!((blob, pack), (id, loc.pack));
            assert!(reason.contains("verification failed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn locks_conflict_and_clean_up() {
    let t = TempDir::new("lock");
    let repo = new_repo(&t.0, 2);
    let a = repo.lock(false).unwrap();
    let b = repo.lock(false).unwrap();
    assert_eq!(repo.list_files(FileType::Lock).unwrap().len(), 2);
    let err = repo.lock(true).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("unable to create lock in backend: repository is already locked by PID "),
        "{text}"
    );
    assert!(text.contains("\nlock was created at "), "{text}");
    assert!(text.contains("\nstorage ID "), "{text}");
    drop(a);
    b.release().unwrap();
    assert!(repo.list_files(FileType::Lock).unwrap().is_empty());
    let x = repo.lock(true).unwrap();
    let id = x.lock_file_id();
    let err = repo.lock(false).unwrap_err();
    assert!(
        err.to_string()
            .contains("already locked exclusively by PID"),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with(&format!("storage ID {}", id.short())),
        "{err}"
    );
    assert_eq!(remove_held_locks(), 1);
    assert!(repo.list_files(FileType::Lock).unwrap().is_empty());
    drop(x);
    // A lock of a dead process on this host is stale.
    let dead = Lock {
        time: GoTime::now_local(),
        exclusive: true,
        hostname: os_identity::hostname(),
        username: "u".into(),
        pid: 999_999_999,
        uid: 0,
        gid: 0,
    };
    repo.save_unpacked(FileType::Lock, &dead.to_json().unwrap())
        .unwrap();
    let live = Lock {
        pid: i64::from(std::process::id()),
        ..dead.clone()
    };
    repo.save_unpacked(FileType::Lock, &live.to_json().unwrap())
        .unwrap();
    assert!(matches!(repo.lock(false), Err(LockError::Locked { .. })));
    assert_eq!(lock::remove_stale_locks(&repo).unwrap(), 1);
    assert_eq!(lock::remove_all_locks(&repo).unwrap(), 1);
    // Empty lock files are ignored.
    repo.backend()
        .write(FileType::Lock, &Id::hash(b"").to_hex(), b"")
        .unwrap();
    drop(repo.lock(true).unwrap());
}

pub(crate) fn fixtures_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RESTIX_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    let dir = dir.join("restic-upstream");
    dir.is_dir().then_some(dir)
}

fn untar(tarball: &Path, into: &Path) -> PathBuf {
    let ok = std::process::Command::new("tar")
        .arg("xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap()
        .success();
    assert!(ok, "untar {}", tarball.display());
    // Most tarballs hold `repo/`; find the folder with a `config` file.
    let mut stack = vec![into.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("config").is_file() && d.join("keys").is_dir() {
            return d;
        }
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    panic!("no repository in {}", tarball.display());
}

#[test]
fn reads_every_upstream_fixture() {
    let Some(dir) = fixtures_dir() else {
        restix_testkit::skip(
            "fixtures",
            "set RESTIX_FIXTURES or provide ../shared/fixtures",
        );
        return;
    };
    // Damaged on purpose: trees may be unreadable.
    let damaged = [
        "repo-data-missing",
        "repo-unused-data-missing",
        "repo-index-missing",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".tar.gz") else {
            continue;
        };
        if stem == "backup-data" || stem == "test.hl" {
            continue;
        }
        let t = TempDir::new("fixture");
        let root = untar(&entry.path(), &t.0);
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&root));
        // scrypt with the fixtures' N=65536 is slow: check one wrong password only.
        if stem == "small-repo" {
            assert!(matches!(
                Repository::open(Arc::clone(&be), b"wrong", None),
                Err(RepoError::WrongPassword)
            ));
        }
        let repo = Repository::open(be, b"geheim", None).unwrap_or_else(|e| panic!("{stem}: {e}"));
        repo.load_index().unwrap_or_else(|e| panic!("{stem}: {e}"));
        let snaps = repo
            .list_snapshots()
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mut todo: Vec<Id> = snaps.iter().filter_map(|(_, s)| s.tree).collect();
        let mut seen = std::collections::HashSet::new();
        let mut failures = Vec::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            match repo.load_tree(&id) {
                Ok(tree) => {
                    for n in tree.nodes {
                        todo.extend(n.subtree);
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !damaged.contains(&stem) {
            assert!(failures.is_empty(), "{stem}: {failures:?}");
        }
        // Every indexed pack that exists has a header matching the index.
        for pack in repo.list_packs().iter().take(5) {
            if let Ok(header) = repo.read_pack_header(pack) {
                for b in header {
                    assert!(
                        repo.lookup_all(b.blob_type, &b.id)
                            .iter()
                            .any(|l| l.pack == *pack),
                        "{stem}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} fixtures");
}

/// Saves the little-endian bytes of each number in `range` as a data blob.
fn save_numbered(repo: &Repository, range: std::ops::Range<u32>) -> Vec<Id> {
    range
        .map(|i| {
            repo.save_blob(BlobType::Data, i.to_le_bytes(), None)
                .unwrap()
                .0
        })
        .collect()
}

/// The cache's segments as `(entries, index files)`, oldest first.
fn cache_segments(r: &Repository) -> Vec<(u64, usize)> {
    lock_mutex(&r.shared.index_cache)
        .cache
        .as_ref()
        .map(|(_, m)| {
            m.segments
                .iter()
                .map(|s| (s.entries, s.files.len()))
                .collect()
        })
        .unwrap_or_default()
}

fn is_mapped(r: &Repository) -> bool {
    r.shared.index_read().mapped.is_some()
}

/// Every file of a folder tree, read.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn index_cache_covers_listed_files_only() {
    let t = TempDir::new("index-cache");
    let repo = new_repo(&t.0, 2);
    let first = save_numbered(&repo, 0..1200);
    repo.flush().unwrap();
    let cache = t.0.join("cache").join("repo.index");
    let open = || {
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(t.0.join("repo")));
        let r = Repository::open(be, b"pw", None).unwrap();
        r.use_index_cache(cache.clone());
        r.load_index().unwrap();
        r
    };
    // The first load builds the cache, and the index is mapped from it:
    // nothing of the repository's index in memory.
    let built = open();
    assert!(is_mapped(&built));
    assert!(built.shared.index_read().memory.is_empty());
    assert_eq!(cache_segments(&built), vec![(1200, 1)]);
    let cached = open();
    assert_eq!(cache_segments(&cached), vec![(1200, 1)]);
    for id in &first {
        assert_eq!(cached.load_blob(BlobType::Data, id).unwrap(), {
            let (i, _) = first.iter().enumerate().find(|(_, x)| *x == id).unwrap();
            (i as u32).to_le_bytes().to_vec()
        });
    }
    // Nothing readable without the key: no blob or pack ID in any file.
    let pack = cached.lookup(BlobType::Data, &first[0]).unwrap().pack;
    for (path, bytes) in all_files(&cache) {
        for needle in [first[0], first[1199], pack] {
            assert!(!bytes.windows(16).any(|w| w == &needle.0[..16]), "{path:?}");
        }
    }

    // A backup's blobs join as a small segment when it is done; the next
    // load parses nothing.
    let second = save_numbered(&cached, 5000..5010);
    cached.flush().unwrap();
    cached.refresh_index_cache();
    assert_eq!(cache_segments(&cached), vec![(1200, 1), (10, 1)]);
    let both = open();
    assert_eq!(cache_segments(&both), vec![(1200, 1), (10, 1)]);
    for id in first.iter().chain(&second) {
        assert_eq!(both.lookup_all(BlobType::Data, id).len(), 1, "{id:?}");
    }
    // Index files written by another process are added at the next load
    // (and merged, the policy says so here).
    let third = save_numbered(&repo, 9000..9500);
    repo.flush().unwrap();
    let merged = open();
    assert_eq!(cache_segments(&merged), vec![(1710, 3)]);
    assert!(merged.has_blob(BlobType::Data, &third[0]));
    assert!(merged.has_blob(BlobType::Data, &second[9]));

    // A covered index file that is gone (prune rewrote the index): its
    // segment is dropped, so its blobs are not found either, and the
    // others are built anew.
    let first_file = repo.list_files(FileType::Index).unwrap();
    let first_file = first_file
        .iter()
        .find(|f| {
            let json = repo.load_file(FileType::Index, f).unwrap();
            IndexFile::parse(&json).unwrap().blob_count() == 1200
        })
        .copied()
        .unwrap();
    repo.backend()
        .remove(FileType::Index, &first_file.to_hex())
        .unwrap();
    let pruned = open();
    assert!(!pruned.has_blob(BlobType::Data, &first[0]));
    assert!(pruned.has_blob(BlobType::Data, &third[0]));
    assert!(pruned.has_blob(BlobType::Data, &second[0]));
    assert_eq!(cache_segments(&pruned), vec![(510, 2)]);
    let segment_files = || {
        all_files(&cache)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "seg"))
            .collect::<Vec<_>>()
    };
    assert_eq!(segment_files().len(), 1, "the replaced segment is removed");

    // A damaged segment: the load maps it (its header is intact), the
    // first lookup that touches the damage distrusts the whole cache and
    // answers from the index files; the next load builds it anew.
    let (path, mut bytes) = segment_files().pop().unwrap();
    bytes[4096 + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let damaged = open();
    assert!(is_mapped(&damaged));
    for id in third.iter().chain(&second) {
        assert!(damaged.has_blob(BlobType::Data, id), "{id:?}");
        assert_eq!(damaged.lookup_all(BlobType::Data, id).len(), 1);
    }
    assert!(!is_mapped(&damaged));
    assert!(!path.exists(), "the damaged cache is removed");
    damaged.refresh_index_cache();
    let rebuilt = open();
    assert_eq!(cache_segments(&rebuilt), vec![(510, 2)]);
    assert!(rebuilt.has_blob(BlobType::Data, &third[499]));

    // Another repository's cache in its place: not read, rebuilt.
    let other = TempDir::new("index-cache-other");
    let other_repo = new_repo(&other.0, 2);
    save_numbered(&other_repo, 0..1200);
    other_repo.flush().unwrap();
    let other_cache = other.0.join("cache");
    other_repo.use_index_cache(other_cache.clone());
    other_repo.load_index().unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::rename(&other_cache, &cache).unwrap();
    let swapped = open();
    assert_eq!(cache_segments(&swapped), vec![(510, 2)]);
    assert!(!swapped.has_blob(BlobType::Data, &first[0]));
    assert!(swapped.has_blob(BlobType::Data, &third[0]));
    // Truncated: the same.
    let (path, bytes) = segment_files().pop().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4096]).unwrap();
    let truncated = open();
    assert_eq!(cache_segments(&truncated), vec![(510, 2)]);
    assert!(truncated.has_blob(BlobType::Data, &second[3]));

    // with_index and list_packs see the whole index.
    let n = truncated.with_index(|i| i.len(BlobType::Data));
    assert_eq!(n, 510);
    assert_eq!(truncated.list_packs().len(), repo_packs(&truncated));
}

fn repo_packs(r: &Repository) -> usize {
    let mut packs = std::collections::HashSet::new();
    for f in r.list_files(FileType::Index).unwrap() {
        let json = r.load_file(FileType::Index, &f).unwrap();
        for p in IndexFile::parse(&json).unwrap().packs {
            packs.insert(p.id);
        }
    }
    packs.len()
}

/// A local backend that records the writes reaching it: `write <type>`
/// or `ordered <type>,<type>,...`.
struct RecordingWrites {
    inner: LocalBackend,
    writes: Mutex<Vec<String>>,
}

impl Backend for RecordingWrites {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> crate::backend::BackendResult<()> {
        self.inner.create()
    }
    fn list(&self, t: FileType) -> crate::backend::BackendResult<Vec<crate::backend::FileInfo>> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> crate::backend::BackendResult<Vec<u8>> {
        self.inner.read(t, name)
    }
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> crate::backend::BackendResult<Vec<u8>> {
        self.inner.read_range(t, name, offset, length)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> crate::backend::BackendResult<()> {
        lock_mutex(&self.writes).push(format!("write {t}"));
        self.inner.write(t, name, data)
    }
    fn write_in_order(
        &self,
        files: &[(FileType, &str, &[u8])],
    ) -> crate::backend::BackendResult<()> {
        let types: Vec<String> = files.iter().map(|(t, _, _)| t.to_string()).collect();
        lock_mutex(&self.writes).push(format!("ordered {}", types.join(",")));
        for (t, name, data) in files {
            self.inner.write(*t, name, data)?;
        }
        Ok(())
    }
    fn remove(&self, t: FileType, name: &str) -> crate::backend::BackendResult<()> {
        self.inner.remove(t, name)
    }
    fn stat(
        &self,
        t: FileType,
        name: &str,
    ) -> crate::backend::BackendResult<crate::backend::FileInfo> {
        self.inner.stat(t, name)
    }
}

/// `flush_and_save_snapshot` stores the index files and the snapshot with
/// one ordered write, index first; the snapshot and its blobs read back
/// from a reopened repository; the index files count as written by this
/// process (for the index cache). Without pending packs, only the
/// snapshot is written; `flush` alone writes the index files in order too.
#[test]
fn flush_and_save_snapshot_writes_index_then_snapshot_at_once() {
    let t = TempDir::new("ordered");
    new_repo(&t.0, 2);
    let recording = Arc::new(RecordingWrites {
        inner: LocalBackend::new(t.0.join("repo")),
        writes: Mutex::new(Vec::new()),
    });
    let be: Arc<dyn Backend> = recording.clone();
    let repo = Repository::open(be, b"pw", None).unwrap();
    repo.load_index().unwrap();
    let data = pseudo_random(7, 10_000);
    let (blob, _, _) = repo.save_blob(BlobType::Data, &data, None).unwrap();
    repo.finish_packs().unwrap();
    lock_mutex(&recording.writes).clear();
    let snapshot = Snapshot {
        time: GoTime::from_unix_utc(1_700_000_000, 0),
        tree: Some(blob),
        paths: vec!["/data".into()],
        ..Snapshot::default()
    };
    let id = repo.flush_and_save_snapshot(&snapshot).unwrap();
    assert_eq!(*lock_mutex(&recording.writes), ["ordered index,snapshot"]);
    assert_eq!(lock_mutex(&repo.shared.index_cache).written.len(), 1);
    assert_eq!(repo.list_files(FileType::Snapshot).unwrap(), vec![id]);

    let reopened =
        Repository::open(Arc::new(LocalBackend::new(t.0.join("repo"))), b"pw", None).unwrap();
    reopened.load_index().unwrap();
    assert_eq!(reopened.load_snapshot(&id).unwrap().tree, Some(blob));
    assert_eq!(reopened.load_blob(BlobType::Data, &blob).unwrap(), data);

    // Nothing pending: the snapshot alone; flush writes nothing at all.
    lock_mutex(&recording.writes).clear();
    repo.flush_and_save_snapshot(&snapshot).unwrap();
    assert!(repo.flush().unwrap().is_empty());
    assert_eq!(*lock_mutex(&recording.writes), ["ordered snapshot"]);
}
