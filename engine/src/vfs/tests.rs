//! Random access against a real repository in a temporary folder.

use std::sync::Arc;

use restix_repo_format::{BlobType, Id};

use super::*;
use crate::image::zero_block_id;
use crate::repository::tests::{new_repo, TempDir};
use crate::repository::Repository;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

/// Store `blobs` and return their IDs and the concatenated content.
fn store(repo: &Repository, blobs: &[Vec<u8>]) -> (Vec<Id>, Vec<u8>) {
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for blob in blobs {
        let (id, _, _) = repo.save_blob(BlobType::Data, blob, None).unwrap();
        ids.push(id);
        all.extend_from_slice(blob);
    }
    repo.flush().unwrap();
    (ids, all)
}

fn check_reads(file: &FileReader, want: &[u8]) {
    assert_eq!(file.size(), want.len() as u64);
    let probes = [
        (0u64, 1usize),
        (0, want.len()),
        (1, 4096),
        (want.len() as u64 / 3, 100_000),
        (want.len() as u64 - 1, 10),
        (want.len() as u64, 10),
        (want.len() as u64 + 5, 10),
    ];
    for (offset, len) in probes {
        let mut buf = vec![0xAAu8; len];
        let n = file.read_at(offset, &mut buf).unwrap();
        let start = (offset as usize).min(want.len());
        let end = (start + len).min(want.len());
        assert_eq!(n, end - start, "length at {offset}+{len}");
        assert_eq!(&buf[..n], &want[start..end], "bytes at {offset}+{len}");
    }
}

#[test]
fn fixed_blocks_map_offsets_directly_and_read_back() {
    let dir = TempDir::new("vfs-fixed");
    let repo = Arc::new(new_repo(&dir.0, 2));
    let block = 64 * 1024;
    let blobs = vec![
        pattern(1, block),
        vec![0; block],
        pattern(2, block),
        vec![0; block],
        pattern(3, 1000),
    ];
    let (ids, want) = store(&repo, &blobs);
    let source = BlobSource::new(Arc::clone(&repo), 1 << 20, 2);
    let file = source.open_content(ids.clone()).unwrap();
    assert_eq!(file.fixed_block_size(), Some(block as u64));
    assert_eq!(file.blob_index(0), 0);
    assert_eq!(file.blob_index(block as u64), 1);
    assert_eq!(file.blob_index(4 * block as u64 + 999), 4);
    assert!(file.is_zero_blob(1) && file.is_zero_blob(3));
    assert!(!file.is_zero_blob(0) && !file.is_zero_blob(4));
    assert_eq!(ids[1], zero_block_id(block as u64));
    check_reads(&file, &want);
    // The zero block was never loaded: it is known by its ID.
    assert!(!source.is_cached(&ids[1]));
    let extents = file.extents(0, u64::MAX);
    let kinds: Vec<(u64, bool)> = extents.iter().map(|e| (e.length, e.zero)).collect();
    let b = block as u64;
    assert_eq!(
        kinds,
        vec![(b, false), (b, true), (b, false), (b, true), (1000, false)]
    );
}

#[test]
fn content_defined_blobs_use_cumulative_sizes() {
    let dir = TempDir::new("vfs-cdc");
    let repo = Arc::new(new_repo(&dir.0, 2));
    let blobs = vec![
        pattern(1, 5000),
        pattern(2, 70_000),
        pattern(3, 1),
        pattern(4, 300_000),
        pattern(5, 20_000),
    ];
    let (ids, want) = store(&repo, &blobs);
    let source = BlobSource::new(Arc::clone(&repo), 1 << 20, 3);
    let file = source.open_content(ids).unwrap();
    assert_eq!(file.fixed_block_size(), None);
    assert_eq!(file.blob_index(4999), 0);
    assert_eq!(file.blob_index(5000), 1);
    assert_eq!(file.blob_index(75_000), 2);
    assert_eq!(file.blob_index(75_001), 3);
    check_reads(&file, &want);
    // Every byte, in reads of odd sizes, also once the cache is warm.
    for step in [4096usize, 65_537, 1_000_000] {
        let mut got = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut buf = vec![0u8; step];
            let n = file.read_at(offset, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            offset += n as u64;
        }
        assert_eq!(got, want, "step {step}");
    }
}

#[test]
fn cache_stays_within_its_size_and_sequential_reads_load_ahead() {
    let dir = TempDir::new("vfs-cache");
    let repo = Arc::new(new_repo(&dir.0, 2));
    let block = 64 * 1024;
    let blobs: Vec<Vec<u8>> = (0..40u8).map(|i| pattern(i, block)).collect();
    let (ids, want) = store(&repo, &blobs);
    let capacity = 16 * block as u64;
    let source = BlobSource::new(Arc::clone(&repo), capacity, 4);
    let file = source.open_content(ids).unwrap();
    let mut offset = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    while offset < want.len() as u64 {
        let n = file.read_at(offset, &mut buf).unwrap();
        assert_eq!(&buf[..n], &want[offset as usize..offset as usize + n]);
        offset += n as u64;
        assert!(source.stats().bytes <= capacity);
    }
    let stats = source.stats();
    assert!(stats.prefetches > 0, "no readahead: {stats:?}");
    assert!(stats.loads >= 40, "{stats:?}");
    // Random reads after that still return the right bytes.
    for i in [39usize, 0, 17, 3, 38, 20] {
        let at = (i * block + 123) as u64;
        let n = file.read_at(at, &mut buf).unwrap();
        assert_eq!(&buf[..n], &want[at as usize..at as usize + n]);
    }
}

#[test]
fn missing_blob_fails_at_open() {
    let dir = TempDir::new("vfs-missing");
    let repo = Arc::new(new_repo(&dir.0, 2));
    let source = BlobSource::new(repo, 1 << 20, 1);
    let err = source.open_content(vec![Id::hash(b"nope")]).unwrap_err();
    assert!(matches!(err, VfsError::MissingBlob(_)), "{err}");
    let empty = source.open_content(Vec::new()).unwrap();
    assert_eq!(empty.size(), 0);
    assert_eq!(empty.read_at(0, &mut [0u8; 4]).unwrap(), 0);
    assert!(empty.extents(0, 10).is_empty());
}
