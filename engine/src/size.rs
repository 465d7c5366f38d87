//! Sizes as restic's `ui.ParseBytes` reads them (spec: cli §1.4): an
//! integer with an optional `b`/`k`/`m`/`g`/`t` suffix, either case, in
//! powers of 1024. The one parser for the engine (`check --read-data-subset`,
//! `prune --max-unused`) and the CLI (`--pack-size`, `--max-repack-size`,
//! `--blob-cache`, ...).

/// Why a size did not parse; the texts are restic's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The number before the suffix is no integer.
    #[error("strconv.ParseInt: parsing \"{number}\": invalid syntax")]
    InvalidSyntax {
        /// The number part as given.
        number: String,
    },
    /// The size does not fit in 64 bits.
    #[error("value {value} is too large")]
    TooLarge {
        /// The whole value as given.
        value: String,
    },
}

/// Parse a size (surrounding whitespace ignored).
pub fn parse_size(value: &str) -> Result<u64, SizeError> {
    let trimmed = value.trim();
    let (number, multiplier) = match trimmed.chars().last() {
        Some('b' | 'B') => (&trimmed[..trimmed.len() - 1], 1u64),
        Some('k' | 'K') => (&trimmed[..trimmed.len() - 1], 1 << 10),
        Some('m' | 'M') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g' | 'G') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t' | 'T') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: u64 = number.parse().map_err(|_| SizeError::InvalidSyntax {
        number: number.to_string(),
    })?;
    n.checked_mul(multiplier)
        .ok_or_else(|| SizeError::TooLarge {
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_restic() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("5"), Ok(5));
        assert_eq!(parse_size(" 2m "), Ok(2 << 20));
        assert_eq!(parse_size("7b"), Ok(7));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(
            parse_size("x").unwrap_err().to_string(),
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert_eq!(
            parse_size("99999999999T").unwrap_err().to_string(),
            "value 99999999999T is too large"
        );
    }
}
