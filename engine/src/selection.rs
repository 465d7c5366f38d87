//! Snapshot selection: IDs and prefixes, `latest`, `--host`/`--tag`/`--path`
//! filters, and the `snapshot:subfolder` argument form (spec: cli.md §9).
//!
//! ```no_run
//! # use restix_engine::selection::{select_one, split_snapshot_arg, SnapshotFilter};
//! # fn demo(repo: &restix_engine::repository::Repository) {
//! let (id_arg, subfolder) = split_snapshot_arg("latest:/home/user");
//! let filter = SnapshotFilter::from_args(&[], &["daily,web".to_string()], &[]);
//! let (id, snapshot) = select_one(repo, id_arg, &filter).unwrap();
//! # let _ = (id, snapshot, subfolder);
//! # }
//! ```

use restix_repo_format::{Id, Snapshot};

use crate::repository::Repository;

/// Errors of snapshot selection; texts follow restic's (spec: cli.md §1.4).
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("no matching ID found for prefix \"{0}\"")]
    NoMatch(String),
    #[error("multiple IDs with prefix \"{0}\" found")]
    Ambiguous(String),
    #[error("no snapshot found")]
    NoLatest,
    #[error("listing snapshots: {0}")]
    List(Box<dyn std::error::Error + Send + Sync>),
}

/// `--host`, `--tag`, `--path` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// A snapshot matches if its host is one of these (empty: any host).
    pub hosts: Vec<String>,
    /// Tag groups: a snapshot matches if it has all tags of at least one
    /// group (empty: any). An empty group matches snapshots without tags.
    pub tags: Vec<Vec<String>>,
    /// A snapshot matches if it contains all of these paths (exact strings).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Build from the raw flag values: each `--tag` value is a comma list,
    /// trimmed, empty entries dropped.
    pub fn from_args(hosts: &[String], tag_args: &[String], paths: &[String]) -> SnapshotFilter {
        let tags = tag_args
            .iter()
            .map(|arg| {
                arg.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .collect();
        SnapshotFilter {
            hosts: hosts.to_vec(),
            tags,
            paths: paths.to_vec(),
        }
    }

    /// True when no filter is set.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }

    /// Whether `snapshot` passes all filters.
    pub fn matches(&self, snapshot: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&snapshot.hostname) {
            return false;
        }
        let snap_tags: &[String] = snapshot_tags(snapshot);
        if !self.tags.is_empty() {
            let any_group = self.tags.iter().any(|group| {
                if group.is_empty() {
                    snap_tags.is_empty()
                } else {
                    group.iter().all(|t| snap_tags.contains(t))
                }
            });
            if !any_group {
                return false;
            }
        }
        let snap_paths: &[String] = snapshot_paths(snapshot);
        self.paths.iter().all(|p| snap_paths.contains(p))
    }

    /// The filter used for `latest`: relative `--path` values made absolute
    /// against the current directory (spec: cli.md §9).
    fn for_latest(&self) -> SnapshotFilter {
        let mut f = self.clone();
        let cwd = std::env::current_dir().ok();
        for p in &mut f.paths {
            if !p.starts_with('/') {
                if let Some(cwd) = &cwd {
                    *p = clean_absolute(&cwd.join(&*p).to_string_lossy());
                }
            }
        }
        f
    }
}

fn snapshot_tags(s: &Snapshot) -> &[String] {
    &s.tags
}

fn snapshot_paths(s: &Snapshot) -> &[String] {
    &s.paths
}

/// Lexical clean of an absolute path (Go `filepath.Clean`).
fn clean_absolute(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Split `id[:subfolder]` (restic 0.16+): `("latest", Some("/home"))`.
pub fn split_snapshot_arg(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once(':') {
        Some((id, sub)) => (id, Some(sub)),
        None => (arg, None),
    }
}

/// Sort oldest first (like `restic snapshots`), stable on ties.
pub fn sort_snapshots(list: &mut [(Id, Snapshot)]) {
    list.sort_by_key(|entry| entry.1.time.unix_nanos());
}

/// Find one snapshot in `list` by full ID, unique prefix or `latest`
/// (filters apply to `latest` only).
pub fn find_in(
    list: &[(Id, Snapshot)],
    arg: &str,
    filter: &SnapshotFilter,
) -> Result<(Id, Snapshot), SelectionError> {
    if arg == "latest" {
        let f = filter.for_latest();
        return list
            .iter()
            .filter(|(_, s)| f.matches(s))
            .max_by(|a, b| a.1.time.unix_nanos().cmp(&b.1.time.unix_nanos()))
            .cloned()
            .ok_or(SelectionError::NoLatest);
    }
    let prefix = arg.to_ascii_lowercase();
    let mut found: Option<&(Id, Snapshot)> = None;
    for entry in list {
        let hex = entry.0.to_hex();
        if hex == prefix {
            return Ok(entry.clone());
        }
        if !prefix.is_empty() && hex.starts_with(&prefix) {
            if found.is_some() {
                return Err(SelectionError::Ambiguous(arg.to_string()));
            }
            found = Some(entry);
        }
    }
    found
        .cloned()
        .ok_or_else(|| SelectionError::NoMatch(arg.to_string()))
}

/// Multi-snapshot selection over `list`: the given IDs (prefixes, `latest`),
/// or all snapshots passing `filter` when `ids` is empty. Duplicates are
/// collapsed; the result is sorted oldest first.
pub fn select_in(
    list: &[(Id, Snapshot)],
    ids: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(Id, Snapshot)>, SelectionError> {
    let mut out: Vec<(Id, Snapshot)> = if ids.is_empty() {
        list.iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect()
    } else {
        let mut v: Vec<(Id, Snapshot)> = Vec::new();
        for arg in ids {
            let found = find_in(list, arg, filter)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v
    };
    sort_snapshots(&mut out);
    Ok(out)
}

fn list_all(repo: &Repository) -> Result<Vec<(Id, Snapshot)>, SelectionError> {
    repo.list_snapshots()
        .map_err(|e| SelectionError::List(Box::new(e)))
}

/// [`select_in`] over all snapshots of `repo`.
pub fn select(
    repo: &Repository,
    ids: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(Id, Snapshot)>, SelectionError> {
    select_in(&list_all(repo)?, ids, filter)
}

/// [`find_in`] over all snapshots of `repo` (restore, dump, ls, ...).
pub fn select_one(
    repo: &Repository,
    arg: &str,
    filter: &SnapshotFilter,
) -> Result<(Id, Snapshot), SelectionError> {
    find_in(&list_all(repo)?, arg, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use restix_repo_format::GoTime;

    fn snap(secs: i64, host: &str, tags: &[&str], paths: &[&str]) -> Snapshot {
        Snapshot {
            time: GoTime::from_unix_utc(secs, 0),
            hostname: host.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: paths.iter().map(|t| t.to_string()).collect(),
            ..Snapshot::default()
        }
    }

    fn list() -> Vec<(Id, Snapshot)> {
        vec![
            (Id([0xaa; 32]), snap(300, "h1", &["a", "b"], &["/data"])),
            (Id([0xab; 32]), snap(100, "h2", &["a"], &["/data", "/etc"])),
            (Id([0xcc; 32]), snap(200, "h1", &[], &["/etc"])),
        ]
    }

    #[test]
    fn prefixes_and_errors() {
        let l = list();
        let f = SnapshotFilter::default();
        assert_eq!(find_in(&l, "cc", &f).unwrap().0, Id([0xcc; 32]));
        assert_eq!(
            find_in(&l, &Id([0xab; 32]).to_hex(), &f).unwrap().0,
            Id([0xab; 32])
        );
        assert!(matches!(
            find_in(&l, "a", &f),
            Err(SelectionError::Ambiguous(_))
        ));
        assert!(matches!(
            find_in(&l, "dd", &f),
            Err(SelectionError::NoMatch(_))
        ));
        assert_eq!(
            SelectionError::NoMatch("dd".into()).to_string(),
            "no matching ID found for prefix \"dd\""
        );
    }

    #[test]
    fn latest_honours_filters() {
        let l = list();
        assert_eq!(
            find_in(&l, "latest", &SnapshotFilter::default()).unwrap().0,
            Id([0xaa; 32])
        );
        let f = SnapshotFilter::from_args(&["h2".into()], &[], &[]);
        assert_eq!(find_in(&l, "latest", &f).unwrap().0, Id([0xab; 32]));
        let f = SnapshotFilter::from_args(&[], &[], &["/etc".into()]);
        assert_eq!(find_in(&l, "latest", &f).unwrap().0, Id([0xcc; 32]));
        let f = SnapshotFilter::from_args(&["nohost".into()], &[], &[]);
        assert!(matches!(
            find_in(&l, "latest", &f),
            Err(SelectionError::NoLatest)
        ));
    }

    #[test]
    fn tag_groups_and_sorting() {
        let l = list();
        let f = SnapshotFilter::from_args(&[], &["a, b".into()], &[]);
        let got = select_in(&l, &[], &f).unwrap();
        assert_eq!(got.len(), 1);
        let f = SnapshotFilter::from_args(&[], &["b".into(), "".into()], &[]);
        let ids: Vec<Id> = select_in(&l, &[], &f)
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(ids, vec![Id([0xcc; 32]), Id([0xaa; 32])]);
        let all: Vec<Id> = select_in(&l, &[], &SnapshotFilter::default())
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(all, vec![Id([0xab; 32]), Id([0xcc; 32]), Id([0xaa; 32])]);
        let dup = select_in(
            &l,
            &["cc".into(), "latest".into(), "aa".into()],
            &SnapshotFilter::default(),
        )
        .unwrap();
        assert_eq!(dup.len(), 2);
        assert_eq!(
            split_snapshot_arg("latest:/home/x"),
            ("latest", Some("/home/x"))
        );
        assert_eq!(split_snapshot_arg("abc"), ("abc", None));
    }
}
