//! Fast search for the first cut candidate in a range of end offsets.
//!
//! Works on the window-fingerprint formulation (spec: restic-format §15.8):
//! `F(p)` depends only on `data[p-64..p)`, so a range can be split into
//! independent lanes, each warmed up with the 64 bytes before it. Four lanes
//! run interleaved in one loop, which hides the latency of the table lookup
//! chain (a single rolling digest is latency-bound at ~7 cycles per byte).
//! Windows that are entirely zero have `F = 0` and are found by a word-wise
//! scan instead of hashing.

use crate::tables::{append_byte, ChunkerTables, WINDOW_SIZE};

/// End offsets examined per block (each block = 4 lanes). Small enough that
/// hashing past the first candidate wastes little, large enough that the
/// 64-byte warm-up of each lane costs little.
const BLOCK_POSITIONS: usize = 16 * 1024;
/// Lane count of the interleaved kernel.
const LANES: usize = 4;
/// `deg(P) - 8` for restic's polynomials (degree 53).
const RESTIC_SHIFT: u32 = 45;
/// Below this many positions a single lane is used.
const MIN_LANE_POSITIONS: usize = 256;

/// Distance between the sampled words of the zero-window scan.
const ZERO_SAMPLE_STRIDE: usize = 32;

/// Smallest end offset `p` in `lo..=hi` such that `data[p-64..p)` is all
/// zero. Requires `lo >= 64` and `hi <= data.len()`.
///
/// Samples one 8-byte word every 32 bytes: any 64 zero bytes fully contain a
/// sampled word, so only the surroundings of zero samples need an exact scan.
/// If the first zero window `W` contains the sampled word at `s`, the sample
/// at `s - 32` is non-zero, so `W` lies within `[s - 32, s + 72)`, which is
/// what gets scanned exactly.
pub(crate) fn first_zero_window_end(data: &[u8], lo: usize, hi: usize) -> Option<usize> {
    if lo > hi || lo < WINDOW_SIZE {
        return None;
    }
    let start = lo - WINDOW_SIZE;
    let region = data.get(start..hi)?;
    for (index, sample) in region.chunks(ZERO_SAMPLE_STRIDE).enumerate() {
        let Some(word) = sample.get(..8) else {
            break;
        };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        if u64::from_ne_bytes(bytes) != 0 {
            continue;
        }
        let sample_at = start + index * ZERO_SAMPLE_STRIDE;
        let scan_lo = (sample_at.saturating_sub(ZERO_SAMPLE_STRIDE) + WINDOW_SIZE).max(lo);
        let scan_hi = (sample_at + 8 + WINDOW_SIZE).min(hi);
        if let Some(found) = exact_zero_window_end(data, scan_lo, scan_hi) {
            return Some(found);
        }
    }
    None
}

/// Byte-exact form of [`first_zero_window_end`], scanning every word.
fn exact_zero_window_end(data: &[u8], lo: usize, hi: usize) -> Option<usize> {
    if lo > hi || lo < WINDOW_SIZE {
        return None;
    }
    let start = lo - WINDOW_SIZE;
    let region = data.get(start..hi)?;
    // `run` = number of zero bytes immediately before the current position.
    let mut run = 0usize;
    let mut words = region.chunks_exact(8);
    let mut position = start;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let value = u64::from_le_bytes(bytes);
        if value == 0 {
            if run + 8 >= WINDOW_SIZE {
                return Some(position + (WINDOW_SIZE - run));
            }
            run += 8;
        } else {
            // little endian: low-order zero bytes come first in memory
            let leading = (value.trailing_zeros() / 8) as usize;
            if run + leading >= WINDOW_SIZE {
                return Some(position + (WINDOW_SIZE - run));
            }
            run = (value.leading_zeros() / 8) as usize;
        }
        position += 8;
    }
    for &byte in words.remainder() {
        if byte == 0 {
            run += 1;
            if run >= WINDOW_SIZE {
                return Some(position + 1);
            }
        } else {
            run = 0;
        }
        position += 1;
    }
    None
}

/// Smallest `p` in `lo..=hi` with `F(p) & mask == 0`, where `F(p)` is the
/// fingerprint of `data[p-64..p)`. Requires `lo >= 64` and `hi <= data.len()`
/// (otherwise returns `None`).
pub(crate) fn first_candidate(
    tables: &ChunkerTables,
    data: &[u8],
    lo: usize,
    hi: usize,
    mask: u64,
) -> Option<usize> {
    if lo < WINDOW_SIZE || hi > data.len() {
        return None;
    }
    let mut block_start = lo;
    while block_start <= hi {
        let block_end = hi.min(block_start + BLOCK_POSITIONS - 1);
        let zero_end = first_zero_window_end(data, block_start, block_end);
        // Only positions before the first all-zero window need hashing.
        let hash_end = zero_end.map_or(block_end + 1, |end| end);
        if hash_end > block_start {
            if let Some(found) =
                first_hashed_candidate(tables, data, block_start, hash_end - 1, mask)
            {
                return Some(found);
            }
        }
        if zero_end.is_some() {
            return zero_end;
        }
        block_start = block_end + 1;
    }
    None
}

/// Hashing-only search of `lo..=hi` (caller guarantees `64 <= lo <= hi <= len`).
fn first_hashed_candidate(
    tables: &ChunkerTables,
    data: &[u8],
    lo: usize,
    hi: usize,
    mask: u64,
) -> Option<usize> {
    let positions = hi - lo + 1;
    let (_, _, shift) = tables.raw();
    if positions == BLOCK_POSITIONS && shift == RESTIC_SHIFT {
        return full_block_first_candidate(tables, data, lo, mask);
    }
    if positions < LANES * MIN_LANE_POSITIONS {
        return lane_first_candidate(tables, data, lo, positions, mask);
    }
    let lane_positions = positions / LANES;
    let found = if shift == RESTIC_SHIFT {
        four_lane_first_candidate::<true>(tables, data, lo, lane_positions, mask)
    } else {
        four_lane_first_candidate::<false>(tables, data, lo, lane_positions, mask)
    };
    if let Some(found) = found {
        return Some(found);
    }
    let rest_start = lo + LANES * lane_positions;
    if rest_start <= hi {
        return lane_first_candidate(tables, data, rest_start, hi - rest_start + 1, mask);
    }
    None
}

/// Scans the end offsets `start..start+count` with one rolling digest.
fn lane_first_candidate(
    tables: &ChunkerTables,
    data: &[u8],
    start: usize,
    count: usize,
    mask: u64,
) -> Option<usize> {
    let steps = count.checked_sub(1)?;
    let window_start = start.checked_sub(WINDOW_SIZE)?;
    let mut digest = tables.fingerprint(data.get(window_start..start)?);
    if digest & mask == 0 {
        return Some(start);
    }
    let leaving = data.get(window_start..window_start + steps)?;
    let entering = data.get(start..start + steps)?;
    for (index, (&old, &new)) in leaving.iter().zip(entering).enumerate() {
        digest = tables.roll(digest, old, new);
        if digest & mask == 0 {
            return Some(start + index + 1);
        }
    }
    None
}

/// Lanes of the full-block kernel.
const FULL_BLOCK_LANES: usize = 4;
/// End offsets per lane of a full block.
const LANE_POSITIONS: usize = BLOCK_POSITIONS / FULL_BLOCK_LANES;
/// Bytes needed for a full block: 64 before its first end offset, and all
/// bytes up to its last end offset.
const BLOCK_BYTES: usize = BLOCK_POSITIONS + WINDOW_SIZE - 1;

/// Interleaved multi-lane search of a full block of `BLOCK_POSITIONS` end
/// offsets starting at `start`, for a degree-53 polynomial. All lane offsets
/// are compile-time constants, so the lanes share one pointer register (the
/// generic kernel runs out of registers and spills).
fn full_block_first_candidate(
    tables: &ChunkerTables,
    data: &[u8],
    start: usize,
    mask: u64,
) -> Option<usize> {
    let (out, reduce, _) = tables.raw();
    let block: &[u8; BLOCK_BYTES] = data
        .get(start.checked_sub(WINDOW_SIZE)?..)?
        .get(..BLOCK_BYTES)?
        .try_into()
        .ok()?;
    let mut digests = [0u64; FULL_BLOCK_LANES];
    let mut first = [usize::MAX; FULL_BLOCK_LANES];
    for (lane, (digest, first)) in digests.iter_mut().zip(first.iter_mut()).enumerate() {
        let begin = lane * LANE_POSITIONS;
        *digest = tables.fingerprint(&block[begin..begin + WINDOW_SIZE]);
        if *digest & mask == 0 {
            *first = 0;
        }
    }
    // Indexing cannot fail: the largest index is (LANES - 1) * LANE_POSITIONS
    // + LANE_POSITIONS - 2 + 64 < BLOCK_BYTES (a constant array length), so
    // the compiler also removes the bounds checks.
    for index in 0..LANE_POSITIONS - 1 {
        let mut any_hit = false;
        for (lane, digest) in digests.iter_mut().enumerate() {
            let leaving = block[index + lane * LANE_POSITIONS];
            let entering = block[index + lane * LANE_POSITIONS + WINDOW_SIZE];
            *digest = append_byte(
                reduce,
                RESTIC_SHIFT,
                *digest ^ out[usize::from(leaving)],
                entering,
            );
            any_hit |= *digest & mask == 0;
        }
        if any_hit {
            for (digest, first) in digests.iter().zip(first.iter_mut()) {
                if digest & mask == 0 && *first == usize::MAX {
                    *first = index + 1;
                }
            }
        }
    }
    first
        .iter()
        .enumerate()
        .find(|(_, &index)| index != usize::MAX)
        .map(|(lane, &index)| start + lane * LANE_POSITIONS + index)
}

/// Four interleaved lanes of `count` end offsets each, starting at `start`,
/// `start + count`, ...; returns the smallest candidate over all lanes.
///
/// `DEGREE_53` selects a copy with the shift for restic's degree-53
/// polynomials as a constant (cheaper than a variable shift).
fn four_lane_first_candidate<const DEGREE_53: bool>(
    tables: &ChunkerTables,
    data: &[u8],
    start: usize,
    count: usize,
    mask: u64,
) -> Option<usize> {
    let (out, reduce, runtime_shift) = tables.raw();
    let shift = if DEGREE_53 {
        RESTIC_SHIFT
    } else {
        runtime_shift
    };
    let lane_start = |lane: usize| start + lane * count;
    let warm = |lane: usize| -> Option<u64> {
        let begin = lane_start(lane);
        Some(tables.fingerprint(data.get(begin.checked_sub(WINDOW_SIZE)?..begin)?))
    };
    let digests = [warm(0)?, warm(1)?, warm(2)?, warm(3)?];
    // first[lane] = index within the lane of its first candidate
    let mut first = [usize::MAX; LANES];
    for (lane, digest) in digests.iter().enumerate() {
        if digest & mask == 0 {
            first[lane] = 0;
        }
    }
    let steps = count.checked_sub(1)?;
    // lane j's bytes: the 64 bytes before its first end offset, then the
    // `steps` bytes entering its window; step i removes lane[i] and appends
    // lane[i + 64].
    let lane = |lane: usize| {
        let begin = lane_start(lane).checked_sub(WINDOW_SIZE)?;
        data.get(begin..begin + steps + WINDOW_SIZE)
    };
    let (b0, b1, b2, b3) = (lane(0)?, lane(1)?, lane(2)?, lane(3)?);
    let [mut d0, mut d1, mut d2, mut d3] = digests;
    // Indexing cannot fail: every lane slice holds `steps + 64` bytes.
    for index in 0..steps {
        let entering = index + WINDOW_SIZE;
        d0 = append_byte(
            reduce,
            shift,
            d0 ^ out[usize::from(b0[index])],
            b0[entering],
        );
        d1 = append_byte(
            reduce,
            shift,
            d1 ^ out[usize::from(b1[index])],
            b1[entering],
        );
        d2 = append_byte(
            reduce,
            shift,
            d2 ^ out[usize::from(b2[index])],
            b2[entering],
        );
        d3 = append_byte(
            reduce,
            shift,
            d3 ^ out[usize::from(b3[index])],
            b3[entering],
        );
        if (d0 & mask == 0) | (d1 & mask == 0) | (d2 & mask == 0) | (d3 & mask == 0) {
            let hit = index + 1;
            for (lane, digest) in [d0, d1, d2, d3].into_iter().enumerate() {
                if digest & mask == 0 && first[lane] == usize::MAX {
                    first[lane] = hit;
                }
            }
        }
    }
    first
        .iter()
        .enumerate()
        .find(|(_, &index)| index != usize::MAX)
        .map(|(lane, &index)| lane_start(lane) + index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polynomial::Polynomial;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn reference_first(
        tables: &ChunkerTables,
        data: &[u8],
        lo: usize,
        hi: usize,
        mask: u64,
    ) -> Option<usize> {
        (lo..=hi).find(|&p| tables.window_fingerprint_at(data, p).unwrap() & mask == 0)
    }

    #[test]
    fn zero_window_scan_matches_reference() {
        let mut data = pseudo_random(4000, 7);
        for (start, len) in [
            (100usize, 63usize),
            (300, 64),
            (1001, 65),
            (2003, 200),
            (3900, 100),
        ] {
            for byte in &mut data[start..(start + len).min(4000)] {
                *byte = 0;
            }
        }
        for lo in [64usize, 65, 100, 163, 164, 165, 1000, 1066, 2100, 3990] {
            for hi in [lo, lo + 1, lo + 70, 4000] {
                let hi = hi.min(4000);
                let expected = (lo..=hi).find(|&p| data[p - 64..p].iter().all(|&b| b == 0));
                assert_eq!(
                    first_zero_window_end(&data, lo, hi),
                    expected,
                    "lo {lo} hi {hi}"
                );
            }
        }
    }

    #[test]
    fn sampled_zero_scan_matches_exact_scan() {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..300 {
            let len = 64 + next() % 3000;
            let mut data = pseudo_random(len, round);
            for _ in 0..next() % 5 {
                let at = next() % len;
                let run = next() % 200;
                let stop = (at + run).min(len);
                data[at..stop].fill(0);
            }
            let lo = 64 + next() % (len - 63);
            let hi = (lo + next() % 3000).min(len);
            let expected = (lo..=hi).find(|&p| data[p - 64..p].iter().all(|&b| b == 0));
            assert_eq!(
                exact_zero_window_end(&data, lo, hi),
                expected,
                "round {round}"
            );
            assert_eq!(
                first_zero_window_end(&data, lo, hi),
                expected,
                "round {round}"
            );
        }
    }

    #[test]
    fn candidate_search_matches_reference() {
        let mut data = pseudo_random(200_000, 3);
        data[150_000..150_090].fill(0);
        // restic's degree 53 (specialised kernel) and other degrees (generic)
        let polynomials = [
            Polynomial::RESTIC_TEST,
            Polynomial(0x80_0000_0000_001b),
            Polynomial(0x211),
        ];
        for (polynomial, mask) in polynomials
            .into_iter()
            .flat_map(|pol| [0xFFu64, 0x1FF, 0xFFF, 0xFFFFF].map(|mask| (pol, mask)))
        {
            let tables = ChunkerTables::new(polynomial).unwrap();
            let mask = mask & ((1 << polynomial.deg()) - 1);
            for (lo, hi) in [
                (64usize, 200_000usize),
                (64, 64),
                (1000, 1500),
                (5000, 90_000),
                (149_000, 160_000),
            ] {
                assert_eq!(
                    first_candidate(&tables, &data, lo, hi, mask),
                    reference_first(&tables, &data, lo, hi, mask),
                    "pol {polynomial} mask {mask:#x} lo {lo} hi {hi}"
                );
            }
        }
    }
}
