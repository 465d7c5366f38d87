//! The programs compared and how each spells the benchmark's commands.
//!
//! restix takes restic's syntax (spec: cli.md); rustic differs in a few
//! places (`restore SNAP DEST`, `dump SNAP:PATH`), handled here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Password of every benchmark repository.
pub const PASSWORD: &str = "restix-bench-password";

/// Which program a [`Tool`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The real restic (the baseline of the ratios).
    Restic,
    /// restix.
    Restix,
    /// rustic.
    Rustic,
}

/// One column of the comparison: a program plus environment (e.g. restix
/// with `GOMAXPROCS=1`).
#[derive(Debug, Clone)]
pub struct Tool {
    /// Label in the table.
    pub label: String,
    /// Which program.
    pub family: Family,
    /// The executable.
    pub bin: PathBuf,
    /// Extra environment (`GOMAXPROCS`).
    pub env: Vec<(String, String)>,
    /// First line of its version output, or why it has none.
    pub version: String,
}

/// Environment variables that would leak a caller's setup into the runs.
const SCRUBBED_ENV: &[&str] = &[
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_CACHE_DIR",
    "RESTIC_COMPRESSION",
    "RESTIC_PACK_SIZE",
    "RESTIC_READ_CONCURRENCY",
    "RESTIC_PROGRESS_FPS",
    "RESTIC_KEY_HINT",
    "RUSTIC_REPOSITORY",
    "RUSTIC_PASSWORD_FILE",
    "RUSTIC_PASSWORD_COMMAND",
    "RUSTIC_CACHE_DIR",
    "GOMAXPROCS",
];

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// First line of `bin <args>`'s stdout, or a note why not.
pub fn version_line(bin: &Path, args: &[&str]) -> String {
    match Command::new(bin).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(out) => format!(
            "`{} {}` failed: {}",
            bin.display(),
            args.join(" "),
            out.status
        ),
        Err(e) => format!("not runnable ({e})"),
    }
}

/// `name` on `$PATH`, if there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Tool {
    /// A short name usable in file names.
    pub fn slug(&self) -> String {
        self.label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }

    /// A command for `repo` with its own cache folder, clean environment and
    /// the password set; `args` follow the global options.
    pub fn command(&self, repo: &str, cache: &Path, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.bin);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.env("RESTIC_PASSWORD", PASSWORD)
            .env("RUSTIC_PASSWORD", PASSWORD);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.arg("-r").arg(repo).arg("--cache-dir").arg(cache);
        cmd.args(args);
        cmd
    }

    /// `init`.
    pub fn init_args(&self) -> Vec<OsString> {
        os(&["init"])
    }

    /// `backup PATH...`.
    pub fn backup_args(&self, paths: &[&Path]) -> Vec<OsString> {
        let mut v = os(&["backup"]);
        v.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        v
    }

    /// restix image mode: `backup --json --image IMAGE EXTRA...` (the JSON
    /// summary reports the bytes read from the image).
    pub fn image_backup_args(&self, image: &Path, extra: &[&str]) -> Vec<OsString> {
        let mut v = os(&["backup", "--json", "--image"]);
        v.push(image.as_os_str().to_owned());
        v.extend(extra.iter().map(OsString::from));
        v
    }

    /// Restore snapshot `id` into `target`.
    pub fn restore_args(&self, id: &str, target: &Path) -> Vec<OsString> {
        match self.family {
            Family::Rustic => {
                let mut v = os(&["restore", id]);
                v.push(target.as_os_str().to_owned());
                v
            }
            Family::Restic | Family::Restix => {
                let mut v = os(&["restore", id, "--target"]);
                v.push(target.as_os_str().to_owned());
                v
            }
        }
    }

    /// Write file `path` of snapshot `id` to stdout.
    pub fn dump_args(&self, id: &str, path: &Path) -> Vec<OsString> {
        match self.family {
            Family::Rustic => vec!["dump".into(), format!("{id}:{}", path.display()).into()],
            Family::Restic | Family::Restix => {
                let mut v = os(&["dump", id]);
                v.push(path.as_os_str().to_owned());
                v
            }
        }
    }

    /// Forget snapshot `id` (no prune).
    pub fn forget_args(&self, id: &str) -> Vec<OsString> {
        os(&["forget", id])
    }

    /// `prune --max-unused 0`: repack everything that holds unused data.
    pub fn prune_args(&self) -> Vec<OsString> {
        os(&["prune", "--max-unused", "0"])
    }

    /// `snapshots --json`.
    pub fn snapshots_args(&self) -> Vec<OsString> {
        os(&["snapshots", "--json"])
    }
}

/// The id of the snapshot whose `paths` contain `path`, from the output of
/// `snapshots --json` of restic/restix (an array of snapshots) or rustic
/// (groups of snapshots): any object with `id` and `paths` counts.
pub fn snapshot_id_for(json: &str, path: &Path) -> Option<String> {
    let value: Value = serde_json::from_str(json).ok()?;
    let wanted = path.to_string_lossy();
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(map) => {
                let id = map.get("id").and_then(Value::as_str);
                let paths = map.get("paths").and_then(Value::as_array);
                if let (Some(id), Some(paths)) = (id, paths) {
                    if paths.iter().any(|p| p.as_str() == Some(&wanted)) {
                        return Some(id.to_string());
                    }
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_snapshot_ids_in_restic_and_rustic_json() {
        let restic = r#"[{"time":"x","paths":["/a"],"id":"aaa"},{"paths":["/b"],"id":"bbb"}]"#;
        assert_eq!(
            snapshot_id_for(restic, Path::new("/b")).as_deref(),
            Some("bbb")
        );
        let rustic = r#"[[{"hostname":"h"},[{"id":"ccc","paths":["/c"]}]]]"#;
        assert_eq!(
            snapshot_id_for(rustic, Path::new("/c")).as_deref(),
            Some("ccc")
        );
        assert_eq!(snapshot_id_for(restic, Path::new("/z")), None);
    }

    #[test]
    fn rustic_spells_restore_and_dump_differently() {
        let rustic = Tool {
            label: "rustic".into(),
            family: Family::Rustic,
            bin: "rustic".into(),
            env: vec![],
            version: String::new(),
        };
        assert_eq!(
            rustic.dump_args("abc", Path::new("/x/y")),
            vec![OsString::from("dump"), OsString::from("abc:/x/y")]
        );
        let restic = Tool {
            family: Family::Restic,
            ..rustic
        };
        assert_eq!(
            restic.restore_args("abc", Path::new("/t")),
            os(&["restore", "abc", "--target", "/t"])
        );
    }
}
