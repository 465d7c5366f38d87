//! Build, lookup, merge and every kind of damage of the mapped index.

use super::*;
use crate::repository::tests::TempDir;
use restix_repo_format::{IndexBlob, IndexFile, IndexPack};

fn id(n: u32) -> Id {
    Id::hash(&n.to_le_bytes())
}

fn cache_in(dir: &Path, key: &Key, repo: &str) -> CacheDir {
    let c = CacheDir::new(dir.join("cache"), key, repo);
    c.create().unwrap();
    c
}

/// Blob `i` of a test: data blob `id(i)` in pack `id(1_000_000 + i / 100)`;
/// every 10th also has a tree blob of the same ID elsewhere.
fn fill(c: &CacheDir, range: std::ops::Range<u32>, file: u32) -> Batch {
    let mut b = c.batch();
    for i in range {
        let pack = id(1_000_000 + i / 100);
        b.add(
            BlobType::Data,
            id(i),
            pack,
            u64::from(i) * 7,
            100 + u64::from(i % 50),
            i.is_multiple_of(3).then_some(u64::from(i) + 1),
        )
        .unwrap();
        if i.is_multiple_of(10) {
            b.add(BlobType::Tree, id(i), id(7), u64::from(i), 33, None)
                .unwrap();
        }
    }
    b.files.push(id(5_000_000 + file));
    b
}

fn expected(i: u32) -> BlobLocation {
    BlobLocation {
        pack: id(1_000_000 + i / 100),
        offset: i * 7,
        length: 100 + i % 50,
        uncompressed_length: i.is_multiple_of(3).then_some(i + 1),
    }
}

fn all(m: &MappedIndex, t: BlobType, blob: &Id) -> Vec<BlobLocation> {
    let mut out = Vec::new();
    m.copies(t, blob, |l| {
        out.push(l);
        true
    })
    .unwrap();
    out
}

fn open_all(c: &CacheDir, metas: &[SegmentMeta]) -> MappedIndex {
    c.mapped(metas.iter().map(|m| c.open(m).unwrap()).collect())
}

#[test]
fn builds_and_finds_every_blob_and_no_other() {
    let t = TempDir::new("mapped-build");
    let key = Key::random();
    let c = cache_in(&t.0, &key, "repo-a");
    for n in [1u32, 2, 85, 86, 3000, 20_000] {
        let meta = c.write_batch(fill(&c, 0..n, 0)).unwrap().unwrap();
        assert_eq!(meta.entries, u64::from(n + n.div_ceil(10)));
        assert_eq!(meta.files, vec![id(5_000_000)]);
        let m = open_all(&c, std::slice::from_ref(&meta));
        assert_eq!(m.len(), meta.entries);
        for i in 0..n {
            assert_eq!(
                all(&m, BlobType::Data, &id(i)),
                vec![expected(i)],
                "{n} {i}"
            );
            let trees = all(&m, BlobType::Tree, &id(i));
            assert_eq!(trees.len(), usize::from(i.is_multiple_of(10)), "{n} {i}");
        }
        for absent in [n, n + 1, 9_999_999] {
            assert!(all(&m, BlobType::Data, &id(absent)).is_empty());
        }
        assert!(all(&m, BlobType::Data, &Id([0; 32])).is_empty());
        assert!(all(&m, BlobType::Data, &Id([0xff; 32])).is_empty());
    }
    // No batch, no segment.
    assert_eq!(c.write_batch(c.batch()).unwrap(), None);
}

#[test]
fn several_copies_and_exact_duplicates() {
    let t = TempDir::new("mapped-copies");
    let c = cache_in(&t.0, &Key::random(), "r");
    let mut b = fill(&c, 0..500, 0);
    // A second copy of blob 5 in another pack, and an exact duplicate of
    // blob 6 (the same pack listed twice).
    b.add(BlobType::Data, id(5), id(77), 9, 10, None).unwrap();
    let e6 = expected(6);
    b.add(
        BlobType::Data,
        id(6),
        e6.pack,
        e6.offset.into(),
        e6.length.into(),
        Some(7),
    )
    .unwrap();
    let meta = c.write_batch(b).unwrap().unwrap();
    let m = open_all(&c, &[meta]);
    let mut five = all(&m, BlobType::Data, &id(5));
    five.sort_by_key(|l| l.pack);
    let mut want = vec![
        expected(5),
        BlobLocation {
            pack: id(77),
            offset: 9,
            length: 10,
            uncompressed_length: None,
        },
    ];
    want.sort_by_key(|l| l.pack);
    assert_eq!(five, want);
    assert_eq!(all(&m, BlobType::Data, &id(6)), vec![e6]);
}

#[test]
fn merges_segments_and_keeps_the_policy() {
    let t = TempDir::new("mapped-merge");
    let c = cache_in(&t.0, &Key::random(), "r");
    let a = c.write_batch(fill(&c, 0..3000, 1)).unwrap().unwrap();
    // Overlapping: 2500..3000 are in both (exact duplicates), 3000..4000 new.
    let b = c.write_batch(fill(&c, 2500..4000, 2)).unwrap().unwrap();
    let merged = c.merge(&[a.clone(), b.clone()]).unwrap().unwrap();
    assert_eq!(merged.entries, 4000 + 400);
    assert_eq!(merged.files, {
        let mut f = vec![id(5_000_001), id(5_000_002)];
        f.sort();
        f
    });
    let m = open_all(&c, std::slice::from_ref(&merged));
    for i in 0..4000 {
        assert_eq!(all(&m, BlobType::Data, &id(i)), vec![expected(i)], "{i}");
    }
    // The same lookups through the two unmerged segments.
    let both = open_all(&c, &[a, b]);
    for i in (0..2500).chain(3000..4000) {
        assert_eq!(all(&both, BlobType::Data, &id(i)), vec![expected(i)]);
    }

    assert_eq!(merge_start(&[]), None);
    assert_eq!(merge_start(&[10]), None);
    assert_eq!(merge_start(&[1000, 10]), None);
    assert_eq!(merge_start(&[1000, 10, 10]), Some(1));
    assert_eq!(merge_start(&[100, 10, 10]), Some(0));
    assert_eq!(merge_start(&[200, 10, 10]), Some(1));
    assert_eq!(merge_start(&[10, 10, 10]), Some(0));
    assert_eq!(merge_start(&[10_000, 200, 30, 5]), Some(1));
    assert_eq!(merge_start(&[10_000, 2000, 30, 5]), Some(2));
    // Compaction keeps merging until the policy holds.
    let mut manifest = Manifest::default();
    for k in 0..6u32 {
        let meta = c
            .write_batch(fill(&c, k * 100..k * 100 + 100, 10 + k))
            .unwrap()
            .unwrap();
        manifest.segments.push(meta);
        let replaced = c.compact(&mut manifest).unwrap();
        c.write_manifest(&manifest).unwrap();
        c.remove_unused(&manifest, &replaced);
        let sizes: Vec<u64> = manifest.segments.iter().map(|s| s.entries).collect();
        assert_eq!(merge_start(&sizes), None, "{sizes:?}");
    }
    assert_eq!(c.read_manifest().unwrap(), manifest);
    let m = open_all(&c, &manifest.segments);
    for i in 0..600 {
        assert_eq!(all(&m, BlobType::Data, &id(i)), vec![expected(i)]);
    }
    let files: usize = manifest.segments.iter().map(|s| s.files.len()).sum();
    assert_eq!(files, 6);
}

#[test]
fn nothing_readable_without_the_key() {
    let t = TempDir::new("mapped-secret");
    let c = cache_in(&t.0, &Key::random(), "r");
    let meta = c.write_batch(fill(&c, 0..2000, 0)).unwrap().unwrap();
    c.write_manifest(&Manifest {
        segments: vec![meta.clone()],
    })
    .unwrap();
    for name in [meta.file_name(), MANIFEST.to_string()] {
        let bytes = std::fs::read(c.dir.join(&name)).unwrap();
        for needle in [id(0), id(1999), id(1_000_000), id(1_000_019), id(5_000_000)] {
            for part in [&needle.0[..8], &needle.0[24..]] {
                assert!(
                    !bytes.windows(8).any(|w| w == part),
                    "{name} shows {needle}"
                );
            }
        }
    }
}

/// A fresh cache with one segment of blobs 0..2000 and its manifest.
fn one_segment(dir: &Path, key: &Key, repo: &str) -> (CacheDir, SegmentMeta) {
    let c = cache_in(dir, key, repo);
    let meta = c.write_batch(fill(&c, 0..2000, 0)).unwrap().unwrap();
    c.write_manifest(&Manifest {
        segments: vec![meta.clone()],
    })
    .unwrap();
    (c, meta)
}

#[test]
fn detects_flipped_bytes_on_first_touch() {
    let t = TempDir::new("mapped-flip");
    let key = Key::random();
    let (c, meta) = one_segment(&t.0, &key, "r");
    let path = c.dir.join(meta.file_name());
    let clean = std::fs::read(&path).unwrap();
    let layout = Layout {
        entries: meta.entries,
        packs: meta.packs,
        bits: directory_bits(meta.entries),
    };
    // One byte in: the header, an entry's key, an entry's value, a tag, the
    // directory, the pack table.
    let spots = [
        ("header", 20),
        ("key", PAGE + 5),
        ("value", PAGE + 40),
        ("tag", 2 * PAGE - 3),
        ("directory", layout.dir_start() as usize * PAGE + 8),
        ("pack table", layout.pack_start() as usize * PAGE + 1),
    ];
    for (what, at) in spots {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let Ok(segment) = c.open(&meta) else {
            assert_eq!(what, "header");
            continue;
        };
        assert_ne!(what, "header");
        let m = c.mapped(vec![segment]);
        // Some lookup touches the damaged page and reports it; none
        // returns a wrong location.
        let mut damaged = false;
        for i in 0..2000 {
            match m.copies(BlobType::Data, &id(i), |l| {
                assert_eq!(l, expected(i), "{what}");
                true
            }) {
                Ok(()) => {}
                Err(d) => {
                    damaged = true;
                    assert!(d.page < layout.pages());
                }
            }
        }
        assert!(damaged, "{what} not detected");
    }
    // The tail page of a page-aligned file replaced by another page of it.
    let mut bytes = clean.clone();
    let (a, b) = (PAGE, 2 * PAGE);
    let second: Vec<u8> = bytes[b..b + PAGE].to_vec();
    bytes[a..a + PAGE].copy_from_slice(&second);
    std::fs::write(&path, &bytes).unwrap();
    let m = c.mapped(vec![c.open(&meta).unwrap()]);
    assert!((0..2000).any(|i| m.copies(BlobType::Data, &id(i), |_| true).is_err()));
    // A merge meets the damage too, and writes nothing.
    assert!(c.merge(std::slice::from_ref(&meta)).is_err());
}

#[test]
fn refuses_truncated_foreign_and_mismatched_segments() {
    let t = TempDir::new("mapped-foreign");
    let key = Key::random();
    let (c, meta) = one_segment(&t.0, &key, "repo-a");
    let path = c.dir.join(meta.file_name());
    let clean = std::fs::read(&path).unwrap();
    for cut in [0, 100, PAGE, clean.len() - PAGE, clean.len() - 1] {
        std::fs::write(&path, &clean[..cut]).unwrap();
        assert!(c.open(&meta).is_err(), "cut at {cut}");
        assert!(
            c.merge(std::slice::from_ref(&meta)).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = clean.clone();
    longer.extend_from_slice(&[0; PAGE]);
    std::fs::write(&path, &longer).unwrap();
    assert!(c.open(&meta).is_err());
    std::fs::write(&path, &clean).unwrap();
    assert!(c.open(&meta).is_ok());

    // Another repository's cache (other key, or the same key and another
    // repository ID): its manifest does not read, its segments fail.
    for (other_key, other_repo) in [(Key::random(), "repo-a"), (key.clone(), "repo-b")] {
        let other = CacheDir::new(c.dir.clone(), &other_key, other_repo);
        assert_eq!(other.read_manifest(), None);
        assert!(other.open(&meta).is_err());
    }
    // A manifest naming a segment with other counts or another nonce.
    let mut wrong = meta.clone();
    wrong.entries += 1;
    assert!(c.open(&wrong).is_err());
    let t2 = TempDir::new("mapped-foreign2");
    let (c2, meta2) = one_segment(&t2.0, &key, "repo-a");
    std::fs::copy(c2.dir.join(meta2.file_name()), &path).unwrap();
    assert!(c.open(&meta).is_err());
}

#[test]
fn manifest_round_trips_and_refuses_damage() {
    let t = TempDir::new("mapped-manifest");
    let key = Key::random();
    let c = cache_in(&t.0, &key, "r");
    assert_eq!(c.read_manifest(), None);
    let m = Manifest {
        segments: vec![
            SegmentMeta {
                nonce: [1; 16],
                entries: 10,
                packs: 2,
                files: vec![id(1), id(2)],
            },
            SegmentMeta {
                nonce: [2; 16],
                entries: 1,
                packs: 1,
                files: vec![],
            },
        ],
    };
    let plain = m.encode("r");
    assert_eq!(Manifest::decode(&plain, "r"), Some(m.clone()));
    assert_eq!(Manifest::decode(&plain, "s"), None);
    for cut in 0..plain.len() {
        assert_eq!(Manifest::decode(&plain[..cut], "r"), None, "cut {cut}");
    }
    let mut longer = plain.clone();
    longer.push(0);
    assert_eq!(Manifest::decode(&longer, "r"), None);
    c.write_manifest(&m).unwrap();
    assert_eq!(c.read_manifest(), Some(m));
    let path = c.dir.join(MANIFEST);
    let mut sealed = std::fs::read(&path).unwrap();
    sealed[20] ^= 1;
    std::fs::write(&path, &sealed).unwrap();
    assert_eq!(c.read_manifest(), None);
    c.remove_manifest();
    assert!(!path.exists());
}

#[test]
fn leftover_files_are_removed() {
    let t = TempDir::new("mapped-orphans");
    let c = cache_in(&t.0, &Key::random(), "r");
    let a = c.write_batch(fill(&c, 0..10, 0)).unwrap().unwrap();
    let b = c.write_batch(fill(&c, 10..20, 1)).unwrap().unwrap();
    let manifest = Manifest {
        segments: vec![b.clone()],
    };
    // A fresh unnamed segment stays (another process may name it soon);
    // one this process replaced goes.
    c.remove_unused(&manifest, &[]);
    assert!(c.dir.join(a.file_name()).exists());
    c.remove_unused(&manifest, std::slice::from_ref(&a));
    assert!(!c.dir.join(a.file_name()).exists());
    assert!(c.dir.join(b.file_name()).exists());
    // An older cache format's file where the folder goes is replaced.
    let file = t.0.join("old.index");
    std::fs::write(&file, b"old").unwrap();
    let old = CacheDir::new(file.clone(), &Key::random(), "r");
    old.create().unwrap();
    assert!(file.is_dir());
}

#[test]
fn pack_tables_tell_which_packs_are_listed() {
    let t = TempDir::new("mapped-packs");
    let key = Key::random();
    let c = cache_in(&t.0, &key, "repo-a");
    // 400 packs over two segments: pack tables of several pages.
    let first = c.write_batch(fill(&c, 0..20_000, 0)).unwrap().unwrap();
    let second = c.write_batch(fill(&c, 20_000..40_000, 1)).unwrap().unwrap();
    assert!(first.packs > PACKS_PER_PAGE);
    let m = open_all(&c, &[first, second]);
    let listed = [0u32, 126, 127, 128, 199, 200, 254, 399].map(|p| id(1_000_000 + p));
    let unlisted = [400u32, 401, 5_000_000].map(|p| id(1_000_000 + p));
    let mut packs: HashSet<Id> = listed.iter().chain(&unlisted).copied().collect();
    packs.insert(id(7));
    m.drop_listed_packs(&mut packs).unwrap();
    assert_eq!(packs, unlisted.into_iter().collect());
    // Nothing asked, nothing read.
    let mut none = HashSet::new();
    m.drop_listed_packs(&mut none).unwrap();
}

/// The index file `fill` gathers: the same blobs, packs and places.
fn index_file(range: std::ops::Range<u32>) -> IndexFile {
    let mut packs: Vec<IndexPack> = Vec::new();
    for i in range {
        let pack = id(1_000_000 + i / 100);
        if packs.last().map(|p| p.id) != Some(pack) {
            packs.push(IndexPack {
                id: pack,
                blobs: Vec::new(),
            });
        }
        let Some(p) = packs.last_mut() else { continue };
        p.blobs.push(IndexBlob {
            id: id(i),
            blob_type: BlobType::Data,
            offset: u64::from(i) * 7,
            length: 100 + i % 50,
            uncompressed_length: i.is_multiple_of(3).then_some(i + 1),
        });
        if i.is_multiple_of(10) {
            packs.push(IndexPack {
                id: id(7),
                blobs: vec![IndexBlob {
                    id: id(i),
                    blob_type: BlobType::Tree,
                    offset: u64::from(i),
                    length: 33,
                    uncompressed_length: None,
                }],
            });
        }
    }
    IndexFile {
        supersedes: None,
        packs,
    }
}

/// Every entry of a segment, in file order (pack IDs resolved).
fn scan_all(c: &CacheDir, meta: &SegmentMeta) -> Vec<([u8; 32], Id, Value)> {
    let mut scan = SegmentScan::open(&c.dir, &c.keys, meta).unwrap();
    let mut out = Vec::new();
    while let Some(e) = scan.next_entry().unwrap() {
        out.push(e);
    }
    out
}

#[test]
fn keystream_in_bulk_is_the_one_by_one_keystream() {
    let cipher = CacheKeys::derive(&Key::random(), "r").segment_cipher(&[3; 16]);
    let mut stream = Vec::new();
    for (domain, first, n) in [(VALUES, 0, 1), (VALUES, 85, 85), (PACK_IDS, 254, 254)] {
        fill_keystream(&cipher, domain, first, n, &mut stream);
        assert_eq!(stream.len(), n);
        for (i, block) in stream.iter().enumerate() {
            assert_eq!(
                block.as_slice(),
                &keystream(&cipher, domain, first + i as u64)[..]
            );
        }
    }
}

#[test]
fn bulk_build_writes_what_a_batch_writes() {
    let t = TempDir::new("mapped-bulk");
    let c = cache_in(&t.0, &Key::random(), "r");
    // Files overlapping by 100 blobs (exact duplicates), one empty file,
    // and one more copy of blob 5 in another pack.
    let files = [0..2000, 1900..3000, 0..0, 3000..5000];
    let mut copy = IndexFile::default();
    copy.packs.push(IndexPack {
        id: id(77),
        blobs: vec![IndexBlob {
            id: id(5),
            blob_type: BlobType::Data,
            offset: 9,
            length: 10,
            uncompressed_length: None,
        }],
    });
    for spill_every in [1, 3, 341, 100_000] {
        let mut build = c.bulk_build();
        build.spill_every(spill_every);
        for (n, range) in files.iter().enumerate() {
            let keyed = c.keyed_file(&index_file(range.clone())).unwrap();
            build.add_file(id(5_000_000 + n as u32), keyed).unwrap();
        }
        build
            .add_file(id(6_000_000), c.keyed_file(&copy).unwrap())
            .unwrap();
        // 5500 blobs over 1024 buckets: only small chunks spill.
        assert_eq!(build.spilled() > 0, spill_every <= 3, "{spill_every}");
        let spill = build.spill_path().map(Path::to_path_buf);
        let built = build.finish(3).unwrap().unwrap();
        // The spill file is gone.
        assert!(spill.is_none_or(|p| !p.exists()));
        // The same blobs through the batch path.
        let mut batch = c.batch();
        for (n, range) in files.iter().enumerate() {
            let b = fill(&c, range.clone(), n as u32);
            batch_append(&mut batch, b);
        }
        batch
            .add(BlobType::Data, id(5), id(77), 9, 10, None)
            .unwrap();
        batch.files.push(id(6_000_000));
        let written = c.write_batch(batch).unwrap().unwrap();
        assert_eq!(built.entries, written.entries);
        assert_eq!(built.packs, written.packs);
        assert_eq!(built.files, written.files);
        assert_eq!(scan_all(&c, &built), scan_all(&c, &written));
        let m = open_all(&c, std::slice::from_ref(&built));
        for i in 0..5000 {
            let want = if i == 5 { 2 } else { 1 };
            assert_eq!(all(&m, BlobType::Data, &id(i)).len(), want, "{i}");
        }
        assert_eq!(all(&m, BlobType::Data, &id(6))[0], expected(6));
    }
}

/// Moves a batch's blobs into another (renumbering their packs).
fn batch_append(into: &mut Batch, from: Batch) {
    for (key, v) in from.entries {
        let pack = from.packs[v.pack as usize];
        let next = into.packs.len() as u32;
        let n = *into.pack_numbers.entry(pack).or_insert_with(|| {
            into.packs.push(pack);
            next
        });
        into.entries.push((key, Value { pack: n, ..v }));
    }
    into.files.extend(from.files);
}

#[test]
fn bulk_build_of_nothing_writes_nothing() {
    let t = TempDir::new("mapped-bulk-empty");
    let c = cache_in(&t.0, &Key::random(), "r");
    let mut build = c.bulk_build();
    build
        .add_file(id(1), c.keyed_file(&IndexFile::default()).unwrap())
        .unwrap();
    assert_eq!(build.finish(2).unwrap(), None);
    assert_eq!(std::fs::read_dir(&c.dir).unwrap().count(), 0);
}

#[test]
fn bulk_build_refuses_a_changed_spill() {
    let t = TempDir::new("mapped-bulk-spill");
    let c = cache_in(&t.0, &Key::random(), "r");
    for at in [0u64, 47, 48 * 5 + 40] {
        let mut build = c.bulk_build();
        build.spill_every(2);
        build
            .add_file(id(1), c.keyed_file(&index_file(0..3000)).unwrap())
            .unwrap();
        let spill = build.spill_path().unwrap().to_path_buf();
        // Written out by `finish`: change it through its own buffer's file.
        build.flush_spill_for_test();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&spill)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap_or(());
        f.write_all_at(&[b[0] ^ 1], at).unwrap();
        let err = build.finish(2).unwrap_err();
        assert!(err.to_string().contains("fail their check"), "{err}");
        assert!(!spill.exists());
        // No segment left behind.
        let left: Vec<_> = std::fs::read_dir(&c.dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn keyed_file_refuses_offsets_past_4_gib() {
    let t = TempDir::new("mapped-keyed");
    let c = cache_in(&t.0, &Key::random(), "r");
    let mut f = index_file(0..3);
    // Pack 0 holds blob 0, pack 1 its tree copy, pack 2 blob 1.
    f.packs[2].blobs[0].offset = 1 << 32;
    let e = c.keyed_file(&f).unwrap_err();
    assert_eq!(e.blob, id(1));
    assert_eq!(e.offset, 1 << 32);
}

#[test]
fn in_order_hands_results_over_in_order_and_stops_at_an_error() {
    for threads in [1, 2, 5] {
        let mut seen = Vec::new();
        build::in_order(100, threads, 3, Ok::<usize, usize>, |i| {
            seen.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let mut seen = Vec::new();
        let r = build::in_order(
            100,
            threads,
            3,
            |i| if i == 40 { Err(i) } else { Ok(i) },
            |i| {
                seen.push(i);
                if i == 70 {
                    Err(0)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(40));
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
    }
}

#[test]
fn in_order_passes_a_makers_panic_on_instead_of_waiting() {
    let r = std::panic::catch_unwind(|| {
        build::in_order(
            50,
            2,
            3,
            |i| {
                assert_ne!(i, 7, "maker fails");
                Ok::<usize, ()>(i)
            },
            |_| Ok(()),
        )
    });
    assert!(r.is_err());
}
