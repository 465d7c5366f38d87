//! Verification by content: before an incremental reuses its parent's blobs
//! for the blocks its change source calls unchanged, check those blocks
//! against the parent (see `provenance` for when a parent is trusted at all).
//!
//! 1. Every unchanged block that reads as zeros now (its guest range lies in
//!    zero or unallocated extents, known without reading) must be a zero
//!    blob in the parent. This covers the whole disk and costs no reads.
//! 2. A sample of the other unchanged blocks, spread over the whole disk
//!    (one per stratum, at a position drawn from the parent's ID), is read,
//!    hashed and compared with the parent's blob IDs. Blocks that were zero
//!    in the parent but hold data now (where a write the change source
//!    missed most likely went) are sampled as well. The sample is bounded in
//!    blocks, bytes and time.
//!
//! A mismatch in either refuses the parent: the change source did not start
//! at the disk the parent holds.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use restix_chunker::ZERO_CHUNK_ID;
use restix_qcow2::{DiskImage, ExtentKind};
use restix_repo_format::Id;
use sha2::{Digest, Sha256};

use super::layout::GuestLayout;
use super::{zero_block_id, ImageError};

/// How much one verification may read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Blocks read at most.
    pub(crate) blocks: usize,
    /// Bytes read at most (at least one block is read).
    pub(crate) bytes: u64,
    /// Time spent reading at most.
    pub(crate) time: Duration,
}

impl Budget {
    /// A parent whose record vouches for the change source: a spot check.
    pub(crate) const LIGHT: Budget = Budget {
        blocks: 8,
        bytes: 2 << 20,
        time: Duration::from_secs(1),
    };
    /// Nothing vouches for the change source: a thorough sample.
    pub(crate) const FULL: Budget = Budget {
        blocks: 1024,
        bytes: 128 << 20,
        time: Duration::from_secs(5),
    };
}

/// What a verification checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Unchanged blocks found zero in both, without reading.
    pub(crate) zero_blocks: u64,
    /// Unchanged blocks read, hashed and found equal.
    pub(crate) blocks_read: u64,
    /// Bytes read from the image for that.
    pub(crate) bytes_read: u64,
}

/// The result: all checked blocks matched, or the first that did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Matched(Verified),
    Mismatch(String),
}

/// A sampled block, whether it equals the parent's, and the bytes read.
type SampleRead = (Candidate, bool, u64);

/// One unchanged block holding data now.
#[derive(Clone, Copy)]
struct Candidate {
    start: u64,
    end: u64,
    id: Id,
    parent_zero: bool,
}

/// Checks the parent's blobs (`ids`, of `lengths` bytes, in order) against
/// the image for every block `changed` (merged) does not touch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_unchanged(
    image: &dyn DiskImage,
    layout: &GuestLayout,
    ids: &[Id],
    lengths: &[u64],
    changed: &[Range<u64>],
    budget: Budget,
    seed: &Id,
    threads: usize,
) -> Result<Outcome, ImageError> {
    let size = layout.size;
    let extents = layout.extents();
    let mut zero_ids: HashMap<u64, Id> = HashMap::new();
    // The zero blobs of the block sizes (first and last blob) are known
    // ahead; others are computed when a block reads as zeros.
    for len in [lengths.first(), lengths.last()].into_iter().flatten() {
        zero_ids.insert(*len, zero_block_id(*len));
    }
    let mut verified = Verified::default();
    let mut candidates: Vec<Candidate> = Vec::new();
    let (mut c, mut e) = (0usize, 0usize);
    let mut start = 0u64;
    for (id, &len) in ids.iter().zip(lengths) {
        let end = start.saturating_add(len);
        if end > size {
            break;
        }
        while changed.get(c).is_some_and(|r| r.end <= start) {
            c += 1;
        }
        let touched = changed.get(c).is_some_and(|r| r.start < end);
        if !touched && len > 0 {
            while extents.get(e).is_some_and(|x| x.end() <= start) {
                e += 1;
            }
            let has_data = extents
                .iter()
                .skip(e)
                .take_while(|x| x.offset < end)
                .any(|x| x.kind == ExtentKind::Data);
            if has_data {
                let parent_zero =
                    *id == Id(ZERO_CHUNK_ID) || zero_ids.get(&len).is_some_and(|z| z == id);
                candidates.push(Candidate {
                    start,
                    end,
                    id: *id,
                    parent_zero,
                });
            } else {
                let zero = *zero_ids.entry(len).or_insert_with(|| zero_block_id(len));
                if *id != zero {
                    return Ok(Outcome::Mismatch(format!(
                        "the {len}-byte block at offset {start} reads as zeros now, but the \
                         parent's is not zero"
                    )));
                }
                verified.zero_blocks += 1;
            }
        }
        start = end;
    }

    // The sample: stratified over the disk, half of it (at most) from the
    // blocks that were zero in the parent and hold data now.
    let (suspicious, ordinary): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| c.parent_zero);
    let average = lengths.first().copied().unwrap_or(1).max(1);
    let blocks = budget
        .blocks
        .min(usize::try_from(budget.bytes / average).unwrap_or(usize::MAX))
        .max(1);
    let mut rng = SplitMix(u64::from_le_bytes(
        seed.0[..8].try_into().unwrap_or_default(),
    ));
    let from_suspicious = suspicious.len().min(blocks.div_ceil(2));
    let from_ordinary = ordinary.len().min(blocks - from_suspicious);
    let mut picks = stratified(&suspicious, from_suspicious, &mut rng);
    picks.extend(stratified(&ordinary, from_ordinary, &mut rng));
    picks.sort_by_key(|c| c.start);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ImageError::Chunker(format!("threads: {e}")))?;
    let deadline = Instant::now() + budget.time;
    let read: Vec<Result<Option<SampleRead>, ImageError>> = pool.install(|| {
        picks
            .par_iter()
            .map(|pick| {
                if Instant::now() > deadline {
                    return Ok(None);
                }
                let mut data = vec![0u8; (pick.end - pick.start) as usize];
                let read = layout.materialise(image, pick.start, &mut data)?;
                let same = Id(Sha256::digest(&data).into()) == pick.id;
                Ok(Some((*pick, same, read)))
            })
            .collect()
    });
    for result in read {
        let Some((pick, same, read)) = result? else {
            continue;
        };
        if !same {
            let len = pick.end - pick.start;
            return Ok(Outcome::Mismatch(if pick.parent_zero {
                format!(
                    "the {len}-byte block at offset {} holds data now, but was zeros in the parent",
                    pick.start
                )
            } else {
                format!(
                    "the {len}-byte block at offset {} differs from the parent's",
                    pick.start
                )
            }));
        }
        verified.blocks_read += 1;
        verified.bytes_read += read;
    }
    Ok(Outcome::Matched(verified))
}

/// `count` elements of `items`, one from each of `count` equal strata, at a
/// position drawn from `rng`.
fn stratified(items: &[Candidate], count: usize, rng: &mut SplitMix) -> Vec<Candidate> {
    if count == 0 || items.is_empty() {
        return Vec::new();
    }
    let n = items.len();
    (0..count)
        .filter_map(|k| {
            let lo = k * n / count;
            let hi = ((k + 1) * n / count).max(lo + 1);
            let at = lo + (rng.next() % (hi - lo) as u64) as usize;
            items.get(at).copied()
        })
        .collect()
}

/// A small deterministic generator (SplitMix64) for the sample positions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
