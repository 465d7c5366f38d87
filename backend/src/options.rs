//! Parsing of backend `-o key=value` values the way restic (Go) parses them.
//!
//! Every backend (local, SFTP, S3) and the CLI read numeric options such as
//! `sftp.connections` with Go's `strconv.ParseUint(s, 0, 64)`, so `0x10`,
//! `0o20`, `0b10000` and `020` all mean 16; one parser keeps them agreeing.

/// Go's `strconv.ParseUint(s, 0, 64)`: `0x`, `0o`, `0b` prefixes (any case), a
/// leading `0` means octal, and `_` may separate digits (or follow a base
/// prefix) as Go's `underscoreOK` allows; `None` for anything Go rejects
/// (signs, empty digits, misplaced underscores, overflow).
pub fn parse_go_uint(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (body, radix, prefixed) = if let Some(h) = lower.strip_prefix("0x") {
        (h, 16, true)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o, 8, true)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b, 2, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8, true)
    } else {
        (lower.as_str(), 10, false)
    };
    if !underscores_ok(body, prefixed) {
        return None;
    }
    let digits = body.replace('_', "");
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// Go's rule: an underscore must follow a digit (or the base prefix) and be
/// followed by a digit.
fn underscores_ok(body: &str, prefixed: bool) -> bool {
    let mut after_digit = prefixed;
    let mut after_underscore = false;
    for c in body.chars() {
        if c == '_' {
            if !after_digit {
                return false;
            }
            after_digit = false;
            after_underscore = true;
        } else {
            after_digit = c.is_ascii_alphanumeric();
            after_underscore = false;
        }
    }
    !after_underscore
}

/// The error text Go's `strconv.ParseUint` gives for `value`.
pub fn go_uint_syntax_error(value: &str) -> String {
    format!("strconv.ParseUint: parsing \"{value}\": invalid syntax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_prefixes_and_rejections() {
        assert_eq!(parse_go_uint("16"), Some(16));
        assert_eq!(parse_go_uint("0x10"), Some(16));
        assert_eq!(parse_go_uint("0X1_0"), Some(16));
        assert_eq!(parse_go_uint("0o20"), Some(16));
        assert_eq!(parse_go_uint("0b10000"), Some(16));
        assert_eq!(parse_go_uint("020"), Some(16));
        assert_eq!(parse_go_uint("0"), Some(0));
        assert_eq!(parse_go_uint("1_000"), Some(1000));
        assert_eq!(parse_go_uint("0x_10"), Some(16));
        for bad in [
            "",
            "+5",
            "-1",
            "_1",
            "1_",
            "1__0",
            "0x",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(parse_go_uint(bad), None, "{bad}");
        }
    }
}
