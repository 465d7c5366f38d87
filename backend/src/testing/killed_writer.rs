//! Atomic writes when the writing process dies: a child process writes pack
//! after pack (8 MiB each) and is killed (SIGKILL) in the middle of one;
//! afterwards no file is visible under its final name unless it is
//! complete.
//!
//! The child is the test binary itself, started again with a filter that
//! runs one test function, the *entry*, which calls [`child_entry`]. In a
//! normal run that function returns at once; in the child (marked by the
//! environment variable [`CHILD_ENV`]) it opens the backend from the
//! location it was given and writes until it is killed.
//!
//! ```no_run
//! use restix_backend::local::LocalBackend;
//! use restix_backend::testing::killed_writer;
//! use restix_backend::Backend;
//!
//! #[test]
//! fn killed_writer_child() {
//!     killed_writer::child_entry(|location| Box::new(LocalBackend::new(location)));
//! }
//!
//! #[test]
//! fn local_write_survives_a_killed_writer() {
//!     let root = std::env::temp_dir().join("repo");
//!     let backend = LocalBackend::new(&root);
//!     backend.create().unwrap();
//!     killed_writer::check(&backend, "killed_writer_child", &root.display().to_string(), &[]);
//! }
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::{data, id};
use crate::{Backend, FileType};

/// Set in the child's environment: the location to write to.
pub const CHILD_ENV: &str = "RESTIX_KILLED_WRITER_LOCATION";

/// What the child prints after each complete write.
const PROGRESS: &str = "restix-killed-writer: wrote";

/// Writes the parent waits for before it kills the child.
const WRITES_BEFORE_KILL: u64 = 3;

/// Size of every file the child writes.
const FILE_SIZE: usize = 8 << 20;

/// The name of the `n`-th file the child writes.
pub fn child_file_name(n: u64) -> String {
    id(1_000_000 + n)
}

/// The contents of every file the child writes (one buffer, made once, so
/// that between two writes the child does next to nothing and the kill
/// lands inside a write).
pub fn child_file_contents() -> Vec<u8> {
    data(1_000_000, FILE_SIZE)
}

/// In the child (when [`CHILD_ENV`] is set): open the backend with `open`
/// and write [`child_file_contents`] under [`child_file_name`]s one after the
/// other, reporting each on stdout, until killed. Otherwise return at once.
pub fn child_entry(open: impl FnOnce(&str) -> Box<dyn Backend>) {
    let Ok(location) = std::env::var(CHILD_ENV) else {
        return;
    };
    let backend = open(&location);
    let bytes = child_file_contents();
    let mut stdout = std::io::stdout();
    for n in 0.. {
        if let Err(e) = backend.write(FileType::Pack, &child_file_name(n), &bytes) {
            panic!("killed-writer child: write {n} failed: {e}");
        }
        let _ = writeln!(stdout, "{PROGRESS} {n}");
        let _ = stdout.flush();
    }
}

/// In the parent: start this test binary's `entry` test as the child with
/// [`CHILD_ENV`]` = location` and `env`, let it complete a few writes, kill
/// it mid-write, then check through `backend` (the same, created location)
/// that every pack listed is one the child wrote, complete and intact.
pub fn check(backend: &dyn Backend, entry: &str, location: &str, env: &[(&str, &str)]) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("killed-writer: no test binary to start: {e}"),
    };
    let mut command = Command::new(exe);
    command
        .args([entry, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, location)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("killed-writer: cannot start the child: {e}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("killed-writer: the child has no stdout");
    };
    let mut completed = 0;
    let mut reports = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with(PROGRESS) {
            completed += 1;
            reports.push(std::time::Instant::now());
            if completed >= WRITES_BEFORE_KILL {
                // The child starts its next write right after the report;
                // half a write later it is in the middle of it (this only
                // places the kill, nothing is asserted about time). SIGKILL
                // gives it no chance to clean up.
                if let (Some(first), Some(last)) = (reports.first(), reports.last()) {
                    let writes = u32::try_from(reports.len() - 1).unwrap_or(1).max(1);
                    std::thread::sleep(last.duration_since(*first) / writes / 2);
                }
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait();
    assert!(
        completed >= WRITES_BEFORE_KILL,
        "killed-writer: the child stopped after {completed} writes ({status:?})"
    );
    let files = match backend.list(FileType::Pack) {
        Ok(files) => files,
        Err(e) => panic!("killed-writer: list after the kill: {e}"),
    };
    assert!(
        files.len() as u64 >= WRITES_BEFORE_KILL,
        "killed-writer: {} packs listed, {completed} were written",
        files.len()
    );
    let bytes = child_file_contents();
    for file in files {
        let Some(n) = (0..completed + 2).find(|n| child_file_name(*n) == file.name) else {
            panic!("killed-writer: unexpected file {} listed", file.name);
        };
        assert_eq!(
            file.size,
            bytes.len() as u64,
            "killed-writer: write {n} is visible with {} of {} bytes",
            file.size,
            bytes.len()
        );
        match backend.read(FileType::Pack, &file.name) {
            Ok(stored) => assert!(
                stored == bytes,
                "killed-writer: write {n} stored wrong bytes"
            ),
            Err(e) => panic!("killed-writer: read of write {n}: {e}"),
        }
    }
}
