//! The tree pack cache against a real repository in a local folder; a
//! counting wrapper around the backend shows which reads reach it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use restix_repo_format::{BlobType, Id, ScryptParams};
use sha2::{Digest, Sha256};

use super::*;
use crate::backend::local::LocalBackend;
use crate::backend::{BackendResult, FileInfo};
use crate::repository::tests::TempDir;
use crate::repository::{RepoError, Repository};

/// A local backend that counts reads of packs.
struct Counting {
    inner: LocalBackend,
    pack_reads: AtomicUsize,
    pack_stats: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> usize {
        self.pack_reads.load(Ordering::SeqCst)
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        self.inner.create()
    }
    fn list(&self, t: FileType) -> BackendResult<Vec<FileInfo>> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> BackendResult<Vec<u8>> {
        if t == FileType::Pack {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.read(t, name)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>> {
        if t == FileType::Pack {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.read_range(t, name, offset, len)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.write(t, name, data)
    }
    fn remove(&self, t: FileType, name: &str) -> BackendResult<()> {
        self.inner.remove(t, name)
    }
    fn stat(&self, t: FileType, name: &str) -> BackendResult<FileInfo> {
        if t == FileType::Pack {
            self.pack_stats.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.stat(t, name)
    }
}

/// A repository holding `trees` tree blobs (in one pack) and one data
/// blob, and the tree blobs' IDs and contents.
struct Fixture {
    dir: TempDir,
    trees: Vec<(Id, Vec<u8>)>,
}

impl Fixture {
    fn new(tag: &str, trees: u32) -> Fixture {
        let dir = TempDir::new(tag);
        let repo = Repository::init(
            Arc::new(LocalBackend::new(dir.0.join("repo"))),
            b"pw",
            2,
            None,
            ScryptParams::fast_for_tests(),
        )
        .unwrap();
        let trees = (0..trees)
            .map(|i| {
                let body = format!("{{\"nodes\":[],\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(500));
                let (id, _, _) = repo
                    .save_blob(BlobType::Tree, body.as_bytes(), None)
                    .unwrap();
                (id, body.into_bytes())
            })
            .collect();
        repo.save_blob(BlobType::Data, b"some file content", None)
            .unwrap();
        repo.flush().unwrap();
        Fixture { dir, trees }
    }

    fn cache_base(&self) -> PathBuf {
        self.dir.0.join("cache")
    }

    /// A freshly opened repository (another process, as it were) with its
    /// index loaded, reading through a counting backend; with the cache
    /// folder when `cached`.
    fn open(&self, cached: bool) -> (Repository, Arc<Counting>) {
        let backend = Arc::new(Counting {
            inner: LocalBackend::new(self.dir.0.join("repo")),
            pack_reads: AtomicUsize::new(0),
            pack_stats: AtomicUsize::new(0),
        });
        let repo = Repository::open(backend.clone(), b"pw", None).unwrap();
        if cached {
            repo.use_tree_pack_cache(&self.cache_base()).unwrap();
        }
        repo.load_index().unwrap();
        (repo, backend)
    }

    fn tree_pack(&self, repo: &Repository) -> Id {
        repo.lookup(BlobType::Tree, &self.trees[0].0).unwrap().pack
    }

    fn load_all(&self, repo: &Repository) {
        for (id, body) in &self.trees {
            assert_eq!(&repo.load_blob(BlobType::Tree, id).unwrap(), body);
        }
    }
}

fn sha(path: &Path) -> Id {
    Id(Sha256::digest(std::fs::read(path).unwrap()).into())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn miss_fetches_the_pack_once_then_hits() {
    let f = Fixture::new("packcache-hit", 30);
    let (repo, backend) = f.open(true);
    let pack = f.tree_pack(&repo);
    f.load_all(&repo);
    // One whole read of the pack (after a stat), then every tree from the file.
    assert_eq!(backend.reads(), 1);
    assert_eq!(backend.pack_stats.load(Ordering::SeqCst), 1);
    let path = repo.tree_pack_cache_path(&pack).unwrap();
    let hex = pack.to_hex();
    let repo_dir = f.cache_base().join(&repo.config().id);
    assert_eq!(path, repo_dir.join("data").join(&hex[..2]).join(&hex));
    assert_eq!(sha(&path), pack);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&repo_dir), 0o700);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("version")).unwrap(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(f.cache_base().join("CACHEDIR.TAG")).unwrap(),
        CACHEDIR_TAG
    );
    for sub in LAYOUT {
        assert!(repo_dir.join(sub).is_dir());
    }
    // Another process reads nothing from the backend.
    let (again, backend) = f.open(true);
    f.load_all(&again);
    assert_eq!(backend.reads(), 0);
    // Data blobs are not cached.
    let files: Vec<Id> = DiskPacks { dir: repo_dir }.list();
    assert_eq!(files, vec![pack]);
}

#[test]
fn damaged_or_foreign_cached_file_is_replaced() {
    let f = Fixture::new("packcache-damaged", 10);
    let (repo, _) = f.open(true);
    f.load_all(&repo);
    let pack = f.tree_pack(&repo);
    let path = repo.tree_pack_cache_path(&pack).unwrap();
    // A flipped byte in the middle of the first tree.
    let loc = repo.lookup(BlobType::Tree, &f.trees[0].0).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + 20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (again, backend) = f.open(true);
    f.load_all(&again);
    assert_eq!(backend.reads(), 1, "fetched anew once");
    assert_eq!(sha(&path), pack, "the damaged copy was replaced");
    // A foreign file of the same size (another repository's, say).
    std::fs::write(&path, vec![7u8; bytes.len()]).unwrap();
    let (again, backend) = f.open(true);
    f.load_all(&again);
    assert_eq!(backend.reads(), 1);
    assert_eq!(sha(&path), pack);
    // A truncated one.
    std::fs::write(&path, &bytes[..10]).unwrap();
    let (again, _) = f.open(true);
    f.load_all(&again);
    assert_eq!(sha(&path), pack);
}

#[test]
fn a_pack_failing_twice_is_left_to_ranged_reads() {
    let f = Fixture::new("packcache-breaker", 3);
    let (repo, backend) = f.open(true);
    let pack = f.tree_pack(&repo);
    let cache = &repo.shared.tree_packs;
    cache.forget(&pack);
    cache.forget(&pack);
    f.load_all(&repo);
    assert_eq!(backend.reads(), 3, "one ranged read per tree");
    assert!(!repo.tree_pack_cache_path(&pack).unwrap().exists());
}

#[test]
fn pack_not_matching_its_id_is_never_cached() {
    let f = Fixture::new("packcache-sha", 5);
    let (repo, backend) = f.open(true);
    let pack = f.tree_pack(&repo);
    // Damage the last tree in the repository's pack.
    let (bad_id, _) = f.trees[4].clone();
    let loc = repo.lookup(BlobType::Tree, &bad_id).unwrap();
    let on_disk = f
        .dir
        .0
        .join("repo/data")
        .join(&pack.to_hex()[..2])
        .join(pack.to_hex());
    let mut bytes = std::fs::read(&on_disk).unwrap();
    bytes[loc.offset as usize + 20] ^= 1;
    std::fs::set_permissions(&on_disk, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&on_disk, &bytes).unwrap();
    // The intact trees still load (by range), the damaged one fails.
    for (id, body) in &f.trees[..4] {
        assert_eq!(&repo.load_blob(BlobType::Tree, id).unwrap(), body);
    }
    assert!(matches!(
        repo.load_blob(BlobType::Tree, &bad_id),
        Err(RepoError::BlobCorrupt { .. })
    ));
    assert!(!repo.tree_pack_cache_path(&pack).unwrap().exists());
    // The whole pack was read once, then only ranges.
    assert_eq!(backend.reads(), 1 + 5);
}

#[test]
fn without_a_folder_packs_stay_in_bounded_memory() {
    let f = Fixture::new("packcache-memory", 20);
    let (repo, backend) = f.open(false);
    f.load_all(&repo);
    f.load_all(&repo);
    assert_eq!(backend.reads(), 1);
    assert_eq!(repo.shared.tree_packs.memory_packs(), 1);
    assert!(repo.tree_pack_cache_path(&f.tree_pack(&repo)).is_none());
    assert!(!f.cache_base().exists());

    // A budget of two packs of this size: a third pushes the oldest out.
    let size = backend
        .stat(FileType::Pack, &f.tree_pack(&repo).to_hex())
        .unwrap()
        .size;
    let cache = TreePackCache::new(2 * size + size / 2, MAX_CACHED_PACK);
    let g = Fixture::new("packcache-memory2", 20);
    let h = Fixture::new("packcache-memory3", 20);
    let mut packs = Vec::new();
    for fixture in [&f, &g, &h] {
        let (r, b) = fixture.open(false);
        let loc = r.lookup(BlobType::Tree, &fixture.trees[0].0).unwrap();
        let (_, source) = cache.ciphertext(b.as_ref(), &loc).unwrap();
        assert_eq!(source, Source::Fetched);
        let (_, source) = cache.ciphertext(b.as_ref(), &loc).unwrap();
        assert_eq!(source, Source::Kept);
        packs.push((b, loc));
    }
    assert_eq!(cache.memory_packs(), 2);
    assert!(cache.memory_bytes() <= 2 * size + size / 2);
    let (b, loc) = &packs[0];
    assert_eq!(
        cache.ciphertext(b.as_ref(), loc).unwrap().1,
        Source::Fetched
    );

    // A pack above the budget is not fetched whole: ranged reads.
    let tiny = TreePackCache::new(size / 2, MAX_CACHED_PACK);
    let (b, loc) = &packs[1];
    assert!(tiny.ciphertext(b.as_ref(), loc).is_none());
    assert_eq!(tiny.memory_packs(), 0);
}

#[test]
fn a_pack_above_the_limit_is_read_by_range() {
    let f = Fixture::new("packcache-huge", 4);
    let (repo, backend) = f.open(true);
    let loc = repo.lookup(BlobType::Tree, &f.trees[0].0).unwrap();
    let small_limit = TreePackCache::new(MEMORY_BUDGET, 100);
    small_limit.use_disk(DiskPacks::open(&f.cache_base(), &repo.config().id).unwrap());
    assert!(small_limit.ciphertext(backend.as_ref(), &loc).is_none());
    assert!(small_limit.ciphertext(backend.as_ref(), &loc).is_none());
    assert_eq!(backend.reads(), 0);
    assert_eq!(backend.pack_stats.load(Ordering::SeqCst), 1, "refused once");
    assert!(!repo.tree_pack_cache_path(&loc.pack).unwrap().exists());
}

#[test]
fn packs_the_index_does_not_list_are_removed() {
    let f = Fixture::new("packcache-clear", 4);
    let (repo, _) = f.open(true);
    f.load_all(&repo);
    let pack = f.tree_pack(&repo);
    let disk = repo.shared.tree_packs.disk().unwrap();
    let gone = Id::hash(b"a pack pruned by another process");
    disk.store(&gone, b"0123456789012345678901234567890123456789")
        .unwrap();
    let other_name = disk.path(&gone).with_file_name("tmp-123");
    std::fs::write(&other_name, b"x").unwrap();
    let left_over = disk.path(&gone).with_file_name("tmp-456");
    std::fs::write(&left_over, b"x").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&left_over)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    assert_eq!(disk.list().len(), 2);
    // In-memory index.
    repo.load_index().unwrap();
    assert_eq!(disk.list(), vec![pack]);
    assert!(other_name.exists(), "a temporary file being written stays");
    assert!(!left_over.exists(), "a temporary file left over goes");
    // Mapped index (the fixture's load was in memory: store after it).
    let (mapped, _) = f.open(true);
    disk.store(&gone, b"0123456789012345678901234567890123456789")
        .unwrap();
    assert_eq!(disk.list().len(), 2);
    mapped.use_index_cache(f.dir.0.join("index-cache"));
    mapped.load_index().unwrap();
    assert!(mapped.shared.index_read().mapped.is_some());
    assert_eq!(disk.list(), vec![pack]);
    // A removed pack's cached copy goes with it.
    mapped.remove_file(FileType::Pack, &pack).unwrap();
    assert!(disk.list().is_empty());
}

#[test]
fn written_tree_packs_are_cached() {
    let f = Fixture::new("packcache-written", 1);
    let (repo, _) = f.open(true);
    let (tree, _, _) = repo
        .save_blob(BlobType::Tree, b"{\"nodes\":[]}", None)
        .unwrap();
    repo.save_blob(BlobType::Data, b"more file content", None)
        .unwrap();
    repo.flush().unwrap();
    let pack = repo.lookup(BlobType::Tree, &tree).unwrap().pack;
    let disk = repo.shared.tree_packs.disk().unwrap();
    let cached = disk.list();
    assert!(cached.contains(&pack));
    assert_eq!(sha(&disk.path(&pack)), pack);
    let data_pack = repo
        .lookup(BlobType::Data, &Id::hash(b"more file content"))
        .unwrap()
        .pack;
    assert!(!cached.contains(&data_pack));
}

#[test]
fn a_newer_cache_version_is_refused() {
    let f = Fixture::new("packcache-version", 1);
    let (repo, _) = f.open(false);
    let dir = f.cache_base().join(&repo.config().id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("version"), "2").unwrap();
    assert!(matches!(
        repo.use_tree_pack_cache(&f.cache_base()),
        Err(PackCacheError::NewerVersion)
    ));
    assert!(repo.shared.tree_packs.disk().is_none());
}

#[test]
fn subtrees_packs_are_fetched_ahead_at_once() {
    use restix_repo_format::{Node, NodeType, Tree};
    let f = Fixture::new("packcache-ahead", 1);
    // Four subtrees, each in its own tree pack, and a root naming them.
    let writer = Repository::open(
        Arc::new(LocalBackend::new(f.dir.0.join("repo"))),
        b"pw",
        None,
    )
    .unwrap();
    writer.load_index().unwrap();
    let mut nodes = Vec::new();
    for i in 0..4u32 {
        let mut leaf = Node::new(format!("f{i}").into_bytes(), NodeType::File);
        leaf.content = Some(Vec::new());
        let sub = Tree { nodes: vec![leaf] };
        let (sub_id, _, _) = writer
            .save_blob(BlobType::Tree, sub.encode().unwrap(), None)
            .unwrap();
        writer.finish_open_pack(BlobType::Tree).unwrap();
        let mut dir = Node::new(format!("d{i}").into_bytes(), NodeType::Dir);
        dir.subtree = Some(sub_id);
        nodes.push(dir);
    }
    let (root, _, _) = writer
        .save_blob(BlobType::Tree, Tree { nodes }.encode().unwrap(), None)
        .unwrap();
    writer.flush().unwrap();

    let (repo, backend) = f.open(true);
    let tree = repo.load_tree(&root).unwrap();
    repo.shared.tree_packs.wait_for_fetch_ahead();
    let packs: BTreeSetOfIds = tree
        .nodes
        .iter()
        .map(|n| {
            repo.lookup(BlobType::Tree, &n.subtree.unwrap())
                .unwrap()
                .pack
        })
        .collect();
    assert_eq!(packs.len(), 4);
    for pack in &packs {
        let path = repo.tree_pack_cache_path(pack).unwrap();
        assert_eq!(sha(&path), *pack, "fetched ahead");
    }
    assert_eq!(backend.reads(), 5, "the root's pack and its subtrees' four");
    for node in &tree.nodes {
        repo.load_tree(&node.subtree.unwrap()).unwrap();
    }
    assert_eq!(backend.reads(), 5, "the subtrees from the cache");

    // Without a cache folder nothing is fetched ahead.
    let (memory, backend) = f.open(false);
    memory.load_tree(&root).unwrap();
    memory.shared.tree_packs.wait_for_fetch_ahead();
    assert_eq!(backend.reads(), 1);
}

type BTreeSetOfIds = std::collections::BTreeSet<Id>;
