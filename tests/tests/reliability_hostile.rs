//! Hostile repositories: valid ciphertext (made with the repository's own
//! key through the repo-format encoders) around hostile content. restix must
//! refuse it without panicking (no exit 101, no "panicked" on stderr), with
//! bounded memory (peak RSS of the child, from `wait4`'s rusage), with a
//! non-zero exit and an error that names the problem, and a restore must
//! never write outside its target folder (the target's parent folder is
//! compared before and after).
//!
//! Cases, one repository each (a copy of a freshly initialised one):
//! * a pack header claiming huge blob lengths / more blobs than fit, and a
//!   pack whose trailer claims a 4 GiB header;
//! * index entries pointing past the end of their pack (and a 4 GiB length);
//! * tree cycles (a tree whose directory's subtree is itself, directly or
//!   through a second tree; stored under IDs their content does not hash to,
//!   the only way to make a cycle in a content-addressed repository);
//! * a tree with 10^6 entries (accepted where that is legitimate, in bounded
//!   memory), and the same with one duplicate name (refused);
//! * node names `/`, `..`, `a/b`, `.`, empty and with NUL, at the root and
//!   one level down (a `..` directory holding a file is the escape attempt);
//! * symlinks pointing outside the target, then a second snapshot with a
//!   directory and files under the symlinks' names restored into the same
//!   target.
//!
//! Each case runs `check` (`--read-data` too), `restore`, `ls`, `dump`,
//! `find` and `stats`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use restix_engine::backend::local::LocalBackend;
use restix_engine::backend::{Backend, FileType};
use restix_engine::repository::Repository;
use restix_repo_format::pack::{append_encrypted_header, encode_header};
use restix_repo_format::{
    BlobType, GoTime, Id, IndexBlob, IndexFile, IndexPack, PackBlob, Snapshot,
};
use restix_tests::harness::{self, Sandbox, PASSWORD};
use serde_json::{json, Value};

/// Generous bound on any command's peak resident memory.
const MAX_RSS_BYTES: u64 = 1 << 30;

/// Whether `restix check` validates node names (empty, `.`, `..`, `/`, NUL,
/// duplicates). `engine/src/check.rs` does not yet; see the reliability
/// report for the one-line fix. Until then, `check` on such trees is only
/// required not to crash and to stay in bounded memory.
const CHECK_VALIDATES_NAMES: bool = true;

/// Go `os.FileMode` bits for the node types used here.
const MODE_DIR: u64 = (1 << 31) | 0o755;
const MODE_SYMLINK: u64 = (1 << 27) | 0o777;
const MODE_FILE: u64 = 0o644;

// ---------------------------------------------------------------------------
// Crafting repositories
// ---------------------------------------------------------------------------

/// Writes hostile content into a repository with its own key.
struct Crafter {
    repo: Repository,
}

impl Crafter {
    fn open(dir: &Path) -> Crafter {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir));
        let repo = Repository::open(backend, PASSWORD.as_bytes(), None).unwrap();
        Crafter { repo }
    }

    /// Stores `bytes` as a pack under its SHA-256 name.
    fn put_pack_file(&self, bytes: &[u8]) -> Id {
        let id = Id::hash(bytes);
        self.repo
            .backend()
            .write(FileType::Pack, &id.to_hex(), bytes)
            .unwrap();
        id
    }

    /// A well-formed pack holding `blobs` (type, claimed ID, plaintext),
    /// stored uncompressed under the given IDs (which need not be the
    /// plaintext's hash). Returns the pack ID and its index entries.
    fn put_pack(&self, blobs: &[(BlobType, Id, Vec<u8>)]) -> (Id, Vec<IndexBlob>) {
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        for (blob_type, id, plain) in blobs {
            let sealed = self.repo.key().encrypt(plain);
            entries.push(PackBlob {
                blob_type: *blob_type,
                id: *id,
                offset: bytes.len() as u64,
                length: sealed.len() as u32,
                uncompressed_length: None,
            });
            bytes.extend_from_slice(&sealed);
        }
        append_encrypted_header(self.repo.key(), &encode_header(&entries), &mut bytes);
        let pack = self.put_pack_file(&bytes);
        (pack, entries.into_iter().map(IndexBlob::from).collect())
    }

    /// An index file listing `packs`.
    fn put_index(&self, packs: Vec<(Id, Vec<IndexBlob>)>) -> Id {
        let index = IndexFile {
            supersedes: None,
            packs: packs
                .into_iter()
                .map(|(id, blobs)| IndexPack { id, blobs })
                .collect(),
        };
        self.repo
            .save_unpacked(FileType::Index, &index.to_json())
            .unwrap()
    }

    /// A snapshot of `tree`.
    fn put_snapshot(&self, tree: Id) -> String {
        let snapshot = Snapshot {
            time: GoTime::from_unix_utc(1_700_000_000, 0),
            tree: Some(tree),
            paths: vec!["/hostile".into()],
            hostname: "hostile".into(),
            username: "mallory".into(),
            ..Snapshot::default()
        };
        self.repo
            .save_unpacked(FileType::Snapshot, &snapshot.to_json().unwrap())
            .unwrap()
            .to_hex()
    }

    /// Trees (honest IDs) and data blobs in one pack plus its index.
    fn put_blobs(&self, blobs: Vec<(BlobType, Vec<u8>)>) -> Vec<Id> {
        let with_ids: Vec<_> = blobs
            .into_iter()
            .map(|(t, b)| (t, Id::hash(&b), b))
            .collect();
        let ids = with_ids.iter().map(|(_, id, _)| *id).collect();
        let (pack, entries) = self.put_pack(&with_ids);
        self.put_index(vec![(pack, entries)]);
        ids
    }
}

/// Tree JSON as restic writes it (a trailing newline).
fn tree_json(nodes: Vec<Value>) -> Vec<u8> {
    let mut v = serde_json::to_vec(&json!({ "nodes": nodes })).unwrap();
    v.push(b'\n');
    v
}

fn file_node(name: &str, content: &[Id], size: u64) -> Value {
    json!({
        "name": name, "type": "file", "mode": MODE_FILE,
        "mtime": "2024-01-01T00:00:00Z", "atime": "2024-01-01T00:00:00Z",
        "ctime": "2024-01-01T00:00:00Z", "uid": 0, "gid": 0,
        "size": size, "links": 1,
        "content": content.iter().map(Id::to_hex).collect::<Vec<_>>(),
    })
}

fn dir_node(name: &str, subtree: &Id) -> Value {
    json!({
        "name": name, "type": "dir", "mode": MODE_DIR,
        "mtime": "2024-01-01T00:00:00Z", "atime": "2024-01-01T00:00:00Z",
        "ctime": "2024-01-01T00:00:00Z", "uid": 0, "gid": 0,
        "content": null, "subtree": subtree.to_hex(),
    })
}

fn symlink_node(name: &str, target: &str) -> Value {
    json!({
        "name": name, "type": "symlink", "mode": MODE_SYMLINK,
        "mtime": "2024-01-01T00:00:00Z", "atime": "2024-01-01T00:00:00Z",
        "ctime": "2024-01-01T00:00:00Z", "uid": 0, "gid": 0,
        "linktarget": target, "content": null,
    })
}

// ---------------------------------------------------------------------------
// Running restix with resource accounting
// ---------------------------------------------------------------------------

struct Outcome {
    cmdline: String,
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    max_rss: u64,
}

impl Outcome {
    fn describe(&self) -> String {
        let out = String::from_utf8_lossy(&self.stdout);
        let out: String = out.chars().take(4000).collect();
        let err: String = self.stderr.chars().take(8000).collect();
        format!(
            "$ {}\n-> code {:?} signal {:?}, peak RSS {} MiB\n--- stdout ({} bytes) ---\n{out}\n--- stderr ---\n{err}\n---",
            self.cmdline,
            self.code,
            self.signal,
            self.max_rss >> 20,
            self.stdout.len()
        )
    }

    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs restix with the sandbox environment, stdout and stderr to files,
/// and returns its exit status and peak RSS (`wait4`). Killed after 300 s.
fn restix(sb: &Sandbox, args: &[&str]) -> Outcome {
    let n = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::SeqCst)
    };
    let out_path = sb.join(format!("cmd{n}.out"));
    let err_path = sb.join(format!("cmd{n}.err"));
    // A child's peak RSS as wait4 reports it includes the memory of the
    // process it was forked from (Linux carries the old mm's high-water mark
    // over exec), and this test process holds large crafted trees. GNU time
    // forks restix from its own small process and reports restix's own peak.
    let rss_path = sb.join(format!("cmd{n}.rss"));
    let gnu_time = Path::new("/usr/bin/time");
    let mut cmd = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_path)
            .arg(harness::restix_bin());
        c
    } else {
        Command::new(harness::restix_bin())
    };
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"RESTIC_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .env("HOME", sb.join("home"))
        .env("RESTIC_CACHE_DIR", sb.join("cache"))
        .env("RUST_BACKTRACE", "0")
        .current_dir(sb.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let cmdline = format!("restix {}", args.join(" "));
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for _ in 0..3000 {
                if done.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // SAFETY: kill(2) on our own child's pid, which is not reaped
            // before `done` is set, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        })
    };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid with valid pointers to locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    done.store(true, Ordering::SeqCst);
    let hung = watchdog.join().unwrap();
    assert_eq!(rc, pid, "wait4 failed for {cmdline}");
    drop(child);
    let stdout = fs::read(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let mut code = libc::WIFEXITED(status).then_some(libc::WEXITSTATUS(status));
    let mut signal = libc::WIFSIGNALED(status).then_some(libc::WTERMSIG(status));
    // ru_maxrss and GNU time's %M are in KiB.
    let mut max_rss_kib = usage.ru_maxrss.max(0) as u64;
    if let Ok(report) = fs::read_to_string(&rss_path) {
        // "Command terminated by signal N" precedes the %M line if killed.
        if let Some(rest) = report.split("terminated by signal ").nth(1) {
            signal = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            code = None;
        }
        if let Some(kib) = report.lines().last().and_then(|l| l.trim().parse().ok()) {
            max_rss_kib = kib;
        }
    }
    for p in [&out_path, &err_path, &rss_path] {
        let _ = fs::remove_file(p);
    }
    let outcome = Outcome {
        cmdline,
        code,
        signal,
        stdout,
        stderr,
        max_rss: max_rss_kib * 1024,
    };
    assert!(!hung, "hung (killed after 300 s):\n{}", outcome.describe());
    assert!(
        outcome.signal.is_none()
            && outcome.code != Some(101)
            && !outcome.stderr.contains("panicked"),
        "crashed:\n{}",
        outcome.describe()
    );
    assert!(
        outcome.max_rss < MAX_RSS_BYTES,
        "used too much memory:\n{}",
        outcome.describe()
    );
    outcome
}

// ---------------------------------------------------------------------------
// Restore containment
// ---------------------------------------------------------------------------

/// Everything under `dir` except `dir/target`: path -> (type, size, mtime).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (String, u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if d == dir && e.file_name() == OsStr::new("target") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let kind = format!("{:?}", m.file_type());
            out.insert(p.clone(), (kind, m.len(), m.mtime()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A case folder `sb/<name>` holding a sentinel file, with a restore target
/// `target` inside that does not exist yet.
struct Case {
    root: PathBuf,
    repo: PathBuf,
    before: BTreeMap<PathBuf, (String, u64, i64)>,
}

impl Case {
    fn new(sb: &Sandbox, template: &Path, name: &str) -> Case {
        let root = sb.join(name);
        fs::create_dir_all(root.join("keep")).unwrap();
        fs::write(root.join("keep/sentinel"), b"must stay").unwrap();
        let repo = sb.join(format!("repo-{name}"));
        harness::copy_dir(template, &repo);
        Case {
            before: listing(&root),
            root,
            repo,
        }
    }

    fn r(&self) -> &str {
        harness::s(&self.repo)
    }

    fn target(&self) -> PathBuf {
        self.root.join("target")
    }

    fn t(&self) -> String {
        harness::s(&self.target()).to_string()
    }

    /// Nothing outside `target` changed.
    #[track_caller]
    fn assert_contained(&self) {
        let after = listing(&self.root);
        assert_eq!(
            self.before,
            after,
            "restore wrote outside its target folder {}",
            self.target().display()
        );
        // Nothing outside the case folder either (escape by `..` twice).
        let parent = self.root.parent().unwrap();
        for name in ["escape", "evil", "pwned"] {
            assert!(
                !parent.join(name).exists(),
                "restore wrote {}",
                parent.join(name).display()
            );
        }
    }
}

/// An initialised repository whose only key uses cheap scrypt parameters
/// (N=128, r=1, as restic's own tests): the many runs below need no costly
/// key derivation.
fn template(sb: &Sandbox) -> PathBuf {
    let t = sb.join("template");
    sb.restix(["init", "-r", harness::s(&t)]).ok();
    harness::use_cheap_key(&t);
    t
}

/// Runs the read-only commands on `snap` and requires that none crashes or
/// blows memory; returns the outcomes by command name.
fn survey(sb: &Sandbox, case: &Case, snap: &str, file: &str) -> BTreeMap<&'static str, Outcome> {
    let r = case.r();
    let mut out = BTreeMap::new();
    out.insert("check", restix(sb, &["-r", r, "check"]));
    out.insert(
        "check-read-data",
        restix(sb, &["-r", r, "check", "--read-data"]),
    );
    out.insert("ls", restix(sb, &["-r", r, "ls", snap]));
    out.insert("dump", restix(sb, &["-r", r, "dump", snap, file]));
    out.insert("dump-all", restix(sb, &["-r", r, "dump", snap, "/"]));
    out.insert("find", restix(sb, &["-r", r, "find", "*"]));
    out.insert("stats", restix(sb, &["-r", r, "stats", snap]));
    out.insert(
        "stats-raw",
        restix(sb, &["-r", r, "stats", "--mode", "raw-data", snap]),
    );
    let t = case.t();
    out.insert(
        "restore",
        restix(sb, &["-r", r, "restore", snap, "--target", &t]),
    );
    case.assert_contained();
    for (name, run) in &out {
        eprintln!(
            "  {name}: code {:?}, peak RSS {} MiB: {}",
            run.code,
            run.max_rss >> 20,
            run.stderr.lines().last().unwrap_or("")
        );
    }
    out
}

#[track_caller]
fn assert_failed_naming(outcomes: &BTreeMap<&str, Outcome>, which: &[&str], words: &[&str]) {
    for name in which {
        let run = &outcomes[name];
        let err = run.stderr.to_lowercase();
        assert!(
            !run.success(),
            "{name}: hostile input was accepted:\n{}",
            run.describe()
        );
        assert!(
            words.iter().any(|w| err.contains(&w.to_lowercase())),
            "{name}: the error does not name the problem (want one of {words:?}):\n{}",
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[test]
fn pack_headers_with_huge_lengths_are_refused() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);
    let case = Case::new(&sb, &tpl, "huge-header");
    let c = Crafter::open(&case.repo);
    let key = c.repo.key().clone();

    let data = b"honest file content".to_vec();
    let data_id = Id::hash(&data);
    let sealed = key.encrypt(&data);
    // Pack 1: one real blob, but the header claims 4 GiB for it and lists
    // 5000 more blobs of 4 GiB each in a file of a few hundred KB.
    let mut claims = vec![PackBlob {
        blob_type: BlobType::Data,
        id: data_id,
        offset: 0,
        length: u32::MAX - 16,
        uncompressed_length: None,
    }];
    for i in 0..5000u32 {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        claims.push(PackBlob {
            blob_type: BlobType::Data,
            id: Id(id),
            offset: 0,
            length: u32::MAX - 16,
            uncompressed_length: Some(u32::MAX),
        });
    }
    let mut pack1 = sealed.clone();
    append_encrypted_header(&key, &encode_header(&claims), &mut pack1);
    let pack1_id = c.put_pack_file(&pack1);
    // Pack 2: the trailer claims a header of 4 GiB.
    let mut pack2 = sealed.clone();
    append_encrypted_header(&key, &encode_header(&claims[..1]), &mut pack2);
    let n = pack2.len();
    pack2[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let pack2_id = c.put_pack_file(&pack2);
    // The index is honest about where the blob is (so restore can work).
    let entry = IndexBlob {
        id: data_id,
        blob_type: BlobType::Data,
        offset: 0,
        length: sealed.len() as u32,
        uncompressed_length: None,
    };
    let tree = tree_json(vec![file_node("file", &[data_id], data.len() as u64)]);
    let tree_id = Id::hash(&tree);
    let (tree_pack, tree_entries) = c.put_pack(&[(BlobType::Tree, tree_id, tree)]);
    c.put_index(vec![
        (pack1_id, vec![entry]),
        (pack2_id, vec![entry]),
        (tree_pack, tree_entries),
    ]);
    let snap = c.put_snapshot(tree_id);
    drop(c);

    let runs = survey(&sb, &case, &snap, "/file");
    let names = [&pack1_id.to_hex()[..8], &pack2_id.to_hex()[..8]];
    let run = &runs["check-read-data"];
    assert!(
        !run.success(),
        "check --read-data accepted:\n{}",
        run.describe()
    );
    for name in names {
        assert!(
            run.stderr.contains(name) || String::from_utf8_lossy(&run.stdout).contains(name),
            "check --read-data does not name pack {name}:\n{}",
            run.describe()
        );
    }
    // The pack headers are not needed to restore: the blob itself is sound.
    let restored = fs::read(case.target().join("file"));
    if runs["restore"].success() {
        assert_eq!(restored.unwrap(), data);
    }
    // Rebuilding the index from the pack headers must refuse both.
    let repair = restix(
        &sb,
        &["-r", case.r(), "repair", "index", "--read-all-packs"],
    );
    eprintln!("repair index: {}", repair.describe());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&repair.stdout),
        repair.stderr
    );
    for name in names {
        assert!(
            text.contains(name),
            "repair index does not name pack {name}:\n{}",
            repair.describe()
        );
    }
}

#[test]
fn index_entries_past_the_pack_end_are_refused() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);
    let case = Case::new(&sb, &tpl, "past-end");
    let c = Crafter::open(&case.repo);

    let good = b"good content".to_vec();
    let bad1 = b"bad content one".to_vec();
    let bad2 = b"bad content two".to_vec();
    let ids: Vec<Id> = [&good, &bad1, &bad2].iter().map(|b| Id::hash(b)).collect();
    let (pack, mut entries) = c.put_pack(&[
        (BlobType::Data, ids[0], good.clone()),
        (BlobType::Data, ids[1], bad1.clone()),
        (BlobType::Data, ids[2], bad2.clone()),
    ]);
    entries[1].offset = 1_000_000_000;
    entries[2].length = u32::MAX;
    let tree = tree_json(vec![
        file_node("bad1", &[ids[1]], bad1.len() as u64),
        file_node("bad2", &[ids[2]], bad2.len() as u64),
        file_node("good", &[ids[0]], good.len() as u64),
    ]);
    let tree_id = Id::hash(&tree);
    let (tree_pack, tree_entries) = c.put_pack(&[(BlobType::Tree, tree_id, tree)]);
    c.put_index(vec![(pack, entries), (tree_pack, tree_entries)]);
    let snap = c.put_snapshot(tree_id);
    drop(c);

    let runs = survey(&sb, &case, &snap, "/bad1");
    let pack8 = &pack.to_hex()[..8];
    assert_failed_naming(
        &runs,
        &["check-read-data", "dump", "restore"],
        &[pack8, "bad1", "short read", "past", "beyond", "exceeds"],
    );
    assert_failed_naming(&runs, &["restore"], &["bad1"]);
    // The good file is restored; the bad ones are not left behind as if good.
    assert_eq!(fs::read(case.target().join("good")).unwrap(), good);
    for bad in ["bad1", "bad2"] {
        let p = case.target().join(bad);
        assert!(
            !p.exists(),
            "{bad} was left in the target although its blob is unreadable"
        );
    }
    let dump = restix(&sb, &["-r", case.r(), "dump", &snap, "/bad2"]);
    assert!(
        !dump.success(),
        "dump of bad2 succeeded:\n{}",
        dump.describe()
    );
    let cat = restix(&sb, &["-r", case.r(), "cat", "blob", &ids[1].to_hex()]);
    assert!(!cat.success(), "cat blob succeeded:\n{}", cat.describe());
}

#[test]
fn tree_cycles_are_refused() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);

    // Direct: tree X holds a directory whose subtree is X.
    let case = Case::new(&sb, &tpl, "cycle-direct");
    let c = Crafter::open(&case.repo);
    let x = Id::hash(b"claimed id of the self-containing tree");
    let tree = tree_json(vec![dir_node("loop", &x)]);
    let (pack, entries) = c.put_pack(&[(BlobType::Tree, x, tree)]);
    c.put_index(vec![(pack, entries)]);
    let snap = c.put_snapshot(x);
    drop(c);
    let runs = survey(&sb, &case, &snap, "/loop/loop/file");
    let words = ["cycle", "does not match", "mismatch", &x.to_hex()[..8]];
    assert_failed_naming(
        &runs,
        &["check", "ls", "restore", "dump", "dump-all", "stats"],
        &words,
    );

    // Through a second tree: root R -> dir a (tree A) -> dir b (tree B) -> dir
    // back (tree A). R is honest; A and B lie about their IDs.
    let case = Case::new(&sb, &tpl, "cycle-indirect");
    let c = Crafter::open(&case.repo);
    let a = Id::hash(b"claimed id of tree A");
    let b = Id::hash(b"claimed id of tree B");
    let tree_a = tree_json(vec![dir_node("b", &b)]);
    let tree_b = tree_json(vec![dir_node("back", &a)]);
    let root = tree_json(vec![dir_node("a", &a)]);
    let root_id = Id::hash(&root);
    let (pack, entries) = c.put_pack(&[
        (BlobType::Tree, a, tree_a),
        (BlobType::Tree, b, tree_b),
        (BlobType::Tree, root_id, root),
    ]);
    c.put_index(vec![(pack, entries)]);
    let snap = c.put_snapshot(root_id);
    drop(c);
    let runs = survey(&sb, &case, &snap, "/a/b/back/b/file");
    let words = ["cycle", "does not match", "mismatch", &a.to_hex()[..8]];
    assert_failed_naming(
        &runs,
        &["check", "ls", "restore", "dump-all", "stats"],
        &words,
    );
}

/// 10^6 entries: `{"name":"f0000000","type":"file",...}` minimal nodes.
fn million_nodes(duplicate: bool) -> Vec<u8> {
    let mut json = Vec::with_capacity(60_000_000);
    json.extend_from_slice(br#"{"nodes":["#);
    for i in 0..1_000_000u32 {
        if i > 0 {
            json.push(b',');
        }
        let n = if duplicate && i == 999_999 {
            999_998
        } else {
            i
        };
        json.extend_from_slice(
            format!(r#"{{"name":"f{n:07}","type":"file","content":[]}}"#).as_bytes(),
        );
    }
    json.extend_from_slice(b"]}\n");
    json
}

#[test]
fn a_tree_with_a_million_entries_takes_bounded_memory() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);

    // Unique names: a legitimate (if huge) folder. Browsing it must work in
    // bounded memory; a filtered restore creates only what it selects.
    let case = Case::new(&sb, &tpl, "million");
    let c = Crafter::open(&case.repo);
    let ids = c.put_blobs(vec![(BlobType::Tree, million_nodes(false))]);
    let snap = c.put_snapshot(ids[0]);
    drop(c);
    let r = case.r();
    let ls = restix(&sb, &["-r", r, "ls", &snap]);
    assert!(ls.success(), "{}", ls.describe());
    let listed = ls
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"/f"))
        .count();
    assert_eq!(listed, 1_000_000, "ls lists every entry");
    eprintln!("ls of 10^6 entries: peak RSS {} MiB", ls.max_rss >> 20);
    for args in [
        vec!["-r", r, "check"],
        vec!["-r", r, "find", "f0999999"],
        vec!["-r", r, "stats", &snap],
        vec!["-r", r, "dump", &snap, "/f0000007"],
    ] {
        let run = restix(&sb, &args);
        eprintln!(
            "{}: code {:?}, peak RSS {} MiB",
            run.cmdline,
            run.code,
            run.max_rss >> 20
        );
        assert!(run.success(), "{}", run.describe());
    }
    let t = case.t();
    let run = restix(
        &sb,
        &[
            "-r",
            r,
            "restore",
            &snap,
            "--target",
            &t,
            "--include",
            "/f0000007",
        ],
    );
    eprintln!("restore --include: peak RSS {} MiB", run.max_rss >> 20);
    assert!(run.success(), "{}", run.describe());
    assert!(case.target().join("f0000007").is_file());
    case.assert_contained();

    // One duplicate name: refused as a whole, nothing restored.
    let case = Case::new(&sb, &tpl, "million-dup");
    let c = Crafter::open(&case.repo);
    let ids = c.put_blobs(vec![(BlobType::Tree, million_nodes(true))]);
    let snap = c.put_snapshot(ids[0]);
    drop(c);
    // Not the whole survey: `find '*'` would list all 10^6 nodes (it holds
    // every hit before printing, ~860 MiB here).
    let r = case.r();
    let t = case.t();
    let mut runs = BTreeMap::new();
    runs.insert("check", restix(&sb, &["-r", r, "check"]));
    runs.insert("ls", restix(&sb, &["-r", r, "ls", &snap]));
    runs.insert("dump-all", restix(&sb, &["-r", r, "dump", &snap, "/"]));
    runs.insert(
        "restore",
        restix(&sb, &["-r", r, "restore", &snap, "--target", &t]),
    );
    case.assert_contained();
    let mut which = vec!["ls", "restore", "dump-all"];
    if CHECK_VALIDATES_NAMES {
        which.push("check");
    }
    assert_failed_naming(&runs, &which, &["duplicate"]);
}

#[test]
fn hostile_node_names_are_refused_and_nothing_escapes() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);
    let content = b"escaped!".to_vec();
    let content_id = Id::hash(&content);
    for (label, bad) in [
        ("slash", "/"),
        ("dotdot", ".."),
        ("a-slash-b", "a/b"),
        ("dot", "."),
        ("empty", ""),
        ("nul", "x\0y"),
        ("dotdot-slash", "../escape"),
    ] {
        for level in ["root", "nested"] {
            let name = format!("name-{label}-{level}");
            eprintln!("case {name}");
            let case = Case::new(&sb, &tpl, &name);
            let c = Crafter::open(&case.repo);
            // The hostile entry as a directory holding `escape` and `evil`
            // (the escape attempt), and as a plain file in a second tree.
            let inner = tree_json(vec![
                file_node("escape", &[content_id], content.len() as u64),
                file_node("evil", &[content_id], content.len() as u64),
            ]);
            let inner_id = Id::hash(&inner);
            let mut nodes = vec![
                dir_node(bad, &inner_id),
                file_node("zz-good", &[content_id], content.len() as u64),
            ];
            nodes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let hostile = tree_json(nodes);
            let hostile_id = Id::hash(&hostile);
            let mut blobs = vec![
                (BlobType::Data, content.clone()),
                (BlobType::Tree, inner),
                (BlobType::Tree, hostile),
            ];
            let root_id = if level == "root" {
                hostile_id
            } else {
                let root = tree_json(vec![
                    file_node("a-good", &[content_id], content.len() as u64),
                    dir_node("sub", &hostile_id),
                ]);
                let id = Id::hash(&root);
                blobs.push((BlobType::Tree, root));
                id
            };
            c.put_blobs(blobs);
            let snap = c.put_snapshot(root_id);
            drop(c);
            let runs = survey(&sb, &case, &snap, "/zz-good");
            let mut which = vec!["ls", "restore", "dump-all"];
            if CHECK_VALIDATES_NAMES {
                which.push("check");
            }
            assert_failed_naming(&runs, &which, &["invalid", "name"]);
            if level == "nested" {
                // The rest of the snapshot is restored.
                assert_eq!(fs::read(case.target().join("a-good")).unwrap(), content);
            }
        }
    }
}

#[test]
fn symlinks_pointing_outside_are_never_followed() {
    harness::require_restic!();
    let sb = Sandbox::new();
    let tpl = template(&sb);
    let case = Case::new(&sb, &tpl, "symlinks");
    let c = Crafter::open(&case.repo);
    let content = b"pwned".to_vec();
    let content_id = Id::hash(&content);
    let outside = harness::s(&case.root).to_string();
    let keep = format!("{outside}/keep");
    // Snapshot 1: symlinks to the target's parent, `..`, and a file outside.
    let first = tree_json(vec![
        symlink_node("abs", &outside),
        symlink_node("file", &format!("{keep}/sentinel")),
        symlink_node("keep", &keep),
        symlink_node("up", ".."),
    ]);
    // Snapshot 2: folders and files under the same names.
    let inner = tree_json(vec![
        file_node("pwned", &[content_id], content.len() as u64),
        file_node("sentinel", &[content_id], content.len() as u64),
    ]);
    let inner_id = Id::hash(&inner);
    let second = tree_json(vec![
        dir_node("abs", &inner_id),
        file_node("file", &[content_id], content.len() as u64),
        dir_node("keep", &inner_id),
        dir_node("up", &inner_id),
    ]);
    // Snapshot 3: a symlink and a folder with the same name in one tree.
    let both = tree_json(vec![dir_node("up", &inner_id), symlink_node("up", "..")]);
    let ids = c.put_blobs(vec![
        (BlobType::Data, content.clone()),
        (BlobType::Tree, first),
        (BlobType::Tree, inner),
        (BlobType::Tree, second),
        (BlobType::Tree, both),
    ]);
    let snap1 = c.put_snapshot(ids[1]);
    let snap2 = c.put_snapshot(ids[3]);
    let snap3 = c.put_snapshot(ids[4]);
    drop(c);
    let r = case.r();
    let t = case.t();
    let run = restix(&sb, &["-r", r, "restore", &snap1, "--target", &t]);
    assert!(run.success(), "{}", run.describe());
    assert_eq!(
        fs::read_link(case.target().join("up")).unwrap(),
        Path::new("..")
    );
    let run = restix(&sb, &["-r", r, "restore", &snap2, "--target", &t]);
    eprintln!("second restore: {}", run.describe());
    case.assert_contained();
    assert_eq!(
        fs::read(case.root.join("keep/sentinel")).unwrap(),
        b"must stay"
    );
    if run.success() {
        // The symlinks were replaced by real folders inside the target.
        assert!(fs::symlink_metadata(case.target().join("up"))
            .unwrap()
            .is_dir());
        assert_eq!(fs::read(case.target().join("up/pwned")).unwrap(), content);
    }
    let runs = survey(&sb, &case, &snap3, "/up");
    let mut which = vec!["ls", "restore", "dump-all"];
    if CHECK_VALIDATES_NAMES {
        which.push("check");
    }
    assert_failed_naming(&runs, &which, &["duplicate"]);
    assert_eq!(
        fs::read(case.root.join("keep/sentinel")).unwrap(),
        b"must stay"
    );
}
