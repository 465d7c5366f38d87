//! Polynomials over GF(2) packed into a `u64` (spec: restic-format §15.2-15.3).

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// How many random candidates [`Polynomial::derive`] tries before giving up
/// (spec: restic-format §15.3: at most 1,000,000 tries).
pub const RANDOM_POLYNOMIAL_MAX_TRIES: usize = 1_000_000;

/// Errors of polynomial parsing and generation.
#[derive(Debug, thiserror::Error)]
pub enum PolynomialError {
    /// The text is not a lowercase/uppercase hexadecimal `u64` without prefix.
    #[error("invalid chunker polynomial {0:?}: expected hexadecimal digits")]
    Parse(String),
    /// No irreducible polynomial was found within [`RANDOM_POLYNOMIAL_MAX_TRIES`].
    #[error("unable to find an irreducible polynomial after {RANDOM_POLYNOMIAL_MAX_TRIES} tries")]
    NotFound,
    /// Reading random bytes failed.
    #[error("reading random bytes for the chunker polynomial: {0}")]
    Io(#[from] std::io::Error),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed: {0}")]
    Random(String),
}

/// A polynomial over GF(2): bit `i` is the coefficient of `x^i`.
///
/// restic stores it in the repository config as lowercase hex without
/// leading zeros ([`Display`](fmt::Display) / [`FromStr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Polynomial(pub u64);

impl Polynomial {
    /// The polynomial of all upstream test vectors, `0x3DA3358B4DC173`.
    pub const RESTIC_TEST: Polynomial = Polynomial(0x3DA3358B4DC173);

    /// Degree (index of the highest set bit); -1 for the zero polynomial.
    pub fn deg(self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// Carry-less product, `None` when the result would not fit into 64 bits.
    pub fn checked_mul(self, other: Polynomial) -> Option<Polynomial> {
        if self.0 == 0 || other.0 == 0 {
            return Some(Polynomial(0));
        }
        if self.deg() + other.deg() >= 64 {
            return None;
        }
        let product = clmul(self.0, other.0);
        u64::try_from(product).ok().map(Polynomial)
    }

    /// Quotient and remainder of polynomial division, `None` for a zero divisor.
    pub fn div_rem(self, divisor: Polynomial) -> Option<(Polynomial, Polynomial)> {
        if divisor.0 == 0 {
            return None;
        }
        let divisor_deg = divisor.deg();
        let mut remainder = self.0;
        let mut quotient = 0u64;
        loop {
            let diff = deg_u64(remainder) - divisor_deg;
            if diff < 0 {
                break;
            }
            remainder ^= divisor.0 << diff;
            quotient |= 1 << diff;
        }
        Some((Polynomial(quotient), Polynomial(remainder)))
    }

    /// `self mod divisor`; the zero divisor yields `self` unchanged.
    pub fn modulo(self, divisor: Polynomial) -> Polynomial {
        self.div_rem(divisor).map_or(self, |(_, rem)| rem)
    }

    /// Greatest common divisor (Euclid with polynomial `mod`).
    pub fn gcd(self, other: Polynomial) -> Polynomial {
        let (mut a, mut b) = (self, other);
        while b.0 != 0 {
            let r = a.modulo(b);
            a = b;
            b = r;
        }
        a
    }

    /// `self * f mod g` (spec: restic-format §15.2; a 128-bit carry-less
    /// product followed by a reduction is equivalent to restic's
    /// shift-and-add loop). A zero `g` yields 0.
    pub fn mul_mod(self, f: Polynomial, g: Polynomial) -> Polynomial {
        if g.0 == 0 {
            return Polynomial(0);
        }
        Polynomial(mod_u128(clmul(self.0, f.0), g.0))
    }

    /// Ben-Or irreducibility test (spec: restic-format §15.3).
    pub fn is_irreducible(self) -> bool {
        let deg = self.deg();
        if deg < 1 {
            return false;
        }
        let x = Polynomial(2);
        // square_power holds x^(2^i) mod self
        let mut square_power = x.modulo(self);
        for _ in 1..=deg / 2 {
            square_power = square_power.mul_mod(square_power, self);
            let term = Polynomial(square_power.0 ^ x.0).modulo(self);
            if self.gcd(term).0 != 1 {
                return false;
            }
        }
        true
    }

    /// restic's candidate shaping: keep bits 0..=53, set bits 53 and 0
    /// (spec: restic-format §15.3 step 2).
    fn shape_candidate(raw: u64) -> Polynomial {
        Polynomial((raw & ((1 << 54) - 1)) | (1 << 53) | 1)
    }

    /// Draws candidates from `next_u64` until one is irreducible, like
    /// restic's `RandomPolynomial` (spec: restic-format §15.3).
    pub fn random_irreducible<F: FnMut() -> u64>(
        mut next_u64: F,
    ) -> Result<Polynomial, PolynomialError> {
        for _ in 0..RANDOM_POLYNOMIAL_MAX_TRIES {
            let candidate = Self::shape_candidate(next_u64());
            if candidate.is_irreducible() {
                return Ok(candidate);
            }
        }
        Err(PolynomialError::NotFound)
    }

    /// Like restic's `DerivePolynomial`: reads little-endian `u64`s from
    /// `source` until a shaped candidate is irreducible.
    pub fn derive<R: Read + ?Sized>(source: &mut R) -> Result<Polynomial, PolynomialError> {
        for _ in 0..RANDOM_POLYNOMIAL_MAX_TRIES {
            let mut bytes = [0u8; 8];
            source.read_exact(&mut bytes)?;
            let candidate = Self::shape_candidate(u64::from_le_bytes(bytes));
            if candidate.is_irreducible() {
                return Ok(candidate);
            }
        }
        Err(PolynomialError::NotFound)
    }

    /// A fresh random irreducible polynomial of degree 53 from the operating
    /// system's CSPRNG, as `restic init` creates (spec: restic-format §15.3).
    pub fn random() -> Result<Polynomial, PolynomialError> {
        let mut failure = None;
        let result = Self::random_irreducible(|| {
            let mut bytes = [0u8; 8];
            if let Err(err) = getrandom::fill(&mut bytes) {
                failure = Some(err.to_string());
            }
            u64::from_le_bytes(bytes)
        });
        match failure {
            Some(message) => Err(PolynomialError::Random(message)),
            None => result,
        }
    }

    /// Human-readable form such as `x^53+x^52+...+x+1`.
    pub fn expand(self) -> String {
        if self.0 == 0 {
            return "0".to_string();
        }
        let mut terms = Vec::new();
        for bit in (0..64).rev() {
            if self.0 & (1 << bit) != 0 {
                terms.push(match bit {
                    0 => "1".to_string(),
                    1 => "x".to_string(),
                    _ => format!("x^{bit}"),
                });
            }
        }
        terms.join("+")
    }
}

impl fmt::Display for Polynomial {
    /// Lowercase hex without `0x` and without leading zeros (Go's
    /// `strconv.FormatUint(p, 16)`, spec: restic-format §4.1).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl FromStr for Polynomial {
    type Err = PolynomialError;

    /// Parses base-16 digits (no prefix, no sign), as restic's config loader.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PolynomialError::Parse(text.to_string()));
        }
        u64::from_str_radix(text, 16)
            .map(Polynomial)
            .map_err(|_| PolynomialError::Parse(text.to_string()))
    }
}

fn deg_u64(value: u64) -> i32 {
    63 - value.leading_zeros() as i32
}

/// Carry-less 64x64 -> 128 bit multiplication.
fn clmul(a: u64, b: u64) -> u128 {
    let mut product = 0u128;
    let wide = u128::from(a);
    for bit in 0..64 {
        if b & (1 << bit) != 0 {
            product ^= wide << bit;
        }
    }
    product
}

/// `value mod divisor` for a 128-bit dividend; `divisor` must be non-zero.
fn mod_u128(mut value: u128, divisor: u64) -> u64 {
    let divisor_deg = deg_u64(divisor);
    let wide = u128::from(divisor);
    loop {
        let value_deg = 127 - value.leading_zeros() as i32;
        let diff = value_deg - divisor_deg;
        if diff < 0 {
            break;
        }
        value ^= wide << diff;
    }
    // after the loop the degree of value is below that of divisor (< 64)
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(text: &str) -> Polynomial {
        Polynomial(u64::from_str_radix(text, 2).unwrap())
    }

    // polAddTests (chunker_vectors.txt)
    #[test]
    fn addition_is_xor() {
        assert_eq!(23 ^ 16, Polynomial(23).0 ^ Polynomial(16).0);
        assert_eq!(
            0x9a7e30d1e855e0a0u64 ^ 0x670102a1f4bcd414,
            0xfd7f32701ce934b4
        );
    }

    // polMulTests
    #[test]
    fn multiplication_vectors() {
        let cases = [
            (Polynomial(1), Polynomial(2), Polynomial(2)),
            (bin("1101"), bin("10"), bin("11010")),
            (bin("1101"), bin("11"), bin("10111")),
            (
                Polynomial(0x40000000),
                Polynomial(0x40000000),
                Polynomial(0x1000000000000000),
            ),
            (bin("1010"), bin("100100"), bin("101101000")),
            (bin("100"), bin("11"), bin("1100")),
            (bin("11"), bin("110101"), bin("1011111")),
            (bin("10011"), bin("110101"), bin("1100001111")),
        ];
        for (x, y, expected) in cases {
            assert_eq!(x.checked_mul(y), Some(expected), "{x:?} * {y:?}");
            assert_eq!(y.checked_mul(x), Some(expected), "{y:?} * {x:?}");
        }
        assert_eq!(Polynomial(1 << 40).checked_mul(Polynomial(1 << 30)), None);
    }

    // polDivTests
    #[test]
    fn division_vectors() {
        let cases = [
            (Polynomial(10), Polynomial(50), Polynomial(0)),
            (Polynomial(0), Polynomial(1), Polynomial(0)),
            (bin("101101000"), bin("1010"), bin("100100")),
            (Polynomial(2), Polynomial(2), Polynomial(1)),
            (
                Polynomial(0x8000000000000000),
                Polynomial(0x8000000000000000),
                Polynomial(1),
            ),
            (bin("1100"), bin("100"), bin("11")),
            (bin("1100001111"), bin("10011"), bin("110101")),
        ];
        for (x, y, expected) in cases {
            assert_eq!(x.div_rem(y).unwrap().0, expected, "{x:?} / {y:?}");
        }
        assert!(Polynomial(5).div_rem(Polynomial(0)).is_none());
    }

    // polModTests
    #[test]
    fn modulo_vectors() {
        let cases = [
            (Polynomial(10), Polynomial(50), Polynomial(10)),
            (Polynomial(0), Polynomial(1), Polynomial(0)),
            (bin("101101001"), bin("1010"), bin("1")),
            (Polynomial(2), Polynomial(2), Polynomial(0)),
            (
                Polynomial(0x8000000000000000),
                Polynomial(0x8000000000000000),
                Polynomial(0),
            ),
            (bin("1100"), bin("100"), bin("0")),
            (bin("1100001111"), bin("10011"), bin("0")),
        ];
        for (x, y, expected) in cases {
            assert_eq!(x.modulo(y), expected, "{x:?} mod {y:?}");
        }
    }

    // polGCDTests
    #[test]
    fn gcd_vectors() {
        let cases = [
            (Polynomial(10), Polynomial(50), Polynomial(2)),
            (Polynomial(0), Polynomial(1), Polynomial(1)),
            (bin("101101001"), bin("1010"), bin("1")),
            (Polynomial(2), Polynomial(2), Polynomial(2)),
            (bin("1010"), bin("11"), bin("11")),
            (
                Polynomial(0x8000000000000000),
                Polynomial(0x8000000000000000),
                Polynomial(0x8000000000000000),
            ),
            (bin("1100"), bin("101"), bin("11")),
            (bin("1100001111"), bin("10011"), bin("10011")),
            (
                Polynomial(0x3DA3358B4DC173),
                Polynomial(0x3DA3358B4DC173),
                Polynomial(0x3DA3358B4DC173),
            ),
            (
                Polynomial(0x3DA3358B4DC173),
                Polynomial(0x230d2259defd),
                Polynomial(1),
            ),
            (
                Polynomial(0x230d2259defd),
                Polynomial(0x51b492b3eff2),
                bin("10011"),
            ),
        ];
        for (x, y, expected) in cases {
            assert_eq!(x.gcd(y), expected, "gcd({x:?}, {y:?})");
            assert_eq!(y.gcd(x), expected, "gcd({y:?}, {x:?})");
        }
    }

    // polMulModTests
    #[test]
    fn mul_mod_vectors() {
        assert_eq!(
            Polynomial(0x1230).mul_mod(Polynomial(0x230), Polynomial(0x55)),
            Polynomial(0x22)
        );
        assert_eq!(
            Polynomial(0x0eae8c07dbbb3026)
                .mul_mod(Polynomial(0xd5d6db9de04771de), Polynomial(0xdd2bda3b77c9)),
            Polynomial(0x425ae8595b7a)
        );
    }

    // polIrredTests
    #[test]
    fn irreducibility_vectors() {
        let cases = [
            (0x38f1e565e288df, false),
            (0x3DA3358B4DC173, true),
            (0x30a8295b9d5c91, false),
            (0x255f4350b962cb, false),
            (0x267f776110a235, false),
            (0x2f4dae10d41227, false),
            (0x2482734cacca49, true),
            (0x312daf4b284899, false),
            (0x29dfb6553d01d1, false),
            (0x3548245eb26257, false),
            (0x3199e7ef4211b3, false),
            (0x362f39017dae8b, false),
            (0x200d57aa6fdacb, false),
            (0x35e0a4efa1d275, false),
            (0x2ced55b026577f, false),
            (0x260b012010893d, false),
            (0x2df29cbcd59e9d, false),
            (0x3f2ac7488bd429, false),
            (0x3e5cb1711669fb, false),
            (0x226d8de57a9959, false),
            (0x3c8de80aaf5835, false),
            (0x2026a59efb219b, false),
            (0x39dfa4d13fb231, false),
            (0x3143d0464b3299, false),
        ];
        for (value, irreducible) in cases {
            assert_eq!(
                Polynomial(value).is_irreducible(),
                irreducible,
                "{value:#x}"
            );
        }
    }

    // TestExpandPolynomial
    #[test]
    fn expand_vector() {
        assert_eq!(
            Polynomial(0x3DA3358B4DC173).expand(),
            "x^53+x^52+x^51+x^50+x^48+x^47+x^45+x^41+x^40+x^37+x^36+x^34+x^32+x^31+x^27+x^25+x^24+x^22+x^19+x^18+x^16+x^15+x^14+x^8+x^6+x^5+x^4+x+1"
        );
    }

    #[test]
    fn hex_round_trip() {
        let pol: Polynomial = "3da3358b4dc173".parse().unwrap();
        assert_eq!(pol, Polynomial::RESTIC_TEST);
        assert_eq!(pol.to_string(), "3da3358b4dc173");
        assert_eq!("3DA3358B4DC173".parse::<Polynomial>().unwrap(), pol);
        assert_eq!(Polynomial(0x0f).to_string(), "f");
        for bad in [
            "",
            "0x3da3",
            "+3da3",
            "-1",
            "3da3 ",
            "g",
            "1ffffffffffffffff",
        ] {
            assert!(bad.parse::<Polynomial>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn degree() {
        assert_eq!(Polynomial(0).deg(), -1);
        assert_eq!(Polynomial(1).deg(), 0);
        assert_eq!(Polynomial::RESTIC_TEST.deg(), 53);
        assert_eq!(Polynomial(u64::MAX).deg(), 63);
    }

    #[test]
    fn random_polynomials_are_irreducible_degree_53() {
        for _ in 0..3 {
            let pol = Polynomial::random().unwrap();
            assert_eq!(pol.deg(), 53);
            assert_eq!(pol.0 & 1, 1);
            assert!(pol.is_irreducible());
        }
    }
}
