//! The mount scenario (`--mount`): restic's and restix's `mount` of one
//! repository, in one run, reading the bench image's disk through FUSE.
//!
//! The repository holds two backups of the same guest disk (the bench
//! image's raw guest view): restic's (`restic backup --stdin` of the raw
//! disk: content-defined chunks of ~1 MiB, as a restic user would have it)
//! and restix's (`restix backup --image`: 64 KiB blocks aligned to guest
//! offsets). Each tool mounts the repository once per backup and reads the
//! disk file:
//!
//! - time to first byte: from starting `mount` until one byte of the disk
//!   has been read (repository open, index, mount, file open, first blob);
//! - 1000 random 4 KiB reads at 4 KiB-aligned offsets (same seed for all,
//!   kernel readahead off with `POSIX_FADV_RANDOM`), one after the other;
//! - one sequential read of the whole disk in 1 MiB reads;
//! - the mount process's peak RSS (`VmHWM`) after all of it.
//!
//! The repository's pack files are read into the page cache before each
//! mount, so none profits from another's reads.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::content::SplitMix64;
use crate::datasets::{warm_page_cache, DataSets};
use crate::error::{run_helper, BenchError, IoContext};

const PASSWORD: &str = "restix-bench-mount";
const RANDOM_READS: usize = 1000;
const RANDOM_SIZE: usize = 4096;
const SEQUENTIAL_BUFFER: usize = 1 << 20;
const MOUNT_LIMIT: Duration = Duration::from_secs(600);

/// What one tool's mount did.
#[derive(Debug, Clone, Default)]
struct MountResult {
    first_byte: Option<Duration>,
    random: Option<Duration>,
    sequential: Option<Duration>,
    bytes: u64,
    peak_rss_kib: Option<u64>,
    error: Option<String>,
}

fn command(bin: &Path, repo: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("RESTIC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache);
    cmd
}

/// Peak resident memory of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Serving {
    child: Child,
    mountpoint: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mountpoint)
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(
    bin: &Path,
    repo: &Path,
    work: &Path,
    label: &str,
    file: &str,
    disk_size: u64,
) -> MountResult {
    let mut result = MountResult::default();
    let mountpoint = work.join(format!("mnt-{label}"));
    let cache = work.join(format!("cache-{label}"));
    if let Err(e) = std::fs::create_dir_all(&mountpoint) {
        result.error = Some(format!("mkdir: {e}"));
        return result;
    }
    warm_page_cache(repo);
    let log = work.join(format!("mount-{label}.log"));
    let Ok(log_file) = File::create(&log) else {
        result.error = Some("cannot create the log".into());
        return result;
    };
    let log_err = log_file.try_clone().ok();
    let start = Instant::now();
    let spawned = command(bin, repo, &cache)
        .arg("mount")
        .arg(&mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(log_err.map_or(Stdio::null(), Stdio::from))
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            result.error = Some(format!("cannot start: {e}"));
            return result;
        }
    };
    let mut serving = Serving {
        child,
        mountpoint: mountpoint.clone(),
    };
    let disk = mountpoint.join(file);
    // Time to first byte.
    let file = loop {
        let mut one = [0u8; 1];
        if let Ok(file) = File::open(&disk) {
            if file.read_at(&mut one, 0).is_ok_and(|n| n == 1) {
                result.first_byte = Some(start.elapsed());
                break file;
            }
        }
        if let Ok(Some(status)) = serving.child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            result.error = Some(format!("mount exited ({status}): {}", text.trim()));
            return result;
        }
        if start.elapsed() > MOUNT_LIMIT {
            result.error = Some("no first byte within the time limit".into());
            return result;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(file);
    // Random reads, kernel readahead off.
    let file = match File::open(&disk) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("open: {e}"));
            return result;
        }
    };
    // SAFETY: posix_fadvise only takes the descriptor (valid, owned by
    // `file`) and two integers; it changes kernel hints, no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
    }
    let mut rng = SplitMix64::new(0x004d_4f55_4e54);
    let blocks = (disk_size / RANDOM_SIZE as u64).max(1);
    let mut buf = vec![0u8; RANDOM_SIZE];
    let random_start = Instant::now();
    for _ in 0..RANDOM_READS {
        let offset = rng.below(blocks) * RANDOM_SIZE as u64;
        if let Err(e) = file.read_at(&mut buf, offset) {
            result.error = Some(format!("random read at {offset}: {e}"));
            return result;
        }
    }
    result.random = Some(random_start.elapsed());
    drop(file);
    // One sequential pass.
    let mut file = match File::open(&disk) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("open: {e}"));
            return result;
        }
    };
    let mut buf = vec![0u8; SEQUENTIAL_BUFFER];
    let sequential_start = Instant::now();
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => result.bytes += n as u64,
            Err(e) => {
                result.error = Some(format!("sequential read at {}: {e}", result.bytes));
                return result;
            }
        }
    }
    result.sequential = Some(sequential_start.elapsed());
    drop(file);
    result.peak_rss_kib = peak_rss_kib(serving.child.id());
    drop(serving);
    result
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("FAILED".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

fn ratio(restic: Option<Duration>, restix: Option<Duration>) -> String {
    match (restic, restix) {
        (Some(a), Some(b)) if b.as_secs_f64() > 0.0 => {
            format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64())
        }
        _ => "-".into(),
    }
}

/// Run the scenario and print (and with `output`, write) its table.
pub fn run(
    dir: &Path,
    size: u64,
    restic: &Path,
    restix: &Path,
    output: Option<&Path>,
) -> Result<(), BenchError> {
    let image = DataSets::new(dir, size)?.image()?;
    let work = dir.join("mount-work");
    if work.exists() {
        std::fs::remove_dir_all(&work).ctx(|| format!("clean {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).ctx(|| format!("mkdir {}", work.display()))?;
    let repo = work.join("repo");
    let cache = work.join("cache-backup");
    run_helper(command(restix, &repo, &cache).arg("init"))?;
    let raw = work.join("disk.raw");
    run_helper(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&image.qcow2)
            .arg(&raw),
    )?;
    eprintln!("backing up the disk with restic (content-defined chunks) ...");
    let stdin = File::open(&raw).ctx(|| format!("open {}", raw.display()))?;
    run_helper(
        command(restic, &repo, &cache)
            .args([
                "backup",
                "--stdin",
                "--stdin-filename",
                "disk.raw",
                "--tag",
                "restic",
            ])
            .stdin(Stdio::from(stdin)),
    )?;
    std::fs::remove_file(&raw).ctx(|| format!("remove {}", raw.display()))?;
    eprintln!("backing up the disk with restix (image mode) ...");
    run_helper(
        command(restix, &repo, &cache)
            .arg("backup")
            .arg("--image")
            .arg(&image.qcow2)
            .args(["--image-name", "disk.img", "--tag", "restix"]),
    )?;
    let disk_size = image.virtual_bytes;
    let backups = [
        (
            "restic's backup (content-defined chunks)",
            "tags/restic/latest/disk.raw",
        ),
        (
            "restix's image-mode backup (64 KiB blocks)",
            "tags/restix/latest/disk.img",
        ),
    ];
    let mut results = Vec::new();
    for (index, (_, file)) in backups.iter().enumerate() {
        eprintln!("mounting with restic, reading {file} ...");
        let theirs = measure(
            restic,
            &repo,
            &work,
            &format!("restic-{index}"),
            file,
            disk_size,
        );
        eprintln!("mounting with restix, reading {file} ...");
        let ours = measure(
            restix,
            &repo,
            &work,
            &format!("restix-{index}"),
            file,
            disk_size,
        );
        results.push((theirs, ours));
    }
    let mut table = String::new();
    table.push_str(&format!(
        "### mount: reading a {:.2} GiB guest disk through FUSE, one repository\n\n",
        disk_size as f64 / f64::from(1u32 << 30)
    ));
    table.push_str("| disk file read | | restic mount | restix mount | restic/restix |\n| --- | --- | --- | --- | --- |\n");
    let rss = |r: &MountResult| {
        r.peak_rss_kib
            .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
    };
    for ((name, _), (theirs, ours)) in backups.iter().zip(&results) {
        let rows = [
            ("time to first byte", theirs.first_byte, ours.first_byte),
            ("1000 random 4 KiB reads", theirs.random, ours.random),
            ("sequential read", theirs.sequential, ours.sequential),
        ];
        for (what, a, b) in rows {
            table.push_str(&format!(
                "| {name} | {what} | {} | {} | {} |\n",
                seconds(a),
                seconds(b),
                ratio(a, b)
            ));
        }
        table.push_str(&format!(
            "| {name} | peak RSS | {} | {} | |\n",
            rss(theirs),
            rss(ours)
        ));
    }
    if let [(restic_own, _), (_, restix_own)] = results.as_slice() {
        table.push_str(&format!(
            "\nEach tool reading its own backup of the disk: random reads {}, sequential {}, first byte {} (restic/restix).\n",
            ratio(restic_own.random, restix_own.random),
            ratio(restic_own.sequential, restix_own.sequential),
            ratio(restic_own.first_byte, restix_own.first_byte)
        ));
    }
    for ((name, _), (theirs, ours)) in backups.iter().zip(&results) {
        for (label, r) in [("restic", theirs), ("restix", ours)] {
            if let Some(e) = &r.error {
                table.push_str(&format!("\n{label} reading {name}: {e}\n"));
            } else if r.bytes != disk_size {
                table.push_str(&format!(
                    "\n{label} reading {name}: read {} bytes sequentially, the disk has {disk_size}\n",
                    r.bytes
                ));
            }
        }
    }
    println!("{table}");
    if let Some(path) = output {
        let mut file = File::create(path).ctx(|| format!("create {}", path.display()))?;
        file.write_all(table.as_bytes())
            .ctx(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
