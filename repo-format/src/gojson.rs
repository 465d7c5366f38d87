//! A writer for Go `encoding/json` compatible output (HTML escaping on).
//! spec: restic-format §12.1-12.2.
//!
//! Strings are Go strings: arbitrary bytes; invalid UTF-8 becomes `\ufffd`
//! per offending byte.

use base64::Engine;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a quoted JSON string exactly like Go's `json.Marshal`.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut rest = s;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                write_valid(out, valid);
                break;
            }
            Err(e) => {
                let (valid, tail) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                write_valid(out, std::str::from_utf8(valid).unwrap_or_default());
                // Each byte of the maximal invalid subpart is a separate
                // error for Go's utf8.DecodeRune.
                let bad = e.error_len().unwrap_or(tail.len());
                for _ in 0..bad {
                    out.extend_from_slice(b"\\ufffd");
                }
                rest = tail.get(bad..).unwrap_or_default();
            }
        }
    }
    out.push(b'"');
}

fn write_valid(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'<' => Some(b"\\u003c"),
            b'>' => Some(b"\\u003e"),
            b'&' => Some(b"\\u0026"),
            _ => None,
        };
        if let Some(e) = esc {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(e);
            i += 1;
            start = i;
        } else if b < 0x20 {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
            i += 1;
            start = i;
        } else if b == 0xe2
            && bytes.get(i + 1) == Some(&0x80)
            && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9))
        {
            // U+2028 / U+2029
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends a Go `[]byte` value: `null` for nil, else padded standard base64.
pub fn write_base64(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(b"null"),
        Some(b) => {
            out.push(b'"');
            let mut s = String::new();
            base64::engine::general_purpose::STANDARD.encode_string(b, &mut s);
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
    }
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a `json.RawMessage` the way Go's encoder does: compacted
/// (insignificant whitespace removed) and HTML-escaped.
pub fn write_raw_compact(out: &mut Vec<u8>, raw: &[u8]) {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        i += push_html_escaped(out, raw, i);
    }
}

/// Pushes `raw[i]` (or the 3-byte U+2028/9 starting there) HTML-escaped and
/// returns how many input bytes were consumed.
fn push_html_escaped(out: &mut Vec<u8>, raw: &[u8], i: usize) -> usize {
    match raw[i] {
        b'<' => out.extend_from_slice(b"\\u003c"),
        b'>' => out.extend_from_slice(b"\\u003e"),
        b'&' => out.extend_from_slice(b"\\u0026"),
        0xe2 if raw.get(i + 1) == Some(&0x80) && matches!(raw.get(i + 2), Some(0xa8 | 0xa9)) => {
            out.extend_from_slice(if raw[i + 2] == 0xa8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            return 3;
        }
        b => out.push(b),
    }
    1
}

/// Applies Go's HTML escaping (`<`, `>`, `&`, U+2028, U+2029) to the output
/// of another JSON serializer (serde_json), making it byte-identical to Go's
/// `json.Marshal` for valid UTF-8 strings. These characters can only occur
/// inside strings, so a byte-level pass is exact.
pub fn html_escape(json: Vec<u8>) -> Vec<u8> {
    let needs = json.iter().enumerate().any(|(i, &b)| {
        matches!(b, b'<' | b'>' | b'&') || (b == 0xe2 && json.get(i + 1) == Some(&0x80))
    });
    if !needs {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        i += push_html_escaped(&mut out, &json, i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> String {
        let mut o = Vec::new();
        write_string(&mut o, b);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn go_string_rules() {
        // spec: restic-format §12.1
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"\n\r\t\x08\x0c\x01\x1f"), r#""\n\r\t\b\f\u0001\u001f""#);
        assert_eq!(s(b"<a>&b/"), r#""\u003ca\u003e\u0026b/""#);
        assert_eq!(s("x\u{2028}y\u{2029}z".as_bytes()), r#""x\u2028y\u2029z""#);
        assert_eq!(
            s(b"\x00\x01\x02\xfa\xfb\xfc"),
            r#""\u0000\u0001\u0002\ufffd\ufffd\ufffd""#
        );
        assert_eq!(s("\u{fffd}\x7fü☃😀".as_bytes()), "\"\u{fffd}\x7fü☃😀\"");
        assert_eq!(s(b"\xe2\x80A"), r#""\ufffd\ufffdA""#);
        assert_eq!(s(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(s(b"\xf0\x9f\x98"), r#""\ufffd\ufffd\ufffd""#);
    }

    #[test]
    fn raw_and_html() {
        let mut o = Vec::new();
        write_raw_compact(&mut o, b"{ \"a b\" : [1, \"<x>\"] ,\n \"c\":true }");
        assert_eq!(o, br#"{"a b":[1,"\u003cx\u003e"],"c":true}"#);
        assert_eq!(
            html_escape(br#"{"a":"<&>"}"#.to_vec()),
            br#"{"a":"\u003c\u0026\u003e"}"#
        );
        let mut o = Vec::new();
        write_base64(&mut o, Some(&[0, 1, 2, 0xfa, 0xfb, 0xfc]));
        write_base64(&mut o, None);
        write_base64(&mut o, Some(&[]));
        assert_eq!(o, br#""AAEC+vv8"null"""#);
        let mut o = Vec::new();
        write_u64(&mut o, 0);
        o.push(b',');
        write_u64(&mut o, u64::MAX);
        assert_eq!(o, b"0,18446744073709551615");
    }
}
