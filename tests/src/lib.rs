//! Shared harness for restix's integration tests: locating the `restix` and
//! `restic` binaries, temporary repositories, fixtures, a private OpenSSH
//! `sshd` on 127.0.0.1, and qemu-img images.

pub mod azurite;
pub mod delay;
pub mod garage;
pub mod harness;
pub mod images;
pub mod mounts;
pub mod rclone;
pub mod remote_repo;
pub mod sshd;
