//! Image mode on the command line: `backup --image`, `restore --format`,
//! `dump --format` and `restore-chain` (walk-through: docs/images.md).
//!
//! ```text
//! restix backup --image disk.qcow2 [--image-name NAME] [--image-format auto|qcow2|raw]
//!               [--image-backing BASE]... [--parent SNAP]
//!               [--changes auto|layer|bitmap|hash-cache|none] [--bitmap NAME]
//!               [--image-chunks auto|SIZE|restic]
//! restix restore SNAP[:DIR] --target FILE|DIR/ --format raw|qcow2 [--include /disk.qcow2]
//! restix dump --format raw|qcow2 [--target FILE|DIR/] SNAP /disk.qcow2
//! restix restore-chain --target FILE|DIR/ [--format raw|qcow2]
//!               SNAP_FULL[:PATH] SNAP_INC1[:PATH] SNAP_INC2[:PATH]...
//! ```
//!
//! A changed-block backup never trusts its parent blindly: the parent's
//! image record must vouch for the change source, and a sample of the blocks
//! called unchanged is compared with the parent's (engine: `image::judge`,
//! `verify`); otherwise nothing is written and the command exits 1. Without
//! `--parent` the parent is the latest snapshot of the same image (host and
//! absolute path; for an overlay, of its backing file) whose record matches.
//! The first line says which parent was used and why, or why the whole image
//! was read.
//!
//! `--target` means the same for `restore --format`, `dump --format` and
//! `restore-chain`: the file to write; an existing directory (or a path
//! ending in `/`) gets a file named after the image with the format's
//! extension (`disk.raw`, `disk.qcow2`), so a raw image is never named
//! `.qcow2` by restix.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use restix_engine::image::{
    self, block_hash_cache_path, ChainLayer, ChangeSource, ChangedBlocks, DiskImage,
    ImageBackupOptions, ImageChunking, ImageError, ImageFacts, ImageFormat, ImageProgress,
    ImageRestoreStats, ParentBlobs, Qcow2Image, RawImage, RestoreFormat, RestoreSettings,
    RestoreTarget, Verdict,
};
use restix_engine::selection::split_snapshot_arg;
use restix_repo_format::{CompressionMode, GoTime, Id, Snapshot};

use crate::args::{BackupArgs, DumpArgs, RestoreArgs};
use crate::context::Context;
use crate::engine_glue::{
    cache_dir, open_repository, open_repository_with, LockMode, OpenedRepository,
};
use crate::errors::fatal;
use crate::image_args::{ImageBackupFlags, RestoreChainArgs};
use crate::output::format_bytes;
use crate::progress::{
    self, BackupSummaryJson as SummaryJson, Reporter, RestoreSummaryJson, Status, StatusSource,
};

/// The `summary` line of `backup --image --json`: restic's fields, then an
/// `image` object with what image mode did (bytes read from the image, reuse
/// of the parent, why the parent was trusted). Callers that know restic's
/// summary ignore the extra key.
#[derive(serde::Serialize)]
struct ImageSummaryJson {
    #[serde(flatten)]
    summary: SummaryJson,
    image: ImageStatsJson,
}

/// [`ImageStats`](restix_engine::image::ImageStats) in the JSON summary.
#[derive(serde::Serialize)]
struct ImageStatsJson {
    virtual_size: u64,
    allocated_bytes: u64,
    /// Bytes read from the image: chunking, hashing and verifying.
    bytes_read: u64,
    hash_bytes_read: u64,
    incremental: bool,
    changed_bytes: u64,
    /// Bytes per block; 0 for restic's content-defined chunks.
    block_size: u64,
    chunks: u64,
    chunks_reused: u64,
    bytes_reused: u64,
    bytes_rechunked: u64,
    change_source: &'static str,
    /// The first line of the text output: which parent, and why.
    parent_reason: String,
    /// Whether the parent's record vouched for the change source.
    vouched: bool,
    verified_blocks: u64,
    verified_bytes: u64,
    verified_zero_blocks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
}

impl ImageStatsJson {
    fn new(s: &restix_engine::image::ImageStats, parent_reason: String) -> Self {
        ImageStatsJson {
            virtual_size: s.virtual_size,
            allocated_bytes: s.allocated_bytes,
            bytes_read: s.bytes_read + s.hash_bytes_read,
            hash_bytes_read: s.hash_bytes_read,
            incremental: s.incremental,
            changed_bytes: s.changed_bytes,
            block_size: s.block_size,
            chunks: s.chunks,
            chunks_reused: s.chunks_reused,
            bytes_reused: s.bytes_reused,
            bytes_rechunked: s.bytes_rechunked,
            change_source: s.change_source,
            parent_reason,
            vouched: s.vouched,
            verified_blocks: s.verified_blocks,
            verified_bytes: s.verified_bytes,
            verified_zero_blocks: s.verified_zero_blocks,
            fallback_reason: s.fallback_reason.clone(),
        }
    }
}

fn image_error(e: ImageError) -> anyhow::Error {
    match e {
        ImageError::Repo(repo) => anyhow::Error::from(repo),
        other => fatal(other).into(),
    }
}

fn find_snapshot(opened: &OpenedRepository, arg: &str) -> anyhow::Result<Id> {
    let all = opened.list_snapshots()?;
    let (id, _) = restix_engine::selection::find_in(&all, arg, &Default::default())
        .map_err(|e| fatal(format!("invalid id \"{arg}\": {e}")))?;
    Ok(id)
}

/// An opened image: the qcow2 chain (for layer and bitmap changes) or any.
enum Opened {
    Qcow2(Qcow2Image),
    Raw(RawImage),
}

impl Opened {
    fn disk(&self) -> &dyn DiskImage {
        match self {
            Opened::Qcow2(q) => q,
            Opened::Raw(r) => r,
        }
    }

    fn facts(&self, path: &Path) -> anyhow::Result<ImageFacts> {
        match self {
            Opened::Qcow2(q) => ImageFacts::of_qcow2(path, q),
            Opened::Raw(r) => ImageFacts::of_raw(path, r),
        }
        .map_err(image_error)
    }
}

fn open_image(path: &Path, flags: &ImageBackupFlags) -> anyhow::Result<Opened> {
    let format = match flags.image_format.as_str() {
        "auto" => {
            let mut magic = [0u8; 4];
            let file = std::fs::File::open(path)
                .map_err(|e| fatal(format!("cannot open image {}: {e}", path.display())))?;
            let n = std::os::unix::fs::FileExt::read_at(&file, &mut magic, 0).unwrap_or(0);
            if n == 4 && magic == *b"QFI\xfb" {
                ImageFormat::Qcow2
            } else {
                ImageFormat::Raw
            }
        }
        "qcow2" => ImageFormat::Qcow2,
        "raw" => ImageFormat::Raw,
        other => {
            return Err(fatal(format!(
                "unknown image format \"{other}\" (auto, qcow2, raw)"
            ))
            .into())
        }
    };
    let opened = match format {
        ImageFormat::Qcow2 if flags.image_backing.is_empty() => {
            Opened::Qcow2(Qcow2Image::open(path).map_err(fatal)?)
        }
        ImageFormat::Qcow2 => {
            let mut layers: Vec<PathBuf> = flags.image_backing.iter().map(PathBuf::from).collect();
            layers.push(path.to_path_buf());
            Opened::Qcow2(Qcow2Image::open_chain(&layers).map_err(fatal)?)
        }
        ImageFormat::Raw => {
            if !flags.image_backing.is_empty() {
                return Err(fatal("--image-backing needs a qcow2 --image").into());
            }
            Opened::Raw(RawImage::open(path).map_err(fatal)?)
        }
    };
    Ok(opened)
}

/// Changed blocks read ahead of opening the repository at most: the overlap
/// saves up to the key derivation's ~70 ms, which matters for small
/// incrementals; larger ones stream their blocks in bounded memory.
const PREFETCH_MAX_BYTES: u64 = 64 << 20;
/// Snapshots of the image looked at for a parent at most (each costs a
/// tree load).
const PARENT_CANDIDATES: usize = 8;

/// The progress of one image job, for the shared status reporter.
struct ImageJob {
    counters: Arc<ImageProgress>,
    /// `Some(path)`: a backup of that image; `None`: a restore.
    backup_of: Option<String>,
}

impl StatusSource for ImageJob {
    fn status(&self, elapsed: Duration) -> Option<Status> {
        let total = self.counters.total();
        if total == 0 {
            return None;
        }
        let done = self.counters.done().min(total);
        Some(match &self.backup_of {
            Some(path) => progress::image_backup_status(path, done, total, elapsed),
            None => progress::image_restore_status(done, total, elapsed),
        })
    }
}

/// Which parent an image backup uses, and why (the first line of output).
struct ParentChoice {
    id: Option<Id>,
    blobs: Option<ParentBlobs>,
    /// Why this one (or why none).
    why: String,
}

/// The change source `mode` names, for [`image::judge`].
fn change_source<'a>(
    mode: &str,
    bitmap: Option<&'a str>,
    ranges: &'a [std::ops::Range<u64>],
) -> ChangeSource<'a> {
    match (mode, bitmap) {
        ("layer", _) => ChangeSource::Layer,
        ("bitmap", Some(name)) => ChangeSource::Bitmap {
            name,
            dirty: ranges,
        },
        ("hash-cache", _) => ChangeSource::HashCache,
        _ => ChangeSource::Given,
    }
}

/// The latest snapshot of the image (host and path) whose record vouches for
/// the change source, newest first among the last [`PARENT_CANDIDATES`].
fn find_image_parent(
    opened: &OpenedRepository,
    all: &[(Id, Snapshot)],
    facts: &ImageFacts,
    source: ChangeSource<'_>,
    host: &str,
    name: &str,
) -> ParentChoice {
    // An overlay continues from a snapshot of its backing file; anything
    // else from one of itself.
    let path = match source {
        ChangeSource::Layer => facts
            .layers
            .iter()
            .rev()
            .nth(1)
            .map_or(facts.path.as_str(), |(p, _)| p.as_str()),
        _ => facts.path.as_str(),
    };
    let mut candidates: Vec<&(Id, Snapshot)> = all
        .iter()
        .filter(|(_, s)| s.hostname == host && s.paths.len() == 1 && s.paths[0] == path)
        .collect();
    candidates.sort_by_key(|(_, s)| std::cmp::Reverse(s.time.unix_nanos()));
    let mut first_refusal: Option<(Id, String)> = None;
    for (id, _) in candidates.iter().take(PARENT_CANDIDATES) {
        let Some(blobs) = image::load_parent_blobs(&opened.repo, id, name) else {
            continue;
        };
        match image::judge(Some(facts), blobs.record(), source) {
            Ok(Verdict::Vouched(_)) => {
                return ParentChoice {
                    id: Some(*id),
                    blobs: Some(blobs),
                    why: format!(
                        "the latest snapshot of {path} on host {host} whose record matches"
                    ),
                }
            }
            Ok(Verdict::Unvouched(_)) => {
                if first_refusal.is_none() {
                    first_refusal = Some((*id, "it carries no image record".into()));
                }
            }
            Err(reason) => {
                if first_refusal.is_none() {
                    first_refusal = Some((*id, reason));
                }
            }
        }
    }
    ParentChoice {
        id: None,
        blobs: None,
        why: match first_refusal {
            None => format!("no earlier snapshot of {path} on host {host}"),
            Some((id, reason)) => format!(
                "no snapshot of {path} on host {host} can be the parent (the latest, {}: {reason})",
                id.short()
            ),
        },
    }
}

/// `backup --image`.
pub fn run_backup(
    ctx: &Context,
    args: &BackupArgs,
    flags: &ImageBackupFlags,
) -> anyhow::Result<()> {
    let backup_start = GoTime::now_local();
    let started = Instant::now();
    let Some(image_arg) = flags.image.as_deref() else {
        return Err(fatal("--image needs a path").into());
    };
    if args.stdin || !args.paths.is_empty() {
        return Err(fatal("--image cannot be combined with --stdin or file arguments").into());
    }
    let path = PathBuf::from(image_arg);
    let image = open_image(&path, flags)?;
    let facts = image.facts(&path)?;
    let name = match &flags.image_name {
        Some(name) => name.clone(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| fatal(format!("cannot name image {image_arg}")))?,
    };
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .map(GoTime::from_system_time_local);
    let time = match &args.time {
        Some(text) => Some(
            crate::timefmt::parse_local_time(text)
                .map_err(|e| fatal(format!("error in time option: {e}")))?,
        ),
        None => None,
    };

    let chunking = flags.image_chunks.parse::<ImageChunking>().map_err(fatal)?;
    let qcow = match &image {
        Opened::Qcow2(q) => Some(q),
        Opened::Raw(_) => None,
    };
    let layered = facts.top_changes.is_some();
    let mode = match (flags.changes.as_str(), &flags.bitmap) {
        (_, _) if args.force => "none",
        ("auto", Some(_)) | ("bitmap", _) => "bitmap",
        ("auto", None) if layered => "layer",
        ("auto", None) => "hash-cache",
        (other @ ("layer" | "hash-cache" | "none"), _) => other,
        (other, _) => {
            return Err(fatal(format!(
                "unknown --changes \"{other}\" (auto, layer, bitmap, hash-cache, none)"
            ))
            .into())
        }
    };
    // Changes known from the image itself are read before the repository is
    // opened, so that reading, hashing and compressing the changed blocks
    // overlaps with deriving the key and loading the index.
    let ranges = match mode {
        "bitmap" => {
            let Some(name) = &flags.bitmap else {
                return Err(fatal("--changes bitmap needs --bitmap NAME").into());
            };
            let q = qcow.ok_or_else(|| fatal("dirty bitmaps need a qcow2 image"))?;
            // Read with the image's description; read again for the error
            // of a missing or inconsistent bitmap.
            match facts.bitmap(name).and_then(|b| b.dirty.clone()) {
                Some(dirty) => Some(dirty),
                None => Some(image::changed_ranges_from_bitmap(q, name).map_err(image_error)?),
            }
        }
        "layer" => Some(facts.top_changes.clone().ok_or_else(|| {
            fatal(format!(
                "--changes layer needs a qcow2 overlay (an image with a backing file, or \
                 --image-backing): {image_arg} has none"
            ))
        })?),
        _ => None,
    };
    let prefetch_block = match chunking {
        ImageChunking::Fixed(block) => Some(block),
        ImageChunking::Auto => Some(image::default_block_size(image.disk().virtual_size())),
        ImageChunking::ContentDefined => None,
    };
    let level = ctx
        .compression_mode()
        .ok()
        .and_then(|mode| mode.parse::<CompressionMode>().ok())
        .and_then(CompressionMode::data_level);
    let pack_size = ctx
        .pack_size_bytes()
        .ok()
        .flatten()
        .unwrap_or(restix_engine::repository::DEFAULT_PACK_SIZE);
    let host = args
        .host
        .clone()
        .or_else(|| std::env::var("RESTIC_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_default();
    let snapshot_host = if host.is_empty() {
        image::host_name()
    } else {
        host.clone()
    };
    let mut options = ImageBackupOptions::new(name.clone());
    options.mtime = mtime;
    options.time = Some(time.unwrap_or(backup_start));
    options.paths = vec![facts.path.clone()];
    options.facts = Some(facts.clone());
    let source = change_source(
        mode,
        flags.bitmap.as_deref(),
        ranges.as_deref().unwrap_or_default(),
    );
    let key_ready = std::sync::atomic::AtomicBool::new(false);
    // The prefetched blocks' IDs, published by the sealing thread so that
    // this one can make the new content list's tree meanwhile.
    let planned = std::sync::OnceLock::new();
    let (opened, prefetched) = std::thread::scope(|scope| {
        let key_ready = &key_ready;
        let prefetch = match (&ranges, prefetch_block) {
            (Some(ranges), Some(block)) => {
                let disk = image.disk();
                // scrypt holds one core meanwhile; sharing it slows the key.
                let threads = ctx.threads.saturating_sub(1).max(1);
                Some(scope.spawn(move || {
                    let mut blocks = image::prefetch_blocks(
                        disk,
                        ranges,
                        block,
                        level,
                        threads,
                        PREFETCH_MAX_BYTES,
                    )?;
                    if let Some(blocks) = &mut blocks {
                        blocks.prefault_pack_buffers(pack_size, key_ready);
                    }
                    Ok::<_, image::ImageError>(blocks)
                }))
            }
            _ => None,
        };
        let opened = open_repository_with(ctx, LockMode::SharedAlways, false);
        key_ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => return (Err(e), None),
        };
        // With the key known, the prefetched blocks are encrypted on this
        // thread's neighbour while the index and then the parent's blobs
        // load. A failed prefetch (or sealing) only means the backup reads
        // the blocks itself.
        let (ready, prefetched) = std::thread::scope(|inner| {
            let sealed = prefetch.map(|handle| {
                inner.spawn(|| {
                    let mut blocks = handle.join().ok()?.ok()??;
                    let _ = planned.set(blocks.planned());
                    blocks.seal(&opened.repo, ctx.threads).ok()?;
                    Some(blocks)
                })
            });
            let ready = opened.load_index_cached(ctx).and_then(|()| {
                let choice = match (&args.parent, mode) {
                    _ if args.force => ParentChoice {
                        id: None,
                        blobs: None,
                        why: "--force".into(),
                    },
                    (None, "none") => ParentChoice {
                        id: None,
                        blobs: None,
                        why: "--changes none".into(),
                    },
                    (Some(arg), _) => {
                        let id = find_snapshot(&opened, arg)?;
                        ParentChoice {
                            id: Some(id),
                            blobs: image::load_parent_blobs(&opened.repo, &id, &name),
                            why: "--parent".into(),
                        }
                    }
                    // The block-hash cache names its own snapshot.
                    (None, "hash-cache") => ParentChoice {
                        id: None,
                        blobs: None,
                        why: String::new(),
                    },
                    (None, _) => {
                        let all = opened.list_snapshots()?;
                        find_image_parent(&opened, &all, &facts, source, &snapshot_host, &name)
                    }
                };
                let prepared = match (&choice.blobs, planned.get()) {
                    (Some(blobs), Some(planned)) => image::prepare_content_tree(
                        &opened.repo,
                        &options,
                        image.disk().virtual_size(),
                        blobs,
                        planned,
                    ),
                    _ => None,
                };
                Ok((choice, prepared))
            });
            let prefetched = sealed.and_then(|handle| handle.join().ok()).flatten();
            (ready, prefetched)
        });
        (ready.map(|ready| (opened, ready)), prefetched)
    });
    let (opened, (choice, prepared_tree)) = opened?;
    let changes = match (mode, ranges) {
        ("bitmap", Some(ranges)) => ChangedBlocks::Bitmap {
            name: flags.bitmap.clone().unwrap_or_default(),
            ranges,
        },
        ("layer", Some(ranges)) => ChangedBlocks::Layer(ranges),
        (_, Some(ranges)) => ChangedBlocks::Ranges(ranges),
        ("hash-cache", None) => match cache_dir(ctx) {
            Some(dir) => ChangedBlocks::BlockHashCache(block_hash_cache_path(
                &dir,
                &opened.repo.config().id,
                &path,
            )),
            None => ChangedBlocks::Unknown,
        },
        _ => ChangedBlocks::Unknown,
    };
    let tags: Vec<String> = args
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    options.parent = choice.id;
    options.prepared_tree = prepared_tree;
    options.changes = changes;
    options.chunking = chunking;
    options.prefetched = prefetched.map(std::sync::Arc::new);
    options.parent_blobs = choice.blobs;
    options.hostname = host;
    options.tags = tags;
    options.threads = ctx.threads;
    options.backup_start = Some(backup_start);
    let counters = Arc::new(ImageProgress::new());
    options.progress = Some(Arc::clone(&counters));
    let reporter = Reporter::start_at(
        &ctx.printer,
        Arc::new(ImageJob {
            counters,
            backup_of: Some(facts.path.clone()),
        }),
        started,
    );
    let done = image::backup_image(&opened.repo, image.disk(), options);
    reporter.finish(done.is_ok());
    let done = done.map_err(image_error)?;
    opened.repo.refresh_index_cache();
    let summary = &done.summary;
    let stats = &done.stats;
    let first_line = parent_line(&choice.why, summary.parent, stats);
    if ctx.printer.json {
        ctx.printer.json_line(&ImageSummaryJson {
            summary: SummaryJson::from_summary(summary, false),
            image: ImageStatsJson::new(stats, first_line),
        });
        return Ok(());
    }
    let p = &ctx.printer;
    p.print(&first_line);
    if stats.incremental {
        let reused = if stats.change_source == "hash-cache" {
            format!(
                "reused {} from the parent (every block was read to hash it)",
                format_bytes(stats.bytes_reused)
            )
        } else {
            format!(
                "reused {} from the parent without reading it",
                format_bytes(stats.bytes_reused)
            )
        };
        p.print(&format!(
            "Changes:     {} by {}; stored {} read anew, {reused}",
            format_bytes(stats.changed_bytes),
            stats.change_source,
            format_bytes(stats.bytes_rechunked),
        ));
        p.print(&format!(
            "Verified:    {} unchanged blocks read and equal to the parent's ({}), {} zero blocks checked without reading",
            stats.verified_blocks,
            format_bytes(stats.verified_bytes),
            stats.verified_zero_blocks
        ));
    }
    p.print(&format!(
        "Image:       {} virtual, {} allocated, {} read",
        format_bytes(stats.virtual_size),
        format_bytes(stats.allocated_bytes),
        format_bytes(stats.bytes_read + stats.hash_bytes_read)
    ));
    p.print(&format!(
        "Added to the repository: {} ({} stored)",
        format_bytes(summary.data_added),
        format_bytes(summary.data_added_packed)
    ));
    p.print(&format!("\nsnapshot {} saved", summary.snapshot_id.short()));
    Ok(())
}

/// The first line of an image backup's output: which parent, and why; or
/// why the whole image was read.
fn parent_line(
    selected: &str,
    parent: Option<Id>,
    stats: &restix_engine::image::ImageStats,
) -> String {
    let selected = if selected.is_empty() {
        String::new()
    } else {
        format!(" ({selected})")
    };
    match (parent, stats.incremental) {
        (Some(parent), true) => format!(
            "using parent snapshot {}{selected}: {}",
            parent.short(),
            stats.parent_verdict.as_deref().unwrap_or("checked")
        ),
        (Some(parent), false) => format!(
            "parent snapshot {}{selected}: {}; read the whole image",
            parent.short(),
            stats
                .fallback_reason
                .as_deref()
                .unwrap_or("no changed-block source")
        ),
        (None, _) => {
            let why = match (stats.fallback_reason.as_deref(), selected.is_empty()) {
                (Some(reason), _) => reason.to_string(),
                (None, false) => selected
                    .trim_start_matches(" (")
                    .trim_end_matches(')')
                    .into(),
                (None, true) => "first backup".into(),
            };
            format!("no parent snapshot: {why}; read the whole image")
        }
    }
}

/// The name restix gives an image restored as `format` from a file called
/// `name`: the format's extension instead of the other's (`disk.qcow2` →
/// `disk.raw`), else added (`disk.0.1` → `disk.0.1.raw`).
pub fn output_name(name: &str, format: RestoreFormat) -> String {
    let lower = name.to_ascii_lowercase();
    let (keep, strip): (&[&str], &[&str]) = match format {
        RestoreFormat::Raw => (&[".raw", ".img"], &[".qcow2", ".qcow"]),
        RestoreFormat::Qcow2 => (&[".qcow2"], &[".raw", ".img"]),
    };
    if keep.iter().any(|ext| lower.ends_with(ext)) {
        return name.to_string();
    }
    let stem = strip
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(name, |ext| &name[..name.len() - ext.len()]);
    let stem = if stem.is_empty() { "image" } else { stem };
    match format {
        RestoreFormat::Raw => format!("{stem}.raw"),
        RestoreFormat::Qcow2 => format!("{stem}.qcow2"),
    }
}

/// What `--target` names: the output file, or (an existing directory, or a
/// path ending in `/`) the directory to write [`output_name`] into.
pub fn output_path(target: &str, name: &str, format: RestoreFormat) -> PathBuf {
    let path = Path::new(target);
    if target.ends_with('/') || path.is_dir() {
        path.join(output_name(name, format))
    } else {
        path.to_path_buf()
    }
}

fn parse_format(format: &str) -> anyhow::Result<RestoreFormat> {
    format
        .parse()
        .map_err(|e: ImageError| fatal(format!("--format: {e}")).into())
}

/// Says what an image restore wrote (text), or its `summary` line (JSON).
fn report_written(
    ctx: &Context,
    out: &Path,
    format: RestoreFormat,
    stats: &ImageRestoreStats,
    elapsed: Duration,
    extra: &str,
) {
    if ctx.printer.json {
        ctx.printer.json_line(&RestoreSummaryJson {
            message_type: "summary",
            seconds_elapsed: elapsed.as_secs(),
            total_files: 1,
            files_restored: 1,
            total_bytes: stats.size,
            bytes_restored: stats.size,
            ..RestoreSummaryJson::default()
        });
        return;
    }
    let what = match format {
        RestoreFormat::Raw => "a sparse raw image",
        RestoreFormat::Qcow2 => "a qcow2 image",
    };
    let warning = match (format, out.extension().and_then(|e| e.to_str())) {
        (RestoreFormat::Raw, Some("qcow2" | "qcow")) => {
            " (raw guest data, not qcow2, although the name you gave ends in .qcow2)"
        }
        (RestoreFormat::Qcow2, Some("raw" | "img")) => {
            " (qcow2, not raw, although the name you gave says raw)"
        }
        _ => "",
    };
    ctx.printer.print(&format!(
        "wrote {}: {what}{warning}, {} virtual, {} of data{extra}",
        out.display(),
        format_bytes(stats.size),
        format_bytes(stats.bytes_written)
    ));
}

/// Runs an image restore with the status reporter.
fn with_progress<T>(
    ctx: &Context,
    show: bool,
    job: impl FnOnce(&ImageProgress) -> Result<T, ImageError>,
) -> anyhow::Result<T> {
    let counters = Arc::new(ImageProgress::new());
    let reporter = show.then(|| {
        Reporter::start(
            &ctx.printer,
            Arc::new(ImageJob {
                counters: Arc::clone(&counters),
                backup_of: None,
            }),
        )
    });
    let result = job(&counters);
    if let Some(reporter) = reporter {
        reporter.finish(result.is_ok());
    }
    result.map_err(image_error)
}

/// `restore --format`: the snapshot's image file (the only file, or the one
/// named by a single `--include`) to `--target`.
pub fn run_restore(ctx: &Context, args: &RestoreArgs, format: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let format = parse_format(format)?;
    let [snapshot_arg] = args.args.as_slice() else {
        return Err(fatal("specify exactly one snapshot ID").into());
    };
    let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) else {
        return Err(fatal(
            "please specify the image file (or a directory) to restore to (--target)",
        )
        .into());
    };
    let (_, subfolder) = split_snapshot_arg(snapshot_arg);
    let path = match (args.include.as_slice(), subfolder) {
        ([], None) => None,
        ([one], None) => Some(one.clone()),
        ([one], Some(sub)) => Some(format!(
            "{}/{}",
            sub.trim_end_matches('/'),
            one.trim_start_matches('/')
        )),
        ([], Some(sub)) => Some(sub.to_string()),
        _ => {
            return Err(
                fatal("--format restores one image file: give at most one --include").into(),
            )
        }
    };
    let opened = open_repository(ctx, LockMode::Shared)?;
    // Snapshot filters (--host, --tag, --path) apply as for any restore;
    // the file is looked up below, so the snapshot's root is enough.
    let root_arg = snapshot_arg.split(':').next().unwrap_or(snapshot_arg);
    let (id, _, _) = crate::snapshot_select::select_single(ctx, &opened, root_arg, &args.filter)?;
    let (file, node) =
        image::find_file_node(&opened.repo, &id, path.as_deref()).map_err(image_error)?;
    let out = output_path(target, &String::from_utf8_lossy(&node.name), format);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
    }
    ctx.printer.print(&format!(
        "restoring {file} of snapshot {} to {}",
        id.short(),
        out.display()
    ));
    let stats = restore_node_to(ctx, &opened, &node, format, &out)?;
    report_written(ctx, &out, format, &stats, started.elapsed(), "");
    Ok(())
}

/// Restore one image file's node to `out` in `format`, with the progress
/// reporter (`restore --format` and `dump --format --target`).
fn restore_node_to(
    ctx: &Context,
    opened: &OpenedRepository,
    node: &restix_repo_format::Node,
    format: RestoreFormat,
    out: &Path,
) -> anyhow::Result<ImageRestoreStats> {
    with_progress(ctx, true, |counters| {
        let settings = RestoreSettings {
            format,
            threads: ctx.threads,
            progress: Some(counters),
            work_dir: None,
        };
        image::restore_node_with(&opened.repo, node, RestoreTarget::Path(out), &settings)
    })
}

/// `dump --format`: one image file to `--target` (a file, or a directory to
/// name it in), or to standard output when that is not a terminal.
pub fn run_dump(ctx: &Context, args: &DumpArgs, format: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let format = parse_format(format)?;
    let [snapshot_arg, path] = args.args.as_slice() else {
        return Err(fatal("no file and no snapshot ID specified").into());
    };
    if args.target.is_none() && std::io::stdout().is_terminal() {
        return Err(
            fatal("stdout is the terminal, please redirect output or give --target FILE").into(),
        );
    }
    let opened = open_repository(ctx, LockMode::Shared)?;
    // The same snapshot filters (--host, --tag, --path) as a plain dump.
    let root_arg = snapshot_arg.split(':').next().unwrap_or(snapshot_arg);
    let (id, _, _) = crate::snapshot_select::select_single(ctx, &opened, root_arg, &args.filter)?;
    let (file, node) = image::find_file_node(&opened.repo, &id, Some(path)).map_err(image_error)?;
    let Some(target) = &args.target else {
        let settings = RestoreSettings {
            format,
            threads: ctx.threads,
            ..RestoreSettings::default()
        };
        return dump_to_stdout(&opened, &node, format, &file, settings);
    };
    let out = output_path(target, &String::from_utf8_lossy(&node.name), format);
    let stats = restore_node_to(ctx, &opened, &node, format, &out)?;
    report_written(ctx, &out, format, &stats, started.elapsed(), "");
    Ok(())
}

/// `dump --format` to standard output (which carries the image, so no
/// progress or messages go there): raw is streamed in order; a qcow2 image,
/// whose header is written last, is made in a temporary file first.
fn dump_to_stdout(
    opened: &OpenedRepository,
    node: &restix_repo_format::Node,
    format: RestoreFormat,
    file: &str,
    settings: RestoreSettings<'_>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(4 << 20, stdout.lock());
    match format {
        RestoreFormat::Raw => {
            image::restore_node_with(
                &opened.repo,
                node,
                RestoreTarget::Stream(&mut out),
                &settings,
            )
            .map_err(image_error)?;
        }
        RestoreFormat::Qcow2 => {
            let name = output_name(file.rsplit('/').next().unwrap_or(file), format);
            let temp =
                std::env::temp_dir().join(format!(".restix-dump-{}-{name}", std::process::id()));
            crate::signals::register_temp_file(temp.clone());
            let copied =
                image::restore_node_with(&opened.repo, node, RestoreTarget::Path(&temp), &settings)
                    .map_err(image_error)
                    .and_then(|_| {
                        let mut written = std::fs::File::open(&temp)
                            .map_err(|e| fatal(format!("{}: {e}", temp.display())))?;
                        std::io::copy(&mut written, &mut out)
                            .map_err(|e| fatal(format!("writing to standard output: {e}")).into())
                    });
            let _ = std::fs::remove_file(&temp);
            crate::signals::unregister_temp_file(&temp);
            copied?;
        }
    }
    out.flush()
        .map_err(|e| fatal(format!("writing to standard output: {e}")))?;
    Ok(())
}

/// `restore-chain`.
pub fn run_restore_chain(ctx: &Context, args: &RestoreChainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) else {
        return Err(
            fatal("please specify the image file (or a directory) to write (--target)").into(),
        );
    };
    if args.snapshots.is_empty() {
        return Err(fatal("no snapshot ID specified").into());
    }
    let opened = open_repository(ctx, LockMode::Shared)?;
    let mut layers = Vec::with_capacity(args.snapshots.len());
    for arg in &args.snapshots {
        let (id_arg, path) = split_snapshot_arg(arg);
        layers.push(ChainLayer {
            snapshot: find_snapshot(&opened, id_arg)?,
            path: path.map(String::from),
        });
    }
    opened.load_index_cached(ctx)?;
    let is_dir = target.ends_with('/') || Path::new(target).is_dir();
    let format = match &args.format {
        Some(f) => parse_format(f)?,
        None if !is_dir && target.ends_with(".qcow2") => RestoreFormat::Qcow2,
        None => RestoreFormat::Raw,
    };
    let out = if is_dir {
        // Named after the top layer's file.
        let last = layers
            .last()
            .ok_or_else(|| fatal("no snapshot ID specified"))?;
        let (file, _) = image::find_file_node(&opened.repo, &last.snapshot, last.path.as_deref())
            .map_err(image_error)?;
        output_path(target, file.rsplit('/').next().unwrap_or(&file), format)
    } else {
        PathBuf::from(target)
    };
    let stats = with_progress(ctx, true, |counters| {
        let settings = RestoreSettings {
            format,
            threads: ctx.threads,
            progress: Some(counters),
            work_dir: args.work_dir.as_deref().map(Path::new),
        };
        image::restore_chain_with(&opened.repo, &layers, &out, &settings)
    })?;
    report_written(
        ctx,
        &out,
        format,
        &stats,
        started.elapsed(),
        &format!(", flattened from {} layers", layers.len()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names() {
        let raw = RestoreFormat::Raw;
        let qcow = RestoreFormat::Qcow2;
        assert_eq!(output_name("disk.qcow2", raw), "disk.raw");
        assert_eq!(output_name("disk.QCOW2", raw), "disk.raw");
        assert_eq!(output_name("disk.0.1", raw), "disk.0.1.raw");
        assert_eq!(output_name("vm.img", raw), "vm.img");
        assert_eq!(output_name("vm.raw", qcow), "vm.qcow2");
        assert_eq!(output_name("disk.qcow2", qcow), "disk.qcow2");
        assert_eq!(output_name(".qcow2", raw), "image.raw");
        assert_eq!(
            output_path("out/", "disk.qcow2", raw),
            PathBuf::from("out/disk.raw")
        );
        assert_eq!(
            output_path("out.img", "disk.qcow2", raw),
            PathBuf::from("out.img")
        );
    }
}
