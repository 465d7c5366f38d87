//! Every parser must reject hostile input with an error, never a panic or a
//! huge allocation: mutate valid documents byte by byte and truncate them.

use restix_repo_format::compression::{compress, decompress};
use restix_repo_format::pack::{decode_pack_header, parse_header, parse_trailer};
use restix_repo_format::unpacked::decode_payload;
use restix_repo_format::{Config, GoTime, IndexFile, Key, KeyFile, Lock, Snapshot, Tree};

/// Deterministic xorshift so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn mutations(seed: &[u8], rounds: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::new();
    for n in 0..=seed.len().min(200) {
        out.push(seed[..n].to_vec());
    }
    let interesting = [
        0u8, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0xff, b'-', b'9', b'e', b'n', 0x80,
    ];
    for _ in 0..rounds {
        let mut m = seed.to_vec();
        for _ in 0..1 + rng.next() % 4 {
            if m.is_empty() {
                break;
            }
            let i = (rng.next() as usize) % m.len();
            match rng.next() % 3 {
                0 => m[i] = interesting[(rng.next() as usize) % interesting.len()],
                1 => m[i] = rng.next() as u8,
                _ => {
                    m.remove(i);
                }
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn json_parsers_never_panic() {
    let tree = br#"{"nodes":[{"name":"a\\x01\\u00a0\\U000e0001\\101","type":"file","mode":420,"mtime":"2024-03-05T07:08:09.5+01:00","atime":"0001-01-01T00:00:00Z","ctime":"2024-03-05T07:08:09Z","uid":0,"gid":0,"user":"u","linktarget":"x","linktarget_raw":"AAEC","extended_attributes":[{"name":"n","value":"dg=="},{"name":"m","value":null}],"generic_attributes":{"k":{"a":[1,2]}},"content":["a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"],"subtree":"a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"}]}"#;
    for m in mutations(tree, 3000) {
        if let Ok(t) = Tree::decode(&m) {
            let mut t = t;
            t.sort();
            t.nodes.dedup_by(|a, b| a.name == b.name);
            let _ = t.encode();
        }
    }
    let snap = br#"{"time":"2015-06-27T12:18:51.759239612+02:00","parent":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","tree":"9ccb846e60d90d4eb915848add7aa7ea1e4bbabfc60e573db9f7bfb2789afbae","paths":["/a"],"tags":["x"],"summary":{"files_new":1}}"#;
    for m in mutations(snap, 1500) {
        if let Ok(s) = Snapshot::parse(&m) {
            let _ = s.to_json();
        }
    }
    let index = br#"{"packs":[{"id":"73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c","blobs":[{"id":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","type":"data","offset":0,"length":38,"uncompressed_length":6}]}]}"#;
    for m in mutations(index, 1500) {
        if let Ok(i) = IndexFile::parse(&m) {
            let _ = i.to_json();
        }
    }
    let key = br#"{"created":"2015-01-01T10:00:00+01:00","username":"u","hostname":"h","kdf":"scrypt","N":16,"r":1,"p":1,"salt":"AA==","data":"AAAA"}"#;
    for m in mutations(key, 1500) {
        if let Ok(k) = KeyFile::parse(&m) {
            // Only cheap parameters are tried; validation rejects the rest first.
            if k.n <= 1024 && k.r <= 8 && k.p <= 2 {
                let _ = k.open(b"pw");
            }
        }
    }
    let lock = br#"{"time":"2015-06-27T12:18:51.759239612+02:00","exclusive":false,"hostname":"k","username":"f","pid":1,"uid":1,"gid":1}"#;
    for m in mutations(lock, 1000) {
        let _ = Lock::parse(&m);
    }
    let cfg = br#"{"version":2,"id":"5978","chunker_polynomial":"3da3358b4dc173"}"#;
    for m in mutations(cfg, 1000) {
        let _ = Config::parse(&m);
    }
    for m in mutations(b"2024-03-05T07:08:09.123456789+01:00", 2000) {
        if let Ok(s) = std::str::from_utf8(&m) {
            if let Ok(t) = GoTime::parse_rfc3339(s) {
                let _ = t.to_rfc3339();
                let _ = t.clamp_year();
            }
        }
    }
}

#[test]
fn binary_parsers_never_panic() {
    let header: Vec<u8> = [
        &[3u8, 0x45, 1, 0, 0, 0xb8, 1, 0, 0][..],
        &[7u8; 32],
        &[0u8, 5, 0, 0, 0],
        &[9u8; 32],
    ]
    .concat();
    for m in mutations(&header, 3000) {
        let _ = parse_header(&m);
        let _ = parse_trailer(&m, m.len() as u64);
        let _ = parse_trailer(&m, 100);
        let _ = decode_payload(m.clone(), 1 << 20);
    }
    let key = Key::random();
    for m in mutations(&[0x55u8; 100], 500) {
        let _ = decode_pack_header(&key, &m, m.len() as u64);
        let _ = decode_pack_header(&key, &m, 1 << 40);
        let _ = key.decrypt(&m);
    }
    let frame = compress(3, &vec![7u8; 100_000]).unwrap();
    for m in mutations(&frame, 2000) {
        let _ = decompress(&m, None, 1 << 20);
        let _ = decompress(&m, Some(100_000), 1 << 20);
        let _ = decompress(&m, Some(5), 1 << 20);
    }
}
