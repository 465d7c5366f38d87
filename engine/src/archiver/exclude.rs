//! `--exclude` patterns with restic's semantics (`internal/filter`).
//!
//! A pattern and the absolute path are split into `/`-separated components.
//! Each pattern component is a shell glob (`*`, `?`, `[...]`, `\` escapes;
//! `*` never crosses `/`); a `**` component matches any number of path
//! components. A pattern that starts with `/` is anchored at the root;
//! any other pattern matches a run of path components anywhere in the path
//! (`foo` excludes every item named `foo`, `data/*.tmp` every `.tmp` file in
//! any folder named `data`). Patterns are matched against the item's absolute
//! path; an excluded folder is not descended into.

/// A compiled list of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct ExcludeMatcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    anchored: bool,
    parts: Vec<Vec<u8>>,
}

impl ExcludeMatcher {
    /// Compile patterns (empty ones are ignored).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| p.as_ref().trim_end_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let anchored = p.starts_with('/');
                let parts = p
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .map(|c| c.as_bytes().to_vec())
                    .collect();
                Pattern { anchored, parts }
            })
            .collect();
        ExcludeMatcher { patterns }
    }

    /// True when no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True if the absolute `path` (raw bytes) matches any pattern.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        self.patterns.iter().any(|p| {
            if p.anchored {
                match_parts(&p.parts, &comps)
            } else {
                (0..=comps.len())
                    .any(|start| match_parts(&p.parts, comps.get(start..).unwrap_or(&[])))
            }
        })
    }
}

/// Match pattern components against path components starting at the first
/// path component. The pattern must be consumed; the path may continue
/// (a match of a parent folder excludes its contents).
fn match_parts(pat: &[Vec<u8>], path: &[&[u8]]) -> bool {
    match pat.split_first() {
        None => true,
        Some((first, rest)) if first.as_slice() == b"**" => {
            (0..=path.len()).any(|skip| match_parts(rest, path.get(skip..).unwrap_or(&[])))
        }
        Some((first, rest)) => match path.split_first() {
            Some((comp, path_rest)) => glob_match(first, comp) && match_parts(rest, path_rest),
            None => false,
        },
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

    #[test]
    fn globs() {
        assert!(glob_match(b"*.tmp", b"a.tmp"));
        assert!(!glob_match(b"*.tmp", b"a.tmpx"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"\\*", b"*"));
    }

    #[test]
    fn restic_semantics() {
        let m = ExcludeMatcher::new(&["*.tmp", "/abs/only", "cache/**/x", "node_modules"]);
        assert!(m.is_excluded(b"/home/u/a.tmp"));
        assert!(m.is_excluded(b"/abs/only"));
        assert!(m.is_excluded(b"/abs/only/below"));
        assert!(!m.is_excluded(b"/x/abs/only"));
        assert!(m.is_excluded(b"/p/cache/x"));
        assert!(m.is_excluded(b"/p/cache/a/b/x"));
        assert!(m.is_excluded(b"/src/node_modules"));
        assert!(!m.is_excluded(b"/src/node_modules_not"));
        assert!(!ExcludeMatcher::new::<&str>(&[]).is_excluded(b"/a"));
    }
}
