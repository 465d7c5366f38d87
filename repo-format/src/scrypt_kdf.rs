//! scrypt (RFC 7914), the key-file KDF (spec: key files), with its ROMix
//! on AVX-512VL where the CPU has it.
//!
//! Why part of it is written here: every command derives the user key
//! before anything else can start (restic's keys use N = 2^15, r = 8: 32 MiB
//! and 2^20 Salsa20/8 cores, one long chain of dependent rounds). The
//! `scrypt` crate is compiled for baseline x86-64, where each 32-bit rotate
//! of a round is three SSE2 instructions; AVX-512VL has a one-instruction
//! rotate (`vprold`), and the chain gets ~30% shorter (62 ms -> 43 ms for
//! restic's parameters on the development VM). Without AVX-512VL (or off
//! x86-64) the `scrypt` crate does all of it; the tests check that both give
//! the same keys, and the RFC's vectors.

use sha2_011::Sha256;

/// scrypt of `password` and `salt` with `params` (N, r, p) into `out`.
/// The parameters must have passed `scrypt::Params::new`.
pub(crate) fn derive(
    password: &[u8],
    salt: &[u8],
    params: &scrypt::Params,
    out: &mut [u8],
) -> Result<(), scrypt::errors::InvalidOutputLen> {
    #[cfg(target_arch = "x86_64")]
    if !out.is_empty() && out.len() <= MAX_OUTPUT_LEN && simd::derive(password, salt, params, out) {
        return Ok(());
    }
    scrypt::scrypt(password, salt, params, out)
}

/// The longest output the fast path produces (the `scrypt` crate refuses
/// longer ones with its own error, which the caller sees unchanged).
const MAX_OUTPUT_LEN: usize = 1 << 20;

/// PBKDF2-HMAC-SHA256 with one iteration, as scrypt uses it on both ends.
fn pbkdf2_once(password: &[u8], salt: &[u8], out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, 1, out);
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_extract_epi32, _mm_rol_epi32, _mm_set_epi32,
        _mm_shuffle_epi32, _mm_xor_si128,
    };

    /// One 64-byte Salsa20 block as the four diagonals of its 4x4 matrix of
    /// words, the layout in which a column round and a row round are the
    /// same four vector steps: `[ (x0,x5,x10,x15), (x4,x9,x14,x3),
    /// (x8,x13,x2,x7), (x12,x1,x6,x11) ]`. XOR and the final add are
    /// word-wise, so blocks stay in this layout for the whole ROMix.
    type Diagonals = [__m128i; 4];

    /// Word order of the diagonals (lane `l` of vector `v` holds word
    /// `DIAGONAL[v][l]` of the block).
    const DIAGONAL: [[usize; 4]; 4] =
        [[0, 5, 10, 15], [4, 9, 14, 3], [8, 13, 2, 7], [12, 1, 6, 11]];

    /// `false` when the CPU lacks AVX-512VL or the parameters are outside
    /// what this path handles (the caller then uses the `scrypt` crate).
    pub(super) fn derive(
        password: &[u8],
        salt: &[u8],
        params: &scrypt::Params,
        out: &mut [u8],
    ) -> bool {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl"))
        {
            return false;
        }
        // Integerify reads one 32-bit word: enough for N up to 2^32.
        let log_n = params.log_n();
        let (Ok(r), Ok(p)) = (usize::try_from(params.r()), usize::try_from(params.p())) else {
            return false;
        };
        if log_n == 0 || log_n >= 32 || r == 0 || p == 0 {
            return false;
        }
        let n = 1usize << log_n;
        let Some(blocks) = n.checked_mul(2 * r) else {
            return false;
        };
        let mut b = vec![0u8; 128 * r * p];
        super::pbkdf2_once(password, salt, &mut b);
        let mut v: Vec<Diagonals> = Vec::new();
        if v.try_reserve_exact(blocks).is_err() {
            return false;
        }
        prefer_huge_pages(&mut v);
        for block in b.chunks_exact_mut(128 * r) {
            v.clear();
            // SAFETY: `ro_mix` only needs AVX-512F and AVX-512VL
            // (and what they imply), both detected on this CPU above.
            #[allow(unsafe_code)]
            unsafe {
                ro_mix(block, &mut v, n, r)
            };
        }
        super::pbkdf2_once(password, &b, out);
        true
    }

    /// Asks the kernel to back the table's memory with 2 MiB pages where
    /// it can: the table (32 MiB for restic's keys) is written once from
    /// start to end in a fresh process, and with 4 KiB pages that is 8192
    /// page faults, ~15 ms of kernel time measured on the development VM
    /// (3-4 ms with huge pages), on the path every command waits on. Only a
    /// hint: without transparent huge pages nothing changes.
    fn prefer_huge_pages(v: &mut Vec<Diagonals>) {
        #[cfg(target_os = "linux")]
        {
            const PAGE: usize = 4096;
            let start = v.as_mut_ptr() as usize;
            let end = start.saturating_add(v.capacity() * std::mem::size_of::<Diagonals>());
            let first = start.next_multiple_of(PAGE);
            let len = end.saturating_sub(first) / PAGE * PAGE;
            if len == 0 {
                return;
            }
            // SAFETY: madvise with MADV_HUGEPAGE neither reads nor writes
            // the range nor changes what it holds (it only tells the kernel
            // how to back pages not yet touched); the range is whole pages
            // inside `v`'s own allocation, which outlives the call. A
            // failure (no THP support) is harmless and ignored.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = v;
    }

    /// ROMix (RFC 7914 §5) in place on one `128 * r`-byte block; `v` is an
    /// empty vector with room for `n * 2r` blocks.
    #[target_feature(enable = "avx512f,avx512vl")]
    fn ro_mix(block: &mut [u8], v: &mut Vec<Diagonals>, n: usize, r: usize) {
        let mut x: Vec<Diagonals> = block.chunks_exact(64).map(|c| to_diagonals(c)).collect();
        let mut y = x.clone();
        for _ in 0..n {
            v.extend_from_slice(&x);
            block_mix(&x, None, &mut y);
            std::mem::swap(&mut x, &mut y);
        }
        let last = 2 * r - 1;
        for _ in 0..n {
            // Integerify: the first word of the last 64-byte block (x0,
            // lane 0 of the first diagonal), modulo N.
            let j = (_mm_cvtsi128_si32(x[last][0]) as u32 as usize) & (n - 1);
            block_mix(&x, v.get(j * 2 * r..(j + 1) * 2 * r), &mut y);
            std::mem::swap(&mut x, &mut y);
        }
        for (bytes, d) in block.chunks_exact_mut(64).zip(&x) {
            from_diagonals(d, bytes);
        }
    }

    /// BlockMix (RFC 7914 §4) of `input` (XORed with `with`, when given)
    /// into `output`: even blocks first, then odd ones.
    #[target_feature(enable = "avx512f,avx512vl")]
    fn block_mix(input: &[Diagonals], with: Option<&[Diagonals]>, output: &mut [Diagonals]) {
        let blocks = input.len();
        let half = blocks / 2;
        let xor = |i: usize| -> Diagonals {
            let a = input[i];
            match with {
                Some(w) => [
                    _mm_xor_si128(a[0], w[i][0]),
                    _mm_xor_si128(a[1], w[i][1]),
                    _mm_xor_si128(a[2], w[i][2]),
                    _mm_xor_si128(a[3], w[i][3]),
                ],
                None => a,
            }
        };
        let mut state = xor(blocks - 1);
        for i in 0..blocks {
            let b = xor(i);
            state = salsa20_8([
                _mm_xor_si128(state[0], b[0]),
                _mm_xor_si128(state[1], b[1]),
                _mm_xor_si128(state[2], b[2]),
                _mm_xor_si128(state[3], b[3]),
            ]);
            output[if i % 2 == 0 { i / 2 } else { half + i / 2 }] = state;
        }
    }

    /// Salsa20/8: four double rounds, then the input added word-wise.
    #[target_feature(enable = "avx512f,avx512vl")]
    fn salsa20_8(input: Diagonals) -> Diagonals {
        let [mut a, mut b, mut c, mut d] = input;
        for _ in 0..8 {
            // A column round in the diagonal layout (a row round the same
            // steps on the transposed matrix, which the shuffles below give).
            b = _mm_xor_si128(b, _mm_rol_epi32::<7>(_mm_add_epi32(a, d)));
            c = _mm_xor_si128(c, _mm_rol_epi32::<9>(_mm_add_epi32(b, a)));
            d = _mm_xor_si128(d, _mm_rol_epi32::<13>(_mm_add_epi32(c, b)));
            a = _mm_xor_si128(a, _mm_rol_epi32::<18>(_mm_add_epi32(d, c)));
            // Transpose around the main diagonal: lanes of `d` move one
            // down (into `b`'s place), `c` two, `b` one up (into `d`'s).
            let next_b = _mm_shuffle_epi32::<0b00_11_10_01>(d);
            c = _mm_shuffle_epi32::<0b01_00_11_10>(c);
            d = _mm_shuffle_epi32::<0b10_01_00_11>(b);
            b = next_b;
        }
        [
            _mm_add_epi32(a, input[0]),
            _mm_add_epi32(b, input[1]),
            _mm_add_epi32(c, input[2]),
            _mm_add_epi32(d, input[3]),
        ]
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    fn to_diagonals(bytes: &[u8]) -> Diagonals {
        let word = |k: usize| -> i32 {
            let mut w = [0u8; 4];
            if let Some(b) = bytes.get(4 * k..4 * k + 4) {
                w.copy_from_slice(b);
            }
            i32::from_le_bytes(w)
        };
        DIAGONAL.map(|[w0, w1, w2, w3]| _mm_set_epi32(word(w3), word(w2), word(w1), word(w0)))
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    fn from_diagonals(d: &Diagonals, bytes: &mut [u8]) {
        for (vector, words) in d.iter().zip(DIAGONAL) {
            let lanes = [
                _mm_extract_epi32::<0>(*vector),
                _mm_extract_epi32::<1>(*vector),
                _mm_extract_epi32::<2>(*vector),
                _mm_extract_epi32::<3>(*vector),
            ];
            for (lane, k) in lanes.into_iter().zip(words) {
                if let Some(b) = bytes.get_mut(4 * k..4 * k + 4) {
                    b.copy_from_slice(&lane.to_le_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn both(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32, len: usize) -> Vec<u8> {
        let params = scrypt::Params::new(log_n, r, p).expect("valid parameters");
        let mut ours = vec![0u8; len];
        derive(password, salt, &params, &mut ours).expect("derive");
        let mut reference = vec![0u8; len];
        scrypt::scrypt(password, salt, &params, &mut reference).expect("scrypt crate");
        assert_eq!(
            hex(&ours),
            hex(&reference),
            "N=2^{log_n} r={r} p={p} len={len}"
        );
        ours
    }

    #[test]
    fn rfc7914_vectors() {
        // RFC 7914 §12 (the N=2^20 vector is left out: 1 GiB).
        assert_eq!(
            hex(&both(b"", b"", 4, 1, 1, 64)),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442\
             fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
        );
        assert_eq!(
            hex(&both(b"password", b"NaCl", 10, 8, 16, 64)),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
        assert_eq!(
            hex(&both(b"pleaseletmein", b"SodiumChloride", 14, 8, 1, 64)),
            "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2\
             d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_fast_path_runs_where_the_cpu_has_avx512vl() {
        let params = scrypt::Params::new(4, 8, 1).expect("valid parameters");
        let mut out = [0u8; 64];
        let has =
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl");
        assert_eq!(simd::derive(b"pw", b"salt", &params, &mut out), has);
        // Refused (left to the scrypt crate): the empty output it rejects.
        assert!(derive(b"pw", b"salt", &params, &mut []).is_err());
    }

    #[test]
    fn matches_the_scrypt_crate() {
        // restic's parameters, and odd shapes: r = 1..3, p > 1, short and
        // long outputs, salts of any length.
        both(b"geheim", &[7u8; 64], 15, 8, 1, 64);
        for (log_n, r, p) in [(1, 1, 1), (2, 2, 1), (5, 3, 2), (8, 1, 3), (6, 5, 1)] {
            for len in [1, 32, 64, 100] {
                both(b"pw", b"salt", log_n, r, p, len);
            }
        }
    }
}
