//! Differential tests against the real `restic` binary (spec §17.3 item 5):
//! restic writes a version-2 repository with awkward file names that this
//! crate must decode (and re-encode every tree identically); and a
//! repository written only with this crate must pass `restic check
//! --read-data` and restore the right bytes. Skipped with a note when
//! `restic` is not installed.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{check_repo, temp_dir};
use restix_repo_format::compression::{CompressionMode, Compressor};
use restix_repo_format::pack::{append_encrypted_header, encode_header};
use restix_repo_format::unpacked::{encode_unpacked, encrypt_config};
use restix_repo_format::{
    BlobType, Config, GoTime, Id, IndexBlob, IndexFile, IndexPack, Key, KeyFile, Node, NodeType,
    PackBlob, ScryptParams, Snapshot, Tree,
};

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn restic(repo: &Path, args: &[&str]) -> Output {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", "geheim")
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn read_a_version_2_repository_written_by_restic() {
    if !restic_available() {
        restix_testkit::skip("restic", "apt-get install restic");
        return;
    }
    let tmp = temp_dir("restic-v2");
    let src = tmp.0.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // Names from spec §11.3 that restic 0.14 (Go 1.19, Unicode 13) encodes
    // like current restic (no \b/\f, no characters newer than Unicode 13).
    let names: &[&[u8]] = &[
        b"a\"b\\c <&>",
        b"nl\nname",
        b"ctl\x01\tname",
        b"bad\xff\xfeutf8",
        b"del\x7f",
        "nbsp\u{a0}".as_bytes(),
        "bom\u{feff}".as_bytes(),
        "\u{e0001}".as_bytes(),
        "ünïcödé ☃".as_bytes(),
        "emoji😀".as_bytes(),
        "sep\u{2028}".as_bytes(),
    ];
    for (i, n) in names.iter().enumerate() {
        let p = src.join(std::ffi::OsStr::from_bytes(n));
        std::fs::write(&p, vec![b'x'; i * 7]).unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes())
        .collect();
    std::fs::write(src.join("sub/big"), &big).unwrap();
    std::fs::write(src.join("sub/empty"), b"").unwrap();
    std::os::unix::fs::symlink("normal<target>", src.join("sub/link")).unwrap();
    let st = Command::new("mkfifo")
        .arg(src.join("sub/fifo"))
        .status()
        .unwrap();
    assert!(st.success());

    let repo = tmp.0.join("repo");
    restic(&repo, &["init", "--repository-version", "2"]);
    let out = Command::new("restic")
        .current_dir(&tmp.0)
        .args(["-r", "repo", "backup", "src"])
        .env("RESTIC_PASSWORD", "geheim")
        // Node times then carry +01:00/+02:00 offsets that must re-encode.
        .env("TZ", "Europe/Berlin")
        .env("RESTIC_CACHE_DIR", tmp.0.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = check_repo(&repo, 2);
    println!("{stats:?}");
    assert_eq!(stats.snapshots, 1);
    assert!(stats.trees >= 3, "{stats:?}");
    assert!(stats.blobs >= stats.trees + 3);
}

#[test]
fn restic_accepts_a_repository_written_by_this_crate() {
    if !restic_available() {
        restix_testkit::skip("restic", "apt-get install restic");
        return;
    }
    for version in [1u32, 2] {
        let tmp = temp_dir(&format!("write-v{version}"));
        let repo = tmp.0.join("repo");
        write_repo(&repo, version);
        restic(&repo, &["check", "--read-data"]);
        let ls = restic(&repo, &["ls", "latest"]);
        let listing = String::from_utf8_lossy(&ls.stdout);
        assert!(listing.contains("/data/f<1>&\"x\""), "{listing}");
        assert!(listing.contains("/data/empty"), "{listing}");
        let dump = restic(&repo, &["dump", "latest", "/data/f<1>&\"x\""]);
        assert!(
            dump.stdout == file_content(),
            "dump returned {} bytes",
            dump.stdout.len()
        );
        let cat = restic(&repo, &["cat", "masterkey"]);
        assert!(String::from_utf8_lossy(&cat.stdout).contains("\"encrypt\""));
    }
}

fn file_content() -> Vec<u8> {
    let mut v = b"hello restic, ".repeat(1000);
    v.extend_from_slice(&[0u8; 5000]);
    v
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Writes a pack of `blobs` (plaintexts); returns its ID and index entries.
fn write_pack(
    repo: &Path,
    key: &Key,
    version: u32,
    blob_type: BlobType,
    blobs: &[Vec<u8>],
) -> IndexPack {
    let mut pack = Vec::new();
    let mut entries = Vec::new();
    let mut zstd = Compressor::new(CompressionMode::Auto.level()).unwrap();
    for (i, plain) in blobs.iter().enumerate() {
        let offset = pack.len() as u64;
        // v2: compress all but the second blob (mixing is allowed, spec §4).
        let uncompressed_length = if version == 2 && i != 1 && !plain.is_empty() {
            key.encrypt_into(&zstd.compress(plain).unwrap(), &mut pack);
            Some(plain.len() as u32)
        } else {
            key.encrypt_into(plain, &mut pack);
            None
        };
        entries.push(PackBlob {
            blob_type,
            id: Id::hash(plain),
            offset,
            length: (pack.len() as u64 - offset) as u32,
            uncompressed_length,
        });
    }
    append_encrypted_header(key, &encode_header(&entries), &mut pack);
    let id = Id::hash(&pack);
    let hex = id.to_hex();
    write_file(&repo.join("data").join(&hex[..2]).join(&hex), &pack);
    IndexPack {
        id,
        blobs: entries
            .iter()
            .map(|e| IndexBlob {
                id: e.id,
                blob_type: e.blob_type,
                offset: e.offset,
                length: e.length,
                uncompressed_length: e.uncompressed_length,
            })
            .collect(),
    }
}

fn write_repo(repo: &Path, version: u32) {
    for d in ["keys", "locks", "snapshots", "index", "data"] {
        std::fs::create_dir_all(repo.join(d)).unwrap();
    }
    let key = Key::random();
    let now = GoTime::now_local();
    let kf = KeyFile::create(
        &key,
        b"geheim",
        ScryptParams::fast_for_tests(),
        "tester",
        "host<&>",
        now,
    )
    .unwrap();
    let kj = kf.to_json().unwrap();
    write_file(&repo.join("keys").join(Id::hash(&kj).to_hex()), &kj);
    let cfg = Config::new(version, 0x3da3358b4dc173);
    write_file(&repo.join("config"), &encrypt_config(&key, &cfg));

    let content = file_content();
    let chunks = vec![
        content[..7000].to_vec(),
        content[7000..15000].to_vec(),
        content[15000..].to_vec(),
    ];
    let data_pack = write_pack(repo, &key, version, BlobType::Data, &chunks);
    let ids: Vec<Id> = chunks.iter().map(|c| Id::hash(c)).collect();

    let mtime = GoTime::from_unix_nanos_local(1_700_000_000, 123_456_789);
    let mut file = Node::new(b"f<1>&\"x\"".to_vec(), NodeType::File);
    file.mode = 0o644;
    file.mtime = mtime;
    file.atime = mtime;
    file.ctime = mtime;
    file.uid = 1000;
    file.size = chunks.iter().map(|c| c.len() as u64).sum();
    file.links = 1;
    file.content = Some(ids);
    let mut empty = Node::new(b"empty".to_vec(), NodeType::File);
    empty.mode = 0o600;
    empty.content = Some(vec![]);
    empty.links = 1;
    let mut inner = Tree {
        nodes: vec![file, empty],
    };
    inner.sort();
    let (inner_bytes, inner_id) = inner.encode_with_id().unwrap();
    let mut dir = Node::new(b"data".to_vec(), NodeType::Dir);
    dir.mode = restix_repo_format::tree::go_mode_from_unix(0o040_755);
    dir.mtime = mtime;
    dir.atime = mtime;
    dir.ctime = mtime;
    dir.subtree = Some(inner_id);
    let root = Tree { nodes: vec![dir] };
    let (root_bytes, root_id) = root.encode_with_id().unwrap();
    let tree_pack = write_pack(
        repo,
        &key,
        version,
        BlobType::Tree,
        &[inner_bytes, root_bytes],
    );

    let index = IndexFile {
        supersedes: None,
        packs: vec![data_pack, tree_pack],
    };
    let enc = encode_unpacked(&key, version, &index.to_json());
    write_file(&repo.join("index").join(Id::hash(&enc).to_hex()), &enc);

    let snap = Snapshot {
        time: GoTime::now_local(),
        tree: Some(root_id),
        paths: vec!["/data".to_owned()],
        hostname: "host".to_owned(),
        username: "tester".to_owned(),
        tags: vec!["<t&g>".to_owned()],
        program_version: "restix test".to_owned(),
        ..Snapshot::default()
    };
    let enc = encode_unpacked(&key, version, &snap.to_json().unwrap());
    write_file(&repo.join("snapshots").join(Id::hash(&enc).to_hex()), &enc);
}
