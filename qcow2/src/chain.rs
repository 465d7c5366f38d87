//! A qcow2 image with its backing chain (spec: qcow2 §1.10).
//!
//! Layers are kept top first. A guest range resolves in the top layer; ranges it
//! leaves unallocated resolve in the next layer down, and so on. Zero clusters
//! stop the walk, and a range past a shorter layer's end reads as zeros.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::bitmap::{self, BitmapInfo};
use crate::error::{Error, Result};
use crate::extent::{check_range, DiskImage, Extent, ExtentKind, ExtentList};
use crate::format::ImageFormat;
use crate::header::{Qcow2Header, QCOW2_MAGIC};
use crate::identity::LayerIdentity;
use crate::layer::{Mapping, Piece, Qcow2Layer};
use crate::raw::RawImage;

/// More layers than this means a loop in the stored backing names (or an absurd
/// chain); QEMU has no fixed limit, OpenNebula chains are far shorter.
const MAX_CHAIN_DEPTH: usize = 256;

enum Layer {
    Qcow2(Box<Qcow2Layer>),
    Raw(RawImage),
}

#[derive(Clone, Copy)]
enum LayerRef<'a> {
    Qcow2(&'a Qcow2Layer),
    Raw(&'a RawImage),
}

impl LayerRef<'_> {
    fn virtual_size(&self) -> u64 {
        match self {
            LayerRef::Qcow2(l) => l.virtual_size(),
            LayerRef::Raw(r) => r.virtual_size(),
        }
    }
}

impl Layer {
    fn path(&self) -> &Path {
        match self {
            Layer::Qcow2(l) => l.path(),
            Layer::Raw(r) => r.path(),
        }
    }
}

/// A qcow2 image and its backing layers, read as one guest disk.
///
/// Cheap to share between threads (`&self` everywhere; `Send + Sync`).
pub struct Qcow2Image {
    /// The top layer (index 0 in `resolve`).
    top: Box<Qcow2Layer>,
    /// Its backing layers, nearest first (index 1.. in `resolve`).
    backing: Vec<Layer>,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("layers", &self.layer_paths())
            .finish()
    }
}

impl Qcow2Image {
    /// Opens `path` and follows the backing file names stored in each layer.
    ///
    /// A relative backing name resolves against the directory of the image that
    /// names it (as QEMU does), not the current directory. The backing format
    /// comes from the backing-format extension (`qcow2` or `raw`); without one
    /// the file is probed. Protocol names (NBD URIs such as OpenNebula's CBT
    /// increments record, `json:` options) are refused with
    /// [`Error::UnsupportedBacking`]: name the layers with [`Qcow2Image::open_chain`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let mut layers = Vec::new();
        let mut next = Some((path.as_ref().to_path_buf(), ImageFormat::Qcow2));
        while let Some((path, format)) = next.take() {
            if layers.len() >= MAX_CHAIN_DEPTH {
                return Err(Error::InvalidChain {
                    reason: format!(
                        "backing chain deeper than {MAX_CHAIN_DEPTH} layers (a loop?) at {}",
                        path.display()
                    ),
                });
            }
            match format {
                ImageFormat::Raw => layers.push(Layer::Raw(RawImage::open(&path)?)),
                ImageFormat::Qcow2 => {
                    let layer = Qcow2Layer::open(&path)?;
                    next = backing_of(&layer)?;
                    layers.push(Layer::Qcow2(Box::new(layer)));
                }
            }
        }
        Self::from_layers(layers)
    }

    /// Opens an explicit chain of qcow2 files, **base first** (`[full, inc1, inc2]`,
    /// the order of OpenNebula's `disk.N.0, disk.N.1, ...`). The backing names
    /// stored in the files are ignored, so increments whose header records an NBD
    /// socket or no backing file at all still read correctly.
    pub fn open_chain(layers: &[PathBuf]) -> Result<Self> {
        let with_formats: Vec<(PathBuf, ImageFormat)> = layers
            .iter()
            .map(|path| (path.clone(), ImageFormat::Qcow2))
            .collect();
        Self::open_chain_with_formats(&with_formats)
    }

    /// Like [`Qcow2Image::open_chain`] (base first), with a format for each layer.
    /// Only the base may be raw; the top must be qcow2.
    pub fn open_chain_with_formats(layers: &[(PathBuf, ImageFormat)]) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::InvalidChain {
                reason: "no layers given".into(),
            });
        }
        if layers.len() > MAX_CHAIN_DEPTH {
            return Err(Error::InvalidChain {
                reason: format!("more than {MAX_CHAIN_DEPTH} layers"),
            });
        }
        let mut opened = Vec::with_capacity(layers.len());
        for (index, (path, format)) in layers.iter().enumerate().rev() {
            let layer = match format {
                ImageFormat::Qcow2 => Layer::Qcow2(Box::new(Qcow2Layer::open(path)?)),
                ImageFormat::Raw if index == 0 && layers.len() > 1 => {
                    Layer::Raw(RawImage::open(path)?)
                }
                ImageFormat::Raw => {
                    return Err(Error::InvalidChain {
                        reason: format!(
                            "{}: only the base of a chain may be raw, and the top must be qcow2",
                            path.display()
                        ),
                    })
                }
            };
            opened.push(layer);
        }
        Self::from_layers(opened)
    }

    fn top(&self) -> &Qcow2Layer {
        &self.top
    }

    /// Layer `index` counting from the top (0 = top).
    fn layer(&self, index: usize) -> Option<LayerRef<'_>> {
        match index.checked_sub(1) {
            None => Some(LayerRef::Qcow2(&self.top)),
            Some(i) => self.backing.get(i).map(|layer| match layer {
                Layer::Qcow2(q) => LayerRef::Qcow2(q),
                Layer::Raw(r) => LayerRef::Raw(r),
            }),
        }
    }

    fn layer_count(&self) -> usize {
        self.backing.len() + 1
    }

    fn from_layers(mut layers: Vec<Layer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::InvalidChain {
                reason: "no layers given".into(),
            });
        }
        match layers.remove(0) {
            Layer::Qcow2(top) => Ok(Qcow2Image {
                top,
                backing: layers,
            }),
            Layer::Raw(raw) => Err(Error::InvalidChain {
                reason: format!("{}: the top layer must be qcow2", raw.path().display()),
            }),
        }
    }

    /// The top layer's header (version, cluster size, features, stored backing name).
    pub fn header(&self) -> &Qcow2Header {
        self.top().header()
    }

    /// Whether the top layer has the dirty bit set (lazy refcounts not flushed,
    /// e.g. after a crash). Such images read fine; `qemu-img check` reports leaks.
    pub fn is_dirty(&self) -> bool {
        self.header().is_dirty()
    }

    /// Number of internal snapshots in the top layer. The guest view is always the
    /// current state; snapshots are not backed up.
    pub fn snapshot_count(&self) -> u32 {
        self.header().nb_snapshots
    }

    /// The layer files, **base first** (the order [`Qcow2Image::open_chain`] takes).
    pub fn layer_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .backing
            .iter()
            .rev()
            .map(|l| l.path().to_path_buf())
            .collect();
        paths.push(self.top.path().to_path_buf());
        paths
    }

    /// The identity of every layer, **base first** (see [`LayerIdentity`]).
    pub fn layer_identities(&self) -> Result<Vec<LayerIdentity>> {
        let mut out = Vec::with_capacity(self.layer_count());
        for layer in self.backing.iter().rev() {
            out.push(match layer {
                Layer::Qcow2(q) => q.identity()?,
                Layer::Raw(r) => r.identity()?,
            });
        }
        out.push(self.top.identity()?);
        Ok(out)
    }

    /// What the **top layer alone** holds, covering `[0, virtual_size)`: `Data`
    /// where it stores (compressed or plain) clusters, `Zero` where it has zero
    /// flags, `Unallocated` where it falls through to its backing layers.
    ///
    /// For an OpenNebula increment, `Data` and `Zero` together are what it changed;
    /// a `Zero` range must be restored as zeros, not skipped.
    pub fn allocated_in_layer(&self) -> Result<Vec<Extent>> {
        let top = self.top();
        let mut out = ExtentList::default();
        top.map(0, top.virtual_size(), &mut |m| {
            out.push(m.guest, m.len, piece_kind(m.piece));
            Ok(())
        })?;
        Ok(out.into_vec())
    }

    /// The persistent dirty bitmaps of the top layer (spec: qcow2 §1.11).
    pub fn bitmaps(&self) -> Result<Vec<BitmapInfo>> {
        bitmap::list(self.top())
    }

    /// The guest ranges marked dirty in the named bitmap of the top layer, merged
    /// and in order. Refuses bitmaps that are in use or inconsistent
    /// ([`Error::BitmapInconsistent`]): those need a full backup.
    pub fn dirty_ranges(&self, name: &str) -> Result<Vec<std::ops::Range<u64>>> {
        bitmap::dirty_ranges(self.top(), name)
    }

    /// Resolves `[offset, offset+len)` from layer `index` down, calling `sink`
    /// with the layer that decides each run.
    fn resolve(
        &self,
        index: usize,
        offset: u64,
        len: u64,
        for_read: bool,
        sink: &mut dyn FnMut(usize, Mapping) -> Result<()>,
    ) -> Result<()> {
        let Some(layer) = self.layer(index) else {
            return sink(
                index,
                Mapping {
                    guest: offset,
                    len,
                    piece: Piece::Unallocated,
                },
            );
        };
        let size = layer.virtual_size();
        let inside = len.min(size.saturating_sub(offset));
        if inside > 0 {
            let has_lower = index + 1 < self.layer_count();
            match layer {
                LayerRef::Qcow2(q) => q.map(offset, inside, &mut |m| {
                    if m.piece == Piece::Unallocated && has_lower {
                        self.resolve(index + 1, m.guest, m.len, for_read, sink)
                    } else {
                        sink(index, m)
                    }
                })?,
                LayerRef::Raw(_) if for_read => sink(
                    index,
                    Mapping {
                        guest: offset,
                        len: inside,
                        piece: Piece::Data { host: offset },
                    },
                )?,
                LayerRef::Raw(raw) => {
                    for extent in raw.extents(offset, inside)? {
                        let piece = match extent.kind {
                            ExtentKind::Data => Piece::Data {
                                host: extent.offset,
                            },
                            ExtentKind::Zero => Piece::Zero,
                            ExtentKind::Unallocated => Piece::Unallocated,
                        };
                        sink(
                            index,
                            Mapping {
                                guest: extent.offset,
                                len: extent.length,
                                piece,
                            },
                        )?;
                    }
                }
            }
        }
        if inside < len {
            // Past the end of a shorter backing layer: zeros, and nothing further
            // down is consulted (spec: qcow2 §1.3). QEMU reports it as not present.
            sink(
                index,
                Mapping {
                    guest: offset + inside,
                    len: len - inside,
                    piece: Piece::Unallocated,
                },
            )?;
        }
        Ok(())
    }
}

fn piece_kind(piece: Piece) -> ExtentKind {
    match piece {
        Piece::Data { .. } | Piece::Compressed { .. } => ExtentKind::Data,
        Piece::Zero => ExtentKind::Zero,
        Piece::Unallocated => ExtentKind::Unallocated,
    }
}

impl DiskImage for Qcow2Image {
    fn virtual_size(&self) -> u64 {
        self.top().virtual_size()
    }

    fn extents(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        check_range(offset, length, self.virtual_size())?;
        let mut out = ExtentList::default();
        self.resolve(0, offset, length, false, &mut |_, m| {
            out.push(m.guest, m.len, piece_kind(m.piece));
            Ok(())
        })?;
        Ok(out.into_vec())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.virtual_size())?;
        self.resolve(0, offset, buf.len() as u64, true, &mut |index, m| {
            // The mapping lies inside the request, so these conversions and slices
            // cannot fail; errors are reported rather than trusted.
            let start = usize::try_from(m.guest - offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(m.len).unwrap_or(usize::MAX));
            let Some(dest) = buf.get_mut(start..end) else {
                return Err(Error::InvalidChain {
                    reason: "internal: mapping outside the request".into(),
                });
            };
            match (m.piece, self.layer(index)) {
                (Piece::Data { host }, Some(LayerRef::Qcow2(layer))) => layer.read_data(host, dest),
                (Piece::Data { host }, Some(LayerRef::Raw(raw))) => raw.read_at(host, dest),
                (Piece::Compressed { entry }, Some(LayerRef::Qcow2(layer))) => {
                    let within = m.guest % layer.header().cluster_size();
                    layer.read_compressed(entry, within, dest)
                }
                _ => {
                    dest.fill(0);
                    Ok(())
                }
            }
        })
    }
}

/// The backing layer a qcow2 layer names, resolved against its directory.
fn backing_of(layer: &Qcow2Layer) -> Result<Option<(PathBuf, ImageFormat)>> {
    let header = layer.header();
    let Some(name) = header.backing_file.as_deref() else {
        return Ok(None);
    };
    let unsupported = |reason: &str| Error::UnsupportedBacking {
        path: layer.path().to_path_buf(),
        backing: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Ok(None);
    }
    if name.starts_with("json:") || name.contains("://") || name.starts_with("nbd:") {
        return Err(unsupported(
            "not a file name (protocol or json: options); open the chain explicitly",
        ));
    }
    let stored = Path::new(name.strip_prefix("file:").unwrap_or(name));
    let path = if stored.is_absolute() {
        stored.to_path_buf()
    } else {
        // Relative names resolve against the overlay's directory (spec: qcow2 §1.10).
        layer
            .path()
            .parent()
            .map(|dir| dir.join(stored))
            .unwrap_or_else(|| stored.to_path_buf())
    };
    let format = match header.backing_format.as_deref() {
        Some("qcow2") => ImageFormat::Qcow2,
        Some("raw") | Some("file") | Some("host_device") => ImageFormat::Raw,
        Some(other) => {
            return Err(unsupported(&format!(
                "unsupported backing format {other:?}"
            )))
        }
        None => probe_format(&path)?,
    };
    Ok(Some((path, format)))
}

/// qcow2 if the file starts with the qcow2 magic, else raw.
pub(crate) fn probe_format(path: &Path) -> Result<ImageFormat> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) if u32::from_be_bytes(magic) == QCOW2_MAGIC => Ok(ImageFormat::Qcow2),
        Ok(()) => Ok(ImageFormat::Raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(ImageFormat::Raw),
        Err(e) => Err(Error::io(path, e)),
    }
}
