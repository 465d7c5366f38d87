//! `restore --delete` (restic 0.18 `removeUnexpectedFiles`): in every
//! restored directory, entries the snapshot's directory does not have are
//! removed (recursively) when the include/exclude filter selects them.
//! Every removed path is reported, deepest first, as the file-system path
//! below the (absolute) target, which is what restic reports.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The paths below and including `top` in pre-order, without following
/// symlinks (restic collects them with `filepath.Walk` before removing).
fn collect(top: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    out.push(top.to_path_buf());
    let meta = std::fs::symlink_metadata(top)?;
    if meta.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(top)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        // filepath.Walk visits in lexical order.
        names.sort();
        for path in names {
            collect(&path, out)?;
        }
    }
    Ok(())
}

/// Entries of `dir` that are not in `expected`; `None` when `dir` is gone.
pub(crate) fn unexpected_entries(
    dir: &Path,
    expected: &HashSet<Vec<u8>>,
) -> io::Result<Option<Vec<Vec<u8>>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name().as_bytes().to_vec();
        if !expected.contains(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(Some(out))
}

/// Remove `dir/name` and everything below it (unless `dry_run`); returns
/// the removed paths deepest first.
pub(crate) fn remove_entry(dir: &Path, name: &[u8], dry_run: bool) -> io::Result<Vec<PathBuf>> {
    let top = dir.join(OsStr::from_bytes(name));
    let mut paths = Vec::new();
    collect(&top, &mut paths)?;
    if !dry_run {
        let meta = std::fs::symlink_metadata(&top)?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&top)?;
        } else {
            std::fs::remove_file(&top)?;
        }
    }
    paths.reverse();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_deepest_first_and_dry_run_keeps() {
        let dir = std::env::temp_dir().join(format!("restix-delete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("x/y")).unwrap();
        std::fs::write(dir.join("x/y/f"), b"1").unwrap();
        std::fs::write(dir.join("keep"), b"1").unwrap();
        let expected: HashSet<Vec<u8>> = [b"keep".to_vec()].into_iter().collect();
        let extra = unexpected_entries(&dir, &expected).unwrap().unwrap();
        assert_eq!(extra, vec![b"x".to_vec()]);
        let planned = remove_entry(&dir, b"x", true).unwrap();
        assert_eq!(
            planned,
            vec![dir.join("x/y/f"), dir.join("x/y"), dir.join("x")]
        );
        assert!(dir.join("x/y/f").exists());
        remove_entry(&dir, b"x", false).unwrap();
        assert!(!dir.join("x").exists());
        assert!(dir.join("keep").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
