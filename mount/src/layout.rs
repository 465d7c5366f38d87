//! The directories above the snapshots: `ids/`, `snapshots/`, `hosts/`,
//! `tags/` and their `latest` links, built from path templates the way
//! restic's `internal/fuse/snapshots_dirstruct.go` builds them (behaviour
//! carried over, code written anew).
//!
//! A template is a path whose `%` verbs are replaced per snapshot: `%i`
//! short ID, `%I` long ID, `%u` user, `%h` host, `%t` tags (one path per
//! tag; a snapshot without tags gets none), `%T` the time formatted with the
//! time template. A template ending in `%T` makes a folder of snapshots
//! named by time, with a `latest` link to the newest; names that collide get
//! `-1`, `-2`, ... appended.

use std::collections::{BTreeSet, HashMap};

use restix_repo_format::{GoTime, Id, Snapshot};

use crate::gotime;

/// restic's default path templates.
pub const DEFAULT_PATH_TEMPLATES: [&str; 4] =
    ["ids/%i", "snapshots/%T", "hosts/%h/%T", "tags/%t/%T"];

/// One entry of the generated tree. Paths are `""` for the root and
/// `/a/b` below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaEntry {
    /// The snapshot shown here (index into [`SnapshotLayout::snapshots`]).
    pub snapshot: Option<usize>,
    /// Set for `latest`: a symlink to this name in the same folder.
    pub link_target: Option<String>,
    /// Names of the entries below (for plain folders).
    pub names: BTreeSet<String>,
}

/// The whole generated tree for one list of snapshots.
#[derive(Debug, Clone, Default)]
pub struct SnapshotLayout {
    /// Snapshots, oldest first (ties by ID).
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Entries by path.
    pub entries: HashMap<String, MetaEntry>,
}

impl SnapshotLayout {
    /// Build the tree for `snapshots` (any order).
    pub fn build(
        mut snapshots: Vec<(Id, Snapshot)>,
        path_templates: &[String],
        time_template: &str,
    ) -> SnapshotLayout {
        sort_oldest_first(&mut snapshots);
        let mut layout = SnapshotLayout {
            snapshots: Vec::new(),
            entries: HashMap::new(),
        };
        layout.place(String::new(), None);
        for template in path_templates {
            let prefix = static_prefix(template);
            if !prefix.is_empty() {
                layout.place(clean(&format!("/{prefix}")), None);
            }
        }
        let mut latest: HashMap<String, GoTime> = HashMap::new();
        for (index, (id, snapshot)) in snapshots.iter().enumerate() {
            for template in path_templates {
                let (paths, time_suffix) = paths_for(template, time_template, id, snapshot);
                for path in paths {
                    let path = if path.is_empty() {
                        path
                    } else {
                        format!("/{path}")
                    };
                    let name = layout.unique_name(&path, &time_suffix);
                    layout.place(clean(&format!("{path}{name}")), Some((index, None)));
                    if time_suffix.is_empty() {
                        continue;
                    }
                    let newer = latest
                        .get(&path)
                        .is_none_or(|t| snapshot.time.unix_nanos() >= t.unix_nanos());
                    if newer {
                        layout.place(clean(&format!("{path}/latest")), Some((index, Some(name))));
                        latest.insert(path, snapshot.time);
                    }
                }
            }
        }
        layout.snapshots = snapshots;
        layout
    }

    /// The entry at `path` (`""` = root).
    pub fn get(&self, path: &str) -> Option<&MetaEntry> {
        self.entries.get(path)
    }

    /// Add `name` with `-1`, `-2`, ... until `prefix + name` is free.
    fn unique_name(&self, prefix: &str, name: &str) -> String {
        let mut candidate = name.to_string();
        let mut n = 1;
        while self.entries.contains_key(&format!("{prefix}{candidate}")) {
            candidate = format!("{name}-{n}");
            n += 1;
        }
        candidate
    }

    /// Create or update the entry at `path` and register it in its parents.
    /// `snapshot` is the snapshot shown there and, for a link, its target.
    fn place(&mut self, path: String, snapshot: Option<(usize, Option<String>)>) {
        let entry = self.entries.entry(path.clone()).or_default();
        if let Some((index, link)) = snapshot {
            entry.snapshot = Some(index);
            entry.link_target = link;
        }
        let mut child = path;
        while let Some(slash) = child.rfind('/') {
            let parent = child[..slash].to_string();
            let name = child[slash + 1..].to_string();
            let entry = self.entries.entry(parent.clone()).or_default();
            let known = !entry.names.insert(name);
            if known {
                break;
            }
            child = parent;
        }
    }
}

/// Oldest first, ties broken by ID (restic sorts before hashing the list).
pub fn sort_oldest_first(snapshots: &mut [(Id, Snapshot)]) {
    snapshots.sort_by(|(a_id, a), (b_id, b)| {
        a.time
            .unix_nanos()
            .cmp(&b.time.unix_nanos())
            .then_with(|| a_id.0.cmp(&b_id.0))
    });
}

/// The paths `template` gives for one snapshot, and the time suffix when
/// the template ends in `%T` (then the paths end where the time would be).
pub fn paths_for(
    template: &str,
    time_template: &str,
    id: &Id,
    snapshot: &Snapshot,
) -> (Vec<String>, String) {
    let time = gotime::format(snapshot.time, time_template);
    let mut outs = vec![String::new()];
    let mut in_verb = false;
    let mut pending_time = false;
    for c in template.chars() {
        if pending_time {
            for out in &mut outs {
                out.push_str(&time);
            }
            pending_time = false;
        }
        if !in_verb {
            if c == '%' {
                in_verb = true;
            } else {
                for out in &mut outs {
                    out.push(c);
                }
            }
            continue;
        }
        in_verb = false;
        let replacement = match c {
            'T' => {
                pending_time = true;
                continue;
            }
            't' => match snapshot.tags.as_slice() {
                [] => return (Vec::new(), String::new()),
                [only] => only.clone(),
                tags => {
                    outs = tags
                        .iter()
                        .flat_map(|tag| {
                            let tag = filename_from_tag(tag);
                            outs.iter().map(move |out| format!("{out}{tag}"))
                        })
                        .collect();
                    continue;
                }
            },
            'i' => id.short(),
            'I' => id.to_hex(),
            'u' => snapshot.username.clone(),
            'h' => snapshot.hostname.clone(),
            other => other.to_string(),
        };
        for out in &mut outs {
            out.push_str(&replacement);
        }
    }
    let suffix = if pending_time { time } else { String::new() };
    (outs, suffix)
}

/// A tag as a file name: `""` and `.` become `_`, `..` becomes `__`, `/`
/// becomes `_`.
fn filename_from_tag(tag: &str) -> String {
    match tag {
        "" | "." => "_".to_string(),
        ".." => "__".to_string(),
        other => other.replace('/', "_"),
    }
}

/// The folder part of a template before its first verb (`hosts/%h/%T` →
/// `hosts`), created even when no snapshot lands there.
pub fn static_prefix(template: &str) -> &str {
    let mut in_verb = false;
    let mut verb_start = None;
    for (i, c) in template.char_indices() {
        if !in_verb {
            in_verb = c == '%';
            continue;
        }
        in_verb = false;
        if matches!(c, 'i' | 'I' | 'u' | 'h' | 't' | 'T') {
            verb_start = Some(i);
            break;
        }
    }
    let Some(start) = verb_start else {
        return "";
    };
    let before = &template[..start];
    match before.rfind('/') {
        Some(slash) => &template[..slash],
        None => "",
    }
}

/// Go's `path.Clean`: lexical `.`/`..`/`//` removal; `""` becomes `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seconds: i64, host: &str, tags: &[&str], seed: u8) -> (Id, Snapshot) {
        let snapshot = Snapshot {
            time: GoTime::new(seconds, 0, 0),
            hostname: host.into(),
            username: "root".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Snapshot::default()
        };
        (Id([seed; 32]), snapshot)
    }

    fn defaults() -> Vec<String> {
        DEFAULT_PATH_TEMPLATES
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn names(layout: &SnapshotLayout, path: &str) -> Vec<String> {
        layout.get(path).unwrap().names.iter().cloned().collect()
    }

    #[test]
    fn default_layout() {
        let list = vec![
            snap(1_700_000_100, "b", &["x", "y/z"], 2),
            snap(1_700_000_000, "a", &[], 1),
            snap(1_700_000_000, "a", &["x"], 3),
        ];
        let layout = SnapshotLayout::build(list, &defaults(), gotime::RFC3339);
        assert_eq!(names(&layout, ""), ["hosts", "ids", "snapshots", "tags"]);
        assert_eq!(names(&layout, "/ids"), ["01010101", "02020202", "03030303"]);
        // Two snapshots at the same second: the second gets "-1".
        assert_eq!(
            names(&layout, "/snapshots"),
            [
                "2023-11-14T22:13:20Z",
                "2023-11-14T22:13:20Z-1",
                "2023-11-14T22:15:00Z",
                "latest"
            ]
        );
        let latest = layout.get("/snapshots/latest").unwrap();
        assert_eq!(latest.link_target.as_deref(), Some("2023-11-14T22:15:00Z"));
        assert_eq!(names(&layout, "/hosts"), ["a", "b"]);
        assert_eq!(
            layout
                .get("/hosts/a/latest")
                .unwrap()
                .link_target
                .as_deref(),
            Some("2023-11-14T22:13:20Z-1")
        );
        // Tags: one folder per tag, "/" replaced when a snapshot has several.
        assert_eq!(names(&layout, "/tags"), ["x", "y_z"]);
        assert_eq!(names(&layout, "/tags/x").len(), 3);
        let shown = layout.get("/ids/02020202").unwrap().snapshot.unwrap();
        assert_eq!(layout.snapshots[shown].0, Id([2; 32]));
    }

    #[test]
    fn custom_templates() {
        let list = vec![snap(1_700_000_000, "h", &["only/one"], 7)];
        let templates = vec!["by/%u/%h-%i".to_string(), "flat/%T%%".to_string()];
        let layout = SnapshotLayout::build(list, &templates, "2006");
        assert_eq!(names(&layout, ""), ["by", "flat"]);
        assert_eq!(names(&layout, "/by/root"), ["h-07070707"]);
        // %T not at the end: part of the name, no latest link.
        assert_eq!(names(&layout, "/flat"), ["2023%"]);
        // A single tag is used as it is (restic does not escape it).
        let (paths, suffix) = paths_for("tags/%t/%T", "2006", &Id([7; 32]), &layout.snapshots[0].1);
        assert_eq!(paths, ["tags/only/one/"]);
        assert_eq!(suffix, "2023");
    }

    #[test]
    fn prefixes_and_clean() {
        assert_eq!(static_prefix("hosts/%h/%T"), "hosts");
        assert_eq!(static_prefix("a/b/x%i"), "a/b");
        assert_eq!(static_prefix("%i"), "");
        assert_eq!(static_prefix("plain/path"), "");
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/../a/.."), "/");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("a/../../b"), "../b");
    }
}
