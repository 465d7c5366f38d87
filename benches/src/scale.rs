//! Scale scenarios: how each tool's cost grows with the repository.
//!
//! A *scale repository* is a real restic repository (made by restic itself:
//! `init`, then a backup of a small folder, so its latest snapshot, trees and
//! packs are real) to which the harness adds, with real encryption through
//! `restix-repo-format`:
//!
//! - index files listing `blobs` blobs (5 % of them tree blobs) in packs of
//!   1000 blobs that do not exist: enough for every step that only needs the
//!   index (a backup's deduplication, `ls`, `snapshots`, `forget`), and
//!   exactly what makes a large repository's index expensive;
//! - one older snapshot per 10 000 blobs (of other paths, one a day back in
//!   time, all pointing at the real snapshot's tree), so that listing and
//!   `forget` planning grow with the repository as they do in life.
//!
//! `restic check` would report the missing packs; none of the measured steps
//! reads them. Each tool then runs, on its own hard-linked copy of the
//! repository (every tool only adds files) and with its own empty cache:
//! a small backup with a cold cache, one more after changing one file (warm
//! cache), `snapshots`, `ls latest` and `forget --dry-run` with a keep
//! policy. Built repositories are kept in the bench folder
//! (`scale-<blobs>/`, marked complete by `done.json`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use restix_repo_format::crypto::Key;
use restix_repo_format::{
    encode_unpacked, unpacked, BlobType, Id, IndexBlob, IndexFile, IndexPack, KeyFile,
};
use serde_json::{json, Value};

use crate::content::SplitMix64;
use crate::error::{run_helper, BenchError, IoContext};
use crate::measure::{run_measured, Measurement};
use crate::tools::{Tool, PASSWORD};

/// Blobs per synthetic index file (restic's limit).
const BLOBS_PER_INDEX: u64 = 50_000;
/// Blobs per synthetic pack.
const BLOBS_PER_PACK: u64 = 1000;
/// One synthetic snapshot per this many blobs.
const BLOBS_PER_SNAPSHOT: u64 = 10_000;
/// Files in the backed-up folder.
const SOURCE_FILES: u64 = 200;

/// One measured step of the scale chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A small backup with an empty cache.
    BackupCold,
    /// The same small backup again, one file changed, cache warm.
    BackupWarm,
    /// `snapshots`.
    Snapshots,
    /// `ls latest`.
    Ls,
    /// `forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run`.
    Forget,
}

impl Step {
    /// Every step, in chain order.
    pub const ALL: [Step; 5] = [
        Step::BackupCold,
        Step::BackupWarm,
        Step::Snapshots,
        Step::Ls,
        Step::Forget,
    ];

    /// What the table and the plot call it.
    pub fn title(self) -> &'static str {
        match self {
            Step::BackupCold => "small backup, cold cache",
            Step::BackupWarm => "small backup, warm cache",
            Step::Snapshots => "snapshots",
            Step::Ls => "ls latest",
            Step::Forget => "forget --dry-run (keep policy)",
        }
    }

    fn args(self, tool: &Tool, source: &Path) -> Vec<OsString> {
        let os = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        match self {
            Step::BackupCold | Step::BackupWarm => tool.backup_args(&[source]),
            Step::Snapshots => os(&["snapshots"]),
            Step::Ls => os(&["ls", "latest"]),
            Step::Forget => os(&[
                "forget",
                "--keep-daily",
                "7",
                "--keep-weekly",
                "5",
                "--keep-monthly",
                "12",
                "--dry-run",
            ]),
        }
    }
}

/// A built scale repository.
#[derive(Debug, Clone)]
pub struct ScaleRepo {
    /// Blobs its index lists (synthetic plus the real ones).
    pub blobs: u64,
    /// The repository (never changed after building: runs use copies).
    pub repo: PathBuf,
    /// The folder the small backups read.
    pub source: PathBuf,
    /// Snapshots in it.
    pub snapshots: u64,
    /// Index files in it.
    pub index_files: u64,
    /// Bytes of its index folder.
    pub index_bytes: u64,
}

/// "1M", "250k", "10M": a blob count for names and tables.
pub fn label(blobs: u64) -> String {
    if blobs >= 1_000_000 && blobs.is_multiple_of(1_000_000) {
        format!("{}M", blobs / 1_000_000)
    } else if blobs >= 1000 && blobs.is_multiple_of(1000) {
        format!("{}k", blobs / 1000)
    } else {
        blobs.to_string()
    }
}

/// Parses "1M", "250k", "4000000".
pub fn parse_count(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1000),
        'm' | 'M' => (&t[..t.len() - 1], 1_000_000),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 1.0).then_some((n * mult as f64) as u64)
}

fn restic_command(restic: &Path, repo: &Path) -> Command {
    let mut cmd = Command::new(restic);
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env_remove("RESTIC_REPOSITORY")
        .arg("-r")
        .arg(repo)
        .arg("--no-cache")
        .stdin(Stdio::null());
    cmd
}

fn names_in(dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let e = e.ctx(|| format!("list {}", dir.display()))?;
        if e.path().is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Writes an encrypted repository file (`index`, `snapshots`) named by its
/// content's SHA-256.
fn write_unpacked(
    repo: &Path,
    folder: &str,
    key: &Key,
    version: u32,
    json: &[u8],
) -> Result<u64, BenchError> {
    let data = encode_unpacked(key, version, json);
    let id = Id::hash(&data);
    let path = repo.join(folder).join(id.to_hex());
    fs::write(&path, &data).ctx(|| format!("write {}", path.display()))?;
    Ok(data.len() as u64)
}

fn random_id(rng: &mut SplitMix64) -> Id {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    Id(b)
}

/// Synthetic index file number `n` of a repository: `count` blobs.
fn synthetic_index(n: u64, count: u64) -> IndexFile {
    let mut rng = SplitMix64::new(0x5ca1e ^ (n << 20));
    let mut file = IndexFile::default();
    let mut left = count;
    while left > 0 {
        let in_pack = left.min(BLOBS_PER_PACK);
        let mut blobs = Vec::with_capacity(in_pack as usize);
        let mut offset = 0u64;
        for _ in 0..in_pack {
            let tree = rng.below(20) == 0;
            let plain = 512 + rng.below(if tree { 8 << 10 } else { 64 << 10 }) as u32;
            let length = plain / 2 + 32;
            blobs.push(IndexBlob {
                id: random_id(&mut rng),
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                offset,
                length,
                uncompressed_length: Some(plain),
            });
            offset += u64::from(length);
        }
        file.packs.push(IndexPack {
            id: random_id(&mut rng),
            blobs,
        });
        left -= in_pack;
    }
    file
}

/// The small folder the backups read: `SOURCE_FILES` files of 0-16 KiB.
fn write_source(dir: &Path) -> Result<(), BenchError> {
    let mut rng = SplitMix64::new(42);
    for i in 0..SOURCE_FILES {
        let sub = dir.join(format!("d{}", i % 10));
        fs::create_dir_all(&sub).ctx(|| format!("mkdir {}", sub.display()))?;
        let mut data = vec![0u8; rng.below(16 << 10) as usize];
        rng.fill(&mut data);
        let path = sub.join(format!("f{i}"));
        fs::write(&path, &data).ctx(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Changes one file of the source folder (a new small backup then stores
/// one new blob and new trees).
pub fn touch_source(source: &Path, round: u64) -> Result<(), BenchError> {
    let path = source.join("changed");
    fs::write(
        &path,
        format!("round {round} {:?}\n", std::time::SystemTime::now()),
    )
    .ctx(|| format!("write {}", path.display()))
}

/// The scale repository of `blobs` blobs below `base`, built if missing
/// (with `restic` for the real part).
pub fn scale_repo(base: &Path, restic: &Path, blobs: u64) -> Result<ScaleRepo, BenchError> {
    let dir = base.join(format!("scale-{}", label(blobs)));
    let (repo, source) = (dir.join("repo"), dir.join("source"));
    let done = dir.join("done.json");
    if let Some(v) = fs::read_to_string(&done)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        return Ok(ScaleRepo {
            blobs: n("blobs"),
            repo,
            source,
            snapshots: n("snapshots"),
            index_files: n("index_files"),
            index_bytes: n("index_bytes"),
        });
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(&source).ctx(|| format!("mkdir {}", source.display()))?;
    eprintln!(
        "building the {} scale repository in {}",
        label(blobs),
        dir.display()
    );
    write_source(&source)?;
    run_helper(restic_command(restic, &repo).arg("init"))?;
    run_helper(restic_command(restic, &repo).arg("backup").arg(&source))?;

    let key_file = names_in(&repo.join("keys"))?
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Helper("restic init wrote no key".into()))?;
    let key_json = fs::read(&key_file).ctx(|| format!("read {}", key_file.display()))?;
    let key = KeyFile::parse(&key_json)
        .and_then(|k| k.open(PASSWORD.as_bytes()))
        .map_err(|e| BenchError::Helper(format!("opening restic's key: {e}")))?;
    let config_path = repo.join("config");
    let config = unpacked::decrypt_config(
        &key,
        &fs::read(&config_path).ctx(|| format!("read {}", config_path.display()))?,
    )
    .map_err(|e| BenchError::Helper(format!("restic's config: {e}")))?;
    let real_snapshot = names_in(&repo.join("snapshots"))?
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Helper("restic backup wrote no snapshot".into()))?;
    let real_json = unpacked::decode_unpacked(
        &key,
        &fs::read(&real_snapshot).ctx(|| format!("read {}", real_snapshot.display()))?,
    )
    .map_err(|e| BenchError::Helper(format!("restic's snapshot: {e}")))?;
    let real: Value = serde_json::from_slice(&real_json)
        .map_err(|e| BenchError::Helper(format!("restic's snapshot: {e}")))?;

    // The synthetic index, on two threads (JSON, zstd and AES per file).
    let files = blobs.div_ceil(BLOBS_PER_INDEX);
    let threads = 2u64;
    let written: Vec<Result<u64, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (repo, key) = (&repo, &key);
                s.spawn(move || -> Result<u64, BenchError> {
                    let mut bytes = 0;
                    for n in (t..files).step_by(threads as usize) {
                        let count = BLOBS_PER_INDEX.min(blobs - n * BLOBS_PER_INDEX);
                        let json = synthetic_index(n, count).to_json();
                        bytes += write_unpacked(repo, "index", key, config.version, &json)?;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Helper("index writer panicked".into())))
            })
            .collect()
    });
    let mut index_bytes = 0;
    for w in written {
        index_bytes += w?;
    }

    // Older snapshots of other paths, one a day back, on the real tree.
    let snapshots = (blobs / BLOBS_PER_SNAPSHOT).max(10);
    let time = real
        .get("time")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let base_time = days_back(&time);
    for k in 1..snapshots {
        let mut snap = real.clone();
        if let Some(obj) = snap.as_object_mut() {
            obj.insert("time".into(), json!(base_time(k)));
            obj.insert("paths".into(), json!([format!("/srv/vm-{:02}", k % 25)]));
            obj.remove("summary");
        }
        let json = serde_json::to_vec(&snap)
            .map_err(|e| BenchError::Helper(format!("snapshot JSON: {e}")))?;
        write_unpacked(&repo, "snapshots", &key, config.version, &json)?;
    }
    let index_files = names_in(&repo.join("index"))?.len() as u64;
    let v = json!({
        "blobs": blobs,
        "snapshots": snapshots,
        "index_files": index_files,
        "index_bytes": index_bytes,
    });
    fs::write(&done, v.to_string()).ctx(|| format!("write {}", done.display()))?;
    Ok(ScaleRepo {
        blobs,
        repo,
        source,
        snapshots,
        index_files,
        index_bytes,
    })
}

/// A function giving the RFC 3339 time `k` days before `time` (restic's
/// snapshot time, `2026-01-02T03:04:05.123456789+00:00`): only the date
/// part changes, computed on the civil calendar.
fn days_back(time: &str) -> impl Fn(u64) -> String + '_ {
    let date = time.get(..10).unwrap_or("2026-01-01");
    let rest = time.get(10..).unwrap_or("T00:00:00Z");
    let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap_or(1));
    let (y, m, d) = (
        parts.next().unwrap_or(2026),
        parts.next().unwrap_or(1),
        parts.next().unwrap_or(1),
    );
    let day0 = days_from_civil(y, m, d);
    move |k| {
        let (y, m, d) = civil_from_days(day0 - k as i64);
        format!("{y:04}-{m:02}-{d:02}{rest}")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One measured step.
#[derive(Debug, Clone)]
pub struct ScaleCell {
    /// Blobs of the repository.
    pub blobs: u64,
    /// Which step.
    pub step: Step,
    /// Tool label.
    pub tool: String,
    /// What it used, or why it failed.
    pub outcome: Result<Measurement, String>,
}

/// Runs the scale chain of `tool` on a hard-linked copy of `scale` in
/// `work`, reporting each step.
pub fn run_chain(
    tool: &Tool,
    scale: &ScaleRepo,
    work: &Path,
    timeout: Duration,
    record: &mut dyn FnMut(ScaleCell),
) {
    let dir = work.join(format!("scale-{}-{}", label(scale.blobs), tool.slug()));
    let _ = fs::remove_dir_all(&dir);
    let (repo, cache) = (dir.join("repo"), dir.join("cache"));
    let fail_all = |record: &mut dyn FnMut(ScaleCell), why: String| {
        for step in Step::ALL {
            record(ScaleCell {
                blobs: scale.blobs,
                step,
                tool: tool.label.clone(),
                outcome: Err(why.clone()),
            });
        }
    };
    let copied = fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            run_helper(Command::new("cp").arg("-al").arg(&scale.repo).arg(&repo))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = copied {
        return fail_all(record, format!("copy of the repository: {e}"));
    }
    let logs = work.join("logs");
    let _ = fs::create_dir_all(&logs);
    let repo_arg = repo.to_string_lossy().into_owned();
    for (round, step) in Step::ALL.into_iter().enumerate() {
        if matches!(step, Step::BackupCold | Step::BackupWarm) {
            if let Err(e) = touch_source(&scale.source, round as u64) {
                record(ScaleCell {
                    blobs: scale.blobs,
                    step,
                    tool: tool.label.clone(),
                    outcome: Err(e.to_string()),
                });
                continue;
            }
        }
        let mut cmd = tool.command(&repo_arg, &cache, &step.args(tool, &scale.source));
        let tag = format!("scale-{}-{:?}-{}", label(scale.blobs), step, tool.slug());
        let log = logs.join(format!("{tag}.stderr"));
        let stdout = fs::File::create(logs.join(format!("{tag}.stdout")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let outcome = match run_measured(&mut cmd, stdout, &log, timeout) {
            Ok(m) if m.exit.success() => Ok(m),
            Ok(m) => Err(format!("FAILED ({}): {}", m.exit, m.stderr_tail)),
            Err(e) => Err(format!("FAILED (cannot run {}: {e})", tool.bin.display())),
        };
        eprintln!(
            "  scale {:>4} {:32} {}",
            label(scale.blobs),
            step.title(),
            match &outcome {
                Ok(m) => format!(
                    "{:>7.2} s {:>7} MiB",
                    m.wall.as_secs_f64(),
                    m.max_rss_kib / 1024
                ),
                Err(e) => e.clone(),
            }
        );
        record(ScaleCell {
            blobs: scale.blobs,
            step,
            tool: tool.label.clone(),
            outcome,
        });
    }
    let _ = fs::remove_dir_all(&dir);
}

/// The Markdown section: the repositories, then per step a table of wall
/// time and peak RSS per tool and repository size.
pub fn report(repos: &[ScaleRepo], tools: &[Tool], cells: &[ScaleCell]) -> String {
    let mut out = String::from("### Scale: cost as the repository grows\n\n");
    for r in repos {
        out.push_str(&format!(
            "- {} repository: {} blobs in the index ({} index files, {:.0} MiB), {} snapshots\n",
            label(r.blobs),
            r.blobs,
            r.index_files,
            r.index_bytes as f64 / 1048576.0,
            r.snapshots
        ));
    }
    out.push('\n');
    out.push_str("| Step | Blobs |");
    for t in tools {
        out.push_str(&format!(" {} wall s | {} RSS MiB |", t.label, t.label));
    }
    out.push_str("\n|---|--:|");
    for _ in tools {
        out.push_str("--:|--:|");
    }
    out.push('\n');
    for step in Step::ALL {
        for r in repos {
            out.push_str(&format!("| {} | {} |", step.title(), label(r.blobs)));
            for t in tools {
                let cell = cells
                    .iter()
                    .find(|c| c.step == step && c.blobs == r.blobs && c.tool == t.label);
                match cell.map(|c| &c.outcome) {
                    Some(Ok(m)) => out.push_str(&format!(
                        " {:.2} | {:.0} |",
                        m.wall.as_secs_f64(),
                        m.max_rss_kib as f64 / 1024.0
                    )),
                    Some(Err(e)) => out.push_str(&format!(
                        " FAILED | {} |",
                        e.replace('|', "/").chars().take(80).collect::<String>()
                    )),
                    None => out.push_str(" – | – |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Keeps the better of two runs of one cell (a run beats a failure, less
/// wall time beats more).
pub fn keep_better(cells: &mut Vec<ScaleCell>, new: ScaleCell) {
    let slot = cells
        .iter_mut()
        .find(|c| c.step == new.step && c.blobs == new.blobs && c.tool == new.tool);
    match slot {
        None => cells.push(new),
        Some(old) => {
            let better = match (&old.outcome, &new.outcome) {
                (Ok(a), Ok(b)) => b.wall < a.wall,
                (Err(_), _) => true,
                (Ok(_), Err(_)) => false,
            };
            if better {
                *old = new;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_labels() {
        assert_eq!(parse_count("1M"), Some(1_000_000));
        assert_eq!(parse_count("250k"), Some(250_000));
        assert_eq!(parse_count("4000000"), Some(4_000_000));
        assert_eq!(parse_count("0"), None);
        assert_eq!(parse_count("x"), None);
        assert_eq!(label(10_000_000), "10M");
        assert_eq!(label(250_000), "250k");
        assert_eq!(label(1234), "1234");
    }

    #[test]
    fn days_back_cross_months_and_years() {
        let back = days_back("2026-03-01T10:00:00.5+01:00");
        assert_eq!(back(0), "2026-03-01T10:00:00.5+01:00");
        assert_eq!(back(1), "2026-02-28T10:00:00.5+01:00");
        assert_eq!(back(60), "2025-12-31T10:00:00.5+01:00");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn synthetic_index_files_hold_what_they_say() {
        let f = synthetic_index(3, 2500);
        assert_eq!(f.blob_count(), 2500);
        assert_eq!(f.packs.len(), 3);
        let back = IndexFile::parse(&f.to_json()).unwrap();
        assert_eq!(back, f);
        // Deterministic per file number, different between files.
        assert_eq!(synthetic_index(3, 10), synthetic_index(3, 10));
        assert_ne!(synthetic_index(3, 10), synthetic_index(4, 10));
    }
}
