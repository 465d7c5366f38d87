//! Provenance: what an image snapshot records about the disk it read, and the
//! checks a changed-block incremental makes before it trusts a parent.
//!
//! An incremental reuses the parent's blobs for every block its change source
//! (a qcow2 overlay's clusters, a dirty bitmap, a block-hash cache) calls
//! unchanged, without reading them. That is right only if the change source
//! started at exactly the disk the parent holds. Nothing in qcow2 says so
//! (bitmaps have no time stamp or UUID), so every image snapshot records an
//! [`ImageRecord`] and [`judge`] compares it with the disk now:
//!
//! - **Where it is kept**: in the image file's node, as the extended
//!   attribute [`RECORD_XATTR`] (compact JSON, at most [`MAX_RECORD_BYTES`]).
//!   Tree blobs are what restic checks, copies verbatim (`restic copy`
//!   re-encodes only the snapshot JSON, so unknown snapshot fields would be
//!   lost there) and restores (as a `user.` attribute on the restored file,
//!   which restic skips where the file system has none). Tags would have
//!   split `forget --group-by tags` groups and shown up in every listing; a
//!   separate blob would need a second file in the tree, which restic would
//!   restore beside the disk.
//! - **The image**: its absolute path (as restic records paths), virtual
//!   size, format, device and inode, and every layer of its chain (base
//!   first) with an identity digest ([`restix_qcow2::LayerIdentity`]: length,
//!   modification time, header layout and L1 table).
//! - **Its bitmaps**: name, granularity, enabled, and the dirty set at that
//!   time (every run when there are few, else an even sample, plus the dirty
//!   byte count). Bits only grow until a bitmap is cleared, so a bitmap that
//!   no longer holds what it held then was cleared or recreated since.
//!
//! [`judge`] says whether the parent's record vouches for the change source
//! ([`Verdict::Vouched`]), whether there is nothing to check against
//! ([`Verdict::Unvouched`]: a parent written by an older restix, or changes
//! handed in by a caller), or refuses. Either way the backup then verifies by
//! content (`verify`): every unchanged block that reads as zeros now must be
//! a zero blob in the parent, and a spread-out sample of the others is read
//! and hashed (a few blocks when vouched, many when not).

use std::ops::Range;
use std::path::Path;

use restix_qcow2::{ImageFormat, LayerIdentity, Qcow2Image, RawImage};
use restix_repo_format::{ExtendedAttribute, Node};
use serde::{Deserialize, Serialize};

use super::ImageError;

/// Name of the extended attribute that holds an image node's record.
pub const RECORD_XATTR: &str = "user.restix.image";
/// Format version of [`ImageRecord`].
pub const RECORD_VERSION: u32 = 1;
/// Largest encoded record: one ext4 block holds all of a file's extended
/// attributes, and restic restores them onto the restored file.
pub const MAX_RECORD_BYTES: usize = 3072;
/// Dirty runs recorded per bitmap at most (an even sample beyond that).
const MAX_BITMAP_RUNS: usize = 32;

/// What an image snapshot records about the disk it read (see the module
/// notes); stored as [`RECORD_XATTR`] on the image file's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// Absolute path of the image, as restic records paths.
    pub path: String,
    /// Guest disk size.
    pub size: u64,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Device and inode of the image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<[u64; 2]>,
    /// Digest of the layer identities, base first (hex).
    pub chain: String,
    /// The layers, base first; lower ones are left out when the record would
    /// be too large (`chain` still covers them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
    /// The top layer's persistent dirty bitmaps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bitmaps: Vec<BitmapRecord>,
}

/// One layer of a recorded chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Absolute path.
    pub path: String,
    /// [`LayerIdentity::digest`], hex.
    pub id: String,
}

/// One persistent dirty bitmap as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitmapRecord {
    /// Bitmap name.
    pub name: String,
    /// Guest bytes per bit.
    pub granularity: u64,
    /// Whether it tracked writes.
    pub enabled: bool,
    /// Whether it was in use (its bits unknown).
    #[serde(default, skip_serializing_if = "is_false")]
    pub in_use: bool,
    /// Dirty guest bytes.
    pub dirty: u64,
    /// Dirty runs `[offset, length]`: all of them when `all`, else a sample.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<[u64; 2]>,
    /// Whether `runs` lists every dirty run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One persistent bitmap of the image now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapFacts {
    /// Bitmap name.
    pub name: String,
    /// Guest bytes per bit.
    pub granularity: u64,
    /// Whether it tracks writes.
    pub enabled: bool,
    /// Whether QEMU marked it in use (or the bitmaps are inconsistent).
    pub in_use: bool,
    /// Its dirty ranges, when it can be read.
    pub dirty: Option<Vec<Range<u64>>>,
}

/// A full description of the image being backed up: the source of the
/// [`ImageRecord`] its snapshot stores, and what [`judge`] compares with the
/// parent's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// Absolute path of the image (`--image`).
    pub path: String,
    /// Guest disk size.
    pub size: u64,
    /// Format of the top layer.
    pub format: ImageFormat,
    /// Device and inode of the image file.
    pub file: Option<[u64; 2]>,
    /// Layer paths and identity digests, base first.
    pub layers: Vec<(String, [u8; 16])>,
    /// The top layer's bitmaps.
    pub bitmaps: Vec<BitmapFacts>,
    /// What the top layer holds (data and zero clusters), when it has backing
    /// layers: exactly what it changed on top of them.
    pub top_changes: Option<Vec<Range<u64>>>,
}

fn absolute(path: &Path) -> String {
    crate::archiver::absolute_path(path)
        .to_string_lossy()
        .into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest of a chain of layer identities, base first.
pub fn chain_digest<'a>(ids: impl IntoIterator<Item = &'a [u8; 16]>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"restix chain 1\0");
    for id in ids {
        hasher.update(id);
    }
    hex(&hasher.finalize().as_bytes()[..16])
}

impl ImageFacts {
    /// Describes a qcow2 image (with its chain) opened from `path`.
    pub fn of_qcow2(path: &Path, image: &Qcow2Image) -> Result<Self, ImageError> {
        use restix_qcow2::DiskImage;
        let identities = image.layer_identities()?;
        let top = identities.last();
        let file = top.map(|t| [t.device, t.inode]);
        let layers = identities.iter().map(layer_facts).collect();
        // A bitmap that cannot be read is recorded as unusable (a backup
        // that asks for it fails with the reader's error); it must not fail
        // a backup that does not use it.
        let mut bitmaps = Vec::new();
        for info in image.bitmaps().unwrap_or_default() {
            let dirty = if info.consistent {
                image.dirty_ranges(&info.name).ok().map(super::merge_ranges)
            } else {
                None
            };
            bitmaps.push(BitmapFacts {
                name: info.name.clone(),
                granularity: info.granularity,
                enabled: info.enabled,
                in_use: dirty.is_none(),
                dirty,
            });
        }
        let top_changes = if identities.len() > 1 {
            Some(super::changed_ranges_in_top_layer(image)?)
        } else {
            None
        };
        Ok(ImageFacts {
            path: absolute(path),
            size: image.virtual_size(),
            format: ImageFormat::Qcow2,
            file,
            layers,
            bitmaps,
            top_changes,
        })
    }

    /// Describes a raw image or block device opened from `path`.
    pub fn of_raw(path: &Path, image: &RawImage) -> Result<Self, ImageError> {
        use restix_qcow2::DiskImage;
        let identity = image.identity()?;
        Ok(ImageFacts {
            path: absolute(path),
            size: image.virtual_size(),
            format: ImageFormat::Raw,
            file: Some([identity.device, identity.inode]),
            layers: vec![layer_facts(&identity)],
            bitmaps: Vec::new(),
            top_changes: None,
        })
    }

    /// Digest of the whole chain.
    pub fn chain(&self) -> String {
        chain_digest(self.layers.iter().map(|(_, id)| id))
    }

    /// Digest of the backing layers (all but the top), if there are any.
    pub fn backing_chain(&self) -> Option<String> {
        let (_, below) = self.layers.split_last()?;
        (!below.is_empty()).then(|| chain_digest(below.iter().map(|(_, id)| id)))
    }

    /// The bitmap called `name`.
    pub fn bitmap(&self, name: &str) -> Option<&BitmapFacts> {
        self.bitmaps.iter().find(|b| b.name == name)
    }

    /// The record a snapshot of this image stores (at most
    /// [`MAX_RECORD_BYTES`] encoded: bitmap samples, then lower layers'
    /// entries, are thinned out until it fits).
    pub fn record(&self) -> ImageRecord {
        let mut record = ImageRecord {
            v: RECORD_VERSION,
            path: self.path.clone(),
            size: self.size,
            format: match self.format {
                ImageFormat::Qcow2 => "qcow2".into(),
                ImageFormat::Raw => "raw".into(),
            },
            file: self.file,
            chain: self.chain(),
            layers: self
                .layers
                .iter()
                .map(|(path, id)| LayerRecord {
                    path: path.clone(),
                    id: hex(id),
                })
                .collect(),
            bitmaps: self
                .bitmaps
                .iter()
                .map(|b| bitmap_record(b, MAX_BITMAP_RUNS))
                .collect(),
        };
        // Thin out until it fits: fewer bitmap runs, fewer layer entries,
        // fewer bitmaps (the chain digest and dirty counts always stay).
        for runs in [8, 2, 0] {
            if record.encode().len() <= MAX_RECORD_BYTES {
                return record;
            }
            record.bitmaps = self
                .bitmaps
                .iter()
                .map(|b| bitmap_record(b, runs))
                .collect();
        }
        while record.encode().len() > MAX_RECORD_BYTES && record.layers.len() > 1 {
            record.layers.remove(0);
        }
        while record.encode().len() > MAX_RECORD_BYTES && !record.bitmaps.is_empty() {
            record.bitmaps.pop();
        }
        record
    }
}

fn layer_facts(identity: &LayerIdentity) -> (String, [u8; 16]) {
    (absolute(&identity.path), identity.digest())
}

fn bitmap_record(bitmap: &BitmapFacts, max_runs: usize) -> BitmapRecord {
    let ranges = bitmap.dirty.as_deref().unwrap_or_default();
    let dirty = ranges.iter().map(|r| r.end - r.start).sum();
    let all = bitmap.dirty.is_some() && ranges.len() <= max_runs;
    let runs = if all {
        ranges.iter().map(|r| [r.start, r.end - r.start]).collect()
    } else {
        // An even sample: run k * n / max_runs.
        (0..max_runs.min(ranges.len()))
            .filter_map(|k| ranges.get(k * ranges.len() / max_runs))
            .map(|r| [r.start, r.end - r.start])
            .collect()
    };
    BitmapRecord {
        name: bitmap.name.clone(),
        granularity: bitmap.granularity,
        enabled: bitmap.enabled,
        in_use: bitmap.in_use,
        dirty,
        runs,
        all,
    }
}

impl ImageRecord {
    /// The attribute value: compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an attribute value.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let record: ImageRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.v != RECORD_VERSION {
            return Err(format!("record version {} (this restix knows 1)", record.v));
        }
        Ok(record)
    }

    /// The node's extended attribute holding this record.
    pub fn to_xattr(&self) -> ExtendedAttribute {
        ExtendedAttribute {
            name: RECORD_XATTR.as_bytes().to_vec(),
            value: Some(self.encode()),
        }
    }

    /// The path of the layer the parent read last (its top), for messages.
    fn top_path(&self) -> &str {
        self.layers
            .last()
            .map_or(self.path.as_str(), |l| l.path.as_str())
    }
}

/// The record a snapshot's image node carries, as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ParentRecord {
    /// No record: written by an older restix, or not by image mode.
    #[default]
    Absent,
    /// A record that could not be read.
    Unreadable(String),
    /// The record.
    Present(ImageRecord),
}

impl ParentRecord {
    /// The record of `node`.
    pub fn of_node(node: &Node) -> Self {
        let Some(attr) = node
            .extended_attributes
            .iter()
            .find(|a| a.name == RECORD_XATTR.as_bytes())
        else {
            return ParentRecord::Absent;
        };
        match ImageRecord::decode(attr.value.as_deref().unwrap_or_default()) {
            Ok(record) => ParentRecord::Present(record),
            Err(e) => ParentRecord::Unreadable(e),
        }
    }
}

/// Where an incremental's changed ranges come from, for [`judge`].
#[derive(Debug, Clone, Copy)]
pub enum ChangeSource<'a> {
    /// The top layer's own clusters (`--changes layer`).
    Layer,
    /// The persistent dirty bitmap `name` with these dirty ranges.
    Bitmap {
        /// Bitmap name.
        name: &'a str,
        /// Its dirty ranges now, merged.
        dirty: &'a [Range<u64>],
    },
    /// A block-hash cache bound to the parent (checked where it is loaded).
    HashCache,
    /// Ranges a caller handed in: nothing to check them against.
    Given,
}

/// Whether a parent may be used with a change source (see [`judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The parent's record vouches for the change source: why.
    Vouched(String),
    /// Nothing to check against (why): verify by content, thoroughly.
    Unvouched(String),
}

impl Verdict {
    /// The reason, for messages.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Vouched(r) | Verdict::Unvouched(r) => r,
        }
    }
}

/// The first offset of `inner` not covered by `outer` (both merged, sorted).
pub fn first_uncovered(outer: &[Range<u64>], inner: &[Range<u64>]) -> Option<u64> {
    let mut o = 0usize;
    for range in inner {
        let mut pos = range.start;
        while pos < range.end {
            while outer.get(o).is_some_and(|r| r.end <= pos) {
                o += 1;
            }
            match outer.get(o) {
                Some(r) if r.start <= pos => pos = r.end,
                _ => return Some(pos),
            }
        }
    }
    None
}

/// Decides whether the parent whose image node carries `parent` may be used
/// with `source` for the image `now` describes; `Err` says what did not match.
pub fn judge(
    now: Option<&ImageFacts>,
    parent: &ParentRecord,
    source: ChangeSource<'_>,
) -> Result<Verdict, String> {
    let record = match parent {
        ParentRecord::Present(record) => record,
        ParentRecord::Absent => {
            return Ok(Verdict::Unvouched(
                "the parent carries no image record (made by an older restix or by restic)".into(),
            ))
        }
        ParentRecord::Unreadable(e) => {
            return Ok(Verdict::Unvouched(format!(
                "the parent's image record cannot be read ({e})"
            )))
        }
    };
    let Some(now) = now else {
        return Ok(Verdict::Unvouched(
            "the image being backed up was not described".into(),
        ));
    };
    match source {
        ChangeSource::Given => Ok(Verdict::Unvouched(
            "the changed ranges were handed in by the caller".into(),
        )),
        ChangeSource::Layer => judge_layer(now, record),
        ChangeSource::Bitmap { name, dirty } => judge_bitmap(now, record, name, dirty),
        ChangeSource::HashCache => same_image(now, record).map(|()| {
            Verdict::Vouched(
                "the block-hash cache was made with it and every block was hashed again".into(),
            )
        }),
    }
}

/// A parent of the same image: the same absolute path. (A disk resized
/// since is the same disk: blocks past the old end are read, and QEMU
/// resizes bitmaps with it.)
fn same_image(now: &ImageFacts, record: &ImageRecord) -> Result<(), String> {
    if record.path != now.path {
        return Err(format!(
            "it is a backup of {}, not of {}",
            record.path, now.path
        ));
    }
    Ok(())
}

/// `--changes layer`: the overlay's backing chain must be the chain the
/// parent read, every layer unchanged since.
fn judge_layer(now: &ImageFacts, record: &ImageRecord) -> Result<Verdict, String> {
    let Some(backing) = now.backing_chain() else {
        return Err(format!(
            "{} has no backing file, so its clusters are the whole disk, not what changed since",
            now.path
        ));
    };
    if backing == record.chain {
        let below = now.layers.len().saturating_sub(1);
        let base = now
            .layers
            .get(below.saturating_sub(1))
            .map_or("", |(p, _)| p.as_str());
        return Ok(Verdict::Vouched(format!(
            "the overlay's backing file {base} is the disk it holds, unchanged since"
        )));
    }
    Err(chain_mismatch(now, record))
}

/// Says how an overlay's backing chain differs from what the parent read.
fn chain_mismatch(now: &ImageFacts, record: &ImageRecord) -> String {
    let below = &now.layers[..now.layers.len().saturating_sub(1)];
    let Some((backing_path, backing_id)) = below.last() else {
        return "the image has no backing file".into();
    };
    let parent_top = record.top_path();
    match record.layers.iter().find(|l| l.path == *backing_path) {
        Some(layer) if layer.id != hex(backing_id) => format!(
            "the overlay's backing file {backing_path} was modified or replaced since it read it \
             (its size, modification time or qcow2 tables differ)"
        ),
        Some(_) => format!(
            "the layers below the overlay's backing file {backing_path} differ from the ones it read"
        ),
        None if below.len() != record.layers.len() && record.layers.len() > 1 => format!(
            "the overlay's backing chain ({} layers, top {backing_path}) is not the one it read \
             ({} layers, top {parent_top})",
            below.len(),
            record.layers.len()
        ),
        None => format!(
            "the overlay's backing file is {backing_path}, but it is a backup of {parent_top}"
        ),
    }
}

/// `--bitmap NAME`.
fn judge_bitmap(
    now: &ImageFacts,
    record: &ImageRecord,
    name: &str,
    dirty: &[Range<u64>],
) -> Result<Verdict, String> {
    // An overlay on exactly the disk the parent holds: its own clusters are
    // what changed, so the bitmap must cover them.
    if let (Some(backing), Some(top)) = (now.backing_chain(), now.top_changes.as_deref()) {
        if backing == record.chain {
            return match first_uncovered(dirty, top) {
                None => Ok(Verdict::Vouched(format!(
                    "the overlay's backing file is the disk it holds, and bitmap {name:?} covers \
                     every cluster the overlay wrote"
                ))),
                Some(offset) => Err(format!(
                    "bitmap {name:?} misses the overlay's write at offset {offset}: it started \
                     after the overlay was first written to"
                )),
            };
        }
    }
    same_image(now, record)?;
    let Some(current) = now.bitmap(name) else {
        return Err(format!("{} has no bitmap {name:?}", now.path));
    };
    let Some(then) = record.bitmaps.iter().find(|b| b.name == name) else {
        return Err(format!(
            "bitmap {name:?} did not exist when it was taken, so it cannot show what changed \
             between it and the bitmap's start"
        ));
    };
    if then.in_use {
        return Err(format!(
            "bitmap {name:?} was in use when it was taken (the image was open in QEMU)"
        ));
    }
    if !then.enabled {
        return Err(format!(
            "bitmap {name:?} was disabled when it was taken: writes after that are not in it"
        ));
    }
    if !current.enabled {
        return Err(format!(
            "bitmap {name:?} is disabled now: writes since it was disabled are not in it \
             (qemu-img bitmap --enable, or use the bitmap that tracks writes now)"
        ));
    }
    if then.granularity != current.granularity {
        return Err(format!(
            "bitmap {name:?} was recreated since it was taken (granularity {} then, {} now)",
            then.granularity, current.granularity
        ));
    }
    let recorded: Vec<Range<u64>> = then
        .runs
        .iter()
        .map(|[start, len]| *start..start.saturating_add(*len))
        .collect();
    let now_bytes: u64 = dirty.iter().map(|r| r.end - r.start).sum();
    let lost = first_uncovered(dirty, &super::merge_ranges(recorded));
    if let Some(offset) = lost {
        return Err(format!(
            "bitmap {name:?} was cleared or recreated since it was taken: offset {offset} was \
             dirty then and is clean now"
        ));
    }
    if now_bytes < then.dirty {
        return Err(format!(
            "bitmap {name:?} was cleared or recreated since it was taken: it held {} dirty bytes \
             then and {now_bytes} now",
            then.dirty
        ));
    }
    if now.file.is_some() && record.file.is_some() && now.file != record.file {
        return Ok(Verdict::Unvouched(format!(
            "bitmap {name:?} was recorded in it, but {} is another file now (copied or replaced)",
            now.path
        )));
    }
    Ok(Verdict::Vouched(format!(
        "bitmap {name:?} was recorded in it and has only grown since"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ImageFacts {
        ImageFacts {
            path: "/vm/disk.qcow2".into(),
            size: 1 << 30,
            format: ImageFormat::Qcow2,
            file: Some([1, 2]),
            layers: vec![("/vm/disk.qcow2".into(), [7; 16])],
            bitmaps: vec![BitmapFacts {
                name: "b0".into(),
                granularity: 65536,
                enabled: true,
                in_use: false,
                dirty: Some(vec![0..65536, 1 << 20..(1 << 20) + 65536]),
            }],
            top_changes: None,
        }
    }

    #[test]
    fn record_round_trips_and_stays_small() {
        let mut f = facts();
        let record = f.record();
        let back = ImageRecord::decode(&record.encode()).unwrap();
        assert_eq!(back, record);
        assert!(back.bitmaps[0].all);
        // Thousands of dirty runs and a long chain still fit.
        f.bitmaps[0].dirty = Some(
            (0..5000u64)
                .map(|i| i * 200_000..i * 200_000 + 65536)
                .collect(),
        );
        f.layers = (0..200)
            .map(|i| {
                (
                    format!("/var/lib/one/datastores/0/42/backup/disk.0.{i}"),
                    [i as u8; 16],
                )
            })
            .collect();
        let record = f.record();
        assert!(record.encode().len() <= MAX_RECORD_BYTES);
        assert_eq!(record.chain, f.chain());
        assert!(!record.bitmaps[0].all);
        assert_eq!(record.bitmaps[0].dirty, 5000 * 65536);
    }

    #[test]
    fn bitmap_lineage() {
        let parent = ParentRecord::Present(facts().record());
        let mut now = facts();
        let grown = vec![0..65536, 1 << 20..(1 << 20) + 131072, 5 << 20..6 << 20];
        now.bitmaps[0].dirty = Some(grown.clone());
        let source = ChangeSource::Bitmap {
            name: "b0",
            dirty: &grown,
        };
        assert!(matches!(
            judge(Some(&now), &parent, source),
            Ok(Verdict::Vouched(_))
        ));
        // Cleared since: a recorded run is clean now.
        let cleared: Vec<Range<u64>> = std::iter::once(5 << 20..6 << 20).collect();
        let source = ChangeSource::Bitmap {
            name: "b0",
            dirty: &cleared,
        };
        let why = judge(Some(&now), &parent, source).unwrap_err();
        assert!(why.contains("cleared or recreated"), "{why}");
        // A bitmap the parent did not know.
        now.bitmaps[0].name = "b1".into();
        let source = ChangeSource::Bitmap {
            name: "b1",
            dirty: &grown,
        };
        let why = judge(Some(&now), &parent, source).unwrap_err();
        assert!(why.contains("did not exist"), "{why}");
        // Another image's parent.
        now.path = "/other/disk.qcow2".into();
        let why = judge(Some(&now), &parent, source).unwrap_err();
        assert!(why.contains("backup of /vm/disk.qcow2"), "{why}");
        // No record: verify by content.
        assert!(matches!(
            judge(Some(&now), &ParentRecord::Absent, source),
            Ok(Verdict::Unvouched(_))
        ));
    }

    #[test]
    fn layer_chain() {
        let parent = ParentRecord::Present(facts().record());
        let mut overlay = facts();
        overlay.path = "/vm/inc.qcow2".into();
        overlay.layers.push(("/vm/inc.qcow2".into(), [9; 16]));
        assert!(matches!(
            judge(Some(&overlay), &parent, ChangeSource::Layer),
            Ok(Verdict::Vouched(_))
        ));
        // The backing file was written since.
        overlay.layers[0].1 = [8; 16];
        let why = judge(Some(&overlay), &parent, ChangeSource::Layer).unwrap_err();
        assert!(why.contains("modified or replaced"), "{why}");
        // Another backing file.
        overlay.layers[0].0 = "/other/disk.qcow2".into();
        let why = judge(Some(&overlay), &parent, ChangeSource::Layer).unwrap_err();
        assert!(why.contains("backup of /vm/disk.qcow2"), "{why}");
        // No backing file at all.
        let why = judge(Some(&facts()), &parent, ChangeSource::Layer).unwrap_err();
        assert!(why.contains("no backing file"), "{why}");
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn uncovered() {
        assert_eq!(first_uncovered(&[0..10, 20..30], &[2..8, 21..30]), None);
        assert_eq!(first_uncovered(&[0..10, 10..30], &[5..25]), None);
        assert_eq!(first_uncovered(&[0..10, 20..30], &[5..25]), Some(10));
        assert_eq!(first_uncovered(&[], &[1..2]), Some(1));
        assert_eq!(first_uncovered(&[0..5], &[]), None);
    }
}
