//! The local cache folder: restic's per-repository folders and restix's
//! own entries, listed, aged and removed as restic's `cache` command and
//! `--cleanup-cache` do (restic internal/backend/cache/cache.go).
//!
//! Inside the base folder (`--cache-dir`, `$RESTIC_CACHE_DIR`,
//! `$XDG_CACHE_HOME/restic`, `~/.cache/restic`):
//!
//! - restic's entries: folders named by a 64-hex repository ID, or
//!   `restic-check-cache-<n>` (`check --with-cache` leftovers);
//! - restix's entries, per repository ID: the index cache
//!   `restix-index/<id>.index` and the block-hash cache `restix-image/<id>/`;
//!   and per location, `restix-keys/<hash of the location>`: the repository
//!   ID and the key file that opened it last ([`recall_key`]).
//!
//! A repository's entries are one row of `cache` (its newest modification
//! time, its total size); old means last modified more than `max_age` ago,
//! and `--cleanup` removes exactly the old entries: restic's folders as
//! restic would, and restix's files and folders of the same age.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// restix's index cache folder name inside the cache base.
pub const INDEX_CACHE_DIR: &str = "restix-index";
/// restix's image block-hash cache folder name inside the cache base.
pub const IMAGE_CACHE_DIR: &str = "restix-image";
/// restix's folder of remembered key files ([`recall_key`]).
pub const KEY_MEMORY_DIR: &str = "restix-keys";

/// One removable cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The repository ID (or `restic-check-cache-<n>`).
    pub repo: String,
    pub path: PathBuf,
    pub modified: SystemTime,
}

/// restic's `validCacheDirName`.
fn is_restic_cache_dir(name: &str) -> bool {
    let is_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    let is_check = name
        .strip_prefix("restic-check-cache-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    is_id || is_check
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

/// Every cache entry under `base` (none if it does not exist).
pub fn entries(base: &Path) -> std::io::Result<Vec<Entry>> {
    let mut found = Vec::new();
    let read = match std::fs::read_dir(base) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for item in read {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if !item.file_type()?.is_dir() {
            continue;
        }
        if is_restic_cache_dir(&name) {
            if let Some(time) = modified(&item.path()) {
                found.push(Entry {
                    repo: name,
                    path: item.path(),
                    modified: time,
                });
            }
        }
    }
    for (folder, suffix) in [(INDEX_CACHE_DIR, ".index"), (IMAGE_CACHE_DIR, "")] {
        let Ok(read) = std::fs::read_dir(base.join(folder)) else {
            continue;
        };
        for item in read.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(repo) = name.strip_suffix(suffix) else {
                continue;
            };
            if repo.is_empty() || repo.contains('.') && !suffix.is_empty() {
                continue;
            }
            if let Some(time) = modified(&item.path()) {
                found.push(Entry {
                    repo: repo.to_string(),
                    path: item.path(),
                    modified: time,
                });
            }
        }
    }
    if let Ok(read) = std::fs::read_dir(base.join(KEY_MEMORY_DIR)) {
        for item in read.flatten() {
            let path = item.path();
            let Some((repo, _)) = read_key_memory(&path) else {
                continue;
            };
            if let Some(time) = modified(&path) {
                found.push(Entry {
                    repo,
                    path,
                    modified: time,
                });
            }
        }
    }
    Ok(found)
}

/// Where the key that opened the repository at `location` is remembered:
/// named by the SHA-256 of the location as written (a location may carry a
/// user name or a host the file name should not show).
fn key_memory_path(base: &Path, location: &str) -> PathBuf {
    base.join(KEY_MEMORY_DIR)
        .join(restix_repo_format::Id::hash(location.as_bytes()).to_hex())
}

/// A key memory file: `<repository ID> <key file ID>`, both 64 hex digits.
fn read_key_memory(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    let (repo, key) = (words.next()?, words.next()?);
    let is_id =
        |w: &str| w.len() == 64 && w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (is_id(repo) && is_id(key) && words.next().is_none())
        .then(|| (repo.to_string(), key.to_string()))
}

/// The key file that opened the repository at `location` last time, if
/// remembered: the open reads it at once, beside the key listing, and tries
/// it first (issue #20: the listing and then the read were four round trips
/// on a remote backend, now two). Only a hint, like `--key-hint`: the
/// listing decides which key files exist, and the password still has to
/// open the key; a wrong or stale memory costs nothing but the read.
pub fn recall_key(base: &Path, location: &str) -> Option<String> {
    read_key_memory(&key_memory_path(base, location)).map(|(_, key)| key)
}

/// Remember that `key_id` opened repository `repo_id` at `location` (see
/// [`recall_key`]). Best effort: a cache folder that cannot be written only
/// costs the next open its round trips. The file is replaced atomically, so
/// a concurrent open reads the old memory or the new one.
pub fn remember_key(base: &Path, location: &str, repo_id: &str, key_id: &str) {
    let path = key_memory_path(base, location);
    let line = format!("{repo_id} {key_id}\n");
    if std::fs::read_to_string(&path).is_ok_and(|old| old == line) {
        let _ = set_modified(&path, SystemTime::now());
        return;
    }
    let Some(dir) = path.parent() else {
        return;
    };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    if std::fs::write(&tmp, line).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
}

/// restic's `IsOld`: modified before `now - max_age`.
pub fn is_old(modified: SystemTime, max_age: Duration, now: SystemTime) -> bool {
    match now.checked_sub(max_age) {
        Some(oldest) => modified < oldest,
        None => false,
    }
}

/// Entries grouped by repository: newest modification time and entries.
pub fn by_repository(entries: &[Entry]) -> BTreeMap<String, (SystemTime, Vec<&Entry>)> {
    let mut grouped: BTreeMap<String, (SystemTime, Vec<&Entry>)> = BTreeMap::new();
    for entry in entries {
        let slot = grouped
            .entry(entry.repo.clone())
            .or_insert((entry.modified, Vec::new()));
        slot.0 = slot.0.max(entry.modified);
        slot.1.push(entry);
    }
    grouped
}

/// Bytes of files under `path` (restic's `dirSize`: regular files only).
pub fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let Ok(read) = std::fs::read_dir(path) else {
        return 0;
    };
    read.flatten().map(|item| size(&item.path())).sum()
}

/// Remove an entry (folder or file).
pub fn remove(entry: &Entry) -> std::io::Result<()> {
    if entry.path.is_dir() {
        std::fs::remove_dir_all(&entry.path)
    } else {
        std::fs::remove_file(&entry.path)
    }
}

/// The old entries under `base`.
pub fn old_entries(base: &Path, max_age: Duration) -> std::io::Result<Vec<Entry>> {
    let now = SystemTime::now();
    Ok(entries(base)?
        .into_iter()
        .filter(|e| is_old(e.modified, max_age, now))
        .collect())
}

/// Set the modification time of a file or folder (restic's `updateTimestamp`).
pub fn set_modified(path: &Path, time: SystemTime) -> std::io::Result<()> {
    std::fs::File::open(path)?.set_times(
        std::fs::FileTimes::new()
            .set_modified(time)
            .set_accessed(time),
    )
}

/// restic's default cache age limit (30 days).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// After a repository opened (restic `OpenRepository`): mark restix's
/// entries of `repo_id` as used now, then remove old entries with
/// `--cleanup-cache`, or point at them on a terminal.
pub fn after_open(
    base: Option<&Path>,
    repo_id: &str,
    cleanup: bool,
    printer: &crate::output::Printer,
) {
    let Some(base) = base else {
        return;
    };
    for path in [
        base.join(INDEX_CACHE_DIR).join(format!("{repo_id}.index")),
        base.join(IMAGE_CACHE_DIR).join(repo_id),
    ] {
        if path.exists() {
            let _ = set_modified(&path, SystemTime::now());
        }
    }
    let Ok(old) = old_entries(base, MAX_AGE) else {
        return;
    };
    if old.is_empty() {
        return;
    }
    if cleanup {
        if printer.stdout_is_terminal && !printer.json {
            printer.verbose(&format!(
                "removing {} old cache dirs from {}",
                old.len(),
                base.display()
            ));
        }
        for entry in &old {
            if let Err(e) = remove(entry) {
                printer.error(&format!("unable to remove {}: {e}", entry.path.display()));
            }
        }
    } else if printer.stdout_is_terminal {
        printer.verbose(&format!(
            "found {} old cache directories in {}, run `restic cache --cleanup` to remove them",
            old.len(),
            base.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_keys_per_location() {
        let base = std::env::temp_dir().join(format!("restix-key-memory-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (repo, k1, k2) = ("a".repeat(64), "1".repeat(64), "2".repeat(64));
        assert_eq!(recall_key(&base, "sftp:host:/r"), None);
        remember_key(&base, "sftp:host:/r", &repo, &k1);
        remember_key(&base, "/srv/other", &repo, &k2);
        assert_eq!(recall_key(&base, "sftp:host:/r"), Some(k1.clone()));
        assert_eq!(recall_key(&base, "/srv/other"), Some(k2.clone()));
        remember_key(&base, "sftp:host:/r", &repo, &k2);
        assert_eq!(recall_key(&base, "sftp:host:/r"), Some(k2.clone()));
        // The file names do not show the location; damaged files are no memory.
        let dir = base.join(KEY_MEMORY_DIR);
        for item in std::fs::read_dir(&dir).unwrap() {
            let name = item.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains("host"), "{name}");
        }
        std::fs::write(key_memory_path(&base, "/srv/other"), "garbage").unwrap();
        assert_eq!(recall_key(&base, "/srv/other"), None);
        // A memory is a cache entry of its repository (`cache --cleanup`).
        let all = entries(&base).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].repo, repo);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn restic_and_restix_entries_and_ages() {
        let base = std::env::temp_dir().join(format!("restix-cache-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let id_old = "a".repeat(64);
        let id_new = "b".repeat(64);
        for dir in [
            base.join(&id_old).join("data"),
            base.join(&id_new),
            base.join("restic-check-cache-7"),
            base.join("not-a-cache"),
            base.join(IMAGE_CACHE_DIR).join(&id_old),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(base.join(INDEX_CACHE_DIR)).unwrap();
        std::fs::write(
            base.join(INDEX_CACHE_DIR).join(format!("{id_old}.index")),
            b"xx",
        )
        .unwrap();
        std::fs::write(base.join(&id_old).join("data").join("f"), b"12345").unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for path in [
            base.join(&id_old),
            base.join(INDEX_CACHE_DIR).join(format!("{id_old}.index")),
            base.join(IMAGE_CACHE_DIR).join(&id_old),
            base.join("restic-check-cache-7"),
        ] {
            set_modified(&path, long_ago).unwrap();
        }
        let all = entries(&base).unwrap();
        assert_eq!(all.len(), 5, "{all:?}");
        let grouped = by_repository(&all);
        assert_eq!(grouped.len(), 3);
        assert_eq!(grouped.get(&id_old).map(|g| g.1.len()), Some(3));
        assert_eq!(size(&base.join(&id_old)), 5);
        let old = old_entries(&base, MAX_AGE).unwrap();
        assert_eq!(old.len(), 4, "{old:?}");
        for entry in &old {
            remove(entry).unwrap();
        }
        assert!(base.join(&id_new).is_dir());
        assert!(base.join("not-a-cache").is_dir());
        assert!(!base.join(&id_old).exists());
        assert!(!base
            .join(INDEX_CACHE_DIR)
            .join(format!("{id_old}.index"))
            .exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
