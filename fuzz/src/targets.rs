//! The fuzz target bodies, shared by the cargo-fuzz binaries and the stable
//! regression test. A panic (or sanitizer report) is a finding; returned
//! errors are the expected outcome for hostile input.
//!
//! The includer provides `super::qcow2_api` re-exporting `DiskImage` and
//! `Qcow2Image`.

use restix_repo_format::compression::decompress as zstd_decompress;
use restix_repo_format::pack::{decode_pack_header, encode_header, parse_header, HeaderRead};
use restix_repo_format::unpacked::{decode_payload, decode_unpacked_with_limit, decrypt_config};
use restix_repo_format::{Config, IndexFile, Key, KeyFile, Lock, Snapshot, Tree};

use super::qcow2_api::{DiskImage, Qcow2Image};

/// Master key of `shared/fixtures/restic-upstream/small-repo` (password
/// `geheim`), so encrypted seed files taken from that repository decrypt.
pub const FIXTURE_MASTER_KEY: &[u8] = br#"{"mac":{"k":"TbkpCBdNYAvAwb+64r8VGw==","r":"Q5V1CnAvBQREgJAOQD40Bw=="},"encrypt":"SjCkTpms+XOUJR5LSsy2G+uO9ngG7H0L+IVwPV4u70A="}"#;

/// Password of the fixture repositories.
pub const FIXTURE_PASSWORD: &[u8] = b"geheim";

/// Decompression limit inside targets (keeps each run fast and small).
pub const LIMIT: usize = 1 << 20;

/// The fixture master key.
pub fn fixture_key() -> Key {
    match Key::from_json(FIXTURE_MASTER_KEY) {
        Ok(k) => k,
        Err(e) => panic!("fixture master key does not parse: {e}"),
    }
}

/// Encrypt with a fixed IV: targets must be deterministic.
fn seal(key: &Key, plain: &[u8]) -> Vec<u8> {
    key.encrypt_with_iv([0x5a; 16], plain)
}

/// Key files: parse, re-serialise, and open with the fixture password when
/// the scrypt parameters are cheap (the fuzzer must not pick N=2^30).
pub fn keyfile(data: &[u8]) {
    let _ = Key::from_json(data);
    let Ok(kf) = KeyFile::parse(data) else {
        return;
    };
    if let Ok(json) = kf.to_json() {
        assert!(
            KeyFile::parse(&json).is_ok(),
            "re-encoded key file does not parse"
        );
    }
    let p = kf.params();
    if p.n <= 1 << 12 && p.r <= 8 && p.p <= 2 {
        let _ = kf.open(FIXTURE_PASSWORD);
    }
}

/// The config file: plaintext JSON, encrypted as stored, and sealed by us.
pub fn config(data: &[u8]) {
    let key = fixture_key();
    if let Ok(c) = Config::parse(data) {
        let again = Config::parse(&c.to_json());
        assert_eq!(again.ok().as_ref(), Some(&c), "config JSON round trip");
    }
    let _ = decrypt_config(&key, data);
    let _ = decrypt_config(&key, &seal(&key, data));
}

/// AES-CTR + Poly1305: hostile ciphertexts never panic; sealed data opens.
pub fn decrypt(data: &[u8]) {
    let key = fixture_key();
    let _ = key.decrypt(data);
    let _ = key.verify(data);
    let sealed = seal(&key, data);
    assert_eq!(
        key.decrypt(&sealed).ok().as_deref(),
        Some(data),
        "seal/open round trip"
    );
    let mut buf = sealed;
    if let Some(last) = buf.last_mut() {
        *last ^= 1;
        assert!(
            key.decrypt(&buf).is_err(),
            "MAC accepted a modified ciphertext"
        );
    }
}

/// Pack headers: plaintext entries, raw pack tails, and sealed headers.
pub fn pack_header(data: &[u8]) {
    let key = fixture_key();
    let parsed = parse_header(data);
    if let Ok(blobs) = &parsed {
        let again = parse_header(&encode_header(blobs));
        assert_eq!(again.as_ref().ok(), Some(blobs), "pack header round trip");
    }
    // The input as the tail of a pack of several sizes.
    for extra in [0u64, 1, 4096] {
        let _ = decode_pack_header(&key, data, data.len() as u64 + extra);
    }
    // The input as a header plaintext, sealed and framed as restic does.
    let mut tail = seal(&key, data);
    let Ok(hlen) = u32::try_from(tail.len()) else {
        return;
    };
    tail.extend_from_slice(&hlen.to_le_bytes());
    let size = tail.len() as u64;
    match decode_pack_header(&key, &tail, size) {
        Ok(HeaderRead::Complete(h)) => {
            assert_eq!(Ok(h.blobs), parsed.map_err(|_| ()), "sealed header differs")
        }
        Ok(HeaderRead::NeedTail(n)) => panic!("whole pack given, still NeedTail({n})"),
        Err(_) => {}
    }
}

/// Index files (decrypted JSON): parse and re-encode.
pub fn index(data: &[u8]) {
    // The fast path for restic's own shape and serde_json accept the same
    // files and read the same packs from them.
    let parsed = IndexFile::parse(data);
    let general = IndexFile::parse_with_serde_only(data);
    assert_eq!(
        parsed.as_ref().ok().map(|i| &i.packs),
        general.as_ref().ok().map(|i| &i.packs),
        "fast path and serde_json disagree"
    );
    if let Ok(idx) = parsed {
        let _ = idx.blob_count();
        // `to_json` writes no `supersedes` (restix never supersedes index
        // files), so only the packs must survive the round trip.
        let again = IndexFile::parse(&idx.to_json());
        assert_eq!(
            again.ok().map(|i| i.packs).as_ref(),
            Some(&idx.packs),
            "index JSON round trip"
        );
    }
}

/// Snapshot files (decrypted JSON): parse and re-encode.
pub fn snapshot(data: &[u8]) {
    if let Ok(sn) = Snapshot::parse(data) {
        if let Ok(json) = sn.to_json() {
            let again = Snapshot::parse(&json);
            assert_eq!(again.ok().as_ref(), Some(&sn), "snapshot JSON round trip");
        }
    }
}

/// Trees: decode; a tree that encodes must decode to itself again.
pub fn tree(data: &[u8]) {
    let Ok(tree) = Tree::decode(data) else {
        return;
    };
    if let Ok(bytes) = tree.encode() {
        match Tree::decode(&bytes) {
            Ok(again) => assert_eq!(again, tree, "tree round trip"),
            Err(e) => panic!("re-encoded tree does not decode: {e}"),
        }
    }
}

/// Lock files (decrypted JSON).
pub fn lock(data: &[u8]) {
    if let Ok(l) = Lock::parse(data) {
        let _ = l.is_stale_by_age(l.time);
        if let Ok(json) = l.to_json() {
            let again = Lock::parse(&json);
            assert_eq!(again.ok().as_ref(), Some(&l), "lock JSON round trip");
        }
    }
}

/// Unpacked files (index, snapshot, key-less JSON files): raw, sealed, and
/// the decrypted payload interpretation (version byte, zstd) directly.
pub fn unpacked(data: &[u8]) {
    let key = fixture_key();
    let _ = decode_unpacked_with_limit(&key, data, LIMIT);
    let _ = decode_unpacked_with_limit(&key, &seal(&key, data), LIMIT);
    let _ = decode_payload(data.to_vec(), LIMIT);
}

/// zstd with and without an expected length, always under a limit.
pub fn decompress(data: &[u8]) {
    if let Ok(out) = zstd_decompress(data, None, LIMIT) {
        assert!(out.len() <= LIMIT, "limit exceeded");
        let exact = zstd_decompress(data, Some(out.len()), LIMIT);
        assert_eq!(
            exact.ok().as_ref(),
            Some(&out),
            "exact-length decode differs"
        );
    }
    let _ = zstd_decompress(data, Some(4096), LIMIT);
    let _ = zstd_decompress(data, Some(LIMIT + 1), LIMIT);
}

/// Guest bytes read per image at most (keeps an execution short).
const QCOW2_READ_BUDGET: u64 = 4 << 20;
/// Guest range whose extents are listed at most.
const QCOW2_EXTENT_SPAN: u64 = 1 << 34;

/// qcow2 images: open (no backing files followed), list extents over the
/// guest, and read allocated data.
pub fn qcow2(data: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "restix-fuzz-qcow2-{}-{}.img",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opened = Qcow2Image::open_chain(std::slice::from_ref(&path));
    if let Ok(img) = &opened {
        exercise_image(img);
    }
    let _ = std::fs::remove_file(&path);
}

fn exercise_image(img: &Qcow2Image) {
    let size = img.virtual_size();
    let span = size.min(QCOW2_EXTENT_SPAN);
    let mut budget = QCOW2_READ_BUDGET;
    let mut buf = vec![0u8; 64 * 1024];
    if let Ok(extents) = img.extents(0, span) {
        let mut at = 0u64;
        for e in &extents {
            assert_eq!(e.offset, at, "extents leave a gap or overlap");
            assert!(e.length > 0, "empty extent");
            at = e.offset.saturating_add(e.length);
            let mut off = e.offset;
            while off < e.end() && budget > 0 {
                let n = (e.end() - off).min(buf.len() as u64).min(budget);
                let Some(piece) = buf.get_mut(..n as usize) else {
                    break;
                };
                if img.read_at(off, piece).is_err() {
                    break;
                }
                off += n;
                budget -= n;
            }
        }
        if !extents.is_empty() {
            assert_eq!(at, span, "extents do not cover the range");
        }
    }
    let mut one = [0u8; 1];
    if size > 0 {
        let _ = img.read_at(size - 1, &mut one);
    }
    assert!(
        img.read_at(size, &mut one).is_err(),
        "read past the end succeeded"
    );
    assert!(
        img.extents(size, 1).is_err(),
        "extents past the end succeeded"
    );
}

/// `sftp:` repository locations.
pub fn sftp_location(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loc) = restix_sftp::SftpLocation::parse(s) {
        let shown = loc.to_string();
        let again = restix_sftp::SftpLocation::parse(&shown);
        assert!(again.is_ok(), "displayed location {shown:?} does not parse");
    }
}

/// `~/.ssh/config` text.
pub fn ssh_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let home = std::path::Path::new("/home/fuzz");
    let _ = restix_sftp::ssh_config::HostConfig::parse(&text, "backup-host", home);
    let _ = restix_sftp::ssh_config::HostConfig::parse(&text, "*", home);
}

/// `s3:` repository locations: parse; a parsed location names a bucket and
/// its object-key prefix is clean in the sense of Go's `path.Clean`, which
/// restic applies (no empty or `.` segment, `..` only leading: restic keeps
/// `s3://h/b/../x` as prefix `../x` too, and S3 keys are opaque strings).
pub fn s3_location(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loc) = restix_s3::S3Location::parse(s) else {
        return;
    };
    assert!(!loc.bucket.is_empty(), "{s:?} parsed with an empty bucket");
    if !matches!(loc.prefix.as_str(), "" | "." | "/") {
        let body = loc.prefix.strip_prefix('/').unwrap_or(&loc.prefix);
        let segments: Vec<&str> = body.split('/').collect();
        assert!(
            segments.iter().all(|seg| !seg.is_empty() && *seg != "."),
            "{s:?} gave an unclean prefix {:?}",
            loc.prefix
        );
        let leading = segments.iter().take_while(|seg| **seg == "..").count();
        assert!(
            segments.iter().skip(leading).all(|seg| *seg != ".."),
            "{s:?} left an inner `..` in the prefix {:?}",
            loc.prefix
        );
    }
    assert!(loc.key("config").ends_with("config"));
}

/// The command line as callers write it: NUL-separated arguments after
/// `restic`, through restic-style normalisation (flags before the command,
/// `--flag=true`), clap, then the repository location, the `-o key=value`
/// options and the size and shell-string parsers the flags feed.
pub fn cli_args(data: &[u8]) {
    use restix_cli::args::{normalize_args, Cli};
    use restix_cli::clap::Parser as _;

    let text = String::from_utf8_lossy(data);
    let text = text.strip_suffix('\0').unwrap_or(&text);
    let mut argv = vec!["restic".to_string()];
    argv.extend(text.split('\0').take(64).map(str::to_string));
    let Ok(normalized) = normalize_args(&argv) else {
        return;
    };
    if let Ok(cli) = Cli::try_parse_from(&normalized) {
        if let Some(repo) = &cli.global.repo {
            let _ = restix_cli::location::parse_location(repo);
        }
        let _ = restix_cli::options::parse_extended_options(&cli.global.option);
    }
    for arg in &argv {
        let _ = restix_cli::options::parse_size(arg);
        let _ = restix_cli::options::split_shell_strings(arg);
    }
}
