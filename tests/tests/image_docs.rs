//! docs/images.md is a walk-through a newcomer can follow: its `sh` blocks,
//! in order and exactly as written, run in an empty folder with `restix` on
//! the PATH, and every check they contain (`qemu-img compare`, `cmp`,
//! `qemu-img check`, the refused backup) holds.

use std::path::Path;
use std::process::Command;

use restix_tests::harness::{self, restix_bin, workspace_root, Sandbox};

/// The fenced ```sh blocks of a Markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

#[test]
fn the_images_walkthrough_runs_as_written() {
    if !harness::require_qemu() || !harness::is_restix() {
        return;
    }
    if !restix_testkit::have_program("jq", &["--version"]) {
        restix_testkit::skip("jq", "apt-get install jq");
        return;
    }
    let page =
        std::fs::read_to_string(workspace_root().join("docs/images.md")).expect("docs/images.md");
    let blocks = shell_blocks(&page);
    assert!(blocks.len() >= 8, "{} sh blocks", blocks.len());
    let sb = Sandbox::new();
    let script = sb.join("walkthrough.sh");
    std::fs::write(
        &script,
        format!("set -euxo pipefail\n{}", blocks.join("\n")),
    )
    .unwrap();
    let bin_dir = restix_bin().parent().unwrap_or(Path::new("/"));
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = sb.join("walk");
    std::fs::create_dir(&work).unwrap();
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("HOME", sb.join("home"))
        .env("RESTIC_CACHE_DIR", sb.join("cache"))
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the walk-through failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // What the page says happens, happens.
    for expected in [
        "using parent snapshot",
        "bitmap \"ck1\" was recorded in it and has only grown since",
        "the overlay's backing file",
        "wrote restore/disk.raw: a sparse raw image",
        "every block was read to hash it",
        "Images are identical.",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bitmap \"late\" did not exist"),
        "the refusal is missing:\n{stderr}"
    );
}

#[test]
fn shell_blocks_are_found() {
    let text = "a\n```sh\necho 1\necho 2\n```\n```text\nno\n```\n```sh\nx\n```\n";
    assert_eq!(shell_blocks(text), ["echo 1\necho 2\n", "x\n"]);
}
