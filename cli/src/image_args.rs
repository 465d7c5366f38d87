//! The flags of image mode (`backup --image`, `restore --format`,
//! `dump --format`) and `restore-chain`'s arguments: part of the argument
//! layer, beside [`crate::args`], which embeds them; the work is in
//! [`crate::image_mode`].

use clap::Args;

/// `restix backup --help`: examples of image mode.
pub const BACKUP_EXAMPLES: &str = "\
Examples of image mode (see docs/images.md):
  # first backup of a powered-off VM's disk: its guest view, in 64 KiB blocks
  restix -r /srv/repo backup --image /vms/a/disk.qcow2

  # CBT: add a bitmap before each backup, back up the changes since the last
  # one with the bitmap added then (the parent is found by itself)
  qemu-img bitmap --add /vms/a/disk.qcow2 ck2
  restix -r /srv/repo backup --image /vms/a/disk.qcow2 --bitmap ck1

  # an overlay written on top of the disk a snapshot holds
  restix -r /srv/repo backup --image /vms/a/inc1.qcow2 --changes layer

  # a raw disk or block device: a local block-hash cache finds the changes
  restix -r /srv/repo backup --image /dev/vg0/vm-b

  # restore as a sparse raw file or a qcow2 image
  restix -r /srv/repo restore latest --format raw --target /restore/
  restix -r /srv/repo dump --format qcow2 --target /restore/a.qcow2 latest /disk.qcow2";

/// `backup` flags of image mode.
#[derive(Args, Debug, Default, Clone)]
#[command(after_help = BACKUP_EXAMPLES)]
pub struct ImageBackupFlags {
    /// Back up this disk image (qcow2, raw file or block device) as one file holding its guest view
    #[arg(help_heading = "Image mode", long = "image", value_name = "IMAGE")]
    pub image: Option<String>,
    /// Format of --image: auto (probe), qcow2 or raw
    #[arg(
        help_heading = "Image mode",
        long = "image-format",
        value_name = "FORMAT",
        default_value = "auto"
    )]
    pub image_format: String,
    /// Lower layers of a qcow2 --image, base first, instead of the backing file it records (can be specified multiple times)
    #[arg(help_heading = "Image mode", long = "image-backing", action = clap::ArgAction::Append, value_name = "IMAGE")]
    pub image_backing: Vec<String>,
    /// File name of the image in the snapshot (default: the base name of --image)
    #[arg(help_heading = "Image mode", long = "image-name", value_name = "NAME")]
    pub image_name: Option<String>,
    /// Where an incremental learns what changed: auto, layer, bitmap, hash-cache or none
    #[arg(
        help_heading = "Image mode",
        long = "changes",
        value_name = "SOURCE",
        default_value = "auto",
        long_help = "Where an incremental learns what changed since its parent:\n  \
            layer       the clusters of a qcow2 overlay (an image with a backing file, or \
            --image-backing); its backing chain must be the disk the parent read, unchanged\n  \
            bitmap      the persistent dirty bitmap --bitmap NAME; it must be in the parent's \
            record and have only grown since (add a new bitmap just before each backup and \
            use the one added before the previous backup)\n  \
            hash-cache  hash every block and compare with the hashes kept by the previous \
            backup of this image (reads the whole image, stores only what changed)\n  \
            none        no incremental: read and store the whole image (dedup still applies)\n  \
            auto        bitmap when --bitmap is given, else layer for an overlay, else \
            hash-cache (none with --force)\n\
            Without --parent the parent is the latest snapshot of this image (same host and \
            absolute path; for an overlay: of its backing file) whose record matches. A parent \
            that does not match is refused: nothing is written and restix exits 1."
    )]
    pub changes: String,
    /// Take changed blocks from this persistent dirty bitmap of the qcow2 image
    #[arg(help_heading = "Image mode", long = "bitmap", value_name = "NAME")]
    pub bitmap: Option<String>,
    /// Blobs of the image: auto (the parent's; else blocks of 64K, more for disks over 8 GiB), a block size (64K to 8M), or restic (content-defined chunks)
    #[arg(
        help_heading = "Image mode",
        long = "image-chunks",
        value_name = "SIZE",
        default_value = "auto"
    )]
    pub image_chunks: String,
}

/// `restore`/`dump` flag of image mode.
#[derive(Args, Debug, Default, Clone)]
pub struct ImageRestoreFlags {
    /// Write the image file as a sparse raw file (raw) or a qcow2 image (qcow2); --target is then the file, or a directory (existing, or ending in /) to name it in
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `restore-chain`: flatten an OpenNebula backup chain.
#[derive(Args, Debug, Default)]
pub struct RestoreChainArgs {
    /// Image file to write, or a directory (existing, or ending in /) to name it in
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
