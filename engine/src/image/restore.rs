//! Restoring image files: a sparse raw file or a fresh qcow2 image, and the
//! flattening of an OpenNebula increment chain (spec: qcow2 §4).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use restix_chunker::{is_all_zero, ZERO_CHUNK_ID};
use restix_qcow2::{DiskImage, ExtentKind, ImageFormat, Qcow2Image, Qcow2Writer, RawImage};
use restix_repo_format::{BlobType, Id, Node, NodeType, Tree};

use super::ImageError;
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

enum Sink {
    Raw(File, PathBuf),
    Qcow2(Box<Qcow2Writer>),
}

impl Sink {
    fn create(target: &Path, size: u64, format: RestoreFormat) -> Result<Sink, ImageError> {
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
        }
    }

    fn finish(self) -> Result<(), ImageError> {
        match self {
            Sink::Raw(file, path) => file.sync_all().map_err(|e| ImageError::io(path, e)),
            Sink::Qcow2(writer) => Ok(writer.finish()?),
        }
    }
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
    let threads = match threads {
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
    let mut sink = Sink::create(target, node.size, format)?;
    let mut stats = ImageRestoreStats {
        size: node.size,
        ..ImageRestoreStats::default()
    };
    let items: Vec<(u64, Id)> = offsets.into_iter().zip(content).collect();
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
        for result in loaded {
            match result? {
                (offset, Some(data)) => {
                    sink.write(offset, &data)?;
                    stats.bytes_written += data.len() as u64;
                }
                (_, None) => stats.zero_chunks += 1,
            }
        }
    }
    sink.finish()?;
    Ok(stats)
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
    let size = image.virtual_size();
    let mut sink = Sink::create(target, size, format)?;
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
    if layers.is_empty() {
        return Err(ImageError::InvalidArgument("no layers given".into()));
    }
    let parent = work_dir
        .map(Path::to_path_buf)
        .or_else(|| target.parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let temp = parent.join(format!(".restix-chain-{}", std::process::id()));
    fs::create_dir_all(&temp).map_err(|e| ImageError::io(&temp, e))?;
    let result = (|| {
        let mut files = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let (_, node) = find_file_node(repo, &layer.snapshot, layer.path.as_deref())?;
            let path = temp.join(format!("layer-{i}"));
            restore_node(repo, &node, &path, RestoreFormat::Raw, threads)?;
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
        write_guest_view(image.as_ref(), target, format)
    })();
    let _ = fs::remove_dir_all(&temp);
    result
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
