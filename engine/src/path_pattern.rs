//! restic's path patterns (`internal/filter`, spec: cli.md §10.4), one
//! matcher for backup's `--exclude`, restore's `--include`/`--exclude` and
//! `find`.
//!
//! A pattern and a path are split into `/`-separated components (empty and
//! `.` components dropped). Each pattern component is a shell glob (`*`, `?`,
//! `[...]`, `\` escapes; `*` never crosses `/`); a `**` component matches any
//! number (also zero) of path components. A pattern starting with `/` is
//! anchored at the root; any other pattern matches a run of consecutive path
//! components anywhere. The path may go on after the pattern ends, so a
//! pattern naming a folder matches everything below it.
//!
//! ```
//! use restix_engine::path_pattern::{components, PathPattern};
//! let p = PathPattern::parse("data/*.tmp");
//! assert!(p.matches(&components(b"/home/data/x.tmp")));
//! assert!(!PathPattern::parse("/data").matches(&components(b"/home/data")));
//! ```

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    anchored: bool,
    parts: Vec<Vec<u8>>,
}

impl PathPattern {
    /// Parses `pattern` (already cleaned or lower-cased as the caller needs).
    pub fn parse(pattern: &str) -> PathPattern {
        PathPattern {
            anchored: pattern.starts_with('/'),
            parts: components(pattern.as_bytes())
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        }
    }

    /// Whether the pattern has no components (it then matches nothing).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the path with these components matches.
    pub fn matches<C: AsRef<[u8]>>(&self, comps: &[C]) -> bool {
        if self.parts.is_empty() {
            return false;
        }
        if self.anchored {
            run_matches(&self.parts, comps)
        } else {
            (0..=comps.len())
                .any(|start| run_matches(&self.parts, comps.get(start..).unwrap_or(&[])))
        }
    }

    /// Whether something below the folder with these components could match:
    /// always for an unanchored pattern; for an anchored one, when the
    /// folder matches the pattern's leading components (up to a `**`).
    pub fn may_match_below<C: AsRef<[u8]>>(&self, comps: &[C]) -> bool {
        if !self.anchored {
            return true;
        }
        let mut comps = comps;
        if let Some(pos) = self.parts.iter().position(|p| p == b"**") {
            comps = comps.get(..pos).unwrap_or(comps);
        }
        let n = comps.len().min(self.parts.len());
        let prefix = self.parts.get(..n).unwrap_or(&[]);
        prefix.is_empty() || run_matches(prefix, comps)
    }
}

/// The components of `path`: split at `/`, empty and `.` ones dropped.
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// Whether `parts` match the leading components of `comps` (which may go on).
fn run_matches<C: AsRef<[u8]>>(parts: &[Vec<u8>], comps: &[C]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    if first.as_slice() == b"**" {
        return (0..=comps.len()).any(|skip| run_matches(rest, comps.get(skip..).unwrap_or(&[])));
    }
    match comps.split_first() {
        Some((comp, comps_rest)) => {
            glob_match(first, comp.as_ref()) && run_matches(rest, comps_rest)
        }
        None => false,
    }
}

/// Shell glob match of one component (Go `filepath.Match` semantics).
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let (mut star_p, mut star_n) = (None::<usize>, 0usize);
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star_p = Some(p);
                star_n = n;
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, next)) =
                    match_class(pattern, p, name.get(n).copied().unwrap_or(0))
                {
                    if matched {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
            }
            Some(b'\\') if pattern.get(p + 1).is_some() && pattern.get(p + 1) == name.get(n) => {
                p += 2;
                n += 1;
                continue;
            }
            Some(c) if Some(c) == name.get(n) => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star_p {
            Some(sp) => {
                star_n += 1;
                n = star_n;
                p = sp + 1;
            }
            None => return false,
        }
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// Match a `[...]` class at `pattern[start]`; returns (matched, index after `]`).
fn match_class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'^') | Some(b'!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if lo == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&b| b != b']') {
            hi = *pattern.get(i + 1)?;
            if hi == b'\\' {
                hi = *pattern.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).matches(&components(path.as_bytes()))
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.tmp", b"a.tmp"));
        assert!(!glob_match(b"*.tmp", b"a.tmpx"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"\\*", b"*"));
        assert!(glob_match(b"a*b*c", b"aXbYbZc"));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_match(b"*a*b", b"xxaxxbxx"));
    }

    #[test]
    fn runs_anchoring_and_double_star() {
        assert!(m("sub", "/data/sub"));
        assert!(m("sub", "/data/sub/file"));
        assert!(!m("sub", "/data/subx"));
        assert!(m("data/*.tmp", "/a/data/x.tmp"));
        assert!(m("/data/sub", "/data/sub/x"));
        assert!(!m("/data/sub", "/other/data/sub"));
        assert!(m("/data/**/x.txt", "/data/x.txt"));
        assert!(m("/data/**/x.txt", "/data/a/b/x.txt"));
        assert!(m("cache/**/x", "/p/cache/a/b/x"));
        assert!(m("**/x", "/q/x"));
        assert!(!m("", "/a"));
        assert!(!m("/", "/a"));
        assert!(!m("/a.txt", "/data/a.txt"));
    }

    #[test]
    fn below_a_folder() {
        let p = PathPattern::parse("/data/sub");
        assert!(p.may_match_below(&components(b"/data")));
        assert!(!p.may_match_below(&components(b"/other")));
        let p = PathPattern::parse("/data/**/x.txt");
        assert!(p.may_match_below(&components(b"/data/a/b")));
        assert!(PathPattern::parse("x").may_match_below(&components(b"/y")));
    }
}
