//! `--exclude` patterns of `backup` with restic's semantics (see
//! [`crate::path_pattern`]), matched against each item's absolute path; an
//! excluded folder is not descended into.

use crate::path_pattern::{components, PathPattern};

/// A compiled list of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct ExcludeMatcher {
    patterns: Vec<PathPattern>,
}

impl ExcludeMatcher {
    /// Compile patterns (empty ones are ignored).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| PathPattern::parse(p.as_ref()))
            .filter(|p| !p.is_empty())
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
        let comps = components(path);
        self.patterns.iter().any(|p| p.matches(&comps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_semantics() {
        let m = ExcludeMatcher::new(&["*.tmp", "/abs/only", "cache/**/x", "node_modules", "", "/"]);
        assert!(m.is_excluded(b"/home/u/a.tmp"));
        assert!(m.is_excluded(b"/abs/only"));
        assert!(m.is_excluded(b"/abs/only/below"));
        assert!(!m.is_excluded(b"/x/abs/only"));
        assert!(m.is_excluded(b"/p/cache/x"));
        assert!(m.is_excluded(b"/p/cache/a/b/x"));
        assert!(m.is_excluded(b"/src/node_modules"));
        assert!(!m.is_excluded(b"/src/node_modules_not"));
        assert!(!m.is_excluded(b"/plain/file"));
        assert!(!ExcludeMatcher::new::<&str>(&[]).is_excluded(b"/a"));
    }
}
