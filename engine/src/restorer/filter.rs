//! restic's include/exclude patterns (`restic restore --include/--exclude`,
//! spec: cli.md §10.4), matched against absolute paths inside the snapshot
//! with [`crate::path_pattern`]'s semantics, plus what restore adds: a
//! pattern starting with `!` negates (a later negated pattern un-matches what
//! earlier patterns matched), and `--iinclude`/`--iexclude` compare
//! lower-cased.

use crate::path_pattern::{components, PathPattern};

/// One parsed include/exclude pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPattern {
    original: String,
    pattern: PathPattern,
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
        FilterPattern {
            original,
            pattern: PathPattern::parse(&body),
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
        self.with_components(path, |comps| self.pattern.matches(comps))
    }

    /// Whether a descendant of the directory `path` could match this pattern.
    pub fn child_may_match(&self, path: &[u8]) -> bool {
        self.with_components(path, |comps| self.pattern.may_match_below(comps))
    }

    /// Runs `f` on the components of `path` (lower-cased when the pattern is).
    fn with_components<R>(&self, path: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> R {
        if self.case_insensitive {
            let lowered = String::from_utf8_lossy(path).to_lowercase();
            f(&components(lowered.as_bytes()))
        } else {
            f(&components(path))
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

#[cfg(test)]
mod tests {
    use super::*;

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
