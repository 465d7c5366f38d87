//! A fast path for reading index files of the shape restic writes.
//!
//! A cold index cache (and every command that loads the whole index) parses
//! every index file: at 10M blobs that is about 1.5 GB of JSON, and
//! `serde_json`'s general deserializer spent a fifth of a cold build's CPU
//! on it. This reader knows the one schema (spec: restic-format §9; restic
//! `internal/index/index.go`, `jsonIndex`/`packJSON`/`blobJSON`) and reads
//! IDs and numbers straight from the bytes. It accepts only input whose
//! meaning is beyond doubt, giving up (`None`) on anything else: escapes
//! in strings, unknown or repeated keys, missing fields, signs, fractions,
//! exponents, leading zeros, overflow, trailing bytes. The caller then
//! parses with `serde_json`, which gives the answer or the error; so the
//! fast path never changes what is accepted or how (the tests compare the
//! two on valid and invalid input).

use super::{IndexBlob, IndexFile, IndexPack};
use crate::id::{BlobType, Id};

/// The index file in `json`, or `None` when the fast path does not apply.
pub(super) fn parse(json: &[u8]) -> Option<IndexFile> {
    let mut r = Reader { b: json, i: 0 };
    let mut file = IndexFile::default();
    let (mut seen_supersedes, mut seen_packs) = (false, false);
    r.object(|r, key| match key {
        b"supersedes" if !seen_supersedes => {
            seen_supersedes = true;
            if !r.null()? {
                let mut ids = Vec::new();
                r.array(|r| {
                    ids.push(r.id()?);
                    Some(())
                })?;
                file.supersedes = Some(ids);
            }
            Some(())
        }
        b"packs" if !seen_packs => {
            seen_packs = true;
            if !r.null()? {
                r.array(|r| {
                    file.packs.push(r.pack()?);
                    Some(())
                })?;
            }
            Some(())
        }
        _ => None,
    })?;
    r.end()?;
    Some(file)
}

/// A position in the JSON text.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    /// Skips JSON whitespace; the next byte.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// `null` (consumed: true) or something else (left: false).
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        let rest = self.b.get(self.i..)?;
        rest.starts_with(b"null").then(|| {
            self.i += 4;
            true
        })
    }

    /// A string without escapes or control characters: its bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..)?;
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    fn id(&mut self) -> Option<Id> {
        self.eat(b'"')?;
        // 64 hex digits, then the closing quote: a quote, backslash or
        // control character inside is no hex digit, so `from_hex_bytes`
        // refuses it.
        let hex = self.b.get(self.i..self.i + 64)?;
        if self.b.get(self.i + 64) != Some(&b'"') {
            return None;
        }
        let id = Id::from_hex_bytes(hex).ok()?;
        self.i += 65;
        Some(id)
    }

    /// A non-negative integer in plain decimal notation.
    fn uint(&mut self) -> Option<u64> {
        self.peek()?;
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        match self.b.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    /// An object: `member` is called with each key and reads its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.delimited(b'{', b'}', |p| {
            let key = p.string()?;
            p.eat(b':')?;
            member(p, key)
        })
    }

    /// An array: `item` reads each element.
    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(b'[', b']', item)
    }

    /// `open`, elements separated by commas (each read by `element`),
    /// `close`; an empty sequence too.
    fn delimited(
        &mut self,
        open: u8,
        close: u8,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `{"id": ..., "blobs": [...]}`.
    fn pack(&mut self) -> Option<IndexPack> {
        let mut id = None;
        let mut blobs = None;
        self.object(|r, key| match key {
            b"id" if id.is_none() => {
                id = Some(r.id()?);
                Some(())
            }
            b"blobs" if blobs.is_none() => {
                let mut list = Vec::new();
                if !r.null()? {
                    r.array(|r| {
                        list.push(r.blob()?);
                        Some(())
                    })?;
                }
                blobs = Some(list);
                Some(())
            }
            _ => None,
        })?;
        Some(IndexPack {
            id: id?,
            blobs: blobs.unwrap_or_default(),
        })
    }

    /// `{"id", "type", "offset", "length"[, "uncompressed_length"]}`.
    fn blob(&mut self) -> Option<IndexBlob> {
        let (mut id, mut blob_type, mut offset, mut length) = (None, None, None, None);
        let mut uncompressed: Option<Option<u32>> = None;
        self.object(|r, key| {
            match key {
                b"id" if id.is_none() => id = Some(r.id()?),
                b"type" if blob_type.is_none() => {
                    blob_type = Some(match r.string()? {
                        b"data" => BlobType::Data,
                        b"tree" => BlobType::Tree,
                        _ => return None,
                    })
                }
                b"offset" if offset.is_none() => offset = Some(r.uint()?),
                b"length" if length.is_none() => length = Some(r.u32()?),
                b"uncompressed_length" if uncompressed.is_none() => {
                    uncompressed = Some(if r.null()? { None } else { Some(r.u32()?) })
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(IndexBlob {
            id: id?,
            blob_type: blob_type?,
            offset: offset?,
            length: length?,
            uncompressed_length: uncompressed.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(json: &[u8]) -> Option<IndexFile> {
        serde_json::from_slice(json).ok()
    }

    /// The fast path either gives up or agrees with serde_json.
    fn agrees(json: &str) -> Option<IndexFile> {
        let fast = parse(json.as_bytes());
        if let Some(f) = &fast {
            assert_eq!(Some(f), serde(json.as_bytes()).as_ref(), "{json}");
        }
        fast
    }

    const ID_A: &str = "3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce";
    const ID_B: &str = "73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c";

    fn blob(fields: &str) -> String {
        format!(r#"{{"packs":[{{"id":"{ID_B}","blobs":[{fields}]}}]}}"#)
    }

    #[test]
    fn reads_what_restic_writes_as_serde_json_does() {
        let go = format!(
            r#"{{"supersedes":["{ID_A}"],"packs":[{{"id":"{ID_B}","blobs":[{{"id":"{ID_A}","type":"data","offset":0,"length":38,"uncompressed_length":6}},{{"id":"{ID_B}","type":"tree","offset":18446744073709551615,"length":4294967295}}]}},{{"id":"{ID_A}","blobs":[]}},{{"id":"{ID_A}","blobs":null}},{{"id":"{ID_A}"}}]}}"#
        );
        let f = agrees(&go).unwrap();
        assert_eq!(f.packs.len(), 4);
        assert_eq!(f.packs[0].blobs[1].offset, u64::MAX);
        for fine in [
            "{}".to_string(),
            r#"{"packs":null}"#.into(),
            r#"{"packs":[],"supersedes":null}"#.into(),
            format!(" \n{{ \"packs\" : [ {{ \"blobs\" : [ ] , \"id\" : \"{ID_A}\" }} ] }}\r\n\t"),
            blob(&format!(
                r#"{{"length":1,"uncompressed_length":null,"offset":2,"type":"tree","id":"{ID_A}"}}"#
            )),
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"data","offset":0,"length":0,"uncompressed_length":0}}"#
            )),
            // Upper-case hex is an ID too.
            blob(&format!(
                r#"{{"id":"{}","type":"data","offset":0,"length":0}}"#,
                ID_A.to_uppercase()
            )),
        ] {
            assert!(agrees(&fine).is_some(), "{fine}");
        }
    }

    #[test]
    fn gives_up_on_anything_else() {
        let full = |extra: &str| {
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"data","offset":1,"length":2{extra}}}"#
            ))
        };
        for odd in [
            String::new(),
            "   ".into(),
            "[]".into(),
            "null".into(),
            "{".into(),
            r#"{"packs":[]}x"#.into(),
            r#"{"packs":[],}"#.into(),
            r#"{"packs":[],"packs":[]}"#.into(),
            r#"{"packs":[1]}"#.into(),
            r#"{"packs":{}}"#.into(),
            r#"{"other":1}"#.into(),
            r#"{"pa\u0063ks":[]}"#.into(),
            format!(r#"{{"packs":[{{"id":"{ID_A}","blobs":[],"x":1}}]}}"#),
            format!(r#"{{"packs":[{{"id":"{ID_A}","id":"{ID_A}"}}]}}"#),
            r#"{"packs":[{"blobs":[]}]}"#.into(),
            format!(r#"{{"packs":[{{"id":"{}"}}]}}"#, &ID_A[..63]),
            format!(r#"{{"packs":[{{"id":"{}g"}}]}}"#, &ID_A[..63]),
            format!(r#"{{"packs":[{{"id":"\u0033{}"}}]}}"#, &ID_A[1..]),
            r#"{"packs":[{"id":null}]}"#.into(),
            full(r#","uncompressed_length":-1"#),
            full(r#","uncompressed_length":1.0"#),
            full(r#","uncompressed_length":1e3"#),
            full(r#","uncompressed_length":01"#),
            full(r#","uncompressed_length":4294967296"#),
            full(r#","uncompressed_length":"1""#),
            full(r#","uncompressed_length":1,"uncompressed_length":2"#),
            full(r#","length":3"#),
            full(r#","extra":true"#),
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"Data","offset":1,"length":2}}"#
            )),
            blob(&format!(r#"{{"id":"{ID_A}","type":"data","length":2}}"#)),
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"data","offset":18446744073709551616,"length":2}}"#
            )),
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"data","offset":1,"length":4294967296}}"#
            )),
            blob(&format!(
                r#"{{"id":"{ID_A}","type":"data","offset":1,"length":2}},"#
            )),
        ] {
            // Either way: serde_json decides.
            assert!(agrees(&odd).is_none(), "{odd}");
        }
    }

    #[test]
    fn a_large_go_shaped_file_is_read_as_serde_json_reads_it() {
        let mut f = IndexFile::default();
        for p in 0..50u32 {
            let mut pack = IndexPack {
                id: Id::hash(&p.to_le_bytes()),
                blobs: Vec::new(),
            };
            for b in 0..200u32 {
                pack.blobs.push(IndexBlob {
                    id: Id::hash(&(p * 1000 + b).to_le_bytes()),
                    blob_type: if b % 7 == 0 {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    },
                    offset: u64::from(b) * 4099,
                    length: 100 + b,
                    uncompressed_length: (b % 3 == 0).then_some(b * 2 + 1),
                });
            }
            f.packs.push(pack);
        }
        let json = f.to_json();
        assert_eq!(parse(&json), Some(f));
    }
}
