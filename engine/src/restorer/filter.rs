//! restic's include/exclude patterns (`restic restore --include/--exclude`,
//! spec: cli.md §10.4), matched against absolute paths inside the snapshot.
//!
//! Semantics (facts from restic's `internal/filter`):
//! * a pattern is split into `/`-separated parts; each part is a shell glob
//!   (`*`, `?`, `[...]`, `\` escapes; `*` never crosses `/`), and a part `**`
//!   matches any number (also zero) of path components;
//! * a pattern starting with `/` is anchored at the snapshot root, any other
//!   pattern may match at any depth;
//! * a pattern matches a path when it matches a leading (anchored) or any
//!   (unanchored) run of consecutive components, so a pattern naming a
//!   directory also matches everything below it;
//! * a pattern starting with `!` negates: a later negated pattern un-matches
//!   what earlier patterns matched.

/// One parsed include/exclude pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPattern {
    original: String,
    anchored: bool,
    parts: Vec<Vec<u8>>,
    negated: bool,
    case_insensitive: bool,
}

impl FilterPattern {
    /// Parse a pattern as given on the command line (`--include`/`--exclude`).
    pub fn new(pattern: &str) -> FilterPattern {
        Self::parse(pattern, false)
    }

    /// Parse a case-insensitive pattern (`--iinclude`/`--iexclude`).
    pub fn new_case_insensitive(pattern: &str) -> FilterPattern {
        Self::parse(pattern, true)
    }

    fn parse(pattern: &str, case_insensitive: bool) -> FilterPattern {
        let original = pattern.to_string();
        let (negated, body) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let body = if case_insensitive {
            body.to_lowercase()
        } else {
            body.to_string()
        };
        let anchored = body.starts_with('/');
        let parts = clean_components(body.as_bytes());
        FilterPattern {
            original,
            anchored,
            parts,
            negated,
            case_insensitive,
        }
    }

    /// The pattern text as given.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Whether this pattern matches `path` (absolute path inside the snapshot).
    pub fn matches(&self, path: &[u8]) -> bool {
        let comps = self.path_components(path);
        match_parts(&self.parts, self.anchored, &comps)
    }

    /// Whether a descendant of the directory `path` could match this pattern.
    pub fn child_may_match(&self, path: &[u8]) -> bool {
        if !self.anchored {
            return true;
        }
        let mut comps = self.path_components(path);
        if let Some(pos) = self.parts.iter().position(|p| p == b"**") {
            comps.truncate(pos);
        }
        let n = comps.len().min(self.parts.len());
        let prefix = self.parts.get(..n).unwrap_or(&[]);
        if prefix.is_empty() {
            return true;
        }
        match_parts(prefix, true, &comps)
    }

    fn path_components(&self, path: &[u8]) -> Vec<Vec<u8>> {
        if self.case_insensitive {
            let lowered = String::from_utf8_lossy(path).to_lowercase();
            clean_components(lowered.as_bytes())
        } else {
            clean_components(path)
        }
    }
}

/// A list of patterns evaluated in order, with negation.
#[derive(Debug, Clone, Default)]
pub struct PatternList {
    patterns: Vec<FilterPattern>,
}

impl PatternList {
    /// A list from parsed patterns.
    pub fn new(patterns: Vec<FilterPattern>) -> PatternList {
        PatternList { patterns }
    }

    /// True when the list has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `(matched, child_may_match)` for `path`.
    pub fn evaluate(&self, path: &[u8]) -> (bool, bool) {
        let mut matched = false;
        let mut child_may_match = false;
        for pattern in &self.patterns {
            let m = pattern.matches(path);
            if pattern.negated {
                if m {
                    matched = false;
                }
            } else {
                if m {
                    matched = true;
                }
                if pattern.child_may_match(path) {
                    child_may_match = true;
                }
            }
        }
        (matched, child_may_match || matched)
    }
}

/// Split a path into components, dropping empty parts and `.` (like Go's
/// `filepath.Clean` for the paths restic feeds in).
fn clean_components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| c.to_vec())
        .collect()
}

fn match_parts(parts: &[Vec<u8>], anchored: bool, comps: &[Vec<u8>]) -> bool {
    if parts.is_empty() {
        return false;
    }
    if anchored {
        match_from(parts, comps, true)
    } else {
        (0..=comps.len()).any(|start| match_from(parts, comps.get(start..).unwrap_or(&[]), true))
    }
}

/// Match `parts` against a prefix of `comps` (`prefix_ok`: trailing path
/// components after the pattern are allowed).
fn match_from(parts: &[Vec<u8>], comps: &[Vec<u8>], prefix_ok: bool) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return prefix_ok || comps.is_empty();
    };
    if first == b"**" {
        // `**` eats zero or more components.
        return (0..=comps.len())
            .any(|n| match_from(rest, comps.get(n..).unwrap_or(&[]), prefix_ok));
    }
    match comps.split_first() {
        Some((c, crest)) => glob_match(first, c) && match_from(rest, crest, prefix_ok),
        None => false,
    }
}

/// Shell glob on one path component (Go `filepath.Match`), shared with the
/// archiver's excludes.
pub(crate) use crate::archiver::exclude::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match(b"*.txt", b"a.txt"));
        assert!(!glob_match(b"*.txt", b"a.txt.bak"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn unanchored_matches_any_depth_and_contents() {
        let p = FilterPattern::new("sub");
        assert!(p.matches(b"/data/sub"));
        assert!(p.matches(b"/data/sub/file"));
        assert!(!p.matches(b"/data/subx"));
        let p = FilterPattern::new("*.bin");
        assert!(p.matches(b"/a/b/c.bin"));
        assert!(!p.matches(b"/a/b/c.txt"));
    }

    #[test]
    fn anchored_and_double_star() {
        let p = FilterPattern::new("/data/sub");
        assert!(p.matches(b"/data/sub/x"));
        assert!(!p.matches(b"/other/data/sub"));
        assert!(p.child_may_match(b"/data"));
        assert!(!p.child_may_match(b"/other"));
        let p = FilterPattern::new("/data/**/x.txt");
        assert!(p.matches(b"/data/x.txt"));
        assert!(p.matches(b"/data/a/b/x.txt"));
        assert!(p.child_may_match(b"/data/a/b"));
    }

    #[test]
    fn negation_and_case() {
        let list = PatternList::new(vec![
            FilterPattern::new("*.txt"),
            FilterPattern::new("!keep.txt"),
        ]);
        assert!(list.evaluate(b"/a/x.txt").0);
        assert!(!list.evaluate(b"/a/keep.txt").0);
        let p = FilterPattern::new_case_insensitive("*.TXT");
        assert!(p.matches(b"/A/b.txt"));
    }
}
