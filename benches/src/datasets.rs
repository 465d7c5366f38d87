//! The data sets, built once into a cache folder and reused by later runs.
//!
//! * **image**: a folder of real files (copies of `/usr/bin`, `/usr/lib`,
//!   `/usr/share`) plus synthetic documents, photos-like random data, logs and
//!   an archive, packed into an ext4 file system with `mkfs.ext4 -d`, then
//!   converted with `qemu-img convert -O qcow2`.
//! * **changed**: a copy of that qcow2 in which 1 % of the 64 KiB guest blocks
//!   (at random 64 KiB-aligned guest offsets over the whole virtual disk) were
//!   rewritten in place with random data through `qemu-io -c "write -s FILE
//!   OFF 64k"`, the way a running VM changes its disk: clusters already
//!   allocated are overwritten where they are, new ones are appended.
//! * **increment**: an OpenNebula-style increment of the image: a qcow2
//!   overlay (`qemu-img create -f qcow2 -b image.qcow2 -F qcow2`) into which
//!   the same 1 % of 64 KiB guest blocks, with the same bytes, are written
//!   with `qemu-io` as in **changed** (so its guest view equals changed's).
//!   The overlay also carries a persistent dirty bitmap, added before the
//!   writes and disabled after them, for the dirty-bitmap incremental.
//! * **sparse**: a sparse image: ~90 % of the image size of the same kind
//!   of files (1.8 GB at 2 GiB) in an ext4 of three times the image size
//!   (6 GiB), converted to qcow2 (only written clusters allocated).
//! * **small**: a tree of small files (0–16 KiB) in nested folders; 50 000
//!   files at the default 2 GiB size, scaled with `--size`.
//! * **prune**: two folders for the prune scenario: `prune-a` (1000 files,
//!   each much smaller than a pack) and `prune-b`, which hard-links 600 of
//!   them (6 of every 10) and adds 400 new ones, so that after forgetting the
//!   first snapshot ~30 % of the data is unused and spread over almost every
//!   pack, which must then be repacked.
//!
//! Each set is marked complete by a `<name>.done` JSON file; a set without
//! one is rebuilt from scratch.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::content::{write_content, Kind, SplitMix64};
use crate::error::{run_helper, BenchError, IoContext};

const MIB: u64 = 1 << 20;
/// Files in the first prune folder.
const PRUNE_FILES: u64 = 1000;
/// Guest block size of the changed-blocks data set.
pub const CHANGE_BLOCK: u64 = 64 * 1024;

/// The qcow2 image data set.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// The qcow2 file.
    pub qcow2: PathBuf,
    /// Size of the qcow2 file in bytes.
    pub file_bytes: u64,
    /// Virtual disk size.
    pub virtual_bytes: u64,
    /// Bytes of file content inside the file system.
    pub content_bytes: u64,
    /// Files inside the file system.
    pub files: u64,
}

/// The changed copy of the image.
#[derive(Debug, Clone)]
pub struct ChangedSet {
    /// The changed qcow2 file.
    pub qcow2: PathBuf,
    /// Size of the qcow2 file in bytes.
    pub file_bytes: u64,
    /// 64 KiB guest blocks rewritten.
    pub blocks_written: u64,
}

/// The increment overlay on top of the image.
#[derive(Debug, Clone)]
pub struct IncrementSet {
    /// The overlay (its backing file is the image, named relatively).
    pub qcow2: PathBuf,
    /// Size of the overlay file in bytes.
    pub file_bytes: u64,
    /// 64 KiB guest blocks written (the same as in the changed set).
    pub blocks_written: u64,
    /// Name of the persistent dirty bitmap that tracked the writes.
    pub bitmap: String,
}

/// The sparse image.
#[derive(Debug, Clone)]
pub struct SparseSet {
    /// The qcow2 file.
    pub qcow2: PathBuf,
    /// Size of the qcow2 file in bytes.
    pub file_bytes: u64,
    /// Virtual disk size.
    pub virtual_bytes: u64,
    /// Bytes of file content inside the file system.
    pub content_bytes: u64,
    /// Files inside the file system.
    pub files: u64,
}

/// Name of the dirty bitmap in the increment overlay.
pub const INCREMENT_BITMAP: &str = "restix-bench";

/// The small-files tree.
#[derive(Debug, Clone)]
pub struct SmallSet {
    /// Root folder.
    pub root: PathBuf,
    /// Number of files.
    pub files: u64,
    /// Total bytes.
    pub bytes: u64,
}

/// The two folders of the prune scenario.
#[derive(Debug, Clone)]
pub struct PruneSet {
    /// Backed up first, then forgotten.
    pub first: PathBuf,
    /// Backed up second, kept; shares 60 % of `first`'s files.
    pub second: PathBuf,
    /// Bytes of `first`.
    pub first_bytes: u64,
    /// Bytes of `second`.
    pub second_bytes: u64,
    /// Bytes only `first` holds (unused after forgetting it).
    pub unused_bytes: u64,
}

/// The cache folder of one data-set size.
#[derive(Debug, Clone)]
pub struct DataSets {
    dir: PathBuf,
    size: u64,
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn remove_if_exists(path: &Path) -> Result<(), BenchError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).ctx(|| format!("remove {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).ctx(|| format!("remove {}", path.display())),
        Err(_) => Ok(()),
    }
}

fn write_file(path: &Path, kind: Kind, len: u64, rng: &mut SplitMix64) -> Result<(), BenchError> {
    let file = File::create(path).ctx(|| format!("create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_content(&mut out, kind, len, rng).ctx(|| format!("write {}", path.display()))?;
    out.flush().ctx(|| format!("write {}", path.display()))
}

/// Copy regular files below `src` into `dst` (same relative paths, sorted
/// walk) until `budget` bytes; returns (bytes, files) copied.
fn copy_system_files(src: &Path, dst: &Path, budget: u64) -> Result<(u64, u64), BenchError> {
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        if bytes + budget / 100 >= budget {
            break;
        }
        let Ok(entries) = fs::read_dir(src.join(&rel)) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let from = src.join(&rel_path);
            let Ok(meta) = fs::symlink_metadata(&from) else {
                continue;
            };
            if meta.is_dir() {
                subdirs.push(rel_path);
            } else if meta.is_file() && meta.len() <= 256 * MIB && bytes + meta.len() <= budget {
                let to = dst.join(&rel_path);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).ctx(|| format!("mkdir {}", parent.display()))?;
                }
                // Unreadable files (permissions, races) are skipped, not fatal.
                if let Ok(n) = fs::copy(&from, &to) {
                    bytes += n;
                    files += 1;
                }
            }
        }
        // Depth-first in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((bytes, files))
}

/// Sum of (bytes, files, 4 KiB blocks) below `root`.
fn tree_stats(root: &Path) -> (u64, u64, u64) {
    let (mut bytes, mut files, mut blocks) = (0, 0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
                blocks += 1;
            } else {
                bytes += meta.len();
                files += 1;
                blocks += meta.len().div_ceil(4096).max(1);
            }
        }
    }
    (bytes, files, blocks)
}

/// Read every regular file below `path` (or `path` itself) once, so the
/// page cache holds it and the first tool measured is not disadvantaged.
pub fn warm_page_cache(path: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            if let Ok(mut f) = File::open(&p) {
                while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
    }
}

/// Fills `tree` with about `target` bytes of files: half copies of
/// `/usr/{bin,lib,share}`, half synthetic documents, photo-like random data,
/// logs and archives (deterministic for a given `target`).
fn build_tree(tree: &Path, target: u64) -> Result<(), BenchError> {
    remove_if_exists(tree)?;
    // Half real system files, a third of that from each of the three roots.
    let system_budget = target / 2;
    for root in ["bin", "lib", "share"] {
        copy_system_files(
            &Path::new("/usr").join(root),
            &tree.join("usr").join(root),
            system_budget / 3,
        )?;
    }
    let (system_bytes, _, _) = tree_stats(tree);
    let rest = target.saturating_sub(system_bytes);
    let mut rng = SplitMix64::new(0x1ace_0f1a);
    let home = tree.join("home/user");
    for (sub, kind, share_pct, min, max) in [
        ("documents", Kind::Text, 30u64, 4096u64, 2 * MIB),
        ("photos", Kind::Random, 20, MIB, 8 * MIB),
        ("logs", Kind::Records, 25, MIB, 32 * MIB),
        ("archives", Kind::Random, 25, 64 * MIB, 256 * MIB),
    ] {
        let dir = home.join(sub);
        fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
        let mut left = rest * share_pct / 100;
        let mut n = 0u32;
        while left > 0 {
            let len = (min + rng.below(max - min + 1)).min(left);
            write_file(&dir.join(format!("{sub}-{n:05}.dat")), kind, len, &mut rng)?;
            left -= len;
            n += 1;
        }
    }
    Ok(())
}

/// Packs `tree` into an ext4 file system of `fs_bytes` (`mkfs.ext4 -d` into
/// a sparse raw file) and converts it to `qcow2` (zero clusters left
/// unallocated); the raw file is removed.
fn make_ext4_qcow2(tree: &Path, raw: &Path, fs_bytes: u64, qcow2: &Path) -> Result<(), BenchError> {
    remove_if_exists(raw)?;
    remove_if_exists(qcow2)?;
    let raw_file = File::create(raw).ctx(|| format!("create {}", raw.display()))?;
    raw_file
        .set_len(fs_bytes)
        .ctx(|| format!("size {}", raw.display()))?;
    drop(raw_file);
    run_helper(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-L", "restixbench"])
            .args(["-U", "6b0c2f57-5a8e-4a53-9d3c-2f1ad0c0b001"])
            .args(["-E", "hash_seed=6b0c2f57-5a8e-4a53-9d3c-2f1ad0c0b002"])
            .arg("-d")
            .arg(tree)
            .arg(raw),
    )?;
    run_helper(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(qcow2),
    )?;
    remove_if_exists(raw)
}

/// The 64 KiB guest blocks the changed and increment sets rewrite: 1 % of
/// the disk's blocks at random aligned offsets, sorted; and the generator
/// positioned to produce their new bytes.
fn changed_blocks(virtual_bytes: u64) -> (Vec<u64>, SplitMix64) {
    let blocks = virtual_bytes / CHANGE_BLOCK;
    let count = (blocks / 100).max(1);
    let mut rng = SplitMix64::new(0xc4a9_6ed0);
    let mut offsets = BTreeSet::new();
    while (offsets.len() as u64) < count.min(blocks) {
        offsets.insert(rng.below(blocks) * CHANGE_BLOCK);
    }
    (offsets.into_iter().collect(), rng)
}

/// Writes random 64 KiB blocks at `offsets` into `qcow2` with `qemu-io
/// write -s` (pattern files in `patterns`), taking the bytes from `rng` in
/// order: the same offsets and generator give the same guest bytes.
fn write_blocks(
    qcow2: &Path,
    offsets: &[u64],
    rng: &mut SplitMix64,
    patterns: &Path,
) -> Result<(), BenchError> {
    remove_if_exists(patterns)?;
    fs::create_dir_all(patterns).ctx(|| format!("mkdir {}", patterns.display()))?;
    let mut buf = vec![0u8; CHANGE_BLOCK as usize];
    // Batches keep each qemu-io command line short.
    for (batch_no, batch) in offsets.chunks(256).enumerate() {
        let mut cmd = Command::new("qemu-io");
        cmd.args(["-f", "qcow2"]);
        for (i, off) in batch.iter().enumerate() {
            let pattern = patterns.join(format!("{batch_no}-{i}"));
            rng.fill(&mut buf);
            fs::write(&pattern, &buf).ctx(|| format!("write {}", pattern.display()))?;
            cmd.arg("-c")
                .arg(format!("write -q -s {} {off} 64k", pattern.display()));
        }
        cmd.arg(qcow2);
        run_helper(&mut cmd)?;
        remove_if_exists(patterns)?;
        fs::create_dir_all(patterns).ctx(|| format!("mkdir {}", patterns.display()))?;
    }
    remove_if_exists(patterns)
}

impl DataSets {
    /// The cache folder for data sets of `size` bytes below `base`.
    pub fn new(base: &Path, size: u64) -> Result<Self, BenchError> {
        let dir = base.join(format!("data-{}M", size / MIB));
        fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
        Ok(DataSets { dir, size })
    }

    fn done(&self, name: &str) -> Option<Value> {
        let text = fs::read_to_string(self.dir.join(format!("{name}.done"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn mark_done(&self, name: &str, v: &Value) -> Result<(), BenchError> {
        let path = self.dir.join(format!("{name}.done"));
        fs::write(&path, v.to_string()).ctx(|| format!("write {}", path.display()))
    }

    /// The qcow2 image, built if missing.
    pub fn image(&self) -> Result<ImageSet, BenchError> {
        let qcow2 = self.dir.join("image.qcow2");
        if let Some(v) = self.done("image") {
            if qcow2.is_file() {
                return Ok(ImageSet {
                    file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
                    qcow2,
                    virtual_bytes: u(&v, "virtual_bytes"),
                    content_bytes: u(&v, "content_bytes"),
                    files: u(&v, "files"),
                });
            }
        }
        eprintln!("building the image data set in {} ...", self.dir.display());
        let tree = self.dir.join("image-tree");
        let raw = self.dir.join("image.raw");
        remove_if_exists(&qcow2)?;
        build_tree(&tree, self.size)?;
        let (content_bytes, files, blocks) = tree_stats(&tree);
        // File data + 25 % for ext4 metadata, inode tables and free space.
        let fs_bytes = ((blocks * 4096) * 5 / 4 + 64 * MIB).div_ceil(MIB) * MIB;
        make_ext4_qcow2(&tree, &raw, fs_bytes, &qcow2)?;
        remove_if_exists(&tree)?;
        let v = json!({"virtual_bytes": fs_bytes, "content_bytes": content_bytes, "files": files});
        self.mark_done("image", &v)?;
        Ok(ImageSet {
            file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
            qcow2,
            virtual_bytes: fs_bytes,
            content_bytes,
            files,
        })
    }

    /// The changed copy of the image, built if missing.
    pub fn changed(&self, image: &ImageSet) -> Result<ChangedSet, BenchError> {
        let qcow2 = self.dir.join("changed.qcow2");
        if let Some(v) = self.done("changed") {
            if qcow2.is_file() {
                return Ok(ChangedSet {
                    file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
                    qcow2,
                    blocks_written: u(&v, "blocks_written"),
                });
            }
        }
        eprintln!("building the changed image ...");
        remove_if_exists(&qcow2)?;
        fs::copy(&image.qcow2, &qcow2).ctx(|| format!("copy to {}", qcow2.display()))?;
        let (offsets, mut rng) = changed_blocks(image.virtual_bytes);
        write_blocks(&qcow2, &offsets, &mut rng, &self.dir.join("patterns"))?;
        let v = json!({"blocks_written": offsets.len()});
        self.mark_done("changed", &v)?;
        Ok(ChangedSet {
            file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
            qcow2,
            blocks_written: offsets.len() as u64,
        })
    }

    /// The increment overlay on top of the image, built if missing.
    pub fn increment(&self, image: &ImageSet) -> Result<IncrementSet, BenchError> {
        let qcow2 = self.dir.join("increment.qcow2");
        let done = |file_bytes, blocks_written| IncrementSet {
            qcow2: qcow2.clone(),
            file_bytes,
            blocks_written,
            bitmap: INCREMENT_BITMAP.to_string(),
        };
        if let Some(v) = self.done("increment") {
            if qcow2.is_file() {
                let bytes = fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0);
                return Ok(done(bytes, u(&v, "blocks_written")));
            }
        }
        eprintln!("building the increment overlay ...");
        remove_if_exists(&qcow2)?;
        // The backing file is named relatively (same folder), as OpenNebula's
        // increments name theirs.
        let base = image
            .qcow2
            .file_name()
            .ok_or_else(|| BenchError::Usage("image has no file name".into()))?;
        run_helper(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(base)
                .arg(&qcow2),
        )?;
        run_helper(
            Command::new("qemu-img")
                .args(["bitmap", "--add", "-g", "64K"])
                .arg(&qcow2)
                .arg(INCREMENT_BITMAP),
        )?;
        let (offsets, mut rng) = changed_blocks(image.virtual_bytes);
        write_blocks(&qcow2, &offsets, &mut rng, &self.dir.join("patterns"))?;
        run_helper(
            Command::new("qemu-img")
                .args(["bitmap", "--disable"])
                .arg(&qcow2)
                .arg(INCREMENT_BITMAP),
        )?;
        self.mark_done("increment", &json!({"blocks_written": offsets.len()}))?;
        let bytes = fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0);
        Ok(done(bytes, offsets.len() as u64))
    }

    /// The sparse image, built if missing: ~90 % of the size in files in an
    /// ext4 of three times the size.
    pub fn sparse(&self) -> Result<SparseSet, BenchError> {
        let qcow2 = self.dir.join("sparse.qcow2");
        if let Some(v) = self.done("sparse") {
            if qcow2.is_file() {
                return Ok(SparseSet {
                    file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
                    qcow2,
                    virtual_bytes: u(&v, "virtual_bytes"),
                    content_bytes: u(&v, "content_bytes"),
                    files: u(&v, "files"),
                });
            }
        }
        eprintln!("building the sparse image in {} ...", self.dir.display());
        let tree = self.dir.join("sparse-tree");
        build_tree(&tree, self.size / 10 * 9)?;
        let (content_bytes, files, _) = tree_stats(&tree);
        let virtual_bytes = (self.size * 3).div_ceil(MIB) * MIB;
        make_ext4_qcow2(&tree, &self.dir.join("sparse.raw"), virtual_bytes, &qcow2)?;
        remove_if_exists(&tree)?;
        let v =
            json!({"virtual_bytes": virtual_bytes, "content_bytes": content_bytes, "files": files});
        self.mark_done("sparse", &v)?;
        Ok(SparseSet {
            file_bytes: fs::metadata(&qcow2).map(|m| m.len()).unwrap_or(0),
            qcow2,
            virtual_bytes,
            content_bytes,
            files,
        })
    }

    /// Number of small files for this size: 50 000 at 2 GiB, scaled.
    fn small_file_count(&self) -> u64 {
        (50_000 * (self.size / MIB) / 2048).max(1000)
    }

    /// The small-files tree, built if missing.
    pub fn small(&self) -> Result<SmallSet, BenchError> {
        let root = self.dir.join("small-files");
        if let Some(v) = self.done("small") {
            if root.is_dir() {
                return Ok(SmallSet {
                    root,
                    files: u(&v, "files"),
                    bytes: u(&v, "bytes"),
                });
            }
        }
        eprintln!("building the small-files tree ...");
        remove_if_exists(&root)?;
        let count = self.small_file_count();
        let mut rng = SplitMix64::new(0x5a11_f11e);
        let mut bytes = 0;
        // 100 files per leaf folder, 10 leaves per middle folder.
        for i in 0..count {
            let dir = root
                .join(format!("d{:03}", i / 1000))
                .join(format!("s{:02}", (i / 100) % 10));
            if i % 100 == 0 {
                fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
            }
            let (kind, ext) = match i % 4 {
                0 => (Kind::Random, "bin"),
                3 => (Kind::Records, "log"),
                _ => (Kind::Text, "txt"),
            };
            let len = rng.below(16 * 1024 + 1);
            write_file(&dir.join(format!("f{i:06}.{ext}")), kind, len, &mut rng)?;
            bytes += len;
        }
        let v = json!({"files": count, "bytes": bytes});
        self.mark_done("small", &v)?;
        Ok(SmallSet {
            root,
            files: count,
            bytes,
        })
    }

    /// The prune folders, built if missing.
    pub fn prune(&self) -> Result<PruneSet, BenchError> {
        let first = self.dir.join("prune-a");
        let second = self.dir.join("prune-b");
        // "prune2": 1000 small files (the first layout had 100 pack-sized ones).
        if let Some(v) = self.done("prune2") {
            if first.is_dir() && second.is_dir() {
                return Ok(PruneSet {
                    first,
                    second,
                    first_bytes: u(&v, "first_bytes"),
                    second_bytes: u(&v, "second_bytes"),
                    unused_bytes: u(&v, "unused_bytes"),
                });
            }
        }
        eprintln!("building the prune data set ...");
        remove_if_exists(&first)?;
        remove_if_exists(&second)?;
        fs::create_dir_all(&first).ctx(|| format!("mkdir {}", first.display()))?;
        fs::create_dir_all(&second).ctx(|| format!("mkdir {}", second.display()))?;
        let unit = (self.size / 2 / PRUNE_FILES).max(16 * 1024);
        let kind_of = |i: u64| match i % 4 {
            0 | 2 => Kind::Random,
            1 => Kind::Text,
            _ => Kind::Records,
        };
        let mut rng = SplitMix64::new(0x9e0_9e0);
        let (mut first_bytes, mut second_bytes, mut unused_bytes) = (0, 0, 0);
        for i in 0..PRUNE_FILES {
            let path = first.join(format!("f{i:04}.dat"));
            write_file(&path, kind_of(i), unit, &mut rng)?;
            first_bytes += unit;
            if i % 10 >= 4 {
                let link = second.join(format!("f{i:04}.dat"));
                if fs::hard_link(&path, &link).is_err() {
                    fs::copy(&path, &link).ctx(|| format!("copy to {}", link.display()))?;
                }
                second_bytes += unit;
            } else {
                unused_bytes += unit;
            }
        }
        for i in 0..PRUNE_FILES * 4 / 10 {
            write_file(
                &second.join(format!("n{i:04}.dat")),
                kind_of(i),
                unit,
                &mut rng,
            )?;
            second_bytes += unit;
        }
        let v = json!({"first_bytes": first_bytes, "second_bytes": second_bytes, "unused_bytes": unused_bytes});
        self.mark_done("prune2", &v)?;
        Ok(PruneSet {
            first,
            second,
            first_bytes,
            second_bytes,
            unused_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_file_count_scales_with_size() {
        let base = std::env::temp_dir().join(format!("restix-bench-ds-{}", std::process::id()));
        let ds = DataSets::new(&base, 2048 * MIB).unwrap();
        assert_eq!(ds.small_file_count(), 50_000);
        let ds = DataSets::new(&base, 20 * MIB).unwrap();
        assert_eq!(ds.small_file_count(), 1000);
        fs::remove_dir_all(&base).unwrap();
    }

    fn have(program: &str) -> bool {
        Command::new(program).arg("--version").output().is_ok()
    }

    #[test]
    fn builds_a_tiny_image_and_its_changed_copy() {
        if !have("mkfs.ext4") && !Path::new("/usr/sbin/mkfs.ext4").exists()
            || !have("qemu-img")
            || !have("qemu-io")
        {
            return restix_testkit::skip(
                "mkfs.ext4, qemu-img or qemu-io",
                "apt-get install e2fsprogs qemu-utils",
            );
        }
        let base = std::env::temp_dir().join(format!("restix-bench-img-{}", std::process::id()));
        let ds = DataSets::new(&base, 8 * MIB).unwrap();
        let image = ds.image().unwrap();
        assert!(image.content_bytes >= 7 * MIB, "{image:?}");
        assert!(image.files > 3);
        let changed = ds.changed(&image).unwrap();
        assert!(changed.blocks_written >= 1);
        // qemu-img agrees both are valid qcow2 images and that they differ.
        for q in [&image.qcow2, &changed.qcow2] {
            run_helper(Command::new("qemu-img").arg("check").arg(q)).unwrap();
        }
        let same = Command::new("qemu-img")
            .arg("compare")
            .arg(&image.qcow2)
            .arg(&changed.qcow2)
            .status()
            .unwrap();
        assert_eq!(same.code(), Some(1), "images should differ");
        // The increment overlay shows the same guest view as the changed copy
        // and its dirty bitmap is persistent and disabled.
        let inc = ds.increment(&image).unwrap();
        assert_eq!(inc.blocks_written, changed.blocks_written);
        run_helper(Command::new("qemu-img").arg("check").arg(&inc.qcow2)).unwrap();
        let same = Command::new("qemu-img")
            .arg("compare")
            .arg(&changed.qcow2)
            .arg(&inc.qcow2)
            .status()
            .unwrap();
        assert_eq!(same.code(), Some(0), "increment differs from changed");
        let info = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&inc.qcow2)
            .output()
            .unwrap();
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        let bitmaps = &info["format-specific"]["data"]["bitmaps"];
        assert_eq!(bitmaps[0]["name"], INCREMENT_BITMAP, "{info}");
        // A second call reuses the cached set.
        assert_eq!(ds.image().unwrap().virtual_bytes, image.virtual_bytes);
        fs::remove_dir_all(&base).unwrap();
    }
}
