//! Restoring image files: a sparse raw file or a fresh qcow2 image, and the
//! flattening of an OpenNebula increment chain (spec: qcow2 §4).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use restix_chunker::{is_all_zero, ZERO_CHUNK_ID};
use restix_qcow2::{DiskImage, ExtentKind, ImageFormat, Qcow2Image, Qcow2Writer, RawImage};
use restix_repo_format::{BlobType, Id, Node, NodeType, Tree};

use super::{ImageError, ImageProgress};
use crate::repository::{parallel_map, Repository};

/// Output format of an image restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreFormat {
    /// A sparse raw file (zero chunks become holes).
    #[default]
    Raw,
    /// A qcow2 v3 image; all-zero clusters stay unallocated.
    Qcow2,
}

impl FromStr for RestoreFormat {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(RestoreFormat::Raw),
            "qcow2" => Ok(RestoreFormat::Qcow2),
            other => Err(ImageError::InvalidArgument(format!(
                "unknown image format {other:?} (use raw or qcow2)"
            ))),
        }
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRestoreStats {
    /// Guest disk size.
    pub size: u64,
    /// Bytes of data written (holes and zero clusters not counted).
    pub bytes_written: u64,
    /// Zero chunks or ranges skipped.
    pub zero_chunks: u64,
}

/// Finds a regular file in a snapshot: at `path` (relative to the root, `/`
/// separated, a leading `/` allowed), or, without a path, the only regular
/// file of the snapshot. Returns its path and node.
pub fn find_file_node(
    repo: &Repository,
    snapshot: &Id,
    path: Option<&str>,
) -> Result<(String, Node), ImageError> {
    let snap = repo.load_snapshot(snapshot)?;
    let root = snap
        .tree
        .ok_or_else(|| ImageError::NotFound(format!("snapshot {snapshot} has no tree")))?;
    let mut tree = repo.load_tree(&root)?;
    match path {
        Some(path) => {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let Some((last, dirs)) = parts.split_last() else {
                return Err(ImageError::InvalidArgument(format!("empty path {path:?}")));
            };
            for dir in dirs {
                let subtree = tree
                    .find(dir.as_bytes())
                    .filter(|n| n.node_type == NodeType::Dir)
                    .and_then(|n| n.subtree)
                    .ok_or_else(|| not_found(snapshot, path))?;
                tree = repo.load_tree(&subtree)?;
            }
            let node = tree
                .find(last.as_bytes())
                .filter(|n| n.node_type == NodeType::File)
                .cloned()
                .ok_or_else(|| not_found(snapshot, path))?;
            Ok((format!("/{}", parts.join("/")), node))
        }
        None => {
            let mut found = Vec::new();
            collect_files(repo, &tree, String::new(), &mut found, 2)?;
            match found.len() {
                1 => Ok(found.remove(0)),
                0 => Err(ImageError::NotFound(format!(
                    "snapshot {snapshot} holds no regular file"
                ))),
                _ => Err(ImageError::InvalidArgument(format!(
                    "snapshot {snapshot} holds several files; name one (e.g. {}:{})",
                    snapshot.to_hex().get(..8).unwrap_or_default(),
                    found.first().map_or("", |(p, _)| p.as_str())
                ))),
            }
        }
    }
}

fn not_found(snapshot: &Id, path: &str) -> ImageError {
    ImageError::NotFound(format!("no file {path:?} in snapshot {snapshot}"))
}

/// Collects up to `limit` regular files below `tree`.
fn collect_files(
    repo: &Repository,
    tree: &Tree,
    prefix: String,
    out: &mut Vec<(String, Node)>,
    limit: usize,
) -> Result<(), ImageError> {
    for node in &tree.nodes {
        if out.len() >= limit {
            return Ok(());
        }
        let path = format!("{prefix}/{}", node.name_lossy());
        match node.node_type {
            NodeType::File => out.push((path, node.clone())),
            NodeType::Dir => {
                if let Some(subtree) = node.subtree {
                    let sub = repo.load_tree(&subtree)?;
                    collect_files(repo, &sub, path, out, limit)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where an image restore writes.
pub enum RestoreTarget<'a> {
    /// This file, created or truncated (sparse when raw).
    Path(&'a Path),
    /// A stream (standard output), written in order with holes as zeros;
    /// raw only (a qcow2 header is written last).
    Stream(&'a mut dyn Write),
}

/// How an image restore writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreSettings<'a> {
    /// Output format.
    pub format: RestoreFormat,
    /// Blob loaders (0 = number of CPUs).
    pub threads: usize,
    /// Counters for a progress display.
    pub progress: Option<&'a ImageProgress>,
    /// Folder for temporary files of [`restore_chain_with`] (default: the
    /// target's folder).
    pub work_dir: Option<&'a Path>,
}

enum Sink<'a> {
    Raw(File, PathBuf),
    Qcow2(Box<Qcow2Writer>),
    Stream {
        out: &'a mut dyn Write,
        position: u64,
        size: u64,
    },
}

impl<'a> Sink<'a> {
    fn open(
        target: RestoreTarget<'a>,
        size: u64,
        format: RestoreFormat,
    ) -> Result<Sink<'a>, ImageError> {
        match (target, format) {
            (RestoreTarget::Path(path), format) => Sink::create(path, size, format),
            (RestoreTarget::Stream(out), RestoreFormat::Raw) => Ok(Sink::Stream {
                out,
                position: 0,
                size,
            }),
            (RestoreTarget::Stream(_), RestoreFormat::Qcow2) => Err(ImageError::InvalidArgument(
                "a qcow2 image cannot be written to a stream: its header is written last".into(),
            )),
        }
    }

    fn create(target: &Path, size: u64, format: RestoreFormat) -> Result<Sink<'a>, ImageError> {
        match format {
            RestoreFormat::Raw => {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(target)
                    .map_err(|e| ImageError::io(target, e))?;
                // Holes for everything not written (sparse output).
                file.set_len(size).map_err(|e| ImageError::io(target, e))?;
                Ok(Sink::Raw(file, target.to_path_buf()))
            }
            RestoreFormat::Qcow2 => Ok(Sink::Qcow2(Box::new(Qcow2Writer::create(
                target,
                size,
                Qcow2Writer::DEFAULT_CLUSTER_SIZE,
            )?))),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        match self {
            Sink::Raw(file, path) => file
                .write_all_at(data, offset)
                .map_err(|e| ImageError::io(path.as_path(), e)),
            Sink::Qcow2(writer) => Ok(writer.write_at(offset, data)?),
            Sink::Stream { out, position, .. } => {
                Self::zeros_until(*out, position, offset)?;
                out.write_all(data).map_err(stream_error)?;
                *position += data.len() as u64;
                Ok(())
            }
        }
    }

    /// Writes zeros from `position` up to `offset` (a stream has no holes).
    fn zeros_until(out: &mut dyn Write, position: &mut u64, offset: u64) -> Result<(), ImageError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while *position < offset {
            let n = (offset - *position).min(ZEROS.len() as u64) as usize;
            out.write_all(&ZEROS[..n]).map_err(stream_error)?;
            *position += n as u64;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ImageError> {
        match self {
            Sink::Raw(file, path) => file.sync_all().map_err(|e| ImageError::io(path, e)),
            Sink::Qcow2(writer) => Ok(writer.finish()?),
            Sink::Stream {
                out,
                mut position,
                size,
            } => {
                Self::zeros_until(out, &mut position, size)?;
                out.flush().map_err(stream_error)
            }
        }
    }
}

fn stream_error(e: std::io::Error) -> ImageError {
    ImageError::io("standard output", e)
}

/// Restores the content of file `node` to `target` as a sparse raw file or a
/// qcow2 image (`threads` blob loaders, 0 = number of CPUs).
pub fn restore_node(
    repo: &Repository,
    node: &Node,
    target: &Path,
    format: RestoreFormat,
    threads: usize,
) -> Result<ImageRestoreStats, ImageError> {
    let settings = RestoreSettings {
        format,
        threads,
        ..RestoreSettings::default()
    };
    restore_node_with(repo, node, RestoreTarget::Path(target), &settings)
}

/// [`restore_node`] to a file or a stream, reporting progress.
pub fn restore_node_with(
    repo: &Repository,
    node: &Node,
    target: RestoreTarget<'_>,
    settings: &RestoreSettings<'_>,
) -> Result<ImageRestoreStats, ImageError> {
    let format = settings.format;
    let progress = settings.progress;
    let threads = match settings.threads {
        0 => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2),
        n => n,
    };
    let content = node.content.clone().unwrap_or_default();
    // Offsets from the index (plaintext lengths).
    let mut offsets = Vec::with_capacity(content.len());
    let mut end = 0u64;
    // Blobs known to be zeros without loading them: restic's zero chunk and
    // the zero block of each block size the content uses (spec: image mode's
    // fixed blocks).
    let mut zero_ids: HashSet<Id> = HashSet::from([Id(ZERO_CHUNK_ID)]);
    let mut block_sizes: HashSet<u64> = HashSet::new();
    for id in &content {
        let location = repo
            .lookup(BlobType::Data, id)
            .ok_or_else(|| ImageError::NotFound(format!("data blob {id} is not in the index")))?;
        offsets.push(end);
        let length = u64::from(location.plaintext_len());
        if super::valid_block_size(length) && block_sizes.insert(length) {
            zero_ids.insert(super::zero_block_id(length));
        }
        end += length;
    }
    if end != node.size {
        return Err(ImageError::InvalidArgument(format!(
            "file content holds {end} bytes but the node says {}",
            node.size
        )));
    }
    if let Some(p) = progress {
        p.add_total(node.size);
    }
    let mut sink = Sink::open(target, node.size, format)?;
    let mut stats = ImageRestoreStats {
        size: node.size,
        ..ImageRestoreStats::default()
    };
    let items: Vec<(u64, Id)> = offsets.into_iter().zip(content).collect();
    let mut done_up_to = 0u64;
    // Batches of about 16 MiB per thread (block-sized blobs are small; one
    // batch per few blobs would spend the time starting threads).
    let batch_bytes = 16u64 << 20;
    let mut batches: Vec<&[(u64, Id)]> = Vec::new();
    let mut rest = items.as_slice();
    while !rest.is_empty() {
        let first = rest.first().map_or(0, |(offset, _)| *offset);
        let limit = first.saturating_add(batch_bytes.saturating_mul(threads.max(1) as u64));
        let n = rest
            .iter()
            .position(|(offset, _)| *offset >= limit)
            .unwrap_or(rest.len())
            .max(threads * 2)
            .min(rest.len());
        let (batch, tail) = rest.split_at(n);
        batches.push(batch);
        rest = tail;
    }
    for batch in batches {
        let loaded = parallel_map(batch, threads, |(offset, id)| {
            if zero_ids.contains(id) {
                return Ok((*offset, None));
            }
            let data = repo.load_blob(BlobType::Data, id)?;
            Ok::<_, ImageError>((*offset, (!is_all_zero(&data)).then_some(data)))
        });
        let batch_end = batch.last().map_or(0, |(offset, _)| *offset);
        for result in loaded {
            match result? {
                (offset, Some(data)) => {
                    sink.write(offset, &data)?;
                    stats.bytes_written += data.len() as u64;
                }
                (_, None) => stats.zero_chunks += 1,
            }
        }
        if let Some(p) = progress {
            // Up to the start of the next batch (or the end of the file).
            let next = rest_start(&items, batch_end).unwrap_or(node.size);
            p.add_done(next.saturating_sub(done_up_to));
            done_up_to = next;
        }
    }
    sink.finish()?;
    Ok(stats)
}

/// The offset of the first item after the one at `offset`.
fn rest_start(items: &[(u64, Id)], offset: u64) -> Option<u64> {
    let i = items.partition_point(|(o, _)| *o <= offset);
    items.get(i).map(|(o, _)| *o)
}

/// Bytes copied per read when writing a guest view.
const COPY_BLOCK: u64 = 4 << 20;

/// Writes the guest view of `image` to `target` (sparse raw or qcow2),
/// reading only its data extents.
pub fn write_guest_view(
    image: &dyn DiskImage,
    target: &Path,
    format: RestoreFormat,
) -> Result<ImageRestoreStats, ImageError> {
    write_guest_view_with(image, RestoreTarget::Path(target), format, None)
}

/// [`write_guest_view`] to a file or a stream, reporting progress.
pub fn write_guest_view_with(
    image: &dyn DiskImage,
    target: RestoreTarget<'_>,
    format: RestoreFormat,
    progress: Option<&ImageProgress>,
) -> Result<ImageRestoreStats, ImageError> {
    let size = image.virtual_size();
    if let Some(p) = progress {
        p.add_total(size);
    }
    let mut sink = Sink::open(target, size, format)?;
    let mut stats = ImageRestoreStats {
        size,
        ..ImageRestoreStats::default()
    };
    let extents = if size == 0 {
        Vec::new()
    } else {
        image.extents(0, size)?
    };
    let mut buf = Vec::new();
    for extent in extents {
        if extent.kind != ExtentKind::Data {
            stats.zero_chunks += 1;
            if let Some(p) = progress {
                p.add_done(extent.length);
            }
            continue;
        }
        let mut pos = extent.offset;
        while pos < extent.end() {
            let n = COPY_BLOCK.min(extent.end() - pos);
            buf.resize(n as usize, 0);
            image.read_at(pos, &mut buf)?;
            if !is_all_zero(&buf) {
                sink.write(pos, &buf)?;
                stats.bytes_written += n;
            }
            if let Some(p) = progress {
                p.add_done(n);
            }
            pos += n;
        }
    }
    sink.finish()?;
    Ok(stats)
}

/// One layer of a chain to flatten: a snapshot, and the file in it (`None`:
/// the snapshot's only regular file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayer {
    /// The snapshot.
    pub snapshot: Id,
    /// The file's path in the snapshot.
    pub path: Option<String>,
}

/// Flattens an OpenNebula backup chain into one image at `target`, without
/// qemu-img (spec: qcow2 §4): `layers` are base first (the full backup
/// `disk.N.0`, then the increments `disk.N.1`, `disk.N.2`, …). Each layer's
/// file is restored into a temporary folder inside `work_dir` (default: the
/// target's folder); the base may be a qcow2 file or a raw guest view (an image
/// mode snapshot), the increments must be qcow2 overlays. Their recorded
/// backing names are ignored (they may be NBD sockets or empty).
pub fn restore_chain(
    repo: &Repository,
    layers: &[ChainLayer],
    target: &Path,
    format: RestoreFormat,
    work_dir: Option<&Path>,
    threads: usize,
) -> Result<ImageRestoreStats, ImageError> {
    let settings = RestoreSettings {
        format,
        threads,
        progress: None,
        work_dir,
    };
    restore_chain_with(repo, layers, target, &settings)
}

/// [`restore_chain`] reporting progress. Errors about a layer name its
/// snapshot and file, not the temporary file it was restored to.
pub fn restore_chain_with(
    repo: &Repository,
    layers: &[ChainLayer],
    target: &Path,
    settings: &RestoreSettings<'_>,
) -> Result<ImageRestoreStats, ImageError> {
    if layers.is_empty() {
        return Err(ImageError::InvalidArgument("no layers given".into()));
    }
    let parent = settings
        .work_dir
        .map(Path::to_path_buf)
        .or_else(|| target.parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let temp = parent.join(format!(".restix-chain-{}", std::process::id()));
    fs::create_dir_all(&temp).map_err(|e| ImageError::io(&temp, e))?;
    // Each temporary file and what it holds, for error messages.
    let mut labels: Vec<(PathBuf, String)> = Vec::with_capacity(layers.len());
    let result = (|| {
        let mut found = Vec::with_capacity(layers.len());
        for layer in layers {
            let (file, node) = find_file_node(repo, &layer.snapshot, layer.path.as_deref())?;
            if let Some(p) = settings.progress {
                p.add_total(node.size);
            }
            found.push((file, node));
        }
        let mut files = Vec::with_capacity(layers.len());
        for (i, (layer, (file, node))) in layers.iter().zip(&found).enumerate() {
            let path = temp.join(format!("layer-{i}"));
            labels.push((
                path.clone(),
                format!("{file} of snapshot {}", layer.snapshot.short()),
            ));
            let layer_settings = RestoreSettings {
                format: RestoreFormat::Raw,
                progress: None,
                ..*settings
            };
            restore_node_with(repo, node, RestoreTarget::Path(&path), &layer_settings)?;
            if let Some(p) = settings.progress {
                p.add_done(node.size);
            }
            let format = if is_qcow2(&path)? {
                ImageFormat::Qcow2
            } else {
                ImageFormat::Raw
            };
            files.push((path, format));
        }
        let image: Box<dyn DiskImage> = match files.as_slice() {
            [(path, ImageFormat::Raw)] => Box::new(RawImage::open(path)?),
            _ => Box::new(Qcow2Image::open_chain_with_formats(&files)?),
        };
        write_guest_view_with(
            image.as_ref(),
            RestoreTarget::Path(target),
            settings.format,
            settings.progress,
        )
    })();
    let _ = fs::remove_dir_all(&temp);
    result.map_err(|e| name_layers(e, &labels))
}

/// An error that mentions a temporary layer file, reworded to name the
/// snapshot and file it holds instead.
fn name_layers(error: ImageError, labels: &[(PathBuf, String)]) -> ImageError {
    let text = error.to_string();
    if matches!(error, ImageError::Repo(_)) || !labels.iter().any(|(p, _)| mentions(&text, p)) {
        return error;
    }
    let mut text = text;
    // Longest paths first: layer-1 must not eat layer-10's prefix.
    let mut sorted: Vec<&(PathBuf, String)> = labels.iter().collect();
    sorted.sort_by_key(|(p, _)| std::cmp::Reverse(p.as_os_str().len()));
    for (path, label) in sorted {
        text = text.replace(&path.display().to_string(), label);
    }
    ImageError::Chain(format!("cannot flatten the chain: {text}"))
}

fn mentions(text: &str, path: &Path) -> bool {
    text.contains(&path.display().to_string())
}

fn is_qcow2(path: &Path) -> Result<bool, ImageError> {
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut magic = [0u8; 4];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) => Ok(magic == *b"QFI\xfb"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(ImageError::io(path, e)),
    }
}
