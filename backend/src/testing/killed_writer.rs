//! Atomic writes when the writing process dies: a child process writes pack
//! after pack and is killed (SIGKILL) in the middle; afterwards no file is
//! visible under its final name unless it is complete.
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

/// The `n`-th file the child writes: its name and contents (3 MiB and a
/// bit, different for each `n`).
pub fn child_file(n: u64) -> (String, Vec<u8>) {
    let size = (3 << 20) + (n as usize) * 4099;
    (id(1_000_000 + n), data(1_000_000 + n, size))
}

/// In the child (when [`CHILD_ENV`] is set): open the backend with `open`
/// and write [`child_file`]s one after the other, reporting each on stdout,
/// until killed. Otherwise return at once.
pub fn child_entry(open: impl FnOnce(&str) -> Box<dyn Backend>) {
    let Ok(location) = std::env::var(CHILD_ENV) else {
        return;
    };
    let backend = open(&location);
    let mut stdout = std::io::stdout();
    for n in 0.. {
        let (name, bytes) = child_file(n);
        if let Err(e) = backend.write(FileType::Pack, &name, &bytes) {
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
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with(PROGRESS) {
            completed += 1;
            if completed >= WRITES_BEFORE_KILL {
                // The child is inside its next write now (it does nothing
                // else); SIGKILL gives it no chance to clean up.
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
    for file in files {
        let Some(n) = (0..completed + 1).find(|n| child_file(*n).0 == file.name) else {
            panic!("killed-writer: unexpected file {} listed", file.name);
        };
        let (name, bytes) = child_file(n);
        assert_eq!(
            file.size,
            bytes.len() as u64,
            "killed-writer: write {n} is visible with {} of {} bytes",
            file.size,
            bytes.len()
        );
        match backend.read(FileType::Pack, &name) {
            Ok(stored) => assert!(
                stored == bytes,
                "killed-writer: write {n} stored wrong bytes"
            ),
            Err(e) => panic!("killed-writer: read of write {n}: {e}"),
        }
    }
}
