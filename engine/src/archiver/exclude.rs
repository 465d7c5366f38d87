//! What `backup` (and `rewrite`) leave out, with restic's semantics:
//!
//! - `--exclude` patterns (see [`crate::path_pattern`]) matched against
//!   each item's absolute path; an excluded folder is not descended into;
//! - `--iexclude` patterns, the same with pattern and path lower-cased
//!   (restic `RejectByInsensitivePattern`);
//! - `--exclude-if-present filename[:header]` and `--exclude-caches`
//!   (`CACHEDIR.TAG` with the Cache Directory Tagging header): every item
//!   whose folder holds the tag file (starting with `header`, if given) is
//!   left out, except the tag file itself, so the folder stays as an empty
//!   folder holding only its tag (restic `RejectIfPresent`,
//!   internal/archiver/exclude.go). The answer per folder is remembered.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::path_pattern::{components, PathPattern};

/// The tag file and header `--exclude-caches` looks for (bford.info/cachedir).
pub const CACHEDIR_TAG_SPEC: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

/// A `--exclude-if-present` spec that cannot be used (restic's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagFileError {
    #[error("name for exclusion tagfile is empty")]
    Empty,
    #[error("no name for exclusion tagfile provided")]
    NoName,
}

/// One `--exclude-if-present` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFile {
    /// The file name to look for in each folder.
    pub name: Vec<u8>,
    /// What the file must start with ("" = any content).
    pub header: Vec<u8>,
}

impl TagFile {
    /// Parse `filename[:header]` (split at the first colon).
    pub fn parse(spec: &str) -> Result<TagFile, TagFileError> {
        if spec.is_empty() {
            return Err(TagFileError::Empty);
        }
        match spec.split_once(':') {
            Some(("", _)) => Err(TagFileError::NoName),
            Some((name, header)) => Ok(TagFile {
                name: name.as_bytes().to_vec(),
                header: header.as_bytes().to_vec(),
            }),
            None => Ok(TagFile {
                name: spec.as_bytes().to_vec(),
                header: Vec::new(),
            }),
        }
    }

    /// Whether `dir` holds this tag file with the right header.
    fn marks(&self, dir: &[u8]) -> bool {
        let mut path = dir.to_vec();
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(&self.name);
        let path = Path::new(std::ffi::OsStr::from_bytes(&path));
        if std::fs::symlink_metadata(path).is_err() {
            return false;
        }
        if self.header.is_empty() {
            return true;
        }
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        let mut start = Vec::with_capacity(self.header.len());
        match file.take(self.header.len() as u64).read_to_end(&mut start) {
            Ok(_) => start == self.header,
            Err(_) => false,
        }
    }
}

/// Per tag rule (its index) and folder: whether the folder is excluded.
type TagVerdicts = Arc<Mutex<HashMap<(usize, Vec<u8>), bool>>>;

/// The exclusion rules of one backup.
#[derive(Debug, Clone, Default)]
pub struct ExcludeMatcher {
    patterns: Vec<PathPattern>,
    insensitive: Vec<PathPattern>,
    tag_files: Vec<TagFile>,
    /// Per tag rule: folder -> excluded (shared by clones: the scanner and
    /// the archiver ask about the same folders).
    visited: TagVerdicts,
}

impl ExcludeMatcher {
    /// Compile `--exclude` patterns (empty ones are ignored).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        ExcludeMatcher {
            patterns: compile(patterns.iter().map(|p| p.as_ref().to_string())),
            ..ExcludeMatcher::default()
        }
    }

    /// Add `--iexclude` patterns (case-insensitive).
    pub fn with_insensitive<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.insensitive
            .extend(compile(patterns.iter().map(|p| p.as_ref().to_lowercase())));
        self
    }

    /// Add `--exclude-if-present` rules; specs that do not parse are
    /// skipped (callers validate them with [`TagFile::parse`] first).
    pub fn with_tag_files<S: AsRef<str>>(mut self, specs: &[S]) -> Self {
        self.tag_files
            .extend(specs.iter().filter_map(|s| TagFile::parse(s.as_ref()).ok()));
        self
    }

    /// True when nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.insensitive.is_empty() && self.tag_files.is_empty()
    }

    /// True if `path` matches a pattern; never looks at the file system.
    pub fn is_excluded_by_name(&self, path: &[u8]) -> bool {
        if !self.patterns.is_empty() {
            let comps = components(path);
            if self.patterns.iter().any(|p| p.matches(&comps)) {
                return true;
            }
        }
        if !self.insensitive.is_empty() {
            let lower = String::from_utf8_lossy(path).to_lowercase();
            let comps = components(lower.as_bytes());
            if self.insensitive.iter().any(|p| p.matches(&comps)) {
                return true;
            }
        }
        false
    }

    /// True if the absolute `path` (raw bytes) is excluded: by a pattern,
    /// or because its folder holds a tag file.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        if self.is_excluded_by_name(path) {
            return true;
        }
        if self.tag_files.is_empty() {
            return false;
        }
        let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
            Some(0) => (&b"/"[..], &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b"."[..], path),
        };
        for (index, tag) in self.tag_files.iter().enumerate() {
            if base == tag.name.as_slice() {
                continue;
            }
            let key = (index, dir.to_vec());
            let known = self.visited.lock().ok().and_then(|m| m.get(&key).copied());
            let excluded = match known {
                Some(excluded) => excluded,
                None => {
                    let excluded = tag.marks(dir);
                    if let Ok(mut m) = self.visited.lock() {
                        m.insert(key, excluded);
                    }
                    excluded
                }
            };
            if excluded {
                return true;
            }
        }
        false
    }
}

fn compile(patterns: impl Iterator<Item = String>) -> Vec<PathPattern> {
    patterns
        .map(|p| PathPattern::parse(&p))
        .filter(|p| !p.is_empty())
        .collect()
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

    #[test]
    fn insensitive_patterns() {
        let m = ExcludeMatcher::new::<&str>(&[]).with_insensitive(&["*.JPG", "/Data/Cache"]);
        assert!(m.is_excluded(b"/home/u/photo.jpg"));
        assert!(m.is_excluded(b"/home/u/PHOTO.Jpg"));
        assert!(m.is_excluded(b"/data/cache/x"));
        assert!(!m.is_excluded(b"/home/u/photo.png"));
        // --exclude stays case-sensitive.
        let m = ExcludeMatcher::new(&["*.JPG"]);
        assert!(!m.is_excluded(b"/a/b.jpg"));
    }

    #[test]
    fn tag_file_specs() {
        assert_eq!(TagFile::parse(""), Err(TagFileError::Empty));
        assert_eq!(TagFile::parse(":x"), Err(TagFileError::NoName));
        assert_eq!(
            TagFile::parse("CACHEDIR.TAG:Signature: 8a"),
            Ok(TagFile {
                name: b"CACHEDIR.TAG".to_vec(),
                header: b"Signature: 8a".to_vec()
            })
        );
        assert_eq!(
            TagFile::parse(".nobackup").map(|t| t.header),
            Ok(Vec::new())
        );
    }

    #[test]
    fn tag_files_exclude_folder_contents() {
        let root = std::env::temp_dir().join(format!("restix-exclude-tags-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = root.join("cache");
        let marked = root.join("marked");
        let fake = root.join("fake-cache");
        for dir in [&cache, &marked, &fake] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("file"), b"x").unwrap();
        }
        std::fs::write(
            cache.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# comment",
        )
        .unwrap();
        std::fs::write(fake.join("CACHEDIR.TAG"), b"no signature").unwrap();
        std::fs::write(marked.join(".nobackup"), b"").unwrap();
        let m = ExcludeMatcher::new::<&str>(&[]).with_tag_files(&[CACHEDIR_TAG_SPEC, ".nobackup"]);
        let b = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
        assert!(m.is_excluded(&b(&cache.join("file"))));
        assert!(m.is_excluded(&b(&cache.join("sub"))));
        assert!(!m.is_excluded(&b(&cache.join("CACHEDIR.TAG"))));
        assert!(!m.is_excluded(&b(&cache)));
        assert!(m.is_excluded(&b(&marked.join("file"))));
        assert!(!m.is_excluded(&b(&marked.join(".nobackup"))));
        assert!(!m.is_excluded(&b(&fake.join("file"))));
        // Asked again: the remembered answer.
        assert!(m.clone().is_excluded(&b(&cache.join("file"))));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
