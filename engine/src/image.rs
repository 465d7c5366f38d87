//! Image mode: back up a disk image (qcow2, raw, block device) as one file of its guest view; changed-block incrementals; restore to raw or qcow2.
