//! Parsing of backend `-o key=value` values the way restic (Go) parses them.
//!
//! Every backend (local, SFTP, S3, ...) and the CLI read numeric options such
//! as `sftp.connections` with Go's `strconv.ParseUint(s, 0, 64)`, so `0x10`,
//! `0o20`, `0b10000` and `020` all mean 16; one parser keeps them agreeing.
//! Durations (`rclone.timeout`) are Go's `time.ParseDuration`
//! ([`parse_go_duration`]); command lines (`rclone.program`,
//! `rclone.args`) are split by [`crate::shell_split`].

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

/// Go's `time.ParseDuration` for the durations options take (`5m`,
/// `1h30m`, `1.5s`, `300ms`, `0`); `None` for what Go rejects.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    if text == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

/// The error text Go's `time.ParseDuration` gives for `value`.
pub fn go_duration_syntax_error(value: &str) -> String {
    format!("time: invalid duration \"{value}\"")
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

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        for bad in ["", "soon", "5", "5x", "s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
        assert_eq!(
            go_duration_syntax_error("soon"),
            "time: invalid duration \"soon\""
        );
    }
}
