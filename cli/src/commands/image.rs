//! Image mode on the command line: `backup --image`, `restore --format`,
//! `dump --format` and `restore-chain`.
//!
//! ```text
//! restix backup --image disk.qcow2 [--image-name NAME] [--image-format auto|qcow2|raw]
//!               [--image-backing BASE]... [--parent SNAP]
//!               [--changes auto|layer|bitmap|hash-cache|none] [--bitmap NAME]
//!               [--image-chunks auto|SIZE|restic]
//! restix restore SNAP[:DIR] --target DIR --format raw|qcow2 [--include /disk.qcow2]
//! restix dump --format raw|qcow2 --target FILE SNAP /disk.qcow2
//! restix restore-chain --target OUT.qcow2|OUT.raw [--format raw|qcow2]
//!               SNAP_FULL[:PATH] SNAP_INC1[:PATH] SNAP_INC2[:PATH]...
//! ```
//!
//! `--changes auto` (the default) picks: the dirty bitmap with `--bitmap`; the
//! top layer's own clusters when a parent is given and the image has backing
//! layers (an OpenNebula increment); otherwise the local block-hash cache
//! (which also supplies the parent: the snapshot it was built for), unless
//! `--no-cache`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use restix_engine::image::{
    self, block_hash_cache_path, ChainLayer, ChangedBlocks, DiskImage, ImageBackupOptions,
    ImageChunking, ImageError, ImageFormat, Qcow2Image, RawImage, RestoreFormat,
};
use restix_engine::selection::split_snapshot_arg;
use restix_repo_format::{CompressionMode, GoTime, Id};

use super::backup::SummaryJson;
use super::Context;
use crate::args::{BackupArgs, DumpArgs, RestoreArgs};
use crate::engine_glue::{
    cache_dir, open_repository, open_repository_with, LockMode, OpenedRepository,
};
use crate::errors::fatal;
use crate::options::{self, ProcessEnv};
use crate::output::format_bytes;

/// `backup` flags of image mode.
#[derive(Args, Debug, Default, Clone)]
pub struct ImageBackupFlags {
    /// Back up this disk image (qcow2, raw file or block device) as one file holding its guest view
    #[arg(long = "image", value_name = "IMAGE")]
    pub image: Option<String>,
    /// Format of --image: auto (probe), qcow2 or raw
    #[arg(long = "image-format", value_name = "FORMAT", default_value = "auto")]
    pub image_format: String,
    /// Lower layers of a qcow2 --image, base first, instead of the backing file it records (can be specified multiple times)
    #[arg(long = "image-backing", action = clap::ArgAction::Append, value_name = "IMAGE")]
    pub image_backing: Vec<String>,
    /// File name of the image in the snapshot (default: the base name of --image)
    #[arg(long = "image-name", value_name = "NAME")]
    pub image_name: Option<String>,
    /// Changed-block source for incrementals: auto, layer, bitmap, hash-cache or none
    #[arg(long = "changes", value_name = "SOURCE", default_value = "auto")]
    pub changes: String,
    /// Take changed blocks from this persistent dirty bitmap of the qcow2 image
    #[arg(long = "bitmap", value_name = "NAME")]
    pub bitmap: Option<String>,
    /// Blobs of the image: auto (the parent's; else blocks of 64K, more for disks over 8 GiB), a block size (64K to 8M), or restic (content-defined chunks)
    #[arg(long = "image-chunks", value_name = "SIZE", default_value = "auto")]
    pub image_chunks: String,
}

/// `restore`/`dump` flag of image mode.
#[derive(Args, Debug, Default, Clone)]
pub struct ImageRestoreFlags {
    /// Write the image file as a sparse raw file or a qcow2 image (image mode)
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `restore-chain`: flatten an OpenNebula backup chain.
#[derive(Args, Debug, Default)]
pub struct RestoreChainArgs {
    /// Image file to write
    #[arg(short = 't', long = "target", value_name = "FILE")]
    pub target: Option<String>,
    /// Output format: raw or qcow2 (default: qcow2 if the target ends in .qcow2, else raw)
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
    /// Folder for the temporary layer files (default: the target's folder)
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Snapshots holding the layers, full backup first: SNAPSHOT[:PATH]
    pub snapshots: Vec<String>,
}

/// The `summary` line of `backup --image --json`: restic's fields, then an
/// `image` object with what image mode did (bytes read from the image, reuse
/// of the parent). Callers that know restic's summary ignore the extra key.
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
    /// Bytes read from the image: chunking plus block hashing.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
}

impl From<&restix_engine::image::ImageStats> for ImageStatsJson {
    fn from(s: &restix_engine::image::ImageStats) -> Self {
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
    Other(Box<dyn DiskImage>),
}

impl Opened {
    fn disk(&self) -> &dyn DiskImage {
        match self {
            Opened::Qcow2(q) => q,
            Opened::Other(d) => d.as_ref(),
        }
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
            Opened::Other(Box::new(RawImage::open(path).map_err(fatal)?))
        }
    };
    Ok(opened)
}

/// Changed blocks read ahead of opening the repository at most: the overlap
/// saves up to the key derivation's ~70 ms, which matters for small
/// incrementals; larger ones stream their blocks in bounded memory.
const PREFETCH_MAX_BYTES: u64 = 64 << 20;

/// `backup --image`.
pub fn run_backup(
    ctx: &Context,
    args: &BackupArgs,
    flags: &ImageBackupFlags,
) -> anyhow::Result<()> {
    let backup_start = GoTime::now_local();
    let Some(image_arg) = flags.image.as_deref() else {
        return Err(fatal("--image needs a path").into());
    };
    if args.stdin || !args.paths.is_empty() {
        return Err(fatal("--image cannot be combined with --stdin or file arguments").into());
    }
    let path = PathBuf::from(image_arg);
    let image = open_image(&path, flags)?;
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
        Opened::Other(_) => None,
    };
    let wants_parent = args.parent.is_some() && !args.force;
    let mode = match (flags.changes.as_str(), &flags.bitmap) {
        ("auto", Some(_)) | ("bitmap", _) => "bitmap",
        ("auto", None) => {
            let layered = qcow.is_some_and(|q| q.layer_paths().len() > 1);
            if wants_parent && layered {
                "layer"
            } else if args.force {
                "none"
            } else {
                "hash-cache"
            }
        }
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
            Some(image::changed_ranges_from_bitmap(q, name).map_err(image_error)?)
        }
        "layer" => {
            let q = qcow.ok_or_else(|| fatal("--changes layer needs a qcow2 image"))?;
            Some(image::changed_ranges_in_top_layer(q).map_err(image_error)?)
        }
        _ => None,
    };
    let prefetch_block = match chunking {
        ImageChunking::Fixed(block) => Some(block),
        ImageChunking::Auto => Some(image::default_block_size(image.disk().virtual_size())),
        ImageChunking::ContentDefined => None,
    };
    let level = options::compression_mode(&ctx.global, &ProcessEnv)
        .ok()
        .and_then(|mode| mode.parse::<CompressionMode>().ok())
        .and_then(CompressionMode::data_level);
    let pack_size = options::pack_size_bytes(&ctx.global, &ProcessEnv)
        .ok()
        .flatten()
        .unwrap_or(restix_engine::repository::DEFAULT_PACK_SIZE);
    let mut options = ImageBackupOptions::new(name.clone());
    options.mtime = mtime;
    options.time = Some(time.unwrap_or(backup_start));
    let key_ready = std::sync::atomic::AtomicBool::new(false);
    // The prefetched blocks' IDs, published by the sealing thread so that
    // this one can make the new content list's tree meanwhile.
    let planned = std::sync::OnceLock::new();
    let (opened, prefetched) = std::thread::scope(|scope| {
        let key_ready = &key_ready;
        let prefetch = match (&ranges, prefetch_block) {
            (Some(ranges), Some(block)) if wants_parent => {
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
                let parent = match (&args.parent, args.force) {
                    (Some(arg), false) => Some(find_snapshot(&opened, arg)?),
                    _ => None,
                };
                let blobs =
                    parent.and_then(|id| image::load_parent_blobs(&opened.repo, &id, &name));
                let prepared = match (&blobs, planned.get()) {
                    (Some(blobs), Some(planned)) => image::prepare_content_tree(
                        &opened.repo,
                        &options,
                        image.disk().virtual_size(),
                        blobs,
                        planned,
                    ),
                    _ => None,
                };
                Ok((parent, blobs, prepared))
            });
            let prefetched = sealed.and_then(|handle| handle.join().ok()).flatten();
            (ready, prefetched)
        });
        (ready.map(|ready| (opened, ready)), prefetched)
    });
    let (opened, (parent, parent_blobs, prepared_tree)) = opened?;
    let changes = match (mode, ranges) {
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
    if matches!(changes, ChangedBlocks::Ranges(_)) && parent.is_none() {
        ctx.printer
            .print("no parent snapshot given (--parent), backing up the whole image");
    }
    let host = args
        .host
        .clone()
        .or_else(|| std::env::var("RESTIC_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_default();
    let tags: Vec<String> = args
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    options.parent = parent;
    options.prepared_tree = prepared_tree;
    options.changes = changes;
    options.chunking = chunking;
    options.prefetched = prefetched.map(std::sync::Arc::new);
    options.parent_blobs = parent_blobs;
    options.hostname = host;
    options.tags = tags;
    options.threads = ctx.threads;
    options.backup_start = Some(backup_start);
    let done = image::backup_image(&opened.repo, image.disk(), options).map_err(image_error)?;
    opened.repo.refresh_index_cache();
    let summary = &done.summary;
    let stats = &done.stats;
    if ctx.printer.json {
        ctx.printer.json_line(&ImageSummaryJson {
            summary: SummaryJson::from_summary(summary, false),
            image: ImageStatsJson::from(stats),
        });
        return Ok(());
    }
    let p = &ctx.printer;
    match (summary.parent, stats.incremental) {
        (Some(parent), true) => p.print(&format!(
            "using parent snapshot {} ({} changed, {} re-chunked, {} reused unread)",
            parent.short(),
            format_bytes(stats.changed_bytes),
            format_bytes(stats.bytes_rechunked),
            format_bytes(stats.bytes_reused)
        )),
        (Some(parent), false) => p.print(&format!(
            "parent snapshot {}: {}, read the whole image",
            parent.short(),
            stats
                .fallback_reason
                .as_deref()
                .unwrap_or("changes unknown")
        )),
        (None, _) => {}
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

/// `restore --format`: the snapshot's image file (the only file, or the one
/// named by a single `--include`) into the target folder.
pub fn run_restore(ctx: &Context, args: &RestoreArgs, format: &str) -> anyhow::Result<()> {
    let format: RestoreFormat = format.parse().map_err(|e: ImageError| fatal(e))?;
    let [snapshot_arg] = args.args.as_slice() else {
        return Err(fatal("specify exactly one snapshot ID").into());
    };
    let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) else {
        return Err(fatal("please specify a directory to restore to (--target)").into());
    };
    let (id_arg, subfolder) = split_snapshot_arg(snapshot_arg);
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
    let id = find_snapshot(&opened, id_arg)?;
    opened.load_index_cached(ctx)?;
    let (file, node) =
        image::find_file_node(&opened.repo, &id, path.as_deref()).map_err(image_error)?;
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    let out = Path::new(target).join(String::from_utf8_lossy(&node.name).as_ref());
    ctx.printer.print(&format!(
        "restoring {file} of snapshot {} to {}",
        id.short(),
        out.display()
    ));
    let stats =
        image::restore_node(&opened.repo, &node, &out, format, ctx.threads).map_err(image_error)?;
    ctx.printer.verbose(&format!(
        "wrote {} of {}",
        format_bytes(stats.bytes_written),
        format_bytes(stats.size)
    ));
    Ok(())
}

/// `dump --format`: one image file to `--target`.
pub fn run_dump(ctx: &Context, args: &DumpArgs, format: &str) -> anyhow::Result<()> {
    let format: RestoreFormat = format.parse().map_err(|e: ImageError| fatal(e))?;
    let [snapshot_arg, path] = args.args.as_slice() else {
        return Err(fatal("no file and no snapshot ID specified").into());
    };
    let Some(target) = args.target.as_deref() else {
        return Err(fatal("dump --format needs --target FILE").into());
    };
    let opened = open_repository(ctx, LockMode::Shared)?;
    let (id_arg, _) = split_snapshot_arg(snapshot_arg);
    let id = find_snapshot(&opened, id_arg)?;
    opened.load_index_cached(ctx)?;
    let (_, node) = image::find_file_node(&opened.repo, &id, Some(path)).map_err(image_error)?;
    image::restore_node(&opened.repo, &node, Path::new(target), format, ctx.threads)
        .map_err(image_error)?;
    Ok(())
}

/// `restore-chain`.
pub fn run_restore_chain(ctx: &Context, args: &RestoreChainArgs) -> anyhow::Result<()> {
    let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) else {
        return Err(fatal("please specify the image to write (--target)").into());
    };
    if args.snapshots.is_empty() {
        return Err(fatal("no snapshot ID specified").into());
    }
    let format = match &args.format {
        Some(f) => f.parse().map_err(|e: ImageError| fatal(e))?,
        None if target.ends_with(".qcow2") => RestoreFormat::Qcow2,
        None => RestoreFormat::Raw,
    };
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
    let stats = image::restore_chain(
        &opened.repo,
        &layers,
        Path::new(target),
        format,
        args.work_dir.as_deref().map(Path::new),
        ctx.threads,
    )
    .map_err(image_error)?;
    ctx.printer.print(&format!(
        "wrote {target}: {} virtual, {} data from {} layers",
        format_bytes(stats.size),
        format_bytes(stats.bytes_written),
        layers.len()
    ));
    Ok(())
}
