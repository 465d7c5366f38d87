//! `restix serve-nbd` (issue #19): an image-mode snapshot of a qcow2 disk
//! served over NBD compares identical to the source (TCP and Unix socket);
//! a qcow2 overlay on the export takes writes, reads back its own writes and
//! the backup's data, and the repository stays untouched; the instant
//! recovery procedure of docs/mount.md runs as written.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use restix_tests::harness::{require_qemu, s, Sandbox, Tool};
use restix_tests::mounts::{doc_block, free_port, run_doc_block, run_ok, NbdServer};
use restix_tests::require_restic;

/// A 64 MiB qcow2 disk with data runs, zero runs and an unaligned tail
/// write, backed up in image mode. Returns (disk, repo).
fn backed_up_disk(sb: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let disk = sb.join("vm.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&disk), "64M"]));
    run_ok(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -P 0x5a 1M 3M",
        "-c",
        "write -P 0x11 40M 512k",
        "-c",
        "write -P 0xc3 67104256 1536",
        s(&disk),
    ]));
    let repo = sb.join("repo");
    sb.restix(["init", "-r", s(&repo)]).ok();
    sb.restix(["-r", s(&repo), "backup", "--image", s(&disk)])
        .ok();
    (disk, repo)
}

fn qemu_compare(url: &str, disk: &Path) {
    let out = run_ok(Command::new("qemu-img").args([
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        url,
        s(disk),
    ]));
    assert!(out.contains("identical"), "{out}");
}

#[test]
fn disk_over_nbd_compares_identical_on_tcp_and_unix_socket() {
    if !require_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (disk, repo) = backed_up_disk(&sb);
    let listen = format!("127.0.0.1:{}", free_port());
    let tcp = NbdServer::start(&sb, &repo, "latest", &listen, &[]);
    assert!(tcp.url.ends_with("/vm.qcow2"), "{}", tcp.url);
    qemu_compare(&tcp.url, &disk);
    // The empty export name is the same export.
    qemu_compare(&format!("nbd://{listen}"), &disk);
    // Zero blocks are reported as such (qemu skips them when copying).
    let map =
        run_ok(Command::new("qemu-img").args(["map", "-f", "raw", "--output=json", &tcp.url]));
    assert!(
        map.contains("\"zero\": true") && map.contains("\"data\": true"),
        "{map}"
    );

    let socket = sb.join("nbd.sock");
    let unix = NbdServer::start(
        &sb,
        &repo,
        "latest:/vm.qcow2",
        &format!("unix:{}", s(&socket)),
        &["--export-name", "disk"],
    );
    qemu_compare(&format!("nbd+unix:///disk?socket={}", s(&socket)), &disk);
    drop(unix);
    assert!(!socket.exists(), "the socket file is removed on exit");
}

/// Every file of the repository with its size.
fn repository_files(repo: &Path) -> BTreeMap<String, u64> {
    restix_tests::harness::walk(repo)
        .into_iter()
        .filter_map(|rel| {
            let meta = std::fs::metadata(repo.join(&rel)).ok()?;
            meta.is_file()
                .then(|| (rel.display().to_string(), meta.len()))
        })
        .collect()
}

#[test]
fn overlay_takes_writes_and_the_repository_is_unchanged() {
    require_restic!();
    if !require_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (_disk, repo) = backed_up_disk(&sb);
    let before = repository_files(&repo);
    let listen = format!("127.0.0.1:{}", free_port());
    let server = NbdServer::start(&sb, &repo, "latest", &listen, &[]);
    let overlay = sb.join("live.qcow2");
    run_ok(Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &server.url,
        "-F",
        "raw",
        s(&overlay),
    ]));
    let io = run_ok(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -P 0x77 2M 64k",
        "-c",
        "read -P 0x77 2M 64k",
        "-c",
        "read -P 0x5a 1M 1M",
        "-c",
        "read -P 0x5a 2162688 64k",
        "-c",
        "read -P 0 10M 1M",
        "-c",
        "read -P 0x11 40M 512k",
        "-c",
        "write -z 40M 4k",
        "-c",
        "read -P 0 40M 4k",
        "-c",
        "read -P 0x11 41947136 4k",
        s(&overlay),
    ]));
    assert!(!io.contains("Pattern verification failed"), "{io}");
    // The export itself refuses writes.
    let refused = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 4k", &server.url])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !refused.status.success()
            || text.contains("error")
            || text.contains("denied")
            || text.contains("read-only")
            || text.contains("Operation not permitted"),
        "{text}"
    );
    drop(server);
    assert_eq!(repository_files(&repo), before);
    let check = sb.restic(["-r", s(&repo), "check", "--read-data"]).ok();
    assert!(
        check.out().contains("no errors were found"),
        "{}",
        check.describe()
    );
}

/// docs/mount.md's instant recovery block, as written (another port).
#[test]
fn documented_instant_recovery_runs_as_written() {
    if !require_qemu() {
        return;
    }
    let sb = Sandbox::new();
    let (disk, repo) = backed_up_disk(&sb);
    let port = free_port().to_string();
    let block = doc_block("mount.md", "instant-recovery").replace("10809", &port);
    run_doc_block(&sb, sb.path(), &repo, &block);
    // The restored disk is the backup plus what the "guest" wrote.
    let expected = sb.join("expected.qcow2");
    std::fs::copy(&disk, &expected).unwrap();
    run_ok(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -P 0x42 0 64k",
        s(&expected),
    ]));
    let out = run_ok(Command::new("qemu-img").args([
        "compare",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        s(&sb.join("vm-restored.qcow2")),
        s(&expected),
    ]));
    assert!(out.contains("identical"), "{out}");
    let _ = Tool::Restix;
}
