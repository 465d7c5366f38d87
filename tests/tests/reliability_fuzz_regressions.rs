//! Replays fuzz inputs on stable Rust: every file under
//! `fuzz/regressions/<target>/` (inputs that once crashed a parser) and under
//! `fuzz/seeds/<target>/` (the seed corpus made from real repositories and
//! qemu-img images) goes through the same target body the cargo-fuzz binary
//! runs (`fuzz/src/targets.rs`, compiled into this test). A panic fails the
//! test and names the input file.

use std::path::Path;

/// The qcow2 API the target bodies use, reached through the engine here.
mod qcow2_api {
    pub use restix_engine::image::{DiskImage, Qcow2Image};
}

#[path = "../../fuzz/src/targets.rs"]
mod targets;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("keyfile", targets::keyfile),
    ("config", targets::config),
    ("decrypt", targets::decrypt),
    ("pack_header", targets::pack_header),
    ("index", targets::index),
    ("snapshot", targets::snapshot),
    ("tree", targets::tree),
    ("lock", targets::lock),
    ("unpacked", targets::unpacked),
    ("decompress", targets::decompress),
    ("qcow2", targets::qcow2),
    ("sftp_location", targets::sftp_location),
    ("ssh_config", targets::ssh_config),
    ("s3_location", targets::s3_location),
    ("cli_args", targets::cli_args),
];

fn replay(folder: &str) -> usize {
    let root = restix_tests::harness::workspace_root()
        .join("fuzz")
        .join(folder);
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            replay_one(name, *target, file);
            replayed += 1;
        }
    }
    replayed
}

fn replay_one(name: &str, target: Target, file: &Path) {
    let data = std::fs::read(file).unwrap();
    let outcome = std::panic::catch_unwind(|| target(&data));
    assert!(
        outcome.is_ok(),
        "fuzz target {name} panicked on {}",
        file.display()
    );
}

#[test]
fn fuzz_regressions_do_not_crash() {
    let n = replay("regressions");
    eprintln!("replayed {n} regression inputs");
}

#[test]
fn fuzz_seeds_do_not_crash() {
    let n = replay("seeds");
    eprintln!("replayed {n} seed inputs");
    assert!(
        n > 0,
        "no seeds under fuzz/seeds (run scripts/fuzz.sh seeds)"
    );
}

#[test]
fn the_fixture_key_is_valid() {
    let key = targets::fixture_key();
    let sealed = key.encrypt(b"x");
    assert_eq!(key.decrypt(&sealed).unwrap(), b"x");
}
