//! Go `strconv.Quote` / `strconv.Unquote` for node names. spec: §11.3.

use super::printable::PRINTABLE_RANGES;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Go's `strconv.IsPrint` (Unicode 15.0: categories L, M, N, P, S + U+0020).
pub fn is_print(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x80 {
        return (0x20..0x7f).contains(&cp);
    }
    PRINTABLE_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Appends the inner part of Go's `strconv.Quote(name)` (no surrounding
/// quotes). The result is always valid UTF-8.
pub fn quote_inner(out: &mut Vec<u8>, name: &[u8]) {
    let mut rest = name;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                quote_valid(out, valid);
                break;
            }
            Err(e) => {
                let (valid, tail) = rest.split_at(e.valid_up_to());
                quote_valid(out, std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(tail.len());
                for &b in tail.iter().take(bad) {
                    push_x(out, b);
                }
                rest = tail.get(bad..).unwrap_or_default();
            }
        }
    }
}

fn push_x(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(b"\\x");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 15)]);
}

fn quote_valid(out: &mut Vec<u8>, s: &str) {
    // Fast path: plain printable ASCII without quote/backslash.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if is_print(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '\x07' => out.extend_from_slice(b"\\a"),
            '\x08' => out.extend_from_slice(b"\\b"),
            '\x0c' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\x0b' => out.extend_from_slice(b"\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => push_x(out, c as u8),
            c if (c as u32) < 0x10000 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => out.extend_from_slice(format!("\\U{:08x}", c as u32).as_bytes()),
        }
    }
}

/// Go's `strconv.Unquote("\"" + s + "\"")`: `None` on a syntax error.
pub fn unquote_inner(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'\\' || c == b'"' || c == b'\n') {
        return Some(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\n' => return None,
            b'\\' => {
                let esc = *b.get(i + 1)?;
                i += 2;
                match esc {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' => {
                        let v = hex_n(b.get(i..i + 2)?)?;
                        out.push(v as u8);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if esc == b'u' { 4 } else { 8 };
                        let v = hex_n(b.get(i..i + n)?)?;
                        let c = char::from_u32(v)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    b'0'..=b'7' => {
                        let d = b.get(i - 1..i + 2)?;
                        let mut v = 0u32;
                        for &c in d {
                            if !(b'0'..=b'7').contains(&c) {
                                return None;
                            }
                            v = v * 8 + u32::from(c - b'0');
                        }
                        if v > 255 {
                            return None;
                        }
                        out.push(v as u8);
                        i += 2;
                    }
                    _ => return None,
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex_n(d: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in d {
        let x = (c as char).to_digit(16)?;
        v = v * 16 + x;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(b: &[u8]) -> String {
        let mut o = Vec::new();
        quote_inner(&mut o, b);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn quote_rules() {
        assert_eq!(q(b"a\"b"), r#"a\"b"#);
        assert_eq!(q(b"back\\slash"), r#"back\\slash"#);
        assert_eq!(q(b"nl\nname"), r#"nl\nname"#);
        assert_eq!(q(b"ctl\x01\tname"), r#"ctl\x01\tname"#);
        assert_eq!(q(b"bad\xff\xfeutf8"), r#"bad\xff\xfeutf8"#);
        assert_eq!(q(b"del\x7f"), r#"del\x7f"#);
        assert_eq!(q("nbsp\u{a0}".as_bytes()), r#"nbsp\u00a0"#);
        assert_eq!(q("bom\u{feff}".as_bytes()), r#"bom\ufeff"#);
        assert_eq!(q("\u{e0001}".as_bytes()), r#"\U000e0001"#);
        assert_eq!(q(b"\x07\x08\x0b\x0c\r"), r#"\a\b\v\f\r"#);
        assert_eq!(
            q("\u{85}\u{ad}\u{200b}\u{2028}\u{e000}".as_bytes()),
            r#"\u0085\u00ad\u200b\u2028\ue000"#
        );
        assert_eq!(
            q("ünïcödé ☃ emoji😀 \u{fffd}".as_bytes()),
            "ünïcödé ☃ emoji😀 \u{fffd}"
        );
        assert_eq!(q("<html>&amp".as_bytes()), "<html>&amp");
        // A truncated multi-byte sequence is one \x per byte.
        assert_eq!(q(b"\xe2\x82"), r#"\xe2\x82"#);
        // Unicode 15.0 additions are printable (U+1F6DC WIRELESS), 15.1's are not (U+2FFC).
        assert_eq!(q("\u{1f6dc}".as_bytes()), "\u{1f6dc}");
        assert_eq!(q("\u{2ffc}".as_bytes()), r#"\u2ffc"#);
    }

    #[test]
    fn unquote_rules() {
        for name in [
            &b"a\"b"[..],
            b"back\\slash",
            b"nl\nname",
            b"ctl\x01\tname",
            b"bad\xff\xfeutf8",
            b"del\x7f",
            "nbsp\u{a0}\u{e0001}".as_bytes(),
            b"\x07\x08\x0b\x0c\r",
            b"plain",
        ] {
            let mut o = Vec::new();
            quote_inner(&mut o, name);
            assert_eq!(
                unquote_inner(std::str::from_utf8(&o).unwrap()).unwrap(),
                name
            );
        }
        assert_eq!(unquote_inner(r"\101\x41\u0041\U00000041").unwrap(), b"AAAA");
        assert!(unquote_inner(r#"a"b"#).is_none());
        assert!(unquote_inner("a\nb").is_none());
        assert!(unquote_inner(r"\'").is_none());
        assert!(unquote_inner(r"\x4").is_none());
        assert!(unquote_inner(r"\ud800").is_none());
        assert!(unquote_inner(r"\400").is_none());
        assert!(unquote_inner("\\").is_none());
        assert!(unquote_inner(r"\q").is_none());
    }
}
