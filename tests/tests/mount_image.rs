//! An image-mode snapshot of a qcow2 disk read through `restix mount`
//! (issue #19): `qemu-img compare` finds it identical to the source, and an
//! ext4 file system inside it, loop-mounted read-only straight from the
//! mount, gives back a file equal to the original: file restore from inside
//! a VM disk backup without restoring the disk.

use std::process::Command;

use restix_tests::harness::{pseudo_random_bytes, require_qemu, s, Sandbox, Tool};
use restix_tests::mounts::{
    doc_block, is_mounted, make_ext4_image, require_fuse, require_loop_and_ext4, run_doc_block,
    run_ok, LoopDevice, Mounted, ReadOnlyMount,
};

#[test]
fn disk_image_through_the_mount_compares_identical_and_its_ext4_loop_mounts() {
    if !require_qemu() || !require_fuse() || !require_loop_and_ext4() {
        return;
    }
    let sb = Sandbox::new();
    let fstab = b"/dev/vda1 / ext4 defaults 0 1\n".to_vec();
    let payload = pseudo_random_bytes(7, 3 << 20);
    let raw = sb.join("guest.raw");
    make_ext4_image(
        &sb,
        &raw,
        48,
        &[("/etc/fstab", &fstab), ("/var/lib/payload.bin", &payload)],
    );
    let disk = sb.join("vm.qcow2");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&raw),
        s(&disk),
    ]));
    // Data past the file system too, so the disk has data, zeros and holes.
    run_ok(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x6b 46M 1M", s(&disk)]));

    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    sb.restix(["-r", s(&repo), "backup", "--image", s(&disk)])
        .ok();

    let mount = Mounted::start(&sb, Tool::Restix, &repo, &sb.join("mnt"), &[]);
    let backed_up = mount.path().join("snapshots/latest/vm.qcow2");
    let compared = run_ok(Command::new("qemu-img").args([
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        s(&backed_up),
        s(&disk),
    ]));
    assert!(compared.contains("identical"), "{compared}");

    // The guest's file system, read-only through a loop device.
    let device = LoopDevice::attach_read_only(&backed_up);
    let inner = ReadOnlyMount::ext4(&device.device, &sb.join("guest"));
    assert_eq!(std::fs::read(sb.join("guest/etc/fstab")).unwrap(), fstab);
    let copied = sb.join("payload.bin");
    std::fs::copy(sb.join("guest/var/lib/payload.bin"), &copied).unwrap();
    assert_eq!(std::fs::read(&copied).unwrap(), payload);
    // Guards unmount in order: inner file system, loop device, FUSE mount.
    drop(inner);
    drop(device);
    drop(mount);
}

/// docs/mount.md's "Files from inside a VM disk backup" block, as written.
#[test]
fn documented_file_restore_runs_as_written() {
    if !require_qemu() || !require_fuse() || !require_loop_and_ext4() {
        return;
    }
    let sb = Sandbox::new();
    let fstab = b"UUID=1234 / ext4 errors=remount-ro 0 1\n".to_vec();
    let work = sb.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let raw = sb.join("guest.raw");
    make_ext4_image(&sb, &raw, 16, &[("/etc/fstab", &fstab)]);
    let disk = work.join("vm.qcow2");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&raw),
        s(&disk),
    ]));
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    sb.cmd(Tool::Restix)
        .current_dir(&work)
        .args(["-r", s(&repo), "backup", "--image", "vm.qcow2"])
        .run()
        .ok();
    let block = doc_block("mount.md", "file-restore");
    let result = std::panic::catch_unwind(|| run_doc_block(&sb, &work, &repo, &block));
    // Whatever happened, leave nothing mounted.
    let _ = Command::new("umount")
        .arg(work.join("guest"))
        .stderr(std::process::Stdio::null())
        .status();
    if is_mounted(&work.join("backup")) {
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(work.join("backup"))
            .status();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(std::fs::read(work.join("fstab.restored")).unwrap(), fstab);
}
